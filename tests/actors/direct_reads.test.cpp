// The direct read path at the table: readers on their own threads search a
// shard's table while its one writer replaces, removes, grows and clears it.
// Run in the ASan build too, where a read of freed memory fails the test.
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "actors/entry_table.hpp"
#include "actors/read_side.hpp"
#include "actors/shard_state.hpp"
#include "base/rcu.hpp"
#include <karlton/base/clock.hpp>

using namespace karlton;
using namespace std::chrono_literals;

namespace {

// A value's bytes: "<version>/<expiry ms>", so a reader can check what it got.
value versioned(const std::string& key, uint64_t version, uint64_t expiry) {
  return value::make(key, std::to_string(version) + "/" + std::to_string(expiry));
}
uint64_t version_of(const value& v) {
  return std::stoull(std::string{v.bytes().substr(0, v.bytes().find('/'))});
}
uint64_t expiry_in(const value& v) {
  return std::stoull(std::string{v.bytes().substr(v.bytes().find('/') + 1)});
}

uint32_t hash_of(const std::string& key) {
  return static_cast<uint32_t>(hash_key(key));
}

} // namespace

TEST_CASE("a reader never sees a value the writer replaced or removed before the "
          "read began, while the table grows, shifts and clears",
          "[direct][table][stress]") {
  // Each operation on key i gets a version larger than every earlier one; the
  // writer publishes it in done[i] when the operation is complete (as a
  // shard answers a call). A read that begins after that must return that
  // version or a later one, or miss; a removal's version belongs to no value,
  // so after a removal only a later put's value may be found.
  constexpr size_t keys = 20'000;
  constexpr uint64_t writes = 600'000;
  std::vector<std::string> names;
  for (size_t i = 0; i < keys; ++i)
    names.push_back("key-" + std::to_string(i));
  entry_table table;
  std::vector<std::atomic<uint64_t>> done(keys);
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> reads{0}, found{0}, stale{0}, torn{0};

  auto reader = [&](uint64_t seed) {
    uint64_t x = seed, n = 0, hits = 0;
    while (!stop.load(std::memory_order_acquire)) {
      x = x * 6364136223846793005ull + 1442695040888963407ull;
      auto i = (x >> 33) % keys;
      auto before = done[i].load(std::memory_order_acquire);
      entry_table::found f;
      {
        rcu::read_section section;
        f = table.read(names[i], hash_of(names[i]));
      }
      ++n;
      if (!f.val) continue;
      ++hits;
      if (f.val.key() != names[i])
        ++stale; // another key's value
      else if (version_of(f.val) < before)
        ++stale;
      // Never an expiry later than the value's own (see entry_table::replace).
      if (f.expiry_ms > expiry_in(f.val)) ++torn;
    }
    reads += n;
    found += hits;
  };
  std::vector<std::thread> readers;
  for (uint64_t s = 1; s <= 2; ++s)
    readers.emplace_back(reader, s * 7919);

  // The writer, as a shard: puts (inserting or replacing, with expiries that
  // go up and down), removals, and now and then a clear; what it unlinks is
  // retired after each operation, as the shard's after-change step does.
  uint64_t x = 99, version = 0;
  std::vector<entry_id> ids(keys, no_entry);
  for (uint64_t w = 0; w < writes; ++w) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    auto i = (x >> 33) % keys;
    ++version;
    if (w % 200'000 == 199'999) {
      table.clear();
      ids.assign(keys, no_entry);
      for (auto& d : done)
        d.store(version, std::memory_order_release);
    } else if ((x >> 20) % 4 == 0 && ids[i] != no_entry) {
      table.remove(ids[i]);
      ids[i] = no_entry;
      done[i].store(version, std::memory_order_release);
    } else {
      auto expiry = 1000 + (x >> 40) % 1000;
      auto v = versioned(names[i], version, expiry);
      if (ids[i] == no_entry)
        ids[i] = table.insert(std::move(v), expiry);
      else
        table.replace(ids[i], std::move(v), expiry);
      done[i].store(version, std::memory_order_release);
    }
    table.retire_unlinked();
  }
  stop = true;
  for (auto& t : readers)
    t.join();
  INFO(reads << " reads, " << found << " found");
  CHECK(stale == 0);
  CHECK(torn == 0);
  CHECK(reads + writes >= 1'000'000);
  CHECK(found > 0);
  rcu::barrier(); // what was retired is freed before the test ends (ASan sees it)
}

namespace {

// What the shard does while a paused reader waits between its loads.
std::function<void(int)> between_reader_loads;
void run_between_reader_loads(int step) {
  if (between_reader_loads) between_reader_loads(step);
}

} // namespace

TEST_CASE("a reader that found an entry's word unchanged still misses a value that "
          "sat there between (a replace and a replace back, or a removal and a reuse)",
          "[direct][table]") {
  // The word (expiry, live bit, tag) holds no version: A (never expires),
  // then B (expires at 10), then C (never) leave it as it was, and a reader
  // that loaded the word under A and the value under B must not serve B as
  // never expiring. Paused between its loads, it sees the shard do just that.
  auto reuse_id = GENERATE(false, true);
  entry_table table;
  const std::string key = "k";
  auto hash = hash_of(key);
  auto id = table.insert(value::make(key, "A"), entry::never);
  between_reader_loads = [&](int step) {
    if (step == 1) { // the word read under A: B comes
      table.replace(id, value::make(key, "B"), 10);
    } else { // B loaded: C comes, by a replace or by a removal and a put
      if (reuse_id) {
        table.remove(id);
        REQUIRE(table.insert(value::make(key, "C"), entry::never) == id);
      } else {
        table.replace(id, value::make(key, "C"), entry::never);
      }
    }
  };
  entry_table::set_read_pause_for_testing(run_between_reader_loads);
  entry_table::found f;
  {
    rcu::read_section section;
    f = table.read(key, hash);
  }
  entry_table::set_read_pause_for_testing(nullptr);
  between_reader_loads = nullptr;
  // A miss (the shard answers) or, had it been served, never B as if it never expired.
  INFO("served " << (f.val ? f.val.str() : "nothing") << " expiring at " << f.expiry_ms);
  CHECK_FALSE(f.val);
  // Unpaused, the reader finds C.
  {
    rcu::read_section section;
    f = table.read(key, hash);
  }
  REQUIRE(f.val);
  CHECK(f.val.str() == "C");
  CHECK(f.expiry_ms == entry::never);
  table.retire_unlinked();
  rcu::barrier();
}

TEST_CASE("a direct read counts its hit, and misses expired entries and a lapsed "
          "lease without serving them",
          "[direct]") {
  auto clk = std::make_shared<manual_clock>();
  auto lease = std::make_shared<read_lease>();
  read_side side{clk, lease};
  auto now_ms = [&] {
    return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(clk->now().time_since_epoch())
        .count());
  };
  side.table.insert(value::make("forever", "f"));
  side.table.insert(value::make("brief", "b"), now_ms() + 1000);
  CHECK(side.read("forever", hash_of("forever")).val.bytes() == "f");
  CHECK(side.read("brief", hash_of("brief")).val.bytes() == "b");
  CHECK_FALSE(side.read("absent", hash_of("absent")).val);
  CHECK(side.hits() == 2); // misses are the shard's to count
  clk->advance(1s);
  CHECK_FALSE(side.read("brief", hash_of("brief")).val); // the shard decides
  CHECK(side.read("forever", hash_of("forever")).val);
  lease->limit_to(clk->now() - 1ms);
  CHECK_FALSE(side.read("forever", hash_of("forever")).val); // the shard clears first
  CHECK(side.hits() == 3);
  side.close();
  lease->hold();
  CHECK_FALSE(side.read("forever", hash_of("forever")).val); // stopped
}

TEST_CASE("a direct read needs every lease it has: a lapsed change feed lease stops "
          "hits while the cluster's holds",
          "[direct][lease]") {
  auto clk = std::make_shared<manual_clock>();
  auto cluster = std::make_shared<read_lease>();
  auto changes = std::make_shared<read_lease>();
  read_leases leases{cluster};
  leases.changes = changes;
  read_side side{clk, leases};
  side.table.insert(value::make("k", "v"));
  cluster->extend_to(clk->now() + 10s);
  changes->extend_to(clk->now() + 1s);
  CHECK(side.read("k", hash_of("k")).val.bytes() == "v");
  clk->advance(1s + 1ms);
  CHECK_FALSE(side.read("k", hash_of("k")).val); // the feed's ran out first
  changes->extend_to(clk->now() + 1s);
  CHECK(side.read("k", hash_of("k")).val);
  cluster->limit_to(clk->now() - 1ms);
  CHECK_FALSE(side.read("k", hash_of("k")).val); // and the cluster's still counts
  // The feed's alone, lapsed as the runtime creates it.
  auto fresh = std::make_shared<read_lease>();
  fresh->limit_to(clock::time_point{});
  read_leases only_changes;
  only_changes.changes = fresh;
  read_side fed{clk, only_changes};
  fed.table.insert(value::make("k", "v"));
  CHECK_FALSE(fed.read("k", hash_of("k")).val);
  CHECK(fed.hits() == 0);
}

TEST_CASE("a direct read serves through a lapse only once the shard capped every entry "
          "for it, and only under a lease whose lapse serves",
          "[direct][lease]") {
  auto clk = std::make_shared<manual_clock>();
  auto hits_under = [&](read_leases leases) {
    read_side side{clk, leases};
    side.table.insert(value::make("k", "v"));
    side.mark_capped(0); // what a shard does once it capped all for a lapse ending at 0
    return side.read("k", hash_of("k")).val ? 1 : 0;
  };
  auto lapsed = [](std::chrono::seconds repair_ttl, lapsed_hits hits) {
    auto l = std::make_shared<read_lease>(repair_ttl, hits);
    l->limit_to(clock::time_point{}); // ends at 0, as the feed's does
    return l;
  };
  read_leases feed;
  feed.changes = lapsed(10s, lapsed_hits::served);
  CHECK(hits_under(feed) == 1);
  read_leases clearing;
  clearing.changes = lapsed(0s, lapsed_hits::served);
  CHECK(hits_under(clearing) == 0); // a lapse that clears serves nothing
  read_leases cluster{lapsed(10s, lapsed_hits::withheld)};
  CHECK(hits_under(cluster) == 0); // nor one that withholds (rule 7)
  read_leases both{std::make_shared<read_lease>(10s, lapsed_hits::withheld)};
  both.changes = lapsed(10s, lapsed_hits::served);
  CHECK(hits_under(both) == 0); // the cluster's holds, but its lapse would not serve
  read_leases two{lapsed(10s, lapsed_hits::served)};
  two.changes = lapsed(10s, lapsed_hits::served);
  CHECK(hits_under(two) == 0); // one mark cannot tell whose lapse it capped for
  read_side side{clk, feed};
  side.table.insert(value::make("k", "v"));
  CHECK_FALSE(side.read("k", hash_of("k")).val); // not capped for it: the shard decides
  side.mark_capped(1);
  CHECK_FALSE(side.read("k", hash_of("k")).val); // for another lapse
  side.mark_capped(0);
  CHECK(side.read("k", hash_of("k")).val);
  side.unmark(); // something went in uncapped
  CHECK_FALSE(side.read("k", hash_of("k")).val);
}

TEST_CASE(
  "under the change feed's repair-ttl direct reads serve through a lapse the shard "
  "acted on, and ask again at the next lapse after an uncapped put",
  "[direct][lease]") {
  // Before, every hit of a fed cache went to the shard while the feed was deaf.
  auto clk = std::make_shared<manual_clock>();
  auto lease = std::make_shared<read_lease>(10s);
  shard_options cfg;
  cfg.default_ttl = ttl::never();
  cfg.lease.changes = lease;
  cfg.reads = std::make_shared<read_side>(clk, cfg.lease);
  shard_state s{cfg};
  auto& side = *cfg.reads;
  auto direct = [&](const std::string& key) {
    return bool(side.read(key, hash_of(key)).val);
  };
  lease->extend_to(clk->now() + 1s);
  REQUIRE_FALSE(s.put(value::make("a", "1"), ttl::never(), clk->now()));
  CHECK(direct("a"));
  lease->limit_to(clock::time_point{}); // the feed lost its connection
  CHECK_FALSE(direct("a"));             // the shard has not capped it yet
  CHECK(s.get("a", clk->now()));        // it does, and serves it
  CHECK(direct("a"));                   // and so do readers now
  REQUIRE_FALSE(s.put(value::make("c", "3"), ttl::never(), clk->now()));
  CHECK(direct("c")); // capped as it went in: readers go on
  clk->advance(9s);
  CHECK(direct("a"));
  clk->advance(1s);
  CHECK_FALSE(direct("a")); // expired by the cap
  // Back, a put goes in uncapped; lapsed again to the same end, readers ask.
  lease->extend_to(clk->now() + 1s);
  REQUIRE_FALSE(s.put(value::make("b", "2"), ttl::never(), clk->now()));
  CHECK(direct("b"));
  lease->limit_to(clock::time_point{});
  CHECK_FALSE(direct("b")); // else served uncapped for as long as the feed stayed deaf
  CHECK(s.get("b", clk->now()));
  CHECK(direct("b"));
  clk->advance(10s);
  CHECK_FALSE(direct("b"));
}

TEST_CASE(
  "the read buffer gives the shard the entries readers hit, dropping what "
  "does not fit, and readers ask for a drain only while the shard is not draining",
  "[direct]") {
  read_side side;
  auto a = side.table.insert(value::make("a", "1"));
  auto b = side.table.insert(value::make("b", "2"));
  int asks = 0;
  for (unsigned i = 0; i < 3 * read_side::buffer_length; ++i)
    asks += side.read(i % 2 ? "a" : "b", hash_of(i % 2 ? "a" : "b")).wants_drain;
  CHECK(asks == 1); // one request until the shard drains
  std::vector<entry_id> hit;
  auto collect = [&](entry_id id) { hit.push_back(id); };
  auto no_age = [](uint32_t) {};
  CHECK(side.drain(collect, no_age)); // readers hit: the shard drains again on its own
  // Lossy: at most one buffer's worth of the hits, a's and b's alike.
  CHECK(hit.size() == read_side::buffer_length);
  CHECK(std::count(hit.begin(), hit.end(), a) == read_side::buffer_length / 2);
  CHECK(std::count(hit.begin(), hit.end(), b) == read_side::buffer_length / 2);
  // While the shard drains on its own, a full buffer asks nothing.
  for (unsigned i = 0; i < read_side::buffer_length; ++i)
    asks += side.read("a", hash_of("a")).wants_drain;
  CHECK(asks == 1);
  // An entry removed and reused for another key before the drain is skipped.
  side.table.remove(a);
  CHECK(side.table.insert(value::make("c", "3")) == a);
  hit.clear();
  CHECK(side.drain(collect, no_age));
  CHECK(hit.empty());
  // A drain that finds no hits: the shard stops, and the next full buffer asks.
  CHECK_FALSE(side.drain(collect, no_age));
  CHECK(side.stop_draining());
  for (unsigned i = 0; i < read_side::buffer_length; ++i)
    asks += side.read("b", hash_of("b")).wants_drain;
  CHECK(asks == 2);
}

TEST_CASE("a direct hit records the age of the value it served, as of the hit",
          "[direct]") {
  auto clk = std::make_shared<manual_clock>();
  read_side side{clk};
  auto born = [&](const char* key) {
    auto v = value::make(key, "1");
    v.set_born_ms(static_cast<uint32_t>(to_ms(clk->now())));
    return v;
  };
  auto a = side.table.insert(born("a"));
  clk->advance(1500ms);
  REQUIRE(side.read("a", hash_of("a")).val);
  // Removed and the clock moved on before the drain: the age is still what
  // was served (before, the drain read the entry's age then, or skipped it).
  side.table.remove(a);
  clk->advance(10s);
  std::vector<uint32_t> ages;
  auto collect = [&](uint32_t ms) { ages.push_back(ms); };
  auto learn = [](entry_id) {};
  side.drain(learn, collect);
  CHECK(ages == std::vector<uint32_t>{1500});
  // Every hit, of values that expire or not, each as of its time.
  side.table.insert(born("b"));
  side.table.insert(born("c"), to_ms(clk->now()) + 60'000);
  ages.clear();
  for (int i = 0; i < 3; ++i) {
    clk->advance(20ms);
    REQUIRE(side.read("b", hash_of("b")).val);
    REQUIRE(side.read("c", hash_of("c")).val);
  }
  side.drain(learn, collect);
  CHECK(ages == std::vector<uint32_t>{20, 20, 40, 40, 60, 60});
}

TEST_CASE("a shard that stops draining while a reader hits keeps draining, so no "
          "hit waits for a request that never comes",
          "[direct]") {
  read_side side;
  side.table.insert(value::make("a", "1"));
  int asks = 0;
  for (unsigned i = 0; i < read_side::buffer_length; ++i)
    asks += side.read("a", hash_of("a")).wants_drain;
  REQUIRE(asks == 1);
  CHECK(side.drain([](entry_id) {}, [](uint32_t) {}));
  CHECK_FALSE(side.drain([](entry_id) {}, [](uint32_t) {}));
  // A hit lands between the empty drain and stopping: the reader saw the
  // shard draining and did not ask, so the shard must go on.
  asks += side.read("a", hash_of("a")).wants_drain;
  CHECK_FALSE(side.stop_draining());
  std::vector<entry_id> hit;
  CHECK(side.drain([&](entry_id id) { hit.push_back(id); }, [](uint32_t) {}));
  CHECK(hit.size() == 1);
  CHECK(asks == 1);
}

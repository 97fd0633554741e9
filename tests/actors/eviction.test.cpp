// TinyLFU's pieces: the frequency sketch, the admission decision, and the
// adaptive window at work (its ghosts and climber alone:
// adaptive_window.test.cpp).
#include <catch2/catch.hpp>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "actors/eviction.hpp"
#include "actors/shard_state.hpp"
#include "support/times.hpp"
#include <karlton/messages/errors.hpp>

using namespace karlton;

namespace {

// Cache-aside over a shard: a get, and a put of the key on a miss. Keys of
// 10 bytes with 90-byte values weigh 100 bytes each under max-bytes.
struct cache_aside {
  shard_state shard;
  uint64_t hits = 0;
  uint64_t accesses = 0;
  std::string pad = std::string(90, 'v');

  explicit cache_aside(shard_options cfg) : shard(std::move(cfg)) {}

  void access(const std::string& key) {
    ++accesses;
    if (shard.get(key, test::t0)) {
      ++hits;
      return;
    }
    REQUIRE(!shard.put(value::make(key, pad), ttl::never(), test::t0));
  }
};

std::string key_of(const char* set, int i) {
  auto k = std::string{set} + std::to_string(1000000 + i);
  return k.substr(0, 10);
}

// 100 hot keys for 300k accesses, then 100 other keys for 200k: the hit
// ratio of the last 100k accesses. A cache of 100 entries holds the whole
// hot set either way.
double shifted_hit_ratio(shard_options cfg) {
  cache_aside c{std::move(cfg)};
  std::mt19937 rng{7};
  std::uniform_int_distribution<int> pick{0, 99};
  for (int i = 0; i < 300'000; ++i)
    c.access(key_of("a", pick(rng)));
  for (int i = 0; i < 100'000; ++i)
    c.access(key_of("b", pick(rng)));
  c.hits = c.accesses = 0;
  for (int i = 0; i < 100'000; ++i)
    c.access(key_of("b", pick(rng)));
  return static_cast<double>(c.hits) / static_cast<double>(c.accesses);
}

// A policy over an entry table, driven like a read-through cache of
// `capacity` entries: a hit feeds `on_hit`, a miss inserts and evicts.
struct policy_cache {
  entry_table table;
  std::unique_ptr<eviction_policy> policy;
  uint64_t capacity;
  uint64_t hits = 0;

  policy_cache(eviction_policy_kind kind, uint64_t cap)
    : policy(eviction_policy::make(kind, table, cap, false)), capacity(cap) {}

  void access(uint64_t item) {
    auto key = "k" + std::to_string(item);
    auto hash = static_cast<uint32_t>(hash_key(key));
    if (auto id = table.find(key, hash); id != no_entry) {
      ++hits;
      policy->on_hit(id);
      return;
    }
    policy->on_insert(table.insert(value::make(key, "")), 1);
    while (table.size() > capacity) {
      auto victim = policy->victim();
      policy->on_remove(victim, 1);
      table.remove(victim);
    }
  }
};

// `passes` over a loop of `items`, through a cache of 1000 entries: LRU evicts
// each item just before it is read again and never hits; a cache that keeps a
// fixed 1000 items hits 1000 a pass after the first.
double loop_hits(eviction_policy_kind kind, uint64_t items, uint64_t passes) {
  policy_cache c{kind, 1000};
  for (uint64_t i = 0; i < items * passes; ++i)
    c.access(i % items);
  return static_cast<double>(c.hits);
}

} // namespace

TEST_CASE("W-TinyLFU keeps a fixed subset of a loop larger than the cache", "[policy]") {
  // 1.5 x the cache: every item is counted again before the sketch ages.
  // 20 x: longer than the sketch remembers (it halves every 10 x the cache),
  // so every count reads 0-2 whatever the item.
  // 1.05 x: a key comes back after only about 60 other misses, so a ghost that
  // remembered evictions past its horizon would take the loop for reuse a
  // larger window could catch, grow the window and churn (0.83 of the fixed
  // subset in karlton-bench's equivalent, against 0.93).
  for (uint64_t items : {1050, 1500, 20'000}) {
    const uint64_t passes = 200'000 / items;
    auto tiny = loop_hits(eviction_policy_kind::tiny_lfu, items, passes);
    auto lru = loop_hits(eviction_policy_kind::lru, items, passes);
    INFO("loop of " << items << " hits: W-TinyLFU " << tiny << ", LRU " << lru);
    CHECK(lru == 0);
    // A newcomer that won the admission on such a low count churned main as
    // LRU churns the cache (no hit at all on the long loop); with the
    // admission floor main keeps most of a fixed subset: 0.76 of its hits here
    // (sketch collisions still admit some), 0.98 in karlton-bench's loop at 1 %.
    const double fixed_subset = 1000 * static_cast<double>(passes - 1);
    CHECK(tiny >= (items < 10'000 ? 0.9 : 0.5) * fixed_subset);
  }
}

TEST_CASE("the window grows on a hot set that moves until W-TinyLFU is nearly LRU",
          "[policy]") {
  // A new key every 5 accesses; each access picks an age with density about
  // 1 / age among the 100k newest keys (Zipf 1 by recency), so yesterday's
  // hot keys are cold today though the sketch still counts them high. With
  // the window fixed at 1 % W-TinyLFU hit 0.54 of what LRU hits here (0.56
  // in karlton-bench's recency trace at 1 %); adapting by steps of at most
  // 1 % of the cache, 0.88; by steps up to half the window, 0.98 (0.997
  // there).
  auto hits = [](eviction_policy_kind kind) {
    policy_cache c{kind, 1000};
    std::mt19937 rng{11};
    std::uniform_real_distribution<double> u{0.0, 1.0};
    uint64_t newest = 0;
    for (uint64_t i = 0; i < 400'000; ++i) {
      if (i % 5 == 0) ++newest;
      auto age = static_cast<uint64_t>(std::exp(u(rng) * std::log(100'000.0))) - 1;
      c.access(newest > age ? newest - age : 0);
    }
    return static_cast<double>(c.hits);
  };
  auto tiny = hits(eviction_policy_kind::tiny_lfu);
  auto lru = hits(eviction_policy_kind::lru);
  INFO("hits: W-TinyLFU " << tiny << ", LRU " << lru);
  CHECK(tiny >= 0.95 * lru);
}

TEST_CASE(
  "a window grown on a hot set that moves gives way when a skewed workload follows",
  "[policy]") {
  // 400k accesses of the hot set that moves (above), which grows the window
  // to 99 %, then 400k of a skewed workload over 100k other keys that stay
  // (rank r with density about 1 / r), where a small window and a large main
  // hit more. At 99 % the ghosts found more for the window and it stayed
  // there, so W-TinyLFU hit what LRU hits; the climber now sees the hit rate
  // change and starts over from 1 %.
  struct hits {
    double moving = 0; // in the phase of the hot set that moves
    double skewed = 0; // in the second half of the skewed phase
  };
  auto play = [](eviction_policy_kind kind) {
    policy_cache c{kind, 1000};
    std::mt19937 rng{11};
    std::uniform_real_distribution<double> u{0.0, 1.0};
    auto rank = [&] {
      return static_cast<uint64_t>(std::exp(u(rng) * std::log(100'000.0))) - 1;
    };
    hits h;
    uint64_t newest = 0;
    for (uint64_t i = 0; i < 400'000; ++i) {
      if (i % 5 == 0) ++newest;
      auto age = rank();
      c.access(newest > age ? newest - age : 0);
    }
    h.moving = static_cast<double>(c.hits);
    for (uint64_t i = 0; i < 200'000; ++i)
      c.access(10'000'000 + rank());
    c.hits = 0;
    for (uint64_t i = 0; i < 200'000; ++i)
      c.access(10'000'000 + rank());
    h.skewed = static_cast<double>(c.hits);
    return h;
  };
  auto tiny = play(eviction_policy_kind::tiny_lfu);
  auto lru = play(eviction_policy_kind::lru);
  INFO("moving hot set: W-TinyLFU " << tiny.moving << ", LRU " << lru.moving);
  INFO("skewed, after: W-TinyLFU " << tiny.skewed << ", LRU " << lru.skewed);
  CHECK(tiny.moving >= 0.95 * lru.moving); // the window did grow
  CHECK(tiny.skewed >= 1.1 * lru.skewed);
}

TEST_CASE("a newcomer read three times displaces main's victim, twice does not",
          "[policy]") {
  // Main holds 990 keys read once; a newcomer is read `reads` times (it stays
  // in the window meanwhile), then 20 new keys, each read once, push it out
  // of the 10-entry window to the contest with main's least recent key.
  auto displaces = [](int reads) {
    policy_cache c{eviction_policy_kind::tiny_lfu, 1000};
    for (uint64_t i = 0; i < 1000; ++i)
      c.access(i);
    for (int i = 0; i < reads; ++i)
      c.access(5000);
    for (uint64_t i = 0; i < 20; ++i)
      c.access(10'000 + i);
    auto newcomer_kept = c.table.find("k5000", static_cast<uint32_t>(hash_key("k5000")));
    return newcomer_kept != no_entry;
  };
  CHECK(displaces(3));
  CHECK_FALSE(displaces(2)); // within the floor (one in 256 escapes; not this one)
}

TEST_CASE("after the cache was full main's spare room goes only to newcomers seen twice",
          "[policy]") {
  policy_cache c{eviction_policy_kind::tiny_lfu, 1000};
  for (uint64_t i = 0; i < 1001; ++i)
    c.access(i); // full: one victim asked for
  auto id_of = [&](uint64_t item) {
    auto key = "k" + std::to_string(item);
    return c.table.find(key, static_cast<uint32_t>(hash_key(key)));
  };
  auto in_main = [&](uint64_t item) {
    auto id = id_of(item);
    return id != no_entry && c.table.at(id).list() != 0; // 0: the window
  };
  // Ten of main's keys leave (erased or expired): main has room for ten.
  int left = 0;
  for (uint64_t i = 0; i < 1001 && left < 10; ++i)
    if (in_main(i)) {
      auto id = id_of(i);
      c.policy->on_remove(id, 1);
      c.table.remove(id);
      ++left;
    }
  REQUIRE(left == 10);
  c.access(5000);
  c.access(5000); // seen twice, in the window
  for (uint64_t i = 0; i < 30; ++i)
    c.access(10'000 + i); // each seen once; they push 5000 out of the window
  CHECK(in_main(5000));
  int once_in_main = 0;
  for (uint64_t i = 0; i < 30; ++i)
    once_in_main += in_main(10'000 + i) ? 1 : 0;
  // They took main's room without a contest before: each of them.
  CHECK(once_in_main == 0);
}

TEST_CASE("W-TinyLFU moves on from a dead hot set to a loop larger than the cache",
          "[policy]") {
  // A hot set fills main and is never read again; then a loop of 20 x the
  // cache, whose keys read 0-2 in the sketch whenever they come back: under
  // the admission floor, as the dead keys (0) are under every newcomer. The
  // floor's escapes must let main move on to a part of the loop rather than
  // keep the dead set (a fixed 10,000 of the loop hit 10,000 a pass). At
  // 10,000 entries: in a smaller sketch, collisions alone let enough in.
  auto loop_hits_after_dead_set = [](eviction_policy_kind kind) {
    constexpr uint64_t cache = 10'000;
    constexpr uint64_t loop = 20 * cache;
    policy_cache c{kind, cache};
    for (int pass = 0; pass < 5; ++pass)
      for (uint64_t i = 0; i < cache; ++i)
        c.access(i);
    for (uint64_t i = 0; i < 8 * loop; ++i)
      c.access(cache + i % loop);
    c.hits = 0;
    for (uint64_t i = 0; i < 2 * loop; ++i)
      c.access(cache + i % loop);
    return static_cast<double>(c.hits);
  };
  auto tiny = loop_hits_after_dead_set(eviction_policy_kind::tiny_lfu);
  INFO("loop hits in the last 2 passes: W-TinyLFU " << tiny);
  // Main moves on gradually: 0.38 of it after 8 passes; without the escapes
  // 0.06 (the dead set stays).
  CHECK(tiny >= 0.25 * 2 * 10'000);
}

TEST_CASE("the frequency sketch counts, saturates at 15 and ages", "[policy]") {
  frequency_sketch sketch{1000};
  for (int i = 0; i < 5; ++i)
    sketch.increment(7);
  CHECK(sketch.frequency(7) == 5);
  CHECK(sketch.frequency(8) == 0);
  for (int i = 0; i < 100; ++i)
    sketch.increment(9);
  CHECK(sketch.frequency(9) == 15);
  // 10 x capacity increments halve every counter.
  for (uint32_t i = 0; i < 10'000; ++i)
    sketch.increment(1'000'000 + i);
  CHECK(sketch.frequency(9) <= 8);
  CHECK(sketch.frequency(7) <= 4); // 5 halved, plus collisions of 10,000 other keys
}

TEST_CASE("TinyLFU keeps a popular entry against a stream of newcomers", "[policy]") {
  entry_table t;
  auto policy = eviction_policy::make(eviction_policy_kind::tiny_lfu, t, 10, false);
  std::vector<entry_id> live;
  auto add = [&](const std::string& k) {
    if (auto found = t.find(k, static_cast<uint32_t>(hash_key(k))); found != no_entry)
      return found;
    auto id = t.insert(value::make(k, ""));
    policy->on_insert(id, 1);
    if (t.size() > 10) {
      auto victim = policy->victim();
      policy->on_remove(victim, 1);
      t.remove(victim);
    }
    return id;
  };
  // Read once per 20 newcomers, twice the capacity: LRU would have evicted it
  // every time; TinyLFU sees it is more frequent than any newcomer.
  auto hot = add("hot");
  int kept = 0;
  for (int i = 0; i < 1000; ++i) {
    add("new" + std::to_string(i));
    if (i % 20 == 0 && t.find("hot", static_cast<uint32_t>(hash_key("hot"))) == hot) {
      ++kept;
      policy->on_hit(hot);
    } else if (i % 20 == 0) {
      policy->on_hit(add("hot")); // re-admitted after a miss, like a cache would
    }
  }
  CHECK(kept >= 45); // of 50 checks; only the first few may miss while it earns its count
  CHECK(t.size() == 10);
}

TEST_CASE("a shifted hot set takes over the cache under max-bytes as under max-entries",
          "[policy]") {
  // Sized and aged in bytes, the sketch let the old hot keys sit at 15 and
  // every newcomer lost the 15-15 tie: 0.000 under max-bytes.
  shard_options by_bytes;
  by_bytes.max_bytes = 10'000;
  shard_options by_entries;
  by_entries.max_entries = 100;
  for (auto policy : {eviction_policy_kind::tiny_lfu, eviction_policy_kind::lru}) {
    by_bytes.policy = by_entries.policy = policy;
    INFO(to_string(policy));
    CHECK(shifted_hit_ratio(by_bytes) > 0.95);
    CHECK(shifted_hit_ratio(by_entries) > 0.95);
  }
}

TEST_CASE("the sketch is sized by entries held, not by the byte budget", "[policy]") {
  shard_options cfg;
  cfg.max_bytes = 64ull << 20; // a 64 MiB shard
  shard_state empty{cfg};
  CHECK(empty.metadata_bytes() < 64 * 1024); // was 512 MiB of sketch
  cache_aside c{cfg};
  for (int i = 0; i < 10'000; ++i)
    c.access(key_of("k", i));
  // 8 bytes per entry, up to the next power of two of twice the entries.
  CHECK(c.shard.metadata_bytes() < 10'000 * 8 * 4 + 1024 * 1024);
}

TEST_CASE("a sketch for a huge bound is not allocated up front and grows keeping counts",
          "[policy]") {
  // 2^64 - 1 used to wrap the doubling to 0 and loop forever.
  entry_table t;
  auto policy =
    eviction_policy::make(eviction_policy_kind::tiny_lfu, t, UINT64_MAX, false);
  // The eager part only: 2^20 entries' sketch (8 MiB) and ghosts (2 x 16 B
  // for 2 % of them, 0.6 MiB).
  CHECK(policy->metadata_bytes() <= 9u << 20);
  frequency_sketch sketch{16};
  for (int i = 0; i < 7; ++i)
    sketch.increment(42);
  sketch.ensure_capacity(100'000);
  CHECK(sketch.capacity() == 100'000);
  CHECK(sketch.frequency(42) == 7);
  CHECK(sketch.bytes() >= 100'000 * 8);
}

TEST_CASE("under max-bytes a put heavier than the window is kept for its first read",
          "[policy]") {
  // 10,000 bytes: the window holds 100. Small and large entries alternate,
  // each read three times (so the window's older entry wins its admission
  // and leaves the newest alone there). A large put takes several evictions;
  // had the newest, alone in the window and heavier than it, to win its own
  // admission at once, it would leave unread.
  shard_options cfg;
  cfg.max_bytes = 10'000;
  shard_state shard{std::move(cfg)};
  uint64_t first_reads_missed = 0;
  for (int i = 0; i < 300; ++i) {
    auto key = "key" + std::to_string(10'000 + i);
    const std::string pad(i % 2 == 0 ? 40 : 900, 'v');
    REQUIRE(!shard.put(value::make(key, pad), ttl::never(), test::t0));
    if (!shard.get(key, test::t0)) ++first_reads_missed;
    shard.get(key, test::t0);
    shard.get(key, test::t0);
  }
  CHECK(first_reads_missed == 0);
}

TEST_CASE("an entry larger than the shard's byte budget is refused and evicts nothing",
          "[policy][bounds][errors]") {
  for (auto policy : {eviction_policy_kind::tiny_lfu, eviction_policy_kind::lru}) {
    INFO(to_string(policy));
    shard_options cfg;
    cfg.max_bytes = 10'000;
    cfg.policy = policy;
    cache_aside c{cfg};
    for (int i = 0; i < 80; ++i)
      c.access(key_of("k", i));
    REQUIRE(c.shard.size() == 80);
    // Admitted, it evicted all 80 and then itself, and the put said success.
    auto err =
      c.shard.put(value::make("huge", std::string(20'000, 'x')), ttl::never(), test::t0);
    CHECK(err == errc::value_too_large);
    CHECK(c.shard.size() == 80);
    CHECK(c.shard.stats().evictions == 0);
    CHECK(c.shard.stats().rejected == 1);
    CHECK_FALSE(c.shard.contains("huge", test::t0));
    // Exactly the budget is not refused (TinyLFU may still not admit it).
    auto key = std::string{"fits"};
    CHECK(!c.shard.put(value::make(key, std::string(10'000 - key.size(), 'x')),
                       ttl::never(), test::t0));
    if (policy == eviction_policy_kind::lru) CHECK(c.shard.contains(key, test::t0));
  }
}

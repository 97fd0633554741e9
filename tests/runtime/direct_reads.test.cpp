// The direct read path through the runtime: `get` serves hits from the
// shard's table on the caller's thread, and everything a hit cannot decide
// goes to the shard as before.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "support/must.hpp"
#include "support/refusing_store.hpp"
#include <karlton/runtime/runtime.hpp>
#include <karlton/stores/memory_store.hpp>

using namespace karlton;
using namespace std::chrono_literals;
using testing::must;

namespace {

uint64_t version_of(const value& v) {
  return std::stoull(std::string{v.bytes()});
}

} // namespace

TEST_CASE("a read that starts after a put, erase, clear, invalidate_tag or emit "
          "returned never sees the older value",
          "[direct][runtime][stress]") {
  // Versions as in tests/actors/direct_reads.test.cpp: every change of key i
  // gets a larger one, published in done[i] once its call returned; a read
  // that began after must find that version or a later one, or miss.
  runtime rt;
  auto o = rt.default_options("versions");
  o.shards = 2;
  auto c = must(rt.create_cache(o));
  constexpr size_t keys = 512;
  constexpr size_t groups = 8; // key i depends on tag t<i % 8> and event e<i % 8>
  std::vector<std::string> names;
  for (size_t i = 0; i < keys; ++i)
    names.push_back("key-" + std::to_string(i));
  std::vector<std::atomic<uint64_t>> done(keys);
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> reads{0}, hits{0}, stale{0}, errors{0};

  auto reader = [&](uint64_t x) {
    uint64_t n = 0, h = 0;
    while (!stop.load(std::memory_order_acquire)) {
      x = x * 6364136223846793005ull + 1442695040888963407ull;
      auto i = (x >> 33) % keys;
      auto before = done[i].load(std::memory_order_acquire);
      auto v = c.get(names[i]);
      if (++n % 4096 == 0) reads.fetch_add(4096, std::memory_order_relaxed);
      if (!v) { // Catch asserts on the test's thread only: counted here
        ++errors;
        continue;
      }
      if (!*v) continue;
      ++h;
      if (version_of(*v) < before) ++stale;
    }
    reads.fetch_add(n % 4096, std::memory_order_relaxed);
    hits += h;
  };
  std::vector<std::thread> readers;
  for (uint64_t s = 1; s <= 2; ++s)
    readers.emplace_back(reader, s * 104729);

  uint64_t x = 7, version = 0, writes = 0;
  auto mark = [&](size_t group) {
    for (size_t i = group; i < keys; i += groups)
      done[i].store(version, std::memory_order_release);
  };
  // Bounded by count: at least 1M reads and 20k changes, at most 2M changes.
  while ((reads.load() < 1'000'000 || writes < 20'000) && writes < 2'000'000) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    auto i = (x >> 33) % keys;
    auto g = i % groups;
    ++version;
    ++writes;
    // Mostly puts, so most reads hit (a miss is a call to the shard, and
    // 1M of those would take minutes); every kind of change still comes
    // hundreds of times.
    switch ((x >> 20) % 4096) {
    case 0:
      REQUIRE(c.clear());
      for (size_t k = 0; k < groups; ++k)
        mark(k);
      break;
    case 1:
    case 2:
      REQUIRE(rt.invalidate_tag("t" + std::to_string(g)));
      mark(g);
      break;
    case 3:
    case 4:
      REQUIRE(rt.emit("e" + std::to_string(g)));
      mark(g);
      break;
    default:
      if ((x >> 30) % 32 == 0) {
        REQUIRE(c.erase(names[i]));
      } else {
        auto deps = dependencies{}
                      .on_events({"e" + std::to_string(g)})
                      .on_keys({"t" + std::to_string(g)});
        REQUIRE_FALSE(c.put(names[i], std::to_string(version), ttl::never(), deps));
      }
      done[i].store(version, std::memory_order_release);
    }
  }
  stop = true;
  for (auto& t : readers)
    t.join();
  INFO(reads << " reads, " << hits << " hits, " << writes << " changes");
  CHECK(stale == 0);
  CHECK(errors == 0);
  CHECK(reads >= 1'000'000);
  CHECK(hits > 0);
}

TEST_CASE("hits served directly and misses the shard answered are counted exactly",
          "[direct][runtime]") {
  runtime rt;
  auto o = rt.default_options("counted");
  o.shards = 2;
  auto c = must(rt.create_cache(o));
  REQUIRE_FALSE(c.put("k", "v"));
  auto before = must(c.stats());
  for (int i = 0; i < 1000; ++i)
    REQUIRE(must(c.get("k")).str() == "v");
  for (int i = 0; i < 10; ++i)
    REQUIRE_FALSE(must(c.get("absent")));
  // From another thread too: its hits land on another stripe.
  std::thread([&] {
    for (int i = 0; i < 500; ++i)
      REQUIRE(must(c.get("k")).str() == "v");
  }).join();
  auto after = must(c.stats());
  CHECK(after.hits - before.hits == 1500);
  CHECK(after.misses - before.misses == 10);
}

TEST_CASE("a direct read never serves an entry past its TTL: the shard removes it",
          "[direct][runtime][ttl]") {
  auto clk = std::make_shared<manual_clock>();
  runtime rt{clk};
  auto o = rt.default_options("brief");
  auto c = must(rt.create_cache(o));
  REQUIRE_FALSE(c.put("k", "v", ttl::after(1s)));
  CHECK(must(c.get("k")).str() == "v");
  clk->advance(1s);
  CHECK_FALSE(must(c.get("k"))); // asked of the shard, which removes it
  auto s = must(c.stats());
  CHECK(s.expired == 1);
  CHECK(s.hits == 1);
  CHECK(s.misses == 1);
}

TEST_CASE("a write-back cache serves its dirty entries directly (rule 3)",
          "[direct][runtime][write_back]") {
  runtime rt;
  auto store =
    std::make_shared<testing::refusing_store>(std::make_shared<memory_store>());
  store->refuse_all = true; // nothing reaches the store: every entry stays dirty
  auto o = rt.default_options("dirty");
  o.writes = write_mode::write_back;
  o.backing_store = store;
  o.retry_base = 1ms;
  o.retry_max = 10ms;
  auto c = must(rt.create_cache(o));
  REQUIRE_FALSE(c.put("k", "v1"));
  REQUIRE_FALSE(c.put("k", "v2"));
  CHECK(must(c.get("k")).str() == "v2");
  CHECK(must(c.stats()).hits == 1);
  store->refuse_all = false;
}

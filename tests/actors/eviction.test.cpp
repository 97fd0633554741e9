// TinyLFU's pieces: the frequency sketch, the admission decision and the
// window that adapts to the workload.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <random>

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

// splitmix64, so that traces are the same on every standard library.
uint64_t next_random(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// A hot set that moves: a new item every 2 requests, and each request the
// youngest of three items drawn among the 20 x `capacity` newest. What was
// read recently is read next; what was read often is old (LRU's case).
void replay_recency(policy_cache& c, uint64_t requests, uint64_t& newest,
                    uint64_t& seed) {
  auto live = 20 * c.capacity;
  for (uint64_t i = 0; i < requests; ++i) {
    if (i % 2 == 0) ++newest;
    auto age = std::min(
      {next_random(seed) % live, next_random(seed) % live, next_random(seed) % live});
    c.access(newest + live - age);
  }
}

// A fixed skewed hot set (item i drawn with weight ~ 1/i, over 4 x
// `capacity` items) with every 4th request a new item read once: what was
// read often is read again, and a large window only lets one-offs push hot
// items out (LFU's case).
void replay_frequency(policy_cache& c, uint64_t requests, uint64_t& seed) {
  auto hot = 4 * c.capacity;
  uint64_t cold = uint64_t{1} << 40;
  for (uint64_t i = 0; i < requests; ++i) {
    if (i % 4 == 3) {
      c.access(cold++);
      continue;
    }
    // 1/i weights: the log of a uniform draw over [1, hot] is uniform.
    auto u = static_cast<double>(next_random(seed) >> 11) * 0x1.0p-53;
    c.access(static_cast<uint64_t>(std::pow(static_cast<double>(hot), u)));
  }
}

} // namespace

TEST_CASE("the window climber follows the hit ratio up and turns when it falls",
          "[policy]") {
  // A workload whose hit ratio is a known function of the window: each
  // sample of 1000 requests hits `ratio(window)` of them.
  auto climb = [](auto ratio) {
    constexpr uint64_t capacity = 10'000;
    window_climber climber{capacity};
    int64_t window = 100;
    for (int sample = 0; sample < 200; ++sample)
      for (int i = 0; i < 1000; ++i) {
        auto hits =
          static_cast<int>(1000 * ratio(static_cast<double>(window) / capacity));
        if (auto change = climber.record(i < hits, 1000))
          window = std::clamp<int64_t>(window + change, 10, capacity - 10);
      }
    return static_cast<double>(window) / capacity;
  };
  // Hit ratio rises with the window (a recency workload): it grows.
  CHECK(climb([](double w) { return 0.2 + 0.5 * w; }) > 0.8);
  // Falls with the window (frequency): it stays small.
  CHECK(climb([](double w) { return 0.7 - 0.5 * w; }) < 0.1);
  // Best at 40 %: it settles near there.
  auto peak = climb([](double w) { return 0.7 - std::abs(w - 0.4); });
  CHECK(peak > 0.25);
  CHECK(peak < 0.55);
}

TEST_CASE("the W-TinyLFU window grows on a moving hot set and shrinks on a stable skew",
          "[policy]") {
  policy_cache c{eviction_policy_kind::tiny_lfu, 1000};
  CHECK(c.policy->window_capacity() == 10); // starts at 1 %
  uint64_t newest = 0;
  uint64_t seed = 3;
  replay_recency(c, 400'000, newest, seed);
  auto grown = c.policy->window_capacity();
  CHECK(grown >= 500);
  replay_frequency(c, 1'000'000, seed);
  auto shrunk = c.policy->window_capacity();
  CHECK(shrunk <= grown / 2);
  INFO("window after recency " << grown << ", after frequency " << shrunk);
}

namespace {

double hits_of(eviction_policy_kind kind, void (*replay)(policy_cache&)) {
  policy_cache c{kind, 1000};
  replay(c);
  return static_cast<double>(c.hits);
}

// A loop 1.5 x the cache, 100 passes: LRU evicts each item just before it is
// read again and never hits; a cache that keeps a fixed 1000 of the 1500 hits
// 2/3 of the requests.
void replay_loop(policy_cache& c) {
  for (uint64_t i = 0; i < 150'000; ++i)
    c.access(i % 1500);
}

void replay_recency_from_start(policy_cache& c) {
  uint64_t newest = 0;
  uint64_t seed = 5;
  replay_recency(c, 400'000, newest, seed);
}

} // namespace

TEST_CASE("W-TinyLFU does no worse than LRU on a loop larger than the cache",
          "[policy]") {
  auto tiny = hits_of(eviction_policy_kind::tiny_lfu, replay_loop);
  auto lru = hits_of(eviction_policy_kind::lru, replay_loop);
  INFO("loop hits: W-TinyLFU " << tiny << ", LRU " << lru);
  CHECK(lru == 0);
  // Churning main as LRU churns the cache would hit never; keeping most of it
  // hits over half of what a fixed 1000 items would.
  CHECK(tiny >= 0.5 * 150'000 * 1000 / 1500);
}

// Issue 14's targets, not met yet (reported, not failing the suite): a moving
// hot set at least as well as LRU (W-TinyLFU ~0.46 of LRU's hits here), and a
// loop at 0.9 x cache / loop length (0.89 here).
TEST_CASE("W-TinyLFU matches LRU on a moving hot set and 0.9 of a fixed subset on a loop",
          "[policy][!mayfail]") {
  auto tiny = hits_of(eviction_policy_kind::tiny_lfu, replay_recency_from_start);
  auto lru = hits_of(eviction_policy_kind::lru, replay_recency_from_start);
  INFO("recency hits: W-TinyLFU " << tiny << ", LRU " << lru);
  CHECK(tiny >= lru);
  CHECK(hits_of(eviction_policy_kind::tiny_lfu, replay_loop) >=
        0.9 * 150'000 * 1000 / 1500);
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
  CHECK(policy->metadata_bytes() <= 8u << 20); // the eager part only (2^20 entries)
  frequency_sketch sketch{16};
  for (int i = 0; i < 7; ++i)
    sketch.increment(42);
  sketch.ensure_capacity(100'000);
  CHECK(sketch.capacity() == 100'000);
  CHECK(sketch.frequency(42) == 7);
  CHECK(sketch.bytes() >= 100'000 * 8);
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

// The shard's plain state, without actors: TTL, bounds, stats, listener, limits.
#include <catch2/catch.hpp>

#include <string>
#include <utility>
#include <vector>

#include "actors/shard_state.hpp"
#include "support/times.hpp"
#include <karlton/messages/errors.hpp>

using namespace karlton;
using namespace std::chrono_literals;
using karlton::test::at;
using karlton::test::t0;

namespace {

value val(const std::string& k, const std::string& v = "v") {
  return value::make(k, v);
}

shard_options with_ttl(caf::timespan d) {
  shard_options cfg;
  cfg.default_ttl = ttl::after(d);
  return cfg;
}

} // namespace

TEST_CASE("an entry is served until its default TTL runs out, then never again",
          "[ttl]") {
  shard_state s{with_ttl(2s)};
  REQUIRE_FALSE(s.put(val("user_123", "John"), ttl::cache_default(), t0));
  CHECK(s.get("user_123", at(0ms)).bytes() == "John");
  CHECK(s.get("user_123", at(1999ms)).bytes() == "John");
  CHECK_FALSE(s.get("user_123", at(2000ms)));
  CHECK_FALSE(s.get("user_123", at(5000ms)));
  auto st = s.stats();
  CHECK(st.hits == 2);
  CHECK(st.misses == 2);
  CHECK(st.expired == 1);
  CHECK(st.entries == 0);
}

TEST_CASE("a per-entry TTL overrides the default, and never means never", "[ttl]") {
  shard_state s{with_ttl(2s)};
  REQUIRE_FALSE(s.put(val("short"), ttl::after(100ms), t0));
  REQUIRE_FALSE(s.put(val("long"), ttl::after(10s), t0));
  REQUIRE_FALSE(s.put(val("forever"), ttl::never(), t0));
  REQUIRE_FALSE(s.put(val("default"), ttl::cache_default(), t0));
  auto later = at(3000ms);
  CHECK_FALSE(s.contains("short", later));
  CHECK(s.contains("long", later));
  CHECK(s.contains("forever", at(std::chrono::hours{24 * 365})));
  CHECK_FALSE(s.contains("default", later));
}

TEST_CASE("remaining TTL says missing, never or the time left", "[ttl]") {
  shard_state s{with_ttl(2s)};
  REQUIRE_FALSE(s.put(val("k"), ttl::cache_default(), t0));
  REQUIRE_FALSE(s.put(val("n"), ttl::never(), t0));
  auto r = s.ttl_of("k", at(500ms));
  CHECK(r.state == remaining_ttl::expires);
  CHECK(r.left == std::chrono::milliseconds{1500});
  CHECK(s.ttl_of("n", at(500ms)).state == remaining_ttl::never_expires);
  CHECK(s.ttl_of("nope", at(500ms)).state == remaining_ttl::missing);
  CHECK(s.ttl_of("k", at(2000ms)).state == remaining_ttl::missing);
}

TEST_CASE("a non-positive TTL is refused", "[ttl][errors]") {
  shard_state s{shard_options{}};
  auto err = s.put(val("k"), ttl::after(0s), t0);
  CHECK(err == errc::invalid_option);
  CHECK(s.size() == 0);
}

TEST_CASE("remove_expired reclaims expired entries without reading them", "[ttl]") {
  shard_state s{with_ttl(1s)};
  for (int i = 0; i < 100; ++i)
    REQUIRE_FALSE(s.put(val("a" + std::to_string(i)), ttl::cache_default(), t0));
  for (int i = 0; i < 50; ++i)
    REQUIRE_FALSE(s.put(val("b" + std::to_string(i)), ttl::after(5s), t0));
  CHECK(s.remove_expired(at(999ms)) == 0);
  CHECK(s.remove_expired(at(1000ms)) == 100);
  CHECK(s.size() == 50);
  CHECK(s.stats().expired == 100);
  CHECK(s.stats().misses == 0); // nobody read them
  CHECK(s.next_expiry() == at(5000ms));
}

TEST_CASE("remove_expired does bounded work per call", "[ttl]") {
  shard_state s{with_ttl(1s)};
  for (int i = 0; i < 5000; ++i)
    REQUIRE_FALSE(s.put(val(std::to_string(i)), ttl::cache_default(), t0));
  CHECK(s.remove_expired(at(2s), 1024) == 1024);
  CHECK(s.size() == 5000 - 1024);
  uint64_t total = 1024;
  while (auto n = s.remove_expired(at(2s), 1024))
    total += n;
  CHECK(total == 5000);
  CHECK(s.size() == 0);
  CHECK_FALSE(s.next_expiry());
}

TEST_CASE("an overwrite replaces the old deadline", "[ttl]") {
  shard_state s{shard_options{}};
  REQUIRE_FALSE(s.put(val("k", "old"), ttl::after(1s), t0));
  REQUIRE_FALSE(s.put(val("k", "new"), ttl::after(10s), t0));
  CHECK(s.remove_expired(at(2s)) == 0);
  CHECK(s.get("k", at(2s)).bytes() == "new");
  REQUIRE_FALSE(s.put(val("k", "forever"), ttl::never(), at(2s)));
  CHECK(s.remove_expired(at(20s)) == 0);
  CHECK(s.get("k", at(20s)).bytes() == "forever");
}

TEST_CASE("stale deadlines from churn do not grow without bound", "[ttl]") {
  shard_state s{with_ttl(std::chrono::hours{1})};
  for (int round = 0; round < 200; ++round)
    for (int i = 0; i < 100; ++i)
      REQUIRE_FALSE(s.put(val(std::to_string(i)), ttl::cache_default(), t0));
  // 20,000 puts over 100 keys: the heap is rebuilt, not 20,000 deadlines deep.
  CHECK(s.metadata_bytes() < 200'000);
  CHECK(s.size() == 100);
}

TEST_CASE("the entry bound holds under inserts", "[bounds]") {
  for (auto policy : {eviction_policy_kind::tiny_lfu, eviction_policy_kind::lru}) {
    shard_options cfg;
    cfg.max_entries = 100;
    cfg.policy = policy;
    shard_state s{cfg};
    for (int i = 0; i < 1000; ++i) {
      REQUIRE_FALSE(s.put(val(std::to_string(i)), ttl::never(), t0));
      REQUIRE(s.size() <= 100);
    }
    CHECK(s.size() == 100);
    CHECK(s.stats().evictions == 900);
  }
}

TEST_CASE("the byte bound holds under inserts", "[bounds]") {
  shard_options cfg;
  cfg.max_bytes = 10'000;
  shard_state s{cfg};
  std::string hundred(96, 'x');
  for (int i = 0; i < 1000; ++i) {
    REQUIRE_FALSE(s.put(val("k" + std::to_string(1000 + i), hundred), ttl::never(), t0));
    REQUIRE(s.stats().bytes <= 10'000);
  }
  CHECK(s.stats().bytes == s.size() * 101);
  CHECK(s.size() >= 90);
}

TEST_CASE("LRU evicts the least recently used entry", "[bounds]") {
  shard_options cfg;
  cfg.max_entries = 3;
  cfg.policy = eviction_policy_kind::lru;
  shard_state s{cfg};
  for (auto k : {"a", "b", "c"})
    REQUIRE_FALSE(s.put(val(k), ttl::never(), t0));
  CHECK(s.get("a", t0)); // b is now the oldest
  REQUIRE_FALSE(s.put(val("d"), ttl::never(), t0));
  CHECK(s.contains("a", t0));
  CHECK_FALSE(s.contains("b", t0));
  CHECK(s.contains("c", t0));
  CHECK(s.contains("d", t0));
}

namespace {

// A scan-polluted trace: 1,000 hot keys read in a cycle, interleaved 1:1 with
// a single pass over 100,000 cold keys. Cache of 1,000 entries.
double hit_ratio(eviction_policy_kind policy) {
  shard_options cfg;
  cfg.max_entries = 1000;
  cfg.policy = policy;
  shard_state s{cfg};
  uint64_t hits = 0, total = 0;
  auto access = [&](const std::string& k) {
    ++total;
    if (s.get(k, t0))
      ++hits;
    else
      REQUIRE_FALSE(s.put(val(k), ttl::never(), t0));
  };
  uint64_t x = 12345;
  for (int i = 0; i < 100'000; ++i) {
    x = x * 6364136223846793005ull + 1442695040888963407ull; // LCG: deterministic
    // Hot keys follow a skewed distribution: the square of a uniform number.
    auto u = static_cast<double>(x >> 11) / 9007199254740992.0;
    access("hot" + std::to_string(static_cast<int>(u * u * 1000)));
    access("cold" + std::to_string(i));
  }
  return static_cast<double>(hits) / static_cast<double>(total);
}

} // namespace

TEST_CASE("TinyLFU beats LRU on a scan-polluted trace", "[bounds][policy]") {
  auto lru = hit_ratio(eviction_policy_kind::lru);
  auto tlfu = hit_ratio(eviction_policy_kind::tiny_lfu);
  INFO("lru " << lru << ", tinylfu " << tlfu);
  // Half the accesses are one-time cold keys, so 0.5 is the ceiling.
  CHECK(tlfu >= lru + 0.10);
  CHECK(tlfu > 0.40);
}

TEST_CASE("stats are exact", "[stats]") {
  shard_options cfg;
  cfg.max_entries = 2;
  cfg.policy = eviction_policy_kind::lru;
  cfg.default_ttl = ttl::after(1s);
  shard_state s{cfg};
  REQUIRE_FALSE(s.put(val("a", "12345"), ttl::cache_default(), t0)); // 6 bytes
  REQUIRE_FALSE(s.put(val("b", "123"), ttl::never(), at(10ms)));     // 4 bytes
  CHECK(s.get("a", at(20ms)));                                       // hit, age 20 ms
  CHECK(s.get("b", at(1010ms)));                                     // hit, age 1000 ms
  CHECK_FALSE(s.get("zz", at(1010ms)));                              // miss
  CHECK_FALSE(s.get("a", at(1010ms)));                               // expired: miss
  REQUIRE_FALSE(s.put(val("c", "1"), ttl::never(), at(1010ms)));
  REQUIRE_FALSE(s.put(val("d", "1"), ttl::never(), at(1010ms))); // evicts b
  CHECK(s.erase("c", at(1010ms)));
  CHECK_FALSE(s.erase("c", at(1010ms)));
  auto st = s.stats();
  CHECK(st.hits == 2);
  CHECK(st.misses == 2);
  CHECK(st.hit_rate() == Approx(0.5));
  CHECK(st.puts == 4);
  CHECK(st.expired == 1);
  CHECK(st.evictions == 1);
  CHECK(st.invalidations == 1);
  CHECK(st.entries == 1);
  CHECK(st.bytes == 2);
  CHECK(st.hit_age.count() == 2);
  CHECK(st.age_p50_ms() >= 20); // within the histogram's 12.5 % resolution
  CHECK(st.age_p50_ms() <= 22);
  CHECK(st.age_p99_ms() >= 1000);
  CHECK(st.age_p99_ms() <= 1000 * 9 / 8);
}

TEST_CASE("a key or value over its limit is refused and nothing is stored", "[errors]") {
  shard_options cfg;
  cfg.max_key_bytes = 8;
  cfg.max_value_bytes = 16;
  shard_state s{cfg};
  auto err = s.put(value::make("123456789", "v"), ttl::never(), t0);
  CHECK(err == errc::key_too_large);
  CHECK(describe(err).find("max-key-bytes (8)") != std::string::npos);
  err = s.put(value::make("k", std::string(17, 'x')), ttl::never(), t0);
  CHECK(err == errc::value_too_large);
  CHECK(s.put(value::make("12345678", std::string(16, 'x')), ttl::never(), t0) ==
        caf::none);
  CHECK(s.size() == 1);
  CHECK(s.stats().rejected == 2);
}

TEST_CASE("the removal listener is told the key and the cause", "[listener]") {
  std::vector<std::pair<std::string, removal_cause>> seen;
  shard_options cfg;
  cfg.max_entries = 2;
  cfg.policy = eviction_policy_kind::lru;
  cfg.on_removal = [&](const value& v, removal_cause why) {
    seen.emplace_back(std::string{v.key()}, why);
  };
  shard_state s{cfg};
  REQUIRE_FALSE(s.put(val("a", "1"), ttl::after(1s), t0));
  REQUIRE_FALSE(s.put(val("a", "2"), ttl::after(1s), t0)); // replaced
  REQUIRE_FALSE(s.put(val("b"), ttl::never(), t0));
  REQUIRE_FALSE(s.put(val("c"), ttl::never(), t0)); // evicts a
  CHECK(s.erase("b", t0));                          // explicit
  REQUIRE_FALSE(s.put(val("d"), ttl::after(1s), t0));
  CHECK(s.remove_expired(at(1s)) == 1); // d expired
  using p = std::pair<std::string, removal_cause>;
  CHECK(seen == std::vector<p>{{"a", removal_cause::replaced},
                               {"a", removal_cause::evicted},
                               {"b", removal_cause::explicit_erase},
                               {"d", removal_cause::expired}});
}

TEST_CASE("clear removes everything and counts it as invalidation", "[stats]") {
  shard_state s{with_ttl(1s)};
  for (int i = 0; i < 10; ++i)
    REQUIRE_FALSE(s.put(val(std::to_string(i)), ttl::cache_default(), t0));
  CHECK(s.clear() == 10);
  CHECK(s.size() == 0);
  CHECK(s.stats().invalidations == 10);
  CHECK(s.stats().bytes == 0);
  CHECK_FALSE(s.next_expiry());
  REQUIRE_FALSE(s.put(val("again"), ttl::cache_default(), t0));
  CHECK(s.get("again", t0));
}

TEST_CASE("a value shared with its sender is copied before the shard stamps it",
          "[value]") {
  shard_state s{shard_options{}};
  auto v = val("k", "bytes");
  REQUIRE_FALSE(s.put(v, ttl::never(), at(5ms)));
  auto stored = s.get("k", at(5ms));
  CHECK(stored.bytes() == "bytes");
  CHECK(v.born_ms() == 0); // the caller's buffer was not written to
}

TEST_CASE("a put with the largest TTL lives, and a negative TTL is refused",
          "[shard][ttl][errors]") {
  shard_state s{shard_options{}};
  // Its milliseconds, rounded up, overflowed: the entry expired at once.
  REQUIRE_FALSE(s.put(value::make("k", "v"), ttl::after(caf::timespan::max()), t0));
  CHECK(s.get("k", at(1s)).bytes() == "v");
  CHECK(s.ttl_of("k", at(1s)).found());
  CHECK_FALSE(ttl::after(-1ns).valid());
}

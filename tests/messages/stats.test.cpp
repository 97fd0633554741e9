// The age histogram behind the staleness percentiles.
#include <catch2/catch.hpp>

#include "messages/stats.hpp"

using namespace karlton;

TEST_CASE("age percentiles are within the histogram's resolution", "[stats]") {
  age_histogram h;
  CHECK(h.percentile(0.5) == 0);
  for (uint32_t ms = 1; ms <= 1000; ++ms)
    h.record(ms);
  CHECK(h.count() == 1000);
  auto p50 = h.percentile(0.5);
  auto p99 = h.percentile(0.99);
  CHECK(p50 >= 500);
  CHECK(p50 <= 500 * 9 / 8);
  CHECK(p99 >= 990);
  CHECK(p99 <= 990 * 9 / 8);
  for (uint32_t ms : {0u, 5u, 15u}) {
    age_histogram exact;
    exact.record(ms);
    CHECK(exact.percentile(0.5) == ms);
  }
  age_histogram big;
  big.record(UINT32_MAX);
  CHECK(big.percentile(1.0) >= UINT32_MAX);
}

TEST_CASE("stats of shards add up", "[stats]") {
  cache_stats a, b;
  a.hits = 1;
  a.misses = 1;
  a.hit_age.record(10);
  b.hits = 2;
  b.entries = 5;
  b.hit_age.record(20);
  a.negative_hits = 1;
  b.negative_hits = 2;
  a += b;
  CHECK(a.hits == 3);
  CHECK(a.entries == 5);
  CHECK(a.hit_rate() == Approx(0.75));
  CHECK(a.hit_age.count() == 2);
  CHECK(a.negative_hits == 3);
}

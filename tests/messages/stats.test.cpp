// The age histogram behind the staleness percentiles.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include <caf/binary_deserializer.hpp>
#include <caf/binary_serializer.hpp>

#include <karlton/messages/errors.hpp>
#include <karlton/messages/stats.hpp>

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
  a.loads_out = 4;
  b.loads_out = 8;
  a.loads_queued = 1;
  b.loads_queued = 1024;
  b.loads_refused = 3;
  a += b;
  CHECK(a.hits == 3);
  CHECK(a.entries == 5);
  CHECK(a.hit_rate() == Approx(0.75));
  CHECK(a.hit_age.count() == 2);
  CHECK(a.negative_hits == 3);
  CHECK(a.loads_out == 12);
  CHECK(a.loads_queued == 1025);
  CHECK(a.loads_refused == 3);
}

// Found by the messages fuzzer (fuzz/messages.fuzz.cpp): a histogram from
// another node with one bucket, which `merge` then read past.
TEST_CASE("a histogram with the wrong number of buckets does not deserialize",
          "[stats][fuzz]") {
  const char bytes[] = "\x01\x00\x14\x00\x00\x00\x00\x00\x00\xff\xff\x14\x00\x00\x00\x00"
                       "\x00\x00\x00\xff\xff";
  age_histogram h;
  caf::binary_deserializer source{nullptr, bytes, sizeof bytes - 1};
  auto err = source(h);
  REQUIRE(err);
  CHECK(describe(err).find("age histogram of 1 buckets") != std::string::npos);
  CHECK(h.count() == 0);
  age_histogram sum; // what a cache does with its shards' stats
  sum.merge(h);
  CHECK(sum.percentile(0.5) == 0);
}

TEST_CASE("a histogram survives a serialization round trip", "[stats]") {
  age_histogram h;
  for (uint32_t ms : {1u, 20u, 300u})
    h.record(ms);
  std::vector<char> buf;
  caf::binary_serializer sink{nullptr, buf};
  REQUIRE(!sink(h));
  age_histogram back;
  caf::binary_deserializer source{nullptr, buf};
  REQUIRE(!source(back));
  CHECK(back.count() == 3);
  CHECK(back.percentile(1.0) == h.percentile(1.0));
}

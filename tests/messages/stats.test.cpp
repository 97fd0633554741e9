// The age histogram behind the staleness percentiles.
#include <catch2/catch.hpp>

#include <algorithm>
#include <string>
#include <utility>
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
  // The nearest rank, rounded up: of 60 samples p99 is the 60th. Before, the
  // 59th, and the one stale value went unseen.
  age_histogram few;
  for (int i = 0; i < 59; ++i)
    few.record(1);
  few.record(10'000);
  CHECK(few.percentile(0.99) >= 10'000);
  CHECK(few.percentile(0.5) == 1);
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
  a.expiring = 1;
  b.expiring = 2;
  a += b;
  CHECK(a.hits == 3);
  CHECK(a.entries == 5);
  CHECK(a.hit_rate() == Approx(0.75));
  CHECK(a.hit_age.count() == 2);
  CHECK(a.negative_hits == 3);
  CHECK(a.loads_out == 12);
  CHECK(a.loads_queued == 1025);
  CHECK(a.loads_refused == 3);
  CHECK(a.expiring == 3);
}

// Found by the messages fuzzer (fuzz/messages.fuzz.cpp): a histogram from
// another node with one bucket, which `merge` then read past. (The fuzzer's
// bytes, and four zero bytes more since the histogram also carries its sum.)
TEST_CASE("a histogram with the wrong number of buckets does not deserialize",
          "[stats][fuzz]") {
  const char bytes[] = "\x01\x00\x14\x00\x00\x00\x00\x00\x00\xff\xff\x14\x00\x00\x00\x00"
                       "\x00\x00\x00\xff\xff\x00\x00\x00\x00";
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
  CHECK(back.sum() == 321);
  CHECK(back.percentile(1.0) == h.percentile(1.0));
}

TEST_CASE("a histogram's sum is exact and its buckets hold every sample once",
          "[stats]") {
  age_histogram h;
  CHECK(h.sum() == 0);
  uint64_t calls = 0;
  h.for_each_bucket([&](uint64_t, uint64_t) { ++calls; });
  CHECK(calls == 0);
  std::vector<uint32_t> samples{0, 3, 3, 15, 16, 17, 1000, 1001, 70000, UINT32_MAX};
  uint64_t expected_sum = 0;
  for (auto ms : samples) {
    h.record(ms);
    expected_sum += ms;
  }
  CHECK(h.sum() == expected_sum);
  // Each sample is in the first bucket whose upper bound is at or above it,
  // and the buckets come in increasing order.
  std::vector<std::pair<uint64_t, uint64_t>> buckets;
  h.for_each_bucket([&](uint64_t upper, uint64_t n) { buckets.emplace_back(upper, n); });
  uint64_t total = 0;
  for (size_t i = 0; i < buckets.size(); ++i) {
    auto [upper, n] = buckets[i];
    uint64_t lower = i == 0 ? 0 : buckets[i - 1].first + 1;
    CHECK(upper >= lower);
    uint64_t in_range = 0;
    for (auto ms : samples)
      if (ms >= lower && ms <= upper) ++in_range;
    CHECK(in_range == n);
    total += n;
  }
  CHECK(total == samples.size());
  CHECK(buckets.front() == std::pair<uint64_t, uint64_t>{0, 1});
  CHECK(buckets[1] == std::pair<uint64_t, uint64_t>{3, 2});
  CHECK(buckets.back().first >= UINT32_MAX);
  // Merging adds the sums as it adds the counts.
  age_histogram other;
  other.record(5);
  other.merge(h);
  CHECK(other.sum() == expected_sum + 5);
  CHECK(other.count() == samples.size() + 1);
}

TEST_CASE("a histogram whose sum no samples could reach does not deserialize",
          "[stats]") {
  age_histogram h;
  h.record(7);
  std::vector<char> buf;
  caf::binary_serializer sink{nullptr, buf};
  REQUIRE(!sink(h));
  // The sum is the last 8 bytes (big endian): make it 2^40 for 1 sample.
  REQUIRE(buf.size() >= 8);
  std::fill(buf.end() - 8, buf.end(), 0);
  buf[buf.size() - 6] = 1;
  age_histogram back;
  caf::binary_deserializer source{nullptr, buf};
  auto err = source(back);
  REQUIRE(err);
  CHECK(describe(err).find("cannot add up to") != std::string::npos);
  CHECK(back.count() == 0);
  CHECK(back.sum() == 0);
}

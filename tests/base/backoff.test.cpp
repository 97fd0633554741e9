// The one backoff every retry of karlton uses (base/backoff.hpp).
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <limits>
#include <random>

#include "base/backoff.hpp"

using namespace karlton;
using namespace std::chrono_literals;

TEST_CASE("a doubled wait starts at base and stops at max", "[backoff]") {
  CHECK(doubled_wait(10ms, 75ms, 1) == 10ms);
  CHECK(doubled_wait(10ms, 75ms, 2) == 20ms);
  CHECK(doubled_wait(10ms, 75ms, 3) == 40ms);
  CHECK(doubled_wait(10ms, 75ms, 4) == 75ms);
  CHECK(doubled_wait(10ms, 75ms, 0) == 10ms); // no failure yet: the base
}

TEST_CASE("a doubled wait saturates at max however many failures", "[backoff]") {
  auto huge = std::chrono::nanoseconds::max();
  CHECK(doubled_wait(std::chrono::nanoseconds{3}, huge, 1000) == huge);
  CHECK(doubled_wait<std::chrono::milliseconds>(
          1ms, 24h, std::numeric_limits<uint32_t>::max()) == 24h);
  // A zero base stays zero (and the loop does not run to the count).
  CHECK(doubled_wait<std::chrono::milliseconds>(
          0ms, 1s, std::numeric_limits<uint32_t>::max()) == 0ms);
}

TEST_CASE("equal jitter draws between half the wait and all of it", "[backoff]") {
  std::minstd_rand rng{7};
  bool low = false, high = false;
  for (int i = 0; i < 200; ++i) {
    auto w = equal_jitter(std::chrono::milliseconds{100}, rng);
    REQUIRE(w >= 50ms);
    REQUIRE(w <= 100ms);
    low = low || w < 60ms;
    high = high || w > 90ms;
  }
  CHECK(low);
  CHECK(high);
}

// Times in whole milliseconds, the unit shards keep expiries in (internal).
#pragma once

#include <chrono>
#include <cstdint>

#include <karlton/base/clock.hpp>

namespace karlton {

/// Milliseconds of `t` since the clock's epoch: the unit shards keep expiries
/// in (a time before the epoch counts as 0).
inline uint64_t to_ms(clock::time_point t) noexcept {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch());
  return ms.count() < 0 ? 0 : static_cast<uint64_t>(ms.count());
}

/// `d` in whole milliseconds, rounded up; 0 for none or less. Not
/// (ns + 999'999) / 1'000'000: that overflows for a TTL near the largest
/// timespan, which then expired at once.
inline uint64_t ceil_ms(std::chrono::nanoseconds d) noexcept {
  auto ns = d.count();
  if (ns <= 0) return 0;
  return static_cast<uint64_t>(ns / 1'000'000 + (ns % 1'000'000 != 0 ? 1 : 0));
}

} // namespace karlton

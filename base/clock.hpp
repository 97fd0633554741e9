// The time source of a runtime: the steady clock, or a manual clock for tests.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>

namespace karlton {

/// Where shards read the time for TTLs and ages. Injected into the runtime,
/// so tests move time by hand instead of sleeping.
/// @threadsafe `now()` may be called from any thread.
class clock {
public:
  /// Steady-clock time, so TTLs never jump with the wall clock.
  using time_point = std::chrono::steady_clock::time_point;
  virtual ~clock() = default;
  /// The current time; never goes backwards.
  virtual time_point now() const noexcept = 0;
};

/// The default: `std::chrono::steady_clock`.
class steady_clock final : public clock {
public:
  /// `std::chrono::steady_clock::now()`.
  time_point now() const noexcept override { return std::chrono::steady_clock::now(); }
};

/// A clock that moves only when told to. Starts at a fixed, arbitrary point.
/// @threadsafe
class manual_clock final : public clock {
public:
  /// Starts at `start` (by default one hour past the steady clock's epoch).
  explicit manual_clock(time_point start = time_point{std::chrono::hours{1}})
    : ns_(start.time_since_epoch().count()) {}
  /// The start plus every `advance` so far.
  time_point now() const noexcept override {
    return time_point{time_point::duration{ns_.load(std::memory_order_acquire)}};
  }
  /// Moves the time forward by `d`; shards see it at their next read of the
  /// clock.
  void advance(std::chrono::nanoseconds d) noexcept {
    ns_.fetch_add(d.count(), std::memory_order_acq_rel);
  }

private:
  std::atomic<int64_t> ns_;
};

/// Nanoseconds of the wall clock since the Unix epoch: what invalidations
/// carry between nodes, whose steady clocks have nothing in common. Only for
/// measuring delays, never for expiry.
inline int64_t wall_clock_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
           std::chrono::system_clock::now().time_since_epoch())
    .count();
}

} // namespace karlton

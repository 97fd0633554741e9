#include "actors/adaptive_window.hpp"

#include <algorithm>
#include <cmath>

#include "messages/hash.hpp"

namespace karlton {

// -- ghost_filter -------------------------------------------------------------

namespace {

// Slots per entry of horizon: with 2, a hash survives the other adds of its
// horizon with probability about exp(-1/2).
constexpr uint64_t ghost_slots_per_horizon = 2;

uint32_t ghost_mark(uint32_t hash) noexcept {
  return hash != 0 ? hash : 1;
}

} // namespace

ghost_filter::ghost_filter(uint64_t horizon)
  : slots_(std::max<uint64_t>(horizon * ghost_slots_per_horizon, 1)),
    // Sequence numbers wrap at 2^32: a hash left untouched for 2^32 adds may
    // count once more, which only nudges the window.
    horizon_(static_cast<uint32_t>(std::min<uint64_t>(horizon, UINT32_MAX / 2))) {}

size_t ghost_filter::slot_of(uint32_t hash) const noexcept {
  // A mix independent of the sketch's and the table's use of the hash.
  auto x = hashing::splitmix64(hash ^ 0x5851f42d4c957f2dull);
  return static_cast<size_t>((static_cast<__uint128_t>(x) * slots_.size()) >> 64);
}

void ghost_filter::add(uint32_t hash) noexcept {
  slots_[slot_of(hash)] = {ghost_mark(hash), added_++};
}

bool ghost_filter::take(uint32_t hash) noexcept {
  auto& s = slots_[slot_of(hash)];
  if (s.hash != ghost_mark(hash)) return false;
  s.hash = 0;
  return static_cast<uint32_t>(added_ - s.seq) <= horizon_;
}

void ghost_filter::clear() noexcept {
  std::fill(slots_.begin(), slots_.end(), slot{});
  added_ = 0;
}

// -- window_climber -----------------------------------------------------------

namespace {

// The window stays between 0.2 % and 99 % of the capacity: 0.2 % keeps a
// newcomer in the window for a few hundred requests even in a small cache,
// 99 % leaves main room for what the sketch knows to be hot.
uint64_t min_window(uint64_t capacity) {
  return std::max<uint64_t>(1, capacity / 500);
}
uint64_t max_window(uint64_t capacity) {
  return std::max<uint64_t>(1, percent_of(capacity, 99));
}
// Steps run from 1/100,000 of the capacity (fine enough for the balance of a
// skewed trace at 10 % of its keys) to 1 %, or to half the window once that is
// more. Small windows (skewed traces) thus take small steps (Caffeine's first
// step is 6.25 %; steps up to 5 % let the scan trace's window overshoot:
// -0.003 at 10 %), while a window that must grow to nearly the whole cache (a
// hot set that moves) grows by half each decision: it got there in about 17
// decisions instead of 104 at 1 % of 1M keys, and the moving hot set went from
// 0.004-0.012 below LRU to 0.0013 below - 0.0013 above, the skewed traces and
// the loop unchanged (karlton-bench hit-ratio; docs/benchmarks.md). A turn
// halves the step, so a window that sat at 99 % and turns gives back about a
// quarter of the cache at once.
uint64_t min_step(uint64_t capacity) {
  return std::max<uint64_t>(1, capacity / 100'000);
}
uint64_t max_step(uint64_t capacity, uint64_t window) {
  return std::max<uint64_t>({1, capacity / 100, window / 2});
}
// The vote: of `period` findings, at least 22 must be the window's for it to
// grow (two standard deviations of a fair coin above half), at least 18 main's
// for it to shrink. Growing costs entries the sketch chose and shrinking gives them back,
// so the window must make its case; with equal margins of 6, a skewed trace
// whose sides find about as often lost 0.001-0.002 at 10 % to the wandering
// (karlton-bench hit-ratio, docs/benchmarks.md).
constexpr int grow_margin = 10;
constexpr int shrink_margin = 2;

} // namespace

window_climber::window_climber(uint64_t capacity)
  : capacity_(std::max<uint64_t>(capacity, 1)) {
  reset();
}

void window_climber::reset() noexcept {
  window_ = std::max<uint64_t>(1, capacity_ / 100);
  step_ = min_step(capacity_);
  score_ = votes_ = last_direction_ = 0;
  last_rate_ = -1;
  moved_ = false;
}

void window_climber::end_sample(uint64_t hits, uint64_t requests) noexcept {
  if (requests == 0) return;
  auto rate = static_cast<double>(hits) / static_cast<double>(requests);
  bool held_large = !moved_ && window_ > capacity_ / 2;
  bool changed = last_rate_ >= 0 && std::abs(rate - last_rate_) > restart_change;
  if (held_large && changed) reset();
  last_rate_ = rate;
  moved_ = false;
}

void window_climber::vote(int side) noexcept {
  score_ += side;
  if (++votes_ < period) return;
  int direction = score_ > grow_margin ? 1 : score_ < -shrink_margin ? -1 : 0;
  score_ = votes_ = 0;
  if (direction == 0) return;
  step_ = direction == last_direction_ ? std::min(max_step(capacity_, window_), step_ * 2)
                                       : std::max(min_step(capacity_), step_ / 2);
  last_direction_ = direction;
  auto low = min_window(capacity_);
  auto high = max_window(capacity_);
  auto before = window_;
  if (direction > 0) // never past `high` (it starts below), never overflowing
    window_ += std::min(step_, high - window_);
  else
    window_ = window_ > low + step_ ? window_ - step_ : low;
  moved_ = moved_ || window_ != before;
}

} // namespace karlton

// W-TinyLFU's adaptive window: ghosts of recent evictions, and the climber
// that sizes the window from them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace karlton {

/// `percent` % of `x`, rounded down, without the overflow of `x * percent`
/// (capacities under max-bytes are byte counts: up to 2^48 from the options,
/// and the policy takes any).
inline uint64_t percent_of(uint64_t x, uint64_t percent) {
  return x / 100 * percent + x % 100 * percent / 100;
}

/// Entries evicted a short while ago, remembered by their 32-bit hash: ARC's
/// ghost lists without the keys, for W-TinyLFU's adaptive window. `take(h)`
/// is true if `h` was added at most `horizon` adds ago and not taken since.
/// A direct-mapped table of 2 x `horizon` slots, so a later add to the same
/// slot can forget a hash early (about 4 in 10 within the horizon), but
/// nothing older than the horizon is ever found: a ghost that also found
/// older evictions now and then (a plain direct-mapped table) took a loop
/// 5 % longer than the cache for reuse the window could catch and lost 0.08
/// of its hit ratio. 16 bytes per entry of horizon.
class ghost_filter {
public:
  explicit ghost_filter(uint64_t horizon);
  void add(uint32_t hash) noexcept;
  /// True if `hash` is held and recent; it is forgotten either way, so one
  /// eviction counts once.
  bool take(uint32_t hash) noexcept;
  void clear() noexcept;
  size_t bytes() const noexcept { return slots_.size() * sizeof(slot); }

private:
  struct slot {
    uint32_t hash = 0; // 0: empty (a hash of 0 is kept as 1)
    uint32_t seq = 0;  // the add's number, modulo 2^32
  };
  size_t slot_of(uint32_t hash) const noexcept;
  std::vector<slot> slots_;
  uint32_t horizon_;
  uint32_t added_ = 0;
};

/// How large W-TinyLFU's window should be, learnt from its ghosts. A newcomer
/// found among the window's recent rejections says a larger window would have
/// hit it; one found among main's recent evictions, a larger main. Every
/// `period` such findings it moves the window one step toward the side that
/// found clearly more (a vote, so that traces whose sides find about as often
/// do not wander) and doubles the step while the direction holds, halving it
/// when it turns (Rprop's rule: fast across a large change, fine near the
/// balance), up to 1 % of the capacity or half the window, whichever is more.
/// Sizes are in the policy's weight units.
///
/// Ghosts see only each side's marginal entries, so a window grown past half
/// the cache can stay there when the workload turns skewed: main is then too
/// small for its gain to show at its margin (a hot set that moves, then Zipf:
/// the window stayed at 99 % at 1 %, 5 % and 10 % of the keys). So the
/// climber also reads the hit rate sample by sample (reads that hit, over
/// reads and newcomers; a put of a new key counts as a miss, a write over a
/// cached key not at all), and starts over from the first window when it
/// moved by more than `restart_change` in a sample the window spent above
/// half the cache without moving: the workload changed, not the window.
/// (Caffeine's climber, on the same change, resets its step to 6.25 %.)
class window_climber {
public:
  explicit window_climber(uint64_t capacity);
  /// The window's size now; at first 1 % of the capacity, Caffeine's default.
  uint64_t window() const noexcept { return window_; }
  /// A newcomer the window rejected within the ghosts' horizon.
  void window_would_have_hit() noexcept { vote(+1); }
  /// A newcomer main evicted within the ghosts' horizon.
  void main_would_have_hit() noexcept { vote(-1); }
  /// A sample of requests ended: `hits` of its `requests` were hits.
  void end_sample(uint64_t hits, uint64_t requests) noexcept;
  /// Back to the first window.
  void reset() noexcept;

  /// Findings per decision.
  static constexpr int period = 32;
  /// A change of the hit rate from one sample to the next that restarts a
  /// window held large. 0.05, Caffeine's restart threshold: 5 standard errors
  /// of the difference at the smallest sample (`tiny_lfu_policy::min_sample`).
  static constexpr double restart_change = 0.05;

private:
  void vote(int side) noexcept;
  uint64_t capacity_;
  uint64_t window_ = 0;
  uint64_t step_ = 0;
  int score_ = 0;
  int votes_ = 0;
  int last_direction_ = 0;
  double last_rate_ = -1; // the last sample's hit rate; -1: none yet
  bool moved_ = false;    // the window moved during this sample
};

} // namespace karlton

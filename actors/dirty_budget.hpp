// How many write-back writes of one cache may be pending (option max-dirty):
// an atomic count that shards take from and the flusher gives back to.
#pragma once

#include <atomic>
#include <cstdint>

namespace karlton {

/// Shards acquire one unit per write-back write before they accept it; the
/// flusher releases units as writes are stored or coalesced. A counter, not
/// a lock: nobody ever waits on it. A shard that finds no room parks the
/// write and sets `waiting`; the flusher, seeing `waiting` after a release,
/// tells the shards to look again (see shard_actor.cpp). A shard that gives
/// back a unit it did not use (a parked compute that wrote nothing) and finds
/// `waiting` asks the flusher to.
/// @threadsafe
class dirty_budget {
public:
  explicit dirty_budget(uint64_t limit) : limit_(limit) {}

  bool try_acquire() noexcept {
    if (used_.fetch_add(1, std::memory_order_acq_rel) < limit_) return true;
    used_.fetch_sub(1, std::memory_order_acq_rel);
    return false;
  }

  /// Returns `n` units; true if a shard may be waiting for them (the mark is
  /// taken: the caller must see that the shards look again).
  bool release(uint64_t n) noexcept {
    if (n == 0) return false;
    used_.fetch_sub(n, std::memory_order_acq_rel);
    return waiting_.exchange(false, std::memory_order_acq_rel);
  }

  /// A shard parked a write. It must try to acquire once more afterwards: a
  /// release between its failed attempt and this call saw no waiter.
  void mark_waiting() noexcept { waiting_.store(true, std::memory_order_seq_cst); }

  uint64_t used() const noexcept { return used_.load(std::memory_order_acquire); }
  uint64_t limit() const noexcept { return limit_; }

private:
  const uint64_t limit_;
  std::atomic<uint64_t> used_{0};
  std::atomic<bool> waiting_{false};
};

} // namespace karlton

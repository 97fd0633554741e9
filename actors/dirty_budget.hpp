// How many write-back writes of one cache may be pending (option max-dirty):
// an atomic count that shards take from and the flusher gives back to.
#pragma once

#include <atomic>
#include <cstdint>

namespace karlton {

/// Shards acquire one unit per write-back write before they accept it; the
/// flusher releases units as writes are stored or coalesced. A counter, not
/// a lock: nobody ever waits on it. A shard that finds no room parks the
/// write and sets `waiting`; the flusher, seeing `waiting` after a release
/// (its own or a shard's `put_back`), tells the shards to look again (see
/// shard_actor.cpp).
/// @threadsafe
class dirty_budget {
public:
  explicit dirty_budget(uint64_t limit) : limit_(limit) {}

  bool try_acquire() noexcept {
    if (used_.fetch_add(1, std::memory_order_acq_rel) < limit_) return true;
    used_.fetch_sub(1, std::memory_order_acq_rel);
    return false;
  }

  /// Returns `n` units; true if a shard may be waiting for them.
  bool release(uint64_t n) noexcept {
    if (n == 0) return false;
    used_.fetch_sub(n, std::memory_order_acq_rel);
    return waiting_.exchange(false, std::memory_order_acq_rel);
  }

  /// Returns `n` units a shard took but did not use (a parked compute's
  /// turn: its write, if any, takes a unit of its own). True, as for
  /// `release`, if a shard may be waiting: the shard cannot wake the others
  /// itself, so it asks the flusher to (`room_atom`), or a parked write of
  /// another shard would wait for its room timer.
  bool put_back(uint64_t n) noexcept { return release(n); }

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

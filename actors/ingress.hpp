// The doorway from plain threads into a shard: a bounded queue of jobs and a
// doorbell flag, so a burst of calls costs one actor message, not one each.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

#include <caf/error.hpp>

#include "actors/shard_state.hpp"

namespace karlton {

/// Work a plain thread hands to a shard. `run` and `abandon` consume the job:
/// the shard never touches it afterwards.
class shard_job {
public:
  virtual ~shard_job() = default;
  /// Runs on the shard actor, which owns `state`.
  virtual void run(shard_state& state, time_point now) = 0;
  /// The job will never run (the runtime stopped); `why` says so.
  virtual void abandon(const caf::error& why) = 0;
  /// Step `step` (0..2) of loading the memory `run` will touch, so a shard
  /// can overlap the cache misses of a batch of jobs. Optional.
  virtual void prefetch(const shard_state&, int /*step*/) const noexcept {}
  /// The calls this job carries (a put batch: its puts). The shard counts
  /// these, not jobs, against its batch limits, so a job of many calls keeps
  /// it from its mailbox no longer than as many single calls would.
  virtual int weight() const noexcept { return 1; }
};

/// One shard's ingress queue.
///
/// Protocol: a caller pushes a job, then rings the doorbell (sends the shard a
/// `doorbell` message) only if nobody has rung since the shard last found the
/// queue empty. The shard drains the queue on the doorbell, clears the flag,
/// and looks once more, so no job is left behind without a doorbell.
///
/// The queue is a bounded ring of `capacity` slots of 16 bytes, each with a
/// sequence number that says whose turn it is (Dmitry Vyukov's bounded MPMC
/// queue): a push or a pop is one compare-and-swap, and nothing but the ring
/// is allocated. Several threads may pop at once (shutdown fails what is
/// queued beside a running shard), so it is multi-consumer. Boost.Lockfree's
/// fixed-size queue, used before, took a 64-byte node per slot: 1 MB a shard
/// at the default capacity, allocated whether used or not.
///
/// A pop finds the queue empty while a push that took the next slot has not
/// filled it yet; that push's caller then finds the doorbell released and
/// rings it, so its job waits for the caller, never for another doorbell.
/// The price, as in the bounded array queues of JCTools (Caffeine's write
/// buffer) and the LMAX Disruptor: the queue is not lock-free. A caller
/// descheduled between taking a slot and filling it (two instructions) holds
/// back the jobs queued after it until it runs again, a scheduler time slice
/// at worst; nothing is lost, and no other caller waits on it to push.
/// @threadsafe
class ingress {
public:
  /// `capacity` (at least 2: with one slot, "filled" and "free for the next
  /// lap" would be the same turn) bounds queued jobs; beyond it, callers
  /// wait or get `overloaded`.
  explicit ingress(size_t capacity)
    : capacity_(capacity < 2 ? 2 : capacity), slots_(new slot[capacity_]) {
    for (size_t i = 0; i < capacity_; ++i)
      slots_[i].turn.store(i, std::memory_order_relaxed);
  }

  /// Queues `job`; false if the queue is full.
  bool push(shard_job* job) noexcept {
    auto pos = tail_.load(std::memory_order_relaxed);
    for (;;) {
      auto& s = slots_[pos % capacity_];
      auto turn = s.turn.load(std::memory_order_acquire);
      auto ahead = static_cast<int64_t>(turn - pos);
      if (ahead == 0) { // free for this lap: take it
        if (tail_.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) {
          s.job = job;
          s.turn.store(pos + 1, std::memory_order_release);
          return true;
        }
      } else if (ahead < 0) { // still holds the job of the lap before: full
        return false;
      } else { // another push took it: look again
        pos = tail_.load(std::memory_order_relaxed);
      }
    }
  }

  /// After a successful push: true if the caller must send the doorbell.
  bool claim_doorbell() noexcept {
    std::atomic_thread_fence(std::memory_order_seq_cst);
    return !rung_.load(std::memory_order_relaxed) &&
           !rung_.exchange(true, std::memory_order_acq_rel);
  }

  /// Only whoever holds the doorbell (the shard; or a caller whose doorbell
  /// could not be sent, or after shutdown): the next job, or nullptr.
  shard_job* pop() noexcept {
    auto pos = head_.load(std::memory_order_relaxed);
    for (;;) {
      auto& s = slots_[pos % capacity_];
      auto turn = s.turn.load(std::memory_order_acquire);
      auto ahead = static_cast<int64_t>(turn - (pos + 1));
      if (ahead == 0) { // filled for this lap: take it
        if (head_.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) {
          auto job = s.job;
          s.turn.store(pos + capacity_, std::memory_order_release);
          return job;
        }
      } else if (ahead < 0) { // not filled (yet): empty
        return nullptr;
      } else { // another pop took it: look again
        pos = head_.load(std::memory_order_relaxed);
      }
    }
  }

  /// True if `pop` would find a job (a push still in progress may not show).
  bool has_jobs() const noexcept { return filled_at_head(); }

  /// Only the doorbell's holder, after `pop` returned nullptr: clears the
  /// doorbell. True if it must keep draining (a job slipped in and nobody
  /// else rang).
  bool release_doorbell() noexcept {
    rung_.store(false, std::memory_order_seq_cst);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (!filled_at_head()) return false;
    return !rung_.exchange(true, std::memory_order_acq_rel);
  }

private:
  struct slot {
    std::atomic<uint64_t> turn; // pos + 1 once filled for lap pos; free when pos
    shard_job* job = nullptr;
  };

  // What `pop` would find: the slot at the head holds a job. A push in
  // progress there is not seen; its caller claims the doorbell afterwards.
  bool filled_at_head() const noexcept {
    auto pos = head_.load(std::memory_order_relaxed);
    return slots_[pos % capacity_].turn.load(std::memory_order_acquire) == pos + 1;
  }

  const size_t capacity_;
  std::unique_ptr<slot[]> slots_;
  // Apart, so pushing threads and the popping shard do not share a line.
  alignas(64) std::atomic<uint64_t> tail_{0};
  alignas(64) std::atomic<uint64_t> head_{0};
  alignas(64) std::atomic<bool> rung_{false};
};

} // namespace karlton

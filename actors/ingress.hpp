// The doorway from plain threads into a shard: a lock-free queue of jobs and a
// doorbell flag, so a burst of calls costs one actor message, not one each.
#pragma once

#include <atomic>
#include <cstddef>

#include <boost/lockfree/queue.hpp>
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
/// @threadsafe
class ingress {
public:
  /// `capacity` bounds queued jobs; beyond it, callers wait or get `overloaded`.
  explicit ingress(size_t capacity) : queue_(capacity) {}

  /// Queues `job`; false if the queue is full.
  bool push(shard_job* job) noexcept { return queue_.bounded_push(job); }

  /// After a successful push: true if the caller must send the doorbell.
  bool claim_doorbell() noexcept {
    std::atomic_thread_fence(std::memory_order_seq_cst);
    return !rung_.load(std::memory_order_relaxed) &&
           !rung_.exchange(true, std::memory_order_acq_rel);
  }

  /// Only whoever holds the doorbell (the shard; or a caller whose doorbell
  /// could not be sent, or after shutdown): the next job, or nullptr.
  shard_job* pop() noexcept {
    shard_job* job = nullptr;
    return queue_.pop(job) ? job : nullptr;
  }

  /// Only the doorbell's holder, after `pop` returned nullptr: clears the
  /// doorbell. True if it must keep draining (a job slipped in and nobody
  /// else rang).
  bool release_doorbell() noexcept {
    rung_.store(false, std::memory_order_seq_cst);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (queue_.empty()) return false;
    return !rung_.exchange(true, std::memory_order_acq_rel);
  }

private:
  boost::lockfree::queue<shard_job*, boost::lockfree::fixed_sized<true>> queue_;
  std::atomic<bool> rung_{false};
};

} // namespace karlton

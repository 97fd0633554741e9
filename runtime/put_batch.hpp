// Puts gathered one by one and sent as one job per shard: a pipeline's SETs
// pay the shard's queue, doorbell and job once per batch instead of once
// each (docs/plans/resp-set-path.md, R5). Each put is still answered on its
// own.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include <caf/error.hpp>

#include <karlton/runtime/cache.hpp>

namespace karlton {

/// Receives the answers of a `put_batch`'s puts. Called on a shard's thread
/// (a put waiting for write-through storage: on the thread that finished
/// it); like the callbacks of the async calls, it must be quick and must
/// not block on the cache.
/// @threadsafe
class put_answers {
public:
  virtual ~put_answers() = default;
  /// The put added with `tag` is done: stored (`err` empty) or refused.
  virtual void answer(uint64_t tag, const caf::error& err) noexcept = 0;
  /// Follows one or more `answer`s on the same thread: the place to wake
  /// whoever waits, once per batch of answers rather than once per put.
  virtual void answered() noexcept = 0;
};

/// Puts added one by one, sent together: one job per shard they go to.
/// The puts of one shard run in the order added, as consecutive `put`s
/// would; puts to different shards are not ordered. A put is visible to
/// reads once answered, as `put`'s is once it returned.
///
/// One thread adds and sends. The answers go to the `put_answers`, held
/// weakly until `send` and then by each job until its last answer: a batch
/// sent after it is gone still stores its puts, unanswered (as Redis
/// applies a SET whose client hung up). Destroying a batch sends what it
/// holds.
class put_batch {
public:
  /// A shard's job holds at most this many puts; adding to a full one sends
  /// it first. A shard counts a job's puts, not the job, against its batch
  /// limits (a turn runs 256 calls between looks at its mailbox and
  /// prefetches 16 at a time), so a full job is one prefetch batch. The
  /// shard's queue bound (`ingress-capacity`) counts jobs: up to this many
  /// puts each.
  static constexpr size_t max_job_puts = 16;

  /// An empty batch of puts to `target`, answered to `answers`.
  put_batch(cache target, std::weak_ptr<put_answers> answers);
  /// Sends what it holds.
  ~put_batch();
  put_batch(const put_batch&) = delete;
  put_batch& operator=(const put_batch&) = delete;

  /// Adds a put of `bytes` under `key` for `t`, answered with `tag`. Checked
  /// as `cache::put` checks (`key_too_large`, `value_too_large`,
  /// `invalid_option`): an error means the put was refused here, nothing is
  /// queued and nothing will answer it.
  caf::error add(std::string_view key, std::string_view bytes, ttl t, uint64_t tag);

  /// Queues each shard's job (as the async calls do: a full queue waits
  /// up to `call-timeout`, or fails at once for a handle `without_queue_wait`;
  /// a refused job answers each of its puts with the error).
  void send();

  /// True if no put waits to be sent.
  bool empty() const noexcept { return waiting_ == 0; }

  /// Jobs this batch has allocated so far. Done jobs come back to the batch
  /// and are reused, so a steady pipeline allocates about one per shard.
  size_t jobs_made() const noexcept;
  /// Jobs taken and not yet done: being filled, queued or running.
  size_t jobs_in_use() const noexcept;

private:
  class job;
  class job_pool;

  void send_job(size_t shard);

  cache target_;
  std::weak_ptr<put_answers> answers_;
  std::shared_ptr<job_pool> pool_; // done jobs come back here to be reused
  std::vector<job*> jobs_;         // per shard; null: none waiting
  size_t waiting_ = 0;             // jobs in jobs_
};

} // namespace karlton

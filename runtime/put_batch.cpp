#include <karlton/runtime/put_batch.hpp>

#include <algorithm>
#include <atomic>
#include <utility>

#include "runtime/cache_calls.hpp"

namespace karlton {

/// One shard's puts. Freed when every put is answered and `run` is over:
/// `unanswered_` counts the puts plus one for `run` itself, because a put
/// waiting for storage may be answered on another thread while `run` still
/// loops.
class put_batch::job final : public shard_job {
public:
  struct item {
    value val;
    ttl lifetime;
    uint64_t tag;
  };

  job() { items.reserve(16); } // a pipeline of 16 over a few shards: no regrowth

  std::vector<item> items;
  std::shared_ptr<put_answers> answers; // set by send; null: nobody listens
  std::shared_ptr<job_pool> home;       // set by take: where the job goes when done
  job* next = nullptr;                  // in job_pool's lists

  int weight() const noexcept override {
    return std::max(1, static_cast<int>(items.size()));
  }

  void prefetch(const shard_state& state, int step) const noexcept override {
    for (const auto& it : items)
      state.prefetch(it.val.table_hash(), step);
  }

  void run(shard_state& state, time_point now) override {
    unanswered_.store(items.size() + 1, std::memory_order_relaxed);
    size_t now_answered = 0;
    for (auto& it : items) {
      // 16 bytes: the shard's waiter keeps it without an allocation.
      auto later = [this, tag = it.tag](caf::expected<cache::unit> r) {
        tell(tag, r ? caf::error{} : r.error());
        if (answers) answers->answered();
        release(1);
      };
      auto r = shard_ops::put{std::move(it.val), it.lifetime}(state, now, later);
      if (r) {
        tell(it.tag, *r ? caf::error{} : r->error());
        ++now_answered;
      }
    }
    if (answers && now_answered > 0) answers->answered();
    release(now_answered + 1);
  }

  void abandon(const caf::error& why) override {
    for (const auto& it : items)
      tell(it.tag, why);
    if (answers && !items.empty()) answers->answered();
    done();
  }

private:
  void tell(uint64_t tag, const caf::error& err) const noexcept {
    if (answers) answers->answer(tag, err);
  }

  void release(size_t n) {
    if (unanswered_.fetch_sub(n, std::memory_order_acq_rel) == n) done();
  }

  void done() noexcept;

  std::atomic<size_t> unanswered_{0};
};

/// Jobs that are done, back from the shards' threads for the adding thread
/// to reuse: a pipeline's batch then costs no job, no vector and none of
/// glibc's slow path for blocks freed on another thread (`_int_malloc` had
/// 5 % of karlton-node's samples at SET p16 for them). It holds at most as
/// many jobs as were in flight at once.
class put_batch::job_pool {
public:
  ~job_pool() {
    free_list(spare_);
    free_list(returned_.load(std::memory_order_acquire));
  }

  /// An empty job whose `done` brings it back here. The adding thread only.
  job* take(const std::shared_ptr<job_pool>& self) {
    if (spare_ == nullptr)
      spare_ = returned_.exchange(nullptr, std::memory_order_acquire);
    job* j = spare_;
    if (j != nullptr) {
      spare_ = j->next;
    } else {
      j = new job;
      ++made_;
    }
    j->home = self;
    in_use_.fetch_add(1, std::memory_order_relaxed);
    return j;
  }

  /// Any thread. One taker empties the whole list at once, so a pushed job
  /// cannot come back between a pusher's load and its exchange (no ABA).
  void give_back(job* j) noexcept {
    auto head = returned_.load(std::memory_order_relaxed);
    do
      j->next = head;
    while (!returned_.compare_exchange_weak(head, j, std::memory_order_release,
                                            std::memory_order_relaxed));
    in_use_.fetch_sub(1, std::memory_order_release);
  }

  size_t made() const noexcept { return made_; }
  size_t in_use() const noexcept { return in_use_.load(std::memory_order_acquire); }

private:
  static void free_list(job* j) noexcept {
    while (j != nullptr)
      delete std::exchange(j, j->next);
  }

  std::atomic<job*> returned_{nullptr};
  std::atomic<size_t> in_use_{0};
  job* spare_ = nullptr; // taken from returned_, the adding thread only
  size_t made_ = 0;      // the adding thread only
};

void put_batch::job::done() noexcept {
  items.clear(); // keeps the capacity
  answers.reset();
  // The last owner of the pool may be this job: it frees the job with the
  // pool, after give_back.
  auto pool = std::move(home);
  if (pool)
    pool->give_back(this);
  else
    delete this;
}

put_batch::put_batch(cache target, std::weak_ptr<put_answers> answers)
  : target_(std::move(target)), answers_(std::move(answers)),
    pool_(std::make_shared<job_pool>()), jobs_(target_.shard_count(), nullptr) {}

put_batch::~put_batch() {
  send();
}

caf::error put_batch::add(std::string_view key, std::string_view bytes, ttl t,
                          uint64_t tag) {
  auto& core = *target_.core_;
  if (auto err = detail::check_put(core, key, bytes, t)) return err;
  auto h = hash_key(key);
  auto shard = target_.shard_of(h);
  auto& j = jobs_[shard];
  if (j != nullptr && j->items.size() == max_job_puts) send_job(shard);
  if (j == nullptr) {
    j = pool_->take(pool_);
    ++waiting_;
  }
  j->items.push_back(job::item{value::make(key, bytes, h), t, tag});
  return caf::none;
}

size_t put_batch::jobs_made() const noexcept {
  return pool_->made();
}

size_t put_batch::jobs_in_use() const noexcept {
  return pool_->in_use();
}

void put_batch::send() {
  for (size_t s = 0; waiting_ > 0 && s < jobs_.size(); ++s)
    if (jobs_[s] != nullptr) send_job(s);
}

void put_batch::send_job(size_t shard) {
  auto* j = std::exchange(jobs_[shard], nullptr);
  --waiting_;
  j->answers = answers_.lock();
  const auto& core = *target_.core_;
  detail::submit(core.runtime_gate, core.routes[shard], j, target_.queue_deadline());
}

} // namespace karlton

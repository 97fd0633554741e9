#include <karlton/runtime/put_batch.hpp>

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
    delete this;
  }

private:
  void tell(uint64_t tag, const caf::error& err) const noexcept {
    if (answers) answers->answer(tag, err);
  }

  void release(size_t n) {
    if (unanswered_.fetch_sub(n, std::memory_order_acq_rel) == n) delete this;
  }

  std::atomic<size_t> unanswered_{0};
};

put_batch::put_batch(cache target, std::weak_ptr<put_answers> answers)
  : target_(std::move(target)), answers_(std::move(answers)),
    jobs_(target_.shard_count(), nullptr) {}

put_batch::~put_batch() {
  send();
}

caf::error put_batch::add(std::string_view key, std::string_view bytes, ttl t,
                          uint64_t tag) {
  const auto& core = *target_.core_;
  if (auto err = detail::check_put(core.shard_cfg, key, bytes, t)) return err;
  auto h = hash_key(key);
  auto shard = target_.shard_of(h);
  auto& j = jobs_[shard];
  if (j != nullptr && j->items.size() == max_job_puts) send_job(shard);
  if (j == nullptr) {
    j = new job;
    ++waiting_;
  }
  j->items.push_back(job::item{value::make(key, bytes, h), t, tag});
  return caf::none;
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

// How a plain thread calls shards without a scoped_actor: one `call` object per
// API call, split into one job per shard it touches, completed when the last
// job reports in. The call then combines the parts and hands the result to a
// sink: a waiting thread, a std::promise, or a callback.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string_view>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <caf/unit.hpp>

#include "actors/ingress.hpp"
#include "actors/read_side.hpp"
#include "actors/shard_ops.hpp"
#include <karlton/messages/errors.hpp>

namespace karlton::detail {

/// Whether the runtime still takes calls, and how many callers are sending a
/// doorbell right now. Shutdown closes the gate, then waits until `active` is
/// zero before it stops the shards: no caller sends to an actor of a stopped
/// actor system. Queues outlive the runtime (cache handles share them), so
/// queuing needs no count; see `submit`.
/// @threadsafe
struct gate {
  std::atomic<bool> closed{false};
  std::atomic<int> active{0};
  /// Callers holding a `system_pass`; shutdown waits for them (see there).
  std::atomic<int> users{0};
  std::mutex users_mtx;
  std::condition_variable users_cv;
  /// The actor system's scheduler threads, sorted; set before any call.
  std::vector<std::thread::id> workers;

  /// Waits until no `system_pass` is held. Only after `closed` was set.
  void await_users() {
    std::unique_lock<std::mutex> guard{users_mtx};
    users_cv.wait(guard, [this] { return users.load(std::memory_order_seq_cst) == 0; });
  }
};

/// Rings what this thread's `held_doorbells` (cache.hpp) holds, if it has
/// one: before the thread waits for an answer that may need one of those
/// doorbells.
void ring_held_doorbells();

/// Lets a plain thread use the actor system (a `scoped_actor`) and the actor
/// handles of a cache core that shutdown clears. Shutdown closes the gate,
/// stops every actor (so requests to them end), then waits until no pass is
/// held before it clears those handles and before the system can go. A pass
/// asked for after the gate closed is refused: the call returns `shut_down`.
/// (Seq_cst on both sides: a pass either is counted by shutdown's wait or
/// sees the gate closed.)
class system_pass {
public:
  explicit system_pass(gate& g) : gate_(g) {
    // A blocking call that asks an actor directly (the flusher, the peer)
    // must come after this thread's calls before it: their doorbells go first.
    ring_held_doorbells();
    gate_.users.fetch_add(1, std::memory_order_seq_cst);
    granted_ = !gate_.closed.load(std::memory_order_seq_cst);
  }
  ~system_pass() {
    if (gate_.users.fetch_sub(1, std::memory_order_seq_cst) == 1) {
      std::lock_guard<std::mutex> guard{gate_.users_mtx};
      gate_.users_cv.notify_all();
    }
  }
  system_pass(const system_pass&) = delete;
  system_pass& operator=(const system_pass&) = delete;
  explicit operator bool() const noexcept { return granted_; }

private:
  gate& gate_;
  bool granted_;
};

/// True on one of the actor system's scheduler threads, i.e. inside an actor.
/// A blocking call there would hold a thread the shards may need: with as
/// many blocking actors as threads, no shard runs and every call times out.
inline bool on_scheduler_thread(const gate& g) {
  return !g.workers.empty() && std::binary_search(g.workers.begin(), g.workers.end(),
                                                  std::this_thread::get_id());
}

/// The error of a blocking call made on a scheduler thread.
inline caf::error blocking_refused() {
  return make_error(errc::blocking_in_actor,
                    "a blocking call was made on one of the actor system's scheduler "
                    "threads (inside an actor), where waiting would hold a thread the "
                    "shards need; from an actor use the async calls (get_async(key, f), "
                    "...) or request the shard actor (shard_for(key))");
}

/// Delivers to a thread blocked in `wait`. It spins briefly first: a shard
/// usually answers within a few microseconds, much less than the cost of
/// sleeping on a condition variable and being woken (see README, latency).
template <class R>
struct waiting_sink {
  enum : int { idle, sleeping, ready };
  std::atomic<int> state{idle};
  std::mutex mtx;
  std::condition_variable cv;
  std::optional<caf::expected<R>> result;

  void deliver(caf::expected<R>&& r) {
    result.emplace(std::move(r));
    // Only a waiter that went to sleep needs the mutex and a notify.
    if (state.exchange(ready, std::memory_order_acq_rel) == sleeping) {
      std::lock_guard<std::mutex> guard{mtx};
      cv.notify_one();
    }
  }

  caf::expected<R> wait(std::chrono::steady_clock::time_point deadline) {
    ring_held_doorbells(); // or this thread would wait for its own doorbell
    auto is_ready = [this] { return state.load(std::memory_order_acquire) == ready; };
    // A shard with a core of its own answers in a few microseconds: poll
    // briefly (64 pauses, about 1 us). Then yield for up to 50 us rather than
    // spin: when callers outnumber cores, a spinning caller would hold the
    // very core the shard needs (measured: 40 us spins cut the throughput of
    // 2 blocking callers on 2 cores threefold). Only then sleep.
    for (int i = 0; i < 64; ++i) {
      if (is_ready()) return std::move(*result);
      __builtin_ia32_pause();
    }
    auto stop_yielding = std::chrono::steady_clock::now() + std::chrono::microseconds{50};
    while (std::chrono::steady_clock::now() < stop_yielding) {
      if (is_ready()) return std::move(*result);
      std::this_thread::yield();
    }
    std::unique_lock<std::mutex> guard{mtx};
    int expected = idle;
    if (state.compare_exchange_strong(expected, sleeping, std::memory_order_acq_rel)) {
      auto done = [&] { return state.load(std::memory_order_acquire) == ready; };
      if (!cv.wait_until(guard, deadline, done))
        return make_error(errc::timeout,
                          "the call did not complete within its call-timeout");
    }
    return std::move(*result);
  }
};

/// Names a sink type, so call styles can pass it along with its arguments.
template <class Sink>
struct sink_tag {};

template <class R>
struct promise_sink {
  explicit promise_sink(std::promise<caf::expected<R>> p) : promise(std::move(p)) {}
  std::promise<caf::expected<R>> promise;
  void deliver(caf::expected<R>&& r) { promise.set_value(std::move(r)); }
};

/// Logs that a service's callback threw on a karlton thread (the first time,
/// then at every power of two), which then goes on.
void callback_threw(const char* what) noexcept;

template <class R, class F>
struct callback_sink {
  explicit callback_sink(F f) : fn(std::move(f)) {}
  F fn;
  // The callback runs on the shard's thread: an exception escaping it would
  // end the shard, and every later call to it would hang. It stops here.
  void deliver(caf::expected<R>&& r) noexcept {
    try {
      fn(std::move(r));
    } catch (const std::exception& e) {
      callback_threw(e.what());
    } catch (...) {
      callback_threw("not a std::exception");
    }
  }
};

/// One API call: `parts` jobs fill `parts_[i]`; the last one combines them.
/// Reference counted: one reference per job plus one for the caller.
template <class Part, class R, class Combine, class Sink>
class call {
public:
  template <class... SinkArgs>
  call(size_t parts, Combine combine, SinkArgs&&... sink_args)
    : sink(std::forward<SinkArgs>(sink_args)...), refs_(static_cast<int>(parts) + 1),
      pending_(static_cast<int>(parts)), parts_(parts), combine_(std::move(combine)) {}

  void complete(size_t i, caf::expected<Part>&& r) {
    if (!r)
      set_error(caf::error{r.error()});
    else if constexpr (!std::is_same_v<Part, caf::unit_t>)
      parts_[i] = std::move(*r);
    finish_part();
  }

  void fail(const caf::error& why) {
    set_error(caf::error{why});
    finish_part();
  }

  /// For a call of zero parts: completes it at once.
  void complete_empty() { sink.deliver(caf::expected<R>{combine_(std::move(parts_))}); }

  void release() {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

  Sink sink;

private:
  void set_error(caf::error&& err) {
    std::lock_guard<std::mutex> guard{error_mtx_};
    if (!error_) error_ = std::move(err);
  }

  void finish_part() {
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
    if (error_)
      sink.deliver(caf::expected<R>{std::move(error_)});
    else
      sink.deliver(caf::expected<R>{combine_(std::move(parts_))});
  }

  std::atomic<int> refs_;
  std::atomic<int> pending_;
  std::vector<Part> parts_;
  Combine combine_;
  std::mutex error_mtx_; // only taken when a part fails
  caf::error error_;
};

/// A call on the one shard that owns a key: the job, its sink and its result
/// in one allocation. Reference counted: one reference for the shard (held
/// until it answers), one for the caller.
template <class R, class Sink>
class keyed_call : public shard_job {
public:
  template <class... SinkArgs>
  explicit keyed_call(uint32_t key_hash, SinkArgs&&... sink_args)
    : sink(std::forward<SinkArgs>(sink_args)...), key_hash_(key_hash) {}

  void prefetch(const shard_state& state, int step) const noexcept override {
    state.prefetch(key_hash_, step);
  }

  void abandon(const caf::error& why) override { answer(caf::expected<R>{why}); }

  /// Hands `r` to the sink and drops the shard's reference.
  void answer(caf::expected<R>&& r) {
    sink.deliver(std::move(r));
    release();
  }

  void release() {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

  Sink sink;

private:
  std::atomic<int> refs_{2};
  uint32_t key_hash_; // the key's `value::table_hash`
};

/// A call answered by `op` (one of actors/shard_ops.hpp) on the shard that
/// owns its key.
template <class R, class Op, class Sink>
class single_call final : public keyed_call<R, Sink> {
public:
  template <class... SinkArgs>
  single_call(uint32_t key_hash, Op op, SinkArgs&&... sink_args)
    : keyed_call<R, Sink>(key_hash, std::forward<SinkArgs>(sink_args)...),
      op_(std::move(op)) {}

  void run(shard_state& state, time_point now) override {
    auto later = [this](caf::expected<R> r) { this->answer(std::move(r)); };
    if constexpr (answers_later<Op, decltype(later)>) {
      if (auto r = op_(state, now, later)) this->answer(std::move(*r));
    } else {
      this->answer(op_(state, now));
    }
  }

private:
  Op op_;
};

/// The job for part `index` of `call`: runs `op(state, now)` on the shard.
template <class Call, class Op>
class part_job final : public shard_job {
public:
  part_job(Call* c, size_t index, Op op) : call_(c), index_(index), op_(std::move(op)) {}

  void run(shard_state& state, time_point now) override {
    auto later = [this](auto&& r) {
      call_->complete(index_, std::forward<decltype(r)>(r));
      call_->release();
      delete this;
    };
    if constexpr (answers_later<Op, decltype(later)>) {
      if (auto r = op_(state, now, later)) later(std::move(*r));
    } else {
      later(op_(state, now));
    }
  }

  void abandon(const caf::error& why) override {
    call_->fail(why);
    call_->release();
    delete this;
  }

private:
  Call* call_;
  size_t index_;
  Op op_;
};

/// The shard side of the runtime: handles, ingress queues, options; shared by
/// every `cache` handle so that a handle outliving its runtime stays safe.
struct shard_route {
  shard_actor actor;
  std::shared_ptr<ingress> inbox;
  /// The shard's table as callers read it on their own threads.
  std::shared_ptr<read_side> reads;
};

/// Queues `job` on `route`, waiting until `deadline` while the queue is full
/// (the call's deadline: one for all the shards a call goes to). On failure
/// the job is abandoned (so its call still completes). Rings the shard's
/// doorbell, or leaves that to this thread's `held_doorbells` (cache.hpp).
void submit(const std::shared_ptr<gate>& g, const shard_route& route, shard_job* job,
            std::chrono::steady_clock::time_point deadline);

/// What a `held_doorbells` (cache.hpp) holds back for one shard.
struct held_doorbell {
  std::shared_ptr<gate> g; // both kept alive: the cache may go meanwhile
  shard_route route;
};

} // namespace karlton::detail

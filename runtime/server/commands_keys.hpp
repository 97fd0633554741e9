// What the key command families share: replies for karlton's results, the
// blocking pool for calls that exist only as blocking calls, and a counter
// for commands that make one call per key.
#pragma once

#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <karlton/messages/errors.hpp>

#include "runtime/server/session_impl.hpp"

namespace karlton::server {

/// Whether writes to `db` must go through its blocking calls (rule 7: only
/// they wait for the other nodes).
inline bool needs_blocking_writes(const cache& db) {
  return db.options().distributed == distribution::sync;
}

/// "+OK", or the error: the blocking calls' form (an error or none)...
inline void reply_ok(const deferred_reply& r, const caf::error& err) {
  if (err)
    r.fail(err);
  else
    r.finish([](reply_writer& w) { w.simple("OK"); });
}

/// ...and the callbacks' form.
inline void reply_ok(const deferred_reply& r, const caf::expected<cache::unit>& x) {
  reply_ok(r, x ? caf::error{} : x.error());
}

/// Runs `f(db, reply)` on the blocking pool, for the selected database;
/// "-ERR busy" when the pool's queue is full. `f` must own what it uses.
template <class F>
void on_pool(command_call& c, F f) {
  auto reply = c.defer();
  // A node may have no caches; the commands that need one refuse before this.
  cache db = c.session.context().caches.empty() ? cache{} : c.db();
  auto job = [reply, db, f]() mutable {
    try {
      f(db, reply);
    } catch (...) { // out of memory, most likely: the client hears, and waits no more
      reply.fail(make_error(errc::overloaded, "the command ran out of memory"));
    }
  };
  if (!c.session.run_blocking(std::move(job)))
    reply.finish([](reply_writer& w) { w.error("busy"); });
}

/// Replies once `n` per-key calls are in: their sum, or the first error.
class counted_reply {
public:
  counted_reply(deferred_reply r, size_t n) : reply_(std::move(r)), left_(n) {}

  void add(const caf::expected<bool>& x) {
    if (!x)
      fail(x.error());
    else if (*x)
      sum_.fetch_add(1, std::memory_order_relaxed);
    if (left_.fetch_sub(1, std::memory_order_acq_rel) == 1) finish();
  }

  /// True once a call failed: the reply will be an error, so the calls not
  /// yet made need not be.
  bool failed() const noexcept { return failed_.load(std::memory_order_acquire); }

  /// The calls not yet made will not be: replies the first error, or `err`,
  /// now (calls still out answer into nothing).
  void give_up(const caf::error& err) {
    fail(err);
    finish();
  }

private:
  void fail(const caf::error& err) {
    std::lock_guard<std::mutex> guard{mtx_};
    if (!err_) err_ = err;
    failed_.store(true, std::memory_order_release);
  }

  void finish() {
    if (replied_.exchange(true, std::memory_order_acq_rel)) return;
    caf::error err;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      err = err_;
    }
    if (err)
      reply_.fail(err);
    else
      reply_.finish([&](reply_writer& w) { w.integer(sum_.load()); });
  }

  deferred_reply reply_;
  std::atomic<size_t> left_;
  std::atomic<int64_t> sum_{0};
  std::atomic<bool> failed_{false};
  std::atomic<bool> replied_{false};
  std::mutex mtx_;
  caf::error err_; // guarded by mtx_
};

/// Keys a DEL or EXISTS sends from the I/O thread, one call each. The I/O
/// threads' handles never wait for queue room, so one command naming more
/// keys than a shard's queue holds (16,384 jobs) was answered `overloaded`
/// on an idle node, with part of a DEL done (a review of 8 Dec).
constexpr size_t max_keys_on_io_thread = 64;

/// The way of a DEL, UNLINK or EXISTS: the pool beyond `max_keys_on_io_thread`
/// keys (so the session holds later writes of them back), else a put's.
inline write_path each_key_path(const std::vector<std::string_view>& args) {
  return args.size() - 1 > max_keys_on_io_thread ? write_path::pool : write_path::put;
}

/// A per-key command (DEL, EXISTS): `call(db, key, answer)` for each key of
/// `c`, where `answer` takes the call's `caf::expected<bool>`; replies the
/// sum of the answers, or the first error. Up to `max_keys_on_io_thread` keys
/// on this (I/O) thread, more on the blocking pool (`each_key_on_pool`).
template <class Call>
void each_key(command_call& c, Call call);

/// `each_key` on many keys: the calls are made on the blocking pool through
/// a handle that waits for queue room, so the shards' queues drain as it
/// goes. After an error, or once the cache's
/// `call-timeout` has passed (a queue that stays full), the keys left are not
/// tried and the error is the reply: a pool thread is held for at most about
/// twice that (the last call may wait its own), where each key waited its
/// own. Calls made before it stay queued (the shard keeps their order with
/// the connection's later writes of those keys).
template <class Call>
void each_key_on_pool(command_call& c, Call call) {
  std::vector<std::string> keys(c.args.begin() + 1, c.args.end());
  on_pool(c, [keys = std::move(keys), call](const cache& db, const deferred_reply& r) {
    auto waiting = db.with_queue_wait();
    auto counter = std::make_shared<counted_reply>(r, keys.size());
    auto deadline = std::chrono::steady_clock::now() + db.options().call_timeout;
    for (size_t i = 0; i < keys.size(); ++i) {
      if (counter->failed() || std::chrono::steady_clock::now() >= deadline)
        return counter->give_up(make_error(
          errc::overloaded, "the shards' queues stayed full for call-timeout; " +
                              std::to_string(keys.size() - i) + " keys were not tried"));
      call(waiting, keys[i], [counter](caf::expected<bool> x) { counter->add(x); });
    }
  });
}

template <class Call>
void each_key(command_call& c, Call call) {
  if (each_key_path(c.args) == write_path::pool) return each_key_on_pool(c, call);
  auto counter = std::make_shared<counted_reply>(c.defer(), c.args.size() - 1);
  for (size_t i = 1; i < c.args.size(); ++i)
    call(c.db(), c.args[i], [counter](caf::expected<bool> x) { counter->add(x); });
}

/// Parses an expiry argument of `cmd` in `unit` (1000 for seconds, 1 for
/// milliseconds) into milliseconds, with Redis's errors; false if it wrote one.
bool parse_expire_ms(command_call& c, std::string_view arg, int64_t unit,
                     std::string_view cmd, bool positive, int64_t& ms);

} // namespace karlton::server

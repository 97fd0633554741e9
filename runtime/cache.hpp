// A handle to one named cache, for any thread: blocking calls, futures,
// callbacks, and the shard actors themselves for callers that are actors.
#pragma once

#include <chrono>
#include <cstdint>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <caf/unit.hpp>

#include "base/routing.hpp"
#include "messages/shard_interface.hpp"
#include "runtime/bridge.hpp"
#include "runtime/options.hpp"

// Forwards a lambda's `auto&&...` pack (sink tag and sink arguments).
#define KARLTON_FWD(x) std::forward<decltype(x)>(x)

namespace karlton {

namespace detail {

/// Everything a cache handle needs; shared with the runtime.
struct cache_core {
  cache_options options;
  shard_options shard_cfg; // per-shard bounds, for checks made before a call
  std::vector<shard_route> routes;
  std::vector<loader_actor> loaders; // stopped with the shards
  store_writer_actor store_writer;   // write-through and write-back
  flusher_actor flusher;             // write-back
  journal_actor journal_writer;      // write-back with a journal
  std::shared_ptr<gate> runtime_gate;
};

} // namespace detail

/// A cheap, copyable handle to one cache of a `runtime`.
///
/// Three ways to call, all on the same shards:
/// - from a plain thread, blocking: `get(k)` waits up to `call-timeout` and
///   returns the result or an error (`timeout`, `overloaded`, `shut_down`, ...);
/// - from a plain thread, asynchronous: `get_async(k)` returns a
///   `std::future`, `get_async(k, f)` calls `f(caf::expected<value>)` on a
///   shard thread (it must be quick and must not block on this cache);
/// - from an actor: `shard_for(k)` is the typed `shard_actor` to request.
///
/// Calls on many keys send one job per shard, not per key. After the runtime
/// stopped, every call returns `shut_down`. A blocking call made inside an
/// actor (on a scheduler thread) returns `blocking_in_actor` at once.
/// @threadsafe
class cache {
public:
  using unit = caf::unit_t;

  cache() = default;
  explicit operator bool() const noexcept { return core_ != nullptr; }

  const std::string& name() const { return core_->options.name; }
  const cache_options& options() const { return core_->options; }
  size_t shard_count() const { return core_->routes.size(); }

  /// The shard that owns `key`, for requests from actors.
  shard_actor shard_for(std::string_view key) const {
    return core_->routes[shard_of(hash_key(key))].actor;
  }
  std::vector<shard_actor> shards() const;

  // -- blocking ---------------------------------------------------------------

  /// The cached value, or an empty `value` on a miss.
  caf::expected<value> get(std::string_view key) const {
    return blocking<value>([&](auto&&... s) { return get_call(key, KARLTON_FWD(s)...); });
  }
  /// Stores `bytes` under `key`; `t` defaults to the cache's `default-ttl`.
  caf::error put(std::string_view key, std::string_view bytes,
                 ttl t = ttl::cache_default()) const {
    auto r = blocking<unit>(
      [&](auto&&... s) { return put_call(key, bytes, t, KARLTON_FWD(s)...); });
    return r ? await_peers(key) : std::move(r.error());
  }
  /// Stores `bytes` under `key`, depending on `deps`: when one of its events
  /// is emitted, or one of its keys or tags invalidated, the entry goes too.
  /// Not yet for caches with a write mode (`invalid_option`).
  caf::error put(std::string_view key, std::string_view bytes, ttl t,
                 const dependencies& deps) const {
    auto r = blocking<unit>(
      [&](auto&&... s) { return put_call(key, bytes, t, deps, KARLTON_FWD(s)...); });
    return r ? await_peers(key) : std::move(r.error());
  }
  /// Invalidates `key`; true if it was cached. In a cache whose entries
  /// declare dependencies, what depends on `key` is invalidated too, transitively,
  /// right after (asynchronously; `runtime::invalidate_tag(key)` waits).
  caf::expected<bool> erase(std::string_view key) const {
    auto r =
      blocking<bool>([&](auto&&... s) { return erase_call(key, KARLTON_FWD(s)...); });
    if (!r) return r;
    if (auto err = await_peers(key)) return err;
    return r;
  }
  caf::expected<bool> contains(std::string_view key) const {
    return blocking<bool>(
      [&](auto&&... s) { return contains_call(key, KARLTON_FWD(s)...); });
  }
  caf::expected<remaining_ttl> ttl_of(std::string_view key) const {
    return blocking<remaining_ttl>(
      [&](auto&&... s) { return ttl_call(key, KARLTON_FWD(s)...); });
  }
  /// One value per key, in order; empty where missed.
  caf::expected<std::vector<value>> get_many(const std::vector<std::string>& keys) const {
    return blocking<std::vector<value>>(
      [&](auto&&... s) { return get_many_call(keys, KARLTON_FWD(s)...); });
  }
  caf::error put_many(const std::vector<std::pair<std::string, std::string>>& items,
                      ttl t = ttl::cache_default()) const {
    auto r = blocking<unit>(
      [&](auto&&... s) { return put_many_call(items, t, KARLTON_FWD(s)...); });
    return r ? await_peers() : std::move(r.error());
  }
  /// Removes every entry; returns how many.
  caf::expected<uint64_t> clear() const {
    auto r =
      blocking<uint64_t>([&](auto&&... s) { return clear_call(KARLTON_FWD(s)...); });
    if (!r) return r;
    if (auto err = await_peers()) return err;
    return r;
  }
  /// Removes the expired entries now (not waiting for the expiry timer);
  /// returns how many.
  caf::expected<uint64_t> remove_expired() const {
    return blocking<uint64_t>(
      [&](auto&&... s) { return remove_expired_call(KARLTON_FWD(s)...); });
  }
  /// Read-through: the cached value, or the loader's (one load per key in
  /// flight; a write or invalidation during a load voids it). Needs a loader.
  caf::expected<value> get_or_load(std::string_view key) const {
    return blocking<value>(
      [&](auto&&... s) { return load_call(key, KARLTON_FWD(s)...); });
  }
  /// Counters summed over all shards.
  caf::expected<cache_stats> stats() const {
    return blocking<cache_stats>(
      [&](auto&&... s) { return stats_call(KARLTON_FWD(s)...); });
  }

  // -- write-back ---------------------------------------------------------------

  /// Returns once every write that was dirty when it was called is in the
  /// store (at once for caches without write-back). Waits up to `timeout`.
  caf::error force_flush(caf::timespan timeout = std::chrono::seconds{60}) const;
  /// Writes the store does not have yet (0 without write-back).
  caf::expected<uint64_t> dirty_count() const;
  /// The flusher's counters (all zero without write-back).
  caf::expected<write_stats> flush_stats() const;

  // -- asynchronous, as futures -------------------------------------------------

  std::future<caf::expected<value>> get_async(std::string_view key) const {
    return as_future<value>(
      [&](auto&&... s) { return get_call(key, KARLTON_FWD(s)...); });
  }
  std::future<caf::expected<value>> get_or_load_async(std::string_view key) const {
    return as_future<value>(
      [&](auto&&... s) { return load_call(key, KARLTON_FWD(s)...); });
  }
  std::future<caf::expected<unit>> put_async(std::string_view key, std::string_view bytes,
                                             ttl t = ttl::cache_default()) const {
    return as_future<unit>(
      [&](auto&&... s) { return put_call(key, bytes, t, KARLTON_FWD(s)...); });
  }
  std::future<caf::expected<unit>> put_async(std::string_view key, std::string_view bytes,
                                             ttl t, const dependencies& deps) const {
    return as_future<unit>(
      [&](auto&&... s) { return put_call(key, bytes, t, deps, KARLTON_FWD(s)...); });
  }
  std::future<caf::expected<bool>> erase_async(std::string_view key) const {
    return as_future<bool>(
      [&](auto&&... s) { return erase_call(key, KARLTON_FWD(s)...); });
  }
  std::future<caf::expected<bool>> contains_async(std::string_view key) const {
    return as_future<bool>(
      [&](auto&&... s) { return contains_call(key, KARLTON_FWD(s)...); });
  }
  std::future<caf::expected<remaining_ttl>> ttl_of_async(std::string_view key) const {
    return as_future<remaining_ttl>(
      [&](auto&&... s) { return ttl_call(key, KARLTON_FWD(s)...); });
  }
  std::future<caf::expected<std::vector<value>>>
  get_many_async(const std::vector<std::string>& keys) const {
    return as_future<std::vector<value>>(
      [&](auto&&... s) { return get_many_call(keys, KARLTON_FWD(s)...); });
  }
  std::future<caf::expected<unit>>
  put_many_async(const std::vector<std::pair<std::string, std::string>>& items,
                 ttl t = ttl::cache_default()) const {
    return as_future<unit>(
      [&](auto&&... s) { return put_many_call(items, t, KARLTON_FWD(s)...); });
  }
  std::future<caf::expected<uint64_t>> clear_async() const {
    return as_future<uint64_t>(
      [&](auto&&... s) { return clear_call(KARLTON_FWD(s)...); });
  }
  std::future<caf::expected<uint64_t>> remove_expired_async() const {
    return as_future<uint64_t>(
      [&](auto&&... s) { return remove_expired_call(KARLTON_FWD(s)...); });
  }
  std::future<caf::expected<cache_stats>> stats_async() const {
    return as_future<cache_stats>(
      [&](auto&&... s) { return stats_call(KARLTON_FWD(s)...); });
  }

  // -- asynchronous, with callbacks -----------------------------------------------
  // `f(caf::expected<T>)` runs on the shard's thread (or on the caller's, if
  // the call fails before reaching a shard). It must be quick and must not
  // make blocking calls on this runtime.

  template <class F>
  void get_async(std::string_view key, F f) const {
    with_callback<value>(std::move(f),
                         [&](auto&&... s) { return get_call(key, KARLTON_FWD(s)...); });
  }
  template <class F>
  void put_async(std::string_view key, std::string_view bytes, ttl t, F f) const {
    with_callback<unit>(std::move(f), [&](auto&&... s) {
      return put_call(key, bytes, t, KARLTON_FWD(s)...);
    });
  }
  template <class F>
  void get_or_load_async(std::string_view key, F f) const {
    with_callback<value>(std::move(f),
                         [&](auto&&... s) { return load_call(key, KARLTON_FWD(s)...); });
  }
  template <class F>
  void erase_async(std::string_view key, F f) const {
    with_callback<bool>(std::move(f),
                        [&](auto&&... s) { return erase_call(key, KARLTON_FWD(s)...); });
  }
  template <class F>
  void get_many_async(const std::vector<std::string>& keys, F f) const {
    with_callback<std::vector<value>>(
      std::move(f), [&](auto&&... s) { return get_many_call(keys, KARLTON_FWD(s)...); });
  }
  template <class F>
  void put_many_async(const std::vector<std::pair<std::string, std::string>>& items,
                      ttl t, F f) const {
    with_callback<unit>(std::move(f), [&](auto&&... s) {
      return put_many_call(items, t, KARLTON_FWD(s)...);
    });
  }

private:
  friend class runtime;
  explicit cache(std::shared_ptr<detail::cache_core> core) : core_(std::move(core)) {}

  using deadline_t = std::chrono::steady_clock::time_point;

  /// `distribution::sync`: waits until every member applied what the shard
  /// of `key` (or every shard) told the peer actor so far. `timeout` names
  /// the nodes that did not answer; nothing to do in other modes.
  caf::error await_peers(std::optional<std::string_view> key = std::nullopt) const;

  size_t shard_of(uint64_t hash) const noexcept {
    return shard_index(hash, core_->routes.size());
  }
  caf::timespan timeout() const noexcept { return core_->options.call_timeout; }
  deadline_t deadline() const {
    return std::chrono::steady_clock::now() +
           std::chrono::duration_cast<std::chrono::steady_clock::duration>(
             core_->options.call_timeout);
  }

  // The three call styles. `launch(tag, sink_args...)` starts the call with a
  // sink of the tagged type and returns it, holding the caller's reference.
  template <class R, class Launch>
  caf::expected<R> blocking(Launch launch) const {
    // Before anything is queued: refused, the call has no effect at all.
    if (detail::on_scheduler_thread(*core_->runtime_gate))
      return detail::blocking_refused();
    // One deadline for the whole call: waiting for queue space and for the
    // answer together last at most `call-timeout`, not twice it.
    auto until = deadline();
    auto c = launch(detail::sink_tag<detail::waiting_sink<R>>{});
    auto r = c->sink.wait(until);
    c->release();
    return r;
  }
  template <class R, class Launch>
  static std::future<caf::expected<R>> as_future(Launch launch) {
    std::promise<caf::expected<R>> p;
    auto f = p.get_future();
    launch(detail::sink_tag<detail::promise_sink<R>>{}, std::move(p))->release();
    return f;
  }
  template <class R, class F, class Launch>
  static void with_callback(F f, Launch launch) {
    launch(detail::sink_tag<detail::callback_sink<R, F>>{}, std::move(f))->release();
  }

  // Starts a call of `parts.size()` jobs; `parts[i]` is (shard, op), where
  // `op(shard_state&, time_point)` returns `caf::expected<Part>`.
  template <class Part, class R, class Sink, class Op, class Combine, class... SinkArgs>
  auto start(std::vector<std::pair<size_t, Op>>&& parts, Combine combine,
             SinkArgs&&... sink_args) const {
    using call_t = detail::call<Part, R, Combine, Sink>;
    auto c =
      new call_t(parts.size(), std::move(combine), std::forward<SinkArgs>(sink_args)...);
    // One deadline for all parts: full queues on n shards cost one
    // call-timeout, not n.
    auto until = deadline();
    for (size_t i = 0; i < parts.size(); ++i) {
      auto job = new detail::part_job<call_t, Op>(c, i, std::move(parts[i].second));
      detail::submit(*core_->runtime_gate, core_->routes[parts[i].first], job, until);
    }
    if (parts.empty()) c->complete_empty();
    return c;
  }

  // A call on the one shard that owns `hash`, or, if `err` is set, a call of
  // the same type that fails at once without reaching any shard.
  template <class R, class Sink, class Op, class... SinkArgs>
  auto start_one(uint64_t hash, caf::error err, Op op, SinkArgs&&... sink_args) const {
    using call_t = detail::single_call<R, Op, Sink>;
    auto c = new call_t(static_cast<uint32_t>(hash), std::move(op),
                        std::forward<SinkArgs>(sink_args)...);
    if (err)
      c->abandon(err); // as if a shard had refused it
    else
      detail::submit(*core_->runtime_gate, core_->routes[shard_of(hash)], c, deadline());
    return c;
  }

  // A call that fails with `err` before reaching any shard.
  template <class Part, class R, class Sink, class Combine, class... SinkArgs>
  static auto fail_call(Combine combine, caf::error err, SinkArgs&&... sink_args) {
    using call_t = detail::call<Part, R, Combine, Sink>;
    auto c = new call_t(1, std::move(combine), std::forward<SinkArgs>(sink_args)...);
    c->fail(err);
    c->release(); // the reference of the job that never was
    return c;
  }

  // A call on every shard; `combine` folds their parts.
  template <class Part, class R, class Sink, class Op, class Combine, class... SinkArgs>
  auto start_all(Op op, Combine combine, SinkArgs&&... sink_args) const {
    std::vector<std::pair<size_t, Op>> parts;
    for (size_t i = 0; i < core_->routes.size(); ++i)
      parts.emplace_back(i, op);
    return start<Part, R, Sink>(std::move(parts), std::move(combine),
                                std::forward<SinkArgs>(sink_args)...);
  }

  // Each *_call takes a sink_tag naming the sink type, then the sink's
  // constructor arguments; defined in cache_calls.hpp.
  template <class Sink, class... A>
  auto get_call(std::string_view key, detail::sink_tag<Sink>, A&&... a) const;
  template <class Sink, class... A>
  auto put_call(std::string_view key, std::string_view bytes, ttl t,
                detail::sink_tag<Sink>, A&&... a) const;
  template <class Sink, class... A>
  auto put_call(std::string_view key, std::string_view bytes, ttl t,
                const dependencies& deps, detail::sink_tag<Sink>, A&&... a) const;
  template <class Sink, class... A>
  auto load_call(std::string_view key, detail::sink_tag<Sink>, A&&... a) const;
  template <class Sink, class... A>
  auto erase_call(std::string_view key, detail::sink_tag<Sink>, A&&... a) const;
  template <class Sink, class... A>
  auto contains_call(std::string_view key, detail::sink_tag<Sink>, A&&... a) const;
  template <class Sink, class... A>
  auto ttl_call(std::string_view key, detail::sink_tag<Sink>, A&&... a) const;
  template <class Sink, class... A>
  auto get_many_call(const std::vector<std::string>& keys, detail::sink_tag<Sink>,
                     A&&... a) const;
  template <class Sink, class... A>
  auto put_many_call(const std::vector<std::pair<std::string, std::string>>& items, ttl t,
                     detail::sink_tag<Sink>, A&&... a) const;
  template <class Sink, class... A>
  auto clear_call(detail::sink_tag<Sink>, A&&... a) const;
  template <class Sink, class... A>
  auto remove_expired_call(detail::sink_tag<Sink>, A&&... a) const;
  template <class Sink, class... A>
  auto stats_call(detail::sink_tag<Sink>, A&&... a) const;

  std::shared_ptr<detail::cache_core> core_;
};

} // namespace karlton

#include "runtime/cache_calls.hpp"

#undef KARLTON_FWD

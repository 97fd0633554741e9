// A handle to one named cache, for any thread: blocking calls, futures,
// callbacks, and the shard actors themselves for callers that are actors.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
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

#include <karlton/messages/compute.hpp>
#include <karlton/messages/shard_interface.hpp>
#include <karlton/runtime/callback.hpp>
#include <karlton/runtime/options.hpp>

namespace karlton {

namespace detail {
struct cache_core; // runtime/cache_core.hpp
template <class Sink>
struct sink_tag;        // runtime/bridge.hpp
struct held_doorbell;   // runtime/bridge.hpp
struct doorbell_access; // runtime/cache.cpp
} // namespace detail

/// While one lives on a thread, the calls that thread makes that need a
/// shard queue their jobs at once but wake each shard (ring its doorbell, an
/// actor message) only when this rings them: a thread that starts many
/// asynchronous calls in one go wakes each shard once, not once per call
/// (each wake of a sleeping CAF worker is a futex call and a context switch).
/// A shard that is busy takes the jobs without waiting for the ring.
///
/// The ring must follow soon: `first_held` is called when the first doorbell
/// since the last ring is held back, to schedule `ring` (karlton-node's RESP
/// I/O threads post it behind the round of ready clients they are running);
/// a blocking call on the thread and a full shard queue ring first (every
/// holder on the thread), a call that returns a future rings at once, and the
/// destructor rings what is left. A nested one takes over until it ends. Not
/// for actors (they send their own messages).
class held_doorbells {
public:
  /// Holds this thread's doorbells from now on; `first_held` (may be
  /// empty) is called on this thread when the first one since a ring is held.
  explicit held_doorbells(std::function<void()> first_held);
  ~held_doorbells();
  held_doorbells(const held_doorbells&) = delete;
  held_doorbells& operator=(const held_doorbells&) = delete;

  /// Rings each shard held back since the last ring, once.
  void ring();
  /// Shards held back now.
  size_t held() const noexcept;

  /// The one on this thread, or null.
  static held_doorbells* current() noexcept;

private:
  friend struct detail::doorbell_access;
  std::function<void()> first_held_;
  std::vector<detail::held_doorbell> held_;
  held_doorbells* previous_;
};

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
/// Reads that hit are served on the calling thread, without a message and
/// without a lock (the direct read path): `get`, `get_async`, `get_many`,
/// `get_many_async` and, on caches without refresh-ahead or early expiration,
/// `get_or_load` and `get_or_load_async` read the shard's table first (a
/// callback of a hit runs on the caller's thread, before the call returns, and
/// so does that of a `get_many_async` whose keys all hit). What a hit cannot
/// decide (a miss, an expired entry, a lapsed read lease) and every other
/// call go to the shard as a message. Which calls block: a blocking call
/// waits for a shard only when it needs one, so a hit never blocks. A hit
/// does not wait for the caller's own asynchronous writes still in flight
/// (`put_async`, `erase_async`): until their result is in, a `get` of the
/// key may return the value from before them.
///
/// Calls on many keys send one job per shard, not per key. After the runtime
/// stopped, every call returns `shut_down`. A blocking call that needs a
/// shard, made inside an actor (on a scheduler thread), returns
/// `blocking_in_actor` at once; a hit is answered there too.
///
/// Errors any call can return, besides those named at each call: `shut_down`;
/// a blocking call also `timeout` (after `call-timeout`; the call may still
/// take effect), `overloaded` (the shard's ingress queue stayed full) and
/// `blocking_in_actor`. Calls on a default-constructed handle are undefined.
/// @threadsafe
class cache {
public:
  /// The result of a call that returns nothing but may fail.
  using unit = caf::unit_t;

  /// An empty handle, false until assigned from `runtime::create_cache`.
  cache() = default;
  /// False for a default-constructed handle.
  explicit operator bool() const noexcept;

  /// The name it was created with.
  const std::string& name() const;
  /// The options it was created with, defaults filled in.
  const cache_options& options() const;
  /// How many shard actors hold its entries (`cache_options::shards`).
  size_t shard_count() const;

  /// The shard that owns `key`, for requests from actors.
  shard_actor shard_for(std::string_view key) const;
  /// Every shard, in index order, for requests to all of them from actors.
  std::vector<shard_actor> shards() const;

  // -- blocking ---------------------------------------------------------------

  /// The cached value, or an empty `value` on a miss. A hit is read on this
  /// thread and never waits; it reflects every change a call returned
  /// before this one began.
  caf::expected<value> get(std::string_view key) const;
  /// Stores `bytes` under `key`; `t` defaults to the cache's `default-ttl`.
  /// Errors: `key_too_large`, `value_too_large`, `invalid_option` (a
  /// non-positive `t`), all before anything is sent; with a write mode,
  /// `store_failure` when write-through storage fails.
  caf::error put(std::string_view key, std::string_view bytes,
                 ttl t = ttl::cache_default()) const;
  /// Stores `bytes` under `key`, depending on `deps`: when one of its events
  /// is emitted, or one of its keys or tags invalidated, the entry goes too.
  /// Under a write mode it is written as `put` (the same errors), the links
  /// going in with the value; past the dependency limits `invalid_option` or
  /// `key_too_large`, and the store never sees it.
  caf::error put(std::string_view key, std::string_view bytes, ttl t,
                 const dependencies& deps) const;
  /// Invalidates `key`; true if it was cached and served (as `contains` would have
  /// said: not an entry a lapsed read lease withholds). In a cache whose entries
  /// declare dependencies, what depends on `key` is invalidated too, transitively,
  /// right after (asynchronously; `runtime::invalidate_tag(key)` waits).
  caf::expected<bool> erase(std::string_view key) const;
  /// True if `key` is cached and not expired; never loads, never counts as
  /// a hit or miss.
  caf::expected<bool> contains(std::string_view key) const;
  /// How long `key` has left: missing, never expiring, or a duration.
  caf::expected<remaining_ttl> ttl_of(std::string_view key) const;
  /// One value per key, in order; empty where missed. Hits are read on this
  /// thread (their lookups overlapped across the batch); one call per shard
  /// asks for the keys that missed, and only if some did.
  caf::expected<std::vector<value>> get_many(const std::vector<std::string>& keys) const;
  /// A hint, nothing more: starts loading into the CPU's caches what the
  /// direct reads of these `n` keys will touch, all at once, so that reads
  /// made soon after (a pipeline's GETs) wait for memory once, not once
  /// each. Reads nothing, counts nothing, sends nothing.
  void prefetch(const std::string_view* keys, size_t n) const noexcept;
  /// Stores each (key, bytes) pair with `t`. Every item is checked first (the
  /// errors of `put`), so bad input stores none; it is not atomic: on
  /// `timeout`, or on write-back's `overloaded` (`max-dirty`), the items
  /// that went in before it are applied and stay.
  caf::error put_many(const std::vector<std::pair<std::string, std::string>>& items,
                      ttl t = ttl::cache_default()) const;
  /// Removes every entry; returns how many.
  caf::expected<uint64_t> clear() const;
  /// Removes the expired entries now (not waiting for the expiry timer);
  /// returns how many.
  caf::expected<uint64_t> remove_expired() const;
  /// Read-through: the cached value, or the loader's (one load per key in
  /// flight; a write or invalidation during a load voids it). Needs a loader.
  caf::expected<value> get_or_load(std::string_view key) const;
  /// Counters summed over all shards.
  caf::expected<cache_stats> stats() const;

  // -- atomic read-modify-write (one step on the owning shard) ------------------
  // Each waits behind the key's writes still awaiting the store, loads a
  // missing key first in a read-through cache, then applies its change with
  // the cache's write mode, like `put` and `erase`. Atomic on this node only.

  /// Applies `fn` to the key's live value (empty if absent). `fn` runs on the
  /// shard's thread, exactly once (see `compute_function`); if it throws,
  /// nothing changes and the call fails with `compute_failed`.
  caf::expected<computed> compute(std::string_view key, compute_function fn) const;
  /// Stores `bytes` if the key is absent, else `fn(old, bytes)` (nullopt
  /// erases). `t` applies to a new entry only.
  caf::expected<computed> merge(std::string_view key, std::string_view bytes,
                                merge_function fn, ttl t = ttl::cache_default()) const;
  /// Adds `delta` to the base-10 integer stored under `key` (absent: 0) and
  /// returns the sum; the entry keeps its expiry, a new one gets `new_entry`.
  /// Errors: `not_an_integer` (not an int64, or the sum overflows).
  caf::expected<int64_t> increment(std::string_view key, int64_t delta = 1,
                                   ttl new_entry = ttl::cache_default()) const;
  /// Stores `desired` (nullopt: erases) only if the key's value is `expected`
  /// (nullopt: absent); true if it did.
  caf::expected<bool> compare_and_set(std::string_view key,
                                      std::optional<std::string_view> expected,
                                      std::optional<std::string_view> desired,
                                      ttl t = ttl::cache_default()) const;
  /// A new lifetime from now, the value kept: nullopt never expires, <= 0
  /// expires now. In this node's cache only (no store write, no peer told).
  /// Returns the remaining ttl before the change (`missing`: nothing changed).
  caf::expected<remaining_ttl> set_ttl(std::string_view key,
                                       std::optional<caf::timespan> left) const;

  /// The same cache, through a handle whose calls never wait for room in a
  /// full shard queue: they fail with `overloaded` at once. For threads that
  /// must never block, such as a network front end's I/O threads.
  cache without_queue_wait() const;
  /// The same cache, through a handle whose calls wait for room in a full
  /// shard queue (up to `call-timeout`), as a handle from `create_cache` does:
  /// `without_queue_wait` undone, for a thread that may wait (a front end's
  /// blocking pool); never for one that must not.
  cache with_queue_wait() const;

  // -- write-back ---------------------------------------------------------------

  /// Returns once every write that was dirty when it was called is in the
  /// store (at once for caches without write-back). Waits up to `timeout`.
  caf::error force_flush(caf::timespan timeout = std::chrono::seconds{60}) const;
  /// `force_flush` without waiting: calls `f(caf::expected<unit>)` once those
  /// writes are stored, or with the error (`timeout` after `timeout`). `f`
  /// runs on a thread of the actor system, or on the caller's when the call
  /// ends at once (no write-back, `shut_down`). Callable inside an actor.
  template <class F>
  void force_flush_async(caf::timespan timeout, F f) const {
    force_flush_async_fn(timeout, callback<unit>(std::move(f)));
  }
  /// Writes the store does not have yet (0 without write-back).
  caf::expected<uint64_t> dirty_count() const;
  /// The flusher's counters (all zero without write-back).
  caf::expected<write_stats> flush_stats() const;

  // -- asynchronous, as futures -------------------------------------------------
  // Each returns once its jobs are queued (while a shard's ingress queue is
  // full it waits, up to `call-timeout`, then gives `overloaded`). The future
  // holds what the blocking call of the same name returns (`unit` for a
  // `caf::error`) but never `timeout`: how long to wait is the caller's
  // choice. Do not wait on it inside an actor.

  /// `get`, as a future.
  std::future<caf::expected<value>> get_async(std::string_view key) const;
  /// `get_or_load`, as a future; ready when the load ends.
  std::future<caf::expected<value>> get_or_load_async(std::string_view key) const;
  /// `put`, as a future.
  std::future<caf::expected<unit>> put_async(std::string_view key, std::string_view bytes,
                                             ttl t = ttl::cache_default()) const;
  /// `put` with dependencies, as a future.
  std::future<caf::expected<unit>> put_async(std::string_view key, std::string_view bytes,
                                             ttl t, const dependencies& deps) const;
  /// `erase`, as a future.
  std::future<caf::expected<bool>> erase_async(std::string_view key) const;
  /// `contains`, as a future.
  std::future<caf::expected<bool>> contains_async(std::string_view key) const;
  /// `ttl_of`, as a future.
  std::future<caf::expected<remaining_ttl>> ttl_of_async(std::string_view key) const;
  /// `get_many`, as a future.
  std::future<caf::expected<std::vector<value>>>
  get_many_async(const std::vector<std::string>& keys) const;
  /// `put_many`, as a future.
  std::future<caf::expected<unit>>
  put_many_async(const std::vector<std::pair<std::string, std::string>>& items,
                 ttl t = ttl::cache_default()) const;
  /// `clear`, as a future.
  std::future<caf::expected<uint64_t>> clear_async() const;
  /// `remove_expired`, as a future.
  std::future<caf::expected<uint64_t>> remove_expired_async() const;
  /// `stats`, as a future.
  std::future<caf::expected<cache_stats>> stats_async() const;
  /// `compute`, as a future.
  std::future<caf::expected<computed>> compute_async(std::string_view key,
                                                     compute_function fn) const;
  /// `increment`, as a future.
  std::future<caf::expected<int64_t>> increment_async(std::string_view key, int64_t delta,
                                                      ttl new_entry) const;
  /// `compare_and_set`, as a future.
  std::future<caf::expected<bool>>
  compare_and_set_async(std::string_view key, std::optional<std::string_view> expected,
                        std::optional<std::string_view> desired, ttl t) const;
  /// `set_ttl`, as a future.
  std::future<caf::expected<remaining_ttl>>
  set_ttl_async(std::string_view key, std::optional<caf::timespan> left) const;

  // -- asynchronous, with callbacks -----------------------------------------------
  // `f(caf::expected<T>)` runs on the shard's thread (or on the caller's, if
  // the call fails before reaching a shard or a get is a hit read directly). It must be
  // quick and must not make blocking calls on this runtime. An empty
  // std::function or a null function pointer as `f` asks for no answer.

  /// `get`, calling `f(caf::expected<value>)`.
  template <class F>
  void get_async(std::string_view key, F f) const {
    get_async_fn(key, callback<value>(std::move(f)));
  }
  /// `put`, calling `f(caf::expected<unit>)`.
  template <class F>
  void put_async(std::string_view key, std::string_view bytes, ttl t, F f) const {
    put_async_fn(key, bytes, t, callback<unit>(std::move(f)));
  }
  /// `get_or_load`, calling `f(caf::expected<value>)` when the load ends.
  template <class F>
  void get_or_load_async(std::string_view key, F f) const {
    get_or_load_async_fn(key, callback<value>(std::move(f)));
  }
  /// `erase`, calling `f(caf::expected<bool>)`.
  template <class F>
  void erase_async(std::string_view key, F f) const {
    erase_async_fn(key, callback<bool>(std::move(f)));
  }
  /// `get_many`, calling `f(caf::expected<std::vector<value>>)`: on this thread
  /// before it returns if every key hits, else on a shard's thread.
  template <class F>
  void get_many_async(const std::vector<std::string>& keys, F f) const {
    get_many_async_fn(keys, callback<std::vector<value>>(std::move(f)));
  }
  /// `put_many`, calling `f(caf::expected<unit>)`.
  template <class F>
  void put_many_async(const std::vector<std::pair<std::string, std::string>>& items,
                      ttl t, F f) const {
    put_many_async_fn(items, t, callback<unit>(std::move(f)));
  }
  /// `put` with dependencies, calling `f(caf::expected<unit>)`.
  template <class F>
  void put_async(std::string_view key, std::string_view bytes, ttl t,
                 const dependencies& deps, F f) const {
    put_deps_async_fn(key, bytes, t, deps, callback<unit>(std::move(f)));
  }
  /// `contains`, calling `f(caf::expected<bool>)`.
  template <class F>
  void contains_async(std::string_view key, F f) const {
    contains_async_fn(key, callback<bool>(std::move(f)));
  }
  /// `ttl_of`, calling `f(caf::expected<remaining_ttl>)`.
  template <class F>
  void ttl_of_async(std::string_view key, F f) const {
    ttl_of_async_fn(key, callback<remaining_ttl>(std::move(f)));
  }
  /// `clear`, calling `f(caf::expected<uint64_t>)`.
  template <class F>
  void clear_async(F f) const {
    clear_async_fn(callback<uint64_t>(std::move(f)));
  }
  /// `stats`, calling `f(caf::expected<cache_stats>)`.
  template <class F>
  void stats_async(F f) const {
    stats_async_fn(callback<cache_stats>(std::move(f)));
  }
  /// `compute`, calling `f(caf::expected<computed>)`.
  template <class F>
  void compute_async(std::string_view key, compute_function fn, F f) const {
    compute_async_fn(key, std::move(fn), callback<computed>(std::move(f)));
  }
  /// `increment`, calling `f(caf::expected<int64_t>)`.
  template <class F>
  void increment_async(std::string_view key, int64_t delta, ttl new_entry, F f) const {
    increment_async_fn(key, delta, new_entry, callback<int64_t>(std::move(f)));
  }
  /// `compare_and_set`, calling `f(caf::expected<bool>)`.
  template <class F>
  void compare_and_set_async(std::string_view key,
                             std::optional<std::string_view> expected,
                             std::optional<std::string_view> desired, ttl t, F f) const {
    compare_and_set_async_fn(key, expected, desired, t, callback<bool>(std::move(f)));
  }
  /// `set_ttl`, calling `f(caf::expected<remaining_ttl>)`.
  template <class F>
  void set_ttl_async(std::string_view key, std::optional<caf::timespan> left, F f) const {
    set_ttl_async_fn(key, left, callback<remaining_ttl>(std::move(f)));
  }

private:
  friend class runtime;
  friend class put_batch;
  explicit cache(std::shared_ptr<detail::cache_core> core);

  // The callback calls, out of line: the caller's callable, type-erased
  // (in place when small: runtime/callback.hpp).
  template <class R>
  using callback = detail::callback_fn<void(caf::expected<R>)>;
  void get_async_fn(std::string_view key, callback<value> f) const;
  void put_async_fn(std::string_view key, std::string_view bytes, ttl t,
                    callback<unit> f) const;
  void get_or_load_async_fn(std::string_view key, callback<value> f) const;
  void erase_async_fn(std::string_view key, callback<bool> f) const;
  void get_many_async_fn(const std::vector<std::string>& keys,
                         callback<std::vector<value>> f) const;
  void put_many_async_fn(const std::vector<std::pair<std::string, std::string>>& items,
                         ttl t, callback<unit> f) const;
  void put_deps_async_fn(std::string_view key, std::string_view bytes, ttl t,
                         const dependencies& deps, callback<unit> f) const;
  void contains_async_fn(std::string_view key, callback<bool> f) const;
  void ttl_of_async_fn(std::string_view key, callback<remaining_ttl> f) const;
  void clear_async_fn(callback<uint64_t> f) const;
  void stats_async_fn(callback<cache_stats> f) const;
  void compute_async_fn(std::string_view key, compute_function fn,
                        callback<computed> f) const;
  void increment_async_fn(std::string_view key, int64_t delta, ttl new_entry,
                          callback<int64_t> f) const;
  void compare_and_set_async_fn(std::string_view key,
                                std::optional<std::string_view> expected,
                                std::optional<std::string_view> desired, ttl t,
                                callback<bool> f) const;
  void set_ttl_async_fn(std::string_view key, std::optional<caf::timespan> left,
                        callback<remaining_ttl> f) const;
  void force_flush_async_fn(caf::timespan timeout, callback<unit> f) const;

  using deadline_t = std::chrono::steady_clock::time_point;

  /// `distribution::sync`: waits until every member applied what the shard
  /// of `key` (or every shard) told the peer actor so far. `timeout` names
  /// the nodes that did not answer; nothing to do in other modes.
  caf::error await_peers(std::optional<std::string_view> key = std::nullopt) const;

  size_t shard_of(uint64_t hash) const noexcept;
  caf::timespan timeout() const noexcept;
  deadline_t deadline() const;
  // When a full shard queue stops waiting for room: the deadline, or at once.
  deadline_t queue_deadline() const;

  // The three call styles. `launch(tag, sink_args...)` starts the call with a
  // sink of the tagged type and returns it, holding the caller's reference.
  template <class R, class Launch>
  caf::expected<R> blocking(Launch launch) const;
  template <class R, class Launch>
  static std::future<caf::expected<R>> as_future(Launch launch);
  template <class R, class F, class Launch>
  static void with_callback(F f, Launch launch);

  // Starts a call of `parts.size()` jobs; `parts[i]` is (shard, op), where
  // `op(shard_state&, time_point)` returns `caf::expected<Part>`.
  template <class Part, class R, class Sink, class Op, class Combine, class... SinkArgs>
  auto start(std::vector<std::pair<size_t, Op>>&& parts, Combine combine,
             SinkArgs&&... sink_args) const;

  // A call on the one shard that owns `hash`, or, if `err` is set, a call of
  // the same type that fails at once without reaching any shard.
  template <class R, class Sink, class Op, class... SinkArgs>
  auto start_one(uint64_t hash, caf::error err, Op op, SinkArgs&&... sink_args) const;

  // A call that fails with `err` before reaching any shard.
  template <class Part, class R, class Sink, class Combine, class... SinkArgs>
  static auto fail_call(Combine combine, caf::error err, SinkArgs&&... sink_args);

  // A call on every shard; `combine` folds their parts.
  template <class Part, class R, class Sink, class Op, class Combine, class... SinkArgs>
  auto start_all(Op op, Combine combine, SinkArgs&&... sink_args) const;

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
  // `op` on the shard that owns `key`, or a call failing with `err`.
  template <class R, class Op, class Sink, class... A>
  auto keyed_op_call(std::string_view key, caf::error err, Op op, detail::sink_tag<Sink>,
                     A&&... a) const;

  std::shared_ptr<detail::cache_core> core_;
  // `without_queue_wait()`: calls give `overloaded` at once on a full queue.
  bool no_queue_wait_ = false;
};

} // namespace karlton

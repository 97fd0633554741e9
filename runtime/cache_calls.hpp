// The operations of `cache`, each written once for all three call styles: an
// op that runs on a shard (`op(shard_state&, time_point) -> expected<Part>`;
// the shard actor runs the same ones, from actors/shard_ops.hpp), the shards
// it goes to, and how the parts combine; and the call machinery of `cache`
// they run on. Internal: included by the files that define `cache`'s calls
// (cache_api.cpp), never by a public header.
#pragma once

#include <chrono>
#include <future>
#include <string>
#include <utility>
#include <vector>

#include <caf/send.hpp>

#include "actors/shard_ops.hpp"
#include "base/rcu.hpp"
#include "base/routing.hpp"
#include "runtime/bridge.hpp"
#include "runtime/cache_core.hpp"
#include <karlton/messages/errors.hpp>
#include <karlton/runtime/cache.hpp>

namespace karlton {

namespace detail {

inline caf::error check_put(const shard_options& cfg, std::string_view key,
                            std::string_view bytes, ttl t) {
  if (auto err = check_sizes(cfg, key.size(), bytes.size())) return err;
  if (!t.valid()) return make_error(errc::invalid_option, "ttl must be positive");
  return caf::none;
}

/// `check_put` of a put: one refused for its size counts as `rejected`, as
/// the shard counts those it refuses.
inline caf::error check_put(cache_core& core, std::string_view key,
                            std::string_view bytes, ttl t) {
  if (auto err = check_sizes(core.shard_cfg, key.size(), bytes.size())) {
    core.refused_puts.fetch_add(1, std::memory_order_relaxed);
    return err;
  }
  return check_put(core.shard_cfg, key, bytes, t);
}

/// The direct read path: a hit served from the shard's table on the caller's
/// thread, without a message; an empty value when the shard must answer (a
/// miss, an expired entry, a lapsed lease, a stopped shard).
inline value read_directly(const cache_core& core, std::string_view key, uint64_t hash) {
  auto& route = core.routes[shard_index(hash, core.routes.size())];
  auto r = route.reads->read(key, static_cast<uint32_t>(hash));
  if (r.wants_drain)
    // Under a pass: shutdown may be clearing the actor handles and the
    // system meanwhile; a drain refused then is a drain not needed.
    if (system_pass pass{*core.runtime_gate}; pass)
      caf::anon_send(route.actor, drain_reads_atom::value);
  return std::move(r.val);
}

/// Starts the memory accesses of the direct lookups of `n` key hashes,
/// step by step across them, so their cache misses overlap instead of
/// following one another (as a shard does for queued jobs).
inline void prefetch_directly(const cache_core& core, const uint64_t* hashes,
                              size_t n) noexcept {
  rcu::read_section section; // the arrays prefetched stay alive meanwhile
  for (int step = 0; step < 3; ++step)
    for (size_t i = 0; i < n; ++i)
      core.routes[shard_index(hashes[i], core.routes.size())].reads->table.prefetch(
        static_cast<uint32_t>(hashes[i]), step);
}

/// `read_directly` for each key of a batch, their lookups prefetched
/// together (`prefetch_directly`). Fills `out[i]` with hits; returns the
/// positions of the keys the shards must answer.
inline std::vector<uint32_t> read_many_directly(const cache_core& core,
                                                const std::vector<std::string>& keys,
                                                std::vector<value>& out) {
  std::vector<uint64_t> hashes(keys.size());
  for (size_t i = 0; i < keys.size(); ++i)
    hashes[i] = hash_key(keys[i]);
  prefetch_directly(core, hashes.data(), hashes.size());
  std::vector<uint32_t> missed;
  for (size_t i = 0; i < keys.size(); ++i)
    if (!(out[i] = read_directly(core, keys[i], hashes[i])))
      missed.push_back(static_cast<uint32_t>(i));
  return missed;
}

/// True if a `get_or_load` hit decides nothing beyond the value, so it may be
/// read directly: no refresh-ahead and no early expiration, which the shard
/// decides per hit (those caches take the shard's path for every call).
inline bool loads_read_directly(const cache_core& core) {
  return core.shard_cfg.read_through && core.shard_cfg.refresh_after.count() == 0 &&
         core.shard_cfg.early_refresh == early_refresh_mode::none;
}

template <class T>
auto sum_parts() {
  return [](std::vector<T>&& parts) {
    T total{};
    for (auto& p : parts)
      total += p;
    return total;
  };
}

} // namespace detail

inline size_t cache::shard_of(uint64_t hash) const noexcept {
  return shard_index(hash, core_->routes.size());
}

inline caf::timespan cache::timeout() const noexcept {
  return core_->options.call_timeout;
}

inline cache::deadline_t cache::deadline() const {
  return std::chrono::steady_clock::now() +
         std::chrono::duration_cast<std::chrono::steady_clock::duration>(
           core_->options.call_timeout);
}

inline cache::deadline_t cache::queue_deadline() const {
  // Already passed: `submit` gives `overloaded` instead of waiting for room.
  // An actor never waits: it would hold a scheduler thread the shards need,
  // and a compute function's call to its own shard (whose thread it runs on)
  // could only time out.
  return no_queue_wait_ || detail::on_scheduler_thread(*core_->runtime_gate)
           ? deadline_t::min()
           : deadline();
}

template <class R, class Launch>
caf::expected<R> cache::blocking(Launch launch) const {
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
std::future<caf::expected<R>> cache::as_future(Launch launch) {
  std::promise<caf::expected<R>> p;
  auto f = p.get_future();
  launch(detail::sink_tag<detail::promise_sink<R>>{}, std::move(p))->release();
  // The caller may wait for the future on this thread, which nothing would
  // ring for it: calls that return a future are never held.
  detail::ring_held_doorbells();
  return f;
}

template <class R, class F, class Launch>
void cache::with_callback(F f, Launch launch) {
  launch(detail::sink_tag<detail::callback_sink<R, F>>{}, std::move(f))->release();
}

template <class Part, class R, class Sink, class Op, class Combine, class... SinkArgs>
auto cache::start(std::vector<std::pair<size_t, Op>>&& parts, Combine combine,
                  SinkArgs&&... sink_args) const {
  using call_t = detail::call<Part, R, Combine, Sink>;
  auto c =
    new call_t(parts.size(), std::move(combine), std::forward<SinkArgs>(sink_args)...);
  // One deadline for all parts: full queues on n shards cost one
  // call-timeout, not n.
  auto until = queue_deadline();
  for (size_t i = 0; i < parts.size(); ++i) {
    auto job = new detail::part_job<call_t, Op>(c, i, std::move(parts[i].second));
    detail::submit(core_->runtime_gate, core_->routes[parts[i].first], job, until);
  }
  if (parts.empty()) c->complete_empty();
  return c;
}

template <class R, class Sink, class Op, class... SinkArgs>
auto cache::start_one(uint64_t hash, caf::error err, Op op,
                      SinkArgs&&... sink_args) const {
  using call_t = detail::single_call<R, Op, Sink>;
  auto c = new call_t(static_cast<uint32_t>(hash), std::move(op),
                      std::forward<SinkArgs>(sink_args)...);
  if (err)
    c->abandon(err); // as if a shard had refused it
  else
    detail::submit(core_->runtime_gate, core_->routes[shard_of(hash)], c,
                   queue_deadline());
  return c;
}

template <class Part, class R, class Sink, class Combine, class... SinkArgs>
auto cache::fail_call(Combine combine, caf::error err, SinkArgs&&... sink_args) {
  using call_t = detail::call<Part, R, Combine, Sink>;
  auto c = new call_t(1, std::move(combine), std::forward<SinkArgs>(sink_args)...);
  c->fail(err);
  c->release(); // the reference of the job that never was
  return c;
}

template <class Part, class R, class Sink, class Op, class Combine, class... SinkArgs>
auto cache::start_all(Op op, Combine combine, SinkArgs&&... sink_args) const {
  std::vector<std::pair<size_t, Op>> parts;
  for (size_t i = 0; i < core_->routes.size(); ++i)
    parts.emplace_back(i, op);
  return start<Part, R, Sink>(std::move(parts), std::move(combine),
                              std::forward<SinkArgs>(sink_args)...);
}

template <class Sink, class... A>
auto cache::get_call(std::string_view key, detail::sink_tag<Sink>, A&&... a) const {
  auto h = hash_key(key);
  auto op = shard_ops::get<small_key>{small_key{key}, static_cast<uint32_t>(h)};
  return start_one<value, Sink>(h, caf::error{}, std::move(op), std::forward<A>(a)...);
}

template <class Sink, class... A>
auto cache::put_call(std::string_view key, std::string_view bytes, ttl t,
                     detail::sink_tag<Sink>, A&&... a) const {
  // Checked here too, so an oversized value is refused before it is copied.
  auto err = detail::check_put(*core_, key, bytes, t);
  auto h = hash_key(key);
  // Under write-through or write-back the answer may come later (see
  // shard_state::write); without a write mode it comes at once.
  auto op = shard_ops::put{err ? value{} : value::make(key, bytes, h), t};
  return start_one<unit, Sink>(h, std::move(err), std::move(op), std::forward<A>(a)...);
}

template <class Sink, class... A>
auto cache::put_call(std::string_view key, std::string_view bytes, ttl t,
                     const dependencies& deps, detail::sink_tag<Sink>, A&&... a) const {
  auto err = detail::check_put(*core_, key, bytes, t);
  auto h = hash_key(key);
  auto op = shard_ops::put_with_deps<dependencies>{
    err ? value{} : value::make(key, bytes, h), t, deps};
  return start_one<unit, Sink>(h, std::move(err), std::move(op), std::forward<A>(a)...);
}

template <class Sink, class... A>
auto cache::load_call(std::string_view key, detail::sink_tag<Sink>, A&&... a) const {
  // Answered at once on a hit, else when the load it started or joined ends.
  auto h = hash_key(key);
  auto op = shard_ops::load<small_key>{small_key{key}, static_cast<uint32_t>(h)};
  return start_one<value, Sink>(h, caf::error{}, std::move(op), std::forward<A>(a)...);
}

template <class Sink, class... A>
auto cache::erase_call(std::string_view key, detail::sink_tag<Sink>, A&&... a) const {
  auto op = shard_ops::erase<small_key>{small_key{key}};
  return start_one<bool, Sink>(hash_key(key), caf::error{}, std::move(op),
                               std::forward<A>(a)...);
}

template <class Sink, class... A>
auto cache::contains_call(std::string_view key, detail::sink_tag<Sink>, A&&... a) const {
  auto op = shard_ops::contains<small_key>{small_key{key}};
  return start_one<bool, Sink>(hash_key(key), caf::error{}, std::move(op),
                               std::forward<A>(a)...);
}

template <class Sink, class... A>
auto cache::ttl_call(std::string_view key, detail::sink_tag<Sink>, A&&... a) const {
  auto op = shard_ops::ttl_of<small_key>{small_key{key}};
  return start_one<remaining_ttl, Sink>(hash_key(key), caf::error{}, std::move(op),
                                        std::forward<A>(a)...);
}

template <class Sink, class... A>
auto cache::get_many_call(const std::vector<std::string>& keys, detail::sink_tag<Sink>,
                          A&&... a) const {
  using part = std::vector<std::pair<uint32_t, value>>;
  // One op per shard, holding its keys in one buffer (no allocation per key).
  struct op_t {
    std::string bytes;
    std::vector<uint32_t> indices;
    std::vector<uint32_t> ends; // ends[i]: end of key i in `bytes`
    std::vector<shard_state::key_ref> refs;
    caf::expected<part> operator()(shard_state& s, time_point now) {
      part out;
      out.reserve(indices.size());
      size_t begin = 0;
      for (size_t i = 0; i < indices.size(); ++i) {
        refs[i].key = std::string_view{bytes}.substr(begin, ends[i] - begin);
        begin = ends[i];
      }
      size_t i = 0;
      s.get_many(refs, now,
                 [&](value v) { out.emplace_back(indices[i++], std::move(v)); });
      return out;
    }
  };
  std::vector<op_t> by_shard(core_->routes.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    auto h = hash_key(keys[i]);
    auto& op = by_shard[shard_of(h)];
    op.bytes += keys[i];
    op.indices.push_back(static_cast<uint32_t>(i));
    op.ends.push_back(static_cast<uint32_t>(op.bytes.size()));
    op.refs.push_back({{}, static_cast<uint32_t>(h)});
  }
  std::vector<std::pair<size_t, op_t>> parts;
  for (size_t s = 0; s < by_shard.size(); ++s)
    if (!by_shard[s].indices.empty()) parts.emplace_back(s, std::move(by_shard[s]));
  auto combine = [n = keys.size()](std::vector<part>&& parts) {
    std::vector<value> out(n);
    for (auto& p : parts)
      for (auto& [i, v] : p)
        out[i] = std::move(v);
    return out;
  };
  return start<part, std::vector<value>, Sink>(std::move(parts), combine,
                                               std::forward<A>(a)...);
}

template <class Sink, class... A>
auto cache::put_many_call(const std::vector<std::pair<std::string, std::string>>& items,
                          ttl t, detail::sink_tag<Sink>, A&&... a) const {
  auto combine = [](std::vector<unit>&&) { return unit{}; };
  // All items are checked before any is sent: no partial put from bad input.
  for (const auto& [k, v] : items)
    if (auto err = detail::check_put(*core_, k, v, t))
      return fail_call<unit, unit, Sink>(combine, std::move(err), std::forward<A>(a)...);
  std::vector<shard_ops::put_many> by_shard(core_->routes.size(),
                                            shard_ops::put_many{{}, t});
  for (const auto& [k, v] : items) {
    auto h = hash_key(k);
    by_shard[shard_of(h)].values.push_back(value::make(k, v, h));
  }
  std::vector<std::pair<size_t, shard_ops::put_many>> parts;
  for (size_t s = 0; s < by_shard.size(); ++s)
    if (!by_shard[s].values.empty()) parts.emplace_back(s, std::move(by_shard[s]));
  return start<unit, unit, Sink>(std::move(parts), combine, std::forward<A>(a)...);
}

template <class Sink, class... A>
auto cache::clear_call(detail::sink_tag<Sink>, A&&... a) const {
  return start_all<uint64_t, uint64_t, Sink>(
    shard_ops::clear{}, detail::sum_parts<uint64_t>(), std::forward<A>(a)...);
}

template <class Sink, class... A>
auto cache::remove_expired_call(detail::sink_tag<Sink>, A&&... a) const {
  return start_all<uint64_t, uint64_t, Sink>(
    shard_ops::remove_expired{}, detail::sum_parts<uint64_t>(), std::forward<A>(a)...);
}

template <class Sink, class... A>
auto cache::stats_call(detail::sink_tag<Sink>, A&&... a) const {
  auto combine = [core = core_](std::vector<cache_stats>&& parts) {
    auto total = detail::sum_parts<cache_stats>()(std::move(parts));
    total.rejected += core->refused_puts.load(std::memory_order_relaxed);
    return total;
  };
  return start_all<cache_stats, cache_stats, Sink>(shard_ops::stats{}, std::move(combine),
                                                   std::forward<A>(a)...);
}

template <class R, class Op, class Sink, class... A>
auto cache::keyed_op_call(std::string_view key, caf::error err, Op op,
                          detail::sink_tag<Sink>, A&&... a) const {
  return start_one<R, Sink>(hash_key(key), std::move(err), std::move(op),
                            std::forward<A>(a)...);
}

} // namespace karlton

// The calls of `cache` added for network front ends, out of line: callback
// forms of the remaining calls, the atomic read-modify-write family and
// `set_ttl` (cache_api.cpp holds the rest; split to keep each file short).
#include <karlton/runtime/cache.hpp>

#include <utility>

#include "actors/compute_ops.hpp"
#include "runtime/cache_calls.hpp"

// Forwards a lambda's `auto&&...` pack (sink tag and sink arguments).
#define KARLTON_FWD(x) std::forward<decltype(x)>(x)

namespace karlton {

namespace {

std::optional<std::string> copy_of(std::optional<std::string_view> x) {
  if (!x) return std::nullopt;
  return std::string{*x};
}

// The blocking form's answer once a sync-distributed cache's peers applied
// it (like `put`).
template <class T, class Await>
caf::expected<T> after_peers(caf::expected<T> r, Await await) {
  if (!r) return r;
  if (auto err = await()) return err;
  return r;
}

} // namespace

cache cache::without_queue_wait() const {
  cache c{core_};
  c.no_queue_wait_ = true;
  return c;
}

cache cache::with_queue_wait() const {
  return cache{core_};
}

void cache::put_deps_async_fn(std::string_view key, std::string_view bytes, ttl t,
                              const dependencies& deps, callback<unit> f) const {
  with_callback<unit>(std::move(f), [&](auto&&... s) {
    return put_call(key, bytes, t, deps, KARLTON_FWD(s)...);
  });
}

void cache::contains_async_fn(std::string_view key, callback<bool> f) const {
  with_callback<bool>(std::move(f),
                      [&](auto&&... s) { return contains_call(key, KARLTON_FWD(s)...); });
}

void cache::ttl_of_async_fn(std::string_view key, callback<remaining_ttl> f) const {
  with_callback<remaining_ttl>(
    std::move(f), [&](auto&&... s) { return ttl_call(key, KARLTON_FWD(s)...); });
}

void cache::clear_async_fn(callback<uint64_t> f) const {
  with_callback<uint64_t>(std::move(f),
                          [&](auto&&... s) { return clear_call(KARLTON_FWD(s)...); });
}

void cache::stats_async_fn(callback<cache_stats> f) const {
  with_callback<cache_stats>(std::move(f),
                             [&](auto&&... s) { return stats_call(KARLTON_FWD(s)...); });
}

// Each call is written once as a launch (one op on the key's shard) and
// run in the blocking, future or callback style.

#define KARLTON_COMPUTE_LAUNCH(R, err, op)                                               \
  [&](auto&&... s) { return keyed_op_call<R>(key, err, op, KARLTON_FWD(s)...); }

caf::expected<computed> cache::compute(std::string_view key, compute_function fn) const {
  auto op = shard_ops::compute<small_key>{small_key{key}, std::move(fn)};
  auto err = detail::check_put(core_->shard_cfg, key, {}, ttl::never());
  auto r = blocking<computed>(KARLTON_COMPUTE_LAUNCH(computed, err, std::move(op)));
  return after_peers(std::move(r), [&] { return await_peers(key); });
}

caf::expected<computed> cache::merge(std::string_view key, std::string_view bytes,
                                     merge_function fn, ttl t) const {
  auto op =
    shard_ops::merge<small_key>{small_key{key}, std::string{bytes}, std::move(fn), t};
  auto err = detail::check_put(core_->shard_cfg, key, {}, t);
  if (!err) err = check_sizes(core_->shard_cfg, key.size(), bytes.size());
  auto r = blocking<computed>(KARLTON_COMPUTE_LAUNCH(computed, err, std::move(op)));
  return after_peers(std::move(r), [&] { return await_peers(key); });
}

caf::expected<int64_t> cache::increment(std::string_view key, int64_t delta,
                                        ttl new_entry) const {
  auto op = shard_ops::increment<small_key>{small_key{key}, delta, new_entry};
  auto err = detail::check_put(core_->shard_cfg, key, {}, new_entry);
  auto r = blocking<int64_t>(KARLTON_COMPUTE_LAUNCH(int64_t, err, std::move(op)));
  return after_peers(std::move(r), [&] { return await_peers(key); });
}

caf::expected<bool> cache::compare_and_set(std::string_view key,
                                           std::optional<std::string_view> expected,
                                           std::optional<std::string_view> desired,
                                           ttl t) const {
  auto op = shard_ops::compare_and_set<small_key>{small_key{key}, copy_of(expected),
                                                  copy_of(desired), t};
  auto err = detail::check_put(core_->shard_cfg, key, {}, t);
  if (!err && desired) err = check_sizes(core_->shard_cfg, key.size(), desired->size());
  auto r = blocking<bool>(KARLTON_COMPUTE_LAUNCH(bool, err, std::move(op)));
  return after_peers(std::move(r), [&] { return await_peers(key); });
}

caf::expected<remaining_ttl> cache::set_ttl(std::string_view key,
                                            std::optional<caf::timespan> left) const {
  // Cache-only: nothing for peers to apply.
  auto op = shard_ops::set_ttl<small_key>{small_key{key}, left};
  auto err = detail::check_put(core_->shard_cfg, key, {}, ttl::never());
  return blocking<remaining_ttl>(
    KARLTON_COMPUTE_LAUNCH(remaining_ttl, err, std::move(op)));
}

std::future<caf::expected<remaining_ttl>>
cache::set_ttl_async(std::string_view key, std::optional<caf::timespan> left) const {
  auto op = shard_ops::set_ttl<small_key>{small_key{key}, left};
  auto err = detail::check_put(core_->shard_cfg, key, {}, ttl::never());
  return as_future<remaining_ttl>(
    KARLTON_COMPUTE_LAUNCH(remaining_ttl, err, std::move(op)));
}

std::future<caf::expected<computed>> cache::compute_async(std::string_view key,
                                                          compute_function fn) const {
  auto op = shard_ops::compute<small_key>{small_key{key}, std::move(fn)};
  auto err = detail::check_put(core_->shard_cfg, key, {}, ttl::never());
  return as_future<computed>(KARLTON_COMPUTE_LAUNCH(computed, err, std::move(op)));
}

std::future<caf::expected<int64_t>>
cache::increment_async(std::string_view key, int64_t delta, ttl new_entry) const {
  auto op = shard_ops::increment<small_key>{small_key{key}, delta, new_entry};
  auto err = detail::check_put(core_->shard_cfg, key, {}, new_entry);
  return as_future<int64_t>(KARLTON_COMPUTE_LAUNCH(int64_t, err, std::move(op)));
}

std::future<caf::expected<bool>>
cache::compare_and_set_async(std::string_view key,
                             std::optional<std::string_view> expected,
                             std::optional<std::string_view> desired, ttl t) const {
  auto op = shard_ops::compare_and_set<small_key>{small_key{key}, copy_of(expected),
                                                  copy_of(desired), t};
  auto err = detail::check_put(core_->shard_cfg, key, {}, t);
  if (!err && desired) err = check_sizes(core_->shard_cfg, key.size(), desired->size());
  return as_future<bool>(KARLTON_COMPUTE_LAUNCH(bool, err, std::move(op)));
}

void cache::compute_async_fn(std::string_view key, compute_function fn,
                             callback<computed> f) const {
  auto op = shard_ops::compute<small_key>{small_key{key}, std::move(fn)};
  auto err = detail::check_put(core_->shard_cfg, key, {}, ttl::never());
  with_callback<computed>(std::move(f),
                          KARLTON_COMPUTE_LAUNCH(computed, err, std::move(op)));
}

void cache::increment_async_fn(std::string_view key, int64_t delta, ttl new_entry,
                               callback<int64_t> f) const {
  auto op = shard_ops::increment<small_key>{small_key{key}, delta, new_entry};
  auto err = detail::check_put(core_->shard_cfg, key, {}, new_entry);
  with_callback<int64_t>(std::move(f),
                         KARLTON_COMPUTE_LAUNCH(int64_t, err, std::move(op)));
}

void cache::compare_and_set_async_fn(std::string_view key,
                                     std::optional<std::string_view> expected,
                                     std::optional<std::string_view> desired, ttl t,
                                     callback<bool> f) const {
  auto op = shard_ops::compare_and_set<small_key>{small_key{key}, copy_of(expected),
                                                  copy_of(desired), t};
  auto err = detail::check_put(core_->shard_cfg, key, {}, t);
  if (!err && desired) err = check_sizes(core_->shard_cfg, key.size(), desired->size());
  with_callback<bool>(std::move(f), KARLTON_COMPUTE_LAUNCH(bool, err, std::move(op)));
}

void cache::set_ttl_async_fn(std::string_view key, std::optional<caf::timespan> left,
                             callback<remaining_ttl> f) const {
  auto op = shard_ops::set_ttl<small_key>{small_key{key}, left};
  auto err = detail::check_put(core_->shard_cfg, key, {}, ttl::never());
  with_callback<remaining_ttl>(std::move(f),
                               KARLTON_COMPUTE_LAUNCH(remaining_ttl, err, std::move(op)));
}

} // namespace karlton

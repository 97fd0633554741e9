// The calls of `cache`, out of line: a consumer's translation unit sees only
// their declarations (cache.hpp), not the shard internals they run on. One
// non-inline call costs nanoseconds; the hand-off to a shard, microseconds.
#include <karlton/runtime/cache.hpp>

#include <memory>
#include <utility>

#include "runtime/cache_calls.hpp"

// Forwards a lambda's `auto&&...` pack (sink tag and sink arguments).
#define KARLTON_FWD(x) std::forward<decltype(x)>(x)

namespace karlton {

namespace {

std::future<caf::expected<value>> ready(value v) {
  std::promise<caf::expected<value>> p;
  p.set_value(std::move(v));
  return p.get_future();
}

} // namespace

cache::cache(std::shared_ptr<detail::cache_core> core) : core_(std::move(core)) {}

cache::operator bool() const noexcept {
  return core_ != nullptr;
}

const std::string& cache::name() const {
  return core_->options.name;
}

const cache_options& cache::options() const {
  return core_->options;
}

size_t cache::shard_count() const {
  return core_->routes.size();
}

shard_actor cache::shard_for(std::string_view key) const {
  return core_->routes[shard_of(hash_key(key))].actor;
}

// The reads try the shard's table first, on this thread (see
// detail::read_directly); only what it cannot answer becomes a call.

caf::expected<value> cache::get(std::string_view key) const {
  if (auto v = detail::read_directly(*core_, key, hash_key(key))) return v;
  return blocking<value>([&](auto&&... s) { return get_call(key, KARLTON_FWD(s)...); });
}

caf::error cache::put(std::string_view key, std::string_view bytes, ttl t) const {
  auto r = blocking<unit>(
    [&](auto&&... s) { return put_call(key, bytes, t, KARLTON_FWD(s)...); });
  return r ? await_peers(key) : std::move(r.error());
}

caf::error cache::put(std::string_view key, std::string_view bytes, ttl t,
                      const dependencies& deps) const {
  auto r = blocking<unit>(
    [&](auto&&... s) { return put_call(key, bytes, t, deps, KARLTON_FWD(s)...); });
  return r ? await_peers(key) : std::move(r.error());
}

caf::expected<bool> cache::erase(std::string_view key) const {
  auto r =
    blocking<bool>([&](auto&&... s) { return erase_call(key, KARLTON_FWD(s)...); });
  if (!r) return r;
  if (auto err = await_peers(key)) return err;
  return r;
}

caf::expected<bool> cache::contains(std::string_view key) const {
  return blocking<bool>(
    [&](auto&&... s) { return contains_call(key, KARLTON_FWD(s)...); });
}

caf::expected<remaining_ttl> cache::ttl_of(std::string_view key) const {
  return blocking<remaining_ttl>(
    [&](auto&&... s) { return ttl_call(key, KARLTON_FWD(s)...); });
}

void cache::prefetch(const std::string_view* keys, size_t n) const noexcept {
  constexpr size_t batch = 16; // hashes kept on the stack: no allocation
  uint64_t hashes[batch];
  while (n > 0) {
    auto m = std::min(n, batch);
    for (size_t i = 0; i < m; ++i)
      hashes[i] = hash_key(keys[i]);
    detail::prefetch_directly(*core_, hashes, m);
    keys += m;
    n -= m;
  }
}

caf::expected<std::vector<value>>
cache::get_many(const std::vector<std::string>& keys) const {
  std::vector<value> out(keys.size());
  auto missed = detail::read_many_directly(*core_, keys, out);
  if (missed.empty()) return out;
  // One job per shard, for the keys that missed only.
  std::vector<std::string> rest;
  rest.reserve(missed.size());
  for (auto i : missed)
    rest.push_back(keys[i]);
  auto answers = blocking<std::vector<value>>(
    [&](auto&&... s) { return get_many_call(rest, KARLTON_FWD(s)...); });
  if (!answers) return std::move(answers.error());
  for (size_t j = 0; j < missed.size(); ++j)
    out[missed[j]] = std::move((*answers)[j]);
  return out;
}

caf::error cache::put_many(const std::vector<std::pair<std::string, std::string>>& items,
                           ttl t) const {
  auto r = blocking<unit>(
    [&](auto&&... s) { return put_many_call(items, t, KARLTON_FWD(s)...); });
  return r ? await_peers() : std::move(r.error());
}

caf::expected<uint64_t> cache::clear() const {
  auto r = blocking<uint64_t>([&](auto&&... s) { return clear_call(KARLTON_FWD(s)...); });
  if (!r) return r;
  if (auto err = await_peers()) return err;
  return r;
}

caf::expected<uint64_t> cache::remove_expired() const {
  return blocking<uint64_t>(
    [&](auto&&... s) { return remove_expired_call(KARLTON_FWD(s)...); });
}

caf::expected<value> cache::get_or_load(std::string_view key) const {
  if (detail::loads_read_directly(*core_))
    if (auto v = detail::read_directly(*core_, key, hash_key(key))) return v;
  return blocking<value>([&](auto&&... s) { return load_call(key, KARLTON_FWD(s)...); });
}

caf::expected<cache_stats> cache::stats() const {
  return blocking<cache_stats>(
    [&](auto&&... s) { return stats_call(KARLTON_FWD(s)...); });
}

std::future<caf::expected<value>> cache::get_async(std::string_view key) const {
  if (auto v = detail::read_directly(*core_, key, hash_key(key)))
    return ready(std::move(v));
  return as_future<value>([&](auto&&... s) { return get_call(key, KARLTON_FWD(s)...); });
}

std::future<caf::expected<value>> cache::get_or_load_async(std::string_view key) const {
  if (detail::loads_read_directly(*core_))
    if (auto v = detail::read_directly(*core_, key, hash_key(key)))
      return ready(std::move(v));
  return as_future<value>([&](auto&&... s) { return load_call(key, KARLTON_FWD(s)...); });
}

std::future<caf::expected<cache::unit>>
cache::put_async(std::string_view key, std::string_view bytes, ttl t) const {
  return as_future<unit>(
    [&](auto&&... s) { return put_call(key, bytes, t, KARLTON_FWD(s)...); });
}

std::future<caf::expected<cache::unit>> cache::put_async(std::string_view key,
                                                         std::string_view bytes, ttl t,
                                                         const dependencies& deps) const {
  return as_future<unit>(
    [&](auto&&... s) { return put_call(key, bytes, t, deps, KARLTON_FWD(s)...); });
}

std::future<caf::expected<bool>> cache::erase_async(std::string_view key) const {
  return as_future<bool>([&](auto&&... s) { return erase_call(key, KARLTON_FWD(s)...); });
}

std::future<caf::expected<bool>> cache::contains_async(std::string_view key) const {
  return as_future<bool>(
    [&](auto&&... s) { return contains_call(key, KARLTON_FWD(s)...); });
}

std::future<caf::expected<remaining_ttl>>
cache::ttl_of_async(std::string_view key) const {
  return as_future<remaining_ttl>(
    [&](auto&&... s) { return ttl_call(key, KARLTON_FWD(s)...); });
}

std::future<caf::expected<std::vector<value>>>
cache::get_many_async(const std::vector<std::string>& keys) const {
  auto p = std::make_shared<std::promise<caf::expected<std::vector<value>>>>();
  auto f = p->get_future();
  get_many_async_fn(
    keys, [p](caf::expected<std::vector<value>> r) { p->set_value(std::move(r)); });
  detail::ring_held_doorbells(); // as as_future: calls returning a future are never held
  return f;
}

std::future<caf::expected<cache::unit>>
cache::put_many_async(const std::vector<std::pair<std::string, std::string>>& items,
                      ttl t) const {
  return as_future<unit>(
    [&](auto&&... s) { return put_many_call(items, t, KARLTON_FWD(s)...); });
}

std::future<caf::expected<uint64_t>> cache::clear_async() const {
  return as_future<uint64_t>([&](auto&&... s) { return clear_call(KARLTON_FWD(s)...); });
}

std::future<caf::expected<uint64_t>> cache::remove_expired_async() const {
  return as_future<uint64_t>(
    [&](auto&&... s) { return remove_expired_call(KARLTON_FWD(s)...); });
}

std::future<caf::expected<cache_stats>> cache::stats_async() const {
  return as_future<cache_stats>(
    [&](auto&&... s) { return stats_call(KARLTON_FWD(s)...); });
}

void cache::get_async_fn(std::string_view key, callback<value> f) const {
  if (auto v = detail::read_directly(*core_, key, hash_key(key))) return f(std::move(v));
  with_callback<value>(std::move(f),
                       [&](auto&&... s) { return get_call(key, KARLTON_FWD(s)...); });
}

void cache::put_async_fn(std::string_view key, std::string_view bytes, ttl t,
                         callback<unit> f) const {
  with_callback<unit>(std::move(f), [&](auto&&... s) {
    return put_call(key, bytes, t, KARLTON_FWD(s)...);
  });
}

void cache::get_or_load_async_fn(std::string_view key, callback<value> f) const {
  if (detail::loads_read_directly(*core_))
    if (auto v = detail::read_directly(*core_, key, hash_key(key)))
      return f(std::move(v));
  with_callback<value>(std::move(f),
                       [&](auto&&... s) { return load_call(key, KARLTON_FWD(s)...); });
}

void cache::erase_async_fn(std::string_view key, callback<bool> f) const {
  with_callback<bool>(std::move(f),
                      [&](auto&&... s) { return erase_call(key, KARLTON_FWD(s)...); });
}

void cache::get_many_async_fn(const std::vector<std::string>& keys,
                              callback<std::vector<value>> f) const {
  // As `get_many`: hits read on this thread, one call for the keys that missed.
  std::vector<value> out(keys.size());
  auto missed = detail::read_many_directly(*core_, keys, out);
  if (missed.empty()) return f(std::move(out));
  std::vector<std::string> rest;
  rest.reserve(missed.size());
  for (auto i : missed)
    rest.push_back(keys[i]);
  auto fill = [out = std::move(out), missed = std::move(missed),
               f = std::move(f)](caf::expected<std::vector<value>> answers) mutable {
    if (!answers) return f(std::move(answers.error()));
    for (size_t j = 0; j < missed.size(); ++j)
      out[missed[j]] = std::move((*answers)[j]);
    f(std::move(out));
  };
  with_callback<std::vector<value>>(
    std::move(fill), [&](auto&&... s) { return get_many_call(rest, KARLTON_FWD(s)...); });
}

void cache::put_many_async_fn(
  const std::vector<std::pair<std::string, std::string>>& items, ttl t,
  callback<unit> f) const {
  with_callback<unit>(std::move(f), [&](auto&&... s) {
    return put_many_call(items, t, KARLTON_FWD(s)...);
  });
}

} // namespace karlton

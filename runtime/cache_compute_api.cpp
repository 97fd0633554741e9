// The calls of `cache` added for network front ends, out of line: callback
// forms of the remaining calls, the atomic read-modify-write family and
// `set_ttl` (cache_api.cpp holds the rest; split to keep each file short).
#include <karlton/runtime/cache.hpp>

#include <utility>

#include "runtime/cache_calls.hpp"

// Forwards a lambda's `auto&&...` pack (sink tag and sink arguments).
#define KARLTON_FWD(x) std::forward<decltype(x)>(x)

namespace karlton {

namespace {

// WP0 seam: replaced by the shard's compute family (issue 15, WP1).
caf::error not_yet(const char* call) {
  return make_error(errc::invalid_option, std::string{call} + " is not implemented yet");
}

} // namespace

cache cache::without_queue_wait() const {
  cache c{core_};
  c.no_queue_wait_ = true;
  return c;
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

caf::expected<computed> cache::compute(std::string_view, compute_function) const {
  return not_yet("compute");
}

caf::expected<computed> cache::merge(std::string_view, std::string_view, merge_function,
                                     ttl) const {
  return not_yet("merge");
}

caf::expected<int64_t> cache::increment(std::string_view, int64_t, ttl) const {
  return not_yet("increment");
}

caf::expected<bool> cache::compare_and_set(std::string_view,
                                           std::optional<std::string_view>,
                                           std::optional<std::string_view>, ttl) const {
  return not_yet("compare_and_set");
}

caf::expected<remaining_ttl> cache::set_ttl(std::string_view,
                                            std::optional<caf::timespan>) const {
  return not_yet("set_ttl");
}

void cache::compute_async_fn(std::string_view, compute_function,
                             callback<computed> f) const {
  f(not_yet("compute"));
}

void cache::increment_async_fn(std::string_view, int64_t, ttl, callback<int64_t> f) const {
  f(not_yet("increment"));
}

void cache::compare_and_set_async_fn(std::string_view, std::optional<std::string_view>,
                                     std::optional<std::string_view>, ttl,
                                     callback<bool> f) const {
  f(not_yet("compare_and_set"));
}

void cache::set_ttl_async_fn(std::string_view, std::optional<caf::timespan>,
                             callback<remaining_ttl> f) const {
  f(not_yet("set_ttl"));
}

} // namespace karlton

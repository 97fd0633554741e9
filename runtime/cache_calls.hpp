// The operations of `cache`, each written once for all three call styles: an
// op that runs on a shard (`op(shard_state&, time_point) -> expected<Part>`;
// the shard actor runs the same ones, from actors/shard_ops.hpp), the shards
// it goes to, and how the parts combine. Included by cache.hpp.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "actors/shard_ops.hpp"
#include "messages/errors.hpp"
#include "runtime/cache.hpp"

namespace karlton {

namespace detail {

inline caf::error check_put(const shard_options& cfg, std::string_view key,
                            std::string_view bytes, ttl t) {
  if (auto err = check_sizes(cfg, key.size(), bytes.size())) return err;
  if (!t.valid()) return make_error(errc::invalid_option, "ttl must be positive");
  return caf::none;
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
  auto err = detail::check_put(core_->shard_cfg, key, bytes, t);
  auto h = hash_key(key);
  // Under write-through or write-back the answer may come later (see
  // shard_state::write); without a write mode it comes at once.
  auto op = shard_ops::put{err ? value{} : value::make(key, bytes, h), t};
  return start_one<unit, Sink>(h, std::move(err), std::move(op), std::forward<A>(a)...);
}

template <class Sink, class... A>
auto cache::put_call(std::string_view key, std::string_view bytes, ttl t,
                     const dependencies& deps, detail::sink_tag<Sink>, A&&... a) const {
  auto err = detail::check_put(core_->shard_cfg, key, bytes, t);
  if (!err && core_->options.writes != write_mode::none && !deps.empty())
    err = make_error(errc::invalid_option,
                     "dependencies are not supported yet for caches with a write mode");
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
    if (auto err = detail::check_put(core_->shard_cfg, k, v, t))
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
  return start_all<cache_stats, cache_stats, Sink>(
    shard_ops::stats{}, detail::sum_parts<cache_stats>(), std::forward<A>(a)...);
}

} // namespace karlton

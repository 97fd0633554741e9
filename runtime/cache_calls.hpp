// The operations of `cache`, each written once for all three call styles: an
// op that runs on a shard (`op(shard_state&, time_point) -> expected<Part>`),
// the shards it goes to, and how the parts combine. Included by cache.hpp.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "messages/errors.hpp"
#include "runtime/cache.hpp"

namespace karlton {

namespace detail {

inline caf::error check_put(const shard_config& cfg, std::string_view key,
                            std::string_view bytes, ttl t) {
  if (auto err = check_sizes(cfg, key.size(), bytes.size())) return err;
  if (!t.valid()) return make_error(errc::invalid_option, "ttl must be positive");
  return caf::none;
}

/// A write's bool answer as the `unit` a put answers with.
inline std::optional<caf::expected<caf::unit_t>>
as_unit(std::optional<caf::expected<bool>> r) {
  if (!r) return std::nullopt;
  if (!*r) return caf::expected<caf::unit_t>{std::move(r->error())};
  return caf::expected<caf::unit_t>{caf::unit};
}

/// `later(expected<unit>)` as a `shard_state::write_waiter`.
template <class Later>
shard_state::write_waiter write_waiter_of(Later later) {
  return [later](caf::expected<bool> r) mutable { later(as_unit(std::move(r)).value()); };
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
  auto op = [k = detail::small_key{key}, h32 = static_cast<uint32_t>(h)](shard_state& s,
                                                                         time_point now) {
    return caf::expected<value>{s.get(k.view(), h32, now)};
  };
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
  auto op = [v = err ? value{} : value::make(key, bytes, h),
             t](shard_state& s, time_point now, auto later) mutable {
    return detail::as_unit(s.write(std::move(v), t, now, detail::write_waiter_of(later)));
  };
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
  auto op = [v = err ? value{} : value::make(key, bytes, h), t,
             deps](shard_state& s, time_point now) mutable -> caf::expected<unit> {
    if (auto e = s.put(std::move(v), t, now, deps)) return e;
    return unit{};
  };
  return start_one<unit, Sink>(h, std::move(err), std::move(op), std::forward<A>(a)...);
}

template <class Sink, class... A>
auto cache::erase_call(std::string_view key, detail::sink_tag<Sink>, A&&... a) const {
  auto op = [k = detail::small_key{key}](shard_state& s, time_point now, auto later) {
    return s.write_erase(k.view(), now, later);
  };
  return start_one<bool, Sink>(hash_key(key), caf::error{}, std::move(op),
                               std::forward<A>(a)...);
}

template <class Sink, class... A>
auto cache::contains_call(std::string_view key, detail::sink_tag<Sink>, A&&... a) const {
  auto op = [k = detail::small_key{key}](shard_state& s, time_point now) {
    return caf::expected<bool>{s.contains(k.view(), now)};
  };
  return start_one<bool, Sink>(hash_key(key), caf::error{}, std::move(op),
                               std::forward<A>(a)...);
}

template <class Sink, class... A>
auto cache::ttl_call(std::string_view key, detail::sink_tag<Sink>, A&&... a) const {
  auto op = [k = detail::small_key{key}](shard_state& s, time_point now) {
    return caf::expected<remaining_ttl>{s.ttl_of(k.view(), now)};
  };
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
  struct op_t {
    std::vector<value> values;
    ttl lifetime;
    std::optional<caf::expected<unit>>
    operator()(shard_state& s, time_point now,
               std::function<void(caf::expected<unit>)> later) {
      // One answer when every write of this shard is done; the first error wins.
      struct group {
        size_t left;
        caf::error first_error;
        std::function<void(caf::expected<unit>)> later;
      };
      auto g = std::make_shared<group>(group{values.size() + 1, {}, std::move(later)});
      auto one_done = [g](caf::expected<bool> r) {
        if (!r && !g->first_error) g->first_error = std::move(r.error());
        if (--g->left > 0) return;
        if (g->first_error)
          g->later(caf::expected<unit>{std::move(g->first_error)});
        else
          g->later(caf::expected<unit>{unit{}});
      };
      for (auto& v : values)
        if (auto r = s.write(std::move(v), lifetime, now, one_done))
          one_done(std::move(*r));
      // The group's own count: if every write answered at once, answer now.
      if (--g->left > 0) return std::nullopt;
      if (g->first_error) return caf::expected<unit>{std::move(g->first_error)};
      return caf::expected<unit>{unit{}};
    }
  };
  auto combine = [](std::vector<unit>&&) { return unit{}; };
  // All items are checked before any is sent: no partial put from bad input.
  for (const auto& [k, v] : items)
    if (auto err = detail::check_put(core_->shard_cfg, k, v, t))
      return fail_call<unit, unit, Sink>(combine, std::move(err), std::forward<A>(a)...);
  std::vector<op_t> by_shard(core_->routes.size(), op_t{{}, t});
  for (const auto& [k, v] : items) {
    auto h = hash_key(k);
    by_shard[shard_of(h)].values.push_back(value::make(k, v, h));
  }
  std::vector<std::pair<size_t, op_t>> parts;
  for (size_t s = 0; s < by_shard.size(); ++s)
    if (!by_shard[s].values.empty()) parts.emplace_back(s, std::move(by_shard[s]));
  return start<unit, unit, Sink>(std::move(parts), combine, std::forward<A>(a)...);
}

template <class Sink, class... A>
auto cache::clear_call(detail::sink_tag<Sink>, A&&... a) const {
  auto op = [](shard_state& s, time_point) { return caf::expected<uint64_t>{s.clear()}; };
  return start_all<uint64_t, uint64_t, Sink>(op, detail::sum_parts<uint64_t>(),
                                             std::forward<A>(a)...);
}

template <class Sink, class... A>
auto cache::cleanup_call(detail::sink_tag<Sink>, A&&... a) const {
  auto op = [](shard_state& s, time_point now) {
    return caf::expected<uint64_t>{s.cleanup_expired(now)};
  };
  return start_all<uint64_t, uint64_t, Sink>(op, detail::sum_parts<uint64_t>(),
                                             std::forward<A>(a)...);
}

template <class Sink, class... A>
auto cache::stats_call(detail::sink_tag<Sink>, A&&... a) const {
  auto op = [](shard_state& s, time_point) {
    return caf::expected<cache_stats>{s.stats()};
  };
  return start_all<cache_stats, cache_stats, Sink>(op, detail::sum_parts<cache_stats>(),
                                                   std::forward<A>(a)...);
}

} // namespace karlton

// The operations a shard performs for its callers, each written once: the
// shard actor runs them for requests, the plain-thread bridge for queued jobs
// (runtime/bridge.hpp). Neither translates a call onto `shard_state` itself.
//
// An op is called on the shard, with the time the shard read:
// - `op(state, now) -> caf::expected<R>` answers at once;
// - `op(state, now, later) -> std::optional<caf::expected<R>>` answers at
//   once (returned) or later, by calling `later(caf::expected<R>)` once (a
//   write waiting for the store, a load).
// What an op leaves for the actor to do (writes to hand over, loads to start,
// ...) stays in the state's outboxes; see `shard_effects`.
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <caf/expected.hpp>
#include <caf/unit.hpp>

#include "actors/shard_state.hpp"

namespace karlton {

/// Whether `Op` answers through a `later` callback of type `Later`.
template <class Op, class Later>
constexpr bool answers_later = std::is_invocable_v<Op&, shard_state&, time_point, Later>;

/// A key copied into an op that outlives its caller (a queued job). Keys up
/// to 46 bytes (most keys) live inline, so queuing a call on one key costs
/// one allocation, not two. Ops the actor runs on a message's own key hold a
/// `std::string_view` instead.
class small_key {
public:
  explicit small_key(std::string_view k) : size_(static_cast<uint32_t>(k.size())) {
    char* dst = inline_;
    if (k.size() > sizeof(inline_)) {
      heap_.reset(new char[k.size()]);
      dst = heap_.get();
    }
    if (!k.empty()) std::memcpy(dst, k.data(), k.size());
  }
  small_key(small_key&& other) noexcept
    : size_(other.size_), heap_(std::move(other.heap_)) {
    if (!heap_ && size_ > 0) std::memcpy(inline_, other.inline_, size_);
  }
  small_key& operator=(small_key&&) = delete;
  std::string_view view() const noexcept {
    return {heap_ ? heap_.get() : inline_, size_};
  }

private:
  char inline_[46];
  uint32_t size_;
  std::unique_ptr<char[]> heap_;
};

namespace shard_ops {

inline std::string_view key_view(std::string_view k) noexcept {
  return k;
}
inline std::string_view key_view(const small_key& k) noexcept {
  return k.view();
}

/// A write's bool answer as the `unit` a put answers with.
inline std::optional<caf::expected<caf::unit_t>>
as_unit(std::optional<caf::expected<bool>> r) {
  if (!r) return std::nullopt;
  if (!*r) return caf::expected<caf::unit_t>{std::move(r->error())};
  return caf::expected<caf::unit_t>{caf::unit};
}

/// The value of a key, or an empty value (a miss).
template <class Key>
struct get {
  Key key;
  uint32_t hash; ///< the key's `value::table_hash`
  caf::expected<value> operator()(shard_state& s, time_point now) {
    return s.get(key_view(key), hash, now);
  }
};

/// A put under the cache's write mode (`shard_state::write`).
struct put {
  value val;
  ttl lifetime;
  template <class Later>
  std::optional<caf::expected<caf::unit_t>> operator()(shard_state& s, time_point now,
                                                       Later later) {
    auto waiter = [later](caf::expected<bool> r) mutable {
      later(as_unit(std::move(r)).value());
    };
    return as_unit(s.write(std::move(val), lifetime, now, std::move(waiter)));
  }
};

/// A put recording what the entry depends on. `Deps` is `dependencies`, or
/// a reference to a message's. Without dependencies it is a plain `put`; with
/// some, it goes through the cache's write mode too, its links going in with
/// the value, and waits behind a compute of the key that loads as a plain put
/// does.
template <class Deps>
struct put_with_deps {
  value val;
  ttl lifetime;
  Deps deps;
  template <class Later>
  std::optional<caf::expected<caf::unit_t>> operator()(shard_state& s, time_point now,
                                                       Later later) {
    if (deps.empty()) return put{std::move(val), lifetime}(s, now, std::move(later));
    auto waiter = [later](caf::expected<bool> r) mutable {
      later(as_unit(std::move(r)).value());
    };
    return as_unit(s.write(std::move(val), lifetime, now, deps, std::move(waiter)));
  }
};

/// Puts of many values, all or nothing as far as their sizes go (checked
/// before any is stored), answered once when every write is done; the first
/// error wins.
struct put_many {
  std::vector<value> values;
  ttl lifetime;
  template <class Later>
  std::optional<caf::expected<caf::unit_t>> operator()(shard_state& s, time_point now,
                                                       Later later) {
    for (const auto& v : values)
      if (auto err = check_sizes(s.config(), v.key().size(), v.bytes().size()))
        return caf::expected<caf::unit_t>{std::move(err)};
    // One count per write plus one for this call, so writes answered at once
    // cannot answer the group before the last write was submitted.
    struct group {
      size_t left;
      caf::error first_error;
      Later later;
    };
    auto g = std::make_shared<group>(group{values.size() + 1, {}, std::move(later)});
    auto one_done = [g](caf::expected<bool> r) {
      if (!r && !g->first_error) g->first_error = std::move(r.error());
      if (--g->left > 0) return;
      if (g->first_error)
        g->later(caf::expected<caf::unit_t>{std::move(g->first_error)});
      else
        g->later(caf::expected<caf::unit_t>{caf::unit});
    };
    for (auto& v : values)
      if (auto r = s.write(std::move(v), lifetime, now, one_done))
        one_done(std::move(*r));
    if (--g->left > 0) return std::nullopt;
    if (g->first_error) return caf::expected<caf::unit_t>{std::move(g->first_error)};
    return caf::expected<caf::unit_t>{caf::unit};
  }
};

/// An erase under the cache's write mode: whether the key was cached (and served).
template <class Key>
struct erase {
  Key key;
  template <class Later>
  std::optional<caf::expected<bool>> operator()(shard_state& s, time_point now,
                                                Later later) {
    return s.write_erase(key_view(key), now, std::move(later));
  }
};

template <class Key>
struct contains {
  Key key;
  caf::expected<bool> operator()(shard_state& s, time_point now) {
    return s.contains(key_view(key), now);
  }
};

template <class Key>
struct ttl_of {
  Key key;
  caf::expected<remaining_ttl> operator()(shard_state& s, time_point now) {
    return s.ttl_of(key_view(key), now);
  }
};

/// Read-through: the cached value, or the loader's (`get_or_load`).
template <class Key>
struct load {
  Key key;
  uint32_t hash; ///< the key's `value::table_hash`
  template <class Later>
  std::optional<caf::expected<value>> operator()(shard_state& s, time_point now,
                                                 Later later) {
    return s.get_or_load(key_view(key), hash, now, std::move(later));
  }
};

struct clear {
  caf::expected<uint64_t> operator()(shard_state& s, time_point) { return s.clear(); }
};

/// Removes every expired entry now.
struct remove_expired {
  caf::expected<uint64_t> operator()(shard_state& s, time_point now) {
    return s.remove_expired(now);
  }
};

struct stats {
  caf::expected<cache_stats> operator()(shard_state& s, time_point) {
    // Hits callers served since the last drain: a handful never fill a
    // buffer, and their ages (a staleness percentile) would never show.
    s.take_direct_hits();
    return s.stats();
  }
};

} // namespace shard_ops

} // namespace karlton

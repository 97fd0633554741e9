// Time-to-live as a put asks for it, and as a shard reports what is left of it.
#pragma once

#include <chrono>
#include <cstdint>

#include <caf/meta/type_name.hpp>
#include <caf/timespan.hpp>

namespace karlton {

/// How long an entry lives: the cache's default, forever, or a given duration.
class ttl {
public:
  /// The cache's `default-ttl` (which may itself be "never").
  static constexpr ttl cache_default() noexcept { return ttl{default_marker}; }
  /// Never expires (still removable by erase, eviction or invalidation).
  static constexpr ttl never() noexcept { return ttl{never_marker}; }
  /// Expires `d` after the put; `d` must be positive. A `d` of 0 or less
  /// gives an invalid TTL (refused by puts and options), never one of the
  /// markers: -1ns and -2ns must not mean "cache default" and "never".
  static constexpr ttl after(caf::timespan d) noexcept {
    return ttl{d.count() > 0 ? d.count() : int64_t{0}};
  }

  /// The cache's default, like `cache_default()`.
  constexpr ttl() noexcept = default;
  /// True for `cache_default()`.
  constexpr bool is_default() const noexcept { return ns_ == default_marker; }
  /// True for `never()`.
  constexpr bool is_never() const noexcept { return ns_ == never_marker; }
  /// Only meaningful when neither `is_default()` nor `is_never()`.
  constexpr caf::timespan duration() const noexcept { return caf::timespan{ns_}; }
  /// False only for `after` of a non-positive duration.
  constexpr bool valid() const noexcept { return is_default() || is_never() || ns_ > 0; }

  /// Same marker, or same duration.
  friend constexpr bool operator==(ttl x, ttl y) noexcept { return x.ns_ == y.ns_; }

  template <class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f, ttl& x) {
    return f(caf::meta::type_name("karlton::ttl"), x.ns_);
  }

private:
  static constexpr int64_t default_marker = -1;
  static constexpr int64_t never_marker = -2;
  constexpr explicit ttl(int64_t ns) noexcept : ns_(ns) {}
  int64_t ns_ = default_marker;
};

/// The longest lifetime an entry keeps as asked. Entries store their expiry
/// as 40-bit milliseconds of the runtime's clock (34.8 years) and keep a
/// longer one as never; 30 years leaves the clock room to run. Front ends
/// that must not answer "no expiry" for a key told to expire (the Redis
/// protocol's TTL) refuse longer lifetimes.
constexpr caf::timespan longest_exact_ttl = std::chrono::hours{24 * 365 * 30};

/// What a shard says about a key's remaining lifetime.
struct remaining_ttl {
  /// Whether the key was found, and whether it expires.
  enum state_t : uint8_t {
    missing,       ///< not cached (or already expired)
    never_expires, ///< cached with `ttl::never()`
    expires,       ///< cached; `left` says for how long
  };
  uint8_t state = missing; ///< a `state_t`

  /// Time left when `state == expires`, rounded down to the millisecond.
  caf::timespan left{0};

  /// True unless `missing`.
  bool found() const noexcept { return state != missing; }
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, remaining_ttl& x) {
  return f(caf::meta::type_name("karlton::remaining_ttl"), x.state, x.left);
}

/// Why an entry left a cache, as told to a removal listener.
enum class removal_cause : uint8_t {
  explicit_erase, ///< erased or invalidated by a caller (or cleared)
  replaced,       ///< overwritten by a put of the same key
  expired,        ///< its TTL ran out
  evicted,        ///< pushed out by the size bound
};

/// The cause's short name: "explicit", "replaced", "expired" or "evicted".
const char* to_string(removal_cause x) noexcept;

} // namespace karlton

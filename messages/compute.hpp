// Atomic read-modify-write of one key, applied by the shard that owns it in
// one step (JCache's entry processors, Caffeine's `compute`): what a compute
// function decides, and what the caller gets back.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include <caf/atom.hpp>
#include <caf/error.hpp>
#include <caf/meta/type_name.hpp>

#include <karlton/messages/ttl.hpp>
#include <karlton/messages/value.hpp>

namespace karlton {

/// What a compute function decides for its key.
struct compute_result {
  /// The three things a compute can do.
  enum class action : uint8_t {
    keep,  ///< change nothing
    put,   ///< store `bytes`
    erase, ///< invalidate the key (and, under a write mode, delete it from the store)
  };
  /// What to do.
  action what = action::keep;
  /// `put`: the new value.
  std::string bytes;
  /// `put`: the new lifetime; nullopt keeps the entry's expiry (a new entry
  /// gets the cache's `default-ttl`).
  std::optional<ttl> lifetime;

  /// Change nothing.
  static compute_result keep() { return {}; }
  /// Invalidate the key.
  static compute_result erase() { return {action::erase, {}, {}}; }
  /// Store `b`, with lifetime `t` (nullopt: the entry's expiry is kept).
  static compute_result put(std::string b, std::optional<ttl> t = std::nullopt) {
    return {action::put, std::move(b), t};
  }
};

/// The key's value before and after a compute; an empty `value` is "absent".
struct computed {
  value before; ///< the live value the function saw
  value after;  ///< the value stored afterwards (empty: absent)
};

/// Runs on the shard's thread, exactly once per call, with the key's live
/// value (empty if absent). Must be quick, must not block and must not make
/// blocking calls on the runtime; `current` is valid only during the call.
using compute_function = std::function<compute_result(const value& current)>;

/// Thrown by a compute function to fail its call with `error` (not
/// `compute_failed`), changing nothing: `increment` of a non-integer.
struct compute_refusal {
  caf::error error; ///< what the call fails with
};

/// `merge`'s function: the new bytes from the old ones and the given ones,
/// or nullopt to erase the key. Same rules as `compute_function`.
using merge_function =
  std::function<std::optional<std::string>(std::string_view old, std::string_view given)>;

/// `(increment, key, delta, new_entry_ttl)` to a shard: `cache::increment`,
/// answered with the sum.
using increment_atom = caf::atom_constant<caf::atom("increment")>;
/// `(compare_and_set, args)` to a shard: `cache::compare_and_set`, answered
/// with whether it stored.
using compare_and_set_atom = caf::atom_constant<caf::atom("cas")>;
/// `(set_ttl, key, never, left)` to a shard: `cache::set_ttl` (`never`:
/// nullopt, `left` ignored), answered with the remaining ttl before.
using set_ttl_atom = caf::atom_constant<caf::atom("set_ttl")>;

/// `compare_and_set`'s arguments as a message (optionals spelled out).
struct compare_and_set_args {
  std::string key;             ///< the key to compare and set
  bool expect_present = false; ///< false: expects the key absent
  std::string expected;        ///< the value expected, if `expect_present`
  bool store = false;          ///< false: erases
  std::string desired;         ///< the value to store, if `store`
  ttl lifetime = ttl::cache_default(); ///< of a stored value
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, compare_and_set_args& x) {
  return f(caf::meta::type_name("karlton::compare_and_set_args"), x.key, x.expect_present,
           x.expected, x.store, x.desired, x.lifetime);
}

} // namespace karlton

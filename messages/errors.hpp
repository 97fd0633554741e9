// The one error enum of karlton: every failure a caller can see, in any call style.
#pragma once

#include <cstdint>
#include <string>

#include <caf/error.hpp>
#include <caf/make_message.hpp>
#include <caf/message.hpp>

namespace karlton {

/// What went wrong. Each code comes with a context string that says what to change.
enum class errc : uint8_t {
  /// No error: what a default `caf::error` of this category stands for.
  none = 0,
  /// The key is longer than the cache's `max-key-bytes`; nothing was stored.
  key_too_large,
  /// The value is longer than the cache's `max-value-bytes`; nothing was stored.
  value_too_large,
  /// No cache of that name exists in this runtime.
  unknown_cache,
  /// An option is out of range or inconsistent; the context names the option.
  invalid_option,
  /// A queue is full: the caller should back off and retry.
  overloaded,
  /// The call did not complete within its timeout; it may still take effect.
  timeout,
  /// The backing store failed.
  store_failure,
  /// The runtime is stopping or stopped; the call was not carried out.
  shut_down,
  /// The key exists neither in the cache nor in its store (or loader).
  not_found,
  /// A blocking call was made on one of the actor system's scheduler threads
  /// (from inside an actor), where waiting would hold a thread the shards
  /// need; nothing was done. Actors use the asynchronous calls instead.
  blocking_in_actor,
  /// `increment` found a value that is not a base-10 64-bit integer, or the
  /// sum would overflow; the value was left as it was.
  not_an_integer,
  /// A `compute` function threw; nothing was changed.
  compute_failed,
  /// A node refused this one's join: a live member of the cluster has its
  /// node name (another process took it over, or was given it).
  name_taken,
  /// The store refused a write for what it holds (a constraint, a trigger's
  /// exception, a size or type limit): the same write will fail again, where
  /// a `store_failure` may pass on a retry. Nothing of its batch was written.
  store_refused,
};

/// The name of an error code, e.g. "key_too_large".
const char* to_string(errc x) noexcept;

/// Makes an error with a human-readable context, e.g.
/// `make_error(errc::invalid_option, "max-entries must be > 0")`.
caf::error make_error(errc code, std::string context);

/// Renders any error karlton returns as one line a person can act on, e.g.
/// "karlton.key_too_large: key of 70000 bytes exceeds max-key-bytes (65535)".
std::string describe(const caf::error& err);

} // namespace karlton

CAF_ERROR_CODE_ENUM(karlton::errc, "karlton")

// The small public types the cache options name: the eviction policy, the
// early-refresh mode, the loader function, the removal callback, and the
// default bounds of a key and a value. They live
// below actors/ so that options.hpp (public) needs no actor internals.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include <caf/expected.hpp>

#include <karlton/messages/ttl.hpp>
#include <karlton/messages/value.hpp>

namespace karlton {

/// The policies a cache can choose (option `policy`).
enum class eviction_policy_kind : uint8_t {
  /// W-TinyLFU, the default. Why not LRU: LRU admits every one-hit wonder, so
  /// a scan flushes its hot set; TinyLFU admits a newcomer only if its
  /// frequency sketch has seen it more often than the entry it would replace.
  /// Measured (`karlton-bench hit-ratio`, 1M keys, cache of 1 %): Zipf 0.99
  /// 0.651 vs LRU 0.573, scan-polluted 0.627 vs 0.544, where even a cache
  /// that knew the trace in advance (static LFU) gets 0.669 and 0.643: TinyLFU
  /// takes 82-84 % of all there is to gain over LRU. Chosen over S3-FIFO for
  /// that closeness to LFU on skewed traces at small sizes (Einziger et al.,
  /// ACM ToS 2017).
  tiny_lfu,
  /// Exact LRU: the reference the benchmark compares against.
  lru,
};

/// The policy's name as the `karlton.policy` setting spells it: "tinylfu" or "lru".
const char* to_string(eviction_policy_kind x) noexcept;

/// Called on the shard for every entry that leaves: the value (with its key)
/// and why. It runs inside the shard, so it must be quick and must not block.
using removal_callback = std::function<void(const value&, removal_cause)>;

/// How a read-through cache refreshes entries before they expire.
enum class early_refresh_mode : uint8_t {
  /// Entries live their whole TTL (the default).
  none,
  /// XFetch (Vattani, Chierichetti, Lowenstein, VLDB 2015): a read refreshes
  /// in the background if `now - delta * beta * ln(U) >= expiry`, where delta
  /// is how long the entry's last load took and U is uniform in (0, 1]. An
  /// entry draws U at most `xfetch_draws_per_delta` times per delta, so when
  /// it refreshes does not depend on how often it is read.
  xfetch,
  /// The guide's probabilistic expiration: an entry of age a expires early, as
  /// a miss, with probability 1 - exp(-beta * a / ttl).
  naive,
};

/// Fetches the value of a key from the source of truth (a database query, a
/// service call), or says why it could not. May block; may throw (the
/// exception becomes a `store_failure`).
using load_function = std::function<caf::expected<std::string>(const std::string& key)>;

/// The largest key and value a put accepts unless told otherwise (the
/// defaults of `cache_options::max_key_bytes` and `max_value_bytes`). A key is
/// hashed, compared and copied on every call and travels in every
/// invalidation to other nodes: 64 KiB is far above real keys (ids, URLs,
/// composite names) and stops a caller's bug from making every node hold
/// megabyte keys. A value is copied whole into one message (a put, a get's
/// answer, a store write) and held in one allocation: 64 MiB keeps one call
/// from stalling a shard for long; larger objects belong in a blob store,
/// with their address cached.
constexpr uint64_t default_max_key_bytes = 64 * 1024;
/// See `default_max_key_bytes`.
constexpr uint64_t default_max_value_bytes = 64 * 1024 * 1024;

} // namespace karlton

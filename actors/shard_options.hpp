// What one shard enforces and how it reads time: the options a shard state
// is made with (split from shard_state.hpp to keep each header short).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>

#include <caf/error.hpp>

#include "actors/depended_names.hpp"
#include "actors/dirty_budget.hpp"
#include "actors/read_lease.hpp"
#include "actors/read_side.hpp"
#include <karlton/base/key_changes.hpp>
#include <karlton/base/policies.hpp>
#include <karlton/messages/events.hpp>
#include <karlton/messages/ttl.hpp>
#include <karlton/messages/value.hpp>
#include <karlton/messages/writes.hpp>

namespace karlton {

/// Time as shards see it: the runtime clock's reading (see base/clock.hpp).
using time_point = std::chrono::steady_clock::time_point;

/// What one shard enforces. The runtime derives it from the cache's options,
/// dividing the cache's bounds by its number of shards.
struct shard_options {
  ttl default_ttl = ttl::never();
  uint64_t max_entries = 0; ///< 0: unbounded
  uint64_t max_bytes = 0;   ///< key + value bytes; 0: unbounded
  eviction_policy_kind policy = eviction_policy_kind::tiny_lfu;
  uint64_t max_key_bytes = default_max_key_bytes;
  uint64_t max_value_bytes = default_max_value_bytes;
  removal_callback on_removal;
  // Read-through loading (see get_or_load):
  bool read_through = false;      ///< the cache has a loader
  caf::timespan refresh_after{0}; ///< reads of older values start a reload; 0: off
  early_refresh_mode early_refresh = early_refresh_mode::none;
  double beta = 1.0; ///< XFetch's or the naive mode's beta
  /// Uniform numbers in (0, 1]; empty: a generator seeded with `seed`.
  std::function<double()> random;
  uint64_t seed = 1;
  /// How long a failed load's error is the answer to `get_or_load` of its
  /// key, without loading again; 0: off (see negative_cache.hpp).
  caf::timespan negative_ttl{0};
  /// Stale-if-error (RFC 5861): how long past its expiry an entry is kept, to
  /// be served instead of the error of a failed load of it; 0: off.
  caf::timespan stale_if_error{0};
  /// A load still running this long after it started fails its waiters with
  /// `timeout` and is forgotten; 0: never.
  caf::timespan load_timeout{0};
  /// Loads handed to the loader at once; the runtime makes it 2 x
  /// loader-concurrency (the loader threads are shared by the shards).
  size_t max_loads_out = 8;
  /// Loads waiting for one of those; a miss beyond gets `overloaded`.
  size_t max_loads_queued = 1024;
  // Write-through and write-back (see shard_writes.cpp):
  write_mode writes = write_mode::none;
  /// Write-back: the cache's `max-dirty` budget, shared with the flusher.
  std::shared_ptr<dirty_budget> budget;
  /// Write-back: how long a write waits for room under `max-dirty` before it
  /// fails with `overloaded` (never applied).
  caf::timespan room_wait = std::chrono::seconds{3};
  /// The names entries of the cache may depend on (shared by its shards):
  /// erasing or invalidating such a key cascades to its dependents.
  std::shared_ptr<depended_names> depended;
  /// The cache is distributed: keys written or erased here, and clears, are
  /// collected for the peer actor to tell other nodes (`take_changes`).
  bool distributed = false;
  /// Distributed caches: the node's read lease; caches fed by PostgreSQL's
  /// changes: also the feed's. A read after either lapsed clears the shard
  /// first (see actors/read_lease.hpp).
  read_leases lease;
  /// The table callers read on their own threads (the direct read path),
  /// shared with the cache's handles; the shard makes its own if null, on
  /// the steady clock: whoever reads a shard directly under another clock
  /// (a runtime, a test) makes the read_side with that clock and passes it.
  std::shared_ptr<read_side> reads;
  /// Told which keys changed, once per after-change step (`notify_changes`);
  /// null: nothing is collected.
  std::shared_ptr<key_change_listener> change_listener;
};

/// XFetch draws per entry per delta (its last load time) at most. Drawing on
/// every read makes the refresh time depend on the read rate: of n draws the
/// first to fire comes about delta * beta * ln(n) before expiry, so a hot key
/// read 600k times/s with delta 50 ms (n = 30,000 per delta) was renewed
/// every 0.5 s of a 1 s TTL. With draws delta / k apart, the chance that none
/// fired by time T before expiry is about exp(-k * beta * exp(-T / (beta *
/// delta))), whatever the read rate: the refresh starts on average delta *
/// beta * (ln(k * beta) + 0.58) before expiry, and with chance about
/// exp(-k / e) (beta 1) it has not started by expiry - delta, so readers that
/// come in the last moments wait for it (still one load). Simulated for
/// `karlton-bench stampede` (delta 50 ms, TTL 1 s, beta 1):
///   k = 2: 69 ms early, 1.02 loads per TTL, readers wait at 45 % of expiries
///   k = 4: 101 ms early, 1.05 loads per TTL, readers wait at 20 % of expiries
///   k = 8: 134 ms early, 1.09 loads per TTL, readers wait at 4 % of expiries
/// k = 8 would leave a 10 s run a one-in-three chance of a twelfth load (1.2
/// per expiry), k = 4 one in 40. The waits cost a few dozen reads of 600k a
/// second and at most delta each, extra loads cost the database: k = 4.
constexpr uint32_t xfetch_draws_per_delta = 4;

/// Returns `key_too_large` or `value_too_large` if a put of these sizes must be
/// refused, naming the limit; callers check before copying a large value. An
/// entry larger than the shard's `max_bytes` is refused too (`value_too_large`).
caf::error check_sizes(const shard_options& cfg, size_t key_size, size_t value_size);

/// The names one entry may depend on (events and keys or tags together), and
/// their bytes in all. Names come from callers, often a client's command
/// (`KARLTON.PUT ... ON n ...`): without a bound one put could pin any
/// amount of index memory behind a one-byte value.
constexpr size_t max_dependencies = 256;
constexpr uint64_t max_dependency_bytes = 64 * 1024;
/// What a dependency costs against `max-bytes` beyond its name's bytes: the
/// index's links measured 29-69 bytes each (actors/dependency_index.hpp).
constexpr uint64_t dependency_link_bytes = 48;

/// `invalid_option` past `max_dependencies` or `max_dependency_bytes`,
/// `key_too_large` for a name longer than `max-key-bytes`.
caf::error check_dependencies(const shard_options& cfg, const dependencies& deps);

} // namespace karlton

// The typed interface of a cache shard, and the atoms that name its operations.
// The bus and the peer actor have theirs in bus_interface.hpp and
// peer_interface.hpp.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <caf/atom.hpp>
#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

#include <karlton/messages/cluster.hpp>
#include <karlton/messages/compute.hpp>
#include <karlton/messages/events.hpp>
#include <karlton/messages/loading.hpp>
#include <karlton/messages/stats.hpp>
#include <karlton/messages/ttl.hpp>
#include <karlton/messages/value.hpp>
#include <karlton/messages/writes.hpp>

namespace karlton {

// CAF ships get_atom, put_atom, delete_atom and ok_atom; these are karlton's.
/// `(contains, key)` to a shard: `cache::contains`.
using contains_atom = caf::atom_constant<caf::atom("contains")>;
/// `(ttl, key)` to a shard: `cache::ttl_of`.
using ttl_atom = caf::atom_constant<caf::atom("ttl")>;
/// `(clear)` to a shard: `cache::clear`, for that shard.
using clear_atom = caf::atom_constant<caf::atom("clear")>;
/// `(stats)` to a shard: its `cache_stats`.
using stats_atom = caf::atom_constant<caf::atom("stats")>;
/// `(remove_expired)` to a shard: `cache::remove_expired`, for that shard.
using remove_expired_atom = caf::atom_constant<caf::atom("rm_expired")>;
/// `(removed, key, cause)` to a `removal_listener_actor`.
using removed_atom = caf::atom_constant<caf::atom("removed")>;
/// Rung by plain threads after they queue work on the shard's ingress queue.
using doorbell_atom = caf::atom_constant<caf::atom("doorbell")>;
/// `(drain_reads)` to a shard, from a caller that served hits on its own
/// thread: teach the eviction policy what they hit (see actors/read_side.hpp).
using drain_reads_atom = caf::atom_constant<caf::atom("drainreads")>;
/// The shard's own expiry timer; carries a generation so stale timers are ignored.
using expire_atom = caf::atom_constant<caf::atom("expire")>;
/// `(settle)` to a shard at shutdown: answered once no write-through write
/// waits for the store (see `runtime::shutdown`).
using settle_atom = caf::atom_constant<caf::atom("settle")>;
/// The shard's own look, while a `settle` waits, at whether it is settled: a
/// caller's thread may have failed the queued calls, which tells it nothing.
using settle_check_atom = caf::atom_constant<caf::atom("settlechk")>;

/// A cache shard: owns the keys that hash to it (see base/routing.hpp).
///
/// - `get(key)` returns the value, or an empty `value` on a miss.
/// - `get(keys)` returns one value per key, in order (empty where missed).
/// - `put(v, ttl)` stores `v` under `v.key()`; `put(vs, ttl)` stores each.
/// - `delete(key)` erases (invalidates) a key; true if it was cached.
/// - `clear` erases everything and returns how many entries it removed.
/// - `remove_expired` removes the expired entries now and returns how many.
/// - `load(key)` is `get_or_load`: the cached value, or the result of the
///   cache's loader (one load per key in flight; see shard_state.hpp).
/// - `flushed(writes)`: from the flusher; those writes are stored.
/// - `room`: from the flusher; puts waiting under `max-dirty` may go on.
/// Under write-through or write-back, put and delete answer once the store
/// or the flusher took the write (see actors/shard_writes.cpp).
/// - `put(v, ttl, deps)`: a put that records what the entry depends on.
/// - `invalidate_dependents(names, cause, level)`: removes the dependents of `names`
/// (from the bus).
/// - `graph`: this shard's dependency edges.
/// - `invalidate(keys)`, `invalidate`: erase and clear for invalidations from other
///   nodes (keys another node changed, a cache another node cleared), told to
///   no one; answered with how many entries went.
/// - `repair`: clear for a node that missed invalidations (told to no one);
///   answered with how many entries went.
/// - `repair(limit)`: the gentler repair: every entry expires within `limit`.
/// - `sync`: sends what other nodes must hear to the peer actor, then asks it
///   to deliver everything pending; answered with the nodes that did not
///   acknowledge in time (see `peer_actor`).
/// - `settle`: answered once every write-through write it handed to the store
///   is done (cached, and told to other nodes).
/// - `increment(key, delta, ttl)`, `compare_and_set(args)`, `set_ttl(key,
///   never, left)`: `cache::increment`, `compare_and_set`, `set_ttl`.
/// Errors: `key_too_large`, `value_too_large`, `invalid_option` (a bad ttl).
using shard_actor = caf::typed_actor<
  caf::replies_to<caf::get_atom, std::string>::with<value>,
  caf::replies_to<caf::get_atom, std::vector<std::string>>::with<std::vector<value>>,
  caf::replies_to<caf::put_atom, value, ttl>::with<caf::ok_atom>,
  caf::replies_to<caf::put_atom, std::vector<value>, ttl>::with<caf::ok_atom>,
  caf::replies_to<caf::delete_atom, std::string>::with<bool>,
  caf::replies_to<contains_atom, std::string>::with<bool>,
  caf::replies_to<ttl_atom, std::string>::with<remaining_ttl>,
  caf::replies_to<clear_atom>::with<uint64_t>,
  caf::replies_to<stats_atom>::with<cache_stats>,
  caf::replies_to<remove_expired_atom>::with<uint64_t>,
  caf::replies_to<load_atom, std::string>::with<value>, caf::reacts_to<load_outcome>,
  caf::reacts_to<doorbell_atom>, caf::reacts_to<expire_atom, uint64_t>,
  caf::reacts_to<flushed_atom, stored_writes>, caf::reacts_to<room_atom>,
  caf::replies_to<caf::put_atom, value, ttl, dependencies>::with<caf::ok_atom>,
  caf::replies_to<invalidate_dependents_atom, std::vector<std::string>,
                  invalidation_cause, uint32_t>::with<invalidation_result>,
  caf::replies_to<graph_atom>::with<graph_edges>,
  caf::replies_to<invalidate_atom, std::vector<std::string>>::with<uint64_t>,
  // false: keys other nodes put, whose dependents stay (see invalidation_kind)
  caf::replies_to<invalidate_atom, std::vector<std::string>, bool>::with<uint64_t>,
  caf::replies_to<invalidate_atom>::with<uint64_t>,
  caf::replies_to<repair_atom>::with<uint64_t>,
  caf::replies_to<repair_atom, caf::timespan>::with<uint64_t>,
  caf::replies_to<sync_atom>::with<std::vector<std::string>>,
  caf::reacts_to<drain_reads_atom>,
  caf::replies_to<increment_atom, std::string, int64_t, ttl>::with<int64_t>,
  caf::replies_to<compare_and_set_atom, compare_and_set_args>::with<bool>,
  caf::replies_to<set_ttl_atom, std::string, bool, caf::timespan>::with<remaining_ttl>,
  caf::replies_to<settle_atom>::with<caf::ok_atom>, caf::reacts_to<settle_check_atom>>;

/// An actor that wants to hear about removals: `(removed, key, cause)`.
using removal_listener_actor =
  caf::typed_actor<caf::reacts_to<removed_atom, std::string, removal_cause>>;

// removal_cause needs no inspect: CAF 0.17 serializes enums as their underlying type.

} // namespace karlton

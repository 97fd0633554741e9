// The shard actor: a thin translation from shard messages to `shard_state`.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "actors/ingress.hpp"
#include "actors/shard_state.hpp"
#include <karlton/base/clock.hpp>
#include <karlton/messages/bus_interface.hpp>
#include <karlton/messages/peer_interface.hpp>
#include <karlton/messages/shard_interface.hpp>

namespace karlton {

/// Whom a shard talks to and its place in its cache: given at spawn
/// (`shard_setup`) and kept by the running shard (`shard_actor_state`), which
/// both derive from it, so the shard takes them over in one assignment.
struct shard_links {
  std::shared_ptr<const clock> time_source;
  /// Plain-thread ingress queue drained on `doorbell`; may be null.
  std::shared_ptr<ingress> inbox;
  /// Workers that run the cache's loader; empty if it has none.
  std::vector<loader_actor> loaders;
  /// Asked for loads instead of `loaders`, by request, so an error answer or
  /// its going down fails the load: the service's loader actor
  /// (`cache_options::load_actor`), or in write-back mode the flusher that
  /// delegates to it; may be null.
  loader_actor user_loader;
  /// Where writes go: the store writer (write-through) or the flusher
  /// (write-back); see `shard_options::writes`. Under write-back the flusher
  /// is also the shard's only loader: it knows the writes the store lacks.
  store_writer_actor store_writer;
  flusher_actor write_flusher;
  /// This shard's number among its cache's shards (names it to the flusher).
  uint32_t index = 0;
  /// Write-back with a journal: a put is acknowledged when the flusher says
  /// its record is durable, not when it is handed over.
  bool acks_wait_for_journal = false;
  /// The runtime's event bus, and this cache's number on it: erased keys
  /// whose dependents must go are sent there.
  bus_actor event_bus;
  int32_t cache_index = 0;
  /// Distributed caches: the node's peer actor, told what other nodes must
  /// drop, and the cache's name as they know it; null otherwise.
  peer_actor peer;
  std::string cache_name;
};

/// What a shard actor is spawned with.
struct shard_setup : shard_links {
  /// Moved into the shard's `shard_state`.
  shard_options config;
  /// Told about every removal, in addition to `config.on_removal`; may be null.
  removal_listener_actor listener;
};

struct shard_actor_state : shard_links {
  std::unique_ptr<shard_state> cache;
  /// The deadline the pending expiry timer was armed for, and its generation:
  /// CAF timers cannot be cancelled, so a re-armed timer makes the old stale.
  std::optional<time_point> armed_for;
  uint64_t timer_generation = 0;
  size_t next_loader = 0;        // round robin over `loaders`
  bool room_timer_armed = false; // a timer for parked writes is pending
  /// The flusher learns a shard from its first write message, and tells only
  /// the shards it knows when max-dirty room frees (see `arm_room`).
  bool flusher_knows_us = false;
  /// Shutdown's `settle` requests, answered once no write waits for the store.
  std::vector<caf::typed_response_promise<caf::ok_atom>> settle_waiters;

  static inline const char* name = "karlton.shard";
};

/// Calls run per doorbell before the shard yields to its mailbox (timers,
/// actor requests): 256 keeps a flooded shard responsive while amortizing the
/// doorbell message over many jobs. A job counts as the calls it carries
/// (`shard_job::weight`).
constexpr int doorbell_batch = 256;

/// Calls taken from the ingress queue at once (whole jobs, at least one):
/// their lookups are prefetched together, so up to 16 cache misses overlap
/// (about what a core can keep in flight) instead of being paid one after
/// another.
constexpr int prefetch_batch = 16;

/// Expired entries reclaimed per timer tick; more are left for an immediate
/// next tick, so a mass expiry of millions never blocks the shard for long.
constexpr uint64_t expiry_batch = 1024;

shard_actor::behavior_type shard(shard_actor::stateful_pointer<shard_actor_state> self,
                                 shard_setup setup);

} // namespace karlton

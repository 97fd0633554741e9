// The effects a step of `shard_state` leaves for the shard actor (shard_actor.cpp).
#pragma once

namespace karlton {

/// What changes left for the shard actor to do, read off a `shard_state`'s
/// outboxes rather than reported by each operation, so none can forget to
/// report what it queued. The actor's one after-change step does each.
struct shard_effects {
  bool writes = false;     ///< writes for the store writer or flusher (`take_writes`)
  bool loads = false;      ///< loads to hand to a loader (`take_loads_to_start`)
  bool cascades = false;   ///< erased names for the bus to cascade (`take_cascades`)
  bool broadcasts = false; ///< puts, erases, clears other nodes must hear of
  bool parked = false;     ///< writes waiting for room under `max-dirty`
  bool unlinked = false; ///< values and arrays readers may still see (`retire_unlinked`)
  bool changes = false;  ///< keys changed, for the change listener (`notify_changes`)
  bool room_returned = false; ///< a unit of `max-dirty` went back: wake the shards
};

} // namespace karlton

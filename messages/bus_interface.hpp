// The typed interface of a runtime's event bus (see actors/bus_actor.hpp).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

#include <karlton/messages/events.hpp>
#include <karlton/messages/shard_interface.hpp>

namespace karlton {

/// The event bus of a runtime (see actors/bus_actor.hpp).
/// - `(shards, cache, list)`: the shards of a new cache.
/// - `(emit, event, data)`: invalidates the event's dependents in every cache and
///   tells its subscribers; answered once every shard is done.
/// - `(invalidate_dependents, names, cause, cache)`: invalidates the dependents
///   of `names` (tags: in every cache, `cache` < 0; keys erased in cache number
///   `cache`: there), transitively; answered once every shard is done.
using bus_actor = caf::typed_actor<
  caf::replies_to<shards_atom, std::string, std::vector<shard_actor>>::with<uint32_t>,
  caf::replies_to<emit_atom, std::string, std::string>::with<invalidation_summary>,
  caf::replies_to<invalidate_dependents_atom, std::vector<std::string>,
                  invalidation_cause, int32_t>::with<invalidation_summary>,
  caf::replies_to<subscribe_atom, std::string,
                  event_subscriber_actor>::with<caf::ok_atom>,
  caf::replies_to<bus_stats_atom>::with<bus_stats>>;

} // namespace karlton

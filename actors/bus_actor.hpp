// The event bus: one per runtime. It fans an event or a tag out to every
// shard of every cache, follows cascades through invalidated keys round by
// round, and calls the event's subscribers. The shards do the removing, each
// on its own index (actors/shard_deps.cpp); the bus only routes and counts.
#pragma once

#include <map>
#include <string>
#include <vector>

#include <karlton/messages/bus_interface.hpp>
#include <karlton/messages/events.hpp>

namespace karlton {

struct bus_state {
  /// Shards by cache number (the order caches were created in).
  std::vector<std::vector<shard_actor>> caches;
  std::map<std::string, std::vector<event_subscriber_actor>> subscribers;
  /// The events of each subscriber, which the bus monitors once.
  std::map<caf::actor_addr, std::vector<std::string>> events_of;
  bus_stats stats;

  static inline const char* name = "karlton.bus";
};

/// `options` is unused for now; the bus is spawned with an argument because
/// CAF 0.17 dereferences a null argument tuple for functions spawned without
/// any (UBSan reports it, see CAF-0.17.md).
struct bus_options {};

bus_actor::behavior_type bus(bus_actor::stateful_pointer<bus_state> self,
                             bus_options options);

} // namespace karlton

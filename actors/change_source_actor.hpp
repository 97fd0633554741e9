// The change source (docs/plans/postgres.md §3-4): a scheduled actor that
// never blocks. It hands what the LISTEN loop reports to `change_state` and
// turns the state's answers into shard messages (invalidations of keys,
// repairs of caches) and extensions of the feed's read lease. The loop itself
// runs on a thread of its own (actors/pg_listener_actor.hpp).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <vector>

#include <caf/fwd.hpp>
#include <caf/timespan.hpp>
#include <caf/typed_response_promise.hpp>

#include "actors/change_state.hpp"
#include "actors/feed_routes.hpp"
#include "actors/read_lease.hpp"
#include <karlton/base/clock.hpp>
#include <karlton/messages/changes.hpp>

namespace karlton {

/// What a change source is spawned with.
struct change_source_setup {
  change_limits limits;                     ///< grouping, lease, pending limit
  std::shared_ptr<feed_routes> routes;      ///< the fed caches (never null)
  std::shared_ptr<read_lease> lease;        ///< the feed's, created lapsed
  std::shared_ptr<const clock> time_source; ///< the runtime's clock
  /// Zero: a repair clears the caches; else every entry expires within it.
  caf::timespan repair_ttl{0};
  /// Asks the listener for a barrier (pg_listener::barrier); null: `sync`
  /// fails at once.
  std::function<void(uint64_t)> barrier;
};

struct change_source_state {
  std::unique_ptr<change_state> core;
  change_source_setup setup;
  std::shared_ptr<const fed_tables> routes; // this message's snapshot
  uint64_t next_request = 0;
  std::set<uint64_t> in_flight; // invalidation and repair requests to shards
  uint64_t next_barrier = 0;
  // A sync's barrier, answered when every request sent before the barrier
  // came back is answered (and nothing is parked).
  std::map<uint64_t, caf::typed_response_promise<bool>> barriers;
  std::multimap<uint64_t, caf::typed_response_promise<bool>> syncs; // by request mark
  uint64_t retry_generation = 0;
  bool retry_armed = false;
  static const char* name;
};

/// The change source's behaviour. On an exit message it answers the syncs
/// still waiting with `false`, then quits.
change_source_actor::behavior_type
change_source(change_source_actor::stateful_pointer<change_source_state> self,
              change_source_setup setup);

} // namespace karlton

// The LISTEN loop (stores/pg_listener.hpp) on a thread of its own, wired to
// a change source (docs/plans/postgres.md §3). A detached actor, never a
// scheduler thread: the loop blocks in poll(), and CAF 0.17 cannot hand a
// foreign file descriptor to a scheduled actor.
#pragma once

#include <memory>

#include <caf/actor.hpp>
#include <caf/fwd.hpp>

#include "actors/change_source_actor.hpp"
#include "stores/pg_listener.hpp"

namespace karlton {

/// A running change feed: its change source and its listener thread.
struct change_feed {
  change_source_actor source;            ///< sync, stats
  caf::actor thread;                     ///< runs the listener's loop
  std::shared_ptr<pg_listener> listener; ///< stop, barrier

  /// Stops the loop (it returns at once, see pg_listener::stop) and the
  /// change source. Before the shards stop: nothing invalidates them after.
  void stop();
};

/// Spawns the change source, then the listener's thread, which reports to
/// it. `opts.time_source` defaults to `setup.time_source`.
change_feed start_change_feed(caf::actor_system& sys, pg_listener_options opts,
                              change_source_setup setup);

} // namespace karlton

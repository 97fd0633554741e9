// The shard actor's steps that its two files share: shard_actor.cpp (the
// behaviour and the after-change step) and shard_actor_writes.cpp (what the
// write modes hand to the store writer or the flusher, and the flusher's
// watch).
#pragma once

#include <string>

#include "actors/shard_actor.hpp"
#include <karlton/messages/errors.hpp>

namespace karlton::shard_steps {

using self_ptr = shard_actor::stateful_pointer<shard_actor_state>;

inline time_point now_of(self_ptr self) {
  return self->state.time_source->now();
}

/// The error a request of the shard's ended with, for its callers: karlton's own
/// as it is; CAF's (the actor went down with the request) as `store_failure`,
/// saying what failed (`what`) and why.
inline caf::error as_store_failure(caf::error err, const std::string& what) {
  if (err.category() == caf::atom("karlton")) return err;
  return make_error(errc::store_failure, what + " (" + describe(err) + ")");
}

/// Hands over what a change left in the state's outboxes and arms the timers
/// it made due (shard_actor.cpp).
void after_change(self_ptr self);

/// Hands the writes the state made to the store writer or the flusher, as
/// one message, and completes them on the answer.
void send_writes(self_ptr self);

/// Arms a timer for the oldest write parked under max-dirty.
void arm_room(self_ptr self);

/// Write-back: monitors the flusher; once it is gone, writes and loads fail.
void watch_flusher(self_ptr self);

} // namespace karlton::shard_steps

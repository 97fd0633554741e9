// One way to ask a shard for a repair (rule 6: what it holds may have missed
// an invalidation): the cluster's peer after a gap or a partition, and the
// change feed after it lost PostgreSQL's notifications, both wait for every
// answer before a lease may grow again.
#pragma once

#include <utility>

#include <caf/error.hpp>
#include <caf/timespan.hpp>

#include "actors/local_reply.hpp"
#include <karlton/messages/shard_interface.hpp>

namespace karlton {

/// Asks `shard` to clear itself, or, with a positive `ttl_cap`, to cap its
/// entries' TTLs at it; `done()` runs once the shard answered or failed. An
/// answer not from the shard (a forgery: local_reply.hpp) took the place of
/// the shard's, which will now be dropped: the request is sent again (a repair
/// twice is a repair) and `done` waits for that one.
template <class Self, class Done>
void request_repair(Self* self, const shard_actor& shard, caf::timespan ttl_cap,
                    Done done) {
  auto answered = [self, shard, ttl_cap, done] {
    if (!answered_by(self, shard))
      request_repair(self, shard, ttl_cap, done);
    else
      done();
  };
  auto ok = [answered](uint64_t) { answered(); };
  auto failed = [answered](caf::error&) { answered(); };
  if (ttl_cap.count() > 0)
    self->request(shard, caf::infinite, repair_atom::value, ttl_cap).then(ok, failed);
  else
    self->request(shard, caf::infinite, repair_atom::value).then(ok, failed);
}

} // namespace karlton

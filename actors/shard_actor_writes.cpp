// The shard actor's hand-overs under a write mode: writes to the store
// writer (write-through) or the flusher (write-back), the timer of writes
// parked for room, and the watch on the flusher, without which write-back
// would acknowledge writes nobody stores.
#include <algorithm>

#include <caf/all.hpp>

#include "actors/shard_actor_steps.hpp"
#include <karlton/messages/errors.hpp>

namespace karlton {

using namespace shard_steps;

// Arms a timer for the oldest write parked under max-dirty, so it fails in
// time even if the flusher never makes room.
void shard_steps::arm_room(self_ptr self) {
  auto& st = self->state;
  auto deadline = st.cache->next_parked_deadline();
  if (!deadline) return;
  // A shard whose first write parks is unknown to the flusher, which wakes only the
  // shards it knows when room comes: an empty write introduces it.
  if (st.write_flusher && !st.flusher_knows_us) {
    st.flusher_knows_us = true;
    self
      ->request(st.write_flusher, caf::infinite, write_atom::value, st.index,
                std::vector<shard_write>{})
      .then([](caf::ok_atom) {}, [](caf::error&) {});
  }
  if (st.room_timer_armed) return;
  st.room_timer_armed = true;
  auto delay = std::max(*deadline - now_of(self), time_point::duration::zero());
  self->delayed_send(self, delay + std::chrono::milliseconds{1}, room_atom::value);
}

// Hands the writes the state made to the store writer (write-through) or
// the flusher (write-back), as one message, and completes them on the answer.
void shard_steps::send_writes(self_ptr self) {
  auto& st = self->state;
  auto items = st.cache->take_writes();
  std::vector<uint64_t> seqs;
  seqs.reserve(items.size());
  for (const auto& i : items)
    seqs.push_back(i.seq);
  if (st.write_flusher) st.flusher_knows_us = true;
  if (st.write_flusher && !st.acks_wait_for_journal) {
    // Handed over is accepted: the flusher's mailbox is as safe as its
    // memory, and max-dirty was taken already. Not waiting for its answer
    // saves a hop per put; a journal's durability is worth waiting for.
    self
      ->request(st.write_flusher, caf::infinite, write_atom::value, st.index,
                std::move(items))
      .then([](caf::ok_atom) {}, [](caf::error&) {});
    // What completing them makes due is done by the caller, after_change.
    st.cache->writes_done(seqs, caf::none, now_of(self));
    return;
  }
  // Write-through: erases and writes reach the cache now, which makes
  // cascades and broadcasts.
  auto done = [self, seqs](caf::ok_atom) {
    self->state.cache->writes_done(seqs, caf::none, now_of(self));
    after_change(self);
  };
  auto failed = [self, seqs](caf::error& err) {
    // A refusal names one write of the transaction; the others, maybe other
    // callers', would pass alone: to them it is a failure, not a refusal.
    if (err == errc::store_refused && seqs.size() > 1)
      err = make_error(errc::store_failure,
                       "a write of the same transaction was refused: " + describe(err));
    self->state.cache->writes_done(
      seqs,
      as_store_failure(std::move(err),
                       "the write was not confirmed: the actor it went to stopped"),
      now_of(self));
    after_change(self);
  };
  if (st.write_flusher)
    self
      ->request(st.write_flusher, caf::infinite, write_atom::value, st.index,
                std::move(items))
      .then(done, failed);
  else
    self->request(st.store_writer, caf::infinite, write_atom::value, std::move(items))
      .then(done, failed);
}

void shard_steps::watch_flusher(self_ptr self) {
  self->monitor(self->state.write_flusher);
  self->set_down_handler([self](caf::down_msg& dm) {
    auto& st = self->state;
    if (dm.source != st.write_flusher.address()) return;
    st.cache->writer_lost(
      make_error(errc::store_failure, "the write-back flusher stopped (" +
                                        self->system().render(dm.reason) +
                                        "): nothing can be stored or loaded any more"),
      now_of(self));
    after_change(self);
  });
}

} // namespace karlton

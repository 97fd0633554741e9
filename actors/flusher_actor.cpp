#include "actors/flusher_actor.hpp"

#include <algorithm>
#include <memory>
#include <string>
#include <utility>

#include <caf/all.hpp>

#include <karlton/messages/errors.hpp>

namespace karlton {

namespace {

using self_ptr = flusher_actor::stateful_pointer<flusher_actor_state>;

time_point now_of(self_ptr self) {
  return self->state.setup.time_source->now();
}

void warn(self_ptr self, const std::string& what) {
  if (self->state.setup.warn) self->state.setup.warn("karlton: " + what);
}

// Tells every shard it knows to try its parked writes again.
void wake_shards(self_ptr self) {
  for (auto& s : self->state.shards)
    if (s) self->send(s, room_atom::value);
}

// Gives `n` units of max-dirty back; wakes the shards if one parked a write.
void give_back(self_ptr self, uint64_t n) {
  if (self->state.setup.budget->release(n)) wake_shards(self);
}

void arm(self_ptr self) {
  auto& st = self->state;
  auto next = st.writes->next_due();
  if (st.drain && (!next || st.drain->deadline < *next)) next = st.drain->deadline;
  if (!next || (st.armed_for && *st.armed_for <= *next)) return;
  st.armed_for = next;
  auto delay = std::max(*next - now_of(self), time_point::duration::zero());
  self->delayed_send(self, delay + std::chrono::milliseconds{1}, tick_atom::value,
                     ++st.timer_generation);
}

caf::error drained_error() {
  return make_error(errc::shut_down,
                    "the karlton runtime stopped before every write was stored");
}

// Whether the journal says no more than the store: every stored write is
// marked or the file emptied, and nothing is on its way to it. A drain that
// answered with a mark or a truncation in flight let the flusher stop before
// it, and the next start replayed stored writes over newer values (rule 4).
// A broken journal settles when its repair is not in flight: a rewrite
// whose retry waits (capped at the drain's deadline) is waited for no more.
bool journal_settled(const flusher_actor_state& st) {
  if (!st.setup.journal) return true;
  if (st.journal_broken) return !st.journal_busy;
  return !st.journal_busy && !st.truncating && st.unjournaled.items.empty() &&
         st.unjournaled_acks.empty() &&
         (st.stored_unmarked.empty() || !st.journal_has_records);
}

void answer_waiters(self_ptr self) {
  auto& st = self->state;
  auto& ws = st.flush_waiters;
  for (auto i = ws.begin(); i != ws.end();) {
    if (st.writes->stored_through(i->first)) {
      i->second.deliver(caf::ok_atom::value);
      i = ws.erase(i);
    } else {
      ++i;
    }
  }
  if (st.drain && ((st.writes->dirty() == 0 && journal_settled(st)) ||
                   now_of(self) >= st.drain->deadline)) {
    st.drain->promise.deliver(st.writes->dirty());
    st.drain.reset();
    st.drained = true;
  }
  // After the drain the flusher is stopped without answering anyone: tell a
  // force_flush still waiting that its writes were not stored.
  if (st.drained)
    for (auto& [ticket, rp] : std::exchange(ws, {}))
      rp.deliver(drained_error());
}

void maybe_flush(self_ptr self);
void append_journal(self_ptr self);
void mark_stored_alone(self_ptr self);

// Empties the journal once everything it holds is in the store.
void maybe_truncate(self_ptr self) {
  auto& st = self->state;
  if (!st.setup.journal || !st.journal_has_records || st.journal_busy || st.truncating ||
      st.journal_broken || !st.unjournaled.items.empty() || st.writes->dirty() > 0)
    return;
  st.truncating = true;
  st.journal_has_records = false;
  auto bytes = std::exchange(st.journal_bytes, 0);
  auto rewritten = std::exchange(st.journal_rewritten, 0);
  // An empty journal needs no marks; they are back if the truncation fails.
  auto marks = std::exchange(st.stored_unmarked, {});
  // Appends sent later queue behind this in the journal writer's mailbox.
  self->request(st.setup.journal, caf::infinite, truncate_atom::value)
    .then(
      [self](caf::ok_atom) {
        self->state.truncating = false;
        answer_waiters(self);
      },
      [self, marks, bytes, rewritten](caf::error& err) {
        // The stored records stay, so they need their marks after all:
        // written now, alone, since on a quiet cache no group commit may
        // come to carry them (a crash would replay them). If the sync
        // failed, the next append fails and repairs the journal.
        auto& st = self->state;
        st.truncating = false;
        st.journal_has_records = true;
        st.journal_bytes += bytes;
        if (st.journal_rewritten == 0) st.journal_rewritten = rewritten;
        st.stored_unmarked.insert(st.stored_unmarked.begin(), marks.begin(), marks.end());
        ++st.journal_failures;
        warn(self, "journal truncation failed: " + describe(err));
        mark_stored_alone(self);
        answer_waiters(self);
      });
}

void on_stored(self_ptr self) {
  auto& st = self->state;
  auto done = st.writes->batch_stored();
  for (auto& [shard, writes] : done.by_shard)
    if (shard < st.shards.size() && st.shards[shard])
      self->send(st.shards[shard], flushed_atom::value, std::move(writes));
  give_back(self, done.count);
  // A replay after a crash must skip these now: another writer may store a
  // newer value of their keys, which the replay would overwrite.
  if (st.setup.journal && st.journal_has_records)
    st.stored_unmarked.insert(st.stored_unmarked.end(), done.numbers.begin(),
                              done.numbers.end());
  maybe_truncate(self); // or, with nothing left unstored, empty the journal
  if (st.setup.journal) mark_stored_alone(self);
  answer_waiters(self);
  maybe_flush(self);
}

void on_failed(self_ptr self, const caf::error& err) {
  warn(self, "a write-back batch failed, retrying: " + describe(err));
  give_back(self, self->state.writes->batch_failed(now_of(self)));
  answer_waiters(self); // a drain past its deadline reports now
  arm(self);
}

void maybe_flush(self_ptr self) {
  auto& st = self->state;
  if (!st.writes->should_flush(now_of(self))) {
    arm(self);
    return;
  }
  auto batch = st.writes->take_batch(now_of(self));
  self->request(st.setup.writer, caf::infinite, write_atom::value, std::move(batch))
    .then([self](caf::ok_atom) { on_stored(self); },
          [self](caf::error& err) { on_failed(self, err); });
}

// After a failed rewrite: try again once retry-max has passed (or earlier,
// with the next write).
void retry_journal_later(self_ptr self) {
  auto& st = self->state;
  auto now = now_of(self);
  auto at = now + st.setup.config.retry_max;
  // A drain's deadline or a flush due earlier comes first: the timer that
  // kept it is replaced here.
  if (st.drain && st.drain->deadline < at) at = st.drain->deadline;
  if (st.armed_for && *st.armed_for < at) at = *st.armed_for;
  st.armed_for = at;
  auto delay = std::max(at - now, time_point::duration::zero());
  self->delayed_send(self, delay + std::chrono::milliseconds{1}, tick_atom::value,
                     ++st.timer_generation);
}

// With no write to append: the stored mark alone, without a sync of its own
// (journal::mark_stored), so that even a quiet cache's replay skips what the
// store has. A failure is one of the disk, repaired as a failed append is.
void mark_stored_alone(self_ptr self) {
  auto& st = self->state;
  if (st.stored_unmarked.empty() || !st.journal_has_records || st.journal_busy ||
      st.journal_broken || !st.unjournaled.items.empty())
    return; // it rides on the next group commit, or a rewrite makes it moot
  st.journal_busy = true;
  auto marks = std::exchange(st.stored_unmarked, {});
  auto bytes = journal_mark_bytes(marks.size());
  self->request(st.setup.journal, caf::infinite, stored_atom::value, marks)
    .then(
      [self, bytes](caf::ok_atom) {
        auto& st = self->state;
        st.journal_busy = false;
        st.journal_bytes += bytes;
        append_journal(self);
        maybe_truncate(self);
        answer_waiters(self);
      },
      [self, marks](caf::error& err) {
        auto& st = self->state;
        st.journal_busy = false;
        st.journal_broken = true;
        ++st.journal_failures;
        warn(self, "a journal's stored mark failed: " + describe(err));
        st.stored_unmarked.insert(st.stored_unmarked.begin(), marks.begin(), marks.end());
        append_journal(self); // a rewrite
        answer_waiters(self);
      });
}

// One group commit in flight: what its answer settles.
struct journal_group {
  std::vector<caf::typed_response_promise<caf::ok_atom>> acks; // its callers
  uint64_t through = 0; // flush_state's number of its last write
  size_t records = 0;   // writes it journals (a rewrite's count is not new)
  size_t bytes = 0;     // what it adds to the file (a rewrite: the file)
  bool rewrite = false;
  size_t moot = 0;             // a rewrite: the marks it made unneeded
  std::vector<uint64_t> marks; // an append: the marks it carries
  uint64_t coalesced = 0;      // units of max-dirty its copies hold
};

void journal_written(self_ptr self, journal_group& g) {
  auto& st = self->state;
  st.journal_busy = false;
  give_back(self, std::exchange(g.coalesced, 0)); // its copies are gone
  if (g.rewrite) {
    // Only stores confirmed since the rewrite was sent were added after.
    st.stored_unmarked.erase(st.stored_unmarked.begin(),
                             st.stored_unmarked.begin() +
                               static_cast<std::ptrdiff_t>(g.moot));
    st.journal_bytes = g.bytes;
    st.journal_rewritten = g.bytes;
    st.journal_broken = false;
    ++st.journal_rewrites;
  } else {
    st.journal_bytes += g.bytes;
  }
  ++st.journal_appends;
  st.journal_records += g.records;
  st.writes->journaled(g.through); // they may be stored now
  for (auto& a : g.acks)
    a.deliver(caf::ok_atom::value);
  append_journal(self);
  maybe_truncate(self);
  answer_waiters(self);
  maybe_flush(self);
}

void journal_write_failed(self_ptr self, journal_group& g, const caf::error& err) {
  auto& st = self->state;
  st.journal_busy = false;
  // Its copies are gone too: a repair rewrites what `writes` holds.
  give_back(self, std::exchange(g.coalesced, 0));
  st.journal_broken = true;
  st.stored_unmarked.insert(st.stored_unmarked.begin(), g.marks.begin(), g.marks.end());
  ++st.journal_failures;
  warn(self, std::string{"a journal "} + (g.rewrite ? "rewrite" : "append") +
               " failed: " + describe(err));
  if (!g.rewrite) {
    // Repair at once: the rewrite holds these writes too, and their
    // callers are acknowledged if it succeeds.
    st.unjournaled_acks.insert(st.unjournaled_acks.begin(), g.acks.begin(), g.acks.end());
    append_journal(self);
    return;
  }
  // Not durable, so not acknowledged: the callers get the error. Their
  // writes stay cached and dirty but are not stored until a rewrite
  // succeeds; a crash before that loses them, and the store keeps the
  // last acknowledged value, which the old journal's replay restores.
  for (auto& a : g.acks)
    a.deliver(err);
  retry_journal_later(self);
}

// Group commit: one append (one fsync) for everything that queued meanwhile,
// after a stored mark of what the store confirmed since the last one.
// It becomes a rewrite with only the writes not yet stored when the journal
// grew past its bound (a steady stream never lets it be truncated), or when
// an append failed: then the file lacks writes the flusher took, and only a
// file written from memory can be trusted (see journal::rewrite).
void append_journal(self_ptr self) {
  auto& st = self->state;
  if (st.journal_busy) return;
  if (st.unjournaled.items.empty() && st.unjournaled_acks.empty() && !st.journal_broken) {
    mark_stored_alone(self);
    return;
  }
  auto g = std::make_shared<journal_group>();
  g->rewrite =
    st.journal_broken || journal_rewrite(st.journal_bytes, st.journal_rewritten,
                                         st.writes->config().journal_max_bytes);
  st.journal_busy = true;
  st.journal_has_records = true;
  g->acks = std::move(st.unjournaled_acks);
  g->through = st.unjournaled_through;
  g->records = st.unjournaled.items.size();
  g->coalesced = std::exchange(st.unjournaled_coalesced, 0);
  auto writes = g->rewrite ? st.writes->unstored() : std::move(st.unjournaled);
  // A rewrite keeps no stored write, so the marks so far are moot once it
  // succeeded; an append carries them.
  g->moot = g->rewrite ? st.stored_unmarked.size() : 0;
  if (!g->rewrite) g->marks = std::exchange(st.stored_unmarked, {});
  g->bytes = journal_bytes(writes.items) + journal_mark_bytes(g->marks.size());
  st.unjournaled = {};
  st.unjournaled_acks.clear();
  auto done = [self, g](caf::ok_atom) { journal_written(self, *g); };
  auto failed = [self, g](caf::error& err) { journal_write_failed(self, *g, err); };
  if (g->rewrite)
    self
      ->request(st.setup.journal, caf::infinite, rewrite_atom::value,
                std::move(writes.items), std::move(writes.numbers))
      .then(done, failed);
  else
    self
      ->request(st.setup.journal, caf::infinite, write_atom::value,
                std::move(writes.items), std::move(writes.numbers), g->marks)
      .then(done, failed);
}

} // namespace

// The flusher's behaviour is long because it lists every message it answers,
// one short handler each (the steps are the functions above, the bookkeeping
// flush_state); the list is the write-back protocol at a glance.
flusher_actor::behavior_type flusher(self_ptr self, flusher_setup setup) {
  auto& st = self->state;
  st.writes = std::make_unique<flush_state>(setup.config);
  st.setup = std::move(setup);
  return {
    [=](write_atom, uint32_t shard,
        std::vector<shard_write>& items) -> caf::result<caf::ok_atom> {
      auto& st = self->state;
      if (shard >= st.shards.size()) st.shards.resize(shard + 1);
      if (!st.shards[shard])
        st.shards[shard] = caf::actor_cast<shard_actor>(self->current_sender());
      if (items.empty()) { // a shard whose first write parked: it waits for room
        // Marked first, then checked: a release after the mark wakes it,
        // one before shows in `used`.
        st.setup.budget->mark_waiting();
        if (st.setup.budget->used() < st.setup.budget->limit())
          self->send(st.shards[shard], room_atom::value);
        // Room comes from storing: go now, not after flush-interval (the
        // parked write's caller gives up at 3/4 of call-timeout).
        st.writes->request_flush();
        maybe_flush(self);
        return caf::ok_atom::value;
      }
      auto now = now_of(self);
      if (st.setup.journal)
        st.unjournaled.items.insert(st.unjournaled.items.end(), items.begin(),
                                    items.end());
      uint64_t coalesced = 0;
      for (auto& i : items) {
        coalesced += st.writes->add(shard, std::move(i), now);
        if (st.setup.journal)
          st.unjournaled.numbers.push_back(st.writes->last_accepted());
      }
      st.unjournaled_through = st.writes->last_accepted();
      if (st.setup.journal)
        st.unjournaled_coalesced += coalesced; // until their group is written
      else
        give_back(self, coalesced);
      // A full budget parks the next write: store now, as for a full batch.
      // The units of the writes here (rewrites the journal has yet to take
      // hold theirs), not the budget's count: that also holds units of writes
      // still on their way, which would start a batch of a few.
      if (st.writes->dirty() + st.unjournaled_coalesced >= st.setup.budget->limit())
        st.writes->request_flush();
      maybe_flush(self);
      if (!st.setup.journal) return caf::ok_atom::value;
      auto rp = self->make_response_promise<caf::ok_atom>();
      st.unjournaled_acks.push_back(rp);
      append_journal(self);
      return rp;
    },
    [=](load_atom, std::string& key, uint64_t id) -> caf::result<load_outcome> {
      auto& st = self->state;
      if (auto w = st.writes->newest(key)) {
        load_outcome out;
        out.key = std::move(key);
        out.id = id;
        if (w->erase)
          out.error = make_error(errc::not_found, "the key was erased (not yet stored)");
        else
          out.bytes = std::string{w->bytes()};
        return out;
      }
      if (st.setup.readers.empty())
        return make_error(errc::not_found, "the cache has no store to load from");
      auto& reader = st.setup.readers[st.next_reader++ % st.setup.readers.size()];
      return self->delegate(reader, load_atom::value, std::move(key), id);
    },
    [=](flush_atom) -> caf::result<caf::ok_atom> {
      auto& st = self->state;
      auto ticket = st.writes->request_flush();
      if (st.writes->stored_through(ticket)) return caf::ok_atom::value;
      if (st.drained) return drained_error();
      auto rp = self->make_response_promise<caf::ok_atom>();
      st.flush_waiters.emplace_back(ticket, rp);
      maybe_flush(self);
      return rp;
    },
    [=](drain_atom, caf::timespan timeout) -> caf::result<uint64_t> {
      auto& st = self->state;
      st.writes->request_flush();
      auto rp = self->make_response_promise<uint64_t>();
      st.drain = flusher_actor_state::draining{now_of(self) + timeout, rp};
      answer_waiters(self);
      maybe_flush(self);
      arm(self);
      return rp;
    },
    [=](write_stats_atom) {
      auto& st = self->state;
      auto out = st.writes->stats(now_of(self));
      out.journal_appends = st.journal_appends;
      out.journal_records = st.journal_records;
      out.journal_rewrites = st.journal_rewrites;
      out.journal_bytes = st.journal_bytes;
      out.journal_failures = st.journal_failures;
      return out;
    },
    [=](tick_atom, uint64_t generation) {
      auto& st = self->state;
      if (generation != st.timer_generation) return; // superseded by a re-arm
      st.armed_for.reset();
      if (st.journal_broken) append_journal(self); // retry_journal_later
      answer_waiters(self);
      maybe_flush(self);
      arm(self);
    },
    [=](room_atom) { wake_shards(self); }, // a shard's parked compute gave its unit back
  };
}

} // namespace karlton

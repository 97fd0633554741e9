#include "actors/shard_actor.hpp"

#include <algorithm>
#include <type_traits>

#include <caf/all.hpp>

#include "actors/compute_ops.hpp"
#include "actors/shard_actor_steps.hpp"
#include "actors/shard_ops.hpp"
#include <karlton/messages/errors.hpp>

namespace karlton {

using namespace shard_steps;

namespace {

// Arms the expiry timer for the earliest deadline, unless a timer for that
// deadline or an earlier one is already pending.
void arm_expiry(self_ptr self) {
  auto& st = self->state;
  auto next = st.cache->next_expiry();
  if (!next || (st.armed_for && *st.armed_for <= *next)) return;
  st.armed_for = next;
  auto delay = std::max(*next - now_of(self), time_point::duration::zero());
  // Deadlines are whole milliseconds; one more makes sure the tick lands after it.
  self->delayed_send(self, delay + std::chrono::milliseconds{1}, expire_atom::value,
                     ++st.timer_generation);
}

// While a `settle` waits: a look every 5 ms besides the one after each
// change, since a caller's thread may fail the queued calls (after the gate
// closed) without a word to the shard.
void check_settled_later(self_ptr self) {
  self->delayed_send(self, std::chrono::milliseconds{5}, settle_check_atom::value);
}

// For shutdown's `settle`: no write with the store or flusher or parked for
// room, no compute still to run, and no call queued that could make one (the runtime's
// gate is closed, so the queue only shrinks).
bool settled(self_ptr self) {
  auto& st = self->state;
  return !st.cache->writes_pending() && !(st.inbox && st.inbox->has_jobs());
}

// Completes a load in the state, then does what that made due.
void finish_load(self_ptr self, const std::string& key, uint64_t id,
                 caf::expected<std::string> result, caf::timespan took) {
  self->state.cache->complete_load(key, id, std::move(result), took, now_of(self));
  after_change(self);
}

// Asks the user's loader actor for each load. Unlike our own workers it may fail, answer
// an error or go down, so it gets a request: every way it ends completes the load. The
// key and number are the shard's; `took` is measured here if the actor left it 0. Errors
// not karlton's (it went down: `request_receiver_down`) become `store_failure`.
void ask_user_loader(self_ptr self, std::string key, uint64_t id) {
  auto start = now_of(self);
  self->request(self->state.user_loader, caf::infinite, load_atom::value, key, id)
    .then(
      [self, key, id, start](load_outcome& out) {
        auto took = out.took > caf::timespan::zero() ? out.took : now_of(self) - start;
        caf::expected<std::string> result = std::move(out.bytes);
        if (out.error) result = std::move(out.error);
        finish_load(self, key, id, std::move(result), took);
      },
      [self, key, id, start](caf::error& err) {
        finish_load(self, key, id,
                    as_store_failure(std::move(err), "the loader actor failed"),
                    now_of(self) - start);
      });
}

// Hands the loads the state started to the loader workers, round robin. In write-back
// mode the "worker" is the flusher, which answers a key it holds a write for: so the
// state's writes are sent before (see after_change); CAF keeps one sender's order.
void dispatch_loads(self_ptr self) {
  auto& st = self->state;
  if (st.user_loader) {
    for (auto& [key, id] : st.cache->take_loads_to_start())
      ask_user_loader(self, std::move(key), id);
    return;
  }
  for (auto& [key, id] : st.cache->take_loads_to_start()) {
    auto& worker = st.loaders[st.next_loader++ % st.loaders.size()];
    self->send(worker, load_atom::value, std::move(key), id);
  }
}

// Hands keys erased in a cache that uses dependencies to the bus, which
// invalidates what depends on them in every shard of the cache.
void send_cascades(self_ptr self) {
  auto& st = self->state;
  auto keys = st.cache->take_cascades();
  if (keys.empty() || !st.event_bus) return;
  // Anonymous: nobody waits for the bus's answer (erase cascades in the
  // background; `runtime::invalidate_tag` is the synchronous form).
  caf::anon_send(st.event_bus, invalidate_dependents_atom::value, std::move(keys),
                 invalidation_cause::cascade, st.cache_index);
}

// Tells the peer actor what other nodes must drop: keys put or erased here,
// and clears. Sent as they happen; the peer batches them for the network.
void send_broadcasts(self_ptr self) {
  auto& st = self->state;
  std::vector<invalidation> items;
  auto now_ns = wall_clock_ns();
  if (st.cache->take_cleared())
    items.push_back(
      invalidation{invalidation_kind::clear, st.cache_name, {}, {}, now_ns});
  for (auto& c : st.cache->take_changes())
    items.push_back(
      invalidation{c.erased ? invalidation_kind::key : invalidation_kind::written,
                   st.cache_name,
                   std::move(c.key),
                   {},
                   now_ns});
  if (st.peer)
    self->send(st.peer, broadcast_atom::value, this_process_token(), std::move(items));
}

} // namespace

// The one step after anything changed the shard, whether a request, a job
// of the doorbell loop, a timer or an answer: hands over what the change
// left in the state's outboxes (writes, loads, cascades, broadcasts), arms
// the timers it made due, and hands what the table unlinked to RCU, in that order.
void shard_steps::after_change(self_ptr self) {
  auto& st = self->state;
  // Writes before loads: the flusher must hold a key's write before it
  // answers a load of it, or the load reads the store's older row.
  if (st.cache->pending_effects().writes) send_writes(self);
  // Read after the writes: accepting them at once may have made more.
  auto fx = st.cache->pending_effects();
  if (fx.loads) dispatch_loads(self);
  if (fx.cascades) send_cascades(self);     // the dependents of erased keys
  if (fx.broadcasts) send_broadcasts(self); // what other nodes must drop
  if (fx.parked) arm_room(self);
  if (fx.room_returned && st.cache->take_room_returned() && st.write_flusher)
    self->send(st.write_flusher, room_atom::value); // it wakes every shard
  // Freed on RCU's thread once no caller reading the table directly can
  // see it: never on the shard, never before the answer.
  if (fx.unlinked) st.cache->retire_unlinked();
  // No flag for "the next expiry moved": this check against the armed
  // deadline is that test, at the cost of a few comparisons.
  arm_expiry(self);
  // Last: direct readers see every change by now (rule 8), so a client told
  // to drop a key cannot re-read the old value; answers went before.
  if (fx.changes) st.cache->notify_changes();
  if (!st.settle_waiters.empty() && settled(self))
    for (auto& rp : std::exchange(st.settle_waiters, {}))
      rp.deliver(caf::ok_atom::value);
}

// An op's answer as a request's: a put's unit is `ok_atom`.
namespace {

template <class R, class T>
caf::result<R> as_result(caf::expected<T>&& r) {
  if (!r) return std::move(r.error());
  if constexpr (std::is_same_v<R, caf::ok_atom>)
    return caf::ok_atom::value;
  else
    return std::move(*r);
}

// The `later` of an op the actor runs: delivers to the request's promise.
template <class R>
struct deliver_to {
  caf::typed_response_promise<R> rp;
  template <class T>
  void operator()(caf::expected<T> r) {
    if (!r)
      rp.deliver(std::move(r.error()));
    else if constexpr (std::is_same_v<R, caf::ok_atom>)
      rp.deliver(caf::ok_atom::value);
    else
      rp.deliver(std::move(*r));
  }
};

// Runs `op` (actors/shard_ops.hpp: the same op a plain thread's job runs),
// then the after-change step, and answers the request with what `op`
// answered: now, or through a response promise when it answers later.
template <class R, class Op>
caf::result<R> run(self_ptr self, Op op) {
  auto& cache = *self->state.cache;
  auto now = now_of(self);
  if constexpr (answers_later<Op, deliver_to<R>>) {
    deliver_to<R> later{self->make_response_promise<R>()};
    if (auto r = op(cache, now, later)) later(std::move(*r));
    after_change(self);
    return later.rp;
  } else {
    auto r = op(cache, now);
    after_change(self);
    return as_result<R>(std::move(r));
  }
}

} // namespace

// The shard's behaviour is long because it lists every message the shard
// answers, one short handler each (the work is in shard_ops.hpp and
// shard_state); splitting the list would hide which messages a shard takes.
shard_actor::behavior_type shard(self_ptr self, shard_setup setup) {
  auto& st = self->state;
  if (setup.listener) {
    auto listener = setup.listener;
    auto user_callback = std::move(setup.config.on_removal);
    setup.config.on_removal = [self, listener, user_callback](const value& v,
                                                              removal_cause why) {
      if (user_callback) user_callback(v, why);
      self->send(listener, removed_atom::value, std::string{v.key()}, why);
    };
  }
  st.cache = std::make_unique<shard_state>(std::move(setup.config));
  static_cast<shard_links&>(st) = std::move(setup);
  // The shards of a cache start their round robin at different workers, so
  // their first loads spread instead of all queuing on the first.
  st.next_loader = st.index;
  if (st.write_flusher) watch_flusher(self);
  return {
    [=](caf::get_atom, const std::string& key) {
      auto hash = static_cast<uint32_t>(hash_key(key));
      return run<value>(self, shard_ops::get<std::string_view>{key, hash});
    },
    [=](caf::get_atom, const std::vector<std::string>& keys) {
      // Not an op of shard_ops.hpp: a plain thread's batch holds its keys in
      // one buffer per shard and answers with their positions; both end in
      // `shard_state::get_many`.
      std::vector<shard_state::key_ref> refs;
      refs.reserve(keys.size());
      for (const auto& k : keys)
        refs.push_back({k, static_cast<uint32_t>(hash_key(k))});
      std::vector<value> out;
      out.reserve(keys.size());
      self->state.cache->get_many(refs, now_of(self),
                                  [&](value v) { out.push_back(std::move(v)); });
      after_change(self);
      return out;
    },
    [=](caf::put_atom, value& v, ttl t) {
      return run<caf::ok_atom>(self, shard_ops::put{std::move(v), t});
    },
    [=](caf::put_atom, std::vector<value>& vs, ttl t) {
      return run<caf::ok_atom>(self, shard_ops::put_many{std::move(vs), t});
    },
    [=](caf::delete_atom, const std::string& key) {
      return run<bool>(self, shard_ops::erase<std::string_view>{key});
    },
    [=](contains_atom, const std::string& key) {
      return run<bool>(self, shard_ops::contains<std::string_view>{key});
    },
    [=](ttl_atom, const std::string& key) {
      return run<remaining_ttl>(self, shard_ops::ttl_of<std::string_view>{key});
    },
    [=](clear_atom) { return run<uint64_t>(self, shard_ops::clear{}); },
    [=](stats_atom) { return run<cache_stats>(self, shard_ops::stats{}); },
    [=](remove_expired_atom) { return run<uint64_t>(self, shard_ops::remove_expired{}); },
    [=](load_atom, const std::string& key) {
      auto hash = static_cast<uint32_t>(hash_key(key));
      return run<value>(self, shard_ops::load<std::string_view>{key, hash});
    },
    [=](load_outcome& out) {
      caf::expected<std::string> result = std::move(out.bytes);
      if (out.error) result = std::move(out.error);
      finish_load(self, out.key, out.id, std::move(result), out.took);
    },
    [=](doorbell_atom) {
      auto& st = self->state;
      shard_job* batch[prefetch_batch];
      st.cache->count_doorbell();
      for (int done = 0; done < doorbell_batch;) {
        int n = 0;
        int weight = 0;
        while (n < prefetch_batch && weight < prefetch_batch &&
               (batch[n] = st.inbox->pop()) != nullptr)
          weight += batch[n++]->weight();
        if (n == 0) {
          if (st.inbox->release_doorbell()) continue; // a job slipped in
          return; // each batch was followed by after_change
        }
        st.cache->count_jobs(size_t(n));
        // Read after the pops, so the time is later than each of these jobs
        // was pushed: a job pushed after a stall (SIGSTOP, a starved VM) is
        // checked against the lease as of then, never against a time read
        // before the stall (one read per doorbell served such jobs under a
        // lapsed lease). One read per prefetch batch (16 jobs) rather than
        // per job: the batch's jobs all precede the read, which is all the
        // lease check needs.
        auto now = now_of(self);
        for (int step = 0; step < 3; ++step)
          for (int i = 0; i < n; ++i)
            batch[i]->prefetch(*st.cache, step);
        for (int i = 0; i < n; ++i)
          batch[i]->run(*st.cache, now);
        // Once per batch, not per job: the batch's writes go as one message.
        after_change(self);
        done += weight;
      }
      // Still busy: keep the doorbell claimed and come back after the mailbox.
      self->send(self, doorbell_atom::value);
    },
    [=](caf::put_atom, value& v, ttl t, const dependencies& deps) {
      using op = shard_ops::put_with_deps<const dependencies&>;
      return run<caf::ok_atom>(self, op{std::move(v), t, deps});
    },
    [=](invalidate_dependents_atom, const std::vector<std::string>& names,
        invalidation_cause cause, uint32_t level) {
      auto out =
        self->state.cache->invalidate_dependents(names, cause, now_of(self), level);
      after_change(self); // what the invalidation removed is freed off the shard
      return out;
    },
    [=](drain_reads_atom) {
      // A reader asked after a quiet spell, or our own timer: drain until a
      // drain finds no hits (read_side.hpp says why not at every full buffer).
      if (self->state.cache->learn_direct_hits())
        self->delayed_send(self, read_side::drain_spacing, drain_reads_atom::value);
    },
    [=](graph_atom) { return self->state.cache->dependency_edges(); },
    [=](invalidate_atom, const std::vector<std::string>& keys) {
      auto n = self->state.cache->invalidate(keys, now_of(self));
      after_change(self); // their dependents go too, on this node
      return n;
    },
    [=](invalidate_atom, const std::vector<std::string>& keys, bool cascade) {
      auto n = self->state.cache->invalidate(keys, now_of(self), cascade);
      after_change(self);
      return n;
    },
    [=](invalidate_atom) {
      auto n = self->state.cache->clear_here();
      after_change(self);
      return n;
    },
    [=](settle_atom) -> caf::result<caf::ok_atom> {
      auto& st = self->state;
      // Calls queued with no doorbell rung (a thread holding its doorbells,
      // or one between its push and its ring) run now, as the ring would
      // have: rung once the gate is closed, it would fail them.
      if (st.inbox && st.inbox->has_jobs() && st.inbox->claim_doorbell())
        self->send(self, doorbell_atom::value);
      if (settled(self)) return caf::ok_atom::value;
      if (st.settle_waiters.empty()) check_settled_later(self);
      st.settle_waiters.push_back(self->make_response_promise<caf::ok_atom>());
      return st.settle_waiters.back();
    },
    [=](settle_check_atom) {
      auto& st = self->state;
      if (st.settle_waiters.empty()) return;
      if (!settled(self)) return check_settled_later(self);
      for (auto& rp : std::exchange(st.settle_waiters, {}))
        rp.deliver(caf::ok_atom::value);
    },
    [=](repair_atom) {
      auto n = self->state.cache->clear_here();
      after_change(self);
      return n;
    },
    [=](repair_atom, caf::timespan limit) {
      auto n = self->state.cache->cap_ttl(now_of(self), limit);
      after_change(self);
      return n;
    },
    [=](sync_atom) -> caf::result<std::vector<std::string>> {
      // Our broadcasts go first; the peer gets the sync after them (one
      // sender, one receiver: CAF keeps the order), so it covers them.
      after_change(self);
      if (!self->state.peer) return std::vector<std::string>{};
      return self->delegate(self->state.peer, sync_atom::value, this_process_token());
    },
    [=](flushed_atom, const stored_writes& writes) {
      self->state.cache->mark_stored(writes);
      after_change(self);
    },
    [=](room_atom) {
      // From the flusher (room was made) or from our own parked-write timer,
      // which is spent only in the second case: clearing the flag on the
      // flusher's word armed a timer more each time while writes stayed parked.
      if (self->current_sender() == self->ctrl()) self->state.room_timer_armed = false;
      self->state.cache->retry_parked(now_of(self));
      after_change(self);
    },
    [=](increment_atom, const std::string& key, int64_t delta, ttl new_entry) {
      return run<int64_t>(self,
                          shard_ops::increment<std::string_view>{key, delta, new_entry});
    },
    [=](compare_and_set_atom, compare_and_set_args& a) {
      using op = shard_ops::compare_and_set<std::string_view>;
      auto expected = a.expect_present ? std::optional<std::string>{std::move(a.expected)}
                                       : std::nullopt;
      auto desired =
        a.store ? std::optional<std::string>{std::move(a.desired)} : std::nullopt;
      // The op's key views the message's, which outlives the op's run.
      return run<bool>(self,
                       op{a.key, std::move(expected), std::move(desired), a.lifetime});
    },
    [=](set_ttl_atom, const std::string& key, bool never, caf::timespan left) {
      auto l = never ? std::nullopt : std::optional<caf::timespan>{left};
      return run<remaining_ttl>(self, shard_ops::set_ttl<std::string_view>{key, l});
    },
    [=](expire_atom, uint64_t generation) {
      auto& st = self->state;
      if (generation != st.timer_generation) return; // superseded by a re-arm
      st.armed_for.reset();
      auto now = now_of(self);
      st.cache->remove_expired(now, expiry_batch);
      auto next = st.cache->next_expiry();
      if (next && *next <= now) {
        // More already due: continue right after the mailbox, not in one go.
        // Armed for the earliest due, so no later deadline re-arms (which
        // would make this tick stale and wait a millisecond).
        st.armed_for = next;
        self->send(self, expire_atom::value, ++st.timer_generation);
      }
      after_change(self);
    },
  };
}

} // namespace karlton

#include "actors/shard_actor.hpp"

#include <algorithm>

#include <caf/all.hpp>

#include "messages/errors.hpp"

namespace karlton {

namespace {

using self_ptr = shard_actor::stateful_pointer<shard_actor_state>;

time_point now_of(self_ptr self) {
  return self->state.time_source->now();
}

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

void dispatch_loads(self_ptr self);

// Completes a load in the state, then starts what that made due.
void finish_load(self_ptr self, const std::string& key, uint64_t id,
                 caf::expected<std::string> result, caf::timespan took) {
  self->state.cache->complete_load(key, id, std::move(result), took, now_of(self));
  dispatch_loads(self);
  arm_expiry(self);
}

// Asks the user's loader actor for each load. Unlike our own workers it may
// fail, answer an error or go down, so it gets a request: every way it ends
// completes the load. The key and number are the shard's, whatever the
// answer says; `took` is measured here if the actor left it 0. Errors that
// are not karlton's (the actor went down: CAF's `request_receiver_down`)
// become `store_failure`, so callers see one kind of loader failure.
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
        if (err.category() != caf::atom("karlton"))
          err =
            make_error(errc::store_failure, "the loader actor failed: " + describe(err));
        finish_load(self, key, id, std::move(err), now_of(self) - start);
      });
}

// Hands the loads the state started to the loader workers, round robin. In
// write-back mode the "workers" are the flusher, which answers a key it holds
// a write for: so any write the state made must be sent before (send_writes),
// as CAF keeps the order of one sender's messages to one receiver.
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

// Arms a timer for the oldest write parked under max-dirty, so it fails in
// time even if the flusher never makes room.
void arm_room(self_ptr self) {
  auto& st = self->state;
  auto deadline = st.cache->next_parked_deadline();
  if (!deadline || st.room_timer_armed) return;
  st.room_timer_armed = true;
  auto delay = std::max(*deadline - now_of(self), time_point::duration::zero());
  self->delayed_send(self, delay + std::chrono::milliseconds{1}, room_atom::value);
}

void send_cascades(self_ptr self);
void send_broadcasts(self_ptr self);

// Hands the writes the state made to the store writer (write-through) or
// the flusher (write-back), as one message, and completes them on the answer.
void send_writes(self_ptr self) {
  auto& st = self->state;
  auto items = st.cache->take_writes();
  if (items.empty()) {
    arm_room(self);
    return;
  }
  std::vector<uint64_t> seqs;
  seqs.reserve(items.size());
  for (const auto& i : items)
    seqs.push_back(i.seq);
  auto done = [self, seqs](caf::ok_atom) {
    self->state.cache->writes_done(seqs, caf::none, now_of(self));
    send_cascades(self);   // write-through erases happen now
    send_broadcasts(self); // and write-through writes reach the cache
    arm_expiry(self);
  };
  auto failed = [self, seqs](caf::error& err) {
    self->state.cache->writes_done(seqs, err, now_of(self));
  };
  if (st.write_flusher && !st.acks_wait_for_journal) {
    // Handed over is accepted: the flusher's mailbox is as safe as its
    // memory, and max-dirty was taken already. Not waiting for its answer
    // saves a hop per put; a journal's durability is worth waiting for.
    self
      ->request(st.write_flusher, caf::infinite, write_atom::value, st.index,
                std::move(items))
      .then([](caf::ok_atom) {}, [](caf::error&) {});
    done(caf::ok_atom::value);
  } else if (st.write_flusher) {
    self
      ->request(st.write_flusher, caf::infinite, write_atom::value, st.index,
                std::move(items))
      .then(done, failed);
  } else
    self->request(st.store_writer, caf::infinite, write_atom::value, std::move(items))
      .then(done, failed);
  arm_room(self);
}

// Hands keys erased in a cache that uses dependencies to the bus, which
// purges what depends on them in every shard of the cache.
void send_cascades(self_ptr self) {
  auto& st = self->state;
  auto keys = st.cache->take_cascades();
  if (keys.empty() || !st.event_bus) return;
  // Anonymous: nobody waits for the bus's answer (erase cascades in the
  // background; `runtime::invalidate_tag` is the synchronous form).
  caf::anon_send(st.event_bus, purge_atom::value, std::move(keys), purge_cause::cascade,
                 st.cache_index);
}

// Tells the peer actor what other nodes must drop: keys put or erased here,
// and clears. Sent as they happen; the peer batches them for the network.
void send_broadcasts(self_ptr self) {
  auto& st = self->state;
  if (!st.peer) return;
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
  if (!items.empty()) self->send(st.peer, broadcast_atom::value, std::move(items));
}

// A write's answer as a response promise of `T`, from the write's bool.
template <class T>
auto deliver_write(caf::typed_response_promise<T> rp) {
  return [rp](caf::expected<bool> r) mutable {
    if (!r)
      rp.deliver(std::move(r.error()));
    else if constexpr (std::is_same_v<T, bool>)
      rp.deliver(*r);
    else
      rp.deliver(caf::ok_atom::value);
  };
}

} // namespace

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
  return {
    [=](caf::get_atom, const std::string& key) {
      return self->state.cache->get(key, now_of(self));
    },
    [=](caf::get_atom, const std::vector<std::string>& keys) {
      std::vector<shard_state::key_ref> refs;
      refs.reserve(keys.size());
      for (const auto& k : keys)
        refs.push_back({k, static_cast<uint32_t>(hash_key(k))});
      std::vector<value> out;
      out.reserve(keys.size());
      self->state.cache->get_many(refs, now_of(self),
                                  [&](value v) { out.push_back(std::move(v)); });
      return out;
    },
    [=](caf::put_atom, value& v, ttl t) -> caf::result<caf::ok_atom> {
      auto rp = self->make_response_promise<caf::ok_atom>();
      auto answer = deliver_write(rp);
      if (auto now = self->state.cache->write(std::move(v), t, now_of(self), answer))
        answer(std::move(*now));
      send_writes(self);
      send_broadcasts(self);
      arm_expiry(self);
      return rp;
    },
    [=](caf::put_atom, std::vector<value>& vs, ttl t) -> caf::result<caf::ok_atom> {
      // All or nothing: check every value before storing any.
      const auto& cfg = self->state.cache->config();
      for (const auto& v : vs)
        if (auto err = check_sizes(cfg, v.key().size(), v.bytes().size())) return err;
      auto rp = self->make_response_promise<caf::ok_atom>();
      // One answer when every write is done; the first error wins.
      auto left = std::make_shared<size_t>(vs.size());
      auto first_error = std::make_shared<caf::error>();
      auto one_done = [rp, left, first_error](caf::expected<bool> r) mutable {
        if (!r && !*first_error) *first_error = std::move(r.error());
        if (--*left > 0) return;
        if (*first_error)
          rp.deliver(*first_error);
        else
          rp.deliver(caf::ok_atom::value);
      };
      if (vs.empty()) rp.deliver(caf::ok_atom::value);
      auto now = now_of(self);
      for (auto& v : vs)
        if (auto r = self->state.cache->write(std::move(v), t, now, one_done))
          one_done(std::move(*r));
      send_writes(self);
      send_broadcasts(self);
      arm_expiry(self);
      return rp;
    },
    [=](caf::delete_atom, const std::string& key) -> caf::result<bool> {
      auto rp = self->make_response_promise<bool>();
      auto answer = deliver_write(rp);
      if (auto now = self->state.cache->write_erase(key, now_of(self), answer))
        answer(std::move(*now));
      send_writes(self);
      send_cascades(self);
      send_broadcasts(self);
      return rp;
    },
    [=](contains_atom, const std::string& key) {
      return self->state.cache->contains(key, now_of(self));
    },
    [=](ttl_atom, const std::string& key) {
      return self->state.cache->ttl_of(key, now_of(self));
    },
    [=](clear_atom) {
      auto n = self->state.cache->clear();
      send_broadcasts(self);
      return n;
    },
    [=](stats_atom) { return self->state.cache->stats(); },
    [=](cleanup_atom) { return self->state.cache->cleanup_expired(now_of(self)); },
    [=](load_atom, const std::string& key) -> caf::result<value> {
      auto rp = self->make_response_promise<value>();
      auto deliver = [rp](caf::expected<value> r) mutable {
        if (r)
          rp.deliver(std::move(*r));
        else
          rp.deliver(std::move(r.error()));
      };
      auto hash = static_cast<uint32_t>(hash_key(key));
      if (auto now = self->state.cache->get_or_load(key, hash, now_of(self), deliver))
        deliver(std::move(*now));
      dispatch_loads(self);
      arm_expiry(self); // a load started now times out by the timer
      return rp;
    },
    [=](load_outcome& out) {
      caf::expected<std::string> result = std::move(out.bytes);
      if (out.error) result = std::move(out.error);
      finish_load(self, out.key, out.id, std::move(result), out.took);
    },
    [=](doorbell_atom) {
      auto& st = self->state;
      shard_job* batch[prefetch_batch];
      for (int done = 0; done < doorbell_batch;) {
        int n = 0;
        while (n < prefetch_batch && (batch[n] = st.inbox->pop()) != nullptr)
          ++n;
        if (n == 0) {
          if (st.inbox->release_doorbell()) continue; // a job slipped in
          arm_expiry(self);
          return;
        }
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
        // Writes before loads: the flusher must hold a key's write before it
        // answers a load of it, or the load reads the store's older row.
        send_writes(self);     // the batch's writes
        dispatch_loads(self);  // the loads it started
        send_cascades(self);   // the dependents of keys it erased
        send_broadcasts(self); // and what other nodes must drop
        done += n;
      }
      arm_expiry(self);
      // Still busy: keep the doorbell claimed and come back after the mailbox.
      self->send(self, doorbell_atom::value);
    },
    [=](caf::put_atom, value& v, ttl t,
        const dependencies& deps) -> caf::result<caf::ok_atom> {
      auto err = self->state.cache->put(std::move(v), t, now_of(self), deps);
      send_broadcasts(self);
      arm_expiry(self);
      if (err) return err;
      return caf::ok_atom::value;
    },
    [=](purge_atom, const std::vector<std::string>& names, purge_cause cause,
        uint32_t level) {
      auto out = self->state.cache->purge(names, cause, level);
      // The answer goes first; the removed values are freed after it.
      if (self->state.cache->has_buried()) self->send(self, reclaim_atom::value);
      return out;
    },
    [=](reclaim_atom) {
      // In chunks, so reads and writes get in between.
      if (self->state.cache->free_buried(reclaim_batch) > 0)
        self->send(self, reclaim_atom::value);
    },
    [=](graph_atom) { return self->state.cache->dependency_edges(); },
    [=](evict_atom, const std::vector<std::string>& keys) {
      auto n = self->state.cache->evict(keys, now_of(self));
      send_cascades(self); // their dependents go too, on this node
      return n;
    },
    [=](evict_atom, const std::vector<std::string>& keys, bool cascade) {
      auto n = self->state.cache->evict(keys, now_of(self), cascade);
      send_cascades(self);
      return n;
    },
    [=](evict_atom) { return self->state.cache->evict_all(); },
    [=](evict_atom, caf::timespan limit) {
      auto n = self->state.cache->cap_ttl(now_of(self), limit);
      arm_expiry(self);
      return n;
    },
    [=](sync_atom) -> caf::result<std::vector<std::string>> {
      // Our broadcasts go first; the peer gets the sync after them (one
      // sender, one receiver: CAF keeps the order), so it covers them.
      send_broadcasts(self);
      if (!self->state.peer) return std::vector<std::string>{};
      return self->delegate(self->state.peer, sync_atom::value);
    },
    [=](flushed_atom, const stored_writes& writes) {
      self->state.cache->mark_stored(writes);
    },
    [=](room_atom) {
      // From the flusher (room was made) or from our own parked-write timer.
      self->state.room_timer_armed = false;
      self->state.cache->retry_parked(now_of(self));
      send_writes(self);
      send_broadcasts(self);
      arm_expiry(self);
    },
    [=](expire_atom, uint64_t generation) {
      auto& st = self->state;
      if (generation != st.timer_generation) return; // superseded by a re-arm
      st.armed_for.reset();
      auto now = now_of(self);
      st.cache->cleanup_expired(now, expiry_batch);
      auto next = st.cache->next_expiry();
      if (next && *next <= now) {
        // More already due: continue right after the mailbox, not in one go.
        st.armed_for = now;
        self->send(self, expire_atom::value, ++st.timer_generation);
        return;
      }
      arm_expiry(self);
    },
  };
}

} // namespace karlton

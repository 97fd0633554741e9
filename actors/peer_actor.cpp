#include "actors/peer_actor.hpp"

#include <caf/all.hpp>
#include <caf/io/middleman.hpp>
#include <caf/openssl/manager.hpp>

#include "actors/cluster_auth.hpp"
#include "messages/errors.hpp"
#include "runtime/clock.hpp"

namespace karlton {

namespace {

using self_ptr = peer_actor::stateful_pointer<peer_actor_state>;

void log(self_ptr self, const std::string& line) {
  auto& st = self->state;
  if (st.setup.log) st.setup.log("karlton node " + st.core->me().name + ": " + line);
}

// Messages that change this node's state only count from this process:
// another node (member or not) must not be able to make us broadcast, join
// elsewhere or register caches.
bool from_this_node(self_ptr self) {
  auto sender = self->current_sender();
  return sender && sender->node() == self->node();
}

caf::error not_local() {
  return make_error(errc::invalid_option, "only the node itself may send this message");
}

// True if the message being handled comes from the member `origin` claims
// to be: its handle is the one that passed the handshake.
bool from_member(self_ptr self, const std::string& origin) {
  auto& st = self->state;
  auto i = st.members.find(origin);
  auto sender = self->current_sender();
  if (i != st.members.end() && sender &&
      i->second.handle.address() == sender->address()) {
    i->second.last_heard = st.setup.time_source->now();
    return true;
  }
  // Counted, and logged once per thousand so a flood cannot fill the log.
  if (st.core->counters.unauthenticated_messages++ % 1000 == 0)
    log(self, "ignored invalidations claiming to come from '" + origin +
                "', which is not an authenticated member");
  return false;
}

// -- the join handshake (decided by `handshake_state`) -------------------------

// The handshake state's key for the actor that sent the message at hand.
std::string sender_key(const caf::strong_actor_ptr& sender) {
  return caf::to_string(sender->address());
}

// True if `name` is a live member reached through an actor other than `by`:
// a handshake claiming it is refused (the same member may shake hands again).
bool name_taken(self_ptr self, const std::string& name, const caf::actor_addr& by) {
  auto i = self->state.members.find(name);
  return i != self->state.members.end() && i->second.handle.address() != by;
}

// Logs a refused handshake, once per thousand so a flood cannot fill the log.
void log_refusal(self_ptr self, const caf::error& err) {
  if (self->state.auth->counters.total % 1000 == 1)
    log(self, "refused a handshake: " + describe(err));
}

// Makes the distributed caches safe again after we may have missed
// invalidations (rule 6): flushes them, or, with a repair TTL (unless
// `always_flush`: a lapsed lease always flushes), lets every entry live at
// most that long.
void repair(self_ptr self, const std::string& why, bool always_flush = false) {
  auto& st = self->state;
  ++st.core->counters.repairs;
  auto limit = always_flush ? caf::timespan{0} : st.setup.repair_ttl;
  log(self, (limit.count() > 0 ? "shortening the TTLs of the distributed caches: "
                               : "flushing the distributed caches: ") +
              why);
  // Counted until answered: `heartbeat` must not make a lapsed lease valid
  // again while a shard may still hold what this repair removes.
  auto done = [self] { --self->state.repairs_in_flight; };
  for (auto& [name, shards] : st.caches)
    for (auto& s : shards) {
      ++st.repairs_in_flight;
      if (limit.count() > 0)
        self->request(s, caf::infinite, evict_atom::value, limit)
          .then([done](uint64_t) { done(); }, [done](caf::error&) { done(); });
      else
        self->request(s, caf::infinite, evict_atom::value)
          .then([done](uint64_t) { done(); }, [done](caf::error&) { done(); });
    }
}

// -- applying what other nodes send -------------------------------------------

// Marks apply number `n` done and answers the synchronous batches whose
// applies, and all before them, are done.
void apply_done(self_ptr self, uint64_t n) {
  auto& st = self->state;
  auto below = st.core->finish_apply(n);
  auto& ws = st.sync_waiters;
  for (auto i = ws.begin(); i != ws.end();) {
    if (i->ticket <= below) {
      i->promise.deliver(caf::ok_atom::value);
      i = ws.erase(i);
    } else {
      ++i;
    }
  }
}

// Sends one removal request, answered with a `Result`; `issued` are the
// origin times of what it carries, recorded as delays once it is done.
template <class Result, class Handle, class... Ts>
void apply_one(self_ptr self, const Handle& dest, std::vector<int64_t> issued,
               Ts&&... xs) {
  auto n = self->state.core->start_apply();
  auto finish = [self, n, issued] {
    auto now = wall_clock_ns();
    for (auto t : issued)
      self->state.core->record_delay(t, now);
    self->state.core->counters.invalidations_applied += issued.size();
    apply_done(self, n);
  };
  self->request(dest, caf::infinite, std::forward<Ts>(xs)...)
    .then([finish](Result&) { finish(); }, [finish](caf::error&) { finish(); });
}

// Applies a batch: keys go to their shards, one message per shard; clears to
// every shard of the cache; tags and events to the bus. All are removals, so
// their order does not matter.
void apply(self_ptr self, invalidation_batch& b) {
  auto& st = self->state;
  struct shard_work {
    std::vector<std::string> keys;
    std::vector<int64_t> issued;
  };
  std::map<std::pair<std::string, size_t>, shard_work> by_shard;
  std::map<std::pair<std::string, size_t>, shard_work> written_by_shard; // no cascade
  for (auto& x : b.items) {
    auto c = st.caches.find(x.cache);
    switch (x.kind) {
    case invalidation_kind::key:
    case invalidation_kind::written: {
      if (c == st.caches.end()) break; // a cache this node does not have
      auto& shards = x.kind == invalidation_kind::key ? by_shard : written_by_shard;
      auto& w = shards[{x.cache, shard_index(hash_key(x.name), c->second.size())}];
      w.keys.push_back(std::move(x.name));
      w.issued.push_back(x.issued_ns);
      break;
    }
    case invalidation_kind::clear:
      if (c == st.caches.end()) break;
      for (auto& s : c->second)
        apply_one<uint64_t>(self, s, {}, evict_atom::value);
      st.core->record_delay(x.issued_ns, wall_clock_ns());
      break;
    case invalidation_kind::tag:
      if (!st.setup.event_bus) break;
      apply_one<purge_summary>(self, st.setup.event_bus, {x.issued_ns}, purge_atom::value,
                               std::vector<std::string>{std::move(x.name)},
                               purge_cause::tag, int32_t{-1});
      break;
    case invalidation_kind::event:
      if (!st.setup.event_bus) break;
      apply_one<purge_summary>(self, st.setup.event_bus, {x.issued_ns}, emit_atom::value,
                               std::move(x.name), std::move(x.data));
      break;
    }
  }
  for (auto& [where, w] : by_shard)
    apply_one<uint64_t>(self, st.caches[where.first][where.second], std::move(w.issued),
                        evict_atom::value, std::move(w.keys));
  for (auto& [where, w] : written_by_shard)
    apply_one<uint64_t>(self, st.caches[where.first][where.second], std::move(w.issued),
                        evict_atom::value, std::move(w.keys), false);
}

// -- sending ----------------------------------------------------------------

// Sends `b` to member `name` as a request, answered once applied there:
// the answer acknowledges it and everything sent before (flow control in
// `peer_state::send_to`); a timeout or error does not, and the member counts
// as behind. `done` hears whether it answered.
void send_to(self_ptr self, const std::string& name, const peer_actor& dest,
             peer_state::send_mark mark, const invalidation_batch& b,
             caf::timespan timeout, std::function<void(bool)> done = {}) {
  self->request(dest, timeout, batch_atom::value, b)
    .then(
      [self, name, mark, done](caf::ok_atom) {
        self->state.core->acknowledged(name, mark);
        if (done) done(true);
      },
      [self, name, mark, done](caf::error&) {
        self->state.core->not_acknowledged(name, mark);
        if (done) done(false);
      });
}

// Sends what is queued to every member, as one batch; with `even_empty`, an
// empty one if nothing is (a heartbeat that says where our numbering is).
// Flow control: a member behind, or that would be more than `max_unacked`
// behind, does not get the batch. It sees the gap in the numbering with the
// next batch or heartbeat and repairs (rule 6): a member that cannot keep up
// flushes instead of letting its mailboxes, and our sends, grow without bound.
void send_batch(self_ptr self, bool even_empty = false) {
  auto& st = self->state;
  st.flush_armed = false;
  auto b = st.core->take_batch();
  auto n = b.items.size();
  if ((n == 0 && !even_empty) || st.members.empty()) return;
  if (n > 0) ++st.core->counters.batches_sent; // not heartbeats
  for (auto& [name, m] : st.members)
    if (auto mark = st.core->send_to(name, n))
      send_to(self, name, m.handle, *mark, b, st.setup.member_timeout);
}

// -- membership -------------------------------------------------------------

void add_member(self_ptr self, const member_info& info, const peer_actor& handle) {
  auto& st = self->state;
  auto known = st.members.find(info.name);
  bool is_new = known == st.members.end() || known->second.handle != handle;
  st.members[info.name] =
    peer_actor_state::member{info, handle, st.setup.time_source->now()};
  st.reconnecting.erase(info.name);
  if (!is_new) return;
  st.core->member_joined(info.name);
  // From now on there is someone whose invalidations we could miss: a lease
  // held while we had no members must not stay valid forever until the next
  // heartbeat. Without this, a node frozen within a heartbeat of joining
  // served, when it ran again, a value erased meanwhile (found by
  // tests/runtime/multiprocess.test.cpp).
  if (st.setup.lease)
    st.setup.lease->limit_to(st.setup.time_source->now() + st.setup.lease_time);
  self->monitor(handle);
  log(self, "member joined: " + info.name + " at " + info.host + ":" +
              std::to_string(info.port) + " (" + std::to_string(st.members.size() + 1) +
              " nodes)");
}

void join_member(self_ptr self, member_info target);

// The join handshake with the node `other`, as its initiator (see
// actors/cluster_auth.hpp): we check its proof over both nonces first, and
// only then send ours, then exchange member lists and sequence numbers.
// `done` hears the outcome.
void handshake(self_ptr self, peer_actor other, std::function<void(caf::error)> done) {
  auto& st = self->state;
  auto started = st.auth->start();
  if (!started) {
    done(std::move(started.error()));
    return;
  }
  auto nonce = std::move(*started);
  auto timeout = st.setup.join_timeout;
  self->request(other, timeout, hello_atom::value, st.core->me(), nonce)
    .then(
      [=](member_info& them, std::string& their_nonce, std::string& proof) {
        auto& st = self->state;
        auto mine = st.auth->answer(handshake_party{them, caf::to_string(other.node())},
                                    nonce, their_nonce, proof,
                                    name_taken(self, them.name, other.address()));
        if (!mine) {
          log(self, "refused node '" + them.name + "': " + describe(mine.error()));
          done(std::move(mine.error()));
          return;
        }
        // A member from now on: what we broadcast after the join message
        // reaches it after that message, so its count starts where we say.
        add_member(self, them, other);
        self
          ->request(other, timeout, join_atom::value, st.core->me(), std::move(*mine),
                    st.core->next_seq())
          .then(
            [=](std::vector<member_info>& others, uint64_t their_next) {
              auto& st = self->state;
              if (st.core->expect(them.name, them.incarnation, their_next))
                repair(self, "'" + them.name + "' sent invalidations we never received");
              for (auto& o : others)
                if (o.name != st.core->me().name && st.members.count(o.name) == 0)
                  join_member(self, std::move(o));
              done(caf::none);
            },
            [=](caf::error& err) {
              auto& st = self->state;
              auto i = st.members.find(them.name);
              if (i != st.members.end() && i->second.handle == other) st.members.erase(i);
              log(self, "'" + them.name + "' refused us: " + describe(err));
              done(err);
            });
      },
      [=](caf::error& err) { done(err); });
}

// Connects to `host:port` without blocking a worker (the middleman's actor
// does the connecting), then runs the handshake.
void connect(self_ptr self, const std::string& host, uint16_t port,
             std::function<void(caf::error)> done) {
  auto& sys = self->home_system();
  auto mm = self->state.setup.tls ? sys.openssl_manager().actor_handle()
                                  : sys.middleman().actor_handle();
  self->request(mm, self->state.setup.join_timeout, caf::connect_atom::value, host, port)
    .then(
      [=](const caf::node_id& nid, caf::strong_actor_ptr& h,
          const std::set<std::string>& ifs) {
        if (nid == self->node()) { // we reached ourselves (a seed list may name us)
          done(caf::none);
          return;
        }
        if (!h || !self->home_system().assignable<peer_actor>(ifs)) {
          done(make_error(errc::invalid_option,
                          host + ":" + std::to_string(port) + " is not a karlton node"));
          return;
        }
        handshake(self, caf::actor_cast<peer_actor>(std::move(h)), done);
      },
      [=](caf::error& err) {
        done(make_error(errc::timeout, "cannot reach " + host + ":" +
                                         std::to_string(port) + ": " +
                                         self->system().render(err)));
      });
}

// Joins a member we heard of or lost; on failure, tries again later.
void join_member(self_ptr self, member_info target) {
  connect(self, target.host, target.port, [self, target](caf::error err) {
    auto& st = self->state;
    if (!err || st.members.count(target.name) > 0) {
      st.reconnecting.erase(target.name);
      return;
    }
    auto i = st.reconnecting.find(target.name);
    if (i == st.reconnecting.end()) {
      log(self, "cannot reach '" + target.name + "', retrying: " + describe(err));
      i = st.reconnecting.emplace(target.name, st.setup.reconnect_base).first;
    }
    auto wait = i->second;
    i->second = std::min(wait * 2, st.setup.reconnect_max);
    self->delayed_send(self, wait, join_atom::value, target);
  });
}

// Drops a member we lost (its connection, or its heartbeats), repairs, and
// starts reconnecting to it.
void lose_member(self_ptr self,
                 std::map<std::string, peer_actor_state::member>::iterator i,
                 const std::string& why) {
  auto& st = self->state;
  auto lost = i->second.info;
  self->demonitor(i->second.handle.address());
  st.members.erase(i);
  st.core->member_lost(lost.name);
  ++st.core->counters.peers_lost;
  // Rule 7: no hits until the repair below is done (then `heartbeat` renews).
  if (st.setup.lease) st.setup.lease->limit_to(st.setup.time_source->now());
  log(self, "lost member '" + lost.name + "' (" + why + ")");
  repair(self, "lost '" + lost.name + "', whose invalidations may not have arrived");
  st.reconnecting.emplace(lost.name, st.setup.reconnect_base);
  self->delayed_send(self, st.setup.reconnect_base, join_atom::value, lost);
}

void on_down(self_ptr self, const caf::down_msg& dm) {
  auto& st = self->state;
  for (auto i = st.members.begin(); i != st.members.end(); ++i)
    if (i->second.handle.address() == dm.source) {
      lose_member(self, i, self->system().render(dm.reason));
      return;
    }
}

// Every heartbeat: show we are alive, drop members gone silent, and extend
// the read lease as far as what we heard from everyone allows.
void heartbeat(self_ptr self) {
  auto& st = self->state;
  auto now = st.setup.time_source->now();
  // A heartbeat due `heartbeat` ago that runs more than a lease late means
  // this node was frozen or starved (SIGSTOP, a stalled VM). Members may
  // have dropped it meanwhile and invalidated without telling it, and what
  // it received since it runs again may be old news sent before they did:
  // `last_heard` says when it arrived, not when it was sent, and would
  // extend the lease below. Its lease lapsed in the stall, so flush now,
  // before anything makes it valid again. Without this, a node thawed after
  // SIGSTOP read old heartbeats from its socket, extended its lease and
  // served a value erased after the others had dropped it (found by
  // tests/runtime/multiprocess.test.cpp).
  if (auto ms = peer_state::stalled_ms(now, st.last_beat, st.setup.heartbeat,
                                       st.setup.lease_time))
    repair(self, "this node stalled for " + std::to_string(*ms) + " ms", true);
  st.last_beat = now;
  send_batch(self, true);
  for (auto i = st.members.begin(); i != st.members.end();) {
    auto next = std::next(i);
    if (now - i->second.last_heard > st.setup.member_timeout)
      lose_member(self, i, "silent for longer than the member timeout");
    i = next;
  }
  // Not while repairs are flushing: a read that comes before a shard's flush
  // must find the lease lapsed (and flush the shard itself), not held or
  // extended. Without this, a node thawed after SIGSTOP dropped its silent
  // members here, held the lease at once (no members) and served, before the
  // repair's flush reached the shard, a value erased while it was frozen
  // (found by tests/runtime/multiprocess.test.cpp).
  if (st.setup.lease) {
    std::vector<clock::time_point> heard;
    for (auto& [name, m] : st.members)
      heard.push_back(m.last_heard);
    if (auto until =
          peer_state::renew_lease(now, heard, st.repairs_in_flight, st.setup.lease_time))
      st.setup.lease->extend_to(*until);
  }
  self->delayed_send(self, st.setup.heartbeat, heartbeat_atom::value);
}

} // namespace

peer_actor::behavior_type peer(self_ptr self, peer_setup setup) {
  auto& st = self->state;
  st.core = std::make_unique<peer_state>(setup.me, setup.batch_max, setup.max_unacked);
  st.auth = std::make_unique<handshake_state>(
    setup.secret, handshake_party{setup.me, caf::to_string(self->node())},
    setup.join_timeout);
  st.setup = std::move(setup);
  self->set_down_handler([self](caf::down_msg& dm) { on_down(self, dm); });
  self->send(self, heartbeat_atom::value);
  // Bad input from the network (unknown messages, wrong types) is logged and
  // dropped; the node keeps running.
  self->set_default_handler(
    [self](caf::scheduled_actor*, caf::message_view& x) -> caf::result<caf::message> {
      // Counted, and logged once per thousand so a flood cannot fill the log.
      if (self->state.core->counters.bad_messages++ % 1000 == 0)
        log(self, "ignored a message it does not understand: " +
                    caf::to_string(x.copy_content_to_message()));
      return caf::sec::unexpected_message;
    });
  return {
    [=](hello_atom, member_info& from,
        std::string& nonce) -> caf::result<member_info, std::string, std::string> {
      auto& st = self->state;
      auto sender = self->current_sender();
      if (!sender) return not_local();
      auto reply = st.auth->hello(
        sender_key(sender), handshake_party{from, caf::to_string(sender->node())}, nonce,
        name_taken(self, from.name, sender->address()), st.setup.time_source->now());
      if (!reply) {
        log_refusal(self, reply.error());
        return std::move(reply.error());
      }
      return {st.core->me(), std::move(reply->nonce), std::move(reply->proof)};
    },
    [=](join_atom, member_info& from, std::string& proof,
        uint64_t next_seq) -> caf::result<std::vector<member_info>, uint64_t> {
      auto& st = self->state;
      auto sender = self->current_sender();
      if (!sender) return not_local();
      if (auto err = st.auth->join(sender_key(sender), from, proof,
                                   name_taken(self, from.name, sender->address()),
                                   st.setup.time_source->now())) {
        log_refusal(self, err);
        return err;
      }
      if (st.core->expect(from.name, from.incarnation, next_seq))
        repair(self, "'" + from.name + "' sent invalidations we never received");
      std::vector<member_info> others;
      for (auto& [name, m] : st.members)
        if (name != from.name) others.push_back(m.info);
      add_member(self, from, caf::actor_cast<peer_actor>(sender));
      return {std::move(others), st.core->next_seq()};
    },
    [=](batch_atom, invalidation_batch& b) -> caf::result<caf::ok_atom> {
      // Answered once the batch and everything before it is applied: the
      // sender's window (and its synchronous calls) count on that.
      if (!from_member(self, b.origin))
        return make_error(errc::invalid_option, "not an authenticated member");
      auto& st = self->state;
      if (st.core->receive(b))
        repair(self, "invalidations from '" + b.origin + "' went missing");
      apply(self, b);
      if (st.core->all_applied()) return caf::ok_atom::value;
      auto rp = self->make_response_promise<caf::ok_atom>();
      st.sync_waiters.push_back({st.core->applies_started(), rp});
      return rp;
    },
    [=](broadcast_atom, std::vector<invalidation>& items) {
      if (!from_this_node(self)) return;
      auto& st = self->state;
      if (st.core->enqueue(std::move(items))) {
        send_batch(self);
      } else if (!st.flush_armed) {
        st.flush_armed = true;
        self->delayed_send(self, st.setup.batch_delay, tick_atom::value,
                           ++st.flush_generation);
      }
    },
    [=](tick_atom, uint64_t generation) {
      if (!from_this_node(self) || generation != self->state.flush_generation) return;
      send_batch(self);
    },
    [=](sync_atom) -> caf::result<std::vector<std::string>> {
      if (!from_this_node(self)) return not_local();
      auto& st = self->state;
      ++st.flush_generation; // the pending timer has nothing left to send
      st.flush_armed = false;
      auto b = st.core->take_batch();
      std::vector<std::string> names;
      for (auto& [name, m] : st.members)
        names.push_back(name);
      auto plan = st.core->plan_sync(names, b.items.size());
      if (!b.items.empty() && !st.members.empty()) ++st.core->counters.batches_sent;
      auto missing =
        std::make_shared<std::vector<std::string>>(std::move(plan.not_answered));
      if (plan.ask.empty()) {
        if (!missing->empty()) ++st.core->counters.sync_timeouts;
        return std::move(*missing);
      }
      auto rp = self->make_response_promise<std::vector<std::string>>();
      // One answer once every member asked answered or timed out.
      auto left = std::make_shared<size_t>(plan.ask.size());
      for (auto& [name, mark] : plan.ask)
        send_to(self, name, st.members[name].handle, mark, b, st.setup.sync_timeout,
                [self, rp, left, missing, who = name](bool ok) mutable {
                  if (!ok) missing->push_back(who);
                  if (--*left > 0) return;
                  if (!missing->empty()) ++self->state.core->counters.sync_timeouts;
                  rp.deliver(std::move(*missing));
                });
      return rp;
    },
    [=](join_atom, std::string& host, uint16_t port) -> caf::result<caf::ok_atom> {
      if (!from_this_node(self)) return not_local();
      auto rp = self->make_response_promise<caf::ok_atom>();
      connect(self, host, port, [rp](caf::error err) mutable {
        if (err)
          rp.deliver(std::move(err));
        else
          rp.deliver(caf::ok_atom::value);
      });
      return rp;
    },
    [=](join_atom, member_info& target) {
      if (!from_this_node(self) || self->state.members.count(target.name) > 0) return;
      join_member(self, std::move(target));
    },
    [=](shards_atom, std::string& cache,
        std::vector<shard_actor>& shards) -> caf::result<caf::ok_atom> {
      if (!from_this_node(self)) return not_local();
      self->state.caches[std::move(cache)] = std::move(shards);
      return caf::ok_atom::value;
    },
    [=](leave_atom) -> caf::result<caf::ok_atom> {
      if (!from_this_node(self)) return not_local();
      auto& st = self->state;
      send_batch(self);
      // With where our numbering stands: a member we withheld batches from
      // (flow control) sees the gap and repairs, though we left cleanly.
      for (auto& [name, m] : st.members) {
        self->demonitor(m.handle.address());
        self->request(m.handle, caf::infinite, leave_atom::value, st.core->next_seq())
          .then([](caf::ok_atom) {});
      }
      st.members.clear();
      st.reconnecting.clear();
      return caf::ok_atom::value;
    },
    [=](leave_atom, uint64_t next_seq) -> caf::result<caf::ok_atom> {
      auto& st = self->state;
      auto sender = self->current_sender();
      for (auto i = st.members.begin(); i != st.members.end(); ++i)
        if (sender && i->second.handle.address() == sender->address()) {
          auto who = i->second.info;
          log(self, "member left: " + who.name + " (" +
                      std::to_string(st.members.size()) + " nodes)");
          self->demonitor(i->second.handle.address());
          st.members.erase(i);
          st.core->member_left(who.name);
          if (st.core->left(who.name, who.incarnation, next_seq))
            repair(self, "'" + who.name + "' left; invalidations it sent went missing");
          break;
        }
      return caf::ok_atom::value;
    },
    [=](heartbeat_atom) {
      if (from_this_node(self)) heartbeat(self);
    },
    [=](peer_stats_atom) {
      auto s = self->state.core->stats(self->state.members.size());
      add_counters(s, self->state.auth->counters);
      return s;
    },
    [=](members_atom) {
      std::vector<member_info> out;
      for (auto& [name, m] : self->state.members)
        out.push_back(m.info);
      return out;
    },
  };
}

} // namespace karlton

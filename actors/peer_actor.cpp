// The peer actor's behavior and its invalidation traffic: batches out,
// applies in, heartbeats and the read lease. The decisions are `peer_state`'s
// and `member_table`'s; joining and losing members is in peer_membership.cpp.
#include "actors/peer_actor.hpp"

#include <algorithm>
#include <memory>
#include <optional>
#include <tuple>
#include <type_traits>

#include <caf/all.hpp>

#include "actors/link_auth.hpp"
#include "actors/local_reply.hpp"
#include "actors/peer_internal.hpp"
#include "actors/shard_repair.hpp"
#include "base/printable.hpp"
#include <karlton/base/clock.hpp>
#include <karlton/messages/errors.hpp>

namespace karlton {

namespace peer_detail {

// Lines hold names, errors and messages other nodes sent: escaped, so none
// can forge a line or reach the operator's terminal, and cut at
// `max_log_line_bytes`, so none can make one as long as it likes.
void log(self_ptr self, const std::string& line) {
  auto& st = self->state;
  if (!st.setup.log) return;
  auto shown = printable(std::string_view{line}.substr(0, max_log_line_bytes));
  if (line.size() > max_log_line_bytes) shown += "...";
  st.setup.log("karlton node " + st.core->me().name + ": " + shown);
}

// Marks apply number `n` done and answers the batches whose applies, and all
// before them, are done.
void apply_done(self_ptr self, uint64_t n) {
  auto& waiters = self->state.apply_waiters;
  auto done = waiters.upper_bound(self->state.core->finish_apply(n));
  for (auto i = waiters.begin(); i != done; ++i)
    i->second.promise.deliver(caf::ok_atom::value, std::move(i->second.ack));
  waiters.erase(waiters.begin(), done);
}

// Extends the read lease as far as what every member took from us allows
// (`read_lease` past when we sent it: see `link_tag`), unless repairs are
// under way: a read that comes before a shard's repair must
// find the lease lapsed (and clear the shard itself, or under repair-ttl cap it
// and serve no hits), not held or extended.
// Without this, a node thawed after SIGSTOP dropped its silent members, held
// the lease at once (no members) and served, before the repair's clear
// reached the shard, a value erased while it was frozen (found by
// tests/runtime/multiprocess.test.cpp).
void renew_lease(self_ptr self) {
  auto& st = self->state;
  if (!st.setup.lease || !st.refused_our_name.empty()) return;
  if (auto until =
        peer_state::renew_lease(st.setup.time_source->now(), st.members->oldest_echo(),
                                st.repairs_in_flight, st.setup.read_lease))
    st.setup.lease->extend_to(*until);
}

void repair(self_ptr self, const std::string& why, bool always_clear) {
  auto& st = self->state;
  ++st.core->counters.repairs;
  auto limit = always_clear ? caf::timespan{0} : st.setup.repair_ttl;
  log(self, (limit.count() > 0 ? "shortening the TTLs of the distributed caches: "
                               : "clearing the distributed caches: ") +
              why);
  // A repair that clears serves no hits from now until it is done (rule 6):
  // a shard busy with something else would serve what it is about to clear
  // until the lease ran out (1 s). One that caps TTLs keeps serving: its
  // staleness is bounded by design. A lost member lapses the lease anyway
  // (rule 7; under repair-ttl the shards cap and keep what they hold, and serve
  // none of it until the lease holds again). The last shard's answer renews
  // it, not the next heartbeat: until then every read missed (and cleared the
  // shard, or found it withheld), so what a node loaded just after it joined
  // was not served.
  if (limit.count() == 0 && st.setup.lease)
    st.setup.lease->limit_to(st.setup.time_source->now());
  // Counted until answered: `heartbeat` must not make a lapsed lease valid
  // again while a shard may still hold what this repair removes. And each
  // shard's repair is an apply: the batch that showed the gap (a heartbeat
  // of a synchronous call, say) is answered only once it is done, or a
  // synchronous call counted this node as applied while it still served.
  for (auto& [name, shards] : st.caches)
    for (auto& s : shards) {
      ++st.repairs_in_flight;
      auto n = st.core->start_apply();
      request_repair(self, s, limit, [self, n] {
        if (--self->state.repairs_in_flight == 0) renew_lease(self);
        apply_done(self, n);
      });
    }
  // No distributed cache yet (a node joins before it creates them): nothing
  // to clear, and nothing would renew the lease before the next heartbeat.
  if (st.repairs_in_flight == 0) renew_lease(self);
}

void count_unauthenticated(self_ptr self, const std::string& what) {
  if (self->state.core->counters.unauthenticated_messages++ % 1000 == 0)
    log(self, "ignored " + what);
}

} // namespace peer_detail

namespace {

using namespace peer_detail;

// Messages that change this node's state only count from this process:
// another node (member or not) must not be able to make us broadcast, join
// elsewhere, register caches, leave or run a second heartbeat. The sender's
// node is no proof (BASP lets a host claim any; see `local_token`): the
// token is. Counted, and logged once per thousand.
bool from_this_process(self_ptr self, const local_token& token) {
  if (token == this_process_token()) return true;
  count_unauthenticated(self, "a local-only message without this process's token");
  return false;
}

caf::error not_local() {
  return make_error(errc::invalid_option, "only the node itself may send this message");
}

// The MAC of the acknowledgement if batch `b` comes from the member its
// origin names: sent by the handle that passed the handshake (which proves
// nothing: BASP lets a host claim any), and `tag` verifies under that
// member's link key with a counter it has not used (which only the member
// can make). Only then is the member heard from.
std::optional<std::string> from_member(self_ptr self, const invalidation_batch& b,
                                       const link_tag& tag) {
  auto& st = self->state;
  auto sender = self->current_sender();
  auto* m = sender ? st.members->claimed_by(b.origin, sender->address()) : nullptr;
  if (!m) {
    count_unauthenticated(self, "invalidations claiming to come from '" + b.origin +
                                  "', which is not an authenticated member");
    return std::nullopt;
  }
  // A counter already taken (a replay) is refused before the batch is hashed.
  auto ack = m->link.plausible(tag.counter)
               ? m->link.open(link_message::batch, batch_digest(b), tag)
               : std::nullopt;
  if (!ack) {
    count_unauthenticated(self, "a batch claiming to come from '" + b.origin +
                                  "' without a valid link MAC (forged or replayed)");
    return std::nullopt;
  }
  auto echoed = m->echoed;
  st.members->heard_from(b.origin, sender->address(), st.setup.time_source->now(), tag);
  // At once, not at our next heartbeat: a lease renewed up to a beat late
  // would have a beat less to spare before it lapses under a busy link.
  if (m->echoed != echoed) renew_lease(self);
  return ack;
}

// -- applying what other nodes send -------------------------------------------

// Sends the removal request `args` to the local `dest` and runs `finish`
// once it answered. An answer from another node is a forgery that took the
// place of `dest`'s (local_reply.hpp): before, it let this node acknowledge a
// synchronous invalidation its shard had not applied. It is counted and the
// request sent again (a removal twice removes nothing more).
template <class Result, class Handle, class Finish, class Args>
void ask_to_apply(self_ptr self, const Handle& dest, Finish finish,
                  std::shared_ptr<Args> args) {
  auto answered = [self, dest, finish, args] {
    if (answered_by(self, dest)) return finish();
    count_unauthenticated(self, "a forged answer to a local apply");
    ask_to_apply<Result>(self, dest, finish, args);
  };
  std::apply(
    [&](const auto&... xs) {
      self->request(dest, caf::infinite, xs...)
        .then([answered](Result&) { answered(); },
              [answered](caf::error&) { answered(); });
    },
    *args);
}

// Sends one removal request, answered with a `Result`; `issued` are the
// origin times of what it carries, recorded as delays once it is done.
template <class Result, class Handle, class... Ts>
void apply_one(self_ptr self, const Handle& dest, std::vector<int64_t> issued,
               Ts&&... xs) {
  auto n = self->state.core->start_apply();
  auto finish = [self, n, issued = std::move(issued)] {
    auto now = wall_clock_ns();
    for (auto t : issued)
      self->state.core->record_delay(t, now);
    self->state.core->counters.invalidations_applied += issued.size();
    apply_done(self, n);
  };
  // Kept for a second send; the request copies them, once if none is forged.
  auto args = std::make_shared<std::tuple<std::decay_t<Ts>...>>(std::forward<Ts>(xs)...);
  ask_to_apply<Result>(self, dest, std::move(finish), std::move(args));
}

// Applies a batch as `route_batch` says: one removal request per step.
void apply(self_ptr self, invalidation_batch& b) {
  auto& st = self->state;
  auto shard_count = [&st](const std::string& cache) {
    auto c = st.caches.find(cache);
    return c == st.caches.end() ? size_t{0} : c->second.size();
  };
  for (auto& step : route_batch(b, shard_count, static_cast<bool>(st.setup.event_bus))) {
    switch (step.to) {
    case apply_step::target::shard: {
      auto& dest = st.caches[step.cache][step.shard];
      if (step.written) // no cascade: the writer's node cascades itself
        apply_one<uint64_t>(self, dest, std::move(step.issued), invalidate_atom::value,
                            std::move(step.keys), false);
      else
        apply_one<uint64_t>(self, dest, std::move(step.issued), invalidate_atom::value,
                            std::move(step.keys));
      break;
    }
    case apply_step::target::cache:
      for (auto& s : st.caches[step.cache])
        apply_one<uint64_t>(self, s, {}, invalidate_atom::value);
      st.core->record_delay(step.issued.front(), wall_clock_ns());
      break;
    case apply_step::target::bus:
      if (step.item.kind == invalidation_kind::tag)
        apply_one<invalidation_summary>(
          self, st.setup.event_bus, std::move(step.issued),
          invalidate_dependents_atom::value,
          std::vector<std::string>{std::move(step.item.name)}, invalidation_cause::tag,
          int32_t{-1});
      else
        apply_one<invalidation_summary>(self, st.setup.event_bus, std::move(step.issued),
                                        emit_atom::value, std::move(step.item.name),
                                        std::move(step.item.data));
      break;
    }
  }
}

// -- sending ----------------------------------------------------------------

void send_batch(self_ptr self, bool even_empty = false);

// Sends `b` to member `name` as a request, answered once applied there:
// the answer acknowledges it and everything sent before (flow control in
// `peer_state::send_to`); a timeout or error does not, and the member counts
// as behind. Either way, once the last batch in flight is answered, what
// gathered meanwhile goes out (`peer_state::send_when`). `done` hears whether
// it answered. The batch goes with its link tag (`digest`: its content's, the
// same for every member) and our clock's reading: an answer proves the
// member took the batch, so it heard from us at that time or later. An
// answer without the acknowledgement's MAC, one that did not come from the
// member, counts as none.
void send_to(self_ptr self, const std::string& name, peer_state::send_mark mark,
             const invalidation_batch& b, const std::string& digest,
             caf::timespan timeout, std::function<void(bool)> done = {}) {
  auto* m = self->state.members->find_mutable(name);
  auto sent = self->state.setup.time_source->now();
  auto sealed =
    m->link.seal(link_message::batch, digest, tag_reading(sent), m->their_sent);
  self->request(m->handle, timeout, batch_atom::value, b, std::move(sealed.tag))
    .then(
      [self, name, mark, done, sent, by = m->handle.address(),
       ack = std::move(sealed.ack)](caf::ok_atom, std::string& got) {
        if (!same_mac(got, ack)) {
          count_unauthenticated(self, "an acknowledgement claiming to come from '" +
                                        name + "' without a valid link MAC");
          bool flush = self->state.core->not_acknowledged(name, mark);
          if (done) done(false);
          if (flush) send_batch(self);
          return;
        }
        bool flush = self->state.core->acknowledged(name, mark);
        // It took the batch: the freshest echo there is (see `took`).
        if (self->state.members->took(name, by, sent,
                                      self->state.setup.time_source->now()))
          renew_lease(self);
        if (done) done(true);
        if (flush) send_batch(self);
      },
      [self, name, mark, done](caf::error&) {
        bool flush = self->state.core->not_acknowledged(name, mark);
        if (done) done(false);
        if (flush) send_batch(self);
      });
}

// Sends what is queued to every member, as one batch; with `even_empty`, an
// empty one if nothing is (a heartbeat that says where our numbering is).
// Flow control: a member behind, or that would be more than `max_unacked`
// behind, does not get the batch. It sees the gap in the numbering with the
// next batch or heartbeat and repairs (rule 6): a member that cannot keep up
// clears instead of letting its mailboxes, and our sends, grow without bound.
// A queue longer than `max_batch_items` goes out as several batches.
void send_batch(self_ptr self, bool even_empty) {
  auto& st = self->state;
  do {
    // A heartbeat's beats go with the queue's last batch (`outgoing::beat`).
    auto out = st.core->send_batch(st.members->names(), even_empty);
    // Hashed once; per member, two short HMACs (its tag, the expected ack).
    auto digest = out.to.empty() ? std::string{} : batch_digest(out.batch);
    for (auto& [name, mark] : out.to)
      send_to(self, name, mark, out.batch, digest, st.setup.member_timeout);
    auto beat_digest = out.beat_to.empty() ? std::string{} : batch_digest(out.beat);
    for (auto& [name, mark] : out.beat_to)
      send_to(self, name, mark, out.beat, beat_digest, st.setup.member_timeout);
  } while (st.core->pending() > 0);
}

// Every heartbeat: show we are alive, drop members gone silent, and extend
// the read lease as far as what everyone took from us allows.
void heartbeat(self_ptr self) {
  auto& st = self->state;
  auto now = st.setup.time_source->now();
  // A heartbeat a lease late: this node was frozen or starved, and members may
  // have dropped it and invalidated without it. What it reads now cannot renew
  // its lapsed lease (it echoes what we sent before): clear at once. With no
  // member since the last heartbeat nothing passed it by (one gone in the stall
  // counts: its repair may only cap TTLs). Tests: multiprocess, cluster_repair.
  if (auto ms = peer_state::stalled_ms(now, st.last_beat, st.setup.heartbeat,
                                       st.setup.read_lease)) {
    ++st.core->counters.stalls;
    auto what = "this node stalled for " + std::to_string(*ms) + " ms";
    if (st.members->had_members())
      repair(self, what, true);
    else
      log(self, what + "; it had no members, so it missed no invalidation");
  }
  st.last_beat = now;
  st.members->mark_members();
  send_batch(self, true);
  drop_silent_members(self, now);
  renew_lease(self);
  self->delayed_send(self, st.setup.heartbeat, heartbeat_atom::value,
                     this_process_token());
}

} // namespace

// The peer's behaviour is long because it lists every message a peer
// answers, one short handler each (the decisions are in peer_state and
// peer_membership.cpp); the list is the peer protocol at a glance.
peer_actor::behavior_type peer(self_ptr self, peer_setup setup) {
  auto& st = self->state;
  st.core = std::make_unique<peer_state>(setup.me, setup.batch_max, setup.max_unacked);
  st.auth = std::make_unique<handshake_state>(
    setup.secret, handshake_party{setup.me, caf::to_string(self->node())},
    setup.join_timeout);
  st.members =
    std::make_unique<member_table<peer_actor>>(setup.reconnect_base, setup.reconnect_max);
  st.setup = std::move(setup);
  self->set_down_handler([self](caf::down_msg& dm) { on_down(self, dm); });
  self->send(self, heartbeat_atom::value, this_process_token());
  ignore_strays(self);
  return {
    [=](hello_atom, member_info& from,
        std::string& nonce) -> caf::result<member_info, std::string, std::string> {
      auto sender = self->current_sender();
      if (!sender) return not_local();
      return answer_hello(self, sender, from, nonce);
    },
    [=](join_atom, member_info& from, std::string& their_nonce, std::string& my_nonce,
        std::string& proof, uint64_t next_seq, const link_tag& tag)
      -> caf::result<std::vector<member_info>, uint64_t, link_tag> {
      auto sender = self->current_sender();
      if (!sender) return not_local();
      return admit(self, sender, from, their_nonce, my_nonce, proof, next_seq, tag);
    },
    [=](batch_atom, invalidation_batch& b,
        const link_tag& tag) -> caf::result<caf::ok_atom, std::string> {
      // Answered once the batch and everything before it is applied: the
      // sender's window (and its synchronous calls) count on that.
      // The limits first: they cost nothing, while the digest that the MAC
      // covers hashes every byte of the batch on this actor's thread.
      auto& st = self->state;
      if (!st.core->acceptable(b)) {
        if (st.core->counters.bad_messages % 1000 == 1)
          log(self, "ignored a batch from '" + b.origin + "' of " +
                      std::to_string(b.items.size()) + " invalidations from " +
                      std::to_string(b.first_seq) + ": over the limits");
        return make_error(errc::invalid_option, "a batch over the limits");
      }
      auto ack = from_member(self, b, tag);
      if (!ack) return make_error(errc::invalid_option, "not an authenticated member");
      if (st.core->receive(b))
        repair(self, "invalidations from '" + b.origin + "' went missing");
      apply(self, b);
      if (st.core->all_applied()) return {caf::ok_atom::value, std::move(*ack)};
      auto rp = self->make_response_promise<caf::ok_atom, std::string>();
      st.apply_waiters.emplace(st.core->applies_started(),
                               peer_actor_state::apply_waiter{rp, std::move(*ack)});
      return rp;
    },
    [=](broadcast_atom, const local_token& token, std::vector<invalidation>& items) {
      if (!from_this_process(self, token)) return;
      auto& st = self->state;
      switch (st.core->enqueue(std::move(items))) {
      case peer_state::send_when::now:
        send_batch(self);
        break;
      case peer_state::send_when::arm_timer:
        self->delayed_send(self, st.setup.batch_delay, tick_atom::value,
                           this_process_token(), ++st.send_generation);
        break;
      case peer_state::send_when::later:
        break;
      }
    },
    [=](tick_atom, const local_token& token, uint64_t generation) {
      if (!from_this_process(self, token) || generation != self->state.send_generation)
        return;
      send_batch(self);
    },
    [=](sync_atom, const local_token& token) -> caf::result<std::vector<std::string>> {
      if (!from_this_process(self, token)) return not_local();
      auto& st = self->state;
      ++st.send_generation; // the pending timer has nothing left to send
      // More than one batch holds: all but the call's own go first (a member
      // answers a batch once everything before it is applied).
      if (st.core->pending() > st.core->max_items()) send_batch(self);
      auto call = st.core->start_sync(st.members->names());
      if (call.answer) return std::move(*call.answer);
      // One answer once every member asked answered or timed out.
      auto rp = self->make_response_promise<std::vector<std::string>>();
      auto digest = batch_digest(call.out.batch);
      for (auto& [name, mark] : call.out.to)
        send_to(self, name, mark, call.out.batch, digest, st.setup.sync_timeout,
                [self, rp, id = call.id, who = name](bool ok) mutable {
                  if (auto answer = self->state.core->sync_answered(id, who, ok))
                    rp.deliver(std::move(*answer));
                });
      return rp;
    },
    [=](join_atom, const local_token& token, std::string& host,
        uint16_t port) -> caf::result<caf::ok_atom> {
      if (!from_this_process(self, token)) return not_local();
      auto rp = self->make_response_promise<caf::ok_atom>();
      connect(self, host, port, [rp](caf::error err) mutable {
        if (err)
          rp.deliver(std::move(err));
        else
          rp.deliver(caf::ok_atom::value);
      });
      return rp;
    },
    [=](join_atom, const local_token& token, member_info& target, uint64_t retry_of) {
      if (!from_this_process(self, token)) return;
      join_member(self, std::move(target), retry_of); // 0: a seed from join_seeds
    },
    [=](shards_atom, const local_token& token, std::string& cache,
        std::vector<shard_actor>& shards) -> caf::result<caf::ok_atom> {
      if (!from_this_process(self, token)) return not_local();
      self->state.caches[std::move(cache)] = std::move(shards);
      return caf::ok_atom::value;
    },
    [=](leave_atom, const local_token& token) -> caf::result<caf::ok_atom> {
      if (!from_this_process(self, token)) return not_local();
      send_batch(self);
      leave(self);
      return caf::ok_atom::value;
    },
    [=](leave_atom, uint64_t next_seq, const link_tag& tag) -> caf::result<caf::ok_atom> {
      auto sender = self->current_sender();
      if (sender && !member_left(self, sender, next_seq, tag))
        return make_error(errc::invalid_option, "not an authenticated member");
      return caf::ok_atom::value;
    },
    [=](heartbeat_atom, const local_token& token) {
      // A forged heartbeat must not start a second timer chain.
      if (from_this_process(self, token)) heartbeat(self);
    },
    [=](stop_atom, const local_token& token) {
      if (from_this_process(self, token)) self->quit(caf::exit_reason::user_shutdown);
    },
    // Local only: a stranger's small request would get 256 KiB of delays
    // (a review's client that did not read took a node to 1.6 GB).
    [=](peer_stats_atom, const local_token& token) -> caf::result<peer_stats> {
      if (!from_this_process(self, token)) return not_local();
      auto s = self->state.core->stats(self->state.members->size());
      add_counters(s, self->state.auth->counters);
      s.unauthenticated_messages += self->refused_at_mailbox.load();
      return s;
    },
    [=](members_atom, const local_token& token) -> caf::result<std::vector<member_info>> {
      if (!from_this_process(self, token)) return not_local();
      return self->state.members->infos();
    },
    [=](forget_atom, const local_token& token,
        const std::string& name) -> caf::result<caf::ok_atom> {
      if (!from_this_process(self, token)) return not_local();
      if (auto err = forget_member(self, name)) return err;
      return caf::ok_atom::value;
    },
  };
}

} // namespace karlton

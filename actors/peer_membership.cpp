// The peer actor's membership: joining other nodes (connect, then the join
// handshake as initiator), admitting those that join us (as responder), and
// losing, reconnecting to and letting go members. The decisions are made by
// `handshake_state` (actors/cluster_auth.hpp), `member_table`
// (actors/peer_members.hpp) and `peer_state`; this translates them to
// messages. Invalidation traffic is in peer_actor.cpp.
#include <caf/all.hpp>
#include <caf/io/middleman.hpp>
#include <caf/openssl/manager.hpp>

#include "actors/link_auth.hpp"
#include "actors/local_reply.hpp"
#include "actors/peer_internal.hpp"
#include <karlton/messages/errors.hpp>

namespace karlton::peer_detail {

namespace {

// The handshake state's key for the actor that sent the message at hand.
std::string sender_key(const caf::strong_actor_ptr& sender) {
  return caf::to_string(sender->address());
}

// Logs a refused handshake, once per thousand so a flood cannot fill the log.
void log_refusal(self_ptr self, const caf::error& err) {
  if (self->state.auth->counters.total % 1000 == 1)
    log(self, "refused a handshake: " + describe(err));
}

// Stops our monitor of `handle`, unless a member or a handshake of ours still
// goes through its address: CAF's demonitor removes all our monitors of it.
void unwatch(self_ptr self, const peer_actor& handle) {
  auto& st = self->state;
  self->demonitor(handle.address());
  if (st.handshakes.count(handle.address()) > 0 ||
      st.members->find_by_address(handle.address()) != nullptr)
    self->monitor(handle);
}

// After a member was lost (its connection, or its heartbeats) and removed:
// repairs, and starts reconnecting to it.
void lose_member(self_ptr self, const member_table<peer_actor>::member& m,
                 const std::string& why) {
  auto& st = self->state;
  auto& lost = m.info;
  unwatch(self, m.handle);
  st.core->member_lost(lost.name);
  ++st.core->counters.peers_lost;
  // Rule 7: no hits until the repair below is done (its end renews the lease).
  if (st.setup.lease) st.setup.lease->limit_to(st.setup.time_source->now());
  log(self, "lost member '" + lost.name + "' (" + why + ")");
  repair(self, "lost '" + lost.name + "', whose invalidations may not have arrived");
  if (auto retry = st.members->lost(lost))
    self->delayed_send(self, caf::timespan{retry->wait}, join_atom::value,
                       this_process_token(), std::move(retry->info), retry->chain);
}

// `info` passed a handshake through `handle` in which we were `role`, which
// set up a link with `keys`: what it sends from now on is checked under them.
// The last of our messages it took was sent at `echoed`. True if it was no
// member through `handle` before.
bool add_member(self_ptr self, const member_info& info, const peer_actor& handle,
                handshake_role role, link_keys keys, clock::time_point echoed) {
  auto& st = self->state;
  bool is_new = st.members->add(info, handle, st.setup.time_source->now(), echoed);
  st.members->find_mutable(info.name)->link.established(role, std::move(keys));
  if (!is_new) return false;
  st.core->member_joined(info.name);
  // From now on there is someone whose invalidations we could miss: a lease
  // held while we had no members must not stay valid forever until the next
  // heartbeat. Without this, a node frozen within a heartbeat of joining
  // served, when it ran again, a value erased meanwhile (found by
  // tests/runtime/multiprocess.test.cpp).
  if (st.setup.lease) st.setup.lease->limit_to(echoed + st.setup.read_lease);
  self->monitor(handle);
  log(self, "member joined: " + info.name + " at " + info.host + ":" +
              std::to_string(info.port) + " (" + std::to_string(st.members->size() + 1) +
              " nodes)");
  return true;
}

// Our join to `name` through `handle` failed after `add_member`. A member
// from before (through the handshake it started with us) keeps the link it
// has, and only ours goes, which it never took: before, it was dropped too,
// silently, and its batches were refused from then on while our lease ignored
// it. A new one goes; the caller retries the join. One we had lost is lost
// again: `add_member` took it off the list of those a synchronous call must
// name as not answered, while it may still serve what we invalidate.
void join_failed(self_ptr self, const member_info& them, const peer_actor& handle,
                 bool was_new, bool was_lost) {
  auto& members = *self->state.members;
  if (was_new) {
    members.remove_if(them.name, handle);
    if (was_lost && !members.find_mutable(them.name))
      self->state.core->member_lost(them.name);
    return;
  }
  auto* m = members.find_mutable(them.name);
  if (m && m->handle == handle) m->link.withdraw(handshake_role::initiator);
}

// Ends the handshake `pending` with `other`, unless its lost connection
// ended it first, and tells `err`.
void end_handshake(self_ptr self, const peer_actor& other,
                   const std::shared_ptr<peer_actor_state::pending_handshake>& pending,
                   caf::error err) {
  auto& st = self->state;
  auto [first, last] = st.handshakes.equal_range(other.address());
  for (auto i = first; i != last; ++i)
    if (i->second == pending) {
      st.handshakes.erase(i);
      break;
    }
  unwatch(self, other);
  pending->end(std::move(err));
}

// The join handshake with the node `other`, as its initiator (see
// actors/cluster_auth.hpp): we check its proof over both nonces first, and
// only then send ours, then exchange member lists and sequence numbers.
// `done` hears the outcome, or, if the connection is lost meanwhile (we
// monitor `other`), `lost` is called at once (if set), where the handshake's
// requests would only time out.
void handshake(self_ptr self, peer_actor other, std::function<void(caf::error)> done,
               std::function<void()> lost) {
  auto& st = self->state;
  auto started = st.auth->start();
  if (!started) {
    done(std::move(started.error()));
    return;
  }
  auto nonce = std::move(*started);
  auto pending = std::make_shared<peer_actor_state::pending_handshake>();
  pending->done = std::move(done);
  pending->lost = std::move(lost);
  st.handshakes.emplace(other.address(), pending);
  self->monitor(other);
  auto finish = [self, other, pending](caf::error err) {
    end_handshake(self, other, pending, std::move(err));
  };
  auto timeout = st.setup.join_timeout;
  self->request(other, timeout, hello_atom::value, st.core->me(), nonce)
    .then(
      [=](member_info& them, std::string& their_nonce, std::string& proof) {
        if (!pending->done) return; // its connection was lost
        auto& st = self->state;
        auto mine = st.auth->answer(
          handshake_party{them, caf::to_string(other.node())}, nonce, their_nonce, proof,
          self->state.members->name_taken(them.name, other.address()));
        if (!mine) {
          log(self, "refused node '" + them.name + "': " + describe(mine.error()));
          finish(std::move(mine.error()));
          return;
        }
        // A member from now on: what we broadcast after the join message
        // reaches it after that message, so its count starts where we say.
        auto keys = mine->keys;
        bool was_lost = st.core->lost().count(them.name) > 0;
        // It hears our join, sent now, before it admits us (a member from
        // before keeps its echo until the answer shows it took the join).
        auto join_sent = st.setup.time_source->now();
        bool was_new = add_member(self, them, other, handshake_role::initiator,
                                  std::move(mine->keys), join_sent);
        auto next = st.core->next_seq();
        self
          ->request(other, timeout, join_atom::value, st.core->me(), nonce, their_nonce,
                    std::move(mine->proof), next,
                    first_tag(keys, link_message::join, number_digest(next)))
          .then(
            [=](std::vector<member_info>& others, uint64_t their_next, link_tag& tag) {
              if (!pending->done) return; // its connection was lost
              auto& st = self->state;
              // A forged answer (CAF matches an answer by its request's id
              // alone) could have us skip its invalidations or join others.
              if (!check_first_tag(keys, link_message::join_reply,
                                   members_digest(others, their_next), tag)) {
                join_failed(self, them, other, was_new, was_lost);
                count_unauthenticated(self, "an answer to our join claiming to come "
                                            "from '" +
                                              them.name + "' without a valid link MAC");
                finish(make_error(errc::invalid_option,
                                  "the answer of '" + them.name + "' was not authentic"));
                return;
              }
              if (st.members->took(them.name, other.address(), join_sent,
                                   st.setup.time_source->now()))
                renew_lease(self);
              if (st.core->expect(them.name, them.incarnation, their_next))
                repair(self, "'" + them.name + "' sent invalidations we never received");
              auto told = st.members->to_join(std::move(others), st.core->me().name);
              if (told.ignored > 0) {
                st.core->counters.bad_messages += told.ignored;
                log(self, "ignored " + std::to_string(told.ignored) +
                            " of the members '" + them.name +
                            "' listed: too many, or names too long");
              }
              for (auto& o : told.join) {
                // Until we have joined it, our synchronous calls name it as
                // not answered: it does not know us, so it may serve what
                // they invalidate (a member we cannot reach, though they can).
                st.core->member_lost(o.name);
                join_member(self, std::move(o));
              }
              finish(caf::none);
            },
            [=](caf::error& err) {
              if (!pending->done) return; // its connection was lost (see on_down)
              join_failed(self, them, other, was_new, was_lost);
              log(self, "'" + them.name + "' refused us: " + describe(err));
              finish(err);
            });
      },
      [=](caf::error& err) {
        if (pending->done) finish(std::move(err));
      });
}

} // namespace

void note_name_refusal(self_ptr self, const std::string& by, bool refused) {
  auto& st = self->state;
  if (!refused) {
    if (st.refused_our_name.erase(by) > 0 && st.refused_our_name.empty())
      renew_lease(self);
    return;
  }
  if (!st.refused_our_name.insert(by).second) return;
  log(self, "'" + by + "' refused us: another node named '" + st.core->me().name +
              "' is a member there; this node serves no hits until it can join (stop "
              "it, or give it a name of its own)");
  // Another process took our name over while we were frozen or cut off: the
  // others invalidate it, not us, and would not even count us as not
  // answered. Loads still go to the store.
  if (st.setup.lease) st.setup.lease->limit_to(st.setup.time_source->now());
}

// Connects to `host:port` without blocking a worker (the middleman's actor
// does the connecting), then runs the handshake; one whose connection was
// lost is tried again, up to `attempts` in all.
void connect(self_ptr self, const std::string& host, uint16_t port,
             std::function<void(caf::error)> done, int attempts) {
  auto& sys = self->home_system();
  auto mm = self->state.setup.tls ? sys.openssl_manager().actor_handle()
                                  : sys.middleman().actor_handle();
  self->request(mm, self->state.setup.join_timeout, caf::connect_atom::value, host, port)
    .then(
      [=](const caf::node_id& nid, caf::strong_actor_ptr& h,
          const std::set<std::string>& ifs) {
        // The middleman's answer, not another node's guess at its request id
        // (local_reply.hpp): a forged "you reached yourself" stopped the
        // reconnecting to a lost member for good.
        if (!answered_by(self, mm)) {
          done(make_error(errc::timeout, "a forged answer to connecting to " + host +
                                           ":" + std::to_string(port)));
          return;
        }
        if (nid == self->node()) { // we reached ourselves (a seed list may name us)
          done(caf::none);
          return;
        }
        if (!h || !self->home_system().assignable<peer_actor>(ifs)) {
          done(make_error(errc::invalid_option,
                          host + ":" + std::to_string(port) + " is not a karlton node"));
          return;
        }
        // A refusal for our name, and a join after it, by the node there.
        auto key = host + ":" + std::to_string(port);
        auto noted = [self, key, done](caf::error err) {
          if (!err || err == errc::name_taken) note_name_refusal(self, key, bool{err});
          done(std::move(err));
        };
        std::function<void()> retry;
        if (attempts > 1)
          retry = [=] {
            log(self, "lost the connection to " + host + ":" + std::to_string(port) +
                        " during the join handshake; trying again");
            connect(self, host, port, done, attempts - 1);
          };
        handshake(self, caf::actor_cast<peer_actor>(std::move(h)), noted,
                  std::move(retry));
      },
      [=](caf::error& err) {
        done(make_error(errc::timeout, "cannot reach " + host + ":" +
                                         std::to_string(port) + ": " +
                                         self->system().render(err)));
      });
}

// Joins a member we heard of or lost; on failure, tries again later. One
// attempt at a time per name (see member_table's reconnection).
void join_member(self_ptr self, member_info target, uint64_t retry_of) {
  if (!self->state.members->begin_attempt(target, retry_of)) return;
  auto host = target.host;
  auto port = target.port;
  connect(self, host, port, [self, target = std::move(target)](caf::error err) {
    auto& members = *self->state.members;
    if (!err || members.contains(target.name)) {
      members.reached(target.name);
      return;
    }
    auto retry = members.attempt_failed(target);
    if (!retry) return;
    if (retry->first)
      log(self, "cannot reach '" + target.name + "', retrying: " + describe(err));
    self->delayed_send(self, caf::timespan{retry->wait}, join_atom::value,
                       this_process_token(), std::move(retry->info), retry->chain);
  });
}

void on_down(self_ptr self, const caf::down_msg& dm) {
  auto& st = self->state;
  // The handshakes through that connection end: out of the table first, so
  // that `lose_member` lets go of our monitor of it, and told last, once the
  // table is settled (a retry starts another).
  auto [first, last] = st.handshakes.equal_range(dm.source);
  std::vector<std::shared_ptr<peer_actor_state::pending_handshake>> ended;
  for (auto i = first; i != last; ++i)
    ended.push_back(i->second);
  st.handshakes.erase(first, last);
  if (auto m = st.members->remove_by_address(dm.source))
    lose_member(self, *m, self->system().render(dm.reason));
  for (auto& pending : ended)
    pending->end(
      make_error(errc::timeout, "the connection was lost during the join handshake"),
      true);
}

void drop_silent_members(self_ptr self, clock::time_point now) {
  auto& st = self->state;
  for (auto& name : st.members->silent(now, st.setup.member_timeout))
    if (auto m = st.members->remove(name))
      lose_member(self, *m, "silent for longer than the member timeout");
}

caf::result<member_info, std::string, std::string>
answer_hello(self_ptr self, const caf::strong_actor_ptr& sender, const member_info& from,
             const std::string& nonce) {
  auto& st = self->state;
  auto reply = st.auth->hello(
    sender_key(sender), handshake_party{from, caf::to_string(sender->node())}, nonce,
    st.members->name_taken(from.name, sender->address()), st.setup.time_source->now());
  if (!reply) {
    log_refusal(self, reply.error());
    return std::move(reply.error());
  }
  return {st.core->me(), std::move(reply->nonce), std::move(reply->proof)};
}

caf::result<std::vector<member_info>, uint64_t, link_tag>
admit(self_ptr self, const caf::strong_actor_ptr& sender, const member_info& from,
      const std::string& their_nonce, const std::string& my_nonce,
      const std::string& proof, uint64_t next_seq, const link_tag& tag) {
  auto& st = self->state;
  auto joined = st.auth->join(
    sender_key(sender), handshake_party{from, caf::to_string(sender->node())},
    their_nonce, my_nonce, proof, st.members->name_taken(from.name, sender->address()),
    st.setup.time_source->now());
  if (!joined) {
    log_refusal(self, joined.error());
    return std::move(joined.error());
  }
  auto& keys = joined->keys;
  // The proof covers the identities and nonces; the tag covers `next_seq`,
  // which a host that saw the proof could otherwise change in a copy.
  if (!check_first_tag(keys, link_message::join, number_digest(next_seq), tag)) {
    count_unauthenticated(self, "a join of '" + from.name +
                                  "' whose sequence number has no valid link MAC");
    return make_error(errc::invalid_option, "a join without a valid link MAC");
  }
  if (st.core->expect(from.name, from.incarnation, next_seq))
    repair(self, "'" + from.name + "' sent invalidations we never received");
  auto others = st.members->others_than(from.name);
  auto reply_tag = first_tag(keys, link_message::join_reply,
                             members_digest(others, st.core->next_seq()));
  // The last of ours it took before this reply was the hello's answer.
  add_member(self, from, caf::actor_cast<peer_actor>(sender), handshake_role::responder,
             std::move(keys), joined->opened);
  return {std::move(others), st.core->next_seq(), std::move(reply_tag)};
}

void leave(self_ptr self) {
  auto& st = self->state;
  // Joins still under way end here, and are not tried again.
  auto joining = std::move(st.handshakes);
  st.handshakes.clear();
  for (auto& entry : joining)
    entry.second->end(make_error(errc::shut_down, "this node left the cluster"));
  // With where our numbering stands: a member we withheld batches from
  // (flow control) sees the gap and repairs, though we left cleanly.
  auto next = st.core->next_seq();
  auto digest = number_digest(next);
  for (auto& name : st.members->names()) {
    auto* m = st.members->find_mutable(name);
    self->demonitor(m->handle.address());
    self
      ->request(m->handle, caf::infinite, leave_atom::value, next,
                m->link.seal(link_message::leave, digest).tag)
      .then([](caf::ok_atom) {});
  }
  st.members->clear();
}

bool member_left(self_ptr self, const caf::strong_actor_ptr& sender, uint64_t next_seq,
                 const link_tag& tag) {
  auto& st = self->state;
  // Not a member (any more): nothing to do. A member's leave must carry its
  // link MAC: a forged one would stop the reconnection and the repair.
  auto* claimed = st.members->find_by_address(sender->address());
  if (!claimed) return true;
  if (!claimed->link.open(link_message::leave, number_digest(next_seq), tag)) {
    count_unauthenticated(self, "a leave claiming to come from '" + claimed->info.name +
                                  "' without a valid link MAC (forged or replayed)");
    return false;
  }
  auto m = st.members->remove_by_address(sender->address());
  auto& who = m->info;
  log(self, "member left: " + who.name + " (" + std::to_string(st.members->size() + 1) +
              " nodes)");
  unwatch(self, m->handle);
  st.core->member_left(who.name);
  if (st.core->left(who.name, who.incarnation, next_seq))
    repair(self, "'" + who.name + "' left; invalidations it sent went missing");
  return true;
}

caf::error forget_member(self_ptr self, const std::string& name) {
  auto& st = self->state;
  if (name.size() > max_node_name_bytes) // no member's is: nothing to echo back
    return make_error(errc::invalid_option, "a node name is at most " +
                                              std::to_string(max_node_name_bytes) +
                                              " bytes");
  if (st.members->contains(name))
    return make_error(errc::invalid_option,
                      "'" + name +
                        "' is a member: it answers, so it cannot be forgotten "
                        "(a node that stops cleanly leaves by itself)");
  if (st.core->lost().count(name) == 0 && !st.members->reconnecting(name))
    return make_error(errc::not_found, "no lost member is named '" + name + "'");
  // As if it had left: it serves nothing any more, so nobody waits for it.
  // Should it come back after all, its handshake makes it a member again.
  st.members->forget(name);
  st.core->member_left(name);
  log(self, "forgot '" + name + "': no longer waited for nor reconnected to");
  return {};
}

} // namespace karlton::peer_detail

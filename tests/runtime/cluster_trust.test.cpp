// What a node may trust of the others: a clean leave still shows a gap in
// the numbering (rule 6), flow control bounds what a slow member holds
// unapplied while its origin runs flat out, and a member's messages count
// only with its link MAC (forged or replayed ones are ignored, also when two
// nodes shook hands each way). Nodes are runtimes in one process over
// loopback TCP; the slow member is a peer actor in front of a shard double
// that applies at a fixed rate. Waits are bounded polls.
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <caf/all.hpp>
#include <caf/io/middleman.hpp>

#include "actors/cluster_auth.hpp"
#include "actors/link_auth.hpp"
#include "actors/peer_actor.hpp"
#include "support/eventually.hpp"
#include "support/log_lines.hpp"
#include "support/must.hpp"
#include "support/test_nodes.hpp"
#include <karlton/messages/errors.hpp>
#include <karlton/runtime/runtime.hpp>

using namespace karlton;
using namespace std::chrono_literals;
using karlton::testing::eventually;
using karlton::testing::log_lines;
using karlton::testing::must;
using karlton::testing::node_options;
using karlton::testing::users_options;

TEST_CASE("a clean leave after withheld invalidations makes the receiver repair",
          "[cluster][leave]") {
  log_lines log;
  runtime receiver;
  must(receiver.start_cluster(node_options("receiver", log)));
  auto users = must(receiver.create_cache(users_options(receiver, distribution::async)));
  REQUIRE(must(users.get_or_load("k")).str() == "v1");
  // The sender may have one invalidation unapplied at the receiver, so its
  // batch of two is withheld. Its heartbeat, which would show the gap, is
  // far off: only its leave can tell.
  runtime sender;
  auto o = node_options("sender", log);
  o.max_unacked = 1;
  o.heartbeat = 10min;
  o.read_lease = 20min;
  o.member_timeout = 30min;
  must(sender.start_cluster(o));
  REQUIRE_FALSE(sender.join("127.0.0.1", receiver.cluster_port()));
  auto theirs = must(sender.create_cache(users_options(sender, distribution::async, 1)));
  REQUIRE_FALSE(theirs.put_many({{"a", "1"}, {"k", "2"}}));
  REQUIRE(eventually([&] { return must(sender.cluster_stats()).batches_withheld >= 1; }));
  CHECK(must(users.contains("k"))); // it never heard of the put
  sender.shutdown();
  CHECK(eventually([&] { return must(receiver.members()).empty(); }));
  // Rule 6: the leave says where the sender's numbering stood.
  CHECK(eventually([&] { return !must(users.contains("k")); }));
  auto s = must(receiver.cluster_stats());
  CHECK(s.gaps >= 1);
  CHECK(s.repairs >= 1);
  CHECK(log.contains("member left: sender"));
}

namespace {

// What the slow shard double did, read by the test while it runs.
struct slow_counts {
  std::atomic<uint64_t> queued{0};     // keys received, not yet applied
  std::atomic<uint64_t> max_queued{0}; // the most ever queued at once
  std::atomic<uint64_t> applied{0};    // keys applied
  std::atomic<uint64_t> clears{0};     // repairs (clear everything)
};

struct slow_shard_state {
  struct job {
    caf::typed_response_promise<uint64_t> promise;
    uint64_t keys; // left to apply; 0: a clear
  };
  std::deque<job> jobs;
  bool ticking = false;
  static inline const char* name = "test.slow_shard";
};

// A shard that applies invalidations from other nodes at `per_tick` keys
// every 10 ms (a clear costs as much as a key), answering each request once
// applied: a node whose shards are slower than its origin, while its peer
// actor stays quick to answer heartbeats.
caf::behavior slow_shard(caf::stateful_actor<slow_shard_state>* self,
                         std::shared_ptr<slow_counts> counts, uint64_t per_tick) {
  auto enqueue = [self, counts](uint64_t keys) {
    auto rp = self->make_response_promise<uint64_t>();
    self->state.jobs.push_back({rp, keys});
    auto now = counts->queued += keys;
    if (now > counts->max_queued) counts->max_queued = now;
    if (!self->state.ticking) {
      self->state.ticking = true;
      self->delayed_send(self, 10ms, tick_atom::value, uint64_t{0});
    }
    return rp;
  };
  return {
    [=](invalidate_atom, std::vector<std::string>& keys) -> caf::result<uint64_t> {
      return enqueue(keys.size());
    },
    [=](invalidate_atom) -> caf::result<uint64_t> { return enqueue(0); },
    [=](repair_atom) -> caf::result<uint64_t> {
      ++counts->clears;
      return enqueue(0);
    },
    [=](tick_atom, uint64_t) {
      auto& st = self->state;
      uint64_t budget = per_tick;
      while (!st.jobs.empty() && budget > 0) {
        auto& j = st.jobs.front();
        auto n = std::min(budget, j.keys);
        budget -= std::max<uint64_t>(n, 1);
        j.keys -= n;
        counts->queued -= n;
        counts->applied += n;
        if (j.keys > 0) break; // a large job: it goes on next tick
        j.promise.deliver(uint64_t{0});
        st.jobs.pop_front();
      }
      st.ticking = !st.jobs.empty();
      if (st.ticking) self->delayed_send(self, 10ms, tick_atom::value, uint64_t{0});
    },
  };
}

} // namespace

TEST_CASE("a local-only message without this process's token is ignored and counted",
          "[cluster][trust]") {
  log_lines log;
  runtime rt;
  peer_setup ps;
  ps.me = member_info{"victim", "127.0.0.1", 0, 42};
  ps.secret = "secret";
  ps.lease = std::make_shared<read_lease>();
  ps.time_source = rt.time_source();
  ps.log = log.sink();
  auto victim = rt.system().spawn(peer, ps);
  // Sent from the victim's own process: CAF delivers a message that a host
  // forged, claiming to come from an actor of the victim's node, just so.
  // Only the token tells them apart.
  local_token forged{this_process_token().value + 1};
  caf::scoped_actor self{rt.system()};
  self->send(victim, heartbeat_atom::value, forged);
  self->send(victim, broadcast_atom::value, forged,
             std::vector<invalidation>{
               invalidation{invalidation_kind::clear, "users", {}, {}, 0}});
  bool left = false, synced = false;
  self->request(victim, 5s, leave_atom::value, forged)
    .receive([&](caf::ok_atom) { left = true; }, [](caf::error&) {});
  self->request(victim, 5s, sync_atom::value, forged)
    .receive([&](std::vector<std::string>&) { synced = true; }, [](caf::error&) {});
  CHECK_FALSE(left);
  CHECK_FALSE(synced);
  // Nor do the queries answer (the stats carry 256 KiB of delays).
  bool answered = false;
  self->request(victim, 5s, peer_stats_atom::value, forged)
    .receive([&](peer_stats&) { answered = true; }, [](caf::error&) {});
  self->request(victim, 5s, members_atom::value, forged)
    .receive([&](std::vector<member_info>&) { answered = true; }, [](caf::error&) {});
  CHECK_FALSE(answered);
  peer_stats s;
  self->request(victim, 5s, peer_stats_atom::value, this_process_token())
    .receive([&](peer_stats& x) { s = x; },
             [](caf::error& e) { CHECK(describe(e) == ""); });
  CHECK(s.unauthenticated_messages == 6);
  CHECK(s.broadcasts_sent == 0);
  // With the token, the same messages count.
  self->send(victim, broadcast_atom::value, this_process_token(),
             std::vector<invalidation>{
               invalidation{invalidation_kind::clear, "users", {}, {}, 0}});
  self->request(victim, 5s, peer_stats_atom::value, this_process_token())
    .receive([&](peer_stats& x) { s = x; },
             [](caf::error& e) { CHECK(describe(e) == ""); });
  CHECK(s.unauthenticated_messages == 6);
  CHECK(s.broadcasts_sent == 1);
  caf::anon_send(victim, stop_atom::value, this_process_token());
}

TEST_CASE("a member's batch or leave forged by a host without its link key is ignored "
          "and counted",
          "[cluster][trust]") {
  log_lines log;
  runtime victim;
  must(victim.start_cluster(node_options("victim", log)));
  auto users = must(victim.create_cache(users_options(victim, distribution::async)));
  runtime member;
  must(member.start_cluster(node_options("member", log)));
  REQUIRE_FALSE(member.join("127.0.0.1", victim.cluster_port()));
  REQUIRE(eventually([&] { return must(victim.members()).size() == 1; }));
  auto real = must(victim.members()).front();
  REQUIRE(must(users.get_or_load("k")).str() == "v1");
  // The attacker: an actor system of its own, without the secret, that
  // reaches both nodes' ports. It sends as the member's actor: its BASP
  // writes the member's node and actor as the source, and the victim's takes
  // them from the message, so to the victim it comes from the member's
  // handle (README, Limits, before the link MAC).
  runtime attacker;
  auto& sys = attacker.system();
  auto to_victim = caf::actor_cast<caf::actor>(
    must(sys.middleman().remote_actor<peer_actor>("127.0.0.1", victim.cluster_port())));
  auto as_member = caf::actor_cast<caf::actor>(
    must(sys.middleman().remote_actor<peer_actor>("127.0.0.1", member.cluster_port())));
  invalidation_batch forged;
  forged.origin = real.name;
  forged.incarnation = real.incarnation;
  forged.items.push_back(invalidation{invalidation_kind::key, "users", "k", {}, 0});
  // A MAC of the right size under no key it has, at counters far ahead.
  caf::send_as(as_member, to_victim, batch_atom::value, forged,
               link_tag{1000, std::string(32, 'x')});
  caf::send_as(as_member, to_victim, leave_atom::value, uint64_t{0},
               link_tag{1001, std::string(32, 'x')});
  REQUIRE(eventually(
    [&] { return must(victim.cluster_stats()).unauthenticated_messages >= 2; }));
  CHECK(must(users.contains("k")));
  CHECK(must(victim.members()).size() == 1);
  // The victim's refusals went to the member, which ignored them (CAF's
  // default error handler would have stopped its peer actor).
  CHECK(eventually([&] { return must(member.cluster_stats()).bad_messages == 2; }));
  CHECK(must(member.members()).size() == 1);
  auto s = must(victim.cluster_stats());
  CHECK(s.unauthenticated_messages == 2);
  CHECK(s.repairs == 0);
  CHECK(s.invalidations_received == 0);
  // The member's own messages still count: its erase reaches the victim.
  auto theirs = must(member.create_cache(users_options(member, distribution::sync, 1)));
  REQUIRE(must(theirs.erase("k")) == false); // not cached there
  CHECK_FALSE(must(users.contains("k")));
  CHECK(log.contains("without a valid link MAC"));
}

TEST_CASE("a member's batch or leave replayed is ignored and counted",
          "[cluster][trust]") {
  log_lines log;
  runtime victim;
  must(victim.start_cluster(node_options("victim", log)));
  auto users = must(victim.create_cache(users_options(victim, distribution::async)));
  REQUIRE(must(users.get_or_load("k")).str() == "v1");
  // The test is the member: it knows the secret and shakes hands itself.
  runtime tester;
  auto& sys = tester.system();
  auto to_victim =
    must(sys.middleman().remote_actor<peer_actor>("127.0.0.1", victim.cluster_port()));
  caf::scoped_actor self{sys};
  auto fail = [](caf::error& e) { FAIL(describe(e)); };
  member_info me{"tester", "127.0.0.1", 1, 7};
  handshake_state hs{"secret", handshake_party{me, caf::to_string(sys.node())}, 5s};
  // A join handshake as initiator, numbering our next invalidation `next`:
  // the keys of the new link.
  auto shake = [&](uint64_t next) {
    auto nonce = must(hs.start());
    handshake_state::answered mine;
    std::string theirs;
    self->request(to_victim, 5s, hello_atom::value, me, nonce)
      .receive(
        [&](member_info& them, std::string& their_nonce, std::string& proof) {
          mine = must(hs.answer(handshake_party{them, caf::to_string(to_victim.node())},
                                nonce, their_nonce, proof, false));
          theirs = their_nonce;
        },
        fail);
    self
      ->request(to_victim, 5s, join_atom::value, me, nonce, theirs, mine.proof, next,
                first_tag(mine.keys, link_message::join, number_digest(next)))
      .receive([](std::vector<member_info>&, uint64_t, link_tag&) {}, fail);
    return mine.keys;
  };
  peer_link link;
  link.established(handshake_role::initiator, shake(0));
  REQUIRE(must(victim.members()).size() == 1);
  invalidation_batch b;
  b.origin = me.name;
  b.incarnation = me.incarnation;
  b.items.push_back(invalidation{invalidation_kind::key, "users", "k", {}, 0});
  auto sealed = link.seal(link_message::batch, batch_digest(b));
  auto send = [&] {
    bool acked = false;
    self->request(to_victim, 5s, batch_atom::value, b, sealed.tag)
      .receive([&](caf::ok_atom, std::string& ack) { acked = same_mac(ack, sealed.ack); },
               [](caf::error&) {});
    return acked;
  };
  CHECK(send()); // applied, and acknowledged with the ack's MAC
  CHECK_FALSE(must(users.contains("k")));
  REQUIRE(must(users.get_or_load("k")).str() == "v1");
  CHECK_FALSE(send()); // the same message again: refused, the key stays
  CHECK(must(users.contains("k")));
  CHECK(must(victim.cluster_stats()).unauthenticated_messages == 1);
  // Our leave counts once; replayed after we joined again (a new link), it
  // is refused and we stay a member.
  auto leave = link.seal(link_message::leave, number_digest(1)).tag;
  auto leave_with = [&](const link_tag& tag) {
    bool ok = false;
    self->request(to_victim, 5s, leave_atom::value, uint64_t{1}, tag)
      .receive([&](caf::ok_atom) { ok = true; }, [](caf::error&) {});
    return ok;
  };
  CHECK(leave_with(leave));
  CHECK(must(victim.members()).empty());
  link = peer_link{};
  link.established(handshake_role::initiator, shake(1));
  REQUIRE(must(victim.members()).size() == 1);
  CHECK_FALSE(leave_with(leave));
  CHECK(must(victim.members()).size() == 1);
  auto s = must(victim.cluster_stats());
  CHECK(s.unauthenticated_messages == 2);
  CHECK(s.gaps == 0);
}

TEST_CASE("two nodes that join each other at once keep authenticating each other's "
          "messages",
          "[cluster][trust]") {
  // Each side completes two handshakes with the other, one per role, in an
  // order neither controls: both links must stay valid (see peer_link).
  log_lines log;
  runtime a, b;
  must(a.start_cluster(node_options("a", log)));
  must(b.start_cluster(node_options("b", log)));
  auto users_a = must(a.create_cache(users_options(a, distribution::sync)));
  auto users_b = must(b.create_cache(users_options(b, distribution::sync)));
  for (int round = 0; round < 5; ++round) {
    std::thread other{[&] { CHECK_FALSE(b.join("127.0.0.1", a.cluster_port())); }};
    CHECK_FALSE(a.join("127.0.0.1", b.cluster_port()));
    other.join();
    REQUIRE(must(users_a.get_or_load("k")).str() == "v1");
    REQUIRE(must(users_b.get_or_load("k")).str() == "v1");
    REQUIRE(must(users_a.erase("k")));
    CHECK_FALSE(must(users_b.contains("k")));
    REQUIRE(must(users_b.get_or_load("k")).str() == "v1");
    REQUIRE(must(users_b.erase("k")));
    CHECK_FALSE(must(users_a.contains("k")));
  }
  for (auto* rt : {&a, &b}) {
    auto s = must(rt->cluster_stats());
    CHECK(s.unauthenticated_messages == 0);
    CHECK(s.sync_timeouts == 0);
    CHECK(must(rt->members()).size() == 1);
  }
}

TEST_CASE("a slow member holds at most max-unacked invalidations while its origin runs "
          "flat out for 60 s",
          "[cluster][flow][slow]") {
  log_lines log;
  // The slow node: a peer actor whose cache "users" is one slow shard
  // applying 5 keys per 10 ms (500/s).
  runtime slow_rt;
  auto counts = std::make_shared<slow_counts>();
  auto shard = slow_rt.system().spawn(slow_shard, counts, uint64_t{5});
  peer_setup ps;
  ps.me = member_info{"slow", "127.0.0.1", 0, 42};
  ps.secret = "secret";
  ps.heartbeat = 200ms;
  ps.read_lease = 500ms;
  ps.member_timeout = 1s;
  ps.lease = std::make_shared<read_lease>();
  ps.time_source = slow_rt.time_source();
  ps.log = log.sink();
  auto slow_peer = slow_rt.system().spawn(peer, ps);
  auto port = slow_rt.system().middleman().publish(slow_peer, 0, "127.0.0.1", true);
  REQUIRE(port);
  {
    caf::scoped_actor self{slow_rt.system()};
    self
      ->request(slow_peer, 5s, shards_atom::value, this_process_token(),
                std::string{"users"},
                std::vector<shard_actor>{caf::actor_cast<shard_actor>(shard)})
      .receive([](caf::ok_atom) {}, [](caf::error& e) { FAIL(describe(e)); });
  }
  // The origin may have 2,000 invalidations unapplied at a member, and
  // requests to it time out after 1 s: before the fix every timeout let
  // about 2,000 more through (4 times what the member applies meanwhile).
  constexpr uint64_t max_unacked = 2000;
  runtime origin;
  auto o = node_options("origin", log);
  o.max_unacked = max_unacked;
  o.heartbeat = 200ms;
  o.read_lease = 500ms;
  o.member_timeout = 1s;
  must(origin.start_cluster(o));
  REQUIRE_FALSE(origin.join("127.0.0.1", *port));
  auto users = must(origin.create_cache(users_options(origin, distribution::async, 1)));
  auto start = std::chrono::steady_clock::now();
  uint64_t erased = 0, failed = 0;
  while (std::chrono::steady_clock::now() - start < 60s)
    for (int i = 0; i < 1000; ++i, ++erased)
      failed += !users.erase("k" + std::to_string(erased % 100'000));
  CHECK(failed == 0);
  auto origin_stats = must(origin.cluster_stats());
  INFO(erased << " erased, " << counts->applied << " applied, " << counts->clears
              << " clears there, most queued " << counts->max_queued << ", "
              << origin_stats.batches_withheld << " batches withheld");
  // The bound: what the origin sent and the member did not apply yet.
  CHECK(counts->max_queued <= max_unacked);
  // The premise: the origin sent more than the member could apply. Idle, it
  // erases about 130 times what the member applies; other work on the same
  // 2 cores once cut that to 9.7 times (167,000 erased in 60 s), which still
  // filled the member's window, as `batches_withheld` below shows.
  CHECK(erased > 2 * counts->applied);
  CHECK(counts->applied > 0);
  CHECK(origin_stats.batches_withheld >= 1);
  // It repaired from the gaps instead of applying what it never got.
  CHECK(counts->clears >= 1);
  CHECK(must(origin.members()).size() == 1); // never lost: it kept answering
  origin.shutdown();
  caf::anon_send(slow_peer, stop_atom::value, this_process_token());
  caf::anon_send_exit(shard, caf::exit_reason::user_shutdown);
}

TEST_CASE("a node with a short cluster secret warns that it can be guessed offline",
          "[cluster][trust]") {
  // Any host that reaches the port gets, for one hello, an HMAC over values
  // it knows: a review recovered "s3cret" from a word list in half a second.
  log_lines weak, strong;
  runtime a, b;
  must(a.start_cluster(node_options("a", weak))); // "secret": 6 bytes
  auto o = node_options("b", strong);
  o.secret = std::string(min_strong_secret_bytes, 'k');
  must(b.start_cluster(o));
  CHECK(weak.contains("test guesses of it offline"));
  CHECK_FALSE(strong.contains("test guesses of it offline"));
}

TEST_CASE("a node refused because a live member has its name serves no hits",
          "[cluster][trust]") {
  // Say "m" froze, a restart of "m" joined meanwhile, and the old one runs
  // again: v refuses it for good. Alone, it held its lease for ever (nobody
  // left to hear from) and served what v's synchronous puts, answered ok by
  // the new "m", had replaced (a review of 7 Dec).
  log_lines log;
  runtime v, m, ghost;
  must(v.start_cluster(node_options("v", log)));
  must(m.start_cluster(node_options("m", log)));
  REQUIRE_FALSE(m.join("127.0.0.1", v.cluster_port()));
  auto at_v = must(v.create_cache(users_options(v, distribution::sync)));
  must(ghost.start_cluster(node_options("m", log)));
  auto at_ghost = must(ghost.create_cache(users_options(ghost, distribution::sync)));
  REQUIRE(must(at_ghost.get_or_load("k")).str() == "v1"); // alone: cached and served
  REQUIRE(must(at_ghost.get("k")).str() == "v1");
  CHECK(ghost.join("127.0.0.1", v.cluster_port()) == errc::name_taken);
  REQUIRE_FALSE(at_v.put("k", "v2"));   // answered by the new "m"
  CHECK_FALSE(must(at_ghost.get("k"))); // before: v1
  CHECK(log.contains("serves no hits until it can join"));
}

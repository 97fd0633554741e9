// What CAF itself delivers to the peer from any host that reaches the
// cluster port, below the link MAC (rule 9): exit messages, down messages
// about actors that run, and answers to the peer's own requests with a
// guessed id and any sender, or none. The peer's mailbox refuses the first
// two (actors/peer_mailbox.cpp); an answer counts only from the actor asked,
// or as CAF's bounce once that actor is gone (actors/local_reply.hpp). Nodes
// are runtimes in one process over loopback TCP; waits are bounded polls.
#include <catch2/catch.hpp>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <caf/all.hpp>
#include <caf/io/middleman.hpp>

#include "actors/local_reply.hpp"
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

namespace {

caf::mailbox_element_ptr element(caf::message content) {
  return caf::make_mailbox_element(nullptr, caf::make_message_id(), {},
                                   std::move(content));
}

// What the probe below saw: each request it made (the id to answer next),
// and how each answer was judged.
struct probe_counts {
  std::atomic<uint64_t> pending{0}; // response id of the latest request
  std::atomic<int> asks{0};
  std::atomic<int> forged{0};
  std::atomic<int> answered{0};
};

// Asks `asked` and, as the peer does, asks again when the answer is not
// `asked`'s.
void ask(caf::event_based_actor* self, const caf::actor& asked, probe_counts* c) {
  auto judge = [=] {
    if (answered_by(self, asked)) {
      ++c->answered;
    } else {
      ++c->forged;
      ask(self, asked, c);
    }
  };
  auto h = self->request(asked, caf::infinite, caf::get_atom::value);
  c->pending = h.id().integer_value(); // the id its answer carries
  ++c->asks;
  h.then([=](caf::ok_atom) { judge(); }, [=](caf::error&) { judge(); });
}

} // namespace

TEST_CASE("the peer's mailbox refuses any exit message, and a down message about an "
          "actor that still runs",
          "[cluster][trust]") {
  runtime rt;
  auto& sys = rt.system();
  auto running = sys.spawn(
    [](caf::event_based_actor*, int) -> caf::behavior { return {[](int) {}}; }, 0);
  CHECK(forged_system_message(*element(
    caf::make_message(caf::exit_msg{running.address(), caf::exit_reason::kill}))));
  CHECK(forged_system_message(*element(caf::make_message(
    caf::exit_msg{running.address(), caf::exit_reason::user_shutdown}))));
  CHECK(forged_system_message(*element(caf::make_message(
    caf::down_msg{running.address(), caf::exit_reason::remote_link_unreachable}))));
  // The down message CAF sends once it has gone is genuine, also while a
  // handle keeps the actor's control block.
  caf::scoped_actor self{sys};
  self->monitor(running);
  caf::anon_send_exit(running, caf::exit_reason::user_shutdown);
  caf::down_msg real;
  self->receive([&](caf::down_msg& dm) { real = dm; });
  CHECK_FALSE(forged_system_message(*element(caf::make_message(real))));
  CHECK_FALSE(forged_system_message(*element(caf::make_message(1))));
}

TEST_CASE("exit and down messages from a host without the secret neither stop the peer "
          "nor lose it a member, and the runtime still stops it",
          "[cluster][trust]") {
  log_lines log;
  runtime victim;
  must(victim.start_cluster(node_options("victim", log)));
  auto users = must(victim.create_cache(users_options(victim, distribution::async, 1)));
  runtime member;
  must(member.start_cluster(node_options("member", log)));
  REQUIRE_FALSE(member.join("127.0.0.1", victim.cluster_port()));
  REQUIRE(eventually([&] { return must(victim.members()).size() == 1; }));
  REQUIRE(must(users.get_or_load("k")).str() == "v1");
  runtime attacker;
  auto& sys = attacker.system();
  auto to_victim = caf::actor_cast<caf::actor>(
    must(sys.middleman().remote_actor<peer_actor>("127.0.0.1", victim.cluster_port())));
  auto members_peer = caf::actor_cast<caf::actor>(
    must(sys.middleman().remote_actor<peer_actor>("127.0.0.1", member.cluster_port())));
  // An exit no handler may trap, and one CAF's default handler obeys.
  caf::anon_send_exit(to_victim, caf::exit_reason::kill);
  caf::anon_send_exit(to_victim, caf::exit_reason::user_shutdown);
  // "The member is gone" while it runs: the victim would drop it and repair.
  caf::anon_send(to_victim, caf::down_msg{members_peer.address(),
                                          caf::exit_reason::remote_link_unreachable});
  // An actor of the attacker links itself to the peer (CAF lets it), then
  // fails: CAF turns its end into exit messages to the peer.
  auto linked = sys.spawn(
    [](caf::event_based_actor* self, caf::actor target) -> caf::behavior {
      self->link_to(target);
      return {[=](int) { self->quit(caf::sec::runtime_error); }};
    },
    to_victim);
  caf::anon_send(linked, 1);
  auto refused = [&] {
    auto s = victim.cluster_stats();
    return s ? s->unauthenticated_messages : uint64_t{0};
  };
  // Two exits, the down, and two exits of the link: the actor's own to the
  // peer, and CAF's from its proxy at the victim, killed when it ended.
  CHECK(eventually([&] { return refused() == 5; }));
  auto s = must(victim.cluster_stats());
  CHECK(s.peers_lost == 0);
  CHECK(s.repairs == 0);
  CHECK(must(victim.members()).size() == 1);
  // The member's erase still reaches the victim, and is acknowledged.
  auto theirs = must(member.create_cache(users_options(member, distribution::sync, 1)));
  REQUIRE(must(theirs.erase("k")) == false); // not cached there
  CHECK_FALSE(must(users.contains("k")));
  // The runtime's own stop still works (an exit no longer would).
  victim.shutdown();
  CHECK(eventually([&] { return must(member.members()).empty(); }));
}

TEST_CASE("an answer to a request to a local actor counts only from that actor, or as "
          "CAF's bounce once it is gone",
          "[cluster][trust]") {
  // CAF matches an answer to its request by id alone. A host that reaches a
  // published actor can send it one with a guessed id, naming a proxy of any
  // node, an actor of this node CAF's registry knows, or no sender at all (a
  // routed BASP message with source 0). Each is tried here.
  auto c = std::make_shared<probe_counts>(); // outlives the probe's runtime
  runtime here;
  runtime there;
  // Holds every request until told to answer them all.
  auto asked = here.system().spawn(
    [](caf::event_based_actor* self, int) -> caf::behavior {
      auto held = std::make_shared<std::vector<caf::response_promise>>();
      return {
        [=](caf::get_atom) {
          held->push_back(self->make_response_promise());
          return held->back();
        },
        [=](caf::put_atom) {
          for (auto& rp : *held)
            rp.deliver(caf::ok_atom::value);
          held->clear();
        },
      };
    },
    0);
  auto probe = here.system().spawn(
    [](caf::event_based_actor* self, caf::actor asked, probe_counts* c) -> caf::behavior {
      return {[=](int) { ask(self, asked, c); }};
    },
    asked, c.get());
  // Stopped however the case ends: a runtime waits for actors it did not spawn.
  struct stop_at_exit {
    std::vector<caf::actor> actors;
    ~stop_at_exit() {
      for (auto& a : actors)
        caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
    }
  } stop{{probe, asked}};
  auto port = must(here.system().middleman().publish(probe, 0, "127.0.0.1"));
  auto proxy = must(there.system().middleman().remote_actor("127.0.0.1", port));
  auto answer_with = [&](caf::strong_actor_ptr sender, const caf::actor& to) {
    caf::actor_cast<caf::strong_actor_ptr>(to)->enqueue(
      std::move(sender), caf::message_id{c->pending.load()},
      caf::make_message(caf::ok_atom::value), nullptr);
  };
  caf::anon_send(probe, 1);
  REQUIRE(eventually([&] { return c->asks == 1; }));
  answer_with(nullptr, probe); // no sender, while `asked` runs
  REQUIRE(eventually([&] { return c->asks == 2; }));
  caf::scoped_actor stranger{there.system()};
  answer_with(caf::actor_cast<caf::strong_actor_ptr>(stranger), proxy); // through BASP
  REQUIRE(eventually([&] { return c->asks == 3; }));
  caf::scoped_actor neighbour{here.system()};
  answer_with(caf::actor_cast<caf::strong_actor_ptr>(neighbour), probe); // a local actor
  REQUIRE(eventually([&] { return c->asks == 4; }));
  CHECK(c->forged == 3);
  CHECK(c->answered == 0);
  caf::anon_send(asked, caf::put_atom::value);
  CHECK(eventually([&] { return c->answered == 1; }));
  // Gone: CAF bounces the next request with no sender, which counts.
  neighbour->monitor(asked);
  caf::anon_send_exit(asked, caf::exit_reason::user_shutdown);
  neighbour->receive([](caf::down_msg&) {});
  caf::anon_send(probe, 1);
  CHECK(eventually([&] { return c->answered == 2; }));
  CHECK(c->forged == 3);
}

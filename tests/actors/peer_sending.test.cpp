// The peer actor's bookkeeping of what a node sends, without actors: when to
// send (the first invalidation after an idle spell at once, later ones
// gathered while a batch is in flight), to whom (flow control) and
// synchronous calls (rule 7). Numbering and receiving are tested in
// peer_state.test.cpp.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "actors/peer_state.hpp"

using namespace karlton;

namespace {

member_info node(std::string name, uint64_t incarnation = 7) {
  return member_info{std::move(name), "127.0.0.1", 4000, incarnation};
}

std::vector<invalidation> keys(std::initializer_list<const char*> names) {
  std::vector<invalidation> out;
  for (auto n : names)
    out.push_back(invalidation{invalidation_kind::key, "users", n, {}, 0});
  return out;
}

} // namespace

// -- when to send ------------------------------------------------------------------

TEST_CASE("enqueue says when a batch is full", "[peer][batching]") {
  peer_state p{node("a"), 3};
  p.member_joined("b");
  REQUIRE(p.enqueue(keys({"k0"})) == peer_state::send_when::now);
  p.send_batch({"b"}, false); // in flight: what follows gathers
  CHECK(p.enqueue(keys({"k1", "k2"})) == peer_state::send_when::arm_timer);
  CHECK(p.enqueue(keys({"k3"})) == peer_state::send_when::now);
  CHECK(p.pending() == 3);
}

TEST_CASE("the first invalidation after an idle spell is sent at once, later ones "
          "gather while a batch is in flight and go out together once it is answered",
          "[peer][batching]") {
  using when = peer_state::send_when;
  peer_state p{node("a"), 100};
  p.member_joined("b");
  p.member_joined("c");
  // Idle: no waiting for the batch delay.
  REQUIRE(p.enqueue(keys({"k1"})) == when::now);
  auto first = p.send_batch({"b", "c"}, false);
  REQUIRE(first.to.size() == 2);
  CHECK(p.batches_in_flight() == 2);
  // In flight: the next ones wait, with one timer for all of them.
  CHECK(p.enqueue(keys({"k2"})) == when::arm_timer);
  CHECK(p.enqueue(keys({"k3"})) == when::later);
  CHECK(p.enqueue(keys({"k4", "k5"})) == when::later);
  CHECK(p.pending() == 4);
  CHECK_FALSE(p.acknowledged("b", first.to[0].second)); // c not yet
  CHECK(p.batches_in_flight() == 1);
  CHECK(p.acknowledged("c", first.to[1].second)); // the last: send now
  auto second = p.send_batch({"b", "c"}, false);
  CHECK(second.batch.first_seq == 1);
  CHECK(second.batch.items.size() == 4);
  CHECK(p.counters.batches_sent == 2);
  // A failed request is no longer in flight either; with nothing queued
  // there is nothing to send.
  CHECK_FALSE(p.acknowledged("b", second.to[0].second));
  CHECK_FALSE(p.not_acknowledged("c", second.to[1].second));
  CHECK(p.batches_in_flight() == 0);
  CHECK(p.enqueue(keys({"k6"})) == when::now); // idle again
}

TEST_CASE("the batch delay sends what gathers behind a batch never answered",
          "[peer][batching]") {
  using when = peer_state::send_when;
  peer_state p{node("a"), 100};
  p.member_joined("b");
  REQUIRE(p.enqueue(keys({"k1"})) == when::now);
  p.send_batch({"b"}, false);
  REQUIRE(p.enqueue(keys({"k2"})) == when::arm_timer);
  // The timer fires (the actor calls send_batch): sent though k1 is still
  // out, and the next invalidation starts a timer of its own.
  auto late = p.send_batch({"b"}, false);
  CHECK(late.batch.items.size() == 1);
  CHECK(late.to.size() == 1);
  CHECK(p.batches_in_flight() == 2);
  CHECK(p.enqueue(keys({"k3"})) == when::arm_timer);
  // A heartbeat takes the queue too, and is not in flight itself.
  auto beat = p.send_batch({"b"}, true);
  CHECK(beat.batch.items.size() == 1);
  CHECK(p.batches_in_flight() == 3);
  auto empty = p.send_batch({"b"}, true); // a heartbeat with nothing: not in flight
  REQUIRE(empty.to.size() == 1);
  CHECK(empty.batch.items.empty());
  CHECK(p.batches_in_flight() == 3);
  CHECK_FALSE(p.acknowledged("b", empty.to[0].second)); // answers nothing in flight
  CHECK(p.batches_in_flight() == 3);
}

TEST_CASE("a member lost, gone or joined again holds nothing back, and its late "
          "answers count no more",
          "[peer][batching]") {
  using when = peer_state::send_when;
  peer_state p{node("a"), 100};
  for (auto m : {"b", "c", "d"})
    p.member_joined(m);
  REQUIRE(p.enqueue(keys({"k1"})) == when::now);
  auto out = p.send_batch({"b", "c", "d"}, false);
  REQUIRE(out.to.size() == 3);
  CHECK(p.batches_in_flight() == 3);
  p.member_lost("b");
  p.member_left("c");
  p.member_joined("d"); // a new connection: the old one's requests are void
  CHECK(p.batches_in_flight() == 0);
  CHECK(p.enqueue(keys({"k2"})) == when::now);
  auto again = p.send_batch({"d"}, false);
  CHECK(p.batches_in_flight() == 1);
  CHECK(p.enqueue(keys({"k3"})) == when::arm_timer);
  // Answers from before d joined again neither count nor send.
  CHECK_FALSE(p.acknowledged("b", out.to[0].second));
  CHECK_FALSE(p.not_acknowledged("d", out.to[2].second));
  CHECK(p.batches_in_flight() == 1);
  CHECK(p.acknowledged("d", again.to[0].second));
}

TEST_CASE("a synchronous call is in flight like a batch and takes the queue with it",
          "[peer][batching][rule7]") {
  using when = peer_state::send_when;
  peer_state p{node("a"), 100};
  p.member_joined("b");
  p.enqueue(keys({"k1"}));
  p.send_batch({"b"}, false);
  REQUIRE(p.enqueue(keys({"k2"})) == when::arm_timer);
  auto call = p.start_sync({"b"}); // k2 goes with the call, not after it
  CHECK(call.out.batch.items.size() == 1);
  CHECK(p.pending() == 0);
  CHECK(p.batches_in_flight() == 2);
  // The call took what the timer ran for (the actor ignores that timer now).
  CHECK(p.enqueue(keys({"k3"})) == when::arm_timer);
  CHECK_FALSE(p.acknowledged("b", call.out.to[0].second)); // the first still out
  CHECK(p.batches_in_flight() == 1);
}

// -- sending: batches and synchronous calls -------------------------------------

TEST_CASE("a batch goes to every member it is not withheld from, a heartbeat to all",
          "[peer][flow]") {
  peer_state p{node("a"), 100, 3};
  p.member_joined("b");
  p.member_joined("c");
  CHECK(p.send_batch({"b", "c"}, false).to.empty()); // nothing queued: nothing sent
  p.enqueue(keys({"k1", "k2"}));
  auto first = p.send_batch({"b", "c"}, false);
  CHECK(first.batch.items.size() == 2);
  REQUIRE(first.to.size() == 2);
  p.acknowledged("b", first.to[0].second); // c did not answer yet: 2 outstanding
  p.enqueue(keys({"k3", "k4"}));
  auto second = p.send_batch({"b", "c"}, false);
  REQUIRE(second.to.size() == 1); // c would be 4 > max-unacked behind
  CHECK(second.to[0].first == "b");
  CHECK(second.batch.first_seq == 2);
  auto beat = p.send_batch({"b", "c"}, true);
  CHECK(beat.batch.items.empty());
  CHECK(beat.to.size() == 2); // an empty batch is never withheld
  CHECK(beat.beat_to.empty());
  CHECK(p.counters.batches_sent == 2);
  CHECK(p.counters.batches_withheld == 1);
}

TEST_CASE("a heartbeat that carries invalidations gives a member they are withheld "
          "from an empty batch after them, and batches follow it",
          "[peer][flow]") {
  peer_state p{node("a"), 100, 3};
  p.member_joined("b");
  p.member_joined("c");
  p.enqueue(keys({"k1"}));
  auto first = p.send_batch({"b", "c"}, false);
  REQUIRE(first.to.size() == 2);
  p.acknowledged("b", first.to[0].second);
  p.not_acknowledged("c", first.to[1].second); // timed out: behind
  // The beat: c sees the gap (it repairs), and its answer echoes our clock
  // (our read lease counts on it: it got nothing while it stayed behind).
  p.enqueue(keys({"k2"}));
  auto loaded = p.send_batch({"b", "c"}, true);
  REQUIRE(loaded.to.size() == 1);
  CHECK(loaded.to[0].first == "b");
  REQUIRE(loaded.beat_to.size() == 1);
  CHECK(loaded.beat_to[0].first == "c");
  CHECK(loaded.beat.items.empty());
  CHECK(loaded.beat.origin == "a");
  CHECK(loaded.beat.first_seq == loaded.batch.first_seq + 1);
  // What follows the beat leaves no gap of its own: c gets batches again
  // (within max-unacked), or under a steady stream it would repair on every
  // heartbeat and never catch up. It stays behind (sync calls name it)
  // until it answered everything after the beat.
  p.acknowledged("b", loaded.to[0].second);
  p.enqueue(keys({"k3"}));
  auto after = p.send_batch({"b", "c"}, false);
  CHECK(after.beat_to.empty()); // beats only on heartbeats
  REQUIRE(after.to.size() == 2);
  CHECK(after.to[1].first == "c");
  CHECK(after.batch.first_seq == loaded.beat.first_seq);
  CHECK(p.behind("c"));
  // Timed out again, it is slow: withheld until the next heartbeat, though
  // within max-unacked.
  p.not_acknowledged("c", after.to[1].second);
  p.enqueue(keys({"k4"}));
  auto again = p.send_batch({"b", "c"}, false);
  REQUIRE(again.to.size() == 1);
  CHECK(again.to[0].first == "b");
}

TEST_CASE("a heartbeat's beat goes with the last batch of a long queue, numbered after "
          "all of it",
          "[peer][flow]") {
  peer_state p{node("a"), 100, 3, 2}; // batches of at most 2
  p.member_joined("b");
  p.member_joined("c");
  p.enqueue(keys({"k1", "k2", "k3"}));
  auto first = p.send_batch({"b", "c"}, true);
  REQUIRE(first.to.size() == 2);
  p.acknowledged("b", first.to[0].second);   // c has 2 outstanding
  p.enqueue(keys({"k4", "k5", "k6", "k7"})); // k3 still queued: 5 in all
  auto cut = p.send_batch({"b", "c"}, true);
  CHECK(cut.batch.items.size() == 2);
  CHECK(cut.beat_to.empty());  // more is queued: a beat now would come before it
  REQUIRE(cut.to.size() == 1); // c would be 4 behind
  p.acknowledged("b", cut.to[0].second);
  auto rest = p.send_batch({"b", "c"}, true);
  CHECK(rest.batch.items.size() == 2);
  CHECK(p.pending() == 1);
  CHECK(rest.beat_to.empty());
  auto last = p.send_batch({"b", "c"}, true);
  CHECK(last.batch.items.size() == 1);
  REQUIRE(last.beat_to.size() == 1);
  CHECK(last.beat_to[0].first == "c");
  CHECK(last.beat.first_seq == last.batch.first_seq + 1); // after everything
}

TEST_CASE("a member a batch was withheld from is behind: a sync call names it until it "
          "answered all it was sent",
          "[peer][flow][rule7]") {
  peer_state p{node("a"), 100, 3};
  p.member_joined("b");
  p.enqueue(keys({"k1", "k2", "k3", "k4"}));
  CHECK(p.send_batch({"b"}, false).to.empty()); // 4 > max-unacked: withheld
  CHECK(p.behind("b"));
  auto call = p.start_sync({"b"}); // b would repair, not apply: not asked
  CHECK(call.out.to.empty());
  REQUIRE(call.answer);
  CHECK(*call.answer == std::vector<std::string>{"b"});
  // Its answer to a heartbeat (given once it repaired) says it caught up.
  auto beat = p.send_batch({"b"}, true);
  REQUIRE(beat.to.size() == 1);
  p.acknowledged("b", beat.to[0].second);
  CHECK_FALSE(p.behind("b"));
}

TEST_CASE("an answer to a batch sent before one was withheld leaves the member behind",
          "[peer][flow][rule7]") {
  // b has not seen the gap the withheld batch left when it answers the
  // earlier one: before, that answer cleared `behind`, and a sync call asked
  // b, which then only capped its TTLs under repair-ttl while the call
  // returned ok.
  peer_state p{node("a"), 100, 3};
  p.member_joined("b");
  p.enqueue(keys({"k1", "k2"}));
  auto first = p.send_batch({"b"}, false);
  REQUIRE(first.to.size() == 1);
  p.enqueue(keys({"k3", "k4"}));
  CHECK(p.send_batch({"b"}, false).to.empty()); // 2 + 2 > 3: withheld
  p.acknowledged("b", first.to[0].second);
  CHECK(p.behind("b"));
  auto beat = p.send_batch({"b"}, true); // shows b the gap
  REQUIRE(beat.to.size() == 1);
  p.acknowledged("b", beat.to[0].second);
  CHECK_FALSE(p.behind("b"));
}

TEST_CASE("without members a batch is dropped, since nobody holds what it invalidates",
          "[peer]") {
  peer_state p{node("a"), 100};
  p.enqueue(keys({"k1"}));
  auto out = p.send_batch({}, true);
  CHECK(out.to.empty());
  CHECK(p.pending() == 0);
  CHECK(p.counters.batches_sent == 0);
  CHECK(p.next_seq() == 1); // numbered all the same: a later member sees where we are
}

TEST_CASE("a sync call is answered once every member asked answered, naming the others",
          "[peer][rule7]") {
  peer_state p{node("a"), 100};
  for (auto m : {"b", "c", "d"})
    p.member_joined(m);
  p.member_lost("d");
  p.enqueue(keys({"k1"}));
  auto call = p.start_sync({"b", "c"});
  CHECK_FALSE(call.answer);
  CHECK(call.out.batch.items.size() == 1);
  REQUIRE(call.out.to.size() == 2);
  CHECK(p.open_syncs() == 1);
  CHECK_FALSE(p.sync_answered(call.id, "b", true));   // c still out
  auto answer = p.sync_answered(call.id, "c", false); // c timed out
  REQUIRE(answer);
  CHECK(*answer == std::vector<std::string>{"d", "c"}); // lost d, and c
  CHECK(p.open_syncs() == 0);
  CHECK(p.counters.sync_timeouts == 1);
  CHECK_FALSE(p.sync_answered(call.id, "b", true)); // late answers change nothing
}

TEST_CASE("a sync call everyone answers counts no timeout", "[peer][rule7]") {
  peer_state p{node("a"), 100};
  p.member_joined("b");
  auto call = p.start_sync({"b"}); // nothing queued: an empty batch still asks
  REQUIRE(call.out.to.size() == 1);
  auto answer = p.sync_answered(call.id, "b", true);
  REQUIRE(answer);
  CHECK(answer->empty());
  CHECK(p.counters.sync_timeouts == 0);
  CHECK(p.counters.batches_sent == 0);
}

TEST_CASE("a sync call with nobody to ask is answered at once", "[peer][rule7]") {
  peer_state p{node("a"), 100};
  auto alone = p.start_sync({});
  REQUIRE(alone.answer);
  CHECK(alone.answer->empty()); // no members: nobody may hold the old value
  CHECK(p.counters.sync_timeouts == 0);
  p.member_joined("b");
  p.member_lost("b");
  auto after_loss = p.start_sync({});
  REQUIRE(after_loss.answer);
  CHECK(*after_loss.answer == std::vector<std::string>{"b"});
  CHECK(p.counters.sync_timeouts == 1);
  CHECK(p.open_syncs() == 0);
}

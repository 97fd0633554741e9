// The peer actor's members without actors: which handle a member is reached
// through, who went silent, whom a joiner is told about and whom to join, and
// the reconnection backoff.
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "actors/peer_members.hpp"

using namespace karlton;
using namespace std::chrono_literals;

namespace {

// Stands in for an actor handle: two handles to one actor share an address.
struct fake_handle {
  std::string id;
  const std::string& address() const { return id; }
  bool operator==(const fake_handle& other) const { return id == other.id; }
};

using table = member_table<fake_handle>;
using tp = table::time_point;

member_info node(std::string name) {
  return member_info{std::move(name), "127.0.0.1", 4000, 7};
}

uint64_t ticks(table::duration d) {
  return static_cast<uint64_t>(d.count());
}

// A batch's tag sealed at `sent` on its sender's clock, echoing `echo` of ours.
link_tag stamps(table::duration sent, table::duration echo) {
  link_tag t;
  t.sent = ticks(sent);
  t.echo = ticks(echo);
  return t;
}

// A backoff step `step` with equal jitter: between half of it and all of it.
bool jittered(table::duration wait, table::duration step) {
  return wait >= step / 2 && wait <= step;
}

} // namespace

TEST_CASE("a member is new when it joins through another actor, not when it shakes "
          "hands again",
          "[peer][members]") {
  table t{200ms, 5s};
  CHECK(t.add(node("b"), {"actor-1"}, tp{1s}, tp{1s}));
  CHECK_FALSE(t.add(node("b"), {"actor-1"}, tp{2s}, tp{2s})); // the same connection
  CHECK(t.add(node("b"), {"actor-2"}, tp{3s}, tp{3s}));       // a new one: monitor it
  CHECK(t.size() == 1);
  CHECK(t.find("b")->handle.id == "actor-2");
}

TEST_CASE("a name is taken only by a member reached through another actor",
          "[peer][members]") {
  table t{200ms, 5s};
  t.add(node("b"), {"actor-1"}, tp{1s}, tp{1s});
  CHECK(t.name_taken("b", std::string{"actor-2"})); // an impostor, or a second run
  CHECK_FALSE(t.name_taken("b", std::string{"actor-1"}));
  CHECK_FALSE(t.name_taken("c", std::string{"actor-2"}));
}

TEST_CASE("a message counts only from the actor that passed the handshake",
          "[peer][members]") {
  table t{200ms, 5s};
  t.add(node("b"), {"actor-1"}, tp{1s}, tp{1s});
  CHECK_FALSE(t.heard_from("b", std::string{"actor-2"}, tp{2s}, stamps(2s, 2s)));
  CHECK_FALSE(t.heard_from("c", std::string{"actor-1"}, tp{2s}, stamps(2s, 2s)));
  CHECK(t.silent(tp{5s}, 3s) == std::vector<std::string>{"b"}); // still last heard at 1 s
  CHECK(t.oldest_echo() == tp{1s});
  CHECK(t.heard_from("b", std::string{"actor-1"}, tp{4s}, stamps(3s, 2s)));
  CHECK(t.silent(tp{5s}, 3s).empty());
  CHECK(t.oldest_echo() == tp{2s});
}

TEST_CASE("the lease counts from when we sent what a member took, not from when its "
          "word arrived",
          "[peer][members][lease]") {
  table t{200ms, 5s};
  // An initiator took our hello answer; we admit it at 3 s: it last heard
  // from us at 1 s, and drops us no earlier than that plus its timeout.
  t.add(node("b"), {"actor-b"}, tp{3s}, tp{1s});
  CHECK(t.oldest_echo() == tp{1s});
  // A batch that arrives late (at 9 s) names what it took of ours (sent at
  // 2 s): arrival moves `silent`, the echo moves the lease, no further.
  CHECK(t.heard_from("b", std::string{"actor-b"}, tp{9s}, stamps(8s, 2s)));
  CHECK(t.oldest_echo() == tp{2s});
  CHECK(t.find_mutable("b")->their_sent == ticks(8s)); // what we echo to it
  // Neither goes back (batches may overtake each other after a new
  // connection), and an echo of a time we have not reached is cut to now.
  CHECK(t.heard_from("b", std::string{"actor-b"}, tp{10s}, stamps(5s, 1s)));
  CHECK(t.oldest_echo() == tp{2s});
  CHECK(t.find_mutable("b")->their_sent == ticks(8s));
  CHECK(t.heard_from("b", std::string{"actor-b"}, tp{11s}, stamps(9s, 3600s)));
  CHECK(t.oldest_echo() == tp{11s});
  // Shaking hands again through the same actor keeps both: the handshake's
  // echo counts only once the member answered it (`took`), as the join's
  // answer does, for a join that fails leaves it a member.
  t.add(node("b"), {"actor-b"}, tp{13s}, tp{12500ms});
  CHECK(t.oldest_echo() == tp{11s});
  CHECK(t.find_mutable("b")->their_sent == ticks(9s));
  // An acknowledged batch proves it took what we sent then: a fresher echo
  // than its batches carry. Not past now, never back, nobody unknown.
  std::string b_actor{"actor-b"};
  CHECK(t.took("b", b_actor, tp{11500ms}, tp{13s}));
  CHECK(t.oldest_echo() == tp{11500ms});
  CHECK_FALSE(t.took("b", b_actor, tp{11s}, tp{13s}));
  CHECK_FALSE(
    t.took("b", std::string{"actor-b-before"}, tp{12s}, tp{13s})); // another run
  CHECK(t.took("b", b_actor, tp{20s}, tp{13s}));
  CHECK(t.oldest_echo() == tp{13s});
  CHECK_FALSE(t.took("c", b_actor, tp{13s}, tp{13s}));
  // A new connection starts afresh.
  t.add(node("b"), {"actor-b2"}, tp{14s}, tp{11s});
  CHECK(t.oldest_echo() == tp{11s});
  CHECK(t.find_mutable("b")->their_sent == 0);
}

TEST_CASE("the lease counts from the member that heard from us least recently",
          "[peer][members][lease]") {
  table t{200ms, 5s};
  CHECK_FALSE(t.oldest_echo()); // nobody to miss
  t.add(node("b"), {"actor-b"}, tp{3s}, tp{1s});
  t.add(node("c"), {"actor-c"}, tp{3s}, tp{2s});
  CHECK(t.oldest_echo() == tp{1s});
  CHECK(t.took("b", std::string{"actor-b"}, tp{4s}, tp{5s}));
  CHECK(t.oldest_echo() == tp{2s}); // now c is the one behind
  t.remove("c");
  CHECK(t.oldest_echo() == tp{4s});
}

TEST_CASE("a joiner is told about every other member, and joins those it lacks",
          "[peer][members]") {
  table t{200ms, 5s};
  t.add(node("b"), {"actor-b"}, tp{1s}, tp{1s});
  t.add(node("c"), {"actor-c"}, tp{1s}, tp{1s});
  auto told = t.others_than("b");
  REQUIRE(told.size() == 1);
  CHECK(told[0].name == "c");
  auto to_join = t.to_join({node("a"), node("c"), node("d")}, "a");
  REQUIRE(to_join.join.size() == 1); // not ourselves (a), not a member (c)
  CHECK(to_join.join[0].name == "d");
  CHECK(to_join.ignored == 0);
}

TEST_CASE("a join reply counts for its first 1,024 members, none with a name too long",
          "[peer][members]") {
  table t{200ms, 5s};
  std::vector<member_info> told;
  for (size_t i = 0; i < max_join_members + 10; ++i)
    told.push_back(node("n" + std::to_string(i)));
  told[3].name = std::string(max_node_name_bytes + 1, 'x');
  told[4].host = std::string(max_node_host_bytes + 1, 'h');
  auto to_join = t.to_join(std::move(told), "a");
  CHECK(to_join.join.size() == max_join_members - 2);
  CHECK(to_join.ignored == 12);
  CHECK(to_join.join.back().name == "n" + std::to_string(max_join_members - 1));
}

TEST_CASE("a failed handshake removes the member only if no newer connection replaced it",
          "[peer][members]") {
  table t{200ms, 5s};
  t.add(node("b"), {"actor-1"}, tp{1s}, tp{1s});
  t.add(node("b"), {"actor-2"}, tp{1s}, tp{1s});
  t.remove_if("b", {"actor-1"});
  CHECK(t.contains("b"));
  t.remove_if("b", {"actor-2"});
  CHECK_FALSE(t.contains("b"));
}

TEST_CASE("a member is found by the address of its actor when it goes down or leaves",
          "[peer][members]") {
  table t{200ms, 5s};
  t.add(node("b"), {"actor-b"}, tp{1s}, tp{1s});
  t.add(node("c"), {"actor-c"}, tp{1s}, tp{1s});
  CHECK_FALSE(t.remove_by_address(std::string{"actor-x"}));
  auto gone = t.remove_by_address(std::string{"actor-c"});
  REQUIRE(gone);
  CHECK(gone->info.name == "c");
  CHECK(t.names() == std::vector<std::string>{"b"});
}

TEST_CASE("reconnection waits double from the base up to the max until reached",
          "[peer][members]") {
  table t{200ms, 1s};
  t.add(node("b"), {"actor-b"}, tp{1s}, tp{1s});
  t.remove("b");
  auto first = t.lost(node("b"));
  REQUIRE(first);
  CHECK(jittered(first->wait, 200ms));
  CHECK(t.reconnecting("b"));
  auto chain = first->chain;
  auto fail_once = [&](const std::string& name) {
    REQUIRE(t.begin_attempt(node(name), chain)); // its retry came due
    auto r = t.attempt_failed(node(name));
    REQUIRE(r);
    CHECK(r->chain == chain);
    return *r;
  };
  auto r1 = fail_once("b");
  CHECK(jittered(r1.wait, 200ms));
  CHECK_FALSE(r1.first); // lost before: the loss was logged
  CHECK(jittered(fail_once("b").wait, 400ms));
  CHECK(jittered(fail_once("b").wait, 800ms));
  CHECK(jittered(fail_once("b").wait, 1s));
  CHECK(jittered(fail_once("b").wait, 1s));       // the max
  t.add(node("b"), {"actor-b2"}, tp{9s}, tp{9s}); // joined again: no more retries
  CHECK_FALSE(t.reconnecting("b"));
  REQUIRE(t.begin_attempt(node("seed")));
  auto fresh = t.attempt_failed(node("seed"));
  REQUIRE(fresh);
  CHECK(fresh->first); // a seed never reached: worth a log line
  CHECK(jittered(fresh->wait, 200ms));
}

TEST_CASE("members lost together do not retry in step", "[peer][members]") {
  // Before, every node that lost a restarted member retried it at the same
  // moments (base, 2 x base, ...), all at once.
  table t{200ms, 1s, 42};
  std::vector<table::duration> waits;
  for (int i = 0; i < 20; ++i) {
    auto name = "m" + std::to_string(i);
    t.add(node(name), {"actor-" + name}, tp{1s}, tp{1s});
    t.remove(name);
    auto r = t.lost(node(name));
    REQUIRE(r);
    CHECK(jittered(r->wait, 200ms));
    waits.push_back(r->wait);
  }
  std::sort(waits.begin(), waits.end());
  auto distinct = std::unique(waits.begin(), waits.end()) - waits.begin();
  CHECK(distinct >= 10); // 20 draws spread over 100 ms
}

TEST_CASE("one chain of attempts per name however often it is asked for",
          "[peer][members]") {
  // Every member list naming an unreachable node, and every loss, started a
  // chain of retries of its own before: a flapping link multiplied them.
  table t{200ms, 1s};
  REQUIRE(t.begin_attempt(node("x")));
  CHECK_FALSE(t.begin_attempt(node("x"))); // told again: one in flight
  auto moved = node("x");
  moved.port = 4001;
  CHECK_FALSE(t.begin_attempt(moved));
  auto r = t.attempt_failed(node("x"));
  REQUIRE(r);
  CHECK(r->info.port == 4001); // the retry goes where it was last said to be
  for (int i = 0; i < 10; ++i) // told while a retry is due: nothing more
    CHECK_FALSE(t.begin_attempt(node("x")));
  CHECK_FALSE(t.lost(node("x")));
  REQUIRE(t.begin_attempt(node("x"), r->chain));     // the one retry comes due
  CHECK_FALSE(t.begin_attempt(node("x"), r->chain)); // a stale copy: nothing
  REQUIRE(t.attempt_failed(node("x")));
  CHECK_FALSE(t.attempt_failed(node("x"))); // one retry due at most
  t.add(node("y"), {"actor-y"}, tp{1s}, tp{1s});
  CHECK_FALSE(t.begin_attempt(node("y"))); // a member already
  CHECK_FALSE(t.reconnecting("y"));
}

TEST_CASE("a retry that outlived its chain starts no second one", "[peer][members]") {
  table t{200ms, 1s};
  t.add(node("b"), {"actor-b"}, tp{1s}, tp{1s});
  t.remove("b");
  auto old = t.lost(node("b")); // its retry is on its way...
  REQUIRE(old);
  t.add(node("b"), {"actor-b2"}, tp{2s}, tp{2s}); // ...when b dials us: the chain ends
  t.remove("b");
  auto now = t.lost(node("b")); // lost again: a new chain, a new retry
  REQUIRE(now);
  CHECK(now->chain != old->chain);
  CHECK_FALSE(t.begin_attempt(node("b"), old->chain)); // the old retry: ignored
  REQUIRE(t.begin_attempt(node("b"), now->chain));
}

TEST_CASE("a join that fails after the handshake admitted the node is retried",
          "[peer][members]") {
  // Admitting ends the chain; the join request then failed (a timeout, a
  // refusal) and the member was removed again: nothing tried it again, and
  // the node stayed unjoined for good.
  table t{200ms, 1s};
  REQUIRE(t.begin_attempt(node("b")));
  t.add(node("b"), {"actor-b"}, tp{1s}, tp{1s}); // the handshake admitted it
  CHECK_FALSE(t.reconnecting("b"));
  t.remove("b"); // its join failed
  auto r = t.attempt_failed(node("b"));
  REQUIRE(r);
  CHECK(jittered(r->wait, 200ms));
  CHECK(t.reconnecting("b"));
  REQUIRE(t.begin_attempt(node("b"), r->chain));
}

TEST_CASE("leaving forgets members and reconnections", "[peer][members]") {
  table t{200ms, 1s};
  t.add(node("b"), {"actor-b"}, tp{1s}, tp{1s});
  t.lost(node("c"));
  t.clear();
  CHECK(t.empty());
  CHECK_FALSE(t.reconnecting("c"));
}

TEST_CASE("a forgotten member's retry that comes due starts nothing", "[peer][members]") {
  table t{200ms, 1s};
  t.add(node("b"), {"actor-b"}, tp{1s}, tp{1s});
  t.remove("b");
  auto r = t.lost(node("b"));
  REQUIRE(r);
  t.forget("b");
  CHECK_FALSE(t.reconnecting("b"));
  CHECK_FALSE(t.begin_attempt(node("b"), r->chain)); // the retry on its way: ignored
  REQUIRE(t.begin_attempt(node("b")));               // named again: a new chain
}

TEST_CASE("a member forgotten during an attempt to reach it is not retried if it fails",
          "[peer][members]") {
  table t{200ms, 1s};
  REQUIRE(t.begin_attempt(node("b"))); // in flight (a partitioned host: slow to fail)
  t.forget("b");
  CHECK_FALSE(t.reconnecting("b"));
  CHECK_FALSE(t.attempt_failed(node("b"))); // before, this started a new chain
  CHECK_FALSE(t.reconnecting("b"));
  // Named again while an attempt runs (a member lists it): wanted again.
  REQUIRE(t.begin_attempt(node("c")));
  t.forget("c");
  CHECK_FALSE(t.begin_attempt(node("c"))); // one attempt at a time still
  CHECK(t.reconnecting("c"));
  CHECK(t.attempt_failed(node("c")));
}

TEST_CASE("had_members looks back to the last mark: a member gone since still counts",
          "[peer][members]") {
  // A node that stalls clears unless nobody was a member since its last
  // heartbeat: a member lost during the stall, just before the late
  // heartbeat ran, may have invalidated behind it (and its loss's repair
  // only caps TTLs under repair-ttl).
  table t{200ms, 5s};
  CHECK_FALSE(t.had_members());
  t.add(node("b"), {"actor-1"}, tp{1s}, tp{1s});
  t.mark_members();
  REQUIRE(t.remove("b"));
  CHECK(t.empty());
  CHECK(t.had_members()); // b was a member at the mark
  t.mark_members();
  CHECK_FALSE(t.had_members());
  t.add(node("c"), {"actor-2"}, tp{2s}, tp{2s});
  REQUIRE(t.remove("c"));
  CHECK(t.had_members()); // c came and went after the mark
  t.mark_members();
  CHECK_FALSE(t.had_members());
}

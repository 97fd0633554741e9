// The peer actor's bookkeeping without actors: numbering what a node sends,
// gap detection on what it receives (rule 6), flow control, sync calls
// (rule 7) and how a received batch is routed. When and to whom batches are
// sent is tested in peer_sending.test.cpp, the handshake in
// cluster_auth.test.cpp, the members in peer_members.test.cpp.
#include <catch2/catch.hpp>

#include <cstdint>
#include <limits>

#include <caf/binary_deserializer.hpp>

#include "actors/peer_state.hpp"
#include "base/routing.hpp"
#include <karlton/messages/value.hpp>

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

invalidation_batch batch(const std::string& origin, uint64_t incarnation, uint64_t first,
                         size_t n) {
  invalidation_batch b;
  b.origin = origin;
  b.incarnation = incarnation;
  b.first_seq = first;
  b.items.resize(n);
  return b;
}

} // namespace

TEST_CASE("a node numbers its invalidations in order across batches") {
  peer_state p{node("a"), 100};
  p.enqueue(keys({"k1", "k2"}));
  p.enqueue(keys({"k3"}));
  auto b1 = p.take_batch();
  CHECK(b1.origin == "a");
  CHECK(b1.incarnation == 7);
  CHECK(b1.first_seq == 0);
  REQUIRE(b1.items.size() == 3);
  CHECK(b1.items[2].name == "k3");
  p.enqueue(keys({"k4"}));
  auto b2 = p.take_batch();
  CHECK(b2.first_seq == 3);
  CHECK(b2.items.size() == 1);
  CHECK(p.next_seq() == 4);
  CHECK(p.counters.broadcasts_sent == 4);
}

TEST_CASE("an empty batch says where the numbering stands") {
  peer_state p{node("a"), 100};
  p.enqueue(keys({"k1", "k2"}));
  p.take_batch();
  auto heartbeat = p.take_batch();
  CHECK(heartbeat.items.empty());
  CHECK(heartbeat.first_seq == 2);
}

TEST_CASE("a queue longer than a batch may be leaves in batches numbered in order",
          "[peer]") {
  peer_state p{node("a"), 100, std::numeric_limits<uint64_t>::max(), 2};
  p.enqueue(keys({"k1", "k2", "k3", "k4", "k5"}));
  auto b1 = p.take_batch();
  CHECK(b1.first_seq == 0);
  CHECK(b1.items.size() == 2);
  CHECK(p.pending() == 3);
  p.enqueue(keys({"k6"}));
  auto b2 = p.take_batch();
  CHECK(b2.first_seq == 2);
  REQUIRE(b2.items.size() == 2);
  CHECK(b2.items[0].name == "k3");
  auto b3 = p.take_batch();
  CHECK(b3.first_seq == 4);
  REQUIRE(b3.items.size() == 2);
  CHECK(b3.items[1].name == "k6");
  CHECK(p.pending() == 0);
  CHECK(p.next_seq() == 6);
  CHECK(p.counters.broadcasts_sent == 6);
}

TEST_CASE("a batch over the item limit or whose numbers wrap is refused and counted",
          "[peer]") {
  peer_state p{node("b"), 100, std::numeric_limits<uint64_t>::max(), 2};
  CHECK(p.acceptable(batch("a", 7, 0, 2)));
  CHECK_FALSE(p.acceptable(batch("a", 7, 0, 3)));
  CHECK(p.acceptable(batch("a", 7, std::numeric_limits<uint64_t>::max() - 2, 2)));
  CHECK_FALSE(p.acceptable(batch("a", 7, std::numeric_limits<uint64_t>::max() - 1, 2)));
  CHECK_FALSE(p.acceptable(batch("a", 7, std::numeric_limits<uint64_t>::max(), 1)));
  CHECK(p.counters.bad_messages == 3);
  // The default limit is the one senders cut at.
  peer_state q{node("b"), 100};
  CHECK(q.max_items() == max_batch_items);
}

TEST_CASE("batches in order are no gap and a skipped one is") {
  peer_state p{node("b"), 100};
  CHECK_FALSE(p.expect("a", 7, 0)); // the handshake: a numbers from 0
  CHECK_FALSE(p.receive(batch("a", 7, 0, 5)));
  CHECK_FALSE(p.receive(batch("a", 7, 5, 1)));
  CHECK_FALSE(p.receive(batch("a", 7, 6, 0))); // a heartbeat
  CHECK(p.receive(batch("a", 7, 8, 1)));       // 6 and 7 never came
  CHECK(p.counters.gaps == 1);
  CHECK_FALSE(p.receive(batch("a", 7, 9, 1))); // counting goes on from there
  CHECK(p.counters.invalidations_received == 8);
}

TEST_CASE("a heartbeat past what arrived is a gap even on a quiet link") {
  peer_state p{node("b"), 100};
  p.expect("a", 7, 0);
  p.receive(batch("a", 7, 0, 10));
  CHECK(p.receive(batch("a", 7, 12, 0)));
}

TEST_CASE("a member met first or a new run of one that numbered invalidations already "
          "is a gap") {
  // It sent them to other nodes, or to none while it had no members: we may
  // hold what they removed (a restarted node wrote while cut off, say).
  peer_state p{node("b"), 100};
  CHECK(p.expect("a", 7, 5));
  CHECK_FALSE(p.expect("c", 1, 0)); // nothing numbered yet: nothing missed
  p.expect("c", 1, 0);
  CHECK(p.expect("c", 2, 3)); // its next run numbered 0..2 before we met
  CHECK(p.counters.gaps == 2);
}

TEST_CASE("a batch sent before the handshake is no gap") {
  peer_state p{node("b"), 100};
  CHECK(p.expect("a", 7, 10));                 // 0..9 went elsewhere: one repair
  CHECK_FALSE(p.receive(batch("a", 7, 8, 2))); // 8 and 9: queued before we joined
  CHECK_FALSE(p.receive(batch("a", 7, 10, 1)));
  CHECK(p.counters.gaps == 1);
}

TEST_CASE("a second handshake with numbers we never saw is a gap") {
  peer_state p{node("b"), 100};
  p.expect("a", 7, 0);
  p.receive(batch("a", 7, 0, 3));
  CHECK_FALSE(p.expect("a", 7, 3)); // reconnected: nothing missed
  CHECK(p.expect("a", 7, 9));       // reconnected after sending 3..8 elsewhere
  CHECK(p.counters.gaps == 1);
}

TEST_CASE("a restarted origin starts afresh unless its first numbers are missing") {
  peer_state p{node("b"), 100};
  p.expect("a", 7, 0);
  p.receive(batch("a", 7, 0, 50));
  CHECK_FALSE(p.expect("a", 8, 0)); // a new run: its handshake sets the count
  CHECK_FALSE(p.receive(batch("a", 8, 0, 2)));
  CHECK(p.receive(batch("a", 9, 4, 1))); // a third run whose 0..3 never came
}

TEST_CASE("delays are kept for the most recent invalidations only") {
  peer_state p{node("b"), 100};
  for (size_t i = 0; i < peer_delay_samples + 10; ++i)
    p.record_delay(0, static_cast<int64_t>(i) * 1000);
  auto s = p.stats(2);
  CHECK(s.members == 2);
  REQUIRE(s.recent_delays_us.size() == peer_delay_samples);
  // The ring overwrote the ten oldest (0..9 µs) with the ten newest.
  CHECK(s.recent_delays_us[0] == peer_delay_samples);
  CHECK(s.recent_delays_us[10] == 10);
  p.record_delay(5000, 1000); // clocks apart: never negative
  CHECK(p.stats(0).recent_delays_us[10] == 0);
}

TEST_CASE("the delay histogram keeps every delay, beyond the recent window") {
  peer_state p{node("b"), 100};
  const size_t n = peer_delay_samples + 10;
  uint64_t sum_us = 0;
  for (size_t i = 0; i < n; ++i) {
    p.record_delay(0, static_cast<int64_t>(i) * 1000);
    sum_us += i;
  }
  auto first = p.stats(0);
  CHECK(first.delay_histogram.count() == n);
  CHECK(first.delay_histogram.sum() == sum_us);
  CHECK(first.delay_histogram.percentile(0.0) == 0); // gone from the window, still here
  p.record_delay(0, 1'000'000);
  auto second = p.stats(0);
  CHECK(second.delay_histogram.count() == n + 1);
  CHECK(second.delay_histogram.sum() == sum_us + 1000);
}

// -- members: flow control and who answers ------------------------------------

TEST_CASE("a member lost without leaving counts as not answered until it joins again",
          "[peer][rule7]") {
  peer_state p{node("a"), 100};
  p.member_joined("b");
  p.member_joined("c");
  p.member_lost("c");
  auto plan = p.plan_sync({"b"}, 1);
  REQUIRE(plan.ask.size() == 1);
  CHECK(plan.ask[0].first == "b");
  CHECK(plan.not_answered == std::vector<std::string>{"c"});
  // Nobody left to ask: still not answered, not "all applied".
  CHECK(p.plan_sync({}, 1).not_answered == std::vector<std::string>{"c"});
  p.member_joined("c"); // back, through the handshake's sequence check
  CHECK(p.plan_sync({"b", "c"}, 1).not_answered.empty());
  p.member_lost("c");
  p.member_left("c"); // a clean leave: it serves nothing any more
  CHECK(p.plan_sync({"b"}, 1).not_answered.empty());
}

TEST_CASE(
  "a timed-out batch is not acknowledged: the member is behind until it caught up",
  "[peer][flow]") {
  peer_state p{node("a"), 100, 10};
  p.member_joined("b");
  auto m1 = p.send_to("b", 4);
  auto m2 = p.send_to("b", 4);
  REQUIRE(m1);
  REQUIRE(m2);
  CHECK(p.unacked("b") == 8);
  CHECK_FALSE(p.send_to("b", 3)); // 11 > max_unacked
  p.acknowledged("b", *m1);
  CHECK(p.unacked("b") == 4);
  p.not_acknowledged("b", *m2); // it timed out: it may still sit there
  CHECK(p.behind("b"));
  CHECK(p.unacked("b") == 4);
  CHECK_FALSE(p.send_to("b", 1)); // withheld while behind: it repairs from the gap
  CHECK(p.counters.batches_withheld == 2);
  auto plan = p.plan_sync({"b"}, 1);
  CHECK(plan.ask.empty());
  CHECK(plan.not_answered == std::vector<std::string>{"b"});
  // A heartbeat is still sent; its answer shows everything before it applied.
  auto beat = p.send_to("b", 0);
  REQUIRE(beat);
  p.acknowledged("b", *beat);
  CHECK_FALSE(p.behind("b"));
  CHECK(p.unacked("b") == 0);
  CHECK(p.send_to("b", 10));
  // Answers to what was sent before it joined again change nothing.
  p.member_joined("b");
  auto fresh = p.send_to("b", 10);
  REQUIRE(fresh);
  p.not_acknowledged("b", *m2);
  p.acknowledged("b", *beat);
  CHECK_FALSE(p.behind("b"));
  CHECK(p.unacked("b") == 10);
}

TEST_CASE("unacknowledged invalidations never exceed max-unacked, whatever times out",
          "[peer][flow]") {
  peer_state p{node("a"), 100, 1000};
  p.member_joined("b");
  uint64_t sent_while_unanswered = 0;
  // A member that never answers: every request times out.
  for (int i = 0; i < 10'000; ++i) {
    if (p.send_to("b", 100)) sent_while_unanswered += 100;
    if (i % 50 == 0) p.not_acknowledged("b", peer_state::send_mark{1, 0});
  }
  CHECK(sent_while_unanswered <= 1000);
  CHECK(p.unacked("b") <= 1000);
}

TEST_CASE("a clean leave that shows a gap makes the receiver repair", "[peer][rule6]") {
  peer_state p{node("b"), 100};
  CHECK_FALSE(p.expect("a", 7, 0));
  CHECK_FALSE(p.receive(batch("a", 7, 0, 2)));
  CHECK_FALSE(p.left("a", 7, 2)); // everything it sent arrived
  // Withheld by flow control: 2..4 never arrived before it left.
  peer_state q{node("b"), 100, 1};
  q.expect("a", 7, 0);
  q.receive(batch("a", 7, 0, 2));
  CHECK(q.left("a", 7, 5));
  CHECK(q.counters.gaps == 1);
}

TEST_CASE("the read lease is renewed only once repairs are done", "[peer][lease]") {
  using namespace std::chrono_literals;
  using tp = peer_state::time_point;
  tp now{10s};
  CHECK_FALSE(peer_state::renew_lease(now, {now}, 1, 1s)); // a repair is clearing
  CHECK_FALSE(peer_state::renew_lease(now, std::nullopt, 1, 1s));
  CHECK(peer_state::renew_lease(now, std::nullopt, 0, 1s) == tp::max()); // nobody to miss
  CHECK(peer_state::renew_lease(now, now - 300ms, 0, 1s) == now + 700ms);
  CHECK(peer_state::renew_lease(now, now + 1s, 0, 1s) == now + 1s); // never past now
}

TEST_CASE("a heartbeat more than a lease late means this node stalled", "[peer][lease]") {
  using namespace std::chrono_literals;
  using tp = peer_state::time_point;
  CHECK_FALSE(peer_state::stalled_ms(tp{10s}, tp{}, 250ms, 1s)); // the first one
  CHECK_FALSE(peer_state::stalled_ms(tp{10s}, tp{10s - 1250ms}, 250ms, 1s));
  CHECK(peer_state::stalled_ms(tp{10s}, tp{10s - 1300ms}, 250ms, 1s) == 1300);
}

TEST_CASE("applies finishing out of order are done up to the first unfinished",
          "[peer]") {
  peer_state p{node("a"), 100};
  auto a = p.start_apply(), b = p.start_apply(), c = p.start_apply();
  CHECK(p.finish_apply(c) == 0);
  CHECK(p.finish_apply(a) == 1);
  CHECK_FALSE(p.all_applied());
  CHECK(p.finish_apply(b) == 3);
  CHECK(p.all_applied());
}

// Found by the messages fuzzer (fuzz/messages.fuzz.cpp), byte for byte: a
// batch from another node whose invalidation was "issued" near INT64_MIN, so
// the delay `applied - issued` overflowed (undefined; in practice a negative
// delay recorded as 0 instead of the longest one).
TEST_CASE("a batch issued at any time on the sender's clock records a delay in range",
          "[peer][fuzz]") {
  const char bytes[] = "\x06\x65\x2d\x61\x00\x00\x00\x02\x00\x00\x00\x07\x7e\x00\x00\x00"
                       "\x00\x00\x00\x64\x02\x02\x0f\x02"
                       "\x02\x05\x75\x73\x65\x72\x73\x02\x65\x31\x04\x64\x61\x74\x36\x97"
                       "\x1a\x1a\x1a\x1a\x1a\x1a\x1a\x1a"
                       "\x1a\x1a\x1a\x1a\x1a\x1a\x1a\x1a\x1a\x1a\x1a\x1a\x1a\x1a\x1a\x05"
                       "\x75\x73\x65\x72\x73\x02\x65\x31"
                       "\x04\x64\x61\x74\xda\x61\x17\x97\x9c\xfe\x36\x2a\x00\x00\x00\x05"
                       "\x75\x73\x65\x72\x73\x01\x6b\x00"
                       "\x1a\x1a\x1a\x1a\x1a\x1a\x1a\x1a\x1a\x1a\x1a\x1a\x1a\x1a\x1a\x1a"
                       "\x1a\x1a\x1a\x1a\x1a\x1a\x1a\x1a"
                       "\x1a\x1a\x1a\x1a\x1a\x1a\x1a\x1a\x1a\x1a\x1a\x1a\x1a\x1a\x1a\x1a"
                       "\x1a\x1a\x1a\x1a\x1a\x1a\x1a\x1a"
                       "\x1a\x1a\x1a\x1a\x1a\x1a\x1a\x1a\x1a\x1a\x1a\x1a\x1a\x1a\x61\xfe"
                       "\x2a\x17\x9c\x00\x00\x00\x05\x75"
                       "\x73\x65\x73\x01\x6b\x72\x00\x00\x2b\x00\x00\x00\x00\x3f\x05\xff"
                       "\xff\xff\xff\xff\xff\xff\x00\x00"
                       "\x00\x6b\x61\x72\x6c\x74\x6f\x6e\x3a\x3a\x72\x65\x6d\x61\x69\x6e"
                       "\x69\x6e\x67\x5f\x74\x74\x6c\xff"
                       "\xff\xff\xff\xff\xff\xff\xff\x00\x00\x00\x00\x05\xff\xff";
  invalidation_batch b;
  caf::binary_deserializer source{nullptr, bytes, sizeof bytes - 1};
  REQUIRE(!source(b));
  REQUIRE(b.items.size() == 2);
  REQUIRE(b.items[0].issued_ns < INT64_MIN / 2);
  peer_state p{node("me"), 64};
  p.receive(b);
  const int64_t now_ns = 1'800'000'000'000'000'000; // the fuzzer's fixed "now"
  for (auto& x : b.items)
    p.record_delay(x.issued_ns, now_ns);
  CHECK(p.stats(0).recent_delays_us[0] == UINT32_MAX); // far in the past: the longest
  p.record_delay(INT64_MAX, INT64_MIN); // the other way round: clocks apart
  CHECK(p.stats(0).recent_delays_us[2] == 0);
}

// -- applying what other nodes send --------------------------------------------

TEST_CASE("a received batch becomes one request per shard, clear, tag and event",
          "[peer]") {
  auto item = [](invalidation_kind k, std::string cache, std::string name) {
    return invalidation{k, std::move(cache), std::move(name), "data", 5};
  };
  invalidation_batch b;
  b.items = {item(invalidation_kind::key, "users", "k1"),
             item(invalidation_kind::key, "users", "k2"),
             item(invalidation_kind::written, "users", "k3"),
             item(invalidation_kind::key, "absent", "k4"), // a cache we do not have
             item(invalidation_kind::clear, "users", ""),
             item(invalidation_kind::tag, "", "t1"),
             item(invalidation_kind::event, "", "e1")};
  auto shards = [](const std::string& cache) { return cache == "users" ? size_t{4} : 0; };
  auto steps = route_batch(b, shards, true);
  size_t keys = 0, written = 0, clears = 0, bus = 0;
  for (auto& s : steps) {
    switch (s.to) {
    case apply_step::target::shard:
      CHECK(s.cache == "users");
      CHECK(s.keys.size() == s.issued.size());
      for (auto& k : s.keys)
        CHECK(shard_index(hash_key(k), 4) == s.shard); // each key to its own shard
      (s.written ? written : keys) += s.keys.size();
      break;
    case apply_step::target::cache:
      CHECK(s.cache == "users");
      ++clears;
      break;
    case apply_step::target::bus:
      CHECK(s.issued == std::vector<int64_t>{5});
      ++bus;
      break;
    }
  }
  CHECK(keys == 2);
  CHECK(written == 1); // apart: written keys do not cascade
  CHECK(clears == 1);
  CHECK(bus == 2);
  b.items = {item(invalidation_kind::tag, "", "t1"),
             item(invalidation_kind::event, "", "e")};
  CHECK(route_batch(b, shards, false).empty()); // no bus: nothing to invalidate or emit
}

TEST_CASE("keys of one shard are applied in one request", "[peer]") {
  invalidation_batch b;
  for (int i = 0; i < 100; ++i)
    b.items.push_back(
      invalidation{invalidation_kind::key, "users", "k" + std::to_string(i), {}, 0});
  auto steps = route_batch(
    b, [](const std::string&) { return size_t{2}; }, true);
  REQUIRE(steps.size() == 2);
  CHECK(steps[0].keys.size() + steps[1].keys.size() == 100);
}

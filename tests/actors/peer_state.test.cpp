// The peer actor's bookkeeping without actors: numbering and batching what a
// node sends, and gap detection on what it receives (rule 6). The handshake
// is tested in cluster_auth.test.cpp.
#include <catch2/catch.hpp>

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
  CHECK_FALSE(p.enqueue(keys({"k1", "k2"})));
  CHECK_FALSE(p.enqueue(keys({"k3"})));
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

TEST_CASE("enqueue says when a batch is full") {
  peer_state p{node("a"), 3};
  CHECK_FALSE(p.enqueue(keys({"k1", "k2"})));
  CHECK(p.enqueue(keys({"k3"})));
  CHECK(p.pending() == 3);
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
  p.expect("a", 7, 10);
  CHECK(p.receive(batch("a", 7, 12, 0)));
}

TEST_CASE("a batch sent before the handshake is no gap") {
  peer_state p{node("b"), 100};
  p.expect("a", 7, 10);
  CHECK_FALSE(p.receive(batch("a", 7, 8, 2))); // 8 and 9: queued before we joined
  CHECK_FALSE(p.receive(batch("a", 7, 10, 1)));
  CHECK(p.counters.gaps == 0);
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

// The peer actor's bookkeeping without actors: numbering and batching what a
// node sends, gap detection on what it receives (rule 6), and the proofs of
// the join handshake.
#include <catch2/catch.hpp>

#include <cstdint>

#include <caf/binary_deserializer.hpp>

#include "actors/cluster_auth.hpp"
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
  peer_state p{node("a"), 100, 1};
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
  peer_state p{node("a"), 100, 1};
  p.enqueue(keys({"k1", "k2"}));
  p.take_batch();
  auto heartbeat = p.take_batch();
  CHECK(heartbeat.items.empty());
  CHECK(heartbeat.first_seq == 2);
}

TEST_CASE("enqueue says when a batch is full") {
  peer_state p{node("a"), 3, 1};
  CHECK_FALSE(p.enqueue(keys({"k1", "k2"})));
  CHECK(p.enqueue(keys({"k3"})));
  CHECK(p.pending() == 3);
}

TEST_CASE("batches in order are no gap and a skipped one is") {
  peer_state p{node("b"), 100, 1};
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
  peer_state p{node("b"), 100, 1};
  p.expect("a", 7, 10);
  CHECK(p.receive(batch("a", 7, 12, 0)));
}

TEST_CASE("a batch sent before the handshake is no gap") {
  peer_state p{node("b"), 100, 1};
  p.expect("a", 7, 10);
  CHECK_FALSE(p.receive(batch("a", 7, 8, 2))); // 8 and 9: queued before we joined
  CHECK_FALSE(p.receive(batch("a", 7, 10, 1)));
  CHECK(p.counters.gaps == 0);
}

TEST_CASE("a second handshake with numbers we never saw is a gap") {
  peer_state p{node("b"), 100, 1};
  p.expect("a", 7, 0);
  p.receive(batch("a", 7, 0, 3));
  CHECK_FALSE(p.expect("a", 7, 3)); // reconnected: nothing missed
  CHECK(p.expect("a", 7, 9));       // reconnected after sending 3..8 elsewhere
  CHECK(p.counters.gaps == 1);
}

TEST_CASE("a restarted origin starts afresh unless its first numbers are missing") {
  peer_state p{node("b"), 100, 1};
  p.expect("a", 7, 0);
  p.receive(batch("a", 7, 0, 50));
  CHECK_FALSE(p.expect("a", 8, 0)); // a new run: its handshake sets the count
  CHECK_FALSE(p.receive(batch("a", 8, 0, 2)));
  CHECK(p.receive(batch("a", 9, 4, 1))); // a third run whose 0..3 never came
}

TEST_CASE("delays are kept for the most recent invalidations only") {
  peer_state p{node("b"), 100, 1};
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

TEST_CASE("HMAC-RIPEMD-160 matches the RFC 2286 test vectors") {
  auto hex = [](const std::string& raw) {
    static const char* digits = "0123456789abcdef";
    std::string out;
    for (unsigned char c : raw) {
      out += digits[c >> 4];
      out += digits[c & 15];
    }
    return out;
  };
  CHECK(hex(hmac_ripemd160(std::string(20, '\x0b'), "Hi There")) ==
        "24cb4bd67d20fc1a5d2ed7732dcc39377f0a5668");
  CHECK(hex(hmac_ripemd160("Jefe", "what do ya want for nothing?")) ==
        "dda6c0213a485a9e24f4742064a7f033b43c4069");
  // A key longer than the block is hashed first (test case 6).
  CHECK(hex(hmac_ripemd160(std::string(80, '\xaa'),
                           "Test Using Larger Than Block-Size Key - Hash Key First")) ==
        "6466ca07ac5eac29e1bd523e5ada7605b791fd8b");
}

TEST_CASE("a join proof holds only for the same secret and nonce and node") {
  auto a = node("a");
  auto proof = join_proof("s3cret", 42, a);
  CHECK(check_join_proof("s3cret", 42, a, proof));
  CHECK_FALSE(check_join_proof("other", 42, a, proof));
  CHECK_FALSE(check_join_proof("s3cret", 43, a, proof));
  CHECK_FALSE(check_join_proof("s3cret", 42, node("b"), proof));
  CHECK_FALSE(check_join_proof("s3cret", 42, node("a", 8), proof));
  CHECK_FALSE(check_join_proof("s3cret", 42, a, proof.substr(1)));
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
  peer_state p{node("me"), 64, 1};
  p.receive(b);
  const int64_t now_ns = 1'800'000'000'000'000'000; // the fuzzer's fixed "now"
  for (auto& x : b.items)
    p.record_delay(x.issued_ns, now_ns);
  CHECK(p.stats(0).recent_delays_us[0] == UINT32_MAX); // far in the past: the longest
  p.record_delay(INT64_MAX, INT64_MIN); // the other way round: clocks apart
  CHECK(p.stats(0).recent_delays_us[2] == 0);
}

// Per-link message authentication without actors (rule 9): the link keys a
// handshake sets up, the MAC of a batch, a leave and a join, and what a
// receiver refuses: another key, altered content, another kind, a replay.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "actors/cluster_auth.hpp"
#include "actors/link_auth.hpp"

using namespace karlton;

namespace {

handshake_transcript transcript(const std::string& nonce_r = std::string(16, 'r')) {
  return handshake_transcript{
    handshake_party{member_info{"a", "127.0.0.1", 4000, 1}, "node-id-a"},
    handshake_party{member_info{"b", "127.0.0.1", 4001, 2}, "node-id-b"},
    std::string(16, 'i'), nonce_r};
}

invalidation_batch batch() {
  invalidation_batch b;
  b.origin = "a";
  b.incarnation = 1;
  b.first_seq = 10;
  b.items = {invalidation{invalidation_kind::key, "users", "k1", {}, 100},
             invalidation{invalidation_kind::event, {}, "e", "payload", 101}};
  return b;
}

// A handshake b initiated, told apart by `c`.
handshake_transcript b_initiated(char c) {
  return handshake_transcript{transcript().responder, transcript().initiator,
                              std::string(16, c), std::string(16, c)};
}

// Handshake `t` completed on `initiator`'s side, then on `responder`'s.
void establish(peer_link& initiator, peer_link& responder,
               const handshake_transcript& t) {
  initiator.established(handshake_role::initiator,
                        derive_link_keys("s3cret", handshake_role::initiator, t));
  responder.established(handshake_role::responder,
                        derive_link_keys("s3cret", handshake_role::responder, t));
}

// Both ends of the link of handshake `t` (a initiated it).
struct link_pair {
  peer_link a, b;
  explicit link_pair(const handshake_transcript& t = transcript()) { establish(a, b, t); }
};

} // namespace

TEST_CASE("the link MAC's HMAC-SHA-256 is OpenSSL's, for every key and message length",
          "[auth][link]") {
  for (size_t key_len : {0, 1, 20, 32, 63, 64, 65, 131})
    for (size_t msg_len : {0, 1, 55, 56, 64, 72, 1000}) {
      std::string key(key_len, '\0'), msg(msg_len, '\0');
      for (size_t i = 0; i < key_len; ++i)
        key[i] = static_cast<char>(i * 7 + 1);
      for (size_t i = 0; i < msg_len; ++i)
        msg[i] = static_cast<char>(i * 13 + 5);
      INFO(key_len << "-byte key, " << msg_len << "-byte message");
      CHECK(fast_hmac_sha256(key, msg) == hmac_sha256(key, msg));
    }
}

TEST_CASE("link keys are per direction, per handshake, and differ from the proofs",
          "[auth][link]") {
  auto t = transcript();
  auto i = derive_link_keys("s3cret", handshake_role::initiator, t);
  auto r = derive_link_keys("s3cret", handshake_role::responder, t);
  CHECK(i.send.size() == 32);
  CHECK(i.send == r.receive);
  CHECK(i.receive == r.send);
  CHECK(i.send != i.receive);
  // Nothing that crosses the network (a proof) is a key.
  for (auto role : {handshake_role::initiator, handshake_role::responder}) {
    auto proof = handshake_proof("s3cret", role, t);
    CHECK(proof != i.send);
    CHECK(proof != i.receive);
  }
  // Another handshake, or another secret, another key.
  CHECK(
    derive_link_keys("s3cret", handshake_role::initiator, transcript("other nonce..."))
      .send != i.send);
  CHECK(derive_link_keys("wrong", handshake_role::initiator, t).send != i.send);
}

TEST_CASE("a batch sealed on one end opens on the other, once, and its ack matches",
          "[auth][link]") {
  link_pair l;
  auto d = batch_digest(batch());
  auto sealed = l.a.seal(link_message::batch, d);
  CHECK(sealed.tag.counter == 1);
  auto ack = l.b.open(link_message::batch, d, sealed.tag);
  REQUIRE(ack);
  CHECK(same_mac(*ack, sealed.ack));
  // Replayed: the counter was used.
  CHECK_FALSE(l.b.open(link_message::batch, d, sealed.tag));
  // The other way, and on: each direction counts on its own.
  auto back = l.b.seal(link_message::batch, d);
  CHECK(back.tag.counter == 1);
  CHECK(l.a.open(link_message::batch, d, back.tag));
  // A message of one direction never opens as the other's (reflected).
  auto next = l.a.seal(link_message::batch, d);
  CHECK_FALSE(l.a.open(link_message::batch, d, next.tag));
  CHECK(l.b.open(link_message::batch, d, next.tag));
}

TEST_CASE("an older counter, altered content, another kind or key is refused",
          "[auth][link]") {
  link_pair l;
  auto d = batch_digest(batch());
  // Overtaken (a change of connection): taken once, within the window.
  auto first = l.a.seal(link_message::batch, d);
  auto second = l.a.seal(link_message::batch, d);
  CHECK(l.b.open(link_message::batch, d, second.tag));
  CHECK(l.b.open(link_message::batch, d, first.tag));
  CHECK_FALSE(l.b.open(link_message::batch, d, first.tag));
  CHECK_FALSE(l.b.open(link_message::batch, d, second.tag));
  // Further back than the window: refused, even if never taken.
  auto old = l.a.seal(link_message::batch, d);
  for (uint64_t i = 0; i < peer_link::replay_window; ++i)
    l.a.seal(link_message::batch, d);
  CHECK(l.b.open(link_message::batch, d, l.a.seal(link_message::batch, d).tag));
  CHECK_FALSE(l.b.open(link_message::batch, d, old.tag));
  // Every field of a batch counts.
  auto changed = [](auto change) {
    auto b = batch();
    change(b);
    return batch_digest(b);
  };
  std::vector<std::string> altered = {
    changed([](invalidation_batch& b) { b.origin = "c"; }),
    changed([](invalidation_batch& b) { b.incarnation = 2; }),
    changed([](invalidation_batch& b) { b.first_seq = 11; }),
    changed([](invalidation_batch& b) { b.items.pop_back(); }),
    changed([](invalidation_batch& b) { b.items[0].kind = invalidation_kind::written; }),
    changed([](invalidation_batch& b) { b.items[0].cache = "orders"; }),
    changed([](invalidation_batch& b) { b.items[0].name = "k2"; }),
    changed([](invalidation_batch& b) { b.items[1].data = "other"; }),
    changed([](invalidation_batch& b) { b.items[0].issued_ns = 99; }),
    // Fields are length-prefixed: moving bytes from one to the next counts.
    changed([](invalidation_batch& b) {
      b.items[0].cache = "users";
      b.items[0].name = "k";
      b.items[0].data = "1";
    }),
  };
  for (auto& x : altered) {
    CHECK(x != d);
    auto t = l.a.seal(link_message::batch, d);
    CHECK_FALSE(l.b.open(link_message::batch, x, t.tag));
  }
  auto t = l.a.seal(link_message::batch, d);
  CHECK_FALSE(l.b.open(link_message::leave, d, t.tag)); // another kind
  // The clock readings the read lease counts from: an echo moved forward
  // would let a host on the path keep the receiver serving after the sender
  // dropped it.
  for (auto alter : {+[](link_tag& x) { ++x.echo; }, +[](link_tag& x) { ++x.sent; }}) {
    auto stamped = l.a.seal(link_message::batch, d, 500, 700);
    CHECK(stamped.tag.sent == 500);
    CHECK(stamped.tag.echo == 700);
    alter(stamped.tag);
    CHECK_FALSE(l.b.open(link_message::batch, d, stamped.tag));
  }
  CHECK(l.b.open(link_message::batch, d, l.a.seal(link_message::batch, d, 500, 700).tag));
  // Another link's key (another handshake, or no secret at all).
  link_pair other{transcript("other nonce....")};
  auto forged = other.a.seal(link_message::batch, d);
  forged.tag.counter = 1000;
  CHECK_FALSE(l.b.open(link_message::batch, d, forged.tag));
  CHECK_FALSE(l.b.open(link_message::batch, d, link_tag{1000, {}}));
  CHECK_FALSE(l.b.open(link_message::batch, d, link_tag{1000, std::string(32, '\0')}));
  // Still open for what a sends next.
  CHECK(l.b.open(link_message::batch, d, l.a.seal(link_message::batch, d).tag));
}

TEST_CASE("a node that started a handshake each way keeps both links", "[auth][link]") {
  // a and b each start a handshake with the other at once; a completes its
  // own first, b the one it started.
  auto t1 = transcript(std::string(16, '1')); // a initiated
  auto t2 = b_initiated('2');
  peer_link a, b;
  a.established(handshake_role::initiator,
                derive_link_keys("s3cret", handshake_role::initiator, t1));
  establish(b, a, t2);
  b.established(handshake_role::responder,
                derive_link_keys("s3cret", handshake_role::responder, t1));
  auto d = number_digest(7);
  for (int i = 0; i < 3; ++i) {
    CHECK(b.open(link_message::leave, d, a.seal(link_message::leave, d).tag));
    CHECK(a.open(link_message::leave, d, b.seal(link_message::leave, d).tag));
  }
  // a's own handshake turns out to have failed (b never took it): a sends
  // under the link b started again, which b still accepts.
  a.withdraw(handshake_role::initiator);
  b.withdraw(handshake_role::responder);
  CHECK(b.open(link_message::leave, d, a.seal(link_message::leave, d).tag));
  CHECK(a.open(link_message::leave, d, b.seal(link_message::leave, d).tag));
  a.withdraw(handshake_role::responder);
  CHECK_FALSE(a.ready());
  // A link not set up refuses everything and seals nothing valid.
  peer_link none;
  CHECK_FALSE(none.ready());
  CHECK_FALSE(none.open(link_message::leave, d, a.seal(link_message::leave, d).tag));
  CHECK_FALSE(b.open(link_message::leave, d, none.seal(link_message::leave, d).tag));
}

TEST_CASE("the join and its answer are MAC'd once with the new link's keys",
          "[auth][link]") {
  auto t = transcript();
  auto i = derive_link_keys("s3cret", handshake_role::initiator, t);
  auto r = derive_link_keys("s3cret", handshake_role::responder, t);
  auto join = first_tag(i, link_message::join, number_digest(5));
  CHECK(join.counter == 0);
  CHECK(check_first_tag(r, link_message::join, number_digest(5), join));
  CHECK_FALSE(check_first_tag(r, link_message::join, number_digest(6), join));
  CHECK_FALSE(check_first_tag(i, link_message::join, number_digest(5), join));
  std::vector<member_info> members{member_info{"c", "10.0.0.3", 4002, 3}};
  auto reply = first_tag(r, link_message::join_reply, members_digest(members, 9));
  CHECK(check_first_tag(i, link_message::join_reply, members_digest(members, 9), reply));
  members[0].port = 4003;
  CHECK_FALSE(
    check_first_tag(i, link_message::join_reply, members_digest(members, 9), reply));
  // A join's tag (counter 0) never opens as a counted message.
  peer_link b;
  b.established(handshake_role::responder, r);
  CHECK_FALSE(b.open(link_message::join, number_digest(5), join));
}

TEST_CASE("a link replaced by a new handshake is accepted until its successor is used",
          "[auth][link]") {
  // a and b hold a link each way; b then starts a handshake with a again. b
  // takes the new keys when a answers its hello, a only when b's join
  // reaches it: meanwhile a seals under the link b just replaced. Before,
  // b refused those (a heartbeat refused made a synchronous call time out).
  peer_link a, b;
  establish(a, b, transcript(std::string(16, '1')));
  establish(b, a, b_initiated('2'));
  auto t3 = b_initiated('3');
  auto d = number_digest(7);
  CHECK(b.open(link_message::batch, d, a.seal(link_message::batch, d).tag)); // under t2
  b.established(handshake_role::initiator,
                derive_link_keys("s3cret", handshake_role::initiator, t3));
  auto before_join = a; // what a seals before b's join reaches it
  auto sealed = a.seal(link_message::batch, d);
  auto opened = b.open(link_message::batch, d, sealed.tag);
  REQUIRE(opened);
  CHECK(same_mac(*opened, sealed.ack)); // and a takes b's answer
  a.established(handshake_role::responder,
                derive_link_keys("s3cret", handshake_role::responder, t3));
  CHECK(b.open(link_message::batch, d, a.seal(link_message::batch, d).tag)); // under t3
  // From then on the replaced link is gone.
  before_join.seal(link_message::batch, d);
  CHECK_FALSE(
    b.open(link_message::batch, d, before_join.seal(link_message::batch, d).tag));
  // A handshake that fails after `established` brings back the link it
  // replaced, which the other side never stopped using.
  b.established(handshake_role::initiator,
                derive_link_keys("s3cret", handshake_role::initiator, b_initiated('4')));
  b.withdraw(handshake_role::initiator);
  CHECK(b.open(link_message::batch, d, a.seal(link_message::batch, d).tag)); // t3 again
  CHECK(a.open(link_message::batch, d, b.seal(link_message::batch, d).tag)); // b: t1
}

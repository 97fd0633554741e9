// The join handshake without actors (rule 9): HMAC-SHA-256, proofs bound to
// direction, both nonces and both identities, single-use challenges the
// responder keeps nothing of until a join proves the secret, and the refusal of names
// that are taken. Each refusal is counted by cause.
#include <catch2/catch.hpp>

#include <chrono>
#include <string>

#include "actors/cluster_auth.hpp"
#include "support/must.hpp"

using namespace karlton;
using namespace std::chrono_literals;
using karlton::testing::must;

namespace {

std::string hex(const std::string& raw) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : raw) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

handshake_party party(const std::string& name, const std::string& node) {
  return handshake_party{member_info{name, "127.0.0.1", 4000, 7}, node};
}

const clock::time_point t0{std::chrono::hours{1}};

// Node `name` of a cluster whose secret is `secret`; challenges stay open 5 s.
struct node {
  handshake_party me;
  handshake_state hs;
  node(const std::string& name, const std::string& secret = "s3cret")
    : me(party(name, "node-id-" + name)), hs(secret, me, 5s) {}
};

// What an honest handshake of `a` (initiator) with `b` sends, for replays.
struct recorded {
  std::string initiator_nonce;
  handshake_state::hello_reply reply;
  std::string initiator_proof;
};

recorded shake(node& a, node& b, const std::string& sender = "actor-a") {
  recorded r;
  r.initiator_nonce = must(a.hs.start());
  r.reply = must(b.hs.hello(sender, a.me, r.initiator_nonce, false, t0));
  r.initiator_proof =
    must(a.hs.answer(b.me, r.initiator_nonce, r.reply.nonce, r.reply.proof, false)).proof;
  REQUIRE(b.hs.join(sender, a.me, r.initiator_nonce, r.reply.nonce, r.initiator_proof,
                    false, t0));
  return r;
}

} // namespace

TEST_CASE("HMAC-SHA-256 matches the RFC 4231 test vectors", "[auth]") {
  CHECK(hex(hmac_sha256(std::string(20, '\x0b'), "Hi There")) ==
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  CHECK(hex(hmac_sha256("Jefe", "what do ya want for nothing?")) ==
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  // A key longer than the block is hashed first (test case 6).
  CHECK(hex(hmac_sha256(std::string(131, '\xaa'),
                        "Test Using Larger Than Block-Size Key - Hash Key First")) ==
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

TEST_CASE("a handshake proof holds only for its direction, nonces, identities and secret",
          "[auth]") {
  handshake_transcript t{party("a", "na"), party("b", "nb"), std::string(16, 'i'),
                         std::string(16, 'r')};
  auto proof = handshake_proof("s3cret", handshake_role::initiator, t);
  CHECK(proof.size() == 32);
  CHECK(check_handshake_proof("s3cret", handshake_role::initiator, t, proof));
  CHECK_FALSE(check_handshake_proof("other", handshake_role::initiator, t, proof));
  CHECK_FALSE(check_handshake_proof("s3cret", handshake_role::responder, t, proof));
  CHECK_FALSE(
    check_handshake_proof("s3cret", handshake_role::initiator, t, proof.substr(1)));
  auto changed = [&](auto edit) {
    auto u = t;
    edit(u);
    return check_handshake_proof("s3cret", handshake_role::initiator, u, proof);
  };
  CHECK_FALSE(changed([](auto& u) { std::swap(u.initiator, u.responder); }));
  CHECK_FALSE(changed([](auto& u) { std::swap(u.initiator_nonce, u.responder_nonce); }));
  CHECK_FALSE(changed([](auto& u) { u.initiator_nonce[0] = 'x'; }));
  CHECK_FALSE(changed([](auto& u) { u.responder_nonce[15] = 'x'; }));
  CHECK_FALSE(changed([](auto& u) { u.initiator.info.name = "c"; }));
  CHECK_FALSE(changed([](auto& u) { u.responder.info.port = 4001; }));
  CHECK_FALSE(changed([](auto& u) { u.initiator.info.incarnation = 8; }));
  CHECK_FALSE(changed([](auto& u) { u.responder.node = "relay"; }));
  // Length prefixes: moving bytes from one field to the next changes the proof.
  CHECK_FALSE(changed([](auto& u) {
    u.initiator.info.name = "a1";
    u.initiator.info.host = "27.0.0.1";
  }));
}

TEST_CASE("two nodes with the secret admit each other and use up the challenge",
          "[auth]") {
  node a{"a"}, b{"b"};
  shake(a, b);
  CHECK(b.hs.used_challenges() == 1);
  CHECK(a.hs.counters.total == 0);
  CHECK(b.hs.counters.total == 0);
}

TEST_CASE("a node without the secret is refused as initiator and as responder",
          "[auth]") {
  node a{"a"}, b{"b"}, x{"x", "wrong"};
  // x joins b: b's proof does not verify at x, which never sends its own.
  auto nx = must(x.hs.start());
  auto reply = must(b.hs.hello("actor-x", x.me, nx, false, t0));
  CHECK_FALSE(x.hs.answer(b.me, nx, reply.nonce, reply.proof, false));
  // Had it sent one anyway, b refuses it.
  handshake_transcript t{x.me, b.me, nx, reply.nonce};
  CHECK_FALSE(b.hs.join("actor-x", x.me, nx, reply.nonce,
                        handshake_proof("wrong", handshake_role::initiator, t), false,
                        t0));
  // a joins x: x's proof does not verify at a.
  auto na = must(a.hs.start());
  auto xr = must(x.hs.hello("actor-a", a.me, na, false, t0));
  CHECK_FALSE(a.hs.answer(x.me, na, xr.nonce, xr.proof, false));
  CHECK(b.hs.counters.bad_proofs == 1);
  CHECK(a.hs.counters.bad_proofs == 1);
}

TEST_CASE("a reflected proof is refused and counted", "[auth]") {
  // The attack of issue 11: the attacker, without the secret, opens a
  // challenge at b claiming to be c, has c sign b's nonce, and joins b as c.
  node b{"b"}, c{"c"};
  auto claim_c = handshake_party{c.me.info, "node-id-attacker"};
  auto at_b = must(b.hs.hello("attacker", claim_c, std::string(16, 'n'), false, t0));
  // c answers a hello that carries b's nonce; it signs it as a responder,
  // together with a fresh nonce of its own.
  auto at_c = must(
    c.hs.hello("attacker", party("mallory", "node-id-attacker"), at_b.nonce, false, t0));
  CHECK_FALSE(b.hs.join("attacker", claim_c, std::string(16, 'n'), at_b.nonce, at_c.proof,
                        false, t0));
  // Nor does b's own proof, sent back to it, pass.
  auto again = must(b.hs.hello("attacker", claim_c, std::string(16, 'm'), false, t0));
  CHECK_FALSE(b.hs.join("attacker", claim_c, std::string(16, 'm'), again.nonce,
                        again.proof, false, t0));
  CHECK(b.hs.counters.bad_proofs == 2);
  CHECK(b.hs.counters.total == 2);
  // An initiator does not take its own kind of proof back as the responder's.
  node a{"a"};
  auto na = must(a.hs.start());
  handshake_transcript t{a.me, b.me, na, std::string(16, 'r')};
  auto initiators = handshake_proof("s3cret", handshake_role::initiator, t);
  CHECK_FALSE(a.hs.answer(b.me, na, t.responder_nonce, initiators, false));
  CHECK(a.hs.counters.bad_proofs == 1);
}

TEST_CASE("a proof made for the other direction is refused", "[auth]") {
  node a{"a"}, b{"b"};
  auto na = must(a.hs.start());
  auto reply = must(b.hs.hello("actor-a", a.me, na, false, t0));
  // A join carrying the responder's proof of this very handshake.
  handshake_transcript t{a.me, b.me, na, reply.nonce};
  CHECK(reply.proof == handshake_proof("s3cret", handshake_role::responder, t));
  CHECK_FALSE(b.hs.join("actor-a", a.me, na, reply.nonce, reply.proof, false, t0));
  // The roles swapped: a proof from b as initiator towards a.
  handshake_transcript swapped{b.me, a.me, reply.nonce, na};
  auto na2 = must(a.hs.start());
  auto reply2 = must(b.hs.hello("actor-a", a.me, na2, false, t0));
  CHECK_FALSE(b.hs.join("actor-a", a.me, na2, reply2.nonce,
                        handshake_proof("s3cret", handshake_role::initiator, swapped),
                        false, t0));
  CHECK(b.hs.counters.bad_proofs == 2);
}

TEST_CASE("a replayed handshake is refused and counted", "[auth]") {
  node a{"a"}, b{"b"};
  auto r = shake(a, b);
  // The join again: its challenge is used up.
  CHECK_FALSE(b.hs.join("actor-a", a.me, r.initiator_nonce, r.reply.nonce,
                        r.initiator_proof, false, t0));
  CHECK(b.hs.counters.replays == 1);
  // The whole handshake again, from an attacker: the hello's nonce was seen.
  CHECK_FALSE(b.hs.hello("attacker", a.me, r.initiator_nonce, false, t0));
  CHECK(b.hs.counters.replays == 2);
  // With a nonce of its own, b answers with a fresh one, so the recorded
  // join's proof is for another handshake.
  auto fresh = must(b.hs.hello("attacker", a.me, std::string(16, 'z'), false, t0));
  CHECK_FALSE(b.hs.join("attacker", a.me, std::string(16, 'z'), fresh.nonce,
                        r.initiator_proof, false, t0));
  CHECK(b.hs.counters.bad_proofs == 1);
  // A join from an actor that sent no hello has nothing to answer.
  CHECK_FALSE(b.hs.join("stranger", a.me, r.initiator_nonce, std::string(16, 'q'),
                        r.initiator_proof, false, t0));
  CHECK(b.hs.counters.replays == 3);
  // The recorded answer of b, replayed to a's next hello, fails too.
  auto na = must(a.hs.start());
  CHECK_FALSE(a.hs.answer(b.me, na, r.reply.nonce, r.reply.proof, false));
  CHECK(a.hs.counters.bad_proofs == 1);
  CHECK(b.hs.counters.total == 4);
}

TEST_CASE("a handshake claiming the node's own name or a live member's is refused",
          "[auth]") {
  node a{"a"}, b{"b"};
  // b's own name, as initiator (a hello) and as responder (an answer).
  auto as_b = party("b", "node-id-attacker");
  CHECK_FALSE(b.hs.hello("attacker", as_b, std::string(16, '1'), false, t0));
  auto nb = must(b.hs.start());
  auto impostor = party("b", "node-id-attacker");
  handshake_transcript t{b.me, impostor, nb, std::string(16, 'r')};
  CHECK_FALSE(b.hs.answer(impostor, nb, t.responder_nonce,
                          handshake_proof("s3cret", handshake_role::responder, t),
                          false));
  CHECK(b.hs.counters.names == 2);
  // A live member's name, reached through another actor.
  CHECK_FALSE(b.hs.hello("attacker", a.me, std::string(16, '2'), true, t0));
  auto na = must(a.hs.start());
  auto fine = must(b.hs.hello("actor-a", a.me, na, false, t0));
  CHECK_FALSE(a.hs.answer(b.me, na, fine.nonce, fine.proof, true));
  CHECK(a.hs.counters.names == 1);
  // The name was free at the hello and taken by the join: refused then too.
  auto proof = must(a.hs.answer(b.me, na, fine.nonce, fine.proof, false)).proof;
  CHECK_FALSE(b.hs.join("actor-a", a.me, na, fine.nonce, proof, true, t0));
  CHECK(b.hs.counters.names == 4);
  CHECK(b.hs.counters.total == 4);
  // Once the member is gone, the name may join again.
  shake(a, b);
}

TEST_CASE("a challenge serves one join, of its sender and hello, and not for long",
          "[auth]") {
  node a{"a"}, b{"b"};
  struct opened {
    std::string mine;  // a's hello's nonce
    std::string nonce; // b's: the challenge
    std::string proof; // a's, for the join
  };
  auto open = [&](const std::string& sender, clock::time_point at = t0) {
    auto n = must(a.hs.start());
    auto reply = must(b.hs.hello(sender, a.me, n, false, at));
    return opened{n, reply.nonce,
                  must(a.hs.answer(b.me, n, reply.nonce, reply.proof, false)).proof};
  };
  auto join = [&](const std::string& sender, const opened& o, clock::time_point at = t0) {
    return static_cast<bool>(
      b.hs.join(sender, a.me, o.mine, o.nonce, o.proof, false, at));
  };
  auto first = open("s1");
  auto second = open("s2", t0 + 1s);
  CHECK(b.hs.used_challenges() == 0);
  CHECK(join("s1", first, t0 + 5s)); // open 5 s: still good
  CHECK(b.hs.used_challenges() == 1);
  CHECK_FALSE(join("s1", first, t0 + 5s)); // used up
  // Past the join timeout (5 s) a challenge is no good, and the used ones
  // are forgotten.
  CHECK_FALSE(join("s2", second, t0 + 7s));
  CHECK(b.hs.used_challenges() == 0);
  CHECK(b.hs.counters.replays == 2);
  // Nor before it was made (its time is its own: a clock gone back).
  auto later = open("s3", t0 + 2s);
  CHECK_FALSE(join("s3", later, t0 + 1s));
  // A second hello of one sender gets a second challenge: each is answered
  // by its own join.
  auto older = open("s4");
  auto newer = open("s4");
  CHECK(join("s4", newer));
  CHECK(join("s4", older));
  // A challenge is its sender's and its hello's: another nonce or party,
  // or its time changed, and it is not ours.
  auto kept = open("s5");
  auto other_nonce = kept;
  other_nonce.mine = std::string(16, 'o');
  CHECK_FALSE(join("s5", other_nonce));
  auto moved = kept; // made 1 ns later: inside the window, so only its MAC fails
  moved.nonce[7] = static_cast<char>(moved.nonce[7] ^ 1);
  CHECK_FALSE(join("s5", moved, t0 + 1s));
  auto as_other = a.me;
  as_other.node = "node-id-elsewhere";
  CHECK_FALSE(b.hs.join("s5", as_other, kept.mine, kept.nonce, kept.proof, false, t0));
  CHECK(b.hs.counters.bad_proofs == 0); // each refused before its proof's check
  CHECK(join("s5", kept));
  // A nonce of the wrong size is refused.
  CHECK_FALSE(b.hs.hello("s6", a.me, "short", false, t0));
  // A stranger's time, the lowest there is: refused, no arithmetic
  // overflows (the first version subtracted it from now: signed overflow,
  // which the UBSan build aborts on).
  auto lowest = kept;
  lowest.nonce = std::string("\x80", 1) + std::string(15, '\0');
  CHECK_FALSE(join("s5", lowest, t0 + 1s));
}

TEST_CASE("a node that answered no hello takes no join", "[auth]") {
  // Its challenge key is drawn at its first hello: before, every join is a
  // stranger's (a MAC under an empty key is anyone's to make).
  node a{"a"}, b{"b"}, c{"c"};
  auto na = must(a.hs.start());
  auto reply = must(c.hs.hello("actor-a", a.me, na, false, t0));
  auto proof = must(a.hs.answer(c.me, na, reply.nonce, reply.proof, false)).proof;
  // The same handshake, taken to b, which never saw a's hello.
  CHECK_FALSE(b.hs.join("actor-a", a.me, na, reply.nonce, proof, false, t0));
  CHECK(b.hs.counters.replays == 1);
}

TEST_CASE("a flood of hellos holds no joiner out", "[auth]") {
  // Before, a responder kept each hello's challenge, at most 1,024 of them:
  // hellos from anyone who reached the port, faster than a joiner's round
  // trip, pushed the joiner's challenge out. Now it keeps none.
  node a{"a"}, b{"b"};
  auto na = must(a.hs.start());
  auto reply = must(b.hs.hello("actor-a", a.me, na, false, t0));
  for (int i = 0; i < 20'000; ++i) {
    auto forged = must(a.hs.start());
    REQUIRE(b.hs.hello("flooder-" + std::to_string(i % 7), party("f", "node-id-f"),
                       forged, false, t0));
  }
  auto proof = must(a.hs.answer(b.me, na, reply.nonce, reply.proof, false)).proof;
  CHECK(b.hs.join("actor-a", a.me, na, reply.nonce, proof, false, t0 + 1s));
  CHECK(b.hs.used_challenges() == 1);
}

TEST_CASE("a name or host longer than the limits is refused before anything is kept",
          "[auth]") {
  node a{"a"}, b{"b"};
  auto long_name = a.me;
  long_name.info.name = std::string(max_node_name_bytes + 1, 'n');
  auto long_host = a.me;
  long_host.info.host = std::string(max_node_host_bytes + 1, 'h');
  // As responder: refused at the hello, no challenge opened, nonce not kept
  // (the same nonce is fine in an honest hello afterwards).
  CHECK_FALSE(b.hs.hello("s1", long_name, std::string(16, '1'), false, t0));
  CHECK_FALSE(b.hs.hello("s2", long_host, std::string(16, '2'), false, t0));
  CHECK(b.hs.counters.names == 2);
  CHECK(b.hs.counters.total == 2);
  CHECK(b.hs.hello("s1", a.me, std::string(16, '1'), false, t0));
  // As initiator: a responder's answer with a name too long is refused.
  auto n = must(a.hs.start());
  auto reply = must(b.hs.hello("s3", a.me, n, false, t0));
  auto long_b = b.me;
  long_b.info.name = std::string(max_node_name_bytes + 1, 'b');
  CHECK_FALSE(a.hs.answer(long_b, n, reply.nonce, reply.proof, false));
  CHECK(a.hs.counters.names == 1);
  // At the limits, a handshake goes through.
  auto longest = a.me;
  longest.info.name = std::string(max_node_name_bytes, 'n');
  longest.info.host = std::string(max_node_host_bytes, 'h');
  CHECK(b.hs.hello("s4", longest, std::string(16, '4'), false, t0));
  CHECK(b.hs.counters.total == 2);
}

TEST_CASE("a hello forged in a node's name leaves that node's challenge open", "[auth]") {
  // CAF lets a host claim any sender: before, challenges were kept by sender,
  // and a forged hello in a's name, sent between a's hello and its join,
  // replaced a's challenge, so a forger could hold a out.
  node a{"a"}, b{"b"};
  auto na = must(a.hs.start());
  auto reply = must(b.hs.hello("actor-a", a.me, na, false, t0));
  auto forged = must(b.hs.hello("actor-a", a.me, std::string(16, 'f'), false, t0));
  auto proof = must(a.hs.answer(b.me, na, reply.nonce, reply.proof, false)).proof;
  // A join naming a's challenge from another sender is refused and uses
  // nothing up (only a saw b's nonce, but the sender is checked too).
  CHECK_FALSE(b.hs.join("intruder", a.me, na, reply.nonce, proof, false, t0));
  CHECK(b.hs.used_challenges() == 0);
  CHECK(b.hs.join("actor-a", a.me, na, reply.nonce, proof, false, t0));
  CHECK(reply.nonce != forged.nonce);
}

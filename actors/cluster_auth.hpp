// The join handshake, without actors (rule 9): a mutual challenge-response
// in which each node proves it knows the cluster secret with HMAC-SHA-256
// (OpenSSL). The secret never crosses the network.
//
//   I -> R: (hello, I, nonce_i)
//   R -> I: (R, nonce_r, MAC(secret, "karlton-v3 responder" | T))
//   I checks R's proof, and only then
//   I -> R: (join, I, nonce_i, nonce_r, MAC(secret, "karlton-v3 initiator" | T), seq)
//
// The transcript T is both identities (member info and CAF node id) and both
// nonces, each field length-prefixed. A proof therefore holds for one
// direction of one handshake between two named nodes only: it cannot be
// reflected back, sent in the other direction, relayed through a third
// process (its CAF node id is not the one the prover saw), or replayed (a
// responder's nonce is fresh, good for one join, and only for a while). A
// node never signs bytes a peer chose on their own: every transcript holds a
// fresh nonce of the signer's. A handshake claiming this node's own name, or
// the name of a live member reached through another actor, is refused: a
// name is only taken over once its member is gone.
//
// The responder keeps no challenge for a hello (a SYN cookie; only the
// hello's nonce, among the last few, to spot a replay): its nonce is the
// time it answered and a MAC, under a key only it has, of that time, the
// hello's sender and the initiator's identity and nonce, which the join
// repeats. So hellos, which anyone who reaches the port can send, cannot
// fill a table and push a real joiner's challenge out; only joins that
// prove the secret are remembered (to use each nonce once). The time is this
// process's steady clock: it tells a stranger how long the machine has been
// up, nothing more.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <set>
#include <string>

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include <karlton/base/clock.hpp>
#include <karlton/messages/cluster.hpp>
#include <karlton/messages/errors.hpp>

namespace karlton {

/// Bytes of a nonce: 128 random bits never repeat in practice (2^64
/// handshakes before a collision becomes likely).
constexpr size_t nonce_size = 16;

/// Initiators' nonces a responder remembers, to recognize a replayed hello
/// (an honest initiator never sends one twice). Past that many a replay is
/// still refused, since the responder's own nonce is fresh; it is then only
/// counted as a bad proof instead.
constexpr size_t remembered_nonces = 4 * 1024;

/// HMAC-SHA-256 (RFC 2104, FIPS 180-4) of `message` under `key`: 32 raw bytes.
std::string hmac_sha256(const std::string& key, const std::string& message);

/// `nonce_size` bytes from OpenSSL's CSPRNG.
caf::expected<std::string> random_nonce();

/// One side of a handshake: its member info and CAF node id (as text, the
/// transport's identity of the process it runs in).
struct handshake_party {
  member_info info;
  std::string node;
};

/// Which side of the handshake a proof comes from.
enum class handshake_role { initiator, responder };

/// Everything a proof is bound to.
struct handshake_transcript {
  handshake_party initiator;
  handshake_party responder;
  std::string initiator_nonce;
  std::string responder_nonce;
};

/// The keys of the link a successful handshake sets up between two nodes, as
/// one side sees them: one per direction, so nothing one side MACs verifies
/// as sent by the other. Derived from the secret and the transcript, so they
/// never cross the network, and fresh with every handshake.
struct link_keys {
  std::string send;    ///< what this side MACs its messages with
  std::string receive; ///< what it checks the other side's with
};

/// The link keys of handshake `t` as seen by `role`: HMAC-SHA-256 of
/// `secret` over `"karlton-v3 link initiator"` (what the initiator sends
/// with) or `"karlton-v3 link responder"`, then `t`, as the proofs are; the
/// labels differ from the proofs', so no proof, which crosses the network,
/// is a key.
link_keys derive_link_keys(const std::string& secret, handshake_role role,
                           const handshake_transcript& t);

/// What `role` sends to show it knows `secret` in the handshake `t`.
std::string handshake_proof(const std::string& secret, handshake_role role,
                            const handshake_transcript& t);

/// True if `proof` is `handshake_proof(secret, role, t)` (CRYPTO_memcmp:
/// constant time).
bool check_handshake_proof(const std::string& secret, handshake_role role,
                           const handshake_transcript& t, const std::string& proof);

/// Refusals of handshakes, by cause; `total` counts each once.
struct handshake_counters {
  uint64_t total = 0;
  uint64_t bad_proofs = 0; ///< wrong secret, reflected, other direction, other nodes
  uint64_t replays = 0;    ///< a hello's nonce seen before; a join without a challenge
  uint64_t names = 0;      ///< our own name, a live member's, or too long
};

/// Adds `c` to the refusals counted in `s`.
inline void add_counters(peer_stats& s, const handshake_counters& c) {
  s.joins_refused += c.total;
  s.proofs_refused += c.bad_proofs;
  s.replays_refused += c.replays;
  s.names_refused += c.names;
}

/// Both sides of this node's handshakes: its nonces, the challenges it has
/// open as responder, and every decision to admit or refuse a peer.
class handshake_state {
public:
  /// `open_for`: how long a challenge waits for its join.
  handshake_state(std::string secret, handshake_party me,
                  std::chrono::nanoseconds open_for);

  const handshake_party& me() const noexcept { return me_; }

  // -- as initiator -----------------------------------------------------------

  /// A fresh nonce for our hello.
  caf::expected<std::string> start() { return random_nonce(); }

  /// Checks the responder's answer to our hello (`my_nonce`): its proof, that
  /// its name and host are not too long, and that its name is neither ours nor, if
  /// `name_taken`, a live member's reached through another actor.
  struct answered {
    std::string proof; ///< ours, for the join
    link_keys keys;    ///< of the link to `them`, ours as initiator
  };
  caf::expected<answered> answer(const handshake_party& them, const std::string& my_nonce,
                                 const std::string& their_nonce,
                                 const std::string& their_proof, bool name_taken);

  // -- as responder -----------------------------------------------------------

  struct hello_reply {
    std::string nonce;
    std::string proof;
  };

  /// A hello from `sender` (an opaque key of the actor that sent it):
  /// refuses a name or host longer than `max_node_name_bytes` or
  /// `max_node_host_bytes`, a nonce seen before, our own name and a taken
  /// one, else answers with a fresh nonce that is its challenge: the time
  /// `now` and a MAC binding it to `sender`, `them` and `their_nonce`.
  /// Nothing is kept but the nonce (to spot a replayed hello), so a flood of
  /// hellos holds nobody out.
  caf::expected<hello_reply> hello(const std::string& sender, const handshake_party& them,
                                   const std::string& their_nonce, bool name_taken,
                                   clock::time_point now);

  struct admitted {
    link_keys keys;           ///< of the link to `them`, ours as responder
    clock::time_point opened; ///< when we answered its hello: the last of ours it took
  };

  /// The join of `sender`, as `them` (its node id as the sender's), to the
  /// challenge `my_nonce`, which we gave the hello of `their_nonce`: admitted if we
  /// made that challenge for this sender, party and nonce no longer than
  /// `open_for` ago, it was not used, the initiator's proof holds and the
  /// name is still free. A proven join uses its challenge up, even if the
  /// name is taken.
  caf::expected<admitted> join(const std::string& sender, const handshake_party& them,
                               const std::string& their_nonce,
                               const std::string& my_nonce, const std::string& proof,
                               bool name_taken, clock::time_point now);

  /// Challenges used by a proven join and not yet expired.
  size_t used_challenges() const noexcept { return used_.size(); }

  handshake_counters counters;

private:
  caf::error refuse(uint64_t& cause, std::string why, errc code = errc::invalid_option);
  caf::error check_name(const std::string& name, bool name_taken);
  caf::error check_size(const member_info& them);
  /// The MAC half of a challenge opened at `opened` (its time half).
  std::string challenge_mac(const std::string& sender, const handshake_party& them,
                            const std::string& their_nonce,
                            const std::string& opened) const;

  std::string secret_;
  handshake_party me_;
  std::chrono::nanoseconds open_for_;
  std::string challenge_key_;          // drawn at the first hello; never leaves
  std::set<std::string> seen_;         // initiators' nonces, the last few
  std::deque<std::string> seen_order_; // ... oldest first
  std::map<std::string, clock::time_point> used_; // challenges proven joins used
};

} // namespace karlton

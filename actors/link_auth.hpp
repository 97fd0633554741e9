// Per-link message authentication (rule 9), without actors. The join
// handshake (actors/cluster_auth.hpp) ends with both nodes holding the keys
// of their link, derived from the secret and the handshake's transcript;
// from then on every message a member sends that changes state at the other
// (the join and its reply, each batch and heartbeat, a leave) carries a
// `link_tag`: HMAC-SHA-256 under the sender's key over
//
//   "karlton-v3 " kind | counter | sent | echo | SHA-256(content)
//
// where the content is the message's fields, each length-prefixed, and the
// counter grows by one with each message on the link in that direction
// (`sent` and `echo`, a batch's clock readings for the read lease, are 0 in
// the other kinds: see `link_tag`). The
// receiver checks the tag before it acts on the message and takes each
// counter once (and none far below the highest taken): a forged, altered or
// replayed message is refused. The content is hashed once per batch, whatever the number
// of members; each member costs one HMAC over under 80 bytes to seal and one to check
// (and one each for the acknowledgement, bound to the batch's counter).
//
// What is not covered: the messages are not encrypted (anyone on the path
// reads which keys are invalidated; `tls=true` hides them), and the
// handshake's hello and its answer carry proofs instead (no link exists yet).
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "actors/cluster_auth.hpp"
#include <karlton/base/clock.hpp>
#include <karlton/messages/cluster.hpp>

namespace karlton {

/// `t` as a tag carries a clock reading (`link_tag::sent`, `echo`): ticks of
/// the steady clock, a time before its epoch as 0.
inline uint64_t tag_reading(clock::time_point t) noexcept {
  return static_cast<uint64_t>(
    std::max<clock::time_point::rep>(0, t.time_since_epoch().count()));
}

/// The time point of our clock reading `ticks` that a member echoed, no
/// later than `now`: no honest member echoes a time we have not reached.
inline clock::time_point from_tag_reading(uint64_t ticks,
                                          clock::time_point now) noexcept {
  using duration = clock::time_point::duration;
  return clock::time_point{
    duration{static_cast<duration::rep>(std::min(ticks, tag_reading(now)))}};
}

/// The kind of message a link MAC is for: part of what it covers, so a MAC
/// made for one kind never verifies as another's.
enum class link_message : uint8_t {
  join = 1,   ///< the initiator's join (its next sequence number)
  join_reply, ///< the responder's answer (its members and next number)
  batch,      ///< invalidations, or an empty batch as a heartbeat
  leave,      ///< a member's goodbye (its next sequence number)
  ack,        ///< the acknowledgement of a batch, bound to its counter
};

/// `hmac_sha256(key, message)`, computed without OpenSSL's HMAC(), which
/// fetches its algorithms anew on every call (4 times slower for a link MAC).
std::string fast_hmac_sha256(const std::string& key, const std::string& message);

/// SHA-256 of a batch's fields (origin, incarnation, first number, and each
/// invalidation's kind, cache, name, data and issue time), length-prefixed.
std::string batch_digest(const invalidation_batch& b);

/// SHA-256 of a join reply's member list and next sequence number.
std::string members_digest(const std::vector<member_info>& members, uint64_t next_seq);

/// SHA-256 of one number (the next sequence number of a join or a leave).
std::string number_digest(uint64_t x);

/// The MAC under `key` of message `kind` numbered `counter` whose content
/// hashes to `digest`, with the clock readings of a batch's tag.
std::string link_mac(const std::string& key, link_message kind, uint64_t counter,
                     const std::string& digest, uint64_t sent = 0, uint64_t echo = 0);

/// True if `a` and `b` are equal and not empty, compared in constant time
/// (CRYPTO_memcmp).
bool same_mac(const std::string& a, const std::string& b);

/// The tag of a join or join reply (`kind`), sent once per link: counter 0,
/// which `peer_link::open` never accepts, so it cannot be replayed as
/// anything else; the keys are fresh with each handshake.
link_tag first_tag(const link_keys& keys, link_message kind, const std::string& digest);

/// True if `t` is the tag `first_tag` makes on the other side of the link.
bool check_first_tag(const link_keys& keys, link_message kind, const std::string& digest,
                     const link_tag& t);

/// A node's links to one member: one per role this node played in a
/// handshake with it. Both nodes may start a handshake with each other at
/// once (each reconnecting after a loss), and the two may complete in either
/// order on either side: each side keeps both links, sends under the one it
/// completed last and accepts either, each with its own counter. A new
/// handshake in the same role replaces that link, and the one it replaced is
/// still accepted until a message arrives under its successor: the other side
/// takes the new keys only when the handshake's last message reaches it, and
/// seals under the old ones until then (two nodes joining each other again at
/// once: a heartbeat refused, so a synchronous call timed out, in about 1 run
/// of 400 under `stress --cpu 4`). Only the owning actor may call this.
class peer_link {
public:
  /// A handshake in which this node was `my_role` completed with `keys`:
  /// the link of that role, and the one to send under from now on.
  void established(handshake_role my_role, link_keys keys);

  /// The handshake in which this node was `my_role` failed after
  /// `established` (the other side never took its keys): that link goes (the
  /// one it replaced, if any, comes back), and the other role's, if any, is
  /// sent under again.
  void withdraw(handshake_role my_role);

  /// True once a handshake completed.
  bool ready() const noexcept { return current_ >= 0; }

  /// A message to send and the acknowledgement that proves it was received.
  struct sealed {
    link_tag tag;    ///< to send with the message
    std::string ack; ///< what the member's answer must carry (`open`'s result)
  };

  /// Tags the next message of `kind` whose content hashes to `digest`, with
  /// a batch's clock readings `sent` and `echo` (see `link_tag`).
  sealed seal(link_message kind, const std::string& digest, uint64_t sent = 0,
              uint64_t echo = 0);

  /// Checks a received message of `kind` whose content hashes to `digest`
  /// against either link: the MAC, and a counter not taken before on that
  /// link and less than `replay_window` below the highest taken. If it
  /// holds, the counter is taken and the result is the MAC of the
  /// acknowledgement to answer with; else nullopt (forged, altered,
  /// replayed, too old, or under a link replaced since).
  std::optional<std::string> open(link_message kind, const std::string& digest,
                                  const link_tag& t);

  /// True if `counter` could still be taken on either link: what `open`
  /// checks first, asked before the content is hashed for it.
  bool plausible(uint64_t counter) const noexcept;

  /// How far below the highest counter taken a message may still arrive
  /// (once): CAF delivers one actor's messages to another in order, so this
  /// only spares an honest message that a change of connection overtook, as
  /// IPsec's and DTLS's windows do (RFC 4303, 3.4.3).
  static constexpr uint64_t replay_window = 64;

private:
  struct one {
    link_keys keys;
    uint64_t sent = 0;     // the counter of the last message sealed
    uint64_t received = 0; // the highest counter taken
    uint64_t seen = 0;     // bit i: `received - i` was taken
    bool set = false;
  };

  static bool fresh(const one& l, uint64_t counter);
  static void take(one& l, uint64_t counter);
  std::array<one, 2> links_;    // by this node's role: initiator, responder
  std::array<one, 2> replaced_; // each role's link before its latest handshake
  int current_ = -1;            // the one of `links_` sent under
};

} // namespace karlton

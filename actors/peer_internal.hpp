// Shared by the two halves of the peer actor: peer_actor.cpp (the behavior,
// and the invalidation traffic: batches, applies, heartbeats) and
// peer_membership.cpp (joins, handshakes, losses and leaves). Not for other
// code: it is the actor's inside.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <caf/result.hpp>

#include "actors/peer_actor.hpp"

namespace karlton::peer_detail {

using self_ptr = peer_actor_impl*;

/// The most bytes of a line's text that reach the log: a line holds at most
/// a few names (`max_node_name_bytes` each) and an error, so this cuts only
/// what another node made long (an unknown message, a long error).
constexpr size_t max_log_line_bytes = 1024;

/// One line to the node's log (see `peer_options::log`), escaped
/// (`printable`) and cut at `max_log_line_bytes`.
void log(self_ptr self, const std::string& line);

/// Makes the distributed caches safe again after we may have missed
/// invalidations (rule 6): clears them, or, with a repair TTL (unless
/// `always_clear`: a node that stalled past its lease), lets every entry live
/// at most that long.
void repair(self_ptr self, const std::string& why, bool always_clear = false);

/// Extends the read lease as far as what every member took from us allows
/// (peer_actor.cpp).
void renew_lease(self_ptr self);

/// Installs what the peer does with messages it did not ask for: errors not
/// answering a request of ours and messages it does not understand are
/// counted, logged once per thousand and dropped (peer_mailbox.cpp).
void ignore_strays(self_ptr self);

/// Node `by` refused our join because a live member has our name (`refused`),
/// or let us join (not `refused`): while any refuses, we serve no hits.
void note_name_refusal(self_ptr self, const std::string& by, bool refused);

// -- membership (peer_membership.cpp) ---------------------------------------------

/// How often `connect` tries a handshake whose connection was lost: CAF
/// 0.17.6 drops both connections when two nodes connect to each other at
/// once (each closes, as redundant, the one the other kept: 58 of 3,000
/// simultaneous connects of two systems on loopback, 7 of 3,000 under
/// `stress --cpu 4`), and a new connection works. Tried again at once: both
/// nodes then race again, which measured rare enough (README, Cluster). Only
/// our own monitor's down message counts as lost: another node can answer
/// with any error, but not make us retry.
constexpr int max_handshake_attempts = 3;

/// Connects to `host:port` and runs the join handshake as its initiator;
/// `done` hears the outcome. A handshake whose connection was lost is tried
/// again, `attempts` times in all.
void connect(self_ptr self, const std::string& host, uint16_t port,
             std::function<void(caf::error)> done, int attempts = max_handshake_attempts);

/// Joins a member we heard of or lost; on failure, tries again later.
/// `retry_of`: the chain whose retry this is (0: none; see member_table).
void join_member(self_ptr self, member_info target, uint64_t retry_of = 0);

/// The handshake as responder: the answer to `sender`'s hello, and its join.
caf::result<member_info, std::string, std::string>
answer_hello(self_ptr self, const caf::strong_actor_ptr& sender, const member_info& from,
             const std::string& nonce);
caf::result<std::vector<member_info>, uint64_t, link_tag>
admit(self_ptr self, const caf::strong_actor_ptr& sender, const member_info& from,
      const std::string& their_nonce, const std::string& my_nonce,
      const std::string& proof, uint64_t next_seq, const link_tag& tag);

/// A member's connection went down: it is lost (repair, reconnection).
void on_down(self_ptr self, const caf::down_msg& dm);

/// Members silent for longer than the member timeout at `now` are lost.
void drop_silent_members(self_ptr self, clock::time_point now);

/// This node leaves: every member is told where our numbering stands.
void leave(self_ptr self);

/// The member at `sender` left cleanly, its numbering standing at `next_seq`.
/// False if the leave's link MAC (`tag`) does not verify: ignored, counted.
bool member_left(self_ptr self, const caf::strong_actor_ptr& sender, uint64_t next_seq,
                 const link_tag& tag);

/// The operator says `name`, a member lost without leaving (or one we never
/// reached), is gone for good: synchronous calls stop naming it and nobody
/// reconnects to it. An error for a current member or a name not lost.
caf::error forget_member(self_ptr self, const std::string& name);

/// Counts (in `unauthenticated_messages`) and logs, once per thousand so a
/// flood cannot fill the log, a message ignored as not authenticated.
void count_unauthenticated(self_ptr self, const std::string& what);

} // namespace karlton::peer_detail

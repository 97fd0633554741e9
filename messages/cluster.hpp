// The messages between the nodes of a cluster, and between a node's shards
// and its peer actor: invalidations ("delete, don't update": values never
// travel), batches of them with per-origin sequence numbers, and the join
// handshake.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <caf/atom.hpp>
#include <caf/meta/type_name.hpp>

#include <karlton/messages/stats.hpp>

namespace karlton {

/// What an invalidation removes on the nodes that receive it.
enum class invalidation_kind : uint8_t {
  key,   ///< `name` in cache `cache`, erased (and, there, what depends on it)
  tag,   ///< everything depending on tag `name`, in every cache
  event, ///< everything depending on event `name`; its subscribers get `data`
  clear, ///< every entry of cache `cache`
  /// `name` in cache `cache`, put on its origin: receivers drop their copy;
  /// what depends on it stays, as on the origin (a put does not cascade).
  written,
};

/// One invalidation. `issued_ns` is the origin's wall clock when it was
/// made, so receivers can measure how long it took to reach them (the
/// clocks of the nodes must agree for that figure to mean anything).
struct invalidation {
  invalidation_kind kind = invalidation_kind::key; ///< what `name` is
  std::string cache;     ///< the cache it applies to (empty for `tag` and `event`)
  std::string name;      ///< the key, tag or event
  std::string data;      ///< the event's payload for its subscribers (`event` only)
  int64_t issued_ns = 0; ///< the origin's `wall_clock_ns()` when made
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, invalidation& x) {
  return f(caf::meta::type_name("karlton::invalidation"), x.kind, x.cache, x.name, x.data,
           x.issued_ns);
}

/// Invalidations of one origin, numbered `first_seq`, `first_seq + 1`, ...
/// in the order it issued them. A receiver that expected a lower number
/// missed some and cannot trust its distributed caches (rule 6).
struct invalidation_batch {
  std::string origin;              ///< the issuing node's name
  uint64_t incarnation = 0;        ///< a new one each time the origin starts
  uint64_t first_seq = 0;          ///< the number of `items[0]`
  std::vector<invalidation> items; ///< in the order issued
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, invalidation_batch& x) {
  return f(caf::meta::type_name("karlton::invalidation_batch"), x.origin, x.incarnation,
           x.first_seq, x.items);
}

/// What a member puts beside each message that changes state at its receiver
/// (a batch or heartbeat, a leave, the join and its reply): a message
/// authentication code under the key of the link the join handshake set up
/// between the two nodes (actors/link_auth.hpp), over the message's content
/// and `counter`. The key never crosses the network, so a host that can only
/// claim to be a member (CAF 0.17's BASP takes a message's source from the
/// message) cannot make one; the counter grows with every message on the
/// link, so a captured one cannot be replayed.
///
/// A batch's tag also carries two readings of its sender's clock, which only
/// the sender ever interprets: `sent`, when it sealed the batch, and `echo`,
/// the latest `sent` of the receiver's that it took. The receiver's read
/// lease counts from the time its echo names (its own clock, so no two
/// clocks are compared): it ends before the sender, which drops the
/// receiver once it heard nothing for `member_timeout`, can stop waiting for
/// it, whatever the messages' delays (see `peer_state::renew_lease`).
struct link_tag {
  uint64_t counter = 0; ///< 1, 2, ... per link and direction; 0 in a join and its reply
  std::string mac;      ///< HMAC-SHA-256, 32 bytes, over the counter, the content, and:
  uint64_t sent = 0;    ///< the sender's clock when sealed (ticks); 0 but in a batch
  uint64_t echo = 0;    ///< the latest `sent` the sender took from the receiver, or 0
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, link_tag& x) {
  return f(caf::meta::type_name("karlton::link_tag"), x.counter, x.mac, x.sent, x.echo);
}

/// A node as other nodes know it: its name, where it listens, and which run
/// of it this is.
struct member_info {
  std::string name;         ///< unique in the cluster (`cluster_options::node_name`)
  std::string host;         ///< the address it listens on
  uint16_t port = 0;        ///< the port it listens on
  uint64_t incarnation = 0; ///< a new one each time the node starts
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, member_info& x) {
  return f(caf::meta::type_name("karlton::member_info"), x.name, x.host, x.port,
           x.incarnation);
}

/// The longest `member_info::name`, in bytes: as long as a cache name may be
/// (runtime/options.cpp). A handshake naming a longer one is refused before
/// anything of it is kept (rule 9: the last 4,096 hellos' nonces are).
constexpr size_t max_node_name_bytes = 128;

/// The longest `member_info::host`, in bytes: a DNS name has at most 253
/// characters (RFC 1035), an address fewer.
constexpr size_t max_node_host_bytes = 255;

/// The most members of a join reply a node joins: every node keeps a link,
/// a batch flow and a reconnection per member, and a full mesh of more nodes
/// is far beyond what this is built for, so a longer list comes from a buggy
/// member. The rest are ignored and counted (`peer_stats::bad_messages`).
constexpr size_t max_join_members = 1024;

/// The most invalidations in one batch: four times the largest `batch-max`
/// (1,048,576), as one shard's broadcast can carry many at once. The sender
/// cuts its queue into batches of at most this many (`peer_state::take_batch`)
/// and a receiver refuses a larger one (`peer_state::acceptable`).
constexpr size_t max_batch_items = 4 * 1'048'576;

/// Same node, same run: every field equal.
inline bool operator==(const member_info& a, const member_info& b) {
  return a.name == b.name && a.host == b.host && a.port == b.port &&
         a.incarnation == b.incarnation;
}

/// How many delays `peer_stats::recent_delays_us` keeps.
constexpr size_t peer_delay_samples = 65536;

/// A node's cluster counters.
struct peer_stats {
  uint64_t members = 0;                ///< nodes connected and authenticated now
  uint64_t broadcasts_sent = 0;        ///< invalidations this node issued
  uint64_t batches_sent = 0;           ///< batch messages sent (to all members)
  uint64_t invalidations_received = 0; ///< invalidations in batches from other nodes
  uint64_t invalidations_applied = 0;  ///< of those: applied to this node's shards
  uint64_t gaps = 0;                   ///< sequence gaps seen (each made a repair)
  uint64_t peers_lost = 0;             ///< members lost or silent (each made a repair)
  uint64_t repairs = 0;                ///< clears of the distributed caches
  uint64_t stalls =
    0; ///< heartbeats a read lease late: frozen or starved (a repair if it had members)
  uint64_t joins_refused = 0;  ///< handshakes refused, for any of the causes below
  uint64_t proofs_refused = 0; ///< proofs that did not verify (no secret, reflected, ...)
  uint64_t replays_refused =
    0; ///< hellos reusing a nonce, joins to no challenge of ours (or a used or stale one)
  uint64_t names_refused = 0; ///< this node's name, a live member's, or too long
  /// Ignored: not from a member or this process, a member's message without
  /// a valid link MAC (forged, altered or replayed), CAF's exit or down
  /// message from another host, or a forged answer to a local request.
  uint64_t unauthenticated_messages = 0;
  uint64_t sync_timeouts = 0;    ///< synchronous calls some node did not answer
  uint64_t batches_withheld = 0; ///< from members too far behind (they repair)
  /// Ignored: not of the peer's interface, over a limit, or an error that
  /// answers no request of ours.
  uint64_t bad_messages = 0;
  /// Delays from issue (the origin's clock) to apply (ours) of the last
  /// received invalidations (up to `peer_delay_samples`), in microseconds.
  std::vector<uint32_t> recent_delays_us;
  /// The same delays, every one since the node started, in microseconds:
  /// unlike the window above its counts only grow, as Prometheus needs.
  age_histogram delay_histogram;
};

/// The `q` quantile (0..1) of `s.recent_delays_us`; 0 without samples.
inline uint32_t delay_percentile_us(const peer_stats& s, double q) {
  return percentile_us(s.recent_delays_us, q);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, peer_stats& x) {
  return f(caf::meta::type_name("karlton::peer_stats"), x.members, x.broadcasts_sent,
           x.batches_sent, x.invalidations_received, x.invalidations_applied, x.gaps,
           x.peers_lost, x.repairs, x.joins_refused, x.unauthenticated_messages,
           x.sync_timeouts, x.batches_withheld, x.bad_messages, x.proofs_refused,
           x.replays_refused, x.names_refused, x.stalls, x.recent_delays_us,
           x.delay_histogram);
}

/// What the node's own code puts in each message only it may send its peer
/// actor (`broadcast`, `sync`, `join` by address or member, `shards`,
/// `leave`, the batch and heartbeat timers). The sender's node proves
/// nothing: CAF 0.17's BASP takes a routed message's source node and actor
/// from its payload, so any host that reaches the cluster port can send one
/// claiming to come from an actor of this very node. The token is 64 random
/// bits drawn once per process (`this_process_token`) and never sent to
/// another node, so a forgery lacks it: it is ignored and counted
/// (`peer_stats::unauthenticated_messages`).
struct local_token {
  uint64_t value = 0; ///< 64 random bits (0 in a default-constructed one)
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, local_token& x) {
  return f(caf::meta::type_name("karlton::local_token"), x.value);
}

/// Same token (the check is on a 64-bit secret; its timing tells nothing).
inline bool operator==(const local_token& a, const local_token& b) {
  return a.value == b.value;
}

/// This process's token, drawn at first use from the kernel's random source
/// (as the hash key is: messages/hash.cpp).
local_token this_process_token() noexcept;

/// `(hello, me, nonce)`: the first step of a join (see actors/cluster_auth.hpp),
/// with a fresh random nonce (`nonce_size` bytes); answered with the
/// receiver's `member_info`, its own fresh nonce, and its responder's proof
/// over both identities and both nonces.
using hello_atom = caf::atom_constant<caf::atom("hello")>;
/// `(join, me, nonce_i, nonce_r, proof, next_seq, tag)`: the second step,
/// with our hello's nonce and the responder's (its challenge, which it kept
/// nothing of and checks against both), our initiator's proof over the same
/// and `next_seq` under the new link's MAC; answered with its members, its
/// next sequence number and their MAC.
/// `(join, host, port)` from the local node: join the node there.
using join_atom = caf::atom_constant<caf::atom("join")>;
/// `(batch, b, tag)` between nodes: apply these invalidations; answered,
/// with the acknowledgement's MAC, once they and all before them are applied.
using batch_atom = caf::atom_constant<caf::atom("batch")>;
/// `(sync)` from the local node: send what is pending now and answer once
/// every member applied it.
using sync_atom = caf::atom_constant<caf::atom("sync")>;
/// `(broadcast, items)` from the local node: invalidations to send.
using broadcast_atom = caf::atom_constant<caf::atom("broadcast")>;
/// `(leave, next_seq, tag)` between nodes: the sender is shutting down, after
/// sending all it had; the receiver need not reconnect, and repairs only if
/// `next_seq` (the sender's next number) shows a gap. `(leave)` from the
/// node itself: leave the cluster.
using leave_atom = caf::atom_constant<caf::atom("leave")>;
/// `(stop, token)` from the local node: the peer actor quits. Not an exit
/// message: its mailbox refuses those from anyone (see `peer_actor_impl`).
using stop_atom = caf::atom_constant<caf::atom("stop")>;
/// `(heartbeat)`: the peer actor's own timer (see `peer_setup::heartbeat`).
using heartbeat_atom = caf::atom_constant<caf::atom("heartbeat")>;
/// `(pstats, token)`: the node's `peer_stats` (local only).
using peer_stats_atom = caf::atom_constant<caf::atom("pstats")>;
/// `(members, token)`: the members this node is connected to, as `member_info`s
/// (local only).
using members_atom = caf::atom_constant<caf::atom("members")>;
/// `(forget, token, name)`: the operator says the lost member `name` is gone
/// for good; synchronous calls stop naming it and nobody reconnects to it
/// (local only).
using forget_atom = caf::atom_constant<caf::atom("forget")>;
/// `(invalidate, keys)` to a shard: remove these keys without telling other
/// nodes (they come from one). `(invalidate)`: remove everything, the same
/// way (another node cleared the cache).
using invalidate_atom = caf::atom_constant<caf::atom("invalidate")>;
/// `(repair)` to a shard of a node that missed invalidations: clear it
/// without telling other nodes. `(repair, limit)`: the gentler repair, every
/// entry expires within `limit`.
using repair_atom = caf::atom_constant<caf::atom("repair")>;

} // namespace karlton

// The typed interface of a node's peer actor (see actors/peer_actor.hpp).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

#include <karlton/messages/cluster.hpp>
#include <karlton/messages/shard_interface.hpp>

namespace karlton {

/// A node's peer actor: the one actor other nodes talk to (published on the
/// node's port). Local-only messages (`broadcast`, `sync`, `join` by
/// address or member, `shards`, `leave`, `tick`, `heartbeat`, `stop`, and the
/// `pstats` and `members` queries, which answer far more than they ask) carry this
/// process's `local_token` and are ignored (counted) without it: another
/// node can claim to be this one (see `local_token`).
/// Messages from members that change state here (the join and its reply, a
/// batch, a member's leave) carry a `link_tag`: a MAC under the key of the
/// link the handshake set up (actors/link_auth.hpp). One without a valid tag
/// is ignored and counted: another host can claim to be a member.
/// - `(hello, ...)`, `(join, me, nonce_i, nonce_r, proof, seq, tag)`: the join handshake
/// (above).
/// - `(batch, b, tag)`: invalidations from another node; answered when
///   applied, with the MAC of the acknowledgement (`link_ack`).
/// - `(broadcast, items)`: this node's shards' invalidations, to send.
/// - `(sync)`: send what is pending; answered with the members that did not
///   acknowledge within the sync timeout (empty: all applied it).
/// - `(join, host, port)`: join the cluster of the node there.
/// - `(forget, name)`: stop waiting for, and reconnecting to, a lost member.
/// - `(shards, cache, list)`: a distributed cache's shards, to apply to.
/// - `(join, member)`, `(tick, n)`, `(heartbeat)`: its own reconnection,
///   batch and heartbeat timers.
/// - `(leave)` from the local node: send what is pending, say goodbye to
///   every member, answer; the runtime then stops it with `(stop)`, as
///   its mailbox refuses exit messages (actors/peer_actor.hpp). `(leave, next_seq,
///   tag)` from a member: it left cleanly (no reconnection), numbering its next
///   invalidation `next_seq`; a gap to it still repairs.
using peer_actor = caf::typed_actor<
  caf::replies_to<hello_atom, member_info, std::string>::with<member_info, std::string,
                                                              std::string>,
  caf::replies_to<join_atom, member_info, std::string, std::string, std::string, uint64_t,
                  link_tag>::with<std::vector<member_info>, uint64_t, link_tag>,
  caf::replies_to<batch_atom, invalidation_batch, link_tag>::with<caf::ok_atom,
                                                                  std::string>,
  caf::reacts_to<broadcast_atom, local_token, std::vector<invalidation>>,
  caf::replies_to<sync_atom, local_token>::with<std::vector<std::string>>,
  caf::replies_to<join_atom, local_token, std::string, uint16_t>::with<caf::ok_atom>,
  caf::replies_to<shards_atom, local_token, std::string,
                  std::vector<shard_actor>>::with<caf::ok_atom>,
  caf::replies_to<peer_stats_atom, local_token>::with<peer_stats>,
  caf::replies_to<members_atom, local_token>::with<std::vector<member_info>>,
  caf::replies_to<forget_atom, local_token, std::string>::with<caf::ok_atom>,
  caf::reacts_to<join_atom, local_token, member_info, uint64_t>,
  caf::reacts_to<tick_atom, local_token, uint64_t>,
  caf::replies_to<leave_atom, local_token>::with<caf::ok_atom>,
  caf::replies_to<leave_atom, uint64_t, link_tag>::with<caf::ok_atom>,
  caf::reacts_to<heartbeat_atom, local_token>, caf::reacts_to<stop_atom, local_token>>;

} // namespace karlton

// The peer actor: one per node. It batches this node's invalidations of
// distributed caches to every other node, applies theirs to the local shards
// and bus, runs the authenticated join handshake, keeps a full mesh of
// members, and repairs (flushes) when it misses invalidations (rule 6).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <caf/timespan.hpp>

#include "actors/cluster_auth.hpp"
#include "actors/peer_state.hpp"
#include "actors/read_lease.hpp"
#include "messages/shard_interface.hpp"
#include "runtime/clock.hpp"

namespace karlton {

/// What a peer actor is spawned with.
struct peer_setup {
  member_info me;
  /// Every member must know it; a node that cannot prove it is refused.
  std::string secret;
  /// How long invalidations are gathered before they are sent, and how many
  /// at most: the network carries one message per batch per member.
  caf::timespan batch_delay = std::chrono::milliseconds{1};
  size_t batch_max = 4096;
  /// Invalidations a member may have been sent and not yet applied; beyond,
  /// or once a request to it timed out, batches are withheld from it until
  /// it caught up, and it repairs (see peer_state::send_to).
  uint64_t max_unacked = 1048576;
  /// How long a synchronous invalidation waits for every member.
  caf::timespan sync_timeout = std::chrono::seconds{2};
  /// How long a join handshake step may take.
  caf::timespan join_timeout = std::chrono::seconds{5};
  /// Reconnection to a lost member: the first wait, doubled up to the last.
  caf::timespan reconnect_base = std::chrono::milliseconds{200};
  caf::timespan reconnect_max = std::chrono::seconds{5};
  /// Every `heartbeat` the node sends each member what is pending, or an
  /// empty batch: they learn it is alive and where its numbering stands (a
  /// gap shows even on a quiet link). A member not heard from for
  /// `member_timeout` is dropped as lost. The read lease is extended to
  /// `lease_time` past the oldest last word of any member.
  caf::timespan heartbeat = std::chrono::milliseconds{250};
  caf::timespan lease_time = std::chrono::seconds{1};
  caf::timespan member_timeout = std::chrono::seconds{3};
  std::shared_ptr<read_lease> lease;
  /// How a repair treats the distributed caches: 0 flushes them, a duration
  /// makes every entry expire within it instead (bounded staleness).
  caf::timespan repair_ttl{0};
  /// Connect through CAF's OpenSSL module (every node must agree).
  bool tls = false;
  std::shared_ptr<const clock> time_source;
  /// The runtime's event bus: applies tags and events from other nodes.
  bus_actor event_bus;
  /// Membership changes, refusals and repairs, one line each. The runtime
  /// passes `cluster_options::log` or else karlton's log sink (runtime/log.hpp,
  /// a layer above); empty: the lines go nowhere.
  std::function<void(const std::string&)> log;
};

struct peer_actor_state {
  struct member {
    member_info info;
    peer_actor handle;
    clock::time_point last_heard;
  };
  struct sync_waiter {
    uint64_t ticket; // every apply numbered below it must be done
    caf::typed_response_promise<caf::ok_atom> promise;
  };

  std::unique_ptr<peer_state> core;
  std::unique_ptr<handshake_state> auth; // the join handshake, both sides
  peer_setup setup;
  std::map<std::string, member> members;                  // by node name
  std::map<std::string, std::vector<shard_actor>> caches; // distributed, by name
  std::map<std::string, caf::timespan> reconnecting;      // lost members, next wait
  uint64_t flush_generation = 0;
  bool flush_armed = false;
  // Shard flushes of repairs not yet answered: until they are, the lease is
  // neither extended nor held (see `heartbeat`).
  uint64_t repairs_in_flight = 0;
  clock::time_point last_beat{}; // of the previous heartbeat; epoch before the first
  // Batches answered once the applies numbered below `ticket` are done
  // (peer_state::finish_apply).
  std::vector<sync_waiter> sync_waiters;

  static inline const char* name = "karlton.peer";
};

peer_actor::behavior_type peer(peer_actor::stateful_pointer<peer_actor_state> self,
                               peer_setup setup);

} // namespace karlton

// The peer actor: one per node. It batches this node's invalidations of
// distributed caches to every other node, applies theirs to the local shards
// and bus, runs the authenticated join handshake, keeps a full mesh of
// members, and repairs (clears its distributed caches) when it misses
// invalidations (rule 6).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <caf/actor_addr.hpp>
#include <caf/error.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/timespan.hpp>
#include <caf/typed_event_based_actor.hpp>

#include "actors/cluster_auth.hpp"
#include "actors/peer_members.hpp"
#include "actors/peer_state.hpp"
#include "actors/read_lease.hpp"
#include <karlton/base/clock.hpp>
#include <karlton/base/peer_options.hpp>
#include <karlton/messages/bus_interface.hpp>
#include <karlton/messages/peer_interface.hpp>

namespace karlton {

/// What a peer actor is spawned with: the cluster's options (batching,
/// timeouts, repair; the defaults are theirs) and what the runtime gives it.
struct peer_setup : peer_options {
  member_info me;
  /// How long a join handshake step may take.
  caf::timespan join_timeout = std::chrono::seconds{5};
  /// Reconnection to a lost member: the first wait, doubled up to the last.
  caf::timespan reconnect_base = std::chrono::milliseconds{200};
  caf::timespan reconnect_max = std::chrono::seconds{5};
  /// The read lease, extended to `read_lease` past when we sent the oldest
  /// of what each member took last (`peer_options::read_lease` names the
  /// duration, hence the qualified type).
  std::shared_ptr<karlton::read_lease> lease;
  std::shared_ptr<const clock> time_source;
  /// The runtime's event bus: applies tags and events from other nodes.
  bus_actor event_bus;
};

struct peer_actor_state {
  std::unique_ptr<peer_state> core;
  std::unique_ptr<handshake_state> auth; // the join handshake, both sides
  std::unique_ptr<member_table<peer_actor>> members;
  peer_setup setup;
  std::map<std::string, std::vector<shard_actor>> caches; // distributed, by name
  // Of the latest batch-delay timer: an older one that fires is ignored.
  uint64_t send_generation = 0;
  // Shard clears of repairs not yet answered: until they are, the lease is
  // neither extended nor held (see `heartbeat`).
  uint64_t repairs_in_flight = 0;
  // Nodes that refused our join because a live member has our name: we may
  // be the stale one (frozen while a restart took the name over), which
  // nobody invalidates any more, so the lease stays lapsed until each of
  // them lets us join.
  std::set<std::string> refused_our_name;
  clock::time_point last_beat{}; // of the previous heartbeat; epoch before the first
  // Batches answered, with the MAC of their acknowledgement, once the
  // applies numbered below their key are done (peer_state::finish_apply).
  struct apply_waiter {
    caf::typed_response_promise<caf::ok_atom, std::string> promise;
    std::string ack;
  };
  std::multimap<uint64_t, apply_waiter> apply_waiters;
  // The join handshakes we started and that have not ended, by the address
  // of the other node's peer: a down message for that address ends them at
  // once (`on_down`), through `lost`, which no other node can trigger as it
  // can send any error.
  struct pending_handshake {
    std::function<void(caf::error)> done; // hears the outcome; empty once ended
    std::function<void()> lost;           // instead, if its connection was lost
    /// Ends it, once: `lost` hears a lost connection if set, else `done` hears `err`.
    void end(caf::error err, bool connection_lost = false) {
      auto ended = std::move(*this);
      *this = {};
      if (connection_lost && ended.lost)
        ended.lost();
      else if (ended.done)
        ended.done(std::move(err));
    }
  };
  std::multimap<caf::actor_addr, std::shared_ptr<pending_handshake>> handshakes;

  static inline const char* name = "karlton.peer";
};

/// The peer actor itself: CAF's stateful typed actor, with a mailbox that
/// refuses the two system messages CAF would act on before any handler of
/// ours saw them, and which any host that reaches the cluster port can send
/// (rule 9; actors/peer_mailbox.cpp):
/// - every exit message. One with reason `kill` stops an actor whatever its
///   exit handler says, and a remote link (CAF lets a host link its actor to
///   the peer) turns the host's own exit into one. The peer links to no actor,
///   so none is genuine: the runtime stops it with `(stop, token)`.
/// - a down message about an actor that is still running: CAF sends a real
///   one only once the watched actor has terminated.
/// Refused ones are counted in `peer_stats::unauthenticated_messages`.
class peer_actor_impl final
  : public caf::stateful_actor<peer_actor_state, peer_actor::base> {
public:
  using stateful_actor::stateful_actor;

  void enqueue(caf::mailbox_element_ptr what, caf::execution_unit* host) override;

  /// Exit and down messages refused so far (written by any sender's thread).
  std::atomic<uint64_t> refused_at_mailbox{0};
};

/// True if `x` is a system message the peer's mailbox refuses (above).
bool forged_system_message(const caf::mailbox_element& x);

peer_actor::behavior_type peer(peer_actor_impl* self, peer_setup setup);

} // namespace karlton

// How a node talks to the other members of its cluster: the one definition of
// the cluster's tunables and their defaults. `cluster_options` (the public
// `karlton.cluster.*` settings) and `peer_setup` (what the peer actor is
// spawned with) both derive from it, so a value set by a user reaches the
// peer actor without being copied field by field, and a default is changed
// in one place (the help texts of the settings print these values).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

#include <caf/timespan.hpp>

namespace karlton {

/// The cluster's tunables and their defaults, shared by `cluster_options`
/// (settings `karlton.cluster.*`) and the peer actor.
struct peer_options {
  /// Every node must know it; a node that cannot prove it is refused.
  std::string secret;
  /// Invalidations are batched only while a batch is in flight (sent to a
  /// member and not yet answered): the first after an idle spell goes out at
  /// once, later ones gather until the batches in flight are answered, or
  /// for `batch_delay` at most, or until there are `batch_max` of them (see
  /// peer_state::send_when). The network carries one message per batch per
  /// member; CAF's remote messaging does ~28k messages/s, so one message per
  /// invalidation would cap the cluster there. A 1 ms bound keeps a batch
  /// from waiting long on a slow answer, and 4096 keeps a batch (one message,
  /// serialized whole) small.
  caf::timespan batch_delay = std::chrono::milliseconds{1};
  uint32_t batch_max = 4096; ///< see `batch_delay`
  /// Invalidations a member may have been sent and not yet applied; beyond,
  /// or once a request to it timed out, batches are withheld from it until it
  /// caught up, and it repairs when it sees the gap (see
  /// peer_state::send_to). 1M withholds only from a member that is really
  /// stuck (seconds of a flat-out origin), while bounding what its mailboxes
  /// hold.
  uint64_t max_unacked = 1048576;
  /// How long a synchronous invalidation waits for every member before it
  /// names those that did not answer.
  caf::timespan sync_timeout = std::chrono::seconds{2};
  /// Every `heartbeat` the node sends each member what is pending, or an
  /// empty batch: they learn it is alive and where its numbering stands (a
  /// gap shows even on a quiet link). A member not heard from for
  /// `member_timeout` (longer than `heartbeat`: a dozen missed beats, so a
  /// busy link does not drop members) is lost: repair, then reconnection.
  caf::timespan heartbeat = std::chrono::milliseconds{250};
  caf::timespan member_timeout = std::chrono::seconds{3}; ///< see `heartbeat`
  /// How long after sending what every member took last (its batches echo
  /// our send times) this node's distributed caches still serve hits; past
  /// it they clear (a frozen or cut-off node may have missed invalidations).
  /// Shorter than `member_timeout`, it ends before a member drops us. Longer than
  /// `heartbeat`, so a live link keeps it valid; short, since it bounds how long a node
  /// cut off serves what others may have invalidated.
  caf::timespan read_lease = std::chrono::seconds{1};
  /// What a node does when it may have missed invalidations (a sequence
  /// gap, a lost member): 0 clears its distributed caches; a duration
  /// instead makes every entry expire within it (bounded staleness, warm
  /// caches). A lapsed read lease does the same, but serves none of the
  /// capped entries until the lease holds again; a node that stalled past
  /// its lease clears whatever this says.
  caf::timespan repair_ttl{0};
  /// Encrypt the links between nodes with TLS (CAF's OpenSSL module). Every
  /// node of a cluster must agree. Without certificates (CAF's own
  /// `openssl.certificate`, `openssl.key`, `openssl.cafile` keys) OpenSSL's
  /// anonymous key exchange is used: encrypted, and the secret's handshake
  /// still authenticates nodes; with them, CAF also verifies certificates.
  bool tls = false;
  /// Membership changes, refusals and repairs, one line each. Empty in
  /// `cluster_options`: the log sink (`set_log_sink`, stderr by default); the
  /// runtime always gives the peer one (empty there: the lines go nowhere).
  std::function<void(const std::string&)> log;
};

} // namespace karlton

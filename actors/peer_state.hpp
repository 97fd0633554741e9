// The bookkeeping of a node's peer actor, without actors: numbering and
// batching what this node broadcasts, and checking what other nodes send for
// gaps (consistency rule 6). Unit-tested on its own.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "messages/cluster.hpp"

namespace karlton {

class peer_state {
public:
  /// `batch_max`: invalidations per batch before it is sent at once.
  peer_state(member_info me, size_t batch_max);

  const member_info& me() const noexcept { return me_; }

  // -- what this node sends ---------------------------------------------------

  /// Numbers `items` and queues them. True if the queue reached `batch_max`:
  /// send it now rather than at the end of the batch delay.
  bool enqueue(std::vector<invalidation> items);
  size_t pending() const noexcept { return outgoing_.items.size(); }
  /// The queued invalidations as one batch (empty `items` if none).
  invalidation_batch take_batch();
  /// The number the next invalidation will get.
  uint64_t next_seq() const noexcept { return next_seq_; }

  // -- what other nodes send --------------------------------------------------

  /// Records that `origin` will number its next invalidation `next_seq` (from
  /// the join handshake). True if that shows a gap: this run of `origin` had
  /// sent invalidations we never received.
  bool expect(const std::string& origin, uint64_t incarnation, uint64_t next_seq);
  /// Checks a batch against what we expected of its origin and moves the
  /// expectation past it. True if invalidations before it went missing. A
  /// new run of the origin (another incarnation) starts afresh; a batch we
  /// already passed (sent before we joined) is no gap.
  bool receive(const invalidation_batch& b);
  /// Records how long an invalidation took from issue to apply here.
  void record_delay(int64_t issued_ns, int64_t applied_ns);

  /// Counters; `stats()` adds the recent delays and `members`.
  peer_stats counters;
  peer_stats stats(uint64_t members) const;

private:
  struct origin_state {
    uint64_t incarnation = 0;
    uint64_t expected = 0; // the number of its next invalidation
  };

  member_info me_;
  size_t batch_max_;
  uint64_t next_seq_ = 0;
  invalidation_batch outgoing_;
  std::map<std::string, origin_state> origins_;
  std::vector<uint32_t> delays_us_; // a ring of the last peer_delay_samples
  size_t delays_next_ = 0;
};

} // namespace karlton

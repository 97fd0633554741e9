// The bookkeeping of a node's peer actor, without actors: numbering and
// batching what this node broadcasts, checking what other nodes send for
// gaps (consistency rule 6), flow control per member, whom a synchronous call
// asks, who counts as not answered it and when it is complete (rule 7), how a
// received batch is routed to shards and bus, and when the read lease may be
// renewed. Unit-tested on its own; the members are in peer_members.hpp.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <karlton/base/clock.hpp>
#include <karlton/messages/cluster.hpp>

namespace karlton {

class peer_state {
public:
  /// `batch_max`: invalidations per batch before it is sent at once;
  /// `max_unacked`: invalidations a member may have received and not yet
  /// applied before batches are withheld from it; `max_items`: the most
  /// invalidations in a batch sent or accepted (smaller only in tests).
  peer_state(member_info me, size_t batch_max,
             uint64_t max_unacked = std::numeric_limits<uint64_t>::max(),
             size_t max_items = max_batch_items);

  const member_info& me() const noexcept { return me_; }

  // -- what this node sends ---------------------------------------------------

  /// When to send the queue, as `enqueue` decides (Nagle's rule): the first
  /// invalidation after an idle spell goes out at once; while a batch is in
  /// flight (sent, not yet answered or failed), later ones gather until the
  /// last batch in flight is answered (`acknowledged` says so), the batch
  /// delay passes or the queue reaches `batch_max`. Waiting the whole delay
  /// even when idle made every asynchronous invalidation ~1 ms late; sending
  /// each one alone would cap a busy cluster at CAF's message rate.
  enum class send_when {
    now,       ///< send the queue now: nothing in flight, or it is full
    arm_timer, ///< behind a batch in flight: start the batch-delay timer
    later,     ///< behind a batch in flight, the timer already running
  };
  /// Numbers `items`, queues them and says when to send the queue.
  send_when enqueue(std::vector<invalidation> items);
  size_t pending() const noexcept { return outgoing_.items.size(); }
  size_t max_items() const noexcept { return max_items_; }
  /// Batches carrying invalidations sent and not yet answered or failed, one
  /// per member sent to (a heartbeat is not one).
  uint64_t batches_in_flight() const noexcept { return in_flight_; }
  /// The queued invalidations as one batch (empty `items` if none): at most
  /// `max_items` of them, the rest stay queued (`pending`).
  invalidation_batch take_batch();
  /// The number the next invalidation will get.
  uint64_t next_seq() const noexcept { return next_seq_; }

  // -- what other nodes send --------------------------------------------------

  /// Records that `origin` will number its next invalidation `next_seq` (from
  /// the join handshake). True if that shows a gap: this run of `origin` had
  /// sent invalidations we never received.
  bool expect(const std::string& origin, uint64_t incarnation, uint64_t next_seq);
  /// False (and counted as a bad message) if a member's batch is over the
  /// limits: more than `max_items` invalidations, or numbers that wrap
  /// past 2^64 (which would disable the gap check of its origin).
  bool acceptable(const invalidation_batch& b);
  /// Checks a batch against what we expected of its origin and moves the
  /// expectation past it. True if invalidations before it went missing. A
  /// new run of the origin (another incarnation) starts afresh; a batch we
  /// already passed (sent before we joined) is no gap.
  bool receive(const invalidation_batch& b);
  /// `origin` (run `incarnation`) left cleanly, saying it would number its
  /// next invalidation `next_seq`. True if that shows a gap: invalidations it
  /// sent before leaving never arrived (withheld by flow control, say), so we
  /// must repair although it left cleanly.
  bool left(const std::string& origin, uint64_t incarnation, uint64_t next_seq);
  /// Numbers an apply (a removal request to a shard or the bus) as it starts.
  uint64_t start_apply() noexcept { return applies_started_++; }
  /// Apply `n` is done. Returns the number below which every apply is done
  /// (they finish out of order: they go to different shards).
  uint64_t finish_apply(uint64_t n);
  /// A batch received now is applied once `finish_apply` reaches this.
  uint64_t applies_started() const noexcept { return applies_started_; }
  bool all_applied() const noexcept { return applied_below_ >= applies_started_; }
  /// Records how long an invalidation took from issue to apply here.
  void record_delay(int64_t issued_ns, int64_t applied_ns);

  // -- members: flow control and who answers (rules 6 and 7) -------------------

  /// `name` passed the join handshake (again): nothing sent to it is
  /// outstanding, and it is no longer lost.
  void member_joined(const std::string& name);
  /// `name` was lost without leaving (its connection, or its silence): until
  /// it joins again, synchronous calls count it as not answered, since it
  /// may still serve what they invalidate.
  void member_lost(const std::string& name);
  /// `name` left cleanly: it serves nothing any more, so it is not waited for.
  void member_left(const std::string& name);
  const std::set<std::string>& lost() const noexcept { return lost_; }

  /// Where a request to a member stood: the member's run of this flow
  /// (`epoch`, new at each join) and how much had been sent to it then.
  struct send_mark {
    uint64_t epoch = 0;
    uint64_t through = 0;
    bool in_flight = false; ///< it carries invalidations: counted in flight
    uint64_t request = 0;   ///< the member's requests up to this one
  };
  /// Whether to send `name` a batch of `n` invalidations. If so, it is
  /// counted as outstanding and the result is the mark to pass to
  /// `acknowledged` with the answer. If not, the batch is withheld: `name`
  /// sees the gap in the numbering with its next batch or heartbeat and
  /// repairs (rule 6). Withheld while `name` is behind and no empty batch
  /// went to it since it timed out or a batch was withheld from it, or
  /// while it would be more than `max_unacked` behind. An empty batch (a
  /// heartbeat) is always sent, and once it went, what follows it leaves no
  /// gap of its own: a member behind under a steady stream of batches
  /// repaired on every heartbeat and never caught up.
  std::optional<send_mark> send_to(const std::string& name, size_t n);
  /// `name` answered a request sent at `mark`: it applied everything sent to
  /// it up to that request (it answers only then). A member behind that has
  /// nothing outstanding any more caught up: it gets batches again.
  /// Answers to requests sent before `name` last joined change nothing.
  /// True if that answered the last batch in flight while invalidations are
  /// queued: send them now (see `send_when`).
  bool acknowledged(const std::string& name, send_mark mark);
  /// A request to `name` timed out or failed: what it carried counts as not
  /// applied (it may sit in that member's mailboxes), and the member is
  /// behind until an answer shows it applied everything sent to it. Treating
  /// a timed-out batch as applied let a slow member's mailboxes grow without
  /// bound, about `max_unacked` more every timeout. The request is no longer
  /// in flight: true as for `acknowledged`.
  bool not_acknowledged(const std::string& name, send_mark mark);
  bool behind(const std::string& name) const;
  /// Invalidations sent to `name` and not known to be applied.
  uint64_t unacked(const std::string& name) const;
  /// A synchronous call of `n` invalidations to `members` (the current ones):
  /// whom to ask, each with its mark for `acknowledged`, and whom to report
  /// as not answered at once: members lost without leaving (they may still
  /// serve what the call invalidates), members behind and members the batch
  /// is withheld from (they repair instead of applying it).
  struct sync_plan {
    std::vector<std::pair<std::string, send_mark>> ask;
    std::vector<std::string> not_answered;
  };
  sync_plan plan_sync(const std::vector<std::string>& members, size_t n);

  // -- sending: batches and synchronous calls -------------------------------------

  /// A batch and the members to send it to, each with its mark for
  /// `acknowledged` (members it is withheld from are left out).
  struct outgoing {
    invalidation_batch batch;
    std::vector<std::pair<std::string, send_mark>> to;
    /// On a heartbeat that takes the whole queue, an empty batch numbered
    /// after `batch` for the members it was withheld from (`beat_to`): they
    /// see the gap and repair, batches reach them again after it, and their
    /// answers echo our clock, without which our read lease would lapse for
    /// as long as they stay behind.
    invalidation_batch beat;
    std::vector<std::pair<std::string, send_mark>> beat_to;
  };
  /// Takes the queued invalidations as one batch for `members` (the current
  /// ones). Nobody gets an empty batch unless `even_empty` (a heartbeat, which
  /// says where our numbering stands; `beat` if the batch is not empty).
  /// Without members the queue is dropped: nobody holds what it invalidates.
  outgoing send_batch(const std::vector<std::string>& members, bool even_empty);

  /// A synchronous call: the queued invalidations as one batch, whom to ask
  /// (as `plan_sync`), and, if nobody is asked, its answer at once: the
  /// members that count as not answered. Otherwise `sync_answered` gives the
  /// answer once every member asked answered or failed.
  struct sync_start {
    uint64_t id = 0;
    outgoing out;
    std::optional<std::vector<std::string>> answer;
  };
  sync_start start_sync(const std::vector<std::string>& members);
  /// Member `name` answered sync call `id` (`applied`), or its request failed
  /// or timed out (not `applied`: it is named in the answer). Returns the
  /// call's answer once every member asked did: the members that count as
  /// not answered (a call with any counts in `sync_timeouts`).
  std::optional<std::vector<std::string>>
  sync_answered(uint64_t id, const std::string& name, bool applied);
  size_t open_syncs() const noexcept { return syncs_.size(); }

  // -- the read lease -----------------------------------------------------------

  using time_point = clock::time_point;
  /// How far a heartbeat at `now` may renew the read lease: nullopt leaves it
  /// as it is (a repair is still clearing, so a read must find it lapsed);
  /// `time_point::max()` holds it (no members: nothing to miss); otherwise
  /// `lease_time` past `oldest_echo` (not past `now`): when we sent what the
  /// member that heard from us least recently took last
  /// (`member_table::oldest_echo`). A member drops us no earlier than its
  /// `member_timeout` after it took that, so with `lease_time` shorter the
  /// lease ends first, however late its messages reach us: only our own
  /// clock is read.
  static std::optional<time_point> renew_lease(time_point now,
                                               std::optional<time_point> oldest_echo,
                                               uint64_t repairs_in_flight,
                                               clock::time_point::duration lease_time);

  /// If a heartbeat at `now`, after the one at `last` (epoch: none yet), runs
  /// more than `lease_time` late, how long this node stalled, in ms: frozen
  /// or starved, its lease lapsed and it must clear before serving again.
  static std::optional<int64_t> stalled_ms(time_point now, time_point last,
                                           clock::time_point::duration heartbeat,
                                           clock::time_point::duration lease_time);

  /// Counters (and every delay, in `delay_histogram`); `stats()` adds the
  /// recent delays and `members`.
  peer_stats counters;
  peer_stats stats(uint64_t members) const;

private:
  struct origin_state {
    uint64_t incarnation = 0;
    uint64_t expected = 0; // the number of its next invalidation
  };

  struct flow {
    uint64_t epoch = 0;
    uint64_t sent = 0;           // invalidations sent to the member
    uint64_t acked = 0;          // of them, known to be applied there
    uint64_t in_flight = 0;      // requests carrying invalidations, not yet answered
    uint64_t requests = 0;       // sent to the member, empty ones too
    uint64_t withheld_after = 0; // `requests` when a batch was last withheld
    bool behind = false;
    bool gap_shown = false; // behind, but an empty batch went since (see `send_to`)
  };

  struct open_sync {
    size_t waiting = 0; // members asked that have not answered yet
    std::vector<std::string> not_answered;
  };

  std::vector<std::string> finish_sync(std::vector<std::string> not_answered);
  /// A request at `mark` to flow `f` was answered or failed: if it was in
  /// flight, it is no more. True if the queue is to be sent now.
  bool answered(flow& f, send_mark mark);
  /// Forgets flow `i` (its member left, was lost or joined again), and what
  /// it had in flight: answers to it count no more.
  void drop_flow(std::map<std::string, flow>::iterator i);

  member_info me_;
  size_t batch_max_;
  uint64_t max_unacked_;
  size_t max_items_;
  std::map<std::string, flow> flows_;
  uint64_t in_flight_ = 0;   // the sum of the flows' `in_flight`
  bool timer_armed_ = false; // a batch-delay timer runs for what is queued
  uint64_t epochs_ = 0;
  uint64_t applies_started_ = 0;
  uint64_t applied_below_ = 0;
  std::set<uint64_t> applied_early_; // done, with some below them not yet
  std::set<std::string> lost_;
  uint64_t next_seq_ = 0;
  invalidation_batch outgoing_;
  std::map<std::string, origin_state> origins_;
  std::vector<uint32_t> delays_us_; // a ring of the last peer_delay_samples
  size_t delays_next_ = 0;
  std::map<uint64_t, open_sync> syncs_; // by id
  uint64_t next_sync_id_ = 0;
};

// -- applying what other nodes send ---------------------------------------------

/// One removal request a received batch becomes (see `route_batch`).
struct apply_step {
  enum class target : uint8_t {
    shard, ///< `keys` of `cache` to shard `shard`
    cache, ///< every shard of `cache` is cleared
    bus,   ///< a tag invalidation or an event (`item`) for the event bus
  };
  target to = target::shard;
  std::string cache;
  size_t shard = 0;
  std::vector<std::string> keys;
  /// Keys another node wrote (`invalidation_kind::written`): dropped without
  /// cascading to their dependents, which that node's write cascades itself.
  bool written = false;
  /// The origin times of what it carries, recorded as delays once done.
  std::vector<int64_t> issued;
  invalidation item; ///< for the bus
};

/// How to apply batch `b`: keys go to their shards, one step per shard (and
/// per kind: written keys do not cascade); clears to every shard of the cache;
/// tags and events to the bus if there is one (`has_bus`). What concerns a
/// cache this node does not have (`shard_count` 0) is skipped. All are
/// removals, so their order does not matter. Moves the items out of `b`.
std::vector<apply_step>
route_batch(invalidation_batch& b,
            const std::function<size_t(const std::string&)>& shard_count, bool has_bus);

} // namespace karlton

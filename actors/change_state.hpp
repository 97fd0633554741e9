// The change source's decisions, without actors (docs/plans/postgres.md §3,
// §4): which notifications belong to one transaction and when it is applied,
// which caches skip it as their own write, what becomes a repair, and when
// the feed's read lease may grow. Every call returns plain values the change
// source actor turns into messages, so all of it is tested without an actor
// system; the time is always passed in.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "actors/feed_routes.hpp"
#include <karlton/base/clock.hpp>
#include <karlton/messages/changes.hpp>

namespace karlton {

/// What the change source must do after a call to `change_state`.
struct change_actions {
  /// Erase `keys` (cascading to dependents) on shard `shard` of `cache`.
  struct invalidation {
    std::string cache;             ///< the cache's name, as in the routes
    size_t shard = 0;              ///< index into its `fed_cache::shards`
    std::vector<std::string> keys; ///< distinct, in no particular order
  };
  /// One transaction's invalidations: when every part is answered, the
  /// change source reports `invalidated(commit_us, now)` (the delay).
  struct group {
    int64_t commit_us = 0; ///< the end marker's commit time; 0 if none came
    std::vector<invalidation> parts;
  };
  std::vector<group> groups;        ///< invalidations to send
  std::vector<std::string> repairs; ///< caches to repair on every shard (once each)
  /// Of `repairs`, those that stand for a change we know of (a TRUNCATE, a
  /// long key, a bulk transaction, a DBA's repair): cleared, never only
  /// capped by `repair-ttl`, which is for changes that may have gone unheard.
  std::vector<std::string> clears;
  /// Extend the feed's read lease to this time (never shortens it).
  std::optional<clock::time_point> extend_lease;
  /// End the feed's read lease now: a fed table's triggers are off, so its
  /// changes go unheard (waiting out the lease would serve them stale).
  bool lapse_lease = false;
  /// Groups are parked on a pending own write: call `retry_parked` soon (1 ms).
  bool retry_parked = false;
};

/// The numbers that shape a `change_state`, each with its reason.
struct change_limits {
  /// How far past a heartbeat's send time the lease reaches (§4).
  clock::time_point::duration lease = std::chrono::seconds{1};
  /// Keys one transaction may change in one table before it becomes a
  /// repair of that table's caches; also the most keys held in all open
  /// groups together, so forged notifications cannot grow memory.
  size_t max_group_keys = 100'000;
  /// The same for the bytes of those keys (a key may have 3,800 bytes).
  uint64_t max_group_bytes = uint64_t{64} << 20;
  /// Open transactions beyond which the oldest is applied incomplete:
  /// forged xids cannot grow memory.
  size_t max_open_groups = 10'000;
  /// How long a group waits on its store's COMMIT outcome before it counts
  /// as foreign (§2: PostgreSQL signals listeners before the COMMIT's reply
  /// reaches the writer; 100 ms is far beyond that race, short enough that
  /// an unanswered COMMIT does not hold an invalidation back noticeably).
  clock::time_point::duration pending_limit = std::chrono::milliseconds{100};
};

/// Groups, verdicts, repairs and the lease of one runtime's change feed.
/// Only the change source actor calls it.
class change_state {
public:
  using time_point = clock::time_point;

  using limits = change_limits;

  change_state() : change_state(limits{}) {}
  explicit change_state(limits lim);

  /// The caches fed now; taken once per message by the change source.
  void set_routes(std::shared_ptr<const fed_tables> routes);

  /// One pass of the listener: `changes` parsed, `malformed` refused (any
  /// repairs every cache the feed keeps).
  change_actions changes(const std::vector<pg_change>& changes, time_point now,
                         uint64_t malformed = 0);

  /// A heartbeat sent at `sent_at` was answered: the NOTIFY queue's use in
  /// millionths (`usage_ppm`)
  /// and the triggers as `schema.table:tgname:tgenabled,...`. A group still
  /// open is applied incomplete (its notifications all preceded the answer),
  /// and the lease may grow to `sent_at + lease`. `with_changes`: the
  /// listener read this answer together with the last `changes`. libpq
  /// parses what follows an answer in the same read, so a group heard in
  /// that read may still be arriving: it is left open for its end or the
  /// next answer, once (a forger who keeps touching it cannot hold it).
  /// Neither the lease nor a sync needs it: PostgreSQL sends a transaction's
  /// notifications together, so a group heard with the answer and still
  /// incomplete followed the answer, or is not a real transaction's.
  change_actions heard(time_point sent_at, uint32_t usage_ppm,
                       const std::string& triggers, time_point now,
                       bool with_changes = false);

  /// The LISTEN connection is (again) up and listening: whatever happened
  /// while it was down is unknown, so every fed cache is repaired.
  change_actions up(time_point now);

  /// The LISTEN connection is lost: nothing extends the lease until `up`.
  void down(time_point now);

  /// Asks the stores again about parked groups; after `pending_limit` a
  /// group counts as foreign.
  change_actions retry_parked(time_point now);

  /// A shard answered a repair (or failed to): one fewer in flight.
  void repair_answered() noexcept;

  /// Every part of a group was answered at `now_us` (wall clock, µs).
  void invalidated(int64_t commit_us, int64_t now_us);

  /// Counts a lapse of the lease if it ran out by `now` (the change source
  /// calls it on every message and timer).
  void note_time(time_point now);

  /// The counters.
  change_feed_stats stats() const;

  size_t open_groups() const noexcept { return groups_.size(); }
  size_t parked() const noexcept { return parked_.size(); }
  uint64_t repairs_in_flight() const noexcept { return repairs_in_flight_; }
  bool listening() const noexcept { return listening_; }

private:
  // One transaction's changes heard so far.
  struct open_group {
    uint64_t order = 0;    // when it opened: the oldest goes first
    uint64_t pass = 0;     // the listener read (`changes` call) of its latest
    bool spared = false;   // left open once at an answer read with it
    uint64_t base = 0;     // seqs up to here were applied already (two ends)
    uint64_t seen = 0;     // distinct row notifications with seq > base
    uint64_t max_seq = 0;  // the highest seq heard
    uint64_t n = 0;        // the highest end's count; 0: no end yet
    int64_t commit_us = 0; // that end's commit time
    std::map<std::string, std::vector<std::string>> keys; // by table
    std::map<std::string, uint64_t> rows;                 // by table
    std::map<std::string, uint64_t> bytes;                // held keys', by table
    std::set<std::string> repaired; // tables to repair when it is applied
  };
  // A cache's share of a group, waiting on its store's COMMIT outcome.
  struct parked_part {
    uint64_t xid = 0;
    std::string table, cache;
    std::vector<std::string> keys;
    uint64_t rows = 0;
    int64_t commit_us = 0;
    time_point since;
  };

  void take(const pg_change& c, time_point now, change_actions& out);
  open_group& group_of(uint64_t xid);
  void apply(uint64_t xid, bool complete, time_point now, change_actions& out);
  void apply_oldest_while(uint64_t keep, bool held, change_actions& out, time_point now);
  bool over_held() const noexcept;
  void invalidate(const fed_cache& cache, std::vector<std::string> keys,
                  change_actions::group& into);
  void repair_table(const std::string& table, change_actions& out, bool known);
  void repair_all(change_actions& out);
  void add_repair(const fed_cache& cache, change_actions& out, bool known = false);
  const std::vector<fed_cache>* caches_of(const std::string& table) const;
  const fed_cache* cache_named(const std::string& table, const std::string& name) const;
  void check_triggers(const std::string& triggers, change_actions& out);
  void remember_applied(uint64_t xid, uint64_t through);

  limits lim_;
  std::shared_ptr<const fed_tables> routes_;
  std::unordered_map<uint64_t, open_group> groups_;
  std::map<uint64_t, uint64_t> by_order_; // open order → xid
  uint64_t next_order_ = 0;
  uint64_t passes_ = 0; // listener reads (`changes` calls) so far
  size_t buffered_keys_ = 0;
  uint64_t buffered_bytes_ = 0;
  std::unordered_map<uint64_t, uint64_t> applied_through_; // xid → seq applied
  std::deque<uint64_t> applied_order_;
  std::vector<parked_part> parked_;
  std::set<std::string> trigger_trouble_; // fed tables whose triggers are off
  bool listening_ = false;
  uint64_t repairs_in_flight_ = 0;
  time_point up_at_{};
  time_point lease_until_{}; // as far as this state extended it; epoch: lapsed
  bool lapse_counted_ = true;
  change_feed_stats stats_;
  size_t delay_next_ = 0; // ring position in recent_delays_us once full
};

} // namespace karlton

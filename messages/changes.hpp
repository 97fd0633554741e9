// What PostgreSQL's triggers tell the change feed (docs/plans/postgres.md §2-3):
// one notification, parsed. It crosses from the listener thread to the change
// source actor, so it lives here with the other message types; the parser
// (stores/pg_payload.hpp) reads untrusted bytes (rule 9: any role may NOTIFY).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <caf/atom.hpp>
#include <caf/meta/type_name.hpp>
#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

#include <karlton/messages/stats.hpp>

namespace karlton {

/// One notification from the change triggers, parsed.
struct pg_change {
  /// What the notification says.
  enum class kind : uint8_t {
    row,      ///< a row with `key` changed in transaction `xid` (its `seq`-th change)
    long_key, ///< a row whose key is too long for a payload changed: repair `table`
    end,      ///< transaction `xid` committed with `seq` changes, at `commit_us`
    truncate, ///< `table` was truncated
    repair,   ///< a DBA asked for `table`'s caches to be repaired (karlton_repair)
  };
  kind what = kind::row; ///< what the notification says
  uint64_t xid = 0;      ///< the transaction (pg_current_xact_id); 0 for repair
  uint64_t seq = 0; ///< row, long_key: this change's number; end: the count it closes
  int64_t commit_us = 0; ///< end: clock_timestamp() in COMMIT, µs since the epoch
  std::string table;     ///< `schema.table`; empty for end
  std::string key;       ///< row: the key's bytes (decoded)
};

/// CAF's inspection; the enum crosses as its underlying type.
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, pg_change& x) {
  return f(caf::meta::type_name("karlton::pg_change"), x.what, x.xid, x.seq, x.commit_us,
           x.table, x.key);
}

/// The kind's name, for logs and test messages.
inline const char* to_string(pg_change::kind k) noexcept {
  switch (k) {
  case pg_change::kind::row:
    return "row";
  case pg_change::kind::long_key:
    return "long_key";
  case pg_change::kind::end:
    return "end";
  case pg_change::kind::truncate:
    return "truncate";
  case pg_change::kind::repair:
    return "repair";
  }
  return "unknown";
}

/// How many delays `change_feed_stats::recent_delays_us` keeps: enough for
/// a p99 over the latest few seconds of a busy feed, small enough to copy on
/// every stats request.
constexpr size_t change_delay_samples = 512;

/// The most `sync_changes` barriers held at once, by the feed's actor and by
/// its listener alike; the oldest give way (their callers have most likely
/// timed out), so a service asking in a loop while the database is down
/// cannot grow either without bound.
constexpr size_t max_waiting_syncs = 4096;

/// The change feed's counters (docs/plans/postgres.md §3): one runtime's
/// LISTEN connection and what it applied.
struct change_feed_stats {
  uint64_t listening = 0;                   ///< 1 while the LISTEN connection is up
  uint64_t connects = 0;                    ///< LISTEN connections established
  uint64_t drops = 0;                       ///< LISTEN connections lost
  uint64_t repairs = 0;                     ///< repairs of fed caches (any cause)
  uint64_t lease_lapses = 0;                ///< times the feed's read lease ran out
  uint64_t heartbeats = 0;                  ///< heartbeat results heard
  uint64_t notifications_received = 0;      ///< parsed notifications
  uint64_t notifications_malformed = 0;     ///< payloads the parser refused
  uint64_t notifications_unknown_table = 0; ///< about a table no cache is fed by
  uint64_t rows_applied = 0;                ///< row changes invalidated in a cache
  uint64_t rows_own = 0;          ///< row changes skipped: the cache's own write
  uint64_t groups_applied = 0;    ///< transactions applied
  uint64_t groups_incomplete = 0; ///< of those, applied without all their rows
  uint64_t long_keys = 0;         ///< rows whose key was too long for a payload
  uint64_t truncates = 0;         ///< TRUNCATE notifications
  uint64_t bulk_repairs = 0;      ///< transactions too big to hold: repaired
  uint64_t trigger_problems = 0;  ///< times a fed table's triggers went missing
  uint32_t queue_usage_ppm = 0;   ///< the NOTIFY queue's use in millionths, last heard
  uint64_t syncs_waiting = 0;     ///< `sync_changes` calls not yet answered
  /// The latest commit-to-invalidation delays, µs (oldest first).
  std::vector<uint32_t> recent_delays_us;
};

/// The `q` quantile (0..1) of `s.recent_delays_us`; 0 without samples.
inline uint32_t delay_percentile_us(const change_feed_stats& s, double q) {
  return percentile_us(s.recent_delays_us, q);
}

/// CAF's inspection.
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, change_feed_stats& x) {
  return f(caf::meta::type_name("karlton::change_feed_stats"), x.listening, x.connects,
           x.drops, x.repairs, x.lease_lapses, x.heartbeats, x.notifications_received,
           x.notifications_malformed, x.notifications_unknown_table, x.rows_applied,
           x.rows_own, x.groups_applied, x.groups_incomplete, x.long_keys, x.truncates,
           x.bulk_repairs, x.trigger_problems, x.queue_usage_ppm, x.syncs_waiting,
           x.recent_delays_us);
}

// -- the change source's protocol (docs/plans/postgres.md §3) -----------------
// CAF 0.17 atoms hold at most 10 characters.

/// `(pgchanges, changes, malformed)`: one pass of the listener.
using pg_changes_atom = caf::atom_constant<caf::atom("pgchanges")>;
/// `(pgup)`: the LISTEN connection is up and listening.
using pg_up_atom = caf::atom_constant<caf::atom("pgup")>;
/// `(pgdown, reason)`: it failed or was lost.
using pg_down_atom = caf::atom_constant<caf::atom("pgdown")>;
/// `(pgheard, sent_at, usage, triggers, with_changes)`: a heartbeat was
/// answered; `sent_at` in ticks of the runtime clock; `with_changes`: the
/// last `pgchanges` came from the same read (`change_state::heard`).
using pg_heard_atom = caf::atom_constant<caf::atom("pgheard")>;
/// `(pgbarrdone, id)`: a barrier's heartbeat was answered.
using pg_barrier_done_atom = caf::atom_constant<caf::atom("pgbarrdone")>;
/// `(pgsync)`: answered `true` once every change committed before it is
/// applied or covered by a repair and the lease holds; `false` if the
/// source stops first.
using pg_sync_atom = caf::atom_constant<caf::atom("pgsync")>;
/// `(pgstats)`: the feed's counters.
using pg_stats_atom = caf::atom_constant<caf::atom("pgstats")>;
/// `(pgretry)`: the change source's own timer for groups parked on a
/// pending own write.
using pg_retry_atom = caf::atom_constant<caf::atom("pgretry")>;
/// `(pgtick)`: the change source's own timer for counting lease lapses.
using pg_tick_atom = caf::atom_constant<caf::atom("pgtick")>;

/// The change source: turns what the listener reports into invalidations and
/// repairs of the fed caches' shards (actors/change_source_actor.hpp).
using change_source_actor =
  caf::typed_actor<caf::reacts_to<pg_changes_atom, std::vector<pg_change>, uint64_t>,
                   caf::reacts_to<pg_up_atom>, caf::reacts_to<pg_down_atom, std::string>,
                   caf::reacts_to<pg_heard_atom, int64_t, uint32_t, std::string, bool>,
                   caf::reacts_to<pg_barrier_done_atom, uint64_t>,
                   caf::reacts_to<pg_retry_atom, uint64_t>, caf::reacts_to<pg_tick_atom>,
                   caf::replies_to<pg_sync_atom>::with<bool>,
                   caf::replies_to<pg_stats_atom>::with<change_feed_stats>>;

} // namespace karlton

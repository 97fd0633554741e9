// runtime::metrics_text: the runtime's counters in Prometheus' text format
// 0.0.4. Every cache's (label `cache`), the flusher's of write-back caches,
// the bus's and the peer's. Names follow Prometheus' conventions: counters
// end in `_total`, durations are in seconds, sizes in bytes.
#include <karlton/runtime/runtime.hpp>

#include <caf/all.hpp>

#include "runtime/cache_core.hpp"
#include "runtime/prometheus.hpp"
#include "runtime/runtime_detail.hpp"

namespace karlton {

namespace {

using detail::fixed_point;
using detail::prometheus_writer;
using kind = prometheus_writer::kind;

template <class Stats>
struct family_of {
  const char* name;
  kind type;
  const char* help;
  uint64_t Stats::*field;
};

// One row per `cache_stats` field shown as it is; `invalidations` (by cause),
// `load_time_ns` (in seconds) and `hit_age` (a histogram) are written apart.
const family_of<cache_stats> cache_families[] = {
  {"karlton_hits_total", kind::counter, "Gets answered from the cache.",
   &cache_stats::hits},
  {"karlton_misses_total", kind::counter, "Gets that found no live entry.",
   &cache_stats::misses},
  {"karlton_puts_total", kind::counter,
   "Values stored by put, put_many or a finished load.", &cache_stats::puts},
  {"karlton_expired_total", kind::counter, "Entries removed because their TTL ran out.",
   &cache_stats::expired},
  {"karlton_evictions_total", kind::counter, "Entries removed by the size bound.",
   &cache_stats::evictions},
  {"karlton_rejected_total", kind::counter, "Puts refused: key or value too large.",
   &cache_stats::rejected},
  {"karlton_lease_clears_total", kind::counter, "Clears because a read lease lapsed.",
   &cache_stats::lease_clears},
  {"karlton_lease_caps_total", kind::counter,
   "Lapses of the change feed's lease under repair-ttl: every TTL capped, not cleared.",
   &cache_stats::lease_caps},
  {"karlton_doorbells_total", kind::counter,
   "Doorbells the shards answered (wake-ups for queued calls, and a busy shard's own "
   "re-rings).",
   &cache_stats::doorbells},
  {"karlton_ingress_jobs_total", kind::counter,
   "Queued calls the shards ran (a put batch: one per shard).",
   &cache_stats::ingress_jobs},
  {"karlton_entries", kind::gauge, "Live entries.", &cache_stats::entries},
  {"karlton_bytes", kind::gauge, "Key and value bytes of the live entries.",
   &cache_stats::bytes},
  {"karlton_dependency_links", kind::gauge, "Entry to dependency links indexed.",
   &cache_stats::dependency_links},
  {"karlton_writes_parked", kind::gauge, "Write-back writes waiting for max-dirty room.",
   &cache_stats::writes_parked},
  {"karlton_loads_total", kind::counter, "Loads started (misses and refreshes).",
   &cache_stats::loads},
  {"karlton_loads_finished_total", kind::counter, "Loads whose loader returned.",
   &cache_stats::loads_finished},
  {"karlton_load_failures_total", kind::counter, "Loads whose loader returned an error.",
   &cache_stats::load_failures},
  {"karlton_load_timeouts_total", kind::counter, "Loads that outlived load-timeout.",
   &cache_stats::load_timeouts},
  {"karlton_loads_coalesced_total", kind::counter,
   "Callers that joined a load already in flight.", &cache_stats::coalesced},
  {"karlton_loads_voided_total", kind::counter,
   "Loads not installed: a write or invalidation came first.",
   &cache_stats::loads_voided},
  {"karlton_loads_refused_total", kind::counter,
   "Loads not started because the load queues were full.", &cache_stats::loads_refused},
  {"karlton_refreshes_total", kind::counter, "Background reloads after refresh-after.",
   &cache_stats::refreshes},
  {"karlton_early_refreshes_total", kind::counter,
   "Background reloads started by XFetch.", &cache_stats::early_refreshes},
  {"karlton_early_expirations_total", kind::counter,
   "Forced misses of the naive probabilistic mode.", &cache_stats::early_expirations},
  {"karlton_stale_served_total", kind::counter,
   "Stale values served because a load failed (stale-if-error).",
   &cache_stats::stale_served},
  {"karlton_negative_hits_total", kind::counter,
   "Misses answered with a remembered load failure.", &cache_stats::negative_hits},
  {"karlton_loads_in_flight", kind::gauge, "Loads started and not finished.",
   &cache_stats::loads_in_flight},
  {"karlton_load_waiters", kind::gauge, "Callers waiting for loads.",
   &cache_stats::load_waiters},
};

// The flusher's, for write-back caches; `oldest_dirty_ms` is written apart.
const family_of<write_stats> write_families[] = {
  {"karlton_writeback_writes_total", kind::counter, "Dirty writes handed to the flusher.",
   &write_stats::writes},
  {"karlton_flushes_total", kind::counter, "Batches the store took.",
   &write_stats::batches},
  {"karlton_flushed_writes_total", kind::counter, "Writes the store took.",
   &write_stats::entries_flushed},
  {"karlton_writes_coalesced_total", kind::counter,
   "Writes replaced by a newer one of the key before storing.",
   &write_stats::writes_coalesced},
  {"karlton_flush_failures_total", kind::counter, "Batches the store refused.",
   &write_stats::flush_failures},
  {"karlton_flush_retries_total", kind::counter, "Batches tried again after a failure.",
   &write_stats::retries},
  {"karlton_dirty_writes", kind::gauge, "Writes not yet stored.", &write_stats::dirty},
  {"karlton_journal_appends_total", kind::counter, "Group commits to the journal.",
   &write_stats::journal_appends},
  {"karlton_journal_records_total", kind::counter, "Writes made durable in the journal.",
   &write_stats::journal_records},
  {"karlton_journal_rewrites_total", kind::counter,
   "Journal rewrites that bounded or repaired it.", &write_stats::journal_rewrites},
  {"karlton_journal_failures_total", kind::counter,
   "Journal appends and rewrites that failed.", &write_stats::journal_failures},
  {"karlton_journal_bytes", kind::gauge,
   "The bytes of the journal's records (its header aside).", &write_stats::journal_bytes},
};

const family_of<bus_stats> bus_families[] = {
  {"karlton_events_emitted_total", kind::counter, "Events emitted.",
   &bus_stats::events_emitted},
  {"karlton_tags_invalidated_total", kind::counter, "Tags invalidated.",
   &bus_stats::tags_invalidated},
  {"karlton_key_cascades_total", kind::counter,
   "Erased keys whose dependents were invalidated.", &bus_stats::key_cascades},
  {"karlton_subscribers_called_total", kind::counter, "Deliveries to event subscribers.",
   &bus_stats::subscribers_called},
};

// `members` is a gauge; the rest only grow.
const family_of<peer_stats> peer_families[] = {
  {"karlton_cluster_members", kind::gauge, "Nodes connected and authenticated.",
   &peer_stats::members},
  {"karlton_cluster_broadcasts_total", kind::counter, "Invalidations this node issued.",
   &peer_stats::broadcasts_sent},
  {"karlton_cluster_batches_sent_total", kind::counter, "Invalidation batches sent.",
   &peer_stats::batches_sent},
  {"karlton_cluster_invalidations_received_total", kind::counter,
   "Invalidations received from other nodes.", &peer_stats::invalidations_received},
  {"karlton_cluster_invalidations_applied_total", kind::counter,
   "Received invalidations applied to this node's shards.",
   &peer_stats::invalidations_applied},
  {"karlton_cluster_gaps_total", kind::counter,
   "Sequence gaps seen (each made a repair).", &peer_stats::gaps},
  {"karlton_cluster_peers_lost_total", kind::counter,
   "Members lost or silent (each made a repair).", &peer_stats::peers_lost},
  {"karlton_cluster_repairs_total", kind::counter, "Clears of the distributed caches.",
   &peer_stats::repairs},
  {"karlton_cluster_stalls_total", kind::counter,
   "Heartbeats that ran more than a read lease late: the node was frozen or starved "
   "(each made a repair if the node had members).",
   &peer_stats::stalls},
  {"karlton_cluster_joins_refused_total", kind::counter, "Handshakes refused.",
   &peer_stats::joins_refused},
  {"karlton_cluster_unauthenticated_messages_total", kind::counter,
   "Messages ignored as not authentic: not from a member or this process, "
   "without a valid link MAC, CAF exit or down messages from another host, or "
   "forged answers to local requests.",
   &peer_stats::unauthenticated_messages},
  {"karlton_cluster_bad_messages_total", kind::counter,
   "Messages ignored because the peer's interface has no such message.",
   &peer_stats::bad_messages},
  {"karlton_cluster_sync_timeouts_total", kind::counter,
   "Synchronous calls some node did not answer.", &peer_stats::sync_timeouts},
  {"karlton_cluster_batches_withheld_total", kind::counter,
   "Batches withheld from members too far behind.", &peer_stats::batches_withheld},
};

// Served ages: 1 ms to a day, in ms. Below 16 ms the histogram is exact.
const std::vector<uint64_t> age_bounds_ms = {
  1,      5,      10,      50,      100,       500,       1000,       5000,      10'000,
  30'000, 60'000, 300'000, 600'000, 1'800'000, 3'600'000, 21'600'000, 86'400'000};
// Invalidation delays: 100 µs (a loopback hop) to a minute, in µs.
const std::vector<uint64_t> delay_bounds_us = {
  100,    250,     500,     1000,    2500,      5000,      10'000,     25'000,
  50'000, 100'000, 250'000, 500'000, 1'000'000, 5'000'000, 10'000'000, 60'000'000};

struct cache_sample {
  std::string name;
  cache_stats stats;
  std::optional<write_stats> writes; // write-back caches only
};

template <class Stats, size_t N, class Rows>
void write_rows(prometheus_writer& w, const family_of<Stats> (&families)[N],
                const Rows& rows) {
  for (auto& f : families) {
    w.family(f.name, f.type, f.help);
    for (auto& [labels, stats] : rows)
      w.sample("", labels, stats->*f.field);
  }
}

void write_caches(prometheus_writer& w, const std::vector<cache_sample>& caches) {
  std::vector<std::pair<prometheus_writer::labels, const cache_stats*>> rows;
  std::vector<std::pair<prometheus_writer::labels, const write_stats*>> writes;
  for (auto& c : caches) {
    rows.emplace_back(prometheus_writer::labels{{"cache", c.name}}, &c.stats);
    if (c.writes)
      writes.emplace_back(prometheus_writer::labels{{"cache", c.name}}, &*c.writes);
  }
  write_rows(w, cache_families, rows);

  // A shard counts every removal in `invalidations` and its cause in at most
  // one of the others; explicit ones (erase, clear, a peer's) are the rest.
  w.family("karlton_invalidations_total", kind::counter,
           "Entries erased, cleared or invalidated, by cause.");
  for (auto& c : caches) {
    auto& s = c.stats;
    uint64_t caused =
      s.invalidated_by_event + s.invalidated_by_tag + s.invalidated_by_cascade;
    uint64_t explicit_ = s.invalidations > caused ? s.invalidations - caused : 0;
    std::pair<const char*, uint64_t> causes[] = {{"explicit", explicit_},
                                                 {"event", s.invalidated_by_event},
                                                 {"tag", s.invalidated_by_tag},
                                                 {"cascade", s.invalidated_by_cascade}};
    for (auto& [cause, n] : causes)
      w.sample("", {{"cache", c.name}, {"cause", cause}}, n);
  }

  w.family("karlton_load_seconds_total", kind::counter,
           "Summed duration of finished loads.");
  for (auto& c : caches)
    w.sample("", {{"cache", c.name}}, fixed_point(c.stats.load_time_ns, 1'000'000'000));

  w.family("karlton_served_age_seconds", kind::histogram,
           "Age of the values served on hits (staleness).");
  for (auto& c : caches)
    w.histogram({{"cache", c.name}}, c.stats.hit_age, age_bounds_ms, 1000);

  write_rows(w, write_families, writes);
  w.family("karlton_oldest_dirty_seconds", kind::gauge,
           "Age of the oldest write not yet stored.");
  for (auto& [labels, s] : writes)
    w.sample("", labels, fixed_point(s->oldest_dirty_ms, 1000));
}

void write_runtime(prometheus_writer& w, const bus_stats& bus, const peer_stats& peer) {
  const std::vector<std::pair<prometheus_writer::labels, const bus_stats*>> bus_row{
    {{}, &bus}};
  write_rows(w, bus_families, bus_row);
  w.family("karlton_deepest_cascade", kind::gauge,
           "Most rounds of cascading of one invalidation.");
  w.sample("", {}, uint64_t{bus.deepest_cascade});

  const std::vector<std::pair<prometheus_writer::labels, const peer_stats*>> peer_row{
    {{}, &peer}};
  write_rows(w, peer_families, peer_row);
  w.family("karlton_invalidation_delay_seconds", kind::histogram,
           "Delay from issue on another node to apply here, of received invalidations.");
  w.histogram({}, peer.delay_histogram, delay_bounds_us, 1'000'000);
}

} // namespace

caf::expected<std::string> runtime::metrics_text() {
  if (auto err = refused_in_actor()) return err;
  std::vector<std::pair<std::string, std::shared_ptr<detail::cache_core>>> cores;
  bus_actor bus;
  peer_actor peer;
  {
    std::lock_guard<std::mutex> guard{caches_mtx_};
    if (stopped_) return detail::stopped_error();
    cores.assign(caches_.begin(), caches_.end());
    bus = bus_;
    peer = peer_;
  }
  // One failed call fails the scrape: a cache missing from one scrape would
  // look to Prometheus like its counters were reset.
  std::vector<cache_sample> caches;
  for (auto& [name, core] : cores) {
    cache c{core};
    auto s = c.stats();
    if (!s) return std::move(s.error());
    cache_sample sample{name, std::move(*s), std::nullopt};
    if (core->options.writes == write_mode::write_back) {
      auto w = c.flush_stats();
      if (!w) return std::move(w.error());
      sample.writes = std::move(*w);
    }
    caches.push_back(std::move(sample));
  }
  // No bus or peer yet: their counters are all zero (asking would spawn one).
  bus_stats b;
  if (bus) {
    auto got =
      detail::ask<bus_stats>(*sys_, bus, detail::bus_timeout, bus_stats_atom::value);
    if (!got) return std::move(got.error());
    b = std::move(*got);
  }
  peer_stats p;
  if (peer) {
    auto got = detail::ask<peer_stats>(*sys_, peer, detail::bus_timeout,
                                       peer_stats_atom::value, this_process_token());
    if (!got) return std::move(got.error());
    p = std::move(*got);
  }
  prometheus_writer w;
  write_caches(w, caches);
  write_runtime(w, b, p);
  return w.take();
}

} // namespace karlton

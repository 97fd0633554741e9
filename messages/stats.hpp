// Counters a shard keeps and a cache sums: the guide's "monitor everything".
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include <caf/error.hpp>
#include <caf/meta/load_callback.hpp>
#include <caf/meta/type_name.hpp>

namespace karlton {

/// A mergeable log-linear histogram of ages in milliseconds (or of any
/// other non-negative integer quantity: `peer_stats` keeps delays in µs).
///
/// Buckets: exact below 16 ms, then 8 per power of two, so any percentile is
/// within 12.5 % of the true value; 232 buckets cover 2^32 ms (49 days).
/// Its counts and sum only grow, so Prometheus can scrape it as a histogram.
class age_histogram {
public:
  /// 16 exact buckets, then 8 for each of the 28 powers of two up to 2^32 ms.
  static constexpr size_t bucket_count = 16 + 28 * 8;

  /// Adds one sample of `age_ms` milliseconds.
  void record(uint32_t age_ms) noexcept;
  /// Adds every sample of `other`, as if recorded here.
  void merge(const age_histogram& other);
  /// How many samples it holds.
  uint64_t count() const noexcept { return total_; }
  /// The sum of its samples, exact (Prometheus' `_sum`).
  uint64_t sum() const noexcept { return sum_; }
  /// Calls `f(upper, n)` for each bucket in increasing order: `n` samples
  /// were at most `upper` and above the previous bucket's `upper`. Not
  /// cumulative; buckets never sampled may be skipped.
  template <class F>
  void for_each_bucket(F&& f) const {
    for (size_t i = 0; i < buckets_.size(); ++i)
      if (buckets_[i] != 0) f(upper_bound_of(i), buckets_[i]);
  }
  /// The smallest age a `q` fraction (0..1) of samples is at or below; 0 if empty.
  uint64_t percentile(double q) const noexcept;

  template <class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f, age_histogram& x) {
    auto check = caf::meta::load_callback([&x] { return x.check_loaded(); });
    return f(caf::meta::type_name("karlton::age_histogram"), x.buckets_, x.total_, x.sum_,
             check);
  }

private:
  /// Deserialized bytes (from another node, in a stats reply) may hold any
  /// number of buckets, but `merge` and `record` index up to `bucket_count`:
  /// refuses anything but 0 or `bucket_count` buckets whose sum is `total_`,
  /// and a `sum_` no `total_` samples of 32 bits can add up to.
  caf::error check_loaded();
  static size_t bucket_of(uint32_t ms) noexcept;
  static uint64_t upper_bound_of(size_t bucket) noexcept;
  std::vector<uint64_t> buckets_; // empty until the first sample
  uint64_t total_ = 0;
  uint64_t sum_ = 0; // of the samples (2^32 ms samples, 2^32 of them, fit)
};

/// Counters of one shard, or summed over the shards of one cache.
struct cache_stats {
  uint64_t hits = 0;          ///< gets (and get_or_loads) answered from the cache
  uint64_t misses = 0;        ///< gets (and get_or_loads) that found no live entry
  uint64_t puts = 0;          ///< values stored by put, put_many or a finished load
  uint64_t expired = 0;       ///< entries removed because their TTL ran out
  uint64_t evictions = 0;     ///< entries removed by the size bound
  uint64_t invalidations = 0; ///< entries erased, cleared or invalidated
  uint64_t invalidated_by_event = 0;   ///< of those: dependents of an emitted event
  uint64_t invalidated_by_tag = 0;     ///< of those: dependents of an invalidated tag
  uint64_t invalidated_by_cascade = 0; ///< of those: dependents of an invalidated key
  uint64_t dependency_links = 0;       ///< entry -> dependency links indexed now
  uint64_t dependency_names = 0;       ///< distinct names depended on now (per shard)
  uint64_t rejected = 0;               ///< puts refused (key or value too large)
  uint64_t entries = 0;                ///< live entries now
  uint64_t expiring = 0;               ///< of those: entries with a TTL (INFO's expires=)
  uint64_t bytes = 0;                  ///< key + value bytes of live entries now
  age_histogram hit_age;               ///< ages served on hits, each as of its hit
  // Read-through loading (zero for caches without a loader).
  uint64_t loads = 0;             ///< loads started (misses and refreshes)
  uint64_t load_failures = 0;     ///< loads whose loader returned an error
  uint64_t loads_finished = 0;    ///< loads whose loader returned, either way
  uint64_t load_time_ns = 0;      ///< summed duration of finished loads
  uint64_t coalesced = 0;         ///< callers that joined a load already in flight
  uint64_t refreshes = 0;         ///< background reloads after `refresh-after`
  uint64_t early_refreshes = 0;   ///< background reloads started by XFetch
  uint64_t early_expirations = 0; ///< forced misses of the naive probabilistic mode
  uint64_t stale_served = 0;      ///< hits on a value whose last reload failed, and
                                  ///< expired values served for a failed load
                                  ///< (stale-if-error)
  uint64_t loads_voided = 0;  ///< loads not installed: a write or invalidation came first
  uint64_t negative_hits = 0; ///< misses answered with a remembered load failure
  uint64_t load_timeouts =
    0; ///< loads that outlived `load-timeout` (waiters got `timeout`)
  uint64_t loads_in_flight = 0; ///< loads started, not finished nor timed out, now
                                ///< (load entries: loads_out + loads_queued)
  uint64_t load_waiters = 0;    ///< callers waiting for those loads now
  uint64_t loads_out = 0;       ///< of those: handed to a loader now (at most
                                ///< 2 x loader-concurrency per shard)
  uint64_t loads_queued = 0;    ///< of those: waiting for a loader now (at most
                                ///< 1024 per shard)
  uint64_t loads_refused = 0;   ///< loads not started, both full: get_or_load
                                ///< answered `overloaded`, refreshes skipped
  /// Distributed and fed caches: clears because a read lease lapsed (the node
  /// lost touch with another node or the change feed: it may have missed
  /// invalidations).
  uint64_t lease_clears = 0;
  /// Caches under a `repair-ttl` (`karlton.postgres.` or `karlton.cluster.`): a
  /// read lease lapsed while the shard held entries, and every TTL was capped at
  /// that `repair-ttl` instead of a clear (the cache kept warm; the cluster's
  /// lease withholds hits until it holds again).
  uint64_t lease_caps = 0;
  /// Doorbells the shard answered: wake-ups for calls queued by plain threads,
  /// and its own re-rings when still busy after a turn.
  uint64_t doorbells = 0;
  /// Queued jobs the shard ran: one per call from a plain thread and shard
  /// it goes to, a `put_batch` one per shard. Jobs per doorbell is how much
  /// the ingress queue batches.
  uint64_t ingress_jobs = 0;
  /// Write-back writes (and computes, which may write) waiting now for room
  /// under `max-dirty` (backpressure: each fails with `overloaded` if none
  /// frees within 3/4 of call-timeout).
  /// The set_ttl calls and a clear's drops in line with them need no room and
  /// are not counted.
  uint64_t writes_parked = 0;

  /// hits / (hits + misses), 0..1; 0 before any get.
  double hit_rate() const noexcept {
    auto total = hits + misses;
    return total == 0 ? 0.0 : static_cast<double>(hits) / static_cast<double>(total);
  }
  /// The median age, in milliseconds, of the values served on hits.
  uint64_t age_p50_ms() const noexcept { return hit_age.percentile(0.50); }
  /// The 99th percentile age, in milliseconds, of the values served on hits.
  uint64_t age_p99_ms() const noexcept { return hit_age.percentile(0.99); }
  /// The mean duration of finished loads, in milliseconds; 0 before any.
  double mean_load_ms() const noexcept {
    return loads_finished == 0 ? 0.0
                               : static_cast<double>(load_time_ns) / 1e6 /
                                   static_cast<double>(loads_finished);
  }

  /// Adds `other`'s counters and merges its histogram (summing shards).
  cache_stats& operator+=(const cache_stats& other);
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cache_stats& x) {
  return f(caf::meta::type_name("karlton::cache_stats"), x.hits, x.misses, x.puts,
           x.expired, x.evictions, x.invalidations, x.rejected, x.entries, x.bytes,
           x.hit_age, x.loads, x.load_failures, x.loads_finished, x.load_time_ns,
           x.coalesced, x.refreshes, x.early_refreshes, x.early_expirations,
           x.stale_served, x.loads_voided, x.invalidated_by_event, x.invalidated_by_tag,
           x.invalidated_by_cascade, x.dependency_links, x.dependency_names,
           x.negative_hits, x.lease_clears, x.lease_caps, x.load_timeouts,
           x.loads_in_flight, x.load_waiters, x.loads_out, x.loads_queued,
           x.loads_refused, x.expiring, x.doorbells, x.ingress_jobs, x.writes_parked);
}

/// The `q` quantile (0..1) of a window of delays in microseconds (the
/// peer's and the change feed's `recent_delays_us`); 0 without samples.
inline uint32_t percentile_us(std::vector<uint32_t> xs, double q) {
  if (xs.empty()) return 0;
  auto k = static_cast<size_t>(q * static_cast<double>(xs.size() - 1) + 0.5);
  std::nth_element(xs.begin(), xs.begin() + static_cast<std::ptrdiff_t>(k), xs.end());
  return xs[k];
}

} // namespace karlton

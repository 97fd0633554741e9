#include <karlton/messages/stats.hpp>

#include <algorithm>
#include <cmath>
#include <string>

#include <karlton/messages/errors.hpp>

namespace karlton {

namespace {

// Saturates rather than wraps: a sum stuck at the top is wrong but, unlike a
// wrapped one, never goes backwards in a Prometheus counter. Reaching it
// takes 2^32 samples of 49 days each.
uint64_t add_saturated(uint64_t a, uint64_t b) noexcept {
  uint64_t out;
  return __builtin_add_overflow(a, b, &out) ? UINT64_MAX : out;
}

} // namespace

size_t age_histogram::bucket_of(uint32_t ms) noexcept {
  if (ms < 16) return ms;
  auto exponent = 31 - __builtin_clz(ms); // 4..31
  auto sub = (ms >> (exponent - 3)) & 7;  // the 3 bits below the leading one
  return 16 + static_cast<size_t>(exponent - 4) * 8 + sub;
}

uint64_t age_histogram::upper_bound_of(size_t bucket) noexcept {
  if (bucket < 16) return bucket;
  auto exponent = (bucket - 16) / 8 + 4;
  auto sub = (bucket - 16) % 8;
  // The bucket holds [(8 + sub) << (e - 3), (9 + sub) << (e - 3)).
  return ((uint64_t{9} + sub) << (exponent - 3)) - 1;
}

void age_histogram::record(uint32_t age_ms) noexcept {
  if (buckets_.empty()) buckets_.resize(bucket_count);
  ++buckets_[bucket_of(age_ms)];
  ++total_;
  sum_ = add_saturated(sum_, age_ms);
}

void age_histogram::merge(const age_histogram& other) {
  if (other.total_ == 0) return;
  if (buckets_.empty()) buckets_.resize(bucket_count);
  for (size_t i = 0; i < bucket_count && i < other.buckets_.size(); ++i)
    buckets_[i] += other.buckets_[i];
  total_ += other.total_;
  sum_ = add_saturated(sum_, other.sum_);
}

caf::error age_histogram::check_loaded() {
  uint64_t sum = 0;
  bool sane = buckets_.empty() || buckets_.size() == bucket_count;
  for (size_t i = 0; sane && i < buckets_.size(); ++i)
    sane = !__builtin_add_overflow(sum, buckets_[i], &sum);
  sane = sane && sum == total_;
  if (sane && (total_ == 0 ? sum_ == 0 : sum_ / total_ <= UINT32_MAX)) return caf::none;
  auto what = sane ? "an age histogram whose " + std::to_string(total_) +
                       " samples of 32 bits cannot add up to " + std::to_string(sum_)
                   : "an age histogram of " + std::to_string(buckets_.size()) +
                       " buckets (not 0 or " + std::to_string(bucket_count) +
                       ") or whose buckets do not sum to its count of " +
                       std::to_string(total_);
  *this = age_histogram{};
  return make_error(errc::invalid_option, "refused " + what);
}

uint64_t age_histogram::percentile(double q) const noexcept {
  if (total_ == 0) return 0;
  q = std::clamp(q, 0.0, 1.0);
  // The q·n-th sample, rounded up (the nearest rank): rounded to the nearest,
  // p99 of 60 samples was the 59th, below the one stale value it exists to show.
  // The epsilon keeps q·n a hair above an integer from rounding up past it.
  auto rank = static_cast<uint64_t>(std::ceil(q * static_cast<double>(total_) - 1e-9));
  rank = std::clamp<uint64_t>(rank, 1, total_);
  uint64_t seen = 0;
  for (size_t i = 0; i < buckets_.size(); ++i) {
    seen += buckets_[i];
    if (seen >= rank) return upper_bound_of(i);
  }
  return upper_bound_of(bucket_count - 1);
}

cache_stats& cache_stats::operator+=(const cache_stats& other) {
  hits += other.hits;
  misses += other.misses;
  puts += other.puts;
  expired += other.expired;
  evictions += other.evictions;
  invalidations += other.invalidations;
  rejected += other.rejected;
  entries += other.entries;
  expiring += other.expiring;
  bytes += other.bytes;
  hit_age.merge(other.hit_age);
  loads += other.loads;
  load_failures += other.load_failures;
  loads_finished += other.loads_finished;
  load_time_ns += other.load_time_ns;
  coalesced += other.coalesced;
  refreshes += other.refreshes;
  early_refreshes += other.early_refreshes;
  early_expirations += other.early_expirations;
  stale_served += other.stale_served;
  loads_voided += other.loads_voided;
  invalidated_by_event += other.invalidated_by_event;
  invalidated_by_tag += other.invalidated_by_tag;
  invalidated_by_cascade += other.invalidated_by_cascade;
  dependency_links += other.dependency_links;
  dependency_names += other.dependency_names;
  negative_hits += other.negative_hits;
  load_timeouts += other.load_timeouts;
  loads_in_flight += other.loads_in_flight;
  load_waiters += other.load_waiters;
  loads_out += other.loads_out;
  loads_queued += other.loads_queued;
  loads_refused += other.loads_refused;
  lease_clears += other.lease_clears;
  lease_caps += other.lease_caps;
  doorbells += other.doorbells;
  ingress_jobs += other.ingress_jobs;
  writes_parked += other.writes_parked;
  return *this;
}

} // namespace karlton

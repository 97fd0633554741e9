// How long a node's distributed caches may serve what they hold. The peer
// actor extends the lease while every member hears from it (counted from its
// own send times: see `link_tag`); a node that was
// frozen (SIGSTOP, a long GC-like stall, a starved VM) or cut off finds it
// lapsed when it runs again, before any invalidation it missed can arrive,
// so its shards clear instead of serving values other nodes invalidated
// meanwhile (rule 6 for the node that cannot tell it missed something), or,
// under `repair-ttl`, cap every TTL at it, as a repair would: the change
// feed's shards go on serving what they capped, the cluster's serve no hits
// until the lease holds again (rule 7), and keep their entries warm.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

#include "actors/milliseconds.hpp"
#include <karlton/base/clock.hpp>

namespace karlton {

/// Where a cap of `limit` counted from `from` (never later than `now`) ends, in
/// the whole ms entries expire at.
inline uint64_t cap_end_ms(clock::time_point from, clock::time_point now,
                           std::chrono::nanoseconds limit) noexcept {
  return to_ms(std::min(from, now)) + ceil_ms(limit);
}

/// Whether shards serve the entries a lapse capped while it lasts (`read_lease`).
enum class lapsed_hits {
  served,  ///< the change feed's: its staleness is bounded by design
  withheld ///< the cluster's: a node that lost a member serves no hits (rule 7)
};

/// Shared by a node's peer actor (which extends it) and the shards of its
/// distributed caches (which check it on reads). Times are the runtime
/// clock's.
/// @threadsafe
class read_lease {
public:
  using time_point = clock::time_point;

  /// `repair_ttl`: what a lapse asks of the shards that check the lease. Zero
  /// (the default) clears them; more caps every TTL at it, as the owner's
  /// repairs do under `repair-ttl` (bounded staleness, warm caches), and
  /// `hits` says whether they serve what they hold while the lapse lasts.
  explicit read_lease(std::chrono::nanoseconds repair_ttl = {},
                      lapsed_hits hits = lapsed_hits::served) noexcept
    : repair_ttl_(repair_ttl), hits_(hits) {}

  std::chrono::nanoseconds repair_ttl() const noexcept { return repair_ttl_; }
  lapsed_hits hits() const noexcept { return hits_; }

  /// True while reads may be served from the cache.
  bool valid(time_point now) const noexcept {
    return now.time_since_epoch().count() <= until_.load(std::memory_order_acquire);
  }
  /// The time it is valid until now, as `valid` compares it (clock ticks).
  int64_t until_ticks() const noexcept { return until_.load(std::memory_order_acquire); }
  /// Valid until `t`.
  void extend_to(time_point t) noexcept {
    until_.store(t.time_since_epoch().count(), std::memory_order_release);
  }
  /// Valid until `t` at the latest: shortens the lease, never extends it.
  void limit_to(time_point t) noexcept {
    auto want = t.time_since_epoch().count();
    auto cur = until_.load(std::memory_order_acquire);
    while (want < cur &&
           !until_.compare_exchange_weak(cur, want, std::memory_order_acq_rel)) {
    }
  }
  /// Valid until told otherwise (a node without members misses nothing).
  void hold() noexcept {
    until_.store(std::numeric_limits<int64_t>::max(), std::memory_order_release);
  }

private:
  std::atomic<int64_t> until_{std::numeric_limits<int64_t>::max()};
  const std::chrono::nanoseconds repair_ttl_;
  const lapsed_hits hits_;
};

/// The leases a cache's shards check: the cluster's (distributed caches,
/// extended by the peer) and the change feed's (caches fed by PostgreSQL's
/// changes, extended by the change source, docs/plans/postgres.md §4). Reads
/// are served while every lease present is valid: the earliest end counts.
/// Converts from one lease (the cluster's), so code that knows only that one
/// keeps assigning it.
/// @threadsafe (the pointers are set before the shards start)
struct read_leases {
  using time_point = read_lease::time_point;

  std::shared_ptr<const read_lease> cluster; ///< the peer's, or null
  std::shared_ptr<const read_lease> changes; ///< the change feed's, or null

  read_leases() = default;
  /// Only the cluster's lease (`nullptr`: none).
  template <class Lease, class = std::enable_if_t<std::is_convertible<
                           Lease, std::shared_ptr<const read_lease>>::value>>
  read_leases(Lease cluster_lease) // NOLINT: converting on purpose
    : cluster(std::move(cluster_lease)) {}

  /// The earliest end of the leases present (clock ticks); the largest value
  /// if there is none. Reads both atomics: a reader takes it once, before
  /// the table.
  int64_t until_ticks() const noexcept {
    auto until = std::numeric_limits<int64_t>::max();
    if (cluster) until = cluster->until_ticks();
    if (changes) until = std::min(until, changes->until_ticks());
    return until;
  }
  /// Where an end is kept per lease, the mark of one that has not lapsed: no
  /// lease ends there (one that holds ends at the largest value, the feed's
  /// lapses at the epoch).
  static constexpr int64_t not_lapsed = std::numeric_limits<int64_t>::min();
  /// One look at the leases at `now` (each atomic read once, so what it says
  /// holds together): the earliest end and what a lapse asks of a shard.
  struct look {
    /// The earliest end of the leases present (clock ticks); the largest value if none.
    int64_t until = std::numeric_limits<int64_t>::max();
    /// Those that lapsed: each one's end, in the order of `each` (else `not_lapsed`).
    std::array<int64_t, 2> lapsed_ends{not_lapsed, not_lapsed};
    /// None while every lease present holds; zero (clear) if one that lapsed
    /// clears; else the least `repair_ttl` of those that lapsed, to cap every TTL at.
    std::optional<std::chrono::nanoseconds> lapse;
    /// Those that lapsed and withhold hits while it lasts (`lapsed_hits`), in the
    /// order of `each`.
    std::array<bool, 2> withheld{};
    bool withholds() const noexcept { return withheld[0] || withheld[1]; }
    bool clears() const noexcept { return lapse && lapse->count() <= 0; }
    bool caps() const noexcept { return lapse && lapse->count() > 0; }
    /// True if the shard may serve what it holds (capped, if `caps`).
    bool serves() const noexcept { return !lapse || (caps() && !withholds()); }
    /// True if this look caps, and what was read at `read_at` would go in
    /// expired by that cap.
    bool past_cap(time_point read_at, time_point now) const noexcept {
      return caps() && to_ms(now) >= cap_end_ms(read_at, now, *lapse);
    }
    /// When the lapse began, as far as one who last saw the leases valid at
    /// `seen_valid` can tell: the earliest end, or `seen_valid` if later (a
    /// lease lapsed to the clock's epoch says nothing of when it stopped).
    time_point began(time_point seen_valid) const noexcept {
      return std::max(time_point{time_point::duration{until}}, seen_valid);
    }
  };
  look look_at(time_point now) const noexcept {
    look out;
    auto leases = each();
    for (size_t i = 0; i < leases.size(); ++i) {
      auto* lease = leases[i];
      if (!lease) continue;
      auto until = lease->until_ticks();
      out.until = std::min(out.until, until);
      if (now.time_since_epoch().count() > until) { // as `read_lease::valid`
        out.lapsed_ends[i] = until;
        out.lapse =
          out.lapse ? std::min(*out.lapse, lease->repair_ttl()) : lease->repair_ttl();
        out.withheld[i] = lease->hits() == lapsed_hits::withheld;
      }
    }
    return out;
  }
  /// True if any lease is present.
  explicit operator bool() const noexcept { return cluster || changes; }
  /// Both, the cluster's first; null where absent.
  std::array<const read_lease*, 2> each() const noexcept {
    return {cluster.get(), changes.get()};
  }
  /// True if there is one lease, whose lapse serves what it caps (the change
  /// feed's under its `repair-ttl`): direct readers may serve through a lapse the
  /// shard acted on (`read_side::mark_capped`). One: that mark knows the earliest
  /// end, not which lease it was, nor whose cap.
  bool lapses_serve() const noexcept {
    auto* only = cluster && changes ? nullptr : cluster ? cluster.get() : changes.get();
    return only && only->repair_ttl().count() > 0 && only->hits() == lapsed_hits::served;
  }
};

/// What a shard last saw of its leases, so that it acts on a lapse once and
/// counts a cap from when the lapse began (actors/shard_lease.cpp).
struct lease_watch {
  using time_point = read_lease::time_point;

  /// Each lease's end found lapsed, until it was seen valid again (ticks, in the
  /// order of `read_leases::each`): the timer looks again once it moves. Per
  /// lease: the feed's lapses end at the epoch, and an earliest end of both would
  /// hide the cluster's; forgotten once valid, or the feed's next would go unseen.
  std::array<int64_t, 2> lapsed_ends{read_leases::not_lapsed, read_leases::not_lapsed};
  /// Something went in uncapped since the last cap (or there was none).
  bool cap_due = true;
  std::chrono::nanoseconds capped_at{0}; ///< that cap
  time_point seen_valid{};               ///< when every lease last held

  /// True if a lapse under `repair_ttl` must cap what the shard holds now:
  /// something may outlive the last cap. Each cap voids the loads in flight,
  /// so puts during a lapse must not make every read cap again.
  bool must_cap(std::chrono::nanoseconds repair_ttl) const noexcept {
    return cap_due || repair_ttl < capped_at;
  }
  /// Every lease held at `now`.
  void saw_valid(time_point now) noexcept {
    seen_valid = now;
    lapsed_ends = {read_leases::not_lapsed, read_leases::not_lapsed};
  }
  /// The ends of the leases `look` found lapsed; the others held. True if one that
  /// withholds hits lapsed at an end not seen lapsed before: a new lapse of its own,
  /// however the others lapse meanwhile (the feed's ends at the epoch).
  bool saw_lapse(const read_leases::look& look) noexcept {
    bool withheld_anew = false;
    for (size_t i = 0; i < lapsed_ends.size(); ++i)
      withheld_anew =
        withheld_anew || (look.withheld[i] && look.lapsed_ends[i] != lapsed_ends[i]);
    lapsed_ends = look.lapsed_ends;
    return withheld_anew;
  }
};

} // namespace karlton

// The part of a shard that callers read on their own threads, without a
// message: the direct read path. The shard alone changes its table; callers
// search it inside an RCU read section, count their hits here (exactly) and
// leave the entries they hit in a small lossy buffer the shard drains into
// its eviction policy (Caffeine's read buffer).
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <limits>
#include <memory>
#include <string_view>

#include "actors/entry_table.hpp"
#include "actors/read_lease.hpp"
#include <karlton/base/clock.hpp>

namespace karlton {

/// Shared by a shard (through its `shard_state`) and every handle of its
/// cache; lives while either holds it. After the shard stopped it is closed
/// and every read misses, so a call goes to the shard and learns it is gone.
/// @threadsafe `read`, `hits`: any thread; the rest: the owning shard only.
class read_side {
public:
  /// `time_source`: the runtime's clock (null: the steady clock). `leases`:
  /// a distributed or fed cache's read leases, or none.
  explicit read_side(std::shared_ptr<const clock> time_source = nullptr,
                     read_leases leases = {});

  /// The shard's table: only the shard changes it.
  entry_table table;

  /// What a direct read found.
  struct hit {
    value val;                ///< empty: ask the shard
    bool wants_drain = false; ///< the caller asks the shard to `drain` (one message)
  };

  /// On any thread: the value of `key` if the table holds it, live and
  /// unexpired, under a valid lease (or through a lapse the shard capped every
  /// entry for: `mark_capped`); else an empty value, and the caller asks the
  /// shard, which decides everything a hit cannot: misses, expired entries
  /// (stale-if-error), a lapsed lease. Counts the hit.
  hit read(std::string_view key, uint32_t hash) noexcept;

  /// Hits served here so far (added to the shard's stats).
  uint64_t hits() const noexcept;

  /// The shard: for each hit readers left in the buffer since the last drain
  /// (it drops when full), `age(ms)`, the age of the value it served as of
  /// the hit, and `learn(entry_id)` if its entry is still live under the tag
  /// it was hit with. True if readers hit since the last drain: the shard
  /// then drains again `drain_spacing` later on its own, and readers do not
  /// ask meanwhile. False: the shard calls `stop_draining`.
  template <class Learn, class Age>
  bool drain(Learn&& learn, Age&& age) {
    bool any = false;
    for (auto& s : stripes_) {
      // A stripe without hits since the last drain has nothing new: most
      // stripes of a shard read by few threads.
      auto hits = s.hits.load(std::memory_order_relaxed);
      if (hits == s.drained_at) continue;
      s.drained_at = hits;
      any = true;
      for (unsigned slot = 0; slot < buffer_length; ++slot) {
        auto r = s.recent[slot].exchange(0, std::memory_order_acquire);
        if (r == 0) continue;
        // A reader may have stored the next lap's age meanwhile: another
        // hit's, equally true of what was served.
        age(s.ages[slot].load(std::memory_order_relaxed));
        auto id = static_cast<entry_id>((r & 0xffffffffu) - 1);
        auto tag = static_cast<uint32_t>(r >> 32);
        if (id >= table.id_limit()) continue;
        const auto& e = table.at(id);
        if (e.live() && e.tag() == tag) learn(id);
      }
    }
    return any;
  }

  /// The shard, after a drain that found no hits: from now on the next
  /// reader to fill its buffer asks for a drain. False if a hit slipped in
  /// meanwhile and nobody asked: the shard keeps draining on its own.
  bool stop_draining() noexcept;

  /// The shard stopped: from now on every read misses.
  void close() noexcept { open_.store(false, std::memory_order_release); }

  /// Marks the lapse of the lease that ends at `until` (ticks) as one the shard
  /// capped every entry for: readers serve through it, each entry until its
  /// capped expiry. Only the owning shard calls it, after the caps: a reader
  /// that sees the mark sees them.
  void mark_capped(int64_t until) noexcept {
    if (capped_for_.load(std::memory_order_relaxed) != until) // the shard's own store
      capped_for_.store(until, std::memory_order_release);
  }
  /// Takes the mark away: readers ask the shard at the next lapse, even one that
  /// ends where the last did (the feed's ends at the epoch). Only the owning
  /// shard calls it, before something goes in uncapped. Counted: a reader whose
  /// mark was taken away and set anew meanwhile (for the next lapse, ending where
  /// the last did) sees the count move.
  void unmark() noexcept {
    if (capped_for_.load(std::memory_order_relaxed) == not_capped) return;
    capped_for_.store(not_capped, std::memory_order_relaxed);
    unmarks_.store(unmarks_.load(std::memory_order_relaxed) + 1,
                   std::memory_order_release);
  }

  /// The buffer's length per stripe (Caffeine uses 16): the latest 64 hits
  /// of a stripe since the last drain are what the policy learns from.
  static constexpr unsigned buffer_length = 64;

  /// How often a shard drains while readers hit it. Readers ask for a drain
  /// (a message, which may wake a scheduler thread: 10-30 us on the reader's
  /// side, and a preempted reader on 2 cores) only when a buffer fills after
  /// a quiet spell; then the shard drains on its own timer until a drain
  /// finds no hits. Asked on every full buffer instead, the drains cost
  /// ycsb-b's direct readers a quarter of their throughput and put a message
  /// into one hit of 64 (README, Performance). Between drains a fast reader's
  /// buffer wraps, so the policy learns from a sample of its hits.
  static constexpr std::chrono::milliseconds drain_spacing{5};

private:
  // One stripe per thread (modulo 8): threads count and record on their own
  // cache lines; the shard reads them all. `hits` is also the position of
  // the next record in `recent`.
  struct alignas(64) stripe {
    std::atomic<uint64_t> hits{0};
    std::array<std::atomic<uint64_t>, buffer_length> recent{};
    std::array<std::atomic<uint32_t>, buffer_length> ages{}; // ms, of `recent`'s hits
    uint64_t drained_at = 0; // hits at the last drain: the shard's alone
  };
  static constexpr unsigned stripe_count = 8;

  static constexpr int64_t not_capped = std::numeric_limits<int64_t>::min();

  std::shared_ptr<const clock> time_source_;
  read_leases leases_;
  const bool lapses_serve_; // leases_.lapses_serve(), kept: checked on every read
  std::atomic<int64_t> capped_for_{not_capped};
  std::atomic<uint64_t> unmarks_{0}; // marks taken away (`unmark`)
  std::array<stripe, stripe_count> stripes_;
  std::atomic<bool> open_{true};
  std::atomic<bool> drain_asked_{false};
};

} // namespace karlton

// The loads of one shard that are in flight: who waits for them, and whether
// a write or an invalidation has voided them since they started.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include "messages/value.hpp"

namespace karlton {

/// Told the result of a load it waited for: the value, or the loader's error.
using load_waiter = std::function<void(caf::expected<value>)>;

/// Single flight and version stamps, as bookkeeping (consistency rules 1 and 2
/// of DESIGN.md). Each load gets a number, its version stamp, when it starts.
/// A write or invalidation of the key while the load runs *voids* it: the
/// load leaves the table of current loads, so its result is not installed
/// and a caller that comes after the write starts (or joins) a new load. The
/// callers that were already waiting still get the voided result: their
/// reads overlapped the write. This is the eager form of comparing an entry's
/// version with the stamp a load recorded (Caffeine's ABA check, Memcache's
/// lease invalidation). Only the owning shard may call it.
///
/// A load may also time out: given a deadline when it starts, it is taken
/// out by `expire` once the deadline passed, current or voided, so a loader
/// that never answers leaves nothing behind but its own late answer (which
/// `finish` then does not know). Times are the shard's milliseconds.
class load_table {
public:
  struct finished {
    bool installable = false; ///< not voided: the result may be cached
    bool refresh = false;     ///< started by a refresh, not by a miss
    std::vector<load_waiter> waiters;
  };

  /// Adds `w` to the load in flight for `key` (true), or returns false if
  /// there is none.
  bool join(std::string_view key, load_waiter&& w);

  /// True if a load of `key` is in flight and not voided.
  bool in_flight(std::string_view key) const;

  /// Starts a load of `key` with `w` as its first waiter (none for a refresh)
  /// and returns its number. `key` must have no current load. It times out
  /// at `deadline_ms` (UINT64_MAX: never). Deadlines must not decrease from
  /// one start to the next (one timeout, a monotonic clock).
  uint64_t start(std::string_view key, std::optional<load_waiter> w, bool refresh,
                 uint64_t deadline_ms = UINT64_MAX);

  struct timed_out {
    std::string key;
    std::vector<load_waiter> waiters;
  };

  /// Takes out every load whose deadline is at or before `now_ms`, at most
  /// `max_work` deadlines looked at.
  std::vector<timed_out> expire(uint64_t now_ms, uint64_t max_work = UINT64_MAX);

  /// The earliest deadline of a load that may still be in the table.
  std::optional<uint64_t> next_deadline_ms() const {
    if (deadlines_.empty()) return std::nullopt;
    return deadlines_.front().at_ms;
  }

  /// Callers waiting for loads now, over all loads.
  size_t waiters() const noexcept { return waiters_; }

  /// Voids the current load of `key`, if any; true if there was one.
  bool void_key(std::string_view key);

  /// Voids every current load; returns how many.
  uint64_t void_all();

  /// Takes load `id` of `key` out of the table, current or voided.
  std::optional<finished> finish(std::string_view key, uint64_t id);

  /// Fails every waiter of every load (the shard is stopping).
  void fail_all(const caf::error& why);

  size_t size() const noexcept { return current_.size() + voided_.size(); }

private:
  struct pending {
    uint64_t id;
    bool refresh;
    std::vector<load_waiter> waiters;
  };
  struct deadline {
    uint64_t at_ms;
    uint64_t id;
    std::string key;
  };
  std::unordered_map<std::string, pending> current_;
  std::unordered_map<uint64_t, pending> voided_;
  // In start order, so in deadline order. Loads that finished leave theirs
  // behind until it passes: at most the loads started within one timeout.
  std::deque<deadline> deadlines_;
  size_t waiters_ = 0;
  uint64_t next_id_ = 1;
};

} // namespace karlton

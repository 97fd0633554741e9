// The loads of one shard that are in flight: who waits for them, and whether
// a write or an invalidation has voided them since they started.
#pragma once

#include <cstddef>
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

#include <karlton/messages/value.hpp>

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
///
/// And a load may have to wait: at most `max_out` loads are handed to the
/// loader at once (*out*), the next ones wait in a queue of at most
/// `max_queued` (*queued*), oldest first, and `has_room` says no beyond
/// that. A hung loader then holds at most max_out + max_queued load entries
/// per shard and gets no more than max_out jobs per load-timeout, instead of
/// one per distinct key. A queued load is a load for everything else: callers
/// join it, writes void it, its deadline runs from its start (not from when
/// it goes out), and it leaves the table and the queue when that passes.
class load_table {
public:
  struct limits {
    size_t max_out;    ///< loads handed to the loader at once
    size_t max_queued; ///< loads waiting for one of those
  };

  load_table() : limits_{SIZE_MAX, SIZE_MAX} {}
  explicit load_table(limits bounds) : limits_(bounds) {}

  struct finished {
    bool installable = false; ///< not voided: the result may be cached
    bool refresh = false;     ///< started by a refresh, not by a miss
    uint64_t started_ms = 0;  ///< as given to `start`
    std::vector<load_waiter> waiters;
  };

  /// Adds `w` to the load in flight for `key` (true), or returns false if
  /// there is none.
  bool join(std::string_view key, load_waiter&& w);

  /// True if a load of `key` is in flight and not voided.
  bool in_flight(std::string_view key) const;

  /// True if a load started now would go out at once: nothing waits and
  /// fewer than max_out are out. Background refreshes start only then, so
  /// they never take the queue's places from misses, whose callers wait.
  bool has_idle_slot() const noexcept { return out_ + queued_ < limits_.max_out; }

  /// True if a load may start: fewer than max_out + max_queued are in the
  /// table. Otherwise a new key must be refused (joining a load is fine).
  bool has_room() const noexcept {
    return out_ + queued_ < limits_.max_out ||
           out_ + queued_ - limits_.max_out < limits_.max_queued;
  }

  /// Starts a load of `key` with `w` as its first waiter (none for a refresh)
  /// and returns its number; it is queued until `take_ready` hands it out.
  /// `key` must have no current load and `has_room` must be true. It times
  /// out at `deadline_ms` (UINT64_MAX: never). Deadlines must not decrease
  /// from one start to the next (one timeout, a monotonic clock). `started_ms`:
  /// now, told back by `finish` (the value is no older than that).
  uint64_t start(std::string_view key, std::optional<load_waiter> w, bool refresh,
                 uint64_t deadline_ms, uint64_t started_ms);

  /// The queued loads that may go out now, oldest first, as (key, number),
  /// while fewer than max_out are out: the caller hands each to the loader.
  /// Due after `start`, `finish` and `expire` (they make room).
  std::vector<std::pair<std::string, uint64_t>> take_ready();

  /// True if `take_ready` would hand out a load now.
  bool has_ready() const noexcept { return queued_ > 0 && out_ < limits_.max_out; }

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

  /// Takes every load out of the table with its waiters, to fail them: the
  /// shard stops, or its only loader died. A voided load's key is empty.
  std::vector<timed_out> take_all();

  size_t size() const noexcept { return current_.size() + voided_.size(); }
  /// Loads handed to the loader and not finished nor timed out.
  size_t out() const noexcept { return out_; }
  /// Loads waiting to be handed out.
  size_t queued() const noexcept { return queued_; }

private:
  struct pending {
    uint64_t id;
    bool refresh;
    bool queued; // not handed out yet
    uint64_t started_ms;
    std::vector<load_waiter> waiters;
  };
  struct queued_load {
    std::string key;
    uint64_t id;
  };
  /// The load `id` of `key` if it is still in the table, current or voided.
  pending* find(const std::string& key, uint64_t id);
  /// Takes a load that left the table off the counts of out and queued ones.
  void uncount(const pending& p) noexcept {
    if (p.queued)
      --queued_;
    else
      --out_;
  }
  struct deadline {
    uint64_t at_ms;
    uint64_t id;
    std::string key;
  };
  std::unordered_map<std::string, pending, key_hasher> current_;
  std::unordered_map<uint64_t, pending> voided_;
  // In start order, so in deadline order. Loads that finished leave theirs
  // behind until it passes: at most the loads started within one timeout.
  std::deque<deadline> deadlines_;
  // In start order. Loads that timed out while queued leave theirs behind
  // until it comes to the front: being the oldest queued, they are at the
  // front, so `expire` drops them at once.
  std::deque<queued_load> ready_;
  limits limits_;
  size_t out_ = 0;
  size_t queued_ = 0;
  size_t waiters_ = 0;
  uint64_t next_id_ = 1;
};

} // namespace karlton

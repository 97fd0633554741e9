// Load failures a read-through shard remembers for a short while (negative
// caching), so a key whose load just failed is not loaded again at once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include <caf/error.hpp>
#include <karlton/messages/value.hpp>

namespace karlton {

/// The failures of recent loads, each kept for the same short TTL.
///
/// Memory stays bounded without counting these against the cache's size
/// bound: every failure gets the same TTL, so the order of remembering is the
/// order of running out, and a FIFO beside the map gives the shard's expiry
/// timer the next deadline in O(1) (no heap, no timer per key). The FIFO also
/// caps the total: past `capacity` items the oldest is dropped first.
/// Dropping a failure early costs at most one extra load, never a wrong
/// answer. A forgotten key leaves its FIFO item behind; the item is skipped
/// when it comes up, and it counts against the cap until then, so the cap
/// bounds the stale items as well. Only the owning shard may call it.
class negative_cache {
public:
  /// Failures remembered per shard at most. One costs about 200 B for a
  /// short key (map node, the error and its context string, the FIFO's copy
  /// of the key), so a flood of failing keys holds about 3 MB per shard.
  static constexpr size_t default_capacity = 16384;

  /// `ttl_ms` 0 turns negative caching off: `remember` does nothing.
  explicit negative_cache(uint64_t ttl_ms, size_t capacity = default_capacity)
    : ttl_ms_(ttl_ms), capacity_(capacity) {}

  bool enabled() const noexcept { return ttl_ms_ > 0; }
  bool empty() const noexcept { return by_key_.empty(); }
  /// Failures remembered now (including ones that ran out but were not yet
  /// dropped by `expire`).
  size_t size() const noexcept { return by_key_.size(); }

  /// Remembers that loading `key` failed with `why`, until `now_ms` + TTL (or
  /// `until_ms`, if sooner), replacing any older failure of the key.
  void remember(std::string_view key, caf::error why, uint64_t now_ms,
                uint64_t until_ms = UINT64_MAX);

  /// The failure remembered for `key` if it has not run out by `now_ms`.
  const caf::error* find(std::string_view key, uint64_t now_ms) const;

  /// Forgets `key` at once (a put or erase of it).
  void forget(std::string_view key) {
    if (!by_key_.empty()) by_key_.erase(std::string{key});
  }

  void clear();

  /// Drops failures that ran out by `now_ms`, looking at no more than
  /// `max_work` items; returns how many items it looked at.
  uint64_t expire(uint64_t now_ms, uint64_t max_work = UINT64_MAX);

  /// When the oldest item runs out; nothing if there is none.
  std::optional<uint64_t> next_expiry_ms() const;

private:
  struct failure {
    caf::error why;
    uint64_t expiry_ms;
    uint64_t seq; // which FIFO item is this failure's
  };
  struct queued {
    uint64_t expiry_ms;
    uint64_t seq;
    std::string key;
  };
  void pop_front();

  std::unordered_map<std::string, failure, key_hasher> by_key_;
  std::deque<queued> fifo_; // in expiry order, as long as time does not go back
  uint64_t ttl_ms_;
  size_t capacity_;
  uint64_t next_seq_ = 0;
};

} // namespace karlton

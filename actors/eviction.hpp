// Eviction policies: which entry leaves when a shard is over its size bound.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "actors/entry_table.hpp"
#include <karlton/base/policies.hpp>

namespace karlton {

/// Decides eviction order over the entries of one shard. The shard calls the
/// `on_*` hooks as entries come, are read and go, and asks `victim()` whenever
/// it is over its bound. Weights are 1 per entry, or bytes under `max-bytes`.
/// Only the owning shard may call it.
class eviction_policy {
public:
  virtual ~eviction_policy() = default;
  virtual void on_insert(entry_id id, uint64_t weight) = 0;
  virtual void on_hit(entry_id id) = 0;
  /// The entry's value was replaced; its weight changed from `old_w` to `new_w`.
  virtual void on_update(entry_id id, uint64_t old_w, uint64_t new_w) = 0;
  /// The entry is leaving (for any reason); called before it is removed.
  virtual void on_remove(entry_id id, uint64_t weight) = 0;
  /// The entry to evict next; the shard then removes it (calling `on_remove`).
  /// Only called when the shard holds at least one entry.
  virtual entry_id victim() = 0;
  virtual void clear() = 0;
  /// Bytes of policy metadata beyond the entries themselves.
  virtual size_t metadata_bytes() const noexcept { return 0; }

  /// `capacity` is in weight units; `weigh_bytes` says weights are key + value
  /// bytes rather than 1 per entry. TinyLFU's sketch is sized and aged by the
  /// entries the shard holds, whatever the weights: it grows with the table,
  /// up to `capacity` entries when weights are 1.
  static std::unique_ptr<eviction_policy> make(eviction_policy_kind kind,
                                               entry_table& table, uint64_t capacity,
                                               bool weigh_bytes);
};

/// A count-min sketch of 4-bit counters (4 rows), halved every 10 x capacity
/// increments so that old popularity fades: TinyLFU's frequency estimate.
/// About 8 bytes per entry of capacity. Capacity counts entries, never bytes:
/// the sample only ages the counters if it is about 10 accesses per entry
/// (Caffeine sizes a weighted cache's sketch by its entry count too).
class frequency_sketch {
public:
  /// Entries a shard can hold at most: entry ids are 32-bit.
  static constexpr uint64_t max_capacity = uint64_t{1} << 32;

  explicit frequency_sketch(uint64_t capacity);
  /// Grows to `capacity` (at most `max_capacity`) if it is smaller. No count
  /// is lost: the table doubles by copying itself, so each counter keeps its
  /// estimate (still an upper bound, as a count-min sketch's must be).
  void ensure_capacity(uint64_t capacity);
  uint64_t capacity() const noexcept { return capacity_; }
  void increment(uint32_t hash) noexcept;
  /// Estimated recent frequency, 0..15.
  unsigned frequency(uint32_t hash) const noexcept;
  void clear() noexcept;
  size_t bytes() const noexcept { return table_.size() * sizeof(uint64_t); }

private:
  void halve() noexcept;
  std::vector<uint64_t> table_; // 16 counters per word
  uint64_t mask_ = 0;
  uint64_t capacity_ = 0;
  uint64_t sample_size_ = 0;
  uint64_t additions_ = 0;
};

} // namespace karlton

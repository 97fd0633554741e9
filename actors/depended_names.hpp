// Which names the entries of one cache depend on now through
// `dependencies::on` (keys and tags): a counting Bloom filter its shards
// share. An erase or an invalidation hands a key to the bus for cascading only if
// something may depend on it, so invalidating 100k entries nothing depends on
// costs one round, not two (karlton-bench tag-purge: 376 ms p50 without it).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <karlton/messages/value.hpp>

namespace karlton {

/// Each shard's dependency index adds a name when it gets its first
/// dependent in that shard and removes it when it loses its last one, so the
/// filter holds the names depended on now, not every name ever added.
///
/// Why counting and not a plain bit array aged in generations: a plain
/// filter never forgets, and with churning names its false positives grew
/// to 19 % at 300k and 84 % at 1M names ever added, every erase a cascade
/// round again. Aging by generations would drop a name that still has
/// dependents unless every shard re-added its live names before each
/// rotation (a cross-shard round), and a name missed there is a cascade
/// skipped: a dependent left stale. Counts need no round: a name's counters
/// stay above zero while any shard holds a dependent of it, so there is no
/// false negative, and the false positives follow the live names only,
/// about (1 - exp(-3n / 2^20))^3 with n (name, shard) pairs: 0.002 % at
/// 10k, 1.5 % at 100k. The cost: 2 MiB of 16-bit counters per cache,
/// allocated by its first dependency on a name (a bit array was 128 KiB),
/// and 3 compare-and-swaps when a shard's index interns or frees a name,
/// not on every put. A counter that reaches 65535 (only 65535 pairs that
/// all hash to it) stays there: never decremented, it can only cost a
/// false positive, never a false negative.
/// @threadsafe
class depended_names {
public:
  depended_names() = default;
  depended_names(const depended_names&) = delete;
  depended_names& operator=(const depended_names&) = delete;
  ~depended_names() { delete[] counters_.load(std::memory_order_acquire); }

  /// A shard now has a dependent of `name` (it had none). Called before the
  /// put that made it is acknowledged, so an invalidation that starts after the put
  /// returned sees it: no cascade is missed.
  void add(std::string_view name) noexcept { change(name, +1); }

  /// A shard has no dependent of `name` left. Only after an `add` of it by
  /// the same shard.
  void remove(std::string_view name) noexcept { change(name, -1); }

  bool may_contain(std::string_view name) const noexcept {
    auto* counters = counters_.load(std::memory_order_acquire);
    if (counters == nullptr) return false;
    auto [h1, h2] = hashes(name);
    for (uint64_t i = 0; i < probes; ++i)
      if (counters[(h1 + i * h2) & (cell_count - 1)].load(std::memory_order_acquire) == 0)
        return false;
    return true;
  }

  /// Bytes held: 0 until the first `add`.
  size_t bytes() const noexcept {
    return counters_.load(std::memory_order_acquire) ? cell_count * sizeof(uint16_t) : 0;
  }

private:
  static constexpr uint64_t cell_count = uint64_t{1} << 20;
  static constexpr uint64_t probes = 3;
  static constexpr uint16_t saturated = UINT16_MAX;

  static std::pair<uint64_t, uint64_t> hashes(std::string_view name) noexcept {
    auto h = hash_key(name);
    return {h, (h >> 33) | 1}; // double hashing with an odd step
  }

  std::atomic<uint16_t>* cells() {
    auto* counters = counters_.load(std::memory_order_acquire);
    if (counters != nullptr) return counters;
    // The first name: allocated once, whoever gets here first.
    std::lock_guard<std::mutex> guard{alloc_};
    counters = counters_.load(std::memory_order_acquire);
    if (counters == nullptr) {
      counters = new std::atomic<uint16_t>[cell_count];
      for (uint64_t i = 0; i < cell_count; ++i)
        counters[i].store(0, std::memory_order_relaxed);
      counters_.store(counters, std::memory_order_release);
    }
    return counters;
  }

  void change(std::string_view name, int delta) noexcept {
    auto* counters = cells();
    auto [h1, h2] = hashes(name);
    for (uint64_t i = 0; i < probes; ++i) {
      auto& cell = counters[(h1 + i * h2) & (cell_count - 1)];
      auto old = cell.load(std::memory_order_relaxed);
      do {
        if (old == saturated) break; // sticks: see the class comment
      } while (!cell.compare_exchange_weak(old, static_cast<uint16_t>(old + delta),
                                           std::memory_order_release,
                                           std::memory_order_relaxed));
    }
  }

  std::atomic<std::atomic<uint16_t>*> counters_{nullptr};
  std::mutex alloc_; // only for the one allocation
};

/// One shard's names that its write-through puts at the store link to. They
/// go into the shard's index only when the store answers, and until then an
/// erase or a change of one of them (a local erase, the change feed) found
/// nothing depending on it, ran no cascade, and the put went in after the
/// change it was derived from (rule 1). Held, each name counts in the filter
/// once per shard however many puts hold it (a hot tag costs no
/// compare-and-swap on the shared cells a put, and cannot saturate them), so
/// the change cascades and the cascade voids the put.
/// @nothreadsafe (the owning shard's)
class held_links {
public:
  explicit held_links(std::shared_ptr<depended_names> filter)
    : filter_(std::move(filter)) {}
  void hold(const std::string& name) {
    if (counts_[name]++ == 0) filter_->add(name);
  }
  void release(const std::string& name) {
    auto i = counts_.find(name);
    if (--i->second > 0) return;
    counts_.erase(i);
    filter_->remove(name);
  }

private:
  std::shared_ptr<depended_names> filter_;
  std::unordered_map<std::string, uint32_t> counts_;
};

/// A pending put's hold on its names in `held_links`, released when it goes.
class held_names {
public:
  held_names(std::shared_ptr<held_links> links, std::vector<std::string> names)
    : links_(std::move(links)), names_(std::move(names)) {
    for (const auto& n : names_)
      links_->hold(n);
  }
  ~held_names() {
    for (const auto& n : names_)
      links_->release(n);
  }
  held_names(const held_names&) = delete;
  held_names& operator=(const held_names&) = delete;

private:
  std::shared_ptr<held_links> links_;
  std::vector<std::string> names_;
};

} // namespace karlton

// The keys a connection's writes in flight touch (read-your-writes, §4.3):
// for each key hash, how many writes are in flight and the one way they
// took. Every SET adds a key and its reply removes it, so this is on the hot
// path of each write: open addressing with linear probing and deletion by
// backward shift, and the hashes in request order in a ring, keep it free of
// allocation once both have grown to the connection's pipeline depth (an
// unordered_map and a record per write allocated two or three times).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace karlton::server {

/// The way a write reaches its key's shard. The shard keeps one key's writes
/// in order only within one way: a put goes to the store at once, a compute
/// waits behind the key's pending store writes, a TTL change waits behind the
/// key's writes and computes still pending at the shard (not behind a put of it
/// that has yet to arrive), and the blocking pool runs its jobs in any order. So a
/// connection's write of a key waits for its earlier writes of that key
/// that went another way (or any way, on the pool) (§4.3).
enum class write_path : uint8_t {
  put,     ///< put / erase / put_many: the shard's ordered write queue
  compute, ///< compute, increment, compare_and_set: behind pending writes
  ttl,     ///< set_ttl: behind what of the key waits at the shard
  pool,    ///< a blocking call on the pool (a distribution=sync cache)
};

/// Key hash -> (writes in flight, their way). Writes leave in the order
/// they came (replies are drained in request order). I/O thread only.
class in_flight_writes {
public:
  struct writes {
    uint32_t count; ///< 0: a free slot
    write_path path;
  };

  bool empty() const noexcept { return used_ == 0; }
  /// Distinct hashes in flight.
  size_t size() const noexcept { return used_; }

  /// The writes in flight of `hash`, or null if none.
  const writes* find(uint64_t hash) const noexcept {
    if (used_ == 0) return nullptr;
    const auto& s = slots_[probe(hash)];
    return s.w.count != 0 ? &s.w : nullptr;
  }

  /// One more write of `hash`; `path` is kept from its first write in flight.
  /// If growing throws (no memory), nothing changed.
  void add(uint64_t hash, write_path path) {
    if ((used_ + 1) * 2 > slots_.size()) grow();
    if (order_count_ == order_.size()) grow_order();
    order_[(order_head_ + order_count_++) & (order_.size() - 1)] = hash;
    auto& s = slots_[probe(hash)];
    if (s.w.count != 0) {
      ++s.w.count;
      return;
    }
    s = slot{hash, {1, path}};
    ++used_;
  }

  /// The `n` oldest writes are done (a reply drained: the keys its command
  /// wrote, in the order they were added).
  void remove_oldest(size_t n) noexcept {
    for (; n > 0 && order_count_ > 0; --n, --order_count_) {
      remove(order_[order_head_]);
      order_head_ = (order_head_ + 1) & (order_.size() - 1);
    }
    // One MSET of a million keys must not pin its table for the rest of
    // the connection's life; a pipeline's depth stays well below this.
    if (order_count_ == 0 && slots_.size() > keep_slots) *this = in_flight_writes{};
  }

  /// The bytes its table and ring hold, capacity included.
  size_t memory() const noexcept {
    return slots_.capacity() * sizeof(slot) + order_.capacity() * sizeof(uint64_t);
  }

  /// Table slots kept once nothing is in flight (16 KiB of them).
  static constexpr size_t keep_slots = 1024;

private:
  struct slot {
    uint64_t hash = 0;
    writes w{0, write_path::put};
  };

  void remove(uint64_t hash) noexcept {
    size_t i = probe(hash);
    if (slots_[i].w.count == 0 || --slots_[i].w.count > 0) return;
    --used_;
    // Backward shift: move each later entry of the run whose home is not
    // between the hole and it into the hole, so lookups never stop early.
    for (size_t j = (i + 1) & mask_; slots_[j].w.count != 0; j = (j + 1) & mask_) {
      size_t h = home(slots_[j].hash);
      bool stays = i <= j ? (i < h && h <= j) : (i < h || h <= j);
      if (stays) continue;
      slots_[i] = slots_[j];
      slots_[j].w.count = 0;
      i = j;
    }
  }

  // The slot holding `hash`, or the free slot that ends its run (the table
  // is never full: it grows at half load).
  size_t probe(uint64_t hash) const noexcept {
    size_t i = home(hash);
    while (slots_[i].w.count != 0 && slots_[i].hash != hash)
      i = (i + 1) & mask_;
    return i;
  }

  size_t home(uint64_t hash) const noexcept {
    // Fibonacci hashing: the key hashes' high bits are as good as the low.
    return static_cast<size_t>((hash * 0x9e3779b97f4a7c15ULL) >> shift_) & mask_;
  }

  void grow() {
    size_t n = slots_.empty() ? 16 : slots_.size() * 2;
    std::vector<slot> next(n); // may throw: nothing has changed yet
    next.swap(slots_);
    mask_ = n - 1;
    shift_ = 64;
    for (size_t m = n; m > 1; m >>= 1)
      --shift_;
    for (const auto& s : next) { // the old slots now
      if (s.w.count == 0) continue;
      size_t i = home(s.hash);
      while (slots_[i].w.count != 0)
        i = (i + 1) & mask_;
      slots_[i] = s;
    }
  }

  void grow_order() {
    std::vector<uint64_t> next(order_.empty() ? 16 : order_.size() * 2);
    for (size_t k = 0; k < order_count_; ++k)
      next[k] = order_[(order_head_ + k) & (order_.size() - 1)];
    order_.swap(next);
    order_head_ = 0;
  }

  std::vector<uint64_t> order_; // the hashes in flight, oldest at order_head_
  size_t order_head_ = 0;
  size_t order_count_ = 0;
  std::vector<slot> slots_;
  size_t mask_ = 0;
  unsigned shift_ = 64;
  size_t used_ = 0;
};

} // namespace karlton::server

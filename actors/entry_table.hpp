// The compact storage of one shard: an arena of 24-byte entries and an open
// addressing index from key to entry. Knows nothing about TTL, policies or actors.
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include <karlton/messages/value.hpp>

namespace karlton {

using entry_id = uint32_t;
constexpr entry_id no_entry = UINT32_MAX;

/// One cached key. 24 bytes: the shared value buffer (which holds the key),
/// two links for the eviction policy's lists, and one word of bits.
struct entry {
  /// 2^40 ms is 34 years: longer TTLs count as never expiring.
  static constexpr uint64_t never = (uint64_t{1} << 40) - 1;
  static constexpr unsigned tag_bits = 21;

  /// The top 21 bits of the key's hash. A probe that meets another key's
  /// entry rejects it without loading that key's value buffer (a second cache
  /// miss), and the index computes homes from the tag alone, so removing and
  /// rehashing never load value buffers either.
  static uint32_t tag_of(uint32_t hash) noexcept { return hash >> (32 - tag_bits); }

  value val;
  entry_id prev = no_entry;
  entry_id next = no_entry; // also links the free list of dead entries
  uint64_t expiry_ms : 40;  // on the runtime clock; `never` if it does not expire
  uint64_t list : 2;        // which of the policy's lists holds it
  uint64_t live : 1;
  uint64_t tag : tag_bits;

  entry() : expiry_ms(never), list(0), live(0), tag(0) {}
  bool expires() const noexcept { return expiry_ms != never; }
};
static_assert(sizeof(entry) == 24, "entries must stay compact (see README, memory)");

/// Entries in fixed chunks, so growing never moves or doubles them, plus a
/// linear-probing index of 4-byte entry ids (load factor 0.5-0.8).
///
/// A key's home slot comes from its entry's 21-bit tag, not the full hash,
/// so the backward shift of a removal reads each neighbour's 24-byte entry
/// but not its value buffer: in karlton-bench tag-purge those reads were
/// perf's largest item of an invalidation (2 cache misses per neighbour, now 1).
/// The known weakness: past 2^21 slots (about 1.7M entries per shard) only
/// every k-th slot can be a home, which makes the index linear probing over
/// buckets of k slots: probes of up to k - 1 more slots, sequential ones.
/// Only the owning shard may call it.
class entry_table {
public:
  /// Live entries one table (one shard) holds at most: 2^32 - 1, since ids
  /// are 32-bit and `no_entry` is UINT32_MAX. Dead ids are reused first, so
  /// only live entries count. (`karlton.max-entries` is bounded by it too.)
  static constexpr uint64_t max_entries = no_entry;

  /// `limit`: fewer entries than `max_entries`, for tests.
  explicit entry_table(uint64_t limit = max_entries);

  entry& at(entry_id id) noexcept { return chunks_[id >> chunk_bits][id & chunk_mask]; }
  const entry& at(entry_id id) const noexcept {
    return chunks_[id >> chunk_bits][id & chunk_mask];
  }

  /// The live entry for `key`, or `no_entry`. `hash` is `value::table_hash()`.
  entry_id find(std::string_view key, uint32_t hash) const noexcept;

  /// Prefetch steps for a batch of lookups: step 0 loads the key's home slot,
  /// step 1 the entry it names, step 2 that entry's value buffer. Running each
  /// step over the whole batch before the next lets the misses overlap.
  void prefetch(uint32_t hash, int step) const noexcept {
    auto i = home_of(hash);
    if (step == 0) return __builtin_prefetch(&slots_[i]);
    auto id = slots_[i];
    if (id == no_entry) return;
    if (step == 1) return __builtin_prefetch(&at(id));
    at(id).val.prefetch();
  }

  /// Adds a new live entry for `v`, whose key must not be present. Throws
  /// `std::length_error` if the table is `full()`: its next id would be
  /// `no_entry`. Callers check `full()` first and refuse the put.
  entry_id insert(value v);

  /// True if no further entry fits (see `max_entries`).
  bool full() const noexcept { return size_ >= limit_; }

  /// Removes a live entry and returns its value.
  value remove(entry_id id);

  /// Drops every entry.
  void clear();

  size_t size() const noexcept { return size_; }
  /// Number of ids handed out so far, live or dead: iterate `[0, id_limit())`.
  entry_id id_limit() const noexcept { return next_fresh_; }

  /// Bytes of metadata this table holds (entries, index), for the benchmark.
  size_t metadata_bytes() const noexcept;

private:
  static constexpr unsigned chunk_bits = 12; // 4096 entries = 96 KiB per chunk
  static constexpr entry_id chunk_mask = (1u << chunk_bits) - 1;

  size_t home_of_tag(uint32_t tag) const noexcept {
    return static_cast<size_t>((uint64_t{tag} * slots_.size()) >> entry::tag_bits);
  }
  size_t home_of(uint32_t hash) const noexcept {
    return home_of_tag(entry::tag_of(hash));
  }
  size_t next_slot(size_t i) const noexcept { return i + 1 == slots_.size() ? 0 : i + 1; }
  void grow_index();
  void place(entry_id id);

  std::vector<std::unique_ptr<entry[]>> chunks_;
  std::vector<entry_id> slots_; // `no_entry` marks an empty slot
  uint64_t limit_;
  entry_id free_head_ = no_entry;
  entry_id next_fresh_ = 0;
  size_t size_ = 0;
};

/// An intrusive doubly-linked list threaded through `entry::prev/next`.
/// Front is most recent. Tracks the summed weight of its entries.
struct entry_list {
  entry_id head = no_entry;
  entry_id tail = no_entry;
  uint64_t weight = 0;
  uint64_t count = 0;

  bool empty() const noexcept { return head == no_entry; }
  void push_front(entry_table& t, entry_id id, uint64_t w) noexcept;
  void unlink(entry_table& t, entry_id id, uint64_t w) noexcept;
  void move_to_front(entry_table& t, entry_id id) noexcept;
  void reset() noexcept { *this = entry_list{}; }
};

} // namespace karlton

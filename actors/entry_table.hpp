// The compact storage of one shard: an arena of 24-byte entries and an open
// addressing index from key to entry. Knows nothing about TTL, policies or
// actors. The shard is its only writer; any thread may read it (`read`)
// inside an RCU read section, without a lock: the direct read path.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "actors/milliseconds.hpp"
#include <karlton/messages/ttl.hpp>
#include <karlton/messages/value.hpp>

namespace karlton {

using entry_id = uint32_t;
constexpr entry_id no_entry = UINT32_MAX;

/// The TTL that, given at `now_ms`, expires at `expiry_ms` (1 ms if that
/// has passed: an entry that keeps a past expiry expires at once).
inline ttl expiring_at(uint64_t expiry_ms, uint64_t now_ms) noexcept {
  return ttl::after(
    std::chrono::milliseconds{expiry_ms > now_ms ? expiry_ms - now_ms : uint64_t{1}});
}

/// One cached key. 24 bytes: the shared value buffer (which holds the key),
/// two links for the eviction policy's lists, and one word of bits.
/// `val` and the word change only through `entry_table` (readers on other
/// threads load them atomically); the links are the shard's alone.
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

  // The word: expiry (40 bits, ms on the runtime clock; `never` if it does
  // not expire), the policy list (2), live (1), tag (21).
  static uint64_t expiry_of(uint64_t w) noexcept { return w & never; }
  static unsigned list_of(uint64_t w) noexcept { return (w >> 40) & 3; }
  static bool live_of(uint64_t w) noexcept { return (w >> 42) & 1; }
  static uint32_t tag_in(uint64_t w) noexcept { return static_cast<uint32_t>(w >> 43); }

  uint64_t expiry_ms() const noexcept { return expiry_of(word()); }
  unsigned list() const noexcept { return list_of(word()); }
  bool live() const noexcept { return live_of(word()); }
  uint32_t tag() const noexcept { return tag_in(word()); }
  bool expires() const noexcept { return expiry_ms() != never; }

  /// Which of the policy's lists holds it: the shard's bookkeeping, which
  /// readers ignore.
  void set_list(unsigned l) noexcept {
    set_word((word() & ~(uint64_t{3} << 40)) | (uint64_t{l & 3} << 40));
  }

  /// The word as a reader on another thread sees it.
  uint64_t word_acquire() const noexcept { return word_.load(std::memory_order_acquire); }

private:
  friend class entry_table;
  // The writer reads its own word without ordering and publishes with release.
  uint64_t word() const noexcept { return word_.load(std::memory_order_relaxed); }
  void set_word(uint64_t w) noexcept { word_.store(w, std::memory_order_release); }
  static uint64_t make_word(uint64_t expiry, unsigned list, bool live, uint32_t tag) {
    return (expiry & never) | (uint64_t{list & 3} << 40) | (uint64_t{live} << 42) |
           (uint64_t{tag} << 43);
  }
  std::atomic<uint64_t> word_{never};
};
static_assert(sizeof(entry) == 24, "entries must stay compact (see README, memory)");

/// Entries in fixed chunks, so growing never moves them, plus a
/// linear-probing index of 4-byte entry ids (load factor 0.5-0.8).
///
/// A key's home slot comes from its entry's 21-bit tag, not the full hash,
/// so the backward shift of a removal reads each neighbour's 24-byte entry
/// but not its value buffer: in karlton-bench tag-purge those reads were
/// perf's largest item of an invalidation (2 cache misses per neighbour, now 1).
/// The known weakness: past 2^21 slots (about 1.7M entries per shard) only
/// every k-th slot can be a home, which makes the index linear probing over
/// buckets of k slots: probes of up to k - 1 more slots, sequential ones.
///
/// Readers: the index and the directory of chunks are each replaced whole
/// when they grow (or on `clear`), and what a change unlinks (old arrays,
/// chunks, replaced and removed values) is kept in a retire list that the
/// shard hands to RCU (`retire_unlinked`) after each change, so a reader
/// never touches freed memory. Only the owning shard may call the rest.
class entry_table {
public:
  /// Live entries one table (one shard) holds at most: 2^32 - 1, since ids
  /// are 32-bit and `no_entry` is UINT32_MAX. Dead ids are reused first, so
  /// only live entries count. (`karlton.max-entries` is bounded by it too.)
  static constexpr uint64_t max_entries = no_entry;

  /// `limit`: fewer entries than `max_entries`, for tests.
  explicit entry_table(uint64_t limit = max_entries);
  /// Frees everything at once: no reader can reach a table being destroyed
  /// (readers hold the object that owns it).
  ~entry_table();
  entry_table(const entry_table&) = delete;
  entry_table& operator=(const entry_table&) = delete;

  /// The entry with id `id`: the shard only (readers use `read`).
  entry& at(entry_id id) noexcept { return chunk(id)[id & chunk_mask]; }
  const entry& at(entry_id id) const noexcept { return chunk(id)[id & chunk_mask]; }

  /// The live entry for `key`, or `no_entry`. `hash` is `value::table_hash()`.
  entry_id find(std::string_view key, uint32_t hash) const noexcept;

  /// What a reader found: the value (sharing its buffer), the expiry it had
  /// and its entry, for the shard to learn the hit from.
  struct found {
    value val;
    uint64_t expiry_ms = entry::never;
    entry_id id = no_entry;
  };

  /// For any thread, inside an `rcu::read_section`: the value of `key`, or
  /// an empty one. Never another key's value, and never one the shard
  /// replaced or removed before the call began; it may miss a key that the
  /// shard moves meanwhile, so a miss is to be asked of the shard.
  found read(std::string_view key, uint32_t hash) const noexcept;

  /// Tests only: `read` calls `pause(1)` after it loaded a candidate entry's
  /// word and `pause(2)` after it loaded the value, so a test can change the
  /// table between a reader's loads; null (the default) calls nothing.
  static void set_read_pause_for_testing(void (*pause)(int step)) noexcept;

  /// Prefetch steps for a batch of lookups: step 0 loads the key's home slot,
  /// step 1 the entry it names, step 2 that entry's value buffer. Running each
  /// step over the whole batch before the next lets the misses overlap.
  /// Safe on any thread inside a read section (it only hints the CPU).
  void prefetch(uint32_t hash, int step) const noexcept;

  /// Adds a new live entry for `v` expiring at `expiry_ms`, whose key must not
  /// be present. Throws `std::length_error` if the table is `full()`: its
  /// next id would be `no_entry`. Callers check `full()` first and refuse.
  entry_id insert(value v, uint64_t expiry_ms = entry::never);

  /// Replaces a live entry's value and expiry; returns the old value (which
  /// the table also retires). A reader sees the old pair or the new one, or
  /// the new value with the earlier of the two expiries. (Replaced twice
  /// during one read, A -> B -> A, it may see B's value under A's expiry: a
  /// value installed during the read, unexpired when installed, so the read
  /// still takes effect at a moment when that value was current.)
  value replace(entry_id id, value v, uint64_t expiry_ms);

  /// Sets a live entry's expiry (a repair's cap).
  void set_expiry(entry_id id, uint64_t expiry_ms) noexcept;

  /// True if no further entry fits (see `max_entries`).
  bool full() const noexcept { return size_ >= limit_; }

  /// Removes a live entry and returns its value (which the table also retires).
  value remove(entry_id id);

  /// Drops every entry.
  void clear();

  /// True if a change unlinked something that readers may still see.
  bool has_unlinked() const noexcept { return unlinked_ != nullptr; }
  /// Hands what changes unlinked to RCU, to be freed after the readers that
  /// may see it (one grace period, one `call_rcu` for the lot). The shard
  /// calls it after each change it makes (its after-change step).
  void retire_unlinked();

  size_t size() const noexcept { return size_; }
  /// Number of ids handed out so far, live or dead: iterate `[0, id_limit())`.
  entry_id id_limit() const noexcept { return next_fresh_; }

  /// Bytes of metadata this table holds (entries, index), for the benchmark.
  size_t metadata_bytes() const noexcept;

private:
  static constexpr unsigned chunk_bits = 12; // 4096 entries = 96 KiB per chunk
  static constexpr entry_id chunk_mask = (1u << chunk_bits) - 1;
  struct index;     // the slots, published whole
  struct directory; // the chunk pointers, published whole
  struct unlinked;  // what to retire

  entry* chunk(entry_id id) const noexcept;
  size_t home_of_tag(uint32_t tag, size_t slots) const noexcept {
    return static_cast<size_t>((uint64_t{tag} * slots) >> entry::tag_bits);
  }
  static size_t next_slot(size_t i, size_t slots) noexcept {
    return i + 1 == slots ? 0 : i + 1;
  }
  void grow_index();
  void add_chunk();
  void place(index* ix, entry_id id);
  unlinked& to_retire();
  void retire_value(const value& v);

  static std::atomic<void (*)(int step)> read_pause_;

  std::atomic<index*> index_;
  std::atomic<directory*> dir_;
  std::unique_ptr<unlinked> unlinked_;
  uint64_t limit_;
  entry_id free_head_ = no_entry;
  entry_id next_fresh_ = 0;
  size_t chunks_ = 0;
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

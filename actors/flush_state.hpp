// The plain state of the write-back flusher: the dirty writes of one cache,
// how they are batched, coalesced and retried. No actors here: the flusher
// actor translates messages into these calls, and tests drive it with
// explicit times.
#pragma once

#include <cstdint>
#include <deque>
#include <memory_resource>
#include <optional>
#include <random>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <caf/timespan.hpp>

#include "actors/shard_state.hpp" // time_point
#include <karlton/messages/value.hpp>
#include <karlton/messages/writes.hpp>

namespace karlton {

struct flush_options {
  /// A batch starts once this many keys are dirty...
  uint32_t batch_size = 1000;
  /// ...or once the oldest dirty write is this old.
  caf::timespan flush_interval = std::chrono::milliseconds{100};
  /// Backoff after a failed batch: base * 2^(failures-1), at most max, then
  /// "equal jitter" (a uniform half of it added to the other half), so shards
  /// of many caches retrying one broken store do not retry in lockstep.
  caf::timespan retry_base = std::chrono::milliseconds{10};
  caf::timespan retry_max = std::chrono::seconds{5};
  uint64_t seed = 1;
  /// With a journal, a write goes into a batch only once `journaled` covers
  /// it: the store then never has a write the journal lacks, so a replay
  /// after a crash cannot put an older record over it.
  bool journal = false;
  /// With a journal: once it holds this many bytes, the next group commit
  /// rewrites it with just the writes not yet stored (see `journal_rewrite`).
  uint64_t journal_max_bytes = uint64_t{64} << 20;
};

/// True if the next group commit should rewrite the journal instead of
/// appending to it: it holds `bytes`, the last rewrite left `rewritten`
/// bytes. Twice that at least, so a large set of unstored writes (bounded by
/// max-dirty) does not make every commit a rewrite: the journal stays under
/// max(`max_bytes`, 2 x the unstored writes) plus one group.
bool journal_rewrite(uint64_t bytes, uint64_t rewritten, uint64_t max_bytes);

/// The bytes `items` take as journal records (stores/journal_records.cpp's format).
uint64_t journal_bytes(const std::vector<shard_write>& items);

/// The bytes a journal's stored mark of `n` writes takes.
uint64_t journal_mark_bytes(uint64_t n);

/// Writes with the numbers `flush_state::add` gave them, side by side: what
/// the journal records, so that a stored mark can name them.
struct numbered_writes {
  std::vector<shard_write> items;
  std::vector<uint64_t> numbers;
};

/// Dirty writes by key, oldest first. Invariants that carry consistency rules
/// 4 and 5 of DESIGN.md:
/// - at most one batch is in flight, so the store sees the writes of a key in
///   the order they were made: a newer write waits in `pending` until the
///   batch with the older one is stored or failed;
/// - a failed batch goes back to the front of `pending`, except where a newer
///   write of the key arrived meanwhile, which then supersedes it: a retry
///   never overwrites a newer value, and nothing acknowledged is dropped;
/// - the writes of a failed batch go in batches of at most half its size
///   until they are stored, and one that failed alone goes to the back of
///   the line: a write the store always refuses (a key over its index's
///   limit, a CHECK constraint) is found in a few halvings, fails by itself
///   on every lap, and holds up no other key (before, it went back to the
///   front with its batch, and no write after it was stored). Caps never
///   grow back, since a stored batch says nothing of the writes left: an
///   outage of F failed batches leaves about F writes that go one a
///   transaction, once, when it ends.
/// Only the owning flusher may call it.
class flush_state {
public:
  explicit flush_state(flush_options cfg);
  // Neither copied nor moved: `order_` points into `pending_`'s own nodes.
  flush_state(const flush_state&) = delete;
  flush_state& operator=(const flush_state&) = delete;

  /// Takes a dirty write of shard `shard`. Returns 1 if it replaced an older
  /// write of the key that was not in flight yet (coalesced), else 0.
  uint64_t add(uint32_t shard, shard_write item, time_point now);

  /// The newest write of `key` the store does not have yet, or null.
  const shard_write* newest(std::string_view key) const;

  /// The number `add` gave the last write.
  uint64_t last_accepted() const noexcept { return accepted_; }

  /// With a journal: every write up to number `through` is durable in it.
  void journaled(uint64_t through);

  /// The writes the store does not have yet, the newest of each key: what a
  /// journal rewrite must keep.
  numbered_writes unstored() const;

  /// True if a batch should start now: none in flight, not backing off, the
  /// oldest write journaled (with a journal), and a full batch is dirty, or
  /// the oldest write is due, or a flush was asked.
  bool should_flush(time_point now) const;

  /// When `should_flush` next turns true by itself (interval or backoff), if
  /// anything is dirty and no batch is in flight; now or earlier if it is
  /// true already.
  std::optional<time_point> next_due() const;

  /// Moves up to `batch_size` of the oldest dirty keys in flight and returns
  /// their writes, for one transaction. With a journal a key whose latest
  /// write is not journaled yet keeps its place and waits; the keys behind
  /// it go. A write of a failed batch goes in one of at most its `cap`.
  std::vector<shard_write> take_batch(time_point now);

  /// The batch in flight is stored: which writes of which shard, and how
  /// many writes that makes; their numbers, for the journal's stored mark.
  struct stored {
    std::vector<std::pair<uint32_t, stored_writes>> by_shard;
    uint64_t count = 0;
    std::vector<uint64_t> numbers;
  };
  stored batch_stored();

  /// The batch in flight failed: its writes are dirty again (see class
  /// comment). Returns how many of them a newer write superseded.
  uint64_t batch_failed(time_point now);

  /// Asks for everything dirty now to be stored without waiting for the
  /// interval; returns a ticket for `stored_through`.
  uint64_t request_flush();
  /// True once every write accepted before `ticket` was issued is stored.
  bool stored_through(uint64_t ticket) const;

  bool in_flight() const noexcept { return !in_flight_.empty(); }
  /// Writes not yet stored: dirty plus in flight.
  uint64_t dirty() const noexcept { return pending_.size() + in_flight_.size(); }
  write_stats stats(time_point now) const;
  const flush_options& config() const noexcept { return cfg_; }

private:
  struct slot {
    shard_write item;
    uint32_t shard = 0;
    uint64_t number = 0;    // order of acceptance, for flush tickets
    uint64_t latest = 0;    // the number of `item` (coalescing moves it on)
    uint64_t since_ms = 0;  // when the key became dirty (coalescing keeps it)
    uint32_t cap = 0;       // in failed batches: goes in one of at most this many
    bool sent_back = false; // failed alone: at the back of `order_`, out of age order
  };

  /// A key as the maps hold it: a view of the key in a write's own buffer,
  /// and the hash its value computed once (no copy of the key, no second hash).
  struct key_ref {
    std::string_view key;
    uint32_t hash = 0;
  };
  struct ref_hash {
    size_t operator()(const key_ref& k) const noexcept { return k.hash; }
  };
  struct ref_equal {
    bool operator()(const key_ref& x, const key_ref& y) const noexcept {
      return x.key == y.key;
    }
  };
  template <class T>
  using key_map = std::pmr::unordered_map<key_ref, T, ref_hash, ref_equal>;
  static key_ref ref_of(const shard_write& w) noexcept {
    return {w.key(), w.val.table_hash()};
  }
  static key_ref ref_of(std::string_view key) noexcept {
    return {key, static_cast<uint32_t>(hash_key(key))};
  }

  std::optional<uint64_t> oldest_ms() const;
  /// A full batch is dirty, or a flush asked for covers a dirty write: go
  /// without waiting for the interval.
  bool asked_to_go() const;
  /// True if the journal holds the latest write of `s`'s key (see `journaled`).
  bool journal_has(const slot& s) const;
  /// The oldest dirty key whose latest write may be stored, or null: keys
  /// written again since the journal's last append wait, the rest go without
  /// them, and the interval counts from this key's age, not a waiting one's.
  /// It reads past the waiting keys at the front; a scan that found none is
  /// remembered until the journal takes more or a failed batch comes back (a
  /// write accepted meanwhile is never journaled yet), so a line of waiting
  /// keys is not read again on every write.
  const slot* first_storable() const;
  mutable std::optional<uint64_t> none_storable_at_; // journaled_through_ then

  flush_options cfg_;
  // The maps' nodes: a key's goes into `pending_` and out with its batch,
  // and the `in_flight_index_`'s with each batch, so a pool hands the same
  // few blocks round instead of a malloc and a free a write each.
  std::pmr::unsynchronized_pool_resource nodes_;
  // Each key views its own slot's write: a newer write of the key re-keys
  // the node (`add`), so the buffer the key views is never released under it.
  key_map<slot> pending_{&nodes_};
  // The slots of `pending_`, oldest first. A node's slot stays where it is
  // while the map rehashes, and through an extract and insert.
  std::deque<slot*> order_;
  std::vector<slot> in_flight_;
  key_map<size_t> in_flight_index_{&nodes_}; // key -> in_flight_[i]
  uint64_t accepted_ = 0;
  uint64_t journaled_through_ = 0;
  mutable uint64_t flush_requested_through_ = 0; // 0 once met (`asked_to_go`)
  uint32_t consecutive_failures_ = 0;
  uint64_t sent_back_ = 0; // slots in `order_` with `sent_back`: not oldest first
  uint64_t backoff_until_ms_ = 0;
  write_stats stats_;
  std::mt19937_64 rng_;
};

} // namespace karlton

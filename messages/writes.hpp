// The messages of write-through and write-back: shards hand writes to the
// store writer (write-through) or to the flusher (write-back); the flusher
// batches them into the store and tells the shards which entries are clean.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <caf/atom.hpp>
#include <caf/meta/type_name.hpp>
#include <caf/replies_to.hpp>
#include <caf/timespan.hpp>
#include <caf/typed_actor.hpp>

#include <karlton/messages/loading.hpp>
#include <karlton/messages/value.hpp>

namespace karlton {

/// How a cache keeps its store in step (option `write_mode`).
enum class write_mode : uint8_t {
  /// The cache alone; a store, if set, is only read (read-through).
  none,
  /// A put is written to the store first, then cached; acknowledged after both.
  write_through,
  /// A put is cached, marked dirty and acknowledged; the flusher stores it
  /// later, in batches (with the journal: acknowledged once durable).
  write_back,
};

/// The mode's name, e.g. "write_back".
const char* to_string(write_mode x) noexcept;

/// `(write, items)`: store these (to the store writer), or take these dirty
/// writes (to the flusher).
using write_atom = caf::atom_constant<caf::atom("write")>;
/// `(flushed, keys)`: the flusher tells a shard which of its writes are stored.
using flushed_atom = caf::atom_constant<caf::atom("flushed")>;
/// `(flush)`: store everything dirty now; answered when it is stored.
using flush_atom = caf::atom_constant<caf::atom("flush")>;
/// `(room)`: the flusher tells shards that dirty writes were stored, so puts
/// waiting for room under `max-dirty` may go on; a shard tells the flusher
/// it gave back a unit another shard may wait for (the flusher wakes them).
using room_atom = caf::atom_constant<caf::atom("room")>;
/// `(tick, generation)`: the flusher's own timer (flush interval, retry
/// backoff); a re-armed timer makes older generations void.
using tick_atom = caf::atom_constant<caf::atom("tick")>;
/// `(drain, deadline)`: the runtime stops; store what you can by then.
using drain_atom = caf::atom_constant<caf::atom("drain")>;
/// `(wstats)`: the flusher's counters.
using write_stats_atom = caf::atom_constant<caf::atom("wstats")>;

/// A shard's write on its way to the store: a put, or an erase.
/// `seq` numbers the writes of one shard, so it can tell which write of a key
/// the store has (an entry is clean only if no newer write came since). The
/// store writer and the flusher hand the store `store_write`s (stores/store.hpp),
/// which carry no number: a store knows no shards.
///
/// The key and bytes travel in a `value`: a put's is the buffer the shard's
/// table holds, so handing a write to the flusher and on to the store's
/// thread copies no bytes (each copy was an allocation per put on the shard's
/// and the flusher's threads); only the store's own `store_write` copies them.
struct shard_write {
  value val;          ///< the key, and the bytes put (none for an erase); never empty
  bool erase = false; ///< an erase rather than a put
  uint64_t seq = 0;   ///< the shard's number for this write

  /// An erase of `key`: a buffer of the key alone.
  static shard_write erase_of(std::string_view key, uint64_t seq) {
    return shard_write{value::make(key, {}), true, seq};
  }

  /// The key written.
  std::string_view key() const noexcept { return val.key(); }
  /// The bytes put; empty for an erase.
  std::string_view bytes() const noexcept { return val.bytes(); }
};

/// As key, bytes, erase, seq. Loading always makes a buffer: `value`'s own
/// form reads an empty key with no bytes as "not cached", but the empty key
/// may be written and erased like any other.
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, shard_write& x) {
  std::string key{x.key()};
  std::string bytes{x.bytes()};
  auto rebuild = caf::meta::load_callback([&]() -> caf::error {
    x.val = value::make(key, bytes);
    return caf::none;
  });
  return f(caf::meta::type_name("karlton::shard_write"), key, bytes, x.erase, x.seq,
           rebuild);
}

/// The writes of a shard that reached the store, as the shard handed them
/// over: `mark_stored` needs the key and `seq` of each.
using stored_writes = std::vector<shard_write>;

/// The flusher's counters (write-back caches only).
struct write_stats {
  uint64_t writes = 0;          ///< dirty writes handed to the flusher
  uint64_t batches = 0;         ///< batches the store took (one transaction each)
  uint64_t entries_flushed = 0; ///< writes the store took
  uint64_t writes_coalesced =
    0; ///< writes replaced by a newer one of the key before storing
  uint64_t flush_failures = 0;   ///< batches the store refused
  uint64_t retries = 0;          ///< batches tried again after a failure
  uint64_t dirty = 0;            ///< writes not yet stored, now
  uint64_t oldest_dirty_ms = 0;  ///< age of the oldest of them
  uint64_t journal_appends = 0;  ///< group commits to the journal (one fsync each)
  uint64_t journal_records = 0;  ///< writes made durable in the journal
  uint64_t journal_rewrites = 0; ///< rewrites that bounded or repaired it
  uint64_t journal_bytes = 0; ///< the journal's records, in bytes, now (its header aside)
  uint64_t journal_failures = 0; ///< appends and rewrites that failed
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, write_stats& x) {
  return f(caf::meta::type_name("karlton::write_stats"), x.writes, x.batches,
           x.entries_flushed, x.writes_coalesced, x.flush_failures, x.retries, x.dirty,
           x.oldest_dirty_ms, x.journal_appends, x.journal_records, x.journal_rewrites,
           x.journal_bytes, x.journal_failures);
}

/// The thread that owns the store connection for writes. Detached: a store
/// call blocks. Answers `ok` once the batch is committed, or the store's error.
using store_writer_actor = caf::typed_actor<
  caf::replies_to<write_atom, std::vector<shard_write>>::with<caf::ok_atom>>;

/// `(truncate)`: the journal's records are all in the store; empty it.
using truncate_atom = caf::atom_constant<caf::atom("truncate")>;

/// `(rewrite, items, numbers)`: replace the journal's records by `items`.
using rewrite_atom = caf::atom_constant<caf::atom("rewrite")>;

/// `(stored, numbers)`: the store has the writes with these numbers; a replay
/// must not write them (journal::mark_stored).
using stored_atom = caf::atom_constant<caf::atom("stored")>;

/// The thread that appends to a write-back journal (detached: it fsyncs).
/// `numbers[i]` is the flusher's number of `items[i]`, rising per cache.
/// - `(write, items, numbers, stored)`: a stored mark of the writes numbered
///   `stored` (if any) and the records of `items`, answered once durable.
/// - `(rewrite, items, numbers)`: answered once the journal holds exactly
///   them, durably (journal::rewrite).
/// - `(stored, numbers)`: a stored mark alone, not synced (journal::mark_stored).
using journal_actor = caf::typed_actor<
  caf::replies_to<write_atom, std::vector<shard_write>, std::vector<uint64_t>,
                  std::vector<uint64_t>>::with<caf::ok_atom>,
  caf::replies_to<rewrite_atom, std::vector<shard_write>,
                  std::vector<uint64_t>>::with<caf::ok_atom>,
  caf::replies_to<stored_atom, std::vector<uint64_t>>::with<caf::ok_atom>,
  caf::replies_to<truncate_atom>::with<caf::ok_atom>>;

/// The write-back flusher of one cache (see actors/flusher_actor.hpp).
/// - `(write, shard, items)`: dirty writes of shard number `shard`; answered
///   when they are accepted (and, with the journal, durable).
/// - `(load, key, id)`: a read-through load. Answered from the dirty writes
///   when the key has one, so a read never falls through to the store while
///   a newer write is pending; otherwise from the store.
/// - `(flush)`: answered once everything dirty at the call is stored.
/// - `(drain, timeout)`: the same at shutdown; answers how many writes could
///   not be stored in time.
/// - `(room)`: a shard gave back a unit of `max-dirty` that a shard may be
///   waiting for: tell every shard to look again.
using flusher_actor = caf::typed_actor<
  caf::replies_to<write_atom, uint32_t, std::vector<shard_write>>::with<caf::ok_atom>,
  caf::replies_to<load_atom, std::string, uint64_t>::with<load_outcome>,
  caf::replies_to<flush_atom>::with<caf::ok_atom>,
  caf::replies_to<drain_atom, caf::timespan>::with<uint64_t>,
  caf::replies_to<write_stats_atom>::with<write_stats>,
  caf::reacts_to<tick_atom, uint64_t>, caf::reacts_to<room_atom>>;

} // namespace karlton

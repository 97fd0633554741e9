// The write-back journal: a write-back cache acknowledges a write only once its
// record is durable in this append-only file; on start the file is replayed into
// the store and emptied. That makes write-back crash-safe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include <karlton/stores/store.hpp>

namespace karlton {

/// A write as the journal records it, with the number its owner gave it. The
/// numbers rise with each write of a run (a run starts with an empty
/// journal), so a stored mark can name the writes the store has.
struct journal_write {
  uint64_t number = 0;
  store_write write;
};

/// An append-only file of numbered `store_write` records that survives crashes.
///
/// Records are appended in batches (`append`); a batch is durable when `append`
/// returns, so acknowledge a write only after that. Once the store confirmed
/// writes, the owner names their numbers in a stored mark (with the next
/// `append`, or alone with `mark_stored`). On start, `open` finds the writes of
/// the previous run that no stored mark covers (`recovered`), the owner writes
/// them to the store, and then empties the journal (`reset`). So a replay
/// never writes what the store had confirmed: a newer value another writer
/// stored since stays. While it runs, the owner keeps the journal bounded
/// with `rewrite`. A crash in the middle of an append leaves a torn tail,
/// which `open` cuts off: it was never acknowledged.
///
/// Only the owning actor (one thread at a time) may call a journal. A file can be
/// held by one journal at a time, in this process or another: a second `open`
/// fails, so two writers never interleave their records.
class journal {
public:
  /// Opens the journal of `owner` (a cache's name, at most 1024 bytes) at
  /// `path`, or creates it (mode 0600, durably: the directory entry is synced
  /// too) with a header that names `owner`. Reads every valid record and cuts
  /// off a torn or corrupt tail; reads files of formats 1-2 (no header, from
  /// before 8 Dec) too. Errors: `store_failure` naming the path and the reason,
  /// e.g. a missing directory, no permission, the file held by another journal,
  /// another owner's journal, or a file that is no journal (one that starts
  /// with neither a header nor a whole record), the last two left untouched;
  /// `invalid_option` for an owner's name over 1024 bytes.
  static caf::expected<journal> open(const std::string& path, const std::string& owner);

  journal(journal&& other) noexcept;
  journal& operator=(journal&& other) noexcept;
  journal(const journal&) = delete;
  journal& operator=(const journal&) = delete;
  /// Closes the file. Nothing needs syncing: `append` synced what it acknowledged.
  ~journal();

  /// The writes `open` found that the store may lack, in append order, to
  /// write to the store before `reset`: every write but those a stored mark
  /// covers (a write is covered when a mark names it or a later write of its
  /// key). `reset` empties it.
  const std::vector<store_write>& recovered() const noexcept { return recovered_; }

  /// The writes `open` found and left out of `recovered`: a stored mark covers them.
  uint64_t already_stored() const noexcept { return already_stored_; }

  /// Bytes of torn or corrupt tail that `open` cut off; 0 after a clean stop.
  /// Usually the unacknowledged part of a crashed append, but damage in the
  /// middle of the file looks the same: `open` appends the cut bytes to
  /// `<path>.discarded` (synced) before it cuts them, if it can.
  uint64_t discarded_bytes() const noexcept { return discarded_bytes_; }
  /// Why `open` could not keep the cut bytes in `<path>.discarded` (they are
  /// lost); empty if it did, or cut nothing.
  const std::string& cut_copy_error() const noexcept { return cut_copy_error_; }

  /// Appends a stored mark naming the writes numbered `stored` (if any), then
  /// every record of `batch`, and syncs them to disk, once for all: when it
  /// returns without error, they survive a crash. Number the writes of a run
  /// uniquely and name a write in a mark only once the store confirmed it.
  /// Errors: `key_too_large`/`value_too_large` for a key or value over 4 GiB - 1
  /// (nothing written); `store_failure` with the path and the system's reason.
  /// A failed sync leaves the journal unusable (every later `append`,
  /// `mark_stored` and `reset` fails): the disk may have lost the data, so only
  /// a `rewrite` from memory, or a reopen's scan, can be trusted again.
  caf::error append(const std::vector<journal_write>& batch,
                    const std::vector<uint64_t>& stored = {});

  /// Appends a stored mark naming the writes numbered `stored`, without a sync
  /// of its own: it survives a crash of the process at once, and one of the
  /// machine with the next `append`'s sync. (Lost, it only lets a replay write
  /// stored values again.) Errors: `store_failure`, as for `append`.
  caf::error mark_stored(const std::vector<uint64_t>& stored);

  /// Empties the file, durably. Call it only after the store confirmed every
  /// record appended so far (and the recovered ones). Errors: `store_failure`,
  /// and a failed sync leaves the journal unusable, as for `append`.
  caf::error reset();

  /// Replaces the file by one that holds exactly `live`, durably: the records
  /// go to `<path>.rewrite`, which is synced, locked and renamed over the
  /// journal, and then the directory is synced. A crash at any point leaves
  /// either the old file or the new one, each whole. Pass the writes the store
  /// does not have yet (the latest per key): the journal then forgets every
  /// stored record, which bounds it under a steady stream that never lets it
  /// be `reset`. Works on a journal broken by an earlier failure too, and
  /// makes it usable again: the new file is written and synced from memory,
  /// never trusting what the failed sync left. Errors: as `append`; on an
  /// error the journal keeps its old file (broken if it was).
  caf::error rewrite(const std::vector<journal_write>& live);

  /// Tests only: replaces fdatasync on every journal's files in this process
  /// (the function gets the file descriptor and returns 0 or an errno value),
  /// to inject failures; null restores fdatasync.
  static void set_sync_for_testing(int (*sync)(int fd)) noexcept;

  /// Tests only: replaces the ftruncate with which `reset` empties every
  /// journal's file in this process (the function gets the file descriptor
  /// and the length to keep, and returns 0 or an errno value), to inject
  /// failures; null restores ftruncate.
  static void set_truncate_for_testing(int (*truncate)(int fd, uint64_t length)) noexcept;

  /// The length of the file in bytes, its header included.
  uint64_t size_bytes() const noexcept { return size_bytes_; }

  /// True if the file holds no records or marks (only its header, if any).
  bool empty() const noexcept { return size_bytes_ == records_at_; }

  /// The writes in the file (stored marks aside): those `open` found (stored
  /// or not) plus those appended since, or those appended since the last
  /// `reset` or `rewrite`.
  uint64_t records() const noexcept { return records_; }

  const std::string& path() const noexcept { return path_; }

private:
  journal(std::string path, int fd) noexcept;

  /// Makes every later `append` and `reset` fail; returns `err`.
  caf::error fail_for_good(caf::error err);

  /// Encodes a stored mark of `stored` (if any) and then `batch` into `buf_`,
  /// or fails on a key or value over 4 GiB - 1.
  caf::error encode_all(const std::vector<journal_write>& batch,
                        const std::vector<uint64_t>& stored);

  /// Writes `buf_` at the end of the file, or cuts a partial write off again.
  caf::error write_buffer();

  /// fdatasync, or the test's replacement.
  static int sync(int fd);

  /// ftruncate to `length`, or the test's replacement; 0 or an errno value.
  static int truncate_to(int fd, uint64_t length);

  std::string path_;
  int fd_ = -1;
  /// The file header naming the owner, and where the records start after it
  /// (0 in a file of formats 1-2 until `reset` or `rewrite` writes the header).
  std::string header_;
  uint64_t records_at_ = 0;
  uint64_t size_bytes_ = 0;
  uint64_t records_ = 0;
  uint64_t discarded_bytes_ = 0;
  std::string cut_copy_error_;
  uint64_t already_stored_ = 0;
  std::vector<store_write> recovered_;
  /// The encoded batch; kept between appends to spare an allocation each.
  std::string buf_;
  /// Set once the file's state is unknown; returned by every later call.
  caf::error broken_;
};

} // namespace karlton

// The write-back journal's records: their format, CRC-32, and the scan that
// reads a file back at start. Internal to stores/journal.cpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include "stores/journal.hpp"

namespace karlton::journal_records {

/// The longest key or value a record holds.
constexpr uint64_t max_length = std::numeric_limits<uint32_t>::max();

/// The bytes of the record of `w`.
size_t encoded_size(const store_write& w);

/// The bytes of the stored mark (one record or more) naming `n` numbers.
size_t encoded_mark_size(size_t n);

/// Writes the record of `w` at `out` and returns the end of it. Lengths are
/// checked by the caller (at most `max_length`).
char* encode(const journal_write& w, char* out);

/// Writes the stored mark naming `numbers` at `out` (nothing for none) and
/// returns the end of it.
char* encode_marks(const std::vector<uint64_t>& numbers, char* out);

/// A `store_failure` naming the journal at `path`, what failed and `err` (an errno
/// value).
caf::error io_error(const std::string& path, const char* action, int err);

struct scan_result {
  /// Every write in the file, in file order.
  std::vector<store_write> records;
  /// covered[i]: a stored mark names records[i].
  std::vector<bool> covered;
  /// Where the last valid record ends.
  uint64_t valid_bytes = 0;
};

/// The longest owner (cache name) a file header holds.
constexpr size_t max_owner_bytes = 1024;

/// The header a journal file of `owner` starts with (format 3): it names the
/// cache whose writes the file holds, so that `open` tells a journal from a
/// file that is none, and one cache's journal from another's.
std::string encode_file_header(std::string_view owner);

/// What the file open at `fd` (of `file_size` bytes) starts with.
struct file_start {
  enum kind_t {
    fresh,   ///< nothing: empty, a prefix of `our_header` or as many zeros (a torn
             ///< creation)
    journal, ///< a whole file header: `owner`'s records follow from `records_at`
    legacy,  ///< no header, a record's magic byte (formats 1-2, before headers)
    foreign, ///< anything else: not a journal
  } kind = fresh;
  std::string owner;
  uint64_t records_at = 0;
};

/// Reads the start of the file open at `fd` (from offset 0). Errors:
/// `store_failure` if a read fails.
caf::expected<file_start> read_start(int fd, const std::string& path, uint64_t file_size,
                                     std::string_view our_header);

/// Reads the records of the file open at `fd` (of `file_size` bytes) from
/// offset `from` until its end or the first one that is torn or corrupt.
/// Errors: `store_failure` if a read fails.
caf::expected<scan_result> scan(int fd, const std::string& path, uint64_t from,
                                uint64_t file_size);

/// Moves the writes a replay must store into `out`, in file order: all but
/// those a stored mark covers. Returns how many it left out.
uint64_t keep_unstored(scan_result& scanned, std::vector<store_write>& out);

} // namespace karlton::journal_records

// The write-back journal: the POSIX calls that make an append durable (the
// record format and the scan at start are in journal_records.cpp).
//
// Why it works this way:
// - Group commit. The cost of an append is the sync, not the write: on the
//   development VM's virtual disk an append of 1 record takes ~70 us and one
//   of 1000 records of 100 bytes ~300 us while the disk is idle, and both take
//   4 ms (tails over 100 ms) while other processes write. So the owner collects
//   the writes that arrive while a sync is running and appends them as one
//   batch: one write(2) sequence and one fdatasync for all.
// - Torn tails are unacknowledged. A crash during an append can leave part of a
//   batch, or garbage where the file grew but its data never reached the disk.
//   No write of that batch was acknowledged (append had not returned), so
//   `open` may cut the file at the last record whose CRC matches. Every earlier
//   batch was synced before its append returned and is intact.
// - fdatasync, not fsync. fdatasync writes the data and the metadata needed to
//   read it back (here: the file's length), and skips the timestamps. For an
//   append-only file the saving is small, since the length changes each time;
//   preallocating the file would make the sync cheaper still, at the price of
//   finding the end of the records by scanning. Not done yet.
//
// - Stored marks, not rewrites, keep a replay off stored writes. Until the
//   journal is emptied or rewritten it still holds writes the store has; a
//   replay of those would put a value back over a newer one that another
//   writer (another node sharing the store) stored since. So the owner appends
//   a mark naming the writes the store confirmed, and `open` leaves out every
//   write a mark covers. A mark rides on the next group commit's sync, or goes
//   alone without one: it needs to survive what the store's answer survived,
//   and the next sync makes it durable.
//
// Known weakness: a record damaged in the middle of the file (a media error,
// not a crash) looks like a torn tail, and the records after it are cut off
// with it. Telling the two apart needs batch framing; meanwhile `open` appends
// what it cuts to `<path>.discarded` and the runtime logs the cut.
#include "stores/journal.hpp"

#include <algorithm>
#include <atomic>
#include <cassert>
#include <cerrno>
#include <cstring>
#include <string_view>
#include <system_error>
#include <utility>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "stores/journal_records.hpp"
#include <karlton/messages/errors.hpp>

namespace karlton {

using namespace journal_records;

namespace {

// -- system calls ---------------------------------------------------------------
//
// The helpers return 0 or an errno value, so callers can clean up before they
// build the error (cleaning up may change errno).

// write(2) may write less than asked (a signal, a full disk, 2 GiB at most
// on Linux); loop until all is written or it fails.
int write_all(int fd, const char* data, size_t n) {
  while (n > 0) {
    auto written = ::write(fd, data, n);
    if (written < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    data += written;
    n -= static_cast<size_t>(written);
  }
  return 0;
}

int sync_data(int fd) {
  while (::fdatasync(fd) != 0)
    if (errno != EINTR) return errno;
  return 0;
}

// A new file exists after a crash only once its directory entry is on disk.
int sync_parent_directory(const std::string& path) {
  auto slash = path.rfind('/');
  std::string dir = slash == std::string::npos ? "."
                    : slash == 0               ? "/"
                                               : path.substr(0, slash);
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return errno;
  int err = 0;
  while (::fsync(fd) != 0)
    if (errno != EINTR) {
      err = errno;
      break;
    }
  ::close(fd);
  return err;
}

// Appends the bytes [from, to) of `fd` to `copy` and syncs it; "" or why
// not. A torn tail is a crash's unacknowledged append, but damage in the
// middle of the file looks the same and takes acknowledged writes with it
// (the known weakness above): they are kept for an operator where possible.
std::string keep_cut_bytes(int fd, uint64_t from, uint64_t to, const std::string& copy) {
  // O_NONBLOCK: a FIFO placed there fails at once instead of holding the start.
  int out =
    ::open(copy.c_str(),
           O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0600);
  if (out < 0) return std::system_category().message(errno);
  struct stat st;
  if (::fstat(out, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(out);
    return "not a regular file";
  }
  char buf[64 * 1024];
  int err = 0;
  for (uint64_t at = from; at < to && err == 0;) {
    auto want = static_cast<size_t>(std::min<uint64_t>(sizeof buf, to - at));
    auto got = ::pread(fd, buf, want, static_cast<off_t>(at));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      err = got < 0 ? errno : EIO;
      break;
    }
    err = write_all(out, buf, static_cast<size_t>(got));
    at += static_cast<uint64_t>(got);
  }
  if (err == 0) err = sync_data(out);
  ::close(out);
  if (err == 0) err = sync_parent_directory(copy);
  return err == 0 ? std::string{} : std::system_category().message(err);
}

// The refusal of a file whose start is neither a journal's header nor a whole
// record: cutting it as a torn tail would destroy it (a journal path pointed
// at the store's database did that), so it is left as it is.
caf::error not_a_journal(const std::string& path) {
  return make_error(errc::store_failure,
                    "journal " + path +
                      " is not a karlton journal (it starts with neither a journal's "
                      "header nor a whole record); nothing was changed: give the "
                      "journal a file of its own (or, if it is the journal of a "
                      "karlton from before 8 Dec whose one write a crash tore, and "
                      "so never acknowledged, remove it)");
}

} // namespace

// -- journal --------------------------------------------------------------------

journal::journal(std::string path, int fd) noexcept : path_(std::move(path)), fd_(fd) {}

journal::journal(journal&& other) noexcept
  : path_(std::move(other.path_)), fd_(std::exchange(other.fd_, -1)),
    header_(std::move(other.header_)), records_at_(other.records_at_),
    size_bytes_(other.size_bytes_), records_(other.records_),
    discarded_bytes_(other.discarded_bytes_),
    cut_copy_error_(std::move(other.cut_copy_error_)),
    already_stored_(other.already_stored_), recovered_(std::move(other.recovered_)),
    buf_(std::move(other.buf_)), broken_(std::move(other.broken_)) {}

journal& journal::operator=(journal&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    path_ = std::move(other.path_);
    fd_ = std::exchange(other.fd_, -1);
    header_ = std::move(other.header_);
    records_at_ = other.records_at_;
    size_bytes_ = other.size_bytes_;
    records_ = other.records_;
    discarded_bytes_ = other.discarded_bytes_;
    cut_copy_error_ = std::move(other.cut_copy_error_);
    already_stored_ = other.already_stored_;
    recovered_ = std::move(other.recovered_);
    buf_ = std::move(other.buf_);
    broken_ = std::move(other.broken_);
  }
  return *this;
}

journal::~journal() {
  if (fd_ >= 0) ::close(fd_);
}

caf::expected<journal> journal::open(const std::string& path, const std::string& owner) {
  if (owner.size() > max_owner_bytes)
    return make_error(errc::invalid_option, "journal " + path +
                                              ": its owner's name is over " +
                                              std::to_string(max_owner_bytes) + " bytes");
  // O_APPEND: every write goes to the end, wherever a failed one left the offset.
  constexpr int flags = O_RDWR | O_APPEND | O_CLOEXEC;
  bool created = false;
  int fd = ::open(path.c_str(), flags);
  if (fd < 0 && errno == ENOENT) {
    // 0600: the records are the cache's values.
    fd = ::open(path.c_str(), flags | O_CREAT | O_EXCL, 0600);
    created = fd >= 0;
    if (fd < 0 && errno == ENOENT)
      return make_error(errc::store_failure, "journal " + path + ": cannot create: " +
                                               std::generic_category().message(ENOENT) +
                                               " (does its directory exist?)");
    if (fd < 0 && errno == EEXIST) fd = ::open(path.c_str(), flags); // lost a race
  }
  if (fd < 0) return io_error(path, "open", errno);
  journal j{path, fd}; // closes the file on every return below that fails
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK)
      return make_error(errc::store_failure,
                        "journal " + path +
                          " is held by another journal, in this process or another; "
                          "close that one first");
    return io_error(path, "lock", errno);
  }
  if (created) {
    if (int err = sync_parent_directory(path)) {
      // Without the synced entry a crash could lose the file; remove it, so the
      // next open creates it again rather than trusting it.
      ::unlink(path.c_str());
      return io_error(path, "sync the directory of", err);
    }
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) return io_error(path, "stat", errno);
  if (!S_ISREG(st.st_mode))
    return make_error(errc::store_failure, "journal " + path + " is not a regular file");
  auto file_size = static_cast<uint64_t>(st.st_size);
  j.header_ = encode_file_header(owner);
  auto start = read_start(fd, path, file_size, j.header_);
  if (!start) return std::move(start.error());
  if (start->kind == file_start::fresh) {
    // New, or a crash tore its header: nothing in it was ever acknowledged.
    if (file_size > 0 && ::ftruncate(fd, 0) != 0) return io_error(path, "empty", errno);
    if (int err = write_all(fd, j.header_.data(), j.header_.size()))
      return io_error(path, "write the header of", err);
    if (int err = sync_data(fd)) return io_error(path, "sync", err);
    j.records_at_ = j.size_bytes_ = j.header_.size();
    return j;
  }
  // Never cut what may be someone else's file: only a journal's torn tail.
  if (start->kind == file_start::foreign) return not_a_journal(path);
  if (start->kind == file_start::journal && start->owner != owner)
    return make_error(errc::store_failure,
                      "journal " + path + " holds the writes of cache '" + start->owner +
                        "', not of '" + owner +
                        "': start that cache with it to store them, or move the file "
                        "away; nothing was changed");
  j.records_at_ = start->records_at;
  auto scanned = scan(fd, path, start->records_at, file_size);
  if (!scanned) return std::move(scanned.error());
  // A file of formats 1-2 (no header) must at least start with a whole record.
  if (start->kind == file_start::legacy && scanned->valid_bytes == 0)
    return not_a_journal(path);
  if (scanned->valid_bytes < file_size) {
    // Best effort: a start that cannot keep them (a full disk, which may be
    // what tore the append) still starts, and says so.
    j.cut_copy_error_ =
      keep_cut_bytes(fd, scanned->valid_bytes, file_size, path + ".discarded");
    // Cut the torn tail before appending: records after it would be unreadable.
    if (::ftruncate(fd, static_cast<off_t>(scanned->valid_bytes)) != 0)
      return io_error(path, "cut the torn tail of", errno);
    if (int err = sync_data(fd)) return io_error(path, "sync", err);
    j.discarded_bytes_ = file_size - scanned->valid_bytes;
  }
  j.size_bytes_ = scanned->valid_bytes;
  j.records_ = scanned->records.size();
  j.already_stored_ = keep_unstored(*scanned, j.recovered_);
  return j;
}

caf::error journal::fail_for_good(caf::error err) {
  // After a failed fdatasync, Linux may have dropped the dirty pages and a retry
  // can report success for data that never reached the disk (PostgreSQL's
  // "fsyncgate", 2018). So never retry on this file: only a rewrite from memory
  // into a new file, or a reopen's scan, knows what is there.
  broken_ = make_error(errc::store_failure,
                       "journal " + path_ + " is unusable after an earlier failure (" +
                         describe(err) + "); rewrite it, or close and reopen it");
  return err;
}

namespace {

std::atomic<int (*)(int)> sync_hook{nullptr};
std::atomic<int (*)(int, uint64_t)> truncate_hook{nullptr};

} // namespace

void journal::set_sync_for_testing(int (*sync)(int fd)) noexcept {
  sync_hook.store(sync);
}

int journal::sync(int fd) {
  auto hook = sync_hook.load(std::memory_order_relaxed);
  return hook ? hook(fd) : sync_data(fd);
}

void journal::set_truncate_for_testing(int (*truncate)(int fd,
                                                       uint64_t length)) noexcept {
  truncate_hook.store(truncate);
}

int journal::truncate_to(int fd, uint64_t length) {
  if (auto hook = truncate_hook.load(std::memory_order_relaxed)) return hook(fd, length);
  return ::ftruncate(fd, static_cast<off_t>(length)) == 0 ? 0 : errno;
}

caf::error journal::encode_all(const std::vector<journal_write>& batch,
                               const std::vector<uint64_t>& stored) {
  size_t total = encoded_mark_size(stored.size());
  for (const auto& [number, w] : batch) {
    if (w.key.size() > max_length)
      return make_error(errc::key_too_large,
                        "journal " + path_ + ": a key of " +
                          std::to_string(w.key.size()) +
                          " bytes exceeds the journal's limit of 4294967295");
    if (w.bytes && w.bytes->size() > max_length)
      return make_error(errc::value_too_large,
                        "journal " + path_ + ": a value of " +
                          std::to_string(w.bytes->size()) +
                          " bytes exceeds the journal's limit of 4294967295");
    total += encoded_size(w);
  }
  buf_.resize(total);
  char* out = encode_marks(stored, buf_.data());
  for (const auto& w : batch)
    out = encode(w, out);
  assert(out == buf_.data() + total);
  return caf::none;
}

caf::error journal::write_buffer() {
  if (int err = write_all(fd_, buf_.data(), buf_.size())) {
    // A partial batch would end the next open's scan and hide every batch
    // appended after it, so cut it off. A full disk, the usual cause, may pass.
    if (::ftruncate(fd_, static_cast<off_t>(size_bytes_)) != 0)
      return fail_for_good(io_error(path_, "cut a failed write from", errno));
    return io_error(path_, "write to", err);
  }
  return caf::none;
}

caf::error journal::append(const std::vector<journal_write>& batch,
                           const std::vector<uint64_t>& stored) {
  assert(fd_ >= 0 && "append on a moved-from journal");
  if (broken_) return broken_;
  if (batch.empty() && stored.empty()) return caf::none;
  if (auto err = encode_all(batch, stored)) return err;
  auto total = buf_.size();
  if (auto err = write_buffer()) return err;
  if (int err = sync(fd_)) {
    // Not acknowledged, so not to be replayed after a process crash either.
    // (After a machine crash the disk may hold anything past size_bytes_.)
    [[maybe_unused]] auto cut = ::ftruncate(fd_, static_cast<off_t>(size_bytes_));
    return fail_for_good(io_error(path_, "sync", err));
  }
  size_bytes_ += total;
  records_ += batch.size();
  // Batches are usually small; a rare huge one (large values) should not pin
  // its buffer for the life of the process. 4 MiB: a thousand 4 KiB values.
  if (buf_.capacity() > (4u << 20)) std::string{}.swap(buf_);
  return caf::none;
}

caf::error journal::mark_stored(const std::vector<uint64_t>& stored) {
  assert(fd_ >= 0 && "mark_stored on a moved-from journal");
  if (broken_) return broken_;
  if (stored.empty()) return caf::none;
  if (auto err = encode_all({}, stored)) return err;
  if (auto err = write_buffer()) return err;
  size_bytes_ += buf_.size();
  if (buf_.capacity() > (4u << 20)) std::string{}.swap(buf_);
  return caf::none;
}

caf::error journal::rewrite(const std::vector<journal_write>& live) {
  assert(fd_ >= 0 && "rewrite on a moved-from journal");
  if (auto err = encode_all(live, {})) return err;
  auto tmp = path_ + ".rewrite";
  // O_TRUNC: a crash in an earlier rewrite may have left a partial file here.
  int fd = ::open(tmp.c_str(), O_RDWR | O_APPEND | O_CLOEXEC | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) return io_error(tmp, "create", errno);
  auto give_up = [&](const char* action, int err) {
    ::close(fd);
    ::unlink(tmp.c_str());
    return io_error(tmp, action, err);
  };
  // Locked before it takes the journal's name, so no other journal can open
  // it in between.
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) return give_up("lock", errno);
  if (int err = write_all(fd, header_.data(), header_.size()))
    return give_up("write to", err);
  if (int err = write_all(fd, buf_.data(), buf_.size())) return give_up("write to", err);
  if (int err = sync(fd)) return give_up("sync", err);
  if (::rename(tmp.c_str(), path_.c_str()) != 0) return give_up("rename", errno);
  ::close(fd_);
  fd_ = fd;
  records_at_ = header_.size();
  size_bytes_ = records_at_ + buf_.size();
  records_ = live.size();
  already_stored_ = 0;
  std::vector<store_write>{}.swap(recovered_);
  if (buf_.capacity() > (4u << 20)) std::string{}.swap(buf_);
  // Until the directory is synced a crash may bring back the old file; its
  // records are older and its tail may be what a failed sync lost.
  if (int err = sync_parent_directory(path_))
    return fail_for_good(io_error(path_, "sync the directory of", err));
  broken_ = caf::none;
  return caf::none;
}

caf::error journal::reset() {
  assert(fd_ >= 0 && "reset on a moved-from journal");
  if (broken_) return broken_;
  if (int err = truncate_to(fd_, records_at_)) return io_error(path_, "truncate", err);
  size_bytes_ = records_at_;
  if (records_at_ == 0) { // a file of formats 1-2 gets its header now
    // Part of a header followed by records would read as no journal at all.
    if (int err = write_all(fd_, header_.data(), header_.size()))
      return fail_for_good(io_error(path_, "write the header of", err));
    records_at_ = size_bytes_ = header_.size();
  }
  // The new length is metadata that fdatasync writes: it is needed to read the file.
  if (int err = sync(fd_)) return fail_for_good(io_error(path_, "sync", err));
  records_ = 0;
  already_stored_ = 0;
  std::vector<store_write>{}.swap(recovered_);
  return caf::none;
}

} // namespace karlton

// Injected fdatasync and ftruncate failures for the journal's tests: while a
// `sync_faults` lives, the journal syncs through `flaky_sync`, which fails with
// EIO as `failing_syncs` says; while a `truncate_faults` lives, `reset` empties
// the file through `flaky_truncate`, which fails as `failing_truncates` says.
#pragma once

#include <unistd.h>

#include <atomic>
#include <cerrno>

#include "stores/journal.hpp"

namespace karlton::testing {

/// > 0: the next this many syncs fail; < 0: every sync fails; 0: none does.
inline std::atomic<int> failing_syncs{0};

inline int flaky_sync(int fd) {
  if (failing_syncs.load() < 0) return EIO;
  if (failing_syncs.load() > 0) {
    --failing_syncs;
    return EIO;
  }
  return ::fdatasync(fd) == 0 ? 0 : errno;
}

/// Installs `flaky_sync` for one test and removes it whatever happens.
struct sync_faults {
  sync_faults() { journal::set_sync_for_testing(flaky_sync); }
  ~sync_faults() {
    journal::set_sync_for_testing(nullptr);
    failing_syncs = 0;
  }
  sync_faults(const sync_faults&) = delete;
  sync_faults& operator=(const sync_faults&) = delete;
};

/// > 0: the next this many truncations fail; < 0: every one fails; 0: none does.
inline std::atomic<int> failing_truncates{0};

/// The truncations tried (failed or not) while a `truncate_faults` lives.
inline std::atomic<int> truncations_tried{0};

inline int flaky_truncate(int fd, uint64_t length) {
  ++truncations_tried;
  if (failing_truncates.load() < 0) return EIO;
  if (failing_truncates.load() > 0) {
    --failing_truncates;
    return EIO;
  }
  return ::ftruncate(fd, static_cast<off_t>(length)) == 0 ? 0 : errno;
}

/// Installs `flaky_truncate` for one test and removes it whatever happens.
struct truncate_faults {
  truncate_faults() {
    truncations_tried = 0;
    journal::set_truncate_for_testing(flaky_truncate);
  }
  ~truncate_faults() {
    journal::set_truncate_for_testing(nullptr);
    failing_truncates = 0;
    truncations_tried = 0;
  }
  truncate_faults(const truncate_faults&) = delete;
  truncate_faults& operator=(const truncate_faults&) = delete;
};

} // namespace karlton::testing

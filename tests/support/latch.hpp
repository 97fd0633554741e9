// A latch the test opens when it is done with what blocks on it: a loader or a
// removal callback that waits on it holds its thread (a shard's, a loader's)
// until then, so a test can make a shard stuck on purpose.
#pragma once

#include <condition_variable>
#include <mutex>

namespace karlton::testing {

struct latch {
  std::mutex mtx;
  std::condition_variable cv;
  bool open = false;

  /// Blocks until `release`.
  void wait() {
    std::unique_lock<std::mutex> guard{mtx};
    cv.wait(guard, [&] { return open; });
  }

  /// Lets every waiter, present and future, through.
  void release() {
    {
      std::lock_guard<std::mutex> guard{mtx};
      open = true;
    }
    cv.notify_all();
  }
};

/// Opens `l` when it goes, even when a failed REQUIRE leaves the test early:
/// declared after the runtime (and after a future that waits for its
/// shutdown), it goes first, so the shutdown does not wait forever for a
/// thread blocked on `l`.
struct release_on_exit {
  latch& l;
  ~release_on_exit() { l.release(); }
};

} // namespace karlton::testing

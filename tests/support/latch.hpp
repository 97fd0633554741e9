// A latch the test opens when it is done with what blocks on it: a loader or a
// removal callback that waits on it holds its thread (a shard's, a loader's)
// until then, so a test can make a shard stuck on purpose.
#pragma once

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <string>
#include <thread>

#include <karlton/runtime/cache.hpp>

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

/// A cache's `on_removal` that sets `held` and waits on `gate`: the removal's
/// shard is stuck from then on, until the test opens the gate.
inline removal_callback holding_removal(latch& gate, std::atomic<bool>& held) {
  return [&gate, &held](const value&, removal_cause) {
    held = true;
    gate.wait();
  };
}

/// A cache of `shards` whose removals hold on `gate` (`holding_removal`), so
/// that `hold_shard` can make one stuck; `ingress` jobs a queue, calls that
/// wait `call_timeout`.
inline cache_options holdable_cache(std::string name, latch& gate,
                                    std::atomic<bool>& held, uint32_t shards,
                                    uint32_t ingress, caf::timespan call_timeout) {
  cache_options o;
  o.name = std::move(name);
  o.shards = shards;
  o.ingress_capacity = ingress;
  o.call_timeout = call_timeout;
  o.on_removal = holding_removal(gate, held);
  return o;
}

/// Puts `key` in `c` (made with `holding_removal`) and erases it, and waits
/// (10 s at most) until the shard that owns it is held in the callback.
/// Returns the erase's future, answered once the gate opens.
inline std::future<caf::expected<bool>> hold_shard(const cache& c, const std::string& key,
                                                   const std::atomic<bool>& held) {
  REQUIRE_FALSE(c.put(key, "v"));
  auto erase = c.erase_async(key);
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds{10};
  while (!held && std::chrono::steady_clock::now() < until)
    std::this_thread::yield();
  REQUIRE(held);
  return erase;
}

/// Opens `l` when it goes, even when a failed REQUIRE leaves the test early:
/// declared after the runtime (and after a future that waits for its
/// shutdown), it goes first, so the shutdown does not wait forever for a
/// thread blocked on `l`.
struct release_on_exit {
  latch& l;
  ~release_on_exit() { l.release(); }
};

} // namespace karlton::testing

// A store whose writes the test holds back, and a cache over it: the session
// and server tests' way to keep a write in flight (write-through) or a flush
// waiting (write-back) for as long as they need.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "support/eventually.hpp"
#include "support/latch.hpp"
#include "support/must.hpp"
#include <karlton/runtime/runtime.hpp>
#include <karlton/stores/forwarding_store.hpp>
#include <karlton/stores/memory_store.hpp>

namespace karlton::testing {

/// A store in memory (`rows`) whose writes wait for `gate` while `holding`
/// is set.
class gated_store final : public forwarding_store {
public:
  gated_store() : gated_store(std::make_shared<memory_store>()) {}

  const std::shared_ptr<memory_store> rows;
  testing::latch gate;
  std::atomic<bool> holding{true};
  std::atomic<int> writes_waiting{0};

  caf::error write_batch(const std::vector<store_write>& b) override {
    if (holding) {
      ++writes_waiting;
      gate.wait();
    }
    return rows->write_batch(b);
  }

private:
  explicit gated_store(std::shared_ptr<memory_store> in_memory)
    : forwarding_store(in_memory), rows(std::move(in_memory)) {}
};

/// Options of a cache "wt" of two shards over `db`, written in `mode`; under
/// write-back at most `max_dirty` writes wait, and only force_flush (or a
/// full batch) stores them, never the interval.
inline cache_options gated_options(std::shared_ptr<store> db,
                                   write_mode mode = write_mode::write_through,
                                   uint64_t max_dirty = cache_options{}.max_dirty) {
  cache_options o;
  o.name = "wt";
  o.shards = 2;
  o.backing_store = std::move(db);
  o.writes = mode;
  o.max_dirty = max_dirty;
  if (mode == write_mode::write_back) o.flush_interval = std::chrono::hours{1};
  return o;
}

/// A runtime with one cache over a gated store (`gated_options`). The gate
/// opens when it goes, before the runtime stops, also when a failed REQUIRE
/// ends the test early.
struct gated_cache {
  explicit gated_cache(write_mode mode = write_mode::write_through,
                       uint64_t max_dirty = cache_options{}.max_dirty)
    : c(must(rt.create_cache(gated_options(db, mode, max_dirty)))) {}

  /// Puts `bytes` under `key` past the gate: on success a write-through
  /// cache's store has it.
  caf::error put_stored(std::string_view key, std::string_view bytes) {
    db->holding = false;
    auto err = c.put(key, bytes);
    db->holding = true;
    return err;
  }

  /// True once a write waits at the gate (false after 10 s).
  bool write_held() {
    return eventually([this] { return db->writes_waiting.load() > 0; });
  }

  /// What the store has under `key` (nullopt: nothing).
  std::optional<std::string> stored(std::string_view key) {
    return must(db->rows->load(key));
  }

  std::shared_ptr<gated_store> db = std::make_shared<gated_store>();
  runtime rt;
  cache c;
  release_on_exit open_gate{db->gate};
};

} // namespace karlton::testing

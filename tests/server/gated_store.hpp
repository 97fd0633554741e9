// A store whose writes the test holds back, and a write-through cache over
// it: the session tests' way to keep a write in flight for as long as they
// need.
#pragma once

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "support/latch.hpp"
#include "support/must.hpp"
#include <karlton/runtime/runtime.hpp>
#include <karlton/stores/memory_store.hpp>

namespace karlton::testing {

/// A store whose writes wait for `gate` while `holding` is set.
class gated_store final : public store {
public:
  std::shared_ptr<memory_store> inner = std::make_shared<memory_store>();
  testing::latch gate;
  std::atomic<bool> holding{true};
  std::atomic<int> writes_waiting{0};
  caf::expected<std::optional<std::string>> load(std::string_view k) override {
    return inner->load(k);
  }
  caf::expected<std::vector<std::optional<std::string>>>
  load_many(const std::vector<std::string>& ks) override {
    return inner->load_many(ks);
  }
  caf::error write_batch(const std::vector<store_write>& b) override {
    if (holding) {
      ++writes_waiting;
      gate.wait();
    }
    return inner->write_batch(b);
  }
};

inline cache_options write_through(std::shared_ptr<store> db) {
  cache_options o;
  o.name = "wt";
  o.shards = 2;
  o.backing_store = std::move(db);
  o.writes = write_mode::write_through;
  return o;
}

/// A runtime with one write-through cache over a gated store. The gate
/// opens when it goes, before the runtime stops, also when a failed REQUIRE
/// ends the test early.
struct gated_cache {
  gated_cache() : c(must(rt.create_cache(write_through(db)))) {}

  /// Puts `bytes` under `key` past the gate: on success the store has it.
  caf::error put_stored(std::string_view key, std::string_view bytes) {
    db->holding = false;
    auto err = c.put(key, bytes);
    db->holding = true;
    return err;
  }

  std::shared_ptr<gated_store> db = std::make_shared<gated_store>();
  runtime rt;
  cache c;
  release_on_exit open_gate{db->gate};
};

} // namespace karlton::testing

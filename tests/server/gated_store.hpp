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

} // namespace karlton::testing

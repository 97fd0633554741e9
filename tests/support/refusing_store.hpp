// A store decorator for write-back tests: it refuses batches on a switch, so
// writes stay dirty and the journal cannot be emptied for as long as a test
// likes. A refused batch writes nothing.
#pragma once

#include <algorithm>
#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <karlton/messages/errors.hpp>
#include <karlton/stores/forwarding_store.hpp>

namespace karlton::testing {

/// Fails every batch while `refuse_all` is set (`store_failure`: an outage),
/// and refuses every batch that holds `held_key`, if one is given
/// (`store_refused`: as a constraint would); loads pass through.
class refusing_store final : public forwarding_store {
public:
  explicit refusing_store(std::shared_ptr<store> inner, std::string held_key = {})
    : forwarding_store(std::move(inner)), held_key_(std::move(held_key)) {}

  std::atomic<bool> refuse_all{false};
  /// Refuses every batch (`store_refused`), as a CHECK on every row would.
  std::atomic<bool> refuse_every{false};

  caf::error write_batch(const std::vector<store_write>& batch) override {
    auto held = [&](const store_write& w) {
      return !held_key_.empty() && w.key == held_key_;
    };
    if (refuse_all.load()) return make_error(errc::store_failure, "refusing_store: down");
    if (refuse_every.load())
      return make_error(errc::store_refused, "refusing_store: every write refused");
    if (std::any_of(batch.begin(), batch.end(), held))
      return make_error(errc::store_refused, "refusing_store: " + held_key_ + " refused");
    return inner().write_batch(batch);
  }

private:
  std::string held_key_;
};

} // namespace karlton::testing

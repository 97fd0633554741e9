// The base of store decorators: stores wrapped around another one that fail,
// dawdle, count, log or hold calls on purpose, and change only those calls.
#pragma once

#include <cassert>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include <karlton/stores/store.hpp>

namespace karlton {

/// Hands every call to `inner`; a decorator overrides the calls it changes.
/// `origin` and `interrupt` are forwarded too, so a decorated PostgreSQL
/// store still feeds its changes to the caches and can be interrupted at
/// shutdown, and counts as that store (a cache fed its changes cannot share
/// it with a cache over the decorator, as with two caches over the store). A
/// decorator that maps keys or writes elsewhere must override `origin` to
/// return `std::nullopt`: the feed's keys are the database's, and would drop
/// the wrong entries. `erase` is not forwarded: it stays a one-change
/// `write_batch` of this store, so a decorator's `write_batch` sees deletes
/// too.
/// @threadsafe as `inner` is, unless a decorator says otherwise.
class forwarding_store : public store {
public:
  /// Decorates `inner` (never null).
  explicit forwarding_store(std::shared_ptr<store> inner) : inner_(std::move(inner)) {
    assert(inner_ != nullptr);
  }

  caf::expected<std::optional<std::string>> load(std::string_view key) override {
    return inner_->load(key);
  }

  caf::expected<std::vector<std::optional<std::string>>>
  load_many(const std::vector<std::string>& keys) override {
    return inner_->load_many(keys);
  }

  caf::error write_batch(const std::vector<store_write>& batch) override {
    return inner_->write_batch(batch);
  }

  std::optional<store_origin> origin() const override { return inner_->origin(); }

  void interrupt() noexcept override { inner_->interrupt(); }

protected:
  /// The store decorated.
  store& inner() const noexcept { return *inner_; }

private:
  std::shared_ptr<store> inner_;
};

} // namespace karlton

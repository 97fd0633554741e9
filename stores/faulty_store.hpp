// Stores that fail or dawdle on purpose, wrapped around a real one: the
// guide's "test failure cases" for write-through, write-back and loading.
#pragma once

#include <atomic>
#include <cassert>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include <karlton/messages/errors.hpp>
#include <karlton/stores/forwarding_store.hpp>

namespace karlton {

/// Fails a fraction of the calls to `inner` with `store_failure`, without
/// making them: a failed `write_batch` leaves no trace in `inner`. Which calls
/// fail comes from a PRNG seeded with `seed`, so the same calls in the same
/// order fail the same way on every run and every platform (the draw uses
/// mt19937_64's raw output, which the standard fixes, not a distribution,
/// which it does not). Batches and loads draw from separate generators, so
/// loads do not move which batches fail.
/// @threadsafe concurrent callers draw in the order they take the lock.
class faulty_store final : public forwarding_store {
public:
  /// Fractions are in [0, 1]; 0 never fails, 1 always does.
  faulty_store(std::shared_ptr<store> inner, double batch_failure_fraction, uint64_t seed,
               double load_failure_fraction = 0.0)
    : forwarding_store(std::move(inner)), batch_fraction_(batch_failure_fraction),
      load_fraction_(load_failure_fraction), batch_rng_(seed),
      // Any constant other than 0 gives the loads a sequence of their own.
      load_rng_(seed ^ 0x9e3779b97f4a7c15ULL) {
    assert(batch_fraction_ >= 0.0 && batch_fraction_ <= 1.0);
    assert(load_fraction_ >= 0.0 && load_fraction_ <= 1.0);
  }

  caf::expected<std::optional<std::string>> load(std::string_view key) override {
    if (draw(load_rng_, load_fraction_)) return load_failure();
    return inner().load(key);
  }

  /// One draw per call, not per key.
  caf::expected<std::vector<std::optional<std::string>>>
  load_many(const std::vector<std::string>& keys) override {
    if (draw(load_rng_, load_fraction_)) return load_failure();
    return inner().load_many(keys);
  }

  caf::error write_batch(const std::vector<store_write>& batch) override {
    if (draw(batch_rng_, batch_fraction_)) {
      auto n = failed_batches_.fetch_add(1, std::memory_order_relaxed) + 1;
      return make_error(errc::store_failure, "faulty_store: injected failure number " +
                                               std::to_string(n) + " of a batch of " +
                                               std::to_string(batch.size()) +
                                               " changes, nothing was written");
    }
    passed_batches_.fetch_add(1, std::memory_order_relaxed);
    return inner().write_batch(batch);
  }

  /// Batches failed on purpose (never handed to `inner`).
  uint64_t failed_batches() const noexcept {
    return failed_batches_.load(std::memory_order_relaxed);
  }
  /// Batches handed to `inner` (which may still fail them itself).
  uint64_t passed_batches() const noexcept {
    return passed_batches_.load(std::memory_order_relaxed);
  }
  /// `load` and `load_many` calls failed on purpose.
  uint64_t failed_loads() const noexcept {
    return failed_loads_.load(std::memory_order_relaxed);
  }

private:
  bool draw(std::mt19937_64& rng, double fraction) {
    if (fraction <= 0.0) return false;
    uint64_t bits;
    {
      std::lock_guard<std::mutex> guard{rng_mtx_};
      bits = rng();
    }
    // The top 53 bits as a double in [0, 1): exact, and the same everywhere.
    return static_cast<double>(bits >> 11) * 0x1.0p-53 < fraction;
  }

  caf::error load_failure() {
    failed_loads_.fetch_add(1, std::memory_order_relaxed);
    return make_error(errc::store_failure, "faulty_store: injected failure of a load");
  }

  double batch_fraction_;
  double load_fraction_;
  std::mutex rng_mtx_;
  std::mt19937_64 batch_rng_; // guarded by rng_mtx_
  std::mt19937_64 load_rng_;  // guarded by rng_mtx_
  std::atomic<uint64_t> failed_batches_{0};
  std::atomic<uint64_t> passed_batches_{0};
  std::atomic<uint64_t> failed_loads_{0};
};

/// Sleeps before each load and batch it hands to `inner`: a slow disk or a
/// distant database, to see queues build up behind a store. Each `load_many`
/// sleeps once.
/// @threadsafe callers sleep independently.
class slow_store final : public forwarding_store {
public:
  slow_store(std::shared_ptr<store> inner, std::chrono::microseconds per_batch_delay,
             std::chrono::microseconds per_load_delay = {})
    : forwarding_store(std::move(inner)), batch_delay_(per_batch_delay),
      load_delay_(per_load_delay) {}

  caf::expected<std::optional<std::string>> load(std::string_view key) override {
    pause(load_delay_);
    return inner().load(key);
  }

  caf::expected<std::vector<std::optional<std::string>>>
  load_many(const std::vector<std::string>& keys) override {
    pause(load_delay_);
    return inner().load_many(keys);
  }

  caf::error write_batch(const std::vector<store_write>& batch) override {
    pause(batch_delay_);
    return inner().write_batch(batch);
  }

private:
  static void pause(std::chrono::microseconds d) {
    if (d.count() > 0) std::this_thread::sleep_for(d);
  }

  std::chrono::microseconds batch_delay_;
  std::chrono::microseconds load_delay_;
};

} // namespace karlton

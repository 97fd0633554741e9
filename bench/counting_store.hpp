// The write-back benchmark's store measures: a store that counts the
// transactions the cache makes and notes their sizes, and what SQLite alone
// needs for batches of those sizes (`store_alone_seconds`).
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include "bench/workloads.hpp"
#include <karlton/messages/errors.hpp>
#include <karlton/stores/forwarding_store.hpp>
#include <karlton/stores/sqlite_store.hpp>

namespace karlton::bench {

/// Counts the transactions the cache makes, i.e. SQLite commits: with
/// synchronous=FULL each costs at least one fsync of the WAL. It also notes
/// each batch's size, for `store_alone`. (Not a copy of the batch: that cost
/// the store's thread 3-4 % of its time.)
class counting_store final : public forwarding_store {
public:
  explicit counting_store(std::shared_ptr<store> db) : forwarding_store(std::move(db)) {}

  caf::error write_batch(const std::vector<store_write>& batch) override {
    transactions_.fetch_add(1, std::memory_order_relaxed);
    {
      std::lock_guard<std::mutex> guard{sizes_mtx_};
      sizes_.push_back(batch.size());
    }
    return inner().write_batch(batch);
  }

  uint64_t transactions() const noexcept { return transactions_.load(); }

  /// The size of every batch, in order.
  std::vector<size_t> batch_sizes() {
    std::lock_guard<std::mutex> guard{sizes_mtx_};
    return sizes_;
  }

private:
  std::atomic<uint64_t> transactions_{0};
  std::mutex sizes_mtx_;
  std::vector<size_t> sizes_;
};

/// Batches of `sizes`, each of distinct keys drawn at random from `keys` (as
/// a write-back run's oldest dirty keys are) with values taken in turn from
/// `values`, written one by one into a fresh SQLite file at `path` by this
/// thread: their seconds. Run with nothing else running, after a write-back
/// run, with the sizes of its batches: that run could hardly end sooner, as
/// one thread stored its batches one after another (an estimate: other keys,
/// and a machine the run left warm).
inline caf::expected<double> store_alone(const std::vector<size_t>& sizes,
                                         const std::vector<std::string>& keys,
                                         const std::vector<std::string>& values,
                                         const std::string& path, bool durable) {
  if (keys.empty() || values.empty())
    return make_error(errc::invalid_option, "store_alone needs keys and values");
  std::vector<std::vector<store_write>> batches;
  std::vector<uint32_t> order(keys.size());
  for (uint32_t i = 0; i < order.size(); ++i)
    order[i] = i;
  rng r{0xa1003e};
  size_t next_value = 0;
  for (auto n : sizes) {
    n = std::min(n, order.size());
    std::vector<store_write> batch;
    batch.reserve(n);
    for (size_t i = 0; i < n; ++i) { // the first n of a fresh shuffle
      std::swap(order[i], order[i + r.next() % (order.size() - i)]);
      batch.push_back(store_write{keys[order[i]], values[next_value++ % values.size()]});
    }
    batches.push_back(std::move(batch));
  }
  auto db = sqlite_store::open(path, "bench", sqlite_options{durable});
  if (!db) return std::move(db.error());
  auto start = std::chrono::steady_clock::now();
  for (const auto& b : batches)
    if (auto err = (*db)->write_batch(b)) return err;
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

} // namespace karlton::bench

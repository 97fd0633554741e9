// A store in memory, for tests and examples: what a cache wrote, to look at,
// without a file.
#pragma once

#include <cstddef>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include <karlton/stores/store.hpp>

namespace karlton {

/// A `std::map` under one mutex. Never fails. Reads take the mutex a batch
/// holds, but only for the map updates in memory, never for I/O, so reads
/// barely wait; and a batch is atomic for readers too.
/// @threadsafe
class memory_store final : public store {
public:
  caf::expected<std::optional<std::string>> load(std::string_view key) override {
    std::lock_guard<std::mutex> guard{mtx_};
    return find(key);
  }

  caf::expected<std::vector<std::optional<std::string>>>
  load_many(const std::vector<std::string>& keys) override {
    std::vector<std::optional<std::string>> values;
    values.reserve(keys.size());
    std::lock_guard<std::mutex> guard{mtx_};
    for (auto& key : keys)
      values.emplace_back(find(key));
    return values;
  }

  caf::error write_batch(const std::vector<store_write>& batch) override {
    std::lock_guard<std::mutex> guard{mtx_};
    for (auto& x : batch) {
      if (x.is_delete()) {
        if (auto i = rows_.find(x.key); i != rows_.end()) rows_.erase(i);
      } else {
        rows_.insert_or_assign(x.key, *x.bytes);
      }
    }
    return caf::none;
  }

  /// Rows stored.
  size_t size() const {
    std::lock_guard<std::mutex> guard{mtx_};
    return rows_.size();
  }

  /// `load` without the `caf::expected`, for assertions.
  std::optional<std::string> peek(std::string_view key) const {
    std::lock_guard<std::mutex> guard{mtx_};
    return find(key);
  }

private:
  std::optional<std::string> find(std::string_view key) const {
    auto i = rows_.find(key);
    if (i == rows_.end()) return std::nullopt;
    return i->second;
  }

  mutable std::mutex mtx_;
  std::map<std::string, std::string, std::less<>> rows_; // guarded by mtx_
};

} // namespace karlton

// Which caches the change feed feeds, by the table they are fed by
// (docs/plans/postgres.md §3). The runtime adds a cache when it creates one
// with `store_changes` and removes it when it stops; the change source takes
// one snapshot per message, so a cache added or removed meanwhile never
// changes a message half-way through.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <karlton/messages/shard_interface.hpp>
#include <karlton/stores/own_commits.hpp>

namespace karlton {

/// A cache the feed invalidates: its shards (by `shard_index`) and its
/// store's registry of own transactions.
struct fed_cache {
  std::string name;                 ///< the cache's name
  std::vector<shard_actor> shards;  ///< its shards, in routing order
  std::shared_ptr<own_commits> own; ///< its store's own commits (never null)
};

/// `schema.table` → the caches fed by it.
using fed_tables = std::map<std::string, std::vector<fed_cache>>;

/// A copy-on-write map of fed tables: readers take an immutable snapshot.
/// @threadsafe
class feed_routes {
public:
  feed_routes() : current_(std::make_shared<const fed_tables>()) {}

  /// What is fed now; never null, never changes.
  std::shared_ptr<const fed_tables> snapshot() const {
    std::lock_guard<std::mutex> guard{mutex_};
    return current_;
  }

  /// From now on `table`'s changes reach `cache`.
  void add(const std::string& table, fed_cache cache) {
    std::lock_guard<std::mutex> guard{mutex_};
    auto next = std::make_shared<fed_tables>(*current_);
    (*next)[table].push_back(std::move(cache));
    current_ = std::move(next);
  }

  /// The cache named `name` is no longer fed (it stopped).
  void remove(const std::string& name) {
    std::lock_guard<std::mutex> guard{mutex_};
    auto next = std::make_shared<fed_tables>(*current_);
    for (auto i = next->begin(); i != next->end();) {
      auto& caches = i->second;
      for (auto j = caches.begin(); j != caches.end();)
        j = j->name == name ? caches.erase(j) : j + 1;
      i = caches.empty() ? next->erase(i) : std::next(i);
    }
    current_ = std::move(next);
  }

private:
  mutable std::mutex mutex_;
  std::shared_ptr<const fed_tables> current_;
};

} // namespace karlton

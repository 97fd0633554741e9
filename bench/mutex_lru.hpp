// The in-process peer karlton must beat (DESIGN.md): an LRU cache guarded by a
// mutex, built from std::unordered_map<std::string, list iterator> and a
// std::list of std::string values, in a 1-lock and a 16-way sharded variant.
// It is written the way a careful service author would write it, so the
// comparison is fair: lookups take the caller's `const std::string&` (no
// temporary key), a hit copies the value into the caller's reusable buffer
// (no allocation once warm), and an update reuses the stored string.
#pragma once

#include <array>
#include <cstddef>
#include <functional>
#include <list>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace karlton::bench {

/// A mutex-guarded LRU map from string keys to string values.
/// @threadsafe
class mutex_lru {
public:
  /// `capacity` in entries; 0 means unbounded.
  explicit mutex_lru(size_t capacity = 0) : capacity_(capacity) {}

  /// Copies the value of `key` into `out` and marks it most recent.
  bool get(const std::string& key, std::string& out) {
    std::lock_guard<std::mutex> guard{mtx_};
    auto i = index_.find(key);
    if (i == index_.end()) return false;
    lru_.splice(lru_.begin(), lru_, i->second);
    out.assign(i->second->bytes);
    return true;
  }

  /// Stores `bytes` under `key` as most recent, evicting the least recent
  /// entry beyond the capacity.
  void put(const std::string& key, std::string_view bytes) {
    std::lock_guard<std::mutex> guard{mtx_};
    auto [i, inserted] = index_.try_emplace(key);
    if (!inserted) {
      i->second->bytes.assign(bytes);
      lru_.splice(lru_.begin(), lru_, i->second);
      return;
    }
    // The list node points at the map's copy of the key (node-based maps
    // never move their keys), so the key is stored once, not twice.
    lru_.push_front(node{std::string{bytes}, &i->first});
    i->second = lru_.begin();
    if (capacity_ > 0 && index_.size() > capacity_) {
      index_.erase(*lru_.back().key);
      lru_.pop_back();
    }
  }

  size_t size() const {
    std::lock_guard<std::mutex> guard{mtx_};
    return index_.size();
  }

private:
  friend class sharded_mutex_lru; // sets the capacity of its shards

  struct node {
    std::string bytes;
    const std::string* key;
  };
  using list_type = std::list<node>;

  mutable std::mutex mtx_;
  std::unordered_map<std::string, list_type::iterator> index_;
  list_type lru_;
  size_t capacity_;
};

/// 16 independent `mutex_lru`s, picked by the key's hash: the usual way to cut
/// lock contention. The hash is computed twice (shard, then map); that is what
/// a straightforward sharded map does.
/// @threadsafe
class sharded_mutex_lru {
public:
  /// 16 shards: at least 8x the caller threads of this benchmark, so two
  /// callers rarely meet on one lock, and a common choice in practice.
  static constexpr size_t shard_count = 16;

  /// `capacity` in entries for the whole map, split evenly; 0 means unbounded.
  explicit sharded_mutex_lru(size_t capacity = 0) {
    for (auto& s : shards_)
      s.lru.capacity_ = (capacity + shard_count - 1) / shard_count;
  }

  bool get(const std::string& key, std::string& out) {
    return shard_of(key).get(key, out);
  }
  void put(const std::string& key, std::string_view bytes) {
    shard_of(key).put(key, bytes);
  }
  size_t size() const {
    size_t n = 0;
    for (const auto& s : shards_)
      n += s.lru.size();
    return n;
  }

private:
  // Each shard starts on its own cache line, so two locks never share one.
  struct alignas(64) shard {
    mutex_lru lru;
  };

  mutex_lru& shard_of(const std::string& key) {
    // The top 4 bits: the map's bucket index uses the low ones.
    static_assert(shard_count == 16 && sizeof(size_t) == 8);
    return shards_[std::hash<std::string>{}(key) >> 60].lru;
  }

  std::array<shard, shard_count> shards_;
};

} // namespace karlton::bench

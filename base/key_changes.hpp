// The hook through which a cache tells a front end (the Redis server's
// client-side caching) which keys changed, by every cause.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <karlton/messages/value.hpp>

namespace karlton {

/// The keys one shard changed in one step: put (new key or replaced), load,
/// compute, erase (also of a key it did not hold), expiry, eviction, tag,
/// event, cascade, another node's invalidation.
class key_batch {
public:
  /// Calls `f(std::string_view key)` for each changed key (a key may repeat).
  template <class F>
  void for_each(F f) const {
    for (const auto& v : values_) f(v.key());
    for (const auto& n : names_) f(std::string_view{n});
  }
  /// True if no key changed.
  bool empty() const noexcept { return values_.empty() && names_.empty(); }
  /// How many keys (repeats counted).
  size_t size() const noexcept { return values_.size() + names_.size(); }

  /// A key known by its entry (a refcount increment, no copy of the bytes).
  void add(value v) { values_.push_back(std::move(v)); }
  /// A key known only by its name.
  void add(std::string_view key) { names_.emplace_back(key); }
  /// Forgets every key, keeping the memory for the next batch.
  void clear() noexcept {
    values_.clear();
    names_.clear();
  }

private:
  std::vector<value> values_;
  std::vector<std::string> names_;
};

/// Told which keys of a cache changed: by each shard on its own thread, once
/// per step, after direct readers can see the change. Must be quick and must
/// not block. @threadsafe: shards of one cache call it concurrently.
class key_change_listener {
public:
  virtual ~key_change_listener() = default;
  /// These keys changed.
  virtual void keys_changed(const key_batch& keys) = 0;
  /// Possibly every key changed: a clear, a repair (flush or cap of TTLs), a
  /// lapsed read lease.
  virtual void all_changed() = 0;
};

} // namespace karlton

// Routing: which shard of a cache owns a key.
#pragma once

#include <cstddef>
#include <cstdint>

namespace karlton {

/// Which of `shards` shards owns a key of hash `hash`: its high half, scaled
/// (the table uses the low half). `hash` is `hash_key(key)` (messages/value.hpp).
inline size_t shard_index(uint64_t hash, size_t shards) noexcept {
  return static_cast<size_t>(((hash >> 32) * shards) >> 32);
}

} // namespace karlton

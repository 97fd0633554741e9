// Explicit times for tests of the plain shard state (t0 and offsets from it),
// and the key hash its calls take.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "actors/shard_state.hpp"

namespace karlton::test {

inline const time_point t0{std::chrono::hours{1}};
inline time_point at(std::chrono::milliseconds d) {
  return t0 + d;
}

/// The 32-bit hash of `key` that the shard state's calls are given.
inline uint32_t table_hash(const std::string& key) {
  return static_cast<uint32_t>(hash_key(key));
}

} // namespace karlton::test

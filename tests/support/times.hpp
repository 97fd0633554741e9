// Explicit times for tests of the plain shard state: t0 and offsets from it.
#pragma once

#include <chrono>

#include "actors/shard_state.hpp"

namespace karlton::test {

inline const time_point t0{std::chrono::hours{1}};
inline time_point at(std::chrono::milliseconds d) {
  return t0 + d;
}

} // namespace karlton::test

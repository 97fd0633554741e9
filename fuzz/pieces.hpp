// How the parser fuzzers cut one input the way TCP might: into pieces of 0
// to 64 bytes whose sizes a seed picks, so a parser's verdict can be checked
// not to depend on where the stream was cut.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string_view>
#include <vector>

namespace karlton::fuzzing {

/// `input` in consecutive pieces of 0 to 64 bytes, sized by a generator
/// seeded with `seed` (the same seed, the same cut).
inline std::vector<std::string_view> random_pieces(std::string_view input, uint8_t seed) {
  uint32_t rng = seed * 2654435761u + 1;
  std::vector<std::string_view> pieces;
  for (std::string_view rest = input; !rest.empty();) {
    rng = rng * 1664525u + 1013904223u;
    size_t n = std::min<size_t>(rest.size(), (rng >> 16) % 65);
    pieces.push_back(rest.substr(0, n));
    rest.remove_prefix(n);
  }
  return pieces;
}

} // namespace karlton::fuzzing

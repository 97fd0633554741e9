// Random words over a three-letter alphabet ("abc"), for tests of prefix
// matching: so few letters make words nest, share heads and split each other's
// edges in every way. Seeded, so a failure repeats.
#pragma once

#include <cstddef>
#include <cstdint>
#include <random>
#include <string>

namespace karlton::test {

class small_words {
public:
  explicit small_words(uint32_t seed) : rng_{seed} {}

  /// A word of 0 to `max_len` letters, each of 'a', 'b', 'c'.
  std::string operator()(size_t max_len) {
    std::string w(std::uniform_int_distribution<size_t>{0, max_len}(rng_), 'a');
    for (auto& ch : w)
      ch = static_cast<char>('a' + std::uniform_int_distribution<int>{0, 2}(rng_));
    return w;
  }

  /// The generator itself, for the test's other draws.
  std::mt19937& rng() noexcept { return rng_; }

private:
  std::mt19937 rng_;
};

} // namespace karlton::test

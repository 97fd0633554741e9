#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>

#include <cstdlib>

// Every test process hashes keys under the same key (messages/hash.hpp) unless
// the environment says otherwise, so a failure repeats exactly. Set before
// main: nothing hashes during static initialization.
[[maybe_unused]] static const int fixed_hash_seed =
  ::setenv("KARLTON_HASH_SEED", "20261203", 0);

// Equal jitter for retry waits: half of the wait fixed, half random. Nodes or
// connections that failed together (a restarted peer, a database that came
// back) then do not all retry in step. One rule for every retry of karlton:
// reconnections to members and to PostgreSQL, write-back's store retries.
#pragma once

#include <algorithm>
#include <random>

namespace karlton {

/// A wait between `wait / 2` and `wait`, drawn from `rng`.
template <class Duration, class Rng>
Duration equal_jitter(Duration wait, Rng& rng) {
  using rep = typename Duration::rep;
  auto half = wait / 2;
  std::uniform_int_distribution<rep> extra{0,
                                           std::max<rep>(wait.count() - half.count(), 0)};
  return half + Duration{extra(rng)};
}

} // namespace karlton

// The backoff of every retry in karlton: reconnections to members and to
// PostgreSQL, write-back's store retries. The wait doubles with each failure
// in a row up to a cap, and each wait is drawn with equal jitter: half of it
// fixed, half random, so that nodes or connections that failed together (a
// restarted peer, a database that came back) do not all retry in step.
#pragma once

#include <algorithm>
#include <cstdint>
#include <random>

namespace karlton {

/// The wait after the `failures`-th failure in a row (0 counts as 1): `base`
/// doubled `failures - 1` times, at most `max`. It saturates at `max`
/// rather than overflow, however many failures.
template <class Duration>
Duration doubled_wait(Duration base, Duration max, uint32_t failures) {
  auto wait = base;
  for (uint32_t i = 1; i < failures && wait > Duration::zero() && wait < max; ++i)
    wait = wait > max / 2 ? max : wait * 2;
  return std::min(wait, max);
}

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

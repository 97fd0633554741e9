// The fuzzers' one way to make a cache during setup: a cache that cannot be
// made is a broken harness, not a finding, so it aborts with the reason.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <utility>

#include <karlton/messages/errors.hpp>
#include <karlton/runtime/runtime.hpp>

namespace karlton::fuzzing {

/// `c`'s cache, or an abort naming `fuzzer` and the error.
inline cache must(const char* fuzzer, caf::expected<cache> c) {
  if (!c) {
    std::fprintf(stderr, "%s fuzzer setup: %s\n", fuzzer, describe(c.error()).c_str());
    std::abort();
  }
  return std::move(*c);
}

} // namespace karlton::fuzzing

// `must`: the value of a karlton call that a test expects to succeed, or a
// failed test that says which error came instead.
#pragma once

#include <utility>

#include <catch2/catch.hpp>

#include <karlton/messages/errors.hpp>

namespace karlton::testing {

/// The value in `x`; FAILs the test case with `describe(x.error())` if none.
template <class T>
T must(caf::expected<T> x) {
  if (!x) FAIL(describe(x.error()));
  return std::move(*x);
}

} // namespace karlton::testing

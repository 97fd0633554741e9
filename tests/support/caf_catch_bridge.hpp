// Use instead of caf/test/dsl.hpp: CAF's deterministic test DSL (expect,
// allow, test_coordinator_fixture) reporting through Catch's assertions.
#pragma once

#include <catch2/catch.hpp>

#include "caf/test/unit_test.hpp" // #pragma once: the redefinitions below stick
#undef CAF_CHECK
#undef CAF_CHECK_EQUAL
#undef CAF_REQUIRE
#undef CAF_REQUIRE_EQUAL
#undef CAF_FAIL
#undef CAF_MESSAGE
#define CAF_CHECK(...) CHECK(__VA_ARGS__)
#define CAF_CHECK_EQUAL(x, y) CHECK((x) == (y))
#define CAF_REQUIRE(...) REQUIRE(__VA_ARGS__)
#define CAF_REQUIRE_EQUAL(x, y) REQUIRE((x) == (y))
#define CAF_FAIL(msg) FAIL(msg)
#define CAF_MESSAGE(msg)                                                                 \
  do {                                                                                   \
  } while (false)
#include "caf/test/dsl.hpp"

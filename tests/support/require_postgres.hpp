// Skip versus fail for the tests that need a PostgreSQL server
// (karlton-pg-tests). Without the server binaries a case prints a line ctest
// reads as "skipped" (SKIP_REGULAR_EXPRESSION "karlton-skip:"), unless
// KARLTON_REQUIRE_POSTGRES is set (scripts/test sets it, so CI really runs
// them): then it fails.
#pragma once

#include <catch2/catch.hpp>

#include <cstdlib>
#include <iostream>

#include "support/pg_server.hpp"

namespace karlton::testing {

/// True if the case can go on; false if it was skipped (return at once).
inline bool require_postgres() {
  if (pg_server::find_bindir()) return true;
  if (std::getenv("KARLTON_REQUIRE_POSTGRES") != nullptr)
    FAIL("PostgreSQL is not installed and KARLTON_REQUIRE_POSTGRES is set: "
         "run scripts/setup postgresql");
  std::cout << "karlton-skip: PostgreSQL is not installed (scripts/setup postgresql)\n";
  return false;
}

/// A started private server, or the case fails with the reason.
#define KARLTON_REQUIRE_SERVER(srv)                                                      \
  do {                                                                                   \
    if (!(srv).ready()) FAIL("private PostgreSQL server: " << (srv).error());            \
  } while (false)

} // namespace karlton::testing

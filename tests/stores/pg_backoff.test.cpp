// The change feed's reconnect backoff (stores/pg_listener.hpp) without a
// server or a clock: the times are passed in.
#include <catch2/catch.hpp>

#include <chrono>

#include "stores/pg_listener.hpp"

using namespace karlton;
using namespace std::chrono_literals;

TEST_CASE("the reconnect backoff doubles from base up to max", "[pg-backoff]") {
  reconnect_backoff b{100ms, 500ms};
  CHECK(b.failed() == 100ms);
  CHECK(b.failed() == 200ms);
  CHECK(b.failed() == 400ms);
  CHECK(b.failed() == 500ms);
  CHECK(b.failed() == 500ms);
}

TEST_CASE("the reconnect backoff restarts only when a heartbeat sent one backoff "
          "period after LISTEN is answered",
          "[pg-backoff]") {
  reconnect_backoff b{100ms, 5s};
  reconnect_backoff::time_point t{1h};
  // The first connection: nothing to prove, its first answer counts.
  b.live(t);
  b.heard(t);
  CHECK(b.failures() == 0);
  CHECK(b.failed() == 100ms);
  CHECK(b.failed() == 200ms); // the wait before this attempt was 200 ms
  // A server that accepts LISTEN and answers at once, then drops the
  // connection: the answer came too early to prove anything.
  b.live(t);
  b.heard(t + 199ms);
  CHECK(b.failures() == 2);
  CHECK(b.failed() == 400ms);
  // Up 400 ms, then a heartbeat answered: healthy again.
  b.live(t);
  b.heard(t + 399ms);
  CHECK(b.failures() == 3);
  b.heard(t + 400ms);
  CHECK(b.failures() == 0);
  CHECK(b.failed() == 100ms);
}

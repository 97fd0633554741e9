// tests/support/run_command.hpp, which starts the private PostgreSQL
// server's initdb, pg_ctl and psql: output and status come back, and a
// command past its limit is killed with what it started.
#include <catch2/catch.hpp>

#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <string>

#include "support/run_command.hpp"

using karlton::testing::run_command;
using namespace std::chrono_literals;

TEST_CASE("run_command returns a command's exit status and everything it printed",
          "[run_command]") {
  std::string out;
  CHECK(run_command({"sh", "-c", "echo to-out; echo to-err >&2; exit 3"}, out) == 3);
  CHECK(out == "to-out\nto-err\n");
  CHECK(run_command({"sh", "-c", "read line || echo no-input"}, out) == 0);
  CHECK(out == "no-input\n"); // stdin is /dev/null: nothing to wait for
  CHECK(run_command({"/no/such/program"}, out) == 127);
  CHECK(run_command({}, out) == -1);
}

TEST_CASE("run_command kills a command, and what it started, past the limit",
          "[run_command]") {
  std::string out;
  auto started = std::chrono::steady_clock::now();
  // The background sleep (its pid printed first) would keep the output open
  // after the shell died: killing the whole process group ends both.
  CHECK(run_command({"sh", "-c", "sleep 60 & echo $!; sleep 60"}, out, 200ms) == -1);
  CHECK(std::chrono::steady_clock::now() - started < 20s);
  CHECK(out.find("sh still running after 200 ms: killed") != std::string::npos);
  auto background = static_cast<pid_t>(std::stol(out));
  // It exits (an event, bounded): its pidfd becomes readable, or it is
  // already reaped.
  int fd = karlton::testing::open_pidfd(background);
  if (fd >= 0) {
    pollfd exited{fd, POLLIN, 0};
    CHECK(::poll(&exited, 1, 10'000) == 1);
    ::close(fd);
  } else {
    CHECK(errno == ESRCH);
  }
}

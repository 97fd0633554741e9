// Deferred reclamation (base/rcu.hpp) and fork: karlton installs no fork
// handlers, so a child between fork and exec runs no code of liburcu's.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <memory>

#include "base/rcu.hpp"

using namespace karlton;

namespace {

// The "Threads:" count of /proc/self/status, read with async-signal-safe
// calls only (the child of a threaded process may make no others); -1 if
// it cannot be read.
int threads_of_this_process() {
  int fd = ::open("/proc/self/status", O_RDONLY);
  if (fd < 0) return -1;
  char buf[4096];
  ssize_t n = 0, got = 0;
  while (n < static_cast<ssize_t>(sizeof buf) &&
         (got = ::read(fd, buf + n, sizeof buf - n)) > 0)
    n += got;
  ::close(fd);
  const char label[] = "\nThreads:";
  for (ssize_t i = 0; i + static_cast<ssize_t>(sizeof label) < n; ++i) {
    ssize_t j = 0;
    while (label[j] != '\0' && buf[i + j] == label[j])
      ++j;
    if (label[j] != '\0') continue;
    int count = 0;
    for (i += j; i < n && (buf[i] == ' ' || buf[i] == '\t'); ++i) {
    }
    for (; i < n && buf[i] >= '0' && buf[i] <= '9'; ++i)
      count = count * 10 + (buf[i] - '0');
    return count;
  }
  return -1;
}

struct counted : rcu::garbage {};

} // namespace

TEST_CASE("a child of fork has only its own thread, after this process used RCU "
          "(no fork handler starts one before its exec)",
          "[rcu]") {
  // Registered, a read section run and something retired: liburcu's
  // call_rcu thread is running in this process.
  { rcu::read_section section; }
  rcu::retire(std::make_unique<counted>());
  rcu::barrier();
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    int n = threads_of_this_process();
    ::_exit(n < 0 || n > 100 ? 100 : n);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 1);
}

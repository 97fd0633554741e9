// Runs a short command (no shell) to its end and collects what it printed,
// from a process with other threads running, within a time limit. For the
// private PostgreSQL server's initdb, pg_ctl and psql (pg_server.hpp), and
// so for the tests, the examples and the bench; header-only, std + POSIX.
//
// Two rules make it safe:
// - After fork the child makes only async-signal-safe calls; everything it
//   needs (argv, /dev/null, the pipe) is made before. ASan's allocator (GCC
//   12) is not fork-safe: a child that allocates while another thread of
//   the parent held the allocator's lock waits on that lock for ever. That
//   hung a pg_listener test in CI (its listener thread allocates at each
//   heartbeat; a psql child built its argv after fork).
// - It waits at most `limit` (on Linux 5.3 and later, which has pidfds):
//   then the command's process group is killed and the call fails, saying
//   so, instead of hanging its test.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <string>
#include <vector>

namespace karlton::testing {

/// A descriptor that becomes readable when process `pid` exits (any process,
/// not only a child), or -1 (errno ESRCH: it is gone already; ENOSYS: Linux
/// before 5.3). glibc 2.36's <sys/pidfd.h> lacks extern "C": the system call.
inline int open_pidfd(pid_t pid) noexcept {
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
}

/// Runs `cmd` (found on PATH unless it holds a '/') with stdin from
/// /dev/null and stdout and stderr into `out`. Returns its exit status, or
/// -1 if it could not run, died of a signal, or was still running after
/// `limit` (then it and everything in its process group were killed, and
/// `out` ends with a line saying so). The child keeps no descriptor of ours:
/// a daemon it starts (a postmaster) must not hold a test's sockets or pipes.
inline int run_command(const std::vector<std::string>& cmd, std::string& out,
                       std::chrono::milliseconds limit = std::chrono::seconds{120}) {
  using steady = std::chrono::steady_clock;
  out.clear();
  if (cmd.empty()) return -1;
  std::vector<char*> argv;
  for (auto& arg : cmd)
    argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return -1;
  int devnull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::setpgid(0, 0); // its own group, so a timeout reaches its children too
    ::dup2(fds[1], STDOUT_FILENO);
    ::dup2(fds[1], STDERR_FILENO);
    if (devnull >= 0) ::dup2(devnull, STDIN_FILENO);
    ::close_range(3, ~0u, 0);
    ::execvp(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(fds[1]);
  if (devnull >= 0) ::close(devnull);
  if (pid < 0) {
    ::close(fds[0]);
    return -1;
  }
  ::setpgid(pid, pid); // as the child does: whichever runs first
  // Wait for the output's end and the child's exit, both bounded: a child
  // may close its output and go on running. Without a pidfd (Linux before
  // 5.3), or if poll itself fails, the wait for its exit is not bounded.
  int exited = open_pidfd(pid);
  auto deadline = steady::now() + limit;
  bool reading = true, running = exited >= 0, timed_out = false;
  char buf[4096];
  while (reading || running) {
    auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - steady::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd p[2] = {{reading ? fds[0] : -1, POLLIN, 0},
                   {running ? exited : -1, POLLIN, 0}};
    int ready = ::poll(p, 2, static_cast<int>(std::min<int64_t>(left.count(), 1000)));
    if (ready < 0 && errno != EINTR) break;
    if (p[1].revents != 0) running = false;
    if (p[0].revents != 0) {
      auto n = ::read(fds[0], buf, sizeof buf);
      if (n > 0)
        out.append(buf, static_cast<size_t>(n));
      else if (n == 0 || errno != EINTR)
        reading = false;
    }
  }
  if (timed_out) {
    ::kill(-pid, SIGKILL);
    ::kill(pid, SIGKILL);
  }
  ::close(fds[0]);
  if (exited >= 0) ::close(exited);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) {
    out += "\n(" + cmd[0] + " still running after " + std::to_string(limit.count()) +
           " ms: killed)";
    return -1;
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

} // namespace karlton::testing

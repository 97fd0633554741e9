// Child processes for the benchmarks that drive other programs (resp):
// finding a program on $PATH, a long-running child that dies with us and is
// always reaped, and a run-to-completion with its output captured.
// (karlton-node children have their own driver, tests/support/node_process.hpp.)
#pragma once

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace karlton::bench {

/// `program`'s path if it is an executable on $PATH.
inline std::optional<std::string> find_program(const std::string& program) {
  const char* path = std::getenv("PATH");
  std::stringstream dirs{path ? path : "/usr/bin:/bin"};
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    auto full = (dir.empty() ? "." : dir) + "/" + program;
    if (access(full.c_str(), X_OK) == 0) return full;
  }
  return std::nullopt;
}

/// A child process writing stdout and stderr to `out_fd`. It dies with this
/// process; the destructor kills and reaps it.
class child {
public:
  child() = default;
  child(const child&) = delete;
  child& operator=(const child&) = delete;
  ~child() { stop(std::chrono::milliseconds{0}); }

  bool start(std::vector<std::string> args, int out_fd, const std::string& dir = {}) {
    // argv is built before fork: the child may only make async-signal-safe calls.
    std::vector<char*> argv;
    for (auto& a : args)
      argv.push_back(a.data());
    argv.push_back(nullptr);
    auto parent = getpid();
    pid_ = fork();
    if (pid_ == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(127);
      if (!dir.empty() && chdir(dir.c_str()) != 0) _exit(127);
      int null_fd = open("/dev/null", O_RDONLY);
      dup2(null_fd, STDIN_FILENO);
      dup2(out_fd, STDOUT_FILENO);
      dup2(out_fd, STDERR_FILENO);
      close_range(3, ~0u, 0);
      execv(argv[0], argv.data());
      _exit(127);
    }
    return pid_ > 0;
  }

  pid_t pid() const { return pid_; }

  /// Its wait status once it exited, waiting until `deadline`.
  std::optional<int> wait_until(std::chrono::steady_clock::time_point deadline) {
    while (pid_ > 0) {
      int status = 0;
      auto r = waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        pid_ = -1;
        return status;
      }
      if ((r < 0 && errno != EINTR) || std::chrono::steady_clock::now() >= deadline)
        break;
      std::this_thread::sleep_for(std::chrono::milliseconds{5});
    }
    return std::nullopt;
  }

  /// SIGTERM, `grace` to exit, then SIGKILL. Idempotent.
  void stop(std::chrono::milliseconds grace) {
    if (pid_ <= 0) return;
    kill(pid_, SIGTERM);
    if (wait_until(std::chrono::steady_clock::now() + grace)) return;
    kill(pid_, SIGKILL);
    int status = 0;
    while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
  }

private:
  pid_t pid_ = -1;
};

/// Runs `args` (none needs shell quoting but the program's path) to its end,
/// at most `limit` (coreutils' timeout), into `out`: its stdout and stderr.
inline bool run_captured(const std::vector<std::string>& args, std::chrono::seconds limit,
                         std::string& out, std::string& error) {
  auto line =
    "timeout --kill-after=5 " + std::to_string(limit.count()) + " '" + args[0] + "'";
  for (size_t i = 1; i < args.size(); ++i)
    line += " " + args[i];
  std::fflush(stdout);
  FILE* pipe = popen((line + " 2>&1").c_str(), "r");
  if (!pipe) {
    error = "cannot start " + args[0];
    return false;
  }
  char buf[4096];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, pipe)) > 0)
    out.append(buf, n);
  auto status = pclose(pipe);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 124)
    error = args[0] + " took over " + std::to_string(limit.count()) + " s";
  else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    error = args[0] + " failed; it said: " + out.substr(0, 500);
  else
    return true;
  return false;
}

} // namespace karlton::bench

// A karlton-node child process driven through its console (stdin/stdout, see
// runtime/node/console.hpp), for the multi-process tests and the cluster
// benchmark. Every wait has a deadline, and the child is always reaped: by
// `stop()` (SIGTERM, then SIGKILL), by the destructor (SIGKILL), so no
// process outlives its test even when a REQUIRE throws, and, should the
// driving process die, by the kernel (PR_SET_PDEATHSIG).
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

namespace karlton::testing {

/// One karlton-node process with `--node.console`. Its stdout is read line by
/// line; its stderr goes to `log_path` if one is given, else to a temporary
/// file (`log()`), printed when the object is destroyed during a failing
/// REQUIRE or with KARLTON_NODE_LOGS set, then removed.
/// Not thread-safe, but different objects may be used from different threads.
/// The child dies with the thread that made the object (PR_SET_PDEATHSIG):
/// make it on a thread that outlives it.
class node_process {
public:
  using ms = std::chrono::milliseconds;

  /// Starts `program` with `args` (after the program name; `--node.console`
  /// is added) and waits up to `limit` for its "listening on <host>:<port>"
  /// line. Its stderr goes to `log_path` (kept) or, if empty, to a temporary
  /// file. Never throws: check `ready()`, and `error()` for why not.
  node_process(std::string label, const std::string& program,
               std::vector<std::string> args, ms limit = ms{10'000},
               const std::string& log_path = {})
    : label_(std::move(label)), log_path_(log_path), keep_log_(!log_path.empty()) {
    std::signal(SIGPIPE, SIG_IGN); // a dead child must not kill its driver
    int err_fd = -1;
    if (keep_log_) {
      err_fd = ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    } else {
      char tmpl[] = "/tmp/karlton-node-stderr-XXXXXX";
      err_fd = ::mkostemp(tmpl, O_CLOEXEC);
      if (err_fd >= 0) log_path_ = tmpl;
    }
    if (err_fd < 0) {
      error_ = "cannot open a file for its stderr: " + errno_text();
      return;
    }
    int in[2], out[2];
    if (::pipe2(in, O_CLOEXEC) != 0) {
      error_ = "pipe: " + errno_text();
      ::close(err_fd);
      return;
    }
    if (::pipe2(out, O_CLOEXEC) != 0) {
      error_ = "pipe: " + errno_text();
      ::close(in[0]);
      ::close(in[1]);
      ::close(err_fd);
      return;
    }
    // Built before fork: in a process with CAF's threads running, the child
    // may only make async-signal-safe calls.
    auto given = [&](const std::string& option) {
      for (auto& a : args)
        if (a.rfind(option + "=", 0) == 0) return true;
      return false;
    };
    bool resp_wanted = given("--node.resp-port");
    bool metrics_wanted = given("--node.metrics-port");
    args.insert(args.begin(), program);
    args.push_back("--node.console");
    std::vector<char*> argv;
    for (auto& a : args)
      argv.push_back(a.data());
    argv.push_back(nullptr);
    auto parent = ::getpid();
    pid_ = ::fork();
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL); // no orphans if the driver dies
      if (::getppid() != parent) ::_exit(127);
      // dup2 clears O_CLOEXEC on the copies. Every other descriptor (other
      // nodes' pipes, the driver's sockets) is closed: a child holding the
      // driver's connections would keep them open after the driver closed
      // them.
      ::dup2(in[0], STDIN_FILENO);
      ::dup2(out[1], STDOUT_FILENO);
      ::dup2(err_fd, STDERR_FILENO);
      ::close_range(3, ~0u, 0);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    ::close(in[0]);
    ::close(out[1]);
    ::close(err_fd);
    if (pid_ < 0) {
      error_ = "fork: " + errno_text();
      ::close(in[1]);
      ::close(out[0]);
      return;
    }
    to_child_ = in[1];
    from_child_ = out[0];
    auto line = read_line(limit);
    auto at = line ? line->find(" listening on ") : std::string::npos;
    auto colon = line ? line->rfind(':') : std::string::npos;
    if (at == std::string::npos || colon == std::string::npos || colon < at) {
      error_ = line ? "unexpected first line '" + *line + "'"
                    : "no 'listening on' line: it exited, or took over " +
                        std::to_string(limit.count()) + " ms (see " + log_path_ + ")";
      return;
    }
    port_ = static_cast<uint16_t>(std::strtoul(line->c_str() + colon + 1, nullptr, 10));
    // The servers print their lines after the listening line, in this order.
    if (resp_wanted && !read_port_line(" resp on ", limit, resp_port_)) port_ = 0;
    if (metrics_wanted && !read_port_line(" metrics on ", limit, metrics_port_))
      port_ = 0;
  }

  ~node_process() {
    if (pid_ > 0 && !reaped_) {
      ::kill(pid_, SIGKILL); // also ends a stopped (SIGSTOP) process
      int status = 0;
      while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
      }
    }
    if (to_child_ >= 0) ::close(to_child_);
    if (from_child_ >= 0) ::close(from_child_);
    if (keep_log_ || log_path_.empty()) return;
    if (std::uncaught_exceptions() > 0 || std::getenv("KARLTON_NODE_LOGS") != nullptr)
      std::cerr << "---- stderr of " << label_ << " ----\n" << log() << "---- end ----\n";
    ::unlink(log_path_.c_str());
  }

  node_process(const node_process&) = delete;
  node_process& operator=(const node_process&) = delete;

  /// True once the node said it listens.
  bool ready() const noexcept { return port_ != 0; }
  uint16_t port() const noexcept { return port_; }
  /// The Redis-protocol port (with `--node.resp-port=...`; else 0).
  uint16_t resp_port() const noexcept { return resp_port_; }
  /// The /metrics port (with `--node.metrics-port=...`; else 0).
  uint16_t metrics_port() const noexcept { return metrics_port_; }
  pid_t pid() const noexcept { return pid_; }
  const std::string& label() const noexcept { return label_; }
  /// Why the node is not ready (empty once it is).
  const std::string& error() const noexcept { return error_; }

  /// Writes `line` and a newline to the console; false if the child is gone.
  bool send_line(const std::string& line) {
    if (to_child_ < 0) return false;
    auto text = line + '\n';
    size_t done = 0;
    while (done < text.size()) {
      auto n = ::write(to_child_, text.data() + done, text.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      done += static_cast<size_t>(n);
    }
    return true;
  }

  /// The next line of the child's stdout (without newline), or nullopt if
  /// none comes within `limit` or the child closed its stdout.
  std::optional<std::string> read_line(ms limit) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    for (;;) {
      auto nl = buffered_.find('\n');
      if (nl != std::string::npos) {
        auto line = buffered_.substr(0, nl);
        buffered_.erase(0, nl + 1);
        return line;
      }
      if (from_child_ < 0) return std::nullopt;
      auto left =
        std::chrono::duration_cast<ms>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return std::nullopt;
      pollfd p{from_child_, POLLIN, 0};
      int rc = ::poll(&p, 1, static_cast<int>(left.count()));
      if (rc < 0 && errno == EINTR) continue;
      if (rc <= 0) return std::nullopt;
      char buf[4096];
      auto n = ::read(from_child_, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return std::nullopt; // EOF: the child is gone
      buffered_.append(buf, static_cast<size_t>(n));
    }
  }

  /// Sends one command and returns its one reply line, or nothing if none
  /// came within `limit` (or the child is gone). A late reply would answer
  /// the next command, so after nothing the node is of no further use.
  std::optional<std::string> try_ask(const std::string& command, ms limit = ms{10'000}) {
    if (!send_line(command)) return std::nullopt;
    return read_line(limit);
  }

  /// As `try_ask`, but a missing reply is a line starting with "no reply"
  /// that says which, for the checks of a test to print.
  std::string ask(const std::string& command, ms limit = ms{10'000}) {
    if (!send_line(command)) return "no reply: cannot write to " + label_;
    auto reply = read_line(limit);
    if (!reply) return "no reply from " + label_ + " to '" + command + "'";
    return *reply;
  }

  /// Ends the node: EOF on its console and SIGTERM, up to `grace` for a
  /// clean exit, then SIGKILL. Returns its wait status (-1 if it was never
  /// started). Idempotent.
  int stop(ms grace = ms{5'000}) {
    if (pid_ <= 0) return -1;
    if (to_child_ >= 0) ::close(to_child_);
    to_child_ = -1;
    if (!reaped_) {
      ::kill(pid_, SIGTERM);
      if (!wait(grace)) {
        ::kill(pid_, SIGKILL);
        wait(ms{60'000});
      }
    }
    return reaped_ ? status_ : -1;
  }

  /// Sends `sig` (SIGKILL, SIGSTOP, SIGCONT, SIGTERM, ...).
  bool signal(int sig) { return pid_ > 0 && !reaped_ && ::kill(pid_, sig) == 0; }

  /// True once every thread of the child is stopped (after SIGSTOP), waiting
  /// up to `limit`. `kill` returns before the stop takes effect: until then
  /// a running thread of the child may still answer a message.
  bool wait_stopped(ms limit) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    auto tasks = "/proc/" + std::to_string(pid_) + "/task";
    for (;;) {
      bool all = true, any = false;
      std::error_code ec;
      for (auto& t : std::filesystem::directory_iterator{tasks, ec}) {
        std::ifstream in{t.path() / "stat"};
        std::string stat;
        std::getline(in, stat);
        // The state follows the command name, which is in parentheses.
        auto close = stat.rfind(')');
        if (close == std::string::npos || close + 2 >= stat.size()) continue;
        any = true;
        all = all && stat[close + 2] == 'T';
      }
      if (any && all && !ec) return true;
      if (std::chrono::steady_clock::now() >= deadline) return false;
      std::this_thread::sleep_for(ms{1});
    }
  }

  /// The child's wait status once it exited, waiting up to `limit`.
  std::optional<int> wait(ms limit) {
    if (pid_ <= 0) return std::nullopt;
    if (reaped_) return status_;
    auto deadline = std::chrono::steady_clock::now() + limit;
    for (;;) {
      int status = 0;
      auto r = ::waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        reaped_ = true;
        status_ = status;
        return status;
      }
      if (r < 0 && errno != EINTR) return std::nullopt;
      if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
      std::this_thread::sleep_for(ms{5});
    }
  }

  /// Bytes sent to the console that the child has not read (yet); after
  /// it exited, what it never read.
  size_t unread_input() const {
    int n = 0;
    if (to_child_ < 0 || ::ioctl(to_child_, FIONREAD, &n) != 0) return 0;
    return static_cast<size_t>(n);
  }

  /// What the child wrote to stderr so far.
  std::string log() const {
    std::ifstream in{log_path_};
    std::stringstream out;
    out << in.rdbuf();
    return out.str();
  }

private:
  // Reads the line "karlton-node <name><what><host>:<port>" into `port`.
  bool read_port_line(const std::string& what, ms limit, uint16_t& port) {
    auto line = read_line(limit);
    auto at = line ? line->find(what) : std::string::npos;
    auto colon = line ? line->rfind(':') : std::string::npos;
    if (at == std::string::npos || colon == std::string::npos || colon < at) {
      error_ = line ? "expected a line with '" + what + "', got '" + *line + "'"
                    : "no line with '" + what + "' (see " + log_path_ + ")";
      return false;
    }
    port = static_cast<uint16_t>(std::strtoul(line->c_str() + colon + 1, nullptr, 10));
    return true;
  }

  static std::string errno_text() { return std::strerror(errno); }

  std::string label_;
  std::string log_path_;
  bool keep_log_ = false;
  std::string error_;
  pid_t pid_ = -1;
  int to_child_ = -1;
  int from_child_ = -1;
  uint16_t port_ = 0;
  uint16_t resp_port_ = 0;
  uint16_t metrics_port_ = 0;
  bool reaped_ = false;
  int status_ = 0;
  std::string buffered_;
};

/// The unsigned number after `"key":` in a flat JSON text (a `stats` reply),
/// if there is one.
inline std::optional<uint64_t> json_number(const std::string& json,
                                           const std::string& key) {
  auto at = json.find("\"" + key + "\":");
  if (at == std::string::npos) return std::nullopt;
  const char* p = json.c_str() + at + key.size() + 3;
  char* end = nullptr;
  errno = 0;
  auto x = std::strtoull(p, &end, 10);
  if (end == p || errno != 0) return std::nullopt;
  return x;
}

} // namespace karlton::testing

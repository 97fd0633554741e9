// A karlton-node child process driven through its console (stdin/stdout, see
// runtime/node/console.hpp), for benchmarks that need other nodes. Every wait
// is bounded, and the child is always stopped and reaped: by `stop()`, by the
// destructor, and, should the benchmark itself die, by the kernel
// (PR_SET_PDEATHSIG).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace karlton::bench {

class node_process {
public:
  using clock = std::chrono::steady_clock;

  node_process() = default;
  ~node_process() { stop(); }
  node_process(const node_process&) = delete;
  node_process& operator=(const node_process&) = delete;

  /// Starts `path` with `args` and `--node.console`; its stderr goes to
  /// `log_path`. Waits up to `timeout` for its "listening on" line. False,
  /// with `error` set, if it could not start (the child is reaped then).
  bool start(const std::string& path, const std::vector<std::string>& args,
             const std::string& log_path, std::chrono::milliseconds timeout,
             std::string& error);

  /// Sends one console command and returns its reply line, or nothing if
  /// none came within `timeout` (or the child is gone).
  std::optional<std::string> ask(const std::string& command,
                                 std::chrono::milliseconds timeout);

  /// SIGTERM, up to 5 s for a clean exit, then SIGKILL; reaps the child.
  /// Idempotent. Returns the exit status as `waitpid` gave it (-1: none).
  int stop();

  bool running() const noexcept { return pid_ > 0; }

private:
  std::optional<std::string> read_line(clock::time_point deadline);

  pid_t pid_ = -1;
  int to_child_ = -1;   // its stdin
  int from_child_ = -1; // its stdout
  std::string pending_; // read from its stdout, not yet a whole line
};

/// The unsigned number after `"key":` in a flat JSON text, if any.
std::optional<uint64_t> json_number(const std::string& json, const std::string& key);

} // namespace karlton::bench

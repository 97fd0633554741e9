#include "bench/node_process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <thread>

namespace karlton::bench {

namespace {

void close_fd(int& fd) {
  if (fd >= 0) close(fd);
  fd = -1;
}

bool write_all(int fd, const std::string& s) {
  size_t done = 0;
  while (done < s.size()) {
    auto n = write(fd, s.data() + done, s.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

} // namespace

bool node_process::start(const std::string& path, const std::vector<std::string>& args,
                         const std::string& log_path, std::chrono::milliseconds timeout,
                         std::string& error) {
  // Everything the child needs is made before fork: after it, in a process
  // with CAF's threads running, the child may only make async-signal-safe calls.
  std::vector<std::string> all{path};
  all.insert(all.end(), args.begin(), args.end());
  all.emplace_back("--node.console");
  std::vector<char*> argv;
  for (auto& a : all)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  int in[2], out[2];
  if (pipe2(in, O_CLOEXEC) != 0) {
    error = std::string{"pipe: "} + std::strerror(errno);
    return false;
  }
  if (pipe2(out, O_CLOEXEC) != 0) {
    error = std::string{"pipe: "} + std::strerror(errno);
    close(in[0]);
    close(in[1]);
    return false;
  }
  int log_fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  auto parent = getpid();
  pid_ = fork();
  if (pid_ == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL); // no orphans if the benchmark dies
    if (getppid() != parent) _exit(127);
    dup2(in[0], 0);
    dup2(out[1], 1);
    if (log_fd >= 0) dup2(log_fd, 2);
    // Not our sockets: a child holding the benchmark's connections would
    // keep them open after the benchmark closed them.
    close_range(3, ~0u, 0);
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  if (log_fd >= 0) close(log_fd);
  to_child_ = in[1];
  from_child_ = out[0];
  if (pid_ < 0) {
    error = std::string{"fork: "} + std::strerror(errno);
    close_fd(to_child_);
    close_fd(from_child_);
    return false;
  }
  auto line = read_line(clock::now() + timeout);
  if (!line || line->find(" listening on ") == std::string::npos) {
    error = line ? "unexpected first line '" + *line + "'"
                 : "no 'listening on' line: it exited, or took over " +
                     std::to_string(timeout.count()) + " ms (see " + log_path + ")";
    stop();
    return false;
  }
  return true;
}

std::optional<std::string> node_process::ask(const std::string& command,
                                             std::chrono::milliseconds timeout) {
  if (pid_ <= 0 || !write_all(to_child_, command + "\n")) return std::nullopt;
  return read_line(clock::now() + timeout);
}

std::optional<std::string> node_process::read_line(clock::time_point deadline) {
  for (;;) {
    if (auto nl = pending_.find('\n'); nl != std::string::npos) {
      auto line = pending_.substr(0, nl);
      pending_.erase(0, nl + 1);
      return line;
    }
    auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now());
    if (from_child_ < 0 || left.count() <= 0) return std::nullopt;
    pollfd p{from_child_, POLLIN, 0};
    auto r = poll(&p, 1, static_cast<int>(left.count()));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return std::nullopt;
    char buf[4096];
    auto n = read(from_child_, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return std::nullopt; // the child closed its stdout: gone
    pending_.append(buf, static_cast<size_t>(n));
  }
}

int node_process::stop() {
  if (pid_ <= 0) return -1;
  close_fd(to_child_); // EOF on its console
  kill(pid_, SIGTERM);
  int status = -1;
  auto deadline = clock::now() + std::chrono::seconds{5};
  pid_t r = 0;
  while ((r = waitpid(pid_, &status, WNOHANG)) == 0 && clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds{10});
  if (r == 0) {
    kill(pid_, SIGKILL);
    while ((r = waitpid(pid_, &status, 0)) < 0 && errno == EINTR) {
    }
  }
  pid_ = -1;
  close_fd(from_child_);
  return r == -1 ? -1 : status;
}

std::optional<uint64_t> json_number(const std::string& json, const std::string& key) {
  auto at = json.find("\"" + key + "\":");
  if (at == std::string::npos) return std::nullopt;
  const char* p = json.c_str() + at + key.size() + 3;
  char* end = nullptr;
  errno = 0;
  auto x = std::strtoull(p, &end, 10);
  if (end == p || errno != 0) return std::nullopt;
  return x;
}

} // namespace karlton::bench

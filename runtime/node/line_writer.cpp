#include "runtime/node/line_writer.hpp"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <utility>

namespace karlton::node {

using clock = std::chrono::steady_clock;

struct line_writer::state {
  state(int given_fd, when_full policy, size_t limit)
    : fd(::fcntl(given_fd, F_DUPFD_CLOEXEC, 3)), policy(policy), limit(limit) {
    // Without a copy there is nothing to write to.
    broken = fd < 0;
  }
  ~state() {
    if (fd >= 0) ::close(fd);
  }

  // Under `mtx`: appends `text` for the thread to write.
  void queue(const std::string& text) {
    queued += text;
    unwritten += text.size();
    wake.notify_one();
  }

  // Under `mtx`: queues the line that says how many were dropped, if any.
  void report_drops() {
    if (unreported == 0 || broken) return;
    queue("karlton-node: dropped " + std::to_string(unreported) +
          " lines while this output was not read\n");
    unreported = 0;
  }

  // Under `lock`: waits until `done()`, giving up once no byte was written
  // for `stall` or at `deadline`. True if done.
  template <class Done>
  bool wait(std::unique_lock<std::mutex>& lock, Done done,
            std::chrono::milliseconds stall, clock::time_point deadline) {
    while (!done()) {
      auto before = bytes_written;
      auto until = std::min(clock::now() + stall, deadline);
      if (!written.wait_until(lock, until,
                              [&] { return done() || bytes_written != before; }))
        return false;
    }
    return true;
  }

  // The descriptor is a duplicate, so that a thread left blocked at exit
  // never writes into whatever later takes the caller's number.
  const int fd;
  when_full policy;
  const size_t limit;
  mutable std::mutex mtx;
  std::condition_variable wake;    // the thread: lines came, or stop
  std::condition_variable written; // waiters: bytes went out, broken, exited
  std::string queued;              // not yet taken by the thread
  size_t unwritten = 0;            // queued, and taken but not yet written
  uint64_t bytes_written = 0;      // ever: the waits' sign of progress
  uint64_t dropped = 0;
  uint64_t unreported = 0; // dropped since the last line that said so
  bool stopping = false;   // the line_writer is going: end once all is written
  bool broken = false;     // a write failed (the reader closed): discard
  bool exited = false;     // the thread is done with the descriptor
};

line_writer::line_writer(int fd, when_full policy, size_t limit)
  : state_(std::make_shared<state>(fd, policy, limit)),
    thread_([s = state_] { run(s); }) {}

line_writer::~line_writer() {
  auto& s = *state_;
  bool exited = false;
  {
    std::unique_lock<std::mutex> lock{s.mtx};
    s.stopping = true;
    s.report_drops();
    s.wake.notify_one();
    exited = s.wait(
      lock, [&] { return s.exited; }, stall_limit, clock::now() + exit_limit);
  }
  // A thread still blocked in write() holds its own reference to the state,
  // and the process's exit ends it.
  if (exited)
    thread_.join();
  else
    thread_.detach();
}

void line_writer::write_line(std::string line) {
  line += '\n';
  std::lock_guard<std::mutex> guard{state_->mtx};
  auto& s = *state_;
  if (s.broken) return;
  if (s.policy == when_full::drop && s.unwritten >= s.limit) {
    ++s.dropped;
    ++s.unreported;
    return;
  }
  s.report_drops();
  s.queue(line);
}

bool line_writer::backed_up() const {
  std::lock_guard<std::mutex> guard{state_->mtx};
  return state_->unwritten >= state_->limit;
}

void line_writer::stop_dropping() {
  std::lock_guard<std::mutex> guard{state_->mtx};
  state_->policy = when_full::keep;
}

uint64_t line_writer::dropped() const {
  std::lock_guard<std::mutex> guard{state_->mtx};
  return state_->dropped;
}

bool line_writer::finish(std::chrono::milliseconds stall) {
  auto& s = *state_;
  std::unique_lock<std::mutex> lock{s.mtx};
  s.report_drops();
  s.wait(
    lock, [&] { return s.unwritten == 0 || s.broken; }, stall, clock::time_point::max());
  return s.unwritten == 0 && !s.broken;
}

void line_writer::run(const std::shared_ptr<state>& sp) {
  write_all(*sp);
  std::lock_guard<std::mutex> guard{sp->mtx};
  sp->exited = true;
  sp->written.notify_all();
}

namespace {

// Where the write from `from` ends: whole lines, at most PIPE_BUF bytes of
// them, which a pipe takes in one piece, so that when stdout and stderr are
// one pipe (2>&1) neither stream's lines land inside the other's; a longer
// line goes whole.
size_t chunk_end(const std::string& text, size_t from) {
  if (text.size() - from <= PIPE_BUF) return text.size();
  auto nl = text.rfind('\n', from + PIPE_BUF - 1);
  if (nl != std::string::npos && nl >= from) return nl + 1;
  nl = text.find('\n', from);
  return nl == std::string::npos ? text.size() : nl + 1;
}

} // namespace

void line_writer::write_all(state& s) {
  for (;;) {
    std::string text;
    {
      std::unique_lock<std::mutex> lock{s.mtx};
      s.wake.wait(lock, [&] { return !s.queued.empty() || s.stopping || s.broken; });
      if (s.queued.empty()) return; // stopping with all written, or broken
      text.swap(s.queued);
    }
    size_t done = 0;
    while (done < text.size()) {
      auto n = ::write(s.fd, text.data() + done, chunk_end(text, done) - done);
      int error = n < 0 ? errno : 0;
      if (n > 0) {
        done += static_cast<size_t>(n);
        std::lock_guard<std::mutex> guard{s.mtx};
        s.unwritten -= static_cast<size_t>(n);
        s.bytes_written += static_cast<uint64_t>(n);
        s.written.notify_all();
        continue;
      }
      if (error == EINTR) continue;
      if (error == EAGAIN) {
        // Whoever shares the descriptor made it non-blocking: wait here.
        pollfd p{s.fd, POLLOUT, 0};
        ::poll(&p, 1, -1);
        continue;
      }
      std::lock_guard<std::mutex> guard{s.mtx};
      if (n == 0 || error == EPIPE || error == EBADF || error == EINVAL) {
        // The reader is gone (EPIPE: SIGPIPE is ignored) or the descriptor
        // is no good: nothing more can be written to it.
        s.broken = true;
        s.queued.clear();
        s.unwritten = 0;
        s.written.notify_all();
        return;
      }
      // A full disk, an I/O error: these lines are lost, and counted; the
      // next ones are tried again.
      auto lost =
        static_cast<uint64_t>(std::count(text.begin() + done, text.end(), '\n'));
      s.dropped += lost;
      s.unreported += lost;
      s.unwritten -= text.size() - done;
      s.written.notify_all();
      break;
    }
  }
}

} // namespace karlton::node

// karlton-node's stdout and stderr writers (runtime/node/line_writer.hpp):
// a caller never waits for the reader; console replies are kept in order
// however far the reader falls behind, log lines past the limit are dropped
// and counted, and a reader that closed or stopped costs a bounded wait.
// Each case writes into a pipe of one page that nobody reads until it says so.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "runtime/node/line_writer.hpp"

using karlton::node::line_writer;
using namespace std::chrono_literals;

namespace {

// A pipe whose buffer is one page (4 KiB here; `capacity` says): a writer
// blocks once that much is unread.
struct small_pipe {
  small_pipe() {
    std::signal(SIGPIPE, SIG_IGN); // a closed reader is an EPIPE, not a death
    int fds[2];
    REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
    read_end = fds[0];
    write_end = fds[1];
    auto size = ::fcntl(write_end, F_SETPIPE_SZ, 4096);
    REQUIRE(size > 0);
    capacity = static_cast<size_t>(size);
  }
  ~small_pipe() {
    close_read();
    close_write();
  }
  void close_read() {
    if (read_end >= 0) ::close(read_end);
    read_end = -1;
  }
  void close_write() {
    if (write_end >= 0) ::close(write_end);
    write_end = -1;
  }
  // Everything until EOF; each wait for data ends within 10 s.
  std::string read_to_end() {
    std::string all;
    char buf[4096];
    for (;;) {
      pollfd p{read_end, POLLIN, 0};
      if (::poll(&p, 1, 10'000) <= 0) return all + "<timed out>";
      auto n = ::read(read_end, buf, sizeof buf);
      if (n <= 0) return all;
      all.append(buf, static_cast<size_t>(n));
    }
  }
  int read_end = -1;
  int write_end = -1;
  size_t capacity = 0;
};

std::string numbered(int i) {
  char head[16];
  std::snprintf(head, sizeof head, "line %04d ", i);
  return head + std::string(89, 'x'); // 99 bytes, 100 with the newline
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in{text};
  for (std::string l; std::getline(in, l);)
    out.push_back(l);
  return out;
}

constexpr size_t limit = 8192;
constexpr int count = 800; // 80,000 bytes: ten times the limit

} // namespace

TEST_CASE("kept lines wait for a stopped reader, and none is lost", "[node][output]") {
  small_pipe pipe;
  std::string expected;
  auto out =
    std::make_unique<line_writer>(pipe.write_end, line_writer::when_full::keep, limit);
  for (int i = 0; i < count; ++i) {
    out->write_line(numbered(i)); // returns though nobody reads
    expected += numbered(i) + '\n';
  }
  // At most the pipe's capacity can have left: the rest waits.
  REQUIRE(pipe.capacity + limit < count * 100);
  CHECK(out->backed_up());
  CHECK(out->dropped() == 0);
  std::string got;
  std::thread reader{[&] { got = pipe.read_to_end(); }};
  CHECK(out->finish(10s));
  CHECK_FALSE(out->backed_up());
  // EOF once both the writer's copy of the descriptor and ours are closed.
  out.reset();
  pipe.close_write();
  reader.join();
  CHECK(got == expected);
}

TEST_CASE("log lines past the limit are dropped and counted, and a line says so",
          "[node][output]") {
  small_pipe pipe;
  auto err =
    std::make_unique<line_writer>(pipe.write_end, line_writer::when_full::drop, limit);
  for (int i = 0; i < count; ++i)
    err->write_line(numbered(i));
  // Accepted: under the limit, plus a line, plus what the pipe took.
  auto dropped = err->dropped();
  CHECK(dropped >= count - (limit + 100 + pipe.capacity) / 100);
  std::string got;
  std::thread reader{[&] { got = pipe.read_to_end(); }};
  CHECK(err->finish(10s)); // queues the line about the drops
  err.reset();
  pipe.close_write();
  reader.join();

  int kept = 0, last = -1;
  uint64_t reported = 0;
  for (auto& l : lines_of(got)) {
    unsigned long long n = 0;
    if (std::sscanf(l.c_str(), "karlton-node: dropped %llu lines", &n) == 1) {
      reported += n;
      continue;
    }
    REQUIRE(l.size() == 99);
    int i = std::stoi(l.substr(5, 4));
    CHECK(i > last); // in order; gaps only where lines were dropped
    last = i;
    ++kept;
  }
  CHECK(kept + static_cast<int>(dropped) == count);
  CHECK(reported == dropped);
}

TEST_CASE("a reader that closed its end ends the writing, and callers go on",
          "[node][output]") {
  small_pipe pipe;
  pipe.close_read();
  line_writer out{pipe.write_end, line_writer::when_full::keep, limit};
  out.write_line("nobody reads this");
  CHECK_FALSE(out.finish(10s)); // EPIPE: broken, not stalled for 10 s
  for (int i = 0; i < count; ++i)
    out.write_line(numbered(i)); // discarded
  CHECK_FALSE(out.backed_up());
}

TEST_CASE("a reader that takes nothing costs a bounded wait, then the writer lets go",
          "[node][output]") {
  small_pipe pipe;
  {
    line_writer out{pipe.write_end, line_writer::when_full::keep, limit};
    for (int i = 0; i < count; ++i)
      out.write_line(numbered(i));
    CHECK_FALSE(out.finish(20ms)); // no byte can go: the pipe is full
    // The destructor waits stall_limit, then leaves its thread blocked.
  }
  // The abandoned thread's write fails now, and it ends.
  pipe.close_read();
  SUCCEED("the destructor returned with the reader stopped");
}

TEST_CASE("a failed write loses its lines, counted, and the next are tried again",
          "[node][output]") {
  // /dev/full fails every write with ENOSPC, as a full disk would.
  int fd = ::open("/dev/full", O_WRONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  line_writer out{fd, line_writer::when_full::keep, limit};
  ::close(fd); // the writer has its own copy
  for (int i = 0; i < 10; ++i)
    out.write_line(numbered(i));
  CHECK(out.finish(10s)); // nothing left waiting, the descriptor still there
  auto lost = out.dropped();
  CHECK(lost >= 10);
  out.write_line("and one more");
  CHECK(out.finish(10s));
  CHECK(out.dropped() > lost); // tried, not discarded unseen
}

TEST_CASE("two writers on one pipe never splice each other's lines", "[node][output]") {
  // stdout and stderr as one pipe (2>&1) with a slow reader: each write is
  // whole lines of at most PIPE_BUF bytes, which a pipe never splits.
  small_pipe pipe;
  auto a = std::make_unique<line_writer>(pipe.write_end, line_writer::when_full::keep,
                                         size_t{1} << 20);
  auto b = std::make_unique<line_writer>(pipe.write_end, line_writer::when_full::keep,
                                         size_t{1} << 20);
  for (int i = 0; i < count; ++i) {
    a->write_line(std::string(99, 'a'));
    b->write_line(std::string(99, 'b'));
  }
  std::string got;
  std::thread reader{[&] { got = pipe.read_to_end(); }};
  CHECK(a->finish(10s));
  CHECK(b->finish(10s));
  a.reset();
  b.reset();
  pipe.close_write();
  reader.join();
  auto lines = lines_of(got);
  CHECK(lines.size() == 2 * count);
  int spliced = 0;
  for (auto& l : lines)
    if (l != std::string(99, 'a') && l != std::string(99, 'b')) ++spliced;
  CHECK(spliced == 0);
}

// karlton-node's stdout and stderr, each written by a thread of its own.
//
// A reader that stops reading a pipe makes every write to it block. Written
// directly, that held the main thread, which also reads the stop signals (a
// node whose stdout nobody read ignored SIGTERM), and any actor that logged
// (a CAF worker blocked in a write serves nobody). Through a line_writer,
// those threads only queue a line; the writer's thread is the one that waits.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

namespace karlton::node {

/// Writes whole lines to one file descriptor, in the order they came.
/// @threadsafe
class line_writer {
public:
  /// What becomes of a line that comes while `limit` bytes wait unwritten.
  enum class when_full {
    /// Queued all the same: the caller reads `backed_up()` and stops making
    /// lines (console replies, which a script counts on, are never lost).
    keep,
    /// Dropped and counted; once the reader reads again a line says how many
    /// (log lines, made on threads that must not wait).
    drop,
  };

  /// The default `limit`: what a stopped reader costs in memory, besides the
  /// one console reply that may push the queue past it.
  static constexpr size_t default_limit = size_t{1} << 20;
  /// How long the destructor waits for a reader that takes nothing...
  static constexpr std::chrono::milliseconds stall_limit{1'000};
  /// ...and for one that takes its output slowly.
  static constexpr std::chrono::milliseconds exit_limit{2'000};

  /// Starts the writing thread (it inherits the caller's signal mask), which
  /// writes to its own duplicate of `fd`.
  line_writer(int fd, when_full policy, size_t limit = default_limit);
  /// Lets the thread write what is queued, for at most `exit_limit` and
  /// `stall_limit` without a byte written; a thread still blocked then is
  /// left to the process's exit.
  ~line_writer();

  line_writer(const line_writer&) = delete;
  line_writer& operator=(const line_writer&) = delete;

  /// Queues `line` and a newline; never blocks on the reader.
  void write_line(std::string line);

  /// True while `limit` bytes or more wait unwritten.
  bool backed_up() const;

  /// From now on every line is kept, whatever waits: for the lines that
  /// must not be lost (the shutdown's), when few are left to come.
  void stop_dropping();

  /// Lines dropped so far: past the limit (`when_full::drop`), or lost to a
  /// failed write (a full disk).
  uint64_t dropped() const;

  /// Waits until no queued line is left, giving up once no byte could be
  /// written for `stall`. True if none is left (those lost to a failed write
  /// count in `dropped`) and the reader is still there. Lines queued later
  /// are still written.
  bool finish(std::chrono::milliseconds stall);

private:
  struct state;
  static void run(const std::shared_ptr<state>& s);
  static void write_all(state& s);

  // Shared with the thread, which may outlive this object (see ~line_writer).
  std::shared_ptr<state> state_;
  std::thread thread_;
};

} // namespace karlton::node

#include <karlton/runtime/log.hpp>

#include <iostream>
#include <mutex>
#include <utility>

namespace karlton {

namespace {

std::mutex sink_mtx;
log_sink current_sink; // empty: stderr

} // namespace

log_sink set_log_sink(log_sink sink) {
  std::lock_guard<std::mutex> guard{sink_mtx};
  std::swap(current_sink, sink);
  return sink;
}

void log_line(const std::string& line) {
  log_sink sink;
  {
    // Called outside the lock: a sink may log, or take a while.
    std::lock_guard<std::mutex> guard{sink_mtx};
    sink = current_sink;
  }
  if (sink) {
    // A warning must not take down the actor or the shutdown that gives it.
    try {
      sink(line);
      return;
    } catch (...) {
    }
  }
  // One write of the whole line: `<< line << '\n'` is two, and lines of
  // other threads landed between them.
  std::cerr << (line + '\n');
}

} // namespace karlton

// The lines karlton hands its log sink (`set_log_sink`) while a test runs.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <vector>

#include <karlton/runtime/log.hpp>

namespace karlton::testing {

/// Captures the log sink's lines while it lives; waits for a line on
/// events, not time.
class log_sink_lines {
public:
  log_sink_lines() {
    previous_ = set_log_sink([this](const std::string& line) {
      std::lock_guard<std::mutex> guard{mtx_};
      lines_.push_back(line);
      cv_.notify_all();
    });
  }
  ~log_sink_lines() { set_log_sink(std::move(previous_)); }
  log_sink_lines(const log_sink_lines&) = delete;
  log_sink_lines& operator=(const log_sink_lines&) = delete;

  /// Every line so far containing `part`.
  std::vector<std::string> containing(const std::string& part) {
    std::lock_guard<std::mutex> guard{mtx_};
    return matching(part);
  }

  /// The first line containing `part`, waiting up to `limit` for it; "" if
  /// none came.
  std::string wait_for(const std::string& part, std::chrono::seconds limit) {
    std::unique_lock<std::mutex> guard{mtx_};
    std::string found;
    cv_.wait_for(guard, limit, [&] {
      auto lines = matching(part);
      if (lines.empty()) return false;
      found = lines.front();
      return true;
    });
    return found;
  }

private:
  std::vector<std::string> matching(const std::string& part) const {
    std::vector<std::string> out;
    for (const auto& line : lines_)
      if (line.find(part) != std::string::npos) out.push_back(line);
    return out;
  }

  std::mutex mtx_;
  std::condition_variable cv_;
  std::vector<std::string> lines_;
  log_sink previous_;
};

} // namespace karlton::testing

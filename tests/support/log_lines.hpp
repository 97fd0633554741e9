// The log lines of runtimes under test, kept for checks on what was refused
// or ignored (a `cluster_options::log` sink that many threads may call).
#pragma once

#include <algorithm>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

namespace karlton::testing {

struct log_lines {
  std::mutex mtx;
  std::vector<std::string> lines;

  /// A sink that appends to `lines`; `*this` must outlive every caller.
  std::function<void(const std::string&)> sink() {
    return [this](const std::string& line) {
      std::lock_guard<std::mutex> guard{mtx};
      lines.push_back(line);
    };
  }

  /// True if some line so far contains `part`.
  bool contains(const std::string& part) {
    std::lock_guard<std::mutex> guard{mtx};
    return std::any_of(lines.begin(), lines.end(),
                       [&](auto& l) { return l.find(part) != std::string::npos; });
  }
};

} // namespace karlton::testing

// How karlton-bench reports: one result line per measured case, either as a
// JSON object per line (`--json`, for scripts and CI) or as an aligned table
// for people. Fields keep their insertion order, so output is stable to diff.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

namespace karlton::bench {

/// One result line: `"workload"` first, then named fields in order.
class report {
public:
  explicit report(std::string workload) { add("workload", std::move(workload)); }

  /// A number printed with `decimals` digits after the point; `unit` is shown
  /// in the table only (JSON field names carry their unit already).
  report& add(std::string name, double x, int decimals, std::string unit = {}) {
    char buf[64];
    std::snprintf(buf, sizeof(buf), "%.*f", decimals, x);
    fields_.push_back({std::move(name), buf, std::move(unit), false});
    return *this;
  }
  report& add(std::string name, uint64_t x, std::string unit = {}) {
    fields_.push_back({std::move(name), std::to_string(x), std::move(unit), false});
    return *this;
  }
  report& add(std::string name, std::string text) {
    fields_.push_back({std::move(name), std::move(text), {}, true});
    return *this;
  }

  /// Prints the line to stdout and flushes, so a long `all` run shows progress.
  void print(bool json) const {
    std::string out;
    if (json) {
      out += '{';
      for (size_t i = 0; i < fields_.size(); ++i) {
        if (i > 0) out += ',';
        out += quoted(fields_[i].name) + ':';
        out += fields_[i].is_text ? quoted(fields_[i].text) : fields_[i].text;
      }
      out += "}\n";
    } else {
      size_t width = 0;
      for (const auto& f : fields_)
        width = std::max(width, f.name.size());
      for (const auto& f : fields_) {
        out += "  " + f.name + std::string(width + 2 - f.name.size(), ' ') + f.text;
        if (!f.unit.empty()) out += ' ' + f.unit;
        out += '\n';
      }
      out += '\n';
    }
    std::fputs(out.c_str(), stdout);
    std::fflush(stdout);
  }

private:
  struct field {
    std::string name;
    std::string text;
    std::string unit;
    bool is_text;
  };

  static std::string quoted(const std::string& s) {
    std::string out = "\"";
    for (char c : s) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    return out + '"';
  }

  std::vector<field> fields_;
};

/// The `q` quantile (0..1) of `sorted` by nearest rank; 0 without samples.
inline double quantile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  return sorted[std::min(sorted.size() - 1, static_cast<size_t>(q * sorted.size()))];
}

/// p50 and p99 of samples in any unit.
struct percentiles {
  double p50 = 0;
  double p99 = 0;
};

/// The p50 and p99 of `xs`; zeros without samples.
inline percentiles summarize(std::vector<double> xs) {
  std::sort(xs.begin(), xs.end());
  return {quantile(xs, 0.50), quantile(xs, 0.99)};
}

} // namespace karlton::bench

// Prometheus' text exposition format 0.0.4, as runtime::metrics_text writes
// it: families (one `# HELP` and one `# TYPE` line each, then their samples),
// escaped label values, and histograms from an `age_histogram`. Internal.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <karlton/messages/stats.hpp>

namespace karlton::detail {

/// A label value as the format quotes it: backslash, double quote and line
/// feed escaped (`\\`, `\"`, `\n`); every other byte as it is.
inline std::string escape_label_value(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

/// HELP text as the format wants it: backslash and line feed escaped.
inline std::string escape_help(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

/// `value / per_unit` in decimal, exactly (`per_unit` a power of ten): 1500
/// ms with 1000 per second is "1.5". No floating point, so sums and bucket
/// bounds print the same on every scrape.
inline std::string fixed_point(uint64_t value, uint64_t per_unit) {
  std::string out = std::to_string(value / per_unit);
  uint64_t rest = value % per_unit;
  if (rest == 0) return out;
  std::string digits;
  for (uint64_t p = per_unit / 10; p > 0; p /= 10) {
    digits += static_cast<char>('0' + rest / p);
    rest %= p;
  }
  while (!digits.empty() && digits.back() == '0')
    digits.pop_back();
  return out + "." + digits;
}

/// Writes one scrape. Families must not repeat: a family's samples all
/// follow its HELP and TYPE lines, as the format requires.
class prometheus_writer {
public:
  using label = std::pair<std::string_view, std::string_view>; ///< name, value
  using labels = std::vector<label>;
  enum class kind { counter, gauge, histogram };

  /// Starts family `name` (a counter's ends in `_total`). `help` is escaped.
  void family(std::string_view name, kind k, std::string_view help) {
    current_.assign(name);
    out_ += "# HELP ";
    out_ += name;
    out_ += ' ';
    out_ += escape_help(help);
    out_ += "\n# TYPE ";
    out_ += name;
    out_ += k == kind::counter ? " counter\n"
            : k == kind::gauge ? " gauge\n"
                               : " histogram\n";
  }

  /// A sample of the current family; `suffix` is "" or, for a histogram,
  /// "_bucket", "_sum" or "_count". `value` is written as it is.
  void sample(std::string_view suffix, const labels& ls, std::string_view value) {
    out_ += current_;
    out_ += suffix;
    if (!ls.empty()) {
      out_ += '{';
      bool first = true;
      for (auto& [name, v] : ls) {
        if (!first) out_ += ',';
        first = false;
        out_ += name;
        out_ += "=\"";
        out_ += escape_label_value(v);
        out_ += '"';
      }
      out_ += '}';
    }
    out_ += ' ';
    out_ += value;
    out_ += '\n';
  }

  void sample(std::string_view suffix, const labels& ls, uint64_t value) {
    sample(suffix, ls, std::string_view{std::to_string(value)});
  }

  /// The current family's samples for `h` under labels `ls`. `h` holds integers of a unit
  /// of which `per_unit` make one of the family's (1000 for ms in seconds); `bounds` are
  /// the `le` bounds in `h`'s unit, increasing, "+Inf" added. A bound counts the samples
  /// of `h`'s buckets whose upper end is at or below it: exact where a bound falls on a
  /// bucket's end (every bound below 16), else it leaves out the samples of the one
  /// bucket that straddles it (within 12.5 %).
  void histogram(const labels& ls, const age_histogram& h,
                 const std::vector<uint64_t>& bounds, uint64_t per_unit) {
    std::vector<uint64_t> counts(bounds.size(), 0);
    h.for_each_bucket([&](uint64_t upper, uint64_t n) {
      for (size_t i = 0; i < bounds.size(); ++i)
        if (upper <= bounds[i]) counts[i] += n;
    });
    labels with_le = ls;
    with_le.emplace_back("le", "");
    for (size_t i = 0; i <= bounds.size(); ++i) {
      std::string le = i < bounds.size() ? fixed_point(bounds[i], per_unit) : "+Inf";
      with_le.back().second = le;
      sample("_bucket", with_le, i < bounds.size() ? counts[i] : h.count());
    }
    sample("_sum", ls, std::string_view{fixed_point(h.sum(), per_unit)});
    sample("_count", ls, h.count());
  }

  /// The text so far; the writer is empty afterwards.
  std::string take() {
    current_.clear();
    return std::move(out_);
  }

private:
  std::string out_;
  std::string current_;
};

} // namespace karlton::detail

// A strict reader of Prometheus' text format 0.0.4 for tests: it parses what
// runtime::metrics_text and /metrics produce and lists every rule the text
// breaks (a sample before its family's TYPE, a family twice, a counter not
// ending in _total, a malformed label), so that a test can require none.
#pragma once

#include <cstdlib>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace karlton::testing {

struct prom_sample {
  std::string name; // with its suffix (_bucket, _sum, _count)
  std::map<std::string, std::string> labels;
  double value = 0;
};

struct prom_family {
  std::string name;
  std::string type;
  std::string help;
  int help_lines = 0;
  int type_lines = 0;
  std::vector<prom_sample> samples;
};

struct prom_scrape {
  std::vector<prom_family> families;
  std::vector<std::string> problems; // empty: the text follows the format

  const prom_family* family(std::string_view name) const {
    for (auto& f : families)
      if (f.name == name) return &f;
    return nullptr;
  }

  /// The sample `name` with exactly `labels`; -1 if there is none.
  double value(std::string_view name,
               const std::map<std::string, std::string>& labels = {}) const {
    for (auto& f : families)
      for (auto& s : f.samples)
        if (s.name == name && s.labels == labels) return s.value;
    return -1;
  }
};

namespace detail {

inline bool parse_labels(std::string_view& s, std::map<std::string, std::string>& out) {
  // s starts after '{'.
  while (!s.empty() && s.front() != '}') {
    auto eq = s.find('=');
    if (eq == std::string_view::npos || eq + 1 >= s.size() || s[eq + 1] != '"')
      return false;
    std::string name{s.substr(0, eq)};
    s.remove_prefix(eq + 2);
    std::string value;
    for (;;) {
      if (s.empty()) return false;
      char c = s.front();
      s.remove_prefix(1);
      if (c == '"') break;
      if (c == '\n') return false;
      if (c == '\\') {
        if (s.empty()) return false;
        char e = s.front();
        s.remove_prefix(1);
        if (e == 'n')
          value += '\n';
        else if (e == '\\' || e == '"')
          value += e;
        else
          return false;
      } else {
        value += c;
      }
    }
    if (out.count(name) != 0) return false;
    out.emplace(std::move(name), std::move(value));
    if (!s.empty() && s.front() == ',') s.remove_prefix(1);
  }
  if (s.empty()) return false;
  s.remove_prefix(1); // '}'
  return true;
}

inline bool belongs_to(const prom_family& f, std::string_view sample) {
  if (sample == f.name) return f.type != "histogram";
  if (f.type != "histogram" || sample.substr(0, f.name.size()) != f.name) return false;
  auto suffix = sample.substr(f.name.size());
  return suffix == "_bucket" || suffix == "_sum" || suffix == "_count";
}

} // namespace detail

inline prom_scrape parse_prometheus(std::string_view text) {
  prom_scrape out;
  auto problem = [&](std::string what, std::string_view line) {
    out.problems.push_back(std::move(what) + ": " + std::string{line});
  };
  if (!text.empty() && text.back() != '\n') out.problems.push_back("no final line feed");
  std::map<std::string, size_t> index;
  auto family = [&](const std::string& name) -> prom_family& {
    auto [at, fresh] = index.emplace(name, out.families.size());
    if (fresh) {
      out.families.emplace_back();
      out.families.back().name = name;
    } else if (at->second + 1 != out.families.size()) {
      out.problems.push_back("family " + name + " appears in two places");
    }
    return out.families[at->second];
  };
  while (!text.empty()) {
    auto nl = text.find('\n');
    auto line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    if (line.empty()) continue;
    if (line.substr(0, 7) == "# HELP " || line.substr(0, 7) == "# TYPE ") {
      auto rest = line.substr(7);
      auto sp = rest.find(' ');
      if (sp == std::string_view::npos) {
        problem("a comment without text", line);
        continue;
      }
      auto& f = family(std::string{rest.substr(0, sp)});
      if (!f.samples.empty()) problem("HELP or TYPE after samples", line);
      if (line[2] == 'H') {
        ++f.help_lines;
        f.help = rest.substr(sp + 1);
      } else {
        ++f.type_lines;
        f.type = rest.substr(sp + 1);
        if (f.type != "counter" && f.type != "gauge" && f.type != "histogram")
          problem("an unknown type", line);
        if (f.type == "counter" &&
            (f.name.size() < 6 || f.name.compare(f.name.size() - 6, 6, "_total") != 0))
          problem("a counter not ending in _total", line);
      }
      continue;
    }
    if (line.front() == '#') continue;
    prom_sample s;
    auto end = line.find_first_of("{ ");
    if (end == std::string_view::npos) {
      problem("a sample without value", line);
      continue;
    }
    s.name = line.substr(0, end);
    auto rest = line.substr(end);
    if (rest.front() == '{') {
      rest.remove_prefix(1);
      if (!detail::parse_labels(rest, s.labels)) {
        problem("malformed labels", line);
        continue;
      }
    }
    if (rest.empty() || rest.front() != ' ') {
      problem("no space before the value", line);
      continue;
    }
    std::string value{rest.substr(1)};
    if (value == "+Inf") {
      s.value = 1e308;
    } else {
      char* stop = nullptr;
      s.value = std::strtod(value.c_str(), &stop);
      if (value.empty() || *stop != '\0') problem("a value that is not a number", line);
    }
    if (out.families.empty() || !detail::belongs_to(out.families.back(), s.name)) {
      problem("a sample outside its family", line);
      continue;
    }
    out.families.back().samples.push_back(std::move(s));
  }
  for (auto& f : out.families)
    if (f.help_lines != 1 || f.type_lines != 1)
      out.problems.push_back("family " + f.name + " without exactly one HELP and TYPE");
  return out;
}

} // namespace karlton::testing

#include "runtime/dependency_graph.hpp"

#include <cstdio>

namespace karlton {

namespace {

// Quotes `s` for DOT and JSON alike: both accept backslash escapes of quotes,
// backslashes and control characters.
std::string quoted(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\u%04x", static_cast<unsigned>(c));
      out += buf;
    } else {
      out += c;
    }
  }
  out += '"';
  return out;
}

} // namespace

std::string dependency_graph::to_dot() const {
  std::string out = "digraph dependencies {\n  rankdir=LR;\n";
  for (const auto& n : nodes) {
    auto from = quoted(n.cache + "/" + n.key);
    for (const auto& d : n.depends_on) {
      // Keys of the same cache are drawn as that cache's entries.
      auto to = d.rfind("event:", 0) == 0 ? quoted(d) : quoted(n.cache + "/" + d);
      out += "  " + from + " -> " + to + ";\n";
    }
  }
  out += "}\n";
  return out;
}

std::string dependency_graph::to_json() const {
  std::string out = "{";
  const std::string* cache = nullptr;
  for (const auto& n : nodes) {
    if (!cache || *cache != n.cache) {
      if (cache) out += "}, ";
      out += quoted(n.cache) + ": {";
      cache = &n.cache;
    } else {
      out += ", ";
    }
    out += quoted(n.key) + ": [";
    for (size_t i = 0; i < n.depends_on.size(); ++i)
      out += (i > 0 ? ", " : "") + quoted(n.depends_on[i]);
    out += "]";
  }
  if (cache) out += "}";
  out += "}";
  return out;
}

} // namespace karlton

#include <karlton/runtime/dependency_graph.hpp>

#include "runtime/json.hpp"

namespace karlton {

std::optional<std::string> dependency_graph::to_dot_within(size_t max_bytes) const {
  std::string out = "digraph dependencies {\n  rankdir=LR;\n";
  for (const auto& n : nodes) {
    auto from = json_quoted(n.cache + "/" + n.key);
    for (const auto& d : n.depends_on) {
      // Keys of the same cache are drawn as that cache's entries.
      auto to =
        d.rfind("event:", 0) == 0 ? json_quoted(d) : json_quoted(n.cache + "/" + d);
      out += "  " + from + " -> " + to + ";\n";
      if (out.size() > max_bytes) return std::nullopt;
    }
  }
  out += "}\n";
  if (out.size() > max_bytes) return std::nullopt;
  return out;
}

std::optional<std::string> dependency_graph::to_json_within(size_t max_bytes) const {
  std::string out = "{";
  const std::string* cache = nullptr;
  for (const auto& n : nodes) {
    if (!cache || *cache != n.cache) {
      if (cache) out += "}, ";
      out += json_quoted(n.cache) + ": {";
      cache = &n.cache;
    } else {
      out += ", ";
    }
    out += json_quoted(n.key) + ": [";
    for (size_t i = 0; i < n.depends_on.size(); ++i) {
      out += (i > 0 ? ", " : "") + json_quoted(n.depends_on[i]);
      if (out.size() > max_bytes) return std::nullopt;
    }
    out += "]";
  }
  if (cache) out += "}";
  out += "}";
  if (out.size() > max_bytes) return std::nullopt;
  return out;
}

} // namespace karlton

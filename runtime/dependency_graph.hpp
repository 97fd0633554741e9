// The dependency graph of a runtime's caches, for people and tools: each
// cached entry with dependencies, and what it depends on.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace karlton {

/// Every entry's declared dependencies, over every cache of a runtime
/// (`runtime::dependencies_graph`): to inspect or draw what invalidates what.
struct dependency_graph {
  /// One entry that declared dependencies.
  struct node {
    std::string cache; ///< the cache holding the entry
    std::string key;   ///< the entry's key
    /// Keys and tags as given; events as "event:<name>".
    std::vector<std::string> depends_on;
  };
  std::vector<node> nodes; ///< sorted by cache, then key

  /// Graphviz: an edge from each entry to what it depends on
  /// (`dot -Tsvg graph.dot > graph.svg`).
  std::string to_dot() const { return *to_dot_within(SIZE_MAX); }
  /// `{"cache": {"key": ["dependency", ...], ...}, ...}`
  std::string to_json() const { return *to_json_within(SIZE_MAX); }
  /// `to_dot`'s text, or nothing once it would pass `max_bytes`: each key is
  /// written once per edge and quoting may take 6 bytes a byte, so the text
  /// can be far larger than what the caches hold (a RESP client's
  /// KARLTON.GRAPH must not make the node allocate gigabytes).
  std::optional<std::string> to_dot_within(size_t max_bytes) const;
  /// `to_json`'s text, or nothing once it would pass `max_bytes`.
  std::optional<std::string> to_json_within(size_t max_bytes) const;
};

} // namespace karlton

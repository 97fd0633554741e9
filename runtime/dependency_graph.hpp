// The dependency graph of a runtime's caches, for people and tools: each
// cached entry with dependencies, and what it depends on.
#pragma once

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
  std::string to_dot() const;
  /// `{"cache": {"key": ["dependency", ...], ...}, ...}`
  std::string to_json() const;
};

} // namespace karlton

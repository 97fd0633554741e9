// BCAST prefixes and the clients tracking each, as a radix tree, so that a
// changed key finds its prefixes in one walk down the key.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace karlton::server {

/// Prefixes, each with the ids of the clients tracking it.
///
/// A compressed trie (a radix tree, as Redis keeps its own keys in `rax`):
/// each node holds the bytes of the edge into it, the ids of the prefix that
/// ends there, and its children in order of their first byte. A node with no
/// ids has at least two children (removals merge the rest), so there are at
/// most twice as many nodes as prefixes.
///
/// `for_each_match` follows the key down the tree, one node per matching
/// level: a key's walk costs at most its own length in compared bytes and a
/// binary search among at most 256 children per level, however many
/// prefixes there are and however nearly they match it. (The sorted map it
/// replaces took one lookup per prefix of a key and per near miss: prefixes
/// `Z…ZA` of every length below a key `Z…Z` of 1 KiB cost a change of that
/// key a thousand map searches of kilobyte strings.)
/// Not thread-safe: the tracking table guards it.
class prefix_tree {
public:
  prefix_tree();
  ~prefix_tree();
  prefix_tree(const prefix_tree&) = delete;
  prefix_tree& operator=(const prefix_tree&) = delete;

  /// Adds `id` to `prefix`'s clients (the caller keeps a client's prefixes
  /// distinct).
  void add(std::string_view prefix, uint64_t id);
  /// Removes `id` from `prefix`'s clients; false if it was not there.
  bool remove(std::string_view prefix, uint64_t id);

  /// Calls `f(ids)` for each prefix of `key` in the tree, shortest first;
  /// returns the nodes visited (a measure of the work, for lock holding).
  template <class F>
  size_t for_each_match(std::string_view key, F&& f) const {
    size_t steps = 1;
    const node* at = root_.get();
    if (!at->ids.empty()) f(at->ids);
    while (!key.empty()) {
      at = child(*at, key.front());
      if (!at || key.compare(0, at->edge.size(), at->edge) != 0) break;
      ++steps;
      key.remove_prefix(at->edge.size());
      if (!at->ids.empty()) f(at->ids);
    }
    return steps;
  }

  /// Prefixes with at least one client.
  size_t size() const noexcept { return prefixes_; }
  /// Nodes, the root included (for tests of the structure's bound).
  size_t nodes() const noexcept { return nodes_; }

private:
  struct node {
    std::string edge; ///< the bytes from the parent to here (root: none)
    std::vector<uint64_t> ids;
    std::vector<std::unique_ptr<node>> children; ///< by `edge.front()`
  };

  static bool first_byte_below(const std::unique_ptr<node>& child, char c) noexcept;
  /// The child of `n` whose edge starts with `c`, or null.
  static const node* child(const node& n, char c) noexcept;
  /// Where a child whose edge starts with `c` is or would go.
  static std::vector<std::unique_ptr<node>>::iterator slot(node& n, char c) noexcept;
  /// Folds `n`'s only child into it (`n` has no ids and is not the root).
  void merge_with_child(node& n);

  std::unique_ptr<node> root_;
  size_t prefixes_ = 0;
  size_t nodes_ = 1;
};

} // namespace karlton::server

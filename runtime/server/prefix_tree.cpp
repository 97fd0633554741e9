#include "runtime/server/prefix_tree.hpp"

#include <algorithm>

namespace karlton::server {

prefix_tree::prefix_tree() : root_(std::make_unique<node>()) {}

prefix_tree::~prefix_tree() {
  // Iteratively: a chain of a thousand one-byte edges would otherwise be a
  // recursion as deep.
  std::vector<std::unique_ptr<node>> doomed;
  doomed.push_back(std::move(root_));
  while (!doomed.empty()) {
    auto n = std::move(doomed.back());
    doomed.pop_back();
    for (auto& c : n->children)
      doomed.push_back(std::move(c));
  }
}

// Children are ordered by their edge's first byte, unsigned.
bool prefix_tree::first_byte_below(const std::unique_ptr<node>& child, char c) noexcept {
  return static_cast<unsigned char>(child->edge.front()) < static_cast<unsigned char>(c);
}

std::vector<std::unique_ptr<prefix_tree::node>>::iterator
prefix_tree::slot(node& n, char c) noexcept {
  return std::lower_bound(n.children.begin(), n.children.end(), c, first_byte_below);
}

const prefix_tree::node* prefix_tree::child(const node& n, char c) noexcept {
  auto at = std::lower_bound(n.children.begin(), n.children.end(), c, first_byte_below);
  return at != n.children.end() && (*at)->edge.front() == c ? at->get() : nullptr;
}

void prefix_tree::add(std::string_view prefix, uint64_t id) {
  node* at = root_.get();
  while (!prefix.empty()) {
    auto s = slot(*at, prefix.front());
    if (s == at->children.end() || (*s)->edge.front() != prefix.front()) {
      auto leaf = std::make_unique<node>();
      leaf->edge.assign(prefix);
      at = at->children.insert(s, std::move(leaf))->get();
      ++nodes_;
      break;
    }
    auto& edge = (*s)->edge;
    auto shared = static_cast<size_t>(
      std::mismatch(edge.begin(), edge.end(), prefix.begin(), prefix.end()).first -
      edge.begin());
    if (shared < edge.size()) {
      // The prefix ends or turns inside this edge: split it there. What may
      // throw (allocations) comes first, so a failure leaves the tree whole.
      auto head = std::make_unique<node>();
      head->edge = edge.substr(0, shared);
      auto tail = edge.substr(shared);
      head->children.reserve(1);
      edge = std::move(tail);
      head->children.push_back(std::move(*s));
      *s = std::move(head);
      ++nodes_;
    }
    at = s->get();
    prefix.remove_prefix(shared);
  }
  at->ids.push_back(id);
  if (at->ids.size() == 1) ++prefixes_;
}

bool prefix_tree::remove(std::string_view prefix, uint64_t id) {
  // The path down, as (parent, child) pairs, to tidy up on the way back.
  std::vector<std::pair<node*, node*>> path;
  node* at = root_.get();
  while (!prefix.empty()) {
    auto s = slot(*at, prefix.front());
    // (A child whose edge starts otherwise fails the comparison too.)
    if (s == at->children.end() || prefix.compare(0, (*s)->edge.size(), (*s)->edge) != 0)
      return false;
    node* next = s->get();
    path.emplace_back(at, next);
    prefix.remove_prefix(next->edge.size());
    at = next;
  }
  auto mine = std::find(at->ids.begin(), at->ids.end(), id);
  if (mine == at->ids.end()) return false;
  at->ids.erase(mine);
  if (!at->ids.empty()) return true;
  --prefixes_;
  if (path.empty()) return true; // the root stays
  if (at->children.size() == 1) {
    merge_with_child(*at);
  } else if (at->children.empty()) {
    node* parent = path.back().first;
    parent->children.erase(slot(*parent, at->edge.front()));
    --nodes_;
    // The parent had two children at least, unless it is the root or ends a
    // prefix; with one left and neither, it folds into it.
    if (parent != root_.get() && parent->ids.empty() && parent->children.size() == 1)
      merge_with_child(*parent);
  }
  return true;
}

void prefix_tree::merge_with_child(node& n) {
  auto only = std::move(n.children.front());
  n.edge += only->edge;
  n.ids = std::move(only->ids);
  n.children = std::move(only->children);
  --nodes_;
}

} // namespace karlton::server

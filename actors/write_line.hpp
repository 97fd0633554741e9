// A write-back shard's line: the writes parked for room (max-dirty), in the
// order they came, with the calls that must keep their place among them: a
// compute, a set_ttl call or a clear's drop of a key ("turns" when they write
// nothing, and need no room). Counted per key, so a call can tell at once
// whether its key waits here, and writes and turns apart: each has its own
// bound, so neither can fill the line and get the other refused.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include <karlton/messages/value.hpp>

namespace karlton {

/// `Op` has `key` (a string), `turn` (writes nothing) and `drop` (a clear's).
/// @nothreadsafe (the shard's)
template <class Op>
class write_line {
public:
  bool empty() const noexcept { return ops_.empty(); }
  /// What in it writes, and the turns.
  size_t writes() const noexcept { return ops_.size() - turns_; }
  size_t turns() const noexcept { return turns_; }
  /// True if an op of `key` is in line.
  bool holds(const std::string& key) const { return per_key_.count(key) > 0; }
  bool holds_any_key() const noexcept { return !per_key_.empty(); }

  const Op& front() const { return ops_.front(); }
  /// At the back, or at the front (an op its turn must take next).
  void join(Op op, bool at_front = false) {
    ++per_key_[op.key];
    turns_ += op.turn;
    undropped_ = undropped_ || !op.drop;
    if (at_front)
      ops_.push_front(std::move(op));
    else
      ops_.push_back(std::move(op));
  }
  Op leave() {
    auto op = std::move(ops_.front());
    ops_.pop_front();
    forget(op);
    return op;
  }

  /// Takes every op of `key` out of line, in order, into `take`; the others
  /// keep theirs. Walks only as far as the key's last op (usually just
  /// behind the front).
  template <class Take>
  void take_key(const std::string& key, Take take) {
    auto n = per_key_.find(key);
    if (n == per_key_.end()) return;
    auto left = n->second;
    per_key_.erase(n);
    auto kept = ops_.begin();
    auto i = ops_.begin();
    for (; left > 0 && i != ops_.end(); ++i) {
      if (i->key != key) {
        if (kept != i) *kept = std::move(*i);
        ++kept;
      } else {
        --left;
        turns_ -= i->turn;
        take(std::move(*i));
      }
    }
    ops_.erase(kept, i);
  }

  /// Puts `make(op)` (a turn) right behind each key's last op, unless that is
  /// a drop already; nothing if only drops joined since the last call.
  template <class Make>
  void follow_each_key(Make make) {
    if (!std::exchange(undropped_, false)) return;
    std::vector<bool> last(ops_.size(), false);
    std::unordered_set<std::string_view> seen;
    for (size_t i = ops_.size(); i-- > 0;)
      last[i] = seen.insert(ops_[i].key).second && !ops_[i].drop;
    std::deque<Op> out;
    for (size_t i = 0; i < ops_.size(); ++i) {
      out.push_back(std::move(ops_[i]));
      if (!last[i]) continue;
      auto op = make(out.back());
      ++per_key_[op.key];
      turns_ += op.turn;
      out.push_back(std::move(op));
    }
    ops_ = std::move(out);
  }

  auto begin() noexcept { return ops_.begin(); }
  auto end() noexcept { return ops_.end(); }

private:
  void forget(const Op& op) {
    turns_ -= op.turn;
    auto n = per_key_.find(op.key);
    if (--n->second == 0) per_key_.erase(n);
  }

  std::deque<Op> ops_;
  size_t turns_ = 0; // ops that write nothing
  std::unordered_map<std::string, uint32_t, key_hasher> per_key_;
  bool undropped_ = false; // an op other than a drop joined since `follow_each_key`
};

} // namespace karlton

// What a shard holds of a write until the store, the flusher or room takes it
// (actors/shard_writes.cpp), and the handle of a compute that waits its turn
// (actors/shard_compute.cpp). Only the owning shard touches them.
#pragma once

#include <algorithm>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <caf/expected.hpp>

#include "actors/shard_options.hpp"
#include <karlton/messages/events.hpp>
#include <karlton/messages/ttl.hpp>
#include <karlton/messages/value.hpp>

namespace karlton {

namespace shard_detail {
/// A compute, set_ttl or clear's drop waiting at its shard (shard_compute.cpp).
struct compute_job;
using compute_ptr = std::shared_ptr<compute_job>;
} // namespace shard_detail

/// Told when a write that needed the store (write-through) or the flusher
/// (write-back) is done: for an erase, whether the key was cached (and served).
using write_waiter = std::function<void(caf::expected<bool>)>;

/// A write waiting for the store or flusher (`awaiting_`) or for room (`line_`).
struct pending_write {
  value val; // the put's value, or empty for an erase
  std::string key;
  ttl lifetime;
  write_waiter waiter;
  bool was_cached = false;  // write-back erase: the answer
  uint64_t deadline_ms = 0; // parked: when it fails with overloaded
  bool keep_links = false;  // a compute's put keeps the entry's dependencies
  // A put's dependencies, linked when its value goes in (none: a plain put).
  std::unique_ptr<dependencies> links;
  // Write-through: those names counted in the cache's filter while the store has it.
  std::unique_ptr<held_names> held;
  // Write-back: a compute parked in line (no write yet).
  shard_detail::compute_ptr compute;
  bool turn = false, drop = false; // that compute is set_ttl or a clear's drop: no room
  bool voided = false;         // write-through put: invalidated meanwhile, not installed
  uint64_t kept_expiry_ms = 0; // a compute's: the expiry kept, else `lifetime` counts
  time_point sent{};           // write-through: when it went to the store
};

/// The writes a shard handed to the store or the flusher, by write number,
/// until they are answered. Numbers are handed out in order and answered in
/// order (one store writer; write-back without a journal answers each as soon
/// as the flusher has it), so the writes sit in a vector in number order, read
/// from `head_`: adding one allocates nothing once the vector has grown, where
/// a hash map's node was a malloc and a free a put (and a deque's block one per
/// three writes). An answer out of order leaves a hole, which goes once every
/// write before it was answered. Emptied, it keeps room for `kept_room` writes
/// (a burst of write-through puts may have grown it far beyond).
/// @nothreadsafe (the shard's)
class awaiting_writes {
public:
  bool empty() const noexcept { return waiting_ == 0; }
  /// The slots the vector holds: the writes waiting, the holes among them, and
  /// answered ones in front of them until an `add` finds over half answered.
  size_t held() const noexcept { return slots_.size(); }
  /// The slots it has room for without growing.
  size_t room() const noexcept { return slots_.capacity(); }

  static constexpr size_t kept_room = 1024;

  /// Numbers come in order; one that does not still goes into its place.
  void add(uint64_t seq, pending_write op) {
    if (head_ > 64 && head_ * 2 > slots_.size()) { // half of it answered: compact
      slots_.erase(slots_.begin(), slots_.begin() + static_cast<ptrdiff_t>(head_));
      head_ = 0;
    }
    slot s{seq, true, std::move(op)};
    if (slots_.empty() || slots_.back().seq < seq) {
      slots_.push_back(std::move(s));
    } else {
      auto at = first_at_or_after(seq);
      assert(at == slots_.end() || at->seq != seq); // numbers are unique
      slots_.insert(at, std::move(s));
    }
    ++waiting_;
  }

  /// Takes out the write numbered `seq`; empty if it is not waiting.
  std::optional<pending_write> take(uint64_t seq) {
    auto i = slots_.begin() + static_cast<ptrdiff_t>(head_);
    if (i == slots_.end() || i->seq != seq) i = first_at_or_after(seq);
    if (i == slots_.end() || i->seq != seq || !i->waiting) return std::nullopt;
    std::optional<pending_write> out{std::move(i->op)};
    i->op = pending_write{}; // nothing left behind in the hole, whatever a move leaves
    i->waiting = false;
    --waiting_;
    while (head_ < slots_.size() && !slots_[head_].waiting)
      ++head_;
    if (head_ == slots_.size()) { // all answered: start over
      slots_.clear();
      head_ = 0;
      if (slots_.capacity() > kept_room) { // a burst grew it: give the rest back
        std::vector<slot> fresh;
        fresh.reserve(kept_room);
        slots_.swap(fresh);
      }
    }
    return out;
  }

  /// The numbers of the writes still waiting, in order.
  std::vector<uint64_t> numbers() const {
    std::vector<uint64_t> out;
    for (auto i = head_; i < slots_.size(); ++i)
      if (slots_[i].waiting) out.push_back(slots_[i].seq);
    return out;
  }

  /// Calls `f(op)` on every write still waiting, in number order; `f` adds none.
  template <class F>
  void for_each(F&& f) {
    for (auto i = head_; i < slots_.size(); ++i)
      if (slots_[i].waiting) f(slots_[i].op);
  }

private:
  struct slot {
    uint64_t seq;
    bool waiting;
    pending_write op;
  };
  std::vector<slot>::iterator first_at_or_after(uint64_t seq) {
    return std::lower_bound(slots_.begin() + static_cast<ptrdiff_t>(head_), slots_.end(),
                            seq, [](const slot& s, uint64_t n) { return s.seq < n; });
  }
  std::vector<slot> slots_;
  size_t head_ = 0; // slots before it are answered
  size_t waiting_ = 0;
};

} // namespace karlton

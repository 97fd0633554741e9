// The reply slots of one connection (plan §4.2): one per command in flight,
// in request order. A command's reply is written into its slot by whichever
// thread completes it (the I/O thread for a direct answer, a shard thread or
// the blocking pool otherwise), which then marks the slot ready with a
// release store; the I/O thread moves ready slots out from the head, in
// order, so replies leave in request order however the calls complete.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "runtime/server/kept_buffers.hpp"

namespace karlton::server {

/// One command's reply, written by one thread and then handed over.
struct reply_slot {
  /// The reply's bytes; owned by the completing thread until `ready`.
  std::string bytes;
  /// Set with release order once `bytes` is complete.
  std::atomic<bool> ready{false};
  /// The I/O thread's own note of the command's writes (the session's
  /// read-your-writes barrier): how many keys it wrote and whether it wrote
  /// the whole database.
  uint32_t keys_written = 0;
  bool wrote_all = false;
  /// Reply bytes the I/O thread wrote into the slot and counts as held
  /// (the session's output pause counts replies waiting behind the head).
  size_t held = 0;
  /// Reply bytes the completing thread counted as late (written on another
  /// thread; the session's output pause and limit count them too).
  size_t late = 0;
  /// The client as its command found it (HELLO's protocol, a subscription to
  /// the invalidation channel): how a push that goes out just before this
  /// reply must be read (`session_impl::spell_for_client`).
  int protocol_before = 2;
  bool subscribed_before = false;
};

/// A ring of at most `capacity` slots. Slots live in blocks that are made on
/// first use and never move, so a completing thread may hold a `reply_slot*`
/// while the I/O thread opens and closes others. Whenever the ring empties,
/// the next command starts again at the first slot and every block but the
/// first is given back: a connection that never pipelines uses one slot, and
/// one that pipelined keeps one block once it went quiet. (Before, sequence
/// numbers walked the whole ring, so one command at a time made all 4,096
/// slots, each keeping a reply of up to 64 KiB: review of 7 Dec.)
/// Only `open`, `head`, `pop` and the counts are for the I/O thread; a slot
/// itself is for the thread that completes it, until `ready`.
class reply_slots {
public:
  static constexpr size_t block_size = 64;

  explicit reply_slots(size_t capacity)
    : capacity_(capacity == 0 ? 1 : capacity),
      blocks_((capacity_ + block_size - 1) / block_size) {}

  size_t capacity() const noexcept { return capacity_; }
  /// Slots opened and not yet popped.
  size_t in_use() const noexcept { return static_cast<size_t>(tail_ - head_); }
  bool full() const noexcept { return in_use() >= capacity_; }
  bool empty() const noexcept { return tail_ == head_; }
  /// The sequence number the next `open` gets (request order).
  uint64_t next_sequence() const noexcept { return tail_; }
  /// The sequence number of the head (the oldest slot still in use).
  uint64_t head_sequence() const noexcept { return head_; }

  /// The next slot in request order; the ring must not be full.
  reply_slot& open() {
    auto& s = at(tail_++);
    s.bytes.clear();
    s.keys_written = 0;
    s.wrote_all = false;
    s.held = 0;
    s.late = 0;
    return s;
  }

  /// Memory the ring holds: its blocks and the buffers of the replies in
  /// slots not in use (those in use belong to their completing threads).
  size_t bytes_held() const noexcept {
    size_t n = 0;
    auto head = index_of(head_);
    for (size_t b = 0; b < blocks_.size(); ++b) {
      if (!blocks_[b]) continue;
      n += block_size * sizeof(reply_slot);
      for (size_t i = 0; i < block_size; ++i)
        if ((b * block_size + i + capacity_ - head) % capacity_ >= in_use())
          n += blocks_[b][i].bytes.capacity();
    }
    return n;
  }

  /// The slot of sequence number `seq`, if it is still in use.
  const reply_slot* find(uint64_t seq) noexcept {
    return seq >= head_ && seq < tail_ ? &at(seq) : nullptr;
  }

  /// The oldest slot if it is ready, else null.
  reply_slot* ready_head() noexcept {
    if (empty()) return nullptr;
    auto& s = at(head_);
    return s.ready.load(std::memory_order_acquire) ? &s : nullptr;
  }

  /// Releases the head slot (which was ready) for reuse.
  void pop() noexcept {
    auto& s = at(head_++);
    s.ready.store(false, std::memory_order_relaxed);
    clear_keeping(s.bytes, kept_reply_bytes);
    if (!empty()) return;
    // No slot in use: no completing thread holds one (it lets go with its
    // `ready` store), so the ring may start over and shrink.
    first_ = head_;
    for (size_t b = 1; b < blocks_.size(); ++b)
      blocks_[b].reset();
  }

private:
  /// Where sequence number `seq` sits in the ring (slot `b * block_size + i`
  /// is `i` in block `b`).
  size_t index_of(uint64_t seq) const noexcept {
    return static_cast<size_t>((seq - first_) % capacity_);
  }

  reply_slot& at(uint64_t seq) {
    auto i = index_of(seq);
    auto& b = blocks_[i / block_size];
    if (!b) b = std::make_unique<reply_slot[]>(block_size);
    return b[i % block_size];
  }

  size_t capacity_;
  std::vector<std::unique_ptr<reply_slot[]>> blocks_;
  uint64_t head_ = 0;
  uint64_t tail_ = 0;
  uint64_t first_ = 0; // the sequence number at the first slot
};

} // namespace karlton::server

// The session's pushes (tracking messages): queued from any thread, they go
// out after the replies of every command opened before them (plan §6).
#include <algorithm>
#include <iterator>
#include <vector>

#include "runtime/server/session_impl.hpp"
#include "runtime/server/tracking_table.hpp"

namespace karlton::server {

void session_impl::move_due_pushes() {
  // Sequentially consistent with push's store and its wake: collect clears
  // wake_pending_ and then reads this, push sets this and then wake_pending_;
  // one of them sees the other, so a push is never left without a wake.
  if (!has_pushes_.load(std::memory_order_seq_cst)) return;
  std::vector<queued_push> forward; // to REDIRECT targets, outside our lock
  {
    std::lock_guard<std::mutex> guard{push_mtx_};
    size_t moved = 0;
    while (!pushes_.empty() && pushes_.front().after <= slots_.head_sequence()) {
      auto& p = pushes_.front();
      moved += p.msg.size();
      if (p.redirected)
        forward.push_back(std::move(p));
      else if (spell_for_client(p.msg, p.after))
        output_ += p.msg;
      pushes_.pop_front();
    }
    push_bytes_ -= moved;
    waiting_bytes_.fetch_sub(moved, std::memory_order_relaxed);
    has_pushes_.store(!pushes_.empty(), std::memory_order_relaxed);
  }
  hand_on(std::move(forward));
}

bool session_impl::spell_for_client(std::string& msg, uint64_t seq) {
  // The client as the command after the push found it; with none yet, as
  // it is now.
  int protocol = protocol_;
  bool subscribed = subscribed_;
  if (const auto* next = slots_.find(std::max(seq, slots_.head_sequence()))) {
    protocol = next->protocol_before;
    subscribed = next->subscribed_before;
  }
  // RESP3 hears pushes ('>'); RESP2 only as a subscriber, through the
  // pub/sub message array ('*') of __redis__:invalidate.
  if (protocol < 3 && !subscribed) return false;
  if (msg.empty()) return false;
  if ((msg[0] == '>') == (protocol >= 3)) return true;
  // Spelt for the protocol before a HELLO (the table routed it while HELLO
  // ran): an invalidation is spelt again, anything else is dropped.
  auto again = invalidation_for(msg, protocol);
  if (again.empty()) return false;
  msg = std::move(again);
  return true;
}

bool session_impl::add_waiting(size_t n, size_t also_dropped) noexcept {
  if (waiting_bytes_.fetch_add(n, std::memory_order_relaxed) + n <=
      ctx_->options.output_buffer_limit)
    return true;
  waiting_bytes_.fetch_sub(n + also_dropped, std::memory_order_relaxed);
  output_overflow_.store(true, std::memory_order_release);
  return false;
}

std::vector<session_impl::queued_push> session_impl::take_redirected() {
  // One pass keeps this connection's own pushes in their order in front.
  auto theirs = std::stable_partition(pushes_.begin(), pushes_.end(),
                                      [](const queued_push& p) { return !p.redirected; });
  std::vector<queued_push> out{std::make_move_iterator(theirs),
                               std::make_move_iterator(pushes_.end())};
  pushes_.erase(theirs, pushes_.end());
  return out;
}

void session_impl::hand_on(std::vector<queued_push> pushes) {
  for (auto& p : pushes)
    if (auto to = p.to.lock()) to->push(std::move(p.msg));
}

void session_impl::hand_on_redirected() {
  std::vector<queued_push> forward;
  {
    std::lock_guard<std::mutex> guard{push_mtx_};
    forward = take_redirected();
    size_t gone = 0;
    for (auto& p : forward)
      gone += p.msg.size();
    push_bytes_ -= gone;
    waiting_bytes_.fetch_sub(gone, std::memory_order_relaxed);
    has_pushes_.store(!pushes_.empty(), std::memory_order_relaxed);
  }
  hand_on(std::move(forward));
}

void session_impl::queue_push(std::string msg, std::weak_ptr<session> to,
                              bool redirected) {
  bool overflowed = false;
  // A REDIRECT target's messages are not lost with this connection's
  // output: they go to the target at once instead (out of this order,
  // since this connection's replies will not go out any more).
  std::vector<queued_push> forward;
  bool dropping = false;
  {
    std::lock_guard<std::mutex> guard{push_mtx_};
    // Twice the same message at the same place in the stream says nothing
    // more: each shard of a cleared cache sends its "everything" (null).
    auto after = opened_.load(std::memory_order_acquire);
    if (!pushes_.empty() && pushes_.back().after == after && pushes_.back().msg == msg &&
        pushes_.back().redirected == redirected && !pushes_.back().to.owner_before(to) &&
        !to.owner_before(pushes_.back().to))
      return;
    dropping = output_overflow_.load(std::memory_order_relaxed);
    auto n = msg.size();
    // Past the limit the queued pushes are dropped with this one: their
    // bytes leave the count too.
    if (dropping) {
      if (redirected) forward.push_back({0, std::move(msg), std::move(to), true});
    } else if (!add_waiting(n, push_bytes_)) {
      forward = take_redirected();
      if (redirected) forward.push_back({0, std::move(msg), std::move(to), true});
      std::deque<queued_push>{}.swap(pushes_);
      has_pushes_.store(false, std::memory_order_relaxed);
      push_bytes_ = 0;
      overflowed = true;
    } else {
      push_bytes_ += n;
      pushes_.push_back({after, std::move(msg), std::move(to), redirected});
      has_pushes_.store(true, std::memory_order_seq_cst);
    }
  }
  hand_on(std::move(forward));
  if (dropping) return; // the host was woken to close when it overflowed
  // A host paused for a client that does not read collects nothing, so its
  // pending wake never clears: an overflow wakes it regardless, to close.
  if (overflowed || !wake_pending_.exchange(true, std::memory_order_seq_cst))
    wake_host_always();
}

} // namespace karlton::server

#include "actors/negative_cache.hpp"

#include <algorithm>
#include <utility>

namespace karlton {

void negative_cache::remember(std::string_view key, caf::error why, uint64_t now_ms,
                              uint64_t until_ms) {
  if (ttl_ms_ == 0) return;
  // A shorter `until_ms` may come behind a longer one in the FIFO: it is never
  // found past it, only dropped later.
  auto expiry = std::min(now_ms + ttl_ms_, until_ms);
  auto seq = next_seq_++;
  by_key_.insert_or_assign(std::string{key}, failure{std::move(why), expiry, seq});
  fifo_.push_back(queued{expiry, seq, std::string{key}});
  while (fifo_.size() > capacity_)
    pop_front();
}

const caf::error* negative_cache::find(std::string_view key, uint64_t now_ms) const {
  if (by_key_.empty()) return nullptr;
  auto i = by_key_.find(std::string{key});
  if (i == by_key_.end() || now_ms >= i->second.expiry_ms) return nullptr;
  return &i->second.why;
}

void negative_cache::clear() {
  by_key_.clear();
  fifo_.clear();
}

void negative_cache::pop_front() {
  auto& front = fifo_.front();
  // Only if the key's failure is still this item's: a newer failure of the
  // key has its own item further back.
  if (auto i = by_key_.find(front.key); i != by_key_.end() && i->second.seq == front.seq)
    by_key_.erase(i);
  fifo_.pop_front();
}

uint64_t negative_cache::expire(uint64_t now_ms, uint64_t max_work) {
  uint64_t work = 0;
  for (; work < max_work && !fifo_.empty() && fifo_.front().expiry_ms <= now_ms; ++work)
    pop_front();
  return work;
}

std::optional<uint64_t> negative_cache::next_expiry_ms() const {
  if (fifo_.empty()) return std::nullopt;
  return fifo_.front().expiry_ms;
}

} // namespace karlton

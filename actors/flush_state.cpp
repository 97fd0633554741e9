#include "actors/flush_state.hpp"

#include <algorithm>
#include <cassert>

#include "base/backoff.hpp"

namespace karlton {

namespace {

uint64_t as_ms(caf::timespan d) {
  return static_cast<uint64_t>(
    std::chrono::duration_cast<std::chrono::milliseconds>(d).count());
}

} // namespace

bool journal_rewrite(uint64_t bytes, uint64_t rewritten, uint64_t max_bytes) {
  return bytes >= std::max(max_bytes, 2 * rewritten);
}

uint64_t journal_bytes(const std::vector<shard_write>& items) {
  uint64_t n = 0;
  for (const auto& i : items) // a 24-byte header, the key, the value
    n += 24 + i.key().size() + (i.erase ? 0 : i.bytes().size());
  return n;
}

uint64_t journal_mark_bytes(uint64_t n) {
  // A header per 536870911 numbers (a u32 length of 8 bytes each), 8 bytes each.
  constexpr uint64_t per_record = UINT32_MAX / 8;
  return (n + per_record - 1) / per_record * 24 + 8 * n;
}

flush_state::flush_state(flush_options cfg) : cfg_(cfg), rng_(cfg.seed) {}

void flush_state::journaled(uint64_t through) {
  journaled_through_ = std::max(journaled_through_, through);
}

bool flush_state::journal_has(const slot& s) const {
  return !cfg_.journal || s.latest <= journaled_through_;
}

const flush_state::slot* flush_state::first_storable() const {
  if (order_.empty() || none_storable_at_ == journaled_through_) return nullptr;
  for (const slot* s : order_)
    if (journal_has(*s)) return s;
  none_storable_at_ = journaled_through_;
  return nullptr;
}

numbered_writes flush_state::unstored() const {
  numbered_writes out;
  out.items.reserve(pending_.size() + in_flight_.size());
  out.numbers.reserve(pending_.size() + in_flight_.size());
  auto keep = [&out](const slot& s) {
    out.items.push_back(s.item);
    out.numbers.push_back(s.latest);
  };
  for (const auto& s : in_flight_)
    if (pending_.count(ref_of(s.item)) == 0) keep(s);
  for (const slot* s : order_)
    keep(*s);
  return out;
}

uint64_t flush_state::add(uint32_t shard, shard_write item, time_point now) {
  assert(item.val); // an empty buffer's hash is not its key's
  ++stats_.writes;
  auto number = ++accepted_;
  auto key = ref_of(item);
  auto i = pending_.find(key);
  if (i != pending_.end()) {
    // Only the latest value of a key goes into a batch; the key keeps its
    // place (and age) in line, so a hot key cannot starve.
    // `number` stays: a flush asked for before this write waits for the key.
    // The node's key views the new write's buffer before the old one goes.
    auto node = pending_.extract(i);
    node.key() = key;
    node.mapped().item = std::move(item);
    node.mapped().shard = shard;
    node.mapped().latest = number;
    pending_.insert(std::move(node));
    ++stats_.writes_coalesced;
    return 1;
  }
  auto added =
    pending_.emplace(key, slot{std::move(item), shard, number, number, to_ms(now)});
  order_.push_back(&added.first->second);
  return 0;
}

const shard_write* flush_state::newest(std::string_view key) const {
  auto ref = ref_of(key);
  if (auto i = pending_.find(ref); i != pending_.end()) return &i->second.item;
  if (auto i = in_flight_index_.find(ref); i != in_flight_index_.end())
    return &in_flight_[i->second].item;
  return nullptr;
}

std::optional<uint64_t> flush_state::oldest_ms() const {
  if (order_.empty()) return std::nullopt;
  if (sent_back_ == 0) return order_.front()->since_ms;
  // A write the store refused went to the back with its age: look at all.
  uint64_t oldest = order_.front()->since_ms;
  for (const slot* s : order_)
    oldest = std::min(oldest, s->since_ms);
  return oldest;
}

bool flush_state::asked_to_go() const {
  if (pending_.size() >= cfg_.batch_size) return true;
  if (flush_requested_through_ > 0) {
    // A flush was asked for: go while anything it covers is still dirty.
    for (const auto& [key, s] : pending_)
      if (s.number <= flush_requested_through_) return true;
    // None is, and none is in flight (`next_due` asks only then): the request
    // is met for good, since a write accepted later is numbered above it.
    // Forgotten, so that later writes do not scan every dirty key again.
    assert(in_flight_.empty());
    flush_requested_through_ = 0;
  }
  return false;
}

bool flush_state::should_flush(time_point now) const {
  auto due = next_due();
  return due && now >= *due;
}

std::optional<time_point> flush_state::next_due() const {
  // Nothing journaled yet: the journal's answer makes it due, not time.
  if (in_flight() || pending_.empty()) return std::nullopt;
  const auto* first = first_storable();
  if (first == nullptr) return std::nullopt;
  // A full batch or a flush asked for goes as soon as the backoff allows:
  // after a failure too, so a drain or `force_flush` retries at the backoff's
  // pace, not the interval's (which may be an hour).
  auto due = asked_to_go() ? backoff_until_ms_
                           : std::max(first->since_ms + as_ms(cfg_.flush_interval),
                                      backoff_until_ms_);
  return time_point{std::chrono::milliseconds{due}};
}

std::vector<shard_write> flush_state::take_batch(time_point) {
  // Counted when it goes, not when the last one failed: a failure at the
  // end of a drain is never tried again.
  if (consecutive_failures_ > 0) ++stats_.retries;
  auto n = std::min<size_t>(cfg_.batch_size, order_.size());
  in_flight_.clear();
  in_flight_index_.clear();
  in_flight_.reserve(n);
  std::vector<shard_write> batch;
  batch.reserve(n);
  // A key written again while the journal's append ran waits, in its place,
  // for the next append; the keys behind it go now. Waiting for it held up
  // the whole cache while one key was written faster than the journal synced.
  // A write of a failed batch goes in a batch no larger than its cap; one
  // that would make this batch larger waits, in its place, for the next.
  std::vector<slot*> waiting;
  while (batch.size() < n && !order_.empty()) {
    slot* s = order_.front();
    order_.pop_front();
    if (!journal_has(*s) || (s->cap != 0 && batch.size() >= s->cap)) {
      waiting.push_back(s);
      continue;
    }
    if (s->sent_back) {
      s->sent_back = false;
      --sent_back_;
    }
    if (s->cap != 0) n = std::min<size_t>(n, s->cap);
    auto node = pending_.extract(ref_of(s->item));
    in_flight_.push_back(std::move(node.mapped()));
    batch.push_back(in_flight_.back().item); // a handle: no copy of the bytes
  }
  order_.insert(order_.begin(), waiting.begin(), waiting.end());
  for (size_t i = 0; i < in_flight_.size(); ++i)
    in_flight_index_.emplace(ref_of(in_flight_[i].item), i);
  return batch;
}

flush_state::stored flush_state::batch_stored() {
  stored out;
  out.count = in_flight_.size();
  out.numbers.reserve(in_flight_.size());
  for (auto& s : in_flight_) {
    out.numbers.push_back(s.latest);
    auto i = std::find_if(out.by_shard.begin(), out.by_shard.end(),
                          [&](const auto& p) { return p.first == s.shard; });
    if (i == out.by_shard.end())
      i = out.by_shard.emplace(out.by_shard.end(), s.shard, stored_writes{});
    i->second.push_back(std::move(s.item));
  }
  ++stats_.batches;
  stats_.entries_flushed += out.count;
  consecutive_failures_ = 0;
  backoff_until_ms_ = 0;
  in_flight_index_.clear();
  in_flight_.clear();
  return out;
}

uint64_t flush_state::batch_failed(time_point now) {
  ++stats_.flush_failures;
  none_storable_at_.reset(); // they were journaled: storable again
  uint64_t superseded = 0;
  in_flight_index_.clear();
  // Back to the front of the line, in their old order. Where a newer write of
  // the key came meanwhile, it supersedes the failed one and inherits its age
  // and place, so the interval still bounds how long the key stays dirty.
  // Each goes in a batch of at most half this one's size from now on, so a
  // write the store refuses is found in a few halvings; one that failed
  // alone goes to the back, so that the writes behind it go (see the class
  // comment). A failure that passes (an outage) costs smaller batches for the
  // writes it met, and only those.
  bool alone = in_flight_.size() == 1;
  auto cap = static_cast<uint32_t>(alone ? 1 : (in_flight_.size() + 1) / 2);
  std::vector<slot*> front;
  front.reserve(in_flight_.size());
  for (auto& s : in_flight_) {
    auto key = ref_of(s.item); // views the buffer the moved slot keeps
    auto i = pending_.find(key);
    if (i == pending_.end()) {
      front.push_back(&pending_.emplace(key, std::move(s)).first->second);
    } else {
      front.push_back(&i->second);
      i->second.since_ms = std::min(i->second.since_ms, s.since_ms);
      i->second.number = std::min(i->second.number, s.number);
      // A write accepted while the batch was in flight: never sent back.
      order_.erase(std::find(order_.begin(), order_.end(), &i->second));
      ++superseded;
      ++stats_.writes_coalesced;
    }
    auto& c = front.back()->cap;
    c = c == 0 ? cap : std::min(c, cap);
  }
  if (alone) {
    front.front()->sent_back = true;
    ++sent_back_;
    order_.insert(order_.end(), front.begin(), front.end());
  } else {
    order_.insert(order_.begin(), front.begin(), front.end());
  }
  in_flight_.clear();
  ++consecutive_failures_;
  auto wait = equal_jitter(
    doubled_wait(cfg_.retry_base, cfg_.retry_max, consecutive_failures_), rng_);
  backoff_until_ms_ = to_ms(now) + std::max<uint64_t>(1, as_ms(wait));
  return superseded;
}

uint64_t flush_state::request_flush() {
  flush_requested_through_ = accepted_;
  return accepted_;
}

bool flush_state::stored_through(uint64_t ticket) const {
  for (const auto& [key, s] : pending_)
    if (s.number <= ticket) return false;
  for (const auto& s : in_flight_)
    if (s.number <= ticket) return false;
  return true;
}

write_stats flush_state::stats(time_point now) const {
  auto out = stats_;
  out.dirty = dirty();
  std::optional<uint64_t> oldest = oldest_ms();
  for (const auto& s : in_flight_)
    oldest = oldest ? std::min(*oldest, s.since_ms) : s.since_ms;
  auto now_ms = to_ms(now);
  out.oldest_dirty_ms = oldest && now_ms > *oldest ? now_ms - *oldest : 0;
  return out;
}

} // namespace karlton

#include "actors/peer_state.hpp"

#include <algorithm>
#include <utility>

namespace karlton {

peer_state::peer_state(member_info me, size_t batch_max, uint64_t seed)
  : me_(std::move(me)), batch_max_(std::max<size_t>(1, batch_max)), rng_(seed) {
  outgoing_.origin = me_.name;
  outgoing_.incarnation = me_.incarnation;
}

bool peer_state::enqueue(std::vector<invalidation> items) {
  if (outgoing_.items.empty()) {
    outgoing_.first_seq = next_seq_;
    outgoing_.items = std::move(items);
  } else {
    outgoing_.items.insert(outgoing_.items.end(), std::make_move_iterator(items.begin()),
                           std::make_move_iterator(items.end()));
  }
  next_seq_ = outgoing_.first_seq + outgoing_.items.size();
  return outgoing_.items.size() >= batch_max_;
}

invalidation_batch peer_state::take_batch() {
  invalidation_batch out;
  out.origin = me_.name;
  out.incarnation = me_.incarnation;
  out.first_seq = next_seq_;
  std::swap(out, outgoing_);
  outgoing_.first_seq = next_seq_;
  counters.broadcasts_sent += out.items.size();
  return out;
}

bool peer_state::expect(const std::string& origin, uint64_t incarnation,
                        uint64_t next_seq) {
  auto [i, added] = origins_.try_emplace(origin, origin_state{incarnation, next_seq});
  auto& o = i->second;
  if (added || o.incarnation != incarnation) {
    o = origin_state{incarnation, next_seq};
    return false;
  }
  bool gap = next_seq > o.expected;
  o.expected = std::max(o.expected, next_seq);
  if (gap) ++counters.gaps;
  return gap;
}

bool peer_state::receive(const invalidation_batch& b) {
  counters.invalidations_received += b.items.size();
  auto end = b.first_seq + b.items.size();
  auto [i, added] = origins_.try_emplace(b.origin, origin_state{b.incarnation, end});
  auto& o = i->second;
  if (added) return false; // no handshake seen: nothing to compare with
  if (o.incarnation != b.incarnation) {
    // A new run of the origin. Its numbers restart at 0; a first batch that
    // does not start there lost the ones before it.
    o = origin_state{b.incarnation, end};
    if (b.first_seq == 0) return false;
    ++counters.gaps;
    return true;
  }
  bool gap = b.first_seq > o.expected;
  o.expected = std::max(o.expected, end);
  if (gap) ++counters.gaps;
  return gap;
}

void peer_state::record_delay(int64_t issued_ns, int64_t applied_ns) {
  // `issued_ns` is another node's word (any int64 in a batch), so the
  // difference may not fit an int64: take it unsigned, where it always fits.
  uint64_t ns = applied_ns > issued_ns
                  ? static_cast<uint64_t>(applied_ns) - static_cast<uint64_t>(issued_ns)
                  : 0; // issued "after" it arrived: clocks disagree
  auto sample = static_cast<uint32_t>(std::min<uint64_t>(ns / 1000, UINT32_MAX));
  if (delays_us_.size() < peer_delay_samples)
    delays_us_.push_back(sample);
  else
    delays_us_[delays_next_] = sample;
  delays_next_ = (delays_next_ + 1) % peer_delay_samples;
}

peer_stats peer_state::stats(uint64_t members) const {
  auto out = counters;
  out.members = members;
  out.recent_delays_us = delays_us_;
  return out;
}

} // namespace karlton

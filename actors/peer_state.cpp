#include "actors/peer_state.hpp"

#include <algorithm>
#include <limits>
#include <utility>

#include "base/routing.hpp"
#include <karlton/messages/value.hpp>

namespace karlton {

peer_state::peer_state(member_info me, size_t batch_max, uint64_t max_unacked,
                       size_t max_items)
  : me_(std::move(me)), batch_max_(std::max<size_t>(1, batch_max)),
    max_unacked_(std::max<uint64_t>(1, max_unacked)),
    max_items_(std::max<size_t>(1, max_items)) {
  outgoing_.origin = me_.name;
  outgoing_.incarnation = me_.incarnation;
}

peer_state::send_when peer_state::enqueue(std::vector<invalidation> items) {
  if (outgoing_.items.empty()) {
    outgoing_.first_seq = next_seq_;
    outgoing_.items = std::move(items);
  } else {
    outgoing_.items.insert(outgoing_.items.end(), std::make_move_iterator(items.begin()),
                           std::make_move_iterator(items.end()));
  }
  next_seq_ = outgoing_.first_seq + outgoing_.items.size();
  if (in_flight_ == 0 || outgoing_.items.size() >= batch_max_) return send_when::now;
  if (timer_armed_) return send_when::later;
  timer_armed_ = true;
  return send_when::arm_timer;
}

invalidation_batch peer_state::take_batch() {
  invalidation_batch out;
  out.origin = me_.name;
  out.incarnation = me_.incarnation;
  out.first_seq = next_seq_;
  std::swap(out, outgoing_);
  outgoing_.first_seq = next_seq_;
  if (out.items.size() > max_items_) {
    // Receivers refuse more: the rest stays queued, numbered after these.
    auto cut = out.items.begin() + static_cast<std::ptrdiff_t>(max_items_);
    outgoing_.items.assign(std::make_move_iterator(cut),
                           std::make_move_iterator(out.items.end()));
    out.items.erase(cut, out.items.end());
    outgoing_.first_seq = out.first_seq + max_items_;
  }
  timer_armed_ = false; // what it ran for is on its way
  counters.broadcasts_sent += out.items.size();
  return out;
}

bool peer_state::expect(const std::string& origin, uint64_t incarnation,
                        uint64_t next_seq) {
  auto [i, added] = origins_.try_emplace(origin, origin_state{incarnation, next_seq});
  auto& o = i->second;
  if (added || o.incarnation != incarnation) {
    // A member met for the first time, or a new run of one, that numbered
    // invalidations already: they went to nodes other than us (or to none,
    // while it had no members) and we may hold what they removed.
    o = origin_state{incarnation, next_seq};
    if (next_seq > 0) ++counters.gaps;
    return next_seq > 0;
  }
  bool gap = next_seq > o.expected;
  o.expected = std::max(o.expected, next_seq);
  if (gap) ++counters.gaps;
  return gap;
}

bool peer_state::acceptable(const invalidation_batch& b) {
  if (b.items.size() <= max_items_ &&
      b.first_seq <= std::numeric_limits<uint64_t>::max() - b.items.size())
    return true;
  ++counters.bad_messages;
  return false;
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

bool peer_state::left(const std::string& origin, uint64_t incarnation,
                      uint64_t next_seq) {
  // The same check as the handshake's: the leave is the origin's last word
  // on where its numbering stands.
  return expect(origin, incarnation, next_seq);
}

void peer_state::drop_flow(std::map<std::string, flow>::iterator i) {
  in_flight_ -= i->second.in_flight;
  flows_.erase(i);
}

void peer_state::member_joined(const std::string& name) {
  if (auto i = flows_.find(name); i != flows_.end()) drop_flow(i);
  flows_.emplace(name, flow{++epochs_});
  lost_.erase(name);
}

void peer_state::member_lost(const std::string& name) {
  if (auto i = flows_.find(name); i != flows_.end()) drop_flow(i);
  lost_.insert(name);
}

void peer_state::member_left(const std::string& name) {
  if (auto i = flows_.find(name); i != flows_.end()) drop_flow(i);
  lost_.erase(name);
}

std::optional<peer_state::send_mark> peer_state::send_to(const std::string& name,
                                                         size_t n) {
  auto i = flows_.find(name);
  if (i == flows_.end()) i = flows_.emplace(name, flow{++epochs_}).first;
  auto& f = i->second;
  if (n > 0 && ((f.behind && !f.gap_shown) || f.sent - f.acked + n > max_unacked_)) {
    // Behind until the answer to a request sent after this one (which shows
    // it the gap, so it repairs before answering) says it applied all that
    // was sent: a synchronous call must not count on it before.
    f.behind = true;
    f.gap_shown = false;
    f.withheld_after = f.requests;
    ++counters.batches_withheld;
    return std::nullopt;
  }
  // An empty batch shows a member behind where the numbering stands: it
  // repairs before answering, and what follows needs no repair of its own.
  if (n == 0 && f.behind) f.gap_shown = true;
  f.sent += n;
  if (n > 0) {
    ++f.in_flight;
    ++in_flight_;
  }
  return send_mark{f.epoch, f.sent, n > 0, ++f.requests};
}

bool peer_state::answered(flow& f, send_mark mark) {
  if (mark.in_flight && f.in_flight > 0) {
    --f.in_flight;
    --in_flight_;
  }
  return in_flight_ == 0 && !outgoing_.items.empty();
}

bool peer_state::acknowledged(const std::string& name, send_mark mark) {
  auto i = flows_.find(name);
  // Lost, left or joined again meanwhile: its count started afresh.
  if (i == flows_.end() || i->second.epoch != mark.epoch) return false;
  auto& f = i->second;
  f.acked = std::max(f.acked, mark.through);
  // An answer to a request sent before the last withheld batch says nothing
  // of the gap that batch left.
  if (f.acked == f.sent && mark.request > f.withheld_after)
    f.behind = f.gap_shown = false;
  return answered(f, mark);
}

bool peer_state::not_acknowledged(const std::string& name, send_mark mark) {
  auto i = flows_.find(name);
  if (i == flows_.end() || i->second.epoch != mark.epoch) return false;
  i->second.behind = true;
  i->second.gap_shown = false; // slow again: batches wait for the next heartbeat
  return answered(i->second, mark);
}

bool peer_state::behind(const std::string& name) const {
  auto i = flows_.find(name);
  return i != flows_.end() && i->second.behind;
}

uint64_t peer_state::unacked(const std::string& name) const {
  auto i = flows_.find(name);
  return i == flows_.end() ? 0 : i->second.sent - i->second.acked;
}

peer_state::sync_plan peer_state::plan_sync(const std::vector<std::string>& members,
                                            size_t n) {
  sync_plan out;
  out.not_answered.assign(lost_.begin(), lost_.end());
  for (auto& name : members) {
    // Behind: not even an empty batch, which it would answer only after
    // everything it has not applied yet.
    auto mark = behind(name) ? std::nullopt : send_to(name, n);
    if (mark)
      out.ask.emplace_back(name, *mark);
    else
      out.not_answered.push_back(name);
  }
  return out;
}

peer_state::outgoing peer_state::send_batch(const std::vector<std::string>& members,
                                            bool even_empty) {
  outgoing out;
  out.batch = take_batch();
  auto n = out.batch.items.size();
  if ((n == 0 && !even_empty) || members.empty()) return out;
  if (n > 0) ++counters.batches_sent; // not heartbeats
  // Beats only once the queue is all taken: numbered after everything, so
  // no batch numbered before a beat follows it.
  bool beat = even_empty && outgoing_.items.empty();
  for (auto& name : members)
    if (auto mark = send_to(name, n))
      out.to.emplace_back(name, *mark);
    else if (beat)
      out.beat_to.emplace_back(name, *send_to(name, 0)); // never withheld
  if (!out.beat_to.empty())
    out.beat = invalidation_batch{
      out.batch.origin, out.batch.incarnation, out.batch.first_seq + n, {}};
  return out;
}

peer_state::sync_start peer_state::start_sync(const std::vector<std::string>& members) {
  sync_start out;
  out.out.batch = take_batch();
  auto plan = plan_sync(members, out.out.batch.items.size());
  if (!out.out.batch.items.empty() && !members.empty()) ++counters.batches_sent;
  if (plan.ask.empty()) {
    out.answer = finish_sync(std::move(plan.not_answered));
    return out;
  }
  out.id = next_sync_id_++;
  syncs_[out.id] = open_sync{plan.ask.size(), std::move(plan.not_answered)};
  out.out.to = std::move(plan.ask);
  return out;
}

std::optional<std::vector<std::string>>
peer_state::sync_answered(uint64_t id, const std::string& name, bool applied) {
  auto i = syncs_.find(id);
  if (i == syncs_.end()) return std::nullopt;
  auto& call = i->second;
  if (!applied) call.not_answered.push_back(name);
  if (--call.waiting > 0) return std::nullopt;
  auto missing = std::move(call.not_answered);
  syncs_.erase(i);
  return finish_sync(std::move(missing));
}

std::vector<std::string> peer_state::finish_sync(std::vector<std::string> not_answered) {
  if (!not_answered.empty()) ++counters.sync_timeouts;
  return not_answered;
}

std::optional<peer_state::time_point>
peer_state::renew_lease(time_point now, std::optional<time_point> oldest_echo,
                        uint64_t repairs_in_flight,
                        clock::time_point::duration lease_time) {
  if (repairs_in_flight > 0) return std::nullopt;
  if (!oldest_echo) return time_point::max();
  return std::min(*oldest_echo, now) + lease_time;
}

uint64_t peer_state::finish_apply(uint64_t n) {
  applied_early_.insert(n);
  while (!applied_early_.empty() && *applied_early_.begin() == applied_below_) {
    applied_early_.erase(applied_early_.begin());
    ++applied_below_;
  }
  return applied_below_;
}

std::optional<int64_t> peer_state::stalled_ms(time_point now, time_point last,
                                              clock::time_point::duration heartbeat,
                                              clock::time_point::duration lease_time) {
  if (last == time_point{} || now - last <= heartbeat + lease_time) return std::nullopt;
  return std::chrono::duration_cast<std::chrono::milliseconds>(now - last).count();
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
  counters.delay_histogram.record(sample);
}

peer_stats peer_state::stats(uint64_t members) const {
  auto out = counters;
  out.members = members;
  out.recent_delays_us = delays_us_;
  return out;
}

std::vector<apply_step>
route_batch(invalidation_batch& b,
            const std::function<size_t(const std::string&)>& shard_count, bool has_bus) {
  std::vector<apply_step> out;
  // Keys are gathered per shard, one request each; written keys apart.
  std::map<std::pair<std::string, size_t>, apply_step> keys, written;
  for (auto& x : b.items) {
    switch (x.kind) {
    case invalidation_kind::key:
    case invalidation_kind::written: {
      auto n = shard_count(x.cache);
      if (n == 0) break; // a cache this node does not have
      bool w = x.kind == invalidation_kind::written;
      auto where = std::pair{x.cache, shard_index(hash_key(x.name), n)};
      auto& step = (w ? written : keys)[where];
      step.keys.push_back(std::move(x.name));
      step.issued.push_back(x.issued_ns);
      break;
    }
    case invalidation_kind::clear: {
      if (shard_count(x.cache) == 0) break;
      apply_step step;
      step.to = apply_step::target::cache;
      step.cache = std::move(x.cache);
      step.issued = {x.issued_ns};
      out.push_back(std::move(step));
      break;
    }
    case invalidation_kind::tag:
    case invalidation_kind::event: {
      if (!has_bus) break;
      apply_step step;
      step.to = apply_step::target::bus;
      step.issued = {x.issued_ns};
      step.item = std::move(x);
      out.push_back(std::move(step));
      break;
    }
    }
  }
  for (auto* groups : {&keys, &written})
    for (auto& [where, step] : *groups) {
      step.cache = where.first;
      step.shard = where.second;
      step.written = groups == &written;
      out.push_back(std::move(step));
    }
  return out;
}

} // namespace karlton

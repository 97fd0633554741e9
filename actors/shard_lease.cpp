// The shard's side of the read leases and of repairs (rule 6): a lapse clears the
// shard, or under a repair-ttl caps every TTL (the cluster's then withholds hits
// until it holds again); a repair clears (`clear_here`) or caps (`cap_ttl`).
#include <algorithm>

#include "actors/shard_state.hpp"

namespace karlton {

uint64_t shard_state::cap_ttl(time_point now, caf::timespan limit) {
  // A lapse not acted on yet first: this cap must not hide it (`must_cap`).
  act_on_leases(now);
  return cap_from(now, now, limit);
}

uint64_t shard_state::cap_from(time_point from, time_point now, caf::timespan limit) {
  // A repair stands for invalidations that went missing, of keys we cannot
  // name: a load that started before it may have read what they replaced,
  // so none may install (rule 1), or it would live its full TTL past the cap.
  loads_.void_all();
  void_all_pending_puts();
  // A missed invalidation would have forgotten them too (`erase_here`).
  negatives_.clear();
  all_changed_ = cfg_.change_listener != nullptr; // which keys we cannot tell
  auto now_ms = to_ms(now);
  auto cap = cap_end_ms(from, now, limit);
  lease_watch_.cap_due = false; // all that is held expires by the cap
  lease_watch_.capped_at = limit;
  // Nor may stale-if-error serve, after the cap, what the missed writes replaced.
  unkept_through_ms_ = std::max(unkept_through_ms_, cap);
  uint64_t n = 0;
  for (entry_id id = 0; id < table_.id_limit(); ++id) {
    auto& e = table_.at(id);
    if (!e.live()) continue;
    // Kept for stale-if-error: a missed invalidation would have removed it.
    if (expired(e, now_ms)) {
      remove(id, removal_cause::expired);
      continue;
    }
    if (e.expires() && e.expiry_ms() <= cap) continue;
    bool before = e.expires();
    table_.set_expiry(id, cap);
    track_expiry(id, before);
    ++n;
  }
  return n;
}

read_leases::look shard_state::act_on_leases(time_point now) {
  if (!cfg_.lease) return {};
  auto look = cfg_.lease.look_at(now);
  if (look.lapse)
    lease_lapsed(now, look);
  else
    lease_watch_.saw_valid(now);
  return look;
}

void shard_state::lease_lapsed(time_point now, const read_leases::look& leases) {
  // Tracking clients hold copies: withheld, they drop them, once a lapse.
  bool withheld_anew = lease_watch_.saw_lapse(leases);
  if (withheld_anew) all_changed_ = cfg_.change_listener != nullptr;
  if (leases.caps()) {
    // As the repair this lapse stands for would do under repair-ttl: what we hold
    // expires within the cap, and the cache stays warm. Hits go on under the
    // change feed's lease (staleness bounded by design); the cluster's withholds
    // them until it holds again (rule 7: its repair is not done yet), and its
    // renewal needs no clear. Installs and retimes while it lasts are capped too
    // (`lapse_capped`): changes may go unheard for as long as it lasts. The cap
    // counts from when the lease ended (or was last seen valid, if later: a lapse
    // to the clock's epoch), not from now: a shard that finds the lapse late (a
    // frozen process, an idle shard) must not add the time it did not look to
    // the staleness it allows.
    if (lease_watch_.must_cap(*leases.lapse)) {
      if (table_.size() > 0) ++stats_.lease_caps;
      cap_from(leases.began(lease_watch_.seen_valid), now, *leases.lapse);
    }
    // All of it capped: direct readers serve through the lapse, each entry
    // until its capped expiry, instead of asking the shard for every hit.
    if (leases.serves()) reads_->mark_capped(leases.until);
    return;
  }
  if (table_.size() > 0) {
    clear_here();
    ++stats_.lease_clears;
  } else if (!negatives_.empty()) {
    negatives_.clear(); // a remembered load failure is a cached answer too
  }
}

uint64_t shard_state::lapse_capped(uint64_t expiry_ms, time_point now, time_point read_at,
                                   const read_leases::look& leases) {
  if (!leases.caps()) {
    // Put while every lease holds (or one that clears lapsed): the next lapse that
    // caps must cap it too, even if the lease lapses to the same end again.
    lease_watch_.cap_due = true;
    reads_->unmark(); // before it goes in: a reader that sees it sees this
    if (!leases.lapse) lease_watch_.saw_valid(now);
    return expiry_ms;
  }
  // A lapse not acted on yet is, before this goes in: its cap counts from when
  // the lease ended, and would cut short what goes in now if made later.
  lease_lapsed(now, leases);
  // From when the value was read: a change it missed since may go unheard.
  auto bound = cap_end_ms(read_at, now, *leases.lapse);
  // Nor may stale-if-error keep it past the cap (as `cap_from`).
  unkept_through_ms_ = std::max(unkept_through_ms_, bound);
  return std::min(expiry_ms, bound);
}

uint64_t shard_state::served_until(const entry& e, time_point now, uint64_t now_ms,
                                   const read_leases::look& leases) const {
  if (!leases.serves() || expired(e, now_ms))
    return 0; // a lapse that clears (the next read does) or withholds hits
  auto expiry = e.expires() ? e.expiry_ms() : entry::never;
  if (leases.caps() && lease_watch_.must_cap(*leases.lapse))
    expiry = std::min(
      expiry, cap_end_ms(leases.began(lease_watch_.seen_valid), now, *leases.lapse));
  return expiry;
}

std::optional<uint64_t> shard_state::lease_deadline_ms() const noexcept {
  if (!cfg_.lease || table_.size() == 0) return std::nullopt;
  // The earliest end of a lease not yet found lapsed there.
  auto until = INT64_MAX;
  auto leases = cfg_.lease.each();
  for (size_t i = 0; i < leases.size(); ++i) {
    auto end = leases[i] ? leases[i]->until_ticks() : INT64_MAX;
    if (end != lease_watch_.lapsed_ends[i]) until = std::min(until, end);
  }
  if (until == INT64_MAX) return std::nullopt;
  // valid() holds through `until` itself: the first whole ms after it.
  auto ms =
    std::chrono::duration_cast<std::chrono::milliseconds>(time_point::duration{until});
  return ms.count() < 0 ? 0 : static_cast<uint64_t>(ms.count()) + 1;
}

} // namespace karlton

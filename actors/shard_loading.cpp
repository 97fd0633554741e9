// shard_state, part two: read-through loading with single flight, version
// stamps, refresh-ahead, stale-if-error and early refresh (XFetch or naive).
#include <algorithm>
#include <cmath>
#include <limits>

#include "actors/shard_state.hpp"
#include <karlton/messages/errors.hpp>

namespace karlton {

shard_state::~shard_state() {
  stopping_ = true; // a failed load's waiter must not start more work
  // Readers miss from now on and ask the shard, which is gone: they learn
  // it. What the table holds is freed once the readers still in it left.
  reads_->close();
  table_.clear();
  table_.retire_unlinked();
  auto load_stopped =
    make_error(errc::shut_down, "the shard stopped before the load finished");
  for (auto& gone : loads_.take_all())
    for (auto& waiter : gone.waiters)
      waiter(caf::expected<value>{load_stopped});
  // A write may still reach the store (the flusher drains at shutdown); the
  // caller hears that it was not confirmed.
  auto why =
    make_error(errc::shut_down, "the shard stopped before the write was confirmed or "
                                "the call waiting its turn ran");
  awaiting_.for_each([&](pending_write& op) { op.waiter(why); });
  for (auto& op : line_)
    op.waiter(why);
  for (auto& [key, jobs] : computes_waiting_)
    for (auto& job : jobs)
      fail_compute(job, why);
}

double shard_state::uniform() {
  if (cfg_.random) return cfg_.random();
  // 53 random bits scaled into (0, 1]: ln(U) below is then always finite.
  return (static_cast<double>(rng_() >> 11) + 1.0) * 0x1.0p-53;
}

void shard_state::forget_load_facts(entry_id id) {
  if (load_facts_.empty() && stale_.empty()) return;
  load_facts_.erase(id);
  stale_.erase(id);
}

std::optional<value> shard_state::stale_fallback(std::string_view key, uint64_t now_ms) {
  if (stale_window_ms_ == 0) return std::nullopt;
  auto id = table_.find(key, static_cast<uint32_t>(hash_key(key)));
  if (id == no_entry) return std::nullopt;
  const auto& e = table_.at(id);
  if (!expired(e, now_ms) || !retained(e, now_ms)) return std::nullopt;
  return e.val;
}

bool shard_state::start_load(std::string_view key, std::optional<load_waiter>& w,
                             bool refresh, time_point now) {
  if (refresh ? !loads_.has_idle_slot() : !loads_.has_room()) {
    ++stats_.loads_refused;
    return false;
  }
  auto deadline =
    cfg_.load_timeout > caf::timespan::zero()
      ? to_ms(now) +
          static_cast<uint64_t>(
            std::chrono::ceil<std::chrono::milliseconds>(cfg_.load_timeout).count())
      : UINT64_MAX;
  loads_.start(key, std::move(w), refresh, deadline, to_ms(now));
  ++stats_.loads;
  return true;
}

void shard_state::expire_loads(time_point now, uint64_t max_work) {
  step_now_ = now; // for computes that waited
  for (auto& gone : loads_.expire(to_ms(now), max_work)) {
    ++stats_.load_timeouts;
    // Its late answer finds no load and is dropped; the next miss of the
    // key starts a new load. Nothing is remembered as a failure: the loader
    // did not say the key failed, only that it is slow.
    auto why = make_error(errc::timeout, "the load of '" + gone.key +
                                           "' did not finish within its load-timeout");
    for (auto& waiter : gone.waiters)
      waiter(caf::expected<value>{why});
  }
}

// The guide's probabilistic expiration: the older the entry, the likelier a
// read treats it as expired.
bool shard_state::expires_early(const entry& e, uint64_t now_ms) {
  if (cfg_.early_refresh != early_refresh_mode::naive || !e.expires()) return false;
  auto age = age_ms(e, now_ms);
  auto born = now_ms - age;
  if (e.expiry_ms() <= born) return true;
  auto ttl = static_cast<double>(e.expiry_ms() - born);
  auto p = 1.0 - std::exp(-cfg_.beta * static_cast<double>(age) / ttl);
  return uniform() < p;
}

// On a hit: starts one background reload if the value is old enough
// (refresh-ahead) or if XFetch draws it, unless a load is already in flight
// or the last one failed less than `negative_ttl` ago.
void shard_state::maybe_refresh(std::string_view key, entry_id id, const entry& e,
                                time_point now) {
  auto now_ms = to_ms(now);
  auto facts = load_facts_.find(id);
  bool refresh = false;
  if (cfg_.refresh_after > caf::timespan::zero()) {
    auto age = age_ms(e, now_ms);
    refresh = std::chrono::milliseconds{age} >= cfg_.refresh_after &&
              (facts == load_facts_.end() || now_ms >= facts->second.next_refresh_ms);
  }
  bool early = false;
  if (!refresh && cfg_.early_refresh == early_refresh_mode::xfetch && e.expires()) {
    auto now_us = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch())
        .count());
    // A delta of 0 never fires; otherwise at most k draws per delta (see
    // xfetch_draws_per_delta), whatever the read rate.
    if (facts != load_facts_.end() && facts->second.delta_us > 0 &&
        now_us >= facts->second.next_draw_us) {
      auto delta_us = facts->second.delta_us;
      facts->second.next_draw_us =
        now_us + std::max<uint64_t>(delta_us / xfetch_draws_per_delta, 1);
      // -ln(U) >= 0, so the test fires more often as expiry nears, and more
      // often for values that take long to load.
      auto lead_ms =
        -static_cast<double>(delta_us) / 1000.0 * cfg_.beta * std::log(uniform());
      early = static_cast<double>(now_ms) + lead_ms >= static_cast<double>(e.expiry_ms());
    }
  }
  if (!refresh && !early) return;
  if (writer_lost_) return;          // nobody would answer the reload
  if (loads_.in_flight(key)) return; // coalesced with the load already running
  if (negatives_.find(key, now_ms) != nullptr) return; // failed just now: wait
  std::optional<load_waiter> none;
  if (!start_load(key, none, true, now)) return; // the loader is behind: skip it
  if (refresh)
    ++stats_.refreshes;
  else
    ++stats_.early_refreshes;
}

std::optional<caf::expected<value>>
shard_state::get_or_load(std::string_view key, uint32_t hash, time_point now,
                         load_waiter w, bool trust_cached, bool counted) {
  if (!cfg_.read_through)
    return caf::expected<value>{make_error(
      errc::invalid_option, "get_or_load needs a loader; this cache has none")};
  // A lapsed lease empties the shard, or withholds what it holds: a miss then.
  auto leases = act_on_leases(now);
  auto now_ms = to_ms(now);
  auto id = leases.serves() && trust_cached ? table_.find(key, hash) : no_entry;
  if (id != no_entry && !expired(table_.at(id), now_ms)) {
    if (expires_early(table_.at(id), now_ms)) {
      ++stats_.early_expirations;
      remove(id, removal_cause::expired);
    } else {
      const auto& e = table_.at(id);
      if (stale_.count(id) > 0) ++stats_.stale_served;
      maybe_refresh(key, id, e, now);
      return caf::expected<value>{get(key, hash, now, leases)};
    }
  }
  // Counts the miss, reclaims an expired entry (not for a caller that does not
  // trust the cache: it would count the entry as a hit; an expired one left
  // here is replaced by the load, and counted as expired then).
  if (trust_cached && counted) get(key, hash, now, leases);
  // A remembered failure is a cached answer too; to a caller that does not
  // trust the cache, only one that fails it (a remembered not_found may be as
  // stale as a value, a store failure fails it either way).
  auto failed = leases.serves() ? negatives_.find(key, now_ms) : nullptr;
  if (failed && !trust_cached && *failed == errc::not_found) failed = nullptr;
  if (failed) {
    ++stats_.negative_hits;
    // A remembered not_found is an answer: nothing stale is served for it,
    // nor to a caller that does not trust the cache.
    if (auto old = *failed == errc::not_found || !trust_cached
                     ? std::nullopt
                     : stale_fallback(key, now_ms)) {
      ++stats_.stale_served;
      return caf::expected<value>{*old};
    }
    return caf::expected<value>{*failed};
  }
  // Write-back loads go to the flusher: once it is gone nothing would answer.
  if (writer_lost_) return caf::expected<value>{writer_lost_};
  if (loads_.join(key, std::move(w))) {
    ++stats_.coalesced;
    return std::nullopt;
  }
  std::optional<load_waiter> waiter{std::move(w)};
  if (!start_load(key, waiter, false, now))
    return caf::expected<value>{make_error(
      errc::overloaded, "the shard has " + std::to_string(loads_.out()) +
                          " loads out to its loader (at most " +
                          std::to_string(cfg_.max_loads_out) + ") and " +
                          std::to_string(loads_.queued()) + " queued (at most " +
                          std::to_string(cfg_.max_loads_queued) +
                          "): the loader is slow or hung; back off and retry")};
  return std::nullopt;
}

void shard_state::complete_load(const std::string& key, uint64_t id,
                                caf::expected<std::string> result, caf::timespan took,
                                time_point now) {
  step_now_ = now; // for computes that waited for this load
  // A lapse not acted on yet voids this load too if it caps (it may have read
  // what a missed change replaced), as a read would have first.
  auto leases = act_on_leases(now);
  auto done = loads_.finish(key, id);
  if (!done) return; // not ours (or already failed at shutdown)
  // Read no earlier than the load started (`took` is the loader's, and leaves out
  // the queue and the mailbox): under a lapse that caps, the cap counts from then.
  auto read_at = time_point{std::chrono::milliseconds{done->started_ms}};
  // Its answer may be stale, value or not_found: computes that waited load again.
  step_current_ = done->installable && !leases.past_cap(read_at, now);
  ++stats_.loads_finished;
  stats_.load_time_ns += static_cast<uint64_t>(std::max(took.count(), int64_t{0}));
  if (!result) {
    ++stats_.load_failures;
    // A voided load's failure is as stale as its value would be (rule 1):
    // it neither marks, nor is remembered, nor is answered with the old value.
    if (done->installable) {
      auto now_ms = to_ms(now);
      // Not an error but an answer: the store has no such key. A value the
      // refresh was to replace, or one kept for stale-if-error, would
      // contradict it (RFC 5861 serves stale on errors, not on a 404), and a
      // compute would count on it.
      if (result.error() == errc::not_found) {
        // What the shard holds of the key, live or kept, goes.
        if (auto entry_id = table_.find(key, static_cast<uint32_t>(hash_key(key)));
            entry_id != no_entry)
          remove_changed(entry_id, now_ms);
      } else if (done->refresh) {
        // Stale-if-error: the old value stays until its own expiry. The next
        // refresh waits `refresh_after` (XFetch's draws are paced already):
        // each hit started one, against a store that was failing.
        if (auto entry_id = table_.find(key, static_cast<uint32_t>(hash_key(key)));
            entry_id != no_entry) {
          stale_.insert(entry_id);
          if (cfg_.refresh_after > caf::timespan::zero())
            load_facts_[entry_id].next_refresh_ms =
              now_ms +
              static_cast<uint64_t>(
                std::chrono::ceil<std::chrono::milliseconds>(cfg_.refresh_after).count());
        }
      }
      // Under a lapse that caps, remembered no longer than the cap: a missed
      // invalidation would have forgotten it.
      if (negatives_.enabled())
        negatives_.remember(key, result.error(), now_ms,
                            lapse_capped(UINT64_MAX, now, read_at, leases));
      if (!done->waiters.empty()) {
        if (auto old = stale_fallback(key, now_ms)) {
          stats_.stale_served += done->waiters.size();
          for (auto& waiter : done->waiters)
            waiter(caf::expected<value>{*old});
          return;
        }
      }
    }
    for (auto& waiter : done->waiters)
      waiter(caf::expected<value>{result.error()});
    return;
  }
  auto v = value::make(key, *result);
  // Slower than a lapse's cap, it would go in expired, and could evict live entries.
  if (!step_current_) {
    ++stats_.loads_voided;
  } else if (admit(v, ttl::cache_default(), now, leases,
                   // A refresh reloads the same entry: what it depends on
                   // stays, or an emit after it would miss it (rule 1).
                   done->refresh, read_at)) { // a load changes no data: not broadcast
    // Too large to cache: the store holds a newer value than the one cached
    // (a refresh's), which must not be served on, nor start a reload a hit.
    if (auto entry_id = table_.find(key, v.table_hash()); entry_id != no_entry)
      remove_changed(entry_id, to_ms(now));
  } else {
    auto entry_id = table_.find(key, v.table_hash());
    // In microseconds: a loader faster than 1 ms (a local database) still
    // refreshes early; a load of over 71 minutes counts as 71.
    auto us = std::chrono::duration_cast<std::chrono::microseconds>(took).count();
    if (entry_id != no_entry)
      load_facts_[entry_id].delta_us = static_cast<uint32_t>(
        std::clamp<int64_t>(us, 0, std::numeric_limits<uint32_t>::max()));
  }
  // Waiters get the value even when it was voided (their reads overlapped the
  // write) or too large to cache (the loader produced it all the same).
  for (auto& waiter : done->waiters)
    waiter(caf::expected<value>{v});
}

} // namespace karlton

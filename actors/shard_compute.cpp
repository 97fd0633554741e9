// shard_state: atomic read-modify-write of one key (compute and the calls
// built on it) and set_ttl. One step on the owning shard, under every write
// mode: wait behind the key's pending writes, load a miss in a read-through
// cache, run the function once, then write its result like a put or erase.

#include <algorithm>
#include <deque>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include "actors/shard_state.hpp"
#include <karlton/messages/errors.hpp>

namespace karlton {

struct shard_detail::compute_job {
  std::string key;
  compute_function fn;
  shard_state::compute_waiter waiter;
  bool loaded = false;     // loaded once already: absent now means absent
  bool blind = false;      // a queued put or erase: the value it finds does not matter
  bool holds_key = false;  // loading: later writes and computes of the key wait
  bool load_again = false; // the load found a value the table lost, or none, maybe stale
  bool reloaded = false;   // loaded a second time: absent now means absent
  // Under a lapse that caps, the expiry of the cached entry it did not trust:
  // the reloaded entry takes it if sooner than its own (UINT64_MAX: none).
  uint64_t distrusted_expiry_ms = UINT64_MAX;
  bool distrusted = false; // did not trust the cached entry: only what it loads
  // Its last load left the table current (was installed, or found no row).
  bool load_current = false;
  dependencies deps = {}; // a queued put's (`blind`)
  // Not a compute: set_ttl or a clear's drop, run in its turn (`wait_turn`).
  std::function<void(time_point)> turn = {};
  bool drop = false; // that turn is a clear's drop
};

void shard_state::fail_compute(const compute_ptr& job, const caf::error& why) {
  job->waiter(caf::expected<computed>{why});
}

std::optional<caf::expected<computed>> shard_state::compute(std::string_view key,
                                                            time_point now,
                                                            compute_function fn,
                                                            compute_waiter w) {
  if (key.size() > cfg_.max_key_bytes)
    return caf::expected<computed>{check_sizes(cfg_, key.size(), 0)};
  auto job = std::make_shared<compute_job>(
    compute_job{std::string{key}, std::move(fn), std::move(w)});
  return run_compute(job, now, false);
}

void shard_state::resume(const compute_ptr& job, time_point now, bool from_queue) {
  if (auto r = run_compute(job, now, from_queue)) job->waiter(std::move(*r));
}

std::optional<caf::expected<computed>>
shard_state::run_compute(const compute_ptr& job, time_point now, bool from_queue) {
  if (job->turn) {
    job->turn(now);
    return std::nullopt;
  }
  const auto& key = job->key;
  // 1. Behind the key's writes the store has not answered (write-through) or
  // a compute loading it (every mode: under write-back `awaiting_keys_`
  // counts only those), or in line with the writes parked under max-dirty
  // (write-back): a compute must see every write that came before it.
  if (!from_queue &&
      (awaiting_keys_.count(key) > 0 || computes_waiting_.count(key) > 0)) {
    computes_waiting_[key].push_back(job);
    return std::nullopt;
  }
  if (cfg_.writes == write_mode::write_back && !from_queue && !line_.empty()) {
    if (auto refused = submit_write(in_line(job), now)) // too many parked
      return caf::expected<computed>{std::move(refused->error())};
    return std::nullopt;
  }
  // 2. The live entry, if any. Under a lapsed lease there is none a compute may
  // trust: each look clears the shard (computing from "absent" would write
  // f(nothing) over what the store or another node holds), or withholds what it
  // holds. A put or erase that waited in line needs none: it finds the key absent
  // (an erase answers "not cached", as `contains` does) and still goes in.
  auto leases = act_on_leases(now);
  bool serves = leases.serves();
  if (!serves && !job->blind)
    return caf::expected<computed>{make_error(
      errc::overloaded, "the read lease lapsed (the node lost a cluster member, or its "
                        "change feed): a compute needs the key's current value and the "
                        "cache holds none it may trust; retry once the lease holds")};
  // Under a lapse that caps (the change feed's, with repair-ttl) hits go on,
  // but what the cache holds may be stale: a change may have gone unheard. A
  // compute whose write mode stores its result builds on what its own load
  // installed (or a load of the key it joined), not on the cached entry; a
  // voided load leaves that entry in place, so it loads again. Before, it
  // stored f(stale) over another writer's row. Without a write mode its result
  // stays in the cache, capped, as a put's would.
  auto hash = static_cast<uint32_t>(hash_key(key));
  auto now_ms = to_ms(now);
  auto id = serves ? table_.find(key, hash) : no_entry;
  bool distrusts = serves && !job->blind && cfg_.writes != write_mode::none &&
                   // once loaded, it distrusts again only if that load was voided
                   (job->loaded ? job->distrusted && !job->load_current : leases.caps());
  if (distrusts) {
    // Only a shard built by hand has no loader: a fed cache loads from its store.
    if (!cfg_.read_through)
      return caf::expected<computed>{make_error(
        errc::overloaded, "the change feed's read lease lapsed and the cache has no "
                          "loader: the cached value may be stale; retry")};
    job->distrusted = true;
    job->distrusted_expiry_ms =
      id != no_entry && !expired(table_.at(id), now_ms) && table_.at(id).expires()
        ? table_.at(id).expiry_ms()
        : UINT64_MAX;
    id = no_entry;
  }
  if (id != no_entry && expired(table_.at(id), now_ms)) {
    if (!retained(table_.at(id), now_ms)) {
      remove(id, removal_cause::expired);
    } else if (job->loaded && !job->blind) {
      // Still the expired value kept for stale-if-error, after the load: the
      // reload failed, and the load answered with that value. Computing from
      // "absent" would start a counter over (and store it); the compute
      // fails with the load's error instead.
      if (auto failed = negatives_.find(key, now_ms))
        return caf::expected<computed>{*failed};
      return caf::expected<computed>{make_error(
        errc::store_failure, "the key expired and could not be reloaded; a compute "
                             "needs its current value, not the stale one")};
    }
    id = no_entry;
  }
  // 3. A miss in a read-through cache loads first (joining the key's load in
  // flight), then starts over: the table says what the load left. A load that
  // found a value the table then lost (voided by an invalidation, evicted at
  // once, or not cached: slower than a lapse's cap), or found none but may be
  // stale (voided, or slower than the cap), loads once more, then the compute
  // gives up: computing from "absent" would write f(nothing) over the store's
  // row. (A put or erase in line never loads: it is `loaded` from the start.)
  if (job->load_again && id == no_entry && job->reloaded)
    return caf::expected<computed>{
      make_error(errc::overloaded,
                 "the key was loaded twice and neither load left a value the compute "
                 "could run on (invalidated or evicted at once, or slower than the "
                 "change feed's repair-ttl cap); retry")};
  bool again = job->loaded && std::exchange(job->load_again, false) && !job->reloaded;
  if (id == no_entry && cfg_.read_through && (!job->loaded || again)) {
    job->reloaded = job->loaded;
    job->loaded = true;
    // Not the load's value: the table's, which a write during the load
    // (rule 1) or not_found leave as they should.
    auto w = [this, job, hash](caf::expected<value> r) {
      bool held = std::exchange(job->holds_key, false);
      if (stopping_) // the shard's destructor fails the loads: nothing runs now
        return fail_compute(job, r ? make_error(errc::shut_down, "the shard stopped")
                                   : r.error());
      if (held) release_key(job->key);
      // Only `complete_load` answers with a value or not_found: `step_current_` is its.
      if ((r && *r) || !step_current_) job->load_again = true;
      job->load_current = step_current_;
      // The reloaded entry takes the distrusted one's expiry if sooner, so the
      // key lives no longer for the reload, whatever the compute then does.
      if (step_current_ && job->distrusted_expiry_ms != UINT64_MAX)
        if (auto loaded_id = table_.find(job->key, hash);
            loaded_id != no_entry &&
            !(table_.at(loaded_id).expires() &&
              table_.at(loaded_id).expiry_ms() <= job->distrusted_expiry_ms)) {
          bool had = table_.at(loaded_id).expires();
          table_.set_expiry(loaded_id, job->distrusted_expiry_ms);
          track_expiry(loaded_id, had);
        }
      // Too large to cache, it is not in the table to compute on: say so, not
      // "lost", which a retry could mend (a result that size could not go in either).
      auto refused =
        r && *r ? check_sizes(cfg_, job->key.size(), (*r).bytes().size()) : caf::error{};
      if (refused)
        fail_compute(job, refused);
      else if (!r && r.error() != errc::not_found)
        fail_compute(job, r.error());
      else
        resume(job, step_now_, held); // it holds its place: not behind later writes
      if (held) run_waiting_computes(job->key, step_now_);
    };
    auto r = get_or_load(key, hash, now, w, !job->distrusted, false);
    if (!r) {
      // The key's later computes and writes wait until this one has run: a
      // put that went in meanwhile was run over by it (compute(f), put(P2)
      // stored f(P2)).
      if (!job->holds_key) {
        job->holds_key = true;
        ++awaiting_keys_[key];
        computes_loading_.insert(key);
        wait_parked_behind(key);
      }
      return std::nullopt;
    }
    if (!*r && r->error() != errc::not_found)
      return caf::expected<computed>{std::move(r->error())};
    return run_compute(job, now, true);
  }
  return apply_compute(job, now, id);
}

std::optional<caf::expected<computed>>
shard_state::apply_compute(const compute_ptr& job, time_point now, entry_id id) {
  value current = id != no_entry ? table_.at(id).val : value{};
  // 4. Exactly once, and never at the cost of the shard.
  compute_result result;
  try {
    result = job->fn(current);
  } catch (const compute_refusal& refused) {
    // One thrown without an error would fail the call with none.
    return caf::expected<computed>{
      refused.error ? refused.error
                    : make_error(errc::compute_failed,
                                 "the compute function refused without an error")};
  } catch (const std::exception& e) {
    return caf::expected<computed>{make_error(
      errc::compute_failed, std::string{"the compute function threw: "} + e.what())};
  } catch (...) {
    return caf::expected<computed>{
      make_error(errc::compute_failed, "the compute function threw")};
  }
  // 5. Applied like a put or an erase, under the cache's write mode.
  switch (result.what) {
  case compute_result::action::keep:
    return caf::expected<computed>{computed{current, current}};
  case compute_result::action::erase: {
    auto w = [job, current](caf::expected<bool> r) {
      if (!r) return fail_compute(job, r.error());
      job->waiter(computed{current, value{}});
    };
    auto r = write_erase(job->key, now, w, true);
    if (!r) return std::nullopt;
    if (!*r) return caf::expected<computed>{std::move(r->error())};
    return caf::expected<computed>{computed{current, value{}}};
  }
  case compute_result::action::put:
    break;
  }
  if (job->blind && cfg_.writes == write_mode::none) {
    // A caller's put that waited: its own dependencies, not the entry's.
    auto v = value::make(job->key, result.bytes);
    auto t = result.lifetime ? *result.lifetime : ttl::cache_default();
    if (auto err = put(v, t, now, job->deps))
      return caf::expected<computed>{std::move(err)};
    return caf::expected<computed>{computed{current, std::move(v)}};
  }
  ttl lifetime = ttl::cache_default();
  uint64_t kept_expiry_ms = 0;
  if (result.lifetime) {
    lifetime = *result.lifetime;
  } else if (current) { // the entry keeps its expiry
    const auto& e = table_.at(id);
    if (e.expires()) kept_expiry_ms = e.expiry_ms();
    lifetime = !e.expires() ? ttl::never() : expiring_at(kept_expiry_ms, to_ms(now));
  }
  auto after = value::make(job->key, result.bytes);
  auto w = [job, current, after](caf::expected<bool> r) {
    if (!r) return fail_compute(job, r.error());
    job->waiter(computed{current, after});
  };
  // Kept as a time, not a TTL: a write the store or the room holds back
  // would otherwise push the expiry later by as long as it waited.
  // A caller's put that waited (`blind`) sets its own links; a compute keeps the entry's.
  auto r = write(after, lifetime, now, w, true, kept_expiry_ms,
                 job->blind ? &job->deps : nullptr);
  if (!r) return std::nullopt;
  if (!*r) return caf::expected<computed>{std::move(r->error())};
  return caf::expected<computed>{computed{current, after}};
}

bool shard_state::behind_computes(std::string_view key) const {
  if (computes_waiting_.empty() && computes_loading_.empty())
    return false; // the usual case
  std::string k{key};
  return computes_waiting_.count(k) > 0 || computes_loading_.count(k) > 0;
}

void shard_state::release_key(const std::string& key) {
  computes_loading_.erase(key);
  auto k = awaiting_keys_.find(key);
  if (k != awaiting_keys_.end() && --k->second == 0) awaiting_keys_.erase(k);
}

std::optional<caf::expected<bool>> shard_state::write(value v, ttl t, time_point now,
                                                      const dependencies& deps,
                                                      write_waiter w) {
  if (cfg_.writes != write_mode::none) { // the links go in with the value
    if (auto err = check_links(v, deps)) return caf::expected<bool>{std::move(err)};
    return write(std::move(v), t, now, std::move(w), false, 0, &deps);
  }
  // Behind a compute that loads the key: before, the put went in at once and
  // the compute then ran on it (compute(f), put(P) left f(P)).
  if (v && behind_computes(v.key())) {
    pending_write op;
    op.key = std::string{v.key()};
    op.val = std::move(v);
    op.lifetime = t;
    op.waiter = std::move(w);
    if (!deps.empty()) op.links = std::make_unique<dependencies>(deps);
    queue_behind_computes(std::move(op));
    return std::nullopt;
  }
  if (auto err = put(std::move(v), t, now, deps))
    return caf::expected<bool>{std::move(err)};
  return caf::expected<bool>{true};
}

pending_write shard_state::in_line(const compute_ptr& job) {
  pending_write op;
  op.key = job->key;
  op.waiter = [job](caf::expected<bool> r) {
    if (!r) fail_compute(job, r.error());
  };
  op.compute = job;
  op.turn = static_cast<bool>(job->turn);
  op.drop = job->drop;
  return op;
}

void shard_state::queue_behind_computes(pending_write op) {
  // Before, a put of a key whose compute waited behind a store write went to
  // the store first, and the compute then ran on it: compute(f), put(P2)
  // stored f(P2), not P2.
  auto bytes =
    op.val ? std::optional<std::string>{std::string{op.val.bytes()}} : std::nullopt;
  compute_function fn = [bytes = std::move(bytes), t = op.lifetime](const value&) {
    return bytes ? compute_result::put(*bytes, t) : compute_result::erase();
  };
  compute_waiter answer = [w = std::move(op.waiter)](caf::expected<computed> r) {
    if (!r) return w(caf::expected<bool>{r.error()});
    w(caf::expected<bool>{static_cast<bool>(r->before)});
  };
  auto job =
    std::make_shared<compute_job>(compute_job{op.key, std::move(fn), std::move(answer)});
  job->loaded = true; // a put or erase never loads
  job->blind = true;
  if (op.links) job->deps = std::move(*op.links);
  computes_waiting_[op.key].push_back(std::move(job));
}

void shard_state::wait_parked_behind(const std::string& key) {
  // Write-back: the key's writes and computes parked for room came after
  // this compute, which loads on its turn. They wait behind it, ahead of
  // any that come now; left in line, they would go in while it loads (its
  // load voided, the compute then ran on them) or behind a newer write.
  // Only as far as the key's last op in the line (usually just behind it).
  line_.take_key(key, [&](pending_write op) {
    if (op.compute)
      computes_waiting_[key].push_back(std::move(op.compute));
    else
      queue_behind_computes(std::move(op));
  });
}

void shard_state::run_waiting_computes(const std::string& key, time_point now) {
  auto i = computes_waiting_.find(key);
  while (i != computes_waiting_.end() && awaiting_keys_.count(key) == 0) {
    if (i->second.empty()) {
      computes_waiting_.erase(i);
      return;
    }
    if (cfg_.writes == write_mode::write_back && !line_.empty()) {
      // All join the line, in order, behind the writes parked for room (the
      // key's last among them: run now, they would not see it), then the
      // line moves once. One at a time, a turn taken between two of them
      // could start a load that puts those in line behind those still here.
      // (Past either bound if need be: they are calls already taken.)
      auto jobs = std::move(i->second);
      computes_waiting_.erase(i);
      for (auto& job : jobs)
        join_line(in_line(job), now);
      retry_parked(now);
      return;
    }
    auto job = std::move(i->second.front());
    i->second.pop_front();
    resume(job, now, true); // its write, if any, makes the rest wait again
    i = computes_waiting_.find(key);
  }
}

bool shard_state::key_ops_wait(std::string_view key) const {
  if (awaiting_keys_.empty() && computes_waiting_.empty() && !line_.holds_any_key())
    return false; // the usual case
  std::string k{key};
  return awaiting_keys_.count(k) > 0 || computes_waiting_.count(k) > 0 || line_.holds(k);
}

caf::error shard_state::wait_turn(const std::string& key,
                                  std::function<void(time_point)> run,
                                  std::function<void(const caf::error&)> failed,
                                  time_point now) {
  // Where the key's ops wait: behind a store write or a compute, else (write-back) in
  // the line parked for room, where it needs no room of its own (`retry_parked`) and
  // counts against the bound on turns, not on writes (`turns_full`).
  bool parks = awaiting_keys_.count(key) == 0 && computes_waiting_.count(key) == 0;
  if (parks && turns_full())
    return make_error(
      errc::overloaded,
      "max-dirty writes are pending and this shard already parks the "
      "most set_ttl calls and clear drops it holds behind them; slow down");
  auto job = make_turn(key, std::move(run), std::move(failed));
  if (parks)
    join_line(in_line(job), now);
  else
    computes_waiting_[key].push_back(std::move(job));
  return caf::none;
}

shard_state::compute_ptr
shard_state::make_turn(const std::string& key, std::function<void(time_point)> run,
                       std::function<void(const caf::error&)> failed, bool drop) {
  auto answer = [failed = std::move(failed)](caf::expected<computed> r) {
    if (!r) failed(r.error()); // the shard stopped, say: it never ran
  };
  auto job = std::make_shared<compute_job>(compute_job{key, {}, std::move(answer)});
  job->turn = std::move(run);
  job->drop = drop;
  return job;
}

std::optional<caf::expected<remaining_ttl>>
shard_state::set_ttl(std::string_view key, std::optional<caf::timespan> left,
                     time_point now, ttl_waiter w) {
  // The new expiry as a time, fixed now: a wait for its turn must not lengthen it.
  uint64_t expiry_ms = entry::never;
  if (left)
    expiry_ms =
      left->count() <= 0
        ? 0
        : std::min(entry::never,
                   to_ms(now) +
                     static_cast<uint64_t>(
                       std::chrono::ceil<std::chrono::milliseconds>(*left).count()));
  // Before, it went in at once: a put still waiting then came in with its own
  // TTL (put(v), EXPIRE left v with no expiry).
  if (!key_ops_wait(key))
    return caf::expected<remaining_ttl>{retime(key, expiry_ms, now)};
  auto run = [this, k = std::string{key}, expiry_ms, w](time_point t) {
    w(retime(k, expiry_ms, t));
  };
  auto failed = [w](const caf::error& e) { w(e); };
  if (auto err = wait_turn(std::string{key}, std::move(run), std::move(failed), now))
    return caf::expected<remaining_ttl>{std::move(err)};
  return std::nullopt;
}

remaining_ttl shard_state::retime(std::string_view key, uint64_t expiry_ms,
                                  time_point now) {
  // A lapse first, as for a read: it may cap or clear this entry.
  auto leases = act_on_leases(now);
  auto before = ttl_of(key, now, leases);
  if (before.state == remaining_ttl::missing) return before;
  auto id = table_.find(key, static_cast<uint32_t>(hash_key(key)));
  collect_change(key);
  if (expiry_ms <= to_ms(now)) {
    // Redis's EXPIRE 0 is a delete (an invalidation, not an expiry, in the
    // stats, as in Redis's): a refresh that read the key before must not
    // bring it back. One whose expiry passed while it waited expired.
    loads_.void_key(key);
    remove(id, expiry_ms == 0 ? removal_cause::explicit_erase : removal_cause::expired);
    return before;
  }
  auto capped = lapse_capped(expiry_ms, now, now, leases); // may cap it: then `had`
  bool had = table_.at(id).expires();
  // Under a lapse that caps, a retime shortens a TTL, never lengthens it: the
  // value is no fresher for it, and the cap of its expiry counts from its read.
  if (had && leases.caps()) capped = std::min(capped, table_.at(id).expiry_ms());
  table_.set_expiry(id, capped); // entry::never: 34 years
  track_expiry(id, had);
  return before;
}

void shard_state::drop_in_turn() {
  // Each key whose line does not end with a drop already (an earlier clear's) gets one,
  // right behind its last op: repeated clears add none, and a key is not readable
  // while other keys' writes ahead of the drop wait for room.
  auto drop = [this](const std::string& key) {
    auto run = [this, key](time_point t) { erase_here(key, t, false); };
    return make_turn(
      key, std::move(run), [](const caf::error&) {}, true);
  };
  for (auto& [key, jobs] : computes_waiting_)
    if (jobs.empty() || !jobs.back()->drop) jobs.push_back(drop(key));
  for (const auto& key : computes_loading_)
    if (computes_waiting_.count(key) == 0) computes_waiting_[key].push_back(drop(key));
  line_.follow_each_key([&](const pending_write& last) {
    auto op = in_line(drop(last.key));
    op.deadline_ms = last.deadline_ms; // needs no room: never fails on it
    return op;
  });
}

} // namespace karlton

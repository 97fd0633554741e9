// shard_state: writes under write-through and write-back.
//
// Write-through: the write goes to the store first (through the shard
// actor's store writer); it is cached when the store took it, so the cache
// never holds what the store refused. Write-back: the write is cached and
// marked dirty at once, handed to the flusher, and acknowledged when the
// flusher took it (durably, with the journal). A dirty entry leaves the
// eviction policy until the store has it (rule 3); the flusher answers the
// loads of keys it holds, so a read never falls through to an older value.

#include <algorithm>

#include "actors/shard_state.hpp"
#include <karlton/messages/errors.hpp>

namespace karlton {

namespace {

// Writes parked for room per shard, at most, and as many set_ttl calls parked
// with them; more fail with `overloaded` at once, so callers that never wait
// (callbacks) cannot grow memory unbounded.
constexpr size_t max_parked = 65536;

// What a pending write installs with now: its TTL, or what is left of the
// expiry a compute kept.
template <class PendingWrite>
ttl lifetime_at(const PendingWrite& op, uint64_t now_ms) {
  return op.kept_expiry_ms == 0 ? op.lifetime : expiring_at(op.kept_expiry_ms, now_ms);
}

} // namespace

std::optional<caf::expected<bool>> shard_state::write(value v, ttl t, time_point now,
                                                      write_waiter w, bool from_compute,
                                                      uint64_t kept_expiry_ms,
                                                      const dependencies* links) {
  if (cfg_.writes == write_mode::none) {
    // A caller's put is one without dependencies: it may wait for a compute.
    if (!from_compute) return write(std::move(v), t, now, dependencies{}, std::move(w));
    auto key = cfg_.distributed ? std::string{v.key()} : std::string{};
    if (auto err = admit(std::move(v), t, now, cfg_.lease.look_at(now), from_compute))
      return caf::expected<bool>{std::move(err)};
    note_changed(key, false);
    return caf::expected<bool>{true};
  }
  if (!v)
    return caf::expected<bool>{make_error(errc::invalid_option, "put of an empty value")};
  if (auto err = check_sizes(cfg_, v.key().size(), v.bytes().size())) {
    ++stats_.rejected;
    return caf::expected<bool>{std::move(err)};
  }
  if (!t.valid())
    return caf::expected<bool>{make_error(errc::invalid_option, "ttl must be positive")};
  if (auto err = check_room(v)) return caf::expected<bool>{std::move(err)};
  pending_write op;
  op.key = std::string{v.key()};
  op.val = std::move(v);
  op.lifetime = t;
  op.waiter = std::move(w);
  op.keep_links = from_compute && !links;
  if (links && !links->empty()) op.links = std::make_unique<dependencies>(*links);
  op.kept_expiry_ms = kept_expiry_ms;
  if (!from_compute && behind_computes(op.key)) {
    queue_behind_computes(std::move(op));
    return std::nullopt;
  }
  // A parked compute's own write goes first in line, where the compute was.
  return submit_write(std::move(op), now, computing_parked_);
}

std::optional<caf::expected<bool>> shard_state::write_erase(std::string_view key,
                                                            time_point now,
                                                            write_waiter w,
                                                            bool from_compute) {
  bool queued = !from_compute && behind_computes(key);
  if (cfg_.writes == write_mode::none && !queued)
    return caf::expected<bool>{erase(key, now)};
  // A parked compute's erase goes first in line too (GETDEL before a later SET).
  pending_write op;
  op.key = std::string{key};
  op.waiter = std::move(w);
  if (queued) {
    queue_behind_computes(std::move(op));
    return std::nullopt;
  }
  return submit_write(std::move(op), now, computing_parked_);
}

std::optional<caf::expected<bool>>
shard_state::submit_write(pending_write op, time_point now, bool at_front) {
  if (cfg_.writes == write_mode::write_through) {
    auto seq = ++write_seq_;
    ++awaiting_keys_[op.key]; // computes of the key wait behind it
    op.sent = now;
    if (op.val && op.links && !op.links->on.empty() && cfg_.depended) {
      if (!held_links_) held_links_ = std::make_shared<held_links>(cfg_.depended);
      op.held = std::make_unique<held_names>(held_links_, op.links->on);
    }
    // The put's own buffer; `install` copies it if the store still holds it.
    outbox_.push_back(op.val ? shard_write{op.val, false, seq}
                             : shard_write::erase_of(op.key, seq));
    awaiting_.add(seq, std::move(op));
    return std::nullopt;
  }
  // Write-back. In line behind parked writes, so a key's writes keep their order.
  if (writer_lost_) return caf::expected<bool>{writer_lost_};
  if (at_front) { // retry_parked takes it next, with the compute's unit
    join_line(std::move(op), now, true);
    parked_compute_wrote_ = true;
    return std::nullopt;
  }
  if (line_.empty() && !op.compute && cfg_.budget->try_acquire()) {
    accept_dirty(std::move(op), now);
    return std::nullopt;
  }
  if (line_full())
    return caf::expected<bool>{make_error(
      errc::overloaded, "max-dirty writes are pending and this shard already holds " +
                          std::to_string(max_parked) + " more; slow down")};
  join_line(std::move(op), now);
  retry_parked(now); // registers as waiting, then looks once more
  return std::nullopt;
}

// Writes and turns (set_ttl calls, a clear's drops) have bounds of their own,
// so neither can fill the line and get the other refused. A clear's drops
// pass the bound on turns if need be: there is at most one behind each op.
bool shard_state::line_full() const noexcept {
  return line_.writes() >= max_parked;
}

bool shard_state::turns_full() const noexcept {
  return line_.turns() >= max_parked;
}

void shard_state::join_line(pending_write op, time_point now, bool front) {
  op.deadline_ms = to_ms(now) + ceil_ms(cfg_.room_wait);
  line_.join(std::move(op), front);
}

void shard_state::accept_dirty(pending_write op, time_point now) {
  auto seq = ++write_seq_;
  if (!op.val) {
    op.was_cached = erase(op.key, now);
    outbox_.push_back(shard_write::erase_of(op.key, seq));
  } else {
    auto now_ms = to_ms(now);
    note_changed(op.key, false);
    auto id = install(std::move(op.val), lifetime_at(op, now_ms), now,
                      cfg_.lease.look_at(now), op.keep_links);
    // The table's buffer, installed first: `install` writes its birth time,
    // which only an unshared buffer may take.
    const value& installed = table_.at(id).val;
    outbox_.push_back(shard_write{installed, false, seq});
    // Out of the policy before the bound is enforced: a dirty entry must not
    // be the victim, not even of its own insertion.
    if (in_policy(id)) policy_->on_remove(id, weight_of(installed));
    dirty_[id] = seq;
    if (op.links) link(op.key, *op.links);
    op.links.reset(); // linked: the write only waits for the flusher now
    enforce_bound();
  }
  awaiting_.add(seq, std::move(op));
}

bool shard_state::writes_pending() const noexcept {
  // Write-back too: a write parked for room (or behind a loading compute) may
  // still go in and reach the flusher, which stores it at shutdown; its caller
  // must not hear shut_down for it. Bounded by its room wait (and load timeout).
  return !awaiting_.empty() || !line_.empty() || !computes_loading_.empty() ||
         !computes_waiting_.empty();
}

void shard_state::void_pending_puts(std::string_view key) {
  if (cfg_.writes != write_mode::write_through || awaiting_keys_.empty() ||
      awaiting_keys_.count(std::string{key}) == 0)
    return; // write-back installed its puts already
  awaiting_.for_each([&](pending_write& op) {
    if (op.val && op.key == key) op.voided = true;
  });
}

void shard_state::void_all_pending_puts() {
  if (cfg_.writes != write_mode::write_through) return; // write-back installed already
  awaiting_.for_each([](pending_write& op) {
    if (op.val) op.voided = true;
  });
}

void shard_state::writes_done(const std::vector<uint64_t>& seqs, const caf::error& err,
                              time_point now) {
  for (auto seq : seqs) {
    // A lapse voids the puts the store has, as a read would have first. One look
    // a write: the waiters and computes of the last may have looked since.
    auto leases = act_on_leases(now);
    auto taken = awaiting_.take(seq);
    if (!taken) continue;
    auto& op = *taken;
    if (err) {
      op.waiter(err);
    } else if (cfg_.writes == write_mode::write_back) {
      op.waiter(op.was_cached);
    } else if (!op.val) { // write-through erase: the store first, now the cache
      op.waiter(erase(op.key, now, leases));
    } else if (op.voided || leases.past_cap(op.sent, now)) {
      // Stored, but another write's invalidation (or a repair) came while the
      // store had it: which one the store kept last is not known here. So no
      // copy may stay: not this node's older value, nor a load that read the
      // store before this commit, nor other nodes' (which heard of the other
      // write only). Nor, under a lapse that caps, one the store took longer
      // than the cap to commit: it would go in expired, and could evict live ones.
      note_changed(op.key, false);
      erase_here(op.key, now, false); // a put does not cascade
      op.waiter(caf::expected<bool>{true});
    } else {
      auto key = cfg_.distributed ? op.key : std::string{};
      auto e = admit(std::move(op.val), lifetime_at(op, to_ms(now)), now, leases,
                     op.keep_links, op.sent);
      if (!e && op.links) {
        link(op.key, *op.links);
        enforce_bound(); // the names count too
      }
      if (!e) note_changed(key, false);
      op.waiter(e ? caf::expected<bool>{std::move(e)} : caf::expected<bool>{true});
    }
    if (cfg_.writes != write_mode::write_through) continue;
    // The key's last write done: the computes waiting behind it run now.
    auto k = awaiting_keys_.find(op.key);
    if (k != awaiting_keys_.end() && --k->second == 0) {
      awaiting_keys_.erase(k);
      run_waiting_computes(op.key, now);
    }
  }
}

void shard_state::mark_stored(const stored_writes& writes) {
  for (const auto& w : writes) {
    auto id = table_.find(w.key(), w.val.table_hash());
    if (id == no_entry) continue;
    auto i = dirty_.find(id);
    if (i == dirty_.end() || i->second != w.seq) continue; // written again since
    dirty_.erase(i);
    if (policy_) policy_->on_insert(id, weight_of(table_.at(id).val));
  }
  enforce_bound(); // it may have been over by its dirty entries
}

void shard_state::retry_parked(time_point now) {
  auto now_ms = to_ms(now);
  bool registered = false;
  // set_ttl and a clear's drop write nothing: in their turn they need no room.
  auto no_room_needed = [this] { return !line_.empty() && line_.front().turn; };
  while (!line_.empty()) {
    if (no_room_needed()) {
      resume(line_.leave().compute, now, true);
      continue;
    }
    if (cfg_.budget->try_acquire()) {
      auto op = line_.leave();
      if (!op.compute) {
        accept_dirty(std::move(op), now);
        continue;
      }
      // A compute's turn: it runs holding the unit, which its write, if any
      // (first in line now), takes over: given back and taken again, it
      // would take the waiting mark of a shard that found no room meanwhile.
      computing_parked_ = true;
      resume(op.compute, now, true);
      computing_parked_ = false;
      if (std::exchange(parked_compute_wrote_, false)) {
        accept_dirty(line_.leave(), now);
        continue;
      }
      // It wrote nothing: its unit goes back. If that takes a waiting mark
      // (maybe this shard's own: it marks again), the flusher wakes the
      // shards, as for room it made.
      if (cfg_.budget->release(1)) {
        room_returned_ = true;
        registered = false;
      }
      continue;
    }
    if (!registered) { // see dirty_budget::mark_waiting
      cfg_.budget->mark_waiting();
      registered = true;
      continue;
    }
    // Still full: fail what waited too long (deadlines are in order).
    while (!line_.empty() && line_.front().deadline_ms <= now_ms && !no_room_needed())
      line_.leave().waiter(make_error(
        errc::overloaded, "max-dirty writes stayed pending for the whole room wait; the "
                          "write was not applied (raise max-dirty or slow down)"));
    if (!no_room_needed()) return;
  }
}

void shard_state::writer_lost(caf::error why, time_point now) {
  writer_lost_ = std::move(why);
  // It was the loader too (it answers the keys it holds writes for): the
  // loads it had will never be answered. Taken first, then failed: a waiter
  // may start work of its own.
  step_now_ = now; // for computes that waited
  for (auto& gone : loads_.take_all()) {
    ++stats_.load_failures;
    for (auto& waiter : gone.waiters)
      waiter(caf::expected<value>{writer_lost_});
  }
  // With the journal, writes it took but had not confirmed: its answer may
  // never come (a request it held dies with it unanswered).
  writes_done(awaiting_.numbers(), writer_lost_, now);
  while (!line_.empty()) {
    auto op = line_.leave();
    if (op.compute) // a turn, or a compute: it runs, and a write of it fails
      resume(op.compute, now, true);
    else
      op.waiter(writer_lost_);
  }
}

std::optional<time_point> shard_state::next_parked_deadline() const {
  if (line_.empty()) return std::nullopt;
  return time_point{std::chrono::milliseconds{line_.front().deadline_ms}};
}

} // namespace karlton

#include "actors/shard_state.hpp"

#include <algorithm>
#include <string>

#include <karlton/messages/errors.hpp>

namespace karlton {

namespace {

constexpr auto later = std::greater<std::pair<uint64_t, entry_id>>{};

} // namespace

caf::error check_sizes(const shard_options& cfg, size_t key_size, size_t value_size) {
  if (key_size > cfg.max_key_bytes)
    return make_error(errc::key_too_large, "key of " + std::to_string(key_size) +
                                             " bytes exceeds max-key-bytes (" +
                                             std::to_string(cfg.max_key_bytes) +
                                             "); nothing was stored");
  if (value_size > cfg.max_value_bytes)
    return make_error(errc::value_too_large, "value of " + std::to_string(value_size) +
                                               " bytes exceeds max-value-bytes (" +
                                               std::to_string(cfg.max_value_bytes) +
                                               "); nothing was stored");
  // Admitted, such an entry would evict every other one and then itself.
  if (cfg.max_bytes > 0 && key_size + value_size > cfg.max_bytes)
    return make_error(errc::value_too_large,
                      "entry of " + std::to_string(key_size + value_size) +
                        " bytes (key + value) exceeds a shard's share of max-bytes (" +
                        std::to_string(cfg.max_bytes) + "); nothing was stored");
  return caf::none;
}

shard_state::shard_state(shard_options cfg)
  : cfg_(std::move(cfg)), weigh_bytes_(cfg_.max_bytes > 0),
    reads_(cfg_.reads ? cfg_.reads : std::make_shared<read_side>(nullptr, cfg_.lease)),
    table_(reads_->table),
    loads_(load_table::limits{cfg_.max_loads_out, cfg_.max_loads_queued}),
    negatives_(ceil_ms(cfg_.negative_ttl)),
    stale_window_ms_(ceil_ms(cfg_.stale_if_error)), rng_(cfg_.seed) {
  if (cfg_.depended) watch_depended_names();
  auto capacity = weigh_bytes_ ? cfg_.max_bytes : cfg_.max_entries;
  if (capacity > 0)
    policy_ = eviction_policy::make(cfg_.policy, table_, capacity, weigh_bytes_);
}

value shard_state::get(std::string_view key, time_point now) {
  return get(key, static_cast<uint32_t>(hash_key(key)), now);
}

value shard_state::get(std::string_view key, uint32_t hash, time_point now) {
  return get(key, hash, now, act_on_leases(now));
}

value shard_state::get(std::string_view key, uint32_t hash, time_point now,
                       const read_leases::look& leases) {
  if (!leases.serves()) {
    ++stats_.misses;
    return {};
  }
  auto id = table_.find(key, hash);
  if (id == no_entry) {
    ++stats_.misses;
    return {};
  }
  auto& e = table_.at(id);
  auto now_ms = to_ms(now);
  if (expired(e, now_ms)) {
    // Kept for stale-if-error, then reclaimed by the timer.
    if (!retained(e, now_ms)) remove(id, removal_cause::expired);
    ++stats_.misses;
    return {};
  }
  ++stats_.hits;
  stats_.hit_age.record(age_ms(e, now_ms));
  if (in_policy(id)) policy_->on_hit(id);
  return e.val;
}

bool shard_state::learn_direct_hits() {
  return take_direct_hits() || !reads_->stop_draining();
}

bool shard_state::take_direct_hits() {
  return reads_->drain(
    [&](entry_id id) {
      if (in_policy(id)) policy_->on_hit(id);
    },
    [&](uint32_t age_ms) { stats_.hit_age.record(age_ms); });
}

caf::error shard_state::put(value v, ttl t, time_point now) {
  auto key = cfg_.distributed ? std::string{v.key()} : std::string{};
  auto err = admit(std::move(v), t, now, cfg_.lease.look_at(now));
  if (!err) note_changed(key, false); // a put does not cascade, here or elsewhere
  return err;
}

caf::error shard_state::admit(value v, ttl t, time_point now,
                              const read_leases::look& leases, bool keep_links,
                              std::optional<time_point> read_at) {
  if (!v) return make_error(errc::invalid_option, "put of an empty value");
  if (auto err = check_sizes(cfg_, v.key().size(), v.bytes().size())) {
    ++stats_.rejected;
    return err;
  }
  if (!t.valid()) return make_error(errc::invalid_option, "ttl must be positive");
  if (auto err = check_room(v)) return err;
  install(std::move(v), t, now, leases, keep_links, read_at);
  enforce_bound();
  return caf::none;
}

caf::error shard_state::check_room(const value& v) {
  if (!table_.full() || table_.find(v.key(), v.table_hash()) != no_entry)
    return caf::none;
  ++stats_.rejected;
  return make_error(errc::overloaded,
                    "this shard holds " + std::to_string(table_.size()) +
                      " entries, the most its 32-bit entry ids allow; set max-entries "
                      "or more shards");
}

entry_id shard_state::install(value v, ttl t, time_point now,
                              const read_leases::look& leases, bool keep_links,
                              std::optional<time_point> read_at) {
  if (t.is_default()) t = cfg_.default_ttl;
  auto now_ms = to_ms(now);
  auto expiry = lapse_capped(t.is_never() ? entry::never : now_ms + ceil_ms(t.duration()),
                             now, read_at.value_or(now), leases);
  // The buffer's header is ours only if nobody else holds it (a handle kept by
  // an actor that sent it, or the same value put into two caches).
  if (!v.unique()) v = value::make(v.key(), v.bytes());
  v.set_born_ms(static_cast<uint32_t>(now_ms));
  ++stats_.puts;
  loads_.void_key(v.key()); // a load that started before this write must not install
  negatives_.forget(v.key());
  auto id = table_.find(v.key(), v.table_hash());
  if (id != no_entry) {
    forget_load_facts(id);
    auto& e = table_.at(id);
    auto old_w = weight_of(e.val);
    auto new_w = weight_of(v);
    stats_.bytes += v.charge();
    stats_.bytes -= e.val.charge();
    bool before = e.expires();
    // One that expired and waits for its timer, or is kept for stale-if-error,
    // counts as expired (as Caffeine reports it): it was no longer served, and
    // `expired` would otherwise depend on whether the timer came first.
    auto cause = expired(e, now_ms) ? removal_cause::expired : removal_cause::replaced;
    if (cause == removal_cause::expired) {
      ++stats_.expired;
      if (!keep_links) cascade_through(id); // as the timer's removal would
    }
    auto old = table_.replace(id, std::move(v), expiry);
    track_expiry(id, before);
    if (in_policy(id)) policy_->on_update(id, old_w, new_w);
    if (!keep_links)
      forget_deps(id); // the new value says its own (a compute's keeps them)
    if (cfg_.on_removal) cfg_.on_removal(old, cause);
  } else {
    stats_.bytes += v.charge();
    auto w = weight_of(v);
    id = table_.insert(std::move(v), expiry);
    track_expiry(id, false);
    if (policy_) policy_->on_insert(id, w);
  }
  collect_change(table_.at(id).val); // a handle, not a copy of the bytes
  return id;
}

void shard_state::track_expiry(entry_id id, bool had_expiry) {
  const auto& e = table_.at(id);
  if (had_expiry) --expiring_entries_;
  if (!e.expires()) return;
  ++expiring_entries_;
  push_deadlines(e, id);
  // Kept below twice what the live entries need (two each under stale-if-error).
  if (deadlines_.size() > 2 * deadlines_per_entry() * expiring_entries_ + 1024)
    compact_deadlines();
}

void shard_state::push_deadlines(const entry& e, entry_id id) {
  deadlines_.emplace_back(reclaim_ms(e), id);
  std::push_heap(deadlines_.begin(), deadlines_.end(), later);
  // Under stale-if-error the entry stays past its expiry; trackers hear of
  // the expiry when it happens (`remove_expired`).
  if (stale_window_ms_ == 0) return;
  deadlines_.emplace_back(e.expiry_ms(), id);
  std::push_heap(deadlines_.begin(), deadlines_.end(), later);
}

void shard_state::compact_deadlines() {
  deadlines_.clear();
  for (entry_id id = 0; id < table_.id_limit(); ++id) {
    const auto& e = table_.at(id);
    if (!e.live() || !e.expires()) continue;
    deadlines_.emplace_back(reclaim_ms(e), id);
    // An expiry already told is told again: a tracker that has not read
    // the key since ignores it.
    if (stale_window_ms_ > 0) deadlines_.emplace_back(e.expiry_ms(), id);
  }
  std::make_heap(deadlines_.begin(), deadlines_.end(), later);
}

bool shard_state::retained(const entry& e, uint64_t now_ms) const noexcept {
  return stale_window_ms_ > 0 && e.expires() && e.expiry_ms() > unkept_through_ms_ &&
         now_ms <= e.expiry_ms() + stale_window_ms_;
}

uint64_t shard_state::reclaim_ms(const entry& e) const noexcept {
  return e.expiry_ms() + (stale_window_ms_ > 0 ? stale_window_ms_ + 1 : 0);
}

void shard_state::enforce_bound() {
  if (!policy_) return;
  auto over = [this] {
    return (cfg_.max_entries > 0 && table_.size() > cfg_.max_entries) ||
           (cfg_.max_bytes > 0 && stats_.bytes > cfg_.max_bytes);
  };
  // Dirty entries are out of the policy's lists (rule 3: never evicted before
  // the store has them), so a shard may exceed its bound by its dirty
  // entries, which `max-dirty` bounds.
  while (over() && table_.size() > dirty_.size())
    remove(policy_->victim(), removal_cause::evicted);
}

void shard_state::cascade_through(entry_id id) {
  // A middle link of a chain (A on key B, B on event E) that expires or is
  // evicted: its links go with it, and an emit of E would no longer reach A.
  // So its dependents go too, as after an erase; an entry that links on
  // nothing passes no cascade through.
  auto key = table_.at(id).val.key();
  if (deps_.entries() > 0 && deps_.has(id) && cfg_.depended &&
      cfg_.depended->may_contain(key))
    cascades_out_.emplace_back(key);
}

void shard_state::remove(entry_id id, removal_cause cause, bool cascaded) {
  auto& e = table_.at(id);
  if (!cascaded) cascade_through(id);
  forget_load_facts(id);
  if (in_policy(id)) policy_->on_remove(id, weight_of(e.val));
  if (!dirty_.empty())
    dirty_.erase(id); // the flusher still has the write; reads go there
  // A refresh in flight would bring a linked entry back without its links,
  // and an emit before it ends would find nothing to void (rule 1).
  if (deps_.entries() > 0 && deps_.has(id)) loads_.void_key(e.val.key());
  forget_deps(id); // no index outlives it
  if (e.expires()) --expiring_entries_;
  stats_.bytes -= e.val.charge();
  switch (cause) {
  case removal_cause::expired:
    ++stats_.expired;
    break;
  case removal_cause::evicted:
    ++stats_.evictions;
    break;
  case removal_cause::explicit_erase:
    ++stats_.invalidations;
    break;
  case removal_cause::replaced:
    break;
  }
  auto old = table_.remove(id);
  if (cfg_.on_removal) cfg_.on_removal(old, cause);
  collect_change(std::move(old));
}

bool shard_state::erase(std::string_view key, time_point now) {
  return erase(key, now, act_on_leases(now)); // a lapse first, as for a read
}

bool shard_state::erase(std::string_view key, time_point now,
                        const read_leases::look& leases) {
  note_changed(key, true); // cached here or not: other nodes may hold it
  if (!leases.lapse) return erase_here(key, now); // true if live: served
  // Answered as `contains` would have: one a lapse withholds was not cached
  // for the caller (Redis's DEL, after EXISTS said 0).
  bool served = contains(key, now, leases);
  erase_here(key, now);
  return served;
}

uint64_t shard_state::invalidate(const std::vector<std::string>& keys, time_point now,
                                 bool cascade) {
  uint64_t n = 0;
  for (const auto& k : keys) {
    void_pending_puts(k);
    n += erase_here(k, now, cascade) ? 1 : 0;
  }
  return n;
}

bool shard_state::erase_here(std::string_view key, time_point now, bool cascade) {
  loads_.void_key(key);
  negatives_.forget(key);
  // By name, before looking the key up: its dependents may outlive it.
  if (cascade && cfg_.depended && cfg_.depended->may_contain(key))
    cascades_out_.emplace_back(key);
  auto id = table_.find(key, static_cast<uint32_t>(hash_key(key)));
  if (id == no_entry) {
    // Not cached here, yet a client may hold what it read of it elsewhere
    // (through another node, or as a miss it must now re-read).
    collect_change(key);
    return false;
  }
  return remove_changed(id, to_ms(now), true);
}

bool shard_state::remove_changed(entry_id id, uint64_t now_ms, bool cascaded) {
  // Past its expiry it was no longer served: not an invalidation.
  bool live = !expired(table_.at(id), now_ms);
  remove(id, live ? removal_cause::explicit_erase : removal_cause::expired, cascaded);
  return live;
}

bool shard_state::contains(std::string_view key, time_point now) const {
  return contains(key, now, cfg_.lease.look_at(now));
}

bool shard_state::contains(std::string_view key, time_point now,
                           const read_leases::look& leases) const {
  auto id = table_.find(key, static_cast<uint32_t>(hash_key(key)));
  auto now_ms = to_ms(now);
  return id != no_entry && served_until(table_.at(id), now, now_ms, leases) > now_ms;
}

remaining_ttl shard_state::ttl_of(std::string_view key, time_point now) const {
  return ttl_of(key, now, cfg_.lease.look_at(now));
}

remaining_ttl shard_state::ttl_of(std::string_view key, time_point now,
                                  const read_leases::look& leases) const {
  remaining_ttl out;
  auto id = table_.find(key, static_cast<uint32_t>(hash_key(key)));
  if (id == no_entry) return out;
  auto now_ms = to_ms(now);
  auto expiry = served_until(table_.at(id), now, now_ms, leases);
  if (expiry <= now_ms) return out; // as `contains`
  if (expiry == entry::never) {
    out.state = remaining_ttl::never_expires;
  } else {
    out.state = remaining_ttl::expires;
    out.left = std::chrono::milliseconds{expiry - now_ms};
  }
  return out;
}

uint64_t shard_state::clear() {
  cleared_out_ = cfg_.distributed;
  // A put the store holds (write-through) is voided, as by `clear_here`, unless a
  // compute waits behind it: that one must see it (put 5, increment, clear stored 1
  // over the 5, before). It goes in, and then the key is dropped in its turn, as is
  // everything else callers queued for a key before the clear (before, a put waiting
  // behind a compute that loads survived the clear).
  if (cfg_.writes == write_mode::write_through)
    awaiting_.for_each([&](pending_write& op) {
      if (op.val && computes_waiting_.count(op.key) == 0) op.voided = true;
    });
  auto n = clear_entries();
  if (!computes_waiting_.empty() || !computes_loading_.empty() || !line_.empty())
    drop_in_turn();
  return n;
}

uint64_t shard_state::clear_here() {
  void_all_pending_puts();
  return clear_entries();
}

uint64_t shard_state::clear_entries() {
  uint64_t n = table_.size();
  if (cfg_.change_listener) {
    all_changed_ = true;
    key_changes_.clear(); // all of them, whatever they were
  }
  if (cfg_.on_removal) {
    for (entry_id id = 0; id < table_.id_limit(); ++id)
      if (table_.at(id).live())
        cfg_.on_removal(table_.at(id).val, removal_cause::explicit_erase);
  }
  loads_.void_all();
  load_facts_.clear();
  stale_.clear();
  negatives_.clear();
  dirty_.clear(); // the writes stay with the flusher
  deps_.clear();
  deps_charge_.clear();
  table_.clear();
  if (policy_) policy_->clear();
  deadlines_.clear();
  expiring_entries_ = 0;
  stats_.invalidations += n;
  stats_.bytes = 0;
  return n;
}

uint64_t shard_state::remove_expired(time_point now, uint64_t max_work) {
  act_on_leases(now); // a lapsed lease clears, told to the change listener
  auto now_ms = to_ms(now);
  negatives_.expire(now_ms, max_work);
  expire_loads(now, max_work);
  uint64_t removed = 0;
  // Each popped deadline is one unit of work, stale or not, so a heap full of
  // stale deadlines cannot stall the shard either.
  for (uint64_t work = 0; work < max_work && !deadlines_.empty(); ++work) {
    auto [when, id] = deadlines_.front();
    if (when > now_ms) break;
    std::pop_heap(deadlines_.begin(), deadlines_.end(), later);
    deadlines_.pop_back();
    const auto& e = table_.at(id);
    // Stale if the entry is gone, or was overwritten with another deadline.
    if (!e.live() || !e.expires()) continue;
    if (reclaim_ms(e) == when) {
      remove(id, removal_cause::expired);
      ++removed;
    } else if (stale_window_ms_ > 0 && e.expiry_ms() == when) {
      collect_change(e.val); // expired; kept only to serve if a reload fails
    }
  }
  return removed;
}

std::optional<time_point> shard_state::next_expiry() const {
  auto next = negatives_.next_expiry_ms();
  if (auto load = loads_.next_deadline_ms())
    next = std::min(next.value_or(UINT64_MAX), *load);
  if (!deadlines_.empty())
    next = std::min(next.value_or(UINT64_MAX), deadlines_.front().first);
  if (auto lease = lease_deadline_ms())
    next = std::min(next.value_or(UINT64_MAX), *lease);
  if (!next) return std::nullopt;
  return time_point{std::chrono::milliseconds{*next}};
}

cache_stats shard_state::stats() const {
  auto out = stats_;
  out.entries = table_.size();
  out.expiring = expiring_entries_;
  out.hits += reads_->hits();
  out.dependency_links = deps_.links();
  out.dependency_names = deps_.names();
  out.loads_in_flight = loads_.size();
  out.load_waiters = loads_.waiters();
  out.loads_out = loads_.out();
  out.loads_queued = loads_.queued();
  out.writes_parked = line_.writes();
  return out;
}

void shard_state::notify_changes() {
  if (!cfg_.change_listener) return;
  if (all_changed_)
    cfg_.change_listener->all_changed();
  else if (!key_changes_.empty())
    cfg_.change_listener->keys_changed(key_changes_);
  all_changed_ = false;
  key_changes_.clear(); // keeps its capacity for the next step
}

size_t shard_state::metadata_bytes() const noexcept {
  return table_.metadata_bytes() + deadlines_.capacity() * sizeof(deadline) +
         (policy_ ? policy_->metadata_bytes() : 0);
}

} // namespace karlton

#include "actors/change_state.hpp"

#include <algorithm>
#include <limits>
#include <utility>

#include "base/routing.hpp"
#include "stores/pg_trigger_sql.hpp"
#include <karlton/messages/value.hpp>

namespace karlton {

namespace {

// How many applied transactions remember how far they were applied: a
// transaction with `SET CONSTRAINTS ALL IMMEDIATE` sends two ends, and rows
// between them arrive after the first group was applied. As many as open
// groups may be, for the same reason (forged xids cannot grow memory).
constexpr size_t applied_memory = 10'000;

bool enabled(char state) {
  // pg_trigger.tgenabled: O fires in origin and local mode, A always; D is
  // disabled and R fires only under session_replication_role = replica.
  return state == 'O' || state == 'A';
}

} // namespace

change_state::change_state(limits lim)
  : lim_(lim), routes_(std::make_shared<const fed_tables>()) {}

void change_state::set_routes(std::shared_ptr<const fed_tables> routes) {
  routes_ = routes ? std::move(routes) : std::make_shared<const fed_tables>();
}

const std::vector<fed_cache>* change_state::caches_of(const std::string& table) const {
  auto i = routes_->find(table);
  return i == routes_->end() || i->second.empty() ? nullptr : &i->second;
}

const fed_cache* change_state::cache_named(const std::string& table,
                                           const std::string& name) const {
  if (auto caches = caches_of(table))
    for (auto& c : *caches)
      if (c.name == name) return &c;
  return nullptr;
}

change_actions change_state::changes(const std::vector<pg_change>& changes,
                                     time_point now, uint64_t malformed) {
  change_actions out;
  ++passes_;
  stats_.notifications_malformed += malformed;
  // Not ours to read, and so maybe a row whose key went unheard (a writer
  // that set the triggers' counter to number its rows 0 was one): every
  // cache the feed keeps may hold it. Whoever can NOTIFY on the channel can
  // send a repair anyway.
  if (malformed > 0) repair_all(out);
  for (auto& c : changes) {
    ++stats_.notifications_received;
    take(c, now, out);
  }
  note_time(now);
  return out;
}

change_state::open_group& change_state::group_of(uint64_t xid) {
  auto [i, fresh] = groups_.try_emplace(xid);
  auto& g = i->second;
  g.pass = passes_;
  if (!fresh) return g;
  g.order = next_order_++;
  by_order_.emplace(g.order, xid);
  if (auto a = applied_through_.find(xid); a != applied_through_.end())
    g.base = a->second;
  return g;
}

void change_state::take(const pg_change& c, time_point now, change_actions& out) {
  using kind = pg_change::kind;
  switch (c.what) {
  case kind::truncate:
    ++stats_.truncates;
    if (!caches_of(c.table)) ++stats_.notifications_unknown_table;
    repair_table(c.table, out, true);
    return;
  case kind::repair:
    if (!caches_of(c.table)) ++stats_.notifications_unknown_table;
    repair_table(c.table, out, true);
    return;
  case kind::end: {
    auto& g = group_of(c.xid);
    if (c.seq >= g.n) {
      g.n = c.seq;
      g.commit_us = c.commit_us;
    }
    break;
  }
  case kind::row:
  case kind::long_key: {
    auto& g = group_of(c.xid);
    if (c.seq > g.base) ++g.seen;
    g.max_seq = std::max(g.max_seq, c.seq);
    if (c.what == kind::long_key) ++stats_.long_keys;
    if (!caches_of(c.table)) {
      ++stats_.notifications_unknown_table;
      break;
    }
    if (g.repaired.count(c.table)) break; // its caches will be repaired
    auto& keys = g.keys[c.table];
    auto& bytes = g.bytes[c.table];
    bool bulk = c.what == kind::row && (keys.size() >= lim_.max_group_keys ||
                                        bytes + c.key.size() > lim_.max_group_bytes);
    if (c.what == kind::long_key || bulk) {
      // The key cannot be named (too long for a payload) or the group holds
      // too many to keep: hold none of its keys for this table any longer,
      // and repair the table's caches when the group is applied. Not now:
      // any role may NOTIFY, so this may be forged for a transaction still in
      // progress, and a repair before its COMMIT would leave a value read
      // meanwhile in the cache while its real rows, dropped above, go unheard.
      if (bulk) ++stats_.bulk_repairs;
      buffered_keys_ -= keys.size();
      buffered_bytes_ -= bytes;
      g.keys.erase(c.table);
      g.rows.erase(c.table);
      g.bytes.erase(c.table);
      g.repaired.insert(c.table);
      break;
    }
    keys.push_back(c.key);
    ++g.rows[c.table];
    bytes += c.key.size();
    ++buffered_keys_;
    buffered_bytes_ += c.key.size();
    if (over_held()) apply_oldest_while(c.xid, true, out, now);
    break;
  }
  }
  auto i = groups_.find(c.xid);
  if (i != groups_.end()) {
    auto& g = i->second;
    bool complete =
      g.n > 0 && g.max_seq <= g.n && (g.n <= g.base || g.seen >= g.n - g.base);
    if (complete) apply(c.xid, true, now, out);
  }
  if (groups_.size() > lim_.max_open_groups) apply_oldest_while(c.xid, false, out, now);
}

bool change_state::over_held() const noexcept {
  return buffered_keys_ > lim_.max_group_keys || buffered_bytes_ > lim_.max_group_bytes;
}

void change_state::apply_oldest_while(uint64_t keep, bool held, change_actions& out,
                                      time_point now) {
  // Oldest first; never `keep`, the group being filled now (a single group
  // over the key or byte limit becomes a repair instead).
  for (;;) {
    bool over = held ? over_held() : groups_.size() > lim_.max_open_groups;
    if (!over) return;
    auto i = by_order_.begin();
    if (i != by_order_.end() && i->second == keep) ++i;
    if (i == by_order_.end()) return;
    apply(i->second, false, now, out);
  }
}

void change_state::remember_applied(uint64_t xid, uint64_t through) {
  if (applied_through_.insert_or_assign(xid, through).second) {
    applied_order_.push_back(xid);
    if (applied_order_.size() > applied_memory) {
      applied_through_.erase(applied_order_.front());
      applied_order_.pop_front();
    }
  }
}

void change_state::apply(uint64_t xid, bool complete, time_point now,
                         change_actions& out) {
  auto i = groups_.find(xid);
  if (i == groups_.end()) return;
  auto g = std::move(i->second);
  groups_.erase(i);
  by_order_.erase(g.order);
  ++stats_.groups_applied;
  if (!complete) ++stats_.groups_incomplete;
  if (complete) remember_applied(xid, g.n);
  change_actions::group inv;
  inv.commit_us = g.commit_us;
  // One verdict per registry: two caches over one store share it, and
  // `take` forgets an own xid as it returns it.
  std::map<own_commits*, own_commits::verdict> verdicts;
  for (auto& [table, keys] : g.keys) {
    buffered_keys_ -= keys.size();
    buffered_bytes_ -= g.bytes[table];
    auto rows = g.rows[table];
    std::sort(keys.begin(), keys.end());
    keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
    auto caches = caches_of(table);
    if (!caches) continue; // its caches stopped meanwhile
    for (auto& cache : *caches) {
      auto v = own_commits::verdict::foreign;
      if (cache.own) {
        auto [at, fresh] = verdicts.try_emplace(cache.own.get(), v);
        if (fresh)
          at->second =
            cache.own->take(xid, complete ? rows : own_commits::incomplete_group);
        v = at->second;
      }
      if (v == own_commits::verdict::own) {
        stats_.rows_own += rows;
      } else if (v == own_commits::verdict::pending) {
        parked_.push_back(
          parked_part{xid, table, cache.name, keys, rows, g.commit_us, now});
        out.retry_parked = true;
      } else {
        stats_.rows_applied += rows;
        invalidate(cache, keys, inv);
      }
    }
  }
  if (!inv.parts.empty()) out.groups.push_back(std::move(inv));
  // After the rows' COMMIT if they are real (they are sent after it); if
  // forged, the group is gone and the real rows open a new one.
  for (auto& table : g.repaired)
    repair_table(table, out, true);
}

void change_state::invalidate(const fed_cache& cache, std::vector<std::string> keys,
                              change_actions::group& into) {
  auto n = cache.shards.size();
  if (n == 0) return;
  std::vector<std::vector<std::string>> by_shard(n);
  for (auto& k : keys)
    by_shard[shard_index(hash_key(k), n)].push_back(std::move(k));
  for (size_t s = 0; s < n; ++s)
    if (!by_shard[s].empty())
      into.parts.push_back({cache.name, s, std::move(by_shard[s])});
}

change_actions change_state::retry_parked(time_point now) {
  change_actions out;
  std::map<std::pair<uint64_t, own_commits*>, own_commits::verdict> verdicts;
  std::vector<parked_part> still;
  for (auto& p : parked_) {
    auto cache = cache_named(p.table, p.cache);
    if (!cache) continue; // stopped meanwhile: nothing to invalidate
    auto v = own_commits::verdict::foreign;
    if (cache->own) {
      auto [at, fresh] = verdicts.try_emplace({p.xid, cache->own.get()}, v);
      if (fresh) at->second = cache->own->take(p.xid, p.rows);
      v = at->second;
    }
    // Unanswered too long: the COMMIT's outcome may never be known (the
    // store lost its connection); invalidating is the safe direction.
    if (v == own_commits::verdict::pending && now - p.since >= lim_.pending_limit)
      v = own_commits::verdict::foreign;
    if (v == own_commits::verdict::own) {
      stats_.rows_own += p.rows;
    } else if (v == own_commits::verdict::foreign) {
      stats_.rows_applied += p.rows;
      change_actions::group inv;
      inv.commit_us = p.commit_us;
      invalidate(*cache, std::move(p.keys), inv);
      if (!inv.parts.empty()) out.groups.push_back(std::move(inv));
    } else {
      still.push_back(std::move(p));
    }
  }
  parked_ = std::move(still);
  out.retry_parked = !parked_.empty();
  note_time(now);
  return out;
}

void change_state::add_repair(const fed_cache& cache, change_actions& out, bool known) {
  auto has = [&](const std::vector<std::string>& names) {
    return std::find(names.begin(), names.end(), cache.name) != names.end();
  };
  if (known && !has(out.clears)) out.clears.push_back(cache.name);
  if (has(out.repairs)) return;
  out.repairs.push_back(cache.name);
  repairs_in_flight_ += cache.shards.size();
}

void change_state::repair_table(const std::string& table, change_actions& out,
                                bool known) {
  auto caches = caches_of(table);
  if (!caches) return;
  ++stats_.repairs;
  for (auto& c : *caches)
    add_repair(c, out, known);
}

void change_state::repair_all(change_actions& out) {
  if (routes_->empty()) return;
  ++stats_.repairs;
  for (auto& [table, caches] : *routes_)
    for (auto& c : caches)
      add_repair(c, out);
}

void change_state::repair_answered() noexcept {
  if (repairs_in_flight_ > 0) --repairs_in_flight_;
}

change_actions change_state::up(time_point now) {
  change_actions out;
  listening_ = true;
  ++stats_.connects;
  up_at_ = now;
  // What was open or parked is covered by the repair, and so is every own
  // write not yet heard of: their notifications may be lost with the old
  // connection.
  std::set<own_commits*> forgotten;
  for (auto& [table, caches] : *routes_)
    for (auto& c : caches)
      if (c.own && forgotten.insert(c.own.get()).second) c.own->forget_all();
  groups_.clear();
  by_order_.clear();
  buffered_keys_ = 0;
  buffered_bytes_ = 0;
  parked_.clear();
  applied_through_.clear();
  applied_order_.clear();
  repair_all(out);
  note_time(now);
  return out;
}

void change_state::down(time_point now) {
  if (listening_) ++stats_.drops;
  listening_ = false;
  note_time(now);
}

void change_state::check_triggers(const std::string& triggers, change_actions& out) {
  // "schema.table:tgname:state,...": identifiers hold no ':' or ',' (§5;
  // the query leaves out tables with other names). A state that is not
  // enabled is kept over a later one that is.
  struct states {
    char row = 0, end = 0, truncate = 0;
  };
  std::map<std::string, states> found;
  auto note = [](char& slot, char state) {
    if (slot == 0 || enabled(slot)) slot = state;
  };
  size_t at = 0;
  while (at < triggers.size()) {
    auto stop = triggers.find(',', at);
    if (stop == std::string::npos) stop = triggers.size();
    auto item = triggers.substr(at, stop - at);
    at = stop + 1;
    auto c2 = item.rfind(':');
    if (c2 == std::string::npos || c2 == 0 || c2 + 2 != item.size()) continue;
    auto c1 = item.rfind(':', c2 - 1);
    if (c1 == std::string::npos) continue;
    auto table = item.substr(0, c1);
    auto name = item.substr(c1 + 1, c2 - c1 - 1);
    auto& st = found[table];
    if (name == pg::row_trigger) note(st.row, item.back());
    if (name == pg::end_trigger) note(st.end, item.back());
    if (name == pg::truncate_trigger) note(st.truncate, item.back());
  }
  for (auto i = trigger_trouble_.begin(); i != trigger_trouble_.end();)
    i = routes_->count(*i) ? std::next(i) : trigger_trouble_.erase(i);
  for (auto& [table, caches] : *routes_) {
    auto f = found.find(table);
    bool ok = f != found.end() && enabled(f->second.row) && enabled(f->second.end) &&
              enabled(f->second.truncate);
    if (!ok && trigger_trouble_.insert(table).second) ++stats_.trigger_problems;
    if (ok && trigger_trouble_.erase(table) > 0) repair_table(table, out, false);
  }
}

change_actions change_state::heard(time_point sent_at, uint32_t usage_ppm,
                                   const std::string& triggers, time_point now,
                                   bool with_changes) {
  change_actions out;
  note_time(now);
  ++stats_.heartbeats;
  stats_.queue_usage_ppm = usage_ppm;
  // Every notification sent before this answer has arrived: whatever is
  // still open will not complete (a lost or forged notification). Except a
  // group heard in the read that brought the answer: its notifications may
  // have followed the answer, with the rest of them still on the way.
  std::vector<uint64_t> done;
  for (auto& [order, xid] : by_order_) {
    auto& g = groups_.at(xid);
    if (with_changes && g.pass == passes_ && !g.spared)
      g.spared = true;
    else
      done.push_back(xid);
  }
  for (auto xid : done)
    apply(xid, false, now, out);
  check_triggers(triggers, out);
  if (!trigger_trouble_.empty()) {
    out.lapse_lease = true;
    lease_until_ = time_point{};
    note_time(now);
  }
  // From the *send* time: an answer read late (a frozen process thawed)
  // proves nothing about the time since it was sent. Not while a repair is
  // clearing shards: a read before the clear would be vouched for.
  if (listening_ && sent_at >= up_at_ && repairs_in_flight_ == 0 &&
      trigger_trouble_.empty()) {
    auto until = sent_at + lim_.lease;
    if (until > lease_until_) {
      lease_until_ = until;
      lapse_counted_ = now > until;
      out.extend_lease = until;
    }
  }
  return out;
}

void change_state::note_time(time_point now) {
  if (!lapse_counted_ && now > lease_until_) {
    ++stats_.lease_lapses;
    lapse_counted_ = true;
  }
}

void change_state::invalidated(int64_t commit_us, int64_t now_us) {
  if (commit_us <= 0) return;
  auto d = std::max<int64_t>(0, now_us - commit_us);
  auto us =
    static_cast<uint32_t>(std::min<int64_t>(d, std::numeric_limits<uint32_t>::max()));
  auto& xs = stats_.recent_delays_us;
  if (xs.size() < change_delay_samples) {
    xs.push_back(us);
  } else {
    xs[delay_next_] = us;
    delay_next_ = (delay_next_ + 1) % change_delay_samples;
  }
}

change_feed_stats change_state::stats() const {
  auto s = stats_;
  s.listening = listening_ ? 1 : 0;
  // Oldest first, once the ring wrapped.
  std::rotate(s.recent_delays_us.begin(),
              s.recent_delays_us.begin() + static_cast<std::ptrdiff_t>(delay_next_),
              s.recent_delays_us.end());
  return s;
}

} // namespace karlton

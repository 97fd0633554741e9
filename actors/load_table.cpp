#include "actors/load_table.hpp"

namespace karlton {

bool load_table::join(std::string_view key, load_waiter&& w) {
  auto i = current_.find(std::string{key});
  if (i == current_.end()) return false;
  i->second.waiters.push_back(std::move(w));
  ++waiters_;
  return true;
}

bool load_table::in_flight(std::string_view key) const {
  return current_.count(std::string{key}) > 0;
}

uint64_t load_table::start(std::string_view key, std::optional<load_waiter> w,
                           bool refresh, uint64_t deadline_ms, uint64_t started_ms) {
  auto id = next_id_++;
  pending p{id, refresh, true, started_ms, {}};
  if (w) {
    p.waiters.push_back(std::move(*w));
    ++waiters_;
  }
  current_.emplace(std::string{key}, std::move(p));
  if (deadline_ms != UINT64_MAX)
    deadlines_.push_back({deadline_ms, id, std::string{key}});
  ready_.push_back({std::string{key}, id});
  ++queued_;
  return id;
}

load_table::pending* load_table::find(const std::string& key, uint64_t id) {
  if (auto i = current_.find(key); i != current_.end() && i->second.id == id)
    return &i->second;
  if (auto j = voided_.find(id); j != voided_.end()) return &j->second;
  return nullptr;
}

std::vector<std::pair<std::string, uint64_t>> load_table::take_ready() {
  std::vector<std::pair<std::string, uint64_t>> out;
  while (out_ < limits_.max_out && !ready_.empty()) {
    auto next = std::move(ready_.front());
    ready_.pop_front();
    auto* p = find(next.key, next.id);
    if (p == nullptr) continue; // timed out while queued
    p->queued = false;
    --queued_;
    ++out_;
    out.emplace_back(std::move(next.key), next.id);
  }
  return out;
}

std::vector<load_table::timed_out> load_table::expire(uint64_t now_ms,
                                                      uint64_t max_work) {
  std::vector<timed_out> out;
  for (uint64_t work = 0; work < max_work && !deadlines_.empty(); ++work) {
    auto& d = deadlines_.front();
    if (d.at_ms > now_ms) break;
    std::optional<pending> gone;
    if (auto i = current_.find(d.key); i != current_.end() && i->second.id == d.id) {
      gone = std::move(i->second);
      current_.erase(i);
    } else if (auto j = voided_.find(d.id); j != voided_.end()) {
      gone = std::move(j->second);
      voided_.erase(j);
    }
    if (gone) {
      uncount(*gone);
      waiters_ -= gone->waiters.size();
      out.push_back({std::move(d.key), std::move(gone->waiters)});
    }
    deadlines_.pop_front();
  }
  // Queued loads that timed out are the oldest queued: drop their places.
  while (!ready_.empty() && find(ready_.front().key, ready_.front().id) == nullptr)
    ready_.pop_front();
  return out;
}

bool load_table::void_key(std::string_view key) {
  if (current_.empty()) return false; // the common case: no key copy, no lookup
  auto i = current_.find(std::string{key});
  if (i == current_.end()) return false;
  voided_.emplace(i->second.id, std::move(i->second));
  current_.erase(i);
  return true;
}

uint64_t load_table::void_all() {
  uint64_t n = current_.size();
  for (auto& [key, p] : current_)
    voided_.emplace(p.id, std::move(p));
  current_.clear();
  return n;
}

namespace {

// Drops the deadlines at the front whose loads are gone (finished), so that
// loads that finish in time, the common case, leave nothing behind: without
// it the deadlines of every load of the last `load_timeout` would be kept.
template <class Deadlines, class Current, class Voided>
void drop_finished(Deadlines& deadlines, const Current& current, const Voided& voided) {
  while (!deadlines.empty()) {
    auto& d = deadlines.front();
    auto i = current.find(d.key);
    if ((i != current.end() && i->second.id == d.id) || voided.count(d.id) > 0) return;
    deadlines.pop_front();
  }
}

} // namespace

std::optional<load_table::finished> load_table::finish(std::string_view key,
                                                       uint64_t id) {
  std::optional<finished> out;
  // A queued load was not handed out: no answer can be for it.
  if (auto i = current_.find(std::string{key});
      i != current_.end() && i->second.id == id) {
    if (i->second.queued) return out;
    out = finished{true, i->second.refresh, i->second.started_ms,
                   std::move(i->second.waiters)};
    current_.erase(i);
  } else if (auto j = voided_.find(id); j != voided_.end()) {
    if (j->second.queued) return out;
    out = finished{false, j->second.refresh, j->second.started_ms,
                   std::move(j->second.waiters)};
    voided_.erase(j);
  }
  if (!out) return out;
  --out_;
  waiters_ -= out->waiters.size();
  drop_finished(deadlines_, current_, voided_);
  return out;
}

std::vector<load_table::timed_out> load_table::take_all() {
  std::vector<timed_out> out;
  for (auto& [key, p] : current_)
    out.push_back({key, std::move(p.waiters)});
  for (auto& [id, p] : voided_)
    out.push_back({std::string{}, std::move(p.waiters)});
  current_.clear();
  voided_.clear();
  deadlines_.clear();
  ready_.clear();
  out_ = 0;
  queued_ = 0;
  waiters_ = 0;
  return out;
}

} // namespace karlton

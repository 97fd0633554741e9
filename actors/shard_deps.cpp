// shard_state: dependency-based and event-driven invalidation.
//
// Each shard indexes what its entries depend on, both ways
// (`dependency_index`), so an invalidation finds the dependents of a name at once and
// an entry that leaves for any reason leaves no link behind. Events and the
// other names (keys, tags) live in one index under different prefixes, so an
// event "x" and a tag "x" stay apart.

#include <algorithm>
#include <string_view>
#include <unordered_set>

#include "actors/shard_state.hpp"
#include <karlton/messages/errors.hpp>

namespace karlton {

namespace {

constexpr std::string_view event_prefix = "e\x1f";
constexpr std::string_view name_prefix = "n\x1f";

std::string indexed(std::string_view prefix, std::string_view name) {
  std::string out;
  out.reserve(prefix.size() + name.size());
  out.append(prefix).append(name);
  return out;
}

// `deps` as the index spells them: events and the other names apart.
std::vector<std::string> indexed_names(const dependencies& deps) {
  std::vector<std::string> names;
  names.reserve(deps.events.size() + deps.on.size());
  for (const auto& e : deps.events)
    names.push_back(indexed(event_prefix, e));
  for (const auto& n : deps.on)
    names.push_back(indexed(name_prefix, n));
  return names;
}

// What an entry's links add to `max-bytes`: their bytes and what the index's
// links cost.
uint64_t links_charge(const std::vector<std::string>& names) {
  uint64_t charge = 0;
  for (const auto& n : names)
    charge += n.size() + dependency_link_bytes;
  return charge;
}

} // namespace

caf::error check_dependencies(const shard_options& cfg, const dependencies& deps) {
  auto count = deps.events.size() + deps.on.size();
  if (count > max_dependencies)
    return make_error(errc::invalid_option,
                      "an entry depends on at most " + std::to_string(max_dependencies) +
                        " names; this one on " + std::to_string(count));
  uint64_t total = 0;
  for (const auto* names : {&deps.events, &deps.on})
    for (const auto& n : *names) {
      if (n.size() > cfg.max_key_bytes)
        return make_error(errc::key_too_large, "a dependency name of " +
                                                 std::to_string(n.size()) +
                                                 " bytes exceeds max-key-bytes (" +
                                                 std::to_string(cfg.max_key_bytes) + ")");
      total += n.size();
    }
  if (total > max_dependency_bytes)
    return make_error(errc::invalid_option, "an entry's dependency names take at most " +
                                              std::to_string(max_dependency_bytes) +
                                              " bytes; these take " +
                                              std::to_string(total));
  return caf::none;
}

caf::error shard_state::check_links(const value& v, const dependencies& deps) {
  if (auto err = check_dependencies(cfg_, deps)) {
    ++stats_.rejected;
    return err;
  }
  auto charge = links_charge(indexed_names(deps));
  if (v && cfg_.max_bytes > 0 && charge + v.charge() > cfg_.max_bytes) {
    // It would evict the whole shard, and then itself.
    ++stats_.rejected;
    return make_error(errc::value_too_large,
                      "the entry with its dependency names (" + std::to_string(charge) +
                        " bytes) is larger than a shard's max-bytes (" +
                        std::to_string(cfg_.max_bytes) + "); nothing was stored");
  }
  return caf::none;
}

void shard_state::link(const std::string& key, const dependencies& deps) {
  auto id = table_.find(key, static_cast<uint32_t>(hash_key(key)));
  if (id == no_entry) return; // evicted at once by its own insertion
  auto names = indexed_names(deps);
  auto charge = links_charge(names);
  deps_.set(id, names); // adds new names to `cfg_.depended` before the put returns
  auto& charged = deps_charge_[id]; // 0 after the put: it forgot the old links
  stats_.bytes += charge - charged;
  charged = charge;
}

caf::error shard_state::put(value v, ttl t, time_point now, const dependencies& deps) {
  // Not for a write mode: there the links go in with the value (`write`).
  if (cfg_.writes != write_mode::none)
    return make_error(errc::invalid_option, "in a cache with a write mode a put with "
                                            "dependencies goes through write");
  if (deps.empty()) return put(std::move(v), t, now);
  if (auto err = check_links(v, deps)) return err;
  auto key = std::string{v.key()};
  if (auto err = put(std::move(v), t, now)) return err;
  link(key, deps);
  enforce_bound(); // the names count too; this entry may be the one to go
  return caf::none;
}

void shard_state::forget_deps(entry_id id) {
  if (deps_.entries() > 0 && deps_.has(id)) deps_.forget(id);
  if (deps_charge_.empty()) return;
  if (auto i = deps_charge_.find(id); i != deps_charge_.end()) {
    stats_.bytes -= i->second;
    deps_charge_.erase(i);
  }
}

void shard_state::watch_depended_names() {
  // Only keys and tags: an event "x" must not make a key "x" cascade.
  deps_.on_names([filter = cfg_.depended.get()](std::string_view name, bool added) {
    if (name.substr(0, name_prefix.size()) != name_prefix) return;
    name.remove_prefix(name_prefix.size());
    if (added)
      filter->add(name);
    else
      filter->remove(name);
  });
}

invalidation_result
shard_state::invalidate_dependents(const std::vector<std::string>& names,
                                   invalidation_cause cause, time_point now,
                                   uint32_t level) {
  invalidation_result out;
  auto now_ms = to_ms(now);
  auto by_cause = [this](invalidation_cause c) -> uint64_t& {
    switch (c) {
    case invalidation_cause::event:
      return stats_.invalidated_by_event;
    case invalidation_cause::tag:
      return stats_.invalidated_by_tag;
    case invalidation_cause::cascade:
      break;
    }
    return stats_.invalidated_by_cascade;
  };
  auto prefix = cause == invalidation_cause::event ? event_prefix : name_prefix;
  std::vector<std::string> frontier;
  frontier.reserve(names.size());
  for (const auto& n : names)
    frontier.push_back(indexed(prefix, n));
  // Write-through puts waiting for the store go in with their links later: as an
  // invalidation of the key voids its put (`void_pending_puts`), one of a name
  // they link to does (their value may be older than the change it stands for).
  auto void_linked_puts = [this](const std::vector<std::string>& frontier) {
    std::unordered_set<std::string_view> named; // built at the first linked put
    awaiting_.for_each([&](pending_write& op) {
      if (!op.val || !op.links || op.voided) return;
      if (named.empty()) named.insert(frontier.begin(), frontier.end());
      for (const auto& n : indexed_names(*op.links))
        if (named.count(n) > 0) {
          op.voided = true;
          return;
        }
    });
  };
  bool linked_puts = cfg_.writes == write_mode::write_through && !awaiting_.empty();
  // No set of names seen: take_dependents releases a name with its
  // dependents, so a name met again (a cycle) has none and the loop ends.
  for (; !frontier.empty(); ++level) {
    if (linked_puts) void_linked_puts(frontier);
    std::vector<std::string> next;
    for (const auto& name : frontier) {
      for (auto id : deps_.take_dependents(name)) {
        auto& e = table_.at(id);
        if (!e.live()) continue;
        // The key lives in the value buffer `remove` frees: copied only if
        // it cascades, which in an invalidation of 100k dependents of a tag none do.
        auto key = e.val.key();
        loads_.void_key(key); // a load in flight must not bring it back (rule 1)
        // Nor a write-through put at the store (a compute's on this value keeps
        // links it no longer has).
        void_pending_puts(key);
        // An invalidation is a change: a remembered load failure of the key
        // no longer answers for it (as after an erase).
        if (!negatives_.empty()) negatives_.forget(key);
        bool cascades = cfg_.depended && cfg_.depended->may_contain(key);
        if (cascades) out.cascade.emplace_back(key);
        // One past its expiry (the timer not yet there, or kept for
        // stale-if-error) counts as expired, though what depends on it goes.
        bool was_live = remove_changed(id, now_ms, true);
        out.deepest = std::max(out.deepest, level);
        if (was_live) {
          ++out.removed;
          ++by_cause(cause);
        }
        // Entries here that depend on the removed key go in the next local
        // round; other shards hear of it through the bus. Only if something
        // may depend on it at all.
        if (!cascades) continue;
        next.push_back(indexed(name_prefix, out.cascade.back()));
        out.levels.push_back(level);
      }
    }
    frontier = std::move(next);
    cause = invalidation_cause::cascade;
  }
  return out;
}

graph_edges shard_state::dependency_edges() const {
  graph_edges out;
  deps_.for_each([&](entry_id id, const std::vector<std::string_view>& names) {
    std::vector<std::string> shown;
    shown.reserve(names.size());
    for (auto n : names) {
      if (n.substr(0, event_prefix.size()) == event_prefix)
        shown.push_back("event:" + std::string{n.substr(event_prefix.size())});
      else
        shown.emplace_back(n.substr(name_prefix.size()));
    }
    out.emplace_back(std::string{table_.at(id).val.key()}, std::move(shown));
  });
  return out;
}

} // namespace karlton

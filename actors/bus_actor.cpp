#include "actors/bus_actor.hpp"

#include <algorithm>
#include <map>
#include <memory>
#include <unordered_set>

#include <caf/all.hpp>
#include <karlton/messages/value.hpp>

namespace karlton {

namespace {

using self_ptr = bus_actor::stateful_pointer<bus_state>;

// One synchronous invalidation, round by round: a round asks every shard of the
// caches concerned; the keys they removed are the names of the next round,
// per cache (a key names an entry of its own cache), minus those already
// invalidated, so cycles end. The answer goes out when a round finds nothing new.
// Names carry the cascade level their dependents get, so `depth` is the
// longest chain followed, within shards and across them.
struct invalidation_run {
  caf::typed_response_promise<invalidation_summary> promise;
  invalidation_summary summary;
  using leveled = std::vector<std::pair<std::string, uint32_t>>;
  std::vector<std::unordered_set<std::string, key_hasher>> invalidated; // per cache
  std::vector<leveled> next;                                            // per cache
  size_t pending = 0;
};

void run_round(self_ptr self, std::shared_ptr<invalidation_run> run,
               std::vector<invalidation_run::leveled> names, invalidation_cause cause);

void finish_round(self_ptr self, std::shared_ptr<invalidation_run> run) {
  std::vector<invalidation_run::leveled> names(run->next.size());
  bool more = false;
  for (size_t c = 0; c < run->next.size(); ++c) {
    for (auto& [key, level] : run->next[c])
      if (run->invalidated[c].insert(key).second)
        names[c].emplace_back(std::move(key), level + 1);
    run->next[c].clear();
    more = more || !names[c].empty();
  }
  if (!more) {
    auto& st = self->state.stats;
    st.deepest_cascade = std::max(st.deepest_cascade, run->summary.depth);
    run->promise.deliver(run->summary);
    return;
  }
  run_round(self, std::move(run), std::move(names), invalidation_cause::cascade);
}

void run_round(self_ptr self, std::shared_ptr<invalidation_run> run,
               std::vector<invalidation_run::leveled> names, invalidation_cause cause) {
  auto& caches = self->state.caches;
  run->invalidated.resize(caches.size());
  run->next.resize(caches.size());
  names.resize(caches.size());
  for (size_t c = 0; c < caches.size(); ++c) {
    // One message per shard and level (levels differ only after cascades).
    std::map<uint32_t, std::vector<std::string>> by_level;
    for (auto& [name, level] : names[c])
      by_level[level].push_back(std::move(name));
    for (auto& [level, group] : by_level)
      for (auto& shard : caches[c]) {
        ++run->pending;
        self
          ->request(shard, caf::infinite, invalidate_dependents_atom::value, group, cause,
                    level)
          .then(
            [self, run, c](invalidation_result& r) {
              run->summary.removed += r.removed;
              if (r.removed > 0)
                run->summary.depth = std::max(run->summary.depth, r.deepest);
              auto& next = run->next[c];
              for (size_t i = 0; i < r.cascade.size(); ++i) {
                next.emplace_back(std::move(r.cascade[i]), r.levels[i]);
              }
              if (--run->pending == 0) finish_round(self, run);
            },
            [self, run](caf::error&) {
              // A shard that is gone holds no entries any more.
              if (--run->pending == 0) finish_round(self, run);
            });
      }
  }
  if (run->pending == 0) finish_round(self, run);
}

// Starts an invalidation of `names` in the caches `scope` (< 0: all) and returns the
// promise it will be answered through.
caf::typed_response_promise<invalidation_summary>
start_invalidation(self_ptr self, const std::vector<std::string>& names,
                   invalidation_cause cause, int32_t scope,
                   uint32_t subscribers_called = 0) {
  auto run = std::make_shared<invalidation_run>();
  run->promise = self->make_response_promise<invalidation_summary>();
  run->summary.subscribers_called = subscribers_called;
  auto n = self->state.caches.size();
  std::vector<invalidation_run::leveled> per_cache(n);
  for (size_t c = 0; c < n; ++c)
    if (scope < 0 || static_cast<size_t>(scope) == c)
      for (const auto& name : names)
        per_cache[c].emplace_back(name, 0);
  auto promise = run->promise;
  run_round(self, std::move(run), std::move(per_cache), cause);
  return promise;
}

} // namespace

bus_actor::behavior_type bus(self_ptr self, bus_options) {
  // A subscriber that is gone is called no more, nor counted as called.
  self->set_down_handler([=](caf::down_msg& down) {
    auto& st = self->state;
    auto gone = st.events_of.find(down.source);
    if (gone == st.events_of.end()) return;
    for (const auto& event : gone->second) {
      auto i = st.subscribers.find(event);
      if (i == st.subscribers.end()) continue;
      auto& list = i->second;
      list.erase(std::remove_if(list.begin(), list.end(),
                                [&](const event_subscriber_actor& a) {
                                  return a.address() == down.source;
                                }),
                 list.end());
      if (list.empty()) st.subscribers.erase(i);
    }
    st.events_of.erase(gone);
  });
  return {
    [=](shards_atom, const std::string&, std::vector<shard_actor>& shards) {
      auto& caches = self->state.caches;
      caches.push_back(std::move(shards));
      return static_cast<uint32_t>(caches.size() - 1);
    },
    [=](emit_atom, const std::string& event,
        const std::string& data) -> caf::result<invalidation_summary> {
      auto& st = self->state;
      ++st.stats.events_emitted;
      uint32_t called = 0;
      if (auto i = st.subscribers.find(event); i != st.subscribers.end())
        for (auto& sub : i->second) {
          self->send(sub, emit_atom::value, event, data);
          ++called;
        }
      st.stats.subscribers_called += called;
      return start_invalidation(self, {event}, invalidation_cause::event, -1, called);
    },
    [=](invalidate_dependents_atom, const std::vector<std::string>& names,
        invalidation_cause cause, int32_t scope) -> caf::result<invalidation_summary> {
      auto& st = self->state;
      if (cause == invalidation_cause::tag)
        st.stats.tags_invalidated += names.size();
      else if (cause == invalidation_cause::cascade)
        st.stats.key_cascades += names.size();
      return start_invalidation(self, names, cause, scope);
    },
    [=](subscribe_atom, const std::string& event, event_subscriber_actor& sub) {
      auto& st = self->state;
      auto& list = st.subscribers[event];
      // Once per event: a second subscribe is not a second delivery.
      if (std::find(list.begin(), list.end(), sub) == list.end()) {
        auto& events = st.events_of[sub.address()];
        if (events.empty()) self->monitor(sub);
        events.push_back(event);
        list.push_back(std::move(sub));
      }
      return caf::ok_atom::value;
    },
    [=](bus_stats_atom) { return self->state.stats; },
  };
}

} // namespace karlton

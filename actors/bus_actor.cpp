#include "actors/bus_actor.hpp"

#include <memory>
#include <unordered_set>

#include <caf/all.hpp>

namespace karlton {

namespace {

using self_ptr = bus_actor::stateful_pointer<bus_state>;

// One synchronous purge, round by round: a round asks every shard of the
// caches concerned; the keys they removed are the names of the next round,
// per cache (a key names an entry of its own cache), minus those already
// purged, so cycles end. The answer goes out when a round finds nothing new.
struct purge_run {
  caf::typed_response_promise<purge_summary> promise;
  purge_summary summary;
  std::vector<std::unordered_set<std::string>> purged; // per cache
  std::vector<std::vector<std::string>> next;          // per cache
  size_t pending = 0;
};

void run_round(self_ptr self, std::shared_ptr<purge_run> run,
               std::vector<std::vector<std::string>> names, purge_cause cause);

void finish_round(self_ptr self, std::shared_ptr<purge_run> run) {
  std::vector<std::vector<std::string>> names(run->next.size());
  bool more = false;
  for (size_t c = 0; c < run->next.size(); ++c) {
    for (auto& key : run->next[c])
      if (run->purged[c].insert(key).second) names[c].push_back(std::move(key));
    run->next[c].clear();
    more = more || !names[c].empty();
  }
  if (!more) {
    auto& st = self->state.stats;
    st.deepest_cascade = std::max(st.deepest_cascade, run->summary.depth);
    run->promise.deliver(run->summary);
    return;
  }
  ++run->summary.depth;
  run_round(self, std::move(run), std::move(names), purge_cause::cascade);
}

void run_round(self_ptr self, std::shared_ptr<purge_run> run,
               std::vector<std::vector<std::string>> names, purge_cause cause) {
  auto& caches = self->state.caches;
  run->purged.resize(caches.size());
  run->next.resize(caches.size());
  names.resize(caches.size());
  for (size_t c = 0; c < caches.size(); ++c) {
    if (names[c].empty()) continue;
    for (auto& shard : caches[c]) {
      ++run->pending;
      self->request(shard, caf::infinite, purge_atom::value, names[c], cause)
        .then(
          [self, run, c](purge_result& r) {
            run->summary.removed += r.removed;
            run->summary.depth = std::max(run->summary.depth, r.local_depth);
            auto& next = run->next[c];
            next.insert(next.end(), std::make_move_iterator(r.cascade.begin()),
                        std::make_move_iterator(r.cascade.end()));
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

// Starts a purge of `names` in the caches `scope` (< 0: all) and returns the
// promise it will be answered through.
caf::typed_response_promise<purge_summary>
start_purge(self_ptr self, const std::vector<std::string>& names, purge_cause cause,
            int32_t scope, uint32_t subscribers_called = 0) {
  auto run = std::make_shared<purge_run>();
  run->promise = self->make_response_promise<purge_summary>();
  run->summary.subscribers_called = subscribers_called;
  auto n = self->state.caches.size();
  std::vector<std::vector<std::string>> per_cache(n);
  for (size_t c = 0; c < n; ++c)
    if (scope < 0 || static_cast<size_t>(scope) == c) per_cache[c] = names;
  auto promise = run->promise;
  run_round(self, std::move(run), std::move(per_cache), cause);
  return promise;
}

} // namespace

bus_actor::behavior_type bus(self_ptr self) {
  return {
    [=](shards_atom, const std::string&, std::vector<shard_actor>& shards) {
      auto& caches = self->state.caches;
      caches.push_back(std::move(shards));
      return static_cast<uint32_t>(caches.size() - 1);
    },
    [=](emit_atom, const std::string& event,
        const std::string& data) -> caf::result<purge_summary> {
      auto& st = self->state;
      ++st.stats.events_emitted;
      uint32_t called = 0;
      if (auto i = st.subscribers.find(event); i != st.subscribers.end())
        for (auto& sub : i->second) {
          self->send(sub, emit_atom::value, event, data);
          ++called;
        }
      st.stats.subscribers_called += called;
      return start_purge(self, {event}, purge_cause::event, -1, called);
    },
    [=](purge_atom, const std::vector<std::string>& names, purge_cause cause,
        int32_t scope) -> caf::result<purge_summary> {
      auto& st = self->state;
      if (cause == purge_cause::tag)
        st.stats.tags_invalidated += names.size();
      else if (cause == purge_cause::cascade)
        st.stats.key_cascades += names.size();
      return start_purge(self, names, cause, scope);
    },
    [=](subscribe_atom, const std::string& event, event_subscriber_actor& sub) {
      self->state.subscribers[event].push_back(std::move(sub));
      return caf::ok_atom::value;
    },
    [=](bus_stats_atom) { return self->state.stats; },
  };
}

} // namespace karlton

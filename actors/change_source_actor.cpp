#include "actors/change_source_actor.hpp"

#include <caf/all.hpp>

#include <karlton/messages/errors.hpp>
#include <karlton/messages/shard_interface.hpp>

#include "actors/shard_repair.hpp"

namespace karlton {

const char* change_source_state::name = "karlton.change_source";

namespace {

using self_ptr = change_source_actor::stateful_pointer<change_source_state>;

// How soon a group parked on a pending own write is asked about again: the
// store resolves its xid right after COMMIT's reply, well under a
// millisecond after the listener heard of it.
constexpr auto retry_after = std::chrono::milliseconds{1};

clock::time_point now_of(self_ptr self) {
  return self->state.setup.time_source->now();
}

const fed_cache* find_cache(const fed_tables& routes, const std::string& name) {
  for (auto& [table, caches] : routes)
    for (auto& c : caches)
      if (c.name == name) return &c;
  return nullptr;
}

// Answers the syncs whose requests are all answered, once the lease holds
// again: after a sync the fed caches serve hits (a repair lapses nothing,
// but a reconnection starts with the lease lapsed until a heartbeat proves
// the feed hears; `act` is called for that heartbeat).
void answer_syncs(self_ptr self) {
  auto& st = self->state;
  if (st.core->parked() > 0) return;
  if (st.setup.lease && !st.setup.lease->valid(now_of(self))) return;
  auto oldest = st.in_flight.empty() ? UINT64_MAX : *st.in_flight.begin();
  while (!st.syncs.empty() && st.syncs.begin()->first <= oldest) {
    st.syncs.begin()->second.deliver(true);
    st.syncs.erase(st.syncs.begin());
  }
}

void request_done(self_ptr self, uint64_t id) {
  self->state.in_flight.erase(id);
  answer_syncs(self);
}

// Turns the state's answer into messages.
void act(self_ptr self, change_actions a) {
  auto& st = self->state;
  auto& routes = *st.routes; // the snapshot the state decided on
  for (auto& g : a.groups) {
    auto left = std::make_shared<size_t>(g.parts.size());
    auto commit_us = g.commit_us;
    for (auto& p : g.parts) {
      auto cache = find_cache(routes, p.cache);
      auto id = st.next_request++;
      st.in_flight.insert(id);
      auto done = [self, id, left, commit_us] {
        if (--*left == 0)
          self->state.core->invalidated(commit_us, wall_clock_ns() / 1000);
        request_done(self, id);
      };
      if (!cache || p.shard >= cache->shards.size()) {
        done();
        continue;
      }
      // Cascading: what depends on a changed row goes too.
      self
        ->request(cache->shards[p.shard], caf::infinite, invalidate_atom::value,
                  std::move(p.keys), true)
        .then([done](uint64_t) { done(); }, [done](caf::error&) { done(); });
    }
  }
  for (auto& name : a.repairs) {
    auto cache = find_cache(routes, name);
    if (!cache) continue;
    bool known = std::find(a.clears.begin(), a.clears.end(), name) != a.clears.end();
    auto limit = known ? caf::timespan{0} : st.setup.repair_ttl;
    for (auto& s : cache->shards) {
      auto id = st.next_request++;
      st.in_flight.insert(id);
      auto done = [self, id] {
        self->state.core->repair_answered();
        request_done(self, id);
      };
      request_repair(self, s, limit, done);
    }
  }
  if (a.extend_lease && st.setup.lease) st.setup.lease->extend_to(*a.extend_lease);
  if (a.lapse_lease && st.setup.lease) st.setup.lease->limit_to(clock::time_point{});
  if (a.retry_parked && !st.retry_armed) {
    st.retry_armed = true;
    self->delayed_send(self, retry_after, pg_retry_atom::value, ++st.retry_generation);
  }
  answer_syncs(self);
}

// One snapshot of the routes per message.
change_state& fresh(self_ptr self) {
  auto& st = self->state;
  st.routes = st.setup.routes->snapshot();
  st.core->set_routes(st.routes);
  return *st.core;
}

} // namespace

change_source_actor::behavior_type change_source(self_ptr self,
                                                 change_source_setup setup) {
  auto& st = self->state;
  if (!setup.time_source) setup.time_source = std::make_shared<steady_clock>();
  if (!setup.routes) setup.routes = std::make_shared<feed_routes>();
  st.setup = std::move(setup);
  st.core = std::make_unique<change_state>(st.setup.limits);
  // A load before LISTEN could install a value whose change is never heard.
  if (st.setup.lease) st.setup.lease->limit_to(clock::time_point{});
  self->delayed_send(self, st.setup.limits.lease, pg_tick_atom::value);
  // Stopping: syncs still waiting hear `false` now (CAF 0.17 would leave
  // their callers waiting out their timeouts).
  self->set_exit_handler([self](const caf::exit_msg& msg) {
    auto& st = self->state;
    for (auto& [id, rp] : st.barriers)
      rp.deliver(false);
    for (auto& [mark, rp] : st.syncs)
      rp.deliver(false);
    st.barriers.clear();
    st.syncs.clear();
    self->quit(msg.reason);
  });
  return {
    [=](pg_changes_atom, const std::vector<pg_change>& cs, uint64_t malformed) {
      act(self, fresh(self).changes(cs, now_of(self), malformed));
    },
    [=](pg_up_atom) { act(self, fresh(self).up(now_of(self))); },
    [=](pg_down_atom, const std::string&) { fresh(self).down(now_of(self)); },
    [=](pg_heard_atom, int64_t sent_at, uint32_t usage_ppm, const std::string& triggers,
        bool with_changes) {
      auto sent = clock::time_point{clock::time_point::duration{sent_at}};
      act(self, fresh(self).heard(sent, usage_ppm, triggers, now_of(self), with_changes));
    },
    [=](pg_barrier_done_atom, uint64_t id) {
      // Everything the listener heard before the barrier was handled (one
      // sender: its messages arrive in order); the groups it closed are sent.
      auto& st = self->state;
      auto i = st.barriers.find(id);
      if (i == st.barriers.end()) return;
      st.syncs.emplace(st.next_request, std::move(i->second));
      st.barriers.erase(i);
      answer_syncs(self);
    },
    [=](pg_retry_atom, uint64_t generation) {
      auto& st = self->state;
      if (generation != st.retry_generation) return;
      st.retry_armed = false;
      act(self, fresh(self).retry_parked(now_of(self)));
    },
    [=](pg_tick_atom) {
      auto& st = self->state;
      st.core->note_time(now_of(self));
      self->delayed_send(self, st.setup.limits.lease, pg_tick_atom::value);
    },
    [=](pg_sync_atom) -> caf::result<bool> {
      auto& st = self->state;
      if (!st.setup.barrier) return false;
      if (st.barriers.size() >= max_waiting_syncs) { // the oldest gives way
        st.barriers.begin()->second.deliver(make_error(
          errc::timeout, "sync_changes: " + std::to_string(max_waiting_syncs) +
                           " newer syncs were waiting for the change feed"));
        st.barriers.erase(st.barriers.begin());
      }
      auto rp = self->make_response_promise<bool>();
      auto id = st.next_barrier++;
      st.barriers.emplace(id, rp);
      st.setup.barrier(id);
      return rp;
    },
    [=](pg_stats_atom) {
      auto& st = self->state;
      auto s = st.core->stats();
      s.syncs_waiting = st.barriers.size() + st.syncs.size();
      return s;
    },
  };
}

} // namespace karlton

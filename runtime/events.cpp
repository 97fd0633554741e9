// The runtime's events and dependencies API: emits, tag invalidations and
// subscriptions go to the event bus (and, on a node, to the other nodes).
#include <algorithm>
#include <tuple>

#include <caf/all.hpp>

#include "actors/bus_actor.hpp"
#include "actors/peer_actor.hpp"
#include "runtime/cache_core.hpp"
#include "runtime/runtime_detail.hpp"
#include <karlton/runtime/runtime.hpp>

namespace karlton {

namespace {

using detail::ask;
using detail::bus_timeout;

caf::error check_name(const std::string& what, const std::string& name) {
  if (name.empty()) return make_error(errc::invalid_option, what + " must not be empty");
  return caf::none;
}

// "a, b, c"
std::string joined(const std::vector<std::string>& xs) {
  std::string out;
  for (auto& x : xs)
    out += (out.empty() ? "" : ", ") + x;
  return out;
}

} // namespace

bus_actor runtime::ensure_bus() {
  // On a thread of its own: an invalidation's messages to the shards then come from
  // outside the scheduler, which wakes idle workers, so every shard starts
  // at once. Sent from a worker, they queue on that worker and the others
  // take them only when their idle sleep ends (relaxed-sleep-duration, 10
  // ms). karlton-bench tag-purge, p50 of 100k dependents on 2 shards: 17-20
  // ms on a worker, 8.5-11.5 ms detached (with values freed after the
  // answer, off the shards: shard_state::retire_unlinked).
  if (!bus_) bus_ = sys_->spawn<caf::detached>(bus, bus_options{});
  return bus_;
}

caf::expected<bus_actor> runtime::live_bus() {
  std::lock_guard<std::mutex> guard{caches_mtx_};
  if (stopped_) return detail::stopped_error();
  return ensure_bus();
}

caf::error runtime::broadcast(invalidation x, bool sync) {
  peer_actor p;
  {
    std::lock_guard<std::mutex> guard{caches_mtx_};
    p = peer_;
  }
  if (!p) return caf::none; // not a node: nobody else to tell
  x.issued_ns = wall_clock_ns();
  caf::error out;
  {
    // One sender for both messages: the sync comes after the broadcast.
    caf::scoped_actor self{*sys_};
    self->send(p, broadcast_atom::value, this_process_token(),
               std::vector<invalidation>{std::move(x)});
    if (sync)
      self->request(p, bus_timeout, sync_atom::value, this_process_token())
        .receive(
          [&](std::vector<std::string>& missing) {
            if (!missing.empty())
              out = make_error(errc::timeout,
                               "applied on this node, but not acknowledged in time by: " +
                                 joined(missing));
          },
          [&](caf::error& err) { out = std::move(err); });
  }
  forget_logger_of_this_thread();
  return out;
}

caf::expected<invalidation_summary>
runtime::reach_all(caf::expected<invalidation_summary> local, invalidation x) {
  auto told = broadcast(std::move(x), static_cast<bool>(local));
  if (!local || !told) return local;
  return told;
}

caf::expected<invalidation_summary> runtime::emit(const std::string& event,
                                                  const std::string& data) {
  if (auto err = refused_in_actor()) return err;
  if (auto err = check_name("an event name", event)) return err;
  auto b = live_bus();
  if (!b) return std::move(b.error());
  auto r =
    ask<invalidation_summary>(*sys_, *b, bus_timeout, emit_atom::value, event, data);
  // Told to the other nodes whatever this node's round said (see `reach_all`).
  return reach_all(std::move(r), {invalidation_kind::event, {}, event, data, 0});
}

caf::error runtime::emit_async(const std::string& event, const std::string& data) {
  if (auto err = check_name("an event name", event)) return err;
  auto b = live_bus();
  if (!b) return std::move(b.error());
  caf::anon_send(*b, emit_atom::value, event, data);
  return broadcast({invalidation_kind::event, {}, event, data, 0}, false);
}

caf::expected<invalidation_summary> runtime::invalidate_tag(const std::string& tag) {
  if (auto err = refused_in_actor()) return err;
  if (auto err = check_name("a tag", tag)) return err;
  auto b = live_bus();
  if (!b) return std::move(b.error());
  auto r = ask<invalidation_summary>(
    *sys_, *b, bus_timeout, invalidate_dependents_atom::value,
    std::vector<std::string>{tag}, invalidation_cause::tag, int32_t{-1});
  return reach_all(std::move(r), {invalidation_kind::tag, {}, tag, {}, 0});
}

caf::error runtime::invalidate_tag_async(const std::string& tag) {
  if (auto err = check_name("a tag", tag)) return err;
  auto b = live_bus();
  if (!b) return std::move(b.error());
  caf::anon_send(*b, invalidate_dependents_atom::value, std::vector<std::string>{tag},
                 invalidation_cause::tag, int32_t{-1});
  return broadcast({invalidation_kind::tag, {}, tag, {}, 0}, false);
}

caf::error
runtime::subscribe(const std::string& event,
                   std::function<void(const std::string&, const std::string&)> handler) {
  if (auto err = refused_in_actor()) return err;
  if (auto err = check_name("an event name", event)) return err;
  if (!handler) return make_error(errc::invalid_option, "the event handler is empty");
  using handler_fn = std::function<void(const std::string&, const std::string&)>;
  auto relay = [](event_subscriber_actor::pointer,
                  handler_fn f) -> event_subscriber_actor::behavior_type {
    return {[f](emit_atom, const std::string& e, const std::string& d) { f(e, d); }};
  };
  event_subscriber_actor actor;
  {
    std::lock_guard<std::mutex> guard{caches_mtx_};
    if (stopped_) return detail::stopped_error();
    actor = sys_->spawn(relay, std::move(handler));
    handler_actors_.push_back(actor);
  }
  return subscribe(event, std::move(actor));
}

caf::error runtime::subscribe(const std::string& event,
                              event_subscriber_actor subscriber) {
  if (auto err = refused_in_actor()) return err;
  if (auto err = check_name("an event name", event)) return err;
  if (!subscriber) return make_error(errc::invalid_option, "the subscriber is null");
  auto b = live_bus();
  if (!b) return std::move(b.error());
  // Synchronous, so an emit that follows is sure to find the subscriber.
  auto r = ask<caf::ok_atom>(*sys_, *b, bus_timeout, subscribe_atom::value, event,
                             std::move(subscriber));
  return r ? caf::error{} : std::move(r.error());
}

caf::expected<dependency_graph> runtime::dependencies_graph() {
  if (auto err = refused_in_actor()) return err;
  std::vector<std::pair<std::string, std::vector<shard_actor>>> caches;
  {
    std::lock_guard<std::mutex> guard{caches_mtx_};
    if (stopped_) return detail::stopped_error();
    for (auto& [name, core] : caches_) {
      std::vector<shard_actor> shards;
      for (auto& r : core->routes)
        shards.push_back(r.actor);
      caches.emplace_back(name, std::move(shards));
    }
  }
  dependency_graph out;
  for (auto& [name, shards] : caches)
    for (auto& s : shards) {
      auto edges = ask<graph_edges>(*sys_, s, bus_timeout, graph_atom::value);
      if (!edges) return std::move(edges.error());
      for (auto& [key, deps] : *edges)
        out.nodes.push_back(
          dependency_graph::node{name, std::move(key), std::move(deps)});
    }
  std::sort(out.nodes.begin(), out.nodes.end(), [](const auto& a, const auto& b) {
    return std::tie(a.cache, a.key) < std::tie(b.cache, b.key);
  });
  return out;
}

caf::expected<bus_stats> runtime::event_stats() {
  if (auto err = refused_in_actor()) return err;
  auto b = live_bus();
  if (!b) return std::move(b.error());
  return ask<bus_stats>(*sys_, *b, bus_timeout, bus_stats_atom::value);
}

} // namespace karlton

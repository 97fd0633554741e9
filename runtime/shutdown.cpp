// runtime::shutdown: stopping every actor of the runtime in an order that
// loses no acknowledged write it can still store, and reporting those it
// could not.
#include <algorithm>
#include <chrono>
#include <thread>

#include <caf/all.hpp>
#include <caf/io/middleman.hpp>

#include "actors/bus_actor.hpp"
#include "actors/flusher_actor.hpp"
#include "actors/peer_actor.hpp"
#include "actors/pg_listener_actor.hpp"
#include "base/rcu.hpp"
#include "runtime/cache_core.hpp"
#include <karlton/runtime/log.hpp>
#include <karlton/runtime/runtime.hpp>

namespace karlton {

namespace {

using cache_map = std::map<std::string, std::shared_ptr<detail::cache_core>>;

// Stops every actor `each_cache(core, stop)` passes to `stop`, in every
// cache, and waits until all of them are gone, calling `while_waiting` every
// 100 ms meanwhile.
template <class EachCache, class WhileWaiting>
void stop_in_every_cache(caf::scoped_actor& self, const cache_map& caches,
                         EachCache each_cache, WhileWaiting while_waiting) {
  size_t pending = 0;
  for (auto& [name, core] : caches)
    each_cache(*core, [&](const auto& actor) {
      if (!actor) return;
      self->monitor(actor);
      self->send_exit(actor, caf::exit_reason::user_shutdown);
      ++pending;
    });
  while (pending > 0)
    self->receive([&](const caf::down_msg&) { --pending; },
                  caf::after(std::chrono::milliseconds{100}) >> while_waiting);
}

template <class EachCache>
void stop_in_every_cache(caf::scoped_actor& self, const cache_map& caches,
                         EachCache each_cache) {
  stop_in_every_cache(self, caches, each_cache, [] {});
}

// What is left until `deadline`, none once it passed.
caf::timespan left_until(std::chrono::steady_clock::time_point deadline) {
  auto left = deadline - std::chrono::steady_clock::now();
  return std::max(caf::timespan{0}, std::chrono::duration_cast<caf::timespan>(left));
}

// Once the flushers are drained (or their deadline passed): a store call
// still running (a write waiting for a row lock another transaction holds)
// is asked to give up, or it would hold shutdown for as long as the lock.
// Asked again while one still runs: a cancel that came between two
// statements of a call reaches neither.
void interrupt_stores(const cache_map& caches) {
  for (auto& [name, core] : caches)
    if (core->options.backing_store) core->options.backing_store->interrupt();
}

template <class Handle>
void stop_and_await(caf::scoped_actor& self, const Handle& actor) {
  self->monitor(actor);
  self->send_exit(actor, caf::exit_reason::user_shutdown);
  self->receive([](const caf::down_msg&) {});
}

// The peer quits on its own message: its mailbox refuses exit messages,
// which any host that reaches the cluster port could send (peer_actor.hpp).
void stop_peer_and_await(caf::scoped_actor& self, const peer_actor& peer) {
  self->monitor(peer);
  self->send(peer, stop_atom::value, this_process_token());
  self->receive([](const caf::down_msg&) {});
}

// Caches with a write mode: the writes the store (write-through) or the flusher
// (write-back: its journal) has, and the calls queued that make more, are let
// finish, for at most `timeout`, before the shards stop. A shard stopped
// first failed them with `shut_down` while the store still took them, and told
// no other node: those kept the old value (rule 6); a write-back caller heard
// `shut_down` for a write the flusher then stored. No time to wait: none asked
// (each would time out at once and log a false alarm), one line said instead.
void settle_writes(caf::scoped_actor& self, const cache_map& caches,
                   caf::timespan timeout) {
  if (timeout <= caf::timespan{0}) {
    if (std::any_of(caches.begin(), caches.end(), [](const auto& c) {
          return c.second->options.writes != write_mode::none;
        }))
      log_line("karlton: shutdown with no time to wait: writes still with a store or "
               "flusher were not waited for; their callers hear shut_down");
    return;
  }
  struct asked {
    const std::string* cache;
    decltype(self->request(std::declval<shard_actor>(), timeout,
                           settle_atom::value)) answer;
  };
  std::vector<asked> all; // every shard asked at once, then each answer awaited
  for (auto& [name, core] : caches)
    if (core->options.writes != write_mode::none)
      for (auto& route : core->routes)
        all.push_back({&name, self->request(route.actor, timeout, settle_atom::value)});
  for (auto& a : all)
    a.answer.receive([](caf::ok_atom) {},
                     [&](caf::error&) {
                       log_line("karlton: a shard of cache '" + *a.cache +
                                "' still had writes with the store or flusher at "
                                "shutdown; their callers hear shut_down (write-through: "
                                "other nodes are not told)");
                     });
}

// Write-back: the flushers store what is dirty, all at once, until
// `deadline`. What was not stored goes in the report and, one line per
// cache, the log.
runtime::shutdown_report drain_flushers(caf::scoped_actor& self, const cache_map& caches,
                                        std::chrono::steady_clock::time_point deadline) {
  auto timeout = left_until(deadline);
  struct asked {
    const std::string* cache;
    const detail::cache_core* core;
    decltype(self->request(std::declval<flusher_actor>(), timeout, drain_atom::value,
                           timeout)) answer;
  };
  std::vector<asked> all; // every flusher asked at once, then each answer awaited
  for (auto& [name, core] : caches)
    if (core->flusher)
      all.push_back({&name, core.get(),
                     self->request(core->flusher, timeout + std::chrono::seconds{1},
                                   drain_atom::value, timeout)});
  runtime::shutdown_report report;
  for (auto& a : all) {
    auto& name = *a.cache;
    auto& core = a.core;
    uint64_t unstored = 0;
    bool answered = true;
    a.answer.receive([&](uint64_t n) { unstored = n; },
                     [&](caf::error&) { answered = false; });
    if (!answered) {
      // How many writes the flusher holds is unknown; say so, and count the
      // most it may hold.
      log_line("karlton: the flusher of cache '" + name +
               "' did not answer at shutdown; its dirty writes may be lost");
      report.unstored.emplace_back(name, core->options.max_dirty);
    } else if (unstored > 0) {
      log_line("karlton: " + std::to_string(unstored) + " write-back writes of cache '" +
               name + "' could not be stored before shutdown" +
               (core->options.journal_path.empty()
                  ? " and are lost"
                  : "; they stay in the journal and are stored on the next start"));
      report.unstored.emplace_back(name, unstored);
    }
  }
  return report;
}

} // namespace

runtime::shutdown_report runtime::shutdown(caf::timespan flush_timeout) {
  {
    std::lock_guard<std::mutex> guard{caches_mtx_};
    if (stopped_) return {};
    stopped_ = true;
  }
  // 1. No new calls; wait for callers that are between the check and the push.
  //    Direct reads miss from now on, so they become calls and are refused.
  gate_->closed.store(true, std::memory_order_seq_cst);
  std::atomic_thread_fence(std::memory_order_seq_cst); // pairs with submit's
  for (auto& [name, core] : caches_)
    for (auto& route : core->routes)
      route.reads->close();
  while (gate_->active.load(std::memory_order_seq_cst) > 0)
    std::this_thread::yield();
  auto report = stop_actors(flush_timeout);
  // Callers still talking to the stopped actors (force_flush, flush_stats, a
  // sync put waiting for the peer) are answered by now, or by their own
  // timeout: their requests bounce, and a flusher answers its waiters when
  // drained. Only then may their handles go, and the system after them.
  gate_->await_users();
  release_actor_handles();
  // 5. Whatever was still queued fails with shut_down, so no caller hangs.
  auto why =
    make_error(errc::shut_down, "the karlton runtime stopped before the call ran");
  for (auto& [name, core] : caches_)
    for (auto& route : core->routes)
      while (auto job = route.inbox->pop())
        job->abandon(why);
  // 6. What the shards' tables held is freed now, not at some later grace
  //    period: a service that stops a runtime gets its memory back.
  rcu::barrier();
  // 7. An owned actor system is destroyed with us (it waits for all actors).
  return report;
}

runtime::shutdown_report runtime::stop_actors(caf::timespan flush_timeout) {
  caf::scoped_actor self{*sys_};
  // 2. Stop the change feed (nothing invalidates a stopped shard), then the
  //    shards, and wait until they are gone: afterwards nobody pops from an
  //    ingress queue but us, and every write a shard handed to a flusher is
  //    in that flusher's mailbox.
  stop_change_feed(self);
  // One deadline for settling and draining: before, each waited up to
  // `flush_timeout`, and a stalled journal held shutdown for twice that.
  // Where a flusher is to drain, settling takes at most half of it: a slow
  // load or store in one cache must not leave the flushers no time to store.
  // (A year stands for forever: a longer wait would overflow the deadline.)
  flush_timeout = std::clamp(flush_timeout, caf::timespan{0},
                             caf::timespan{std::chrono::hours{24 * 365}});
  auto deadline = std::chrono::steady_clock::now() + flush_timeout;
  bool any_flusher = std::any_of(caches_.begin(), caches_.end(), [](const auto& c) {
    return c.second->flusher != nullptr;
  });
  settle_writes(self, caches_, any_flusher ? flush_timeout / 2 : flush_timeout);
  stop_in_every_cache(self, caches_, [](detail::cache_core& core, auto stop) {
    for (auto& route : core.routes)
      stop(route.actor);
  });
  // 3. Write-back: store what is dirty, until the deadline (half of
  //    `flush_timeout` at least).
  auto report = drain_flushers(self, caches_, deadline);
  // 4. Stop the rest (a busy loader or store call finishes first: one still
  //    running 100 ms on is asked to give up).
  stop_in_every_cache(
    self, caches_,
    [](detail::cache_core& core, auto stop) {
      for (auto& loader : core.loaders)
        stop(loader);
      stop(core.flusher);
      stop(core.store_writer);
      stop(core.journal_writer);
    },
    [this] { interrupt_stores(caches_); });
  if (peer_) {
    // Leave: what is pending goes out, then a goodbye, so the others
    // neither repair nor try to reconnect. Then close the port.
    self->request(peer_, std::chrono::seconds{2}, leave_atom::value, this_process_token())
      .receive([](caf::ok_atom) {}, [](caf::error&) {});
    sys_->middleman().close(cluster_port_);
    stop_peer_and_await(self, peer_);
  }
  if (bus_) stop_and_await(self, bus_);
  for (auto& h : handler_actors_)
    stop_and_await(self, h);
  return report;
}

void runtime::release_actor_handles() {
  // Detached actors must be destroyed, not just stopped, before the actor
  // system can go: drop their handles (cache handles keep the cores).
  for (auto& [name, core] : caches_) {
    core->loaders.clear();
    core->store_writer = nullptr;
    core->journal_writer = nullptr;
    core->flusher = nullptr;
  }
  std::lock_guard<std::mutex> guard{caches_mtx_}; // members() and others read them
  bus_ = nullptr;
  peer_ = nullptr;
  feed_ = nullptr;
  handler_actors_.clear();
}

} // namespace karlton

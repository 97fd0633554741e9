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
#include <karlton/messages/errors.hpp>
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

// One cache's part of step 3, run beside every other cache's, so that a slow
// load or store in one cache takes no time from another's flusher (before,
// every flusher waited for the slowest cache's shards).
struct cache_stop {
  std::string name;
  std::vector<shard_actor> shards;
  /// Caches with a write mode: how long the writes the store (write-through)
  /// or the flusher (write-back: its journal) has, and the calls queued that
  /// make more, are let finish before the shards stop; none asked if 0.
  caf::timespan settle_for{0};
  flusher_actor flusher; ///< write-back: drained once the shards are gone
  std::chrono::steady_clock::time_point deadline;
};

struct stop_state {
  cache_stop job;
  caf::typed_response_promise<uint64_t> answer; // to `stop_actors`, once
  size_t left = 0;                              // answers or downs still awaited
};

using stop_ptr = caf::stateful_actor<stop_state>*;

void stop_shards(stop_ptr self);
void drain(stop_ptr self);

// Answers `stop_actors` and quits.
void finish(stop_ptr self, caf::expected<uint64_t> unstored) {
  auto& answer = self->state.answer;
  if (answer.pending()) {
    if (unstored)
      answer.deliver(*unstored);
    else
      answer.deliver(std::move(unstored.error()));
  }
  self->quit();
}

// Asks every shard of the cache at once to settle; stops them when each
// answered or timed out. A shard stopped first failed its writes with
// `shut_down` while the store still took them, and told no other node: those
// kept the old value (rule 6); a write-back caller heard `shut_down` for a
// write the flusher then stored.
void settle_shards(stop_ptr self) {
  auto& job = self->state.job;
  if (job.settle_for <= caf::timespan{0} || job.shards.empty()) return stop_shards(self);
  self->state.left = job.shards.size();
  for (auto& shard : job.shards)
    self->request(shard, job.settle_for, settle_atom::value)
      .then(
        [self](caf::ok_atom) {
          if (--self->state.left == 0) stop_shards(self);
        },
        [self](caf::error&) {
          log_line("karlton: a shard of cache '" + self->state.job.name +
                   "' still had writes with the store or flusher at shutdown; "
                   "their callers hear shut_down (write-through: other nodes are "
                   "not told)");
          if (--self->state.left == 0) stop_shards(self);
        });
}

// Stops the cache's shards and drains once all are gone: afterwards nobody
// pops from their ingress queues but `runtime::shutdown`, and every write a
// shard handed to the flusher is in the flusher's mailbox.
void stop_shards(stop_ptr self) {
  self->state.left = 0;
  for (auto& shard : self->state.job.shards)
    self->state.left += shard ? 1 : 0;
  if (self->state.left == 0) return drain(self);
  self->set_down_handler([self](caf::down_msg&) {
    if (--self->state.left == 0) drain(self);
  });
  for (auto& shard : self->state.job.shards)
    if (shard) {
      self->monitor(shard);
      self->send_exit(shard, caf::exit_reason::user_shutdown);
    }
}

// Write-back: the flusher stores what is dirty until the deadline and answers
// how many writes it could not; an error if it did not answer.
void drain(stop_ptr self) {
  auto& job = self->state.job;
  if (!job.flusher) return finish(self, uint64_t{0});
  auto timeout = left_until(job.deadline);
  self
    ->request(job.flusher, timeout + std::chrono::seconds{1}, drain_atom::value, timeout)
    .then([self](uint64_t unstored) { finish(self, unstored); },
          [self](caf::error& e) { finish(self, std::move(e)); });
}

// Asked `drain`: settles, stops the shards, drains the flusher, answers, quits.
caf::behavior stop_cache(stop_ptr self, cache_stop job) {
  self->state.job = std::move(job);
  // A handler that throws (a log sink, say) still answers: `stop_actors`
  // waits for the answer without a timeout.
  self->set_exception_handler([self](std::exception_ptr& x) -> caf::error {
    std::string what = "an unknown exception";
    try {
      std::rethrow_exception(x);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    auto err = make_error(errc::shut_down,
                          "stopping cache '" + self->state.job.name + "' threw: " + what);
    if (self->state.answer.pending()) self->state.answer.deliver(err);
    return err; // the actor quits with it
  });
  return {[self](drain_atom) -> caf::result<uint64_t> {
    self->state.answer = self->make_response_promise<uint64_t>();
    settle_shards(self);
    return self->state.answer;
  }};
}

// What a cache's flusher answered, in the report and, one line per cache,
// the log.
void report_drain(const std::string& name, const detail::cache_core& core,
                  caf::expected<uint64_t> unstored, runtime::shutdown_report& report) {
  if (!unstored && !core.flusher) {
    log_line("karlton: " + describe(unstored.error()));
  } else if (!unstored) {
    // How many writes the flusher holds is unknown; say so, and count the
    // most it may hold.
    log_line("karlton: the flusher of cache '" + name +
             "' did not answer at shutdown; its dirty writes may be lost (" +
             describe(unstored.error()) + ")");
    report.unstored.emplace_back(name, core.options.max_dirty);
  } else if (*unstored > 0) {
    log_line("karlton: " + std::to_string(*unstored) + " write-back writes of cache '" +
             name + "' could not be stored before shutdown" +
             (core.options.journal_path.empty()
                ? " and are lost"
                : "; they stay in the journal and are stored on the next start"));
    report.unstored.emplace_back(name, *unstored);
  }
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
  // 2. Stop the change feed: nothing invalidates a stopped shard.
  stop_change_feed(self);
  // One deadline for settling and draining: before, each waited up to
  // `flush_timeout`, and a stalled journal held shutdown for twice that.
  // (A year stands for forever: a longer wait would overflow the deadline.)
  flush_timeout = std::clamp(flush_timeout, caf::timespan{0},
                             caf::timespan{std::chrono::hours{24 * 365}});
  auto deadline = std::chrono::steady_clock::now() + flush_timeout;
  bool unsettled = false; // a cache with a write mode given no time to settle
  // 3. Every cache at once: its writes settle, its shards stop, its flusher
  //    (write-back) stores what is dirty until the deadline. Where a flusher
  //    is to drain, settling takes at most half of `flush_timeout`: a slow
  //    load or store must not leave it no time to store.
  struct asked {
    const std::string* cache;
    const detail::cache_core* core;
    decltype(self->request(std::declval<caf::actor>(), caf::infinite,
                           drain_atom::value)) answer;
  };
  std::vector<asked> all;
  for (auto& [name, core] : caches_) {
    cache_stop job;
    job.name = name;
    for (auto& route : core->routes)
      job.shards.push_back(route.actor);
    if (core->options.writes != write_mode::none) {
      job.settle_for = core->flusher ? flush_timeout / 2 : flush_timeout;
      unsettled = unsettled || job.settle_for <= caf::timespan{0};
    }
    job.flusher = core->flusher;
    job.deadline = deadline;
    // Each step of it is bounded but the shards' stop, as before.
    auto stopper = sys_->spawn(stop_cache, std::move(job));
    all.push_back(
      {&name, core.get(), self->request(stopper, caf::infinite, drain_atom::value)});
  }
  if (unsettled)
    // No time to wait: none asked (each would time out at once and log a
    // false alarm), one line said instead.
    log_line("karlton: shutdown with no time to wait: writes still with a store or "
             "flusher were not waited for; their callers hear shut_down");
  shutdown_report report;
  for (auto& a : all)
    a.answer.receive(
      [&](uint64_t n) { report_drain(*a.cache, *a.core, n, report); },
      [&](caf::error& e) { report_drain(*a.cache, *a.core, std::move(e), report); });
  // 4. Stop the rest (a busy loader or store call finishes first: one still
  //    running 100 ms on is asked to give up). The shards again, should a
  //    cache's step 3 have failed before it stopped them (an exit to a
  //    stopped actor is answered by its down message at once).
  stop_in_every_cache(
    self, caches_,
    [](detail::cache_core& core, auto stop) {
      for (auto& route : core.routes)
        stop(route.actor);
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

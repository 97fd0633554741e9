#include "runtime/runtime.hpp"

#include <algorithm>
#include <random>

#include <arpa/inet.h>
#include <iostream>
#include <netinet/in.h>
#include <sys/socket.h>
#include <thread>
#include <tuple>
#include <unistd.h>

#include <caf/all.hpp>
#include <caf/io/middleman.hpp>
#include <caf/openssl/publish.hpp>

#include "actors/bus_actor.hpp"
#include "actors/flusher_actor.hpp"
#include "actors/peer_actor.hpp"
#include "actors/shard_actor.hpp"
#include "actors/store_actors.hpp"
#include "messages/errors.hpp"
#include "runtime/lifetime.hpp"
#include "runtime/log.hpp"

namespace karlton {

runtime::runtime(std::shared_ptr<const clock> time_source)
  : runtime(std::make_unique<runtime_config>(), std::move(time_source)) {}

runtime::runtime(std::unique_ptr<runtime_config> cfg,
                 std::shared_ptr<const clock> time_source)
  : owned_cfg_(std::move(cfg)),
    owned_sys_(std::make_unique<caf::actor_system>(*owned_cfg_)), sys_(owned_sys_.get()),
    clock_(std::move(time_source)), gate_(std::make_shared<detail::gate>()) {
  gate_->workers = detail::scheduler_threads(*sys_);
}

runtime::runtime(caf::actor_system& sys, std::shared_ptr<const clock> time_source)
  : sys_(&sys), clock_(std::move(time_source)), gate_(std::make_shared<detail::gate>()) {
  gate_->workers = detail::scheduler_threads(*sys_);
}

// CAF 0.17 parks a reference to the system's logger in a thread-local of
// every thread that constructs the system or spawns an actor, and
// ~actor_system waits until the logger is gone. A runtime made on one thread
// and destroyed on another would wait forever for the first thread's
// reference; dropping it right away lets any thread destroy the runtime.
void runtime::forget_logger_of_this_thread() {
  caf::logger::set_current_actor_system(nullptr);
}

namespace {

// Opens the journal at `path` and stores what it recovered: the writes a
// crash left unstored. Not those a stored mark covers: another writer may
// have stored a newer value since. Empties the journal after the store
// confirmed, whatever it held, so the numbers of this run's writes start anew.
caf::expected<journal> replay_journal(const std::string& path, store& db) {
  auto log = journal::open(path);
  if (!log) return std::move(log.error());
  if (!log->recovered().empty()) {
    if (auto err = db.write_batch(log->recovered()))
      return make_error(errc::store_failure,
                        "replaying journal " + path +
                          " into the store failed: " + describe(err));
  }
  if (log->size_bytes() > 0)
    if (auto err = log->reset()) return err;
  return log;
}

// Stops `actors` and waits until each is gone: what a failed create_cache
// spawned must not outlive it (a shutdown would not know of it).
void stop_and_wait(caf::actor_system& sys, const std::vector<caf::actor>& actors) {
  caf::scoped_actor self{sys};
  size_t pending = 0;
  for (auto& a : actors) {
    if (!a) continue;
    self->monitor(a);
    self->send_exit(a, caf::exit_reason::user_shutdown);
    ++pending;
  }
  for (; pending > 0; --pending)
    self->receive([](const caf::down_msg&) {});
}

// Until disarmed, stops every actor the core holds when it goes out of
// scope (not the user's loader actor: it is theirs).
struct rollback {
  caf::actor_system& sys;
  detail::cache_core& core;
  bool armed = true;
  ~rollback() {
    if (!armed) return;
    std::vector<caf::actor> actors;
    for (auto& r : core.routes)
      actors.push_back(caf::actor_cast<caf::actor>(r.actor));
    for (auto& l : core.loaders)
      actors.push_back(caf::actor_cast<caf::actor>(l));
    actors.push_back(caf::actor_cast<caf::actor>(core.flusher));
    actors.push_back(caf::actor_cast<caf::actor>(core.store_writer));
    actors.push_back(caf::actor_cast<caf::actor>(core.journal_writer));
    try {
      stop_and_wait(sys, actors);
    } catch (...) {
      // Out of memory while unwinding: nothing better to do than go on.
    }
    caf::logger::set_current_actor_system(nullptr); // see forget_logger_of_this_thread
  }
};

} // namespace

runtime::~runtime() {
  shutdown();
  // Actors the service spawned on an owned system keep ~actor_system waiting;
  // after a second (long enough for actors being stopped meanwhile), the log
  // says how many and how to stop them, so that no hang is silent.
  if (owned_sys_) detail::destroy_system(std::move(owned_sys_), std::chrono::seconds{1});
}

cache_options runtime::default_options(std::string name) const {
  auto opts = options_from(sys_->config());
  cache_options out = opts ? std::move(*opts) : cache_options{};
  out.name = std::move(name);
  return out;
}

caf::expected<cache> runtime::create_cache(cache_options opts) {
  if (auto err = validate(opts)) return err;
  std::lock_guard<std::mutex> guard{caches_mtx_};
  if (stopped_) return make_error(errc::shut_down, "the karlton runtime has stopped");
  if (caches_.count(opts.name) > 0)
    return make_error(errc::invalid_option,
                      "option name: a cache named '" + opts.name + "' already exists");
  if (opts.distributed != distribution::local && !peer_)
    return make_error(errc::invalid_option,
                      "option distribution: cache '" + opts.name +
                        "' is distributed, but this runtime is no node yet: call "
                        "start_cluster first");
  auto core = std::make_shared<detail::cache_core>();
  auto n =
    opts.shards > 0 ? opts.shards : std::max<size_t>(1, sys_->scheduler().num_workers());
  // Whatever may fail without an actor comes before the first spawn: the
  // queues (Boost throws for a capacity it cannot hold, validate() keeps it
  // in range) and the journal's replay below.
  std::vector<std::shared_ptr<ingress>> inboxes;
  for (size_t i = 0; i < n; ++i)
    inboxes.push_back(std::make_shared<ingress>(opts.ingress_capacity));
  // Bounds are split evenly; rounding up keeps a small cache from rounding to 0.
  shard_config scfg;
  scfg.default_ttl = opts.default_ttl;
  scfg.max_entries = (opts.max_entries + n - 1) / n;
  scfg.max_bytes = (opts.max_bytes + n - 1) / n;
  scfg.policy = opts.policy;
  scfg.max_key_bytes = opts.max_key_bytes;
  scfg.max_value_bytes = opts.max_value_bytes;
  scfg.on_removal = opts.on_removal;
  scfg.read_through = opts.loader || opts.load_actor || opts.backing_store;
  scfg.refresh_after = opts.refresh_after;
  scfg.early_refresh = opts.early_refresh;
  scfg.beta = opts.beta;
  scfg.random = opts.random;
  scfg.negative_ttl = opts.negative_ttl;
  scfg.stale_if_error = opts.stale_if_error;
  scfg.load_timeout = opts.load_timeout;
  // Twice the loader threads: each has one load to run and one ready behind
  // it. More would only queue in the loaders' mailboxes, where a hung loader
  // holds them; here they can time out and be refused.
  scfg.max_loads_out = size_t{2} * opts.loader_concurrency;
  // Writes acknowledged before a crash go to the store before anything else.
  std::shared_ptr<journal> log;
  if (!opts.journal_path.empty()) {
    auto opened = replay_journal(opts.journal_path, *opts.backing_store);
    if (!opened) return std::move(opened.error());
    log = std::make_shared<journal>(std::move(*opened));
  }
  // From the first spawn on, a failure (a thread that cannot start, a copy
  // of a user's callback that throws) stops what was spawned: nothing is
  // left running that no shutdown knows of, and the name stays free.
  rollback undo{*sys_, *core};
  // Loaders may block, so each worker gets a thread of its own (detached).
  // Without a loader function, a cache with a store loads from the store.
  auto load_fn = opts.loader          ? opts.loader
                 : opts.backing_store ? store_loader(opts.backing_store)
                                      : load_function{};
  if (load_fn)
    for (uint32_t i = 0; i < opts.loader_concurrency; ++i)
      core->loaders.push_back(sys_->spawn<caf::detached>(loader_worker, load_fn, clock_));
  auto shard_loaders = core->loaders;
  scfg.writes = opts.writes;
  if (opts.writes != write_mode::none)
    core->store_writer = sys_->spawn<caf::detached>(store_writer, opts.backing_store);
  if (opts.writes == write_mode::write_back) {
    scfg.budget = std::make_shared<dirty_budget>(opts.max_dirty);
    // Shorter than the call timeout, so a blocking put hears `overloaded`.
    scfg.room_wait = opts.call_timeout * 3 / 4;
    if (log) core->journal_writer = sys_->spawn<caf::detached>(journal_writer, log);
    flusher_setup fs;
    fs.config = flush_config{opts.batch_size, opts.flush_interval, opts.retry_base,
                             opts.retry_max, opts.seed};
    fs.config.journal = static_cast<bool>(log);
    fs.config.journal_max_bytes = opts.journal_max_bytes;
    fs.time_source = clock_;
    fs.writer = core->store_writer;
    // A service's loader actor answers the keys without pending writes.
    fs.readers =
      opts.load_actor ? std::vector<loader_actor>{opts.load_actor} : core->loaders;
    fs.journal = core->journal_writer;
    fs.budget = scfg.budget;
    core->flusher = sys_->spawn(flusher, std::move(fs));
    // Loads go through the flusher: it answers keys with pending writes itself.
    shard_loaders = {caf::actor_cast<loader_actor>(core->flusher)};
  }
  auto event_bus = ensure_bus();
  // Counted only once the bus learned the shards (below): a cache that
  // failed before must not leave a gap in the bus's numbering.
  auto cache_index = caches_on_bus_;
  scfg.depended = std::make_shared<depended_names>();
  scfg.distributed = opts.distributed != distribution::local;
  if (scfg.distributed) scfg.lease = lease_;
  for (size_t i = 0; i < n; ++i) {
    auto inbox = std::move(inboxes[i]);
    scfg.seed = opts.seed + i;
    // The user's loader actor is theirs: not in core->loaders, never stopped here.
    shard_setup setup;
    setup.config = scfg;
    setup.time_source = clock_;
    setup.inbox = inbox;
    setup.listener = opts.removal_listener;
    setup.loaders = shard_loaders;
    // Asked by request: in write-back mode through the flusher, which
    // delegates to it, so a read never passes a pending write (rule 3).
    setup.user_loader = opts.load_actor && core->flusher
                          ? caf::actor_cast<loader_actor>(core->flusher)
                          : opts.load_actor;
    setup.store_writer = core->store_writer;
    setup.write_flusher = core->flusher;
    setup.index = static_cast<uint32_t>(i);
    setup.acks_wait_for_journal = static_cast<bool>(core->journal_writer);
    setup.event_bus = event_bus;
    setup.cache_index = cache_index;
    if (scfg.distributed) {
      setup.peer = peer_;
      setup.cache_name = opts.name;
    }
    auto actor = sys_->spawn(shard, std::move(setup));
    core->routes.push_back(detail::shard_route{std::move(actor), std::move(inbox)});
  }
  {
    // The bus learns the shards before anyone can emit to them; it numbers
    // caches in the order they come, as we did.
    std::vector<shard_actor> shards;
    for (auto& r : core->routes)
      shards.push_back(r.actor);
    caf::scoped_actor self{*sys_};
    if (scfg.distributed)
      self->request(peer_, caf::infinite, shards_atom::value, opts.name, shards)
        .receive([](caf::ok_atom) {}, [](caf::error&) {});
    self
      ->request(event_bus, caf::infinite, shards_atom::value, opts.name,
                std::move(shards))
      .receive([](uint32_t) {}, [](caf::error&) {});
    ++caches_on_bus_;
  }
  undo.armed = false;
  scfg.on_removal = nullptr; // the copy in the core is only for checks
  core->shard_cfg = std::move(scfg);
  core->options = std::move(opts);
  core->runtime_gate = gate_;
  caches_.emplace(core->options.name, core);
  forget_logger_of_this_thread(); // spawning parked one here too
  return cache{std::move(core)};
}

caf::expected<cache> runtime::find_cache(const std::string& name) const {
  std::lock_guard<std::mutex> guard{caches_mtx_};
  auto i = caches_.find(name);
  if (i == caches_.end())
    return make_error(errc::unknown_cache,
                      "no cache named '" + name + "' in this runtime");
  return cache{i->second};
}

runtime::shutdown_report runtime::shutdown(caf::timespan flush_timeout) {
  shutdown_report report;
  {
    std::lock_guard<std::mutex> guard{caches_mtx_};
    if (stopped_) return report;
    stopped_ = true;
  }
  // 1. No new calls; wait for callers that are between the check and the push.
  gate_->closed.store(true, std::memory_order_seq_cst);
  while (gate_->active.load(std::memory_order_seq_cst) > 0)
    std::this_thread::yield();
  {
    caf::scoped_actor self{*sys_};
    auto stop_all = [&](auto each_cache) {
      size_t pending = 0;
      for (auto& [name, core] : caches_)
        each_cache(*core, [&](const auto& actor) {
          if (!actor) return;
          self->monitor(actor);
          self->send_exit(actor, caf::exit_reason::user_shutdown);
          ++pending;
        });
      for (; pending > 0; --pending)
        self->receive([](const caf::down_msg&) {});
    };
    // 2. Stop the shards and wait until they are gone: afterwards nobody pops
    //    from an ingress queue but us, and every write a shard handed to a
    //    flusher is in that flusher's mailbox.
    stop_all([](detail::cache_core& core, auto stop) {
      for (auto& route : core.routes)
        stop(route.actor);
    });
    // 3. Write-back: store what is dirty, for at most `flush_timeout`.
    for (auto& [name, core] : caches_) {
      if (!core->flusher) continue;
      uint64_t unstored = 0;
      self
        ->request(core->flusher, flush_timeout + std::chrono::seconds{1},
                  drain_atom::value, flush_timeout)
        .receive([&](uint64_t n) { unstored = n; },
                 [&](caf::error&) { unstored = UINT64_MAX; });
      if (unstored == UINT64_MAX) {
        // No answer: count what the flusher holds is unknown; say so.
        log_line("karlton: the flusher of cache '" + name +
                 "' did not answer at shutdown; its dirty writes may be lost");
        unstored = 0;
        report.unstored.emplace_back(name, core->options.max_dirty);
        continue;
      }
      if (unstored > 0) {
        log_line("karlton: " + std::to_string(unstored) +
                 " write-back writes of cache '" + name +
                 "' could not be stored before shutdown" +
                 (core->options.journal_path.empty()
                    ? " and are lost"
                    : "; they stay in the journal and are stored on the next start"));
        report.unstored.emplace_back(name, unstored);
      }
    }
    // 4. Stop the rest (a busy loader or store call finishes first).
    stop_all([](detail::cache_core& core, auto stop) {
      for (auto& loader : core.loaders)
        stop(loader);
      stop(core.flusher);
      stop(core.store_writer);
      stop(core.journal_writer);
    });
    if (peer_) {
      // Leave: what is pending goes out, then a goodbye, so the others
      // neither repair nor try to reconnect. Then close the port.
      self->request(peer_, std::chrono::seconds{2}, leave_atom::value)
        .receive([](caf::ok_atom) {}, [](caf::error&) {});
      sys_->middleman().close(cluster_port_);
      self->monitor(peer_);
      self->send_exit(peer_, caf::exit_reason::user_shutdown);
      self->receive([](const caf::down_msg&) {});
    }
    if (bus_) {
      self->monitor(bus_);
      self->send_exit(bus_, caf::exit_reason::user_shutdown);
      self->receive([](const caf::down_msg&) {});
    }
    for (auto& h : handler_actors_) {
      self->monitor(h);
      self->send_exit(h, caf::exit_reason::user_shutdown);
      self->receive([](const caf::down_msg&) {});
    }
  }
  // Callers still talking to the stopped actors (force_flush, flush_stats, a
  // sync put waiting for the peer) are answered by now, or by their own
  // timeout: their requests bounce, and a flusher answers its waiters when
  // drained. Only then may their handles go, and the system after them.
  gate_->await_users();
  // Detached actors must be destroyed, not just stopped, before the actor
  // system can go: drop their handles (cache handles keep the cores).
  for (auto& [name, core] : caches_) {
    core->loaders.clear();
    core->store_writer = nullptr;
    core->journal_writer = nullptr;
    core->flusher = nullptr;
  }
  {
    std::lock_guard<std::mutex> guard{caches_mtx_}; // members() and others read them
    bus_ = nullptr;
    peer_ = nullptr;
    handler_actors_.clear();
  }
  // 5. Whatever was still queued fails with shut_down, so no caller hangs.
  auto why =
    make_error(errc::shut_down, "the karlton runtime stopped before the call ran");
  for (auto& [name, core] : caches_)
    for (auto& route : core->routes)
      while (auto job = route.inbox->pop())
        job->abandon(why);
  // 6. An owned actor system is destroyed with us (it waits for all actors).
  return report;
}

bus_actor runtime::ensure_bus() {
  // On a thread of its own: a purge's messages to the shards then come from
  // outside the scheduler, which wakes idle workers, so every shard starts
  // at once. Sent from a worker, they queue on that worker and the others
  // take them only when their idle sleep ends (relaxed-sleep-duration, 10
  // ms). karlton-bench tag-purge, p50 of 100k dependents on 2 shards: 17-20
  // ms on a worker, 8.5-11.5 ms detached (with values freed after the
  // answer, see shard_state::free_buried).
  if (!bus_) bus_ = sys_->spawn<caf::detached>(bus, bus_options{});
  return bus_;
}

namespace {

// A synchronous request from this plain thread (rare calls: a scoped_actor's
// cost does not matter here).
template <class T, class Handle, class... Ts>
caf::expected<T> ask(caf::actor_system& sys, const Handle& dest, caf::timespan timeout,
                     Ts... xs) {
  caf::expected<T> out = make_error(errc::timeout, "no answer in time");
  {
    caf::scoped_actor self{sys};
    self->request(dest, timeout, xs...)
      .receive([&](T& x) { out = std::move(x); },
               [&](caf::error& err) { out = std::move(err); });
  }
  caf::logger::set_current_actor_system(nullptr); // see forget_logger_of_this_thread
  return out;
}

constexpr caf::timespan bus_timeout = std::chrono::minutes{1};

caf::error check_name(const std::string& what, const std::string& name) {
  if (name.empty()) return make_error(errc::invalid_option, what + " must not be empty");
  return caf::none;
}

caf::error stopped_error() {
  return make_error(errc::shut_down, "the karlton runtime has stopped");
}

// A TCP port that is free on `host` now (the kernel's pick).
caf::expected<uint16_t> free_port(const std::string& host) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return make_error(errc::invalid_option, "cannot open a socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = 0;
  if (::inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) {
    ::close(fd);
    return make_error(errc::invalid_option, "option karlton.cluster.host: '" + host +
                                              "' is not an IPv4 address");
  }
  socklen_t len = sizeof(addr);
  bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
            ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
  ::close(fd);
  if (!ok)
    return make_error(errc::invalid_option,
                      "option karlton.cluster.host: cannot listen on " + host);
  return ntohs(addr.sin_port);
}

// "a, b, c"
std::string joined(const std::vector<std::string>& xs) {
  std::string out;
  for (auto& x : xs)
    out += (out.empty() ? "" : ", ") + x;
  return out;
}

} // namespace

// The bus (spawned if needed), or `shut_down`.
#define KARLTON_LIVE_BUS(var)                                                            \
  bus_actor var;                                                                         \
  {                                                                                      \
    std::lock_guard<std::mutex> guard{caches_mtx_};                                      \
    if (stopped_) return stopped_error();                                                \
    var = ensure_bus();                                                                  \
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
    self->send(p, broadcast_atom::value, std::vector<invalidation>{std::move(x)});
    if (sync)
      self->request(p, bus_timeout, sync_atom::value)
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

caf::expected<purge_summary> runtime::emit(const std::string& event,
                                           const std::string& data) {
  if (auto err = check_name("an event name", event)) return err;
  KARLTON_LIVE_BUS(b)
  auto r = ask<purge_summary>(*sys_, b, bus_timeout, emit_atom::value, event, data);
  if (!r) return r;
  if (auto err = broadcast({invalidation_kind::event, {}, event, data, 0}, true))
    return err;
  return r;
}

caf::error runtime::emit_async(const std::string& event, const std::string& data) {
  if (auto err = check_name("an event name", event)) return err;
  KARLTON_LIVE_BUS(b)
  caf::anon_send(b, emit_atom::value, event, data);
  return broadcast({invalidation_kind::event, {}, event, data, 0}, false);
}

caf::expected<purge_summary> runtime::invalidate_tag(const std::string& tag) {
  if (auto err = check_name("a tag", tag)) return err;
  KARLTON_LIVE_BUS(b)
  auto r =
    ask<purge_summary>(*sys_, b, bus_timeout, purge_atom::value,
                       std::vector<std::string>{tag}, purge_cause::tag, int32_t{-1});
  if (!r) return r;
  if (auto err = broadcast({invalidation_kind::tag, {}, tag, {}, 0}, true)) return err;
  return r;
}

caf::error runtime::invalidate_tag_async(const std::string& tag) {
  if (auto err = check_name("a tag", tag)) return err;
  KARLTON_LIVE_BUS(b)
  caf::anon_send(b, purge_atom::value, std::vector<std::string>{tag}, purge_cause::tag,
                 int32_t{-1});
  return broadcast({invalidation_kind::tag, {}, tag, {}, 0}, false);
}

caf::error
runtime::subscribe(const std::string& event,
                   std::function<void(const std::string&, const std::string&)> handler) {
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
    if (stopped_) return stopped_error();
    actor = sys_->spawn(relay, std::move(handler));
    handler_actors_.push_back(actor);
  }
  return subscribe(event, std::move(actor));
}

caf::error runtime::subscribe(const std::string& event,
                              event_subscriber_actor subscriber) {
  if (auto err = check_name("an event name", event)) return err;
  if (!subscriber) return make_error(errc::invalid_option, "the subscriber is null");
  KARLTON_LIVE_BUS(b)
  // Synchronous, so an emit that follows is sure to find the subscriber.
  auto r = ask<caf::ok_atom>(*sys_, b, bus_timeout, subscribe_atom::value, event,
                             std::move(subscriber));
  return r ? caf::error{} : std::move(r.error());
}

caf::expected<dependency_graph> runtime::dependencies_graph() {
  std::vector<std::pair<std::string, std::vector<shard_actor>>> caches;
  {
    std::lock_guard<std::mutex> guard{caches_mtx_};
    if (stopped_) return stopped_error();
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
  KARLTON_LIVE_BUS(b)
  return ask<bus_stats>(*sys_, b, bus_timeout, bus_stats_atom::value);
}

#undef KARLTON_LIVE_BUS

// -- distributed nodes ------------------------------------------------------------

caf::expected<uint16_t> runtime::start_cluster(cluster_options opts) {
  if (auto err = validate(opts)) return err;
  if (!sys_->has_middleman())
    return make_error(errc::invalid_option,
                      "the actor system has no middleman: load caf::io::middleman in its "
                      "config (runtime_config does)");
  if (opts.tls && !sys_->has_openssl_manager())
    return make_error(
      errc::invalid_option,
      "option karlton.cluster.tls: the actor system has no OpenSSL module: "
      "load caf::openssl::manager in its config (runtime_config does)");
  peer_actor p;
  {
    std::lock_guard<std::mutex> guard{caches_mtx_};
    if (stopped_) return stopped_error();
    if (peer_)
      return make_error(errc::invalid_option,
                        "start_cluster: this runtime is a node already");
    peer_setup setup;
    static_cast<peer_options&>(setup) = opts; // the options both share
    setup.lease = std::make_shared<read_lease>();
    setup.time_source = clock_;
    setup.event_bus = ensure_bus();
    setup.me.host = opts.host;
    setup.me.port = opts.port;
    setup.me.incarnation = std::random_device{}() ^ (uint64_t(wall_clock_ns()) << 16);
    if (opts.port == 0) {
      // The node's name and member info carry its port: pick it first.
      auto free = free_port(opts.host);
      if (!free) return std::move(free.error());
      setup.me.port = *free;
    }
    setup.me.name = opts.node_name.empty()
                      ? opts.host + ":" + std::to_string(setup.me.port)
                      : opts.node_name;
    auto me = setup.me;
    auto lease = setup.lease;
    p = sys_->spawn(peer, std::move(setup));
    auto port = opts.tls ? caf::openssl::publish(p, me.port, opts.host.c_str(), true)
                         : sys_->middleman().publish(p, me.port, opts.host.c_str(), true);
    if (!port) {
      caf::anon_send_exit(p, caf::exit_reason::user_shutdown);
      return std::move(port.error());
    }
    peer_ = p;
    lease_ = lease;
    cluster_port_ = *port;
    node_name_ = me.name;
  }
  // One member is enough: it tells us the rest. If no seed answers now, the
  // peer keeps trying them all in the background (with backoff), so nodes
  // may start in any order.
  std::vector<member_info> unreached;
  for (auto& seed : opts.seeds) {
    auto colon = seed.rfind(':');
    auto host = seed.substr(0, colon);
    auto port = static_cast<uint16_t>(std::stoul(seed.substr(colon + 1)));
    if (!join(host, port)) {
      unreached.clear();
      break;
    }
    unreached.push_back(member_info{seed, host, port, 0});
  }
  if (!unreached.empty()) {
    caf::scoped_actor self{*sys_}; // the peer takes joins from this node only
    for (auto& target : unreached)
      self->send(p, join_atom::value, std::move(target));
  }
  forget_logger_of_this_thread();
  return cluster_port_;
}

caf::error runtime::join(const std::string& host, uint16_t port) {
  peer_actor p;
  {
    std::lock_guard<std::mutex> guard{caches_mtx_};
    if (stopped_) return stopped_error();
    p = peer_;
  }
  if (!p) return make_error(errc::invalid_option, "join: call start_cluster first");
  auto r =
    ask<caf::ok_atom>(*sys_, p, std::chrono::seconds{30}, join_atom::value, host, port);
  return r ? caf::error{} : std::move(r.error());
}

caf::expected<std::vector<member_info>> runtime::members() {
  peer_actor p;
  {
    std::lock_guard<std::mutex> guard{caches_mtx_};
    if (stopped_) return stopped_error();
    p = peer_;
  }
  if (!p) return std::vector<member_info>{};
  return ask<std::vector<member_info>>(*sys_, p, bus_timeout, members_atom::value);
}

caf::expected<peer_stats> runtime::cluster_stats() {
  peer_actor p;
  {
    std::lock_guard<std::mutex> guard{caches_mtx_};
    if (stopped_) return stopped_error();
    p = peer_;
  }
  if (!p) return peer_stats{};
  return ask<peer_stats>(*sys_, p, bus_timeout, peer_stats_atom::value);
}

std::string runtime::node_name() const {
  std::lock_guard<std::mutex> guard{caches_mtx_};
  return node_name_;
}

uint16_t runtime::cluster_port() const {
  std::lock_guard<std::mutex> guard{caches_mtx_};
  return cluster_port_;
}

} // namespace karlton

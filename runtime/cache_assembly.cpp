// runtime::create_cache: translating a cache's options into the setups of
// its actors (shards, loaders, store writer, flusher, journal writer),
// spawning them in an order that can be rolled back, and announcing the
// shards to the bus and the peer.
#include <algorithm>

#include <caf/all.hpp>

#include "actors/bus_actor.hpp"
#include "actors/feed_routes.hpp"
#include "actors/flusher_actor.hpp"
#include "actors/peer_actor.hpp"
#include "actors/shard_actor.hpp"
#include "actors/store_actors.hpp"
#include "runtime/cache_core.hpp"
#include "runtime/runtime_detail.hpp"
#include <karlton/runtime/log.hpp>
#include <karlton/runtime/runtime.hpp>

namespace karlton {

namespace {

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
    // See runtime::forget_logger_of_this_thread.
    caf::logger::set_current_actor_system(nullptr);
  }
};

// The options every shard of a cache of `n` shards shares. Bounds are split
// evenly; rounding up keeps a small cache from rounding to 0.
shard_options shard_config_for(const cache_options& opts, size_t n) {
  shard_options scfg;
  scfg.default_ttl = opts.default_ttl;
  scfg.max_entries = (opts.max_entries + n - 1) / n;
  scfg.max_bytes = (opts.max_bytes + n - 1) / n;
  scfg.policy = opts.policy;
  scfg.max_key_bytes = opts.max_key_bytes;
  scfg.max_value_bytes = opts.max_value_bytes;
  scfg.on_removal = opts.on_removal;
  scfg.change_listener = opts.change_listener;
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
  // holds them; here they can time out and be refused. (Per shard, as the
  // queue is: n shards may hand a hung loader n times as many.) A service's
  // loader actor answers asynchronously and runs on no thread of ours, so
  // it gets as many as may wait (a bound still, for a hung service).
  scfg.max_loads_out =
    opts.load_actor ? scfg.max_loads_queued : size_t{2} * opts.loader_concurrency;
  scfg.writes = opts.writes;
  if (opts.writes == write_mode::write_back)
    // Shorter than the call timeout, so a blocking put hears `overloaded`.
    scfg.room_wait = opts.call_timeout * 3 / 4;
  scfg.depended = std::make_shared<depended_names>();
  scfg.distributed = opts.distributed != distribution::local;
  return scfg;
}

// A fed cache skips the notifications of its store's own commits: every
// commit made through that store object, whichever cache made it. A second
// cache over the same object (fed or not) would have its writes skipped and
// the fed cache keep stale values: each needs a store of its own.
caf::error
check_own_store(const std::map<std::string, std::shared_ptr<detail::cache_core>>& caches,
                const feed_routes* fed, const cache_options& opts) {
  if (!opts.backing_store) return caf::none;
  auto origin = opts.backing_store->origin();
  if (!origin) return caf::none;
  auto shared_with = [&](const std::string& other) {
    return make_error(errc::invalid_option,
                      "option backing_store: cache '" + opts.name +
                        "' shares its store with cache '" + other +
                        "', and one of them is fed the database's changes; open one "
                        "postgres_store per cache (a fed cache skips the notifications "
                        "of every commit made through its store)");
  };
  if (opts.store_changes) {
    for (auto& [name, core] : caches)
      if (auto theirs = core->options.backing_store
                          ? core->options.backing_store->origin()
                          : std::nullopt;
          theirs && theirs->own == origin->own)
        return shared_with(name);
  } else if (fed) {
    for (auto& [table, fed_caches] : *fed->snapshot())
      for (auto& c : fed_caches)
        if (c.own == origin->own) return shared_with(c.name);
  }
  return caf::none;
}

flusher_setup flusher_setup_for(const cache_options& opts, const detail::cache_core& core,
                                std::shared_ptr<const clock> time_source,
                                std::shared_ptr<dirty_budget> budget) {
  flusher_setup fs;
  fs.config = flush_options{opts.batch_size, opts.flush_interval, opts.retry_base,
                            opts.retry_max, opts.seed};
  fs.config.journal = static_cast<bool>(core.journal_writer);
  fs.config.journal_max_bytes = opts.journal_max_bytes;
  fs.time_source = std::move(time_source);
  fs.writer = core.store_writer;
  // A service's loader actor answers the keys without pending writes.
  fs.readers =
    opts.load_actor ? std::vector<loader_actor>{opts.load_actor} : core.loaders;
  fs.journal = core.journal_writer;
  fs.budget = std::move(budget);
  fs.warn = [name = opts.name](const std::string& line) {
    log_line(line + " (cache '" + name + "')");
  };
  return fs;
}

} // namespace

caf::expected<cache> runtime::create_cache(cache_options opts) {
  if (auto err = refused_in_actor()) return err;
  if (auto err = validate(opts)) return err;
  std::lock_guard<std::mutex> guard{caches_mtx_};
  if (stopped_) return detail::stopped_error();
  if (caches_.count(opts.name) > 0)
    return make_error(errc::invalid_option,
                      "option name: a cache named '" + opts.name + "' already exists");
  if (opts.distributed != distribution::local && !peer_)
    return make_error(errc::invalid_option,
                      "option distribution: cache '" + opts.name +
                        "' is distributed, but this runtime is no node yet: call "
                        "start_cluster first");
  if (opts.store_changes && !feed_)
    return make_error(errc::invalid_option,
                      "option store_changes: cache '" + opts.name +
                        "' is fed the database's changes, but this runtime has no "
                        "change feed yet: call start_change_feed first");
  if (auto err = check_own_store(caches_, fed_.get(), opts)) return err;
  auto core = std::make_shared<detail::cache_core>();
  // One per worker at most 1024, as an explicit count: a node started with
  // scheduler.max-threads=1100 made 1100 shards for each cache.
  auto n = opts.shards > 0
             ? opts.shards
             : std::clamp<size_t>(sys_->scheduler().num_workers(), 1, max_shards);
  // Whatever may fail without an actor comes before the first spawn: the
  // queues (their slots are allocated here; validate() keeps the capacity in
  // range) and the journal's replay below.
  std::vector<std::shared_ptr<ingress>> inboxes;
  for (size_t i = 0; i < n; ++i)
    inboxes.push_back(std::make_shared<ingress>(opts.ingress_capacity));
  auto scfg = shard_config_for(opts, n);
  // Writes acknowledged before a crash go to the store before anything else.
  std::shared_ptr<journal> log;
  if (!opts.journal_path.empty()) {
    auto opened =
      detail::replay_journal(opts.journal_path, opts.name, *opts.backing_store);
    if (!opened) return std::move(opened.error());
    log = std::make_shared<journal>(std::move(*opened));
  }
  // From the first spawn on, a failure (a thread that cannot start, a copy
  // of a user's callback that throws) stops what was spawned: nothing is
  // left running that no shutdown knows of, and the name stays free.
  rollback undo{*sys_, *core};
  auto shard_loaders = spawn_workers(opts, log, scfg, *core);
  if (scfg.distributed) scfg.lease.cluster = lease_;
  if (opts.store_changes) scfg.lease.changes = feed_lease_;
  spawn_shards(opts, scfg, shard_loaders, std::move(inboxes), *core);
  if (opts.store_changes) feed_changes_to(opts, *core);
  undo.armed = false;
  scfg.on_removal = nullptr; // the copy in the core is only for checks
  core->shard_cfg = std::move(scfg);
  core->options = std::move(opts);
  core->runtime_gate = gate_;
  caches_.emplace(core->options.name, core);
  forget_logger_of_this_thread(); // spawning parked one here too
  return cache{std::move(core)};
}

std::vector<loader_actor> runtime::spawn_workers(const cache_options& opts,
                                                 std::shared_ptr<journal> log,
                                                 shard_options& scfg,
                                                 detail::cache_core& core) {
  // Loaders may block, so each worker gets a thread of its own (detached).
  // Without a loader function, a cache with a store loads from the store.
  auto load_fn = opts.loader          ? opts.loader
                 : opts.backing_store ? store_loader(opts.backing_store)
                                      : load_function{};
  if (load_fn)
    for (uint32_t i = 0; i < opts.loader_concurrency; ++i)
      core.loaders.push_back(sys_->spawn<caf::detached>(loader_worker, load_fn, clock_));
  if (opts.writes != write_mode::none)
    core.store_writer = sys_->spawn<caf::detached>(store_writer, opts.backing_store);
  if (opts.writes != write_mode::write_back) return core.loaders;
  scfg.budget = std::make_shared<dirty_budget>(opts.max_dirty);
  if (log) core.journal_writer = sys_->spawn<caf::detached>(journal_writer, log);
  core.flusher = sys_->spawn(flusher, flusher_setup_for(opts, core, clock_, scfg.budget));
  // Loads go through the flusher: it answers keys with pending writes itself.
  return {caf::actor_cast<loader_actor>(core.flusher)};
}

void runtime::spawn_shards(const cache_options& opts, shard_options& scfg,
                           const std::vector<loader_actor>& shard_loaders,
                           std::vector<std::shared_ptr<ingress>> inboxes,
                           detail::cache_core& core) {
  auto event_bus = ensure_bus();
  // Counted only once the bus learned the shards (below): a cache that
  // failed before must not leave a gap in the bus's numbering.
  auto cache_index = caches_on_bus_;
  for (size_t i = 0; i < inboxes.size(); ++i) {
    scfg.seed = opts.seed + i;
    // The user's loader actor is theirs: not in core.loaders, never stopped here.
    shard_setup setup;
    setup.config = scfg;
    auto reads = std::make_shared<read_side>(clock_, scfg.lease);
    setup.config.reads = reads;
    setup.time_source = clock_;
    setup.inbox = inboxes[i];
    setup.listener = opts.removal_listener;
    setup.loaders = shard_loaders;
    // Asked by request: in write-back mode through the flusher, which
    // delegates to it, so a read never passes a pending write (rule 3).
    setup.user_loader = opts.load_actor && core.flusher
                          ? caf::actor_cast<loader_actor>(core.flusher)
                          : opts.load_actor;
    setup.store_writer = core.store_writer;
    setup.write_flusher = core.flusher;
    setup.index = static_cast<uint32_t>(i);
    setup.acks_wait_for_journal = static_cast<bool>(core.journal_writer);
    setup.event_bus = event_bus;
    setup.cache_index = cache_index;
    if (scfg.distributed) {
      setup.peer = peer_;
      setup.cache_name = opts.name;
    }
    auto actor = sys_->spawn(shard, std::move(setup));
    core.routes.push_back(
      detail::shard_route{std::move(actor), std::move(inboxes[i]), std::move(reads)});
  }
  // The bus learns the shards before anyone can emit to them; it numbers
  // caches in the order they come, as we did.
  std::vector<shard_actor> shards;
  for (auto& r : core.routes)
    shards.push_back(r.actor);
  caf::scoped_actor self{*sys_};
  if (scfg.distributed)
    self
      ->request(peer_, caf::infinite, shards_atom::value, this_process_token(), opts.name,
                shards)
      .receive([](caf::ok_atom) {}, [](caf::error&) {});
  self
    ->request(event_bus, caf::infinite, shards_atom::value, opts.name, std::move(shards))
    .receive([](uint32_t) {}, [](caf::error&) {});
  ++caches_on_bus_;
}

void runtime::feed_changes_to(const cache_options& opts, detail::cache_core& core) {
  // validate() made sure the store reports its origin.
  auto origin = opts.backing_store->origin();
  fed_cache fed{opts.name, {}, origin->own};
  for (auto& r : core.routes)
    fed.shards.push_back(r.actor);
  fed_->add(origin->table, std::move(fed));
}

} // namespace karlton

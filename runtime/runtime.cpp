#include "runtime/runtime.hpp"

#include <thread>

#include <caf/all.hpp>

#include "actors/shard_actor.hpp"
#include "messages/errors.hpp"

namespace karlton {

runtime::runtime(std::shared_ptr<const clock> time_source)
  : runtime(std::make_unique<runtime_config>(), std::move(time_source)) {}

runtime::runtime(std::unique_ptr<runtime_config> cfg,
                 std::shared_ptr<const clock> time_source)
  : owned_cfg_(std::move(cfg)),
    owned_sys_(std::make_unique<caf::actor_system>(*owned_cfg_)), sys_(owned_sys_.get()),
    clock_(std::move(time_source)), gate_(std::make_shared<detail::gate>()) {}

runtime::runtime(caf::actor_system& sys, std::shared_ptr<const clock> time_source)
  : sys_(&sys), clock_(std::move(time_source)), gate_(std::make_shared<detail::gate>()) {}

// CAF 0.17 parks a reference to the system's logger in a thread-local of
// every thread that constructs the system or spawns an actor, and
// ~actor_system waits until the logger is gone. A runtime made on one thread
// and destroyed on another would wait forever for the first thread's
// reference; dropping it right away lets any thread destroy the runtime.
void runtime::forget_logger_of_this_thread() {
  caf::logger::set_current_actor_system(nullptr);
}

runtime::~runtime() {
  shutdown();
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
  auto core = std::make_shared<detail::cache_core>();
  auto n =
    opts.shards > 0 ? opts.shards : std::max<size_t>(1, sys_->scheduler().num_workers());
  // Bounds are split evenly; rounding up keeps a small cache from rounding to 0.
  shard_config scfg;
  scfg.default_ttl = opts.default_ttl;
  scfg.max_entries = (opts.max_entries + n - 1) / n;
  scfg.max_bytes = (opts.max_bytes + n - 1) / n;
  scfg.policy = opts.policy;
  scfg.max_key_bytes = opts.max_key_bytes;
  scfg.max_value_bytes = opts.max_value_bytes;
  scfg.on_removal = opts.on_removal;
  scfg.read_through = static_cast<bool>(opts.loader);
  scfg.refresh_after = opts.refresh_after;
  scfg.early_refresh = opts.early_refresh;
  scfg.beta = opts.beta;
  scfg.random = opts.random;
  // Loaders may block, so each worker gets a thread of its own (detached).
  if (opts.loader)
    for (uint32_t i = 0; i < opts.loader_concurrency; ++i)
      core->loaders.push_back(
        sys_->spawn<caf::detached>(loader_worker, opts.loader, clock_));
  for (size_t i = 0; i < n; ++i) {
    auto inbox = std::make_shared<ingress>(opts.ingress_capacity);
    scfg.seed = opts.seed + i;
    shard_setup setup{scfg, clock_, inbox, opts.removal_listener, core->loaders};
    auto actor = sys_->spawn(shard, std::move(setup));
    core->routes.push_back(detail::shard_route{std::move(actor), std::move(inbox)});
  }
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

void runtime::shutdown() {
  {
    std::lock_guard<std::mutex> guard{caches_mtx_};
    if (stopped_) return;
    stopped_ = true;
  }
  // 1. No new calls; wait for callers that are between the check and the push.
  gate_->closed.store(true, std::memory_order_seq_cst);
  while (gate_->active.load(std::memory_order_seq_cst) > 0)
    std::this_thread::yield();
  // 2. Stop the shards and wait until they are gone: afterwards nobody pops
  //    from an ingress queue but us.
  {
    caf::scoped_actor self{*sys_};
    size_t pending = 0;
    auto stop = [&](const auto& actor) {
      self->monitor(actor);
      self->send_exit(actor, caf::exit_reason::user_shutdown);
      ++pending;
    };
    for (auto& [name, core] : caches_) {
      for (auto& route : core->routes)
        stop(route.actor);
      for (auto& loader : core->loaders)
        stop(loader); // a busy one finishes its load first
    }
    for (; pending > 0; --pending)
      self->receive([](const caf::down_msg&) {});
  }
  // Detached actors must be destroyed, not just stopped, before the actor
  // system can go: drop the loader handles (cache handles keep the cores).
  for (auto& [name, core] : caches_)
    core->loaders.clear();
  // 3. Whatever was still queued fails with shut_down, so no caller hangs.
  auto why =
    make_error(errc::shut_down, "the karlton runtime stopped before the call ran");
  for (auto& [name, core] : caches_)
    for (auto& route : core->routes)
      while (auto job = route.inbox->pop())
        job->abandon(why);
  // 4. An owned actor system is destroyed with us (it waits for all actors).
}

} // namespace karlton

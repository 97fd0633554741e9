// The runtime's lifetime: its actor system (owned or borrowed), and the
// caches it knows by name. Creating caches (cache_assembly.cpp), stopping
// them (shutdown.cpp), events (events.cpp) and clusters (cluster.cpp) have
// files of their own.
#include <karlton/runtime/runtime.hpp>

#include <caf/all.hpp>

#include "runtime/cache_core.hpp"
#include "runtime/lifetime.hpp"
#include <karlton/messages/errors.hpp>

namespace karlton {

namespace {

// The config `argc, argv` ask for, checked as far as it can be before the
// actor system starts: CAF's options and karlton's cache defaults.
std::unique_ptr<runtime_config> config_from(int argc, char** argv) {
  auto cfg = std::make_unique<runtime_config>();
  if (auto err = cfg->parse_command_line(argc, argv)) throw option_error{std::move(err)};
  if (!cfg->remainder.empty())
    throw option_error{make_error(errc::invalid_option,
                                  "unexpected argument '" + cfg->remainder.front() +
                                    "' (options look like --karlton.max-entries=1000; "
                                    "see --help)")};
  if (auto defaults = cache_options_from(*cfg); !defaults)
    throw option_error{std::move(defaults.error())};
  return cfg;
}

} // namespace

runtime::runtime(std::shared_ptr<const clock> time_source)
  : runtime(std::make_unique<runtime_config>(), std::move(time_source)) {}

runtime::runtime(int argc, char** argv, std::shared_ptr<const clock> time_source)
  : runtime(config_from(argc, argv), std::move(time_source)) {}

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

runtime::~runtime() {
  shutdown();
  // Actors the service spawned on an owned system keep ~actor_system waiting;
  // after a second (long enough for actors being stopped meanwhile), the log
  // says how many and how to stop them, so that no hang is silent.
  if (owned_sys_) detail::destroy_system(std::move(owned_sys_), std::chrono::seconds{1});
}

caf::error runtime::refused_in_actor() const {
  return gate_ && detail::on_scheduler_thread(*gate_) ? detail::blocking_refused()
                                                      : caf::error{};
}

cache_options runtime::default_options(std::string name) const {
  auto opts = cache_options_from(sys_->config());
  if (!opts) throw option_error{std::move(opts.error())};
  opts->name = std::move(name);
  return std::move(*opts);
}

caf::expected<cache> runtime::find_cache(const std::string& name) const {
  std::lock_guard<std::mutex> guard{caches_mtx_};
  auto i = caches_.find(name);
  if (i == caches_.end())
    return make_error(errc::unknown_cache,
                      "no cache named '" + name + "' in this runtime");
  return cache{i->second};
}

} // namespace karlton

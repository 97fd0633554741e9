#include "runtime/lifetime.hpp"

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <string>

#include <caf/actor_registry.hpp>
#include <caf/actor_system.hpp>
#include <caf/atom.hpp>
#include <caf/policy/work_sharing.hpp>
#include <caf/policy/work_stealing.hpp>
#include <caf/scheduler/coordinator.hpp>

#include <karlton/runtime/log.hpp>

namespace karlton::detail {

namespace {

template <class Policy>
bool add_workers(caf::scheduler::abstract_coordinator& sched,
                 std::vector<std::thread::id>& out) {
  auto coordinator = dynamic_cast<caf::scheduler::coordinator<Policy>*>(&sched);
  if (coordinator == nullptr) return false;
  for (size_t i = 0; i < coordinator->num_workers(); ++i)
    out.push_back(coordinator->worker_by_id(i)->get_thread().get_id());
  return true;
}

// What keeps `sys` from going: its running actors, and the names under which
// the service registered any (CAF's own names left out).
std::string live_actors(caf::actor_system& sys) {
  auto running = sys.registry().running();
  std::string out = std::to_string(running) + (running == 1 ? " actor" : " actors") +
                    " (" + std::to_string(sys.detached_actors()) + " detached)";
  std::string named;
  for (auto& [name, handle] : sys.registry().named_actors()) {
    auto text = caf::to_string(name);
    if (!handle || text == "SpawnServ" || text == "ConfigServ" || text == "StreamServ")
      continue;
    named +=
      (named.empty() ? "" : ", ") + text + " (id " + std::to_string(handle->id()) + ")";
  }
  if (!named.empty()) out += ", among them the registered " + named;
  return out;
}

} // namespace

std::vector<std::thread::id> scheduler_threads(caf::actor_system& sys) {
  std::vector<std::thread::id> out;
  auto& sched = sys.scheduler();
  if (!add_workers<caf::policy::work_stealing>(sched, out))
    add_workers<caf::policy::work_sharing>(sched, out);
  std::sort(out.begin(), out.end());
  return out;
}

void destroy_system(std::unique_ptr<caf::actor_system> sys,
                    std::chrono::milliseconds grace) {
  // ~actor_system first waits, without end, for every running actor. karlton
  // stopped its own; any left are the service's. The registry offers no
  // timed wait, so poll its count for the grace period (1 ms steps: a
  // service stopping its actors as the runtime goes is done within that).
  auto& registry = sys->registry();
  auto give_up = std::chrono::steady_clock::now() + grace;
  while (registry.running() > 0 && std::chrono::steady_clock::now() < give_up)
    std::this_thread::sleep_for(std::chrono::milliseconds{1});
  if (registry.running() > 0) {
    log_line("karlton: the runtime's actor system waits for " + live_actors(*sys) +
             " that karlton did not spawn and that are still running; karlton "
             "stopped all of its own. Stop each before destroying the runtime, e.g. "
             "caf::anon_send_exit(a, caf::exit_reason::user_shutdown), a cache's "
             "load_actor and event subscribers included, or link them to one actor "
             "you stop. Until they stop, ~runtime waits (README: Embedding it).");
    registry.await_running_count_equal(0);
  }
  // What is left can only wait on detached threads (quick once their actors
  // stopped) or on CAF's logger, which a thread-local of every thread that
  // spawned actors on the system keeps alive. Name that if it lasts.
  std::mutex mtx;
  std::condition_variable cv;
  bool done = false;
  std::thread watchdog{[&] {
    std::unique_lock<std::mutex> guard{mtx};
    if (cv.wait_for(guard, grace, [&] { return done; })) return;
    log_line("karlton: the runtime's actor system is still being destroyed after its "
             "last actor stopped: a thread that spawned actors on it still holds CAF's "
             "thread-local reference to its logger, which ~actor_system waits for. Call "
             "caf::logger::set_current_actor_system(nullptr) on that thread "
             "(README: Embedding it).");
  }};
  sys.reset();
  {
    std::lock_guard<std::mutex> guard{mtx};
    done = true;
  }
  cv.notify_all();
  watchdog.join();
}

} // namespace karlton::detail

// How a runtime's actor system relates to the threads that call it: which
// threads are its scheduler's (blocking there starves the shards), and how an
// owned system is destroyed without a silent hang.
#pragma once

#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include <caf/fwd.hpp>

namespace karlton::detail {

/// The threads of `sys`'s scheduler, sorted, for the work-stealing and the
/// work-sharing policies (CAF's two threaded ones); empty for any other
/// scheduler, such as the deterministic test coordinator, which has none.
std::vector<std::thread::id> scheduler_threads(caf::actor_system& sys);

/// Destroys `sys`. If actors karlton did not spawn still run after `grace`,
/// logs how many and how to stop them, then waits for them as CAF does; if
/// the destructor still has not returned `grace` after the last actor
/// stopped, logs the usual cause (a thread holding CAF's logger reference).
void destroy_system(std::unique_ptr<caf::actor_system> sys,
                    std::chrono::milliseconds grace);

} // namespace karlton::detail

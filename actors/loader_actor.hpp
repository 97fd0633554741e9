// A loader worker: runs the cache's loader function for the keys shards ask
// for. Spawned detached (one thread each), so a loader may block on I/O.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include <caf/expected.hpp>

#include <karlton/base/clock.hpp>
#include <karlton/base/policies.hpp>
#include <karlton/messages/loading.hpp>

namespace karlton {

loader_actor::behavior_type loader_worker(loader_actor::pointer self, load_function fn,
                                          std::shared_ptr<const clock> time_source);

} // namespace karlton

// A loader worker: runs the cache's loader function for the keys shards ask
// for. Spawned detached (one thread each), so a loader may block on I/O.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include <caf/expected.hpp>

#include "messages/loading.hpp"
#include "runtime/clock.hpp"

namespace karlton {

/// Fetches the value of a key from the source of truth (a database query, a
/// service call), or says why it could not. May block; may throw (the
/// exception becomes a `store_failure`).
using load_function = std::function<caf::expected<std::string>(const std::string& key)>;

loader_actor::behavior_type loader_worker(loader_actor::pointer self, load_function fn,
                                          std::shared_ptr<const clock> time_source);

} // namespace karlton

// Helpers shared by the files that implement `runtime` (runtime.cpp,
// cache_assembly.cpp, shutdown.cpp, events.cpp, cluster.cpp); not part of
// the public API.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <utility>

#include <caf/actor_system.hpp>
#include <caf/config_option_set.hpp>
#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <caf/logger.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/timespan.hpp>

#include "stores/journal.hpp"
#include <karlton/messages/errors.hpp>
#include <karlton/stores/store.hpp>

namespace karlton::detail {

/// How long the runtime's own requests to the bus, the shards and the peer
/// wait: they answer at once unless the system is overloaded.
constexpr caf::timespan bus_timeout = std::chrono::minutes{1};

/// A synchronous request from a plain thread (rare calls: a scoped_actor's
/// cost does not matter here).
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
  // See runtime::forget_logger_of_this_thread.
  caf::logger::set_current_actor_system(nullptr);
  return out;
}

/// What every call after `shutdown()` answers.
inline caf::error stopped_error() {
  return make_error(errc::shut_down, "the karlton runtime has stopped");
}

/// Opens the journal of cache `cache` at `path` and stores what it recovered: the writes
/// a crash left unstored. Not those a stored mark covers: another writer may have stored
/// a newer value since. Empties the journal after the store confirmed, whatever it held,
/// so the numbers of this run's writes start anew. (recovery.cpp)
caf::expected<journal> replay_journal(const std::string& path, const std::string& cache,
                                      store& db);

/// Declares the `karlton.postgres.*` settings (postgres_settings.cpp).
void add_postgres_options(caf::config_option_set& opts);

/// A TCP port that is free on `host` now (the kernel's pick). (free_port.cpp)
caf::expected<uint16_t> free_port(const std::string& host);

} // namespace karlton::detail

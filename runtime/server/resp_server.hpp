// The Redis-protocol front end of karlton-node: Boost.Asio I/O threads that
// accept connections and run sessions, calling the caches directly.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include <caf/expected.hpp>

#include <karlton/runtime/cache.hpp>
#include <karlton/runtime/runtime.hpp>

#include "runtime/server/resp_options.hpp"
#include "runtime/server/resp_session.hpp"

namespace karlton::server {

/// Makes the session of a new connection (`make_session`; tests pass their
/// own to drive the I/O side without the commands).
using session_factory =
  std::function<std::shared_ptr<session>(std::shared_ptr<server_context>, session_host*)>;

class resp_server {
public:
  /// `caches` in the order SELECT numbers them.
  resp_server(runtime& rt, std::vector<cache> caches, resp_options opts);
  /// The same with sessions from `make` instead of `make_session`.
  resp_server(runtime& rt, std::vector<cache> caches, resp_options opts,
              session_factory make);
  /// Stops, if `stop` was not called.
  ~resp_server();
  resp_server(const resp_server&) = delete;
  resp_server& operator=(const resp_server&) = delete;

  /// Checks the options, listens and starts the I/O threads; returns the
  /// port (the kernel's choice for port 0).
  caf::expected<uint16_t> start();
  /// Stops accepting and reading, waits up to `grace` for replies in flight,
  /// writes what is ready, closes every connection and joins the threads.
  /// Call before the runtime shuts down.
  void stop(std::chrono::milliseconds grace = std::chrono::seconds{1});
  /// The state the sessions share (counters for INFO and metrics).
  const server_context& context() const noexcept;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace karlton::server

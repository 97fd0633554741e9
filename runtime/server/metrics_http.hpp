// `GET /metrics` over HTTP/1.1 for Prometheus: a small Asio listener with
// its own limits (rule 9), serving `runtime::metrics_text()`.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <caf/expected.hpp>

#include <karlton/runtime/runtime.hpp>

namespace karlton::server {

struct metrics_http_options {
  std::string host = "127.0.0.1";
  uint16_t port = 0; ///< 0: any free port
  /// Non-empty: requests need HTTP Basic `default:<password>`.
  std::string password;
  /// The whole request, from accept to the last byte of the reply (head,
  /// render, write): past it the connection closes, so a slow client or a
  /// slow render holds one of the 16 places no longer. Prometheus' default
  /// scrape timeout is 10 s.
  std::chrono::milliseconds request_timeout{5000};
};

class metrics_http {
public:
  /// `extra()` is appended to the runtime's text (the RESP server's families).
  metrics_http(runtime& rt, metrics_http_options opts,
               std::function<std::string()> extra = {});
  ~metrics_http();
  metrics_http(const metrics_http&) = delete;
  metrics_http& operator=(const metrics_http&) = delete;

  /// Listens and starts its thread; returns the port.
  caf::expected<uint16_t> start();
  /// Closes the listener and every connection, joins the thread.
  void stop();

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace karlton::server

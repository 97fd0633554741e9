// The options of the Redis-protocol front end (`node.resp-*`), their
// defaults and their reasons, and the check that refuses unsafe ones.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include <caf/error.hpp>

#include "runtime/server/resp_parser.hpp"
#include <karlton/base/policies.hpp>

namespace karlton::server {

class tracking_table;

/// `resp_options::output_pause_bytes`' default.
constexpr size_t default_output_pause_bytes = size_t{1} << 20;

/// The most bytes RESP adds around one bulk reply: "$", up to 10 digits of
/// length (values are 32-bit), "\r\n" before and after the bytes.
constexpr size_t reply_framing_bytes = 16;

/// The bytes of a length line: "$<n>\r\n" or "*<n>\r\n".
constexpr size_t length_line_bytes(size_t n) {
  size_t digits = 1;
  for (auto x = n; x >= 10; x /= 10)
    ++digits;
  return 1 + digits + 2;
}

/// The bytes of a bulk reply of `n` bytes: its length line, the bytes, "\r\n".
constexpr size_t bulk_reply_bytes(size_t n) {
  return length_line_bytes(n) + n + 2;
}

/// What a client that reads may have unsent at once: replies up to the pause
/// bound (`output_pause_bytes`), then one more, a GET of the largest value
/// (`max_value_bytes`) with its framing. The output limit's default.
constexpr size_t reading_client_bytes(size_t pause_bytes, uint64_t max_value_bytes) {
  return pause_bytes + static_cast<size_t>(max_value_bytes) + reply_framing_bytes;
}

struct resp_options {
  /// Where to listen. Loopback by default; another address needs a password
  /// or `protected_mode = false` (Redis's protected mode).
  std::string host = "127.0.0.1";
  /// 0: any free port (the server reports the one it got).
  uint16_t port = 0;
  /// I/O threads, each with its own io_context. 1 by default: on a small
  /// machine the cores also run the shards.
  uint32_t threads = 1;
  /// `requirepass`: empty means none. Never logged or shown.
  std::string password;
  bool protected_mode = true;
  /// Connections beyond this get "-ERR max number of clients reached".
  uint32_t max_clients = 10000;
  /// Rejected clients (over max_clients) whose close lingers at once, each up
  /// to 2 s so the error reaches them; past this they are closed at once.
  uint32_t max_rejected_lingering = 64;
  /// What one connection may make the parser hold (rule 9).
  parser_limits limits;
  /// A client whose unsent replies exceed this is disconnected (it does not
  /// read). The default holds what a reading client may have unsent with the
  /// default max-value-bytes (65 MiB + 16 B); karlton-node raises it to its
  /// caches' max-value-bytes. Before, 64 MiB closed a client that read a
  /// value of the largest size allowed.
  size_t output_buffer_limit =
    reading_client_bytes(default_output_pause_bytes, default_max_value_bytes);
  /// While a connection's unsent replies exceed this, it reads no more and
  /// runs nothing more (like Redis's query buffer, input stays bounded too):
  /// a client that pipelines without reading costs at most this plus one
  /// reply plus its query buffer, not the whole output limit.
  size_t output_pause_bytes = default_output_pause_bytes;
  /// Idle connections are closed after this; 0: never.
  std::chrono::seconds idle_timeout{0};
  /// With a password, a connection that has not authenticated this long after
  /// it was accepted is closed; 0: never. Without it, idle sockets that never
  /// AUTH fill max_clients, and `idle_timeout` is off by default (Redis has
  /// neither bound).
  std::chrono::seconds auth_timeout{10};
  /// Commands of one connection in flight at once (pipelining); beyond it
  /// the connection stops reading until replies are ready.
  uint32_t max_in_flight = 4096;
  /// Jobs queued for the pool that runs the blocking calls (INFO,
  /// KARLTON.STATS, ...), and apart from them KARLTON.FLUSH calls waiting
  /// for the flusher; beyond it the reply is "-ERR busy".
  uint32_t blocking_queue = 256;
  /// Client-side caching's table, which the caches must report to (their
  /// `change_listener`s); null: the server makes its own, told of nothing.
  std::shared_ptr<tracking_table> tracking;
};

/// Refuses out-of-range values and an unprotected non-loopback listener
/// without a password (`invalid_option`, naming the option).
caf::error check(const resp_options& opts);

/// True for the loopback addresses a listener may take without a password.
bool is_loopback(const std::string& host);

} // namespace karlton::server

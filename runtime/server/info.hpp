// INFO's text and the server's own Prometheus families, from the runtime's
// and the server's counters.
#pragma once

#include <string>
#include <string_view>

#include "runtime/server/resp_session.hpp"

namespace karlton::server {

/// INFO's reply for `section` (empty, "default", "all", "everything" or a
/// section name, case-insensitive): "# Section\r\nfield:value\r\n" lines.
/// Makes blocking calls on the runtime: run it on the blocking pool.
std::string render_info(server_context& ctx, std::string_view section);

/// The server's families (`karlton_resp_*`) in Prometheus' text format, to
/// append to `runtime::metrics_text()`.
std::string server_metrics_text(const server_context& ctx);

} // namespace karlton::server

// WP0 seam: INFO and the server's metrics (issue 15, WP6).
#include "runtime/server/info.hpp"

namespace karlton::server {

std::string render_info(server_context&, std::string_view) {
  return "# Server\r\nredis_version:7.0.0\r\n";
}

std::string server_metrics_text(const server_context&) {
  return {};
}

} // namespace karlton::server

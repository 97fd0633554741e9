// WP0 seam: the /metrics listener (issue 15, WP6).
#include "runtime/server/metrics_http.hpp"

#include <karlton/messages/errors.hpp>

namespace karlton::server {

struct metrics_http::impl {};

metrics_http::metrics_http(runtime&, metrics_http_options, std::function<std::string()>)
  : impl_(std::make_unique<impl>()) {}

metrics_http::~metrics_http() = default;

caf::expected<uint16_t> metrics_http::start() {
  return make_error(errc::invalid_option, "the metrics listener is not implemented yet");
}

void metrics_http::stop() {}

} // namespace karlton::server

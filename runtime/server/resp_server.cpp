// WP0 seam: the Asio front end (issue 15, WP4).
#include "runtime/server/resp_server.hpp"

#include <karlton/messages/errors.hpp>

namespace karlton::server {

struct resp_server::impl {
  impl(runtime& rt, std::vector<cache> caches, resp_options opts)
    : ctx(std::make_shared<server_context>(rt, std::move(caches), std::move(opts))) {}
  std::shared_ptr<server_context> ctx;
};

resp_server::resp_server(runtime& rt, std::vector<cache> caches, resp_options opts)
  : impl_(std::make_unique<impl>(rt, std::move(caches), std::move(opts))) {}

resp_server::~resp_server() = default;

caf::expected<uint16_t> resp_server::start() {
  return make_error(errc::invalid_option, "the RESP server is not implemented yet");
}

void resp_server::stop(std::chrono::milliseconds) {}

const server_context& resp_server::context() const noexcept {
  return *impl_->ctx;
}

} // namespace karlton::server

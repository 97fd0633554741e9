// WP0 seam: the session and its commands (issue 15, WP3).
#include "runtime/server/resp_session.hpp"

namespace karlton::server {

std::shared_ptr<session> make_session(std::shared_ptr<server_context>, session_host*) {
  return nullptr;
}

} // namespace karlton::server

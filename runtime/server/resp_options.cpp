#include "runtime/server/resp_options.hpp"

#include <karlton/messages/errors.hpp>

namespace karlton::server {

bool is_loopback(const std::string& host) {
  return host == "127.0.0.1" || host == "::1" || host == "localhost";
}

caf::error check(const resp_options& opts) {
  auto bad = [](const char* what) { return make_error(errc::invalid_option, what); };
  if (opts.threads < 1 || opts.threads > 64)
    return bad("node.resp-threads must be 1..64");
  if (opts.max_clients < 1) return bad("node.maxclients must be >= 1");
  if (opts.max_in_flight < 1) return bad("in-flight bound must be >= 1");
  if (opts.limits.max_bulk < 1) return bad("node.resp-max-bulk must be >= 1");
  if (opts.limits.max_args < 1) return bad("node.resp-max-args must be >= 1");
  if (opts.limits.max_query_buffer <= opts.limits.max_bulk)
    return bad("node.resp-query-buffer-limit must exceed node.resp-max-bulk");
  if (opts.output_buffer_limit < 1)
    return bad("node.resp-output-buffer-limit must be >= 1");
  if (opts.output_pause_bytes < 1) return bad("node.resp-output-pause must be >= 1");
  if (!is_loopback(opts.host) && opts.password.empty() && opts.protected_mode)
    return bad("node.resp-host is not a loopback address and no password is set: set "
               "node.requirepass(-file), or node.resp-protected=false to accept anyone");
  return {};
}

} // namespace karlton::server

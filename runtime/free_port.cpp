// The one place karlton opens a raw socket: to learn a free port before the
// peer actor is spawned, since a node's name and member info carry it.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "runtime/runtime_detail.hpp"

namespace karlton::detail {

caf::expected<uint16_t> free_port(const std::string& host) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return make_error(errc::invalid_option, "cannot open a socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = 0;
  if (::inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) {
    ::close(fd);
    return make_error(errc::invalid_option, "option karlton.cluster.host: '" + host +
                                              "' is not an IPv4 address");
  }
  socklen_t len = sizeof(addr);
  bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
            ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
  ::close(fd);
  if (!ok)
    return make_error(errc::invalid_option,
                      "option karlton.cluster.host: cannot listen on " + host);
  return ntohs(addr.sin_port);
}

} // namespace karlton::detail

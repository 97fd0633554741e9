// The head of an HTTP/1.1 request, as /metrics reads it: fed in pieces as
// they arrive, bounded (rule 9), and no Asio, so it is unit-tested and
// fuzzed alone. It keeps what the endpoint needs: the method, the path and
// the Authorization header.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace karlton::server {

class http_request {
public:
  /// 8 KiB, as nginx's default `client_header_buffer_size` is 1 KiB and
  /// Prometheus' scrape request (method, path, Host, Accept, User-Agent,
  /// Authorization) takes a few hundred bytes.
  static constexpr size_t default_max_head = 8192;

  enum class state {
    need_more, ///< the head is not complete yet
    complete,  ///< method(), path(), ... are set
    failed,    ///< error_status() says which reply to send
  };

  explicit http_request(size_t max_head = default_max_head) : max_head_(max_head) {}

  /// Takes the bytes that belong to the head and returns how many: all of
  /// `bytes` while `need_more`, fewer once the head ends (a body or the next
  /// request follows; /metrics reads neither). Feeding a finished or failed
  /// request takes nothing.
  size_t feed(std::string_view bytes);

  state current() const noexcept { return state_; }
  /// Once `failed`: 431 for a head over the limit, 400 for any other error.
  int error_status() const noexcept { return error_status_; }
  /// Once `failed`: what was wrong, for the log (never the bytes themselves).
  std::string_view error() const noexcept { return error_; }

  /// Once `complete`: the method as sent (methods are case-sensitive).
  std::string_view method() const noexcept { return method_; }
  /// Once `complete`: the request target up to '?' (the query is ignored).
  std::string_view path() const noexcept { return path_; }
  /// Once `complete`: 0 for HTTP/1.0, 1 for HTTP/1.1.
  int minor_version() const noexcept { return minor_version_; }
  /// Once `complete`: the Authorization header's value, if it had one.
  bool has_authorization() const noexcept { return has_authorization_; }
  std::string_view authorization() const noexcept { return authorization_; }

private:
  void fail(int status, const char* why);
  void parse_head(std::string_view head);
  bool parse_request_line(std::string_view line);
  bool parse_field(std::string_view line, bool& has_host);

  size_t max_head_;
  std::string head_;
  size_t scanned_ = 0; // bytes of head_ already searched for the blank line
  state state_ = state::need_more;
  int error_status_ = 0;
  std::string error_;
  std::string method_;
  std::string path_;
  int minor_version_ = 1;
  bool has_authorization_ = false;
  std::string authorization_;
};

/// True if `authorization` is HTTP Basic credentials `user:password`
/// (RFC 7617). The credentials are compared in time that does not depend on
/// where they first differ.
bool basic_auth_matches(std::string_view authorization, std::string_view user,
                        std::string_view password);

} // namespace karlton::server

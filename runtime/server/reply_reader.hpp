// Reads RESP2/RESP3 replies as a client would: where one ends, and whether
// it is well formed. For the session's tests and fuzz target, which check
// that the output is exactly one reply per command.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace karlton::server {

/// What `read_reply` found at the start of its input.
enum class reply_status : uint8_t { complete, incomplete, malformed };

namespace detail {

inline std::optional<std::string_view> reply_line(std::string_view in, size_t& pos) {
  auto end = in.find("\r\n", pos);
  if (end == std::string_view::npos) return std::nullopt;
  auto line = in.substr(pos, end - pos);
  pos = end + 2;
  return line;
}

inline bool reply_number(std::string_view s, int64_t& n) {
  if (s.empty() || s.size() > 20) return false;
  size_t i = s[0] == '-' ? 1 : 0;
  if (i == s.size()) return false;
  int64_t v = 0;
  for (; i < s.size(); ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    if (v > (INT64_MAX - (s[i] - '0')) / 10) return false;
    v = v * 10 + (s[i] - '0');
  }
  n = s[0] == '-' ? -v : v;
  return true;
}

inline reply_status read_reply_at(std::string_view in, size_t& pos, int depth) {
  if (depth > 64) return reply_status::malformed;
  if (pos >= in.size()) return reply_status::incomplete;
  char type = in[pos++];
  auto line = reply_line(in, pos);
  if (!line) return reply_status::incomplete;
  int64_t n = 0;
  switch (type) {
  case '+':
  case '-':
  case ',':
  case '(':
    return line->find('\r') == std::string_view::npos ? reply_status::complete
                                                      : reply_status::malformed;
  case ':':
    return reply_number(*line, n) ? reply_status::complete : reply_status::malformed;
  case '_':
    return line->empty() ? reply_status::complete : reply_status::malformed;
  case '#':
    return *line == "t" || *line == "f" ? reply_status::complete
                                        : reply_status::malformed;
  case '$':
  case '!':
  case '=':
    if (!reply_number(*line, n) || n < -1) return reply_status::malformed;
    if (n == -1) return type == '$' ? reply_status::complete : reply_status::malformed;
    if (in.size() - pos < static_cast<size_t>(n) + 2) return reply_status::incomplete;
    pos += static_cast<size_t>(n);
    if (in.substr(pos, 2) != "\r\n") return reply_status::malformed;
    pos += 2;
    return reply_status::complete;
  case '*':
  case '~':
  case '>':
  case '%':
  case '|': {
    if (!reply_number(*line, n) || n < -1) return reply_status::malformed;
    if (n == -1) return type == '*' ? reply_status::complete : reply_status::malformed;
    if (n > int64_t{1} << 30) return reply_status::malformed;
    auto items = (type == '%' || type == '|') ? 2 * n : n;
    for (int64_t i = 0; i < items; ++i) {
      auto st = read_reply_at(in, pos, depth + 1);
      if (st != reply_status::complete) return st;
    }
    if (type == '|') return read_reply_at(in, pos, depth + 1); // the reply it annotates
    return reply_status::complete;
  }
  default:
    return reply_status::malformed;
  }
}

} // namespace detail

/// Reads one reply from the start of `in`; on `complete`, `length` is its size.
inline reply_status read_reply(std::string_view in, size_t& length) {
  size_t pos = 0;
  auto st = detail::read_reply_at(in, pos, 0);
  if (st == reply_status::complete) length = pos;
  return st;
}

} // namespace karlton::server

#include "runtime/server/http_request.hpp"

#include <openssl/crypto.h>

#include <algorithm>

#include "runtime/server/ascii.hpp"

namespace karlton::server {

namespace {

// RFC 9110's tchar: what a method and a field name are made of.
bool is_tchar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
    return true;
  return std::string_view{"!#$%&'*+-.^_`|~"}.find(c) != std::string_view::npos;
}

bool is_token(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), is_tchar);
}

// A field value's bytes: visible ASCII, space, tab and obs-text (>= 0x80);
// never another control byte (NUL, a bare CR, DEL).
bool is_field_value_byte(char c) {
  auto u = static_cast<unsigned char>(c);
  return u == '\t' || (u >= 0x20 && u != 0x7f);
}

std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
    s.remove_suffix(1);
  return s;
}

// Standard base64 (RFC 4648), padding optional; false for any other byte.
bool base64_decode(std::string_view in, std::string& out) {
  while (!in.empty() && in.back() == '=')
    in.remove_suffix(1);
  if (in.size() % 4 == 1) return false;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    int v;
    if (c >= 'A' && c <= 'Z')
      v = c - 'A';
    else if (c >= 'a' && c <= 'z')
      v = c - 'a' + 26;
    else if (c >= '0' && c <= '9')
      v = c - '0' + 52;
    else if (c == '+')
      v = 62;
    else if (c == '/')
      v = 63;
    else
      return false;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  return true;
}

} // namespace

void http_request::fail(int status, const char* why) {
  state_ = state::failed;
  error_status_ = status;
  error_ = why;
  head_.clear();
  head_.shrink_to_fit();
}

size_t http_request::feed(std::string_view bytes) {
  if (state_ != state::need_more) return 0;
  // Never hold more than the limit: a head that has not ended within it is
  // refused, whatever follows.
  size_t taken = std::min(bytes.size(), max_head_ - head_.size());
  head_.append(bytes.data(), taken);
  // The head ends with an empty line: "\n\n" or "\n\r\n".
  size_t i = scanned_;
  for (; i < head_.size(); ++i) {
    if (head_[i] != '\n') continue;
    size_t end = 0;
    if (i + 1 < head_.size() && head_[i + 1] == '\n')
      end = i + 2;
    else if (i + 2 < head_.size() && head_[i + 1] == '\r' && head_[i + 2] == '\n')
      end = i + 3;
    else if (i + 2 >= head_.size())
      break; // the bytes that tell are still to come: look here again
    else
      continue;
    size_t beyond = head_.size() - end; // fed bytes after the head
    head_.resize(end);
    parse_head(head_);
    head_.clear();
    head_.shrink_to_fit();
    return taken - beyond;
  }
  scanned_ = i;
  if (head_.size() >= max_head_) fail(431, "the request head is over its limit");
  return taken;
}

void http_request::parse_head(std::string_view head) {
  bool first = true;
  bool has_host = false;
  while (!head.empty()) {
    auto nl = head.find('\n');
    auto line = head.substr(0, nl);
    head.remove_prefix(nl + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) break; // the empty line that ends the head
    if (first ? !parse_request_line(line) : !parse_field(line, has_host)) return;
    first = false;
  }
  if (first) return fail(400, "no request line");
  if (minor_version_ == 1 && !has_host) return fail(400, "HTTP/1.1 without Host");
  state_ = state::complete;
}

bool http_request::parse_request_line(std::string_view line) {
  auto sp1 = line.find(' ');
  if (sp1 == std::string_view::npos) return fail(400, "a malformed request line"), false;
  auto sp2 = line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos) return fail(400, "a malformed request line"), false;
  auto method = line.substr(0, sp1);
  auto target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  auto version = line.substr(sp2 + 1);
  if (!is_token(method)) return fail(400, "a malformed method"), false;
  // Origin form only ("/metrics?x"): what a scraper sends to a server.
  bool visible = std::all_of(target.begin(), target.end(),
                             [](char c) { return c > 0x20 && c < 0x7f; });
  if (target.empty() || target.front() != '/' || !visible)
    return fail(400, "a malformed request target"), false;
  if (version == "HTTP/1.1")
    minor_version_ = 1;
  else if (version == "HTTP/1.0")
    minor_version_ = 0;
  else
    return fail(400, "not HTTP/1.0 or HTTP/1.1"), false;
  method_.assign(method);
  path_.assign(target.substr(0, target.find('?')));
  return true;
}

bool http_request::parse_field(std::string_view line, bool& has_host) {
  // A line starting with white space continues the last (obs-fold, which
  // RFC 9112 lets a server refuse); white space before the colon is refused.
  auto colon = line.find(':');
  if (colon == std::string_view::npos || !is_token(line.substr(0, colon)))
    return fail(400, "a malformed header field"), false;
  auto name = line.substr(0, colon);
  auto value = line.substr(colon + 1);
  if (!std::all_of(value.begin(), value.end(), is_field_value_byte))
    return fail(400, "a control byte in a header value"), false;
  value = trim_ows(value);
  if (iequals(name, "host")) {
    if (has_host) return fail(400, "more than one Host"), false;
    has_host = true;
  } else if (iequals(name, "authorization")) {
    if (has_authorization_) return fail(400, "more than one Authorization"), false;
    has_authorization_ = true;
    authorization_.assign(value);
  }
  return true;
}

bool basic_auth_matches(std::string_view authorization, std::string_view user,
                        std::string_view password) {
  authorization = trim_ows(authorization);
  auto sp = authorization.find(' ');
  if (sp == std::string_view::npos || !iequals(authorization.substr(0, sp), "basic"))
    return false;
  std::string given;
  if (!base64_decode(trim_ows(authorization.substr(sp + 1)), given)) return false;
  std::string expected;
  expected.reserve(user.size() + 1 + password.size());
  expected.append(user).append(1, ':').append(password);
  // Only the length may show in the time taken, as for any password check.
  if (given.size() != expected.size()) return false;
  return CRYPTO_memcmp(given.data(), expected.data(), given.size()) == 0;
}

} // namespace karlton::server

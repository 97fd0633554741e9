#include "runtime/server/resp_parser.hpp"

#include <algorithm>
#include <cstring>
#include <utility>

#include "runtime/server/kept_buffers.hpp"

namespace karlton::server {

namespace {

// After a command this large, the arena gives its memory back: one 64 MiB SET
// must not pin 64 MiB for the rest of the connection's life (nor one of 1 MiB:
// kept_buffers.hpp).
constexpr size_t arena_keep_bytes = kept_buffer_bytes;
// Likewise the argument offsets after an MSET of many keys (8 bytes each).
constexpr size_t ends_keep = 4096;
// And a header or inline line: a 64 KiB line must not stay pinned by an idle
// connection.
constexpr size_t line_keep_bytes = 4096;
// The argument list starts at most this large; it grows with the arguments
// that arrive, never with the count a header claims.
constexpr size_t ends_first_reserve = 64;

constexpr std::string_view query_buffer_exceeded =
  "Protocol error: query buffer limit exceeded";

// Redis's string2ll: an optional '-', then "0" or digits without a leading
// zero, within int64. Anything else (a '+', spaces, an empty string) fails.
bool parse_length(std::string_view s, int64_t& out) {
  bool negative = !s.empty() && s[0] == '-';
  if (negative) s.remove_prefix(1);
  if (s.empty() || s[0] < '0' || s[0] > '9') return false;
  if (s[0] == '0') {
    if (s.size() != 1 || negative) return false;
    out = 0;
    return true;
  }
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    if (v > (UINT64_MAX - 9) / 10) return false;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  uint64_t max = negative ? uint64_t{INT64_MAX} + 1 : uint64_t{INT64_MAX};
  if (v > max) return false;
  out = negative ? static_cast<int64_t>(0 - v) : static_cast<int64_t>(v);
  return true;
}

// The digits of a "*<n>\r" or "$<n>\r" line; false if the \r is missing.
bool header_number(std::string_view line, int64_t& out) {
  if (line.size() < 2 || line.back() != '\r') return false;
  return parse_length(line.substr(1, line.size() - 2), out);
}

// isspace in the C locale: what separates inline words and may follow a
// closing quote.
bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

// What ends an unquoted inline word (sdssplitargs: not \v or \f).
bool ends_word(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

char unescape(char c) {
  switch (c) {
  case 'n':
    return '\n';
  case 'r':
    return '\r';
  case 't':
    return '\t';
  case 'b':
    return '\b';
  case 'a':
    return '\a';
  default:
    return c;
  }
}

// Splits an inline line into words as Redis's sdssplitargs does (and so as
// redis-cli quotes them), appending each to `arena` and its end to `ends`.
// False on unbalanced quotes or a closing quote followed by a non-space. Unlike
// sdssplitargs, a \0 byte is an ordinary byte, not the end of the line.
bool split_inline(std::string_view line, std::string& arena, std::vector<size_t>& ends) {
  size_t i = 0;
  const size_t n = line.size();
  for (;;) {
    while (i < n && is_space(line[i]))
      ++i;
    if (i == n) return true;
    bool in_double = false;
    bool in_single = false;
    for (bool done = false; !done;) {
      if (in_double) {
        if (i >= n) return false;
        char c = line[i];
        if (c == '\\' && i + 3 < n && line[i + 1] == 'x' && hex_value(line[i + 2]) >= 0 &&
            hex_value(line[i + 3]) >= 0) {
          arena.push_back(
            static_cast<char>(hex_value(line[i + 2]) * 16 + hex_value(line[i + 3])));
          i += 4;
        } else if (c == '\\' && i + 1 < n) {
          arena.push_back(unescape(line[i + 1]));
          i += 2;
        } else if (c == '"') {
          if (i + 1 < n && !is_space(line[i + 1])) return false;
          done = true;
          ++i;
        } else {
          arena.push_back(c);
          ++i;
        }
      } else if (in_single) {
        if (i >= n) return false;
        char c = line[i];
        if (c == '\\' && i + 1 < n && line[i + 1] == '\'') {
          arena.push_back('\'');
          i += 2;
        } else if (c == '\'') {
          if (i + 1 < n && !is_space(line[i + 1])) return false;
          done = true;
          ++i;
        } else {
          arena.push_back(c);
          ++i;
        }
      } else if (i >= n) {
        done = true;
      } else {
        char c = line[i++];
        if (ends_word(c))
          done = true;
        else if (c == '"')
          in_double = true;
        else if (c == '\'')
          in_single = true;
        else
          arena.push_back(c);
      }
    }
    ends.push_back(arena.size());
  }
}

} // namespace

request_parser::request_parser(parser_limits limits) : limits_(limits) {}

size_t request_parser::memory() const noexcept {
  return arena_.capacity() + line_.capacity() + ends_.capacity() * sizeof(size_t) +
         args_.capacity() * sizeof(std::string_view) + error_.capacity();
}

request_parser::status request_parser::fail(std::string message) {
  // The text goes into a one-line error reply: a stray \r or \n from the
  // input would end it early.
  for (char& c : message)
    if (c == '\r' || c == '\n') c = ' ';
  error_ = std::move(message);
  state_ = state::failed;
  line_.clear();
  line_.shrink_to_fit();
  std::string{}.swap(arena_);
  return status::error;
}

void request_parser::reset_command() {
  forget_line();
  arena_.clear();
  if (arena_.capacity() > arena_keep_bytes) std::string{}.swap(arena_);
  ends_.clear();
  args_.clear();
  if (ends_.capacity() > ends_keep) {
    std::vector<size_t>{}.swap(ends_);
    std::vector<std::string_view>{}.swap(args_);
  }
  returned_command_ = false;
}

void request_parser::forget_line() {
  line_.clear();
  if (line_.capacity() > line_keep_bytes) std::string{}.swap(line_);
}

// Appends the next bytes of a line (up to its \n) to line_. The limits are
// applied as if the bytes came one at a time, so the verdict never depends on
// where the input was split: the line less a trailing \r may not exceed
// max_inline ("too long"), and the command's bytes may not exceed
// max_query_buffer. True when line_ holds a whole line (without the \n);
// false when the input is used up or the line failed.
bool request_parser::take_line(std::string_view& in, std::string_view too_long) {
  if (in.empty()) return false; // and memchr never sees a null pointer
  const auto* nl = static_cast<const char*>(std::memchr(in.data(), '\n', in.size()));
  const size_t avail = nl ? static_cast<size_t>(nl - in.data()) : in.size();
  const size_t held = line_.size();
  size_t by_line = 0;
  if (held <= limits_.max_inline) {
    by_line = limits_.max_inline - held;
    if (by_line < avail && in[by_line] == '\r') ++by_line; // may be the \r of \r\n
  }
  const size_t by_query = limits_.max_query_buffer - arena_.size() - held;
  const size_t take = std::min({avail, by_line, by_query});
  line_.append(in.data(), take);
  in.remove_prefix(take);
  if (take < avail) {
    // The next byte breaks a limit; the line's own is the more telling.
    size_t content = line_.size() + (in[0] == '\r' ? 0 : 1);
    fail(std::string{content > limits_.max_inline ? too_long : query_buffer_exceeded});
    return false;
  }
  if (nl == nullptr) return false;
  in.remove_prefix(1);
  return true;
}

bool request_parser::finish_count_line() {
  int64_t n = 0;
  if (!header_number(line_, n) ||
      (n > 0 && static_cast<uint64_t>(n) > limits_.max_args)) {
    fail("Protocol error: invalid multibulk length");
    return false;
  }
  if (!authenticated_ && n > 0 && static_cast<uint64_t>(n) > limits_.unauth_max_args) {
    fail("Protocol error: unauthenticated multibulk length");
    return false;
  }
  line_.clear();
  if (n <= 0) { // *0 and *-1 (any negative count, as Redis) are no command
    state_ = state::start;
    return true;
  }
  args_left_ = static_cast<size_t>(n);
  ends_.reserve(std::min(args_left_, ends_first_reserve));
  state_ = state::bulk_header;
  return true;
}

bool request_parser::finish_bulk_header() {
  int64_t n = 0;
  if (!header_number(line_, n) || n < 0 || static_cast<uint64_t>(n) > limits_.max_bulk) {
    fail("Protocol error: invalid bulk length");
    return false;
  }
  if (!authenticated_ && static_cast<uint64_t>(n) > limits_.unauth_max_bulk) {
    fail("Protocol error: unauthenticated bulk length");
    return false;
  }
  line_.clear();
  // Fails at the header a command that could never fit, rather than after
  // holding the bytes; nothing is reserved for the declared length.
  if (static_cast<uint64_t>(n) > limits_.max_query_buffer - arena_.size()) {
    fail(std::string{query_buffer_exceeded});
    return false;
  }
  bulk_left_ = static_cast<size_t>(n);
  state_ = state::bulk_body;
  return true;
}

bool request_parser::finish_inline_line() {
  std::string_view line = line_;
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (!split_inline(line, arena_, ends_)) {
    fail("Protocol error: unbalanced quotes in request");
    return false;
  }
  forget_line();
  if (ends_.empty()) { // a blank line, as `nc` sends: skipped
    arena_.clear();
    state_ = state::start;
    return true;
  }
  // The limits of a multibulk command hold for an inline one too: a 64 KiB
  // line of one-byte words would otherwise be 32k arguments, and one word
  // would pass the unauthenticated bulk limit.
  if (ends_.size() > limits_.max_args) {
    fail("Protocol error: invalid multibulk length");
    return false;
  }
  if (!authenticated_ && ends_.size() > limits_.unauth_max_args) {
    fail("Protocol error: unauthenticated multibulk length");
    return false;
  }
  size_t begin = 0;
  for (size_t end : ends_) {
    // A max-bulk under the line's 64 KiB holds here too.
    if (end - begin > limits_.max_bulk) {
      fail("Protocol error: invalid bulk length");
      return false;
    }
    if (!authenticated_ && end - begin > limits_.unauth_max_bulk) {
      fail("Protocol error: unauthenticated bulk length");
      return false;
    }
    begin = end;
  }
  return true;
}

request_parser::status request_parser::complete() {
  args_.clear();
  size_t begin = 0;
  for (size_t end : ends_) {
    args_.emplace_back(arena_.data() + begin, end - begin);
    begin = end;
  }
  state_ = state::start;
  returned_command_ = true;
  return status::command;
}

request_parser::status request_parser::next(std::string_view& in) {
  if (state_ == state::failed) return status::error;
  if (returned_command_) reset_command();
  for (;;) {
    switch (state_) {
    case state::start:
      if (in.empty()) return status::need_more;
      state_ = in[0] == '*' ? state::count_line : state::inline_line;
      break;
    case state::count_line:
      if (!take_line(in, "Protocol error: too big mbulk count string"))
        return state_ == state::failed ? status::error : status::need_more;
      if (!finish_count_line()) return status::error;
      break;
    case state::bulk_header:
      if (in.empty()) return status::need_more;
      if (line_.empty() && in[0] != '$')
        return fail(std::string{"Protocol error: expected '$', got '"} + in[0] + "'");
      if (!take_line(in, "Protocol error: too big bulk count string"))
        return state_ == state::failed ? status::error : status::need_more;
      if (!finish_bulk_header()) return status::error;
      break;
    case state::bulk_body: {
      if (in.empty() && bulk_left_ > 0) return status::need_more;
      size_t take = std::min(bulk_left_, in.size());
      if (arena_.capacity() - arena_.size() < take) {
        // Grows as bytes arrive, never by bulk_left_ ahead of them, and not
        // past this argument's end either, where doubling would hold up to
        // twice a 64 MiB argument; but by half at least, so that many small
        // arguments cost amortized constant copying. (libstdc++'s reserve
        // would double anyway, so the bytes move into a string made to
        // measure, as a reallocation would move them.)
        const size_t size = arena_.size();
        const size_t to_end = std::min(2 * arena_.capacity(), size + bulk_left_);
        std::string grown;
        grown.reserve(std::max({to_end, size + size / 2, size + take}));
        grown.append(arena_);
        arena_.swap(grown);
      }
      arena_.append(in.data(), take);
      in.remove_prefix(take);
      bulk_left_ -= take;
      if (bulk_left_ == 0) {
        crlf_seen_ = 0;
        state_ = state::bulk_crlf;
      }
      break;
    }
    case state::bulk_crlf:
      while (crlf_seen_ < 2) {
        if (in.empty()) return status::need_more;
        if (in[0] != (crlf_seen_ == 0 ? '\r' : '\n'))
          return fail("Protocol error: expected CRLF after bulk");
        in.remove_prefix(1);
        ++crlf_seen_;
      }
      ends_.push_back(arena_.size());
      if (--args_left_ == 0) return complete();
      state_ = state::bulk_header;
      break;
    case state::inline_line:
      if (!take_line(in, "Protocol error: too big inline request"))
        return state_ == state::failed ? status::error : status::need_more;
      if (!finish_inline_line()) return status::error;
      if (!ends_.empty()) return complete();
      break;
    case state::failed:
      return status::error;
    }
  }
}

namespace {

/// Reads a "<prefix><n>\r\n" header at `pos` of `in` into `out`, its
/// number read as the parser reads it (`header_number`), and moves past it;
/// false if it is not there whole or is negative.
bool peek_number(std::string_view in, size_t& pos, char prefix, size_t& out) noexcept {
  if (pos >= in.size() || in[pos] != prefix) return false;
  // An int64 takes at most 20 characters: look no further for the \r.
  auto cr = in.substr(pos, 22).find('\r');
  int64_t n = 0;
  if (cr == std::string_view::npos || pos + cr + 1 >= in.size() ||
      in[pos + cr + 1] != '\n' || !header_number(in.substr(pos, cr + 1), n) || n < 0)
    return false;
  out = static_cast<size_t>(n);
  pos += cr + 2;
  return true;
}

/// Reads "$<len>\r\n<len bytes>\r\n" at `pos` into `out`.
bool peek_bulk(std::string_view in, size_t& pos, std::string_view& out) noexcept {
  size_t len = 0;
  if (!peek_number(in, pos, '$', len)) return false;
  if (len > in.size() - pos || in.size() - pos - len < 2 || in[pos + len] != '\r' ||
      in[pos + len + 1] != '\n')
    return false;
  out = in.substr(pos, len);
  pos += len + 2;
  return true;
}

bool is_get(std::string_view name) noexcept {
  // | 0x20 folds ASCII case; only 'G'/'g', 'E'/'e', 'T'/'t' fold to these.
  return name.size() == 3 && (name[0] | 0x20) == 'g' && (name[1] | 0x20) == 'e' &&
         (name[2] | 0x20) == 't';
}

} // namespace

size_t peek_get_keys(std::string_view in, std::string_view* keys, size_t max) noexcept {
  size_t found = 0, pos = 0;
  for (size_t command = 0; command < max; ++command) {
    size_t count = 0;
    std::string_view name, arg;
    if (!peek_number(in, pos, '*', count) || count == 0 || !peek_bulk(in, pos, name))
      break;
    for (size_t i = 1; i < count; ++i) // each takes >= 6 bytes: bounded by `in`
      if (!peek_bulk(in, pos, arg)) return found;
    if (count == 2 && is_get(name)) keys[found++] = arg;
  }
  return found;
}

} // namespace karlton::server

// Outside bytes made safe for a terminal or a log line: one escaper for the
// node console and the cluster's log, so the two cannot drift apart.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace karlton {

namespace printable_detail {

/// The length of the valid UTF-8 sequence at the front of `s` (RFC 3629: no
/// overlong forms, no surrogates, nothing past U+10FFFF), or 0.
inline size_t utf8_length(std::string_view s) noexcept {
  auto at = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  auto b0 = at(0);
  size_t n = b0 >= 0xc2 && b0 <= 0xdf   ? 2
             : b0 >= 0xe0 && b0 <= 0xef ? 3
             : b0 >= 0xf0 && b0 <= 0xf4 ? 4
                                        : 0;
  if (n == 0 || s.size() < n) return 0;
  for (size_t i = 1; i < n; ++i)
    if (at(i) < 0x80 || at(i) > 0xbf) return 0;
  auto b1 = at(1);
  if ((b0 == 0xe0 && b1 < 0xa0) || (b0 == 0xed && b1 > 0x9f) ||
      (b0 == 0xf0 && b1 < 0x90) || (b0 == 0xf4 && b1 > 0x8f))
    return 0;
  return n;
}

} // namespace printable_detail

/// `bytes` on one line, safe for a terminal: a RESP client, a loader, a store
/// or another node may have put any bytes there, and a newline would shift
/// every later line (or forge one in a log), an escape sequence would reach
/// the operator's terminal. Backslash, `\n`, `\r` and `\t` get a backslash;
/// other control bytes become `\xHH`, and so do the C1 controls (U+0080 to
/// U+009F, which terminals take as escapes, CSI among them) and every byte
/// that is not part of valid UTF-8; the rest of UTF-8 is copied.
inline std::string printable(std::string_view bytes) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size());
  auto escape = [&](unsigned char ch) {
    out += "\\x";
    out += hex[ch >> 4];
    out += hex[ch & 0xf];
  };
  for (size_t i = 0; i < bytes.size();) {
    auto ch = static_cast<unsigned char>(bytes[i]);
    if (ch >= 0x80) {
      auto n = printable_detail::utf8_length(bytes.substr(i));
      bool c1 = n == 2 && ch == 0xc2 && static_cast<unsigned char>(bytes[i + 1]) < 0xa0;
      if (n == 0 || c1) { // escaped a byte at a time: the next may start one
        escape(ch);
        ++i;
      } else {
        out.append(bytes.substr(i, n));
        i += n;
      }
      continue;
    }
    if (ch == '\\')
      out += "\\\\";
    else if (ch == '\n')
      out += "\\n";
    else if (ch == '\r')
      out += "\\r";
    else if (ch == '\t')
      out += "\\t";
    else if (ch < 0x20 || ch == 0x7f)
      escape(ch);
    else
      out += static_cast<char>(ch);
    ++i;
  }
  return out;
}

} // namespace karlton

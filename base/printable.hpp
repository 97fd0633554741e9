// Outside bytes made safe for a terminal or a log line: one escaper for the
// node console and the cluster's log, so the two cannot drift apart.
#pragma once

#include <string>
#include <string_view>

namespace karlton {

/// `bytes` on one line, safe for a terminal: a RESP client, a loader, a store
/// or another node may have put any bytes there, and a newline would shift
/// every later line (or forge one in a log), an escape sequence would reach
/// the operator's terminal. Backslash, `\n`, `\r` and `\t` get a backslash;
/// other control bytes become `\xHH`; everything else (UTF-8 included) is
/// copied.
inline std::string printable(std::string_view bytes) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size());
  for (unsigned char ch : bytes) {
    if (ch == '\\') {
      out += "\\\\";
    } else if (ch == '\n') {
      out += "\\n";
    } else if (ch == '\r') {
      out += "\\r";
    } else if (ch == '\t') {
      out += "\\t";
    } else if (ch < 0x20 || ch == 0x7f) {
      out += "\\x";
      out += hex[ch >> 4];
      out += hex[ch & 0xf];
    } else {
      out += static_cast<char>(ch);
    }
  }
  return out;
}

} // namespace karlton

// Quoting text for the JSON the library and the node print (dependency graphs,
// the node console's stats): one escaper, so the two cannot drift apart.
#pragma once

#include <cstdio>
#include <string>
#include <string_view>

namespace karlton {

/// `s` as a JSON string literal, quotes included: `"` and `\` get a
/// backslash, control characters become `\u00XX`, everything else (UTF-8
/// bytes included) is copied. DOT reads the same escapes of quotes and
/// backslashes, so the dependency graph uses it for its DOT output too.
inline std::string json_quoted(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
      out += buf;
    } else {
      out += c;
    }
  }
  out += '"';
  return out;
}

} // namespace karlton

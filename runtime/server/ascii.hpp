// ASCII case folding, as Redis folds command, option and INFO section names
// and SQLite table names (never the locale's: a name's meaning must not
// depend on it).
#pragma once

#include <cstddef>
#include <string_view>

namespace karlton::server {

/// ASCII lower case. Inline, not std::tolower (a call into the locale): the
/// command lookup folds every character it compares.
inline char ascii_lower(char c) noexcept {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

/// ASCII case-insensitive equality.
inline bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
  return true;
}

} // namespace karlton::server

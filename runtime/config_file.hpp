// The config file as karlton reads it before CAF does: CAF 0.17's INI reader
// takes a NUL as the end of the file (and drops every key after it), recurses
// once per nested list (a file of 50,000 '[' overflowed the stack), and reads
// whatever the path names (a FIFO blocked the start for ever, /dev/zero grew
// without bound). Internal: not a public header.
#pragma once

#include <cstddef>
#include <istream>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <caf/expected.hpp>

namespace karlton::config_file {

/// Bytes a config file may hold.
constexpr size_t max_bytes = 1 << 20;

/// Lists and maps nested at most this deep in a config file.
constexpr int max_depth = 64;

/// The text of the config file at `path`, checked: a regular file of at
/// most `max_bytes`, no NUL byte, lists and maps nested at most `max_depth`
/// deep. `std::nullopt` if no file is there (CAF says whether that is an
/// error). Errors: `invalid_option` naming the file and why.
caf::expected<std::optional<std::string>> read(const std::string& path);

/// A `key = value` line of an INI file under a section named `karlton` or
/// `node` (in any case, or a sub-section of them), with its value's text up
/// to the line's end (a list or map that spans lines: its first line).
struct entry {
  std::string key; ///< "section.key"
  std::string value;
};

/// The entries of `in` (sections "[a.b]", keys "k = ..."; comments, list
/// items and blank lines skipped; a key of other characters than letters,
/// digits, '-' and '_' left out).
std::vector<entry> entries(std::istream& in);

/// True if a duration written `text` (digits and a unit: ns, us, ms, s, min,
/// h) is beyond what 64-bit nanoseconds hold: CAF 0.17 multiplies by the
/// unit without a check, so 5124096h wrapped around to 25 minutes.
bool duration_overflows(std::string_view text);

} // namespace karlton::config_file

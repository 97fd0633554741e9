// The config file as karlton reads it before CAF does: CAF 0.17's INI reader
// takes a NUL as the end of the file (and drops every key after it), recurses
// once per nested list or dotted name (a file of 50,000 '[' overflowed the
// stack), multiplies durations without a check, and reads whatever the path
// names (a FIFO blocked the start for ever, /dev/zero grew without bound).
// CAF is then handed the checked text, never the path. Internal: not a
// public header.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <caf/expected.hpp>

namespace karlton::config_file {

/// Bytes a config file may hold.
constexpr size_t max_bytes = 1 << 20;

/// Lists, maps and dotted names nested at most this deep in a config file.
constexpr int max_depth = 64;

/// How long a pipe given as the config file (`--config-file=<(...)`) may take
/// to reach its end.
constexpr int pipe_timeout_ms = 10'000;

/// The text of the config file at `path`, checked: a regular file (or, if
/// `named` on the command line, a pipe that ends within `pipe_timeout_ms`)
/// of at most `max_bytes`, no NUL byte, nested at most `max_depth` deep
/// (lists, maps, and a name's dots, each a level to CAF's reader), and no
/// duration beyond 64-bit nanoseconds. `std::nullopt` if the default file
/// (not `named`) is absent or no file, as CAF ignored it. Errors:
/// `invalid_option` naming the file and why (a `named` one missing too).
caf::expected<std::optional<std::string>> read(const std::string& path, bool named);

/// The `section.key`s of an INI file's `text` under a section named
/// `karlton` or `node` (in any case, or a sub-section of them): "[a.b]"
/// sections, "k = ..." keys of letters, digits, '-' and '_'; comments, list
/// items and blank lines skipped.
std::vector<std::string> keys(const std::string& text);

/// `x` in ASCII lower case: CAF keeps "[NODE]" apart from "[node]", which
/// karlton compares in any case to refuse it.
std::string lowercase(std::string x);

/// True if a duration written `text` is beyond what 64-bit nanoseconds hold,
/// read as CAF 0.17 reads it (leading blanks, a sign, a decimal, 0x hex, 0b
/// binary or 0 octal integer, a unit: ns, us, ms, s, min, h): CAF multiplies
/// by the unit without a check, so 5124096h wrapped around to 25 minutes.
/// False for text that is no such duration.
bool duration_overflows(std::string_view text);

} // namespace karlton::config_file

#include "runtime/config_file.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <limits>

#include <karlton/messages/errors.hpp>

namespace karlton::config_file {

namespace {

caf::error bad_file(const std::string& path, const std::string& why) {
  return make_error(errc::invalid_option, "config file '" + path + "': " + why);
}

std::string trim(const std::string& x) {
  auto b = x.find_first_not_of(" \t\r");
  return b == std::string::npos ? std::string{}
                                : x.substr(b, x.find_last_not_of(" \t\r") - b + 1);
}

// Calls `code(i)` for each character of `line` outside quoted strings and
// before a comment (CAF 0.17's INI comments start with ';' only), `text(c)`
// for each character before the comment.
template <class Code, class Text>
void scan_line(const std::string& line, Code code, Text text) {
  for (size_t i = 0, quote = 0; i < line.size(); ++i) {
    char c = line[i];
    if (quote) {
      if (c == '\\' && i + 1 < line.size()) {
        text(c);
        c = line[++i];
      } else if (c == static_cast<char>(quote)) {
        quote = 0;
      }
    } else if (c == '"' || c == '\'') {
      quote = static_cast<unsigned char>(c);
    } else if (c == ';') {
      return;
    } else {
      code(i);
    }
    text(c);
  }
}

// Calls `f(line_number, line)` for each line of `text`.
template <class F>
void each_line(const std::string& text, F f) {
  size_t begin = 0;
  for (size_t number = 1; begin <= text.size(); ++number) {
    auto end = std::min(text.find('\n', begin), text.size());
    f(number, text.substr(begin, end - begin));
    begin = end + 1;
  }
}

// The deepest nesting in `text` as CAF's reader recurses: '[' and '{'
// outside strings and comments, and a level per '.' of a name (the text
// before a line's '=', or a section header).
int depth_of(const std::string& text) {
  int depth = 0, deepest = 0;
  each_line(text, [&](size_t, const std::string& line) {
    int dots = 0;
    bool named = true; // still before the line's '='
    scan_line(
      line,
      [&](size_t i) {
        char c = line[i];
        if (c == '=') named = false;
        if (c == '.' && named) deepest = std::max(deepest, depth + ++dots);
        if (c == '[' || c == '{') deepest = std::max(deepest, ++depth + dots);
        if (c == ']' || c == '}') depth = std::max(0, depth - 1);
      },
      [](char) {});
  });
  return deepest;
}

// The first token of `text` outside strings and comments that is a duration
// beyond 64-bit nanoseconds, with its line; empty if none. A token starts
// with a digit (or a sign before one) after anything but a letter, digit,
// '_', '.' or '-', and runs over letters and digits.
std::string overflowing_duration(const std::string& text) {
  std::string found;
  each_line(text, [&](size_t number, const std::string& line) {
    if (!found.empty()) return;
    scan_line(
      line,
      [&](size_t i) {
        auto word = [&](size_t j) {
          auto c = static_cast<unsigned char>(line[j]);
          return std::isalnum(c) || c == '_' || c == '.' || c == '-';
        };
        if (!found.empty() || !std::isdigit(static_cast<unsigned char>(line[i]))) return;
        size_t start = i;
        if (start > 0 && (line[start - 1] == '-' || line[start - 1] == '+') &&
            (start == 1 || !word(start - 2)))
          --start;
        else if (start > 0 && word(start - 1))
          return;
        size_t end = i;
        while (end < line.size() && std::isalnum(static_cast<unsigned char>(line[end])))
          ++end;
        auto token = line.substr(start, end - start);
        if (duration_overflows(token))
          found = "line " + std::to_string(number) + ": " + token;
      },
      [](char) {});
  });
  return found;
}

// Reads `fd` to its end, at most max_bytes (one more tells it is over). A
// pipe is awaited up to `deadline`: Linux's poll waits for a FIFO's first
// writer, and then for data or its close. Errors: the reason, or "".
std::string read_all(int fd, bool pipe, std::string& out,
                     std::chrono::steady_clock::time_point deadline) {
  char buf[16384];
  for (;;) {
    if (pipe) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    deadline - std::chrono::steady_clock::now())
                    .count();
      pollfd p{fd, POLLIN, 0};
      if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) == 0)
        return "the pipe did not end within " + std::to_string(pipe_timeout_ms) + " ms";
    }
    auto n = ::read(fd, buf, sizeof buf);
    if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
    if (n < 0) return std::strerror(errno);
    if (n == 0) return "";
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > max_bytes) return "over " + std::to_string(max_bytes) + " bytes";
  }
}

} // namespace

caf::expected<std::optional<std::string>> read(const std::string& path, bool named) {
  // Non-blocking: opening a FIFO with no writer must not wait.
  int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    if (!named) return std::optional<std::string>{}; // CAF ignored such a default
    return bad_file(path, errno == ENOENT ? "no such file" : std::strerror(errno));
  }
  struct stat st {};
  std::string text, why;
  if (::fstat(fd, &st) != 0) {
    why = std::strerror(errno);
  } else if (S_ISREG(st.st_mode) || (named && S_ISFIFO(st.st_mode))) {
    why = read_all(fd, S_ISFIFO(st.st_mode), text,
                   std::chrono::steady_clock::now() +
                     std::chrono::milliseconds{pipe_timeout_ms});
  } else if (!named) {
    ::close(fd);
    return std::optional<std::string>{}; // CAF ignored a default that is no file
  } else {
    why = "neither a regular file nor a pipe";
  }
  ::close(fd);
  if (!why.empty()) return bad_file(path, why);
  if (auto nul = text.find('\0'); nul != std::string::npos)
    return bad_file(path, "a NUL byte at offset " + std::to_string(nul) +
                            " (CAF would read no further)");
  if (depth_of(text) > max_depth)
    return bad_file(path, "lists, maps or dotted names nested over " +
                            std::to_string(max_depth) + " deep");
  if (auto d = overflowing_duration(text); !d.empty())
    return bad_file(path, d + " is beyond any duration");
  return std::optional<std::string>{std::move(text)};
}

std::vector<std::string> keys(const std::string& text) {
  std::vector<std::string> out;
  std::string section;
  int depth = 0; // of '{' and '[' still open from earlier lines: inside a value
  // Any case: CAF keeps "[NODE]" apart from "[node]", and check_declared
  // refuses it; "[node.requirepass]" (a section named after an option) CAF
  // drops whole, so its keys must be seen here.
  auto ours = [](const std::string& section) {
    auto sec = lowercase(section);
    return sec == "node" || sec == "karlton" || sec.rfind("karlton.", 0) == 0 ||
           sec.rfind("node.", 0) == 0;
  };
  each_line(text, [&](size_t, const std::string& line) {
    // The line without its comment, and its brackets outside quoted strings.
    std::string code;
    int opened = 0;
    scan_line(
      line,
      [&](size_t i) {
        if (line[i] == '{' || line[i] == '[') ++opened;
        if (line[i] == '}' || line[i] == ']') --opened;
      },
      [&](char c) { code += c; });
    bool inside = depth > 0;
    auto trimmed = trim(code);
    if (!inside && trimmed.size() > 1 && trimmed.front() == '[' &&
        trimmed.back() == ']' && trimmed.find('=') == std::string::npos) {
      section = trim(trimmed.substr(1, trimmed.size() - 2)); // "[ karlton ]" too
      return;
    }
    depth = std::max(0, depth + opened);
    auto eq = trimmed.find('=');
    if (inside || eq == std::string::npos || !ours(section)) return;
    auto key = trim(trimmed.substr(0, eq));
    bool plain = !key.empty() && std::all_of(key.begin(), key.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_';
    });
    if (plain) out.push_back(section + "." + key);
  });
  return out;
}

std::string lowercase(std::string x) {
  std::transform(x.begin(), x.end(), x.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return x;
}

bool duration_overflows(std::string_view text) {
  size_t i = 0;
  while (i < text.size() && (text[i] == ' ' || text[i] == '\t'))
    ++i;
  bool negative = false;
  if (i < text.size() && (text[i] == '+' || text[i] == '-')) negative = text[i++] == '-';
  unsigned base = 10;
  if (i + 1 < text.size() && text[i] == '0' && (text[i + 1] == 'x' || text[i + 1] == 'X'))
    base = 16, i += 2;
  else if (i + 1 < text.size() && text[i] == '0' &&
           (text[i + 1] == 'b' || text[i + 1] == 'B'))
    base = 2, i += 2;
  else if (i + 1 < text.size() && text[i] == '0' &&
           std::isdigit(static_cast<unsigned char>(text[i + 1])))
    base = 8, ++i;
  auto digit = [&](char c) -> int {
    int d = std::isdigit(static_cast<unsigned char>(c)) ? c - '0'
            : c >= 'a' && c <= 'f'                      ? c - 'a' + 10
            : c >= 'A' && c <= 'F'                      ? c - 'A' + 10
                                                        : 99;
    return d < static_cast<int>(base) ? d : -1;
  };
  // Past what the largest unit allows, more digits change nothing.
  constexpr unsigned __int128 cap = static_cast<unsigned __int128>(1) << 100;
  unsigned __int128 n = 0;
  bool digits = false;
  for (; i < text.size() && digit(text[i]) >= 0; ++i) {
    digits = true;
    n = std::min(cap, n * base + static_cast<unsigned>(digit(text[i])));
  }
  if (!digits) return false; // not a duration of this form: CAF says what is wrong
  while (i < text.size() && (text[i] == ' ' || text[i] == '\t'))
    ++i;
  auto unit = text.substr(i);
  uint64_t ns = 0;
  if (unit == "ns")
    ns = 1;
  else if (unit == "us")
    ns = 1'000;
  else if (unit == "ms")
    ns = 1'000'000;
  else if (unit == "s")
    ns = 1'000'000'000;
  else if (unit == "min")
    ns = 60'000'000'000;
  else if (unit == "h")
    ns = 3'600'000'000'000;
  else
    return false; // no unit: an integer, which CAF checks itself
  auto limit = static_cast<unsigned __int128>(std::numeric_limits<int64_t>::max()) +
               (negative ? 1 : 0);
  return n * ns > limit;
}

} // namespace karlton::config_file

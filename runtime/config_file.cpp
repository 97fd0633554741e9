#include "runtime/config_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
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

// Calls `code(c)` for each character of `line` that is neither in a comment
// nor inside a quoted string, `text(c)` for each before the comment.
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
    } else if (c == ';' || c == '#') {
      return;
    } else {
      code(c);
    }
    text(c);
  }
}

// The deepest nesting of '[' and '{' in `text` outside strings and comments.
int depth_of(const std::string& text) {
  int depth = 0, deepest = 0;
  size_t begin = 0;
  while (begin <= text.size()) {
    auto end = std::min(text.find('\n', begin), text.size());
    scan_line(
      text.substr(begin, end - begin),
      [&](char c) {
        if (c == '[' || c == '{') deepest = std::max(deepest, ++depth);
        if (c == ']' || c == '}') depth = std::max(0, depth - 1);
      },
      [](char) {});
    begin = end + 1;
  }
  return deepest;
}

std::string lowercase(std::string x) {
  std::transform(x.begin(), x.end(), x.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return x;
}

} // namespace

caf::expected<std::optional<std::string>> read(const std::string& path) {
  // Non-blocking: opening a FIFO with no writer must not wait (fstat then
  // refuses it); it changes nothing for a regular file.
  int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return std::optional<std::string>{};
    return bad_file(path, std::strerror(errno));
  }
  struct stat st {};
  std::string text;
  caf::error err;
  if (::fstat(fd, &st) != 0) {
    err = bad_file(path, std::strerror(errno));
  } else if (!S_ISREG(st.st_mode)) {
    err = bad_file(path, "not a regular file");
  } else if (static_cast<uint64_t>(st.st_size) > max_bytes) {
    err = bad_file(path, "over " + std::to_string(max_bytes) + " bytes");
  } else {
    // Read to the end, not to the size fstat gave: a file that grew since
    // is caught by the bound.
    char buf[16384];
    for (;;) {
      auto n = ::read(fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        err = bad_file(path, std::strerror(errno));
        break;
      }
      if (n == 0) break;
      text.append(buf, static_cast<size_t>(n));
      if (text.size() > max_bytes) {
        err = bad_file(path, "over " + std::to_string(max_bytes) + " bytes");
        break;
      }
    }
  }
  ::close(fd);
  if (err) return err;
  if (auto nul = text.find('\0'); nul != std::string::npos)
    return bad_file(path, "a NUL byte at offset " + std::to_string(nul) +
                            " (CAF would read no further)");
  if (depth_of(text) > max_depth)
    return bad_file(path,
                    "lists or maps nested over " + std::to_string(max_depth) + " deep");
  return std::optional<std::string>{std::move(text)};
}

std::vector<entry> entries(std::istream& in) {
  std::vector<entry> out;
  std::string section, line;
  int depth = 0; // of '{' and '[' still open from earlier lines: inside a value
  // Any case: CAF keeps "[NODE]" apart from "[node]", and check_declared
  // refuses it; "[node.requirepass]" (a section named after an option) CAF
  // drops whole, so its keys must be seen here.
  auto ours = [](const std::string& section) {
    auto sec = lowercase(section);
    return sec == "node" || sec == "karlton" || sec.rfind("karlton.", 0) == 0 ||
           sec.rfind("node.", 0) == 0;
  };
  while (std::getline(in, line)) {
    // The line without its comment, and its brackets outside quoted strings.
    std::string code;
    int opened = 0;
    scan_line(
      line,
      [&](char c) {
        if (c == '{' || c == '[') ++opened;
        if (c == '}' || c == ']') --opened;
      },
      [&](char c) { code += c; });
    bool inside = depth > 0;
    auto text = trim(code);
    if (!inside && text.size() > 1 && text.front() == '[' && text.back() == ']' &&
        text.find('=') == std::string::npos) {
      section = trim(text.substr(1, text.size() - 2)); // "[ karlton ]" too
      continue;
    }
    depth = std::max(0, depth + opened);
    auto eq = text.find('=');
    if (inside || eq == std::string::npos || !ours(section)) continue;
    auto key = trim(text.substr(0, eq));
    bool plain = !key.empty() && std::all_of(key.begin(), key.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_';
    });
    if (plain) out.push_back({section + "." + key, trim(text.substr(eq + 1))});
  }
  return out;
}

bool duration_overflows(std::string_view text) {
  size_t i = 0;
  if (i < text.size() && (text[i] == '+' || text[i] == '-')) ++i;
  uint64_t n = 0;
  bool digits = false;
  for (; i < text.size() && std::isdigit(static_cast<unsigned char>(text[i])); ++i) {
    digits = true;
    if (n > (std::numeric_limits<uint64_t>::max() - 9) / 10) return true;
    n = n * 10 + static_cast<uint64_t>(text[i] - '0');
  }
  if (!digits) return false; // not a duration of this form: CAF says what is wrong
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
    return false; // CAF refuses an unknown unit itself
  return n > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) / ns;
}

} // namespace karlton::config_file

// Fuzzes the config file as a runtime reads it (runtime/config_file.cpp's
// checks, then CAF 0.17's INI reader, then the check of declared keys): a
// file is outside text (DESIGN.md rule 9). The input is the file's bytes,
// handed over as a regular file (a memfd, named by /proc/self/fd).
//
// Checked beyond "no crash, no sanitizer report, bounded time" (CAF's
// reader recursed once per '[' or dot and overflowed the stack): a file with
// a NUL byte, or nested deeper than config_file::max_depth, is always
// refused.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "runtime/config_file.hpp"
#include <karlton/runtime/options.hpp>

namespace {

[[noreturn]] void report(const char* what) {
  std::fprintf(stderr, "config_file fuzzer: %s\n", what);
  std::abort();
}

// The deepest nesting as CAF's reader recurses: '[' and '{' outside quotes
// and ';' comments, and a level per '.' before a line's '=' (a dotted
// name), counted plainly here (the oracle, kept apart from the code it
// checks).
int depth_of(std::string_view text) {
  int depth = 0, deepest = 0, dots = 0;
  char quote = 0;
  bool comment = false, named = true;
  auto deeper = [&](int d) {
    if (d > deepest) deepest = d;
  };
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '\n') {
      comment = false;
      quote = 0;
      named = true;
      dots = 0;
    } else if (comment) {
    } else if (quote) {
      if (c == '\\' && i + 1 < text.size() && text[i + 1] != '\n')
        ++i;
      else if (c == quote)
        quote = 0;
    } else if (c == '"' || c == '\'') {
      quote = c;
    } else if (c == ';') {
      comment = true;
    } else if (c == '=') {
      named = false;
    } else if (c == '.' && named) {
      deeper(depth + ++dots);
    } else if (c == '[' || c == '{') {
      deeper(++depth + dots);
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return deepest;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > karlton::config_file::max_bytes) return 0;
  std::string_view text{reinterpret_cast<const char*>(data), size};
  int fd = ::memfd_create("karlton-fuzz-config", MFD_CLOEXEC);
  if (fd < 0) report("memfd_create failed");
  if (size > 0 && ::write(fd, data, size) != static_cast<ssize_t>(size))
    report("write to the memfd failed");
  std::string arg = "--config-file=/proc/self/fd/" + std::to_string(fd);
  char app[] = "app";
  char* argv[] = {app, arg.data(), nullptr};
  karlton::runtime_config cfg;
  auto err = cfg.parse_command_line(2, argv);
  ::close(fd);
  bool must_refuse = text.find('\0') != std::string_view::npos ||
                     depth_of(text) > karlton::config_file::max_depth;
  if (must_refuse && !err) report("a file with a NUL or nested too deep was taken");
  return 0;
}

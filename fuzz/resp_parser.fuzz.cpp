// Fuzzes the RESP request parser (runtime/server/resp_parser.*), the first
// code to see a Redis client's bytes. The input's first byte seeds where the
// rest is split and whether the connection has authenticated; the rest is
// what the client sent.
//
// Checked beyond "no crash, no sanitizer report":
//   - the input fed whole and fed in random pieces gives the same commands
//     and the same error (the parser's verdict does not depend on how TCP cut
//     the stream);
//   - after every call, buffered() <= max_query_buffer, and the memory held
//     stays within a constant factor of the bytes received plus a constant,
//     whatever lengths the headers declare;
//   - each command, written again as a multibulk request, parses back to the
//     same arguments;
//   - peek_get_keys (the session's prefetch look ahead) gives a prefix of
//     the GET keys the parser gives.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "pieces.hpp"
#include "runtime/server/resp_parser.hpp"

using karlton::server::parser_limits;
using karlton::server::request_parser;
using status = request_parser::status;

namespace {

// Small enough that libFuzzer's inputs (4 KiB by default) reach every limit.
// max_args exceeds the most words a max_inline line can hold, so that an
// inline command, written as multibulk, is within the limits too.
parser_limits small_limits() {
  parser_limits l;
  l.max_bulk = 1024;
  l.max_inline = 512;
  l.max_args = 512;
  l.max_query_buffer = 4096;
  l.unauth_max_args = 10;
  l.unauth_max_bulk = 64;
  return l;
}

// The most memory per byte received: an empty argument ("$0\r\n\r\n", 6 bytes)
// costs an end offset and a string_view (24 bytes), both in vectors that may
// have doubled: 48 bytes per 6. The constant covers an inline line (at most
// max_inline bytes), whose words may be 2 bytes each (~25 bytes per byte),
// and the first reservations. It catches memory that grows with a command's
// bytes faster than this; the unit tests catch a declared length reserved
// (under limits too small here to tell it from the constant).
constexpr size_t memory_per_byte = 8;
constexpr size_t memory_constant = 64 << 10;

struct result {
  std::vector<std::vector<std::string>> commands;
  bool failed = false;
  std::string error;
};

[[noreturn]] void report(const char* what) {
  std::fprintf(stderr, "resp_parser fuzzer: %s\n", what);
  std::abort();
}

// Feeds `pieces` to a new parser, checking the bounds after every call.
result parse(const std::vector<std::string_view>& pieces, bool authenticated) {
  const parser_limits limits = small_limits();
  request_parser p{limits};
  p.set_authenticated(authenticated);
  result r;
  size_t received = 0;
  for (auto piece : pieces) {
    received += piece.size();
    for (;;) {
      status s = p.next(piece);
      if (p.buffered() > limits.max_query_buffer) report("buffered() over the limit");
      if (p.memory() > memory_per_byte * received + memory_constant)
        report("memory() grew beyond the bytes received");
      if (s == status::error) {
        r.failed = true;
        r.error = std::string{p.error()};
        if (r.error.empty()) report("an error without a message");
        if (p.next(piece) != status::error) report("an error did not stick");
        return r;
      }
      if (s == status::need_more) {
        if (!piece.empty()) report("need_more with input left");
        break;
      }
      if (p.args().empty()) report("a command without arguments");
      r.commands.emplace_back(p.args().begin(), p.args().end());
    }
  }
  return r;
}

std::string as_multibulk(const std::vector<std::string>& args) {
  std::string out = "*" + std::to_string(args.size()) + "\r\n";
  for (const auto& a : args)
    out += "$" + std::to_string(a.size()) + "\r\n" + a + "\r\n";
  return out;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const bool authenticated = (data[0] & 0x80) == 0;
  std::string_view input{reinterpret_cast<const char*>(data + 1), size - 1};

  const result whole = parse({input}, authenticated);

  const result split =
    parse(karlton::fuzzing::random_pieces(input, data[0]), authenticated);
  if (split.commands != whole.commands) report("a split changed the commands");
  if (split.failed != whole.failed || split.error != whole.error)
    report("a split changed the error");

  // The prefetch's look ahead names no key the parser would not give as a
  // GET's, in the same order.
  std::string_view peeked[16];
  const size_t n = karlton::server::peek_get_keys(input, peeked, 16);
  std::vector<std::string_view> gets;
  for (const auto& args : whole.commands)
    if (args.size() == 2 && args[0].size() == 3 && (args[0][0] | 0x20) == 'g' &&
        (args[0][1] | 0x20) == 'e' && (args[0][2] | 0x20) == 't')
      gets.push_back(args[1]);
  if (!whole.failed && n > gets.size()) report("the look ahead found more GETs");
  for (size_t i = 0; i < std::min(n, gets.size()); ++i)
    if (peeked[i] != gets[i]) report("the look ahead found another key");

  for (const auto& args : whole.commands) {
    const std::string again = as_multibulk(args);
    const result back = parse({again}, authenticated);
    if (back.failed || back.commands.size() != 1 || back.commands[0] != args)
      report("a command written as multibulk parsed differently");
  }
  return 0;
}

// Fuzzes the /metrics request-head parser (runtime/server/http_request.*),
// the first code to see a scraper's bytes, and the Basic credentials check.
// The input's first byte seeds where the rest is split and the head limit
// (64 to 4144 bytes, so that libFuzzer's inputs reach it); the rest is what
// the client sent.
//
// Checked beyond "no crash, no sanitizer report":
//   - the input fed whole and fed in random pieces gives the same verdict,
//     the same fields and takes the same number of bytes;
//   - no more is taken than was fed, nor than the limit; a finished request
//     takes nothing more;
//   - a failure is 400 or 431, and 431 only once the limit was reached;
//   - a parsed request has a token method, a path starting with '/', and
//     header values without CR, LF or NUL.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "pieces.hpp"
#include "runtime/server/http_request.hpp"

using karlton::server::basic_auth_matches;
using karlton::server::http_request;
using state = http_request::state;

namespace {

[[noreturn]] void report(const char* what) {
  std::fprintf(stderr, "http_request fuzzer: %s\n", what);
  std::abort();
}

struct result {
  state final = state::need_more;
  int status = 0;
  size_t taken = 0;
  std::string method, path, authorization;
  bool has_authorization = false;
};

result parse(const std::vector<std::string_view>& pieces, size_t max_head) {
  http_request r{max_head};
  result out;
  for (auto piece : pieces) {
    bool was_open = r.current() == state::need_more;
    size_t n = r.feed(piece);
    if (n > piece.size()) report("took more than was fed");
    if (!was_open && n != 0) report("a finished request took bytes");
    if (r.current() == state::need_more && n != piece.size())
      report("left bytes while it needs more");
    out.taken += n;
  }
  if (out.taken > max_head) report("took more than the head limit");
  out.final = r.current();
  if (out.final == state::failed) {
    out.status = r.error_status();
    if (out.status != 400 && out.status != 431)
      report("a failure that is not 400 or 431");
    if (out.status == 431 && out.taken < max_head) report("431 before the limit");
    if (r.error().empty()) report("a failure without a reason");
  }
  if (out.final == state::complete) {
    out.method = r.method();
    out.path = r.path();
    out.has_authorization = r.has_authorization();
    out.authorization = r.authorization();
    if (out.method.empty() || out.method.find_first_of(" \r\n\t:") != std::string::npos)
      report("a method that is not a token");
    if (out.path.empty() || out.path[0] != '/') report("a path not starting with '/'");
    if (out.authorization.find_first_of(std::string_view{"\r\n\0", 3}) !=
        std::string::npos)
      report("a control byte in Authorization");
    // Must not crash, whatever the header holds.
    (void)basic_auth_matches(out.authorization, "default", "secret");
  }
  return out;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const size_t max_head = 64 + size_t{data[0]} * 16;
  std::string_view input{reinterpret_cast<const char*>(data + 1), size - 1};

  const result whole = parse({input}, max_head);

  const result split = parse(karlton::fuzzing::random_pieces(input, data[0]), max_head);
  if (split.final != whole.final || split.status != whole.status)
    report("a split changed the verdict");
  if (split.taken != whole.taken) report("a split changed the bytes taken");
  if (split.method != whole.method || split.path != whole.path ||
      split.has_authorization != whole.has_authorization ||
      split.authorization != whole.authorization)
    report("a split changed the fields");
  return 0;
}

// Fuzzes parse_payload (stores/pg_payload.*), which reads the NOTIFY payloads
// of PostgreSQL's change triggers: any database role may NOTIFY any channel,
// so these bytes are untrusted (DESIGN.md rule 9). The input is the payload.
//
// Checked beyond "no crash, no sanitizer report":
//   - an accepted payload is canonical: format_payload writes it back byte
//     for byte (so two different payloads never mean the same change, and no
//     field is read from outside its token);
//   - a refusal is invalid_option, one line, and shows at most a bounded
//     part of the input.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "stores/pg_payload.hpp"
#include <karlton/messages/errors.hpp>

namespace {

[[noreturn]] void report(const char* what) {
  std::fprintf(stderr, "pg_payload fuzzer: %s\n", what);
  std::abort();
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view payload{reinterpret_cast<const char*>(data), size};
  auto change = karlton::parse_payload(payload);
  if (change) {
    if (payload.size() > karlton::max_payload_bytes)
      report("accepted an oversized payload");
    if (karlton::format_payload(*change) != payload)
      report("an accepted payload is not what format_payload writes back");
    return 0;
  }
  if (change.error() != karlton::errc::invalid_option)
    report("a refusal of another kind");
  auto text = karlton::describe(change.error());
  if (text.find('\n') != std::string::npos) report("a refusal over several lines");
  // 32 bytes shown, each at most 4 characters escaped, plus the explanation.
  if (text.size() > 512) report("a refusal that shows too much of the input");
  return 0;
}

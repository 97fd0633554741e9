// Fuzzes the console line protocol of karlton-node (runtime/node/console.*):
// each input is up to 16 lines, carried out in order on one runtime that
// lives as long as the process (a new actor system per input would cost more
// than the commands), with a plain cache and a read-through one.
//
// Checked beyond "no crash, no sanitizer report": every command gets exactly
// one reply line, i.e. a non-empty reply without a newline.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <string_view>

#include "runtime/node/console.hpp"
#include <karlton/messages/errors.hpp>
#include <karlton/runtime/runtime.hpp>

#include "setup_cache.hpp"

using namespace karlton;

namespace {

// Bounds the cost of one input: libFuzzer's input length bounds the bytes,
// this the round trips to the shards.
constexpr int max_lines = 16;

cache must(caf::expected<cache> c) {
  return karlton::fuzzing::must("console", std::move(c));
}

node::console& console() {
  // Never destroyed: libFuzzer exits from its own threads and signal handlers,
  // and a runtime shutting down under them would only add noise.
  static auto* con = [] {
    auto* rt = new runtime;
    cache_options users;
    users.name = "users";
    users.shards = 2;
    users.max_entries = 10000; // keeps a long run's memory flat
    cache_options loaded;
    loaded.name = "loaded";
    loaded.shards = 2;
    loaded.max_entries = 10000;
    loaded.loader = [](const std::string& key) -> caf::expected<std::string> {
      if (key.rfind("known", 0) == 0) return "loaded:" + key;
      return make_error(errc::not_found, "no such key: " + key);
    };
    std::map<std::string, cache> caches{{"users", must(rt->create_cache(users))},
                                        {"loaded", must(rt->create_cache(loaded))}};
    return new node::console{*rt, std::move(caches)};
  }();
  return *con;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input{reinterpret_cast<const char*>(data), size};
  auto& con = console();
  for (int i = 0; i < max_lines && !input.empty(); ++i) {
    auto nl = input.find('\n');
    std::string line{input.substr(0, nl)};
    input.remove_prefix(nl == std::string_view::npos ? input.size() : nl + 1);
    auto reply = con.execute(line);
    if (reply.empty() || reply.find('\n') != std::string::npos) {
      std::fprintf(stderr, "console: the reply to '%s' is not one line: '%s'\n",
                   line.c_str(), reply.c_str());
      std::abort();
    }
  }
  return 0;
}

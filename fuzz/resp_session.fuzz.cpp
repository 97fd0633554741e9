// Fuzzes the Redis-protocol session (runtime/server/resp_session.*): the
// bytes after the first go to one new session, in pieces whose sizes the
// first byte seeds, over one runtime that lives as long as the process (as
// console.fuzz.cpp does), with a plain cache and a read-through one. The
// first byte's top bit selects a server with a password.
//
// Checked beyond "no crash, no sanitizer report": the output parses as RESP
// and holds exactly one reply per command the session ran, plus one for a
// protocol error; and the session ends neither paused nor with a reply lost.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <karlton/messages/errors.hpp>
#include <karlton/runtime/runtime.hpp>

#include "setup_cache.hpp"

#include "runtime/server/reply_reader.hpp"
#include "runtime/server/resp_session.hpp"

using namespace karlton;
using namespace karlton::server;

namespace {

cache must(caf::expected<cache> c) {
  return karlton::fuzzing::must("resp_session", std::move(c));
}

// The fuzzer's thread is the I/O thread and the blocking pool: jobs are
// queued and run between the session's calls, never inside run_blocking
// (the session holds its host lock there, and a job such as KARLTON.EMIT
// waits for shards whose completions take that lock).
struct queued_host final : session_host {
  std::atomic<uint64_t> wakes{0};
  std::vector<std::function<void()>> jobs;
  void wake() noexcept override { ++wakes; }
  bool run_blocking(std::function<void()> job) override {
    jobs.push_back(std::move(job));
    return true;
  }
  void run_jobs() {
    while (!jobs.empty()) {
      auto batch = std::move(jobs);
      jobs.clear();
      for (auto& job : batch)
        job();
    }
  }
};

struct contexts {
  std::shared_ptr<server_context> open, locked;
};

contexts& servers() {
  // Never destroyed, as in console.fuzz.cpp.
  static auto* both = [] {
    auto* rt = new runtime;
    cache_options plain;
    plain.name = "plain";
    plain.shards = 2;
    plain.max_entries = 10000; // keeps a long run's memory flat
    cache_options loaded;
    loaded.name = "loaded";
    loaded.shards = 2;
    loaded.max_entries = 10000;
    loaded.loader = [](const std::string& key) -> caf::expected<std::string> {
      if (key.rfind("known", 0) == 0) return "loaded:" + key;
      return make_error(errc::not_found, "no such key: " + key);
    };
    std::vector<cache> caches{must(rt->create_cache(plain)).without_queue_wait(),
                              must(rt->create_cache(loaded)).without_queue_wait()};
    resp_options o;
    o.limits.max_bulk = 4 << 10; // small enough for the fuzzer to reach
    o.limits.max_query_buffer = 16 << 10;
    o.max_in_flight = 4; // pauses often
    auto* c = new contexts;
    c->open = std::make_shared<server_context>(*rt, caches, o);
    o.password = "secret";
    c->locked = std::make_shared<server_context>(*rt, caches, o);
    return c;
  }();
  return *both;
}

[[noreturn]] void fail(const char* what, const std::string& out) {
  std::fprintf(stderr, "resp_session: %s; output: '%s'\n", what, out.c_str());
  std::abort();
}

// Counts the replies in `out`; aborts if it is not RESP.
size_t count_replies(const std::string& out) {
  size_t n = 0;
  std::string_view rest{out};
  while (!rest.empty()) {
    size_t len = 0;
    auto st = read_reply(rest, len);
    if (st != reply_status::complete) fail("the output is not whole RESP replies", out);
    rest.remove_prefix(len);
    ++n;
  }
  return n;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  auto seed = static_cast<uint32_t>(data[0]) * 2654435761u + 1;
  auto ctx = (data[0] & 0x80) ? servers().locked : servers().open;
  std::string_view input{reinterpret_cast<const char*>(data) + 1, size - 1};
  queued_host host;
  auto s = make_session(ctx, &host);
  auto commands_before = ctx->counters.total_commands.load();
  auto errors_before = ctx->counters.protocol_errors.load();
  std::string out;
  bool open = true;
  while (!input.empty() && open) {
    seed = seed * 1103515245u + 12345u;
    size_t piece = 1 + (seed >> 16) % 64;
    if (piece > input.size()) piece = input.size();
    // A paused session reads nothing until its replies are in.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{10};
    while (!s->wants_input() && !s->closing()) {
      host.run_jobs();
      s->collect(out);
      if (std::chrono::steady_clock::now() > deadline) fail("paused for 10 s", out);
    }
    if (s->closing()) break;
    open = s->feed(input.substr(0, piece));
    input.remove_prefix(piece);
    host.run_jobs();
    s->collect(out);
  }
  // Every command the session ran gets its reply, however long the shard takes.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{10};
  for (;;) {
    host.run_jobs();
    s->collect(out);
    // A protocol error met while collect resumed a paused pipeline closes too.
    bool settled = s->wants_input() || s->closing();
    auto expected = (ctx->counters.total_commands.load() - commands_before) +
                    (ctx->counters.protocol_errors.load() - errors_before);
    auto got = count_replies(out);
    if (got > expected) fail("more replies than commands", out);
    if (settled && got == expected) break;
    if (std::chrono::steady_clock::now() > deadline)
      fail("replies missing after 10 s", out);
  }
  s->detach();
  return 0;
}

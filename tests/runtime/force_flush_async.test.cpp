// cache::force_flush_async: force_flush's answer as a callback, for callers
// that must not hold a thread while a slow store takes the writes (the RESP
// server's KARLTON.FLUSH).
#include <catch2/catch.hpp>

#include <chrono>
#include <future>
#include <thread>

#include "server/gated_store.hpp"
#include "support/must.hpp"
#include <karlton/messages/errors.hpp>
#include <karlton/runtime/runtime.hpp>

using namespace karlton;
using namespace std::chrono_literals;
using karlton::testing::must;

namespace {

// The error a force_flush_async answered (none: the writes are stored).
struct answer {
  std::promise<caf::error> p;
  std::future<caf::error> f = p.get_future();

  auto callback() {
    return
      [this](caf::expected<cache::unit> x) { p.set_value(x ? caf::error{} : x.error()); };
  }
  bool ready(std::chrono::milliseconds within) {
    return f.wait_for(within) == std::future_status::ready;
  }
};

// A write-back cache over a held store with one dirty write, "k".
struct one_dirty : testing::gated_cache {
  one_dirty() : gated_cache(write_mode::write_back) { REQUIRE_FALSE(c.put("k", "v")); }
};

} // namespace

TEST_CASE("force_flush_async without write-back answers at once, and shut_down after "
          "the runtime stopped",
          "[write_back][force_flush]") {
  runtime rt;
  auto c = must(rt.create_cache("plain"));
  answer now;
  c.force_flush_async(10s, now.callback());
  REQUIRE(now.ready(0ms));
  CHECK_FALSE(now.f.get());
  rt.shutdown();
  answer stopped;
  c.force_flush_async(10s, stopped.callback());
  REQUIRE(stopped.ready(0ms));
  CHECK(stopped.f.get() == errc::shut_down);
}

TEST_CASE("force_flush_async answers once the store has the writes, and timeout when "
          "the store takes longer",
          "[write_back][force_flush]") {
  one_dirty f;
  answer early, done;
  f.c.force_flush_async(50ms, early.callback());
  REQUIRE(early.ready(10s));
  CHECK(early.f.get() == errc::timeout);
  REQUIRE(f.write_held());
  f.c.force_flush_async(10s, done.callback());
  CHECK_FALSE(done.ready(0ms)); // returned without waiting for the store
  f.db->gate.release();
  REQUIRE(done.ready(10s));
  CHECK_FALSE(done.f.get());
  CHECK(f.stored("k") == "v");
}

TEST_CASE("a force_flush_async still waiting when the runtime stops is answered "
          "shut_down",
          "[write_back][force_flush]") {
  one_dirty f;
  answer waiting;
  f.c.force_flush_async(10s, waiting.callback());
  REQUIRE(f.write_held());
  // The drain gives up after 50 ms; stopping the store writer then waits for
  // the store, so the stop runs on a thread of its own until the gate opens.
  std::thread stopper{[&] { f.rt.shutdown(50ms); }};
  bool answered = waiting.ready(10s);
  f.db->gate.release();
  stopper.join();
  REQUIRE(answered);
  CHECK(waiting.f.get() == errc::shut_down);
}

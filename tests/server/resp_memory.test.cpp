// What a connection's buffers keep once it goes quiet (review of 7 Dec: a
// connection kept every reply slot it had walked through, each with a reply
// of up to 64 KiB, and the session its largest input and output for life).
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "runtime/server/kept_buffers.hpp"
#include "runtime/server/reply_slots.hpp"
#include "server/session_fixture.hpp"
#include "support/must.hpp"
#include <karlton/runtime/runtime.hpp>

using namespace karlton;
using namespace karlton::server;
using karlton::testing::context_for;
using karlton::testing::must;
using karlton::testing::resp_command;
using karlton::testing::test_client;

namespace {

/// The most a quiet connection's session may hold: its input and output
/// buffers at 64 KiB each, and one block of 64 slots, each with a reply of
/// up to 4 KiB. A figure, not the constants, so the test fails if they grow.
constexpr size_t quiet_bytes = 400 << 10;

void answer(reply_slot& s, std::string bytes) {
  s.bytes = std::move(bytes);
  s.ready.store(true, std::memory_order_release);
}

} // namespace

TEST_CASE("reply slots: one command at a time reuses the first slot, and a ring "
          "that emptied keeps one block and no large reply",
          "[resp_session][memory]") {
  reply_slots ring{4096};
  auto* first = &ring.open();
  answer(*first, std::string(size_t{1} << 20, 'x'));
  ring.pop();
  CHECK(first->bytes.capacity() <= kept_reply_bytes);
  int moved = 0;
  for (int i = 0; i < 10'000; ++i) {
    auto& s = ring.open();
    moved += &s != first; // before, sequence numbers walked all 4,096 slots
    answer(s, "+OK\r\n");
    ring.pop();
  }
  CHECK(moved == 0);
  CHECK(ring.bytes_held() <= quiet_bytes);
  // A pipelined burst spreads over blocks; once answered, they go, and the
  // first block keeps no reply over kept_reply_bytes (64 of 8 KB were kept).
  for (int i = 0; i < 1000; ++i)
    answer(ring.open(), std::string(8000, 'y'));
  CHECK(ring.bytes_held() >=
        1000 / reply_slots::block_size * reply_slots::block_size * sizeof(reply_slot));
  CHECK(ring.in_use() == 1000);
  for (int i = 0; i < 1000; ++i) {
    REQUIRE(ring.ready_head());
    ring.pop();
  }
  CHECK(ring.bytes_held() <= quiet_bytes);
  CHECK(&ring.open() == first);
}

TEST_CASE("session: a quiet connection keeps a few KiB of buffers, however large its "
          "past commands and replies",
          "[resp_session][memory]") {
  runtime rt;
  auto c = must(rt.create_cache("db0"));
  test_client cl{context_for(rt, {c})};
  std::string big(size_t{8} << 20, 'e');
  auto echo = resp_command({"ECHO", big});
  // Sent in two parts, as a large command arrives.
  CHECK(cl.feed(echo.substr(0, echo.size() / 2)));
  CHECK(cl.send(echo.substr(echo.size() / 2), 1).at(0).size() > big.size());
  CHECK(cl.s->buffered_bytes() <= quiet_bytes); // before: its input and output, 16 MiB
  // One at a time, 4,096 replies of 4 KB.
  REQUIRE_FALSE(c.put("v", std::string(4000, 'v')));
  for (int i = 0; i < 4096; ++i)
    REQUIRE(cl.send(resp_command({"GET", "v"}), 1).size() == 1);
  CHECK(cl.s->buffered_bytes() <= quiet_bytes); // before: 16 MiB of slots
}

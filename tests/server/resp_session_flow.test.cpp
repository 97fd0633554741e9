// The session's flow control (plan §4.2, §4.3): the read-your-writes barrier
// under write-through, the in-flight bound, pushes, detach, a full pool, and
// KARLTON.FLUSH, which needs none.
#include <catch2/catch.hpp>

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>

#include "runtime/server/session_impl.hpp"
#include "server/gated_store.hpp"
#include "server/session_fixture.hpp"
#include "support/latch.hpp"
#include "support/must.hpp"
#include <karlton/runtime/runtime.hpp>
#include <karlton/stores/memory_store.hpp>

using namespace karlton;
using namespace karlton::server;
using karlton::testing::context_for;
using karlton::testing::must;
using karlton::testing::resp_command;
using karlton::testing::test_client;

namespace {

// One cache, db0, whose loads wait at `gate` until the test releases it (or
// ends): the way to keep replies in flight. Each load counts itself in
// `loads` and answers `answer(key)`, the key itself unless told.
struct gated_loader {
  using answer_fn = std::function<std::string(const std::string&)>;

  static std::string the_key(const std::string& k) { return k; }

  explicit gated_loader(answer_fn answer = the_key,
                        uint32_t concurrency = cache_options{}.loader_concurrency)
    : c(must(rt.create_cache(options(std::move(answer), concurrency)))) {}

  runtime rt;
  testing::latch gate;
  std::atomic<int> loads{0};
  cache c;
  testing::release_on_exit open_gate{gate};

private:
  cache_options options(answer_fn answer, uint32_t concurrency) {
    cache_options o;
    o.name = "db0";
    o.loader = [this, answer = std::move(answer)](
                 const std::string& k) -> caf::expected<std::string> {
      ++loads;
      gate.wait();
      return answer(k);
    };
    o.loader_concurrency = concurrency;
    return o;
  }
};

} // namespace

TEST_CASE("session: a pipelined GET after SET of the key returns the new value under "
          "write-through with a slow store (read-your-writes)",
          "[resp_session][barrier]") {
  testing::gated_cache f;
  test_client cl{context_for(f.rt, {f.c})};
  cl.feed(resp_command({"SET", "k", "1"}) + resp_command({"GET", "k"}) +
          resp_command({"EXISTS", "k"}) + resp_command({"GET", "other"}));
  // The GET waits for the SET: execution pauses and the session stops reading.
  CHECK_FALSE(cl.s->wants_input());
  CHECK(cl.collect_now().empty());
  // Without the barrier the GET would read the table now, before the store
  // acknowledged the SET, and answer nil.
  CHECK_FALSE(must(f.c.get("k")));
  f.db->gate.release();
  CHECK(cl.replies(4) ==
        std::vector<std::string>{"+OK\r\n", "$1\r\n1\r\n", ":1\r\n", "$-1\r\n"});
  CHECK(cl.s->wants_input());
}

TEST_CASE("session: DEL and FLUSHDB hold back later reads of what they change",
          "[resp_session][barrier]") {
  testing::gated_cache f;
  REQUIRE_FALSE(f.put_stored("k", "old"));
  REQUIRE_FALSE(f.put_stored("j", "old"));
  test_client cl{context_for(f.rt, {f.c})};
  cl.feed(resp_command({"DEL", "k"}) + resp_command({"GET", "k"}));
  CHECK_FALSE(cl.s->wants_input());
  f.db->gate.release();
  CHECK(cl.replies(2) == std::vector<std::string>{":1\r\n", "$-1\r\n"});
  // A read of another key does not wait for a write in flight.
  f.db->holding = false;
  CHECK(cl.send(resp_command({"FLUSHDB"}) + resp_command({"DBSIZE"}), 2) ==
        std::vector<std::string>{"+OK\r\n", ":0\r\n"});
}

TEST_CASE("session: beyond max_in_flight execution pauses and collect resumes it",
          "[resp_session]") {
  gated_loader f{gated_loader::the_key, 8};
  resp_options opts;
  opts.max_in_flight = 2;
  test_client cl{context_for(f.rt, {f.c}, opts)};
  std::string pipeline;
  for (auto k : {"a", "b", "c", "d", "e"})
    pipeline += resp_command({"KARLTON.LOAD", k});
  pipeline += resp_command({"PING"});
  cl.feed(pipeline);
  CHECK_FALSE(cl.s->wants_input());
  // Two commands run; the rest wait inside the session.
  CHECK(cl.ctx->counters.total_commands.load() == 2);
  CHECK(cl.collect_now().empty());
  CHECK(cl.ctx->counters.total_commands.load() == 2);
  f.gate.release();
  CHECK(cl.replies(6) == std::vector<std::string>{"$1\r\na\r\n", "$1\r\nb\r\n",
                                                  "$1\r\nc\r\n", "$1\r\nd\r\n",
                                                  "$1\r\ne\r\n", "+PONG\r\n"});
  CHECK(cl.ctx->counters.total_commands.load() == 6);
  CHECK(cl.s->wants_input());
  CHECK(f.loads.load() == 5);
}

TEST_CASE("session: commands held back by the in-flight bound give their memory "
          "back once they ran",
          "[resp_session][memory]") {
  gated_loader f;
  resp_options opts;
  opts.max_in_flight = 1;
  test_client cl{context_for(f.rt, {f.c}, opts)};
  std::string big(size_t{8} << 20, 'e');
  // The first ECHO waits, its arguments copied; the second waits unparsed.
  cl.feed(resp_command({"KARLTON.LOAD", "a"}) + resp_command({"ECHO", big}) +
          resp_command({"ECHO", big}));
  CHECK_FALSE(cl.s->wants_input());
  CHECK(cl.s->buffered_bytes() >= 2 * big.size());
  f.gate.release();
  auto got = cl.replies(3);
  REQUIRE(got.size() == 3);
  CHECK(got[2].size() > big.size());
  CHECK(cl.s->buffered_bytes() < big.size() / 16); // before: both, for life
}

TEST_CASE("session: pushes keep their place among the replies and wake the host",
          "[resp_session]") {
  runtime rt;
  auto c = must(rt.create_cache("db0"));
  test_client cl{context_for(rt, {c})};
  REQUIRE(cl.call({"HELLO", "3"}).rfind("%", 0) == 0); // pushes are RESP3's
  auto seen = cl.host->wakes();
  cl.s->push(">2\r\n$4\r\nmore\r\n$1\r\nx\r\n");
  CHECK(cl.host->wakes() == seen + 1);
  cl.s->push(">1\r\n$1\r\ny\r\n"); // a wake is already pending
  CHECK(cl.host->wakes() == seen + 1);
  // Both were made before the PING ran, so they go out before its reply,
  // as Redis writes them (the order test: made while a reply waits, after it).
  cl.feed(resp_command({"PING"}));
  CHECK(cl.collect_now() == ">2\r\n$4\r\nmore\r\n$1\r\nx\r\n>1\r\n$1\r\ny\r\n+PONG\r\n");
}

TEST_CASE("session: pushes past the output buffer limit are dropped and the session asks "
          "to be closed",
          "[resp_session]") {
  runtime rt;
  auto c = must(rt.create_cache("db0"));
  resp_options o;
  o.output_buffer_limit = 1000;
  test_client cl{context_for(rt, {c}, o)};
  auto seen = cl.host->wakes();
  // A client that does not read is paused and never collected: before the
  // bound, every invalidation of a tracked key queued here without limit.
  for (int i = 0; i < 40; ++i) {
    cl.s->push(">2\r\n$10\r\ninvalidate\r\n*1\r\n$3\r\n" + std::to_string(100 + i) +
               "\r\n");
    CHECK(cl.s->output_overflowed() == (i >= 29)); // 34 bytes each: 30 pass 1000
  }
  // The first push woke the host; a host that does not collect never clears
  // that wake, so the overflow wakes it again, to close.
  CHECK(cl.host->wakes() == seen + 2);
  cl.feed(resp_command({"PING"}));
  CHECK(cl.collect_now() == "+PONG\r\n"); // dropped, not sent half
  CHECK(cl.s->output_overflowed());
}

TEST_CASE("session: replies completed on other threads past the output buffer limit are "
          "dropped and the session asks to be closed",
          "[resp_session]") {
  gated_loader f{[](const std::string&) { return std::string(3000, 'v'); }};
  resp_options ro;
  ro.output_buffer_limit = 10000;
  test_client cl{context_for(f.rt, {f.c}, ro)};
  // Ten loads in flight, none answered yet: nothing counted, so all run.
  // Their replies (3 KB each) complete on loader threads; they were not
  // counted anywhere, so a pipeline of large misses held any amount.
  std::string pipeline;
  for (int i = 0; i < 10; ++i)
    pipeline += resp_command({"KARLTON.LOAD", "k" + std::to_string(i)});
  cl.feed(pipeline);
  CHECK_FALSE(cl.s->output_overflowed());
  auto seen = cl.host->wakes();
  f.gate.release();
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{10};
  while (!cl.s->output_overflowed() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::yield();
  CHECK(cl.s->output_overflowed());
  // The first completion's wake is never collected here: the overflow wakes
  // the host once more regardless.
  CHECK(cl.host->wait_wake(seen + 1));
}

TEST_CASE("session: after detach a late completion wakes nobody and the session outlives "
          "its owner",
          "[resp_session]") {
  gated_loader f;
  auto ctx = context_for(f.rt, {f.c});
  testing::fake_host host;
  auto s = make_session(ctx, &host);
  s->feed(resp_command({"KARLTON.LOAD", "k"}));
  std::weak_ptr<session> alive = s;
  s->detach();
  s.reset();
  CHECK_FALSE(alive.expired()); // the completion holds it
  auto seen = host.wakes();
  f.gate.release();
  // The load's completion drops the last reference: wait for that.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{10};
  while (!alive.expired() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::yield();
  CHECK(alive.expired());
  CHECK(host.wakes() == seen);
}

TEST_CASE("session: a full blocking pool answers busy", "[resp_session]") {
  runtime rt;
  auto c = must(rt.create_cache("db0"));
  test_client cl{context_for(rt, {c})};
  cl.host->refuse_jobs = true;
  CHECK(cl.call({"INFO"}) == "-ERR busy\r\n");
  CHECK(cl.call({"KARLTON.INVALIDATE", "t"}) == "-ERR busy\r\n");
  cl.host->refuse_jobs = false;
  CHECK(cl.call({"KARLTON.INVALIDATE", "t"}) == ":0\r\n");
}

TEST_CASE("session: a connection runs nothing more while 8 of its jobs wait for the pool",
          "[resp_session][limits]") {
  runtime rt;
  auto c = must(rt.create_cache("db0"));
  test_client cl{context_for(rt, {c}), /*threads*/ 0}; // the test runs the jobs
  std::string pipeline;
  for (int i = 0; i < 20; ++i)
    pipeline += resp_command({"INFO", "server"});
  cl.feed(pipeline);
  // Before, all 20 jobs queued at once, each with its command's arguments
  // (a SET to a sync cache: the value), and the connection read on.
  CHECK(cl.host->queued() == session_impl::max_pool_jobs);
  CHECK_FALSE(cl.s->wants_input());
  REQUIRE(cl.host->run_newest()); // one done: one more runs
  cl.collect_now();
  CHECK(cl.host->queued() == session_impl::max_pool_jobs);
  for (int i = 0; i < 20 && cl.host->run_newest(); ++i)
    cl.collect_now();
  CHECK(cl.host->queued() == 0);
  CHECK(cl.s->wants_input());
  CHECK(cl.ctx->counters.total_commands.load() == 20);
}

TEST_CASE("session: KARLTON.FLUSH hands the pool no job and is answered, in its place, "
          "once the store has the writes",
          "[resp_session][flush]") {
  testing::gated_cache f{write_mode::write_back};
  test_client cl{context_for(f.rt, {f.c}), /*threads*/ 0};
  REQUIRE(cl.call({"SET", "k", "v"}) == "+OK\r\n");
  cl.feed(resp_command({"KARLTON.FLUSH"}) + resp_command({"PING"}));
  // Before: one pool job, which held its thread until the store answered.
  CHECK(cl.host->queued() == 0);
  CHECK(cl.collect_now().empty()); // the PING's reply waits behind the FLUSH's
  f.db->gate.release();
  CHECK(cl.replies(2) == std::vector<std::string>{"+OK\r\n", "+PONG\r\n"});
  CHECK(f.stored("k") == "v");
}

TEST_CASE(
  "session: KARLTON.FLUSH calls waiting for the flusher are bounded as the pool's "
  "queue is",
  "[resp_session][flush]") {
  testing::gated_cache f{write_mode::write_back};
  resp_options o;
  o.blocking_queue = 2;
  test_client cl{context_for(f.rt, {f.c}, o), /*threads*/ 0};
  REQUIRE(cl.call({"SET", "k", "v"}) == "+OK\r\n");
  // Reads of one connection run side by side: three waiting FLUSHes at once.
  cl.feed(resp_command({"KARLTON.FLUSH"}) + resp_command({"KARLTON.FLUSH"}) +
          resp_command({"KARLTON.FLUSH"}));
  f.db->gate.release();
  CHECK(cl.replies(3) == std::vector<std::string>{"+OK\r\n", "+OK\r\n", "-ERR busy\r\n"});
  // The places are given back with the answers.
  CHECK(cl.call({"KARLTON.FLUSH"}) == "+OK\r\n");
  CHECK(cl.call({"KARLTON.FLUSH"}) == "+OK\r\n");
}

TEST_CASE("session: replies held for the socket stay near the output limit, and MGET "
          "never builds a reply over it",
          "[resp_session]") {
  runtime rt;
  auto c = must(rt.create_cache("db0"));
  resp_options o;
  o.output_buffer_limit = 10000;
  test_client cl{context_for(rt, {c}, o)};
  REQUIRE(cl.call({"SET", "big", std::string(3000, 'x')}) == "+OK\r\n");
  // 100 pipelined hits of 3 KB: 300 KB of replies if nothing held them back.
  std::string pipeline;
  for (int i = 0; i < 100; ++i)
    pipeline += resp_command({"GET", "big"});
  cl.feed(pipeline);
  auto first = cl.collect_now();
  CHECK(first.size() < 2 * o.output_buffer_limit); // was 300,000+ before
  CHECK_FALSE(cl.s->wants_input());                // the rest waits inside the session
  test_client other{context_for(rt, {c}, o)};      // a fresh connection for MGET
  CHECK(other.call({"MGET", "big", "big", "big", "big"})
          .rfind("-ERR MGET's reply of 12040 bytes exceeds the output buffer limit", 0) ==
        0); // with its framing: "*4\r\n" and "$3000\r\n...\r\n" 4 times
  // 3 values of 3,000 B with their framing fit (9,031 B)
  CHECK(other.call({"MGET", "big", "big", "big"}).rfind("*3\r\n", 0) == 0);
  o.output_buffer_limit = 9000;
  test_client tight{context_for(rt, {c}, o)};
  CHECK(tight.call({"MGET", "big", "big", "big"}).rfind("-ERR MGET's reply of 9031", 0) ==
        0);
  CHECK(other.call({"MGET", "big", "big", "nope"}).rfind("*3\r\n", 0) == 0);
}

TEST_CASE(
  "session: replies waiting behind a write in flight count toward the output pause",
  "[resp_session]") {
  testing::gated_cache f;
  std::string big(100 << 10, 'v');
  REQUIRE_FALSE(f.put_stored("big", big));
  resp_options opts;
  opts.output_pause_bytes = 1 << 20;
  test_client cl{context_for(f.rt, {f.c}, opts)};
  // The SET waits for the store; every GET behind it is answered at once
  // but cannot leave before the SET's reply. Without counting them, all 50
  // ran and held 5 MB; counted, execution pauses after about 1 MiB.
  std::string pipeline = resp_command({"SET", "k", "1"});
  for (int i = 0; i < 50; ++i)
    pipeline += resp_command({"GET", "big"});
  cl.feed(pipeline);
  CHECK_FALSE(cl.s->wants_input());
  auto ran = cl.ctx->counters.total_commands.load();
  CHECK(ran >= 2);
  CHECK(ran <= 1 + 11); // the SET, and GETs up to the first past 1 MiB
  f.db->gate.release();
  auto replies = cl.replies(51);
  REQUIRE(replies.size() == 51);
  CHECK(replies.front() == "+OK\r\n");
  CHECK(replies.back() == "$" + std::to_string(big.size()) + "\r\n" + big + "\r\n");
  CHECK(cl.ctx->counters.total_commands.load() == 51);
}

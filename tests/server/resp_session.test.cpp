// The Redis-protocol session without a socket (plan §4.2, §4.3, §4.4, §5):
// bytes in, replies out in request order, over a real runtime.
#include <catch2/catch.hpp>

#include <atomic>
#include <string>

#include "server/session_fixture.hpp"
#include "support/latch.hpp"
#include "support/must.hpp"
#include <karlton/runtime/runtime.hpp>

using namespace karlton;
using namespace karlton::server;
using karlton::testing::context_for;
using karlton::testing::must;
using karlton::testing::resp_command;
using karlton::testing::test_client;

namespace {

cache_options plain(std::string name) {
  cache_options o;
  o.name = std::move(name);
  o.shards = 2;
  return o;
}

} // namespace

TEST_CASE("session: PING, ECHO, SET, GET, DEL answer as Redis does", "[resp_session]") {
  runtime rt;
  auto c = must(rt.create_cache(plain("db0")));
  test_client cl{context_for(rt, {c})};
  CHECK(cl.call({"PING"}) == "+PONG\r\n");
  CHECK(cl.call({"ping", "hi"}) == "$2\r\nhi\r\n");
  CHECK(cl.call({"ECHO", "a\r\nb"}) == "$4\r\na\r\nb\r\n");
  CHECK(cl.call({"GET", "k"}) == "$-1\r\n");
  CHECK(cl.call({"SET", "k", "v1"}) == "+OK\r\n");
  CHECK(cl.call({"GET", "k"}) == "$2\r\nv1\r\n");
  CHECK(must(c.get("k")).bytes() == "v1");
  CHECK(cl.call({"DEL", "k", "nope", "k"}) == ":1\r\n");
  CHECK(cl.call({"GET", "k"}) == "$-1\r\n");
  // EX twice: the last counts, as in Redis 7.0 (a syntax error before).
  CHECK(cl.call({"SET", "k", "v", "EX", "10", "EX", "20"}) == "+OK\r\n");
  CHECK(cl.call({"TTL", "k"}) == ":20\r\n");
  // Only the last is checked, after the syntax (as redis-server 7.0.15 answers).
  CHECK(cl.call({"SET", "k", "v", "EX", "0", "EX", "30"}) == "+OK\r\n");
  CHECK(cl.call({"TTL", "k"}) == ":30\r\n");
  CHECK(cl.call({"SET", "k", "v", "EX", "abc", "EX", "40"}) == "+OK\r\n");
  CHECK(cl.call({"TTL", "k"}) == ":40\r\n");
  CHECK(cl.call({"SET", "k", "v", "EX", "0", "NOPE"}) == "-ERR syntax error\r\n");
  CHECK(cl.call({"SET", "k", "v", "EX", "10", "EX", "abc"}) ==
        "-ERR value is not an integer or out of range\r\n");
  CHECK(cl.call({"TTL", "k"}) == ":40\r\n"); // refused commands change nothing
  // Inline commands, as nc sends them.
  CHECK(cl.send("PING\r\n", 1) == std::vector<std::string>{"+PONG\r\n"});
}

TEST_CASE("session: errors have Redis's texts", "[resp_session]") {
  runtime rt;
  auto c = must(rt.create_cache(plain("db0")));
  test_client cl{context_for(rt, {c})};
  CHECK(cl.call({"FOO", "a", "b"}) ==
        "-ERR unknown command 'FOO', with args beginning with: 'a' 'b' \r\n");
  CHECK(cl.call({"GET"}) == "-ERR wrong number of arguments for 'get' command\r\n");
  CHECK(cl.call({"PING", "a", "b"}) ==
        "-ERR wrong number of arguments for 'ping' command\r\n");
  CHECK(cl.call({"SET", "k", "v", "XX", "NX"}) == "-ERR syntax error\r\n");
  CHECK(cl.call({"SET", "k", "v", "EX", "10", "PX", "20"}) == "-ERR syntax error\r\n");
  CHECK(cl.call({"SET", "k", "v", "KEEPTTL", "EX", "20"}) == "-ERR syntax error\r\n");
  CHECK(cl.call({"SET", "k", "v", "EX", "0"}) ==
        "-ERR invalid expire time in 'set' command\r\n");
  CHECK(cl.call({"SET", "k", "v", "PX", "-1"}) ==
        "-ERR invalid expire time in 'set' command\r\n");
  CHECK(cl.call({"SET", "k", "v", "EX", "abc"}) ==
        "-ERR value is not an integer or out of range\r\n");
  CHECK(cl.call({"SET", "k", "v", "EX", "9223372036854775807"}) ==
        "-ERR invalid expire time in 'set' command\r\n");
  CHECK(cl.call({"EXPIRE", "k", "9223372036854775807"}) ==
        "-ERR invalid expire time in 'expire' command\r\n");
  CHECK(cl.call({"INCRBY", "k", "x"}) ==
        "-ERR value is not an integer or out of range\r\n");
  CHECK(cl.call({"SELECT", "99"}) == "-ERR DB index is out of range\r\n");
  CHECK(cl.call({"SELECT", "x"}) == "-ERR value is not an integer or out of range\r\n");
  CHECK(cl.call({"MSET", "a", "b", "c"}) ==
        "-ERR wrong number of arguments for 'mset' command\r\n");
  CHECK(cl.call({"HELLO", "4"}) == "-NOPROTO unsupported protocol version\r\n");
  CHECK(cl.call({"CLIENT", "FOO"}) ==
        "-ERR unknown subcommand 'FOO'. Try CLIENT HELP.\r\n");
  CHECK(cl.call({"FLUSHDB", "x"}) == "-ERR syntax error\r\n");
}

TEST_CASE("session: QUIT answers, then closes, and later commands do not run",
          "[resp_session]") {
  runtime rt;
  auto c = must(rt.create_cache(plain("db0")));
  test_client cl{context_for(rt, {c})};
  CHECK_FALSE(cl.feed(resp_command({"PING"}) + resp_command({"QUIT"}) +
                      resp_command({"SET", "k", "v"})));
  CHECK_FALSE(cl.s->wants_input());
  CHECK(cl.replies(2) == std::vector<std::string>{"+PONG\r\n", "+OK\r\n"});
  CHECK(cl.s->closing());
  CHECK_FALSE(must(c.contains("k")));
  CHECK_FALSE(cl.feed(resp_command({"PING"})));
  CHECK(cl.collect_now().empty());
}

TEST_CASE(
  "session: a protocol error is answered after the replies before it, then closes",
  "[resp_session]") {
  runtime rt;
  auto c = must(rt.create_cache(plain("db0")));
  test_client cl{context_for(rt, {c})};
  CHECK_FALSE(cl.feed(resp_command({"SET", "k", "v"}) + "*1\r\n$-5\r\n"));
  CHECK(cl.replies(2) == std::vector<std::string>{
                           "+OK\r\n", "-ERR Protocol error: invalid bulk length\r\n"});
  CHECK(cl.s->closing());
}

TEST_CASE(
  "session: pipelined replies leave in request order when calls complete out of order",
  "[resp_session]") {
  runtime rt;
  testing::latch gate;
  auto o = plain("db0");
  // One shard: it hands its loads to the loader threads in turn, so the fast
  // load never queues behind the slow one (two shards each start at thread 0).
  o.shards = 1;
  o.loader = [&](const std::string& k) -> caf::expected<std::string> {
    if (k == "slow") gate.wait();
    return "loaded-" + k;
  };
  auto c = must(rt.create_cache(o));
  testing::release_on_exit open_gate{gate};
  REQUIRE_FALSE(c.put("hit", "h"));
  test_client cl{context_for(rt, {c})};
  // The first command waits for the gate; everything after it completes at
  // once (a direct hit inline, a load, PING synchronously).
  auto seen = cl.host->wakes();
  cl.feed(resp_command({"KARLTON.LOAD", "slow"}) + resp_command({"GET", "hit"}) +
          resp_command({"KARLTON.LOAD", "fast"}) + resp_command({"PING"}) +
          resp_command({"ECHO", "e"}));
  CHECK(cl.collect_now().empty()); // nothing may overtake the slow one
  // The fast load completes on a loader thread and wakes the host.
  REQUIRE(cl.host->wait_wake(seen));
  CHECK(cl.collect_now().empty());
  gate.release();
  auto got = cl.replies(5);
  CHECK(got == std::vector<std::string>{"$11\r\nloaded-slow\r\n", "$1\r\nh\r\n",
                                        "$11\r\nloaded-fast\r\n", "+PONG\r\n",
                                        "$1\r\ne\r\n"});
}

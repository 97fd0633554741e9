// Every row of the command table (plan §5) through a session, with the
// replies Redis 7.0 gives for the same input; AUTH, SELECT and HELLO 3.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <string>
#include <string_view>

#include "runtime/server/session_impl.hpp"
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
using namespace std::chrono_literals;

namespace {

bool starts_with(const std::string& s, std::string_view prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

} // namespace

TEST_CASE("session: AUTH with a password: NOAUTH first, WRONGPASS, then OK",
          "[resp_session][auth]") {
  runtime rt;
  auto c = must(rt.create_cache("db0"));
  resp_options o;
  o.password = "sekrit";
  test_client cl{context_for(rt, {c}, o)};
  CHECK(cl.call({"PING"}) == "-NOAUTH Authentication required.\r\n");
  CHECK(cl.call({"GET", "k"}) == "-NOAUTH Authentication required.\r\n");
  CHECK(cl.call({"GET"}) == "-ERR wrong number of arguments for 'get' command\r\n");
  CHECK(starts_with(cl.call({"FOO"}), "-ERR unknown command 'FOO'"));
  CHECK(starts_with(cl.call({"HELLO", "3"}), "-NOAUTH HELLO must be called"));
  CHECK(cl.call({"AUTH", "sekrix"}) ==
        "-WRONGPASS invalid username-password pair or user is disabled.\r\n");
  CHECK(cl.call({"AUTH", "bob", "sekrit"}) ==
        "-WRONGPASS invalid username-password pair or user is disabled.\r\n");
  CHECK(cl.call({"AUTH", "a", "b", "c"}) == "-ERR syntax error\r\n");
  CHECK(cl.call({"AUTH", "sekrit"}) == "+OK\r\n");
  CHECK(cl.call({"PING"}) == "+PONG\r\n");

  test_client other{cl.ctx};
  // Options take effect in order, as in Redis 7.0.15: a bad name before
  // AUTH fails the login; after it, only the name and the protocol.
  CHECK(other.call({"HELLO", "3", "SETNAME", "a b", "AUTH", "default", "sekrit"}) ==
        "-ERR Client names cannot contain spaces, newlines or special characters.\r\n");
  CHECK(other.call({"GET", "k"}) == "-NOAUTH Authentication required.\r\n");
  CHECK(other.call({"HELLO", "3", "AUTH", "default", "sekrit", "SETNAME", "a b"}) ==
        "-ERR Client names cannot contain spaces, newlines or special characters.\r\n");
  CHECK(other.call({"GET", "k"}) == "$-1\r\n"); // logged in, still RESP2
  CHECK(starts_with(other.call({"HELLO", "3", "AUTH", "default", "sekrit"}), "%7\r\n"));
  CHECK(other.call({"GET", "k"}) == "_\r\n");

  // Before AUTH the parser keeps Redis's small limits.
  test_client stranger{cl.ctx};
  stranger.feed("*20\r\n");
  auto r = stranger.replies(1);
  REQUIRE(r.size() == 1);
  CHECK(r[0] == "-ERR Protocol error: unauthenticated multibulk length\r\n");
}

TEST_CASE("session: the third wrong password before login closes the connection",
          "[resp_session][auth]") {
  runtime rt;
  auto c = must(rt.create_cache("db0"));
  resp_options o;
  o.password = "sekrit";
  test_client guesser{context_for(rt, {c}, o)};
  const std::string wrong =
    "-WRONGPASS invalid username-password pair or user is disabled.\r\n";
  // Before, every guess of a pipelined line was answered: 600k a second.
  CHECK_FALSE(guesser.feed(resp_command({"AUTH", "guess1"}) +
                           resp_command({"HELLO", "3", "AUTH", "default", "guess2"}) +
                           resp_command({"AUTH", "guess3"}) +
                           resp_command({"AUTH", "sekrit"})));
  CHECK(guesser.replies(3) == std::vector<std::string>{wrong, wrong, wrong});
  CHECK(guesser.s->closing());
  CHECK(guesser.collect_now().empty()); // the fourth never ran
  CHECK(guesser.ctx->counters.auth_failures == 3);

  // Once logged in, a wrong AUTH is answered and the connection stays.
  test_client user{guesser.ctx};
  CHECK(user.call({"AUTH", "sekrit"}) == "+OK\r\n");
  for (int i = 0; i < 3; ++i)
    CHECK(user.call({"AUTH", "nope"}) == wrong);
  CHECK_FALSE(user.s->closing());
  CHECK(user.call({"PING"}) == "+PONG\r\n");
  CHECK(user.ctx->counters.auth_failures == 6);
}

TEST_CASE("session: AUTH without a password configured", "[resp_session][auth]") {
  runtime rt;
  auto c = must(rt.create_cache("db0"));
  test_client cl{context_for(rt, {c})};
  CHECK(
    cl.call({"AUTH", "x"}) ==
    "-ERR AUTH <password> called without any password configured for the default user. "
    "Are you sure your configuration is correct?\r\n");
  CHECK(cl.call({"AUTH", "default", "anything"}) == "+OK\r\n");
  CHECK(cl.call({"AUTH", "bob", "x"}) ==
        "-WRONGPASS invalid username-password pair or user is disabled.\r\n");
}

TEST_CASE("session: SELECT picks the cache in node.caches order", "[resp_session]") {
  runtime rt;
  auto a = must(rt.create_cache("zeta"));
  auto b = must(rt.create_cache("alpha"));
  test_client cl{context_for(rt, {a, b})};
  CHECK(cl.call({"SET", "k", "in-zeta"}) == "+OK\r\n");
  CHECK(cl.call({"SELECT", "1"}) == "+OK\r\n");
  CHECK(cl.call({"GET", "k"}) == "$-1\r\n");
  CHECK(cl.call({"SET", "k", "in-alpha"}) == "+OK\r\n");
  CHECK(cl.call({"SELECT", "2"}) == "-ERR DB index is out of range\r\n");
  CHECK(cl.call({"SELECT", "-1"}) == "-ERR DB index is out of range\r\n");
  CHECK(must(a.get("k")).bytes() == "in-zeta");
  CHECK(must(b.get("k")).bytes() == "in-alpha");
  CHECK(cl.call({"DBSIZE"}) == ":1\r\n");
  CHECK(cl.call({"FLUSHALL"}) == "+OK\r\n");
  CHECK_FALSE(must(a.contains("k")));
}

TEST_CASE("session: HELLO 3 switches to RESP3 replies, HELLO 2 back", "[resp_session]") {
  runtime rt;
  auto c = must(rt.create_cache("db0"));
  test_client cl{context_for(rt, {c})};
  auto id = std::to_string(cl.s->id());
  CHECK(cl.call({"HELLO", "3", "SETNAME", "me"}) ==
        "%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$5\r\n7.0.0\r\n"
        "$5\r\nproto\r\n:3\r\n$2\r\nid\r\n:" +
          id +
          "\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n$6\r\nmaster\r\n"
          "$7\r\nmodules\r\n*0\r\n");
  CHECK(cl.call({"GET", "k"}) == "_\r\n");
  CHECK(cl.call({"CLIENT", "GETNAME"}) == "$2\r\nme\r\n");
  CHECK(cl.call({"CONFIG", "GET", "save"}) == "%1\r\n$4\r\nsave\r\n$0\r\n\r\n");
  CHECK(starts_with(cl.call({"INFO"}), "=")); // verbatim text
  CHECK(starts_with(cl.call({"HELLO"}), "%7\r\n"));
  CHECK(starts_with(cl.call({"HELLO", "2"}), "*14\r\n"));
  CHECK(cl.call({"GET", "k"}) == "$-1\r\n");
  CHECK(cl.call({"HELLO", "x"}) ==
        "-ERR Protocol version is not an integer or out of range\r\n");
}

TEST_CASE("session: key commands", "[resp_session]") {
  runtime rt;
  auto c = must(rt.create_cache("db0"));
  test_client cl{context_for(rt, {c})};
  CHECK(cl.call({"MSET", "a", "1", "b", "2"}) == "+OK\r\n");
  CHECK(cl.call({"MGET", "a", "x", "b"}) == "*3\r\n$1\r\n1\r\n$-1\r\n$1\r\n2\r\n");
  CHECK(cl.call({"EXISTS", "a", "x", "a"}) == ":2\r\n");
  CHECK(cl.call({"TTL", "x"}) == ":-2\r\n");
  CHECK(cl.call({"PTTL", "x"}) == ":-2\r\n");
  CHECK(cl.call({"TTL", "a"}) == ":-1\r\n"); // the default TTL is never
  CHECK(cl.call({"SET", "t", "v", "EX", "100"}) == "+OK\r\n");
  CHECK(cl.call({"TTL", "t"}) == ":100\r\n");
  auto pttl = cl.call({"PTTL", "t"});
  REQUIRE(starts_with(pttl, ":"));
  auto ms = std::stoll(pttl.substr(1));
  CHECK(ms > 90000);
  CHECK(ms <= 100000);
  CHECK(cl.call({"SET", "p", "v", "PX", "5000"}) == "+OK\r\n");
  CHECK(cl.call({"TTL", "p"}) == ":5\r\n");
  CHECK(cl.call({"DBSIZE"}) == ":4\r\n");
  CHECK(cl.call({"UNLINK", "a", "b"}) == ":2\r\n");
  CHECK(cl.call({"FLUSHDB", "ASYNC"}) == "+OK\r\n");
  CHECK(cl.call({"DBSIZE"}) == ":0\r\n");
}

TEST_CASE("session: connection commands", "[resp_session]") {
  runtime rt;
  auto c = must(rt.create_cache("db0"));
  test_client cl{context_for(rt, {c})};
  CHECK(cl.call({"CLIENT", "ID"}) == ":" + std::to_string(cl.s->id()) + "\r\n");
  CHECK(cl.call({"CLIENT", "GETNAME"}) == "$-1\r\n");
  CHECK(cl.call({"CLIENT", "SETNAME", "a b"}) ==
        "-ERR Client names cannot contain spaces, newlines or special characters.\r\n");
  CHECK(cl.call({"CLIENT", "SETNAME", std::string(257, 'n')}) ==
        "-ERR Client names are at most 256 bytes.\r\n");
  CHECK(cl.call({"HELLO", "2", "SETNAME", "a\nb"}) ==
        "-ERR Client names cannot contain spaces, newlines or special characters.\r\n");
  CHECK(cl.call({"HELLO", "2", "SETNAME", std::string(257, 'n')}) ==
        "-ERR Client names are at most 256 bytes.\r\n");
  CHECK(cl.call({"CLIENT", "GETNAME"}) == "$-1\r\n"); // neither was set
  CHECK(cl.call({"CLIENT", "SETNAME", "worker-1"}) == "+OK\r\n");
  CHECK(cl.call({"CLIENT", "GETNAME"}) == "$8\r\nworker-1\r\n");
  CHECK(cl.call({"CLIENT", "ID", "x"}) ==
        "-ERR wrong number of arguments for 'client|id' command\r\n");
  CHECK(cl.call({"CLIENT", "TRACKING", "on", "NOLOOP"}) ==
        "-ERR karlton does not support CLIENT TRACKING NOLOOP (only the default mode and "
        "BCAST)\r\n");
  CHECK(cl.call({"CLIENT", "TRACKING", "on", "REDIRECT", "12345"}) ==
        "-ERR The client ID you want redirect to does not exist\r\n");
  CHECK(cl.call({"CLIENT", "TRACKING", "on", "PREFIX", "a"}) ==
        "-ERR PREFIX option requires BCAST mode to be enabled\r\n");
  CHECK(cl.call({"CLIENT", "TRACKING", "on"}) == "+OK\r\n");
  // A key the cache would refuse is not tracked: it can never change, and
  // it would keep up to a bulk string's length in the table.
  auto too_long = std::string(c.options().max_key_bytes + 1, 'k');
  CHECK(cl.call({"GET", too_long}) == "$-1\r\n");
  CHECK(cl.ctx->tracking->keys() == 0);
  CHECK(cl.call({"GET", "short"}) == "$-1\r\n");
  CHECK(cl.ctx->tracking->keys() == 1);
  CHECK(cl.call({"CLIENT", "TRACKING", "off"}) == "+OK\r\n");
  CHECK(starts_with(cl.call({"SUBSCRIBE", "x"}), "-ERR karlton serves only the "));
  auto count = cl.call({"COMMAND", "COUNT"});
  CHECK(count == ":" + std::to_string(command_table().size()) + "\r\n");
  CHECK(cl.call({"COMMAND", "DOCS"}) == "*0\r\n");
  CHECK(
    starts_with(cl.call({"COMMAND", "INFO", "get", "nope"}),
                "*2\r\n*10\r\n$3\r\nget\r\n:2\r\n*1\r\n+readonly\r\n:1\r\n:1\r\n:1\r\n"));
  CHECK(cl.call({"COMMAND", "INFO", "nope"}) == "*1\r\n$-1\r\n"); // Redis's null bulk
  CHECK(starts_with(cl.call({"COMMAND"}), "*" + std::to_string(command_table().size())));
  CHECK(cl.call({"CONFIG", "GET", "appendonly"}) ==
        "*2\r\n$10\r\nappendonly\r\n$2\r\nno\r\n");
  CHECK(cl.call({"CONFIG", "GET", "nope"}) == "*0\r\n");
  CHECK(cl.call({"CONFIG"}) == "-ERR wrong number of arguments for 'config' command\r\n");
  CHECK(cl.call({"CONFIG", "SET", "x", "y"}) ==
        "-ERR unknown subcommand 'SET'. Try CONFIG HELP.\r\n");
  auto info = cl.call({"INFO", "server"});
  CHECK(starts_with(info, "$"));
  CHECK(info.find("redis_version:") != std::string::npos);
  // Several sections, as Redis 7 takes them (a syntax error before).
  info = cl.call({"INFO", "server", "clients"});
  CHECK(info.find("# Server") != std::string::npos);
  CHECK(info.find("# Clients") != std::string::npos);
  CHECK(info.find("# Keyspace") == std::string::npos);
  // Naming no section gives nothing, as in Redis, not every section.
  CHECK(cl.call({"INFO", "server clients"}) == "$0\r\n\r\n");
  CHECK(cl.call({"INFO", std::string(17, 'x')}) == "$0\r\n\r\n");
}

TEST_CASE("session: KARLTON.GRAPH never builds a reply over the output limit",
          "[resp_session]") {
  runtime rt;
  auto c = must(rt.create_cache("db0"));
  resp_options o;
  o.output_buffer_limit = 20000;
  test_client cl{context_for(rt, {c}, o)};
  // A 1,000-byte key of control bytes with 8 dependencies: each edge repeats
  // it, quoted at 6 bytes a byte, so 8 KB of names make about 50 KB of DOT.
  std::string key(1000, '\x01');
  CHECK(cl.call({"KARLTON.PUT", key, "v", "ON", "8", "a", "b", "c", "d", "e", "f", "g",
                 "h"}) == "+OK\r\n");
  for (auto form : {"DOT", "JSON"}) {
    INFO(form);
    auto r = cl.call({"KARLTON.GRAPH", form});
    if (std::string{form} == "DOT")
      CHECK(r.rfind("-ERR KARLTON.GRAPH's reply exceeds the output buffer limit", 0) ==
            0);
    else
      CHECK(r.rfind("$", 0) == 0); // 6 KB of JSON: the key once
  }
  CHECK(cl.call({"PING"}) == "+PONG\r\n"); // and the connection goes on
}

TEST_CASE("session: KARLTON.* commands", "[resp_session]") {
  runtime rt;
  auto c = must(rt.create_cache("db0"));
  test_client cl{context_for(rt, {c})};
  CHECK(cl.call({"KARLTON.PUT", "page", "<html>", "PX", "60000", "EVENTS", "1",
                 "user_updated", "ON", "2", "user:1", "tag:users"}) == "+OK\r\n");
  CHECK(cl.call({"KARLTON.PUT", "page2", "x", "ON", "1", "tag:users"}) == "+OK\r\n");
  CHECK(cl.call({"KARLTON.PUT", "p", "x", "ON", "3", "a"}) == "-ERR syntax error\r\n");
  auto graph = cl.call({"KARLTON.GRAPH", "JSON"});
  CHECK(graph.find("tag:users") != std::string::npos);
  CHECK(cl.call({"KARLTON.GRAPH", "DOT"}).find("digraph") != std::string::npos);
  CHECK(cl.call({"KARLTON.INVALIDATE", "tag:users"}) == ":2\r\n");
  CHECK(cl.call({"GET", "page"}) == "$-1\r\n");
  CHECK(cl.call({"KARLTON.PUT", "page", "<html>", "EVENTS", "1", "user_updated"}) ==
        "+OK\r\n");
  CHECK(cl.call({"KARLTON.EMIT", "user_updated", "{}"}) == ":1\r\n");
  CHECK(cl.call({"EXISTS", "page"}) == ":0\r\n");
  CHECK(cl.call({"KARLTON.LOAD", "k"}).front() == '-'); // no loader
  CHECK(cl.call({"KARLTON.FLUSH"}) == "+OK\r\n");
  CHECK(cl.call({"KARLTON.FLUSH", "0"}) ==
        "-ERR value is not an integer or out of range\r\n");
  auto stats = cl.call({"KARLTON.STATS"});
  CHECK(stats.find("\"name\":\"db0\"") != std::string::npos);
}

TEST_CASE("session: KARLTON.LOAD answers nil for a key the loader does not have",
          "[resp_session]") {
  runtime rt;
  cache_options o;
  o.name = "db0";
  o.loader = [](const std::string& k) -> caf::expected<std::string> {
    if (k == "missing") return make_error(errc::not_found, "no such key");
    return "v-" + k;
  };
  auto c = must(rt.create_cache(o));
  test_client cl{context_for(rt, {c})};
  CHECK(cl.call({"KARLTON.LOAD", "k"}) == "$3\r\nv-k\r\n");
  CHECK(cl.call({"GET", "k"}) == "$3\r\nv-k\r\n");
  CHECK(cl.call({"KARLTON.LOAD", "missing"}) == "$-1\r\n");
}

TEST_CASE("session: read-modify-write commands", "[resp_session][compute]") {
  runtime rt;
  auto c = must(rt.create_cache("db0"));
  test_client cl{context_for(rt, {c})};
  CHECK(cl.call({"INCR", "n"}) == ":1\r\n");
  CHECK(cl.call({"INCRBY", "n", "41"}) == ":42\r\n");
  CHECK(cl.call({"DECR", "n"}) == ":41\r\n");
  CHECK(cl.call({"DECRBY", "n", "40"}) == ":1\r\n");
  CHECK(cl.call({"DECRBY", "n", "-9223372036854775808"}) ==
        "-ERR decrement would overflow\r\n");
  CHECK(cl.call({"SET", "s", "abc"}) == "+OK\r\n");
  CHECK(cl.call({"INCR", "s"}) == "-ERR value is not an integer or out of range\r\n");
  CHECK(cl.call({"SET", "m", "9223372036854775807"}) == "+OK\r\n");
  CHECK(cl.call({"INCR", "m"}) == "-ERR increment or decrement would overflow\r\n");
  CHECK(cl.call({"SET", "x", "1", "NX"}) == "+OK\r\n");
  CHECK(cl.call({"SET", "x", "2", "NX"}) == "$-1\r\n");
  CHECK(cl.call({"SET", "y", "1", "XX"}) == "$-1\r\n");
  CHECK(cl.call({"SET", "x", "3", "XX", "GET"}) == "$1\r\n1\r\n");
  CHECK(cl.call({"GETSET", "x", "4"}) == "$1\r\n3\r\n");
  CHECK(cl.call({"SETNX", "x", "5"}) == ":0\r\n");
  CHECK(cl.call({"SETNX", "z", "5"}) == ":1\r\n");
  CHECK(cl.call({"GETDEL", "z"}) == "$1\r\n5\r\n");
  CHECK(cl.call({"GETDEL", "z"}) == "$-1\r\n");
  CHECK(cl.call({"EXPIRE", "x", "100"}) == ":1\r\n");
  CHECK(cl.call({"TTL", "x"}) == ":100\r\n");
  CHECK(cl.call({"SET", "x", "6", "KEEPTTL"}) == "+OK\r\n");
  CHECK(cl.call({"TTL", "x"}) == ":100\r\n");
  CHECK(cl.call({"PERSIST", "x"}) == ":1\r\n");
  CHECK(cl.call({"PERSIST", "x"}) == ":0\r\n");
  CHECK(cl.call({"TTL", "x"}) == ":-1\r\n");
  CHECK(cl.call({"PEXPIRE", "x", "0"}) == ":1\r\n");
  CHECK(cl.call({"EXISTS", "x"}) == ":0\r\n");
  CHECK(cl.call({"EXPIRE", "nope", "10"}) == ":0\r\n");
}

TEST_CASE("session: an expiry is kept as asked or refused, never kept as none",
          "[resp_session][compute]") {
  runtime rt;
  auto c = must(rt.create_cache("db0"));
  test_client cl{context_for(rt, {c})};
  REQUIRE(cl.call({"SET", "k", "v"}) == "+OK\r\n");
  // 2^64 / 10^9 s: wrapped to 0.29 s before the bound was divided right.
  CHECK(starts_with(cl.call({"EXPIRE", "k", "18446744074"}), "-ERR invalid expire time"));
  // Past 30 years karlton would keep the key as never expiring: EXPIRE and
  // SET answered success and TTL then -1, a key the client was told expires.
  CHECK(cl.call({"EXPIRE", "k", "9223372036"}) ==
        "-ERR invalid expire time in 'expire' command\r\n");
  CHECK(cl.call({"PEXPIRE", "k", "1104537600000"}) ==
        "-ERR invalid expire time in 'pexpire' command\r\n");
  CHECK(cl.call({"SET", "t", "v", "EX", "1104537600"}) ==
        "-ERR invalid expire time in 'set' command\r\n");
  CHECK(cl.call({"TTL", "k"}) == ":-1\r\n"); // untouched
  // 30 years is kept as asked.
  const std::string thirty_years = std::to_string(30LL * 365 * 24 * 3600);
  // TTL rounds: a loaded machine may take a second between the calls.
  auto ttl_is_thirty_years = [&](std::string_view key) {
    auto r = cl.call({"TTL", key});
    auto left = std::stoll(r.substr(1));
    return r[0] == ':' && left <= 30LL * 365 * 24 * 3600 &&
           left > 30LL * 365 * 24 * 3600 - 60;
  };
  CHECK(cl.call({"SET", "t", "v", "EX", thirty_years}) == "+OK\r\n");
  CHECK(ttl_is_thirty_years("t"));
  CHECK(cl.call({"EXPIRE", "k", thirty_years}) == ":1\r\n");
  CHECK(ttl_is_thirty_years("k"));
  CHECK(cl.call({"EXPIRE", "k", "-9223372036854775"}) == ":1\r\n"); // deleted
  REQUIRE(cl.call({"SET", "k", "v"}) == "+OK\r\n");
  // Below INT64_MIN / 1000 s Redis refuses, as here.
  CHECK(cl.call({"EXPIRE", "k", "-9223372036854776"}) ==
        "-ERR invalid expire time in 'expire' command\r\n");
  // Any lifetime of 0 or less deletes, as in Redis: a large negative one was
  // refused and the key kept.
  CHECK(cl.call({"EXPIRE", "k", "-10000000000"}) == ":1\r\n");
  CHECK(cl.call({"EXISTS", "k"}) == ":0\r\n");
  CHECK(cl.call({"PEXPIRE", "t", "-9223372036854775808"}) == ":1\r\n");
  CHECK(cl.call({"EXISTS", "t"}) == ":0\r\n");
}

TEST_CASE("session: a node without caches refuses KARLTON.FLUSH and still answers "
          "KARLTON.GRAPH",
          "[resp_session]") {
  runtime rt;
  test_client cl{context_for(rt, {})};
  CHECK(starts_with(cl.call({"KARLTON.FLUSH"}), "-ERR no cache to serve"));
  CHECK(cl.call({"KARLTON.GRAPH"}).rfind("$", 0) == 0);
  CHECK(starts_with(cl.call({"GET", "k"}), "-ERR no cache to serve"));
  // Pipelined GETs are looked ahead of for prefetching: not into a cache
  // that is not there (ASan: a read past an empty vector).
  auto both = cl.send("*2\r\n$3\r\nGET\r\n$1\r\na\r\n*2\r\n$3\r\nGET\r\n$1\r\nb\r\n", 2);
  REQUIRE(both.size() == 2);
  CHECK(starts_with(both[0], "-ERR no cache to serve"));
  CHECK(starts_with(both[1], "-ERR no cache to serve"));
}

TEST_CASE("session: DEL and EXISTS of more keys than a shard's queue holds",
          "[resp_session]") {
  // The I/O thread's handle fails at once on a full queue: a DEL of 100,000
  // keys, one call each, was answered `overloaded` on an idle node with part
  // of it done. With 64 jobs a queue, 5,000 keys are 78 queues' worth.
  runtime rt;
  cache_options o;
  o.name = "db0";
  o.shards = 1;
  o.ingress_capacity = 64;
  auto c = must(rt.create_cache(o));
  test_client cl{context_for(rt, {c})};
  constexpr int n = 5000;
  // The command on n keys, then `after`'s commands in the same pipeline;
  // every reply.
  auto many =
    [&](std::string_view command,
        std::initializer_list<std::initializer_list<std::string_view>> after = {}) {
      std::string bytes = "*" + std::to_string(n + 1) + "\r\n$" +
                          std::to_string(command.size()) + "\r\n" + std::string{command} +
                          "\r\n";
      for (int i = 0; i < n; ++i) {
        auto key = "k" + std::to_string(i % (n / 2)); // each key twice
        bytes += "$" + std::to_string(key.size()) + "\r\n" + key + "\r\n";
      }
      for (auto args : after)
        bytes += resp_command(args);
      return cl.send(bytes, 1 + after.size());
    };
  for (int i = 0; i < n / 2; i += 2) // every other key
    REQUIRE(c.put("k" + std::to_string(i), "v") == caf::none);
  using replies = std::vector<std::string>;
  // The pool keeps no order: a later write of one of the keys waits for the
  // command, so it neither counts the SET nor deletes it.
  CHECK(many("EXISTS", {{"SET", "k2499", "new"}}) ==
        replies{":" + std::to_string(n / 2) + "\r\n", "+OK\r\n"});
  CHECK(many("DEL", {{"SET", "k2499", "newer"}, {"GET", "k2499"}}) ==
        replies{":" + std::to_string(n / 4 + 1) + "\r\n", "+OK\r\n", "$5\r\nnewer\r\n"});
  CHECK(many("EXISTS") == replies{":2\r\n"});               // k2499, twice
  CHECK(cl.call({"DEL", "k0", "k1", "k2499"}) == ":1\r\n"); // few keys: the I/O thread
}

TEST_CASE("session: a DEL of many keys behind a stuck shard gives up after call-timeout",
          "[resp_session]") {
  // Each key waited its own call-timeout for queue room: 400 keys behind a
  // stuck shard held a pool thread for 100 s. Now the command gives up the
  // keys left after the first failure, within about twice call-timeout.
  testing::latch gate;
  std::atomic<bool> stuck{false};
  runtime rt;
  auto o = testing::holdable_cache("db0", gate, stuck, 1, 64, 250ms);
  auto c = must(rt.create_cache(o));
  testing::release_on_exit release{gate};
  auto erase = testing::hold_shard(c, "blocker", stuck); // its thread, in the callback
  test_client cl{context_for(rt, {c})};
  constexpr int n = 400;
  std::string bytes = "*" + std::to_string(n + 1) + "\r\n$3\r\nDEL\r\n";
  for (int i = 0; i < n; ++i) {
    auto key = "k" + std::to_string(i);
    bytes += "$" + std::to_string(key.size()) + "\r\n" + key + "\r\n";
  }
  auto start = std::chrono::steady_clock::now();
  auto r = cl.send(bytes); // waits up to 10 s
  auto took = std::chrono::steady_clock::now() - start;
  REQUIRE(r.size() == 1);
  CHECK(r[0].find("overloaded") != std::string::npos);
  CHECK(took < 4 * o.call_timeout);
  gate.release();
  CHECK(erase.get());
}

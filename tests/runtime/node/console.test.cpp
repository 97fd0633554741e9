// The karlton-node console: each command's reply line, on an in-process
// runtime with local caches (no cluster: members are none, peer counters 0).
#include <catch2/catch.hpp>

#include <map>
#include <string>
#include <vector>

#include "runtime/node/console.hpp"
#include "support/must.hpp"
#include <karlton/messages/errors.hpp>
#include <karlton/runtime/runtime.hpp>

using namespace karlton;
using karlton::testing::must;

namespace {

// A runtime with the caches "users" (plain) and "loaded" (read-through: keys
// starting with "known" load as "loaded:<key>", the rest are not found).
struct fixture {
  runtime rt;
  cache users;
  cache loaded;
  node::console con;

  fixture() : users(make_users(rt)), loaded(make_loaded(rt)), con(rt, caches()) {}

  static cache make_users(runtime& rt) {
    cache_options o;
    o.name = "users";
    o.shards = 2;
    return must(rt.create_cache(o));
  }

  static cache make_loaded(runtime& rt) {
    cache_options o;
    o.name = "loaded";
    o.shards = 2;
    o.loader = [](const std::string& key) -> caf::expected<std::string> {
      if (key.rfind("known", 0) == 0) return "loaded:" + key;
      return make_error(errc::not_found, "no such key: " + key);
    };
    return must(rt.create_cache(o));
  }

  std::map<std::string, cache> caches() { return {{"users", users}, {"loaded", loaded}}; }
};

} // namespace

TEST_CASE_METHOD(fixture,
                 "console put takes the rest of the line as the value and get returns it",
                 "[console]") {
  CHECK(con.execute("put users u1 John Smith  jr.") == "ok");
  CHECK(con.execute("get users u1") == "value John Smith  jr.");
  CHECK(con.execute("put users empty ") == "ok");
  CHECK(con.execute("get users empty") == "value ");
  CHECK(con.execute("get users nobody") == "miss");
}

TEST_CASE_METHOD(
  fixture, "console get escapes a value's control bytes onto one line, backslash too",
  "[console]") {
  // As a RESP client may SET them: a newline shifted every later reply, an
  // escape sequence reached the operator's terminal.
  REQUIRE_FALSE(users.put("u", std::string{"a\nok\r\t\x1b]0;x\x07\\\x7f\0z", 16}));
  CHECK(con.execute("get users u") == R"(value a\nok\r\t\x1b]0;x\x07\\\x7f\x00z)");
  CHECK(con.execute("put users v caf\xc3\xa9 \\n") == "ok"); // not control bytes: as is
  CHECK(con.execute("get users v") == "value caf\xc3\xa9 \\\\n");
}

TEST_CASE_METHOD(fixture, "console erase and clear make later gets miss", "[console]") {
  CHECK(con.execute("put users a 1") == "ok");
  CHECK(con.execute("put users b 2") == "ok");
  CHECK(con.execute("erase users a") == "ok");
  CHECK(con.execute("get users a") == "miss");
  CHECK(con.execute("erase users a") == "ok");
  CHECK(con.execute("clear users") == "ok");
  CHECK(con.execute("get users b") == "miss");
}

TEST_CASE_METHOD(fixture,
                 "console load reads through and a key the loader lacks is a miss",
                 "[console]") {
  CHECK(con.execute("load loaded known1") == "value loaded:known1");
  CHECK(con.execute("get loaded known1") == "value loaded:known1");
  CHECK(con.execute("load loaded other") == "miss");
}

TEST_CASE_METHOD(fixture, "console load on a cache without a loader is an error",
                 "[console]") {
  auto reply = con.execute("load users u1");
  CHECK(reply.rfind("error karlton.invalid_option: ", 0) == 0);
}

TEST_CASE_METHOD(fixture, "console tag and emit invalidate what depends on them",
                 "[console]") {
  REQUIRE(
    !users.put("by-tag", "v", ttl::cache_default(), dependencies{}.on_keys({"group-7"})));
  REQUIRE(!users.put("by-event", "v", ttl::cache_default(),
                     dependencies{}.on_events({"user_updated"})));
  CHECK(con.execute("tag group-7") == "ok");
  CHECK(con.execute("get users by-tag") == "miss");
  CHECK(con.execute("get users by-event") == "value v");
  CHECK(con.execute("emit user_updated") == "ok");
  CHECK(con.execute("get users by-event") == "miss");
}

TEST_CASE_METHOD(fixture,
                 "console putdep puts an entry that goes with any of its tags or events",
                 "[console]") {
  CHECK(con.execute("putdep users a group-7,event:user_updated John  Smith") == "ok");
  CHECK(con.execute("putdep users b event:user_updated v") == "ok");
  CHECK(con.execute("putdep users c group-7 v") == "ok");
  CHECK(con.execute("get users a") == "value John  Smith");
  CHECK(con.execute("tag group-7") == "ok");
  CHECK(con.execute("get users a") == "miss");
  CHECK(con.execute("get users c") == "miss");
  CHECK(con.execute("get users b") == "value v");
  CHECK(con.execute("emit user_updated") == "ok");
  CHECK(con.execute("get users b") == "miss");
}

TEST_CASE_METHOD(fixture, "console putdep refuses an empty dependency name",
                 "[console]") {
  auto is_usage = [](const std::string& reply) {
    return reply.rfind("error karlton.invalid_option: usage: putdep ", 0) == 0;
  };
  CHECK(is_usage(con.execute("putdep users k  v")));
  CHECK(is_usage(con.execute("putdep users k a,,b v")));
  CHECK(is_usage(con.execute("putdep users k a, v")));
  CHECK(is_usage(con.execute("putdep users k event: v")));
  CHECK(is_usage(con.execute("putdep users k a")));
  CHECK(con.execute("putdep nope k a v").rfind("error karlton.unknown_cache: ", 0) == 0);
  CHECK(con.execute("get users k") == "miss");
}

TEST_CASE_METHOD(fixture, "console members of a runtime that is no node is an empty list",
                 "[console]") {
  CHECK(con.execute("members") == "members ");
  auto forget = con.execute("forget n2");
  CHECK(forget.rfind("error karlton.invalid_option: ", 0) == 0);
  CHECK(forget.find("start_cluster") != std::string::npos);
}

TEST_CASE_METHOD(fixture,
                 "console sync without a change feed says why, and changes are zeros",
                 "[console]") {
  auto sync = con.execute("sync");
  CHECK(sync.rfind("error ", 0) == 0);
  CHECK(sync.find("start_change_feed") != std::string::npos);
  CHECK(con.execute("sync now").rfind("error karlton.invalid_option: usage: sync", 0) ==
        0);
  auto changes = con.execute("changes");
  CHECK(changes.rfind("changes {\"listening\":0,", 0) == 0);
  CHECK(changes.find("\"rows_applied\":0,") != std::string::npos);
  CHECK(changes.back() == '}');
}

TEST_CASE_METHOD(fixture,
                 "console stats is one line of json with the peer and cache counters",
                 "[console]") {
  REQUIRE(con.execute("put users u1 v") == "ok");
  REQUIRE(con.execute("get users u1") == "value v");
  REQUIRE(con.execute("get users u2") == "miss");
  auto reply = con.execute("stats");
  CHECK(reply.rfind("stats {\"node\":\"\",\"members\":0,", 0) == 0);
  CHECK(reply.find('\n') == std::string::npos);
  for (auto key : {"broadcasts_sent", "batches_sent", "invalidations_received",
                   "invalidations_applied", "gaps", "peers_lost", "repairs",
                   "joins_refused", "proofs_refused", "replays_refused", "names_refused",
                   "unauthenticated_messages", "sync_timeouts", "bad_messages"})
    CHECK(reply.find("\"" + std::string{key} + "\":0") != std::string::npos);
  CHECK(
    reply.find(
      R"("users":{"hits":1,"misses":1,"entries":1,"invalidations":0,"lease_clears":0,)"
      R"("lease_caps":0,"loads_out":0,"loads_queued":0,"loads_refused":0})") !=
    std::string::npos);
  CHECK(reply.find(R"("loaded":{"hits":0,)") != std::string::npos);
  CHECK(reply.back() == '}');
}

TEST_CASE_METHOD(fixture,
                 "console ping answers pong and quit answers bye and asks to stop",
                 "[console]") {
  CHECK(con.execute("ping") == "pong");
  CHECK(!con.quit_requested());
  CHECK(con.execute("quit") == "bye");
  CHECK(con.quit_requested());
}

TEST_CASE_METHOD(fixture, "the console ignores a trailing carriage return", "[console]") {
  CHECK(con.execute("ping\r") == "pong");
  CHECK(con.execute("put users k v\r") == "ok");
  CHECK(con.execute("get users k") == "value v");
}

TEST_CASE_METHOD(fixture, "the console names an unknown command in the error",
                 "[console]") {
  CHECK(con.execute("frobnicate users k") == "error unknown command 'frobnicate'");
  CHECK(con.execute("") == "error unknown command ''");
  CHECK(con.execute("PING") == "error unknown command 'PING'");
  // What the line held is escaped in the error as in a value: it reached
  // the operator's terminal raw (an escape sequence cleared the screen).
  CHECK(con.execute("\x1b[2Jbogus") == R"(error unknown command '\x1b[2Jbogus')");
}

TEST_CASE_METHOD(fixture, "the console answers an unknown cache with unknown_cache",
                 "[console]") {
  CHECK(con.execute("get nope k") ==
        "error karlton.unknown_cache: no cache named 'nope' on this node");
  CHECK(con.execute("put nope k v").rfind("error karlton.unknown_cache: ", 0) == 0);
  CHECK(con.execute("get no\x1b[31mpe\x85 k") ==
        R"(error karlton.unknown_cache: no cache named 'no\x1b[31mpe\x85' on this node)");
  CHECK(con.execute("clear nope").rfind("error karlton.unknown_cache: ", 0) == 0);
}

TEST_CASE_METHOD(fixture, "the console answers wrong arguments with a usage error",
                 "[console]") {
  auto is_usage = [](const std::string& reply) {
    return reply.rfind("error karlton.invalid_option: usage: ", 0) == 0;
  };
  CHECK(is_usage(con.execute("put users k")));
  CHECK(is_usage(con.execute("put users")));
  CHECK(is_usage(con.execute("get users")));
  CHECK(is_usage(con.execute("get users k extra")));
  CHECK(is_usage(con.execute("erase")));
  CHECK(is_usage(con.execute("clear users extra")));
  CHECK(is_usage(con.execute("tag")));
  CHECK(is_usage(con.execute("emit a b")));
  CHECK(is_usage(con.execute("forget")));
  CHECK(is_usage(con.execute("forget a b")));
  CHECK(is_usage(con.execute("ping now")));
  CHECK(is_usage(con.execute("quit ")));
  CHECK(!con.quit_requested());
}

TEST_CASE_METHOD(fixture, "the console describes cache errors", "[console]") {
  auto big_key = std::string(70 * 1024, 'k');
  CHECK(con.execute("put users " + big_key + " v")
          .rfind("error karlton.key_too_large: ", 0) == 0);
  auto empty_tag = con.execute("tag ");
  CHECK(empty_tag.rfind("error karlton.invalid_option: ", 0) == 0);
  CHECK(empty_tag.find("usage") == std::string::npos);
}

TEST_CASE_METHOD(fixture, "the console stats summary is one line naming every cache",
                 "[console]") {
  auto line = must(con.stats_summary());
  CHECK(line.find('\n') == std::string::npos);
  CHECK(line.rfind("members=0 ", 0) == 0);
  CHECK(line.find("users{hits=0 misses=0 entries=0 invalidations=0}") !=
        std::string::npos);
  CHECK(line.find("peer{broadcasts_sent=0 ") != std::string::npos);
}

namespace {

// What console_lines handed on: each line, "<too long>" for a dropped one.
struct collected {
  std::vector<std::string> lines;
  bool operator()(const std::string& line, bool too_long) {
    lines.push_back(too_long ? "<too long>" : line);
    return line == "quit";
  }
};

} // namespace

TEST_CASE("console lines are split across reads, a last one without newline at EOF",
          "[console]") {
  node::console_lines in{64};
  collected out;
  CHECK_FALSE(in.feed("put users a 1\nge", out));
  CHECK_FALSE(in.feed("t users a\n\nping", out));
  CHECK(out.lines == std::vector<std::string>{"put users a 1", "get users a", ""});
  CHECK_FALSE(in.finish(out));
  CHECK(out.lines.back() == "ping");
  CHECK_FALSE(in.finish(out)); // nothing pending: no empty line invented
  CHECK(out.lines.size() == 4);
}

TEST_CASE("a console line over the limit is dropped as it comes and answered once",
          "[console]") {
  node::console_lines in{16};
  collected out;
  // 1 MiB without a newline, in reads of 4 KiB as the node's loop makes them:
  // held back, it would be 1 MiB of memory and a quadratic search.
  const std::string chunk(4096, 'x');
  for (int i = 0; i < 256; ++i)
    CHECK_FALSE(in.feed(chunk, out));
  CHECK(out.lines.empty());
  CHECK_FALSE(in.feed("xx\nping\n", out));
  CHECK(out.lines == std::vector<std::string>{"<too long>", "ping"});
  // Exactly at the limit is kept; one byte more is not.
  CHECK_FALSE(in.feed(std::string(16, 'a') + "\n" + std::string(17, 'b') + "\n", out));
  CHECK(out.lines.size() == 4);
  CHECK(out.lines[2] == std::string(16, 'a'));
  CHECK(out.lines[3] == "<too long>");
  // Unterminated and too long at EOF: still one answer.
  CHECK_FALSE(in.feed(std::string(20, 'c'), out));
  CHECK_FALSE(in.finish(out));
  CHECK(out.lines.back() == "<too long>");
}

TEST_CASE("console lines stop at the line that asks to stop", "[console]") {
  node::console_lines in;
  collected out;
  CHECK(in.feed("ping\nquit\nping\n", out));
  CHECK(out.lines == std::vector<std::string>{"ping", "quit"});
}

TEST_CASE("console lines pause before a line when told, and go on where they paused",
          "[console]") {
  // karlton-node pauses while its replies wait for a reader of stdout.
  node::console_lines in;
  collected out;
  const std::string_view bytes = "ping\nget users a\nping\npi";
  int allowed = 2;
  auto go_on = [&] { return allowed-- > 0; };
  auto used = in.feed_while(bytes, out, go_on);
  REQUIRE(used);
  CHECK(*used == 5 + 12); // two lines taken
  CHECK(out.lines == std::vector<std::string>{"ping", "get users a"});
  allowed = 10;
  used = in.feed_while(bytes.substr(17), out, go_on);
  REQUIRE(used);
  CHECK(*used == bytes.size() - 17); // the rest, a partial line pending
  CHECK(out.lines.size() == 3);
  CHECK(in.feed("ng\nquit\nping\n", out)); // the pending "pi" ends; then quit
  CHECK(out.lines ==
        std::vector<std::string>{"ping", "get users a", "ping", "ping", "quit"});
  // A stop asked by a line ends the feed, whatever is left.
  node::console_lines again;
  collected more;
  CHECK_FALSE(again.feed_while("quit\nping\n", more, [] { return true; }));
  CHECK(more.lines == std::vector<std::string>{"quit"});
}

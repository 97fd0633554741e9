// One connection's writes of a key keep their request order however they
// reach the shard (plan §4.3): put, compute, TTL change, blocking pool.
#include <catch2/catch.hpp>

#include <chrono>
#include <set>
#include <string>
#include <vector>

#include "runtime/server/tracking_table.hpp"
#include "server/gated_store.hpp"
#include "server/session_fixture.hpp"
#include "support/must.hpp"
#include <karlton/runtime/runtime.hpp>

using namespace karlton;
using namespace karlton::server;
using karlton::testing::context_for;
using karlton::testing::must;
using karlton::testing::resp_command;
using karlton::testing::test_client;
using replies = std::vector<std::string>;

TEST_CASE("session: under write-through a later SET does not overtake an INCR or SET NX "
          "of the key",
          "[resp_session][order]") {
  testing::gated_cache f;
  test_client cl{context_for(f.rt, {f.c})};
  // The store holds the first SET; the INCR (a compute) waits in the shard
  // behind it, and without the session's order the second SET (a put) went
  // to the store meanwhile and the INCR saw 100.
  cl.feed(resp_command({"SET", "k", "1"}) + resp_command({"INCR", "k"}) +
          resp_command({"SET", "k", "100"}) + resp_command({"SET", "n", "x"}) +
          resp_command({"SET", "n", "y", "NX"}) + resp_command({"SET", "n", "z"}) +
          resp_command({"GET", "k"}) + resp_command({"GET", "n"}));
  f.db->gate.release();
  CHECK(cl.replies(8) == replies{"+OK\r\n", ":2\r\n", "+OK\r\n", "+OK\r\n", "$-1\r\n",
                                 "+OK\r\n", "$3\r\n100\r\n", "$1\r\nz\r\n"});
  CHECK(must(f.c.get("k")).bytes() == "100");
}

TEST_CASE("session: a pipelined EXPIRE after SET of the key finds the key",
          "[resp_session][order]") {
  testing::gated_cache f;
  test_client cl{context_for(f.rt, {f.c})};
  cl.feed(resp_command({"SET", "k", "v"}) + resp_command({"EXPIRE", "k", "100"}) +
          resp_command({"SET", "k", "w"}) + resp_command({"PTTL", "k"}));
  CHECK_FALSE(cl.s->wants_input()); // the EXPIRE waits for the SET's store write
  f.db->gate.release();
  // EXPIRE answered 0 before: it ran on the table before the SET was in.
  CHECK(cl.replies(4) == replies{"+OK\r\n", ":1\r\n", "+OK\r\n", ":-1\r\n"});
}

TEST_CASE("session: writes of a key that go the same way stay pipelined",
          "[resp_session][order]") {
  testing::gated_cache f;
  test_client cl{context_for(f.rt, {f.c})};
  std::string pipeline;
  for (int i = 0; i < 8; ++i)
    pipeline += resp_command({"SET", "k", std::to_string(i)});
  for (int i = 0; i < 4; ++i)
    pipeline += resp_command({"INCR", "j"}) + resp_command({"EXPIRE", "m", "10"});
  cl.feed(pipeline);
  // All sixteen run while the store holds the first write: none waits for
  // another of the same way (INCR j and EXPIRE m are different keys).
  CHECK(cl.ctx->counters.total_commands.load() == 16);
  CHECK(cl.s->wants_input());
  f.db->gate.release();
  auto got = cl.replies(16);
  REQUIRE(got.size() == 16);
  CHECK(got[15] == ":0\r\n");
  CHECK(cl.call({"GET", "k"}) == "$1\r\n7\r\n");
  CHECK(cl.call({"GET", "j"}) == "$1\r\n4\r\n");
}

TEST_CASE("session: writes to a distribution=sync cache run on the pool one at a time "
          "per key",
          "[resp_session][order]") {
  runtime rt;
  cluster_options co;
  co.secret = "s";
  co.log = [](const std::string&) {};
  REQUIRE(rt.start_cluster(co));
  auto so = rt.default_options("synced");
  so.distributed = distribution::sync;
  auto c = must(rt.create_cache(so));
  test_client cl{context_for(rt, {c}), /*threads*/ 0};
  cl.feed(resp_command({"SET", "k", "1"}) + resp_command({"SET", "k", "2"}) +
          resp_command({"INCR", "k"}) + resp_command({"SET", "other", "x"}));
  // Two pool threads would run these in any order; the test runs the newest
  // queued job first, which put "1" last before the fix.
  CHECK(cl.host->queued() == 1);
  for (int i = 0; i < 8 && cl.host->queued() > 0; ++i) {
    while (cl.host->run_newest()) {
    }
    cl.collect_now(); // resumes what waited for the finished writes
  }
  CHECK(must(c.get("k")).bytes() == "3");
  CHECK(must(c.get("other")).bytes() == "x");
}

// Plain SETs of one read go as one job per shard (put_batch): what runs
// between them must not overtake them, and what waits for them must not
// wait forever.
namespace {

uint64_t jobs_run(const cache& c) {
  return must(c.stats()).ingress_jobs;
}

cache_options two_shards(size_t max_value_bytes = default_max_value_bytes) {
  cache_options o;
  o.name = "db0";
  o.shards = 2;
  o.max_value_bytes = max_value_bytes;
  return o;
}

} // namespace

TEST_CASE("session: 16 pipelined SETs in one read reach each shard as one job",
          "[resp_session][order][put_batch]") {
  runtime rt;
  auto c = must(rt.create_cache(two_shards()));
  test_client cl{context_for(rt, {c})};
  auto before = jobs_run(c);
  auto wakes = cl.host->wakes();
  std::string pipeline;
  for (int i = 0; i < 16; ++i)
    pipeline += resp_command({"SET", "key:" + std::to_string(i), "v"});
  auto got = cl.send(pipeline, 16);
  CHECK(got == replies(16, "+OK\r\n"));
  // The shards' answers woke the host (the test client also looks every
  // 500 ms, which alone would pass the check above).
  CHECK(cl.host->wakes() > wakes);
  std::set<shard_actor> touched;
  for (int i = 0; i < 16; ++i)
    touched.insert(c.shard_for("key:" + std::to_string(i)));
  // One job per shard touched, plus the stats call's job on each shard
  // (was 16 + 2).
  CHECK(jobs_run(c) - before == touched.size() + 2);
}

TEST_CASE("session: a DEL, MSET or SET NX after a SET of the key in one read comes "
          "after it",
          "[resp_session][order][put_batch]") {
  runtime rt;
  auto c = must(rt.create_cache(two_shards()));
  test_client cl{context_for(rt, {c})};
  // DEL goes the put way, so nothing pauses it: it must send the batch first.
  CHECK(cl.send(resp_command({"SET", "k", "1"}) + resp_command({"DEL", "k"}) +
                  resp_command({"SET", "j", "1"}) + resp_command({"MSET", "j", "2"}) +
                  resp_command({"SET", "n", "1"}) + resp_command({"SET", "n", "2", "XX"}),
                6) ==
        replies{"+OK\r\n", ":1\r\n", "+OK\r\n", "+OK\r\n", "+OK\r\n", "+OK\r\n"});
  CHECK_FALSE(must(c.get("k")));
  CHECK(must(c.get("j")).bytes() == "2");
  CHECK(must(c.get("n")).bytes() == "2");
}

TEST_CASE("session: a GET after a SET of the key in one read returns the new value",
          "[resp_session][order][put_batch]") {
  runtime rt;
  auto c = must(rt.create_cache(two_shards()));
  test_client cl{context_for(rt, {c})};
  // The GET pauses for the SET, which the pause sends: it waited forever
  // with the SET held in the batch.
  CHECK(cl.send(resp_command({"SET", "k", "new"}) + resp_command({"GET", "k"}) +
                  resp_command({"SET", "k", "newer"}),
                3) == replies{"+OK\r\n", "$3\r\nnew\r\n", "+OK\r\n"});
  CHECK(must(c.get("k")).bytes() == "newer");
}

TEST_CASE("session: an oversized value in a batch of SETs fails only its own SET, and "
          "SELECT keeps each batch in its database",
          "[resp_session][order][put_batch]") {
  runtime rt;
  auto c0 = must(rt.create_cache(two_shards(4)));
  auto o1 = two_shards();
  o1.name = "db1";
  auto c1 = must(rt.create_cache(o1));
  test_client cl{context_for(rt, {c0, c1})};
  auto got =
    cl.send(resp_command({"SET", "a", "1"}) + resp_command({"SET", "b", "12345"}) +
              resp_command({"SET", "c", "3"}) + resp_command({"SELECT", "1"}) +
              resp_command({"SET", "a", "db1"}),
            5);
  REQUIRE(got.size() == 5);
  CHECK(got[0] == "+OK\r\n");
  CHECK(got[1].rfind("-ERR ", 0) == 0);
  CHECK(got[2] == "+OK\r\n");
  CHECK(got[4] == "+OK\r\n");
  CHECK(must(c0.get("a")).bytes() == "1");
  CHECK_FALSE(must(c0.get("b")));
  CHECK(must(c0.get("c")).bytes() == "3");
  CHECK(must(c1.get("a")).bytes() == "db1");
}

TEST_CASE("session: a pipelined KARLTON.FLUSH after a SET under write-back waits for the "
          "SET and stores it",
          "[resp_session][order][flush]") {
  // At most one dirty write: "a", held by the store, keeps the SET parked in
  // its shard, not yet handed to the flusher, until the store takes "a".
  testing::gated_cache f{write_mode::write_back, 1};
  REQUIRE_FALSE(f.c.put("a", "1"));
  f.c.force_flush_async(std::chrono::seconds{10}, [](caf::expected<cache::unit>) {});
  REQUIRE(f.write_held());
  test_client cl{context_for(f.rt, {f.c})};
  cl.feed(resp_command({"SET", "k", "v"}) + resp_command({"KARLTON.FLUSH"}));
  f.db->gate.release();
  CHECK(cl.replies(2) == replies{"+OK\r\n", "+OK\r\n"});
  // Before, the FLUSH ran beside the parked SET and waited for "a" only.
  CHECK(f.stored("k") == "v");
}

TEST_CASE("session: an invalidation goes out after the replies of the commands before it",
          "[resp_session][order][tracking]") {
  testing::gated_cache f;
  REQUIRE_FALSE(f.put_stored("k", "v1"));
  test_client cl{context_for(f.rt, {f.c})};
  REQUIRE(cl.call({"HELLO", "3"}).rfind("%", 0) == 0); // pushes are RESP3's
  // A read answered at once, behind a write the store holds: its reply
  // waits in its slot. An invalidation of what it read, made meanwhile,
  // went out first, and a client caching on RESP3 pushes then stored v1
  // after dropping it, for good.
  cl.feed(resp_command({"SET", "other", "x"}) + resp_command({"GET", "k"}));
  REQUIRE(f.write_held());
  const std::string push = ">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n";
  cl.s->push(push);
  CHECK(cl.collect_now().empty());
  f.db->gate.release();
  CHECK(cl.replies(3) == replies{"+OK\r\n", "$2\r\nv1\r\n", push});
  // A push with nothing in flight goes out at once.
  cl.s->push(push);
  CHECK(cl.collect_now() == push);
}

TEST_CASE("session: a push goes out as the client read at its place in the stream, "
          "before a pipelined HELLO changed it",
          "[resp_session][order][tracking]") {
  testing::gated_cache f;
  test_client cl{context_for(f.rt, {f.c})};
  REQUIRE(cl.call({"HELLO", "3"}).rfind("%", 0) == 0);
  cl.feed(resp_command({"SET", "other", "x"})); // held by the store
  REQUIRE(f.write_held());
  const std::string push = ">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n";
  cl.s->push(push);                      // goes out after SET's reply...
  cl.feed(resp_command({"HELLO", "2"})); // ...and before HELLO's: still RESP3 there
  f.db->gate.release();
  auto got = cl.replies(3);
  REQUIRE(got.size() == 3);
  CHECK(got[0] == "+OK\r\n");
  CHECK(got[1] == push);            // judged by the client as it is now, it was dropped
  CHECK(got[2].rfind("*", 0) == 0); // HELLO 2's reply, in RESP2
  cl.s->push(push);                 // now a RESP2 client without a subscription
  CHECK(cl.call({"PING"}) == "+PONG\r\n");
}

TEST_CASE("session: an invalidation spelt for RESP3 reaches a subscriber whose HELLO 2 "
          "ran before its place, spelt for RESP2",
          "[resp_session][order][tracking]") {
  // The table spells a message by the client's protocol when it routes it;
  // one routed while a pipelined HELLO 2 ran, after HELLO's slot opened, was
  // spelt for RESP3 and goes out after HELLO's reply. Before, it was dropped
  // there: the subscribed client never heard of the change.
  testing::gated_cache f;
  test_client cl{context_for(f.rt, {f.c})};
  REQUIRE(cl.call({"HELLO", "3"}).rfind("%", 0) == 0);
  REQUIRE(cl.call({"SUBSCRIBE", "__redis__:invalidate"}).find("subscribe") !=
          std::string::npos);
  cl.feed(resp_command({"SET", "other", "x"})); // held by the store
  REQUIRE(f.write_held());
  cl.feed(resp_command({"HELLO", "2"}));
  cl.s->push(">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n"); // after HELLO's slot
  cl.s->push(">2\r\n$10\r\ninvalidate\r\n_\r\n");             // everything
  cl.s->push(">2\r\n$21\r\ntracking-redir-broken\r\n:7\r\n"); // RESP3's alone: dropped
  f.db->gate.release();
  auto got = cl.replies(4);
  REQUIRE(got.size() == 4);
  CHECK(got[0] == "+OK\r\n");
  CHECK(got[1].rfind("*", 0) == 0); // HELLO 2's reply, in RESP2
  CHECK(got[2] == "*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n"
                  "*1\r\n$1\r\nk\r\n");
  CHECK(got[3] == "*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n$-1\r\n");
  CHECK(cl.collect_now().empty());
}

namespace {

// A reader whose GET of k waits behind a SET the store holds, and an
// invalidation of k it holds meanwhile for its REDIRECT target.
struct held_redirect {
  testing::gated_cache f;
  std::shared_ptr<server::server_context> ctx = context_for(f.rt, {f.c});
  test_client reader{ctx}, target{ctx};
  const std::string msg = "*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n"
                          "*1\r\n$1\r\nk\r\n";

  held_redirect() {
    REQUIRE(target.call({"SUBSCRIBE", "__redis__:invalidate"}).find("subscribe") !=
            std::string::npos);
    REQUIRE_FALSE(f.put_stored("k", "v1"));
    reader.feed(resp_command({"SET", "other", "x"}) + resp_command({"GET", "k"}));
    REQUIRE(f.write_held());
    reader.s->push_for(msg, target.s);
  }
};

} // namespace

TEST_CASE_METHOD(
  held_redirect,
  "session: a REDIRECT target hears of a change after the reader's replies of the "
  "commands before it",
  "[resp_session][order][tracking]") {
  // Before, the tracking table pushed to the target at once: the target's
  // client dropped k while the reader's GET still carried v1 to its cache.
  CHECK(reader.collect_now().empty());
  CHECK(target.collect_now().empty());
  f.db->gate.release();
  CHECK(reader.replies(2) == replies{"+OK\r\n", "$2\r\nv1\r\n"});
  CHECK(target.collect_now() == msg);  // handed on when the replies went
  CHECK(reader.collect_now().empty()); // never in the reader's stream
}

TEST_CASE_METHOD(held_redirect,
                 "session: a reader that goes away hands what it held for its REDIRECT "
                 "target on",
                 "[resp_session][order][tracking]") {
  CHECK(target.collect_now().empty());
  // Its replies will never go out: waiting for them would keep the target's
  // client from hearing of k at all.
  reader.s->detach();
  CHECK(target.collect_now() == msg);
}

TEST_CASE_METHOD(held_redirect,
                 "session: a REDIRECT target that unsubscribed meanwhile hears nothing "
                 "in its reply stream",
                 "[resp_session][order][tracking]") {
  // The message was spelt for a subscriber; delivered to a client no longer
  // one, a RESP2 client took it for the reply to its next command.
  CHECK(target.call({"UNSUBSCRIBE"}).find("unsubscribe") != std::string::npos);
  f.db->gate.release();
  CHECK(reader.replies(2) == replies{"+OK\r\n", "$2\r\nv1\r\n"});
  CHECK(target.call({"PING"}) == "+PONG\r\n");
  CHECK(target.collect_now().empty());
}

TEST_CASE("tracking: an invalidation is spelt again for the other protocol, and "
          "nothing else is",
          "[tracking]") {
  const std::string keys = "*2\r\n$1\r\na\r\n$1\r\nb\r\n";
  const std::string push = ">2\r\n$10\r\ninvalidate\r\n" + keys;
  const std::string message =
    "*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n" + keys;
  CHECK(server::invalidation_for(push, 2) == message);
  CHECK(server::invalidation_for(message, 3) == push);
  CHECK(server::invalidation_for(push, 3) == push);
  CHECK(server::invalidation_for(">2\r\n$10\r\ninvalidate\r\n_\r\n", 2) ==
        "*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n$-1\r\n");
  CHECK(server::invalidation_for(">2\r\n$10\r\ninvalidate\r\n:1\r\n", 2).empty());
  CHECK(server::invalidation_for("+PONG\r\n", 3).empty());
}

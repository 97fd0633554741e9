// Under write-through, a key's computes and writes keep the callers' order:
// a compute waits behind the key's writes at the store, and later writes
// wait behind it, also while it loads (shard_compute.cpp, shard_writes.cpp).
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "support/compute_answers.hpp"
#include "support/times.hpp"
#include <karlton/messages/errors.hpp>

using namespace karlton;
using namespace karlton::test;
using namespace std::chrono_literals;

TEST_CASE("a compute behind a write-through write the store holds back sees that write",
          "[compute][write-through]") {
  shard_options cfg;
  cfg.writes = write_mode::write_through;
  shard_state s{cfg};
  std::optional<caf::expected<bool>> put_done;
  CHECK_FALSE(s.write(value::make("k", "5"), ttl::never(), t0,
                      [&](caf::expected<bool> r) { put_done.emplace(std::move(r)); }));
  answer<int64_t> a, b;
  a.run(s, t0, inc());
  b.run(s, t0, inc());
  CHECK_FALSE(a.got);
  auto items = s.take_writes();
  REQUIRE(items.size() == 1); // the computes wait: nothing of theirs is written yet
  s.writes_done(seqs_of(items), caf::none, t0);
  CHECK(put_done);
  items = s.take_writes();
  REQUIRE(items.size() == 1);
  CHECK(items[0].bytes == "6");
  CHECK_FALSE(a.got); // answered when the store has it
  s.writes_done(seqs_of(items), caf::none, t0);
  CHECK(*a == 6);
  items = s.take_writes();
  REQUIRE(items.size() == 1);
  CHECK(items[0].bytes == "7");
  s.writes_done(seqs_of(items), caf::none, t0);
  CHECK(*b == 7);
  CHECK(bytes_of(s, t0) == "7");
}

TEST_CASE("under write-through a put or erase after a waiting compute of the key waits "
          "behind it",
          "[compute][write-through]") {
  shard_options cfg;
  cfg.writes = write_mode::write_through;
  shard_state s{cfg};
  write_answers answered;
  auto note = [&](std::string what) { return answered.note(std::move(what)); };
  CHECK_FALSE(s.write(value::make("k", "5"), ttl::never(), t0, note("put 5")));
  answer<int64_t> a;
  a.run(s, t0, inc()); // waits behind the store's write of 5
  // Called after the increment: before, it went to the store at once and the
  // increment then ran on it, storing 11 where the caller's order gives 10.
  CHECK_FALSE(s.write(value::make("k", "10"), ttl::never(), t0, note("put 10")));
  CHECK_FALSE(s.write_erase("gone", t0, note("erase other"))); // other keys: at once
  auto items = s.take_writes();
  REQUIRE(items.size() == 2);
  CHECK(items[0].bytes == "5");
  CHECK(items[1].key == "gone");
  s.writes_done(seqs_of(items), caf::none, t0);
  items = s.take_writes();
  REQUIRE(items.size() == 1);
  CHECK(items[0].bytes == "6");
  s.writes_done(seqs_of(items), caf::none, t0);
  CHECK(*a == 6);
  items = s.take_writes();
  REQUIRE(items.size() == 1);
  CHECK(items[0].bytes == "10");
  s.writes_done(seqs_of(items), caf::none, t0);
  CHECK(bytes_of(s, t0) == "10");
  // An erase waits the same way.
  answer<int64_t> b;
  CHECK_FALSE(s.write(value::make("k", "1"), ttl::never(), t0, note("put 1")));
  b.run(s, t0, inc());
  CHECK_FALSE(s.write_erase("k", t0, note("erase k")));
  for (int round = 0; round < 3; ++round) {
    items = s.take_writes();
    REQUIRE(items.size() == 1);
    CHECK(items[0].erase == (round == 2));
    s.writes_done(seqs_of(items), caf::none, t0);
  }
  CHECK(*b == 2);
  CHECK_FALSE(s.get("k", t0));
  CHECK(answered.got ==
        std::vector<std::string>{"put 5", "erase other", "put 10", "put 1", "erase k"});
}

TEST_CASE("under write-through a compute that loads keeps its place before a later put",
          "[compute][write-through]") {
  shard_options cfg;
  cfg.writes = write_mode::write_through;
  cfg.read_through = true;
  shard_state s{cfg};
  write_answers answered;
  auto note = [&](std::string what) { return answered.note(std::move(what)); };
  CHECK_FALSE(s.write_erase("k", t0, note("erase")));
  answer<int64_t> a;
  a.run(s, t0, inc()); // behind the erase
  CHECK_FALSE(
    s.write(value::make("k", "10"), ttl::never(), t0, note("put 10"))); // behind it
  auto items = s.take_writes();
  REQUIRE(items.size() == 1);
  s.writes_done(seqs_of(items), caf::none,
                t0); // the increment runs: k is absent, it loads
  auto loads = s.take_loads_to_start();
  REQUIRE(loads.size() == 1);
  // Before, the put went to the store here, and the increment then ran on it.
  CHECK(s.take_writes().empty());
  s.complete_load("k", loads[0].second,
                  caf::expected<std::string>{make_error(errc::not_found, "no row")}, 1ms,
                  t0);
  items = s.take_writes();
  REQUIRE(items.size() == 1);
  CHECK(items[0].bytes == "1");
  s.writes_done(seqs_of(items), caf::none, t0);
  CHECK(*a == 1);
  items = s.take_writes();
  REQUIRE(items.size() == 1);
  CHECK(items[0].bytes == "10");
  s.writes_done(seqs_of(items), caf::none, t0);
  CHECK(bytes_of(s, t0) == "10");
  CHECK(answered.got == std::vector<std::string>{"erase", "put 10"});
}

TEST_CASE("with no write mode a compute that loads keeps its place before a later put",
          "[compute]") {
  // Before, the put went in at once (voiding the load), and the increment
  // then ran on it: compute(f), put(10) left f(10) = 11.
  shard_options cfg;
  cfg.read_through = true;
  shard_state s{cfg};
  write_answers answered;
  auto note = [&](std::string what) { return answered.note(std::move(what)); };
  answer<int64_t> a;
  a.run(s, t0, inc()); // k is absent: it loads
  auto loads = s.take_loads_to_start();
  REQUIRE(loads.size() == 1);
  CHECK_FALSE(s.write(value::make("k", "10"), ttl::never(), t0, note("put 10")));
  CHECK(s.write_erase("j", t0, note("erase j"))); // another key: answered at once
  CHECK(answered.got.empty());
  s.complete_load("k", loads[0].second,
                  caf::expected<std::string>{make_error(errc::not_found, "no row")}, 1ms,
                  t0);
  CHECK(*a == 1);
  CHECK(bytes_of(s, t0) == "10");
  CHECK(answered.got == std::vector<std::string>{"put 10"});
}

TEST_CASE("a put queued behind a compute is stored even when an expired value is kept "
          "for stale-if-error",
          "[compute][write-through][stale-if-error]") {
  shard_options cfg;
  cfg.writes = write_mode::write_through;
  cfg.read_through = true;
  cfg.default_ttl = ttl::after(10s);
  cfg.stale_if_error = 5s;
  shard_state s{cfg};
  write_answers answered;
  auto note = [&](std::string what) { return answered.note(std::move(what)); };
  CHECK_FALSE(s.write(value::make("k", "5"), ttl::cache_default(), t0, note("put 5")));
  s.writes_done(seqs_of(s.take_writes()), caf::none, t0);
  // At 11 s "5" is expired and kept. A put, an increment behind it and a
  // put behind that.
  CHECK_FALSE(
    s.write(value::make("k", "6"), ttl::cache_default(), at(11s), note("put 6")));
  answer<int64_t> a;
  a.run(s, at(11s), inc());
  CHECK_FALSE(
    s.write(value::make("k", "7"), ttl::cache_default(), at(11s), note("put 7")));
  auto items = s.take_writes();
  REQUIRE(items.size() == 1);
  s.writes_done(seqs_of(items), make_error(errc::store_failure, "down"), at(11s));
  // The increment loads (nothing cached), the load fails: it fails too.
  fail_the_load(s, "k", errc::store_failure, at(11s));
  REQUIRE(a.got);
  CHECK_FALSE(*a.got);
  // The put behind it does not care what is kept: it is written. Before, it
  // failed as a compute on a stale value would.
  items = s.take_writes();
  REQUIRE(items.size() == 1);
  CHECK(items[0].bytes == "7");
  s.writes_done(seqs_of(items), caf::none, at(11s));
  CHECK(bytes_of(s, at(11s)) == "7");
  CHECK(answered.got == std::vector<std::string>{"put 5", "error", "put 7"});
}

TEST_CASE("a compute whose load was voided loads again rather than count from absent",
          "[compute]") {
  shard_options cfg;
  cfg.read_through = true;
  shard_state s{cfg};
  answer<int64_t> a;
  a.run(s, t0, inc());
  auto loads = s.take_loads_to_start();
  REQUIRE(loads.size() == 1);
  s.clear(); // voids the load: its value must not be installed (rule 1)
  s.complete_load("k", loads[0].second, std::string{"41"}, 1ms, t0);
  // Before, the compute found the table empty and stored 1 over the 41.
  CHECK_FALSE(a.got);
  loads = s.take_loads_to_start();
  REQUIRE(loads.size() == 1);
  s.complete_load("k", loads[0].second, std::string{"41"}, 1ms, t0);
  REQUIRE(a.ok());
  CHECK(*a == 42);
}

TEST_CASE("a shard that stops while a compute loads fails it and those behind it",
          "[compute][write-through]") {
  shard_options cfg;
  cfg.writes = write_mode::write_through;
  cfg.read_through = true;
  answer<int64_t> a, b;
  write_answers answered;
  {
    shard_state s{cfg};
    a.run(s, t0, inc()); // loads, holding the key
    REQUIRE(s.take_loads_to_start().size() == 1);
    b.run(s, t0, inc()); // waits behind it
    CHECK_FALSE(s.write(value::make("k", "9"), ttl::never(), t0, answered.note("put")));
  } // Before, failing a's load ran b, which joined the load being failed.
  REQUIRE(a.got);
  CHECK(a.got->error() == errc::shut_down);
  REQUIRE(b.got);
  CHECK(b.got->error() == errc::shut_down);
  CHECK(answered.got == std::vector<std::string>{"error"});
}

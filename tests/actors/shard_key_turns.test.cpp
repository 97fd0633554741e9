// set_ttl and clear keep the callers' order with what waits in a key's line:
// a put or compute behind a compute that loads, a put the store holds
// (write-through), a write parked for room (write-back). set_ttl runs in the
// key's turn; a clear drops each such key again in its turn
// (shard_compute.cpp, `wait_turn`).
#include <catch2/catch.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "support/compute_answers.hpp"
#include "support/times.hpp"
#include <karlton/messages/errors.hpp>

using namespace karlton;
using namespace karlton::test;
using namespace std::chrono_literals;

namespace {

shard_ops::set_ttl<key_op> set_ttl(std::optional<caf::timespan> left,
                                   std::string key = "k") {
  return {std::move(key), left};
}

caf::timespan left_of(shard_state& s, const std::string& key = "k") {
  auto r = s.ttl_of(key, t0);
  REQUIRE(r.state == remaining_ttl::expires);
  return r.left;
}

shard_options write_through() {
  shard_options cfg;
  cfg.writes = write_mode::write_through;
  return cfg;
}

// The store takes the one write it was handed, at `now`.
void store_takes_one(shard_state& s, time_point now = t0) {
  auto items = s.take_writes();
  REQUIRE(items.size() == 1);
  s.writes_done(seqs_of(items), caf::none, now);
}

// Write-back with room for one dirty write.
shard_options write_back_room_for_one() {
  shard_options cfg;
  cfg.writes = write_mode::write_back;
  cfg.budget = std::make_shared<dirty_budget>(1);
  return cfg;
}

// j's write takes the room, k's parks: a line for k under write-back.
void park_k(shard_state& s, write_answers& answered) {
  CHECK_FALSE(s.write(value::make("j", "1"), ttl::never(), t0, answered.note("put j")));
  CHECK_FALSE(s.write(value::make("k", "2"), ttl::never(), t0, answered.note("put k")));
}

} // namespace

TEST_CASE("set_ttl waits its turn behind a put queued behind a compute that loads",
          "[compute][ttl]") {
  // Before, it ran at once on the absent key (missing), and the put then
  // came in with no expiry: put(10), EXPIRE 5 left 10 forever.
  shard_options cfg;
  cfg.read_through = true;
  shard_state s{cfg};
  answer<int64_t> a;
  answer<caf::unit_t> put;
  answer<remaining_ttl> retimed, other;
  a.run(s, t0, inc()); // k is absent: it loads
  auto loads = s.take_loads_to_start();
  REQUIRE(loads.size() == 1);
  put.run(s, t0, shard_ops::put{value::make("k", "10"), ttl::never()});
  retimed.run(s, t0, set_ttl(5s));
  other.run(s, t0, set_ttl(5s, "j")); // another key: at once
  REQUIRE(other.ok());
  CHECK((*other).state == remaining_ttl::missing);
  CHECK_FALSE(retimed.got);
  s.complete_load("k", loads[0].second, std::string{"4"}, 1ms, t0);
  CHECK(*a == 5);
  REQUIRE(put.ok());
  REQUIRE(retimed.ok());
  CHECK((*retimed).state == remaining_ttl::never_expires); // the put's
  CHECK(bytes_of(s, t0) == "10");
  CHECK(left_of(s) == 5s);
}

TEST_CASE("under write-through set_ttl waits for the store to take the key's put",
          "[compute][ttl][write-through]") {
  auto cfg = write_through();
  write_answers answered;
  shard_state s{cfg};
  CHECK_FALSE(s.write(value::make("k", "5"), ttl::never(), t0, answered.note("put 5")));
  answer<remaining_ttl> retimed;
  retimed.run(s, t0, set_ttl(5s));
  CHECK_FALSE(retimed.got);
  store_takes_one(s);
  REQUIRE(retimed.ok());
  CHECK((*retimed).state == remaining_ttl::never_expires);
  CHECK(left_of(s) == 5s);
  CHECK(answered.got == std::vector<std::string>{"put 5"});
}

TEST_CASE("under write-back set_ttl waits behind the key's write parked for room and "
          "needs no room of its own",
          "[compute][ttl][write-back]") {
  auto cfg = write_back_room_for_one();
  write_answers answered; // outlives the shard, whose destructor fails what waits
  shard_state s{cfg};
  park_k(s, answered);
  answer<remaining_ttl> retimed;
  retimed.run(s, t0, set_ttl(5s));
  CHECK_FALSE(s.write(value::make("m", "3"), ttl::never(), t0, answered.note("put m")));
  CHECK_FALSE(retimed.got);
  cfg.budget->release(1); // room for one write: k's, then set_ttl without any
  s.retry_parked(t0);
  REQUIRE(retimed.ok());
  CHECK((*retimed).state == remaining_ttl::never_expires);
  CHECK(left_of(s) == 5s);
  CHECK(cfg.budget->used() == 1); // k's: the turn took none and gave none back
  CHECK_FALSE(s.get("m", t0));    // still parked
}

TEST_CASE("a set_ttl that waits counts its lifetime from the call", "[compute][ttl]") {
  // Counted from its turn, a wait for the store would lengthen it.
  auto cfg = write_through();
  write_answers answered;
  shard_state s{cfg};
  CHECK_FALSE(s.write(value::make("k", "5"), ttl::never(), t0, answered.note("put 5")));
  answer<remaining_ttl> retimed;
  retimed.run(s, t0, set_ttl(5s));
  store_takes_one(s, at(3000ms));
  REQUIRE(retimed.ok());
  auto left = s.ttl_of("k", at(3000ms));
  REQUIRE(left.state == remaining_ttl::expires);
  CHECK(left.left == 2s);
  // One whose expiry passed while it waited removes the entry as expired.
  CHECK_FALSE(
    s.write(value::make("k", "6"), ttl::never(), at(3000ms), answered.note("put 6")));
  answer<remaining_ttl> short_one;
  short_one.run(s, at(3000ms), set_ttl(1s));
  // Before "5" expires at 5 s: a put over an expired entry counts it expired.
  store_takes_one(s, at(4500ms));
  REQUIRE(short_one.ok());
  CHECK(s.size() == 0); // removed by the turn, not left for a read to find expired
  CHECK((*short_one).state == remaining_ttl::never_expires);
  CHECK_FALSE(s.get("k", at(4500ms)));
  CHECK(s.stats().expired == 1);
}

TEST_CASE("a put after a waiting set_ttl does not overtake it", "[compute][ttl]") {
  // Gone to the store at once, it would be answered before the set_ttl's
  // turn came, which then gave it the set_ttl's 5 s.
  auto cfg = write_through();
  write_answers answered;
  shard_state s{cfg};
  CHECK_FALSE(s.write(value::make("k", "1"), ttl::never(), t0, answered.note("put 1")));
  answer<remaining_ttl> retimed;
  retimed.run(s, t0, set_ttl(5s));
  CHECK_FALSE(s.write(value::make("k", "2"), ttl::never(), t0, answered.note("put 2")));
  store_takes_one(s); // put 1, then set_ttl's turn
  store_takes_one(s); // put 2, behind it
  REQUIRE(retimed.ok());
  CHECK(bytes_of(s, t0) == "2");
  CHECK(s.ttl_of("k", t0).state == remaining_ttl::never_expires);
  CHECK(answered.got == std::vector<std::string>{"put 1", "put 2"});
}

TEST_CASE("a set_ttl in the write-back line is answered when the writes before it time "
          "out",
          "[compute][ttl][write-back]") {
  auto cfg = write_back_room_for_one();
  cfg.room_wait = 1s;
  write_answers answered;
  shard_state s{cfg};
  park_k(s, answered);
  answer<remaining_ttl> retimed;
  retimed.run(s, t0, set_ttl(5s));
  CHECK_FALSE(s.write(value::make("m", "3"), ttl::never(), t0, answered.note("put m")));
  s.retry_parked(at(1000ms)); // no room, every deadline passed
  REQUIRE(retimed.ok());      // not `overloaded`: it needs no room
  CHECK((*retimed).state == remaining_ttl::missing);
  CHECK(answered.got == std::vector<std::string>{"error", "error"});
  CHECK(s.stats().writes_parked == 0);
}

// How many writes the write-back line takes before it refuses one.
uint64_t line_bound() {
  auto cfg = write_back_room_for_one();
  shard_state s{cfg};
  CHECK_FALSE(
    s.write(value::make("j", "1"), ttl::never(), t0, [](caf::expected<bool>) {}));
  uint64_t parked = 0;
  for (; parked < 1'000'000; ++parked)
    if (s.write(value::make("k", "2"), ttl::never(), t0, [](caf::expected<bool>) {}))
      break;
  REQUIRE(s.stats().writes_parked == parked);
  return parked;
}

TEST_CASE("set_ttl calls park in the write-back line up to a bound of their own",
          "[compute][ttl][write-back]") {
  auto bound = line_bound();
  auto cfg = write_back_room_for_one();
  write_answers answered;
  shard_state s{cfg};
  park_k(s, answered);
  uint64_t turns = 0;
  std::optional<caf::expected<remaining_ttl>> refused;
  for (; turns < 1'000'000 && !refused; ++turns)
    refused = s.set_ttl("k", caf::timespan{5s}, t0, [](caf::expected<remaining_ttl>) {});
  REQUIRE(refused);
  REQUIRE_FALSE(*refused);
  CHECK(refused->error() == errc::overloaded);
  CHECK(turns - 1 == bound);
  CHECK(s.turns_parked() == bound);
  CHECK(s.stats().writes_parked == 1); // k's write; the turns are not writes
  // Writes still park up to their own bound: turns do not take their places.
  CHECK_FALSE(s.write(value::make("m", "3"), ttl::never(), t0, answered.note("put m")));
  CHECK(s.stats().writes_parked == 2);
}

TEST_CASE("a clear's drops do not take the places of writes in the write-back line",
          "[compute][clear][write-back]") {
  auto bound = line_bound();
  auto cfg = write_back_room_for_one();
  shard_state s{cfg};
  auto ignore = [](caf::expected<bool>) {};
  CHECK_FALSE(s.write(value::make("j", "1"), ttl::never(), t0, ignore)); // the room
  for (uint64_t i = 0; i + 1 < bound; ++i)
    REQUIRE_FALSE(
      s.write(value::make("k" + std::to_string(i), "2"), ttl::never(), t0, ignore));
  s.clear(); // a drop behind each parked write
  CHECK(s.turns_parked() == bound - 1);
  CHECK(s.stats().writes_parked == bound - 1);
  // Before, the drops counted as writes: the line was full and this was refused.
  CHECK_FALSE(s.write(value::make("last", "3"), ttl::never(), t0, ignore));
  CHECK(s.stats().writes_parked == bound);
  CHECK(s.write(value::make("over", "4"), ttl::never(), t0, ignore)); // refused
}

TEST_CASE("a shard that stops fails the set_ttl calls waiting their turn",
          "[compute][ttl]") {
  answer<remaining_ttl> behind_store, in_line;
  write_answers answered;
  {
    auto cfg = write_through();
    shard_state s{cfg};
    CHECK_FALSE(s.write(value::make("k", "1"), ttl::never(), t0, answered.note("put")));
    behind_store.run(s, t0, set_ttl(5s));
  }
  {
    auto cfg = write_back_room_for_one();
    shard_state s{cfg};
    park_k(s, answered);
    in_line.run(s, t0, set_ttl(5s));
  }
  REQUIRE(behind_store.got);
  CHECK(behind_store.got->error() == errc::shut_down);
  REQUIRE(in_line.got);
  CHECK(in_line.got->error() == errc::shut_down);
}

TEST_CASE("a clear drops what was queued for a key before it and keeps what came after",
          "[compute][clear]") {
  // Before, the put queued behind the compute went in after the clear and
  // stayed: compute, put(10), clear left 10.
  shard_options cfg;
  cfg.read_through = true;
  shard_state s{cfg};
  answer<int64_t> a;
  answer<caf::unit_t> before_clear, after_clear;
  a.run(s, t0, inc());
  auto loads = s.take_loads_to_start();
  REQUIRE(loads.size() == 1);
  before_clear.run(s, t0, shard_ops::put{value::make("k", "10"), ttl::never()});
  CHECK(s.clear() == 0);
  s.complete_load("k", loads[0].second, std::string{"4"}, 1ms, t0);
  loads = s.take_loads_to_start(); // the clear voided the load: it loads again
  REQUIRE(loads.size() == 1);
  s.complete_load("k", loads[0].second, std::string{"4"}, 1ms, t0);
  CHECK(*a == 5);
  REQUIRE(before_clear.ok());
  CHECK_FALSE(s.get("k", t0));
  // A put after the clear stays, also when it waits behind a compute.
  a.got.reset();
  a.run(s, t0, inc());
  loads = s.take_loads_to_start();
  REQUIRE(loads.size() == 1);
  before_clear.got.reset();
  before_clear.run(s, t0, shard_ops::put{value::make("k", "10"), ttl::never()});
  CHECK(s.clear() == 0);
  after_clear.run(s, t0, shard_ops::put{value::make("k", "20"), ttl::never()});
  s.complete_load("k", loads[0].second, std::string{"4"}, 1ms, t0);
  loads = s.take_loads_to_start();
  REQUIRE(loads.size() == 1);
  s.complete_load("k", loads[0].second, std::string{"4"}, 1ms, t0);
  REQUIRE(before_clear.ok());
  REQUIRE(after_clear.ok());
  CHECK(bytes_of(s, t0) == "20");
}

TEST_CASE(
  "under write-through a clear voids a put the store holds with nothing behind it",
  "[compute][clear][write-through]") {
  auto cfg = write_through();
  write_answers answered;
  shard_state s{cfg};
  CHECK_FALSE(s.write(value::make("k", "5"), ttl::never(), t0, answered.note("put 5")));
  CHECK(s.clear() == 0);
  store_takes_one(s);
  CHECK(answered.got == std::vector<std::string>{"put 5"});
  CHECK_FALSE(s.get("k", t0)); // stored, never installed
  CHECK(s.stats().puts == 0);
}

TEST_CASE("under write-through a compute behind a put the store holds sees it also "
          "across a clear",
          "[compute][clear][write-through]") {
  // Before, the clear voided the put, and the increment then ran on nothing:
  // put(5), increment, clear stored 1 over the 5, not 6.
  auto cfg = write_through();
  write_answers answered;
  shard_state s{cfg};
  CHECK_FALSE(s.write(value::make("k", "5"), ttl::never(), t0, answered.note("put 5")));
  answer<int64_t> a;
  a.run(s, t0, inc());
  CHECK(s.clear() == 0);
  std::vector<std::string> stored;
  for (int round = 0; round < 2; ++round) {
    auto items = s.take_writes();
    REQUIRE(items.size() == 1);
    stored.emplace_back(items[0].bytes());
    s.writes_done(seqs_of(items), caf::none, t0);
  }
  CHECK(stored == std::vector<std::string>{"5", "6"});
  CHECK(*a == 6);
  CHECK_FALSE(s.get("k", t0)); // then dropped, as the clear came last
  CHECK(answered.got == std::vector<std::string>{"put 5"});
}

TEST_CASE("under write-back a clear drops a write parked for room once it goes in, "
          "and the flusher still gets it",
          "[compute][clear][write-back]") {
  auto cfg = write_back_room_for_one();
  write_answers answered;
  shard_state s{cfg};
  park_k(s, answered);
  CHECK(s.clear() == 1);
  CHECK(s.stats().writes_parked == 1); // k's write
  CHECK(s.turns_parked() == 1);        // and its drop
  CHECK(s.clear() == 0);
  CHECK(s.turns_parked() == 1); // no second drop: the line ends with one
  auto items = s.take_writes();
  REQUIRE(items.size() == 1); // j's
  cfg.budget->release(1);
  s.retry_parked(t0);
  items = s.take_writes();
  REQUIRE(items.size() == 1);
  CHECK(items[0].key() == "k");
  CHECK(items[0].bytes() == "2");
  CHECK_FALSE(s.get("k", t0)); // before, it stayed cached after the clear
  CHECK(s.stats().writes_parked == 0);
  CHECK(s.turns_parked() == 0); // the drop ran right behind k's write
}

TEST_CASE("under write-back a clear's drop runs right behind the key's write, not behind "
          "the writes parked after it",
          "[compute][clear][write-back]") {
  auto cfg = write_back_room_for_one();
  write_answers answered;
  shard_state s{cfg};
  park_k(s, answered);
  CHECK_FALSE(s.write(value::make("m", "3"), ttl::never(), t0, answered.note("put m")));
  CHECK(s.clear() == 1);
  cfg.budget->release(1); // room for k's write only
  s.retry_parked(t0);
  CHECK_FALSE(s.get("k", t0));         // at the end of the line, it waited behind m
  CHECK(s.stats().writes_parked == 1); // m's write
  CHECK(s.turns_parked() == 1);        // and its drop
}

TEST_CASE("a set_ttl that leaves the write-back line behind a compute that loads is no "
          "longer counted in it",
          "[compute][ttl][write-back]") {
  auto cfg = write_back_room_for_one();
  cfg.read_through = true;
  write_answers answered;
  shard_state s{cfg};
  park_k(s, answered);
  answer<int64_t> a;
  answer<remaining_ttl> retimed;
  a.run(s, t0, shard_ops::increment<key_op>{"m", 4, ttl::cache_default()}); // parks
  retimed.run(s, t0, set_ttl(5s, "m"));                                     // behind it
  CHECK(s.turns_parked() == 1);
  cfg.budget->release(1); // k's write goes in
  s.retry_parked(t0);
  cfg.budget->release(1); // the compute's turn: m is absent, it loads
  s.retry_parked(t0);
  auto loads = s.take_loads_to_start();
  REQUIRE(loads.size() == 1);
  CHECK(s.turns_parked() == 0); // the set_ttl waits behind the load now
  CHECK(s.stats().writes_parked == 0);
  CHECK_FALSE(retimed.got);
  s.complete_load("m", loads[0].second, std::string{"1"}, 1ms, t0);
  REQUIRE(retimed.ok()); // in its turn: after the compute's write went in
  CHECK(bytes_of(s, t0, "m") == "5");
  CHECK(left_of(s, "m") == 5s);
  auto items = s.take_writes(); // j's, k's and m's
  REQUIRE(items.size() == 3);
  s.writes_done(seqs_of(items), caf::none, t0);
  REQUIRE(a.ok());
  CHECK(*a == 5);
}

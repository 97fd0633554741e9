// A key's computes and writes keep the callers' order: under write-through
// a compute waits behind the key's writes at the store, and in every mode
// later writes wait behind a compute, also while it loads, under write-back
// in line with the writes parked for room (shard_compute.cpp, shard_writes.cpp).
#include <catch2/catch.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "support/compute_answers.hpp"
#include "support/times.hpp"
#include <karlton/messages/errors.hpp>

using namespace karlton;
using namespace karlton::test;
using namespace std::chrono_literals;

namespace {

// A write-back, read-through shard with room for `room` dirty writes.
shard_options write_back(uint64_t room) {
  shard_options cfg;
  cfg.writes = write_mode::write_back;
  cfg.read_through = true;
  cfg.budget = std::make_shared<dirty_budget>(room);
  return cfg;
}

// The flusher stored `n` writes: room for the next in line, one at a time.
void make_room(const shard_options& cfg, shard_state& s, int n = 1) {
  for (int i = 0; i < n; ++i) {
    cfg.budget->release(1);
    s.retry_parked(t0);
  }
}

} // namespace

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
  CHECK(items[0].bytes() == "6");
  CHECK_FALSE(a.got); // answered when the store has it
  s.writes_done(seqs_of(items), caf::none, t0);
  CHECK(*a == 6);
  items = s.take_writes();
  REQUIRE(items.size() == 1);
  CHECK(items[0].bytes() == "7");
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
  CHECK(items[0].bytes() == "5");
  CHECK(items[1].key() == "gone");
  s.writes_done(seqs_of(items), caf::none, t0);
  items = s.take_writes();
  REQUIRE(items.size() == 1);
  CHECK(items[0].bytes() == "6");
  s.writes_done(seqs_of(items), caf::none, t0);
  CHECK(*a == 6);
  items = s.take_writes();
  REQUIRE(items.size() == 1);
  CHECK(items[0].bytes() == "10");
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
  CHECK(items[0].bytes() == "1");
  s.writes_done(seqs_of(items), caf::none, t0);
  CHECK(*a == 1);
  items = s.take_writes();
  REQUIRE(items.size() == 1);
  CHECK(items[0].bytes() == "10");
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
  CHECK(items[0].bytes() == "7");
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

TEST_CASE("under write-back a compute that loads keeps its place before a later put",
          "[compute][write-back]") {
  // Before, the put went in at once (dirty, voiding the load), and the
  // increment then ran on it: compute(f), put(10) left f(10) = 11.
  auto cfg = write_back(100);
  write_answers answered; // outlives the shard, whose destructor fails what waits
  auto note = [&](std::string what) { return answered.note(std::move(what)); };
  answer<int64_t> a;
  shard_state s{cfg};
  a.run(s, t0, inc()); // k is absent: it loads
  auto loads = s.take_loads_to_start();
  REQUIRE(loads.size() == 1);
  CHECK_FALSE(s.write(value::make("k", "10"), ttl::never(), t0, note("put 10")));
  CHECK_FALSE(s.write_erase("j", t0, note("erase j"))); // another key: not behind it
  auto items = s.take_writes();
  CHECK(items.size() == 1);
  s.writes_done(seqs_of(items), caf::none, t0);
  s.complete_load("k", loads[0].second, std::string{"4"}, 1ms, t0);
  items = s.take_writes();
  REQUIRE(items.size() == 2);
  CHECK(items[0].bytes() == "5");
  CHECK(items[1].bytes() == "10");
  CHECK(bytes_of(s, t0) == "10");
  s.writes_done(seqs_of(items), caf::none, t0);
  CHECK(*a == 5);
  CHECK(answered.got == std::vector<std::string>{"erase j", "put 10"});
}

TEST_CASE(
  "under write-back a compute waiting behind one that loads sees its parked write",
  "[compute][write-back]") {
  // The second waits behind the first, which loads; the first's write then
  // parks for room (max-dirty full). Run at once, the second would not see
  // it and store 6 too: one update lost.
  auto cfg = write_back(1);
  answer<int64_t> a, b; // these outlive the shard, whose destructor fails what waits
  shard_state s{cfg};
  a.run(s, t0, inc());
  b.run(s, t0, inc());
  auto loads = s.take_loads_to_start();
  REQUIRE(loads.size() == 1);
  auto ignore = [](caf::expected<bool>) {};
  CHECK_FALSE(s.write(value::make("other", "x"), ttl::never(), t0, ignore)); // room gone
  s.complete_load("k", loads[0].second, std::string{"5"}, 1ms, t0);
  CHECK_FALSE(a.got); // parked, and b behind it
  CHECK_FALSE(b.got);
  make_room(cfg, s, 3); // room for one write at a time
  CHECK(bytes_of(s, t0) == "7");
  auto items = s.take_writes();
  REQUIRE(items.size() == 3);
  CHECK(items[1].bytes() == "6");
  CHECK(items[2].bytes() == "7");
  s.writes_done(seqs_of(items), caf::none, t0);
  CHECK(*a == 6);
  CHECK(*b == 7);
}

TEST_CASE("under write-back a put parked behind a compute that loads on its turn waits "
          "for it",
          "[compute][write-back]") {
  // Before, the put's turn came while the increment loaded: it went in
  // (voiding the load) and the increment then ran on it.
  auto cfg = write_back(1);
  answer<int64_t> a; // these outlive the shard, whose destructor fails what waits
  write_answers answered;
  auto note = [&](std::string what) { return answered.note(std::move(what)); };
  shard_state s{cfg};
  CHECK_FALSE(s.write(value::make("other", "x"), ttl::never(), t0, note("other")));
  CHECK_FALSE(s.write(value::make("j", "1"), ttl::never(), t0, note("j"))); // parked
  a.run(s, t0, inc());                                                      // parked
  CHECK_FALSE(s.write(value::make("k", "10"), ttl::never(), t0, note("put 10")));
  make_room(cfg, s, 2);
  auto loads = s.take_loads_to_start(); // the increment's turn: k is absent
  REQUIRE(loads.size() == 1);
  CHECK_FALSE(s.get("k", t0)); // the put waits behind it
  s.complete_load("k", loads[0].second, std::string{"4"}, 1ms, t0);
  make_room(cfg, s);
  CHECK(bytes_of(s, t0) == "10");
  auto items = s.take_writes();
  REQUIRE(items.size() == 4);
  CHECK(items[2].bytes() == "5");
  CHECK(items[3].bytes() == "10");
  s.writes_done(seqs_of(items), caf::none, t0);
  CHECK(*a == 5);
  CHECK(answered.got == std::vector<std::string>{"other", "j", "put 10"});
}

TEST_CASE(
  "under write-back a put parked behind a compute that loads stays before a newer "
  "one",
  "[compute][write-back]") {
  // When the increment loads on its turn, the put of 10 parked behind it
  // comes after it and before a put of 20 made meanwhile. Before, 10 was
  // queued behind the increment only at its own turn in the line (here,
  // while the increment still loads), behind 20 already: k ended as 10,
  // where the callers' order gives 20.
  auto cfg = write_back(1);
  answer<int64_t> a; // these outlive the shard, whose destructor fails what waits
  write_answers answered;
  auto note = [&](std::string what) { return answered.note(std::move(what)); };
  shard_state s{cfg};
  CHECK_FALSE(s.write(value::make("other", "x"), ttl::never(), t0, note("other")));
  CHECK_FALSE(s.write(value::make("j", "1"), ttl::never(), t0, note("j"))); // parked
  a.run(s, t0, inc());                                                      // parked
  CHECK_FALSE(s.write(value::make("y", "1"), ttl::never(), t0, note("y"))); // parked
  CHECK_FALSE(
    s.write(value::make("k", "10"), ttl::never(), t0, note("put 10")));     // parked
  CHECK_FALSE(s.write(value::make("z", "1"), ttl::never(), t0, note("z"))); // parked
  make_room(cfg, s, 2); // j goes in; then the increment's turn: it loads
  auto loads = s.take_loads_to_start();
  REQUIRE(loads.size() == 1);
  CHECK(s.contains("y", t0)); // took the room the increment gave back
  CHECK_FALSE(s.write(value::make("k", "20"), ttl::never(), t0, note("put 20")));
  make_room(cfg, s); // y stored: z goes in
  s.complete_load("k", loads[0].second, std::string{"4"}, 1ms, t0);
  make_room(cfg, s, 3);
  CHECK(bytes_of(s, t0) == "20");
  auto items = s.take_writes();
  REQUIRE(items.size() == 7);
  CHECK(items[3].key() == "z");
  CHECK(items[4].bytes() == "5");
  CHECK(items[5].bytes() == "10");
  CHECK(items[6].bytes() == "20");
  s.writes_done(seqs_of(items), caf::none, t0);
  CHECK(*a == 5);
  CHECK(answered.got ==
        std::vector<std::string>{"other", "j", "y", "z", "put 10", "put 20"});
}

TEST_CASE(
  "under write-back what waited behind a compute joins the line in order and stays "
  "in order when another compute of the key loads on its turn",
  "[compute][write-back]") {
  auto cfg = write_back(1);
  answer<int64_t> a, c; // these outlive the shard, whose destructor fails what waits
  write_answers answered;
  auto note = [&](std::string what) { return answered.note(std::move(what)); };
  shard_state s{cfg};
  CHECK_FALSE(s.write(value::make("other", "o"), ttl::never(), t0, note("other")));
  a.run(s, t0, inc()); // k is absent: it loads, and what follows waits behind it
  CHECK_FALSE(s.write_erase("k", t0, note("erase")));
  c.run(s, t0, inc());
  for (auto v : {"4", "5", "6"})
    CHECK_FALSE(s.write(value::make("k", v), ttl::never(), t0, note(v)));
  CHECK_FALSE(s.write(value::make("x", "x"), ttl::never(), t0, note("x"))); // parked
  auto loads = s.take_loads_to_start();
  REQUIRE(loads.size() == 1);
  s.complete_load("k", loads[0].second, std::string{"1"}, 1ms, t0);
  make_room(cfg, s, 4); // x, 2, the erase; then c's turn: k is absent, it loads
  loads = s.take_loads_to_start();
  REQUIRE(loads.size() == 1);
  CHECK_FALSE(c.got);
  s.complete_load("k", loads[0].second,
                  caf::expected<std::string>{make_error(errc::not_found, "no row")}, 1ms,
                  t0);
  make_room(cfg, s, 4);
  CHECK(bytes_of(s, t0) == "6");
  auto items = s.take_writes();
  REQUIRE(items.size() == 8);
  std::vector<std::string> stored;
  for (auto& item : items)
    stored.push_back(item.erase ? "-" : std::string{item.bytes()});
  CHECK(stored == std::vector<std::string>{"o", "x", "2", "-", "1", "4", "5", "6"});
  s.writes_done(seqs_of(items), caf::none, t0);
  CHECK(*a == 2);
  CHECK(*c == 1);
  CHECK(answered.got == std::vector<std::string>{"other", "x", "erase", "4", "5", "6"});
}

TEST_CASE("a put with dependencies waits behind a compute that loads and a later put "
          "drops them",
          "[compute][events]") {
  shard_options cfg;
  cfg.read_through = true;
  shard_state s{cfg};
  answer<int64_t> a;
  answer<caf::unit_t> with_deps, plain;
  a.run(s, t0, inc());
  auto loads = s.take_loads_to_start();
  REQUIRE(loads.size() == 1);
  with_deps.run(s, t0,
                shard_ops::put_with_deps<dependencies>{
                  value::make("k", "10"), ttl::never(), dependencies{}.on_events({"e"})});
  CHECK_FALSE(with_deps.got); // before, it went in at once and the increment made it 11
  s.complete_load("k", loads[0].second, std::string{"4"}, 1ms, t0);
  CHECK(*a == 5);
  REQUIRE(with_deps.ok());
  CHECK(bytes_of(s, t0) == "10");
  s.invalidate_dependents({"e"}, invalidation_cause::event, t0);
  CHECK_FALSE(s.get("k", t0)); // its dependency was recorded
  // A plain put queued behind a compute replaces the entry's dependencies,
  // as one that did not wait does.
  a.got.reset();
  a.run(s, t0, inc());
  loads = s.take_loads_to_start();
  REQUIRE(loads.size() == 1);
  with_deps.got.reset();
  with_deps.run(s, t0,
                shard_ops::put_with_deps<dependencies>{
                  value::make("k", "20"), ttl::never(), dependencies{}.on_events({"e"})});
  plain.run(s, t0, shard_ops::put{value::make("k", "30"), ttl::never()});
  s.complete_load("k", loads[0].second, std::string{"4"}, 1ms, t0);
  CHECK(*a == 5);
  REQUIRE(with_deps.ok());
  REQUIRE(plain.ok());
  CHECK(bytes_of(s, t0) == "30");
  s.invalidate_dependents({"e"}, invalidation_cause::event, t0);
  CHECK(bytes_of(s, t0) == "30"); // before, the put kept the event's link
}

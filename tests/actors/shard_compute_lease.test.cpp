// The shard's atomic read-modify-write under a lapsed read lease
// (shard_compute.cpp, shard_loading.cpp, shard_lease.cpp): a compute builds only on a
// value it may trust, or fails and changes nothing.
#include <catch2/catch.hpp>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "actors/compute_ops.hpp"
#include "actors/read_lease.hpp"
#include "actors/shard_state.hpp"
#include "support/compute_answers.hpp"
#include "support/load_readers.hpp"
#include "support/times.hpp"
#include <karlton/messages/errors.hpp>

using namespace karlton;
using namespace std::chrono_literals;
using karlton::test::at;
using karlton::test::t0;
using namespace karlton::test;

TEST_CASE("a compute whose loaded value is gone before it runs fails and stores nothing",
          "[compute][lease]") {
  // Under a lapse that clears, each look empties the shard: it fails at once.
  // Under one that caps, a load slower than the cap arrives expired. Before, it
  // loaded twice, then computed from "absent" and wrote 1 over the store's 41.
  auto repair_ttl = GENERATE(0s, 10s);
  auto lease = std::make_shared<read_lease>(repair_ttl);
  shard_options cfg;
  cfg.read_through = true;
  cfg.writes = write_mode::write_through;
  cfg.lease.changes = lease;
  shard_state s{cfg};
  lease->extend_to(at(1000ms));
  answer<int64_t> a;
  auto now = at(2000ms);
  a.run(s, now, inc());
  int loads = 0;
  for (; loads < 3 && !a.got; ++loads) {
    auto started = s.take_loads_to_start();
    REQUIRE(started.size() == 1);
    now += 11s;
    s.complete_load("k", started[0].second, std::string{"41"}, 11s, now);
  }
  REQUIRE(a.got);
  REQUIRE_FALSE(a.ok());
  CHECK(a.got->error() == errc::overloaded);
  CHECK(s.take_writes().empty());
  CHECK(loads == (repair_ttl > 0s ? 2 : 0)); // loading cannot help a clearing lapse
}

TEST_CASE("a compute under a lapse that withholds hits fails at once and changes nothing",
          "[compute][lease][rule7]") {
  // The cluster's lease under repair-ttl: the shard keeps what it holds, capped,
  // and may not trust it until the lease holds again. Computing on it would
  // build on what another node may have changed unheard.
  auto read_through = GENERATE(true, false);
  auto lease = std::make_shared<read_lease>(10s, lapsed_hits::withheld);
  shard_options cfg;
  cfg.read_through = read_through;
  cfg.lease = lease;
  shard_state s{cfg};
  REQUIRE_FALSE(s.put(value::make("k", "41"), ttl::never(), t0));
  lease->extend_to(at(1000ms));
  answer<int64_t> a;
  a.run(s, at(2000ms), inc());
  REQUIRE(a.got);
  REQUIRE_FALSE(a.ok());
  CHECK(a.got->error() == errc::overloaded);
  CHECK(s.take_loads_to_start().empty());
  lease->extend_to(at(100s)); // held again: it counts on
  CHECK(bytes_of(s, at(3000ms)) == "41");
  CHECK(*answer<int64_t>{}.run(s, at(3000ms), inc()) == 42);
}

TEST_CASE("a put or erase in line behind a compute goes in under a lapse that withholds "
          "hits",
          "[compute][lease][rule7]") {
  // It needs no value: only the compute ahead of it fails.
  auto lease = std::make_shared<read_lease>(10s, lapsed_hits::withheld);
  shard_options cfg;
  cfg.read_through = true;
  cfg.lease = lease;
  shard_state s{cfg};
  lease->extend_to(at(1000ms));
  answer<int64_t> a;
  a.run(s, t0, inc()); // loads k
  write_answers answered;
  CHECK_FALSE(s.write(value::make("k", "P"), ttl::never(), t0, answered.note("put")));
  SECTION("a put") {
    test::finish_the_load(s, "k", std::string{"41"}, at(2000ms)); // lapsed meanwhile
    REQUIRE(a.got);
    REQUIRE_FALSE(a.ok());
    CHECK(a.got->error() == errc::overloaded);
    CHECK(answered.got == std::vector<std::string>{"put"});
    lease->extend_to(at(100s));
    CHECK(bytes_of(s, at(3000ms)) == "P");
  }
  SECTION("an erase, which answers as contains: not cached") {
    // Before, it answered from the withheld value it found: 1 after EXISTS 0.
    std::optional<caf::expected<bool>> erased;
    CHECK_FALSE(s.write_erase("k", t0, [&](caf::expected<bool> r) { erased = r; }));
    test::finish_the_load(s, "k", std::string{"41"}, at(2000ms));
    REQUIRE(erased);
    REQUIRE(*erased);
    CHECK_FALSE(**erased);
    lease->extend_to(at(100s));
    CHECK_FALSE(s.get("k", at(3000ms))); // gone all the same
  }
}

namespace {

// A write-through shard with a loader under the change feed's lease, which
// lapsed at 1 s with a repair-ttl of 10 s, holding k = 1 put at t0 with `t`.
struct capped_shard {
  std::shared_ptr<read_lease> lease = std::make_shared<read_lease>(10s);
  shard_state s;
  explicit capped_shard(ttl t = ttl::never(),
                        write_mode writes = write_mode::write_through,
                        caf::timespan negative_ttl = {})
    : s{[&] {
        shard_options cfg;
        cfg.read_through = true;
        cfg.writes = writes;
        cfg.negative_ttl = negative_ttl;
        cfg.lease.changes = lease;
        return cfg;
      }()} {
    lease->extend_to(at(1000ms));
    REQUIRE_FALSE(s.put(value::make("k", "1"), t, t0));
  }
  // Lets the compute's write-through put go in, and returns what it stored.
  std::string stored(time_point now) {
    auto writes = s.take_writes();
    REQUIRE(writes.size() == 1);
    s.writes_done(seqs_of(writes), caf::none, now);
    return std::string{writes[0].bytes()};
  }
};

} // namespace

TEST_CASE(
  "a compute under a lapse that caps builds on a value it loaded, not the cached one",
  "[compute][lease]") {
  // The change feed's lease under repair-ttl: hits go on, capped, but another
  // writer may have changed the row unheard. Before, the increment built on the
  // cached 1 and stored 2 over the store's 41.
  capped_shard c;
  auto now = at(2000ms); // lapsed: the cached 1 is still served, capped
  CHECK(bytes_of(c.s, now) == "1");
  answer<int64_t> a;
  a.run(c.s, now, inc());
  CHECK_FALSE(a.got);
  finish_the_load(c.s, "k", std::string{"41"}, now);
  CHECK_FALSE(a.got); // at the store
  CHECK(c.stored(now) == "42");
  REQUIRE(a.ok());
  CHECK(*a == 42);
  // Once the lease holds again, what the cache holds is trusted: no load.
  c.lease->extend_to(at(100s));
  answer<int64_t> b;
  b.run(c.s, at(3000ms), inc());
  CHECK(c.s.take_loads_to_start().empty());
  CHECK(c.stored(at(3000ms)) == "43");
  CHECK(*b == 43);
}

TEST_CASE(
  "a compute that reloads under a lapse that caps keeps the cached entry's expiry",
  "[compute][lease]") {
  // The reload's entry gets the cap (11 s); the counter's own 3 s stays. A
  // window counter must not outlive its window because the feed went deaf.
  capped_shard c{ttl::after(3s)};
  answer<int64_t> a;
  a.run(c.s, at(2000ms), inc());
  finish_the_load(c.s, "k", std::string{"41"}, at(2000ms));
  CHECK(c.stored(at(2000ms)) == "42");
  REQUIRE(a.ok());
  CHECK(c.s.ttl_of("k", at(2000ms)).left == 1s); // 9 s before
}

TEST_CASE(
  "a compute whose load a repair voids loads again rather than build on the cache",
  "[compute][lease]") {
  // The voided load installs nothing and the distrusted 1 stays in the
  // table: before, the compute then built on it and stored 2.
  capped_shard c;
  answer<int64_t> a;
  a.run(c.s, at(2000ms), inc());
  auto started = c.s.take_loads_to_start();
  REQUIRE(started.size() == 1);
  c.s.cap_ttl(at(2500ms), 10s); // the feed's repair while the load is out
  c.s.complete_load("k", started[0].second, std::string{"41"}, 1ms, at(2500ms));
  CHECK_FALSE(a.got);
  CHECK(c.s.take_writes().empty());
  finish_the_load(c.s, "k", std::string{"41"}, at(2600ms)); // the second load
  CHECK(c.stored(at(2600ms)) == "42");
  CHECK(*a == 42);
}

TEST_CASE("a compute that reloads and keeps the value keeps the cached entry's expiry",
          "[compute][lease]") {
  capped_shard c{ttl::after(3s)};
  answer<bool> a;
  a.run(c.s, at(2000ms),
        shard_ops::compare_and_set<key_op>{"k", std::string{"nope"}, std::string{"x"},
                                           ttl::cache_default()});
  finish_the_load(c.s, "k", std::string{"41"}, at(2000ms));
  REQUIRE(a.ok());
  CHECK_FALSE(*a);
  CHECK(c.s.ttl_of("k", at(2000ms)).left == 1s); // 9 s before
}

TEST_CASE("a compute under a lapse that caps takes a row gone from the store as absent",
          "[compute][lease]") {
  capped_shard c;
  answer<int64_t> a;
  a.run(c.s, at(2000ms), inc(5));
  finish_the_load(c.s, "k", caf::expected<std::string>{make_error(errc::not_found, "")},
                  at(2000ms));
  CHECK(c.stored(at(2000ms)) == "5"); // not 6: the cached 1 is gone with the row
  CHECK(*a == 5);
}

TEST_CASE("a compute under a lapse that caps loads past a remembered 'no such key'",
          "[compute][lease]") {
  // Remembered before the row was inserted unheard, it may be as stale as a
  // value: the compute loads.
  capped_shard c{ttl::never(), write_mode::write_through, 5s};
  REQUIRE(c.s.erase("k", t0));
  reader r;
  CHECK_FALSE(r.read(c.s, "k", at(2000ms)));
  finish_the_load(c.s, "k", caf::expected<std::string>{make_error(errc::not_found, "")},
                  at(2000ms));
  CHECK(r.read(c.s, "k", at(2000ms))); // remembered: answered at once
  answer<int64_t> a;
  a.run(c.s, at(2000ms), inc());
  CHECK_FALSE(a.got); // before: 1 at once, over the row
  finish_the_load(c.s, "k", std::string{"41"}, at(2000ms));
  CHECK(c.stored(at(2000ms)) == "42");
  CHECK(*a == 42);
}

TEST_CASE("a compute under a lapse that caps fails at once on a remembered store failure",
          "[compute][lease]") {
  // Each compute would otherwise ask the store, failing, again.
  capped_shard c{ttl::never(), write_mode::write_through, 5s};
  answer<int64_t> a;
  a.run(c.s, at(2000ms), inc());
  fail_the_load(c.s, "k", errc::store_failure, at(2000ms));
  REQUIRE(a.got);
  CHECK(a.got->error() == errc::store_failure);
  answer<int64_t> b;
  b.run(c.s, at(2100ms), inc());
  REQUIRE(b.got);
  CHECK(b.got->error() == errc::store_failure);
  CHECK(c.s.take_loads_to_start().empty());
  CHECK(c.s.take_writes().empty());
}

TEST_CASE(
  "a compute under a lapse that caps builds on the cached value without a write mode",
  "[compute][lease]") {
  // Its result stays in the cache, capped like a put's: nothing to protect
  // in the store, and a reload would undo the cache's own puts.
  capped_shard c{ttl::never(), write_mode::none};
  REQUIRE_FALSE(c.s.put(value::make("k", "50"), ttl::never(), at(2000ms)));
  answer<int64_t> a;
  a.run(c.s, at(2000ms), inc());
  REQUIRE(a.ok()); // at once: no load
  CHECK(*a == 51);
  CHECK(c.s.take_loads_to_start().empty());
}

TEST_CASE("a compute under a lapse that caps fails in a shard without a loader",
          "[compute][lease]") {
  // Nothing to load the current value from: the cached one may be stale. (A
  // fed cache always has a loader: its store; a shard may be set up without.)
  auto lease = std::make_shared<read_lease>(10s);
  shard_options cfg;
  cfg.writes = write_mode::write_through;
  cfg.lease.changes = lease;
  shard_state s{cfg};
  lease->extend_to(at(1000ms));
  REQUIRE_FALSE(s.put(value::make("k", "1"), ttl::never(), t0));
  answer<int64_t> a;
  a.run(s, at(2000ms), inc());
  REQUIRE(a.got);
  REQUIRE_FALSE(a.ok());
  CHECK(a.got->error() == errc::overloaded);
  CHECK(bytes_of(s, at(2000ms)) == "1"); // changed nothing
  CHECK(s.take_writes().empty());
  lease->extend_to(at(100s));
  answer<int64_t> b;
  b.run(s, at(3000ms), inc());
  s.writes_done(seqs_of(s.take_writes()), caf::none, at(3000ms));
  CHECK(*b == 2);
}

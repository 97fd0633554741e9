// The shard's atomic read-modify-write (shard_compute.cpp) on the plain state,
// with explicit times: every write mode, TTLs, loads, failures, set_ttl.
#include <catch2/catch.hpp>

#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "actors/compute_ops.hpp"
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

TEST_CASE("increment counts from absent, and an increment keeps the entry's TTL",
          "[compute]") {
  shard_options cfg;
  cfg.default_ttl = ttl::after(100s);
  shard_state s{cfg};
  answer<int64_t> a;
  a.run(s, t0, inc(5, ttl::after(10s)));
  REQUIRE(a.ok());
  CHECK(*a == 5);
  CHECK(s.ttl_of("k", t0).left == 10s); // a new entry gets new_entry's TTL
  CHECK(*answer<int64_t>{}.run(s, at(4000ms), inc(-2)) == 3);
  CHECK(s.ttl_of("k", at(4000ms)).left == 6s); // kept, not renewed
  CHECK(bytes_of(s, at(9999ms)) == "3");
  CHECK_FALSE(s.get("k", at(10000ms)));
}

TEST_CASE("an increment the store holds back keeps the entry's expiry",
          "[compute][write-through]") {
  // A write-through increment installs when the store answers: a TTL
  // counted from the compute pushed the expiry later by the store's time,
  // every time (a counter under steady increments never expired).
  auto ignore = [](caf::expected<bool>) {};
  shard_options cfg;
  cfg.writes = write_mode::write_through;
  shard_state s{cfg};
  REQUIRE_FALSE(s.write(value::make("k", "1"), ttl::after(60s), t0, ignore));
  s.writes_done(seqs_of(s.take_writes()), caf::none, t0);
  answer<int64_t> a;
  a.run(s, t0, inc());
  CHECK_FALSE(a.got); // at the store
  s.writes_done(seqs_of(s.take_writes()), caf::none, at(5000ms));
  CHECK(*a == 2);
  CHECK(s.ttl_of("k", at(5000ms)).left == 55s);
}

TEST_CASE("compute with a lifetime replaces the expiry", "[compute]") {
  shard_state s{shard_options{}};
  REQUIRE_FALSE(s.put(value::make("k", "v"), ttl::after(1s), t0));
  answer<computed> a;
  a.run(s, t0, shard_ops::compute<key_op>{"k", [](const value& cur) {
                                            return compute_result::put(
                                              std::string{cur.bytes()} + "!",
                                              ttl::never());
                                          }});
  REQUIRE(a.ok());
  CHECK((*a).before.bytes() == "v");
  CHECK((*a).after.bytes() == "v!");
  CHECK(s.ttl_of("k", at(5000ms)).state == remaining_ttl::never_expires);
}

TEST_CASE("a compute on an expired entry sees it absent", "[compute]") {
  shard_state s{shard_options{}};
  REQUIRE_FALSE(s.put(value::make("k", "41"), ttl::after(1s), t0));
  CHECK(*answer<int64_t>{}.run(s, at(1000ms), inc()) == 1);
  CHECK(s.stats().expired == 1);
}

TEST_CASE("'abc' and INT64_MAX+1 give not_an_integer and leave the value", "[compute]") {
  shard_state s{shard_options{}};
  for (std::string bad : {"abc", "007", "-0", " 1", "1 ", "+1", ""}) {
    REQUIRE_FALSE(s.put(value::make("k", bad), ttl::never(), t0));
    answer<int64_t> a;
    a.run(s, t0, inc());
    REQUIRE(a.got);
    CHECK(a.got->error() == errc::not_an_integer);
    CHECK(bytes_of(s, t0) == bad);
  }
  auto max = std::to_string(std::numeric_limits<int64_t>::max());
  REQUIRE_FALSE(s.put(value::make("k", max), ttl::never(), t0));
  CHECK(answer<int64_t>{}.run(s, t0, inc()).got->error() == errc::not_an_integer);
  CHECK(bytes_of(s, t0) == max);
  REQUIRE_FALSE(s.put(value::make("k", "-9223372036854775808"), ttl::never(), t0));
  CHECK(answer<int64_t>{}.run(s, t0, inc(-1)).got->error() == errc::not_an_integer);
  CHECK(*answer<int64_t>{}.run(s, t0, inc(1)) == std::numeric_limits<int64_t>::min() + 1);
}

TEST_CASE("a throwing compute fails with compute_failed and the shard keeps serving",
          "[compute]") {
  shard_state s{shard_options{}};
  REQUIRE_FALSE(s.put(value::make("k", "v"), ttl::never(), t0));
  answer<computed> a;
  a.run(s, t0, shard_ops::compute<key_op>{"k", [](const value&) -> compute_result {
                                            throw std::runtime_error("boom");
                                          }});
  REQUIRE(a.got);
  CHECK(a.got->error() == errc::compute_failed);
  CHECK(bytes_of(s, t0) == "v");
  REQUIRE_FALSE(s.put(value::make("k2", "w"), ttl::never(), t0)); // still serving
  CHECK(bytes_of(s, t0, "k2") == "w");
}

TEST_CASE("a compute_refusal thrown without an error fails with compute_failed",
          "[compute]") {
  shard_state s{shard_options{}};
  answer<computed> a;
  a.run(s, t0, shard_ops::compute<key_op>{"k", [](const value&) -> compute_result {
                                            throw compute_refusal{};
                                          }});
  REQUIRE(a.got);
  REQUIRE_FALSE(*a.got);
  CHECK(a.got->error() == errc::compute_failed); // before: an empty error
}

TEST_CASE("computes count neither hits nor misses, as Redis's INCR does", "[compute]") {
  shard_options cfg;
  cfg.read_through = true;
  shard_state s{cfg};
  answer<int64_t> first;
  first.run(s, t0, inc()); // not cached: loads
  s.complete_load("k", s.take_loads_to_start().at(0).second, std::string{"41"}, 1ms, t0);
  REQUIRE(first.ok());
  for (int i = 0; i < 4; ++i)
    REQUIRE(answer<int64_t>{}.run(s, t0, inc()).ok());
  CHECK(s.stats().misses == 0); // before: 1, and a counter's hit rate 0
  CHECK(s.stats().hits == 0);
  CHECK(bytes_of(s, t0) == "46");
}

TEST_CASE("compare_and_set stores only on a match, nullopt meaning absent or erase",
          "[compute]") {
  shard_state s{shard_options{}};
  auto cas = [&](std::optional<std::string> expected,
                 std::optional<std::string> desired) {
    answer<bool> a;
    a.run(s, t0,
          shard_ops::compare_and_set<key_op>{"k", expected, desired, ttl::never()});
    return *a;
  };
  CHECK(cas(std::nullopt, "a"));       // absent: set
  CHECK_FALSE(cas(std::nullopt, "b")); // not absent any more
  CHECK(bytes_of(s, t0) == "a");
  CHECK_FALSE(cas("x", "b"));
  CHECK(cas("a", "b"));
  CHECK(bytes_of(s, t0) == "b");
  CHECK(cas("b", std::nullopt)); // erase
  CHECK_FALSE(s.get("k", t0));
}

TEST_CASE("merge stores the given bytes, then the function's, nullopt erases",
          "[compute]") {
  shard_state s{shard_options{}};
  auto append = [](std::string_view old, std::string_view given) {
    return std::optional<std::string>{std::string{old} + std::string{given}};
  };
  answer<computed> a;
  a.run(s, t0, shard_ops::merge<key_op>{"k", "ab", append, ttl::never()});
  CHECK(bytes_of(s, t0) == "ab");
  a.run(s, t0, shard_ops::merge<key_op>{"k", "cd", append, ttl::never()});
  CHECK(bytes_of(s, t0) == "abcd");
  a.run(s, t0,
        shard_ops::merge<key_op>{"k", "",
                                 [](auto, auto) { return std::optional<std::string>{}; },
                                 ttl::never()});
  CHECK_FALSE(s.get("k", t0));
}

TEST_CASE("increment keeps dependencies: invalidate_tag still removes the counter",
          "[compute]") {
  shard_state s{shard_options{}};
  REQUIRE_FALSE(
    s.put(value::make("k", "1"), ttl::never(), t0, dependencies{}.on_keys({"tag"})));
  CHECK(*answer<int64_t>{}.run(s, t0, inc()) == 2);
  CHECK(s.invalidate_dependents({"tag"}, invalidation_cause::tag, t0).removed == 1);
  CHECK_FALSE(s.get("k", t0));
}

TEST_CASE("a counter stored then evicted from a read-through cache continues from the "
          "store's value, and the function runs exactly once when it waited for a load",
          "[compute]") {
  shard_options cfg;
  cfg.read_through = true;
  shard_state s{cfg};
  int runs = 0;
  answer<computed> a;
  a.run(s, t0, shard_ops::compute<key_op>{"k", [&](const value& cur) {
                                            ++runs;
                                            return compute_result::put(
                                              std::string{cur.bytes()} + "+1");
                                          }});
  CHECK_FALSE(a.got); // waiting for the load
  CHECK(runs == 0);
  auto loads = s.take_loads_to_start();
  REQUIRE(loads.size() == 1);
  s.complete_load("k", loads[0].second, std::string{"41"}, 1ms, t0);
  REQUIRE(a.ok());
  CHECK(runs == 1);
  CHECK(bytes_of(s, t0) == "41+1");
}

TEST_CASE("a compute's put during a load voids the load", "[compute]") {
  shard_options cfg;
  cfg.read_through = true;
  cfg.refresh_after = 1s;
  shard_state s{cfg};
  REQUIRE_FALSE(s.put(value::make("k", "1"), ttl::never(), t0));
  auto ignore = [](caf::expected<value>) {};
  REQUIRE(s.get_or_load("k", test::table_hash("k"), at(2000ms), ignore)); // refreshes
  auto loads = s.take_loads_to_start();
  REQUIRE(loads.size() == 1);
  CHECK(*answer<int64_t>{}.run(s, at(2000ms), inc()) == 2);
  s.complete_load("k", loads[0].second, std::string{"1"}, 1ms, at(2001ms));
  CHECK(bytes_of(s, at(2001ms)) == "2");
  CHECK(s.stats().loads_voided == 1);
}

TEST_CASE("a compute parked under max-dirty keeps per-key order",
          "[compute][write-back]") {
  shard_options cfg;
  cfg.writes = write_mode::write_back;
  cfg.budget = std::make_shared<dirty_budget>(1);
  shard_state s{cfg};
  auto ignore = [](caf::expected<bool>) {};
  CHECK_FALSE(
    s.write(value::make("other", "x"), ttl::never(), t0, ignore));        // budget full
  CHECK_FALSE(s.write(value::make("k", "10"), ttl::never(), t0, ignore)); // parked
  answer<int64_t> a;
  a.run(s, t0, inc());
  CHECK_FALSE(a.got);
  CHECK_FALSE(s.get("k", t0)); // not even the parked put is in yet
  cfg.budget->release(1);
  s.retry_parked(t0); // the put goes in; the compute waits for room again
  CHECK(bytes_of(s, t0) == "10");
  CHECK_FALSE(a.got);
  cfg.budget->release(1);
  s.retry_parked(t0);
  CHECK(bytes_of(s, t0) == "11"); // it saw the put parked before it
  auto items = s.take_writes();
  REQUIRE(items.size() == 3);
  CHECK(items[2].bytes() == "11");
  s.writes_done(seqs_of(items), caf::none, t0);
  CHECK(*a == 11);
}

TEST_CASE("a parked compute's erase keeps its place before a later put of the key",
          "[compute][write-back]") {
  // GETDEL k, then SET k new, with max-dirty full: k must end as "new".
  // The answer outlives the shard, whose destructor fails what it still holds.
  answer<computed> a;
  shard_options cfg;
  cfg.writes = write_mode::write_back;
  cfg.budget = std::make_shared<dirty_budget>(1);
  shard_state s{cfg};
  auto ignore = [](caf::expected<bool>) {};
  CHECK_FALSE(
    s.write(value::make("other", "x"), ttl::never(), t0, ignore));         // budget full
  CHECK_FALSE(s.write(value::make("k", "old"), ttl::never(), t0, ignore)); // parked
  a.run(s, t0, shard_ops::compute<key_op>{"k", [](const value&) {
                                            return compute_result::erase();
                                          }});
  CHECK_FALSE(a.got); // parked behind the put
  CHECK_FALSE(s.write(value::make("k", "new"), ttl::never(), t0, ignore)); // parked after
  for (int i = 0; i < 4; ++i) { // room for one write at a time
    cfg.budget->release(1);
    s.retry_parked(t0);
  }
  CHECK(bytes_of(s, t0) == "new"); // failed before the fix: the erase came last
}

TEST_CASE("set_ttl: persist / shorten / missing / <= 0 misses at once", "[compute]") {
  shard_state s{shard_options{}};
  auto set_ttl = [&s](std::optional<caf::timespan> left) {
    answer<remaining_ttl> a;
    a.run(s, t0, shard_ops::set_ttl<key_op>{"k", left});
    REQUIRE(a.ok()); // at once: nothing of the key waits
    return *a;
  };
  REQUIRE_FALSE(s.put(value::make("k", "v"), ttl::after(10s), t0));
  auto before = set_ttl(std::nullopt); // persist
  CHECK(before.state == remaining_ttl::expires);
  CHECK(s.ttl_of("k", t0).state == remaining_ttl::never_expires);
  CHECK(set_ttl(2s).state == remaining_ttl::never_expires);
  CHECK(s.ttl_of("k", t0).left == 2s);
  CHECK(s.remove_expired(at(2000ms)) == 1); // the timer knows the new expiry
  CHECK(set_ttl(2s).state == remaining_ttl::missing);
  REQUIRE_FALSE(s.put(value::make("k", "v"), ttl::never(), t0));
  CHECK(set_ttl(0s).state == remaining_ttl::never_expires);
  CHECK_FALSE(s.get("k", t0));
  CHECK(s.stats().expired == 1);       // the timer's
  CHECK(s.stats().invalidations == 1); // EXPIRE 0 deletes, as in Redis's stats
}

TEST_CASE("a parked compute's turn keeps another shard's claim on the room",
          "[compute][write-back]") {
  // Two shards share max-dirty 1. While shard a runs its parked compute (it
  // holds the one unit), shard b finds no room and parks a write. The unit
  // the compute gives back must not take b's "waiting" mark (release did),
  // or the flusher's next release sees no waiter and b sleeps until its
  // room wait. Before the fix the compute gave its unit back with release
  // before it ran, so here b found room; between threads b's mark was lost.
  shard_options cfg;
  cfg.writes = write_mode::write_back;
  cfg.budget = std::make_shared<dirty_budget>(1);
  cfg.room_wait = 10s;
  // Declared before the shards: a shard's destructor fails what still waits,
  // which writes into `got`.
  answer<computed> got;
  shard_state a{cfg}, b{cfg};
  auto ignore = [](caf::expected<bool>) {};
  CHECK_FALSE(a.write(value::make("other", "x"), ttl::never(), t0, ignore)); // full
  CHECK_FALSE(a.write(value::make("k", "10"), ttl::never(), t0, ignore));    // parked
  // `got` parks behind the put of its key.
  got.run(a, t0,
          shard_ops::compute<key_op>{"k", [&](const value&) {
                                       CHECK_FALSE(b.write(value::make("b", "1"),
                                                           ttl::never(), t0, ignore));
                                       return compute_result::put("v");
                                     }});
  CHECK_FALSE(got.got);
  CHECK(cfg.budget->release(1)); // "other" stored: a was waiting
  a.retry_parked(t0);            // the put of k goes in, the compute waits
  CHECK_FALSE(got.got);
  CHECK(cfg.budget->release(1)); // k stored
  a.retry_parked(t0);            // the compute runs, b parks meanwhile
  CHECK(bytes_of(a, t0) == "v");
  CHECK_FALSE(b.contains("b", t0));
  // The flusher stores a's write: b must be told there is room.
  CHECK(cfg.budget->release(1)); // failed before the fix: the compute took b's mark
  b.retry_parked(t0);
  CHECK(bytes_of(b, t0, "b") == "1");
}

TEST_CASE("a compute whose reload fails under stale-if-error fails, and never counts "
          "from absent",
          "[compute][stale-if-error]") {
  shard_options cfg;
  cfg.read_through = true;
  cfg.default_ttl = ttl::after(10s);
  cfg.stale_if_error = 5s;
  cfg.negative_ttl = 1s;
  shard_state s{cfg};
  REQUIRE_FALSE(s.put(value::make("k", "100"), ttl::cache_default(), t0));
  // Expired, kept for stale-if-error; the increment loads first, and the
  // load fails: its waiters get the stale "100".
  answer<int64_t> a;
  a.run(s, at(11s), inc());
  CHECK_FALSE(a.got);
  fail_the_load(s, "k", errc::store_failure, at(11s));
  // Before, the compute then found no live entry and wrote "1".
  REQUIRE(a.got);
  REQUIRE_FALSE(*a.got);
  CHECK(a.got->error() == errc::store_failure);
  // The remembered failure answers the next one at once, the same way.
  answer<int64_t> b;
  b.run(s, at(11s), inc());
  REQUIRE(b.got);
  REQUIRE_FALSE(*b.got);
  CHECK(b.got->error() == errc::store_failure);
  CHECK(s.take_loads_to_start().empty());
  // Nothing was written: the stale fallback is still "100".
  auto stale =
    s.get_or_load("k", test::table_hash("k"), at(11s), [](caf::expected<value>) {});
  REQUIRE(stale);
  REQUIRE(*stale);
  CHECK((*stale)->bytes() == "100");
}

TEST_CASE("a compute whose loaded value is invalidated twice fails and stores nothing",
          "[compute]") {
  shard_options cfg;
  cfg.read_through = true;
  cfg.writes = write_mode::write_through;
  shard_state s{cfg};
  answer<int64_t> a;
  a.run(s, t0, inc());
  for (int loads = 0; loads < 2; ++loads) {
    auto started = s.take_loads_to_start();
    REQUIRE(started.size() == 1);
    s.invalidate({"k"}, t0, true); // another node's write: the load is voided
    s.complete_load("k", started[0].second, std::string{"41"}, 1ms, t0);
  }
  REQUIRE(a.got);
  REQUIRE_FALSE(a.ok());
  CHECK(a.got->error() == errc::overloaded); // before: 1 over the store's 41
  CHECK(s.take_writes().empty());
}

TEST_CASE("a compute of a value too large to cache fails with value_too_large",
          "[compute]") {
  // Not "lost, retry": a retry loads it again, and the result could not go in.
  shard_options cfg;
  cfg.read_through = true;
  cfg.writes = write_mode::write_through;
  cfg.max_value_bytes = 4;
  shard_state s{cfg};
  answer<int64_t> a;
  a.run(s, t0, inc());
  auto started = s.take_loads_to_start();
  REQUIRE(started.size() == 1);
  s.complete_load("k", started[0].second, std::string{"123456"}, 1ms, t0);
  REQUIRE(a.got);
  REQUIRE_FALSE(a.ok());
  CHECK(a.got->error() == errc::value_too_large);
  CHECK(s.take_loads_to_start().empty());
  CHECK(s.take_writes().empty());
}

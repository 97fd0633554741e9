// Failed loads in the shard's plain state: negative caching (a failed load's
// error remembered for negative-ttl) and stale-if-error (an expired value
// served when its reload fails), event by event.
#include <catch2/catch.hpp>

#include <memory>
#include <string>
#include <vector>

#include "actors/shard_state.hpp"
#include "support/compute_answers.hpp"
#include "support/load_readers.hpp"
#include "support/times.hpp"
#include <karlton/messages/errors.hpp>

using namespace karlton;
using namespace std::chrono_literals;
using karlton::test::at;
using karlton::test::fill;
using karlton::test::loading;
using karlton::test::reader;
using karlton::test::refreshing_after;
using karlton::test::t0;
using karlton::test::table_hash;

namespace {

shard_options negative_caching(caf::timespan negative_ttl) {
  auto cfg = loading(10s);
  cfg.negative_ttl = negative_ttl;
  return cfg;
}

// Reads `key` at `now`, which must start a load, and fails that load with
// `code` (not_found: the store has no such row).
void fail_load(shard_state& s, reader& r, const std::string& key, time_point now,
               errc code = errc::not_found) {
  REQUIRE_FALSE(r.read(s, key, now));
  auto started = s.take_loads_to_start();
  REQUIRE(started.size() == 1);
  s.complete_load(key, started[0].second, make_error(code, "no row or down"), 1ms, now);
}

} // namespace

TEST_CASE("negative caching answers a failed load's error until negative-ttl runs out",
          "[loading][negative]") {
  shard_state s{negative_caching(1s)};
  reader a, b;
  fail_load(s, a, "k", t0);
  CHECK(a.got == std::vector<std::string>{"error:not_found"});
  CHECK(b.read(s, "k", at(999ms))); // answered at once, no load
  CHECK(b.got == std::vector<std::string>{"error:not_found"});
  CHECK(s.take_loads_to_start().empty());
  CHECK(s.stats().negative_hits == 1);
  CHECK(s.stats().loads == 1);
  CHECK_FALSE(b.read(s, "k", at(1000ms))); // ran out: loads again
  CHECK(s.take_loads_to_start().size() == 1);
}

TEST_CASE("a put, erase or clear forgets a remembered load failure at once",
          "[loading][negative][rule1]") {
  reader r;
  SECTION("put") {
    shard_state s{negative_caching(1s)};
    fail_load(s, r, "k", t0);
    REQUIRE_FALSE(s.put(value::make("k", "written"), ttl::after(1ms), at(1ms)));
    CHECK(r.read(s, "k", at(1ms)));
    CHECK(r.got.back() == "written");
    CHECK_FALSE(r.read(s, "k", at(2ms))); // expired, and the failure was forgotten
    CHECK(s.take_loads_to_start().size() == 1);
  }
  SECTION("erase") {
    shard_state s{negative_caching(1s)};
    fail_load(s, r, "k", t0);
    CHECK_FALSE(s.erase("k", at(1ms)));
    CHECK_FALSE(r.read(s, "k", at(2ms))); // loads again
    CHECK(s.take_loads_to_start().size() == 1);
  }
  SECTION("clear") {
    shard_state s{negative_caching(1s)};
    fail_load(s, r, "k", t0);
    s.clear();
    CHECK_FALSE(r.read(s, "k", at(2ms)));
    CHECK(s.take_loads_to_start().size() == 1);
  }
}

TEST_CASE("a tag invalidation forgets a remembered failure of the entries it removes",
          "[loading][negative][events]") {
  auto cfg = negative_caching(1s);
  cfg.refresh_after = 1s;
  shard_state s{cfg};
  reader r;
  REQUIRE_FALSE(s.put(value::make("k", "v1"), ttl::cache_default(), t0,
                      dependencies{}.on_keys({"tag"})));
  CHECK(r.read(s, "k", at(2s))); // served, and a refresh starts
  auto refresh = s.take_loads_to_start();
  REQUIRE(refresh.size() == 1);
  s.complete_load("k", refresh[0].second, make_error(errc::store_failure, "down"), 1ms,
                  at(2s));
  CHECK(s.invalidate_dependents({"tag"}, invalidation_cause::tag, at(2s)).removed == 1);
  // Before, the remembered failure answered for the removed key until it ran out.
  CHECK_FALSE(r.read(s, "k", at(2001ms)));
  CHECK(s.take_loads_to_start().size() == 1);
}

TEST_CASE("a voided load's failure is not remembered", "[loading][negative][rule1]") {
  shard_state s{negative_caching(1s)};
  reader a, b;
  a.read(s, "k", t0);
  auto first = s.take_loads_to_start().at(0).second;
  s.erase("k", t0); // the failure that comes back belongs to before the erase
  s.complete_load("k", first, make_error(errc::store_failure, "db down"), 1ms, t0);
  CHECK(a.got == std::vector<std::string>{"error:store_failure"});
  CHECK_FALSE(b.read(s, "k", at(1ms)));
  CHECK(s.take_loads_to_start().size() == 1);
  CHECK(s.stats().negative_hits == 0);
}

TEST_CASE("remembered failures are reclaimed by the expiry timer's deadline",
          "[loading][negative]") {
  shard_state s{negative_caching(1s)};
  reader r;
  fail_load(s, r, "k", t0);
  REQUIRE(s.next_expiry());
  CHECK(*s.next_expiry() == at(1s)); // no entry: the failure's deadline
  s.remove_expired(at(1s));
  CHECK_FALSE(s.next_expiry());
}

TEST_CASE("no reload starts while a failed reload is remembered",
          "[loading][negative][refresh]") {
  auto cfg = refreshing_after(1s);
  cfg.negative_ttl = 2s;
  shard_state s{cfg};
  reader r;
  fill(s, r, "k", "v1", 1ms);
  r.read(s, "k", at(1s));
  auto reload = s.take_loads_to_start().at(0).second;
  s.complete_load("k", reload, make_error(errc::store_failure, "db down"), 1ms, at(1s));
  CHECK(r.read(s, "k", at(2s))); // the old value, and no new reload
  CHECK(r.got.back() == "v1");
  CHECK(s.take_loads_to_start().empty());
  CHECK(r.read(s, "k", at(3s))); // the failure ran out: reload again
  CHECK(s.take_loads_to_start().size() == 1);
}

namespace {

// TTL 10 s; expired entries are kept 5 s for stale-if-error.
shard_options stale_if_error(caf::timespan negative_ttl = caf::timespan{0}) {
  auto cfg = loading(10s);
  cfg.stale_if_error = 5s;
  cfg.negative_ttl = negative_ttl;
  return cfg;
}

} // namespace

TEST_CASE("stale-if-error: a failed load of an expired entry gives the waiters the old "
          "value within the window",
          "[loading][stale-if-error]") {
  shard_state s{stale_if_error()};
  reader r, a, b;
  fill(s, r, "k", "v1", 1ms);
  // Expired: neither get, contains nor ttl_of sees it.
  CHECK_FALSE(s.get("k", at(11s)));
  CHECK_FALSE(s.contains("k", at(11s)));
  CHECK_FALSE(s.ttl_of("k", at(11s)).found());
  CHECK_FALSE(a.read(s, "k", at(11s))); // a miss that loads...
  CHECK_FALSE(b.read(s, "k", at(11s))); // ...and one that joins
  auto load = s.take_loads_to_start();
  REQUIRE(load.size() == 1);
  s.complete_load("k", load[0].second, make_error(errc::store_failure, "db down"), 1ms,
                  at(12s));
  CHECK(a.got == std::vector<std::string>{"v1"});
  CHECK(b.got == a.got);
  CHECK(s.stats().stale_served == 2);
  // At expiry + window still; after it, the error.
  reader c, d;
  fail_load(s, c, "k", at(15s), errc::store_failure);
  CHECK(c.got == std::vector<std::string>{"v1"});
  fail_load(s, d, "k", at(15001ms), errc::store_failure);
  CHECK(d.got == std::vector<std::string>{"error:store_failure"});
}

TEST_CASE("stale-if-error: a store that has no such key is an answer, not an error: the "
          "kept value goes",
          "[loading][stale-if-error]") {
  shard_state s{stale_if_error()};
  reader r, a, b;
  fill(s, r, "k", "v1", 1ms);
  fail_load(s, a, "k", at(11s)); // not_found: the row was deleted
  CHECK(a.got == std::vector<std::string>{"error:not_found"});
  CHECK(s.size() == 0);
  CHECK(s.stats().stale_served == 0);
  fail_load(s, b, "k", at(12s), errc::store_failure); // nothing stale left to serve
  CHECK(b.got == std::vector<std::string>{"error:store_failure"});
}

TEST_CASE("stale-if-error: the timer reclaims an expired entry after its window",
          "[loading][stale-if-error]") {
  shard_state s{stale_if_error()};
  reader r;
  fill(s, r, "k", "v1", 1ms);
  REQUIRE(s.next_expiry());
  CHECK(*s.next_expiry() == at(10s)); // the expiry, told to trackers
  CHECK(s.remove_expired(at(10s)) == 0);
  REQUIRE(s.next_expiry());
  CHECK(*s.next_expiry() == at(15001ms));
  CHECK(s.remove_expired(at(15s)) == 0);
  CHECK(s.size() == 1);
  CHECK(s.remove_expired(at(15001ms)) == 1);
  CHECK(s.size() == 0);
  CHECK(s.stats().expired == 1);
}

TEST_CASE("stale-if-error: a successful load replaces the expired entry",
          "[loading][stale-if-error]") {
  shard_state s{stale_if_error()};
  reader r, a;
  fill(s, r, "k", "v1", 1ms);
  CHECK_FALSE(a.read(s, "k", at(11s)));
  s.complete_load("k", s.take_loads_to_start().at(0).second, std::string{"v2"}, 1ms,
                  at(11s));
  CHECK(a.got == std::vector<std::string>{"v2"});
  CHECK(s.contains("k", at(12s)));
  CHECK(s.stats().stale_served == 0);
}

TEST_CASE("an expired entry replaced before the timer reclaims it counts as expired",
          "[loading][stale-if-error]") {
  std::vector<removal_cause> causes;
  auto listening = [&](shard_options cfg) {
    cfg.on_removal = [&](const value&, removal_cause why) { causes.push_back(why); };
    return cfg;
  };
  SECTION("kept for stale-if-error, then loaded") {
    shard_state s{listening(stale_if_error())};
    reader r, a;
    fill(s, r, "k", "v1", 1ms);
    CHECK_FALSE(a.read(s, "k", at(11s)));
    s.complete_load("k", s.take_loads_to_start().at(0).second, std::string{"v2"}, 1ms,
                    at(11s));
    CHECK(s.stats().expired == 1); // before: 0, and 1 without stale-if-error
  }
  SECTION("put over before the timer ran") {
    shard_state s{listening(loading(10s))};
    REQUIRE_FALSE(s.put(value::make("k", "v1"), ttl::after(1ms), t0));
    REQUIRE_FALSE(s.put(value::make("k", "v2"), ttl::after(1s), at(5ms)));
    CHECK(s.stats().expired == 1);
  }
  CHECK(causes == std::vector<removal_cause>{removal_cause::expired});
}

TEST_CASE("stale-if-error: an erase forgets the old value (rule 1)",
          "[loading][stale-if-error][rule1]") {
  shard_state s{stale_if_error()};
  reader r, a;
  fill(s, r, "k", "v1", 1ms);
  s.erase("k", at(11s));
  fail_load(s, a, "k", at(11s));
  CHECK(a.got == std::vector<std::string>{"error:not_found"});
}

TEST_CASE("stale-if-error with negative caching serves the old value at once",
          "[loading][stale-if-error][negative]") {
  shard_state s{stale_if_error(1s)};
  reader r, a, b;
  fill(s, r, "k", "v1", 1ms);
  fail_load(s, a, "k", at(11s), errc::store_failure);
  CHECK(b.read(s, "k", at(11500ms))); // the failure is remembered: no load
  CHECK(b.got == std::vector<std::string>{"v1"});
  CHECK(s.take_loads_to_start().empty());
  auto st = s.stats();
  CHECK(st.negative_hits == 1);
  CHECK(st.stale_served == 2);
}

TEST_CASE("a refresh the store answers not_found drops the entry it was to replace",
          "[loading][negative][refresh]") {
  shard_state s{refreshing_after(1s)};
  reader r, a;
  fill(s, r, "k", "v1", 1ms); // TTL 10 s
  r.read(s, "k", at(2s));     // a hit that starts a refresh
  auto reload = s.take_loads_to_start().at(0).second;
  s.complete_load("k", reload, make_error(errc::not_found, "row deleted"), 1ms, at(2s));
  // Before, the deleted row was served until its TTL ran out, and the
  // remembered not_found kept every refresh away.
  CHECK_FALSE(s.get("k", at(3s)));
  CHECK(s.size() == 0);
  CHECK_FALSE(a.read(s, "k", at(3s))); // a miss: it loads
  CHECK(s.take_loads_to_start().size() == 1);
}

TEST_CASE("a TTL-capping repair forgets remembered load failures and the values kept "
          "for stale-if-error",
          "[loading][negative][repair]") {
  shard_state s{stale_if_error(30s)};
  reader r, a, b, c;
  fail_load(s, a, "gone", t0); // not_found, remembered for 30 s
  fill(s, r, "k", "v1", 1ms);  // expires at 10 s, kept until 15 s
  REQUIRE_FALSE(s.put(value::make("later", "v2"), ttl::after(20s), t0));
  // The repair stands for invalidations that went missing: either of these
  // keys may have been written meanwhile.
  s.cap_ttl(at(11s), 100ms);
  // Before, the remembered failure was answered for its 30 s...
  CHECK_FALSE(b.read(s, "gone", at(11200ms)));
  CHECK(s.take_loads_to_start().size() == 1);
  // ...and a failed reload served the value the missed write replaced.
  fail_load(s, c, "k", at(11200ms), errc::store_failure);
  CHECK(c.got == std::vector<std::string>{"error:store_failure"});
  // So did one the repair capped: expired at 11.1 s, it was kept for 5 s more.
  reader d;
  fail_load(s, d, "later", at(11200ms), errc::store_failure);
  CHECK(d.got == std::vector<std::string>{"error:store_failure"});
}

TEST_CASE("a lapsed read lease forgets remembered load failures",
          "[loading][negative][lease]") {
  auto lease = std::make_shared<read_lease>();
  auto cfg = negative_caching(30s);
  cfg.lease = lease;
  shard_state s{cfg};
  reader a, b;
  fail_load(s, a, "k", t0);
  lease->limit_to(at(1ms));
  // Before, a shard holding only failures cleared nothing and kept
  // answering them while its hits were stopped.
  CHECK_FALSE(b.read(s, "k", at(5ms)));
  CHECK(s.take_loads_to_start().size() == 1);
}

TEST_CASE("a compute loads again when its load found no such key, but may be stale",
          "[loading][compute][rule1]") {
  // A load's not_found is an answer a compute counts from, as "absent". Not if
  // an invalidation voided the load (it may have read before the write it
  // stands for), nor if it took longer than a lapse's cap: like a value the
  // table could not keep, it loads once more. Before, INCR wrote 1 over the
  // store's row at once.
  auto not_found = [](shard_state& s, time_point now) {
    auto loads = s.take_loads_to_start();
    REQUIRE(loads.size() == 1);
    s.complete_load("k", loads[0].second,
                    caf::expected<std::string>{make_error(errc::not_found, "none")}, 11s,
                    now);
  };
  auto cfg = loading(60s);
  cfg.writes = write_mode::write_through;
  SECTION("voided by an invalidation: the second load's answer counts") {
    shard_state s{cfg};
    test::answer<int64_t> a;
    a.run(s, t0, test::inc());
    s.invalidate({"k"}, t0); // another node's write, committed during the load
    not_found(s, t0);
    CHECK_FALSE(a.got);
    CHECK(s.take_writes().empty());
    not_found(s, t0);   // read after that write: absent indeed
    CHECK_FALSE(a.got); // its write is at the store
    auto writes = s.take_writes();
    REQUIRE(writes.size() == 1);
    CHECK(writes[0].bytes() == "1");
    s.writes_done(test::seqs_of(writes), caf::none, t0);
    REQUIRE(a.ok());
    CHECK(*a == 1);
  }
  SECTION("slower than a lapse's cap, twice: the compute fails, writing nothing") {
    auto feed = std::make_shared<read_lease>(10s);
    feed->extend_to(at(1000ms));
    cfg.lease.changes = feed;
    shard_state s{cfg};
    test::answer<int64_t> a;
    auto now = at(2000ms);
    a.run(s, now, test::inc());
    not_found(s, now += 11s);
    CHECK_FALSE(a.got);
    not_found(s, now += 11s);
    REQUIRE(a.got);
    REQUIRE_FALSE(a.ok());
    CHECK(a.got->error() == errc::overloaded);
    CHECK(s.take_writes().empty());
  }
}

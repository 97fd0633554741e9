// Read-through loading in the shard's plain state, event by event: every
// order of load start, invalidation, write, load completion and a second
// reader, checked against rule 1 (a voided load is never installed nor given
// to a later call) and rule 2 (one load per key in flight).
#include <catch2/catch.hpp>

#include <memory>
#include <string>
#include <vector>

#include "actors/shard_state.hpp"
#include "support/load_readers.hpp"
#include "support/times.hpp"
#include <karlton/messages/errors.hpp>

using namespace karlton;
using namespace std::chrono_literals;
using karlton::test::at;
using karlton::test::fill;
using karlton::test::hit_starting_reload;
using karlton::test::loading;
using karlton::test::reader;
using karlton::test::refreshing_after;
using karlton::test::t0;
using karlton::test::table_hash;

TEST_CASE("concurrent misses on one key start one load, and all get its result",
          "[loading][rule2]") {
  shard_state s{loading()};
  reader a, b, c;
  CHECK_FALSE(a.read(s, "k", t0));
  CHECK_FALSE(b.read(s, "k", t0));
  CHECK_FALSE(c.read(s, "k", t0));
  auto started = s.take_loads_to_start();
  REQUIRE(started.size() == 1);
  s.complete_load("k", started[0].second, std::string{"v1"}, 50ms, t0);
  CHECK(a.got == std::vector<std::string>{"v1"});
  CHECK(b.got == a.got);
  CHECK(c.got == a.got);
  reader d;
  CHECK(d.read(s, "k", t0)); // now a hit
  CHECK(d.got == a.got);
  auto st = s.stats();
  CHECK(st.loads == 1);
  CHECK(st.coalesced == 2);
  CHECK(st.loads_finished == 1);
  CHECK(st.load_time_ns == 50'000'000);
  CHECK(st.mean_load_ms() == Approx(50.0));
}

TEST_CASE("a failed load gives every waiter the error and caches nothing", "[loading]") {
  shard_state s{loading()};
  reader a, b;
  a.read(s, "k", t0);
  b.read(s, "k", t0);
  auto started = s.take_loads_to_start();
  s.complete_load("k", started[0].second, make_error(errc::store_failure, "db down"), 5ms,
                  t0);
  CHECK(a.got == std::vector<std::string>{"error:store_failure"});
  CHECK(b.got == a.got);
  CHECK(s.size() == 0);
  CHECK(s.stats().load_failures == 1);
  reader c;
  CHECK_FALSE(c.read(s, "k", t0)); // nothing cached: a new load
  CHECK(s.take_loads_to_start().size() == 1);
}

TEST_CASE("rule 1: start, invalidate, complete, then a reader: the load is not installed",
          "[loading][rule1]") {
  shard_state s{loading()};
  reader a, b;
  a.read(s, "k", t0);
  auto first = s.take_loads_to_start().at(0).second;
  CHECK_FALSE(s.erase("k", t0)); // nothing cached yet, but the load is voided
  s.complete_load("k", first, std::string{"old"}, 1ms, t0);
  CHECK(a.got == std::vector<std::string>{"old"}); // a's read overlapped the write
  CHECK(s.size() == 0);
  CHECK_FALSE(b.read(s, "k", t0)); // b starts anew
  auto second = s.take_loads_to_start();
  REQUIRE(second.size() == 1);
  CHECK(second[0].second != first);
  CHECK(s.stats().loads_voided == 1);
}

TEST_CASE(
  "rule 1: start, invalidate, a reader, then completion: the reader waits for the "
  "new load",
  "[loading][rule1]") {
  shard_state s{loading()};
  reader a, b;
  a.read(s, "k", t0);
  auto first = s.take_loads_to_start().at(0).second;
  s.erase("k", t0);
  CHECK_FALSE(b.read(s, "k", t0));
  auto second = s.take_loads_to_start();
  REQUIRE(second.size() == 1); // rule 2: one current load, the new one
  s.complete_load("k", first, std::string{"old"}, 1ms, t0);
  CHECK(a.got == std::vector<std::string>{"old"});
  CHECK(b.got.empty()); // b never receives the voided result
  CHECK(s.size() == 0);
  s.complete_load("k", second[0].second, std::string{"new"}, 1ms, t0);
  CHECK(b.got == std::vector<std::string>{"new"});
  reader c;
  CHECK(c.read(s, "k", t0));
  CHECK(c.got == std::vector<std::string>{"new"});
}

TEST_CASE("rule 1: start, put, complete: the put wins", "[loading][rule1]") {
  shard_state s{loading()};
  reader a, b;
  a.read(s, "k", t0);
  auto first = s.take_loads_to_start().at(0).second;
  REQUIRE_FALSE(s.put(value::make("k", "written"), ttl::cache_default(), t0));
  s.complete_load("k", first, std::string{"loaded-before"}, 1ms, t0);
  CHECK(b.read(s, "k", t0));
  CHECK(b.got == std::vector<std::string>{"written"});
  CHECK(s.stats().loads_voided == 1);
}

TEST_CASE("rule 1: a reader that joined before the invalidation gets the old result, one "
          "after it does not",
          "[loading][rule1]") {
  shard_state s{loading()};
  reader a, b, c;
  a.read(s, "k", t0);
  b.read(s, "k", t0); // joins
  auto first = s.take_loads_to_start().at(0).second;
  s.erase("k", t0);
  c.read(s, "k", t0); // after: a new load
  auto second = s.take_loads_to_start();
  REQUIRE(second.size() == 1);
  s.complete_load("k", first, std::string{"old"}, 1ms, t0);
  CHECK(a.got == std::vector<std::string>{"old"});
  CHECK(b.got == std::vector<std::string>{"old"});
  CHECK(c.got.empty());
  s.complete_load("k", second[0].second, std::string{"new"}, 1ms, t0);
  CHECK(c.got == std::vector<std::string>{"new"});
}

TEST_CASE("rule 1: clear voids every load in flight", "[loading][rule1]") {
  shard_state s{loading()};
  reader a, b;
  a.read(s, "x", t0);
  b.read(s, "y", t0);
  auto started = s.take_loads_to_start();
  REQUIRE(started.size() == 2);
  s.clear();
  for (auto& [key, id] : started)
    s.complete_load(key, id, std::string{"old"}, 1ms, t0);
  CHECK(s.size() == 0);
  CHECK(s.stats().loads_voided == 2);
}

TEST_CASE("rule 1: a TTL-capping repair voids every load in flight", "[loading][rule1]") {
  shard_state s{loading(10s)};
  reader a;
  a.read(s, "x", t0);
  auto started = s.take_loads_to_start();
  REQUIRE(started.size() == 1);
  s.cap_ttl(at(1ms), 100ms); // the repair-ttl repair, while the load runs
  s.complete_load("x", started[0].second, std::string{"old"}, 1ms, at(2ms));
  // The load read the store before the repair: it must not live 10 s.
  CHECK_FALSE(s.contains("x", at(2ms)));
  CHECK(s.stats().loads_voided == 1);
  CHECK(a.got == std::vector<std::string>{"old"}); // its waiter overlapped the repair
}

TEST_CASE("rule 1: a load completing after a later one is ignored", "[loading][rule1]") {
  shard_state s{loading()};
  reader a, b;
  a.read(s, "k", t0);
  auto first = s.take_loads_to_start().at(0).second;
  s.erase("k", t0);
  b.read(s, "k", t0);
  auto second = s.take_loads_to_start().at(0).second;
  s.complete_load("k", second, std::string{"new"}, 1ms, t0);
  s.complete_load("k", first, std::string{"old"}, 1ms, t0); // late and voided
  reader c;
  CHECK(c.read(s, "k", t0));
  CHECK(c.got == std::vector<std::string>{"new"});
}

TEST_CASE("get_or_load without a loader is an invalid_option error",
          "[loading][errors]") {
  shard_state s{shard_options{}};
  reader a;
  CHECK(a.read(s, "k", t0));
  CHECK(a.got == std::vector<std::string>{"error:invalid_option"});
}

TEST_CASE("a stopping shard fails the waiters of its loads", "[loading][shutdown]") {
  reader a;
  {
    shard_state s{loading()};
    a.read(s, "k", t0);
  }
  CHECK(a.got == std::vector<std::string>{"error:shut_down"});
}

TEST_CASE("refresh-ahead serves the old value and reloads once in the background",
          "[loading][refresh]") {
  shard_state s{refreshing_after(1s)};
  reader r;
  fill(s, r, "k", "v1", 1ms);
  CHECK(r.read(s, "k", at(500ms))); // young: no reload
  CHECK(s.take_loads_to_start().empty());
  CHECK(r.read(s, "k", at(1500ms))); // old: served at once...
  CHECK(r.got.back() == "v1");
  auto reload = s.take_loads_to_start(); // ...and one reload starts
  REQUIRE(reload.size() == 1);
  CHECK(r.read(s, "k", at(1600ms))); // coalesced: no second reload
  CHECK(s.take_loads_to_start().empty());
  s.complete_load("k", reload[0].second, std::string{"v2"}, 1ms, at(1700ms));
  CHECK(r.read(s, "k", at(1800ms)));
  CHECK(r.got.back() == "v2");
  CHECK(s.stats().refreshes == 1);
}

TEST_CASE("stale-if-error: a failed reload keeps the old value until it expires",
          "[loading][refresh]") {
  shard_state s{refreshing_after(1s)};
  reader r;
  fill(s, r, "k", "v1", 1ms);
  r.read(s, "k", at(2s));
  auto reload = s.take_loads_to_start().at(0).second;
  s.complete_load("k", reload, make_error(errc::store_failure, "db down"), 1ms, at(2s));
  CHECK(r.read(s, "k", at(3s)));
  CHECK(r.got.back() == "v1");
  auto st = s.stats();
  CHECK(st.load_failures == 1);
  CHECK(st.stale_served == 1);
  s.take_loads_to_start();              // that read started another reload; let it hang
  CHECK_FALSE(r.read(s, "k", at(10s))); // hard expiry: a miss that waits
}

TEST_CASE("refresh-ahead: a failed reload is tried again refresh-after later, not on "
          "every hit",
          "[loading][refresh]") {
  shard_state s{refreshing_after(1s)};
  reader r;
  fill(s, r, "k", "v1", 1ms);
  auto reload = hit_starting_reload(s, r, "k", at(2s));
  s.complete_load("k", reload, make_error(errc::store_failure, "db down"), 1ms, at(2s));
  for (auto t : {2001ms, 2500ms, 2999ms}) { // before: every hit reloaded
    CHECK(r.read(s, "k", at(t)));
    CHECK(r.got.back() == "v1");
    CHECK(s.take_loads_to_start().empty());
  }
  CHECK(r.read(s, "k", at(3s)));
  CHECK(s.take_loads_to_start().size() == 1);
  CHECK(s.stats().refreshes == 2);
}

TEST_CASE("refresh-ahead: a reload too large to cache drops the value it was to replace",
          "[loading][refresh]") {
  auto cfg = refreshing_after(1s);
  cfg.max_value_bytes = 4;
  shard_state s{cfg};
  reader r;
  fill(s, r, "k", "old", 1ms);
  auto reload = hit_starting_reload(s, r, "k", at(2s));
  s.complete_load("k", reload, std::string{"newer and larger"}, 1ms, at(2s));
  // Before, "old" was served on until its TTL (for good under `never`), a reload a hit.
  CHECK_FALSE(s.contains("k", at(2s)));
  CHECK_FALSE(r.read(s, "k", at(2s))); // a miss: loads
  CHECK(s.stats().rejected == 1);
  CHECK(s.stats().invalidations == 1);
}

TEST_CASE("refresh-ahead: a key removed by a TTL of 0 (EXPIRE 0) while its reload runs "
          "stays removed",
          "[loading][refresh][rule1]") {
  shard_state s{refreshing_after(1s)};
  reader r;
  fill(s, r, "k", "v1", 1ms);
  auto reload = hit_starting_reload(s, r, "k", at(2s));
  auto before = s.set_ttl("k", caf::timespan{0}, at(2s), [](auto) {});
  REQUIRE(before);
  CHECK(s.stats().invalidations == 1);
  s.complete_load("k", reload, std::string{"v2"}, 1ms, at(2s));
  CHECK_FALSE(s.contains("k", at(2s))); // before: the reload put it back
  CHECK(s.stats().loads_voided == 1);
}

TEST_CASE("XFetch refreshes early with a probability that grows toward expiry",
          "[loading][xfetch]") {
  auto cfg = loading(10s);
  cfg.early_refresh = early_refresh_mode::xfetch;
  double u = 1.0;
  cfg.random = [&u] { return u; };
  shard_state s{cfg};
  reader r;
  fill(s, r, "k", "v", 100ms); // the load took 100 ms: delta
  u = std::exp(-10.0);         // -ln(U) = 10: refresh when now + 100 ms * 10 >= expiry
  CHECK(r.read(s, "k", at(8900ms)));
  CHECK(s.take_loads_to_start().empty()); // 8.9 s + 1 s < 10 s
  CHECK(r.read(s, "k", at(9000ms)));
  CHECK(s.take_loads_to_start().size() == 1); // 9 s + 1 s >= 10 s
  CHECK(r.got.back() == "v");                 // served at once
  CHECK(s.stats().early_refreshes == 1);
  u = 1.0; // -ln(1) = 0: never early, whatever the age
  shard_state fresh{cfg};
  reader q;
  fill(fresh, q, "k", "v", 100ms);
  CHECK(q.read(fresh, "k", at(9999ms)));
  CHECK(fresh.take_loads_to_start().empty());
}

TEST_CASE("XFetch refreshes early after a load faster than 1 ms", "[loading][xfetch]") {
  // Delta was whole milliseconds: a 400 us load (a local database) counted
  // as 0, and a delta of 0 never draws, so such entries never refreshed early.
  auto cfg = loading(10s);
  cfg.early_refresh = early_refresh_mode::xfetch;
  int draws = 0;
  cfg.random = [&draws] {
    ++draws;
    return std::exp(-10.0); // -ln(U) = 10: refresh when now + 4 ms >= expiry
  };
  shard_state s{cfg};
  reader r;
  fill(s, r, "k", "v", 400us);
  CHECK(r.read(s, "k", at(9995ms)));
  CHECK(s.take_loads_to_start().empty()); // 9.995 s + 4 ms < 10 s
  CHECK(draws == 1);
  // The next draw waits a quarter of delta (100 us), not a quarter of a ms.
  CHECK(r.read(s, "k", at(9995ms) + 50us));
  CHECK(draws == 1);
  CHECK(r.read(s, "k", at(9996ms)));
  CHECK(s.take_loads_to_start().size() == 1); // 9.996 s + 4 ms >= 10 s
  CHECK(s.stats().early_refreshes == 1);
}

TEST_CASE("the guide's naive mode expires early as a forced miss", "[loading][naive]") {
  auto cfg = loading(10s);
  cfg.early_refresh = early_refresh_mode::naive;
  cfg.beta = 1.0;
  double u = 0.5;
  cfg.random = [&u] { return u; };
  shard_state s{cfg};
  reader r;
  fill(s, r, "k", "v", 1ms);
  // Age 5 s of 10: p = 1 - exp(-0.5) = 0.39 < 0.5: still a hit.
  CHECK(r.read(s, "k", at(5s)));
  // Age 8 s: p = 1 - exp(-0.8) = 0.55 > 0.5: a miss that loads.
  CHECK_FALSE(r.read(s, "k", at(8s)));
  CHECK(s.take_loads_to_start().size() == 1);
  CHECK(s.stats().early_expirations == 1);
}

TEST_CASE("XFetch draws at most k times per delta however often the entry is read",
          "[loading][xfetch]") {
  auto cfg = loading(10s);
  cfg.early_refresh = early_refresh_mode::xfetch;
  int draws = 0;
  cfg.random = [&draws] {
    ++draws;
    return 1.0; // -ln(1) = 0: never fires, so every read may draw
  };
  shard_state s{cfg};
  reader r;
  fill(s, r, "k", "v", 100ms);
  // 10,000 reads 10 us apart within one delta (100 ms): draws at 0, 25, 50
  // and 75 ms only.
  for (int i = 0; i < 10'000; ++i)
    REQUIRE(r.read(s, "k", t0 + 5s + std::chrono::microseconds{10 * i}));
  CHECK(draws == static_cast<int>(xfetch_draws_per_delta));
  // Reads further apart than delta / k each draw, as in plain XFetch.
  draws = 0;
  for (int i = 0; i < 10; ++i)
    r.read(s, "k", at(6s + i * 30ms));
  CHECK(draws == 10);
}

TEST_CASE("XFetch refreshes at the same lead before expiry at any read rate",
          "[loading][xfetch]") {
  // The mean lead over 200 seeded entries, read every 50 us (2,000 reads per
  // delta) or every 5 ms (20). Drawing on every read put the fast readers'
  // lead near delta * (ln 2000 + 0.58) = 818 ms; with k = 4 draws per delta
  // both are near delta * (ln 4 + 0.58) = 196 ms.
  auto mean_lead_ms = [](std::chrono::microseconds read_every) {
    double total = 0;
    const int trials = 200;
    for (int seed = 1; seed <= trials; ++seed) {
      auto cfg = loading(2s);
      cfg.early_refresh = early_refresh_mode::xfetch;
      cfg.seed = static_cast<uint64_t>(seed);
      shard_state s{cfg};
      reader r;
      fill(s, r, "k", "v", 100ms); // expires at t0 + 2 s
      auto now = t0 + 800ms;
      while (now < t0 + 2s && s.take_loads_to_start().empty()) {
        r.read(s, "k", now);
        now += read_every;
      }
      auto refreshed_at = now - read_every;
      total += std::chrono::duration<double, std::milli>(t0 + 2s - refreshed_at).count();
    }
    return total / trials;
  };
  auto fast = mean_lead_ms(50us);
  auto slow = mean_lead_ms(5000us);
  CHECK(fast == Approx(196).margin(30));
  CHECK(slow == Approx(196).margin(30));
  CHECK(fast == Approx(slow).epsilon(0.15));
}

TEST_CASE("XFetch starts one refresh, and a miss at expiry joins it",
          "[loading][xfetch]") {
  auto cfg = loading(10s);
  cfg.early_refresh = early_refresh_mode::xfetch;
  cfg.random = [] { return std::exp(-1000.0); }; // every draw fires
  shard_state s{cfg};
  reader r;
  fill(s, r, "k", "v1", 100ms);
  for (int i = 0; i < 100; ++i) // 9.9 s to 9.999 s: drawing all along
    CHECK(r.read(s, "k", at(9900ms + i * 1ms)));
  auto refresh = s.take_loads_to_start();
  REQUIRE(refresh.size() == 1);
  reader late;
  CHECK_FALSE(late.read(s, "k", at(10s))); // expired: joins the refresh
  CHECK(s.take_loads_to_start().empty());
  s.complete_load("k", refresh[0].second, std::string{"v2"}, 100ms, at(10s));
  CHECK(late.got == std::vector<std::string>{"v2"});
  auto st = s.stats();
  CHECK(st.loads == 2);
  CHECK(st.early_refreshes == 1);
  CHECK(st.coalesced == 1);
}

// Load timeouts in the shard's plain state, on explicit times: a load that
// outlives `load_timeout` fails its waiters with `timeout`, leaves the table,
// and its late answer installs nothing. And the cap on loads: a hung loader
// gets at most max_loads_out of them, at most max_loads_queued wait, and
// further misses are refused with `overloaded`.
#include <catch2/catch.hpp>

#include <memory>
#include <string>
#include <vector>

#include "actors/load_table.hpp"
#include "actors/shard_state.hpp"
#include "support/times.hpp"
#include <karlton/messages/errors.hpp>

using namespace karlton;
using namespace std::chrono_literals;
using karlton::test::at;
using karlton::test::t0;
using karlton::test::table_hash;

namespace {

shard_options timing_out(caf::timespan limit) {
  shard_options cfg;
  cfg.read_through = true;
  cfg.default_ttl = ttl::after(10s);
  cfg.load_timeout = limit;
  return cfg;
}

// What each waiter was told: value bytes or "error:<code>".
struct answers {
  std::shared_ptr<std::vector<std::string>> log =
    std::make_shared<std::vector<std::string>>();
  load_waiter waiter() {
    return [log = log](caf::expected<value> r) {
      log->push_back(r ? std::string{r->bytes()}
                       : std::string{"error:"} +
                           to_string(static_cast<errc>(r.error().code())));
    };
  }
};

} // namespace

TEST_CASE("a load that outlives load-timeout fails its waiters and is forgotten",
          "[loading][load-timeout]") {
  shard_state s{timing_out(100ms)};
  answers a, b;
  REQUIRE_FALSE(s.get_or_load("k", table_hash("k"), t0, a.waiter()));
  REQUIRE_FALSE(s.get_or_load("k", table_hash("k"), at(50ms), b.waiter())); // joins
  auto started = s.take_loads_to_start();
  REQUIRE(started.size() == 1);
  CHECK(s.stats().loads_in_flight == 1);
  CHECK(s.stats().load_waiters == 2);
  // The shard's timer is armed for the load's deadline.
  REQUIRE(s.next_expiry());
  CHECK(*s.next_expiry() == at(100ms));
  s.remove_expired(at(99ms));
  CHECK(a.log->empty());
  s.remove_expired(at(100ms));
  CHECK(*a.log == std::vector<std::string>{"error:timeout"});
  CHECK(*b.log == std::vector<std::string>{"error:timeout"});
  auto st = s.stats();
  CHECK(st.load_timeouts == 1);
  CHECK(st.loads_in_flight == 0);
  CHECK(st.load_waiters == 0);
  CHECK_FALSE(s.next_expiry());
  // The late answer installs nothing and tells nobody.
  s.complete_load("k", started[0].second, std::string{"late"}, 1s, at(1s));
  CHECK_FALSE(s.get("k", at(1s)));
  CHECK(a.log->size() == 1);
  // Not remembered as a failure: the next miss loads again.
  answers c;
  REQUIRE_FALSE(s.get_or_load("k", table_hash("k"), at(1s), c.waiter()));
  auto again = s.take_loads_to_start();
  REQUIRE(again.size() == 1);
  s.complete_load("k", again[0].second, std::string{"v"}, 1ms, at(1s));
  CHECK(*c.log == std::vector<std::string>{"v"});
  CHECK(s.get("k", at(1s)).bytes() == "v");
}

TEST_CASE("a voided load times out too, and a finished one leaves no timeout",
          "[loading][load-timeout]") {
  shard_state s{timing_out(100ms)};
  answers a, b;
  REQUIRE_FALSE(s.get_or_load("voided", table_hash("voided"), t0, a.waiter()));
  REQUIRE_FALSE(s.get_or_load("done", table_hash("done"), t0, b.waiter()));
  auto started = s.take_loads_to_start();
  REQUIRE(started.size() == 2);
  REQUIRE_FALSE(s.erase("voided", at(10ms))); // voids the load in flight
  for (auto& [key, id] : started)
    if (key == "done") s.complete_load(key, id, std::string{"v"}, 1ms, at(20ms));
  CHECK(*b.log == std::vector<std::string>{"v"});
  s.remove_expired(at(100ms));
  CHECK(*a.log == std::vector<std::string>{"error:timeout"});
  CHECK(*b.log == std::vector<std::string>{"v"});
  CHECK(s.stats().load_timeouts == 1);
  CHECK(s.stats().loads_in_flight == 0);
}

TEST_CASE("without load-timeout a load waits for its loader", "[loading][load-timeout]") {
  shard_state s{timing_out(0s)};
  answers a;
  REQUIRE_FALSE(s.get_or_load("k", table_hash("k"), t0, a.waiter()));
  CHECK_FALSE(s.next_expiry());
  s.remove_expired(at(std::chrono::hours{24 * 365}));
  CHECK(a.log->empty());
  CHECK(s.stats().loads_in_flight == 1);
}

TEST_CASE("the load table expires many loads in bounded steps",
          "[loading][load-timeout]") {
  load_table t;
  for (int i = 0; i < 10; ++i)
    t.start("k" + std::to_string(i), load_waiter{[](caf::expected<value>) {}}, false,
            uint64_t(100 + i), 0);
  CHECK(t.waiters() == 10);
  CHECK(t.expire(104, 3).size() == 3); // at most 3 deadlines looked at
  CHECK(t.expire(104).size() == 2);
  CHECK(t.size() == 5);
  CHECK(t.next_deadline_ms() == uint64_t{105});
  CHECK(t.expire(1000).size() == 5);
  CHECK(t.size() == 0);
  CHECK(t.waiters() == 0);
}

TEST_CASE("loads that finish in time leave no deadlines behind",
          "[loading][load-timeout]") {
  // Otherwise every load of the last load-timeout (60 s by default) would
  // keep its deadline and key until the timer passed it.
  load_table t;
  for (uint64_t i = 0; i < 1000; ++i) {
    auto key = "k" + std::to_string(i);
    auto id = t.start(key, std::nullopt, false, 60'000 + i, i);
    REQUIRE(t.take_ready().size() == 1); // handed to the loader
    REQUIRE(t.finish(key, id));
  }
  CHECK_FALSE(t.next_deadline_ms());
  // One that hangs holds only its own (and those behind it) until it passes.
  auto hung = t.start("hung", std::nullopt, false, 70'000, 10'000);
  auto id = t.start("quick", std::nullopt, false, 70'001, 10'001);
  REQUIRE(t.take_ready().size() == 2);
  auto quick = t.finish("quick", id);
  REQUIRE(quick);
  CHECK(quick->started_ms == 10'001); // what its value is no older than
  CHECK(t.next_deadline_ms() == uint64_t{70'000});
  CHECK(t.expire(70'001).size() == 1);
  CHECK_FALSE(t.next_deadline_ms());
  CHECK_FALSE(t.finish("hung", hung)); // its late answer finds nothing
}

// The defaults of shard_options, which the runtime sets from its options:
// 2 x loader-concurrency (4 by default) out, 1024 queued.
constexpr size_t default_out = 8;
constexpr size_t default_queued = 1024;

TEST_CASE("a hung loader gets at most max-loads-out loads, 1024 more wait, the rest "
          "are refused",
          "[loading][load-timeout][load-cap]") {
  // Without the cap every distinct key started a load at once: all 5000 went
  // to the loader (and sat in its mailbox) and none was refused.
  shard_state s{timing_out(60s)};
  constexpr int keys = 5000;
  answers told;
  std::vector<std::pair<std::string, uint64_t>> handed_out; // never answered yet
  int refused = 0;
  for (int i = 0; i < keys; ++i) {
    auto k = "key-" + std::to_string(i);
    if (auto now = s.get_or_load(k, table_hash(k), at(std::chrono::milliseconds{i}),
                                 told.waiter())) {
      REQUIRE_FALSE(*now);
      CHECK(now->error() == errc::overloaded);
      ++refused;
    }
    for (auto& load : s.take_loads_to_start())
      handed_out.push_back(std::move(load));
    auto st = s.stats();
    REQUIRE(handed_out.size() <= default_out); // the loader never answers
    REQUIRE(st.loads_out == handed_out.size());
    REQUIRE(st.loads_queued <= default_queued);
    REQUIRE(st.loads_in_flight <= default_out + default_queued); // load entries
  }
  auto st = s.stats();
  CHECK(handed_out.size() == default_out);
  CHECK(st.loads_queued == default_queued);
  CHECK(refused == keys - int(default_out + default_queued));
  CHECK(st.loads_refused == uint64_t(refused));
  CHECK(st.loads == default_out + default_queued); // refused ones started nothing
  CHECK(st.load_waiters == default_out + default_queued);
  CHECK(told.log->empty()); // the refused were answered at once, not told
  // A caller of a key already loading joins it, full or not.
  answers joined;
  REQUIRE_FALSE(s.get_or_load("key-0", table_hash("key-0"), at(5s), joined.waiter()));
  CHECK(s.stats().coalesced == 1);
  // The loader comes back: each answer hands out the next queued load, oldest
  // first, until every accepted key is loaded.
  std::vector<std::string> loaded;
  while (!handed_out.empty()) {
    auto [key, id] = handed_out.front();
    handed_out.erase(handed_out.begin());
    s.complete_load(key, id, "v-" + key, 1ms, at(6s));
    loaded.push_back(key);
    for (auto& load : s.take_loads_to_start())
      handed_out.push_back(std::move(load));
    REQUIRE(handed_out.size() <= default_out);
  }
  REQUIRE(loaded.size() == default_out + default_queued);
  for (size_t i = 0; i < loaded.size(); ++i)
    CHECK(loaded[i] == "key-" + std::to_string(i));
  CHECK(told.log->size() == default_out + default_queued);
  CHECK(*joined.log == std::vector<std::string>{"v-key-0"});
  st = s.stats();
  CHECK(st.loads_in_flight == 0);
  CHECK(st.loads_out == 0);
  CHECK(st.loads_queued == 0);
  CHECK(st.load_waiters == 0);
  CHECK(s.get("key-1031", at(6s)).bytes() == "v-key-1031");
  // With room again, a new key loads.
  REQUIRE_FALSE(s.get_or_load("key-4999", table_hash("key-4999"), at(7s), told.waiter()));
  CHECK(s.take_loads_to_start().size() == 1);
}

TEST_CASE("queued loads time out at load-timeout, and timed-out loads make room",
          "[loading][load-timeout][load-cap]") {
  shard_state s{timing_out(100ms)};
  answers early, late;
  auto key = [](size_t i) { return "k" + std::to_string(i); };
  for (size_t i = 0; i < default_out; ++i)
    REQUIRE_FALSE(s.get_or_load(key(i), table_hash(key(i)), t0, early.waiter()));
  auto first = s.take_loads_to_start();
  REQUIRE(first.size() == default_out);
  for (size_t i = default_out; i < default_out + 10; ++i)
    REQUIRE_FALSE(s.get_or_load(key(i), table_hash(key(i)), at(50ms), late.waiter()));
  CHECK(s.take_loads_to_start().empty());
  CHECK(s.stats().loads_queued == 10);
  // The loads out time out; the oldest queued go out in their place.
  s.remove_expired(at(100ms));
  CHECK(early.log->size() == default_out);
  CHECK(late.log->empty());
  auto second = s.take_loads_to_start();
  REQUIRE(second.size() == default_out);
  CHECK(second.front().first == key(default_out));
  CHECK(s.stats().loads_out == default_out);
  CHECK(s.stats().loads_queued == 2);
  // 100 ms after they were queued, not after they went out, all time out:
  // the queued too, and their places in the queue go with them.
  s.remove_expired(at(150ms));
  CHECK(*late.log == std::vector<std::string>(10, "error:timeout"));
  auto st = s.stats();
  CHECK(st.load_timeouts == default_out + 10);
  CHECK(st.loads_in_flight == 0);
  CHECK(st.loads_out == 0);
  CHECK(st.loads_queued == 0);
  CHECK(s.take_loads_to_start().empty());
  // Late answers install nothing.
  for (auto& [k, id] : first)
    s.complete_load(k, id, std::string{"late"}, 1s, at(1s));
  CHECK_FALSE(s.get(key(0), at(1s)));
  CHECK(s.stats().loads_out == 0);
}

TEST_CASE("a queued load voided by a write still answers its waiters, uncached",
          "[loading][load-cap]") {
  shard_state s{timing_out(60s)};
  answers a;
  auto key = [](size_t i) { return "k" + std::to_string(i); };
  for (size_t i = 0; i <= default_out; ++i) // one more than go out
    REQUIRE_FALSE(s.get_or_load(key(i), table_hash(key(i)), t0, a.waiter()));
  auto out = s.take_loads_to_start();
  REQUIRE(out.size() == default_out);
  auto queued = key(default_out);
  REQUIRE_FALSE(s.erase(queued, at(1ms))); // voids the queued load (rule 1)
  s.complete_load(out[0].first, out[0].second, std::string{"v"}, 1ms, at(2ms));
  auto next = s.take_loads_to_start();
  REQUIRE(next.size() == 1);
  CHECK(next[0].first == queued);
  s.complete_load(next[0].first, next[0].second, std::string{"old"}, 1ms, at(3ms));
  CHECK(a.log->back() == "old");
  CHECK_FALSE(s.get(queued, at(3ms))); // not installed
  CHECK(s.stats().loads_voided == 1);
}

TEST_CASE("the load table hands out loads in start order within its limits",
          "[loading][load-cap]") {
  load_table t{load_table::limits{2, 3}};
  std::vector<uint64_t> ids;
  for (int i = 0; i < 5; ++i) {
    REQUIRE(t.has_room());
    ids.push_back(
      t.start("k" + std::to_string(i), std::nullopt, false, uint64_t(100 + i), i));
  }
  CHECK_FALSE(t.has_room());
  auto out = t.take_ready();
  REQUIRE(out.size() == 2);
  CHECK(out[0] == std::make_pair(std::string{"k0"}, ids[0]));
  CHECK(out[1] == std::make_pair(std::string{"k1"}, ids[1]));
  CHECK(t.take_ready().empty());
  CHECK(t.out() == 2);
  CHECK(t.queued() == 3);
  CHECK_FALSE(t.finish("k2", ids[2])); // queued: no answer is for it
  REQUIRE(t.finish("k1", ids[1]));
  CHECK(t.has_room());
  out = t.take_ready();
  REQUIRE(out.size() == 1);
  CHECK(out[0].first == "k2");
  // k0 and k2 (out) and k3 (queued) time out; k4 is next.
  CHECK(t.expire(103).size() == 3);
  CHECK(t.out() == 0);
  CHECK(t.queued() == 1);
  out = t.take_ready();
  REQUIRE(out.size() == 1);
  CHECK(out[0].first == "k4");
  CHECK(t.size() == 1);
  CHECK(t.out() == 1);
  CHECK(t.queued() == 0);
}

TEST_CASE("a background refresh starts only when a loader slot is idle, never taking a "
          "queued miss's place",
          "[loading][load-cap]") {
  // Before, a refresh took one of the queue's places like a miss: a loader
  // behind on refreshes (whose readers were served already) refused misses.
  auto cfg = timing_out(60s);
  cfg.refresh_after = 1s;
  cfg.max_loads_out = 2;
  cfg.max_loads_queued = 4;
  shard_state s{cfg};
  answers told;
  auto load_now = [&](const std::string& k, time_point when) {
    REQUIRE_FALSE(s.get_or_load(k, table_hash(k), when, told.waiter()));
    auto out = s.take_loads_to_start();
    REQUIRE(out.size() == 1);
    s.complete_load(k, out[0].second, "v-" + k, 1ms, when);
  };
  load_now("hot", t0);
  // Idle loader: a read past refresh-after is served and refreshes.
  auto hit = s.get_or_load("hot", table_hash("hot"), at(2s), told.waiter());
  REQUIRE(hit);
  REQUIRE(*hit);
  CHECK(s.stats().refreshes == 1);
  auto refresh = s.take_loads_to_start();
  REQUIRE(refresh.size() == 1);
  s.complete_load("hot", refresh[0].second, "v2", 1ms, at(2s));
  // Both slots busy with misses: the next stale read is served, no refresh.
  for (std::string k : {"a", "b"})
    REQUIRE_FALSE(s.get_or_load(k, table_hash(k), at(3s), told.waiter()));
  REQUIRE(s.take_loads_to_start().size() == 2);
  hit = s.get_or_load("hot", table_hash("hot"), at(4s), told.waiter());
  REQUIRE(hit);
  REQUIRE(*hit);
  CHECK((*hit)->bytes() == "v2");
  CHECK(s.stats().refreshes == 1);
  CHECK(s.stats().loads_queued == 0);
  CHECK(s.stats().loads_refused == 1); // the skipped refresh
  // All four places of the queue are still there for misses.
  for (std::string k : {"c", "d", "e", "f"})
    CHECK_FALSE(s.get_or_load(k, table_hash(k), at(4s), told.waiter()));
  CHECK(s.stats().loads_queued == 4);
  auto full = s.get_or_load("g", table_hash("g"), at(4s), told.waiter());
  REQUIRE(full);
  CHECK(full->error() == errc::overloaded);
}

TEST_CASE("a background refresh keeps the entry's dependencies: an event after it still "
          "removes the entry",
          "[loading][events]") {
  auto cfg = timing_out(60s);
  cfg.refresh_after = 1s;
  shard_state s{cfg};
  REQUIRE_FALSE(s.put(value::make("profile", "v1"), ttl::never(), t0,
                      dependencies{}.on_events({"user_updated"})));
  auto ignore = [](caf::expected<value>) {};
  REQUIRE(s.get_or_load("profile", table_hash("profile"), at(2s), ignore)); // refreshes
  auto loads = s.take_loads_to_start();
  REQUIRE(loads.size() == 1);
  s.complete_load("profile", loads[0].second, "v1-reloaded", 1ms, at(2s));
  REQUIRE(s.get("profile", at(2s)));
  // Before, the refresh's install dropped the links: the emit removed
  // nothing and the reloaded value was served until it expired.
  CHECK(s.invalidate_dependents({"user_updated"}, invalidation_cause::event, at(2s))
          .removed == 1);
  CHECK_FALSE(s.get("profile", at(2s)));
}

TEST_CASE("a refresh whose linked entry expired meanwhile installs nothing an event "
          "could miss",
          "[loading][events][rule1]") {
  auto cfg = timing_out(60s);
  cfg.refresh_after = 1s;
  shard_state s{cfg};
  REQUIRE_FALSE(s.put(value::make("profile", "v1"), ttl::after(2s), t0,
                      dependencies{}.on_events({"user_updated"})));
  auto ignore = [](caf::expected<value>) {};
  REQUIRE(s.get_or_load("profile", table_hash("profile"), at(1500ms), ignore));
  auto loads = s.take_loads_to_start(); // the refresh, reading the old row
  REQUIRE(loads.size() == 1);
  CHECK(s.remove_expired(at(2s)) == 1); // its links go with it
  // Before, the refresh stayed current: the emit found nothing to remove or
  // void, and the refresh then put back the old row without links, served
  // after the emit returned and missed by every emit after it.
  CHECK(s.invalidate_dependents({"user_updated"}, invalidation_cause::event, at(2s))
          .removed == 0);
  // A miss after the emit starts a load of its own: joined to the refresh,
  // it got the old row.
  CHECK_FALSE(s.get_or_load("profile", table_hash("profile"), at(2050ms), ignore));
  CHECK(s.take_loads_to_start().size() == 1);
  CHECK(s.stats().coalesced == 0);
  s.complete_load("profile", loads[0].second, "v1-read-before-the-event", 1ms,
                  at(2100ms));
  CHECK(s.stats().loads_voided == 1);
  CHECK_FALSE(s.get("profile", at(2100ms)));
}

TEST_CASE("finish tells when a load started whether it was voided or not", "[loading]") {
  // Under a read lease's capping lapse the value is capped from then.
  load_table t;
  auto a = t.start("a", std::nullopt, false, UINT64_MAX, 5);
  auto b = t.start("b", std::nullopt, false, UINT64_MAX, 7);
  CHECK(t.void_key("b"));
  CHECK(t.take_ready().size() == 2);
  auto fa = t.finish("a", a);
  REQUIRE(fa);
  CHECK(fa->installable);
  CHECK(fa->started_ms == 5);
  auto fb = t.finish("b", b);
  REQUIRE(fb);
  CHECK_FALSE(fb->installable);
  CHECK(fb->started_ms == 7);
}

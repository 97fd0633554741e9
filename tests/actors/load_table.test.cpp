// Load timeouts in the shard's plain state, on explicit times: a load that
// outlives `load_timeout` fails its waiters with `timeout`, leaves the table,
// and its late answer installs nothing.
#include <catch2/catch.hpp>

#include <memory>
#include <string>
#include <vector>

#include "actors/load_table.hpp"
#include "actors/shard_state.hpp"
#include "messages/errors.hpp"
#include "support/times.hpp"

using namespace karlton;
using namespace std::chrono_literals;
using karlton::test::at;
using karlton::test::t0;
using karlton::test::table_hash;

namespace {

shard_config timing_out(caf::timespan limit) {
  shard_config cfg;
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
  s.cleanup_expired(at(99ms));
  CHECK(a.log->empty());
  s.cleanup_expired(at(100ms));
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
  s.cleanup_expired(at(100ms));
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
  s.cleanup_expired(at(std::chrono::hours{24 * 365}));
  CHECK(a.log->empty());
  CHECK(s.stats().loads_in_flight == 1);
}

TEST_CASE("the load table expires many loads in bounded steps",
          "[loading][load-timeout]") {
  load_table t;
  for (int i = 0; i < 10; ++i)
    t.start("k" + std::to_string(i), load_waiter{[](caf::expected<value>) {}}, false,
            uint64_t(100 + i));
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
    auto id = t.start(key, std::nullopt, false, 60'000 + i);
    REQUIRE(t.finish(key, id));
  }
  CHECK_FALSE(t.next_deadline_ms());
  // One that hangs holds only its own (and those behind it) until it passes.
  auto hung = t.start("hung", std::nullopt, false, 70'000);
  auto id = t.start("quick", std::nullopt, false, 70'001);
  REQUIRE(t.finish("quick", id));
  CHECK(t.next_deadline_ms() == uint64_t{70'000});
  CHECK(t.expire(70'001).size() == 1);
  CHECK_FALSE(t.next_deadline_ms());
  CHECK_FALSE(t.finish("hung", hung)); // its late answer finds nothing
}

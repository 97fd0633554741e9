// The embedding API: a runtime with a manual clock, called the three ways.
#include <catch2/catch.hpp>

#include <atomic>
#include <condition_variable>
#include <mutex>

#include <caf/all.hpp>

#include "support/latch.hpp"
#include "support/log_sink_lines.hpp"
#include "support/must.hpp"
#include <karlton/messages/errors.hpp>
#include <karlton/messages/type_ids.hpp>
#include <karlton/runtime/runtime.hpp>

using namespace karlton;
using namespace std::chrono_literals;
using karlton::testing::hold_shard;
using karlton::testing::holdable_cache;
using karlton::testing::latch;
using karlton::testing::must;
using karlton::testing::release_on_exit;

namespace {

struct fixture {
  std::shared_ptr<manual_clock> clk = std::make_shared<manual_clock>();
  runtime rt{clk};

  cache make(std::string name, ttl default_ttl = ttl::never()) {
    cache_options o;
    o.name = std::move(name);
    o.default_ttl = default_ttl;
    o.shards = 4;
    auto c = rt.create_cache(o);
    REQUIRE(c);
    return *c;
  }
};

} // namespace

TEST_CASE_METHOD(fixture, "blocking calls put, get, erase and report TTLs", "[runtime]") {
  auto users = make("users", ttl::after(2s));
  REQUIRE_FALSE(users.put("user_123", "John"));
  CHECK(must(users.get("user_123")).bytes() == "John");
  CHECK_FALSE(must(users.get("user_999")));
  CHECK(must(users.contains("user_123")));
  auto left = must(users.ttl_of("user_123"));
  CHECK(left.state == remaining_ttl::expires);
  CHECK(left.left == 2s);
  CHECK(must(users.erase("user_123")));
  CHECK_FALSE(must(users.erase("user_123")));
  CHECK_FALSE(must(users.contains("user_123")));
}

TEST_CASE_METHOD(fixture, "TTL expiry follows the injected clock", "[runtime][ttl]") {
  auto c = make("c", ttl::after(2s));
  REQUIRE_FALSE(c.put("a", "1"));
  REQUIRE_FALSE(c.put("b", "2", ttl::after(10s)));
  clk->advance(1s);
  CHECK(must(c.get("a")));
  clk->advance(1s);
  CHECK_FALSE(must(c.get("a")));
  CHECK(must(c.get("b")));
  clk->advance(9s);
  CHECK(must(c.remove_expired()) == 1);
  auto st = must(c.stats());
  CHECK(st.expired == 2);
  CHECK(st.entries == 0);
}

TEST_CASE_METHOD(fixture, "futures and callbacks reach the same shards", "[runtime]") {
  auto c = make("c");
  auto put = c.put_async("k", "from a future");
  REQUIRE(put.get());
  CHECK(must(c.get_async("k").get()).bytes() == "from a future");
  std::mutex mtx;
  std::condition_variable cv;
  std::optional<caf::expected<value>> got;
  c.get_async("k", [&](caf::expected<value> v) {
    std::lock_guard<std::mutex> guard{mtx};
    got.emplace(std::move(v));
    cv.notify_one();
  });
  std::unique_lock<std::mutex> guard{mtx};
  REQUIRE(cv.wait_for(guard, 10s, [&] { return got.has_value(); }));
  REQUIRE(*got);
  CHECK((*got)->bytes() == "from a future");
}

TEST_CASE("a callback that throws on a shard's thread leaves the shard serving",
          "[runtime][callbacks]") {
  runtime rt{std::make_shared<manual_clock>()};
  cache_options o;
  o.name = "c";
  o.shards = 1;
  o.call_timeout = 2s; // a dead shard fails the calls below with timeout
  auto c = must(rt.create_cache(o));
  karlton::testing::log_sink_lines log;
  c.get_async("missing", [](caf::expected<value>) {
    throw std::runtime_error("the service's bug"); // on the shard's thread: a miss
  });
  REQUIRE_FALSE(c.put("k", "v")); // the same shard's queue, after the callback
  CHECK(must(c.get("k")).bytes() == "v");
  CHECK_FALSE(log.wait_for("the service's bug", 10s).empty());
}

TEST_CASE_METHOD(fixture,
                 "puts refused for their size before the shard count as rejected",
                 "[runtime][stats]") {
  cache_options o;
  o.name = "c";
  o.max_value_bytes = 8;
  o.max_key_bytes = 8;
  auto c = must(rt.create_cache(o));
  CHECK(c.put("k", "123456789") == errc::value_too_large);
  CHECK(c.put("123456789", "v") == errc::key_too_large);
  CHECK(c.put_many({{"a", "ok"}, {"b", "123456789"}}, ttl::never()) ==
        errc::value_too_large);
  CHECK(c.put("k", "v", ttl::after(0s)) == errc::invalid_option); // not a size
  CHECK(must(c.stats()).rejected == 3);
}

TEST_CASE_METHOD(fixture, "an actor requests the shard that owns a key directly",
                 "[runtime][actors]") {
  auto c = make("c");
  REQUIRE_FALSE(c.put("k", "for actors"));
  caf::scoped_actor self{rt.system()};
  self->request(c.shard_for("k"), 5s, caf::get_atom::value, std::string{"k"})
    .receive([](const value& v) { CHECK(v.bytes() == "for actors"); },
             [](caf::error& e) { FAIL(describe(e)); });
  self
    ->request(c.shard_for("j"), 5s, caf::put_atom::value, value::make("j", "by actor"),
              ttl::never())
    .receive([](caf::ok_atom) {}, [](caf::error& e) { FAIL(describe(e)); });
  CHECK(must(c.get("j")).bytes() == "by actor");
}

TEST_CASE_METHOD(fixture, "many-key calls return values in order across shards",
                 "[runtime][batch]") {
  auto c = make("c");
  std::vector<std::pair<std::string, std::string>> items;
  std::vector<std::string> keys;
  for (int i = 0; i < 200; ++i) {
    items.emplace_back("k" + std::to_string(i), "v" + std::to_string(i));
    keys.push_back("k" + std::to_string(i));
  }
  keys.push_back("missing");
  REQUIRE_FALSE(c.put_many(items));
  auto vs = must(c.get_many(keys));
  REQUIRE(vs.size() == 201);
  for (int i = 0; i < 200; ++i)
    CHECK(vs[i].bytes() == "v" + std::to_string(i));
  CHECK_FALSE(vs[200]);
  CHECK(must(c.get_many({})).empty());
  auto st = must(c.stats());
  CHECK(st.entries == 200);
  CHECK(st.hits == 200);
  CHECK(st.misses == 1);
  CHECK(must(c.clear()) == 200);
}

TEST_CASE_METHOD(fixture, "oversized input is refused with its error in every call style",
                 "[runtime][errors]") {
  cache_options o;
  o.name = "small";
  o.max_key_bytes = 4;
  o.max_value_bytes = 8;
  auto c = must(rt.create_cache(o));
  CHECK(c.put("toolong", "v") == errc::key_too_large);
  CHECK(c.put("k", "123456789") == errc::value_too_large);
  CHECK(c.put_async("k", "123456789").get().error() == errc::value_too_large);
  CHECK(c.put_many({{"ok", "v"}, {"toolong", "v"}}) == errc::key_too_large);
  CHECK(c.put("k", "v", ttl::after(-1s)) == errc::invalid_option);
  CHECK(must(c.stats()).entries == 0); // nothing of a refused batch was stored
}

TEST_CASE_METHOD(fixture, "a removal listener actor hears the key and the cause",
                 "[runtime][listener]") {
  caf::scoped_actor self{rt.system()};
  auto listener = caf::actor_cast<removal_listener_actor>(self);
  cache_options o;
  o.name = "listened";
  o.shards = 1;
  o.removal_listener = listener;
  auto c = must(rt.create_cache(o));
  REQUIRE_FALSE(c.put("k", "v"));
  REQUIRE(must(c.erase("k")));
  self->receive(
    [](removed_atom, const std::string& key, removal_cause why) {
      CHECK(key == "k");
      CHECK(why == removal_cause::explicit_erase);
    },
    caf::after(10s) >> [] { FAIL("no removal message"); });
}

TEST_CASE("a runtime can use the service's own actor system", "[runtime]") {
  struct service_config : caf::actor_system_config {
    service_config() {
      register_types(*this);
      add_options(custom_options_);
    }
  } cfg;
  caf::actor_system sys{cfg};
  {
    runtime rt{sys};
    auto c = rt.create_cache("borrowed");
    REQUIRE(c);
    REQUIRE_FALSE(c->put("k", "v"));
    CHECK(must(c->get("k")).bytes() == "v");
  }
  // The service's system outlives the runtime and still works.
  caf::scoped_actor self{sys};
  CHECK(self->home_system().scheduler().num_workers() > 0);
}

TEST_CASE("a stuck shard gives timeout, then overloaded, and recovers",
          "[runtime][errors]") {
  // A removal callback that blocks holds the shard's thread: the shard stops
  // draining its ingress queue, as a shard flooded by other work would.
  latch gate;
  std::atomic<bool> stuck{false};
  runtime rt;
  auto o = holdable_cache("stuck", gate, stuck, 1, 2, 200ms);
  release_on_exit release{gate};
  auto c = must(rt.create_cache(o));
  auto erase = hold_shard(c, "k", stuck);        // the shard blocks in the callback
  CHECK(c.get("k").error() == errc::timeout);    // queued, never answered in time
  auto queued = c.get_async("k");                // fills the queue (capacity 2)
  CHECK(c.get("k").error() == errc::overloaded); // no room within its timeout
  gate.release();
  CHECK(must(erase.get()));
  CHECK_FALSE(must(queued.get()));
  CHECK_FALSE(must(c.get("k")));
}

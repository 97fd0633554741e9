// Doorbells held back to the end of an I/O round (held_doorbells,
// runtime/cache.hpp): on CAF's deterministic test coordinator every doorbell is
// a message to see, so "one per shard per round" is counted, not timed.
#include "support/caf_catch_bridge.hpp"

#include <future>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "actors/shard_actor.hpp"
#include "runtime/bridge.hpp"
#include "support/coordinator_clock.hpp"
#include "support/must.hpp"
#include <karlton/messages/errors.hpp>
#include <karlton/messages/type_ids.hpp>
#include <karlton/runtime/runtime.hpp>
#include <karlton/stores/memory_store.hpp>

using namespace karlton;
using namespace std::chrono_literals;
using karlton::testing::coordinator_clock;
using karlton::testing::must;
using karlton::testing::test_config;

namespace {

struct fixture : test_coordinator_fixture<test_config> {
  std::shared_ptr<coordinator_clock> time_source =
    std::make_shared<coordinator_clock>(sched);
  std::shared_ptr<detail::gate> gate = std::make_shared<detail::gate>();
  std::vector<detail::shard_route> routes;

  fixture() {
    for (int i = 0; i < 2; ++i) {
      detail::shard_route r;
      r.inbox = std::make_shared<ingress>(64);
      r.reads = std::make_shared<read_side>(time_source);
      shard_setup setup;
      setup.config.reads = r.reads;
      setup.time_source = time_source;
      setup.inbox = r.inbox;
      r.actor = sys.spawn(shard, std::move(setup));
      routes.push_back(std::move(r));
    }
    sched.run();
  }

  ~fixture() override {
    for (auto& r : routes)
      caf::anon_send_exit(r.actor, caf::exit_reason::user_shutdown);
    sched.run();
  }

  void submit(size_t shard, shard_job* job) {
    detail::submit(gate, routes[shard], job, std::chrono::steady_clock::now() + 1s);
  }
};

// Counts how the shard ran it, or that it never will.
struct counted_job final : shard_job {
  int* ran;
  int* abandoned;
  counted_job(int* r, int* a) : ran(r), abandoned(a) {}
  void run(shard_state&, time_point) override {
    ++*ran;
    delete this;
  }
  void abandon(const caf::error&) override {
    ++*abandoned;
    delete this;
  }
};

} // namespace

TEST_CASE_METHOD(fixture, "without held doorbells each burst rings at once",
                 "[bridge][doorbell]") {
  int ran = 0, abandoned = 0;
  submit(0, new counted_job(&ran, &abandoned));
  submit(0, new counted_job(&ran, &abandoned)); // rung already: no second doorbell
  expect((doorbell_atom), to(routes[0].actor));
  CHECK(ran == 2);
  CHECK_FALSE(sched.has_job());
}

TEST_CASE_METHOD(fixture, "held doorbells ring each shard once, when they ring",
                 "[bridge][doorbell]") {
  int ran = 0, abandoned = 0, hooks = 0;
  {
    karlton::held_doorbells doorbells{[&] { ++hooks; }};
    for (int i = 0; i < 5; ++i) {
      submit(0, new counted_job(&ran, &abandoned));
      submit(1, new counted_job(&ran, &abandoned));
    }
    // Queued, not rung: no message to either shard yet, and the installer
    // was asked once to schedule the ring.
    CHECK_FALSE(sched.has_job());
    CHECK(ran == 0);
    CHECK(hooks == 1);
    CHECK(doorbells.held() == 2);
    doorbells.ring();
    CHECK(doorbells.held() == 0);
    expect((doorbell_atom), to(routes[0].actor));
    expect((doorbell_atom), to(routes[1].actor));
    CHECK_FALSE(sched.has_job()); // one doorbell each
    CHECK(ran == 10);
    // The next round asks again.
    submit(1, new counted_job(&ran, &abandoned));
    CHECK(hooks == 2);
  } // leaving the scope rings what is held
  expect((doorbell_atom), to(routes[1].actor));
  CHECK(ran == 11);
  CHECK(abandoned == 0);
  CHECK(karlton::held_doorbells::current() == nullptr);
}

TEST_CASE_METHOD(fixture, "a deferred doorbell after the runtime stopped fails the jobs",
                 "[bridge][doorbell][shutdown]") {
  int ran = 0, abandoned = 0;
  karlton::held_doorbells doorbells{[] {}};
  submit(0, new counted_job(&ran, &abandoned));
  gate->closed.store(true); // shutdown began between the push and the ring
  doorbells.ring();
  CHECK(abandoned == 1);
  CHECK(ran == 0);
  CHECK_FALSE(sched.has_job()); // no doorbell to a stopping shard
}

// On a real runtime: a thread with a doorbells that makes a blocking call rings
// first, or it would wait for its own doorbell until the call timed out.
TEST_CASE("a blocking call on a thread that holds doorbells rings them first",
          "[bridge][doorbell]") {
  runtime rt{std::make_shared<manual_clock>()};
  cache_options o;
  o.name = "c";
  auto c = must(rt.create_cache(o)); // without the ring: a timeout after 5 s
  int hooks = 0;
  karlton::held_doorbells doorbells{[&] { ++hooks; }};
  REQUIRE_FALSE(c.put("k", "v"));
  CHECK(must(c.get("k")).bytes() == "v");
  CHECK(hooks >= 1); // the put was deferred, and still completed
}

// A future may be waited for on the same thread: nothing would ring for it.
TEST_CASE("a call that returns a future is not held", "[bridge][doorbell]") {
  runtime rt{std::make_shared<manual_clock>()};
  cache_options o;
  o.name = "c";
  auto c = must(rt.create_cache(o));
  karlton::held_doorbells doorbells{[] {}};
  auto put = c.put_async("k", "v", ttl::never());
  REQUIRE(put.wait_for(10s) == std::future_status::ready); // it never was before
  REQUIRE(put.get());
  CHECK(doorbells.held() == 0);
}

TEST_CASE("get_many_async's future is not held either", "[bridge][doorbell]") {
  runtime rt{std::make_shared<manual_clock>()};
  cache_options o;
  o.name = "c";
  auto c = must(rt.create_cache(o));
  karlton::held_doorbells doorbells{[] {}}; // a loop that never rings them
  auto got = c.get_many_async({"a", "b"}); // misses: jobs for the shards
  REQUIRE(got.wait_for(10s) == std::future_status::ready);
  auto values = got.get();
  REQUIRE(values);
  CHECK(values->size() == 2);
  CHECK(doorbells.held() == 0);
}

TEST_CASE("write-through puts queued behind held doorbells when shutdown begins are stored",
          "[bridge][doorbell][shutdown]") {
  // The shard's settle saw the queued puts and waited for a doorbell that
  // only came after the gate closed, which failed them: the callers heard
  // shut_down after flush_timeout though the store was there to take them.
  auto store = std::make_shared<memory_store>();
  runtime rt{std::make_shared<manual_clock>()};
  cache_options o;
  o.name = "c";
  o.shards = 1;
  o.writes = write_mode::write_through;
  o.backing_store = store;
  auto c = must(rt.create_cache(o));
  std::promise<caf::error> answered;
  auto answer = answered.get_future();
  {
    karlton::held_doorbells doorbells{[] {}}; // rung only when it ends, below
    c.put_async("k", "v", ttl::never(), [&answered](caf::expected<cache::unit> r) {
      answered.set_value(r ? caf::error{} : r.error());
    });
    auto report = rt.shutdown(1s);
    CHECK(report.unstored_writes() == 0);
  }
  REQUIRE(answer.wait_for(10s) == std::future_status::ready);
  CHECK_FALSE(answer.get());
  CHECK(must(store->load("k")) == std::optional<std::string>{"v"});
}

// The shard actor on CAF's deterministic test coordinator: no threads, a
// virtual clock, and every message checked as it is delivered.
#include "support/caf_catch_bridge.hpp"

#include <utility>

#include "actors/shard_actor.hpp"
#include "support/coordinator_clock.hpp"
#include <karlton/messages/errors.hpp>
#include <karlton/messages/type_ids.hpp>

using namespace karlton;
using namespace std::chrono_literals;
using karlton::testing::coordinator_clock;
using karlton::testing::test_config;

namespace {

struct fixture : test_coordinator_fixture<test_config> {
  std::shared_ptr<ingress> inbox = std::make_shared<ingress>(64);
  std::shared_ptr<coordinator_clock> time_source =
    std::make_shared<coordinator_clock>(sched);
  std::shared_ptr<read_side> reads = std::make_shared<read_side>(time_source);
  shard_actor s;

  fixture() {
    shard_setup setup;
    setup.config.default_ttl = ttl::after(1s);
    setup.config.reads = reads;
    setup.time_source = time_source;
    setup.inbox = inbox;
    s = sys.spawn(shard, std::move(setup));
    sched.run();
  }

  ~fixture() override {
    caf::anon_send_exit(s, caf::exit_reason::user_shutdown);
    sched.run(); // jobs only: stopping the shard first drops its timers
  }

  shard_state& state() {
    return *deref<shard_actor::stateful_base<shard_actor_state>>(s).state.cache;
  }

  template <class T, class... Ts>
  T ask(Ts&&... xs) {
    auto rh = self->request(s, caf::infinite, std::forward<Ts>(xs)...);
    sched.run();
    T out{};
    rh.receive([&](T& x) { out = std::move(x); },
               [](caf::error& e) { FAIL(describe(e)); });
    return out;
  }
};

// A job from a "plain thread", recording that the shard ran it.
struct probe_job final : shard_job {
  bool* ran;
  explicit probe_job(bool* flag) : ran(flag) {}
  void run(shard_state& st, time_point now) override {
    *ran = st.contains("k", now);
    delete this;
  }
  void abandon(const caf::error&) override { delete this; }
};

} // namespace

TEST_CASE_METHOD(fixture, "a shard actor answers put, get, contains and delete",
                 "[shard-actor]") {
  auto put = self->request(s, caf::infinite, caf::put_atom::value, value::make("k", "v"),
                           ttl::cache_default());
  expect((caf::put_atom, value, ttl), from(self).to(s));
  put.receive([](caf::ok_atom) {}, [](caf::error& e) { FAIL(describe(e)); });
  CHECK(ask<value>(caf::get_atom::value, std::string{"k"}).bytes() == "v");
  CHECK(ask<bool>(contains_atom::value, std::string{"k"}));
  CHECK(ask<bool>(caf::delete_atom::value, std::string{"k"}));
  CHECK_FALSE(ask<value>(caf::get_atom::value, std::string{"k"}));
  CHECK(ask<cache_stats>(stats_atom::value).invalidations == 1);
}

TEST_CASE_METHOD(fixture, "a shard actor refuses an oversized key with its error",
                 "[shard-actor][errors]") {
  auto rh =
    self->request(s, caf::infinite, caf::put_atom::value,
                  value::make(std::string(70'000, 'k'), "v"), ttl::cache_default());
  sched.run();
  caf::error got;
  rh.receive([](caf::ok_atom) { FAIL("an oversized key was stored"); },
             [&](caf::error& e) { got = std::move(e); });
  CHECK(got == errc::key_too_large);
  CHECK(state().size() == 0);
}

TEST_CASE_METHOD(fixture, "the expiry timer reclaims entries nobody reads",
                 "[shard-actor][ttl]") {
  ask<caf::ok_atom>(caf::put_atom::value, value::make("k", "v"), ttl::cache_default());
  REQUIRE(state().size() == 1);
  advance_time(500ms);
  CHECK(state().size() == 1);
  advance_time(501ms);
  expect((expire_atom, uint64_t), to(s));
  CHECK(state().size() == 0);
  CHECK(state().stats().expired == 1);
  CHECK(state().stats().misses == 0);
}

TEST_CASE_METHOD(fixture, "a mass expiry is reclaimed in bounded slices",
                 "[shard-actor][ttl]") {
  std::vector<value> many;
  for (int i = 0; i < 5000; ++i)
    many.push_back(value::make(std::to_string(i), "v"));
  ask<caf::ok_atom>(caf::put_atom::value, std::move(many), ttl::cache_default());
  advance_time(2s);
  expect((expire_atom, uint64_t), to(s));
  CHECK(state().size() == 5000 - expiry_batch);
  // The rest follows as separate messages, so other requests interleave.
  auto rh = self->request(s, caf::infinite, caf::get_atom::value, std::string{"x"});
  expect((expire_atom, uint64_t), to(s));
  expect((caf::get_atom, std::string), from(self).to(s));
  sched.run();
  CHECK(state().size() == 0);
  CHECK(state().stats().expired == 5000);
}

TEST_CASE_METHOD(fixture, "an overwrite re-arms nothing stale", "[shard-actor][ttl]") {
  ask<caf::ok_atom>(caf::put_atom::value, value::make("k", "v"), ttl::after(1s));
  ask<caf::ok_atom>(caf::put_atom::value, value::make("k", "v2"), ttl::after(10s));
  advance_time(2s);
  sched.run();
  CHECK(state().size() == 1);
  advance_time(9s);
  sched.run();
  CHECK(state().size() == 0);
}

TEST_CASE_METHOD(fixture,
                 "while callers hit its table the shard drains their hits on its own "
                 "timer, and after a drain that finds none it waits to be asked",
                 "[shard-actor][direct]") {
  ask<caf::ok_atom>(caf::put_atom::value, value::make("k", "v"), ttl::never());
  auto hash = static_cast<uint32_t>(hash_key("k"));
  auto fill_buffer = [&] {
    int asks = 0;
    for (unsigned i = 0; i < read_side::buffer_length; ++i)
      asks += reads->read("k", hash).wants_drain;
    return asks;
  };
  auto learned = [&] { return state().stats().hit_age.count(); };
  REQUIRE(fill_buffer() == 1); // after a quiet spell: the reader asks
  self->send(s, drain_reads_atom::value);
  expect((drain_reads_atom), from(self).to(s));
  CHECK(learned() == read_side::buffer_length);
  // Readers go on: they ask nothing, the shard's own timer drains.
  CHECK(fill_buffer() == 0);
  advance_time(read_side::drain_spacing);
  expect((drain_reads_atom), from(s).to(s));
  CHECK(learned() == 2 * read_side::buffer_length);
  // Readers stopped: the next drain finds nothing and arms no timer.
  advance_time(read_side::drain_spacing);
  expect((drain_reads_atom), from(s).to(s));
  CHECK_FALSE(sched.has_pending_timeout());
  // A reader after the quiet spell asks again.
  CHECK(fill_buffer() == 1);
}

TEST_CASE_METHOD(fixture,
                 "the stats count the ages of hits callers served, however few, and "
                 "readers still ask for the next drain",
                 "[shard-actor][direct]") {
  ask<caf::ok_atom>(caf::put_atom::value, value::make("k", "v"), ttl::never());
  advance_time(1500ms);
  auto hash = static_cast<uint32_t>(hash_key("k"));
  int asks = 0;
  for (int i = 0; i < 3; ++i)
    asks += reads->read("k", hash).wants_drain;
  REQUIRE(asks == 0); // too few to fill a buffer: no drain
  // Replaced since, and later: the ages are those of the value served, then.
  ask<caf::ok_atom>(caf::put_atom::value, value::make("k", "w"), ttl::never());
  advance_time(3s);
  auto st = ask<cache_stats>(stats_atom::value);
  CHECK(st.hit_age.count() == 3);
  CHECK(st.age_p50_ms() >= 1500);
  CHECK(st.age_p50_ms() <= 1700);           // the histogram's 12.5 % resolution
  CHECK_FALSE(sched.has_pending_timeout()); // no drain loop of its own
  for (unsigned i = 3; i < read_side::buffer_length; ++i)
    asks += reads->read("k", hash).wants_drain;
  CHECK(asks == 1); // the buffer's end asks, as after any quiet spell
}

TEST_CASE_METHOD(fixture, "the doorbell drains jobs queued by plain threads",
                 "[shard-actor][bridge]") {
  ask<caf::ok_atom>(caf::put_atom::value, value::make("k", "v"), ttl::never());
  bool ran = false;
  REQUIRE(inbox->push(new probe_job(&ran)));
  REQUIRE(inbox->claim_doorbell());
  REQUIRE_FALSE(inbox->claim_doorbell()); // one doorbell per burst
  caf::anon_send(s, doorbell_atom::value);
  expect((doorbell_atom), to(s));
  CHECK(ran);
  CHECK(inbox->claim_doorbell()); // released once the queue was empty
}

namespace {

// A service's own loader actor, as `cache_options::load_actor` would give it:
// it answers each load later, after asking another actor (the "database"),
// through a response promise.
loader_actor::behavior_type asking_loader(loader_actor::pointer self, caf::actor db) {
  return {
    [=](load_atom, const std::string& key, uint64_t) -> caf::result<load_outcome> {
      auto rp = self->make_response_promise<load_outcome>();
      self->request(db, caf::infinite, caf::get_atom::value, key)
        .then(
          [rp](std::string& row) mutable {
            load_outcome out;
            out.bytes = std::move(row);
            rp.deliver(std::move(out));
          },
          [rp](caf::error& err) mutable {
            load_outcome out;
            out.error = std::move(err);
            rp.deliver(std::move(out));
          });
      return rp;
    },
  };
}

struct loading_fixture : test_coordinator_fixture<test_config> {
  int queries = 0;
  caf::actor db;
  loader_actor loader;
  shard_actor s;

  loading_fixture() {
    // Spawned with an argument: CAF 0.17 dereferences a null argument tuple
    // for functions spawned without any, which UBSan reports.
    db = sys.spawn(
      [](caf::event_based_actor*, int* count) -> caf::behavior {
        return {
          [count](caf::get_atom, const std::string& key) -> caf::result<std::string> {
            ++*count;
            if (key == "missing") return make_error(errc::not_found, "no row " + key);
            return "row of " + key;
          },
        };
      },
      &queries);
    loader = sys.spawn(asking_loader, db);
    shard_setup setup;
    setup.config.default_ttl = ttl::after(1s);
    setup.config.read_through = true;
    setup.time_source = std::make_shared<coordinator_clock>(sched);
    setup.user_loader = loader;
    s = sys.spawn(shard, std::move(setup));
    sched.run();
  }

  ~loading_fixture() override {
    for (const auto& a :
         {caf::actor_cast<caf::actor>(s), caf::actor_cast<caf::actor>(loader), db})
      caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
    sched.run();
  }

  shard_state& state() {
    return *deref<shard_actor::stateful_base<shard_actor_state>>(s).state.cache;
  }

  // Sends (load, key) twice before the shard runs, then runs everything.
  std::vector<caf::expected<value>> load_twice(const std::string& key) {
    std::vector<caf::expected<value>> out;
    auto a = self->request(s, caf::infinite, load_atom::value, key);
    auto b = self->request(s, caf::infinite, load_atom::value, key);
    sched.run();
    for (auto* rh : {&a, &b})
      rh->receive([&](value& v) { out.emplace_back(std::move(v)); },
                  [&](caf::error& e) { out.emplace_back(std::move(e)); });
    return out;
  }
};

} // namespace

TEST_CASE_METHOD(loading_fixture,
                 "a service's loader actor answers a shard's load, one per key in flight",
                 "[shard-actor][loading][rule2]") {
  auto got = load_twice("k");
  REQUIRE(got.size() == 2);
  for (auto& r : got) {
    REQUIRE(r);
    CHECK(r->bytes() == "row of k");
  }
  CHECK(queries == 1);
  auto st = state().stats();
  CHECK(st.loads == 1);
  CHECK(st.coalesced == 1);
  CHECK(state().contains("k", sched.clock().now()));
}

TEST_CASE_METHOD(loading_fixture, "a loader actor's error outcome reaches every waiter",
                 "[shard-actor][loading][errors]") {
  auto got = load_twice("missing");
  REQUIRE(got.size() == 2);
  for (auto& r : got) {
    REQUIRE_FALSE(r);
    CHECK(r.error() == errc::not_found);
  }
  CHECK(state().stats().load_failures == 1);
}

TEST_CASE_METHOD(loading_fixture, "a loader actor that is down fails the load",
                 "[shard-actor][loading][errors]") {
  caf::anon_send_exit(loader, caf::exit_reason::user_shutdown);
  sched.run();
  auto got = load_twice("k");
  REQUIRE(got.size() == 2);
  for (auto& r : got) {
    REQUIRE_FALSE(r);
    CHECK(r.error() == errc::store_failure);
    CHECK(describe(r.error()).find("loader actor failed") != std::string::npos);
  }
  CHECK(queries == 0);
}

namespace {

// A manual clock that, armed, acts out a stall at the next read: it answers
// with the time before the stall, then a plain thread queues `job` and the
// time jumps by `stall` (the process was stopped and continued).
class stalling_clock final : public karlton::clock {
public:
  time_point now() const noexcept override {
    auto t = base_.now();
    if (auto* j = std::exchange(job_, nullptr)) {
      inbox_->push(j);
      base_.advance(stall_);
    }
    return t;
  }
  void arm(ingress* inbox, shard_job* job, std::chrono::nanoseconds stall) {
    inbox_ = inbox;
    job_ = job;
    stall_ = stall;
  }

private:
  mutable manual_clock base_;
  ingress* inbox_ = nullptr;
  mutable shard_job* job_ = nullptr;
  std::chrono::nanoseconds stall_{0};
};

// A job recording the time the shard ran it with.
struct time_job final : shard_job {
  time_point* seen;
  explicit time_job(time_point* out) : seen(out) {}
  void run(shard_state&, time_point now) override {
    *seen = now;
    delete this;
  }
  void abandon(const caf::error&) override { delete this; }
};

struct stall_fixture : test_coordinator_fixture<test_config> {
  std::shared_ptr<ingress> inbox = std::make_shared<ingress>(64);
  std::shared_ptr<stalling_clock> time = std::make_shared<stalling_clock>();
  shard_actor s;

  stall_fixture() {
    shard_setup setup;
    setup.time_source = time;
    setup.inbox = inbox;
    s = sys.spawn(shard, std::move(setup));
    sched.run();
  }

  ~stall_fixture() override {
    caf::anon_send_exit(s, caf::exit_reason::user_shutdown);
    sched.run();
  }
};

} // namespace

TEST_CASE_METHOD(stall_fixture,
                 "a job queued after a stall in the doorbell runs with the time after it",
                 "[shard-actor][bridge][lease]") {
  time_point first{}, second{};
  auto before = time->now();
  REQUIRE(inbox->push(new time_job(&first)));
  REQUIRE(inbox->claim_doorbell());
  // The doorbell's first clock read stalls 5 s (longer than any read lease)
  // and `second` is queued after it: a lease checked with the time read
  // before the stall would still be valid for it.
  time->arm(inbox.get(), new time_job(&second), 5s);
  caf::anon_send(s, doorbell_atom::value);
  expect((doorbell_atom), to(s));
  CHECK(first == before);
  CHECK(second >= before + 5s);
}

namespace {
struct spread_fixture : test_coordinator_fixture<test_config> {};
} // namespace

TEST_CASE_METHOD(
  spread_fixture,
  "the shards of a cache start their loader round robin at different workers",
  "[shard-actor][loading]") {
  // Each shard began at worker 0: the first loads of every shard queued on
  // one worker while the others idled (a slow load delayed them all).
  auto stand_in = [](caf::event_based_actor*, int) -> caf::behavior {
    return {[](load_atom, const std::string& key, uint64_t id) {
      load_outcome out;
      out.key = key;
      out.id = id;
      out.bytes = "loaded";
      return out;
    }};
  };
  std::vector<caf::actor> workers;
  for (int i = 0; i < 3; ++i)
    workers.push_back(sys.spawn(stand_in, 0));
  std::vector<shard_actor> shards;
  for (uint32_t index = 0; index < 3; ++index) {
    shard_setup setup;
    setup.config.read_through = true;
    setup.time_source = std::make_shared<coordinator_clock>(sched);
    setup.inbox = std::make_shared<ingress>(8);
    for (auto& w : workers)
      setup.loaders.push_back(caf::actor_cast<loader_actor>(w));
    setup.index = index;
    shards.push_back(sys.spawn(shard, std::move(setup)));
  }
  sched.run();
  for (uint32_t index = 0; index < 3; ++index) {
    self->send(shards[index], load_atom::value, std::string{"k"});
    expect((load_atom, std::string), from(self).to(shards[index]));
    // Shard n's first load goes to worker n.
    expect((load_atom, std::string, uint64_t), from(shards[index]).to(workers[index]));
  }
  sched.run();
  for (auto& s : shards)
    caf::anon_send_exit(s, caf::exit_reason::user_shutdown);
  for (auto& w : workers)
    caf::anon_send_exit(w, caf::exit_reason::user_shutdown);
  sched.run();
}

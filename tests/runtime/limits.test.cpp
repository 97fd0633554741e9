// What the runtime guarantees at the edges of its options: a cache is created
// whole or not at all, a hung loader leaves nothing growing, and a call on
// many shards has one deadline.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include <caf/all.hpp>

#include "support/latch.hpp"
#include <karlton/messages/errors.hpp>
#include <karlton/runtime/runtime.hpp>
#include <karlton/stores/memory_store.hpp>

using namespace karlton;
using namespace std::chrono_literals;
using karlton::testing::hold_shard;
using karlton::testing::holdable_cache;
using karlton::testing::latch;
using karlton::testing::release_on_exit;

namespace {

// Waits (bounded) until the system runs `n` actors; true if it did.
bool running_becomes(caf::actor_system& sys, size_t n) {
  auto until = std::chrono::steady_clock::now() + 10s;
  while (sys.registry().running() != n)
    if (std::chrono::steady_clock::now() > until)
      return false;
    else
      std::this_thread::yield();
  return true;
}

// A removal callback whose copies throw once `budget` copies were made: the
// runtime copies it while it spawns a cache's shards.
struct throwing_copy {
  std::shared_ptr<std::atomic<int>> budget;
  explicit throwing_copy(std::shared_ptr<std::atomic<int>> b) : budget(std::move(b)) {}
  throwing_copy(const throwing_copy& other) : budget(other.budget) {
    if (--*budget < 0) throw std::runtime_error("copy refused");
  }
  void operator()(const value&, removal_cause) const {}
};

} // namespace

TEST_CASE("a create_cache that fails after spawning leaves no actor running",
          "[runtime][options][errors]") {
  runtime rt;
  auto db = std::make_shared<memory_store>();
  REQUIRE(rt.create_cache("first")); // the runtime's own actors (the bus) exist now
  auto baseline = rt.system().registry().running();
  // Fail at every copy in turn: before the loaders, between shards, ...
  bool created = false;
  for (int allowed = 0; allowed < 64 && !created; ++allowed) {
    auto budget = std::make_shared<std::atomic<int>>(1 << 20);
    cache_options o;
    o.name = "c";
    o.shards = 4;
    o.backing_store = db;
    o.writes = write_mode::write_back; // loaders, store writer, flusher, shards
    o.on_removal = throwing_copy{budget};
    *budget = allowed;
    try {
      created = static_cast<bool>(rt.create_cache(std::move(o)));
      REQUIRE(created);
    } catch (const std::runtime_error& e) {
      CHECK(std::string{e.what()} == "copy refused");
      INFO("copies allowed: " << allowed);
      CHECK(running_becomes(rt.system(), baseline));
    }
  }
  CHECK(created); // and the name was still free for it
  auto c = rt.find_cache("c");
  REQUIRE(c);
  CHECK_FALSE(c->put("k", "v"));
  CHECK(c->get("k")->bytes() == "v");
  // The failed attempts left no gap in the bus's numbering of caches: an
  // erase still cascades to the dependents in its own cache.
  auto d = rt.create_cache("d");
  REQUIRE(d);
  REQUIRE_FALSE(d->put("parent", "p"));
  REQUIRE_FALSE(d->put("child", "c", ttl::never(), dependencies{}.on_keys({"parent"})));
  REQUIRE(d->erase("parent"));
  auto present = [&] {
    auto r = d->contains("child");
    return !r || *r;
  };
  auto until = std::chrono::steady_clock::now() + 10s;
  while (present() && std::chrono::steady_clock::now() < until)
    std::this_thread::yield();
  CHECK_FALSE(present());
}

TEST_CASE("ingress-capacity 2^18 + 1 is refused before anything runs, 2^18 works",
          "[runtime][options][errors]") {
  runtime rt;
  REQUIRE(rt.create_cache("first"));
  auto baseline = rt.system().registry().running();
  cache_options o;
  o.name = "c";
  o.shards = 2;
  o.backing_store = std::make_shared<memory_store>();
  o.writes = write_mode::write_through;
  o.ingress_capacity = 262'145;
  auto refused = rt.create_cache(o);
  REQUIRE_FALSE(refused);
  CHECK(refused.error() == errc::invalid_option);
  CHECK(describe(refused.error()).find("ingress-capacity: 262145 is not in 2..262144") !=
        std::string::npos);
  CHECK(rt.system().registry().running() == baseline);
  o.ingress_capacity = 262'144;
  auto c = rt.create_cache(o);
  REQUIRE(c);
  CHECK_FALSE(c->put("k", "v"));
}

TEST_CASE("loader-concurrency 0 is refused for a cache that loads from its store",
          "[runtime][options][errors]") {
  runtime rt;
  cache_options o;
  o.name = "c";
  o.backing_store = std::make_shared<memory_store>();
  o.loader_concurrency = 0; // was accepted, and the first get_or_load divided by it
  auto c = rt.create_cache(o);
  REQUIRE_FALSE(c);
  CHECK(describe(c.error()).find("loader-concurrency: 0 is not in 1..256") !=
        std::string::npos);
}

TEST_CASE("a loader that never returns leaves no callers and no loads behind",
          "[runtime][loading][load-timeout]") {
  latch hung;
  std::atomic<int> calls{0};
  runtime rt;
  cache_options o;
  o.name = "hung";
  o.shards = 2;
  o.loader_concurrency = 1;
  o.load_timeout = 20ms;
  o.loader = [&](const std::string&) -> caf::expected<std::string> {
    ++calls;
    hung.wait(); // never returns while the test runs
    return std::string{"late"};
  };
  auto c = rt.create_cache(o);
  release_on_exit release{hung};
  REQUIRE(c);
  // Many distinct keys, each a load of its own: every caller hears timeout.
  constexpr int keys = 2000;
  std::vector<std::future<caf::expected<value>>> answers;
  for (int i = 0; i < keys; ++i)
    answers.push_back(c->get_or_load_async("key-" + std::to_string(i)));
  // Bounded: a few timer rounds of 20 ms each, with room for a slow machine.
  auto until = std::chrono::steady_clock::now() + 20s;
  int timeouts = 0;
  for (auto& f : answers) {
    REQUIRE(f.wait_until(until) == std::future_status::ready);
    auto r = f.get();
    REQUIRE_FALSE(r);
    timeouts += r.error() == errc::timeout ? 1 : 0;
  }
  CHECK(timeouts == keys);
  auto st = c->stats();
  REQUIRE(st);
  CHECK(st->load_timeouts == keys);
  CHECK(st->loads_in_flight == 0); // no load entry left
  CHECK(st->load_waiters == 0);    // no caller (job) left
  CHECK(calls == 1);               // the one loader thread is still in the first
}

TEST_CASE("a loader that never returns gets a bounded number of loads, the rest are "
          "refused",
          "[runtime][loading][load-cap]") {
  // Without the cap all 3000 keys became loads (3000 load entries and 3000
  // jobs in the loader's mailbox) and none was refused.
  latch hung;
  std::atomic<int> calls{0};
  runtime rt;
  cache_options o;
  o.name = "capped";
  o.shards = 1;
  o.loader_concurrency = 1; // so 2 loads out
  o.load_timeout = 1h;      // nothing times out here: the cap alone bounds them
  o.loader = [&](const std::string& key) -> caf::expected<std::string> {
    ++calls;
    hung.wait(); // returns once the test releases it
    return "v-" + key;
  };
  auto c = rt.create_cache(o);
  release_on_exit release{hung};
  REQUIRE(c);
  constexpr int keys = 3000;
  constexpr int accepted = 2 + 1024; // out + queued
  std::vector<std::future<caf::expected<value>>> answers;
  for (int i = 0; i < keys; ++i)
    answers.push_back(c->get_or_load_async("key-" + std::to_string(i)));
  // One shard takes one thread's calls in order: the first `accepted` keys
  // get loads, every later one is answered at once.
  auto until = std::chrono::steady_clock::now() + 10s;
  for (int i = accepted; i < keys; ++i) {
    INFO("key " << i);
    REQUIRE(answers[i].wait_until(until) == std::future_status::ready);
    auto r = answers[i].get();
    REQUIRE_FALSE(r);
    CHECK(r.error() == errc::overloaded);
  }
  auto st = c->stats();
  REQUIRE(st);
  CHECK(st->loads_out == 2);
  CHECK(st->loads_queued == 1024);
  CHECK(st->loads_refused == keys - accepted);
  CHECK(st->loads_in_flight == accepted); // load entries: bounded
  CHECK(st->load_waiters == accepted);
  CHECK(calls <= 1); // the one loader thread, in its first load
  for (int i = 0; i < accepted; ++i)
    REQUIRE(answers[i].wait_for(0s) == std::future_status::timeout);
  // Released, the loader works through what was out and then the queue.
  hung.release();
  until = std::chrono::steady_clock::now() + 20s;
  for (int i = 0; i < accepted; ++i) {
    REQUIRE(answers[i].wait_until(until) == std::future_status::ready);
    auto r = answers[i].get();
    REQUIRE(r);
    CHECK(r->bytes() == "v-key-" + std::to_string(i));
  }
  st = c->stats();
  REQUIRE(st);
  CHECK(st->loads_in_flight == 0);
  CHECK(st->loads_out == 0);
  CHECK(st->loads_queued == 0);
  CHECK(st->loads_finished == accepted);
  CHECK(calls == accepted);
  CHECK(c->get("key-1025")->bytes() == "v-key-1025");
}

TEST_CASE("a call on many stuck shards waits one call-timeout, not one per shard",
          "[runtime][errors]") {
  // One scheduler thread, blocked in a removal callback: every shard stops
  // draining its ingress queue.
  latch gate;
  std::atomic<bool> stuck{false};
  auto cfg = std::make_unique<runtime_config>();
  cfg->set("scheduler.max-threads", size_t{1});
  runtime rt{std::move(cfg)};
  auto o = holdable_cache("stuck", gate, stuck, 8, 2, 250ms);
  auto c = rt.create_cache(o);
  release_on_exit release{gate};
  REQUIRE(c);
  // Two keys per shard.
  std::vector<std::vector<std::string>> keys(c->shard_count());
  auto shards = c->shards();
  size_t found = 0;
  for (int i = 0; i < 100'000 && found < 2 * shards.size(); ++i) {
    auto k = "k" + std::to_string(i);
    for (size_t s = 0; s < shards.size(); ++s)
      if (c->shard_for(k) == shards[s] && keys[s].size() < 2) {
        keys[s].push_back(k);
        ++found;
      }
  }
  REQUIRE(found == 2 * shards.size());
  auto erase = hold_shard(*c, keys[0][0], stuck); // the one thread, in the callback
  std::vector<std::future<caf::expected<value>>> queued;
  for (auto& ks : keys)
    for (auto& k : ks)
      queued.push_back(c->get_async(k)); // fills every queue (capacity 2)
  auto timed = [&](auto call) {
    auto start = std::chrono::steady_clock::now();
    auto r = call();
    auto took = std::chrono::steady_clock::now() - start;
    CHECK_FALSE(r);
    if (!r) CHECK(r.error() == errc::overloaded);
    CHECK(took >= o.call_timeout);
    CHECK(took < 2 * o.call_timeout); // 8 shards: 8 timeouts before
  };
  timed([&] { return c->stats(); });
  timed([&] { return c->clear(); });
  std::vector<std::string> all;
  for (auto& ks : keys)
    all.push_back(ks[0]);
  timed([&] { return c->get_many(all); });
  gate.release();
  CHECK(erase.get());
  for (auto& f : queued)
    CHECK(f.get());
}

TEST_CASE("an actor's async call that finds its shard's queue full fails with overloaded "
          "at once",
          "[limits][actor]") {
  // Before, it waited for room up to call-timeout, holding a scheduler thread:
  // a compute function's call to its own shard could only time out.
  latch gate;
  std::atomic<bool> stuck{false};
  runtime rt;
  auto c = rt.create_cache(holdable_cache("full", gate, stuck, 1, 2, 30s));
  release_on_exit release{gate};
  REQUIRE(c);
  auto erase = hold_shard(*c, "held", stuck);
  auto nowait = c->without_queue_wait();
  std::vector<std::future<caf::expected<value>>> queued;
  for (int i = 0; i < 4; ++i) // two fill the queue, two find it full
    queued.push_back(nowait.get_async("q" + std::to_string(i)));
  std::promise<caf::expected<caf::unit_t>> told;
  auto answer = told.get_future();
  // An argument, as CAF 0.17 dereferences a null tuple for none (UBSan).
  rt.system().spawn(
    [&told](cache full) {
      full.put_async(
        "k", "v", ttl::cache_default(),
        [&told](caf::expected<caf::unit_t> r) { told.set_value(std::move(r)); });
    },
    *c);
  REQUIRE(answer.wait_for(10s) == std::future_status::ready);
  auto r = answer.get();
  REQUIRE_FALSE(r);
  CHECK(r.error() == errc::overloaded);
  CHECK_THAT(describe(r.error()), Catch::Contains("does not wait"));
  gate.release();
  CHECK(erase.get());
}

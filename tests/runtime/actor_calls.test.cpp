// Calls made from inside actors: blocking ones that would wait for a shard
// would hold a scheduler thread that the shards need, so they fail at once
// with `blocking_in_actor`; a hit is served on the actor's own thread without
// waiting (the direct read path); the asynchronous calls work.
#include <catch2/catch.hpp>

#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include <caf/all.hpp>

#include <karlton/messages/errors.hpp>
#include <karlton/runtime/runtime.hpp>
#include <karlton/stores/memory_store.hpp>

using namespace karlton;
using namespace std::chrono_literals;

namespace {

// A runtime whose scheduler has 2 threads, and a cache holding k = v.
struct two_workers {
  std::unique_ptr<runtime> rt;
  cache users;

  explicit two_workers(write_mode writes = write_mode::none) {
    auto cfg = std::make_unique<runtime_config>();
    cfg->set("scheduler.max-threads", 2);
    rt = std::make_unique<runtime>(std::move(cfg));
    auto o = rt->default_options("users");
    o.shards = 2;
    o.writes = writes;
    if (writes != write_mode::none) o.backing_store = std::make_shared<memory_store>();
    users = *rt->create_cache(o);
    REQUIRE_FALSE(users.put("k", "v"));
  }

  // Spawns an actor that runs `f` in a handler, on a scheduler thread.
  template <class F>
  void in_actor(F f) {
    // An argument, as CAF 0.17 dereferences a null tuple for none (UBSan).
    auto a = rt->system().spawn(
      [](F fn) -> caf::behavior { return {[fn](caf::get_atom) mutable { fn(); }}; },
      std::move(f));
    caf::anon_send(a, caf::get_atom::value);
    caf::logger::set_current_actor_system(nullptr); // see README, Embedding it
  }
};

} // namespace

TEST_CASE("a blocking call from inside an actor fails at once instead of starving the "
          "shards",
          "[runtime][actors]") {
  two_workers w;
  // Four actors on two threads: each blocking get of a miss would hold a
  // thread the shards need (before, all of them timed out after call-timeout).
  std::vector<std::future<caf::error>> results;
  for (int i = 0; i < 4; ++i) {
    auto p = std::make_shared<std::promise<caf::error>>();
    results.push_back(p->get_future());
    w.in_actor([c = w.users, p] {
      auto v = c.get("absent");
      p->set_value(v ? caf::error{} : v.error());
    });
  }
  for (auto& f : results) {
    REQUIRE(f.wait_for(60s) == std::future_status::ready);
    auto err = f.get();
    INFO(describe(err));
    CHECK(err == errc::blocking_in_actor);
    CHECK(describe(err).find("async") != std::string::npos);
  }
  // The plain thread's blocking calls are untouched.
  CHECK(w.users.get("k")->str() == "v");
}

TEST_CASE("an actor's blocking get of a cached key is answered at once, on its own "
          "thread",
          "[runtime][actors][direct]") {
  two_workers w;
  std::vector<std::future<std::string>> results;
  for (int i = 0; i < 4; ++i) {
    auto p = std::make_shared<std::promise<std::string>>();
    results.push_back(p->get_future());
    w.in_actor([c = w.users, p] {
      auto v = c.get("k"); // a hit: no shard is waited for
      p->set_value(v ? v->str() : describe(v.error()));
    });
  }
  for (auto& f : results) {
    REQUIRE(f.wait_for(60s) == std::future_status::ready);
    CHECK(f.get() == "v");
  }
}

TEST_CASE("force_flush and flush_stats from inside an actor fail at once",
          "[runtime][actors]") {
  two_workers w{write_mode::write_back};
  auto p = std::make_shared<std::promise<std::pair<caf::error, caf::error>>>();
  auto f = p->get_future();
  w.in_actor([c = w.users, p] {
    auto s = c.flush_stats();
    p->set_value({c.force_flush(), s ? caf::error{} : s.error()});
  });
  REQUIRE(f.wait_for(60s) == std::future_status::ready);
  auto [flush, stats] = f.get();
  INFO(describe(flush) + " / " + describe(stats));
  CHECK(flush == errc::blocking_in_actor);
  CHECK(stats == errc::blocking_in_actor);
}

TEST_CASE("an actor's asynchronous calls on a cache are answered", "[runtime][actors]") {
  two_workers w;
  auto p = std::make_shared<std::promise<std::string>>();
  auto f = p->get_future();
  w.in_actor([c = w.users, p] {
    c.get_async("k", [p](caf::expected<value> v) {
      p->set_value(v ? v->str() : describe(v.error()));
    });
  });
  REQUIRE(f.wait_for(60s) == std::future_status::ready);
  CHECK(f.get() == "v");
}

TEST_CASE("the runtime's blocking calls from inside an actor fail at once",
          "[runtime][actors]") {
  // They wait on the bus, the peer or the shards, which the actor's thread
  // may have to run: an emit from a cache callback waited on its own shard
  // for the bus's minute. Before, only the change feed's calls refused.
  two_workers w;
  auto p = std::make_shared<std::promise<std::vector<caf::error>>>();
  auto f = p->get_future();
  w.in_actor([rt = w.rt.get(), p] {
    auto error_of = [](const auto& r) { return r ? caf::error{} : r.error(); };
    p->set_value({error_of(rt->emit("e")), error_of(rt->invalidate_tag("t")),
                  error_of(rt->event_stats()), error_of(rt->dependencies_graph()),
                  error_of(rt->metrics_text()),
                  error_of(rt->create_cache(rt->default_options("more")))});
  });
  REQUIRE(f.wait_for(60s) == std::future_status::ready);
  for (const auto& err : f.get()) {
    INFO(describe(err));
    CHECK(err == errc::blocking_in_actor);
  }
  CHECK(w.rt->emit("e")); // from a plain thread, as before
}

// Read-through through the runtime: a real loader on its own threads, called
// the three ways, with single flight across plain threads.
#include <catch2/catch.hpp>

#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

#include <caf/all.hpp>

#include "support/eventually.hpp"
#include <karlton/messages/errors.hpp>
#include <karlton/messages/type_ids.hpp>
#include <karlton/runtime/runtime.hpp>
#include <karlton/stores/memory_store.hpp>

using namespace karlton;
using namespace std::chrono_literals;

namespace {

// A backing store the loader reads, counting its reads.
struct database {
  std::mutex mtx;
  std::map<std::string, std::string> rows;
  std::atomic<int> reads{0};

  load_function loader() {
    return [this](const std::string& key) -> caf::expected<std::string> {
      ++reads;
      std::lock_guard<std::mutex> guard{mtx};
      auto i = rows.find(key);
      if (i == rows.end()) return make_error(errc::store_failure, "no row " + key);
      return i->second;
    };
  }
};

cache_options read_through(std::string name, load_function loader) {
  cache_options o;
  o.name = std::move(name);
  o.shards = 2;
  o.loader = std::move(loader);
  return o;
}

} // namespace

TEST_CASE("get_or_load loads once, then serves from the cache, in every call style",
          "[loading][runtime]") {
  database db;
  db.rows["user_123"] = "John";
  runtime rt;
  auto c = rt.create_cache(read_through("users", db.loader()));
  REQUIRE(c);
  auto v = c->get_or_load("user_123");
  REQUIRE(v);
  CHECK(v->bytes() == "John");
  CHECK(c->get_or_load_async("user_123").get()->bytes() == "John");
  std::promise<std::string> p;
  c->get_or_load_async("user_123", [&p](caf::expected<value> r) {
    p.set_value(r ? std::string{r->bytes()} : "error");
  });
  CHECK(p.get_future().get() == "John");
  caf::scoped_actor self{rt.system()};
  self->request(c->shard_for("user_123"), 5s, load_atom::value, std::string{"user_123"})
    .receive([](const value& x) { CHECK(x.bytes() == "John"); },
             [](caf::error& e) { FAIL(describe(e)); });
  CHECK(db.reads == 1);
  auto st = c->stats();
  REQUIRE(st);
  CHECK(st->loads == 1);
  CHECK(st->hits == 3);
}

TEST_CASE("a loader error reaches the caller and nothing is cached",
          "[loading][runtime]") {
  database db;
  runtime rt;
  auto c = rt.create_cache(read_through("users", db.loader()));
  REQUIRE(c);
  auto v = c->get_or_load("nobody");
  REQUIRE_FALSE(v);
  CHECK(v.error() == errc::store_failure);
  CHECK(describe(v.error()).find("no row nobody") != std::string::npos);
  CHECK_FALSE(*c->get("nobody"));
}

TEST_CASE("a loader that throws gives store_failure", "[loading][runtime][errors]") {
  runtime rt;
  auto c = rt.create_cache(
    read_through("throwing", [](const std::string&) -> caf::expected<std::string> {
      throw std::runtime_error("connection reset");
    }));
  REQUIRE(c);
  auto v = c->get_or_load("k");
  REQUIRE_FALSE(v);
  CHECK(v.error() == errc::store_failure);
  CHECK(describe(v.error()).find("connection reset") != std::string::npos);
}

TEST_CASE("8 threads missing one key at once start one load",
          "[loading][runtime][rule2]") {
  // The loader holds until every caller has asked (7 joined the first), so
  // the misses really are concurrent.
  std::atomic<int> calls{0};
  std::mutex mtx;
  std::condition_variable cv;
  bool release = false;
  runtime rt;
  auto c = rt.create_cache(
    read_through("hot", [&](const std::string&) -> caf::expected<std::string> {
      ++calls;
      std::unique_lock<std::mutex> guard{mtx};
      cv.wait_for(guard, 10s, [&] { return release; });
      return std::string{"value"};
    }));
  REQUIRE(c);
  std::vector<std::thread> readers;
  std::atomic<int> good{0};
  for (int i = 0; i < 8; ++i)
    readers.emplace_back([&] {
      auto v = c->get_or_load("hot-key");
      if (v && v->bytes() == "value") ++good;
    });
  for (int i = 0; i < 1000; ++i) { // bounded: 10 s at most
    auto st = c->stats();
    if (st && st->coalesced == 7) break;
    std::this_thread::sleep_for(10ms); // polling a condition, not waiting for timing
  }
  {
    std::lock_guard<std::mutex> guard{mtx};
    release = true;
  }
  cv.notify_all();
  for (auto& t : readers)
    t.join();
  CHECK(good == 8);
  CHECK(calls == 1);
  CHECK(c->stats()->coalesced == 7);
}

TEST_CASE("options of loading are checked", "[loading][options][errors]") {
  cache_options o;
  o.name = "c";
  o.refresh_after = 1s;
  CHECK(describe(validate(o)).find("refresh-after") != std::string::npos);
  o.refresh_after = caf::timespan{0};
  o.early_refresh = early_refresh_mode::xfetch;
  CHECK(describe(validate(o)).find("early-refresh") != std::string::npos);
  o.loader = [](const std::string&) -> caf::expected<std::string> {
    return std::string{};
  };
  CHECK(validate(o) == caf::none);
  o.beta = 0;
  CHECK(describe(validate(o)).find("beta") != std::string::npos);
  o.beta = 1;
  o.loader_concurrency = 0;
  CHECK(describe(validate(o)).find("loader-concurrency") != std::string::npos);
}

TEST_CASE("stopping the runtime during a load fails its waiters", "[loading][shutdown]") {
  // The loader stands for a slow query that returns only once the caller
  // waiting for it has its answer (or after 10 s): shutdown waits for the
  // loader to return, but the caller hears `shut_down` at once, while the
  // load still runs. Were the caller told only after the load, it would get
  // "late" after 10 s. No window of time decides the outcome.
  std::mutex mtx;
  std::condition_variable cv;
  bool loading = false;
  bool answered = false;
  auto rt = std::make_unique<runtime>();
  auto c = *rt->create_cache(
    read_through("slow", [&](const std::string&) -> caf::expected<std::string> {
      std::unique_lock<std::mutex> guard{mtx};
      loading = true;
      cv.notify_all();
      cv.wait_for(guard, 10s, [&] { return answered; });
      return std::string{"late"};
    }));
  caf::expected<value> heard{value{}};
  std::thread caller{[&, pending = c.get_or_load_async("k")]() mutable {
    heard = pending.get();
    std::lock_guard<std::mutex> guard{mtx};
    answered = true;
    cv.notify_all();
  }};
  bool started = false;
  {
    std::unique_lock<std::mutex> guard{mtx};
    started = cv.wait_for(guard, 10s, [&] { return loading; });
  }
  rt.reset();
  caller.join();
  CHECK(started);
  REQUIRE_FALSE(heard); // not "late"
  CHECK(heard.error() == errc::shut_down);
  CHECK(c.get_or_load("k").error() == errc::shut_down);
}

TEST_CASE("a service's loader actor loads for a cache and is not stopped with it",
          "[loading][runtime][load-actor]") {
  struct service_config : caf::actor_system_config {
    service_config() { register_types(*this); }
  } cfg;
  caf::actor_system sys{cfg};
  std::atomic<int> calls{0};
  // An argument, because CAF 0.17 dereferences a null argument tuple for
  // functions spawned without any (UBSan reports it).
  auto loader = sys.spawn(
    [](loader_actor::pointer, std::atomic<int>* calls) -> loader_actor::behavior_type {
      return {
        [calls](load_atom, const std::string& key, uint64_t) {
          ++*calls;
          load_outcome out;
          if (key == "nobody")
            out.error = make_error(errc::not_found, "no row " + key);
          else
            out.bytes = "row of " + key;
          return out;
        },
      };
    },
    &calls);
  {
    runtime rt{sys};
    cache_options o;
    o.name = "by-actor";
    o.shards = 2;
    o.load_actor = loader;
    o.negative_ttl = 1min; // remembered: the second miss asks nobody
    auto c = rt.create_cache(o);
    REQUIRE(c);
    CHECK(c->get_or_load("user_1")->bytes() == "row of user_1");
    CHECK(c->get_or_load_async("user_1").get()->bytes() == "row of user_1");
    CHECK(calls == 1);
    CHECK(c->get_or_load("nobody").error() == errc::not_found);
    CHECK(c->get_or_load("nobody").error() == errc::not_found);
    CHECK(calls == 2);
    auto st = c->stats();
    REQUIRE(st);
    CHECK(st->loads == 2);
    CHECK(st->negative_hits == 1);
  }
  // The runtime stopped; the service's actor still answers.
  caf::scoped_actor self{sys};
  self->request(loader, 5s, load_atom::value, std::string{"k"}, uint64_t{1})
    .receive([](const load_outcome& out) { CHECK(out.bytes == "row of k"); },
             [](caf::error& e) { FAIL(describe(e)); });
  self->send_exit(loader, caf::exit_reason::user_shutdown);
}

namespace {

// A service's loader that holds every request until asked for "release",
// then answers them all: an asynchronous loader that is slow to answer.
struct held_loads {
  struct request {
    std::string key;
    uint64_t id;
    caf::typed_response_promise<load_outcome> rp;
  };
  std::vector<request> held;
  static inline const char* name = "held-loads";
};

loader_actor::behavior_type holding_loader(loader_actor::stateful_pointer<held_loads> self,
                                           std::atomic<int>* calls) {
  return {
    [self, calls](load_atom, const std::string& key,
                  uint64_t id) -> caf::result<load_outcome> {
      ++*calls;
      auto answer = [](const std::string& k, uint64_t n) {
        load_outcome out;
        out.key = k;
        out.id = n;
        out.bytes = "row of " + k;
        return out;
      };
      if (key != "release") {
        auto rp = self->make_response_promise<load_outcome>();
        self->state.held.push_back({key, id, rp});
        return rp;
      }
      for (auto& r : std::exchange(self->state.held, {}))
        r.rp.deliver(answer(r.key, r.id));
      return answer(key, id);
    },
  };
}

} // namespace

TEST_CASE("a service's loader actor is not held to twice loader-concurrency loads",
          "[loading][runtime][load-actor][load-cap]") {
  // The cap of 2 x loader-concurrency protects karlton's own loader threads;
  // a loader actor answers asynchronously. Before, it got 2 loads at once
  // here and the other 98 waited in the shard's queue.
  runtime rt;
  std::atomic<int> calls{0};
  cache_options o;
  o.name = "slow-service";
  o.shards = 1;
  o.loader_concurrency = 1;
  o.load_actor = rt.system().spawn(holding_loader, &calls);
  // Stops it however the test ends: a failed check must not leave the
  // runtime's system waiting for it forever.
  struct stop_on_exit {
    loader_actor a;
    ~stop_on_exit() { caf::anon_send_exit(a, caf::exit_reason::user_shutdown); }
  } stop{o.load_actor};
  auto c = rt.create_cache(o);
  REQUIRE(c);
  constexpr int keys = 100;
  std::vector<std::future<caf::expected<value>>> answers;
  for (int i = 0; i < keys; ++i)
    answers.push_back(c->get_or_load_async("key-" + std::to_string(i)));
  REQUIRE(testing::eventually([&] { return calls == keys; }));
  auto st = c->stats();
  REQUIRE(st);
  CHECK(st->loads_out == keys);
  CHECK(st->loads_queued == 0);
  REQUIRE(c->get_or_load("release"));
  for (int i = 0; i < keys; ++i) {
    REQUIRE(answers[i].wait_for(10s) == std::future_status::ready);
    auto r = answers[i].get();
    REQUIRE(r);
    CHECK(r->bytes() == "row of key-" + std::to_string(i));
  }
}

TEST_CASE("options of negative caching, stale-if-error and the loader actor are checked",
          "[loading][options][errors]") {
  cache_options o;
  o.name = "c";
  o.negative_ttl = 1s;
  CHECK(describe(validate(o)).find("negative-ttl") != std::string::npos);
  o.negative_ttl = caf::timespan{0};
  o.stale_if_error = 1s;
  CHECK(describe(validate(o)).find("stale-if-error") != std::string::npos);
  o.loader = [](const std::string&) -> caf::expected<std::string> {
    return std::string{};
  };
  CHECK(validate(o) == caf::none);
  o.stale_if_error = -1s;
  CHECK(describe(validate(o)).find("stale-if-error") != std::string::npos);
  o.stale_if_error = caf::timespan{0};
  o.negative_ttl = -1s;
  CHECK(describe(validate(o)).find("negative-ttl") != std::string::npos);
  o.negative_ttl = caf::timespan{0};
  runtime rt;
  o.load_actor = rt.system().spawn(
    [](int) -> loader_actor::behavior_type {
      return {[](load_atom, const std::string&, uint64_t) { return load_outcome{}; }};
    },
    0); // an argument: see the first loader actor above

  auto err = validate(o);
  CHECK(err == errc::invalid_option);
  CHECK(describe(err).find("loader, load_actor") != std::string::npos);
  o.loader = nullptr;
  o.refresh_after = 1s; // a loader actor makes a cache read-through too
  CHECK(validate(o) == caf::none);
  caf::anon_send_exit(o.load_actor, caf::exit_reason::user_shutdown);
}

TEST_CASE("negative-ttl and stale-if-error come from the karlton settings",
          "[loading][options][config]") {
  auto cfg = std::make_unique<runtime_config>();
  REQUIRE_FALSE(cfg->parse({"--karlton.negative-ttl=250ms", "--karlton.stale-if-error=5s",
                            "--karlton.early-refresh=xfetch", "--karlton.beta=2.0"}));
  runtime rt{std::move(cfg)};
  auto o = rt.default_options("from-config");
  CHECK(o.negative_ttl == caf::timespan{250ms});
  CHECK(o.stale_if_error == caf::timespan{5s});
  CHECK(o.early_refresh == early_refresh_mode::xfetch);
  CHECK(o.beta == 2.0);
}

TEST_CASE("in write-back mode a loader actor is never asked past a pending write",
          "[loading][runtime][load-actor][write_back]") {
  std::atomic<int> calls{0};
  runtime rt;
  auto loader = rt.system().spawn(
    [](loader_actor::pointer, std::atomic<int>* calls) -> loader_actor::behavior_type {
      return {
        [calls](load_atom, const std::string& key, uint64_t) {
          ++*calls;
          load_outcome out;
          out.bytes = "row of " + key;
          return out;
        },
      };
    },
    &calls);
  cache_options o;
  o.name = "write-back-by-actor";
  o.shards = 2;
  o.backing_store = std::make_shared<memory_store>();
  o.writes = write_mode::write_back;
  o.flush_interval = std::chrono::hours{1}; // the writes stay pending
  o.load_actor = loader;
  auto c = rt.create_cache(o);
  REQUIRE(c);
  REQUIRE(c->erase("k")); // a pending delete: the flusher answers, not the loader
  auto r = c->get_or_load("k");
  REQUIRE_FALSE(r);
  CHECK(r.error() == errc::not_found);
  CHECK(calls == 0);
  CHECK(c->get_or_load("other")->bytes() == "row of other"); // nothing pending: asked
  CHECK(calls == 1);
  caf::anon_send_exit(loader, caf::exit_reason::user_shutdown);
}

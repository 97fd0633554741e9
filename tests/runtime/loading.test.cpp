// Read-through through the runtime: a real loader on its own threads, called
// the three ways, with single flight across plain threads.
#include <catch2/catch.hpp>

#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

#include <caf/all.hpp>

#include "messages/errors.hpp"
#include "runtime/runtime.hpp"

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
  // The loader stands for a slow query (300 ms); shutdown waits for it to
  // return, but the caller waiting for it hears `shut_down` at once.
  std::atomic<bool> loading{false};
  auto rt = std::make_unique<runtime>();
  auto c = *rt->create_cache(
    read_through("slow", [&](const std::string&) -> caf::expected<std::string> {
      loading = true;
      std::this_thread::sleep_for(300ms);
      return std::string{"late"};
    }));
  auto pending = c.get_or_load_async("k");
  while (!loading)
    std::this_thread::yield();
  rt.reset();
  CHECK(pending.get().error() == errc::shut_down);
  CHECK(c.get_or_load("k").error() == errc::shut_down);
}

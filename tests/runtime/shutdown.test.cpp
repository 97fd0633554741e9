// Stopping a runtime while plain threads are calling it: nobody hangs, nothing
// crashes, and every call gets its result or `shut_down`.
#include <catch2/catch.hpp>

#include <atomic>
#include <future>
#include <thread>

#include "messages/errors.hpp"
#include "runtime/runtime.hpp"

using namespace karlton;
using namespace std::chrono_literals;

TEST_CASE("destroying the runtime with calls in flight fails them with shut_down",
          "[runtime][shutdown]") {
  auto rt = std::make_unique<runtime>();
  cache_options o;
  o.name = "busy";
  o.shards = 2;
  auto c = *rt->create_cache(o);
  std::atomic<int> callbacks_started{0};
  std::atomic<int> callbacks_done{0};
  std::atomic<int> unexpected{0};
  std::atomic<int> shut_down_seen{0};
  std::atomic<int> ops{0};
  auto check = [&](const caf::error& err) {
    if (!err) return;
    if (err == errc::shut_down)
      ++shut_down_seen;
    else
      ++unexpected;
  };
  auto worker = [&](int id) {
    std::vector<std::future<caf::expected<value>>> pending;
    // Bounded: stops at shut_down, or after 200k calls in any case.
    for (int i = 0; i < 200'000; ++i) {
      auto key = "k" + std::to_string((i * 7 + id) % 1000);
      ++ops;
      if (i % 3 == 0) {
        auto err = c.put(key, "v");
        check(err);
        if (err == errc::shut_down) break;
      } else if (i % 3 == 1) {
        pending.push_back(c.get_async(key));
      } else {
        ++callbacks_started;
        c.get_async(key, [&](caf::expected<value> v) {
          if (!v) check(v.error());
          ++callbacks_done;
        });
      }
      if (pending.size() > 64) {
        for (auto& f : pending) {
          if (f.wait_for(30s) != std::future_status::ready)
            ++unexpected;
          else if (auto v = f.get(); !v)
            check(v.error());
        }
        pending.clear();
      }
    }
    for (auto& f : pending) {
      if (f.wait_for(30s) != std::future_status::ready)
        ++unexpected; // would be a hang
      else if (auto v = f.get(); !v)
        check(v.error());
    }
  };
  std::vector<std::thread> pool;
  for (int i = 0; i < 4; ++i)
    pool.emplace_back(worker, i);
  while (ops.load() < 20'000)
    std::this_thread::yield();
  rt.reset(); // stops the shards and the actor system under the workers' feet
  for (auto& t : pool)
    t.join();
  CHECK(unexpected == 0);
  CHECK(shut_down_seen > 0);
  CHECK(callbacks_done == callbacks_started);
}

TEST_CASE("a cache handle that outlives its runtime answers shut_down",
          "[runtime][shutdown]") {
  cache c;
  {
    runtime rt;
    c = *rt.create_cache("orphan");
    REQUIRE_FALSE(c.put("k", "v"));
  }
  CHECK(c.get("k").error() == errc::shut_down);
  CHECK(c.put("k", "v") == errc::shut_down);
  CHECK(c.get_async("k").get().error() == errc::shut_down);
  CHECK(c.get_many({"a", "b"}).error() == errc::shut_down);
  CHECK(c.stats().error() == errc::shut_down);
}

TEST_CASE("create_cache after shutdown is refused", "[runtime][shutdown]") {
  runtime rt;
  rt.shutdown();
  rt.shutdown(); // idempotent
  auto c = rt.create_cache("late");
  REQUIRE_FALSE(c);
  CHECK(c.error() == errc::shut_down);
}

TEST_CASE("a runtime made on one thread can be destroyed on another",
          "[runtime][shutdown]") {
  auto rt = std::make_unique<runtime>();
  auto c = *rt->create_cache("moved");
  REQUIRE_FALSE(c.put("k", "v"));
  std::thread other{[&] { rt.reset(); }}; // hung in ~actor_system before the fix
  other.join();
  CHECK(c.get("k").error() == errc::shut_down);
}

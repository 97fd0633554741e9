// Stopping a runtime while plain threads are calling it: nobody hangs, nothing
// crashes, and every call gets its result or `shut_down`.
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <future>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <caf/all.hpp>

#include "stores/faulty_store.hpp"
#include "support/eventually.hpp"
#include "support/latch.hpp"
#include "support/log_sink_lines.hpp"
#include "support/must.hpp"
#include "support/refusing_store.hpp"
#include <karlton/messages/errors.hpp>
#include <karlton/runtime/log.hpp>
#include <karlton/runtime/runtime.hpp>
#include <karlton/stores/memory_store.hpp>

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

TEST_CASE("a cached key is not read directly once shutdown began",
          "[runtime][shutdown][direct]") {
  runtime rt;
  auto c = *rt.create_cache("closing");
  REQUIRE_FALSE(c.put("k", "v"));
  REQUIRE(c.get("k")->str() == "v"); // a direct hit while running
  rt.shutdown();
  CHECK(c.get("k").error() == errc::shut_down);
  CHECK(c.get_many({"k"}).error() == errc::shut_down);
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

TEST_CASE("calls racing shutdown get shut_down, never a crash or a false success",
          "[runtime][shutdown]") {
  testing::log_sink_lines log;
  auto rt = std::make_unique<runtime>();
  // Write-back into a store that fails every batch: a write once dirty is
  // never stored, so a force_flush that succeeds, or stats that show nothing
  // dirty, would be false.
  auto wo = rt->default_options("wb");
  wo.shards = 2;
  wo.writes = write_mode::write_back;
  wo.backing_store =
    std::make_shared<faulty_store>(std::make_shared<memory_store>(), 1.0, 7);
  auto wb = *rt->create_cache(wo);
  REQUIRE_FALSE(wb.put("dirty", "v"));
  // A synchronous distributed cache on a lone node: its writes wait for the
  // peer actor (await_peers), on the runtime's actor system.
  cluster_options co;
  co.secret = "s";
  co.log = [](const std::string&) {};
  REQUIRE(rt->start_cluster(co));
  auto so = rt->default_options("synced");
  so.distributed = distribution::sync;
  auto synced = *rt->create_cache(so);

  std::atomic<int> calls{0};
  std::atomic<int> false_success{0};
  std::atomic<int> unexpected{0};
  std::atomic<bool> destroyed{false};
  auto expected_error = [&](const caf::error& err, bool timeout_ok) {
    if (err == errc::shut_down || (timeout_ok && err == errc::timeout)) return;
    UNSCOPED_INFO(describe(err));
    ++unexpected;
  };
  // Each thread calls until 20 calls after the runtime was destroyed, and
  // at most 200k times.
  auto run = [&](auto one_call) {
    return std::thread{[&, one_call]() mutable {
      int after = 0;
      for (int i = 0; i < 200'000 && after < 20; ++i) {
        if (destroyed.load()) ++after;
        one_call(i);
        ++calls;
      }
    }};
  };
  std::vector<std::thread> pool;
  pool.push_back(run([&](int) {
    // Before shutdown the store never succeeds, so this times out.
    if (auto err = wb.force_flush(20ms); !err)
      ++false_success;
    else
      expected_error(err, true);
  }));
  pool.push_back(run([&](int) {
    if (auto s = wb.flush_stats(); !s)
      expected_error(s.error(), false);
    else if (s->dirty == 0)
      ++false_success;
  }));
  pool.push_back(run([&](int i) {
    if (auto err = synced.put("k" + std::to_string(i % 100), "v"))
      expected_error(err, false);
  }));
  pool.push_back(run([&](int i) {
    // Ten keys: coalesced writes stay far below max-dirty.
    if (auto err = wb.put("w" + std::to_string(i % 10), "v")) expected_error(err, false);
  }));
  for (int i = 0; i < 1'000'000 && calls.load() < 400; ++i)
    std::this_thread::yield();
  auto report = rt->shutdown(100ms);
  CHECK(report.unstored_writes() > 0);
  CHECK_FALSE(log.wait_for("could not be stored", 0s).empty());
  // After a shutdown that reported unstored writes, nothing claims they are stored.
  CHECK(wb.force_flush() == errc::shut_down);
  auto stats = wb.flush_stats();
  REQUIRE_FALSE(stats);
  CHECK(stats.error() == errc::shut_down);
  auto dirty = wb.dirty_count();
  REQUIRE_FALSE(dirty);
  CHECK(dirty.error() == errc::shut_down);
  rt.reset(); // the actor system goes while the threads still call
  destroyed = true;
  for (auto& t : pool)
    t.join();
  CHECK(false_success == 0);
  CHECK(unexpected == 0);
  CHECK(synced.put("k", "v") == errc::shut_down);
}

TEST_CASE("write-back caches drain together within one flush_timeout",
          "[runtime][shutdown][write_back]") {
  // Before, the flushers were drained one after another, each for up to
  // flush_timeout: n caches whose store refuses held shutdown n times as long.
  testing::log_sink_lines log; // before the runtime: it logs while it stops
  runtime rt;
  std::vector<std::shared_ptr<testing::refusing_store>> stores;
  for (auto name : {"first", "second"}) {
    auto db = std::make_shared<testing::refusing_store>(std::make_shared<memory_store>());
    db->refuse_all = true;
    stores.push_back(db);
    cache_options o;
    o.name = name;
    o.backing_store = db;
    o.writes = write_mode::write_back;
    auto c = testing::must(rt.create_cache(o));
    REQUIRE_FALSE(c.put("k", "v"));
  }
  constexpr auto flush_timeout = 2s;
  auto started = std::chrono::steady_clock::now();
  auto report = rt.shutdown(flush_timeout);
  auto took = std::chrono::steady_clock::now() - started;
  CHECK(report.unstored_writes() == 2);
  CHECK(log.containing("could not be stored before shutdown").size() == 2);
  CHECK(took < flush_timeout + 1500ms); // before: at least twice flush_timeout
}

namespace {

// Loads wait until the test opens `hung`; writes go through.
class hanging_loads final : public store {
public:
  explicit hanging_loads(testing::latch& hung) : hung_(hung) {}
  std::atomic<int> loads{0};
  caf::expected<std::optional<std::string>> load(std::string_view key) override {
    ++loads;
    hung_.wait();
    return inner_.load(key);
  }
  caf::expected<std::vector<std::optional<std::string>>>
  load_many(const std::vector<std::string>& keys) override {
    ++loads;
    hung_.wait();
    return inner_.load_many(keys);
  }
  caf::error write_batch(const std::vector<store_write>& batch) override {
    return inner_.write_batch(batch);
  }
  std::optional<std::string> peek(std::string_view key) const { return inner_.peek(key); }

private:
  testing::latch& hung_;
  memory_store inner_;
};

// A cache named `name` over `db`; a write-back one stores only when drained.
cache_options over(const std::string& name, std::shared_ptr<store> db,
                   write_mode writes) {
  cache_options o;
  o.name = name;
  o.backing_store = std::move(db);
  o.writes = writes;
  if (writes == write_mode::write_back) o.flush_interval = 1h; // dirty until the drain
  return o;
}

// A write-through cache whose increment hangs in its load until the test opens
// `hung`, beside a healthy write-back cache holding k dirty.
struct slow_beside_healthy {
  testing::log_sink_lines log; // before the runtime: it logs while it stops
  testing::latch hung;
  runtime rt;
  testing::release_on_exit release{hung}; // before the runtime stops
  std::shared_ptr<hanging_loads> loading = std::make_shared<hanging_loads>(hung);
  std::shared_ptr<memory_store> db = std::make_shared<memory_store>();
  cache slow =
    testing::must(rt.create_cache(over("slow", loading, write_mode::write_through)));
  cache healthy =
    testing::must(rt.create_cache(over("healthy", db, write_mode::write_back)));
  std::future<caf::expected<int64_t>> counted;

  slow_beside_healthy() {
    REQUIRE_FALSE(healthy.put("k", "v"));
    counted = slow.increment_async("n", 1, ttl::never()); // loads, and hangs
    REQUIRE(testing::eventually([&] { return loading->loads.load() == 1; }));
  }
};

} // namespace

TEST_CASE("a slow load in one cache takes no time from another cache's drain",
          "[runtime][shutdown][write_back]") {
  // Each cache settles, stops its shards and drains on its own. Before, every
  // flusher waited for the slowest cache's shards: here the healthy cache's
  // dirty write was stored only once the slow cache had given up settling.
  slow_beside_healthy f;
  auto& db = *f.db;
  // A long flush_timeout: the slow cache settles until the test lets its load go.
  auto stopping = std::async(std::launch::async, [&] { return f.rt.shutdown(30s); });
  // Opened before `stopping` waits for the shutdown, should a REQUIRE fail.
  testing::release_on_exit release_first{f.hung};
  // The drain stores k while the slow cache still settles (before: only once
  // it had given up, after half of flush_timeout).
  CHECK(testing::eventually([&] { return db.peek("k").has_value(); }, 20s));
  CHECK(f.log.containing("still had writes with the store or flusher").empty());
  f.hung.release();
  auto report = stopping.get();
  CHECK(report.unstored_writes() == 0);
  CHECK(db.peek("k") == std::optional<std::string>{"v"});
  // Let go while the slow cache still settled: its count went through.
  REQUIRE(f.counted.wait_for(10s) == std::future_status::ready);
  auto n = f.counted.get();
  REQUIRE(n);
  CHECK(*n == 1);
}

TEST_CASE(
  "a slow load in a write-back cache leaves its own flusher half of flush_timeout",
  "[runtime][shutdown][write_back]") {
  // Settling waits for a compute that loads; with one deadline for both steps,
  // a load that outlasts it would leave the flusher no time, and the dirty
  // writes would be reported unstored (without a journal: lost).
  testing::latch hung;
  runtime rt;
  testing::release_on_exit release{hung};
  auto db = std::make_shared<hanging_loads>(hung);
  auto c = testing::must(rt.create_cache(over("counters", db, write_mode::write_back)));
  REQUIRE_FALSE(c.put("k", "v"));
  auto counted = c.increment_async("n", 1, ttl::never()); // loads, and hangs
  REQUIRE(testing::eventually([&] { return db->loads.load() == 1; }));
  auto stopping = std::async(std::launch::async, [&] { return rt.shutdown(2s); });
  // Opened before `stopping` waits for the shutdown, should a REQUIRE fail.
  testing::release_on_exit release_first{hung};
  CHECK(testing::eventually([&] { return db->peek("k").has_value(); }, 20s));
  hung.release();
  auto report = stopping.get();
  CHECK(report.unstored_writes() == 0);
  // k was stored after the shards stopped, the load let go only then.
  REQUIRE(counted.wait_for(10s) == std::future_status::ready);
  auto n = counted.get();
  REQUIRE_FALSE(n);
  CHECK(n.error() == errc::shut_down);
}

TEST_CASE(
  "a write-through cache settles for all of flush_timeout beside a write-back one",
  "[runtime][shutdown]") {
  // Half of it is kept for a flusher only in a write-back cache: a
  // write-through store slower than that still has its writes told. Before,
  // any write-back cache in the runtime halved every cache's settling.
  slow_beside_healthy f;
  constexpr auto flush_timeout = 2s;
  auto started = std::chrono::steady_clock::now();
  auto stopping =
    std::async(std::launch::async, [&] { return f.rt.shutdown(flush_timeout); });
  // Opened before `stopping` waits for the shutdown, should a REQUIRE fail.
  testing::release_on_exit release_first{f.hung};
  auto gave_up = f.log.wait_for("still had writes with the store or flusher", 20s);
  auto took = std::chrono::steady_clock::now() - started;
  f.hung.release();
  auto report = stopping.get();
  REQUIRE_FALSE(gave_up.empty());
  CHECK(took >= flush_timeout - 100ms); // before: half of it
  CHECK(report.unstored_writes() == 0);
  REQUIRE(f.counted.wait_for(10s) == std::future_status::ready);
}

TEST_CASE("destroying a runtime whose system runs a service actor says so, never hangs "
          "silently",
          "[runtime][shutdown]") {
  testing::log_sink_lines log;
  auto rt = std::make_unique<runtime>();
  REQUIRE(rt->create_cache("users"));
  // As a new user would: an actor of the service's own on the runtime's system.
  // (An argument, as CAF 0.17 dereferences a null tuple for none: UBSan.)
  caf::actor service =
    rt->system().spawn([](int) -> caf::behavior { return {[](int x) { return x; }}; }, 0);
  caf::logger::set_current_actor_system(nullptr); // as the README asks
  std::atomic<bool> returned{false};
  std::thread destroyer{[&] {
    rt.reset();
    returned = true;
  }};
  // The runtime's own actors are gone at once; the service's keeps the
  // system's destructor waiting, and the log names what it waits for.
  auto line = log.wait_for("still running", 60s);
  CHECK_FALSE(returned.load());
  // Stopping the service's actor lets the destructor return.
  caf::anon_send_exit(service, caf::exit_reason::user_shutdown);
  service = nullptr;
  destroyer.join();
  REQUIRE_FALSE(line.empty());
  CHECK(line.find("1 actor") != std::string::npos);
  CHECK(line.find("anon_send_exit") != std::string::npos);
}

TEST_CASE("destroying a runtime that a thread's logger reference holds says so",
          "[runtime][shutdown]") {
  testing::log_sink_lines log;
  auto rt = std::make_unique<runtime>();
  // This thread spawns an actor and stops it, but keeps CAF's thread-local
  // reference to the system's logger, which ~actor_system waits for.
  auto service = rt->system().spawn([](int) -> caf::behavior { return {[](int) {}}; }, 0);
  caf::anon_send_exit(service, caf::exit_reason::user_shutdown);
  service = nullptr;
  std::thread destroyer{[&] { rt.reset(); }};
  auto line = log.wait_for("set_current_actor_system", 60s);
  caf::logger::set_current_actor_system(nullptr); // lets the destructor return
  destroyer.join();
  CHECK_FALSE(line.empty());
}

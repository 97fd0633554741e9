// Write-through and write-back through the whole runtime: shards, store
// writer, flusher, journal, and stores that fail or crawl on purpose.
#include <catch2/catch.hpp>

#include <atomic>
#include <future>
#include <random>
#include <thread>
#include <unordered_map>

#include "base/routing.hpp"
#include "stores/faulty_store.hpp"
#include "support/eventually.hpp"
#include "support/must.hpp"
#include <karlton/messages/errors.hpp>
#include <karlton/runtime/runtime.hpp>
#include <karlton/stores/forwarding_store.hpp>
#include <karlton/stores/memory_store.hpp>

using namespace karlton;
using namespace std::chrono_literals;
using karlton::testing::must;

namespace {

cache_options with_store(std::string name, std::shared_ptr<store> db, write_mode mode) {
  cache_options o;
  o.name = std::move(name);
  o.shards = 2;
  o.backing_store = std::move(db);
  o.writes = mode;
  o.loader_concurrency = 2;
  return o;
}

/// A store in memory (`rows`) that fails writes while `failing` is set.
class switchable_store final : public forwarding_store {
public:
  switchable_store() : switchable_store(std::make_shared<memory_store>()) {}

  const std::shared_ptr<memory_store> rows;
  std::atomic<bool> failing{false};

  caf::error write_batch(const std::vector<store_write>& b) override {
    if (failing) return make_error(errc::store_failure, "switched off");
    return rows->write_batch(b);
  }

private:
  explicit switchable_store(std::shared_ptr<memory_store> in_memory)
    : forwarding_store(in_memory), rows(std::move(in_memory)) {}
};

} // namespace

TEST_CASE("write-through stores first, then caches", "[write_through]") {
  auto db = std::make_shared<switchable_store>();
  runtime rt;
  auto c = must(rt.create_cache(with_store("users", db, write_mode::write_through)));
  REQUIRE_FALSE(c.put("u1", "alice"));
  CHECK(db->rows->peek("u1") == std::optional<std::string>{"alice"});
  CHECK(must(c.get("u1")).bytes() == "alice");
}

TEST_CASE("write-through: a store failure reaches the caller and leaves the cache alone",
          "[write_through]") {
  auto db = std::make_shared<switchable_store>();
  runtime rt;
  auto c = must(rt.create_cache(with_store("users", db, write_mode::write_through)));
  REQUIRE_FALSE(c.put("u1", "alice"));
  db->failing = true;
  auto err = c.put("u1", "mallory");
  CHECK(err == errc::store_failure);
  CHECK(must(c.get("u1")).bytes() == "alice");
  CHECK(db->rows->peek("u1") == std::optional<std::string>{"alice"});
  auto many = c.put_many({{"u2", "bob"}, {"u3", "carol"}});
  CHECK(many == errc::store_failure);
  CHECK_FALSE(must(c.contains("u2")));
}

TEST_CASE("write-through delete removes from the store, then the cache",
          "[write_through]") {
  auto db = std::make_shared<switchable_store>();
  runtime rt;
  auto c = must(rt.create_cache(with_store("users", db, write_mode::write_through)));
  REQUIRE_FALSE(c.put("u1", "alice"));
  db->failing = true;
  CHECK_FALSE(c.erase("u1")); // the store refused: still cached
  CHECK(must(c.contains("u1")));
  db->failing = false;
  CHECK(must(c.erase("u1")));
  CHECK_FALSE(db->rows->peek("u1"));
  CHECK_FALSE(must(c.contains("u1")));
  // A miss now loads from the store, which has nothing.
  auto r = c.get_or_load("u1");
  REQUIRE_FALSE(r);
  CHECK(r.error() == errc::not_found);
}

TEST_CASE("write-back acknowledges before the store has it and force_flush stores it",
          "[write_back]") {
  auto db = std::make_shared<memory_store>();
  runtime rt;
  auto o = with_store("events", db, write_mode::write_back);
  o.flush_interval = std::chrono::hours{1}; // only force_flush or a full batch
  auto c = must(rt.create_cache(o));
  for (int i = 0; i < 10; ++i)
    REQUIRE_FALSE(c.put("k" + std::to_string(i), "v" + std::to_string(i)));
  CHECK(db->size() == 0);
  CHECK(must(c.dirty_count()) == 10);
  CHECK(must(c.get("k3")).bytes() == "v3"); // read your writes
  REQUIRE_FALSE(c.force_flush());
  CHECK(db->size() == 10);
  CHECK(must(c.dirty_count()) == 0);
  auto s = must(c.flush_stats());
  CHECK(s.writes == 10);
  CHECK(s.entries_flushed == 10);
  CHECK(s.batches == 1);
}

TEST_CASE("write-back batches by size", "[write_back]") {
  auto db = std::make_shared<memory_store>();
  runtime rt;
  auto o = with_store("events", db, write_mode::write_back);
  o.batch_size = 100;
  o.flush_interval = std::chrono::hours{1};
  auto c = must(rt.create_cache(o));
  for (int i = 0; i < 250; ++i)
    REQUIRE_FALSE(c.put("k" + std::to_string(i), "v"));
  REQUIRE_FALSE(c.force_flush());
  auto s = must(c.flush_stats());
  CHECK(s.entries_flushed == 250);
  CHECK(s.batches >= 3); // two full ones by size, the rest by force_flush
}

TEST_CASE("write-back coalesces writes of one key", "[write_back]") {
  auto db = std::make_shared<memory_store>();
  runtime rt;
  auto o = with_store("counters", db, write_mode::write_back);
  o.flush_interval = std::chrono::hours{1};
  auto c = must(rt.create_cache(o));
  for (int i = 1; i <= 100; ++i)
    REQUIRE_FALSE(c.put("hits", std::to_string(i)));
  REQUIRE_FALSE(c.force_flush());
  CHECK(db->peek("hits") == std::optional<std::string>{"100"});
  auto s = must(c.flush_stats());
  CHECK(s.writes == 100);
  CHECK(s.entries_flushed == 1);
  CHECK(s.writes_coalesced == 99);
}

TEST_CASE("write-back under eviction pressure loses nothing and reads the latest",
          "[write_back]") {
  auto db = std::make_shared<memory_store>();
  REQUIRE_FALSE(db->write_batch({{"k0", std::string{"from-store"}}}));
  runtime rt;
  auto o = with_store("small", db, write_mode::write_back);
  o.max_entries = 8;
  o.flush_interval = 20ms;
  auto c = must(rt.create_cache(o));
  for (int round = 0; round < 3; ++round)
    for (int i = 0; i < 200; ++i)
      REQUIRE_FALSE(c.put("k" + std::to_string(i), "r" + std::to_string(round)));
  // Whether an entry is cached, dirty or evicted, get_or_load sees the last write.
  for (int i = 0; i < 200; ++i)
    CHECK(must(c.get_or_load("k" + std::to_string(i))).bytes() == "r2");
  REQUIRE_FALSE(c.force_flush());
  for (int i = 0; i < 200; ++i)
    CHECK(db->peek("k" + std::to_string(i)) == std::optional<std::string>{"r2"});
  auto st = must(c.stats());
  CHECK(st.entries <= 8 + 2); // back under its bound (rounded up per shard)
  CHECK(st.evictions > 0);
}

TEST_CASE("writes waiting for room under max-dirty are stored at once, not at the "
          "interval",
          "[write_back]") {
  auto db = std::make_shared<memory_store>();
  runtime rt;
  auto o = with_store("tight", db, write_mode::write_back);
  o.max_dirty = 4;
  o.batch_size = 100;
  o.flush_interval = std::chrono::hours{1}; // never, in this test
  o.call_timeout = 20s;                     // a parked put gives up after 15 s
  auto c = must(rt.create_cache(o));
  for (int i = 0; i < 40; ++i)
    REQUIRE_FALSE(c.put("k" + std::to_string(i), "v"));
  // Each put got a unit of the 4, and units come back only once stored.
  CHECK(db->size() >= 36);
  CHECK(must(c.flush_stats()).batches >= 9);
}

TEST_CASE("write-back erase is a delete that reads never see past", "[write_back]") {
  auto db = std::make_shared<memory_store>();
  REQUIRE_FALSE(db->write_batch({{"k", std::string{"stored"}}}));
  runtime rt;
  auto o = with_store("c", db, write_mode::write_back);
  o.flush_interval = std::chrono::hours{1};
  auto c = must(rt.create_cache(o));
  CHECK_FALSE(must(c.erase("k"))); // not cached, but deleted all the same
  auto r = c.get_or_load("k");     // the store still has it; the flusher knows better
  REQUIRE_FALSE(r);
  CHECK(r.error() == errc::not_found);
  REQUIRE_FALSE(c.force_flush());
  CHECK_FALSE(db->peek("k"));
}

TEST_CASE("write-back with 30 percent of batches failing stores exactly the last writes",
          "[write_back][fault]") {
  auto db = std::make_shared<memory_store>();
  auto faulty = std::make_shared<faulty_store>(db, 0.3, 42);
  runtime rt;
  auto o = with_store("flaky", faulty, write_mode::write_back);
  o.batch_size = 500;
  o.flush_interval = 5ms;
  o.retry_base = 1ms;
  o.retry_max = 8ms;
  auto c = must(rt.create_cache(o));
  constexpr int keys = 10'000;
  constexpr int writes = 100'000;
  std::vector<std::string> last(keys);
  std::mt19937_64 rng{7};
  // Two threads, each owning half the keys, so "last acknowledged" is defined.
  auto writer = [&](int part) {
    std::mt19937_64 r{static_cast<uint64_t>(part) + 1};
    for (int i = 0; i < writes / 2; ++i) {
      int k = static_cast<int>(r() % (keys / 2)) * 2 + part;
      auto v = "w" + std::to_string(i) + "-" + std::to_string(part);
      auto err = c.put("key" + std::to_string(k), v);
      REQUIRE_FALSE(err);
      last[k] = v;
    }
  };
  std::thread t0{writer, 0}, t1{writer, 1};
  t0.join();
  t1.join();
  REQUIRE_FALSE(c.force_flush());
  CHECK(faulty->failed_batches() > 0);
  size_t wrong = 0;
  for (int k = 0; k < keys; ++k)
    if (!last[k].empty() && db->peek("key" + std::to_string(k)) != last[k]) ++wrong;
  CHECK(wrong == 0);
  auto s = must(c.flush_stats());
  CHECK(s.flush_failures == faulty->failed_batches());
  CHECK(s.dirty == 0);
  INFO("batches " << s.batches << ", failures " << s.flush_failures);
}

TEST_CASE("a slow store keeps pending writes at or under max-dirty",
          "[write_back][backpressure]") {
  auto db = std::make_shared<memory_store>();
  auto slow = std::make_shared<slow_store>(db, 2ms);
  runtime rt;
  auto o = with_store("slow", slow, write_mode::write_back);
  o.max_dirty = 200;
  o.batch_size = 50;
  o.flush_interval = 1ms;
  auto c = must(rt.create_cache(o));
  std::atomic<bool> done{false};
  std::atomic<uint64_t> worst{0};
  std::thread watcher{[&] {
    while (!done) {
      if (auto n = c.dirty_count(); n && *n > worst) worst = *n;
      std::this_thread::yield();
    }
  }};
  auto writer = [&](int part) {
    for (int i = 0; i < 2000; ++i)
      REQUIRE_FALSE(c.put("k" + std::to_string(part) + "-" + std::to_string(i), "v"));
  };
  std::thread w0{writer, 0}, w1{writer, 1};
  w0.join();
  w1.join();
  done = true;
  watcher.join();
  CHECK(worst <= 200);
  CHECK(worst > 0);
  REQUIRE_FALSE(c.force_flush());
  CHECK(db->size() == 4000);
}

TEST_CASE("a put that finds no room within its wait fails with overloaded",
          "[write_back][backpressure]") {
  auto db = std::make_shared<switchable_store>();
  db->failing = true; // nothing is ever stored: no room is ever made
  runtime rt;
  auto o = with_store("stuck", db, write_mode::write_back);
  o.max_dirty = 4;
  o.call_timeout = 400ms;
  o.flush_interval = 1ms;
  auto c = must(rt.create_cache(o));
  for (int i = 0; i < 4; ++i)
    REQUIRE_FALSE(c.put("k" + std::to_string(i), "v"));
  // Asynchronous, so the answer is the shard's alone: parked for the room
  // wait (3/4 of call-timeout), then `overloaded`, however late a loaded
  // machine runs the timer. A blocking put would race its own 400 ms deadline.
  auto answer = c.put_async("one-too-many", "v");
  REQUIRE(answer.wait_for(30s) == std::future_status::ready);
  auto result = answer.get();
  REQUIRE_FALSE(result);
  CHECK(result.error() == errc::overloaded);
  CHECK_FALSE(must(c.contains("one-too-many")));
  CHECK(must(c.dirty_count()) == 4);
  db->failing = false; // the store recovers: the retries store everything
  REQUIRE_FALSE(c.force_flush());
  CHECK(db->rows->size() == 4);
  REQUIRE_FALSE(c.put("one-too-many", "v"));
}

TEST_CASE("a shard whose first write waits for room gets it when another shard's write "
          "is stored",
          "[write_back][backpressure]") {
  auto db = std::make_shared<switchable_store>();
  db->failing = true;
  runtime rt;
  auto o = with_store("room", db, write_mode::write_back);
  o.max_dirty = 1;
  o.call_timeout = 60s; // the room wait, 45 s: far past the check below
  o.flush_interval = 1ms;
  o.retry_base = 1ms;
  o.retry_max = 5ms;
  auto c = must(rt.create_cache(o));
  // One key on each of the two shards.
  auto key_on = [](size_t shard) {
    for (int i = 0;; ++i) {
      auto k = "k" + std::to_string(i);
      if (shard_index(hash_key(k), 2) == shard) return k;
    }
  };
  REQUIRE_FALSE(c.put(key_on(0), "a")); // takes the only unit; not stored yet
  auto parked = c.put_async(key_on(1), "b");
  REQUIRE(testing::eventually([&] { return must(c.stats()).writes_parked == 1; }));
  // Storing the first write frees the unit. The flusher told only the shards
  // it had heard from, so this one waited for its 45 s timer before.
  db->failing = false;
  REQUIRE(parked.wait_for(20s) == std::future_status::ready);
  CHECK_FALSE(parked.get().error());
  REQUIRE_FALSE(c.force_flush());
  CHECK(db->rows->size() == 2);
}

TEST_CASE("shutdown flushes write-back caches and reports what it could not store",
          "[write_back][shutdown]") {
  auto good = std::make_shared<memory_store>();
  auto broken = std::make_shared<switchable_store>();
  broken->failing = true;
  runtime rt;
  auto o = with_store("good", good, write_mode::write_back);
  o.flush_interval = std::chrono::hours{1};
  auto g = must(rt.create_cache(o));
  auto b = must(rt.create_cache(with_store("broken", broken, write_mode::write_back)));
  for (int i = 0; i < 50; ++i) {
    REQUIRE_FALSE(g.put("k" + std::to_string(i), "v"));
    REQUIRE_FALSE(b.put("k" + std::to_string(i), "v"));
  }
  auto report = rt.shutdown(300ms);
  CHECK(good->size() == 50);
  REQUIRE(report.unstored.size() == 1);
  CHECK(report.unstored[0].first == "broken");
  CHECK(report.unstored[0].second == 50);
  CHECK(report.unstored_writes() == 50);
  CHECK(rt.shutdown().unstored_writes() == 0); // idempotent
  CHECK(g.put("late", "v") == errc::shut_down);
}

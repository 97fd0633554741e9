// The compute family and set_ttl through the whole runtime, from plain
// threads: no lost update under every write mode, one CAS winner, direct
// reads after a compute, the future and callback forms, actor messages.
#include <catch2/catch.hpp>

#include <atomic>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include <caf/all.hpp>

#include "support/must.hpp"
#include <karlton/messages/errors.hpp>
#include <karlton/runtime/runtime.hpp>
#include <karlton/stores/memory_store.hpp>

using namespace karlton;
using namespace std::chrono_literals;
using karlton::testing::must;

namespace {

cache_options named(std::string name) {
  cache_options o;
  o.name = std::move(name);
  o.shards = 2;
  return o;
}

cache_options with_store(std::string name, std::shared_ptr<store> db, write_mode mode) {
  auto o = named(std::move(name));
  o.backing_store = std::move(db);
  o.writes = mode;
  o.loader_concurrency = 2;
  return o;
}

// 8 threads x 10k increments of one key: every one counted.
void increments_lose_nothing(cache& c) {
  constexpr int threads = 8;
  constexpr int each = 10000;
  std::vector<std::thread> pool;
  std::atomic<int> failures{0};
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&] {
      for (int i = 0; i < each; ++i)
        if (!c.increment("counter")) ++failures;
    });
  for (auto& th : pool)
    th.join();
  CHECK(failures == 0);
  CHECK(must(c.get("counter")).bytes() == std::to_string(threads * each));
}

} // namespace

TEST_CASE("8 threads x 10k increments lose no update", "[compute]") {
  runtime rt;
  auto c = must(rt.create_cache(named("counters")));
  increments_lose_nothing(c);
}

TEST_CASE("8 threads x 10k increments lose no update under write-through",
          "[compute][write-through]") {
  auto db = std::make_shared<memory_store>();
  runtime rt;
  auto c = must(rt.create_cache(with_store("counters", db, write_mode::write_through)));
  increments_lose_nothing(c);
  CHECK(db->peek("counter") == std::optional<std::string>{"80000"});
}

TEST_CASE("8 threads x 10k increments lose no update under write-back",
          "[compute][write-back]") {
  auto db = std::make_shared<memory_store>();
  runtime rt;
  auto o = with_store("counters", db, write_mode::write_back);
  o.max_dirty = 4; // computes park behind writes waiting for room
  auto c = must(rt.create_cache(o));
  increments_lose_nothing(c);
  REQUIRE_FALSE(c.force_flush());
  CHECK(db->peek("counter") == std::optional<std::string>{"80000"});
}

TEST_CASE("compare_and_set: exactly one of 4 racing threads wins each round",
          "[compute]") {
  runtime rt;
  auto c = must(rt.create_cache(named("cas")));
  REQUIRE_FALSE(c.put("k", "0"));
  for (int round = 0; round < 200; ++round) {
    std::atomic<int> wins{0};
    auto from = std::to_string(round);
    std::vector<std::thread> pool;
    for (int t = 0; t < 4; ++t)
      pool.emplace_back([&, t] {
        auto to = std::to_string(round + 1);
        if (must(c.compare_and_set("k", from, to))) ++wins;
      });
    for (auto& th : pool)
      th.join();
    REQUIRE(wins == 1);
  }
  CHECK(must(c.get("k")).bytes() == "200");
}

TEST_CASE("a direct read after compute returned sees the new value", "[compute]") {
  runtime rt;
  auto c = must(rt.create_cache(named("direct")));
  for (int i = 1; i <= 1000; ++i) {
    REQUIRE(must(c.increment("k")) == i);
    REQUIRE(must(c.get("k")).bytes() == std::to_string(i)); // served on this thread
  }
  auto r = must(c.compute("k", [](const value& cur) {
    return compute_result::put(std::string{cur.bytes()} + "!");
  }));
  CHECK(r.before.bytes() == "1000");
  CHECK(must(c.get("k")).bytes() == "1000!");
}

TEST_CASE("a throwing compute fails with compute_failed and the cache keeps serving",
          "[compute]") {
  runtime rt;
  auto c = must(rt.create_cache(named("throws")));
  REQUIRE_FALSE(c.put("k", "v"));
  auto r = c.compute("k", [](const value&) -> compute_result { throw 42; });
  REQUIRE_FALSE(r);
  CHECK(r.error() == errc::compute_failed);
  CHECK(must(c.get("k")).bytes() == "v");
  CHECK(c.increment("k").error() == errc::not_an_integer);
}

TEST_CASE("a counter stored then evicted from a read-through cache continues from the "
          "store's value",
          "[compute][write-through]") {
  auto db = std::make_shared<memory_store>();
  runtime rt;
  auto c = must(rt.create_cache(with_store("evicted", db, write_mode::write_through)));
  CHECK(must(c.increment("k", 41)) == 41);
  REQUIRE(must(c.erase("k"))); // gone from the cache and the store: starts over
  CHECK(must(c.increment("k")) == 1);
  REQUIRE_FALSE(db->write_batch({store_write{"k", std::string{"99"}}}));
  REQUIRE(c.clear()); // only the cache forgets
  CHECK(must(c.increment("k")) == 100);
}

TEST_CASE("the future and callback forms, set_ttl and merge", "[compute]") {
  runtime rt;
  auto c = must(rt.create_cache(named("forms")));
  CHECK(must(c.increment_async("n", 5, ttl::never()).get()) == 5);
  CHECK(must(c.compare_and_set_async("n", std::string_view{"5"}, std::string_view{"6"},
                                     ttl::never())
               .get()));
  std::promise<caf::expected<int64_t>> p;
  c.increment_async("n", 1, ttl::never(),
                    [&](caf::expected<int64_t> r) { p.set_value(std::move(r)); });
  CHECK(must(p.get_future().get()) == 7);
  auto before = must(c.set_ttl("n", 10s));
  CHECK(before.state == remaining_ttl::never_expires);
  CHECK(must(c.ttl_of("n")).state == remaining_ttl::expires);
  CHECK(must(c.set_ttl_async("n", std::nullopt).get()).state == remaining_ttl::expires);
  CHECK(must(c.ttl_of("n")).state == remaining_ttl::never_expires);
  CHECK(must(c.set_ttl("absent", 1s)).state == remaining_ttl::missing);
  auto join = [](std::string_view a, std::string_view b) {
    return std::optional<std::string>{std::string{a} + "," + std::string{b}};
  };
  REQUIRE(must(c.merge("list", "a", join)).after.bytes() == "a");
  REQUIRE(must(c.merge("list", "b", join)).after.bytes() == "a,b");
  auto many = must(c.get_many_async({"n", "list", "none"}).get());
  CHECK(many[0].bytes() == "7");
  CHECK(many[1].bytes() == "a,b");
  CHECK_FALSE(many[2]);
}

TEST_CASE("increment, compare_and_set and set_ttl as shard messages", "[compute]") {
  runtime rt;
  auto c = must(rt.create_cache(named("actors")));
  caf::scoped_actor self{rt.system()};
  auto shard = c.shard_for("k");
  int64_t sum = 0;
  self
    ->request(shard, caf::infinite, increment_atom::value, std::string{"k"}, int64_t{3},
              ttl::never())
    .receive([&](int64_t n) { sum = n; }, [](caf::error& e) { FAIL(describe(e)); });
  CHECK(sum == 3);
  bool stored = false;
  compare_and_set_args args{"k", true, "3", true, "4", ttl::never()};
  self->request(shard, caf::infinite, compare_and_set_atom::value, args)
    .receive([&](bool b) { stored = b; }, [](caf::error& e) { FAIL(describe(e)); });
  CHECK(stored);
  remaining_ttl before;
  self
    ->request(shard, caf::infinite, set_ttl_atom::value, std::string{"k"}, false,
              caf::timespan{5s})
    .receive([&](remaining_ttl r) { before = r; },
             [](caf::error& e) { FAIL(describe(e)); });
  CHECK(before.state == remaining_ttl::never_expires);
  CHECK(must(c.get("k")).bytes() == "4");
  CHECK(must(c.ttl_of("k")).state == remaining_ttl::expires);
}

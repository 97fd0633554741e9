// Dependencies in caches with a write mode: the store gets the value as any
// put's, the links go in with it (write-back: at once; write-through: once
// the store took it), and an event, tag or key they name invalidates the
// cached copy, never the store's row.
#include <catch2/catch.hpp>

#include <chrono>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "server/gated_store.hpp"
#include "support/eventually.hpp"
#include "support/must.hpp"
#include <karlton/messages/errors.hpp>
#include <karlton/runtime/runtime.hpp>
#include <karlton/stores/memory_store.hpp>

using namespace karlton;
using karlton::testing::must;

namespace {

dependencies on_events(std::vector<std::string> xs) {
  return dependencies{}.on_events(std::move(xs));
}

cache make(runtime& rt, std::shared_ptr<store> db, write_mode mode) {
  cache_options o;
  o.name = "wm";
  o.shards = 2;
  o.backing_store = std::move(db);
  o.writes = mode;
  return must(rt.create_cache(o));
}

bool cached(const cache& c, const std::string& key) {
  return must(c.contains(key));
}

} // namespace

TEST_CASE("a put with dependencies in a write mode is stored, and its event "
          "invalidates only the cached copy, and one past the limits is not stored",
          "[events][write-modes]") {
  for (auto mode : {write_mode::write_through, write_mode::write_back}) {
    INFO("write mode " << static_cast<int>(mode));
    runtime rt;
    auto db = std::make_shared<memory_store>();
    auto c = make(rt, db, mode);
    // Past the limits: refused before the store sees it.
    std::vector<std::string> many(257, "e"); // one past max_dependencies
    CHECK(c.put("big", "v", ttl::never(), on_events(many)) == errc::invalid_option);
    REQUIRE_FALSE(c.put("k", "v", ttl::never(), on_events({"e"})));
    REQUIRE_FALSE(c.put("t", "w", ttl::never(), dependencies{}.on_keys({"tag-1"})));
    REQUIRE_FALSE(c.force_flush());
    CHECK_FALSE(db->peek("big"));
    CHECK_FALSE(cached(c, "big"));
    CHECK(db->peek("k") == std::optional<std::string>{"v"});
    CHECK(must(c.get("k")).bytes() == "v");
    CHECK(must(c.stats()).dependency_links == 2);
    CHECK(must(rt.emit("e")).removed == 1);
    CHECK_FALSE(cached(c, "k"));
    CHECK(db->peek("k") == std::optional<std::string>{"v"}); // the store keeps it
    CHECK(must(rt.invalidate_tag("tag-1")).removed == 1);
    CHECK_FALSE(cached(c, "t"));
    // A plain put replaces the links with none.
    REQUIRE_FALSE(c.put("k", "v2", ttl::never(), on_events({"e"})));
    REQUIRE_FALSE(c.put("k", "v3"));
    CHECK(must(rt.emit("e")).removed == 0);
    CHECK(must(c.get("k")).bytes() == "v3");
    CHECK(must(c.stats()).dependency_links == 0);
  }
}

// Write-through caches over a store that holds writes back until released
// (`gated_store`): what is at the store meanwhile is known.
struct held_store {
  std::shared_ptr<testing::gated_store> db = std::make_shared<testing::gated_store>();
  runtime rt; // stopped before `db` goes: its shutdown waits for the store's writes
  struct opener {
    testing::gated_store& db;
    ~opener() { db.gate.release(); } // a failed REQUIRE must not hang the shutdown
  } open_at_exit{*db};
  cache c = make(rt, db, write_mode::write_through);
  void wait_for_held_write() {
    REQUIRE(testing::eventually([&] { return db->writes_waiting.load() == 1; }));
  }
};

TEST_CASE("write-through: an event while the store has the put voids its copy",
          "[events][write-modes]") {
  // As an invalidation of the key voids a put the store has (rule 1): the
  // value may be older than the change the event stands for.
  held_store s;
  auto j = s.c.put_async("j", "w", ttl::never(), on_events({"f"}));
  s.wait_for_held_write(); // j is at the store
  auto k = s.c.put_async("k", "v", ttl::never(), on_events({"e"}));
  CHECK_FALSE(cached(s.c, "k"));            // after k's put in its shard
  CHECK(must(s.rt.emit("e")).removed == 0); // nothing cached yet
  s.db->gate.release();
  REQUIRE(j.get());
  REQUIRE(k.get());
  CHECK(s.db->rows->peek("k") == std::optional<std::string>{"v"}); // stored
  CHECK_FALSE(cached(s.c, "k"));                                   // not cached
  CHECK(cached(s.c, "j")); // another event's put: left alone
}

TEST_CASE("write-through: a compute's write of an entry invalidated meanwhile is voided",
          "[events][write-modes]") {
  // The compute keeps the entry's links; an event took them (and the entry)
  // while the store had its write. Before, it went in with none.
  held_store s;
  s.db->holding = false;
  REQUIRE_FALSE(s.c.put("k", "1", ttl::never(), on_events({"e"})));
  s.db->holding = true;
  auto r = s.c.compute_async("k", [](const value&) { return compute_result::put("2"); });
  s.wait_for_held_write();
  CHECK(must(s.rt.emit("e")).removed == 1);
  s.db->gate.release();
  REQUIRE(r.get());
  CHECK(s.db->rows->peek("k") == std::optional<std::string>{"2"});
  CHECK_FALSE(cached(s.c, "k"));
}

TEST_CASE("write-through: a put with dependencies that waited behind a compute links "
          "its own",
          "[events][write-modes]") {
  held_store s;
  auto first = s.c.put_async("k", "1");
  s.wait_for_held_write();
  auto r = s.c.compute_async("k", [](const value&) { return compute_result::put("2"); });
  auto last = s.c.put_async("k", "3", ttl::never(), on_events({"e"})); // behind r
  s.db->gate.release();
  REQUIRE(first.get());
  REQUIRE(r.get());
  REQUIRE(last.get());
  CHECK(must(s.c.get("k")).bytes() == "3");
  CHECK(must(s.rt.emit("e")).removed == 1);
  CHECK(s.db->rows->peek("k") == std::optional<std::string>{"3"});
}

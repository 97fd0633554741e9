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
          "invalidates only the cached copy",
          "[events][write-modes]") {
  for (auto mode : {write_mode::write_through, write_mode::write_back}) {
    INFO("write mode " << static_cast<int>(mode));
    runtime rt;
    auto db = std::make_shared<memory_store>();
    auto c = make(rt, db, mode);
    REQUIRE_FALSE(c.put("k", "v", ttl::never(), on_events({"e"})));
    REQUIRE_FALSE(c.put("t", "w", ttl::never(), dependencies{}.on_keys({"tag-1"})));
    REQUIRE_FALSE(c.force_flush());
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

TEST_CASE("a put with dependencies past the limits is refused before the store sees it",
          "[events][write-modes]") {
  for (auto mode : {write_mode::write_through, write_mode::write_back}) {
    INFO("write mode " << static_cast<int>(mode));
    runtime rt;
    auto db = std::make_shared<memory_store>();
    auto c = make(rt, db, mode);
    std::vector<std::string> many(257, "e"); // one past max_dependencies
    CHECK(c.put("k", "v", ttl::never(), on_events(many)) == errc::invalid_option);
    REQUIRE_FALSE(c.force_flush());
    CHECK_FALSE(db->peek("k"));
    CHECK_FALSE(cached(c, "k"));
  }
}

TEST_CASE("write-through: an event while the store has the put voids its copy",
          "[events][write-modes]") {
  // As an invalidation of the key voids a put the store has (rule 1): the
  // value may be older than the change the event stands for.
  auto db = std::make_shared<testing::gated_store>();
  runtime rt; // stopped first: its shutdown waits for the store's writes
  struct opener {
    testing::gated_store& db;
    ~opener() { db.gate.release(); } // a failed REQUIRE must not hang the shutdown
  } open_at_exit{*db};
  auto c = make(rt, db, write_mode::write_through);
  auto put = c.put_async("k", "v", ttl::never(), on_events({"e"}));
  REQUIRE(testing::eventually([&] { return db->writes_waiting.load() == 1; }));
  CHECK(must(rt.emit("e")).removed == 0); // nothing cached yet
  db->gate.release();
  REQUIRE(put.get());
  CHECK(db->rows->peek("k") == std::optional<std::string>{"v"}); // stored
  CHECK_FALSE(cached(c, "k"));                                   // not cached
  // Another event leaves a put alone.
  auto other = c.put_async("j", "w", ttl::never(), on_events({"f"}));
  REQUIRE(other.get());
  CHECK(cached(c, "j"));
}

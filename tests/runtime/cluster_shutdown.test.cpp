// A node that shuts down while a write-through write is with the store: the
// write finishes, its caller hears success, and the other nodes hear of it
// (rule 6). Before, the shards stopped first: the caller heard shut_down,
// the store took the write anyway, and the others kept the old value.
#include <catch2/catch.hpp>

#include <memory>
#include <string>
#include <thread>

#include "server/gated_store.hpp"
#include "support/eventually.hpp"
#include "support/log_lines.hpp"
#include "support/must.hpp"
#include <karlton/messages/errors.hpp>
#include <karlton/runtime/runtime.hpp>

using namespace karlton;
using karlton::testing::eventually;
using karlton::testing::gated_store;
using karlton::testing::log_lines;
using karlton::testing::must;

TEST_CASE("a node's shutdown lets a write-through write with the store finish and tells "
          "the other nodes",
          "[cluster][shutdown][rule6]") {
  log_lines log;
  auto db = std::make_shared<gated_store>();
  auto options = [&](const std::string& name) {
    cluster_options o;
    o.node_name = name;
    o.secret = "secret";
    o.log = log.sink();
    return o;
  };
  runtime reader, writer;
  testing::release_on_exit open_gate{db->gate}; // goes first, should a REQUIRE fail
  must(reader.start_cluster(options("reader")));
  must(writer.start_cluster(options("writer")));
  REQUIRE_FALSE(writer.join("127.0.0.1", reader.cluster_port()));
  REQUIRE(eventually([&] { return must(reader.members()).size() == 1; }));
  auto ro = reader.default_options("users");
  ro.distributed = distribution::async;
  ro.backing_store = db->rows; // read-through from the same rows
  auto on_reader = must(reader.create_cache(ro));
  auto wo = reader.default_options("users");
  wo.distributed = distribution::async;
  wo.backing_store = db;
  wo.writes = write_mode::write_through;
  auto on_writer = must(writer.create_cache(wo));

  db->holding = false;
  REQUIRE_FALSE(on_writer.put("k", "old"));
  db->holding = true;
  REQUIRE(must(on_reader.get_or_load("k")).str() == "old");

  caf::error put_result = make_error(errc::timeout, "not answered");
  std::thread put{[&] { put_result = on_writer.put("k", "new"); }};
  REQUIRE(eventually([&] { return db->writes_waiting.load() > 0; }));
  std::thread stop{[&] { writer.shutdown(); }};
  // Shutdown began (it refuses new caches); now the store takes the write.
  CHECK(eventually([&] { return !writer.create_cache(writer.default_options("x")); }));
  db->gate.release();
  put.join();
  stop.join();
  CHECK_FALSE(put_result);
  CHECK(must(db->rows->load("k")) == std::optional<std::string>{"new"});
  CHECK(eventually([&] { return !must(on_reader.contains("k")); }));
  CHECK(must(on_reader.get_or_load("k")).str() == "new");
}

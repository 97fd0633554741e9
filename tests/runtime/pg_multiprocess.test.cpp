// The database tells every node (issue 16): two karlton-node processes over
// one PostgreSQL table, each with a LISTEN connection of its own; a row
// changed through psql goes from both caches. Waits are the console's `sync`
// (a barrier through each node's LISTEN connection) and bounded polls.
#include <catch2/catch.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "support/eventually.hpp"
#include "support/node_process.hpp"
#include "support/require_postgres.hpp"

using namespace std::chrono_literals;
using karlton::testing::eventually;
using karlton::testing::node_process;
using karlton::testing::pg_server;

namespace {

std::unique_ptr<node_process> start_node(const std::string& name, const pg_server& srv) {
  return std::make_unique<node_process>(
    name, KARLTON_NODE,
    std::vector<std::string>{
      "--karlton.cluster.node-name=" + name, "--karlton.cluster.port=0",
      "--karlton.cluster.secret=s3cret", "--karlton.shards=2",
      "--node.caches=[\"users\"]", "--node.store=" + srv.uri(),
      "--karlton.postgres.heartbeat=50ms", "--karlton.postgres.lease=5s",
      "--karlton.postgres.reconnect-max=200ms", "--node.stats-interval=0"});
}

// Loads `key` on `n` and waits until `get` hits: the node's feed is up and
// its lease holds, so a later miss means the key was invalidated.
bool load_and_hold(node_process& n, const std::string& key, const std::string& want) {
  return eventually(
    [&] {
      return n.ask("load users " + key) == "value " + want &&
             n.ask("get users " + key) == "value " + want;
    },
    30s, 20ms);
}

} // namespace

TEST_CASE("an UPDATE and a DELETE through psql invalidate the key on two node processes",
          "[pg_multiprocess]") {
  if (!karlton::testing::require_postgres()) return;
  pg_server srv{"two-nodes"};
  KARLTON_REQUIRE_SERVER(srv);
  auto a = start_node("a", srv);
  INFO(a->log());
  REQUIRE(a->ready());
  auto b = start_node("b", srv); // its open finds the table and triggers made
  INFO(b->log());
  REQUIRE(b->ready());
  srv.psql("INSERT INTO users(key, value) VALUES ('k', 'old')");
  REQUIRE(srv.last_psql_ok());
  for (auto* n : {a.get(), b.get()}) {
    REQUIRE(n->ask("sync", 30'000ms) == "ok"); // the INSERT's notification is in
    REQUIRE(load_and_hold(*n, "k", "old"));
  }

  srv.psql("UPDATE users SET value = 'new' WHERE key = 'k'");
  for (auto* n : {a.get(), b.get()}) {
    REQUIRE(n->ask("sync") == "ok");
    CHECK(n->ask("get users k") == "miss");
    CHECK(n->ask("load users k") == "value new");
    auto applied = karlton::testing::json_number(n->ask("changes"), "rows_applied");
    CHECK(applied.value_or(0) >= 1);
  }

  for (auto* n : {a.get(), b.get()})
    REQUIRE(load_and_hold(*n, "k", "new"));
  srv.psql("DELETE FROM users WHERE key = 'k'");
  for (auto* n : {a.get(), b.get()}) {
    REQUIRE(n->ask("sync") == "ok");
    CHECK(n->ask("get users k") == "miss");
    CHECK(n->ask("load users k") == "miss");
  }
}

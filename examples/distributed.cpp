// Distributed invalidation: three nodes, one invalidation, every copy gone.
//
// This replays the guide's distributed demonstration with real nodes: three
// karlton runtimes, each with its own actor system, that peer over loopback
// TCP through CAF's middleman (the guide's nodes are objects in one
// process). Node 2 and node 3 join node 1; node 3 learns of node 2 from node
// 1 and connects to it too (a full mesh). Each node caches user_123, read
// through from the database they share (a load is no change, so nothing is
// broadcast); node 1 erases it, and the erase travels as an invalidation
// ("delete, don't update": values never cross the network). The cache is `distribution =
// sync`, so the erase returns only once nodes 2 and 3 have applied it; the
// reads after it miss everywhere. Then the stats: each node's cache counters
// and its peer's (broadcasts sent, invalidations received and applied).
//
// Run it: scripts/run distributed
#include <chrono>
#include <iomanip>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "examples/example_support.hpp"
#include <karlton/runtime/runtime.hpp>
#include <karlton/stores/memory_store.hpp>

using examples::or_throw;
using examples::shown;

namespace {

int run() {
  std::cout << "=== Distributed Cache Demonstration ===\n";
  auto database = std::make_shared<karlton::memory_store>();
  or_throw(database->write_batch(
    {{"user_123", R"({"name": "John", "email": "john@example.com"})"}}));
  karlton::cluster_options cluster;
  cluster.secret = "demo secret: every node must know it";
  std::vector<std::unique_ptr<karlton::runtime>> nodes;
  std::vector<karlton::cache> users;
  for (int i = 1; i <= 3; ++i) {
    auto rt = std::make_unique<karlton::runtime>();
    cluster.node_name = "node" + std::to_string(i);
    auto port = or_throw(rt->start_cluster(cluster));
    std::cout << "[" << cluster.node_name << "] listening on 127.0.0.1:" << port << "\n";
    if (i > 1) or_throw(rt->join("127.0.0.1", nodes.front()->cluster_port()));
    auto opts = rt->default_options("users");
    opts.distributed = karlton::distribution::sync;
    opts.backing_store = database;
    users.push_back(or_throw(rt->create_cache(opts)));
    nodes.push_back(std::move(rt));
  }
  // Node 3 connects to node 2 in the background, after node 1 told it of
  // node 2; wait (bounded) until every node sees the other two.
  for (int tries = 0; tries < 500; ++tries) {
    bool mesh = true;
    for (auto& rt : nodes)
      mesh = mesh && or_throw(rt->members()).size() == 2;
    if (mesh) break;
    std::this_thread::sleep_for(std::chrono::milliseconds{10});
  }
  for (size_t i = 0; i < nodes.size(); ++i) {
    std::cout << "[node" << i + 1 << "] members:";
    for (auto& m : or_throw(nodes[i]->members()))
      std::cout << " " << m.name;
    std::cout << "\n";
  }

  // The same data in every node's cache, loaded from the shared database.
  for (auto& c : users)
    or_throw(c.get_or_load("user_123"));
  for (size_t i = 0; i < users.size(); ++i)
    std::cout << "Node " << i + 1 << ": " << shown(or_throw(users[i].get("user_123")))
              << "\n";

  std::cout << "\nInvalidating from node 1...\n";
  or_throw(users[0].erase("user_123"));
  std::cout << "node 1's erase returned: nodes 2 and 3 have applied it.\n";

  std::cout << "\nAfter invalidation:\n";
  for (size_t i = 0; i < users.size(); ++i)
    std::cout << "Node " << i + 1 << ": " << shown(or_throw(users[i].get("user_123")))
              << "\n";

  std::cout << "\nNode statistics:\n";
  for (size_t i = 0; i < nodes.size(); ++i) {
    auto s = or_throw(users[i].stats());
    auto p = or_throw(nodes[i]->cluster_stats());
    std::cout << "Node " << i + 1 << ": {size: " << s.entries << ", hits: " << s.hits
              << ", misses: " << s.misses << ", invalidations: " << s.invalidations
              << ", broadcasts_sent: " << p.broadcasts_sent
              << ", invalidations_received: " << p.invalidations_received
              << ", invalidations_applied: " << p.invalidations_applied
              << ", hit_rate: " << std::fixed << std::setprecision(2) << s.hit_rate()
              << "}\n";
  }
  return 0;
}

} // namespace

int main() {
  return examples::run_example("distributed", run);
}

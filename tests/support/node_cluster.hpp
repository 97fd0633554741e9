// A cluster of karlton-node processes for the multi-process tests
// (tests/runtime/multiprocess.test.cpp, cluster_forget.test.cpp): started on
// loopback, driven through their consoles, sharing one SQLite store so that
// every node can cache a key by loading it. Every wait is bounded; the
// children die with their node_process.
#pragma once

#include <catch2/catch.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "support/eventually.hpp"
#include "support/node_process.hpp"
#include "support/temp_dir.hpp"
#include <karlton/stores/sqlite_store.hpp>

#ifndef KARLTON_NODE
#error "KARLTON_NODE (the karlton-node binary's path) must be defined"
#endif

namespace karlton::testing {

using ms = std::chrono::milliseconds;

// A console command is a round trip to another process: polls ask every 20 ms.
constexpr std::chrono::milliseconds console_poll{20};
constexpr std::chrono::milliseconds default_wait{10'000};

// The first number after `"key":` in a `stats` reply; -1 if there is none.
// Per-cache counters ("lease_clears") come from the first cache, the only
// one these nodes have.
inline long long stat_of(const std::string& stats, const std::string& key) {
  auto n = karlton::testing::json_number(stats, key);
  return n ? static_cast<long long>(*n) : -1;
}

// Members in a `members` reply ("members a,b" is 2, "members " is 0).
inline int member_count(const std::string& reply) {
  if (reply.rfind("members ", 0) != 0) return -1;
  auto names = reply.substr(8);
  if (names.empty()) return 0;
  int n = 1;
  for (char c : names)
    n += c == ',';
  return n;
}

// A cluster of karlton-node processes with the cache "default", distributed
// `mode`, in front of one SQLite file they share. The test process writes
// the file too (`store`): a load then caches the same value everywhere
// without a put, whose invalidation would drop the other nodes' copies.
struct cluster {
  karlton::testing::temp_dir dir{"multiprocess"};
  std::string db = dir.file("store.db");
  std::string mode;
  std::string secret = "s3cret";
  std::vector<std::string> extra; // more options for every node
  std::vector<std::unique_ptr<node_process>> nodes;

  explicit cluster(std::string distribution, std::vector<std::string> more = {})
    : mode(std::move(distribution)), extra(std::move(more)) {}

  std::vector<std::string> args(const std::string& name, uint16_t seed_port,
                                const std::string& with_secret) const {
    std::vector<std::string> out = {
      "--karlton.cluster.node-name=" + name,
      "--karlton.cluster.port=0",
      "--karlton.cluster.secret=" + with_secret,
      "--karlton.distribution=" + mode,
      "--karlton.shards=2",
      "--node.store=" + db,
      "--node.stats-interval=0",
    };
    if (seed_port != 0)
      out.push_back("--karlton.cluster.seeds=[\"127.0.0.1:" + std::to_string(seed_port) +
                    "\"]");
    out.insert(out.end(), extra.begin(), extra.end());
    return out;
  }

  // Starts a node; the first one is the seed of all others.
  node_process& start(const std::string& name, const std::string& with_secret = {}) {
    uint16_t seed = nodes.empty() ? 0 : nodes.front()->port();
    auto p = std::make_unique<node_process>(
      name, KARLTON_NODE, args(name, seed, with_secret.empty() ? secret : with_secret));
    INFO(p->log());
    REQUIRE(p->ready());
    nodes.push_back(std::move(p));
    return *nodes.back();
  }

  node_process& operator[](size_t i) { return *nodes.at(i); }

  // Starts `n` nodes and waits until each sees the n-1 others.
  void start_all(size_t n) {
    for (size_t i = 1; i <= n; ++i)
      start("n" + std::to_string(i));
    REQUIRE(all_see(n - 1));
  }

  // True once every node in `which` (default: all) has `n` members.
  bool all_see(int n, std::vector<size_t> which = {}, ms limit = ms{15'000}) {
    if (which.empty())
      for (size_t i = 0; i < nodes.size(); ++i)
        which.push_back(i);
    return eventually(
      [&] {
        for (auto i : which)
          if (member_count(nodes[i]->ask("members")) != n) return false;
        return true;
      },
      limit, console_poll);
  }

  // Writes `key` = `value` straight into the shared file.
  void store(const std::string& key, const std::string& value) {
    auto s = sqlite_store::open(db, "default");
    REQUIRE(s);
    REQUIRE_FALSE((*s)->write_batch({store_write{key, value}}));
  }

  // Loads `key` on every node in `which`, each answering `value`.
  void load_on(const std::string& key, const std::string& value,
               std::vector<size_t> which) {
    for (auto i : which) {
      INFO(nodes[i]->label());
      REQUIRE(nodes[i]->ask("load default " + key) == "value " + value);
      REQUIRE(nodes[i]->ask("get default " + key) == "value " + value);
    }
  }

  // True once `get key` misses on node `i`.
  bool gone_on(size_t i, const std::string& key, ms limit = ms{5'000}) {
    return eventually([&] { return nodes[i]->ask("get default " + key) == "miss"; },
                      limit, console_poll);
  }
};

} // namespace karlton::testing

// Nodes in one process, each a runtime with its own actor system, peering
// over loopback TCP: membership, invalidations of keys, tags, events and
// clears, the synchronous guarantee (rule 7), authentication and bad input.
// Waits for background work (the mesh, async delivery) are bounded polls.
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <caf/all.hpp>
#include <caf/io/middleman.hpp>

#include "support/eventually.hpp"
#include "support/log_lines.hpp"
#include "support/must.hpp"
#include <karlton/messages/errors.hpp>
#include <karlton/runtime/runtime.hpp>

using namespace karlton;
using namespace std::chrono_literals;
using karlton::testing::eventually;
using karlton::testing::log_lines;
using karlton::testing::must;

namespace {

struct node {
  std::unique_ptr<runtime> rt = std::make_unique<runtime>();
  cache users;
};

// `n` nodes, each with a read-through cache "users" (distributed `mode`)
// whose loader answers "v1"; every node joined the first.
struct cluster {
  log_lines log;
  std::vector<node> nodes;

  bool tls;

  explicit cluster(size_t n, distribution mode = distribution::sync, bool use_tls = false)
    : tls(use_tls) {
    for (size_t i = 0; i < n; ++i) {
      node x;
      must(x.rt->start_cluster(options("node" + std::to_string(i), "secret")));
      if (i > 0) REQUIRE_FALSE(x.rt->join("127.0.0.1", nodes[0].rt->cluster_port()));
      auto o = x.rt->default_options("users");
      o.shards = 2;
      o.distributed = mode;
      o.loader = [](const std::string&) -> caf::expected<std::string> { return "v1"; };
      x.users = must(x.rt->create_cache(o));
      nodes.push_back(std::move(x));
    }
    REQUIRE(eventually([&] {
      for (auto& x : nodes)
        if (must(x.rt->members()).size() != nodes.size() - 1) return false;
      return true;
    }));
  }

  cluster_options options(std::string name, std::string secret) {
    cluster_options o;
    o.node_name = std::move(name);
    o.secret = std::move(secret);
    o.log = log.sink();
    o.tls = tls;
    return o;
  }

  // A node "sender" joined to node 1 that may have at most one invalidation
  // unapplied there, with a cache "users" of one shard: two keys put at
  // once leave in one broadcast, so in one batch, withheld from node 1.
  node sender_to_node1(distribution mode) {
    node x;
    auto o = options("sender", "secret");
    o.max_unacked = 1;
    must(x.rt->start_cluster(o));
    REQUIRE_FALSE(x.rt->join("127.0.0.1", nodes[1].rt->cluster_port()));
    auto co = x.rt->default_options("users");
    co.shards = 1;
    co.distributed = mode;
    x.users = must(x.rt->create_cache(co));
    return x;
  }

  // Every node caches `key` by loading it: a load is no change, so nothing
  // is broadcast and every node holds a copy.
  void cache_everywhere(const std::string& key) {
    for (auto& x : nodes)
      REQUIRE(must(x.users.get_or_load(key)).str() == "v1");
    for (auto& x : nodes)
      REQUIRE(must(x.users.contains(key)));
  }
};

} // namespace

TEST_CASE("nodes that join one seed form a full mesh", "[cluster]") {
  cluster c{3};
  auto names = [](std::vector<member_info> ms) {
    std::vector<std::string> out;
    for (auto& m : ms)
      out.push_back(m.name);
    std::sort(out.begin(), out.end());
    return out;
  };
  CHECK(names(must(c.nodes[2].rt->members())) ==
        std::vector<std::string>{"node0", "node1"});
  CHECK(names(must(c.nodes[1].rt->members())) ==
        std::vector<std::string>{"node0", "node2"});
  CHECK(c.log.contains("member joined: node2"));
}

TEST_CASE("a synchronous erase is applied on every node before it returns", "[cluster]") {
  cluster c{3, distribution::sync};
  for (int round = 0; round < 20; ++round) {
    auto key = "user_" + std::to_string(round);
    c.cache_everywhere(key);
    REQUIRE(must(c.nodes[round % 3].users.erase(key)));
    // No polling: once erase returned, no node may still serve the key.
    for (auto& x : c.nodes)
      CHECK_FALSE(must(x.users.get(key)));
  }
  auto s = must(c.nodes[1].rt->cluster_stats());
  CHECK(s.invalidations_applied >= 13);
  CHECK(s.gaps == 0);
  CHECK(s.repairs == 0);
}

TEST_CASE("a synchronous put invalidates the other copies before it returns",
          "[cluster]") {
  cluster c{2, distribution::sync};
  c.cache_everywhere("k");
  REQUIRE_FALSE(c.nodes[0].users.put("k", "v2"));
  CHECK(must(c.nodes[0].users.get("k")).str() == "v2");
  CHECK_FALSE(must(c.nodes[1].users.get("k"))); // dropped, not updated
}

TEST_CASE("an asynchronous erase reaches every node", "[cluster]") {
  cluster c{3, distribution::async};
  c.cache_everywhere("k");
  REQUIRE(must(c.nodes[0].users.erase("k")));
  CHECK_FALSE(must(c.nodes[0].users.get("k"))); // here at once
  CHECK(eventually([&] {
    return !must(c.nodes[1].users.contains("k")) && !must(c.nodes[2].users.contains("k"));
  }));
}

TEST_CASE("asynchronous invalidations do not wait for the batch delay or a heartbeat",
          "[cluster][batching]") {
  // Two nodes whose batch delay (30 s) and heartbeat (10 s) are far longer
  // than the wait below: only sending at once when idle, and what gathered
  // once the batch in flight is answered, gets the erases there in time.
  // Before that, the first erase waited for the heartbeat or the delay.
  log_lines log;
  std::vector<node> nodes(2);
  for (size_t i = 0; i < nodes.size(); ++i) {
    cluster_options o;
    o.node_name = "slow" + std::to_string(i);
    o.secret = "secret";
    o.log = log.sink();
    o.batch_delay = 30s;
    o.heartbeat = 10s;
    o.member_timeout = 60s;
    o.read_lease = 30s;
    must(nodes[i].rt->start_cluster(o));
    if (i > 0) REQUIRE_FALSE(nodes[i].rt->join("127.0.0.1", nodes[0].rt->cluster_port()));
    auto co = nodes[i].rt->default_options("users");
    co.distributed = distribution::async;
    nodes[i].users = must(nodes[i].rt->create_cache(co));
  }
  REQUIRE(eventually([&] { return must(nodes[1].rt->members()).size() == 1; }));
  constexpr int n = 200;
  std::vector<std::pair<std::string, std::string>> entries;
  for (int i = 0; i < n; ++i)
    entries.emplace_back("k" + std::to_string(i), "v");
  REQUIRE_FALSE(nodes[1].users.put_many(entries)); // puts invalidate node 0: nothing
  // All at once: the first goes out alone, the rest gather behind it, and
  // nothing comes after them (only its answer sends them in time).
  for (auto& [key, value] : entries) // not held here, and still broadcast
    nodes[0].users.erase_async(key, [](caf::expected<bool>) {});
  CHECK(eventually([&] { return must(nodes[1].users.stats()).entries == 0; }, 5s));
  auto s = must(nodes[1].rt->cluster_stats());
  CHECK(s.invalidations_applied >= n);
  CHECK(s.gaps == 0);
  CHECK(s.repairs == 0);
}

TEST_CASE("a clear reaches every node", "[cluster]") {
  cluster c{2, distribution::sync};
  c.cache_everywhere("a");
  c.cache_everywhere("b");
  REQUIRE(must(c.nodes[1].users.clear()) == 2);
  CHECK(must(c.nodes[0].users.stats()).entries == 0);
}

TEST_CASE("tags and events reach every node and a synchronous one is final",
          "[cluster]") {
  cluster c{3, distribution::sync};
  // An entry on node 2 that depends on a tag and one on an event.
  REQUIRE_FALSE(c.nodes[2].users.put("feed", "f", ttl::cache_default(),
                                     dependencies{}.on_keys({"tag:posts"})));
  REQUIRE_FALSE(c.nodes[2].users.put("profile", "p", ttl::cache_default(),
                                     dependencies{}.on_events({"user_updated"})));
  std::atomic<int> heard{0};
  REQUIRE_FALSE(c.nodes[1].rt->subscribe(
    "user_updated", [&](const std::string&, const std::string& data) {
      if (data == "user_123") ++heard;
    }));
  REQUIRE(must(c.nodes[0].rt->invalidate_tag("tag:posts")).removed == 0); // none here
  CHECK_FALSE(must(c.nodes[2].users.get("feed")));
  CHECK(must(c.nodes[2].users.get("profile")));
  must(c.nodes[0].rt->emit("user_updated", "user_123"));
  CHECK_FALSE(must(c.nodes[2].users.get("profile")));
  // Node 1's subscriber, told through node 1's bus: subscribers run on actors
  // of their own, after the invalidation (also on a single node), so wait for it.
  CHECK(eventually([&] { return heard == 1; }));
}

TEST_CASE("a member too far behind is skipped and repairs from the gap", "[cluster]") {
  cluster c{2, distribution::async};
  c.cache_everywhere("k");
  // Node 0 may have at most one invalidation unapplied at node 1: a batch
  // of two is withheld from node 1, which learns of it from the numbering
  // of the next batch or heartbeat and clears (rule 6).
  node sender = c.sender_to_node1(distribution::async);
  auto& users = sender.users;
  REQUIRE_FALSE(users.put_many({{"a", "1"}, {"b", "2"}}));
  CHECK(
    eventually([&] { return must(sender.rt->cluster_stats()).batches_withheld >= 1; }));
  CHECK(eventually([&] { return !must(c.nodes[1].users.contains("k")); }));
  auto s = must(c.nodes[1].rt->cluster_stats());
  CHECK(s.gaps >= 1);
  CHECK(s.repairs >= 1);
}

TEST_CASE("a synchronous call names a member a batch was withheld from",
          "[cluster][rule7]") {
  cluster c{2, distribution::async};
  c.cache_everywhere("a");
  // The shard's broadcast of two keys is withheld from node 1 (max-unacked
  // 1): node 1 repairs instead of applying it. The synchronous call after it
  // must not count node 1 as done: before, it asked node 1 with an empty
  // batch, which node 1 answered at once, and put_many returned ok.
  node sender = c.sender_to_node1(distribution::sync);
  auto err = sender.users.put_many({{"a", "1"}, {"b", "2"}});
  REQUIRE(err);
  CHECK(describe(err).find("node1") != std::string::npos);
  CHECK(eventually([&] { return !must(c.nodes[1].users.contains("a")); }));
}

TEST_CASE("a node that numbered invalidations before it met another makes it repair",
          "[cluster][rule6]") {
  // Node B loads k; node A, alone, changes k (its broadcast has nobody to go
  // to, but takes a number). When they meet, B must not keep serving k.
  log_lines log;
  auto row = std::make_shared<std::string>("old"); // the store both load from
  auto start = [&](const std::string& name) {
    node x;
    cluster_options o;
    o.node_name = name;
    o.secret = "secret";
    o.log = log.sink();
    must(x.rt->start_cluster(o));
    auto co = x.rt->default_options("users");
    co.distributed = distribution::async;
    co.loader = [row](const std::string&) -> caf::expected<std::string> { return *row; };
    x.users = must(x.rt->create_cache(co));
    return x;
  };
  node a = start("a"), b = start("b");
  REQUIRE(must(b.users.get_or_load("k")).str() == "old"); // a load takes no number
  *row = "new";
  REQUIRE_FALSE(a.users.put("k", "new"));
  REQUIRE_FALSE(b.rt->join("127.0.0.1", a.rt->cluster_port()));
  CHECK(eventually([&] { return !must(b.users.contains("k")); }));
  CHECK(must(b.rt->cluster_stats()).gaps >= 1);
  CHECK(must(a.rt->cluster_stats()).gaps == 0); // b numbered nothing: a keeps its copy
  CHECK(must(a.users.get("k")).str() == "new");
}

TEST_CASE("a node leaving cleanly causes no repair", "[cluster]") {
  cluster c{3, distribution::async};
  c.nodes[2].rt->shutdown();
  CHECK(eventually([&] { return must(c.nodes[0].rt->members()).size() == 1; }));
  CHECK(must(c.nodes[0].rt->cluster_stats()).repairs == 0);
  CHECK(c.log.contains("member left: node2"));
}

TEST_CASE("a node with the wrong secret is refused and changes nothing", "[cluster]") {
  cluster c{2, distribution::sync};
  c.cache_everywhere("k");
  node intruder;
  must(intruder.rt->start_cluster(c.options("intruder", "wrong secret")));
  auto err = intruder.rt->join("127.0.0.1", c.nodes[0].rt->cluster_port());
  REQUIRE(err);
  CHECK(err == errc::invalid_option);
  CHECK(must(c.nodes[0].rt->members()).size() == 1);
  CHECK(must(intruder.rt->members()).empty());
  CHECK(must(c.nodes[0].rt->cluster_stats()).joins_refused +
          must(intruder.rt->cluster_stats()).joins_refused >=
        1);
  // Its forged invalidation, claiming to come from a member, changes nothing.
  auto target = must(intruder.rt->system().middleman().remote_actor<peer_actor>(
    "127.0.0.1", c.nodes[0].rt->cluster_port()));
  invalidation_batch forged;
  forged.origin = "node1";
  forged.items.push_back(invalidation{invalidation_kind::key, "users", "k", {}, 0});
  forged.items.push_back(invalidation{invalidation_kind::clear, "users", {}, {}, 0});
  caf::scoped_actor self{intruder.rt->system()};
  self->send(target, batch_atom::value, forged, link_tag{1, std::string(32, 'x')});
  // Local-only, with another process's token (the intruder runs in this
  // test's process, so its own would be the node's).
  self->send(target, broadcast_atom::value, local_token{this_process_token().value + 1},
             forged.items);
  peer_stats after;
  self
    ->request(target, 5s, peer_stats_atom::value,
              this_process_token()) // answered after both
    .receive([&](peer_stats& s) { after = s; },
             [&](caf::error& e) { FAIL(describe(e)); });
  CHECK(after.unauthenticated_messages >= 1);
  CHECK(after.broadcasts_sent == 0);
  CHECK(must(c.nodes[0].users.contains("k")));
  CHECK(c.log.contains("refused"));
}

TEST_CASE("messages a node does not understand are logged and ignored", "[cluster]") {
  cluster c{2, distribution::sync};
  node stranger;
  must(stranger.rt->start_cluster(c.options("stranger", "secret")));
  caf::scoped_actor self{stranger.rt->system()};
  caf::strong_actor_ptr raw;
  self
    ->request(stranger.rt->system().middleman().actor_handle(), 5s,
              caf::connect_atom::value, std::string{"127.0.0.1"},
              c.nodes[0].rt->cluster_port())
    .receive([&](const caf::node_id&, caf::strong_actor_ptr& h,
                 const std::set<std::string>&) { raw = std::move(h); },
             [&](caf::error& e) { FAIL(describe(e)); });
  REQUIRE(raw);
  auto untyped = caf::actor_cast<caf::actor>(raw);
  // The first is logged, by its types: not the megabyte it carries.
  self->send(untyped, caf::atom("bogus"), std::string(1 << 20, 'Z'));
  self->send(untyped, batch_atom::value, std::string{"not a batch"});
  // Still a working node: it answers, and invalidates as before.
  self->request(untyped, 5s, peer_stats_atom::value, this_process_token())
    .receive([](peer_stats& s) { CHECK(s.bad_messages == 2); },
             [&](caf::error& e) { FAIL(describe(e)); });
  c.cache_everywhere("k");
  REQUIRE(must(c.nodes[1].users.erase("k")));
  CHECK_FALSE(must(c.nodes[0].users.get("k")));
  CHECK(c.log.contains("does not understand: (@atom, @str)"));
  CHECK_FALSE(c.log.contains("ZZZZ"));
}

TEST_CASE("nodes can talk over TLS and a plaintext node cannot join them", "[cluster]") {
  cluster c{3, distribution::sync, true};
  c.cache_everywhere("k");
  REQUIRE(must(c.nodes[2].users.erase("k")));
  for (auto& x : c.nodes)
    CHECK_FALSE(must(x.users.get("k")));
  node plain;
  auto o = c.options("plain", "secret");
  o.tls = false;
  must(plain.rt->start_cluster(o));
  CHECK(plain.rt->join("127.0.0.1", c.nodes[0].rt->cluster_port()));
  CHECK(must(c.nodes[0].rt->members()).size() == 2);
}

TEST_CASE("cluster options and calls fail clearly", "[cluster]") {
  runtime rt;
  auto o = rt.default_options("users");
  o.distributed = distribution::async;
  auto early = rt.create_cache(o);
  REQUIRE_FALSE(early);
  CHECK(describe(early.error()).find("start_cluster") != std::string::npos);
  cluster_options no_secret;
  auto r = rt.start_cluster(no_secret);
  REQUIRE_FALSE(r);
  CHECK(describe(r.error()).find("karlton.cluster.secret") != std::string::npos);
  CHECK(rt.join("127.0.0.1", 1) == errc::invalid_option); // not a node yet
  cluster_options ok;
  ok.secret = "s";
  ok.log = [](const std::string&) {};
  must(rt.start_cluster(ok));
  CHECK_FALSE(rt.start_cluster(ok));
  CHECK(rt.node_name() == "127.0.0.1:" + std::to_string(rt.cluster_port()));
  // Nobody listens on port 1.
  CHECK(rt.join("127.0.0.1", 1));
}

TEST_CASE("a node without the secret cannot join as a member by reflecting proofs",
          "[cluster]") {
  // The attack of issue 11 against nodes b and c: open a challenge at b, have
  // c sign b's nonce in a hello of its own, and join b as c with that.
  cluster c{2, distribution::sync};
  auto& b = c.nodes[0];
  auto& victim = c.nodes[1];
  runtime attacker; // an actor system of its own, without the secret
  auto& sys = attacker.system();
  auto to_b =
    must(sys.middleman().remote_actor<peer_actor>("127.0.0.1", b.rt->cluster_port()));
  auto to_c = must(
    sys.middleman().remote_actor<peer_actor>("127.0.0.1", victim.rt->cluster_port()));
  caf::scoped_actor x{sys};
  auto fail = [](caf::error& e) { FAIL(describe(e)); };
  auto nonce = [](char fill) { return std::string(16, fill); };
  member_info me_c;
  x->request(to_c, 5s, hello_atom::value, member_info{"eve", "127.0.0.1", 1, 1},
             nonce('1'))
    .receive([&](member_info& m, std::string&, std::string&) { me_c = m; }, fail);
  REQUIRE(me_c.name == "node1");
  // Claiming c, a live member of b: refused at once.
  bool refused = false;
  x->request(to_b, 5s, hello_atom::value, me_c, nonce('2'))
    .receive([](member_info&, std::string&, std::string&) {},
             [&](caf::error&) { refused = true; });
  CHECK(refused);
  // Claiming a new name, with c's proof over b's nonce.
  auto mallory = member_info{"mallory", "127.0.0.1", 1, 1};
  std::string nonce_b, proof_c;
  x->request(to_b, 5s, hello_atom::value, mallory, nonce('3'))
    .receive([&](member_info&, std::string& n, std::string&) { nonce_b = n; }, fail);
  x->request(to_c, 5s, hello_atom::value, member_info{"eve", "127.0.0.1", 1, 1}, nonce_b)
    .receive([&](member_info&, std::string&, std::string& p) { proof_c = p; }, fail);
  bool accepted = false;
  for (auto& claim : {mallory, me_c})
    x->request(to_b, 5s, join_atom::value, claim, nonce('3'), nonce_b, proof_c,
               uint64_t{0}, link_tag{})
      .receive([&](std::vector<member_info>&, uint64_t, link_tag&) { accepted = true; },
               [](caf::error&) {});
  CHECK_FALSE(accepted);
  auto s = must(b.rt->cluster_stats());
  CHECK(s.names_refused >= 1);
  CHECK(s.proofs_refused >= 1);
  CHECK(s.replays_refused >= 1); // the join as c: no challenge open for it
  CHECK(s.joins_refused == s.names_refused + s.proofs_refused + s.replays_refused);
  // The real member stays, and its erase reaches b.
  auto names = must(b.rt->members());
  REQUIRE(names.size() == 1);
  CHECK(names[0].name == "node1");
  c.cache_everywhere("k");
  REQUIRE(must(victim.users.erase("k")));
  CHECK_FALSE(must(b.users.get("k")));
  CHECK(c.log.contains("refused a handshake"));
}

TEST_CASE(
  "a key's dependents follow one rule on every node: an erase cascades, a put not",
  "[cluster][cascade]") {
  cluster c{2, distribution::sync};
  // One shard per node, so the bus's invalidations reach it in the order sent.
  std::vector<cache> deps;
  for (auto& x : c.nodes) {
    auto o = x.rt->default_options("deps");
    o.shards = 1;
    o.distributed = distribution::sync;
    deps.push_back(must(x.rt->create_cache(o)));
  }
  auto on = [](const std::string& k) { return dependencies{}.on_keys({k}); };
  // Node 1 holds what depends on k and on x; node 0 holds k only.
  REQUIRE_FALSE(deps[1].put("d", "1", ttl::never(), on("k")));
  REQUIRE_FALSE(deps[1].put("y", "1", ttl::never(), on("x")));
  REQUIRE_FALSE(deps[1].put("k", "1"));
  REQUIRE(must(deps[1].contains("k")));
  // A put of k on node 0 does not cascade there, so not on node 1 either
  // (it used to: node 1 dropped its copy of k and invalidated d, node 0 would
  // have kept d).
  REQUIRE_FALSE(deps[0].put("k", "2"));
  REQUIRE_FALSE(must(deps[1].contains("k")));
  // An erase of x, cached on neither node, cascades on node 1: y goes.
  REQUIRE_FALSE(must(deps[0].erase("x")));
  CHECK(eventually([&] { return !must(deps[1].contains("y")); }));
  // Node 1's cascade of k, had there been one, was invalidated before x's.
  CHECK(must(deps[1].contains("d")));
  // An erase of k, not cached on node 1, invalidates d there.
  REQUIRE(must(deps[0].erase("k")));
  CHECK(eventually([&] { return !must(deps[1].contains("d")); }));
}

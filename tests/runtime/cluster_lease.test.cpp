// The read lease counts from this node's own send times: `read-lease` past
// when it sent what every member took last (`link_tag::echo`), not past when
// their words arrived. A member drops it once it heard nothing for
// `member-timeout`, so the lease ends first, however late messages arrive.
// Two nodes in one process on loopback, one reaching the other through a
// relay that can cut one direction (tests/support/tcp_relay.hpp).
#include <catch2/catch.hpp>

#include <chrono>
#include <string>

#include "support/eventually.hpp"
#include "support/log_lines.hpp"
#include "support/must.hpp"
#include "support/tcp_relay.hpp"
#include "support/test_nodes.hpp"
#include <karlton/runtime/runtime.hpp>

using namespace karlton;
using namespace std::chrono_literals;
using karlton::testing::eventually;
using karlton::testing::log_lines;
using karlton::testing::must;
using karlton::testing::node_options;
using karlton::testing::tcp_relay;
using karlton::testing::users_options;

TEST_CASE("a node whose words stop reaching a member stops serving before that member "
          "drops it, though it still hears the member",
          "[cluster][lease][rule7]") {
  log_lines log;
  runtime a, b;
  must(a.start_cluster(node_options("a", log)));
  tcp_relay relay{a.cluster_port()};
  must(b.start_cluster(node_options("b", log)));
  REQUIRE_FALSE(b.join("127.0.0.1", relay.port())); // b's link to a is the relay's
  auto users_a = must(a.create_cache(users_options(a, distribution::sync)));
  auto users_b = must(b.create_cache(users_options(b, distribution::sync)));
  REQUIRE(eventually(
    [&] { return must(a.members()).size() == 1 && must(b.members()).size() == 1; }));
  // The lease holds while both hear each other (once b's first heartbeat
  // was answered: until then it counts from b's join).
  REQUIRE(eventually([&] {
    return must(users_b.get_or_load("k")).str() == "v1" && must(users_b.get("k"));
  }));

  // b's heartbeats stop reaching a; a's still reach b. a drops b once it has
  // heard nothing for its timeout (its connection's, 2 s, or member-timeout),
  // and from then on writes without waiting for b: b must serve nothing by
  // then. With the lease counted from arrival, every heartbeat of a renewed
  // it: b served for up to `read-lease` more (1 s) what a then changed.
  auto lost_before = must(a.cluster_stats()).peers_lost;
  relay.hold_from_clients();
  REQUIRE(eventually([&] { return must(a.cluster_stats()).peers_lost > lost_before; },
                     20s, 1ms));
  CHECK_FALSE(must(users_b.get("k")));
  // b cannot know: a's words reached it until a dropped it, and b has not
  // yet waited out its own timeout for a.
  CHECK(must(b.cluster_stats()).peers_lost == 0);
}

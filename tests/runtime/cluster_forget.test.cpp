// `forget <node>`: the operator's word that a member lost without leaving is
// gone for good. Until then every synchronous call names it as not answered
// (rule 7: it may still serve what the call invalidates); after it, nobody
// waits for it. Node processes on loopback (tests/support/node_cluster.hpp).
#include <catch2/catch.hpp>

#include <csignal>
#include <string>
#include <vector>

#include "support/eventually.hpp"
#include "support/node_cluster.hpp"

using namespace std::chrono_literals;
using karlton::testing::cluster;
using karlton::testing::console_poll;
using karlton::testing::default_wait;
using karlton::testing::eventually;

namespace {

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.rfind(prefix, 0) == 0;
}

// Synchronous write-through nodes n1..n`n`; the last is killed with -9 and
// the others have lost it (its connection went down).
void start_and_kill_last(cluster& c, size_t n) {
  c.start_all(n);
  REQUIRE(c[n - 1].signal(SIGKILL));
  REQUIRE(c[n - 1].wait(5s));
  std::vector<size_t> others;
  for (size_t i = 0; i + 1 < n; ++i)
    others.push_back(i);
  REQUIRE(c.all_see(static_cast<int>(n) - 2, others));
}

} // namespace

TEST_CASE("a member killed for good is named by every sync call until it is forgotten",
          "[multiprocess][forget][rule7]") {
  cluster c{"sync", {"--karlton.write-mode=write_through"}};
  start_and_kill_last(c, 3);
  auto before = c[0].ask("put default k v1");
  INFO("put on n1 before forget: " << before);
  CHECK(starts_with(before, "error karlton.timeout: "));
  CHECK(before.find("n3") != std::string::npos);

  // Only a lost member can be forgotten; the replies say why not.
  auto live = c[0].ask("forget n2");
  CHECK(starts_with(live, "error karlton.invalid_option: "));
  CHECK(live.find("is a member") != std::string::npos);
  CHECK(starts_with(c[0].ask("forget nobody"), "error karlton.not_found: "));
  CHECK(starts_with(c[0].ask("forget " + std::string(300, 'x')),
                    "error karlton.invalid_option: "));
  CHECK(starts_with(c[0].ask("forget"), "error "));

  CHECK(c[0].ask("forget n3") == "ok");
  CHECK(c[1].ask("forget n3") == "ok");
  CHECK(c[0].ask("put default k v2") == "ok");
  CHECK(c[1].ask("erase default k") == "ok");
  CHECK(starts_with(c[0].ask("forget n3"), "error karlton.not_found: ")); // once
  CHECK(c[0].ask("members") == "members n2");
}

TEST_CASE("a forgotten member that comes back joins again and is waited for again",
          "[multiprocess][forget]") {
  cluster c{"sync", {"--karlton.write-mode=write_through"}};
  start_and_kill_last(c, 2);
  REQUIRE(c[0].ask("forget n2") == "ok");
  CHECK(c[0].ask("put default k v1") == "ok");
  // A node of that name starts again (its seed is n1): a member as before,
  // which applies what the next sync call invalidates before it returns.
  c.nodes.pop_back();
  c.start("n2");
  REQUIRE(c.all_see(1));
  c.store("k", "v2");
  c.load_on("k", "v2", {1});
  CHECK(eventually([&] { return c[0].ask("put default k v3") == "ok"; }, default_wait,
                   console_poll));
  CHECK(c[1].ask("get default k") == "miss");
}

// The change feed's triggers as its heartbeat reports them: hits stop at once
// when one that a fed table needs is not enabled (docs/plans/postgres.md §5).
#include <catch2/catch.hpp>

#include <string>

#include "actors/change_state.hpp"
#include "support/change_feed.hpp"

using namespace karlton;
using namespace karlton::test;
using namespace std::chrono_literals;

TEST_CASE("the lease does not grow while a repair is in flight, the feed is down or a "
          "trigger is off",
          "[changes][lease]") {
  feed f;
  auto a = f.st.up(f.t0);
  CHECK(a.repairs == strings{"orders", "users", "users2"}); // everything, on connect
  CHECK(f.st.repairs_in_flight() == 7);
  a = f.st.heard(f.t0 + 1ms, 0, healthy, f.t0 + 1ms);
  CHECK_FALSE(a.extend_lease); // a shard may not have cleared yet
  for (int i = 0; i < 6; ++i)
    f.st.repair_answered();
  CHECK_FALSE(f.st.heard(f.t0 + 2ms, 0, healthy, f.t0 + 2ms).extend_lease);
  f.st.repair_answered();
  CHECK(f.st.heard(f.t0 + 3ms, 0, healthy, f.t0 + 3ms).extend_lease);

  // A disabled end trigger: changes go unseen, hits must stop.
  auto disabled = "public.users:karlton_notify:O,public.users:karlton_notify_end:D,"
                  "public.users:karlton_truncate:O,public.orders:karlton_notify:O,"
                  "public.orders:karlton_notify_end:O,public.orders:karlton_truncate:O";
  auto lapses = f.st.stats().lease_lapses;
  a = f.st.heard(f.t0 + 4ms, 0, disabled, f.t0 + 4ms);
  CHECK_FALSE(a.extend_lease);
  CHECK(a.lapse_lease); // at once, not when the last extension runs out
  CHECK(f.st.stats().lease_lapses == lapses + 1);
  // Missing altogether (dropped), and set to fire only for replicas.
  auto missing = "public.users:karlton_notify:R,public.users:karlton_notify_end:O";
  CHECK_FALSE(f.st.heard(f.t0 + 5ms, 0, missing, f.t0 + 5ms).extend_lease);
  CHECK(f.st.stats().trigger_problems == 2); // users, then orders
  // Back on: what changed meanwhile is unknown, so repair, then extend.
  a = f.st.heard(f.t0 + 6ms, 0, healthy, f.t0 + 6ms);
  CHECK(a.repairs == strings{"orders", "users", "users2"});
  CHECK(a.clears.empty()); // changes that may have gone unheard: repair-ttl may cap
  CHECK_FALSE(a.extend_lease);
  while (f.st.repairs_in_flight() > 0)
    f.st.repair_answered();
  CHECK(f.st.heard(f.t0 + 7ms, 0, healthy, f.t0 + 7ms).extend_lease);

  // Down: an answer that still arrives extends nothing.
  f.st.down(f.t0 + 8ms);
  CHECK_FALSE(f.st.heard(f.t0 + 9ms, 0, healthy, f.t0 + 9ms).extend_lease);
  CHECK(f.st.stats().drops == 1);
}

TEST_CASE(
  "a disabled or missing truncate trigger stops hits: a TRUNCATE would go unheard",
  "[changes][lease]") {
  feed f;
  f.go_live();
  auto no_truncate =
    "public.users:karlton_notify:O,public.users:karlton_notify_end:O,"
    "public.users:karlton_truncate:D,public.orders:karlton_notify:O,"
    "public.orders:karlton_notify_end:O,public.orders:karlton_truncate:O";
  auto a = f.st.heard(f.t0 + 1ms, 0, no_truncate, f.t0 + 1ms);
  CHECK_FALSE(a.extend_lease);
  CHECK(a.lapse_lease);
  CHECK(f.st.stats().trigger_problems == 1);
}

TEST_CASE("a disabled trigger is not hidden by a forged enabled one of the same name",
          "[changes][lease]") {
  // A later item naming the same table and trigger (a table named
  // "a,public.users" split at its comma, say) must not win over the state
  // that says disabled.
  feed f;
  f.go_live();
  auto forged = "public.users:karlton_notify:D,public.users:karlton_notify_end:O,"
                "public.users:karlton_truncate:O,public.orders:karlton_notify:O,"
                "public.orders:karlton_notify_end:O,public.orders:karlton_truncate:O,"
                "s.a,public.users:karlton_notify:O";
  CHECK(f.st.heard(f.t0 + 1ms, 0, forged, f.t0 + 1ms).lapse_lease);
}

// What the change feed's state tests share: notifications as the listener
// parses them, trigger states, and a feed of two tables with three caches.
#pragma once

#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "actors/change_state.hpp"
#include "base/routing.hpp"

namespace karlton::test {

using kind = pg_change::kind;
using time_point = clock::time_point;

inline pg_change row(uint64_t xid, uint64_t seq, std::string key,
                     std::string table = "public.users") {
  pg_change c;
  c.what = kind::row;
  c.xid = xid;
  c.seq = seq;
  c.table = std::move(table);
  c.key = std::move(key);
  return c;
}
inline pg_change end(uint64_t xid, uint64_t n, int64_t commit_us = 1'000'000) {
  pg_change c;
  c.what = kind::end;
  c.xid = xid;
  c.seq = n;
  c.commit_us = commit_us;
  return c;
}
inline pg_change about(kind k, std::string table, uint64_t xid = 7, uint64_t seq = 1) {
  pg_change c;
  c.what = k;
  c.xid = xid;
  c.seq = seq;
  c.table = std::move(table);
  return c;
}

inline const std::string healthy =
  "public.users:karlton_notify:O,public.users:karlton_notify_end:O,"
  "public.users:karlton_truncate:O,"
  "public.orders:karlton_notify:A,public.orders:karlton_notify_end:O,"
  "public.orders:karlton_truncate:O";

// Two tables: users feeds caches "users" (4 shards) and "users2" (2 shards,
// its own store); orders feeds "orders" (1 shard). No actor system: the
// shard handles stay null, only their number matters.
struct feed {
  std::shared_ptr<own_commits> users_own = std::make_shared<own_commits>();
  std::shared_ptr<own_commits> users2_own = std::make_shared<own_commits>();
  std::shared_ptr<own_commits> orders_own = std::make_shared<own_commits>();
  feed_routes routes;
  change_state st;
  time_point t0{std::chrono::hours{1}};

  explicit feed(change_state::limits lim = {}) : st(lim) {
    routes.add("public.users", {"users", std::vector<shard_actor>(4), users_own});
    routes.add("public.users", {"users2", std::vector<shard_actor>(2), users2_own});
    routes.add("public.orders", {"orders", std::vector<shard_actor>(1), orders_own});
    st.set_routes(routes.snapshot());
  }
  // Up, its repair answered, and one heartbeat: the lease runs.
  void go_live() {
    st.up(t0);
    while (st.repairs_in_flight() > 0)
      st.repair_answered();
    st.heard(t0, 0, healthy, t0);
  }
};

// The keys a set of actions invalidates in `cache`, sorted.
inline std::vector<std::string> keys_in(const change_actions& a,
                                        const std::string& cache) {
  std::vector<std::string> out;
  for (auto& g : a.groups)
    for (auto& p : g.parts)
      if (p.cache == cache) out.insert(out.end(), p.keys.begin(), p.keys.end());
  std::sort(out.begin(), out.end());
  return out;
}

using strings = std::vector<std::string>;

} // namespace karlton::test

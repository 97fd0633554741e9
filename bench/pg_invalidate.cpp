// pg-invalidate: how long from an UPDATE's COMMIT, made on another
// connection behind the cache's back, until the key is gone from the cache
// (issue 16: p99 <= 10 ms). A private PostgreSQL server, a table of 10k rows,
// a read-through cache fed the table's changes (runtime::start_change_feed)
// holding all of them; an updater commits single-row UPDATEs at 1,000/s on a
// fixed schedule, each row once. The delay of an update is from just before
// it was sent (so COMMIT's own round trip is in it) to the removal callback
// of its key, both on this process's steady clock. A second node, a
// karlton-node child on the same table, reports its own delays (commit time
// from the database's clock to its invalidation: the latest 512).
// Without PostgreSQL: "skipped", exit 0.
#include <libpq-fe.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "bench/report.hpp"
#include "bench/runners.hpp"
#include "tests/support/node_process.hpp"
#include "tests/support/pg_server.hpp"
#include <karlton/messages/errors.hpp>
#include <karlton/runtime/runtime.hpp>
#include <karlton/stores/postgres_store.hpp>

namespace karlton::bench {

namespace {

using namespace std::chrono_literals;
using std::chrono::steady_clock;
using karlton::testing::node_process;
using karlton::testing::pg_server;

constexpr size_t rows = 10'000;
constexpr double default_seconds = 10.0;
constexpr double updates_per_second = 1000.0;
constexpr double target_p99_ms = 10.0;

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
           steady_clock::now().time_since_epoch())
    .count();
}

std::string key_of(size_t i) { return "k" + std::to_string(i); }

int fail(const std::string& why) {
  std::fprintf(stderr, "pg-invalidate: %s\n", why.c_str());
  return 1;
}

// The second node: a karlton-node on the same table, every row loaded.
std::unique_ptr<node_process> start_node(const bench_options& opts, const pg_server& srv) {
  auto path = opts.node_path.value_or(KARLTON_NODE_PATH);
  std::vector<std::string> args{"--karlton.cluster.secret=bench",
                                "--node.caches=[\"bench\"]", "--node.store=" + srv.uri(),
                                "--node.stats-interval=0"};
  args.insert(args.end(), opts.node_args.begin(), opts.node_args.end());
  auto n = std::make_unique<node_process>("node2", path, std::move(args));
  if (!n->ready()) return nullptr;
  for (size_t i = 0; i < rows; ++i)
    if (n->ask("load bench " + key_of(i)).rfind("value ", 0) != 0) return nullptr;
  if (n->ask("sync", 30'000ms) != "ok") return nullptr;
  return n;
}

} // namespace

int run_pg_invalidate(const bench_options& opts) {
  if (!pg_server::find_bindir()) {
    std::printf("pg-invalidate: skipped: PostgreSQL is not installed (scripts/setup "
                "postgresql)\n");
    return 0;
  }
  auto seconds = opts.seconds.value_or(default_seconds);
  auto updates = std::min(rows, static_cast<size_t>(seconds * updates_per_second));
  pg_server srv{"bench"};
  if (!srv.ready()) return fail("the private server did not start: " + srv.error());
  postgres_options p;
  p.uri = srv.uri();
  auto table = postgres_store::open(p, "bench");
  if (!table) return fail(describe(table.error()));
  std::vector<store_write> fill;
  for (size_t i = 0; i < rows; ++i)
    fill.push_back({key_of(i), std::string(100, 'v')});
  if (auto err = (*table)->write_batch(fill)) return fail(describe(err));

  // When each key left the cache while the updates ran (0: not yet), by its
  // number. Removals before (the feed's first repair) do not count.
  std::vector<std::atomic<int64_t>> removed_at(rows);
  std::atomic<bool> measuring{false};
  runtime rt;
  if (auto err = rt.start_change_feed(p)) return fail(describe(err));
  cache_options o;
  o.name = "bench";
  o.backing_store = *table;
  o.store_changes = true;
  o.on_removal = [&removed_at, &measuring](const value& v, removal_cause cause) {
    if (cause != removal_cause::explicit_erase || !measuring.load()) return;
    auto i = std::stoul(std::string{v.key().substr(1)});
    int64_t zero = 0;
    if (i < removed_at.size()) removed_at[i].compare_exchange_strong(zero, now_ns());
  };
  auto c = rt.create_cache(o);
  if (!c) return fail(describe(c.error()));
  // Listening and repaired first: the first repair clears what was loaded.
  if (auto err = rt.sync_changes(30s)) return fail(describe(err));
  for (size_t i = 0; i < rows; ++i)
    if (!c->get_or_load(key_of(i))) return fail("cannot load " + key_of(i));
  if (auto err = rt.sync_changes(30s)) return fail(describe(err));
  auto node2 = start_node(opts, srv);
  if (!node2) return fail("the second node (karlton-node) did not start and load");

  // The updater: its own connection, autocommit, one row per statement.
  std::unique_ptr<PGconn, void (*)(PGconn*)> conn{PQconnectdb(srv.uri().c_str()), PQfinish};
  if (PQstatus(conn.get()) != CONNECTION_OK) return fail(PQerrorMessage(conn.get()));
  PQclear(PQprepare(conn.get(), "upd",
                    "UPDATE bench SET value = convert_to($2, 'UTF8') WHERE key = "
                    "convert_to($1, 'UTF8')",
                    2, nullptr));
  std::vector<int64_t> sent_at(updates);
  auto held = c->stats();
  if (!held || held->entries != rows)
    return fail("the cache does not hold every row before the updates");
  measuring = true;
  auto start = steady_clock::now();
  auto every = std::chrono::duration_cast<steady_clock::duration>(
    std::chrono::duration<double>(1.0 / updates_per_second));
  for (size_t i = 0; i < updates; ++i) {
    std::this_thread::sleep_until(start + every * static_cast<int64_t>(i));
    auto key = key_of(i);
    auto val = "updated " + std::to_string(i);
    const char* params[] = {key.c_str(), val.c_str()};
    sent_at[i] = now_ns();
    auto* res = PQexecPrepared(conn.get(), "upd", 2, params, nullptr, nullptr, 0);
    bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    PQclear(res);
    if (!ok) return fail("UPDATE failed: " + std::string{PQerrorMessage(conn.get())});
  }
  if (auto err = rt.sync_changes(30s)) return fail(describe(err));
  if (node2->ask("sync", 30'000ms) != "ok") return fail("node2 did not sync");

  std::vector<double> delays_ms;
  uint64_t missed = 0;
  for (size_t i = 0; i < updates; ++i) {
    auto at = removed_at[i].load();
    if (at == 0) {
      ++missed;
      std::fprintf(stderr, "pg-invalidate: the update of %s never invalidated it\n",
                   key_of(i).c_str());
    } else
      delays_ms.push_back(static_cast<double>(at - sent_at[i]) / 1e6);
  }
  auto mine = summarize(delays_ms);
  auto changes = node2->ask("changes");
  auto n2_p50 = karlton::testing::json_number(changes, "delay_p50_us").value_or(0);
  auto n2_p99 = karlton::testing::json_number(changes, "delay_p99_us").value_or(0);
  report r{"pg-invalidate"};
  r.add("updates", static_cast<uint64_t>(updates))
    .add("missed", missed)
    .add("p50_ms", mine.p50, 2, "ms")
    .add("p99_ms", mine.p99, 2, "ms")
    .add("target_p99_ms", target_p99_ms, 0, "ms")
    .add("node2_p50_ms", static_cast<double>(n2_p50) / 1000.0, 2, "ms")
    .add("node2_p99_ms", static_cast<double>(n2_p99) / 1000.0, 2, "ms")
    .add("node2_samples",
         karlton::testing::json_number(changes, "delay_samples").value_or(0));
  r.print(opts.json);
  node2->stop();
  return missed == 0 ? 0 : 1;
}

} // namespace karlton::bench

// stampede: one hot key, TTL 1 s, a loader that takes 50 ms (a simulated
// database query), 64 reader threads for 10 s per mode. How many loads does
// each strategy send to the database per expiry, and how many reads wait?
//   plain_ttl            the guide's TTL cache used cache-aside: every reader
//                        that misses queries the database itself
//   single_flight        get_or_load: concurrent misses share one load
//   xfetch               get_or_load with XFetch early refresh (beta 1)
//   naive_probabilistic  get_or_load with the guide's early expiration (beta 1)
// Memcache's leases cut Facebook's peak database load 13x for the same reason.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "bench/report.hpp"
#include "bench/runners.hpp"
#include <karlton/messages/errors.hpp>
#include <karlton/runtime/runtime.hpp>

namespace karlton::bench {

namespace {

using namespace std::chrono_literals;
using std::chrono::steady_clock;

constexpr auto key_ttl = 1s;
constexpr auto query_time = 50ms;
constexpr unsigned default_readers = 64;
constexpr double default_seconds = 10.0;
/// A read slower than this waited for a load: a hit takes microseconds, a
/// load 50 ms, so 5 ms separates them with room for scheduling noise.
constexpr auto blocked_threshold = 5ms;

struct result {
  uint64_t reads = 0;
  uint64_t loads = 0;
  uint64_t blocked = 0;
  double max_wait_ms = 0;
};

enum class mode { plain_ttl, single_flight, xfetch, naive };

result run_mode(mode m, unsigned readers, double seconds) {
  std::atomic<uint64_t> queries{0};
  auto query = [&](const std::string& key) -> caf::expected<std::string> {
    ++queries;
    std::this_thread::sleep_for(query_time); // the database at work
    return "row of " + key;
  };
  runtime rt;
  cache_options o;
  o.name = "hot";
  o.default_ttl = ttl::after(key_ttl);
  o.beta = 1.0;
  if (m != mode::plain_ttl) o.loader = query;
  if (m == mode::xfetch) o.early_refresh = early_refresh_mode::xfetch;
  if (m == mode::naive) o.early_refresh = early_refresh_mode::naive;
  auto c = rt.create_cache(o);
  if (!c) {
    std::fprintf(stderr, "stampede: %s\n", describe(c.error()).c_str());
    return {};
  }
  std::atomic<bool> stop{false};
  std::vector<result> per_thread(readers);
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < readers; ++t)
    pool.emplace_back([&, t] {
      auto& r = per_thread[t];
      const std::string key = "hot-key";
      while (!stop.load(std::memory_order_relaxed)) {
        auto start = steady_clock::now();
        if (m == mode::plain_ttl) {
          auto v = c->get(key); // cache-aside, as in the guide
          if (v && !*v) {
            auto row = query(key);
            if (row) c->put(key, *row);
          }
        } else {
          c->get_or_load(key);
        }
        auto waited = steady_clock::now() - start;
        ++r.reads;
        if (waited >= blocked_threshold) ++r.blocked;
        r.max_wait_ms = std::max(
          r.max_wait_ms, std::chrono::duration<double, std::milli>(waited).count());
      }
    });
  std::this_thread::sleep_for(std::chrono::duration<double>{seconds});
  stop = true;
  for (auto& t : pool)
    t.join();
  result total;
  for (auto& r : per_thread) {
    total.reads += r.reads;
    total.blocked += r.blocked;
    total.max_wait_ms = std::max(total.max_wait_ms, r.max_wait_ms);
  }
  total.loads = queries.load();
  return total;
}

} // namespace

int run_stampede(const bench_options& opts) {
  auto readers = opts.threads.value_or(default_readers);
  auto seconds = opts.seconds.value_or(default_seconds);
  // Each TTL period ends in an expiry that needs one load, ideally.
  auto expiries = seconds / std::chrono::duration<double>(key_ttl).count();
  struct named {
    const char* name;
    mode m;
  };
  const named modes[] = {{"plain_ttl", mode::plain_ttl},
                         {"single_flight", mode::single_flight},
                         {"xfetch", mode::xfetch},
                         {"naive_probabilistic", mode::naive}};
  double plain_loads = 0;
  for (const auto& [name, m] : modes) {
    auto r = run_mode(m, readers, seconds);
    if (m == mode::plain_ttl) plain_loads = static_cast<double>(r.loads);
    report out{"stampede"};
    out.add("mode", std::string{name})
      .add("readers", uint64_t{readers})
      .add("seconds", seconds, 1, "s")
      .add("reads", r.reads)
      .add("loads", r.loads)
      .add("expiries", expiries, 1)
      .add("loads_per_expiry", static_cast<double>(r.loads) / expiries, 2)
      .add("blocked_reads", r.blocked)
      .add("blocked_pct",
           r.reads == 0 ? 0.0 : 100.0 * static_cast<double>(r.blocked) / r.reads, 3, "%")
      .add("max_wait_ms", r.max_wait_ms, 1, "ms")
      .add("load_reduction_vs_plain_ttl",
           r.loads == 0 ? 0.0 : plain_loads / static_cast<double>(r.loads), 1, "x");
    out.print(opts.json);
  }
  return 0;
}

} // namespace karlton::bench

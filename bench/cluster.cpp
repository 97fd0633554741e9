// cluster: how fast invalidations reach other nodes. Three nodes on
// loopback: this process is the issuing node (an embedded runtime with a
// distributed `async` cache "bench"), and it starts two karlton-node
// processes with the same cache that join it (the receivers; --node PATH
// overrides where the binary is). Keys are made before anything is timed.
//
// Latency: erases at 10,000/s for 5 s, paced by a steady-clock schedule (a
// late issuer catches up rather than drifting) through `erase_async` with a
// callback, so a slow answer never delays the next issue. Each receiver
// records every invalidation's delay from issue (the issuing shard's wall
// clock) to apply (its shard's eviction answered); once both applied all of
// them, their `stats` give delay_p50_us / delay_p99_us (its ring of 65,536
// samples holds the whole 50,000 of the phase; with --seconds above 6.5, its
// last 65,536). p50_us / p99_us are the worse receiver's.
//
// Throughput: `erase_async` as fast as the issuer can for 5 s, with at most
// `window` calls in flight and at most `credit` invalidations not yet applied
// on both receivers (the cluster has no backpressure of its own), then a wait
// (at most 60 s) until both receivers applied every one.
// invalidations_per_s = issued / (first issue .. the last receiver's last
// apply), the apply observed by polling every 20 ms. Heartbeats (empty
// batches) carry no invalidations and count nowhere.
//
// Targets (the issue): p99_us <= 2000 and invalidations_per_s >= 200,000.
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "bench/report.hpp"
#include "bench/runners.hpp"
#include "bench/workloads.hpp"
#include "tests/support/node_process.hpp"
#include <karlton/messages/errors.hpp>
#include <karlton/runtime/runtime.hpp>

namespace karlton::bench {

namespace {

using namespace std::chrono_literals;
using karlton::testing::json_number;
using karlton::testing::node_process;
using std::chrono::steady_clock;

constexpr size_t receivers = 2;
constexpr double latency_rate = 10'000; // invalidations per second
constexpr double default_phase_seconds = 5;
/// Erases in flight in the throughput phase: enough that the shards always
/// have a batch to take (they take 64 jobs at a time), well below the
/// ingress capacity (16,384 per shard), so no call ever waits for room.
constexpr uint64_t window = 8192;
/// Invalidations issued but not yet applied on every receiver, at most.
/// Nothing in a cluster pushes back on an issuer (mailboxes and BASP's
/// buffers are unbounded): unbounded, the issuer made 7.9M in 5 s (1.6M/s),
/// the receivers fell seconds behind, their connections timed out and the
/// repairs lost invalidations. 131,072 is ~0.25 s of what the receivers
/// apply here (~500k/s), far more than they apply between two polls.
constexpr uint64_t credit = 131'072;
/// Distinct keys, used round robin (a 5 s throughput phase issues ~3M here):
/// a repeated key is still an erase every node must apply, and 1M keys keep
/// the key set at ~64 MB.
constexpr uint64_t key_count = 1'000'000;
constexpr auto node_start_timeout = 15s;
constexpr auto join_timeout = 20s;
constexpr auto console_timeout = 5s;
constexpr auto latency_drain_timeout = 30s;
constexpr auto throughput_drain_timeout = 60s;
/// How often the receivers are asked how far they got, at most (for the
/// credit, and while draining): the end of the throughput phase is known to
/// this much (0.4 % of 5 s); each ask costs a receiver a copy and two partial
/// sorts of its 65,536 delays.
constexpr auto drain_poll = 20ms;

const std::string cache_name = "bench";
const std::string secret = "karlton-bench, long enough not to warn";

#ifndef KARLTON_NODE_PATH
#define KARLTON_NODE_PATH "karlton-node"
#endif

double seconds_between(steady_clock::time_point a, steady_clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

/// Completions of erase_async calls, counted on the shards' threads.
struct completions {
  std::atomic<uint64_t> done{0};
  std::atomic<uint64_t> failed{0};
};

struct receiver_figures {
  uint64_t applied = 0;
  uint64_t received = 0;
  uint64_t samples = 0;
  uint64_t p50_us = 0;
  uint64_t p99_us = 0;
  uint64_t gaps = 0;
  uint64_t repairs = 0;
};

std::optional<receiver_figures> figures_of(node_process& n) {
  auto line = n.try_ask("stats", console_timeout);
  if (!line || line->rfind("stats ", 0) != 0) return std::nullopt;
  receiver_figures f;
  auto get = [&](const char* key, uint64_t& out) {
    auto x = json_number(*line, key);
    if (x) out = *x;
    return x.has_value();
  };
  if (!get("invalidations_applied", f.applied) ||
      !get("invalidations_received", f.received) || !get("delay_samples", f.samples) ||
      !get("delay_p50_us", f.p50_us) || !get("delay_p99_us", f.p99_us) ||
      !get("gaps", f.gaps) || !get("repairs", f.repairs))
    return std::nullopt;
  return f;
}

/// The cluster: this runtime and the receiver processes. Receivers stop
/// (and are reaped) before the runtime, whatever happened.
struct cluster {
  std::unique_ptr<runtime> rt;
  cache bench_cache;
  std::vector<std::unique_ptr<node_process>> nodes;
  std::string log_dir;
  std::shared_ptr<std::vector<std::string>> log_lines =
    std::make_shared<std::vector<std::string>>();
  std::shared_ptr<std::mutex> log_mtx = std::make_shared<std::mutex>();

  ~cluster() {
    for (auto& n : nodes)
      n->stop();
    nodes.clear();
    bench_cache = cache{};
    rt.reset();
  }

  void print_log() const {
    std::lock_guard<std::mutex> guard{*log_mtx};
    for (auto& l : *log_lines)
      std::fprintf(stderr, "  %s\n", l.c_str());
    std::fprintf(stderr, "cluster: the receivers' stderr is in %s\n", log_dir.c_str());
  }
};

bool fail(const cluster& c, const std::string& why) {
  std::fprintf(stderr, "cluster: %s\n", why.c_str());
  c.print_log();
  return false;
}

bool start(cluster& c, const std::string& node_path,
           const std::vector<std::string>& node_args) {
  char dir[] = "/tmp/karlton-bench-cluster.XXXXXX";
  if (!mkdtemp(dir)) return fail(c, "cannot make a temporary directory");
  c.log_dir = dir;
  c.rt = std::make_unique<runtime>(std::make_unique<runtime_config>());
  cluster_options co;
  co.node_name = "issuer";
  co.secret = secret;
  // Membership lines are kept for a failure report, not printed.
  co.log = [lines = c.log_lines, mtx = c.log_mtx](const std::string& line) {
    std::lock_guard<std::mutex> guard{*mtx};
    lines->push_back(line);
  };
  auto port = c.rt->start_cluster(co);
  if (!port) return fail(c, "start_cluster: " + describe(port.error()));
  auto opts = c.rt->default_options(cache_name);
  opts.distributed = distribution::async;
  auto made = c.rt->create_cache(opts);
  if (!made) return fail(c, "create_cache: " + describe(made.error()));
  c.bench_cache = std::move(*made);
  for (size_t i = 0; i < receivers; ++i) {
    auto name = "receiver-" + std::to_string(i + 1);
    std::vector<std::string> args{
      "--karlton.cluster.secret=" + secret, "--karlton.cluster.node-name=" + name,
      "--karlton.cluster.seeds=[\"127.0.0.1:" + std::to_string(*port) + "\"]",
      "--node.caches=[\"" + cache_name + "\"]", "--node.stats-interval=0"};
    args.insert(args.end(), node_args.begin(), node_args.end());
    auto n =
      std::make_unique<node_process>(name, node_path, std::move(args), node_start_timeout,
                                     c.log_dir + "/" + name + ".log");
    if (!n->ready()) {
      n->stop();
      return fail(c, "cannot start " + node_path + " (" + name + "): " + n->error());
    }
    c.nodes.push_back(std::move(n));
  }
  // All three see the other two, or give up.
  auto deadline = steady_clock::now() + join_timeout;
  for (;;) {
    size_t ready = 0;
    auto ms = c.rt->members();
    if (ms && ms->size() == receivers) ++ready;
    for (auto& n : c.nodes) {
      auto line = n->try_ask("members", console_timeout);
      if (line && std::count(line->begin(), line->end(), ',') == receivers - 1 &&
          line->size() > 8)
        ++ready;
    }
    if (ready == receivers + 1) return true;
    if (steady_clock::now() > deadline)
      return fail(c, "the three nodes did not all see each other within 20 s");
    std::this_thread::sleep_for(50ms);
  }
}

/// Waits until every receiver applied at least `target` invalidations in
/// all; returns when the last one got there, or nothing on timeout.
std::optional<steady_clock::time_point> await_applied(cluster& c, uint64_t target,
                                                      std::chrono::seconds timeout,
                                                      std::chrono::milliseconds poll) {
  auto deadline = steady_clock::now() + timeout;
  std::vector<bool> done(c.nodes.size(), false);
  for (;;) {
    bool all = true;
    for (size_t i = 0; i < c.nodes.size(); ++i) {
      if (done[i]) continue;
      auto f = figures_of(*c.nodes[i]);
      done[i] = f && f->applied >= target;
      all = all && done[i];
    }
    auto now = steady_clock::now();
    if (all) return now;
    if (now > deadline) return std::nullopt;
    std::this_thread::sleep_for(poll);
  }
}

bool await_callbacks(const completions& cs, uint64_t issued) {
  auto deadline = steady_clock::now() + 30s;
  while (cs.done.load() < issued) {
    if (steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

struct latency_result {
  uint64_t issued = 0;
  double achieved_per_s = 0;
  std::vector<receiver_figures> per_receiver;
};

bool run_latency_phase(cluster& c, const std::vector<std::string>& keys, double seconds,
                       latency_result& out) {
  auto total = static_cast<uint64_t>(latency_rate * seconds);
  auto interval = std::chrono::duration_cast<steady_clock::duration>(
    std::chrono::duration<double>(1.0 / latency_rate));
  completions cs;
  auto on_done = [&cs](caf::expected<bool> r) {
    if (!r) cs.failed.fetch_add(1);
    cs.done.fetch_add(1);
  };
  auto t0 = steady_clock::now();
  uint64_t issued = 0;
  while (issued < total) {
    // Everything due by now goes out at once: a late wake-up catches up.
    auto due = std::min<uint64_t>(total, (steady_clock::now() - t0) / interval + 1);
    for (; issued < due; ++issued)
      c.bench_cache.erase_async(keys[issued % keys.size()], on_done);
    if (issued < total) std::this_thread::sleep_until(t0 + issued * interval);
  }
  auto t1 = steady_clock::now();
  out.issued = issued;
  out.achieved_per_s = static_cast<double>(issued) / seconds_between(t0, t1);
  if (!await_callbacks(cs, issued) || cs.failed.load() > 0)
    return fail(c, "latency phase: " + std::to_string(cs.failed.load()) + " of " +
                     std::to_string(issued) + " erases failed or did not complete");
  if (!await_applied(c, issued, latency_drain_timeout, 10ms))
    return fail(c, "latency phase: the receivers did not apply all " +
                     std::to_string(issued) + " invalidations within 30 s");
  for (auto& n : c.nodes) {
    auto f = figures_of(*n);
    if (!f) return fail(c, "latency phase: a receiver did not answer 'stats'");
    out.per_receiver.push_back(*f);
  }
  return true;
}

struct throughput_result {
  uint64_t issued = 0;
  double issue_seconds = 0; // issuing alone
  double total_seconds = 0; // first issue .. last apply on every receiver
  std::vector<receiver_figures> per_receiver;
};

bool run_throughput_phase(cluster& c, const std::vector<std::string>& keys,
                          double seconds, uint64_t applied_before,
                          throughput_result& out) {
  completions cs;
  auto on_done = [&cs](caf::expected<bool> r) {
    if (!r) cs.failed.fetch_add(1);
    cs.done.fetch_add(1, std::memory_order_release);
  };
  // What the slower receiver applied, as last asked; the answer lags.
  uint64_t applied = applied_before;
  auto last_ask = steady_clock::time_point{};
  auto ask_applied = [&] {
    last_ask = steady_clock::now();
    uint64_t least = UINT64_MAX;
    for (auto& n : c.nodes) {
      auto f = figures_of(*n);
      if (!f) return false;
      least = std::min(least, f->applied);
    }
    applied = least;
    return true;
  };
  auto t0 = steady_clock::now();
  auto stop_at = t0 + std::chrono::duration_cast<steady_clock::duration>(
                        std::chrono::duration<double>(seconds));
  uint64_t issued = 0;
  bool waited = false;
  for (;;) {
    // The clock is read once per 256 issues (~0.5 ms at 500k/s), and after
    // every wait: receivers that stop applying must not keep us here.
    if ((waited || issued % 256 == 0) && steady_clock::now() >= stop_at) break;
    waited = false;
    if (applied_before + issued - applied >= credit) {
      // Ahead of the receivers by the whole credit: ask where they are, at
      // most every `drain_poll`, and sleep rather than spin (the receivers
      // share these 2 cores).
      if (steady_clock::now() - last_ask >= drain_poll) {
        if (!ask_applied())
          return fail(c, "throughput phase: a receiver stopped answering");
      } else {
        std::this_thread::sleep_for(1ms);
      }
      waited = true;
      continue;
    }
    if (issued - cs.done.load(std::memory_order_acquire) >= window) {
      std::this_thread::sleep_for(50us);
      waited = true;
      continue;
    }
    c.bench_cache.erase_async(keys[issued % keys.size()], on_done);
    ++issued;
  }
  auto t1 = steady_clock::now();
  out.issued = issued;
  out.issue_seconds = seconds_between(t0, t1);
  if (!await_callbacks(cs, issued) || cs.failed.load() > 0)
    return fail(c, "throughput phase: " + std::to_string(cs.failed.load()) + " of " +
                     std::to_string(issued) + " erases failed or did not complete");
  auto last =
    await_applied(c, applied_before + issued, throughput_drain_timeout, drain_poll);
  if (!last)
    return fail(c, "throughput phase: the receivers did not apply all " +
                     std::to_string(issued) + " invalidations within 60 s");
  out.total_seconds = seconds_between(t0, *last);
  for (auto& n : c.nodes) {
    auto f = figures_of(*n);
    if (!f) return fail(c, "throughput phase: a receiver did not answer 'stats'");
    out.per_receiver.push_back(*f);
  }
  return true;
}

} // namespace

int run_cluster(const bench_options& opts) {
  // A receiver that died must not kill us through its console pipe.
  signal(SIGPIPE, SIG_IGN);
  auto seconds = opts.seconds.value_or(default_phase_seconds);
  auto node_path = opts.node_path.value_or(KARLTON_NODE_PATH);
  if (access(node_path.c_str(), X_OK) != 0) {
    std::fprintf(stderr,
                 "cluster: no karlton-node at %s (build it, or give --node PATH)\n",
                 node_path.c_str());
    return 1;
  }
  cluster c;
  if (!start(c, node_path, opts.node_args)) return 1;
  auto keys = make_keys(key_count);
  latency_result lat;
  if (!run_latency_phase(c, keys, seconds, lat)) return 1;
  throughput_result tp;
  if (!run_throughput_phase(c, keys, seconds, lat.issued, tp)) return 1;
  uint64_t p50 = 0, p99 = 0, gaps = 0, repairs = 0;
  for (auto& f : lat.per_receiver) {
    p50 = std::max(p50, f.p50_us);
    p99 = std::max(p99, f.p99_us);
  }
  for (auto& f : tp.per_receiver) {
    gaps += f.gaps;
    repairs += f.repairs;
  }
  report out{"cluster"};
  out.add("nodes", uint64_t{receivers + 1})
    .add("invalidations_per_s", static_cast<double>(tp.issued) / tp.total_seconds, 0,
         "/s")
    .add("p50_us", p50, "us")
    .add("p99_us", p99, "us")
    .add("latency_issued", lat.issued)
    .add("latency_rate_per_s", lat.achieved_per_s, 0, "/s");
  for (size_t i = 0; i < lat.per_receiver.size(); ++i) {
    auto& f = lat.per_receiver[i];
    auto r = "r" + std::to_string(i + 1) + "_";
    out.add(r + "p50_us", f.p50_us, "us").add(r + "p99_us", f.p99_us, "us");
  }
  out.add("throughput_issued", tp.issued)
    .add("issue_per_s", static_cast<double>(tp.issued) / tp.issue_seconds, 0, "/s")
    .add("drain_s", tp.total_seconds - tp.issue_seconds, 3, "s");
  for (size_t i = 0; i < tp.per_receiver.size(); ++i) {
    // The receivers' delays while flooded: the last 65,536 of the phase.
    auto& f = tp.per_receiver[i];
    auto r = "r" + std::to_string(i + 1) + "_";
    out.add(r + "applied", f.applied)
      .add(r + "flood_p50_us", f.p50_us, "us")
      .add(r + "flood_p99_us", f.p99_us, "us");
  }
  out.add("gaps", gaps).add("repairs", repairs);
  out.print(opts.json);
  // Logs are only worth keeping after a failure.
  for (size_t i = 0; i < receivers; ++i)
    unlink((c.log_dir + "/receiver-" + std::to_string(i + 1) + ".log").c_str());
  rmdir(c.log_dir.c_str());
  return gaps == 0 && repairs == 0 ? 0 : 1;
}

} // namespace karlton::bench

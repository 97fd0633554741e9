// karlton-bench: the benchmark harness. It measures throughput against a
// mutex-guarded LRU peer (ycsb-b), plain-thread call latency (latency), the
// eviction policy's hit ratio (hit-ratio), memory overhead per entry
// (memory), stampede protection (stampede), write-back against write-through
// on SQLite (write-back), the synchronous invalidation of a tag's dependents
// (tag-purge), invalidations between three node processes (cluster),
// karlton-node against redis-server under redis-benchmark (resp) and the
// delay from a PostgreSQL COMMIT to the cache's invalidation (pg-invalidate),
// so design claims in DESIGN.md and the README rest on numbers.
//
//   karlton-bench <workload> [--json] [--threads N] [--seconds S] [--node PATH]
//                 [--node-arg OPTION]... [--trace T]
//   karlton-bench all          # every workload in order, a few minutes
//   karlton-bench --help
//
// Exit codes: 0 ok, 1 a measurement failed, 2 bad command line.
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <string>
#include <vector>

#include "bench/runners.hpp"

namespace {

using namespace karlton::bench;

struct workload {
  const char* name;
  int (*run)(const bench_options&);
  const char* what;
  /// Under `all`, run it as a fresh process: memory's RSS deltas come out
  /// about half too low on a heap that earlier workloads have used and freed.
  bool own_process = false;
};

constexpr workload workloads[] = {
  {"ycsb-b", run_ycsb_b,
   "95% get / 5% put, scrambled Zipf 0.99, 1M keys: ops/s of karlton (direct, "
   "async, batched, blocking) vs. mutex+LRU peers"},
  {"ycsb-a", run_ycsb_a, "50% get / 50% put, the same keys and peers as ycsb-b"},
  {"latency", run_latency,
   "p50/p99 of one blocking get from a plain thread, back to back and 1 ms "
   "apart, and of a scoped_actor request; the same hits on a mutex LRU and on a "
   "bare std::unordered_map (the floor of a lookup here)"},
  {"hit-ratio", run_hit_ratio,
   "TinyLFU vs. LRU hit ratio on Zipf, scan, recency and loop traces, caches of "
   "0.5% to 20%"},
  {"memory", run_memory,
   "overhead bytes per entry at 1M entries (16 B keys, 100 B values)", true},
  {"stampede", run_stampede,
   "one hot key, TTL 1 s, 50 ms loads, 64 readers: loads per expiry of plain TTL, "
   "single flight, XFetch and naive early expiration"},
  {"write-back", run_write_back,
   "100k puts over 10k keys into SQLite, ops/s until the store has all: "
   "write-through vs. write-back (batch 1000, 100 ms), with the journal, with no "
   "store; and on a disk taking 2 ms per sync"},
  {"tag-purge", run_tag_purge,
   "100k entries depending on one tag, over all shards: p50/p99 of a synchronous "
   "invalidate_tag (and of an emit of an event they depend on), 20 invalidations"},
  {"cluster", run_cluster,
   "3 nodes on loopback (this process and 2 karlton-node): issue-to-apply p50/p99 at "
   "10k invalidations/s, then invalidations/s applied on every node (~10 s)"},
  {"resp", run_resp,
   "karlton-node vs. redis-server under redis-benchmark: GET/SET req/s, 100 B values, "
   "50 clients, pipeline 1 and 16; RSS per key at 1M keys (skipped without "
   "redis-server; 2-4 min)"},
  {"pg-invalidate", run_pg_invalidate,
   "PostgreSQL: p50/p99 from an UPDATE's COMMIT on another connection to the key "
   "gone from the cache, 1,000 commits/s for 10 s, here and on a karlton-node "
   "(skipped without PostgreSQL)"},
};

// Limits that catch typos, not real constraints.
constexpr unsigned max_threads = 256;
constexpr double max_seconds = 3600;

// "zipf, scan, ...": the names --trace accepts, for the help and its error.
std::string trace_names() {
  std::string names;
  for (const char* t : hit_ratio_traces)
    names += (names.empty() ? "" : ", ") + std::string{t};
  return names;
}

void usage(std::FILE* out) {
  std::fprintf(out,
               "usage: karlton-bench <workload> [--json] [--threads N] [--seconds S] "
               "[--node PATH] [--node-arg OPTION]... [--trace T]\n"
               "\nworkloads:\n");
  for (const auto& w : workloads)
    std::fprintf(out, "  %-10s %s\n", w.name, w.what);
  std::fprintf(out,
               "  %-10s every workload above, in order\n"
               "\noptions:\n"
               "  --json       one JSON object per result line\n"
               "  --threads N  caller threads for ycsb-a/b and write-back (default 2), "
               "readers for stampede (64)\n"
               "  --seconds S  run time per peer for ycsb-a/b (default 3), per mode for "
               "stampede (10),\n"
               "               cap of each mode's puts for write-back (10), per phase "
               "for cluster (5)\n"
               "  --node PATH  the karlton-node binary for cluster and resp (default: "
               "the one built with it)\n"
               "  --node-arg OPTION  one more karlton-node option for cluster and resp, "
               "e.g.\n"
               "               --node-arg --node.resp-threads=2 (repeatable)\n"
               "  --trace T    hit-ratio replays only trace T (%s)\n",
               "all", trace_names().c_str());
}

int bad_usage(const std::string& why) {
  std::fprintf(stderr, "karlton-bench: %s\n(try karlton-bench --help)\n", why.c_str());
  return 2;
}

// Parses argv[i + 1] as the value of option argv[i].
bool parse_number(int argc, char** argv, int& i, double& out) {
  if (i + 1 >= argc) return false;
  char* end = nullptr;
  out = std::strtod(argv[i + 1], &end);
  if (end == argv[i + 1] || *end != '\0') return false;
  ++i;
  return true;
}

// Runs `karlton-bench <w.name>` with the same options as a child process
// sharing our stdout, and returns its exit code.
int run_in_own_process(const workload& w, const bench_options& opts) {
  std::vector<std::string> args{"karlton-bench", w.name};
  if (opts.json) args.emplace_back("--json");
  if (opts.threads) {
    args.emplace_back("--threads");
    args.push_back(std::to_string(*opts.threads));
  }
  if (opts.seconds) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%.17g", *opts.seconds);
    args.emplace_back("--seconds");
    args.emplace_back(buf);
  }
  if (opts.node_path) {
    args.emplace_back("--node");
    args.push_back(*opts.node_path);
  }
  for (auto& a : opts.node_args) {
    args.emplace_back("--node-arg");
    args.push_back(a);
  }
  if (opts.trace) {
    args.emplace_back("--trace");
    args.push_back(*opts.trace);
  }
  std::vector<char*> argv;
  for (auto& a : args)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  std::fflush(stdout);
  pid_t pid = 0;
  if (posix_spawn(&pid, "/proc/self/exe", nullptr, nullptr, argv.data(), environ) != 0) {
    std::fprintf(
      stderr, "karlton-bench: cannot start a process for %s; running it here\n", w.name);
    return w.run(opts);
  }
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) return 1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

} // namespace

int main(int argc, char** argv) {
  // One hash key for every run (messages/hash.hpp), unless the environment
  // names another: the replays of hit-ratio are then the same each time.
  ::setenv("KARLTON_HASH_SEED", "1", 0);
  std::string name;
  bench_options opts;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    double x = 0;
    if (arg == "--help" || arg == "-h") {
      usage(stdout);
      return 0;
    } else if (arg == "--json") {
      opts.json = true;
    } else if (arg == "--threads") {
      if (!parse_number(argc, argv, i, x) || x < 1 || x > max_threads ||
          x != static_cast<unsigned>(x))
        return bad_usage("--threads needs a whole number from 1 to " +
                         std::to_string(max_threads));
      opts.threads = static_cast<unsigned>(x);
    } else if (arg == "--seconds") {
      if (!parse_number(argc, argv, i, x) || !(x > 0) || x > max_seconds)
        return bad_usage("--seconds needs a number of seconds above 0, at most " +
                         std::to_string(static_cast<int>(max_seconds)));
      opts.seconds = x;
    } else if (arg == "--node") {
      if (i + 1 >= argc)
        return bad_usage("--node needs the path of a karlton-node binary");
      opts.node_path = argv[++i];
    } else if (arg == "--node-arg") {
      if (i + 1 >= argc)
        return bad_usage("--node-arg needs a karlton-node option, e.g. "
                         "--node.resp-threads=2");
      opts.node_args.emplace_back(argv[++i]);
    } else if (arg == "--trace") {
      if (i + 1 >= argc) return bad_usage("--trace needs a hit-ratio trace name");
      opts.trace = argv[++i];
      if (std::none_of(std::begin(hit_ratio_traces), std::end(hit_ratio_traces),
                       [&](const char* t) { return *opts.trace == t; }))
        return bad_usage("no hit-ratio trace '" + *opts.trace + "' (" + trace_names() +
                         ")");
    } else if (arg.rfind("-", 0) == 0) {
      return bad_usage("unknown option '" + arg + "'");
    } else if (name.empty()) {
      name = arg;
    } else {
      return bad_usage("one workload at a time (got '" + name + "' and '" + arg +
                       "'); use 'all' for every workload");
    }
  }
  if (name.empty()) return bad_usage("no workload given");
  if (name == "all") {
    // Progress on stderr, so a long run shows where it is; stdout stays the
    // results alone (a JSON line per workload with --json).
    int rc = 0;
    size_t n = std::size(workloads), i = 0;
    for (const auto& w : workloads) {
      std::fprintf(stderr, "karlton-bench all: %zu/%zu %s ...\n", ++i, n, w.name);
      auto t0 = std::chrono::steady_clock::now();
      auto r = w.own_process ? run_in_own_process(w, opts) : w.run(opts);
      std::fprintf(
        stderr, "karlton-bench all: %zu/%zu %s %s in %.0f s\n", i, n, w.name,
        r == 0 ? "done" : "FAILED",
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      if (r != 0) rc = r;
    }
    return rc;
  }
  for (const auto& w : workloads)
    if (name == w.name) return w.run(opts);
  return bad_usage("unknown workload '" + name + "'");
}

// The workloads karlton-bench can run, and the command-line settings they
// share. Each workload lives in its own file; main.cpp dispatches by name.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace karlton::bench {

/// Settings from the command line. Unset ones mean "the workload's default".
struct bench_options {
  bool json = false;
  std::optional<unsigned> threads;      ///< caller threads (ycsb-b), readers (stampede)
  std::optional<double> seconds;        ///< run time per peer (ycsb-b) or mode (stampede)
  std::optional<std::string> node_path; ///< the karlton-node binary (cluster, resp)
  std::vector<std::string> node_args;   ///< extra karlton-node options (cluster, resp)
  std::optional<std::string> trace;     ///< the one trace hit-ratio replays
};

/// Each returns the process exit code: 0, or 1 if a measurement failed.
int run_ycsb_b(const bench_options& opts);
int run_ycsb_a(const bench_options& opts);
int run_latency(const bench_options& opts);
int run_hit_ratio(const bench_options& opts);
/// The traces hit-ratio replays, for `--trace`.
constexpr const char* hit_ratio_traces[] = {"zipf", "scan", "recency", "loop", "shift"};
int run_memory(const bench_options& opts);
int run_stampede(const bench_options& opts);
int run_write_back(const bench_options& opts);
int run_tag_purge(const bench_options& opts);
int run_cluster(const bench_options& opts);
int run_resp(const bench_options& opts);
int run_pg_invalidate(const bench_options& opts);

} // namespace karlton::bench

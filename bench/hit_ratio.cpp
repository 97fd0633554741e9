// hit-ratio: how many requests karlton's eviction policy (W-TinyLFU) serves
// from cache compared with exact LRU, on a skewed trace, on a skewed trace
// polluted by a one-pass scan (the case LRU is known to lose: every scanned
// one-hit wonder pushes out a hot key), on a hot set that moves (the case a
// frequency filter is known to lose: yesterday's hot keys keep their counts),
// on a loop larger than the cache (LRU hits never), and on that hot set
// followed by a skewed trace (the adaptive window must give back what it
// grew). The trace is replayed directly on one `shard_state`, without actors,
// so this measures the policy and nothing else: each request is a get, and a
// miss is followed by a put (a read-through cache). On the zipf trace it is
// also played through a runtime by 2 caller threads (`runtime_hit`): hits
// served on the callers' threads teach the policy only through the shard's
// lossy read buffer, and this shows what that costs.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <iterator>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "actors/shard_state.hpp"
#include "bench/report.hpp"
#include "bench/runners.hpp"
#include "bench/workloads.hpp"
#include <karlton/runtime/runtime.hpp>

namespace karlton::bench {

namespace {

/// The key universe the cache sizes are a percentage of: 1M, as in ycsb-b.
constexpr uint64_t universe = default_keys;

/// Cache sizes in permille of the universe, 0.5 % to 20 %, for the curve of
/// hit ratio against size (`scripts/bench --plot`): 1 % (10k entries) is the
/// small cache where policies differ most; 10 % (100k) is a comfortable one.
constexpr unsigned cache_permilles[] = {5, 10, 20, 50, 100, 200};

/// Only these sizes are also played through a runtime: it is the slow part.
constexpr bool through_runtime_at(unsigned permille) {
  return permille == 10 || permille == 100;
}

constexpr uint64_t entries_at(unsigned permille) {
  return universe * permille / 1000;
}

/// Requests of the zipf trace: 5M, 5 per key, so the cold start (at most the
/// first 100k misses that fill the cache) weighs under 2 % of the result.
constexpr size_t zipf_requests = 5'000'000;

/// The scan trace: 80 % Zipf over 100k hot keys, every 5th request the next of
/// 5M cold keys, each read once. 25M requests in all: one full pass of the scan.
constexpr uint64_t hot_keys = 100'000;
constexpr uint64_t cold_keys = 5'000'000;
constexpr unsigned scan_period = 5;

/// The recency trace: Zipf over the 1M most recent items, the newest hottest,
/// a new item every 5 requests; 5M requests, so 1M items arrive during it. An
/// item stays among the 10k (100k) hottest for 50k (500k) requests, half the
/// 10 x cache requests over which TinyLFU's sketch remembers a count.
constexpr uint64_t recency_live = default_keys;
constexpr unsigned recency_period = 5;
constexpr size_t recency_requests = 5'000'000;

/// The loop trace: 25 passes over 200k items, twice the larger cache. A cache
/// that keeps a fixed subset hits cache / 200k of the requests after the first
/// pass: 0.048 (1 %) and 0.48 (10 %) in all.
constexpr uint64_t loop_items = 200'000;
constexpr size_t loop_requests = 5'000'000;

/// The shift trace: the first half of the recency trace (2.5M requests), then
/// 2.5M of the zipf trace's requests over 1M other keys. The recency phase
/// grows the window to 99 %; the Zipf phase gains over LRU only if it shrinks
/// again.
constexpr uint32_t shift_key_offset = 10'000'000; // past every recency item

/// Value size: 8 B. The policies count entries, not bytes, so the size does
/// not change a hit ratio; small values keep the replay fast.
constexpr std::string_view small_value = "01234567";

/// The fraction of `trace` served from a cache of `capacity` entries.
double replay(const std::vector<uint32_t>& trace, uint64_t capacity,
              eviction_policy_kind policy) {
  shard_options cfg;
  cfg.max_entries = capacity;
  cfg.policy = policy;
  shard_state cache{std::move(cfg)};
  // A fixed time: nothing expires, so only the policy decides what stays.
  const time_point now{std::chrono::hours{1}};
  char key[key_bytes];
  const std::string_view k{key, key_bytes};
  uint64_t hits = 0;
  for (auto item : trace) {
    format_key(item, key);
    if (cache.get(k, now))
      ++hits;
    else
      cache.put(value::make(k, small_value), ttl::never(), now);
  }
  return trace.empty() ? 0 : static_cast<double>(hits) / trace.size();
}

/// `replay` through a runtime: `callers` threads take every callers-th
/// request each, `get` it (a hit is read directly) and `put` it on a miss.
/// The cache's bound is split over its shards, as it always is.
double runtime_replay(const std::vector<uint32_t>& trace, uint64_t capacity,
                      unsigned callers) {
  runtime rt;
  cache_options o;
  o.name = "hit-ratio";
  o.max_entries = capacity;
  auto c = rt.create_cache(o);
  if (!c) return -1;
  std::vector<uint64_t> hits(callers);
  std::vector<std::thread> threads;
  for (unsigned t = 0; t < callers; ++t)
    threads.emplace_back([&, t] {
      char key[key_bytes];
      const std::string_view k{key, key_bytes};
      for (size_t i = t; i < trace.size(); i += callers) {
        format_key(trace[i], key);
        auto v = c->get(k);
        if (v && *v)
          ++hits[t];
        else
          c->put(k, small_value, ttl::never());
      }
    });
  for (auto& th : threads)
    th.join();
  uint64_t total = 0;
  for (auto h : hits)
    total += h;
  return trace.empty() ? 0 : static_cast<double>(total) / trace.size();
}

/// How often each key of `trace` is requested, most requested first.
std::vector<uint64_t> counts_by_frequency(const std::vector<uint32_t>& trace) {
  std::unordered_map<uint32_t, uint64_t> counts;
  for (auto item : trace)
    ++counts[item];
  std::vector<uint64_t> sorted;
  sorted.reserve(counts.size());
  for (auto& kv : counts)
    sorted.push_back(kv.second);
  std::sort(sorted.begin(), sorted.end(), std::greater<>{});
  return sorted;
}

/// The hit ratio of the best cache that never changes its mind: one holding
/// the `capacity` keys requested most often in the whole trace (offline
/// static LFU, known in hindsight). On an independent stream such as Zipf no
/// online policy does better on average, so `lfu_bound - lru_hit` is the most
/// any policy can gain over LRU on this trace. `sorted` is from
/// `counts_by_frequency`, counted once for every size.
double static_lfu_bound(const std::vector<uint64_t>& sorted, size_t requests,
                        uint64_t capacity) {
  auto top = std::min<size_t>(capacity, sorted.size());
  uint64_t kept = 0;
  for (size_t i = 0; i < top; ++i)
    kept += sorted[i];
  // Each kept key still misses once, on its first request.
  return requests == 0 ? 0 : static_cast<double>(kept - top) / requests;
}

/// `with_bound`: whether the static-LFU hit ratio says anything on this trace.
/// On the recency trace it does not: no fixed set of keys serves a hot set
/// that moves, so it is far below what LRU reaches and bounds nothing.
void report_trace(const char* name, const std::vector<uint32_t>& trace, bool json,
                  bool through_runtime, bool with_bound = true) {
  // Every (cache size, policy) replay is independent, so all run at once and
  // the scheduler spreads them over the cores.
  constexpr size_t sizes = std::size(cache_permilles);
  double policy_hit[sizes] = {};
  double lru_hit[sizes] = {};
  double bound[sizes] = {};
  std::vector<std::thread> replays;
  for (size_t i = 0; i < sizes; ++i) {
    uint64_t capacity = entries_at(cache_permilles[i]);
    replays.emplace_back([&, i, capacity] {
      policy_hit[i] = replay(trace, capacity, eviction_policy_kind::tiny_lfu);
    });
    replays.emplace_back([&, i, capacity] {
      lru_hit[i] = replay(trace, capacity, eviction_policy_kind::lru);
    });
  }
  {
    auto sorted = counts_by_frequency(trace);
    for (size_t i = 0; i < sizes; ++i)
      bound[i] = static_lfu_bound(sorted, trace.size(), entries_at(cache_permilles[i]));
  }
  for (auto& t : replays)
    t.join();
  // After the replays, alone: its callers and shards want both cores.
  double runtime_hit[sizes] = {};
  for (size_t i = 0; i < sizes; ++i)
    if (through_runtime && through_runtime_at(cache_permilles[i]))
      runtime_hit[i] = runtime_replay(trace, entries_at(cache_permilles[i]), 2);
  for (size_t i = 0; i < sizes; ++i) {
    const unsigned permille = cache_permilles[i];
    report out{"hit-ratio"};
    // cache_pct stays a whole number where it is one (1, 10: as before the
    // half-percent size), so consumers of those rows read them unchanged.
    out.add("trace", std::string{name})
      .add("requests", uint64_t{trace.size()})
      .add("cache_pct", permille / 10.0, permille % 10 == 0 ? 0 : 1, "%")
      .add("cache_permille", uint64_t{permille}, "per mille")
      .add("cache_entries", entries_at(permille))
      .add("policy", std::string{to_string(eviction_policy_kind::tiny_lfu)})
      .add("policy_hit", policy_hit[i], 4)
      .add("lru_hit", lru_hit[i], 4);
    if (with_bound) out.add("lfu_bound", bound[i], 4);
    if (through_runtime && through_runtime_at(permille))
      out.add("runtime_hit", runtime_hit[i], 4)
        .add("runtime_minus_replay", runtime_hit[i] - policy_hit[i], 4);
    out.print(json);
  }
}

} // namespace

int run_hit_ratio(const bench_options& opts) {
  // main() accepted only the names of hit_ratio_traces.
  auto wanted = [&](const char* name) { return !opts.trace || *opts.trace == name; };
  if (wanted("zipf"))
    report_trace("zipf", make_zipf_trace(universe, zipf_requests, 7), opts.json, true);
  if (wanted("scan"))
    report_trace("scan", make_scan_trace(hot_keys, cold_keys, scan_period, 11), opts.json,
                 false);
  if (wanted("recency"))
    report_trace("recency",
                 make_recency_trace(recency_live, recency_period, recency_requests, 13),
                 opts.json, false, false);
  if (wanted("loop"))
    report_trace("loop", make_loop_trace(loop_items, loop_requests), opts.json, false);
  if (wanted("shift")) {
    auto t = make_recency_trace(recency_live, recency_period, recency_requests / 2, 13);
    auto z = make_zipf_trace(universe, zipf_requests / 2, 7);
    for (auto x : z)
      t.push_back(x + shift_key_offset);
    report_trace("shift", t, opts.json, false, false);
  }
  return 0;
}

} // namespace karlton::bench

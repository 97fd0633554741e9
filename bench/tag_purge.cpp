// tag-purge: how long a synchronous purge of one tag takes when 100k entries
// depend on it. 100k entries (16 B keys, 100 B values) spread over the
// cache's shards (one per scheduler thread), each depending on one tag; then
// `runtime::invalidate_tag(tag)`, timed until it returns, i.e. until every
// dependent is gone from every shard. 20 repetitions, refilled before each
// (the refill is not timed; keys and values are made before any timing).
// A second line does the same with an event the entries depend on, purged by
// `runtime::emit(event)`, for comparison.
//
// Every purge must remove exactly the 100k dependents and leave the cache
// empty, with no dependency links behind (`verified`). `depth` is the longest
// chain of invalidated keys the purge followed: 0 here, as every entry
// depends on the tag directly. The bus still makes a second round: the shards
// hand back every removed key, which entries elsewhere might depend on.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <deque>
#include <future>
#include <string>
#include <vector>

#include "bench/report.hpp"
#include "bench/runners.hpp"
#include "bench/workloads.hpp"
#include <karlton/messages/errors.hpp>
#include <karlton/runtime/runtime.hpp>

namespace karlton::bench {

namespace {

using std::chrono::steady_clock;

/// The workload: 100k dependents of one tag, 20 purges.
constexpr uint64_t dependents = 100'000;
constexpr size_t repetitions = 20;

/// Puts in flight while refilling: enough to keep both shards busy, far
/// below the ingress capacity (16384 per shard).
constexpr size_t fill_window = 256;

const std::string tag_name = "catalog";
const std::string event_name = "catalog_updated";

enum class mode { tag, event };

struct inputs {
  std::vector<std::string> keys;
  std::vector<std::string> values;
  dependencies deps;
};

/// Puts every key with its value and dependencies; false if one failed.
bool fill(const cache& c, const inputs& in) {
  std::deque<std::future<caf::expected<caf::unit_t>>> in_flight;
  bool ok = true;
  auto settle_one = [&] {
    if (!in_flight.front().get()) ok = false;
    in_flight.pop_front();
  };
  for (size_t i = 0; i < in.keys.size(); ++i) {
    if (in_flight.size() >= fill_window) settle_one();
    in_flight.push_back(c.put_async(in.keys[i], in.values[i], ttl::never(), in.deps));
  }
  while (!in_flight.empty())
    settle_one();
  return ok;
}

struct result {
  std::vector<double> purge_ms; // one per repetition
  uint64_t removed_min = UINT64_MAX;
  uint64_t removed_max = 0;
  uint32_t depth = 0;         // longest key chain of one purge
  uint64_t entries_after = 0; // most entries left after a purge
  uint64_t links_after = 0;   // most dependency links left after a purge
  size_t shards = 0;
  bool ok = true;
};

result run_mode(mode m, const inputs& in) {
  result out;
  runtime rt;
  cache_options o;
  o.name = "tag-purge";
  auto c = rt.create_cache(o);
  if (!c) {
    std::fprintf(stderr, "tag-purge: %s\n", describe(c.error()).c_str());
    out.ok = false;
    return out;
  }
  out.shards = c->shard_count();
  for (size_t rep = 0; rep < repetitions; ++rep) {
    if (!fill(*c, in)) {
      std::fprintf(stderr, "tag-purge: a put failed while filling\n");
      out.ok = false;
      return out;
    }
    if (auto s = c->stats(); !s || s->entries != dependents) {
      std::fprintf(stderr, "tag-purge: the cache holds %llu entries after filling\n",
                   s ? static_cast<unsigned long long>(s->entries) : 0ull);
      out.ok = false;
      return out;
    }
    auto start = steady_clock::now();
    auto r = m == mode::tag ? rt.invalidate_tag(tag_name) : rt.emit(event_name);
    auto took = std::chrono::duration<double, std::milli>(steady_clock::now() - start);
    if (!r) {
      std::fprintf(stderr, "tag-purge: %s\n", describe(r.error()).c_str());
      out.ok = false;
      return out;
    }
    out.purge_ms.push_back(took.count());
    out.removed_min = std::min(out.removed_min, r->removed);
    out.removed_max = std::max(out.removed_max, r->removed);
    out.depth = std::max(out.depth, r->depth);
    auto s = c->stats();
    if (!s) {
      std::fprintf(stderr, "tag-purge: stats: %s\n", describe(s.error()).c_str());
      out.ok = false;
      return out;
    }
    out.entries_after = std::max(out.entries_after, s->entries);
    out.links_after = std::max(out.links_after, s->dependency_links);
  }
  out.ok = out.removed_min == dependents && out.removed_max == dependents &&
           out.entries_after == 0 && out.links_after == 0;
  if (!out.ok)
    std::fprintf(stderr,
                 "tag-purge: purges removed %llu to %llu of %llu dependents and left up "
                 "to %llu entries and %llu dependency links\n",
                 static_cast<unsigned long long>(out.removed_min),
                 static_cast<unsigned long long>(out.removed_max),
                 static_cast<unsigned long long>(dependents),
                 static_cast<unsigned long long>(out.entries_after),
                 static_cast<unsigned long long>(out.links_after));
  return out;
}

} // namespace

int run_tag_purge(const bench_options& opts) {
  inputs in;
  in.keys = make_keys(dependents);
  in.values.reserve(dependents);
  for (uint64_t i = 0; i < dependents; ++i)
    in.values.push_back(make_value(i));
  bool ok = true;
  for (auto m : {mode::tag, mode::event}) {
    in.deps = m == mode::tag ? dependencies{}.on_keys({tag_name})
                             : dependencies{}.on_events({event_name});
    auto r = run_mode(m, in);
    auto ms = r.purge_ms;
    // Nearest rank (report.hpp's quantile): with 20 purges, p50 is the 11th
    // fastest and p99 the slowest.
    std::sort(ms.begin(), ms.end());
    report out{"tag-purge"};
    out.add("mode", std::string{m == mode::tag ? "tag" : "event"})
      .add("shards", uint64_t{r.shards})
      .add("dependents", dependents)
      .add("repetitions", uint64_t{ms.size()})
      .add("purge_ms_p50", quantile(ms, 0.50), 2, "ms")
      .add("purge_ms_p99", quantile(ms, 0.99), 2, "ms")
      .add("purge_ms_min", ms.empty() ? 0.0 : ms.front(), 2, "ms")
      .add("purge_ms_max", ms.empty() ? 0.0 : ms.back(), 2, "ms")
      .add("removed", r.removed_min == UINT64_MAX ? 0 : r.removed_min)
      .add("depth", uint64_t{r.depth})
      .add("entries_after", r.entries_after)
      .add("links_after", r.links_after)
      .add("verified", uint64_t{r.ok ? 1u : 0u});
    out.print(opts.json);
    ok = ok && r.ok;
  }
  return ok ? 0 : 1;
}

} // namespace karlton::bench

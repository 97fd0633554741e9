// memory: bytes of overhead per entry beyond the payload, at 1M entries of a
// 16 B key and a 100 B value: resident memory (VmRSS) after inserting them,
// minus before, minus 1M x 116 B, divided by 1M. It counts everything a user
// pays for (value buffers with their malloc rounding, entries, the index,
// policy metadata, and what the empty cache took: `empty_cache_bytes`, about
// 2.7 B an entry at 1M), measured through a karlton runtime because that is
// what users run; the bare `shard_state` and the mutex + unordered_map + list peer
// are measured the same way for comparison. Redis 7 costs ~75 B per key
// (DESIGN.md).
//
// Each measurement runs in a forked child, so the four do not pollute each
// other. The parent must have a fresh heap: after other workloads have used
// and freed a lot of memory, the deltas came out about half too low. So run it
// as its own invocation (`karlton-bench memory`); `all` does that for you.
#include <malloc.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "actors/shard_state.hpp"
#include "base/rcu.hpp"
#include "bench/mutex_lru.hpp"
#include "bench/report.hpp"
#include "bench/runners.hpp"
#include "bench/workloads.hpp"
#include <karlton/runtime/runtime.hpp>

namespace karlton::bench {

namespace {

/// Entries inserted: 1M, the size the issue asks the overhead at.
constexpr uint64_t entries = default_keys;

/// Payload of one entry: the bytes a user asked to store.
constexpr double payload_bytes = key_bytes + value_bytes;

/// Items per put_many: 1000 keeps the transient batch (~150 KB) negligible.
constexpr size_t load_batch = 1000;

/// What one child measured.
struct sample {
  double rss_delta = 0;  ///< bytes of VmRSS added by the inserts
  uint64_t stored = 0;   ///< entries actually held (a bounded cache may evict)
  double accounted = -1; ///< bytes the structure reports about itself, if any
  double fixed = 0;      ///< bytes of VmRSS the empty cache took (included in rss_delta)
  bool ok = false;
};

/// Resident memory in bytes after handing free heap pages back to the kernel.
/// What the shards retired (outgrown indexes, replaced values) is freed a
/// grace period later: waited for first, so that the figure counts what the
/// cache holds and not what waits to be freed.
double resident_bytes() {
  rcu::barrier();
  malloc_trim(0);
  std::ifstream status{"/proc/self/status"};
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) * 1024;
  return 0;
}

/// Runs `measure` in a forked child and returns its sample (not ok if the
/// child cannot be made). Never here instead: a child of a process that used
/// karlton (its RCU, CAF's threads) may not use it before an exec
/// (base/rcu.hpp), and this process must stay one that did not.
template <class F>
sample isolated(F measure) {
  int fds[2];
  sample failed;
  failed.ok = false;
  if (pipe(fds) != 0) return failed;
  auto pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    return failed;
  }
  if (pid == 0) {
    close(fds[0]);
    auto s = measure();
    auto written = write(fds[1], &s, sizeof(s));
    _exit(written == static_cast<ssize_t>(sizeof(s)) ? 0 : 1);
  }
  close(fds[1]);
  sample s;
  if (read(fds[0], &s, sizeof(s)) != static_cast<ssize_t>(sizeof(s))) s.ok = false;
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  return s;
}

/// 1M entries through a runtime's cache, by blocking put_many.
sample through_runtime(uint64_t max_entries) {
  sample out;
  runtime rt;
  cache_options copts;
  copts.name = "memory";
  copts.max_entries = max_entries;
  // Before the cache exists: what its shards allocate up front (a bounded
  // one's sketch, 8 B an entry) is part of its cost. Read after the cache was
  // made, "before" caught the shards half-started and varied by 4 MB.
  auto before = resident_bytes();
  auto c = rt.create_cache(copts);
  if (!c || !c->stats()) return out; // a call to each shard: all started
  out.fixed = resident_bytes() - before;
  const auto bytes = make_value(0);
  std::vector<std::pair<std::string, std::string>> items;
  items.reserve(load_batch);
  for (uint64_t i = 0; i < entries; i += load_batch) {
    items.clear();
    for (uint64_t j = i; j < std::min(i + load_batch, entries); ++j)
      items.emplace_back(make_key(j), bytes);
    if (c->put_many(items)) return out;
  }
  items = {};
  auto stats = c->stats();
  if (!stats) return out;
  out.rss_delta = resident_bytes() - before;
  out.stored = stats->entries;
  out.ok = true;
  return out;
}

/// 1M entries straight into one unbounded shard_state, no actors.
sample bare_shard_state() {
  sample out;
  shard_state s{shard_options{}};
  const auto bytes = make_value(0);
  const time_point now{std::chrono::hours{1}};
  char key[key_bytes];
  auto before = resident_bytes();
  for (uint64_t i = 0; i < entries; ++i) {
    format_key(i, key);
    if (s.put(value::make({key, key_bytes}, bytes), ttl::never(), now)) return out;
  }
  s.retire_unlinked(); // its outgrown indexes, as a shard actor hands them over
  out.rss_delta = resident_bytes() - before;
  out.stored = s.size();
  out.accounted = static_cast<double>(s.metadata_bytes());
  out.ok = true;
  return out;
}

/// 1M entries in the 1-lock mutex + unordered_map + list peer.
sample mutex_peer() {
  sample out;
  mutex_lru peer;
  const auto bytes = make_value(0);
  auto before = resident_bytes();
  for (uint64_t i = 0; i < entries; ++i)
    peer.put(make_key(i), bytes);
  out.rss_delta = resident_bytes() - before;
  out.stored = peer.size();
  out.ok = true;
  return out;
}

double per_entry(const sample& s) {
  return s.stored > 0 ? (s.rss_delta - s.stored * payload_bytes) / s.stored : 0;
}

} // namespace

int run_memory(const bench_options& opts) {
  auto unbounded = isolated([] { return through_runtime(0); });
  // Bounded at exactly 1M, split over the shards: a shard that draws more
  // than its half evicts, so slightly fewer than 1M remain; the per-entry
  // figure divides by what is held. The difference to the unbounded figure is
  // the TinyLFU sketch and policy state.
  auto bounded = isolated([] { return through_runtime(entries); });
  auto bare = isolated(bare_shard_state);
  auto peer = isolated(mutex_peer);
  for (const auto* s : {&unbounded, &bounded, &bare, &peer})
    if (!s->ok) {
      std::fprintf(stderr, "memory: a measurement failed\n");
      return 1;
    }
  report out{"memory"};
  out.add("entries", entries)
    .add("payload_bytes_per_entry", payload_bytes, 0, "B")
    .add("overhead_bytes_per_entry", per_entry(unbounded), 1, "B")
    .add("bounded_overhead_bytes_per_entry", per_entry(bounded), 1, "B")
    .add("bounded_entries", bounded.stored)
    .add("empty_cache_bytes", unbounded.fixed, 0, "B")
    .add("bounded_empty_cache_bytes", bounded.fixed, 0, "B")
    .add("shard_state_overhead_bytes_per_entry", per_entry(bare), 1, "B")
    .add("shard_state_metadata_bytes_per_entry", bare.accounted / bare.stored, 1, "B")
    .add("mutex_lru_overhead_bytes_per_entry", per_entry(peer), 1, "B");
  out.print(opts.json);
  return 0;
}

} // namespace karlton::bench

// ycsb-b and ycsb-a: throughput of a skewed workload (YCSB workload B: 95 %
// get, 5 % put; workload A: 50 % of each; scrambled Zipf 0.99 over 1M keys of
// 16 B with 100 B values, every key loaded first) from plain caller threads. It answers
// DESIGN.md's question "does karlton beat a mutex-guarded unordered_map + LRU list in
// process?", for each way a service can call karlton: many calls in flight
// (async callbacks), 64 keys per call (batched), and one blocking call at a
// time. Each peer runs for a fixed time on pre-generated op streams.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "bench/mutex_lru.hpp"
#include "bench/report.hpp"
#include "bench/runners.hpp"
#include "bench/workloads.hpp"
#include <karlton/runtime/runtime.hpp>

namespace karlton::bench {

namespace {

using std::chrono::steady_clock;

/// YCSB workload B: 95 % reads, 5 % updates; workload A: 50 % updates.
constexpr double ycsb_b_puts = 0.05;
constexpr double ycsb_a_puts = 0.5;

/// Ops pre-generated per caller thread: 2M (8 MB), replayed in a loop. The
/// fastest peers here do ~1M ops/s per thread, so a 3 s run replays a stream
/// about 1.5 times, and a lap is far too long to settle in any CPU cache.
constexpr size_t stream_ops = size_t{1} << 21;

/// Async calls a thread keeps in flight: 256 amortises the doorbell message
/// and the shard's wake-up over many jobs (the shard drains up to 256 jobs per
/// doorbell, see shard_actor.hpp) while staying far below the ingress
/// capacity (16384 per shard), so no call ever waits for queue space.
constexpr int async_window = 256;

/// Keys per batched call: 64, the batch size DESIGN.md's prototype measured.
constexpr size_t batch_keys = 64;

/// Distinct 100 B values the puts cycle through: enough that successive puts
/// to one key change its bytes, few enough (25 KB) to stay in L1/L2.
constexpr size_t value_pool_size = 256;

/// Items per put_many while loading karlton: 1024 keeps each shard job short.
constexpr size_t load_batch = 1024;

constexpr unsigned default_threads = 2;
constexpr double default_seconds = 3.0;

struct run_result {
  uint64_t ops = 0;
  double seconds = 0;
  double ops_per_second() const { return seconds > 0 ? ops / seconds : 0; }
};

/// Runs `body(thread_index, stop)` on `threads` threads released together;
/// raises `stop` after `seconds`. Each body returns how many ops it completed
/// (and must have drained its in-flight calls); time runs until all joined.
template <class Body>
run_result run_timed(unsigned threads, double seconds, Body body) {
  std::atomic<unsigned> ready{0};
  std::atomic<bool> go{false};
  std::atomic<bool> stop{false};
  std::vector<uint64_t> ops(threads);
  std::vector<std::thread> workers;
  for (unsigned t = 0; t < threads; ++t)
    workers.emplace_back([&, t] {
      ready.fetch_add(1);
      while (!go.load(std::memory_order_acquire))
        std::this_thread::yield();
      ops[t] = body(t, stop);
    });
  while (ready.load() < threads)
    std::this_thread::yield();
  auto start = steady_clock::now();
  go.store(true, std::memory_order_release);
  std::this_thread::sleep_for(std::chrono::duration<double>{seconds});
  stop.store(true, std::memory_order_relaxed);
  for (auto& w : workers)
    w.join();
  run_result out;
  out.seconds = std::chrono::duration<double>(steady_clock::now() - start).count();
  for (auto n : ops)
    out.ops += n;
  return out;
}

/// Pre-generated input shared by all peers.
struct inputs {
  std::vector<std::string> keys;
  std::vector<std::string> values;
  std::vector<std::vector<op>> streams; // one per caller thread
};

/// Calls of the batched peer, cut from one thread's op stream: gets and puts
/// are each gathered until 64 keys fill a call, so every call carries 64 keys.
struct batch_plan {
  std::vector<std::vector<std::string>> gets;
  std::vector<std::vector<std::pair<std::string, std::string>>> puts;
  std::vector<std::pair<bool, uint32_t>> calls; // (is_put, index into gets/puts)
};

batch_plan make_batch_plan(const inputs& in, const std::vector<op>& stream) {
  batch_plan plan;
  std::vector<std::string> gets;
  std::vector<std::pair<std::string, std::string>> puts;
  for (auto o : stream) {
    const auto& key = in.keys[o.item];
    if (o.is_put) {
      puts.emplace_back(key, in.values[o.item % value_pool_size]);
      if (puts.size() == batch_keys) {
        plan.calls.emplace_back(true, static_cast<uint32_t>(plan.puts.size()));
        plan.puts.push_back(std::move(puts));
        puts.clear();
      }
    } else {
      gets.push_back(key);
      if (gets.size() == batch_keys) {
        plan.calls.emplace_back(false, static_cast<uint32_t>(plan.gets.size()));
        plan.gets.push_back(std::move(gets));
        gets.clear();
      }
    }
  }
  return plan;
}

/// Counts what should never happen in this workload (every key is loaded and
/// the cache is unbounded): a miss or a failed call.
struct alignas(64) failure_count {
  std::atomic<uint64_t> n{0};
};

template <class Peer>
run_result run_mutex_peer(Peer& peer, const inputs& in, unsigned threads, double seconds,
                          failure_count& failures) {
  for (size_t i = 0; i < in.keys.size(); ++i)
    peer.put(in.keys[i], in.values[i % value_pool_size]);
  return run_timed(threads, seconds, [&](unsigned t, const std::atomic<bool>& stop) {
    const auto& stream = in.streams[t];
    std::string out;
    uint64_t n = 0;
    uint64_t misses = 0;
    for (size_t i = 0; !stop.load(std::memory_order_relaxed); ++n) {
      auto o = stream[i];
      i = i + 1 == stream.size() ? 0 : i + 1;
      if (o.is_put)
        peer.put(in.keys[o.item], in.values[o.item % value_pool_size]);
      else if (!peer.get(in.keys[o.item], out))
        ++misses;
    }
    failures.n += misses;
    return n;
  });
}

void load_karlton(const cache& c, const inputs& in, failure_count& failures) {
  std::vector<std::pair<std::string, std::string>> items;
  for (size_t i = 0; i < in.keys.size(); i += load_batch) {
    items.clear();
    for (size_t j = i; j < std::min(i + load_batch, in.keys.size()); ++j)
      items.emplace_back(in.keys[j], in.values[j % value_pool_size]);
    if (c.put_many(items)) ++failures.n;
  }
}

/// A caller thread's asynchronous calls in flight, at most `async_window`;
/// on its own cache line, as the callbacks on shard threads write it.
struct alignas(64) flight_window {
  std::atomic<int> in_flight{0};

  /// Waits for room for one more call, and counts it. With 2 cores shared
  /// by callers and shards, spinning would steal the shard's core; yielding
  /// hands it over.
  void enter() {
    while (in_flight.load(std::memory_order_acquire) >= async_window)
      std::this_thread::yield();
    in_flight.fetch_add(1, std::memory_order_relaxed);
  }
  /// Waits until every call has been answered.
  void drain() {
    while (in_flight.load(std::memory_order_acquire) > 0)
      std::this_thread::yield();
  }
  /// The callback of a `put_async`: counts a failure, leaves the window.
  auto on_put(failure_count& failures) {
    return [this, &failures](caf::expected<caf::unit_t> r) {
      if (!r) failures.n.fetch_add(1, std::memory_order_relaxed);
      in_flight.fetch_sub(1, std::memory_order_release);
    };
  }
};

/// Many calls in flight per thread, completed by callbacks on shard threads.
run_result run_karlton_async(const cache& c, const inputs& in, unsigned threads,
                             double seconds, failure_count& failures) {
  std::vector<flight_window> windows(threads);
  return run_timed(threads, seconds, [&](unsigned t, const std::atomic<bool>& stop) {
    auto& w = windows[t];
    auto on_get = [&w, &failures](caf::expected<value> r) {
      if (!r || !*r) failures.n.fetch_add(1, std::memory_order_relaxed);
      w.in_flight.fetch_sub(1, std::memory_order_release);
    };
    auto on_put = w.on_put(failures);
    const auto& stream = in.streams[t];
    uint64_t n = 0;
    for (size_t i = 0; !stop.load(std::memory_order_relaxed); ++n) {
      w.enter();
      auto o = stream[i];
      i = i + 1 == stream.size() ? 0 : i + 1;
      if (o.is_put)
        c.put_async(in.keys[o.item], in.values[o.item % value_pool_size],
                    ttl::cache_default(), on_put);
      else
        c.get_async(in.keys[o.item], on_get);
    }
    w.drain();
    return n;
  });
}

/// One blocking call of 64 keys at a time per thread; ops count keys.
run_result run_karlton_batched(const cache& c, const std::vector<batch_plan>& plans,
                               unsigned threads, double seconds,
                               failure_count& failures) {
  return run_timed(threads, seconds, [&](unsigned t, const std::atomic<bool>& stop) {
    const auto& plan = plans[t];
    uint64_t n = 0;
    uint64_t failed = 0;
    for (size_t i = 0; !stop.load(std::memory_order_relaxed);) {
      auto [is_put, index] = plan.calls[i];
      i = i + 1 == plan.calls.size() ? 0 : i + 1;
      if (is_put) {
        if (c.put_many(plan.puts[index])) ++failed;
        n += plan.puts[index].size();
      } else {
        auto r = c.get_many(plan.gets[index]);
        if (!r)
          ++failed;
        else
          for (const auto& v : *r)
            failed += v ? 0 : 1;
        n += plan.gets[index].size();
      }
    }
    failures.n += failed;
    return n;
  });
}

/// One blocking `get` at a time per thread (a hit is read on this thread),
/// and puts that wait (`put`) or do not (`put_async`, a bounded number in
/// flight, completed by callbacks on shard threads): karlton_blocking and
/// karlton_direct, the second what a service on the direct read path does.
run_result run_karlton_blocking_gets(const cache& c, const inputs& in, unsigned threads,
                                     double seconds, failure_count& failures,
                                     bool async_puts) {
  std::vector<flight_window> windows(threads);
  return run_timed(threads, seconds, [&](unsigned t, const std::atomic<bool>& stop) {
    auto& w = windows[t];
    auto on_put = w.on_put(failures);
    const auto& stream = in.streams[t];
    uint64_t n = 0;
    uint64_t failed = 0;
    for (size_t i = 0; !stop.load(std::memory_order_relaxed); ++n) {
      auto o = stream[i];
      i = i + 1 == stream.size() ? 0 : i + 1;
      const auto& key = in.keys[o.item];
      const auto& bytes = in.values[o.item % value_pool_size];
      if (o.is_put && async_puts) {
        w.enter();
        c.put_async(key, bytes, ttl::cache_default(), on_put);
      } else if (o.is_put) {
        if (c.put(key, bytes)) ++failed;
      } else {
        auto r = c.get(key);
        if (!r || !*r) ++failed;
      }
    }
    w.drain();
    failures.n += failed;
    return n;
  });
}

} // namespace

// Long because a benchmark run reads as one script: the inputs, each peer in
// turn on the same inputs, then one report of all of them.
int run_ycsb(const bench_options& opts, const char* name, double put_fraction) {
  auto threads = opts.threads.value_or(default_threads);
  auto seconds = opts.seconds.value_or(default_seconds);
  auto progress = [&](const char* peer, const run_result& r) {
    if (!opts.json)
      std::fprintf(stderr, "%s: %-18s %10.0f ops/s (%.2f s)\n", name, peer,
                   r.ops_per_second(), r.seconds);
  };

  inputs in;
  in.keys = make_keys(default_keys);
  for (size_t i = 0; i < value_pool_size; ++i)
    in.values.push_back(make_value(i));
  for (unsigned t = 0; t < threads; ++t)
    in.streams.push_back(
        make_op_stream(default_keys, stream_ops, put_fraction, 1000 + t));
  std::vector<batch_plan> plans;
  for (unsigned t = 0; t < threads; ++t)
    plans.push_back(make_batch_plan(in, in.streams[t]));

  failure_count failures;
  run_result one_lock, sixteen_locks, direct, async, batched, blocking;
  {
    mutex_lru peer;
    one_lock = run_mutex_peer(peer, in, threads, seconds, failures);
    progress("mutex_lru_1lock", one_lock);
  }
  {
    sharded_mutex_lru peer;
    sixteen_locks = run_mutex_peer(peer, in, threads, seconds, failures);
    progress("mutex_lru_16locks", sixteen_locks);
  }
  size_t shards = 0;
  {
    // Unbounded (max_entries = 0): the working set is all 1M keys, and an
    // unbounded cache measures the call paths without eviction work, like the
    // unbounded mutex peers.
    runtime rt;
    cache_options copts;
    copts.name = "ycsb";
    copts.max_entries = 0;
    auto c = rt.create_cache(copts);
    if (!c) {
      std::fprintf(stderr, "%s: cannot create cache: %s\n", name,
                   rt.system().render(c.error()).c_str());
      return 1;
    }
    shards = c->shard_count();
    load_karlton(*c, in, failures);
    direct = run_karlton_blocking_gets(*c, in, threads, seconds, failures, true);
    progress("karlton_direct", direct);
    async = run_karlton_async(*c, in, threads, seconds, failures);
    progress("karlton_async", async);
    batched = run_karlton_batched(*c, plans, threads, seconds, failures);
    progress("karlton_batched", batched);
    blocking = run_karlton_blocking_gets(*c, in, threads, seconds, failures, false);
    progress("karlton_blocking", blocking);
  }

  auto base = sixteen_locks.ops_per_second();
  auto ratio = [&](const run_result& r) {
    return base > 0 ? r.ops_per_second() / base : 0;
  };
  report out{name};
  out.add("keys", default_keys)
    .add("threads", uint64_t{threads})
    .add("seconds_per_peer", seconds, 1, "s")
    .add("karlton_cache", std::string{"unbounded"})
    .add("karlton_shards", uint64_t{shards})
    .add("async_window", uint64_t{async_window})
    .add("batch_keys", uint64_t{batch_keys})
    .add("mutex_lru_1lock", one_lock.ops_per_second(), 0, "ops/s")
    .add("mutex_lru_16locks", sixteen_locks.ops_per_second(), 0, "ops/s")
    .add("karlton_direct", direct.ops_per_second(), 0, "ops/s")
    .add("karlton_async", async.ops_per_second(), 0, "ops/s")
    .add("karlton_batched", batched.ops_per_second(), 0, "ops/s")
    .add("karlton_blocking", blocking.ops_per_second(), 0, "ops/s")
    .add("ratio_direct", ratio(direct), 3)
    .add("ratio_async", ratio(async), 3)
    .add("ratio_batched", ratio(batched), 3)
    .add("ratio_blocking", ratio(blocking), 3)
    .add("failures", failures.n.load());
  out.print(opts.json);
  if (failures.n > 0) {
    std::fprintf(stderr,
                 "%s: %llu gets missed or calls failed; every key was loaded, "
                 "so the numbers above are suspect\n",
                 name, static_cast<unsigned long long>(failures.n.load()));
    return 1;
  }
  return 0;
}

int run_ycsb_b(const bench_options& opts) {
  return run_ycsb(opts, "ycsb-b", ycsb_b_puts);
}

int run_ycsb_a(const bench_options& opts) {
  return run_ycsb(opts, "ycsb-a", ycsb_a_puts);
}

} // namespace karlton::bench

// write-back: what write-back buys over write-through on a real SQLite file.
// 100k puts of 100 B values over 10k keys of 16 B, generated before timing,
// into a durable SQLite store (synchronous=FULL) in a fresh temporary folder
// that is removed afterwards, in three modes:
//   write_through       every put is committed to the store before its ack
//   write_back          batches of 1000, flushed at the latest after 100 ms
//   write_back_journal  the same, acked once the put is in an fsynced journal
// A write-back run counts until every put is acknowledged AND force_flush()
// returned, so the store has everything (honest end-to-end); the ack-only rate
// is reported beside it. Afterwards the store is read back and must hold the
// last value put to every key. Every mode stops issuing puts after `--seconds`
// (10 s), so the fsync-bound ones report the rate of the puts they managed
// (`*_puts` says how many).
//
// Callers: `--threads` plain threads (2), each owning its own keys so that
// "the last value of a key" is well defined. Each result line names how they
// call:
//   blocking  one `put` at a time, as a service's request thread does. The
//             first line, the headline: the same callers for every mode, and
//             the case write-back is for. Write-through then pays one SQLite
//             commit, i.e. one fsync, per put, however many callers there
//             are (each put reaches an idle shard alone, and the store writer
//             commits every message on its own). The journal group-commits
//             what queues during one fsync, about half the callers: 1.0
//             records per append with 2 threads, 2.0 with 4, 4.0 with 8.
//   async     256 `put_async` callbacks in flight per thread. Fairer to the
//             fsync-bound modes: a shard sends the writes of one drain as one
//             transaction (write-through; measured 1-4 puts per commit, as a
//             shard drains a few jobs at a time) and the journal fsyncs all
//             queued writes together (~200 per append).
// A third line repeats `blocking` on a store with `durable=false`
// (synchronous=NORMAL: no fsync per commit). The journal still fsyncs there,
// so its figure in that line is the journal's own fsync rate.
//
// Every line also has:
//   cache_only  the same puts by the same callers into a cache with no store:
//               what a put costs without write-back. `ratio_vs_cache_only` is
//               `write_back_ops` over it, i.e. what storing everything costs
//               the callers; with async callers the target is >= 0.8.
//   write_back_rows  the writes the store took (async callers: 22-28 % of
//               the puts, coalesced; blocking ones are slower, and coalesce less).
//   store_alone_seconds  after the run, batches of the sizes write-back
//               stored, of distinct random keys, written into a fresh SQLite
//               file by one thread with nothing else running: the write-back
//               run could hardly end sooner, since one thread stored its batches
//               in turn. `ratio_vs_cache_only_bound` is the `ratio_vs_cache_only`
//               of a run that took just that long: about the best a write-back
//               can do with this store and as many batches (an estimate: other
//               keys, measured after the run). Both are left out when either
//               run failed.
//   write_back_transactions_per_1000_puts  store commits (target <= 2).
// The first two lines (blocking and async) also run write-through and
// write-back on a slow disk: the store is wrapped in `slow_store`, which
// sleeps 2 ms before each transaction, over SQLite with synchronous=NORMAL,
// so a commit costs what one sync costs on a disk, 2 ms, whatever this VM's
// write cache does. Write-through pays it per transaction of a few puts, so
// its puts stop after `--seconds` or 3 s, whichever is shorter: the slow disk
// adds about 10 s to the workload (which takes 60-80 s in all, most of it in
// the fsync-bound modes' 10 s caps). `ratio_slow_disk` (target >= 50) is
// write-back's ops/s over write-through's there.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "bench/counting_store.hpp"
#include "bench/report.hpp"
#include "bench/runners.hpp"
#include "bench/workloads.hpp"
#include "stores/faulty_store.hpp"
#include "tests/support/temp_dir.hpp"
#include <karlton/messages/errors.hpp>
#include <karlton/runtime/runtime.hpp>
#include <karlton/stores/sqlite_store.hpp>

namespace karlton::bench {

namespace {

using namespace std::chrono_literals;
using std::chrono::steady_clock;

/// The workload: 100k puts over 10k keys, so each key is written
/// about 10 times and write-back has something to coalesce.
constexpr uint64_t total_puts = 100'000;
constexpr uint64_t key_count = 10'000;

/// The write-back settings (also the option defaults).
constexpr uint32_t batch_size = 1000;
constexpr auto flush_interval = 100ms;

constexpr unsigned default_threads = 2;

/// Cap of each mode's puts: write-through with synchronous=FULL pays about one
/// fsync per put, 2-10 ms on this VM's disk, so 100k would take minutes.
constexpr double default_seconds = 10.0;

/// Async puts in flight per thread: as in ycsb-b, enough to keep the shards
/// busy, far below the ingress capacity (16384) and max-dirty (100k).
constexpr int async_window = 256;

/// force_flush's wait: 100 batches of 1000 at one fsync each take ~1 s here.
constexpr auto flush_timeout = 60s;

/// The slow disk: what one sync costs on a disk that does not cache writes.
constexpr auto slow_disk_sync = 2ms;

/// Cap of the slow disk's puts: write-through does a few hundred puts per
/// second there, and the rate is steady after a few hundred commits.
constexpr double slow_disk_max_seconds = 3.0;

enum class mode { write_through, write_back, write_back_journal, cache_only };
enum class callers { blocking, async };

/// The puts of one caller thread, in order.
struct thread_plan {
  std::vector<uint32_t> keys; // indexes into `inputs::keys`
  std::vector<std::string> values;
};

struct inputs {
  std::vector<std::string> keys;
  std::vector<thread_plan> plans;
};

/// Thread t writes only keys k with k % threads == t, uniformly at random,
/// `total_puts / threads` of them; every value is distinct, so a stored value
/// tells which put it came from.
inputs make_inputs(unsigned threads) {
  inputs in;
  in.keys = make_keys(key_count);
  for (unsigned t = 0; t < threads; ++t) {
    thread_plan p;
    auto own_keys = (key_count - t + threads - 1) / threads;
    auto n = total_puts / threads + (t < total_puts % threads ? 1 : 0);
    rng r{0x5eed + t};
    p.keys.reserve(n);
    p.values.reserve(n);
    for (uint64_t i = 0; i < n; ++i) {
      p.keys.push_back(static_cast<uint32_t>(t + threads * (r.next() % own_keys)));
      p.values.push_back(make_value(i * threads + t));
    }
    in.plans.push_back(std::move(p));
  }
  return in;
}

struct phase_result {
  bool ok = false;     ///< ran, every put acknowledged, the store verified
  uint64_t puts = 0;   ///< acknowledged puts
  uint64_t failed = 0; ///< puts answered with an error
  uint64_t wrong = 0;  ///< keys whose stored value is not their last put
  double ack_seconds = 0;
  double seconds = 0; ///< until force_flush returned
  uint64_t transactions = 0;
  write_stats stats;
  double store_alone_seconds = 0; ///< write-back: its batches, stored again alone

  double ops() const { return seconds > 0 ? puts / seconds : 0; }
  double ack_ops() const { return ack_seconds > 0 ? puts / ack_seconds : 0; }
};

/// One thread's blocking puts until its plan is done or `deadline`; returns
/// how many it issued.
uint64_t put_blocking(const cache& c, const inputs& in, const thread_plan& p,
                      steady_clock::time_point deadline, uint64_t& failed) {
  uint64_t i = 0;
  for (; i < p.keys.size() && steady_clock::now() < deadline; ++i)
    if (c.put(in.keys[p.keys[i]], p.values[i])) ++failed;
  return i;
}

/// The same with `async_window` puts in flight; returns once all are answered.
uint64_t put_async(const cache& c, const inputs& in, const thread_plan& p,
                   steady_clock::time_point deadline, uint64_t& failed) {
  std::atomic<int> in_flight{0};
  std::atomic<uint64_t> errors{0};
  auto done = [&](caf::expected<caf::unit_t> r) {
    if (!r) errors.fetch_add(1, std::memory_order_relaxed);
    in_flight.fetch_sub(1, std::memory_order_release);
  };
  uint64_t i = 0;
  for (; i < p.keys.size() && steady_clock::now() < deadline; ++i) {
    // With 2 cores shared by callers and shards, spinning would steal the
    // shard's core; yielding hands it over.
    while (in_flight.load(std::memory_order_acquire) >= async_window)
      std::this_thread::yield();
    in_flight.fetch_add(1, std::memory_order_relaxed);
    c.put_async(in.keys[p.keys[i]], p.values[i], ttl::cache_default(), done);
  }
  while (in_flight.load(std::memory_order_acquire) > 0)
    std::this_thread::yield();
  failed += errors.load();
  return i;
}

bool holds(const std::optional<std::string>& got, const std::string& want) {
  return got && *got == want;
}
bool holds(const value& got, const std::string& want) {
  return got && got.bytes() == want;
}

/// Keys whose stored value differs from the last put each thread made of it
/// within its first `issued[t]` puts; `read_back(keys)` gives the stored
/// values, empty where missing (or an error: all count as wrong).
template <class ReadBack>
uint64_t count_wrong(ReadBack read_back, const inputs& in,
                     const std::vector<uint64_t>& issued) {
  std::vector<const std::string*> last(in.keys.size(), nullptr);
  for (size_t t = 0; t < in.plans.size(); ++t)
    for (uint64_t i = 0; i < issued[t]; ++i)
      last[in.plans[t].keys[i]] = &in.plans[t].values[i];
  std::vector<std::string> keys;
  std::vector<const std::string*> want;
  for (size_t k = 0; k < last.size(); ++k)
    if (last[k]) {
      keys.push_back(in.keys[k]);
      want.push_back(last[k]);
    }
  auto got = read_back(keys);
  if (!got) return keys.size();
  uint64_t wrong = 0;
  for (size_t i = 0; i < keys.size(); ++i)
    if (!holds((*got)[i], *want[i])) ++wrong;
  return wrong;
}

/// One mode's run. `sync_delay` > 0 puts the store on the slow disk.
phase_result run_phase(mode m, callers how, bool durable, const inputs& in,
                       double seconds, std::chrono::microseconds sync_delay = {}) {
  phase_result out;
  // Write-back on the real disk: what its store alone needs, after the run.
  bool floor_wanted = m == mode::write_back && sync_delay.count() == 0;
  std::optional<testing::temp_dir> dir;
  std::shared_ptr<sqlite_store> db;
  std::shared_ptr<counting_store> counted;
  runtime rt;
  cache_options o;
  o.name = "bench";
  if (m != mode::cache_only) {
    try {
      dir.emplace("bench");
    } catch (const std::system_error& e) {
      std::fprintf(stderr, "write-back: %s\n", e.what());
      return out;
    }
    auto opened =
      sqlite_store::open(dir->file("bench.db"), "bench", sqlite_options{durable});
    if (!opened) {
      std::fprintf(stderr, "write-back: %s\n", describe(opened.error()).c_str());
      return out;
    }
    db = *opened;
    std::shared_ptr<store> disk = db;
    if (sync_delay.count() > 0) disk = std::make_shared<slow_store>(disk, sync_delay);
    counted = std::make_shared<counting_store>(disk);
    o.backing_store = counted;
    o.writes =
      m == mode::write_through ? write_mode::write_through : write_mode::write_back;
    o.batch_size = batch_size;
    o.flush_interval = flush_interval;
    if (m == mode::write_back_journal) o.journal_path = dir->file("bench.journal");
  }
  auto c = rt.create_cache(o);
  if (!c) {
    std::fprintf(stderr, "write-back: %s\n", describe(c.error()).c_str());
    return out;
  }
  auto threads = static_cast<unsigned>(in.plans.size());
  std::vector<uint64_t> issued(threads), failed(threads);
  std::atomic<unsigned> ready{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      ready.fetch_add(1);
      while (!go.load(std::memory_order_acquire))
        std::this_thread::yield();
      auto deadline =
        steady_clock::now() + std::chrono::duration_cast<steady_clock::duration>(
                                std::chrono::duration<double>{seconds});
      const auto& p = in.plans[t];
      issued[t] = how == callers::blocking ? put_blocking(*c, in, p, deadline, failed[t])
                                           : put_async(*c, in, p, deadline, failed[t]);
    });
  while (ready.load() < threads)
    std::this_thread::yield();
  auto start = steady_clock::now();
  go.store(true, std::memory_order_release);
  for (auto& t : pool)
    t.join();
  auto acked = steady_clock::now();
  auto flushed = c->force_flush(flush_timeout);
  auto end = steady_clock::now();
  if (flushed) {
    std::fprintf(stderr, "write-back: force_flush: %s\n", describe(flushed).c_str());
    return out;
  }
  out.ack_seconds = std::chrono::duration<double>(acked - start).count();
  out.seconds = std::chrono::duration<double>(end - start).count();
  for (unsigned t = 0; t < threads; ++t) {
    out.puts += issued[t] - failed[t];
    out.failed += failed[t];
  }
  if (counted) {
    out.transactions = counted->transactions();
    if (auto s = c->flush_stats()) out.stats = *s;
    out.wrong =
      count_wrong([&](const auto& keys) { return db->load_many(keys); }, in, issued);
    if (floor_wanted) { // a side measurement: its failure fails no run
      auto alone = store_alone(counted->batch_sizes(), in.keys, in.plans.front().values,
                               dir->file("alone.db"), durable);
      if (alone)
        out.store_alone_seconds = *alone;
      else
        std::fprintf(stderr, "write-back: store alone: %s\n",
                     describe(alone.error()).c_str());
    }
  } else {
    // No store: the cache itself must hold every key's last value (it is
    // unbounded and nothing expires).
    out.wrong =
      count_wrong([&](const auto& keys) { return c->get_many(keys); }, in, issued);
  }
  out.ok = out.failed == 0 && out.wrong == 0;
  if (!out.ok)
    std::fprintf(
      stderr,
      "write-back: %llu puts failed, %llu keys hold the wrong value in the store\n",
      static_cast<unsigned long long>(out.failed),
      static_cast<unsigned long long>(out.wrong));
  return out;
}

double ratio(double a, double b) {
  return b > 0 ? a / b : 0;
}

double per_1000(uint64_t n, uint64_t puts) {
  return puts > 0 ? 1000.0 * static_cast<double>(n) / static_cast<double>(puts) : 0;
}

/// Runs the three modes and the cache without a store with one kind of caller
/// and store, and with `slow_disk` write-through and write-back on the slow
/// disk; prints one line.
bool run_config(callers how, bool durable, bool slow_disk, const inputs& in,
                double seconds, bool json) {
  auto wt = run_phase(mode::write_through, how, durable, in, seconds);
  auto wb = run_phase(mode::write_back, how, durable, in, seconds);
  auto wj = run_phase(mode::write_back_journal, how, durable, in, seconds);
  auto bare = run_phase(mode::cache_only, how, durable, in, seconds);
  bool ok = wt.ok && wb.ok && wj.ok && bare.ok;
  // The slow disk's own sync stands for the fsync: SQLite does not add one.
  auto slow_seconds = std::min(seconds, slow_disk_max_seconds);
  phase_result slow_wt, slow_wb;
  if (slow_disk) {
    slow_wt =
      run_phase(mode::write_through, how, false, in, slow_seconds, slow_disk_sync);
    slow_wb = run_phase(mode::write_back, how, false, in, seconds, slow_disk_sync);
    ok = ok && slow_wt.ok && slow_wb.ok;
  }
  auto per_append =
    wj.stats.journal_appends == 0
      ? 0.0
      : static_cast<double>(wj.stats.journal_records) / wj.stats.journal_appends;
  report r{"write-back"};
  r.add("callers", std::string{how == callers::blocking ? "blocking" : "async"})
    .add("durable", uint64_t{durable ? 1u : 0u})
    .add("sqlite_synchronous", std::string{durable ? "FULL" : "NORMAL"})
    .add("threads", uint64_t{in.plans.size()})
    .add("puts", total_puts)
    .add("keys", key_count)
    .add("cap_seconds", seconds, 1, "s")
    .add("write_through_puts", wt.puts)
    .add("write_through_seconds", wt.seconds, 2, "s")
    .add("write_through_transactions", wt.transactions)
    .add("write_through_ops", wt.ops(), 0, "puts/s")
    .add("write_back_puts", wb.puts)
    .add("write_back_seconds", wb.seconds, 2, "s")
    .add("write_back_ack_ops", wb.ack_ops(), 0, "puts/s")
    .add("write_back_ops", wb.ops(), 0, "puts/s")
    .add("write_back_batches", wb.stats.batches)
    .add("write_back_coalesced", wb.stats.writes_coalesced)
    .add("write_back_journal_puts", wj.puts)
    .add("write_back_journal_seconds", wj.seconds, 2, "s")
    .add("write_back_journal_ack_ops", wj.ack_ops(), 0, "puts/s")
    .add("write_back_journal_ops", wj.ops(), 0, "puts/s")
    .add("write_back_journal_batches", wj.stats.batches)
    .add("journal_appends", wj.stats.journal_appends)
    .add("journal_records_per_append", per_append, 1)
    .add("ratio_write_back", ratio(wb.ops(), wt.ops()), 1, "x")
    .add("ratio_write_back_journal", ratio(wj.ops(), wt.ops()), 1, "x")
    .add("write_back_transactions", wb.transactions)
    .add("write_back_transactions_per_1000_puts", per_1000(wb.transactions, wb.puts), 2)
    .add("cache_only_puts", bare.puts)
    .add("cache_only_seconds", bare.seconds, 2, "s")
    .add("cache_only_ops", bare.ops(), 0, "puts/s")
    .add("ratio_vs_cache_only", ratio(wb.ops(), bare.ops()), 2, "x")
    .add("write_back_rows", wb.stats.entries_flushed);
  if (wb.ok && bare.ok && bare.ops() > 0 && wb.store_alone_seconds > 0)
    r.add("store_alone_seconds", wb.store_alone_seconds, 3, "s")
      .add("ratio_vs_cache_only_bound",
           std::min(1.0, ratio(static_cast<double>(wb.puts) / wb.store_alone_seconds,
                               bare.ops())),
           2, "x");
  if (slow_disk)
    r.add("slow_disk_sync_ms",
          std::chrono::duration<double, std::milli>{slow_disk_sync}.count(), 1, "ms")
      .add("slow_disk_sqlite_synchronous", std::string{"NORMAL"})
      .add("slow_disk_write_through_cap_seconds", slow_seconds, 1, "s")
      .add("slow_disk_write_through_puts", slow_wt.puts)
      .add("slow_disk_write_through_transactions", slow_wt.transactions)
      .add("slow_disk_write_through_ops", slow_wt.ops(), 0, "puts/s")
      .add("slow_disk_write_back_puts", slow_wb.puts)
      .add("slow_disk_write_back_seconds", slow_wb.seconds, 2, "s")
      .add("slow_disk_write_back_transactions", slow_wb.transactions)
      .add("slow_disk_write_back_ops", slow_wb.ops(), 0, "puts/s")
      .add("ratio_slow_disk", ratio(slow_wb.ops(), slow_wt.ops()), 1, "x");
  r.add("verified", uint64_t{ok ? 1u : 0u});
  r.print(json);
  return ok;
}

} // namespace

int run_write_back(const bench_options& opts) {
  auto threads = opts.threads.value_or(default_threads);
  auto seconds = opts.seconds.value_or(default_seconds);
  auto in = make_inputs(threads);
  bool ok = run_config(callers::blocking, true, true, in, seconds, opts.json);
  ok = run_config(callers::async, true, true, in, seconds, opts.json) && ok;
  ok = run_config(callers::blocking, false, false, in, seconds, opts.json) && ok;
  return ok ? 0 : 1;
}

} // namespace karlton::bench

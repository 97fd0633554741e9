// The write-back journal through the whole runtime: bounded under a steady
// stream that never lets it be emptied, and repaired after a failed fsync,
// so that a replay never puts an older value over a stored one.
#include <catch2/catch.hpp>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <unistd.h>

#include "stores/journal.hpp"
#include "support/eventually.hpp"
#include "support/log_sink_lines.hpp"
#include "support/must.hpp"
#include "support/refusing_store.hpp"
#include "support/sync_faults.hpp"
#include "support/temp_dir.hpp"
#include <karlton/messages/errors.hpp>
#include <karlton/runtime/runtime.hpp>
#include <karlton/stores/memory_store.hpp>

using namespace karlton;
using namespace std::chrono_literals;
using karlton::testing::failing_syncs;
using karlton::testing::must;
using karlton::testing::sync_faults;

namespace {

cache_options journaled(std::shared_ptr<store> db, std::string path) {
  cache_options o;
  o.name = "journaled";
  o.shards = 2;
  o.backing_store = std::move(db);
  o.writes = write_mode::write_back;
  o.journal_path = std::move(path);
  return o;
}

// What a restart would store: the journal's records (read from a copy, as
// the live file is held) written over `rows` in order, as one transaction.
std::map<std::string, std::optional<std::string>>
replayed(const std::string& journal_path, const testing::temp_dir& dir,
         std::map<std::string, std::optional<std::string>> rows) {
  // The journal actor may still empty the file (its reset once everything
  // is stored) while it is copied.
  auto copy = dir.file("replay-copy");
  testing::snapshot(journal_path, copy);
  auto j = journal::open(copy, "journaled");
  if (!j) FAIL(describe(j.error()));
  for (const auto& w : j->recovered())
    rows[w.key] = w.bytes;
  return rows;
}

// Values are "v<n>" with n rising per key, so "older" is a number compare.
long version_of(const std::optional<std::string>& v) {
  return v ? std::stol(v->substr(1)) : -1;
}

// A runtime over a memory store whose journal lives in a fresh folder and
// syncs through `flaky_sync`, for the tests of journal faults.
struct journal_fault {
  testing::temp_dir dir{"journal-fault"};
  std::string path = dir.file("wal");
  std::shared_ptr<memory_store> db = std::make_shared<memory_store>();
  sync_faults faults;
  runtime rt;
};

} // namespace

TEST_CASE("a journal under a steady write stream for 60 s stays under its bound",
          "[write_back][journal]") {
  testing::temp_dir dir{"journal-bound"};
  auto path = dir.file("wal");
  auto db = std::make_shared<memory_store>();
  auto gate = std::make_shared<testing::refusing_store>(db);
  runtime rt;
  auto o = journaled(gate, path);
  // The bound: a rewrite once the file reaches journal-max-bytes; it then
  // holds the unstored writes, at most max-dirty records, so the next one
  // comes at max(journal-max-bytes, 2 x that). One group commit (at most
  // max-dirty records) can land on top.
  o.journal_max_bytes = 256 * 1024;
  o.max_dirty = 1000;
  o.batch_size = 200;
  o.flush_interval = 20ms;
  // Fewer keys than max-dirty, so a closed gate never makes a put wait.
  constexpr int keys_per_writer = 400;
  constexpr uint64_t record_bytes = 24 + 8 + 100; // header, key "w1-00399", value
  const uint64_t bound =
    std::max<uint64_t>(o.journal_max_bytes, 2 * 1000 * record_bytes) +
    1000 * record_bytes;
  auto c = must(rt.create_cache(o));
  std::vector<std::vector<long>> last(2, std::vector<long>(keys_per_writer, -1));
  std::atomic<uint64_t> largest{0};
  auto key_of = [](int part, int k) {
    auto n = std::to_string(k);
    return "w" + std::to_string(part) + "-" + std::string(5 - n.size(), '0') + n;
  };
  auto start = std::chrono::steady_clock::now();
  // Each writer owns its keys, so "the last acknowledged value" is defined.
  auto writer = [&](int part) {
    for (long i = 0; i < 50'000'000; ++i) { // a count bound as well as the time
      // The store takes nothing for 4096 of every 8192 puts of writer 0:
      // then the journal only grows, whatever the machine's speed, and must
      // be rewritten to stay bounded. (When the store keeps up, the journal
      // is emptied instead, and a slow machine never saw a rewrite.)
      if (part == 0) gate->refuse_all = i % 8192 < 4096;
      if (i % 256 == 0) {
        if (std::chrono::steady_clock::now() - start >= 60s) return i;
        auto size = std::filesystem::file_size(path);
        auto seen = largest.load();
        while (size > seen && !largest.compare_exchange_weak(seen, size)) {
        }
      }
      auto k = static_cast<int>(i % keys_per_writer);
      auto v = "v" + std::to_string(i);
      v.resize(100, '.');
      REQUIRE_FALSE(c.put(key_of(part, k), v));
      last[part][k] = i;
    }
    return 50'000'000L;
  };
  auto w0 = std::async(std::launch::async, writer, 0);
  auto w1 = std::async(std::launch::async, writer, 1);
  auto puts = w0.get() + w1.get();
  gate->refuse_all = false; // shutdown stores what is pending
  auto s = must(c.flush_stats());
  INFO(puts << " puts; journal at most " << largest.load() << " bytes, bound " << bound
            << "; " << s.journal_rewrites << " rewrites");
  CHECK(largest.load() <= bound);
  CHECK(s.journal_rewrites > 0);
  // A restart now (the journal copied first, the store read after, so the
  // store can only be ahead): every key ends at its last acknowledged value.
  std::map<std::string, std::optional<std::string>> rows;
  auto journal_copy = dir.file("at-stop");
  testing::snapshot(path, journal_copy);
  for (int part = 0; part < 2; ++part)
    for (int k = 0; k < keys_per_writer; ++k)
      rows[key_of(part, k)] = db->peek(key_of(part, k));
  auto after = replayed(journal_copy, dir, rows);
  int older = 0;
  for (int part = 0; part < 2; ++part)
    for (int k = 0; k < keys_per_writer; ++k)
      if (version_of(after[key_of(part, k)]) != last[part][k]) ++older;
  CHECK(older == 0);
}

TEST_CASE_METHOD(
  journal_fault,
  "a failed journal fsync is repaired and acknowledged writes replay in order",
  "[write_back][journal][fault]") {
  auto o = journaled(db, path);
  o.flush_interval = std::chrono::hours{1}; // stored by force_flush only
  auto c = must(rt.create_cache(o));
  REQUIRE_FALSE(c.put("k", "v1"));
  failing_syncs = 1; // the next append's fsync fails
  // Before: an error, a broken journal, and v3 refused by it yet stored.
  REQUIRE_FALSE(c.put("k", "v2"));
  REQUIRE_FALSE(c.put("k", "v3"));
  auto s = must(c.flush_stats());
  CHECK(s.journal_failures == 1);
  CHECK(s.journal_rewrites == 1);
  REQUIRE_FALSE(c.force_flush());
  CHECK(db->peek("k") == std::optional<std::string>{"v3"});
  // A crash now replays the journal over the store: v3 must stay.
  auto after = replayed(path, dir, {{"k", db->peek("k")}});
  CHECK(after["k"] == std::optional<std::string>{"v3"});
}

TEST_CASE_METHOD(
  journal_fault,
  "a put the journal cannot make durable is not stored until the journal recovers",
  "[write_back][journal][fault]") {
  auto o = journaled(db, path);
  o.flush_interval = 1ms;
  o.retry_base = 1ms;
  o.retry_max = 10ms;
  o.call_timeout = 400ms;
  auto c = must(rt.create_cache(o));
  REQUIRE_FALSE(c.put("k", "v1"));
  REQUIRE_FALSE(c.force_flush());
  REQUIRE_FALSE(c.put("k", "v2")); // acknowledged, in the journal, not stored yet
  failing_syncs = -1;              // the disk is gone
  for (int i = 3; i <= 5; ++i) {
    auto err = c.put("k", "v" + std::to_string(i));
    CHECK(err);
    INFO(describe(err));
  }
  // Flush what it may. The wait only gives a wrong flusher its chance (the
  // old code stored v5 here); the outcome is checked on the store's contents,
  // which no wait can change: the flusher holds the write until it is durable.
  (void)c.force_flush(200ms);
  auto stored = db->peek("k");
  CHECK(version_of(stored) <= 2);
  // A crash now: the journal (the file before the failure) replays v2, and
  // must not go back behind what the store has.
  auto after = replayed(path, dir, {{"k", stored}});
  CHECK(version_of(after["k"]) >= version_of(stored));
  CHECK(after["k"] == std::optional<std::string>{"v2"});
  // The disk is back: the next put rewrites the journal from memory.
  failing_syncs = 0;
  REQUIRE_FALSE(c.put("k", "v6"));
  REQUIRE_FALSE(c.force_flush());
  CHECK(db->peek("k") == std::optional<std::string>{"v6"});
  CHECK(must(c.flush_stats()).journal_rewrites >= 1);
  after = replayed(path, dir, {{"k", db->peek("k")}});
  CHECK(after["k"] == std::optional<std::string>{"v6"});
}

namespace {

// A journal fsync that waits until the test opens the gate: a disk that stalls.
std::mutex stall_mutex;
std::condition_variable stall_cv;
bool stalled = false;
std::atomic<int> syncs_stalled{0};

int stalling_sync(int fd) {
  {
    std::unique_lock<std::mutex> lock{stall_mutex};
    if (stalled) {
      ++syncs_stalled;
      stall_cv.wait(lock, [] { return !stalled; });
    }
  }
  return ::fdatasync(fd) == 0 ? 0 : errno;
}

void set_stalled(bool on) {
  {
    std::lock_guard<std::mutex> lock{stall_mutex};
    stalled = on;
  }
  stall_cv.notify_all();
}

// The journal syncs through `stalling_sync` while it lives; the stall is lifted after.
struct stalling_syncs {
  stalling_syncs() { journal::set_sync_for_testing(stalling_sync); }
  ~stalling_syncs() {
    set_stalled(false);
    journal::set_sync_for_testing(nullptr);
  }
};

// Stalls the journal's syncs and puts k = v1 into `c`; returns once the sync
// of that put is stalled.
template <class Done>
void put_as_sync_stalls(cache& c, Done done) {
  auto stalls_before = syncs_stalled.load();
  set_stalled(true);
  c.put_async("k", "v1", ttl::never(), std::move(done));
  REQUIRE(testing::eventually([&] { return syncs_stalled.load() > stalls_before; }));
}

} // namespace

TEST_CASE("rewrites of a pending key during a stalled journal fsync stay under max-dirty",
          "[write_back][journal]") {
  // Before the runtime: callbacks may still run while it shuts down.
  std::atomic<int> acked{0}, failed{0};
  testing::temp_dir dir{"journal-stall"};
  auto db = std::make_shared<memory_store>();
  runtime rt;
  auto o = journaled(db, dir.file("wal"));
  o.shards = 1;
  o.max_dirty = 4;
  o.call_timeout = 120s; // nothing parked gives up while the test counts
  auto c = must(rt.create_cache(o));
  stalling_syncs stalls;
  set_stalled(true);
  constexpr int puts = 20;
  for (int i = 1; i <= puts; ++i)
    c.put_async("k", "v" + std::to_string(i), ttl::never(),
                [&](caf::expected<caf::unit_t> r) { ++(r ? acked : failed); });
  // The first append waits in its fsync. Each rewrite of k replaced the
  // pending write at once, but its copy waits for the next group commit:
  // it keeps its unit of max-dirty until then, so all but 4 puts park (before,
  // each gave its unit back at once and all 20 copies queued).
  REQUIRE(testing::eventually([&] { return syncs_stalled.load() >= 1; }));
  REQUIRE(testing::eventually([&] { return must(c.stats()).writes_parked == puts - 4; }));
  CHECK(acked == 0);
  set_stalled(false);
  REQUIRE(testing::eventually([&] { return acked + failed == puts; }));
  CHECK(failed == 0);
  REQUIRE_FALSE(c.force_flush());
  CHECK(db->peek("k") == std::optional<std::string>{"v" + std::to_string(puts)});
  CHECK(must(c.stats()).writes_parked == 0);
}

TEST_CASE("a write-back put whose journal sync is under way at shutdown hears ok",
          "[write_back][journal][shutdown]") {
  // Before, the shards stopped first: the caller heard shut_down for a write
  // the flusher then stored.
  std::promise<caf::expected<caf::unit_t>> answer; // before the runtime
  auto answered = answer.get_future();
  testing::temp_dir dir{"journal-shutdown"};
  auto db = std::make_shared<memory_store>();
  runtime rt;
  auto o = journaled(db, dir.file("wal"));
  o.shards = 1;
  auto c = must(rt.create_cache(o));
  stalling_syncs stalls;
  put_as_sync_stalls(
    c, [&](caf::expected<caf::unit_t> r) { answer.set_value(std::move(r)); });
  auto stopping = std::async(std::launch::async, [&] { return rt.shutdown(); });
  struct unstall { // before `stopping` waits for shutdown, should a REQUIRE fail
    ~unstall() { set_stalled(false); }
  } unstall_first;
  // The gate closed: from here the shards stopped at once, before the fix.
  REQUIRE(testing::eventually([&] {
    auto r = c.contains("other");
    return !r && r.error() == errc::shut_down;
  }));
  set_stalled(false);
  auto report = stopping.get();
  auto r = answered.get();
  CHECK(r);
  CHECK(report.unstored_writes() == 0);
  CHECK(db->peek("k") == std::optional<std::string>{"v1"});
}

TEST_CASE("shutdown with a stalled journal waits for writes at most flush_timeout in all",
          "[write_back][journal][shutdown]") {
  // Settling (the shard waits for the journal's sync) and draining (the
  // flusher waits for it too) share one deadline. Before, each waited up to
  // flush_timeout: twice it in all.
  testing::log_sink_lines log; // before the runtime: it logs while it stops
  testing::temp_dir dir{"journal-deadline"};
  auto db = std::make_shared<memory_store>();
  runtime rt;
  auto o = journaled(db, dir.file("wal"));
  o.shards = 1;
  auto c = must(rt.create_cache(o));
  stalling_syncs stalls;
  put_as_sync_stalls(c, [](caf::expected<caf::unit_t>) {});
  constexpr auto flush_timeout = 2s;
  auto started = std::chrono::steady_clock::now();
  auto stopping =
    std::async(std::launch::async, [&] { return rt.shutdown(flush_timeout); });
  struct unstall { // before `stopping` waits for shutdown, should a REQUIRE fail
    ~unstall() { set_stalled(false); }
  } unstall_first;
  // The drain's report is the last wait for writes; the journal stays stalled till then.
  auto drained = log.wait_for("could not be stored before shutdown", 30s);
  auto took = std::chrono::steady_clock::now() - started;
  set_stalled(false);
  auto report = stopping.get();
  REQUIRE_FALSE(drained.empty());
  CHECK_FALSE(log.containing("still had writes with the store or flusher").empty());
  CHECK(took < flush_timeout + 1500ms); // before: at least twice flush_timeout
  CHECK(report.unstored_writes() == 1);
}

// put_batch (runtime/put_batch.hpp): puts sent as one job per shard, each
// answered on its own. Jobs are counted by the shards (cache_stats's
// ingress_jobs), so "one per shard" is a count, not a timing.
#include <catch2/catch.hpp>

#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "server/gated_store.hpp"
#include "support/must.hpp"
#include <karlton/messages/errors.hpp>
#include <karlton/runtime/put_batch.hpp>
#include <karlton/runtime/runtime.hpp>

using namespace karlton;
using karlton::testing::must;

namespace {

/// Records each answer; `wait_for(n)` waits (at most 10 s) until n are in.
struct recorder final : put_answers {
  std::mutex mtx;
  std::condition_variable cv;
  std::map<uint64_t, caf::error> answers;
  int batches = 0; // `answered` calls

  void answer(uint64_t tag, const caf::error& err) noexcept override {
    std::lock_guard<std::mutex> guard{mtx};
    answers.emplace(tag, err);
  }
  void answered() noexcept override {
    std::lock_guard<std::mutex> guard{mtx};
    ++batches;
    cv.notify_all();
  }
  size_t count() {
    std::lock_guard<std::mutex> guard{mtx};
    return answers.size();
  }
  int batch_count() {
    std::lock_guard<std::mutex> guard{mtx};
    return batches;
  }
  /// Waits until `n` answers and `b` batches of answers are in: a job
  /// answers its puts before it says `answered`.
  bool wait_for(size_t n, int b = 0) {
    std::unique_lock<std::mutex> guard{mtx};
    return cv.wait_for(guard, std::chrono::seconds{10},
                       [&] { return answers.size() >= n && batches >= b; });
  }
};

cache four_shard_cache(runtime& rt) {
  cache_options o;
  o.name = "c";
  o.shards = 4;
  return must(rt.create_cache(o));
}

uint64_t jobs_run(const cache& c) {
  return must(c.stats()).ingress_jobs;
}

size_t shards_of(const cache& c, int keys) {
  std::set<shard_actor> shards;
  for (int i = 0; i < keys; ++i)
    shards.insert(c.shard_for("k" + std::to_string(i)));
  return shards.size();
}

} // namespace

TEST_CASE("put_batch: 16 puts reach the shards as one job per shard and each is answered",
          "[put_batch]") {
  runtime rt;
  auto c = four_shard_cache(rt);
  auto before = jobs_run(c);
  auto r = std::make_shared<recorder>();
  {
    put_batch b{c, r};
    for (int i = 0; i < 16; ++i)
      REQUIRE_FALSE(b.add("k" + std::to_string(i), "v" + std::to_string(i),
                          ttl::cache_default(), uint64_t(i)));
    CHECK_FALSE(b.empty());
    b.send();
    CHECK(b.empty());
  }
  // One `answered` per job, not per put.
  auto jobs = int(shards_of(c, 16));
  REQUIRE(r->wait_for(16, jobs));
  for (int i = 0; i < 16; ++i)
    CHECK_FALSE(r->answers.at(uint64_t(i)));
  CHECK(r->batch_count() == jobs);
  // The stats call is one more job on each of the 4 shards; 16 `put_async`s
  // would be 16 jobs.
  CHECK(jobs_run(c) - before == shards_of(c, 16) + 4);
  for (int i = 0; i < 16; ++i)
    CHECK(must(c.get("k" + std::to_string(i))).bytes() == "v" + std::to_string(i));
}

TEST_CASE("put_batch: done jobs come back to the batch and are reused", "[put_batch]") {
  runtime rt;
  auto c = four_shard_cache(rt);
  auto r = std::make_shared<recorder>();
  put_batch b{c, r};
  constexpr int rounds = 50;
  for (int round = 0; round < rounds; ++round) {
    for (int i = 0; i < 16; ++i)
      REQUIRE_FALSE(b.add("k" + std::to_string(i), "v", ttl::cache_default(),
                          uint64_t(round * 16 + i)));
    b.send();
    REQUIRE(r->wait_for(size_t(round + 1) * 16));
    // A job comes back just after its last answer: wait for that event
    // (bounded), so that the next round finds every job back.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{10};
    while (b.jobs_in_use() > 0 && std::chrono::steady_clock::now() < deadline)
      std::this_thread::yield();
    REQUIRE(b.jobs_in_use() == 0);
  }
  // One job per shard touched, made in the first round (was one per shard
  // touched per round).
  CHECK(b.jobs_made() == shards_of(c, 16));
}

TEST_CASE("put_batch: puts of one key keep their order, across full jobs too",
          "[put_batch]") {
  runtime rt;
  auto c = must(rt.create_cache("c"));
  auto before = jobs_run(c);
  auto r = std::make_shared<recorder>();
  put_batch b{c, r};
  constexpr int n = 3 * put_batch::max_job_puts + 1; // four jobs of one shard
  for (int i = 0; i < n; ++i)
    REQUIRE_FALSE(b.add("k", std::to_string(i), ttl::cache_default(), uint64_t(i)));
  b.send();
  REQUIRE(r->wait_for(n));
  CHECK(must(c.get("k")).bytes() == std::to_string(n - 1));
  CHECK(jobs_run(c) - before == 4 + c.shard_count());
}

TEST_CASE("put_batch: a put refused by add leaves the others to be stored",
          "[put_batch]") {
  runtime rt;
  cache_options o;
  o.name = "c";
  o.max_value_bytes = 8;
  auto c = must(rt.create_cache(o));
  auto r = std::make_shared<recorder>();
  put_batch b{c, r};
  REQUIRE_FALSE(b.add("a", "1", ttl::cache_default(), 1));
  CHECK(b.add("b", "123456789", ttl::cache_default(), 2) == errc::value_too_large);
  CHECK(b.add("c", "3", ttl::after(std::chrono::seconds{-1}), 3) == errc::invalid_option);
  REQUIRE_FALSE(b.add("d", "4", ttl::cache_default(), 4));
  b.send();
  REQUIRE(r->wait_for(2));
  CHECK(r->answers.size() == 2);
  CHECK(r->answers.count(2) == 0);
  CHECK(must(c.get("a")));
  CHECK_FALSE(must(c.get("b")));
  CHECK(must(c.get("d")));
}

TEST_CASE("put_batch: with nobody to answer, and when destroyed unsent, the puts are "
          "still stored",
          "[put_batch]") {
  runtime rt;
  auto c = must(rt.create_cache("c"));
  {
    auto gone = std::make_shared<recorder>();
    put_batch b{c, gone};
    REQUIRE_FALSE(b.add("a", "1", ttl::cache_default(), 1));
    gone.reset();
    b.send();
    REQUIRE_FALSE(b.add("b", "2", ttl::cache_default(), 2));
  } // sends "b"
  // A miss goes to the shard behind the batch's job: no wait needed.
  CHECK(must(c.get("a")).bytes() == "1");
  CHECK(must(c.get("b")).bytes() == "2");
}

TEST_CASE("put_batch: under write-through each put is answered once the store has it",
          "[put_batch]") {
  testing::gated_cache f;
  auto r = std::make_shared<recorder>();
  put_batch b{f.c, r};
  REQUIRE_FALSE(b.add("a", "1", ttl::cache_default(), 1));
  REQUIRE_FALSE(b.add("b", "2", ttl::cache_default(), 2));
  b.send();
  // The store holds the first write: nothing is answered yet.
  auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds{10};
  while (f.db->writes_waiting.load() == 0 && std::chrono::steady_clock::now() < give_up)
    std::this_thread::yield();
  REQUIRE(f.db->writes_waiting.load() > 0);
  CHECK(r->count() == 0);
  f.db->gate.release();
  REQUIRE(r->wait_for(2));
  CHECK_FALSE(r->answers.at(1));
  CHECK_FALSE(r->answers.at(2));
  CHECK(must(f.db->rows->load("a")) == "1");
  CHECK(must(f.db->rows->load("b")) == "2");
}

TEST_CASE("put_batch: after shutdown each put is answered shut_down", "[put_batch]") {
  runtime rt;
  auto c = must(rt.create_cache("c"));
  auto r = std::make_shared<recorder>();
  put_batch b{c, r};
  REQUIRE_FALSE(b.add("a", "1", ttl::cache_default(), 1));
  REQUIRE_FALSE(b.add("b", "2", ttl::cache_default(), 2));
  rt.shutdown();
  b.send();
  REQUIRE(r->wait_for(2));
  CHECK(r->answers.at(1) == errc::shut_down);
  CHECK(r->answers.at(2) == errc::shut_down);
}

// The ingress queue (actors/ingress.hpp) on its own: its bound, its order,
// each job taken exactly once by concurrent pops, and the doorbell protocol
// leaving no job behind. The threaded cases stop on counts, not on time.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "actors/ingress.hpp"

using namespace karlton;

namespace {

// A job that only carries a number; the tests never run it.
struct numbered final : shard_job {
  explicit numbered(uint32_t n) : n(n) {}
  void run(shard_state&, time_point) override {}
  void abandon(const caf::error&) override {}
  uint32_t n;
};

} // namespace

TEST_CASE(
  "an ingress queue holds exactly its capacity, first in first out, lap after lap",
  "[ingress]") {
  for (size_t capacity : {2, 3, 7}) {
    ingress q{capacity};
    std::vector<numbered> jobs;
    for (uint32_t i = 0; i < 100; ++i)
      jobs.emplace_back(i);
    uint32_t pushed = 0;
    uint32_t popped = 0;
    // Fill to the bound, then take one and put one, so the ring wraps many
    // times; every refusal comes exactly at the bound.
    while (popped < jobs.size()) {
      while (pushed < jobs.size() && pushed - popped < capacity)
        REQUIRE(q.push(&jobs[pushed++]));
      if (pushed < jobs.size()) CHECK_FALSE(q.push(&jobs[pushed]));
      auto job = static_cast<numbered*>(q.pop());
      REQUIRE(job != nullptr);
      CHECK(job->n == popped++);
    }
    CHECK(q.pop() == nullptr);
  }
}

TEST_CASE("jobs pushed by 3 threads while 2 threads pop are each taken exactly once",
          "[ingress]") {
  // Two consumers, as when shutdown fails what is queued beside a running
  // shard; small rings of sizes that are no power of two, so pushes meet a
  // full queue and pops an empty one, and the slots' laps wrap unevenly.
  for (size_t capacity : {3, 63}) {
    constexpr uint32_t per_producer = 100'000;
    constexpr uint32_t producers = 3;
    constexpr uint32_t total = per_producer * producers;
    ingress q{capacity};
    std::vector<numbered> jobs;
    jobs.reserve(total);
    for (uint32_t i = 0; i < total; ++i)
      jobs.emplace_back(i);
    std::vector<std::atomic<uint8_t>> seen(total);
    std::atomic<uint32_t> taken{0};
    // Bounded: a lost job (or a duplicate) would keep the counts from meeting;
    // everyone stops once nothing was taken for 10 s.
    std::atomic<bool> given_up{false};
    std::vector<std::thread> threads;
    for (uint32_t p = 0; p < producers; ++p)
      threads.emplace_back([&, p] {
        for (uint32_t i = p * per_producer; i < (p + 1) * per_producer; ++i)
          while (!q.push(&jobs[i])) {
            if (given_up.load()) return;
            std::this_thread::yield();
          }
      });
    for (int c = 0; c < 2; ++c)
      threads.emplace_back([&] {
        while (taken.load() < total && !given_up.load()) {
          if (auto job = static_cast<numbered*>(q.pop())) {
            seen[job->n].fetch_add(1);
            taken.fetch_add(1);
          } else {
            std::this_thread::yield();
          }
        }
      });
    uint32_t last = 0;
    auto idle_since = std::chrono::steady_clock::now();
    while (taken.load() < total &&
           std::chrono::steady_clock::now() - idle_since < std::chrono::seconds{10}) {
      if (taken.load() != last) {
        last = taken.load();
        idle_since = std::chrono::steady_clock::now();
      }
      std::this_thread::yield();
    }
    given_up = true;
    for (auto& t : threads)
      t.join();
    uint32_t once = 0;
    for (auto& s : seen)
      once += s.load() == 1;
    CHECK(once == total);
    CHECK(q.pop() == nullptr);
  }
}

TEST_CASE("the doorbell protocol leaves no job queued without a doorbell", "[ingress]") {
  // Producers push and ring only when they claim the doorbell; a consumer
  // drains only while it holds one and stops when `release_doorbell` says so.
  // The producer waits until its job was taken before pushing the next, so
  // its pushes keep landing just as the consumer finds the queue empty and
  // lets the doorbell go, and nothing later would ring for a job left behind:
  // the consumer would wait for a doorbell that never comes, until its bound.
  constexpr uint32_t total = 100'000;
  ingress q{16};
  std::vector<numbered> jobs;
  jobs.reserve(total);
  for (uint32_t i = 0; i < total; ++i)
    jobs.emplace_back(i);
  std::vector<std::atomic<bool>> done(total);
  std::atomic<uint64_t> rings{0};    // doorbells sent to the consumer
  std::atomic<bool> given_up{false}; // the consumer stopped: so do producers
  std::atomic<uint32_t> refused{0};  // never: one job is queued at a time
  std::thread producer{[&] {
    for (uint32_t i = 0; i < total; ++i) {
      if (!q.push(&jobs[i])) refused.fetch_add(1);
      if (q.claim_doorbell()) rings.fetch_add(1);
      while (!done[i].load()) {
        if (given_up.load()) return;
        std::this_thread::yield();
      }
    }
  }};
  uint64_t answered = 0;
  uint32_t taken = 0;
  // Bounded: each doorbell is answered once; a lost wake-up shows as no new
  // doorbell for a long while with jobs still missing.
  auto idle_since = std::chrono::steady_clock::now();
  while (taken < total &&
         std::chrono::steady_clock::now() - idle_since < std::chrono::seconds{10}) {
    if (rings.load() == answered) {
      std::this_thread::yield();
      continue;
    }
    ++answered;
    idle_since = std::chrono::steady_clock::now();
    for (;;) {
      while (auto job = static_cast<numbered*>(q.pop())) {
        done[job->n] = true;
        ++taken;
      }
      // A shard can be preempted here too; giving way makes the producer's
      // push land between the last pop and the release, the window at stake.
      std::this_thread::yield();
      if (!q.release_doorbell()) break;
    }
  }
  given_up = true;
  producer.join();
  CHECK(refused.load() == 0);
  CHECK(taken == total);
  CHECK(q.pop() == nullptr);
}

// The flusher's plain state: batching, coalescing, retries, per-key order.
#include <catch2/catch.hpp>

#include <algorithm>
#include <map>

#include "actors/flush_state.hpp"

using namespace karlton;
using namespace std::chrono_literals;

namespace {

time_point at(int64_t ms) {
  return time_point{std::chrono::milliseconds{ms}};
}

shard_write put(std::string_view key, std::string_view bytes, uint64_t seq) {
  return shard_write{value::make(key, bytes), false, seq};
}

shard_write erase(std::string_view key, uint64_t seq) {
  return shard_write::erase_of(key, seq);
}

using key_seqs = std::vector<std::pair<std::string, uint64_t>>;

// The keys and numbers of `writes`, comparable with a literal.
key_seqs keys_of(const stored_writes& writes) {
  key_seqs out;
  for (const auto& w : writes)
    out.emplace_back(w.key(), w.seq);
  return out;
}

flush_options small(uint32_t batch = 3) {
  flush_options cfg;
  cfg.batch_size = batch;
  cfg.flush_interval = 100ms;
  cfg.retry_base = 10ms;
  cfg.retry_max = 80ms;
  return cfg;
}

} // namespace

TEST_CASE("a batch starts when batch-size keys are dirty", "[flush_state]") {
  flush_state fs{small(3)};
  fs.add(0, put("a", "1", 1), at(0));
  fs.add(0, put("b", "1", 2), at(0));
  CHECK_FALSE(fs.should_flush(at(1)));
  fs.add(0, put("c", "1", 3), at(1));
  CHECK(fs.should_flush(at(1)));
  auto batch = fs.take_batch(at(1));
  REQUIRE(batch.size() == 3);
  CHECK(batch[0].key() == "a"); // oldest first
  CHECK(fs.in_flight());
  CHECK_FALSE(fs.should_flush(at(1000))); // one batch in flight at a time
}

TEST_CASE("a batch starts when the oldest write is flush-interval old", "[flush_state]") {
  flush_state fs{small(1000)};
  fs.add(0, put("a", "1", 1), at(10));
  fs.add(0, put("b", "1", 2), at(50));
  CHECK_FALSE(fs.should_flush(at(109)));
  REQUIRE(fs.next_due() == at(110));
  CHECK(fs.should_flush(at(110)));
  CHECK(fs.take_batch(at(110)).size() == 2); // the young one rides along
  CHECK(fs.stats(at(120)).oldest_dirty_ms == 110);
  auto done = fs.batch_stored();
  CHECK(done.count == 2);
  CHECK(fs.dirty() == 0);
  CHECK(fs.stats(at(120)).oldest_dirty_ms == 0);
}

TEST_CASE("only the latest write of a key goes into a batch", "[flush_state]") {
  flush_state fs{small(10)};
  CHECK(fs.add(0, put("k", "v1", 1), at(0)) == 0);
  CHECK(fs.add(0, put("k", "v2", 2), at(5)) == 1);
  CHECK(fs.add(0, put("k", "v3", 3), at(9)) == 1);
  CHECK(fs.dirty() == 1);
  REQUIRE(fs.newest("k"));
  CHECK(fs.newest("k")->bytes() == "v3");
  auto batch = fs.take_batch(at(100)); // its age counts from the first write
  REQUIRE(batch.size() == 1);
  CHECK(batch[0].bytes() == "v3");
  CHECK(batch[0].seq == 3);
  auto s = fs.stats(at(100));
  CHECK(s.writes == 3);
  CHECK(s.writes_coalesced == 2);
}

TEST_CASE("a coalesced key is still found once its first write's buffer is freed",
          "[flush_state]") {
  flush_state fs{small(10)};
  fs.add(0, put("k", "v1", 1), at(0));
  fs.add(0, put("k", "v2", 2), at(1)); // the first write's buffer is freed here
  // A buffer of the same size most likely takes its memory (and ASan reports
  // any read of it): the pending key must not still view the first buffer.
  auto reuse = value::make("x", "v1");
  REQUIRE(fs.newest("k"));
  CHECK(fs.newest("k")->bytes() == "v2");
  auto batch = fs.take_batch(at(100));
  REQUIRE(batch.size() == 1);
  CHECK(batch[0].key() == "k");
}

TEST_CASE("a write during a batch waits for it and is newest for loads",
          "[flush_state]") {
  flush_state fs{small(10)};
  fs.add(0, put("k", "old", 1), at(0));
  fs.take_batch(at(100));
  CHECK(fs.newest("k")->bytes() == "old");            // in flight still answers loads
  CHECK(fs.add(0, put("k", "new", 2), at(101)) == 0); // not coalesced into the flight
  CHECK(fs.newest("k")->bytes() == "new");
  CHECK(fs.dirty() == 2);
  auto done = fs.batch_stored();
  REQUIRE(done.by_shard.size() == 1);
  CHECK(keys_of(done.by_shard[0].second) == key_seqs{{"k", 1}});
  CHECK(fs.newest("k")->bytes() == "new");
}

TEST_CASE("a failed batch is retried in halves, and a newer write supersedes it",
          "[flush_state]") {
  flush_state fs{small(10)};
  fs.add(0, put("a", "a1", 1), at(0));
  fs.add(0, put("b", "b1", 2), at(0));
  fs.take_batch(at(100));
  fs.add(0, put("b", "b2", 3), at(120)); // newer than the b1 in flight
  CHECK(fs.batch_failed(at(130)) == 1);  // b1 is superseded, a1 is back
  CHECK(fs.dirty() == 2);
  CHECK(fs.newest("a")->bytes() == "a1");
  CHECK(fs.newest("b")->bytes() == "b2");
  // Backing off: 10 ms with jitter in [5, 10] ms.
  CHECK_FALSE(fs.should_flush(at(130)));
  auto due = fs.next_due();
  REQUIRE(due);
  CHECK(*due >= at(135));
  CHECK(*due <= at(140));
  // Alone, in their old order: either may be the write the store refuses.
  auto batch = fs.take_batch(*due);
  REQUIRE(batch.size() == 1);
  CHECK(batch[0].bytes() == "a1");
  fs.batch_stored();
  batch = fs.take_batch(*due);
  REQUIRE(batch.size() == 1);
  CHECK(batch[0].bytes() == "b2");
  fs.batch_stored();
  auto s = fs.stats(*due);
  CHECK(s.flush_failures == 1);
  CHECK(s.retries == 1);
  CHECK(fs.dirty() == 0);
}

TEST_CASE("after a failure that passes, only the writes it met go in smaller batches",
          "[flush_state]") {
  // An outage: the batch it met is halved, not sent a write at a time, and
  // writes that came after it go in full batches.
  flush_state fs{small(8)};
  for (int i = 0; i < 8; ++i)
    fs.add(0, put("k" + std::to_string(i), "v", uint64_t(i + 1)), at(0));
  REQUIRE(fs.take_batch(at(0)).size() == 8);
  fs.batch_failed(at(0));
  for (int i = 0; i < 8; ++i)
    fs.add(0, put("n" + std::to_string(i), "v", uint64_t(i + 9)), at(1));
  auto batch = fs.take_batch(at(100));
  REQUIRE(batch.size() == 4);
  CHECK(batch[0].key() == "k0");
  fs.batch_stored();
  batch = fs.take_batch(at(100));
  REQUIRE(batch.size() == 4);
  CHECK(batch[0].key() == "k4");
  fs.batch_stored();
  batch = fs.take_batch(at(100));
  CHECK(batch.size() == 8); // the new writes: no cap
  CHECK(batch[0].key() == "n0");
}

TEST_CASE("a write the store always refuses holds up no other write", "[flush_state]") {
  // A key over PostgreSQL's index limit, a CHECK constraint: every batch with
  // it fails. It went back to the front with its batch, the same batch was
  // tried for ever, and no write behind it was ever stored.
  flush_state fs{small(4)};
  int n = 0;
  for (auto key : {"bad", "b", "c", "d", "e", "f", "g"})
    fs.add(0, put(key, "v", uint64_t(++n)), at(0));
  std::vector<std::string> stored;
  int64_t now = 0;
  for (int round = 0; round < 20 && fs.dirty() > 1; ++round) {
    auto due = fs.next_due();
    REQUIRE(due);
    now = std::max<int64_t>(now, due->time_since_epoch() / 1ms);
    auto batch = fs.take_batch(at(now));
    REQUIRE_FALSE(batch.empty());
    bool refused = std::any_of(batch.begin(), batch.end(),
                               [](const shard_write& w) { return w.key() == "bad"; });
    if (refused) {
      fs.batch_failed(at(now));
      continue;
    }
    for (auto& w : batch)
      stored.emplace_back(w.key());
    fs.batch_stored();
  }
  std::sort(stored.begin(), stored.end());
  CHECK(stored == std::vector<std::string>{"b", "c", "d", "e", "f", "g"});
  REQUIRE(fs.dirty() == 1);
  CHECK(fs.newest("bad")); // still dirty, never dropped
  // It went to the back: the oldest age is still its own.
  CHECK(fs.stats(at(now)).oldest_dirty_ms == static_cast<uint64_t>(now));
}

TEST_CASE("a failed batch that a flush waits for is retried at the backoff's pace",
          "[flush_state]") {
  auto cfg = small(10);
  cfg.flush_interval = 1h; // a drain or force_flush, not the interval, makes it go
  flush_state fs{cfg};
  fs.add(0, put("a", "1", 1), at(0));
  auto ticket = fs.request_flush();
  REQUIRE(fs.should_flush(at(0)));
  fs.take_batch(at(0));
  fs.batch_failed(at(0));
  CHECK(fs.stats(at(0)).retries == 0); // not tried again yet
  auto due = fs.next_due();
  REQUIRE(due);
  CHECK(*due >= at(5)); // the backoff: 10 ms with jitter in [5, 10] ms
  CHECK(*due <= at(10));
  CHECK_FALSE(fs.should_flush(*due - 1ms));
  CHECK(fs.should_flush(*due));
  fs.take_batch(*due);
  CHECK(fs.stats(*due).retries == 1);
  fs.batch_stored();
  CHECK(fs.stored_through(ticket));
  // Without a request the interval holds after a failure, as before one.
  fs.add(0, put("b", "1", 2), at(20));
  fs.take_batch(at(20));
  fs.batch_failed(at(20));
  CHECK(fs.next_due() == at(20) + 1h);
}

TEST_CASE("backoff doubles per failure up to retry-max", "[flush_state]") {
  flush_state fs{small(10)};
  fs.add(0, put("a", "1", 1), at(0));
  int64_t now = 100;
  std::vector<int64_t> waits;
  for (int i = 0; i < 6; ++i) {
    fs.take_batch(at(now));
    fs.batch_failed(at(now));
    auto due = fs.next_due();
    REQUIRE(due);
    auto wait =
      std::chrono::duration_cast<std::chrono::milliseconds>(*due - at(now)).count();
    waits.push_back(wait);
    now += wait;
  }
  // Bases 10, 20, 40, 80, 80, 80 ms; each wait is in [base/2, base].
  std::vector<int64_t> bases{10, 20, 40, 80, 80, 80};
  for (size_t i = 0; i < waits.size(); ++i) {
    CHECK(waits[i] >= bases[i] / 2);
    CHECK(waits[i] <= bases[i]);
  }
  fs.take_batch(at(now));
  fs.batch_stored();
  fs.add(0, put("b", "1", 2), at(now));
  fs.take_batch(at(now + 100));
  fs.batch_failed(at(now + 100));
  CHECK(*fs.next_due() <= at(now + 110)); // a success resets the backoff
}

TEST_CASE("a flush ticket is stored once every older write is", "[flush_state]") {
  flush_state fs{small(2)};
  fs.add(0, put("a", "1", 1), at(0));
  fs.add(0, put("b", "1", 2), at(0));
  fs.add(0, put("c", "1", 3), at(0));
  auto ticket = fs.request_flush();
  fs.add(0, put("d", "1", 4), at(0)); // after the ticket
  CHECK(fs.should_flush(at(0)));      // no interval wait once asked
  fs.take_batch(at(0));               // a, b
  fs.batch_stored();
  CHECK_FALSE(fs.stored_through(ticket));
  CHECK(fs.should_flush(at(0)));
  fs.take_batch(at(0)); // c, d
  fs.batch_stored();
  CHECK(fs.stored_through(ticket));
}

TEST_CASE("a coalesced write keeps an earlier flush ticket waiting", "[flush_state]") {
  flush_state fs{small(10)};
  fs.add(0, put("k", "v1", 1), at(0));
  auto ticket = fs.request_flush();
  fs.add(0, put("k", "v2", 2), at(1)); // replaces v1 before it was stored
  CHECK_FALSE(fs.stored_through(ticket));
  fs.take_batch(at(1));
  fs.batch_stored();
  CHECK(fs.stored_through(ticket));
}

TEST_CASE("stored writes are reported per shard with their numbers", "[flush_state]") {
  flush_state fs{small(10)};
  fs.add(0, put("a", "1", 7), at(0));
  fs.add(2, put("b", "1", 9), at(0));
  fs.add(0, erase("c", 8), at(0));
  fs.take_batch(at(100));
  auto done = fs.batch_stored();
  CHECK(done.count == 3);
  std::map<uint32_t, stored_writes> by;
  for (auto& [shard, ws] : done.by_shard)
    by[shard] = ws;
  CHECK(keys_of(by[0]) == key_seqs{{"a", 7}, {"c", 8}});
  CHECK(keys_of(by[2]) == key_seqs{{"b", 9}});
}

TEST_CASE("with a journal a write is stored only once the journal has it",
          "[flush_state][journal]") {
  auto cfg = small(3);
  cfg.journal = true;
  flush_state fs{cfg};
  fs.add(0, put("a", "1", 1), at(0));
  fs.add(0, put("b", "1", 2), at(0));
  fs.add(0, put("c", "1", 3), at(0));
  CHECK_FALSE(fs.should_flush(at(1000))); // a full batch, long due: not journaled
  CHECK_FALSE(fs.next_due());
  fs.journaled(2);
  REQUIRE(fs.should_flush(at(1)));
  auto batch = fs.take_batch(at(1)); // without c, not journaled
  REQUIRE(batch.size() == 2);
  fs.batch_stored();
  // A newer write of the oldest key waits until it is journaled too.
  fs.add(0, put("c", "2", 4), at(2));
  fs.journaled(3);
  CHECK_FALSE(fs.should_flush(at(1000)));
  fs.journaled(fs.last_accepted());
  CHECK(fs.should_flush(at(1000)));
  CHECK(fs.take_batch(at(1000))[0].bytes() == "2");
}

TEST_CASE("with a journal a key written faster than the journal syncs holds up no "
          "other key",
          "[flush_state][journal]") {
  auto cfg = small(10);
  cfg.journal = true;
  flush_state fs{cfg};
  fs.add(0, put("hot", "0", 1), at(0));
  uint64_t value = 0;
  for (int round = 0; round < 5; ++round) {
    auto key = "k" + std::to_string(round);
    fs.add(0, put(key, "v", 2), at(0));
    // The journal's append took everything so far; the hot key was written
    // again while it ran, as it is during every append.
    fs.journaled(fs.last_accepted());
    fs.add(0, put("hot", std::to_string(++value), 3), at(0));
    // The hot key, first in line, waited and the whole line with it.
    REQUIRE(fs.should_flush(at(1000)));
    auto batch = fs.take_batch(at(1000));
    REQUIRE(batch.size() == 1);
    CHECK(batch[0].key() == key);
    fs.batch_stored();
  }
  // It goes with the first append it is not written during.
  fs.journaled(fs.last_accepted());
  auto batch = fs.take_batch(at(1000));
  REQUIRE(batch.size() == 1);
  CHECK(batch[0].bytes() == "5");
  fs.batch_stored();
  // The interval counts from the age of the keys that may go, not the waiting
  // key's: a key dirty since 0 and written during the append, one since 900.
  fs.add(0, put("hot", "6", 4), at(0));
  fs.add(0, put("late", "v", 5), at(900));
  fs.journaled(fs.last_accepted());
  fs.add(0, put("hot", "7", 6), at(905)); // during the append: it waits
  CHECK_FALSE(fs.should_flush(at(950)));  // was due at once: the hot key's age
  REQUIRE(fs.next_due());
  CHECK(*fs.next_due() == at(1000));
  CHECK(fs.should_flush(at(1000)));
}

TEST_CASE("the unstored writes are the newest of each key, in flight or pending",
          "[flush_state][journal]") {
  flush_state fs{small(2)};
  fs.add(0, put("a", "1", 1), at(0));
  fs.add(0, put("b", "1", 2), at(0));
  fs.take_batch(at(1));               // a=1 and b=1 in flight
  fs.add(0, put("a", "2", 3), at(2)); // a newer a waits
  fs.add(0, put("c", "1", 4), at(2));
  std::map<std::string, std::string> got;
  std::map<std::string, uint64_t> numbers; // what the journal's records carry
  auto unstored = fs.unstored();
  REQUIRE(unstored.numbers.size() == unstored.items.size());
  for (size_t i = 0; i < unstored.items.size(); ++i) {
    const auto& w = unstored.items[i];
    CHECK(got.emplace(w.key(), w.bytes()).second); // one per key
    numbers.emplace(w.key(), unstored.numbers[i]);
  }
  CHECK(got == std::map<std::string, std::string>{{"a", "2"}, {"b", "1"}, {"c", "1"}});
  CHECK(numbers == std::map<std::string, uint64_t>{{"a", 3}, {"b", 2}, {"c", 4}});
  // The numbers of what the store took, for the journal's stored mark.
  CHECK(fs.batch_stored().numbers == std::vector<uint64_t>{1, 2});
  CHECK(fs.unstored().items.size() == 2);
}

TEST_CASE("the journal is rewritten at its bound or at twice the last rewrite",
          "[flush_state][journal]") {
  CHECK_FALSE(journal_rewrite(999, 0, 1000));
  CHECK(journal_rewrite(1000, 0, 1000));
  // 800 bytes were unstored at the last rewrite: not again before 1600.
  CHECK_FALSE(journal_rewrite(1599, 800, 1000));
  CHECK(journal_rewrite(1600, 800, 1000));
  CHECK(journal_bytes({put("key", "value", 1), erase("gone", 2)}) == 24 + 3 + 5 + 24 + 4);
  CHECK(journal_mark_bytes(0) == 0);
  CHECK(journal_mark_bytes(3) == 24 + 3 * 8);
}

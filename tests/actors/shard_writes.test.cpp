// shard_state under write-through and write-back, without actors.
#include <catch2/catch.hpp>

#include <optional>

#include "actors/shard_state.hpp"
#include "support/times.hpp"
#include <karlton/messages/errors.hpp>

using namespace karlton;
using namespace std::chrono_literals;

namespace {

time_point at(int64_t ms) {
  return time_point{std::chrono::milliseconds{ms}};
}

value val(std::string_view k, std::string_view v) {
  return value::make(k, v);
}

/// Records what a write's waiter was told. Declare it before the shard_state:
/// a stopping shard tells the writes it still waits for.
struct answer {
  std::optional<caf::expected<bool>> got;
  shard_state::write_waiter waiter() {
    return [this](caf::expected<bool> r) { got.emplace(std::move(r)); };
  }
  bool ok() const { return got && *got; }
  bool failed_with(errc code) const {
    return got && !*got && got->error().code() == static_cast<uint8_t>(code) &&
           got->error().category() == caf::atom("karlton");
  }
};

std::vector<uint64_t> seqs_of(const std::vector<shard_write>& items) {
  std::vector<uint64_t> out;
  for (auto& i : items)
    out.push_back(i.seq);
  return out;
}

shard_options through() {
  shard_options cfg;
  cfg.writes = write_mode::write_through;
  return cfg;
}

shard_options back(uint64_t max_entries = 0, uint64_t max_dirty = 1000) {
  shard_options cfg;
  cfg.writes = write_mode::write_back;
  cfg.max_entries = max_entries;
  cfg.budget = std::make_shared<dirty_budget>(max_dirty);
  cfg.room_wait = 300ms;
  return cfg;
}

} // namespace

TEST_CASE("write-through caches a put only after the store took it", "[shard_writes]") {
  answer a;
  shard_state s{through()};
  CHECK_FALSE(s.write(val("k", "v1"), ttl::never(), at(0), a.waiter()));
  CHECK_FALSE(s.get("k", at(0))); // not yet: the store has not answered
  auto items = s.take_writes();
  REQUIRE(items.size() == 1);
  CHECK(items[0].key() == "k");
  CHECK(items[0].bytes() == "v1");
  CHECK_FALSE(items[0].erase);
  s.writes_done(seqs_of(items), caf::none, at(1));
  CHECK(a.ok());
  CHECK(s.get("k", at(1)).bytes() == "v1");
}

TEST_CASE("write-through leaves the cache unchanged when the store fails",
          "[shard_writes]") {
  answer a;
  shard_state s{through()};
  REQUIRE_FALSE(s.put(val("k", "old"), ttl::never(), at(0)));
  s.write(val("k", "new"), ttl::never(), at(0), a.waiter());
  auto items = s.take_writes();
  s.writes_done(seqs_of(items), make_error(errc::store_failure, "disk full"), at(1));
  CHECK(a.failed_with(errc::store_failure));
  CHECK(s.get("k", at(1)).bytes() == "old");
}

TEST_CASE("write-through: an invalidation from elsewhere while the store has the put "
          "keeps the value out of the cache",
          "[shard_writes]") {
  // The put committed, then another writer changed the row (the database's
  // change feed, or another node): its invalidation may arrive before the
  // store's answer, and the value the put would install is then the older one.
  answer a, b;
  shard_state s{through()};
  s.write(val("k", "mine"), ttl::never(), at(0), a.waiter());
  s.write(val("other", "kept"), ttl::never(), at(0), b.waiter());
  auto items = s.take_writes();
  s.invalidate({"k"}, at(1), true);
  s.writes_done(seqs_of(items), caf::none, at(2));
  CHECK(a.ok());                                  // stored: the caller hears success
  CHECK_FALSE(s.contains("k", at(2)));            // was "mine", older than the change
  CHECK(s.get("other", at(2)).bytes() == "kept"); // only the invalidated key

  // A repair (clear, or TTLs capped) stands for keys it cannot name: all go.
  answer c;
  s.write(val("k", "again"), ttl::never(), at(3), c.waiter());
  items = s.take_writes();
  s.clear_here();
  s.writes_done(seqs_of(items), caf::none, at(4));
  CHECK(c.ok());
  CHECK_FALSE(s.contains("k", at(4)));
}

TEST_CASE("write-through: a put stored after an invalidation or a repair leaves no copy "
          "and tells the other nodes",
          "[shard_writes]") {
  // Node A's put is with the store; node B's write of the key commits first,
  // and its invalidation reaches A. A's put then commits last: the store holds
  // A's value while B caches its own. B must hear of A's put.
  auto cfg = through();
  cfg.distributed = true;
  answer a;
  shard_state s{cfg};
  s.write(val("k", "mine"), ttl::never(), at(0), a.waiter());
  auto items = s.take_writes();
  s.invalidate({"k"}, at(1), true);
  s.take_changes(); // what the invalidation itself says, if anything
  s.writes_done(seqs_of(items), caf::none, at(2));
  REQUIRE(a.ok());
  auto changes = s.take_changes();
  REQUIRE(changes.size() == 1);
  CHECK(changes[0].key == "k");
  CHECK_FALSE(changes[0].erased);

  // A repair caps TTLs but keeps entries: the acknowledged put must not read
  // back the value it replaced (a compute would count from it).
  answer b, c;
  REQUIRE_FALSE(s.put(val("n", "1"), ttl::never(), at(3)));
  s.write(val("n", "2"), ttl::never(), at(3), b.waiter());
  items = s.take_writes();
  s.cap_ttl(at(4), 10s);
  s.writes_done(seqs_of(items), caf::none, at(5));
  REQUIRE(b.ok());
  CHECK_FALSE(s.contains("n", at(5))); // not "1": the next read goes to the store
}

TEST_CASE(
  "write-through: under a capping lapse a put counts from when it went to the store",
  "[shard_writes][lease]") {
  auto lease = std::make_shared<read_lease>(10s);
  auto cfg = through();
  cfg.lease.changes = lease;
  answer a;
  shard_state s{cfg};
  lease->extend_to(at(1000));
  SECTION("capped from then") {
    CHECK_FALSE(s.get("x", at(2000))); // acts on the lapse
    s.write(val("k", "v"), ttl::never(), at(3000), a.waiter());
    s.writes_done(seqs_of(s.take_writes()), caf::none, at(12'000));
    REQUIRE(a.ok());
    CHECK(s.get("k", at(12'000)));
    CHECK_FALSE(s.contains("k", at(13'000))); // before: until 22 s
  }
  SECTION("slower than the cap it is not installed") {
    CHECK_FALSE(s.get("x", at(2000)));
    s.write(val("k", "v"), ttl::never(), at(3000), a.waiter());
    auto items = s.take_writes();
    REQUIRE_FALSE(s.put(val("k", "other"), ttl::never(), at(4000))); // capped at 14 s
    s.writes_done(seqs_of(items), caf::none, at(13'000));
    REQUIRE(a.ok());
    // Nor may the copy it replaced at the store stay: as a voided put.
    CHECK_FALSE(s.contains("k", at(13'000)));
    CHECK(s.size() == 0); // before: installed expired
  }
  SECTION("done in the cap's last millisecond it is not installed expired") {
    // The cap ends on a whole ms, as expiries do. Before, the check counted in
    // ns, and let in a put sent mid-millisecond, expired as it went in.
    CHECK_FALSE(s.get("x", at(2000)));
    s.write(val("k", "v"), ttl::never(), at(3000) + 400us, a.waiter()); // cap: 13,000 ms
    s.writes_done(seqs_of(s.take_writes()), caf::none, at(13'000) + 200us);
    REQUIRE(a.ok());
    CHECK(s.size() == 0);
  }
  SECTION("sent before the shard acted on the lapse it is not installed") {
    // As a load then: a missed change may have come after it in the store.
    // Acting on the lapse as it went in would cap it from then, past the cap.
    s.write(val("k", "v"), ttl::never(), at(500), a.waiter());
    s.writes_done(seqs_of(s.take_writes()), caf::none, at(20'000));
    REQUIRE(a.ok());
    CHECK_FALSE(s.contains("k", at(21'000)));
  }
}

TEST_CASE("write-through: a load that read the store before an invalidated put committed "
          "is not kept",
          "[shard_writes]") {
  // The put is voided by an invalidation; a miss then loads, reads the row an
  // other writer left, and completes before the put commits over it.
  auto cfg = through();
  cfg.read_through = true;
  answer a;
  shard_state s{cfg};
  s.write(val("k", "P"), ttl::never(), at(0), a.waiter());
  auto items = s.take_writes();
  s.invalidate({"k"}, at(1), true);
  std::vector<std::string> got;
  auto now = s.get_or_load("k", karlton::test::table_hash("k"), at(2),
                           [&](caf::expected<value> r) {
                             got.push_back(r && *r ? std::string{r->bytes()} : "?");
                           });
  REQUIRE_FALSE(now);
  auto loads = s.take_loads_to_start();
  REQUIRE(loads.size() == 1);
  s.complete_load("k", loads[0].second, std::string{"W"}, 1ms, at(3));
  CHECK(got == std::vector<std::string>{"W"}); // its reader started before the commit
  s.writes_done(seqs_of(items), caf::none, at(4));
  REQUIRE(a.ok());
  CHECK_FALSE(s.contains("k", at(4))); // the store holds P now, not W
}

TEST_CASE("write-through erase removes from the store first, then the cache",
          "[shard_writes]") {
  answer a;
  shard_state s{through()};
  REQUIRE_FALSE(s.put(val("k", "v"), ttl::never(), at(0)));
  CHECK_FALSE(s.write_erase("k", at(0), a.waiter()));
  CHECK(s.contains("k", at(0))); // still cached while the store deletes
  auto items = s.take_writes();
  REQUIRE(items.size() == 1);
  CHECK(items[0].erase);
  s.writes_done(seqs_of(items), caf::none, at(1));
  REQUIRE(a.ok());
  CHECK(**a.got); // it was cached
  CHECK_FALSE(s.contains("k", at(1)));
}

TEST_CASE("without a write mode, write answers at once", "[shard_writes]") {
  answer a;
  shard_state s{shard_options{}};
  auto now = s.write(val("k", "v"), ttl::never(), at(0), a.waiter());
  REQUIRE(now);
  CHECK(*now);
  CHECK(s.take_writes().empty());
  CHECK(s.get("k", at(0)).bytes() == "v");
}

TEST_CASE("write-back caches at once and acknowledges when the flusher took it",
          "[shard_writes]") {
  answer a;
  shard_state s{back()};
  CHECK_FALSE(s.write(val("k", "v"), ttl::never(), at(0), a.waiter()));
  CHECK(s.get("k", at(0)).bytes() == "v"); // read your writes
  CHECK(s.dirty_entries() == 1);
  CHECK_FALSE(a.got);
  auto items = s.take_writes();
  s.writes_done(seqs_of(items), caf::none, at(0));
  CHECK(a.ok());
  // As the flusher hands it back: found by its key (and the hash it made).
  s.mark_stored({shard_write{value::make("k", "v"), false, items[0].seq}});
  CHECK(s.dirty_entries() == 0);
}

TEST_CASE("a write-back put's write shares the table's buffer, not a copy",
          "[shard_writes]") {
  answer a;
  shard_state s{back()};
  s.write(val("k", "v"), ttl::never(), at(0), a.waiter());
  auto items = s.take_writes();
  REQUIRE(items.size() == 1);
  auto cached = s.get("k", at(0));
  CHECK(items[0].bytes().data() == cached.bytes().data()); // one buffer, shared
  CHECK(items[0].bytes() == "v");
  s.writes_done(seqs_of(items), caf::none, at(0));
}

TEST_CASE("a dirty entry is never evicted before the store has it", "[shard_writes]") {
  answer a;
  shard_state s{back(/*max_entries*/ 4)};
  std::vector<shard_write> items;
  for (int i = 0; i < 20; ++i) {
    s.write(val("k" + std::to_string(i), "v" + std::to_string(i)), ttl::never(), at(i),
            a.waiter());
    for (auto& w : s.take_writes())
      items.push_back(w);
  }
  // Over its bound by its dirty entries, but every write is readable.
  CHECK(s.size() == 20);
  CHECK(s.stats().evictions == 0);
  for (int i = 0; i < 20; ++i)
    CHECK(s.get("k" + std::to_string(i), at(30)).bytes() == "v" + std::to_string(i));
  // Once stored, they are ordinary entries again and the bound applies.
  stored_writes stored;
  for (auto& w : items)
    stored.push_back(w);
  s.mark_stored(stored);
  CHECK(s.size() == 4);
  CHECK(s.stats().evictions == 16);
}

TEST_CASE("an entry written again after its flush began stays dirty", "[shard_writes]") {
  answer a;
  shard_state s{back(/*max_entries*/ 1)};
  s.write(val("k", "v1"), ttl::never(), at(0), a.waiter());
  auto first = s.take_writes();
  s.write(val("k", "v2"), ttl::never(), at(1), a.waiter());
  auto second = s.take_writes();
  s.mark_stored({first[0]}); // the store has v1, not v2
  CHECK(s.dirty_entries() == 1);
  s.write(val("other", "x"), ttl::never(), at(2), a.waiter()); // pressure
  CHECK(s.get("k", at(3)).bytes() == "v2");
  s.mark_stored({second[0]});
  CHECK(s.dirty_entries() == 1); // only "other" is still dirty
}

TEST_CASE("write-back erase sends a delete and answers whether it was cached",
          "[shard_writes]") {
  answer put, del;
  shard_state s{back()};
  s.write(val("k", "v"), ttl::never(), at(0), put.waiter());
  s.write_erase("k", at(1), del.waiter());
  CHECK_FALSE(s.contains("k", at(1)));
  auto items = s.take_writes();
  REQUIRE(items.size() == 2);
  CHECK(items[1].erase);
  CHECK(items[0].seq < items[1].seq);
  s.writes_done(seqs_of(items), caf::none, at(1));
  REQUIRE(del.ok());
  CHECK(**del.got);
}

TEST_CASE("write-back waits for room under max-dirty, in order", "[shard_writes]") {
  auto cfg = back(0, /*max_dirty*/ 2);
  auto budget = cfg.budget;
  answer a, b, c1, d, c2;
  shard_state s{cfg};
  s.write(val("a", "1"), ttl::never(), at(0), a.waiter());
  s.write(val("b", "1"), ttl::never(), at(0), b.waiter());
  s.write(val("c", "1"), ttl::never(), at(0), c1.waiter()); // no room: parked
  s.write(val("d", "1"), ttl::never(), at(0), d.waiter());  // behind it
  s.write(val("c", "2"), ttl::never(), at(0), c2.waiter()); // behind both
  CHECK_FALSE(s.contains("c", at(0)));                      // not applied
  auto items = s.take_writes();
  CHECK(items.size() == 2);
  CHECK(budget->used() == 2);
  // The flusher stores one: the first parked write goes on, alone.
  CHECK(budget->release(1)); // a shard was waiting
  s.retry_parked(at(10));
  CHECK(s.get("c", at(10)).bytes() == "1");
  CHECK_FALSE(s.contains("d", at(10)));
  items = s.take_writes();
  REQUIRE(items.size() == 1);
  CHECK(items[0].key() == "c");
  // Room for the rest: they go in the order they came, the last c last.
  budget->release(2);
  s.retry_parked(at(20));
  items = s.take_writes();
  REQUIRE(items.size() == 2);
  CHECK(items[0].key() == "d");
  CHECK(items[1].key() == "c");
  CHECK(items[0].seq < items[1].seq);
  CHECK(s.get("c", at(20)).bytes() == "2");
}

TEST_CASE("a write parked past room-wait fails with overloaded, unapplied",
          "[shard_writes]") {
  answer a, b;
  shard_state s{back(0, /*max_dirty*/ 1)};
  s.write(val("a", "1"), ttl::never(), at(0), a.waiter());
  s.write(val("b", "1"), ttl::never(), at(0), b.waiter());
  REQUIRE(s.next_parked_deadline() == at(300));
  s.retry_parked(at(299));
  CHECK_FALSE(b.got);
  s.retry_parked(at(300));
  CHECK(b.failed_with(errc::overloaded));
  CHECK_FALSE(s.contains("b", at(300)));
  CHECK_FALSE(s.next_parked_deadline());
}

TEST_CASE("a stopped shard fails the writes it still waits for", "[shard_writes]") {
  answer a, b;
  {
    shard_state s{back(0, 1)};
    s.write(val("a", "1"), ttl::never(), at(0), a.waiter());
    s.write(val("b", "1"), ttl::never(), at(0), b.waiter());
  }
  CHECK(a.failed_with(errc::shut_down));
  CHECK(b.failed_with(errc::shut_down));
}

TEST_CASE("a write-back shard is not settled for shutdown while a write waits for room",
          "[shard_writes]") {
  // Settled early, the shard could still take the parked write once room came
  // (it stays up until every shard settled) and hand it to the flusher, which
  // stores it at shutdown, while the shard's stop told its caller shut_down.
  answer a, b;
  shard_state s{back(0, 1)};
  s.write(val("a", "1"), ttl::never(), at(0), a.waiter());
  s.write(val("b", "1"), ttl::never(), at(0), b.waiter());
  auto items = s.take_writes();
  REQUIRE(items.size() == 1);
  s.writes_done(seqs_of(items), caf::none, at(0)); // the flusher took a
  CHECK(a.got);
  CHECK(s.writes_pending()); // b is parked: it may still go in
  s.retry_parked(at(300));   // its room wait ran out
  CHECK(b.failed_with(errc::overloaded));
  CHECK_FALSE(s.writes_pending());
}

TEST_CASE("a parked compute that writes nothing hands its unit on to another shard",
          "[shard_writes][compute]") {
  // Shards a and b share one unit of max-dirty. While a's parked compute runs
  // on it, b's write finds no room and parks; the compute writes nothing and
  // gives the unit back. Before, nobody woke b: its write waited for its room
  // timer and failed with `overloaded` though the budget was empty.
  auto cfg = back(0, /*max_dirty*/ 1);
  answer other, j, x;
  std::optional<caf::expected<computed>> ran;
  shard_state a{cfg}, b{cfg};
  CHECK_FALSE(a.write(val("other", "1"), ttl::never(), at(0), other.waiter()));
  CHECK_FALSE(a.write(val("j", "1"), ttl::never(), at(0), j.waiter())); // parked
  auto fn = [&](const value&) {
    CHECK_FALSE(b.write(val("x", "1"), ttl::never(), at(2), x.waiter())); // parks
    return compute_result::keep();
  };
  auto done = [&](caf::expected<computed> r) { ran.emplace(std::move(r)); };
  CHECK_FALSE(a.compute("k", at(0), fn, done)); // parked behind j
  cfg.budget->release(1);                       // "other" stored
  a.retry_parked(at(1));                        // j takes the unit
  CHECK_FALSE(ran);
  cfg.budget->release(1); // j stored: the compute's turn
  a.retry_parked(at(2));
  REQUIRE(ran);
  CHECK(a.take_room_returned()); // the shard actor asks the flusher to wake b
  CHECK_FALSE(a.take_room_returned());
  b.retry_parked(at(2));
  auto items = b.take_writes();
  REQUIRE(items.size() == 1);
  CHECK(items[0].key() == "x");
}

TEST_CASE("without its flusher a write-back shard fails writes and loads, those in "
          "flight too",
          "[shard_writes]") {
  auto cfg = back(0, /*max_dirty*/ 2);
  cfg.read_through = true; // the flusher is the loader too
  answer first, unconfirmed, parked, later, erased;
  std::optional<caf::expected<value>> loaded;
  shard_state s{cfg};
  CHECK_FALSE(s.write(val("a", "1"), ttl::never(), at(0), first.waiter()));
  s.writes_done(seqs_of(s.take_writes()), caf::none, at(0));
  REQUIRE(first.ok());
  // Handed over, not confirmed (a journal's ack); then one parked for room.
  CHECK_FALSE(s.write(val("u", "1"), ttl::never(), at(0), unconfirmed.waiter()));
  REQUIRE(s.take_writes().size() == 1);
  CHECK_FALSE(s.write(val("b", "1"), ttl::never(), at(0), parked.waiter()));
  CHECK_FALSE(s.get_or_load("x", static_cast<uint32_t>(hash_key("x")), at(0),
                            [&](caf::expected<value> r) { loaded.emplace(std::move(r)); }));
  REQUIRE(s.take_loads_to_start().size() == 1); // with the flusher
  s.writer_lost(make_error(errc::store_failure, "the flusher stopped"), at(1));
  // Before, the load waited for its load-timeout and the unconfirmed write
  // for an answer that a dead flusher never gives.
  CHECK(unconfirmed.failed_with(errc::store_failure));
  REQUIRE(loaded);
  CHECK(loaded->error() == errc::store_failure);
  CHECK(parked.failed_with(errc::store_failure));
  auto r = s.write(val("c", "1"), ttl::never(), at(1), later.waiter());
  REQUIRE(r);
  CHECK(r->error() == errc::store_failure);
  CHECK_FALSE(s.get("c", at(1)));
  r = s.write_erase("a", at(1), erased.waiter());
  REQUIRE(r);
  CHECK_FALSE(*r);
  CHECK(s.get("a", at(1)).bytes() == "1"); // what it acknowledged stays readable
  CHECK_FALSE(s.writes_pending());
}

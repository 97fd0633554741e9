// The write-back flusher on CAF's deterministic test coordinator, with a
// journal whose answers the test gives: what a drain (shutdown) waits for,
// and what its shards see of it.
#include "support/caf_catch_bridge.hpp"

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "actors/flusher_actor.hpp"
#include "actors/shard_actor.hpp"
#include "support/coordinator_clock.hpp"
#include <karlton/messages/errors.hpp>
#include <karlton/messages/type_ids.hpp>

using namespace karlton;
using namespace std::chrono_literals;
using karlton::testing::coordinator_clock;
using karlton::testing::test_config;

namespace {

/// `(release, ok)` to the fake journal: answer what it holds.
using release_atom = caf::atom_constant<caf::atom("release")>;

/// What the fake journal was asked, and how it answers.
struct journal_script {
  std::vector<std::vector<uint64_t>> marks; // each stored mark, alone or carried
  int truncations = 0;
  bool fail_writes = false;   // appends and rewrites fail, as a full disk's
  bool fail_marks = false;    // stored marks alone fail
  bool hold_rewrites = false; // rewrites wait for a release, as truncations do
  std::vector<caf::response_promise> held; // not yet answered
};

caf::behavior fake_journal(caf::event_based_actor* self,
                           std::shared_ptr<journal_script> script) {
  auto disk = [] { return make_error(errc::store_failure, "the disk failed"); };
  return {
    [=](write_atom, std::vector<shard_write>&, std::vector<uint64_t>&,
        std::vector<uint64_t>& marks) -> caf::result<caf::ok_atom> {
      if (script->fail_writes) return disk();
      if (!marks.empty()) script->marks.push_back(marks);
      return caf::ok_atom::value;
    },
    [=](rewrite_atom, std::vector<shard_write>&,
        std::vector<uint64_t>&) -> caf::result<caf::ok_atom> {
      if (script->fail_writes) return disk();
      if (script->hold_rewrites) {
        script->held.push_back(self->make_response_promise());
        return caf::delegated<caf::ok_atom>{};
      }
      return caf::ok_atom::value;
    },
    [=](stored_atom, std::vector<uint64_t>& marks) -> caf::result<caf::ok_atom> {
      if (script->fail_marks) return disk();
      script->marks.push_back(marks);
      return caf::ok_atom::value;
    },
    [=](truncate_atom) {
      ++script->truncations;
      script->held.push_back(self->make_response_promise());
    },
    [=](release_atom, bool ok) {
      for (auto& rp : std::exchange(script->held, {}))
        ok ? rp.deliver(caf::ok_atom::value) : rp.deliver(disk());
    },
  };
}

// Spawned with an argument, as every function here: CAF 0.17 runs one spawned
// with none through a null tuple (UBSan; runtime/cache.cpp).
store_writer_actor::behavior_type fake_store(int) {
  return {[](write_atom, std::vector<shard_write>&) { return caf::ok_atom::value; }};
}

struct fixture : test_coordinator_fixture<test_config> {
  std::shared_ptr<journal_script> script = std::make_shared<journal_script>();
  std::shared_ptr<dirty_budget> budget = std::make_shared<dirty_budget>(100);
  caf::actor journal;
  store_writer_actor store;
  flusher_actor f;

  fixture() {
    journal = sys.spawn(fake_journal, script);
    store = sys.spawn(fake_store, 0);
    flusher_setup setup;
    setup.config.journal = true;
    setup.time_source = std::make_shared<coordinator_clock>(sched);
    setup.writer = store;
    setup.journal = caf::actor_cast<journal_actor>(journal);
    setup.budget = budget;
    f = sys.spawn(flusher, std::move(setup));
    sched.run();
  }

  ~fixture() override {
    for (auto a :
         {caf::actor_cast<caf::actor>(f), journal, caf::actor_cast<caf::actor>(store)})
      caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
    sched.run();
  }

  // A write of `key` as a shard hands it over, journaled and then stored
  // once the flush interval passed.
  void write_and_store(const std::string& key) {
    REQUIRE(budget->try_acquire());
    self->send(f, write_atom::value, uint32_t{0},
               std::vector<shard_write>{{value::make(key, "v"), false, ++seq}});
    sched.run();
    advance_time(101ms);
    sched.run();
  }

  // Shutdown's drain, from an actor that records its answer.
  std::shared_ptr<std::optional<uint64_t>> drain(caf::timespan timeout) {
    auto unstored = std::make_shared<std::optional<uint64_t>>();
    sys.spawn(
      [](caf::event_based_actor* a, const flusher_actor& to, caf::timespan t,
         const std::shared_ptr<std::optional<uint64_t>>& out) {
        a->request(to, caf::infinite, drain_atom::value, t).then([out](uint64_t n) {
          *out = n;
        });
      },
      f, timeout, unstored);
    sched.run();
    return unstored;
  }

  uint64_t seq = 0;
};

} // namespace

TEST_CASE_METHOD(fixture,
                 "a drain waits for the journal to mark or drop what the store has",
                 "[flusher][journal][shutdown]") {
  write_and_store("k");
  REQUIRE(script->truncations == 1); // the store has all: the journal is emptied
  auto unstored = drain(5s);
  // Before, the drain answered 0 here and shutdown stopped the flusher: a
  // truncation that then failed was followed by no mark, and the next start
  // replayed k over whatever another writer stored since.
  CHECK_FALSE(*unstored);
  self->send(journal, release_atom::value, false);
  sched.run();
  CHECK(script->marks == std::vector<std::vector<uint64_t>>{{1}}); // marked alone
  // It tries once more, now that the marks are on disk.
  REQUIRE(script->truncations == 2);
  CHECK_FALSE(*unstored);
  self->send(journal, release_atom::value, false);
  sched.run();
  REQUIRE(*unstored);
  CHECK(**unstored == 0);
  // The marks were on disk already: the second failure leaves the journal
  // as it is until the store confirms more.
  CHECK(script->truncations == 2);
  CHECK(script->marks.size() == 1);
  CHECK(script->held.empty());
}

TEST_CASE_METHOD(fixture,
                 "a drain waits for the rewrite that repairs a journal whose mark failed",
                 "[flusher][journal][shutdown]") {
  write_and_store("k");
  auto unstored = drain(5s);
  script->fail_marks = true;
  script->hold_rewrites = true;
  // The truncation fails, then the mark that should follow it: the journal
  // is broken and its repair, a rewrite, is on its way.
  self->send(journal, release_atom::value, false);
  sched.run();
  REQUIRE(script->held.size() == 1);
  // Before, a broken journal counted as settled: the drain answered and the
  // flusher stopped; had the rewrite failed too, the next start replayed k.
  CHECK_FALSE(*unstored);
  self->send(journal, release_atom::value, true); // the rewrite, then the truncation
  sched.run();
  self->send(journal, release_atom::value, true);
  sched.run();
  REQUIRE(*unstored);
  CHECK(**unstored == 0);
}

TEST_CASE_METHOD(fixture,
                 "a drain whose journal has failed still answers at its deadline",
                 "[flusher][journal][shutdown]") {
  script->fail_writes = true; // the append fails, then the rewrite that repairs it
  REQUIRE(budget->try_acquire());
  self->send(f, write_atom::value, uint32_t{0},
             std::vector<shard_write>{{value::make("k", "v"), false, ++seq}});
  expect((write_atom, uint32_t, std::vector<shard_write>), from(self).to(f));
  // The drain reaches the flusher before the failed append's rewrite fails.
  auto unstored = drain(1s);
  // Before, the rewrite's retry, 5 s away, replaced the timer of the drain's
  // 1 s deadline, and shutdown counted every write of the cache as lost.
  advance_time(1001ms);
  sched.run();
  REQUIRE(*unstored);
  CHECK(**unstored == 1);
}

TEST_CASE_METHOD(fixture, "a shard's word that it gave a unit back wakes every shard",
                 "[flusher][max-dirty]") {
  // A parked compute's unit, given back by its shard, may be what another
  // shard's parked write waits for; only the flusher knows every shard.
  auto rooms = std::make_shared<int>(0);
  sys.spawn(
    [rooms](caf::event_based_actor* a, const flusher_actor& to) -> caf::behavior {
      a->send(to, write_atom::value, uint32_t{1}, std::vector<shard_write>{});
      return {[rooms](room_atom) { ++*rooms; }, [](caf::ok_atom) {}};
    },
    f);
  sched.run();
  int before = *rooms; // its empty write introduced it (room was free)
  self->send(f, room_atom::value);
  sched.run();
  CHECK(*rooms == before + 1);
}

TEST_CASE_METHOD(fixture, "a shard whose flusher died refuses write-back writes",
                 "[flusher][shard-actor]") {
  // Before, nobody watched the flusher: shards went on acknowledging puts
  // (at once, without a journal) that nothing would ever store.
  shard_setup setup;
  setup.config.writes = write_mode::write_back;
  setup.config.budget = budget;
  setup.time_source = std::make_shared<coordinator_clock>(sched);
  setup.config.reads = std::make_shared<read_side>(setup.time_source);
  setup.write_flusher = f;
  setup.acks_wait_for_journal = true;
  setup.config.read_through = true;
  setup.loaders = {caf::actor_cast<loader_actor>(f)}; // as in create_cache
  auto s = sys.spawn(shard, std::move(setup));
  sched.run();
  auto put = [&](const std::string& key) {
    auto rh = self->request(s, caf::infinite, caf::put_atom::value, value::make(key, "v"),
                            ttl::never());
    sched.run();
    caf::error got;
    rh.receive([](caf::ok_atom) {}, [&](caf::error& e) { got = std::move(e); });
    return got;
  };
  CHECK_FALSE(put("a"));
  caf::anon_send_exit(f, caf::exit_reason::kill);
  sched.run();
  auto err = put("b");
  CHECK(err == errc::store_failure);
  CHECK_THAT(describe(err), Catch::Contains("flusher stopped"));
  // Loads went to it too: one fails at once (it waited for its load-timeout).
  auto load = self->request(s, 1s, load_atom::value, std::string{"x"});
  sched.run();
  advance_time(1001ms); // unanswered: the request times out instead of hanging
  sched.run();
  caf::error load_err;
  load.receive([](value&) {}, [&](caf::error& e) { load_err = std::move(e); });
  CHECK(load_err == errc::store_failure);
  caf::anon_send_exit(s, caf::exit_reason::user_shutdown);
  sched.run();
}

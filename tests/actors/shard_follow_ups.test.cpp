// The shard actor's one after-change step, on CAF's deterministic test
// coordinator: each follow-up of a change (the write to the store, the load,
// the cascade to the bus, the broadcast to the peer, the expiry timer) is
// sent whether the change came as a request or as a plain thread's job
// drained on the doorbell. Both run the same op of actors/shard_ops.hpp.
#include "support/caf_catch_bridge.hpp"

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "actors/shard_actor.hpp"
#include "actors/shard_ops.hpp"
#include "support/coordinator_clock.hpp"
#include <karlton/messages/errors.hpp>
#include <karlton/messages/type_ids.hpp>

using namespace karlton;
using namespace std::chrono_literals;
using karlton::testing::coordinator_clock;
using karlton::testing::test_config;

namespace {

// A plain thread's call as the bridge queues it: an op, run on the shard.
// Its answer is not what these tests look at.
template <class Op>
struct op_job final : shard_job {
  explicit op_job(Op o) : op(std::move(o)) {}
  Op op;
  void run(shard_state& st, time_point now) override {
    auto ignore = [](auto&&) {};
    if constexpr (answers_later<Op, decltype(ignore)>)
      static_cast<void>(op(st, now, ignore));
    else
      static_cast<void>(op(st, now));
    delete this;
  }
  void abandon(const caf::error&) override { delete this; }
};

// A distributed, write-through, read-through shard whose store writer,
// loader, bus and peer are stand-ins: the store writer and loader answer,
// the bus and peer take what they are told.
struct follow_ups : test_coordinator_fixture<test_config> {
  std::shared_ptr<ingress> inbox = std::make_shared<ingress>(64);
  std::shared_ptr<depended_names> depended = std::make_shared<depended_names>();
  caf::actor writer, loader, bus, peer;
  shard_actor s;

  follow_ups() {
    // Spawned with an argument: CAF 0.17 dereferences a null argument tuple
    // for functions spawned without any, which UBSan reports.
    auto stand_in = [](caf::event_based_actor*, int) -> caf::behavior {
      return {
        [](write_atom, const std::vector<shard_write>&) { return caf::ok_atom::value; },
        [](load_atom, const std::string& key, uint64_t id) {
          load_outcome out;
          out.key = key;
          out.id = id;
          out.bytes = "loaded";
          return out;
        },
        [](invalidate_dependents_atom, const std::vector<std::string>&,
           invalidation_cause, int32_t) {},
        [](broadcast_atom, const local_token&, const std::vector<invalidation>&) {},
      };
    };
    for (auto* a : {&writer, &loader, &bus, &peer})
      *a = sys.spawn(stand_in, 0);
    shard_setup setup;
    setup.config.default_ttl = ttl::after(1s);
    setup.config.writes = write_mode::write_through;
    setup.config.read_through = true;
    setup.config.distributed = true;
    setup.config.depended = depended;
    setup.time_source = std::make_shared<coordinator_clock>(sched);
    setup.inbox = inbox;
    setup.store_writer = caf::actor_cast<store_writer_actor>(writer);
    setup.loaders = {caf::actor_cast<loader_actor>(loader)};
    setup.event_bus = caf::actor_cast<bus_actor>(bus);
    setup.peer = caf::actor_cast<peer_actor>(peer);
    setup.cache_name = "c";
    s = sys.spawn(shard, std::move(setup));
    sched.run();
  }

  ~follow_ups() override {
    for (const auto& a : {caf::actor_cast<caf::actor>(s), writer, loader, bus, peer})
      caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
    sched.run();
  }

  shard_state& state() {
    return *deref<shard_actor::stateful_base<shard_actor_state>>(s).state.cache;
  }

  // Queues `op` as a plain thread does and rings; the shard drains it.
  template <class Op>
  void queue(Op op) {
    REQUIRE(inbox->push(new op_job<Op>(std::move(op))));
    REQUIRE(inbox->claim_doorbell());
    caf::anon_send(s, doorbell_atom::value);
    expect((doorbell_atom), to(s));
  }
};

} // namespace

TEST_CASE_METHOD(follow_ups,
                 "a put's write, broadcast and expiry timer follow from both paths",
                 "[shard-actor][after-change]") {
  SECTION("a request") {
    self->send(s, caf::put_atom::value, value::make("k", "v"), ttl::cache_default());
    expect((caf::put_atom, value, ttl), from(self).to(s));
  }
  SECTION("a plain thread's job") {
    queue(shard_ops::put{value::make("k", "v"), ttl::cache_default()});
  }
  // Write-through: the store first, then the cache, then the other nodes.
  expect((write_atom, std::vector<shard_write>), from(s).to(writer));
  CHECK(state().size() == 0);
  expect((caf::ok_atom), from(writer).to(s));
  CHECK(state().size() == 1);
  expect((broadcast_atom, local_token, std::vector<invalidation>), from(s).to(peer));
  advance_time(1001ms);
  expect((expire_atom, uint64_t), to(s));
  CHECK(state().size() == 0);
}

TEST_CASE_METHOD(follow_ups, "an erase's cascade and broadcast follow from both paths",
                 "[shard-actor][after-change]") {
  depended->add("k"); // an entry depends on "k": erasing it cascades
  SECTION("a request") {
    self->send(s, caf::delete_atom::value, std::string{"k"});
    expect((caf::delete_atom, std::string), from(self).to(s));
  }
  SECTION("a plain thread's job") {
    queue(shard_ops::erase<small_key>{small_key{"k"}});
  }
  expect((write_atom, std::vector<shard_write>), from(s).to(writer));
  expect((caf::ok_atom), from(writer).to(s));
  expect(
    (invalidate_dependents_atom, std::vector<std::string>, invalidation_cause, int32_t),
    to(bus));
  expect((broadcast_atom, local_token, std::vector<invalidation>), from(s).to(peer));
}

TEST_CASE_METHOD(follow_ups, "a miss's load follows from both paths",
                 "[shard-actor][after-change][loading]") {
  SECTION("a request") {
    self->send(s, load_atom::value, std::string{"k"});
    expect((load_atom, std::string), from(self).to(s));
  }
  SECTION("a plain thread's job") {
    auto hash = static_cast<uint32_t>(hash_key("k"));
    queue(shard_ops::load<small_key>{small_key{"k"}, hash});
  }
  expect((load_atom, std::string, uint64_t), from(s).to(loader));
  expect((load_outcome), from(loader).to(s));
  CHECK(state().contains("k", sched.clock().now()));
}

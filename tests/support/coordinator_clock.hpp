// For shard actors on CAF's deterministic test coordinator: an actor system
// config with karlton's message types, and a clock that reads the
// coordinator's virtual time, so advancing it moves both timers and TTLs.
#pragma once

#include <caf/actor_system_config.hpp>
#include <caf/scheduler/test_coordinator.hpp>

#include <karlton/base/clock.hpp>
#include <karlton/messages/type_ids.hpp>

namespace karlton::testing {

struct test_config : caf::actor_system_config {
  test_config() { register_types(*this); }
};

class coordinator_clock final : public karlton::clock {
public:
  explicit coordinator_clock(caf::scheduler::test_coordinator& s) : sched_(&s) {}
  time_point now() const noexcept override { return sched_->clock().now(); }

private:
  caf::scheduler::test_coordinator* sched_;
};

} // namespace karlton::testing

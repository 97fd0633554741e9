// What the cluster tests start a node with: its options (a name, the shared
// secret "secret", the test's log) and the read-through cache "users" whose
// loader answers "v1" (a load is no change, so nothing is broadcast).
#pragma once

#include <cstdint>
#include <string>
#include <utility>

#include "support/log_lines.hpp"
#include <karlton/runtime/runtime.hpp>

namespace karlton::testing {

inline cluster_options node_options(std::string name, log_lines& log, bool tls = false) {
  cluster_options o;
  o.node_name = std::move(name);
  o.secret = "secret";
  o.tls = tls;
  o.log = log.sink();
  return o;
}

inline cache_options users_options(runtime& rt, distribution mode, uint32_t shards = 2) {
  auto o = rt.default_options("users");
  o.shards = shards;
  o.distributed = mode;
  o.loader = [](const std::string&) -> caf::expected<std::string> { return "v1"; };
  return o;
}

} // namespace karlton::testing

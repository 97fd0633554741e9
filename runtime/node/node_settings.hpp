// karlton-node's options: the `node` category beside karlton's own, and what
// they mean once parsed and checked (`settings_from`). Every value is checked
// here, before anything starts: bad configuration exits 2 with the option's
// name.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <caf/expected.hpp>
#include <caf/timespan.hpp>

#include "runtime/server/metrics_http.hpp"
#include "runtime/server/resp_options.hpp"
#include <karlton/runtime/options.hpp>

namespace karlton::node {

/// karlton's config plus the `node` category.
class node_config : public karlton::runtime_config {
public:
  /// Declares the `node` options (`--help` lists them with these texts).
  node_config();
};

/// What the options say, checked.
struct node_settings {
  std::vector<karlton::cache_options> caches;
  karlton::cluster_options cluster;
  caf::timespan stats_interval{std::chrono::seconds{10}};
  bool console = false;
  std::string port_file;
  /// Set: the caches are fed PostgreSQL's changes (node.store).
  std::optional<karlton::postgres_options> feed;
  /// Set: serve the Redis protocol.
  std::optional<karlton::server::resp_options> resp;
  /// Set: serve /metrics.
  std::optional<karlton::server::metrics_http_options> metrics;
};

/// Reads and checks every option (exit 2 on an error: it names the option).
caf::expected<node_settings> settings_from(const node_config& cfg);

/// Raises the open-files limit for maxclients, or lowers maxclients to it.
void fit_max_clients(karlton::server::resp_options& o);

/// Leaves the Redis protocol's I/O threads their cores (scheduler.max-threads).
void fit_scheduler(node_config& cfg, const node_settings& s);

} // namespace karlton::node

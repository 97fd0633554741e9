// The `karlton.postgres.*` settings: declared beside karlton's others
// (options.cpp calls `add_postgres_options`), read into `postgres_options`,
// whose defaults and checks (stores/postgres_store.hpp's `validate`) are the
// one place each is defined.
#include <string>

#include <caf/config_option_adder.hpp>
#include <caf/settings.hpp>

#include "runtime/runtime_detail.hpp"
#include <karlton/runtime/options.hpp>
#include <karlton/stores/postgres_store.hpp>

namespace karlton {

namespace detail {

void add_postgres_options(caf::config_option_set& opts) {
  caf::config_option_adder{opts, "karlton.postgres"}
    .add<std::string>("uri", "the database: postgresql://user@host:port/db or a "
                             "conninfo string (prefer a passfile to a password here)")
    .add<std::string>("schema", "schema of the tables (default public)")
    .add<std::string>("table", "table of a single cache (default: the cache's name)")
    .add<std::string>("channel", "NOTIFY channel of the change triggers (default "
                                 "karlton_changes)")
    .add<size_t>("pool-size", "reader connections per store, 1..64 (default 4)")
    .add<size_t>("max-group-keys", "keys of one transaction held before it repairs the "
                                   "table's caches instead, 1..10M (default 100000)")
    .add<size_t>("max-group-bytes", "key bytes of one transaction held before it repairs "
                                    "the table's caches instead, 1KiB..64GiB (default "
                                    "67108864)")
    .add<bool>("install-trigger", "install the change triggers on open (default true)")
    .add<bool>("listen", "invalidate the caches on the database's changes (default "
                         "true)")
    .add<caf::timespan>("lease", "how long hits go on after the feed last proved it "
                                 "hears every change (default 1s)")
    .add<caf::timespan>("heartbeat", "how often the feed proves it (default 250ms)")
    .add<caf::timespan>("repair-ttl", "a repair or a lapsed lease caps TTLs at this "
                                      "instead of clearing (default 0 = clear)")
    .add<caf::timespan>("reconnect-base", "first backoff after a failed connection "
                                          "(default 100ms)")
    .add<caf::timespan>("reconnect-max", "longest backoff (default 5s)")
    .add<caf::timespan>("connect-timeout", "longest wait for a connection (default 5s)");
}

} // namespace detail

caf::expected<postgres_options> postgres_options_from(const caf::actor_system_config& cfg,
                                                      std::optional<std::string> uri) {
  postgres_options o;
  const std::string p = "karlton.postgres.";
  o.uri = uri ? std::move(*uri) : caf::get_or(cfg, p + "uri", o.uri);
  o.schema = caf::get_or(cfg, p + "schema", o.schema);
  o.table = caf::get_or(cfg, p + "table", o.table);
  o.channel = caf::get_or(cfg, p + "channel", o.channel);
  // Read wide, so a huge number is refused rather than wrapped.
  auto pool = caf::get_or(cfg, p + "pool-size", size_t{o.pool_size});
  auto group = caf::get_or(cfg, p + "max-group-keys", size_t{o.max_group_keys});
  o.pool_size = pool > 64 ? 0 : static_cast<uint32_t>(pool);
  o.max_group_keys = group > 10'000'000 ? 0 : static_cast<uint32_t>(group);
  auto bytes = caf::get_or(cfg, p + "max-group-bytes", size_t{o.max_group_bytes});
  o.max_group_bytes = bytes > (uint64_t{64} << 30) ? 0 : uint64_t{bytes};
  o.install_trigger = caf::get_or(cfg, p + "install-trigger", o.install_trigger);
  o.listen = caf::get_or(cfg, p + "listen", o.listen);
  o.lease = caf::get_or(cfg, p + "lease", o.lease);
  o.heartbeat = caf::get_or(cfg, p + "heartbeat", o.heartbeat);
  o.repair_ttl = caf::get_or(cfg, p + "repair-ttl", o.repair_ttl);
  o.reconnect_base = caf::get_or(cfg, p + "reconnect-base", o.reconnect_base);
  o.reconnect_max = caf::get_or(cfg, p + "reconnect-max", o.reconnect_max);
  o.connect_timeout = caf::get_or(cfg, p + "connect-timeout", o.connect_timeout);
  if (auto err = validate(o)) return err;
  return o;
}

} // namespace karlton

// How karlton talks to PostgreSQL: the one definition of the settings shared
// by postgres_store (the store behind a cache), the change feed (LISTEN) and
// the runtime's `karlton.postgres.*` settings, so a default changes in one
// place. Ranges and their reasons: `validate` in stores/postgres_store.hpp.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include <caf/timespan.hpp>

namespace karlton {

/// PostgreSQL's tunables and their defaults (settings `karlton.postgres.*`).
struct postgres_options {
  /// Where the database is: `postgresql://user@host:port/db?...` or a
  /// `key=value` conninfo string. Never printed: errors name only host, port
  /// and database, and libpq's messages have the password blanked. A password
  /// written here shows in `/proc/PID/cmdline` when given on a command line;
  /// prefer `passfile` or ~/.pgpass.
  std::string uri;
  /// The schema the tables live in (`^[a-z_][a-z0-9_]{0,62}$`, not `pg_*`).
  std::string schema = "public";
  /// The table; empty: the cache's name (same rule as `schema`).
  std::string table;
  /// The NOTIFY channel the triggers send on and the feed listens to.
  std::string channel = "karlton_changes";
  /// Reader connections per store, opened on demand (1..64: each is a server
  /// process, and `max_connections` defaults to 100); one writer comes on top.
  uint32_t pool_size = 4;
  /// The most keys of one transaction held while its group is open; a larger
  /// group repairs the table's caches instead (1..10M).
  uint32_t max_group_keys = 100'000;
  /// The most key bytes of one transaction in one table held while its group
  /// is open, and of all open groups together; over it, as over
  /// `max_group_keys` (1 KiB..64 GiB: forged notifications of 3,800-byte keys
  /// would otherwise hold `max_group_keys` × 3,800 bytes).
  uint64_t max_group_bytes = uint64_t{64} << 20;
  /// Whether `open` installs the change triggers on the table.
  bool install_trigger = true;
  /// Whether caches over these tables are fed changes (LISTEN).
  bool listen = true;
  /// How long after the last proof that the feed hears everything direct
  /// reads may still hit (at least twice the heartbeat; at most 365 days).
  caf::timespan lease = std::chrono::seconds{1};
  /// How often the feed proves it hears (a query on the LISTEN connection;
  /// at most a day, as the reconnect backoff and the connect timeout).
  caf::timespan heartbeat = std::chrono::milliseconds{250};
  /// What a repair or a lapsed lease does: 0 clears the caches, else caps their TTLs.
  caf::timespan repair_ttl{0};
  /// Backoff between connection attempts after a failure: from base, doubling
  /// per failure up to max, with equal jitter. While it lasts, calls that need
  /// a new connection fail at once instead of queueing.
  caf::timespan reconnect_base = std::chrono::milliseconds{100};
  caf::timespan reconnect_max = std::chrono::seconds{5}; ///< see `reconnect_base`
  /// How long opening a connection, or waiting for a free one, may take.
  caf::timespan connect_timeout = std::chrono::seconds{5};
};

} // namespace karlton

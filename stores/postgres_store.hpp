// A store in a PostgreSQL table: the cache's rows as (key bytea PRIMARY KEY,
// value bytea, updated_at), reached through libpq with prepared statements
// and binary parameters.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include <karlton/base/postgres_options.hpp>
#include <karlton/stores/store.hpp>

namespace karlton {

/// `invalid_option` naming the first option out of range (see
/// postgres_options): names that are not `^[a-z_][a-z0-9_]{0,62}$` (a schema
/// `pg_*`), a URI over 4096 bytes, with a NUL or newline or that libpq cannot
/// parse, pool-size outside 1..64, max-group-keys outside 1..10M, max-group-bytes outside
/// 1 KiB..64 GiB, lease or
/// heartbeat outside 1ms..365d or lease <= heartbeat, reconnect-base < 1ms or
/// > reconnect-max, connect-timeout < 1ms. The password never shows.
caf::error validate(const postgres_options& opts);

/// A `store` over the table `schema.table` of a PostgreSQL database. Keys are
/// `bytea` (they may hold NULs). Each `write_batch` is one transaction over
/// one writer connection; loads borrow one of up to `pool_size` reader
/// connections, so a read never waits for a write. Connections open when
/// first needed; one lost (a server restart) is dropped, the idle ones with
/// it, and the next call opens a fresh one. After a failed attempt to
/// connect, calls needing a new connection fail at once until the backoff
/// (`reconnect_base` .. `reconnect_max`) is over.
///
/// Errors: `store_failure` whose text names `host:port/db` and the table and
/// gives PostgreSQL's SQLSTATE and message, never the URI or the password.
/// @threadsafe every member may be called from any thread.
class postgres_store final : public store {
public:
  /// Connects (the writer and one reader, so a bad URI, server or table
  /// fails here), creates the table if it is missing (under an advisory lock,
  /// so nodes opening at once do not collide), installs the change triggers
  /// if `opts.install_trigger` (see `trigger_sql`), and prepares the
  /// statements.
  /// The table is `opts.table`, or `table` if that is empty.
  static caf::expected<std::shared_ptr<postgres_store>> open(const postgres_options& opts,
                                                             const std::string& table);

  ~postgres_store() override;

  /// One `SELECT ... WHERE key = $1`; a lost connection on a reused
  /// connection is retried once on a fresh one (a load changes nothing).
  caf::expected<std::optional<std::string>> load(std::string_view key) override;

  /// One statement (`key = ANY($1)`), so one snapshot: a batch written at the
  /// same time is seen whole or not at all.
  caf::expected<std::vector<std::optional<std::string>>>
  load_many(const std::vector<std::string>& keys) override;

  /// Keeps the last change per key, then BEGIN; the transaction's id; one
  /// upsert of all puts; one delete of all deletes; COMMIT: five round trips
  /// whatever the size. The id is registered in `origin().own` before COMMIT
  /// and resolved after it (as not ours when the outcome is unknown). A
  /// connection lost at BEGIN (nothing sent yet) is retried once on a fresh
  /// one; a batch whose COMMIT may have happened never is ("the outcome of
  /// COMMIT is unknown").
  caf::error write_batch(const std::vector<store_write>& batch) override;

  /// The table as the triggers name it ("schema.table") and the registry of
  /// this store's own committed transactions, whose notifications the change
  /// feed skips (it has just installed their values).
  std::optional<store_origin> origin() const override;

  /// The SQL `open` runs when `install_trigger` is set, for a DBA who installs
  /// the triggers by hand (then in one transaction, and again after changing
  /// the channel): functions in `opts.schema`, a row trigger, a deferred end
  /// trigger and a TRUNCATE trigger on the table (`opts.table`, or `table`).
  /// `invalid_option` for a name that is not an identifier karlton accepts.
  static caf::expected<std::string> trigger_sql(const postgres_options& opts,
                                                const std::string& table);

  /// Cancels the statements running on every connection lent now (a load's,
  /// a write's): they fail with `store_failure` (SQLSTATE 57014); a write is
  /// rolled back. Shutdown calls it while a store call outlasts the drain,
  /// so a write blocked on a row lock cannot hold it.
  void interrupt() noexcept override;

  /// Rows in the table (a full scan: for tests and examples).
  caf::expected<uint64_t> count();

  /// "schema.table", as errors name it.
  const std::string& table() const noexcept;

  /// Connections open now (readers + writer): for tests of the pool's bound.
  uint32_t connections() const;

private:
  struct impl;
  explicit postgres_store(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

} // namespace karlton

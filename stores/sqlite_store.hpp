// The embedded default store: one SQLite table per cache, in a file that
// several caches (and processes) may share.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include <karlton/stores/store.hpp>

namespace karlton {

/// How a `sqlite_store` trades speed for safety.
struct sqlite_options {
  /// true: `synchronous=FULL`, a committed batch survives power loss. false:
  /// `NORMAL`, which in WAL mode survives a crash of the process but may lose
  /// the last commits on power loss, for one fsync per checkpoint instead of
  /// one per batch.
  bool durable = true;
  /// How long a write waits for the file's write lock, held by another store
  /// on the same file or another process, before it fails. 5 s rides out a
  /// checkpoint or a large batch elsewhere; 0 fails at once.
  std::chrono::milliseconds busy_timeout{5000};
};

/// A `store` in table `table` of the SQLite file `path`, in WAL mode, so
/// reads never wait for a write transaction. Writes go through one connection
/// under a mutex, one transaction per `write_batch`; reads borrow a connection
/// of their own from a small pool that grows on demand.
/// @threadsafe every member may be called from any thread.
class sqlite_store final : public store {
public:
  /// Opens (creating if needed) the file and the table. Errors:
  /// `invalid_option` for a table name other than letters, digits and '_', or
  /// a path that is not a file (":memory:", ""); `store_failure` if SQLite
  /// cannot open the file, switch it to WAL or create the table. SQLite's
  /// table names ignore case, even quoted: "Users" and "users" are one table.
  static caf::expected<std::shared_ptr<sqlite_store>>
  open(const std::string& path, const std::string& table, sqlite_options opts = {});

  ~sqlite_store() override;

  caf::expected<std::optional<std::string>> load(std::string_view key) override;

  /// Reads every key in one read transaction: one consistent snapshot, so a
  /// batch written at the same time is seen whole or not at all.
  caf::expected<std::vector<std::optional<std::string>>>
  load_many(const std::vector<std::string>& keys) override;

  /// One `BEGIN IMMEDIATE ... COMMIT`; on any failure, `ROLLBACK`.
  caf::error write_batch(const std::vector<store_write>& batch) override;

  /// Ends the calls in flight that wait for the file's lock (held by another
  /// store or process: `busy_timeout`) and the write statement running now;
  /// each fails with `store_failure`. Calls that begin afterwards are not
  /// affected. An fsync in progress cannot be cut short.
  void interrupt() noexcept override;

  /// Rows in the table (a full scan: for tests and examples).
  caf::expected<uint64_t> count();

  /// The database file it was opened with.
  const std::string& path() const noexcept;
  /// The table it keeps the cache's rows in.
  const std::string& table() const noexcept;

private:
  struct impl;
  explicit sqlite_store(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

} // namespace karlton

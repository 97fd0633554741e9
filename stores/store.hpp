// The source of truth behind a cache: what write-through and write-back write
// to, and what misses load from. SQLite is the embedded default
// (stores/sqlite_store.hpp); a service may bring its own.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>

namespace karlton {

class own_commits;

/// Where a store's data lives, for stores whose database can tell karlton
/// about changes made by others (PostgreSQL's triggers): the change feed
/// routes a table's notifications to the caches over it.
struct store_origin {
  std::string table;                ///< "schema.table", as the triggers name it
  std::shared_ptr<own_commits> own; ///< the store's own transactions (never null)
};

/// One change of a batch: a put of `bytes` under `key`, or a delete when
/// `bytes` is empty (`std::nullopt`). What a store sees of a shard's numbered
/// `shard_write` (messages/writes.hpp).
struct store_write {
  std::string key;                  ///< the key changed
  std::optional<std::string> bytes; ///< the value put; none for a delete

  /// True for a delete (no `bytes`).
  bool is_delete() const noexcept { return !bytes.has_value(); }
};

/// A key-value store for one cache. Calls block (disk, network), so karlton
/// makes them only from threads of their own (detached actors), never from a
/// shard. Implementations must allow calls from several threads at once; a
/// read should not wait for a write transaction in progress.
///
/// Failures are `errc::store_failure` errors whose context says what failed;
/// a write the store refuses for what it holds, which would fail again, is
/// `errc::store_refused` (`write_batch`: nothing of the batch is written).
class store {
public:
  virtual ~store() = default;

  /// The bytes stored under `key`, or `std::nullopt` if there are none.
  virtual caf::expected<std::optional<std::string>> load(std::string_view key) = 0;

  /// `load` for each key, in order.
  virtual caf::expected<std::vector<std::optional<std::string>>>
  load_many(const std::vector<std::string>& keys) = 0;

  /// Applies every change of `batch`, in order, atomically: all or none.
  virtual caf::error write_batch(const std::vector<store_write>& batch) = 0;

  /// Deletes `key` (no error if it is absent).
  virtual caf::error erase(std::string_view key) {
    return write_batch({store_write{std::string{key}, std::nullopt}});
  }

  /// Where the data lives, if the database reports changes; none by default.
  virtual std::optional<store_origin> origin() const { return std::nullopt; }

  /// Asks the calls in flight to give up soon with a failure (a database's
  /// cancel request). A runtime's shutdown calls it once its flushers are
  /// drained (or their deadline passed) and a call still holds one of its
  /// threads 100 ms later, and every 100 ms until that returns. By default
  /// nothing: such a call holds shutdown until it returns. Calls from other
  /// runtimes sharing the store then fail too.
  /// @threadsafe called from any thread while calls run.
  virtual void interrupt() noexcept {}
};

} // namespace karlton

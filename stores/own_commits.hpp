// Which committed transactions a store made itself, so the change feed does
// not invalidate a value the cache has just installed from its own write
// (docs/plans/postgres.md §2). The store expects an xid before COMMIT and
// resolves it after; the feed takes each group's xid once.
#pragma once

#include <cstdint>

namespace karlton {

/// A bounded registry of a store's own transactions. @threadsafe
///
/// At most `capacity` xids are remembered; the oldest are dropped first,
/// which only makes a notification count as foreign (an extra invalidation,
/// the safe direction).
class own_commits {
public:
  /// How the feed should treat a transaction's changes.
  enum class verdict : uint8_t {
    foreign, ///< not ours (or forgotten): invalidate
    own,     ///< ours and committed: skip (forgotten as it is returned)
    pending, ///< ours, COMMIT's outcome not yet known: ask again shortly
  };

  /// The most xids remembered.
  static constexpr uint32_t capacity = 65'536;

  /// Remembers nothing yet.
  own_commits();
  /// Frees the registry.
  ~own_commits();
  own_commits(const own_commits&) = delete;            ///< not copyable
  own_commits& operator=(const own_commits&) = delete; ///< not copyable

  /// `take`'s `rows` for a group part of which may be missing: never own,
  /// and the xid is forgotten (its other parts are foreign too).
  static constexpr uint64_t incomplete_group = UINT64_MAX;

  /// The store is about to COMMIT transaction `xid`, which changed `rows`
  /// rows of its table (one notification each: it never changes a key).
  void expect(uint64_t xid, uint64_t rows);

  /// COMMIT of `xid` returned: `committed` false forgets it (a rollback sends
  /// no notifications, and an unknown outcome must count as foreign).
  void resolve(uint64_t xid, bool committed);

  /// The verdict for `xid`, whose group has `rows` row notifications for
  /// the store's table: `own` only if the store changed exactly those (a
  /// user's trigger or rule that changed other rows of the table in the same
  /// transaction makes it foreign). Forgotten unless `pending`.
  verdict take(uint64_t xid, uint64_t rows);

  /// Forgets everything: the feed reconnected, and its repair covers all.
  void forget_all();

private:
  struct impl;
  impl* impl_;
};

} // namespace karlton

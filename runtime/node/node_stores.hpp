// What `node.store` puts behind a node's caches: a SQLite file (which nodes
// on one host may share) or a PostgreSQL database (`postgresql://` or
// `postgres://`, with the `karlton.postgres.*` settings), one table per
// cache. With PostgreSQL the caches are also fed the database's own changes
// unless `karlton.postgres.listen` is false.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>

#include <caf/actor_system_config.hpp>
#include <caf/expected.hpp>

#include <karlton/base/postgres_options.hpp>
#include <karlton/stores/store.hpp>

namespace karlton::node {

/// The stores of one node's caches.
class node_stores {
public:
  /// Reads `node.store` and, for a PostgreSQL URI, `karlton.postgres.*`
  /// (the URI overrides `karlton.postgres.uri`). `caches`: how many caches
  /// the node creates (`karlton.postgres.table` fits one only). Errors:
  /// `invalid_option` naming the option.
  static caf::expected<node_stores> from(const caf::actor_system_config& cfg,
                                         size_t caches);

  /// True if `node.store` is unset: the caches have no store.
  bool empty() const noexcept { return where_.empty(); }

  /// Opens cache `name`'s table: `name` with '-' and '.' as '_' (lower-cased
  /// for PostgreSQL, whose unquoted names fold). `invalid_option` if another
  /// cache already has that table, or naming `node.store` if it cannot open.
  caf::expected<std::shared_ptr<store>> open(const std::string& name);

  /// Set when the caches are fed the database's changes: what
  /// `runtime::start_change_feed` gets (before the caches are created).
  const std::optional<postgres_options>& feed() const noexcept { return feed_; }

private:
  std::string where_;                        // node.store
  std::optional<postgres_options> postgres_; // set for a PostgreSQL URI
  std::optional<postgres_options> feed_;
  std::map<std::string, std::string> tables_; // folded table -> cache
};

} // namespace karlton::node

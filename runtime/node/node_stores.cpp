#include "runtime/node/node_stores.hpp"

#include <algorithm>

#include <caf/settings.hpp>

#include <karlton/messages/errors.hpp>
#include <karlton/runtime/options.hpp>
#include <karlton/stores/postgres_store.hpp>
#include <karlton/stores/sqlite_store.hpp>

#include "runtime/server/ascii.hpp"

namespace karlton::node {

namespace {

caf::error bad_option(const std::string& option, const std::string& why) {
  return make_error(errc::invalid_option, "option " + option + ": " + why);
}

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

} // namespace

caf::expected<node_stores> node_stores::from(const caf::actor_system_config& cfg,
                                             size_t caches) {
  node_stores out;
  out.where_ = caf::get_or(cfg, "node.store", std::string{});
  if (!starts_with(out.where_, "postgresql://") &&
      !starts_with(out.where_, "postgres://")) {
    // Not a file name: a conninfo string ("host=... password=...") or another
    // scheme became a SQLite file named after it, password and all.
    // So did user:password@host/db, a URI without its scheme.
    auto at = out.where_.find('@');
    bool credentials =
      at != std::string::npos && out.where_.find(':') < at && out.where_.find('/') > at;
    if (out.where_.find('=') != std::string::npos ||
        out.where_.find("://") != std::string::npos || credentials)
      return bad_option("node.store", "is neither a postgresql:// URI nor a SQLite file "
                                      "name (a file name has no '=' or '://', nor "
                                      "user:password@ before its first '/')");
    if (caf::get_if(&caf::content(cfg), "karlton.postgres") != nullptr)
      return bad_option("karlton.postgres",
                        "is set, but node.store is not a "
                        "postgresql:// URI: there is no PostgreSQL store");
    return out; // a SQLite file, or none
  }
  auto p = postgres_options_from(cfg, out.where_);
  if (!p) return bad_option("node.store", describe(p.error()));
  if (!p->table.empty() && caches > 1)
    return bad_option("karlton.postgres.table",
                      "names one table, but node.caches lists several caches (each "
                      "has a table of its own, named after it)");
  out.postgres_ = *p;
  if (p->listen) out.feed_ = *p;
  return out;
}

caf::expected<std::shared_ptr<store>> node_stores::open(const std::string& name) {
  auto table = name;
  std::replace_if(
    table.begin(), table.end(), [](char c) { return c == '-' || c == '.'; }, '_');
  // SQLite's table names ignore case, even quoted; PostgreSQL's are
  // lower-cased here. Either way "Users" and "users" would be one table.
  if (postgres_ && !postgres_->table.empty()) table = postgres_->table;
  auto folded = table;
  for (auto& c : folded)
    c = server::ascii_lower(c); // as SQLite folds: ASCII only
  auto [other, fresh] = tables_.emplace(folded, name);
  if (!fresh)
    return bad_option("node.caches", "'" + other->second + "' and '" + name +
                                       "' would share the store table '" + folded +
                                       "' (table names ignore case)");
  if (postgres_) {
    auto st = postgres_store::open(*postgres_, folded);
    if (!st) return bad_option("node.store", describe(st.error()));
    return std::shared_ptr<store>{std::move(*st)};
  }
  // One store (and table) per cache, all in the one file. Several node
  // processes may share the file: SQLite's WAL mode and the store's busy
  // timeout let their writes take turns.
  auto st = sqlite_store::open(where_, table);
  if (!st) return bad_option("node.store", describe(st.error()));
  return std::shared_ptr<store>{std::move(*st)};
}

} // namespace karlton::node

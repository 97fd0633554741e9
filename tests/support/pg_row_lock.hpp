// A row lock another session holds, for tests of what waits behind one (a
// store's write at shutdown).
#pragma once

#include <string>
#include <utility>

#include <libpq-fe.h>

#include "stores/pg_connection.hpp"
#include "support/eventually.hpp"
#include "support/pg_server.hpp"

namespace karlton::testing {

/// Updates `key`'s row of `table` in a transaction it keeps open, so every
/// other writer of that row waits; ended by `commit` or when it goes.
class pg_row_lock {
public:
  pg_row_lock(pg_server& srv, const std::string& table, const std::string& key)
    : srv_(srv), conn_(PQconnectdb(srv.uri().c_str())) {
    held_ = PQstatus(conn_.get()) == CONNECTION_OK && exec("BEGIN") &&
            exec("UPDATE " + table + " SET value = 'held' WHERE key = '" + key + "'");
  }
  ~pg_row_lock() { release(); }
  pg_row_lock(const pg_row_lock&) = delete;
  pg_row_lock& operator=(const pg_row_lock&) = delete;

  /// True if the lock was taken.
  bool held() const noexcept { return held_; }

  /// True once one session waits for a lock, within 10 s.
  bool someone_waits() {
    return eventually([&] {
      return srv_.psql("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = "
                       "'Lock'") == "1";
    });
  }

  /// Commits the transaction (its update wins); true if it did.
  bool commit() { return std::exchange(held_, false) && exec("COMMIT"); }

  /// Rolls it back, if it is still open.
  void release() {
    if (std::exchange(held_, false)) exec("ROLLBACK");
  }

private:
  bool exec(const std::string& sql) {
    pg::result_ptr r{PQexec(conn_.get(), sql.c_str())};
    return PQresultStatus(r.get()) == PGRES_COMMAND_OK;
  }

  pg_server& srv_;
  pg::conn_ptr conn_;
  bool held_ = false;
};

} // namespace karlton::testing

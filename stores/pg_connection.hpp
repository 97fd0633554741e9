// libpq, wrapped for postgres_store (and later the change feed): owning
// handles, identifier checks and quoting, the binary `bytea[]` encoder, the
// conninfo with karlton's defaults, error text that never shows the password,
// and a bounded pool of lazily opened connections with reconnect backoff.
// Internal: nothing here is installed.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <libpq-fe.h>

#include <karlton/base/postgres_options.hpp>

namespace karlton::pg {

struct conn_deleter {
  void operator()(PGconn* c) const noexcept { PQfinish(c); }
};
using conn_ptr = std::unique_ptr<PGconn, conn_deleter>;

struct result_deleter {
  void operator()(PGresult* r) const noexcept { PQclear(r); }
};
using result_ptr = std::unique_ptr<PGresult, result_deleter>;

/// `^[a-z_][a-z0-9_]{0,62}$`: what karlton accepts as a schema, table or
/// channel name. Such a name needs no escaping inside double or single quotes,
/// and PostgreSQL neither folds nor truncates it.
bool valid_identifier(std::string_view name) noexcept;

/// `name` in double quotes (call only with a `valid_identifier`).
std::string quote(std::string_view name);

/// `text` with every occurrence of `secret` (as written, and percent-encoded
/// as in a URI) replaced by `***`. An empty secret changes nothing.
std::string redact(std::string text, const std::vector<std::string>& secrets);

/// A one-dimensional `bytea[]` in PostgreSQL's binary array format, for a
/// parameter sent with format 1 (no escaping, NULs allowed).
std::string bytea_array(const std::vector<const std::string*>& items);

/// What `connect` needs, made once from the options by `parse`.
struct conn_params {
  std::vector<std::string> keys;    ///< for PQconnectdbParams, our defaults first
  std::vector<std::string> values;  ///< the user's conninfo last, so it wins
  std::string where;                ///< "host:port/db", all errors may show
  std::vector<std::string> secrets; ///< the password as given: what `redact` blanks
};

/// Checks `opts.uri` with libpq's own parser and adds karlton's defaults
/// (application_name, connect_timeout, keepalives, tcp_user_timeout).
/// `invalid_option` with libpq's (redacted) message if it does not parse.
caf::expected<conn_params> parse(const postgres_options& opts,
                                 const std::string& application_name);

/// Opens a connection (blocking, bounded by the conninfo's connect_timeout).
/// On failure: none, and libpq's message, redacted, in `why`.
conn_ptr connect(const conn_params& params, std::string& why);

/// libpq's message for a failed call: SQLSTATE and the primary message of
/// `res` if there is one, else the connection's message. Redacted, one line.
std::string describe(PGconn* conn, const PGresult* res, const conn_params& params);

/// True if `res` failed for what the statement wrote, so that it would fail
/// again: SQLSTATE class 22, 23 or 54, or P0001 (a trigger's RAISE).
bool refused(const PGresult* res) noexcept;

/// As `refused`, for a failed COMMIT: a deferred constraint (23) or
/// constraint trigger (P0001) only; class 54 there is a full NOTIFY queue,
/// which passes.
bool refused_at_commit(const PGresult* res) noexcept;

/// True if the connection is unusable after `res` failed: the connection is
/// bad, or SQLSTATE class 08 (connection exception) or 57P01-03 (the server
/// shut down or cannot accept connections now).
bool lost(PGconn* conn, const PGresult* res) noexcept;

/// Backoff between connection attempts, shared by the pools of one store:
/// base * 2^(failures-1) up to max, equal jitter (half fixed, half random).
class backoff {
public:
  using clock = std::chrono::steady_clock;
  backoff(caf::timespan base, caf::timespan max) : base_(base), max_(max) {}
  /// Empty if an attempt may start now; else the error to fail with at once.
  std::optional<std::string> refuse(clock::time_point now) const;
  void failed(clock::time_point now, std::string why);
  void succeeded();

private:
  mutable std::mutex mtx_;
  caf::timespan base_, max_;
  uint32_t failures_ = 0;
  clock::time_point next_attempt_{};
  std::string last_error_;
};

/// Up to `size` connections, opened when first needed and kept idle between
/// uses. `borrow` hands out an idle one, opens a new one (unless the backoff
/// says wait: then it fails at once), or waits up to `wait` for one to come
/// back. `on_connect` runs on every new connection (PREPARE); a failure there
/// fails the borrow. @threadsafe
class pool {
public:
  /// Prepares a new connection; empty on success, else why it failed.
  using setup = std::function<std::string(PGconn*)>;

  class lease {
  public:
    lease() = default;
    lease(lease&& other) noexcept;
    lease& operator=(lease&& other) noexcept;
    ~lease();
    PGconn* get() const noexcept { return conn_.get(); }
    /// True if the connection was opened for this lease (not reused idle).
    bool fresh() const noexcept { return fresh_; }
    /// Closes the connection instead of giving it back (it is broken), and
    /// the idle ones with it: they went to the same server, and a restarted
    /// server broke them all.
    void discard() noexcept { broken_ = true; }

  private:
    friend class pool;
    pool* owner_ = nullptr;
    conn_ptr conn_;
    bool fresh_ = false;
    bool broken_ = false;
  };

  pool(const conn_params& params, uint32_t size, caf::timespan wait,
       std::shared_ptr<backoff> retry, setup on_connect);
  ~pool();

  /// A connection, or none and `why` (a plain message; the store adds where
  /// and what).
  std::optional<lease> borrow(std::string& why);

  /// Connections open now (idle and lent).
  uint32_t open_count() const;

  /// Sends a cancel request for what each lent connection runs now: its
  /// statement fails with SQLSTATE 57014 (a statement between two others
  /// is not reached: ask again). Returns at once: each request goes from a
  /// thread of its own, one at a time per connection, since libpq's cancel
  /// connects without a timeout (minutes to a server that drops packets).
  void cancel_lent() noexcept;

private:
  struct cancel_handle;             // a connection's PGcancel, shared with its sender
  void lend(PGconn* conn) noexcept; // under mtx_
  void give_back(conn_ptr conn, bool broken) noexcept;

  const conn_params& params_;
  const uint32_t size_;
  const caf::timespan wait_;
  std::shared_ptr<backoff> retry_;
  setup on_connect_;
  mutable std::mutex mtx_;
  std::condition_variable returned_;
  std::vector<conn_ptr> idle_; // guarded by mtx_
  // Guarded by mtx_: the lent connections and their cancel requests, made by
  // the borrowing thread (PQgetCancel reads the connection).
  std::vector<std::pair<PGconn*, std::shared_ptr<cancel_handle>>> lent_;
  uint32_t open_ = 0; // guarded by mtx_: idle + lent + being opened
};

} // namespace karlton::pg

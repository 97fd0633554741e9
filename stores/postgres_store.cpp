#include <karlton/stores/postgres_store.hpp>

#include <charconv>
#include <mutex>
#include <unordered_map>

#include "stores/pg_connection.hpp"
#include "stores/pg_trigger_sql.hpp"
#include <karlton/messages/errors.hpp>
#include <karlton/messages/value.hpp>
#include <karlton/stores/own_commits.hpp>

namespace karlton {

namespace {

using namespace std::chrono_literals;

constexpr Oid bytea_oid = 17;
constexpr Oid bytea_array_oid = 1001;

caf::error check_name(const char* what, const std::string& name) {
  if (!pg::valid_identifier(name))
    return make_error(errc::invalid_option,
                      std::string{"postgres "} + what + " '" + name +
                        "' must be 1-63 of a-z, 0-9 and '_', not starting with a digit");
  return caf::none;
}

// `most`: a year for the lease; a day for what a thread waits on at once
// (a poll() timeout is an int of milliseconds, 24.8 days at most).
caf::error check_span(const char* what, caf::timespan v, caf::timespan most = 24h) {
  if (v < 1ms || v > most)
    return make_error(errc::invalid_option, std::string{"postgres "} + what +
                                              " must be within 1ms.." +
                                              (most == 24h ? "1d" : "365d"));
  return caf::none;
}

} // namespace

caf::error validate(const postgres_options& opts) {
  if (auto params = pg::parse(opts, "karlton"); !params) return params.error();
  if (auto err = check_name("schema", opts.schema)) return err;
  if (opts.schema.compare(0, 3, "pg_") == 0)
    return make_error(errc::invalid_option,
                      "postgres schema '" + opts.schema + "': pg_* names are reserved");
  if (!opts.table.empty())
    if (auto err = check_name("table", opts.table)) return err;
  if (auto err = check_name("channel", opts.channel)) return err;
  if (opts.pool_size < 1 || opts.pool_size > 64)
    return make_error(errc::invalid_option,
                      "postgres pool-size must be within 1..64 (each connection is a "
                      "server process; max_connections defaults to 100)");
  if (opts.max_group_keys < 1 || opts.max_group_keys > 10'000'000)
    return make_error(errc::invalid_option,
                      "postgres max-group-keys must be within 1..10000000 (held in "
                      "memory until the group closes)");
  if (opts.max_group_bytes < 1024 || opts.max_group_bytes > (uint64_t{64} << 30))
    return make_error(errc::invalid_option,
                      "postgres max-group-bytes must be within 1024..68719476736 (held "
                      "in memory until the group closes)");
  if (auto err = check_span("lease", opts.lease, 24h * 365)) return err;
  if (auto err = check_span("heartbeat", opts.heartbeat)) return err;
  if (opts.lease < 2 * opts.heartbeat)
    return make_error(errc::invalid_option,
                      "postgres lease must be at least twice the heartbeat (each proof "
                      "takes a heartbeat's round trip; a shorter lease lapses between "
                      "proofs, and every read then clears the cache)");
  if (auto err = check_span("reconnect-max", opts.reconnect_max)) return err;
  if (opts.reconnect_base < 1ms || opts.reconnect_base > opts.reconnect_max)
    return make_error(errc::invalid_option,
                      "postgres reconnect-base must be >= 1ms and <= reconnect-max");
  if (auto err = check_span("connect-timeout", opts.connect_timeout)) return err;
  if (opts.repair_ttl < caf::timespan{0} || opts.repair_ttl > 24h * 365)
    return make_error(errc::invalid_option,
                      "postgres repair-ttl must be 0 (clear) or at most 365 days");
  return caf::none;
}

struct postgres_store::impl {
  postgres_options opts;
  pg::conn_params params;
  std::string name;      // "schema.table"
  std::string qualified; // "\"schema\".\"table\""
  std::shared_ptr<pg::backoff> retry;
  std::unique_ptr<pg::pool> readers;
  std::unique_ptr<pg::pool> writer; // one connection, used under write_mtx
  std::mutex write_mtx;
  // The transactions write_batch committed: the change feed skips their
  // notifications, which would otherwise throw away the values just written.
  std::shared_ptr<own_commits> own = std::make_shared<own_commits>();

  caf::error fail(const std::string& what, const std::string& detail,
                  errc code = errc::store_failure) const {
    return make_error(code, "postgres store " + params.where + " table " + name + ": " +
                              what + ": " + detail);
  }

  // PREPAREs every statement on a new connection; binary parameters and
  // results, so keys and values are never escaped or hex-encoded.
  std::string prepare(PGconn* conn) const {
    struct statement {
      const char* name;
      std::string sql;
      Oid type;
    };
    const statement all[] = {
      {"k_load", "SELECT value FROM " + qualified + " WHERE key = $1", bytea_oid},
      {"k_load_many",
       "SELECT key, value FROM " + qualified + " WHERE key = ANY($1::bytea[])",
       bytea_array_oid},
      {"k_upsert",
       "INSERT INTO " + qualified +
         "(key, value, updated_at) SELECT k, v, clock_timestamp() FROM "
         "unnest($1::bytea[], $2::bytea[]) AS u(k, v) ON CONFLICT (key) DO UPDATE SET "
         "value = excluded.value, updated_at = excluded.updated_at",
       bytea_array_oid},
      {"k_delete", "DELETE FROM " + qualified + " WHERE key = ANY($1::bytea[])",
       bytea_array_oid},
      // The xid the triggers put in this transaction's notifications.
      {"k_xid", "SELECT pg_current_xact_id()::text", 0},
    };
    for (auto& s : all) {
      const Oid types[] = {s.type, s.type};
      int n = s.type == 0 ? 0 : std::string_view{s.name} == "k_upsert" ? 2 : 1;
      pg::result_ptr res{PQprepare(conn, s.name, s.sql.c_str(), n, types)};
      if (!res || PQresultStatus(res.get()) != PGRES_COMMAND_OK)
        return std::string{"cannot prepare "} + s.name + ": " +
               pg::describe(conn, res.get(), params);
    }
    return {};
  }

  // Runs a prepared statement with binary parameters and results.
  static pg::result_ptr run(PGconn* conn, const char* stmt,
                            const std::vector<const std::string*>& args) {
    std::vector<const char*> values;
    std::vector<int> lengths, formats;
    for (auto* a : args) {
      values.push_back(a->data());
      lengths.push_back(static_cast<int>(a->size()));
      formats.push_back(1);
    }
    return pg::result_ptr{PQexecPrepared(conn, stmt, static_cast<int>(args.size()),
                                         values.data(), lengths.data(), formats.data(),
                                         1)};
  }

  static bool ok(const pg::result_ptr& res, ExecStatusType want) {
    return res && PQresultStatus(res.get()) == want;
  }

  // The rows an INSERT, UPDATE or DELETE changed; unreadable counts as 1 (it
  // may notify; the feed then finds the count wrong and invalidates).
  static uint64_t rows_changed(const pg::result_ptr& res) {
    std::string_view text{PQcmdTuples(res.get())};
    uint64_t n = 0;
    if (std::from_chars(text.data(), text.data() + text.size(), n).ec != std::errc{})
      n = 1;
    return n;
  }

  // Borrows a reader and runs `stmt`; a lost connection that had sat idle
  // is replaced once (reads change nothing, so a retry is harmless).
  caf::expected<pg::result_ptr> read(const char* what, const char* stmt,
                                     const std::vector<const std::string*>& args) {
    for (int attempt = 0;; ++attempt) {
      std::string why;
      auto lease = readers->borrow(why);
      if (!lease) return fail(what, why);
      auto res = run(lease->get(), stmt, args);
      if (ok(res, PGRES_TUPLES_OK)) return res;
      auto detail = pg::describe(lease->get(), res.get(), params);
      if (pg::lost(lease->get(), res.get())) {
        lease->discard();
        if (attempt == 0 && !lease->fresh()) continue;
      }
      return fail(what, detail);
    }
  }

  caf::error write(const std::vector<const std::string*>& put_keys,
                   const std::vector<const std::string*>& put_values,
                   const std::vector<const std::string*>& deletes) {
    std::lock_guard<std::mutex> guard{write_mtx};
    std::optional<pg::pool::lease> lease;
    for (int attempt = 0;; ++attempt) {
      std::string why;
      lease.reset(); // a discarded connection goes back before the next borrow
      lease = writer->borrow(why);
      if (!lease) return fail("write_batch could not connect, nothing was written", why);
      pg::result_ptr begin{PQexec(lease->get(), "BEGIN")};
      if (ok(begin, PGRES_COMMAND_OK)) break;
      auto detail = pg::describe(lease->get(), begin.get(), params);
      if (pg::lost(lease->get(), begin.get())) {
        lease->discard();
        // Nothing was sent but BEGIN: a connection that sat idle through a
        // server restart gets one fresh try.
        if (attempt == 0 && !lease->fresh()) continue;
      }
      return fail("write_batch could not begin, nothing was written", detail);
    }
    PGconn* conn = lease->get();
    auto abort = [&](const char* what, const pg::result_ptr& res) {
      auto detail = pg::describe(conn, res.get(), params);
      auto code = pg::refused(res.get()) ? errc::store_refused : errc::store_failure;
      if (pg::lost(conn, res.get()))
        lease->discard(); // the server rolls back
      else
        pg::result_ptr{PQexec(conn, "ROLLBACK")};
      return fail(what, detail, code);
    };
    uint64_t xid = 0;
    {
      auto res = run(conn, "k_xid", {});
      const char* text = ok(res, PGRES_TUPLES_OK) && PQntuples(res.get()) == 1
                           ? PQgetvalue(res.get(), 0, 0)
                           : nullptr;
      auto len = text ? static_cast<size_t>(PQgetlength(res.get(), 0, 0)) : 0;
      if (!text || std::from_chars(text, text + len, xid).ec != std::errc{})
        return abort("write_batch could not read its transaction id, nothing was written",
                     res);
    }
    uint64_t rows = 0;
    if (!put_keys.empty()) {
      auto keys = pg::bytea_array(put_keys);
      auto values = pg::bytea_array(put_values);
      auto res = run(conn, "k_upsert", {&keys, &values});
      if (!ok(res, PGRES_COMMAND_OK))
        return abort("write_batch failed writing its puts, nothing was written", res);
      rows += rows_changed(res);
    }
    if (!deletes.empty()) {
      auto keys = pg::bytea_array(deletes);
      auto res = run(conn, "k_delete", {&keys});
      if (!ok(res, PGRES_COMMAND_OK))
        return abort("write_batch failed writing its deletes, nothing was written", res);
      rows += rows_changed(res);
    }
    // A transaction that changed no row sends no notification: registering
    // it would only take a place in the registry until it is pushed out.
    const bool notifies = rows > 0;
    // Registered before COMMIT: the server signals listeners inside COMMIT,
    // before its reply reaches us, so the feed may ask first (it is told
    // `pending` and asks again). With the rows changed: more in the feed's
    // group means others (a user's trigger) changed rows in it too.
    if (notifies) own->expect(xid, rows);
    pg::result_ptr commit{PQexec(conn, "COMMIT")};
    const bool committed = ok(commit, PGRES_COMMAND_OK);
    // Not committed, or maybe: the notifications (if any) count as foreign
    // and invalidate, so the cache converges whatever happened.
    if (notifies) own->resolve(xid, committed);
    if (committed) return caf::none;
    auto detail = pg::describe(conn, commit.get(), params);
    if (pg::lost(conn, commit.get())) {
      lease->discard();
      return fail("the outcome of COMMIT is unknown", detail);
    }
    // A deferred constraint or constraint trigger refuses at COMMIT (23,
    // P0001); a full NOTIFY queue (54000) fails there too, and passes.
    return fail("COMMIT failed, nothing was written", detail,
                pg::refused_at_commit(commit.get()) ? errc::store_refused
                                                    : errc::store_failure);
  }
};

postgres_store::postgres_store(std::unique_ptr<impl> p) : impl_(std::move(p)) {}

postgres_store::~postgres_store() = default;

caf::expected<std::shared_ptr<postgres_store>>
postgres_store::open(const postgres_options& opts, const std::string& table) {
  if (auto err = validate(opts)) return err;
  auto name = opts.table.empty() ? table : opts.table;
  if (auto err = check_name("table", name)) return err;
  auto params = pg::parse(opts, "karlton");
  if (!params) return params.error();
  auto d = std::make_unique<impl>();
  d->opts = opts;
  d->params = std::move(*params);
  d->name = opts.schema + "." + name;
  d->qualified = pg::quote(opts.schema) + "." + pg::quote(name);
  {
    // The table, created under a lock every karlton node takes: two nodes
    // creating it at once would otherwise collide in the catalog.
    std::string why;
    auto conn = pg::connect(d->params, why);
    if (!conn) return d->fail("cannot connect", why);
    auto ddl =
      "BEGIN; SET LOCAL client_min_messages = warning; " // no NOTICE on stderr
      "SELECT pg_advisory_xact_lock(hashtext('karlton.ddl')); "
      "CREATE TABLE IF NOT EXISTS " +
      d->qualified +
      " (key bytea PRIMARY KEY, value bytea NOT NULL, updated_at timestamptz NOT "
      "NULL DEFAULT clock_timestamp()); COMMIT";
    pg::result_ptr res{PQexec(conn.get(), ddl.c_str())};
    if (!res || PQresultStatus(res.get()) != PGRES_COMMAND_OK)
      return d->fail("cannot create the table",
                     pg::describe(conn.get(), res.get(), d->params));
    if (opts.install_trigger)
      if (auto why = pg::install_triggers(conn.get(), opts.schema, name, opts.channel);
          !why.empty())
        return d->fail("cannot install the change triggers", why);
  }
  d->retry = std::make_shared<pg::backoff>(opts.reconnect_base, opts.reconnect_max);
  auto setup = [raw = d.get()](PGconn* conn) { return raw->prepare(conn); };
  d->readers = std::make_unique<pg::pool>(d->params, opts.pool_size, opts.connect_timeout,
                                          d->retry, setup);
  d->writer =
    std::make_unique<pg::pool>(d->params, 1, opts.connect_timeout, d->retry, setup);
  std::string why;
  if (!d->writer->borrow(why) || !d->readers->borrow(why))
    return d->fail("cannot connect", why);
  return std::shared_ptr<postgres_store>{new postgres_store(std::move(d))};
}

caf::expected<std::optional<std::string>> postgres_store::load(std::string_view key) {
  std::string k{key};
  auto res = impl_->read("load failed", "k_load", {&k});
  if (!res) return res.error();
  auto* r = res->get();
  if (PQntuples(r) == 0) return std::optional<std::string>{};
  return std::optional<std::string>{
    std::string{PQgetvalue(r, 0, 0), static_cast<size_t>(PQgetlength(r, 0, 0))}};
}

caf::expected<std::vector<std::optional<std::string>>>
postgres_store::load_many(const std::vector<std::string>& keys) {
  std::vector<std::optional<std::string>> out;
  if (keys.empty()) return out;
  std::vector<const std::string*> items;
  items.reserve(keys.size());
  for (auto& k : keys)
    items.push_back(&k);
  auto array = pg::bytea_array(items);
  auto res = impl_->read("load_many failed", "k_load_many", {&array});
  if (!res) return res.error();
  auto* r = res->get();
  std::unordered_map<std::string, std::string, key_hasher> found;
  for (int i = 0; i < PQntuples(r); ++i)
    found.emplace(
      std::string{PQgetvalue(r, i, 0), static_cast<size_t>(PQgetlength(r, i, 0))},
      std::string{PQgetvalue(r, i, 1), static_cast<size_t>(PQgetlength(r, i, 1))});
  out.reserve(keys.size());
  for (auto& k : keys) {
    auto it = found.find(k);
    out.push_back(it == found.end() ? std::nullopt
                                    : std::optional<std::string>{it->second});
  }
  return out;
}

caf::error postgres_store::write_batch(const std::vector<store_write>& batch) {
  if (batch.empty()) return caf::none;
  // The last change per key: one statement may not touch a row twice, and
  // the contract says the later change of a key wins.
  std::unordered_map<std::string_view, size_t, key_hasher> last;
  for (size_t i = 0; i < batch.size(); ++i)
    last[batch[i].key] = i;
  std::vector<const std::string*> put_keys, put_values, deletes;
  for (size_t i = 0; i < batch.size(); ++i) {
    auto& w = batch[i];
    if (last[w.key] != i) continue;
    if (w.is_delete()) {
      deletes.push_back(&w.key);
    } else {
      put_keys.push_back(&w.key);
      put_values.push_back(&*w.bytes);
    }
  }
  return impl_->write(put_keys, put_values, deletes);
}

caf::expected<uint64_t> postgres_store::count() {
  std::string why;
  auto lease = impl_->readers->borrow(why);
  if (!lease) return impl_->fail("count failed", why);
  auto sql = "SELECT count(*) FROM " + impl_->qualified;
  pg::result_ptr res{PQexec(lease->get(), sql.c_str())};
  if (!impl::ok(res, PGRES_TUPLES_OK)) {
    auto detail = pg::describe(lease->get(), res.get(), impl_->params);
    if (pg::lost(lease->get(), res.get())) lease->discard();
    return impl_->fail("count failed", detail);
  }
  return std::stoull(PQgetvalue(res.get(), 0, 0));
}

std::optional<store_origin> postgres_store::origin() const {
  return store_origin{impl_->name, impl_->own};
}

caf::expected<std::string> postgres_store::trigger_sql(const postgres_options& opts,
                                                       const std::string& table) {
  auto name = opts.table.empty() ? table : opts.table;
  return pg::trigger_sql(opts.schema, name, opts.channel);
}

const std::string& postgres_store::table() const noexcept {
  return impl_->name;
}

void postgres_store::interrupt() noexcept {
  impl_->writer->cancel_lent();
  impl_->readers->cancel_lent();
}

uint32_t postgres_store::connections() const {
  return impl_->readers->open_count() + impl_->writer->open_count();
}

} // namespace karlton

#include <karlton/stores/sqlite_store.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <sqlite3.h>

#include <karlton/messages/errors.hpp>

namespace karlton {

namespace {

// Idle read connections kept for reuse. A cache reads from its loader threads
// (4 by default) and its flusher; 8 covers that with room to spare. Callers
// beyond it still get a connection of their own, closed when they are done.
constexpr size_t max_idle_readers = 8;

struct db_closer {
  void operator()(sqlite3* db) const noexcept { sqlite3_close(db); }
};
struct stmt_finalizer {
  void operator()(sqlite3_stmt* s) const noexcept { sqlite3_finalize(s); }
};
using db_ptr = std::unique_ptr<sqlite3, db_closer>;
using stmt_ptr = std::unique_ptr<sqlite3_stmt, stmt_finalizer>;

// Resets a statement when a use of it ends, however it ends: a read statement
// left unreset keeps its read transaction, and with it an old snapshot that
// stops checkpoints, open.
class stmt_use {
public:
  explicit stmt_use(sqlite3_stmt* s) noexcept : s_(s) {}
  stmt_use(const stmt_use&) = delete;
  stmt_use& operator=(const stmt_use&) = delete;
  ~stmt_use() {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
  }

private:
  sqlite3_stmt* s_;
};

// SQLite binds a null pointer as NULL, not as an empty BLOB, and an empty
// string_view may hold one.
int bind_bytes(sqlite3_stmt* s, int index, std::string_view bytes) {
  return sqlite3_bind_blob64(s, index, bytes.empty() ? "" : bytes.data(),
                             static_cast<sqlite3_uint64>(bytes.size()), SQLITE_STATIC);
}

// The blob must be fetched before its size (SQLite's documented order); an
// empty BLOB comes back as a null pointer.
std::string column_bytes(sqlite3_stmt* s, int col) {
  auto data = static_cast<const char*>(sqlite3_column_blob(s, col));
  auto size = sqlite3_column_bytes(s, col);
  return size > 0 ? std::string{data, static_cast<size_t>(size)} : std::string{};
}

// A connection's wait for a lock another connection holds, in place of
// SQLite's busy_timeout, whose sleeps `interrupt` could not cut short (nor
// can sqlite3_interrupt: the waiting statement is not running). A wait gives
// up at the timeout, or once `interrupt` was called after its call began.
struct busy_wait {
  const std::atomic<uint64_t>* interrupts = nullptr;
  std::chrono::milliseconds timeout{0};
  uint64_t started = 0; // `*interrupts` when the call began
  std::chrono::steady_clock::time_point since;
};

// SQLite's busy handler: nonzero to try the lock again, 0 to fail with BUSY.
int on_busy(void* wait, int tries) {
  using namespace std::chrono;
  auto& w = *static_cast<busy_wait*>(wait);
  if (w.interrupts->load(std::memory_order_acquire) != w.started) return 0;
  auto now = steady_clock::now();
  if (tries == 0) w.since = now;
  auto left = w.timeout - duration_cast<milliseconds>(now - w.since);
  if (left <= milliseconds::zero()) return 0;
  // Steps of a few ms: a lock is usually held for a commit's time, and
  // shutdown interrupts every 100 ms.
  std::this_thread::sleep_for(std::min(left, milliseconds{5}));
  return 1;
}

bool valid_table_name(const std::string& name) {
  auto ok = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_';
  };
  return !name.empty() && std::all_of(name.begin(), name.end(), ok);
}

// SQLite refuses to create tables named sqlite_*, whatever the case.
bool reserved_table_name(const std::string& name) {
  return sqlite3_strnicmp(name.c_str(), "sqlite_", 7) == 0;
}

} // namespace

struct sqlite_store::impl {
  struct writer {
    busy_wait wait;
    db_ptr db;
    stmt_ptr begin, commit, rollback, upsert, erase;
  };
  struct reader {
    busy_wait wait;
    db_ptr db;
    stmt_ptr begin, commit, select, count;
  };

  std::string path;
  std::string table;
  sqlite_options opts;
  // Calls of `interrupt`; before the connections, whose busy waits read it,
  // so that it outlives them.
  std::atomic<uint64_t> interrupts{0};
  std::mutex write_mtx;
  writer w; // guarded by write_mtx
  std::mutex readers_mtx;
  std::vector<std::unique_ptr<reader>> idle; // guarded by readers_mtx

  caf::error fail(sqlite3* db, const std::string& what,
                  errc code = errc::store_failure) const {
    return make_error(code, "sqlite store " + path + ", table " + table + ": " + what +
                              ": " + sqlite3_errmsg(db));
  }

  // Creates the file only for the write connection, which opens first.
  // `wait` is the connection's, and must outlive it.
  caf::expected<db_ptr> connect(bool create, busy_wait& wait) const {
    // NOMUTEX: each connection is used by one thread at a time (the write
    // mutex, the reader pool), so SQLite's own per-connection lock is waste.
    int flags =
      SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (create ? SQLITE_OPEN_CREATE : 0);
    sqlite3* raw = nullptr;
    int rc = sqlite3_open_v2(path.c_str(), &raw, flags, nullptr);
    db_ptr db{raw}; // closed even when the open failed
    if (rc != SQLITE_OK) {
      if (!db)
        return make_error(errc::store_failure,
                          "sqlite store " + path + ": out of memory");
      return fail(db.get(), "cannot open the file");
    }
    wait.interrupts = &interrupts;
    wait.timeout = opts.busy_timeout;
    wait.started = interrupts.load(std::memory_order_acquire);
    sqlite3_busy_handler(db.get(), on_busy, &wait);
    return db;
  }

  caf::expected<stmt_ptr> prepare(sqlite3* db, const std::string& sql) const {
    sqlite3_stmt* s = nullptr;
    int rc = sqlite3_prepare_v3(db, sql.c_str(), static_cast<int>(sql.size() + 1),
                                SQLITE_PREPARE_PERSISTENT, &s, nullptr);
    stmt_ptr result{s};
    if (rc != SQLITE_OK) return fail(db, "cannot prepare \"" + sql + "\"");
    return result;
  }

  caf::error exec(sqlite3* db, const std::string& sql) const {
    if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK)
      return fail(db, "\"" + sql + "\" failed");
    return caf::none;
  }

  // Runs a statement that returns no rows.
  caf::error step_done(sqlite3* db, sqlite3_stmt* s, const std::string& what) const {
    stmt_use use{s};
    if (sqlite3_step(s) != SQLITE_DONE) return fail(db, what);
    return caf::none;
  }

  // The name quoted, so that reserved words and leading digits are fine.
  std::string quoted_table() const { return "\"" + table + "\""; }

  caf::error open_writer() {
    auto db = connect(true, w.wait);
    if (!db) return std::move(db.error());
    w.db = std::move(*db);
    auto* d = w.db.get();
    // journal_mode answers with the mode in force: a file system without
    // shared memory, for one, keeps the old mode, and reads would then wait
    // for writes.
    auto mode = prepare(d, "PRAGMA journal_mode=WAL");
    if (!mode) return std::move(mode.error());
    {
      stmt_use use{mode->get()};
      if (sqlite3_step(mode->get()) != SQLITE_ROW) return fail(d, "cannot switch to WAL");
      auto m = column_bytes(mode->get(), 0);
      if (sqlite3_stricmp(m.c_str(), "wal") != 0)
        return make_error(errc::store_failure,
                          "sqlite store " + path +
                            ": cannot switch to WAL, journal_mode is " + m);
    }
    if (auto err =
          exec(d, opts.durable ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL"))
      return err;
    if (auto err = exec(d, "CREATE TABLE IF NOT EXISTS " + quoted_table() +
                             "(key BLOB PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID"))
      return err;
    // IMMEDIATE takes the write lock at BEGIN, where busy_timeout applies; a
    // deferred BEGIN could fail at its first write with SQLITE_BUSY instead.
    std::pair<stmt_ptr*, std::string> stmts[] = {
      {&w.begin, "BEGIN IMMEDIATE"},
      {&w.commit, "COMMIT"},
      {&w.rollback, "ROLLBACK"},
      {&w.upsert, "INSERT INTO " + quoted_table() +
                    "(key, value) VALUES(?1, ?2)"
                    " ON CONFLICT(key) DO UPDATE SET value = excluded.value"},
      {&w.erase, "DELETE FROM " + quoted_table() + " WHERE key = ?1"},
    };
    for (auto& [target, sql] : stmts) {
      auto s = prepare(d, sql);
      if (!s) return std::move(s.error());
      *target = std::move(*s);
    }
    return caf::none;
  }

  caf::expected<std::unique_ptr<reader>> open_reader() {
    auto r = std::make_unique<reader>();
    auto db = connect(false, r->wait);
    if (!db) return std::move(db.error());
    r->db = std::move(*db);
    if (auto err = exec(r->db.get(), "PRAGMA query_only=ON")) return err;
    std::pair<stmt_ptr*, std::string> stmts[] = {
      {&r->begin, "BEGIN"},
      {&r->commit, "COMMIT"},
      {&r->select, "SELECT value FROM " + quoted_table() + " WHERE key = ?1"},
      {&r->count, "SELECT count(*) FROM " + quoted_table()},
    };
    for (auto& [target, sql] : stmts) {
      auto s = prepare(r->db.get(), sql);
      if (!s) return std::move(s.error());
      *target = std::move(*s);
    }
    return r;
  }

  caf::expected<std::unique_ptr<reader>> take_reader() {
    {
      std::lock_guard<std::mutex> guard{readers_mtx};
      if (!idle.empty()) {
        auto r = std::move(idle.back());
        idle.pop_back();
        return r;
      }
    }
    return open_reader(); // outside the lock: opening reads the schema
  }

  void give_back(std::unique_ptr<reader> r) {
    // A connection still inside a transaction (its COMMIT failed) is closed,
    // not reused: its next BEGIN would fail.
    if (!sqlite3_get_autocommit(r->db.get())) return;
    std::lock_guard<std::mutex> guard{readers_mtx};
    if (idle.size() < max_idle_readers) idle.push_back(std::move(r));
  }

  // Runs `f(reader&)` on a borrowed read connection.
  template <class F>
  auto with_reader(F f) -> decltype(f(std::declval<reader&>())) {
    auto r = take_reader();
    if (!r) return std::move(r.error());
    (*r)->wait.started = interrupts.load(std::memory_order_acquire);
    auto result = f(**r);
    give_back(std::move(*r));
    return result;
  }

  caf::expected<std::optional<std::string>> get(reader& r, std::string_view key) const {
    auto* s = r.select.get();
    stmt_use use{s};
    if (bind_bytes(s, 1, key) != SQLITE_OK) return fail(r.db.get(), "cannot bind a key");
    switch (sqlite3_step(s)) {
    case SQLITE_ROW:
      return std::optional<std::string>{column_bytes(s, 0)};
    case SQLITE_DONE:
      return std::optional<std::string>{};
    default:
      return fail(r.db.get(), "load failed");
    }
  }

  // Puts or deletes one change; inside the batch's transaction.
  caf::error apply(const store_write& x, size_t index, size_t total) {
    auto* s = x.is_delete() ? w.erase.get() : w.upsert.get();
    stmt_use use{s};
    int rc = bind_bytes(s, 1, x.key);
    if (rc == SQLITE_OK && !x.is_delete()) rc = bind_bytes(s, 2, *x.bytes);
    if (rc == SQLITE_OK) rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) return caf::none;
    // A constraint (a trigger's RAISE too), a value over SQLite's limits, a
    // type the table will not take: this write fails however often it goes.
    auto primary = rc & 0xff;
    bool refused = primary == SQLITE_CONSTRAINT || primary == SQLITE_TOOBIG ||
                   primary == SQLITE_MISMATCH;
    return fail(w.db.get(),
                "write_batch failed at change " + std::to_string(index + 1) + " of " +
                  std::to_string(total) + ", nothing was written",
                refused ? errc::store_refused : errc::store_failure);
  }

  // SQLite rolls back by itself after some errors (a full disk, I/O), so
  // ROLLBACK runs only if a transaction is still open.
  void roll_back() {
    if (!sqlite3_get_autocommit(w.db.get())) {
      stmt_use use{w.rollback.get()};
      sqlite3_step(w.rollback.get());
    }
  }
};

sqlite_store::sqlite_store(std::unique_ptr<impl> p) : impl_(std::move(p)) {}

sqlite_store::~sqlite_store() = default;

caf::expected<std::shared_ptr<sqlite_store>> sqlite_store::open(const std::string& path,
                                                                const std::string& table,
                                                                sqlite_options opts) {
  if (!valid_table_name(table) || reserved_table_name(table))
    return make_error(errc::invalid_option,
                      "sqlite store table name '" + table +
                        "': use letters, digits and '_' only, not starting with sqlite_");
  // Each connection to ":memory:" or "" is a database of its own, so readers
  // would never see the writer's rows: memory_store is for that.
  if (path.empty() || path == ":memory:")
    return make_error(errc::invalid_option, "sqlite store path '" + path +
                                              "': give a file name (memory_store keeps "
                                              "data in memory)");
  if (opts.busy_timeout.count() < 0)
    return make_error(errc::invalid_option, "sqlite store busy_timeout must be >= 0");
  if (!sqlite3_threadsafe())
    return make_error(errc::store_failure, "libsqlite3 was built without thread support");
  auto p = std::make_unique<impl>();
  p->path = path;
  p->table = table;
  p->opts = opts;
  if (auto err = p->open_writer()) return err;
  // One reader at once: an unreadable table fails here, not at the first load.
  auto r = p->open_reader();
  if (!r) return std::move(r.error());
  p->idle.push_back(std::move(*r));
  return std::shared_ptr<sqlite_store>{new sqlite_store(std::move(p))};
}

caf::expected<std::optional<std::string>> sqlite_store::load(std::string_view key) {
  return impl_->with_reader([&](impl::reader& r) { return impl_->get(r, key); });
}

caf::expected<std::vector<std::optional<std::string>>>
sqlite_store::load_many(const std::vector<std::string>& keys) {
  using result = caf::expected<std::vector<std::optional<std::string>>>;
  return impl_->with_reader([&](impl::reader& r) -> result {
    auto* db = r.db.get();
    if (auto err = impl_->step_done(db, r.begin.get(), "BEGIN failed")) return err;
    std::vector<std::optional<std::string>> values;
    values.reserve(keys.size());
    for (auto& key : keys) {
      auto v = impl_->get(r, key);
      if (!v) {
        impl_->step_done(db, r.commit.get(), "COMMIT failed");
        return std::move(v.error());
      }
      values.emplace_back(std::move(*v));
    }
    if (auto err = impl_->step_done(db, r.commit.get(), "COMMIT failed")) return err;
    return values;
  });
}

caf::error sqlite_store::write_batch(const std::vector<store_write>& batch) {
  if (batch.empty()) return caf::none;
  std::lock_guard<std::mutex> guard{impl_->write_mtx};
  auto& w = impl_->w;
  auto* db = w.db.get();
  w.wait.started = impl_->interrupts.load(std::memory_order_acquire);
  if (auto err = impl_->step_done(db, w.begin.get(),
                                  "write_batch could not begin, nothing was written"))
    return err;
  for (size_t i = 0; i < batch.size(); ++i) {
    if (auto err = impl_->apply(batch[i], i, batch.size())) {
      impl_->roll_back();
      return err;
    }
  }
  if (auto err =
        impl_->step_done(db, w.commit.get(), "COMMIT failed, nothing was written")) {
    // A deferred foreign key refuses at COMMIT.
    if ((sqlite3_errcode(db) & 0xff) == SQLITE_CONSTRAINT)
      err = impl_->fail(db, "COMMIT failed, nothing was written", errc::store_refused);
    impl_->roll_back();
    return err;
  }
  return caf::none;
}

void sqlite_store::interrupt() noexcept {
  impl_->interrupts.fetch_add(1, std::memory_order_acq_rel);
  // A statement running on the write connection (a large batch's insert)
  // fails at its next step; with none running this does nothing, so a later
  // batch is not hit. The connection stays open as long as the store.
  sqlite3_interrupt(impl_->w.db.get());
}

caf::expected<uint64_t> sqlite_store::count() {
  return impl_->with_reader([&](impl::reader& r) -> caf::expected<uint64_t> {
    auto* s = r.count.get();
    stmt_use use{s};
    if (sqlite3_step(s) != SQLITE_ROW) return impl_->fail(r.db.get(), "count failed");
    return static_cast<uint64_t>(sqlite3_column_int64(s, 0));
  });
}

const std::string& sqlite_store::path() const noexcept {
  return impl_->path;
}

const std::string& sqlite_store::table() const noexcept {
  return impl_->table;
}

} // namespace karlton

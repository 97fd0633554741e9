// The stores behind write-through and write-back: the `store` contract on
// memory_store and sqlite_store, SQLite's transactions, files and threads, and
// the failure-injecting decorators. Some cases open the SQLite file
// themselves (a trigger, a second writer), so this file links libsqlite3.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <sqlite3.h>

#include "stores/faulty_store.hpp"
#include "stores/store_contract.hpp"
#include "support/node_process.hpp"
#include "support/temp_dir.hpp"
#include <karlton/messages/errors.hpp>
#include <karlton/stores/memory_store.hpp>
#include <karlton/stores/own_commits.hpp>
#include <karlton/stores/sqlite_store.hpp>

using namespace karlton;
using namespace std::chrono_literals;
using namespace karlton::testing::contract;

namespace {

// No fsync per commit: these tests do not pull the power cord.
sqlite_options fast() {
  sqlite_options o;
  o.durable = false;
  return o;
}

std::shared_ptr<sqlite_store> open_store(const std::string& path,
                                         const std::string& table = "t",
                                         sqlite_options opts = {}) {
  auto s = sqlite_store::open(path, table, opts);
  if (!s) FAIL(describe(s.error()));
  return *s;
}

// A connection of the test's own to the same file.
struct raw_db {
  sqlite3* db = nullptr;
  explicit raw_db(const std::string& path) {
    REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  }
  ~raw_db() { sqlite3_close(db); }
  void exec(const std::string& sql) {
    if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK)
      FAIL(sql + ": " + sqlite3_errmsg(db));
  }
  std::string text(const std::string& sql) {
    sqlite3_stmt* s = nullptr;
    REQUIRE(sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr) == SQLITE_OK);
    std::string out;
    if (sqlite3_step(s) == SQLITE_ROW)
      out = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
    sqlite3_finalize(s);
    return out;
  }
};

} // namespace

TEST_CASE("a put can be loaded back and a delete removes it", "[store]") {
  SECTION("memory_store") {
    memory_store s;
    check_round_trip(s);
  }
  SECTION("sqlite_store") {
    testing::temp_dir dir{"store"};
    check_round_trip(*open_store(dir.file("cache.db")));
  }
}

TEST_CASE("load_many answers in the order of its keys, nothing for a missing one",
          "[store]") {
  SECTION("memory_store") {
    memory_store s;
    check_load_many(s);
  }
  SECTION("sqlite_store") {
    testing::temp_dir dir{"store"};
    check_load_many(*open_store(dir.file("cache.db")));
  }
}

TEST_CASE("within one batch the later change of a key wins", "[store]") {
  SECTION("memory_store") {
    memory_store s;
    check_later_change_wins(s);
  }
  SECTION("sqlite_store") {
    testing::temp_dir dir{"store"};
    check_later_change_wins(*open_store(dir.file("cache.db")));
  }
}

TEST_CASE("memory_store counts its rows and peeks without a load", "[store]") {
  memory_store s;
  CHECK(s.size() == 0);
  REQUIRE_FALSE(s.write_batch({put("a", "1"), put("b", "2"), put("a", "3")}));
  CHECK(s.size() == 2);
  CHECK(s.peek("a") == "3");
  CHECK(s.peek("c") == std::nullopt);
  REQUIRE_FALSE(s.erase("b"));
  CHECK(s.size() == 1);
}

TEST_CASE("a batch that fails part way through leaves nothing behind", "[store]") {
  testing::temp_dir dir{"store"};
  auto file = dir.file("cache.db");
  auto s = open_store(file);
  // RAISE(ABORT) undoes only the failing statement: the store's ROLLBACK must
  // undo the changes before it.
  auto text = check_failed_batch_leaves_nothing(*s, [&] {
    raw_db{file}.exec("CREATE TRIGGER poison BEFORE INSERT ON t"
                      " WHEN NEW.key = CAST('bad' AS BLOB)"
                      " BEGIN SELECT RAISE(ABORT, 'poisoned key'); END");
  });
  CHECK(text.find(file) != std::string::npos);
  CHECK(text.find("change 3 of 4") != std::string::npos);
  CHECK(s->count() == 2u);
}

TEST_CASE("rows survive closing and reopening the file", "[store]") {
  testing::temp_dir dir{"store"};
  auto file = dir.file("cache.db");
  {
    auto s = open_store(file, "users");
    REQUIRE_FALSE(s->write_batch({put("user_123", R"({"name":"John"})"), put("x", "y")}));
    REQUIRE_FALSE(s->erase("x"));
  }
  raw_db raw{file};
  CHECK(raw.text("PRAGMA journal_mode") == "wal");
  CHECK(raw.text("SELECT sql FROM sqlite_master WHERE name = 'users'")
          .find("WITHOUT ROWID") != std::string::npos);
  auto s = open_store(file, "users");
  CHECK(get(*s, "user_123") == R"({"name":"John"})");
  CHECK(get(*s, "x") == std::nullopt);
  CHECK(s->count() == 1u);
}

TEST_CASE("two caches share a file in tables of their own", "[store]") {
  testing::temp_dir dir{"store"};
  auto file = dir.file("shared.db");
  auto users = open_store(file, "users");
  auto orders = open_store(file, "orders");
  REQUIRE_FALSE(users->write_batch({put("k", "user"), put("only_users", "1")}));
  REQUIRE_FALSE(orders->write_batch({put("k", "order")}));
  CHECK(get(*users, "k") == "user");
  CHECK(get(*orders, "k") == "order");
  CHECK(get(*orders, "only_users") == std::nullopt);
  REQUIRE_FALSE(orders->erase("k"));
  CHECK(get(*users, "k") == "user");
  CHECK(users->count() == 2u);
  CHECK(orders->count() == 0u);
}

TEST_CASE("a bad table name or path is refused and named", "[store][errors]") {
  testing::temp_dir dir{"store"};
  auto file = dir.file("cache.db");
  for (std::string name : {"", "users;drop", "has space", "dash-ed", "quo\"te",
                           "na\xc3\xafve", "sqlite_master", "SQLITE_x"}) {
    auto s = sqlite_store::open(file, name);
    REQUIRE_FALSE(s);
    CHECK(s.error() == errc::invalid_option);
    CHECK(describe(s.error()).find("'" + name + "'") != std::string::npos);
  }
  // Quoted in SQL, so a keyword or a leading digit is a fine name.
  for (std::string name : {"select", "9lives", "_x_1"})
    CHECK(open_store(file, name)->count() == 0u);
  for (std::string path : {"", ":memory:"}) {
    auto s = sqlite_store::open(path, "t");
    REQUIRE_FALSE(s);
    CHECK(s.error() == errc::invalid_option);
  }
  auto missing = sqlite_store::open(dir.file("no/such/dir.db"), "t");
  REQUIRE_FALSE(missing);
  CHECK(missing.error() == errc::store_failure);
  CHECK(describe(missing.error()).find("no/such/dir.db") != std::string::npos);
}

TEST_CASE("a node refuses two caches whose store tables differ only in case",
          "[store][node]") {
  // SQLite's table names ignore case: "Users" wrote what "users" read.
  testing::temp_dir dir{"store-case"};
  testing::node_process node{
    "case",
    KARLTON_NODE,
    {"--karlton.cluster.port=0", "--karlton.cluster.secret=s", "--node.stats-interval=0",
     "--node.store=" + dir.file("s.db"), R"(--node.caches=["Users","users"])"}};
  CHECK_FALSE(node.ready());
  auto status = node.wait(std::chrono::seconds{10});
  REQUIRE(status);
  CHECK(WIFEXITED(*status));
  CHECK(WEXITSTATUS(*status) == 2);
  CHECK(node.log().find("'Users' and 'users' would share the store table") !=
        std::string::npos);
}

TEST_CASE("a node refuses a store that is neither a URI nor a file name, and PostgreSQL "
          "options without a PostgreSQL store",
          "[store][node]") {
  // Before, a conninfo string became a SQLite file named after it, password
  // and all, and karlton.postgres.* without a postgresql:// store did nothing.
  std::vector<std::pair<std::string, std::string>> cases{
    {"--node.store=host=127.0.0.1 password=Sekr1t", "option node.store"},
    {"--node.store=mysql://db/x", "option node.store"},
    // A URI without its scheme made a SQLite file named app:Sekr1t@localhost.
    {"--node.store=app:Sekr1t@localhost", "option node.store"},
    {"--node.store=app:Sekr1t@dbhost/db", "option node.store"},
    {"--karlton.postgres.pool-size=3", "option karlton.postgres"}};
  for (const auto& [arg, said] : cases) {
    testing::node_process node{"bad-store",
                               KARLTON_NODE,
                               {"--karlton.cluster.port=0", "--karlton.cluster.secret=s",
                                "--node.stats-interval=0", arg}};
    CHECK_FALSE(node.ready());
    auto status = node.wait(std::chrono::seconds{10});
    REQUIRE(status);
    CHECK(WIFEXITED(*status));
    CHECK(WEXITSTATUS(*status) == 2);
    INFO(node.log());
    CHECK(node.log().find(said) != std::string::npos);
    CHECK(node.log().find("Sekr1t") == std::string::npos);
  }
}

TEST_CASE("reads are not held up by a write transaction in progress", "[store]") {
  testing::temp_dir dir{"store"};
  auto file = dir.file("cache.db");
  // With no busy wait at all, a read that had to wait for the writer would
  // fail at once instead of taking a while: no timing in this test.
  auto opts = fast();
  opts.busy_timeout = 0ms;
  auto s = open_store(file, "t", opts);
  REQUIRE_FALSE(s->write_batch({put("kept", "old")}));
  raw_db other{file};
  other.exec("BEGIN IMMEDIATE");
  other.exec("INSERT INTO t VALUES (CAST('new' AS BLOB), CAST('1' AS BLOB))");
  other.exec(
    "UPDATE t SET value = CAST('changed' AS BLOB) WHERE key = CAST('kept' AS BLOB)");
  CHECK(get(*s, "kept") == "old");
  CHECK(get(*s, "new") == std::nullopt);
  auto both = s->load_many({"kept", "new"});
  REQUIRE(both);
  CHECK(*both == std::vector<std::optional<std::string>>{"old", std::nullopt});
  CHECK(s->count() == 1u);
  // A write does wait for the file's write lock; with no busy wait it fails,
  // naming the file, and writes nothing.
  auto err = s->write_batch({put("mine", "x")});
  REQUIRE(err == errc::store_failure);
  CHECK(describe(err).find(file) != std::string::npos);
  other.exec("COMMIT");
  CHECK(get(*s, "kept") == "changed");
  CHECK(get(*s, "new") == "1");
  CHECK(get(*s, "mine") == std::nullopt);
  REQUIRE_FALSE(s->write_batch({put("mine", "x")}));
}

TEST_CASE("interrupt ends a write waiting for the file's lock, and only that one",
          "[store]") {
  testing::temp_dir dir{"store"};
  auto file = dir.file("cache.db");
  auto opts = fast();
  opts.busy_timeout = 60s; // far past the 10 s the test waits for the interrupt
  auto s = open_store(file, "t", opts);
  raw_db other{file};
  other.exec("BEGIN IMMEDIATE"); // holds the write lock
  auto write =
    std::async(std::launch::async, [&] { return s->write_batch({put("k", "v")}); });
  // Shutdown's way: interrupt until the call returns. An interrupt before the
  // write began would not end it, so one call is not enough; bounded at 10 s.
  for (int i = 0; i < 1000; ++i) {
    s->interrupt();
    if (write.wait_for(10ms) == std::future_status::ready) break;
  }
  REQUIRE(write.wait_for(0s) == std::future_status::ready);
  CHECK(write.get() == errc::store_failure);
  other.exec("COMMIT");
  CHECK(get(*s, "k") == std::nullopt);
  REQUIRE_FALSE(s->write_batch({put("k", "v")})); // a later call is not hit
  CHECK(get(*s, "k") == "v");
}

TEST_CASE("readers on several threads see whole batches while writers share the file",
          "[store][threads]") {
  testing::temp_dir dir{"store"};
  auto file = dir.file("cache.db");
  auto s = open_store(file, "t", fast());
  auto neighbour = open_store(file, "n", fast());
  constexpr int n_keys = 50;
  constexpr int rounds = 200;
  std::vector<std::string> keys;
  for (int i = 0; i < n_keys; ++i)
    keys.push_back("k" + std::to_string(i));
  std::atomic<bool> done{false};
  std::atomic<int> errors{0}, torn{0}, backwards{0}, reads{0};
  // Each round writes every key with the round's number in one batch.
  auto writer = [&](sqlite_store& target) {
    for (int r = 1; r <= rounds; ++r) {
      std::vector<store_write> batch;
      for (auto& k : keys)
        batch.push_back(put(k, std::to_string(r)));
      if (target.write_batch(batch)) ++errors;
    }
  };
  auto reader = [&] {
    int last = 0;
    bool finished = false;
    while (!finished) {
      finished = done.load(); // one more read after the writers are done
      auto v = s->load_many(keys);
      auto one = s->load(keys.back());
      if (!v || !one) {
        ++errors;
        continue;
      }
      int round = (*v)[0] ? std::stoi(*(*v)[0]) : 0;
      for (auto& x : *v)
        if ((x ? std::stoi(*x) : 0) != round) ++torn;
      if (round < last || (*one ? std::stoi(**one) : 0) < round) ++backwards;
      last = round;
      ++reads;
    }
  };
  std::vector<std::thread> threads;
  for (int i = 0; i < 3; ++i)
    threads.emplace_back(reader);
  std::thread w1{writer, std::ref(*s)};
  std::thread w2{writer, std::ref(*neighbour)};
  w1.join();
  w2.join();
  done = true;
  for (auto& t : threads)
    t.join();
  CHECK(errors == 0);
  CHECK(torn == 0);
  CHECK(backwards == 0);
  CHECK(reads >= 3);
  auto last = s->load_many(keys);
  REQUIRE(last);
  for (auto& x : *last)
    CHECK(x == std::to_string(rounds));
  CHECK(s->count() == uint64_t{n_keys});
  CHECK(neighbour->count() == uint64_t{n_keys});
}

TEST_CASE("faulty_store fails the requested fraction of batches and they leave no trace",
          "[store][errors]") {
  constexpr int n = 10'000;
  auto run = [&](uint64_t seed) {
    auto inner = std::make_shared<memory_store>();
    faulty_store f{inner, 0.3, seed};
    std::vector<bool> failed;
    for (int i = 0; i < n; ++i) {
      auto err = f.write_batch({put("k" + std::to_string(i), "v"), put("all", "v")});
      if (err) CHECK(err == errc::store_failure);
      failed.push_back(static_cast<bool>(err));
    }
    CHECK(f.failed_batches() + f.passed_batches() == uint64_t{n});
    // 3000 expected; the binomial's standard deviation is 46, so +-200 is
    // more than 4 of them (and the seed is fixed anyway).
    CHECK(f.failed_batches() > 2800);
    CHECK(f.failed_batches() < 3200);
    CHECK(inner->size() == f.passed_batches() + 1);
    int traces = 0;
    for (int i = 0; i < n; ++i)
      if (inner->peek("k" + std::to_string(i)).has_value() == failed[i]) ++traces;
    CHECK(traces == 0);
    return failed;
  };
  auto first = run(42);
  CHECK(run(42) == first);
  CHECK(run(43) != first);
}

TEST_CASE("faulty_store passes everything at 0, nothing at 1, and can fail loads",
          "[store][errors]") {
  auto inner = std::make_shared<memory_store>();
  REQUIRE_FALSE(inner->write_batch({put("a", "1")}));
  faulty_store never{inner, 0.0, 1};
  faulty_store always{inner, 1.0, 1};
  for (int i = 0; i < 100; ++i) {
    CHECK_FALSE(never.write_batch({put("a", "1")}));
    CHECK(always.write_batch({put("b", "1")}) == errc::store_failure);
  }
  CHECK(never.passed_batches() == 100u);
  CHECK(always.failed_batches() == 100u);
  CHECK(inner->peek("b") == std::nullopt);
  CHECK(get(always, "a") == "1");
  faulty_store loads{inner, 0.0, 7, 0.5};
  int failed = 0;
  for (int i = 0; i < 1000; ++i) {
    caf::error err;
    if (i % 2) {
      auto v = loads.load("a");
      if (!v) err = v.error();
    } else {
      auto v = loads.load_many({"a"});
      if (!v) err = v.error();
    }
    if (err) {
      CHECK(err == errc::store_failure);
      ++failed;
    }
  }
  CHECK(loads.failed_loads() == uint64_t(failed));
  CHECK(failed > 400);
  CHECK(failed < 600);
  CHECK(loads.failed_batches() == 0u);
}

TEST_CASE("slow_store waits at least its delay, then delegates", "[store]") {
  auto inner = std::make_shared<memory_store>();
  slow_store s{inner, 2ms, 1ms};
  auto start = std::chrono::steady_clock::now();
  REQUIRE_FALSE(s.write_batch({put("a", "1")}));
  auto wrote = std::chrono::steady_clock::now();
  CHECK(get(s, "a") == "1");
  auto loaded = std::chrono::steady_clock::now();
  // Lower bounds only: sleeping guarantees them, a busy machine does not
  // break them.
  CHECK(wrote - start >= 2ms);
  CHECK(loaded - wrote >= 1ms);
  CHECK(inner->peek("a") == "1");
}

namespace {

// A store in memory that says where its rows live and counts interrupts, as
// the PostgreSQL store does (origin: its change feed; interrupt: shutdown).
class store_with_origin final : public store {
public:
  memory_store rows;
  std::shared_ptr<own_commits> own = std::make_shared<own_commits>();
  std::atomic<int> interrupts{0};
  caf::expected<std::optional<std::string>> load(std::string_view key) override {
    return rows.load(key);
  }
  caf::expected<std::vector<std::optional<std::string>>>
  load_many(const std::vector<std::string>& keys) override {
    return rows.load_many(keys);
  }
  caf::error write_batch(const std::vector<store_write>& batch) override {
    return rows.write_batch(batch);
  }
  std::optional<store_origin> origin() const override {
    return store_origin{"public.users", own};
  }
  void interrupt() noexcept override { ++interrupts; }
};

} // namespace

TEST_CASE("a decorated store keeps its origin and its interrupt, and an erase passes the "
          "decorator's write_batch",
          "[store]") {
  auto inner = std::make_shared<store_with_origin>();
  faulty_store always{inner, 1.0, 1};
  slow_store slow{inner, 0ms};
  for (store* decorated : {static_cast<store*>(&always), static_cast<store*>(&slow)}) {
    auto where = decorated->origin();
    REQUIRE(where);
    CHECK(where->table == "public.users");
    CHECK(where->own == inner->own);
  }
  always.interrupt();
  slow.interrupt();
  CHECK(inner->interrupts == 2);
  REQUIRE_FALSE(inner->write_batch({put("a", "1")}));
  CHECK(always.erase("a") == errc::store_failure); // failed as a batch: nothing erased
  CHECK(always.failed_batches() == 1u);
  CHECK(inner->rows.peek("a") == "1");
  CHECK_FALSE(slow.erase("a"));
  CHECK(inner->rows.peek("a") == std::nullopt);
}

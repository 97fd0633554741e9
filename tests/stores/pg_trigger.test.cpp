// The change triggers postgres_store installs (stores/pg_trigger_sql.*), on a
// private server: what a plain LISTEN connection receives for each kind of
// change, every payload read by parse_payload, and postgres_store's own
// transactions recognised by their xid (docs/plans/postgres.md §2).
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <string>
#include <vector>

#include <libpq-fe.h>
#include <poll.h>

#include "stores/pg_connection.hpp"
#include "stores/pg_payload.hpp"
#include "stores/pg_trigger_sql.hpp"
#include "support/require_postgres.hpp"
#include <karlton/messages/errors.hpp>
#include <karlton/stores/own_commits.hpp>
#include <karlton/stores/postgres_store.hpp>

using namespace karlton;
using namespace std::chrono_literals;
using karlton::testing::pg_server;
using kind = pg_change::kind;

namespace {

// A connection of the test's own: the writer behind the cache's back, or the
// listener.
struct raw_conn {
  pg::conn_ptr conn;

  explicit raw_conn(const pg_server& srv) : conn{PQconnectdb(srv.uri().c_str())} {
    REQUIRE(PQstatus(conn.get()) == CONNECTION_OK);
  }

  // Runs `sql`; the first column of the last result's first row, if any.
  std::string exec(const std::string& sql) {
    pg::result_ptr res{PQexec(conn.get(), sql.c_str())};
    auto status = PQresultStatus(res.get());
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK)
      FAIL(sql << ": " << PQresultErrorMessage(res.get()));
    if (status == PGRES_TUPLES_OK && PQntuples(res.get()) > 0)
      return PQgetvalue(res.get(), 0, 0);
    return {};
  }

  // Runs `sql`, which must fail; its message.
  std::string refused(const std::string& sql) {
    pg::result_ptr res{PQexec(conn.get(), sql.c_str())};
    auto status = PQresultStatus(res.get());
    CHECK(status != PGRES_COMMAND_OK);
    CHECK(status != PGRES_TUPLES_OK);
    return PQresultErrorMessage(res.get());
  }
};

// A LISTEN connection on karlton's default channel.
struct listener : raw_conn {
  explicit listener(const pg_server& srv) : raw_conn{srv} {
    exec("LISTEN karlton_changes");
  }

  // Everything committed before the call, in the order received: a NOTIFY
  // of its own goes last in the queue (notifications are delivered in commit
  // order), so reading up to it reads everything before it. Each payload
  // must parse.
  std::vector<pg_change> drain() {
    exec("NOTIFY karlton_changes, 'R zz.barrier'");
    std::vector<pg_change> out;
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    for (;;) {
      while (PGnotify* n = PQnotifies(conn.get())) {
        std::string payload = n->extra;
        PQfreemem(n);
        auto c = parse_payload(payload);
        if (!c) FAIL(payload << ": " << describe(c.error()));
        if (c->what == kind::repair && c->table == "zz.barrier") return out;
        out.push_back(std::move(*c));
      }
      REQUIRE(std::chrono::steady_clock::now() < deadline);
      pollfd p{PQsocket(conn.get()), POLLIN, 0};
      poll(&p, 1, 100);
      REQUIRE(PQconsumeInput(conn.get()) == 1);
    }
  }
};

postgres_options options_for(const pg_server& srv) {
  postgres_options o;
  o.uri = srv.uri();
  return o; // install_trigger is the default
}

std::shared_ptr<postgres_store> open_store(const pg_server& srv,
                                           const std::string& table) {
  auto s = postgres_store::open(options_for(srv), table);
  if (!s) FAIL(describe(s.error()));
  return *s;
}

// The changes of one transaction, as the feed would group them.
struct group {
  uint64_t xid = 0;
  std::vector<std::string> keys; // row changes in seq order
  std::vector<uint64_t> ends;    // the counts of its end markers
};

// Checks the shape every transaction's notifications have: one xid, seqs
// 1..n without a gap, an end closing n last.
group one_group(const std::vector<pg_change>& changes) {
  group g;
  REQUIRE_FALSE(changes.empty());
  g.xid = changes.front().xid;
  uint64_t seq = 0;
  for (auto& c : changes) {
    CHECK(c.xid == g.xid);
    if (c.what == kind::row || c.what == kind::long_key) {
      CHECK(c.seq == ++seq);
      if (c.what == kind::row) {
        CHECK(c.table == "public.users");
        g.keys.push_back(c.key);
      } else {
        g.keys.push_back("<long>");
      }
    } else if (c.what == kind::end) {
      CHECK(c.seq == seq);
      g.ends.push_back(c.seq);
      // The commit time is the server's clock, this host's clock here.
      auto now_us = static_cast<int64_t>(std::time(nullptr)) * 1'000'000;
      CHECK(c.commit_us > now_us - 600'000'000);
      CHECK(c.commit_us < now_us + 600'000'000);
    }
  }
  CHECK(changes.back().what == kind::end);
  return g;
}

using keys = std::vector<std::string>;

} // namespace

TEST_CASE("the triggers notify each changed key with its transaction's xid, and "
          "COMMIT sends one end with the count",
          "[pg_trigger]") {
  if (!testing::require_postgres()) return;
  pg_server srv{"trigger-rows"};
  KARLTON_REQUIRE_SERVER(srv);
  open_store(srv, "users");
  listener l{srv};
  raw_conn w{srv};

  // insert: one row per key, in statement order.
  w.exec("BEGIN");
  auto xid = std::stoull(w.exec("SELECT pg_current_xact_id()::text"));
  w.exec("INSERT INTO users(key, value) VALUES ('a', '1'), ('b', '2'), ('', '3')");
  w.exec("COMMIT");
  auto g = one_group(l.drain());
  CHECK(g.xid == xid);
  CHECK(g.keys == keys{"a", "b", ""});
  CHECK(g.ends == std::vector<uint64_t>{3});

  // update of the value: the key once; a key changed twice: twice (seq
  // keeps NOTIFY from folding the identical payloads).
  w.exec("BEGIN; UPDATE users SET value = 'x' WHERE key = 'a'; "
         "UPDATE users SET value = 'y' WHERE key = 'a'; COMMIT");
  g = one_group(l.drain());
  CHECK(g.keys == keys{"a", "a"});
  CHECK(g.ends == std::vector<uint64_t>{2});

  // a key change: the old key and the new one.
  w.exec("UPDATE users SET key = 'c' WHERE key = 'b'");
  g = one_group(l.drain());
  CHECK(g.keys == keys{"b", "c"});

  // delete; bytes that are not text arrive as they are.
  w.exec("INSERT INTO users(key, value) VALUES ('\\x00ff0a'::bytea, '1')");
  w.exec("DELETE FROM users WHERE key IN ('a', '\\x00ff0a'::bytea)");
  auto both = l.drain();
  REQUIRE(both.size() == 5); // r e, then r r e
  CHECK(one_group({both[0], both[1]}).keys == keys{std::string{"\0\xff\n", 3}});
  g = one_group({both[2], both[3], both[4]});
  std::sort(g.keys.begin(), g.keys.end()); // in the order the scan found them
  CHECK(g.keys == keys{std::string{"\0\xff\n", 3}, "a"});

  // A transaction that changes nothing sends nothing; one rolled back neither.
  w.exec("UPDATE users SET value = 'z' WHERE key = 'nosuch'");
  w.exec("BEGIN; DELETE FROM users; ROLLBACK");
  CHECK(l.drain().empty());
}

TEST_CASE("a key over 3,800 bytes notifies long_key, a TRUNCATE truncate, "
          "karlton_repair repair",
          "[pg_trigger]") {
  if (!testing::require_postgres()) return;
  pg_server srv{"trigger-long"};
  KARLTON_REQUIRE_SERVER(srv);
  open_store(srv, "users");
  listener l{srv};
  raw_conn w{srv};

  // 5,000 bytes (compressible: a btree entry holds at most 2,704 bytes).
  w.exec("INSERT INTO users(key, value) VALUES (decode(repeat('ab', 5000), 'hex'), '1'), "
         "(decode(repeat('cd', 3800), 'hex'), '2')");
  auto g = one_group(l.drain());
  CHECK(g.keys == keys{"<long>", std::string(3800, '\xcd')});

  w.exec("TRUNCATE users");
  auto t = l.drain();
  REQUIRE(t.size() == 1);
  CHECK(t[0].what == kind::truncate);
  CHECK(t[0].table == "public.users");
  CHECK(t[0].xid > 0);

  w.exec("SELECT karlton_repair('karlton_changes', 'public.users')");
  auto r = l.drain();
  REQUIRE(r.size() == 1);
  CHECK(r[0].what == kind::repair);
  CHECK(r[0].table == "public.users");

  // A limit of the deferred end trigger (README): a transaction that changed
  // rows cannot TRUNCATE the table until its pending events have run.
  w.exec("INSERT INTO users(key, value) VALUES ('k', '1')");
  l.drain();
  w.exec("BEGIN; DELETE FROM users WHERE key = 'k'");
  CHECK_THAT(w.refused("TRUNCATE users"), Catch::Contains("pending trigger events"));
  w.exec("ROLLBACK");
  w.exec("BEGIN; DELETE FROM users WHERE key = 'k'; SET CONSTRAINTS ALL IMMEDIATE; "
         "TRUNCATE users; COMMIT");
  auto both = l.drain();
  REQUIRE(both.size() == 3);
  CHECK(one_group({both[0], both[1]}).keys == keys{"k"});
  CHECK(both[2].what == kind::truncate);
}

TEST_CASE("a rolled-back savepoint takes its notifications and numbers with it, and "
          "SET CONSTRAINTS ALL IMMEDIATE gives an end per statement",
          "[pg_trigger]") {
  if (!testing::require_postgres()) return;
  pg_server srv{"trigger-ends"};
  KARLTON_REQUIRE_SERVER(srv);
  open_store(srv, "users");
  listener l{srv};
  raw_conn w{srv};

  w.exec("BEGIN; INSERT INTO users(key, value) VALUES ('s1', '1'); SAVEPOINT x; "
         "INSERT INTO users(key, value) VALUES ('s2', '1'); ROLLBACK TO x; "
         "INSERT INTO users(key, value) VALUES ('s3', '1'); COMMIT");
  auto g = one_group(l.drain());
  CHECK(g.keys == keys{"s1", "s3"});
  CHECK(g.ends == std::vector<uint64_t>{2});

  // Everything rolled back to a savepoint: nothing, not even an end.
  w.exec("BEGIN; SAVEPOINT y; INSERT INTO users(key, value) VALUES ('gone', '1'); "
         "ROLLBACK TO y; COMMIT");
  CHECK(l.drain().empty());

  // Immediate: the end fires at each statement's end, after the row trigger
  // (the end trigger's name sorts after the row trigger's); then deferred
  // again: one more end at COMMIT for the rows after.
  w.exec(
    "BEGIN; INSERT INTO users(key, value) VALUES ('i1', '1'); "
    "SET CONSTRAINTS ALL IMMEDIATE; INSERT INTO users(key, value) VALUES ('i2', '1'); "
    "SET CONSTRAINTS ALL DEFERRED; INSERT INTO users(key, value) VALUES ('i3', '1'), "
    "('i4', '1'); COMMIT");
  auto changes = l.drain();
  g = one_group(changes);
  CHECK(g.keys == keys{"i1", "i2", "i3", "i4"});
  CHECK(g.ends == std::vector<uint64_t>{1, 2, 4});
  // Order: r1 e1 r2 e2 r3 r4 e4.
  REQUIRE(changes.size() == 7);
  CHECK(changes[1].what == kind::end);
  CHECK(changes[3].what == kind::end);
  CHECK(changes[6].what == kind::end);
}

TEST_CASE("a writer can neither hijack the triggers through its search_path nor silence "
          "them through their counter",
          "[pg_trigger]") {
  // A review of 8 Dec: the functions called pg_notify through the writer's
  // search_path, and trusted the transaction's counter setting.
  if (!testing::require_postgres()) return;
  pg_server srv{"trigger-hostile"};
  KARLTON_REQUIRE_SERVER(srv);
  open_store(srv, "users");
  listener l{srv};
  raw_conn w{srv};
  w.exec("CREATE SCHEMA evil; CREATE FUNCTION evil.pg_notify(text, text) RETURNS void "
         "LANGUAGE sql AS 'SELECT NULL'");
  w.exec("BEGIN; SET LOCAL search_path = evil, pg_catalog; "
         "INSERT INTO public.users(key, value) VALUES ('h1', '1'); COMMIT");
  auto g = one_group(l.drain());
  CHECK(g.keys == keys{"h1"});

  auto why = w.refused("BEGIN; SET LOCAL karlton.seq_karlton_changes = '-1'; "
                       "INSERT INTO users(key, value) VALUES ('h2', '1'); COMMIT");
  CHECK(why.find("karlton.seq_karlton_changes") != std::string::npos);
  w.exec("ROLLBACK");
  CHECK(w.exec("SELECT count(*) FROM users WHERE key = 'h2'") == "0");
  CHECK(l.drain().empty());
}

TEST_CASE("postgres_store's own writes notify with an xid its own_commits answers own",
          "[pg_trigger]") {
  if (!testing::require_postgres()) return;
  pg_server srv{"trigger-own"};
  KARLTON_REQUIRE_SERVER(srv);
  auto store = open_store(srv, "users");
  // Opening again re-installs the triggers (CREATE OR REPLACE; the end
  // trigger dropped and created again) without an error.
  auto again = open_store(srv, "users");
  listener l{srv};
  auto origin = store->origin();
  REQUIRE(origin);
  CHECK(origin->table == "public.users");
  REQUIRE(origin->own);

  REQUIRE_FALSE(store->write_batch(
    {{"k1", std::string{"v1"}}, {"k2", std::string{"v2"}}, {"k3", std::nullopt}}));
  auto g = one_group(l.drain());
  CHECK(g.keys == keys{"k1", "k2"}); // deleting an absent key changes no row
  CHECK(origin->own->take(g.xid, g.keys.size()) == own_commits::verdict::own);
  CHECK(origin->own->take(g.xid, g.keys.size()) == own_commits::verdict::foreign);

  // Another writer's transaction is foreign, even to a second store on the
  // same table (each store has its own registry).
  raw_conn w{srv};
  w.exec("UPDATE users SET value = 'x' WHERE key = 'k1'");
  g = one_group(l.drain());
  CHECK(origin->own->take(g.xid, g.keys.size()) == own_commits::verdict::foreign);
  REQUIRE_FALSE(again->write_batch({{"k1", std::string{"v3"}}}));
  g = one_group(l.drain());
  CHECK(origin->own->take(g.xid, g.keys.size()) == own_commits::verdict::foreign);
  CHECK(again->origin()->own->take(g.xid, g.keys.size()) == own_commits::verdict::own);

  // A user's trigger that changes another row of the table inside the
  // store's transaction: that row is news to the cache, so the group is
  // foreign (before, the whole group was skipped as own and the derived row
  // stayed cached).
  w.exec("CREATE FUNCTION derive() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
         "UPDATE users SET value = NEW.value WHERE key = 'derived'; RETURN NULL; END $$; "
         "INSERT INTO users(key, value) VALUES ('derived', '0'); "
         "CREATE TRIGGER derive AFTER UPDATE ON users FOR EACH ROW "
         "WHEN (NEW.key = 'k2') EXECUTE FUNCTION derive()");
  l.drain();
  REQUIRE_FALSE(store->write_batch({{"k2", std::string{"v4"}}}));
  g = one_group(l.drain());
  CHECK(g.keys == keys{"derived", "k2"});
  CHECK(origin->own->take(g.xid, g.keys.size()) == own_commits::verdict::foreign);
  w.exec("DROP TRIGGER derive ON users");

  // A batch that fails is never own (it sends nothing either).
  w.exec("CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
         "RAISE EXCEPTION 'poisoned key'; END $$; CREATE TRIGGER poison BEFORE INSERT ON "
         "users FOR EACH ROW WHEN (NEW.key = 'bad') EXECUTE FUNCTION poison()");
  CHECK(store->write_batch({{"k9", std::string{"v"}}, {"bad", std::string{"v"}}}));
  CHECK(l.drain().empty());

  // Without install_trigger nothing is installed; trigger_sql prints it.
  auto o = options_for(srv);
  o.install_trigger = false;
  REQUIRE(postgres_store::open(o, "plain"));
  CHECK(w.exec("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'plain'::regclass") ==
        "0");
  auto sql = postgres_store::trigger_sql(o, "plain");
  REQUIRE(sql);
  w.exec("BEGIN; " + *sql + " COMMIT");
  CHECK(w.exec("SELECT string_agg(tgname, ',' ORDER BY tgname) FROM pg_trigger WHERE "
               "tgrelid = 'plain'::regclass") ==
        "karlton_notify,karlton_notify_end,karlton_truncate");
  o.channel = "Bad";
  auto bad = postgres_store::trigger_sql(o, "plain");
  REQUIRE_FALSE(bad);
  CHECK(bad.error() == errc::invalid_option);
}

// postgres_store against a private server (tests/support/pg_server.hpp): the
// store contract, transactions, reconnecting after a restart, the backoff,
// the pool's bound, and errors that name the server but never the password.
#include <catch2/catch.hpp>

#include <atomic>
#include <functional>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include <libpq-fe.h>

#include "stores/pg_connection.hpp"
#include "stores/store_contract.hpp"
#include "support/pg_row_lock.hpp"
#include "support/require_postgres.hpp"
#include <karlton/messages/errors.hpp>
#include <karlton/stores/postgres_store.hpp>

using namespace karlton;
using namespace karlton::testing::contract;
using namespace std::chrono_literals;
using karlton::testing::pg_server;

namespace {

postgres_options options_for(const pg_server& srv) {
  postgres_options o;
  o.uri = srv.uri();
  o.install_trigger = false;
  return o;
}

std::shared_ptr<postgres_store> open_store(const postgres_options& o,
                                           const std::string& table) {
  auto s = postgres_store::open(o, table);
  if (!s) FAIL(describe(s.error()));
  return *s;
}

} // namespace

TEST_CASE("postgres_store keeps the store contract", "[postgres_store]") {
  if (!testing::require_postgres()) return;
  pg_server srv{"contract"};
  KARLTON_REQUIRE_SERVER(srv);
  auto o = options_for(srv);
  check_round_trip(*open_store(o, "round_trip"));
  check_load_many(*open_store(o, "load_many"));
  auto later = open_store(o, "later");
  check_later_change_wins(*later);
  CHECK(later->count() == 2u);
  CHECK(later->table() == "public.later");
  // Keys are bytea: what psql sees is the bytes written.
  CHECK(srv.psql("SELECT encode(value, 'escape') FROM later WHERE key = 'k'") == "c");
}

TEST_CASE("postgres_store: a batch that fails part way through leaves nothing behind",
          "[postgres_store]") {
  if (!testing::require_postgres()) return;
  pg_server srv{"poison"};
  KARLTON_REQUIRE_SERVER(srv);
  auto s = open_store(options_for(srv), "poisoned");
  auto text = check_failed_batch_leaves_nothing(*s, [&] {
    srv.psql("CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
             "RAISE EXCEPTION 'poisoned key'; END $$; "
             "CREATE TRIGGER poison BEFORE INSERT ON poisoned FOR EACH ROW "
             "WHEN (NEW.key = 'bad') EXECUTE FUNCTION poison()");
    REQUIRE(srv.last_psql_ok());
  });
  CHECK(text.find("127.0.0.1:" + std::to_string(srv.port()) + "/karlton") !=
        std::string::npos);
  CHECK(text.find("public.poisoned") != std::string::npos);
  CHECK(text.find("P0001") != std::string::npos); // the SQLSTATE of RAISE EXCEPTION
  CHECK(s->count() == 2u);
}

TEST_CASE("postgres_store: reads are not held up by an open write transaction",
          "[postgres_store]") {
  if (!testing::require_postgres()) return;
  pg_server srv{"mvcc"};
  KARLTON_REQUIRE_SERVER(srv);
  auto o = options_for(srv);
  o.connect_timeout = 2s; // a read that waited for the lock would fail, not hang
  auto s = open_store(o, "t");
  REQUIRE_FALSE(s->write_batch({put("kept", "old")}));
  pg::conn_ptr other{PQconnectdb(srv.uri().c_str())};
  REQUIRE(PQstatus(other.get()) == CONNECTION_OK);
  auto exec = [&](const char* sql) {
    pg::result_ptr r{PQexec(other.get(), sql)};
    REQUIRE(PQresultStatus(r.get()) == PGRES_COMMAND_OK);
  };
  exec("BEGIN");
  exec("UPDATE t SET value = 'changed' WHERE key = 'kept'");
  exec("INSERT INTO t(key, value) VALUES ('new', '1')");
  CHECK(get(*s, "kept") == "old");
  CHECK(get(*s, "new") == std::nullopt);
  auto both = s->load_many({"kept", "new"});
  REQUIRE(both);
  CHECK(*both == std::vector<std::optional<std::string>>{"old", std::nullopt});
  CHECK(s->count() == 1u);
  exec("COMMIT");
  CHECK(get(*s, "kept") == "changed");
  CHECK(get(*s, "new") == "1");
}

TEST_CASE("postgres_store: interrupt cancels a write blocked on a row lock",
          "[postgres_store][shutdown]") {
  // What shutdown does past its flush deadline: before, such a write held
  // the store's thread, and so shutdown, for as long as the lock.
  if (!testing::require_postgres()) return;
  pg_server srv{"interrupt"};
  KARLTON_REQUIRE_SERVER(srv);
  auto s = open_store(options_for(srv), "t");
  REQUIRE_FALSE(s->write_batch({put("k", "old")}));
  testing::pg_row_lock lock{srv, "t", "k"};
  REQUIRE(lock.held());
  std::promise<caf::error> wrote;
  auto written = wrote.get_future();
  std::thread writer{[&] { wrote.set_value(s->write_batch({put("k", "new")})); }};
  struct finally { // never leave the writer blocked, whatever fails below
    std::function<void()> f;
    ~finally() { f(); }
  } release{[&] {
    lock.release();
    writer.join();
  }};
  REQUIRE(lock.someone_waits());
  // Asked again until it gives up, as shutdown does: a cancel that came
  // between two statements reaches neither.
  for (int i = 0; i < 100 && written.wait_for(100ms) != std::future_status::ready; ++i)
    s->interrupt();
  REQUIRE(written.wait_for(0s) == std::future_status::ready);
  auto err = written.get();
  REQUIRE(err == errc::store_failure);
  CHECK(describe(err).find("57014") != std::string::npos); // query_canceled
  CHECK(lock.commit());
  CHECK(get(*s, "k") == "held");                    // the cancelled write was rolled back
  CHECK_FALSE(s->write_batch({put("k", "after")})); // the store goes on
  CHECK(get(*s, "k") == "after");
}

TEST_CASE("postgres_store: after a server restart the next call succeeds",
          "[postgres_store]") {
  if (!testing::require_postgres()) return;
  pg_server srv{"restart"};
  KARLTON_REQUIRE_SERVER(srv);
  auto s = open_store(options_for(srv), "t");
  REQUIRE_FALSE(s->write_batch({put("a", "1")}));
  CHECK(get(*s, "a") == "1");
  // Every connection the store holds is cut; the first call on each gets a
  // fresh one instead of failing.
  REQUIRE(srv.restart());
  CHECK(get(*s, "a") == "1");
  auto after_restart = s->write_batch({put("a", "2")});
  INFO(describe(after_restart));
  REQUIRE_FALSE(after_restart);
  CHECK(get(*s, "a") == "2");
  REQUIRE(srv.restart());
  REQUIRE_FALSE(s->write_batch({put("b", "3")}));
  auto both = s->load_many({"a", "b"});
  REQUIRE(both);
  CHECK(*both == std::vector<std::optional<std::string>>{"2", "3"});
}

TEST_CASE("postgres_store refuses bad names and URIs without showing the password",
          "[postgres_store][errors]") {
  // No server needed: all of this fails before or at connecting.
  postgres_options o;
  o.uri = "postgresql://karlton:s3cr%65t@127.0.0.1:1/karlton?nosuchparam=1";
  auto bad_uri = postgres_store::open(o, "t");
  REQUIRE_FALSE(bad_uri);
  CHECK(bad_uri.error() == errc::invalid_option);
  auto text = describe(bad_uri.error());
  CHECK(text.find("nosuchparam") != std::string::npos);
  CHECK(text.find("s3cr") == std::string::npos);
  CHECK(text.find("secret") == std::string::npos);

  o.uri = "host=127.0.0.1 port=1 dbname=karlton password=hunter2 user=karlton";
  for (auto* table : {"Users", "1users", "us-ers", "users\"; DROP TABLE x; --", ""})
    CHECK(postgres_store::open(o, table).error() == errc::invalid_option);
  auto with = [&](auto change) {
    auto p = o;
    change(p);
    auto err = validate(p);
    CHECK(err == errc::invalid_option);
    CHECK(describe(err).find("hunter2") == std::string::npos);
  };
  with([](postgres_options& p) { p.schema = "pg_catalog"; });
  with([](postgres_options& p) { p.schema = "Public"; });
  with([](postgres_options& p) { p.channel = "a'b"; });
  with([](postgres_options& p) { p.table = std::string(64, 'a'); });
  with([](postgres_options& p) { p.pool_size = 0; });
  with([](postgres_options& p) { p.pool_size = 65; });
  with([](postgres_options& p) { p.lease = p.heartbeat; });
  with([](postgres_options& p) { p.reconnect_base = p.reconnect_max + 1ms; });
  with([](postgres_options& p) { p.uri = "password=hunter2 port=1\nhost=x"; });
  with([](postgres_options& p) { p.uri = "password=hunter2 nosuchkey=1"; });
  // libpq quotes the input it could not parse: the password never shows,
  // however the URI hides it (a query parameter, an '@' inside it, conninfo).
  with([](postgres_options& p) { p.uri = "postgresql://[::1/db?password=hunter2"; });
  with([](postgres_options& p) { p.uri = "postgresql://u:hun@ter2@127.0.0.1:x/db"; });
  with([](postgres_options& p) { p.uri = "host=x password='hunter2"; });
  with([](postgres_options& p) { p.uri = "host=x password=hunter2 port"; });
  CHECK_FALSE(validate(o));

  // What libpq's messages might echo back is blanked in every form the
  // password was given: as written in the URI, decoded, percent-encoded.
  postgres_options enc;
  enc.uri = "postgresql://karlton:p%40ss%20w0rd@127.0.0.1:1/karlton";
  auto params = pg::parse(enc, "karlton");
  REQUIRE(params);
  CHECK(params->where == "127.0.0.1:1/karlton");
  CHECK(pg::redact("a p@ss w0rd b p%40ss%20w0rd c", params->secrets) == "a *** b *** c");
  CHECK(pg::redact("nothing here", {""}) == "nothing here");

  // Port 1 refuses: a store_failure naming where, not the password.
  auto refused = postgres_store::open(o, "t");
  REQUIRE_FALSE(refused);
  CHECK(refused.error() == errc::store_failure);
  auto why = describe(refused.error());
  CHECK(why.find("127.0.0.1:1/karlton") != std::string::npos);
  CHECK(why.find("hunter2") == std::string::npos);
}

TEST_CASE("postgres_store fails at once while it backs off from an unreachable server",
          "[postgres_store]") {
  if (!testing::require_postgres()) return;
  pg_server srv{"backoff"};
  KARLTON_REQUIRE_SERVER(srv);
  auto o = options_for(srv);
  o.reconnect_base = 1h; // the backoff outlasts the test: no timing involved
  o.reconnect_max = 1h;
  auto s = open_store(o, "t");
  REQUIRE_FALSE(s->write_batch({put("a", "1")}));
  REQUIRE(srv.stop());
  // The first call finds its connection lost, tries a fresh one, is refused.
  auto first = s->load("a");
  REQUIRE_FALSE(first);
  CHECK(first.error() == errc::store_failure);
  // From then on nothing tries to connect until the backoff is over.
  auto second = s->load("a");
  REQUIRE_FALSE(second);
  auto text = describe(second.error());
  CHECK(text.find("unreachable") != std::string::npos);
  CHECK(text.find("next attempt in") != std::string::npos);
  auto write = s->write_batch({put("a", "2")});
  INFO(describe(write));
  CHECK(describe(write).find("next attempt in") != std::string::npos);
  CHECK(s->connections() == 0u);
}

TEST_CASE("postgres_store holds at most pool_size readers and one writer",
          "[postgres_store][threads]") {
  if (!testing::require_postgres()) return;
  pg_server srv{"pool"};
  KARLTON_REQUIRE_SERVER(srv);
  auto o = options_for(srv);
  o.pool_size = 2;
  auto s = open_store(o, "t");
  REQUIRE_FALSE(s->write_batch({put("a", "1")}));
  std::atomic<uint32_t> most{0};
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 100; ++i) {
        bool ok = i % 10 == 0
                    ? !s->write_batch({put("w" + std::to_string(t), std::to_string(i))})
                    : static_cast<bool>(s->load("a"));
        if (!ok) ++failures;
        auto now = s->connections();
        for (auto m = most.load(); now > m && !most.compare_exchange_weak(m, now);) {
        }
      }
    });
  for (auto& th : threads)
    th.join();
  CHECK(failures == 0);
  CHECK(most <= 3u);
  auto server_side =
    srv.psql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'karlton'");
  CHECK(std::stoi(server_side) <= 3);

  // The pool itself: with both connections lent, a third borrower waits its
  // bound and is refused; once one comes back it is reused.
  auto params = pg::parse(o, "karlton");
  REQUIRE(params);
  auto retry = std::make_shared<pg::backoff>(o.reconnect_base, o.reconnect_max);
  pg::pool p{*params, 2, 50ms, retry, nullptr};
  std::string why;
  auto one = p.borrow(why);
  auto two = p.borrow(why);
  REQUIRE(one);
  REQUIRE(two);
  CHECK_FALSE(p.borrow(why));
  CHECK(why.find("all 2 connections busy") != std::string::npos);
  one.reset();
  auto three = p.borrow(why);
  REQUIRE(three);
  CHECK_FALSE(three->fresh());
  CHECK(p.open_count() == 2u);
}

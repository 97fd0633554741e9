// The change feed's LISTEN loop against a private server: raw notifications
// sent by psql arrive, a barrier comes after what committed before it, a
// killed or frozen backend is noticed and replaced, and a stop never hangs.
// The payloads here are not the triggers' (stores/pg_payload.cpp reads those):
// the test's parser keeps each payload whole, so only the loop is tested.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <caf/sec.hpp>

#include "stores/pg_listener.hpp"
#include "support/require_postgres.hpp"

using namespace karlton;
using namespace std::chrono_literals;
using karlton::testing::pg_server;

namespace {

// Everything the listener reported, in order, as text lines.
struct recorder {
  std::mutex mutex;
  std::condition_variable changed;
  std::vector<std::string> lines;
  std::vector<std::string> payloads;
  uint64_t malformed = 0, ups = 0, downs = 0, heards = 0;
  std::string last_down, last_triggers;

  void add(const std::function<void()>& f) {
    {
      std::lock_guard<std::mutex> guard{mutex};
      f();
    }
    changed.notify_all();
  }
  // Waits (bounded, on events) until `done` holds under the lock.
  bool wait(const std::function<bool()>& done, std::chrono::seconds limit = 20s) {
    std::unique_lock<std::mutex> lock{mutex};
    if (changed.wait_for(lock, limit, done)) return true;
    UNSCOPED_INFO("ups " << ups << ", downs " << downs << ", last down: " << last_down);
    return false;
  }

  pg_listener_events events() {
    pg_listener_events e;
    e.up = [this] { add([&] { ++ups, lines.push_back("up"); }); };
    e.down = [this](const std::string& why) {
      add([&] { ++downs, last_down = why, lines.push_back("down"); });
    };
    e.changes = [this](std::vector<pg_change> cs, uint64_t bad) {
      add([&] {
        malformed += bad;
        std::string line = "changes";
        for (auto& c : cs) {
          payloads.push_back(c.table);
          line += " " + c.table;
        }
        lines.push_back(line);
      });
    };
    e.heard = [this](clock::time_point, double, const std::string& triggers, bool) {
      add([&] { ++heards, last_triggers = triggers; });
    };
    e.barrier_done = [this](uint64_t id) {
      add([&] { lines.push_back("barrier " + std::to_string(id)); });
    };
    return e;
  }
};

pg_listener_options options_for(const std::string& conninfo) {
  pg_listener_options o;
  o.conninfo = conninfo;
  o.heartbeat = 50ms;
  o.reconnect_base = 20ms;
  o.reconnect_max = 200ms;
  o.connect_timeout = 5s;
  o.parse = [](std::string_view payload) -> caf::expected<pg_change> {
    if (payload.substr(0, 3) == "bad") return caf::make_error(caf::sec::runtime_error);
    pg_change c;
    c.what = pg_change::kind::repair;
    c.table = std::string{payload};
    return c;
  };
  return o;
}

// Runs a listener on its own thread; stops and joins it at the end.
struct running {
  pg_listener listener;
  std::thread thread;
  running(pg_listener_options o, pg_listener_events e)
    : listener(std::move(o), std::move(e)), thread([this] { listener.run(); }) {}
  ~running() {
    listener.stop();
    thread.join();
  }
};

} // namespace

TEST_CASE("the listener delivers one transaction's notifications and counts refused ones",
          "[pg_listener]") {
  if (!karlton::testing::require_postgres()) return;
  pg_server srv{"listen-deliver"};
  KARLTON_REQUIRE_SERVER(srv);
  recorder rec;
  running r{options_for(srv.uri()), rec.events()};
  REQUIRE(rec.wait([&] { return rec.heards > 0; }));
  srv.psql("SELECT pg_notify('karlton_changes', 'one'); SELECT pg_notify('other', 'no'); "
           "SELECT pg_notify('karlton_changes', 'bad payload'); "
           "NOTIFY karlton_changes, 'two'");
  REQUIRE(srv.last_psql_ok());
  REQUIRE(rec.wait([&] { return rec.payloads.size() == 2; }));
  CHECK(rec.payloads == std::vector<std::string>{"one", "two"});
  CHECK(rec.malformed == 1);
  // Committed together, read in one pass: one batch.
  CHECK(std::count(rec.lines.begin(), rec.lines.end(), "changes one two") == 1);
  CHECK(rec.ups == 1);
  CHECK(rec.downs == 0);
}

TEST_CASE("a barrier is answered after every notification committed before it, and "
          "heartbeats report the triggers' states",
          "[pg_listener]") {
  if (!karlton::testing::require_postgres()) return;
  pg_server srv{"listen-barrier"};
  KARLTON_REQUIRE_SERVER(srv);
  srv.psql("CREATE TABLE users (k int); CREATE FUNCTION nothing() RETURNS trigger "
           "LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$; "
           "CREATE TRIGGER karlton_notify AFTER INSERT ON users FOR EACH ROW EXECUTE "
           "FUNCTION nothing(); ALTER TABLE users DISABLE TRIGGER karlton_notify");
  REQUIRE(srv.last_psql_ok());
  recorder rec;
  running r{options_for(srv.uri()), rec.events()};
  REQUIRE(rec.wait([&] { return rec.heards > 0; }));
  CHECK(rec.last_triggers == "public.users:karlton_notify:D");
  for (int i = 0; i < 20; ++i) {
    srv.psql("NOTIFY karlton_changes, 'n" + std::to_string(i) + "'");
    r.listener.barrier(static_cast<uint64_t>(i));
    auto line = "barrier " + std::to_string(i);
    REQUIRE(rec.wait([&] {
      return std::find(rec.lines.begin(), rec.lines.end(), line) != rec.lines.end();
    }));
    // The notification was reported before the barrier's answer.
    std::lock_guard<std::mutex> guard{rec.mutex};
    auto at = std::find(rec.lines.begin(), rec.lines.end(), line);
    auto note = std::find_if(rec.lines.begin(), at, [&](const std::string& l) {
      return l.find(" n" + std::to_string(i)) != std::string::npos;
    });
    CHECK(note != at);
  }
}

TEST_CASE("a killed backend is noticed and the listener reconnects and listens again",
          "[pg_listener]") {
  if (!karlton::testing::require_postgres()) return;
  pg_server srv{"listen-kill"};
  KARLTON_REQUIRE_SERVER(srv);
  recorder rec;
  running r{options_for(srv.uri()), rec.events()};
  REQUIRE(rec.wait([&] { return rec.heards > 0; }));
  srv.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
           "WHERE application_name = 'karlton-listen'");
  REQUIRE(srv.last_psql_ok());
  REQUIRE(rec.wait([&] { return rec.downs >= 1 && rec.ups >= 2; }));
  srv.psql("NOTIFY karlton_changes, 'after'");
  REQUIRE(rec.wait([&] { return !rec.payloads.empty(); }));
  CHECK(rec.payloads.back() == "after");
  // The server restarted: the same again.
  REQUIRE(srv.restart());
  REQUIRE(rec.wait([&] { return rec.downs >= 2 && rec.ups >= 3; }));
  srv.psql("NOTIFY karlton_changes, 'restarted'");
  REQUIRE(rec.wait([&] { return rec.payloads.back() == "restarted"; }));
}

TEST_CASE("a frozen backend is declared down after four unanswered heartbeats",
          "[pg_listener]") {
  if (!karlton::testing::require_postgres()) return;
  pg_server srv{"listen-frozen"};
  KARLTON_REQUIRE_SERVER(srv);
  recorder rec;
  running r{options_for(srv.uri()), rec.events()};
  REQUIRE(rec.wait([&] { return rec.heards > 0; }));
  auto pid = std::stoi(srv.psql("SELECT pid FROM pg_stat_activity "
                                "WHERE application_name = 'karlton-listen'"));
  REQUIRE(::kill(pid, SIGSTOP) == 0);
  bool down = rec.wait([&] { return rec.downs >= 1; });
  ::kill(pid, SIGCONT);
  REQUIRE(down);
  CHECK(rec.last_down.find("no answer to a heartbeat") != std::string::npos);
  REQUIRE(rec.wait([&] { return rec.ups >= 2; })); // a fresh backend
}

TEST_CASE("stop returns promptly, even while a connection attempt hangs",
          "[pg_listener]") {
  // A server that accepts the TCP connection and never answers: libpq waits
  // in its startup exchange.
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(::listen(fd, 4) == 0);
  socklen_t len = sizeof addr;
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  auto conninfo = "host=127.0.0.1 port=" + std::to_string(ntohs(addr.sin_port)) +
                  " user=karlton dbname=karlton sslmode=disable";
  recorder rec;
  auto opts = options_for(conninfo);
  opts.connect_timeout = 60s;
  auto r = std::make_unique<running>(opts, rec.events());
  // Wait for the listener's connection (an event, bounded), take it and
  // never answer.
  pollfd p{fd, POLLIN, 0};
  REQUIRE(::poll(&p, 1, 20'000) == 1);
  int peer = ::accept(fd, nullptr, nullptr);
  REQUIRE(peer >= 0);
  auto started = std::chrono::steady_clock::now();
  r.reset(); // stop and join
  CHECK(std::chrono::steady_clock::now() - started < 2s);
  CHECK(rec.ups == 0);
  ::close(peer);
  ::close(fd);
}

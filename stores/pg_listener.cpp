#include "stores/pg_listener.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <random>
#include <string>
#include <utility>

#include <libpq-fe.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "stores/pg_trigger_sql.hpp"

namespace karlton {

namespace {

using steady = std::chrono::steady_clock;

// A heartbeat unanswered for this many periods means the connection is
// gone: a keepalive or tcp_user_timeout may take far longer to say so, and
// one or two late answers happen under load (a vacuum, a checkpoint).
constexpr int missed_heartbeats = 4;

// tgenabled is of type "char", which `||` does not take without a cast.
// Only tables whose names could be fed (pg::valid_identifier): any role may
// name a table "a,public.users" and so forge an item of the list. The third
// column is what this backend listens to: behind a pooler in transaction
// mode the heartbeat reaches a backend that never ran our LISTEN, and the
// notifications go to one nobody reads.
const std::string heartbeat_query =
  std::string{
    "SELECT pg_notification_queue_usage(), (SELECT string_agg(n.nspname || '.' || "
    "c.relname || ':' || t.tgname || ':' || t.tgenabled::text, ',') FROM pg_trigger t "
    "JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = "
    "c.relnamespace WHERE n.nspname ~ '^[a-z_][a-z0-9_]{0,62}$' AND c.relname ~ "
    "'^[a-z_][a-z0-9_]{0,62}$' AND t.tgname IN ('"} +
  pg::row_trigger + "', '" + pg::end_trigger + "', '" + pg::truncate_trigger +
  "')), (SELECT string_agg(l, ',') FROM pg_listening_channels() l)";

// True if `channels` (comma-separated) holds `channel`.
bool listens_to(const std::string& channels, const std::string& channel) {
  size_t at = 0;
  while (at <= channels.size()) {
    auto stop = channels.find(',', at);
    if (stop == std::string::npos) stop = channels.size();
    if (channels.compare(at, stop - at, channel) == 0) return true;
    at = stop + 1;
  }
  return false;
}

std::string error_of(PGconn* c) {
  std::string e = c ? PQerrorMessage(c) : "out of memory";
  while (!e.empty() && (e.back() == '\n' || e.back() == ' '))
    e.pop_back();
  return e.empty() ? "connection lost" : e;
}

} // namespace

struct pg_listener::impl {
  enum class phase { idle, connecting, listening, live };

  pg_listener_options opts;
  pg_listener_events events;
  int wake_fd = -1;
  std::atomic<bool> stopping{false};
  std::mutex mutex;              // guards `asked`
  std::vector<uint64_t> asked;   // barriers not yet taken by the loop
  std::vector<uint64_t> waiting; // taken, for the next heartbeat
  std::vector<uint64_t> riding;  // on the heartbeat in flight
  PGconn* conn = nullptr;
  phase at = phase::idle;
  PostgresPollingStatusType polling = PGRES_POLLING_WRITING;
  steady::time_point deadline{};     // connecting, listening: give up then
  steady::time_point next_attempt{}; // idle: connect then
  steady::time_point next_heartbeat{};
  bool heartbeat_out = false;
  steady::time_point heartbeat_sent{};
  clock::time_point heartbeat_sent_at{}; // the runtime clock's
  double usage = 0;
  std::string triggers;
  bool result_ok = false;
  reconnect_backoff backoff{opts.reconnect_base, opts.reconnect_max};
  std::minstd_rand rng{std::random_device{}()};

  clock::time_point now_runtime() const {
    return opts.time_source ? opts.time_source->now() : clock::time_point{steady::now()};
  }

  void fail(const std::string& why) {
    if (conn) PQfinish(conn);
    conn = nullptr;
    at = phase::idle;
    heartbeat_out = false;
    // The barriers on the lost heartbeat wait for the next connection's.
    waiting.insert(waiting.end(), riding.begin(), riding.end());
    riding.clear();
    keep_newest(waiting);
    next_attempt = steady::now() + equal_jitter(backoff.failed(), rng);
    if (events.down) events.down(why);
  }

  void start_connect() {
    // Our defaults first; the user's connection string (expanded from
    // dbname) comes last, so its settings win.
    const char* keys[] = {"application_name",
                          "keepalives",
                          "keepalives_idle",
                          "keepalives_interval",
                          "keepalives_count",
                          "dbname",
                          nullptr};
    const char* values[] = {"karlton-listen",      "1",    "5", "2", "3",
                            opts.conninfo.c_str(), nullptr};
    conn = PQconnectStartParams(keys, values, 1);
    if (!conn || PQstatus(conn) == CONNECTION_BAD) {
      fail("cannot connect: " + error_of(conn));
      return;
    }
    // The server's notices (a FATAL on pg_terminate_backend among them) go
    // into the down reason, not to stderr, libpq's default.
    PQsetNoticeProcessor(
      conn, [](void*, const char*) {}, nullptr);
    at = phase::connecting;
    polling = PGRES_POLLING_WRITING;
    deadline = steady::now() + opts.connect_timeout;
  }

  void step_connect() {
    polling = PQconnectPoll(conn);
    if (polling == PGRES_POLLING_FAILED) {
      fail("cannot connect: " + error_of(conn));
      return;
    }
    if (polling != PGRES_POLLING_OK) return;
    PQsetnonblocking(conn, 1);
    // Validated identifier (§5); quoted all the same.
    auto listen = "LISTEN \"" + opts.channel + "\"";
    if (!PQsendQuery(conn, listen.c_str())) {
      fail("LISTEN failed: " + error_of(conn));
      return;
    }
    at = phase::listening;
    result_ok = false;
  }

  void send_heartbeat() {
    heartbeat_sent_at = now_runtime(); // before sending: see `heard`
    heartbeat_sent = steady::now();
    if (!PQsendQuery(conn, heartbeat_query.c_str())) {
      fail("heartbeat failed: " + error_of(conn));
      return;
    }
    heartbeat_out = true;
    result_ok = false;
    riding = std::move(waiting);
    waiting.clear();
    next_heartbeat = heartbeat_sent + opts.heartbeat;
  }

  // Reads what arrived: results, then notifications, in that order of
  // reporting (a heartbeat's answer is reported after every notification
  // that came before it).
  void read_input() {
    if (!PQconsumeInput(conn)) {
      fail("connection lost: " + error_of(conn));
      return;
    }
    bool finished = false; // the query in flight finished in this pass
    while (!PQisBusy(conn)) {
      PGresult* r = PQgetResult(conn);
      if (!r) {
        finished = at == phase::listening || heartbeat_out;
        break;
      }
      auto status = PQresultStatus(r);
      if (at == phase::listening) {
        result_ok = status == PGRES_COMMAND_OK;
        if (!result_ok) triggers = PQresultErrorMessage(r);
      } else if (status == PGRES_TUPLES_OK && PQntuples(r) == 1 && PQnfields(r) == 3) {
        usage = std::strtod(PQgetvalue(r, 0, 0), nullptr);
        triggers = PQgetisnull(r, 0, 1) ? "" : PQgetvalue(r, 0, 1);
        result_ok =
          !PQgetisnull(r, 0, 2) && listens_to(PQgetvalue(r, 0, 2), opts.channel);
        if (!result_ok)
          triggers = "the backend that answered does not listen to '" + opts.channel +
                     "' (a pooler in transaction mode? the feed needs a session)";
      } else {
        result_ok = false;
        triggers = PQresultErrorMessage(r);
      }
      PQclear(r);
    }
    bool with_changes = deliver_notifications();
    if (!finished || !conn) return;
    if (at == phase::listening) {
      if (!result_ok) {
        auto why = "LISTEN failed: " + triggers;
        triggers.clear();
        fail(why);
        return;
      }
      at = phase::live;
      backoff.live(steady::now());
      if (events.up) events.up();
      next_heartbeat = steady::now(); // the first proof at once
      return;
    }
    heartbeat_out = false;
    if (!result_ok) {
      fail("heartbeat failed: " + triggers);
      return;
    }
    backoff.heard(heartbeat_sent);
    if (events.heard) events.heard(heartbeat_sent_at, usage, triggers, with_changes);
    for (auto id : riding)
      if (events.barrier_done) events.barrier_done(id);
    riding.clear();
  }

  // Reports the notifications libpq has parsed; true if there were any.
  bool deliver_notifications() {
    std::vector<pg_change> batch;
    uint64_t malformed = 0;
    while (PGnotify* n = PQnotifies(conn)) {
      if (auto c = opts.parse(n->extra))
        batch.push_back(std::move(*c));
      else
        ++malformed;
      PQfreemem(n);
    }
    bool any = !batch.empty() || malformed > 0;
    if (any && events.changes) events.changes(std::move(batch), malformed);
    return any;
  }

  void take_asked() {
    uint64_t ignored;
    while (::read(wake_fd, &ignored, sizeof ignored) > 0) {
    }
    std::lock_guard<std::mutex> guard{mutex};
    waiting.insert(waiting.end(), asked.begin(), asked.end());
    asked.clear();
    keep_newest(waiting);
  }

  // The newest `max_waiting_syncs` barriers (ids grow): the feed's actor
  // has answered the older ones already.
  static void keep_newest(std::vector<uint64_t>& ids) {
    if (ids.size() <= max_waiting_syncs) return;
    std::sort(ids.begin(), ids.end());
    ids.erase(ids.begin(), ids.end() - static_cast<std::ptrdiff_t>(max_waiting_syncs));
  }

  void run() {
    while (!stopping.load(std::memory_order_acquire)) {
      auto now = steady::now();
      if (at == phase::idle && now >= next_attempt) {
        start_connect();
        continue;
      }
      if (at == phase::live && !heartbeat_out &&
          (now >= next_heartbeat || !waiting.empty())) {
        send_heartbeat();
        continue;
      }
      if (at == phase::live && heartbeat_out &&
          now - heartbeat_sent >= missed_heartbeats * opts.heartbeat) {
        fail("no answer to a heartbeat for " +
             std::to_string(missed_heartbeats * opts.heartbeat.count()) + " ms");
        continue;
      }
      if ((at == phase::connecting || at == phase::listening) && now >= deadline) {
        fail("not connected and listening within " +
             std::to_string(opts.connect_timeout.count()) + " ms");
        continue;
      }
      // Wait for the socket, the wake-up, or the next thing due.
      steady::time_point until;
      switch (at) {
      case phase::idle:
        until = next_attempt;
        break;
      case phase::connecting:
      case phase::listening:
        until = deadline;
        break;
      case phase::live:
        until = heartbeat_out ? heartbeat_sent + missed_heartbeats * opts.heartbeat
                              : next_heartbeat;
        break;
      }
      pollfd fds[2] = {{wake_fd, POLLIN, 0}, {-1, 0, 0}};
      if (conn) {
        fds[1].fd = PQsocket(conn);
        if (at == phase::connecting)
          fds[1].events = polling == PGRES_POLLING_READING ? POLLIN : POLLOUT;
        else
          fds[1].events = POLLIN | (PQflush(conn) == 1 ? POLLOUT : 0);
      }
      auto wait = std::chrono::ceil<std::chrono::milliseconds>(until - now).count();
      int ready = ::poll(fds, conn ? 2 : 1, static_cast<int>(std::max<int64_t>(0, wait)));
      if (ready < 0 && errno != EINTR) {
        fail("poll failed");
        continue;
      }
      if (fds[0].revents & POLLIN) take_asked();
      if (stopping.load(std::memory_order_acquire)) break;
      if (!conn || ready <= 0 || fds[1].revents == 0) continue;
      if (at == phase::connecting)
        step_connect();
      else
        read_input();
    }
    if (conn) PQfinish(conn);
    conn = nullptr;
    at = phase::idle;
  }
};

pg_listener::pg_listener(pg_listener_options opts, pg_listener_events events)
  : impl_(std::make_unique<impl>()) {
  impl_->opts = std::move(opts);
  impl_->backoff = {impl_->opts.reconnect_base, impl_->opts.reconnect_max};
  impl_->events = std::move(events);
  impl_->wake_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
}

pg_listener::~pg_listener() {
  if (impl_->conn) PQfinish(impl_->conn);
  if (impl_->wake_fd >= 0) ::close(impl_->wake_fd);
}

void pg_listener::run() {
  impl_->run();
}

void pg_listener::stop() noexcept {
  impl_->stopping.store(true, std::memory_order_release);
  uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(impl_->wake_fd, &one, sizeof one);
}

void pg_listener::barrier(uint64_t id) {
  {
    std::lock_guard<std::mutex> guard{impl_->mutex};
    impl_->asked.push_back(id);
    impl::keep_newest(impl_->asked); // a loop stuck connecting takes none
  }
  uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(impl_->wake_fd, &one, sizeof one);
}

const char* pg_listener::heartbeat_sql() noexcept {
  return heartbeat_query.c_str();
}

} // namespace karlton

// The RESP server's I/O side over loopback sockets, with a fake session (so
// these tests need none of the commands): max_clients, the output limit, the
// idle timeout, protocol errors, blocking jobs, and a stop with a call in
// flight. The server with real sessions: resp_server_real_sessions.test.cpp.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "runtime/server/resp_server.hpp"
#include "server/loopback_client.hpp"
#include "support/eventually.hpp"
#include "support/latch.hpp"

using namespace std::chrono_literals;
using karlton::testing::eventually;
using client = karlton::testing::loopback_client;
namespace srv = karlton::server;

namespace {

// What the fake sessions of one server share with the test.
struct fake_state {
  std::mutex mutex;
  std::function<void()> release_slow; // completes the pending SLOW, if any
  std::atomic<int> slow_pending{0};
  std::atomic<int> collects{0};
  std::atomic<int> detached{0};
  karlton::testing::latch hold_gate; // HOLD's pool jobs wait for it
  std::atomic<int> holds_started{0};
};

// Inline lines: PING -> +PONG; BIG n -> a bulk of n bytes; SLOW -> +SLOW once
// the test calls release_slow (from its own thread); SUB -> +SUBSCRIBED, and
// the session counts as subscribed from then on; BLOCK -> +BLOCKED from
// the blocking pool; HOLD -> +HELD from the pool once the test opens
// hold_gate; OVERFLOW -> the session says its output overflowed (as pushes
// or late replies past the output limit make it), then wakes the host from
// the blocking pool; BAD -> an error, then the connection closes.
class fake_session final : public srv::session,
                           public std::enable_shared_from_this<fake_session> {
public:
  fake_session(srv::session_host* host, fake_state& state) : host_(host), state_(state) {}

  uint64_t id() const noexcept override { return 1; }

  bool feed(std::string_view bytes) override {
    input_.append(bytes);
    for (auto nl = input_.find("\r\n"); nl != std::string::npos;
         nl = input_.find("\r\n")) {
      auto line = input_.substr(0, nl);
      input_.erase(0, nl + 2);
      if (line == "PING") {
        add_ready("+PONG\r\n");
      } else if (line.rfind("BIG ", 0) == 0) {
        auto n = std::stoul(line.substr(4));
        add_ready("$" + std::to_string(n) + "\r\n" + std::string(n, 'x') + "\r\n");
      } else if (line == "SLOW") {
        auto slot = add_pending();
        std::lock_guard<std::mutex> guard{state_.mutex};
        state_.release_slow = [self = shared_from_this(), slot] {
          self->complete(slot, "+SLOW\r\n");
        };
        ++state_.slow_pending;
      } else if (line == "HOLD") {
        auto slot = add_pending();
        auto ok = host_->run_blocking([self = shared_from_this(), slot, &st = state_] {
          ++st.holds_started;
          st.hold_gate.wait();
          self->complete(slot, "+HELD\r\n");
        });
        if (!ok) complete(slot, "-ERR busy\r\n");
      } else if (line == "OVERFLOW") {
        host_->run_blocking([self = shared_from_this()] {
          std::lock_guard<std::mutex> guard{self->mutex_};
          self->overflowed_ = true;
          if (self->host_ != nullptr) self->host_->wake();
        });
      } else if (line == "SUB") {
        subscribed_ = true;
        add_ready("+SUBSCRIBED\r\n");
      } else if (line == "BLOCK") {
        auto slot = add_pending();
        auto ok = host_->run_blocking(
          [self = shared_from_this(), slot] { self->complete(slot, "+BLOCKED\r\n"); });
        if (!ok) complete(slot, "-ERR busy\r\n");
      } else {
        add_ready("-ERR Protocol error: unknown\r\n");
        closing_ = true;
        return false;
      }
    }
    return true;
  }

  void collect(std::string& out) override {
    ++state_.collects;
    std::lock_guard<std::mutex> guard{mutex_};
    while (!slots_.empty() && slots_.front()->ready) {
      out += slots_.front()->bytes;
      slots_.pop_front();
    }
  }

  bool wants_input() const noexcept override { return !closing_; }
  bool replies_owed() const noexcept override {
    std::lock_guard<std::mutex> guard{mutex_};
    return !slots_.empty();
  }
  bool closing() const noexcept override { return closing_; }
  bool subscribed() const noexcept override { return subscribed_; }
  bool authenticated() const noexcept override { return true; }
  void push(std::string) override {}
  void push_for(std::string, std::weak_ptr<srv::session>) override {}
  bool output_overflowed() const noexcept override { return overflowed_; }
  size_t buffered_bytes() const noexcept override { return 0; }

  void detach() noexcept override {
    std::lock_guard<std::mutex> guard{mutex_};
    host_ = nullptr;
    ++state_.detached;
  }

private:
  struct slot {
    std::string bytes;
    bool ready = false;
  };

  void add_ready(std::string bytes) {
    std::lock_guard<std::mutex> guard{mutex_};
    slots_.push_back(std::make_shared<slot>(slot{std::move(bytes), true}));
  }

  std::shared_ptr<slot> add_pending() {
    std::lock_guard<std::mutex> guard{mutex_};
    return slots_.emplace_back(std::make_shared<slot>());
  }

  // Any thread.
  void complete(const std::shared_ptr<slot>& s, std::string bytes) {
    std::lock_guard<std::mutex> guard{mutex_};
    s->bytes = std::move(bytes);
    s->ready = true;
    if (host_ != nullptr) host_->wake();
  }

  srv::session_host* host_; // guarded by mutex_ once shared
  fake_state& state_;
  mutable std::mutex mutex_;
  std::deque<std::shared_ptr<slot>> slots_;
  std::string input_;
  bool closing_ = false;
  std::atomic<bool> subscribed_{false};
  std::atomic<bool> overflowed_{false};
};

struct fixture {
  explicit fixture(srv::resp_options opts) {
    server.emplace(rt, std::vector<karlton::cache>{}, std::move(opts),
                   [this](std::shared_ptr<srv::server_context>, srv::session_host* host) {
                     return std::make_shared<fake_session>(host, state);
                   });
    auto p = server->start();
    REQUIRE(p);
    port = *p;
  }
  const srv::server_counters& counters() const { return server->context().counters; }

  karlton::runtime rt;
  fake_state state;
  std::optional<srv::resp_server> server;
  uint16_t port = 0;
};

bool pings(client& c) {
  return c.send("PING\r\n") && c.read(7) == "+PONG\r\n";
}

// Joins `t` when the test case ends, also when a REQUIRE throws; first opens
// `gate`, if given, which the thread may be waiting behind.
struct joiner {
  std::thread& t;
  karlton::testing::latch* gate = nullptr;
  ~joiner() {
    if (gate) gate->release();
    if (t.joinable()) t.join();
  }
};

} // namespace

TEST_CASE("the server answers pipelined commands in order on every I/O thread",
          "[resp-server]") {
  srv::resp_options opts;
  opts.threads = 2;
  fixture f{opts};
  client a{f.port}, b{f.port}, c{f.port};
  for (auto* x : {&a, &b, &c}) {
    REQUIRE(x->send("PING\r\nBIG 3\r\nPING\r\n"));
    CHECK(x->read(7 + 9 + 7) == "+PONG\r\n$3\r\nxxx\r\n+PONG\r\n");
  }
  CHECK(f.counters().connected_clients == 3);
  CHECK(f.counters().total_connections == 3);
}

TEST_CASE("a client over maxclients is told so and closed while the others keep working",
          "[resp-server]") {
  srv::resp_options opts;
  opts.max_clients = 2;
  fixture f{opts};
  client a{f.port};
  auto b = std::make_unique<client>(f.port);
  REQUIRE(pings(a));
  REQUIRE(pings(*b));
  client c{f.port};
  CHECK(c.read(36) == "-ERR max number of clients reached\r\n");
  CHECK(c.sees_eof());
  CHECK(f.counters().rejected_connections == 1);
  CHECK(pings(a));
  // A place given back is taken again.
  b->send("BAD\r\n");
  CHECK(b->sees_eof());
  b.reset(); // its close ends the server's lingering
  REQUIRE(eventually([&] { return f.counters().connected_clients == 1; }));
  client d{f.port};
  CHECK(pings(d));
}

TEST_CASE("a client that does not read its replies is closed at the output limit",
          "[resp-server]") {
  srv::resp_options opts;
  opts.output_buffer_limit = 256 << 10;
  fixture f{opts};
  client hog{f.port, 4096}, other{f.port};
  std::string requests;
  // 8 MB of replies: beyond what the kernel's socket buffers hold (the
  // sender's grows to 4 MiB by default), however the requests are read.
  for (int i = 0; i < 400; ++i)
    requests += "BIG 20000\r\n";
  REQUIRE(hog.send(requests));
  REQUIRE(eventually([&] { return f.counters().output_limit_closes == 1; }));
  CHECK(pings(other));
  CHECK(f.counters().connected_clients == 1);
}

TEST_CASE("a session whose pushes or late replies overflowed is closed at once",
          "[resp-server]") {
  fixture f{srv::resp_options{}};
  client c{f.port}, other{f.port};
  REQUIRE(c.send("PING\r\nOVERFLOW\r\n"));
  REQUIRE(eventually([&] { return f.counters().output_limit_closes == 1; }));
  CHECK(pings(other));
  REQUIRE(eventually([&] { return f.counters().connected_clients == 1; }));
}

TEST_CASE("rejected clients linger up to max_rejected_lingering, past it they close at "
          "once",
          "[resp-server]") {
  srv::resp_options opts;
  opts.max_clients = 1;
  opts.max_rejected_lingering = 2;
  fixture f{opts};
  client a{f.port};
  REQUIRE(pings(a));
  std::vector<std::unique_ptr<client>> rejected;
  for (int i = 0; i < 6; ++i) { // none of them closes: each would linger 2 s
    rejected.push_back(std::make_unique<client>(f.port));
    CHECK(rejected.back()->read(36) == "-ERR max number of clients reached\r\n");
    CHECK(rejected.back()->sees_eof());
  }
  CHECK(f.counters().rejected_connections == 6);
  CHECK(f.counters().rejected_lingering == 2); // was 6 without the cap
  CHECK(pings(a));
  rejected.clear(); // their closes end the lingering
  CHECK(eventually([&] { return f.counters().rejected_lingering == 0; }));
}

TEST_CASE("an idle client is closed after resp-timeout by the sweep", "[resp-server]") {
  srv::resp_options opts;
  opts.idle_timeout = 1s;
  fixture f{opts};
  client idle{f.port};
  REQUIRE(pings(idle));
  CHECK(idle.sees_eof()); // within 2 s: the timeout plus one sweep period
  // The socket closes first, then the session is detached.
  CHECK(eventually([&] { return f.state.detached == 1; }));
  CHECK(f.counters().idle_closes == 1);
}

TEST_CASE("a subscribed client is spared by resp-timeout, as Redis spares Pub/Sub "
          "clients",
          "[resp-server]") {
  srv::resp_options opts;
  opts.idle_timeout = 1s;
  fixture f{opts};
  client subscriber{f.port}, idle{f.port};
  REQUIRE(subscriber.send("SUB\r\n"));
  REQUIRE(subscriber.read(13) == "+SUBSCRIBED\r\n");
  REQUIRE(pings(idle));
  CHECK(idle.sees_eof());   // the sweep ran past the timeout of both
  CHECK(pings(subscriber)); // was closed with the other before
  CHECK(f.counters().idle_closes == 1);
}

TEST_CASE("a client waiting for a reply is spared by resp-timeout, as Redis spares "
          "blocked clients",
          "[resp-server]") {
  srv::resp_options opts;
  opts.idle_timeout = 1s;
  fixture f{opts};
  client waiting{f.port}, idle{f.port};
  REQUIRE(waiting.send("SLOW\r\n"));
  REQUIRE(pings(idle));
  CHECK(idle.sees_eof()); // the sweep ran past the timeout of both
  REQUIRE(eventually([&] { return f.state.slow_pending == 1; }));
  {
    std::lock_guard<std::mutex> guard{f.state.mutex};
    f.state.release_slow();
  }
  CHECK(waiting.read(7) == "+SLOW\r\n"); // was closed with the other before
  CHECK(f.counters().idle_closes == 1);
}

TEST_CASE("a bad request is answered, then only its connection ends", "[resp-server]") {
  fixture f{srv::resp_options{}};
  client bad{f.port}, good{f.port};
  REQUIRE(pings(good));
  // Junk after the bad line is still unread when the server closes: the
  // reply must arrive anyway (no RST before the client reads it).
  REQUIRE(bad.send("PING\r\nBAD\r\n" + std::string(100000, 'j')));
  CHECK(bad.read(7) == "+PONG\r\n");
  CHECK(bad.read(30) == "-ERR Protocol error: unknown\r\n");
  CHECK(bad.sees_eof());
  CHECK(pings(good));
}

TEST_CASE("blocking jobs run on the pool and their replies keep their place",
          "[resp-server]") {
  fixture f{srv::resp_options{}};
  client c{f.port};
  REQUIRE(c.send("BLOCK\r\nPING\r\nBLOCK\r\n"));
  CHECK(c.read(10 + 7 + 10) == "+BLOCKED\r\n+PONG\r\n+BLOCKED\r\n");
}

TEST_CASE("one connection's blocking jobs take one pool thread, and stop runs none that "
          "had not started",
          "[resp-server]") {
  fixture f{srv::resp_options{}};
  karlton::testing::release_on_exit open_gate{f.state.hold_gate};
  client hog{f.port}, other{f.port};
  REQUIRE(hog.send("HOLD\r\nHOLD\r\nHOLD\r\nHOLD\r\n"));
  REQUIRE(eventually([&] { return f.state.holds_started >= 1; }));
  // The pool's other thread is free for other connections (both threads
  // held HOLDs before, and this waited behind them).
  REQUIRE(other.send("BLOCK\r\n"));
  CHECK(other.read(10) == "+BLOCKED\r\n");
  CHECK(f.state.holds_started == 1);
  // Stop: the running HOLD is waited for, the three waiting never run.
  std::thread stopper{[&] { f.server->stop(100ms); }};
  joiner join_stopper{stopper, &f.state.hold_gate};
  REQUIRE(eventually([&] { return f.state.detached == 2; }));
  f.state.hold_gate.release();
  stopper.join();
  CHECK(f.state.holds_started == 1);
}

TEST_CASE("stop waits for a call in flight, writes its reply, then closes",
          "[resp-server]") {
  fixture f{srv::resp_options{}};
  client c{f.port};
  REQUIRE(c.send("PING\r\nSLOW\r\n"));
  CHECK(c.read(7) == "+PONG\r\n");
  REQUIRE(eventually([&] { return f.state.slow_pending == 1; }));
  auto before = f.state.collects.load();
  std::thread stopper{[&] { f.server->stop(10s); }};
  joiner join_stopper{stopper};
  // Collects with no input and no wake come only from stop's settling: the
  // stop is under way, with SLOW still in flight.
  REQUIRE(eventually([&] { return f.state.collects >= before + 3; }));
  {
    std::lock_guard<std::mutex> guard{f.state.mutex};
    f.state.release_slow();
  }
  CHECK(c.read(7) == "+SLOW\r\n");
  CHECK(c.sees_eof());
  stopper.join();
  CHECK(f.state.detached == 1);
}

TEST_CASE("a call still in flight after the grace completes into a detached session",
          "[resp-server]") {
  fixture f{srv::resp_options{}};
  client c{f.port};
  REQUIRE(c.send("SLOW\r\n"));
  REQUIRE(eventually([&] { return f.state.slow_pending == 1; }));
  auto started = std::chrono::steady_clock::now();
  f.server->stop(100ms);
  CHECK(std::chrono::steady_clock::now() - started < 5s);
  CHECK(c.sees_eof());
  CHECK(c.rest().empty());
  CHECK(f.state.detached == 1);
  // The late completion: the server's threads are gone, the session is not.
  std::lock_guard<std::mutex> guard{f.state.mutex};
  f.state.release_slow();
}

// /metrics over loopback: the replies a scraper, a person with curl and a
// bad client get, and the limits (16 connections, 5 s to send a head).
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>
#include <vector>

#include "runtime/server/metrics_http.hpp"
#include "support/eventually.hpp"
#include "support/latch.hpp"
#include "support/must.hpp"
#include "support/prometheus_text.hpp"
#include <karlton/runtime/runtime.hpp>

using namespace karlton;
using namespace std::chrono_literals;
using karlton::server::metrics_http;
using karlton::server::metrics_http_options;
using karlton::testing::eventually;
using karlton::testing::must;
using karlton::testing::parse_prometheus;

namespace {

// A connected loopback socket that closes itself; reads time out after 10 s.
struct client {
  int fd = -1;
  explicit client(uint16_t port) {
    fd = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    timeval tv{10, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  }
  ~client() {
    if (fd >= 0) ::close(fd);
  }
  void send(const std::string& bytes) {
    size_t sent = 0;
    while (sent < bytes.size()) {
      auto n = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) return; // the server closed: its reply is still readable
      sent += static_cast<size_t>(n);
    }
  }
  /// Everything until the server closes (or 10 s pass).
  std::string read_all() {
    std::string out;
    char buf[4096];
    for (;;) {
      auto n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) return out;
      out.append(buf, static_cast<size_t>(n));
    }
  }
};

struct reply {
  int status = 0;
  std::string head;
  std::string body;
};

reply round_trip(uint16_t port, const std::string& request) {
  client c{port};
  c.send(request);
  auto all = c.read_all();
  reply r;
  auto end = all.find("\r\n\r\n");
  if (all.size() < 12 || end == std::string::npos) return r;
  r.status = std::stoi(all.substr(9, 3));
  r.head = all.substr(0, end + 2);
  r.body = all.substr(end + 4);
  return r;
}

std::string get(const std::string& path, const std::string& extra_headers = "") {
  return "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" + extra_headers + "\r\n";
}

struct fixture {
  runtime rt;
  cache c = must(rt.create_cache("users"));

  std::unique_ptr<metrics_http> serve(std::string password = "",
                                      std::chrono::milliseconds request_timeout = 5s) {
    metrics_http_options o;
    o.password = std::move(password);
    o.request_timeout = request_timeout;
    auto m = std::make_unique<metrics_http>(rt, o, [] { return "# extra\n"; });
    port = must(m->start());
    return m;
  }
  uint16_t port = 0;
};

} // namespace

TEST_CASE_METHOD(fixture, "GET /metrics answers the runtime's text and the extra",
                 "[metrics_http]") {
  auto m = serve();
  REQUIRE_FALSE(c.put("k", "v"));
  REQUIRE(must(c.get("k")));
  auto r = round_trip(port, get("/metrics"));
  REQUIRE(r.status == 200);
  CHECK(r.head.find("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n") !=
        std::string::npos);
  CHECK(r.head.find("Connection: close\r\n") != std::string::npos);
  CHECK(r.head.find("Content-Length: " + std::to_string(r.body.size()) + "\r\n") !=
        std::string::npos);
  auto s = parse_prometheus(r.body);
  CHECK(s.problems.empty());
  CHECK(s.value("karlton_hits_total", {{"cache", "users"}}) == 1);
  CHECK(r.body.size() >= 8);
  CHECK(r.body.substr(r.body.size() - 8) == "# extra\n");
}

TEST_CASE_METHOD(fixture, "other paths, methods and bad heads get 404, 405, 431 and 400",
                 "[metrics_http]") {
  auto m = serve();
  CHECK(round_trip(port, get("/")).status == 404);
  CHECK(round_trip(port, get("/metricsx")).status == 404);
  auto post = round_trip(port, "POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(post.status == 405);
  CHECK(post.head.find("Allow: GET\r\n") != std::string::npos);
  CHECK(round_trip(port, get("/metrics", "X-Fill: " + std::string(10000, 'a') + "\r\n"))
          .status == 431);
  CHECK(round_trip(port, "\x16\x03\x01 not http\r\n\r\n").status == 400);
  CHECK(round_trip(port, get("/metrics")).status == 200); // still serving
}

TEST_CASE_METHOD(fixture, "with a password, /metrics needs HTTP Basic default:password",
                 "[metrics_http][auth]") {
  auto m = serve("secret");
  auto none = round_trip(port, get("/metrics"));
  CHECK(none.status == 401);
  CHECK(none.head.find("WWW-Authenticate: Basic realm=\"karlton\"") != std::string::npos);
  CHECK(none.body.find("karlton_") == std::string::npos);
  // default:wrong, then default:secret.
  CHECK(round_trip(port, get("/metrics", "Authorization: Basic ZGVmYXVsdDp3cm9uZw==\r\n"))
          .status == 401);
  CHECK(
    round_trip(port, get("/", "Authorization: Basic ZGVmYXVsdDp3cm9uZw==\r\n")).status ==
    401);
  auto ok =
    round_trip(port, get("/metrics", "Authorization: Basic ZGVmYXVsdDpzZWNyZXQ=\r\n"));
  CHECK(ok.status == 200);
  auto s = parse_prometheus(ok.body);
  CHECK(s.problems.empty());
  // The two wrong passwords (not the request without any) show.
  CHECK(s.value("karlton_metrics_auth_failures_total", {}) == 2);
}

TEST_CASE_METHOD(fixture,
                 "beyond 16 connections the one that waited longest for its head makes "
                 "room, so idle sockets cannot keep a scraper out",
                 "[metrics_http][limits]") {
  auto m = serve("", 60s); // a close within the test is the room made, not a timeout
  std::vector<std::unique_ptr<client>> idle;
  for (int i = 0; i < 16; ++i)
    idle.push_back(std::make_unique<client>(port));
  // Accepted after the 16 (the kernel queues connections in order): before,
  // it was closed at once, and 16 reopened idle sockets locked scrapers out.
  CHECK(round_trip(port, get("/metrics")).status == 200);
  auto start = std::chrono::steady_clock::now();
  CHECK(idle.front()->read_all().empty());              // the oldest, closed
  CHECK(std::chrono::steady_clock::now() - start < 5s); // not the 10 s read timeout
}

TEST_CASE_METHOD(
  fixture,
  "beyond 16 connections one that has its answer and only drains makes room "
  "first, so answered sockets cannot keep a scraper out",
  "[metrics_http][limits]") {
  auto m = serve("", 60s);
  // 16 requests for a page that is not there, each answered and then kept
  // open: the server drains each for up to a second. Before, only sockets
  // waiting for their head made room, so 16 such requests a second (with
  // or without a password: a 401 drains too) kept every scraper out.
  std::vector<std::unique_ptr<client>> answered;
  for (int i = 0; i < 16; ++i) {
    answered.push_back(std::make_unique<client>(port));
    answered.back()->send(get("/x"));
    // Until the server's FIN after its reply: answered, now draining.
    CHECK(answered.back()->read_all().find("404") != std::string::npos);
  }
  CHECK(round_trip(port, get("/metrics")).status == 200);
}

TEST_CASE_METHOD(fixture,
                 "renders for connections that timed out wait in a bounded queue and are "
                 "skipped",
                 "[metrics_http][limits]") {
  karlton::testing::latch stuck;
  std::atomic<int> renders{0};
  metrics_http_options o;
  o.request_timeout = 1s; // room to read and queue all 16 heads, even under ASan
  metrics_http m{rt, o, [&] {
                   ++renders;
                   stuck.wait(); // a render that does not end: shards stalled, say
                   return std::string{"# extra\n"};
                 }};
  // Released before m stops, which waits for the render.
  karlton::testing::release_on_exit open_gate{stuck};
  port = must(m.start());
  // 16 requests whose renders queue behind the stuck one; each connection
  // times out and leaves its place. Before the bound, every later request
  // queued one more render, without limit.
  std::vector<std::unique_ptr<client>> timed_out;
  for (int i = 0; i < 16; ++i) {
    timed_out.push_back(std::make_unique<client>(port));
    timed_out.back()->send(get("/metrics"));
  }
  for (auto& c : timed_out)
    CHECK(c->read_all().empty());
  CHECK(round_trip(port, get("/metrics")).status == 503); // at once, not queued
  stuck.release();
  CHECK(eventually([&] { return round_trip(port, get("/metrics")).status == 200; }));
  // The stuck render and the last request's (one more if that request timed
  // out on a slow machine and was retried): the 15 that waited for closed
  // connections were skipped, not run.
  CHECK(renders.load() <= 3);
}

TEST_CASE_METHOD(fixture, "the host may be a name, as node.resp-host's may",
                 "[metrics_http]") {
  // "localhost" passed the loopback check, then failed at start as "not an
  // IP address" (exit 1 where a bad option exits 2).
  metrics_http_options o;
  o.host = "localhost";
  metrics_http m{rt, o, [] { return std::string{}; }};
  CHECK(must(m.start()) != 0); // (/etc/hosts: no lookup leaves the machine)
}

TEST_CASE_METHOD(fixture, "a head that does not arrive within 5 s is closed",
                 "[metrics_http][limits]") {
  auto m = serve();
  client slow{port};
  slow.send("GET /metrics HTTP/1.1\r\nHo");
  auto start = std::chrono::steady_clock::now();
  CHECK(slow.read_all().empty());
  auto waited = std::chrono::steady_clock::now() - start;
  CHECK(waited >= std::chrono::seconds{4});
  CHECK(waited < std::chrono::seconds{9});
}

TEST_CASE_METHOD(fixture,
                 "clients sending one byte at a time hold no place past the request "
                 "deadline",
                 "[metrics_http][limits]") {
  auto m = serve("", 500ms);
  const auto request = get("/metrics");
  std::vector<std::unique_ptr<client>> slow;
  for (int i = 0; i < 16; ++i) // every place taken
    slow.push_back(std::make_unique<client>(port));
  // One byte each per round; a round waits for the server's closes (up to
  // 50 ms), so the loop ends when all are closed, or after 3 s.
  std::vector<bool> closed(slow.size(), false);
  size_t open = slow.size(), sent = 0;
  auto until = std::chrono::steady_clock::now() + 3s;
  while (open > 0 && std::chrono::steady_clock::now() < until) {
    std::vector<pollfd> fds;
    for (size_t i = 0; i < slow.size(); ++i) {
      if (!closed[i] && sent < request.size() - 1) // never the head's last byte
        slow[i]->send(request.substr(sent, 1));
      fds.push_back(pollfd{slow[i]->fd, POLLIN, 0});
    }
    ++sent;
    ::poll(fds.data(), fds.size(), 50);
    for (size_t i = 0; i < slow.size(); ++i) {
      char b;
      if (!closed[i] && (fds[i].revents & (POLLIN | POLLHUP)) &&
          ::recv(slow[i]->fd, &b, 1, MSG_DONTWAIT) <= 0) {
        closed[i] = true;
        --open;
      }
    }
  }
  CHECK(open == 0); // the head's own 5 s, not the whole request's, before
  CHECK(eventually([&] { return round_trip(port, get("/metrics")).status == 200; }));
}

TEST_CASE_METHOD(fixture, "stop closes open connections and returns", "[metrics_http]") {
  auto m = serve();
  client idle{port};
  idle.send("GET /metrics HTTP/1.1\r\n");
  m->stop();
  CHECK(idle.read_all().empty());
  m->stop(); // a second stop does nothing
  m.reset();
}

// `GET /metrics` for Prometheus: one Asio thread accepts and reads request
// heads (http_request), a second renders the text, because
// runtime::metrics_text blocks on the shards. Every connection gets one
// reply and then `Connection: close`: a scraper asks every few seconds, so
// keep-alive would save nothing worth its state.
#include "runtime/server/metrics_http.hpp"

#include <array>
#include <atomic>
#include <chrono>
#include <memory>
#include <thread>
#include <unordered_set>

#include <boost/asio.hpp>

#include <karlton/messages/errors.hpp>

#include "runtime/server/http_request.hpp"

namespace karlton::server {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

// At most this many connections at once: a scraper or two, and room for a
// person with curl. Beyond, the one that has waited longest for its request
// head makes room (`make_room`); if every one sent its head, the new one is
// closed at once.
constexpr size_t max_connections = 16;
// After the reply, what the client still sends (the rest of an oversized
// head) is read and dropped for up to this long, up to `drain_limit` bytes,
// so that closing with unread bytes does not reset the connection before
// the client read the reply. Within the request's deadline.
constexpr auto drain_timeout = std::chrono::seconds{1};
constexpr size_t drain_limit = 1 << 20;

const char* reason_of(int status) {
  switch (status) {
  case 200:
    return "OK";
  case 400:
    return "Bad Request";
  case 401:
    return "Unauthorized";
  case 404:
    return "Not Found";
  case 405:
    return "Method Not Allowed";
  case 431:
    return "Request Header Fields Too Large";
  default:
    return "Service Unavailable";
  }
}

} // namespace

struct metrics_http::impl {
  struct connection;

  impl(runtime& r, metrics_http_options o, std::function<std::string()> e)
    : rt(r), opts(std::move(o)), extra(std::move(e)), acceptor(io) {}

  runtime& rt;
  metrics_http_options opts;
  std::function<std::string()> extra;
  asio::io_context io{1};
  tcp::acceptor acceptor;
  asio::steady_timer accept_retry{io};
  // Renders run here, one at a time. A connection that timed out leaves its
  // place while its render still waits, so the queue is bounded on its own:
  // at most max_connections renders wait, and one for a closed connection is
  // skipped.
  asio::thread_pool render_pool{1};
  std::atomic<size_t> renders_waiting{0};
  std::atomic<uint64_t> auth_failures{0}; // requests refused for their password
  std::thread io_thread;
  bool started = false;
  bool stopped = false;
  // On the I/O thread only.
  std::unordered_set<std::shared_ptr<connection>> open;
  uint64_t accepted = 0;

  void accept();
  bool make_room();
  void answer(const std::shared_ptr<connection>& c);
};

struct metrics_http::impl::connection : std::enable_shared_from_this<connection> {
  connection(impl& o, tcp::socket s)
    : owner(o), number(++o.accepted), socket(std::move(s)), deadline(owner.io) {}

  impl& owner;
  uint64_t number; // in the order of acceptance
  tcp::socket socket;
  asio::steady_timer deadline;
  http_request request;
  std::array<char, 2048> buffer;
  std::string reply;
  size_t drained = 0;
  bool draining = false;           // its reply is out: owed nothing
  std::atomic<bool> closed{false}; // read by the render pool

  /// Armed once: nothing a client does moves it later.
  void start() {
    deadline.expires_after(owner.opts.request_timeout);
    deadline.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      if (!ec) self->close();
    });
    read();
  }

  void read() {
    socket.async_read_some(
      asio::buffer(buffer),
      [self = shared_from_this()](const boost::system::error_code& ec, size_t n) {
        if (ec) return self->close();
        self->request.feed({self->buffer.data(), n});
        switch (self->request.current()) {
        case http_request::state::need_more:
          return self->read();
        case http_request::state::failed:
          return self->send(self->request.error_status(), "");
        case http_request::state::complete:
          return self->owner.answer(self);
        }
      });
  }

  /// Writes the reply (`body` is the text for 200, else ignored), then
  /// drains and closes.
  void send(int status, const std::string& body) {
    if (!socket.is_open()) return;
    std::string content = status == 200 ? body : std::string{reason_of(status)} + "\n";
    reply = "HTTP/1.1 " + std::to_string(status) + " " + reason_of(status) + "\r\n";
    reply += status == 200 ? "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
                           : "Content-Type: text/plain; charset=utf-8\r\n";
    if (status == 401)
      reply += "WWW-Authenticate: Basic realm=\"karlton\", charset=\"UTF-8\"\r\n";
    if (status == 405) reply += "Allow: GET\r\n";
    reply += "Content-Length: " + std::to_string(content.size()) + "\r\n";
    reply += "Connection: close\r\n\r\n";
    reply += content;
    asio::async_write(
      socket, asio::buffer(reply),
      [self = shared_from_this()](const boost::system::error_code& ec, size_t) {
        if (ec) return self->close();
        boost::system::error_code ignored;
        self->socket.shutdown(tcp::socket::shutdown_send, ignored);
        // Draining ends within drain_timeout, and never past the deadline
        // (its wait, armed at start, still stands otherwise).
        if (self->deadline.expiry() >
            asio::steady_timer::clock_type::now() + drain_timeout) {
          self->deadline.expires_after(drain_timeout); // aborts the earlier wait
          self->deadline.async_wait([self](const boost::system::error_code& e) {
            if (!e) self->close();
          });
        }
        self->draining = true;
        self->drain();
      });
  }

  void drain() {
    socket.async_read_some(
      asio::buffer(buffer),
      [self = shared_from_this()](const boost::system::error_code& ec, size_t n) {
        self->drained += n;
        if (ec || self->drained > drain_limit) return self->close();
        self->drain();
      });
  }

  void close() {
    closed.store(true, std::memory_order_relaxed);
    boost::system::error_code ignored;
    deadline.cancel();
    socket.close(ignored);
    owner.open.erase(shared_from_this());
  }
};

void metrics_http::impl::accept() {
  acceptor.async_accept([this](const boost::system::error_code& ec, tcp::socket s) {
    if (stopped || !acceptor.is_open()) return;
    if (ec) {
      // Out of descriptors, say: try again shortly rather than spin.
      accept_retry.expires_after(std::chrono::milliseconds{100});
      accept_retry.async_wait([this](const boost::system::error_code& e) {
        if (!e && !stopped) accept();
      });
      return;
    }
    if (open.size() >= max_connections && !make_room()) {
      boost::system::error_code ignored;
      s.close(ignored);
    } else {
      auto c = std::make_shared<connection>(*this, std::move(s));
      open.insert(c);
      c->start();
    }
    accept();
  });
}

// Closes the oldest connection whose reply is out (it only drains), else
// the one that has waited longest for its request head, if any. Without it,
// 16 sockets that never sent a byte kept every scraper out for as long as
// their owner reopened them, and 16 that had their 404s, draining for a
// second each, as long as their owner sent 16 requests a second (reviews of
// 7 Dec): now holding the places takes a flood of connections faster than a
// scraper sends its head, not idle or answered ones.
bool metrics_http::impl::make_room() {
  std::shared_ptr<connection> oldest;
  auto before = [](const connection& a, const connection& b) {
    return a.draining != b.draining ? a.draining : a.number < b.number;
  };
  for (const auto& c : open)
    if ((c->draining || c->request.current() == http_request::state::need_more) &&
        (!oldest || before(*c, *oldest)))
      oldest = c;
  if (!oldest) return false;
  oldest->close(); // erases it from `open`
  return true;
}

void metrics_http::impl::answer(const std::shared_ptr<connection>& c) {
  auto& r = c->request;
  if (!opts.password.empty() &&
      !(r.has_authorization() &&
        basic_auth_matches(r.authorization(), "default", opts.password))) {
    // Counted, as the Redis protocol's wrong AUTHs are: a guesser shows.
    if (r.has_authorization()) auth_failures.fetch_add(1, std::memory_order_relaxed);
    return c->send(401, "");
  }
  if (r.path() != "/metrics") return c->send(404, "");
  if (r.method() != "GET") return c->send(405, "");
  // The runtime's calls block: render on the pool, write on the I/O thread.
  if (renders_waiting.load(std::memory_order_relaxed) >= max_connections)
    return c->send(503, "");
  renders_waiting.fetch_add(1, std::memory_order_relaxed);
  asio::post(render_pool, [this, c] {
    struct done_guard {
      std::atomic<size_t>& n;
      ~done_guard() { n.fetch_sub(1, std::memory_order_relaxed); }
    } done{renders_waiting};
    if (c->closed.load(std::memory_order_relaxed)) return; // timed out meanwhile
    auto text = rt.metrics_text();
    int status = 200;
    std::string body;
    if (text) {
      body = std::move(*text);
      body += "# HELP karlton_metrics_auth_failures_total Requests to /metrics refused "
              "for a wrong password.\n# TYPE karlton_metrics_auth_failures_total "
              "counter\nkarlton_metrics_auth_failures_total " +
              std::to_string(auth_failures.load(std::memory_order_relaxed)) + "\n";
      if (extra) body += extra();
    } else {
      status = 503;
    }
    asio::post(io, [c, status, body = std::move(body)] { c->send(status, body); });
  });
}

metrics_http::metrics_http(runtime& rt, metrics_http_options opts,
                           std::function<std::string()> extra)
  : impl_(std::make_unique<impl>(rt, std::move(opts), std::move(extra))) {}

metrics_http::~metrics_http() {
  stop();
}

caf::expected<uint16_t> metrics_http::start() {
  auto& m = *impl_;
  if (m.started)
    return make_error(errc::invalid_option, "the metrics listener already started");
  boost::system::error_code ec;
  // A name as node.resp-host takes it ("localhost", which the loopback check
  // accepts), not only an address.
  tcp::resolver resolver{m.io};
  auto found = resolver.resolve(m.opts.host, std::to_string(m.opts.port),
                                tcp::resolver::numeric_service, ec);
  if (ec || found.empty())
    return make_error(errc::invalid_option, "node.metrics-host: cannot resolve '" +
                                              m.opts.host + "': " + ec.message());
  tcp::endpoint where = found.begin()->endpoint();
  m.acceptor.open(where.protocol(), ec);
  if (!ec) m.acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) m.acceptor.bind(where, ec);
  if (!ec) m.acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    boost::system::error_code ignored;
    m.acceptor.close(ignored);
    return make_error(errc::invalid_option,
                      "the metrics listener cannot listen on " + m.opts.host + ":" +
                        std::to_string(m.opts.port) + ": " + ec.message());
  }
  auto port = m.acceptor.local_endpoint().port();
  m.started = true;
  m.accept();
  m.io_thread = std::thread{[&m] { m.io.run(); }};
  return port;
}

void metrics_http::stop() {
  auto& m = *impl_;
  if (!m.started || m.stopped) return;
  asio::post(m.io, [&m] {
    m.stopped = true;
    boost::system::error_code ignored;
    m.acceptor.close(ignored);
    m.accept_retry.cancel();
    auto open = m.open; // close() erases from m.open
    for (auto& c : open)
      c->close();
  });
  // The closes above end every pending operation, so run() returns once
  // their handlers ran; a render still going posts to a stopped context,
  // which drops it.
  m.io_thread.join();
  m.render_pool.join();
  m.stopped = true;
}

} // namespace karlton::server

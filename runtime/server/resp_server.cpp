// The RESP server's threads, acceptor, sweep timers and stop (resp.md §4.1,
// §4.4). Connections are in resp_connection.cpp.
#include "runtime/server/resp_server.hpp"

#include <algorithm>
#include <future>
#include <vector>

#include <karlton/messages/errors.hpp>
#include <karlton/runtime/cache.hpp>
#include <karlton/runtime/log.hpp>

#include "runtime/server/resp_connection.hpp"

namespace karlton::server {

using namespace detail;

namespace {

/// The sweep's period: idle timeouts are whole seconds, as Redis's.
constexpr auto sweep_period = std::chrono::seconds{1};

/// During `stop`, a connection whose last output is this old and which has
/// had no input since is taken to have nothing in flight.
constexpr auto settle_quiet = std::chrono::milliseconds{50};

/// How long `stop` lets clients that got their last replies close first.
constexpr auto linger_at_stop = std::chrono::milliseconds{100};

/// How often `stop` looks at the connections while it waits.
constexpr auto stop_poll = std::chrono::milliseconds{10};

/// After accept fails (out of descriptors, say), the pause before the next
/// try, so that a persistent failure does not spin.
constexpr auto accept_retry = std::chrono::milliseconds{100};

const std::string max_clients_reply = "-ERR max number of clients reached\r\n";

/// Runs `f` on `t`'s thread and waits for it.
template <class F>
void run_on(io_thread& t, F f) {
  std::promise<void> done;
  auto ready = done.get_future();
  asio::post(t.io, [&] {
    f();
    done.set_value();
  });
  ready.wait();
}

/// A snapshot, since closing a connection removes it from the map.
std::vector<std::shared_ptr<connection>> connections_of(io_thread& t) {
  std::vector<std::shared_ptr<connection>> out;
  out.reserve(t.connections.size());
  for (auto& [ptr, conn] : t.connections)
    out.push_back(conn);
  return out;
}

} // namespace

struct resp_server::impl {
  impl(runtime& rt, std::vector<cache> caches, resp_options opts, session_factory make) {
    shared.ctx = std::make_shared<server_context>(rt, std::move(caches), std::move(opts));
    shared.make = make ? std::move(make) : session_factory{make_session};
  }

  server_shared shared;
  std::vector<std::unique_ptr<io_thread>> threads;
  std::unique_ptr<tcp::acceptor> acceptor; // on threads[0]
  std::unique_ptr<asio::steady_timer> accept_timer;
  size_t next_thread = 0;
  bool started = false;
  bool stopped = false;

  const resp_options& options() const { return shared.ctx->options; }

  caf::expected<uint16_t> listen();
  void accept();
  void on_accept(const boost::system::error_code& ec, tcp::socket socket,
                 io_thread& target);
  void arm_sweep(io_thread& t);
  void stop(std::chrono::milliseconds grace);
  /// Polls until `done()` on every thread or `deadline`.
  template <class Done>
  void wait_until(clock::time_point deadline, Done done);
};

caf::expected<uint16_t> resp_server::impl::listen() {
  auto fail = [&](const std::string& what, const boost::system::error_code& ec) {
    return make_error(errc::invalid_option,
                      "node.resp-host/port: cannot " + what + " " + options().host + ":" +
                        std::to_string(options().port) + ": " + ec.message());
  };
  auto& io = threads.front()->io;
  boost::system::error_code ec;
  tcp::resolver resolver{io};
  auto found = resolver.resolve(options().host, std::to_string(options().port),
                                tcp::resolver::numeric_service, ec);
  if (ec || found.empty()) return fail("resolve", ec);
  auto endpoint = found.begin()->endpoint();
  acceptor = std::make_unique<tcp::acceptor>(io);
  acceptor->open(endpoint.protocol(), ec);
  if (ec) return fail("open a socket for", ec);
  acceptor->set_option(tcp::acceptor::reuse_address(true), ec);
  if (ec) return fail("set SO_REUSEADDR on", ec);
  acceptor->bind(endpoint, ec);
  if (ec) return fail("listen on", ec);
  acceptor->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return fail("listen on", ec);
  auto local = acceptor->local_endpoint(ec);
  if (ec) return fail("read the port of", ec);
  accept_timer = std::make_unique<asio::steady_timer>(io);
  return local.port();
}

void resp_server::impl::accept() {
  // Round robin: the socket is made on its I/O thread's io_context.
  auto& target = *threads[next_thread++ % threads.size()];
  acceptor->async_accept(target.io, [this, &target](auto& ec, tcp::socket socket) {
    on_accept(ec, std::move(socket), target);
  });
}

void resp_server::impl::on_accept(const boost::system::error_code& ec, tcp::socket socket,
                                  io_thread& target) {
  if (ec == asio::error::operation_aborted || !acceptor->is_open()) return;
  if (ec) {
    accept_timer->expires_after(accept_retry);
    accept_timer->async_wait([this](auto& wait_ec) {
      if (!wait_ec && acceptor->is_open()) accept();
    });
    return;
  }
  auto& counters = shared.ctx->counters;
  // Only this thread adds clients, so the check and the increment agree.
  bool full = counters.connected_clients.load() >= options().max_clients;
  if (full) {
    counters.rejected_connections.fetch_add(1, std::memory_order_relaxed);
    // Each lingering close holds a socket for up to 2 s: past the cap the
    // error goes out if the socket takes it at once, and the socket closes.
    if (counters.rejected_lingering.load() >= options().max_rejected_lingering) {
      boost::system::error_code ignored;
      socket.non_blocking(true, ignored);
      socket.write_some(asio::buffer(max_clients_reply), ignored);
      socket.close(ignored);
      accept();
      return;
    }
    counters.rejected_lingering.fetch_add(1, std::memory_order_relaxed);
  } else {
    counters.connected_clients.fetch_add(1, std::memory_order_relaxed);
    counters.total_connections.fetch_add(1, std::memory_order_relaxed);
  }
  try {
    auto conn = std::make_shared<connection>(target, shared, std::move(socket), !full);
    asio::post(target.io, [conn, full] {
      if (full)
        conn->start_rejected(max_clients_reply);
      else
        conn->start();
    });
  } catch (...) {
    // No memory for the connection: it is closed with its socket, but its
    // place must be given back.
    (full ? counters.rejected_lingering : counters.connected_clients)
      .fetch_sub(1, std::memory_order_relaxed);
  }
  accept();
}

void resp_server::impl::arm_sweep(io_thread& t) {
  t.sweep.expires_after(sweep_period);
  t.sweep.async_wait([this, &t](auto& ec) {
    if (ec || t.stopping) return;
    auto now = clock::now();
    for (auto& conn : connections_of(t))
      conn->sweep(now);
    arm_sweep(t);
  });
}

template <class Done>
void resp_server::impl::wait_until(clock::time_point deadline, Done done) {
  for (;;) {
    bool all = true;
    for (auto& t : threads) {
      bool here = true;
      run_on(*t, [&] { here = done(*t); });
      all = all && here;
    }
    if (all || clock::now() >= deadline) return;
    std::this_thread::sleep_for(stop_poll);
  }
}

void resp_server::impl::stop(std::chrono::milliseconds grace) {
  if (!started || stopped) return;
  stopped = true;
  auto deadline = clock::now() + grace;
  run_on(*threads.front(), [&] {
    boost::system::error_code ec;
    acceptor->close(ec);
    accept_timer->cancel();
  });
  // Stop reading, then wait (up to the grace) for replies in flight.
  for (auto& t : threads)
    run_on(*t, [&] {
      t->stopping = true;
      t->sweep.cancel();
    });
  wait_until(deadline, [](io_thread& t) {
    auto now = clock::now();
    bool settled = true;
    for (auto& conn : connections_of(t))
      settled = conn->settle(now, settle_quiet) && settled;
    return settled;
  });
  // Write what is ready, then close; a client that does not read its last
  // replies gets at most 200 ms more (a stuck one must not hold the stop).
  for (auto& t : threads)
    run_on(*t, [&] {
      for (auto& conn : connections_of(*t))
        conn->finish();
    });
  auto write_deadline = std::max(deadline, clock::now() + std::chrono::milliseconds{200});
  wait_until(write_deadline, [](io_thread& t) {
    for (auto& [ptr, conn] : t.connections)
      if (!conn->written()) return false;
    return true;
  });
  // Written and shut down for sending; a client that saw the EOF and closed
  // is gone already. Closing one that did not may reset it, so it gets a
  // moment (unread input at our close sends a RST).
  wait_until(clock::now() + linger_at_stop,
             [](io_thread& t) { return t.connections.empty(); });
  // Jobs not started by now are dropped: each could take a call-timeout.
  shared.pool_closing.store(true, std::memory_order_release);
  for (auto& t : threads)
    run_on(*t, [&] {
      for (auto& conn : connections_of(*t))
        conn->close_now();
    });
  for (auto& t : threads) {
    t->work.reset();
    t->io.stop();
    if (t->thread.joinable()) t->thread.join();
  }
  // Handlers still queued (a wake posted before its session's detach) run
  // once: each finds its connection closed and drops its reference.
  for (auto& t : threads) {
    t->io.restart();
    t->io.poll();
  }
  // Only the jobs already running (one per pool thread) are waited for;
  // each is a blocking call bounded by its timeout, so this is bounded.
  // Their completions find detached sessions.
  shared.pool.join();
}

resp_server::resp_server(runtime& rt, std::vector<cache> caches, resp_options opts)
  : resp_server(rt, std::move(caches), std::move(opts), session_factory{}) {}

resp_server::resp_server(runtime& rt, std::vector<cache> caches, resp_options opts,
                         session_factory make)
  : impl_(
      std::make_unique<impl>(rt, std::move(caches), std::move(opts), std::move(make))) {}

resp_server::~resp_server() {
  stop();
}

caf::expected<uint16_t> resp_server::start() {
  auto& self = *impl_;
  if (self.started)
    return make_error(errc::invalid_option, "the RESP server was started");
  if (auto err = check(self.options())) return err;
  for (uint32_t i = 0; i < self.options().threads; ++i)
    self.threads.push_back(std::make_unique<io_thread>());
  auto port = self.listen();
  if (!port) {
    self.threads.clear();
    return port;
  }
  // INFO's tcp_port: the port the kernel gave for 0. Before any session
  // exists, so no thread reads it while it changes.
  self.shared.ctx->options.port = *port;
  self.started = true;
  self.accept();
  for (auto& t : self.threads) {
    self.arm_sweep(*t);
    t->thread = std::thread{[&io = t->io] {
      // The commands this thread runs in one round of ready sockets wake
      // each shard once: the doorbells they hold ring in a handler queued
      // behind that round's (Asio runs it before it waits for more).
      held_doorbells doorbells{[&io] {
        asio::post(io, [] {
          // Null when `stop` runs what is left on its own thread; this
          // thread's holder rang everything when it ended.
          if (auto* h = held_doorbells::current()) h->ring();
        });
      }};
      // Handlers catch what they call; this keeps a surprise from ending
      // the thread (and with it every connection on it).
      for (;;) {
        try {
          io.run();
          return;
        } catch (const std::exception& e) {
          log_line(std::string{"karlton resp: I/O thread: "} + e.what());
        } catch (...) {
          log_line("karlton resp: I/O thread: unknown exception");
        }
      }
    }};
  }
  return port;
}

void resp_server::stop(std::chrono::milliseconds grace) {
  impl_->stop(grace);
}

const server_context& resp_server::context() const noexcept {
  return *impl_->shared.ctx;
}

} // namespace karlton::server

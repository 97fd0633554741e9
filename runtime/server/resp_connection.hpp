// The Asio half of the RESP server: I/O threads and connections. Included
// only by resp_server.cpp and resp_connection.cpp, so Asio stays out of every
// other translation unit.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <boost/asio.hpp>

#include "runtime/server/resp_server.hpp"
#include "runtime/server/resp_session.hpp"

namespace karlton::server::detail {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using clock = std::chrono::steady_clock;

class connection;

/// One I/O thread: its own io_context (concurrency hint 1: one thread runs
/// it, so Asio locks nothing) and the connections it owns. Everything but
/// `io` is touched only on this thread.
struct io_thread {
  asio::io_context io{1};
  /// Keeps `run` from returning while `stop` still posts to this thread.
  asio::executor_work_guard<asio::io_context::executor_type> work{io.get_executor()};
  /// The one timer of this thread: every second it closes idle connections
  /// and ends lingering closes (Seastar: one timer, never one per item).
  asio::steady_timer sweep{io};
  std::thread thread;
  std::unordered_map<connection*, std::shared_ptr<connection>> connections;
  /// Set by `stop`: no new reads, no new sessions.
  bool stopping = false;

  /// Connections woken from other threads (a shard finished their replies),
  /// handed over in one post per batch: a shard that completes the commands
  /// of 30 clients posts once, not 30 times (each post allocates, takes
  /// Asio's scheduler lock and may interrupt the reactor).
  std::mutex wake_mtx;
  std::vector<std::shared_ptr<connection>> woken;  // guarded by wake_mtx
  bool wake_posted = false;                        // guarded by wake_mtx
  std::vector<std::shared_ptr<connection>> waking; // this thread's, reused
};

/// What every connection shares; owned by the server, which outlives them
/// (`stop` closes them all and drains the io_contexts before it returns).
struct server_shared {
  std::shared_ptr<server_context> ctx;
  session_factory make;
  /// Runs the blocking calls; 2 threads (resp.md §4.1: what exists only as a
  /// blocking call must not stall an I/O thread).
  asio::thread_pool pool{2};
  /// Jobs handed to the pool and not yet started (at most blocking_queue).
  std::atomic<uint32_t> blocking_queued{0};
  /// Set by `stop`: jobs not yet started are dropped (their connections are
  /// closed), so the stop waits only for the ones running.
  std::atomic<bool> pool_closing{false};
};

/// One connection's blocking jobs: its share of the pool is one job at a
/// time, the rest wait here (one connection must not take every pool thread
/// and queue place). Shared with the pool jobs, which outlive no server but
/// may outlive the connection.
struct connection_jobs {
  std::mutex mtx;
  std::deque<std::function<void()>> waiting; // guarded by mtx
  bool in_pool = false;                      // guarded by mtx
  bool closed = false;                       // guarded by mtx
};

/// One client: a socket on its I/O thread and the session it feeds. Plays
/// `session_host`: `wake` and `run_blocking` may come from any thread; all
/// else runs on the owning I/O thread.
class connection final : public session_host,
                         public std::enable_shared_from_this<connection> {
public:
  /// `counted`: it holds one of `max_clients`' places (rejected ones do not).
  connection(io_thread& home, server_shared& shared, tcp::socket socket, bool counted);
  ~connection() override;

  /// Registers with its thread, makes the session and starts reading.
  void start();
  /// Answers `line` and closes: a client over `max_clients`.
  void start_rejected(std::string line);

  void wake() noexcept override;
  bool run_blocking(std::function<void()> job) override;

  /// The thread's sweep: the auth and idle timeouts and lingering closes.
  void sweep(clock::time_point now);
  /// Stop, first step: collect and write what is ready; true once nothing
  /// seems in flight (the last event was output, `quiet_for` ago).
  bool settle(clock::time_point now, clock::duration quiet_for);
  /// Stop, second step: write what is ready, then close.
  void finish();
  /// True once its output is written and its sending side shut (or closed).
  bool written() const noexcept { return closed_ || lingering_; }
  /// Closes the socket and detaches the session at once.
  void close_now() noexcept;

private:
  friend void run_wakes(io_thread& t);
  void read_more();
  /// Joins its I/O thread's connections and makes the socket non-blocking;
  /// false (and closed) if it cannot be.
  bool adopt();
  void on_read(const boost::system::error_code& ec, size_t n);
  void on_wake();
  void flush();
  /// One collect and send, adding what it sent to `sent_total`; true if it
  /// should run again (see flush).
  bool flush_once(size_t& sent_total);
  void on_written(const boost::system::error_code& ec);
  void shutdown_and_linger();
  void linger_read();
  bool wants_close() const noexcept;
  /// Replies collected and not yet sent.
  size_t unsent() const noexcept { return writing_out_.size() + next_out_.size(); }
  /// Over the pause bound: neither read nor collect until some is sent.
  bool output_paused() const noexcept;
  /// Brings the server's output_buffered gauge up to date with `unsent`.
  void account_output() noexcept;

  io_thread& home_;
  server_shared& shared_;
  tcp::socket socket_;
  bool counted_;
  std::shared_ptr<session> session_;
  std::array<char, 16 * 1024> read_buffer_;
  /// Double-buffered output: `writing_out_` is what a send left for an
  /// async_write, `next_out_` collects what becomes ready meanwhile.
  std::string writing_out_;
  std::string next_out_;
  std::shared_ptr<connection_jobs> jobs_ = std::make_shared<connection_jobs>();
  /// What this connection added to the output_buffered gauge.
  size_t accounted_ = 0;
  bool reading_ = false;
  bool writing_ = false;
  /// feed() said false (or a rejected client): read no more.
  bool close_after_output_ = false;
  /// `stop` closes it once what is ready is written.
  bool stop_closing_ = false;
  bool lingering_ = false;
  bool closed_ = false;
  /// Whether the last thing that happened was input (a reply may be owed).
  bool input_after_output_ = false;
  clock::time_point accepted_; ///< for auth_timeout
  clock::time_point last_active_;
  clock::time_point last_output_;
  clock::time_point linger_until_;
  /// Coalesces wakes: one place in `home_.woken` covers every completion
  /// until it runs.
  std::atomic<bool> wake_pending_{false};
};

/// On `t`'s thread: brings the connections woken since the last call up to
/// date (what `connection::wake` posts, once per batch).
void run_wakes(io_thread& t);

} // namespace karlton::server::detail

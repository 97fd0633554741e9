// One client connection of the RESP server: read -> session.feed -> collect
// -> one async_write, on the connection's own I/O thread.
#include "runtime/server/resp_connection.hpp"

namespace karlton::server::detail {

namespace {

/// How long a closing connection keeps reading (and discarding) after its
/// last reply: closing a socket with unread input sends a RST, which can
/// destroy the reply (the "-ERR Protocol error") before the client reads it.
constexpr auto linger_time = std::chrono::seconds{2};

/// An output buffer this large is given back after its write rather than
/// kept for the next one (one large GET must not pin its size forever).
constexpr size_t keep_capacity = size_t{1} << 20;

} // namespace

connection::connection(io_thread& home, server_shared& shared, tcp::socket socket,
                       bool counted)
  : home_(home), shared_(shared), socket_(std::move(socket)), counted_(counted) {}

connection::~connection() {
  // close_now ran unless the io_context dropped the connection's handlers
  // unrun; the session must not wake a host that is gone either way.
  if (session_) session_->detach();
}

void connection::start() {
  home_.connections.emplace(this, shared_from_this());
  boost::system::error_code ec;
  socket_.set_option(tcp::no_delay{true}, ec); // best effort: only latency
  last_active_ = last_output_ = clock::now();
  if (home_.stopping) {
    close_now();
    return;
  }
  try {
    session_ = shared_.make(shared_.ctx, this);
  } catch (...) {
    session_ = nullptr;
  }
  if (!session_) {
    close_now();
    return;
  }
  read_more();
}

void connection::start_rejected(std::string line) {
  home_.connections.emplace(this, shared_from_this());
  last_active_ = last_output_ = clock::now();
  next_out_ = std::move(line);
  close_after_output_ = true;
  flush();
}

void connection::wake() noexcept {
  if (wake_pending_.exchange(true, std::memory_order_acq_rel)) return;
  auto self = weak_from_this().lock();
  if (!self) return;
  try {
    asio::post(home_.io, [self = std::move(self)] { self->on_wake(); });
  } catch (...) {
    wake_pending_.store(false, std::memory_order_release); // no memory: next wake retries
  }
}

bool connection::run_blocking(std::function<void()> job) {
  auto& queued = shared_.blocking_queued;
  if (queued.fetch_add(1, std::memory_order_relaxed) >=
      shared_.ctx->options.blocking_queue) {
    queued.fetch_sub(1, std::memory_order_relaxed);
    return false;
  }
  try {
    asio::post(shared_.pool, [&queued, job = std::move(job)] {
      queued.fetch_sub(1, std::memory_order_relaxed);
      try {
        job();
      } catch (...) { // a job must not take the pool's thread down
      }
    });
  } catch (...) {
    queued.fetch_sub(1, std::memory_order_relaxed);
    return false;
  }
  return true;
}

bool connection::wants_close() const noexcept {
  // After feed() said false, the session's closing() turns true only once
  // every reply up to the last (QUIT's, the protocol error) was collected:
  // replies still in flight are not cut off.
  if (stop_closing_) return true;
  return session_ ? session_->closing() : close_after_output_;
}

void connection::read_more() {
  if (closed_ || reading_ || lingering_ || home_.stopping || close_after_output_) return;
  if (wants_close()) return;
  if (!session_ || !session_->wants_input()) return; // a wake resumes reading
  reading_ = true;
  socket_.async_read_some(
    asio::buffer(read_buffer_),
    [self = shared_from_this()](auto& ec, size_t n) { self->on_read(ec, n); });
}

void connection::on_read(const boost::system::error_code& ec, size_t n) {
  reading_ = false;
  if (closed_) return;
  if (ec) { // EOF or a reset: like Redis, replies still owed are dropped
    close_now();
    return;
  }
  if (home_.stopping) return; // stopping: no new commands
  last_active_ = clock::now();
  input_after_output_ = true;
  bool keep = false;
  try {
    keep = session_->feed({read_buffer_.data(), n});
  } catch (...) {
    keep = false;
  }
  if (!keep) close_after_output_ = true;
  flush();
  read_more();
}

void connection::on_wake() {
  wake_pending_.store(false, std::memory_order_release);
  if (closed_) return;
  flush();
  read_more();
}

void connection::flush() {
  if (closed_ || lingering_) return;
  if (session_) {
    auto before = next_out_.size();
    try {
      session_->collect(next_out_);
    } catch (...) {
      close_now();
      return;
    }
    if (next_out_.size() != before) {
      last_output_ = clock::now();
      input_after_output_ = false;
    }
  }
  // A client that does not read: its replies pile up here.
  if (writing_out_.size() + next_out_.size() > shared_.ctx->options.output_buffer_limit) {
    shared_.ctx->counters.output_limit_closes.fetch_add(1, std::memory_order_relaxed);
    close_now();
    return;
  }
  if (writing_) return;
  if (!next_out_.empty()) {
    writing_out_.swap(next_out_);
    next_out_.clear();
    writing_ = true;
    asio::async_write(
      socket_, asio::buffer(writing_out_),
      [self = shared_from_this()](auto& ec, size_t) { self->on_written(ec); });
  } else if (wants_close()) {
    shutdown_and_linger();
  }
}

void connection::on_written(const boost::system::error_code& ec) {
  writing_ = false;
  if (closed_) return;
  if (ec) {
    close_now();
    return;
  }
  last_active_ = clock::now();
  if (writing_out_.capacity() > keep_capacity)
    std::string{}.swap(writing_out_);
  else
    writing_out_.clear();
  flush();
  read_more();
}

void connection::shutdown_and_linger() {
  lingering_ = true;
  linger_until_ = clock::now() + linger_time;
  boost::system::error_code ec;
  socket_.shutdown(tcp::socket::shutdown_send, ec); // the client sees EOF now
  if (ec) {
    close_now();
    return;
  }
  if (!reading_) linger_read();
}

void connection::linger_read() {
  reading_ = true;
  socket_.async_read_some(asio::buffer(read_buffer_),
                          [self = shared_from_this()](auto& ec, size_t) {
                            self->reading_ = false;
                            if (self->closed_) return;
                            if (ec)
                              self->close_now(); // the client closed too
                            else
                              self->linger_read(); // discard
                          });
}

void connection::sweep(clock::time_point now) {
  if (closed_) return;
  if (lingering_) {
    if (now >= linger_until_) close_now();
    return;
  }
  auto idle = shared_.ctx->options.idle_timeout;
  if (idle.count() > 0 && now - last_active_ >= idle) {
    shared_.ctx->counters.idle_closes.fetch_add(1, std::memory_order_relaxed);
    close_now();
  }
}

bool connection::settle(clock::time_point now, clock::duration quiet_for) {
  if (closed_ || lingering_) return true;
  flush();
  if (closed_ || lingering_) return true;
  if (writing_ || (session_ && session_->replies_owed())) return false;
  return !input_after_output_ && now - last_output_ >= quiet_for;
}

void connection::finish() {
  if (closed_) return;
  stop_closing_ = true;
  if (lingering_) return;
  flush();
}

void connection::close_now() noexcept {
  if (closed_) return;
  closed_ = true;
  boost::system::error_code ec;
  socket_.close(ec); // cancels the pending read and write
  if (session_) {
    session_->detach(); // late completions now touch only the session
    session_ = nullptr;
  }
  if (counted_)
    shared_.ctx->counters.connected_clients.fetch_sub(1, std::memory_order_relaxed);
  // Last: this may drop the last reference (callers hold their own).
  home_.connections.erase(this);
}

} // namespace karlton::server::detail

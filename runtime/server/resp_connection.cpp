// One client connection of the RESP server: read -> session.feed -> collect
// -> one send (and an async_write for what it leaves), on the connection's
// own I/O thread.
#include "runtime/server/resp_connection.hpp"

#include "runtime/server/kept_buffers.hpp"

namespace karlton::server::detail {

namespace {

/// How long a closing connection keeps reading (and discarding) after its
/// last reply: closing a socket with unread input sends a RST, which can
/// destroy the reply (the "-ERR Protocol error") before the client reads it.
constexpr auto linger_time = std::chrono::seconds{2};

/// What one flush may send before it lets the thread's other connections
/// run (Redis: NET_MAX_WRITES_PER_EVENT, 64 KiB; a pipelined round of
/// replies here is larger, and each round costs a collect).
constexpr size_t flush_bytes = size_t{1} << 20;
constexpr int flush_rounds = 16;

} // namespace

connection::connection(io_thread& home, server_shared& shared, tcp::socket socket,
                       bool counted)
  : home_(home), shared_(shared), socket_(std::move(socket)), counted_(counted) {}

connection::~connection() {
  // close_now ran unless the io_context dropped the connection's handlers
  // unrun; the session must not wake a host that is gone either way.
  if (session_) session_->detach();
}

bool connection::adopt() {
  home_.connections.emplace(this, shared_from_this());
  boost::system::error_code ec;
  socket_.non_blocking(true, ec); // flush's send must never block the I/O thread
  if (ec) close_now();
  return !ec;
}

void connection::start() {
  if (!adopt()) return;
  boost::system::error_code ec;
  socket_.set_option(tcp::no_delay{true}, ec); // best effort: only latency
  accepted_ = last_active_ = last_output_ = clock::now();
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
  if (!adopt()) return;
  last_active_ = last_output_ = clock::now();
  next_out_ = std::move(line);
  close_after_output_ = true;
  flush();
}

void connection::wake() noexcept {
  if (wake_pending_.exchange(true, std::memory_order_acq_rel)) return;
  auto self = weak_from_this().lock();
  if (!self) return;
  auto& t = home_;
  bool post = false;
  try {
    std::lock_guard<std::mutex> guard{t.wake_mtx};
    t.woken.push_back(std::move(self));
    post = !t.wake_posted;
    t.wake_posted = true;
  } catch (...) {
    wake_pending_.store(false, std::memory_order_release); // no memory: next wake retries
    return;
  }
  if (!post) return; // the batch's post is on its way
  try {
    asio::post(t.io, [&t] { run_wakes(t); });
  } catch (...) { // no memory: the next wake posts again
    std::lock_guard<std::mutex> guard{t.wake_mtx};
    t.wake_posted = false;
  }
}

void run_wakes(io_thread& t) {
  {
    std::lock_guard<std::mutex> guard{t.wake_mtx};
    t.waking.swap(t.woken);
    t.wake_posted = false;
  }
  for (auto& c : t.waking) {
    try {
      c->on_wake();
    } catch (...) { // no memory for its next read or write: it alone closes
      c->close_now();
    }
  }
  t.waking.clear(); // keeps the capacity; may drop the last references
}

namespace {

// Runs `job` on the pool (it holds one of blocking_queue's places until it
// starts), then hands the pool the connection's next waiting job, if any.
void post_job(server_shared& shared, std::shared_ptr<connection_jobs> jobs,
              std::function<void()> job) noexcept {
  auto run = [&shared, jobs, job = std::move(job)]() mutable {
    shared.blocking_queued.fetch_sub(1, std::memory_order_relaxed);
    if (!shared.pool_closing.load(std::memory_order_acquire)) {
      try {
        job();
      } catch (...) { // a job must not take the pool's thread down
      }
    }
    job = nullptr; // its reply handle goes before the next job starts
    std::function<void()> next;
    {
      std::lock_guard<std::mutex> guard{jobs->mtx};
      if (jobs->waiting.empty() || jobs->closed ||
          shared.pool_closing.load(std::memory_order_acquire)) {
        jobs->waiting.clear();
        jobs->in_pool = false;
        return;
      }
      next = std::move(jobs->waiting.front());
      jobs->waiting.pop_front();
    }
    // The finished job's place goes to the next: no check against the limit.
    shared.blocking_queued.fetch_add(1, std::memory_order_relaxed);
    post_job(shared, jobs, std::move(next));
  };
  try {
    asio::post(shared.pool, std::move(run));
  } catch (...) { // no memory: the job and those waiting behind it are dropped
    shared.blocking_queued.fetch_sub(1, std::memory_order_relaxed);
    std::lock_guard<std::mutex> guard{jobs->mtx};
    jobs->waiting.clear();
    jobs->in_pool = false;
  }
}

} // namespace

bool connection::run_blocking(std::function<void()> job) {
  {
    std::lock_guard<std::mutex> guard{jobs_->mtx};
    if (jobs_->closed) return false;
    if (jobs_->in_pool) { // its share is taken: wait in its own line
      jobs_->waiting.push_back(std::move(job));
      return true;
    }
    auto& queued = shared_.blocking_queued;
    if (queued.fetch_add(1, std::memory_order_relaxed) >=
        shared_.ctx->options.blocking_queue) {
      queued.fetch_sub(1, std::memory_order_relaxed);
      return false;
    }
    jobs_->in_pool = true;
  }
  post_job(shared_, jobs_, std::move(job));
  return true;
}

bool connection::wants_close() const noexcept {
  // After feed() said false, the session's closing() turns true only once
  // every reply up to the last (QUIT's, the protocol error) was collected:
  // replies still in flight are not cut off.
  if (stop_closing_) return true;
  return session_ ? session_->closing() : close_after_output_;
}

bool connection::output_paused() const noexcept {
  return unsent() >= shared_.ctx->options.output_pause_bytes;
}

void connection::account_output() noexcept {
  auto now = closed_ ? 0 : unsent();
  auto& gauge = shared_.ctx->counters.output_buffered;
  if (now > accounted_)
    gauge.fetch_add(now - accounted_, std::memory_order_relaxed);
  else if (now < accounted_)
    gauge.fetch_sub(accounted_ - now, std::memory_order_relaxed);
  accounted_ = now;
}

void connection::read_more() {
  if (closed_ || reading_ || lingering_ || home_.stopping || close_after_output_) return;
  if (wants_close()) return;
  if (output_paused()) return; // on_written reads again

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
  // Sending at once can free room under the pause bound, and a paused
  // session resumes its held input only in collect: go round again until
  // the socket is full or the session has nothing more to give. Bounded, as
  // Redis bounds its writes per event: past the budget the rest goes in a
  // handler of its own, behind the other connections' ready ones.
  size_t sent = 0;
  for (int round = 0; flush_once(sent);) {
    if (++round >= flush_rounds || sent >= flush_bytes) {
      asio::post(home_.io, [self = shared_from_this()] {
        self->flush();
        self->read_more();
      });
      return;
    }
  }
}

bool connection::flush_once(size_t& sent_total) {
  if (closed_ || lingering_) return false;
  bool collected = false;
  // Over the pause bound nothing more is collected: the session then holds
  // its replies and stops running commands (resp_options::output_pause_bytes).
  const bool paused = session_ && output_paused();
  if (session_ && !paused) {
    auto before = next_out_.size();
    try {
      session_->collect(next_out_);
    } catch (...) {
      close_now();
      return false;
    }
    if (next_out_.size() != before) {
      collected = true;
      last_output_ = clock::now();
      input_after_output_ = false;
    }
  }
  // A client that does not read: its replies pile up here, and pushes and
  // late replies in the session, each bounded by the limit on its own (a sum
  // would close a client that reads one large value while the next waits).
  if (unsent() > shared_.ctx->options.output_buffer_limit ||
      (session_ && session_->output_overflowed())) {
    shared_.ctx->counters.output_limit_closes.fetch_add(1, std::memory_order_relaxed);
    close_now();
    return false;
  }
  account_output();
  if (writing_) return false; // on_written flushes again
  if (next_out_.empty()) {
    if (wants_close()) shutdown_and_linger();
    return false;
  }
  // Most replies fit the socket's send buffer: one non-blocking send, as
  // Redis does, and an asynchronous write (an allocated operation and a
  // handler run later) only for what the socket does not take now.
  boost::system::error_code ec;
  auto sent = socket_.write_some(asio::buffer(next_out_), ec);
  if (ec && ec != asio::error::would_block && ec != asio::error::try_again) {
    close_now();
    return false;
  }
  sent_total += sent;
  if (sent == next_out_.size()) {
    last_active_ = clock::now();
    clear_keeping(next_out_, kept_buffer_bytes);
    account_output();
    if (wants_close()) {
      shutdown_and_linger();
      return false;
    }
    // More may come: what this round collected may have made room, or a
    // paused session may resume now that its output left.
    return (collected || paused) && session_ && !session_->wants_input();
  }
  next_out_.erase(0, sent); // the client's side of the socket is full
  writing_out_.swap(next_out_);
  next_out_.clear();
  account_output();
  writing_ = true;
  asio::async_write(
    socket_, asio::buffer(writing_out_),
    [self = shared_from_this()](auto& ec, size_t) { self->on_written(ec); });
  return false;
}

void connection::on_written(const boost::system::error_code& ec) {
  writing_ = false;
  if (closed_) return;
  if (ec) {
    close_now();
    return;
  }
  last_active_ = clock::now();
  clear_keeping(writing_out_, kept_buffer_bytes);
  account_output();
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
  auto& opts = shared_.ctx->options;
  if (session_ && !session_->authenticated() && opts.auth_timeout.count() > 0 &&
      now - accepted_ >= opts.auth_timeout) {
    shared_.ctx->counters.auth_timeouts.fetch_add(1, std::memory_order_relaxed);
    close_now();
    return;
  }
  auto idle = opts.idle_timeout;
  if (session_ && session_->subscribed()) {
    last_active_ = now; // waiting for pushes is what it is there for
    return;
  }
  // Waiting for a reply (a KARLTON.FLUSH of a slow store), not idle: Redis
  // spares blocked clients too. One that does not read its replies is not.
  if (session_ && session_->replies_owed() && unsent() == 0) {
    last_active_ = now;
    return;
  }
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
  {
    std::lock_guard<std::mutex> guard{jobs_->mtx};
    jobs_->closed = true; // its waiting jobs would answer no one
    jobs_->waiting.clear();
  }
  account_output(); // nothing is sent any more
  if (counted_)
    shared_.ctx->counters.connected_clients.fetch_sub(1, std::memory_order_relaxed);
  else // a rejected client: its lingering place is free
    shared_.ctx->counters.rejected_lingering.fetch_sub(1, std::memory_order_relaxed);
  // Last: this may drop the last reference (callers hold their own).
  home_.connections.erase(this);
}

} // namespace karlton::server::detail

// The session: parse, check, run, and keep the replies in request order
// (plan §4.2), with the per-connection read-your-writes barrier (§4.3).
#include "runtime/server/resp_session.hpp"

#include <algorithm>
#include <functional>

#include <karlton/messages/errors.hpp>
#include <karlton/messages/value.hpp>

#include "runtime/server/session_impl.hpp"

namespace karlton::server {

namespace {

// The session whose command runs on this thread right now: a completion
// that runs inline (a direct hit) needs no wake, the drain after the
// command picks it up.
thread_local const session_impl* running_here = nullptr;

struct running_guard {
  explicit running_guard(const session_impl* s) : before(running_here) {
    running_here = s;
  }
  ~running_guard() { running_here = before; }
  const session_impl* before;
};

/// How many commands one read ahead looks at: redis-benchmark's pipelines
/// are 16 deep, and 16 lookups in flight is about what a core overlaps.
constexpr size_t read_ahead_commands = 16;

/// A karlton error as Redis's clients expect it.
void write_error(reply_writer& w, const caf::error& err) {
  if (err == errc::overloaded)
    w.error("-OVERLOADED " + describe(err));
  else if (err == errc::shut_down)
    w.error("-SHUTDOWN " + describe(err));
  else
    w.error(describe(err));
}

// No memory for an error's text. The slot holds only this command's reply,
// and a std::string holds 15 bytes without allocating: Redis's OOM error
// fits, so the client still gets exactly one reply in its place.
void write_out_of_memory(std::string& bytes) noexcept {
  bytes.clear();
  bytes.append("-OOM\r\n");
}

} // namespace

// -- deferred_reply, command_call -----------------------------------------------

void deferred_reply::fail(const caf::error& err) const {
  try {
    finish([&](reply_writer& w) { write_error(w, err); });
  } catch (...) { // the slot must close, or every later reply waits behind it
    write_out_of_memory(slot_->bytes);
    done();
  }
}

void deferred_reply::done() const {
  session_->completed(*slot_);
}

reply_writer command_call::reply() {
  return reply_writer{slot_.bytes, session.protocol()};
}

deferred_reply command_call::defer() {
  deferred_ = true;
  return deferred_reply{session.shared_from_this(), &slot_, session.protocol()};
}

void command_call::put_in_batch(std::string_view key, std::string_view bytes, ttl t) {
  if (auto err = session.add_put(slot_, key, bytes, t)) {
    auto w = reply();
    write_error(w, err);
    return;
  }
  deferred_ = true;
}

const cache& command_call::db() const {
  return session.context().caches[session.selected()];
}

// -- session_impl ---------------------------------------------------------------

session_impl::session_impl(std::shared_ptr<server_context> ctx, session_host* host)
  : ctx_(std::move(ctx)), id_(ctx_->next_client_id.fetch_add(1)),
    parser_(ctx_->options.limits), slots_(ctx_->options.max_in_flight), host_(host) {
  if (!ctx_->options.password.empty()) {
    authenticated_ = false;
    parser_.set_authenticated(false);
  }
}

session_impl::~session_impl() {
  ctx_->tracking->detach(id_);
}

void session_impl::set_authenticated() noexcept {
  authenticated_ = true;
  parser_.set_authenticated(true);
}

bool session_impl::run_blocking(std::function<void()> job) {
  // One count per job handed over, given back when the pool is done with it:
  // after it ran, with the wake that lets a session paused at max_pool_jobs
  // go on; or when it is dropped unrun or threw, without one (the pool or
  // the connection is going, and the wake could take host_mtx_ under the
  // connection's job lock, against the order run_blocking takes them in;
  // the pool lets go of a job it ran outside that lock).
  struct pool_count {
    explicit pool_count(std::weak_ptr<session_impl> s) : session(std::move(s)) {}
    pool_count(const pool_count&) = delete; // one count, one giving back
    pool_count& operator=(const pool_count&) = delete;
    std::weak_ptr<session_impl> session;
    bool ran = false;
    ~pool_count() {
      if (auto s = session.lock())
        if (s->pool_jobs_.fetch_sub(1, std::memory_order_seq_cst) == max_pool_jobs && ran)
          s->wake_host_always();
    }
  };
  std::lock_guard<std::mutex> guard{host_mtx_};
  if (host_ == nullptr) return false;
  pool_jobs_.fetch_add(1, std::memory_order_seq_cst);
  // Only the job holds the count: the pool may run it and let go of it before
  // this returns, and that wake must not come here, under host_mtx_. Refused,
  // the job goes at once, unrun.
  return host_->run_blocking(
    [job = std::move(job), count = std::make_shared<pool_count>(weak_from_this())] {
      job();
      count->ran = true;
    });
}

bool session_impl::feed(std::string_view bytes) {
  if (close_requested_) return false;
  if (has_held_ || !input_.empty()) {
    input_.append(bytes.data(), bytes.size());
  } else {
    pump_input(bytes);
    if (!bytes.empty()) input_.assign(bytes.data(), bytes.size());
  }
  if (!input_.empty()) {
    std::string_view in{input_};
    pump_input(in);
    keep_unparsed(in);
  }
  drain();
  return !close_requested_;
}

caf::error session_impl::add_put(reply_slot& slot, std::string_view key,
                                 std::string_view bytes, ttl t) {
  if (!puts_ || puts_db_ != db_) {
    send_puts();
    puts_.emplace(ctx_->caches[db_], weak_from_this());
    puts_db_ = db_;
  }
  return puts_->add(key, bytes, t, reinterpret_cast<uintptr_t>(&slot));
}

void session_impl::send_puts() {
  if (puts_ && !puts_->empty()) puts_->send();
}

void session_impl::pump_input(std::string_view& in) {
  // Whatever stops the pump (input used up, a pause, an error), the puts it
  // batched go now: a paused command may be waiting for them.
  struct send_puts_at_exit {
    session_impl& s;
    ~send_puts_at_exit() { s.send_puts(); }
  } at_exit{*this};
  if (has_held_) {
    if (run_one(held_views_) == step::paused) return;
    has_held_ = false;
    held_ = {}; // its arguments may be megabytes
    held_views_ = {};
  }
  for (size_t n = 0; !close_requested_; ++n) {
    if (n % read_ahead_commands == 0) read_ahead(in);
    auto st = parser_.next(in);
    if (st == request_parser::status::need_more) return;
    if (st == request_parser::status::error) {
      protocol_error();
      return;
    }
    if (run_one(parser_.args()) == step::paused) {
      const auto& args = parser_.args();
      held_.assign(args.begin(), args.end());
      held_views_.assign(held_.begin(), held_.end());
      has_held_ = true;
      return;
    }
  }
}

void session_impl::read_ahead(std::string_view in) const noexcept {
  // Not inside a command (`in` would not start at one), not for a node
  // without caches, not before AUTH (the GETs would be refused).
  if (!parser_.at_command_start() || ctx_->caches.empty() || !authenticated_) return;
  std::string_view keys[read_ahead_commands];
  auto n = peek_get_keys(in, keys, read_ahead_commands);
  if (n > 1) ctx_->caches[db_].prefetch(keys, n); // one read overlaps with nothing
}

void session_impl::protocol_error() {
  ctx_->counters.protocol_errors.fetch_add(1, std::memory_order_relaxed);
  closing_error_ = "-ERR ";
  closing_error_ += parser_.error();
  closing_error_ += "\r\n";
  close_requested_ = true;
}

session_impl::step session_impl::run_one(const std::vector<std::string_view>& args) {
  if (slots_.full()) return step::paused;
  // Replies already waiting for the socket: run nothing more until the host
  // has taken them, or one read of pipelined GETs of a large value would
  // build gigabytes. The host takes them only while its own unsent output is
  // under output_pause_bytes, so a client that does not read costs about
  // twice that plus one reply (resp_options).
  // Replies that wait behind an earlier one still in flight count too, or
  // pipelined GETs of a large value behind one slow SET would fill every
  // slot (max_in_flight of them).
  const auto& o = ctx_->options;
  if (output_.size() + held_bytes_ + waiting_bytes_.load(std::memory_order_relaxed) >=
        std::min(o.output_pause_bytes, o.output_buffer_limit) ||
      pool_jobs_.load(std::memory_order_seq_cst) >= max_pool_jobs)
    return step::paused;
  const auto* spec = find_command(args[0]);
  bool allowed =
    spec != nullptr && (authenticated_ || (spec->flags & command_spec::no_auth));
  bool arity_ok =
    spec != nullptr && (spec->arity >= 0 ? args.size() == size_t(spec->arity)
                                         : args.size() >= size_t(-spec->arity));
  bool runs = allowed && arity_ok;
  if (runs && must_wait(*spec, args)) return step::paused;
  ctx_->counters.total_commands.fetch_add(1, std::memory_order_relaxed);
  auto& slot = slots_.open();
  slot.protocol_before = protocol_;
  slot.subscribed_before = subscribed_;
  opened_.store(slots_.next_sequence(), std::memory_order_release);
  // The store must be seen before this command reads the table: a change
  // made after the read then finds it (keys_changed fences too) and its
  // message goes out after the reply. Default mode's registration lock
  // orders them; BCAST needs the fence (x86 may load before the store).
  if (tracks_prefixes_) std::atomic_thread_fence(std::memory_order_seq_cst);
  command_call call{*this, args, slot};
  if (spec == nullptr) {
    std::string msg = "unknown command '";
    msg.append(args[0].substr(0, 128));
    msg += "', with args beginning with: ";
    for (size_t i = 1; i < args.size() && msg.size() < 512; ++i) {
      msg += '\'';
      msg.append(args[i].substr(0, 128));
      msg += "' ";
    }
    call.reply().error(msg);
  } else if (!arity_ok) { // Redis checks the arity before the login
    call.reply().error("wrong number of arguments for '" + std::string{spec->name} +
                       "' command");
  } else if (!allowed) {
    call.reply().error("-NOAUTH Authentication required.");
  } else if (subscribed_ && protocol_ < 3 && !(spec->flags & command_spec::pubsub)) {
    call.reply().error("Can't execute '" + std::string{spec->name} +
                       "': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET "
                       "are allowed in this context");
  } else if ((spec->flags & (command_spec::read | command_spec::write)) &&
             ctx_->caches.empty()) {
    call.reply().error("no cache to serve: karlton-node has no caches");
  } else {
    auto path = path_of(*spec, args);
    if ((spec->flags & command_spec::write) || path == write_path::pool)
      note_writes(*spec, args, slot, path);
    if (tracks_reads_ && (spec->flags & command_spec::read)) track_reads(*spec, args);
    if (!(spec->flags & command_spec::batches_puts) || path != write_path::put)
      send_puts();
    running_guard guard{this};
    spec->run(call);
  }
  if (!call.deferred()) slot.ready.store(true, std::memory_order_relaxed);
  // Answered already (here, or a direct hit's callback inline): its bytes
  // count toward the output pause until drained. Replies that complete on
  // another thread later count there (completed: late bytes).
  if (slot.ready.load(std::memory_order_acquire)) {
    slot.held = slot.bytes.size();
    held_bytes_ += slot.held;
  }
  drain();
  return step::ran;
}

uint64_t session_impl::key_hash(std::string_view key) const noexcept {
  return hash_key(key) ^ (uint64_t{db_} * 0x9e3779b97f4a7c15ULL); // keyed: see hash_key
}

template <class F>
static void for_each_key(const command_spec& spec,
                         const std::vector<std::string_view>& args, F f) {
  if (spec.first_key <= 0) return;
  // 64-bit: resp-max-args allows more arguments than an int counts.
  auto n = static_cast<int64_t>(args.size());
  int64_t last = spec.last_key < 0 ? n + spec.last_key : spec.last_key;
  for (int64_t i = spec.first_key; i <= last && i < n; i += spec.step)
    f(args[size_t(i)]);
}

write_path session_impl::path_of(const command_spec& spec,
                                 const std::vector<std::string_view>& args) const {
  if ((spec.flags & command_spec::write) && !ctx_->caches.empty() &&
      ctx_->caches[db_].options().distributed == distribution::sync)
    return write_path::pool;
  return spec.path ? spec.path(args) : write_path::put;
}

// Default-mode tracking registers the keys before the read starts, so that no
// change after the read goes unreported (tracking_table.cpp says why). A key
// longer than the cache takes can never change: it is not tracked, so a
// client cannot fill the table with keys of up to a bulk string's length.
void session_impl::track_reads(const command_spec& spec,
                               const std::vector<std::string_view>& args) {
  auto db = static_cast<uint32_t>(db_);
  uint64_t longest = ctx_->caches.empty() ? 0 : ctx_->caches[db_].options().max_key_bytes;
  for_each_key(spec, args, [&](std::string_view k) {
    if (k.size() <= longest) ctx_->tracking->will_read(id_, db, k);
  });
}

bool session_impl::must_wait(const command_spec& spec,
                             const std::vector<std::string_view>& args) const {
  bool reads = spec.flags & command_spec::read;
  bool writes = spec.flags & command_spec::write;
  if (!reads && !writes) return false;
  if (whole_db_writes_ > 0) return true;
  if (writes_in_flight_.empty()) return false;
  if (spec.flags & command_spec::all_keys) return true;
  // A read waits for any write of its keys; a write only for one that went
  // another way (same-way writes stay pipelined: the shard keeps their order).
  auto path = writes && !reads ? path_of(spec, args) : write_path::put;
  bool wait = false;
  for_each_key(spec, args, [&](std::string_view k) {
    if (wait) return;
    auto* w = writes_in_flight_.find(key_hash(k));
    if (w == nullptr) return;
    wait = reads || w->path != path || path == write_path::pool;
  });
  return wait;
}

void session_impl::note_writes(const command_spec& spec,
                               const std::vector<std::string_view>& args,
                               reply_slot& slot, write_path path) {
  if (spec.flags & command_spec::all_keys) {
    slot.wrote_all = true;
    ++whole_db_writes_;
  }
  for_each_key(spec, args, [&](std::string_view k) {
    auto h = key_hash(k);
    ++slot.keys_written;
    writes_in_flight_.add(h, path);
  });
}

void session_impl::drain() {
  for (;;) {
    move_due_pushes();
    auto* slot = slots_.ready_head();
    if (slot == nullptr) break;
    output_ += slot->bytes;
    held_bytes_ -= slot->held;
    waiting_bytes_.fetch_sub(slot->late, std::memory_order_relaxed);
    if (slot->wrote_all) --whole_db_writes_;
    writes_in_flight_.remove_oldest(slot->keys_written);
    slots_.pop();
  }
  if (slots_.empty() && !closing_error_.empty()) {
    output_ += closing_error_;
    closing_error_.clear();
  }
}

void session_impl::collect(std::string& out) {
  wake_pending_.store(false, std::memory_order_seq_cst);
  drain();
  if (has_held_ || !input_.empty()) {
    std::string_view in{input_};
    pump_input(in);
    keep_unparsed(in);
    drain();
  }
  if (out.empty())
    out.swap(output_); // no copy: the connection gives large buffers back once sent
  else
    out += output_;
  clear_keeping(output_, kept_buffer_bytes);
}

size_t session_impl::buffered_bytes() const noexcept {
  auto n = parser_.memory() + input_.capacity() + output_.capacity() +
           slots_.bytes_held() + held_views_.capacity() * sizeof(std::string_view) +
           held_.capacity() * sizeof(std::string);
  for (const auto& arg : held_)
    n += arg.capacity();
  return n;
}

void session_impl::keep_unparsed(std::string_view in) {
  input_.erase(0, input_.size() - in.size());
  if (input_.empty()) clear_keeping(input_, kept_buffer_bytes);
}

bool session_impl::wants_input() const noexcept {
  return !close_requested_ && !has_held_ && input_.empty();
}

bool session_impl::closing() const noexcept {
  return close_requested_ && slots_.empty() && output_.empty() && closing_error_.empty();
}

void session_impl::completed(reply_slot& slot) noexcept {
  // On the I/O thread (a hit answered inline) run_one counts the bytes as
  // held. Elsewhere they wait, as pushes do: toward the output pause, and
  // past the output buffer limit (with the pushes) they are dropped at once
  // and the host closes the connection: pipelined MGETs of large values that
  // miss, each answered on a shard, held up to max_in_flight replies of any
  // size before.
  bool overflowed = false;
  if (running_here != this) {
    auto n = slot.bytes.size();
    if (output_overflow_.load(std::memory_order_relaxed)) { // closing: as push does
      std::string{}.swap(slot.bytes);
      n = 0;
    } else if (!add_waiting(n)) {
      std::string{}.swap(slot.bytes);
      n = 0;
      overflowed = true;
    }
    slot.late = n;
  }
  slot.ready.store(true, std::memory_order_release);
  if (overflowed) return wake_host_always(); // as in push
  wake_host();
}

void session_impl::answer(uint64_t tag, const caf::error& err) noexcept {
  auto& slot = *reinterpret_cast<reply_slot*>(static_cast<uintptr_t>(tag));
  try {
    reply_writer w{slot.bytes, 2}; // "+OK" and errors read the same in RESP3
    if (err)
      write_error(w, err);
    else
      w.simple("OK");
  } catch (...) {
    write_out_of_memory(slot.bytes);
  }
  slot.ready.store(true, std::memory_order_release);
}

void session_impl::answered() noexcept {
  wake_host();
}

void session_impl::wake_host() noexcept {
  if (running_here == this) return;
  if (!wake_pending_.exchange(true, std::memory_order_seq_cst)) wake_host_always();
}

void session_impl::wake_host_always() noexcept {
  std::lock_guard<std::mutex> guard{host_mtx_};
  if (host_ != nullptr) host_->wake();
}

void session_impl::detach() noexcept {
  {
    std::lock_guard<std::mutex> guard{host_mtx_};
    host_ = nullptr;
  }
  // The connection is gone (completions in flight may keep the session):
  // its tracking ends now, and a REDIRECT to it now fails. What it held for
  // its REDIRECT target goes there now: its own replies will not go out.
  ctx_->tracking->detach(id_);
  hand_on_redirected();
}

std::shared_ptr<session> make_session(std::shared_ptr<server_context> ctx,
                                      session_host* host) {
  auto s = std::make_shared<session_impl>(std::move(ctx), host);
  s->context().tracking->attach(s->id(), s);
  return s;
}

} // namespace karlton::server

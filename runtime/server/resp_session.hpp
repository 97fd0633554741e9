// One Redis-protocol connection without its socket: bytes in, replies out,
// in request order however the cache calls complete. The I/O side (Asio,
// resp_server) owns the socket and plays `session_host`.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <karlton/runtime/cache.hpp>
#include <karlton/runtime/runtime.hpp>

#include "runtime/server/resp_options.hpp"
#include "runtime/server/tracking_table.hpp"

namespace karlton::server {

/// The server's own counters (INFO's clients and stats sections).
struct server_counters {
  std::atomic<uint64_t> connected_clients{0};
  std::atomic<uint64_t> total_connections{0};
  std::atomic<uint64_t> total_commands{0};
  std::atomic<uint64_t> rejected_connections{0}; ///< over max_clients
  std::atomic<uint64_t> protocol_errors{0};      ///< closed after a parse error
  std::atomic<uint64_t> output_limit_closes{0};  ///< closed for not reading
  std::atomic<uint64_t> idle_closes{0};          ///< closed by idle_timeout
  std::atomic<uint64_t> auth_timeouts{0};        ///< closed by auth_timeout
  std::atomic<uint64_t> auth_failures{0};        ///< wrong passwords (AUTH, HELLO)
  /// Now: bytes of replies the connections collected and not yet sent.
  std::atomic<uint64_t> output_buffered{0};
  /// Now: rejected clients whose close lingers (at most max_rejected_lingering).
  std::atomic<uint64_t> rejected_lingering{0};
};

/// What every session of one server shares.
struct server_context {
  server_context(runtime& r, std::vector<cache> c, resp_options o)
    : rt(r), caches(std::move(c)), options(std::move(o)),
      tracking(options.tracking ? options.tracking : std::make_shared<tracking_table>()) {
  }
  runtime& rt;
  /// In `node.caches` order: database n of SELECT is caches[n]. Handles from
  /// `without_queue_wait()`, so an I/O thread never waits for queue room.
  std::vector<cache> caches;
  resp_options options;
  server_counters counters;
  /// Client-side caching: every session is known here by its id.
  std::shared_ptr<tracking_table> tracking;
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  std::atomic<uint64_t> next_client_id{1};
  /// KARLTON.FLUSH calls waiting for a flusher's answer, at most
  /// `options.blocking_queue`: each holds a small actor for up to 10 s.
  std::atomic<uint32_t> flushes_waiting{0};
};

/// What a session needs from the side that owns its socket.
class session_host {
public:
  virtual ~session_host() = default;
  /// Replies or pushes became ready, or paused execution may resume: the
  /// host calls `collect` on its I/O thread soon. Any thread; cheap when a
  /// wake is already pending.
  virtual void wake() noexcept = 0;
  /// Runs `job` on the pool for blocking calls; false if its queue is full.
  /// Never inline: the job may wait for shards whose completions wake this
  /// session, and the session holds its host lock while it hands the job over.
  virtual bool run_blocking(std::function<void()> job) = 0;
};

/// One connection's protocol state, commands and reply order. All calls but
/// `push` and `detach` come from the host's I/O thread.
class session {
public:
  virtual ~session() = default;
  /// The client id (CLIENT ID, REDIRECT targets).
  virtual uint64_t id() const noexcept = 0;
  /// Parses and runs the commands in `bytes` (as far as the in-flight bound
  /// and read-your-writes allow; the rest waits inside). False: the
  /// connection closes once `collect`ed output is written (a protocol error,
  /// QUIT, a limit).
  virtual bool feed(std::string_view bytes) = 0;
  /// Appends to `out` the replies that are ready, in request order, then
  /// queued pushes; first resumes execution that was paused.
  virtual void collect(std::string& out) = 0;
  /// False while execution is paused (too many commands in flight, a
  /// read-your-writes wait) or the session is closing: stop reading.
  virtual bool wants_input() const noexcept = 0;
  /// True once the connection should close after its output is written.
  virtual bool closing() const noexcept = 0;
  /// True while replies are owed: commands in flight, or replies not yet
  /// collected. `resp_server::stop` waits, up to its grace, until it is false.
  virtual bool replies_owed() const noexcept = 0;
  /// True while the client listens for pushes on a channel (SUBSCRIBE):
  /// the idle timeout spares it, as Redis's spares Pub/Sub clients.
  virtual bool subscribed() const noexcept = 0;
  /// True once the client may run commands: it passed AUTH, or the server
  /// has no password. `auth_timeout` closes connections while it is false.
  virtual bool authenticated() const noexcept = 0;
  /// Queues an out-of-band message (a tracking push); any thread.
  virtual void push(std::string msg) = 0;
  /// Queues `msg` for the REDIRECT target `to`: it is handed to `to` (its
  /// `push`) once this session's replies of every command opened before now
  /// went out, as its own pushes are, so that `to` never hears of a change
  /// before this client got the value it invalidates. Any thread.
  virtual void push_for(std::string msg, std::weak_ptr<session> to) = 0;
  /// True once what other threads handed this session and `collect` has not
  /// taken (queued pushes, replies completed on a shard or the pool) passed
  /// the output buffer limit: a client that does not read, while its output
  /// is paused and `collect` is not called. The host is woken and closes the
  /// connection. What passed was dropped; a client that loses its connection
  /// drops its tracked copies, so no invalidation is lost to it.
  virtual bool output_overflowed() const noexcept = 0;
  /// Memory its buffers hold now, capacity included: input not yet parsed
  /// (the parser's part of a command, and what waits while paused),
  /// output not yet collected, a held command's arguments, the reply slots.
  /// A quiet connection keeps a few hundred KiB at most, however large its
  /// past commands and replies were (`kept_buffers.hpp`). I/O thread.
  virtual size_t buffered_bytes() const noexcept = 0;
  /// The host is going away: after this returns, `wake` is never called.
  /// Completions still in flight keep the session alive and are dropped.
  virtual void detach() noexcept = 0;
};

/// A session for a new connection; `host` must outlive it or `detach` first.
std::shared_ptr<session> make_session(std::shared_ptr<server_context> ctx,
                                      session_host* host);

} // namespace karlton::server

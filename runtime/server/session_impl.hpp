// The session behind `make_session` and what its commands see of it: the
// command table's entries, the call context of one command, and the handle
// that completes a reply later from another thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <caf/error.hpp>

#include <karlton/runtime/put_batch.hpp>

#include "runtime/server/ascii.hpp"
#include "runtime/server/in_flight_writes.hpp"
#include "runtime/server/reply_slots.hpp"
#include "runtime/server/resp_parser.hpp"
#include "runtime/server/resp_session.hpp"
#include "runtime/server/resp_writer.hpp"

namespace karlton::server {

class session_impl;
class command_call;

/// What the table knows of a command (also what COMMAND INFO answers).
struct command_spec {
  enum flag : uint32_t {
    read = 1,     ///< reads its keys: waits behind this connection's writes of them
    write = 2,    ///< changes its keys: later reads of them wait for it
    no_auth = 4,  ///< allowed before AUTH
    all_keys = 8, ///< reads or writes the whole database (FLUSHDB, DBSIZE)
    pubsub = 16,  ///< allowed on a subscribed RESP2 connection
    /// may join the session's put batch when it takes the put way (plain
    /// SET); other commands send the batch first, so nothing this
    /// connection sends later reaches a shard before it
    batches_puts = 32,
  };
  std::string_view name; ///< lower case (a view knows its length: no strlen per lookup)
  int arity;             ///< Redis's: n = exactly n words, -n = at least n
  uint32_t flags;
  int first_key, last_key, step; ///< key positions, as COMMAND reports them
  void (*run)(command_call&);
  /// A write's way to its shard (see write_path); null: a put. For a read:
  /// `pool` if it runs there, and then later writes of its keys wait for it.
  write_path (*path)(const std::vector<std::string_view>& args) = nullptr;
};

/// The command table, sorted by name; `find` is case-insensitive.
const std::vector<command_spec>& command_table();
const command_spec* find_command(std::string_view name);

/// Completes one command's reply from any thread: writes it into the
/// command's slot, marks it ready and wakes the host. Copyable (it goes into
/// a std::function); completes at most once, by whichever copy finishes.
class deferred_reply {
public:
  deferred_reply() = default;
  deferred_reply(std::shared_ptr<session_impl> s, reply_slot* slot, int protocol)
    : session_(std::move(s)), slot_(slot), protocol_(protocol) {}

  int protocol() const noexcept { return protocol_; }

  /// Calls `write(reply_writer&)` on the slot, then hands the slot over.
  template <class F>
  void finish(F&& write) const {
    reply_writer w{slot_->bytes, protocol_};
    try {
      write(w);
    } catch (...) { // no half reply: the caller may still `fail`
      slot_->bytes.clear();
      throw;
    }
    done();
  }

  /// A karlton error as Redis's clients expect it.
  void fail(const caf::error& err) const;

private:
  void done() const;

  std::shared_ptr<session_impl> session_;
  reply_slot* slot_ = nullptr;
  int protocol_ = 2;
};

/// One command as its handler sees it.
class command_call {
public:
  command_call(session_impl& s, const std::vector<std::string_view>& args,
               reply_slot& slot)
    : session(s), args(args), slot_(slot) {}

  session_impl& session;
  const std::vector<std::string_view>& args;

  /// Writes the reply now (on the I/O thread).
  reply_writer reply();
  /// The reply comes later, through the returned handle.
  deferred_reply defer();
  /// Puts `bytes` under `key` through the session's put batch (the command
  /// needs `batches_puts`): replies "+OK" once stored, or the error.
  void put_in_batch(std::string_view key, std::string_view bytes, ttl t);
  /// True once `defer` was called.
  bool deferred() const noexcept { return deferred_; }

  /// The selected database.
  const cache& db() const;

private:
  reply_slot& slot_;
  bool deferred_ = false;
};

/// The session: parses, runs commands, keeps replies in order.
class session_impl final : public session,
                           public put_answers,
                           public std::enable_shared_from_this<session_impl> {
public:
  session_impl(std::shared_ptr<server_context> ctx, session_host* host);
  ~session_impl() override;

  uint64_t id() const noexcept override { return id_; }
  bool feed(std::string_view bytes) override;
  void collect(std::string& out) override;
  bool wants_input() const noexcept override;
  bool closing() const noexcept override;
  void push(std::string msg) override { queue_push(std::move(msg), {}, false); }
  void push_for(std::string msg, std::weak_ptr<session> to) override {
    queue_push(std::move(msg), std::move(to), true);
  }
  bool output_overflowed() const noexcept override {
    return output_overflow_.load(std::memory_order_acquire);
  }
  void detach() noexcept override;
  bool replies_owed() const noexcept override {
    return !slots_.empty() || !output_.empty();
  }

  // -- for commands (I/O thread) ----------------------------------------------

  server_context& context() noexcept { return *ctx_; }
  const std::shared_ptr<server_context>& context_ptr() const noexcept { return ctx_; }
  int protocol() const noexcept { return protocol_; }
  void set_protocol(int p) noexcept { protocol_ = p; }
  size_t selected() const noexcept { return db_; }
  void select(size_t db) noexcept { db_ = db; }
  bool authenticated() const noexcept override { return authenticated_; }
  void set_authenticated() noexcept;
  const std::string& name() const noexcept { return name_; }
  void set_name(std::string n) { name_ = std::move(n); }
  /// The connection closes once the replies so far are written (QUIT).
  void close_after_reply() noexcept { close_requested_ = true; }
  /// Counts a wrong password; returns how many this connection gave.
  uint32_t note_wrong_password() noexcept { return ++wrong_passwords_; }
  /// Client-side caching (commands_tracking.cpp): whether this connection's
  /// reads register their keys (default mode), and whether it is subscribed
  /// to __redis__:invalidate.
  bool tracks_reads() const noexcept { return tracks_reads_; }
  void set_tracks_reads(bool on) noexcept { tracks_reads_ = on; }
  /// BCAST: reads register nothing, so no lock orders a command's opening
  /// before its read; a fence does (see `run_one`).
  void set_tracks_prefixes(bool on) noexcept { tracks_prefixes_ = on; }
  bool subscribed() const noexcept override { return subscribed_; }
  size_t buffered_bytes() const noexcept override;
  void set_subscribed(bool on) noexcept { subscribed_ = on; }
  /// Runs `job` on the blocking pool; false (and nothing runs) when full.
  bool run_blocking(std::function<void()> job);
  /// Jobs of one connection handed to the pool and not yet done, past which
  /// it runs no more commands: each holds its command's arguments (a SET to
  /// a sync cache, its value) and they wait in the connection's own line.
  static constexpr uint32_t max_pool_jobs = 8;
  /// Adds a put to the batch, replied in `slot` (command_call::put_in_batch).
  caf::error add_put(reply_slot& slot, std::string_view key, std::string_view bytes,
                     ttl t);

  // -- for deferred_reply (any thread) ----------------------------------------

  /// Marks `slot` ready and wakes the host once per collect.
  void completed(reply_slot& slot) noexcept;
  /// A batched put's reply: its tag is its slot (put_in_batch).
  void answer(uint64_t tag, const caf::error& err) noexcept override;
  /// Wakes the host once for the batch of puts answered.
  void answered() noexcept override;

private:
  enum class step : uint8_t { ran, paused };

  void pump_input(std::string_view& in);
  /// Keeps of `input_` only `in`, the tail not parsed yet; an emptied buffer
  /// keeps at most `kept_buffer_bytes` of capacity.
  void keep_unparsed(std::string_view in);
  /// Prefetches the direct reads of the GETs among the next commands of
  /// `in` (cache::prefetch), when a pipeline holds more than one.
  void read_ahead(std::string_view in) const noexcept;
  step run_one(const std::vector<std::string_view>& args);
  /// The way of a command's keys to their shards. A read the pool runs (EXISTS
  /// of many keys) holds the later commands on its keys back as a write there
  /// does (`note_writes`): the pool keeps no order.
  write_path path_of(const command_spec& spec,
                     const std::vector<std::string_view>& args) const;
  bool must_wait(const command_spec& spec,
                 const std::vector<std::string_view>& args) const;
  void track_reads(const command_spec& spec, const std::vector<std::string_view>& args);
  /// Records the keys `slot`'s write changes, going the way `path`.
  void note_writes(const command_spec& spec, const std::vector<std::string_view>& args,
                   reply_slot& slot, write_path path);
  void drain();
  /// Sends the batched puts (put_in_batch), if any wait.
  void send_puts();
  /// Wakes the host unless a wake is pending or this is its own thread.
  void wake_host() noexcept;
  /// Wakes the host whatever is pending (an overflow must reach it).
  void wake_host_always() noexcept;
  /// Counts `n` bytes another thread hands over (a push, a reply completed
  /// elsewhere) in waiting_bytes_, unless they pass the output buffer limit:
  /// then it counts none, takes `also_dropped` bytes the caller drops with
  /// them out too, marks the overflow and returns false. One place, so that
  /// push and completed cannot drift apart on what the limit means.
  bool add_waiting(size_t n, size_t also_dropped = 0) noexcept;
  void protocol_error();
  uint64_t key_hash(std::string_view key) const noexcept;

  std::shared_ptr<server_context> ctx_;
  uint64_t id_;
  request_parser parser_;
  reply_slots slots_;
  std::string input_;             // bytes not yet parsed while paused
  std::vector<std::string> held_; // a parsed command waiting to run
  std::vector<std::string_view> held_views_;
  bool has_held_ = false;
  std::string output_;        // ready replies not yet collected
  size_t held_bytes_ = 0;     // replies written here, waiting behind the head
  std::string closing_error_; // a protocol error, after the replies before it
  int protocol_ = 2;
  size_t db_ = 0;
  bool authenticated_ = true;
  bool close_requested_ = false;
  uint32_t wrong_passwords_ = 0;
  std::string name_;
  bool tracks_reads_ = false;
  bool tracks_prefixes_ = false;
  bool subscribed_ = false;

  // Read-your-writes (§4.3): how many writes in flight touch each key hash
  // (the db mixed in) and the one way they all took, and how many whole-db
  // writes (FLUSHDB) are in flight. A write leaves them when its reply is
  // drained; its slot remembers what it wrote.
  in_flight_writes writes_in_flight_;
  uint32_t whole_db_writes_ = 0;

  // Plain SETs of the running input, sent when a command other than SET
  // runs and when the input is used up or pauses (pump_input): never held
  // beyond one pump, and always for the selected database.
  std::optional<put_batch> puts_;
  size_t puts_db_ = 0;

  std::mutex host_mtx_; // a completion's wake against detach
  session_host* host_;  // guarded by host_mtx_; null after detach
  std::atomic<bool> wake_pending_{false};

  // A push (an invalidation) goes out after the replies of every command
  // opened before it was made, never before them: a pipelined GET that read
  // a value and waits behind a slow command would otherwise reach the client
  // after the invalidation of that value, and the client would keep it for
  // good (Redis writes both in execution order). `opened_` is the count of
  // slots opened, published by the I/O thread for the pushing threads.
  struct queued_push {
    uint64_t after; // slots that go out first
    std::string msg;
    std::weak_ptr<session> to; // a REDIRECT target's (see `push_for`)
    bool redirected = false;   // for `to`, not ours
  };
  void queue_push(std::string msg, std::weak_ptr<session> to, bool redirected);
  std::vector<queued_push> take_redirected(); // out of pushes_; by push_mtx_
  static void hand_on(std::vector<queued_push> pushes);
  /// The connection is gone: what waits for REDIRECT targets goes to them.
  void hand_on_redirected();
  void move_due_pushes();
  /// Whether the client reads a push that goes out before the reply of slot
  /// `seq` (I/O thread): spelt when the change was made, it may arrive after
  /// an UNSUBSCRIBE or a HELLO that a pipelined command made meanwhile, and a
  /// client takes what it cannot read for the reply to its next command. An
  /// invalidation spelt for the protocol before a HELLO is spelt again.
  bool spell_for_client(std::string& msg, uint64_t seq);
  std::atomic<uint64_t> opened_{0};
  std::atomic<bool> has_pushes_{false}; // pushes_ is not empty
  std::mutex push_mtx_;
  std::deque<queued_push> pushes_; // guarded by push_mtx_
  size_t push_bytes_ = 0;          // of pushes_, guarded by push_mtx_
  // What other threads handed over and collect has not taken: push_bytes_
  // and the replies that completed elsewhere and wait in their slots.
  std::atomic<size_t> waiting_bytes_{0};
  std::atomic<uint32_t> pool_jobs_{0}; // run_blocking's, not yet done
  std::atomic<bool> output_overflow_{false};
};

/// Parses a base-10 int64 as Redis's string2ll: no spaces, no '+', no
/// leading zeros; false if not one or out of range.
bool parse_int64(std::string_view s, int64_t& out) noexcept;

// The command families, registered into the table by resp_commands.cpp.
void commands_conn(std::vector<command_spec>& table);
void commands_keys(std::vector<command_spec>& table);
void commands_compute(std::vector<command_spec>& table);
void commands_karlton(std::vector<command_spec>& table);
void commands_tracking(std::vector<command_spec>& table);
/// CLIENT TRACKING (commands_tracking.cpp; CLIENT dispatches to it).
void client_tracking(command_call& c);

} // namespace karlton::server

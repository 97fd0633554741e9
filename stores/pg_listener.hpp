// The LISTEN connection of the change feed (docs/plans/postgres.md §3), with
// libpq only: a blocking loop for a thread of its own that connects without
// blocking (a stop never waits on a connect), LISTENs, hands every pass's
// notifications over as one batch, proves the connection alive with a
// heartbeat query (which also reads the NOTIFY queue's use and the
// triggers' states), declares it down after 4 unanswered heartbeats and
// reconnects with backoff. The change source actor runs it; tests run it on
// a plain thread.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include <caf/expected.hpp>

#include <karlton/base/clock.hpp>
#include <karlton/messages/changes.hpp>

#include "base/backoff.hpp"

namespace karlton {

/// How a `pg_listener` connects and how often it checks.
struct pg_listener_options {
  /// A libpq connection string or `postgresql://` URI (the user's settings
  /// win over the listener's defaults: application_name karlton-listen,
  /// TCP keepalives).
  std::string conninfo;
  /// The channel the triggers notify (a validated identifier, §5).
  std::string channel = "karlton_changes";
  /// How often the connection is proven alive; 4 unanswered = down.
  std::chrono::milliseconds heartbeat{250};
  /// Backoff between connection attempts: base·2^(failures-1) up to max,
  /// with equal jitter (see `reconnect_backoff`).
  std::chrono::milliseconds reconnect_base{100}, reconnect_max{5000};
  /// A connection (and its LISTEN) not ready by then counts as failed.
  std::chrono::milliseconds connect_timeout{5000};
  /// The runtime's clock, read just before each heartbeat is sent (null:
  /// the steady clock).
  std::shared_ptr<const clock> time_source;
  /// Reads one payload (stores/pg_payload.hpp's `parse_payload`); refused
  /// payloads are counted, never delivered.
  std::function<caf::expected<pg_change>(std::string_view)> parse;
};

/// The listener's backoff without a clock of its own: base·2^(failures-1)
/// up to max after each failure. The failures count restarts only when a
/// heartbeat sent one backoff period after LISTEN took effect is answered:
/// a server that accepts LISTEN and then drops the connection would else be
/// retried every `base`, and each connection repairs every fed cache.
class reconnect_backoff {
public:
  using time_point = std::chrono::steady_clock::time_point;
  using duration = std::chrono::milliseconds;

  reconnect_backoff(duration base, duration max) : base_(base), max_(max) {}

  /// An attempt or a live connection failed: the longest wait before the
  /// next attempt (the listener waits half of it plus up to half as jitter).
  duration failed() noexcept {
    ++failures_;
    last_ = doubled_wait(base_, max_, failures_);
    return last_;
  }

  /// LISTEN took effect at `now`.
  void live(time_point now) noexcept { proven_after_ = now + last_; }

  /// A heartbeat sent at `sent` was answered.
  void heard(time_point sent) noexcept {
    if (sent >= proven_after_) failures_ = 0;
  }

  /// Failures since the last connection that proved healthy.
  uint32_t failures() const noexcept { return failures_; }

private:
  duration base_, max_, last_{0};
  uint32_t failures_ = 0;
  time_point proven_after_{};
};

/// What a `pg_listener` reports, each on the listener's thread, in the
/// order it learned it.
struct pg_listener_events {
  /// LISTEN took effect: from now on every commit's notifications arrive.
  std::function<void()> up;
  /// The connection failed or was lost (also each failed attempt).
  std::function<void(const std::string& reason)> down;
  /// One pass's notifications: those parsed, and how many were refused.
  std::function<void(std::vector<pg_change> changes, uint64_t malformed)> changes;
  /// A heartbeat sent at `sent_at` was answered: every notification queued
  /// for this connection before it was sent has been reported already.
  /// `with_changes`: the last `changes` came from the read that brought the
  /// answer, and libpq does not say which of them came after it.
  std::function<void(clock::time_point sent_at, double usage, const std::string& triggers,
                     bool with_changes)>
    heard;
  /// A barrier's heartbeat was answered (see `pg_listener::barrier`).
  std::function<void(uint64_t id)> barrier_done;
};

/// The loop. `run` on one thread; `stop` and `barrier` from any.
/// @threadsafe `stop`, `barrier`; `run` on one thread only.
class pg_listener {
public:
  pg_listener(pg_listener_options opts, pg_listener_events events);
  ~pg_listener();
  pg_listener(const pg_listener&) = delete;            ///< not copyable
  pg_listener& operator=(const pg_listener&) = delete; ///< not copyable

  /// Connects, listens and reports until `stop`; returns soon after it.
  void run();

  /// Makes `run` return (at once if it waits, else after its current step).
  void stop() noexcept;

  /// Sends a heartbeat at once (or after the one in flight) and reports
  /// `barrier_done(id)` when it is answered: by then every notification of a
  /// transaction that committed before this call has been reported (the
  /// backend sends queued notifications before a query's answer). While the
  /// connection is down, after the next connection's first heartbeat.
  void barrier(uint64_t id);

  /// The heartbeat query: the NOTIFY queue's use, and the triggers' states
  /// as `schema.table:tgname:tgenabled,...`.
  static const char* heartbeat_sql() noexcept;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace karlton

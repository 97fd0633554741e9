// The line protocol of `karlton-node --node.console`: operators debug a node
// with it, and tests and benchmarks drive nodes through it. One command per
// line on stdin; exactly one reply line per command on stdout, flushed.
// Tokens are separated by single spaces; the value of `put` is the rest of
// the line (it may hold spaces, not newlines). A value read back is escaped
// onto one line: `\\`, `\n`, `\r`, `\t` and `\xHH` for the other control
// bytes (0x00-0x1f, 0x7f), since a RESP client, loader or store may have put
// any bytes there; other bytes are as stored.
//
//   put <cache> <key> <value...>   ok | error <text>
//   putdep <cache> <key> <on,...> <value...>
//                                  ok | error <text>  (put depending on the
//                                  comma-separated names: `event:<e>` is the
//                                  event <e>, any other name a tag or key)
//   get <cache> <key>              value <bytes> | miss | error <text>
//   load <cache> <key>             value <bytes> | miss | error <text>  (get_or_load)
//   erase <cache> <key>            ok | error <text>
//   clear <cache>                  ok | error <text>
//   tag <tag>                      ok | error <text>  (invalidate_tag, synchronous)
//   emit <event>                   ok | error <text>
//   members                        members <name>,<name>,...  (sorted; none: "members ")
//   forget <node>                  ok | error <text>  (a lost member is gone for
//                                  good, on this node: runtime::forget_member)
//   stats                          stats {"node":...,"members":...,"caches":{...}}
//   sync                           ok | error <text>  (every change committed
//                                  in the database before it has reached the
//                                  caches: runtime::sync_changes)
//   changes                        changes {"listening":...,"rows_applied":...}
//                                  (the change feed's counters)
//   ping                           pong
//   quit                           bye  (then the node shuts down cleanly)
//   anything else                  error unknown command '<cmd>'
//   a line over 64 MiB + 4 KiB     error line longer than <n> bytes (dropped as
//                                  it comes: console_lines)
//
// `<text>` is `karlton::describe(err)`. A trailing '\r' is ignored, so a
// terminal or `nc` sending CRLF works too.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>

#include <caf/expected.hpp>

#include <karlton/runtime/cache.hpp>
#include <karlton/runtime/runtime.hpp>

namespace karlton::node {

/// Carries out console commands on a runtime and the caches it may name.
/// Only a node calls `start_cluster`; without it, `members` is empty and the
/// cluster counters are zero, which is what the unit tests use.
/// Not thread-safe: one thread feeds it lines.
class console {
public:
  /// `rt` must outlive the console.
  console(runtime& rt, std::map<std::string, cache> caches);

  /// The reply to one command line (without its newline).
  std::string execute(const std::string& line);

  /// True once `quit` was executed.
  bool quit_requested() const noexcept { return quit_; }

  /// The node's counters as one JSON object: the `stats` reply without its
  /// "stats " prefix.
  caf::expected<std::string> stats_json();

  /// The node's counters as one line for the log (`node.stats-interval`).
  caf::expected<std::string> stats_summary();

private:
  // One command's handler: the command's name and its arguments (nullopt:
  // none given); the reply.
  using command_handler = std::string (console::*)(std::string_view,
                                                   std::optional<std::string_view>);
  std::string put(std::string_view, std::optional<std::string_view> args);
  std::string putdep(std::string_view, std::optional<std::string_view> args);
  std::string key_command(std::string_view cmd, std::optional<std::string_view> args);
  std::string clear(std::string_view, std::optional<std::string_view> args);
  std::string signal(std::string_view cmd, std::optional<std::string_view> args);
  std::string members(std::string_view cmd, std::optional<std::string_view> args);
  std::string forget(std::string_view cmd, std::optional<std::string_view> args);
  std::string stats(std::string_view cmd, std::optional<std::string_view> args);
  std::string ping(std::string_view cmd, std::optional<std::string_view> args);
  std::string sync(std::string_view cmd, std::optional<std::string_view> args);
  std::string changes(std::string_view cmd, std::optional<std::string_view> args);
  std::string quit(std::string_view cmd, std::optional<std::string_view> args);
  static std::string no_arguments(std::string_view cmd);
  /// The cache a command names, or `unknown_cache`.
  caf::expected<cache> find(std::string_view name) const;

  runtime& rt_;
  std::map<std::string, cache> caches_;
  bool quit_ = false;
};

/// Splits what stdin delivers into the console's lines, without trusting it:
/// a line longer than `max_line` bytes is dropped as it comes (memory stays
/// bounded when no newline ever comes) and stands as one `too_long` line,
/// and each byte is searched for a newline once (re-searching the whole
/// pending line on every read was quadratic in a long line).
class console_lines {
public:
  /// The longest line kept: a `put` of the largest value a cache takes by
  /// default (64 MiB, `karlton.max-value-bytes`) plus its command and key.
  static constexpr size_t default_max_line = (size_t{64} << 20) + 4096;

  explicit console_lines(size_t max_line = default_max_line) : max_line_(max_line) {}

  /// Calls `on_line(line, too_long)` for each line `bytes` completes, in
  /// order (the newline is not part of it; `line` is empty when `too_long`),
  /// until `on_line` returns true (stop). True if it did.
  template <class F>
  bool feed(std::string_view bytes, F&& on_line) {
    while (!bytes.empty()) {
      auto nl = bytes.find('\n');
      auto part = bytes.substr(0, nl);
      if (!too_long_) {
        if (pending_.size() + part.size() > max_line_) {
          too_long_ = true;
          pending_.clear();
          pending_.shrink_to_fit();
        } else {
          pending_.append(part);
        }
      }
      if (nl == std::string_view::npos) return false;
      bytes.remove_prefix(nl + 1);
      if (end_line(on_line)) return true;
    }
    return false;
  }

  /// As `feed`, but asks `go_on()` before each line and stops when it says
  /// no: the bytes of `bytes` it took (the rest waits for a later call), or
  /// nullopt once `on_line` said stop. The node pauses its console this way
  /// while its replies wait for a reader.
  template <class F, class G>
  std::optional<size_t> feed_while(std::string_view bytes, F&& on_line, G&& go_on) {
    size_t used = 0;
    while (used < bytes.size() && go_on()) {
      auto rest = bytes.substr(used);
      auto nl = rest.find('\n');
      auto n = nl == std::string_view::npos ? rest.size() : nl + 1;
      if (feed(rest.substr(0, n), on_line)) return std::nullopt;
      used += n;
    }
    return used;
  }

  /// At EOF: a last line without its newline still counts. True if
  /// `on_line` said stop.
  template <class F>
  bool finish(F&& on_line) {
    if (pending_.empty() && !too_long_) return false;
    return end_line(on_line);
  }

private:
  template <class F>
  bool end_line(F& on_line) {
    bool too_long = too_long_;
    std::string line = std::move(pending_);
    pending_.clear();
    too_long_ = false;
    return on_line(line, too_long);
  }

  size_t max_line_;
  std::string pending_;
  bool too_long_ = false;
};

} // namespace karlton::node

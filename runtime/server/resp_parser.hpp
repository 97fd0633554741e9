// The request side of the Redis protocol (RESP2 requests; RESP3 clients send
// the same): an incremental parser that turns the bytes of one connection
// into commands, for the RESP front end of karlton-node. It knows no sockets
// and no cache: the caller feeds it whatever arrived and gets the commands.
//
// Two request forms, as redis-server accepts them:
//   multibulk  *<n>\r\n then n times $<len>\r\n<len bytes>\r\n  (what clients send)
//   inline     a line of space-separated words, quotes as in redis-cli
//              ("..." with \n \r \t \b \a \\ \" \xHH escapes, '...' with \')
//              ended by \n or \r\n  (what `nc` and health checks send)
// `*0`, negative counts (`*-1`) and blank inline lines are skipped, as Redis
// does.
//
// Memory follows the bytes received, never a declared length: a `$1000000000`
// header reserves nothing, and a command that cannot fit max_query_buffer
// fails at its header. buffered() <= max_query_buffer after every call.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace karlton::server {

/// Bounds on what one connection may make the parser hold (rule 9).
struct parser_limits {
  /// The longest argument; default 64 MiB = the default max-value-bytes, since
  /// a larger argument could not be stored anyway.
  size_t max_bulk = size_t{64} << 20;
  /// The most arguments in one command; 1M is an MSET of 512k pairs. The
  /// argument list grows with the arguments received, never with the count.
  size_t max_args = size_t{1} << 20;
  /// The longest inline line and the longest `*`/`$` header line: Redis's
  /// PROTO_INLINE_MAX_SIZE (64 KiB).
  size_t max_inline = size_t{64} << 10;
  /// The most bytes held for one incomplete command. Must exceed max_bulk, or
  /// the largest argument could never arrive.
  size_t max_query_buffer = size_t{128} << 20;
  /// Before AUTH (when a password is required), as Redis 7: at most 10
  /// arguments of at most 16 KiB ("unauthenticated multibulk length",
  /// "unauthenticated bulk length"), so that an unknown client cannot make
  /// the node hold much.
  size_t unauth_max_args = 10;
  size_t unauth_max_bulk = size_t{16} << 10;
};

/// Parses the requests of one connection, in pieces as they arrive.
/// One parser per connection; not thread-safe.
class request_parser {
public:
  enum class status : uint8_t {
    command,   ///< args() holds one command
    need_more, ///< the input is used up; call again with the next bytes
    error,     ///< the input is malformed or too large; see error()
  };

  explicit request_parser(parser_limits limits = {});

  /// Consumes bytes of `in` up to the end of the next command (advancing
  /// `in`) and keeps the state of a partial one. After `error`, every call
  /// returns `error` again and consumes nothing: the connection should send
  /// error() and close, as Redis does.
  status next(std::string_view& in);

  /// The arguments of the command next() returned, the name first. Valid
  /// until the next call of next().
  const std::vector<std::string_view>& args() const noexcept { return args_; }

  /// Redis's wording for the first error ("Protocol error: invalid bulk
  /// length"), without "ERR "; empty before any error.
  std::string_view error() const noexcept { return error_; }

  /// True between commands: the next byte fed starts a new command.
  bool at_command_start() const noexcept { return state_ == state::start; }

  /// The bytes held for the current command: at most max_query_buffer.
  size_t buffered() const noexcept { return arena_.size() + line_.size(); }

  /// The bytes the parser holds in memory, capacity included. It follows
  /// what arrived of the current command, never what its headers declared:
  /// about twice the bytes of its arguments, but up to ~25 bytes per byte
  /// for many tiny arguments (each costs an offset and a view, in vectors
  /// that may have doubled), whose count max_args bounds, plus a few KiB.
  size_t memory() const noexcept;

  /// Whether the connection has authenticated; until it has, the
  /// unauth_max_* limits apply to the headers parsed afterwards. next()
  /// stops after each command, so a session that runs AUTH before asking for
  /// the next command lifts the limits for the rest of the same pipeline, as
  /// Redis does. Initially true: a server with a password calls
  /// set_authenticated(false) first.
  void set_authenticated(bool yes) noexcept { authenticated_ = yes; }

private:
  enum class state : uint8_t {
    start,       // before the first byte of a command
    count_line,  // "*<n>\r"
    bulk_header, // "$<len>\r"
    bulk_body,   // bulk_left_ more bytes of an argument
    bulk_crlf,   // the \r\n after an argument (crlf_seen_ of it so far)
    inline_line, // an inline command up to its \n
    failed,
  };

  status fail(std::string message);
  bool take_line(std::string_view& in, std::string_view too_long);
  bool finish_count_line();
  bool finish_bulk_header();
  bool finish_inline_line();
  void forget_line();
  status complete();
  void reset_command();

  parser_limits limits_;
  state state_ = state::start;
  bool authenticated_ = true;
  bool returned_command_ = false;
  size_t args_left_ = 0;     // bulk arguments still to come in this command
  size_t bulk_left_ = 0;     // bytes still to come of the current argument
  size_t crlf_seen_ = 0;     // bytes of the \r\n after an argument seen so far
  std::string line_;         // a header or inline line, without its \n
  std::string arena_;        // the arguments of this command, back to back
  std::vector<size_t> ends_; // where each argument ends in arena_
  std::vector<std::string_view> args_;
  std::string error_;
};

/// A look ahead, for prefetching only: the keys of the GET commands among
/// the first `max` commands of `in`, which must start at a command's start,
/// in order, at most `max` of them, into `keys` (views into `in`); returns
/// how many. It reads only complete multibulk commands and stops at the
/// first byte that is anything else (an inline command, a partial or
/// malformed one): what it returns is always a prefix of the GET keys that
/// request_parser would give for the same bytes, unless the parser fails
/// first (fuzz/resp_parser.fuzz.cpp checks it). It applies no limits: it
/// holds nothing, and the parser still judges every byte.
size_t peek_get_keys(std::string_view in, std::string_view* keys, size_t max) noexcept;

} // namespace karlton::server

// The reply side of the Redis protocol: appends RESP2 or RESP3 replies to a
// connection's output buffer. The protocol is the connection's (HELLO 3
// switches it); the caller says what a reply is, the writer how it is spelled
// in that protocol:
//
//   reply           RESP2                      RESP3
//   null            $-1\r\n                    _\r\n
//   null_array      *-1\r\n                    _\r\n
//   map(n)          *<2n>\r\n (flat pairs)     %<n>\r\n
//   set(n)          *<n>\r\n                   ~<n>\r\n
//   push(n)         *<n>\r\n (pub/sub form)    ><n>\r\n
//   boolean(b)      :1\r\n / :0\r\n            #t\r\n / #f\r\n
//   double(d)       $<len>\r\n<%.17g>\r\n      ,<%.17g>\r\n  (inf, -inf, nan)
//   verbatim(f, s)  $<len>\r\n<s>\r\n          =<len+4>\r\n<f>:<s>\r\n
//
// simple, error, integer, bulk and array are the same in both.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace karlton::server {

/// Writes replies into a caller's buffer; cheap to make per reply.
class reply_writer {
public:
  /// Appends to `out` in RESP `protocol` (2 or 3).
  explicit reply_writer(std::string& out, int protocol = 2)
    : out_(out), protocol_(protocol) {}

  int protocol() const noexcept { return protocol_; }

  /// +text. A \r or \n in `text` becomes a space: a status line has no room
  /// for either.
  void simple(std::string_view text);
  /// -ERR text, or -text when `text` starts with '-' and names its own code
  /// ("-WRONGTYPE ..."), as Redis's addReplyError. \r and \n become spaces.
  void error(std::string_view text);
  void integer(int64_t n);
  /// $len\r\n then the bytes as they are (binary-safe).
  void bulk(std::string_view bytes);
  void null();
  void null_array();
  /// The header of an array of `n` replies; the caller writes the n after it.
  void array(size_t n);
  /// The header of `n` key-value pairs; the caller writes 2n replies after it.
  void map(size_t n);
  void set(size_t n);
  /// The header of an out-of-band message (RESP3) such as a tracking
  /// invalidation; in RESP2 an array, as pub/sub messages are.
  void push(size_t n);
  void boolean(bool b);
  void double_value(double d);
  /// Text with a three-letter format ("txt", "mkd"), INFO's reply in RESP3;
  /// any other format is written as "txt", which clients can read.
  void verbatim(std::string_view format, std::string_view text);

private:
  void header(char type, size_t n);
  void line(char type, std::string_view text);

  std::string& out_;
  int protocol_;
};

} // namespace karlton::server

// How much of its buffers a connection keeps between uses. Kept, a buffer
// saves an allocation per read or reply; kept whatever its size, one 48 MiB
// ECHO or GET pinned that much for the rest of the connection's life, and
// 20 idle connections that had each read 4,096 replies of 4 KB held 634 MiB
// (review of 7 Dec; `tests/server/resp_memory.test.cpp`).
#pragma once

#include <cstddef>
#include <string>

namespace karlton::server {

/// The parser's arena, the session's input and output buffers and the
/// connection's two output buffers: a pipelined round of small commands or
/// replies fits.
constexpr size_t kept_buffer_bytes = size_t{64} << 10;

/// Each reply slot's buffer: a reply of a few values fits; a pipelining
/// connection has up to `max_in_flight` (4,096) of them.
constexpr size_t kept_reply_bytes = size_t{4} << 10;

/// Empties `s`, giving its memory back if it holds more than `keep` bytes.
inline void clear_keeping(std::string& s, size_t keep) noexcept {
  if (s.capacity() > keep)
    std::string{}.swap(s);
  else
    s.clear();
}

} // namespace karlton::server

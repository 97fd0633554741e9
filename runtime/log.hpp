// karlton's own warnings (writes shutdown could not store, an actor system
// that still waits for actors when the runtime is destroyed): one sink for
// the whole process, stderr unless a service redirects it.
#pragma once

#include <functional>
#include <string>

namespace karlton {

/// Receives one warning per call, a line without its newline.
using log_sink = std::function<void(const std::string& line)>;

/// Sends karlton's warnings to `sink` from now on and returns the previous
/// sink; an empty `sink` restores the default (one line each on stderr). The
/// sink is called on whichever thread warns, possibly several at once.
/// @threadsafe
log_sink set_log_sink(log_sink sink);

/// Hands `line` to the current sink (to stderr if the sink throws).
/// @threadsafe
void log_line(const std::string& line);

} // namespace karlton

// The guard around CAF's TLS sessions: OpenSSL's error queue is emptied before
// each TLS read and write of the process (tls_error_queue.cpp says
// why); not part of the public API.
#pragma once

namespace karlton::detail {

/// Whether the process's TLS calls go through the guard: false when the
/// dynamic linker found libssl's definitions first, and then a host that fails
/// a handshake can close another of the node's TLS links.
bool tls_queue_guarded();

} // namespace karlton::detail

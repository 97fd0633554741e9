// Why this file defines OpenSSL's own SSL_read and SSL_write.
//
// OpenSSL decides what a failed call means (`SSL_get_error`) by looking first
// at the calling thread's error queue: any entry there makes it report a hard
// error (SSL_ERROR_SSL), whatever the call itself did. So OpenSSL requires the
// queue to be empty before each TLS I/O call. CAF 0.17.6's TLS session
// (libcaf_openssl, session.cpp, `handle_ssl_result`) never empties it after a
// handshake fails. All links of a node share one multiplexer thread, so when a
// host without the cluster's certificate is refused, the next link on that
// thread whose read merely has to wait (want-read) is judged failed and
// closed: the node loses a member it trusts. Measured with cluster_tls's
// certificate case under `stress --cpu 3` (ASan build): 10 of 40 runs lost a
// member; 0 of 40 with the queue emptied before each call.
//
// karlton cannot patch Debian's CAF, so the process's SSL I/O calls resolve
// here first (an executable's definitions come before shared libraries' in
// the dynamic linker's lookup), empty the thread's queue as OpenSSL asks, and
// go on to libssl's own function. (Handshake calls need no guard: OpenSSL's
// handshake state machine empties the queue itself on each call.) This
// affects every caller of the two functions in the process; for each of
// them, emptying the queue first is what OpenSSL's documentation of
// SSL_get_error demands. `tls_queue_guarded`
// tells whether the lookup found these definitions; the cluster logs a
// warning when it did not (a karlton linked as a shared library after libssl,
// say).
#ifndef _GNU_SOURCE
#define _GNU_SOURCE // RTLD_NEXT
#endif
#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "runtime/tls_error_queue.hpp"

namespace {

// libssl's definition of `name`: the next one after this object's.
template <class Fn>
Fn next_definition(const char* name) {
  auto fn = reinterpret_cast<Fn>(dlsym(RTLD_NEXT, name));
  if (fn == nullptr) {
    // libcaf_openssl, which karlton links, needs libssl: this cannot happen
    // in a karlton process, and there is no call to forward to if it did.
    std::fprintf(stderr, "karlton: fatal: no libssl definition of %s\n", name);
    std::abort();
  }
  return fn;
}

using io_fn = int (*)(SSL*, void*, int);
using write_fn = int (*)(SSL*, const void*, int);

} // namespace

// Exported even where the build hides symbols by default (the sanitized
// clang++ build): only an exported definition takes the place of libssl's.
#define KARLTON_INTERPOSED extern "C" __attribute__((visibility("default")))

KARLTON_INTERPOSED int SSL_read(SSL* ssl, void* buf, int num) {
  static const auto real = next_definition<io_fn>("SSL_read");
  ERR_clear_error();
  return real(ssl, buf, num);
}

KARLTON_INTERPOSED int SSL_write(SSL* ssl, const void* buf, int num) {
  static const auto real = next_definition<write_fn>("SSL_write");
  ERR_clear_error();
  return real(ssl, buf, num);
}

namespace karlton::detail {

bool tls_queue_guarded() {
  // What a call from libcaf_openssl resolves to: the process's first definition.
  auto first = dlsym(RTLD_DEFAULT, "SSL_read");
  return first == reinterpret_cast<void*>(&SSL_read);
}

} // namespace karlton::detail

// Why this file defines OpenSSL's own SSL_read and SSL_write.
//
// OpenSSL decides what a failed call means (`SSL_get_error`) by looking first
// at the calling thread's error queue: any entry there makes it report a hard
// error (SSL_ERROR_SSL), whatever the call itself did. So OpenSSL requires the
// queue to be empty before each TLS I/O call. CAF 0.17.6's TLS session
// (libcaf_openssl, session.cpp) empties it only inside its log statements
// (`CAF_LOG_INFO(... get_ssl_error())`), which Debian's build compiles out
// (CAF_LOG_LEVEL_QUIET), so a failed handshake leaves its errors there. All
// links of a node share one multiplexer thread, so when a host without the
// cluster's certificate is refused, the next link on that thread whose read
// or write merely has to wait is judged failed and closed: the node loses a
// member it trusts. Measured with cluster_tls's certificate case alone, ASan
// build, under `stress --cpu 3` (4 Dec): 10 of 40 and 3 of 40 runs lost a
// member without the guard (two sessions), 0 of 40 with an LD_PRELOAD
// experiment and 0 of 160 with this file.
//
// karlton cannot patch Debian's CAF, so the process's SSL I/O calls resolve
// here first, empty the thread's queue as OpenSSL asks, and go on to libssl's
// own function. They resolve here when karlton is linked into the executable
// (an executable's definitions come before shared libraries' in the dynamic
// linker's lookup; the link options on karlton in CMakeLists.txt make every
// executable that links it take this file and export both). Handshake calls need no
// guard: OpenSSL's handshake state machine empties the queue itself on each
// call. This affects every caller of the two functions in the process; for
// each of them, emptying the queue first is what OpenSSL's documentation of
// SSL_get_error demands (libpq does it itself anyway). `tls_queue_guarded`
// tells whether the lookup found these definitions; the cluster logs a
// warning when it did not (karlton in a shared object loaded after libssl).
#ifndef _GNU_SOURCE
#define _GNU_SOURCE // RTLD_NEXT, dladdr
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

using read_fn = int (*)(SSL*, void*, int);
using write_fn = int (*)(SSL*, const void*, int);

// The object (the executable, or a shared object) that `address` was loaded
// from; null for none.
void* loaded_object_of(const void* address) {
  Dl_info info{};
  return address != nullptr && dladdr(address, &info) != 0 ? info.dli_fbase : nullptr;
}

} // namespace

// Exported even where the build hides symbols by default (the sanitized
// clang++ build): only an exported definition takes the place of libssl's.
#define KARLTON_INTERPOSED extern "C" __attribute__((visibility("default")))

KARLTON_INTERPOSED int SSL_read(SSL* ssl, void* buf, int num) {
  static const auto real = next_definition<read_fn>("SSL_read");
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
  // What a call from libcaf_openssl resolves to (the process's first
  // definition) must come from the object this file is in. Compared by
  // object, not by address: in position-independent code `&SSL_read` is
  // itself looked up, and would equal any first definition.
  auto here = loaded_object_of(reinterpret_cast<const void*>(&tls_queue_guarded));
  return here != nullptr && loaded_object_of(dlsym(RTLD_DEFAULT, "SSL_read")) == here &&
         loaded_object_of(dlsym(RTLD_DEFAULT, "SSL_write")) == here;
}

} // namespace karlton::detail

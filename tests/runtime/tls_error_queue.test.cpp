// The guard around the process's TLS calls (runtime/tls_error_queue.cpp): a
// handshake that fails on one link must not make the next TLS call of another
// link on the same thread, which only has to wait for bytes, look failed. CAF
// 0.17.6 closes a link on such a false failure. Replayed here on one thread with
// TLS sessions over memory buffers, in the order CAF's multiplexer thread makes
// the calls. (A handshake under way needs no guard: OpenSSL's handshake empties
// the queue itself.)
#include <catch2/catch.hpp>

#include <memory>
#include <string>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "runtime/tls_error_queue.hpp"

namespace {

// One end of a TLS connection whose bytes go through memory buffers: reading
// from an empty one asks to retry, as a non-blocking socket does.
class tls_end {
public:
  explicit tls_end(bool accepting)
    : ctx_{anonymous_context(), SSL_CTX_free}, ssl_{SSL_new(ctx_.get()), SSL_free} {
    auto in = BIO_new(BIO_s_mem());
    auto out = BIO_new(BIO_s_mem());
    BIO_set_mem_eof_return(in, -1);
    BIO_set_mem_eof_return(out, -1);
    in_ = in;
    SSL_set_bio(ssl_.get(), in, out); // the session owns both now
    if (accepting)
      SSL_set_accept_state(ssl_.get());
    else
      SSL_set_connect_state(ssl_.get());
  }

  SSL* ssl() { return ssl_.get(); }

  // Moves what this end has sent to the other end.
  void send_to(tls_end& other) {
    char buf[4096];
    auto out = SSL_get_wbio(ssl_.get());
    for (int n; (n = BIO_read(out, buf, sizeof(buf))) > 0;)
      other.arrive(std::string(buf, static_cast<size_t>(n)));
  }

  // Bytes as if they had arrived from the other end.
  void arrive(const std::string& bytes) {
    BIO_write(in_, bytes.data(), static_cast<int>(bytes.size()));
  }

  // What OpenSSL says a call that returned `ret` means.
  int outcome(int ret) { return SSL_get_error(ssl_.get(), ret); }

private:
  // TLS 1.2 without certificates, as CAF's TLS without authentication: the
  // test needs no keys, and OpenSSL's error handling is the same.
  static SSL_CTX* anonymous_context() {
    auto ctx = SSL_CTX_new(TLS_method());
    REQUIRE(ctx != nullptr);
    SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
    if (SSL_CTX_set_cipher_list(ctx, "AECDH-AES256-SHA@SECLEVEL=0") != 1) {
      SSL_CTX_free(ctx);
      FAIL("this OpenSSL has no anonymous ECDH cipher (AECDH-AES256-SHA)");
    }
    return ctx;
  }

  std::unique_ptr<SSL_CTX, void (*)(SSL_CTX*)> ctx_;
  std::unique_ptr<SSL, void (*)(SSL*)> ssl_;
  BIO* in_ = nullptr;
};

// A handshake refused on this thread: what a host that does not speak TLS, or
// shows no certificate of the cluster's authority, leaves behind.
void refuse_a_stranger() {
  tls_end stranger{true};
  stranger.arrive("GET / HTTP/1.1\r\nHost: karlton\r\n\r\n");
  auto ret = SSL_accept(stranger.ssl());
  REQUIRE(ret <= 0);
  REQUIRE(stranger.outcome(ret) == SSL_ERROR_SSL); // a real failure still is one
  REQUIRE(ERR_peek_error() != 0);                  // and it left the queue full
}

// Two ends of a link whose handshake is done.
void complete_handshake(tls_end& client, tls_end& server) {
  for (int round = 0; round < 10; ++round) {
    auto c = SSL_connect(client.ssl());
    client.send_to(server);
    auto s = SSL_accept(server.ssl());
    server.send_to(client);
    if (c == 1 && s == 1) return;
  }
  FAIL("no TLS handshake over memory buffers in 10 rounds");
}

} // namespace

TEST_CASE("the process's TLS calls resolve to karlton's guard of OpenSSL's error queue") {
  CHECK(karlton::detail::tls_queue_guarded());
}

TEST_CASE(
  "after a refused TLS handshake, the next TLS call on the thread that only has to "
  "wait is not taken for a failure") {
  ERR_clear_error(); // whatever an earlier case on this thread left
  tls_end client{false};
  tls_end server{true};
  char buf[64];
  SECTION("a read on an established link") {
    complete_handshake(client, server);
    refuse_a_stranger();
    auto ret = SSL_read(server.ssl(), buf, sizeof(buf));
    CHECK(server.outcome(ret) == SSL_ERROR_WANT_READ);
  }
  SECTION("a write on an established link whose other end does not read yet") {
    complete_handshake(client, server);
    // A send buffer of 256 bytes, as a socket's that is full.
    BIO* mine = nullptr;
    BIO* theirs = nullptr;
    REQUIRE(BIO_new_bio_pair(&mine, 256, &theirs, 256) == 1);
    std::unique_ptr<BIO, int (*)(BIO*)> other_half{theirs, BIO_free};
    SSL_set0_wbio(client.ssl(), mine); // the session owns this half now
    std::string chunk(100, 'x');
    int ret = 1;
    for (int n = 0; n < 10 && ret > 0; ++n)
      ret = SSL_write(client.ssl(), chunk.data(), 100);
    REQUIRE(client.outcome(ret) == SSL_ERROR_WANT_WRITE);
    refuse_a_stranger();
    ret = SSL_write(client.ssl(), chunk.data(), 100);
    CHECK(client.outcome(ret) == SSL_ERROR_WANT_WRITE);
  }
  ERR_clear_error(); // leave the thread as the next case expects it
}

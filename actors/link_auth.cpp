#include "actors/link_auth.hpp"

#include <initializer_list>
#include <memory>
#include <utility>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/opensslv.h>

namespace karlton {

namespace {

// SHA-256, fetched once: OpenSSL 3 looks `EVP_sha256()` up in its provider
// on every use (measured: 402 ns for a 72-byte digest, 158 ns fetched).
const EVP_MD* sha256() {
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
  static EVP_MD* fetched = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  if (fetched != nullptr) return fetched;
#endif
  return EVP_sha256();
}

// This thread's digest context, reused: one less allocation per hash.
EVP_MD_CTX* digest_context() {
  thread_local std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx{EVP_MD_CTX_new(),
                                                                      &EVP_MD_CTX_free};
  return ctx.get();
}

// SHA-256 of fields fed one by one, each string prefixed by its length, so
// no two different contents encode to the same bytes. The framing is kept
// short because a batch's invalidations are hashed on the hot path (about
// 37 bytes for a key of 11 bytes in cache "users", 64 with 8-byte lengths):
// a length takes 4 bytes (big-endian), or 0xffffffff and 8 bytes if it does
// not fit, which no message can hold (BASP frames are under 4 GiB). Fields
// gather in this thread's buffer, hashed every few KiB: one
// EVP_DigestUpdate per field costs more than hashing a short one.
class content_hash {
public:
  content_hash() : ctx_(digest_context()), buf_(buffer()) {
    ok_ = ctx_ != nullptr && EVP_DigestInit_ex(ctx_, sha256(), nullptr) == 1;
    buf_.clear();
  }

  void u8(uint8_t x) { buf_ += static_cast<char>(x); }

  void u64(uint64_t x) {
    char bytes[8];
    for (int i = 0; i < 8; ++i)
      bytes[i] = static_cast<char>((x >> (56 - 8 * i)) & 0xff);
    buf_.append(bytes, 8);
  }

  void field(const std::string& x) {
    if (x.size() < 0xffffffff) {
      char bytes[4];
      for (int i = 0; i < 4; ++i)
        bytes[i] = static_cast<char>((x.size() >> (24 - 8 * i)) & 0xff);
      buf_.append(bytes, 4);
    } else {
      buf_.append(4, '\xff');
      u64(x.size());
    }
    if (x.size() >= flush_at) {
      flush();
      update(x.data(), x.size());
      return;
    }
    buf_ += x;
    if (buf_.size() >= flush_at) flush();
  }

  // Empty if OpenSSL failed (allocation): a digest no MAC check accepts,
  // since `same_mac` refuses an empty MAC and the MAC of an empty digest
  // differs from the sender's.
  std::string finish() {
    flush();
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (!ok_ || EVP_DigestFinal_ex(ctx_, out, &len) != 1) return {};
    return std::string{reinterpret_cast<const char*>(out), len};
  }

private:
  // Hashed in pieces of about 4 KiB: large enough that the calls cost
  // little, small enough to stay in L1.
  static constexpr size_t flush_at = 4096;

  static std::string& buffer() {
    thread_local std::string buf = [] {
      std::string b;
      b.reserve(flush_at + 64);
      return b;
    }();
    return buf;
  }

  void update(const char* data, size_t n) {
    if (ok_ && n > 0) ok_ = EVP_DigestUpdate(ctx_, data, n) == 1;
  }

  void flush() {
    update(buf_.data(), buf_.size());
    buf_.clear();
  }

  // This thread's context and buffer: one content_hash at a time per thread.
  EVP_MD_CTX* ctx_;
  std::string& buf_;
  bool ok_ = false;
};

const char* label(link_message kind) {
  switch (kind) {
  case link_message::join:
    return "karlton-v3 join";
  case link_message::join_reply:
    return "karlton-v3 join reply";
  case link_message::batch:
    return "karlton-v3 batch";
  case link_message::leave:
    return "karlton-v3 leave";
  case link_message::ack:
    return "karlton-v3 ack";
  }
  return "karlton-v3 unknown";
}

void put_member(content_hash& h, const member_info& m) {
  h.field(m.name);
  h.field(m.host);
  h.u64(m.port);
  h.u64(m.incarnation);
}

// One SHA-256 of `parts`, in order, on this thread's context; empty if
// OpenSSL failed.
std::string sha256_of(std::initializer_list<std::pair<const void*, size_t>> parts) {
  auto* ctx = digest_context();
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  bool ok = ctx != nullptr && EVP_DigestInit_ex(ctx, sha256(), nullptr) == 1;
  for (auto& [data, n] : parts)
    ok = ok && EVP_DigestUpdate(ctx, data, n) == 1;
  if (!ok || EVP_DigestFinal_ex(ctx, out, &len) != 1) return {};
  return std::string{reinterpret_cast<const char*>(out), len};
}

} // namespace

std::string fast_hmac_sha256(const std::string& key, const std::string& message) {
  // RFC 2104 over SHA-256's 64-byte block: H(K ^ opad | H(K ^ ipad | m)),
  // a longer key hashed first. OpenSSL 3's HMAC() fetches its algorithms by
  // name on every call: 1,245 ns for a link MAC, this 320 ns.
  constexpr size_t block = 64;
  std::string k = key.size() > block ? sha256_of({{key.data(), key.size()}}) : key;
  if (key.size() > block && k.empty()) return {};
  unsigned char ipad[block], opad[block];
  for (size_t i = 0; i < block; ++i) {
    auto c = i < k.size() ? static_cast<unsigned char>(k[i]) : 0;
    ipad[i] = c ^ 0x36;
    opad[i] = c ^ 0x5c;
  }
  auto inner = sha256_of({{ipad, block}, {message.data(), message.size()}});
  if (inner.empty()) return {};
  return sha256_of({{opad, block}, {inner.data(), inner.size()}});
}

std::string batch_digest(const invalidation_batch& b) {
  content_hash h;
  h.field(b.origin);
  h.u64(b.incarnation);
  h.u64(b.first_seq);
  h.u64(b.items.size());
  for (auto& x : b.items) {
    h.u8(static_cast<uint8_t>(x.kind));
    h.field(x.cache);
    h.field(x.name);
    h.field(x.data);
    h.u64(static_cast<uint64_t>(x.issued_ns));
  }
  return h.finish();
}

std::string members_digest(const std::vector<member_info>& members, uint64_t next_seq) {
  content_hash h;
  h.u64(members.size());
  for (auto& m : members)
    put_member(h, m);
  h.u64(next_seq);
  return h.finish();
}

std::string number_digest(uint64_t x) {
  content_hash h;
  h.u64(x);
  return h.finish();
}

std::string link_mac(const std::string& key, link_message kind, uint64_t counter,
                     const std::string& digest, uint64_t sent, uint64_t echo) {
  // Framed as the content is: label, numbers and digest can never run into
  // each other.
  std::string message;
  message.reserve(80);
  auto put_u64 = [&message](uint64_t x) {
    for (int shift = 56; shift >= 0; shift -= 8)
      message += static_cast<char>((x >> shift) & 0xff);
  };
  std::string kind_label = label(kind);
  put_u64(kind_label.size());
  message += kind_label;
  put_u64(counter);
  put_u64(sent);
  put_u64(echo);
  put_u64(digest.size());
  message += digest;
  return fast_hmac_sha256(key, message);
}

bool same_mac(const std::string& a, const std::string& b) {
  return !a.empty() && a.size() == b.size() &&
         CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

link_tag first_tag(const link_keys& keys, link_message kind, const std::string& digest) {
  return link_tag{0, link_mac(keys.send, kind, 0, digest)};
}

bool check_first_tag(const link_keys& keys, link_message kind, const std::string& digest,
                     const link_tag& t) {
  return t.counter == 0 && !digest.empty() &&
         same_mac(t.mac, link_mac(keys.receive, kind, 0, digest));
}

// -- peer_link ------------------------------------------------------------------

void peer_link::established(handshake_role my_role, link_keys keys) {
  auto i = my_role == handshake_role::initiator ? 0 : 1;
  replaced_[i] = std::move(links_[i]);
  links_[i] = one{};
  links_[i].keys = std::move(keys);
  links_[i].set = true;
  current_ = i;
}

void peer_link::withdraw(handshake_role my_role) {
  auto i = my_role == handshake_role::initiator ? 0 : 1;
  links_[i] = std::move(replaced_[i]);
  replaced_[i] = one{};
  current_ = links_[1 - i].set ? 1 - i : links_[i].set ? i : -1;
}

peer_link::sealed peer_link::seal(link_message kind, const std::string& digest,
                                  uint64_t sent, uint64_t echo) {
  if (current_ < 0) return {}; // no link: a tag nobody accepts
  auto& l = links_[current_];
  auto counter = ++l.sent;
  return {link_tag{counter, link_mac(l.keys.send, kind, counter, digest, sent, echo),
                   sent, echo},
          link_mac(l.keys.receive, link_message::ack, counter, {})};
}

std::optional<std::string> peer_link::open(link_message kind, const std::string& digest,
                                           const link_tag& t) {
  if (digest.empty()) return std::nullopt;
  auto opens = [&](one& l) {
    // The counter first: a replay costs no HMAC.
    return l.set && fresh(l, t.counter) &&
           same_mac(t.mac,
                    link_mac(l.keys.receive, kind, t.counter, digest, t.sent, t.echo));
  };
  for (int i = 0; i < 2; ++i) {
    auto* l = &links_[i];
    if (opens(*l))
      replaced_[i] = one{}; // the other side has the new keys: the old go
    else if (opens(replaced_[i]))
      l = &replaced_[i];
    else
      continue;
    take(*l, t.counter);
    return link_mac(l->keys.send, link_message::ack, t.counter, {});
  }
  return std::nullopt;
}

bool peer_link::plausible(uint64_t counter) const noexcept {
  for (int i = 0; i < 2; ++i)
    if ((links_[i].set && fresh(links_[i], counter)) ||
        (replaced_[i].set && fresh(replaced_[i], counter)))
      return true;
  return false;
}

bool peer_link::fresh(const one& l, uint64_t counter) {
  if (counter == 0) return false; // a join's or a reply's, never a counted message
  if (counter > l.received) return true;
  auto back = l.received - counter;
  return back < replay_window && (l.seen & (uint64_t{1} << back)) == 0;
}

void peer_link::take(one& l, uint64_t counter) {
  if (counter > l.received) {
    auto shift = counter - l.received;
    l.seen = shift >= replay_window ? 0 : l.seen << shift;
    l.seen |= 1;
    l.received = counter;
  } else {
    l.seen |= uint64_t{1} << (l.received - counter);
  }
}

} // namespace karlton

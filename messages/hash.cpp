#include "messages/hash.hpp"

#include <karlton/messages/cluster.hpp>
#include <karlton/messages/value.hpp>

#include <sys/random.h>

#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>

namespace karlton::hashing {

namespace {

inline uint64_t rotl(uint64_t x, int b) noexcept {
  return (x << b) | (x >> (64 - b));
}

struct sip_state {
  uint64_t v0, v1, v2, v3;

  explicit sip_state(sip_key k) noexcept
    : v0(k.k0 ^ 0x736f6d6570736575ull), v1(k.k1 ^ 0x646f72616e646f6dull),
      v2(k.k0 ^ 0x6c7967656e657261ull), v3(k.k1 ^ 0x7465646279746573ull) {}

  void round() noexcept {
    v0 += v1;
    v1 = rotl(v1, 13);
    v1 ^= v0;
    v0 = rotl(v0, 32);
    v2 += v3;
    v3 = rotl(v3, 16);
    v3 ^= v2;
    v0 += v3;
    v3 = rotl(v3, 21);
    v3 ^= v0;
    v2 += v1;
    v1 = rotl(v1, 17);
    v1 ^= v2;
    v2 = rotl(v2, 32);
  }
};

template <int C, int D>
uint64_t sip_hash(std::string_view bytes, sip_key key) noexcept {
  sip_state s{key};
  auto compress = [&](uint64_t m) {
    s.v3 ^= m;
    for (int i = 0; i < C; ++i)
      s.round();
    s.v0 ^= m;
  };
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  size_t n = bytes.size();
  for (; n >= 8; p += 8, n -= 8) {
    uint64_t m = 0;
    for (int i = 7; i >= 0; --i) // little-endian on any host
      m = (m << 8) | p[i];
    compress(m);
  }
  uint64_t last = uint64_t{bytes.size() & 0xff} << 56;
  for (size_t i = 0; i < n; ++i)
    last |= uint64_t{p[i]} << (8 * i);
  compress(last);
  s.v2 ^= 0xff;
  for (int i = 0; i < D; ++i)
    s.round();
  return s.v0 ^ s.v1 ^ s.v2 ^ s.v3;
}

sip_key random_key() noexcept {
  sip_key k;
  unsigned char buf[sizeof k.k0 + sizeof k.k1];
  size_t got = 0;
  while (got < sizeof buf) {
    auto n = ::getrandom(buf + got, sizeof buf - got, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  if (got < sizeof buf) { // no getrandom (an old kernel or a seccomp filter)
    try {
      std::random_device rd;
      for (auto& b : buf)
        b = static_cast<unsigned char>(rd());
    } catch (...) {
      // No entropy source at all: the clock and an address at least differ
      // between runs (weaker, and said so).
      std::fprintf(stderr, "karlton: no random source; the hash key is guessable\n");
      auto t = static_cast<uint64_t>(
        std::chrono::steady_clock::now().time_since_epoch().count());
      auto a = reinterpret_cast<uintptr_t>(&got);
      auto k0 = splitmix64(t), k1 = splitmix64(t ^ a);
      std::memcpy(buf, &k0, sizeof k0);
      std::memcpy(buf + sizeof k0, &k1, sizeof k1);
    }
  }
  std::memcpy(&k.k0, buf, sizeof k.k0);
  std::memcpy(&k.k1, buf + sizeof k.k0, sizeof k.k1);
  return k;
}

sip_key make_process_key() noexcept {
  sip_key k;
  if (const char* seed = std::getenv("KARLTON_HASH_SEED")) {
    if (key_from_seed(seed, k)) return k;
    std::fprintf(stderr,
                 "karlton: KARLTON_HASH_SEED='%.64s' is not an integer; hashing with a "
                 "random key\n",
                 seed);
  }
  return random_key();
}

} // namespace

uint64_t sip_hash_1_3(std::string_view bytes, sip_key key) noexcept {
  return sip_hash<1, 3>(bytes, key);
}

uint64_t sip_hash_2_4(std::string_view bytes, sip_key key) noexcept {
  return sip_hash<2, 4>(bytes, key);
}

bool key_from_seed(const char* text, sip_key& out) noexcept {
  // Digits only (strtoull alone would take leading spaces, a sign, and "010"
  // as octal): decimal, or hex after 0x.
  if (text == nullptr) return false;
  int base = 10;
  const char* digits = text;
  if (text[0] == '0' && (text[1] == 'x' || text[1] == 'X')) {
    base = 16;
    digits = text + 2;
  }
  if (*digits == '\0') return false;
  for (const char* p = digits; *p != '\0'; ++p)
    if (!(std::isdigit(static_cast<unsigned char>(*p)) ||
          (base == 16 && std::isxdigit(static_cast<unsigned char>(*p)))))
      return false;
  errno = 0;
  char* end = nullptr;
  auto seed = std::strtoull(digits, &end, base);
  if (errno != 0 || *end != '\0') return false;
  out.k0 = splitmix64(seed);
  out.k1 = splitmix64(out.k0);
  return true;
}

sip_key process_key() noexcept {
  static const sip_key key = make_process_key();
  return key;
}

} // namespace karlton::hashing

namespace karlton {

local_token this_process_token() noexcept {
  static const local_token token{hashing::random_key().k0};
  return token;
}

uint64_t hash_key(std::string_view key) noexcept {
  // Keyed, so that clients cannot pick keys that collide (messages/hash.hpp).
  // Each process draws its own key: no hash crosses a process boundary. Here,
  // beside process_key, so that its one static is read inline: hash_key is
  // on every lookup's path.
  return hashing::sip_hash_1_3(key, hashing::process_key());
}

} // namespace karlton

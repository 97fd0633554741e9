// The keyed hash behind `hash_key` (messages/value.hpp). Internal: not a
// public header.
//
// Keys come from clients: a RESP client picks them, and so do a service's
// users. With a hash anyone can compute (libstdc++'s MurmurHash2, as before),
// keys that land in one cluster of a shard's linear-probing table are found
// offline in minutes, and then each insert scans the cluster: a few hundred
// thousand such SETs stall a shard for seconds (hash flooding). SipHash under
// a 128-bit key drawn at start-up is what Redis (SipHash-1-2) and Python
// (SipHash-1-3) use against that: without the key nobody can predict where a
// key lands.
#pragma once

#include <cstdint>
#include <string_view>

namespace karlton::hashing {

/// A SipHash key.
struct sip_key {
  uint64_t k0 = 0;
  uint64_t k1 = 0;
};

/// splitmix64's finalizer: a bijection that spreads every input bit over
/// the output (a seed over a key here, row hashes in TinyLFU's sketch).
inline uint64_t splitmix64(uint64_t x) noexcept {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

/// SipHash-c-d of `bytes` under `key` (Aumasson and Bernstein, 2012).
uint64_t sip_hash_1_3(std::string_view bytes, sip_key key) noexcept;
uint64_t sip_hash_2_4(std::string_view bytes, sip_key key) noexcept;

/// The process's key, fixed at first use: from `KARLTON_HASH_SEED` when it
/// is set (digits, decimal or after 0x hex: benchmarks and tests that must
/// repeat exactly set it), else 16 random bytes from the kernel. Cheap after
/// the first call (a copy of one static): callers need not keep their own.
sip_key process_key() noexcept;

/// The key a `KARLTON_HASH_SEED` value stands for; false if it is no
/// integer (then the key is random, and a warning says so on stderr).
bool key_from_seed(const char* text, sip_key& out) noexcept;

} // namespace karlton::hashing

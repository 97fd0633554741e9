// The keyed hash of keys and names (messages/hash.hpp): SipHash's reference
// vectors, the seed, and that keys chosen to collide under the old unkeyed
// hash spread out.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdlib>
#include <functional>
#include <map>
#include <string>

#include "messages/hash.hpp"
#include <karlton/messages/value.hpp>

using namespace karlton;
using namespace karlton::hashing;

namespace {

// The reference key of the SipHash paper: bytes 00..0f, little-endian.
const sip_key reference_key{0x0706050403020100ull, 0x0f0e0d0c0b0a0908ull};

std::string counting_bytes(size_t n) {
  std::string s;
  for (size_t i = 0; i < n; ++i)
    s.push_back(static_cast<char>(i));
  return s;
}

} // namespace

TEST_CASE("SipHash-2-4 gives the reference vectors", "[hash]") {
  // The paper's appendix A (15 bytes) and the first and ninth of the
  // reference implementation's 64 vectors (0 and 8 bytes: the tail-only and
  // the one-block paths).
  CHECK(sip_hash_2_4(counting_bytes(15), reference_key) == 0xa129ca6149be45e5ull);
  CHECK(sip_hash_2_4(counting_bytes(0), reference_key) == 0x726fdb47dd0e0e31ull);
  CHECK(sip_hash_2_4(counting_bytes(8), reference_key) == 0x93f5f5799a932462ull);
}

TEST_CASE("SipHash-1-3 depends on every byte, the length and the key", "[hash]") {
  auto base = counting_bytes(16);
  auto h = sip_hash_1_3(base, reference_key);
  CHECK(h != sip_hash_2_4(base, reference_key));
  for (size_t i = 0; i < base.size(); ++i) {
    auto flipped = base;
    flipped[i] ^= 1;
    CHECK(sip_hash_1_3(flipped, reference_key) != h);
  }
  CHECK(sip_hash_1_3(base + '\0', reference_key) != h);
  CHECK(sip_hash_1_3(base, sip_key{reference_key.k0 ^ 1, reference_key.k1}) != h);
}

TEST_CASE("KARLTON_HASH_SEED takes integers only, and the process key follows it",
          "[hash]") {
  sip_key a, b;
  CHECK(key_from_seed("1", a));
  CHECK(key_from_seed("0x1f", b));
  CHECK((a.k0 != b.k0 && a.k1 != b.k1));
  CHECK(key_from_seed("31", a));
  CHECK((a.k0 == b.k0 && a.k1 == b.k1)); // 31 == 0x1f
  CHECK(key_from_seed("010", a));
  CHECK(key_from_seed("10", b));
  CHECK((a.k0 == b.k0 && a.k1 == b.k1)); // decimal, not octal
  for (auto bad : {"", "x", "0x", "1x", "-1", " 1", "\t-1", "+1", "0x-1", "1 ",
                   "99999999999999999999"})
    CHECK_FALSE(key_from_seed(bad, a));
  // The test processes run with a fixed seed (tests/support/main.cpp).
  const char* seed = std::getenv("KARLTON_HASH_SEED");
  REQUIRE(seed != nullptr);
  REQUIRE(key_from_seed(seed, a));
  CHECK((process_key().k0 == a.k0 && process_key().k1 == a.k1));
  CHECK(hash_key("user:1") == sip_hash_1_3("user:1", a));
}

TEST_CASE("keys that share a bucket under an unkeyed hash spread under hash_key",
          "[hash]") {
  // What an attacker does offline against a hash anyone can compute: keep
  // the keys whose bits 20-31 agree. A shard's table takes a key's home slot
  // from the top bits of the hash's low half (entry_table.hpp: the tag), so
  // these share one in a table of 4,096 slots. libstdc++'s std::hash is the
  // MurmurHash2 karlton used before.
  auto home = [](uint64_t h) { return (h >> 20) & 0xfff; };
  std::vector<std::string> chosen;
  for (uint64_t i = 0; chosen.size() < 512; ++i) {
    auto k = "k" + std::to_string(i);
    if (home(std::hash<std::string_view>{}(k)) == 0x123) chosen.push_back(k);
  }
  std::map<uint64_t, int> slots;
  for (auto& k : chosen)
    ++slots[home(hash_key(k))];
  int fullest = 0;
  for (auto& [slot, n] : slots)
    fullest = std::max(fullest, n);
  // 512 keys into 4096 slots at random: a slot with more than 5 has a
  // chance of about 1e-4; all 512 in one was what the attacker got.
  CHECK(fullest <= 5);
  CHECK(slots.size() >= 450);
}

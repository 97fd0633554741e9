#include "actors/cluster_auth.hpp"

#include <array>

#include <caf/detail/ripemd_160.hpp>

namespace karlton {

namespace {

constexpr size_t block_size = 64; // RIPEMD-160's block, in bytes

std::string ripemd160(const std::string& data) {
  std::array<uint8_t, 20> digest;
  caf::detail::ripemd_160(digest, data);
  return std::string{digest.begin(), digest.end()};
}

} // namespace

std::string hmac_ripemd160(const std::string& key, const std::string& message) {
  auto k = key.size() > block_size ? ripemd160(key) : key;
  k.resize(block_size, '\0');
  std::string inner(block_size, '\0');
  std::string outer(block_size, '\0');
  for (size_t i = 0; i < block_size; ++i) {
    inner[i] = static_cast<char>(k[i] ^ 0x36);
    outer[i] = static_cast<char>(k[i] ^ 0x5c);
  }
  return ripemd160(outer + ripemd160(inner + message));
}

std::string join_proof(const std::string& secret, uint64_t nonce,
                       const member_info& prover) {
  // Fields are separated by a byte no name contains, so two different
  // identities never produce the same message.
  auto message = "karlton-join\n" + std::to_string(nonce) + '\n' + prover.name + '\n' +
                 prover.host + '\n' + std::to_string(prover.port) + '\n' +
                 std::to_string(prover.incarnation);
  return hmac_ripemd160(secret, message);
}

bool check_join_proof(const std::string& secret, uint64_t nonce,
                      const member_info& prover, const std::string& proof) {
  auto expected = join_proof(secret, nonce, prover);
  if (proof.size() != expected.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < proof.size(); ++i)
    diff |= static_cast<unsigned char>(proof[i] ^ expected[i]);
  return diff == 0;
}

} // namespace karlton

// Proof of the cluster secret in the join handshake: HMAC (RFC 2104) over
// RIPEMD-160 (RFC 2286), the hash CAF itself ships, so authentication needs
// no extra package. Each side proves it knows the secret by answering the
// other's fresh random nonce; the secret never crosses the network.
#pragma once

#include <cstdint>
#include <string>

#include "messages/cluster.hpp"

namespace karlton {

/// HMAC-RIPEMD-160 of `message` under `key`, as 20 raw bytes.
std::string hmac_ripemd160(const std::string& key, const std::string& message);

/// What `prover` sends to show it knows `secret`, answering `nonce`. Binds
/// the prover's identity, so a proof cannot be replayed for another node.
std::string join_proof(const std::string& secret, uint64_t nonce,
                       const member_info& prover);

/// True if `proof` is `join_proof(secret, nonce, prover)` (compared in
/// constant time).
bool check_join_proof(const std::string& secret, uint64_t nonce,
                      const member_info& prover, const std::string& proof);

} // namespace karlton

#include "actors/cluster_auth.hpp"

#include <algorithm>
#include <iterator>
#include <utility>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <karlton/messages/errors.hpp>

namespace karlton {

namespace {

// Fields are length-prefixed (8 bytes, big-endian), so no two different
// transcripts encode to the same bytes, whatever the names contain.
void put_u64(std::string& out, uint64_t x) {
  for (int shift = 56; shift >= 0; shift -= 8)
    out += static_cast<char>((x >> shift) & 0xff);
}

void put_field(std::string& out, const std::string& x) {
  put_u64(out, x.size());
  out += x;
}

void put_party(std::string& out, const handshake_party& p) {
  put_field(out, p.info.name);
  put_field(out, p.info.host);
  put_u64(out, p.info.port);
  put_u64(out, p.info.incarnation);
  put_field(out, p.node);
}

// One label per direction: a proof made by one side never verifies as the
// other's, so nothing a responder signs can serve as an initiator's proof.
const char* label(handshake_role role) {
  return role == handshake_role::initiator ? "karlton-v3 initiator"
                                           : "karlton-v3 responder";
}

} // namespace

std::string hmac_sha256(const std::string& key, const std::string& message) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  // HMAC() over an empty key is valid; `key.data()` is never null.
  auto ok = HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
                 reinterpret_cast<const unsigned char*>(message.data()), message.size(),
                 out, &len);
  if (ok == nullptr) return {}; // only on allocation failure: a proof nothing matches
  return std::string{reinterpret_cast<const char*>(out), len};
}

caf::expected<std::string> random_nonce() {
  std::string out(nonce_size, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(&out[0]),
                 static_cast<int>(out.size())) != 1)
    return make_error(errc::invalid_option,
                      "the cluster handshake cannot draw a nonce: OpenSSL's random "
                      "generator failed");
  return out;
}

std::string handshake_proof(const std::string& secret, handshake_role role,
                            const handshake_transcript& t) {
  std::string message;
  put_field(message, label(role));
  put_party(message, t.initiator);
  put_party(message, t.responder);
  put_field(message, t.initiator_nonce);
  put_field(message, t.responder_nonce);
  return hmac_sha256(secret, message);
}

link_keys derive_link_keys(const std::string& secret, handshake_role role,
                           const handshake_transcript& t) {
  auto key = [&](const char* direction) {
    std::string message;
    put_field(message, direction);
    put_party(message, t.initiator);
    put_party(message, t.responder);
    put_field(message, t.initiator_nonce);
    put_field(message, t.responder_nonce);
    return hmac_sha256(secret, message);
  };
  auto from_initiator = key("karlton-v3 link initiator");
  auto from_responder = key("karlton-v3 link responder");
  if (role == handshake_role::initiator)
    return {std::move(from_initiator), std::move(from_responder)};
  return {std::move(from_responder), std::move(from_initiator)};
}

bool check_handshake_proof(const std::string& secret, handshake_role role,
                           const handshake_transcript& t, const std::string& proof) {
  auto expected = handshake_proof(secret, role, t);
  return !expected.empty() && proof.size() == expected.size() &&
         CRYPTO_memcmp(proof.data(), expected.data(), proof.size()) == 0;
}

// -- handshake_state ----------------------------------------------------------

handshake_state::handshake_state(std::string secret, handshake_party me,
                                 std::chrono::nanoseconds open_for, size_t max_open)
  : secret_(std::move(secret)), me_(std::move(me)), open_for_(open_for),
    max_open_(std::max<size_t>(1, max_open)) {}

caf::error handshake_state::refuse(uint64_t& cause, std::string why, errc code) {
  ++cause;
  ++counters.total;
  return make_error(code, std::move(why));
}

caf::error handshake_state::check_name(const std::string& name, bool name_taken) {
  if (name == me_.info.name)
    return refuse(counters.names, "node name '" + name + "' is this node's own name");
  if (name_taken)
    return refuse(counters.names,
                  "node name '" + name +
                    "' belongs to a live member; it can join again "
                    "once that member left or was lost",
                  errc::name_taken);
  return caf::none;
}

// Names come from the network: a refusal shows at most the limit of them.
caf::error handshake_state::check_size(const member_info& them) {
  if (them.name.size() > max_node_name_bytes)
    return refuse(counters.names, "a node name of " + std::to_string(them.name.size()) +
                                    " bytes (at most " +
                                    std::to_string(max_node_name_bytes) + ")");
  if (them.host.size() > max_node_host_bytes)
    return refuse(counters.names, "node '" + them.name + "' names a host of " +
                                    std::to_string(them.host.size()) +
                                    " bytes (at most " +
                                    std::to_string(max_node_host_bytes) + ")");
  return caf::none;
}

caf::expected<handshake_state::answered>
handshake_state::answer(const handshake_party& them, const std::string& my_nonce,
                        const std::string& their_nonce, const std::string& their_proof,
                        bool name_taken) {
  if (auto err = check_size(them.info)) return err;
  handshake_transcript t{me_, them, my_nonce, their_nonce};
  if (their_nonce.size() != nonce_size ||
      !check_handshake_proof(secret_, handshake_role::responder, t, their_proof))
    return refuse(counters.bad_proofs,
                  "node '" + them.info.name + "' does not share the cluster secret");
  if (auto err = check_name(them.info.name, name_taken)) return err;
  return answered{handshake_proof(secret_, handshake_role::initiator, t),
                  derive_link_keys(secret_, handshake_role::initiator, t)};
}

void handshake_state::drop_expired(clock::time_point now) {
  for (auto i = open_.begin(); i != open_.end();)
    i = now - i->second.opened > open_for_ ? open_.erase(i) : std::next(i);
}

caf::expected<handshake_state::hello_reply>
handshake_state::hello(const std::string& sender, const handshake_party& them,
                       const std::string& their_nonce, bool name_taken,
                       clock::time_point now) {
  if (auto err = check_size(them.info)) return err;
  if (their_nonce.size() != nonce_size)
    return refuse(counters.bad_proofs,
                  "a hello needs a nonce of " + std::to_string(nonce_size) + " bytes");
  if (!seen_.insert(their_nonce).second)
    return refuse(counters.replays,
                  "node '" + them.info.name +
                    "' sent a hello with a nonce seen before (replayed)");
  seen_order_.push_back(their_nonce);
  if (seen_order_.size() > remembered_nonces) {
    seen_.erase(seen_order_.front());
    seen_order_.pop_front();
  }
  if (auto err = check_name(them.info.name, name_taken)) return err;
  auto mine = random_nonce();
  if (!mine) return std::move(mine.error());
  drop_expired(now);
  if (open_.size() >= max_open_) {
    // Still full of live challenges: drop the oldest. A flood of hellos can
    // then delay a real join (it retries), never grow the table.
    auto oldest = open_.begin();
    for (auto i = open_.begin(); i != open_.end(); ++i)
      if (i->second.opened < oldest->second.opened) oldest = i;
    open_.erase(oldest);
  }
  handshake_transcript t{them, me_, their_nonce, *mine};
  auto proof = handshake_proof(secret_, handshake_role::responder, t);
  open_.emplace(*mine, challenge{sender, std::move(t), now});
  return hello_reply{std::move(*mine), std::move(proof)};
}

caf::expected<handshake_state::admitted>
handshake_state::join(const std::string& sender, const std::string& my_nonce,
                      const member_info& them, const std::string& proof, bool name_taken,
                      clock::time_point now) {
  auto i = open_.find(my_nonce);
  // Another sender's challenge stays open for its own join.
  if (i != open_.end() && i->second.sender != sender) i = open_.end();
  if (i == open_.end() || now - i->second.opened > open_for_) {
    if (i != open_.end()) open_.erase(i);
    return refuse(counters.replays, "node '" + them.name +
                                      "' sent a join without a hello answered for it "
                                      "(replayed, or too late)");
  }
  auto t = std::move(i->second.transcript);
  auto opened = i->second.opened;
  open_.erase(i); // single use, whatever the outcome
  if (!(t.initiator.info == them) ||
      !check_handshake_proof(secret_, handshake_role::initiator, t, proof))
    return refuse(counters.bad_proofs,
                  "node '" + them.name + "' could not prove the cluster secret");
  if (auto err = check_name(them.name, name_taken)) return err;
  return admitted{derive_link_keys(secret_, handshake_role::responder, t), opened};
}

} // namespace karlton

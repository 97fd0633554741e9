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
                                 std::chrono::nanoseconds open_for)
  : secret_(std::move(secret)), me_(std::move(me)), open_for_(open_for) {}

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

namespace {

// A challenge is `nonce_size` bytes: when it was opened, then the first
// half of its MAC (64 bits: a forger's guess is right once in 2^64).
constexpr size_t time_bytes = 8;

std::string time_field(clock::time_point t) {
  std::string out;
  put_u64(out, static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                       t.time_since_epoch())
                                       .count()));
  return out;
}

clock::time_point time_of(const std::string& challenge) {
  uint64_t ns = 0;
  for (size_t i = 0; i < time_bytes; ++i)
    ns = (ns << 8) | static_cast<unsigned char>(challenge[i]);
  return clock::time_point{std::chrono::duration_cast<clock::time_point::duration>(
    std::chrono::nanoseconds{static_cast<int64_t>(ns)})};
}

} // namespace

std::string handshake_state::challenge_mac(const std::string& sender,
                                           const handshake_party& them,
                                           const std::string& their_nonce,
                                           const std::string& opened) const {
  std::string message;
  put_field(message, "karlton-v3 challenge");
  put_field(message, opened);
  put_field(message, sender);
  put_party(message, them);
  put_field(message, their_nonce);
  return hmac_sha256(challenge_key_, message).substr(0, nonce_size - time_bytes);
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
  if (challenge_key_.empty()) {
    auto a = random_nonce();
    auto b = random_nonce();
    if (!a) return std::move(a.error());
    if (!b) return std::move(b.error());
    challenge_key_ = *a + *b;
  }
  auto opened = time_field(now);
  auto mine = opened + challenge_mac(sender, them, their_nonce, opened);
  handshake_transcript t{them, me_, their_nonce, mine};
  auto proof = handshake_proof(secret_, handshake_role::responder, t);
  return hello_reply{std::move(mine), std::move(proof)};
}

caf::expected<handshake_state::admitted>
handshake_state::join(const std::string& sender, const handshake_party& them,
                      const std::string& their_nonce, const std::string& my_nonce,
                      const std::string& proof, bool name_taken, clock::time_point now) {
  if (auto err = check_size(them.info)) return err;
  for (auto i = used_.begin(); i != used_.end();)
    i = now - i->second > open_for_ ? used_.erase(i) : std::next(i);
  // Ours, for this sender, party and hello, and not too old: only then is it
  // worth a proof's check. (A challenge from the future is not ours either.)
  // The MAC first: until it holds, the time is a stranger's bytes, and the
  // window is checked without arithmetic on them (INT64_MIN would overflow).
  bool ours = !challenge_key_.empty() && my_nonce.size() == nonce_size &&
              their_nonce.size() == nonce_size;
  clock::time_point opened{};
  if (ours) {
    auto mac = challenge_mac(sender, them, their_nonce, my_nonce.substr(0, time_bytes));
    opened = time_of(my_nonce);
    ours = CRYPTO_memcmp(mac.data(), my_nonce.data() + time_bytes, mac.size()) == 0 &&
           opened <= now && opened >= now - open_for_ && used_.count(my_nonce) == 0;
  }
  if (!ours)
    return refuse(counters.replays, "node '" + them.info.name +
                                      "' sent a join without a hello answered for it "
                                      "(replayed, or too late)");
  handshake_transcript t{them, me_, their_nonce, my_nonce};
  if (!check_handshake_proof(secret_, handshake_role::initiator, t, proof))
    return refuse(counters.bad_proofs,
                  "node '" + them.info.name + "' could not prove the cluster secret");
  used_.emplace(my_nonce, opened); // single use, whatever the name's fate
  if (auto err = check_name(them.info.name, name_taken)) return err;
  return admitted{derive_link_keys(secret_, handshake_role::responder, t), opened};
}

} // namespace karlton

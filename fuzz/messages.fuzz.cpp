// Fuzzes what another node's bytes become here: CAF's binary deserializer over
// untrusted input, for each type another node can send (message_types.hpp),
// then what a receiver does with the result. The first input byte picks the
// type; the rest are its serialized form.
//
// Checked beyond "no crash, no sanitizer report":
// - a value that deserialized serializes again, and that form deserializes to
//   the same bytes (a mismatch means an inspect reads what it does not write);
// - for types with invariants or a receiver's checks, the code that receives
//   them: the peer's gap check and delay record for a batch, the handshake's
//   proof check for a member, percentiles and sums for the counters.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <type_traits>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/binary_deserializer.hpp>
#include <caf/binary_serializer.hpp>

#include "actors/cluster_auth.hpp"
#include "actors/peer_state.hpp"
#include "fuzz/message_types.hpp"
#include <karlton/messages/cluster.hpp>
#include <karlton/messages/stats.hpp>

using namespace karlton;

namespace {

// A fixed "now" (2027-01-15, in ns since the epoch) for the delays a batch
// records: real time would make a crash depend on when it is replayed.
constexpr int64_t now_ns = 1'800'000'000'000'000'000;

// What a receiving node does with each type. Most are only read.
template <class T>
void receive(const T&) {}

void receive(const invalidation_batch& b) {
  // The peer actor's batch handler: the gap check against the handshake's
  // expectation, then one delay sample per applied invalidation.
  peer_state st{member_info{"me", "127.0.0.1", 1, 1}, 64};
  st.expect(b.origin, b.incarnation, b.first_seq / 2);
  st.receive(b);
  st.receive(b); // a duplicate is no gap
  for (auto& x : b.items)
    st.record_delay(x.issued_ns, now_ns);
  auto s = st.stats(1);
  delay_percentile_us(s, 0.5);
}

void receive(const std::vector<invalidation>& items) {
  peer_state st{member_info{"me", "127.0.0.1", 1, 1}, 64};
  st.enqueue(items);
  st.take_batch();
}

void receive(const member_info& m) {
  // The join handshake: a proof binds the identity it names, its direction
  // and both nonces; one for the other direction never passes.
  handshake_transcript t{
    {m, m.name}, {member_info{"me", "127.0.0.1", 1, 1}, "me"}, m.host, m.name};
  auto proof = handshake_proof("secret", handshake_role::initiator, t);
  if (!check_handshake_proof("secret", handshake_role::initiator, t, proof)) std::abort();
  if (check_handshake_proof("secret", handshake_role::responder, t, proof)) std::abort();
  check_handshake_proof("secret", handshake_role::initiator, t, m.name);
}

void receive(const std::vector<member_info>& ms) {
  for (auto& m : ms)
    receive(m);
}

void receive(const age_histogram& h) {
  h.percentile(0.5);
  h.percentile(0.99);
  age_histogram sum;
  sum.merge(h);
  sum.merge(h);
  sum.percentile(0.99);
  auto copy = h;
  copy.merge(sum);
  copy.record(123);
  copy.percentile(1.0);
}

void receive(const cache_stats& s) {
  // A cache sums its shards' stats; the node reports hit-age percentiles.
  cache_stats sum;
  sum += s;
  sum += s;
  receive(s.hit_age);
  receive(sum.hit_age);
}

void receive(const peer_stats& s) {
  delay_percentile_us(s, 0.5);
  delay_percentile_us(s, 0.99);
}

void receive(const ttl& t) {
  if (t.valid() && !t.is_default() && !t.is_never() && t.duration().count() <= 0)
    std::abort();
}

void receive(const value& v) {
  if (v && v.charge() != v.key().size() + v.bytes().size()) std::abort();
}

caf::actor_system& system() {
  static auto* sys = [] {
    static caf::actor_system_config cfg;
    register_types(cfg);
    // No middleman: a remote actor handle then fails to load (no proxy
    // registry) instead of making a proxy to a node that does not exist.
    return new caf::actor_system{cfg};
  }();
  return *sys;
}

template <class T>
std::vector<char> serialize(T& x) {
  std::vector<char> out;
  caf::binary_serializer sink{system(), out};
  if (auto err = sink(x)) {
    std::fprintf(stderr, "a deserialized %s does not serialize: %s\n",
                 caf::type_name<T>::value, system().render(err).c_str());
    std::abort();
  }
  return out;
}

template <class T>
void fuzz_one(const char* data, size_t size) {
  T x{};
  caf::binary_deserializer source{system(), data, size};
  if (source(x)) return; // refused: what a receiver must do with bad bytes
  receive(x);
  auto once = serialize(x);
  T y{};
  caf::binary_deserializer again{system(), once};
  if (auto err = again(y)) {
    std::fprintf(stderr, "a re-serialized %s does not deserialize: %s\n",
                 caf::type_name<T>::value, system().render(err).c_str());
    std::abort();
  }
  if (serialize(y) != once) {
    std::fprintf(stderr, "a %s changes in a serialization round trip\n",
                 caf::type_name<T>::value);
    std::abort();
  }
}

template <>
void fuzz_one<caf::message>(const char* data, size_t size) {
  // As BASP does: the element types are named in the bytes and made through
  // the registry. Elements are checked as above through their own entries.
  if (fuzzing::names_unsafe_caf_type(data, size)) return;
  caf::message x;
  caf::binary_deserializer source{system(), data, size};
  if (source(x)) return;
  if (fuzzing::names_floating_point(data, size)) return; // CAF's pack754 hangs
  serialize(x);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  auto bytes = reinterpret_cast<const char*>(data + 1);
  fuzzing::visit_type(data[0] % fuzzing::type_count, [&](auto t) {
    fuzz_one<typename decltype(t)::type>(bytes, size - 1);
  });
  return 0;
}

// The shared value buffer and the message types' serialization.
#include <catch2/catch.hpp>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/binary_deserializer.hpp>
#include <caf/binary_serializer.hpp>

#include <karlton/messages/errors.hpp>
#include <karlton/messages/type_ids.hpp>

using namespace karlton;

TEST_CASE("a value holds its key and bytes and is shared, not copied", "[value]") {
  auto v = value::make("user_123", "John");
  CHECK(v.key() == "user_123");
  CHECK(v.bytes() == "John");
  CHECK(v.charge() == 12);
  CHECK(v.unique());
  auto w = v;
  CHECK_FALSE(v.unique());
  CHECK(w.bytes().data() == v.bytes().data());
  CHECK(v.table_hash() == static_cast<uint32_t>(hash_key("user_123")));
  value empty;
  CHECK_FALSE(empty);
  CHECK(empty.bytes().empty());
}

namespace {

template <class T>
T round_trip(caf::actor_system& sys, T x) {
  std::vector<char> buf;
  caf::binary_serializer sink{sys, buf};
  REQUIRE_FALSE(sink(x));
  T y;
  caf::binary_deserializer source{sys, buf};
  REQUIRE_FALSE(source(y));
  return y;
}

} // namespace

TEST_CASE("message types survive serialization", "[messages]") {
  caf::actor_system_config cfg;
  register_types(cfg);
  caf::actor_system sys{cfg};
  CHECK(round_trip(sys, value::make("k", "bytes")) == value::make("k", "bytes"));
  CHECK_FALSE(round_trip(sys, value{}));
  CHECK(round_trip(sys, ttl::after(std::chrono::seconds{3})) ==
        ttl::after(std::chrono::seconds{3}));
  CHECK(round_trip(sys, ttl::never()).is_never());
  cache_stats st;
  st.hits = 3;
  st.bytes = 99;
  st.hit_age.record(40);
  st.negative_hits = 7;
  st.loads_refused = 11; // the last field
  auto back = round_trip(sys, st);
  CHECK(back.hits == 3);
  CHECK(back.bytes == 99);
  CHECK(back.negative_hits == 7);
  CHECK(back.loads_refused == 11);
  CHECK(back.hit_age.count() == 1);
  remaining_ttl r;
  r.state = remaining_ttl::expires;
  r.left = std::chrono::milliseconds{5};
  CHECK(round_trip(sys, r).left == std::chrono::milliseconds{5});
  // A write of the empty key stays a write of it (a value of an empty key and
  // no bytes crosses as "not cached"): its key and its hash as made here.
  auto erased = round_trip(sys, shard_write::erase_of("", 4));
  REQUIRE(erased.val);
  CHECK(erased.key().empty());
  CHECK(erased.val.table_hash() == static_cast<uint32_t>(hash_key("")));
  CHECK(erased.erase);
  CHECK(erased.seq == 4);
  auto put = round_trip(sys, shard_write{value::make("k", "v"), false, 5});
  CHECK(put.key() == "k");
  CHECK(put.bytes() == "v");
}

TEST_CASE("errors render as one actionable line", "[errors]") {
  auto err = make_error(errc::unknown_cache, "no cache named 'x'");
  CHECK(err == errc::unknown_cache);
  CHECK(describe(err) == "karlton.unknown_cache: no cache named 'x'");
  caf::actor_system_config cfg;
  register_types(cfg);
  caf::actor_system sys{cfg};
  CHECK(sys.render(err).find("no cache named 'x'") != std::string::npos);
}

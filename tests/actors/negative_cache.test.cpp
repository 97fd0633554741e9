// The failures a read-through shard remembers: their TTL, forgetting, the
// deadline the shard's timer reclaims them at, and the cap.
#include <catch2/catch.hpp>

#include "actors/negative_cache.hpp"
#include <karlton/messages/errors.hpp>

using namespace karlton;

TEST_CASE("a remembered failure is found until its TTL runs out", "[negative]") {
  negative_cache n{1000};
  n.remember("k", make_error(errc::not_found, "no row"), 5000);
  REQUIRE(n.find("k", 5999));
  CHECK(*n.find("k", 5999) == errc::not_found);
  CHECK_FALSE(n.find("k", 6000));
  CHECK_FALSE(n.find("other", 5000));
  CHECK(n.next_expiry_ms() == 6000);
  CHECK(n.expire(5999) == 0);
  CHECK(n.size() == 1);
  CHECK(n.expire(6000) == 1);
  CHECK(n.size() == 0);
  CHECK_FALSE(n.next_expiry_ms());
}

TEST_CASE("a TTL of 0 remembers nothing", "[negative]") {
  negative_cache n{0};
  CHECK_FALSE(n.enabled());
  n.remember("k", make_error(errc::not_found, "no row"), 5000);
  CHECK_FALSE(n.find("k", 5000));
  CHECK_FALSE(n.next_expiry_ms());
}

TEST_CASE("a forgotten or renewed failure leaves only a skipped FIFO item",
          "[negative]") {
  negative_cache n{1000};
  n.remember("k", make_error(errc::not_found, "first"), 0);
  n.forget("k");
  CHECK_FALSE(n.find("k", 1));
  n.remember("k", make_error(errc::store_failure, "second"), 200);
  n.remember("k", make_error(errc::store_failure, "third"), 500); // renews
  CHECK(n.size() == 1);
  CHECK(n.expire(1000) == 1); // the forgotten one's item
  CHECK(n.expire(1200) == 1); // the second's item: the key is the third's now
  REQUIRE(n.find("k", 1200));
  CHECK(describe(*n.find("k", 1200)).find("third") != std::string::npos);
  CHECK(n.expire(1500) == 1);
  CHECK(n.size() == 0);
}

TEST_CASE("past its capacity the oldest failure is dropped first", "[negative]") {
  negative_cache n{1000, 3};
  for (int i = 0; i < 5; ++i)
    n.remember(std::to_string(i), make_error(errc::not_found, "no row"), 100 + i);
  CHECK(n.size() == 3);
  CHECK_FALSE(n.find("0", 200));
  CHECK_FALSE(n.find("1", 200));
  CHECK(n.find("4", 200));
  CHECK(n.next_expiry_ms() == 1102);
}

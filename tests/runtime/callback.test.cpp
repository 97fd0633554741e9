// The asynchronous calls' callback type (runtime/callback.hpp): a move-only
// function that keeps small callables in place.
#include <catch2/catch.hpp>

#include <array>
#include <memory>
#include <string>
#include <utility>

#include <karlton/runtime/callback.hpp>

using karlton::detail::callback_fn;
using fn = callback_fn<void(std::string)>;

TEST_CASE("a callback holding a shared_ptr and two words is kept in place",
          "[runtime][callback]") {
  // The RESP server's reply handle: a session, a slot, the protocol.
  struct reply_handle {
    std::shared_ptr<int> session;
    void* slot;
    int protocol;
    void operator()(std::string) {}
  };
  STATIC_REQUIRE(fn::stores_inline<reply_handle>);
  STATIC_REQUIRE_FALSE(fn::stores_inline<std::array<char, 200>>);
}

TEST_CASE("a callback calls, moves and destroys its callable exactly once",
          "[runtime][callback]") {
  auto owner = std::make_shared<int>(0);
  std::string got;
  auto small = [owner, &got](std::string s) { got = std::move(s); };
  std::array<char, 128> pad{};
  auto large = [owner, &got, pad](std::string s) {
    got = s + std::to_string(pad.size());
  };
  STATIC_REQUIRE(fn::stores_inline<decltype(small)>);
  STATIC_REQUIRE_FALSE(fn::stores_inline<decltype(large)>);
  {
    fn a{small};
    fn b{large};
    CHECK(owner.use_count() == 5); // owner, the two lambdas, their copies
    fn c{std::move(a)};
    fn d;
    d = std::move(b);
    CHECK_FALSE(a);
    CHECK_FALSE(b);
    CHECK(owner.use_count() == 5); // moved, not copied
    c("in place");
    CHECK(got == "in place");
    d("on the heap ");
    CHECK(got == "on the heap 128");
    d = std::move(c); // the heap one goes
    CHECK(owner.use_count() == 4);
  }
  CHECK(owner.use_count() == 3); // the originals and `owner`
}

TEST_CASE("a callback takes a move-only callable", "[runtime][callback]") {
  auto box = std::make_unique<int>(7);
  int seen = 0;
  fn f{[b = std::move(box), &seen](std::string) { seen = *b; }};
  fn g{std::move(f)};
  g("x");
  CHECK(seen == 7);
}

// W-TinyLFU's adaptive window alone: the ghosts and the climber.
#include <catch2/catch.hpp>

#include <cstdint>
#include <vector>

#include "actors/adaptive_window.hpp"

using namespace karlton;

TEST_CASE("a ghost finds a hash within its horizon once and nothing older", "[policy]") {
  ghost_filter g{100};
  g.add(7);
  CHECK(g.take(7));
  CHECK_FALSE(g.take(7)); // one eviction counts once
  CHECK_FALSE(g.take(8));
  g.add(9);
  for (uint32_t h = 1000; h < 1101; ++h) // 101 adds later: past the horizon
    g.add(h);
  CHECK_FALSE(g.take(9));
  g.add(0); // a hash of 0 is not the empty slot
  CHECK(g.take(0));
  g.add(5);
  g.clear();
  CHECK_FALSE(g.take(5));
}

TEST_CASE("the window climbs toward the side its ghosts find more often, within bounds",
          "[policy]") {
  window_climber c{100'000};
  CHECK(c.window() == 1000); // 1 %
  auto votes = [&](int window_side, int main_side) {
    for (int i = 0; i < window_side; ++i)
      c.window_would_have_hit();
    for (int i = 0; i < main_side; ++i)
      c.main_would_have_hit();
  };
  // An even split, or a window side short of its margin, moves nothing.
  votes(16, 16);
  votes(20, 12);
  CHECK(c.window() == 1000);
  // A clear majority moves it, by steps that double while they go one way.
  uint64_t last = c.window();
  std::vector<uint64_t> steps;
  for (int i = 0; i < 12; ++i) {
    votes(window_climber::period, 0);
    steps.push_back(c.window() - last);
    last = c.window();
  }
  CHECK(steps[0] == 1);
  CHECK(steps[1] == 2);
  CHECK(steps[9] == 512);
  // At most 1 % of the capacity a step, or half the window once that is more.
  CHECK(steps[10] == 1011); // half of 2,023
  CHECK(steps[11] == 1517); // half of 3,034
  // Half the window a step: from 4.6 % (4,551) to 99 % in a few decisions
  // (at 1 % a step, 95 of them).
  int decisions = 0;
  while (c.window() < 99'000 && decisions < 200) {
    votes(window_climber::period, 0);
    ++decisions;
  }
  CHECK(decisions <= 10);
  CHECK(c.window() == 99'000); // main keeps 1 %
  votes(window_climber::period, 0);
  CHECK(c.window() == 99'000);
  // Main's side needs a smaller margin: 18 of 32.
  votes(14, 18);
  CHECK(c.window() < 99'000);
  for (int i = 0; i < 500; ++i)
    votes(0, window_climber::period);
  CHECK(c.window() == 200); // 0.2 %
  c.reset();
  CHECK(c.window() == 1000);
}

TEST_CASE("a window held above half the cache restarts when the hit rate changes",
          "[policy]") {
  window_climber c{100'000};
  // Grows the window to at least `w` on votes alone.
  auto climb_to = [&](uint64_t w) {
    while (c.window() < w)
      for (int v = 0; v < window_climber::period; ++v)
        c.window_would_have_hit();
  };
  // A sample of 1,000 requests, `hits` of them hits.
  auto sample = [&](uint64_t hits) { c.end_sample(hits, 1000); };
  climb_to(99'000);
  sample(430); // the first sample: nothing to compare
  // Held for a sample, a change of at most 0.05 keeps it (noise, drift).
  sample(470);
  sample(430);
  CHECK(c.window() == 99'000);
  // A larger change starts over from the first window.
  sample(560);
  CHECK(c.window() == 1000);
  // A change in a sample the window moved in is the climber's own doing.
  climb_to(99'000);
  sample(300);
  CHECK(c.window() == 99'000);
  // A fall restarts as a rise does.
  sample(400);
  CHECK(c.window() == 1000);
  // An empty sample says nothing: the next compares with the last real one.
  climb_to(99'000);
  sample(560); // moved
  c.end_sample(0, 0);
  CHECK(c.window() == 99'000);
  sample(400);
  CHECK(c.window() == 1000);
  // A window of half the cache or less is left to the ghosts.
  climb_to(30'000);
  const auto held = c.window();
  REQUIRE(held <= 50'000);
  sample(400);
  sample(600);
  sample(100);
  CHECK(c.window() == held);
}

TEST_CASE("the window of a bound near 2^64 climbs to 99 % without wrapping", "[policy]") {
  // Bounds in bytes; the options stop at 2^48, the policy takes any. Steps of
  // half the window reach 0.49 of the bound, so window + step needs care.
  constexpr uint64_t bound = UINT64_MAX;
  window_climber c{bound};
  uint64_t last = c.window();
  for (int i = 0; i < 200; ++i) {
    for (int v = 0; v < window_climber::period; ++v)
      c.window_would_have_hit();
    CHECK(c.window() >= last); // growing never wraps around to less
    last = c.window();
  }
  CHECK(c.window() == bound / 100 * 99 + bound % 100 * 99 / 100); // 99 %
}

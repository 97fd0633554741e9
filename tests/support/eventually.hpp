// `eventually`: a bounded poll for what other threads or processes do in the
// background (a cluster's mesh, asynchronous delivery), where the test has
// no event to wait on. Every wait ends within its limit.
#pragma once

#include <chrono>
#include <functional>
#include <thread>

namespace karlton::testing {

/// True once `pred` holds, asking it every `every` for at most `limit`;
/// false if it still does not hold by then.
inline bool eventually(const std::function<bool()>& pred,
                       std::chrono::milliseconds limit = std::chrono::seconds{10},
                       std::chrono::milliseconds every = std::chrono::milliseconds{5}) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(every);
  }
  return true;
}

} // namespace karlton::testing

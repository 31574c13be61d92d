// SPDX-License-Identifier: Apache-2.0
// Waiting on a condition with a deadline: tests never sleep "long enough".
#pragma once

#include <chrono>
#include <thread>

namespace ember::testing {

/// Polls `done` until it holds or `timeout` passes. Returns the final value of `done()`.
template <class Pred>
bool wait_for(Pred&& done, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto pause = std::chrono::microseconds(20);
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) {
      return done();
    }
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::microseconds(2000));
  }
  return true;
}

}  // namespace ember::testing

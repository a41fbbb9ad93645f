// SPDX-License-Identifier: Apache-2.0
// A wall-clock reading later than t, for tests that check a timestamp falls
// between readings taken around an action: waits (1 ms steps, at most ~1 s)
// until system_clock has moved past t, so a timestamp the action left as it
// was (t) falls outside. The caller asserts the reading is past t: on a
// clock that did not move, it is not.
#pragma once

#include <chrono>
#include <thread>

namespace keel::test {

inline std::chrono::system_clock::time_point wallClockPast(std::chrono::system_clock::time_point t) {
  for (int i = 0; i < 1000 && std::chrono::system_clock::now() <= t; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return std::chrono::system_clock::now();
}

}  // namespace keel::test

// SPDX-License-Identifier: Apache-2.0
// A POSIX clock in nanoseconds, as the data planes keep time:
// CLOCK_MONOTONIC is bpf_ktime_get_ns()'s clock, CLOCK_REALTIME survives a
// restart (the DPDK plane's saved connection tables).
#pragma once

#include <time.h>

#include <cstdint>

namespace keel {

inline uint64_t clockNs(clockid_t clock) {
  timespec ts{};
  clock_gettime(clock, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

}  // namespace keel

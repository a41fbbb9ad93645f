// SPDX-License-Identifier: Apache-2.0
// Maglev ring build time. Plain chrono loop (no framework): every case is
// built `reps` times after one warm-up build; we report the median and p99 of
// wall time and of thread CPU time (CLOCK_THREAD_CPUTIME_ID, which excludes
// time the scheduler gave to other processes on this shared machine), and the
// ratio to an in-run baseline: allocating and filling an M-entry table, the
// least any builder must do. Usage: maglev_bench [reps]   (default 201)
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "control/maglev/maglev.h"
#include "keel/maglev_lookup.h"

#include "../common/bench_env.h"

namespace {

using keel::IpAddress;
using keel::MaglevReal;

struct Sample {
  double wallUs, cpuUs;
};

using keel::bench::threadCpuUs;

struct Stats {
  double best, median, p99;
};

Stats stats(const std::vector<double>& v) {
  const keel::bench::Sorted sorted(v);
  return {sorted.quantile(0), sorted.median(), sorted.quantile(0.99)};
}

// Runs fn reps times (after one warm-up); returns wall and CPU stats.
std::pair<Stats, Stats> measure(int reps, const std::function<size_t()>& fn) {
  volatile size_t sink = fn();
  std::vector<double> wall, cpu;
  for (int i = 0; i < reps; ++i) {
    double c0 = threadCpuUs();
    auto t0 = std::chrono::steady_clock::now();
    sink = sink + fn();
    auto t1 = std::chrono::steady_clock::now();
    double c1 = threadCpuUs();
    wall.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
    cpu.push_back(c1 - c0);
  }
  return {stats(wall), stats(cpu)};
}

std::vector<MaglevReal> reals(size_t n, bool skewed) {
  std::mt19937 rng(uint32_t(n) * 2654435761u);
  std::vector<MaglevReal> out;
  for (size_t i = 0; i < n; ++i) {
    // Distinct addresses: 10.(i>>8).(i&255).x with a random last octet spread.
    IpAddress a = IpAddress::fromV4({10, uint8_t(i >> 8), uint8_t(i), uint8_t(1 + rng() % 250)});
    uint32_t w = skewed ? (i == 0 ? 1000 : 1 + rng() % 3) : 1;
    out.push_back({a, w, uint32_t(i)});
  }
  return out;
}


}  // namespace

int main(int argc, char** argv) {
  const int reps = argc > 1 ? std::max(1, atoi(argv[1])) : 201;
  std::printf("maglev_bench: buildMaglevTable wall and thread-CPU time\n");
  std::printf("machine: %s\n", keel::bench::machineDescription().c_str());
  std::printf("load average at start: %s\n", keel::bench::loadAverage().c_str());
  std::printf("method: %d timed builds per case after 1 warm-up; median and p99; IPv4 reals, weight 1\n"
              "        unless 'skewed' (one real weight 1000, others 1..3); baseline = allocate + fill\n"
              "        an M-entry u32 table (the floor for any builder); ratio = median CPU / baseline.\n\n",
              reps);
  std::printf("%-26s %12s %12s %12s %12s %12s %8s\n", "case", "wall med us", "wall p99 us", "cpu best us",
              "cpu med us", "cpu p99 us", "ratio");

  for (uint32_t m : {KEEL_RING_SIZE_DEFAULT, KEEL_RING_SIZE_LARGE}) {
    auto [bw, bc] = measure(reps, [m] {
      std::vector<uint32_t> t(m);
      std::fill(t.begin(), t.end(), 7u);
      return size_t(t[m / 2]);
    });
    std::printf("%-26s %12.1f %12.1f %12.1f %12.1f %12.1f %8s\n", ("baseline fill M=" + std::to_string(m)).c_str(),
                bw.median, bw.p99, bc.best, bc.median, bc.p99, "1.0");
    for (auto [n, skewed] : {std::pair{10u, false}, {100u, false}, {1000u, false}, {1000u, true}}) {
      auto rs = reals(n, skewed);
      auto [w, c] = measure(m == KEEL_RING_SIZE_LARGE ? std::max(1, reps / 5) : reps,
                            [&rs, m] { return keel::buildMaglevTable(rs, m).size(); });
      std::string name = "N=" + std::to_string(n) + (skewed ? " skewed" : "") + " M=" + std::to_string(m);
      std::printf("%-26s %12.1f %12.1f %12.1f %12.1f %12.1f %8.1f\n", name.c_str(), w.median, w.p99, c.best, c.median,
                  c.p99, c.median / bc.median);
    }
  }
  std::printf("\nload average at end: %s\n", keel::bench::loadAverage().c_str());
  return 0;
}

// SPDX-License-Identifier: Apache-2.0
// What every benchmark prints about the machine it ran on, so a reader can
// tell which box and how busy it was (results are ratios to an in-run
// baseline; the load says how much to trust them).
#pragma once

#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <string>
#include <vector>

namespace keel::bench {

// "AMD EPYC ...; kernel Linux 6.18.x x86_64; 2 online CPUs"
inline std::string machineDescription() {
  std::ifstream cpu("/proc/cpuinfo");
  std::string line, model = "unknown CPU";
  while (std::getline(cpu, line))
    if (line.rfind("model name", 0) == 0) {
      model = line.substr(line.find(':') + 2);
      break;
    }
  utsname u{};
  uname(&u);
  return model + "; kernel " + u.sysname + " " + u.release + " " + u.machine + "; " +
         std::to_string(sysconf(_SC_NPROCESSORS_ONLN)) + " online CPUs";
}

// The 1, 5 and 15 minute load averages: "12.10 13.40 13.02".
inline std::string loadAverage() {
  std::ifstream f("/proc/loadavg");
  std::string a, b, c;
  f >> a >> b >> c;
  return a + " " + b + " " + c;
}

// The median of v: the middle value, or the mean of the two middle values
// of an even count; 0 for no values. Every benchmark's "median" is this one.
template <typename T>
double median(std::vector<T> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? static_cast<double>(v[n / 2]) : (static_cast<double>(v[n / 2 - 1]) + static_cast<double>(v[n / 2])) / 2;
}

// The q-quantile (0 <= q < 1) of v: the value at index floor(q * n) of the
// sorted values (q = 0: the best, 0.9: p90, 0.99: p99); 0 for no values.
template <typename T>
double quantile(std::vector<T> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return static_cast<double>(v[std::min(v.size() - 1, static_cast<size_t>(static_cast<double>(v.size()) * q))]);
}

}  // namespace keel::bench

// SPDX-License-Identifier: Apache-2.0
// What every benchmark prints about the machine it ran on, so a reader can
// tell which box and how busy it was (results are ratios to an in-run
// baseline; the load says how much to trust them).
#pragma once

#include <sys/utsname.h>
#include <time.h>
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
// This thread's CPU time (CLOCK_THREAD_CPUTIME_ID: user and system), in
// microseconds: what a bench charges a measured call with on a shared box.
inline double threadCpuUs() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return double(t.tv_sec) * 1e6 + double(t.tv_nsec) / 1e3;
}

inline std::string loadAverage() {
  std::ifstream f("/proc/loadavg");
  std::string a, b, c;
  f >> a >> b >> c;
  return a + " " + b + " " + c;
}

// A sample sorted once, for several statistics of it (a benchmark that
// prints the best, the median and a quantile sorts its samples once).
class Sorted {
 public:
  template <typename T>
  explicit Sorted(const std::vector<T>& v) : v_(v.begin(), v.end()) {
    std::sort(v_.begin(), v_.end());
  }
  // The middle value, or the mean of the two middle values of an even
  // count; 0 for no values. Every benchmark's "median" is this one.
  double median() const {
    if (v_.empty()) return 0;
    const size_t n = v_.size();
    return n % 2 ? v_[n / 2] : (v_[n / 2 - 1] + v_[n / 2]) / 2;
  }
  // The q-quantile (0 <= q < 1): the value at index floor(q * n) of the
  // sorted values (q = 0: the best, 0.9: p90, 0.99: p99); 0 for no values.
  double quantile(double q) const {
    if (v_.empty()) return 0;
    return v_[std::min(v_.size() - 1, static_cast<size_t>(static_cast<double>(v_.size()) * q))];
  }

 private:
  std::vector<double> v_;
};

template <typename T>
double median(const std::vector<T>& v) {
  return Sorted(v).median();
}

template <typename T>
double quantile(const std::vector<T>& v, double q) {
  return Sorted(v).quantile(q);
}

}  // namespace keel::bench

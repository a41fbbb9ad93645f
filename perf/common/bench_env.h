// SPDX-License-Identifier: Apache-2.0
// What every benchmark prints about the machine it ran on, so a reader can
// tell which box and how busy it was (results are ratios to an in-run
// baseline; the load says how much to trust them).
#pragma once

#include <sys/utsname.h>
#include <unistd.h>

#include <fstream>
#include <string>

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

}  // namespace keel::bench

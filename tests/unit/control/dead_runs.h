// SPDX-License-Identifier: Apache-2.0
// What a test run that was killed (meson's timeout) leaves behind, named by
// its pid: network namespaces and bpffs pin directories. Each test that
// makes such things removes those of runs whose process is gone before it
// makes its own.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <string>

namespace keel::test_support {

// Whether `name` is `prefix` followed by the pid of a process that is gone.
inline bool namesADeadRun(const std::string& name, const std::string& prefix) {
  if (name.rfind(prefix, 0) != 0 || name.size() == prefix.size()) return false;
  const std::string pid = name.substr(prefix.size());
  return pid.find_first_not_of("0123456789") == std::string::npos && !std::filesystem::exists("/proc/" + pid);
}

// Deletes the namespaces named nsPrefix + a dead pid, and removes the
// entries of pinRoot named pinPrefix + a dead pid.
inline void removeLeftoversOfDeadRuns(const std::string& nsPrefix, const std::string& pinRoot,
                                      const std::string& pinPrefix) {
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/var/run/netns", ec))
    if (namesADeadRun(e.path().filename().string(), nsPrefix))
      (void)std::system(("ip netns del " + e.path().filename().string() + " >/dev/null 2>&1").c_str());
  for (const auto& e : std::filesystem::directory_iterator(pinRoot, ec))
    if (namesADeadRun(e.path().filename().string(), pinPrefix)) std::filesystem::remove_all(e.path(), ec);
}

}  // namespace keel::test_support

// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <string>

namespace keel {

// Whether a command line asks for `-o json` (`-o json`, `--output json`,
// `-ojson`, `--output=json`), read from argv before, and whether or not,
// CLI11 can parse it: keelctl and keel-decap then print a usage error as
// their JSON error object too.
inline bool jsonOutputAsked(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if ((a == "-o" || a == "--output") && i + 1 < argc) {
      if (std::string(argv[++i]) == "json") return true;
    } else if (a == "-ojson" || a == "--output=json") {
      return true;
    }
  }
  return false;
}

}  // namespace keel

// SPDX-License-Identifier: Apache-2.0
// The EAL arguments of dataplane.dpdk.eal_args read as EAL 22.11's
// getopt_long reads them (eal_common_options.c), without starting EAL, so
// that `keeld --check-config` (and every load of keel.yaml) refuses what
// EAL's start would refuse: an option it does not have (a misspelt one,
// such as --no-telemtry), one without its value, a value EAL rejects by its
// option alone (--iova-mode, --proc-type, --vfio-intr, -n), and the
// combinations it refuses (-m with --socket-mem, --huge-unlink or
// --in-memory with --no-huge, --legacy-mem with --in-memory or
// --match-allocations, -a with -b). --help makes EAL print its usage and
// exit, so it is refused too. The option table was read from Debian's
// 22.11 build (every long option and short letter tried against
// dpdk-testpmd's EAL), as were the refusals.
//
// Fail open: only what EAL refuses for certain is an error; the lcore
// options are eal_lcores.h's, and option values not listed above are
// EAL's to judge at start.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace keel {

struct EalArgProblem {
  size_t arg;           // the index in the arguments it is about
  std::string message;  // what EAL refuses, and why
};

std::vector<EalArgProblem> checkEalArgs(const std::vector<std::string>& args);

}  // namespace keel

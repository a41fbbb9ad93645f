// SPDX-License-Identifier: Apache-2.0
// Which lcores a list of EAL arguments starts, read without starting EAL, so
// that `keeld --check-config` (and every load of keel.yaml) can tell a
// `dataplane.dpdk.workers` list that EAL would refuse at start: a worker
// that is not an enabled lcore, or that is the main lcore. The DPDK plane
// checks the same against EAL itself when it starts (dpdk_dataplane.cc).
//
// Read as EAL 22.11 reads them (eal_common_options.c; checked against
// Debian's 22.11.11 with dpdk-test):
//   -l LIST         numbers and ranges a-b separated by commas, blanks
//                   skipped; a reversed range adds nothing; no lcore at all
//                   is refused. Each lcore runs on the CPU of its id.
//   -c MASK         hexadecimal (0x optional), bit n = lcore n on CPU n.
//   --lcores MAP    <lcores[@cpus]>[,<lcores[@cpus]>...], each set a number,
//                   a range (either way round) or a group (a,b-c,...);
//                   without @cpus each lcore runs on the CPU of its id.
//   --main-lcore N  as strtol(N, base 0) reads it; default: the lowest
//                   enabled lcore.
// Long options may be abbreviated as getopt_long allows (--lc for
// --lcores, --mai for --main-lcore, with '=' or a separate value). EAL
// refuses a second one of -l, -c and --lcores. With none, EAL enables one
// lcore per CPU keeld may run on, which only the host knows
// (EalLcores::fromCpus). Service cores (-s, -S) are not read.
//
// Fail open: what keel cannot read is a warning (EAL checks it at start),
// never an error, so no configuration EAL accepts is refused here.
#pragma once

#include <optional>
#include <set>
#include <string>
#include <vector>

namespace keel {

struct EalLcores {
  std::set<unsigned> lcores;  // the lcores EAL enables
  std::set<unsigned> cpus;    // the CPUs they may run on
  unsigned mainLcore = 0;     // --main-lcore, else the lowest enabled lcore
  bool mainGiven = false;     // --main-lcore was given
  // How they were given, for messages: "-l 0-2", "--lcores (0-2)@(0,1)",
  // "-c 0x7", or "" (none: one per CPU).
  std::string source;
  // The lcores as a compact list: "0-2,5".
  static std::string listText(const std::set<unsigned>& ids);
  // No -l, -c or --lcores: EAL enables an lcore per CPU keeld may run on
  // (its affinity), each on the CPU of its id; main: --main-lcore.
  static EalLcores fromCpus(const std::set<unsigned>& cpus, std::optional<unsigned> main);
};

struct EalLcoresResult {
  // nullopt with no error: the arguments name no lcores, so EAL takes one
  // per CPU keeld may run on (not known here); or keel could not read them
  // (`warning`).
  std::optional<EalLcores> lcores;
  std::optional<unsigned> mainLcore;  // --main-lcore, if given and read
  std::string error;    // an argument EAL refuses, and why
  std::string warning;  // an argument keel cannot read: nothing is checked
  size_t arg = 0;       // the index of the argument either is about
};

// The lcores `args` (EAL's arguments without argv[0]) start. maxLcore:
// RTE_MAX_LCORE (128 in Debian's DPDK); an id at or above it EAL refuses.
EalLcoresResult readEalLcores(const std::vector<std::string>& args, unsigned maxLcore = 128);

// A CPU list as the kernel writes one (/sys/devices/system/cpu/online:
// "0-3,8"); nullopt if it is not one.
std::optional<std::set<unsigned>> parseCpuList(const std::string& text);

}  // namespace keel

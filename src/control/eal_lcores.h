// SPDX-License-Identifier: Apache-2.0
// Which lcores a list of EAL arguments starts, read without starting EAL, so
// that `keeld --check-config` (and every load of keel.yaml) can tell a
// `dataplane.dpdk.workers` list that EAL would refuse at start: a worker
// that is not an enabled lcore, or that is the main lcore. The DPDK plane
// checks the same against EAL itself when it starts (dpdk_dataplane.cc).
//
// The options read are EAL 22.11's: `-l LIST`, `-c MASK`, `--lcores MAP`
// (also `--lcores=MAP`, `-lLIST`, `-cMASK`) and `--main-lcore N`. A LIST
// or MAP is `<lcores[@cpus]>[,<lcores[@cpus]>...]`, each set a number, a
// range `a-b` or a group `(a,b-c,...)`; without `@cpus` each lcore runs on
// the CPU of its own id. EAL uses the last of -l / -c / --lcores given. With
// none, EAL enables one lcore per CPU keeld may run on, which only the host
// knows (EalLcores::fromCpus).
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
  // per CPU keeld may run on (not known here).
  std::optional<EalLcores> lcores;
  std::optional<unsigned> mainLcore;  // --main-lcore, if given
  std::string error;  // an argument EAL would refuse, and why
  size_t errorArg = 0;  // its index in the arguments
};

// The lcores `args` (EAL's arguments without argv[0]) start. maxLcore:
// RTE_MAX_LCORE (128 in Debian's DPDK); an id at or above it is an error,
// as in EAL.
EalLcoresResult readEalLcores(const std::vector<std::string>& args, unsigned maxLcore = 128);

// A CPU list as the kernel writes one (/sys/devices/system/cpu/online:
// "0-3,8"); nullopt if it is not one.
std::optional<std::set<unsigned>> parseCpuList(const std::string& text);

}  // namespace keel

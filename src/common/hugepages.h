// SPDX-License-Identifier: Apache-2.0
// The hugepages of this host as EAL 22.11 finds them when it starts
// (eal_hugepage_info.c), read without starting EAL, so that keeld's config
// check and a failed start can say why EAL would find none: no pages
// reserved, or none of a size with a hugetlbfs mount.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace keel {

struct HugepageSize {
  uint64_t bytes = 0;      // the page size
  uint64_t reserved = 0;   // nr_hugepages
  uint64_t available = 0;  // what EAL counts: free - resv, plus overcommit - surplus
  std::string mount;       // a hugetlbfs mounted for this size, "" for none
};

// Each page size the kernel offers (/sys/kernel/mm/hugepages), with its
// hugetlbfs mount (/proc/mounts: pagesize=, else the default size of
// /proc/meminfo). root: "" for the host, else a directory that holds
// sys/kernel/mm/hugepages, proc/mounts and proc/meminfo (tests). Empty when
// the kernel offers none.
std::vector<HugepageSize> readHugepages(const std::string& root = "");

// Why EAL started with these arguments would find no hugepages to use, or
// "" when it would find some, or needs none (--no-huge). A size counts with
// a mount, or without one under --in-memory (EAL maps its pages
// anonymously). freeOnly: count only the pages free now (a start that just
// failed); otherwise those reserved (a config check, while a running keeld
// may hold them all).
std::string hugepageProblem(const std::vector<std::string>& ealArgs, const std::vector<HugepageSize>& sizes,
                            bool freeOnly);

}  // namespace keel

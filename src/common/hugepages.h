// SPDX-License-Identifier: Apache-2.0
// The hugepages of this host as EAL 22.11 finds them when it starts
// (eal_hugepage_info.c), read without starting EAL, so that keeld's config
// check and a failed start can say why EAL would find none: no pages
// reserved, or none of a size with a hugetlbfs mount.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace keel {

struct HugepageSize {
  uint64_t bytes = 0;      // the page size
  uint64_t reserved = 0;   // nr_hugepages
  uint64_t available = 0;  // what EAL counts: free - resv, plus overcommit - surplus
  std::string mount;       // a hugetlbfs mounted for this size, "" for none
  uint64_t overcommit = 0; // nr_overcommit_hugepages: surplus pages the kernel may add on demand
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

// The least EAL memory keel's DPDK plane takes for a config (its mbufs and
// connection tables; the DPDK plane's dpdkMemoryFloor computes it).
struct EalMemoryNeed {
  uint64_t mbufBytes = 0;
  uint64_t connBytes = 0;
  uint64_t total() const { return mbufBytes + connBytes; }
};

// The most memory EAL started with these arguments can hand out, or
// nullopt when that is not bounded here: under --no-huge (and with
// --legacy-mem) its -m (64 MB when not given under --no-huge); otherwise
// the hugepages reserved of the sizes it can use (hugepageProblem's), or
// nullopt when the kernel may add surplus pages (nr_overcommit_hugepages),
// -m is not a plain number, or --socket-limit / --socket-mem say more.
// what: how it was bounded, for messages ("-m 256 under --no-huge").
std::optional<uint64_t> ealMemoryLimit(const std::vector<std::string>& ealArgs, const std::vector<HugepageSize>& sizes,
                                       std::string* what);

}  // namespace keel

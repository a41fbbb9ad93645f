// SPDX-License-Identifier: Apache-2.0
#include "common/hugepages.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace keel {

namespace {

uint64_t readNumber(const std::filesystem::path& file) {
  std::ifstream f(file);
  uint64_t v = 0;
  return f >> v ? v : 0;
}

// "2M", "1G", "2048k", "2097152" as rte_str_to_size reads them.
uint64_t sizeText(const std::string& text) {
  size_t used = 0;
  uint64_t v = 0;
  try {
    v = std::stoull(text, &used);
  } catch (...) {
    return 0;
  }
  if (used == text.size()) return v;
  if (used + 1 != text.size()) return 0;
  switch (text[used]) {
    case 'k': case 'K': return v << 10;
    case 'm': case 'M': return v << 20;
    case 'g': case 'G': return v << 30;
    default: return 0;
  }
}

std::string sizeName(uint64_t bytes) {
  if (bytes >= (1ull << 30) && bytes % (1ull << 30) == 0) return std::to_string(bytes >> 30) + " GiB";
  if (bytes >= (1ull << 20) && bytes % (1ull << 20) == 0) return std::to_string(bytes >> 20) + " MiB";
  return std::to_string(bytes >> 10) + " KiB";
}

// An EAL option given in full or as an abbreviation getopt_long would take
// for it (at least `unique` characters: "--no-hu" for --no-huge).
bool option(const std::vector<std::string>& args, const std::string& name, size_t unique) {
  return std::any_of(args.begin(), args.end(), [&](const std::string& a) {
    return a.size() >= unique && a.size() <= name.size() && name.compare(0, a.size(), a) == 0;
  });
}

}  // namespace

std::vector<HugepageSize> readHugepages(const std::string& root) {
  namespace fs = std::filesystem;
  const fs::path base = root.empty() ? fs::path("/") : fs::path(root);
  uint64_t defaultSize = 0;
  {
    std::ifstream meminfo(base / "proc/meminfo");
    std::string key;
    uint64_t kb = 0;
    std::string line;
    while (std::getline(meminfo, line)) {
      std::istringstream in(line);
      if (in >> key >> kb && key == "Hugepagesize:") defaultSize = kb << 10;
    }
  }
  std::vector<std::pair<uint64_t, std::string>> mounts;  // size, mount point
  {
    std::ifstream f(base / "proc/mounts");
    std::string line;
    while (std::getline(f, line)) {
      std::istringstream in(line);
      std::string dev, dir, type, opts;
      if (!(in >> dev >> dir >> type >> opts) || type != "hugetlbfs") continue;
      uint64_t size = defaultSize;
      std::istringstream o(opts);
      for (std::string opt; std::getline(o, opt, ',');)
        if (opt.rfind("pagesize=", 0) == 0) size = sizeText(opt.substr(9));
      mounts.emplace_back(size, dir);
    }
  }
  std::vector<HugepageSize> out;
  std::error_code ec;
  for (const fs::directory_entry& e : fs::directory_iterator(base / "sys/kernel/mm/hugepages", ec)) {
    const std::string name = e.path().filename().string();  // hugepages-2048kB
    if (name.rfind("hugepages-", 0) != 0) continue;
    HugepageSize s;
    if (name.size() <= 12 || name.compare(name.size() - 2, 2, "kB") != 0) continue;
    s.bytes = sizeText(name.substr(10, name.size() - 12) + "k");
    if (s.bytes == 0) continue;
    s.reserved = readNumber(e.path() / "nr_hugepages");
    const uint64_t free = readNumber(e.path() / "free_hugepages");
    const uint64_t resv = readNumber(e.path() / "resv_hugepages");
    const uint64_t over = readNumber(e.path() / "nr_overcommit_hugepages");
    const uint64_t surplus = readNumber(e.path() / "surplus_hugepages");
    s.available = (free > resv ? free - resv : 0) + (over > surplus ? over - surplus : 0);
    s.overcommit = over;
    for (const auto& [size, dir] : mounts)
      if (size == s.bytes) {
        s.mount = dir;
        break;
      }
    out.push_back(s);
  }
  std::sort(out.begin(), out.end(), [](const HugepageSize& a, const HugepageSize& b) { return a.bytes < b.bytes; });
  return out;
}

std::string hugepageProblem(const std::vector<std::string>& ealArgs, const std::vector<HugepageSize>& sizes,
                            bool freeOnly) {
  if (option(ealArgs, "--no-huge", 7)) return "";
  const bool inMemory = option(ealArgs, "--in-memory", 4);
  std::vector<std::string> unmounted, taken;
  for (const HugepageSize& s : sizes) {
    // Reserved, and those the kernel may add on demand (overcommit), as
    // EAL counts them (get_num_hugepages).
    const uint64_t pages = freeOnly ? s.available : s.reserved + s.overcommit;
    if (pages == 0) {
      if (s.reserved > 0) taken.push_back(std::to_string(s.reserved) + " of " + sizeName(s.bytes));
      continue;
    }
    if (!s.mount.empty() || inMemory) return "";
    unmounted.push_back(std::to_string(pages) + " of " + sizeName(s.bytes));
  }
  auto join = [](const std::vector<std::string>& v) {
    std::string out;
    for (const std::string& s : v) out += (out.empty() ? "" : ", ") + s;
    return out;
  };
  std::string why = "EAL would find no hugepages to use: ";
  if (!unmounted.empty())
    why += "pages are reserved (" + join(unmounted) +
           ") but no hugetlbfs is mounted for their size (mount -t hugetlbfs -o pagesize=SIZE nodev DIR, or give "
           "--in-memory)";
  else if (!taken.empty())
    why += "every reserved page is in use (" + join(taken) + " reserved, none free)";
  else
    why += "none are reserved (vm.nr_hugepages, or hugepages= on the kernel command line)";
  return why + "; docs/dpdk.md \"Hugepages\" (--no-huge runs EAL without them, for tests)";
}

std::optional<uint64_t> ealMemoryLimit(const std::vector<std::string>& ealArgs, const std::vector<HugepageSize>& sizes,
                                       std::string* what) {
  const bool noHuge = option(ealArgs, "--no-huge", 7);
  std::optional<uint64_t> megabytes;
  for (size_t i = 0; i < ealArgs.size(); ++i)
    if (ealArgs[i] == "-m") {
      if (i + 1 >= ealArgs.size()) return std::nullopt;
      const std::string& v = ealArgs[i + 1];
      if (v.empty() || v.find_first_not_of("0123456789") != std::string::npos || v.size() > 9) return std::nullopt;
      megabytes = std::stoull(v);
      if (*megabytes == 0) megabytes.reset();  // EAL's default
    } else if (ealArgs[i].rfind("-m", 0) == 0 && ealArgs[i].size() > 2) {
      return std::nullopt;  // "-m512": not read here
    }
  if (noHuge || option(ealArgs, "--legacy-mem", 5)) {
    if (!megabytes && !noHuge) return std::nullopt;
    const uint64_t mb = megabytes.value_or(64);  // EAL's memory under --no-huge without -m
    if (what) *what = (megabytes ? "-m " + std::to_string(mb) : "EAL's default of 64 MB") +
                      (noHuge ? " under --no-huge" : " under --legacy-mem");
    return mb << 20;
  }
  if (option(ealArgs, "--socket-limit", 9) || option(ealArgs, "--socket-mem", 9)) return std::nullopt;
  const bool inMemory = option(ealArgs, "--in-memory", 4);
  uint64_t bytes = 0;
  for (const HugepageSize& s : sizes) {
    if (s.mount.empty() && !inMemory) continue;
    if (s.overcommit > 0) return std::nullopt;
    bytes += s.reserved * s.bytes;
  }
  if (bytes == 0) return std::nullopt;  // hugepageProblem's to say
  if (what) *what = "the hugepages reserved, " + std::to_string(bytes >> 20) + " MiB";
  return bytes;
}

}  // namespace keel

// SPDX-License-Identifier: Apache-2.0
#include "dataplane/xdp/nic_offloads.h"
#include "common/text.h"

#include <linux/ethtool.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "common/fd.h"

namespace keel {

namespace {

bool ethtool(int sock, const std::string& ifname, void* cmd) {
  ifreq ifr{};
  std::snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", ifname.c_str());
  ifr.ifr_data = static_cast<char*>(cmd);
  return ioctl(sock, SIOCETHTOOL, &ifr) == 0;
}

}  // namespace

std::optional<std::set<std::string>> activeNicFeatures(const std::string& ifname) {
  Fd sock(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (sock.get() < 0) return std::nullopt;
  // How many features the kernel names (one string set for every device).
  // ethtool_sset_info ends in data[]: one u32 per set asked for.
  alignas(ethtool_sset_info) uint8_t ssetBuf[sizeof(ethtool_sset_info) + sizeof(uint32_t)] = {};
  auto* sset = reinterpret_cast<ethtool_sset_info*>(ssetBuf);
  sset->cmd = ETHTOOL_GSSET_INFO;
  sset->sset_mask = 1ull << ETH_SS_FEATURES;
  if (!ethtool(sock.get(), ifname, sset) || !(sset->sset_mask & (1ull << ETH_SS_FEATURES))) return std::nullopt;
  const uint32_t n = sset->data[0];
  std::vector<uint8_t> names(sizeof(ethtool_gstrings) + size_t{n} * ETH_GSTRING_LEN);
  auto* gs = reinterpret_cast<ethtool_gstrings*>(names.data());
  gs->cmd = ETHTOOL_GSTRINGS;
  gs->string_set = ETH_SS_FEATURES;
  gs->len = n;
  if (!ethtool(sock.get(), ifname, gs)) return std::nullopt;
  const uint32_t blocks = (n + 31) / 32;
  std::vector<uint8_t> feats(sizeof(ethtool_gfeatures) + size_t{blocks} * sizeof(ethtool_get_features_block));
  auto* gf = reinterpret_cast<ethtool_gfeatures*>(feats.data());
  gf->cmd = ETHTOOL_GFEATURES;
  gf->size = blocks;
  if (!ethtool(sock.get(), ifname, gf)) return std::nullopt;
  std::set<std::string> active;
  for (uint32_t i = 0; i < n && i / 32 < gf->size; ++i)
    if (gf->features[i / 32].active & (1u << (i % 32))) {
      const char* s = reinterpret_cast<const char*>(gs->data) + size_t{i} * ETH_GSTRING_LEN;
      active.insert(std::string(s, strnlen(s, ETH_GSTRING_LEN)));
    }
  return active;
}

std::vector<std::string> vlanInterfacesOf(const std::string& ifname, const std::string& config) {
  // "VLAN Dev name    | VLAN ID" header lines, then "eth0.100  | 100  | eth0".
  std::vector<std::string> out;
  std::ifstream f(config);
  std::string line;
  while (std::getline(f, line)) {
    std::vector<std::string> cols;
    std::stringstream ss(line);
    std::string col;
    while (std::getline(ss, col, '|')) {
      const size_t b = col.find_first_not_of(" \t"), e = col.find_last_not_of(" \t");
      cols.push_back(b == std::string::npos ? "" : col.substr(b, e - b + 1));
    }
    if (cols.size() == 3 && cols[2] == ifname) out.push_back(cols[0]);
  }
  return out;
}

std::vector<OffloadWarning> xdpOffloadWarnings(const std::string& ifname, bool generic,
                                               const std::set<std::string>& active,
                                               const std::vector<std::string>& vlans) {
  std::vector<OffloadWarning> out;
  std::vector<std::string> strip;
  for (const char* f : {"rx-vlan-hw-parse", "rx-vlan-stag-hw-parse"})
    if (active.count(f)) strip.push_back(f);
  if (!strip.empty() && !vlans.empty())
    out.push_back({"xdp_vlan_stripping",
                   ifname + " carries VLANs (" + commaList(vlans) + ") and strips their tags before XDP (" +
                       commaList(strip) + "): VIP traffic that arrives tagged is forwarded untagged. If it does, run "
                       "ethtool -K " + ifname + " rxvlan off rx-vlan-stag-hw-parse off (docs/operations.md, "
                       "\"The balancer\")"});
  if (generic) {
    std::vector<std::string> merge;
    for (const char* f : {"rx-gro", "rx-gro-hw", "rx-lro"})
      if (active.count(f)) merge.push_back(f);
    if (!merge.empty())
      out.push_back({"xdp_generic_gro",
                     "xdp_mode generic runs after receive offloads that merge a client's TCP segments (" +
                         commaList(merge) + " on " + ifname + "): merged packets exceed the MTU, ipip answers them "
                         "with frag-needed and drops them. Run ethtool -K " + ifname +
                         " gro off lro off rx-gro-hw off (docs/operations.md, \"The balancer\")"});
  }
  return out;
}

}  // namespace keel

// SPDX-License-Identifier: Apache-2.0
// What a NIC does to received frames before an XDP program sees them, where
// it changes what keel forwards (docs/operations.md, "The balancer", NIC):
//   - VLAN stripping (rx-vlan-hw-parse, rx-vlan-stag-hw-parse) takes the tag
//     into the descriptor; the kernel's own traffic gets it back, XDP_TX
//     frames leave untagged.
//   - In generic (skb) mode the program runs after GRO (rx-gro, rx-gro-hw,
//     rx-lro), so it sees a client's TCP segments merged far over the MTU.
// Read with the ethtool ioctl (the feature string set and
// ETHTOOL_GFEATURES), as `ethtool -k` shows them.
#pragma once

#include <optional>
#include <set>
#include <string>
#include <vector>

namespace keel {

// The active features of ifname by their kernel names ("rx-gro",
// "rx-vlan-hw-parse"; `ethtool -k` prints a few under older names:
// generic-receive-offload, rx-vlan-offload), or nullopt if they cannot be
// read (no such interface).
std::optional<std::set<std::string>> activeNicFeatures(const std::string& ifname);

// The VLAN interfaces whose real device is ifname, from the 8021q module's
// table (/proc/net/vlan/config, or `config` for tests); none without it.
std::vector<std::string> vlanInterfacesOf(const std::string& ifname,
                                          const std::string& config = "/proc/net/vlan/config");

struct OffloadWarning {
  std::string event;   // log event: xdp_vlan_stripping, xdp_generic_gro
  std::string detail;  // what goes wrong and the ethtool command that fixes it
};

// The warnings for an XDP program on ifname, given its active features and
// VLAN interfaces. VLAN stripping is warned only when the host has VLAN
// interfaces on it (a trunk port); untagged ports lose nothing.
std::vector<OffloadWarning> xdpOffloadWarnings(const std::string& ifname, bool generic,
                                               const std::set<std::string>& active,
                                               const std::vector<std::string>& vlans);

}  // namespace keel

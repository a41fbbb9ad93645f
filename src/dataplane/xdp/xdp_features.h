// SPDX-License-Identifier: Apache-2.0
// Whether an interface's driver runs XDP programs in native mode, as the
// kernel reports it before anything is attached: the XDP features each
// driver declares (kernel 6.3 and later, the netdev generic netlink
// family's dev-get, which the kernel's ynl tool prints). keeld
// --check-config refuses xdp_mode: native where the start would fail with
// "driver lacks native XDP"; where the kernel tells nothing, it says nothing.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace keel {

// NETDEV_XDP_ACT_BASIC (linux/netdev.h, not in every build host's headers):
// the driver runs XDP programs (XDP_PASS, XDP_DROP, XDP_TX).
constexpr uint64_t kXdpActBasic = 1;

// The features the driver of ifindex declares (NETDEV_XDP_ACT_* bits), or
// nullopt where the kernel has no netdev family (before 6.3) or does not
// answer for the interface.
std::optional<uint64_t> xdpFeatures(int ifindex);

// The name of ifname's driver, as `ethtool -i` prints it ("veth",
// "macvlan"); "" where it cannot be read.
std::string driverName(const std::string& ifname);

// Whether native mode would be refused, from those features and the
// driver's name: none declared (0) by a driver that has no native XDP in
// any kernel (no ndo_bpf), whose
// devices keel may be pointed at (measured on 6.18: each declares 0 and
// the kernel refuses a native program): macvlan, ipvlan, bridge, 802.1Q
// VLAN and tun in layer-3 mode (a tap device, of the same driver, declares
// the basic actions). Any other driver declaring none tells nothing (a bond
// without slaves declares none, yet takes a program), nor do features
// without the basic actions (the kernel's attach never reads them:
// netdevsim declared HW_OFFLOAD alone in 6.3-6.12 and took native
// programs), nor a kernel that declares nothing (nullopt): false.
bool lacksNativeXdp(std::optional<uint64_t> features, const std::string& driver);

}  // namespace keel

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

namespace keel {

// NETDEV_XDP_ACT_BASIC (linux/netdev.h, not in every build host's headers):
// the driver runs XDP programs (XDP_PASS, XDP_DROP, XDP_TX).
constexpr uint64_t kXdpActBasic = 1;

// The features the driver of ifindex declares (NETDEV_XDP_ACT_* bits), or
// nullopt where the kernel has no netdev family (before 6.3) or does not
// answer for the interface.
std::optional<uint64_t> xdpFeatures(int ifindex);

// Whether native mode would be refused, from those features: declared, and
// without the basic actions. None declared (0: a driver may still take a
// program; nullopt: nothing known) tells nothing: false.
bool lacksNativeXdp(std::optional<uint64_t> features);

}  // namespace keel

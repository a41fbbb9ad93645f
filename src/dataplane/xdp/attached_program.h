// SPDX-License-Identifier: Apache-2.0
// The XDP programs an interface already runs, as netlink tells anyone (no
// capability needed), for the refusals of a start that would fail on one and
// of keeld --check-config, which says so first in the same words
// (xdp_dataplane.cc: someone else's program).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace keel {

// The programs attached to an interface: in native (driver) and generic
// (skb) mode, 0 for none. The kernel runs at most one of the two.
struct AttachedXdp {
  uint32_t native = 0;
  uint32_t generic = 0;
};

// Those of ifindex; nullopt when the kernel cannot be asked (errno says why).
std::optional<AttachedXdp> attachedXdp(int ifindex);

// What detaches the program attached to ifname in that mode. Plain `xdp off`
// asks for the driver's mode wherever the driver has one (veth, every NIC
// with native XDP): there it leaves a generic program attached.
std::string xdpOffCommand(const std::string& ifname, bool generic);

}  // namespace keel

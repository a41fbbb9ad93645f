// SPDX-License-Identifier: Apache-2.0
// Host facts keeld reads from the kernel: an interface's MAC and a real's
// MAC from the neighbour table (l2dsr reals configured without `mac:`).
#pragma once

#include <optional>
#include <string>

#include "common/address.h"

namespace keel {

// SIOCGIFHWADDR; nullopt if the interface does not exist or has no MAC.
std::optional<MacAddress> interfaceMac(const std::string& interface);

// The neighbour entry of `address` on `interface` (netlink RTM_GETNEIGH).
// If there is none, nudges the kernel into resolving it (one UDP datagram to
// the discard port, which makes it ARP / neighbour-solicit an on-link
// address) and polls for at most `waitMs`. nullopt when the address is not
// on-link there or does not answer: l2dsr cannot reach it.
std::optional<MacAddress> resolveNeighbour(const IpAddress& address, const std::string& interface,
                                           int waitMs = 1000);

}  // namespace keel

// SPDX-License-Identifier: Apache-2.0
// Host facts keeld reads from the kernel: an interface's MAC and addresses,
// a real's MAC from the neighbour table (l2dsr reals configured without
// `mac:`), and the route toward an address (the gateway ipip frames should
// reach: NextHopCheck).
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/address.h"
#include "common/route.h"  // RouteHop, and the lookup routesTo and addressIsLocal make

namespace keel {

// SIOCGIFHWADDR; nullopt if the interface does not exist or has no MAC.
std::optional<MacAddress> interfaceMac(const std::string& interface);

// The IPv4 and IPv6 addresses of `interface` (getifaddrs); none if it does
// not exist. A VIP cannot be one of them (vipOwnAddressProblem).
std::vector<IpAddress> interfaceAddresses(const std::string& interface);

// The interfaces stacked directly on `interface` in this network namespace
// (its uppers: links whose IFLA_LINK is it, of kind vlan, macvlan or
// ipvlan), by name; none if it has none or does not exist. On a VLAN
// trunk the data plane attaches to eth0 while the host's addresses,
// routes and neighbours are on eth0.100: with eth0 these are "the data
// plane's interfaces", whose neighbour entries l2dsr and next_hop_mac's
// check read and whose addresses no VIP or real may be. One RTM_GETLINK
// dump. (Until 2026-12-06 only dataplane.interface was read.)
std::vector<std::string> interfacesOn(const std::string& interface);

// The neighbour entries of `addresses` on `interface` and the interfaces
// on it (interfacesOn; netlink RTM_GETNEIGH, one dump of each interface
// for all the addresses). Those missing are nudged into resolution (one
// UDP datagram each to the discard port, through the interface its route
// leaves by if that is one of them, else through `interface`, which makes
// the kernel ARP / neighbour-solicit an on-link address), then all are
// polled together for at most `waitMs` in all. An address absent from the
// result is not on-link there or did not answer: l2dsr cannot reach it
// (yet). waitMs 0: no wait, the dumps' answer; the nudges' answers are in
// the table for the next call (keeld's retries of reals held down for want
// of a MAC). nudge false: the dumps alone (keeld's refresh of MACs it has,
// where an entry missing is no news and is not worth a datagram every few
// seconds).
std::map<IpAddress, MacAddress> resolveNeighbours(const std::vector<IpAddress>& addresses,
                                                  const std::string& interface, int waitMs = 1000,
                                                  bool nudge = true);

// Whether `address` is one of this host's: the kernel routes it as local
// (an interface's address, or an AnyIP `local` route), whatever
// ip_nonlocal_bind lets sockets bind to. A lookup that cannot be made
// counts as yes (it cannot tell).
bool addressIsLocal(const IpAddress& address);

// The source addresses route lookups are made from, per family (keeld: the
// node's tunnel sources, the outer source of keel's ipip frames).
struct RouteSources {
  std::optional<IpAddress> v4, v6;
  auto operator<=>(const RouteSources&) const = default;
};

// The kernel's route to each of `destinations` (netlink RTM_GETROUTE with
// RTA_DST, one request each over one socket: the lookup a packet from this
// host would get, policy rules and ECMP's pick for that address included).
// With a source of the destination's family the lookup is made from it
// (RTA_SRC, as `ip route get DST from SRC`), so a policy rule that routes
// that source by another table (`ip rule add from SRC table T`) is
// followed as the kernel would follow it for such a packet. An IPv4
// source this host does not have is left out (the kernel looks nothing up
// from one: every lookup would fail); an IPv6 one is used. An address with
// no route (or whose lookup failed) is absent.
std::map<IpAddress, RouteHop> routesTo(const std::vector<IpAddress>& destinations,
                                       const RouteSources& sources = {});

}  // namespace keel

// SPDX-License-Identifier: Apache-2.0
// NextHopCheck: whether node.next_hop_mac is still the MAC of the router the
// kernel routes toward the ipip reals (review finding F9).
//
// The data planes send every encapsulated frame to node.next_hop_mac, a
// static value of the file (as Katran's default-gateway MAC). When that
// router is replaced, or its MAC changes (a NIC swap, a VRRP/bond change),
// every ipip flow is blackholed while keel counts it forwarded, and nothing
// else notices: the health checks go through the kernel, which follows the
// new MAC. So keeld compares: for each family with ipip reals, the gateways
// the kernel's routes to those reals use on the data plane's interfaces
// (dataplane.interface and the interfaces stacked on it: on a VLAN trunk
// the data plane is on eth0 while the host's routes leave through
// eth0.100; until 2026-12-06 only dataplane.interface counted), and their
// neighbour entries there. It never changes the data plane's MAC itself:
// the operator's file wins (docs/operations.md, "next_hop_mac").
//
// The routes are looked up from the node's tunnel source of the family (the
// outer source of keel's ipip frames), so source-based policy routing (`ip
// rule add from TUNNEL_SOURCE table T`) gives the router those frames are
// meant for, not the main table's.
//
// What counts, per family:
//  - the gateways of the reals' routes that leave through one of the data
//    plane's interfaces with a usable neighbour entry (resolveNeighbours' states, with a MAC);
//  - mismatch: at least one such entry, and none of them is next_hop_mac.
//    With several gateways (reals behind different routers, an ECMP route)
//    keel still sends every frame to next_hop_mac, which is fine as long as
//    that router routes to them all; so it is a mismatch only when
//    next_hop_mac is no gateway's MAC at all: a replaced router's new MAC
//    then shows, and an ECMP pair does not warn for ever about the router
//    keel does not use. Logged as next_hop_mac_mismatch (a warning) once
//    per (gateway, its MAC, next_hop_mac), so a MAC that changes again, or
//    a reload that sets another wrong one, is said again;
//  - match: some entry has next_hop_mac: next_hop_mac_matches (info) when
//    the family was not matching before (the first check, or after a
//    mismatch);
//  - no entry usable (none yet, the router gone quiet): no news, the
//    verdict stays; an entry missing is prompted (the neighbour resolver's
//    nudge), so the next check finds it;
//  - no real routed through a gateway on the data plane's interfaces (all on-link,
//    as in a one-LAN lab where the router routes back onto the LAN; or the
//    routes leave through another interface; or there is no route): there
//    is nothing to compare with, the verdict is cleared, and it is said
//    once at info (next_hop_mac_unchecked, with the reason), again only
//    when the reason changes. Reals on-link or through another interface
//    beside reals through a gateway here are not looked at.
//
// Cost (thousands of reals): each real's route is cached, looked up when
// the real first appears and again kRouteRefresh later, at most
// kRouteLookupsPerRun lookups a run (one netlink request each, ~10 us), new
// reals first, then the oldest. So a run costs a bounded few milliseconds
// on keeld's loop whatever the number of reals, a new real's route is known
// within a few runs, and a route that changes (a new default gateway) is
// followed within kRouteRefresh (longer past ~3,000 reals: the budget
// spreads the refresh). The neighbour entries, which is where a replaced
// router shows, are read at every run: one dump filtered by interface, per
// data plane interface, for all the gateways (few), and one link dump to
// know the interfaces on dataplane.interface.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "common/address.h"
#include "control/config.h"
#include "daemon/neighbour.h"

namespace keel {

// The kernel's route to each address from the given sources (keeld:
// routesTo); an address with no route is absent.
using RouteResolver = std::function<std::map<IpAddress, RouteHop>(const std::vector<IpAddress>& destinations,
                                                                  const RouteSources& sources)>;
// The interfaces stacked on one (keeld: interfacesOn).
using InterfacesOn = std::function<std::vector<std::string>(const std::string& interface)>;

class NextHopCheck {
 public:
  static constexpr size_t kRouteLookupsPerRun = 256;
  static constexpr std::chrono::seconds kRouteRefresh{60};

  // `routes`: route lookups; `neighbours`: the neighbour entries of the
  // gateways on an interface and the interfaces on it (keeld:
  // resolveNeighbours without a wait, nudging the ones missing);
  // `interfacesOn`: the interfaces stacked on an interface (keeld:
  // interfacesOn), whose routes count as the interface's; empty: none.
  NextHopCheck(RouteResolver routes, MacResolver neighbours, InterfacesOn interfacesOn = {})
      : routes_(std::move(routes)), neighbours_(std::move(neighbours)), interfacesOn_(std::move(interfacesOn)) {}

  // One check of `config`'s ipip reals against its node.next_hop_mac, on
  // `interface` (dataplane.interface) and the interfaces on it; logs what
  // changed.
  void run(const Config& config, const std::string& interface,
           std::chrono::steady_clock::time_point now = std::chrono::steady_clock::now());

  // Each family that has ipip reals ("ipv4", "ipv6") and whether
  // next_hop_mac mismatches there now (keel_next_hop_mac_mismatch).
  std::map<std::string, bool> mismatches() const;

  // Route lookups asked for so far (tests: the budget).
  size_t routeLookups() const { return routeLookups_; }

 private:
  enum class Verdict { kUnknown, kMatch, kMismatch };
  struct Family {
    Verdict verdict = Verdict::kUnknown;
    // (gateway, its MAC, next_hop_mac) warned about since the last match.
    std::set<std::tuple<IpAddress, MacAddress, MacAddress>> warned;
    std::string unchecked;  // the reason last logged as next_hop_mac_unchecked
  };
  struct CachedRoute {
    std::optional<RouteHop> hop;  // none: no route
    std::chrono::steady_clock::time_point at;
  };
  void refreshRoutes(const std::set<IpAddress>& reals, const RouteSources& sources,
                     std::chrono::steady_clock::time_point now);

  RouteResolver routes_;
  MacResolver neighbours_;
  InterfacesOn interfacesOn_;
  std::map<IpAddress, CachedRoute> cache_;
  // The sources cache_'s routes were looked up from: the node's tunnel
  // sources, so that a policy rule routing keel's outer source by another
  // table is followed; a reload that changes them makes every route due.
  RouteSources cachedFrom_;
  std::map<int, Family> families_;  // by 4 / 6
  size_t routeLookups_ = 0;
};

}  // namespace keel

// SPDX-License-Identifier: Apache-2.0
// The kernel's route to an address, as `ip route get DST [from SRC]`: one
// netlink RTM_GETROUTE request and its answer, without a packet. keeld
// asks it which addresses are local and where ipip frames go
// (daemon/neighbour.h: addressIsLocal, routesTo); the health checker asks
// it whether this host's own path to a real is down
// (control/health/probe.h: hostPathDown). Plain Linux headers only.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "common/address.h"
#include "common/fd.h"

namespace keel {

// An address from netlink's (or a sockaddr's) bytes: len 4 IPv4, else the
// 16 of an IPv6 one.
IpAddress addressFromBytes(const uint8_t* bytes, size_t len);

// A NETLINK_ROUTE socket for requests and their answers (-1 if none).
// Reads time out after `readTimeout`, so a silent kernel never hangs the
// caller's loop (keeld's: 1 s; a health check's thread: 100 ms).
Fd routeSocket(std::chrono::milliseconds readTimeout);

// Where the kernel sends a packet for an address: the route's gateway (none:
// the address is on-link) and its output interface's name.
struct RouteHop {
  std::optional<IpAddress> gateway;
  std::string interface;
  auto operator<=>(const RouteHop&) const = default;
};

// One lookup's answer.
struct RouteLookup {
  // The kernel's route (RTM_NEWROUTE); none for no route, a refused lookup
  // or a socket that failed. Its interface is empty if the route named no
  // output interface or that interface is gone by now.
  std::optional<RouteHop> hop;
  // The hop's output interface's index (RTA_OIF); 0 if it named none.
  // Beside the hop rather than in it: RouteHop is compared by value
  // (routesTo's results), and an index says nothing a name does not.
  unsigned ifindex = 0;
  // The route's rtm_type (RTN_UNICAST, RTN_LOCAL for one of this host's
  // addresses, ...); RTN_UNSPEC (0) without a route.
  unsigned char type = 0;
  // The kernel's refusal (NLMSG_ERROR): its negative errno. -ENETUNREACH
  // for no route at all; another for a route the operator made to refuse
  // (unreachable: -EHOSTUNREACH; IPv4's prohibit: -EACCES, blackhole:
  // -EINVAL). 0 otherwise, and for an error message too short to carry one.
  int error = 0;
  // The request could not be sent, or no answer to it was read (the
  // socket's read timed out or failed): the caller cannot tell.
  bool socketFailed = false;
};

// One RTM_GETROUTE for `dst` (from `src` if set, RTA_SRC: policy rules that
// route that source by another table are followed, as for its packets) on
// `sock` (a routeSocket()), its answer read by `seq`. A socket reused for
// many lookups needs a new seq for each: an answer of an earlier request
// whose read timed out is skipped by it. `src` must be of dst's family.
RouteLookup lookupRoute(int sock, uint32_t seq, const IpAddress& dst,
                        const std::optional<IpAddress>& src = std::nullopt);

}  // namespace keel

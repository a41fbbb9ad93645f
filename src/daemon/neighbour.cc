// SPDX-License-Identifier: Apache-2.0
#include "daemon/neighbour.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <linux/if_link.h>
#include <linux/neighbour.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <array>
#include <chrono>
#include <cstring>
#include <set>
#include <thread>

#include "common/fd.h"

namespace keel {
namespace {

// Reads of keeld's route sockets time out after 1 s, so a silent socket
// never hangs keeld's loop.
constexpr std::chrono::milliseconds kRouteReadTimeout{1000};

// One RTM_GETNEIGH dump of both families, of `ifindex`'s entries (the
// kernel filters by NDA_IFINDEX, so a host with a large table on other
// interfaces does not copy it all out on every read: 10,000 entries
// elsewhere cost ~2.6 ms a read before), filtered here by the addresses
// wanted (and by interface again), on `sock` (a routeSocket()): what it
// finds of them, with usable MACs, added to `found` (false: the socket
// failed, a later dump on it would read this one's rest).
bool dumpNeighbours(int sock, uint32_t seq, int ifindex, const std::set<IpAddress>& wanted,
                    std::map<IpAddress, MacAddress>& found) {
  struct {
    nlmsghdr nh;
    ndmsg nd;
    rtattr ifindexAttr;
    uint32_t ifindex;
  } req{};
  static_assert(sizeof req == NLMSG_LENGTH(sizeof(ndmsg)) + RTA_LENGTH(sizeof(uint32_t)));
  req.nh.nlmsg_len = sizeof req;
  req.nh.nlmsg_type = RTM_GETNEIGH;
  req.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  req.nh.nlmsg_seq = seq;
  req.nd.ndm_family = AF_UNSPEC;  // IPv4 and IPv6 neighbours in one dump
  req.ifindexAttr.rta_type = NDA_IFINDEX;
  req.ifindexAttr.rta_len = RTA_LENGTH(sizeof(uint32_t));
  req.ifindex = static_cast<uint32_t>(ifindex);
  if (::send(sock, &req, req.nh.nlmsg_len, 0) < 0) return false;

  alignas(nlmsghdr) char buf[32768];
  for (int reads = 0; reads < 10000; ++reads) {  // bounded: a dump ends with NLMSG_DONE
    ssize_t n = ::recv(sock, buf, sizeof buf, 0);
    if (n <= 0) return false;
    int len = static_cast<int>(n);
    for (auto* nh = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(nh, len); nh = NLMSG_NEXT(nh, len)) {
      if (nh->nlmsg_seq != seq) continue;  // the rest of an earlier dump whose read timed out
      if (nh->nlmsg_type == NLMSG_DONE || nh->nlmsg_type == NLMSG_ERROR) return true;
      if (nh->nlmsg_type != RTM_NEWNEIGH) continue;
      auto* nd = static_cast<ndmsg*>(NLMSG_DATA(nh));
      if (nd->ndm_ifindex != ifindex) continue;
      if (nd->ndm_family != AF_INET && nd->ndm_family != AF_INET6) continue;
      // Usable states only: INCOMPLETE/FAILED entries have no (valid) MAC.
      if (!(nd->ndm_state & (NUD_REACHABLE | NUD_STALE | NUD_DELAY | NUD_PROBE | NUD_PERMANENT)))
        continue;
      const size_t addrLen = nd->ndm_family == AF_INET ? 4 : 16;
      const uint8_t* dst = nullptr;
      const uint8_t* lladdr = nullptr;
      int attrLen = static_cast<int>(RTM_PAYLOAD(nh));
      for (auto* rta = reinterpret_cast<rtattr*>(RTM_RTA(nd)); RTA_OK(rta, attrLen);
           rta = RTA_NEXT(rta, attrLen)) {
        if (rta->rta_type == NDA_DST && RTA_PAYLOAD(rta) == addrLen)
          dst = static_cast<const uint8_t*>(RTA_DATA(rta));
        if (rta->rta_type == NDA_LLADDR && RTA_PAYLOAD(rta) == 6)
          lladdr = static_cast<const uint8_t*>(RTA_DATA(rta));
      }
      if (!dst || !lladdr) continue;
      const IpAddress a = addressFromBytes(dst, addrLen);
      if (!wanted.count(a)) continue;
      std::array<uint8_t, 6> mac;
      std::memcpy(mac.data(), lladdr, 6);
      found.insert_or_assign(a, MacAddress(mac));
    }
  }
  return false;
}

// The neighbour entries of `wanted` on each of `ifindexes`: one dump
// filtered by interface for each, on one socket (a trunk's few VLANs cost a
// few small dumps: 0.06-0.07 ms each beside 10,000 entries of another
// interface, docs/operations.md; one unfiltered dump would copy those out
// too). An address with entries on two of them (the same subnet on two
// VLANs) gets the one of the later interface.
std::map<IpAddress, MacAddress> dumpNeighbours(const std::vector<int>& ifindexes, const std::set<IpAddress>& wanted) {
  std::map<IpAddress, MacAddress> found;
  Fd sock = routeSocket(kRouteReadTimeout);
  if (sock.get() < 0) return found;
  uint32_t seq = 0;
  for (int ifindex : ifindexes)
    if (!dumpNeighbours(sock.get(), ++seq, ifindex, wanted, found)) break;
  return found;
}

// The links stacked directly on `ifindex` in this network namespace: their
// IFLA_LINK is it, without IFLA_LINK_NETNSID (a lower device in another
// namespace), and their kind is one that shares its wire: an 802.1Q/802.1ad
// VLAN, a macvlan or an ipvlan. A veth's IFLA_LINK is its peer, and a
// tunnel's the device it leaves through: neither is on the same segment.
//
// One RTM_GETLINK dump of every link: the kernel filters link dumps by
// kind only for kinds whose module is loaded, and never by lower device, so
// a filtered dump per kind would still be a full one on most hosts
// (ipvlan's module is seldom loaded). Cost, measured with a loop of 200
// reads in a network namespace (2-core VM, kernel 6.18, 2026-12-06): 0.03
// ms with 3 links, 4.5-5.6 ms with 1,000 (500 veth pairs; asking without
// stats, RTEXT_FILTER_SKIP_STATS, changed nothing measurable). keeld pays
// it at each neighbour read (resolveNeighbours: the l2dsr retries and
// refreshes, every 2 s while there are such reals; next_hop_mac's check),
// so a host with a thousand links spends ~5 ms of keeld's loop on each
// (twice where the messages name those interfaces too: lookUpMacs).
std::vector<std::pair<int, std::string>> linksOn(int ifindex) {
  std::vector<std::pair<int, std::string>> out;
  if (ifindex <= 0) return out;
  Fd sock = routeSocket(kRouteReadTimeout);
  if (sock.get() < 0) return out;
  struct {
    nlmsghdr nh;
    ifinfomsg ifi;
  } req{};
  req.nh.nlmsg_len = sizeof req;
  req.nh.nlmsg_type = RTM_GETLINK;
  req.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  req.nh.nlmsg_seq = 1;
  req.ifi.ifi_family = AF_UNSPEC;
  if (::send(sock.get(), &req, req.nh.nlmsg_len, 0) < 0) return out;

  auto text = [](const rtattr* a) {
    const char* p = static_cast<const char*>(RTA_DATA(a));
    return std::string(p, strnlen(p, RTA_PAYLOAD(a)));
  };
  alignas(nlmsghdr) char buf[32768];
  for (int reads = 0; reads < 10000; ++reads) {  // bounded: a dump ends with NLMSG_DONE
    ssize_t n = ::recv(sock.get(), buf, sizeof buf, 0);
    if (n <= 0) return out;
    int len = static_cast<int>(n);
    for (auto* nh = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(nh, len); nh = NLMSG_NEXT(nh, len)) {
      if (nh->nlmsg_type == NLMSG_DONE || nh->nlmsg_type == NLMSG_ERROR) return out;
      if (nh->nlmsg_type != RTM_NEWLINK) continue;
      auto* ifi = static_cast<ifinfomsg*>(NLMSG_DATA(nh));
      int link = 0;
      bool otherNetns = false;
      std::string name, kind;
      int attrLen = static_cast<int>(IFLA_PAYLOAD(nh));
      for (auto* rta = IFLA_RTA(ifi); RTA_OK(rta, attrLen); rta = RTA_NEXT(rta, attrLen)) {
        if (rta->rta_type == IFLA_LINK && RTA_PAYLOAD(rta) == sizeof(int32_t)) {
          std::memcpy(&link, RTA_DATA(rta), sizeof link);
        } else if (rta->rta_type == IFLA_LINK_NETNSID) {
          otherNetns = true;
        } else if (rta->rta_type == IFLA_IFNAME) {
          name = text(rta);
        } else if (rta->rta_type == IFLA_LINKINFO) {
          int infoLen = static_cast<int>(RTA_PAYLOAD(rta));
          for (auto* info = static_cast<rtattr*>(RTA_DATA(rta)); RTA_OK(info, infoLen); info = RTA_NEXT(info, infoLen))
            if (info->rta_type == IFLA_INFO_KIND) kind = text(info);
        }
      }
      if (link != ifindex || otherNetns || ifi->ifi_index == ifindex || name.empty()) continue;
      if (kind == "vlan" || kind == "macvlan" || kind == "ipvlan") out.emplace_back(ifi->ifi_index, name);
    }
  }
  return out;
}

// The route's output interface toward `address` if it is one of
// `interfaces`, else the first of them (the data plane's own), to nudge
// it through.
std::string nudgeInterface(int sock, uint32_t seq, const IpAddress& address,
                           const std::vector<std::pair<int, std::string>>& interfaces) {
  const RouteLookup route = lookupRoute(sock, seq, address);
  if (route.hop)
    for (const auto& [index, name] : interfaces)
      if (route.ifindex == static_cast<unsigned>(index)) return name;
  return interfaces.front().second;
}

// Makes the kernel resolve `address` if it is on-link via `interface`
// (bound to it: with no route through it the kernel takes the address for
// on-link there and asks for it anyway).
void promptResolution(const IpAddress& address, const std::string& interface) {
  int family = address.isV4() ? AF_INET : AF_INET6;
  Fd sock(::socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (sock.get() < 0) return;
  setsockopt(sock.get(), SOL_SOCKET, SO_BINDTODEVICE, interface.c_str(),
             static_cast<socklen_t>(interface.size()));
  const char byte = 0;
  if (address.isV4()) {
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(9);  // discard
    std::memcpy(&sa.sin_addr, address.bytes().data(), 4);
    (void)::sendto(sock.get(), &byte, 1, MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
  } else {
    sockaddr_in6 sa{};
    sa.sin6_family = AF_INET6;
    sa.sin6_port = htons(9);
    std::memcpy(&sa.sin6_addr, address.bytes().data(), 16);
    (void)::sendto(sock.get(), &byte, 1, MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
  }
}

}  // namespace

std::optional<MacAddress> interfaceMac(const std::string& interface) {
  if (interface.empty() || interface.size() >= IFNAMSIZ) return std::nullopt;
  Fd sock(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (sock.get() < 0) return std::nullopt;
  ifreq ifr{};
  std::memcpy(ifr.ifr_name, interface.c_str(), interface.size());
  if (::ioctl(sock.get(), SIOCGIFHWADDR, &ifr) != 0) return std::nullopt;
  std::array<uint8_t, 6> mac;
  std::memcpy(mac.data(), ifr.ifr_hwaddr.sa_data, 6);
  MacAddress m(mac);
  if (m.isZero()) return std::nullopt;
  return m;
}

std::vector<IpAddress> interfaceAddresses(const std::string& interface) {
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) return {};
  std::vector<IpAddress> out;
  for (const ifaddrs* a = list; a; a = a->ifa_next) {
    if (!a->ifa_addr || !a->ifa_name) continue;
    // An IPv4 address added with a label (ip addr add ... label eth0:vip)
    // is listed under the label.
    const std::string name = a->ifa_name;
    if (name != interface && name.rfind(interface + ":", 0) != 0) continue;
    if (a->ifa_addr->sa_family == AF_INET) {
      const auto* in = reinterpret_cast<const sockaddr_in*>(a->ifa_addr);
      out.push_back(addressFromBytes(reinterpret_cast<const uint8_t*>(&in->sin_addr), 4));
    } else if (a->ifa_addr->sa_family == AF_INET6) {
      const auto* in6 = reinterpret_cast<const sockaddr_in6*>(a->ifa_addr);
      out.push_back(addressFromBytes(reinterpret_cast<const uint8_t*>(&in6->sin6_addr), 16));
    }
  }
  ::freeifaddrs(list);
  return out;
}

namespace {

// addressIsLocal on `sock` (a routeSocket()): the kernel's own answer, the
// route to the address is of type local (the local table: an interface's
// address, or an AnyIP range), as for `ip route get ADDR`. A bind test
// would say yes to any address under net.ipv4.ip_nonlocal_bind, common on
// balancers.
bool isLocal(int sock, uint32_t seq, const IpAddress& a) {
  const RouteLookup route = lookupRoute(sock, seq, a);
  if (route.socketFailed) return true;  // cannot tell
  return route.hop && route.type == RTN_LOCAL;
}

}  // namespace

bool addressIsLocal(const IpAddress& a) {
  Fd sock = routeSocket(kRouteReadTimeout);
  return sock.get() < 0 || isLocal(sock.get(), 1, a);  // no socket: cannot tell
}

std::map<IpAddress, RouteHop> routesTo(const std::vector<IpAddress>& destinations, const RouteSources& sources) {
  std::map<IpAddress, RouteHop> found;
  if (destinations.empty()) return found;
  Fd sock = routeSocket(kRouteReadTimeout);
  if (sock.get() < 0) return found;
  uint32_t seq = 0;
  // Decided once for all the lookups: no address is looked up twice.
  const std::optional<IpAddress> v4 =
      sources.v4 && isLocal(sock.get(), ++seq, *sources.v4) ? sources.v4 : std::nullopt;
  for (const IpAddress& dst : destinations) {
    if (!dst.family()) continue;
    RouteLookup route = lookupRoute(sock.get(), ++seq, dst, dst.isV4() ? v4 : sources.v6);
    if (route.socketFailed) return found;  // a silent socket would cost a second for each address left
    if (route.hop) found.insert_or_assign(dst, std::move(*route.hop));
  }
  return found;
}

std::vector<std::string> interfacesOn(const std::string& interface) {
  std::vector<std::string> out;
  if (interface.empty()) return out;
  for (auto& [index, name] : linksOn(static_cast<int>(if_nametoindex(interface.c_str()))))
    out.push_back(std::move(name));
  return out;
}

std::map<IpAddress, MacAddress> resolveNeighbours(const std::vector<IpAddress>& addresses,
                                                  const std::string& interface, int waitMs, bool nudge) {
  const int ifindex = static_cast<int>(if_nametoindex(interface.c_str()));
  std::set<IpAddress> wanted;
  for (const IpAddress& a : addresses)
    if (a.family()) wanted.insert(a);
  if (ifindex == 0 || wanted.empty()) return {};
  // The interface and those stacked on it: on a VLAN trunk the host's
  // addresses, routes and so its neighbour entries are on eth0.100, while
  // the data plane is on eth0 (native XDP attaches to no VLAN device), and
  // frames to such a MAC leave through eth0 all the same. An entry on any
  // other interface is not on the data plane's segment: ignored.
  std::vector<std::pair<int, std::string>> interfaces{{ifindex, interface}};
  for (auto& link : linksOn(ifindex)) interfaces.push_back(std::move(link));
  std::vector<int> ifindexes;
  for (const auto& [index, name] : interfaces) ifindexes.push_back(index);
  std::map<IpAddress, MacAddress> found = dumpNeighbours(ifindexes, wanted);
  if (found.size() == wanted.size() || !nudge) return found;
  // Nudge every missing one first, then poll them all together: N unknown
  // neighbours cost one wait, not N. Each through the interface its route
  // leaves by when that is one of them (a real on-link on eth0.100 is
  // asked for there, tagged), else through the data plane's own as before.
  {
    Fd sock = interfaces.size() > 1 ? routeSocket(kRouteReadTimeout) : Fd(-1);
    uint32_t seq = 0;
    for (const IpAddress& a : wanted)
      if (!found.count(a))
        promptResolution(a, sock.get() < 0 ? interface : nudgeInterface(sock.get(), ++seq, a, interfaces));
  }
  // Polled at 2, 4, 8, 16 ms, then every 20 ms, and never past the
  // deadline: a LAN's answer (well under a millisecond) is read at 2 ms,
  // and waitMs is the most the call takes.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(std::max(0, waitMs));
  auto step = std::chrono::milliseconds(2);
  for (auto now = std::chrono::steady_clock::now(); found.size() < wanted.size() && now < deadline;
       now = std::chrono::steady_clock::now()) {
    std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(step, deadline - now));
    step = std::min(step * 2, std::chrono::milliseconds(20));
    found = dumpNeighbours(ifindexes, wanted);
  }
  return found;
}

}  // namespace keel

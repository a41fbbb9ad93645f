// SPDX-License-Identifier: Apache-2.0
#include "common/route.h"

#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <array>
#include <cstring>

namespace keel {

IpAddress addressFromBytes(const uint8_t* bytes, size_t len) {
  if (len == 4) {
    std::array<uint8_t, 4> b;
    std::memcpy(b.data(), bytes, 4);
    return IpAddress::fromV4(b);
  }
  std::array<uint8_t, 16> b;
  std::memcpy(b.data(), bytes, 16);
  return IpAddress::fromV6(b);
}

Fd routeSocket(std::chrono::milliseconds readTimeout) {
  Fd sock(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE));
  if (sock.get() < 0) return sock;
  const auto ms = readTimeout.count();
  timeval tv{static_cast<time_t>(ms / 1000), static_cast<suseconds_t>(ms % 1000 * 1000)};
  ::setsockopt(sock.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return sock;
}

RouteLookup lookupRoute(int sock, uint32_t seq, const IpAddress& dst, const std::optional<IpAddress>& src) {
  RouteLookup result;
  const size_t addrLen = dst.isV4() ? 4 : 16;
  alignas(nlmsghdr) char req[NLMSG_SPACE(sizeof(rtmsg)) + 2 * RTA_SPACE(16)] = {};
  auto* nh = reinterpret_cast<nlmsghdr*>(req);
  nh->nlmsg_len = NLMSG_LENGTH(sizeof(rtmsg));
  nh->nlmsg_type = RTM_GETROUTE;
  nh->nlmsg_flags = NLM_F_REQUEST;
  nh->nlmsg_seq = seq;
  auto* rt = static_cast<rtmsg*>(NLMSG_DATA(nh));
  rt->rtm_family = dst.isV4() ? AF_INET : AF_INET6;
  auto add = [&](unsigned short type, const IpAddress& a) {
    auto* rta = reinterpret_cast<rtattr*>(req + NLMSG_ALIGN(nh->nlmsg_len));
    rta->rta_type = type;
    rta->rta_len = static_cast<unsigned short>(RTA_LENGTH(addrLen));
    std::memcpy(RTA_DATA(rta), a.bytes().data(), addrLen);
    nh->nlmsg_len = NLMSG_ALIGN(nh->nlmsg_len) + RTA_ALIGN(rta->rta_len);
  };
  rt->rtm_dst_len = static_cast<unsigned char>(addrLen * 8);
  add(RTA_DST, dst);
  if (src) {
    rt->rtm_src_len = static_cast<unsigned char>(addrLen * 8);
    add(RTA_SRC, *src);
  }
  result.socketFailed = true;  // until an answer is read
  if (::send(sock, req, nh->nlmsg_len, 0) < 0) return result;
  // One answer: RTM_NEWROUTE, or NLMSG_ERROR (no route: ENETUNREACH).
  // Answers of an earlier request (a timed-out read) are skipped by seq.
  alignas(nlmsghdr) char buf[8192];
  for (int reads = 0; reads < 4; ++reads) {
    ssize_t n = ::recv(sock, buf, sizeof buf, 0);
    if (n <= 0) return result;
    int len = static_cast<int>(n);
    for (auto* an = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(an, len); an = NLMSG_NEXT(an, len)) {
      if (an->nlmsg_seq != seq) continue;
      result.socketFailed = false;
      if (an->nlmsg_type == NLMSG_ERROR) {
        if (an->nlmsg_len >= NLMSG_LENGTH(sizeof(nlmsgerr)))
          result.error = static_cast<const nlmsgerr*>(NLMSG_DATA(an))->error;
        return result;
      }
      if (an->nlmsg_type != RTM_NEWROUTE || an->nlmsg_len < NLMSG_LENGTH(sizeof(rtmsg))) return result;
      auto* route = static_cast<rtmsg*>(NLMSG_DATA(an));
      result.type = route->rtm_type;
      RouteHop hop;
      int attrLen = static_cast<int>(RTM_PAYLOAD(an));
      for (auto* rta = reinterpret_cast<rtattr*>(RTM_RTA(route)); RTA_OK(rta, attrLen); rta = RTA_NEXT(rta, attrLen)) {
        const auto* data = static_cast<const uint8_t*>(RTA_DATA(rta));
        if (rta->rta_type == RTA_GATEWAY && RTA_PAYLOAD(rta) == addrLen) {
          hop.gateway = addressFromBytes(data, addrLen);
        } else if (rta->rta_type == RTA_VIA && RTA_PAYLOAD(rta) >= sizeof(rtvia)) {
          // An IPv4 route through an IPv6 gateway (RFC 5549).
          const auto* via = reinterpret_cast<const rtvia*>(data);
          const size_t viaLen = RTA_PAYLOAD(rta) - sizeof(rtvia);
          if ((via->rtvia_family == AF_INET && viaLen == 4) || (via->rtvia_family == AF_INET6 && viaLen == 16))
            hop.gateway = addressFromBytes(via->rtvia_addr, viaLen);
        } else if (rta->rta_type == RTA_OIF && RTA_PAYLOAD(rta) == sizeof(uint32_t)) {
          uint32_t oif;
          std::memcpy(&oif, data, sizeof oif);
          result.ifindex = oif;
          char name[IF_NAMESIZE] = {};
          if (if_indextoname(oif, name)) hop.interface = name;
        }
      }
      result.hop = std::move(hop);
      return result;
    }
  }
  return result;
}

}  // namespace keel

// SPDX-License-Identifier: Apache-2.0
#include "dataplane/xdp/xdp_features.h"

#include <linux/ethtool.h>
#include <linux/genetlink.h>
#include <linux/netlink.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "common/fd.h"

namespace keel {
namespace {

// The netdev family (include/uapi/linux/netdev.h, kernel 6.3): its
// dev-get command and the attributes it takes and answers with.
constexpr const char kNetdevFamily[] = "netdev";
constexpr uint8_t kNetdevCmdDevGet = 1;        // NETDEV_CMD_DEV_GET
constexpr uint16_t kNetdevAttrIfindex = 1;     // NETDEV_A_DEV_IFINDEX (u32)
constexpr uint16_t kNetdevAttrXdpFeatures = 3;  // NETDEV_A_DEV_XDP_FEATURES (u64)

// One generic netlink request (a single attribute) and its one answer:
// calls onAttr(type, data, len) for each attribute of the answer. False
// on an error answer, a send or receive that fails, or no answer in 1 s.
template <typename OnAttr>
bool ask(int sock, uint16_t family, uint8_t cmd, uint16_t attr, const void* data, uint16_t len, uint32_t seq,
         OnAttr onAttr) {
  struct {
    nlmsghdr nh;
    genlmsghdr g;
    char attrs[64];
  } req{};
  if (static_cast<size_t>(NLA_HDRLEN + NLA_ALIGN(len)) > sizeof req.attrs) return false;
  auto* a = reinterpret_cast<nlattr*>(req.attrs);
  a->nla_type = attr;
  a->nla_len = static_cast<uint16_t>(NLA_HDRLEN + len);
  std::memcpy(req.attrs + NLA_HDRLEN, data, len);
  req.nh.nlmsg_len = NLMSG_LENGTH(GENL_HDRLEN + NLA_HDRLEN + NLA_ALIGN(len));
  req.nh.nlmsg_type = family;
  req.nh.nlmsg_flags = NLM_F_REQUEST;
  req.nh.nlmsg_seq = seq;
  req.g.cmd = cmd;
  req.g.version = 1;
  if (::send(sock, &req, req.nh.nlmsg_len, 0) < 0) return false;
  alignas(nlmsghdr) char buf[8192];
  for (int reads = 0; reads < 8; ++reads) {  // skips a stray answer to another seq
    const ssize_t n = ::recv(sock, buf, sizeof buf, 0);
    if (n <= 0) return false;
    int left = static_cast<int>(n);
    for (auto* nh = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(nh, left); nh = NLMSG_NEXT(nh, left)) {
      if (nh->nlmsg_seq != seq) continue;
      if (nh->nlmsg_type == NLMSG_ERROR || nh->nlmsg_len < NLMSG_LENGTH(GENL_HDRLEN)) return false;
      const char* at = static_cast<const char*>(NLMSG_DATA(nh)) + GENL_HDRLEN;
      int rest = static_cast<int>(nh->nlmsg_len - NLMSG_LENGTH(GENL_HDRLEN));
      while (rest >= NLA_HDRLEN) {
        const auto* na = reinterpret_cast<const nlattr*>(at);
        if (na->nla_len < NLA_HDRLEN || na->nla_len > rest) break;
        onAttr(static_cast<uint16_t>(na->nla_type & NLA_TYPE_MASK), at + NLA_HDRLEN, na->nla_len - NLA_HDRLEN);
        rest -= NLA_ALIGN(na->nla_len);
        at += NLA_ALIGN(na->nla_len);
      }
      return true;
    }
  }
  return false;
}

}  // namespace

std::optional<uint64_t> xdpFeatures(int ifindex) {
  Fd sock(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_GENERIC));
  if (sock.get() < 0) return std::nullopt;
  const timeval timeout{1, 0};
  ::setsockopt(sock.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  uint16_t family = 0;
  // An older kernel has no such family: an error answer.
  if (!ask(sock.get(), GENL_ID_CTRL, CTRL_CMD_GETFAMILY, CTRL_ATTR_FAMILY_NAME, kNetdevFamily,
           sizeof kNetdevFamily, 1, [&](uint16_t type, const char* data, int len) {
             if (type == CTRL_ATTR_FAMILY_ID && len >= 2) std::memcpy(&family, data, 2);
           }) ||
      family == 0)
    return std::nullopt;
  std::optional<uint64_t> features;
  const uint32_t index = static_cast<uint32_t>(ifindex);
  if (!ask(sock.get(), family, kNetdevCmdDevGet, kNetdevAttrIfindex, &index, sizeof index, 2,
           [&](uint16_t type, const char* data, int len) {
             uint64_t v = 0;
             if (type == kNetdevAttrXdpFeatures && len >= 8) features = (std::memcpy(&v, data, 8), v);
           }))
    return std::nullopt;
  return features;
}

std::string driverName(const std::string& ifname) {
  Fd sock(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  ethtool_drvinfo info{};
  info.cmd = ETHTOOL_GDRVINFO;
  ifreq req{};
  if (sock.get() < 0 || ifname.size() >= sizeof req.ifr_name) return "";
  std::memcpy(req.ifr_name, ifname.c_str(), ifname.size() + 1);
  req.ifr_data = reinterpret_cast<char*>(&info);
  if (::ioctl(sock.get(), SIOCETHTOOL, &req) != 0) return "";
  return std::string(info.driver, strnlen(info.driver, sizeof info.driver));
}

bool lacksNativeXdp(std::optional<uint64_t> features, const std::string& driver) {
  if (!features) return false;
  if (*features != 0) return (*features & kXdpActBasic) == 0;
  for (const char* none : {"macvlan", "ipvlan", "bridge", "802.1Q VLAN Support", "tun"})
    if (driver == none) return true;
  return false;
}

}  // namespace keel

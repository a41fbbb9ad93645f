// SPDX-License-Identifier: Apache-2.0
#include "dataplane/xdp/xdp_features.h"

#include <linux/ethtool.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <netlink/genl/ctrl.h>
#include <netlink/genl/genl.h>
#include <netlink/netlink.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <string>

#include "common/fd.h"

namespace keel {
namespace {

// The netdev family (include/uapi/linux/netdev.h, kernel 6.3): its
// dev-get command and the attributes it takes and answers with.
constexpr uint8_t kNetdevCmdDevGet = 1;         // NETDEV_CMD_DEV_GET
constexpr int kNetdevAttrIfindex = 1;           // NETDEV_A_DEV_IFINDEX (u32)
constexpr int kNetdevAttrXdpFeatures = 3;       // NETDEV_A_DEV_XDP_FEATURES (u64)
constexpr int kNetdevAttrMax = kNetdevAttrXdpFeatures;

struct SockFree {
  void operator()(nl_sock* s) const { nl_socket_free(s); }
};
struct MsgFree {
  void operator()(nl_msg* m) const { nlmsg_free(m); }
};

// The answer's NETDEV_A_DEV_XDP_FEATURES, into *arg (std::optional<uint64_t>);
// one shorter than a u64 fails the parse (nla_get_u64 would read it as 0).
int onDevice(nl_msg* msg, void* arg) {
  nlattr* attrs[kNetdevAttrMax + 1] = {};
  nla_policy policy[kNetdevAttrMax + 1] = {};
  policy[kNetdevAttrXdpFeatures].type = NLA_U64;
  if (genlmsg_parse(nlmsg_hdr(msg), 0, attrs, kNetdevAttrMax, policy) == 0 && attrs[kNetdevAttrXdpFeatures])
    *static_cast<std::optional<uint64_t>*>(arg) = nla_get_u64(attrs[kNetdevAttrXdpFeatures]);
  return NL_OK;
}

}  // namespace

std::optional<uint64_t> xdpFeatures(int ifindex) {
  // libnl-genl: resolve the family (an older kernel has none), ask dev-get
  // for the interface, read the one answer.
  std::unique_ptr<nl_sock, SockFree> sock(nl_socket_alloc());
  if (!sock || genl_connect(sock.get()) != 0) return std::nullopt;
  // At most a second for each answer, as a check may not hang on the kernel.
  const timeval timeout{1, 0};
  if (::setsockopt(nl_socket_get_fd(sock.get()), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout) != 0)
    return std::nullopt;
  const int family = genl_ctrl_resolve(sock.get(), "netdev");
  if (family < 0) return std::nullopt;
  std::unique_ptr<nl_msg, MsgFree> msg(nlmsg_alloc());
  if (!msg || !genlmsg_put(msg.get(), NL_AUTO_PORT, NL_AUTO_SEQ, family, 0, 0, kNetdevCmdDevGet, 1) ||
      nla_put_u32(msg.get(), kNetdevAttrIfindex, static_cast<uint32_t>(ifindex)) != 0)
    return std::nullopt;
  std::optional<uint64_t> features;
  if (nl_socket_modify_cb(sock.get(), NL_CB_VALID, NL_CB_CUSTOM, onDevice, &features) != 0 ||
      nl_send_auto(sock.get(), msg.get()) < 0 || nl_recvmsgs_default(sock.get()) != 0)
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
  // The kernel's attach asks only for the driver's ndo_bpf, never for these
  // flags: a driver that declares some without BASIC may still take a
  // native program (netdevsim declared HW_OFFLOAD alone in 6.3-6.12), so
  // only none at all, from a driver that has no ndo_bpf, says so.
  if (!features || *features != 0) return false;
  for (const char* none : {"macvlan", "ipvlan", "bridge", "802.1Q VLAN Support", "tun"})
    if (driver == none) return true;
  return false;
}

}  // namespace keel

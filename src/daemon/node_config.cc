// SPDX-License-Identifier: Apache-2.0
#include "daemon/node_config.h"

#include <array>
#include <cstring>

namespace keel {

std::optional<keel_node_config> buildNodeConfig(const Config& c,
                                                const std::optional<MacAddress>& planeMac,
                                                std::string* error) {
  keel_node_config n{};
  const NodeConfig& node = c.node;
  if (node.tunnelSourceV4) std::memcpy(&n.tunnel_src_v4, node.tunnelSourceV4->bytes().data(), 4);
  if (node.tunnelSourceV6) std::memcpy(n.tunnel_src_v6, node.tunnelSourceV6->bytes().data(), 16);
  if (node.nextHopMac) std::memcpy(n.next_hop_mac, node.nextHopMac->bytes().data(), 6);
  std::optional<MacAddress> local = node.localMac;
  if (!local) local = planeMac;
  if (!local) {
    std::string from = c.dataplane.kind == DataplaneKind::kXdp
                           ? "interface " + c.dataplane.interface
                           : "DPDK port " + c.dataplane.dpdk.port;
    *error = c.source + ": node.local_mac: not set and " + from +
             " has no MAC address to read; set node.local_mac";
    return std::nullopt;
  }
  std::memcpy(n.local_mac, local->bytes().data(), 6);
  if (node.hashSourceV4) {
    n.flags |= KEEL_NODE_F_HASH_SRC_V4;
    std::memcpy(&n.hash_src_v4_prefix, node.hashSourceV4->address.bytes().data(), 4);
    const std::array<uint8_t, 16> mask =
        IpPrefix{node.hashSourceV4->address, node.hashSourceV4->length}.maskBytes();
    std::memcpy(&n.hash_src_v4_mask, mask.data(), 4);  // network order, as the prefix
  }
  if (node.hashSourceV6) {
    n.flags |= KEEL_NODE_F_HASH_SRC_V6;
    std::memcpy(n.hash_src_v6_prefix, node.hashSourceV6->bytes().data(), 12);
  }
  n.udp_idle_timeout_s = static_cast<uint32_t>(node.udpIdleTimeout.count() / 1000);
  n.tcp_idle_timeout_s = static_cast<uint32_t>(node.tcpIdleTimeout.count() / 1000);
  n.icmp_too_big_rate = node.icmpTooBigRate;
  n.icmp_too_big_client_rate = node.icmpTooBigClientRate;
  n.conntrack_insert_rate = node.conntrackInsertRate;
  n.tunnel_mtu = node.tunnelMtu;
  return n;
}

bool sameNode(const keel_node_config& a, const keel_node_config& b) {
  return std::memcmp(&a, &b, sizeof a) == 0;
}

}  // namespace keel

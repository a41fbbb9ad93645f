// SPDX-License-Identifier: Apache-2.0
// Small frame builder and table helpers for the DPDK worker tests. Frames
// are built field by field from the RFC layouts (not through the parser under
// test), with valid IPv4 header checksums.
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "common/address.h"
#include "keel/encap.h"
#include "keel/maps_abi.h"
#include "keel/parse.h"

namespace keel::dpdk::test {

struct Frame {
  IpAddress src;
  IpAddress dst;
  uint16_t sport = 0;  // host order
  uint16_t dport = 0;
  uint8_t proto = KEEL_PROTO_TCP;  // TCP, UDP, ICMP (1) or ICMPv6 (58)
  std::optional<uint16_t> vlan;    // 802.1Q VID
  uint8_t tos = 0;
  uint8_t icmpType = 8;
  size_t payload = 16;
  uint16_t fragOff = 0;  // IPv4 frag_off field, host order
  // An established flow's segment: looked up in the connection table (a
  // SYN never is: keel_tcp_syn). KEEL_TCP_SYN for a connection's first.
  uint8_t tcpFlags = KEEL_TCP_ACK;
};

inline IpAddress ip(const char* s) { return *IpAddress::parse(s); }

inline void put16(std::vector<uint8_t>& v, uint16_t x) {
  v.push_back(static_cast<uint8_t>(x >> 8));
  v.push_back(static_cast<uint8_t>(x));
}

inline std::vector<uint8_t> buildFrame(const Frame& f) {
  std::vector<uint8_t> out;
  const uint8_t dmac[6] = {0x02, 0, 0, 0, 0, 0x01}, smac[6] = {0x02, 0, 0, 0, 0, 0x02};
  out.insert(out.end(), dmac, dmac + 6);
  out.insert(out.end(), smac, smac + 6);
  if (f.vlan) {
    put16(out, KEEL_ETH_P_8021Q);
    put16(out, *f.vlan);
  }
  const bool v6 = f.dst.isV6();
  put16(out, v6 ? KEEL_ETH_P_IPV6 : KEEL_ETH_P_IP);

  std::vector<uint8_t> l4;
  if (f.proto == KEEL_PROTO_TCP) {
    put16(l4, f.sport);
    put16(l4, f.dport);
    for (int i = 0; i < 8; ++i) l4.push_back(static_cast<uint8_t>(i));  // seq, ack
    l4.push_back(0x50);
    l4.push_back(f.tcpFlags);
    put16(l4, 65535);
    put16(l4, 0);
    put16(l4, 0);
  } else if (f.proto == KEEL_PROTO_UDP) {
    put16(l4, f.sport);
    put16(l4, f.dport);
    put16(l4, static_cast<uint16_t>(8 + f.payload));
    put16(l4, 0);
  } else {
    l4.push_back(f.icmpType);
    l4.push_back(0);
    put16(l4, 0);
    put16(l4, 0x1234);
    put16(l4, 1);
  }
  for (size_t i = 0; i < f.payload; ++i) l4.push_back(static_cast<uint8_t>(0xa0 + i));
  if (f.proto == KEEL_IPPROTO_ICMP) {  // ICMPv4 checksum covers the message only
    uint32_t sum = 0;
    for (size_t i = 0; i + 1 < l4.size(); i += 2) sum += static_cast<uint32_t>(l4[i] << 8 | l4[i + 1]);
    if (l4.size() & 1) sum += static_cast<uint32_t>(l4.back() << 8);
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    l4[2] = static_cast<uint8_t>(~sum >> 8);
    l4[3] = static_cast<uint8_t>(~sum);
  }

  size_t l3 = out.size();
  if (!v6) {
    out.push_back(0x45);
    out.push_back(f.tos);
    put16(out, static_cast<uint16_t>(20 + l4.size()));
    put16(out, 0x1111);
    put16(out, f.fragOff);
    out.push_back(61);
    out.push_back(f.proto);
    put16(out, 0);
    out.insert(out.end(), f.src.bytes().begin(), f.src.bytes().begin() + 4);
    out.insert(out.end(), f.dst.bytes().begin(), f.dst.bytes().begin() + 4);
    auto* hdr = reinterpret_cast<keel_ipv4*>(out.data() + l3);
    hdr->check = keel_ipv4_hdr_csum(hdr);
  } else {
    out.push_back(static_cast<uint8_t>(0x60 | (f.tos >> 4)));
    out.push_back(static_cast<uint8_t>((f.tos & 0xf) << 4));
    put16(out, 0);
    put16(out, static_cast<uint16_t>(l4.size()));
    out.push_back(f.proto);
    out.push_back(61);
    out.insert(out.end(), f.src.bytes().begin(), f.src.bytes().end());
    out.insert(out.end(), f.dst.bytes().begin(), f.dst.bytes().end());
  }
  out.insert(out.end(), l4.begin(), l4.end());
  return out;
}

inline keel_flow_key flowKey(const Frame& f) {
  keel_flow_key k{};
  f.src.toWords(k.src);
  f.dst.toWords(k.dst);
  k.sport = KEEL_HTONS(f.sport);
  k.dport = KEEL_HTONS(f.dport);
  k.proto = f.proto;
  k.family = f.dst.family();
  return k;
}

inline keel_vip_key vipKey(const IpAddress& a) {
  keel_vip_key k{};
  a.toWords(k.addr);
  k.family = a.family();
  return k;
}

inline keel_service_key serviceKey(const IpAddress& vip, uint16_t port, uint8_t proto) {
  keel_service_key k{};
  vip.toWords(k.vip);
  k.port = KEEL_HTONS(port);
  k.proto = proto;
  k.family = vip.family();
  return k;
}

inline keel_backend backend(const IpAddress& a, uint32_t serviceId, uint32_t gen = 1) {
  keel_backend b{};
  a.toWords(b.addr);
  b.service_id = serviceId;
  b.gen = gen;
  b.family = a.family();
  b.flags = KEEL_BE_F_VALID;
  for (int i = 0; i < 6; ++i) b.mac[i] = static_cast<uint8_t>(0x10 + i);
  b.mac[5] = static_cast<uint8_t>(a.bytes()[a.isV4() ? 3 : 15]);
  return b;
}

inline keel_node_config nodeConfig() {
  keel_node_config n{};
  std::memcpy(&n.tunnel_src_v4, ip("192.0.2.1").bytes().data(), 4);
  std::memcpy(n.tunnel_src_v6, ip("2001:db8:ff::1").bytes().data(), 16);
  const uint8_t nh[6] = {0x02, 0, 0, 0, 0, 0xfe}, local[6] = {0x02, 0, 0, 0, 0, 0xaa};
  std::memcpy(n.next_hop_mac, nh, 6);
  std::memcpy(n.local_mac, local, 6);
  n.udp_idle_timeout_s = 30;
  n.tcp_idle_timeout_s = 300;
  n.icmp_too_big_rate = 1000;  // keeld's default: bursts of 50, far more than any test sends
  n.icmp_too_big_client_rate = 100;  // keeld's default: bursts of 5 per client, more than a table sends one
  return n;
}

}  // namespace keel::dpdk::test

// SPDX-License-Identifier: Apache-2.0
#include "fixtures.h"

#include <arpa/inet.h>

#include <cstring>
#include <optional>

#include "keel/hash.h"
#include "keel/maglev_lookup.h"

namespace keel::test {
namespace {

constexpr uint8_t kTcp = KEEL_PROTO_TCP;
constexpr uint8_t kUdp = KEEL_PROTO_UDP;
constexpr uint16_t kSport = 40000;

void toWords(const std::string& ip, __u32 out[4]) {
  Bytes b = ipBytes(ip);
  std::memset(out, 0, 16);
  std::memcpy(out, b.data(), b.size());
}

uint8_t familyOf(const std::string& ip) { return ip.find(':') != std::string::npos ? KEEL_AF_INET6 : KEEL_AF_INET; }

std::string ipText(const __u32 addr[4], uint8_t family) {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(family == KEEL_AF_INET6 ? AF_INET6 : AF_INET, addr, buf, sizeof buf);
  return buf;
}

keel_vip_key vipKey(const std::string& ip) {
  keel_vip_key k{};
  toWords(ip, k.addr);
  k.family = familyOf(ip);
  return k;
}

keel_backend makeBackend(const std::string& ip, uint32_t serviceId, uint8_t macLast = 0,
                         uint8_t flags = KEEL_BE_F_VALID) {
  keel_backend b{};
  toWords(ip, b.addr);
  b.service_id = serviceId;
  b.gen = 1;
  b.family = familyOf(ip);
  b.flags = flags;
  Bytes mac = macBytes("02:00:00:00:01:00");
  mac[5] = macLast;
  std::memcpy(b.mac, mac.data(), 6);
  return b;
}

// The service table of fixtureState(), indexed by service id.
struct SvcDef {
  const char* vip;
  uint16_t port;
  uint8_t proto;
  uint32_t flags;
  std::vector<uint32_t> ring;  // backend ids; M = size
};

// Backend table: id -> (address, service, MAC last byte, flags).
struct BeDef {
  uint32_t id;
  const char* addr;
  uint32_t service;
  uint8_t flags;
};

std::vector<uint32_t> repeat(uint32_t id, size_t m) { return std::vector<uint32_t>(m, id); }

const std::vector<SvcDef>& services() {
  static const std::vector<SvcDef> s = {
      /* 0 */ {"10.100.0.1", 80, kTcp, 0, repeat(0, 7)},
      /* 1 */ {"10.100.0.1", 53, kUdp, 0, repeat(1, 7)},
      /* 2 */ {"fd00:100::1", 80, kTcp, 0, repeat(2, 7)},
      /* 3 */ {"fd00:100::1", 53, kUdp, 0, repeat(3, 7)},
      /* 4 */ {"10.100.0.2", 80, kTcp, KEEL_SVC_F_FWD_L2DSR, repeat(4, 7)},
      /* 5 */ {"10.100.0.2", 53, kUdp, KEEL_SVC_F_FWD_L2DSR, repeat(5, 7)},
      /* 6 */ {"fd00:100::2", 80, kTcp, KEEL_SVC_F_FWD_L2DSR, repeat(6, 7)},
      /* 7 */ {"fd00:100::2", 53, kUdp, KEEL_SVC_F_FWD_L2DSR, repeat(7, 7)},
      /* 8 */ {"10.100.0.4", 0, kTcp, 0, repeat(8, 7)},
      /* 9 */ {"10.100.0.4", 443, kTcp, 0, repeat(9, 7)},
      /* 10 */ {"10.100.0.5", 80, kTcp, 0, {}},
      /* 11 */ {"10.100.0.6", 80, kTcp, 0, repeat(11, 7)},
      /* 12 */ {"fd00:100::6", 80, kTcp, 0, repeat(12, 7)},
      /* 13 */ {"10.100.0.7", 80, kTcp, KEEL_SVC_F_HASH_SRC_IP, repeat(13, 7)},
      /* 14 */ {"10.100.0.8", 80, kTcp, 0, repeat(14, 7)},
      /* 15 */ {"10.100.0.9", 80, kTcp, 0, {15, 16, 15, 16, 16}},
      /* 16 */ {"10.100.0.9", 53, kUdp, KEEL_SVC_F_SCHED_SRC, {17, 18, 18, 17, 17, 18, 17}},
      /* 17 */ {"fd00:100::7", 80, kTcp, KEEL_SVC_F_HASH_SRC_IP, repeat(19, 7)},
  };
  return s;
}

const std::vector<BeDef>& backendDefs() {
  static const std::vector<BeDef> b = {
      {0, "10.1.0.1", 0, KEEL_BE_F_VALID},    {1, "10.1.0.2", 1, KEEL_BE_F_VALID},
      {2, "fc00:1::1", 2, KEEL_BE_F_VALID},   {3, "fc00:1::2", 3, KEEL_BE_F_VALID},
      {4, "10.1.0.4", 4, KEEL_BE_F_VALID},    {5, "10.1.0.5", 5, KEEL_BE_F_VALID},
      {6, "fc00:1::6", 6, KEEL_BE_F_VALID},   {7, "fc00:1::7", 7, KEEL_BE_F_VALID},
      {8, "10.1.0.8", 8, KEEL_BE_F_VALID},    {9, "10.1.0.9", 9, KEEL_BE_F_VALID},
      {11, "fc00:1::b", 11, KEEL_BE_F_VALID}, {12, "10.1.0.12", 12, KEEL_BE_F_VALID},
      {13, "10.1.0.13", 13, KEEL_BE_F_VALID}, {14, "10.1.0.14", 14, 0 /* not valid */},
      {15, "10.1.0.15", 15, KEEL_BE_F_VALID}, {16, "10.1.0.16", 15, KEEL_BE_F_VALID},
      {17, "10.1.0.17", 16, KEEL_BE_F_VALID}, {18, "10.1.0.18", 16, KEEL_BE_F_VALID},
      {19, "fc00:1::13", 17, KEEL_BE_F_VALID},
      // Not in any ring at start: the scenarios move flows onto them.
      {20, "10.1.0.20", 0, KEEL_BE_F_VALID},  {21, "10.1.0.21", 1, KEEL_BE_F_VALID},
      {22, "10.1.0.22", 4, KEEL_BE_F_VALID},  {23, "fc00:1::17", 2, KEEL_BE_F_VALID},
  };
  return b;
}

const std::vector<const char*>& vipList() {
  static const std::vector<const char*> v = {
      "10.100.0.1", "fd00:100::1", "10.100.0.2", "fd00:100::2", "10.100.0.3", "fd00:100::3",
      "10.100.0.4", "10.100.0.5",  "10.100.0.6", "fd00:100::6", "10.100.0.7", "10.100.0.8",
      "10.100.0.9", "fd00:100::7",
  };
  return v;
}

keel_backend backendById(uint32_t id) {
  for (const BeDef& d : backendDefs())
    if (d.id == id) return makeBackend(d.addr, d.service, static_cast<uint8_t>(d.id), d.flags);
  std::abort();
}

keel_node_config nodeConfig() {
  keel_node_config n{};
  Bytes v4 = ipBytes(kTunnelSrc4);
  std::memcpy(&n.tunnel_src_v4, v4.data(), 4);
  toWords(kTunnelSrc6, n.tunnel_src_v6);
  std::memcpy(n.next_hop_mac, macBytes(kRouterMac).data(), 6);
  std::memcpy(n.local_mac, macBytes(kLbMac).data(), 6);
  n.flags = 0;  // services opt in to hashed sources with KEEL_SVC_F_HASH_SRC_IP
  Bytes prefix = ipBytes("172.16.0.0");
  Bytes mask = ipBytes("255.255.0.0");
  std::memcpy(&n.hash_src_v4_prefix, prefix.data(), 4);
  std::memcpy(&n.hash_src_v4_mask, mask.data(), 4);
  n.icmp_too_big_rate = 1000;  // keeld's default: bursts of 50, far more than any test sends
  n.icmp_too_big_client_rate = 100;  // keeld's default: bursts of 5 per client, more than a table sends one
  return n;
}

// ---- input frames ----

struct Frame {
  std::optional<uint16_t> vlan;
  uint16_t tpid = 0x8100;
};

PacketBuilder l2(const Frame& f) {
  PacketBuilder b;
  if (f.vlan) {
    b.Eth(kLbMac, kRouterMac, f.tpid).Vlan(*f.vlan);
  } else {
    b.Eth(kLbMac, kRouterMac);
  }
  return b;
}

size_t l3Off(const Frame& f) { return f.vlan ? 18 : 14; }

// df: IPv4's don't-fragment bit (IPv6 has none).
PacketBuilder& ip(PacketBuilder& b, const std::string& src, const std::string& dst, uint8_t tos = 0,
                  bool df = false) {
  if (familyOf(src) == KEEL_AF_INET6) return b.IPv6(src, dst, {.tc = tos});
  return b.IPv4(src, dst, {.tos = tos, .fragOff = static_cast<uint16_t>(df ? kIpDf : 0)});
}

Bytes flowPacket(const Frame& f, const std::string& src, const std::string& dst, uint8_t proto,
                 uint16_t sport, uint16_t dport, const std::string& payload = "keel fixture",
                 uint8_t tos = 0, uint8_t tcpFlags = kTcpSyn) {
  PacketBuilder b = l2(f);
  ip(b, src, dst, tos);
  if (proto == kTcp) {
    b.Tcp(sport, dport, tcpFlags);
  } else {
    b.Udp(sport, dport);
  }
  return b.Payload(payload).build();
}

// REST: the id and sequence number.
Bytes echoRequest(const Frame& f, const std::string& src, const std::string& dst, uint32_t rest = 0x12340001,
                  const std::string& payload = "ping payload") {
  PacketBuilder b = l2(f);
  if (familyOf(src) == KEEL_AF_INET6) {
    b.IPv6(src, dst, {.hopLimit = 57}).Icmp6(128, 0, rest);
  } else {
    b.IPv4(src, dst, {.ttl = 57}).Icmp(8, 0, rest);
  }
  return b.Payload(payload).build();
}

// Built from scratch (not by editing the request): an independent oracle for
// the in-place rewrite.
Bytes echoReply(const Frame& f, const std::string& client, const std::string& vip, uint32_t rest = 0x12340001,
                const std::string& payload = "ping payload") {
  PacketBuilder b;
  if (f.vlan) {
    b.Eth(kRouterMac, kLbMac, f.tpid).Vlan(*f.vlan);
  } else {
    b.Eth(kRouterMac, kLbMac);
  }
  if (familyOf(client) == KEEL_AF_INET6) {
    b.IPv6(vip, client, {.hopLimit = 64}).Icmp6(129, 0, rest);
  } else {
    b.IPv4(vip, client, {.ttl = 64}).Icmp(0, 0, rest);
  }
  return b.Payload(payload).build();
}

FixtureRow passRow(std::string d, Bytes in, keel_reason r) {
  FixtureRow row{std::move(d), in, Verdict::kPass, r, in};
  return row;
}

// The frame sent to the Ethernet group address mac instead (its destination).
const char* const kBroadcast = "ff:ff:ff:ff:ff:ff";
// Another host's unicast MAC on the segment (a frame a promiscuous interface
// sees: toGroup() sets it too).
const char* const kOtherHostMac = "02:00:00:00:00:99";
Bytes toGroup(Bytes frame, const std::string& mac) {
  const Bytes m = macBytes(mac);
  std::copy(m.begin(), m.end(), frame.begin());
  return frame;
}

FixtureRow dropRow(std::string d, Bytes in, keel_reason r) {
  return FixtureRow{std::move(d), std::move(in), Verdict::kDrop, r, {}};
}

// The row for a packet the service forwards, with the expectation computed
// from the ring exactly as maglev_lookup.h defines it.
// The flow key of a plain TCP/UDP packet as these tables build them (no IP
// options, no extension headers), read by the test itself, not parse.h.
keel_flow_key plainFlowKey(const Bytes& in, size_t l3) {
  const bool v6 = (in.at(l3) >> 4) == 6;
  const uint8_t family = v6 ? KEEL_AF_INET6 : KEEL_AF_INET;
  __u32 src[4] = {}, dst[4] = {};
  std::memcpy(src, &in.at(l3 + (v6 ? 8 : 12)), v6 ? 16 : 4);
  std::memcpy(dst, &in.at(l3 + (v6 ? 24 : 16)), v6 ? 16 : 4);
  const uint8_t proto = in.at(l3 + (v6 ? 6 : 9));
  const size_t l4 = l3 + (v6 ? 40 : 20);
  return flowKey(ipText(src, family), ipText(dst, family), static_cast<uint16_t>(in.at(l4) << 8 | in.at(l4 + 1)),
                 static_cast<uint16_t>(in.at(l4 + 2) << 8 | in.at(l4 + 3)), proto);
}

FixtureRow forwardRow(std::string d, Bytes in, size_t l3, uint32_t svcId, const keel_flow_key& key) {
  const SvcDef& s = services().at(svcId);
  uint32_t h = keel_sched_hash(&key, s.flags);
  uint32_t beId = s.ring.at(keel_ring_slot(h, static_cast<uint32_t>(s.ring.size())));
  keel_backend be = backendById(beId);
  FixtureRow row{std::move(d), in, Verdict::kTx, KEEL_R_TX_IPIP, {}, svcId, beId};
  if (s.flags & KEEL_SVC_F_FWD_L2DSR) {
    row.reason = KEEL_R_TX_L2DSR;
    row.expected = l2dsrExpected(in, be);
  } else {
    row.expected = ipipExpected(in, l3, nodeConfig(), be, keel_flow_hash(&key),
                                (s.flags & KEEL_SVC_F_HASH_SRC_IP) != 0);
  }
  return row;
}

std::string protoName(uint8_t p) { return p == kTcp ? "tcp" : "udp"; }

// The forwardable flows of the basic matrix, reused by truncationRows().
struct BasicFlow {
  std::string description;
  Bytes input;
  size_t l3;
  uint32_t svc;
  keel_flow_key key;
};

std::vector<BasicFlow> basicFlows() {
  std::vector<BasicFlow> out;
  struct Mode {
    const char* name;
    const char* vip4;
    const char* vip6;
    uint32_t svcBase;  // tcp v4, udp v4, tcp v6, udp v6
  };
  const Mode modes[] = {{"ipip", "10.100.0.1", "fd00:100::1", 0},
                        {"l2dsr", "10.100.0.2", "fd00:100::2", 4}};
  for (const Mode& m : modes) {
    for (int v6 = 0; v6 < 2; v6++) {
      for (uint8_t proto : {kTcp, kUdp}) {
        for (int tagged = 0; tagged < 2; tagged++) {
          Frame f;
          if (tagged) f.vlan = 5;
          std::string client = v6 ? kClient6 : kClient4;
          std::string vip = v6 ? m.vip6 : m.vip4;
          uint16_t dport = proto == kTcp ? 80 : 53;
          uint32_t svc = m.svcBase + (v6 ? 2 : 0) + (proto == kUdp ? 1 : 0);
          std::string d = std::string(m.name) + " " + (v6 ? "v6 " : "v4 ") + protoName(proto) +
                          (tagged ? " vlan 5 kept" : "");
          out.push_back({d, flowPacket(f, client, vip, proto, kSport, dport), l3Off(f), svc,
                         flowKey(client, vip, kSport, dport, proto)});
        }
      }
    }
  }
  return out;
}

}  // namespace

keel_flow_key flowKey(const std::string& src, const std::string& dst, uint16_t sport,
                      uint16_t dport, uint8_t proto) {
  keel_flow_key k{};
  toWords(src, k.src);
  toWords(dst, k.dst);
  k.sport = htons(sport);
  k.dport = htons(dport);
  k.proto = proto;
  k.family = familyOf(src);
  return k;
}

const char* verdictName(Verdict v) {
  switch (v) {
    case Verdict::kPass: return "PASS";
    case Verdict::kDrop: return "DROP";
    case Verdict::kTx: return "TX";
  }
  return "?";
}

Bytes ipipExpected(const Bytes& input, size_t l3Off, const keel_node_config& node,
                   const keel_backend& real, uint32_t flowHash, bool hashSrc) {
  Bytes inner(input.begin() + static_cast<long>(l3Off), input.end());
  uint8_t innerFamily = (inner.at(0) >> 4) == 6 ? KEEL_AF_INET6 : KEEL_AF_INET;
  // Bytes after the inner packet are no part of its IP length: they stay
  // out of the tunnel, but a short frame's (Ethernet padding), which
  // travels along after it (keel_encap_frame_len).
  size_t innerLen = innerFamily == KEEL_AF_INET6 ? 40u + (inner[4] << 8 | inner[5]) : (inner[2] << 8 | inner[3]);
  Bytes padding;
  if (innerLen < inner.size()) {
    if (input.size() <= 64)  // KEEL_ENCAP_KEEP_TAIL, written out: the model is independent
      padding.assign(inner.begin() + static_cast<long>(innerLen), inner.end());
    inner.resize(innerLen);
  }
  uint8_t tos = innerFamily == KEEL_AF_INET6
                    ? static_cast<uint8_t>(((inner[0] & 0x0f) << 4) | (inner[1] >> 4))
                    : inner[1];
  char mac[18];
  auto macText = [&](const __u8* m) {
    std::snprintf(mac, sizeof mac, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
    return std::string(mac);
  };
  PacketBuilder b;
  if (l3Off == 18) {
    uint16_t tpid = static_cast<uint16_t>(input[12] << 8 | input[13]);
    uint16_t tci = static_cast<uint16_t>(input[14] << 8 | input[15]);
    b.Eth(macText(node.next_hop_mac), macText(node.local_mac), tpid).Vlan(tci);
  } else {
    b.Eth(macText(node.next_hop_mac), macText(node.local_mac));
  }
  uint8_t proto = innerFamily == KEEL_AF_INET6 ? 41 : 4;
  if (real.family == KEEL_AF_INET6) {
    __u32 src[4];
    std::memcpy(src, node.tunnel_src_v6, 16);
    if (hashSrc) src[3] = flowHash;  // encap.h: low 32 bits from the hash
    // The flow label: the hash's low 20 bits (RFC 6438).
    b.IPv6(ipText(src, KEEL_AF_INET6), ipText(real.addr, KEEL_AF_INET6),
           {.hopLimit = 64, .tc = tos, .flowLabel = flowHash & 0xfffffu, .nextHeader = proto});
  } else {
    __u32 src[4] = {node.tunnel_src_v4, 0, 0, 0};
    if (hashSrc) src[0] = node.hash_src_v4_prefix | (flowHash & ~node.hash_src_v4_mask);
    b.IPv4(ipText(src, KEEL_AF_INET), ipText(real.addr, KEEL_AF_INET),
           {.ttl = 64, .tos = tos, .id = 0, .fragOff = kIpDf, .proto = proto});
  }
  Bytes out = b.Raw(inner).build();
  out.insert(out.end(), padding.begin(), padding.end());
  return out;
}

Bytes l2dsrExpected(const Bytes& input, const keel_backend& real) {
  Bytes out = input;
  std::memcpy(out.data(), real.mac, 6);
  Bytes lb = macBytes(kLbMac);
  std::memcpy(out.data() + 6, lb.data(), 6);
  return out;
}

FixtureState fixtureState() {
  FixtureState st;
  st.node = nodeConfig();
  for (const char* v : vipList()) st.vips.push_back(vipKey(v));
  const auto& svcs = services();
  for (uint32_t id = 0; id < svcs.size(); id++) {
    ServiceSpec s{};
    toWords(svcs[id].vip, s.key.vip);
    s.key.port = htons(svcs[id].port);
    s.key.proto = svcs[id].proto;
    s.key.family = familyOf(svcs[id].vip);
    s.value.id = id;
    s.value.flags = svcs[id].flags;
    st.services.push_back(s);
    st.rings.push_back({id, svcs[id].ring});
  }
  for (const BeDef& d : backendDefs()) st.backends.push_back({d.id, backendById(d.id)});
  return st;
}

std::vector<FixtureRow> fixtureRows() {
  std::vector<FixtureRow> rows;
  const Frame plain;
  Frame tagged;
  tagged.vlan = 5;

  // --- forwarding matrix: mode x family x protocol x VLAN ---
  for (const BasicFlow& f : basicFlows()) rows.push_back(forwardRow(f.description, f.input, f.l3, f.svc, f.key));

  // 802.1ad outer tag: one tag of either TPID is ours, and it is kept as is.
  {
    Frame ad;
    ad.vlan = 7;
    ad.tpid = 0x88a8;
    rows.push_back(forwardRow("ipip v4 tcp 802.1ad tag kept", flowPacket(ad, kClient4, "10.100.0.1", kTcp, kSport, 80),
                              18, 0, flowKey(kClient4, "10.100.0.1", kSport, 80, kTcp)));
    rows.push_back(forwardRow("l2dsr v6 udp 802.1ad tag kept", flowPacket(ad, kClient6, "fd00:100::2", kUdp, kSport, 53),
                              18, 7, flowKey(kClient6, "fd00:100::2", kSport, 53, kUdp)));
  }

  // --- TOS / traffic class copied to the outer header ---
  rows.push_back(forwardRow("ipip v4 tos 0x28 copied to outer",
                            flowPacket(plain, kClient4, "10.100.0.1", kTcp, kSport, 80, "tos", 0x28), 14, 0,
                            flowKey(kClient4, "10.100.0.1", kSport, 80, kTcp)));
  rows.push_back(forwardRow("ipip v6 traffic class 0xb8 copied to outer",
                            flowPacket(plain, kClient6, "fd00:100::1", kUdp, kSport, 53, "tc", 0xb8), 14, 3,
                            flowKey(kClient6, "fd00:100::1", kSport, 53, kUdp)));

  // --- port-0 services ---
  rows.push_back(forwardRow("port-0 service takes any tcp port", flowPacket(plain, kClient4, "10.100.0.4", kTcp, kSport, 8080),
                            14, 8, flowKey(kClient4, "10.100.0.4", kSport, 8080, kTcp)));
  rows.push_back(forwardRow("exact port wins over the port-0 service",
                            flowPacket(plain, kClient4, "10.100.0.4", kTcp, kSport, 443), 14, 9,
                            flowKey(kClient4, "10.100.0.4", kSport, 443, kTcp)));
  rows.push_back(passRow("port-0 tcp service does not take udp",
                         flowPacket(plain, kClient4, "10.100.0.4", kUdp, kSport, 53), KEEL_R_PASS_NO_SERVICE));

  // --- mixed families, hashed outer source, multi-real rings ---
  rows.push_back(forwardRow("4in6: v4 VIP, v6 real", flowPacket(plain, kClient4, "10.100.0.6", kTcp, kSport, 80), 14, 11,
                            flowKey(kClient4, "10.100.0.6", kSport, 80, kTcp)));
  rows.push_back(forwardRow("6in4: v6 VIP, v4 real, vlan kept", flowPacket(tagged, kClient6, "fd00:100::6", kTcp, kSport, 80),
                            18, 12, flowKey(kClient6, "fd00:100::6", kSport, 80, kTcp)));
  for (uint16_t sport : {1000, 1001, 1002}) {
    rows.push_back(forwardRow("ipip v4 outer source hashed into 172.16/16, sport " + std::to_string(sport),
                              flowPacket(plain, kClient4, "10.100.0.7", kTcp, sport, 80), 14, 13,
                              flowKey(kClient4, "10.100.0.7", sport, 80, kTcp)));
  }
  rows.push_back(forwardRow("ipip v6 outer source low 32 bits hashed",
                            flowPacket(plain, kClient6, "fd00:100::7", kTcp, kSport, 80), 14, 17,
                            flowKey(kClient6, "fd00:100::7", kSport, 80, kTcp)));
  for (uint16_t sport = 2000; sport < 2008; sport++) {
    rows.push_back(forwardRow("maglev ring of two reals, sport " + std::to_string(sport),
                              flowPacket(plain, kClient4, "10.100.0.9", kTcp, sport, 80), 14, 15,
                              flowKey(kClient4, "10.100.0.9", sport, 80, kTcp)));
  }
  for (int c = 0; c < 6; c++) {
    std::string client = "198.18.0." + std::to_string(c + 1);
    rows.push_back(forwardRow("maglev-src ring of two reals, client " + client,
                              flowPacket(plain, client, "10.100.0.9", kUdp, static_cast<uint16_t>(3000 + c), 53), 14,
                              16, flowKey(client, "10.100.0.9", static_cast<uint16_t>(3000 + c), 53, kUdp)));
  }
  {
    // A short frame's Ethernet padding travels along (keel_encap_frame_len).
    Bytes in = flowPacket(plain, kClient4, "10.100.0.1", kUdp, kSport, 53, "");
    in.resize(60, 0);
    rows.push_back(forwardRow("ipip v4 udp minimum frame with Ethernet padding", in, 14, 1,
                              flowKey(kClient4, "10.100.0.1", kSport, 53, kUdp)));
    // Bytes after the IP packet that would take the tunnelled frame past
    // the MTU: cut, so what is sent fits (the MTU test counts the IP length).
    Bytes garbage = PacketBuilder().Eth(kLbMac, kRouterMac).Vlan(5).IPv6(kClient6, "fd00:100::1")
                        .Tcp(kSport, 80, kTcpAck).Payload("short").build();
    garbage.resize(18 + 1500, 0x5a);
    rows.push_back(forwardRow("ipip v6 ack, vlan, 1440 bytes of garbage after the IP packet", garbage, 18, 2,
                              flowKey(kClient6, "fd00:100::1", kSport, 80, kTcp)));
  }

  // --- not ours: PASS unchanged ---
  rows.push_back(passRow("v4 not a VIP", flowPacket(plain, kClient4, "198.51.100.1", kTcp, kSport, 80), KEEL_R_PASS_NOT_VIP));
  rows.push_back(passRow("v6 not a VIP", flowPacket(plain, kClient6, "2001:db8:ffff::1", kUdp, kSport, 53), KEEL_R_PASS_NOT_VIP));
  rows.push_back(passRow("v4 not a VIP, vlan", flowPacket(tagged, kClient4, "198.51.100.1", kTcp, kSport, 80), KEEL_R_PASS_NOT_VIP));
  rows.push_back(passRow("v4 fragment to a non-VIP is not ours",
                         PacketBuilder().Eth(kLbMac, kRouterMac).IPv4(kClient4, "198.51.100.1", {.fragOff = kIpMf})
                             .Udp(1, 2).Payload("frag").build(),
                         KEEL_R_PASS_NOT_VIP));
  rows.push_back(passRow("VIP without services", flowPacket(plain, kClient4, "10.100.0.3", kTcp, kSport, 80), KEEL_R_PASS_NO_SERVICE));
  rows.push_back(passRow("v6 VIP without services", flowPacket(plain, kClient6, "fd00:100::3", kTcp, kSport, 80), KEEL_R_PASS_NO_SERVICE));
  rows.push_back(passRow("VIP, port without a service", flowPacket(plain, kClient4, "10.100.0.1", kTcp, kSport, 81), KEEL_R_PASS_NO_SERVICE));
  rows.push_back(passRow("VIP, udp on a tcp-only port", flowPacket(plain, kClient4, "10.100.0.1", kUdp, kSport, 80), KEEL_R_PASS_NO_SERVICE));
  rows.push_back(passRow("ARP", PacketBuilder().Eth("ff:ff:ff:ff:ff:ff", kRouterMac, 0x0806).Raw(Bytes(28, 1)).build(),
                         KEEL_R_PASS_NOT_IP));
  rows.push_back(passRow("QinQ: a second tag is not ours",
                         PacketBuilder().Eth(kLbMac, kRouterMac, 0x88a8).Vlan(5, 0x8100).Vlan(6)
                             .IPv4(kClient4, "10.100.0.1").Tcp(kSport, 80).build(),
                         KEEL_R_PASS_NOT_IP));
  rows.push_back(passRow("IPv4 IHL 4", PacketBuilder().Eth(kLbMac, kRouterMac).IPv4(kClient4, "10.100.0.1", {.ihl = 4})
                                           .Tcp(kSport, 80).build(),
                         KEEL_R_PASS_BAD_HEADER));
  rows.push_back(passRow("IPv4 ethertype, version 6", PacketBuilder().Eth(kLbMac, kRouterMac).IPv4(kClient4, "10.100.0.1", {.version = 6})
                                                          .Tcp(kSport, 80).build(),
                         KEEL_R_PASS_BAD_HEADER));
  rows.push_back(passRow("IPv4 total length below IHL", PacketBuilder().Eth(kLbMac, kRouterMac).IPv4(kClient4, "10.100.0.1", {.totLen = 19})
                                                            .Tcp(kSport, 80).build(),
                         KEEL_R_PASS_BAD_HEADER));
  rows.push_back(passRow("IPv6 ethertype, version 4", PacketBuilder().Eth(kLbMac, kRouterMac).IPv6(kClient6, "fd00:100::1", {.version = 4})
                                                          .Tcp(kSport, 80).build(),
                         KEEL_R_PASS_BAD_HEADER));

  // --- IPv4 options, IPv6 extension headers ---
  {
    Bytes in = PacketBuilder().Eth(kLbMac, kRouterMac).IPv4(kClient4, "10.100.0.1", {.options = {1, 1, 1, 0}})
                   .Tcp(kSport, 80).Payload("opts").build();
    rows.push_back(forwardRow("ipip v4 with IP options (IHL 6)", in, 14, 0, flowKey(kClient4, "10.100.0.1", kSport, 80, kTcp)));
    Bytes in2 = PacketBuilder().Eth(kLbMac, kRouterMac).Vlan(5).IPv4(kClient4, "10.100.0.2", {.options = Bytes(40, 1)})
                    .Udp(kSport, 53).Payload("opts").build();
    rows.push_back(forwardRow("l2dsr v4 with 40 bytes of IP options (IHL 15), vlan", in2, 18, 5,
                              flowKey(kClient4, "10.100.0.2", kSport, 53, kUdp)));
    // Source routes (LSRR 131, SSRR 137: type, length, pointer, addresses):
    // with hops left the VIP is not the last hop, as an IPv6 routing header
    // with segments left; with none left (pointer past the route) it is.
    auto v4opts = [](const Bytes& opts, const char* vip = "10.100.0.1") {
      return PacketBuilder().Eth(kLbMac, kRouterMac).IPv4(kClient4, vip, {.options = opts})
          .Tcp(kSport, 80).Payload("srr").build();
    };
    rows.push_back(dropRow("v4 loose source route, one hop left", v4opts({131, 7, 4, 192, 0, 2, 9, 0}),
                           KEEL_R_DROP_SOURCE_ROUTE));
    rows.push_back(dropRow("v4 strict source route after no-ops, one of two hops left",
                           v4opts({1, 137, 11, 8, 192, 0, 2, 9, 192, 0, 2, 10, 0, 0, 0, 0}), KEEL_R_DROP_SOURCE_ROUTE));
    rows.push_back(forwardRow("ipip v4 loose source route, no hops left", v4opts({131, 7, 8, 192, 0, 2, 9, 0}), 14, 0,
                              flowKey(kClient4, "10.100.0.1", kSport, 80, kTcp)));
    rows.push_back(forwardRow("ipip v4 record route then end of options", v4opts({7, 7, 4, 0, 0, 0, 0, 0}), 14, 0,
                              flowKey(kClient4, "10.100.0.1", kSport, 80, kTcp)));
    // An option whose length is under 2 or runs past the header.
    rows.push_back(dropRow("v4 option of length 1", v4opts({68, 1, 0, 0}), KEEL_R_DROP_TRUNCATED));
    rows.push_back(dropRow("v4 option running past the header", v4opts({1, 1, 68, 8}), KEEL_R_DROP_TRUNCATED));
  }
  {
    auto key6 = flowKey(kClient6, "fd00:100::1", kSport, 80, kTcp);
    rows.push_back(forwardRow("ipip v6 hop-by-hop header",
                              PacketBuilder().Eth(kLbMac, kRouterMac).IPv6(kClient6, "fd00:100::1").Ipv6Ext(0, 8)
                                  .Tcp(kSport, 80).Payload("hbh").build(),
                              14, 2, key6));
    rows.push_back(forwardRow("ipip v6 hop-by-hop + destination options (24 bytes)",
                              PacketBuilder().Eth(kLbMac, kRouterMac).IPv6(kClient6, "fd00:100::1").Ipv6Ext(0, 8)
                                  .Ipv6Ext(60, 24).Tcp(kSport, 80).Payload("dst").build(),
                              14, 2, key6));
    rows.push_back(forwardRow("l2dsr v6 udp destination options",
                              PacketBuilder().Eth(kLbMac, kRouterMac).IPv6(kClient6, "fd00:100::2").Ipv6Ext(60, 16)
                                  .Udp(kSport, 53).Payload("dst").build(),
                              14, 7, flowKey(kClient6, "fd00:100::2", kSport, 53, kUdp)));
    rows.push_back(dropRow("v6 routing header with a segment left", PacketBuilder().Eth(kLbMac, kRouterMac).IPv6(kClient6, "fd00:100::1")
                                                    .Ipv6Ext(43, 24, 0x0401).Tcp(kSport, 80).build(),
                           KEEL_R_DROP_IPV6_EXT));
    rows.push_back(dropRow("v6 hop-by-hop then routing header with segments left",
                           PacketBuilder().Eth(kLbMac, kRouterMac).IPv6(kClient6, "fd00:100::1").Ipv6Ext(0, 8)
                               .Ipv6Ext(43, 24, 0x0002).Tcp(kSport, 80).build(),
                           KEEL_R_DROP_IPV6_EXT));
    // None left: the VIP is the final destination, the header is ignored
    // (RFC 8200 4.4) and travels on.
    rows.push_back(forwardRow("ipip v6 routing header with no segments left",
                              PacketBuilder().Eth(kLbMac, kRouterMac).IPv6(kClient6, "fd00:100::1")
                                  .Ipv6Ext(43, 24, 0x0400).Tcp(kSport, 80, kTcpAck).Payload("srh").build(),
                              14, 2, key6));
    rows.push_back(forwardRow("l2dsr v6 udp hop-by-hop, routing (none left), destination options, vlan",
                              PacketBuilder().Eth(kLbMac, kRouterMac).Vlan(9).IPv6(kClient6, "fd00:100::2").Ipv6Ext(0, 8)
                                  .Ipv6Ext(43, 8, 0x0200).Ipv6Ext(60, 8).Udp(kSport, 53).Payload("rt").build(),
                              18, 7, flowKey(kClient6, "fd00:100::2", kSport, 53, kUdp)));
    rows.push_back(dropRow("v6 routing header cut by the IP length",
                           PacketBuilder().Eth(kLbMac, kRouterMac).IPv6(kClient6, "fd00:100::1", {.nextHeader = 43})
                               .Raw(Bytes(2, 0)).build(),
                           KEEL_R_DROP_TRUNCATED));
    // Hop-by-hop options come first or not at all (RFC 8200 4.1).
    rows.push_back(dropRow("v6 destination options then hop-by-hop",
                           PacketBuilder().Eth(kLbMac, kRouterMac).IPv6(kClient6, "fd00:100::1").Ipv6Ext(60, 8)
                               .Ipv6Ext(0, 8).Tcp(kSport, 80).build(),
                           KEEL_R_DROP_IPV6_EXT));
    // Extension headers keel does not parse past (IANA's list), directly
    // or after an option header; ESP hides the transport: an L4 protocol.
    for (int ext : {51, 135, 139, 140, 253, 254})
      rows.push_back(dropRow("v6 extension header " + std::to_string(ext),
                             PacketBuilder().Eth(kLbMac, kRouterMac).IPv6(kClient6, "fd00:100::1").Ipv6Ext(ext, 8)
                                 .Tcp(kSport, 80).build(),
                             KEEL_R_DROP_IPV6_EXT));
    rows.push_back(dropRow("v6 hop-by-hop then mobility header",
                           PacketBuilder().Eth(kLbMac, kRouterMac).IPv6(kClient6, "fd00:100::1").Ipv6Ext(0, 8)
                               .Ipv6Ext(135, 8).Tcp(kSport, 80).build(),
                           KEEL_R_DROP_IPV6_EXT));
    rows.push_back(dropRow("v6 ESP", PacketBuilder().Eth(kLbMac, kRouterMac).IPv6(kClient6, "fd00:100::1", {.nextHeader = 50})
                                         .Raw(Bytes(24, 3)).build(),
                           KEEL_R_DROP_L4_PROTO));
    rows.push_back(dropRow("v6 more than 4 option headers",
                           PacketBuilder().Eth(kLbMac, kRouterMac).IPv6(kClient6, "fd00:100::1").Ipv6Ext(0, 8)
                               .Ipv6Ext(60, 8).Ipv6Ext(60, 8).Ipv6Ext(60, 8).Ipv6Ext(60, 8).Tcp(kSport, 80).build(),
                           KEEL_R_DROP_IPV6_EXT));
    rows.push_back(dropRow("v6 fragment header (first fragment)",
                           PacketBuilder().Eth(kLbMac, kRouterMac).IPv6(kClient6, "fd00:100::1").Ipv6Ext(44, 8, 0x0001)
                               .Tcp(kSport, 80).build(),
                           KEEL_R_DROP_FRAGMENT));
    // An atomic fragment (offset 0, M clear) is a whole packet (RFC 6946):
    // forwarded with its fragment header, reserved bits ignored.
    rows.push_back(forwardRow("ipip v6 atomic fragment",
                              PacketBuilder().Eth(kLbMac, kRouterMac).IPv6(kClient6, "fd00:100::1").Ipv6Ext(44, 8, 0)
                                  .Tcp(kSport, 80, kTcpAck).Payload("atomic").build(),
                              14, 2, key6));
    rows.push_back(forwardRow("l2dsr v6 udp hop-by-hop then atomic fragment (reserved bits set), vlan",
                              PacketBuilder().Eth(kLbMac, kRouterMac).Vlan(7).IPv6(kClient6, "fd00:100::2").Ipv6Ext(0, 8)
                                  .Ipv6Ext(44, 8, 0x0006).Udp(kSport, 53).Payload("atomic").build(),
                              18, 7, flowKey(kClient6, "fd00:100::2", kSport, 53, kUdp)));
    rows.push_back(dropRow("v6 fragment header, offset 1 without M (the last fragment)",
                           PacketBuilder().Eth(kLbMac, kRouterMac).IPv6(kClient6, "fd00:100::1").Ipv6Ext(44, 8, 0x0008)
                               .Raw(Bytes(16, 7)).build(),
                           KEEL_R_DROP_FRAGMENT));
    rows.push_back(dropRow("v6 two atomic fragment headers (one at most, RFC 8200 4.1)",
                           PacketBuilder().Eth(kLbMac, kRouterMac).IPv6(kClient6, "fd00:100::1").Ipv6Ext(44, 8, 0)
                               .Ipv6Ext(44, 8, 0).Tcp(kSport, 80).build(),
                           KEEL_R_DROP_IPV6_EXT));
    rows.push_back(dropRow("v6 an atomic fragment header as the fifth extension header",
                           PacketBuilder().Eth(kLbMac, kRouterMac).IPv6(kClient6, "fd00:100::1").Ipv6Ext(0, 8)
                               .Ipv6Ext(60, 8).Ipv6Ext(60, 8).Ipv6Ext(60, 8).Ipv6Ext(44, 8, 0).Tcp(kSport, 80).build(),
                           KEEL_R_DROP_IPV6_EXT));
    rows.push_back(dropRow("v6 atomic fragment header cut by the IP length",
                           PacketBuilder().Eth(kLbMac, kRouterMac).IPv6(kClient6, "fd00:100::1", {.nextHeader = 44})
                               .Raw(Bytes(4, 0)).build(),
                           KEEL_R_DROP_TRUNCATED));
    rows.push_back(dropRow("v6 fragment header, offset 0 with M (first fragment), after destination options",
                           PacketBuilder().Eth(kLbMac, kRouterMac).IPv6(kClient6, "fd00:100::1").Ipv6Ext(60, 8)
                               .Ipv6Ext(44, 8, 0x0001).Tcp(kSport, 80).build(),
                           KEEL_R_DROP_FRAGMENT));
    rows.push_back(dropRow("v6 hop-by-hop then fragment header (later fragment)",
                           PacketBuilder().Eth(kLbMac, kRouterMac).IPv6(kClient6, "fd00:100::3").Ipv6Ext(0, 8)
                               .Ipv6Ext(44, 8, 0x0100).Raw(Bytes(16, 7)).build(),
                           KEEL_R_DROP_FRAGMENT));
  }

  // --- IPv4 fragments ---
  rows.push_back(dropRow("v4 first fragment (MF)", PacketBuilder().Eth(kLbMac, kRouterMac).IPv4(kClient4, "10.100.0.1", {.fragOff = kIpMf})
                                                       .Tcp(kSport, 80).Payload("first").build(),
                         KEEL_R_DROP_FRAGMENT));
  rows.push_back(dropRow("v4 later fragment (offset 185)",
                         PacketBuilder().Eth(kLbMac, kRouterMac).IPv4(kClient4, "10.100.0.1", {.fragOff = 185, .proto = kUdp})
                             .Raw(Bytes(24, 9)).build(),
                         KEEL_R_DROP_FRAGMENT));
  rows.push_back(dropRow("v4 last fragment with DF clear, vlan",
                         PacketBuilder().Eth(kLbMac, kRouterMac).Vlan(5).IPv4(kClient4, "10.100.0.2", {.fragOff = 3, .proto = kTcp})
                             .Raw(Bytes(24, 9)).build(),
                         KEEL_R_DROP_FRAGMENT));
  {
    Bytes in = PacketBuilder().Eth(kLbMac, kRouterMac).IPv4(kClient4, "10.100.0.1", {.fragOff = kIpDf})
                   .Tcp(kSport, 80).Payload("df").build();
    rows.push_back(forwardRow("v4 DF set is not a fragment", in, 14, 0, flowKey(kClient4, "10.100.0.1", kSport, 80, kTcp)));
  }

  // --- length errors aimed at a VIP ---
  rows.push_back(dropRow("v4 total length beyond the frame",
                         PacketBuilder().Eth(kLbMac, kRouterMac).IPv4(kClient4, "10.100.0.1", {.totLen = 200})
                             .Tcp(kSport, 80).build(),
                         KEEL_R_DROP_TRUNCATED));
  {
    // IHL 15 claims 60 header bytes; the frame ends inside the UDP header.
    Bytes in = PacketBuilder().Eth(kLbMac, kRouterMac).IPv4(kClient4, "10.100.0.1", {.options = Bytes(40, 1), .proto = kUdp})
                   .Raw(Bytes(4, 0)).build();
    rows.push_back(dropRow("v4 UDP header cut by the IP length", in, KEEL_R_DROP_TRUNCATED));
  }

  // --- ICMP ---
  rows.push_back({"icmp echo to a v4 VIP", echoRequest(plain, kClient4, "10.100.0.1"), Verdict::kTx, KEEL_R_TX_ICMP_ECHO,
                  echoReply(plain, kClient4, "10.100.0.1")});
  rows.push_back({"icmp echo to a v4 VIP without services, vlan", echoRequest(tagged, kClient4, "10.100.0.3"), Verdict::kTx,
                  KEEL_R_TX_ICMP_ECHO, echoReply(tagged, kClient4, "10.100.0.3")});
  rows.push_back({"icmpv6 echo to a v6 VIP", echoRequest(plain, kClient6, "fd00:100::1"), Verdict::kTx, KEEL_R_TX_ICMP_ECHO,
                  echoReply(plain, kClient6, "fd00:100::1")});
  rows.push_back({"icmpv6 echo to a v6 VIP, vlan", echoRequest(tagged, kClient6, "fd00:100::2"), Verdict::kTx,
                  KEEL_R_TX_ICMP_ECHO, echoReply(tagged, kClient6, "fd00:100::2")});
  // The reply's words are all zero: its checksum must be 0xffff (the
  // builder computes it whole), never the 0x0000 an incremental update
  // gives there; zero words of payload or none, plain and tagged.
  rows.push_back({"icmp echo with id 0, sequence 0, no payload: reply checksum 0xffff",
                  echoRequest(plain, kClient4, "10.100.0.1", 0, ""), Verdict::kTx, KEEL_R_TX_ICMP_ECHO,
                  echoReply(plain, kClient4, "10.100.0.1", 0, "")});
  rows.push_back({"icmp echo with id 0, sequence 0, zero payload, vlan: reply checksum 0xffff",
                  echoRequest(tagged, kClient4, "10.100.0.1", 0, std::string(56, '\0')), Verdict::kTx,
                  KEEL_R_TX_ICMP_ECHO, echoReply(tagged, kClient4, "10.100.0.1", 0, std::string(56, '\0'))});
  rows.push_back(passRow("icmp echo to a non-VIP", echoRequest(plain, kClient4, "198.51.100.1"), KEEL_R_PASS_NOT_VIP));
  // Seen in a frame to another host's MAC (a promiscuous interface): the
  // reply leaves from the node's MAC, never from that host's, which would
  // move it to this port on the switch.
  rows.push_back({"icmp echo in a frame to another host's MAC: answered from the node's MAC",
                  toGroup(echoRequest(plain, kClient4, "10.100.0.1"), kOtherHostMac), Verdict::kTx,
                  KEEL_R_TX_ICMP_ECHO, echoReply(plain, kClient4, "10.100.0.1")});
  rows.push_back({"icmpv6 echo in a frame to another host's MAC, vlan: answered from the node's MAC",
                  toGroup(echoRequest(tagged, kClient6, "fd00:100::2"), kOtherHostMac), Verdict::kTx,
                  KEEL_R_TX_ICMP_ECHO, echoReply(tagged, kClient6, "fd00:100::2")});
  // Nothing from a source that is no single host's, or from the VIP itself,
  // is answered or forwarded (a martian: RFC 1122 3.2.1.3, RFC 1812 5.3.7,
  // RFC 4291 2.7).
  for (const char* src : {"224.0.0.1", "255.255.255.255", "0.0.0.0", "127.0.0.1", "240.0.0.1", "10.100.0.1"}) {
    rows.push_back(dropRow(std::string("icmp echo from ") + src + ": no reply", echoRequest(plain, src, "10.100.0.1"),
                           KEEL_R_DROP_BAD_SOURCE));
    rows.push_back(dropRow(std::string("tcp to a v4 VIP from ") + src + ", vlan",
                           flowPacket(tagged, src, "10.100.0.1", kTcp, kSport, 80), KEEL_R_DROP_BAD_SOURCE));
  }
  for (const char* src : {"ff02::1", "::", "::1", "fd00:100::2", "::ffff:127.0.0.1", "::ffff:192.0.2.1"}) {
    rows.push_back(dropRow(std::string("icmpv6 echo from ") + src + ": no reply",
                           echoRequest(plain, src, "fd00:100::2"), KEEL_R_DROP_BAD_SOURCE));
    rows.push_back(dropRow(std::string("udp to a v6 VIP from ") + src,
                           flowPacket(plain, src, "fd00:100::2", kUdp, kSport, 53), KEEL_R_DROP_BAD_SOURCE));
  }
  // Sources the check must not take for one of those: next to each range,
  // a link-local client on the balancer's link, another VIP.
  for (const char* src : {"1.0.0.1", "126.255.255.254", "128.0.0.1", "223.255.255.254"})
    rows.push_back(forwardRow(std::string("ipip v4 tcp from ") + src + ": one host's",
                              flowPacket(plain, src, "10.100.0.1", kTcp, kSport, 80), 14, 0,
                              flowKey(src, "10.100.0.1", kSport, 80, kTcp)));
  for (const char* src : {"::2", "fe80::1", "fd00:100::1", "::fffe:c000:201", "::1:ffff:c000:201"})
    rows.push_back(forwardRow(std::string("l2dsr v6 udp from ") + src + ": one host's",
                              flowPacket(plain, src, "fd00:100::2", kUdp, kSport, 53), 14, 7,
                              flowKey(src, "fd00:100::2", kSport, 53, kUdp)));
  // Anything to a VIP in a frame to an Ethernet group address reached every
  // balancer on the link: none answers or forwards it (RFC 1812 5.3.4).
  rows.push_back(dropRow("icmp echo in an Ethernet broadcast frame, vlan: no reply",
                         toGroup(echoRequest(tagged, kClient4, "10.100.0.1"), kBroadcast), KEEL_R_DROP_L2_MULTICAST));
  rows.push_back(dropRow("icmpv6 echo in an Ethernet multicast frame: no reply",
                         toGroup(echoRequest(plain, kClient6, "fd00:100::1"), "33:33:00:00:00:01"),
                         KEEL_R_DROP_L2_MULTICAST));
  rows.push_back(dropRow("tcp to a v4 VIP in an Ethernet broadcast frame",
                         toGroup(flowPacket(plain, kClient4, "10.100.0.1", kTcp, kSport, 80), kBroadcast),
                         KEEL_R_DROP_L2_MULTICAST));
  rows.push_back(dropRow("udp to a v6 VIP in an Ethernet multicast frame, vlan",
                         toGroup(flowPacket(tagged, kClient6, "fd00:100::2", kUdp, kSport, 53), "33:33:00:00:00:16"),
                         KEEL_R_DROP_L2_MULTICAST));
  rows.push_back(passRow("tcp to a non-VIP in an Ethernet broadcast frame",
                         toGroup(flowPacket(plain, kClient4, "198.51.100.1", kTcp, kSport, 80), kBroadcast),
                         KEEL_R_PASS_NOT_VIP));
  {
    // A router on the client's path says our real's packet (VIP:80 ->
    // client:40000) was too big: steer it along the client->VIP flow.
    Bytes in = PacketBuilder().Eth(kLbMac, kRouterMac).IPv4("203.0.113.1", "10.100.0.1")
                   .Icmp(3, 4, 1400).IPv4("10.100.0.1", kClient4, {.fragOff = kIpDf}).Tcp(80, kSport, kTcpAck).build();
    rows.push_back(forwardRow("icmp frag-needed steered by the quoted flow", in, 14, 0,
                              flowKey(kClient4, "10.100.0.1", kSport, 80, kTcp)));
    Bytes in6 = PacketBuilder().Eth(kLbMac, kRouterMac).Vlan(5).IPv6("2001:db8:1::1", "fd00:100::1")
                    .Icmp6(2, 0, 1280).IPv6("fd00:100::1", kClient6).Udp(53, kSport).Payload("quoted").build();
    rows.push_back(forwardRow("icmpv6 packet-too-big steered by the quoted flow, vlan", in6, 18, 3,
                              flowKey(kClient6, "fd00:100::1", kSport, 53, kUdp)));
    Bytes in7 = PacketBuilder().Eth(kLbMac, kRouterMac).IPv4("203.0.113.1", "10.100.0.2")
                    .Icmp(3, 4, 1400).IPv4("10.100.0.2", kClient4).Udp(53, kSport).build();
    rows.push_back(forwardRow("icmp frag-needed to an l2dsr service", in7, 14, 5,
                              flowKey(kClient4, "10.100.0.2", kSport, 53, kUdp)));
    Bytes noSvc = PacketBuilder().Eth(kLbMac, kRouterMac).IPv4("203.0.113.1", "10.100.0.1")
                      .Icmp(3, 4, 1400).IPv4("10.100.0.1", kClient4).Tcp(81, kSport).build();
    rows.push_back(passRow("icmp frag-needed quoting a port without a service", noSvc, KEEL_R_PASS_NO_SERVICE));
    Bytes wrongSrc = PacketBuilder().Eth(kLbMac, kRouterMac).IPv4("203.0.113.1", "10.100.0.1")
                         .Icmp(3, 4, 1400).IPv4("10.100.0.99", kClient4).Tcp(80, kSport).build();
    rows.push_back(dropRow("icmp frag-needed quoting another source", wrongSrc, KEEL_R_DROP_ICMP));
    Bytes cut = PacketBuilder().Eth(kLbMac, kRouterMac).IPv4("203.0.113.1", "10.100.0.1")
                    .Icmp(3, 4, 1400).IPv4("10.100.0.1", kClient4, {.proto = kTcp}).Raw(Bytes(2, 0)).build();
    rows.push_back(dropRow("icmp frag-needed with the quoted ports cut", cut, KEEL_R_DROP_TRUNCATED));
    // A quote of a later fragment: its first bytes are payload, not ports.
    Bytes laterFrag = PacketBuilder().Eth(kLbMac, kRouterMac).IPv4("203.0.113.1", "10.100.0.1")
                          .Icmp(3, 4, 1400).IPv4("10.100.0.1", kClient4, {.fragOff = 185}).Tcp(80, kSport).build();
    rows.push_back(dropRow("icmp frag-needed quoting a later fragment", laterFrag, KEEL_R_DROP_ICMP));
    Bytes notV4 = PacketBuilder().Eth(kLbMac, kRouterMac).IPv4("203.0.113.1", "10.100.0.1")
                      .Icmp(3, 4, 1400).IPv4("10.100.0.1", kClient4).Tcp(80, kSport).build();
    notV4[14 + 20 + 8] = 0x65;  // the quoted header's version 6, IHL 5
    rows.push_back(dropRow("icmp frag-needed quoting an IPv4 header whose version is not 4", notV4, KEEL_R_DROP_ICMP));
    Bytes notV6 = PacketBuilder().Eth(kLbMac, kRouterMac).IPv6("2001:db8:1::1", "fd00:100::1")
                      .Icmp6(2, 0, 1280).IPv6("fd00:100::1", kClient6).Udp(53, kSport).Payload("quoted").build();
    notV6[14 + 40 + 8] = 0x40;  // the quoted header's version 4
    rows.push_back(dropRow("icmpv6 packet-too-big quoting an IPv6 header whose version is not 6", notV6,
                           KEEL_R_DROP_ICMP));
  }
  {
    // Every other error about a real's packet reaches that real too: its
    // stack decides (port / host unreachable, administratively prohibited,
    // time exceeded; ICMPv6 destination unreachable and time exceeded).
    struct Err {
      const char* what;
      uint8_t type, code;
    };
    for (const Err& e : {Err{"icmp port unreachable", 3, 3}, Err{"icmp host unreachable", 3, 1},
                         Err{"icmp administratively prohibited", 3, 13}, Err{"icmp time exceeded in transit", 11, 0}}) {
      Bytes in = PacketBuilder().Eth(kLbMac, kRouterMac).IPv4("203.0.113.1", "10.100.0.1")
                     .Icmp(e.type, e.code).IPv4("10.100.0.1", kClient4).Tcp(80, kSport, kTcpAck).build();
      rows.push_back(forwardRow(std::string(e.what) + " steered by the quoted flow", in, 14, 0,
                                flowKey(kClient4, "10.100.0.1", kSport, 80, kTcp)));
    }
    Bytes udp = PacketBuilder().Eth(kLbMac, kRouterMac).Vlan(5).IPv4("203.0.113.1", "10.100.0.2")
                    .Icmp(3, 3).IPv4("10.100.0.2", kClient4).Udp(53, kSport).build();
    rows.push_back(forwardRow("icmp port unreachable to an l2dsr udp service, vlan", udp, 18, 5,
                              flowKey(kClient4, "10.100.0.2", kSport, 53, kUdp)));
    for (const Err& e : {Err{"icmpv6 destination unreachable (port)", 1, 4},
                         Err{"icmpv6 destination unreachable (administratively prohibited)", 1, 1},
                         Err{"icmpv6 time exceeded", 3, 0}}) {
      Bytes in = PacketBuilder().Eth(kLbMac, kRouterMac).IPv6("2001:db8:1::1", "fd00:100::1")
                     .Icmp6(e.type, e.code).IPv6("fd00:100::1", kClient6).Udp(53, kSport).build();
      rows.push_back(forwardRow(std::string(e.what) + " steered by the quoted flow", in, 14, 3,
                                flowKey(kClient6, "fd00:100::1", kSport, 53, kUdp)));
    }
    // The quote is checked as for frag-needed.
    rows.push_back(dropRow("icmp time exceeded quoting another source",
                           PacketBuilder().Eth(kLbMac, kRouterMac).IPv4("203.0.113.1", "10.100.0.1")
                               .Icmp(11, 0).IPv4("10.100.0.99", kClient4).Tcp(80, kSport).build(),
                           KEEL_R_DROP_ICMP));
    // Reassembly time exceeded quotes a first fragment: for IPv4 its ports
    // are there, so it is steered.
    {
      Bytes in = PacketBuilder().Eth(kLbMac, kRouterMac).IPv4("203.0.113.1", "10.100.0.2")
                     .Icmp(11, 1).IPv4("10.100.0.2", kClient4, {.fragOff = kIpMf}).Udp(53, kSport).build();
      rows.push_back(forwardRow("icmp reassembly time exceeded quoting a first fragment", in, 14, 5,
                                flowKey(kClient4, "10.100.0.2", kSport, 53, kUdp)));
      Bytes in6 = PacketBuilder().Eth(kLbMac, kRouterMac).IPv6("2001:db8:1::1", "fd00:100::1")
                      .Icmp6(3, 0).IPv6("fd00:100::1", kClient6).Tcp(80, kSport, kTcpAck).build();
      rows.push_back(forwardRow("icmpv6 time exceeded quoting tcp", in6, 14, 2,
                                flowKey(kClient6, "fd00:100::1", kSport, 80, kTcp)));
    }
    // Never an error about an ICMP packet (keel's own echo replies and
    // too-big answers among them): no loop of errors.
    rows.push_back(dropRow("icmp port unreachable quoting an icmp echo reply",
                           PacketBuilder().Eth(kLbMac, kRouterMac).IPv4("203.0.113.1", "10.100.0.1")
                               .Icmp(3, 3).IPv4("10.100.0.1", kClient4).Icmp(0, 0).build(),
                           KEEL_R_DROP_ICMP));
    rows.push_back(dropRow("icmpv6 destination unreachable quoting an icmpv6 echo reply",
                           PacketBuilder().Eth(kLbMac, kRouterMac).IPv6("2001:db8:1::1", "fd00:100::1")
                               .Icmp6(1, 0).IPv6("fd00:100::1", kClient6).Icmp6(129, 0).build(),
                           KEEL_R_DROP_ICMP));
    // An IPv6 quote must have its TCP/UDP header right after the IPv6
    // header: one with a fragment header (here a first fragment, as
    // "reassembly time exceeded" quotes) is not steered.
    rows.push_back(dropRow("icmpv6 time exceeded quoting a first fragment",
                           PacketBuilder().Eth(kLbMac, kRouterMac).IPv6("2001:db8:1::1", "fd00:100::1")
                               .Icmp6(3, 1).IPv6("fd00:100::1", kClient6).Ipv6Ext(44, 8, 0x0001).Udp(53, kSport)
                               .build(),
                           KEEL_R_DROP_ICMP));
    // Errors that quote nothing of a real's flow, or that no one relays:
    // source quench (deprecated, RFC 6633), parameter problem, redirect.
    for (const Err& e : {Err{"icmp source quench", 4, 0}, Err{"icmp parameter problem", 12, 0},
                         Err{"icmp redirect", 5, 1}}) {
      Bytes in = PacketBuilder().Eth(kLbMac, kRouterMac).IPv4("203.0.113.1", "10.100.0.1")
                     .Icmp(e.type, e.code).IPv4("10.100.0.1", kClient4).Tcp(80, kSport).build();
      rows.push_back(dropRow(e.what, in, KEEL_R_DROP_ICMP));
    }
    rows.push_back(dropRow("icmpv6 parameter problem",
                           PacketBuilder().Eth(kLbMac, kRouterMac).IPv6("2001:db8:1::1", "fd00:100::1")
                               .Icmp6(4, 0).IPv6("fd00:100::1", kClient6).Udp(53, kSport).build(),
                           KEEL_R_DROP_ICMP));
  }
  rows.push_back(dropRow("icmp timestamp request", PacketBuilder().Eth(kLbMac, kRouterMac).IPv4(kClient4, "10.100.0.1")
                                                       .Icmp(13, 0).Raw(Bytes(12, 0)).build(),
                         KEEL_R_DROP_ICMP));
  rows.push_back(dropRow("icmpv4 inside IPv6", PacketBuilder().Eth(kLbMac, kRouterMac).IPv6(kClient6, "fd00:100::1", {.nextHeader = 1})
                                                   .Icmp(8, 0, 1).build(),
                         KEEL_R_DROP_ICMP));

  // --- other L4 ---
  rows.push_back(dropRow("GRE to a v4 VIP", PacketBuilder().Eth(kLbMac, kRouterMac).IPv4(kClient4, "10.100.0.1", {.proto = 47})
                                                .Raw(Bytes(8, 0)).build(),
                         KEEL_R_DROP_L4_PROTO));
  rows.push_back(dropRow("SCTP to a v6 VIP", PacketBuilder().Eth(kLbMac, kRouterMac).IPv6(kClient6, "fd00:100::1", {.nextHeader = 132})
                                                 .Raw(Bytes(12, 0)).build(),
                         KEEL_R_DROP_L4_PROTO));

  // --- services without a usable real ---
  {
    FixtureRow r = dropRow("empty ring (M = 0)", flowPacket(plain, kClient4, "10.100.0.5", kTcp, kSport, 80), KEEL_R_DROP_NO_BACKEND);
    rows.push_back(r);
    rows.push_back(dropRow("ring slot points at a backend that is not VALID",
                           flowPacket(plain, kClient4, "10.100.0.8", kTcp, kSport, 80), KEEL_R_DROP_NO_BACKEND));
  }
  return rows;
}

// ---- over the MTU ----
namespace {

// A client packet of exactly ipLen IP bytes (so the MTU rows can sit one
// byte either side of the limit); the payload varies so a quote taken from
// the wrong place shows.
Bytes sizedPacket(const Frame& f, const std::string& src, const std::string& dst, uint8_t proto, uint16_t sport,
                  uint16_t dport, size_t ipLen, bool df) {
  PacketBuilder b = l2(f);
  ip(b, src, dst, 0, df);
  size_t hdrs = (familyOf(src) == KEEL_AF_INET6 ? 40 : 20) + (proto == kTcp ? 20 : 8);
  if (proto == kTcp) {
    b.Tcp(sport, dport, kTcpAck);
  } else {
    b.Udp(sport, dport);
  }
  std::string payload(ipLen - hdrs, 'a');
  for (size_t i = 0; i < payload.size(); i++) payload[i] = static_cast<char>('a' + i % 26);
  return b.Payload(payload).build();
}

// The ICMP error keel must send for `input`, built from scratch by the
// builder (its own headers and checksums: an oracle independent of encap.h):
// to the router's MAC from the node's (kLbMac, whatever MAC the request was
// sent to), the tag kept, VIP -> client, TTL / hop limit 64, type 3/4
// (IPv4, DF clear, id 0, TOS 0) or 2/0 (IPv6) with the MTU, and the first
// 128 bytes of the client's IP packet.
Bytes tooBigReply(const Bytes& input, const Frame& f, const std::string& client, const std::string& vip,
                  uint32_t mtu) {
  PacketBuilder b;
  if (f.vlan) {
    b.Eth(kRouterMac, kLbMac, f.tpid).Vlan(*f.vlan);
  } else {
    b.Eth(kRouterMac, kLbMac);
  }
  size_t l3 = l3Off(f);
  Bytes quote(input.begin() + static_cast<long>(l3), input.begin() + static_cast<long>(l3 + 128));
  if (familyOf(client) == KEEL_AF_INET6) {
    b.IPv6(vip, client, {.hopLimit = 64}).Icmp6(2, 0, mtu);
  } else {
    b.IPv4(vip, client, {.ttl = 64}).Icmp(3, 4, mtu);
  }
  return b.Raw(quote).build();
}

}  // namespace

std::vector<FixtureRow> mtuRows(uint32_t mtu) {
  std::vector<FixtureRow> rows;
  const Frame plain;
  Frame tagged;
  tagged.vlan = 5;
  auto reply = [&](std::string d, const Frame& f, const std::string& client, const std::string& vip, uint8_t proto,
                   uint16_t dport, size_t ipLen, uint32_t reported, const char* dstMac = nullptr) {
    Bytes in = sizedPacket(f, client, vip, proto, kSport, dport, ipLen, true);
    if (dstMac) in = toGroup(std::move(in), dstMac);
    rows.push_back({std::move(d), in, Verdict::kTx, KEEL_R_TX_ICMP_TOO_BIG, tooBigReply(in, f, client, vip, reported)});
  };
  // ipip v4 real: 20 outer bytes; v6 real: 40.
  rows.push_back(forwardRow("ipip v4 at the MTU after encap", sizedPacket(plain, kClient4, "10.100.0.1", kTcp, kSport, 80, mtu - 20, true),
                            14, 0, flowKey(kClient4, "10.100.0.1", kSport, 80, kTcp)));
  // The L3 length counts, as bpf_check_mtu is asked: a VLAN tag does not.
  rows.push_back(forwardRow("ipip v4 at the MTU after encap, vlan: the tag does not count",
                            sizedPacket(tagged, kClient4, "10.100.0.1", kTcp, kSport, 80, mtu - 20, true), 18, 0,
                            flowKey(kClient4, "10.100.0.1", kSport, 80, kTcp)));
  reply("ipip v4 DF one byte over: frag-needed, MTU - 20", plain, kClient4, "10.100.0.1", kTcp, 80, mtu - 19, mtu - 20);
  reply("ipip v4 udp DF over, vlan kept: frag-needed", tagged, kClient4, "10.100.0.1", kUdp, 53, mtu, mtu - 20);
  // In a frame to another host's MAC: the error leaves from the node's MAC.
  reply("ipip v4 DF over, in a frame to another host's MAC: frag-needed from the node's MAC", plain, kClient4,
        "10.100.0.1", kTcp, 80, mtu - 19, mtu - 20, kOtherHostMac);
  reply("ipip v6 over, vlan, in a frame to another host's MAC: packet-too-big from the node's MAC", tagged,
        kClient6, "fd00:100::1", kUdp, 53, mtu, mtu - 40, kOtherHostMac);
  rows.push_back(dropRow("ipip v4 without DF over the MTU: keel cannot fragment",
                         sizedPacket(plain, kClient4, "10.100.0.1", kTcp, kSport, 80, mtu - 19, false), KEEL_R_DROP_TOO_BIG));
  rows.push_back(dropRow("ipip v4 without DF over the MTU, vlan",
                         sizedPacket(tagged, kClient4, "10.100.0.1", kUdp, kSport, 53, mtu, false), KEEL_R_DROP_TOO_BIG));
  // No error to a source that is no single host's, nor for a frame sent to
  // an Ethernet group address: keel_parse_l4 drops them first.
  rows.push_back(dropRow("ipip v4 DF over the MTU from 255.255.255.255: no frag-needed",
                         sizedPacket(plain, "255.255.255.255", "10.100.0.1", kUdp, kSport, 53, mtu, true),
                         KEEL_R_DROP_BAD_SOURCE));
  rows.push_back(dropRow("ipip v4 DF over the MTU from 224.0.0.9: no frag-needed",
                         sizedPacket(plain, "224.0.0.9", "10.100.0.1", kUdp, kSport, 53, mtu, true),
                         KEEL_R_DROP_BAD_SOURCE));
  rows.push_back(dropRow("ipip v6 over the MTU from ff02::1: no packet-too-big",
                         sizedPacket(plain, "ff02::1", "fd00:100::1", kUdp, kSport, 53, mtu, true),
                         KEEL_R_DROP_BAD_SOURCE));
  rows.push_back(dropRow("ipip v4 DF over the MTU in an Ethernet broadcast frame: no frag-needed",
                         toGroup(sizedPacket(plain, kClient4, "10.100.0.1", kTcp, kSport, 80, mtu, true), kBroadcast),
                         KEEL_R_DROP_L2_MULTICAST));
  reply("ipip v6 one byte over: packet-too-big, MTU - 40", plain, kClient6, "fd00:100::1", kTcp, 80, mtu - 39, mtu - 40);
  reply("ipip v6 udp over, vlan kept: packet-too-big", tagged, kClient6, "fd00:100::1", kUdp, 53, mtu, mtu - 40);
  reply("4in6: v4 VIP, v6 real, DF over: frag-needed, MTU - 40", plain, kClient4, "10.100.0.6", kTcp, 80, mtu - 39,
        mtu - 40);
  reply("6in4: v6 VIP, v4 real, over: packet-too-big, MTU - 20", tagged, kClient6, "fd00:100::6", kTcp, 80, mtu - 19,
        mtu - 20);
  {
    // ICMP errors steered by their quoted flow are never answered with one.
    std::string pad(mtu, 'q');
    Bytes err4 = PacketBuilder().Eth(kLbMac, kRouterMac).IPv4("203.0.113.1", "10.100.0.1", {.fragOff = kIpDf})
                     .Icmp(3, 4, 1400).IPv4("10.100.0.1", kClient4, {.fragOff = kIpDf}).Tcp(80, kSport, kTcpAck)
                     .Payload(pad).build();
    rows.push_back(dropRow("icmp frag-needed over the MTU: no error for an error", err4, KEEL_R_DROP_TOO_BIG));
    Bytes err6 = PacketBuilder().Eth(kLbMac, kRouterMac).Vlan(5).IPv6("2001:db8:1::1", "fd00:100::1")
                     .Icmp6(2, 0, 1280).IPv6("fd00:100::1", kClient6).Udp(53, kSport).Payload(pad).build();
    rows.push_back(dropRow("icmpv6 packet-too-big over the MTU, vlan: no error for an error", err6, KEEL_R_DROP_TOO_BIG));
  }
  return rows;
}

std::vector<FixtureRow> truncationRows() {
  std::vector<FixtureRow> rows;
  std::vector<std::pair<std::string, Bytes>> valid;
  for (const BasicFlow& f : basicFlows()) valid.push_back({f.description, f.input});
  valid.push_back({"icmp echo v4", echoRequest(Frame{}, kClient4, "10.100.0.1")});
  valid.push_back({"icmpv6 echo", echoRequest(Frame{}, kClient6, "fd00:100::1")});
  valid.push_back({"v6 hop-by-hop", PacketBuilder().Eth(kLbMac, kRouterMac).IPv6(kClient6, "fd00:100::1").Ipv6Ext(0, 8)
                                        .Tcp(kSport, 80).build()});
  valid.push_back({"v4 options", PacketBuilder().Eth(kLbMac, kRouterMac).IPv4(kClient4, "10.100.0.1", {.options = {1, 1, 1, 0}})
                                     .Udp(kSport, 53).build()});
  valid.push_back({"icmp frag-needed", PacketBuilder().Eth(kLbMac, kRouterMac).IPv4("203.0.113.1", "10.100.0.1")
                                           .Icmp(3, 4, 1400).IPv4("10.100.0.1", kClient4).Tcp(80, kSport).build()});
  valid.push_back({"icmp time exceeded", PacketBuilder().Eth(kLbMac, kRouterMac).IPv4("203.0.113.1", "10.100.0.1")
                                             .Icmp(11, 0).IPv4("10.100.0.1", kClient4).Tcp(80, kSport).build()});
  valid.push_back({"icmpv6 destination unreachable",
                   PacketBuilder().Eth(kLbMac, kRouterMac).IPv6("2001:db8:1::1", "fd00:100::1")
                       .Icmp6(1, 4).IPv6("fd00:100::1", kClient6).Udp(53, kSport).build()});
  valid.push_back({"v6 atomic fragment", PacketBuilder().Eth(kLbMac, kRouterMac).IPv6(kClient6, "fd00:100::1")
                                             .Ipv6Ext(44, 8, 0).Tcp(kSport, 80).build()});
  valid.push_back({"v6 routing header, none left", PacketBuilder().Eth(kLbMac, kRouterMac).IPv6(kClient6, "fd00:100::1")
                                                       .Ipv6Ext(43, 16, 0x0400).Udp(kSport, 53).build()});
  for (const auto& [name, full] : valid) {
    bool tagged = full[12] == 0x81 && full[13] == 0x00;
    size_t l3 = tagged ? 18 : 14;
    size_t fixedIp = (full[l3] >> 4) == 6 ? 40 : 20;
    for (size_t len = 0; len < full.size(); len++) {
      Bytes in(full.begin(), full.begin() + static_cast<long>(len));
      std::string d = name + " cut to " + std::to_string(len) + " bytes";
      if (len < l3 + fixedIp) {
        rows.push_back(passRow(d, in, KEEL_R_PASS_TRUNCATED));
      } else {
        rows.push_back(dropRow(d, in, KEEL_R_DROP_TRUNCATED));
      }
    }
  }
  // Cut by the IP length with the frame still long enough: the bytes past the
  // IP packet (Ethernet padding, garbage) are never read as a header.
  rows.push_back(dropRow("v4 total length 20, the tcp header past it",
                         PacketBuilder().Eth(kLbMac, kRouterMac).IPv4(kClient4, "10.100.0.1", {.totLen = 20})
                             .Tcp(kSport, 80).build(),
                         KEEL_R_DROP_TRUNCATED));
  rows.push_back(dropRow("v4 total length 24, the udp header past it",
                         PacketBuilder().Eth(kLbMac, kRouterMac).IPv4(kClient4, "10.100.0.1", {.totLen = 24})
                             .Udp(kSport, 53).Payload("padding").build(),
                         KEEL_R_DROP_TRUNCATED));
  rows.push_back(dropRow("icmp frag-needed whose quoted ports are past the total length",
                         PacketBuilder().Eth(kLbMac, kRouterMac).IPv4("203.0.113.1", "10.100.0.1", {.totLen = 20 + 8 + 20})
                             .Icmp(3, 4, 1400).IPv4("10.100.0.1", kClient4).Tcp(80, kSport).build(),
                         KEEL_R_DROP_TRUNCATED));
  // IPv6: the payload length set after building (the builder computes it).
  auto withPayloadLen = [](Bytes b, uint16_t len) {
    b[14 + 4] = static_cast<uint8_t>(len >> 8);
    b[14 + 5] = static_cast<uint8_t>(len);
    return b;
  };
  const Bytes tcp6 = PacketBuilder().Eth(kLbMac, kRouterMac).IPv6(kClient6, "fd00:100::1").Tcp(kSport, 80).build();
  rows.push_back(dropRow("v6 payload length 4, the tcp header past it", withPayloadLen(tcp6, 4), KEEL_R_DROP_TRUNCATED));
  const Bytes hbh6 = PacketBuilder().Eth(kLbMac, kRouterMac).IPv6(kClient6, "fd00:100::1").Ipv6Ext(0, 8)
                         .Tcp(kSport, 80).build();
  rows.push_back(dropRow("v6 payload length 1, the hop-by-hop header past it", withPayloadLen(hbh6, 1),
                         KEEL_R_DROP_TRUNCATED));
  // 40 + 0xffff does not fit the 16-bit IP length (it would read as 39).
  rows.push_back(passRow("v6 payload length 0xffff", withPayloadLen(tcp6, 0xffff), KEEL_R_PASS_BAD_HEADER));
  return rows;
}

std::vector<Scenario> conntrackScenarios() {
  std::vector<Scenario> out;
  const Frame plain;
  const std::string vip = "10.100.0.1";
  // A flow's first packet is a SYN (picked from the ring, never looked up:
  // keel_tcp_syn); what follows is the established flow's (ACK).
  Bytes flowA = flowPacket(plain, kClient4, vip, kTcp, kSport, 80, "flow A");
  Bytes flowB = flowPacket(plain, kClient4, vip, kTcp, kSport + 1, 80, "flow B");
  Bytes ackA = flowPacket(plain, kClient4, vip, kTcp, kSport, 80, "flow A", 0, kTcpAck);
  Bytes ackB = flowPacket(plain, kClient4, vip, kTcp, kSport + 1, 80, "flow B", 0, kTcpAck);
  // The flow hash an IPv6 outer header carries as its flow label.
  auto hashOf = [](const Bytes& in) {
    const keel_flow_key k = plainFlowKey(in, 14);
    return keel_flow_hash(&k);
  };
  auto toBackend = [&](const std::string& d, const Bytes& in, uint32_t svc, uint32_t be) {
    FixtureRow r{d, in, Verdict::kTx, KEEL_R_TX_IPIP, ipipExpected(in, 14, nodeConfig(), backendById(be), hashOf(in), false),
                 svc, be};
    return r;
  };
  auto toBackendWith = [&](const std::string& d, const Bytes& in, uint32_t svc, const keel_backend& be, uint32_t beId) {
    FixtureRow r{d, in, Verdict::kTx, KEEL_R_TX_IPIP, ipipExpected(in, 14, nodeConfig(), be, hashOf(in), false), svc, beId};
    return r;
  };
  const RingSpec ringTo20{0, repeat(20, 7)};

  {
    Scenario s{"ring change: established flow stays, new flow follows the ring", {}};
    s.steps.push_back({"flow A picks the only real", {}, {}, toBackend("A -> 0", flowA, 0, 0)});
    s.steps.push_back({"ring now holds only backend 20", {}, {ringTo20}, toBackend("A stays on 0", ackA, 0, 0)});
    s.steps.push_back({"", {}, {}, toBackend("new flow B -> 20", flowB, 0, 20)});
    out.push_back(s);
  }
  {
    Scenario s{"drain: real out of the ring, generation kept, established flow stays", {}};
    s.steps.push_back({"", {}, {}, toBackend("A -> 0", flowA, 0, 0)});
    s.steps.push_back({"", {}, {}, toBackend("B -> 0", flowB, 0, 0)});
    s.steps.push_back({"drain 0", {}, {ringTo20}, toBackend("A stays on drained 0", ackA, 0, 0)});
    s.steps.push_back({"", {}, {}, toBackend("B stays on drained 0", ackB, 0, 0)});
    Bytes flowC = flowPacket(plain, kClient4, vip, kTcp, kSport + 2, 80, "flow C");
    s.steps.push_back({"", {}, {}, toBackend("new flow C -> 20", flowC, 0, 20)});
    out.push_back(s);
  }
  {
    Scenario s{"remove: ring swap then generation bump moves the established flow", {}};
    keel_backend removed = backendById(0);
    removed.gen = 2;
    s.steps.push_back({"", {}, {}, toBackend("A -> 0", flowA, 0, 0)});
    s.steps.push_back({"remove 0: ring without it, gen 1 -> 2", {{0, removed}}, {ringTo20}, toBackend("A re-picked -> 20", ackA, 0, 20)});
    s.steps.push_back({"", {}, {}, toBackend("A stays on 20 (entry overwritten)", ackA, 0, 20)});
    out.push_back(s);
  }
  {
    Scenario s{"health down: backend not VALID moves the established flow", {}};
    keel_backend down = backendById(0);
    down.flags = 0;
    s.steps.push_back({"", {}, {}, toBackend("A -> 0", flowA, 0, 0)});
    s.steps.push_back({"0 goes down", {{0, down}}, {ringTo20}, toBackend("A re-picked -> 20", ackA, 0, 20)});
    keel_backend up = backendById(0);
    up.gen = 2;  // coming back up is a new generation: flows already moved stay moved
    s.steps.push_back({"0 back up, in the ring again", {{0, up}}, {{0, repeat(0, 7)}}, toBackend("A stays on 20", ackA, 0, 20)});
    s.steps.push_back({"", {}, {}, toBackendWith("new flow B -> 0", flowB, 0, up, 0)});
    out.push_back(s);
  }
  {
    Scenario s{"backend id reused by another service invalidates old entries", {}};
    keel_backend reused = backendById(0);
    reused.service_id = 1;  // id 0 now belongs to service 1
    s.steps.push_back({"", {}, {}, toBackend("A -> 0", flowA, 0, 0)});
    s.steps.push_back({"id 0 moves to service 1", {{0, reused}}, {ringTo20}, toBackend("A re-picked -> 20", ackA, 0, 20)});
    out.push_back(s);
  }
  {
    Scenario s{"udp flows are kept too", {}};
    Bytes u = flowPacket(plain, kClient4, vip, kUdp, kSport, 53, "udp A");
    keel_backend removed = backendById(1);
    removed.gen = 5;
    s.steps.push_back({"", {}, {}, toBackend("udp A -> 1", u, 1, 1)});
    s.steps.push_back({"ring -> 21", {}, {{1, repeat(21, 7)}}, toBackend("udp A stays on 1", u, 1, 1)});
    s.steps.push_back({"remove 1", {{1, removed}}, {}, toBackend("udp A re-picked -> 21", u, 1, 21)});
    out.push_back(s);
  }
  {
    Scenario s{"l2dsr and v6 flows are kept", {}};
    Bytes d = flowPacket(plain, kClient4, "10.100.0.2", kTcp, kSport, 80, "dsr");
    FixtureRow r1{"dsr A -> 4", d, Verdict::kTx, KEEL_R_TX_L2DSR, l2dsrExpected(d, backendById(4)), 4, 4};
    s.steps.push_back({"", {}, {}, r1});
    Bytes dAck = flowPacket(plain, kClient4, "10.100.0.2", kTcp, kSport, 80, "dsr", 0, kTcpAck);
    FixtureRow r2{"dsr A stays on 4", dAck, Verdict::kTx, KEEL_R_TX_L2DSR, l2dsrExpected(dAck, backendById(4)), 4, 4};
    s.steps.push_back({"ring -> 22", {}, {{4, repeat(22, 7)}}, r2});
    Bytes v6 = flowPacket(plain, kClient6, "fd00:100::1", kTcp, kSport, 80, "v6");
    Bytes v6Ack = flowPacket(plain, kClient6, "fd00:100::1", kTcp, kSport, 80, "v6", 0, kTcpAck);
    s.steps.push_back({"", {}, {}, toBackend("v6 A -> 2", v6, 2, 2)});
    s.steps.push_back({"ring -> 23", {}, {{2, repeat(23, 7)}}, toBackend("v6 A stays on 2", v6Ack, 2, 2)});
    out.push_back(s);
  }
  {
    // A client that reuses a 5-tuple within the idle timeout opens a new
    // connection: its SYN goes where the ring sends new flows, so a drained
    // real gets none (Katran re-picks every SYN too).
    Scenario s{"a SYN reusing an established flow's 5-tuple is picked from the ring", {}};
    s.steps.push_back({"", {}, {}, toBackend("A -> 0", flowA, 0, 0)});
    s.steps.push_back({"drain 0", {}, {ringTo20}, toBackend("A's segments stay on drained 0", ackA, 0, 0)});
    s.steps.push_back({"", {}, {}, toBackend("A's 5-tuple reused: the SYN goes to 20", flowA, 0, 20)});
    s.steps.push_back({"", {}, {}, toBackend("the new connection stays on 20 (entry overwritten)", ackA, 0, 20)});
    out.push_back(s);
  }
  {
    Scenario s{"empty ring: established flows keep their real, new flows drop", {}};
    s.steps.push_back({"", {}, {}, toBackend("A -> 0", flowA, 0, 0)});
    s.steps.push_back({"ring emptied (M = 0)", {}, {{0, {}}}, toBackend("A stays on 0", ackA, 0, 0)});
    s.steps.push_back({"", {}, {}, dropRow("new flow B dropped", flowB, KEEL_R_DROP_NO_BACKEND)});
    out.push_back(s);
  }
  return out;
}

}  // namespace keel::test

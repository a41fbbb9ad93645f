// SPDX-License-Identifier: Apache-2.0
// A fluent packet builder for fixture tables (Katran PacketBuilder style):
//
//   PacketBuilder().Eth(kLbMac, kRouterMac).Vlan(5).IPv4("10.0.0.9", "10.100.0.1")
//       .Tcp(40000, 80, kTcpSyn).Payload("hello").build();
//
// Length fields, protocol/ethertype fields and every checksum are filled in at
// build() from the layers that follow, with this file's own code (never the
// data-plane headers), so expected outputs are an independent oracle.
// Overrides (IHL, total length, version, protocol) make malformed packets.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace keel::test {

using Bytes = std::vector<uint8_t>;

inline constexpr uint8_t kTcpFin = 0x01;
inline constexpr uint8_t kTcpSyn = 0x02;
inline constexpr uint8_t kTcpRst = 0x04;
inline constexpr uint8_t kTcpPsh = 0x08;
inline constexpr uint8_t kTcpAck = 0x10;

inline constexpr uint16_t kIpDf = 0x4000;
inline constexpr uint16_t kIpMf = 0x2000;

struct Ipv4Opts {
  uint8_t ttl = 64;
  uint8_t tos = 0;
  uint16_t id = 0;
  uint16_t fragOff = 0;  // flags | offset in 8-byte units, host order
  Bytes options;         // padded by the caller to a multiple of 4
  std::optional<uint8_t> proto;
  std::optional<uint8_t> ihl;        // in 4-byte words
  std::optional<uint8_t> version;
  std::optional<uint16_t> totLen;
};

struct Ipv6Opts {
  uint8_t hopLimit = 64;
  uint8_t tc = 0;
  uint32_t flowLabel = 0;
  std::optional<uint8_t> nextHeader;
  std::optional<uint8_t> version;
};

class PacketBuilder {
 public:
  // MACs as "02:00:00:00:00:01". ethertype: only needed before Raw().
  PacketBuilder& Eth(const std::string& dst, const std::string& src,
                     std::optional<uint16_t> ethertype = std::nullopt);
  PacketBuilder& Vlan(uint16_t vid, std::optional<uint16_t> ethertype = std::nullopt);
  PacketBuilder& IPv4(const std::string& src, const std::string& dst, Ipv4Opts opts = {});
  PacketBuilder& IPv6(const std::string& src, const std::string& dst, Ipv6Opts opts = {});
  // An IPv6 extension header (hop-by-hop 0, routing 43, fragment 44, dst
  // options 60) of totalLen bytes (multiple of 8, >= 8), PadN-filled.
  // fragOff: for a fragment header, offset | M flag as on the wire (host
  // order); for a routing header, its type << 8 | segments left (the rest
  // zeros).
  PacketBuilder& Ipv6Ext(uint8_t type, uint16_t totalLen = 8, uint16_t fragOff = 0);
  PacketBuilder& Tcp(uint16_t sport, uint16_t dport, uint8_t flags = kTcpSyn, uint32_t seq = 1,
                     uint32_t ack = 0);
  PacketBuilder& Udp(uint16_t sport, uint16_t dport);
  // rest: the 4 bytes after the checksum (echo: id << 16 | seq; frag needed:
  // next-hop MTU in the low 16 bits; PTB: the MTU), host order.
  PacketBuilder& Icmp(uint8_t type, uint8_t code, uint32_t rest = 0);
  PacketBuilder& Icmp6(uint8_t type, uint8_t code, uint32_t rest = 0);
  PacketBuilder& Payload(const std::string& text);
  PacketBuilder& Raw(const Bytes& bytes);

  Bytes build() const;

 private:
  enum class Kind { kEth, kVlan, kIpv4, kIpv6, kIpv6Ext, kTcp, kUdp, kIcmp, kIcmp6, kRaw };
  struct Layer {
    Kind kind;
    Bytes a;  // MAC/address bytes (dst for eth), raw payload
    Bytes b;  // src MAC/address
    std::optional<uint16_t> ethertype;
    Ipv4Opts v4;
    Ipv6Opts v6;
    uint32_t u1 = 0, u2 = 0, u3 = 0, u4 = 0;
  };
  Bytes serialize(size_t i) const;
  std::optional<uint16_t> etherTypeOf(size_t next) const;
  std::optional<uint8_t> ipProtoOf(size_t next) const;
  const Layer* enclosingIp(size_t i) const;

  std::vector<Layer> layers_;
};

// Raw parsers for addresses given as text; abort on a typo (test data).
Bytes macBytes(const std::string& text);
Bytes ipBytes(const std::string& text);  // 4 or 16 bytes

// Internet checksum (RFC 1071) of data, as the 16-bit value to store
// big-endian on the wire.
uint16_t internetChecksum(const Bytes& data, uint32_t initial = 0);

// Hex dump with a marker on the first differing byte, for test failures.
std::string hexDiff(const Bytes& got, const Bytes& want);

}  // namespace keel::test

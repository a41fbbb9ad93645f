// SPDX-License-Identifier: Apache-2.0
#include "packet_builder.h"

#include <arpa/inet.h>

#include <cstdio>
#include <cstdlib>
#include <sstream>

namespace keel::test {
namespace {

void put16(Bytes& out, uint16_t v) {
  out.push_back(static_cast<uint8_t>(v >> 8));
  out.push_back(static_cast<uint8_t>(v));
}

void put32(Bytes& out, uint32_t v) {
  put16(out, static_cast<uint16_t>(v >> 16));
  put16(out, static_cast<uint16_t>(v));
}

void append(Bytes& out, const Bytes& more) { out.insert(out.end(), more.begin(), more.end()); }

void set16(Bytes& out, size_t off, uint16_t v) {
  out[off] = static_cast<uint8_t>(v >> 8);
  out[off + 1] = static_cast<uint8_t>(v);
}

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "packet_builder: %s\n", what.c_str());
  std::abort();
}

constexpr uint8_t kProtoIcmp = 1;
constexpr uint8_t kProtoIpip = 4;
constexpr uint8_t kProtoTcp = 6;
constexpr uint8_t kProtoUdp = 17;
constexpr uint8_t kProtoIpv6 = 41;
constexpr uint8_t kProtoIcmp6 = 58;

}  // namespace

Bytes macBytes(const std::string& text) {
  unsigned v[6];
  if (std::sscanf(text.c_str(), "%x:%x:%x:%x:%x:%x", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]) != 6)
    die("bad MAC " + text);
  Bytes out;
  for (unsigned b : v) out.push_back(static_cast<uint8_t>(b));
  return out;
}

Bytes ipBytes(const std::string& text) {
  uint8_t buf[16];
  if (inet_pton(AF_INET, text.c_str(), buf) == 1) return Bytes(buf, buf + 4);
  if (inet_pton(AF_INET6, text.c_str(), buf) == 1) return Bytes(buf, buf + 16);
  die("bad IP address " + text);
}

uint16_t internetChecksum(const Bytes& data, uint32_t initial) {
  uint64_t sum = initial;
  for (size_t i = 0; i < data.size(); i += 2) {
    uint32_t word = static_cast<uint32_t>(data[i]) << 8;
    if (i + 1 < data.size()) word |= data[i + 1];
    sum += word;
  }
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum & 0xffff);
}

std::string hexDiff(const Bytes& got, const Bytes& want) {
  std::ostringstream os;
  size_t first = 0;
  while (first < got.size() && first < want.size() && got[first] == want[first]) first++;
  os << "got " << got.size() << " bytes, want " << want.size() << ", first difference at " << first
     << "\n";
  auto dump = [&](const char* name, const Bytes& b) {
    os << name << ":";
    for (size_t i = 0; i < b.size(); i++) {
      if (i % 16 == 0) os << "\n  " << (i < 0x10 ? "00" : i < 0x100 ? "0" : "") << std::hex << i << ": ";
      char hex[8];
      std::snprintf(hex, sizeof hex, "%02x%s", b[i], i == first ? "*" : " ");
      os << hex;
    }
    os << std::dec << "\n";
  };
  dump("got", got);
  dump("want", want);
  return os.str();
}

PacketBuilder& PacketBuilder::Eth(const std::string& dst, const std::string& src,
                                  std::optional<uint16_t> ethertype) {
  Layer l{Kind::kEth, macBytes(dst), macBytes(src), ethertype, {}, {}};
  layers_.push_back(std::move(l));
  return *this;
}

PacketBuilder& PacketBuilder::Vlan(uint16_t vid, std::optional<uint16_t> ethertype) {
  Layer l{Kind::kVlan, {}, {}, ethertype, {}, {}};
  l.u1 = vid;
  layers_.push_back(std::move(l));
  return *this;
}

PacketBuilder& PacketBuilder::IPv4(const std::string& src, const std::string& dst, Ipv4Opts opts) {
  Layer l{Kind::kIpv4, ipBytes(dst), ipBytes(src), std::nullopt, std::move(opts), {}};
  if (l.a.size() != 4 || l.b.size() != 4) die("IPv4 layer needs IPv4 addresses");
  layers_.push_back(std::move(l));
  return *this;
}

PacketBuilder& PacketBuilder::IPv6(const std::string& src, const std::string& dst, Ipv6Opts opts) {
  Layer l{Kind::kIpv6, ipBytes(dst), ipBytes(src), std::nullopt, {}, opts};
  if (l.a.size() != 16 || l.b.size() != 16) die("IPv6 layer needs IPv6 addresses");
  layers_.push_back(std::move(l));
  return *this;
}

PacketBuilder& PacketBuilder::Ipv6Ext(uint8_t type, uint16_t totalLen, uint16_t fragOff) {
  if (totalLen < 8 || totalLen % 8) die("IPv6 extension length must be a multiple of 8");
  Layer l{Kind::kIpv6Ext, {}, {}, std::nullopt, {}, {}};
  l.u1 = type;
  l.u2 = totalLen;
  l.u3 = fragOff;
  layers_.push_back(std::move(l));
  return *this;
}

PacketBuilder& PacketBuilder::Tcp(uint16_t sport, uint16_t dport, uint8_t flags, uint32_t seq,
                                  uint32_t ack) {
  Layer l{Kind::kTcp, {}, {}, std::nullopt, {}, {}};
  l.u1 = (static_cast<uint32_t>(sport) << 16) | dport;
  l.u2 = flags;
  l.u3 = seq;
  l.u4 = ack;
  layers_.push_back(std::move(l));
  return *this;
}

PacketBuilder& PacketBuilder::Udp(uint16_t sport, uint16_t dport) {
  Layer l{Kind::kUdp, {}, {}, std::nullopt, {}, {}};
  l.u1 = (static_cast<uint32_t>(sport) << 16) | dport;
  layers_.push_back(std::move(l));
  return *this;
}

PacketBuilder& PacketBuilder::Icmp(uint8_t type, uint8_t code, uint32_t rest) {
  Layer l{Kind::kIcmp, {}, {}, std::nullopt, {}, {}};
  l.u1 = type;
  l.u2 = code;
  l.u3 = rest;
  layers_.push_back(std::move(l));
  return *this;
}

PacketBuilder& PacketBuilder::Icmp6(uint8_t type, uint8_t code, uint32_t rest) {
  Icmp(type, code, rest);
  layers_.back().kind = Kind::kIcmp6;
  return *this;
}

PacketBuilder& PacketBuilder::Payload(const std::string& text) {
  return Raw(Bytes(text.begin(), text.end()));
}

PacketBuilder& PacketBuilder::Raw(const Bytes& bytes) {
  Layer l{Kind::kRaw, bytes, {}, std::nullopt, {}, {}};
  layers_.push_back(std::move(l));
  return *this;
}

std::optional<uint16_t> PacketBuilder::etherTypeOf(size_t next) const {
  if (next >= layers_.size()) return std::nullopt;
  switch (layers_[next].kind) {
    case Kind::kVlan: return 0x8100;
    case Kind::kIpv4: return 0x0800;
    case Kind::kIpv6: return 0x86dd;
    default: return std::nullopt;
  }
}

std::optional<uint8_t> PacketBuilder::ipProtoOf(size_t next) const {
  if (next >= layers_.size()) return std::nullopt;
  switch (layers_[next].kind) {
    case Kind::kIpv4: return kProtoIpip;
    case Kind::kIpv6: return kProtoIpv6;
    case Kind::kIpv6Ext: return static_cast<uint8_t>(layers_[next].u1);
    case Kind::kTcp: return kProtoTcp;
    case Kind::kUdp: return kProtoUdp;
    case Kind::kIcmp: return kProtoIcmp;
    case Kind::kIcmp6: return kProtoIcmp6;
    default: return std::nullopt;
  }
}

const PacketBuilder::Layer* PacketBuilder::enclosingIp(size_t i) const {
  for (size_t j = i; j-- > 0;)
    if (layers_[j].kind == Kind::kIpv4 || layers_[j].kind == Kind::kIpv6) return &layers_[j];
  return nullptr;
}

// Serializes layer i and everything after it.
Bytes PacketBuilder::serialize(size_t i) const {
  if (i >= layers_.size()) return {};
  const Layer& l = layers_[i];
  Bytes rest = serialize(i + 1);
  Bytes out;

  // Pseudo-header sum for TCP/UDP/ICMPv6 checksums (RFC 793, 768, 8200 §8.1).
  auto pseudoSum = [&](uint8_t proto, size_t len) -> uint32_t {
    const Layer* ip = enclosingIp(i);
    if (!ip) die("L4 layer without an IP layer");
    Bytes ph;
    append(ph, ip->b);
    append(ph, ip->a);
    if (ip->kind == Kind::kIpv4) {
      ph.push_back(0);
      ph.push_back(proto);
      put16(ph, static_cast<uint16_t>(len));
    } else {
      put32(ph, static_cast<uint32_t>(len));
      put32(ph, proto);
    }
    return static_cast<uint16_t>(~internetChecksum(ph));
  };

  switch (l.kind) {
    case Kind::kEth: {
      append(out, l.a);
      append(out, l.b);
      auto et = l.ethertype ? l.ethertype : etherTypeOf(i + 1);
      if (!et) die("Eth: give the ethertype before a Raw layer");
      put16(out, *et);
      break;
    }
    case Kind::kVlan: {
      put16(out, static_cast<uint16_t>(l.u1));
      auto et = l.ethertype ? l.ethertype : etherTypeOf(i + 1);
      if (!et) die("Vlan: give the ethertype before a Raw layer");
      put16(out, *et);
      break;
    }
    case Kind::kIpv4: {
      const Ipv4Opts& o = l.v4;
      size_t hlen = 20 + o.options.size();
      uint8_t ihl = o.ihl ? *o.ihl : static_cast<uint8_t>(hlen / 4);
      out.push_back(static_cast<uint8_t>(((o.version ? *o.version : 4) << 4) | (ihl & 0x0f)));
      out.push_back(o.tos);
      put16(out, o.totLen ? *o.totLen : static_cast<uint16_t>(hlen + rest.size()));
      put16(out, o.id);
      put16(out, o.fragOff);
      out.push_back(o.ttl);
      auto proto = o.proto ? o.proto : ipProtoOf(i + 1);
      if (!proto) die("IPv4: give the protocol before a Raw layer");
      out.push_back(*proto);
      put16(out, 0);
      append(out, l.b);
      append(out, l.a);
      append(out, o.options);
      set16(out, 10, internetChecksum(out));
      break;
    }
    case Kind::kIpv6: {
      const Ipv6Opts& o = l.v6;
      uint32_t vtf = (static_cast<uint32_t>(o.version ? *o.version : 6) << 28) |
                     (static_cast<uint32_t>(o.tc) << 20) | (o.flowLabel & 0xfffff);
      put32(out, vtf);
      put16(out, static_cast<uint16_t>(rest.size()));
      auto nh = o.nextHeader ? o.nextHeader : ipProtoOf(i + 1);
      if (!nh) die("IPv6: give the next header before a Raw layer");
      out.push_back(*nh);
      out.push_back(o.hopLimit);
      append(out, l.b);
      append(out, l.a);
      break;
    }
    case Kind::kIpv6Ext: {
      auto nh = ipProtoOf(i + 1);
      out.push_back(nh ? *nh : 59 /* no next header */);
      if (l.u1 == 44) {  // fragment header: fixed 8 bytes
        out.push_back(0);
        put16(out, static_cast<uint16_t>(l.u3));
        put32(out, 0x01020304);  // identification
      } else if (l.u1 == 43) {  // routing header: type, segments left, then zeros
        out.push_back(static_cast<uint8_t>(l.u2 / 8 - 1));
        put16(out, static_cast<uint16_t>(l.u3));
        out.resize(out.size() + l.u2 - 4, 0);
      } else {
        out.push_back(static_cast<uint8_t>(l.u2 / 8 - 1));
        // PadN option filling the rest (RFC 8200 §4.2).
        out.push_back(1);
        out.push_back(static_cast<uint8_t>(l.u2 - 4));
        out.resize(l.u2, 0);
      }
      break;
    }
    case Kind::kTcp: {
      put16(out, static_cast<uint16_t>(l.u1 >> 16));
      put16(out, static_cast<uint16_t>(l.u1));
      put32(out, l.u3);
      put32(out, l.u4);
      out.push_back(5 << 4);
      out.push_back(static_cast<uint8_t>(l.u2));
      put16(out, 65535);
      put16(out, 0);
      put16(out, 0);
      Bytes seg = out;
      append(seg, rest);
      set16(out, 16, internetChecksum(seg, pseudoSum(kProtoTcp, seg.size())));
      break;
    }
    case Kind::kUdp: {
      put16(out, static_cast<uint16_t>(l.u1 >> 16));
      put16(out, static_cast<uint16_t>(l.u1));
      put16(out, static_cast<uint16_t>(8 + rest.size()));
      put16(out, 0);
      Bytes seg = out;
      append(seg, rest);
      uint16_t c = internetChecksum(seg, pseudoSum(kProtoUdp, seg.size()));
      set16(out, 6, c == 0 ? 0xffff : c);  // RFC 768: 0 means "no checksum"
      break;
    }
    case Kind::kIcmp:
    case Kind::kIcmp6: {
      out.push_back(static_cast<uint8_t>(l.u1));
      out.push_back(static_cast<uint8_t>(l.u2));
      put16(out, 0);
      put32(out, l.u3);
      Bytes msg = out;
      append(msg, rest);
      uint32_t init = l.kind == Kind::kIcmp6 ? pseudoSum(kProtoIcmp6, msg.size()) : 0;
      set16(out, 2, internetChecksum(msg, init));
      break;
    }
    case Kind::kRaw:
      out = l.a;
      break;
  }
  append(out, rest);
  return out;
}

Bytes PacketBuilder::build() const { return serialize(0); }

}  // namespace keel::test

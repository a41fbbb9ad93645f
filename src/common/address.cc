// SPDX-License-Identifier: Apache-2.0
#include "common/address.h"

#include <arpa/inet.h>

#include <cstdio>
#include <cstring>

#include "common/text.h"

namespace keel {

std::optional<IpAddress> IpAddress::parse(std::string_view text) {
  std::string s(text);
  IpAddress a;
  if (s.find(':') != std::string::npos) {
    if (inet_pton(AF_INET6, s.c_str(), a.bytes_.data()) != 1) return std::nullopt;
    a.family_ = KEEL_AF_INET6;
  } else {
    if (inet_pton(AF_INET, s.c_str(), a.bytes_.data()) != 1) return std::nullopt;
    a.family_ = KEEL_AF_INET;
  }
  return a;
}

std::optional<IpPrefix> IpPrefix::parse(std::string_view text, bool lengthOptional) {
  const size_t slash = text.find('/');
  if (slash == std::string_view::npos && !lengthOptional) return std::nullopt;
  auto a = IpAddress::parse(text.substr(0, slash));
  if (!a) return std::nullopt;
  const unsigned bits = a->isV4() ? 32 : 128;
  unsigned len = bits;
  if (slash != std::string_view::npos) {
    // No leading zeros ("/08"), as every number keel reads (parseDecimal).
    const std::optional<uint64_t> l = parseDecimal(text.substr(slash + 1));
    if (!l || *l > bits) return std::nullopt;
    len = static_cast<unsigned>(*l);
  }
  return IpPrefix{*a, static_cast<uint8_t>(len)};
}

bool IpPrefix::lengthHasLeadingZero(std::string_view text) {
  const size_t slash = text.find('/');
  return slash != std::string_view::npos && leadingZero(text.substr(slash + 1));
}

std::array<uint8_t, 16> IpPrefix::maskBytes() const {
  std::array<uint8_t, 16> m{};
  for (unsigned i = 0; i < m.size(); i++) {
    const unsigned have = length > i * 8 ? length - i * 8 : 0;
    m[i] = static_cast<uint8_t>(have >= 8 ? 0xff : (0xff00 >> have) & 0xff);
  }
  return m;
}

IpAddress IpAddress::fromV4(std::array<uint8_t, 4> b) {
  IpAddress a;
  a.family_ = KEEL_AF_INET;
  std::memcpy(a.bytes_.data(), b.data(), 4);
  return a;
}

IpAddress IpAddress::fromV6(std::array<uint8_t, 16> b) {
  IpAddress a;
  a.family_ = KEEL_AF_INET6;
  a.bytes_ = b;
  return a;
}

void IpAddress::toWords(__u32 out[4]) const { std::memcpy(out, bytes_.data(), 16); }

IpAddress IpAddress::fromWords(const __u32 words[4], uint8_t family) {
  std::array<uint8_t, 16> b{};
  std::memcpy(b.data(), words, 16);
  return family == KEEL_AF_INET ? fromV4({b[0], b[1], b[2], b[3]}) : fromV6(b);
}

std::string IpAddress::withPort(uint16_t port) const {
  const std::string a = toString();
  return (isV6() ? "[" + a + "]" : a) + ":" + std::to_string(port);
}

std::string IpAddress::toString() const {
  char buf[INET6_ADDRSTRLEN] = {};
  if (family_ == KEEL_AF_INET) {
    inet_ntop(AF_INET, bytes_.data(), buf, sizeof buf);
  } else if (family_ == KEEL_AF_INET6) {
    inet_ntop(AF_INET6, bytes_.data(), buf, sizeof buf);
  } else {
    return "<unset>";
  }
  return buf;
}

std::optional<MacAddress> MacAddress::parse(std::string_view text) {
  if (text.size() != 17) return std::nullopt;
  std::array<uint8_t, 6> b{};
  for (size_t i = 0; i < 6; ++i) {
    auto hex = [](char c) -> int {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      if (c >= 'A' && c <= 'F') return c - 'A' + 10;
      return -1;
    };
    int hi = hex(text[i * 3]), lo = hex(text[i * 3 + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    if (i < 5 && text[i * 3 + 2] != ':') return std::nullopt;
    b[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return MacAddress(b);
}

bool IpAddress::isLinkLocal() const {
  const auto& b = bytes();
  return isV4() ? b[0] == 169 && b[1] == 254 : isV6() && b[0] == 0xfe && (b[1] & 0xc0) == 0x80;
}

std::string serviceAddressProblem(const IpAddress& a, bool vip) {
  const auto& b = a.bytes();
  if (a.isV4()) {
    if (b[0] == 0 && b[1] == 0 && b[2] == 0 && b[3] == 0) return "the unspecified address";
    if (b[0] == 0) return "an address of 0.0.0.0/8 (\"this network\": a source only, never a destination, RFC 1122)";
    if (b[0] >= 224 && b[0] <= 239) return "a multicast address";
    if (b[0] == 255 && b[1] == 255 && b[2] == 255 && b[3] == 255) return "the broadcast address";
    if (b[0] >= 240) return "a reserved address (240.0.0.0/4: routers and hosts drop it)";
    if (vip && b[0] == 127) return "a loopback address";
    if (vip && a.isLinkLocal()) return "a link-local address";
    return {};
  }
  if (!a.isV6()) return {};
  bool zero10 = true;
  for (int i = 0; i < 10; ++i) zero10 = zero10 && b[i] == 0;
  bool allZero = zero10;
  for (int i = 10; i < 16; ++i) allZero = allZero && b[i] == 0;
  if (allZero) return "the unspecified address";
  if (b[0] == 0xff) return "a multicast address";
  if (zero10 && b[10] == 0xff && b[11] == 0xff) return "an IPv4-mapped IPv6 address (use the IPv4 address)";
  // ::a.b.c.d but :: and ::1: IPv4-compatible, deprecated (RFC 4291 2.5.5.1).
  const bool zero12 = zero10 && b[10] == 0 && b[11] == 0;
  const bool loopback = zero12 && b[12] == 0 && b[13] == 0 && b[14] == 0 && b[15] == 1;
  if (zero12 && !loopback)
    return "an IPv4-compatible IPv6 address (::a.b.c.d, deprecated by RFC 4291: use the IPv4 address)";
  if (vip) {
    if (loopback) return "a loopback address";
    if (a.isLinkLocal()) return "a link-local address";
  }
  return {};
}

std::string ipipRealProblem(const IpAddress& a) {
  if (!a.isLinkLocal()) return {};
  return "ipip to a link-local real: the tunnelled packet goes to the router (node.next_hop_mac), which "
         "need not forward to link-local addresses (RFC 3927, RFC 4291: most routers drop them); give the real "
         "a routable address, or use l2dsr";
}

bool MacAddress::isZero() const {
  for (uint8_t b : bytes_)
    if (b) return false;
  return true;
}

std::string MacAddress::toString() const {
  char buf[18];
  std::snprintf(buf, sizeof buf, "%02x:%02x:%02x:%02x:%02x:%02x", bytes_[0], bytes_[1], bytes_[2],
                bytes_[3], bytes_[4], bytes_[5]);
  return buf;
}

}  // namespace keel

// SPDX-License-Identifier: Apache-2.0
// IP and MAC address value types shared by the control plane, the data
// planes and the CLI. Parsing never throws: it returns std::nullopt and the
// caller reports what was wrong and where.
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "keel/flow.h"

namespace keel {

class IpAddress {
 public:
  IpAddress() = default;
  static std::optional<IpAddress> parse(std::string_view text);
  static IpAddress fromV4(std::array<uint8_t, 4> bytes);
  static IpAddress fromV6(std::array<uint8_t, 16> bytes);

  bool isV4() const { return family_ == KEEL_AF_INET; }
  bool isV6() const { return family_ == KEEL_AF_INET6; }
  // 169.254.0.0/16 or fe80::/10 (RFC 3927, RFC 4291): an IPv6 one needs an
  // interface (a scope) to bind or connect to; no router forwards either.
  bool isLinkLocal() const;
  uint8_t family() const { return family_; }  // KEEL_AF_INET / KEEL_AF_INET6, 0 if unset
  // Network-order bytes; IPv4 uses the first 4, the rest are zero.
  const std::array<uint8_t, 16>& bytes() const { return bytes_; }
  // The data-plane layout (include/keel/flow.h): 4 words of raw bytes.
  void toWords(__u32 out[4]) const;
  // Back from that layout: family KEEL_AF_INET reads the first 4 bytes,
  // any other value all 16 as IPv6 (callers check the family first).
  static IpAddress fromWords(const __u32 words[4], uint8_t family);
  std::string toString() const;
  // "ADDR:PORT", an IPv6 address in brackets ("[::1]:9477"), as in a URL.
  std::string withPort(uint16_t port) const;

  auto operator<=>(const IpAddress&) const = default;

 private:
  uint8_t family_ = 0;
  std::array<uint8_t, 16> bytes_{};
};

// An address and a prefix length: "ADDR/LEN".
struct IpPrefix {
  IpAddress address;  // as written (host bits not cleared)
  uint8_t length = 0;
  // "ADDR/LEN", or (lengthOptional) "ADDR" alone for the whole address;
  // nullopt if malformed, LEN is beyond the family's bits or has a leading
  // zero ("/08").
  static std::optional<IpPrefix> parse(std::string_view text, bool lengthOptional = false);
  // Whether text's length after the '/' has a leading zero ("/08"): the
  // refusal of parse() a message should explain (kLeadingZeroNote).
  static bool lengthHasLeadingZero(std::string_view text);
  // Network-order mask bytes of `length` (IPv4: the first 4).
  std::array<uint8_t, 16> maskBytes() const;
};

// Why `a` cannot be a service's VIP (vip) or a real's address, or empty:
// addresses no client sends a service's packets to or no real answers from.
// Both: unspecified (0.0.0.0, ::), the rest of 0.0.0.0/8 and 240.0.0.0/4
// (never a destination; keel-decap does not deliver to them either),
// multicast, the IPv4 limited broadcast, IPv4-mapped and IPv4-compatible
// IPv6 (::ffff:a.b.c.d carries the IPv4 address; ::a.b.c.d is deprecated,
// RFC 4291). A VIP also
// not loopback nor link-local. (A real may be loopback: health-check tests
// and single-host labs use it.)
std::string serviceAddressProblem(const IpAddress& a, bool vip);
// Why `a` should not be an ipip real, or empty: a link-local address
// (169.254.0.0/16, fe80::/10). The tunnelled packet goes to the router
// (node.next_hop_mac), and routers do not forward to link-local
// destinations (RFC 3927 2.7, RFC 4291 2.5.6); l2dsr reaches such a real,
// on the balancer's link.
std::string ipipRealProblem(const IpAddress& a);

class MacAddress {
 public:
  MacAddress() = default;
  explicit MacAddress(std::array<uint8_t, 6> b) : bytes_(b) {}
  static std::optional<MacAddress> parse(std::string_view text);  // "02:00:00:00:00:01"
  const std::array<uint8_t, 6>& bytes() const { return bytes_; }
  bool isZero() const;
  // A group (multicast or broadcast) address: the I/G bit of the first byte.
  bool isGroup() const { return bytes_[0] & 1; }
  // An address a frame can be sent to one host at: neither zero nor group
  // (what a real's MAC, given or read from the neighbour table, must be).
  bool isUnicast() const { return !isZero() && !isGroup(); }
  std::string toString() const;
  auto operator<=>(const MacAddress&) const = default;

 private:
  std::array<uint8_t, 6> bytes_{};
};

}  // namespace keel

template <>
struct std::hash<keel::IpAddress> {
  size_t operator()(const keel::IpAddress& a) const noexcept {
    size_t h = a.family();
    for (uint8_t b : a.bytes()) h = h * 131 + b;
    return h;
  }
};

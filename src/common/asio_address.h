// SPDX-License-Identifier: Apache-2.0
// IpAddress as Boost.Asio's address type, for the parts of keeld that open
// sockets with Asio (health probes, the metrics endpoint). Header-only, so
// common/ itself does not depend on Boost.
#pragma once

#include <algorithm>
#include <boost/asio/ip/address.hpp>

#include "common/address.h"

namespace keel {

inline boost::asio::ip::address toAsio(const IpAddress& a) {
  if (a.isV4()) {
    boost::asio::ip::address_v4::bytes_type b;
    std::copy_n(a.bytes().begin(), 4, b.begin());
    return boost::asio::ip::address_v4(b);
  }
  boost::asio::ip::address_v6::bytes_type b;
  std::copy_n(a.bytes().begin(), 16, b.begin());
  return boost::asio::ip::address_v6(b);
}

// Back: an IPv4 address as IPv4, any other as IPv6 (a v4-mapped one stays
// IPv6, as toAsio gave it).
inline IpAddress fromAsio(const boost::asio::ip::address& a) {
  if (a.is_v4()) return IpAddress::fromV4(a.to_v4().to_bytes());
  return IpAddress::fromV6(a.to_v6().to_bytes());
}

}  // namespace keel

// SPDX-License-Identifier: Apache-2.0
// Config builders shared by the registry tests (registry_test.cc,
// registry_adopt_test.cc).
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "control/config.h"

namespace keel::test {

inline IpAddress ip(const char* s) { return *IpAddress::parse(s); }

inline RealConfig real(const char* addr, uint32_t weight = 100) {
  RealConfig r;
  r.address = ip(addr);
  r.weight = weight;
  return r;
}

// Small prime ring: the registry passes ring_size through to Maglev, which
// accepts any prime; the config layer is what restricts it to 65537/655373.
inline ServiceConfig service(const char* name, const char* vip, uint16_t port,
                             std::vector<RealConfig> reals) {
  ServiceConfig s;
  s.name = name;
  s.vip = ip(vip);
  s.port = port;
  s.protocol = KEEL_PROTO_TCP;
  s.ringSize = 13;
  s.reals = std::move(reals);
  return s;
}

inline Config config(std::vector<ServiceConfig> services) {
  Config c;
  c.services = std::move(services);
  return c;
}

}  // namespace keel::test

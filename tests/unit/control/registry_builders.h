// SPDX-License-Identifier: Apache-2.0
// Config builders shared by the registry tests (registry_test.cc,
// registry_adopt_test.cc) and metrics_test.cc.
#pragma once

#include <arpa/inet.h>

#include <cstdint>
#include <utility>
#include <vector>

#include "control/config.h"
#include "keel/flow.h"

namespace keel::test {

inline IpAddress ip(const char* s) { return *IpAddress::parse(s); }

// The connection-table key of an IPv4 flow (ports in host order here).
inline keel_flow_key flowKey(const char* client, uint16_t sport, const char* vip, uint16_t dport,
                             uint8_t proto = KEEL_PROTO_TCP) {
  keel_flow_key k{};
  ip(client).toWords(k.src);
  ip(vip).toWords(k.dst);
  k.sport = htons(sport);
  k.dport = htons(dport);
  k.proto = proto;
  k.family = KEEL_AF_INET;
  return k;
}

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

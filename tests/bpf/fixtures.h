// SPDX-License-Identifier: Apache-2.0
// Fixture tables shared by every data plane's packet tests.
//
// The state a table needs is plain data (ABI structs from
// include/keel/maps_abi.h), so the XDP tests (tests/bpf) and the DPDK worker
// tests load the SAME state and run the SAME rows:
//   Verdict::kPass -> XDP_PASS / DPDK exception path, frame unchanged
//   Verdict::kDrop -> XDP_DROP / nothing sent
//   Verdict::kTx   -> XDP_TX   / sent on the port, exactly `expected`
// Every row also names the one reason counter it must bump and, when it is
// forwarded, the service and backend counters.
//
// Rows never depend on connection-table state (every ring they touch has one
// backend, or the expectation is computed from the ring), so they may run in
// any order on one loaded state. Scenarios do depend on it: each starts from
// a freshly loaded fixtureState() and runs its steps in order.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "keel/maps_abi.h"
#include "packet_builder.h"

namespace keel::test {

// Addresses used by the tables.
inline constexpr const char* kLbMac = "02:00:00:00:00:01";      // node local_mac
inline constexpr const char* kRouterMac = "02:00:00:00:00:fe";  // node next_hop_mac, client side
inline constexpr const char* kTunnelSrc4 = "10.0.0.1";
inline constexpr const char* kTunnelSrc6 = "fc00::1";
inline constexpr const char* kClient4 = "192.0.2.10";
inline constexpr const char* kClient6 = "2001:db8::10";

struct ServiceSpec {
  keel_service_key key;
  keel_service_value value;
};

struct BackendSpec {
  uint32_t id;
  keel_backend backend;
};

// A published ring: slots.size() is M (empty: M = 0, "no usable backend").
struct RingSpec {
  uint32_t serviceId;
  std::vector<uint32_t> slots;
};

struct FixtureState {
  keel_node_config node{};
  std::vector<keel_vip_key> vips;
  std::vector<ServiceSpec> services;
  std::vector<BackendSpec> backends;
  std::vector<RingSpec> rings;
};

enum class Verdict { kPass, kDrop, kTx };
const char* verdictName(Verdict v);

struct FixtureRow {
  std::string description;
  Bytes input;
  Verdict verdict;
  keel_reason reason;
  Bytes expected;             // kTx: the frame sent; kPass: the input; kDrop: empty
  int64_t serviceId = -1;     // kTx of a service: its counter moves
  int64_t backendId = -1;     // kTx of a service: this backend's counter moves
};

// State changes applied before a scenario step's packet.
struct ScenarioStep {
  std::string description;
  std::vector<BackendSpec> backendUpdates;
  std::vector<RingSpec> ringUpdates;
  FixtureRow row;
};

struct Scenario {
  std::string name;
  std::vector<ScenarioStep> steps;
};

// The state every table below assumes.
FixtureState fixtureState();

// Independent rows: every verdict of docs/architecture.md in both forwarding
// modes, v4 and v6, TCP and UDP, with and without a VLAN tag.
// A flow's key as the data plane holds it (addresses in network order, ports
// in network order, the family from src).
keel_flow_key flowKey(const std::string& src, const std::string& dst, uint16_t sport, uint16_t dport,
                      uint8_t proto);

std::vector<FixtureRow> fixtureRows();

// Every proper prefix of every forwardable row's input, with the verdict the
// parser must give it (PASS_TRUNCATED before the fixed IP header is complete,
// DROP_TRUNCATED after: by then the VIP is known).
std::vector<FixtureRow> truncationRows();

// Packets over the port MTU `mtu` once encapsulated (and one exactly at it),
// for a port of that MTU: ICMP frag-needed / packet-too-big to the client,
// DROP_TOO_BIG without DF or for an ICMP error. Both planes count the IP
// length against the MTU (bpf_check_mtu's rule), so a VLAN tag does not
// count: a tagged row sits at the limit too.
std::vector<FixtureRow> mtuRows(uint32_t mtu);

// Connection-table behaviour across ring changes, generation bumps, health
// changes, drains and backend-id reuse.
std::vector<Scenario> conntrackScenarios();

// Helpers to build more rows in the same style (used by the model test).
// flowHash: keel_flow_hash() of the packet's flow key, which an IPv6 outer
// header carries as its flow label and a hashed source (hashSrc) is made of.
Bytes ipipExpected(const Bytes& input, size_t l3Off, const keel_node_config& node,
                   const keel_backend& real, uint32_t flowHash, bool hashSrc);
Bytes l2dsrExpected(const Bytes& input, const keel_backend& real);

}  // namespace keel::test

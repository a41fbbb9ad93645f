// SPDX-License-Identifier: Apache-2.0
// What a reload changed, key by key, for its log records: service_updated,
// health_check_changed (Registry::apply) and node_updated (keeld). Keys are
// keel.yaml's names and values are written as the file writes them, so a
// record reads like the lines of the file it came from:
//   event=service_updated service=web changed=scheduler,ring_size scheduler_from=maglev
//   scheduler_to=maglev-src ring_size_from=65537 ring_size_to=655373
// A value that is not set (a check's port or source, node.local_mac) is "".
// Only what differs is listed; nothing changed, nothing to log.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/logging.h"
#include "control/config.h"
#include "control/health/health_spec.h"
#include "keel/maps_abi.h"

namespace keel {

struct KeyChange {
  std::string key;   // keel.yaml's name: "ring_size", "interval", "icmp_too_big_rate"
  std::string from;  // "": not set
  std::string to;
  bool operator==(const KeyChange&) const = default;
};
using KeyChanges = std::vector<KeyChange>;

// Adds changed=KEY,KEY,... then KEY_from=... KEY_to=... for each key, in
// that order: `grep changed=.*ring_size` finds every record that changed
// one, `grep ring_size_to=655373` those that set it.
LogRecord& addChanges(LogRecord& record, const KeyChanges& changes);

// A service kept under its name and key (VIP, port, protocol): forwarding,
// scheduler, ring_size.
KeyChanges serviceChanges(const ServiceConfig& from, const ServiceConfig& to);

// The service-only keys of its health block: all_down, established_on_down.
KeyChanges healthPolicyChanges(const ServiceConfig& from, const ServiceConfig& to);

// A real's resolved check: the keys the new check uses (its type's:
// config.md, "health"), in the order the docs list them (type, port, path,
// host, expect, payload, require_reply, interval, timeout, rise, fall,
// source), each that differs; a key the old check's type did not use
// counts as "" (type none uses only type). Keys only the old type used are
// not listed: the new check has none of them.
KeyChanges healthCheckChanges(const HealthCheckSpec& from, const HealthCheckSpec& to);

// The records of a service kept under its name and key, from `from` to
// `to`: service_updated (serviceChanges), real_weight_changed for each real
// of `to` that `weightBefore` knows (the weight it had; nullopt: a real `to`
// adds, real_added's), and health_check_changed: one for the service when
// every kept real's check changed alike (its health block, usually) or its
// healthPolicyChanges did, else one per real. Registry::apply logs them for
// the changes it writes; keeld's start for what keel.yaml changed while no
// keeld ran.
void logServiceChanges(const ServiceConfig& from, const ServiceConfig& to,
                       const std::function<std::optional<uint32_t>(const IpAddress&)>& weightBefore);

// The node config as the data plane holds it (keeld's buildNodeConfig),
// under node: key names: tunnel_source_v4, tunnel_source_v6, next_hop_mac,
// local_mac (the data plane's own MAC when node.local_mac is not set),
// hash_source_v4, udp_idle_timeout, tcp_idle_timeout, icmp_too_big_rate,
// icmp_too_big_client_rate, tunnel_mtu, conntrack_insert_rate.
KeyChanges nodeChanges(const keel_node_config& from, const keel_node_config& to);

}  // namespace keel

// SPDX-License-Identifier: Apache-2.0
// What a reload changed, for its log records and config.reload's reply.
// Key by key for service_updated, health_check_changed (Registry::apply) and
// node_updated (keeld). Keys are keel.yaml's names and values are written as
// the file writes them, so a record reads like the lines of the file it came
// from:
//   event=service_updated service=web changed=scheduler,ring_size scheduler_from=maglev
//   scheduler_to=maglev-src ring_size_from=65537 ring_size_to=655373
// A value that is not set (a check's port or source, node.local_mac) is "".
// Only what differs is listed; nothing changed, nothing to log.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/address.h"
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

// One change made to what runs, each kind named as its log record is:
// what Registry::apply writes (services and reals added, removed, updated),
// keeld's node: and l2dsr MAC changes, and the intervals a reload applies.
// The one value both ways of saying it are made from: logChange() writes its
// record, changeJson() its item in config.reload's `changes` (docs/api.md),
// so what a reload logs and what it answers cannot disagree.
namespace change {
struct ServiceAdded {  // service_added
  std::string service;
  uint32_t id = 0;  // the data plane's service id: the record's only
  IpAddress vip;
  uint16_t port = 0;
  uint8_t protocol = 0;
  size_t reals = 0;
};
struct ServiceRemoved {  // service_removed
  std::string service;
  uint32_t id = 0;  // the record's only, as ServiceAdded's
};
struct ServiceUpdated {  // service_updated: serviceChanges (a start's comparison: also name)
  std::string service;
  KeyChanges keys;
};
struct RealAdded {  // real_added
  std::string service;
  IpAddress real;
};
struct RealRemoved {  // real_removed
  std::string service;
  IpAddress real;
};
struct RealWeightChanged {  // real_weight_changed (a drain: to 0)
  std::string service;
  IpAddress real;
  uint32_t from = 0, to = 0;
};
// health_check_changed: one real's check (`real`), or the change every one
// of the service's `reals` kept reals shares, with its healthPolicyChanges
// (no `real`; `reals` 0 when only the policy changed).
struct HealthCheckChanged {
  std::string service;
  std::optional<IpAddress> real;
  size_t reals = 0;
  KeyChanges keys;
};
struct RealMacChanged {  // real_mac_changed: an l2dsr real sent to another MAC
  std::string service;
  IpAddress real;
  // none: no MAC (from: held down waiting for one, which keel.yaml's mac:
  // now gives; to: keel.yaml's mac: taken away and the table has none, so
  // held down), written "" as keel.yaml's not set.
  std::optional<MacAddress> from, to;
  bool byTable = false;  // the neighbour table's entry moved (a warning), not keel.yaml's mac:
};
struct NodeUpdated {  // node_updated: nodeChanges
  KeyChanges keys;
};
// upkeep_interval_changed (dataplane.upkeep_interval) or
// flow_count_interval_changed (metrics.flow_count_interval).
struct IntervalChanged {
  std::string event;
  std::string from, to;  // as keel.yaml writes a duration
};
}  // namespace change

using ConfigChange =
    std::variant<change::ServiceAdded, change::ServiceRemoved, change::ServiceUpdated, change::RealAdded,
                 change::RealRemoved, change::RealWeightChanged, change::HealthCheckChanged,
                 change::RealMacChanged, change::NodeUpdated, change::IntervalChanged>;
using ConfigChanges = std::vector<ConfigChange>;

// The change's log record, at its level (info; a MAC the neighbour table
// moved: warn).
void logChange(const ConfigChange& change);
// What every place that makes a change does with it: logChange, then, if
// `changes` is given (a reload collecting its reply's), appends it there.
void noteChange(ConfigChange change, ConfigChanges* changes);
// The change as config.reload's `changes` lists it: {"change": the record's
// event, "service"?, "real"?, then what changed: "keys" [{"key", "from",
// "to"}] (as the record's changed=, KEY_from=, KEY_to=), or "from"/"to"}.
// The record's ids are not in it: the API names services by name.
nlohmann::json changeJson(const ConfigChange& change);

// The changes of a service kept under its name and key, from `from` to
// `to`, in the order they are logged: service_updated (serviceChanges),
// real_weight_changed for each real of `to` that `weightBefore` knows (the
// weight it had; nullopt: a real `to` adds, real_added's), and
// health_check_changed: one for the service when every kept real's check
// changed alike (its health block, usually) or its healthPolicyChanges did,
// else one per real. Registry::apply logs them for the changes it writes
// (and gives them to a reload's reply); keeld's start logs them for what
// keel.yaml changed while no keeld ran.
ConfigChanges keptServiceChanges(const ServiceConfig& from, const ServiceConfig& to,
                                 const std::function<std::optional<uint32_t>(const IpAddress&)>& weightBefore);

// The node config as the data plane holds it (keeld's buildNodeConfig),
// under node: key names: tunnel_source_v4, tunnel_source_v6, next_hop_mac,
// local_mac (the data plane's own MAC when node.local_mac is not set),
// hash_source_v4, udp_idle_timeout, tcp_idle_timeout, icmp_too_big_rate,
// icmp_too_big_client_rate, tunnel_mtu, conntrack_insert_rate.
KeyChanges nodeChanges(const keel_node_config& from, const keel_node_config& to);

}  // namespace keel

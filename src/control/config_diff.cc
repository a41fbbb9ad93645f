// SPDX-License-Identifier: Apache-2.0
#include "control/config_diff.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cstring>
#include <map>
#include <utility>
#include <variant>

#include "common/duration.h"

namespace keel {

namespace {

void compare(KeyChanges& out, const char* key, std::string from, std::string to) {
  if (from != to) out.push_back({key, std::move(from), std::move(to)});
}

// The keys a check of its type uses, with their values as keel.yaml writes
// them (health_yaml.h says which type uses which).
std::vector<std::pair<const char*, std::string>> checkKeys(const HealthCheckSpec& s) {
  using Type = HealthCheckSpec::Type;
  std::vector<std::pair<const char*, std::string>> keys{{"type", toString(s.type)}};
  if (s.type == Type::None) return keys;  // sends nothing: the rest means nothing
  keys.emplace_back("port", s.port == 0 ? "" : std::to_string(s.port));  // "": the service's port
  if (s.type == Type::Http) {
    keys.emplace_back("path", s.path);
    keys.emplace_back("host", s.host);
    keys.emplace_back("expect", s.statusMin == s.statusMax
                                    ? std::to_string(s.statusMin)
                                    : std::to_string(s.statusMin) + "-" + std::to_string(s.statusMax));
  }
  if (s.type == Type::Udp) {
    keys.emplace_back("expect", s.udpExpect);
    keys.emplace_back("payload", s.udpPayload);
    keys.emplace_back("require_reply", s.udpRequireReply ? "true" : "false");
  }
  keys.emplace_back("interval", formatDurationText(s.interval));
  keys.emplace_back("timeout", formatDurationText(s.timeout));
  keys.emplace_back("rise", std::to_string(s.rise));
  keys.emplace_back("fall", std::to_string(s.fall));
  keys.emplace_back("source", s.source ? s.source->toString() : "");
  return keys;
}

std::string v4(__u32 networkOrder) {
  if (networkOrder == 0) return "";
  const __u32 words[4] = {networkOrder, 0, 0, 0};
  return IpAddress::fromWords(words, KEEL_AF_INET).toString();
}

std::string v6(const __u32 words[4]) {
  if ((words[0] | words[1] | words[2] | words[3]) == 0) return "";
  return IpAddress::fromWords(words, KEEL_AF_INET6).toString();
}

std::string mac(const __u8 bytes[6]) {
  std::array<uint8_t, 6> b{};
  std::memcpy(b.data(), bytes, 6);
  const MacAddress m(b);
  return m.isZero() ? "" : m.toString();
}

std::string hashSource(const keel_node_config& n) {
  if (!(n.flags & KEEL_NODE_F_HASH_SRC_V4)) return "";
  return v4(n.hash_src_v4_prefix) + "/" + std::to_string(std::popcount(n.hash_src_v4_mask));
}

std::string hashSource6(const keel_node_config& n) {
  if (!(n.flags & KEEL_NODE_F_HASH_SRC_V6)) return "";
  const __u32 words[4] = {n.hash_src_v6_prefix[0], n.hash_src_v6_prefix[1], n.hash_src_v6_prefix[2], 0};
  return IpAddress::fromWords(words, KEEL_AF_INET6).toString() + "/96";
}

std::string seconds(__u32 s) { return formatDurationText(std::chrono::seconds(s)); }

}  // namespace

LogRecord& addChanges(LogRecord& record, const KeyChanges& changes) {
  std::string keys;
  for (const KeyChange& c : changes) keys += (keys.empty() ? "" : ",") + c.key;
  record.add("changed", keys);
  for (const KeyChange& c : changes) record.add(c.key + "_from", c.from).add(c.key + "_to", c.to);
  return record;
}

KeyChanges serviceChanges(const ServiceConfig& from, const ServiceConfig& to) {
  KeyChanges out;
  compare(out, "forwarding", std::string(toString(from.forwarding)), std::string(toString(to.forwarding)));
  compare(out, "scheduler", std::string(toString(from.scheduler)), std::string(toString(to.scheduler)));
  compare(out, "ring_size", std::to_string(from.ringSize), std::to_string(to.ringSize));
  return out;
}

KeyChanges healthPolicyChanges(const ServiceConfig& from, const ServiceConfig& to) {
  KeyChanges out;
  auto allDown = [](bool open) { return open ? "fail-open" : "fail-closed"; };
  auto onDown = [](bool keep) { return keep ? "keep" : "repick"; };
  compare(out, "all_down", allDown(from.healthFailOpen), allDown(to.healthFailOpen));
  compare(out, "established_on_down", onDown(from.healthKeepEstablished), onDown(to.healthKeepEstablished));
  return out;
}

KeyChanges healthCheckChanges(const HealthCheckSpec& from, const HealthCheckSpec& to) {
  KeyChanges out;
  if (from == to) return out;
  const auto was = checkKeys(from);
  for (auto& [key, value] : checkKeys(to)) {
    std::string old;
    for (const auto& [k, v] : was)
      if (std::string_view(k) == key) old = v;
    compare(out, key, std::move(old), std::move(value));
  }
  return out;
}

KeyChanges nodeChanges(const keel_node_config& from, const keel_node_config& to) {
  static_assert(sizeof(keel_node_config) == 80, "a new node field: compare it here too");
  KeyChanges out;
  compare(out, "tunnel_source_v4", v4(from.tunnel_src_v4), v4(to.tunnel_src_v4));
  compare(out, "tunnel_source_v6", v6(from.tunnel_src_v6), v6(to.tunnel_src_v6));
  compare(out, "next_hop_mac", mac(from.next_hop_mac), mac(to.next_hop_mac));
  compare(out, "local_mac", mac(from.local_mac), mac(to.local_mac));
  compare(out, "hash_source_v4", hashSource(from), hashSource(to));
  compare(out, "udp_idle_timeout", seconds(from.udp_idle_timeout_s), seconds(to.udp_idle_timeout_s));
  compare(out, "tcp_idle_timeout", seconds(from.tcp_idle_timeout_s), seconds(to.tcp_idle_timeout_s));
  compare(out, "icmp_too_big_rate", std::to_string(from.icmp_too_big_rate), std::to_string(to.icmp_too_big_rate));
  compare(out, "icmp_too_big_client_rate", std::to_string(from.icmp_too_big_client_rate),
          std::to_string(to.icmp_too_big_client_rate));
  compare(out, "tunnel_mtu", std::to_string(from.tunnel_mtu), std::to_string(to.tunnel_mtu));
  compare(out, "conntrack_insert_rate", std::to_string(from.conntrack_insert_rate),
          std::to_string(to.conntrack_insert_rate));
  compare(out, "hash_source_v6", hashSource6(from), hashSource6(to));
  return out;
}

ConfigChanges keptServiceChanges(const ServiceConfig& from, const ServiceConfig& to,
                                 const std::function<std::optional<uint32_t>(const IpAddress&)>& weightBefore) {
  ConfigChanges out;
  const std::string& name = to.name;
  if (KeyChanges c = serviceChanges(from, to); !c.empty()) out.push_back(change::ServiceUpdated{name, std::move(c)});
  std::map<IpAddress, const RealConfig*> was;
  for (const RealConfig& rc : from.reals) was.emplace(rc.address, &rc);
  // A check change is per real (the service's block and the real's own
  // resolve to its check); the one every real the service keeps shares (a
  // change of the service's block, usually) is one record, not one a real.
  std::vector<std::pair<IpAddress, KeyChanges>> checks;
  size_t kept = 0;
  for (const RealConfig& rc : to.reals) {
    const std::optional<uint32_t> weight = weightBefore(rc.address);
    if (!weight) continue;  // added
    ++kept;
    if (*weight != rc.weight) out.push_back(change::RealWeightChanged{name, rc.address, *weight, rc.weight});
    auto old = was.find(rc.address);
    if (old == was.end()) continue;
    if (KeyChanges c = healthCheckChanges(old->second->healthSpec, rc.healthSpec); !c.empty())
      checks.emplace_back(rc.address, std::move(c));
  }
  KeyChanges serviceWide = healthPolicyChanges(from, to);
  const bool shared = kept > 1 && checks.size() == kept &&
                      std::all_of(checks.begin(), checks.end(), [&](const auto& c) { return c.second == checks[0].second; });
  if (shared) {
    serviceWide.insert(serviceWide.end(), checks[0].second.begin(), checks[0].second.end());
    checks.clear();
  }
  if (!serviceWide.empty())
    out.push_back(change::HealthCheckChanged{name, std::nullopt, shared ? kept : 0, std::move(serviceWide)});
  for (auto& [addr, c] : checks) out.push_back(change::HealthCheckChanged{name, addr, 0, std::move(c)});
  return out;
}

namespace {

template <class... F>
struct Overloaded : F... {
  using F::operator()...;
};
template <class... F>
Overloaded(F...) -> Overloaded<F...>;

nlohmann::json keysJson(const KeyChanges& keys) {
  nlohmann::json out = nlohmann::json::array();
  for (const KeyChange& k : keys) out.push_back({{"key", k.key}, {"from", k.from}, {"to", k.to}});
  return out;
}

}  // namespace

// The two ways of saying a change, beside each other: a field one of them
// gains, the other should say too (or say why not, as the ids).
void logChange(const ConfigChange& change) {
  std::visit(Overloaded{
                 [](const change::ServiceAdded& c) {
                   logInfo(LogRecord("service_added")
                               .add("service", c.service)
                               .add("id", c.id)
                               .add("vip", c.vip.toString())
                               .add("port", c.port)
                               .add("proto", protocolName(c.protocol))
                               .add("reals", c.reals));
                 },
                 [](const change::ServiceRemoved& c) {
                   logInfo(LogRecord("service_removed").add("service", c.service).add("id", c.id));
                 },
                 [](const change::ServiceUpdated& c) {
                   LogRecord rec("service_updated");
                   rec.add("service", c.service);
                   logInfo(addChanges(rec, c.keys));
                 },
                 [](const change::RealAdded& c) {
                   logInfo(LogRecord("real_added").add("service", c.service).add("real", c.real.toString()));
                 },
                 [](const change::RealRemoved& c) {
                   logInfo(LogRecord("real_removed").add("service", c.service).add("real", c.real.toString()));
                 },
                 [](const change::RealWeightChanged& c) {
                   logInfo(LogRecord("real_weight_changed")
                               .add("service", c.service)
                               .add("real", c.real.toString())
                               .add("from", c.from)
                               .add("to", c.to));
                 },
                 [](const change::HealthCheckChanged& c) {
                   LogRecord rec("health_check_changed");
                   rec.add("service", c.service);
                   if (c.real) rec.add("real", c.real->toString());
                   if (c.reals) rec.add("reals", c.reals);
                   logInfo(addChanges(rec, c.keys));
                 },
                 [](const change::RealMacChanged& c) {
                   LogRecord rec("real_mac_changed");
                   rec.add("service", c.service)
                       .add("real", c.real.toString())
                       .add("from", c.from ? c.from->toString() : std::string())
                       .add("mac", c.to ? c.to->toString() : std::string());
                   if (c.byTable)
                     logWarn(rec.add("detail", "the neighbour table's entry names another MAC; l2dsr sends there now"));
                   else if (!c.to)
                     logWarn(rec.add("detail", "keel.yaml gives no mac for it now and the neighbour table has none: "
                                               "held down until one is found"));
                   else if (!c.from)
                     logInfo(rec.add("detail", "keel.yaml gives its mac now (it was held down waiting for one); "
                                               "l2dsr sends there"));
                   else
                     logInfo(rec.add("detail", "keel.yaml's mac for it is another; l2dsr sends there now"));
                 },
                 [](const change::NodeUpdated& c) {
                   LogRecord rec("node_updated");
                   logInfo(addChanges(rec, c.keys));
                 },
                 [](const change::IntervalChanged& c) {
                   logInfo(LogRecord(c.event).add("from", c.from).add("to", c.to));
                 },
             },
             change);
}

void noteChange(ConfigChange change, ConfigChanges* changes) {
  logChange(change);
  if (changes) changes->push_back(std::move(change));
}

nlohmann::json changeJson(const ConfigChange& change) {
  using nlohmann::json;
  return std::visit(
      Overloaded{
          [](const change::ServiceAdded& c) {
            return json{{"change", "service_added"},
                        {"service", c.service},
                        {"vip", c.vip.toString()},
                        {"port", c.port},
                        {"protocol", std::string(protocolName(c.protocol))},
                        {"reals", c.reals}};
          },
          [](const change::ServiceRemoved& c) { return json{{"change", "service_removed"}, {"service", c.service}}; },
          [](const change::ServiceUpdated& c) {
            return json{{"change", "service_updated"}, {"service", c.service}, {"keys", keysJson(c.keys)}};
          },
          [](const change::RealAdded& c) {
            return json{{"change", "real_added"}, {"service", c.service}, {"real", c.real.toString()}};
          },
          [](const change::RealRemoved& c) {
            return json{{"change", "real_removed"}, {"service", c.service}, {"real", c.real.toString()}};
          },
          [](const change::RealWeightChanged& c) {
            return json{{"change", "real_weight_changed"},
                        {"service", c.service},
                        {"real", c.real.toString()},
                        {"from", c.from},
                        {"to", c.to}};
          },
          [](const change::HealthCheckChanged& c) {
            json j{{"change", "health_check_changed"}, {"service", c.service}};
            if (c.real) j["real"] = c.real->toString();
            if (c.reals) j["reals"] = c.reals;
            j["keys"] = keysJson(c.keys);
            return j;
          },
          [](const change::RealMacChanged& c) {
            return json{{"change", "real_mac_changed"},
                        {"service", c.service},
                        {"real", c.real.toString()},
                        {"from", c.from ? c.from->toString() : std::string()},
                        {"to", c.to ? c.to->toString() : std::string()}};
          },
          [](const change::NodeUpdated& c) { return json{{"change", "node_updated"}, {"keys", keysJson(c.keys)}}; },
          [](const change::IntervalChanged& c) { return json{{"change", c.event}, {"from", c.from}, {"to", c.to}}; },
      },
      change);
}

}  // namespace keel

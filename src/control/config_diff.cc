// SPDX-License-Identifier: Apache-2.0
#include "control/config_diff.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cstring>
#include <map>
#include <utility>

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
  static_assert(sizeof(keel_node_config) == 68, "a new node field: compare it here too");
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
  return out;
}

void logServiceChanges(const ServiceConfig& from, const ServiceConfig& to,
                       const std::function<std::optional<uint32_t>(const IpAddress&)>& weightBefore) {
  const std::string& name = to.name;
  if (KeyChanges c = serviceChanges(from, to); !c.empty()) {
    LogRecord rec("service_updated");
    rec.add("service", name);
    logInfo(addChanges(rec, c));
  }
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
    if (*weight != rc.weight)
      logInfo(LogRecord("real_weight_changed")
                  .add("service", name)
                  .add("real", rc.address.toString())
                  .add("from", *weight)
                  .add("to", rc.weight));
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
  if (!serviceWide.empty()) {
    LogRecord rec("health_check_changed");
    rec.add("service", name);
    if (shared) rec.add("reals", kept);
    logInfo(addChanges(rec, serviceWide));
  }
  for (const auto& [addr, c] : checks) {
    LogRecord rec("health_check_changed");
    rec.add("service", name).add("real", addr.toString());
    logInfo(addChanges(rec, c));
  }
}

}  // namespace keel

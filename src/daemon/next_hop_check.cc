// SPDX-License-Identifier: Apache-2.0
#include "daemon/next_hop_check.h"

#include <algorithm>
#include <utility>

#include "common/logging.h"
#include "common/text.h"

namespace keel {
namespace {

int familyOf(const IpAddress& a) { return a.isV4() ? 4 : 6; }
const char* familyLabel(int family) { return family == 4 ? "ipv4" : "ipv6"; }

constexpr const char* kMismatchDetail =
    "keel sends every ipip frame of this family to node.next_hop_mac, which is not the MAC of the router the "
    "kernel routes the reals through: those frames may be lost (keel counts them forwarded). Set "
    "node.next_hop_mac to the router's MAC and reload; keeld does not change it by itself";

}  // namespace

void NextHopCheck::refreshRoutes(const std::set<IpAddress>& reals, const RouteSources& sources,
                                 std::chrono::steady_clock::time_point now) {
  // Other sources (a reload): every route is due again, oldest first within
  // the budget as any refresh; the hops known meanwhile stay, so a family
  // is never judged on part of its reals.
  if (sources != cachedFrom_)
    for (auto& [address, cached] : cache_) cached.at = std::min(cached.at, now - kRouteRefresh);
  cachedFrom_ = sources;
  std::erase_if(cache_, [&](const auto& entry) { return !reals.count(entry.first); });
  // New reals first (their gateway is unknown), then those looked up
  // longest ago, once kRouteRefresh old; kRouteLookupsPerRun at most.
  std::vector<IpAddress> ask;
  for (const IpAddress& a : reals) {
    if (ask.size() == kRouteLookupsPerRun) break;
    if (!cache_.count(a)) ask.push_back(a);
  }
  if (ask.size() < kRouteLookupsPerRun) {
    std::vector<std::pair<std::chrono::steady_clock::time_point, IpAddress>> stale;
    for (const auto& [a, cached] : cache_)
      if (now - cached.at >= kRouteRefresh) stale.emplace_back(cached.at, a);
    const size_t take = std::min(stale.size(), kRouteLookupsPerRun - ask.size());
    std::partial_sort(stale.begin(), stale.begin() + static_cast<std::ptrdiff_t>(take), stale.end());
    for (size_t i = 0; i < take; ++i) ask.push_back(stale[i].second);
  }
  if (ask.empty()) return;
  routeLookups_ += ask.size();
  const std::map<IpAddress, RouteHop> found = routes_(ask, sources);
  for (const IpAddress& a : ask) {
    auto it = found.find(a);
    cache_[a] = CachedRoute{it == found.end() ? std::nullopt : std::optional<RouteHop>(it->second), now};
  }
}

void NextHopCheck::run(const Config& config, const std::string& interface, std::chrono::steady_clock::time_point now) {
  std::set<IpAddress> reals;
  for (const ServiceConfig& svc : config.services)
    if (svc.forwarding == Forwarding::kIpip)
      for (const RealConfig& r : svc.reals) reals.insert(r.address);
  std::set<int> present;
  for (const IpAddress& a : reals) present.insert(familyOf(a));
  std::erase_if(families_, [&](const auto& entry) { return !present.count(entry.first); });
  if (!routes_ || !neighbours_ || !config.node.nextHopMac || interface.empty()) {
    cache_.clear();
    families_.clear();
    return;
  }
  refreshRoutes(reals, RouteSources{config.node.tunnelSourceV4, config.node.tunnelSourceV6}, now);
  // The data plane's interfaces: a VLAN trunk's routes leave through
  // eth0.100, on the data plane's wire all the same.
  const std::vector<std::string> uppers = interfacesOn_ ? interfacesOn_(interface) : std::vector<std::string>{};
  std::set<std::string> ours(uppers.begin(), uppers.end());
  ours.insert(interface);
  const std::string named = interfacesNamed(interface, uppers);

  // What the cached routes say, per family.
  struct Seen {
    std::map<IpAddress, std::string> gateways;  // of routes through one of `ours`, with it
    bool noRoute = false;
    std::set<std::string> onLink;     // those of `ours` routes without a gateway leave by
    std::set<std::string> elsewhere;  // other output interfaces
  };
  std::map<int, Seen> seen;
  std::vector<IpAddress> gateways;
  for (const IpAddress& a : reals) {
    auto it = cache_.find(a);
    if (it == cache_.end()) continue;  // not looked up yet (past a run's budget)
    Seen& s = seen[familyOf(a)];
    const std::optional<RouteHop>& hop = it->second.hop;
    if (!hop)
      s.noRoute = true;
    else if (!ours.count(hop->interface))
      s.elsewhere.insert(hop->interface.empty() ? std::string("an unnamed interface") : hop->interface);
    else if (!hop->gateway)
      s.onLink.insert(hop->interface);
    else if (s.gateways.emplace(*hop->gateway, hop->interface).second)
      gateways.push_back(*hop->gateway);
  }
  const std::map<IpAddress, MacAddress> entries =
      gateways.empty() ? std::map<IpAddress, MacAddress>{} : neighbours_(gateways, interface);
  const MacAddress& want = *config.node.nextHopMac;

  for (int fam : present) {
    Family& f = families_[fam];  // shown from now on (0 until a mismatch)
    auto found = seen.find(fam);
    if (found == seen.end()) continue;  // none of its reals looked up yet
    const Seen& s = found->second;
    if (s.gateways.empty()) {
      // Nothing to compare next_hop_mac with.
      std::vector<std::string> how;
      if (!s.onLink.empty())
        how.push_back("on-link on " + commaList(s.onLink) + " (routes without a gateway)");
      for (const std::string& other : s.elsewhere) how.push_back("routed through " + other);
      if (s.noRoute) how.push_back("without a route");
      std::string reason = "its ipip reals are " + commaList(how) + "; none is routed through a gateway on " +
                           named + ", so keeld has no router's MAC to compare";
      f.verdict = Verdict::kUnknown;
      f.warned.clear();
      if (reason != f.unchecked)
        logInfo(LogRecord("next_hop_mac_unchecked")
                    .add("family", familyLabel(fam))
                    .add("next_hop_mac", want.toString())
                    .add("interface", interface)
                    .add("reason", reason));
      f.unchecked = std::move(reason);
      continue;
    }
    f.unchecked.clear();
    std::vector<std::pair<IpAddress, MacAddress>> usable;
    for (const auto& [gw, via] : s.gateways)
      if (auto e = entries.find(gw); e != entries.end()) usable.emplace_back(gw, e->second);
    if (usable.empty()) continue;  // no entry to read (yet): no news, the verdict stays
    auto match = std::find_if(usable.begin(), usable.end(), [&](const auto& u) { return u.second == want; });
    if (match != usable.end()) {
      if (f.verdict != Verdict::kMatch)
        logInfo(LogRecord("next_hop_mac_matches")
                    .add("family", familyLabel(fam))
                    .add("gateway", match->first.toString())
                    .add("next_hop_mac", want.toString())
                    .add("interface", s.gateways.at(match->first)));
      f.verdict = Verdict::kMatch;
      f.warned.clear();
      continue;
    }
    f.verdict = Verdict::kMismatch;
    for (const auto& [gw, mac] : usable)
      if (f.warned.insert({gw, mac, want}).second)
        logWarn(LogRecord("next_hop_mac_mismatch")
                    .add("family", familyLabel(fam))
                    .add("gateway", gw.toString())
                    .add("neighbour_mac", mac.toString())
                    .add("next_hop_mac", want.toString())
                    .add("interface", s.gateways.at(gw))
                    .add("detail", kMismatchDetail));
  }
}

std::map<std::string, bool> NextHopCheck::mismatches() const {
  std::map<std::string, bool> out;
  for (const auto& [fam, f] : families_) out[familyLabel(fam)] = f.verdict == Verdict::kMismatch;
  return out;
}

}  // namespace keel

// SPDX-License-Identifier: Apache-2.0
// An in-memory ControlBackend for the API tests. Mutations apply to the
// snapshots (so keelctl end-to-end tests see their effect) and are recorded
// in `mutations`, so a test can assert a bad request made NO mutating call.
// The ring is a deliberately simple stand-in: slot s holds usable real
// s % n (usable = not draining, healthy, weight > 0); the tests only need a
// ring whose contents they can predict.
#pragma once

#include <arpa/inet.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "control/api/control_backend.h"

namespace keel::api::testing {

// A conn.list entry of TCP flow client:sport -> vip:dport, as a data plane
// keys it (include/keel/flow.h), with its service and entry.
inline ConnListed connListed(const char* client, uint16_t sport, const char* vip, uint16_t dport,
                             std::string service, ConnView view, int worker = -1) {
  ConnListed c;
  const IpAddress src = *IpAddress::parse(client), dst = *IpAddress::parse(vip);
  src.toWords(c.key.src);
  dst.toWords(c.key.dst);
  c.key.sport = htons(sport);
  c.key.dport = htons(dport);
  c.key.proto = KEEL_PROTO_TCP;
  c.key.family = dst.family();
  c.service = std::move(service);
  c.view = std::move(view);
  c.worker = worker;
  return c;
}

class FakeBackend : public ControlBackend {
 public:
  std::vector<ServiceSnapshot> services;
  std::vector<std::string> addWarnings;  // addReal(): the warnings of its answer
  std::vector<std::string> restartNeeded;  // reload(): the keys it could not apply
  std::vector<std::string> stopStartNeeded;  // reload(): those a restart would not apply either
  std::vector<std::string> reloadWarnings;  // reload(): the file's warnings
  // reload(): its `changes` (keeld's are config_diff's changeJson items);
  // null: none given, as by a keeld before them.
  nlohmann::json reloadChanges = nlohmann::json::array();
  GlobalStats stats;
  std::vector<std::string> mutations;   // "addReal web 10.0.0.9", ...
  std::vector<std::string> checkedTexts;  // every config.check's text
  std::optional<ApiError> failMutations;  // set: every mutation refuses with this
  std::optional<std::string> unsaved;     // takeUnsavedState(): taken once
  std::optional<bool> shutdownDetach;     // set by shutdown()
  bool detachable = true;                 // canDetach()
  DaemonStatus status;                    // daemonStatus()
  int statusCalls = 0;
  std::chrono::milliseconds statusTakes{0};  // how long daemonStatus() holds the loop
  std::map<std::string, ConnView> conns;  // connEntry() by service name (any flow)
  keel_flow_key lastConnKey{};            // the key the last connEntry() was asked for
  ConnList connListResult;                // what connList() returns
  std::string connListError;              // if set, connList() fails with it
  std::optional<ConnQuery> lastConnQuery;  // what the last connList() was asked
  // If set, connList() answers nothing but keeps its `done` here, for the
  // test to call (as keeld answers once its walk of the table is done).
  bool holdConnLists = false;
  std::vector<ConnListDone> heldConnLists;
  // What the fake's clock says (drainedSince): 2026-12-01T14:03:05Z.
  std::chrono::system_clock::time_point now{std::chrono::seconds(1796133785)};
  std::vector<std::string> invalidConfigErrors = {"bad.yaml:3: services[0].port: must be an integer 0..65535, got \"x\""};

  // Counters: the service PACKETS (64 bytes each); its reals PACKETS/10
  // times (number of reals left, this one included): each entry's differ,
  // and an earlier entry's are larger, so `stats --rate` pairing an entry with
  // a later entry's sample reads as a nonzero rate, not 0.
  static ServiceSnapshot makeService(const std::string& name, const std::string& vip, uint16_t port,
                                     std::vector<std::string> reals, uint64_t packets = 1000) {
    ServiceSnapshot s;
    s.name = name;
    s.vip = *IpAddress::parse(vip);
    s.port = port;
    s.counters = {packets, 64 * packets};
    uint64_t left = reals.size();
    for (const auto& r : reals) {
      RealSnapshot rs;
      rs.address = *IpAddress::parse(r);
      rs.weight = 100;
      rs.check = "tcp";
      rs.healthDetail = "connect ok";
      rs.consecutiveOk = 3;
      rs.counters = {packets / 10 * left, 64 * (packets / 10 * left)};
      --left;
      s.reals.push_back(rs);
    }
    refresh(s);
    return s;
  }

  // In the ring: the registry's rule (held: fail-open).
  static bool serves(const RealSnapshot& r) { return !r.draining && (r.healthy || r.held) && r.weight > 0; }
  static std::vector<const RealSnapshot*> usable(const ServiceSnapshot& s) {
    std::vector<const RealSnapshot*> out;
    for (const auto& r : s.reals)
      if (serves(r)) out.push_back(&r);
    return out;
  }
  static void refresh(ServiceSnapshot& s) {
    for (auto& r : s.reals) r.inRing = serves(r);
    s.publishedRingSize = usable(s).empty() ? 0 : s.ringSize;
  }

  ServiceSnapshot* find(const std::string& name) {
    for (auto& s : services)
      if (s.name == name) return &s;
    return nullptr;
  }
  RealSnapshot* findReal(const RealRef& ref) {
    auto* s = find(ref.service);
    if (!s) return nullptr;
    for (auto& r : s->reals)
      if (r.address == ref.address) return &r;
    return nullptr;
  }

  std::vector<ServiceSnapshot> listServices() override { return services; }
  std::optional<ServiceSnapshot> findService(const std::string& name) override {
    if (auto* s = find(name)) return *s;
    return std::nullopt;
  }
  // As DaemonBackend: the same snapshots without counters.
  std::vector<ServiceSnapshot> serviceStates(const std::optional<std::string>& only) override {
    std::vector<ServiceSnapshot> out;
    for (const ServiceSnapshot& s : services)
      if (!only || s.name == *only) out.push_back(s);
    for (auto& s : out) {
      s.counters = {};
      for (auto& r : s.reals) r.counters = {};
    }
    return out;
  }
  std::optional<IpAddress> ringSlotReal(const std::string& service, uint32_t slot) override {
    auto* s = find(service);
    if (!s || slot >= s->publishedRingSize) return std::nullopt;
    auto u = usable(*s);
    if (u.empty()) return std::nullopt;
    return u[slot % u.size()]->address;
  }
  std::optional<ConnView> connEntry(const std::string& service, const keel_flow_key& key) override {
    lastConnKey = key;
    auto it = conns.find(service);
    if (it == conns.end()) return std::nullopt;
    return it->second;
  }
  void connList(const ConnQuery& query, ConnListDone done) override {
    lastConnQuery = query;
    if (holdConnLists) return heldConnLists.push_back(std::move(done));
    if (!connListError.empty()) return done(Status::error(connListError), {});
    done(Status::ok(), connListResult);
  }
  StatsSnapshot servicesAndGlobalStats() override { return {services, stats}; }

  Result addService(const ServiceAddRequest& r) override {
    mutations.push_back("addService " + r.name);
    if (failMutations) return Result::error(*failMutations);
    ServiceSnapshot s;
    s.name = r.name;
    s.vip = r.vip;
    s.port = r.port;
    s.protocol = r.protocol;
    s.forwarding = r.forwarding;
    s.scheduler = r.scheduler;
    s.ringSize = r.ringSize;
    for (const auto& spec : r.reals) {
      RealSnapshot rs;
      rs.address = spec.address;
      rs.weight = spec.weight.value_or(100);
      rs.mac = spec.mac;
      rs.check = "none";
      s.reals.push_back(rs);
    }
    refresh(s);
    services.push_back(s);
    return Result::ok();
  }
  Result removeService(const std::string& name) override {
    mutations.push_back("removeService " + name);
    if (failMutations) return Result::error(*failMutations);
    services.erase(std::remove_if(services.begin(), services.end(),
                                  [&](const ServiceSnapshot& s) { return s.name == name; }),
                   services.end());
    return Result::ok();
  }
  Result addReal(const RealAddRequest& r) override {
    mutations.push_back("addReal " + r.service + " " + r.real.address.toString() + " " +
                        std::to_string(r.real.weight.value_or(100)));
    if (failMutations) return Result::error(*failMutations);
    auto* s = find(r.service);
    RealSnapshot rs;
    rs.address = r.real.address;
    rs.weight = r.real.weight.value_or(100);
    rs.mac = r.real.mac;
    rs.check = "none";
    s->reals.push_back(rs);
    refresh(*s);
    if (!addWarnings.empty()) return Result::ok(nlohmann::json{{"warnings", addWarnings}});
    return Result::ok();
  }
  Result removeReal(const RealRef& ref) override {
    mutations.push_back("removeReal " + ref.service + " " + ref.address.toString());
    if (failMutations) return Result::error(*failMutations);
    auto* s = find(ref.service);
    s->reals.erase(std::remove_if(s->reals.begin(), s->reals.end(),
                                  [&](const RealSnapshot& r) { return r.address == ref.address; }),
                   s->reals.end());
    refresh(*s);
    return Result::ok();
  }
  Result setRealWeight(const RealWeightRequest& r) override {
    mutations.push_back("setRealWeight " + r.real.service + " " + r.real.address.toString() + " " +
                        std::to_string(r.weight));
    if (failMutations) return Result::error(*failMutations);
    findReal(r.real)->weight = r.weight;
    refresh(*find(r.real.service));
    return Result::ok();
  }
  std::optional<std::string> takeUnsavedState() override { return std::exchange(unsaved, std::nullopt); }
  Result setRealDrain(const RealDrainRequest& r) override {
    const RealRef& ref = r.real;
    mutations.push_back(std::string(r.drain ? "drain " : "undrain ") + ref.service + " " +
                        ref.address.toString() + (r.reason.empty() ? "" : " reason=" + r.reason));
    if (failMutations) return Result::error(*failMutations);
    RealSnapshot* real = findReal(ref);
    // The record as DaemonBackend keeps it, at the fake's fixed `now`.
    if (r.drain) {
      if (!real->draining) real->drainedSince = now;
      if (!r.reason.empty()) real->drainReason = r.reason;
    } else {
      real->drainedSince.reset();
      real->drainReason.clear();
    }
    real->draining = r.drain;
    refresh(*find(ref.service));
    return Result::ok();
  }
  Result checkConfig(const std::string& text, const std::string& path) override {
    checkedTexts.push_back(text);
    if (path.find("bad") != std::string::npos) {
      ApiError e{code::kInvalidConfig, invalidConfigErrors.front(), "", {}};
      e.details = nlohmann::json{{"errors", invalidConfigErrors}};
      return Result::error(e);
    }
    if (path.find("warn") != std::string::npos)
      return Result::ok(nlohmann::json{{"name", path},
                                        {"services", 2},
                                        {"reals", 3},
                                        {"warnings", {"l2dsr: 10.0.0.5 not in the neighbour table of eth1"}}});
    return Result::ok(nlohmann::json{{"name", path}, {"services", 2}, {"reals", 3}});
  }
  Result reload() override {
    mutations.push_back("reload");
    if (failMutations) return Result::error(*failMutations);
    nlohmann::json out{{"services", 2}, {"reals", 3}};
    if (!reloadChanges.is_null()) out["changes"] = reloadChanges;
    if (!restartNeeded.empty()) out["restart_needed"] = restartNeeded;
    if (!stopStartNeeded.empty()) out["stop_start_needed"] = stopStartNeeded;
    if (!reloadWarnings.empty()) out["warnings"] = reloadWarnings;
    return Result::ok(std::move(out));
  }
  // daemon.status: what `status` holds (the test sets it); each call counted.
  DaemonStatus daemonStatus() override {
    ++statusCalls;
    if (statusTakes.count() > 0) std::this_thread::sleep_for(statusTakes);  // a large config's query
    return status;
  }
  void shutdown(bool detach) override { shutdownDetach = detach; }
  bool canDetach() const override { return detachable; }
};

}  // namespace keel::api::testing

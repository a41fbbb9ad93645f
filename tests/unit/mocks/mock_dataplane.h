// SPDX-License-Identifier: Apache-2.0
// A recording fake Dataplane: keeps the state a real data plane would hold
// (so tests can check contents) and a log of every call in order (so tests
// can check the ordering rules of the registry, which is the point).
#pragma once

#include <arpa/inet.h>

#include <cstring>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "common/address.h"
#include "dataplane/dataplane.h"

namespace keel::test {

inline IpAddress addressFromWords(const __u32 words[4], uint8_t family) {
  return IpAddress::fromWords(words, family);
}

class MockDataplane : public Dataplane {
 public:
  explicit MockDataplane(DataplaneLimits limits = {}) : connCapacity(limits.connTableSize), limits_(limits) {}

  std::string kind() const override { return "mock"; }
  DataplaneLimits limits() const override { return limits_; }

  Status setNode(const keel_node_config& node) override {
    return apply("setNode", [&] { node_ = node; });
  }
  Status addVip(const keel_vip_key& vip) override {
    std::string a = addressFromWords(vip.addr, vip.family).toString();
    return apply("addVip " + a, [&] {
      vips.insert(a);
      vipKeys[a] = vip;
    });
  }
  Status removeVip(const keel_vip_key& vip) override {
    std::string a = addressFromWords(vip.addr, vip.family).toString();
    return apply("removeVip " + a, [&] {
      vips.erase(a);
      vipKeys.erase(a);
    });
  }
  Status upsertBackend(BackendId id, const keel_backend& b) override {
    return apply("upsertBackend " + std::to_string(id) + " " + addressFromWords(b.addr, b.family).toString() +
                     " gen=" + std::to_string(b.gen) + ((b.flags & KEEL_BE_F_VALID) ? " valid" : " invalid"),
                 [&] {
                   backends[id] = b;
                   backendWrites.emplace_back(id, b);
                 });
  }
  Status upsertService(const keel_service_key& key, const keel_service_value& v) override {
    return apply("upsertService " + keyString(key) + " id=" + std::to_string(v.id) +
                     " flags=" + std::to_string(v.flags),
                 [&] {
                   services[keyString(key)] = v;
                   serviceKeys[keyString(key)] = key;
                 });
  }
  Status removeService(const keel_service_key& key) override {
    return apply("removeService " + keyString(key), [&] {
      services.erase(keyString(key));
      serviceKeys.erase(keyString(key));
    });
  }
  Status publishRing(ServiceId id, std::vector<uint32_t> slots) override {
    std::set<uint32_t> members(slots.begin(), slots.end());
    std::string m;
    for (uint32_t b : members) m += (m.empty() ? "" : ",") + std::to_string(b);
    return apply("publishRing " + std::to_string(id) + " [" + m + "]", [&] { rings[id] = slots; });
  }
  // One call, logged "publishRings 0,2" (the ids); the rings land one by
  // one, as the kernel's batch update swaps them (afterEach sees each). A
  // failure lands none.
  Status publishRings(const RingList& list, size_t* published) override {
    std::string ids;
    for (const auto& [id, slots] : list) ids += (ids.empty() ? "" : ",") + std::to_string(id);
    *published = 0;
    Status s = apply("publishRings " + ids, [&] {
      for (const auto& [id, slots] : list) {
        rings[id] = slots;
        if (afterEach) afterEach();
      }
    }, /*checked=*/false);
    if (s) *published = list.size();
    return s;
  }
  Status zeroCounters(CounterKind kind, uint32_t id) override {
    std::vector<keel_counter>& v = kind == CounterKind::kService ? stats.services : stats.backends;
    return apply(std::string(kind == CounterKind::kService ? "resetService " : "resetBackend ") + std::to_string(id),
                 [&] {
                   if (id < v.size()) v[id] = {};
                 });
  }
  DataplaneStats readCounters(uint32_t services, uint32_t backends) override {
    ++readStatsCalls;
    lastReadBounds = {services, backends};
    DataplaneStats st = stats;  // as a plane does: exactly the ids below the bounds
    st.services.resize(services);
    st.backends.resize(backends);
    return st;
  }
  std::optional<ConnEntry> findConn(const keel_flow_key& key) override {
    auto it = conns.find(std::string(reinterpret_cast<const char*>(&key), sizeof key));
    if (it == conns.end()) return std::nullopt;
    return it->second;
  }
  // Every entry setConn() made, in key-byte order, as worker connWorker.
  Status scanConns(const ConnVisitor& visit) override {
    if (onScan) onScan();
    if (!scanError.empty()) return Status::error(scanError);
    for (const auto& [bytes, e] : conns) {
      keel_flow_key key;
      std::memcpy(&key, bytes.data(), sizeof key);
      visit(key, e, connWorker);
    }
    return Status::ok();
  }
  std::optional<uint32_t> portMtu() const override { return mtu; }
  const keel_node_config& node() const { return node_; }  // what setNode() wrote last
  void maintain() override { ++maintained; }
  void beginBatch() override { ++batchDepth; }
  Status endBatch() override {
    if (batchDepth > 0 && --batchDepth == 0) ++batches;
    return Status::ok();
  }
  std::optional<uint64_t> connTableEntries() override {
    ++connTableCalls;
    return connTable;
  }
  uint64_t connTableCapacity() const override { return connCapacity; }

  static std::string keyString(const keel_service_key& k) {
    return addressFromWords(k.vip, k.family).toString() + ":" + std::to_string(ntohs(k.port)) +
           "/" + std::to_string(k.proto);
  }

  // What an adopting registry would read back (the XDP plane's pinned maps).
  ProgrammedState programmed() const {
    ProgrammedState p;
    for (const auto& [a, k] : vipKeys) p.vips.push_back(k);
    for (const auto& [s, k] : serviceKeys) p.services.emplace_back(k, services.at(s));
    p.backends.resize(limits_.maxBackends);
    for (const auto& [id, b] : backends) p.backends[id] = b;
    return p;
  }

  // Where service `id`'s published ring sends traffic, slot by slot: the
  // address of the backend the slot names, or nullopt where that backend is
  // missing, not VALID or another service's (what hashes there is dropped
  // or goes to the wrong service). Empty if no ring is published.
  std::vector<std::optional<IpAddress>> ringTargets(ServiceId id) const {
    std::vector<std::optional<IpAddress>> out;
    auto ring = rings.find(id);
    if (ring == rings.end()) return out;
    out.reserve(ring->second.size());
    for (BackendId named : ring->second) {
      auto b = backends.find(named);
      const bool ok = b != backends.end() && (b->second.flags & KEEL_BE_F_VALID) && b->second.service_id == id;
      out.push_back(ok ? std::optional(addressFromWords(b->second.addr, b->second.family)) : std::nullopt);
    }
    return out;
  }

  // The call log since the last clear, e.g. "publishRing 0 [0,1]".
  std::vector<std::string> calls;
  std::set<std::string> vips;
  std::map<BackendId, keel_backend> backends;
  std::vector<std::pair<BackendId, keel_backend>> backendWrites;  // every upsertBackend, in order
  std::map<std::string, keel_service_value> services;
  std::map<std::string, keel_vip_key> vipKeys;
  std::map<std::string, keel_service_key> serviceKeys;
  std::map<ServiceId, std::vector<uint32_t>> rings;
  DataplaneStats stats;
  // How often readStats() ran (each reads every per-id counter table).
  int readStatsCalls = 0;
  std::pair<uint32_t, uint32_t> lastReadBounds{};  // the last read's (services, backends) id bounds
  // What connTableEntries() returns (nullopt: cannot count), and how often
  // it ran (on XDP each call runs a BPF iterator over every map).
  std::optional<uint64_t> connTable;
  // What connTableCapacity() returns: limits.conn_table_size unless a test
  // sets another (a plane whose tables hold more or less than that).
  uint64_t connCapacity;
  // What findConn() finds, by the flow key's bytes (setConn()).
  std::map<std::string, ConnEntry> conns;
  void setConn(const keel_flow_key& key, const ConnEntry& e) {
    conns[std::string(reinterpret_cast<const char*>(&key), sizeof key)] = e;
  }
  int connTableCalls = 0;
  std::optional<uint32_t> mtu = 1500;  // what portMtu() returns (nullopt: unknown)
  int maintained = 0;                   // maintain() calls (keeld's upkeep)
  int connWorker = -1;     // the worker scanConns() reports
  std::string scanError;   // if set, scanConns() fails with it
  // If set, scanConns() calls it first, on the thread it runs on (keeld's
  // conn.list walks off its loop): a test sees that thread, or holds the walk.
  std::function<void()> onScan;
  // If set, called after every change a call makes to the state above (a
  // batch of rings: after each ring), to check what packets could meet.
  std::function<void()> afterEach;
  // Batches (Dataplane::beginBatch): the current nesting depth, how many
  // outermost batches ended, and the logged calls made outside any batch.
  int batchDepth = 0;
  int batches = 0;
  std::vector<std::string> unbatchedCalls;
  // Make the n-th call from now fail (0 = never), to test error paths.
  int failAfter = 0;
  // Make every call fail while set (several commits in a row refused).
  bool failAll = false;
  // Whether a failing call still changes the state (a write that landed but
  // reported an error) or leaves it as it was.
  bool failedCallsLand = true;

 private:
  template <typename Change>
  Status apply(std::string call, Change change, bool checked = true) {
    if (batchDepth == 0) unbatchedCalls.push_back(call);
    calls.push_back(std::move(call));
    const bool fail = (failAfter > 0 && --failAfter == 0) || failAll;
    if (!fail || (failedCallsLand && checked)) {
      change();
      if (afterEach && checked) afterEach();
    }
    return fail ? Status::error("injected failure") : Status::ok();
  }
  DataplaneLimits limits_;
  keel_node_config node_{};
};

}  // namespace keel::test

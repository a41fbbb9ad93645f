// SPDX-License-Identifier: Apache-2.0
// A Dataplane that accepts every call and keeps nothing, for measuring the
// control plane's own cost (reconfig_bench, ring_batcher_bench) or its own
// memory (registry_test). publishRings takes a list whole, as the XDP
// plane's one batch update does. MockDataplane is the one that records.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "dataplane/dataplane.h"

namespace keel {

class NullDataplane final : public Dataplane {
 public:
  explicit NullDataplane(DataplaneLimits limits, std::optional<uint32_t> mtu = 1500) : limits_(limits), mtu_(mtu) {}
  std::string kind() const override { return "null"; }
  DataplaneLimits limits() const override { return limits_; }
  Status setNode(const keel_node_config&) override { return Status::ok(); }
  Status addVip(const keel_vip_key&) override { return Status::ok(); }
  Status removeVip(const keel_vip_key&) override { return Status::ok(); }
  Status upsertBackend(BackendId, const keel_backend&) override { return Status::ok(); }
  Status upsertService(const keel_service_key&, const keel_service_value&) override { return Status::ok(); }
  Status removeService(const keel_service_key&) override { return Status::ok(); }
  Status publishRing(ServiceId, std::vector<uint32_t>) override { return Status::ok(); }
  Status publishRings(const RingList& rings, size_t* published) override {
    *published = rings.size();
    return Status::ok();
  }
  std::optional<uint64_t> connTableEntries() override { return std::nullopt; }
  std::optional<ConnEntry> findConn(const keel_flow_key&) override { return std::nullopt; }
  Status scanConns(const ConnVisitor&) override { return Status::ok(); }
  std::optional<uint32_t> portMtu() const override { return mtu_; }

 protected:
  Status zeroCounters(CounterKind, uint32_t) override { return Status::ok(); }
  DataplaneStats readCounters(uint32_t, uint32_t) override { return {}; }

 private:
  DataplaneLimits limits_;
  std::optional<uint32_t> mtu_;
};

}  // namespace keel

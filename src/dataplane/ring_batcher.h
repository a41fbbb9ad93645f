// SPDX-License-Identifier: Apache-2.0
// A Dataplane in front of another whose ring publish is slow one by one and
// cheap in a batch. On XDP each publishRing() is an update of the rings
// array-of-maps, and the kernel makes every such update wait for a grace
// period (synchronize_rcu, 10-13 ms on the test host), so a start of 1,000
// services took 13 s with keeld's loop held; one batch update of many rings
// waits once (Dataplane::publishRings).
//
// Inside beginBatch()/endBatch() it holds ring publishes and service writes
// back and passes every other call through, once what that call could
// depend on has been applied. The rules, per service id S (the ring of S,
// the service entry whose value names S, and the backends S owns):
//   - a ring publish of S is held; if a service write naming S is held,
//     everything held goes out first and then this ring is held, so a
//     service's entry and its next ring reach the plane in the registry's
//     order (at a flush held rings go before held service writes);
//   - a service write is held (the ring it names, if held, goes out before
//     it at the flush); a second write of the same key replaces it;
//   - a backend write goes out at once, after whatever is held of its old
//     owner (if the slot is VALID now: an applied ring of that owner may
//     name it) and of its new owner;
//   - removeService first applies a held write of its key (the others wait:
//     with the entry gone no packet reaches its ring); removeVip, setNode
//     and counter resets first apply all that is held (they are rare, and
//     an id they free may be reused);
//   - addVip goes out at once (a VIP without its service is passed to the
//     kernel, as before it was announced).
// So each service sees its own calls in order, and calls of different
// services touch different entries: every state the plane passes through
// is, service by service, one the registry's order passes through. One
// order is not kept: a held write that moves a key from id S0 to S1,
// then a ring of S0 (the batcher does not know that the plane's entry
// names S0, so that ring goes out at the flush before the entry moves).
// The registry never moves a key between ids (a changed key is a removal
// and an add), so no state of its batches depends on it. What is
// held goes out at every endBatch() (nested ones too, so that each of the
// registry's batches learns from DataplaneBatch::finish() whether its
// writes reached the plane) in one publishRings() and then the service
// writes, or earlier when a call needs it or when the held rings reach
// kMaxHeldSlots. Outside a batch nothing is held.
//
// A held write the plane refuses fails the call that sent it out (the call
// itself is not made) or the batch's end, and everything held is dropped
// then: the registry marks what it changed for a rewrite, and its next
// apply writes it whole (Registry::failed()). Held writes never outlive a
// batch, so one refused write cannot block later changes.
#pragma once

#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "dataplane/dataplane.h"

namespace keel {

class RingBatcher final : public Dataplane {
 public:
  // Held ring slots past which the held rings go out without waiting for
  // the batch's end (32 MiB of slots: 128 rings of M = 65537).
  static constexpr size_t kMaxHeldSlots = size_t{8} << 20;

  // `backends`: what the plane holds now (ProgrammedState::backends of an
  // adopted plane, indexed by BackendId), or empty for a fresh plane.
  RingBatcher(Dataplane& inner, const std::vector<keel_backend>& backends);

  std::string kind() const override { return inner_.kind(); }
  DataplaneLimits limits() const override { return inner_.limits(); }

  Status setNode(const keel_node_config& node) override;
  Status addVip(const keel_vip_key& vip) override;
  Status removeVip(const keel_vip_key& vip) override;
  Status upsertBackend(BackendId id, const keel_backend& backend) override;
  Status upsertService(const keel_service_key& key, const keel_service_value& value) override;
  Status removeService(const keel_service_key& key) override;
  Status publishRing(ServiceId id, std::vector<uint32_t> slots) override;
  void beginBatch() override;
  Status endBatch() override;

  std::optional<uint64_t> connTableEntries() override { return inner_.connTableEntries(); }
  uint64_t connTableCapacity() const override { return inner_.connTableCapacity(); }
  std::optional<ConnEntry> findConn(const keel_flow_key& key) override { return inner_.findConn(key); }
  Status scanConns(const ConnVisitor& visit) override { return inner_.scanConns(visit); }
  std::optional<uint32_t> portMtu() const override { return inner_.portMtu(); }
  void maintain() override { inner_.maintain(); }
  std::optional<DataplaneUpkeep> upkeep() const override { return inner_.upkeep(); }

  // Rings and service writes held now (tests, and the batch's log record).
  size_t heldRings() const { return rings_.size(); }
  size_t heldServices() const { return services_.size(); }

 protected:
  Status zeroCounters(CounterKind which, uint32_t id) override;
  DataplaneStats readCounters(uint32_t services, uint32_t backends) override {
    return inner_.readStats(services, backends);
  }

 private:
  struct HeldService {
    keel_service_key key;
    keel_service_value value;
  };
  // A service key by its bytes (it has no padding: maps_abi.h asserts its
  // size), as the plane's hash map compares it.
  struct KeyHash {
    size_t operator()(const keel_service_key& k) const {
      return std::hash<std::string_view>()(std::string_view(reinterpret_cast<const char*>(&k), sizeof k));
    }
  };
  struct KeyEqual {
    bool operator()(const keel_service_key& a, const keel_service_key& b) const {
      return std::memcmp(&a, &b, sizeof a) == 0;
    }
  };
  bool holds(ServiceId id) const;
  // Applies everything held: the rings in one publishRings(), then the
  // service writes in their order. On an error what is left is dropped.
  Status flush();
  void drop();
  Status flushIfHeld(ServiceId id) { return holds(id) ? flush() : Status::ok(); }

  // A slot whose last write failed: it may hold either value, so any held
  // write may matter to it.
  static constexpr uint32_t kUnknownOwner = UINT32_MAX;

  Dataplane& inner_;
  int depth_ = 0;
  RingList rings_;                      // one per id, the last publish of it
  std::map<ServiceId, size_t> ringAt_;  // id -> index in rings_
  size_t heldSlots_ = 0;
  std::vector<HeldService> services_;           // in call order, one per key
  // key -> index in services_: a batch of n service writes (a reload that
  // changes every service's flags holds them all) finds a held write of
  // the same key without a search of services_, O(n^2) in all (28 ms at
  // 10,000 services, ring_batcher_bench).
  std::unordered_map<keel_service_key, size_t, KeyHash, KeyEqual> serviceAt_;
  std::map<ServiceId, size_t> heldServiceIds_;  // id -> held writes naming it
  // Each backend slot's owner while it is VALID (nullopt: not VALID, so no
  // applied ring names it; kUnknownOwner: a failed write).
  std::vector<std::optional<ServiceId>> validOwner_;
};

}  // namespace keel

// SPDX-License-Identifier: Apache-2.0
// The DPDK workers' view of the control plane's state: one immutable
// Snapshot, published by pointer and replaced whole.
//
// Why immutable snapshots: a worker loads the current Snapshot pointer once
// per burst and uses it for the whole burst, so every packet sees one
// consistent state (the Dataplane contract: "before the call or after it").
// The control plane never writes memory a worker may be reading; it builds
// the next Snapshot beside the current one, swaps the pointer (release), and
// frees the old one only after every worker has passed a quiescent state
// (the grace period; see GraceFn).
//
// Copy-on-write keeps updates cheap: the big pieces (rings, backend chunks)
// are shared between consecutive snapshots by reference and only the piece
// that changed is copied. A ring is never modified after it is published,
// so "publishRing" is one pointer swap, exactly like the XDP plane's
// map-of-maps swap.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <vector>

#include "common/status.h"
#include "keel/encap.h"
#include "keel/maps_abi.h"

namespace keel::dpdk {

// Open-addressing sets/maps, power-of-two sized, linear probing, built once
// per snapshot and never written afterwards (so no tombstones are needed).
struct VipSlot {
  keel_vip_key key;
  uint32_t used;  // 0 = empty slot, ends a probe
};

struct ServiceSlot {
  keel_service_key key;
  keel_service_value value;
  uint32_t used;
};

inline constexpr uint32_t kBackendChunk = 1024;  // backends per copy-on-write chunk

// A real as the workers see it: its record and its outer-header template
// (include/keel/encap.h), prepared when the real or the node changes, so a
// packet only writes its own fields into the copy.
struct BackendSlot {
  keel_backend be;
  keel_encap_tpl tpl;
};
static_assert(sizeof(BackendSlot) == 104, "docs/dpdk.md gives 104 bytes per max_reals");

struct Snapshot {
  keel_node_config node;
  uint64_t udpIdleNs;  // 0 = entries never expire
  uint64_t tcpIdleNs;
  const VipSlot* vips;
  uint32_t vipMask;
  const ServiceSlot* services;
  uint32_t serviceMask;
  const BackendSlot* const* backendChunks;  // maxBackends / kBackendChunk chunks
  uint32_t maxBackends;
  const uint32_t* const* rings;  // [maxServices]; null = no ring; word 0 = M
  uint32_t maxServices;
  bool hashesSources;  // the node or a service hashes outer sources (the worker then hashes hits too)
  uint64_t version;  // bumped per publish; for tests and stats
};

// Packet-path lookups. Pure functions of the snapshot; no allocation.
bool snapshotHasVip(const Snapshot& s, const keel_vip_key& key);
const keel_service_value* snapshotFindService(const Snapshot& s, const keel_service_key& key);

// A node config's idle timeout in ns (0: entries never expire), as a
// Snapshot holds it.
inline uint64_t idleTimeoutNs(uint32_t seconds) { return uint64_t{seconds} * 1000000000ull; }

// The idle timeout of a flow of `proto` (0: its entries never expire).
inline uint64_t snapshotIdleNs(const Snapshot& s, uint8_t proto) {
  return proto == KEEL_PROTO_TCP ? s.tcpIdleNs : s.udpIdleNs;
}

inline const BackendSlot* snapshotBackend(const Snapshot& s, uint32_t id) {
  if (id >= s.maxBackends) return nullptr;
  return &s.backendChunks[id / kBackendChunk][id % kBackendChunk];
}

uint32_t hashVipKey(const keel_vip_key& key);
uint32_t hashServiceKey(const keel_service_key& key);

// Waits until no worker can still hold a snapshot published before the call
// (rte_rcu_qsbr_synchronize in the DPDK plane; a no-op when nothing runs
// concurrently, as in the pure unit tests).
using GraceFn = std::function<void()>;

// The control-plane side: authoritative state, snapshot building and
// publication. Only the control-plane thread calls the mutators.
class TableStore {
 public:
  TableStore(uint32_t maxServices, uint32_t maxBackends, GraceFn grace);
  ~TableStore();
  TableStore(const TableStore&) = delete;
  TableStore& operator=(const TableStore&) = delete;

  Status setNode(const keel_node_config& node);
  Status addVip(const keel_vip_key& vip);
  Status removeVip(const keel_vip_key& vip);
  Status upsertBackend(uint32_t id, const keel_backend& backend);
  Status upsertService(const keel_service_key& key, const keel_service_value& value);
  Status removeService(const keel_service_key& key);
  Status publishRing(uint32_t serviceId, const std::vector<uint32_t>& slots);

  // Between beginBatch() and the matching endBatch() the mutators above
  // change only the store; the outermost endBatch() publishes one snapshot
  // with all of them (if any changed something). Nests. flush() publishes
  // what a batch changed so far, at once (the batch goes on): for a caller
  // that must know no worker still uses what it removed.
  void beginBatch() { ++batchDepth_; }
  void endBatch();
  void flush();

  // What a worker loads once per burst (acquire).
  const Snapshot* current() const { return current_.load(std::memory_order_acquire); }
  uint32_t maxServices() const { return maxServices_; }
  uint32_t maxBackends() const { return maxBackends_; }

 private:
  struct Owned;  // a Snapshot plus the memory it points into
  void publish();     // publishNow(), or inside a batch at its end
  void publishNow();  // builds, swaps and waits for the grace period

  const uint32_t maxServices_;
  const uint32_t maxBackends_;
  GraceFn grace_;

  keel_node_config node_{};
  std::map<std::vector<uint8_t>, keel_vip_key> vips_;
  std::map<std::vector<uint8_t>, std::pair<keel_service_key, keel_service_value>> services_;
  using Chunk = std::vector<BackendSlot>;
  std::vector<std::shared_ptr<const Chunk>> chunks_;
  // Chunks copied since the last publish, which no snapshot holds yet: a
  // batch writes them in place instead of copying a chunk (104 KiB) for
  // every real it writes. Null: chunks_[i] may be published; copy first.
  std::vector<std::shared_ptr<Chunk>> unpublishedChunks_;
  Chunk& writableChunk(size_t i);
  std::shared_ptr<const Chunk> zeroChunk_;  // shared by every chunk no real was ever written to
  std::vector<std::shared_ptr<const std::vector<uint32_t>>> rings_;

  std::unique_ptr<Owned> owned_;
  std::atomic<const Snapshot*> current_{nullptr};
  uint64_t version_ = 0;
  uint32_t batchDepth_ = 0;
  bool unpublished_ = false;  // a mutator ran inside the current batch
};

}  // namespace keel::dpdk

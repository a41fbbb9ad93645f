// SPDX-License-Identifier: Apache-2.0
#include "dataplane/dpdk/tables.h"

#include <cstring>
#include <string>

#include "keel/hash.h"

namespace keel::dpdk {

namespace {

constexpr uint32_t kSeedVip = 0x56495021u;      // "VIP!"
constexpr uint32_t kSeedService = 0x53564321u;  // "SVC!"

template <typename T>
std::vector<uint8_t> keyBytes(const T& k) {
  const auto* p = reinterpret_cast<const uint8_t*>(&k);
  return std::vector<uint8_t>(p, p + sizeof k);
}

// Load factor <= 1/2 keeps linear probes short; 16 is the floor so an empty
// table still has a valid mask.
uint32_t tableSize(size_t n) {
  uint32_t size = 16;
  while (size < 2 * n) size <<= 1;
  return size;
}

std::string familyError(const char* what, uint8_t family) {
  return std::string(what) + ": family must be 4 or 6, got " + std::to_string(family);
}

}  // namespace

uint32_t hashVipKey(const keel_vip_key& key) {
  return keel_hash_addr(key.addr, key.family, kSeedVip);
}

uint32_t hashServiceKey(const keel_service_key& key) {
  __u32 extra = static_cast<__u32>(key.port) | static_cast<__u32>(key.proto) << 16 |
                static_cast<__u32>(key.family) << 24;
  return keel_hash_addr(key.vip, extra, kSeedService);
}

bool snapshotHasVip(const Snapshot& s, const keel_vip_key& key) {
  for (uint32_t i = hashVipKey(key) & s.vipMask;; i = (i + 1) & s.vipMask) {
    const VipSlot& slot = s.vips[i];
    if (!slot.used) return false;
    if (std::memcmp(&slot.key, &key, sizeof key) == 0) return true;
  }
}

const keel_service_value* snapshotFindService(const Snapshot& s, const keel_service_key& key) {
  for (uint32_t i = hashServiceKey(key) & s.serviceMask;; i = (i + 1) & s.serviceMask) {
    const ServiceSlot& slot = s.services[i];
    if (!slot.used) return nullptr;
    if (std::memcmp(&slot.key, &key, sizeof key) == 0) return &slot.value;
  }
}

struct TableStore::Owned {
  Snapshot snap{};
  std::vector<VipSlot> vips;
  std::vector<ServiceSlot> services;
  std::vector<const BackendSlot*> chunkPtrs;
  std::vector<const uint32_t*> ringPtrs;
  // Keep every shared piece alive while this snapshot may be read.
  std::vector<std::shared_ptr<const Chunk>> chunks;
  std::vector<std::shared_ptr<const std::vector<uint32_t>>> rings;
};

TableStore::TableStore(uint32_t maxServices, uint32_t maxBackends, GraceFn grace)
    : maxServices_(maxServices),
      maxBackends_((maxBackends + kBackendChunk - 1) / kBackendChunk * kBackendChunk),
      grace_(std::move(grace)) {
  zeroChunk_ = std::make_shared<const Chunk>(kBackendChunk);
  chunks_.assign(maxBackends_ / kBackendChunk, zeroChunk_);
  unpublishedChunks_.resize(chunks_.size());
  rings_.resize(maxServices_);
  publish();
}

TableStore::~TableStore() = default;

void TableStore::endBatch() {
  if (batchDepth_ == 0 || --batchDepth_ > 0) return;
  flush();
}

void TableStore::flush() {
  if (unpublished_) publishNow();
}

void TableStore::publish() {
  if (batchDepth_ > 0)
    unpublished_ = true;  // endBatch() or flush() publishes
  else
    publishNow();
}

TableStore::Chunk& TableStore::writableChunk(size_t i) {
  std::shared_ptr<Chunk>& own = unpublishedChunks_[i];
  if (!own) {
    own = std::make_shared<Chunk>(*chunks_[i]);
    chunks_[i] = own;
  }
  return *own;
}

void TableStore::publishNow() {
  unpublished_ = false;
  auto next = std::make_unique<Owned>();
  next->vips.assign(tableSize(vips_.size()), VipSlot{});
  uint32_t vipMask = static_cast<uint32_t>(next->vips.size() - 1);
  for (const auto& [bytes, key] : vips_) {
    uint32_t i = hashVipKey(key) & vipMask;
    while (next->vips[i].used) i = (i + 1) & vipMask;
    next->vips[i].key = key;
    next->vips[i].used = 1;
  }
  next->services.assign(tableSize(services_.size()), ServiceSlot{});
  uint32_t svcMask = static_cast<uint32_t>(next->services.size() - 1);
  bool hashesSources = (node_.flags & (KEEL_NODE_F_HASH_SRC_V4 | KEEL_NODE_F_HASH_SRC_V6)) != 0;
  for (const auto& [bytes, kv] : services_) {
    uint32_t i = hashServiceKey(kv.first) & svcMask;
    while (next->services[i].used) i = (i + 1) & svcMask;
    next->services[i].key = kv.first;
    next->services[i].value = kv.second;
    next->services[i].used = 1;
    hashesSources |= (kv.second.flags & KEEL_SVC_F_HASH_SRC_IP) != 0;
  }
  next->chunks = chunks_;
  // Published: the next write to any of them copies it again.
  for (auto& own : unpublishedChunks_) own.reset();
  next->rings = rings_;
  for (const auto& c : chunks_) next->chunkPtrs.push_back(c->data());
  for (const auto& r : rings_) next->ringPtrs.push_back(r ? r->data() : nullptr);

  Snapshot& s = next->snap;
  s.node = node_;
  s.udpIdleNs = idleTimeoutNs(node_.udp_idle_timeout_s);
  s.tcpIdleNs = idleTimeoutNs(node_.tcp_idle_timeout_s);
  s.vips = next->vips.data();
  s.vipMask = vipMask;
  s.services = next->services.data();
  s.serviceMask = svcMask;
  s.backendChunks = next->chunkPtrs.data();
  s.maxBackends = maxBackends_;
  s.rings = next->ringPtrs.data();
  s.maxServices = maxServices_;
  s.hashesSources = hashesSources;
  s.version = ++version_;

  // Release: a worker that sees the new pointer sees the finished tables.
  current_.store(&next->snap, std::memory_order_release);
  std::unique_ptr<Owned> old = std::move(owned_);
  owned_ = std::move(next);
  // Only after every worker has reported a quiescent state since the swap
  // can nobody still be reading the old snapshot.
  if (old && grace_) grace_();
}

Status TableStore::setNode(const keel_node_config& node) {
  node_ = node;
  // Every real's template holds node fields (MACs, tunnel sources): prepare
  // them all again, in new chunks (the published ones are never written).
  for (size_t i = 0; i < chunks_.size(); ++i) {
    if (chunks_[i] == zeroChunk_) continue;  // no real written there: nothing to prepare, stays shared
    for (BackendSlot& slot : writableChunk(i)) keel_encap_prepare(&slot.tpl, &node_, &slot.be);
  }
  publish();
  return Status::ok();
}

Status TableStore::addVip(const keel_vip_key& vip) {
  if (vip.family != KEEL_AF_INET && vip.family != KEEL_AF_INET6)
    return Status::error(familyError("addVip", vip.family));
  keel_vip_key k = vip;
  std::memset(k.pad, 0, sizeof k.pad);
  vips_[keyBytes(k)] = k;
  publish();
  return Status::ok();
}

Status TableStore::removeVip(const keel_vip_key& vip) {
  keel_vip_key k = vip;
  std::memset(k.pad, 0, sizeof k.pad);
  // Already gone: the goal holds (as on XDP). A registry converging after a
  // failed apply may remove what the failure never wrote.
  if (vips_.erase(keyBytes(k))) publish();
  return Status::ok();
}

Status TableStore::upsertBackend(uint32_t id, const keel_backend& backend) {
  if (id >= maxBackends_)
    return Status::error("upsertBackend: backend id " + std::to_string(id) + " >= limit " +
                         std::to_string(maxBackends_));
  if (backend.family != KEEL_AF_INET && backend.family != KEEL_AF_INET6)
    return Status::error(familyError("upsertBackend", backend.family));
  // Copy only the chunk that changes; the others stay shared.
  BackendSlot& slot = writableChunk(id / kBackendChunk)[id % kBackendChunk];
  slot.be = backend;
  keel_encap_prepare(&slot.tpl, &node_, &slot.be);
  publish();
  return Status::ok();
}

Status TableStore::upsertService(const keel_service_key& key, const keel_service_value& value) {
  if (key.family != KEEL_AF_INET && key.family != KEEL_AF_INET6)
    return Status::error(familyError("upsertService", key.family));
  if (key.proto != KEEL_PROTO_TCP && key.proto != KEEL_PROTO_UDP)
    return Status::error("upsertService: proto must be 6 (tcp) or 17 (udp), got " +
                         std::to_string(key.proto));
  if (value.id >= maxServices_)
    return Status::error("upsertService: service id " + std::to_string(value.id) +
                         " >= limit " + std::to_string(maxServices_));
  services_[keyBytes(key)] = {key, value};
  publish();
  return Status::ok();
}

Status TableStore::removeService(const keel_service_key& key) {
  if (services_.erase(keyBytes(key))) publish();  // already gone: ok, as removeVip
  return Status::ok();
}

Status TableStore::publishRing(uint32_t serviceId, const std::vector<uint32_t>& slots) {
  if (serviceId >= maxServices_)
    return Status::error("publishRing: service id " + std::to_string(serviceId) + " >= limit " +
                         std::to_string(maxServices_));
  for (size_t i = 0; i < slots.size(); ++i) {
    if (slots[i] >= maxBackends_ && slots[i] != KEEL_INVALID_ID)
      return Status::error("publishRing: slot " + std::to_string(i) + " holds backend id " +
                           std::to_string(slots[i]) + " >= limit " + std::to_string(maxBackends_));
  }
  // The published layout of include/keel/maglev_lookup.h: word 0 = M.
  auto ring = std::make_shared<std::vector<uint32_t>>(slots.size() + 1);
  (*ring)[0] = static_cast<uint32_t>(slots.size());
  std::copy(slots.begin(), slots.end(), ring->begin() + 1);
  rings_[serviceId] = std::move(ring);
  publish();
  return Status::ok();
}

}  // namespace keel::dpdk

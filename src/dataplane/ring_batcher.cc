// SPDX-License-Identifier: Apache-2.0
#include "dataplane/ring_batcher.h"

#include "common/logging.h"

namespace keel {

RingBatcher::RingBatcher(Dataplane& inner, const std::vector<keel_backend>& backends)
    : inner_(inner), validOwner_(inner.limits().maxBackends) {
  for (size_t id = 0; id < backends.size() && id < validOwner_.size(); ++id)
    if (backends[id].flags & KEEL_BE_F_VALID) validOwner_[id] = backends[id].service_id;
}

bool RingBatcher::holds(ServiceId id) const { return ringAt_.count(id) || heldServiceIds_.count(id); }

Status RingBatcher::flush() {
  Status s = Status::ok();
  size_t published = 0;
  if (!rings_.empty()) s = inner_.publishRings(rings_, &published);
  // The service writes only once their rings are out: they may name them.
  for (size_t i = 0; s && i < services_.size(); ++i) s = inner_.upsertService(services_[i].key, services_[i].value);
  drop();  // written, or (on an error) dropped with what was not
  return s;
}

void RingBatcher::drop() {
  rings_.clear();
  ringAt_.clear();
  heldSlots_ = 0;
  services_.clear();
  serviceAt_.clear();
  heldServiceIds_.clear();
}

Status RingBatcher::setNode(const keel_node_config& node) {
  if (Status s = flush(); !s) return s;
  return inner_.setNode(node);
}

Status RingBatcher::addVip(const keel_vip_key& vip) { return inner_.addVip(vip); }

Status RingBatcher::removeVip(const keel_vip_key& vip) {
  if (Status s = flush(); !s) return s;
  return inner_.removeVip(vip);
}

Status RingBatcher::upsertBackend(BackendId id, const keel_backend& backend) {
  if (id >= validOwner_.size()) return inner_.upsertBackend(id, backend);  // the plane's own error
  const std::optional<ServiceId> owner = validOwner_[id];
  const bool needsFlush = holds(backend.service_id) ||
                          (owner && (*owner == kUnknownOwner ? !rings_.empty() || !services_.empty()
                                                             : holds(*owner)));
  if (needsFlush)
    if (Status s = flush(); !s) return s;
  Status s = inner_.upsertBackend(id, backend);
  validOwner_[id] = !s ? std::optional<ServiceId>(kUnknownOwner)
                   : (backend.flags & KEEL_BE_F_VALID) ? std::optional<ServiceId>(backend.service_id)
                                                       : std::nullopt;
  return s;
}

Status RingBatcher::upsertService(const keel_service_key& key, const keel_service_value& value) {
  if (depth_ == 0) return inner_.upsertService(key, value);
  if (auto [at, added] = serviceAt_.try_emplace(key, services_.size()); !added) {
    HeldService& same = services_[at->second];
    if (--heldServiceIds_[same.value.id] == 0) heldServiceIds_.erase(same.value.id);
    same.value = value;
  } else {
    services_.push_back({key, value});
  }
  ++heldServiceIds_[value.id];
  return Status::ok();
}

Status RingBatcher::removeService(const keel_service_key& key) {
  // A held write of this key goes first; other services' held writes may
  // wait (the entry gone, nothing reaches this one's ring).
  if (serviceAt_.count(key))
    if (Status s = flush(); !s) return s;
  return inner_.removeService(key);
}

Status RingBatcher::publishRing(ServiceId id, std::vector<uint32_t> slots) {
  if (depth_ == 0) return inner_.publishRing(id, std::move(slots));
  // A held service write of this id goes before its ring, as it was called.
  if (heldServiceIds_.count(id))
    if (Status s = flush(); !s) return s;
  const size_t m = slots.size();
  if (auto at = ringAt_.find(id); at != ringAt_.end()) {
    heldSlots_ -= rings_[at->second].second.size();
    rings_[at->second].second = std::move(slots);
  } else {
    ringAt_[id] = rings_.size();
    rings_.emplace_back(id, std::move(slots));
  }
  heldSlots_ += m;
  if (heldSlots_ >= kMaxHeldSlots) return flush();
  return Status::ok();
}

void RingBatcher::beginBatch() {
  ++depth_;
  inner_.beginBatch();
}

Status RingBatcher::endBatch() {
  if (depth_ > 0) --depth_;
  const size_t rings = rings_.size(), services = services_.size();
  Status s = flush();
  if (!s)
    logError(LogRecord("dataplane_held_writes_failed")
                 .add("rings", rings)
                 .add("services", services)
                 .add("error", s.message())
                 .add("detail", "those not written are dropped; the change that made them fails, and the next "
                                "apply writes its services again"));
  const Status inner = inner_.endBatch();
  return s ? inner : s;
}

Status RingBatcher::zeroCounters(CounterKind which, uint32_t id) {
  if (Status s = flush(); !s) return s;
  return inner_.resetCounters(which, id);
}

}  // namespace keel

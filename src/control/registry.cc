// SPDX-License-Identifier: Apache-2.0
#include "control/registry.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <set>
#include <tuple>
#include <map>
#include <string_view>
#include <unordered_map>

#include "common/logging.h"
#include "control/config_diff.h"
#include "control/maglev/maglev.h"

namespace keel {

namespace {

// The outer header ipip puts in front of an IPv6 client's packet for this
// service: 40 if any real is IPv6 (the largest the service's packets get),
// else 20; 0 where nothing grows an IPv6 client's packet (l2dsr, an IPv4
// VIP, no reals).
uint32_t ipv6ClientOuterHeader(const ServiceConfig& svc) {
  if (svc.forwarding != Forwarding::kIpip || !svc.vip.isV6() || svc.reals.empty()) return 0;
  const bool v6Real = std::any_of(svc.reals.begin(), svc.reals.end(),
                                  [](const RealConfig& r) { return r.address.isV6(); });
  return v6Real ? 40 : 20;
}

}  // namespace

std::vector<Ipv6MtuShortfall> ipv6MtuShortfalls(const std::vector<ServiceConfig>& services, uint32_t mtu) {
  std::vector<Ipv6MtuShortfall> out;
  for (const ServiceConfig& svc : services) {
    const uint32_t outer = ipv6ClientOuterHeader(svc);
    if (outer == 0 || kIpv6MinMtu + outer <= mtu) continue;
    out.push_back({svc.name, svc.vip, mtu, outer, kIpv6MinMtu + outer});
  }
  return out;
}

std::optional<uint32_t> Registry::IdPool::allocate() {
  if (!free_.empty()) {
    std::pop_heap(free_.begin(), free_.end(), std::greater<>());
    uint32_t id = free_.back();
    free_.pop_back();
    return id;
  }
  if (next_ < limit_) return next_++;
  return std::nullopt;
}

bool Registry::IdPool::reserve(uint32_t id) {
  if (id >= limit_) return false;
  if (id >= next_) {
    for (uint32_t i = next_; i < id; ++i) release(i);
    next_ = id + 1;
    return true;
  }
  auto it = std::find(free_.begin(), free_.end(), id);
  if (it == free_.end()) return false;
  free_.erase(it);
  std::make_heap(free_.begin(), free_.end(), std::greater<>());
  return true;
}

bool Registry::IdPool::used(uint32_t id) const {
  return id < next_ && std::find(free_.begin(), free_.end(), id) == free_.end();
}

void Registry::IdPool::release(uint32_t id) {
  free_.push_back(id);
  std::push_heap(free_.begin(), free_.end(), std::greater<>());
}

Registry::Registry(Dataplane& dataplane)
    : dataplane_(dataplane),
      serviceIds_(dataplane.limits().maxServices),
      backendIds_(dataplane.limits().maxBackends),
      backendGen_(dataplane.limits().maxBackends, 0) {}

keel_vip_key Registry::vipKey(const IpAddress& vip) {
  keel_vip_key k{};
  vip.toWords(k.addr);
  k.family = vip.family();
  return k;
}

keel_service_key Registry::serviceKey(const ServiceConfig& cfg) {
  keel_service_key k{};
  cfg.vip.toWords(k.vip);
  k.port = htons(cfg.port);
  k.proto = cfg.protocol;
  k.family = cfg.vip.family();
  return k;
}

// No KEEL_SVC_F_HASH_SRC_IP: node.hash_source_v4 is keeld's node flag
// KEEL_NODE_F_HASH_SRC_V4, which hashes IPv4 outer sources only. The service
// flag would hash IPv6 ones as well, from outside the tunnel_source_v6 the
// reals are told to accept (docs/operations.md).
uint32_t Registry::serviceFlags(const ServiceConfig& cfg) {
  uint32_t flags = 0;
  if (cfg.scheduler == Scheduler::kMaglevSrc) flags |= KEEL_SVC_F_SCHED_SRC;
  if (cfg.forwarding == Forwarding::kL2dsr) flags |= KEEL_SVC_F_FWD_L2DSR;
  return flags;
}

bool Registry::sameKey(const ServiceConfig& a, const ServiceConfig& b) {
  return a.vip == b.vip && a.port == b.port && a.protocol == b.protocol;
}

BackendId Registry::allocateBackend() {
  // Capacity was checked by apply(); a reused id moves to a newer generation
  // so conntrack entries left by its previous owner never match it.
  BackendId id = *backendIds_.allocate();
  ++backendGen_[id];
  return id;
}

Status Registry::addVipRef(const IpAddress& vip) {
  // An entry at 0 refs is still announced (apply() withdraws unused VIPs
  // last), so only a VIP with no entry needs addVip.
  auto [it, inserted] = vipRefs_.try_emplace(vip, 0);
  // The service holds its ref even if the add fails (dropService drops
  // one); whether the VIP is announced is then unknown until an apply
  // settles it.
  ++it->second;
  if (inserted) {
    if (Status s = dataplane_.addVip(vipKey(vip)); !s) {
      unsureVips_.insert(vip);
      return Status::error("add vip " + vip.toString() + ": " + s.message());
    }
  }
  return Status::ok();
}

void Registry::dropVipRef(const IpAddress& vip, std::vector<IpAddress>& maybeUnused) {
  auto it = vipRefs_.find(vip);
  if (it == vipRefs_.end()) return;
  if (--it->second == 0) maybeUnused.push_back(vip);
}

Status Registry::writeBackend(const ServiceState& state, const IpAddress& addr,
                              const RealState& real) {
  keel_backend b{};
  addr.toWords(b.addr);
  b.service_id = state.id;
  b.gen = backendGen_[real.id];
  b.family = addr.family();
  // A health-down real stays !VALID until it is up again, unless it keeps
  // its flows (established_on_down: keep): VALID, marked down for adopt().
  b.flags = real.valid() ? KEEL_BE_F_VALID : 0;
  if (real.kept) b.flags |= KEEL_BE_F_KEPT_DOWN;
  if (real.held) b.flags |= KEEL_BE_F_HELD;
  if (state.config.forwarding == Forwarding::kL2dsr && real.mac)
    std::memcpy(b.mac, real.mac->bytes().data(), 6);
  if (Status s = dataplane_.upsertBackend(real.id, b); !s)
    return Status::error("service " + state.config.name + ": real " + addr.toString() +
                         ": write backend " + std::to_string(real.id) + ": " + s.message());
  return Status::ok();
}

Status Registry::invalidateBackend(const ServiceState& state, const IpAddress& addr,
                                   RealState& real, bool released) {
  // Called only after a ring without this real is published: new flows can
  // no longer pick it, and the new generation makes old flows re-pick.
  if (Status s = writeInvalid(real.id, released ? KEEL_SERVICE_NONE : state.id, addr); !s)
    return Status::error("service " + state.config.name + ": real " + addr.toString() +
                         ": invalidate backend " + std::to_string(real.id) + ": " + s.message());
  return Status::ok();
}

Status Registry::writeInvalid(BackendId id, ServiceId serviceId, const IpAddress& addr) {
  ++backendGen_[id];
  keel_backend b{};
  addr.toWords(b.addr);
  b.service_id = serviceId;
  b.gen = backendGen_[id];
  b.family = addr.family();
  b.flags = 0;
  return dataplane_.upsertBackend(id, b);
}

Status Registry::releaseBackend(const ServiceState& state, const IpAddress& addr, const RealState& real) {
  // Only after invalidateBackend: no ring slot names the id and it is not
  // VALID, so its counters stop moving and the next owner starts at 0.
  const BackendId id = real.id;
  if (Status s = dataplane_.resetCounters(CounterKind::kBackend, id); !s)
    return Status::error("service " + state.config.name + ": real " + addr.toString() +
                         ": reset counters of backend " + std::to_string(id) + ": " + s.message());
  backendIds_.release(id);
  // Its entries stay in the table until they age out or are evicted, at
  // generations firstGen..(the invalidation's)-1; the next owner starts
  // past them (allocateBackend). An adopted real's run began before this
  // keeld (firstGen 0): remembering it would claim older owners' entries.
  if (real.firstGen != 0) {
    std::vector<PastReal>& past = pastReals_[id];
    past.push_back(PastReal{addr, real.firstGen, backendGen_[id]});
    if (past.size() > kPastRealsPerId) past.erase(past.begin());
    pastSnapshot_.reset();
  }
  return Status::ok();
}

std::shared_ptr<const PastReals> Registry::pastRealsSnapshot() const {
  if (!pastSnapshot_) pastSnapshot_ = std::make_shared<const PastReals>(pastReals_);
  return pastSnapshot_;
}

std::optional<IpAddress> pastRealOf(const PastReals* past, const ConnEntry& e) {
  if (!past) return std::nullopt;
  auto it = past->find(e.backendId);
  if (it == past->end()) return std::nullopt;
  for (const PastReal& p : it->second)
    if (e.gen >= p.firstGen && e.gen < p.endGen) return p.addr;
  return std::nullopt;
}

std::vector<MaglevReal> Registry::ringReals(const ServiceState& state, const std::set<IpAddress>* only) {
  std::vector<MaglevReal> reals;
  for (const auto& [addr, real] : state.reals)
    if (real.inRing() && (!only || only->count(addr))) reals.push_back(MaglevReal{addr, real.weight, real.id});
  return reals;
}

Status Registry::publishRing(ServiceState& state, const std::vector<MaglevReal>& reals) {
  std::vector<uint32_t> slots;
  // buildMaglevTable makes no table for a ring size Maglev cannot use, and
  // an empty ring drops every packet as "no usable real": refused here
  // rather than published (config and API allow only the two primes; this
  // also covers state read back from a file or a pinned plane).
  if (!reals.empty()) {
    if (Status s = checkRingSize(state.config.ringSize); !s)
      return Status::error("service " + state.config.name + ": " + s.message());
    slots = buildMaglevTable(reals, state.config.ringSize);
  }
  const auto m = static_cast<uint32_t>(slots.size());
  if (Status s = dataplane_.publishRing(state.id, std::move(slots)); !s)
    return Status::error("service " + state.config.name + ": publish ring: " + s.message());
  state.publishedM = m;
  state.publishedReals = m == 0 ? std::vector<MaglevReal>{} : reals;
  return Status::ok();
}

std::vector<IpAddress> Registry::unholdIfServed(ServiceState& state, const std::set<IpAddress>* only) {
  bool serving = false;
  for (const auto& [addr, real] : state.reals)
    if (!real.held && real.weight > 0 && real.healthy && (!only || only->count(addr))) serving = true;
  std::vector<IpAddress> released;
  if (serving || !state.config.healthFailOpen)
    for (auto& [addr, real] : state.reals)
      if (real.held) {
        real.held = false;
        // Decided now, before the ring without it: a rewrite after a failed
        // publish then writes it kept (VALID), as invalidateReleased would.
        real.kept = canKeep(state.config, real);
        if (!only || only->count(addr)) released.push_back(addr);
      }
  return released;
}

Status Registry::invalidateReleased(ServiceState& state, const std::vector<IpAddress>& released) {
  for (const IpAddress& addr : released) {
    RealState& real = state.reals[addr];
    // Out of the ring now, like any real that goes down: under keep its
    // flows stay with it, as they would had it never been held.
    real.kept = canKeep(state.config, real);
    if (Status s = real.kept ? writeBackend(state, addr, real) : invalidateBackend(state, addr, real); !s)
      return s;
    logInfo(LogRecord("real_down")
                .add("service", state.config.name)
                .add("real", addr.toString())
                .add("held", 0)
                .add("released", 1)
                .add("established", real.kept ? "kept" : "repicked"));
  }
  return Status::ok();
}

// l2dsr sends to the real's MAC: without one (a real keeld has not found
// in the neighbour table yet, RealConfig::macPending) the real is down
// whatever its health says, so no ring slot ever names a backend with an
// all-zero destination MAC.
bool Registry::lacksMac(const ServiceConfig& cfg, const std::optional<MacAddress>& mac) {
  return cfg.forwarding == Forwarding::kL2dsr && !mac;
}

// A drained real (weight 0) keeps its flows under either setting: the drain
// promised them their end, and the usual graceful stop fails the real's
// check while it finishes what is in flight.
bool Registry::canKeep(const ServiceConfig& cfg, const RealState& real) {
  return keepsFlowsWhenDown(cfg, real.weight) && !lacksMac(cfg, real.mac);
}

Status Registry::addService(const ServiceConfig& cfg, ConfigChanges* changes) {
  auto id = serviceIds_.allocate();
  if (!id) return Status::error("service " + cfg.name + ": no free service id");
  ServiceState& state = services_[cfg.name];
  state.config = cfg;
  state.id = *id;
  for (const RealConfig& rc : cfg.reals) {
    RealState& real = state.reals[rc.address];
    real.weight = rc.weight;
    real.healthy = rc.startHealthy && !lacksMac(cfg, rc.mac);
    real.mac = rc.mac;
    real.kept = !real.healthy && rc.startKept && canKeep(cfg, real);
  }
  // Held as the last keeld's clean stop left it (RealConfig::startHeld),
  // unless a real of the service starts up: then there is nothing to hold for.
  if (cfg.healthFailOpen &&
      std::none_of(state.reals.begin(), state.reals.end(),
                   [](const auto& e) { return e.second.healthy && e.second.weight > 0; }))
    for (const RealConfig& rc : cfg.reals) {
      RealState& real = state.reals[rc.address];
      real.held = rc.startHeld && !real.healthy && !real.kept && !lacksMac(cfg, rc.mac);
    }
  // Ids in address order: like the ring, they do not depend on listing order.
  for (auto& [addr, real] : state.reals) {
    real.id = allocateBackend();
    real.firstGen = backendGen_[real.id];
  }
  if (Status s = addVipRef(cfg.vip); !s) return Status::error("service " + cfg.name + ": " + s.message());
  for (const auto& [addr, real] : state.reals)
    if (Status s = writeBackend(state, addr, real); !s) return s;
  if (Status s = publishRing(state, ringReals(state)); !s) return s;
  if (Status s = dataplane_.upsertService(serviceKey(cfg), {state.id, serviceFlags(cfg), {}});
      !s)
    return Status::error("service " + cfg.name + ": write service: " + s.message());
  noteChange(change::ServiceAdded{cfg.name, state.id, cfg.vip, cfg.port, cfg.protocol, cfg.reals.size()}, changes);
  return Status::ok();
}

// Unhook the service first so no new packet reaches its ring, then empty
// the ring (packets already past the service lookup drop, not misroute);
// dropService() then invalidates every backend so conntrack entries go
// stale. apply() unhooks every service it removes before it drops any, so
// on XDP their empty rings go out in one swap (RingBatcher).
Status Registry::unhookService(const std::string& name) {
  ServiceState& state = services_.at(name);
  if (Status s = dataplane_.removeService(serviceKey(state.config)); !s)
    return Status::error("service " + name + ": remove service: " + s.message());
  if (Status s = dataplane_.publishRing(state.id, {}); !s)
    return Status::error("service " + name + ": publish empty ring: " + s.message());
  return Status::ok();
}

Status Registry::dropService(const std::string& name, std::vector<IpAddress>& vipsMaybeUnused,
                             ConfigChanges* changes) {
  auto it = services_.find(name);
  ServiceState& state = it->second;
  // Each real leaves the state once its id is released, so an error midway
  // leaves the state naming exactly the ids still taken.
  for (auto r = state.reals.begin(); r != state.reals.end(); r = state.reals.erase(r)) {
    if (Status s = invalidateBackend(state, r->first, r->second, /*released=*/true); !s) return s;
    if (Status s = releaseBackend(state, r->first, r->second); !s) return s;
  }
  // No packet finds the service any more: its counters can go with its id.
  if (Status s = dataplane_.resetCounters(CounterKind::kService, state.id); !s)
    return Status::error("service " + name + ": reset counters of service id " +
                         std::to_string(state.id) + ": " + s.message());
  serviceIds_.release(state.id);
  dropVipRef(state.config.vip, vipsMaybeUnused);
  noteChange(change::ServiceRemoved{name, state.id}, changes);
  services_.erase(it);
  return Status::ok();
}

// Logged before the writes: should one fail, the records read as the
// changes, the failure, then the restore's changes back (DaemonBackend
// re-applies the running config). Whether the file or a keelctl change
// made them, the registry cannot tell: a keelctl change also logs its own
// runtime_* or api_change record.
void Registry::noteChanges(const ServiceState& state, const ServiceConfig& cfg, ConfigChanges* changes) {
  for (ConfigChange& c :
       keptServiceChanges(state.config, cfg, [&state](const IpAddress& address) -> std::optional<uint32_t> {
         auto real = state.reals.find(address);
         if (real == state.reals.end()) return std::nullopt;  // added: real_added, after the writes
         return real->second.weight;
       }))
    noteChange(std::move(c), changes);
}

Status Registry::updateService(ServiceState& state, const ServiceConfig& cfg, ConfigChanges* changes,
                               std::vector<std::function<Status()>>* afterRing) {
  const std::string& name = cfg.name;
  std::set<IpAddress> wanted;
  for (const RealConfig& rc : cfg.reals) wanted.insert(rc.address);
  // Removed reals stay in the state, named by the old ring, until released:
  // the new ring is built from the `wanted` ones only.
  const std::vector<MaglevReal> oldRing = ringReals(state);
  const uint32_t oldRingSize = state.config.ringSize;
  const bool forwardingChanged = state.config.forwarding != cfg.forwarding;
  const uint32_t oldFlags = serviceFlags(state.config);
  noteChanges(state, cfg, changes);
  state.config = cfg;
  const uint32_t flags = serviceFlags(cfg);
  bool serviceWritten = false;
  auto writeService = [&]() -> Status {
    serviceWritten = true;
    if (Status s = dataplane_.upsertService(serviceKey(cfg), {state.id, flags, {}}); !s)
      return Status::error("service " + name + ": write service: " + s.message());
    return Status::ok();
  };
  // Leaving l2dsr, the service turns ipip before its backends are rewritten
  // without their MACs (writeBackend keeps a MAC only under l2dsr): the
  // other way round, packets in between went out l2dsr to 00:00:00:00:00:00
  // (XDP applies each write at once; DPDK publishes a batch early when it
  // frees an id). ipip reads no MAC, so the old backends serve it as they
  // are. Entering l2dsr the backends get their MACs first, the service last
  // (below).
  if (forwardingChanged && (oldFlags & KEEL_SVC_F_FWD_L2DSR))
    if (Status s = writeService(); !s) return s;

  // Every real in the state has an allocated id at every point a data-plane
  // call can fail, so a failed apply leaves the state naming exactly the ids
  // it holds (apply() says why that matters).
  std::vector<const RealConfig*> added;
  // Reals that were up (or held) and have no MAC now (lacksMac: a file
  // that drops a real's mac:, an adopted real the neighbour table lost):
  // they go down the health way, out of the ring first, then invalidated.
  std::set<IpAddress> macLost;
  // Kept reals (down, VALID at their generation) of a service that is
  // repick now, drained ones aside (canKeep), or undrained under repick:
  // invalidated as a real going down under repick is, once the new ring is
  // live. (A real already down when the service turns keep, or is drained,
  // stays invalidated: its flows have moved, and none are left to keep.)
  std::set<IpAddress> unkept;
  for (const RealConfig& rc : cfg.reals) {
    auto it = state.reals.find(rc.address);
    if (it == state.reals.end()) {
      added.push_back(&rc);
      continue;
    }
    RealState& real = it->second;
    real.weight = rc.weight;  // a weight change (incl. drain to 0) only moves ring slots
    if (lacksMac(cfg, rc.mac) && real.valid()) {
      real.healthy = false;
      real.held = false;
      real.kept = false;
      real.mac = rc.mac;
      macLost.insert(rc.address);
      continue;
    }
    if (real.kept && !canKeep(cfg, real)) {
      real.kept = false;
      real.mac = rc.mac;
      unkept.insert(rc.address);
      continue;
    }
    if (real.mac != rc.mac || forwardingChanged) {
      real.mac = rc.mac;
      if (Status s = writeBackend(state, rc.address, real); !s) return s;
    }
  }
  // Ids in address order, as in addService.
  std::sort(added.begin(), added.end(),
            [](const RealConfig* a, const RealConfig* b) { return a->address < b->address; });
  for (const RealConfig* rc : added) {
    RealState& real = state.reals[rc->address];
    real.weight = rc->weight;
    real.healthy = rc->startHealthy && !lacksMac(cfg, rc->mac);
    real.mac = rc->mac;
    real.kept = !real.healthy && rc->startKept && canKeep(cfg, real);
    real.id = allocateBackend();
    real.firstGen = backendGen_[real.id];
  }
  // New backends are VALID before any ring slot can name them.
  for (const RealConfig* rc : added)
    if (Status s = writeBackend(state, rc->address, state.reals[rc->address]); !s) return s;

  const bool rewrite = state.rewrite;
  state.rewrite = false;
  // The same ids and generations: only what the config changed moves. The
  // reals that are down are written after the ring (below): after a failed
  // write the plane's ring may still name one (dropped packets until the
  // ring is written).
  if (rewrite)
    for (const auto& [addr, real] : state.reals)
      if (real.valid() && !macLost.count(addr) && !unkept.count(addr))  // VALID until invalidated below
        if (Status s = writeBackend(state, addr, real); !s) return s;
  // After the rewrite above, which writes held reals VALID: the ring that
  // still names them is live until the one below replaces it.
  const std::vector<IpAddress> released = unholdIfServed(state, &wanted);
  const std::vector<MaglevReal> newRing = ringReals(state, &wanted);
  if (rewrite || newRing != oldRing || cfg.ringSize != oldRingSize)
    if (Status s = publishRing(state, newRing); !s) return s;
  AfterRing after{std::move(wanted), released, std::move(macLost), std::move(unkept), std::move(added), rewrite,
                  (rewrite || flags != oldFlags) && !serviceWritten};
  auto tail = [this, &state, &cfg, changes, after = std::move(after)]() -> Status {
    return updateServiceAfterRing(state, cfg, changes, after);
  };
  if (!afterRing) return tail();
  afterRing->push_back(std::move(tail));
  return Status::ok();
}

// updateService's writes that follow the service's new ring.
Status Registry::updateServiceAfterRing(ServiceState& state, const ServiceConfig& cfg, ConfigChanges* changes,
                                        const AfterRing& after) {
  const auto& [wanted, released, macLost, unkept, added, rewrite, writeServiceLast] = after;
  const std::string& name = cfg.name;
  if (rewrite)  // the reals that are down, now that the ring without them is written
    for (const auto& [addr, real] : state.reals)
      if (!real.valid() && wanted.count(addr) && !macLost.count(addr) && !unkept.count(addr) &&
          std::find(released.begin(), released.end(), addr) == released.end())  // invalidateReleased's
        if (Status s = writeBackend(state, addr, real); !s) return s;
  if (Status s = invalidateReleased(state, released); !s) return s;
  for (const IpAddress& addr : macLost) {
    if (Status s = invalidateBackend(state, addr, state.reals[addr]); !s) return s;
    logInfo(LogRecord("real_down").add("service", name).add("real", addr.toString()).add("reason", "no MAC"));
  }
  for (const IpAddress& addr : unkept) {
    if (Status s = invalidateBackend(state, addr, state.reals[addr]); !s) return s;
    logInfo(LogRecord("real_down")
                .add("service", name)
                .add("real", addr.toString())
                .add("established", "repicked")
                .add("reason", "established_on_down: repick"));
  }
  // The new ring is live: removed reals go, each leaving the state only once
  // its id is released.
  for (auto it = state.reals.begin(); it != state.reals.end();) {
    if (wanted.count(it->first)) {
      ++it;
      continue;
    }
    if (Status s = invalidateBackend(state, it->first, it->second, /*released=*/true); !s) return s;
    if (Status s = releaseBackend(state, it->first, it->second); !s) return s;
    noteChange(change::RealRemoved{name, it->first}, changes);
    it = state.reals.erase(it);
  }
  for (const RealConfig* rc : added) noteChange(change::RealAdded{name, rc->address}, changes);

  if (writeServiceLast)
    if (Status s = dataplane_.upsertService(serviceKey(cfg), {state.id, serviceFlags(cfg), {}}); !s)
      return Status::error("service " + name + ": write service: " + s.message());
  return Status::ok();
}

// Whether `config` fits the data plane's ids: what stays plus what is new
// (a service whose key changed is removed and added).
Status Registry::capacityFor(const Config& config) const {
  std::map<std::string, const ServiceConfig*> desired;
  for (const ServiceConfig& s : config.services) desired[s.name] = &s;
  size_t freeServices = serviceIds_.available();
  size_t freeBackends = backendIds_.available();
  size_t needServices = 0, needBackends = 0;
  for (const auto& [name, state] : services_) {
    auto it = desired.find(name);
    if (it == desired.end() || !sameKey(state.config, *it->second)) {
      ++freeServices;
      freeBackends += state.reals.size();
    } else {
      // A set, not a search of the list per real: one service of 10,000
      // reals made an unchanged reload take ~110 ms here.
      std::set<IpAddress> kept;
      for (const RealConfig& r : it->second->reals) kept.insert(r.address);
      for (const auto& [addr, real] : state.reals)
        if (!kept.count(addr)) ++freeBackends;
    }
  }
  for (const ServiceConfig& s : config.services) {
    auto it = services_.find(s.name);
    if (it == services_.end() || !sameKey(it->second.config, s)) {
      ++needServices;
      needBackends += s.reals.size();
    } else {
      for (const RealConfig& r : s.reals)
        if (!it->second.reals.count(r.address)) ++needBackends;
    }
  }
  // The running data plane's limit, and the file's when it asks for
  // another: that takes a fresh data plane, not a reload (input review
  // L4: the refusal named only the running one's free ids).
  const DataplaneLimits& running = dataplane_.limits();
  auto limitNote = [](const char* key, uint32_t runs, uint32_t asked) {
    std::string n = " free of its " + std::to_string(runs) + " (" + key + ")";
    if (asked != runs)
      n += "; the file's " + std::string(key) + ": " + std::to_string(asked) +
           " applies only to a fresh data plane (keelctl daemon stop, then start keeld: every established "
           "flow is picked again)";
    return n;
  };
  if (needServices > freeServices)
    return Status::error("config needs " + std::to_string(needServices) + " new service ids, the data plane has " +
                         std::to_string(freeServices) +
                         limitNote("limits.max_services", running.maxServices, config.limits.maxServices));
  if (needBackends > freeBackends)
    return Status::error("config needs " + std::to_string(needBackends) + " new backend ids, the data plane has " +
                         std::to_string(freeBackends) +
                         limitNote("limits.max_reals", running.maxBackends, config.limits.maxBackends));
  return Status::ok();
}

// Backend ids the config's services take that they do not hold now: every
// real of a service the registry does not have, and each new real of one it
// has (after apply()'s removals, a service whose key changed is new).
size_t Registry::newBackendIds(const Config& config) const {
  size_t need = 0;
  for (const ServiceConfig& cfg : config.services) {
    auto it = services_.find(cfg.name);
    if (it == services_.end()) {
      need += cfg.reals.size();
      continue;
    }
    for (const RealConfig& r : cfg.reals) need += !it->second.reals.count(r.address);
  }
  return need;
}

Status Registry::apply(const Config& config, ConfigChanges* changes) {
  // One batch: the DPDK plane publishes the whole apply as one snapshot
  // (Dataplane::beginBatch); the calls below keep their order for XDP.
  DataplaneBatch batch(dataplane_);
  std::map<std::string, const ServiceConfig*> desired;
  for (const ServiceConfig& s : config.services) desired[s.name] = &s;

  // Capacity first, so a config that cannot fit changes nothing.
  if (Status s = capacityFor(config); !s) return s;

  std::vector<IpAddress> maybeUnusedVips = std::move(pendingUnusedVips_);
  pendingUnusedVips_.clear();

  // 1. Removals first: they free ids and (vip, port, proto) keys that new
  //    services may take. VIPs are withdrawn only at the end, so a VIP that
  //    moves from one service to another is never briefly unannounced.
  std::vector<std::string> toRemove;
  for (const auto& [name, state] : services_) {
    auto it = desired.find(name);
    if (it == desired.end() || !sameKey(state.config, *it->second)) toRemove.push_back(name);
  }
  for (const std::string& name : toRemove)
    if (Status s = unhookService(name); !s) return failed(s, maybeUnusedVips);
  for (const std::string& name : toRemove)
    if (Status s = dropService(name, maybeUnusedVips, changes); !s) return failed(s, maybeUnusedVips);

  // 2. Updates and 3. additions, in config order (first apply: ids follow it).
  //    What follows an updated service's new ring (its reals invalidated
  //    and released, a service write that goes last) waits until every
  //    service's ring is written, so on XDP the rings go out in one swap
  //    (RingBatcher) rather than one each, 10-13 ms apiece. Only when the
  //    ids this apply takes fit without those it frees: a release is what
  //    would free them. Each service's own writes keep their order.
  std::vector<std::function<Status()>> afterRings;
  const bool batchTails = newBackendIds(config) <= backendIds_.available();
  for (const ServiceConfig& cfg : config.services) {
    auto it = services_.find(cfg.name);
    Status s = it == services_.end() ? addService(cfg, changes)
                                     : updateService(it->second, cfg, changes, batchTails ? &afterRings : nullptr);
    if (!s) return failed(s, maybeUnusedVips);
  }
  for (const auto& tail : afterRings)
    if (Status s = tail(); !s) return failed(s, maybeUnusedVips);

  // A VIP whose last add or withdrawal failed may be announced or not:
  // announce it again if a service uses it, else withdraw it below.
  for (auto u = unsureVips_.begin(); u != unsureVips_.end();) {
    auto ref = vipRefs_.find(*u);
    if (ref == vipRefs_.end() || ref->second == 0) {
      maybeUnusedVips.push_back(*u);
      ++u;
      continue;
    }
    if (Status s = dataplane_.addVip(vipKey(*u)); !s)
      return failed(Status::error("add vip " + u->toString() + ": " + s.message()), maybeUnusedVips);
    u = unsureVips_.erase(u);
  }

  // 4. Withdraw VIPs no service uses any more.
  std::sort(maybeUnusedVips.begin(), maybeUnusedVips.end());
  maybeUnusedVips.erase(std::unique(maybeUnusedVips.begin(), maybeUnusedVips.end()),
                        maybeUnusedVips.end());
  for (const IpAddress& vip : maybeUnusedVips) {
    auto it = vipRefs_.find(vip);
    if (it == vipRefs_.end() || it->second != 0) continue;
    if (Status s = dataplane_.removeVip(vipKey(vip)); !s) {
      unsureVips_.insert(vip);
      return failed(Status::error("remove vip " + vip.toString() + ": " + s.message()), maybeUnusedVips);
    }
    vipRefs_.erase(it);
    unsureVips_.erase(vip);
  }
  // What a plane held of this apply is written now, or the apply fails.
  if (Status s = batch.finish(); !s) return failed(s, maybeUnusedVips);
  tunnelMtu_ = config.node.tunnelMtu;
  warnIpv6Mtu(config.services);
  return Status::ok();
}

void Registry::checkMtu() {
  // Nothing to look at, and nothing said before: no copy, no MTU read.
  if (mtuWarned_.empty() && std::none_of(services_.begin(), services_.end(), [](const auto& s) {
        return ipv6ClientOuterHeader(s.second.config) != 0;
      }))
    return;
  std::vector<ServiceConfig> services;
  services.reserve(services_.size());
  for (const auto& [name, state] : services_) services.push_back(state.config);
  warnIpv6Mtu(services);
}

void Registry::warnIpv6Mtu(const std::vector<ServiceConfig>& services) {
  std::optional<uint32_t> mtu;
  bool unknown = false;  // a service this concerns, and no MTU to compare with
  bool byTunnel = false;  // mtu is node.tunnel_mtu, not the port's
  // Most configs have no service this concerns: then no MTU read at all.
  if (std::any_of(services.begin(), services.end(),
                  [](const ServiceConfig& svc) { return ipv6ClientOuterHeader(svc) != 0; })) {
    mtu = dataplane_.portMtu();
    unknown = !mtu;
    // A smaller path past the port (node.tunnel_mtu) is what the packets get.
    if (mtu && tunnelMtu_ && tunnelMtu_ < *mtu) {
      mtu = tunnelMtu_;
      byTunnel = true;
    }
  }
  // The services warned before, by name, if they are still there.
  auto stillThere = [&](const std::string& name) -> const ServiceConfig* {
    auto it = std::find_if(services.begin(), services.end(), [&](const ServiceConfig& c) { return c.name == name; });
    return it == services.end() ? nullptr : &*it;
  };
  std::map<std::string, MtuShortfall> warned;
  // With the MTU unknown, what was found before still stands for the
  // services it still concerns; the others are dealt with below.
  if (unknown)
    for (const auto& [name, was] : mtuWarned_)
      if (const ServiceConfig* svc = stillThere(name); svc && ipv6ClientOuterHeader(*svc) != 0) warned.emplace(name, was);
  for (const Ipv6MtuShortfall& f : mtu ? ipv6MtuShortfalls(services, *mtu) : std::vector<Ipv6MtuShortfall>{}) {
    const MtuShortfall now{f.mtu, f.needed};
    const uint32_t fits = f.mtu > f.outerHeader ? f.mtu - f.outerHeader : 0;  // the largest client packet
    auto before = mtuWarned_.find(f.service);
    if (before == mtuWarned_.end() || before->second != now)
      logWarn(LogRecord("mtu_too_small_for_ipv6")
                  .add("service", f.service)
                  .add("vip", f.vip.toString())
                  .add("mtu", f.mtu)
                  .add("needed", f.needed)
                  .add("outer_header", f.outerHeader)
                  .add("detail", "IPv6 clients do not lower their path MTU below 1280 (RFC 8201): their packets "
                                     "over " + std::to_string(fits) + " bytes, up to 1280, are answered packet-too-big "
                                     "and dropped; raise " +
                                     std::string(byTunnel ? "node.tunnel_mtu (and the path it stands for)"
                                                          : "the port MTU") +
                                     " to " + std::to_string(f.needed) +
                                     " (docs/operations.md)"));
    warned.emplace(f.service, now);
  }
  // Said once the shortfall is gone, for a service that is still there (a
  // removed one has nothing left to fix).
  for (const auto& [name, was] : mtuWarned_) {
    if (warned.count(name)) continue;
    const ServiceConfig* svc = stillThere(name);
    if (!svc) continue;
    LogRecord r("mtu_ok_for_ipv6");
    r.add("service", name).add("vip", svc->vip.toString());
    if (mtu) r.add("mtu", *mtu);
    r.add("detail", ipv6ClientOuterHeader(*svc) == 0 ? "the service no longer grows IPv6 clients' packets (l2dsr, an IPv4 VIP or no reals)"
                                                     : "the port MTU now carries 1280-byte IPv6 packets encapsulated");
    logInfo(r);
  }
  mtuWarned_ = std::move(warned);
}

// What a failed apply leaves: services half added, updated or removed, each
// state naming what it may have written (ids allocated and not released,
// removed reals kept until released) but not whether each write landed. So
// every service is rewritten whole by the next apply, and the VIPs this one
// did not get to withdraw are withdrawn then if still unused.
Status Registry::failed(Status s, std::vector<IpAddress>& maybeUnusedVips) {
  for (auto& [name, state] : services_) state.rewrite = true;
  pendingUnusedVips_.insert(pendingUnusedVips_.end(), maybeUnusedVips.begin(), maybeUnusedVips.end());
  logError(LogRecord("apply_failed").add("error", s.message()));
  return s;
}

Status Registry::adopt(const ProgrammedState& programmed, const Config& config) {
  if (!services_.empty() || !vipRefs_.empty())
    return Status::error("adopt: the registry already holds services");
  const uint32_t maxServices = dataplane_.limits().maxServices;
  const uint32_t maxBackends = dataplane_.limits().maxBackends;
  if (programmed.backends.size() > maxBackends)
    return Status::error("adopt: " + std::to_string(programmed.backends.size()) +
                         " pinned backends, limits.max_reals is " + std::to_string(maxBackends));
  // Generations of every id, used or free: a reused id must still move past
  // the generation its previous owner's conntrack entries hold.
  for (size_t id = 0; id < programmed.backends.size(); ++id) backendGen_[id] = programmed.backends[id].gen;

  // Backend ids per owner service (slots never written have family 0).
  std::map<ServiceId, std::vector<BackendId>> owned;
  for (BackendId id = 0; id < programmed.backends.size(); ++id)
    if (programmed.backends[id].family != 0) owned[programmed.backends[id].service_id].push_back(id);

  std::set<ServiceId> seenIds;
  std::set<std::string> seenNames;
  for (const auto& [key, value] : programmed.services) {
    if (value.id >= maxServices || !seenIds.insert(value.id).second)
      return Status::error("adopt: pinned service id " + std::to_string(value.id) +
                           " is out of range or used twice");
    const IpAddress vip = IpAddress::fromWords(key.vip, key.family);
    const uint16_t port = ntohs(key.port);
    const ServiceConfig* cfg = nullptr;
    for (const ServiceConfig& c : config.services)
      if (c.vip == vip && c.port == port && c.protocol == key.proto) cfg = &c;
    ServiceState state;
    state.id = value.id;
    state.rewrite = true;
    std::map<BackendId, bool> taken;  // this service's backend ids given to a real
    auto pick = [&](const IpAddress& addr) -> std::optional<BackendId> {
      std::optional<BackendId> best;
      for (BackendId id : owned[value.id]) {
        const keel_backend& b = programmed.backends[id];
        if (taken.count(id) || IpAddress::fromWords(b.addr, b.family) != addr) continue;
        const bool valid = b.flags & KEEL_BE_F_VALID;
        if (!best || (valid && !(programmed.backends[*best].flags & KEEL_BE_F_VALID))) best = id;
      }
      return best;
    };
    if (cfg) {
      state.config = *cfg;
      for (const RealConfig& rc : cfg->reals) {
        auto id = pick(rc.address);
        if (!id) continue;  // new in this config: apply() adds it
        taken[*id] = true;
        RealState& real = state.reals[rc.address];
        real.id = *id;
        real.weight = rc.weight;
        // VALID is up, unless marked down with its flows kept
        // (established_on_down: keep): that real is out of the ring, and
        // must stay out until its checks bring it up (DaemonBackend's
        // targets start in the registry's state).
        // VALID and held by fail-open (KEEL_BE_F_HELD) is down and held:
        // in the ring until a real of the service comes up, which releases
        // it at once, as it would have before the restart.
        const uint8_t flags = programmed.backends[*id].flags;
        real.kept = (flags & KEEL_BE_F_VALID) && (flags & KEEL_BE_F_KEPT_DOWN);
        real.held = (flags & KEEL_BE_F_VALID) && (flags & KEEL_BE_F_HELD) && !real.kept;
        real.healthy = (flags & KEEL_BE_F_VALID) && !real.kept && !real.held;
        real.mac = rc.mac;
      }
    } else {
      // Gone from the config: kept only to be removed by apply(). The name
      // cannot clash with a configured one (names have no spaces).
      state.config.name = "(pinned service " + std::to_string(value.id) + ")";
      state.config.vip = vip;
      state.config.port = port;
      state.config.protocol = key.proto;
      state.config.forwarding =
          (value.flags & KEEL_SVC_F_FWD_L2DSR) ? Forwarding::kL2dsr : Forwarding::kIpip;
    }
    // Backends still VALID that no configured real took: live in the old
    // ring, so they leave the way a removed real leaves (apply()).
    for (BackendId id : owned[value.id]) {
      const keel_backend& b = programmed.backends[id];
      if (taken.count(id) || !(b.flags & KEEL_BE_F_VALID)) continue;
      const IpAddress addr = IpAddress::fromWords(b.addr, b.family);
      if (state.reals.count(addr)) continue;
      taken[id] = true;
      RealState& real = state.reals[addr];
      real.id = id;
      real.weight = 1;
      real.kept = b.flags & KEEL_BE_F_KEPT_DOWN;
      real.healthy = !real.kept;
      // Until apply() invalidates it, its slots in the old ring still
      // send flows to it, and apply() writes it again first: with the MAC
      // it forwarded to (l2dsr), not a zero one.
      const MacAddress mac(std::array<uint8_t, 6>{b.mac[0], b.mac[1], b.mac[2], b.mac[3], b.mac[4], b.mac[5]});
      if (!mac.isZero()) real.mac = mac;
    }
    if (!serviceIds_.reserve(state.id))
      return Status::error("adopt: service id " + std::to_string(state.id) + " reserved twice");
    for (const auto& [addr, real] : state.reals)
      if (!backendIds_.reserve(real.id))
        return Status::error("adopt: backend id " + std::to_string(real.id) + " reserved twice");
    ++vipRefs_[vip];
    std::string name = state.config.name;
    if (!seenNames.insert(name).second)
      return Status::error("adopt: two pinned services match service " + name);
    logInfo(LogRecord("service_adopted")
                .add("service", name)
                .add("id", state.id)
                .add("reals", state.reals.size()));
    services_.emplace(name, std::move(state));
  }
  for (const keel_vip_key& k : programmed.vips) {
    const IpAddress vip = IpAddress::fromWords(k.addr, k.family);
    if (vipRefs_.try_emplace(vip, 0).second) pendingUnusedVips_.push_back(vip);
  }
  // Backends still VALID that no pinned service owns: a keeld killed inside
  // a removal (unhookService() done, dropService() not: service entry
  // deleted, its backends not yet invalidated), or inside a batched add. Their ids are free here, so the next service to get the
  // old service id would find connection-table entries that name them
  // (VALID, that service id, that generation) and send old flows to reals
  // it does not have. Invalidated at a new generation now, as the release
  // that did not happen would have.
  for (BackendId id = 0; id < programmed.backends.size(); ++id) {
    const keel_backend& b = programmed.backends[id];
    if (!(b.flags & KEEL_BE_F_VALID) || backendIds_.used(id)) continue;
    const IpAddress addr = IpAddress::fromWords(b.addr, b.family);
    if (Status s = writeInvalid(id, KEEL_SERVICE_NONE, addr); !s)  // released, as its removal would have
      return Status::error("adopt: invalidate orphan backend " + std::to_string(id) + ": " + s.message());
    logWarn(LogRecord("orphan_backend_invalidated")
                .add("id", id)
                .add("real", addr.toString())
                .add("service_id", b.service_id));
  }
  // Every free id reads 0, as it would had it been released by this keeld.
  const DataplaneStats stats = dataplane_.readStats();
  auto resetFree = [&](const std::vector<keel_counter>& counters, const IdPool& pool,
                       CounterKind kind, const char* what) -> Status {
    for (uint32_t id = 0; id < counters.size(); ++id) {
      if ((counters[id].packets == 0 && counters[id].bytes == 0) || pool.used(id)) continue;
      if (Status s = dataplane_.resetCounters(kind, id); !s)
        return Status::error(std::string("adopt: reset counters of free ") + what + " id " +
                             std::to_string(id) + ": " + s.message());
    }
    return Status::ok();
  };
  if (Status s = resetFree(stats.services, serviceIds_, CounterKind::kService, "service"); !s) return s;
  return resetFree(stats.backends, backendIds_, CounterKind::kBackend, "backend");
}

Status Registry::setRealHealth(const std::string& service, const IpAddress& addr, bool healthy) {
  return setRealsHealth({HealthVerdict{service, addr, healthy}}).front();
}

namespace {
// setRealsHealth's (service, real) keys, pointing into its verdicts.
struct LastVerdictOrder {
  bool operator()(const std::pair<std::string_view, const IpAddress*>& a,
                  const std::pair<std::string_view, const IpAddress*>& b) const {
    if (a.first != b.first) return a.first < b.first;
    return *a.second < *b.second;
  }
};
}  // namespace

std::vector<Status> Registry::setRealsHealth(const std::vector<HealthVerdict>& verdicts) {
  DataplaneBatch batch(dataplane_);  // as apply()
  std::vector<Status> out(verdicts.size(), Status::ok());
  // Each service's verdicts in their order; a real's last verdict stands
  // for its earlier ones in the same call. (Every step below is linear or
  // n log n in a service's reals and verdicts: a switch failure can take
  // thousands of one service's reals down in one loop turn.)
  std::map<std::string, std::vector<size_t>> byService;
  {
    std::map<std::pair<std::string_view, const IpAddress*>, size_t, LastVerdictOrder> last;
    for (size_t i = 0; i < verdicts.size(); ++i) last[{verdicts[i].service, &verdicts[i].real}] = i;
    for (const auto& [key, i] : last) byService[verdicts[i].service].push_back(i);
    for (auto& [service, mine] : byService) std::sort(mine.begin(), mine.end());
  }
  // Ups before downs: a real that goes down while another comes up is not
  // the last serving one (no fail-open hold, no all_reals_down for a
  // service that never stops serving).
  for (auto& [service, mine] : byService)
    std::stable_partition(mine.begin(), mine.end(), [&](size_t i) { return verdicts[i].healthy; });
  // Each service's writes up to its new ring in a first pass, the writes
  // that must follow its ring (down reals invalidated or marked kept,
  // holdovers released) in a second, so the rings of every service go to
  // the plane together (on XDP one publish for all, RingBatcher) before
  // any real that left one is invalidated. Each service still sees its
  // own writes in the order below.
  struct HealthTail {  // one service's writes after its ring (not updateService's AfterRing)
    ServiceState* state;
    std::string_view service;
    std::vector<size_t> changed, logged;
    std::vector<IpAddress> down, released;
  };
  std::vector<HealthTail> afterRing;
  std::optional<Status> broken;  // the first data-plane error (below)
  for (const auto& [service, indices] : byService) {
    auto sit = services_.find(service);
    if (sit == services_.end()) {
      for (size_t i : indices) out[i] = Status::error("no service named " + service);
      continue;
    }
    ServiceState& state = sit->second;
    // A data-plane error leaves the service half changed: the next apply
    // rewrites it whole (as after a failed apply). Every verdict of the
    // service that changed something reports it.
    std::vector<size_t> changed;
    auto fail = [&](const Status& s) {
      state.rewrite = true;
      for (size_t i : changed) out[i] = s;
    };
    const std::vector<MaglevReal> oldRing = ringReals(state);
    // The order of apply() for each real: an up real's backend is written
    // before the ring that names it; a down real leaves the ring before it
    // is invalidated (or marked kept). The ring is published once, for all.
    std::vector<IpAddress> down, released;
    std::vector<size_t> logged;
    Status st = Status::ok();  // the first data-plane error stops the service's writes
    // Reals that serve (weight > 0 and healthy), and whether any is held,
    // kept up to date as the verdicts change them: a down verdict asks
    // whether another real still serves, an up one whether a holdover is
    // to be released, without a walk of every real.
    size_t serving = 0;
    bool anyHeld = false;
    for (const auto& [a, r] : state.reals) {
      serving += r.weight > 0 && r.healthy;
      anyHeld = anyHeld || r.held;
    }
    for (size_t i : indices) {
      const IpAddress& addr = verdicts[i].real;
      const bool healthy = verdicts[i].healthy;
      auto rit = state.reals.find(addr);
      if (rit == state.reals.end()) {
        out[i] = Status::error("service " + service + " has no real " + addr.toString());
        continue;
      }
      RealState& real = rit->second;
      if (real.healthy == healthy) continue;
      if (healthy && lacksMac(state.config, real.mac)) {
        out[i] = Status::error("service " + service + ": real " + addr.toString() +
                               " cannot come up: l2dsr has no MAC for it yet");
        continue;
      }
      const bool wasInRing = real.inRing();
      real.healthy = healthy;
      if (real.weight > 0) serving = healthy ? serving + 1 : serving - 1;
      changed.push_back(i);
      if (!healthy) {
        const bool othersServe = serving > 0;  // this real no longer counts
        if (wasInRing && !othersServe) {
          logError(LogRecord("all_reals_down")
                       .add("service", service)
                       .add("policy", state.config.healthFailOpen ? "fail-open" : "fail-closed")
                       .add("kept", state.config.healthFailOpen ? addr.toString() : std::string("none")));
          if (state.config.healthFailOpen) {
            // Kept in the ring and VALID at its generation: flows stay put.
            // Written with KEEL_BE_F_HELD (the same generation), so that a
            // restarted keeld adopts it held, not up.
            real.held = true;
            anyHeld = true;
            if (st) st = writeBackend(state, addr, real);
            logInfo(LogRecord("real_down").add("service", service).add("real", addr.toString()).add("held", 1));
            continue;
          }
        }
        // keep: out of the ring as a drained real is, VALID at its
        // generation, so established flows stay; the write only marks it
        // down (adopt()). Decided before the ring, so that the rewrite after
        // a failed publish writes it kept, not !VALID at its old generation.
        real.kept = canKeep(state.config, real);
        down.push_back(addr);
      } else {
        // Up: the real is no holdover any more, and if it serves (weight >
        // 0) it replaces every fail-open holdover, which really is down. A
        // drained real serves nothing, so the held ones stay.
        real.held = false;
        real.kept = false;  // back at the generation it kept
        if (anyHeld) {
          for (IpAddress& r : unholdIfServed(state)) released.push_back(std::move(r));
          anyHeld = std::any_of(state.reals.begin(), state.reals.end(), [](const auto& e) { return e.second.held; });
        }
        // Down already moved the generation on; VALID at that generation.
        if (st) st = writeBackend(state, addr, real);
      }
      logged.push_back(i);
    }
    // A held real released by one verdict may come up by a later one.
    std::erase_if(released, [&](const IpAddress& a) { return state.reals[a].healthy; });
    if (st) {
      const std::vector<MaglevReal> newRing = ringReals(state);
      if (newRing != oldRing) st = publishRing(state, newRing);
    }
    if (!st) {
      fail(st);
      if (!broken) broken = st;
      continue;
    }
    afterRing.push_back({&state, service, std::move(changed), std::move(logged), std::move(down), std::move(released)});
  }
  // A refused write may have taken the others' held writes with it (a
  // plane that holds writes drops them all on a refusal: RingBatcher), so
  // after the first one nothing more is written past a ring: every
  // service changed here fails its verdicts and is written whole by the
  // next apply (keeld applies the running config after a failed verdict).
  for (HealthTail& a : afterRing) {
    if (broken) break;
    ServiceState& state = *a.state;
    Status st = Status::ok();
    for (const IpAddress& addr : a.down) {
      RealState& real = state.reals[addr];
      if (st = real.kept ? writeBackend(state, addr, real) : invalidateBackend(state, addr, real); !st) break;
    }
    if (st) st = invalidateReleased(state, a.released);
    if (!st) broken = st;
  }
  if (Status end = batch.finish(); !end && !broken) broken = end;
  for (HealthTail& a : afterRing) {
    if (broken) {
      a.state->rewrite = true;
      for (size_t i : a.changed)
        if (out[i]) out[i] = *broken;
      continue;
    }
    for (size_t i : a.logged) {
      const RealState& real = a.state->reals[verdicts[i].real];
      LogRecord rec(verdicts[i].healthy ? "real_up" : "real_down");
      rec.add("service", std::string(a.service)).add("real", verdicts[i].real.toString());
      if (!verdicts[i].healthy) rec.add("established", real.kept ? "kept" : "repicked");
      logInfo(rec);
    }
  }
  return out;
}

Status Registry::holdIfNoneServes(const std::string& service, const IpAddress& addr, const std::string& why,
                                  bool* held) {
  *held = false;
  auto sit = services_.find(service);
  if (sit == services_.end()) return Status::ok();
  ServiceState& state = sit->second;
  auto rit = state.reals.find(addr);
  if (!state.config.healthFailOpen || rit == state.reals.end()) return Status::ok();
  RealState& real = rit->second;
  if (real.healthy || real.held || real.weight == 0 || lacksMac(state.config, real.mac)) return Status::ok();
  // In the ring: a held real drained since (weight 0) keeps its flag but
  // serves nothing.
  for (const auto& [a, r] : state.reals)
    if (r.inRing()) return Status::ok();
  real.held = true;
  real.kept = false;  // in the ring now, as any held real
  auto fail = [&](const Status& s) {
    state.rewrite = true;  // the next apply writes the service whole
    return s;
  };
  // As the last real going down is held: VALID | HELD first, then the ring.
  DataplaneBatch batch(dataplane_);
  if (Status s = writeBackend(state, addr, real); !s) return fail(s);
  if (Status s = publishRing(state, ringReals(state)); !s) return fail(s);
  if (Status s = batch.finish(); !s) return fail(s);
  *held = true;
  logError(LogRecord("all_reals_down")
               .add("service", service)
               .add("policy", "fail-open")
               .add("kept", addr.toString())
               .add("detail", why));
  return Status::ok();
}

std::vector<std::string> Registry::failOpenServicesWithoutRing() const {
  std::vector<std::string> out;
  for (const auto& [name, state] : services_) {
    if (!state.config.healthFailOpen) continue;
    bool weighted = false, serving = false;
    for (const auto& [a, r] : state.reals) {
      weighted = weighted || r.weight > 0;
      serving = serving || r.inRing();
    }
    if (weighted && !serving) out.push_back(name);
  }
  return out;
}

std::optional<IpAddress> Registry::ringSlotReal(const std::string& service, uint32_t slot) const {
  auto sit = services_.find(service);
  if (sit == services_.end() || slot >= sit->second.publishedM) return std::nullopt;
  // Built again for the one slot (a lookup is an operator's question: 0.8
  // ms for 10 reals at M = 65,537), rather than kept (ServiceState).
  const uint32_t id = buildMaglevTable(sit->second.publishedReals, sit->second.publishedM)[slot];
  for (const auto& [addr, real] : sit->second.reals)
    if (real.id == id) return addr;
  return std::nullopt;
}

// Each real of a service by its backend id, for reading entries: the
// backend ids a scan meets are looked up here rather than by walking the
// service's reals once per entry.
ConnReals Registry::connReals(const ServiceState& state) const {
  ConnReals out;
  out.past = pastRealsSnapshot();
  out.byId.reserve(state.reals.size());
  for (const auto& [addr, r] : state.reals)
    out.byId.emplace(r.id, ConnReals::Real{addr, r.firstGen, backendGen_[r.id], r.valid()});
  return out;
}

std::optional<ConnView> Registry::connEntry(const std::string& service, const keel_flow_key& key) {
  auto sit = services_.find(service);
  if (sit == services_.end()) return std::nullopt;
  const std::optional<ConnEntry> e = dataplane_.findConn(key);
  if (!e) return std::nullopt;
  const ConnReals reals = connReals(sit->second);
  ConnView v = reals.judge(*e);
  v.why = reals.why(v.state, *e);
  return v;
}

ConnView ConnReals::judge(const ConnEntry& e) const {
  ConnView v;
  v.idleNs = e.idleNs;
  // The same checks, in the same order, as a packet's (lb_ct_lookup, the
  // DPDK worker's lookup): what the backend record holds is what
  // writeBackend()/invalidateBackend() wrote from this state. An entry older
  // than its id's current owner names a real that is gone (the id was
  // reused, allocateBackend); its generation check fails as well.
  auto it = byId.find(e.backendId);
  if (it == byId.end() || e.gen < it->second.firstGen) {
    v.state = ConnState::kRemoved;
    v.real = pastRealOf(past.get(), e);  // the removed real it was written for, if remembered
    return v;
  }
  const Real& real = it->second;
  v.real = real.addr;
  if (!real.up)
    v.state = ConnState::kDown;
  else if (real.gen != e.gen)
    v.state = ConnState::kStale;
  else if (e.expired)
    v.state = ConnState::kIdle;
  else
    v.state = ConnState::kKept;
  return v;
}

std::string ConnReals::why(ConnState state, const ConnEntry& e) const {
  switch (state) {
    case ConnState::kKept:
      return "";
    case ConnState::kNoService:
      return "no service has this VIP, port and protocol now";
    case ConnState::kRemoved: {
      const std::optional<IpAddress> was = pastRealOf(past.get(), e);
      return "its real " + (was ? was->toString() + " " : std::string()) +
             "is no real of this service now (removed; backend id " + std::to_string(e.backendId) +
             ", generation " + std::to_string(e.gen) + ")";
    }
    case ConnState::kDown:
      return "its real is down";
    case ConnState::kStale: {
      auto it = byId.find(e.backendId);  // kStale: the id is a real of the service
      return "its real was down or removed since (generation " + std::to_string(e.gen) + ", now " +
             std::to_string(it == byId.end() ? 0 : it->second.gen) + ")";
    }
    case ConnState::kIdle:
      return "it is idle past the protocol's idle timeout";
  }
  return "";
}

size_t ConnListJob::KeyHash::operator()(const keel_service_key& k) const {
  return std::hash<std::string_view>()(std::string_view(reinterpret_cast<const char*>(&k), sizeof k));
}

bool ConnListJob::KeyEq::operator()(const keel_service_key& a, const keel_service_key& b) const {
  return std::memcmp(&a, &b, sizeof a) == 0;
}

Status Registry::connList(const ConnQuery& query, ConnList* out) {
  *out = ConnList{};
  std::optional<ConnListJob> job;
  if (Status s = prepareConnList(query, &job); !s) return s;
  return job->run(out);
}

Status Registry::prepareConnList(const ConnQuery& query, std::optional<ConnListJob>* job) const {
  job->reset();
  if (query.service && !services_.count(*query.service))
    return Status::error("service " + *query.service + ": no such service");
  // A flow's service, by its destination as the data planes match it: the
  // service key (serviceKey()) with the exact port first, then port 0.
  // Built once per call, with each service's reals by id: the scan may
  // visit a million entries, each looked up here.
  ConnListJob j(dataplane_, query);
  j.past_ = pastRealsSnapshot();
  j.svcs_.reserve(services_.size());
  j.byKey_.reserve(services_.size());
  for (const auto& [name, state] : services_) {
    j.byKey_.emplace(serviceKey(state.config), j.svcs_.size());
    j.svcs_.push_back(ConnListJob::Svc{name, connReals(state)});
  }
  job->emplace(std::move(j));
  return Status::ok();
}

Status ConnListJob::run(ConnList* out) const {
  *out = ConnList{};
  const ConnQuery& query = query_;
  ConnList list;
  static const std::string kNoService;
  std::map<std::pair<const std::string*, std::optional<IpAddress>>, ConnCount> counts;
  Status scan = dataplane_->scanConns([&](const keel_flow_key& key, const ConnEntry& e, int worker) {
    ++list.scanned;
    keel_service_key k{};
    std::memcpy(k.vip, key.dst, sizeof k.vip);
    k.port = key.dport;
    k.proto = key.proto;
    k.family = key.family;
    auto it = byKey_.find(k);
    if (it == byKey_.end()) {
      k.port = 0;
      it = byKey_.find(k);
    }
    const Svc* svc = it == byKey_.end() ? nullptr : &svcs_[it->second];
    if (query.service && (!svc || svc->name != *query.service)) return;
    if (query.client && IpAddress::fromWords(key.src, key.family) != *query.client) return;
    ConnView view;
    if (svc) {
      view = svc->reals.judge(e);
    } else {
      view.idleNs = e.idleNs;
      view.state = ConnState::kNoService;
      view.real = pastRealOf(past_.get(), e);  // its service removed: the real it was written for
    }
    if (query.real && view.real != query.real) return;
    const std::string& name = svc ? svc->name : kNoService;
    if (query.limit == 0) {
      ConnCount& n = counts[{&name, view.real}];
      ++(view.kept() ? n.kept : n.notKept);
    }
    if (++list.matched > query.limit) return;
    view.why = svc ? svc->reals.why(view.state, e) : ConnReals{}.why(view.state, e);
    list.conns.push_back(ConnListed{key, name, std::move(view), worker});
  });
  if (!scan) return scan;
  for (auto& [where, n] : counts) {
    n.service = *where.first;
    n.real = where.second;
    list.counts.push_back(std::move(n));
  }
  std::sort(list.counts.begin(), list.counts.end(), [](const ConnCount& a, const ConnCount& b) {
    return std::tie(a.service, a.real) < std::tie(b.service, b.real);
  });
  *out = std::move(list);
  return Status::ok();
}

ServiceView Registry::viewOf(const std::string& name, const ServiceState& state) const {
  ServiceView v;
  v.name = name;
  v.id = state.id;
  v.vip = state.config.vip;
  v.port = state.config.port;
  v.protocol = state.config.protocol;
  v.forwarding = state.config.forwarding;
  v.scheduler = state.config.scheduler;
  v.ringSize = state.config.ringSize;
  v.publishedRingSize = state.publishedM;
  if (auto it = mtuWarned_.find(name); it != mtuWarned_.end()) v.ipv6Mtu = it->second;
  for (const auto& [addr, real] : state.reals) {
    v.reals.push_back(RealView{addr, real.id, real.weight, backendGen_[real.id], real.healthy,
                               real.inRing(), real.mac, real.held, real.kept, real.firstGen});
  }
  return v;
}

std::vector<ServiceView> Registry::services() const {
  std::vector<ServiceView> out;
  for (const auto& [name, state] : services_) out.push_back(viewOf(name, state));
  return out;
}

std::optional<ServiceView> Registry::service(const std::string& name) const {
  auto it = services_.find(name);
  if (it == services_.end()) return std::nullopt;
  return viewOf(it->first, it->second);
}

RegistryStats Registry::readStats(bool withConnTable) {
  // Only the ids handed out so far: the rest read 0 (never used, or zeroed
  // on release), and the limits may allow many thousands.
  DataplaneStats raw = dataplane_.readStats(serviceIds_.bound(), backendIds_.bound());
  RegistryStats out;
  out.global.dataplane = dataplane_.kind();
  out.global.reasons = raw.reasons;
  if (withConnTable) out.global.connTableEntries = dataplane_.connTableEntries();
  out.global.workers = std::move(raw.workers);
  out.global.port = raw.port;
  out.global.connTableCapacity = dataplane_.connTableCapacity();
  out.global.connInsertsSkipped = raw.connInsertsSkipped;
  out.global.connMidflowMisses = raw.connMidflowMisses;
  out.global.upkeep = dataplane_.upkeep();
  auto counter = [](const std::vector<keel_counter>& v, uint32_t id) {
    return id < v.size() ? v[id] : keel_counter{};
  };
  for (const auto& [name, state] : services_) {
    ServiceStats s{name, state.id, counter(raw.services, state.id), {}};
    for (const auto& [addr, real] : state.reals)
      s.reals.push_back(RealStats{addr, real.id, counter(raw.backends, real.id)});
    out.services.push_back(std::move(s));
  }
  return out;
}

}  // namespace keel

// SPDX-License-Identifier: Apache-2.0
// The service registry: the desired state of every service and real, the
// ids it handed out, and the one place that drives a Dataplane.
//
// Ordering rules (include/keel/maps_abi.h), each chosen so no packet ever
// sees a ring slot pointing at a backend that is not ready:
//  - add real:      upsertBackend(VALID, gen), then publishRing with it
//  - remove / down: publishRing without it, then upsertBackend(gen+1, !VALID)
//                   (every conntrack entry still naming it is now stale)
//  - drain (w=0):   publishRing without it; gen unchanged, established flows stay
//  - down, keep:    (health.established_on_down: keep) as drain: publishRing
//                   without it, then upsertBackend(gen, VALID | KEPT_DOWN),
//                   the flag telling a restarted keeld that it is down
//  - add service:   addVip (refcounted), backends, ring, then upsertService
//  - remove service: removeService, publishRing(empty), invalidate backends,
//                   removeVip when the last service on that VIP is gone
//  - free an id:    resetCounters after the call that stops its use (the
//                   invalidating upsertBackend, or removeService + empty
//                   ring), so a reused id starts at 0; adopt() resets nothing
// apply() diffs a whole Config against what is programmed and issues only the
// calls for what changed, so a reload touches nothing that stayed the same.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/address.h"
#include "common/status.h"
#include "control/config.h"
#include "control/config_diff.h"
#include "control/maglev/maglev.h"
#include "dataplane/dataplane.h"

namespace keel {

struct RealView {
  IpAddress address;
  BackendId backendId = 0;
  uint32_t weight = 0;
  uint32_t gen = 0;
  bool healthy = true;  // health verdict; down reals are out of the ring
  bool inRing = false;  // weight > 0 and (healthy or held)
  std::optional<MacAddress> mac;
  bool held = false;    // down, but kept in the ring by fail-open (all reals down)
  // Down, out of the ring, but VALID at its generation: established flows
  // keep reaching it (health.established_on_down: keep).
  bool kept = false;
  // The generation its backend id had when this real got it: fixed for its
  // life, so a real removed and added again (often given the same id back)
  // has another one. 0: adopted from pins (unknown).
  uint32_t firstGen = 0;
};

// A real that held a backend id and was removed (Registry::releaseBackend):
// an entry carries only its backend id and generation, and each owner of an
// id has its own run of generations (a new owner starts past the generation
// its predecessor's removal gave the id), so an entry at a generation in
// [firstGen, endGen) of that id was written for this real.
struct PastReal {
  IpAddress addr;
  uint32_t firstGen = 0;
  uint32_t endGen = 0;  // the generation its removal gave the id: no entry of it has this or a later one
};
// The removed reals of each backend id, oldest first, the last
// kPastRealsPerId of each (Registry::pastReals_).
using PastReals = std::unordered_map<BackendId, std::vector<PastReal>>;
inline constexpr size_t kPastRealsPerId = 4;
// The removed real entry e was written for, if `past` remembers it.
std::optional<IpAddress> pastRealOf(const PastReals* past, const ConnEntry& e);

// How connEntry() and conn.list judge a connection-table entry of a flow of
// one service: the service's reals by backend id, copied from the registry
// (so the judging may run on another thread; ConnListJob).
struct ConnReals {
  struct Real {
    IpAddress addr;
    // The generation the real's id had when the real got it: an entry
    // written at an older one was the id's previous owner's.
    uint32_t firstGen = 0;
    uint32_t gen = 0;  // the id's generation now
    // healthy, held by fail-open or down with its flows kept
    // (established_on_down: keep): its backend is VALID
    bool up = false;
  };
  std::unordered_map<BackendId, Real> byId;
  // The removed reals (shared, never changed once made): an entry whose id
  // is no real of the service now still names the real it was written for,
  // while the registry remembers it (kRemoved with `real` set).
  std::shared_ptr<const PastReals> past;
  // Entry e's real and state, in the order a packet's checks find it; `why`
  // stays empty (why()).
  ConnView judge(const ConnEntry& e) const;
  // A state in words, with entry e's details.
  std::string why(ConnState state, const ConnEntry& e) const;
};

// A conn.list in two steps, so that the walk of the table (up to ~0.4 s for
// a full XDP map) need not hold the control thread: Registry::prepareConnList
// copies, on the control thread, what judging an entry needs (each
// service's key and its ConnReals); run() then walks the data plane's table
// (Dataplane::scanConns, which may run on any thread) and judges each entry
// against that copy. It reads nothing of the registry, so it may run on
// another thread while the registry changes: entries are judged as the
// registry was when the job was prepared. The Dataplane must outlive it.
class ConnListJob {
 public:
  // The entries the query selects (Registry::connList says how), or the
  // data plane's error (*out is then empty).
  Status run(ConnList* out) const;

 private:
  friend class Registry;
  struct Svc {
    std::string name;
    ConnReals reals;
  };
  struct KeyHash {
    size_t operator()(const keel_service_key& k) const;
  };
  struct KeyEq {
    bool operator()(const keel_service_key& a, const keel_service_key& b) const;
  };
  ConnListJob(Dataplane& dataplane, ConnQuery query) : dataplane_(&dataplane), query_(std::move(query)) {}
  Dataplane* dataplane_;
  ConnQuery query_;
  std::vector<Svc> svcs_;
  // Each service by its key (serviceKey()): an index into svcs_.
  std::unordered_map<keel_service_key, size_t, KeyHash, KeyEq> byKey_;
  // The registry's removed reals: for entries whose service is gone too.
  std::shared_ptr<const PastReals> past_;
};

// The port's MTU against what a service's IPv6 clients need through ipip
// (Ipv6MtuShortfall, below): set while the last check found it short.
struct MtuShortfall {
  uint32_t mtu = 0;     // the port's, when last read
  uint32_t needed = 0;  // 1280 + the outer header
  bool operator==(const MtuShortfall&) const = default;
};

struct ServiceView {
  std::string name;
  ServiceId id = 0;
  IpAddress vip;
  uint16_t port = 0;
  uint8_t protocol = 0;
  Forwarding forwarding = Forwarding::kIpip;
  Scheduler scheduler = Scheduler::kMaglev;
  uint32_t ringSize = 0;
  uint32_t publishedRingSize = 0;  // 0: the data plane holds the empty ring
  std::vector<RealView> reals;  // sorted by address
  // The port's MTU is too small for its IPv6 clients (Registry::checkMtu).
  std::optional<MtuShortfall> ipv6Mtu;
};

// Counters as the data plane keeps them (DataplaneStats), picked by id.
struct RealStats {
  IpAddress address;
  BackendId backendId = 0;
  keel_counter counters{};
};

struct ServiceStats {
  std::string name;
  ServiceId id = 0;
  keel_counter counters{};
  std::vector<RealStats> reals;  // sorted by address (DaemonBackend's statsOf relies on it)
};

struct RegistryStats {
  std::vector<ServiceStats> services;  // sorted by name
  GlobalStats global;                  // the plane-wide figures, dataplane = Dataplane::kind()
};

// An ipip service whose IPv6 clients the port's MTU cannot carry. IPv6
// clients never lower their path MTU below 1280 (RFC 8201), so a packet of up
// to 1280 bytes plus the outer header the balancer puts in front must fit the
// port; below that, the data plane answers packet-too-big, which the client
// ignores, and drops (docs/operations.md, "MTU with ipip").
struct Ipv6MtuShortfall {
  std::string service;
  IpAddress vip;
  uint32_t mtu = 0;          // the port's
  uint32_t outerHeader = 0;  // 40 if a real is IPv6 (ip6ip6), else 20 (6in4)
  uint32_t needed = 0;       // kIpv6MinMtu + outerHeader
};
inline constexpr uint32_t kIpv6MinMtu = 1280;  // RFC 8200 §5

// The services of `services` (in their order) that are ipip, have an IPv6
// VIP and at least one real, and need more than `mtu`. l2dsr does not grow
// packets; an IPv4 VIP's clients lower their path MTU as far as needed.
std::vector<Ipv6MtuShortfall> ipv6MtuShortfalls(const std::vector<ServiceConfig>& services, uint32_t mtu);

class Registry {
 public:
  explicit Registry(Dataplane& dataplane);

  // Makes the programmed state equal to config.services. The config must be
  // valid (parseConfig). Checks id capacity before touching anything. On a
  // data-plane failure it stops and says which service and step failed,
  // with some changes made: it then marks every service for a full rewrite
  // and keeps the VIPs it did not withdraw, so the next apply() converges the
  // data plane to that apply's config whatever the failure left, without
  // leaking an id (keeld exits at start-up, and otherwise re-applies the
  // running config at once).
  // After a successful apply, it checks the port's MTU (checkMtu()). The
  // config is applied all the same: the operator may know their clients.
  // Its data-plane calls form one batch (Dataplane::beginBatch), as do
  // setRealHealth()'s.
  // Each change it makes is logged (docs/operations.md, "Reloads") and, if
  // `changes` is given, appended to it in the same order: what a reload
  // answers it changed (config.reload's `changes`). After a failure they
  // are those made before it.
  Status apply(const Config& config, ConfigChanges* changes = nullptr);
  // apply()'s first step: whether `config` fits the data plane's free ids
  // (limits.max_services, limits.max_reals), an error naming the limit if
  // not. Reads only: a refusal here means nothing was written.
  Status capacityFor(const Config& config) const;
  // One Dataplane batch around several calls of the registry's (a reload's
  // apply, the restore after a failed one, the health sync after it): the
  // DPDK plane then publishes them as one snapshot.
  DataplaneBatch batch() { return DataplaneBatch(dataplane_); }
  // The data plane's periodic upkeep (Dataplane::maintain), for keeld's timer.
  void maintainDataplane() { dataplane_.maintain(); }
  // The node config (tunnel sources, MACs, timeouts, rates), written as it
  // is: it names no service or real, so nothing of the registry's changes.
  Status setNode(const keel_node_config& node) { return dataplane_.setNode(node); }
  // The data plane's key of a service (VIP, port, protocol, family).
  static keel_service_key serviceKey(const ServiceConfig& cfg);
  // Whether a real of `cfg` at `weight` that goes down keeps its
  // established flows, MACs aside (canKeep): under established_on_down:
  // keep, or drained (weight 0), whose drain promised them their end.
  static bool keepsFlowsWhenDown(const ServiceConfig& cfg, uint32_t weight) {
    return cfg.healthKeepEstablished || weight == 0;
  }
  // Reads the port's MTU (Dataplane::portMtu) and logs a warning,
  // mtu_too_small_for_ipv6, for each service ipv6MtuShortfalls() names:
  // once per service, again only when its MTU or need changes (a reload of
  // the same situation says nothing new); and mtu_ok_for_ipv6 for a service
  // warned before that no longer falls short (the MTU raised, the service
  // changed). ServiceView::ipv6Mtu shows what it found. apply() calls it;
  // keeld also calls it every few seconds, since the operator may change
  // the MTU at any time. While the MTU cannot be read, what it found
  // stands for the services that still need it; the rest are let go as
  // above.
  void checkMtu();

  // Restart: take over what a previous keeld programmed (the data plane's
  // pinned state) before the first apply(), so established flows keep their
  // real. Every backend id keeps its generation; a pinned service whose
  // (vip, port, proto) a service of `config` has keeps its service id under
  // that name, and each of its reals listed in `config` keeps its backend id
  // (a VALID backend of that address first), healthy iff it is VALID and
  // not marked KEEL_BE_F_KEPT_DOWN: such a real went down under
  // established_on_down: keep, so it stays down, its flows kept (and out of
  // the ring once apply() rewrites it) until its checks bring it up; if the
  // config now says repick, the first apply() invalidates it. What
  // `config` no longer has is kept under a placeholder name, so apply()
  // removes it by the usual ordering rules; unused VIPs are withdrawn there
  // too. The first apply() rewrites every adopted service (same ids and
  // generations, so packets see no change when the config is the same).
  // Adopted ids keep their counters; a free id that still has counts (left
  // by a keeld from before ids were reset on release, or one killed between
  // an invalidation and its reset) is reset, so its next owner starts at 0.
  Status adopt(const ProgrammedState& programmed, const Config& config);

  // Health verdict for one real (the health checker's transitions). Down
  // takes it out of the ring and invalidates its flows (new generation);
  // up puts it back. Only that service's ring is rebuilt.
  // established_on_down: keep (ServiceConfig::healthKeepEstablished): down
  // only takes it out of the ring; it stays VALID at its generation, as a
  // drained real does, so its established flows stay ("kept"), and up puts
  // it back at that generation. A reload that turns the service to repick
  // invalidates its kept reals (ring first, as for any down real); one that
  // turns it to keep leaves a real already down invalidated (its flows have
  // moved). A real without a MAC (below) is never kept. Removing the real
  // or the service invalidates it as ever.
  // Fail-open (ServiceConfig::healthFailOpen): when the last real serving a
  // service goes down, it stays in the ring with its flows ("held") and
  // all_reals_down is logged at error level: a balancer that drops
  // everything turns a broken check into an outage. Held reals are released
  // (ring without them, then invalidated) as soon as another real serves
  // (healthy and weight > 0: a real coming up, an undrain or reweight, an
  // unchecked real added) or the policy turns fail-closed; a drained real
  // coming up releases nothing. Fail-closed empties the ring.
  // An l2dsr real without a MAC (RealConfig::macPending) is down whatever
  // its health: apply() adds it down and takes an up one down (out of the
  // ring, then invalidated), and an up verdict for it is refused.
  Status setRealHealth(const std::string& service, const IpAddress& real, bool healthy);
  // Several verdicts at once (keeld hands over the checker's transitions of
  // one loop turn together): one Dataplane batch, and each service's ring
  // built and published once for all of its verdicts, with the order of
  // writes above kept for each real (up: backend, then the ring; down: the
  // ring, then the backend). The same outcome as setRealHealth() for each
  // verdict in turn, with a service's ups taken before its downs, except
  // that: a real given twice takes its last verdict only (a flap inside one
  // call moves no flow); a real going down while another comes up is not
  // held by fail-open on the way (no all_reals_down); and a held real that
  // one verdict releases and a later one brings up keeps its generation (its
  // flows stay). The results match
  // `verdicts` one to one; a data-plane error fails every verdict of that
  // service that changed something, marks it for a full rewrite as above,
  // and leaves the other services' verdicts applied.
  struct HealthVerdict {
    std::string service;
    IpAddress real;
    bool healthy = false;
  };
  std::vector<Status> setRealsHealth(const std::vector<HealthVerdict>& verdicts);
  // Fail-open for a service none of whose reals has come up since it was
  // added (a fresh start, a start after a crash, a service added or
  // renamed): `real`, down, with a weight and its MAC, is held as the last
  // real going down is (in the ring, VALID | HELD; all_reals_down logged,
  // `why` its detail), if the service is fail-open and none of its reals
  // is in the ring. *held says whether it was. The caller decides that
  // every other real's check has confirmed it down as well
  // (DaemonBackend::onConfirmedDown).
  Status holdIfNoneServes(const std::string& service, const IpAddress& real, const std::string& why, bool* held);
  // The fail-open services with no real in the ring (serving or held with
  // a weight), though one has a weight: where holdIfNoneServes may have a
  // real to hold.
  std::vector<std::string> failOpenServicesWithoutRing() const;

  // The real in `slot` of the ring last published for `service`; nullopt
  // if the service is unknown, its ring is empty or slot is out of range.
  std::optional<IpAddress> ringSlotReal(const std::string& service, uint32_t slot) const;
  // The connection-table entry of `key`, a flow of `service`, resolved to
  // its real (Dataplane::findConn): nullopt if there is none or no such
  // service. Whether it is kept follows the data plane's rule for a hit:
  // the backend is VALID, belongs to the service and has the entry's
  // generation, and the entry is not idle past its timeout.
  std::optional<ConnView> connEntry(const std::string& service, const keel_flow_key& key);
  // The connection-table entries the query selects (Dataplane::scanConns),
  // each with the service its destination belongs to now (a VIP, port and
  // protocol; a port-0 service takes the ports no other one has) and read
  // as connEntry() reads one; with limit 0 none, but every selected entry
  // counted by service and real (ConnList::counts). An unknown query.service, or a scan the
  // data plane fails, is an error (*out is then empty). The same as
  // prepareConnList() and run() at once.
  Status connList(const ConnQuery& query, ConnList* out);
  // connList() in two steps (ConnListJob): the copy of the registry now,
  // the walk later, on any thread. An unknown query.service is an error
  // (*job is then left empty).
  Status prepareConnList(const ConnQuery& query, std::optional<ConnListJob>* job) const;

  std::vector<ServiceView> services() const;  // sorted by name
  std::optional<ServiceView> service(const std::string& name) const;  // nullopt: no such service
  // The counters of every service and real and the plane-wide ones, from
  // one data-plane read. withConnTable: also count the live connection-table
  // entries (global.connTableEntries), which only stats.get and the
  // metrics show and which costs more than the counters on XDP.
  RegistryStats readStats(bool withConnTable = false);

  // Allocation watermarks, for tests and keelctl.
  size_t serviceCount() const { return services_.size(); }
  // The data plane's kind ("xdp", "dpdk"; "mock" in tests): no counter read.
  std::string dataplaneKind() const { return dataplane_.kind(); }

 private:
  struct RealState {
    BackendId id = 0;
    // The generation `id` had when this real got it: an entry written at an
    // older one was its previous owner's (lookup, connEntry). 0 for a real
    // adopted from pins (unknown).
    uint32_t firstGen = 0;
    uint32_t weight = 0;
    bool healthy = true;
    bool held = false;  // fail-open: down but kept in the ring
    // established_on_down: keep: down and out of the ring, but its backend
    // VALID at its generation (KEEL_BE_F_KEPT_DOWN), so its flows stay.
    bool kept = false;
    std::optional<MacAddress> mac;
    bool inRing() const { return weight > 0 && (healthy || held); }
    bool valid() const { return healthy || held || kept; }  // what writeBackend writes
  };
  struct ServiceState {
    ServiceConfig config;  // as last applied (reals in config order)
    ServiceId id = 0;
    std::map<IpAddress, RealState> reals;
    // The ring as last published, kept as what built it, not as its M
    // slots (256 KiB a service at M = 65,537, most of keeld's memory):
    // Maglev is deterministic, so buildMaglevTable(publishedReals,
    // publishedM) gives the slots again (ringSlotReal). publishedM 0: no
    // ring (empty: no usable real).
    std::vector<MaglevReal> publishedReals;
    uint32_t publishedM = 0;
    // The next apply rewrites it all (every backend, the ring, the service
    // entry): it was taken over by adopt(), or a failed apply left its
    // data-plane state unsure.
    bool rewrite = false;
  };
  // What connEntry() and conn.list judge an entry of a flow of `state` by.
  ConnReals connReals(const ServiceState& state) const;
  // pastReals_ as ConnReals share it: made when first asked for after a
  // change, so a conn.list copies it once, not once per service.
  std::shared_ptr<const PastReals> pastRealsSnapshot() const;
  // Dense ids, lowest free first, so tables stay compact and ids are reused.
  class IdPool {
   public:
    explicit IdPool(uint32_t limit) : limit_(limit) {}
    std::optional<uint32_t> allocate();
    void release(uint32_t id);
    // Marks `id` used (adoption); false if it is out of range or taken.
    bool reserve(uint32_t id);
    bool used(uint32_t id) const;
    uint32_t available() const { return static_cast<uint32_t>(free_.size()) + (limit_ - next_); }
    // Every id ever handed out is below this (ids go lowest first).
    uint32_t bound() const { return next_; }

   private:
    uint32_t limit_;
    uint32_t next_ = 0;
    std::vector<uint32_t> free_;  // min-heap
  };

  ServiceView viewOf(const std::string& name, const ServiceState& state) const;
  static bool lacksMac(const ServiceConfig& cfg, const std::optional<MacAddress>& mac);
  // Whether a real going down (or released by fail-open) under `cfg` keeps
  // its flows: keepsFlowsWhenDown, and a MAC if l2dsr (no backend is ever
  // VALID without one).
  static bool canKeep(const ServiceConfig& cfg, const RealState& real);
  // apply()'s steps; each change made is logged and, if `changes` is
  // given, kept there for apply()'s caller (noteChange, config_diff.h).
  Status addService(const ServiceConfig& cfg, ConfigChanges* changes);
  Status unhookService(const std::string& name);
  Status dropService(const std::string& name, std::vector<IpAddress>& vipsMaybeUnused, ConfigChanges* changes);
  // afterRing: where to put what must follow the service's new ring (reals
  // invalidated and released, the service written last), to be run once
  // every service's ring is written (apply()); null: run here.
  Status updateService(ServiceState& state, const ServiceConfig& cfg, ConfigChanges* changes,
                       std::vector<std::function<Status()>>* afterRing);
  // What updateService found that its writes after the ring need.
  struct AfterRing {
    std::set<IpAddress> wanted;             // the file's reals
    std::vector<IpAddress> released;        // held reals the new ring serves without (unholdIfServed)
    std::set<IpAddress> macLost;            // up or held, and no MAC now: to invalidate
    std::set<IpAddress> unkept;             // kept, and may keep no more: to invalidate
    std::vector<const RealConfig*> added;   // written VALID before the ring
    bool rewrite = false;                   // a rewrite: the down reals are written after the ring
    bool writeServiceLast = false;          // the service entry goes out after everything else
  };
  Status updateServiceAfterRing(ServiceState& state, const ServiceConfig& cfg, ConfigChanges* changes,
                                const AfterRing& after);
  size_t newBackendIds(const Config& config) const;
  // What updateService is about to change in a service it keeps:
  // service_updated (its own keys), real_weight_changed and
  // health_check_changed (docs/operations.md, "Reloads"). Reals added or
  // removed get real_added / real_removed once written.
  static void noteChanges(const ServiceState& state, const ServiceConfig& cfg, ConfigChanges* changes);
  // Fail-open holds reals only while nothing else can serve: once a real
  // (of `only`, if given) is healthy, not held and weighted, or the policy
  // is fail-closed, every held real is released (held cleared). Returns
  // those of `only` to invalidate once a ring without them is published;
  // the rest are being removed, which invalidates them anyway. Every change
  // to a service's reals, weights or policy runs it (updateService,
  // setRealHealth), so a held real never outlives the reason it was held.
  // Under established_on_down: keep a released real is kept, not
  // invalidated (invalidateReleased).
  static std::vector<IpAddress> unholdIfServed(ServiceState& state, const std::set<IpAddress>* only = nullptr);
  // The down path's second step for released reals: a new generation,
  // !VALID, logged as real_down with released=1; under keep (canKeep) the
  // real is kept instead: VALID at its generation, marked down.
  Status invalidateReleased(ServiceState& state, const std::vector<IpAddress>& released);
  // The reals in the service's ring (only those in `only`, if given): what
  // publishRing builds the ring from, and what a ring change compares.
  static std::vector<MaglevReal> ringReals(const ServiceState& state, const std::set<IpAddress>* only = nullptr);
  // Builds the ring of `reals` (ringReals) and hands it to the data plane.
  Status publishRing(ServiceState& state, const std::vector<MaglevReal>& reals);
  Status writeBackend(const ServiceState& state, const IpAddress& addr, const RealState& real);
  // released: the real leaves the service (releaseBackend follows), so the
  // slot is written as no service's (KEEL_SERVICE_NONE).
  Status invalidateBackend(const ServiceState& state, const IpAddress& addr, RealState& real,
                           bool released = false);
  // Writes backend id not VALID at its next generation (owner serviceId,
  // address addr): invalidateBackend's write, and adopt()'s for orphans.
  Status writeInvalid(BackendId id, ServiceId serviceId, const IpAddress& addr);
  // Zeroes an invalidated backend id's counters and returns it to the pool,
  // remembering the real in pastReals_.
  Status releaseBackend(const ServiceState& state, const IpAddress& addr, const RealState& real);
  Status addVipRef(const IpAddress& vip);
  void dropVipRef(const IpAddress& vip, std::vector<IpAddress>& maybeUnused);
  BackendId allocateBackend();

  static uint32_t serviceFlags(const ServiceConfig& cfg);
  static keel_vip_key vipKey(const IpAddress& vip);
  static bool sameKey(const ServiceConfig& a, const ServiceConfig& b);

  Dataplane& dataplane_;
  std::map<std::string, ServiceState> services_;
  std::map<IpAddress, uint32_t> vipRefs_;
  IdPool serviceIds_;
  IdPool backendIds_;
  // Per backend id, survives reuse: a reused id always starts at a newer
  // generation, so conntrack entries of its previous owner stay stale.
  std::vector<uint32_t> backendGen_;
  // The reals released from each backend id, with their runs of
  // generations, so an entry left by a removed real still names it
  // (conn.list's `real` filter finds it). Not those adopted from a previous
  // keeld (firstGen 0: where their run began is unknown), and only the last
  // kPastRealsPerId of an id: older entries name no real.
  PastReals pastReals_;
  mutable std::shared_ptr<const PastReals> pastSnapshot_;  // reset when pastReals_ changes
  // VIPs the next apply withdraws if no service uses them: pinned ones no
  // pinned service uses, or those a failed apply did not get to.
  std::vector<IpAddress> pendingUnusedVips_;
  std::set<IpAddress> unsureVips_;  // a failed addVip/removeVip: announced or not, unknown
  Status failed(Status s, std::vector<IpAddress>& maybeUnusedVips);
  // apply()'s MTU warning, and per service the (mtu, needed) it last warned
  // about, so an unchanged shortfall is not logged on every reload.
  void warnIpv6Mtu(const std::vector<ServiceConfig>& services);
  std::map<std::string, MtuShortfall> mtuWarned_;  // by service: short at the last check
  uint32_t tunnelMtu_ = 0;  // node.tunnel_mtu of the last applied config: caps the port's MTU
};

}  // namespace keel

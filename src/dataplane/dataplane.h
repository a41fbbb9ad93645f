// SPDX-License-Identifier: Apache-2.0
// The one interface between the control plane and a data plane. Two
// implementations (xdp/, dpdk/) and a mock (tests/unit/mocks/). The control
// plane never knows which one it drives.
//
// Contract (the ordering rules live in the control plane's registry):
//  - Every call comes from the control-plane thread. A ring swap
//    (publishRing) and a service entry are atomic as seen by packets: a
//    packet sees the state before the call or after it. So is every call on
//    DPDK (a new snapshot). On XDP a backend or node_config write is the
//    kernel copying the value into an array element in place, which a
//    packet on another CPU may read half-written: the registry's ordering
//    makes that harmless where ids come and go (no ring names a backend id
//    while it is written VALID or invalidated), but a live real's new MAC
//    or a node: change can reach a few packets torn.
//  - Ids are dense small integers chosen by the control plane:
//    ServiceId < limits().maxServices, BackendId < limits().maxBackends.
//  - The structs are the shared ABI of include/keel/maps_abi.h.
#pragma once

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/address.h"
#include "common/status.h"
#include "keel/flow.h"
#include "keel/maps_abi.h"

namespace keel {

using ServiceId = uint32_t;
using BackendId = uint32_t;

// Which per-id counter table resetCounters() zeroes.
enum class CounterKind { kService, kBackend };

struct DataplaneLimits {
  uint32_t maxServices = KEEL_MAX_SERVICES_DEFAULT;
  uint32_t maxBackends = KEEL_MAX_BACKENDS_DEFAULT;
  uint32_t connTableSize = KEEL_CT_SIZE_DEFAULT;
};

// One DPDK worker: the port RX queue it owns and what it received there. RSS
// (or the vdev's fanout) spreads flows over the queues; these counts show
// how evenly. rxPackets is the sum of the worker's reason counters (each
// packet it receives gets exactly one verdict reason).
struct WorkerStats {
  uint32_t worker = 0;  // index = the port's RX queue
  uint32_t lcore = 0;   // EAL lcore it runs on
  uint64_t rxPackets = 0;
  // ICMP errors (frag-needed, packet-too-big, unreachable, time exceeded;
  // path-MTU errors and the others each with a budget) toward a VIP whose
  // quoted flow the worker's own table did not hold for a usable real: RSS hashes an
  // error by the router's and the VIP's addresses, so it rarely reaches the
  // worker that holds the flow, and the worker looks the flow up in the
  // other workers' tables, at most WorkerState::peerLookupRate times a
  // second. By outcome: found there (the error followed its flow to its
  // real), not found (it followed the ring), or refused by that rate limit
  // (it followed the ring without a look). All 0 with one worker.
  uint64_t icmpPeerFound = 0;
  uint64_t icmpPeerNotFound = 0;
  uint64_t icmpPeerRateLimited = 0;
  // The worker's connection table by family (0 IPv4, 1 IPv6): occupied
  // ways and ways. Each family has its own half, which evicts its own
  // flows when full, so this is where a DPDK table's pressure shows (the
  // plane-wide ratio stays near 0.5 when one family alone fills its half).
  std::array<uint64_t, 2> connEntries{};
  std::array<uint64_t, 2> connCapacity{};
  // New flows that evicted a flow still within its idle timeout (its next
  // packet is picked from the ring again): the sign of a table too small,
  // which occupancy cannot give (ways are never emptied).
  std::array<uint64_t, 2> connLiveEvictions{};
  // Frames the worker had decided to send that a full TX queue refused
  // (freed, never sent; a forwarded one is already in the service, real and
  // tx_* reason counts): to the port, to the kernel through the exception
  // interface, and from the kernel out of the port. And the frames from the
  // kernel it did send out of the port.
  uint64_t txDropped = 0;
  uint64_t toKernelDropped = 0;
  uint64_t fromKernel = 0;
  uint64_t fromKernelDropped = 0;
  // net_af_packet only: frames its queue read that the port's kernel
  // interface sent (the host's own, what the kernel forwards: the port's
  // MAC as their source), freed before the packet path, so in no reason
  // count and not in rxPackets (the port's driver counts them).
  uint64_t hostFramesIgnored = 0;
};

// The DPDK port as the NIC (or vdev) counts it (rte_eth_stats, link): what
// arrived but never reached a worker (missed: the RX queue was full;
// no_mbuf: the pool was empty; errors: bad frames) is only here.
struct PortStats {
  uint64_t rxPackets = 0;
  uint64_t rxMissed = 0;
  uint64_t rxNoMbuf = 0;
  uint64_t rxErrors = 0;
  uint64_t txPackets = 0;
  uint64_t txErrors = 0;
  bool linkUp = false;
  uint32_t linkSpeedMbps = 0;  // 0: unknown
};

struct DataplaneStats {
  std::vector<keel_counter> services;            // indexed by ServiceId
  std::vector<keel_counter> backends;            // indexed by BackendId
  std::array<keel_counter, KEEL_R_MAX> reasons{};  // indexed by keel_reason
  // Per worker (DPDK); empty where the plane has no workers of its own (XDP
  // runs in the kernel's NAPI context on whichever CPU took the interrupt).
  std::vector<WorkerStats> workers;
  // The DPDK port's own counters; nullopt where the plane has none (XDP:
  // the kernel's `ip -s link` counts the interface).
  std::optional<PortStats> port;
  // Packets of flows the connection table did not hold, forwarded but not
  // written into it, over node.conntrack_insert_rate (include/keel/rate.h),
  // summed over every CPU (XDP) or worker (DPDK).
  uint64_t connInsertsSkipped = 0;
  // TCP packets without SYN whose flow the connection table did not hold
  // (KEEL_CT_S_MIDFLOW_MISS, include/keel/maps_abi.h), summed the same way.
  uint64_t connMidflowMisses = 0;
};

// What Dataplane::maintain() looks after, as it is now (the metrics).
struct DataplaneUpkeep {
  bool attached = true;       // the program runs on the interface of dataplane.interface's name
  uint64_t reattached = 0;    // times maintain() attached it again
  uint64_t pinsRestored = 0;  // times maintain() pinned missing pins again
  std::string interface;      // dataplane.interface
  std::string mode;           // "native" or "generic" (dataplane.xdp_mode)
  std::string pinDir;         // where its maps and program are pinned
};

// The plane-wide figures shown beside the services (stats.get, the metrics).
// Registry::readStats fills them all (`dataplane` from Dataplane::kind());
// the API's StatsSnapshot and the metrics snapshot carry them as they are.
struct GlobalStats {
  std::string dataplane;  // Dataplane::kind(): "xdp", "dpdk", "mock"
  std::array<keel_counter, KEEL_R_MAX> reasons{};  // DataplaneStats::reasons
  // Dataplane::connTableEntries(); nullopt: not asked for (only stats.get and
  // the metrics ask) or the plane cannot count them (both then omit it).
  std::optional<uint64_t> connTableEntries;
  uint64_t connTableCapacity = 0;    // Dataplane::connTableCapacity()
  std::vector<WorkerStats> workers;  // DataplaneStats::workers: per DPDK worker, empty on XDP
  std::optional<PortStats> port;     // DataplaneStats::port: DPDK only
  uint64_t connInsertsSkipped = 0;   // DataplaneStats::connInsertsSkipped
  uint64_t connMidflowMisses = 0;    // DataplaneStats::connMidflowMisses
  std::optional<DataplaneUpkeep> upkeep;  // Dataplane::upkeep(): XDP only
};

// A flow's connection-table entry (Dataplane::findConn).
struct ConnEntry {
  BackendId backendId = 0;
  uint32_t gen = 0;
  uint64_t idleNs = 0;   // since it was last refreshed (at most once a second)
  bool expired = false;  // idle past its protocol's timeout: the next packet is picked from the ring
};

// Entry v as findConn()/scanConns() report it, read at nowNs on the clock
// its last_seen_ns was written with, expired when idle longer than idleNs
// (its protocol's timeout; 0: none). A last_seen ahead of nowNs (another
// CPU's clock) is idle 0.
inline ConnEntry connEntryAt(const keel_ct_value& v, uint64_t nowNs, uint64_t idleNs) {
  ConnEntry e;
  e.backendId = v.backend_id;
  e.gen = v.gen;
  e.idleNs = v.last_seen_ns < nowNs ? nowNs - v.last_seen_ns : 0;
  e.expired = idleNs != 0 && e.idleNs > idleNs;
  return e;
}

// One entry of a whole-table scan (Dataplane::scanConns): the flow's key,
// its entry, and on DPDK the worker whose table holds it (-1 on XDP, whose
// one table every CPU shares). Called once per occupied entry.
using ConnVisitor = std::function<void(const keel_flow_key& key, const ConnEntry& entry, int worker)>;

// Whether a flow's next packet goes to its entry's real (kKept, the rules
// of a hit in include/keel/maps_abi.h), or why it is picked from the ring
// instead, in the order a packet's checks find it.
enum class ConnState : uint8_t {
  kKept,
  kNoService,  // no service has the flow's VIP, port and protocol now (conn.list only)
  kRemoved,    // the entry's backend id is no real of the service now
  kDown,       // its real is down (not VALID)
  kStale,      // its real was down or removed since the entry was written (another generation)
  kIdle,       // the entry is idle past its protocol's timeout
};
// The API's and keelctl's name of a state.
inline const char* connStateName(ConnState s) {
  switch (s) {
    case ConnState::kKept: return "kept";
    case ConnState::kNoService: return "no_service";
    case ConnState::kRemoved: return "removed";
    case ConnState::kDown: return "down";
    case ConnState::kStale: return "stale";
    case ConnState::kIdle: return "idle";
  }
  return "?";
}

// A flow's entry as the registry reads it (Registry::connEntry): its real,
// and whether the next packet of the flow goes there.
struct ConnView {
  std::optional<IpAddress> real;          // the entry's real; none if its backend id is no real of the service now and the registry does not remember the removed real it was written for (Registry::pastReals_)
  ConnState state = ConnState::kKept;
  std::string why;                        // when not kept: the state in words, with its details
  uint64_t idleNs = 0;                    // ConnEntry::idleNs
  bool kept() const { return state == ConnState::kKept; }
};

// Which entries keelctl conns asks for (Registry::connList); each filter
// left unset selects every entry.
struct ConnQuery {
  std::optional<std::string> service;  // flows to this service's VIP, port and protocol
  std::optional<IpAddress> real;       // entries naming this real
  std::optional<IpAddress> client;     // flows from this client address
  size_t limit = 1000;                 // entries listed at most; 0: none, counts by service and real instead
};

// One listed entry: its flow, the service its destination is now (empty:
// none), and the entry as the registry reads it.
struct ConnListed {
  keel_flow_key key{};
  std::string service;
  ConnView view;
  int worker = -1;  // ConnVisitor's
};

// The entries the query selects, counted by service and real (ipvsadm's
// active connections per real): how many are kept, how many not.
struct ConnCount {
  std::string service;            // empty: no service has the flows' destination now
  std::optional<IpAddress> real;  // none: the entries name no real of the service
  uint64_t kept = 0;
  uint64_t notKept = 0;
};

// A periodic count of the connection table (keeld's
// metrics.flow_count_interval, keel_real_flows): each real of each service
// as the registry had them when the walk began, with its entries (0: none),
// and the totals over every entry, no service's included.
struct FlowCountRow {
  std::string service;
  IpAddress vip;
  uint16_t port = 0;
  uint8_t protocol = 0;
  IpAddress real;
  uint64_t kept = 0;
  uint64_t notKept = 0;
  // Which life of the real the row counts (keeld's RealView): a listing
  // shows a row only for the real it was made for, not for one removed and
  // added again since.
  uint32_t backendId = 0;
  uint32_t firstGen = 0;
};

struct FlowCounts {
  std::vector<FlowCountRow> rows;
  std::map<std::pair<std::string, IpAddress>, size_t> rowOf;  // (service, real) -> its index in rows
  uint64_t kept = 0;     // every entry the walk read
  uint64_t notKept = 0;
  uint64_t scanned = 0;
  std::chrono::system_clock::time_point began;  // entries written after it may be missed
  std::chrono::duration<double> took{0};
};

struct ConnList {
  std::vector<ConnListed> conns;  // the first `limit` matches, in table order
  std::vector<ConnCount> counts;  // with limit 0: every match, by service then real
  uint64_t scanned = 0;           // entries read
  uint64_t matched = 0;           // entries the query selects, listed or not
};

// What a data plane already holds when a restarted keeld adopts it (the XDP
// plane reads its pinned maps). The registry rebuilds its id assignment from
// this, so established flows keep their backend id and generation.
struct ProgrammedState {
  std::vector<keel_vip_key> vips;
  std::vector<std::pair<keel_service_key, keel_service_value>> services;
  std::vector<keel_backend> backends;  // indexed by BackendId, every slot (unused ones are zero)
};

class Dataplane {
 public:
  virtual ~Dataplane() = default;

  virtual std::string kind() const = 0;  // "xdp", "dpdk", "mock"
  virtual DataplaneLimits limits() const = 0;

  virtual Status setNode(const keel_node_config& node) = 0;
  // A VIP must be announced before any service on it is looked up.
  virtual Status addVip(const keel_vip_key& vip) = 0;
  virtual Status removeVip(const keel_vip_key& vip) = 0;
  virtual Status upsertBackend(BackendId id, const keel_backend& backend) = 0;
  virtual Status upsertService(const keel_service_key& key, const keel_service_value& value) = 0;
  virtual Status removeService(const keel_service_key& key) = 0;
  // Replaces the service's ring in one atomic step. slots.size() is M; each
  // entry is a BackendId. An empty vector publishes "no usable backend".
  // By value: a plane that keeps the slots (RingBatcher holds a batch's
  // rings) takes them without a copy of 256 KiB a ring at M = 65537.
  virtual Status publishRing(ServiceId id, std::vector<uint32_t> slots) = 0;
  // Several rings, each as publishRing() would publish it, in order;
  // *published says how many went out (all of them on success, those
  // before the one that failed otherwise). This default calls publishRing
  // for each; the XDP plane makes one kernel call of them, which waits one
  // grace period instead of one per ring (RingBatcher uses it).
  using RingList = std::vector<std::pair<ServiceId, std::vector<uint32_t>>>;
  virtual Status publishRings(const RingList& rings, size_t* published) {
    *published = 0;
    for (const auto& [id, slots] : rings) {
      if (Status s = publishRing(id, slots); !s) return s;
      ++*published;
    }
    return Status::ok();
  }

  // A batch of changes: the calls above made between beginBatch() and the
  // matching endBatch() may reach the packet path together, at endBatch(),
  // instead of one by one. The DPDK plane then publishes one snapshot for
  // the batch (one rebuild and one grace period instead of one per call,
  // which made a start-up or reload of S services cost O(S^2)), so its
  // workers see the batch whole, except where it frees an id: resetCounters
  // publishes what the batch holds so far first (a counter is zeroed only
  // after no packet can use its id), so a batch that releases ids reaches
  // the workers in more than one snapshot. The XDP plane applies each call
  // at once; keeld puts a RingBatcher in front of it, which holds a batch's
  // ring and service writes back and publishes the rings together, keeping
  // each service's own calls in order (ring_batcher.h). So the registry
  // orders its calls as if there were no batch: every prefix of them must
  // forward correctly.
  // Calls nest: DPDK publishes at the outermost endBatch() only; the
  // RingBatcher sends what it holds at every endBatch(), so that a batch's
  // caller learns whether its writes reached the plane. endBatch() says
  // so: an error means what the batch held was not written, and nothing
  // of it is held any more (the caller rewrites what it changed).
  // Reads (findConn, stats, portMtu) are unaffected. Use DataplaneBatch.
  virtual void beginBatch() {}
  virtual Status endBatch() { return Status::ok(); }

  // Zeroes the packet/byte counters of one id (summed over every CPU or
  // worker). The registry calls it when it frees an id, after the call that
  // stops packets from using it, so the id's next owner starts at 0. An id
  // at or above its limit is an error, checked here for every plane.
  Status resetCounters(CounterKind which, uint32_t id) {
    const bool svc = which == CounterKind::kService;
    const DataplaneLimits l = limits();
    const uint32_t limit = svc ? l.maxServices : l.maxBackends;
    if (id >= limit)
      return Status::error(kind() + ": reset counters: " + (svc ? "service" : "backend") + " id " +
                           std::to_string(id) + " >= " + (svc ? "limits.max_services " : "limits.max_reals ") +
                           std::to_string(limit));
    return zeroCounters(which, id);
  }

  // The packet/byte counters: what every view with counters needs. Those of
  // service ids below `services` and backend ids below `backends` (clamped
  // to the limits; the vectors have exactly those sizes). The registry
  // passes its ids' high-water marks (it allocates lowest first and zeroes a
  // released id's counters), so a plane whose limits allow thousands of ids
  // copies only the range in use: on XDP each id is one value per CPU.
  DataplaneStats readStats(uint32_t services, uint32_t backends) {
    const DataplaneLimits l = limits();
    return readCounters(std::min(services, l.maxServices), std::min(backends, l.maxBackends));
  }
  // Every id up to the limits.
  DataplaneStats readStats() { return readStats(UINT32_MAX, UINT32_MAX); }
  // Occupied connection-table entries (idle ones included: neither plane
  // deletes one), if this plane can count them without walking the table;
  // nullopt = it cannot (metrics and keelctl then omit it). Apart from
  // readStats() because only stats.get and the metrics show it, and on XDP
  // it is not a plain map read: each call creates a BPF iterator that
  // visits every map in the system (map_elem_counter.h).
  virtual std::optional<uint64_t> connTableEntries() = 0;
  // The most connection-table entries the plane can hold at once, the
  // bound of connTableEntries() (keel_conntrack_capacity). This default is
  // one table of limits.conn_table_size entries shared by every CPU, as on
  // XDP (whose plane returns its map's max_entries). DPDK has a table per
  // worker with an IPv4 and an IPv6 half each, sized from conn_table_size
  // and rounded up to a power of two of buckets (dpdk/conn_table.h), so
  // its capacity is two to four times conn_table_size (more below 4 x
  // workers: a half has at least one 4-way bucket), and one family alone
  // can fill only half of it.
  virtual uint64_t connTableCapacity() const { return limits().connTableSize; }
  // The connection-table entry of `key` (include/keel/flow.h), as the next
  // packet of that flow would find it, before the checks a hit gets (the
  // backend's validity, service and generation: the registry's,
  // Registry::connEntry); nullopt: none. One lookup of the shared map on XDP; on DPDK a
  // read of every worker's table (the most recently seen entry wins), safe
  // while the workers run. Nothing is written: the entry's age and place in
  // the LRU stay as they were.
  virtual std::optional<ConnEntry> findConn(const keel_flow_key& key) = 0;
  // Every connection-table entry, as findConn() would find it, visited once
  // each (keelctl conns). XDP reads the shared map in batches; DPDK walks
  // every worker's table with the reads findConn() uses, so a flow held by
  // two workers' tables is visited twice, once per worker. Safe while
  // packets flow: an entry written during the scan may or may not be seen.
  // A walk of the whole table (megabytes at the default size): for an
  // operator's command, never for a scrape. Unlike every other call it may
  // run on a thread other than the control thread, concurrently with the
  // control thread's calls (keeld's conn.list walks on a thread of its
  // own, ConnListJob), so it reads only what stays valid while the plane
  // lives.
  virtual Status scanConns(const ConnVisitor& visit) = 0;
  // The MTU of the port packets leave by (the attached interface on XDP,
  // the port on DPDK), read at the time of the call, since the operator may
  // change it; nullopt: unknown. The registry compares it with what IPv6
  // clients of ipip services need (Registry::apply, docs/operations.md).
  virtual std::optional<uint32_t> portMtu() const = 0;
  // Upkeep of what the host can take from under a running plane, which
  // nothing else would notice: keeld calls it every few seconds (and once
  // more before a stop that leaves the plane forwarding), on the control
  // thread. The XDP plane attaches its program again where the interface
  // of dataplane.interface's name lost it (deleted and created again: a
  // new ifindex without a program) and pins again what is missing of its
  // pins, logging what it found and what it did. Maps, rings and the
  // connection table are left as they are, so established flows keep
  // their reals. Default: nothing to look after (DPDK: the port is the
  // process's own).
  virtual void maintain() {}
  // What maintain() found and did (the metrics); nullopt: nothing to
  // look after.
  virtual std::optional<DataplaneUpkeep> upkeep() const { return std::nullopt; }

 protected:
  // resetCounters' work, for an id resetCounters checked is below its limit.
  virtual Status zeroCounters(CounterKind which, uint32_t id) = 0;
  // readStats' work, for counts readStats clamped to the limits.
  virtual DataplaneStats readCounters(uint32_t services, uint32_t backends) = 0;
};

// beginBatch() for as long as it lives, endBatch() when it goes, however
// the scope is left (an early error return included).
class DataplaneBatch {
 public:
  explicit DataplaneBatch(Dataplane& dp) : dp_(dp) { dp_.beginBatch(); }
  // An early return's end: its caller is failing already (and its error
  // says so), so what this end returns adds nothing (RingBatcher logs it).
  ~DataplaneBatch() {
    if (!ended_) (void)dp_.endBatch();
  }
  // The batch's end on success: whether what it held reached the plane.
  Status finish() {
    ended_ = true;
    return dp_.endBatch();
  }
  DataplaneBatch(const DataplaneBatch&) = delete;
  DataplaneBatch& operator=(const DataplaneBatch&) = delete;

 private:
  Dataplane& dp_;
  bool ended_ = false;
};

}  // namespace keel

// SPDX-License-Identifier: Apache-2.0
// keeld's ControlBackend: the control API and the health checker over the
// service registry, all on the daemon's one io_context thread (the checks
// themselves run on the checker's thread, which posts transitions here;
// conn.list's walk of the connection table runs on a thread of its own).
//
// Desired state = the file config + a runtime overlay (keelctl changes).
// The registry is always given the composition of the two, so a runtime
// change is applied exactly like a reload: validated in full, diffed, and
// on error nothing changes.
//
// Overlay rules (docs/configuration.md "Runtime changes"):
//  - real.drain sets the real's ring weight to 0 (generation unchanged, so
//    established flows stay); undrain restores the weight it had.
//  - real.set_weight / real.add / real.remove and service.add/remove are
//    remembered per real (per service) in the overlay.
//  - A reload keeps every overlay entry except those whose real (service)
//    the file itself changed between the previous and the new file: then
//    the file wins and the entry is dropped.
//  - A restart keeps the whole overlay by the same rule (setStatePath).
//
// Health: each real has one HealthChecker target; transitions go to
// Registry::setRealsHealth, those of one loop turn together (flushHealth).
// Checked reals (type != none) start DOWN and come
// up after `rise` passing checks (keepalived behaviour); type none reals
// are up at once. A real the registry already holds (adopted at a restart)
// starts in the registry's state instead. A keeld that starts without
// adopting a data plane (DPDK always) starts a checked real up if the state
// file says the previous keeld stopped cleanly with it up at most
// fall x interval ago (saveAtStop). A reload keeps targets (and their state) for reals that
// stay, updating their check in place when it changed.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>

#include "control/api/control_backend.h"
#include "control/config.h"
#include "control/health/health_checker.h"
#include "control/registry.h"
#include "daemon/next_hop_check.h"
#include "keel/maps_abi.h"

namespace keel {

// Logs real_mac_resolved for a real whose MAC came from the neighbour table.
void logResolvedMac(const std::string& service, const RealConfig& real);

class DaemonBackend : public api::ControlBackend {
 public:
  // Loads a config (keeld passes loadConfigFile with host options).
  using Loader = std::function<ConfigResult(const std::string& path)>;
  // Runs before a reload writes anything (keeld: the warnings for keys a
  // reload cannot apply); returns an error to reject the reload. `started`
  // is the config of the start (startFile_: without its services), the
  // one keeld compares restart keys with.
  using PreApply = std::function<Status(const Config& started, const Config& next)>;
  // The data plane's own MAC now (keeld: the XDP interface's, the DPDK
  // port's); nullopt if it has none to read.
  using PlaneMacSource = std::function<std::optional<MacAddress>()>;
  // Stops the daemon (posted to the loop); the argument is `detach`.
  using Stopper = std::function<void(bool detach)>;

  DaemonBackend(boost::asio::io_context& io, Registry& registry, std::string configPath, Loader loader,
                PreApply preApply, Stopper stopper);
  ~DaemonBackend() override;  // stopConnScans()

  // First apply at start: the file config, no overlay; adds health targets.
  // `adopted`: what a previous keeld left programmed (restart); the registry
  // takes over its ids first (Registry::adopt) and each checked real starts
  // in the state it was left in (VALID = up, unless marked kept down by
  // established_on_down: keep: then down, its flows kept, out of the ring
  // until `rise` passes), so a restart moves no flow;
  // an l2dsr real the neighbour table no longer holds keeps the MAC the
  // adopted plane forwards to (keepAdoptedMacs). Without it, a checked real starts up if the state file's stop record
  // (saveAtStop) has it up and was written at most its check's
  // fall x interval before keeld started (setStartedAt), and an l2dsr real
  // the neighbour table lacks takes the MAC the record saved for it
  // (keepStopMacs; DPDK's exception tap is new at every start, its table
  // empty): a dead real is then taken out no later than a
  // keeld that had kept running would have (plus the restart), and the ring
  // is the one the previous keeld ran (Maglev: the same set of reals). A
  // checked real the record has kept down (established_on_down: keep)
  // starts down but kept (RealConfig::startKept): VALID, so that the
  // connection table a DPDK restart restores still reaches it.
  // `forward` (keeld: DPDK's workers start reading packets) runs once the
  // tables are programmed; if it fails, so does the start. Only a start that
  // forwards compares keel.yaml with the text the keeld before applied
  // (config_changed_while_stopped) and saves its own as that text: a start
  // that failed leaves the next one comparing with the same text, and the
  // runtime state file as it found it (its stop record too).
  Status start(const Config& config, const ProgrammedState* adopted = nullptr,
               const std::function<Status()>& forward = {});
  // At a clean stop (keeld's exit path): writes the state file once more
  // with a stop record, the time, the checked reals that are up and the
  // MACs the neighbour table gave l2dsr reals, for the next keeld's
  // start(). Files written while keeld runs have none, so after a crash
  // checked reals start down and l2dsr reals wait for the table.
  void saveAtStop() const;
  // Applies the health transitions still waiting for their flush (the loop
  // stopped before it ran), and those the checker's thread recorded whose
  // callbacks the loop never ran (every target as the checker has it now):
  // keeld calls it once its loop has ended, before it saves the stop record
  // or leaves the data plane in place, so both hold every transition the
  // checker made. The transitions whose callbacks never ran are logged
  // here as health_changed, so the log holds every one too.
  void applyPendingHealth();
  // Called around every reload (SIGHUP or API): begin, then done with the
  // outcome (keeld tells systemd: RELOADING=1 ... READY=1).
  void setReloadHook(std::function<void(bool done, bool ok)> hook) { reloadHook_ = std::move(hook); }
  // Called once a request that parsed a whole file (a reload, config.check)
  // has freed what the parse took, before its answer is written: keeld
  // posts a malloc_trim then, or the YAML tree's pages stay resident
  // (perf/control/start_memory.py --check: +18-23 MB after a check).
  void setParsedHook(std::function<void()> hook) { parsedHook_ = std::move(hook); }
  // Where the runtime overlay is kept across restarts (keeld:
  // /run/keel/runtime-IFACE.json; call before start()): added services and
  // reals as the requests that made them, removed ones, weights and drains
  // (with the drain's time and reason),
  // each with what the file said about that service/real when it was
  // written. Rewritten after every change. start() replays the requests
  // through the API parser and serviceFrom/realFrom, and applies the
  // "file wins" rule of reloads: an entry whose service/real the file has
  // changed since is dropped (log: runtime_state_dropped). A damaged or
  // foreign file is ignored with a warning. Empty: nothing is kept.
  void setStatePath(std::string path) { statePath_ = std::move(path); }
  // How an l2dsr real given without a MAC gets one before keeld's loop runs
  // (start(): the runtime state file's reals): keeld passes the resolver
  // loadConfigFile uses for keel.yaml at start-up, which waits up to 1 s
  // for the reals it prompts. Empty: such a real is refused (it needs a
  // mac). Call before start().
  //
  // An l2dsr real the table does not have (RealConfig::macPending), from
  // the file, a runtime add or the state file, is accepted and held down:
  // in the registry but out of the ring, with no health checks, shown down
  // with the table's words as its reason. keeld looks such reals up again
  // (resolvePendingMacs) kMacFirstRetry after one starts waiting, then
  // every kMacRetryInterval, until they are found.
  void setMacResolver(MacResolver resolver) { resolveMac_ = std::move(resolver); }
  // The resolver of runtime adds (real.add, service.add), on keeld's loop.
  // keeld's waits at most kRequestMacWait for the reals it prompts (API
  // review M1: an add used to stop the loop for up to 1 s): a live on-link
  // real answers ARP/ND well within it, so its add gets its MAC, and only
  // a real that does not answer is held down, with the warning. Empty:
  // setMacResolver's.
  void setRequestMacResolver(MacResolver resolver) { requestMac_ = std::move(resolver); }
  // The resolver the retries use; keeld's does not wait for an answer
  // (resolveNeighbours with waitMs 0: one table dump, and a nudge for each
  // real still missing, which the next retry finds answered), so keeld's
  // loop never stops for them. Empty: the request resolver.
  void setMacRetryResolver(MacResolver resolver) { retryMac_ = std::move(resolver); }
  // The resolver of refreshTableMacs: keeld's reads the table and nudges
  // nothing (an entry that aged out is no change). Empty: the retries'.
  void setMacRefreshResolver(MacResolver resolver) { refreshMac_ = std::move(resolver); }
  // How long a neighbour-table read on keeld's loop for a request (an add,
  // a reload, config.check) waits for the reals it prompts.
  static constexpr std::chrono::milliseconds kRequestMacWait{50};
  // One retry now (the timer's): one table read for every real waiting for
  // its MAC. Those found take their MAC in the config they came from (so a
  // reload or restart does not lose it), and are applied as new reals are:
  // a checked one comes up after `rise` passing checks, an unchecked one at
  // once. Returns how many were found. The timer is armed whenever a commit
  // leaves a real waiting and stops when none is.
  size_t resolvePendingMacs();
  // The same timer's other half, while an l2dsr real has a MAC the table
  // gave (RealConfig::macResolved; not a file's `mac:`): one table read for
  // those reals, and each whose entry now names another unicast MAC (a NIC
  // swapped, a VM moved, a bond failed over) takes it in the config it came
  // from and in the data plane (same backend, its flows stay),
  // `real_mac_changed`. An entry missing keeps the MAC (it ages out while
  // keel forwards past the kernel). The health checks cannot see such a
  // change (they go through the kernel, which follows it), so without this
  // the real stays up while keel sends its flows to the old MAC. Returns
  // how many changed.
  size_t refreshTableMacs();
  // What the MAC timer runs when it fires: resolvePendingMacs, then
  // refreshTableMacs, then arms itself again (after macRetryInterval).
  void macTick();
  // When the MAC timer fires next (nullopt: not armed); for tests.
  std::optional<std::chrono::steady_clock::time_point> macRetryDue() const {
    if (!macRetryArmed_) return std::nullopt;
    return macTimer_.expiry();
  }
  // The first retry after a real starts waiting: a real that answers the
  // prompt late (after kRequestMacWait; the kernel's next probe is 1 s on)
  // or comes up just after its add is in the ring a moment later, not
  // kMacRetryInterval later. A retry that comes earlier (another real's)
  // does not take its place: the timer is armed again for it.
  static constexpr std::chrono::milliseconds kMacFirstRetry{250};
  // Between two later retries: short enough that a real that comes back is
  // in the ring a few seconds after it answers ARP (then `rise` checks),
  // long enough that the kernel's own resolution (3 probes, 1 s apart) of
  // the last nudge has run before the next; each retry costs one
  // neighbour-table dump and one datagram per waiting real.
  static constexpr std::chrono::seconds kMacRetryInterval{2};
  // The first retry of a state file that could not be written (saveRunningState).
  static constexpr std::chrono::seconds kSaveRetryInterval{5};
  // While the timer's commits fail (the data plane refuses the write: a
  // full map, ENOMEM), each failure doubles the wait before the next try,
  // up to this; any commit that works (the timer's or a request's) ends it.
  // A failing try costs an apply, its restore and an error line.
  static constexpr std::chrono::seconds kMacRetryMaxInterval{64};
  // The wait retryMacsLater arms after a retry (kMacRetryInterval, or more
  // after failed commits); for tests.
  std::chrono::seconds macRetryInterval() const;
  // Makes node: the backend's to write into the data plane (buildNodeConfig):
  // at start(), before the registry programs anything; at each reload,
  // before the registry applies it (node_updated; a write that fails
  // rejects the reload, and a reload the registry then refuses writes the
  // running file's node again); and at each upkeep() where node.local_mac is
  // not set and `planeMac` gives another MAC than the one written: the new
  // one (local_mac_changed, a warning; a write that fails is an error once
  // per MAC, tried again at each upkeep). `where` names the plane in those
  // lines (keeld: "eth0", "net_af_packet0,iface=eth0"). Unset: node: is not
  // written (tests that do not look at it). Call before start().
  void setNodeSource(PlaneMacSource planeMac, std::string where) {
    planeMac_ = std::move(planeMac);
    planeWhere_ = std::move(where);
  }
  // The node config written last (nullopt before start() or without
  // setNodeSource); for tests.
  const std::optional<keel_node_config>& node() const { return node_; }
  // Turns on the check of node.next_hop_mac against the router the kernel
  // routes the ipip reals through (NextHopCheck): `routes` looks up the
  // routes (keeld: routesTo), the gateways' neighbour entries are read with
  // the retries' resolver (keeld's nudges a missing one and does not wait).
  // Run by upkeep() and by a commit that changes next_hop_mac. Unset: no
  // check, and no keel_next_hop_mac_mismatch. Call before start().
  void setRouteResolver(RouteResolver routes);
  // Each family with ipip reals and whether next_hop_mac mismatches its
  // router now (keel_next_hop_mac_mismatch); empty without the check.
  std::map<std::string, bool> nextHopMismatches() const {
    return nextHop_ ? nextHop_->mismatches() : std::map<std::string, bool>{};
  }
  // What the upkeep timer runs every dataplane.upkeep_interval (5 s unless
  // set; a reload applies a new one): the data plane's upkeep
  // (Dataplane::maintain: an interface made again, pins removed), then a
  // new MAC of the plane (setNodeSource), the MTU check (both of the
  // interface maintain attached to), and the next_hop_mac check.
  void upkeep();
  // upkeep() as soon as the loop has run what is ready, once however often
  // it is asked before then: keeld's LinkWatch asks on every link message
  // for the interface, so a change is seen at once, not at the next tick
  // (which stays, as the fallback). Before start(): nothing.
  void upkeepSoon();
  // When the upkeep timer fires next (nullopt: not armed); for tests.
  std::optional<std::chrono::steady_clock::time_point> upkeepDue() const {
    if (!upkeepArmed_) return std::nullopt;
    return upkeepTimer_.expiry();
  }
  // The options config.check parses a client's text with: keeld passes the
  // host checks its own file gets (interfaces, neighbour table). Default:
  // none.
  void setCheckOptions(ConfigOptions options) { checkOptions_ = std::move(options); }
  // When keeld's process started: start() measures the stop record's age
  // to it (unset: to start() itself), so a start-up's own seconds (DPDK's
  // EAL and tables) do not count against fall x interval.
  void setStartedAt(std::chrono::system_clock::time_point at) { startedAt_ = at; }
  // What daemon.status says of keeld: its version, and the text of the
  // file start() is given (keeld's loadConfigFile read it; a reload keeps
  // the text it applies), which the file on disk is compared with. Call
  // before start().
  void setVersion(std::string version) { version_ = std::move(version); }
  void setStartText(std::string text) { appliedText_ = std::move(text); }
  // Where the text of the file running is kept for the next keeld (keeld:
  // /run/keel/applied-IFACE.yaml, beside the runtime state file; written
  // at a start and at each reload that works): a start that finds another
  // text there logs what keel.yaml changed while no keeld ran
  // (logChangesWhileStopped). Empty: none is kept or compared. Call before
  // start().
  void setAppliedPath(std::string path) { appliedPath_ = std::move(path); }
  // keeld --detach-on-exit: its stop takes the XDP plane out, so a restart
  // applies what a reload cannot (config.reload's stop_start_needed).
  void setStopDetaches(bool detaches) { stopDetaches_ = detaches; }

  // ControlBackend
  std::vector<api::ServiceSnapshot> listServices() override;
  std::optional<api::ServiceSnapshot> findService(const std::string& name) override;
  std::vector<api::ServiceSnapshot> serviceStates(const std::optional<std::string>& only) override;
  std::optional<IpAddress> ringSlotReal(const std::string& service, uint32_t slot) override;
  std::optional<ConnView> connEntry(const std::string& service, const keel_flow_key& key) override;
  // Prepared here (Registry::prepareConnList), walked on connScans_, and
  // answered through the loop; at most kMaxConnScans at a time.
  void connList(const ConnQuery& query, ConnListDone done) override;
  std::optional<std::string> connListRefusal() override;
  std::optional<std::string> takeUnsavedState() override { return std::exchange(unsaved_, std::nullopt); }
  api::StatsSnapshot servicesAndGlobalStats() override;
  api::Result addService(const api::ServiceAddRequest& request) override;
  api::Result removeService(const std::string& name) override;
  api::Result addReal(const api::RealAddRequest& request) override;
  api::Result removeReal(const api::RealRef& real) override;
  api::Result setRealWeight(const api::RealWeightRequest& request) override;
  api::Result setRealDrain(const api::RealDrainRequest& request) override;
  api::Result checkConfig(const std::string& text, const std::string& name) override;
  api::Result reload() override;
  api::DaemonStatus daemonStatus() override;
  void shutdown(bool detach) override;
  bool canDetach() const override { return canDetach_; }
  // keeld: whether its data plane outlives it (DaemonDataplane::canDetach).
  void setCanDetach(bool can) { canDetach_ = can; }

  // Waits for a connection-table walk that is running and drops those that
  // wait (their answers never come): keeld calls it when its loop has
  // stopped, before the data plane goes. Idempotent.
  void stopConnScans();
  // conn.list requests walking or waiting at once; past it one is refused.
  static constexpr size_t kMaxConnScans = 4;

  // The last periodic walk's counts of the connection table (FlowCounts,
  // for keel_real_flows); null until the first walk has ended, or if walks
  // are off. Shared: a scrape copies the pointer, not the rows.
  std::shared_ptr<const FlowCounts> flowCounts() const { return flowCounts_; }
  // Walks that failed (their counts are not kept; the log says why).
  uint64_t flowCountFailures() const { return flowCountFailures_; }
  // Walks the table now and then every `interval` (metrics.flow_count_interval;
  // 0: never), on conn.list's thread, one walk at a time. keeld calls it
  // once, after start(); from then on a reload that changes the interval
  // applies it (the next walk is now, or once a walk still running ends,
  // whose counts are dropped; at 0s the last counts go).
  void startFlowCounts(std::chrono::milliseconds interval);
  // When the next walk's timer fires (nullopt: counts not started, or off);
  // for tests, as upkeepDue(). countFlows() arms it at every tick, so it is
  // armed exactly while a setting with an interval is in force.
  std::optional<std::chrono::steady_clock::time_point> flowCountDue() const {
    if (flowCountSetting_ == 0 || flowCountInterval_.count() <= 0) return std::nullopt;
    return flowTimer_.expiry();
  }
  // Whether a walk is running: set on the loop as it is handed to the walk's
  // thread, cleared by that thread after it posted the result to the loop
  // (so once this reads false, a poll() of the loop handles that result);
  // for tests.
  bool flowWalkRunning() const { return flowWalkRunning_->load(); }

  const Config& fileConfig() const { return file_; }
  // The metrics' view of daemon.status: whether the last reload was applied
  // (true before any), and when the running file was (nullopt before start()).
  bool lastReloadOk() const { return !lastReload_ || lastReload_->ok; }
  // When keeld's process started (setStartedAt); nullopt if not given.
  std::optional<std::chrono::system_clock::time_point> startedAt() const { return startedAt_; }
  std::optional<std::chrono::system_clock::time_point> configAppliedAt() const {
    if (appliedBy_.empty()) return std::nullopt;
    return appliedAt_;
  }
  HealthChecker& checker() { return checker_; }

 private:
  // checkConfig() without the parsed hook: its parse's memory is freed on return.
  api::Result checkConfigText(const std::string& text, const std::string& name);
  bool canDetach_ = true;
  struct RealOverride {
    std::optional<RealConfig> added;      // real.add of a real the file lacks
    std::optional<api::RealSpec> addedSpec;  // the request `added` was built from
    bool removed = false;                 // real.remove
    std::optional<uint32_t> weight;       // real.set_weight
    bool drained = false;                 // real.drain
    // While drained: when the drain began (whole seconds, as shown and
    // saved; unset for a drain a keeld without this record saved) and the
    // operator's reason (empty: none).
    std::optional<std::chrono::system_clock::time_point> drainedSince;
    std::string drainReason;
    // No change at all: the entry can go.
    bool none() const { return !added && !removed && !weight && !drained; }
    // For a real the file defines, as `fileReal`: keelctl removed it and
    // added it back. It runs as the file's real (compose), so the add is
    // no change, and its weight one only where the request gave one other
    // than the file's (none given: the file's, not keel.yaml's default).
    void asFileReal(const RealConfig& fileReal) {
      if (addedSpec && !addedSpec->weight) weight.reset();
      added.reset();
      addedSpec.reset();
      if (weight == fileReal.weight) weight.reset();
    }
  };
  struct AddedService {
    ServiceConfig config;
    api::ServiceAddRequest request;  // what it was built from (the state file keeps it)
  };
  struct Overlay {
    std::map<std::string, AddedService> addedServices;
    std::set<std::string> removedServices;
    std::map<std::pair<std::string, IpAddress>, RealOverride> reals;
    bool empty() const { return addedServices.empty() && removedServices.empty() && reals.empty(); }
  };
  struct Target {
    HealthTargetId id = 0;
    IpAddress vip;
    uint16_t port = 0;
    uint8_t protocol = 0;
  };

  Config compose(const Config& file, const Overlay& overlay) const;
  bool startsUp(const std::string& service, const RealConfig& real) const;
  bool startsKept(const std::string& service, const RealConfig& real) const;
  bool startsHeld(const std::string& service, const RealConfig& real) const;
  // A runtime request as keel.yaml would have it: health resolved the same
  // way, l2dsr MACs from the neighbour table: `macs` must have asked for
  // every l2dsr real the request gives without a mac (macsFor(), one table
  // read for a request; loadState gathers a whole state file for one read). Errors are
  // appended ("request: params...: ..."); nullopt then. `serviceCheck`, if
  // given, gets the service's own check (resolveServiceHealth's).
  std::optional<ServiceConfig> serviceFrom(const api::ServiceAddRequest& request, const MacLookup& macs,
                                           std::vector<std::string>& errors,
                                           std::optional<HealthCheckSpec>* serviceCheck = nullptr) const;
  // kChecked: the caller has reported the mistakes of the service's own
  // health block (serviceFrom, through resolveServiceHealth), so a real
  // appends only those of its own block, not the service's once more.
  enum class ServiceHealthBlock { kReport, kChecked };
  std::optional<RealConfig> realFrom(const ServiceConfig& service, const api::RealSpec& spec,
                                     const std::string& servicePath, const std::string& realPath,
                                     const MacLookup& macs, std::vector<std::string>& errors,
                                     ServiceHealthBlock serviceBlock = ServiceHealthBlock::kReport) const;
  // One neighbour-table read for these reals (on neighbourInterface_, with
  // `resolver`).
  MacLookup lookUpMacs(const std::vector<IpAddress>& reals, const MacResolver& resolver) const;
  // The requests' resolver (setRequestMacResolver), else resolveMac_; the
  // retries' (setMacRetryResolver), else the requests'.
  const MacResolver& requestMacResolver() const { return requestMac_ ? requestMac_ : resolveMac_; }
  const MacResolver& retryMacResolver() const { return retryMac_ ? retryMac_ : requestMacResolver(); }
  const MacResolver& refreshMacResolver() const { return refreshMac_ ? refreshMac_ : retryMacResolver(); }
  // One request's read: the reals it gives without a mac if `l2dsr` (the
  // service's forwarding), none otherwise; what serviceFrom/realFrom need.
  MacLookup macsFor(bool l2dsr, const std::vector<api::RealSpec>& reals) const;
  api::Result reloadFile();
  // The keys of the running file that only a restart applies (compared with
  // the file keeld started with), and of those the ones a restart does not
  // apply either: config.reload's restart_needed / stop_start_needed.
  std::pair<std::vector<std::string>, std::vector<std::string>> waitingForRestart() const;
  OwnAddresses hostOwnAddresses() const;
  // healthSourceNotLocal's warning for a check source this host lacks
  // (checkOptions_.addressIsLocal), as a runtime add's answer says it.
  std::optional<std::string> sourceWarning(const IpAddress& source) const;
  api::Result addWarnings(api::Result r, Forwarding forwarding, const std::vector<RealConfig>& reals,
                     std::vector<std::string> more = {}) const;
  void keepResolvedMacs(Config& next) const;
  // The file's reals (before loadState reads the overlay against them), and
  // then the overlay's: reals keelctl added, to a file service or in a
  // service it added (upgrade review H1: they went down with "no MAC" and
  // lost their connections).
  static void keepAdoptedMacs(Config& c, const ProgrammedState& adopted);
  static void keepAdoptedMacs(const Config& file, Overlay& overlay, const ProgrammedState& adopted);
  // The same for a start without adoption (during start(), startFrom_ set):
  // the file's reals, then the overlay's, take the MAC the stop record
  // saved (stopMac), logged as real_mac_kept_from_stop.
  void keepStopMacs(Config& file, Overlay& overlay) const;
  // The MAC the stop record saved for l2dsr real `r` of `svc`, if the
  // record is recent enough for it as for its health: within the real's
  // fall x interval (startsUp's window; a real without checks: its spec's
  // defaults, 3 x 1 s), or at any age for a real the record starts kept or
  // held (startsKept, startsHeld), which needs its MAC to be VALID.
  std::optional<MacAddress> stopMac(const ServiceConfig& svc, const RealConfig& r) const;
  // True if a real started waiting (its first retry comes soon).
  bool notePendingMacs(const Config& next);
  void retryMacsLater(bool soon);
  using RealKey = std::pair<std::string, IpAddress>;  // (service, real)
  // Each real where its config comes from (the file's, a service.add's, a
  // real.add's): where a MAC found later is written, so that every later
  // compose() has it (resolvePendingMacs, refreshTableMacs).
  static void forEachRealSource(Config& file, Overlay& overlay,
                                const std::function<void(const std::string& service, RealConfig&)>& f);
  // The one step of both keepKnownMacs overloads: a
  // real waiting for its MAC takes the one `known` has for it.
  static bool takeKnownMac(
      const ServiceConfig& svc, RealConfig& r,
      const std::function<std::optional<MacAddress>(const ServiceConfig&, const RealConfig&)>& known);
  static std::vector<RealKey> keepKnownMacs(
      Config& c, const std::function<std::optional<MacAddress>(const ServiceConfig&, const RealConfig&)>& known);
  // The overlay's half: the reals keelctl added, to a file service or in a
  // service it added; `took` is told of each that took a MAC.
  static void keepKnownMacs(
      const Config& file, Overlay& overlay,
      const std::function<std::optional<MacAddress>(const ServiceConfig&, const RealConfig&)>& known,
      const std::function<void(const std::string& service, const RealConfig&)>& took);
  // The checked reals that are up, and when, as saveAtStop records them;
  // and those kept down (established_on_down: keep), which start kept down.
  struct StopRecord {
    std::chrono::system_clock::time_point at;
    std::set<RealKey> up;
    std::set<RealKey> kept;
    std::set<RealKey> held;  // down, kept in the ring by fail-open
    // The l2dsr reals' MACs the neighbour table gave (RealConfig::macResolved;
    // a file's `mac:` needs none): the next start's table may lack them.
    std::map<RealKey, MacAddress> macs;
  };
  // Set by a request's commit() when saveState() failed, taken by its
  // reply; cleared by a later good save (the file holds the whole state).
  std::optional<std::string> unsaved_;
  // While loadState() replays the saved requests: their health values are
  // read by their text, as the keeld that accepted them did (jsonToYaml).
  mutable bool replayingState_ = false;
  // A state file that could not be written (disk full, read-only) is
  // written again kSaveRetryInterval later, the wait doubling with each
  // failure up to 16 times that, until it is (review_faults F5: it waited
  // for the next change, so a crash meanwhile lost the changes made since,
  // drains included); the failures in a row, 0 when saved.
  unsigned saveFailures_ = 0;
  // saveState() for the running state, with the retry above.
  std::optional<std::string> saveRunningState();
  // Writes the state file; the reason it could not, logged too.
  std::optional<std::string> saveState(const StopRecord* stop = nullptr) const;
  // The overlay the state file keeps; its stop record into *stop if given.
  Overlay loadState(const Config& file, std::optional<StopRecord>* stop = nullptr) const;
  // setAppliedPath's file: the text it holds (nullopt: none, or unreadable),
  // and appliedText_ written into it (at a start and a reload that worked;
  // a failure is logged, applied_config_not_saved).
  std::optional<std::string> readAppliedFile() const;
  void saveAppliedFile();
  // At a start that finds the text the keeld before applied (`before`) and
  // it is not this file's: config_changed_while_stopped, then what changed
  // in the services `now` keeps (matched by VIP, port and protocol, as an
  // adopting start matches them) and in the node, as a reload's records
  // (keptServiceChanges, real_mac_changed, node_updated).
  void logChangesWhileStopped(const std::string& before, const Config& now) const;
  // A state file start() cannot use (`error`): renamed to PATH.bad-TIME
  // before the next save overwrites it, and runtime_state_ignored logged
  // with where it is now (kept_as) and what the operator loses.
  // Renames the file to .bad-STAMP; `savedOver` (a commit that went in
  // without the changes has saved over it by then): writes `original`, the
  // text this start read, to that name instead (none if it could not be
  // read).
  void stateIgnored(const std::string& error, bool savedOver = false, const std::string* original = nullptr) const;
  // Set by stateIgnored (the state file moved aside as unusable) during a
  // start: a start that then fails to forward does not put that file back.
  mutable bool stateMovedAside_ = false;
  // runtime_state_kept for each entry of the overlay start() applied.
  static void logKept(const Overlay& o);
  // Applies file+overlay; on success commits both and syncs health targets.
  // Each change it logs is appended to `changes` if given (a reload's reply).
  api::Result commit(const Config& file, Overlay overlay, ConfigChanges* changes = nullptr);
  // commit() that no request waits on (start, the MAC timers): a failed
  // save is logged (runtime_state_not_saved), not told to the reply of a
  // later, unrelated request.
  api::Result commitUnasked(const Config& file, Overlay overlay);
  void macApplyFailed(const api::Result& r);
  size_t applyTableMacs(const std::map<RealKey, MacAddress>& moving);
  void takeMacsOfRealsComingUp(const std::vector<Registry::HealthVerdict>& verdicts);
  void syncHealth(const Config& effective);
  // After a failed apply or health transition (the registry then rewrites
  // what it left half done): applies effective_ again and syncs health. The
  // outcome of that apply; nullopt before the first commit (nothing ran).
  std::optional<Status> restoreRunning();
  // A checker transition: logged at once, handed to the registry with the
  // others of the same loop turn (flushHealth).
  void onHealthChange(HealthTargetId id, const HealthTarget& target, bool up, const std::string& reason);
  // Fail-open for a service none of whose reals has come up since it was
  // added (a start without a stop record, a service added or renamed): in
  // every fail-open service without a real serving or held, once each
  // checked real with a weight has failed `fall` checks in a row (the
  // checker's state, not an event: a reload to fail-open, an undrain, a
  // held real removed all count), one is held (Registry::holdIfNoneServes),
  // so a service whose checks fail while it works does not stay dark.
  // Run when the checker confirms a real down (setOnConfirmedDown), after
  // each flush of health verdicts and after each commit.
  void ensureFailOpenHolds();
  // The health_changed record of a transition (and what becomes of the
  // real's established flows when it goes down).
  void logHealthChange(const HealthTarget& target, bool up, const std::string& reason) const;
  // Every real as the registry has it now: its health verdict, and whether
  // fail-open holds it (RealConfig::startHeld asks for that, but
  // Registry::addService does not hold it when a real of its service starts
  // up).
  struct RegistryReal {
    bool healthy = false;
    bool held = false;
  };
  std::map<RealKey, RegistryReal> registryReals() const;
  // The transitions since the last flush, as the checker holds them now, in
  // one Registry::setRealsHealth: each service's ring is rebuilt once for
  // all of them, and the DPDK plane publishes one snapshot. Runs when the
  // loop has run what was ready (a zero timer), so the transitions that
  // arrive together (a start-up, a switch that takes many reals down) are
  // applied together, and the busier the loop, the more each flush takes.
  void flushHealth();
  // One service as the API shows it: `stats` its counters (nullptr: none
  // read), `effective`/`file` its entry in effective_/file_ (nullptr: none).
  api::ServiceSnapshot snapshotOf(const ServiceView& view, const ServiceStats* stats,
                                  const ServiceConfig* effective, const ServiceConfig* file) const;
  // One service, looked up by name in `stats`, effective_ and file_.
  api::ServiceSnapshot snapshotOf(const ServiceView& view, const RegistryStats& stats) const;
  // A runtime change a reload gives up (rebase), reported once the reload
  // is applied: logged as runtime_state_dropped and in the reply's warnings.
  struct Dropped {
    std::string service, real;  // real: empty for a service's entry
    std::string change;         // "drain", "weight 50", "removal", "added service", ...
    std::string why;            // "the file changed this real"
  };
  static Overlay rebase(const Config& oldFile, const Config& newFile, const Overlay& overlay,
                        std::vector<Dropped>& dropped);
  // The composed-config problems of `composed` (compose(file, next)), each
  // worded as a keelctl change's with its way out, else its checks'
  // targets' (validateTargets); reload and config.check.
  static std::vector<std::string> overlayErrors(const Config& composed, const Overlay& next);

  boost::asio::io_context& io_;
  Registry& registry_;
  std::vector<api::ServiceSnapshot> servicesOf(const RegistryStats& stats) const;
  std::string configPath_;
  Loader loader_;
  // The file of the first commit (keeld's start): what the data plane, the
  // socket and the endpoint were built with (restartNeededKeys), without
  // its services (startShape).
  std::optional<Config> startFile_;
  PreApply preApply_;
  Stopper stopper_;
  std::function<void(bool done, bool ok)> reloadHook_;
  std::function<void()> parsedHook_;
  std::string statePath_;
  bool committed_ = false;  // a commit succeeded: effective_ is what the data plane runs
  // daemon.status: setVersion's; whether start() adopted a plane; when the
  // running file was applied and by what, and its text (setStartText, then
  // each good reload's); the last reload's outcome; the state file's last
  // write error (empty: saved).
  std::string version_;
  bool adopted_ = false;
  bool adopting_ = false;  // during start()'s commit of an adopted plane
  std::chrono::system_clock::time_point appliedAt_{};
  std::string appliedBy_;
  std::optional<std::string> appliedText_;
  std::string appliedPath_;
  bool appliedSaved_ = false;  // appliedText_ is what the file holds
  std::optional<api::ReloadOutcome> lastReload_;
  // Set by a restore that failed (restoreRunning, the node config's) during
  // the reload running now: its outcome says the running config was not kept.
  bool restoreFailed_ = false;
  // A refused reload's node config could not be put back: the plane holds
  // the refused file's node until a node write works (writeNode).
  bool nodeUndoFailed_ = false;
  std::string saveError_;
  MacResolver resolveMac_;
  MacResolver requestMac_;
  MacResolver retryMac_;
  MacResolver refreshMac_;
  bool stopDetaches_ = false;
  // refreshTableMacs: the other MAC each real's entry named at the last
  // read; a real moves to it when the next read names it again.
  std::map<std::pair<std::string, IpAddress>, MacAddress> macCandidates_;
  // The reals waiting for their MAC in effective_, since when (notePendingMacs).
  std::map<std::pair<std::string, IpAddress>, std::chrono::system_clock::time_point> macPendingSince_;
  boost::asio::steady_timer macTimer_{io_};
  boost::asio::steady_timer saveRetryTimer_{io_};  // saveRunningState's (after io_)
  bool macRetryArmed_ = false;
  // The timer's commits that failed in a row (macRetryInterval).
  unsigned macApplyFailures_ = 0;
  // The first retry of the real that started waiting last (retryMacsLater).
  std::chrono::steady_clock::time_point macFirstRetryAt_{};
  ConfigOptions checkOptions_;
  std::string neighbourInterface_;  // dataplane.interface at start (a reload cannot change it)
  Config file_;       // the file as last applied
  Overlay overlay_;   // runtime changes on top of it
  Config effective_;  // compose(file_, overlay_), what the registry holds
  std::map<std::pair<std::string, IpAddress>, Target> targets_;
  // During start() only, without adoption: the stop record's reals and how
  // long ago it was written (read once), for compose() (startsUp) and
  // keepStopMacs.
  struct StartFrom {
    std::set<RealKey> up;
    std::chrono::system_clock::duration ago;
    std::set<RealKey> kept;
    std::set<RealKey> held;
    std::map<RealKey, MacAddress> macs;
  };
  std::optional<StartFrom> startFrom_;
  std::optional<std::chrono::system_clock::time_point> startedAt_;
  HealthChecker checker_;
  // The targets whose transitions wait for flushHealth, each with the
  // state its health_changed record last logged; not empty exactly while
  // healthFlush_ is armed.
  std::map<HealthTargetId, bool> pendingHealth_;
  // Each target's transition count as applyPendingHealth applied it (at
  // stop), for saveAtStop to record the transitions made after it.
  std::map<HealthTargetId, uint64_t> appliedTransitions_;
  boost::asio::steady_timer healthFlush_{io_};
  // The one thread conn.list walks the connection table on, so that keeld's
  // loop goes on serving health checks, scrapes and requests: a full XDP
  // table takes ~0.3 s to read (docs/api.md). One walk at a time.
  boost::asio::thread_pool connScans_{1};
  // setNodeSource's: where the plane's MAC is read, the node config written
  // last, the plane MAC it holds as local_mac (if it does: the file sets no
  // local_mac), and the MAC whose write failed last (said once).
  PlaneMacSource planeMac_;
  std::string planeWhere_;
  std::optional<keel_node_config> node_;
  std::optional<MacAddress> writtenPlaneMac_;
  std::optional<MacAddress> macFailedFor_;
  // Writes `next`'s node: (with the plane's MAC read now) if it differs
  // from node_; nothing without setNodeSource. The change it logs
  // (node_updated) is appended to `changes` if given.
  Status writeNode(const Config& next, ConfigChanges* changes = nullptr);
  // `c`'s node config with the plane's MAC read now (into `mac`; the last
  // one read if it cannot be now); nullopt and `err` if it cannot be built.
  // Needs setNodeSource.
  std::optional<keel_node_config> nodeFor(const Config& c, std::optional<MacAddress>& mac, std::string& err) const;
  // upkeep()'s half of it: the plane's MAC read again (local_mac_changed).
  void followPlaneMac();
  // setRouteResolver's check; null without it.
  std::unique_ptr<NextHopCheck> nextHop_;
  void checkNextHop();
  // upkeep() every upkeepInterval_ (upkeepLater), and once soon (upkeepSoon).
  boost::asio::steady_timer upkeepTimer_{io_};
  bool upkeepArmed_ = false;
  bool upkeepPosted_ = false;
  std::chrono::milliseconds upkeepInterval_{0};  // what the timer was armed with
  void upkeepLater();
  size_t connScansPending_ = 0;  // on the loop's thread
  // startFlowCounts: the next walk, whether one is running, its last result.
  void countFlows(bool first = false);
  static constexpr std::chrono::milliseconds kFlowWalkBusyRetry{100};
  std::chrono::milliseconds flowCountInterval_{0};
  // One more at each startFlowCounts; 0 until keeld's first call (a reload
  // applies the interval only after it).
  uint64_t flowCountSetting_ = 0;
  boost::asio::steady_timer flowTimer_{io_};
  // Cleared by the walk's own thread when it ends, whatever happens to its
  // result: a lost result never stops the next walk.
  std::shared_ptr<std::atomic<bool>> flowWalkRunning_ = std::make_shared<std::atomic<bool>>(false);
  std::shared_ptr<const FlowCounts> flowCounts_;
  uint64_t flowCountFailures_ = 0;
};

}  // namespace keel

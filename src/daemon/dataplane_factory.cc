// SPDX-License-Identifier: Apache-2.0
#include "daemon/dataplane_factory.h"

#include "common/devargs.h"
#include "common/path_lock.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <net/if.h>

#include <cerrno>
#include <fstream>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "daemon/neighbour.h"
#include "dataplane/xdp/nic_offloads.h"
#include "dataplane/ring_batcher.h"
#include "dataplane/xdp/attached_program.h"
#include "dataplane/xdp/xdp_dataplane.h"
#ifdef KEEL_HAVE_DPDK
#include "dataplane/dpdk/dpdk_dataplane.h"
#endif

namespace keel {
namespace {

class XdpDaemonDataplane final : public DaemonDataplane {
 public:
  XdpDaemonDataplane(std::unique_ptr<XdpDataplane> dp, std::string interface, XdpMode mode)
      : dp_(std::move(dp)),
        batcher_(*dp_, dp_->adopted() ? dp_->adopted()->backends : std::vector<keel_backend>{}),
        interface_(std::move(interface)),
        mode_(mode) {}

  // Each ring publish on XDP waits a grace period in the kernel: a batch's
  // rings go out together (ring_batcher.h).
  Dataplane& plane() override { return batcher_; }
  const ProgrammedState* adopted() const override {
    return dp_->adopted() ? &*dp_->adopted() : nullptr;
  }
  std::optional<MacAddress> localMac() const override { return interfaceMac(interface_); }
  bool canDetach() const override { return true; }
  Status startForwarding() override { return Status::ok(); }  // attached at creation
  Status stop(bool leave) override {
    if (leave) {
      // Netlink XDP attachments outlive the process and the pins keep the
      // maps: traffic keeps flowing with the last state. What the host took
      // since the last timer (the interface made again, the pins removed)
      // is put back first, so the next keeld has a plane to adopt.
      dp_->maintain();
      dp_->leaveInPlace();
      return Status::ok();
    }
    return dp_->shutdown(true);
  }
  // As things are when logged (the stop comes long after the start): the
  // program is what create() did with it (attached, kept, replaced) if it
  // is attached now, else none; pins_state says whether every pin is there.
  void describe(LogRecord& r) const override {
    const bool attached = dp_->attachedNow();
    r.add("interface", interface_)
        .add("mode", toString(mode_))
        .add("ifindex", dp_->ifindex())
        .add("prog_id", dp_->programId())
        .add("program", !attached             ? "none"
                        : dp_->keptProgram()     ? "kept"
                        : dp_->replacedProgram() ? "replaced"
                                                 : "attached")
        .add("pins", dp_->pinDir());
    if (!dp_->pinDir().empty()) {
      const std::vector<std::string> missing = dp_->missingPins();
      std::string names;
      for (const std::string& n : missing) names += (names.empty() ? "" : ",") + n;
      r.add("pins_state", missing.empty() ? "present" : "missing");
      if (!missing.empty()) r.add("pins_missing", names);
    }
    if (dp_->reattachCount() > 0) r.add("reattached", dp_->reattachCount());
    if (dp_->repinCount() > 0) r.add("repinned", dp_->repinCount());
  }
  std::string where() const override { return interface_; }

 private:
  std::unique_ptr<XdpDataplane> dp_;
  RingBatcher batcher_;
  std::string interface_;
  XdpMode mode_;
};

XdpOptions xdpOptionsOf(const Config& config) {
  XdpOptions xo;
  xo.interface = config.dataplane.interface;
  xo.mode = config.dataplane.xdpMode == XdpMode::kNative ? XdpAttachMode::kNative
                                                         : XdpAttachMode::kGeneric;
  xo.limits = config.limits;
  xo.pinDir = XdpOptions::defaultPinDir(xo.interface);
  return xo;
}

// An XDP plane a previous keeld left on the interface (kind switched from
// xdp by a plain restart) stays attached and takes the VIP traffic first,
// with its last state and no keeld to change it: a DPDK keeld refuses to
// start on it, before EAL runs. Both the interface keeld resolves neighbours
// on and the one a vdev port taps (they need not be the same:
// dataplane.interface defaults to the exception interface). The refusal,
// or "" if neither has one pinned.
std::string pinnedXdpPlaneUnder(const Config& config) {
  for (const std::string& iface : {config.dataplane.interface, vdevInterface(config.dataplane.dpdk.port)}) {
    if (iface.empty()) continue;
    const std::string pins = XdpOptions::defaultPinDir(iface);
    std::error_code ec;
    if (!std::filesystem::exists(pins + "/prog", ec)) continue;
    // Detached in the mode it runs in (`xdp off` leaves a generic one).
    const int ifindex = static_cast<int>(if_nametoindex(iface.c_str()));
    const std::optional<AttachedXdp> found = ifindex != 0 ? attachedXdp(ifindex) : std::nullopt;
    const bool generic = found && found->native == 0 && found->generic != 0;
    return "dataplane.kind: dpdk, but the XDP data plane of a previous keeld is pinned under " + pins +
           " and may still be attached to " + iface + ", forwarding with its last state: take it out "
           "first (" + xdpOffCommand(iface, generic) + "; rm -r " + pins + "), or switch planes with "
           "keelctl daemon stop, which does both";
  }
  return "";
}

// Whether this process has a capability in its effective set
// (/proc/self/status CapEff); true when that cannot be read (not refused
// for it).
bool effectiveCapability(int cap) {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("CapEff:", 0) == 0) {
      try {
        return (std::stoull(line.substr(7), nullptr, 16) >> cap) & 1;
      } catch (...) {
        return true;
      }
    }
  return true;
}

// Whether the DPDK port is a net_af_xdp one whose XDP program libxdp loads:
// not with xdp_prog=, use_cni= or use_pinned_map=, where the port brings a
// program of its own or expects one there.
bool afXdpPortLoadsLibxdp(const Config& config) {
  const std::string devargs = portDevargs(config.dataplane.dpdk.port, config.dataplane.dpdk.ealArgs);
  if (!isAfXdpPort(devargs)) return false;
  for (const char* key : {"xdp_prog", "use_cni", "use_pinned_map"})
    if (devargValue(devargs, key)) return false;
  return true;
}

// A net_af_xdp port on an interface that runs an XDP program net_af_xdp
// cannot work beside (attached_program.h): the port's rx queue setup would
// fail with "Invalid argument" once EAL runs. A DPDK keeld refuses to start
// on it before EAL runs, naming the program, and keeld --check-config says
// so first. Only where libxdp loads the port's program
// (afXdpPortLoadsLibxdp). The refusal, or "".
std::string xdpProgramUnderAfXdpPort(const Config& config) {
  if (!afXdpPortLoadsLibxdp(config)) return "";
  const DpdkConfig& c = config.dataplane.dpdk;
  const std::string iface = vdevInterface(portDevargs(c.port, c.ealArgs));
  const std::string why = iface.empty() ? "" : afXdpProgramInTheWay(iface);
  return why.empty() ? "" : "dataplane.dpdk.port: " + c.port + ": " + why;
}

std::unique_ptr<DaemonDataplane> makeXdp(const Config& config, std::string* error) {
  const XdpOptions xo = xdpOptionsOf(config);
  std::unique_ptr<XdpDataplane> dp;
  if (Status s = XdpDataplane::create(xo, &dp); !s) {
    *error = s.message();
    return nullptr;
  }
  // Offloads that change what the program sees (nic_offloads.h): said at
  // every start, the NIC's settings being the host's, not keel's.
  if (std::optional<std::set<std::string>> active = activeNicFeatures(xo.interface))
    for (const OffloadWarning& w : xdpOffloadWarnings(xo.interface, xo.mode == XdpAttachMode::kGeneric, *active,
                                                      vlanInterfacesOf(xo.interface)))
      logWarn(LogRecord(w.event).add("interface", xo.interface).add("reason", w.detail));
  return std::make_unique<XdpDaemonDataplane>(std::move(dp), xo.interface,
                                              config.dataplane.xdpMode);
}

#ifdef KEEL_HAVE_DPDK
class DpdkDaemonDataplane final : public DaemonDataplane {
 public:
  DpdkDaemonDataplane(std::unique_ptr<DpdkDataplane> dp, DpdkConfig config, std::string connPath, Fd lock)
      : lock_(std::move(lock)), dp_(std::move(dp)), config_(std::move(config)), connPath_(std::move(connPath)) {}

  Dataplane& plane() override { return *dp_; }
  const ProgrammedState* adopted() const override { return nullptr; }
  std::optional<MacAddress> localMac() const override {
    MacAddress m(dp_->portMac());
    if (m.isZero()) return std::nullopt;
    return m;
  }
  bool canDetach() const override { return false; }
  Status startForwarding() override {
    const bool restored = restoreConns();
    Status s = dp_->start();
    if (s) logPortFacts();
    // The file was consumed by the load: a start that fails here writes the
    // loaded tables back, so the next start (the failure fixed) still has
    // the established flows.
    if (!s && restored) saveConns();
    return s;
  }
  Status stop(bool leave) override {
    if (leave && dp_) saveConns();
    dp_.reset();  // joins the workers, closes the port and the exception tap
    // keeld has one data plane and stops it once, at exit: EAL's memory
    // goes with it (docs/dpdk.md, Hugepages).
    releaseDpdkEnvironment();
    return Status::ok();
  }
  void describe(LogRecord& r) const override {
    std::string workers;
    for (unsigned w : config_.workers) workers += (workers.empty() ? "" : ",") + std::to_string(w);
    r.add("port", config_.port)
        .add("port_id", dp_ ? dp_->portId() : 0)
        .add("workers", workers)
        .add("exception_interface", config_.exceptionInterface);
  }
  std::string where() const override { return config_.port; }
  std::string linklessDevice() const override { return config_.exceptionInterface; }
  std::optional<bool> portLinkUp() const override { return dp_ ? dp_->portLinkUp() : std::nullopt; }

 private:
  // What the port runs with, as the driver took it (it may adjust the
  // descriptors and offer no RSS or promiscuous mode), and a warning for
  // each of those that costs traffic.
  void logPortFacts() const {
    const PortFacts f = dp_->portFacts();
    char hf[19];
    std::snprintf(hf, sizeof hf, "0x%llx", static_cast<unsigned long long>(f.rssHf));
    logInfo(LogRecord("dpdk_port_started")
                .add("port", config_.port)
                .add("queues", f.queues)
                .add("rx_descriptors", f.rxDescriptors)
                .add("tx_descriptors", f.txDescriptors)
                .add("rss_hf", hf)
                .add("mtu", f.mtu)
                .add("buffer_bytes", f.bufferBytes)
                .add("port_socket", f.portSocket)
                .add("pool_socket", f.poolSocket)
                .add("promiscuous", f.promiscuous)
                .add("allmulticast", f.allMulticast));
    // net_af_packet and net_af_xdp spread flows themselves (isKernelVdev).
    if (f.queues > 1 && f.rssHf == 0 && !isKernelVdev(config_.port))
      logWarn(LogRecord("dpdk_no_rss")
                  .add("port", config_.port)
                  .add("reason", "the device offers no RSS for IP/TCP/UDP: every packet reaches worker 0 (queue 0) "
                                 "and the other " + std::to_string(f.queues - 1) + " worker(s) stay idle"));
    if (config_.promiscuous && !f.promiscuous)
      logWarn(LogRecord("dpdk_not_promiscuous")
                  .add("port", config_.port)
                  .add("reason", "dataplane.dpdk.promiscuous is true but the driver refused promiscuous mode (a "
                                 "VF without trust?): only frames to the port's own MAC, broadcast and multicast "
                                 "arrive, so the router must send VIP traffic to the port's MAC (no VRRP or other "
                                 "virtual MAC); or trust the VF"));
    if (!config_.promiscuous && f.promiscuous)
      logWarn(LogRecord("dpdk_still_promiscuous")
                  .add("port", config_.port)
                  .add("reason", isKernelVdev(config_.port)
                                     ? "its kernel interface was promiscuous before keeld started, and stays so: "
                                       "frames flooded to other MACs reach the workers and are forwarded"
                                     : "the device cannot leave promiscuous mode (or has no MAC filter): frames "
                                       "flooded to other MACs reach the workers and are forwarded"));
    if (!f.allMulticast)
      logWarn(LogRecord("dpdk_no_allmulticast")
                  .add("port", config_.port)
                  .add("reason", "the driver refused all-multicast mode (a VF without trust?): multicast such as "
                                 "IPv6 neighbour solicitations and VRRP may not reach the exception interface, so "
                                 "IPv6 neighbours may not resolve this host; or trust the VF"));
    if (f.rxDescriptors != config_.rxDescriptors || f.txDescriptors != config_.txDescriptors)
      logWarn(LogRecord("dpdk_descriptors_adjusted")
                  .add("port", config_.port)
                  .add("reason", "the driver runs " + std::to_string(f.rxDescriptors) + " rx / " +
                                     std::to_string(f.txDescriptors) + " tx descriptors, not the " +
                                     std::to_string(config_.rxDescriptors) + " / " +
                                     std::to_string(config_.txDescriptors) + " configured"));
  }

  // Loads what the last clean stop saved. Never fails the start: a file it
  // cannot use is logged, removed, and the tables start empty. Returns
  // whether it loaded one.
  bool restoreConns() {
    dpdk::ConnRestoreReport rep;
    bool found = false;
    Status s = dp_->restoreConnTables(connPath_, &rep, &found);
    if (!s) {
      logWarn(LogRecord("conntrack_not_restored").add("file", connPath_).add("reason", s.message()));
      return false;
    }
    if (!found) {
      logInfo(LogRecord("conntrack_not_restored")
                  .add("file", connPath_)
                  .add("reason", "no file (a first start, or the last stop was not a clean one)"));
      return false;
    }
    if (!rep.restored) {
      logWarn(LogRecord("conntrack_not_restored").add("file", connPath_).add("reason", rep.notRestored));
      return false;
    }
    // seeds_restored: every entry went back into its own bucket, so
    // lost_no_room is 0; else why not (lost_no_room may then count some).
    LogRecord r("conntrack_restored");
    r.add("file", connPath_)
        .add("workers", rep.workers)
        .add("saved_workers", rep.savedWorkers)
        .add("copied_to_all_workers", rep.copiedToAll)
        .add("port_spread_changed", rep.spreadChanged)
        .add("seeds_restored", rep.seedsRestored);
    if (!rep.seedsRestored) r.add("seeds_not_restored", rep.seedsNotRestored);
    r.add("loaded", rep.loaded)
        .add("loaded_real_down", rep.loadedRealDown)
        .add("lost_no_room", rep.lostNoRoom)
        .add("skipped_duplicate", rep.skippedDuplicate)
        .add("skipped_expired", rep.skippedExpired)
        .add("skipped_no_service", rep.skippedNoService)
        .add("skipped_no_real", rep.skippedNoReal);
    logInfo(r);
    return true;
  }

  void saveConns() {
    dpdk::ConnExportReport rep;
    if (Status s = dp_->saveConnTables(connPath_, &rep); !s) {
      logError(LogRecord("conntrack_save_failed").add("file", connPath_).add("error", s.message()));
      return;
    }
    logInfo(LogRecord("conntrack_saved")
                .add("file", connPath_)
                .add("entries", rep.saved)
                .add("skipped_stale", rep.skippedStale)
                .add("skipped_expired", rep.skippedExpired));
  }

  Fd lock_;  // StateFiles::lock, held until this keeld exits (declared first: let go last)
  std::unique_ptr<DpdkDataplane> dp_;
  DpdkConfig config_;
  std::string connPath_;
};

std::unique_ptr<DaemonDataplane> makeDpdk(const Config& config, const StateFiles& files,
                                          std::string* error) {
  if (std::string pinned = pinnedXdpPlaneUnder(config); !pinned.empty()) {
    *error = std::move(pinned);
    return nullptr;
  }
  if (std::string program = xdpProgramUnderAfXdpPort(config); !program.empty()) {
    *error = std::move(program);
    return nullptr;
  }
  // The capability libxdp needs for a net_af_xdp port: it reads back by id
  // the program it attached (BPF_PROG_GET_FD_BY_ID), which takes
  // CAP_SYS_ADMIN; without it (keeld.service grants CAP_BPF and
  // CAP_NET_ADMIN, not CAP_SYS_ADMIN) the socket is not made and the start
  // failed with "rx queue 0: Invalid argument" (checked: keeld under setpriv
  // without it). At start only: --check-config, run by hand, has the
  // shell's capabilities, not the unit's.
  if (afXdpPortLoadsLibxdp(config) && !effectiveCapability(CAP_SYS_ADMIN)) {
    *error = "dataplane.dpdk.port: " + config.dataplane.dpdk.port +
             ": net_af_xdp loads its XDP program with libxdp, which needs CAP_SYS_ADMIN (it reads the program "
             "back by id), and this keeld runs without it: add it to the unit (deploy/keeld-dpdk.conf says how), "
             "or use a net_af_packet port";
    return nullptr;
  }
  // One keeld per port, before EAL runs: a second one (another socket or
  // metrics port, EAL's own lock off with --no-shconf, --in-memory or
  // another --file-prefix) ran beside the first, and every VIP packet
  // reached the reals twice. A keeld still stopping is waited for.
  Fd lock;
  if (const PathLock l = lockPath(files.lock, /*directory=*/false, std::chrono::seconds(5), &lock); !l.ok) {
    *error = !l.busy ? "dpdk: the port's lock " + files.lock + ": " + l.error
                     : "dataplane.dpdk.port: " + config.dataplane.dpdk.port + " is run by another keeld" +
                           (l.holder > 0 ? " (pid " + std::to_string(l.holder) + ")" : std::string()) +
                           ", which held " + files.lock + " for 5 s: stop it first, or wait for it to stop "
                           "(`systemctl stop keeld`); a second keeld on the port would send every VIP packet "
                           "to the reals twice";
    return nullptr;
  }
  const DpdkConfig& c = config.dataplane.dpdk;
  DpdkOptions o;
  o.ealArgs = c.ealArgs;
  o.port = c.port;
  o.workerLcores = c.workers;
  o.rxDescriptors = static_cast<uint16_t>(c.rxDescriptors);
  o.txDescriptors = static_cast<uint16_t>(c.txDescriptors);
  o.mbufsPerWorker = c.mbufsPerWorker;
  o.exceptionInterface = c.exceptionInterface;
  o.exceptionDescriptors = static_cast<uint16_t>(DpdkConfig::kTapDescriptors);
  o.idleSleepUs = c.idleSleepUs;
  o.mtu = static_cast<uint16_t>(c.mtu);
  o.promiscuous = c.promiscuous;
  o.kernelStateFile = files.interfaceState;
  o.limits = config.limits;
  // The port and workers start in startForwarding(), after the registry
  // programmed the tables and the saved connection tables are loaded: a
  // worker's table then has one writer, the worker, from its first packet.
  o.autoStart = false;
  std::string err;
  auto dp = createDpdkDataplane(o, &err);
  if (!dp) {
    *error = "dataplane." + err;
    releaseDpdkEnvironment();  // keeld exits: EAL may have started before the failure
    return nullptr;
  }
  return std::make_unique<DpdkDaemonDataplane>(std::move(dp), c, files.conntrack, std::move(lock));
}
#endif

}  // namespace

bool dataplaneBuiltIn(DataplaneKind kind) {
#ifdef KEEL_HAVE_DPDK
  (void)kind;
  return true;
#else
  return kind != DataplaneKind::kDpdk;
#endif
}

EalMemoryNeed dpdkMemoryNeed(uint32_t workers, uint32_t mbufsPerWorker, uint16_t mtu, uint32_t connTableSize) {
#ifdef KEEL_HAVE_DPDK
  return dpdkMemoryFloor(workers, mbufsPerWorker, mtu, connTableSize);
#else
  (void)workers, (void)mbufsPerWorker, (void)mtu, (void)connTableSize;
  return {};
#endif
}

std::optional<DeviceNameCheck> dpdkDeviceNames(const std::vector<std::string>& plugins,
                                               const std::vector<std::string>& devargs, bool mayLoad) {
#ifdef KEEL_HAVE_DPDK
  return checkDpdkDeviceNames(plugins, devargs, mayLoad);
#else
  (void)plugins, (void)devargs, (void)mayLoad;
  return std::nullopt;
#endif
}

void adoptLegacyDpdkState(const std::string& stateDir, const StateFiles& files) {
  const std::filesystem::path dir(stateDir);
  for (const auto& [legacy, keyed] : {std::pair{dir / "runtime-dpdk.json", std::filesystem::path(files.runtime)},
                                      std::pair{dir / "conntrack-dpdk.bin", std::filesystem::path(files.conntrack)}}) {
    // Never over a keyed file (RENAME_NOREPLACE: no check-then-rename race).
    if (::renameat2(AT_FDCWD, legacy.c_str(), AT_FDCWD, keyed.c_str(), RENAME_NOREPLACE) == 0)
      logInfo(LogRecord("state_file_renamed").add("from", legacy.string()).add("to", keyed.string()));
    else if (errno != ENOENT && errno != EEXIST)
      logWarn(LogRecord("state_file_not_renamed").add("from", legacy.string()).add("to", keyed.string())
                  .add("error", std::strerror(errno)));
  }
}

std::vector<std::string> pinnedStateConflicts(const Config& config) {
  if (config.dataplane.kind == DataplaneKind::kXdp) {
    const XdpOptions xo = xdpOptionsOf(config);
    std::vector<std::string> out = XdpDataplane::adoptionConflicts(xo);
    for (std::string& e : XdpDataplane::attachConflicts(xo)) out.push_back(std::move(e));
    return out;
  }
  // keel's XDP plane first: its refusal's `xdp off` takes out what is
  // attached, as the start says it alone.
  if (std::string pinned = pinnedXdpPlaneUnder(config); !pinned.empty()) return {std::move(pinned)};
  if (std::string program = xdpProgramUnderAfXdpPort(config); !program.empty()) return {std::move(program)};
  return {};
}

std::unique_ptr<DaemonDataplane> makeDaemonDataplane(const Config& config, const StateFiles& files,
                                                     std::string* error) {
  switch (config.dataplane.kind) {
    case DataplaneKind::kXdp:
      return makeXdp(config, error);
    case DataplaneKind::kDpdk:
#ifdef KEEL_HAVE_DPDK
      return makeDpdk(config, files, error);
#else
      (void)files;
      *error = "dataplane.kind: dpdk is not built into this keeld (DPDK was not found at build time)";
      return nullptr;
#endif
  }
  *error = "dataplane.kind: unknown";
  return nullptr;
}

}  // namespace keel

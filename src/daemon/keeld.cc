// SPDX-License-Identifier: Apache-2.0
// keeld: reads keel.yaml, builds the data plane (adopting what a previous
// keeld left pinned, so a restart moves no flow), programs every service and
// runs until SIGTERM/SIGINT or `keelctl daemon stop`. SIGHUP (or `keelctl
// config reload`) re-reads the file and applies only the difference (a bad
// file is logged and changes nothing).
//
// Exit (keeld(8) "RESTARTS"): like Katran, a signal leaves forwarding in
// place (program attached, maps pinned) for the next keeld to adopt, unless
// --detach-on-exit; `keelctl daemon stop` removes everything, `keelctl daemon
// stop --detach` leaves it. systemd hears READY=1 once programmed,
// RELOADING=1/READY=1 around reloads and STOPPING=1 (sd_notify; a no-op when
// NOTIFY_SOCKET is unset).
//
// One thread, one boost::asio::io_context: signals (signal_set), the health
// checker's transitions and the control socket all run on it, so the
// registry is never touched concurrently and needs no lock. Besides it: the
// health checks themselves (HealthChecker's thread "keel-health": a held
// loop must not fail checks; it posts each transition to the loop), the
// metrics scrapes' threads (metrics.h: they read a copy the loop made) and
// conn.list's walk of the connection table (DaemonBackend::connList: it
// reads the data plane and a copy of the registry, and posts its answer back
// to the loop). Threads keeld starts after the data plane inherit the main
// thread's CPU affinity: under DPDK the main lcore, never a worker's.
//
// Exit codes: 0 clean stop / valid config, 1 invalid config (a
// dataplane.kind this build does not have included) or runtime failure,
// 2 usage error.
#include <algorithm>
#include <malloc.h>
#include <sys/stat.h>
#include <thread>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <systemd/sd-daemon.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/program_options.hpp>
#include <array>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>

#include "common/asio_address.h"
#include "common/file_write.h"
#include "common/route.h"
#include "common/logging.h"
#include "control/config.h"
#include "control/eal_lcores.h"
#include "control/api/api_server.h"
#include "control/registry.h"
#include "daemon/daemon_backend.h"
#include "daemon/metrics.h"
#include "daemon/neighbour.h"
#include "daemon/dataplane_factory.h"
#include "daemon/link_watch.h"
#include "daemon/node_config.h"

#ifndef KEEL_VERSION
#define KEEL_VERSION "unknown"
#endif

namespace keel {
namespace {

// The CPUs keeld may run on, read the first time it is asked, which is
// while keeld loads its config at start: EAL pins the thread that started it
// to the main lcore, so a reload asking later would get that lcore's CPUs.
const std::set<unsigned>& startCpus() {
  static const std::set<unsigned> cpus = [] {
    std::set<unsigned> out;
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) == 0)
      for (unsigned c = 0; c < CPU_SETSIZE; ++c)
        if (CPU_ISSET(c, &set)) out.insert(c);
    return out;
  }();
  return cpus;
}

// The CPUs keeld's cgroup may use: the effective CPUs of its cpuset
// cgroup (v1: cpuset.effective_cpus under the cpuset hierarchy's mount;
// v2: cpuset.cpus.effective under the cgroup2 mount), or of the nearest
// ancestor that has the file; empty when none is found (not checked).
std::set<unsigned> cgroupCpus() {
  std::string v1Mount, v2Mount;
  {
    std::ifstream mounts("/proc/self/mounts");
    std::string dev, dir, type, opts, line;
    while (std::getline(mounts, line)) {
      std::istringstream in(line);
      if (!(in >> dev >> dir >> type >> opts)) continue;
      if (type == "cgroup2" && v2Mount.empty()) v2Mount = dir;
      if (type == "cgroup" && ("," + opts + ",").find(",cpuset,") != std::string::npos) v1Mount = dir;
    }
  }
  std::string v1Path, v2Path;
  {
    std::ifstream self("/proc/self/cgroup");
    std::string line;
    while (std::getline(self, line)) {
      const size_t a = line.find(':'), b = line.find(':', a + 1);
      if (a == std::string::npos || b == std::string::npos) continue;
      const std::string controllers = "," + line.substr(a + 1, b - a - 1) + ",";
      if (line.compare(0, a, "0") == 0 && b == a + 1) v2Path = line.substr(b + 1);
      else if (controllers.find(",cpuset,") != std::string::npos) v1Path = line.substr(b + 1);
    }
  }
  auto read = [](const std::string& mount, const std::string& path, const char* file) -> std::set<unsigned> {
    if (mount.empty() || path.empty() || path[0] != '/') return {};
    const std::filesystem::path root(mount);
    for (std::filesystem::path dir = root / path.substr(1);; dir = dir.parent_path()) {
      std::ifstream f(dir / file);
      std::string cpus;
      if (f && std::getline(f, cpus) && !cpus.empty()) return parseCpuList(cpus).value_or(std::set<unsigned>{});
      if (dir == root || dir == dir.parent_path() || dir.string().size() <= root.string().size()) return {};
    }
  };
  if (std::set<unsigned> cpus = read(v1Mount, v1Path, "cpuset.effective_cpus"); !cpus.empty()) return cpus;
  return read(v2Mount, v2Path, "cpuset.cpus.effective");
}

// The sysctls set by which the kernel forwards packets of `family` (4, 6)
// it receives on `name` or on a device above it (its VLANs, its bond or
// bridge: the one that receives a frame is the L3 device IPv4 asks):
// net.ipv4.conf.DEV.forwarding; net.ipv6.conf.all.forwarding or, on
// kernels with it (6.17+), DEV's force_forwarding. Shown as sysctl(8)
// names them (a device's dots as slashes: eth0.100 is eth0/100).
std::vector<std::string> forwardingSysctls(const std::string& name, int family) {
  std::vector<std::string> devices{name};
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/sys/class/net/" + name, ec)) {
    const std::string entry = e.path().filename().string();
    if (entry.rfind("upper_", 0) == 0) devices.push_back(entry.substr(6));
  }
  if (const auto master = std::filesystem::read_symlink("/sys/class/net/" + name + "/master", ec); !ec)
    devices.push_back(master.filename().string());
  std::vector<std::pair<std::string, std::string>> keys;  // /proc/sys/net/ path, sysctl name
  auto shown = [](std::string device) {
    std::replace(device.begin(), device.end(), '.', '/');
    return device;
  };
  if (family == 4) {
    for (const std::string& d : devices)
      keys.emplace_back("ipv4/conf/" + d + "/forwarding", "ipv4.conf." + shown(d) + ".forwarding");
  } else {
    keys.emplace_back("ipv6/conf/all/forwarding", "ipv6.conf.all.forwarding");
    for (const std::string& d : devices)
      keys.emplace_back("ipv6/conf/" + d + "/force_forwarding", "ipv6.conf." + shown(d) + ".force_forwarding");
  }
  std::vector<std::string> on;
  for (const auto& [file, sysctl] : keys) {
    std::ifstream f("/proc/sys/net/" + file);
    int v = 0;
    if (f >> v && v != 0) on.push_back("net." + sysctl);
  }
  return on;
}

// macWaitMs: how long the neighbour-table read of a file's l2dsr reals
// without mac: waits for the ones it prompts (resolveNeighbours). At
// start-up (--check-config, the first load) 1 s; on keeld's running loop
// (reloads, config.check, runtime adds) DaemonBackend::kRequestMacWait, so
// a request stops the loop for at most that: the reals not in the table by
// then are held down and retried (DaemonBackend::kMacFirstRetry).
constexpr int kRequestMacWaitMs = static_cast<int>(DaemonBackend::kRequestMacWait.count());
// onLoop: keeld's running loop, which loads no DPDK drivers to check a file
// (dpdkDeviceNames).
ConfigOptions hostConfigOptions(int macWaitMs = 1000, bool onLoop = false) {
  ConfigOptions o;
  o.interfaceExists = [](const std::string& name) { return if_nametoindex(name.c_str()) != 0; };
  o.interfaceIsTap = [](const std::string& name) {
    std::error_code ec;
    return std::filesystem::exists("/sys/class/net/" + name + "/tun_flags", ec);
  };
  o.interfaceForwarding = forwardingSysctls;
  o.routedOn = [](const std::vector<IpAddress>& addresses) {
    // Output lookups on one socket: a blackhole, unreachable or prohibit
    // route answers with an error, a VIP of this host's own with RTN_LOCAL.
    std::vector<IpAddress> routed;
    const Fd sock = routeSocket(std::chrono::seconds(1));
    if (sock.get() < 0) return routed;
    uint32_t seq = 0;
    for (const IpAddress& a : addresses) {
      const RouteLookup r = lookupRoute(sock.get(), ++seq, a);
      if (!r.socketFailed && r.error == 0 && r.type == RTN_UNICAST) routed.push_back(a);
    }
    return routed;
  };
  o.pciDeviceExists = [](const std::string& address) {
    std::error_code ec;
    return std::filesystem::exists("/sys/bus/pci/devices/" + address, ec);
  };
  o.pciDriver = [](const std::string& address) {
    std::error_code ec;
    const auto link = std::filesystem::read_symlink("/sys/bus/pci/devices/" + address + "/driver", ec);
    return ec ? std::string() : link.filename().string();
  };
  o.kindBuilt = dataplaneBuiltIn;
  o.dpdkDeviceNames = [onLoop](const std::vector<std::string>& plugins, const std::vector<std::string>& devargs) {
    return dpdkDeviceNames(plugins, devargs, /*mayLoad=*/!onLoop);
  };
  o.hugepages = [] { return readHugepages(); };
  o.dpdkMemoryFloor = dpdkMemoryNeed;
  o.allowedCpus = [cpus = startCpus()] { return cpus; };
  o.onlineCpus = [] {
    std::ifstream f("/sys/devices/system/cpu/online");
    std::string line;
    if (!std::getline(f, line)) return std::set<unsigned>{};
    return parseCpuList(line).value_or(std::set<unsigned>{});
  };
  o.cpusetCpus = cgroupCpus;
  o.resolveMac = [macWaitMs](const std::vector<IpAddress>& reals, const std::string& iface) {
    return resolveNeighbours(reals, iface, macWaitMs);
  };
  o.interfaceAddresses = interfaceAddresses;
  o.interfacesOn = interfacesOn;
  o.addressIsLocal = addressIsLocal;
  // Not on the running loop: a reload never binds the endpoint again (its
  // address is a restart key), so an address that moved away since the
  // start (keepalived's, a tentative IPv6 one) must not refuse it.
  // A TCP socket bound to it with port 0, as the metrics endpoint binds
  // (Asio, toAsio): only an address the host lacks counts, the port is the
  // start's to find free.
  if (!onLoop) o.bindProblem = [](const IpAddress& a) -> std::string {
    boost::asio::io_context io;
    boost::asio::ip::tcp::socket sock(io);
    const boost::asio::ip::tcp::endpoint at(toAsio(a), 0);
    boost::system::error_code ec;
    sock.open(at.protocol(), ec);
    if (ec) return "";  // cannot tell
    sock.bind(at, ec);
    return ec.value() == EADDRNOTAVAIL ? std::strerror(EADDRNOTAVAIL) : "";
  };
  o.socketPathProblem = api::socketPathProblem;
  o.groupExists = [](const std::string& name) {
    // A lookup that failed says nothing of the group: not refused for it
    // (the socket's start says what it finds).
    bool failed = false;
    return api::groupId(name, &failed).has_value() || failed;
  };
  return o;
}

// Prints every error (the operator fixes the file in one pass). Without host
// checks (--no-host-checks --check-config, for a file meant for another
// machine) dataplane.interface is checked for syntax only and l2dsr reals
// need an explicit mac.
std::optional<Config> loadOrReport(const std::string& path, bool hostChecks = true) {
  ConfigOptions options = hostChecks ? hostConfigOptions() : ConfigOptions{};
  // By hand --check-config runs in the shell's cgroup, not the unit's: a
  // shell limited to other CPUs than keeld.service (user.slice's
  // AllowedCPUs=, an isolation recipe) would refuse a file the unit starts.
  // The start and reloads check it, in keeld's own cgroup.
  options.cpusetCpus = nullptr;
  ConfigResult r = loadConfigFile(path, options);
  for (const std::string& e : r.errors) std::cerr << e << "\n";
  // What passes but runs short (an l2dsr real held down until the neighbour
  // table has it): keeld logs each such real again when it starts.
  for (const std::string& w : r.warnings) std::cerr << "warning: " << w << "\n";
  if (!r.ok()) std::cerr << path << ": " << r.errors.size() << " error(s), nothing applied\n";
  return std::move(r.config);
}

// The start's reading of the file: the same checks as --check-config, its
// findings as log records (config_error, config_warning, then start_rejected),
// as a reload's are (the same warnings), so one grep of the journal finds a failed start and a
// refused reload alike (operator review s32 L8).
std::optional<Config> loadOrLog(const std::string& path, std::string& text) {
  ConfigResult r = loadConfigFile(path, hostConfigOptions());
  text = std::move(r.text).value_or("");
  for (const std::string& e : r.errors) logError(LogRecord("config_error").add("error", e));
  // The l2dsr reals not in the neighbour table: real_mac_unresolved once
  // keeld holds them down, as after a reload.
  for (const std::string& w : r.fileWarnings) logWarn(LogRecord("config_warning").add("warning", w));
  if (!r.ok())
    logError(LogRecord("start_rejected")
                 .add("config", path)
                 .add("errors", static_cast<uint64_t>(r.errors.size()))
                 .add("detail", "nothing applied: keeld did not start"));
  return std::move(r.config);
}


// Reload, before the registry: data plane shape (kind, interface, mode,
// limits), the control socket and the metrics endpoint need a restart; say
// so and keep the rest. Compared with the config keeld started with, what
// runs, not the last reloaded file: a second reload of the same change says
// it again (the reload's reply lists the keys too: restart_needed). (The
// node config is the backend's: DaemonBackend::setNodeSource.)
Status preApply(const Config& started, const Config& next, bool stopDetaches) {
  const std::vector<std::string> keys = restartNeededKeys(started, next);
  const std::vector<std::string> stopStart = stopStartNeededKeys(started, keys, stopDetaches);
  auto in = [](const std::vector<std::string>& v, const char* key) { return std::find(v.begin(), v.end(), key) != v.end(); };
  auto has = [&](const char* key) { return in(keys, key); };
  if (!stopStart.empty()) {
    // The pinned XDP plane outlives keeld: a plain restart would not do what
    // "at the next start" promises (operations.md, Restarts and upgrades).
    const bool shape = in(stopStart, "dataplane.kind") || in(stopStart, "dataplane.xdp_mode") || in(stopStart, "limits");
    const bool moved = in(stopStart, "dataplane.interface");
    if (shape)
      logWarn(LogRecord("reload_restart_needed")
                  .add("detail",
                       "dataplane.kind, dataplane.xdp_mode and limits: changes need a fresh data plane: the next "
                       "keeld refuses to adopt the pinned one with a new xdp_mode or limits, and a DPDK keeld "
                       "refuses to start while it is pinned. Kept the running ones; "
                       "to apply, keelctl daemon stop (detaches it), then start keeld (every established flow "
                       "is picked again)"));
    if (moved)
      logWarn(LogRecord("reload_restart_needed")
                  .add("detail", "dataplane.interface: the running data plane stays on " +
                                     started.dataplane.interface + "; to move, keelctl daemon stop (detaches it), "
                                     "then start keeld, which attaches to " + next.dataplane.interface +
                                     ". A plain restart would leave " + started.dataplane.interface +
                                     "'s program forwarding with no keeld"));
  } else if (has("dataplane.kind") || has("dataplane.interface") || has("dataplane.xdp_mode") || has("limits") ||
             has("dataplane.dpdk")) {
    logWarn(LogRecord("reload_restart_needed")
                .add("detail", "dataplane: and limits: changes apply at the next start; kept the running ones"));
  }
  if (has("control"))
    logWarn(LogRecord("reload_control_restart_needed")
                .add("detail", "control: changes apply at the next start; kept the running socket"));
  if (has("metrics"))
    logWarn(LogRecord("reload_metrics_restart_needed")
                .add("detail", "metrics: changes apply at the next start; kept the running endpoint"));
  return Status::ok();
}

// Exit policy: what happens to the attached program and the pins.
enum class ExitAction { kLeave, kRemove };

// Every health check in flight holds a socket (a real that does not answer,
// or a udp check that passes by silence, holds one for its whole timeout),
// and so does every API and scrape connection: the soft limit of 1,024 open
// files most services start with runs out at about 900 such reals. keeld
// raises it to the hard limit, which needs no privilege (systemd's default
// hard limit is 524,288; deploy/keeld.service sets it), and logs both. A
// check that still finds no descriptor is not run rather than failed
// (HealthResult::local).
void raiseOpenFileLimit() {
  rlimit r{};
  if (::getrlimit(RLIMIT_NOFILE, &r) != 0) return;
  const rlim_t before = r.rlim_cur;
  if (r.rlim_cur < r.rlim_max) {
    rlimit raised = r;
    raised.rlim_cur = r.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) r = raised;
  }
  LogRecord rec("open_file_limit");
  rec.add("limit", static_cast<uint64_t>(r.rlim_cur)).add("was", static_cast<uint64_t>(before));
  if (r.rlim_cur < 65536) {
    logWarn(rec.add("hint", "fewer than 65536 open files: each health check in flight holds one; "
                             "raise the hard limit (LimitNOFILE=)"));
  } else {
    logInfo(rec);
  }
}

// A start or reload parses the file into a YAML tree (tens of MB for a file
// of 40,000 reals) and copies of its config, all freed once applied; glibc
// keeps the pages they leave free inside the heap, which stayed in keeld's
// RSS for its life (~30 MB of 175 after a start of 200 services of 200
// reals: perf/control/start_memory.py). Given back to the kernel here.
void releaseFreedMemory() { malloc_trim(0); }

int run(const std::string& path, bool detachOnExit) {
  // A stop record is measured against this, not the end of the start-up:
  // EAL, pools and connection tables take seconds that are keeld's own.
  const auto startedAt = std::chrono::system_clock::now();
  std::string loadedText;  // what daemon.status compares the file with
  auto loaded = loadOrLog(path, loadedText);
  if (!loaded) return 1;
  Config config = std::move(*loaded);  // its kind is built in (hostConfigOptions)
  raiseOpenFileLimit();

  // Registered before the data plane attaches: a SIGTERM during start-up
  // waits for the loop (which then exits by the exit policy) instead of
  // killing keeld halfway.
  boost::asio::io_context io;
  boost::asio::signal_set signals(io, SIGTERM, SIGINT, SIGHUP);

  // The runtime state (the keelctl overlay, the DPDK plane's connection
  // tables at a clean stop), beside the control socket (/run/keel): it lives
  // as long as the pins do (until reboot).
  const std::filesystem::path stateDir = std::filesystem::path(config.control.socket).parent_path();
  (void)makeDirectories(stateDir.string(), 0755);  // ApiServer::start reports a failure
  const StateFiles files = stateFiles(config, stateDir.string());
  // keeld applies the runtime state it finds there at start: a directory
  // another user may write (/tmp) lets that user replace it, e.g. with one
  // that drains every real (security review). Said, not refused.
  if (struct stat sd {}; ::stat(stateDir.c_str(), &sd) == 0 && (sd.st_uid != ::geteuid() || (sd.st_mode & 022)))
    logWarn(LogRecord("state_dir_unsafe")
                .add("dir", stateDir.string())
                .add("detail", "control.socket's directory, where keeld keeps and reads back its runtime state, is "
                               "owned by another user or writable by group or others: use a directory only keeld's "
                               "user writes, such as /run/keel"));

  // Another keeld serving this socket: refused before the data plane, which
  // it runs (XDP: the pin directory's lock refuses a second keeld on the
  // interface whatever its socket; DPDK: the port's lock in
  // /run/keel/locks). One still exiting (killed a moment ago, its threads ending;
  // a supervisor that did not wait) is waited for, up to 5 s, as those
  // locks wait: it was refused at once.
  const auto socketDeadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  for (const std::string& socket : {config.control.socket, config.control.readonlySocket})
    if (!socket.empty() && api::socketIsLive(socket)) {
      while (api::socketIsLive(socket) && std::chrono::steady_clock::now() < socketDeadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      if (!api::socketIsLive(socket)) continue;
      logError(LogRecord("control_socket_failed")
                   .add("socket", socket)
                   .add("error", "another process is serving it (is keeld already running?)"));
      return 1;
    }
  // The metrics port likewise: in use, the start fails here, not after it
  // programmed (an adopted) data plane.
  if (config.metrics.enabled)
    if (Status st = MetricsServer::probe(config.metrics.address, config.metrics.port); !st) {
      logError(LogRecord("metrics_failed").add("error", st.message()));
      return 1;
    }
  std::string err;
  std::unique_ptr<DaemonDataplane> handle = makeDaemonDataplane(config, files, &err);
  if (!handle) {
    logError(LogRecord("dataplane_failed").add("error", err));
    return 1;
  }
  // Only now, holding the port (and EAL's lock on its --file-prefix): a
  // keeld refused above never takes a running one's files.
  if (config.dataplane.kind == DataplaneKind::kDpdk) adoptLegacyDpdkState(stateDir.string(), files);
  Dataplane* dp = &handle->plane();
  const std::string kind = dp->kind();
  const ProgrammedState* adoptedState = handle->adopted();
  const bool adopted = adoptedState != nullptr;
  // A failed start leaves an adopted data plane attached and forwarding (a
  // state is better than none): as it found it if the start failed before
  // backend.start() programmed this file (the sockets and the metrics
  // endpoint are served before that), with part of this file's services if
  // the programming itself failed. A fresh one leaves nothing.
  auto abandon = [&] { (void)handle->stop(adopted); };
  // The MAC node.local_mac defaults to: the interface's (XDP) or the port's
  // (DPDK). Refused here, before anything is served, if there is none; the
  // backend writes the node config and follows that MAC from then on
  // (setNodeSource below).
  if (!buildNodeConfig(config, handle->localMac(), &err)) {
    // A record like every other failed start's (one grep of the journal).
    logError(LogRecord("dataplane_failed").add("error", err));
    abandon();
    return 1;
  }
  {
    LogRecord r(adopted ? "dataplane_adopted" : "dataplane_attached");
    r.add("kind", kind);
    handle->describe(r);
    logInfo(r);
  }

  Registry registry(*dp);
  std::unique_ptr<api::ApiServer> apiServer;
  std::unique_ptr<api::ApiServer> readonlyServer;  // control.readonly, if configured
  ExitAction exitAction = detachOnExit ? ExitAction::kRemove : ExitAction::kLeave;
  // `keelctl daemon stop [--keep-forwarding]` says what to do explicitly.
  auto stopWith = [&](ExitAction action) {
    boost::asio::post(io, [&, action] {
      exitAction = action;
      signals.cancel();
      if (apiServer) apiServer->stop();
      if (readonlyServer) readonlyServer->stop();
      io.stop();
    });
  };
  auto stop = [&](bool leave) { stopWith(leave ? ExitAction::kLeave : ExitAction::kRemove); };
  // The host checks of every parse on keeld's running loop (reloads,
  // config.check) and of runtime adds: their neighbour-table reads wait at
  // most kRequestMacWait.
  const ConfigOptions onLoop = hostConfigOptions(kRequestMacWaitMs, /*onLoop=*/true);
  DaemonBackend backend(
      io, registry, path, [&onLoop](const std::string& p) { return loadConfigFile(p, onLoop); },
      // Compared with what keeld started with (the backend keeps it): the
      // data plane, socket and endpoint it built.
      [detachOnExit](const Config& started, const Config& next) { return preApply(started, next, detachOnExit); },
      stop);
  backend.setCanDetach(handle->canDetach());
  // node: is the backend's to write (start, reloads), with the data plane's
  // MAC as local_mac unless the file gives one, read again at each reload
  // and each upkeep (at once at the interface's link message): an
  // interface's MAC can change under keeld (a bond's failover, `ip link set
  // address`), and frames from a MAC the host no longer owns are dropped by
  // port security or steal the MAC in the switch (fault review F3).
  backend.setNodeSource([&handle] { return handle->localMac(); }, handle->where());
  // l2dsr MACs are resolved as the file's are: the state file's reals at
  // start, waiting as the first load did; on the loop, requests (runtime
  // adds, and reloads and config.check above and below) wait at most
  // kRequestMacWait, and the retries not at all: one dump, a nudge for
  // each still missing, found by the next retry.
  backend.setMacResolver(hostConfigOptions().resolveMac);
  backend.setRequestMacResolver(onLoop.resolveMac);
  backend.setMacRetryResolver(hostConfigOptions(/*macWaitMs=*/0).resolveMac);
  backend.setMacRefreshResolver([](const std::vector<IpAddress>& reals, const std::string& iface) {
    return resolveNeighbours(reals, iface, /*waitMs=*/0, /*nudge=*/false);
  });
  // node.next_hop_mac against the router the kernel routes the ipip reals
  // through (NextHopCheck), on the upkeep timer.
  backend.setRouteResolver(routesTo);
  backend.setCheckOptions(onLoop);
  backend.setStartedAt(startedAt);
  backend.setStopDetaches(detachOnExit);
  backend.setVersion(KEEL_VERSION);
  backend.setStartText(std::move(loadedText));
  // The runtime overlay (keelctl changes), per interface like the pins.
  backend.setStatePath(files.runtime);
  backend.setAppliedPath(files.applied);
  backend.setReloadHook([](bool done, bool ok) {
    if (!done) {
      sd_notify(0, "RELOADING=1\nSTATUS=reloading the config");
      return;
    }
    sd_notify(0, ok ? "READY=1\nSTATUS=running; last reload applied"
                    : "READY=1\nSTATUS=running; last reload rejected (see the log)");
  });
  // After a reload's or a check's answer, not before it.
  backend.setParsedHook([&io] { boost::asio::post(io, releaseFreedMemory); });
  // The control socket, the read-only one if configured, and the metrics
  // endpoint: listening before the data plane is programmed, so a start that
  // cannot serve them (a path or port taken since the checks above, a bind
  // refused) leaves an adopted plane as it found it. Nothing is answered
  // before the loop runs (io.run() below), after the start. Each is
  // nullptr, and logged, if it cannot start.
  auto serve = [&](const std::string& socket, uint32_t mode, const std::string& group, bool readOnly) {
    api::ApiServerOptions o;
    o.socketPath = socket;
    o.mode = static_cast<mode_t>(mode);
    o.group = group;
    o.readOnly = readOnly;
    auto server = std::make_unique<api::ApiServer>(io, backend, o);
    if (Status st = server->start(); !st) {
      logError(LogRecord("control_socket_failed").add("socket", socket).add("error", st.message()));
      server.reset();
    }
    return server;
  };
  const ControlConfig& cc = config.control;
  apiServer = serve(cc.socket, cc.mode, cc.group, false);
  if (apiServer && !cc.readonlySocket.empty())
    readonlyServer = serve(cc.readonlySocket, cc.readonlyMode, cc.readonlyGroup, true);
  auto closeServers = [&] {
    readonlyServer.reset();
    apiServer.reset();
  };
  if (!apiServer || (!cc.readonlySocket.empty() && !readonlyServer)) {
    closeServers();
    abandon();
    return 1;
  }
  // Scrapes run on the metrics server's threads and read the loop's state only
  // through a job posted to it (daemon/metrics.h).
  std::unique_ptr<MetricsServer> metrics;
  if (config.metrics.enabled) {
    metrics = std::make_unique<MetricsServer>(
        io, [&] { return collectSnapshot(backend, KEEL_VERSION); }, KEEL_VERSION, dp->kind());
    if (Status st = metrics->start(config.metrics.address, config.metrics.port); !st) {
      logError(LogRecord("metrics_failed").add("error", st.message()));
      closeServers();
      abandon();
      return 1;
    }
    logInfo(LogRecord("metrics_listening").add("address", config.metrics.listenAddress()));
  }
  // DPDK's exception tap is always running, whatever the port's link: the
  // checker hears of the port's link from here (every 100 ms on the loop),
  // so a check through the tap while the port has no link is not run, as
  // on a kernel link without carrier, rather than taking every real down.
  // The port's link changes are logged here too.
  boost::asio::steady_timer linkTimer(io);
  std::optional<bool> lastLinkUp;
  std::function<void()> pollPortLink = [&] {
    if (const std::optional<bool> up = handle->portLinkUp(); up && up != lastLinkUp) {
      backend.checker().setLinklessDeviceDown(!*up);
      if (lastLinkUp || !*up) {
        LogRecord r(*up ? "dpdk_port_link_up" : "dpdk_port_link_down");
        r.add("port", handle->where()).add("exception_interface", handle->linklessDevice());
        if (*up) logInfo(r);
        else logWarn(r.add("detail", "checks through the exception interface are not run until it is back"));
      }
      lastLinkUp = up;
    }
    linkTimer.expires_after(std::chrono::milliseconds(100));
    linkTimer.async_wait([&](const boost::system::error_code& ec) {
      if (!ec) pollPortLink();
    });
  };
  if (const std::string tap = handle->linklessDevice(); !tap.empty()) {
    backend.checker().setLinklessDevice(handle->where(), [tap](const std::string& device) {
      if (device == tap) return true;
      const std::vector<std::string> on = interfacesOn(tap);  // its VLAN devices
      return std::find(on.begin(), on.end(), device) != on.end();
    });
    boost::asio::post(io, [&] { pollPortLink(); });
  }

  // DPDK: the saved connection tables go in once the ids are programmed,
  // and only then do the workers read packets.
  Status s = backend.start(config, adoptedState, [&] { return handle->startForwarding(); });
  if (!s) {
    logError(LogRecord("program_failed").add("error", s.message()));
    metrics.reset();
    closeServers();
    abandon();
    return 1;
  }
  for (const ServiceConfig& svc : config.services)
    for (const RealConfig& r : svc.reals) logResolvedMac(svc.name, r);
  // The services are the backend's from here (which also keeps the start's
  // shape for reloads, preApply): `config` keeps only what the rest of the
  // start-up below reads.
  config = startShape(std::move(config));

  // Each real's flows (keel_real_flows, keelctl service list's Flows): a
  // walk of the connection table now and then, with or without the endpoint.
  backend.startFlowCounts(config.metrics.flowCountInterval);
  // What runs: the file with the runtime changes the state file kept (a
  // service removed with keelctl is not counted, one added is).
  size_t runningServices = 0, runningReals = 0;
  for (const api::ServiceSnapshot& s : backend.serviceStates(std::nullopt)) {
    ++runningServices;
    runningReals += s.reals.size();
  }
  LogRecord ready("ready");
  ready.add("config", path).add("services", runningServices).add("reals", runningReals).add("socket", cc.socket);
  if (readonlyServer) ready.add("readonly_socket", cc.readonlySocket);
  logInfo(ready);
  releaseFreedMemory();
  {
    std::string status = "READY=1\nSTATUS=" + std::string(adopted ? "adopted" : "attached") + " " +
                         handle->where() + ", " + std::to_string(runningServices) + " services, " +
                         std::to_string(runningReals) + " reals";
    sd_notify(0, status.c_str());
  }

  // The interface's link messages run the backend's upkeep at once (an
  // interface made again gets the program back, an MTU or MAC change is
  // applied), its timer staying the fallback (LinkWatch says why). DPDK
  // without dataplane.interface: the timer alone.
  std::unique_ptr<LinkWatch> links;
  if (!config.dataplane.interface.empty()) {
    links = std::make_unique<LinkWatch>(io, config.dataplane.interface, [&] { backend.upkeepSoon(); });
    if (Status st = links->start(); !st) {
      logWarn(LogRecord("link_watch_failed")
                  .add("interface", config.dataplane.interface)
                  .add("error", st.message())
                  .add("detail", "interface changes are seen by the upkeep timer alone (dataplane.upkeep_interval)"));
      links.reset();
    }
  }

  std::function<void(const boost::system::error_code&, int)> onSignal =
      [&](const boost::system::error_code& ec, int sig) {
        if (ec) return;  // cancelled: stopping
        if (sig == SIGHUP) {
          (void)backend.reload();
          signals.async_wait(onSignal);
          return;
        }
        logInfo(LogRecord("stopping").add("signal", strsignal(sig)));
        stopWith(exitAction);  // the policy of --detach-on-exit
      };
  signals.async_wait(onSignal);
  io.run();

  sd_notify(0, "STOPPING=1");
  links.reset();
  metrics.reset();  // before the state its scrapes read
  readonlyServer.reset();
  apiServer.reset();
  backend.stopConnScans();  // a conn.list walk reads the data plane, which stops below
  backend.applyPendingHealth();  // a transition of the loop's last turn
  if (exitAction == ExitAction::kLeave && handle->canDetach()) {
    // The stop record (below), for a next keeld that does not adopt.
    backend.saveAtStop();
    // XDP: netlink attachments outlive the process and the pins keep the
    // maps: traffic keeps flowing with the last state, and the next keeld
    // adopts it. (DPDK cannot: its workers are keeld's threads.)
    (void)handle->stop(true);
    LogRecord r("stopped_left_in_place");
    handle->describe(r);
    logInfo(r);
    return 0;
  }
  // Taken out: the next keeld starts over, runtime changes included. (A
  // DPDK plane stops on a signal too, but keeps the runtime file like XDP,
  // and saves its connection tables for the next keeld: stop(true).)
  if (exitAction == ExitAction::kRemove) {
    std::error_code ec;
    std::filesystem::remove(files.runtime, ec);
    std::filesystem::remove(files.applied, ec);  // nothing to compare the next start with
  }
  const Status st = handle->stop(exitAction == ExitAction::kLeave);
  // Which checked reals are up now, for a next keeld that cannot adopt this
  // one's data plane (DPDK; DaemonBackend::start). Stamped once the workers
  // have stopped and the connection tables are saved: the next keeld
  // measures from here to its own start the time no keeld ran.
  if (exitAction == ExitAction::kLeave) backend.saveAtStop();
  if (!st) {
    logError(LogRecord("shutdown_failed").add("error", st.message()));
    return 1;
  }
  logInfo(LogRecord("stopped").add("kind", kind).add("at", handle->where()));
  return 0;
}

}  // namespace
}  // namespace keel

int main(int argc, char** argv) {
  namespace po = boost::program_options;
  po::options_description desc("keeld: keel load balancer daemon\nOptions");
  std::string configPath, checkPath, logLevel;
  desc.add_options()
      ("help,h", "show this help")
      ("version", "print the version and exit")
      ("config,c", po::value<std::string>(&configPath), "run with this keel.yaml")
      ("check-config", po::value<std::string>(&checkPath),
       "validate this keel.yaml and exit (0 valid, 1 invalid)")
      ("no-host-checks",
       "with --check-config: skip the checks that need this host (the interface exists, "
       "l2dsr MACs from the neighbour table), to validate a file meant for another machine")
      ("log-level", po::value<std::string>(&logLevel)->default_value("info"),
       "trace|debug|info|warn|error|off")
      ("detach-on-exit",
       "on SIGTERM/SIGINT detach the program and remove the pins (default: leave "
       "forwarding in place for the next keeld to adopt)");
  po::variables_map vm;
  std::vector<std::string> stray;
  try {
    const po::parsed_options parsed = po::command_line_parser(argc, argv).options(desc).run();
    // Words that are no option's value (`--check-config a.yaml b.yaml`,
    // a glob): parse_command_line drops them without a word, so the second
    // file was never checked.
    stray = po::collect_unrecognized(parsed.options, po::include_positional);
    po::store(parsed, vm);
    po::notify(vm);
  } catch (const po::error& e) {
    std::cerr << "keeld: " << e.what() << "\n" << desc;
    return 2;
  }
  if (!stray.empty()) {
    std::cerr << "keeld: unexpected argument \"" << stray.front() << "\"";
    if (vm.count("check-config")) std::cerr << " (--check-config checks one FILE; run it once per file)";
    std::cerr << "\n";
    return 2;
  }
  if (vm.count("config") && vm.count("check-config")) {
    std::cerr << "keeld: --config and --check-config exclude each other (one runs keeld, the other only checks)\n";
    return 2;
  }
  if (vm.count("detach-on-exit") && vm.count("check-config")) {
    std::cerr << "keeld: --detach-on-exit only applies to --config\n";
    return 2;
  }
  if (vm.count("help")) {
    std::cout << desc;
    return 0;
  }
  if (vm.count("version")) {
    std::cout << "keeld " << KEEL_VERSION << "\n";
    return 0;
  }
  if (keel::Status s = keel::setupLogging(logLevel); !s) {
    std::cerr << "keeld: --log-level: " << s.message() << "\n";
    return 2;
  }
  // "--check-config --no-host-checks FILE" would read the flag as the FILE.
  if (vm.count("check-config") && checkPath.rfind("-", 0) == 0) {
    std::cerr << "keeld: --check-config needs a FILE, got \"" << checkPath
              << "\" (options go before it: keeld --no-host-checks --check-config FILE)\n";
    return 2;
  }
  if (vm.count("no-host-checks") && !vm.count("check-config")) {
    std::cerr << "keeld: --no-host-checks only applies to --check-config\n";
    return 2;
  }
  if (vm.count("check-config")) {
    const bool hostChecks = !vm.count("no-host-checks");
    auto c = keel::loadOrReport(checkPath, hostChecks);
    if (!c) return 1;
    // A file that loads may still be one the next start refuses: state a
    // keeld left pinned on this host with other limits: or xdp_mode.
    if (hostChecks)
      if (const std::vector<std::string> conflicts = keel::pinnedStateConflicts(*c); !conflicts.empty()) {
        for (const std::string& e : conflicts) std::cerr << e << "\n";
        std::cerr << checkPath << ": " << conflicts.size()
                  << " error(s) against the state of this host (what is pinned or attached there, what the data plane may "
                     "use): a restart would refuse the file\n";
        return 1;
      }
    std::cout << checkPath << ": OK (" << c->services.size() << " services, "
              << keel::countReals(*c) << " reals)\n";
    return 0;
  }
  if (configPath.empty()) {
    std::cerr << "keeld: --config FILE or --check-config FILE is required\n" << desc;
    return 2;
  }
  return keel::run(configPath, vm.count("detach-on-exit") > 0);
}

// SPDX-License-Identifier: Apache-2.0
#include "common/clock.h"
#include "dataplane/dpdk/dpdk_dataplane.h"

#include <rte_cycles.h>
#include <rte_dev.h>
#include <rte_devargs.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_log.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_pci.h>
#include <rte_rcu_qsbr.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <dirent.h>
#include <dlfcn.h>
#include <sys/stat.h>
#include <linux/ethtool.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <sys/prctl.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <optional>
#include <set>
#include <utility>

#include "common/address.h"
#include "common/devargs.h"
#include "common/fd.h"
#include "common/file_write.h"
#include "common/hugepages.h"
#include "common/logging.h"
#include "common/text.h"
#include "dataplane/dpdk/mbuf_frame.h"
#include "dataplane/dpdk/tables.h"
#include "dataplane/dpdk/worker_path.h"

namespace keel {

// A PCI address in its full form, as EAL names the device ("03:00.0" is
// "0000:03:00.0"): the short form found no port, and probing it again
// failed with "File exists".
std::string portDeviceName(const std::string& devargs) {
  std::string name = devargs.substr(0, devargs.find(','));
  rte_pci_addr addr{};
  if (rte_pci_addr_parse(name.c_str(), &addr) == 0) {
    char full[PCI_PRI_STR_SIZE];
    rte_pci_device_name(&addr, full, sizeof full);
    name = full;
  }
  return name;
}

namespace {

constexpr uint16_t kBurst = 32;  // packets per rx burst; quiescent report between bursts
// Bytes of a frame besides its MTU's worth of IP: Ethernet and two VLAN tags.
constexpr uint32_t kFrameOverhead = RTE_ETHER_HDR_LEN + 2 * RTE_VLAN_HLEN;

std::mutex gEalMutex;
bool gEalReady = false;
std::set<std::string> gEalPlugins;  // the -d paths of the EAL arguments it started with
std::atomic<unsigned> gInstance{0};
std::atomic<unsigned> gLivePlanes{0};  // releaseDpdkEnvironment() waits for 0

std::string rteError() { return rte_strerror(rte_errno); }

// Each line of text as a keel record at level, `event=dpdk_log
// message="..."`.
void logDpdkLines(LogLevel level, std::string_view text) {
  while (!text.empty()) {
    const size_t nl = text.find('\n');
    const std::string_view line = text.substr(0, nl);
    if (!line.empty()) logRecord(level, LogRecord("dpdk_log").add("message", line));
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
}

// DPDK's own lines (EAL, the drivers) become keel records at their level,
// `event=dpdk_log message="EAL: ..."`, instead of going to EAL's default
// stream (stderr before rte_eal_init(), stdout and syslog after it).
// The stream is unbuffered, so glibc's vfprintf() formats each message
// whole and writes it in one call on the thread that logs (a worker's
// too), under the stream's lock: one write is one message, from the
// thread whose rte_log_cur_msg_loglevel() is its level (a buffered stream
// could flush one thread's message on another's fflush, at that one's
// level). Each of its lines is a record. Never throws into glibc.
ssize_t writeDpdkLog(void*, const char* buf, size_t size) noexcept try {
  LogLevel level = LogLevel::kDebug;
  const int dpdkLevel = rte_log_cur_msg_loglevel();
  if (dpdkLevel <= static_cast<int>(RTE_LOG_ERR))
    level = LogLevel::kError;
  else if (dpdkLevel == static_cast<int>(RTE_LOG_WARNING))
    level = LogLevel::kWarn;
  else if (dpdkLevel < static_cast<int>(RTE_LOG_DEBUG))
    level = LogLevel::kInfo;
  logDpdkLines(level, std::string_view(buf, size));
  return static_cast<ssize_t>(size);
} catch (...) {
  return static_cast<ssize_t>(size);  // a line lost, never the caller
}

// The libraries a driver uses print on stderr unless given a function of
// their own: net_af_xdp's libxdp and libbpf (which keeld links, so one
// copy in the process) when the port loads its XDP program. Their lines
// (each starts "libbpf: " or "libxdp: ") become records like DPDK's. Both
// libraries' levels are warn, info, debug (0, 1, 2); debug is dropped, as
// their own default printer drops it.
int printLibraryLine(int libLevel, const char* fmt, va_list args) noexcept try {
  if (libLevel > 1) return 0;
  va_list again;
  va_copy(again, args);
  std::string text(512, '\0');
  const int n = std::vsnprintf(text.data(), text.size(), fmt, args);
  if (n >= static_cast<int>(text.size())) {
    text.resize(static_cast<size_t>(n) + 1);
    std::vsnprintf(text.data(), text.size(), fmt, again);
  }
  va_end(again);
  if (n < 0) return n;
  text.resize(static_cast<size_t>(n));
  logDpdkLines(libLevel == 0 ? LogLevel::kWarn : LogLevel::kInfo, text);
  return n;
} catch (...) {
  return 0;
}
int printLibbpf(enum libbpf_print_level level, const char* fmt, va_list args) {
  return printLibraryLine(static_cast<int>(level), fmt, args);
}
int printLibxdp(int level, const char* fmt, va_list args) { return printLibraryLine(level, fmt, args); }

// libxdp is not keeld's own dependency: it is loaded with the af_xdp
// driver, which EAL loads as a plugin during rte_eal_init(). Its printer is
// set through the loaded copy, if there is one.
void routeLibraryLogs() {
  libbpf_set_print(printLibbpf);
  using LibxdpPrint = int (*)(int, const char*, va_list);
  if (void* libxdp = dlopen("libxdp.so.1", RTLD_LAZY | RTLD_NOLOAD)) {
    if (void* set = dlsym(libxdp, "libxdp_set_print"))
      reinterpret_cast<LibxdpPrint (*)(LibxdpPrint)>(set)(printLibxdp);
    dlclose(libxdp);
  }
}

// The name of process pid (its comm), or "" when gone.
std::string processName(long pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/comm");
  std::string name;
  std::getline(f, name);
  return name;
}

Status initEal(const std::vector<std::string>& args) {
  std::lock_guard<std::mutex> lock(gEalMutex);
  if (gEalReady) return Status::ok();
  static FILE* const logStream = [] {
    FILE* f = fopencookie(nullptr, "w", cookie_io_functions_t{nullptr, writeDpdkLog, nullptr, nullptr});
    if (f && setvbuf(f, nullptr, _IONBF, 0) == 0) rte_openlog_stream(f);
    return f;
  }();
  (void)logStream;
  std::vector<std::string> store{"keeld"};
  store.insert(store.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : store) argv.push_back(a.data());
  argv.push_back(nullptr);
  if (rte_eal_init(static_cast<int>(store.size()), argv.data()) < 0) {
    std::string joined;
    for (const auto& a : args) joined += " " + a;
    // A --file-prefix another primary holds fails EAL with no errno set
    // ("Success"): say whose it is. EAL looks at it before the hugepages.
    std::string why;
    std::string prefix;
    if (const long holder = ealPrefixHolder(args, &prefix); holder > 0)
      why = "another DPDK primary process (pid " + std::to_string(holder) + ", " + processName(holder) +
            ") runs with --file-prefix " + prefix +
            ": give each keeld, and each other DPDK program, a --file-prefix of its own";
    // Hugepages it cannot use fail EAL with EACCES ("Permission denied"),
    // which says nothing of them: the pages free now, as EAL counts them.
    else if (rte_errno == EACCES)
      why = hugepageProblem(args, readHugepages(), /*freeOnly=*/true);
    return Status::error("dpdk.eal_args: EAL initialisation failed: " + (why.empty() ? rteError() : why) +
                         " (args:" + joined + ")");
  }
  routeLibraryLogs();
  gEalReady = true;
  gEalPlugins.clear();
  for (const auto& [i, path] : ealOptionValues(args, "-d")) gEalPlugins.insert(path);
  return Status::ok();
}

// A file EAL loads from a driver directory (eal_plugindir_init): a regular
// file (through symlinks) whose name ends in ".so" or ".so." and a version.
bool pluginFile(const std::string& dir, const std::string& name) {
  const size_t so = name.rfind(".so");
  if (so == std::string::npos || so == 0) return false;
  const std::string_view rest = std::string_view(name).substr(so + 3);
  if (!rest.empty() && (rest[0] != '.' || rest.size() == 1 ||
                        rest.find_first_not_of("0123456789.") != std::string_view::npos))
    return false;
  struct stat sb;
  return ::stat((dir + "/" + name).c_str(), &sb) == 0 && S_ISREG(sb.st_mode);
}

// Loads one driver path as EAL's start does (eal_plugins_init): every
// driver file of a directory, or one file (a name without '/' through the
// library search path). "" or why not. Never unloaded: the drivers' constructors
// registered them with their buses.
std::string loadPlugin(const std::string& path) {
  struct stat sb;
  if (::stat(path.c_str(), &sb) == 0 && S_ISDIR(sb.st_mode)) {
    std::vector<std::string> names;
    if (DIR* d = ::opendir(path.c_str())) {
      while (const dirent* e = ::readdir(d))
        if (pluginFile(path, e->d_name)) names.push_back(e->d_name);
      ::closedir(d);
    } else {
      return std::string("cannot read the directory: ") + std::strerror(errno);
    }
    // A file named *.so that does not load fails EAL's start; one of
    // another suffix EAL may not even try (it takes *.so.ABI_VERSION alone),
    // so its failure says nothing.
    for (const std::string& name : names)
      if (std::string why = loadPlugin(path + "/" + name); !why.empty() && name.size() > 3 &&
                                                           name.compare(name.size() - 3, 3, ".so") == 0)
        return why;
    return "";
  }
  if (::dlopen(path.c_str(), RTLD_NOW)) return "";
  const char* why = ::dlerror();
  return why ? why : "dlopen failed";
}

// Each mbuf's data room, its headroom included, for a port MTU (0: the
// driver's default): a frame of the MTU in one buffer (see init()).
uint32_t mbufDataRoom(uint16_t mtu) {
  const uint32_t frame = uint32_t{mtu} + kFrameOverhead;
  return std::max<uint32_t>(RTE_MBUF_DEFAULT_BUF_SIZE, RTE_PKTMBUF_HEADROOM + (frame + 1023u) / 1024u * 1024u);
}

// Each worker's share of limits.conn_table_size (its tables' capacity per
// family): init() sizes the tables by it, dpdkMemoryFloor counts them.
uint32_t connTableShare(uint32_t connTableSize, uint32_t workers) { return (connTableSize + workers - 1) / workers; }

// Whether a bus takes the name devargs give (a vdev driver's name or alias
// and a number, a PCI address), as EAL's start and a port's probe decide:
// the config check's answer and attachPort()'s.
bool busTakes(const std::string& devargs) {
  rte_devargs parsed{};
  const bool known = rte_devargs_parse(&parsed, devargs.c_str()) == 0;
  std::free(parsed.data);  // what rte_devargs_reset (experimental in 22.11) frees
  return known;
}

}  // namespace

EalMemoryNeed dpdkMemoryFloor(uint32_t workers, uint32_t mbufsPerWorker, uint16_t mtu, uint32_t connTableSize) {
  EalMemoryNeed f;
  if (workers == 0) return f;
  f.mbufBytes = uint64_t{mbufsPerWorker} * workers * (sizeof(rte_mbuf) + mbufDataRoom(mtu));
  f.connBytes = uint64_t{workers} * dpdk::ConnTable::bytesFor(connTableShare(connTableSize, workers));
  return f;
}

long ealPrefixHolder(const std::vector<std::string>& ealArgs, std::string* prefixOut) {
  auto given = [&](const char* option) {
    return std::any_of(ealArgs.begin(), ealArgs.end(), [&](const std::string& a) { return a == option; });
  };
  if (given("--in-memory") || given("--no-shconf")) return 0;  // no shared config, no lock
  const std::vector<std::pair<size_t, std::string>> prefixes = ealOptionValues(ealArgs, "--file-prefix");
  const std::string prefix = prefixes.empty() ? "rte" : prefixes.back().second;
  if (prefixOut) *prefixOut = prefix;
  // EAL's runtime directory: /var/run/dpdk for root, else
  // $XDG_RUNTIME_DIR/dpdk or /tmp/dpdk (eal_create_runtime_dir).
  std::string base = "/var/run";
  if (::getuid() != 0) {
    const char* xdg = std::getenv("XDG_RUNTIME_DIR");
    base = xdg ? xdg : "/tmp";
  }
  const Fd fd(::open((base + "/dpdk/" + prefix + "/config").c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return 0;
  struct flock fl{};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  if (::fcntl(fd.get(), F_GETLK, &fl) != 0 || fl.l_type == F_UNLCK) return 0;
  return fl.l_pid;
}

std::optional<DeviceNameCheck> checkDpdkDeviceNames(const std::vector<std::string>& plugins,
                                                    const std::vector<std::string>& devargs, bool mayLoad) {
  std::lock_guard<std::mutex> lock(gEalMutex);
  DeviceNameCheck out;
  if (gEalReady) {
    // EAL loaded its drivers at its start; one it did not load is not looked for.
    for (const std::string& p : plugins)
      if (!gEalPlugins.count(p)) return std::nullopt;
    out.pluginErrors.assign(plugins.size(), "");
  } else {
    if (!mayLoad) return std::nullopt;
    // DPDK's own driver directory, as EAL loads it first in a shared build.
    struct stat sb;
    if (::stat(RTE_EAL_PMD_PATH, &sb) == 0 && S_ISDIR(sb.st_mode) && !loadPlugin(RTE_EAL_PMD_PATH).empty())
      return std::nullopt;  // EAL would fail to start too, but say so itself
    bool loaded = true;
    for (const std::string& p : plugins) {
      out.pluginErrors.push_back(loadPlugin(p));
      loaded = loaded && out.pluginErrors.back().empty();
    }
    // A driver path that does not load: EAL refuses it first, and the
    // names its drivers might have taken are not looked for.
    if (!loaded) {
      out.known.assign(devargs.size(), true);
      return out;
    }
  }
  // rte_devargs_parse logs each name no bus takes; the caller says it itself.
  const int level = rte_log_get_level(RTE_LOGTYPE_EAL);
  rte_log_set_level(RTE_LOGTYPE_EAL, RTE_LOG_CRIT);
  for (const std::string& d : devargs) out.known.push_back(busTakes(d));
  if (level >= 0) rte_log_set_level(RTE_LOGTYPE_EAL, static_cast<uint32_t>(level));
  return out;
}

namespace {

// Finds the ethdev for devargs, hot-plugging it if EAL did not already probe
// it. *probed tells the caller to remove it again on shutdown.
Status attachPort(const std::string& devargs, const char* what, uint16_t* port, bool* probed) {
  *probed = false;
  std::string name = portDeviceName(devargs);
  if (rte_eth_dev_get_port_by_name(name.c_str(), port) == 0) return Status::ok();
  // A name no bus takes (a vdev driver's name misspelt, or its driver not
  // installed): EAL says only "failed to parse device", and rte_dev_probe
  // EFAULT, which read as the driver's refusal.
  if (!busTakes(devargs))
    return Status::error(std::string(what) + ": cannot probe \"" + devargs + "\": " + unknownDeviceName(name));
  int rc = rte_dev_probe(devargs.c_str());
  if (rc < 0)
    // Drivers return what they like (af_packet: -1 for any devargs it
    // refuses), so the errno is no reason; EAL's own lines say it.
    return Status::error(std::string(what) + ": cannot probe \"" + devargs +
                         "\": its driver refused it (EAL's messages before this one say why; rte_dev_probe: " +
                         rte_strerror(-rc) + ")");
  *probed = true;
  if (rte_eth_dev_get_port_by_name(name.c_str(), port) != 0)
    return Status::error(std::string(what) + ": \"" + devargs + "\" probed but no port named \"" +
                         name + "\"");
  return Status::ok();
}

// The RSS key every keeld gives the port: the Toeplitz key of Microsoft's
// RSS specification, repeated to the device's key length. Fixed, so the same
// queue count spreads flows the same way after every restart (the restored
// connection tables go back to the workers their flows reach, conn_persist.h);
// left to the driver, some draw a random key at each start (ice, ena).
std::vector<uint8_t> rssKey(size_t len) {
  static constexpr uint8_t kKey[40] = {0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67,
                                       0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0, 0xd0, 0xca, 0x2b, 0xcb,
                                       0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30,
                                       0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa};
  std::vector<uint8_t> key(len);
  for (size_t i = 0; i < len; ++i) key[i] = kKey[i % sizeof kKey];
  return key;
}

// What setupPort() configured: the descriptor counts after the driver's
// adjustment and the RSS hash functions applied (0: none).
struct PortSetup {
  uint16_t rxd = 0;
  uint16_t txd = 0;
  uint64_t rssHf = 0;
  uint32_t spread = 0;  // portSpread() of the port as set up
  // The MTU the kernel interface behind a vdev had before dpdk.mtu changed
  // it (0: unchanged, or none): closePort() puts it back, so neither a stop
  // nor a failed start leaves the host's interface at keel's MTU.
  uint16_t kernelMtuBefore = 0;
};

// An SIOC[GS]IF* ioctl on a kernel interface of this network namespace
// (/sys/class/net may be another namespace's); false if it failed. The
// name is filled in; a set request's value is given in *ifr already.
bool kernelIfreq(const std::string& iface, unsigned long request, ifreq* ifr) {
  if (iface.empty() || iface.size() >= IFNAMSIZ) return false;
  const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  std::memset(ifr->ifr_name, 0, sizeof ifr->ifr_name);
  std::memcpy(ifr->ifr_name, iface.data(), iface.size());
  const int rc = ::ioctl(fd, request, ifr);
  ::close(fd);
  return rc == 0;
}

// The MTU of a kernel interface, 0 if it cannot be read.
uint16_t kernelMtu(const std::string& iface) {
  ifreq ifr{};
  if (!kernelIfreq(iface, SIOCGIFMTU, &ifr) || ifr.ifr_mtu <= 0 || ifr.ifr_mtu > UINT16_MAX) return 0;
  return static_cast<uint16_t>(ifr.ifr_mtu);
}

// The receive queues a kernel interface's driver spreads frames over (its
// combined and rx-only channels, `ethtool -l`), or nullopt if it does not
// say (a driver without channel counts). rxOnly: the driver counts them as
// rx channels, so `ethtool -L IFACE rx N` sets them (else `combined N`).
std::optional<uint32_t> kernelRxQueues(const std::string& iface, bool* rxOnly) {
  ethtool_channels ch{};
  ch.cmd = ETHTOOL_GCHANNELS;
  ifreq ifr{};
  ifr.ifr_data = reinterpret_cast<char*>(&ch);
  if (!kernelIfreq(iface, SIOCETHTOOL, &ifr)) return std::nullopt;
  const uint32_t n = ch.combined_count + ch.rx_count;
  if (n == 0) return std::nullopt;
  *rxOnly = ch.combined_count == 0;
  return n;
}

// How a port spreads flows over its queues, as a digest for the saved
// connection tables (dpdk::SavedConns::spread): its driver (a NIC's RSS,
// net_af_packet's fanout hash, ...), the RSS hash types and key length keel
// configured (the key itself is keel's fixed one, repeated to that length)
// and the queue count. FNV-1a; never 0 (0: unknown).
uint32_t portSpread(const rte_eth_dev_info& info, uint64_t rssHf, uint16_t queues) {
  uint32_t h = 2166136261u;
  auto mix = [&h](const void* p, size_t n) {
    for (size_t i = 0; i < n; ++i) h = (h ^ static_cast<const uint8_t*>(p)[i]) * 16777619u;
  };
  if (info.driver_name) mix(info.driver_name, std::strlen(info.driver_name));
  mix(&rssHf, sizeof rssHf);
  mix(&info.hash_key_size, sizeof info.hash_key_size);
  mix(&queues, sizeof queues);
  return h ? h : 1;
}

// Sets a kernel interface's MTU; false if it cannot (errno says why).
bool setKernelMtu(const std::string& iface, uint16_t mtu) {
  ifreq ifr{};
  ifr.ifr_mtu = mtu;
  return kernelIfreq(iface, SIOCSIFMTU, &ifr);
}

// The largest MTU a device takes: its max_mtu, and its largest frame less
// the overhead it counts on top of the MTU (ethdev's rule for both checks).
uint32_t deviceMaxMtu(const rte_eth_dev_info& info) {
  const uint32_t overhead = info.max_mtu != UINT16_MAX && info.max_rx_pktlen > info.max_mtu
                                ? info.max_rx_pktlen - info.max_mtu
                                : RTE_ETHER_HDR_LEN + RTE_ETHER_CRC_LEN;
  const uint32_t byFrame = info.max_rx_pktlen > overhead ? info.max_rx_pktlen - overhead : 0;
  return std::min<uint32_t>(info.max_mtu, byFrame);
}

// mtu 0: the driver's default (ethdev configures RTE_ETHER_MTU, 1500).
// kernelIface: the interface behind a vdev (vdevInterface), or "".
Status setupPort(uint16_t port, const char* what, uint16_t queues, uint16_t rxd, uint16_t txd,
                 rte_mempool* pool, bool rss, uint16_t mtu, const std::string& kernelIface, PortSetup* setup) {
  rte_eth_dev_info info{};
  int rc = rte_eth_dev_info_get(port, &info);
  if (rc != 0) return Status::error(std::string(what) + ": dev_info: " + rte_strerror(-rc));
  if (queues > info.max_rx_queues || queues > info.max_tx_queues)
    return Status::error(std::string(what) + ": " + std::to_string(queues) +
                         " workers need as many queues, the device has rx " +
                         std::to_string(info.max_rx_queues) + " tx " +
                         std::to_string(info.max_tx_queues));
  // net_af_packet opens all its qpairs= sockets at probe time, in one fanout
  // group: the kernel spreads flows over every one of them, configured or
  // not, and those of a socket no worker reads are lost without a counter.
  if (info.driver_name && std::strstr(info.driver_name, "af_packet") && info.max_rx_queues > queues)
    return Status::error(std::string(what) + ": net_af_packet opened " + std::to_string(info.max_rx_queues) +
                         " queue pairs (qpairs=) for " + std::to_string(queues) +
                         " workers: the kernel spreads flows over all of them and the flows of the " +
                         std::to_string(info.max_rx_queues - queues) +
                         " no worker reads would be lost; give qpairs=" + std::to_string(queues));
  rte_eth_conf conf{};
  if (mtu != 0) {
    const uint32_t maxMtu = deviceMaxMtu(info);
    if (mtu < info.min_mtu || mtu > maxMtu)
      return Status::error("dpdk.mtu: " + std::to_string(mtu) + " is outside what " + std::string(what) +
                           " takes: its driver's MTU range is " + std::to_string(info.min_mtu) + ".." +
                           std::to_string(maxMtu));
    conf.rxmode.mtu = mtu;
  }
  std::vector<uint8_t> key;
  if (rss && queues > 1) {
    // RSS keeps a flow on one queue and so on one worker: each worker's
    // connection table sees all packets of its flows.
    uint64_t hf = (RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP) & info.flow_type_rss_offloads;
    if (hf) {
      conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
      conf.rx_adv_conf.rss_conf.rss_hf = hf;
      if (info.hash_key_size > 0) {
        key = rssKey(info.hash_key_size);
        conf.rx_adv_conf.rss_conf.rss_key = key.data();
        conf.rx_adv_conf.rss_conf.rss_key_len = info.hash_key_size;
      }
      setup->rssHf = hf;
    }
  }
  rc = rte_eth_dev_configure(port, queues, queues, &conf);
  if (rc != 0) return Status::error(std::string(what) + ": configure: " + rte_strerror(-rc));
  // configure() records the MTU for the driver's start; a device backed by a
  // kernel interface (net_af_packet, net_af_xdp, net_tap) sets it there only
  // through its mtu_set. Drivers without one (net_pcap, net_ring) return
  // -ENOTSUP: what configure() recorded is all they have.
  if (mtu != 0) {
    const uint16_t before = kernelMtu(kernelIface);
    rc = rte_eth_dev_set_mtu(port, mtu);
    if (rc != 0 && rc != -ENOTSUP)
      return Status::error("dpdk.mtu: " + std::string(what) + " refused MTU " + std::to_string(mtu) + ": " +
                           rte_strerror(-rc));
    if (rc == 0 && before != 0 && before != mtu) setup->kernelMtuBefore = before;
  }
  rc = rte_eth_dev_adjust_nb_rx_tx_desc(port, &rxd, &txd);
  if (rc != 0) return Status::error(std::string(what) + ": descriptors: " + rte_strerror(-rc));
  setup->rxd = rxd;
  setup->txd = txd;
  int socket = rte_eth_dev_socket_id(port);
  for (uint16_t q = 0; q < queues; ++q) {
    rc = rte_eth_rx_queue_setup(port, q, rxd, socket, nullptr, pool);
    // net_af_xdp fills its socket's ring from the pool when the queue is
    // set up, and fails with only "Invalid argument" when the pool is short
    // (DPDK 22.11: it takes 2,048 buffers a worker, config.h's
    // kAfXdpFillBuffers). The exception interface's RX ring comes from the
    // same pool after the port's: short, its net_tap setup fails with
    // ENOMEM (on a NIC, ENOMEM is rather the ring's own memory).
    const bool tap = std::strcmp(what, "dpdk.exception_interface") == 0;
    if (rc != 0)
      return Status::error(std::string(what) + ": rx queue " + std::to_string(q) + ": " + rte_strerror(-rc) +
                           (info.driver_name && std::strstr(info.driver_name, "af_xdp")
                                ? " (net_af_xdp: too few buffers for its ring? raise dataplane.dpdk.mbufs_per_worker)"
                            : tap && rc == -ENOMEM
                                ? " (too few packet buffers after the port's? raise dataplane.dpdk.mbufs_per_worker)"
                                : ""));
    rc = rte_eth_tx_queue_setup(port, q, txd, socket, nullptr);
    if (rc != 0)
      return Status::error(std::string(what) + ": tx queue " + std::to_string(q) + ": " +
                           rte_strerror(-rc));
  }
  setup->spread = portSpread(info, setup->rssHf, queues);
  return Status::ok();
}

// Stops and closes a port; removes the device too if we hot-plugged it, so
// a later data plane in the same process can probe the same name again.
// What a port's start changed on the kernel interface behind a vdev, put
// back by closePort(): the MTU (PortSetup::kernelMtuBefore) and the
// receive modes.
struct KernelRestore {
  std::string iface;  // vdevInterface() of the port
  uint16_t mtu = 0;
  // IFF_PROMISC and IFF_ALLMULTI as the interface had them before the
  // port started (-1: not read, nothing to put back).
  int modesBefore = -1;
  // DpdkOptions::kernelStateFile, removed once both are put back ("": none).
  std::string file;
};

constexpr int kReceiveModes = IFF_PROMISC | IFF_ALLMULTI;

// A kernel interface's MTU and receive modes (DpdkOptions::kernelStateFile),
// and which interface of which boot they are of: a record is used only for
// the same interface (its ifindex: one deleted and made again under the
// name is another) in the same boot (a state directory that outlives a
// reboot must not set an old boot's values).
struct KernelState {
  uint16_t mtu = 0;
  int modes = 0;  // IFF_PROMISC | IFF_ALLMULTI
  unsigned ifindex = 0;
  std::string boot;  // /proc/sys/kernel/random/boot_id
};

std::string bootId() {
  char id[64] = {};
  FILE* f = std::fopen("/proc/sys/kernel/random/boot_id", "re");
  if (!f) return "";
  const bool got = std::fscanf(f, "%63s", id) == 1;
  std::fclose(f);
  return got ? id : "";
}

// The file's one line: "keel-kernel-state 1 iface=IFACE ifindex=N boot=ID
// mtu=N promiscuous=0|1 allmulticast=0|1".
Status writeKernelState(const std::string& file, const std::string& iface, const KernelState& k) {
  return writeFileReplacing(file, 0644, [&](FILE* f) {
    return std::fprintf(f, "keel-kernel-state 1 iface=%s ifindex=%u boot=%s mtu=%u promiscuous=%d allmulticast=%d\n",
                        iface.c_str(), k.ifindex, k.boot.c_str(), unsigned{k.mtu}, (k.modes & IFF_PROMISC) != 0,
                        (k.modes & IFF_ALLMULTI) != 0) > 0;
  });
}

// What a file of writeKernelState() holds for `now`'s interface and boot;
// nullopt when there is none (ENOENT), else *error says why it is not used.
std::optional<KernelState> readKernelState(const std::string& file, const std::string& iface, const KernelState& now,
                                           std::string* error) {
  FILE* f = std::fopen(file.c_str(), "re");
  if (!f) {
    if (errno != ENOENT) *error = "open " + file + ": " + std::strerror(errno);
    return std::nullopt;
  }
  char name[IFNAMSIZ + 1] = {};
  char boot[64] = {};
  unsigned ifindex = 0, mtu = 0;
  int promisc = 0, allmulti = 0;
  const int got = std::fscanf(f, "keel-kernel-state 1 iface=%16s ifindex=%u boot=%63s mtu=%u promiscuous=%d allmulticast=%d",
                              name, &ifindex, boot, &mtu, &promisc, &allmulti);
  std::fclose(f);
  if (got != 6 || mtu == 0 || mtu > UINT16_MAX) {
    *error = file + ": not a kernel-state line this keeld writes";
    return std::nullopt;
  }
  if (iface != name || ifindex != now.ifindex || now.boot != boot) {
    *error = file + " is about " + name + " (ifindex " + std::to_string(ifindex) + ") of boot " + boot +
             ", not this " + iface + " (ifindex " + std::to_string(now.ifindex) + ") of boot " + now.boot;
    return std::nullopt;
  }
  return KernelState{static_cast<uint16_t>(mtu), (promisc ? IFF_PROMISC : 0) | (allmulti ? IFF_ALLMULTI : 0), ifindex,
                     boot};
}

// Sets a kernel interface's IFF_PROMISC and IFF_ALLMULTI to `modes`,
// leaving its other flags; false if it cannot.
bool setKernelModes(const std::string& iface, int modes) {
  ifreq ifr{};
  if (!kernelIfreq(iface, SIOCGIFFLAGS, &ifr)) return false;
  ifr.ifr_flags = static_cast<short>((ifr.ifr_flags & ~kReceiveModes) | (modes & kReceiveModes));
  return kernelIfreq(iface, SIOCSIFFLAGS, &ifr);
}

// Stops a started port. Link down first where the driver can (many keep
// the link up through a stop): the router's ECMP then sees the port gone
// instead of sending into it until BFD or BGP notices. -ENOTSUP elsewhere
// (vdevs): ignored.
void stopPort(uint16_t port) {
  rte_eth_dev_set_link_down(port);
  rte_eth_dev_stop(port);
}

// Puts back the receive modes a kernel interface had before the port
// started (nothing to do: true); false, logged, if it cannot.
bool restoreModes(const KernelRestore& restore) {
  if (restore.modesBefore < 0 || setKernelModes(restore.iface, restore.modesBefore)) return true;
  logWarn(LogRecord("dpdk_modes_not_restored").add("interface", restore.iface)
              .add("promiscuous", (restore.modesBefore & IFF_PROMISC) != 0)
              .add("allmulticast", (restore.modesBefore & IFF_ALLMULTI) != 0)
              .add("error", std::strerror(errno)));
  return false;
}

void closePort(uint16_t port, bool probed, KernelRestore restore = {}) {
  rte_eth_dev_info info{};
  rte_device* dev = rte_eth_dev_info_get(port, &info) == 0 ? info.device : nullptr;
  stopPort(port);
  rte_eth_dev_close(port);
  bool restored = restoreModes(restore);
  // By the kernel itself: ethdev would check the old MTU against the
  // driver's frame limit (af_packet: 1518 bytes), refusing a jumbo one.
  if (restore.mtu != 0 && !setKernelMtu(restore.iface, restore.mtu)) {
    restored = false;
    logWarn(LogRecord("dpdk_mtu_not_restored").add("interface", restore.iface).add("mtu", restore.mtu)
                .add("error", std::strerror(errno)));
  }
  // Kept when something did not come back: the next keeld tries again.
  if (restored && !restore.file.empty() && ::unlink(restore.file.c_str()) != 0 && errno != ENOENT)
    logWarn(LogRecord("dpdk_kernel_state_not_removed").add("file", restore.file).add("error", std::strerror(errno)));
  if (probed && dev) rte_dev_remove(dev);
}

// Sends what it can; frees the rest (a full TX ring is a drop, never a
// wait). Returns how many it freed unsent.
inline uint16_t sendOrFree(uint16_t port, uint16_t queue, rte_mbuf** pkts, uint16_t n) {
  if (n == 0) return 0;
  uint16_t sent = rte_eth_tx_burst(port, queue, pkts, n);
  if (sent == n) return 0;
  rte_pktmbuf_free_bulk(pkts + sent, n - sent);
  return static_cast<uint16_t>(n - sent);
}

// sendOrFree() for the exception interface: net_tap stops a burst at a
// frame it refuses (a failed write to the kernel; frames over the tap's
// MTU the worker loop frees before) as it does at a full queue, so the
// frame it stopped at is freed and the rest are offered again: one bad
// frame no longer takes the frames behind it (ARP, BGP, SSH) with it. Two
// calls in a row that send nothing (the tap takes no frame at all: a full
// queue, the interface down) free the rest at once, so a tap that refuses
// everything costs two calls a burst, not one per frame. Returns how many
// it freed.
inline uint16_t sendToKernel(uint16_t tap, uint16_t queue, rte_mbuf** pkts, uint16_t n) {
  uint16_t lost = 0;
  bool lastSentNothing = false;
  for (uint16_t i = 0; i < n;) {
    const uint16_t sent = rte_eth_tx_burst(tap, queue, pkts + i, n - i);
    i += sent;
    if (i == n) break;
    if (sent == 0 && lastSentNothing) {
      rte_pktmbuf_free_bulk(pkts + i, n - i);
      return static_cast<uint16_t>(lost + (n - i));
    }
    lastSentNothing = sent == 0;
    rte_pktmbuf_free(pkts[i++]);
    ++lost;
  }
  return lost;
}

// Adds n to a counter only its worker writes (a relaxed load and store, as
// dpdk::countEvent; readers load it relaxed).
inline void addTo(std::atomic<uint64_t>& c, uint64_t n) {
  c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

// A net_af_packet socket reads what its interface sends as well as what it
// receives: the host's own frames and those the kernel forwards. They
// carry the port's MAC as their source, which no frame from the wire has;
// balanced, a VIP packet the host sent would reach its real twice (keel
// and the kernel each sent it). Frees them before the packet path (so
// counted under no reason), keeps the rest in order, returns their count.
uint16_t dropOwnFrames(rte_mbuf** pkts, uint16_t n, const std::array<uint8_t, 6>& mac, std::atomic<uint64_t>& own) {
  uint16_t kept = 0;
  for (uint16_t i = 0; i < n; ++i) {
    rte_mbuf* m = pkts[i];
    if (rte_pktmbuf_data_len(m) >= 12 && std::memcmp(rte_pktmbuf_mtod(m, const uint8_t*) + 6, mac.data(), 6) == 0)
      rte_pktmbuf_free(m);
    else
      pkts[kept++] = m;
  }
  if (kept != n) addTo(own, n - kept);
  return kept;
}

// One grace period: returns once every online worker has reported a
// quiescent state since the call, i.e. finished the burst that might hold
// the snapshot just replaced (what rte_rcu_qsbr_synchronize does). It must
// wait that long whatever it takes, or a worker could read freed tables;
// but a worker that stops reporting (its lcore stalled, or descheduled on
// a shared core) would hold keeld's loop (API, health checks, metrics)
// with no word, so after a second it says so, once, and again when it ends.
// A worker that sleeps when idle (idle_sleep_us) delays each grace period
// by up to one sleep.
void waitGracePeriod(rte_rcu_qsbr* qs) {
  const uint64_t token = rte_rcu_qsbr_start(qs);
  if (rte_rcu_qsbr_check(qs, token, false) == 1) return;
  const uint64_t hz = rte_get_timer_hz(), start = rte_get_timer_cycles();
  bool warned = false;
  while (rte_rcu_qsbr_check(qs, token, false) != 1) {
    if (!warned && rte_get_timer_cycles() - start > hz) {
      logWarn(LogRecord("dpdk_grace_period_slow")
                  .add("reason", "a DPDK worker has not finished its burst for over 1 s (its lcore stalled, "
                                 "or shares a busy CPU): table updates, and keeld with them, wait for it"));
      warned = true;
    }
    rte_pause();
  }
  if (warned)
    logInfo(LogRecord("dpdk_grace_period_ended")
                .add("ms", static_cast<uint64_t>((rte_get_timer_cycles() - start) * 1000 / hz)));
}

class DpdkDataplaneImpl;

struct alignas(64) Worker {
  DpdkDataplaneImpl* owner = nullptr;
  unsigned lcore = 0;
  uint16_t queue = 0;
  std::unique_ptr<dpdk::WorkerState> state;
  // WorkerStats' TX figures (the worker writes them, readCounters reads).
  alignas(64) std::atomic<uint64_t> exceptionEgress{0};
  std::atomic<uint64_t> txDropped{0};
  std::atomic<uint64_t> toKernelDropped{0};
  std::atomic<uint64_t> fromKernelDropped{0};
  std::atomic<uint64_t> hostFramesIgnored{0};  // dropOwnFrames
  std::atomic<bool> running{false};
};

class DpdkDataplaneImpl final : public DpdkDataplane {
 public:
  explicit DpdkDataplaneImpl(const DpdkOptions& o) : opts_(o) { gLivePlanes.fetch_add(1); }

  ~DpdkDataplaneImpl() override {
    stopWorkers();
    if (portReady_) closePort(port_, portProbed_, portRestore_);  // net_pcap flushes its files here
    if (tapReady_) closePort(tap_, tapProbed_);
    store_.reset();  // its last grace period runs while qsbr_ still exists
    if (pool_) rte_mempool_free(pool_);
    rte_free(qsbr_);
    gLivePlanes.fetch_sub(1);
  }

  Status init() {
    if (opts_.workerLcores.empty()) return Status::error("dpdk.workers: at least one worker lcore");
    if (opts_.port.empty()) return Status::error("dpdk.port: empty");
    if (Status s = initEal(opts_.ealArgs); !s) return s;
    for (unsigned lc : opts_.workerLcores) {
      if (lc < RTE_MAX_LCORE && rte_eal_lcore_role(lc) == ROLE_SERVICE)
        return Status::error("dpdk.workers: lcore " + std::to_string(lc) +
                             " is a service core (eal_args' -s or -S took it): a worker needs an lcore of "
                             "its own");
      if (lc >= RTE_MAX_LCORE || !rte_lcore_is_enabled(lc) || lc == rte_get_main_lcore())
        return Status::error("dpdk.workers: lcore " + std::to_string(lc) +
                             " is not an EAL worker lcore (give it to EAL with -l and keep it "
                             "off the main lcore " + std::to_string(rte_get_main_lcore()) + ")");
    }
    const uint16_t nq = static_cast<uint16_t>(opts_.workerLcores.size());
    unsigned id = gInstance.fetch_add(1);

    // Quiescent-state RCU: the control thread swaps a snapshot pointer and
    // waits (waitGracePeriod) until each online worker has reported
    // a quiescent state, i.e. finished the burst that might hold the old one.
    size_t sz = rte_rcu_qsbr_get_memsize(nq);
    qsbr_ = static_cast<rte_rcu_qsbr*>(rte_zmalloc("keel_qsbr", sz, RTE_CACHE_LINE_SIZE));
    if (!qsbr_ || rte_rcu_qsbr_init(qsbr_, nq) != 0)
      return Status::error("dpdk: cannot allocate the RCU state: " + rteError());
    rte_rcu_qsbr* qs = qsbr_;
    store_ = std::make_unique<dpdk::TableStore>(
        opts_.limits.maxServices, opts_.limits.maxBackends,
        [qs] { waitGracePeriod(qs); });

    if (Status s = attachPort(opts_.port, "dpdk.port", &port_, &portProbed_); !s) return s;
    portReady_ = true;

    // The pool on the NIC's socket (the one its DMA and the workers'
    // reads of each frame should not cross); a vdev has none: the main
    // lcore's.
    std::string poolName = "keel_pool" + std::to_string(id);
    uint32_t nbufs = opts_.mbufsPerWorker * nq;
    const int nicSocket = rte_eth_dev_socket_id(port_);
    const int poolSocket = nicSocket >= 0 ? nicSocket : static_cast<int>(rte_socket_id());
    // A frame of the MTU in one buffer: its Ethernet header and up to two
    // VLAN tags after the headroom (where the outer header goes), so the
    // packet path, which works in the first segment, sees all of it. Rounded
    // up to 1 KiB: NICs round the buffer they are given down (ixgbe to 1 KiB,
    // i40e and ice to 128 bytes) and would split a frame that only just fit;
    // start() checks what the driver made of it (kFrameOverhead).
    const uint32_t dataRoom = mbufDataRoom(opts_.mtu);
    facts_.bufferBytes = static_cast<uint16_t>(dataRoom);
    pool_ = rte_pktmbuf_pool_create(poolName.c_str(), nbufs, 256, 0, static_cast<uint16_t>(dataRoom), poolSocket);
    if (!pool_)
      return Status::error("dpdk.mbufs_per_worker: cannot create a pool of " + std::to_string(nbufs) +
                           " mbufs of " + std::to_string(dataRoom) + " bytes on socket " + std::to_string(poolSocket) + ": " + rteError() +
                           (rte_eal_has_hugepages() ? std::string(" (hugepages reserved on that socket?")
                                                    : std::string(" (EAL's -m under --no-huge?")) +
                           " lower mbufs_per_worker or give EAL more; docs/dpdk.md, \"Hugepages\")");
    portRestore_.iface = vdevInterface(opts_.port);
    if (!portRestore_.iface.empty() && !opts_.kernelStateFile.empty()) recordKernelState();
    PortSetup setup;
    Status set = setupPort(port_, "dpdk.port", nq, opts_.rxDescriptors, opts_.txDescriptors, pool_, true,
                           opts_.mtu, portRestore_.iface, &setup);
    portRestore_.mtu = setup.kernelMtuBefore;  // put back at close, even after a failure
    if (!set) return set;
    warnUnreadNicQueues(nq);
    facts_.rxDescriptors = setup.rxd;
    facts_.txDescriptors = setup.txd;
    facts_.rssHf = setup.rssHf;
    facts_.queues = nq;
    portSpread_ = setup.spread;
    facts_.portSocket = nicSocket;
    facts_.poolSocket = poolSocket;
    uint16_t mtu = 1500;
    rte_eth_dev_get_mtu(port_, &mtu);
    // Without dpdk.mtu, a port over a kernel interface (net_af_packet,
    // net_af_xdp) sends through that interface, which drops a frame over its
    // own MTU after keel counted it sent: a smaller kernel MTU is the port's.
    if (opts_.mtu == 0 && !portRestore_.iface.empty())  // (vdevInterface(opts_.port), above)
      if (const uint16_t kernel = kernelMtu(portRestore_.iface); kernel != 0 && kernel < mtu) {
        logWarn(LogRecord("dpdk_kernel_mtu")
                    .add("interface", portRestore_.iface)
                    .add("mtu", kernel)
                    .add("port_mtu", mtu)
                    .add("detail", "the port's kernel interface has the smaller MTU: keel checks packets "
                                   "against it (set dataplane.dpdk.mtu to choose one)"));
        mtu = kernel;
      }
    facts_.mtu = mtu;

    rte_ether_addr mac{};
    if (rte_eth_macaddr_get(port_, &mac) == 0) std::memcpy(portMac_.data(), mac.addr_bytes, 6);
    // net_af_packet (whatever name or --vdev the port was given by) hands
    // the workers what the host sends too (dropOwnFrames).
    rte_eth_dev_info devInfo{};
    ignoreOwnFrames_ = rte_eth_dev_info_get(port_, &devInfo) == 0 && devInfo.driver_name &&
                       std::strstr(devInfo.driver_name, "af_packet") != nullptr &&
                       portMac_ != std::array<uint8_t, 6>{};

    if (!opts_.exceptionInterface.empty()) {
      // net_tap makes the interface and refuses a name already taken with
      // a bare "File exists"; a tap of a keeld that died is gone with it.
      if (if_nametoindex(opts_.exceptionInterface.c_str()) != 0)
        return Status::error("dpdk.exception_interface: an interface named " + opts_.exceptionInterface +
                             " already exists; keeld creates this tap itself (and removes it when it stops): "
                             "name one no other interface has");
      tapName_ = "net_tap_keel" + std::to_string(id);
      // The kernel side gets the port's MAC: its ARP/ND answers then name the
      // MAC that frames for this host arrive on, as if it owned the port.
      std::string devargs = tapName_ + ",iface=" + opts_.exceptionInterface +
                            ",mac=" + MacAddress(portMac_).toString();
      if (Status s = attachPort(devargs, "dpdk.exception_interface", &tap_, &tapProbed_); !s)
        return s;
      tapReady_ = true;
      // The tap stays at its default MTU (1500) above it, whatever dpdk.mtu
      // says: net_tap takes no more than 1504 and refuses to send the
      // kernel a frame over its own MTU, so a kernel side at the port's
      // jumbo MTU would advertise a TCP MSS whose segments the tap then
      // drops. A port MTU below 1500 (dpdk.mtu, or the smaller MTU of the
      // port's kernel interface) is the tap's: the host's own TCP and BGP
      // then size what they send for the port, which would drop the rest.
      PortSetup tapSetup;
      const uint16_t tapMtu = facts_.mtu != 0 && facts_.mtu < 1500 ? static_cast<uint16_t>(facts_.mtu) : 0;
      tapMaxFrame_ = uint32_t{tapMtu ? tapMtu : 1500u} + 22;
      if (Status s = setupPort(tap_, "dpdk.exception_interface", nq, opts_.exceptionDescriptors,
                               opts_.exceptionDescriptors, pool_, false, tapMtu, "", &tapSetup); !s)
        return s;
    }

    const uint32_t perWorker = connTableShare(opts_.limits.connTableSize, nq);
    for (uint16_t q = 0; q < nq; ++q) {
      auto w = std::make_unique<Worker>();
      w->owner = this;
      w->lcore = opts_.workerLcores[q];
      w->queue = q;
      // The connection table in EAL memory on the worker's socket: on
      // hugepages its lookups need no page walk (docs/dpdk.md, Measurements).
      const dpdk::ConnMemory eal{
          [](size_t bytes, size_t align, int socket) {
            return rte_zmalloc_socket("keel_conns", bytes, static_cast<unsigned>(align), socket);
          },
          [](void* p) { rte_free(p); }, static_cast<int>(rte_lcore_to_socket_id(w->lcore))};
      try {
        w->state = std::make_unique<dpdk::WorkerState>(perWorker, store_->maxServices(),
                                                       store_->maxBackends(), mtu, eal);
      } catch (const std::bad_alloc&) {
        return Status::error("dpdk: cannot allocate the connection table of worker lcore " +
                             std::to_string(w->lcore) + " (" + std::to_string(perWorker) +
                             " flows per family) in EAL memory: give EAL more (-m / hugepages) "
                             "or lower limits.conn_table_size");
      }
      workers_.push_back(std::move(w));
    }
    // Each worker may read the others' tables for ICMP errors (WorkerState::peers).
    for (auto& w : workers_)
      for (const auto& other : workers_)
        if (other != w) w->state->peers.push_back(&other->state->conns);
    // ns = tsc * 1e9 / hz as a 32.32 fixed-point multiply (no division per burst).
    nsPerTsc_ = (static_cast<unsigned __int128>(1000000000ull) << 32) / rte_get_tsc_hz();
    if (opts_.autoStart) return start();
    return Status::ok();
  }

  // DpdkOptions::kernelStateFile. One already there was left by a plane
  // that never closed (keeld killed): the interface still has that plane's
  // MTU and receive modes, so what the file names is put back first, and a
  // later close puts back the operator's, not the dead plane's. Then the
  // interface's state as this plane finds it is written, before anything
  // changes it. Neither failing fails the start: the port runs, and a clean
  // close still puts back what this plane changed.
  void recordKernelState() {
    const std::string& iface = portRestore_.iface;
    const std::string& file = opts_.kernelStateFile;
    auto current = [&] {
      ifreq ifr{};
      return KernelState{kernelMtu(iface), kernelIfreq(iface, SIOCGIFFLAGS, &ifr) ? ifr.ifr_flags & kReceiveModes : 0,
                         if_nametoindex(iface.c_str()), bootId()};
    };
    KernelState now = current();
    if (now.mtu == 0) return;  // no interface to read (the port's probe says why)
    std::string why;
    if (std::optional<KernelState> left = readKernelState(file, iface, now, &why)) {
      if (left->modes != now.modes || left->mtu != now.mtu) {
        const bool modesBack = left->modes == now.modes || setKernelModes(iface, left->modes);
        const bool mtuBack = left->mtu == now.mtu || setKernelMtu(iface, left->mtu);
        const int err = errno;
        LogRecord r("dpdk_kernel_state_restored");
        r.add("interface", iface)
            .add("file", file)
            .add("mtu", left->mtu)
            .add("promiscuous", (left->modes & IFF_PROMISC) != 0)
            .add("allmulticast", (left->modes & IFF_ALLMULTI) != 0)
            .add("reason", "a keeld that did not stop (killed) left its MTU and receive modes on the interface; it "
                           "gets back those it had before");
        if (!modesBack || !mtuBack) {
          // The record stays as it is, for the next keeld to try again; this
          // one neither rewrites nor removes it.
          r.add("error", std::string(!mtuBack ? "the MTU" : "the receive modes") + " could not be set: " +
                             std::strerror(err) + "; " + file + " is kept for the next keeld");
          logWarn(r);
          return;
        }
        logWarn(r);
        now = current();
      }
    } else if (!why.empty()) {
      logWarn(LogRecord("dpdk_kernel_state_unreadable").add("file", file).add("reason", why + "; written again"));
    }
    if (Status s = writeKernelState(file, iface, now); !s)
      logWarn(LogRecord("dpdk_kernel_state_not_saved")
                  .add("file", file)
                  .add("error", s.message())
                  .add("reason", "if keeld is killed, the interface keeps the MTU and receive modes keel set"));
    else
      portRestore_.file = file;
  }


  // The port's receive modes (DpdkOptions::promiscuous). A refusal never
  // fails the start (frames to the port's own MAC still arrive); keeld
  // warns (portFacts: dpdk_not_promiscuous, dpdk_no_allmulticast,
  // dpdk_still_promiscuous).
  void setReceiveModes() {
    if (portRestore_.modesBefore >= 0) {
      // A kernel interface: its own flags decide what its NIC takes in,
      // and the exception interface's addresses are not its own, so it
      // joined none of their multicast groups (IPv6 neighbour solicitations,
      // VRRP): all-multicast, and promiscuous only if asked or if it was
      // before. rte_eth_dev_start() may have cleared the operator's
      // IFF_PROMISC (ethdev re-applies its own idea of the mode): what the
      // interface had before is the base, and it gets it back at close.
      const int want = portRestore_.modesBefore | IFF_ALLMULTI | (opts_.promiscuous ? IFF_PROMISC : 0);
      const bool set = setKernelModes(portRestore_.iface, want);
      ifreq ifr{};
      const int now = kernelIfreq(portRestore_.iface, SIOCGIFFLAGS, &ifr) ? ifr.ifr_flags : (set ? want : 0);
      facts_.promiscuous = (now & IFF_PROMISC) != 0;
      facts_.allMulticast = (now & kReceiveModes) != 0;
      return;
    }
    // Frames flooded to other MACs (a switch that has not learnt them,
    // another balancer's) are not ours unless asked (a VRRP virtual MAC in
    // front of the VIPs): a second balancer on the segment would forward
    // them too. Some drivers start promiscuous. A VF without trust refuses
    // promiscuous mode; all-multicast is asked for then.
    const bool promisc = opts_.promiscuous && rte_eth_promiscuous_enable(port_) == 0;
    if (!promisc) {
      if (!opts_.promiscuous && rte_eth_promiscuous_get(port_) == 1) (void)rte_eth_promiscuous_disable(port_);
      (void)rte_eth_allmulticast_enable(port_);
    }
    facts_.promiscuous = rte_eth_promiscuous_get(port_) == 1;
    facts_.allMulticast = facts_.promiscuous || rte_eth_allmulticast_get(port_) == 1;
  }

  // All or nothing: a start that fails part way stops what it started (the
  // workers it launched, the exception interface, the port) and puts the
  // interface's receive modes back, so no half-started plane forwards. Not
  // to be retried: some drivers do not come back from a stop (net_af_packet
  // closes its sockets and its start does not reopen them), so the plane is
  // done, as after saveConnTables(); a new plane starts afresh.
  Status start() override {
    if (ended_) return Status::error(std::string("dpdk: this plane does not start again: ") + ended_);
    if (started_) return Status::ok();
    // A kernel interface's receive modes as they were before the start,
    // which may change them (setReceiveModes).
    if (ifreq ifr{}; portRestore_.modesBefore < 0 && kernelIfreq(portRestore_.iface, SIOCGIFFLAGS, &ifr))
      portRestore_.modesBefore = ifr.ifr_flags & kReceiveModes;
    int rc = rte_eth_dev_start(port_);
    if (rc != 0) {
      ended_ = "its start failed";
      return Status::error("dpdk.port: start: " + std::string(rte_strerror(-rc)));
    }
    Status s = startRest();
    if (!s) {
      ended_ = "its start failed";
      stopWorkers();
      if (tapReady_) rte_eth_dev_stop(tap_);
      stopPort(port_);
      restoreModes(portRestore_);
      return s;
    }
    started_ = true;
    return Status::ok();
  }

  // start() past the port's own start.
  Status startRest() {
    if (Status s = checkWholeFrames(); !s) return s;
    setReceiveModes();
    if (tapReady_) {
      const int rc = rte_eth_dev_start(tap_);
      if (rc != 0)
        return Status::error("dpdk.exception_interface: start: " + std::string(rte_strerror(-rc)));
    }
    for (auto& w : workers_) {
      w->running.store(true);
      const int rc = rte_eal_remote_launch(&DpdkDataplaneImpl::workerMain, w.get(), w->lcore);
      if (rc != 0) {
        w->running.store(false);
        return Status::error("dpdk.workers: cannot launch on lcore " + std::to_string(w->lcore) +
                             " (busy?)");
      }
    }
    return Status::ok();
  }

  // With dpdk.mtu, a frame of the MTU must arrive in one buffer: the packet
  // path reads the first segment only, so a split jumbo frame would be
  // DROP_TRUNCATED. What the driver made of the pool's buffers is known once
  // the port runs (drivers that do not say, vdevs among them, pass).
  Status checkWholeFrames() const {
    if (opts_.mtu == 0) return Status::ok();
    const uint32_t frame = uint32_t{opts_.mtu} + kFrameOverhead;
    for (uint16_t q = 0; q < facts_.queues; ++q) {
      rte_eth_rxq_info qi{};
      if (rte_eth_rx_queue_info_get(port_, q, &qi) != 0) continue;
      if (qi.scattered_rx || (qi.rx_buf_size != 0 && qi.rx_buf_size < frame))
        return Status::error("dpdk.mtu: the driver splits frames of MTU " + std::to_string(opts_.mtu) +
                             " over its " + std::to_string(qi.rx_buf_size) +
                             "-byte receive buffers (keel reads a frame's first buffer only): lower dataplane.dpdk.mtu "
                             "to fit one buffer");
    }
    return Status::ok();
  }

  Status saveConnTables(const std::string& path, dpdk::ConnExportReport* report) override {
    stopWorkers();  // each table's only writer is gone: it can be read whole
    ended_ = "its connection tables were saved";  // what the file holds is what they last did
    std::vector<const dpdk::ConnTable*> tables;
    for (const auto& w : workers_) tables.push_back(&w->state->conns);
    dpdk::SavedConns saved = dpdk::exportConns(*store_->current(), tables, workerNowNs(), wallNowNs(), report);
    saved.spread = portSpread_;
    return dpdk::writeConnFile(path, saved);
  }

  Status restoreConnTables(const std::string& path, dpdk::ConnRestoreReport* report, bool* found) override {
    *report = dpdk::ConnRestoreReport{};
    *found = false;
    if (started_) return Status::error("dpdk: connection tables are restored only before the workers start");
    dpdk::SavedConns saved;
    if (Status s = dpdk::consumeConnFile(path, &saved, found); !s || !*found) return s;
    // The tables are as init() built them, empty (no worker has run): with
    // the saving layout restoreConns gives each its saved hash seeds first.
    std::vector<dpdk::ConnTable*> tables;
    for (auto& w : workers_) tables.push_back(&w->state->conns);
    *report = dpdk::restoreConns(*store_->current(), tables, saved, workerNowNs(), wallNowNs(), portSpread_);
    return Status::ok();
  }

  std::string kind() const override { return "dpdk"; }
  // What the config says: the store rounds its backend slots up to whole
  // chunks, but ids past limits.max_reals are refused as on XDP, so a
  // config that runs here runs there too.
  DataplaneLimits limits() const override { return opts_.limits; }
  uint16_t portId() const override { return port_; }
  std::array<uint8_t, 6> portMac() const override { return portMac_; }
  uint64_t exceptionEgressPackets() const override {
    uint64_t n = 0;
    for (const auto& w : workers_) n += w->exceptionEgress.load(std::memory_order_relaxed);
    return n;
  }

  Status setNode(const keel_node_config& node) override {
    Status s = store_->setNode(node);
    if (!s) return s;
    // What scanConns() and findConn() need of the snapshot, kept apart: they
    // may run on a thread that is no QSBR reader (keeld's conn.list), so
    // they must not hold a snapshot the next publish may free. From the
    // node itself: inside a batch the snapshot does not have it yet.
    tcpIdleNs_.store(dpdk::idleTimeoutNs(node.tcp_idle_timeout_s), std::memory_order_relaxed);
    udpIdleNs_.store(dpdk::idleTimeoutNs(node.udp_idle_timeout_s), std::memory_order_relaxed);
    return s;
  }
  Status addVip(const keel_vip_key& vip) override { return store_->addVip(vip); }
  Status removeVip(const keel_vip_key& vip) override { return store_->removeVip(vip); }
  Status upsertBackend(BackendId id, const keel_backend& b) override {
    return store_->upsertBackend(id, b);
  }
  Status upsertService(const keel_service_key& k, const keel_service_value& v) override {
    return store_->upsertService(k, v);
  }
  Status removeService(const keel_service_key& k) override { return store_->removeService(k); }
  Status publishRing(ServiceId id, std::vector<uint32_t> slots) override {
    return store_->publishRing(id, slots);
  }
  // One snapshot for a batch of the changes above (Dataplane::beginBatch).
  void beginBatch() override { store_->beginBatch(); }
  Status endBatch() override {
    store_->endBatch();
    return Status::ok();
  }

  Status zeroCounters(CounterKind kind, uint32_t id) override {
    const bool svc = kind == CounterKind::kService;
    // id < limits() <= the tables' sizes (store_->maxServices/maxBackends).
    // Each worker is the only writer of its slot, with a plain load + store
    // (countPacket), so a reset racing a count could be overwritten. It does
    // not race: the registry calls this after the update that stops the id's
    // use (invalidating upsertBackend, or removeService + empty ring), and
    // every TableStore publish returns only after a grace period, when no
    // worker still holds a snapshot in which the id is usable; a worker's
    // last counts were stored before it reported quiescent. Inside a batch
    // that update may not be published yet: flush() publishes it first
    // (so a batch that releases ids reaches the workers in more than one
    // snapshot). The relaxed atomic stores are for readStats(), which may
    // read concurrently.
    store_->flush();
    for (auto& w : workers_) {
      dpdk::WorkerCounters& c = w->state->counters;
      keel_counter& slot = svc ? c.services[id] : c.backends[id];
      __atomic_store_n(&slot.packets, 0, __ATOMIC_RELAXED);
      __atomic_store_n(&slot.bytes, 0, __ATOMIC_RELAXED);
    }
    return Status::ok();
  }

  DataplaneStats readCounters(uint32_t services, uint32_t backends) override {
    DataplaneStats st;
    st.services.assign(services, keel_counter{});
    st.backends.assign(backends, keel_counter{});
    // Returns the packets it added.
    auto add = [](keel_counter& dst, const keel_counter& src) {
      const uint64_t packets = __atomic_load_n(&src.packets, __ATOMIC_RELAXED);
      dst.packets += packets;
      dst.bytes += __atomic_load_n(&src.bytes, __ATOMIC_RELAXED);
      return packets;
    };
    for (const auto& w : workers_) {
      const dpdk::WorkerCounters& c = w->state->counters;
      for (size_t i = 0; i < st.services.size(); ++i) add(st.services[i], c.services[i]);
      for (size_t i = 0; i < st.backends.size(); ++i) add(st.backends[i], c.backends[i]);
      // Every packet the worker takes from its RX queue is counted under
      // exactly one reason (worker_path.cc's finish; worker_path_fuzz checks
      // it), so the sum of its reasons is what it received, with no counter
      // of its own to store per burst. A burst counts when it is processed,
      // one loop after it was read (runWorker's two-burst pipeline).
      uint64_t rx = 0;
      for (size_t i = 0; i < KEEL_R_MAX; ++i) rx += add(st.reasons[i], c.reasons[i]);
      st.connInsertsSkipped += __atomic_load_n(&c.ctInsertsSkipped, __ATOMIC_RELAXED);
      st.connMidflowMisses += __atomic_load_n(&c.ctMidflowMisses, __ATOMIC_RELAXED);
      auto peer = [&c](dpdk::PeerLookup r) { return __atomic_load_n(&c.icmpPeer[r], __ATOMIC_RELAXED); };
      const dpdk::ConnTable::Half h4 = w->state->conns.half(KEEL_AF_INET), h6 = w->state->conns.half(KEEL_AF_INET6);
      st.workers.push_back(WorkerStats{w->queue, w->lcore, rx, peer(dpdk::kPeerFound), peer(dpdk::kPeerNotFound),
                                       peer(dpdk::kPeerRateLimited), {h4.occupied, h6.occupied},
                                       {h4.capacity, h6.capacity}, {h4.liveEvictions, h6.liveEvictions}});
      WorkerStats& ws = st.workers.back();
      ws.txDropped = w->txDropped.load(std::memory_order_relaxed);
      ws.toKernelDropped = w->toKernelDropped.load(std::memory_order_relaxed);
      ws.fromKernel = w->exceptionEgress.load(std::memory_order_relaxed);
      ws.fromKernelDropped = w->fromKernelDropped.load(std::memory_order_relaxed);
      ws.hostFramesIgnored = w->hostFramesIgnored.load(std::memory_order_relaxed);
    }
    st.port = portStats();
    return st;
  }

  std::optional<PortStats> portStats() const {
    if (!portReady_) return std::nullopt;
    PortStats p;
    rte_eth_stats e{};
    if (rte_eth_stats_get(port_, &e) == 0) {
      p.rxPackets = e.ipackets;
      p.rxMissed = e.imissed;
      p.rxNoMbuf = e.rx_nombuf;
      p.rxErrors = e.ierrors;
      p.txPackets = e.opackets;
      p.txErrors = e.oerrors;
    }
    rte_eth_link link{};
    if (rte_eth_link_get_nowait(port_, &link) == 0)
      p.linkSpeedMbps = link.link_speed == RTE_ETH_SPEED_NUM_UNKNOWN ? 0 : link.link_speed;
    p.linkUp = portLinkUp().value_or(false);
    return p;
  }

  PortFacts portFacts() const override { return facts_; }

  // net_af_packet and net_af_xdp report their link up from start to stop
  // whatever the interface does: the kernel interface's own state is the
  // link there (IFF_RUNNING: carrier, and set up).
  std::optional<bool> portLinkUp() const override {
    if (!portReady_) return std::nullopt;
    if (!portRestore_.iface.empty()) {
      ifreq ifr{};
      if (!kernelIfreq(portRestore_.iface, SIOCGIFFLAGS, &ifr)) return std::nullopt;
      return (ifr.ifr_flags & IFF_RUNNING) != 0;
    }
    rte_eth_link link{};
    if (rte_eth_link_get_nowait(port_, &link) != 0) return std::nullopt;
    return link.link_status == RTE_ETH_LINK_UP;
  }

  std::optional<ConnEntry> findConn(const keel_flow_key& key) override {
    // Read only, as a worker reads its peers' tables for ICMP errors
    // (ConnTable::peek): safe while the workers run.
    const uint64_t now = workerNowNs();
    const uint64_t idle = idleNs(key.proto);
    std::optional<ConnEntry> best;
    uint64_t bestSeen = 0;
    for (const auto& w : workers_) {
      keel_ct_value v;
      if (!w->state->conns.peek(key, now, 0, &v) || v.last_seen_ns <= bestSeen) continue;
      bestSeen = v.last_seen_ns;
      best = connEntryAt(v, now, idle);
    }
    return best;
  }

  Status scanConns(const ConnVisitor& visit) override {
    // Read only, as findConn: safe while the workers run, and from any
    // thread (no snapshot is held: the timeouts are idleNs()'s). One clock
    // reading per worker's table (a walk of a table takes milliseconds).
    const uint64_t tcpIdle = idleNs(KEEL_PROTO_TCP), udpIdle = idleNs(KEEL_PROTO_UDP);
    for (const auto& w : workers_) {
      const uint64_t now = workerNowNs();
      w->state->conns.scan([&](const keel_flow_key& key, const keel_ct_value& v) {
        visit(key, connEntryAt(v, now, key.proto == KEEL_PROTO_TCP ? tcpIdle : udpIdle), w->queue);
      });
    }
    return Status::ok();
  }

  // What the workers check packets against (init(): ethdev's MTU, or a
  // kernel interface's smaller one).
  std::optional<uint32_t> portMtu() const override {
    if (!portReady_ || facts_.mtu == 0) return std::nullopt;
    return facts_.mtu;
  }

  std::optional<uint64_t> connTableEntries() override {
    // Each worker's count of occupied ways (never a walk of the tables).
    uint64_t entries = 0;
    for (const auto& w : workers_) entries += w->state->conns.occupied();
    return entries;
  }

  uint64_t connTableCapacity() const override {
    // Every worker's ways of both families, as built in init(): each table
    // gets conn_table_size / workers (rounded up) flows of each family,
    // rounded up again to a power of two of 4-way buckets (ConnWays). The
    // bound of connTableEntries(), which counts the same ways.
    uint64_t ways = 0;
    for (const auto& w : workers_) ways += w->state->conns.totalCapacity();
    return ways;
  }

 private:
  // Joins the worker lcores; they never start again (ended_).
  void stopWorkers() {
    stop_.store(true, std::memory_order_release);
    for (auto& w : workers_)
      if (w->running.load()) {
        rte_eal_wait_lcore(w->lcore);
        w->running.store(false);
      }
  }

  // A protocol's idle timeout as the last setNode() published it (0: none),
  // as snapshotIdleNs() reads it from the snapshot.
  uint64_t idleNs(uint8_t proto) const {
    return (proto == KEEL_PROTO_TCP ? tcpIdleNs_ : udpIdleNs_).load(std::memory_order_relaxed);
  }

  // The workers' clock: TSC-derived nanoseconds, read once per burst.
  uint64_t workerNowNs() const { return static_cast<uint64_t>((rte_rdtsc() * nsPerTsc_) >> 32); }
  static uint64_t wallNowNs() { return clockNs(CLOCK_REALTIME); }

  // net_af_xdp binds a socket to each queue a worker reads (start_queue=
  // on, one per worker); libxdp's program passes what the NIC's RSS puts on
  // any other queue to the kernel, so those flows never reach keel. Said at
  // start when the interface's driver spreads frames over more queues
  // (a warning: an RSS indirection table, `ethtool -X`, may keep them
  // empty, which keel does not read).
  void warnUnreadNicQueues(uint16_t queues) const {
    const std::string devargs = portDevargs(opts_.port, opts_.ealArgs);
    if (!isAfXdpPort(devargs) || portRestore_.iface.empty()) return;
    bool rxOnly = false;
    const std::optional<uint32_t> nic = kernelRxQueues(portRestore_.iface, &rxOnly);
    const uint64_t first = parseDecimal(devargValue(devargs, "start_queue").value_or("0")).value_or(0);
    if (!nic || (first == 0 && *nic <= queues)) return;
    logWarn(LogRecord("dpdk_nic_queues_unread")
                .add("interface", portRestore_.iface)
                .add("nic_rx_queues", *nic)
                .add("read_queues", std::to_string(first) + "-" + std::to_string(first + queues - 1))
                .add("detail", "the frames the NIC's RSS puts on its other queues go to the kernel, not to keel: "
                               "ethtool -L " + portRestore_.iface + (rxOnly ? " rx " : " combined ") +
                               std::to_string(queues) +
                               " (with start_queue=0), or an RSS table that keeps them empty (ethtool -X)"));
  }

  static int workerMain(void* arg) {
    auto* w = static_cast<Worker*>(arg);
    w->owner->runWorker(*w);
    return 0;
  }

  void runWorker(Worker& w) {
    // An idle sleep of N us: the kernel's default timer slack (50 us) would
    // stretch every short one to ~50 us more.
    if (opts_.idleSleepUs) prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
    rte_rcu_qsbr_thread_register(qsbr_, w.queue);
    rte_rcu_qsbr_thread_online(qsbr_, w.queue);
    dpdk::WorkerState& st = *w.state;
    // Two bursts in flight: while burst N is processed, the buckets of
    // burst N+1 (read and parsed just before) are on their way, so the
    // prefetch distance is a whole burst and the page walks and DRAM misses
    // overlap with net I/O and with burst N's work instead of stalling it.
    // A burst waits for at most one more poll (never a sleep: a loop that
    // received packets does not sleep), and parsing needs no snapshot, so
    // a burst is processed under the snapshot of the loop that processes it.
    struct Burst {
      rte_mbuf* pkts[kBurst];
      dpdk::PacketBuf bufs[kBurst];
      dpdk::ParsedPacket parsed[kBurst];
      uint16_t n = 0;
    };
    Burst bursts[2];
    Burst* cur = &bursts[0];   // parsed and prefetched last loop: processed now
    Burst* next = &bursts[1];  // read now: processed next loop
    dpdk::PacketResult results[kBurst];
    rte_mbuf* tx[kBurst];
    rte_mbuf* exc[kBurst];
    rte_mbuf* fromKernel[kBurst];
    const uint16_t q = w.queue;
    const bool haveTap = tapReady_;
    const uint32_t tapMaxFrame = tapMaxFrame_;
    const uint32_t idleSleepUs = opts_.idleSleepUs;
    const bool ignoreOwn = ignoreOwnFrames_;
    const std::array<uint8_t, 6> ownMac = portMac_;
    uint32_t loops = 0;
    while (!stop_.load(std::memory_order_relaxed)) {
      // One snapshot for the whole burst: every packet in it sees one state.
      const dpdk::Snapshot* snap = store_->current();
      uint16_t n = rte_eth_rx_burst(port_, q, next->pkts, kBurst);
      if (ignoreOwn && n > 0) n = dropOwnFrames(next->pkts, n, ownMac, w.hostFramesIgnored);
      next->n = n;
      if (n > 0) {
        for (uint16_t i = 0; i < n; ++i) {
          rte_mbuf* m = next->pkts[i];
          next->bufs[i] = {rte_pktmbuf_mtod(m, uint8_t*), rte_pktmbuf_data_len(m), rte_pktmbuf_headroom(m)};
        }
        dpdk::prepareBurst(st, next->bufs, next->parsed, n);
      }
      if (cur->n > 0) {
        const uint64_t now = workerNowNs();
        dpdk::processBurst(*snap, st, cur->bufs, cur->parsed, cur->n, now, results);
        uint16_t ntx = 0, nexc = 0, overTap = 0;
        for (uint16_t i = 0; i < cur->n; ++i) {
          rte_mbuf* m = cur->pkts[i];
          if (results[i].verdict == dpdk::Verdict::kTx) {
            dpdk::setFrame(m, cur->bufs[i]);
            tx[ntx++] = m;
          } else if (results[i].verdict == dpdk::Verdict::kPass && haveTap) {
            // Over the tap's largest frame (a jumbo frame for the host):
            // net_tap would refuse it, stopping its burst there; freed here.
            if (rte_pktmbuf_pkt_len(m) > tapMaxFrame) {
              rte_pktmbuf_free(m);
              ++overTap;
            } else {
              exc[nexc++] = m;
            }
          } else {
            rte_pktmbuf_free(m);
          }
        }
        cur->n = 0;
        if (uint16_t lost = sendOrFree(port_, q, tx, ntx)) addTo(w.txDropped, lost);
        if (haveTap)
          if (const auto lost = static_cast<uint16_t>(sendToKernel(tap_, q, exc, nexc) + overTap))
            addTo(w.toKernelDropped, lost);
      }
      std::swap(cur, next);
      // The kernel's side of the exception path (ARP replies, ICMP, BGP,
      // health checks from this host) leaves through the same port. Polled
      // every 16th loop: net_tap's rx is a read() syscall even when empty,
      // and this traffic is light and not latency-critical. A worker that
      // sleeps when idle polls it every loop (a sleep costs more anyway).
      uint16_t k = 0;
      if (haveTap && (idleSleepUs || (++loops & 15) == 0)) {
        k = rte_eth_rx_burst(tap_, q, fromKernel, kBurst);
        if (k > 0) {
          const uint16_t lost = sendOrFree(port_, q, fromKernel, k);
          addTo(w.exceptionEgress, k - lost);
          if (lost) addTo(w.fromKernelDropped, lost);
        }
      }
      rte_rcu_qsbr_quiescent(qsbr_, w.queue);
      // Quiescent first: a sleeping worker holds no snapshot, so a grace
      // period waits at most one sleep for it. It sleeps only with no burst
      // pending (n == 0: the burst now in `cur` is empty).
      if (idleSleepUs && n == 0 && k == 0) rte_delay_us_sleep(idleSleepUs);
    }
    // A burst read in the last loop and never processed.
    if (cur->n > 0) rte_pktmbuf_free_bulk(cur->pkts, cur->n);
    rte_rcu_qsbr_thread_offline(qsbr_, w.queue);
    rte_rcu_qsbr_thread_unregister(qsbr_, w.queue);
  }

  DpdkOptions opts_;
  PortFacts facts_;
  uint32_t portSpread_ = 0;  // portSpread() of the running port (0: unknown)
  std::unique_ptr<dpdk::TableStore> store_;
  std::vector<std::unique_ptr<Worker>> workers_;
  rte_rcu_qsbr* qsbr_ = nullptr;
  rte_mempool* pool_ = nullptr;
  uint16_t port_ = 0;
  uint16_t tap_ = 0;
  bool portReady_ = false, portProbed_ = false;
  KernelRestore portRestore_;  // what the port's kernel interface gets back at close
  bool tapReady_ = false, tapProbed_ = false;
  // The largest frame the tap takes: its MTU and what net_tap counts on top
  // (Ethernet header, CRC, one VLAN tag: 22 bytes), as it checks each frame.
  uint32_t tapMaxFrame_ = 1500 + 22;
  std::string tapName_;
  std::array<uint8_t, 6> portMac_{};
  bool ignoreOwnFrames_ = false;  // a net_af_packet port: dropOwnFrames
  bool started_ = false;
  const char* ended_ = nullptr;  // why start() is refused: a failed start, saved tables
  unsigned __int128 nsPerTsc_ = 0;  // set with the workers, before any runs
  std::atomic<uint64_t> tcpIdleNs_{0}, udpIdleNs_{0};  // idleNs()
  std::atomic<bool> stop_{false};
};

}  // namespace

void releaseDpdkEnvironment() {
  std::lock_guard<std::mutex> lock(gEalMutex);
  if (!gEalReady || gLivePlanes.load() != 0) return;  // a live plane still uses EAL
  rte_eal_cleanup();
  gEalReady = false;
}

std::unique_ptr<DpdkDataplane> createDpdkDataplane(const DpdkOptions& options, std::string* error) {
  auto dp = std::make_unique<DpdkDataplaneImpl>(options);
  Status s = dp->init();
  if (!s) {
    if (error) *error = s.message();
    return nullptr;
  }
  return dp;
}

std::unique_ptr<Dataplane> makeDpdkDataplane(const DpdkOptions& options, std::string* error) {
  return createDpdkDataplane(options, error);
}

}  // namespace keel

// SPDX-License-Identifier: Apache-2.0
// keel.yaml: parsed into plain structs and validated in full before anything
// is applied. Every error names the file, the line, the key path and what is
// wrong, e.g.
//   keel.yaml:12: services[0].reals[1].weight: must be an integer 0..65535, got "abc"
// All errors are collected (an operator fixes a file in one pass), unknown
// keys are errors (a typo must never be silently ignored), and a file with
// any error changes nothing.
#pragma once

#include <yaml-cpp/yaml.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <new>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/address.h"
#include "common/devargs.h"
#include "common/hugepages.h"
#include "control/health/health_spec.h"
#include "dataplane/dataplane.h"

namespace keel {

enum class DataplaneKind { kXdp, kDpdk };
enum class XdpMode { kNative, kGeneric };
enum class Forwarding { kIpip, kL2dsr };
enum class Scheduler { kMaglev, kMaglevSrc };

std::string_view toString(DataplaneKind k);
std::string_view toString(XdpMode m);
std::string_view toString(Forwarding f);
std::string_view toString(Scheduler s);
std::string_view protocolName(uint8_t proto);  // "tcp" / "udp"

// dataplane.dpdk: (kind dpdk only). Maps one to one onto keel::DpdkOptions
// (src/dataplane/dpdk/dpdk_dataplane.h); docs/dpdk.md explains each key.
struct DpdkConfig {
  // Packet buffers each worker needs beyond its RX and TX rings: two bursts
  // in flight and its lcore's mempool cache (256, flushed at 384).
  static constexpr uint32_t kMbufSlackPerWorker = 448;
  // The exception interface's RX/TX descriptors per worker queue; its RX
  // ring is filled with mbufs from the same pool at start.
  static constexpr uint32_t kTapDescriptors = 512;
  // net_af_xdp fills its socket's fill ring from the pool when its queue is
  // set up, XSK_RING_CONS__DEFAULT_NUM_DESCS (2,048) buffers whatever
  // rx_descriptors says, and keeps it full while it runs, in place of an
  // RX ring's (DPDK 22.11; measured: rx/tx 256 with an exception
  // interface failed at 2,048 a worker and started at 2,560, the fill
  // ring and the tap's 512).
  static constexpr uint32_t kAfXdpFillBuffers = 2048;
  std::vector<std::string> ealArgs;   // without argv[0]
  std::string port;                   // PCI address or vdev devargs
  std::vector<unsigned> workers;      // EAL lcores, one RX/TX queue pair each
  uint32_t rxDescriptors = 1024;
  uint32_t txDescriptors = 1024;
  uint32_t mbufsPerWorker = 8192;
  std::string exceptionInterface;     // net_tap name; empty: none
  uint32_t idleSleepUs = 0;           // 0: busy-poll
  // The port's MTU, kMinMtu..kMaxMtu; 0: the driver's default (1500), with
  // DPDK's default 2 KiB buffers.
  uint32_t mtu = 0;
  // true: the port takes frames to every MAC (a VRRP or other virtual MAC
  // in front of the VIPs). false: to its own MAC, broadcast and multicast
  // only, as a NIC under XDP does.
  bool promiscuous = false;
  static constexpr uint32_t kMinMtu = 1280;   // IPv6's minimum link MTU (RFC 8200)
  static constexpr uint32_t kMaxMtu = 16110;  // DPDK's largest jumbo frame (16128) less Ethernet's 18
  bool operator==(const DpdkConfig&) const = default;
};

struct DataplaneConfig {
  DataplaneKind kind = DataplaneKind::kXdp;
  // xdp: the interface the program attaches to. dpdk: the kernel interface
  // that holds this node's addresses toward the LAN, used for l2dsr neighbour
  // resolution (default: dpdk.exception_interface); the local MAC of a dpdk
  // node is its port's unless node.local_mac says otherwise.
  std::string interface;
  XdpMode xdpMode = XdpMode::kNative;
  DpdkConfig dpdk;
  // How often keeld looks at the interface, the pins, the MTU and
  // next_hop_mac without being told (keeld also runs that upkeep at once on
  // a link message for the interface); a reload applies it.
  std::chrono::milliseconds upkeepInterval{std::chrono::seconds(5)};
  static constexpr std::chrono::seconds kMinUpkeepInterval{1};
  static constexpr std::chrono::hours kMaxUpkeepInterval{1};
};

struct Ipv4Prefix {
  IpAddress address;  // network address (host bits zero)
  uint8_t length = 0;
  std::string toString() const;
};

struct NodeConfig {
  std::optional<IpAddress> tunnelSourceV4;
  std::optional<IpAddress> tunnelSourceV6;
  std::optional<MacAddress> nextHopMac;
  std::optional<MacAddress> localMac;       // absent: the data plane's (xdp: the interface's, dpdk: the port's)
  std::optional<Ipv4Prefix> hashSourceV4;   // Katran-style outer source from the flow hash
  std::optional<IpAddress> hashSourceV6;    // the /96 the same for IPv6 reals (its network address)
  std::chrono::milliseconds udpIdleTimeout{std::chrono::seconds(30)};
  std::chrono::milliseconds tcpIdleTimeout{std::chrono::seconds(900)};
  // ICMP too-big answers a second, per CPU (XDP) or worker (DPDK); 0: none.
  uint32_t icmpTooBigRate = 1000;
  // The same to one client (an IPv4 address, an IPv6 /64), within the
  // above; 0: no per-client limit. docs/configuration.md says why 100.
  uint32_t icmpTooBigClientRate = 100;
  // The path MTU toward the reals when a link past the balancer's port is
  // smaller (0: the port's alone); kMinTunnelMtu..kMaxTunnelMtu.
  uint32_t tunnelMtu = 0;
  // Connection-table inserts a second per CPU (XDP) or worker (DPDK); past
  // it new flows are forwarded but not remembered. 0: no limit.
  uint32_t conntrackInsertRate = 0;
  static constexpr uint32_t kMinTunnelMtu = 1280;
  static constexpr uint32_t kMaxTunnelMtu = 65535;
};

// A parsed YAML block kept in a config (a `health:` block), shared by the
// config's copies as a shared_ptr is: a copy or an assignment points at the
// same node. yaml-cpp's own Node::operator= assigns through the node
// instead (AssignNode: it merges the two sides' memory holders and makes a
// node for an empty right side), so every config copy-assigned (each
// commit: Registry's state.config, DaemonBackend's effective_) grew one
// holder all copies shared, by a node per real and service: keeld's memory
// grew ~6.5 MB a reload at 10,000 reals and never fell (scale review).
class SharedYaml {
 public:
  SharedYaml() = default;
  SharedYaml(const YAML::Node& n) : node_(n) {}  // NOLINT: a node is one
  SharedYaml(const SharedYaml&) = default;
  SharedYaml& operator=(const SharedYaml& o) { return *this = o.node_; }
  SharedYaml& operator=(const YAML::Node& n) {
    // Rebinds (Node's copy constructor shares), never Node::operator=.
    if (&n != &node_) {
      node_.~Node();
      new (&node_) YAML::Node(n);
    }
    return *this;
  }
  operator const YAML::Node&() const { return node_; }  // NOLINT: read as the node it is
  const YAML::Node& node() const { return node_; }

 private:
  YAML::Node node_;
};

struct RealConfig {
  IpAddress address;
  uint32_t weight = 100;
  std::optional<MacAddress> mac;  // l2dsr: configured or resolved from the neighbour table
  bool macResolved = false;       // true when mac came from the neighbour table
  // l2dsr without a mac, and the neighbour table had no entry for it when
  // looked up (powered off, cable out, not on-link yet): accepted, held down
  // (out of the ring, no health checks) and looked up again by keeld
  // (DaemonBackend::resolvePendingMacs) until it is found. What keelctl
  // health shows as its reason, e.g. "l2dsr: 10.0.1.8 not in the neighbour
  // table of eth0". Empty: not waiting for a MAC.
  std::string macPending;
  SharedYaml health;              // the raw `health:` override (kept for runtime adds)
  // The resolved check: service `health:` overlaid with this real's. A service
  // and real with no `health:` at all resolve to type none (always up, no
  // probes), so configs written before health checks keep their behaviour.
  HealthCheckSpec healthSpec = [] {
    HealthCheckSpec s;
    s.type = HealthCheckSpec::Type::None;
    return s;
  }();
  // The health verdict a real gets when the registry first adds it. keeld
  // sets false for checked reals (down until `rise` passes).
  bool startHealthy = true;
  // With startHealthy false: added kept down (VALID, out of the ring, its
  // flows kept) if its service has established_on_down: keep. keeld sets it
  // for a real a clean stop left kept down, so that the connection table a
  // DPDK restart restores still reaches it (DaemonBackend::start).
  bool startKept = false;
  // With startHealthy and startKept false: added held by fail-open (VALID,
  // in the ring) if its service is fail-open and no real of it starts up
  // (Registry::addService). keeld sets it for a real a clean stop left
  // held, so that a DPDK restart during a fail-open hold goes on forwarding
  // the service to it, its restored flows included.
  bool startHeld = false;
  int line = 0;                   // 1-based line in the file, for later messages
};

struct ServiceConfig {
  std::string name;
  IpAddress vip;
  uint16_t port = 0;  // 0 = every port
  uint8_t protocol = KEEL_PROTO_TCP;
  Forwarding forwarding = Forwarding::kIpip;
  Scheduler scheduler = Scheduler::kMaglev;
  uint32_t ringSize = 65537;
  std::vector<RealConfig> reals;
  SharedYaml health;  // the raw `health:` block (defaults for every real)
  // health.all_down: when every real is down, fail-open keeps the last
  // healthy real(s) in the ring (traffic keeps flowing to something that
  // may be alive); fail-closed empties the ring (drop_no_backend).
  bool healthFailOpen = true;
  // health.established_on_down: what a real that goes health-down does with
  // its established flows. repick (false, the default): it is invalidated
  // (new generation), so they re-pick another real, which resets them.
  // keep (true): it only leaves the ring, VALID at its generation as a
  // drained real is, so they keep reaching it (Registry::setRealHealth).
  bool healthKeepEstablished = false;
  // Whether the service gives a `reals:` list (`reals: []` too): a reload
  // refuses a service without one (the key missing, or nothing under it)
  // whose running namesake has reals, as for `services:` above.
  bool realsListGiven = false;
  int line = 0;
  // keel.yaml only: false when `port` or `protocol` is missing or did not
  // parse (reported at it), so the checks that need them (vip, port and
  // protocol unique; a check's port on a port-0 service) are skipped rather
  // than run on the defaults and report what is not wrong.
  bool portAndProtocolKnown = true;
};

// control: the API socket (docs/api.md).
struct ControlConfig {
  std::string socket = "/run/keel/keel.sock";
  uint32_t mode = 0600;
  std::string group;  // empty: the daemon's group
  // control.readonly: a second socket that answers only the methods that
  // change nothing (docs/api.md, "Read-only socket"), for monitoring and
  // on-call users; readonlySocket empty: none.
  std::string readonlySocket;
  uint32_t readonlyMode = 0660;
  std::string readonlyGroup;  // empty: the daemon's group

  bool operator==(const ControlConfig&) const = default;
};

// metrics: the Prometheus endpoint (docs/metrics.md). The default listens on
// loopback only; an operator opens it to the management network.
struct MetricsConfig {
  bool enabled = true;
  IpAddress address = *IpAddress::parse("127.0.0.1");  // IPv4 or IPv6 (see parseMetrics)
  uint16_t port = 9477;
  // How often keeld walks the connection table to count each real's flows
  // (keel_real_flows); 0: never (docs/metrics.md). A reload applies it.
  std::chrono::milliseconds flowCountInterval{std::chrono::minutes(1)};
  std::string listenAddress() const;  // "127.0.0.1:9477", "[::1]:9477"
  // Equal but for flowCountInterval, the one key a reload applies: any
  // other change needs a restart (restartNeededKeys), a field added later
  // included.
  bool sameEndpoint(const MetricsConfig& o) const {
    MetricsConfig a = *this;
    a.flowCountInterval = o.flowCountInterval;
    return a == o;
  }
  bool operator==(const MetricsConfig&) const = default;
};

struct Config {
  std::string source;  // file name used in messages
  DataplaneConfig dataplane;
  NodeConfig node;
  DataplaneLimits limits;
  ControlConfig control;
  MetricsConfig metrics;
  std::vector<ServiceConfig> services;
  // Whether the file gives a `services:` list (`services: []` too): a
  // reload refuses a file without one (the key missing, or nothing under
  // it: where a file cut short ends) that would remove every running
  // service, DaemonBackend::reloadFile.
  bool servicesListGiven = false;
};

// The reals of every service, summed (a real in two services counts twice).
inline size_t countReals(const Config& c) {
  size_t n = 0;
  for (const ServiceConfig& s : c.services) n += s.reals.size();
  return n;
}

// Finds the MACs of l2dsr reals configured without one: the kernel neighbour
// table on `interface` (the resolver may prompt resolution). Called once for
// all the reals of a config, so their resolution overlaps. A real missing
// from the result is not reachable on-link.
using MacResolver = std::function<std::map<IpAddress, MacAddress>(const std::vector<IpAddress>& reals,
                                                                  const std::string& interface)>;

// The neighbour table's answers for a set of l2dsr reals without a mac,
// read with one resolver call: one table dump, and the neighbours it lacks
// prompted and waited for together (at most ~1 s in all, not per real).
// keel.yaml (parseConfig), keeld's runtime adds (service.add / real.add) and
// the replay of keeld's runtime state at start all look up this way.
// `interface` empty: there is no neighbour table (dpdk without
// dataplane.interface or dpdk.exception_interface); `resolver` empty: none
// is read (no host checks).
// The resolver reads the entries of `interface` and of the interfaces
// stacked on it (a VLAN trunk's eth0.100: keeld's resolveNeighbours);
// `interfacesOn`, if set, names those for the messages (keeld's
// interfacesOn), asked only when there are reals to look up.
struct MacLookup {
  std::string interface;
  std::vector<std::string> uppers;  // the interfaces on it whose entries were read too
  bool lookedUp = false;  // the table of `interface` was read
  std::map<IpAddress, MacAddress> resolved;
};
MacLookup lookUpMacs(const std::vector<IpAddress>& reals, const std::string& interface,
                     const MacResolver& resolver,
                     const std::function<std::vector<std::string>(const std::string&)>& interfacesOn = {});

// How the messages name the neighbour tables read for an interface and the
// interfaces on it: "eth0", or "eth0 or the interfaces on it (eth0.100,
// eth0.200)".
std::string interfacesNamed(const std::string& interface, const std::vector<std::string>& uppers);

// An l2dsr real's MAC when none is given, from a lookup that asked for it.
// l2dsr rewrites only the MAC, so the real must be on the balancer's own
// segment, and its neighbour entry proves it. A table that was read and has
// no entry for the real is a state that passes (the real is off, or not
// on-link yet): `pending` says so in keelctl health's words, "l2dsr:
// 10.0.1.8 not in the neighbour table of eth0", and the real is accepted
// and held down until keeld finds it (RealConfig::macPending). What the
// file or the host gets wrong is an error: a group or zero MAC in the
// table's entry, no table to read (no interface, no host checks). `error`
// says which real of which service, why, and the fixes, e.g.
// "l2dsr real 10.0.1.8 of service web has no mac and there is no neighbour
// table to look it up in (...); give its mac (mac: in keel.yaml, --mac in
// keelctl)". For a pending real it holds the same sentence for a table
// without it (a warning: keeld --check-config prints it).
struct RealMac {
  std::optional<MacAddress> mac;  // set: resolved
  std::string pending;            // else, if set: not in the table (yet); accepted, held down
  std::string error;              // the refusal (or, with `pending`, the warning)
};
RealMac resolveRealMac(const std::string& service, const IpAddress& real, const MacLookup& lookup);

struct ConfigResult {
  std::optional<Config> config;      // set only when errors is empty
  std::vector<std::string> errors;   // "file:line: key.path: what is wrong"
  // What passes but the operator should hear of, in the same form: an
  // l2dsr real that is not in the neighbour table (held down until it is),
  // a mac nothing uses, an lcore option keel cannot read.
  std::vector<std::string> warnings;
  // All but the neighbour table's (the l2dsr reals not in it): what a
  // reload reports and logs as config_warning, and a start logs (the reals
  // held down for their MAC are reported from the config applied, after a
  // running real's MAC was kept: real_mac_unresolved).
  std::vector<std::string> fileWarnings;
  // loadConfigFile only: the file's text as it was read and parsed, valid
  // or not (keeld keeps the applied one to tell whether the file has changed
  // since: daemon.status).
  std::optional<std::string> text;
  bool ok() const { return config.has_value(); }
};

// A health block on a udp service that names no type (config.cc; a runtime
// service.add's answer says the same).
inline constexpr std::string_view kUdpImpliedTcpCheck =
    "no type: checks default to tcp, a TCP connect to this udp service's port; write type: udp, or "
    "type: tcp if the reals also listen on TCP there";

// A real of an ipip service given a MAC: accepted (a service switched from
// l2dsr keeps its reals' lines) but never used; keel.yaml, config.check and
// a runtime add warn with this.
inline constexpr std::string_view kIpipMacUnused =
    "mac is not used: ipip sends every packet to node.next_hop_mac (only l2dsr sends to the real's MAC)";

// A health check's source this host does not have (ConfigOptions::
// addressIsLocal): accepted; its checks are not run, then fail. keel.yaml (at the
// source key), config.check and a runtime add warn with this.
std::string healthSourceNotLocal(const IpAddress& source);

// A udp check's payload over 1232 bytes to an IPv6 real (health review
// L7): what one datagram carries whole on a path of IPv6's minimum MTU
// (1280 - 40 - 8), and IPv6 routers do not fragment, so on a smaller path
// MTU the check is fragmented by this host or fails (Packet Too Big).
// keel.yaml (at the payload key), config.check and a runtime add warn with
// this; nullopt when there is nothing to say.
inline constexpr size_t kMaxUdpPayloadV6 = 1280 - 40 - 8;
std::optional<std::string> udpPayloadOverIpv6Mtu(const HealthCheckSpec& spec, const IpAddress& real);

// The addresses of the data plane's interfaces, each with the interface
// that has it: dataplane.interface's and those of the interfaces stacked on
// it (options.interfacesOn: a VLAN trunk's eth0.100, where the host's
// addresses are while the data plane is on eth0; until 2026-12-06 only
// dataplane.interface's were read). Empty without
// options.interfaceAddresses or an interface.
using OwnAddresses = std::map<IpAddress, std::string>;
struct ConfigOptions;
OwnAddresses ownAddresses(const ConfigOptions& options, const std::string& interface);

// Why a service's VIP cannot be what it is given this balancer's own
// addresses (empty: it can): node.tunnel_source_v4/v6, or one of
// `interfaceAddresses` (ownAddresses(); empty when not checked). keel takes
// a VIP's packets before the kernel sees them, so the host's own traffic
// to the VIP's port of such an address (with port 0: to every port, SSH,
// BGP and the replies to keeld's health checks) would go to the reals.
// keel.yaml, config.check and runtime changes refuse it.
std::string vipOwnAddressProblem(const IpAddress& vip, uint16_t port, const NodeConfig& node,
                                 const OwnAddresses& interfaceAddresses);
// Why a real cannot be what it is given this balancer's own addresses (the
// same ones as vipOwnAddressProblem; empty: it can): its tunnels or frames
// come back to the balancer, while its health checks reach the host itself
// and pass (fault review F8: a third of the flows then went nowhere).
std::string realOwnAddressProblem(const IpAddress& real, const NodeConfig& node,
                                  const OwnAddresses& interfaceAddresses);
// Why a service cannot have `reals` reals on a ring of `ringSize` slots
// (empty: it can): more reals than slots leaves some with no slot at all,
// up but never picked. keel.yaml, config.check and runtime changes refuse
// it. (Fewer than that but over ringSize / 100 loads with a warning in the
// file: shares then differ by more than ~1%.)
std::string ringSizeProblem(size_t reals, uint32_t ringSize);
// A real that is its own service's VIP: keel would send its packets back
// to itself.
inline constexpr std::string_view kRealIsVip = "a real cannot be the service's own VIP (keel would forward to itself)";
// A real that is another service's VIP: a tunnel (ipip) or frame (l2dsr)
// to it comes back to this balancer instead of reaching a real, and its
// health checks go to that service's reals and pass. keel.yaml, config.check,
// runtime changes (real.add, and service.add of a VIP that is a running
// real) and the replay of keeld's runtime state refuse it, all through
// these two. vipOwners maps each VIP to the first service (an index into
// `services`) that has it (a VIP serves several ports); otherVipOwner is
// the service other than the real's own (whose VIP is kRealIsVip) whose VIP
// `real` is, if any.
using VipOwners = std::map<IpAddress, size_t>;
VipOwners vipOwners(const std::vector<ServiceConfig>& services);
std::optional<size_t> otherVipOwner(const VipOwners& owners, const IpAddress& real, const IpAddress& ownVip);
// The refusal's words; `owner` names that service ("services[1] (web2)" in
// a file, "service web2" at runtime).
std::string realIsOtherVip(const IpAddress& real, const std::string& owner);

// The most entries the XDP plane's connection table (a kernel LRU hash
// map) can be created with: past 2^27 its bucket array is refused (E2BIG).
inline constexpr uint64_t kXdpMaxConnTable = uint64_t{1} << 27;

struct ConfigOptions {
  // Empty: an l2dsr real without `mac` is an error; set: a real it does not
  // find is accepted and held down (RealConfig::macPending).
  MacResolver resolveMac;
  // Empty: dataplane.interface is checked for syntax only (unit tests).
  std::function<bool(const std::string& interface)> interfaceExists;
  // Whether an existing interface is a tun/tap device (keeld: its sysfs
  // tun_flags); empty: dpdk.exception_interface is checked for syntax only.
  std::function<bool(const std::string& interface)> interfaceIsTap;
  // The sysctls by which the kernel forwards IP packets of a family (4 or 6)
  // it receives on an interface, or on the VLAN, bond or bridge devices
  // above it ("net.ipv4.conf.eth1.forwarding", "net.ipv6.conf.all.forwarding",
  // "net.ipv6.conf.eth1.force_forwarding"), those set; keeld reads /proc/sys.
  // And of some addresses, those the kernel would route a packet to on (a
  // route that is no blackhole, unreachable or prohibit one, nor local).
  // Either empty: not checked. A net_af_packet port leaves the kernel its copy of
  // every frame, which such a kernel would route too.
  std::function<std::vector<std::string>(const std::string& interface, int family)> interfaceForwarding;
  std::function<std::vector<IpAddress>(const std::vector<IpAddress>& addresses)> routedOn;
  // Whether the host has the PCI device of that full address
  // ("0000:03:00.0"; keeld: /sys/bus/pci/devices); empty: a PCI port is
  // checked for syntax only. EAL's probe of one that is absent fails at start.
  std::function<bool(const std::string& address)> pciDeviceExists;
  // The kernel driver a PCI device is bound to ("" for none; keeld: its
  // sysfs driver link); empty: not checked. One that is no DPDK driver
  // (vfio-pci, uio_pci_generic, igb_uio) nor a bifurcated one (mlx5_core,
  // mlx4_core) leaves EAL nothing to probe: a warning.
  std::function<std::string(const std::string& address)> pciDriver;
  // What EAL would make of dataplane.dpdk's driver paths (eal_args' -d
  // values) and device devargs (the port unless a PCI address, each
  // --vdev of eal_args) before it starts (keeld: the DPDK plane's
  // checkDpdkDeviceNames); empty, or nullopt: not checked. A name no
  // installed driver takes (a misspelt vdev) fails EAL's start, after a
  // restart has stopped the old keeld.
  std::function<std::optional<DeviceNameCheck>(const std::vector<std::string>& plugins,
                                               const std::vector<std::string>& devargs)>
      dpdkDeviceNames;
  // The host's hugepages (keeld: readHugepages); empty: not checked. A
  // DPDK config whose EAL would find none to use (hugepageProblem: none
  // reserved, or none of a mounted size) fails EAL's start, so it is an
  // error here.
  std::function<std::vector<HugepageSize>()> hugepages;
  // The least EAL memory the DPDK plane takes for workers x
  // mbufs_per_worker mbufs of a port MTU and a conn_table_size (keeld: the
  // DPDK plane's dpdkMemoryFloor); empty: not checked. A file whose need
  // is over what EAL can hand out (ealMemoryLimit) cannot start.
  std::function<EalMemoryNeed(uint32_t workers, uint32_t mbufsPerWorker, uint16_t mtu, uint32_t connTableSize)>
      dpdkMemoryFloor;
  // Whether this keeld has the data plane a kind names (keeld: the planes it
  // was built with); empty: every kind is accepted (a file for another
  // machine, unit tests).
  std::function<bool(DataplaneKind kind)> kindBuilt;
  // The CPUs this process may run on (its affinity: EAL's lcores when
  // dataplane.dpdk.eal_args name none) and those the host has online (an
  // lcore option naming another CPU fails EAL's start); empty: the workers'
  // lcores are checked against eal_args alone (a file for another machine,
  // unit tests).
  std::function<std::set<unsigned>()> allowedCpus;
  std::function<std::set<unsigned>()> onlineCpus;
  // The CPUs this process's cgroup may use (keeld: cpuset.cpus.effective,
  // e.g. systemd's AllowedCPUs= or a container's); empty, or an empty set:
  // not checked. EAL aborts (PANIC, SIGABRT) setting an lcore's affinity to
  // a CPU outside them. Not the process's affinity (CPUAffinity=), which
  // EAL's threads may leave.
  std::function<std::set<unsigned>()> cpusetCpus;
  // The addresses of a network interface (keeld: getifaddrs); empty: a VIP
  // is checked against node.tunnel_source_v4/v6 only (vipOwnAddressProblem).
  std::function<std::vector<IpAddress>(const std::string& interface)> interfaceAddresses;
  // The interfaces stacked directly on one (keeld: interfacesOn, its VLAN,
  // macvlan and ipvlan devices); empty: none. Their addresses are
  // dataplane.interface's for the VIP and real checks (ownAddresses), and
  // the l2dsr messages name them among the neighbour tables read.
  std::function<std::vector<std::string>(const std::string& interface)> interfacesOn;
  // Whether a group exists (keeld: getgrnam_r); empty: control.group is
  // not checked (the socket's start fails on a group that does not exist).
  std::function<bool(const std::string& group)> groupExists;
  // Why a control socket path cannot be served (keeld:
  // api::socketPathProblem: a file or directory already there that is not
  // a socket); empty: the paths are checked for syntax only.
  std::function<std::string(const std::string& path)> socketPathProblem;
  // Whether this host has an address (keeld: a socket binds to it); empty:
  // a health check's `source` is not checked. One it does not have is a
  // warning: every check from it is not run (HealthResult::local).
  std::function<bool(const IpAddress& address)> addressIsLocal;
  // Why a socket of this host cannot bind an address ("" when it can;
  // keeld: a TCP socket bound to it with port 0, so net.ipv4/ipv6
  // .ip_nonlocal_bind count); empty: metrics.address is not checked for it.
  // One that cannot be bound fails the start (metrics_failed).
  std::function<std::string(const IpAddress& address)> bindProblem;
};

ConfigResult parseConfig(std::string_view yamlText, std::string_view sourceName,
                         const ConfigOptions& options = {});
// A real's health errors ("source:line: path.health.key: ..."), by the
// block they are in: the service's block says the same for each of its
// reals, so a caller that checked it on its own (resolveServiceHealth)
// reports only `real`.
struct HealthErrors {
  std::vector<std::string> service;
  std::vector<std::string> real;
  bool empty() const { return service.empty() && real.empty(); }
};

// The service-only keys of a service's `health:` block into `svc`:
// all_down (healthFailOpen) and established_on_down (healthKeepEstablished);
// keys not there leave their field alone. Each bad value is reported as
// error(its node, its key, "must be one of ..., got ..."), for the caller to
// place (keel.yaml: file:line and path; the API: params.health). One parser
// for both, so the file and `service add` say the same.
using HealthPolicyError = std::function<void(const YAML::Node& value, const std::string& key, const std::string& message)>;
void parseHealthPolicy(const YAML::Node& health, ServiceConfig& svc, const HealthPolicyError& error);

// A real's resolved health check: the service's `health:` (its all_down
// and established_on_down keys skipped) overlaid with the real's own. Neither present: type none.
// Errors are appended by layer; nullopt when there is any.
std::optional<HealthCheckSpec> resolveRealHealth(const YAML::Node& serviceHealth,
                                                 const YAML::Node& realHealth, std::string_view source,
                                                 const std::string& servicePath,
                                                 const std::string& realPath, HealthErrors& errors);

// The service's own check, the one a real without `health:` gets: its keys
// and what the checker would refuse whichever real it runs against (no port
// on a port-0 service, an http path without '/'). Checked with or without
// reals, so a later `real add` or reload is not the first to hear of a
// mistake. Errors name "servicePath.health"; nullopt then. No block: type none.
std::optional<HealthCheckSpec> resolveServiceHealth(const YAML::Node& serviceHealth, const IpAddress& vip,
                                                    uint16_t port, std::string_view source,
                                                    const std::string& servicePath,
                                                    std::vector<std::string>& errors);

// A config file's text, read as loadConfigFile reads it (a directory, a
// file it cannot open and one over 64 MiB are refused, `error` says why
// in loadConfigFile's words: "PATH: cannot open: ..."); nullopt then.
std::optional<std::string> readConfigText(const std::string& path, std::string& error);
ConfigResult loadConfigFile(const std::string& path, const ConfigOptions& options = {});

// The keys whose change a reload cannot apply, where `next` differs from
// the config keeld started with (`started`): "dataplane.kind",
// "dataplane.interface", "dataplane.xdp_mode", "dataplane.dpdk", "limits",
// "control", "metrics", in that order. The running data plane, socket and
// endpoint keep the started values until keeld starts again (keeld(8)).
std::vector<std::string> restartNeededKeys(const Config& started, const Config& next);

// What of a started config restartNeededKeys and stopStartNeededKeys read:
// all but its services, which are the registry's once applied (a real's
// config is ~340 bytes, and a copy of every one kept only for these
// comparisons cost that much a real for keeld's life).
inline Config startShape(Config c) {
  c.services = std::vector<ServiceConfig>();  // its storage too, unlike `= {}`
  return c;
}

// Of restartNeededKeys' `keys`, those a restart does not apply either,
// because keeld started an XDP plane: it is pinned and outlives keeld, so
// the next keeld adopts it as it runs and refuses to with another xdp_mode
// or limits, a DPDK keeld refuses to start beside it, and a keeld for
// another interface leaves the old one's program forwarding with no keeld.
// Only `keelctl daemon stop` (which detaches it) and a start apply them:
// "dataplane.kind", "dataplane.interface", "dataplane.xdp_mode", "limits"
// (operations.md, Reloads). None when keeld started a DPDK plane, which
// ends with keeld, or when its stop detaches the XDP plane too
// (`stopDetaches`: keeld --detach-on-exit), so a restart starts afresh.
std::vector<std::string> stopStartNeededKeys(const Config& started, const std::vector<std::string>& keys,
                                             bool stopDetaches = false);

}  // namespace keel

// SPDX-License-Identifier: Apache-2.0
// The DPDK data plane: EAL, one port (a dedicated NIC by PCI address, or a
// vdev such as net_af_xdp / net_af_packet / net_pcap / net_ring), one RX/TX
// queue pair per worker lcore with RSS spreading flows over them, and an
// exception path (net_tap) that hands the kernel everything that is not ours
// (the XDP plane's XDP_PASS) and sends what the kernel answers back out.
//
// keeld drives it through keel::Dataplane only (`dataplane.kind: dpdk`).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/devargs.h"
#include "common/hugepages.h"
#include "dataplane/dataplane.h"
#include "dataplane/dpdk/conn_persist.h"

namespace keel {

struct DpdkOptions {
  // EAL arguments without argv[0], e.g. {"-l", "0-2", "-a", "0000:03:00.0"}
  // or {"--no-huge", "-m", "512", "--no-pci", "--file-prefix", "keel"}. Used
  // only by the first data plane of the process (EAL initialises once).
  std::vector<std::string> ealArgs;
  // The port: a PCI address ("0000:03:00.0", must be allowed by ealArgs) or
  // vdev devargs ("net_af_xdp0,iface=eth0", "net_af_packet0,iface=eth0",
  // "net_pcap0,rx_pcap=in.pcap,tx_pcap=out.pcap", "net_ring0").
  std::string port;
  // One worker per lcore; each owns RX/TX queue i of the port and of the
  // exception interface. Must be EAL lcores other than the main lcore.
  std::vector<unsigned> workerLcores;
  uint16_t rxDescriptors = 1024;
  uint16_t txDescriptors = 1024;
  uint32_t mbufsPerWorker = 8192;  // pool size = this * workers (+ cache slack)
  // Kernel-facing TAP interface for the exception path ("" = none: packets
  // that would go to the kernel are dropped and still counted as PASS_*).
  std::string exceptionInterface;
  // Its RX/TX descriptors per queue (keeld: DpdkConfig::kTapDescriptors,
  // which its mbuf minimum counts).
  uint16_t exceptionDescriptors = 512;
  // 0: workers busy-poll (lowest latency, one core each at 100 %). N: a
  // worker whose port and exception queues were both empty sleeps N us
  // before polling again, trading idle cores (labs, CI, lightly loaded
  // nodes) for up to N us on any packet that arrives while it sleeps: under
  // light steady traffic that is most of them, and the RX ring must hold
  // N us of the port's packets.
  uint32_t idleSleepUs = 0;
  // 0: the port runs at its driver's default MTU (1500) with DPDK's default
  // 2 KiB buffers. N: the port's MTU, and buffers that hold a whole frame of
  // it (N + Ethernet + two VLAN tags, rounded up to 1 KiB, after the headroom
  // an outer header is written into), so a frame is one segment. A driver
  // that cannot take N fails init() with its range; one that would still
  // split such a frame fails start(). The exception interface stays at 1500.
  uint16_t mtu = 0;
  // false: the port takes frames to its own MAC, broadcast and multicast
  // (all-multicast, so IPv6 neighbour solicitations and VRRP reach the
  // exception interface), and a device that starts promiscuous is turned
  // out of it; a vdev over a kernel interface (net_af_packet, net_af_xdp)
  // is left as the kernel has it, whose own filters then apply, as for XDP.
  // true: promiscuous, for VIP traffic sent to a MAC not the port's (a VRRP
  // virtual MAC); a kernel interface's mode is put back at close.
  bool promiscuous = false;
  // A vdev over a kernel interface: the file (keeld: interface-KEY.txt beside
  // its other state files) that holds the interface's MTU and receive
  // modes as they were before this plane changed them, written before any
  // change and removed once close put them back. One found at init was left
  // by a plane that never closed (keeld killed): what it names is put back
  // first, so this plane starts from the interface as the operator had it.
  // "": none (tests).
  std::string kernelStateFile;
  // maxServices, maxBackends, connTableSize. connTableSize is split over
  // the workers, and each worker's share sizes both its IPv4 and its IPv6
  // table (connTableCapacity() gives the sum).
  DataplaneLimits limits;
  // false: the port and workers start on start(); lets a caller (or a test)
  // load its tables before the first packet is read.
  bool autoStart = true;
};

// What init() configured on the port, for keeld's start-up log (the
// driver may adjust the descriptor counts, and offer no RSS at all).
struct PortFacts {
  uint16_t queues = 0;
  uint16_t rxDescriptors = 0;  // after rte_eth_dev_adjust_nb_rx_tx_desc
  uint16_t txDescriptors = 0;
  uint64_t rssHf = 0;          // RSS hash functions applied; 0 with several queues: all on queue 0
  uint16_t mtu = 0;
  uint16_t bufferBytes = 0;    // each mbuf's data room, its headroom included
  int portSocket = -1;         // the NIC's NUMA socket (-1: unknown, a vdev)
  int poolSocket = -1;         // the mbuf pool's
  // The port's receive modes after start() (rte_eth_promiscuous_get,
  // rte_eth_allmulticast_get). A vdev over a kernel interface reports what
  // ethdev set, not the kernel's flags.
  bool promiscuous = false;
  bool allMulticast = false;
};

// The DPDK implementation of keel::Dataplane, exposed for start()/stats.
class DpdkDataplane : public Dataplane {
 public:
  // Starts the port, the exception interface and the workers. Idempotent;
  // all or nothing: a start that fails part way (a worker lcore busy) stops
  // what it started. Refused after a failed start (not every driver comes
  // back from a stop: make a new plane) and once saveConnTables() has
  // stopped the workers for good.
  virtual Status start() = 0;
  virtual uint16_t portId() const = 0;
  // The port's MAC address (the source of every frame keel sends unless
  // node.local_mac says otherwise; also given to the exception interface, so
  // the kernel answers ARP/ND with the MAC the port receives on).
  virtual std::array<uint8_t, 6> portMac() const = 0;
  // Packets received by the exception path from the kernel and sent out.
  virtual uint64_t exceptionEgressPackets() const = 0;
  virtual PortFacts portFacts() const = 0;
  // The port's link now (without waiting); nullopt before the port is
  // configured or when the driver cannot say.
  virtual std::optional<bool> portLinkUp() const = 0;

  // A clean restart's connection tables (dpdk/conn_persist.h). Save: stops
  // the workers for good (the plane forwards nothing afterwards; only its
  // destruction follows), then writes every worker's entries the workers
  // would still honour to path, atomically. Restore: only before start()
  // (autoStart = false), after the tables are programmed: loads path into
  // the workers' tables (with the same layout, first giving each its saved
  // hash seeds: restoreConns), naming the backends the tables now hold, and
  // removes it (*found = false when there is none). An unusable file is an
  // error that names it and changes no table.
  virtual Status saveConnTables(const std::string& path, dpdk::ConnExportReport* report) = 0;
  virtual Status restoreConnTables(const std::string& path, dpdk::ConnRestoreReport* report,
                                   bool* found) = 0;
};

// The name of the device `port` (DpdkOptions::port) makes, as EAL names it:
// the part before the first ',', a PCI address in its full form
// ("03:00.0,x=1" -> "0000:03:00.0").
std::string portDeviceName(const std::string& devargs);

// What EAL would make of a config's driver paths (the `-d` values of its
// EAL arguments) and device devargs (the port, each --vdev) before it
// starts: DeviceNameCheck (common/devargs.h). Before EAL runs in this
// process the drivers are loaded as EAL loads them (DPDK's driver directory,
// then each path) when mayLoad, else nothing is checked (nullopt); once EAL
// runs, the names are read against the drivers it loaded, and a path it
// was not started with is not checked (nullopt).
std::optional<DeviceNameCheck> checkDpdkDeviceNames(const std::vector<std::string>& plugins,
                                                    const std::vector<std::string>& devargs, bool mayLoad);

// The least EAL memory the plane takes for a config (no EAL needed): its
// mbuf pool's buffers and mbuf headers (no mempool overhead) and every
// worker's connection tables (both families). EAL's own heap comes on top,
// so a start with less memory than this fails for certain.
EalMemoryNeed dpdkMemoryFloor(uint32_t workers, uint32_t mbufsPerWorker, uint16_t mtu, uint32_t connTableSize);

// The pid of another DPDK primary process that holds the runtime config
// of the --file-prefix the EAL arguments give ("rte" when none; *prefix
// says which), or 0: none, or the arguments keep no shared config
// (--in-memory, --no-shconf). EAL's start fails on a prefix held.
long ealPrefixHolder(const std::vector<std::string>& ealArgs, std::string* prefix = nullptr);

// Returns null and sets *error (what is wrong and where) on failure.
std::unique_ptr<Dataplane> makeDpdkDataplane(const DpdkOptions& options, std::string* error);
// The same, typed, for tests and benchmarks that call start() themselves.
std::unique_ptr<DpdkDataplane> createDpdkDataplane(const DpdkOptions& options, std::string* error);

// Releases the EAL (rte_eal_cleanup: the memory its heaps no longer hold;
// the runtime directory /run/dpdk/<file-prefix> stays, and hugepage files
// stay unless EAL runs with --huge-unlink, docs/dpdk.md) after the
// process's last DPDK data plane is gone.
// EAL cannot start again in the same process afterwards, so only a process
// that is done with DPDK calls it (keeld, when it stops or fails to start).
// A no-op if EAL never started or a data plane is still alive.
void releaseDpdkEnvironment();

}  // namespace keel

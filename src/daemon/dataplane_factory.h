// SPDX-License-Identifier: Apache-2.0
// Builds the data plane keeld drives from `dataplane:` (and `limits:`): the
// XDP program attached to an interface, or the DPDK plane (keeld runs the
// EAL itself). keeld sees keel::Dataplane plus the few things that differ
// between kinds at start and stop, and nothing else.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/address.h"
#include "common/logging.h"
#include "common/status.h"
#include "control/config.h"
#include "daemon/state_files.h"
#include "dataplane/dataplane.h"

namespace keel {

class DaemonDataplane {
 public:
  virtual ~DaemonDataplane() = default;

  virtual Dataplane& plane() = 0;
  // What a previous keeld left programmed and this one adopted (XDP: the
  // pinned maps, for Registry::adopt); null for a fresh start and for DPDK.
  virtual const ProgrammedState* adopted() const = 0;
  // The source MAC of frames keel sends when node.local_mac is not set:
  // the attached interface's (xdp), the port's (dpdk).
  virtual std::optional<MacAddress> localMac() const = 0;
  // Whether the plane can keep forwarding after keeld exits (signal
  // without --detach-on-exit, `keelctl daemon stop --detach`): XDP yes,
  // DPDK no (its workers are keeld's threads).
  virtual bool canDetach() const = 0;
  // Called once the registry has programmed the config, before keeld
  // serves: XDP forwards already (nothing to do); DPDK loads the connection
  // tables its last clean stop saved (keeld(8) RESTARTS), then starts its
  // port and workers, so no worker reads a packet before its table is
  // whole.
  virtual Status startForwarding() = 0;
  // Stops the plane. leave (XDP): keep the program attached and the maps
  // pinned for the next keeld; otherwise detach and remove the pins. DPDK
  // stops its workers and closes the ports either way; with leave it saves
  // its connection tables in between, for the next keeld's
  // startForwarding().
  virtual Status stop(bool leave) = 0;
  // Adds what an operator needs to find the plane to a log line.
  virtual void describe(LogRecord& record) const = 0;
  // One short phrase for status lines: "eth0", "net_af_packet0,iface=eth0".
  virtual std::string where() const = 0;
  // The kernel device the host's own traffic leaves by whose carrier does
  // not follow the link it really takes (DPDK's exception tap, always
  // running while the port may have no link), or "" (XDP; DPDK without
  // an exception interface, whose kernel interface's carrier the kernel
  // sees). With it, portLinkUp(): that link now, nullopt when unreadable.
  virtual std::string linklessDevice() const { return ""; }
  virtual std::optional<bool> portLinkUp() const { return std::nullopt; }
};

// False for a kind this keeld was built without (a host check: keeld
// refuses the file, exit 1).
bool dataplaneBuiltIn(DataplaneKind kind);

// The DPDK plane's checkDpdkDeviceNames() (dpdk_dataplane.h): what EAL
// would make of a config's driver paths and device names; nullopt in a
// keeld built without DPDK, or where it cannot tell without loading DPDK's
// drivers and mayLoad is false (keeld's running loop: an XDP keeld loads
// none for a file it would not apply without a restart).
// The DPDK plane's dpdkMemoryFloor() (dpdk_dataplane.h); zero in a keeld
// built without DPDK.
EalMemoryNeed dpdkMemoryNeed(uint32_t workers, uint32_t mbufsPerWorker, uint16_t mtu, uint32_t connTableSize);

std::optional<DeviceNameCheck> dpdkDeviceNames(const std::vector<std::string>& plugins,
                                               const std::vector<std::string>& devargs, bool mayLoad);

// Returns null and sets *error ("dataplane...: what is wrong") on failure;
// nothing stays attached then. files: where a DPDK plane keeps its
// connection tables between a clean stop and the next start.
std::unique_ptr<DaemonDataplane> makeDaemonDataplane(const Config& config, const StateFiles& files,
                                                     std::string* error);

// What the next start would refuse in the state a previous keeld, or
// anything else, left on this host (keeld --check-config): on XDP, pinned
// maps of other limits: sizes or a pinned program attached in the other
// xdp_mode (adoption refuses both; XdpDataplane::adoptionConflicts), an XDP
// program on the interface that is not keel's own, native mode on a driver
// that has none (XdpDataplane::attachConflicts); on DPDK, an XDP plane
// pinned for its interface, else an XDP program net_af_xdp cannot work
// beside on a net_af_xdp port's interface. The start's own words, one error
// each; empty when nothing conflicts.
std::vector<std::string> pinnedStateConflicts(const Config& config);

// A DPDK keeld before keyed state files kept runtime-dpdk.json and
// conntrack-dpdk.bin in stateDir: each is renamed to its keyed name in
// files if that does not exist yet, so the first keeld that starts after
// an upgrade keeps them (logged, state_file_renamed).
void adoptLegacyDpdkState(const std::string& stateDir, const StateFiles& files);

}  // namespace keel

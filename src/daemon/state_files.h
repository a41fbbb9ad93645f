// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <filesystem>
#include <string>

#include "common/devargs.h"
#include "control/config.h"

namespace keel {

// The files a keeld keeps in its state directory (beside the control
// socket), keyed like its pins: KEY is the interface (XDP) or
// dpdkStateKey() of the port (DPDK), so keelds whose sockets share a
// directory keep their own. The one place their names are made.
struct StateFiles {
  std::string runtime;    // runtime-KEY.json: the runtime overlay (keelctl's changes)
  std::string conntrack;  // conntrack-KEY.bin: a DPDK plane's connection tables across a clean stop
  // interface-KEY.txt: the MTU and receive modes of the kernel interface a
  // DPDK vdev port taps, as they were before keeld changed them; there
  // while keeld runs (DpdkOptions::kernelStateFile).
  std::string interfaceState;
  // applied-KEY.yaml: the text of keel.yaml as the running keeld applied it
  // (DaemonBackend::setAppliedPath): the next keeld logs what changed since.
  std::string applied;
  // A DPDK keeld's flock for its port (XDP locks its pin directory), in
  // one directory whatever control.socket says (kDpdkLockDir, not beside
  // these files: a second keeld with its socket elsewhere must meet it
  // too), keyed by the port and a representor= it selects: held while it
  // runs, so a second keeld on the same port, which would send every VIP
  // packet to the reals twice, is refused, and a next keeld waits for the
  // last to exit.
  std::string lock;
};

inline constexpr const char* kDpdkLockDir = "/run/keel/locks";

// The port's lock: its state key, and the representor it selects (ports
// one device name selects among share the key; they are other ports).
inline std::string dpdkLockPath(const std::string& port) {
  std::string key = dpdkStateKey(port);
  if (std::optional<std::string> r = devargValue(port, "representor")) {
    key += "-representor-" + *r;
    for (char& c : key)
      if (c == '/' || c == '\0') c = '_';
  }
  return std::string(kDpdkLockDir) + "/" + key;
}

inline StateFiles stateFiles(const Config& config, const std::string& stateDir) {
  const std::string key = config.dataplane.kind == DataplaneKind::kXdp ? config.dataplane.interface
                                                                       : dpdkStateKey(config.dataplane.dpdk.port);
  const std::filesystem::path dir(stateDir);
  return {(dir / ("runtime-" + key + ".json")).string(), (dir / ("conntrack-" + key + ".bin")).string(),
          (dir / ("interface-" + key + ".txt")).string(), (dir / ("applied-" + key + ".yaml")).string(),
          config.dataplane.kind == DataplaneKind::kXdp ? std::string() : dpdkLockPath(config.dataplane.dpdk.port)};
}

}  // namespace keel

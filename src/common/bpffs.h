// SPDX-License-Identifier: Apache-2.0
// The bpffs that pins live in. A fresh host, or a fresh mount namespace, may
// have none mounted at /sys/fs/bpf yet; keeld and keel-decap mount one
// there before they pin (each words the outcome its own way).
#pragma once

#include <string>

namespace keel {

inline constexpr const char* kBpffsPath = "/sys/fs/bpf";

struct BpffsMount {
  bool mounted = false;  // this call mounted it (none was there)
  int error = 0;         // errno of the mount that failed; 0: a bpffs is there
};

// Mounts a bpffs at kBpffsPath unless one already is (mounting needs
// CAP_SYS_ADMIN).
BpffsMount ensureBpffs();

// Removes an interface's pin directory and then the root holding it
// (keeld's /sys/fs/bpf/keel, keel-decap's --pin-root), each only if empty:
// another interface's pins, and the root holding them, stay. A keeld or
// keel-decap making its directory on another interface meanwhile retries
// the mkdir the removed root fails.
void removePinDirIfEmpty(const std::string& dir);

}  // namespace keel

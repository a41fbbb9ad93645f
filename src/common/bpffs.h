// SPDX-License-Identifier: Apache-2.0
// The bpffs that pins live in. A fresh host, or a fresh mount namespace, may
// have none mounted at /sys/fs/bpf yet; keeld and keel-decap mount one
// there before they pin (each words the outcome its own way).
#pragma once

namespace keel {

inline constexpr const char* kBpffsPath = "/sys/fs/bpf";

struct BpffsMount {
  bool mounted = false;  // this call mounted it (none was there)
  int error = 0;         // errno of the mount that failed; 0: a bpffs is there
};

// Mounts a bpffs at kBpffsPath unless one already is (mounting needs
// CAP_SYS_ADMIN).
BpffsMount ensureBpffs();

}  // namespace keel

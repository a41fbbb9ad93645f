// SPDX-License-Identifier: Apache-2.0
// One keeld per data plane: an exclusive flock(2) on a path, held as long
// as the descriptor stays open (so until the process exits, however it
// exits). XDP locks its pin directory, DPDK a file named for its port.
#pragma once

#include <chrono>
#include <string>

#include "common/fd.h"

namespace keel {

struct PathLock {
  bool ok = false;
  // Another process held it for the whole wait; holder: its pid, 0 if
  // /proc/locks does not say (another pid namespace, or just let go).
  bool busy = false;
  long holder = 0;
  std::string error;  // neither ok nor busy: what failed ("create DIR: ...")
};

// Takes an exclusive lock on `path`: a directory (made if missing, its
// parents too) or a regular file (created if missing, its directory made).
// Waits up to `wait` for a holder to let go. A path removed and made again
// while waiting is locked afresh, so the lock held is on what the path
// names now. On success *out holds it.
PathLock lockPath(const std::string& path, bool directory, std::chrono::milliseconds wait, Fd* out);

// The pid holding a flock on `path`, from /proc/locks; 0 if not found.
long flockHolder(const std::string& path);

}  // namespace keel

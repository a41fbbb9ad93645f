// SPDX-License-Identifier: Apache-2.0
// Writing a file whole or not at all, for the state keeld keeps between
// runs (the runtime overlay, the DPDK connection tables).
#pragma once

#include <sys/types.h>

#include <cstdio>
#include <functional>
#include <string>
#include <string_view>

#include "common/status.h"

namespace keel {

// Writes `path` through `write` (false: it failed, errno says why) into
// PATH.tmp, created with `mode` (the umask may only narrow it; a PATH.tmp
// left by a killed writer is removed first, so its mode is never
// inherited), synced, renamed over PATH, and the directory synced (for a
// file system that needs it; /run's tmpfs does not). Every step is
// checked, so a full or failing disk leaves PATH as it was and no PATH.tmp.
// Error: "STEP FILE: reason", e.g. "open /run/keel/x.tmp: Is a directory",
// "rename /run/keel/x: ...".
Status writeFileReplacing(const std::string& path, mode_t mode, const std::function<bool(FILE*)>& write);
// The same for a file whose content is `text`, whole.
Status writeFileReplacing(const std::string& path, mode_t mode, std::string_view text);

// `path` and every missing parent, each made with exactly `mode`, whatever
// the umask (std::filesystem::create_directories would give 0777 & ~umask:
// world-writable under umask 0, and under keeld.service's UMask=0077 a
// control socket's new directory would be 0700, shutting out the group its
// socket is for). An existing directory is left as it is; a file in the way
// is an error: "mkdir DIR: reason".
Status makeDirectories(const std::string& path, mode_t mode);

}  // namespace keel

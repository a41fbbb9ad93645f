// SPDX-License-Identifier: Apache-2.0
#include "common/bpffs.h"

#include <linux/magic.h>
#include <sys/mount.h>
#include <sys/vfs.h>

#include <unistd.h>

#include <cerrno>
#include <filesystem>

namespace keel {

BpffsMount ensureBpffs() {
  struct statfs st {};
  if (statfs(kBpffsPath, &st) == 0 && st.f_type == BPF_FS_MAGIC) return {};
  // 0700: a bpffs mounted with defaults is world-writable (sticky), and any
  // user could then make /sys/fs/bpf/keel first and own keeld's pins or
  // block its start (security review).
  if (mount("bpf", kBpffsPath, "bpf", 0, "mode=0700") != 0) return {false, errno};
  return {true, 0};
}

void removePinDirIfEmpty(const std::string& dir) {
  ::rmdir(dir.c_str());
  const std::string root = std::filesystem::path(dir).parent_path();
  if (!root.empty() && root != "/") ::rmdir(root.c_str());
}

}  // namespace keel

// SPDX-License-Identifier: Apache-2.0
#include "common/path_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace keel {

long flockHolder(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return 0;
  std::ifstream locks("/proc/locks");
  std::string line;
  // "1: FLOCK ADVISORY WRITE <pid> <maj>:<min>:<inode> 0 EOF", major and
  // minor in hex.
  while (std::getline(locks, line)) {
    std::istringstream in(line);
    std::string index, kind, advisory, mode, id;
    long pid = 0;
    if (!(in >> index >> kind >> advisory >> mode >> pid >> id) || kind != "FLOCK") continue;
    unsigned maj = 0, min = 0;
    unsigned long long ino = 0;
    if (std::sscanf(id.c_str(), "%x:%x:%llu", &maj, &min, &ino) == 3 && maj == major(st.st_dev) &&
        min == minor(st.st_dev) && ino == st.st_ino)
      return pid;
  }
  return 0;
}

PathLock lockPath(const std::string& path, bool directory, std::chrono::milliseconds wait, Fd* out) {
  const auto deadline = std::chrono::steady_clock::now() + wait;
  const std::filesystem::path dir = directory ? std::filesystem::path(path) : std::filesystem::path(path).parent_path();
  PathLock r;
  for (;;) {
    std::error_code ec;
    if (!dir.empty()) std::filesystem::create_directories(dir, ec);
    // A parent removed while we made it (rm -r racing us): try again.
    if (ec == std::errc::no_such_file_or_directory && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      continue;
    }
    if (ec) {
      r.error = "create " + dir.string() + ": " + ec.message();
      return r;
    }
    Fd fd(directory ? ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)
                    : ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (fd.get() < 0) {
      // Its directory removed between the two (a keeld letting go, rm -r).
      if (errno == ENOENT && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
        continue;
      }
      r.error = "open " + path + ": " + std::strerror(errno);
      return r;
    }
    if (::flock(fd.get(), LOCK_EX | LOCK_NB) == 0) {
      struct stat held {}, now {};
      if (::fstat(fd.get(), &held) == 0 && ::stat(path.c_str(), &now) == 0 && held.st_dev == now.st_dev &&
          held.st_ino == now.st_ino) {
        *out = std::move(fd);
        r.ok = true;
        return r;
      }
      continue;  // removed (or replaced) while we waited
    }
    if (errno != EWOULDBLOCK) {
      r.error = "lock " + path + ": " + std::strerror(errno);
      return r;
    }
    if (std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      continue;
    }
    r.busy = true;
    r.holder = flockHolder(path);
    return r;
  }
}

}  // namespace keel

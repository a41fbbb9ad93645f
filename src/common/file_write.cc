// SPDX-License-Identifier: Apache-2.0
#include "common/file_write.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

namespace keel {

Status writeFileReplacing(const std::string& path, mode_t mode, const std::function<bool(FILE*)>& write) {
  const std::string tmp = path + ".tmp";
  auto failed = [&](const char* step, const std::string& file, int err) {
    ::unlink(tmp.c_str());
    return Status::error(std::string(step) + " " + file + ": " + errnoText(err));
  };
  // unlink, not remove: a directory in the way stays, and open says so.
  ::unlink(tmp.c_str());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
  if (fd < 0) return failed("open", tmp, errno);
  FILE* f = ::fdopen(fd, "wb");
  if (!f) {
    const int err = errno;
    ::close(fd);
    return failed("open", tmp, err);
  }
  errno = 0;
  if (!write(f) || std::fflush(f) != 0) {
    const int err = errno ? errno : EIO;
    std::fclose(f);
    return failed("write", tmp, err);
  }
  if (::fsync(fd) != 0) {
    const int err = errno;
    std::fclose(f);
    return failed("fsync", tmp, err);
  }
  if (std::fclose(f) != 0) return failed("close", tmp, errno);
  if (::rename(tmp.c_str(), path.c_str()) != 0) return failed("rename", path, errno);
  const std::filesystem::path dir = std::filesystem::path(path).parent_path();
  if (const int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dfd >= 0) {
    (void)::fsync(dfd);
    ::close(dfd);
  }
  return Status::ok();
}

Status writeFileReplacing(const std::string& path, mode_t mode, std::string_view text) {
  return writeFileReplacing(path, mode,
                            [text](FILE* f) { return std::fwrite(text.data(), 1, text.size(), f) == text.size(); });
}

Status makeDirectories(const std::string& path, mode_t mode) {
  std::string prefix;
  for (const auto& part : std::filesystem::path(path)) {
    prefix = (std::filesystem::path(prefix) / part).string();
    if (part == "/" || part.empty()) continue;
    if (::mkdir(prefix.c_str(), mode) == 0) {
      if (::chmod(prefix.c_str(), mode) != 0)
        return Status::error("chmod " + prefix + ": " + std::strerror(errno));
      continue;
    }
    const int err = errno;
    struct stat st{};
    if (err == EEXIST && ::stat(prefix.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) continue;
    return Status::error("mkdir " + prefix + ": " + std::strerror(err == EEXIST ? ENOTDIR : err));
  }
  return Status::ok();
}

}  // namespace keel

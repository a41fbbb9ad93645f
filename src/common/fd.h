// SPDX-License-Identifier: Apache-2.0
// Fd: owns one file descriptor (a socket, a BPF object opened through its
// pin) and closes it when it goes out of scope; release() hands it on.
#pragma once

#include <unistd.h>

#include <utility>

namespace keel {

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  Fd(Fd&& other) noexcept : fd_(other.release()) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) {
      if (fd_ >= 0) ::close(fd_);
      fd_ = other.release();
    }
    return *this;
  }
  int get() const { return fd_; }
  // The descriptor, now the caller's to close; this Fd holds none.
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

}  // namespace keel

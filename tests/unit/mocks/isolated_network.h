// SPDX-License-Identifier: Apache-2.0
// A test's own network namespace with only loopback up, entered before
// main (single-threaded, as unshare requires): health checks to reals'
// addresses (10.0.1.x) then get no route (ENETUNREACH: the checker counts
// such a check as not run for up to `fall` checks, then as failed) instead
// of reaching whatever the host's network answers. That matters here: a build VM whose
// egress accepts a TCP connect to any address and port (a transparent
// proxy) brought "down" reals up in the middle of a test. Without root
// (no unshare) the tests run on the host's network and say so.
#pragma once

#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

namespace keel::test {

inline bool isolateNetwork() {
  if (::unshare(CLONE_NEWNET) != 0) return false;
  const int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0) return false;
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  bool ok = ::ioctl(fd, SIOCGIFFLAGS, &ifr) == 0;
  ifr.ifr_flags |= IFF_UP;
  ok = ok && ::ioctl(fd, SIOCSIFFLAGS, &ifr) == 0;
  ::close(fd);
  return ok;
}

}  // namespace keel::test

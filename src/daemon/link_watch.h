// SPDX-License-Identifier: Apache-2.0
// LinkWatch: the kernel's link messages (netlink RTNLGRP_LINK) for the
// data plane's interface, on keeld's loop, so that keeld runs its upkeep
// (DaemonBackend::upkeep: the XDP program attached again to an interface
// made again, the MTU, the interface's MAC) when the interface changes,
// not up to dataplane.upkeep_interval later.
//
// A message concerns the interface if it names its ifindex (a change of
// it: MTU, MAC, flags, a rename, its deletion) or its name (RTM_NEWLINK of
// an interface made again under that name, with a new ifindex). Every
// message already queued is read before `changed` is called once, so a
// burst (a link deleted and made again, brought up, given addresses) costs
// one call; the caller coalesces further (keeld posts one upkeep).
//
// Netlink is not reliable: a receive queue that overflows drops messages
// and the next read fails with ENOBUFS. That counts as a change (what was
// lost may have been one), and reading goes on. keeld keeps its timer as
// the fallback for that, for what sends no link message (an XDP program
// detached by hand, pins removed) and for a socket that cannot be opened.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

#include "common/status.h"

namespace keel {

class LinkWatch {
 public:
  using Changed = std::function<void()>;

  LinkWatch(boost::asio::io_context& io, std::string interface, Changed changed);
  ~LinkWatch();
  LinkWatch(const LinkWatch&) = delete;
  LinkWatch& operator=(const LinkWatch&) = delete;

  // Opens the socket, joins RTNLGRP_LINK and starts reading. Error: why
  // not (keeld logs it and keeps its timer alone).
  Status start();
  void stop();

  // Whether the messages in buf[0..len) concern `interface` (ifindex: its
  // ifindex now, 0 if none).
  static bool concerns(const void* buf, size_t len, const std::string& interface, int ifindex);

  // Times a read found messages lost (ENOBUFS), and times `changed` ran.
  uint64_t lost() const { return lost_; }
  uint64_t changes() const { return changes_; }

 private:
  void wait();
  void readAll();

  boost::asio::posix::stream_descriptor socket_;
  std::string interface_;
  int ifindex_ = 0;
  Changed changed_;
  uint64_t lost_ = 0;
  uint64_t changes_ = 0;
};

}  // namespace keel

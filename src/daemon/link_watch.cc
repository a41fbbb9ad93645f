// SPDX-License-Identifier: Apache-2.0
#include "daemon/link_watch.h"

#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/logging.h"

namespace keel {

LinkWatch::LinkWatch(boost::asio::io_context& io, std::string interface, Changed changed)
    : socket_(io), interface_(std::move(interface)), changed_(std::move(changed)) {}

LinkWatch::~LinkWatch() { stop(); }

Status LinkWatch::start() {
  const int fd = ::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_ROUTE);
  if (fd < 0) return Status::error(std::string("netlink socket: ") + std::strerror(errno));
  // Room for a burst (a host that makes hundreds of veths at once); what
  // does not fit is ENOBUFS, handled as a change.
  const int rcvbuf = 1 << 20;
  (void)::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  sockaddr_nl sa{};
  sa.nl_family = AF_NETLINK;
  sa.nl_groups = RTMGRP_LINK;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    const int err = errno;
    ::close(fd);
    return Status::error(std::string("netlink bind (RTMGRP_LINK): ") + std::strerror(err));
  }
  boost::system::error_code ec;
  socket_.assign(fd, ec);
  if (ec) {
    ::close(fd);
    return Status::error("netlink socket: " + ec.message());
  }
  ifindex_ = static_cast<int>(if_nametoindex(interface_.c_str()));
  wait();
  return Status::ok();
}

void LinkWatch::stop() {
  boost::system::error_code ec;
  socket_.cancel(ec);
  socket_.close(ec);
}

void LinkWatch::wait() {
  socket_.async_wait(boost::asio::posix::stream_descriptor::wait_read, [this](const boost::system::error_code& ec) {
    if (ec) return;  // cancelled: stopping
    readAll();
    wait();
  });
}

void LinkWatch::readAll() {
  alignas(nlmsghdr) char buf[32768];
  bool changed = false;
  // Bounded, so a storm of other interfaces' messages cannot hold the loop:
  // what is left is read when the wait fires again, at once.
  for (int reads = 0; reads < 256; ++reads) {
    const ssize_t n = ::recv(socket_.native_handle(), buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == ENOBUFS) {
        // The queue overflowed: messages were dropped, maybe this
        // interface's. Take it as a change and read on.
        if (lost_++ == 0)
          logWarn(LogRecord("link_messages_lost")
                      .add("interface", interface_)
                      .add("detail", "the kernel dropped link messages (ENOBUFS); keeld runs its upkeep now, as "
                                     "for a change (not logged again)"));
        changed = true;
        continue;
      }
      break;  // EAGAIN: all read
    }
    if (n == 0) break;
    if (concerns(buf, static_cast<size_t>(n), interface_, ifindex_)) changed = true;
  }
  if (!changed) return;
  // A new interface of the name has a new ifindex; a deleted one none.
  ifindex_ = static_cast<int>(if_nametoindex(interface_.c_str()));
  ++changes_;
  logDebug(LogRecord("link_changed").add("interface", interface_).add("ifindex", ifindex_));
  changed_();
}

bool LinkWatch::concerns(const void* data, size_t size, const std::string& interface, int ifindex) {
  int len = static_cast<int>(size);
  for (auto* nh = static_cast<const nlmsghdr*>(data); NLMSG_OK(nh, len); nh = NLMSG_NEXT(nh, len)) {
    if (nh->nlmsg_type != RTM_NEWLINK && nh->nlmsg_type != RTM_DELLINK) continue;
    if (nh->nlmsg_len < NLMSG_LENGTH(sizeof(ifinfomsg))) continue;
    const auto* ifi = static_cast<const ifinfomsg*>(NLMSG_DATA(nh));
    if (ifindex != 0 && ifi->ifi_index == ifindex) return true;
    int attrLen = static_cast<int>(nh->nlmsg_len - NLMSG_LENGTH(sizeof(ifinfomsg)));
    for (auto* rta = IFLA_RTA(ifi); RTA_OK(rta, attrLen); rta = RTA_NEXT(rta, attrLen)) {
      if (rta->rta_type != IFLA_IFNAME) continue;
      const char* name = static_cast<const char*>(RTA_DATA(rta));
      const size_t max = RTA_PAYLOAD(rta);
      if (::strnlen(name, max) == interface.size() && std::memcmp(name, interface.data(), interface.size()) == 0)
        return true;
    }
  }
  return false;
}

}  // namespace keel

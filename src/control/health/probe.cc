// SPDX-License-Identifier: Apache-2.0
#include "control/health/probe.h"

#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "common/fd.h"
#include "common/route.h"

namespace keel::health_detail {

namespace asio = boost::asio;

std::optional<std::string> LinklessDevice::downFor(const std::string& route) const {
  if (!down_.load(std::memory_order_relaxed)) return std::nullopt;
  std::lock_guard lock(mu_);
  if (!carries_ || !carries_(route)) return std::nullopt;
  return "this host's route to the real is down: " + route + " carries DPDK port " + port_ + ", whose link is down";
}

std::shared_ptr<const ProbeConfig> makeProbeConfig(const HealthTarget& target,
                                                   std::shared_ptr<const LinklessDevice> linkless) {
  auto c = std::make_shared<ProbeConfig>();
  c->linkless = std::move(linkless);
  c->spec = target.spec;
  c->address = toAsio(target.address);
  c->port = target.checkPort();
  if (target.spec.source) c->source = toAsio(*target.spec.source);
  if (!target.spec.host.empty()) {
    c->hostHeader = target.spec.host;
  } else {
    // RFC 9112 section 3.2: Host is the authority; an IPv6 literal goes in
    // brackets and the port is omitted when it is the scheme default.
    std::string literal = target.address.toString();
    c->hostHeader = target.address.isV6() ? "[" + literal + "]" : literal;
    if (c->port != 80) c->hostHeader += ":" + std::to_string(c->port);
  }
  c->timeoutText = formatDuration(target.spec.timeout);
  return c;
}

std::string describe(const boost::system::error_code& ec) {
  std::string m = ec.message();
  if (!m.empty()) m[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(m[0])));
  return m;
}

bool isLocalError(const boost::system::error_code& ec) {
  if (ec.category() != boost::system::system_category()) return false;
  switch (ec.value()) {
    case EMFILE:
    case ENFILE:
    case ENOBUFS:
    case ENOMEM:
    case EADDRNOTAVAIL:
    case EADDRINUSE:
      return true;
    default:
      return false;
  }
}

HealthResult failure(const boost::system::error_code& ec, std::string reason) {
  const bool local = isLocalError(ec);
  // All but a `source` the host lacks (EADDRNOTAVAIL): that one is about
  // the way to the real, the rest about the host (HealthResult::exhausted).
  return {false, std::move(reason), local, local && ec.value() != EADDRNOTAVAIL};
}

std::optional<std::string> hostPathDown(const ProbeConfig& config) {
  // RTM_GETROUTE with RTA_DST (and RTA_SRC for a `source`): the lookup a
  // packet of the check gets (policy rules, ECMP's pick), as `ip route get`,
  // without a packet. Answered while the request is sent, so the check
  // thread waits for no one; the timeout only bounds a kernel that is silent.
  Fd sock = routeSocket(std::chrono::milliseconds(100));
  if (sock.get() < 0) return std::nullopt;  // cannot tell
  const bool v4 = config.address.is_v4();
  std::optional<IpAddress> source;
  if (config.source && config.source->is_v4() == v4) source = fromAsio(*config.source);
  const RouteLookup route = lookupRoute(sock.get(), 1, fromAsio(config.address), source);
  // No route now (its link's address gone, the route withdrawn). Other
  // refusals (an unreachable or prohibit route) are the operator's
  // routing, not a dead link: the failure stands.
  if (route.error == -ENETUNREACH) return "this host has no route to the real";
  // The route's device (none named, or gone by now: cannot tell). On
  // carrier loss the kernel keeps its connected route (flagged linkdown;
  // used unless ignore_routes_with_linkdown is set), so the lookup above
  // succeeds and the check's packets go nowhere: the device's operational
  // state tells. IFF_RUNNING is the kernel's netif_oper_up() (RFC 2863
  // operStatus up, or unknown for a device that has no carrier to report):
  // clear for no carrier (LOWERLAYERDOWN, DOWN) and for a device set down.
  if (!route.hop || route.hop->interface.empty()) return std::nullopt;
  const std::string& name = route.hop->interface;
  Fd ioctlSock(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (ioctlSock.get() < 0) return std::nullopt;
  ifreq ifr{};
  // ifr is zeroed: the name stays terminated.
  std::memcpy(ifr.ifr_name, name.data(), std::min(name.size(), size_t{IFNAMSIZ - 1}));
  if (::ioctl(ioctlSock.get(), SIOCGIFFLAGS, &ifr) != 0) return std::nullopt;
  if (!(ifr.ifr_flags & IFF_RUNNING)) return "this host's route to the real is down: " + name + " has no carrier";
  if (config.linkless) return config.linkless->downFor(name);
  return std::nullopt;
}

// `result` as not run for a reason of this host's path (`why`).
static HealthResult notRunForPath(HealthResult result, const std::string& why) {
  result.ok = false;
  result.local = true;
  result.reason += " (" + why + ")";
  return result;
}

HealthResult unlessHostPathDown(HealthResult result, const ProbeConfig& config) {
  if (result.local) return result;
  if (std::optional<std::string> why = hostPathDown(config)) return notRunForPath(std::move(result), *why);
  return result;
}

HealthResult pathFailure(const boost::system::error_code& ec, std::string reason, const ProbeConfig& config) {
  HealthResult r = failure(ec, std::move(reason));
  if (r.local) return r;
  // The errors a dead path of this host's own gives: no route at connect,
  // the neighbour never answering (EHOSTUNREACH, once ARP or ND give up),
  // the kernel's own SYN retries running out. A router's ICMP gives the
  // same codes, so the route lookup decides whose fault it is.
  if (ec == boost::system::errc::network_unreachable || ec == boost::system::errc::host_unreachable ||
      ec == boost::system::errc::timed_out)
    return unlessHostPathDown(std::move(r), config);
  return r;
}

void Probe::start(Done done) {
  done_ = std::move(done);
  // The checker's own loop runs nothing but checks, so the deadline runs on
  // time (keeld's loop, which reloads and API calls hold, is another one).
  deadline_.expires_after(config_->spec.timeout);
  const HealthCheckSpec& spec = config_->spec;
  if (spec.type == HealthCheckSpec::Type::Udp && !spec.udpRequireReply && spec.udpExpect.empty())
    pathDownAtStart_ = hostPathDown(*config_);
  deadline_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
    if (ec) return;
    // A failed timeout is what a link without carrier gives too (the
    // kernel keeps its route): the route's state decides, then or (for a
    // pass on silence) when the check began.
    HealthResult r = self->timedOut();
    if (r.ok && self->pathDownAtStart_)
      self->finish(notRunForPath(std::move(r), *self->pathDownAtStart_ + " when the check began"));
    else
      self->finish(unlessHostPathDown(std::move(r), *self->config_));
  });
  begin();
}

void Probe::finish(HealthResult result) {
  if (finished_) return;
  finished_ = true;
  deadline_.cancel();
  // Closing aborts whatever is still pending; those handlers see finished_.
  closeSockets();
  Done done = std::move(done_);
  done_ = nullptr;
  if (done) done(std::move(result));
}

void Probe::failSoon(HealthResult result) {
  asio::post(io_, [self = shared_from_this(), result = std::move(result)]() mutable {
    self->finish(std::move(result));
  });
}

}  // namespace keel::health_detail

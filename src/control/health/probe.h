// SPDX-License-Identifier: Apache-2.0
// Internal to the health checker: one run of one check. A probe owns its
// socket and its deadline timer, runs entirely on the checker's io_context
// and reports exactly once. Not part of the public API.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "common/asio_address.h"
#include "control/health/health_spec.h"

namespace keel::health_detail {

// Kernel devices whose carrier does not follow the link their traffic
// takes: DPDK's exception tap, always running, while the port whose frames
// it carries may have lost its link (and the VLAN devices on the tap).
// One per checker, shared by every ProbeConfig; keeld names them once and
// keeps `down` current (HealthChecker::setLinklessDevice, ...Down).
class LinklessDevice {
 public:
  // carries(device): whether the host's traffic leaving by `device` takes
  // the port's link (keeld: the tap or an interface stacked on it, read
  // through netlink, which sees the process's own network namespace).
  using Carries = std::function<bool(const std::string& device)>;
  void set(std::string port, Carries carries) {
    std::lock_guard lock(mu_);
    port_ = std::move(port);
    carries_ = std::move(carries);
  }
  void setDown(bool down) { down_.store(down, std::memory_order_relaxed); }
  // Why `route` (the route's device) is down although the kernel runs it:
  // it carries the port's link, which is down. Nothing otherwise.
  std::optional<std::string> downFor(const std::string& route) const;

 private:
  mutable std::mutex mu_;
  std::string port_;
  Carries carries_;
  std::atomic<bool> down_{false};
};

// Everything a probe needs, resolved once per spec change and shared
// (immutably) by every run, so a run copies no strings.
struct ProbeConfig {
  HealthCheckSpec spec;
  boost::asio::ip::address address;
  uint16_t port = 0;
  std::optional<boost::asio::ip::address> source;
  std::string hostHeader;   // http only
  std::string timeoutText;  // "1s", for reasons
  std::shared_ptr<const LinklessDevice> linkless;  // the checker's; may be null
};

std::shared_ptr<const ProbeConfig> makeProbeConfig(const HealthTarget& target,
                                                   std::shared_ptr<const LinklessDevice> linkless = nullptr);

// "Connection refused" -> "connection refused": reasons read as one phrase.
std::string describe(const boost::system::error_code& ec);

// Whether an error of opening, binding or connecting a check's socket is
// this host's (HealthResult::local): EMFILE, ENFILE, ENOBUFS, ENOMEM,
// EADDRNOTAVAIL (no ephemeral port, or a source address that is not
// local) and EADDRINUSE.
bool isLocalError(const boost::system::error_code& ec);

// A failed result with `reason`, local if `ec` is a local error.
HealthResult failure(const boost::system::error_code& ec, std::string reason);
// Why this host's own path to the real is down now, or nothing (up, or it
// cannot tell): no route to it ("network is unreachable": its address or
// route gone), or the route's device without carrier (the kernel keeps a
// connected route through a link that lost carrier, flagged linkdown, so
// the check's packets go nowhere and it times out), or a device the
// kernel runs whose link is down all the same (config.linkless: DPDK's
// exception tap while the port has no link). One route lookup without a
// packet (netlink RTM_GETROUTE, then the device's flags).
std::optional<std::string> hostPathDown(const ProbeConfig& config);
// `result` as not run (local, the reason saying why) when hostPathDown()
// finds this host's path down: a flap of the balancer's own link is not
// the reals' fault (fault review F7, where it took every real down and
// raised all_reals_down). That holds for a pass too: a udp check passes on
// silence, which is all a dead link gives (it brought a dead real up while
// the balancer's link was down). A result that is local already is
// returned as it is.
HealthResult unlessHostPathDown(HealthResult result, const ProbeConfig& config);
// A failed result for a socket's error (a connect's, a udp receive's):
// local if `ec` is a local error; for the errors a dead path gives
// (ENETUNREACH, EHOSTUNREACH, ETIMEDOUT) not run when hostPathDown() says
// so, else the failure it is (a router's ICMP about the path).
HealthResult pathFailure(const boost::system::error_code& ec, std::string reason, const ProbeConfig& config);

// Opens `socket` for the target's family and binds the configured source.
// Returns nothing, or the failed result.
std::optional<HealthResult> openTcpSocket(boost::asio::ip::tcp::socket& socket, const ProbeConfig& config);

class Probe : public std::enable_shared_from_this<Probe> {
 public:
  using Done = std::function<void(HealthResult)>;

  Probe(boost::asio::io_context& io, std::shared_ptr<const ProbeConfig> config)
      : io_(io), config_(std::move(config)), deadline_(io) {}
  virtual ~Probe() = default;
  Probe(const Probe&) = delete;
  Probe& operator=(const Probe&) = delete;

  // Starts the run. `done` is called exactly once: from a handler on the
  // io_context, or from cancel() (the caller then ignores the result).
  void start(Done done);
  void cancel() { finish({false, "cancelled"}); }

 protected:
  // Opens sockets and starts the first operation. Synchronous failures go
  // through failSoon() so `done` never runs inside start().
  virtual void begin() = 0;
  virtual void closeSockets() = 0;
  // What the deadline means for this check type (udp: maybe success).
  virtual HealthResult timedOut() const { return {false, "timeout after " + config_->timeoutText}; }

  void finish(HealthResult result);
  void failSoon(HealthResult result);
  bool finished() const { return finished_; }
  template <class Derived>
  std::shared_ptr<Derived> self() {
    return std::static_pointer_cast<Derived>(shared_from_this());
  }

  boost::asio::io_context& io_;
  std::shared_ptr<const ProbeConfig> config_;

 private:
  boost::asio::steady_timer deadline_;
  Done done_;
  bool finished_ = false;
  // A check that passes on silence (udp without require_reply or expect):
  // this host's path as the check began. Silence from a datagram sent into
  // a dead link that is back by the timeout passed (a dead real came up
  // with rise 1 right after a link flap).
  std::optional<std::string> pathDownAtStart_;
};

std::shared_ptr<Probe> makeTcpProbe(boost::asio::io_context& io, std::shared_ptr<const ProbeConfig> config);
std::shared_ptr<Probe> makeHttpProbe(boost::asio::io_context& io, std::shared_ptr<const ProbeConfig> config);
std::shared_ptr<Probe> makeUdpProbe(boost::asio::io_context& io, std::shared_ptr<const ProbeConfig> config);

}  // namespace keel::health_detail

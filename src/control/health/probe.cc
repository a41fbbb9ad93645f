// SPDX-License-Identifier: Apache-2.0
#include "control/health/probe.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <boost/asio/ip/udp.hpp>
#include <chrono>

namespace keel::health_detail {

namespace asio = boost::asio;

std::shared_ptr<const ProbeConfig> makeProbeConfig(const HealthTarget& target) {
  auto c = std::make_shared<ProbeConfig>();
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
  return {false, std::move(reason), isLocalError(ec)};
}

HealthResult connectFailure(const boost::system::error_code& ec, std::string reason, const ProbeConfig& config) {
  HealthResult r = failure(ec, std::move(reason));
  if (r.local || ec != boost::system::errc::network_unreachable) return r;
  boost::asio::io_context io;  // never run: the socket's calls below are synchronous
  boost::asio::ip::udp::socket probe(io);
  boost::system::error_code e;
  probe.open(config.address.is_v4() ? boost::asio::ip::udp::v4() : boost::asio::ip::udp::v6(), e);
  if (!e && config.source) probe.bind(boost::asio::ip::udp::endpoint(*config.source, 0), e);
  if (!e) probe.connect(boost::asio::ip::udp::endpoint(config.address, config.port), e);
  r.local = r.noRoute = e == boost::system::errc::network_unreachable;
  return r;
}

void Probe::start(Done done) {
  done_ = std::move(done);
  // The checker's own loop runs nothing but checks, so the deadline runs on
  // time (keeld's loop, which reloads and API calls hold, is another one).
  deadline_.expires_after(config_->spec.timeout);
  deadline_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
    if (!ec) self->finish(self->timedOut());
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

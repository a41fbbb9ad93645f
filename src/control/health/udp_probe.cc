// SPDX-License-Identifier: Apache-2.0
// udp: send the payload on a connected socket. A connected UDP socket is
// what makes ICMP port unreachable visible: the kernel reports it as
// ECONNREFUSED on the next receive (RFC 1122 4.1.3.3). Outcomes are listed
// in health_spec.h.
#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <boost/asio/buffer.hpp>
#include <boost/asio/ip/udp.hpp>

#include "control/health/probe.h"

namespace keel::health_detail {

namespace asio = boost::asio;
using asio::ip::udp;

namespace {

class UdpProbe final : public Probe {
 public:
  UdpProbe(asio::io_context& io, std::shared_ptr<const ProbeConfig> config)
      : Probe(io, std::move(config)), socket_(io) {}

 private:
  void begin() override {
    boost::system::error_code ec;
    udp::endpoint remote(config_->address, config_->port);
    socket_.open(remote.protocol(), ec);
    if (ec) return failSoon(failure(ec, "udp: socket: " + describe(ec)));
    // Every ICMP error about the datagram fails the check: without
    // IP_RECVERR a connected UDP socket hears only the "hard" ones (port
    // and protocol unreachable), and a router's host or net unreachable
    // passed as silence. With it each error ends the pending receive
    // (EHOSTUNREACH, ENETUNREACH, ...).
    const int one = 1;
    if (remote.address().is_v4())
      ::setsockopt(socket_.native_handle(), IPPROTO_IP, IP_RECVERR, &one, sizeof one);
    else
      ::setsockopt(socket_.native_handle(), IPPROTO_IPV6, IPV6_RECVERR, &one, sizeof one);
    if (config_->source) {
      socket_.bind(udp::endpoint(*config_->source, 0), ec);
      if (ec) return failSoon(failure(ec, "udp: bind " + config_->source->to_string() + ": " + describe(ec)));
    }
    socket_.connect(remote, ec);  // no packet: only fixes the peer
    if (ec) return failSoon(pathFailure(ec, "udp: connect: " + describe(ec), *config_));
    socket_.async_receive(asio::buffer(reply_),
                          [self = self<UdpProbe>()](const boost::system::error_code& ec, size_t n) {
                            if (self->finished()) return;
                            self->finish(self->judge(ec, n));
                          });
    socket_.async_send(asio::buffer(config_->spec.udpPayload),
                       [self = self<UdpProbe>()](const boost::system::error_code& ec, size_t) {
                         if (self->finished() || !ec) return;
                         self->finish(self->judge(ec, 0));
                       });
  }

  HealthResult judge(const boost::system::error_code& ec, size_t n) const {
    if (ec == asio::error::connection_refused) {
      return {false, "udp: connection refused (ICMP port unreachable)"};
    }
    if (ec) return pathFailure(ec, "udp: " + describe(ec), *config_);
    const std::string& expect = config_->spec.udpExpect;
    if (expect.empty()) return {true, "udp: reply received"};
    if (n >= expect.size() && std::equal(expect.begin(), expect.end(), reply_.begin())) {
      return {true, "udp: expected reply"};
    }
    return {false, "udp: unexpected reply (" + std::to_string(n) + " bytes)"};
  }

  HealthResult timedOut() const override {
    const HealthCheckSpec& spec = config_->spec;
    const bool replyNeeded = spec.udpRequireReply || !spec.udpExpect.empty();
    if (replyNeeded) return {false, "udp: no reply within " + config_->timeoutText};
    return {true, "udp: no reply and no ICMP error within " + config_->timeoutText};
  }

  void closeSockets() override {
    boost::system::error_code ignored;
    socket_.close(ignored);
  }

  udp::socket socket_;
  std::array<char, 2048> reply_{};
};

}  // namespace

std::shared_ptr<Probe> makeUdpProbe(asio::io_context& io, std::shared_ptr<const ProbeConfig> config) {
  return std::make_shared<UdpProbe>(io, std::move(config));
}

}  // namespace keel::health_detail

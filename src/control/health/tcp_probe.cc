// SPDX-License-Identifier: Apache-2.0
// tcp: up if a connect completes within the timeout.
#include <netinet/in.h>

#include "control/health/probe.h"

namespace keel::health_detail {

namespace asio = boost::asio;
using asio::ip::tcp;

std::optional<HealthResult> openTcpSocket(tcp::socket& socket, const ProbeConfig& config) {
  boost::system::error_code ec;
  tcp::endpoint remote(config.address, config.port);
  socket.open(remote.protocol(), ec);
  if (ec) return failure(ec, "socket: " + describe(ec));
  if (config.source) {
#ifdef IP_BIND_ADDRESS_NO_PORT
    // Pick the source port at connect() time, from the whole 4-tuple space,
    // instead of reserving one per bind(): thousands of checks from one
    // source address would otherwise exhaust the ephemeral range.
    int one = 1;
    ::setsockopt(socket.native_handle(), IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
#endif
    socket.bind(tcp::endpoint(*config.source, 0), ec);
    if (ec) return failure(ec, "bind " + config.source->to_string() + ": " + describe(ec));
  }
  return std::nullopt;
}

namespace {

class TcpProbe final : public Probe {
 public:
  TcpProbe(asio::io_context& io, std::shared_ptr<const ProbeConfig> config)
      : Probe(io, std::move(config)), socket_(io) {}

 private:
  void begin() override {
    if (auto failed = openTcpSocket(socket_, *config_)) return failSoon(std::move(*failed));
    socket_.async_connect(tcp::endpoint(config_->address, config_->port),
                          [self = self<TcpProbe>()](const boost::system::error_code& ec) {
                            if (self->finished()) return;
                            if (ec) return self->finish(pathFailure(ec, "connect: " + describe(ec), *self->config_));
                            self->finish({true, "connect: ok"});
                          });
  }

  void closeSockets() override {
    boost::system::error_code ignored;
    if (socket_.is_open()) {
      // Abort with RST rather than FIN: the check has its answer, and at
      // thousands of checks a second an orderly close would leave as many
      // TIME_WAIT sockets on the balancer (HAProxy closes checks the same way).
      socket_.set_option(tcp::socket::linger(true, 0), ignored);
    }
    socket_.close(ignored);
  }

  tcp::socket socket_;
};

}  // namespace

std::shared_ptr<Probe> makeTcpProbe(asio::io_context& io, std::shared_ptr<const ProbeConfig> config) {
  return std::make_shared<TcpProbe>(io, std::move(config));
}

}  // namespace keel::health_detail

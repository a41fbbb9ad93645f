// SPDX-License-Identifier: Apache-2.0
// http: HTTP/1.1 GET through Boost.Beast; up if the status code is in the
// configured range. Only the response header is read: the status is all the
// check needs, and a large or endless body must not cost the balancer.
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>

#include <cctype>
#include <cstdint>
#include <limits>
#include <optional>
#include <string_view>

#include "control/health/probe.h"

namespace keel::health_detail {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using asio::ip::tcp;

namespace {

// The status code of a status line at the start of `bytes`: "HTTP/", a
// digit, ".", a digit, a space, three digits, then a space, CR or LF. What
// keepalived's HTTP_GET reads of a response, and all the check judges.
std::optional<unsigned> statusCodeAt(std::string_view bytes) {
  auto digit = [&](size_t i) { return std::isdigit(static_cast<unsigned char>(bytes[i])) != 0; };
  if (bytes.size() < 13 || bytes.substr(0, 5) != "HTTP/" || !digit(5) || bytes[6] != '.' || !digit(7) ||
      bytes[8] != ' ' || !digit(9) || !digit(10) || !digit(11))
    return std::nullopt;
  if (bytes[12] != ' ' && bytes[12] != '\r' && bytes[12] != '\n') return std::nullopt;
  return static_cast<unsigned>((bytes[9] - '0') * 100 + (bytes[10] - '0') * 10 + (bytes[11] - '0'));
}

// The final status of the responses in `bytes` read leniently, for what
// Beast's parser refuses and keepalived accepts (bare LF line endings, no
// reason phrase, Content-Length with chunked, "X-Foo : bar"): each status
// line's code, past interim 1xx responses (not 101) up to their blank line
// (CRLF or bare LF), as the parsed path does.
std::optional<unsigned> lenientFinalStatus(std::string_view bytes) {
  for (;;) {
    const std::optional<unsigned> code = statusCodeAt(bytes);
    if (!code || *code < 100 || *code >= 200 || *code == 101) return code;
    size_t end = std::string_view::npos;
    for (size_t i = bytes.find('\n'); i != std::string_view::npos; i = bytes.find('\n', i + 1)) {
      if (i + 1 < bytes.size() && bytes[i + 1] == '\n') {
        end = i + 2;
        break;
      }
      if (i + 2 < bytes.size() && bytes[i + 1] == '\r' && bytes[i + 2] == '\n') {
        end = i + 3;
        break;
      }
    }
    if (end == std::string_view::npos) return std::nullopt;  // no final response (yet)
    bytes.remove_prefix(end);
  }
}

class HttpProbe final : public Probe {
 public:
  HttpProbe(asio::io_context& io, std::shared_ptr<const ProbeConfig> config)
      : Probe(io, std::move(config)), socket_(io) {}

 private:
  void begin() override {
    if (auto failed = openTcpSocket(socket_, *config_)) return failSoon(std::move(*failed));
    request_.method(http::verb::get);
    request_.target(config_->spec.path);
    request_.version(11);
    request_.set(http::field::host, config_->hostHeader);
    request_.set(http::field::user_agent, "keel-health");
    // One request per connection: nothing to keep alive between checks.
    request_.set(http::field::connection, "close");
    socket_.async_connect(tcp::endpoint(config_->address, config_->port),
                          [self = self<HttpProbe>()](const boost::system::error_code& ec) {
                            if (self->finished()) return;
                            if (ec) return self->finish(pathFailure(ec, "connect: " + describe(ec), *self->config_));
                            self->connected_ = true;
                            self->write();
                          });
  }

  void write() {
    http::async_write(socket_, request_,
                      [self = self<HttpProbe>()](const boost::system::error_code& ec, size_t) {
                        if (self->finished()) return;
                        if (ec) return self->finish({false, "http: write: " + describe(ec)});
                        self->read();
                      });
  }

  void read() {
    // Only the header is read, so the body's length limits nothing: Beast
    // refuses a Content-Length over its default body limit (8 MiB) while
    // parsing the header, which failed a real whose check path serves a
    // large file. (Not boost::none: Beast 1.74 compares the length with the
    // optional limit, and no limit then compares as smaller than any length.)
    // Headers up to 64 KiB (large cookies, CSP): 8 KiB by default.
    parser_.emplace();
    parser_->body_limit(std::numeric_limits<std::uint64_t>::max());
    parser_->header_limit(64 * 1024);
    // 0 until the parser has read a status line (judge(): a field it then
    // refuses leaves the code read); a message starts as 200.
    parser_->get().result(0u);
    http::async_read_header(socket_, buffer_, *parser_,
                            [self = self<HttpProbe>()](const boost::system::error_code& ec, size_t) {
                              if (self->finished()) return;
                              // An interim response (100 Continue, 103 Early Hints; not 101)
                              // comes before the final one, which the check waits for
                              // within the same timeout (RFC 9110 15.2). Bounded: the
                              // deadline ends the check whatever the real sends.
                              if (!ec) {
                                const unsigned code = self->parser_->get().result_int();
                                if (code >= 100 && code < 200 && code != 101) {
                                  self->interim_ = true;
                                  return self->read();
                                }
                              }
                              self->finish(self->judge(ec));
                            });
  }

  // Where the deadline found the check: a real that accepts and then sends
  // half a response is the application's fault, not the network's (fault
  // review F12: both read "timeout after 400ms").
  HealthResult timedOut() const override {
    const std::string after = "timeout after " + config_->timeoutText;
    if (!connected_) return {false, after + " (connecting)"};
    if ((parser_ && parser_->got_some()) || buffer_.size() > 0)
      return {false, after + " (an incomplete response: its header unfinished)"};
    if (interim_) return {false, after + " (an interim 1xx response, then no final one)"};
    return {false, after + " (connected, no response)"};
  }

  HealthResult judge(const boost::system::error_code& ec) const {
    if (ec == http::error::end_of_stream || ec == asio::error::eof) {
      return {false, "http: connection closed before a response"};
    }
    // A response the parser refuses is still judged by its status, as
    // keepalived's HTTP_GET judges it: only a refusal of the parser's own
    // (Beast's http::error), not a connection reset or closed halfway
    // (partial_message), whose status line says nothing of a response that
    // never finished. A final status the parser read, before a field it
    // refused, is in the message and decides; else a status line it
    // refused is still in buffer_ (Beast consumes what it parsed, even on
    // an error), read by lenientFinalStatus.
    if (ec && ec.category() == http::make_error_code(http::error::bad_field).category() &&
        ec != http::error::partial_message) {
      const unsigned parsed = parser_->get().result_int();
      if (parsed >= 200 || parsed == 101) return judgeStatus(parsed);
      const auto* data = static_cast<const char*>(buffer_.data().data());
      if (std::optional<unsigned> code = lenientFinalStatus(std::string_view(data, buffer_.size())))
        return judgeStatus(*code);
    }
    if (ec) return {false, "http: " + describe(ec)};
    return judgeStatus(parser_->get().result_int());
  }

  HealthResult judgeStatus(unsigned code) const {
    const HealthCheckSpec& s = config_->spec;
    std::string text = "http status " + std::to_string(code);
    if (code >= s.statusMin && code <= s.statusMax) return {true, text};
    std::string range = s.statusMin == s.statusMax
                            ? std::to_string(s.statusMin)
                            : std::to_string(s.statusMin) + "-" + std::to_string(s.statusMax);
    return {false, text + " not in " + range};
  }

  void closeSockets() override {
    boost::system::error_code ignored;
    if (socket_.is_open()) socket_.set_option(tcp::socket::linger(true, 0), ignored);  // see tcp_probe.cc
    socket_.close(ignored);
  }

  tcp::socket socket_;
  bool connected_ = false;
  bool interim_ = false;  // a 1xx response came before the final one
  http::request<http::empty_body> request_;
  boost::beast::flat_buffer buffer_;
  // One per response read: a fresh one after an interim response.
  std::optional<http::response_parser<http::empty_body>> parser_;
};

}  // namespace

std::shared_ptr<Probe> makeHttpProbe(asio::io_context& io, std::shared_ptr<const ProbeConfig> config) {
  return std::make_shared<HttpProbe>(io, std::move(config));
}

}  // namespace keel::health_detail

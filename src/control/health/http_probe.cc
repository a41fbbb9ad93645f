// SPDX-License-Identifier: Apache-2.0
// http: HTTP/1.1 GET through Boost.Beast; up if the status code is in the
// configured range. Only the response header is read: the status is all the
// check needs, and a large or endless body must not cost the balancer. The
// status counts only once the whole header, through its blank line, has come
// within kHeaderLimit and the timeout, as keepalived's HTTP_GET reads a
// status only once it has read the header's end (check_http.c,
// extract_html): a 200 whose header never ends is no healthy real.
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

// Headers up to 64 KiB (large cookies, CSP): Beast's default is 8 KiB.
constexpr size_t kHeaderLimit = 64 * 1024;

// Where the header whose line starts `bytes` ends: just past its blank line
// (CRLF or a bare LF, RFC 9112 2.2); npos while that has not come.
size_t headerEnd(std::string_view bytes) {
  if (bytes.substr(0, 1) == "\n") return 1;
  if (bytes.substr(0, 2) == "\r\n") return 2;
  for (size_t i = bytes.find('\n'); i != std::string_view::npos; i = bytes.find('\n', i + 1)) {
    if (i + 1 < bytes.size() && bytes[i + 1] == '\n') return i + 2;
    if (i + 2 < bytes.size() && bytes[i + 1] == '\r' && bytes[i + 2] == '\n') return i + 3;
  }
  return std::string_view::npos;
}

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

// The responses in `bytes` read leniently, for what Beast's parser refuses
// and keepalived accepts (bare LF line endings, no reason phrase,
// Content-Length with chunked, "X-Foo : bar"): each status line's code, past
// interim 1xx responses (not 101) up to their blank line (CRLF or bare LF),
// as the parsed path does, to the final response, whose header must have
// ended too.
struct LenientRead {
  enum class State {
    kNoStatusLine,  // a line that is no status line: no HTTP response
    kUnfinished,    // the final response's header has not ended (yet)
    kWhole,         // the final response's status line and header came
  } state;
  unsigned code = 0;  // kWhole: the final status
  size_t end = 0;     // kWhole: where its header ends in `bytes`
};
LenientRead lenientFinalResponse(std::string_view bytes) {
  for (size_t at = 0;;) {
    // A status line not whole yet cannot be told from one that is none.
    if (bytes.find('\n') == std::string_view::npos) return {LenientRead::State::kUnfinished};
    const std::optional<unsigned> code = statusCodeAt(bytes);
    if (!code) return {LenientRead::State::kNoStatusLine};
    const size_t end = headerEnd(bytes);
    if (end == std::string_view::npos) return {LenientRead::State::kUnfinished};
    if (*code < 100 || *code >= 200 || *code == 101) return {LenientRead::State::kWhole, *code, at + end};
    bytes.remove_prefix(end);
    at += end;
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
    parser_.emplace();
    parser_->body_limit(std::numeric_limits<std::uint64_t>::max());
    parser_->header_limit(kHeaderLimit);
    // 0 until the parser has read a status line (judgeRefused(): a field it
    // then refuses leaves the code read); a message starts as 200.
    parser_->get().result(0u);
    http::async_read_header(socket_, buffer_, *parser_,
                            [self = self<HttpProbe>()](const boost::system::error_code& ec, size_t parsed) {
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
                              if (refusedByTheParser(ec)) {
                                self->refused_ = ec;
                                self->parsedBytes_ = parsed;
                                return self->readRefused();
                              }
                              self->finish(self->judge(ec));
                            });
  }

  // A refusal of the parser's own (Beast's http::error), for a response
  // keepalived's HTTP_GET may judge all the same: not a connection closed
  // before a response or halfway (end_of_stream, partial_message), nor a
  // header past the limit.
  static bool refusedByTheParser(const boost::system::error_code& ec) {
    return ec && ec.category() == http::make_error_code(http::error::bad_field).category() &&
           ec != http::error::end_of_stream && ec != http::error::partial_message && ec != http::error::header_limit;
  }

  // After the parser's refusal: reads on, as it is, until the header's end
  // is in buffer_, the response's header bytes (what the parser took and
  // what buffer_ holds) reach kHeaderLimit, the real closes, or the
  // deadline. The parser stops at the first thing it refuses, often before
  // the header's end has come, and a status line alone says nothing of a
  // response that never finishes.
  void readRefused() {
    if (std::optional<HealthResult> result = judgeRefused()) return finish(std::move(*result));
    const size_t have = parsedBytes_ + buffer_.size();
    if (have >= kHeaderLimit) return finish(overLimit());
    socket_.async_read_some(buffer_.prepare(kHeaderLimit - have),
                            [self = self<HttpProbe>()](const boost::system::error_code& ec, size_t n) {
                              if (self->finished()) return;
                              self->buffer_.commit(n);
                              if (ec == asio::error::eof) return self->finish(cutOff());
                              if (ec) return self->finish({false, "http: " + describe(ec)});
                              self->readRefused();
                            });
  }

  static HealthResult overLimit() { return {false, "http: response header over 64 KiB (its end not within it)"}; }
  static HealthResult cutOff() { return {false, "http: connection closed before the response header ended"}; }

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
    if (ec == http::error::partial_message) return cutOff();
    if (ec == http::error::header_limit) return overLimit();
    if (ec) return {false, "http: " + describe(ec)};
    return judgeStatus(parser_->get().result_int());
  }

  // A response the parser refused (refused_) is still judged by its
  // status, as keepalived's HTTP_GET judges it, once its header has ended;
  // nullopt until then. A final status the parser read, before a field it
  // refused, is in the message and decides, and the rest of its header is
  // in buffer_ from the refused field's line on (Beast consumes what it
  // parsed, even on an error, and stops at a line's start); else a status
  // line it refused is still in buffer_, read by lenientFinalResponse.
  // Its header ends within kHeaderLimit (with what the parser took) or it
  // fails, though the bytes read past it may hold its end.
  std::optional<HealthResult> judgeRefused() const {
    const std::string_view bytes(static_cast<const char*>(buffer_.data().data()), buffer_.size());
    const auto within = [&](size_t end, unsigned code) {
      return parsedBytes_ + end > kHeaderLimit ? overLimit() : judgeStatus(code);
    };
    const unsigned parsed = parser_->get().result_int();
    if (parsed >= 200 || parsed == 101) {
      const size_t end = headerEnd(bytes);
      if (end == std::string_view::npos) return std::nullopt;
      return within(end, parsed);
    }
    const LenientRead read = lenientFinalResponse(bytes);
    if (read.state == LenientRead::State::kUnfinished) return std::nullopt;
    if (read.state == LenientRead::State::kWhole) return within(read.end, read.code);
    return HealthResult{false, "http: " + describe(refused_)};
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
  boost::system::error_code refused_;  // the parser's refusal (readRefused)
  size_t parsedBytes_ = 0;             // the bytes of the response the parser took before it
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

// SPDX-License-Identifier: Apache-2.0
#include "control/api/api_client.h"

#include "common/json_depth.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace keel::api {

using nlohmann::json;

namespace {
// Responses are bounded by what the daemon sends; this only stops a broken
// peer from filling memory.
constexpr size_t kMaxResponseBytes = 256u << 20;

// Bounds the next blocking connect() or send() on fd by what is left until
// the deadline: SO_SNDTIMEO, under which a Unix stream socket's connect()
// also waits for room in the listener's backlog (then fails with EAGAIN).
// False once the deadline has passed.
bool boundSends(int fd, std::chrono::steady_clock::time_point deadline) {
  const auto left =
      std::chrono::duration_cast<std::chrono::microseconds>(deadline - std::chrono::steady_clock::now()).count();
  if (left <= 0) return false;
  timeval tv{static_cast<time_t>(left / 1000000), static_cast<suseconds_t>(left % 1000000)};
  return ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) == 0;
}
}  // namespace

ApiClient::~ApiClient() { close(); }

void ApiClient::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  buffer_.clear();
}

std::string ApiClient::within() const {
  char seconds[32];  // "60", "1.5", "0.1": keelctl --timeout takes fractions
  std::snprintf(seconds, sizeof seconds, "%g", static_cast<double>(timeout_.count()) / 1000.0);
  return std::string("within ") + seconds + " s";
}

Status ApiClient::connect(Deadline deadline) {
  if (fd_ >= 0) {
    // A kept connection keeld has closed meanwhile (its idle timeout, a
    // restart) reads as EOF: keeld sends nothing between answers, so
    // anything readable means it is gone. Dropped and connected again,
    // before a send that would fail with EPIPE having delivered nothing.
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, 0) == 0) return Status::ok();
    close();
  }
  sockaddr_un addr{};
  if (path_.empty()) return Status::error("cannot connect: the socket path is empty");
  if (path_.size() >= sizeof addr.sun_path)
    return Status::error("cannot connect to " + path_ + ": socket path too long (at most " +
                         std::to_string(sizeof addr.sun_path - 1) + " bytes)");
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::error(std::string("socket: ") + std::strerror(errno));
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path_.data(), path_.size());
  if (!boundSends(fd, deadline) || ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    int e = errno;
    ::close(fd);
    // The listener's backlog stayed full until the deadline: keeld accepts
    // no connections (wedged, or swamped by clients).
    if (e == EAGAIN || std::chrono::steady_clock::now() >= deadline)
      return Status::error("cannot connect to " + path_ + ": keeld accepted no connection " + within() +
                           " (its backlog of connections is full: keeld may be wedged)");
    std::string hint;
    if (e == ENOENT || e == ECONNREFUSED) hint = " (is keeld running? use --socket PATH for another socket)";
    if (e == EACCES || e == EPERM)
      // The client cannot tell which of keeld's two sockets PATH is: the
      // hint names the keys of both.
      hint = " (a socket's mode and group are keel.yaml's control.mode and control.group, 0600 and "
             "root's by default, for the main socket, and control.readonly.mode and .group, 0660 and "
             "keeld's group by default, for the read-only one: run as root or as a member of that group; "
             "its directory must let you in too; to look without changing anything, use the read-only "
             "socket if keeld has one: --socket PATH of control.readonly.socket)";
    return Status::error("cannot connect to " + path_ + ": " + std::strerror(e) + hint);
  }
  fd_ = fd;
  return Status::ok();
}

Status ApiClient::sendAll(const std::string& data, Deadline deadline, size_t& sent) {
  sent = 0;
  while (sent < data.size()) {
    // A request larger than the socket's buffer (config check of a large
    // file) waits for keeld to read; one that reads nothing meets the deadline.
    if (!boundSends(fd_, deadline))
      return Status::error(sent + 1 >= data.size()
                               ? "no response from " + path_ + " " + within()  // all but the newline: delivered (call())
                               : "keeld did not read the request on " + path_ + " " + within());
    ssize_t n = ::send(fd_, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;  // the deadline ends it
    if (n <= 0) return Status::error("send to " + path_ + ": " + std::strerror(errno));
    sent += static_cast<size_t>(n);
  }
  return Status::ok();
}

Status ApiClient::readLine(std::string& line, Deadline deadline) {
  for (;;) {
    if (auto nl = buffer_.find('\n'); nl != std::string::npos) {
      line = buffer_.substr(0, nl);
      buffer_.erase(0, nl + 1);
      return Status::ok();
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline -
                                                                      std::chrono::steady_clock::now());
    if (left.count() <= 0) return Status::error("no response from " + path_ + " " + within());
    pollfd p{fd_, POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(left.count()));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return Status::error(std::string("poll: ") + std::strerror(errno));
    if (r == 0) continue;
    char buf[65536];
    ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::error("read from " + path_ + ": " + std::strerror(errno));
    if (n == 0) return Status::error("keeld closed the connection on " + path_ + " without a response");
    buffer_.append(buf, static_cast<size_t>(n));
    if (buffer_.size() > kMaxResponseBytes) return Status::error("response from " + path_ + " too large");
  }
}

Status ApiClient::call(const std::string& method, const json& params, json& response) {
  sent_ = false;
  // One deadline for the whole exchange (keelctl --timeout).
  const Deadline deadline = std::chrono::steady_clock::now() + timeout_;
  if (Status s = connect(deadline); !s) return s;
  long id = nextId_++;
  json req{{"id", id}, {"method", method}};
  if (!params.is_null()) req["params"] = params;
  const std::string data = req.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
  size_t out = 0;
  const Status sending = sendAll(data, deadline, out);
  // Sent once the JSON object is out: keeld answers a line that ends at its
  // end of input rather than at a newline (api_server.cc), so closing after
  // all but the newline still delivers the request.
  sent_ = out + 1 >= data.size();
  if (!sending) {
    close();
    return sending;
  }
  std::string line;
  if (Status s = readLine(line, deadline); !s) {
    close();
    return s;
  }
  // Nested deeper than keeld nests any reply: refused before it is
  // parsed, with the bound keeld puts on what it reads (kMaxJsonDepth). The
  // socket may be anyone's (keelctl --socket), and copying, dumping or
  // comparing such a value recurses once a level: 200,000 levels overflowed
  // keelctl's stack (security review L2).
  if (jsonNestedTooDeep(line))
    return Status::error("malformed response from " + path_ + ": JSON nested deeper than " +
                         std::to_string(kMaxJsonDepth) + " levels");
  response = json::parse(line, nullptr, false);
  if (response.is_discarded() || !response.is_object() || !response.contains("ok"))
    return Status::error("malformed response from " + path_);
  if (response.contains("id") && response["id"] != json(id) && !response["id"].is_null())
    return Status::error("response from " + path_ + " answers another request");
  return Status::ok();
}

}  // namespace keel::api

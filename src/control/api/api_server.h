// SPDX-License-Identifier: Apache-2.0
// The control socket: newline-delimited JSON over a Unix stream socket
// (protocol in docs/api.md), served on the daemon's io_context.
//
// Robustness (the server must never take the daemon down):
//  - One request at a time per connection: the next line is read only after
//    the previous response is written, so a client that never reads costs
//    one response buffer, never an unbounded queue.
//  - Backpressure on replies: a reply is held until all of it is written,
//    and what all connections hold (unanswered request bytes and unsent
//    reply bytes) is kept under maxBufferedBytes. Past it no further request
//    is run, on any connection, until a reply is written or its connection
//    closes; the waiting connections read nothing meanwhile, so their
//    clients' sends fill the kernel's socket buffers, not keeld. A reply is
//    never cut or dropped for it: the request that crosses the bound is
//    answered whole, however large. Before, each connection held a reply:
//    255 clients that sent service.list at 10,000 reals (~2 MB a reply) and
//    read nothing took keeld from 97 MB to 387 MB (a review's measure).
//  - A line longer than maxLineBytes gets a line_too_long error and the
//    connection is closed (the rest of the line cannot be framed reliably).
//  - At most maxConnections clients. A client that comes when all are taken
//    closes the one that has waited longest for its client (idle between
//    requests, or sending a line slowly), which gets a busy error first; only
//    when every connection is being answered is the newcomer refused with
//    busy. So idle connections cannot lock `config reload` out.
//  - Unfinished request bytes have the same bound: a read that takes the
//    request bytes held past it without a whole line to answer has the
//    connection holding the most request bytes told busy and closed, so
//    many half-sent lines cannot take a line's limit each (waiting would
//    not help: a line that is not whole cannot be run to make room).
//  - Timers close a client that is idle too long, that takes too long to
//    finish a request line, or that does not read its response. A client
//    that shuts its sending side has what it sent answered, then is closed.
//  - A client that has gone (closed or reset its end) has no more of its
//    requests run (on the main socket, a change next in line still is):
//    looked for before each request, and waited for while one waits for
//    room or for the read-only share of the loop, so its connection is
//    closed then and its requests hold up no one's.
//  - Writes use MSG_NOSIGNAL (Asio does on Linux): a client that vanishes
//    mid-reply costs an EPIPE, not a SIGPIPE.
//  - Every handler runs on the io_context thread; no locks.
//
// Every request that can change keeld (Dispatcher::changes) is logged with
// the caller's uid, gid and pid (SO_PEERCRED) and its outcome
// (`api_change`), so a journal says who drained a real; `forbidden`
// refusals at most kForbiddenLogsPerSecond a second. A read-only server
// (readOnly) answers those requests with `forbidden` and serves the rest.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include <boost/asio/io_context.hpp>

#include "common/status.h"
#include "control/api/control_backend.h"

namespace keel::api {

struct ApiServerOptions {
  std::string socketPath = "/run/keel/keel.sock";
  mode_t mode = 0600;
  std::string group;  // empty: the daemon's own group; else chown to it
  size_t maxLineBytes = 1u << 20;
  size_t maxConnections = 256;
  // What the connections may hold, all together: request bytes read but not
  // yet answered, and reply bytes not yet written. Past it no request runs
  // until a reply is out; the one that crosses it may pass it by its reply.
  // Request bytes alone over it, after a read that brought no whole line,
  // shed the connection holding the most; replies never get anyone shed.
  size_t maxBufferedBytes = 32u << 20;
  bool readOnly = false;  // serve only what changes nothing (control.readonly)
  // A read-only server's share of keeld's one loop (LoopBudget): its
  // requests may take this much loop time a second, in bursts of up to
  // readOnlyLoopBurst; past it a connection's next request waits for the
  // refill. 0: no limit.
  std::chrono::milliseconds readOnlyLoopPerSecond{250};
  std::chrono::milliseconds readOnlyLoopBurst{1000};
  std::chrono::milliseconds idleTimeout{std::chrono::minutes(10)};  // between requests
  std::chrono::milliseconds ioTimeout{std::chrono::seconds(30)};    // partial line / unread reply
};

// True if something accepts connections on the Unix socket `path` (keeld
// asks before it touches the data plane: a second keeld must not get that
// far; start() asks again before it replaces a stale socket file).
bool socketIsLive(const std::string& path);

// Why keeld could not serve a control socket at `path`, "" if it can as
// far as the file system tells: the path exists and is not a socket (keeld
// never replaces such a file), or a directory on the way is not one. A
// live socket is fine here (keeld's own, on a reload or config.check):
// socketIsLive() is the start's separate check. A host check of
// control.socket and control.readonly.socket (ConfigOptions), so
// --check-config and a reload refuse such a path with its line, and a start
// refuses it before it touches the data plane.
std::string socketPathProblem(const std::string& path);

// The gid of group `name` (getgrnam_r, its buffer grown for a large group);
// nullopt if the host has no such group. *lookupFailed (if given) is set when
// the lookup itself failed (NSS, LDAP): then nullopt says nothing of the group.
std::optional<gid_t> groupId(const std::string& name, bool* lookupFailed = nullptr);

// The limit on logged `forbidden` refusals (ApiServer::kForbiddenLogsPerSecond
// per socket), apart from the server so its windows can be tested with
// explicit times, as keel_rate_allow (include/keel/rate.h) is. A window of a
// second opens at the first event after the previous window closed; its
// first `perWindow` events are logged, the rest only counted, and the next
// one logged carries that count (the record's `suppressed`). Windows rather
// than keel_rate_allow's bucket: a flood's first refusals all show, where
// keel_rate_burst(10) would let one through.
class LogRateLimit {
 public:
  static constexpr std::chrono::seconds kWindow{1};
  explicit LogRateLimit(uint32_t perWindow) : perWindow_(perWindow) {}
  // An event at `now` (steady clock, not earlier than the one before):
  // nullopt if it is not to be logged (it is counted), else how many were
  // not logged since the last one that was.
  std::optional<uint64_t> admit(std::chrono::steady_clock::time_point now);

 private:
  uint32_t perWindow_;
  std::optional<std::chrono::steady_clock::time_point> windowStart_;  // none before the first event
  uint32_t logged_ = 0;                                               // in the current window
  uint64_t suppressed_ = 0;  // not logged since the last one that was
};

// The loop time a read-only socket's requests may take (ApiServerOptions::
// readOnlyLoopPerSecond): keeld runs every request on its one loop, beside
// the health checks' verdicts and the main socket, and a query of a large
// config (service.list, health.show: ~0.2 s at 10,000 reals) is not cheap,
// so 250 connections sending one at once held the loop ~25 s, and a real
// that died meanwhile kept new flows for as long. A bucket of loop time
// that fills at `perSecond` up to `burst` (full at the start); a request is
// run while it holds any, and what it took is taken out afterwards (it may
// go below zero: the next waits for the refill, its connection reading
// nothing meanwhile). As LogRateLimit, apart from the server, so it can be
// tested with explicit times.
class LoopBudget {
 public:
  using Clock = std::chrono::steady_clock;
  LoopBudget(std::chrono::nanoseconds perSecond, std::chrono::nanoseconds burst)
      : perSecond_(perSecond), burst_(burst), level_(burst) {}
  // Whether a request arriving at `now` (not earlier than the last) may run.
  bool admit(Clock::time_point now);
  // After admit() said no: how long until the bucket holds time again.
  std::chrono::nanoseconds refillIn() const {
    if (perSecond_.count() <= 0 || level_.count() > 0) return {};
    const double s = static_cast<double>(1 - level_.count()) / static_cast<double>(perSecond_.count());
    return std::chrono::nanoseconds(static_cast<int64_t>(s * 1e9) + 1);
  }
  // What a request that ran took of the loop.
  void spend(std::chrono::nanoseconds took) {
    if (perSecond_.count() > 0) level_ -= took;
  }

 private:
  std::chrono::nanoseconds perSecond_, burst_, level_;
  std::optional<Clock::time_point> last_;  // the last refill
};

class ApiServer {
 public:
  ApiServer(boost::asio::io_context& io, ControlBackend& backend, ApiServerOptions options);
  ~ApiServer();
  ApiServer(const ApiServer&) = delete;
  ApiServer& operator=(const ApiServer&) = delete;

  // How often a running server checks that its socket file is still there
  // (and makes it again if it was removed).
  static constexpr std::chrono::seconds kSocketWatchInterval{2};
  // Creates the socket (and its directory if missing), replacing a stale
  // socket file only if nothing listens on it, and starts accepting. Must be
  // called on (or before running) the io_context thread.
  Status start();
  // Closes the listener and every connection and removes the socket file if
  // it is still ours. Idempotent; the destructor calls it.
  void stop();

  size_t connectionCount() const;
  // Request bytes read and not yet answered, all connections (tests).
  size_t bufferedBytes() const;
  // Reply bytes held until their reply is wholly written, all connections
  // (tests): with bufferedBytes(), what maxBufferedBytes bounds.
  size_t replyBytes() const;
  // The memory the connections' input buffers hold, used or not (tests).
  size_t inputCapacity() const;
  // `forbidden` refusals logged a second at most, per socket (the rest are
  // counted into the next record's `suppressed`; LogRateLimit).
  static constexpr uint32_t kForbiddenLogsPerSecond = 10;
  const ApiServerOptions& options() const;

  struct State;  // shared with connections, so late handlers stay safe

 private:
  std::shared_ptr<State> state_;
};

}  // namespace keel::api

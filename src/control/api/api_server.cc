// SPDX-License-Identifier: Apache-2.0
#include "control/api/api_server.h"

#include <grp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <cerrno>
#include <cstring>
#include <deque>
#include <unordered_set>
#include <utility>
#include <vector>

#include "common/file_write.h"
#include "common/json_depth.h"
#include "common/logging.h"
#include "control/api/dispatcher.h"

namespace keel::api {

namespace asio = boost::asio;
using Stream = asio::local::stream_protocol;
using boost::system::error_code;

class Connection;

namespace {

// Whether a request line names a method that changes keeld
// (Dispatcher::changes). Only asked for the line of a client that has gone
// (Connection::runsWithoutItsClient), so the line is parsed twice only then.
// A line that names none is answered with an error, which changes nothing.
bool namesAChange(std::string_view line) {
  if (jsonNestedTooDeep(line)) return false;
  try {
    const nlohmann::json request = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!request.is_object()) return false;
    const auto method = request.find("method");
    return method != request.end() && method->is_string() && Dispatcher::changes(method->get<std::string>());
  } catch (const std::exception&) {
    return false;
  }
}

}  // namespace

struct ApiServer::State {
  State(asio::io_context& io, ControlBackend& b, ApiServerOptions o)
      : io(io), backend(b), dispatcher(b, o.readOnly), options(std::move(o)), acceptor(io), retryTimer(io), watchTimer(io) {}

  asio::io_context& io;
  ControlBackend& backend;
  Dispatcher dispatcher;
  ApiServerOptions options;
  Stream::acceptor acceptor;
  asio::steady_timer retryTimer;  // accept back-off after EMFILE and the like
  asio::steady_timer watchTimer;  // watchSocket(): the socket file still there
  gid_t gid = static_cast<gid_t>(-1);  // the group's, or -1: keeld's own
  bool replacedLogged = false;         // watchSocket() found another file at the path
  std::unordered_set<std::shared_ptr<Connection>> connections;
  size_t bufferedBytes = 0;  // the connections' inbuf_ sizes, summed (Connection::account)
  size_t replyBytes = 0;     // their outbuf_ sizes: replies not yet wholly written (the same)
  size_t inputCapacity = 0;  // their inbuf_ allocations, summed (the same)
  // Connections with a request to run that wait for room under
  // maxBufferedBytes (Connection::waitForRoom), first come first; one
  // closed meanwhile is skipped.
  std::deque<std::weak_ptr<Connection>> waitingForRoom;
  bool resumePosted = false;  // Connection::scheduleResume's handler is queued on the loop
  size_t heldBytes() const { return bufferedBytes + replyBytes; }
  // Whether a request may run now and add its reply. While no reply is being
  // written it always may: only request bytes are held then, which the shed
  // bounds, and waiting would free nothing, so it would wait for ever. Else
  // while what is held is under the bound: the request that crosses it is
  // answered whole (a reply is never cut), so the held bytes stay under
  // maxBufferedBytes plus one reply (plus conn.list answers, counted when
  // they come: their requests ran with room, and keeld reads the table for
  // at most 4 at a time, the rest answered try_later).
  bool roomForAReply() const { return replyBytes == 0 || heldBytes() < options.maxBufferedBytes; }
  // The rate limit of logged `forbidden` refusals (Connection::audit).
  LogRateLimit forbiddenLogs{ApiServer::kForbiddenLogsPerSecond};
  // A read-only server's share of the loop (Connection::process).
  LoopBudget loopBudget{options.readOnly ? options.readOnlyLoopPerSecond : std::chrono::milliseconds(0),
                        options.readOnlyLoopBurst};
  bool running = false;
  bool shutdownRequested = false;
  dev_t socketDev = 0;  // identity of the socket file we created
  ino_t socketIno = 0;
};

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(std::shared_ptr<ApiServer::State> state, Stream::socket socket)
      : state_(std::move(state)), socket_(std::move(socket)), timer_(state_->io), budgetTimer_(state_->io) {
    socklen_t len = sizeof peer_;
    if (::getsockopt(socket_.native_handle(), SOL_SOCKET, SO_PEERCRED, &peer_, &len) != 0) peer_ = {-1, -1u, -1u};
  }

  void start() { process(); }

  // Whether the connection waits for its client (a read is pending: idle
  // between requests, or partway through a line), since when (its connect
  // or its last answer: bytes of an unfinished line do not count, so a
  // client cannot stay fresh by trickling), and how many request bytes it
  // holds: what the server weighs when it must close one.
  bool waiting() const { return waiting_ && !closed_; }
  std::chrono::steady_clock::time_point waitingSince() const { return waitingSince_; }
  size_t buffered() const { return counted_; }

  // Closed by the server to make room: a busy error first, best effort and
  // without waiting, unless an answer is being written (the error would
  // land inside it).
  void evict(const std::string& why) {
    if (closed_) return;
    if (outbuf_.empty()) {
      const std::string msg =
          serializeResponse(Dispatcher::errorResponse(nullptr, ApiError{code::kBusy, why, "", {}}));
      ::send(socket_.native_handle(), msg.data(), msg.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    }
    close();
  }

  void close() {
    if (closed_) return;
    closed_ = true;
    waiting_ = false;
    std::string().swap(inbuf_);
    account();
    error_code ignored;
    timer_.cancel();
    budgetTimer_.cancel();
    socket_.shutdown(Stream::socket::shutdown_both, ignored);
    socket_.close(ignored);
    state_->connections.erase(shared_from_this());
  }

 private:
  // Frames as many complete lines as the buffer holds, one at a time.
  void process() {
    stopWatching();
    if (closed_ || !state_->running) return close();
    const size_t limit = state_->options.maxLineBytes;
    for (;;) {
      size_t nl = inbuf_.find('\n', scanned_);
      if (nl == std::string::npos) {
        scanned_ = inbuf_.size();
        if (inbuf_.size() > limit) return tooLong();
        break;
      }
      if (nl > limit) return tooLong();
      std::string_view line(inbuf_.data(), nl);
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      bool blank = line.find_first_not_of(" \t") == std::string_view::npos;
      if (blank) {
        // Empty lines are keep-alives (and what `nc` sends by habit).
        consume(nl + 1);
        continue;
      }
      // A client that has gone reads no answer: its requests are not run
      // (clientGone(), runsWithoutItsClient()). Asked before each one, as a
      // client may pipeline many and leave, and its requests wait their
      // turn (below) or are run one by one, as their answers are written;
      // each write into a closed connection fails, but only after its
      // request has run. Requests that wait are watched (watchClient()).
      if (clientGone() && !runsWithoutItsClient(line)) return close();
      // daemon.shutdown was answered (on any connection): keeld is stopping,
      // and a request after it (pipelined behind it, say) must not run
      // unseen by the stop. busy: nothing ran; the next keeld takes it.
      if (state_->shutdownRequested) {
        consume(nl + 1);
        return send(serializeResponse(Dispatcher::errorResponse(
                        nullptr, ApiError{code::kBusy,
                                          "server: keeld is shutting down (daemon.shutdown): this request was not "
                                          "run; send it to the next keeld",
                                          "", {}})),
                    true, std::nullopt);
      }
      // Backpressure on replies (ApiServerOptions::maxBufferedBytes): with
      // no room for another reply, or connections waiting for it before
      // this one, the line stays in the buffer, unparsed, and nothing more is
      // read from this connection until its turn comes (waitForRoom).
      if (!std::exchange(admitted_, false) && !(state_->waitingForRoom.empty() && state_->roomForAReply()))
        return waitForRoom();
      // The read-only socket's requests, run and answered, within its share
      // of the loop; past it the connection waits, reading nothing, until
      // the share refills (LoopBudget): no work at all meanwhile.
      const auto began = LoopBudget::Clock::now();
      LoopBudget& budget = state_->loopBudget;
      if (!budget.admit(began)) return waitForBudget(budget.refillIn());
      DispatchOutcome out = state_->dispatcher.handleLine(line);
      audit(out);
      consume(nl + 1);
      if (out.later) {
        budget.spend(LoopBudget::Clock::now() - began);
        return later(std::move(out.later));
      }
      std::string reply = serializeResponse(out.response);
      budget.spend(LoopBudget::Clock::now() - began);
      return send(std::move(reply), false, out.shutdownDetach);
    }
    // Every line of a client that has shut its sending side is answered:
    // closed, not read again. A read after the EOF need not end: Asio
    // marks a socket whose read gave 0 bytes as drained, and waits for the
    // next readiness edge from epoll, which a peer that has shut down
    // never sends (the connection was held to the idle timeout).
    if (inputEnded_) return close();
    read();
  }

  void read() {
    // Between requests the idle timeout, from now. A line begun gets
    // ioTimeout from its first byte to its newline, not from each read: a
    // client that trickles a byte now and then must not hold the
    // connection (and its buffered bytes) forever.
    if (inbuf_.empty()) {
      lineDeadline_.reset();
      arm(state_->options.idleTimeout);
    } else {
      if (!lineDeadline_) lineDeadline_ = asio::steady_timer::clock_type::now() + state_->options.ioTimeout;
      armUntil(*lineDeadline_);
    }
    waiting_ = true;
    auto self = shared_from_this();
    socket_.async_read_some(asio::buffer(readBuf_), [self](const error_code& ec, size_t n) {
      if (self->closed_) return;
      self->waiting_ = false;
      if (ec == asio::error::eof) {
        // The client shut its sending side (`printf '{...}' | socat -
        // UNIX-CONNECT:...`, or it closed): what it sent is answered, then
        // the connection closes (process(), inputEnded_). Its last line may
        // end at its end of input rather than a newline: answered like any
        // line (a JSON object delimits itself, so a cut-off one is no
        // request).
        self->inputEnded_ = true;
        if (self->inbuf_.find_first_not_of(" \t\r\n") != std::string::npos) {
          self->inbuf_ += '\n';
          self->account();
        }
        return self->process();
      }
      if (ec) return self->close();  // reset, or cancelled by stop()
      self->inbuf_.append(self->readBuf_.data(), n);
      self->account();
      // Request bytes over the bound with no whole line to answer (one
      // would be framed and its bytes released first, or wait for room for
      // its reply): shed. Request bytes alone: replies are bounded by the
      // requests they hold back (roomForAReply), and shedding a request for
      // a reply's bytes would close well-behaved clients (a request that
      // came in two reads, or one waiting its turn) and free nothing.
      if (self->state_->bufferedBytes > self->state_->options.maxBufferedBytes &&
          self->inbuf_.find('\n', self->scanned_) == std::string::npos && self->shedLargest())
        return;
      self->process();
    });
  }

  // A request that can change keeld, with who sent it and how it ended
  // (a later answer is never one: conn.list changes nothing).
  // Refusals for `forbidden` (the read-only socket, open to users who may
  // not change keeld) are logged at most kForbiddenLogsPerSecond a second
  // per socket, the rest counted into the next one's `suppressed`: a flood
  // of them must not fill the journal, nor trip its rate limit and so hide
  // the records of real changes. Every other record is kept.
  void audit(const DispatchOutcome& out) const {
    if (out.later) return;  // conn.list, which changes nothing
    const nlohmann::json& r = out.response;
    const bool ok = r.value("ok", false);
    std::string result = "ok";
    if (!ok) {
      result = "failed";
      if (auto e = r.find("error"); e != r.end() && e->is_object()) result = e->value("code", result);
    }
    if (!Dispatcher::changes(out.method) && result != code::kForbidden) return;
    ApiServer::State& st = *state_;
    uint64_t suppressed = 0;
    if (result == code::kForbidden) {
      const std::optional<uint64_t> notLogged = st.forbiddenLogs.admit(std::chrono::steady_clock::now());
      if (!notLogged) return;
      suppressed = *notLogged;
    }
    LogRecord log("api_change");
    log.add("method", out.method).add("uid", peer_.uid).add("gid", peer_.gid).add("pid", peer_.pid);
    log.add("socket", st.options.socketPath).add("result", result);
    if (suppressed) log.add("suppressed", suppressed);
    ok ? logInfo(log) : logWarn(log);
  }

  // Keeps State::bufferedBytes equal to the sum of the open connections'
  // inbuf_ sizes, State::inputCapacity to that of their allocations, and
  // State::replyBytes to that of the outbuf_ sizes of every connection
  // whose write has not ended (a closed one's too, until its write handler
  // runs); called after every change to inbuf_ or outbuf_. Bytes released
  // may make room for a waiting request.
  void account() {
    ApiServer::State& st = *state_;
    const size_t heldBefore = st.heldBytes();
    st.bufferedBytes = st.bufferedBytes - counted_ + inbuf_.size();
    counted_ = inbuf_.size();
    st.inputCapacity = st.inputCapacity - countedCapacity_ + inbuf_.capacity();
    countedCapacity_ = inbuf_.capacity();
    st.replyBytes = st.replyBytes - countedReply_ + outbuf_.size();
    countedReply_ = outbuf_.size();
    if (st.heldBytes() < heldBefore) scheduleResume(state_);
  }

  // Over maxBufferedBytes: closes the connection that holds the most
  // unanswered request bytes. Returns whether that was this one.
  bool shedLargest() {
    std::shared_ptr<Connection> largest;
    for (const auto& c : state_->connections)
      if (!largest || c->buffered() > largest->buffered()) largest = c;
    if (!largest) return false;
    const bool self = largest.get() == this;
    largest->evict("server: unanswered requests over " + std::to_string(state_->options.maxBufferedBytes) +
                   " bytes on all connections; closing the connection that holds the most");
    return self;
  }

  // No room for another reply (State::roomForAReply), or connections
  // waiting for it first: the framed line waits in the buffer, and nothing
  // more is read, until scheduleResume() gives this connection its turn. As
  // for later(), no client timer runs meanwhile: the wait is for other
  // clients to read their replies, each of which is closed if it has not
  // read its reply within ioTimeout, so the wait ends. A client that goes
  // meanwhile is seen at once (watchClient()).
  void waitForRoom() {
    timer_.expires_at(asio::steady_timer::time_point::max());
    state_->waitingForRoom.push_back(weak_from_this());
    watchClient();
    scheduleResume(state_);  // room already: the connections ahead of this one have their turn queued
  }

  // Whether the client has gone: it closed its end or reset it, so it will
  // neither send nor read another byte (POLLHUP: both directions shut;
  // POLLERR: reset). One that only shut its sending side (printf | socat)
  // has not: it reads its answers. Level-triggered, and seen while
  // requests it sent are still unread.
  bool clientGone() {
    pollfd p{socket_.native_handle(), 0, 0};  // POLLHUP and POLLERR are reported unasked
    return ::poll(&p, 1, 0) > 0 && (p.revents & (POLLHUP | POLLERR | POLLNVAL)) != 0;
  }

  // Whether `line`, the next request of a client that has gone, is run
  // all the same: on the main socket, one that changes keeld. Its client
  // sent it whole and sees its effect, not its answer (`socat -u` sends a
  // request and closes), and it was run before keeld looked for a client's
  // end; its answer's write fails, which closes the connection, so nothing
  // after it runs. The read-only socket runs no change (forbidden), so it
  // drops everything of a gone client.
  bool runsWithoutItsClient(std::string_view line) const {
    return !state_->options.readOnly && namesAChange(line);
  }

  // While a request waits (waitForRoom, waitForBudget) nothing is read, so
  // a client that leaves would be seen only when its request ran and its
  // answer's write failed: a read-only client that sent many queries and
  // left had each of its connections run one when the loop's share came
  // round, ahead of everyone else, and a query from another client waited
  // up to 100 s behind them (security review M1). The socket's error
  // condition is waited for instead: Linux reports EPOLLHUP when the
  // client has closed (or shut both directions) and EPOLLERR on a reset,
  // and more requests arriving do not wake it. Then the connection is
  // closed, releasing its bytes and its place, unless its waiting request
  // runs without its client. process() stops the wait (the connection
  // reads or writes again); nothing else is pending on the socket then, so
  // cancel() ends only the wait: left pending, it would fire, stale, when
  // the client leaves, and while it is queued Asio tries no read at once
  // but hands each to epoll. The wait is armed only after process() found
  // the client there: an end that comes in between is reported to the wait
  // (Asio re-registers the socket with epoll as it queues the wait, and
  // epoll then reports what is pending).
  void watchClient() {
    if (watching_) return;
    watching_ = true;
    auto self = shared_from_this();
    socket_.async_wait(Stream::socket::wait_error, [self, watch = ++watchCount_](const error_code& ec) {
      if (ec || self->closed_ || watch != self->watchCount_ || !self->watching_) return;
      self->watching_ = false;
      if (!self->clientGone()) return self->watchClient();  // not expected: the client is there
      const std::string_view waiting(self->inbuf_.data(), std::min(self->inbuf_.find('\n'), self->inbuf_.size()));
      if (!self->runsWithoutItsClient(waiting)) self->close();
    });
  }
  void stopWatching() {
    if (!std::exchange(watching_, false)) return;
    ++watchCount_;  // a wait that has ended but whose handler has not run is stale now
    error_code ignored;
    socket_.cancel(ignored);
  }

  // Runs the waiting connections' requests, first come first, while there
  // is room for their replies. Posted rather than run at once: account()
  // calls it from inside other connections' handlers (a write's end, a
  // close), which must not run a request of another connection midway.
  static void scheduleResume(const std::shared_ptr<ApiServer::State>& st) {
    if (st->resumePosted || st->waitingForRoom.empty() || !st->roomForAReply()) return;
    st->resumePosted = true;
    asio::post(st->io, [st] {
      st->resumePosted = false;
      while (st->running && !st->waitingForRoom.empty() && st->roomForAReply()) {
        std::shared_ptr<Connection> c = st->waitingForRoom.front().lock();
        st->waitingForRoom.pop_front();
        if (!c || c->closed_) continue;
        c->admitted_ = true;  // its turn: past the queue, into the request
        c->process();         // runs it, adding its reply, or waits for the loop budget
      }
    });
  }

  // A response the backend gives later (DispatchOutcome::later): no timer
  // runs meanwhile (the backend always answers; the wait is its work, not
  // the client's), and nothing more is read, so the next request waits for
  // this answer (a client that leaves meanwhile is seen only when the
  // answer's write fails). A connection closed meanwhile (the server
  // stopping) drops it.
  void later(std::function<void(DispatchOutcome::Send)> start) {
    // Not cancel(): an expiry already queued would still run, and, seeing
    // its time past, close the connection. Pushed out of reach, the queued
    // handler finds the expiry ahead and returns.
    timer_.expires_at(asio::steady_timer::time_point::max());
    auto self = shared_from_this();
    // Called on any thread (the walk's, in keeld): serialised there, the
    // write posted to the loop, which owns the connection.
    start([self](nlohmann::json response) {
      asio::post(self->state_->io, [self, text = serializeResponse(response)]() mutable {
        if (self->closed_) return;
        self->send(std::move(text), false, std::nullopt);
      });
    });
  }

  // Over the read-only socket's share of the loop: the line stays in the
  // buffer, nothing more is read, and process() runs again once the share
  // holds time. As for later(), no client timer runs meanwhile: the wait is
  // keeld's. A client that goes meanwhile is seen at once (watchClient()).
  void waitForBudget(std::chrono::nanoseconds wait) {
    timer_.expires_at(asio::steady_timer::time_point::max());
    watchClient();
    budgetTimer_.expires_after(wait);
    auto self = shared_from_this();
    budgetTimer_.async_wait([self](const error_code& ec) {
      if (ec == asio::error::operation_aborted || self->closed_) return;
      self->process();
    });
  }

  void tooLong() {
    ApiError e{code::kLineTooLong,
               "request: line longer than " + std::to_string(state_->options.maxLineBytes) +
                   " bytes; closing the connection",
               "", {}};
    inbuf_.clear();
    inbuf_.shrink_to_fit();
    account();
    send(serializeResponse(Dispatcher::errorResponse(nullptr, e)), true, std::nullopt);
  }

  void send(std::string text, bool closeAfter, std::optional<bool> shutdownDetach) {
    outbuf_ = std::move(text);
    // The reply's string grew by doubling as it was serialised, so its
    // allocation may be up to twice its size, held as long as its client
    // takes to read it. A copy of what was just serialised is cheap beside
    // the serialising, and makes the bytes counted the bytes held.
    outbuf_.shrink_to_fit();
    account();
    arm(state_->options.ioTimeout);
    auto self = shared_from_this();
    asio::async_write(socket_, asio::buffer(outbuf_),
                      [self, closeAfter, shutdownDetach](const error_code& ec, size_t) {
                        std::string().swap(self->outbuf_);  // its memory too (consume())
                        self->account();  // which may make room for a waiting request
                        self->waitingSince_ = std::chrono::steady_clock::now();
                        // The reply is out (or the client is gone): only now
                        // may the daemon stop, so `daemon stop` sees its ack.
                        if (shutdownDetach && !self->state_->shutdownRequested) {
                          self->state_->shutdownRequested = true;
                          self->state_->backend.shutdown(*shutdownDetach);
                        }
                        if (self->closed_) return;
                        if (ec || closeAfter) return self->close();
                        self->process();
                      });
  }

  // Drops a framed line (and its newline) from the input. A line's
  // deadline ends with it. A buffer left empty gives its memory back when
  // it had grown past what ordinary requests need: a long request would
  // otherwise stay allocated for the connection's life, unseen by
  // bufferedBytes() and its bound.
  void consume(size_t n) {
    inbuf_.erase(0, n);
    scanned_ = 0;
    lineDeadline_.reset();
    if (inbuf_.empty() && inbuf_.capacity() > kKeptCapacity) std::string().swap(inbuf_);
    account();
  }

  void arm(std::chrono::milliseconds timeout) { armUntil(asio::steady_timer::clock_type::now() + timeout); }
  void armUntil(asio::steady_timer::time_point deadline) {
    timer_.expires_at(deadline);
    auto self = shared_from_this();
    timer_.async_wait([self](const error_code& ec) {
      if (ec == asio::error::operation_aborted || self->closed_) return;
      // A re-arm may race with an expiry already queued: trust the clock.
      if (self->timer_.expiry() > asio::steady_timer::clock_type::now()) return;
      self->close();
    });
  }

  std::shared_ptr<ApiServer::State> state_;
  Stream::socket socket_;
  asio::steady_timer timer_;
  asio::steady_timer budgetTimer_;  // waitForBudget()
  std::array<char, 16 * 1024> readBuf_;  // x maxConnections: keep it small
  std::string inbuf_;
  // When the line being received must be complete (set at its first read,
  // cleared when a line is consumed); none between requests.
  std::optional<asio::steady_timer::time_point> lineDeadline_;
  static constexpr size_t kKeptCapacity = 64 * 1024;  // consume()
  size_t scanned_ = 0;  // bytes of inbuf_ already known to hold no '\n'
  size_t counted_ = 0;  // inbuf_'s size as State::bufferedBytes counts it
  size_t countedCapacity_ = 0;  // inbuf_'s capacity as State::inputCapacity counts it
  size_t countedReply_ = 0;     // outbuf_'s size as State::replyBytes counts it
  bool admitted_ = false;       // given its turn by scheduleResume(): run the next request
  std::string outbuf_;
  bool closed_ = false;
  bool waiting_ = false;  // a read is pending
  bool inputEnded_ = false;  // a read gave EOF: the client sends nothing more (read())
  bool watching_ = false;    // a wait for the client's end is pending (watchClient())
  uint64_t watchCount_ = 0;  // the current wait's number: a stale one's handler does nothing
  ucred peer_{};          // the client (SO_PEERCRED, at connect); -1 if unknown
  std::chrono::steady_clock::time_point waitingSince_ = std::chrono::steady_clock::now();  // connect, or last answer
};

namespace {

void acceptNext(const std::shared_ptr<ApiServer::State>& st);

void refuseBusy(Stream::socket& s, size_t limit) {
  // Best effort and non-blocking: the client learns why, the loop never waits.
  std::string msg = serializeResponse(Dispatcher::errorResponse(
      nullptr, ApiError{code::kBusy,
                        "server: too many connections (limit " + std::to_string(limit) +
                            ", every one busy with a request: being answered, or its answer not yet read by "
                            "its client)",
                        "", {}}));
  ::send(s.native_handle(), msg.data(), msg.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  error_code ignored;
  s.close(ignored);
}

void acceptNext(const std::shared_ptr<ApiServer::State>& st) {
  if (!st->running) return;
  st->acceptor.async_accept([st](const error_code& ec, Stream::socket socket) {
    if (!st->running || ec == asio::error::operation_aborted) return;  // stopped, or the listener replaced
    if (ec) {
      // EMFILE/ENFILE/ENOBUFS: back off instead of spinning on the error.
      st->retryTimer.expires_after(std::chrono::milliseconds(100));
      st->retryTimer.async_wait([st](const error_code& e) {
        if (!e) acceptNext(st);
      });
      return;
    }
    // Full: the connection that has waited longest for its client makes
    // room; if every one is being answered, the newcomer is refused.
    const bool full = st->connections.size() >= st->options.maxConnections;
    std::shared_ptr<Connection> oldest;
    if (full)
      for (const auto& c : st->connections)
        if (c->waiting() && (!oldest || c->waitingSince() < oldest->waitingSince())) oldest = c;
    if (full && !oldest) {
      refuseBusy(socket, st->options.maxConnections);
    } else {
      if (oldest)
        oldest->evict("server: connection limit " + std::to_string(st->options.maxConnections) +
                      " reached; closing the connection idle longest");
      auto c = std::make_shared<Connection>(st, std::move(socket));
      st->connections.insert(c);
      c->start();
    }
    acceptNext(st);
  });
}

}  // namespace

bool LoopBudget::admit(Clock::time_point now) {
  if (perSecond_.count() <= 0) return true;  // no limit
  if (last_ && now > *last_) {
    // In double: a long quiet spell times perSecond would overflow.
    const double refill = std::chrono::duration<double>(now - *last_).count() * static_cast<double>(perSecond_.count());
    level_ = refill >= static_cast<double>((burst_ - level_).count())
                 ? burst_
                 : level_ + std::chrono::nanoseconds(static_cast<int64_t>(refill));
  }
  if (!last_ || now > *last_) last_ = now;
  return level_.count() > 0;
}

std::optional<uint64_t> LogRateLimit::admit(std::chrono::steady_clock::time_point now) {
  if (!windowStart_ || now - *windowStart_ >= kWindow) {
    windowStart_ = now;
    logged_ = 0;
  }
  if (logged_ >= perWindow_) {
    ++suppressed_;
    return std::nullopt;
  }
  ++logged_;
  return std::exchange(suppressed_, 0);
}

bool socketIsLive(const std::string& path) {
  if (path.empty() || path.size() >= sizeof(sockaddr_un::sun_path)) return false;
  // Non-blocking: a listener whose backlog is full would block connect();
  // it is live all the same (EAGAIN).
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), path.size());
  const bool live = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 || errno == EAGAIN;
  ::close(fd);
  return live;
}

std::string socketPathProblem(const std::string& path) {
  struct stat ss{};
  if (::lstat(path.c_str(), &ss) == 0)
    return S_ISSOCK(ss.st_mode) ? "" : "exists and is not a socket (keeld does not replace it)";
  if (errno != ENOTDIR) return "";  // absent (made at start), or not ours to read (EACCES): no news
  // Something on the way is a file: the first such.
  for (size_t slash = path.find('/', 1); slash != std::string::npos; slash = path.find('/', slash + 1)) {
    const std::string dir = path.substr(0, slash);
    if (::stat(dir.c_str(), &ss) == 0 && !S_ISDIR(ss.st_mode)) return dir + " is not a directory";
  }
  return "a directory on its path is not a directory";
}

std::optional<gid_t> groupId(const std::string& name, bool* lookupFailed) {
  if (lookupFailed) *lookupFailed = false;
  for (size_t size = 16384; size <= (16u << 20); size *= 4) {
    std::vector<char> buf(size);
    group g{}, *found = nullptr;
    const int rc = getgrnam_r(name.c_str(), &g, buf.data(), buf.size(), &found);
    if (rc == ERANGE) continue;
    if (rc != 0 && lookupFailed) *lookupFailed = true;
    if (rc != 0 || !found) return std::nullopt;
    return found->gr_gid;
  }
  if (lookupFailed) *lookupFailed = true;
  return std::nullopt;
}

namespace {

// The socket's directory (/run/keel) may not exist yet on a fresh boot, or
// any more after an `rm -r`: the whole path is made, for either socket
// (docs/api.md).
Status makeSocketDirectory(const std::string& path, const std::string& where) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos || slash == 0) return Status::ok();
  const std::string dir = path.substr(0, slash);
  struct stat ds{};
  if (::stat(dir.c_str(), &ds) != 0) {
    if (errno != ENOENT) return Status::error(where + "cannot create directory " + dir + ": " + errnoText(errno));
    if (Status s = makeDirectories(dir, 0755); !s)
      return Status::error(where + "cannot create directory " + dir + ": " + s.message());
  } else if (!S_ISDIR(ds.st_mode)) {
    return Status::error(where + dir + " is not a directory");
  }
  return Status::ok();
}

// Creates the socket file at the options' path and listens on it: bound
// under a umask that never lets it exist with wider permissions than asked,
// then its mode and group; its identity recorded (stop() removes only
// that file). On error nothing is left behind.
Status listenOn(ApiServer::State& st, const std::string& where) {
  const std::string& path = st.options.socketPath;
  error_code ec;
  st.acceptor.open(Stream(), ec);
  if (ec) return Status::error(where + "socket: " + ec.message());
  mode_t old = ::umask(0777 & ~st.options.mode);
  st.acceptor.bind(Stream::endpoint(path), ec);
  ::umask(old);
  if (ec) {
    error_code ignored;
    st.acceptor.close(ignored);
    return Status::error(where + "bind: " + ec.message());
  }
  auto fail = [&](const std::string& what) {
    error_code ignored;
    st.acceptor.close(ignored);
    ::unlink(path.c_str());
    return Status::error(where + what);
  };
  if (::chmod(path.c_str(), st.options.mode) != 0) return fail("chmod: " + errnoText(errno));
  if (st.gid != static_cast<gid_t>(-1) && ::chown(path.c_str(), static_cast<uid_t>(-1), st.gid) != 0)
    return fail("chown to group " + st.options.group + ": " + errnoText(errno));
  st.acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return fail("listen: " + ec.message());
  struct stat ss{};
  if (::lstat(path.c_str(), &ss) == 0) {
    st.socketDev = ss.st_dev;
    st.socketIno = ss.st_ino;
  }
  return Status::ok();
}

// The socket file removed under a running keeld (a cleanup script, an
// `rm -r /run/keel`) locked every client out until a restart, silently
// (fault review F10): every kSocketWatchInterval the path is looked at, and
// a socket file gone is made again (`control_socket_recreated`); its
// connections meanwhile are untouched. Another file at the path is left
// alone (logged once, `control_socket_replaced`).
void watchSocket(const std::shared_ptr<ApiServer::State>& st) {
  st->watchTimer.expires_after(ApiServer::kSocketWatchInterval);
  st->watchTimer.async_wait([st](const error_code& ec) {
    if (ec || !st->running) return;
    const std::string& path = st->options.socketPath;
    struct stat ss{};
    if (::lstat(path.c_str(), &ss) == 0) {
      const bool ours = ss.st_dev == st->socketDev && ss.st_ino == st->socketIno;
      if (!ours && !st->replacedLogged)
        logWarn(LogRecord("control_socket_replaced")
                    .add("socket", path)
                    .add("detail", "another file is at the control socket's path; keeld leaves it and serves the "
                                   "connections it has; restart keeld to serve the path again"));
      st->replacedLogged = !ours;
    } else if (errno == ENOENT) {
      error_code ignored;
      st->acceptor.close(ignored);  // its pending accept ends with operation_aborted
      st->retryTimer.cancel();      // an accept back-off's retry: acceptNext below is the one loop
      LogRecord r("control_socket_recreated");
      r.add("socket", path);
      const std::string where = "api.socket " + path + ": ";
      Status s = makeSocketDirectory(path, where);
      if (s) s = listenOn(*st, where);
      if (!s) {
        logError(r.add("error", s.message()).add("detail", "tried again in " +
                                                        std::to_string(ApiServer::kSocketWatchInterval.count()) +
                                                        " s"));
      } else {
        logWarn(r.add("detail", "the socket file was removed under keeld; made again"));
        acceptNext(st);
      }
    }
    watchSocket(st);
  });
}

}  // namespace

ApiServer::ApiServer(asio::io_context& io, ControlBackend& backend, ApiServerOptions options)
    : state_(std::make_shared<State>(io, backend, std::move(options))) {}

ApiServer::~ApiServer() { stop(); }

size_t ApiServer::connectionCount() const { return state_->connections.size(); }

size_t ApiServer::bufferedBytes() const { return state_->bufferedBytes; }

size_t ApiServer::replyBytes() const { return state_->replyBytes; }

size_t ApiServer::inputCapacity() const { return state_->inputCapacity; }

const ApiServerOptions& ApiServer::options() const { return state_->options; }

Status ApiServer::start() {
  State& st = *state_;
  const std::string& path = st.options.socketPath;
  const std::string where = "api.socket " + path + ": ";
  if (st.running) return Status::error(where + "already started");
  if (path.empty() || path.size() >= sizeof(sockaddr_un::sun_path))
    return Status::error(where + "path must be 1.." + std::to_string(sizeof(sockaddr_un::sun_path) - 1) +
                         " bytes");

  if (!st.options.group.empty()) {
    const std::optional<gid_t> id = groupId(st.options.group);
    if (!id) return Status::error(where + "group " + st.options.group + " does not exist");
    st.gid = *id;
  }

  if (Status s = makeSocketDirectory(path, where); !s) return s;

  if (std::string why = socketPathProblem(path); !why.empty()) return Status::error(where + why);
  struct stat ss{};
  if (::lstat(path.c_str(), &ss) == 0) {
    if (socketIsLive(path))
      return Status::error(where + "another process is serving it (is keeld already running?)");
    // Stale, left by a daemon that died. A file that cannot be removed (a
    // read-only directory) said "bind: address already in use", which
    // points at a second keeld (fault review F11).
    if (::unlink(path.c_str()) != 0)
      return Status::error(where + "cannot remove the stale socket file: " + errnoText(errno));
  }

  if (Status s = listenOn(st, where); !s) return s;
  st.running = true;
  acceptNext(state_);
  watchSocket(state_);
  return Status::ok();
}

void ApiServer::stop() {
  State& st = *state_;
  if (!st.running) return;
  st.running = false;
  error_code ignored;
  st.acceptor.close(ignored);
  st.retryTimer.cancel();
  st.watchTimer.cancel();
  auto conns = st.connections;  // close() erases from the set
  for (auto& c : conns) c->close();
  st.connections.clear();
  // Unlink only the file we created: a newer daemon may own the path now.
  struct stat ss{};
  const std::string& path = st.options.socketPath;
  if (::lstat(path.c_str(), &ss) == 0 && ss.st_dev == st.socketDev && ss.st_ino == st.socketIno)
    ::unlink(path.c_str());
}

}  // namespace keel::api

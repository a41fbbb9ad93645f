// SPDX-License-Identifier: Apache-2.0
#include "control/health/health_checker.h"

#include <pthread.h>
#include <time.h>

#include <algorithm>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include "control/health/probe.h"

namespace keel {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;
using health_detail::Probe;
using health_detail::ProbeConfig;

struct HealthChecker::Entry {
  Entry(asio::io_context& checkIo, HealthTargetId i, HealthTarget t, bool initiallyUp)
      : id(i), target(std::move(t)), state(initiallyUp, target.spec.rise, target.spec.fall), timer(checkIo) {}

  const HealthTargetId id;

  // Under the checker's mu_.
  HealthTarget target;
  std::shared_ptr<const ProbeConfig> config;
  HealthState state;
  // Bumped on update/remove: the check thread's handlers of an older
  // generation drop their results.
  uint64_t generation = 0;
  bool removed = false;
  bool checked = false;
  HealthResult last;
  std::chrono::system_clock::time_point lastCheck;
  std::chrono::system_clock::time_point lastChange;
  std::string changeReason;
  std::chrono::microseconds lastDuration{0};
  uint64_t checks = 0;
  uint64_t failures = 0;
  uint64_t notRun = 0;
  uint32_t notRunRun = 0;  // not-run results in a row (HealthResult::local)
  // Up, or down confirmed (setOnConfirmedDown), since added or updated.
  bool confirmed = false;
  uint64_t transitions = 0;
  std::array<uint64_t, kHealthDurationBuckets.size() + 1> durationBuckets{};
  double durationSumSeconds = 0;
  // The schedule (HealthStatus::nextDue, lastDue, lastStart): written by
  // the check thread under the lock, read by status(). checkStart (when
  // the latest check started) the check thread, its writer, also reads
  // without the lock (onResult).
  Clock::time_point nextDue;
  Clock::time_point lastDue;
  Clock::time_point checkStart;

  // The check thread's alone.
  asio::steady_timer timer;
  std::shared_ptr<Probe> probe;  // the run in flight, if any
  // The first check of this (re)start has run; the next is then put at a
  // random phase of the interval (scheduleFirst).
  bool phased = false;
};

struct HealthChecker::Change {
  HealthTarget target;
  bool up = false;
  std::string reason;
  bool confirmed = false;  // no transition: down confirmed (onConfirmedDown_)
};

namespace {

std::shared_ptr<Probe> makeProbe(asio::io_context& io, std::shared_ptr<const ProbeConfig> config) {
  switch (config->spec.type) {
    case HealthCheckSpec::Type::Tcp: return health_detail::makeTcpProbe(io, std::move(config));
    case HealthCheckSpec::Type::Http: return health_detail::makeHttpProbe(io, std::move(config));
    case HealthCheckSpec::Type::Udp: return health_detail::makeUdpProbe(io, std::move(config));
    case HealthCheckSpec::Type::None: break;
  }
  return nullptr;
}

}  // namespace

std::string transitionReason(bool ok, uint32_t run, const std::string& result) {
  std::string runs = std::to_string(run) + (run == 1 ? "" : " consecutive") +
                     (ok ? (run == 1 ? " success" : " successes") : (run == 1 ? " failure" : " failures"));
  return result.empty() ? runs : runs + ": " + result;
}

HealthChecker::HealthChecker(asio::io_context& owner, Callback onChange)
    : owner_(owner),
      onChange_(std::move(onChange)),
      checkIo_(std::make_unique<asio::io_context>()),
      rng_(std::random_device{}()),
      linkless_(std::make_shared<health_detail::LinklessDevice>()),
      thread_([io = checkIo_.get()] {
        pthread_setname_np(pthread_self(), "keel-health");  // top -H, perf
        auto work = asio::make_work_guard(*io);
        io->run();
      }) {}

void HealthChecker::setLinklessDevice(std::string port, std::function<bool(const std::string& device)> carries) {
  linkless_->set(std::move(port), std::move(carries));
}

void HealthChecker::setLinklessDeviceDown(bool down) { linkless_->setDown(down); }

HealthChecker::~HealthChecker() {
  *alive_ = false;
  checkIo_->stop();
  thread_.join();
  // The check thread is gone. The entries, then the loop with the handlers,
  // timers and probes it still holds, while mu_ and the rest still exist.
  entries_.clear();
  checkIo_.reset();
}

size_t HealthChecker::size() const {
  std::lock_guard lock(mu_);
  return entries_.size();
}

std::chrono::nanoseconds HealthChecker::threadCpuTime() const {
  clockid_t clock;
  timespec ts{};
  if (pthread_getcpuclockid(const_cast<std::thread&>(thread_).native_handle(), &clock) != 0 ||
      clock_gettime(clock, &ts) != 0)
    return std::chrono::nanoseconds(0);
  return std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec);
}

namespace {

// What a check of `target` runs with; none for type none, which never
// starts a check (restart() schedules none for it, and startCheck() runs
// only from a schedule of the entry's current generation). A real without
// checks then costs the checker no copy of its spec (~380 bytes).
std::shared_ptr<const ProbeConfig> probeConfigFor(const HealthTarget& target,
                                                const std::shared_ptr<health_detail::LinklessDevice>& linkless) {
  if (target.spec.type == HealthCheckSpec::Type::None) return nullptr;
  return health_detail::makeProbeConfig(target, linkless);
}

}  // namespace

Status HealthChecker::add(HealthTarget target, bool initiallyUp, HealthTargetId* id, std::string why) {
  std::string where = "service " + target.service + " real " + target.address.toString();
  if (Status s = validateHealthTarget(target, where); !s) return s;
  EntryPtr e;
  {
    std::lock_guard lock(mu_);
    e = std::make_shared<Entry>(*checkIo_, nextId_++, std::move(target), initiallyUp);
    e->config = probeConfigFor(e->target, linkless_);
    e->lastChange = std::chrono::system_clock::now();
    e->changeReason = !why.empty() ? std::move(why) : initiallyUp ? "added up" : "added down";
    entries_.emplace(e->id, e);
  }
  if (id) *id = e->id;
  restartLater(e);
  return Status::ok();
}

bool HealthChecker::remove(HealthTargetId id) {
  EntryPtr e;
  {
    std::lock_guard lock(mu_);
    auto it = entries_.find(id);
    if (it == entries_.end()) return false;
    e = std::move(it->second);
    entries_.erase(it);
    e->removed = true;
    ++e->generation;
  }
  // Stops its timer and abandons a check in flight, on the check thread.
  asio::post(*checkIo_, [this, e] { restart(e, 0); });
  return true;
}

Status HealthChecker::update(HealthTargetId id, HealthCheckSpec spec) {
  EntryPtr e;
  {
    std::lock_guard lock(mu_);
    auto it = entries_.find(id);
    if (it == entries_.end()) return Status::error("health target " + std::to_string(id) + " does not exist");
    e = it->second;
    if (spec == e->target.spec) return Status::ok();
    HealthTarget candidate = e->target;
    candidate.spec = std::move(spec);
    std::string where = "service " + candidate.service + " real " + candidate.address.toString();
    if (Status s = validateHealthTarget(candidate, where); !s) return s;
    ++e->generation;
    e->target = std::move(candidate);
    e->config = probeConfigFor(e->target, linkless_);
    e->state.setThresholds(e->target.spec.rise, e->target.spec.fall);
    e->state.resetRuns();
    e->confirmed = false;
  }
  restartLater(e);
  return Status::ok();
}

// A new or changed target: type none is up at once (on the owner's loop);
// a checked one has its check (re)started on the check thread.
void HealthChecker::restartLater(const EntryPtr& e) {
  uint64_t generation;
  bool none;
  {
    std::lock_guard lock(mu_);
    generation = e->generation;
    none = e->target.spec.type == HealthCheckSpec::Type::None;
  }
  if (none) postForcedUp(e);
  // Also for none: a check of the previous spec may be in flight.
  asio::post(*checkIo_, [this, e, generation] { restart(e, generation); });
}

void HealthChecker::restart(const EntryPtr& e, uint64_t generation) {
  e->timer.cancel();
  if (e->probe) std::exchange(e->probe, nullptr)->cancel();
  std::chrono::steady_clock::duration interval;
  {
    std::lock_guard lock(mu_);
    if (e->removed || generation != e->generation || e->target.spec.type == HealthCheckSpec::Type::None) return;
    interval = std::chrono::duration_cast<Clock::duration>(e->target.spec.interval);
  }
  scheduleFirst(e, interval, generation);
}

// The first check comes at once, so a real added with a long interval is
// seen at once, not after up to one interval, but first checks queue at
// kFirstChecksPerSecond: 20,000 targets of a start or a reload take 4 s,
// not a burst of them all (and at most one socket each at once). A target
// whose interval is shorter than the queue ahead of it takes a random point
// of its interval instead, as every check did before (its checks come at
// that rate anyway). The second check comes at a random point of an
// interval after the first (onResult), which spreads the steady state of
// targets added together over the whole interval.
void HealthChecker::scheduleFirst(const EntryPtr& e, Clock::duration interval, uint64_t generation) {
  e->phased = false;
  const Clock::time_point now = Clock::now();
  const Clock::duration spacing =
      std::chrono::duration_cast<Clock::duration>(std::chrono::seconds(1)) / kFirstChecksPerSecond;
  Clock::time_point at = std::max(now, firstSlot_ + spacing);
  if (at - now <= interval) {
    firstSlot_ = at;
  } else {
    std::uniform_int_distribution<Clock::rep> phase(0, interval.count() - 1);
    at = now + Clock::duration(phase(rng_));
  }
  scheduleAt(e, at, generation);
}

void HealthChecker::scheduleAt(const EntryPtr& e, Clock::time_point when, uint64_t generation) {
  {
    std::lock_guard lock(mu_);
    e->nextDue = when;
  }
  e->timer.expires_at(when);
  e->timer.async_wait([this, e, generation](const boost::system::error_code& ec) {
    if (!ec) startCheck(e, generation);
  });
}

void HealthChecker::startCheck(const EntryPtr& e, uint64_t generation) {
  std::shared_ptr<const ProbeConfig> config;
  {
    std::lock_guard lock(mu_);
    if (e->removed || generation != e->generation || !e->config) return;  // !config: type none
    config = e->config;
    e->checkStart = Clock::now();
    e->lastDue = e->nextDue;
  }
  e->probe = makeProbe(*checkIo_, std::move(config));
  e->probe->start([this, e, generation](HealthResult result) { onResult(e, generation, std::move(result)); });
}

void HealthChecker::onResult(const EntryPtr& e, uint64_t generation, HealthResult result) {
  Clock::time_point now = Clock::now();
  e->probe.reset();
  auto took = std::chrono::duration_cast<std::chrono::microseconds>(now - e->checkStart);
  double seconds = std::chrono::duration<double>(took).count();
  size_t bucket = std::lower_bound(kHealthDurationBuckets.begin(), kHealthDurationBuckets.end(), seconds) -
                  kHealthDurationBuckets.begin();
  std::optional<Change> change;
  Clock::duration interval;
  {
    std::lock_guard lock(mu_);
    // A result of the previous spec (or of a removed target) says nothing.
    if (e->removed || generation != e->generation) return;
    // An error of this host about the way to the real (its link down, no
    // route, a `source` it no longer has) is not the real's fault, for up
    // to `fall` checks in a row; past that it is one that does not clear (a
    // route withdrawn, an address removed for good) and counts as the
    // failure it is, so a real cannot stay up forever unchecked. One that
    // exhausts the host (no descriptor, memory or port) never counts: every
    // check fails with it at once (HealthResult::exhausted).
    if (result.local && !result.exhausted) {
      if (++e->notRunRun > e->target.spec.fall) {
        result.local = false;
        result.reason += " (an error of this host for more than " + std::to_string(e->target.spec.fall) +
                         " checks in a row: counted against the real)";
      }
    } else if (!result.local) {
      e->notRunRun = 0;
    }
    if (result.local) {
      // Not run: says nothing about the real (HealthResult::local), within
      // the limit above. Shown as the latest result, counted apart, and
      // tried again next interval.
      ++e->notRun;
      e->lastCheck = std::chrono::system_clock::now();
      e->last = {false, "not run: " + result.reason + " (an error of this host, not counted against the real)", true,
                 result.exhausted};
    } else {
      ++e->durationBuckets[bucket];
      e->durationSumSeconds += seconds;
      e->lastDuration = took;
      e->checked = true;
      ++e->checks;
      if (!result.ok) ++e->failures;
      e->lastCheck = std::chrono::system_clock::now();
      e->last = std::move(result);
      if (e->state.record(e->last.ok)) {
        change = recordChange(*e, transitionReason(e->last.ok,
                                                   e->last.ok ? e->state.consecutiveOk() : e->state.consecutiveFail(),
                                                   e->last.reason));
        e->confirmed = true;
      } else if (!e->confirmed && !e->state.up() && e->state.consecutiveFail() >= e->state.fall()) {
        e->confirmed = true;
        change = Change{e->target, false, transitionReason(false, e->state.consecutiveFail(), e->last.reason), true};
      }
    }
    interval = std::chrono::duration_cast<Clock::duration>(e->target.spec.interval);
  }

  const Clock::rep tenth = std::max<Clock::rep>(interval.count() / 10, 1);
  Clock::time_point next;
  if (!e->phased) {
    // After the first check: a random phase of the interval (scheduleFirst),
    // a tenth of an interval at the least, so that two checks a moment
    // apart (`rise: 2`) cannot bring up a real that answered only then;
    // counted from the first's end too, should it have ended late.
    e->phased = true;
    std::uniform_int_distribution<Clock::rep> phase(tenth, tenth + std::max<Clock::rep>(interval.count(), 1));
    next = std::max(e->checkStart + Clock::duration(phase(rng_)), now + Clock::duration(tenth));
  } else {
    // +-10% jitter on every interval keeps targets from re-synchronising
    // after a stall (all overdue timers would fire together).
    std::uniform_int_distribution<Clock::rep> jitter(-tenth, tenth);
    next = e->checkStart + interval + Clock::duration(jitter(rng_));
  }
  scheduleAt(e, std::max(next, now), generation);

  if (change) postChange(e->id, std::move(*change));
}

// Posted handlers on the owner's loop hold no entry: they may outlive the
// checker (and its check thread's loop, which the entry's timer belongs to).
void HealthChecker::postChange(HealthTargetId id, Change change) {
  asio::post(owner_, [this, alive = alive_, id, change = std::move(change)] {
    if (*alive) deliver(id, change);
  });
}

void HealthChecker::postForcedUp(const EntryPtr& e) {
  uint64_t generation;
  {
    std::lock_guard lock(mu_);
    generation = e->generation;
  }
  asio::post(owner_, [this, alive = alive_, id = e->id, generation] {
    if (!*alive) return;
    std::optional<Change> change;
    {
      std::lock_guard lock(mu_);
      auto it = entries_.find(id);
      if (it == entries_.end() || generation != it->second->generation) return;
      Entry& e = *it->second;
      e.checked = true;
      e.last = {true, "type none: always up"};
      e.lastCheck = std::chrono::system_clock::now();
      if (e.state.force(true)) change = recordChange(e, e.last.reason);
    }
    if (change) deliver(id, *change);
  });
}

HealthChecker::Change HealthChecker::recordChange(Entry& e, std::string reason) {
  e.lastChange = std::chrono::system_clock::now();
  e.changeReason = std::move(reason);
  ++e.transitions;
  return Change{e.target, e.state.up(), e.changeReason};
}

void HealthChecker::deliver(HealthTargetId id, const Change& change) {
  {
    std::lock_guard lock(mu_);
    if (!entries_.count(id)) return;  // removed since
  }
  // Unlocked: the callback may add, update or remove (this target too).
  if (change.confirmed) {
    if (onConfirmedDown_) onConfirmedDown_(id, change.target, change.reason);
    return;
  }
  if (onChange_) onChange_(id, change.target, change.up, change.reason);
}

HealthStatus HealthChecker::statusOf(const Entry& e) const {
  HealthStatus s;
  s.id = e.id;
  s.target = e.target;
  s.up = e.state.up();
  s.checked = e.checked;
  s.last = e.last;
  s.lastCheck = e.lastCheck;
  s.lastChange = e.lastChange;
  s.changeReason = e.changeReason;
  s.consecutiveOk = e.state.consecutiveOk();
  s.consecutiveFail = e.state.consecutiveFail();
  s.lastDuration = e.lastDuration;
  s.checks = e.checks;
  s.failures = e.failures;
  s.notRun = e.notRun;
  s.transitions = e.transitions;
  s.durationBuckets = e.durationBuckets;
  s.durationSumSeconds = e.durationSumSeconds;
  s.nextDue = e.nextDue;
  s.lastDue = e.lastDue;
  s.lastStart = e.checkStart;
  return s;
}

std::optional<HealthStatus> HealthChecker::status(HealthTargetId id) const {
  std::lock_guard lock(mu_);
  auto it = entries_.find(id);
  if (it == entries_.end()) return std::nullopt;
  return statusOf(*it->second);
}

std::vector<HealthStatus> HealthChecker::snapshot() const {
  std::vector<HealthStatus> out;
  {
    std::lock_guard lock(mu_);
    out.reserve(entries_.size());
    for (const auto& [id, e] : entries_) out.push_back(statusOf(*e));
  }
  std::sort(out.begin(), out.end(), [](const HealthStatus& a, const HealthStatus& b) { return a.id < b.id; });
  return out;
}

}  // namespace keel

// SPDX-License-Identifier: Apache-2.0
#include "control/health/health_checker.h"

#include <algorithm>
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
  Entry(asio::io_context& io, HealthTargetId i, HealthTarget t, bool initiallyUp)
      : id(i), target(std::move(t)), state(initiallyUp, target.spec.rise, target.spec.fall), timer(io) {}

  HealthTargetId id;
  HealthTarget target;
  std::shared_ptr<const ProbeConfig> config;
  HealthState state;
  asio::steady_timer timer;
  std::shared_ptr<Probe> probe;  // the run in flight, if any
  // Bumped on update/remove: handlers of an older generation drop their
  // results. `removed` also guards `this` once the checker is gone.
  uint64_t generation = 0;
  bool removed = false;
  Clock::time_point checkStart;

  bool checked = false;
  HealthResult last;
  std::chrono::system_clock::time_point lastCheck;
  std::chrono::system_clock::time_point lastChange;
  std::string changeReason;
  std::chrono::microseconds lastDuration{0};
  uint64_t checks = 0;
  uint64_t failures = 0;
  uint64_t transitions = 0;
  std::array<uint64_t, kHealthDurationBuckets.size() + 1> durationBuckets{};
  double durationSumSeconds = 0;
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

HealthChecker::HealthChecker(asio::io_context& io, Callback onChange)
    : io_(io), onChange_(std::move(onChange)), rng_(std::random_device{}()) {}

HealthChecker::~HealthChecker() {
  for (auto& [id, e] : entries_) {
    e->removed = true;
    e->timer.cancel();
    if (e->probe) e->probe->cancel();
  }
}

Status HealthChecker::add(HealthTarget target, bool initiallyUp, HealthTargetId* id) {
  std::string where = "service " + target.service + " real " + target.address.toString();
  if (Status s = validateHealthTarget(target, where); !s) return s;
  HealthTargetId newId = nextId_++;
  auto e = std::make_shared<Entry>(io_, newId, std::move(target), initiallyUp);
  e->config = health_detail::makeProbeConfig(e->target);
  e->lastChange = std::chrono::system_clock::now();
  e->changeReason = initiallyUp ? "added up" : "added down";
  entries_.emplace(newId, e);
  if (e->target.spec.type == HealthCheckSpec::Type::None) {
    postForcedUp(e);
  } else {
    scheduleFirst(e);
  }
  if (id) *id = newId;
  return Status::ok();
}

bool HealthChecker::remove(HealthTargetId id) {
  auto it = entries_.find(id);
  if (it == entries_.end()) return false;
  EntryPtr e = std::move(it->second);
  entries_.erase(it);
  e->removed = true;
  ++e->generation;
  e->timer.cancel();
  if (e->probe) std::exchange(e->probe, nullptr)->cancel();
  return true;
}

Status HealthChecker::update(HealthTargetId id, HealthCheckSpec spec) {
  auto it = entries_.find(id);
  if (it == entries_.end()) return Status::error("health target " + std::to_string(id) + " does not exist");
  const EntryPtr& e = it->second;
  if (spec == e->target.spec) return Status::ok();
  HealthTarget candidate = e->target;
  candidate.spec = std::move(spec);
  std::string where = "service " + candidate.service + " real " + candidate.address.toString();
  if (Status s = validateHealthTarget(candidate, where); !s) return s;

  ++e->generation;
  e->timer.cancel();
  if (e->probe) std::exchange(e->probe, nullptr)->cancel();
  e->target = std::move(candidate);
  e->config = health_detail::makeProbeConfig(e->target);
  e->state.setThresholds(e->target.spec.rise, e->target.spec.fall);
  e->state.resetRuns();
  if (e->target.spec.type == HealthCheckSpec::Type::None) {
    postForcedUp(e);
  } else {
    scheduleFirst(e);
  }
  return Status::ok();
}

void HealthChecker::scheduleFirst(const EntryPtr& e) {
  // A random phase within the first interval spreads targets added together.
  auto interval = std::chrono::duration_cast<Clock::duration>(e->target.spec.interval);
  std::uniform_int_distribution<Clock::rep> phase(0, interval.count() - 1);
  scheduleAt(e, Clock::now() + Clock::duration(phase(rng_)));
}

void HealthChecker::scheduleAt(const EntryPtr& e, Clock::time_point when) {
  e->timer.expires_at(when);
  e->timer.async_wait([this, e, gen = e->generation](const boost::system::error_code& ec) {
    if (ec || e->removed || gen != e->generation) return;
    startCheck(e);
  });
}

void HealthChecker::startCheck(const EntryPtr& e) {
  e->checkStart = Clock::now();
  e->probe = makeProbe(io_, e->config);
  e->probe->start([this, e, gen = e->generation](HealthResult result) {
    if (e->removed || gen != e->generation) return;
    onResult(e, std::move(result));
  });
}

void HealthChecker::onResult(const EntryPtr& e, HealthResult result) {
  Clock::time_point now = Clock::now();
  e->probe.reset();
  auto took = std::chrono::duration_cast<std::chrono::microseconds>(now - e->checkStart);
  double seconds = std::chrono::duration<double>(took).count();
  size_t bucket = std::lower_bound(kHealthDurationBuckets.begin(), kHealthDurationBuckets.end(), seconds) -
                  kHealthDurationBuckets.begin();
  ++e->durationBuckets[bucket];
  e->durationSumSeconds += seconds;
  e->lastDuration = took;
  e->checked = true;
  ++e->checks;
  if (!result.ok) ++e->failures;
  e->lastCheck = std::chrono::system_clock::now();
  e->last = std::move(result);
  bool changed = e->state.record(e->last.ok);

  // +-10% jitter on every interval keeps targets from re-synchronising
  // after the loop stalls (all overdue timers would fire together).
  auto interval = std::chrono::duration_cast<Clock::duration>(e->target.spec.interval);
  Clock::rep spread = std::max<Clock::rep>(interval.count() / 10, 1);
  std::uniform_int_distribution<Clock::rep> jitter(-spread, spread);
  Clock::time_point next = e->checkStart + interval + Clock::duration(jitter(rng_));
  scheduleAt(e, std::max(next, now));

  if (changed)
    notify(e, transitionReason(e->last.ok, e->last.ok ? e->state.consecutiveOk() : e->state.consecutiveFail(),
                               e->last.reason));
}

void HealthChecker::postForcedUp(const EntryPtr& e) {
  asio::post(io_, [this, e, gen = e->generation] {
    if (e->removed || gen != e->generation) return;
    e->checked = true;
    e->last = {true, "type none: always up"};
    e->lastCheck = std::chrono::system_clock::now();
    if (e->state.force(true)) notify(e, e->last.reason);
  });
}

void HealthChecker::notify(const EntryPtr& e, std::string reason) {
  e->lastChange = std::chrono::system_clock::now();
  e->changeReason = std::move(reason);
  ++e->transitions;
  if (!onChange_) return;
  // Copies: the callback may update or remove this very target.
  HealthTarget target = e->target;
  std::string changeReason = e->changeReason;
  onChange_(e->id, target, e->state.up(), changeReason);
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
  s.transitions = e.transitions;
  s.durationBuckets = e.durationBuckets;
  s.durationSumSeconds = e.durationSumSeconds;
  return s;
}

std::optional<HealthStatus> HealthChecker::status(HealthTargetId id) const {
  auto it = entries_.find(id);
  if (it == entries_.end()) return std::nullopt;
  return statusOf(*it->second);
}

std::vector<HealthStatus> HealthChecker::snapshot() const {
  std::vector<HealthStatus> out;
  out.reserve(entries_.size());
  for (const auto& [id, e] : entries_) out.push_back(statusOf(*e));
  std::sort(out.begin(), out.end(), [](const HealthStatus& a, const HealthStatus& b) { return a.id < b.id; });
  return out;
}

}  // namespace keel

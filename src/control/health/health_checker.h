// SPDX-License-Identifier: Apache-2.0
// The health checker: runs every target's check on one Boost.Asio
// io_context (one thread, no thread per real), feeds the results through
// the rise/fall state machine (health_state.h) and reports state changes.
//
// Usage (keeld):
//   HealthChecker checker(io, [&](HealthTargetId id, const HealthTarget& t,
//                                 bool up, const std::string& reason) {
//     queue(id);  // keeld hands a loop turn's transitions to Registry::setRealsHealth
//   });
//   HealthTargetId id;
//   if (Status s = checker.add(target, /*initiallyUp=*/false, &id); !s) log(s.message());
//
// Initial state. A new target is in the state the caller passes. Down is the
// safe default (no traffic until `rise` checks pass). Up is for a daemon
// restart that adopts the previous run's state, so reals keep their traffic
// (hitless restart) and only `fall` failures take them out.
//
// Timing. The first check of a target runs at a random point within its
// first interval, and every later interval is jittered by +-10%, so 10,000
// targets added together spread evenly and do not fall back into lockstep
// after the loop stalls. A check never overlaps the previous one of the
// same target: the next starts one interval after the previous started, or
// as soon as it ends if it took longer (timeout > interval).
//
// Threading. Every method, and the callback, runs on the io_context's
// thread (or before it runs); post to it from elsewhere. The checker must
// be destroyed before the io_context.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/status.h"
#include "control/health/health_spec.h"
#include "control/health/health_state.h"

namespace boost::asio {
class io_context;
}

namespace keel {

using HealthTargetId = uint64_t;  // never 0

// Upper bounds (seconds) of the check-duration histogram buckets, the
// Prometheus default latency buckets extended down to 0.5 ms (loopback and
// LAN checks finish in well under a millisecond).
inline constexpr std::array<double, 14> kHealthDurationBuckets = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

struct HealthStatus {
  HealthTargetId id = 0;
  HealthTarget target;
  bool up = false;
  bool checked = false;  // false until the first result arrives
  HealthResult last;     // the latest result (empty before the first)
  std::chrono::system_clock::time_point lastCheck;   // when the latest result arrived
  std::chrono::system_clock::time_point lastChange;  // latest transition, or when added
  // Why the state last changed (see transitionReason), or how it started
  // ("added up" / "added down"). The callback's `reason` is this string.
  std::string changeReason;
  uint32_t consecutiveOk = 0;
  uint32_t consecutiveFail = 0;
  std::chrono::microseconds lastDuration{0};
  uint64_t checks = 0;
  uint64_t failures = 0;
  uint64_t transitions = 0;
  // Check durations: durationBuckets[i] counts checks that took at most
  // kHealthDurationBuckets[i] seconds and more than the previous bound (NOT
  // cumulative: what prometheus::Histogram::ObserveMultiple takes); the
  // last element counts the rest (+Inf). durationSumSeconds is their sum.
  std::array<uint64_t, kHealthDurationBuckets.size() + 1> durationBuckets{};
  double durationSumSeconds = 0;
};

// The reason of a transition caused by a result: the run that crossed rise
// or fall, then the result, e.g. "3 consecutive failures: connect: connection
// refused" or "1 success: http status 200".
std::string transitionReason(bool ok, uint32_t run, const std::string& result);

class HealthChecker {
 public:
  // Called on transitions only, on the io_context thread, after the new
  // state is recorded. `reason` is the transition's reason as
  // status().changeReason holds it, which quotes the result that made it
  // (status().last). It may call add/remove/update, including on `id`.
  using Callback =
      std::function<void(HealthTargetId id, const HealthTarget& target, bool up, const std::string& reason)>;

  HealthChecker(boost::asio::io_context& io, Callback onChange);
  ~HealthChecker();
  HealthChecker(const HealthChecker&) = delete;
  HealthChecker& operator=(const HealthChecker&) = delete;

  // Starts checking `target`. On error (see validateHealthTarget) nothing
  // changes and *id is left alone. Type `none` targets are up at once: if
  // initiallyUp is false, the callback reports the change (posted, never
  // from inside add).
  Status add(HealthTarget target, bool initiallyUp, HealthTargetId* id);
  // Stops checking; no callback for `id` runs after this. False if unknown.
  bool remove(HealthTargetId id);
  // Replaces the check of a target (a per-real override changed on reload).
  // An identical spec is a no-op. Otherwise the state is kept, the runs of
  // consecutive results restart (the old check's results say nothing about
  // the new one), an in-flight check is abandoned and the next one runs
  // within one (new) interval.
  Status update(HealthTargetId id, HealthCheckSpec spec);

  std::optional<HealthStatus> status(HealthTargetId id) const;
  // For `keelctl health show` and metrics; in id (= insertion) order.
  std::vector<HealthStatus> snapshot() const;
  size_t size() const { return entries_.size(); }

 private:
  struct Entry;
  using EntryPtr = std::shared_ptr<Entry>;

  void scheduleFirst(const EntryPtr& e);
  void scheduleAt(const EntryPtr& e, std::chrono::steady_clock::time_point when);
  void startCheck(const EntryPtr& e);
  void onResult(const EntryPtr& e, HealthResult result);
  void postForcedUp(const EntryPtr& e);
  void notify(const EntryPtr& e, std::string reason);
  HealthStatus statusOf(const Entry& e) const;

  boost::asio::io_context& io_;
  Callback onChange_;
  std::unordered_map<HealthTargetId, EntryPtr> entries_;
  HealthTargetId nextId_ = 1;
  std::minstd_rand rng_;
};

}  // namespace keel

// SPDX-License-Identifier: Apache-2.0
// The health checker: runs every target's check on a thread and io_context
// of its own (one thread, no thread per real), feeds the results through
// the rise/fall state machine (health_state.h) and reports state changes on
// the owner's io_context.
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
// Timing. The first check of a target runs at once, but first checks queue
// at kFirstChecksPerSecond (a target whose interval is shorter than the
// queue ahead of it runs its first at a random point of its interval
// instead), so a real added with a long interval is seen at once and a
// start with 20,000 targets is no burst; the second at a random point of
// an interval (from a tenth of one on) after the first, and every later
// interval is jittered by +-10%, so targets added together spread evenly
// over the interval and do not fall back into lockstep after a stall. A check never overlaps the previous one of the same
// target: the next starts one interval after the previous started, or as
// soon as it ends if it took longer (timeout > interval).
//
// Threading. The checks (sockets, timers, deadlines) run on the checker's
// own thread, so whatever holds the owner's loop (keeld's: a reload of
// thousands of services, a health flush, a DPDK grace period) delays no
// check: a check measures the real, never keeld. That thread ("keel-health")
// is created in the constructor and inherits the constructing thread's CPU affinity
// (keeld's control lcore under DPDK, never a worker's). Every public method
// is called from the owner's thread (the thread that runs `owner`, or
// before it runs); the callback runs there too, posted, so the owner sees
// transitions in the order they happened and never concurrently with its
// own code. status()/snapshot() read the state under a mutex, as the check
// thread last recorded it (a transition is recorded there before its
// callback is posted, so status() in the callback already shows it). The
// checker must be destroyed before `owner`; it stops and joins its thread,
// and a transition posted but not yet run is then dropped.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/status.h"
#include "control/health/health_spec.h"
#include "control/health/health_state.h"

namespace boost::asio {
class io_context;
}

namespace keel {

namespace health_detail {
class LinklessDevice;
}

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
  // Checks that could not run for an error of this host (HealthResult::local):
  // not in checks or failures, and no change of state, for up to `fall` in a
  // row; the ones after those count as failures (an error that never clears
  // must not leave a real up unchecked).
  uint64_t notRun = 0;
  uint64_t transitions = 0;
  // Check durations: durationBuckets[i] counts checks that took at most
  // kHealthDurationBuckets[i] seconds and more than the previous bound (NOT
  // cumulative: what prometheus::Histogram::ObserveMultiple takes); the
  // last element counts the rest (+Inf). durationSumSeconds is their sum.
  std::array<uint64_t, kHealthDurationBuckets.size() + 1> durationBuckets{};
  double durationSumSeconds = 0;
  // The schedule, on the steady clock: when the next check is due (while a
  // check runs, the one after it is not yet set and this is still when the
  // running one was due), when the latest check was due and when it
  // started (later than due when the check thread was busy). Epoch until
  // set. For tests and diagnostics: no API or metric shows them.
  std::chrono::steady_clock::time_point nextDue;
  std::chrono::steady_clock::time_point lastDue;
  std::chrono::steady_clock::time_point lastStart;
};

// The reason of a transition caused by a result: the run that crossed rise
// or fall, then the result, e.g. "3 consecutive failures: connect: connection
// refused" or "1 success: http status 200".
std::string transitionReason(bool ok, uint32_t run, const std::string& result);

class HealthChecker {
 public:
  // Called on transitions only, on the owner's thread, after the new state
  // is recorded. `up` and `reason` are the transition's (status() may
  // already hold a later one); `reason` quotes the result that made it. It
  // may call add/remove/update, including on `id`. Never called for a
  // target after its remove().
  using Callback =
      std::function<void(HealthTargetId id, const HealthTarget& target, bool up, const std::string& reason)>;

  // `owner`: the loop the callback runs on. Starts the check thread.
  HealthChecker(boost::asio::io_context& owner, Callback onChange);
  ~HealthChecker();
  HealthChecker(const HealthChecker&) = delete;
  HealthChecker& operator=(const HealthChecker&) = delete;

  // Starts checking `target`. On error (see validateHealthTarget) nothing
  // changes and *id is left alone. Type `none` targets are up at once: if
  // initiallyUp is false, the callback reports the change (posted, never
  // from inside add). `why`: the start state's reason (changeReason) when
  // it did not come from add() itself (a restart's), else "added up|down".
  Status add(HealthTarget target, bool initiallyUp, HealthTargetId* id, std::string why = "");
  // Stops checking; no callback for `id` runs after this. False if unknown.
  bool remove(HealthTargetId id);
  // Replaces the check of a target (a per-real override changed on reload).
  // An identical spec is a no-op. Otherwise the state is kept, the runs of
  // consecutive results restart (the old check's results say nothing about
  // the new one), an in-flight check is abandoned and the next one runs
  // as a new target's first does (at once, queued as first checks are).
  Status update(HealthTargetId id, HealthCheckSpec spec);

  // First checks (of a new or changed target) run at most this many a
  // second: a fifth of what the check thread keeps up with (a tcp check
  // costs it ~40 us).
  static constexpr int kFirstChecksPerSecond = 5000;

  std::optional<HealthStatus> status(HealthTargetId id) const;
  // For `keelctl health show` and metrics; in id (= insertion) order.
  std::vector<HealthStatus> snapshot() const;
  size_t size() const;
  // CPU time the check thread has used (health_bench).
  std::chrono::nanoseconds threadCpuTime() const;

  // Kernel devices whose carrier does not follow their link (DPDK's
  // exception tap and the devices on it, `port` the DPDK port behind it;
  // carries(device) says which): while setLinklessDeviceDown(true), a
  // check whose route leaves by one and fails or passes on silence is not
  // run, as on a device without carrier (probe.h, hostPathDown). Any
  // thread; carries is called on the check thread.
  void setLinklessDevice(std::string port, std::function<bool(const std::string& device)> carries);

  // Called (on the owner's loop, as the transitions are) once a target
  // that is down, and has not been up since it was added or its check
  // changed, has failed `fall` checks in a row: no transition, as it was
  // down already, but its state is now confirmed rather than assumed
  // (DaemonBackend: fail-open then holds a real of a service none of whose
  // reals ever came up). Set before targets are added.
  using ConfirmedDown = std::function<void(HealthTargetId id, const HealthTarget& target, const std::string& reason)>;
  void setOnConfirmedDown(ConfirmedDown f) { onConfirmedDown_ = std::move(f); }
  void setLinklessDeviceDown(bool down);

 private:
  struct Entry;
  using EntryPtr = std::shared_ptr<Entry>;

  struct Change;  // a recorded transition, on its way to the callback

  // On the check thread.
  void restart(const EntryPtr& e, uint64_t generation);
  void scheduleFirst(const EntryPtr& e, std::chrono::steady_clock::duration interval, uint64_t generation);
  void scheduleAt(const EntryPtr& e, std::chrono::steady_clock::time_point when, uint64_t generation);
  void startCheck(const EntryPtr& e, uint64_t generation);
  void onResult(const EntryPtr& e, uint64_t generation, HealthResult result);
  // On the owner's thread.
  void restartLater(const EntryPtr& e);
  void postForcedUp(const EntryPtr& e);
  void deliver(HealthTargetId id, const Change& change);
  // From the check thread.
  void postChange(HealthTargetId id, Change change);
  // Under mu_.
  Change recordChange(Entry& e, std::string reason);
  HealthStatus statusOf(const Entry& e) const;

  boost::asio::io_context& owner_;
  Callback onChange_;
  ConfirmedDown onConfirmedDown_;
  // False once the checker is going: transitions posted to the owner's
  // loop before then are dropped. Read and written on the owner's thread.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);

  // The check thread's loop; declared before the entries, so it outlives
  // them and the handlers it still holds.
  std::unique_ptr<boost::asio::io_context> checkIo_;
  std::minstd_rand rng_;  // check thread only
  // Every probe config's (setLinklessDevice).
  std::shared_ptr<health_detail::LinklessDevice> linkless_;
  // When the last queued first check runs (scheduleFirst); check thread only.
  std::chrono::steady_clock::time_point firstSlot_{};

  // Guards the entries' state (everything statusOf reads, the target, the
  // probe config, the generation) and the map. Each entry's timer and
  // probe belong to the check thread alone.
  mutable std::mutex mu_;
  std::unordered_map<HealthTargetId, EntryPtr> entries_;
  HealthTargetId nextId_ = 1;

  std::thread thread_;  // last: started once everything above exists
};

}  // namespace keel

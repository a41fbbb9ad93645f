// SPDX-License-Identifier: Apache-2.0
// The rise/fall hysteresis of one target, with no sockets and no clocks, so
// it can be tested as a table. Semantics (keepalived / HAProxy style):
//  - a success resets the failure run and extends the success run; a target
//    that is down goes up once the success run reaches `rise`;
//  - a failure resets the success run and extends the failure run; a target
//    that is up goes down once the failure run reaches `fall`.
// Runs keep counting past the threshold so listings can show "up for 40
// checks". setThresholds() keeps the runs and the new thresholds apply from
// the next result on (a state only ever changes on a result); the health
// checker, though, also calls resetRuns() on every spec change, thresholds
// included (HealthChecker::update), so a changed check starts new runs.
#pragma once

#include <cstdint>

namespace keel {

class HealthState {
 public:
  HealthState(bool initiallyUp, uint32_t rise, uint32_t fall)
      : up_(initiallyUp), rise_(rise ? rise : 1), fall_(fall ? fall : 1) {}

  // Records one result; returns true if the state changed.
  bool record(bool ok);

  void setThresholds(uint32_t rise, uint32_t fall);
  // Forgets the current runs (used when a check's spec changes: results of
  // the old check say nothing about the new one). The state is kept.
  void resetRuns() { okRun_ = failRun_ = 0; }
  // Forces a state without a result (type `none`); returns true if it changed.
  bool force(bool up);

  bool up() const { return up_; }
  uint32_t consecutiveOk() const { return okRun_; }
  uint32_t consecutiveFail() const { return failRun_; }
  uint32_t rise() const { return rise_; }
  uint32_t fall() const { return fall_; }

 private:
  bool up_;
  uint32_t rise_;
  uint32_t fall_;
  uint32_t okRun_ = 0;
  uint32_t failRun_ = 0;
};

}  // namespace keel

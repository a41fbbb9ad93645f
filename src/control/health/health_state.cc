// SPDX-License-Identifier: Apache-2.0
#include "control/health/health_state.h"

namespace keel {

bool HealthState::record(bool ok) {
  if (ok) {
    failRun_ = 0;
    if (okRun_ != UINT32_MAX) ++okRun_;
    if (!up_ && okRun_ >= rise_) {
      up_ = true;
      return true;
    }
  } else {
    okRun_ = 0;
    if (failRun_ != UINT32_MAX) ++failRun_;
    if (up_ && failRun_ >= fall_) {
      up_ = false;
      return true;
    }
  }
  return false;
}

void HealthState::setThresholds(uint32_t rise, uint32_t fall) {
  rise_ = rise ? rise : 1;
  fall_ = fall ? fall : 1;
}

bool HealthState::force(bool up) {
  bool changed = up != up_;
  up_ = up;
  return changed;
}

}  // namespace keel

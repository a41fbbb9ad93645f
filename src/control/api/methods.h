// SPDX-License-Identifier: Apache-2.0
// Which of the control protocol's methods (docs/api.md) can change keeld's
// state. Both ends need to know: keeld logs each such request with its
// caller (Dispatcher::changes), and keelctl, given an answer to one that it
// cannot read, says the change may have been applied (exit 3) rather than
// that keeld refused it. Header-only, so keelctl needs nothing of keeld's
// dispatcher for it.
#pragma once

#include <algorithm>
#include <array>
#include <string_view>

namespace keel::api {

inline bool isChangeMethod(std::string_view method) {
  static constexpr std::array<std::string_view, 9> kChanging = {
      "service.add", "service.remove", "real.add",      "real.remove",    "real.set_weight",
      "real.drain",  "real.undrain",   "config.reload", "daemon.shutdown"};
  return std::find(kChanging.begin(), kChanging.end(), method) != kChanging.end();
}

}  // namespace keel::api

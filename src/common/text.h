// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <string>

namespace keel {

// "a, b, c" of a list of names (strings or string views), for messages; ""
// for none.
template <typename Names>
std::string commaList(const Names& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + std::string(n);
  return out;
}

}  // namespace keel

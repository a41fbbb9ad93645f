// SPDX-License-Identifier: Apache-2.0
// How deep JSON text nests, checked before it is parsed. keeld bounds what
// it reads (a request, its runtime state file) and keelctl what it is
// answered (any peer behind --socket): the one bound and the one scan, in
// neither's code, so the client needs nothing of keeld's dispatcher.
#pragma once

#include <cstddef>
#include <string_view>

namespace keel {

// Far above anything keel nests (a service.add request: 4 levels; a reply:
// 5), and low enough that a walk over the value stays cheap.
inline constexpr size_t kMaxJsonDepth = 64;

// Whether `text` nests [ and { (outside strings) deeper than kMaxJsonDepth.
// nlohmann's parser is iterative, but every later walk over the parsed value
// (copy, dump, compare, destroy) recurses once a level: 200,000 levels
// overflowed keelctl's stack, and a tampered state file keeld's (security
// review L2). Text that is no JSON at all is the parser's to refuse.
inline bool jsonNestedTooDeep(std::string_view text) {
  size_t depth = 0;
  bool inString = false, escaped = false;
  for (char c : text) {
    if (inString) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') inString = false;
    } else if (c == '"') {
      inString = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxJsonDepth) return true;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return false;
}

}  // namespace keel

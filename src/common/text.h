// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace keel {

// "a, b, c" of a list of names (strings or string views), for messages; ""
// for none.
template <typename Names>
std::string commaList(const Names& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + std::string(n);
  return out;
}

// `s` for a message: `"` and `\` escaped, and every byte outside printable
// ASCII (control characters, DEL, any byte of a multi-byte character) as
// \xHH, so a value quoted in an error can neither break the line, move the
// terminal's cursor nor forge a line of its own; cut at `limit` bytes with
// "...".
inline std::string printable(std::string_view s, size_t limit = std::string_view::npos) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  size_t n = 0;
  for (unsigned char c : s) {
    if (++n > limit) {
      out += "...";
      break;
    }
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

}  // namespace keel

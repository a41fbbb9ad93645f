// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <charconv>
#include <cstddef>
#include <cstdint>
#include <optional>
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

// A span of whole seconds as keelctl's tables and keeld's warnings write
// it: "42s", "4m12s", "3h05m", "2d04h"; "-" for a negative one (unknown).
inline std::string ageText(long long s) {
  if (s < 0) return "-";
  auto two = [](long long v) { return (v < 10 ? "0" : "") + std::to_string(v); };
  if (s < 60) return std::to_string(s) + "s";
  if (s < 3600) return std::to_string(s / 60) + "m" + two(s % 60) + "s";
  if (s < 86400) return std::to_string(s / 3600) + "h" + two(s / 60 % 60) + "m";
  return std::to_string(s / 86400) + "d" + two(s / 3600 % 24) + "h";
}

// `c` as \xHH (two lower-case hex digits), appended to `out`: how printable()
// and keelctl's visibleText() show a byte they escape.
inline void appendHexEscape(std::string& out, unsigned char c) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += "\\x";
  out += kHex[c >> 4];
  out += kHex[c & 15];
}

// `s` for a message: `"` and `\` escaped, and every byte outside printable
// ASCII (control characters, DEL, any byte of a multi-byte character) as
// \xHH, so a value quoted in an error can neither break the line, move the
// terminal's cursor nor forge a line of its own; cut at `limit` bytes with
// "...".
inline std::string printable(std::string_view s, size_t limit = std::string_view::npos) {
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
      appendHexEscape(out, c);
    }
  }
  return out;
}

// The length of the valid UTF-8 sequence at s[i], with its code point in
// `cp`; 0 if none starts there (a stray continuation byte, an overlong or
// cut sequence, a surrogate, past U+10FFFF).
inline size_t decodeUtf8(std::string_view s, size_t i, char32_t& cp) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(s[i + k]); };
  const unsigned char lead = byte(0);
  size_t n = 0;
  char32_t least = 0;
  if (lead < 0x80) {
    cp = lead;
    return 1;
  }
  if (lead >= 0xc2 && lead <= 0xdf) {
    n = 2, cp = lead & 0x1f, least = 0x80;
  } else if (lead >= 0xe0 && lead <= 0xef) {
    n = 3, cp = lead & 0x0f, least = 0x800;
  } else if (lead >= 0xf0 && lead <= 0xf4) {
    n = 4, cp = lead & 0x07, least = 0x10000;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    if ((byte(k) & 0xc0) != 0x80) return 0;
    cp = cp << 6 | (byte(k) & 0x3f);
  }
  if (cp < least || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return n;
}

// A character that acts on a terminal or makes a line read as other text:
// the C0 controls, DEL, the C1 controls (U+0080..U+009F: NEL breaks a
// line), the line and paragraph separators (U+2028, U+2029) and the
// bidirectional marks, overrides and isolates (U+061C, U+200E, U+200F,
// U+202A..U+202E, U+2066..U+2069) (input review L3). keeld refuses them in
// a drain reason (api::isValidDrainReason); keelctl shows them escaped
// (cli::visibleText).
inline bool isHiddenCodePoint(char32_t cp) {
  return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || cp == 0x061c || cp == 0x200e || cp == 0x200f ||
         (cp >= 0x2028 && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069);
}

// A character that takes no room on the screen: ZERO WIDTH SPACE,
// NON-JOINER and JOINER (U+200B..U+200D), WORD JOINER (U+2060) and ZERO
// WIDTH NO-BREAK SPACE (U+FEFF, the byte order mark). Two names that differ
// only by one look the same, so keelctl shows them escaped
// (cli::visibleText). Not isHiddenCodePoint(): they neither act on a
// terminal nor reorder a line, and ZWJ and ZWNJ are parts of text (emoji
// sequences such as U+1F469 U+200D U+1F4BB; Persian and Indic spelling), so
// keeld keeps taking them in a drain reason.
inline bool isZeroWidthCodePoint(char32_t cp) {
  return (cp >= 0x200b && cp <= 0x200d) || cp == 0x2060 || cp == 0xfeff;
}

// A whole decimal number as keel reads one from a file, a request or a
// command line: digits only, no sign, no leading zero. YAML 1.1 and C read
// "010" as octal 8 and a plain decimal read gives 10; keel refuses it rather
// than guess which was meant (leadingZero() tells the caller to say so).
// nullopt for anything else, or past 2^64 - 1.
inline std::optional<uint64_t> parseDecimal(std::string_view s) {
  if (s.empty() || (s.size() > 1 && s[0] == '0')) return std::nullopt;
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return v;
}

// Whether s is digits with a leading zero ("010"): the one form
// parseDecimal() refuses that a message should explain.
inline bool leadingZero(std::string_view s) {
  if (s.size() < 2 || s[0] != '0') return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  return true;
}

// What a refusal of a leading-zero number adds to its message.
inline constexpr std::string_view kLeadingZeroNote = " (no leading zeros: YAML 1.1 reads 010 as octal 8)";

}  // namespace keel

// SPDX-License-Identifier: Apache-2.0
#include "common/duration.h"

#include <charconv>
#include <cstdint>
#include <limits>

namespace keel {

std::optional<std::chrono::milliseconds> parseDurationText(std::string_view text) {
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  if (digits == 0) return std::nullopt;
  const std::string_view unit = text.substr(digits);
  uint64_t scale = 0;
  if (unit == "ms") {
    scale = 1;
  } else if (unit == "s") {
    scale = 1000;
  } else if (unit == "m") {
    scale = 60'000;
  } else if (unit == "h") {
    scale = 3'600'000;
  } else {
    return std::nullopt;
  }
  uint64_t n = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + digits, n);
  if (ec != std::errc() || end != text.data() + digits) return std::nullopt;  // more than 2^64-1
  constexpr uint64_t kMaxMs = std::numeric_limits<std::chrono::milliseconds::rep>::max();
  if (n > kMaxMs / scale) return std::nullopt;
  return std::chrono::milliseconds(static_cast<std::chrono::milliseconds::rep>(n * scale));
}

std::string formatDurationText(std::chrono::milliseconds d) {
  const int64_t ms = d.count() > 0 ? d.count() : 0;
  if (ms == 0) return "0s";
  if (ms % 3'600'000 == 0) return std::to_string(ms / 3'600'000) + "h";
  if (ms % 60'000 == 0) return std::to_string(ms / 60'000) + "m";
  if (ms % 1'000 == 0) return std::to_string(ms / 1'000) + "s";
  return std::to_string(ms) + "ms";
}

}  // namespace keel

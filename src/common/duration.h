// SPDX-License-Identifier: Apache-2.0
// Durations as keel.yaml writes them: an integer and one unit, "250ms",
// "30s", "2m", "1h". One parser for every duration in the file (the node's
// idle timeouts, the health checks' interval and timeout), so they all take
// the same units; each caller checks its own range and words its own error,
// naming kDurationUnits.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace keel {

// The units parseDurationText takes, for error messages.
inline constexpr std::string_view kDurationUnits = "ms, s, m or h";

// Digits then exactly one of ms, s, m, h: no sign, space, fraction or
// second unit. 0 parses (the caller's minimum refuses it, with a message
// that says so). nullopt if malformed, or too large for int64 milliseconds
// (checked before multiplying, so no value wraps to a small one).
std::optional<std::chrono::milliseconds> parseDurationText(std::string_view text);

// The other way: in the largest unit that holds it exactly ("90s", "2m",
// "1500ms", "0s"), so parseDurationText gives it back. Negative: "0s".
std::string formatDurationText(std::chrono::milliseconds d);

}  // namespace keel

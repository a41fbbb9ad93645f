// SPDX-License-Identifier: Apache-2.0
// common/duration.h: the one parser of keel.yaml durations. Ranges are the
// callers' (node idle timeouts in config.cc, health checks in
// health_yaml.cc); this is only what a duration looks like.
#include <gtest/gtest.h>

#include "common/duration.h"

namespace keel {
namespace {

using std::chrono::milliseconds;

TEST(Duration, AnIntegerAndOneUnit) {
  EXPECT_EQ(parseDurationText("100ms"), milliseconds(100));
  EXPECT_EQ(parseDurationText("1s"), std::chrono::seconds(1));
  EXPECT_EQ(parseDurationText("2m"), std::chrono::minutes(2));
  EXPECT_EQ(parseDurationText("1h"), std::chrono::hours(1));
  EXPECT_EQ(parseDurationText("168h"), std::chrono::hours(168));
  EXPECT_EQ(parseDurationText("0s"), milliseconds(0)) << "0 parses: the caller's minimum words the refusal";
  EXPECT_EQ(parseDurationText("007s"), std::chrono::seconds(7));
  EXPECT_EQ(kDurationUnits, "ms, s, m or h");
}

// What health.show writes reads back as the same duration.
TEST(Duration, FormatsInTheLargestExactUnitAndReadsBack) {
  EXPECT_EQ(formatDurationText(milliseconds(1500)), "1500ms");
  EXPECT_EQ(formatDurationText(milliseconds(1000)), "1s");
  EXPECT_EQ(formatDurationText(milliseconds(90'000)), "90s");
  EXPECT_EQ(formatDurationText(milliseconds(120'000)), "2m");
  EXPECT_EQ(formatDurationText(milliseconds(7'200'000)), "2h");
  EXPECT_EQ(formatDurationText(milliseconds(0)), "0s");
  EXPECT_EQ(formatDurationText(milliseconds(-5)), "0s");
  for (int64_t ms : {1, 250, 1000, 61'000, 3'600'000, 86'400'123})
    EXPECT_EQ(parseDurationText(formatDurationText(milliseconds(ms))), milliseconds(ms)) << ms;
}

TEST(Duration, RefusesAnythingElse) {
  for (const char* bad : {"", "1", "s", "ms", "h", "1.5s", "-1s", "+1s", " 1s", "1s ", "1 s", "1d", "1w", "1us",
                          "1ns", "1S", "1H", "1MS", "1sm", "1hs", "1ms5", "0x10s", "1e3ms"}) {
    EXPECT_FALSE(parseDurationText(bad)) << '"' << bad << '"';
  }
}

// Checked before multiplying: 5124095576031h is 2^64 + 2048384 ms, which
// would wrap to about 34 minutes; 2^64 itself does not fit the integer.
TEST(Duration, RefusesWhatDoesNotFitInt64Milliseconds) {
  EXPECT_EQ(parseDurationText("9223372036854775807ms"), milliseconds(INT64_MAX));
  EXPECT_FALSE(parseDurationText("9223372036854775808ms"));
  EXPECT_EQ(parseDurationText("2562047788015h"), std::chrono::hours(2562047788015));
  EXPECT_FALSE(parseDurationText("2562047788016h"));
  EXPECT_FALSE(parseDurationText("5124095576031h"));
  EXPECT_FALSE(parseDurationText("18446744073709551616ms"));
  EXPECT_FALSE(parseDurationText("99999999999999999999999999s"));
}

}  // namespace
}  // namespace keel

// SPDX-License-Identifier: Apache-2.0
// The rise/fall state machine and the spec helpers, as tables: no sockets.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "control/health/health_spec.h"
#include "control/health/health_state.h"

namespace keel {
namespace {

struct StateRow {
  const char* description;
  bool initiallyUp;
  uint32_t rise;
  uint32_t fall;
  const char* results;  // '+' success, '-' failure
  const char* states;   // state after each result: 'U' up, 'D' down
};

const StateRow kStateRows[] = {
    {"down, rise 2: two successes bring it up", false, 2, 3, "++", "DU"},
    {"down, rise 2: a failure restarts the run", false, 2, 3, "+-++", "DDDU"},
    {"down, rise 1: one success is enough", false, 1, 3, "+", "U"},
    {"down: failures keep it down", false, 2, 3, "---", "DDD"},
    {"up, fall 3: three failures take it down", true, 2, 3, "---", "UUD"},
    {"up, fall 3: a success restarts the failure run", true, 2, 3, "--+--+---", "UUUUUUUUD"},
    {"up, fall 1: flaps follow every result", true, 1, 1, "-+-+", "DUDU"},
    {"full cycle with hysteresis", false, 3, 2, "+++-+--+++", "DDUUUUDDDU"},
    {"up: successes keep it up", true, 2, 3, "+++", "UUU"},
};

TEST(HealthState, RiseFallTable) {
  for (const StateRow& row : kStateRows) {
    SCOPED_TRACE(row.description);
    HealthState s(row.initiallyUp, row.rise, row.fall);
    std::string results(row.results);
    std::string expected(row.states);
    ASSERT_EQ(results.size(), expected.size());
    std::string got;
    bool prev = s.up();
    for (char r : results) {
      bool changed = s.record(r == '+');
      EXPECT_EQ(changed, s.up() != prev) << "record() must report exactly the transitions";
      prev = s.up();
      got += s.up() ? 'U' : 'D';
    }
    EXPECT_EQ(got, expected);
  }
}

TEST(HealthState, RunsCountPastThresholdAndReset) {
  HealthState s(false, 2, 2);
  for (int i = 0; i < 5; ++i) (void)s.record(true);
  EXPECT_EQ(s.consecutiveOk(), 5u);
  EXPECT_EQ(s.consecutiveFail(), 0u);
  (void)s.record(false);
  EXPECT_EQ(s.consecutiveOk(), 0u);
  EXPECT_EQ(s.consecutiveFail(), 1u);
  s.resetRuns();
  EXPECT_EQ(s.consecutiveFail(), 0u);
  EXPECT_TRUE(s.up()) << "resetRuns keeps the state";
}

TEST(HealthState, NewThresholdsApplyFromTheNextResult) {
  HealthState s(true, 2, 5);
  (void)s.record(false);
  (void)s.record(false);
  s.setThresholds(2, 2);
  EXPECT_TRUE(s.up()) << "no result, no transition";
  EXPECT_TRUE(s.record(false));
  EXPECT_FALSE(s.up());
}

TEST(HealthState, ZeroThresholdsAreTreatedAsOne) {
  HealthState s(false, 0, 0);
  EXPECT_TRUE(s.record(true));
  EXPECT_TRUE(s.record(false));
}

TEST(HealthState, ForceReportsChange) {
  HealthState s(false, 2, 2);
  EXPECT_TRUE(s.force(true));
  EXPECT_FALSE(s.force(true));
}

TEST(HealthSpec, ParseStatusRange) {
  struct Row {
    const char* text;
    bool ok;
    uint16_t min;
    uint16_t max;
  };
  const Row rows[] = {
      {"200", true, 200, 200},       {"200-399", true, 200, 399}, {"100-599", true, 100, 599},
      {"399-200", false, 0, 0},      {"99", false, 0, 0},         {"200-600", false, 0, 0},
      {"", false, 0, 0},             {"2xx", false, 0, 0},        {"200-", false, 0, 0},
      {"-200", false, 0, 0},         {"70000", false, 0, 0},
  };
  for (const Row& r : rows) {
    SCOPED_TRACE(r.text);
    uint16_t lo = 1;
    uint16_t hi = 2;
    Status s = parseStatusRange(r.text, lo, hi);
    EXPECT_EQ(s.isOk(), r.ok) << s.message();
    if (r.ok) {
      EXPECT_EQ(lo, r.min);
      EXPECT_EQ(hi, r.max);
    } else {
      EXPECT_EQ(lo, 1) << "untouched on error";
      EXPECT_NE(s.message().find(r.text), std::string::npos) << "the message quotes the input";
    }
  }
}

TEST(HealthSpec, ParseTypeRoundTrips) {
  for (const char* name : {"none", "tcp", "http", "udp"}) {
    auto t = parseHealthType(name);
    ASSERT_TRUE(t) << name;
    EXPECT_STREQ(toString(*t), name);
  }
  EXPECT_FALSE(parseHealthType("TCP"));
  EXPECT_FALSE(parseHealthType("icmp"));
}

TEST(HealthSpec, FormatDuration) {
  EXPECT_EQ(formatDuration(HealthDuration(1000)), "1s");
  EXPECT_EQ(formatDuration(HealthDuration(250)), "250ms");
  EXPECT_EQ(formatDuration(HealthDuration(1500)), "1500ms");
}

HealthTarget validTarget() {
  HealthTarget t;
  t.service = "web";
  t.address = *IpAddress::parse("10.0.0.5");
  t.port = 80;
  return t;
}

TEST(HealthSpec, ValidateNamesEveryProblemAndWhere) {
  HealthTarget t = validTarget();
  EXPECT_TRUE(validateHealthTarget(t).isOk());

  t.spec.type = HealthCheckSpec::Type::Http;
  t.spec.path = "healthz";
  t.spec.rise = 0;
  t.spec.statusMin = 500;
  t.spec.statusMax = 200;
  t.spec.source = *IpAddress::parse("::1");
  Status s = validateHealthTarget(t, "service web real 10.0.0.5");
  ASSERT_FALSE(s.isOk());
  // Each problem names its key of the health block.
  for (const char* part : {"service web real 10.0.0.5: health.source: ::1 is not the same family as 10.0.0.5",
                           "; health.rise: must be >= 1", "; health.path: must start with '/'",
                           "; health.expect: http status range 500-200"}) {
    EXPECT_NE(s.message().find(part), std::string::npos) << part << " missing in: " << s.message();
  }
}

TEST(HealthSpec, ValidateRejectsHeaderInjectionAndZeroPort) {
  HealthTarget t = validTarget();
  t.spec.type = HealthCheckSpec::Type::Http;
  t.spec.path = "/x\r\nX-Evil: 1";
  EXPECT_FALSE(validateHealthTarget(t).isOk());

  HealthTarget u = validTarget();
  u.port = 0;
  EXPECT_FALSE(validateHealthTarget(u).isOk());
  u.spec.port = 8080;  // per-real override supplies the port
  EXPECT_TRUE(validateHealthTarget(u).isOk());
  EXPECT_EQ(u.checkPort(), 8080);
  u.spec.type = HealthCheckSpec::Type::None;
  u.spec.port = 0;
  EXPECT_TRUE(validateHealthTarget(u).isOk()) << "none sends nothing, needs no port";
}

}  // namespace
}  // namespace keel

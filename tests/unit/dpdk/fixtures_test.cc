// SPDX-License-Identifier: Apache-2.0
// The XDP fixture tables (tests/bpf/fixtures.h) through the DPDK worker's
// packet path: same state, same rows, same expected bytes and counters.
//   kPass -> the exception path, frame unchanged
//   kDrop -> nothing sent
//   kTx   -> sent on the port, exactly row.expected
#include <gtest/gtest.h>

#include <cstring>

#include "dataplane/dpdk/worker_path.h"
#include "fixtures.h"

namespace keel::dpdk {
namespace {

using keel::test::FixtureRow;
using keel::test::FixtureState;

const char* const kReasonNames[] = {KEEL_REASON_NAMES};

Verdict toVerdict(keel::test::Verdict v) {
  switch (v) {
    case keel::test::Verdict::kPass: return Verdict::kPass;
    case keel::test::Verdict::kDrop: return Verdict::kDrop;
    case keel::test::Verdict::kTx: return Verdict::kTx;
  }
  return Verdict::kDrop;
}

class Plane {
 public:
  explicit Plane(uint32_t mtu = 1500) : store_(64, 1024, nullptr), worker_(1 << 14, 64, 1024, mtu) {
    FixtureState st = keel::test::fixtureState();
    EXPECT_TRUE(store_.setNode(st.node));
    for (const auto& v : st.vips) EXPECT_TRUE(store_.addVip(v));
    for (const auto& s : st.services) EXPECT_TRUE(store_.upsertService(s.key, s.value));
    for (const auto& b : st.backends) EXPECT_TRUE(store_.upsertBackend(b.id, b.backend));
    for (const auto& r : st.rings) EXPECT_TRUE(store_.publishRing(r.serviceId, r.slots));
  }
  TableStore& store() { return store_; }
  WorkerState& worker() { return worker_; }

  // Runs one row and checks verdict, bytes and counters, as balancer_test does.
  void check(const FixtureRow& row) {
    SCOPED_TRACE(row.description);
    const WorkerCounters& c = worker_.counters;
    keel_counter reasonsBefore[KEEL_R_MAX];
    std::memcpy(reasonsBefore, c.reasons, sizeof reasonsBefore);
    keel_counter svcBefore{}, beBefore{};
    if (row.serviceId >= 0) svcBefore = c.services[row.serviceId];
    if (row.backendId >= 0) beBefore = c.backends[row.backendId];

    // Exactly sized input behind 64 bytes of headroom, like an mbuf.
    std::vector<uint8_t> buf(64 + row.input.size());
    if (!row.input.empty()) std::memcpy(buf.data() + 64, row.input.data(), row.input.size());
    PacketBuf b{buf.data() + 64, static_cast<uint32_t>(row.input.size()), 64};
    PacketResult r = processPacket(*store_.current(), worker_, b, now_ += 1000);
    std::vector<uint8_t> out(b.data, b.data + b.len);

    EXPECT_EQ(r.verdict, toVerdict(row.verdict)) << "want " << keel::test::verdictName(row.verdict);
    EXPECT_EQ(r.reason, row.reason) << "got " << kReasonNames[r.reason] << " want "
                                    << kReasonNames[row.reason];
    if (row.verdict == keel::test::Verdict::kTx) {
      EXPECT_EQ(out, row.expected) << keel::test::hexDiff(out, row.expected);
    } else if (row.verdict == keel::test::Verdict::kPass) {
      EXPECT_EQ(out, row.input) << "PASS must leave the frame unchanged";
    }
    for (uint32_t i = 0; i < KEEL_R_MAX; ++i) {
      uint64_t dp = c.reasons[i].packets - reasonsBefore[i].packets;
      EXPECT_EQ(dp, i == static_cast<uint32_t>(row.reason) ? 1u : 0u) << kReasonNames[i];
    }
    if (row.serviceId >= 0) {
      EXPECT_EQ(c.services[row.serviceId].packets - svcBefore.packets, 1u);
      EXPECT_EQ(c.services[row.serviceId].bytes - svcBefore.bytes, row.input.size());
    }
    if (row.backendId >= 0) {
      EXPECT_EQ(r.backendId, static_cast<uint32_t>(row.backendId));
      EXPECT_EQ(c.backends[row.backendId].packets - beBefore.packets, 1u);
    }
  }

 private:
  TableStore store_;
  WorkerState worker_;
  uint64_t now_ = 1000000000ull;
};

TEST(DpdkFixtures, Rows) {
  Plane p;
  auto rows = keel::test::fixtureRows();
  ASSERT_GT(rows.size(), 60u);
  for (const FixtureRow& row : rows) p.check(row);
}

TEST(DpdkFixtures, RowsTwiceHitTheConnectionTable) {
  Plane p;
  for (int pass = 0; pass < 2; ++pass)
    for (const FixtureRow& row : keel::test::fixtureRows()) p.check(row);
}

// The port MTU rows balancer_test runs on a veth of MTU 1000: the same
// bytes for the ICMP errors and the same drops.
TEST(DpdkFixtures, OverTheMtu) {
  Plane p(1000);
  auto rows = keel::test::mtuRows(1000);
  ASSERT_GE(rows.size(), 10u);
  for (const FixtureRow& row : rows) p.check(row);
}

// node.tunnel_mtu: the same rows on a port far larger (9000) with the path
// toward the reals at 1000, and on a port of 1000 with the path larger
// (the port's rules), as balancer_test runs them.
TEST(DpdkFixtures, OverTheTunnelMtu) {
  for (const auto& [port, tunnel] : {std::pair<uint32_t, uint32_t>{9000, 1000}, {1000, 1200}}) {
    SCOPED_TRACE("port " + std::to_string(port) + ", tunnel " + std::to_string(tunnel));
    Plane p(port);
    FixtureState st = keel::test::fixtureState();
    st.node.tunnel_mtu = tunnel;
    ASSERT_TRUE(p.store().setNode(st.node));
    for (const FixtureRow& row : keel::test::mtuRows(1000)) p.check(row);
  }
}

// Unlike BPF_PROG_TEST_RUN, the worker takes runts shorter than an Ethernet
// header too, so every prefix runs.
TEST(DpdkFixtures, TruncatedAtEveryLength) {
  Plane p;
  auto rows = keel::test::truncationRows();
  ASSERT_GT(rows.size(), 1000u);
  for (const FixtureRow& row : rows) p.check(row);
}

TEST(DpdkFixtures, ConntrackScenarios) {
  for (const keel::test::Scenario& s : keel::test::conntrackScenarios()) {
    SCOPED_TRACE(s.name);
    Plane p;
    for (const keel::test::ScenarioStep& step : s.steps) {
      SCOPED_TRACE(step.description);
      for (const auto& b : step.backendUpdates) ASSERT_TRUE(p.store().upsertBackend(b.id, b.backend));
      for (const auto& r : step.ringUpdates) ASSERT_TRUE(p.store().publishRing(r.serviceId, r.slots));
      p.check(step.row);
    }
  }
}

}  // namespace
}  // namespace keel::dpdk

// SPDX-License-Identifier: Apache-2.0
// The fixture tables (fixtures.h) through the XDP balancer with
// BPF_PROG_TEST_RUN, one packet per call: verdict, output bytes and the
// counters every packet must move (exactly one reason; service and backend
// for forwarded packets).
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <net/if.h>
#include <sched.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <arpa/inet.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>

#include <gtest/gtest.h>
#include <sys/utsname.h>

#include <cstdio>

#include "balancer.skel.h"
#include "balancer_loader.h"
#include "dataplane/xdp/map_elem_counter.h"
#include "fixtures.h"
#include "keel/encap.h"
#include "keel/hash.h"

namespace keel::test {
namespace {

const char* const kReasonNames[] = {KEEL_REASON_NAMES};

int xdpAction(Verdict v) {
  switch (v) {
    case Verdict::kPass: return XDP_PASS;
    case Verdict::kDrop: return XDP_DROP;
    case Verdict::kTx: return XDP_TX;
  }
  return -1;
}

// One field of a per-CPU array's entry `key`, summed over every CPU.
template <typename Value, typename Field>
uint64_t sumOverCpus(int fd, uint32_t key, Field field) {
  const int ncpu = libbpf_num_possible_cpus();
  EXPECT_GT(ncpu, 0);
  std::vector<Value> v(static_cast<size_t>(std::max(ncpu, 0)));
  EXPECT_EQ(bpf_map_lookup_elem(fd, &key, v.data()), 0);
  uint64_t n = 0;
  for (const Value& x : v) n += field(x);
  return n;
}

std::unique_ptr<BalancerLoader> loadFixture(const LoaderOptions& opts = {}) {
  std::string err;
  auto lb = BalancerLoader::load(opts, &err);
  if (!lb) {
    ADD_FAILURE() << err;
    return nullptr;
  }
  std::string e = lb->apply(fixtureState());
  if (!e.empty()) {
    ADD_FAILURE() << e;
    return nullptr;
  }
  return lb;
}

// Runs one row and checks verdict, bytes and counters.
void checkRow(BalancerLoader& lb, const FixtureRow& row, uint32_t ifindex = 0) {
  SCOPED_TRACE(row.description);
  auto before = lb.reasons();
  keel_counter svcBefore{}, beBefore{};
  if (row.serviceId >= 0) svcBefore = lb.service(static_cast<uint32_t>(row.serviceId));
  if (row.backendId >= 0) beBefore = lb.backend(static_cast<uint32_t>(row.backendId));

  RunResult r = lb.run(row.input, 1, ifindex);
  ASSERT_GE(r.action, 0) << "BPF_PROG_TEST_RUN failed: " << r.action;
  EXPECT_EQ(r.action, xdpAction(row.verdict)) << "want " << verdictName(row.verdict);
  if (row.verdict == Verdict::kTx) {
    EXPECT_EQ(r.output, row.expected) << hexDiff(r.output, row.expected);
  } else if (row.verdict == Verdict::kPass) {
    EXPECT_EQ(r.output, row.input) << "PASS must leave the frame unchanged\n" << hexDiff(r.output, row.input);
  }

  auto after = lb.reasons();
  for (uint32_t i = 0; i < KEEL_R_MAX; i++) {
    uint64_t dp = after[i].packets - before[i].packets;
    uint64_t db = after[i].bytes - before[i].bytes;
    if (i == static_cast<uint32_t>(row.reason)) {
      EXPECT_EQ(dp, 1u) << "reason " << kReasonNames[i];
      EXPECT_EQ(db, row.input.size()) << "reason " << kReasonNames[i];
    } else {
      EXPECT_EQ(dp, 0u) << "unexpected reason " << kReasonNames[i] << ", want " << kReasonNames[row.reason];
    }
  }
  if (row.serviceId >= 0) {
    keel_counter s = lb.service(static_cast<uint32_t>(row.serviceId));
    EXPECT_EQ(s.packets - svcBefore.packets, 1u) << "service " << row.serviceId;
    EXPECT_EQ(s.bytes - svcBefore.bytes, row.input.size()) << "service bytes are pre-encap";
  }
  if (row.backendId >= 0) {
    keel_counter b = lb.backend(static_cast<uint32_t>(row.backendId));
    EXPECT_EQ(b.packets - beBefore.packets, 1u) << "backend " << row.backendId;
    EXPECT_EQ(b.bytes - beBefore.bytes, row.input.size());
  }
}

uint64_t sumPackets(BalancerLoader& lb, uint32_t n, bool services) {
  uint64_t s = 0;
  for (uint32_t i = 0; i < n; i++) s += (services ? lb.service(i) : lb.backend(i)).packets;
  return s;
}

// CLOCK_MONOTONIC in ns, the clock of bpf_ktime_get_ns().
uint64_t monotonicNowNs() {
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<uint64_t>(now.tv_sec) * 1000000000ull + static_cast<uint64_t>(now.tv_nsec);
}

// Writes a connection-table entry holding `key` for backend `id` at its
// current generation, seen now.
void holdFlow(BalancerLoader& lb, const keel_flow_key& key, uint32_t id) {
  keel_backend be{};
  ASSERT_EQ(bpf_map_lookup_elem(bpf_map__fd(lb.skel()->maps.backends), &id, &be), 0);
  keel_ct_value held{};
  held.backend_id = id;
  held.gen = be.gen;
  held.last_seen_ns = monotonicNowNs();
  ASSERT_EQ(bpf_map_update_elem(lb.conntrackFd(), &key, &held, BPF_ANY), 0);
}

// Every CPU's connection-table insert limit spent for the next ~146 years
// (node.conntrack_insert_rate on), so no insert is allowed whatever the
// timing and whichever CPU runs the program.
void spendInsertLimits(BalancerLoader& lb) {
  const int ncpu = libbpf_num_possible_cpus();
  ASSERT_GT(ncpu, 0);
  const uint32_t zero = 0;
  const std::vector<keel_ct_insert_limit> spent(static_cast<size_t>(ncpu), keel_ct_insert_limit{UINT64_MAX / 4, 0});
  ASSERT_EQ(bpf_map_update_elem(bpf_map__fd(lb.skel()->maps.ct_insert_limit), &zero, spent.data(), BPF_ANY), 0);
}

TEST(Balancer, FixtureRows) {
  auto lb = loadFixture();
  ASSERT_TRUE(lb);
  auto rows = fixtureRows();
  ASSERT_GT(rows.size(), 60u);
  for (const FixtureRow& row : rows) checkRow(*lb, row);
}

TEST(Balancer, FixtureRowsTwiceHitConntrack) {
  // The second pass goes through connection-table hits instead of ring picks
  // and must produce the same bytes.
  auto lb = loadFixture();
  ASSERT_TRUE(lb);
  for (int pass = 0; pass < 2; pass++)
    for (const FixtureRow& row : fixtureRows()) checkRow(*lb, row);
}

TEST(Balancer, RowsWithoutConntrack) {
  LoaderOptions o;
  o.useConntrack = false;
  auto lb = loadFixture(o);
  ASSERT_TRUE(lb);
  for (const FixtureRow& row : fixtureRows()) checkRow(*lb, row);
}

TEST(Balancer, TruncatedAtEveryLength) {
  auto lb = loadFixture();
  ASSERT_TRUE(lb);
  auto rows = truncationRows();
  ASSERT_GT(rows.size(), 1000u);
  size_t run = 0;
  for (const FixtureRow& row : rows) {
    // BPF_PROG_TEST_RUN refuses XDP input shorter than an Ethernet header
    // (EINVAL), so the kernel decides those runts; the parser's own check is
    // exercised through the DPDK workers, which run the same rows.
    if (row.input.size() < 14) continue;
    checkRow(*lb, row);
    run++;
  }
  EXPECT_GT(run, 1000u);
}

TEST(Balancer, EveryPacketCountedOnce) {
  auto lb = loadFixture();
  ASSERT_TRUE(lb);
  uint64_t n = 0, bytes = 0, tx = 0;
  for (const auto& rows : {fixtureRows(), truncationRows()}) {
    for (const FixtureRow& row : rows) {
      if (row.input.size() < 14) continue;  // refused by BPF_PROG_TEST_RUN
      lb->run(row.input);
      n++;
      bytes += row.input.size();
      if (row.serviceId >= 0) tx++;
    }
  }
  auto reasons = lb->reasons();
  uint64_t gotN = 0, gotBytes = 0;
  for (const auto& c : reasons) {
    gotN += c.packets;
    gotBytes += c.bytes;
  }
  EXPECT_EQ(gotN, n);
  EXPECT_EQ(gotBytes, bytes);
  uint64_t forwarded = reasons[KEEL_R_TX_IPIP].packets + reasons[KEEL_R_TX_L2DSR].packets;
  EXPECT_EQ(forwarded, tx);
  EXPECT_EQ(sumPackets(*lb, 32, true), forwarded);
  EXPECT_EQ(sumPackets(*lb, 32, false), forwarded);
}

TEST(Balancer, ConntrackScenarios) {
  for (const Scenario& s : conntrackScenarios()) {
    SCOPED_TRACE(s.name);
    auto lb = loadFixture();
    ASSERT_TRUE(lb);
    for (const ScenarioStep& step : s.steps) {
      SCOPED_TRACE(step.description);
      for (const auto& b : step.backendUpdates) ASSERT_EQ(lb->upsertBackend(b), "");
      for (const auto& r : step.ringUpdates) ASSERT_EQ(lb->publishRing(r), "");
      checkRow(*lb, step.row);
    }
  }
}

// Idle timeouts: age the flow's entry from userspace instead of sleeping.
TEST(Balancer, IdleTimeoutRepicksFromRing) {
  auto lb = loadFixture();
  ASSERT_TRUE(lb);
  for (uint8_t proto : {KEEL_PROTO_TCP, KEEL_PROTO_UDP}) {
    SCOPED_TRACE(proto == KEEL_PROTO_TCP ? "tcp" : "udp");
    FixtureState st = fixtureState();
    st.node.tcp_idle_timeout_s = 30;
    st.node.udp_idle_timeout_s = 30;
    ASSERT_EQ(lb->setNode(st.node), "");
    uint32_t svc = proto == KEEL_PROTO_TCP ? 0 : 1;
    uint32_t oldBe = svc, newBe = proto == KEEL_PROTO_TCP ? 20 : 21;
    uint16_t dport = proto == KEEL_PROTO_TCP ? 80 : 53;
    PacketBuilder b;
    b.Eth(kLbMac, kRouterMac).IPv4(kClient4, "10.100.0.1");
    if (proto == KEEL_PROTO_TCP) {
      b.Tcp(5555, dport, kTcpAck);  // an established segment: a SYN is never looked up
    } else {
      b.Udp(5555, dport);
    }
    Bytes in = b.Payload("idle").build();
    keel_backend oldReal{}, newReal{};
    for (const auto& be : st.backends) {
      if (be.id == oldBe) oldReal = be.backend;
      if (be.id == newBe) newReal = be.backend;
    }
    FixtureRow toOld{"first packet", in, Verdict::kTx, KEEL_R_TX_IPIP, ipipExpected(in, 14, st.node, oldReal, 0, false), svc, oldBe};
    checkRow(*lb, toOld);
    ASSERT_EQ(lb->publishRing({svc, std::vector<uint32_t>(7, newBe)}), "");
    toOld.description = "within the timeout the entry holds";
    checkRow(*lb, toOld);

    const keel_flow_key key = flowKey(kClient4, "10.100.0.1", 5555, dport, proto);
    keel_ct_value ct{};
    ASSERT_EQ(bpf_map_lookup_elem(lb->conntrackFd(), &key, &ct), 0);
    EXPECT_EQ(ct.backend_id, oldBe);
    EXPECT_EQ(ct.gen, 1u);
    const uint64_t nowNs = monotonicNowNs();
    ASSERT_GT(nowNs, 40ull * 1000000000ull) << "machine up for less than 40 s";
    ct.last_seen_ns = nowNs - 31ull * 1000000000ull;  // idle for 31 s > 30 s
    ASSERT_EQ(bpf_map_update_elem(lb->conntrackFd(), &key, &ct, BPF_EXIST), 0);
    FixtureRow toNew{"idle entry expired: re-picked", in, Verdict::kTx, KEEL_R_TX_IPIP,
                     ipipExpected(in, 14, st.node, newReal, 0, false), svc, newBe};
    checkRow(*lb, toNew);
    ASSERT_EQ(bpf_map_lookup_elem(lb->conntrackFd(), &key, &ct), 0);
    EXPECT_EQ(ct.backend_id, newBe) << "the expired entry is overwritten";

    // Timeout 0 means "never": an old entry still holds.
    st.node.tcp_idle_timeout_s = 0;
    st.node.udp_idle_timeout_s = 0;
    ASSERT_EQ(lb->setNode(st.node), "");
    ASSERT_EQ(lb->publishRing({svc, std::vector<uint32_t>(7, oldBe)}), "");
    ct.last_seen_ns = 1;
    ASSERT_EQ(bpf_map_update_elem(lb->conntrackFd(), &key, &ct, BPF_EXIST), 0);
    toNew.description = "timeout 0: an ancient entry still holds";
    checkRow(*lb, toNew);
    ASSERT_EQ(bpf_map_lookup_elem(lb->conntrackFd(), &key, &ct), 0);
    EXPECT_GT(ct.last_seen_ns, 1u) << "a hit older than 1 s refreshes last_seen";
  }
}

// Another CPU may refresh an entry after this CPU read its clock: a
// last_seen later than `now` is a live entry. (It read as idle for ~2^64 ns
// and the flow was re-picked.) Set from userspace instead of racing CPUs.
TEST(Balancer, EntrySeenAfterThisCpusClockStillHolds) {
  auto lb = loadFixture();
  ASSERT_TRUE(lb);
  FixtureState st = fixtureState();
  st.node.tcp_idle_timeout_s = 30;
  ASSERT_EQ(lb->setNode(st.node), "");
  const uint32_t svc = 0, oldBe = 0, newBe = 20;
  Bytes in = PacketBuilder().Eth(kLbMac, kRouterMac).IPv4(kClient4, "10.100.0.1").Tcp(5556, 80, kTcpAck).Payload("x").build();
  keel_backend oldReal{};
  for (const auto& be : st.backends)
    if (be.id == oldBe) oldReal = be.backend;
  FixtureRow toOld{"first packet", in, Verdict::kTx, KEEL_R_TX_IPIP, ipipExpected(in, 14, st.node, oldReal, 0, false), svc, oldBe};
  checkRow(*lb, toOld);
  ASSERT_EQ(lb->publishRing({svc, std::vector<uint32_t>(7, newBe)}), "");
  const keel_flow_key key = flowKey(kClient4, "10.100.0.1", 5556, 80, KEEL_PROTO_TCP);
  keel_ct_value ct{};
  ASSERT_EQ(bpf_map_lookup_elem(lb->conntrackFd(), &key, &ct), 0);
  ct.last_seen_ns = monotonicNowNs() + 5ull * 1000000000ull;  // "refreshed" after our clock
  ASSERT_EQ(bpf_map_update_elem(lb->conntrackFd(), &key, &ct, BPF_EXIST), 0);
  toOld.description = "an entry seen later than this CPU's clock holds";
  checkRow(*lb, toOld);
  ASSERT_EQ(bpf_map_lookup_elem(lb->conntrackFd(), &key, &ct), 0);
  EXPECT_EQ(ct.backend_id, oldBe);
}

// ICMP errors follow an existing flow but never create one: path-MTU errors
// and the others (port unreachable, time exceeded) alike.
TEST(Balancer, IcmpErrorDoesNotCreateEntries) {
  auto lb = loadFixture();
  ASSERT_TRUE(lb);
  struct Kind {
    uint8_t type, code;
    uint16_t cport;
  };
  for (const Kind& k : {Kind{3, 4, 7777}, Kind{3, 3, 7778}, Kind{11, 0, 7779}}) {
    Bytes in = PacketBuilder().Eth(kLbMac, kRouterMac).IPv4("203.0.113.1", "10.100.0.1")
                   .Icmp(k.type, k.code, k.code == 4 ? 1400 : 0).IPv4("10.100.0.1", kClient4).Tcp(80, k.cport).build();
    RunResult r = lb->run(in);
    EXPECT_EQ(r.action, XDP_TX) << int(k.type) << "/" << int(k.code);
    const keel_flow_key key = flowKey(kClient4, "10.100.0.1", k.cport, 80, KEEL_PROTO_TCP);
    keel_ct_value ct{};
    EXPECT_NE(bpf_map_lookup_elem(lb->conntrackFd(), &key, &ct), 0) << int(k.type) << "/" << int(k.code);
  }
}

// An ICMP error that finds its flow goes to the flow's real but does not
// refresh the entry: a forged error quoting a guessable 5-tuple would keep a
// dead flow's entry alive. The flow's own next packet does refresh it.
TEST(Balancer, IcmpErrorDoesNotRefreshItsFlowsEntry) {
  auto lb = loadFixture();
  ASSERT_TRUE(lb);
  const Bytes flow = PacketBuilder().Eth(kLbMac, kRouterMac).IPv4(kClient4, "10.100.0.1").Tcp(7777, 80).build();
  ASSERT_EQ(lb->run(flow).action, XDP_TX);
  const keel_flow_key key = flowKey(kClient4, "10.100.0.1", 7777, 80, KEEL_PROTO_TCP);
  keel_ct_value ct{};
  ASSERT_EQ(bpf_map_lookup_elem(lb->conntrackFd(), &key, &ct), 0);
  const uint64_t nowNs = monotonicNowNs();
  ASSERT_GT(nowNs, 10ull * 1000000000ull);
  const uint64_t old = nowNs - 5ull * 1000000000ull;  // 5 s ago: a hit would refresh it
  ct.last_seen_ns = old;
  ASSERT_EQ(bpf_map_update_elem(lb->conntrackFd(), &key, &ct, BPF_EXIST), 0);

  keel_ct_value after{};
  for (const auto& [type, code] : {std::pair<uint8_t, uint8_t>{3, 4}, {3, 3}, {11, 0}}) {
    const Bytes err = PacketBuilder().Eth(kLbMac, kRouterMac).IPv4("203.0.113.1", "10.100.0.1")
                          .Icmp(type, code, code == 4 ? 1400 : 0).IPv4("10.100.0.1", kClient4).Tcp(80, 7777).build();
    const RunResult r = lb->run(err);
    EXPECT_EQ(r.action, XDP_TX);
    ASSERT_EQ(bpf_map_lookup_elem(lb->conntrackFd(), &key, &after), 0);
    EXPECT_EQ(after.last_seen_ns, old) << "the error " << int(type) << "/" << int(code) << " refreshed the entry";
    EXPECT_EQ(after.backend_id, ct.backend_id);
  }

  ASSERT_EQ(lb->run(flow).action, XDP_TX);
  ASSERT_EQ(bpf_map_lookup_elem(lb->conntrackFd(), &key, &after), 0);
  EXPECT_GT(after.last_seen_ns, old) << "the flow's own packet refreshes it";
}

// A SYN the insert limit refuses follows the table like any segment: its
// entry cannot be rewritten, so a pick from the ring would split the
// connection (the SYN on one real, its next segments on the entry's). With
// room to insert, the same SYN is picked from the ring and rewrites it.
TEST(Balancer, ASynPastTheInsertRateFollowsItsEntry) {
  auto lb = loadFixture();
  ASSERT_TRUE(lb);
  FixtureState st = fixtureState();
  // The flow is held for backend 20 (the ring of service 0 picks 0).
  const keel_flow_key key = flowKey(kClient4, "10.100.0.1", 30100, 80, KEEL_PROTO_TCP);
  holdFlow(*lb, key, 20);
  st.node.conntrack_insert_rate = 1;
  ASSERT_EQ(lb->setNode(st.node), "");
  spendInsertLimits(*lb);
  const Bytes syn = PacketBuilder().Eth(kLbMac, kRouterMac).IPv4(kClient4, "10.100.0.1").Tcp(30100, 80, kTcpSyn)
                        .build();
  keel_counter before20 = lb->backend(20), before0 = lb->backend(0);
  EXPECT_EQ(lb->run(syn).action, XDP_TX);
  EXPECT_EQ(lb->backend(20).packets - before20.packets, 1u) << "a refused SYN left its entry's real";
  st.node.conntrack_insert_rate = 0;
  ASSERT_EQ(lb->setNode(st.node), "");
  EXPECT_EQ(lb->run(syn).action, XDP_TX);
  EXPECT_EQ(lb->backend(0).packets - before0.packets, 1u) << "a SYN with room to insert follows the ring";
  keel_ct_value after{};
  ASSERT_EQ(bpf_map_lookup_elem(lb->conntrackFd(), &key, &after), 0);
  EXPECT_EQ(after.backend_id, 0u) << "its entry rewritten";
}

// A SYN the ring has no usable real for (10.100.0.5: an empty ring) is
// dropped before the insert limit is asked: no CPU's limit moves and none
// counts a skip, so SYNs to a service with every real down spend no other
// flow's insert; a live service's SYN is then still remembered.
TEST(Balancer, ASynWithNoUsableRealSpendsNoInsert) {
  auto lb = loadFixture();
  ASSERT_TRUE(lb);
  FixtureState st = fixtureState();
  st.node.conntrack_insert_rate = 1;
  ASSERT_EQ(lb->setNode(st.node), "");
  const int ncpu = libbpf_num_possible_cpus();
  ASSERT_GT(ncpu, 0);
  const int limitFd = bpf_map__fd(lb->skel()->maps.ct_insert_limit);
  auto limits = [&] {
    std::vector<keel_ct_insert_limit> v(static_cast<size_t>(ncpu));
    const uint32_t zero = 0;
    EXPECT_EQ(bpf_map_lookup_elem(limitFd, &zero, v.data()), 0);
    return v;
  };
  for (uint16_t sport = 31000; sport < 31003; ++sport) {
    const Bytes dead = PacketBuilder().Eth(kLbMac, kRouterMac).IPv4(kClient4, "10.100.0.5").Tcp(sport, 80, kTcpSyn)
                           .build();
    EXPECT_EQ(lb->run(dead).action, XDP_DROP);
  }
  EXPECT_EQ(lb->reasons()[KEEL_R_DROP_NO_BACKEND].packets, 3u);
  for (const keel_ct_insert_limit& l : limits()) {
    EXPECT_EQ(l.tat, 0u) << "a SYN with no real asked the insert limit";
    EXPECT_EQ(l.skipped, 0u);
  }
  const Bytes live = PacketBuilder().Eth(kLbMac, kRouterMac).IPv4(kClient4, "10.100.0.1").Tcp(31010, 80, kTcpSyn)
                         .build();
  EXPECT_EQ(lb->run(live).action, XDP_TX);
  const keel_flow_key key = flowKey(kClient4, "10.100.0.1", 31010, 80, KEEL_PROTO_TCP);
  keel_ct_value ct{};
  EXPECT_EQ(bpf_map_lookup_elem(lb->conntrackFd(), &key, &ct), 0) << "the live service's SYN was not remembered";
}

// A SYN the limit refuses follows its entry only through the ring: with no
// usable real on the ring (here an empty one: every real drained) it is
// dropped, though its entry's real (backend 0, still VALID) is usable, and
// it asks the limit nothing; a SYN goes by the ring.
TEST(Balancer, ARefusedSynWithNoRingRealIsDropped) {
  auto lb = loadFixture();
  ASSERT_TRUE(lb);
  FixtureState st = fixtureState();
  holdFlow(*lb, flowKey(kClient4, "10.100.0.1", 30200, 80, KEEL_PROTO_TCP), 0);
  const Bytes ack = PacketBuilder().Eth(kLbMac, kRouterMac).IPv4(kClient4, "10.100.0.1").Tcp(30200, 80, kTcpAck)
                        .build();
  ASSERT_EQ(lb->publishRing({0, {}}), "");
  EXPECT_EQ(lb->run(ack).action, XDP_TX) << "the flow keeps its drained real";
  st.node.conntrack_insert_rate = 1;
  ASSERT_EQ(lb->setNode(st.node), "");
  spendInsertLimits(*lb);
  const Bytes syn = PacketBuilder().Eth(kLbMac, kRouterMac).IPv4(kClient4, "10.100.0.1").Tcp(30200, 80, kTcpSyn)
                        .build();
  EXPECT_EQ(lb->run(syn).action, XDP_DROP);
  EXPECT_EQ(lb->reasons()[KEEL_R_DROP_NO_BACKEND].packets, 1u);
  const int limitFd = bpf_map__fd(lb->skel()->maps.ct_insert_limit);
  EXPECT_EQ(sumOverCpus<keel_ct_insert_limit>(limitFd, 0, [](const keel_ct_insert_limit& l) { return l.skipped; }),
            0u)
      << "the SYN asked the limit";
}

// A TCP RST (with or without ACK) whose flow the table does not hold goes
// to the ring's real but writes no entry and asks the insert limit nothing
// (keel_ct_may_insert): forged RSTs cannot fill the table. The flow's next
// segment (an ACK) is inserted as usual, and a RST of a flow the table
// holds follows its entry.
TEST(Balancer, ARstMissIsForwardedButNotRemembered) {
  auto lb = loadFixture();
  ASSERT_TRUE(lb);
  FixtureState st = fixtureState();
  st.node.conntrack_insert_rate = 1000;
  ASSERT_EQ(lb->setNode(st.node), "");
  const int limitFd = bpf_map__fd(lb->skel()->maps.ct_insert_limit);
  auto segment = [](uint16_t sport, uint8_t flags) {
    return PacketBuilder().Eth(kLbMac, kRouterMac).IPv4(kClient4, "10.100.0.1").Tcp(sport, 80, flags).build();
  };
  auto held = [&](uint16_t sport, keel_ct_value* ct = nullptr) {
    const keel_flow_key key = flowKey(kClient4, "10.100.0.1", sport, 80, KEEL_PROTO_TCP);
    keel_ct_value v{};
    const bool found = bpf_map_lookup_elem(lb->conntrackFd(), &key, &v) == 0;
    if (ct) *ct = v;
    return found;
  };
  auto tats = [&] {
    return sumOverCpus<keel_ct_insert_limit>(limitFd, 0, [](const keel_ct_insert_limit& l) { return l.tat; });
  };
  EXPECT_EQ(lb->run(segment(30300, kTcpRst)).action, XDP_TX);
  EXPECT_EQ(lb->run(segment(30301, kTcpRst | kTcpAck)).action, XDP_TX);
  EXPECT_EQ(lb->reasons()[KEEL_R_TX_IPIP].packets, 2u) << "a RST miss goes to the ring's real";
  EXPECT_FALSE(held(30300)) << "a RST miss made an entry";
  EXPECT_FALSE(held(30301)) << "a RST+ACK miss made an entry";
  EXPECT_EQ(tats(), 0u) << "a RST miss asked the insert limit";
  EXPECT_EQ(lb->run(segment(30300, kTcpAck)).action, XDP_TX);
  keel_ct_value ct{};
  ASSERT_TRUE(held(30300, &ct)) << "the flow's ACK was not remembered";
  EXPECT_NE(tats(), 0u);
  // Held for another real of the service now (0 and 20 both serve it): the
  // RST follows the entry, not the ring.
  const uint32_t other = ct.backend_id == 20 ? 0 : 20;
  holdFlow(*lb, flowKey(kClient4, "10.100.0.1", 30300, 80, KEEL_PROTO_TCP), other);
  const keel_counter before = lb->backend(other);
  EXPECT_EQ(lb->run(segment(30300, kTcpRst)).action, XDP_TX);
  EXPECT_EQ(lb->backend(other).packets - before.packets, 1u) << "a held flow's RST left its entry's real";
}

// node.conntrack_insert_rate: past it a flow the table does not hold is
// forwarded by the ring but not written into it, and the refused insert is
// counted per CPU in ct_insert_limit (per packet: such a flow tries again
// with each packet). Every CPU's limit is preloaded as spent for the next
// ~146 years, so no insert is allowed whatever the timing; then at 0 (the
// default) every new flow is remembered again.
TEST(Balancer, NewFlowsPastTheInsertRateAreForwardedButNotRemembered) {
  auto lb = loadFixture();
  ASSERT_TRUE(lb);
  FixtureState st = fixtureState();
  st.node.conntrack_insert_rate = 1;
  ASSERT_EQ(lb->setNode(st.node), "");
  spendInsertLimits(*lb);
  const int limitFd = bpf_map__fd(lb->skel()->maps.ct_insert_limit);
  auto flow = [](uint16_t sport) {
    return PacketBuilder().Eth(kLbMac, kRouterMac).IPv4(kClient4, "10.100.0.1").Tcp(sport, 80).build();
  };
  auto held = [&](uint16_t sport) {
    const keel_flow_key key = flowKey(kClient4, "10.100.0.1", sport, 80, KEEL_PROTO_TCP);
    keel_ct_value ct{};
    return bpf_map_lookup_elem(lb->conntrackFd(), &key, &ct) == 0;
  };
  auto skipped = [&] {
    return sumOverCpus<keel_ct_insert_limit>(limitFd, 0, [](const keel_ct_insert_limit& l) { return l.skipped; });
  };
  for (uint16_t sport = 30000; sport < 30005; ++sport) EXPECT_EQ(lb->run(flow(sport)).action, XDP_TX);
  EXPECT_EQ(lb->run(flow(30000)).action, XDP_TX);  // not remembered: refused again
  EXPECT_EQ(lb->reasons()[KEEL_R_TX_IPIP].packets, 6u);
  for (uint16_t sport = 30000; sport < 30005; ++sport) EXPECT_FALSE(held(sport)) << sport;
  EXPECT_EQ(skipped(), 6u);
  // At 0 (the default) every new flow is remembered, the limit not consulted.
  st.node.conntrack_insert_rate = 0;
  ASSERT_EQ(lb->setNode(st.node), "");
  for (uint16_t sport = 30000; sport < 30005; ++sport) EXPECT_EQ(lb->run(flow(sport)).action, XDP_TX);
  for (uint16_t sport = 30000; sport < 30005; ++sport) EXPECT_TRUE(held(sport)) << sport;
  EXPECT_EQ(skipped(), 6u);
}

// KEEL_CT_S_MIDFLOW_MISS: a TCP packet without SYN or RST whose flow the table did
// not hold (no entry, or one idle past its timeout) is counted per CPU in
// stats_conntrack; a SYN, UDP, an ICMP error quoting a TCP flow, a hit and
// an entry held for a real the flow may no longer use (a re-pick keel chose)
// are not.
TEST(Balancer, MidflowMissesCountTcpPacketsPastSynTheTableDidNotHold) {
  auto lb = loadFixture();
  ASSERT_TRUE(lb);
  FixtureState st = fixtureState();
  st.node.tcp_idle_timeout_s = 30;
  ASSERT_EQ(lb->setNode(st.node), "");
  auto misses = [&] {
    return sumOverCpus<uint64_t>(bpf_map__fd(lb->skel()->maps.stats_conntrack), KEEL_CT_S_MIDFLOW_MISS,
                                 [](uint64_t n) { return n; });
  };
  auto tcp = [](uint16_t sport, uint8_t flags) {
    return PacketBuilder().Eth(kLbMac, kRouterMac).IPv4(kClient4, "10.100.0.1").Tcp(sport, 80, flags).build();
  };
  const keel_flow_key key = flowKey(kClient4, "10.100.0.1", 41000, 80, KEEL_PROTO_TCP);
  ASSERT_EQ(misses(), 0u);
  EXPECT_EQ(lb->run(tcp(41000, kTcpAck)).action, XDP_TX);
  EXPECT_EQ(misses(), 1u) << "an ACK of a flow the table never saw";
  EXPECT_EQ(lb->run(tcp(41000, kTcpAck | kTcpPsh)).action, XDP_TX);
  EXPECT_EQ(misses(), 1u) << "the miss inserted it: now a hit";
  EXPECT_EQ(lb->run(tcp(41001, kTcpSyn)).action, XDP_TX);
  EXPECT_EQ(lb->run(tcp(41002, kTcpSyn | kTcpAck)).action, XDP_TX);
  EXPECT_EQ(misses(), 1u) << "a SYN opens its flow";
  EXPECT_EQ(lb->run(PacketBuilder().Eth(kLbMac, kRouterMac).IPv4(kClient4, "10.100.0.1").Udp(41003, 53).build())
                .action,
            XDP_TX);
  EXPECT_EQ(misses(), 1u) << "UDP has no SYN";
  EXPECT_EQ(lb->run(PacketBuilder().Eth(kLbMac, kRouterMac).IPv4("203.0.113.1", "10.100.0.1")
                        .Icmp(3, 4, 1400).IPv4("10.100.0.1", kClient4).Tcp(80, 41004, kTcpAck).build())
                .action,
            XDP_TX);
  EXPECT_EQ(misses(), 1u) << "an ICMP error quoting an unheld TCP flow";

  keel_ct_value ct{};
  ASSERT_EQ(bpf_map_lookup_elem(lb->conntrackFd(), &key, &ct), 0);
  keel_ct_value stale = ct;
  stale.gen = ct.gen + 1;  // held, for its real at another generation: re-picked, not a miss
  ASSERT_EQ(bpf_map_update_elem(lb->conntrackFd(), &key, &stale, BPF_EXIST), 0);
  EXPECT_EQ(lb->run(tcp(41000, kTcpAck)).action, XDP_TX);
  EXPECT_EQ(misses(), 1u) << "an entry held for a real the flow may no longer use";

  const uint64_t nowNs = monotonicNowNs();
  ASSERT_GT(nowNs, 40ull * 1000000000ull) << "machine up for less than 40 s";
  ASSERT_EQ(bpf_map_lookup_elem(lb->conntrackFd(), &key, &ct), 0);
  ct.last_seen_ns = nowNs - 31ull * 1000000000ull;  // idle for 31 s > 30 s
  ct.gen += 1;  // and for its real at another generation: expired first, so not held
  ASSERT_EQ(bpf_map_update_elem(lb->conntrackFd(), &key, &ct, BPF_EXIST), 0);
  EXPECT_EQ(lb->run(tcp(41000, kTcpAck)).action, XDP_TX);
  EXPECT_EQ(misses(), 2u) << "an entry idle past its timeout, whatever its real";
  EXPECT_EQ(lb->run(tcp(41005, kTcpRst)).action, XDP_TX);
  EXPECT_EQ(lb->run(tcp(41006, kTcpRst | kTcpAck)).action, XDP_TX);
  EXPECT_EQ(misses(), 2u) << "a RST ends a connection: a stray one is not a lost flow";
  EXPECT_EQ(lb->run(tcp(41007, kTcpFin | kTcpAck)).action, XDP_TX);
  EXPECT_EQ(misses(), 3u) << "any other packet without SYN";
}

// keel_conntrack_entries: the kernel's element count of the connection
// table, read through the ct_count iterator, follows inserts and deletes
// for each connection-table flavour the loader supports.
// Whether uname's release is at least major.minor.
bool kernelAtLeast(int major, int minor) {
  struct utsname u {};
  int ma = 0, mi = 0;
  if (::uname(&u) != 0 || std::sscanf(u.release, "%d.%d", &ma, &mi) != 2) return true;  // cannot tell: run
  return ma > major || (ma == major && mi >= minor);
}

TEST(Balancer, ConntrackEntryCountFollowsFlows) {
  // bpf_map_sum_elem_count, the kfunc the count reads, is Linux 6.6's;
  // before it keeld shows the count as unknown (Debian 12's stock 6.1).
  if (!kernelAtLeast(6, 6)) GTEST_SKIP() << "the conntrack count needs Linux 6.6 (bpf_map_sum_elem_count)";
  struct Flavour {
    const char* name;
    bpf_map_type type;
    uint32_t flags;
  };
  for (const Flavour& f : {Flavour{"lru", BPF_MAP_TYPE_LRU_HASH, 0},
                           Flavour{"lru no-common", BPF_MAP_TYPE_LRU_HASH, BPF_F_NO_COMMON_LRU}}) {
    SCOPED_TRACE(f.name);
    LoaderOptions opts;
    opts.ctType = f.type;
    opts.ctFlags = f.flags;
    auto lb = loadFixture(opts);
    ASSERT_TRUE(lb);
    std::unique_ptr<MapElemCounter> counter;
    Status s = MapElemCounter::create(lb->conntrackFd(), &counter);
    ASSERT_TRUE(s) << s.message();
    EXPECT_EQ(counter->read(), std::optional<uint64_t>(0));

    constexpr uint16_t kFlows = 97;
    auto flow = [](uint16_t i) {
      return PacketBuilder().Eth(kLbMac, kRouterMac).IPv4(kClient4, "10.100.0.1")
          .Tcp(static_cast<uint16_t>(20000 + i), 80).Payload("ct").build();
    };
    for (uint16_t i = 0; i < kFlows; i++) ASSERT_EQ(lb->run(flow(i)).action, XDP_TX);
    EXPECT_EQ(counter->read(), std::optional<uint64_t>(kFlows));
    // Packets of known flows hit their entries and add none.
    for (uint16_t i = 0; i < kFlows; i += 10) ASSERT_EQ(lb->run(flow(i)).action, XDP_TX);
    EXPECT_EQ(counter->read(), std::optional<uint64_t>(kFlows));
    // Deletes from userspace (as keeld's flushes would) are counted too.
    keel_flow_key key{};
    ASSERT_EQ(bpf_map_get_next_key(lb->conntrackFd(), nullptr, &key), 0);
    ASSERT_EQ(bpf_map_delete_elem(lb->conntrackFd(), &key), 0);
    EXPECT_EQ(counter->read(), std::optional<uint64_t>(kFlows - 1));
  }
}

// One end of a veth pair of `mtu` made in the caller's network namespace
// (a private one: the tests below unshare first); named prefix + pid, its
// peer the same with "b". "" if it could not be made.
std::string vethOfMtu(const std::string& prefix, unsigned mtu) {
  std::string base = prefix + std::to_string(getpid());
  if (base.size() > 12) base.resize(12);
  const std::string m = std::to_string(mtu);
  const std::string cmd = "ip link add " + base + "a mtu " + m + " type veth peer name " + base + "b mtu " + m;
  if (std::system(cmd.c_str()) != 0) {
    ADD_FAILURE() << cmd;
    return "";
  }
  return base + "a";
}

// The MTU check needs a device with a small MTU: a veth pair in a private
// network namespace of this test process (nothing outside it is touched).
// The rows (fixtures.h mtuRows) are the DPDK worker's too (dpdk_fixtures).
TEST(Balancer, EncapBeyondMtuAnsweredOrDropped) {
  if (unshare(CLONE_NEWNET) != 0) {
    if (geteuid() == 0) FAIL() << "unshare(CLONE_NEWNET) failed as root";
    GTEST_SKIP() << "unshare(CLONE_NEWNET) not permitted";
  }
  const std::string veth = vethOfMtu("kmtu", 1000);
  const unsigned ifindex = if_nametoindex(veth.c_str());
  ASSERT_NE(ifindex, 0u);
  auto lb = loadFixture();
  ASSERT_TRUE(lb);
  FixtureState st = fixtureState();
  auto rows = mtuRows(1000);
  ASSERT_GE(rows.size(), 10u);
  for (const FixtureRow& row : rows) checkRow(*lb, row, ifindex);
  // The switch off: no check, no error, the packet is encapsulated.
  {
    LoaderOptions o;
    o.checkMtu = false;
    auto off = loadFixture(o);
    ASSERT_TRUE(off);
    const auto over = *std::find_if(rows.begin(), rows.end(),
                                    [](const FixtureRow& r) { return r.reason == KEEL_R_TX_ICMP_TOO_BIG; });
    RunResult r = off->run(over.input, 1, ifindex);
    EXPECT_EQ(r.action, XDP_TX);
    EXPECT_EQ(off->reasons()[KEEL_R_TX_IPIP].packets, 1u);
    EXPECT_EQ(off->reasons()[KEEL_R_TX_ICMP_TOO_BIG].packets, 0u);
  }
  // The answers are limited per CPU (node_config.icmp_too_big_rate, the
  // shared keel_rate_allow): an answer moves this CPU's icmp_limit time one
  // interval (1 s at rate 1) past the clock, and while that time is ahead
  // (burst 1 at rate 1) a too-big packet stays DROP_TOO_BIG; at rate 0 none
  // is answered. "Ahead" is set rather than waited for: every CPU's time far
  // in the future, so no clock decides the refusal (as in
  // TooBigAnswersAreLimitedPerClient). A fresh program each time (its
  // icmp_limit starts empty), and this thread pinned to one CPU so the
  // answer moves a known CPU's time.
  {
    cpu_set_t before, one;
    ASSERT_EQ(sched_getaffinity(0, sizeof before, &before), 0);
    const int cpu = sched_getcpu();
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    ASSERT_EQ(sched_setaffinity(0, sizeof one, &one), 0);
    const Bytes over = std::find_if(rows.begin(), rows.end(), [](const FixtureRow& r) {
                         return r.reason == KEEL_R_TX_ICMP_TOO_BIG;
                       })->input;
    auto limited = loadFixture();
    ASSERT_TRUE(limited);
    FixtureState slow = fixtureState();
    slow.node.icmp_too_big_rate = 1;
    ASSERT_EQ(limited->setNode(slow.node), "");
    const int ncpu = libbpf_num_possible_cpus();
    ASSERT_GT(ncpu, cpu);
    const int times = bpf_map__fd(limited->skel()->maps.icmp_limit);
    auto cpuTimes = [&] {
      std::vector<__u64> v(static_cast<size_t>(ncpu));
      const uint32_t zero = 0;
      EXPECT_EQ(bpf_map_lookup_elem(times, &zero, v.data()), 0);
      return v;
    };
    // bpf_ktime_get_ns() is CLOCK_MONOTONIC (its NMI-safe reader may differ
    // from clock_gettime's by a little during a clock adjustment: kSlack).
    constexpr __u64 kInterval = 1000000000ull, kSlack = 1000000ull;  // 1 s (rate 1), 1 ms
    const __u64 t0 = monotonicNowNs();
    EXPECT_EQ(limited->run(over, 1, ifindex).action, XDP_TX);
    const __u64 t1 = monotonicNowNs();
    std::vector<__u64> moved = cpuTimes();
    EXPECT_GE(moved[static_cast<size_t>(cpu)], t0 + kInterval - kSlack)
        << "the answer moved this CPU's time one interval past the clock";
    EXPECT_LE(moved[static_cast<size_t>(cpu)], t1 + kInterval + kSlack);
    moved[static_cast<size_t>(cpu)] = 0;
    EXPECT_EQ(moved, std::vector<__u64>(static_cast<size_t>(ncpu), 0)) << "and no other CPU's";
    const std::vector<__u64> ahead(static_cast<size_t>(ncpu), ~0ull / 2);
    const uint32_t zero = 0;
    ASSERT_EQ(bpf_map_update_elem(times, &zero, ahead.data(), BPF_ANY), 0);
    EXPECT_EQ(limited->run(over, 1, ifindex).action, XDP_DROP);
    EXPECT_EQ(limited->reasons()[KEEL_R_TX_ICMP_TOO_BIG].packets, 1u);
    EXPECT_EQ(limited->reasons()[KEEL_R_DROP_TOO_BIG].packets, 1u);
    EXPECT_EQ(cpuTimes(), ahead) << "a refused packet moves no time";
    slow.node.icmp_too_big_rate = 0;
    auto never = loadFixture();
    ASSERT_TRUE(never);
    ASSERT_EQ(never->setNode(slow.node), "");
    EXPECT_EQ(never->run(over, 1, ifindex).action, XDP_DROP);
    EXPECT_EQ(never->reasons()[KEEL_R_DROP_TOO_BIG].packets, 1u);
    EXPECT_EQ(never->reasons()[KEEL_R_TX_ICMP_TOO_BIG].packets, 0u);
    sched_setaffinity(0, sizeof before, &before);
  }
  // l2dsr does not grow the packet: no MTU drop at the MTU.
  Bytes dsr = PacketBuilder().Eth(kLbMac, kRouterMac).IPv4(kClient4, "10.100.0.2").Tcp(4242, 80)
                  .Payload(std::string(960, 'y')).build();
  keel_backend real4{};
  for (const auto& be : st.backends)
    if (be.id == 4) real4 = be.backend;
  checkRow(*lb, {"l2dsr at the MTU", dsr, Verdict::kTx, KEEL_R_TX_L2DSR, l2dsrExpected(dsr, real4), 4, 4}, ifindex);
  std::system(("ip link del " + veth).c_str());
}

// node.tunnel_mtu: a smaller MTU past the balancer's port. The same rows
// as a port of that MTU give (mtuRows), on a port far larger (loopback);
// on a port smaller than it the port's rows hold; and a packet over both
// learns the smaller in one answer.
TEST(Balancer, TunnelMtuBelowThePortIsAnsweredLikeAPortOfThatMtu) {
  {
    auto lb = loadFixture();
    ASSERT_TRUE(lb);
    FixtureState st = fixtureState();
    st.node.tunnel_mtu = 1000;
    ASSERT_EQ(lb->setNode(st.node), "");
    for (const FixtureRow& row : mtuRows(1000)) checkRow(*lb, row);
  }
  if (unshare(CLONE_NEWNET) != 0) {
    if (geteuid() == 0) FAIL() << "unshare(CLONE_NEWNET) failed as root";
    GTEST_SKIP() << "unshare(CLONE_NEWNET) not permitted";
  }
  const std::string veth = vethOfMtu("ktmtu", 1000);
  const unsigned ifindex = if_nametoindex(veth.c_str());
  ASSERT_NE(ifindex, 0u);
  auto lb = loadFixture();
  ASSERT_TRUE(lb);
  FixtureState st = fixtureState();
  st.node.tunnel_mtu = 1200;  // larger than the port: the port's MTU rules
  ASSERT_EQ(lb->setNode(st.node), "");
  for (const FixtureRow& row : mtuRows(1000)) checkRow(*lb, row, ifindex);

  ASSERT_EQ(std::system(("ip link set " + veth + " mtu 1200").c_str()), 0);
  st.node.tunnel_mtu = 1000;
  ASSERT_EQ(lb->setNode(st.node), "");
  // 1190 + 20 is over the port's 1200 too: the answer reports 1000 - 20.
  const Bytes over = PacketBuilder().Eth(kLbMac, kRouterMac).IPv4(kClient4, "10.100.0.1", {.fragOff = kIpDf})
                         .Tcp(40000, 80).Payload(std::string(1190 - 40, 'p')).build();
  const RunResult r = lb->run(over, 1, ifindex);
  ASSERT_EQ(r.action, XDP_TX);
  ASSERT_GE(r.output.size(), 14u + 20 + 8);
  EXPECT_EQ(r.output[14 + 20], 3);
  EXPECT_EQ((r.output[14 + 26] << 8) | r.output[14 + 27], 980) << "the smaller MTU less the outer header";
  std::system(("ip link del " + veth).c_str());
}

// Each client has a limit of its own too (node_config.icmp_too_big_client_rate,
// the shared keel_icmp_too_big_allow): a client over it is refused without
// spending the CPU's budget, and other clients are still answered. An IPv6
// client is its /64. "Over its limit" is set rather than waited for: the
// client's slot of icmp_client_limit holds a time far ahead on every CPU,
// so no clock enters the test (the DPDK worker test walks the limit itself).
TEST(Balancer, TooBigAnswersAreLimitedPerClient) {
  if (unshare(CLONE_NEWNET) != 0) {
    if (geteuid() == 0) FAIL() << "unshare(CLONE_NEWNET) failed as root";
    GTEST_SKIP() << "unshare(CLONE_NEWNET) not permitted";
  }
  const std::string veth = vethOfMtu("kcli", 1000);
  const unsigned ifindex = if_nametoindex(veth.c_str());
  ASSERT_NE(ifindex, 0u);
  auto lb = loadFixture();
  ASSERT_TRUE(lb);
  ASSERT_EQ(fixtureState().node.icmp_too_big_client_rate, 100u) << "keeld's default";
  const int ncpu = libbpf_num_possible_cpus();
  ASSERT_GT(ncpu, 0);
  const int slots = bpf_map__fd(lb->skel()->maps.icmp_client_limit);
  const int global = bpf_map__fd(lb->skel()->maps.icmp_limit);
  // A UDP datagram with DF to a service of the fixture, 1036 IP bytes: over
  // the MTU of 1000 once encapsulated.
  auto v6 = [](const std::string& client) { return client.find(':') != std::string::npos; };
  constexpr uint16_t kPort = 40000;
  auto over = [&](const std::string& client) {
    PacketBuilder b;
    b.Eth(kLbMac, kRouterMac);
    if (v6(client))
      b.IPv6(client, "fd00:100::1");
    else
      b.IPv4(client, "10.100.0.1", {.fragOff = kIpDf});
    return b.Udp(kPort, 53).Payload(std::string(1000, 'o')).build();
  };
  auto slotOf = [&](const std::string& client) {
    const keel_flow_key k = flowKey(client, v6(client) ? "fd00:100::1" : "10.100.0.1", kPort, 53, KEEL_PROTO_UDP);
    return keel_icmp_client_slot(&k);
  };
  const std::string a4 = kClient4, b4 = "192.0.2.11";
  const std::string a6 = kClient6, a6SameNet = "2001:db8::ffff:1", b6 = "2001:db8:0:1::10";
  ASSERT_EQ(slotOf(a6), slotOf(a6SameNet)) << "one /64, one slot";
  for (const std::string& other : {b4, b6}) {
    ASSERT_NE(slotOf(a4), slotOf(other)) << other;
    ASSERT_NE(slotOf(a6), slotOf(other)) << other;
  }
  const std::vector<__u64> ahead(static_cast<size_t>(ncpu), ~0ull / 2);
  for (const std::string& c : {a4, a6}) {
    const uint32_t slot = slotOf(c);
    ASSERT_EQ(bpf_map_update_elem(slots, &slot, ahead.data(), BPF_ANY), 0);
  }
  auto globalTimes = [&] {
    std::vector<__u64> v(static_cast<size_t>(ncpu));
    uint32_t zero = 0;
    EXPECT_EQ(bpf_map_lookup_elem(global, &zero, v.data()), 0);
    return v;
  };
  const std::vector<__u64> none(static_cast<size_t>(ncpu), 0);
  ASSERT_EQ(globalTimes(), none);

  EXPECT_EQ(lb->run(over(a4), 1, ifindex).action, XDP_DROP);
  EXPECT_EQ(lb->run(over(a6SameNet), 1, ifindex).action, XDP_DROP) << "the /64 of a client over its limit";
  EXPECT_EQ(lb->reasons()[KEEL_R_DROP_TOO_BIG].packets, 2u);
  EXPECT_EQ(lb->reasons()[KEEL_R_TX_ICMP_TOO_BIG].packets, 0u);
  EXPECT_EQ(globalTimes(), none) << "refused by its own limit, a client spends none of the CPU's";
  EXPECT_EQ(lb->run(over(b4), 1, ifindex).action, XDP_TX);
  EXPECT_EQ(lb->run(over(b6), 1, ifindex).action, XDP_TX);
  EXPECT_EQ(lb->reasons()[KEEL_R_TX_ICMP_TOO_BIG].packets, 2u);
  EXPECT_NE(globalTimes(), none);
  // 0: no per-client limit, the global one alone.
  FixtureState st = fixtureState();
  st.node.icmp_too_big_client_rate = 0;
  ASSERT_EQ(lb->setNode(st.node), "");
  EXPECT_EQ(lb->run(over(a4), 1, ifindex).action, XDP_TX);
  std::system(("ip link del " + veth).c_str());
}

}  // namespace
}  // namespace keel::test

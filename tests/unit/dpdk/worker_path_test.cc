// SPDX-License-Identifier: Apache-2.0
// The DPDK worker packet path, without EAL: verdicts, rewrites, connection
// table rules and counters, each checked on the bytes that come out.
#include "dataplane/dpdk/worker_path.h"

#include <gtest/gtest.h>

#include <array>
#include <cstring>
#include <memory>

#include "dataplane/dpdk/conn_persist.h"
#include "keel/encap.h"
#include "keel/maglev_lookup.h"
#include "test_packets.h"

namespace keel::dpdk {
namespace {

using test::Frame;
using test::ip;

constexpr uint32_t kHeadroom = 128;

uint16_t inetSum(const uint8_t* p, size_t n) {
  uint32_t sum = 0;
  for (size_t i = 0; i + 1 < n; i += 2) sum += static_cast<uint32_t>(p[i] << 8 | p[i + 1]);
  if (n & 1) sum += static_cast<uint32_t>(p[n - 1] << 8);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(sum);
}

class WorkerPathTest : public ::testing::Test {
 protected:
  WorkerPathTest() : store_(16, 1024, [this] { ++graces_; }), worker_(1024, 16, 1024, 1500) {
    EXPECT_TRUE(store_.setNode(test::nodeConfig()));
    EXPECT_TRUE(store_.addVip(test::vipKey(vip4_)));
    EXPECT_TRUE(store_.addVip(test::vipKey(vip6_)));
  }

  void addService(const IpAddress& vip, uint16_t port, uint8_t proto, uint32_t id,
                  uint32_t flags = 0) {
    keel_service_value v{};
    v.id = id;
    v.flags = flags;
    ASSERT_TRUE(store_.upsertService(test::serviceKey(vip, port, proto), v));
  }
  void ring(uint32_t svc, std::vector<uint32_t> slots) {
    ASSERT_TRUE(store_.publishRing(svc, slots));
  }

  // Service svcId on (vip, port, TCP), its ring full of the one real beId.
  void oneRealService(const IpAddress& vip, uint16_t port, uint32_t svcId, uint32_t beId, const char* real) {
    addService(vip, port, KEEL_PROTO_TCP, svcId);
    ASSERT_TRUE(store_.upsertBackend(beId, test::backend(ip(real), svcId)));
    ring(svcId, std::vector<uint32_t>(7, beId));
  }

  // keel_flow_hash of a frame's flow, its key built from the Frame itself.
  static uint32_t flowHashOf(const Frame& f) {
    const keel_flow_key k = test::flowKey(f);
    return keel_flow_hash(&k);
  }

  struct Out {
    PacketResult r;
    std::vector<uint8_t> bytes;
  };
  // `frame` placed in `mem` behind kHeadroom zero bytes, as in an mbuf.
  static PacketBuf place(std::vector<uint8_t>& mem, const std::vector<uint8_t>& frame) {
    mem.assign(kHeadroom + frame.size(), 0);
    std::memcpy(mem.data() + kHeadroom, frame.data(), frame.size());
    return PacketBuf{mem.data() + kHeadroom, static_cast<uint32_t>(frame.size()), kHeadroom};
  }

  Out run(const std::vector<uint8_t>& in, uint64_t nowNs = 1000) {
    PacketBuf b = place(buf_, in);
    Out o;
    o.r = processPacket(*store_.current(), worker_, b, nowNs);
    o.bytes.assign(b.data, b.data + b.len);
    return o;
  }

  // `frames` through worker_ as one burst (prepareBurst, then
  // processBurst, at nowNs): each packet's result and rewritten bytes.
  std::vector<Out> runBurst(const std::vector<Frame>& frames, uint64_t nowNs) {
    const uint32_t n = static_cast<uint32_t>(frames.size());
    std::vector<std::vector<uint8_t>> mem(n);
    std::vector<PacketBuf> bufs(n);
    std::vector<ParsedPacket> parsed(n);
    std::vector<PacketResult> results(n);
    for (uint32_t i = 0; i < n; ++i) bufs[i] = place(mem[i], test::buildFrame(frames[i]));
    prepareBurst(worker_, bufs.data(), parsed.data(), n);
    processBurst(*store_.current(), worker_, bufs.data(), parsed.data(), n, nowNs, results.data());
    std::vector<Out> out(n);
    for (uint32_t i = 0; i < n; ++i) out[i] = Out{results[i], {bufs[i].data, bufs[i].data + bufs[i].len}};
    return out;
  }
  // The same frames one at a time through `ref`, a worker of their own
  // under the same tables: what packet-by-packet processing gives.
  std::vector<Out> runEach(WorkerState& ref, const std::vector<Frame>& frames, uint64_t nowNs) {
    std::vector<Out> out;
    std::vector<uint8_t> mem;
    for (const Frame& f : frames) {
      PacketBuf b = place(mem, test::buildFrame(f));
      const PacketResult r = processPacket(*store_.current(), ref, b, nowNs);
      out.push_back(Out{r, {b.data, b.data + b.len}});
    }
    return out;
  }

  IpAddress vip4_ = ip("10.0.0.100");
  IpAddress vip6_ = ip("2001:db8::100");
  int graces_ = 0;
  TableStore store_;
  WorkerState worker_;
  std::vector<uint8_t> buf_;
};

TEST_F(WorkerPathTest, NotAVipGoesToTheExceptionPathUnchanged) {
  Frame f{ip("192.168.1.1"), ip("10.0.0.99"), 1000, 80};
  auto in = test::buildFrame(f);
  Out o = run(in);
  EXPECT_EQ(o.r.verdict, Verdict::kPass);
  EXPECT_EQ(o.r.reason, KEEL_R_PASS_NOT_VIP);
  EXPECT_EQ(o.bytes, in);
  EXPECT_EQ(worker_.counters.reasons[KEEL_R_PASS_NOT_VIP].packets, 1u);
  EXPECT_EQ(worker_.counters.reasons[KEEL_R_PASS_NOT_VIP].bytes, in.size());
}

TEST_F(WorkerPathTest, Ipv4InIpv4Encapsulation) {
  oneRealService(vip4_, 80, 1, 5, "10.1.0.5");
  Frame f{ip("192.168.1.1"), vip4_, 1000, 80};
  f.tos = 0x28;
  auto in = test::buildFrame(f);
  Out o = run(in);
  ASSERT_EQ(o.r.verdict, Verdict::kTx);
  EXPECT_EQ(o.r.reason, KEEL_R_TX_IPIP);
  EXPECT_EQ(o.r.backendId, 5u);
  ASSERT_EQ(o.bytes.size(), in.size() + 20);
  const uint8_t nh[6] = {0x02, 0, 0, 0, 0, 0xfe}, local[6] = {0x02, 0, 0, 0, 0, 0xaa};
  EXPECT_EQ(std::memcmp(o.bytes.data(), nh, 6), 0);
  EXPECT_EQ(std::memcmp(o.bytes.data() + 6, local, 6), 0);
  EXPECT_EQ(o.bytes[12], 0x08);
  EXPECT_EQ(o.bytes[13], 0x00);
  const uint8_t* outer = o.bytes.data() + 14;
  EXPECT_EQ(outer[0], 0x45);
  EXPECT_EQ(outer[1], 0x28);  // inner TOS copied
  EXPECT_EQ(outer[2] << 8 | outer[3], static_cast<int>(in.size() - 14 + 20));
  EXPECT_EQ(outer[6], 0x40);  // DF
  EXPECT_EQ(outer[8], 64);
  EXPECT_EQ(outer[9], KEEL_IPPROTO_IPIP);
  EXPECT_EQ(inetSum(outer, 20), 0xffff);  // header checksum valid
  const uint8_t src[4] = {192, 0, 2, 1}, dst[4] = {10, 1, 0, 5};
  EXPECT_EQ(std::memcmp(outer + 12, src, 4), 0);
  EXPECT_EQ(std::memcmp(outer + 16, dst, 4), 0);
  EXPECT_TRUE(std::equal(in.begin() + 14, in.end(), o.bytes.begin() + 34));
  EXPECT_EQ(worker_.counters.services[1].packets, 1u);
  EXPECT_EQ(worker_.counters.backends[5].packets, 1u);
  EXPECT_EQ(worker_.counters.backends[5].bytes, in.size());
}

// Each real's outer header is prepared when the real is written (tables.h,
// BackendSlot); a node change afterwards must reach the packets of reals
// already in place: MACs, tunnel source, and the node's hashed-source flags
// (IPv4 and IPv6).
TEST_F(WorkerPathTest, ANodeChangeReachesTheOuterHeadersOfRealsAlreadyInPlace) {
  oneRealService(vip4_, 80, 1, 5, "10.1.0.5");
  const Frame flow{ip("192.168.1.1"), vip4_, 1000, 80};
  auto in = test::buildFrame(flow);
  Out before = run(in);
  ASSERT_EQ(before.r.reason, KEEL_R_TX_IPIP);
  const uint8_t src1[4] = {192, 0, 2, 1};
  EXPECT_EQ(std::memcmp(before.bytes.data() + 14 + 12, src1, 4), 0);

  keel_node_config node = test::nodeConfig();
  const uint8_t nh[6] = {0x02, 0, 0, 0, 0x11, 0x22}, local[6] = {0x02, 0, 0, 0, 0x33, 0x44};
  std::memcpy(node.next_hop_mac, nh, 6);
  std::memcpy(node.local_mac, local, 6);
  std::memcpy(&node.tunnel_src_v4, ip("198.51.100.7").bytes().data(), 4);
  ASSERT_TRUE(store_.setNode(node));
  Out after = run(in);
  ASSERT_EQ(after.r.reason, KEEL_R_TX_IPIP);
  EXPECT_EQ(std::memcmp(after.bytes.data(), nh, 6), 0);
  EXPECT_EQ(std::memcmp(after.bytes.data() + 6, local, 6), 0);
  const uint8_t src2[4] = {198, 51, 100, 7};
  EXPECT_EQ(std::memcmp(after.bytes.data() + 14 + 12, src2, 4), 0);
  EXPECT_EQ(inetSum(after.bytes.data() + 14, 20), 0xffff);

  // The node now hashes IPv4 outer sources into 198.51.100.0/24.
  node.flags |= KEEL_NODE_F_HASH_SRC_V4;
  std::memcpy(&node.hash_src_v4_prefix, ip("198.51.100.0").bytes().data(), 4);
  std::memcpy(&node.hash_src_v4_mask, ip("255.255.255.0").bytes().data(), 4);
  ASSERT_TRUE(store_.setNode(node));
  Out hashed = run(in);
  ASSERT_EQ(hashed.r.reason, KEEL_R_TX_IPIP);
  const uint8_t last = static_cast<uint8_t>(flowHashOf(flow) >> 24);  // network order: the hash's top byte last
  const uint8_t src3[4] = {198, 51, 100, last};
  EXPECT_EQ(std::memcmp(hashed.bytes.data() + 14 + 12, src3, 4), 0);
  EXPECT_EQ(inetSum(hashed.bytes.data() + 14, 20), 0xffff);

  // And an IPv6 real (6in6): the node now hashes IPv6 outer sources too,
  // the low 32 bits from the flow hash, the rest tunnel_src_v6's.
  oneRealService(vip6_, 80, 2, 6, "2001:db8:1::6");
  const Frame flow6{ip("2001:db8:5::1"), vip6_, 1000, 80};
  auto in6 = test::buildFrame(flow6);
  Out plain6 = run(in6);
  ASSERT_EQ(plain6.r.reason, KEEL_R_TX_IPIP);
  EXPECT_EQ(std::memcmp(plain6.bytes.data() + 14 + 8, ip("2001:db8:ff::1").bytes().data(), 16), 0);
  node.flags |= KEEL_NODE_F_HASH_SRC_V6;
  ASSERT_TRUE(store_.setNode(node));
  Out hashed6 = run(in6);
  ASSERT_EQ(hashed6.r.reason, KEEL_R_TX_IPIP);
  const uint32_t word3 = flowHashOf(flow6);
  EXPECT_EQ(std::memcmp(hashed6.bytes.data() + 14 + 8, ip("2001:db8:ff::1").bytes().data(), 12), 0);
  EXPECT_EQ(std::memcmp(hashed6.bytes.data() + 14 + 8 + 12, &word3, 4), 0);

  // With a /96 of its own (node.hash_source_v6): its 96 bits, then the hash.
  std::memcpy(node.hash_src_v6_prefix, ip("2001:db8:200::").bytes().data(), 12);
  ASSERT_TRUE(store_.setNode(node));
  Out prefixed6 = run(in6);
  ASSERT_EQ(prefixed6.r.reason, KEEL_R_TX_IPIP);
  EXPECT_EQ(std::memcmp(prefixed6.bytes.data() + 14 + 8, ip("2001:db8:200::").bytes().data(), 12), 0);
  EXPECT_EQ(std::memcmp(prefixed6.bytes.data() + 14 + 8 + 12, &word3, 4), 0);
  // Not hashed by the node: tunnel_src_v6 whole, whatever the prefix.
  node.flags &= ~KEEL_NODE_F_HASH_SRC_V6;
  ASSERT_TRUE(store_.setNode(node));
  Out unhashed6 = run(in6);
  EXPECT_EQ(std::memcmp(unhashed6.bytes.data() + 14 + 8, ip("2001:db8:ff::1").bytes().data(), 16), 0);
}

TEST_F(WorkerPathTest, MixedFamiliesPickTheOuterHeaderByTheRealsFamily) {
  addService(vip6_, 53, KEEL_PROTO_UDP, 2);
  addService(vip4_, 53, KEEL_PROTO_UDP, 3);
  ASSERT_TRUE(store_.upsertBackend(7, test::backend(ip("10.1.0.7"), 2)));
  ASSERT_TRUE(store_.upsertBackend(8, test::backend(ip("2001:db8:1::8"), 3)));
  ring(2, {7, 7, 7});
  ring(3, {8, 8, 8});

  Out o6in4 = run(test::buildFrame(Frame{ip("2001:db8:2::1"), vip6_, 5000, 53, KEEL_PROTO_UDP}));
  ASSERT_EQ(o6in4.r.reason, KEEL_R_TX_IPIP);
  EXPECT_EQ(o6in4.bytes[14 + 9], KEEL_IPPROTO_IPV6);

  auto in = test::buildFrame(Frame{ip("192.168.1.1"), vip4_, 5000, 53, KEEL_PROTO_UDP});
  Out o4in6 = run(in);
  ASSERT_EQ(o4in6.r.reason, KEEL_R_TX_IPIP);
  ASSERT_EQ(o4in6.bytes.size(), in.size() + 40);
  EXPECT_EQ(o4in6.bytes[12] << 8 | o4in6.bytes[13], KEEL_ETH_P_IPV6);
  EXPECT_EQ(o4in6.bytes[14] >> 4, 6);
  EXPECT_EQ(o4in6.bytes[14 + 6], KEEL_IPPROTO_IPIP);
  EXPECT_EQ(o4in6.bytes[14 + 7], 64);
  EXPECT_EQ(std::memcmp(o4in6.bytes.data() + 14 + 24, ip("2001:db8:1::8").bytes().data(), 16), 0);
}

TEST_F(WorkerPathTest, VlanTagIsKeptInFrontOfTheOuterHeader) {
  oneRealService(vip4_, 80, 1, 5, "10.1.0.5");
  Frame f{ip("192.168.1.1"), vip4_, 1000, 80};
  f.vlan = 0x0123;
  auto in = test::buildFrame(f);
  Out o = run(in);
  ASSERT_EQ(o.r.reason, KEEL_R_TX_IPIP);
  ASSERT_EQ(o.bytes.size(), in.size() + 20);
  const uint8_t tag[6] = {0x81, 0x00, 0x01, 0x23, 0x08, 0x00};
  EXPECT_EQ(std::memcmp(o.bytes.data() + 12, tag, 6), 0);
  EXPECT_EQ(o.bytes[18], 0x45);
  EXPECT_TRUE(std::equal(in.begin() + 18, in.end(), o.bytes.begin() + 38));
}

TEST_F(WorkerPathTest, L2DsrRewritesOnlyTheMacs) {
  addService(vip4_, 80, KEEL_PROTO_TCP, 1, KEEL_SVC_F_FWD_L2DSR);
  keel_backend be = test::backend(ip("10.1.0.5"), 1);
  ASSERT_TRUE(store_.upsertBackend(5, be));
  ring(1, {5, 5, 5});
  Frame f{ip("192.168.1.1"), vip4_, 1000, 80};
  f.vlan = 7;
  auto in = test::buildFrame(f);
  Out o = run(in);
  ASSERT_EQ(o.r.reason, KEEL_R_TX_L2DSR);
  ASSERT_EQ(o.bytes.size(), in.size());
  EXPECT_EQ(std::memcmp(o.bytes.data(), be.mac, 6), 0);
  EXPECT_EQ(o.bytes[6 + 5], 0xaa);
  EXPECT_TRUE(std::equal(in.begin() + 12, in.end(), o.bytes.begin() + 12));
}

TEST_F(WorkerPathTest, ExactPortBeatsPortZero) {
  addService(vip4_, 0, KEEL_PROTO_TCP, 1);
  addService(vip4_, 443, KEEL_PROTO_TCP, 2);
  ASSERT_TRUE(store_.upsertBackend(1, test::backend(ip("10.1.0.1"), 1)));
  ASSERT_TRUE(store_.upsertBackend(2, test::backend(ip("10.1.0.2"), 2)));
  ring(1, {1, 1, 1});
  ring(2, {2, 2, 2});
  EXPECT_EQ(run(test::buildFrame(Frame{ip("192.168.1.1"), vip4_, 1000, 443})).r.backendId, 2u);
  EXPECT_EQ(run(test::buildFrame(Frame{ip("192.168.1.1"), vip4_, 1000, 8443})).r.backendId, 1u);
  // UDP has no service on this VIP at all.
  Out o = run(test::buildFrame(Frame{ip("192.168.1.1"), vip4_, 1000, 443, KEEL_PROTO_UDP}));
  EXPECT_EQ(o.r.verdict, Verdict::kPass);
  EXPECT_EQ(o.r.reason, KEEL_R_PASS_NO_SERVICE);
}

TEST_F(WorkerPathTest, NoUsableBackendDrops) {
  addService(vip4_, 80, KEEL_PROTO_TCP, 1);
  auto in = test::buildFrame(Frame{ip("192.168.1.1"), vip4_, 1000, 80});
  EXPECT_EQ(run(in).r.reason, KEEL_R_DROP_NO_BACKEND);  // no ring yet
  ring(1, {});
  EXPECT_EQ(run(in).r.reason, KEEL_R_DROP_NO_BACKEND);  // M == 0
  ring(1, {9, 9, 9});
  EXPECT_EQ(run(in).r.reason, KEEL_R_DROP_NO_BACKEND);  // backend 9 never written
  ASSERT_TRUE(store_.upsertBackend(9, test::backend(ip("10.1.0.9"), 4)));
  EXPECT_EQ(run(in).r.reason, KEEL_R_DROP_NO_BACKEND);  // owned by another service
  ASSERT_TRUE(store_.upsertBackend(9, test::backend(ip("10.1.0.9"), 1)));
  Out o = run(in);
  EXPECT_EQ(o.r.verdict, Verdict::kTx);
  EXPECT_EQ(worker_.counters.reasons[KEEL_R_DROP_NO_BACKEND].packets, 4u);
  EXPECT_EQ(worker_.counters.services[1].packets, 1u);  // only what was sent
}

TEST_F(WorkerPathTest, ConnectionTableKeepsFlowsUntilTheGenerationChanges) {
  addService(vip4_, 80, KEEL_PROTO_TCP, 1);
  ASSERT_TRUE(store_.upsertBackend(1, test::backend(ip("10.1.0.1"), 1, 1)));
  ASSERT_TRUE(store_.upsertBackend(2, test::backend(ip("10.1.0.2"), 1, 1)));
  ring(1, {1, 1, 1, 1, 1});
  auto old = test::buildFrame(Frame{ip("192.168.1.1"), vip4_, 1000, 80});
  auto fresh = test::buildFrame(Frame{ip("192.168.1.2"), vip4_, 1000, 80});
  EXPECT_EQ(run(old).r.backendId, 1u);
  // Drain: backend 1 leaves the ring, generation unchanged -> flow stays.
  ring(1, {2, 2, 2, 2, 2});
  EXPECT_EQ(run(old, 2000).r.backendId, 1u);
  EXPECT_EQ(run(fresh, 2000).r.backendId, 2u);
  // Down/removed: generation bumped -> the entry is stale, re-picked.
  ASSERT_TRUE(store_.upsertBackend(1, test::backend(ip("10.1.0.1"), 1, 2)));
  EXPECT_EQ(run(old, 3000).r.backendId, 2u);
  // The re-pick overwrote the entry: back in the ring, the flow stays on 2.
  ring(1, {1, 1, 1, 1, 1});
  EXPECT_EQ(run(old, 4000).r.backendId, 2u);
  // Id reused by another service: the entry's service check fails.
  ASSERT_TRUE(store_.upsertBackend(2, test::backend(ip("10.1.0.2"), 7, 1)));
  EXPECT_EQ(run(old, 5000).r.backendId, 1u);
}

// node.conntrack_insert_rate, per worker: past it a new flow goes to the
// ring's real but is not remembered (counted), so a ring change moves it
// while a remembered flow stays; at rate 20 (bursts of one, one insert each
// 50 ms) the limit refills with time; at 0 nothing is limited.
TEST_F(WorkerPathTest, NewFlowsPastTheInsertRateAreForwardedButNotRemembered) {
  keel_node_config node = test::nodeConfig();
  node.conntrack_insert_rate = 20;
  ASSERT_TRUE(store_.setNode(node));
  addService(vip4_, 80, KEEL_PROTO_TCP, 1);
  ASSERT_TRUE(store_.upsertBackend(1, test::backend(ip("10.1.0.1"), 1, 1)));
  ASSERT_TRUE(store_.upsertBackend(2, test::backend(ip("10.1.0.2"), 1, 1)));
  ring(1, {1, 1, 1, 1, 1});
  auto flow = [&](uint16_t sport) { return test::buildFrame(Frame{ip("192.168.1.1"), vip4_, sport, 80}); };
  const uint64_t t0 = 1'000'000'000;
  for (uint16_t sport = 1000; sport < 1004; ++sport) EXPECT_EQ(run(flow(sport), t0).r.backendId, 1u);
  EXPECT_EQ(worker_.counters.ctInsertsSkipped, 3u);
  EXPECT_EQ(worker_.counters.reasons[KEEL_R_TX_IPIP].packets, 4u);
  EXPECT_EQ(run(flow(1004), t0 + 49'000'000).r.backendId, 1u);  // still within the interval
  EXPECT_EQ(run(flow(1005), t0 + 50'000'000).r.backendId, 1u);  // the next insert's turn
  EXPECT_EQ(worker_.counters.ctInsertsSkipped, 4u);
  // The ring moves: the remembered flows (1000, 1005) stay, the others follow it.
  ring(1, {2, 2, 2, 2, 2});
  const uint64_t t1 = t0 + 10'000'000'000;  // the limit full again, but only for one
  EXPECT_EQ(run(flow(1000), t1).r.backendId, 1u);
  EXPECT_EQ(run(flow(1005), t1).r.backendId, 1u);
  EXPECT_EQ(run(flow(1001), t1).r.backendId, 2u);  // inserted now, on 2
  EXPECT_EQ(run(flow(1002), t1).r.backendId, 2u);  // skipped again
  EXPECT_EQ(worker_.counters.ctInsertsSkipped, 5u);
  node.conntrack_insert_rate = 0;
  ASSERT_TRUE(store_.setNode(node));
  for (uint16_t sport = 2000; sport < 2010; ++sport) EXPECT_EQ(run(flow(sport), t1).r.backendId, 2u);
  EXPECT_EQ(worker_.counters.ctInsertsSkipped, 5u);
}

// A SYN the insert limit refuses follows the table like any segment (its
// entry cannot be rewritten, and its connection's next segments follow the
// entry); with room to insert, a SYN is picked from the ring and rewrites
// it. The ring moves away from the flow's real in between (a drain).
TEST_F(WorkerPathTest, ASynPastTheInsertRateFollowsItsEntry) {
  addService(vip4_, 80, KEEL_PROTO_TCP, 1);
  ASSERT_TRUE(store_.upsertBackend(1, test::backend(ip("10.1.0.1"), 1, 1)));
  ASSERT_TRUE(store_.upsertBackend(2, test::backend(ip("10.1.0.2"), 1, 1)));
  ring(1, {1, 1, 1, 1, 1});
  Frame f{ip("192.168.1.1"), vip4_, 1000, 80};
  const uint64_t t0 = 1'000'000'000;
  EXPECT_EQ(run(test::buildFrame(f), t0).r.backendId, 1u);  // established on 1
  ring(1, {2, 2, 2, 2, 2});
  keel_node_config node = test::nodeConfig();
  node.conntrack_insert_rate = 20;
  ASSERT_TRUE(store_.setNode(node));
  // Spend the limit (each new flow's insert takes it).
  for (uint16_t sport = 2000; sport < 2010; ++sport)
    (void)run(test::buildFrame(Frame{ip("192.168.1.2"), vip4_, sport, 80}), t0);
  const uint64_t skipped = worker_.counters.ctInsertsSkipped;
  ASSERT_GT(skipped, 0u);
  Frame syn = f;
  syn.tcpFlags = KEEL_TCP_SYN;
  EXPECT_EQ(run(test::buildFrame(syn), t0).r.backendId, 1u) << "a refused SYN left its entry's real";
  EXPECT_EQ(worker_.counters.ctInsertsSkipped, skipped + 1) << "counted once";
  EXPECT_EQ(run(test::buildFrame(f), t0).r.backendId, 1u);
  node.conntrack_insert_rate = 0;
  ASSERT_TRUE(store_.setNode(node));
  EXPECT_EQ(run(test::buildFrame(syn), t0).r.backendId, 2u) << "a SYN with room to insert follows the ring";
  EXPECT_EQ(run(test::buildFrame(f), t0).r.backendId, 2u) << "its entry rewritten";
}

// A TCP RST (with or without ACK) whose flow the worker's table does not
// hold goes to the ring's real but writes no entry and asks the insert
// limit nothing (keel_ct_may_insert), as in XDP; the flow's next segment is
// inserted, and a RST of a held flow follows its entry after a ring change.
TEST_F(WorkerPathTest, ARstMissIsForwardedButNotRemembered) {
  keel_node_config node = test::nodeConfig();
  node.conntrack_insert_rate = 1000;
  ASSERT_TRUE(store_.setNode(node));
  oneRealService(vip4_, 80, 1, 1, "10.1.0.1");
  ASSERT_TRUE(store_.upsertBackend(2, test::backend(ip("10.1.0.2"), 1, 1)));
  const uint64_t t0 = 1'000'000'000;
  Frame rst{ip("192.168.1.1"), vip4_, 1000, 80};
  rst.tcpFlags = KEEL_TCP_RST;
  Frame rstAck{ip("192.168.1.1"), vip4_, 1001, 80};
  rstAck.tcpFlags = KEEL_TCP_RST | KEEL_TCP_ACK;
  EXPECT_EQ(run(test::buildFrame(rst), t0).r.backendId, 1u) << "a RST miss goes to the ring's real";
  EXPECT_EQ(run(test::buildFrame(rstAck), t0).r.backendId, 1u);
  EXPECT_EQ(worker_.conns.countLive(), 0u) << "a RST miss made an entry";
  EXPECT_EQ(worker_.ctInsertTat, 0u) << "a RST miss asked the insert limit";
  Frame ack = rst;
  ack.tcpFlags = KEEL_TCP_ACK;
  EXPECT_EQ(run(test::buildFrame(ack), t0).r.backendId, 1u);
  EXPECT_EQ(worker_.conns.countLive(), 1u) << "the flow's ACK was not remembered";
  ring(1, {2, 2, 2, 2, 2});
  EXPECT_EQ(run(test::buildFrame(rst), t0).r.backendId, 1u) << "a held flow's RST left its entry's real";
  EXPECT_EQ(run(test::buildFrame(rstAck), t0).r.backendId, 2u) << "a RST miss follows the ring";
  EXPECT_EQ(worker_.conns.countLive(), 1u);
}

// A SYN the ring has no usable real for is dropped before the insert limit
// is asked: SYNs to a service with every real down spend no other flow's
// insert and are not counted as skipped. At rate 20 (bursts of one) the
// live service's SYN right after them still gets the one insert.
TEST_F(WorkerPathTest, ASynWithNoUsableRealSpendsNoInsert) {
  keel_node_config node = test::nodeConfig();
  node.conntrack_insert_rate = 20;
  ASSERT_TRUE(store_.setNode(node));
  oneRealService(vip4_, 80, 1, 1, "10.1.0.1");
  addService(vip4_, 81, KEEL_PROTO_TCP, 2);  // no ring: every real down
  const uint64_t t0 = 1'000'000'000;
  for (uint16_t sport = 3000; sport < 3003; ++sport) {
    Frame dead{ip("192.168.1.9"), vip4_, sport, 81};
    dead.tcpFlags = KEEL_TCP_SYN;
    EXPECT_EQ(run(test::buildFrame(dead), t0).r.reason, KEEL_R_DROP_NO_BACKEND);
  }
  EXPECT_EQ(worker_.counters.ctInsertsSkipped, 0u) << "a SYN with no real asked the insert limit";
  Frame live{ip("192.168.1.1"), vip4_, 1000, 80};
  live.tcpFlags = KEEL_TCP_SYN;
  EXPECT_EQ(run(test::buildFrame(live), t0).r.backendId, 1u);
  EXPECT_EQ(worker_.counters.ctInsertsSkipped, 0u) << "the SYNs with no real spent the live SYN's insert";
  EXPECT_EQ(worker_.conns.countLive(), 1u) << "the live service's SYN was not remembered";
}

// An ICMP error toward a VIP (frag-needed, packet-too-big; or another type
// and code) quoting the packet `quoted` (a reply the real sent from the VIP
// to the client), as a router on the way back to the client sends it.
std::vector<uint8_t> icmpErrorFor(const IpAddress& router, const Frame& quoted, int type = -1, int code = -1) {
  const bool v6 = quoted.src.isV6();
  const std::vector<uint8_t> q = test::buildFrame(quoted);
  const size_t quoteLen = (v6 ? 40 : 20) + 8;
  Frame e{router, quoted.src};
  e.proto = v6 ? KEEL_IPPROTO_ICMPV6 : KEEL_IPPROTO_ICMP;
  e.icmpType = type >= 0 ? static_cast<uint8_t>(type) : v6 ? KEEL_ICMPV6_PKT_TOOBIG : KEEL_ICMP_DEST_UNREACH;
  e.payload = quoteLen;
  std::vector<uint8_t> out = test::buildFrame(e);
  const size_t icmp = 14 + (v6 ? 40 : 20);
  out[icmp + 1] = static_cast<uint8_t>(code >= 0 ? code : v6 ? 0 : KEEL_ICMP_FRAG_NEEDED);
  std::copy(q.begin() + 14, q.begin() + 14 + static_cast<long>(quoteLen), out.begin() + static_cast<long>(icmp + 8));
  return out;  // checksums left as built: the worker does not check them
}

// KEEL_CT_S_MIDFLOW_MISS, as bpf/lib/conntrack.h counts it: a TCP packet
// without SYN or RST whose flow the worker's table did not hold (no entry, or one
// idle past its timeout); not a SYN, UDP, an ICMP error quoting a TCP flow,
// a hit, nor an entry held for a real the flow may no longer use.
TEST_F(WorkerPathTest, MidflowMissesCountTcpPacketsPastSynTheTableDidNotHold) {
  addService(vip4_, 80, KEEL_PROTO_TCP, 1);
  addService(vip4_, 53, KEEL_PROTO_UDP, 2);
  ASSERT_TRUE(store_.upsertBackend(1, test::backend(ip("10.1.0.1"), 1, 1)));
  ASSERT_TRUE(store_.upsertBackend(2, test::backend(ip("10.1.0.2"), 2, 1)));
  ring(1, {1, 1, 1});
  ring(2, {2, 2, 2});
  auto tcp = [&](uint16_t sport, uint8_t flags) {
    Frame f{ip("192.168.1.1"), vip4_, sport, 80};
    f.tcpFlags = flags;
    return test::buildFrame(f);
  };
  const uint64_t s = 1000000000ull;
  const uint64_t& misses = worker_.counters.ctMidflowMisses;
  EXPECT_EQ(run(tcp(1000, 0x10), 1 * s).r.backendId, 1u);
  EXPECT_EQ(misses, 1u) << "an ACK of a flow the table never saw";
  EXPECT_EQ(run(tcp(1000, 0x18), 1 * s).r.backendId, 1u);
  EXPECT_EQ(misses, 1u) << "the miss inserted it: now a hit";
  EXPECT_EQ(run(tcp(1001, KEEL_TCP_SYN), 1 * s).r.backendId, 1u);
  EXPECT_EQ(run(tcp(1002, KEEL_TCP_SYN | 0x10), 1 * s).r.backendId, 1u);
  EXPECT_EQ(misses, 1u) << "a SYN opens its flow";
  EXPECT_EQ(run(test::buildFrame(Frame{ip("192.168.1.1"), vip4_, 1003, 53, KEEL_PROTO_UDP}), 1 * s).r.backendId, 2u);
  EXPECT_EQ(misses, 1u) << "UDP has no SYN";
  Frame quoted{vip4_, ip("192.168.1.1"), 80, 1004};
  quoted.tcpFlags = 0x10;
  EXPECT_EQ(run(icmpErrorFor(ip("203.0.113.1"), quoted), 1 * s).r.backendId, 1u);
  EXPECT_EQ(misses, 1u) << "an ICMP error quoting an unheld TCP flow";
  // Held for its real at an older generation: re-picked, not a miss.
  ASSERT_TRUE(store_.upsertBackend(1, test::backend(ip("10.1.0.1"), 1, 2)));
  EXPECT_EQ(run(tcp(1000, 0x10), 2 * s).r.backendId, 1u);
  EXPECT_EQ(misses, 1u) << "an entry held for a real the flow may no longer use";
  // Idle past the TCP timeout (test::nodeConfig's), and held for its real
  // at an older generation again: expired first, so not held.
  ASSERT_TRUE(store_.upsertBackend(1, test::backend(ip("10.1.0.1"), 1, 3)));
  const uint64_t idle = uint64_t{test::nodeConfig().tcp_idle_timeout_s} * s;
  ASSERT_GT(idle, 0u);
  EXPECT_EQ(run(tcp(1000, 0x10), 2 * s + idle + s).r.backendId, 1u);
  EXPECT_EQ(misses, 2u) << "an entry idle past its timeout, whatever its real";
  EXPECT_EQ(run(tcp(1005, KEEL_TCP_RST), 2 * s + idle + s).r.backendId, 1u);
  EXPECT_EQ(run(tcp(1006, KEEL_TCP_RST | KEEL_TCP_ACK), 2 * s + idle + s).r.backendId, 1u);
  EXPECT_EQ(misses, 2u) << "a RST ends a connection: a stray one is not a lost flow";
  EXPECT_EQ(run(tcp(1007, KEEL_TCP_FIN | KEEL_TCP_ACK), 2 * s + idle + s).r.backendId, 1u);
  EXPECT_EQ(misses, 3u) << "any other packet without SYN";
}

// An ICMP error that finds its flow goes to the flow's real but does not
// refresh the entry (as in XDP): a forged error quoting a guessable 5-tuple
// would keep a dead flow's entry alive. The flow's own next packet does.
// Nor does an error create an entry. Path-MTU errors and the others alike.
TEST_F(WorkerPathTest, AnIcmpErrorDoesNotRefreshItsFlowsEntry) {
  oneRealService(vip4_, 80, 1, 5, "10.1.0.5");
  const Frame flow{ip("192.168.1.1"), vip4_, 1000, 80};
  const uint64_t s = 1000000000ull;
  ASSERT_EQ(run(test::buildFrame(flow), 1 * s).r.backendId, 5u);
  const keel_flow_key key = test::flowKey(flow);
  keel_ct_value v{};
  ASSERT_TRUE(worker_.conns.peek(key, 1 * s, 0, &v));
  ASSERT_EQ(v.last_seen_ns, 1 * s);

  const Frame reply{vip4_, flow.src, 80, 1000};
  // {type, code}: frag-needed (icmpErrorFor's default), port unreachable, time exceeded.
  const std::pair<int, int> kinds[] = {{-1, -1}, {KEEL_ICMP_DEST_UNREACH, 3}, {KEEL_ICMP_TIME_EXCEEDED, 0}};
  for (const auto& [type, code] : kinds) {
    const Out e = run(icmpErrorFor(ip("192.0.2.254"), reply, type, code), 5 * s);
    EXPECT_EQ(e.r.verdict, Verdict::kTx);
    EXPECT_EQ(e.r.backendId, 5u);
    ASSERT_TRUE(worker_.conns.peek(key, 5 * s, 0, &v));
    EXPECT_EQ(v.last_seen_ns, 1 * s) << "the error " << type << "/" << code << " refreshed the entry";
  }
  // Nor does one create an entry for a flow the table does not hold.
  const Frame other{ip("192.168.1.2"), vip4_, 1000, 80};
  const uint64_t before = worker_.conns.occupied();
  for (const auto& [type, code] : kinds) {
    EXPECT_EQ(run(icmpErrorFor(ip("192.0.2.254"), Frame{vip4_, other.src, 80, 1000}, type, code), 5 * s).r.verdict,
              Verdict::kTx);
    EXPECT_FALSE(worker_.conns.peek(test::flowKey(other), 5 * s, 0, &v)) << type << "/" << code;
  }
  EXPECT_EQ(worker_.conns.occupied(), before);

  ASSERT_EQ(run(test::buildFrame(flow), 6 * s).r.backendId, 5u);
  ASSERT_TRUE(worker_.conns.peek(key, 6 * s, 0, &v));
  EXPECT_EQ(v.last_seen_ns, 6 * s) << "the flow's own packet refreshes it";
}

// RSS hashes an ICMP error by its own addresses (router, VIP), so it reaches
// some worker, rarely the one whose table holds the flow it quotes. The
// worker then looks the flow up in the other workers' tables, read only,
// and the error goes to the flow's real, as in XDP's one shared table; the
// same rules as a hit decide whether that entry counts.
TEST_F(WorkerPathTest, AnIcmpErrorFollowsItsFlowInAnotherWorkersTable) {
  addService(vip4_, 80, KEEL_PROTO_TCP, 1);
  addService(vip6_, 80, KEEL_PROTO_TCP, 2);
  ASSERT_TRUE(store_.upsertBackend(1, test::backend(ip("10.1.0.1"), 1, 1)));
  ASSERT_TRUE(store_.upsertBackend(2, test::backend(ip("10.1.0.2"), 1, 1)));
  ASSERT_TRUE(store_.upsertBackend(3, test::backend(ip("2001:db8:1::3"), 2, 1)));
  ASSERT_TRUE(store_.upsertBackend(4, test::backend(ip("2001:db8:1::4"), 2, 1)));
  ring(1, {1, 1, 1, 1, 1});
  ring(2, {3, 3, 3, 3, 3});
  const IpAddress client4 = ip("192.168.1.1"), client6 = ip("2001:db8:5::1");
  // worker_ holds both flows (on reals 1 and 3); then the rings move away.
  EXPECT_EQ(run(test::buildFrame(Frame{client4, vip4_, 1000, 80})).r.backendId, 1u);
  EXPECT_EQ(run(test::buildFrame(Frame{client6, vip6_, 1000, 80})).r.backendId, 3u);
  ring(1, {2, 2, 2, 2, 2});
  ring(2, {4, 4, 4, 4, 4});
  const auto err4 = icmpErrorFor(ip("192.0.2.254"), Frame{vip4_, client4, 80, 1000});
  const auto err6 = icmpErrorFor(ip("2001:db8:ff::fe"), Frame{vip6_, client6, 80, 1000});

  WorkerState other(1024, 16, 1024, 1500);
  auto send = [&](const std::vector<uint8_t>& in, uint64_t nowNs) {
    std::vector<uint8_t> mem;
    PacketBuf b = place(mem, in);
    return processPacket(*store_.current(), other, b, nowNs);
  };
  // Alone, the other worker only has the ring: the error reaches a real
  // that has no such connection.
  EXPECT_EQ(send(err4, 2000).backendId, 2u);
  EXPECT_EQ(send(err6, 2000).backendId, 4u);
  // With worker_'s table as a peer: the flow's real. The error made no entry
  // in either table.
  other.peers = {&worker_.conns};
  PacketResult r = send(err4, 2000);
  EXPECT_EQ(r.verdict, Verdict::kTx);
  EXPECT_EQ(r.reason, KEEL_R_TX_IPIP);
  EXPECT_EQ(r.backendId, 1u);
  EXPECT_EQ(send(err6, 2000).backendId, 3u);
  EXPECT_EQ(other.conns.occupied(), 0u);
  EXPECT_EQ(worker_.conns.occupied(), 2u);
  // Peer lookups are rate limited (forged errors would cost every worker's
  // table a line each): over the limit an error follows the ring.
  other.peerLookupRate = 1;  // one a second, bursts of one
  other.peerTat = 0;
  EXPECT_EQ(send(err4, 2'000'000'000).backendId, 1u);
  EXPECT_EQ(send(err4, 2'000'000'001).backendId, 2u) << "over the limit";
  EXPECT_EQ(send(err4, 3'000'000'001).backendId, 1u) << "a second later";
  other.peerLookupRate = 0;
  EXPECT_EQ(send(err4, 9'000'000'000).backendId, 2u) << "0: never";
  other.peerLookupRate = 10000;
  other.peerTat = 0;  // the clock of the checks below starts over
  // A peer entry idle past its protocol's timeout does not count.
  const uint64_t idle = snapshotIdleNs(*store_.current(), KEEL_PROTO_TCP);
  ASSERT_GT(idle, 0u);
  EXPECT_EQ(send(err4, 1000 + idle + 1).backendId, 2u);
  // Nor one whose real went down (generation bumped).
  ASSERT_TRUE(store_.upsertBackend(1, test::backend(ip("10.1.0.1"), 1, 2)));
  EXPECT_EQ(send(err4, 3000).backendId, 2u);
  // A flow's own packets never look at a peer's table: they pick from the
  // ring and take an entry of their own.
  ASSERT_TRUE(store_.upsertBackend(1, test::backend(ip("10.1.0.1"), 1, 1)));
  std::vector<uint8_t> mem;
  PacketBuf b = place(mem, test::buildFrame(Frame{client4, vip4_, 1000, 80}));
  EXPECT_EQ(processPacket(*store_.current(), other, b, 4000).backendId, 2u);
  EXPECT_EQ(other.conns.occupied(), 1u);
}

// Each ICMP error that takes the peer lookup is counted once, by what it
// gave: found (the error followed its flow), not found or rate-limited (it
// followed the ring). Errors the worker's own table answers, errors at a
// worker without peers and a flow's own packets take no lookup and count
// nothing.
TEST_F(WorkerPathTest, IcmpPeerLookupsAreCountedByOutcome) {
  addService(vip4_, 80, KEEL_PROTO_TCP, 1);
  ASSERT_TRUE(store_.upsertBackend(1, test::backend(ip("10.1.0.1"), 1, 1)));
  ASSERT_TRUE(store_.upsertBackend(2, test::backend(ip("10.1.0.2"), 1, 1)));
  ring(1, {1, 1, 1, 1, 1});
  const IpAddress held = ip("192.168.1.1"), unknown = ip("192.168.1.9");
  EXPECT_EQ(run(test::buildFrame(Frame{held, vip4_, 1000, 80})).r.backendId, 1u);  // worker_ holds it on 1
  ring(1, {2, 2, 2, 2, 2});
  const auto errHeld = icmpErrorFor(ip("192.0.2.254"), Frame{vip4_, held, 80, 1000});
  const auto errUnknown = icmpErrorFor(ip("192.0.2.254"), Frame{vip4_, unknown, 80, 1000});

  WorkerState other(1024, 16, 1024, 1500);
  auto send = [&](WorkerState& w, const std::vector<uint8_t>& in, uint64_t nowNs) {
    std::vector<uint8_t> mem;
    PacketBuf b = place(mem, in);
    return processPacket(*store_.current(), w, b, nowNs).backendId;
  };
  // {found, not found, rate-limited} so far.
  auto counts = [](const WorkerState& w) {
    return std::array<uint64_t, 3>{w.counters.icmpPeer[kPeerFound], w.counters.icmpPeer[kPeerNotFound],
                                   w.counters.icmpPeer[kPeerRateLimited]};
  };
  using C = std::array<uint64_t, 3>;

  // No peers (one worker): no lookup, nothing counted.
  EXPECT_EQ(send(other, errHeld, 2000), 2u);
  EXPECT_EQ(counts(other), (C{0, 0, 0}));

  other.peers = {&worker_.conns};
  EXPECT_EQ(send(other, errHeld, 2000), 1u);
  EXPECT_EQ(counts(other), (C{1, 0, 0})) << "found in the peer's table";
  EXPECT_EQ(send(other, errUnknown, 2000), 2u);
  EXPECT_EQ(counts(other), (C{1, 1, 0})) << "no table holds the flow";
  // A peer's entry that fails the checks of a hit is not found either.
  ASSERT_TRUE(store_.upsertBackend(1, test::backend(ip("10.1.0.1"), 1, 2)));
  EXPECT_EQ(send(other, errHeld, 3000), 2u);
  EXPECT_EQ(counts(other), (C{1, 2, 0})) << "the peer's entry is of another generation";
  ASSERT_TRUE(store_.upsertBackend(1, test::backend(ip("10.1.0.1"), 1, 1)));

  // Over the rate: counted as refused, and the error follows the ring.
  other.peerLookupRate = 1;  // one a second, bursts of one
  other.peerTat = 0;
  EXPECT_EQ(send(other, errHeld, 2'000'000'000), 1u);
  EXPECT_EQ(send(other, errHeld, 2'000'000'001), 2u);
  EXPECT_EQ(send(other, errUnknown, 2'000'000'002), 2u);
  EXPECT_EQ(counts(other), (C{2, 2, 2}));
  EXPECT_EQ(send(other, errHeld, 3'000'000'001), 1u) << "a second later";
  EXPECT_EQ(counts(other), (C{3, 2, 2}));
  other.peerLookupRate = 0;  // never
  EXPECT_EQ(send(other, errHeld, 9'000'000'000), 2u);
  EXPECT_EQ(counts(other), (C{3, 2, 3}));

  // Neither a flow's own packets nor an error the worker's own table
  // answers take the lookup.
  worker_.peers = {&other.conns};
  EXPECT_EQ(send(worker_, errHeld, 9'000'000'000), 1u);
  EXPECT_EQ(send(worker_, test::buildFrame(Frame{unknown, vip4_, 1000, 80}), 9'000'000'000), 2u);
  EXPECT_EQ(counts(worker_), (C{0, 0, 0}));
  // The verdicts are counted as before: each of the nine errors was
  // forwarded, once under tx_ipip.
  EXPECT_EQ(other.counters.reasons[KEEL_R_TX_IPIP].packets, 9u);
}

// Unreachable and time-exceeded errors are routine (a UDP client that gave
// up answers port unreachable): they take the peer lookup from a budget of
// their own, so however many arrive, path-MTU errors keep theirs and still
// find their flows.
TEST_F(WorkerPathTest, OtherIcmpErrorsNeverSpendThePathMtuLookups) {
  addService(vip4_, 80, KEEL_PROTO_TCP, 1);
  ASSERT_TRUE(store_.upsertBackend(1, test::backend(ip("10.1.0.1"), 1, 1)));
  ASSERT_TRUE(store_.upsertBackend(2, test::backend(ip("10.1.0.2"), 1, 1)));
  ring(1, {1, 1, 1, 1, 1});
  const IpAddress held = ip("192.168.1.1");
  EXPECT_EQ(run(test::buildFrame(Frame{held, vip4_, 1000, 80})).r.backendId, 1u);  // worker_ holds it on 1
  ring(1, {2, 2, 2, 2, 2});
  const Frame reply{vip4_, held, 80, 1000};
  const auto tooBig = icmpErrorFor(ip("192.0.2.254"), reply);
  const auto portUnreachable = icmpErrorFor(ip("192.0.2.254"), reply, KEEL_ICMP_DEST_UNREACH, 3);
  const auto timeExceeded = icmpErrorFor(ip("192.0.2.254"), reply, KEEL_ICMP_TIME_EXCEEDED, 0);

  WorkerState other(1024, 16, 1024, 1500);
  other.peers = {&worker_.conns};
  other.peerLookupRate = 1;  // one a second, bursts of one, per budget
  auto send = [&](const std::vector<uint8_t>& in, uint64_t nowNs) {
    std::vector<uint8_t> mem;
    PacketBuf b = place(mem, in);
    return processPacket(*store_.current(), other, b, nowNs).backendId;
  };
  const uint64_t t = 2'000'000'000;
  EXPECT_EQ(send(portUnreachable, t), 1u) << "an unreachable about a held flow reaches its real";
  EXPECT_EQ(send(timeExceeded, t + 1), 2u) << "their budget spent: the ring";
  EXPECT_EQ(send(portUnreachable, t + 2), 2u);
  EXPECT_EQ(send(tooBig, t + 3), 1u) << "path-MTU discovery's budget is untouched";
  EXPECT_EQ(send(tooBig, t + 4), 2u) << "and spent on its own";
  EXPECT_EQ(other.counters.icmpPeer[kPeerFound], 2u);
  EXPECT_EQ(other.counters.icmpPeer[kPeerRateLimited], 3u);
  EXPECT_EQ(send(timeExceeded, t + 1'000'000'001), 1u) << "a second later";
}

// After a restart into another worker count every worker's table holds a
// copy of each saved flow (conn_persist.h). The copies then age apart:
// the worker the flow's packets reach refreshes its own, or re-picks the
// flow when its copy was evicted, while the others keep the restored one,
// still valid. An ICMP error at a worker whose own copy is gone follows
// the most recently seen copy among its peers, in whatever order the
// peers are listed: the real the flow's packets now go to.
TEST_F(WorkerPathTest, AnIcmpErrorFollowsTheNewestRestoredCopyAmongThePeers) {
  addService(vip4_, 80, KEEL_PROTO_TCP, 1);
  ASSERT_TRUE(store_.upsertBackend(1, test::backend(ip("10.1.0.1"), 1, 1)));
  ASSERT_TRUE(store_.upsertBackend(2, test::backend(ip("10.1.0.2"), 1, 1)));
  ring(1, {1, 1, 1, 1, 1});
  constexpr uint64_t kSec = 1'000'000'000;
  const Frame flow{ip("192.168.1.1"), vip4_, 1000, 80};
  const auto err = icmpErrorFor(ip("192.0.2.254"), Frame{vip4_, flow.src, 80, 1000});
  auto send = [&](WorkerState& w, const std::vector<uint8_t>& in, uint64_t nowNs) {
    std::vector<uint8_t> mem;
    PacketBuf b = place(mem, in);
    return processPacket(*store_.current(), w, b, nowNs).backendId;
  };

  // One worker saved the flow on real 1.
  WorkerState saver(1024, 16, 1024, 1500);
  EXPECT_EQ(send(saver, test::buildFrame(flow), 5 * kSec), 1u);
  const SavedConns saved = exportConns(*store_.current(), {&saver.conns}, 10 * kSec, 0);
  ASSERT_EQ(saved.records.size(), 1u);

  // Three workers whose tables have one bucket per family (capacity 4), so
  // four newer flows evict the restored copy.
  std::vector<std::unique_ptr<WorkerState>> w;
  for (uint64_t seed = 1; seed <= 3; ++seed)
    w.push_back(std::make_unique<WorkerState>(4, 16, 1024, 1500, kHeapConnMemory, seed));
  ring(1, {2, 2, 2, 2, 2});  // real 1 drained: still valid, new flows go to 2
  const ConnRestoreReport rep =
      restoreConns(*store_.current(), {&w[0]->conns, &w[1]->conns, &w[2]->conns}, saved, 20 * kSec, 0);
  ASSERT_TRUE(rep.copiedToAll);
  ASSERT_EQ(rep.loaded, 1u);
  for (auto& x : w) ASSERT_EQ(x->conns.occupied(), 1u);
  auto evict = [&](WorkerState& x, uint64_t nowNs) {
    for (uint16_t i = 0; i < 4; ++i)
      EXPECT_EQ(send(x, test::buildFrame(Frame{ip("192.168.2.1"), vip4_, static_cast<uint16_t>(2000 + i), 80}), nowNs),
                2u);
    keel_ct_value v;
    ASSERT_FALSE(x.conns.peek(test::flowKey(flow), nowNs, 0, &v)) << "the restored copy was evicted";
  };
  // Worker 0 lost its copy; worker 1 too, and then the flow's packets
  // reached it and were picked from the ring (real 2); worker 2 keeps the
  // restored copy (real 1, older).
  evict(*w[0], 21 * kSec);
  evict(*w[1], 21 * kSec);
  EXPECT_EQ(send(*w[1], test::buildFrame(flow), 22 * kSec), 2u);
  for (const auto& peers : {std::vector<const ConnTable*>{&w[1]->conns, &w[2]->conns},
                            std::vector<const ConnTable*>{&w[2]->conns, &w[1]->conns}}) {
    w[0]->peers = peers;
    EXPECT_EQ(send(*w[0], err, 23 * kSec), 2u) << "worker 1's copy, seen last";
  }
  // Then the flow's packets reach worker 2 (RSS moved it), which still
  // holds the restored copy: its refreshed copy is now the newest.
  EXPECT_EQ(send(*w[2], test::buildFrame(flow), 24 * kSec), 1u);
  for (const auto& peers : {std::vector<const ConnTable*>{&w[1]->conns, &w[2]->conns},
                            std::vector<const ConnTable*>{&w[2]->conns, &w[1]->conns}}) {
    w[0]->peers = peers;
    EXPECT_EQ(send(*w[0], err, 25 * kSec), 1u) << "worker 2's copy, seen last";
  }
  EXPECT_EQ(w[0]->counters.icmpPeer[kPeerFound], 4u);
  EXPECT_EQ(w[0]->conns.occupied(), 4u) << "the errors made no entry";
}

// IPv6 flows live in their own table (64-byte entries; IPv4 has 32-byte
// ones): the same rules hold there, and a v4 and a v6 flow never meet.
TEST_F(WorkerPathTest, Ipv6FlowsKeepTheirRealUntilTheGenerationChanges) {
  addService(vip6_, 80, KEEL_PROTO_TCP, 1);
  addService(vip4_, 80, KEEL_PROTO_TCP, 2);
  ASSERT_TRUE(store_.upsertBackend(1, test::backend(ip("2001:db8:1::1"), 1, 1)));
  ASSERT_TRUE(store_.upsertBackend(2, test::backend(ip("2001:db8:1::2"), 1, 1)));
  ASSERT_TRUE(store_.upsertBackend(3, test::backend(ip("10.1.0.3"), 2, 1)));
  ASSERT_TRUE(store_.upsertBackend(4, test::backend(ip("10.1.0.4"), 2, 1)));
  ring(1, {1, 1, 1, 1, 1});
  ring(2, {3, 3, 3, 3, 3});
  auto v6 = test::buildFrame(Frame{ip("2001:db8:5::1"), vip6_, 1000, 80});
  auto v6other = test::buildFrame(Frame{ip("2001:db8:5::2"), vip6_, 1000, 80});
  auto v4 = test::buildFrame(Frame{ip("192.168.1.1"), vip4_, 1000, 80});
  EXPECT_EQ(run(v6).r.backendId, 1u);
  EXPECT_EQ(run(v4).r.backendId, 3u);
  // Drain: both flows stay, new flows take the new rings.
  ring(1, {2, 2, 2, 2, 2});
  ring(2, {4, 4, 4, 4, 4});
  EXPECT_EQ(run(v6, 2000).r.backendId, 1u);
  EXPECT_EQ(run(v4, 2000).r.backendId, 3u);
  EXPECT_EQ(run(v6other, 2000).r.backendId, 2u);
  // Generation bumped: the IPv6 entry is stale and re-picked; IPv4 untouched.
  ASSERT_TRUE(store_.upsertBackend(1, test::backend(ip("2001:db8:1::1"), 1, 2)));
  EXPECT_EQ(run(v6, 3000).r.backendId, 2u);
  EXPECT_EQ(run(v4, 3000).r.backendId, 3u);
}

TEST_F(WorkerPathTest, IdleEntriesExpirePerProtocol) {
  addService(vip4_, 53, KEEL_PROTO_UDP, 1);
  ASSERT_TRUE(store_.upsertBackend(1, test::backend(ip("10.1.0.1"), 1)));
  ASSERT_TRUE(store_.upsertBackend(2, test::backend(ip("10.1.0.2"), 1)));
  ring(1, {1, 1, 1});
  auto in = test::buildFrame(Frame{ip("192.168.1.1"), vip4_, 1000, 53, KEEL_PROTO_UDP});
  const uint64_t s = 1000000000ull;
  EXPECT_EQ(run(in, 1 * s).r.backendId, 1u);
  ring(1, {2, 2, 2});
  EXPECT_EQ(run(in, 20 * s).r.backendId, 1u);  // refreshes last_seen to 20 s
  EXPECT_EQ(run(in, 45 * s).r.backendId, 1u);  // 25 s idle < 30 s
  EXPECT_EQ(run(in, 80 * s).r.backendId, 2u);  // 35 s idle > 30 s: re-picked
}

TEST_F(WorkerPathTest, EchoRequestToAVipIsAnswered) {
  Frame f{ip("192.168.1.1"), vip4_, 0, 0, KEEL_IPPROTO_ICMP};
  auto in = test::buildFrame(f);
  Out o = run(in);
  ASSERT_EQ(o.r.reason, KEEL_R_TX_ICMP_ECHO);
  ASSERT_EQ(o.bytes.size(), in.size());
  EXPECT_EQ(std::memcmp(o.bytes.data(), in.data() + 6, 6), 0);  // MACs swapped
  EXPECT_EQ(std::memcmp(o.bytes.data() + 14 + 12, in.data() + 14 + 16, 4), 0);
  EXPECT_EQ(std::memcmp(o.bytes.data() + 14 + 16, in.data() + 14 + 12, 4), 0);
  EXPECT_EQ(o.bytes[34], 0);  // echo reply
  EXPECT_EQ(inetSum(o.bytes.data() + 14, 20), 0xffff);
  EXPECT_EQ(inetSum(o.bytes.data() + 34, o.bytes.size() - 34), 0xffff);
}

TEST_F(WorkerPathTest, MalformedPacketsAimedAtAVipAreDropped) {
  addService(vip4_, 80, KEEL_PROTO_TCP, 1);
  Frame frag{ip("192.168.1.1"), vip4_, 1000, 80};
  frag.fragOff = KEEL_IP_MF;
  EXPECT_EQ(run(test::buildFrame(frag)).r.reason, KEEL_R_DROP_FRAGMENT);
  auto cut = test::buildFrame(Frame{ip("192.168.1.1"), vip4_, 1000, 80});
  cut.resize(14 + 20 + 10);
  Out o = run(cut);
  EXPECT_EQ(o.r.verdict, Verdict::kDrop);
  EXPECT_EQ(o.r.reason, KEEL_R_DROP_TRUNCATED);
  auto shortFrame = std::vector<uint8_t>(10, 0);
  EXPECT_EQ(run(shortFrame).r.reason, KEEL_R_PASS_TRUNCATED);
}

// Over the MTU once encapsulated: ICMP frag-needed from the VIP with DF,
// DROP_TOO_BIG without (the byte-exact frames are fixtures.h mtuRows, shared
// with XDP). Checksums checked here with this file's own helper.
TEST_F(WorkerPathTest, EncapsulationAboveTheMtuAnswersOrDrops) {
  addService(vip4_, 53, KEEL_PROTO_UDP, 1);
  ASSERT_TRUE(store_.upsertBackend(1, test::backend(ip("10.1.0.1"), 1)));
  ring(1, {1, 1, 1});
  Frame f{ip("192.168.1.1"), vip4_, 1000, 53, KEEL_PROTO_UDP};
  f.payload = 1500 - 28 - 20;  // exactly fits after encapsulation
  f.fragOff = KEEL_IP_DF;
  EXPECT_EQ(run(test::buildFrame(f)).r.reason, KEEL_R_TX_IPIP);
  f.payload += 1;
  f.sport = 1001;
  const std::vector<uint8_t> in = test::buildFrame(f);
  Out o = run(in);
  ASSERT_EQ(o.r.verdict, Verdict::kTx);
  ASSERT_EQ(o.r.reason, KEEL_R_TX_ICMP_TOO_BIG);
  EXPECT_EQ(o.r.backendId, KEEL_INVALID_ID);
  EXPECT_EQ(worker_.counters.services[1].packets, 1u) << "only the packet that fitted";
  ASSERT_EQ(o.bytes.size(), 14u + 20 + 8 + 128);
  EXPECT_EQ(std::memcmp(o.bytes.data(), in.data() + 6, 6), 0);  // back to the sender's MAC
  // From the node's MAC (keel_answer_src_mac), not from the one the frame was sent to.
  EXPECT_EQ(std::memcmp(o.bytes.data() + 6, test::nodeConfig().local_mac, 6), 0);
  EXPECT_NE(std::memcmp(test::nodeConfig().local_mac, in.data(), 6), 0) << "the test's frame goes to another MAC";
  const uint8_t* ip4 = o.bytes.data() + 14;
  EXPECT_EQ(ip4[0], 0x45);
  EXPECT_EQ(ip4[2] << 8 | ip4[3], 20 + 8 + 128);
  EXPECT_EQ(ip4[8], 64);
  EXPECT_EQ(ip4[9], KEEL_IPPROTO_ICMP);
  EXPECT_EQ(std::memcmp(ip4 + 12, in.data() + 14 + 16, 4), 0);  // from the VIP
  EXPECT_EQ(std::memcmp(ip4 + 16, in.data() + 14 + 12, 4), 0);  // to the client
  EXPECT_EQ(inetSum(ip4, 20), 0xffff);
  const uint8_t* icmp = ip4 + 20;
  EXPECT_EQ(icmp[0], 3);
  EXPECT_EQ(icmp[1], 4);
  EXPECT_EQ(icmp[6] << 8 | icmp[7], 1500 - 20);  // next-hop MTU
  EXPECT_EQ(inetSum(icmp, 8 + 128), 0xffff);
  EXPECT_TRUE(std::equal(in.begin() + 14, in.begin() + 14 + 128, icmp + 8));  // the quote
  // Without DF the sender allows fragmenting, which keel does not do.
  f.fragOff = 0;
  f.sport = 1002;
  EXPECT_EQ(run(test::buildFrame(f)).r.reason, KEEL_R_DROP_TOO_BIG);
}

TEST_F(WorkerPathTest, PacketTooBigV6CarriesThePseudoHeaderChecksum) {
  addService(vip6_, 53, KEEL_PROTO_UDP, 1);
  ASSERT_TRUE(store_.upsertBackend(1, test::backend(ip("2001:db8:1::1"), 1)));
  ring(1, {1, 1, 1});
  Frame f{ip("2001:db8:7::1"), vip6_, 1000, 53, KEEL_PROTO_UDP};
  f.vlan = 12;
  f.payload = 1500 - 48 - 40 + 1;  // one byte over the MTU once a v6 outer header is added (the tag does not count)
  const std::vector<uint8_t> in = test::buildFrame(f);
  Out o = run(in);
  ASSERT_EQ(o.r.reason, KEEL_R_TX_ICMP_TOO_BIG);
  ASSERT_EQ(o.bytes.size(), 18u + 40 + 8 + 128);
  EXPECT_EQ(std::memcmp(o.bytes.data() + 12, in.data() + 12, 4), 0);  // the tag as it came
  const uint8_t* ip6 = o.bytes.data() + 18;
  EXPECT_EQ(ip6[0], 0x60);
  EXPECT_EQ(ip6[4] << 8 | ip6[5], 8 + 128);
  EXPECT_EQ(ip6[6], KEEL_IPPROTO_ICMPV6);
  EXPECT_EQ(ip6[7], 64);
  EXPECT_EQ(std::memcmp(ip6 + 8, in.data() + 18 + 24, 16), 0);   // from the VIP
  EXPECT_EQ(std::memcmp(ip6 + 24, in.data() + 18 + 8, 16), 0);   // to the client
  const uint8_t* icmp = ip6 + 40;
  EXPECT_EQ(icmp[0], 2);
  EXPECT_EQ(icmp[4] << 24 | icmp[5] << 16 | icmp[6] << 8 | icmp[7], 1500 - 40);
  // RFC 4443 §2.3: the message plus the pseudo-header sums to 0xffff.
  std::vector<uint8_t> pseudo(ip6 + 8, ip6 + 40);
  const uint8_t tail[8] = {0, 0, 0, 8 + 128, 0, 0, 0, KEEL_IPPROTO_ICMPV6};
  pseudo.insert(pseudo.end(), tail, tail + 8);
  pseudo.insert(pseudo.end(), icmp, icmp + 8 + 128);
  EXPECT_EQ(inetSum(pseudo.data(), pseudo.size()), 0xffff);
}

// The shared limiter (include/keel/encap.h), as both planes call it: a
// burst of rate / 20 back to back, then one answer per 1 / rate seconds.
TEST(IcmpRateLimit, BurstThenOneAnswerPerInterval) {
  __u64 tat = 0;
  const uint64_t t0 = 5'000'000'000ull;  // any clock; the first answer always goes
  EXPECT_EQ(keel_rate_burst(1000), 50u);
  for (int i = 0; i < 50; ++i) EXPECT_TRUE(keel_rate_allow(&tat, t0, 1000)) << "answer " << i;
  EXPECT_FALSE(keel_rate_allow(&tat, t0, 1000)) << "the 51st of a burst";
  EXPECT_FALSE(keel_rate_allow(&tat, t0 + 999'999, 1000)) << "less than 1 ms later";
  EXPECT_TRUE(keel_rate_allow(&tat, t0 + 1'000'000, 1000)) << "1 ms later: one more";
  EXPECT_FALSE(keel_rate_allow(&tat, t0 + 1'000'000, 1000));
  // Idle for a second: a whole burst again, never more.
  const uint64_t t1 = t0 + 2'000'000'000ull;
  int sent = 0;
  while (sent < 1000 && keel_rate_allow(&tat, t1, 1000)) ++sent;
  EXPECT_EQ(sent, 50);
  // Low rates: bursts of one.
  __u64 slow = 0;
  EXPECT_EQ(keel_rate_burst(10), 1u);
  EXPECT_TRUE(keel_rate_allow(&slow, t0, 10));
  EXPECT_FALSE(keel_rate_allow(&slow, t0 + 99'999'999, 10));
  EXPECT_TRUE(keel_rate_allow(&slow, t0 + 100'000'000, 10));
  // Rate 0: never.
  __u64 off = 0;
  EXPECT_FALSE(keel_rate_allow(&off, t0, 0));
}

// The worker answers at most node_config.icmp_too_big_rate a second (its
// burst, then one per interval); the rest stay DROP_TOO_BIG. Rate 0: none.
TEST_F(WorkerPathTest, TooBigAnswersAreRateLimitedPerWorker) {
  keel_node_config node = test::nodeConfig();
  node.icmp_too_big_rate = 40;  // bursts of 2, one answer per 25 ms
  ASSERT_TRUE(store_.setNode(node));
  addService(vip4_, 53, KEEL_PROTO_UDP, 1);
  ASSERT_TRUE(store_.upsertBackend(1, test::backend(ip("10.1.0.1"), 1)));
  ring(1, {1, 1, 1});
  Frame f{ip("192.168.1.1"), vip4_, 1000, 53, KEEL_PROTO_UDP};
  f.payload = 1500 - 28 - 20 + 1;
  f.fragOff = KEEL_IP_DF;
  const std::vector<uint8_t> in = test::buildFrame(f);
  const uint64_t t0 = 1'000'000'000ull;
  EXPECT_EQ(run(in, t0).r.reason, KEEL_R_TX_ICMP_TOO_BIG);
  EXPECT_EQ(run(in, t0).r.reason, KEEL_R_TX_ICMP_TOO_BIG);
  Out limited = run(in, t0 + 1000);
  EXPECT_EQ(limited.r.verdict, Verdict::kDrop);
  EXPECT_EQ(limited.r.reason, KEEL_R_DROP_TOO_BIG);
  EXPECT_EQ(run(in, t0 + 25'000'000).r.reason, KEEL_R_TX_ICMP_TOO_BIG) << "one interval later";
  EXPECT_EQ(run(in, t0 + 25'000'000).r.reason, KEEL_R_DROP_TOO_BIG);
  EXPECT_EQ(worker_.counters.reasons[KEEL_R_TX_ICMP_TOO_BIG].packets, 3u);
  EXPECT_EQ(worker_.counters.reasons[KEEL_R_DROP_TOO_BIG].packets, 2u);
  // Each worker has its own bucket.
  WorkerState other(1024, 16, 1024, 1500);
  std::vector<uint8_t> mem;
  PacketBuf b = place(mem, in);
  EXPECT_EQ(processPacket(*store_.current(), other, b, t0 + 25'000'000).reason, KEEL_R_TX_ICMP_TOO_BIG);
  // Rate 0: never answered.
  node.icmp_too_big_rate = 0;
  ASSERT_TRUE(store_.setNode(node));
  EXPECT_EQ(run(in, t0 + 10'000'000'000ull).r.reason, KEEL_R_DROP_TOO_BIG);
}

// Each client has a limit of its own too (node_config.icmp_too_big_client_rate,
// the shared keel_icmp_too_big_allow): a client over it is refused without
// spending the worker's budget, and other clients are still answered. An IPv6
// client is its /64. Refused by the worker's limit, a client keeps its place.
// 0: no per-client limit.
TEST_F(WorkerPathTest, TooBigAnswersAreLimitedPerClient) {
  keel_node_config node = test::nodeConfig();
  ASSERT_EQ(node.icmp_too_big_client_rate, 100u) << "keeld's default";
  node.icmp_too_big_client_rate = 20;  // bursts of 1, one answer per 50 ms; the worker's: 1000, one per 1 ms
  ASSERT_TRUE(store_.setNode(node));
  addService(vip4_, 53, KEEL_PROTO_UDP, 1);
  addService(vip6_, 53, KEEL_PROTO_UDP, 2);
  ASSERT_TRUE(store_.upsertBackend(1, test::backend(ip("10.1.0.1"), 1)));
  ASSERT_TRUE(store_.upsertBackend(2, test::backend(ip("2001:db8:1::1"), 2)));
  ring(1, {1, 1, 1});
  ring(2, {2, 2, 2});
  auto over = [&](const char* client) {  // one byte over the MTU once encapsulated
    const IpAddress c = ip(client);
    Frame f{c, c.isV4() ? vip4_ : vip6_, 1000, 53, KEEL_PROTO_UDP};
    f.payload = c.isV4() ? 1500 - 28 - 20 + 1 : 1500 - 48 - 40 + 1;
    f.fragOff = KEEL_IP_DF;
    return test::buildFrame(f);
  };
  auto slotOf = [](const char* client) {
    keel_flow_key k{};
    ip(client).toWords(k.src);
    k.family = ip(client).family();
    return keel_icmp_client_slot(&k);
  };
  const char *a4 = "192.168.1.1", *b4 = "192.168.1.2";
  const char *a6 = "2001:db8:7::1", *a6SameNet = "2001:db8:7::ffff:2", *b6 = "2001:db8:7:1::1";
  ASSERT_NE(slotOf(a4), slotOf(b4));
  ASSERT_EQ(slotOf(a6), slotOf(a6SameNet)) << "one /64, one slot";
  ASSERT_NE(slotOf(a6), slotOf(b6));
  const uint64_t t0 = 1'000'000'000ull;
  EXPECT_EQ(run(over(a4), t0).r.reason, KEEL_R_TX_ICMP_TOO_BIG);
  const __u64 spent = worker_.icmpTat;
  Out refused = run(over(a4), t0);
  EXPECT_EQ(refused.r.verdict, Verdict::kDrop);
  EXPECT_EQ(refused.r.reason, KEEL_R_DROP_TOO_BIG) << "over its own limit";
  EXPECT_EQ(worker_.icmpTat, spent) << "refused by its own limit, a client spends none of the worker's";
  EXPECT_EQ(run(over(b4), t0).r.reason, KEEL_R_TX_ICMP_TOO_BIG) << "another client is still answered";
  EXPECT_EQ(run(over(a6), t0).r.reason, KEEL_R_TX_ICMP_TOO_BIG);
  EXPECT_EQ(run(over(a6SameNet), t0).r.reason, KEEL_R_DROP_TOO_BIG) << "the same /64";
  EXPECT_EQ(run(over(b6), t0).r.reason, KEEL_R_TX_ICMP_TOO_BIG);
  EXPECT_EQ(run(over(a4), t0 + 49'999'999).r.reason, KEEL_R_DROP_TOO_BIG);
  EXPECT_EQ(run(over(a4), t0 + 50'000'000).r.reason, KEEL_R_TX_ICMP_TOO_BIG) << "one interval later";
  EXPECT_EQ(worker_.counters.reasons[KEEL_R_TX_ICMP_TOO_BIG].packets, 5u);
  EXPECT_EQ(worker_.counters.reasons[KEEL_R_DROP_TOO_BIG].packets, 3u);

  // Refused by the worker's limit (1 a second here), a client keeps its
  // place: it got no answer, so it paid none.
  node.icmp_too_big_rate = 1;
  ASSERT_TRUE(store_.setNode(node));
  WorkerState fresh(1024, 16, 1024, 1500);
  auto runOn = [&](WorkerState& w, const std::vector<uint8_t>& in, uint64_t now) {
    std::vector<uint8_t> mem;
    PacketBuf b = place(mem, in);
    return processPacket(*store_.current(), w, b, now).reason;
  };
  EXPECT_EQ(runOn(fresh, over(a4), t0), KEEL_R_TX_ICMP_TOO_BIG);
  EXPECT_EQ(runOn(fresh, over(b4), t0), KEEL_R_DROP_TOO_BIG);
  EXPECT_EQ(fresh.icmpClientTat[slotOf(b4)], 0u);
  EXPECT_EQ(runOn(fresh, over(b4), t0 + 1'000'000'000ull), KEEL_R_TX_ICMP_TOO_BIG);

  // 0: no per-client limit, the worker's alone.
  node.icmp_too_big_rate = 1000;
  node.icmp_too_big_client_rate = 0;
  ASSERT_TRUE(store_.setNode(node));
  for (int i = 0; i < 3; ++i) EXPECT_EQ(run(over(a4), t0 + 50'000'000).r.reason, KEEL_R_TX_ICMP_TOO_BIG) << i;
}

// A port MTU so small that the packet over it is shorter than the quote:
// no error (the quote would be cut), DROP_TOO_BIG as before.
TEST_F(WorkerPathTest, PacketShorterThanTheQuoteIsDropped) {
  WorkerState tiny(1024, 16, 1024, 100);
  addService(vip4_, 53, KEEL_PROTO_UDP, 1);
  ASSERT_TRUE(store_.upsertBackend(1, test::backend(ip("10.1.0.1"), 1)));
  ring(1, {1, 1, 1});
  Frame f{ip("192.168.1.1"), vip4_, 1000, 53, KEEL_PROTO_UDP};
  f.fragOff = KEEL_IP_DF;
  f.payload = 100 - 28;  // 100 IP bytes + 20 > 100, but < 128 to quote
  std::vector<uint8_t> mem;
  PacketBuf b = place(mem, test::buildFrame(f));
  EXPECT_EQ(processPacket(*store_.current(), tiny, b, 1000).reason, KEEL_R_DROP_TOO_BIG);
  // Not enough headroom for the new headers: counted, never written.
  f.payload = 200;
  std::vector<uint8_t> frame = test::buildFrame(f);
  std::vector<uint8_t> exact(frame);
  PacketBuf nb{exact.data(), static_cast<uint32_t>(exact.size()), 0};
  EXPECT_EQ(processPacket(*store_.current(), tiny, nb, 1000).reason, KEEL_R_DROP_ENCAP_FAILED);
  EXPECT_EQ(exact, frame);
}

TEST_F(WorkerPathTest, EveryUpdatePublishesANewSnapshotAfterAGracePeriod) {
  const Snapshot* before = store_.current();
  int graces = graces_;
  addService(vip4_, 80, KEEL_PROTO_TCP, 1);
  EXPECT_NE(store_.current(), before);
  EXPECT_EQ(graces_, graces + 1);
  EXPECT_GT(store_.current()->version, 0u);
  // Invalid updates change nothing and say where.
  const Snapshot* now = store_.current();
  Status s = store_.publishRing(99, {1});
  EXPECT_FALSE(s);
  EXPECT_NE(s.message().find("publishRing"), std::string::npos);
  EXPECT_FALSE(store_.upsertBackend(5000, test::backend(ip("10.1.0.1"), 1)));
  EXPECT_EQ(store_.current(), now);
}

// Inside a batch the store changes but the workers' snapshot does not: the
// outermost endBatch() publishes everything at once, after one grace
// period; flush() publishes what the batch holds so far; a batch that
// changed nothing publishes nothing.
TEST_F(WorkerPathTest, ABatchOfUpdatesIsPublishedAsOneSnapshot) {
  auto in = test::buildFrame(Frame{ip("192.168.1.1"), vip4_, 1000, 80});
  const Snapshot* before = store_.current();
  const int graces = graces_;
  store_.beginBatch();
  store_.beginBatch();  // nested
  oneRealService(vip4_, 80, 1, 3, "10.1.0.3");
  // Two more writes to the same chunk within the batch: both land.
  ASSERT_TRUE(store_.upsertBackend(4, test::backend(ip("10.1.0.4"), 1)));
  ASSERT_TRUE(store_.upsertBackend(5, test::backend(ip("10.1.0.5"), 1)));
  store_.endBatch();  // the inner one: nothing yet
  EXPECT_EQ(store_.current(), before);
  EXPECT_EQ(graces_, graces);
  EXPECT_EQ(run(in).r.reason, KEEL_R_PASS_NO_SERVICE);
  store_.endBatch();
  EXPECT_NE(store_.current(), before);
  EXPECT_EQ(store_.current()->version, before->version + 1);  // three changes, one snapshot
  EXPECT_EQ(graces_, graces + 1);
  EXPECT_EQ(run(in).r.backendId, 3u);
  for (uint32_t id : {3u, 4u, 5u}) EXPECT_EQ(snapshotBackend(*store_.current(), id)->be.service_id, 1u) << id;

  const Snapshot* one = store_.current();
  const BackendSlot* slot3 = snapshotBackend(*one, 3);
  store_.beginBatch();
  ASSERT_TRUE(store_.upsertBackend(3, test::backend(ip("10.1.0.3"), 2)));  // now another service's
  store_.flush();
  EXPECT_NE(store_.current(), one);
  EXPECT_EQ(graces_, graces + 2);
  EXPECT_EQ(run(in).r.reason, KEEL_R_DROP_NO_BACKEND);
  // A published chunk is copied before it is written, never written in
  // place: backend 3's slot moved (the old chunk lived until the grace
  // period ended, so the copy could not reuse its address).
  EXPECT_NE(snapshotBackend(*store_.current(), 3), slot3);
  EXPECT_EQ(snapshotBackend(*store_.current(), 3)->be.service_id, 2u);
  const Snapshot* flushed = store_.current();
  store_.flush();  // nothing new since
  store_.endBatch();
  EXPECT_EQ(store_.current(), flushed);
  store_.beginBatch();
  store_.endBatch();
  EXPECT_EQ(store_.current(), flushed);
  EXPECT_EQ(graces_, graces + 2);
}

// Removing what is not there succeeds, as on XDP (a registry settling
// after a failed apply may remove what the failure never wrote), and
// changes nothing.
TEST_F(WorkerPathTest, RemovingAnAbsentVipOrServiceSucceeds) {
  const Snapshot* before = store_.current();
  EXPECT_TRUE(store_.removeVip(test::vipKey(ip("10.0.0.222"))));
  EXPECT_TRUE(store_.removeService(test::serviceKey(vip4_, 4242, KEEL_PROTO_TCP)));
  EXPECT_EQ(store_.current(), before);  // nothing republished
  EXPECT_TRUE(store_.removeVip(test::vipKey(vip4_)));
  EXPECT_NE(store_.current(), before);
}

// Within a burst a packet reuses the previous packet's VIP check and
// service lookup only if its destination is the same in every field:
// address, port, protocol and family (an IPv6 address whose first four
// bytes spell the IPv4 VIP is another destination).
TEST_F(WorkerPathTest, ABurstTellsDestinationsApartByEveryField) {
  addService(vip4_, 80, KEEL_PROTO_TCP, 1);
  addService(vip4_, 81, KEEL_PROTO_TCP, 2);
  addService(vip4_, 80, KEEL_PROTO_UDP, 3);
  addService(vip6_, 80, KEEL_PROTO_TCP, 4);
  for (uint32_t s = 1; s <= 4; ++s) {
    ASSERT_TRUE(store_.upsertBackend(s, test::backend(ip(("10.1.0." + std::to_string(s)).c_str()), s)));
    ring(s, {s, s, s});
  }
  const IpAddress client = ip("192.168.1.1"), client6 = ip("2001:db8:5::1");
  // Each packet after the first differs from the one before it in one field.
  const std::vector<std::pair<Frame, uint32_t>> burst = {
      {Frame{client, vip4_, 1000, 80}, 1},
      {Frame{client, vip4_, 1000, 81}, 2},  // port
      {Frame{client, vip4_, 1000, 80}, 1},
      {Frame{client, vip4_, 1000, 80, KEEL_PROTO_UDP}, 3},  // protocol
      {Frame{client, vip4_, 1000, 80}, 1},
      {Frame{client6, ip("a00:64::"), 1000, 80}, KEEL_INVALID_ID},  // family: 0a000064 is 10.0.0.100
      {Frame{client, vip4_, 1000, 80}, 1},
      {Frame{client, ip("10.0.0.101"), 1000, 80}, KEEL_INVALID_ID},  // address
      {Frame{client6, vip6_, 1000, 80}, 4},
  };
  std::vector<Frame> frames;
  for (const auto& [f, real] : burst) frames.push_back(f);
  const std::vector<Out> results = runBurst(frames, 1000);
  for (size_t i = 0; i < burst.size(); ++i) {
    EXPECT_EQ(results[i].r.backendId, burst[i].second) << "packet " << i;
    if (burst[i].second == KEEL_INVALID_ID) {
      EXPECT_EQ(results[i].r.reason, KEEL_R_PASS_NOT_VIP) << "packet " << i;
    }
  }
}

// processBurst() runs a burst in stages (lookups, then the flow hashes of
// the misses, then picks and rewrites), so a new flow's later packets in the
// same burst do not find the entry its first packet makes. The outcome must
// still be the packet-by-packet one: same verdicts, reals and bytes, one
// table entry per flow. 70 packets (more than one 32-packet stage) of 10 new
// flows, each flow five or more times, against a worker fed one at a time.
TEST_F(WorkerPathTest, ABurstEndsAsPacketByPacketProcessingWould) {
  addService(vip4_, 80, KEEL_PROTO_TCP, 1);
  addService(vip6_, 443, KEEL_PROTO_TCP, 2);
  std::vector<uint32_t> slots1, slots2;
  for (uint32_t b = 1; b <= 8; ++b) {
    ASSERT_TRUE(store_.upsertBackend(b, test::backend(ip(("10.1.0." + std::to_string(b)).c_str()), 1)));
    ASSERT_TRUE(store_.upsertBackend(100 + b, test::backend(ip(("2001:db8:1::" + std::to_string(b)).c_str()), 2)));
    for (int k = 0; k < 3; ++k) {
      slots1.push_back(b);
      slots2.push_back(100 + b);
    }
  }
  ring(1, slots1);
  ring(2, slots2);
  std::vector<Frame> flows;
  for (uint16_t f = 0; f < 5; ++f) {
    flows.push_back(Frame{ip("192.168.1.1"), vip4_, static_cast<uint16_t>(2000 + f), 80});
    flows.push_back(Frame{ip("2001:db8:5::1"), vip6_, static_cast<uint16_t>(3000 + f), 443});
  }
  // Past their SYN: each flow's first packet of the burst is a mid-flow
  // miss, and only that one, as packet by packet (the others find the way
  // an earlier packet of the burst wrote).
  for (Frame& f : flows) f.tcpFlags = 0x10;
  const uint32_t n = 70;
  std::vector<Frame> frames;
  for (uint32_t i = 0; i < n; ++i) frames.push_back(flows[(i * 3) % flows.size()]);
  const std::vector<Out> results = runBurst(frames, 1000);
  WorkerState ref(1024, 16, 1024, 1500);
  const std::vector<Out> each = runEach(ref, frames, 1000);
  for (uint32_t i = 0; i < n; ++i) {
    const Frame& f = frames[i];
    // The real the ring gives the flow (maglev_lookup.h), computed here.
    const std::vector<uint32_t>& slots = f.dst == vip4_ ? slots1 : slots2;
    const uint32_t m = static_cast<uint32_t>(slots.size());
    EXPECT_EQ(results[i].r.backendId, slots[keel_ring_index(flowHashOf(f), m) - 1]) << "packet " << i;
    EXPECT_EQ(results[i].r.verdict, each[i].r.verdict) << "packet " << i;
    EXPECT_EQ(results[i].r.reason, each[i].r.reason) << "packet " << i;
    EXPECT_EQ(results[i].r.backendId, each[i].r.backendId) << "packet " << i;
    EXPECT_EQ(results[i].bytes, each[i].bytes) << "packet " << i;
  }
  EXPECT_EQ(worker_.conns.occupied(), flows.size());
  EXPECT_EQ(worker_.conns.countLive(), flows.size());
  EXPECT_EQ(ref.counters.ctMidflowMisses, flows.size());
  EXPECT_EQ(worker_.counters.ctMidflowMisses, ref.counters.ctMidflowMisses);
  EXPECT_EQ(worker_.counters.reasons[KEEL_R_TX_IPIP].packets, n);
  EXPECT_EQ(worker_.counters.services[1].packets + worker_.counters.services[2].packets, n);
}

// Under node.conntrack_insert_rate a burst asks the limit as packet by
// packet processing would: once for a flow an earlier packet of the burst
// inserted (its later packets hit that entry), and at every packet of a
// flow the limit refused (it is never in the table). Before, a flow's later
// packets in the burst asked again: a token spent, and a skip counted for a
// flow that was inserted (packet-path review F1).
TEST_F(WorkerPathTest, ABurstAsksTheInsertLimitAsPacketByPacketWould) {
  keel_node_config node = test::nodeConfig();
  node.conntrack_insert_rate = 20;  // bursts of one: one insert, then one each 50 ms
  ASSERT_TRUE(store_.setNode(node));
  addService(vip4_, 53, KEEL_PROTO_UDP, 1);
  ASSERT_TRUE(store_.upsertBackend(1, test::backend(ip("10.1.0.1"), 1)));
  ring(1, {1, 1, 1});
  std::vector<Frame> flows;
  for (uint16_t f = 0; f < 3; ++f) {
    Frame fr{ip("192.168.1.1"), vip4_, static_cast<uint16_t>(4000 + f), 53};
    fr.proto = KEEL_PROTO_UDP;
    flows.push_back(fr);
  }
  std::vector<Frame> frames;
  for (uint32_t i = 0; i < 9; ++i) frames.push_back(flows[i % flows.size()]);  // each flow three times, interleaved
  const uint64_t now = 1'000'000'000;
  const std::vector<Out> results = runBurst(frames, now);
  WorkerState ref(1024, 16, 1024, 1500);
  const std::vector<Out> each = runEach(ref, frames, now);
  for (size_t i = 0; i < frames.size(); ++i) EXPECT_EQ(results[i].r.backendId, each[i].r.backendId) << "packet " << i;
  EXPECT_EQ(ref.conns.occupied(), 1u) << "one insert allowed";
  EXPECT_EQ(worker_.conns.occupied(), 1u);
  EXPECT_EQ(ref.counters.ctInsertsSkipped, 6u) << "the two refused flows, at each of their packets";
  EXPECT_EQ(worker_.counters.ctInsertsSkipped, ref.counters.ctInsertsSkipped);
}

// The same with SYNs in the burst: a SYN asks the limit in the last stage,
// after its ring pick, in packet order, and a SYN to a service with no
// usable real does not ask it. Burst: an ACK of flow A the table does not
// hold, a SYN of B, a SYN to a dead service, B's SYN again. Packet by
// packet, A takes the one insert, B is refused twice, the dead SYN asks
// nothing. (When SYNs asked in the first stage, B took A's insert.)
TEST_F(WorkerPathTest, ABurstOfSynsAsksTheInsertLimitAsPacketByPacketWould) {
  keel_node_config node = test::nodeConfig();
  node.conntrack_insert_rate = 20;  // bursts of one
  ASSERT_TRUE(store_.setNode(node));
  oneRealService(vip4_, 80, 1, 1, "10.1.0.1");
  addService(vip4_, 81, KEEL_PROTO_TCP, 2);  // no ring
  const Frame a{ip("192.168.1.1"), vip4_, 4000, 80};
  Frame b{ip("192.168.1.2"), vip4_, 4001, 80};
  b.tcpFlags = KEEL_TCP_SYN;
  Frame dead{ip("192.168.1.3"), vip4_, 4002, 81};
  dead.tcpFlags = KEEL_TCP_SYN;
  const std::vector<Frame> frames{a, b, dead, b};
  const uint64_t now = 1'000'000'000;
  const std::vector<Out> results = runBurst(frames, now);
  WorkerState ref(1024, 16, 1024, 1500);
  const std::vector<Out> each = runEach(ref, frames, now);
  for (size_t i = 0; i < frames.size(); ++i) {
    EXPECT_EQ(results[i].r.reason, each[i].r.reason) << "packet " << i;
    EXPECT_EQ(results[i].r.backendId, each[i].r.backendId) << "packet " << i;
  }
  EXPECT_EQ(ref.counters.ctInsertsSkipped, 2u) << "B's two SYNs refused; the dead SYN asked nothing";
  EXPECT_EQ(worker_.counters.ctInsertsSkipped, ref.counters.ctInsertsSkipped);
  keel_ct_value v;
  EXPECT_TRUE(ref.conns.peek(test::flowKey(a), now, 0, &v)) << "A took the insert";
  EXPECT_TRUE(worker_.conns.peek(test::flowKey(a), now, 0, &v)) << "in the burst too";
  EXPECT_FALSE(worker_.conns.peek(test::flowKey(b), now, 0, &v)) << "B took A's insert in the burst";
}

// A SYN the limit refuses follows its entry only through the ring: with no
// usable real on the ring (every real drained) it is dropped, though its
// entry's real is still usable; a SYN goes by the ring.
TEST_F(WorkerPathTest, ARefusedSynWithNoRingRealIsDropped) {
  oneRealService(vip4_, 80, 1, 1, "10.1.0.1");
  const Frame f{ip("192.168.1.1"), vip4_, 1000, 80};
  const uint64_t t0 = 1'000'000'000;
  EXPECT_EQ(run(test::buildFrame(f), t0).r.backendId, 1u);  // held on 1
  ring(1, {});  // drained: the real stays usable for its flows
  EXPECT_EQ(run(test::buildFrame(f), t0).r.backendId, 1u) << "the flow keeps its drained real";
  keel_node_config node = test::nodeConfig();
  node.conntrack_insert_rate = 20;
  ASSERT_TRUE(store_.setNode(node));
  worker_.ctInsertTat = ~uint64_t{0} / 2;  // the limit spent far ahead: every insert refused
  Frame syn = f;
  syn.tcpFlags = KEEL_TCP_SYN;
  EXPECT_EQ(run(test::buildFrame(syn), t0).r.reason, KEEL_R_DROP_NO_BACKEND);
  EXPECT_EQ(worker_.counters.ctInsertsSkipped, 0u);
}

}  // namespace
}  // namespace keel::dpdk

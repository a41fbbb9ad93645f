// SPDX-License-Identifier: Apache-2.0
// dpdk::setFrame (dataplane/dpdk/mbuf_frame.h) on real mbufs from a
// mempool, chained with rte_pktmbuf_chain: a rewrite that moved the frame's
// start (an outer header) or cut it (an ICMP error after its quote) ends in
// the first segment, so the segments behind it go back to the pool; one in
// place (l2dsr, an echo reply) keeps them. The pcap tests never make a
// chained mbuf (net_pcap reads a frame into one segment), so nothing else
// runs these cases. EAL under --no-huge, started once for the process in
// main(), as dpdk_pcap_test does.
#include "dataplane/dpdk/mbuf_frame.h"

#include <gtest/gtest.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace keel::dpdk {
namespace {

const std::string kPid = std::to_string(getpid());

// The bytes of each segment the tests make.
constexpr uint16_t kHeadLen = 1000, kTailLen = 500;

class MbufFrameTest : public ::testing::Test {
 protected:
  // One pool for the suite, without a per-lcore cache, so that
  // rte_mempool_in_use_count() is exactly the mbufs the test holds.
  static void SetUpTestSuite() {
    pool_ = rte_pktmbuf_pool_create(("keel_mbuf_frame" + kPid).c_str(), 63, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
                                    SOCKET_ID_ANY);
    ASSERT_NE(pool_, nullptr) << rte_strerror(rte_errno);
  }
  static void TearDownTestSuite() {
    rte_mempool_free(pool_);
    pool_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(pool_, nullptr);
    ASSERT_EQ(rte_mempool_in_use_count(pool_), 0u);
  }
  void TearDown() override {
    for (rte_mbuf* m : held_) rte_pktmbuf_free(m);
    held_.clear();
    EXPECT_EQ(rte_mempool_in_use_count(pool_), 0u) << "an mbuf the test did not free, or freed twice";
  }

  // A frame of a kHeadLen-byte first segment (bytes 0, 1, 2, ...) and
  // `tails` segments of kTailLen behind it; freed by TearDown().
  rte_mbuf* frame(unsigned tails) {
    rte_mbuf* head = rte_pktmbuf_alloc(pool_);
    EXPECT_NE(head, nullptr);
    if (!head) return nullptr;
    auto* p = reinterpret_cast<uint8_t*>(rte_pktmbuf_append(head, kHeadLen));
    for (uint16_t i = 0; i < kHeadLen; ++i) p[i] = static_cast<uint8_t>(i);
    for (unsigned t = 0; t < tails; ++t) {
      rte_mbuf* tail = rte_pktmbuf_alloc(pool_);
      EXPECT_NE(tail, nullptr);
      if (!tail) break;
      EXPECT_NE(rte_pktmbuf_append(tail, kTailLen), nullptr);
      EXPECT_EQ(rte_pktmbuf_chain(head, tail), 0);
    }
    held_.push_back(head);
    return head;
  }

  static rte_mempool* pool_;
  std::vector<rte_mbuf*> held_;
};

rte_mempool* MbufFrameTest::pool_ = nullptr;

// The packet buffer the worker loop gives the packet path for m.
PacketBuf bufOf(rte_mbuf* m) {
  return {rte_pktmbuf_mtod(m, uint8_t*), rte_pktmbuf_data_len(m), rte_pktmbuf_headroom(m)};
}

// What rte_mbuf_check() finds wrong with m's segments and lengths; empty
// if nothing.
std::string mbufProblem(const rte_mbuf* m) {
  const char* reason = nullptr;
  return rte_mbuf_check(m, 1, &reason) == 0 ? "" : reason;
}

// An outer IPv4 header: the start moves 20 bytes into the headroom and the
// frame grows by as much. The segments behind go (the tunnel carries the IP
// packet the parser found in the first segment).
TEST_F(MbufFrameTest, AStartMovedIntoTheHeadroomFreesTheChain) {
  rte_mbuf* m = frame(2);
  ASSERT_NE(m, nullptr);
  ASSERT_EQ(m->nb_segs, 3);
  ASSERT_EQ(rte_pktmbuf_pkt_len(m), kHeadLen + 2u * kTailLen);
  ASSERT_EQ(rte_mempool_in_use_count(pool_), 3u);
  const uint16_t off = m->data_off;
  PacketBuf b = bufOf(m);
  b.data -= 20;
  b.len += 20;
  std::memset(b.data, 0x45, 20);
  setFrame(m, b);
  EXPECT_EQ(rte_mempool_in_use_count(pool_), 1u) << "the two tail segments went back to the pool";
  EXPECT_EQ(m->next, nullptr);
  EXPECT_EQ(m->nb_segs, 1);
  EXPECT_EQ(m->data_off, off - 20);
  EXPECT_EQ(rte_pktmbuf_data_len(m), kHeadLen + 20u);
  EXPECT_EQ(rte_pktmbuf_pkt_len(m), kHeadLen + 20u);
  EXPECT_EQ(rte_pktmbuf_mtod(m, uint8_t*), b.data);
  EXPECT_EQ(rte_pktmbuf_mtod_offset(m, uint8_t*, 20)[7], 7) << "the first segment's bytes follow the header";
  EXPECT_EQ(mbufProblem(m), "");
}

// An ICMP error cut after its quote: same start, shorter. It ends in the
// first segment; the segments behind go.
TEST_F(MbufFrameTest, AFirstSegmentCutShorterFreesTheChain) {
  rte_mbuf* m = frame(2);
  ASSERT_NE(m, nullptr);
  ASSERT_EQ(rte_mempool_in_use_count(pool_), 3u);
  const uint16_t off = m->data_off;
  PacketBuf b = bufOf(m);
  b.len = 576;
  setFrame(m, b);
  EXPECT_EQ(rte_mempool_in_use_count(pool_), 1u) << "the two tail segments went back to the pool";
  EXPECT_EQ(m->next, nullptr);
  EXPECT_EQ(m->nb_segs, 1);
  EXPECT_EQ(m->data_off, off);
  EXPECT_EQ(rte_pktmbuf_data_len(m), 576u);
  EXPECT_EQ(rte_pktmbuf_pkt_len(m), 576u);
  EXPECT_EQ(mbufProblem(m), "");
}

// l2dsr or an echo reply: rewritten in place, same start and length. The
// frame goes out whole, chain and all.
TEST_F(MbufFrameTest, ARewriteInPlaceKeepsTheChain) {
  rte_mbuf* m = frame(2);
  ASSERT_NE(m, nullptr);
  rte_mbuf* second = m->next;
  const uint16_t off = m->data_off;
  PacketBuf b = bufOf(m);
  b.data[0] = 0x02;  // the destination MAC, as l2dsr rewrites it
  setFrame(m, b);
  EXPECT_EQ(rte_mempool_in_use_count(pool_), 3u) << "no segment freed";
  EXPECT_EQ(m->next, second);
  EXPECT_EQ(m->nb_segs, 3);
  EXPECT_EQ(m->data_off, off);
  EXPECT_EQ(rte_pktmbuf_data_len(m), kHeadLen);
  EXPECT_EQ(rte_pktmbuf_pkt_len(m), kHeadLen + 2u * kTailLen);
  EXPECT_EQ(mbufProblem(m), "");
}

// One segment whose start moved (the usual encapsulation): its packet
// length is the new length, as its data length.
TEST_F(MbufFrameTest, ASingleSegmentWhoseStartMovedHasTheNewLength) {
  rte_mbuf* m = frame(0);
  ASSERT_NE(m, nullptr);
  ASSERT_EQ(m->nb_segs, 1);
  const uint16_t off = m->data_off;
  PacketBuf b = bufOf(m);
  b.data -= 40;  // an outer IPv6 header
  b.len += 40;
  setFrame(m, b);
  EXPECT_EQ(rte_mempool_in_use_count(pool_), 1u);
  EXPECT_EQ(m->nb_segs, 1);
  EXPECT_EQ(m->data_off, off - 40);
  EXPECT_EQ(rte_pktmbuf_data_len(m), kHeadLen + 40u);
  EXPECT_EQ(rte_pktmbuf_pkt_len(m), kHeadLen + 40u);
  EXPECT_EQ(mbufProblem(m), "");
}

}  // namespace
}  // namespace keel::dpdk

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  // No devices: the tests need EAL's memory and a mempool only. The file
  // prefix is this process's own (its runtime directory is removed below).
  const std::string prefix = "keel-mbuf-" + keel::dpdk::kPid;
  std::vector<std::string> args = {"mbuf_frame_test", "-l", "0", "--no-huge", "-m", "64", "--no-pci", "--no-telemetry",
                                   "--file-prefix", prefix, "--log-level", "*:warning"};
  std::vector<char*> ealArgv;
  for (std::string& a : args) ealArgv.push_back(a.data());
  if (rte_eal_init(static_cast<int>(ealArgv.size()), ealArgv.data()) < 0) {
    std::fprintf(stderr, "mbuf_frame_test: EAL initialisation failed: %s\n", rte_strerror(rte_errno));
    return 1;
  }
  const int rc = RUN_ALL_TESTS();
  rte_eal_cleanup();
  // EAL leaves its runtime directory behind; it is ours alone (file prefix).
  std::system(("rm -rf /var/run/dpdk/" + prefix).c_str());
  return rc;
}

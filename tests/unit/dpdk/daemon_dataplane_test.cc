// SPDX-License-Identifier: Apache-2.0
// keeld's DPDK plane (daemon/dataplane_factory.cc, built into this test as
// into keeld) around a start that fails after the saved connection tables
// were loaded: the load consumed their file, so the failed start writes
// the loaded tables back, and the next keeld's start finds its flows. The
// start fails the way a real one can: a worker lcore is busy (the test runs
// a function of its own on it), so rte_eal_remote_launch() refuses it after
// the port started. EAL under --no-huge over a net_pcap vdev, started once
// for the process by the first plane, as in dpdk_pcap_test.
#include <gtest/gtest.h>
#include <pcap/pcap.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "busy_lcore.h"
#include "control/config.h"
#include "daemon/dataplane_factory.h"
#include "daemon/state_files.h"
#include "dataplane/dpdk/conn_persist.h"
#include "dataplane/dpdk/dpdk_dataplane.h"
#include "dataplane/dpdk/worker_path.h"
#include "test_packets.h"

namespace keel::dpdk {
namespace {

using test::Frame;
using test::ip;

const std::string kPid = std::to_string(getpid());
const std::string kDir = "/tmp/keel-dpdk-daemon-test-" + kPid;
constexpr unsigned kWorkerLcore = 1;
constexpr uint64_t kSec = 1000000000ull;
const IpAddress kVip = ip("10.0.0.100");
// Two flows, each to its own real (the ring moved between them).
const Frame kFlowA{ip("192.168.1.1"), kVip, 40001, 80};
const Frame kFlowB{ip("192.168.1.2"), kVip, 40002, 80};

// The service on port 80 with reals 10.1.0.1 (id 0) and 10.1.0.2 (id 1),
// the ring on `ringOn`: what a registry programs, on either plane.
template <typename Plane>
void program(Plane& p, uint32_t ringOn) {
  ASSERT_TRUE(p.setNode(test::nodeConfig()));
  ASSERT_TRUE(p.addVip(test::vipKey(kVip)));
  keel_service_value v{};
  ASSERT_TRUE(p.upsertService(test::serviceKey(kVip, 80, KEEL_PROTO_TCP), v));
  ASSERT_TRUE(p.upsertBackend(0, test::backend(ip("10.1.0.1"), 0)));
  ASSERT_TRUE(p.upsertBackend(1, test::backend(ip("10.1.0.2"), 0)));
  ASSERT_TRUE(p.publishRing(0, std::vector<uint32_t>(7, ringOn)));
}

// The tables a previous keeld's clean stop saved: flow A on 10.1.0.1, then
// (the ring moved) flow B on 10.1.0.2; one worker. From the pure packet
// path, as the plane's workers would have made them.
SavedConns savedTables() {
  TableStore store(16, 1024, [] {});
  WorkerState worker(1024, 16, 1024, 1500);
  auto send = [&](const Frame& f, uint64_t nowNs) {
    std::vector<uint8_t> frame = test::buildFrame(f);
    std::vector<uint8_t> mem(128 + frame.size());
    std::memcpy(mem.data() + 128, frame.data(), frame.size());
    PacketBuf b{mem.data() + 128, static_cast<uint32_t>(frame.size()), 128};
    EXPECT_EQ(processPacket(*store.current(), worker, b, nowNs).verdict, Verdict::kTx);
  };
  program(store, 0);
  send(kFlowA, 10 * kSec);
  EXPECT_TRUE(store.publishRing(0, std::vector<uint32_t>(7, 1)));
  send(kFlowB, 11 * kSec);
  const std::vector<const ConnTable*> tables{&worker.conns};
  const auto wallNs = std::chrono::duration_cast<std::chrono::nanoseconds>(
      std::chrono::system_clock::now().time_since_epoch());
  return exportConns(*store.current(), tables, 12 * kSec, static_cast<uint64_t>(wallNs.count()));
}

// What keeld's config gives makeDaemonDataplane(): one worker on lcore 1
// over a net_pcap port (an empty capture in, nothing out), small tables.
Config dpdkConfig() {
  const std::string rx = kDir + "/rx.pcap";
  pcap_t* dead = pcap_open_dead(DLT_EN10MB, 65535);
  pcap_dump_close(pcap_dump_open(dead, rx.c_str()));  // a capture of no frames
  pcap_close(dead);
  Config c;
  c.dataplane.kind = DataplaneKind::kDpdk;
  DpdkConfig& d = c.dataplane.dpdk;
  d.ealArgs = {"--lcores", "0@0,1@1", "--no-huge", "-m", "256", "--no-pci", "--no-telemetry",
               "--file-prefix", "keel-daemon-" + kPid, "--log-level", "*:warning"};
  d.port = "net_pcap_keeld" + kPid + ",rx_pcap=" + rx + ",tx_pcap=" + kDir + "/tx.pcap";
  d.workers = {kWorkerLcore};
  d.rxDescriptors = d.txDescriptors = 256;
  d.mbufsPerWorker = 1024;
  c.limits.maxServices = 16;
  c.limits.maxBackends = 1024;
  c.limits.connTableSize = 1024;
  return c;
}

StateFiles stateFiles() {
  return {kDir + "/runtime.json", kDir + "/conntrack.bin", kDir + "/interface.txt", kDir + "/applied.yaml",
          kDir + "/lock"};
}

class DaemonDataplaneTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::filesystem::remove_all(kDir);
    std::filesystem::create_directories(kDir);
  }
};

// A plane made as keeld makes it and programmed as its registry would (the
// ring on 10.1.0.2, as at the save), not started; null (the failure
// reported) if that failed.
std::unique_ptr<DaemonDataplane> makePlane(const Config& c, const StateFiles& files) {
  std::string err;
  std::unique_ptr<DaemonDataplane> p = makeDaemonDataplane(c, files, &err);
  EXPECT_NE(p, nullptr) << err;
  if (p) program(p->plane(), 1);
  return p;
}

TEST_F(DaemonDataplaneTest, AStartThatFailsAfterLoadingTheSavedTablesWritesThemBack) {
  const Config c = dpdkConfig();
  const StateFiles files = stateFiles();
  const SavedConns saved = savedTables();
  ASSERT_EQ(saved.records.size(), 2u);
  ASSERT_TRUE(writeConnFile(files.conntrack, saved));

  std::unique_ptr<DaemonDataplane> first = makePlane(c, files);
  ASSERT_NE(first, nullptr);
  {
    test::BusyLcore busy(kWorkerLcore);
    const Status s = first->startForwarding();
    ASSERT_FALSE(s) << "the start should have found lcore " << kWorkerLcore << " busy";
    EXPECT_NE(s.message().find("lcore " + std::to_string(kWorkerLcore)), std::string::npos) << s.message();
  }
  // The load consumed the file; the failed start wrote the loaded tables
  // back: the same two flows, to the same reals.
  ASSERT_TRUE(std::filesystem::exists(files.conntrack)) << "the failed start did not write the tables back";
  std::ifstream in(files.conntrack, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  SavedConns back;
  ASSERT_TRUE(decodeConns(bytes, &back));
  ASSERT_EQ(back.records.size(), 2u);
  for (const ConnRecord& r : back.records) {
    const bool a = std::memcmp(&r.flow, &saved.records[0].flow, sizeof r.flow) == 0;
    const ConnRecord& want = a ? saved.records[0] : saved.records[1];
    EXPECT_EQ(std::memcmp(&r.flow, &want.flow, sizeof r.flow), 0);
    EXPECT_EQ(std::memcmp(r.realAddr, want.realAddr, sizeof r.realAddr), 0);
  }
  // The plane's table (conn_table_size 1024, one worker: the saving
  // table's capacity) took the saved hash seeds before the load, and so
  // saves them again: each entry went back into the bucket it came from.
  ASSERT_EQ(saved.seeds.size(), 1u);
  EXPECT_EQ(back.capacity, saved.capacity);
  EXPECT_EQ(back.seeds, saved.seeds);
  // keeld exits now (stop without saving). Closed here without releasing
  // EAL, which a process starts once, so the next keeld's plane can run in
  // this one.
  first.reset();

  // The next keeld: its start loads the file and forwards; flow A keeps
  // 10.1.0.1 (id 0) through its entry, though the ring is on 10.1.0.2.
  std::unique_ptr<DaemonDataplane> next = makePlane(c, files);
  ASSERT_NE(next, nullptr);
  ASSERT_TRUE(next->startForwarding());
  EXPECT_FALSE(std::filesystem::exists(files.conntrack)) << "the start consumes the file";
  const std::optional<ConnEntry> a = next->plane().findConn(test::flowKey(kFlowA));
  const std::optional<ConnEntry> b = next->plane().findConn(test::flowKey(kFlowB));
  ASSERT_TRUE(a.has_value());
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(a->backendId, 0u);
  EXPECT_EQ(b->backendId, 1u);
}

// Nothing loaded (no file): a failed start has nothing to give back, and
// writes no file (one would tell the next start that a clean stop saved
// the empty tables of a plane that never ran).
TEST_F(DaemonDataplaneTest, AStartThatFailsWithNothingLoadedWritesNoFile) {
  const StateFiles files = stateFiles();
  std::unique_ptr<DaemonDataplane> plane = makePlane(dpdkConfig(), files);
  ASSERT_NE(plane, nullptr);
  {
    test::BusyLcore busy(kWorkerLcore);
    ASSERT_FALSE(plane->startForwarding());
  }
  EXPECT_FALSE(std::filesystem::exists(files.conntrack));
}

}  // namespace
}  // namespace keel::dpdk

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  int rc = RUN_ALL_TESTS();
  keel::releaseDpdkEnvironment();  // as keeld does when it stops: every plane is gone
  // EAL leaves its runtime directory behind; it is ours alone (file prefix).
  std::system(("rm -rf " + keel::dpdk::kDir + " /var/run/dpdk/keel-daemon-" + keel::dpdk::kPid).c_str());
  return rc;
}

// SPDX-License-Identifier: Apache-2.0
// The DPDK data plane end to end under EAL (--no-huge, --no-pci): a net_pcap
// vdev replays frames the test wrote with libpcap, the workers forward them,
// and the tx pcap is read back and compared byte for byte with what the pure
// packet path produces for the same tables. The exception path is checked
// through a net_tap interface inside a private network namespace: frames
// that are not ours reach the kernel, and the kernel's answer (an ARP reply)
// leaves through the port.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/ioctl.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <pcap/pcap.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_launch.h>
#include <rte_eth_ring.h>
#include <rte_ethdev.h>
#include <rte_log.h>
#include <rte_mbuf.h>
#include <rte_ring.h>
#include <sched.h>
#include <dlfcn.h>
#include <net/if.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdarg>
#include <cstring>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>
#include <utility>

#include "busy_lcore.h"
#include "common/logging.h"
#include "dataplane/dpdk/dpdk_dataplane.h"
#include "dataplane/dpdk/tables.h"
#include "dataplane/dpdk/worker_path.h"
#include "test_packets.h"

namespace keel::dpdk {
namespace {

using test::Frame;
using test::ip;

const std::string kPid = std::to_string(getpid());
const std::string kDir = "/tmp/keel-dpdk-test-" + kPid;

// Lcores 1 and 2 share CPU 1: the machine may have two CPUs only, and the
// one test with two workers lets them sleep when idle.
std::vector<std::string> ealArgs() {
  return {"--lcores", "0@0,1@1,2@1", "--no-huge", "-m", "512", "--no-pci", "--file-prefix", "keel-" + kPid,
          "--log-level", "*:warning"};
}

void writePcap(const std::string& path, const std::vector<std::vector<uint8_t>>& frames) {
  pcap_t* dead = pcap_open_dead(DLT_EN10MB, 65535);
  pcap_dumper_t* d = pcap_dump_open(dead, path.c_str());
  ASSERT_NE(d, nullptr) << pcap_geterr(dead);
  for (const auto& f : frames) {
    pcap_pkthdr h{};
    h.caplen = h.len = static_cast<bpf_u_int32>(f.size());
    pcap_dump(reinterpret_cast<u_char*>(d), &h, f.data());
  }
  pcap_dump_close(d);
  pcap_close(dead);
}

std::vector<std::vector<uint8_t>> readPcap(const std::string& path) {
  std::vector<std::vector<uint8_t>> out;
  char err[PCAP_ERRBUF_SIZE];
  pcap_t* p = pcap_open_offline(path.c_str(), err);
  if (!p) {
    ADD_FAILURE() << "cannot read " << path << ": " << err;
    return out;
  }
  pcap_pkthdr* h;
  const u_char* data;
  while (pcap_next_ex(p, &h, &data) == 1) out.emplace_back(data, data + h->caplen);
  pcap_close(p);
  return out;
}

// The same tables for the DPDK plane and for the pure reference run.
template <typename T>
void loadTables(T& t) {
  IpAddress vip4 = ip("10.0.0.100"), vip6 = ip("2001:db8::100");
  ASSERT_TRUE(t.setNode(test::nodeConfig()));
  ASSERT_TRUE(t.addVip(test::vipKey(vip4)));
  ASSERT_TRUE(t.addVip(test::vipKey(vip6)));
  keel_service_value v{};
  v.id = 0;
  ASSERT_TRUE(t.upsertService(test::serviceKey(vip4, 80, KEEL_PROTO_TCP), v));
  v.id = 1;
  v.flags = KEEL_SVC_F_FWD_L2DSR;
  ASSERT_TRUE(t.upsertService(test::serviceKey(vip4, 81, KEEL_PROTO_TCP), v));
  v.id = 2;
  v.flags = KEEL_SVC_F_SCHED_SRC;
  ASSERT_TRUE(t.upsertService(test::serviceKey(vip6, 53, KEEL_PROTO_UDP), v));
  v.id = 3;
  v.flags = 0;
  ASSERT_TRUE(t.upsertService(test::serviceKey(vip4, 82, KEEL_PROTO_TCP), v));  // no ring
  ASSERT_TRUE(t.upsertBackend(0, test::backend(ip("10.1.0.1"), 0)));
  ASSERT_TRUE(t.upsertBackend(1, test::backend(ip("2001:db8:1::2"), 0)));
  ASSERT_TRUE(t.upsertBackend(2, test::backend(ip("10.1.0.3"), 1)));
  ASSERT_TRUE(t.upsertBackend(3, test::backend(ip("2001:db8:1::4"), 2)));
  ASSERT_TRUE(t.upsertBackend(4, test::backend(ip("10.1.0.5"), 2)));
  ASSERT_TRUE(t.publishRing(0, {0, 1, 0, 1, 0, 1, 1}));
  ASSERT_TRUE(t.publishRing(1, {2, 2, 2}));
  ASSERT_TRUE(t.publishRing(2, {3, 4, 3, 4, 4}));
}

std::vector<std::vector<uint8_t>> inputFrames() {
  IpAddress vip4 = ip("10.0.0.100"), vip6 = ip("2001:db8::100");
  std::vector<std::vector<uint8_t>> in;
  for (int i = 0; i < 8; ++i) {
    Frame f{ip(("192.168.1." + std::to_string(10 + i)).c_str()), vip4,
            static_cast<uint16_t>(1000 + i), 80};
    if (i % 3 == 0) f.vlan = static_cast<uint16_t>(100 + i);
    in.push_back(test::buildFrame(f));
  }
  in.push_back(test::buildFrame(Frame{ip("192.168.1.1"), vip4, 2000, 81}));
  for (int i = 0; i < 4; ++i)
    in.push_back(test::buildFrame(Frame{ip(("2001:db8:7::" + std::to_string(i + 1)).c_str()),
                                        vip6, 3000, 53, KEEL_PROTO_UDP}));
  in.push_back(test::buildFrame(Frame{ip("192.168.1.1"), vip4, 0, 0, KEEL_IPPROTO_ICMP}));
  in.push_back(test::buildFrame(Frame{ip("192.168.1.1"), ip("10.9.9.9"), 1, 80}));  // not ours
  in.push_back(test::buildFrame(Frame{ip("192.168.1.1"), vip4, 1, 82}));  // no backend
  Frame frag{ip("192.168.1.1"), vip4, 1, 80};
  frag.fragOff = 10;
  in.push_back(test::buildFrame(frag));
  // 1500 IP bytes: over the port's MTU of 1500 once encapsulated. With DF
  // the client gets ICMP frag-needed (the mbuf grows at its front and is cut
  // after the quote); without, DROP_TOO_BIG.
  Frame big{ip("192.168.1.2"), vip4, 4000, 80};
  big.payload = 1500 - 40;
  big.fragOff = KEEL_IP_DF;
  in.push_back(test::buildFrame(big));
  big.fragOff = 0;
  big.sport = 4001;
  in.push_back(test::buildFrame(big));
  return in;
}

// The frames the pure packet path sends (kTx) for `in`, in order, each
// placed behind 128 bytes of headroom as in an mbuf.
std::vector<std::vector<uint8_t>> purePathTx(TableStore& ref, WorkerState& worker,
                                             const std::vector<std::vector<uint8_t>>& in) {
  std::vector<std::vector<uint8_t>> out;
  for (const auto& f : in) {
    std::vector<uint8_t> buf(128 + f.size());
    std::memcpy(buf.data() + 128, f.data(), f.size());
    PacketBuf b{buf.data() + 128, static_cast<uint32_t>(f.size()), 128};
    if (processPacket(*ref.current(), worker, b, 1).verdict == Verdict::kTx) out.emplace_back(b.data, b.data + b.len);
  }
  return out;
}

// Polls pred every `step` until it holds or 10 s have passed. A short
// step suits a wait repeated hundreds of times that is usually over within
// a burst.
template <typename Pred>
bool waitFor(Pred pred, std::chrono::microseconds step = std::chrono::milliseconds(10)) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(step);
  }
  return pred();
}

uint64_t totalPackets(const DataplaneStats& st) {
  uint64_t n = 0;
  for (const auto& c : st.reasons) n += c.packets;
  return n;
}

// Packets the kernel received on an interface. /proc/net/dev follows the
// caller's network namespace (sysfs would show the namespace it was mounted in).
uint64_t kernelRxPackets(const std::string& ifname) {
  std::ifstream f("/proc/net/dev");
  std::string line;
  while (std::getline(f, line)) {
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string name = line.substr(0, colon);
    name.erase(0, name.find_first_not_of(' '));
    if (name != ifname) continue;
    unsigned long long bytes = 0, packets = 0;
    std::sscanf(line.c_str() + colon + 1, "%llu %llu", &bytes, &packets);
    return packets;
  }
  return 0;
}

// An ARP request: who has 198.18.0.1 (the address the exception-path tests
// give the tap)? tell 198.18.0.2. 60 bytes.
std::vector<uint8_t> arpRequestForTheTap() {
  std::vector<uint8_t> arp = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 0x02,
                              0x08, 0x06, 0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01,
                              0x02, 0, 0, 0, 0, 0x02, 198, 18, 0, 2,
                              0, 0, 0, 0, 0, 0, 198, 18, 0, 1};
  arp.resize(60, 0);
  return arp;
}

// A plane on `o` with the exception interface `ifname`, the tap given
// 198.18.0.1/24 (what arpRequestForTheTap() asks for), started; null (the
// failure reported) if any of that failed.
std::unique_ptr<DpdkDataplane> startWithTheTap(DpdkOptions o, const std::string& ifname) {
  o.exceptionInterface = ifname;
  std::string err;
  auto dp = createDpdkDataplane(o, &err);
  EXPECT_NE(dp, nullptr) << err;
  if (!dp) return nullptr;
  const bool addressed = std::system(("ip addr add 198.18.0.1/24 dev " + ifname).c_str()) == 0;
  EXPECT_TRUE(addressed);
  const bool started = addressed && static_cast<bool>(dp->start());
  EXPECT_TRUE(started);
  return started ? std::move(dp) : nullptr;
}

// One worker on lcore 1 over a net_pcap port, small tables, started by the
// test (after it has loaded them).
DpdkOptions pcapOptions(const std::string& port) {
  DpdkOptions o;
  o.ealArgs = ealArgs();
  o.port = port;
  o.workerLcores = {1};
  o.mbufsPerWorker = 1024;
  o.rxDescriptors = o.txDescriptors = 256;
  o.limits.maxServices = 16;
  o.limits.maxBackends = 1024;
  o.limits.connTableSize = 1024;
  o.autoStart = false;
  return o;
}

// Two workers on lcores 1 and 2 over a net_pcap port with a queue each:
// queue q replays perQueue[q] (written to <kDir>/<file>_rx<q>.pcap) and
// sends to <file>_tx<q>.pcap. The workers sleep when idle (one CPU for two).
DpdkOptions twoWorkerOptions(const std::string& device, const std::string& file,
                             const std::vector<std::vector<uint8_t>> (&perQueue)[2]) {
  std::string port = "net_pcap_" + device + kPid;
  for (int q = 0; q < 2; ++q) {
    const std::string rx = kDir + "/" + file + "_rx" + std::to_string(q) + ".pcap";
    writePcap(rx, perQueue[q]);
    port += ",rx_pcap=" + rx;
  }
  for (int q = 0; q < 2; ++q) port += ",tx_pcap=" + kDir + "/" + file + "_tx" + std::to_string(q) + ".pcap";
  DpdkOptions o = pcapOptions(port);
  o.workerLcores = {1, 2};
  o.idleSleepUs = 100;
  return o;
}

// EAL starts with the first data plane of the process. A test that needs it
// before its plane (for rings and a pool of its own) starts a plane once
// (the test may run alone).
void startEal() {
  static bool started = false;
  if (started) return;
  const std::string rx = kDir + "/eal.pcap";
  writePcap(rx, inputFrames());
  std::string err;
  auto first = createDpdkDataplane(pcapOptions("net_pcap_keele" + kPid + ",rx_pcap=" + rx), &err);
  ASSERT_NE(first, nullptr) << err;
  started = true;
}

// A net_ring port over two rings and an mbuf pool the test owns: the test
// puts frames on rx, the worker sends to tx, which nobody drains (a full
// one refuses the rest, and the worker frees them). Declared before the
// plane, so the plane, which closes the port, goes first.
struct RingPort {
  rte_ring* rx = nullptr;
  rte_ring* tx = nullptr;
  rte_mempool* pool = nullptr;
  std::string name;  // DpdkOptions::port

  RingPort() = default;
  RingPort(const RingPort&) = delete;
  RingPort& operator=(const RingPort&) = delete;
  ~RingPort() {
    rte_mbuf* m;
    for (rte_ring* r : {rx, tx})
      while (r && rte_ring_dequeue(r, reinterpret_cast<void**>(&m)) == 0) rte_pktmbuf_free(m);
    rte_ring_free(rx);
    rte_ring_free(tx);
    rte_mempool_free(pool);
  }

  // One frame onto rx; false when the pool or the ring is full.
  bool put(const std::vector<uint8_t>& frame) {
    rte_mbuf* m = rte_pktmbuf_alloc(pool);
    if (!m) return false;
    std::memcpy(rte_pktmbuf_append(m, static_cast<uint16_t>(frame.size())), frame.data(), frame.size());
    if (rte_ring_enqueue(rx, m) == 0) return true;
    rte_pktmbuf_free(m);
    return false;
  }
};

// Ring sizes are powers of two and hold one less; the pool is cache-less.
// Each call a new name: the vdev outlives the plane that closes its port,
// so a repeated test (--gtest_repeat) could not make one of the same name.
void makeRingPort(const std::string& prefix, unsigned rxSize, unsigned txSize, unsigned mbufs, RingPort* p) {
  static unsigned made = 0;
  const std::string tag = prefix + kPid + "_" + std::to_string(made++);
  p->rx = rte_ring_create(("rx" + tag).c_str(), rxSize, 0, RING_F_SP_ENQ | RING_F_SC_DEQ);
  p->tx = rte_ring_create(("tx" + tag).c_str(), txSize, 0, RING_F_SP_ENQ | RING_F_SC_DEQ);
  p->pool = rte_pktmbuf_pool_create(("mp" + tag).c_str(), mbufs, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, 0);
  ASSERT_TRUE(p->rx && p->tx && p->pool) << rte_strerror(rte_errno);
  // The PMD names the port net_ring_<name>.
  ASSERT_GE(rte_eth_from_rings(tag.c_str(), &p->rx, 1, &p->tx, 1, 0), 0) << rte_strerror(rte_errno);
  p->name = "net_ring_" + tag;
}

// A veth pair in this process's namespace, `name` up; deleted (with its
// peer) when the test ends, however it ends.
struct Veth {
  // queues: each end's RX/TX queues (0: the kernel's default, one).
  Veth(std::string n, const std::string& peer, unsigned queues = 0) : name(std::move(n)) {
    const std::string q =
        queues ? " numrxqueues " + std::to_string(queues) + " numtxqueues " + std::to_string(queues) : "";
    up = std::system(("ip link add " + name + q + " type veth peer name " + peer + q + " && ip link set " + name +
                      " up && ip link set " + peer + " up")
                         .c_str()) == 0;
  }
  ~Veth() { (void)std::system(("ip link del " + name + " 2>/dev/null").c_str()); }
  std::string name;
  bool up = false;
};

class DpdkPcapTest : public ::testing::Test {
 protected:
  void SetUp() override { std::system(("mkdir -p " + kDir).c_str()); }
};

TEST_F(DpdkPcapTest, ForwardsByteForByteLikeThePurePath) {
  const auto in = inputFrames();
  const std::string rx = kDir + "/rx.pcap", tx = kDir + "/tx.pcap";
  writePcap(rx, in);

  // Expected: the pure packet path over the same tables.
  TableStore ref(16, 1024, nullptr);
  loadTables(ref);
  WorkerState refWorker(1024, 16, 1024, 1500);
  const std::vector<std::vector<uint8_t>> expected = purePathTx(ref, refWorker, in);
  ASSERT_EQ(expected.size(), 15u);  // 8 ipip + 1 l2dsr + 4 ipip6 + 1 echo + 1 frag-needed

  {
    DpdkOptions o = pcapOptions("net_pcap_keel" + kPid + ",rx_pcap=" + rx + ",tx_pcap=" + tx);
    std::string err;
    auto dp = createDpdkDataplane(o, &err);
    ASSERT_NE(dp, nullptr) << err;
    EXPECT_EQ(dp->kind(), "dpdk");
    loadTables(*dp);
    ASSERT_TRUE(dp->start());
    // A packet is counted before its burst is sent: wait for the port's
    // TX count too, or it may be read between the two.
    ASSERT_TRUE(waitFor([&] {
      const DataplaneStats s = dp->readStats();
      return totalPackets(s) >= in.size() && s.port && s.port->txPackets >= expected.size();
    }));
    DataplaneStats st = dp->readStats();
    EXPECT_EQ(totalPackets(st), in.size());
    // The one worker and its lcore; its rx_packets is the sum of its reasons,
    // so it equals the total above by construction.
    ASSERT_EQ(st.workers.size(), 1u);
    EXPECT_EQ(st.workers[0].lcore, 1u);
    EXPECT_EQ(st.workers[0].rxPackets, in.size());
    EXPECT_EQ(st.reasons[KEEL_R_TX_IPIP].packets, 12u);
    EXPECT_EQ(st.reasons[KEEL_R_TX_L2DSR].packets, 1u);
    EXPECT_EQ(st.reasons[KEEL_R_TX_ICMP_ECHO].packets, 1u);
    EXPECT_EQ(st.reasons[KEEL_R_PASS_NOT_VIP].packets, 1u);
    EXPECT_EQ(st.reasons[KEEL_R_DROP_NO_BACKEND].packets, 1u);
    EXPECT_EQ(st.reasons[KEEL_R_DROP_FRAGMENT].packets, 1u);
    EXPECT_EQ(st.reasons[KEEL_R_TX_ICMP_TOO_BIG].packets, 1u);
    EXPECT_EQ(st.reasons[KEEL_R_DROP_TOO_BIG].packets, 1u);
    EXPECT_EQ(st.services[0].packets, 8u);
    EXPECT_EQ(st.services[2].packets, 4u);
    EXPECT_EQ(st.backends[0].packets + st.backends[1].packets, 8u);
    // The port as its driver counts it: every frame in, every kTx frame
    // out, none refused by the TX queue.
    ASSERT_TRUE(st.port.has_value());
    EXPECT_EQ(st.port->rxPackets, in.size());
    EXPECT_EQ(st.port->txPackets, expected.size());
    EXPECT_EQ(st.port->rxMissed + st.port->rxNoMbuf + st.port->rxErrors, 0u);
    EXPECT_EQ(st.workers[0].txDropped, 0u);
    // The workers' occupied-way counts: the flows the same packets left in
    // the pure path's table (counted there by walking it).
    const std::optional<uint64_t> entries = dp->connTableEntries();
    ASSERT_TRUE(entries.has_value());
    EXPECT_GT(*entries, 0u);
    EXPECT_EQ(*entries, refWorker.conns.countLive());
  }  // destroying the plane closes the port: the tx pcap is complete

  auto out = readPcap(tx);
  ASSERT_EQ(out.size(), expected.size());
  for (size_t i = 0; i < out.size(); ++i) EXPECT_EQ(out[i], expected[i]) << "tx frame " << i;
  ASSERT_FALSE(out.empty());
  EXPECT_EQ(out.back().size(), 14u + 20 + 8 + 128) << "the frag-needed, cut after its quote";
}

// dpdk.mtu: the port runs at the configured MTU and its buffers hold a
// whole jumbo frame, VLAN tag included, in one segment: an 8,000-byte packet
// leaves encapsulated and whole, byte for byte as the pure path at MTU 9000
// writes it, where the driver's default 1500 would answer frag-needed; one
// over 9000 once encapsulated gets frag-needed reporting 8980.
TEST_F(DpdkPcapTest, JumboFramesAtTheConfiguredMtuForwardWhole) {
  const IpAddress vip4 = ip("10.0.0.100");
  std::vector<std::vector<uint8_t>> in;
  Frame big{ip("192.168.9.1"), vip4, 5000, 80};
  big.payload = 8000 - 40;
  big.fragOff = KEEL_IP_DF;
  in.push_back(test::buildFrame(big));
  big.sport = 5001;
  big.vlan = 100;
  in.push_back(test::buildFrame(big));
  big.sport = 5002;
  big.vlan.reset();
  big.payload = 8990 - 40;  // 8990 + 20 > 9000
  in.push_back(test::buildFrame(big));
  const std::string rx = kDir + "/jumbo_rx.pcap", tx = kDir + "/jumbo_tx.pcap";
  writePcap(rx, in);

  TableStore ref(16, 1024, nullptr);
  loadTables(ref);
  WorkerState refWorker(1024, 16, 1024, 9000);
  const std::vector<std::vector<uint8_t>> expected = purePathTx(ref, refWorker, in);
  ASSERT_EQ(expected.size(), in.size()) << "every frame is sent: two whole, one answered";
  {
    DpdkOptions o = pcapOptions("net_pcap_keelj" + kPid + ",rx_pcap=" + rx + ",tx_pcap=" + tx);
    o.mtu = 9000;
    std::string err;
    auto dp = createDpdkDataplane(o, &err);
    ASSERT_NE(dp, nullptr) << err;
    EXPECT_EQ(dp->portMtu(), std::optional<uint32_t>(9000));
    EXPECT_EQ(dp->portFacts().mtu, 9000);
    // 9000 + Ethernet + two tags, rounded up to 1 KiB (NICs round buffers down), after the headroom.
    EXPECT_EQ(dp->portFacts().bufferBytes, 128 + 9216);
    loadTables(*dp);
    ASSERT_TRUE(dp->start());
    ASSERT_TRUE(waitFor([&] { return totalPackets(dp->readStats()) >= in.size(); }));
    const DataplaneStats st = dp->readStats();
    EXPECT_EQ(st.reasons[KEEL_R_TX_IPIP].packets, 2u);
    EXPECT_EQ(st.reasons[KEEL_R_TX_ICMP_TOO_BIG].packets, 1u);
    EXPECT_EQ(st.reasons[KEEL_R_DROP_TRUNCATED].packets, 0u) << "a frame split over segments";
  }
  const auto out = readPcap(tx);
  ASSERT_EQ(out.size(), expected.size());
  for (size_t i = 0; i < out.size(); ++i) EXPECT_EQ(out[i], expected[i]) << "tx frame " << i;
  // Service 0's ring holds an IPv4 and an IPv6 real: a 20- or 40-byte outer header.
  for (size_t i : {0u, 1u}) EXPECT_TRUE(out[i].size() == in[i].size() + 20 || out[i].size() == in[i].size() + 40);
  ASSERT_GE(out[2].size(), 14u + 20 + 8);
  EXPECT_EQ(out[2][14 + 20], KEEL_ICMP_DEST_UNREACH);
  const int reported = (out[2][14 + 26] << 8) | out[2][14 + 27];
  EXPECT_TRUE(reported == 8980 || reported == 8960) << "the MTU less the outer header, got " << reported;
}

// A freed id's counters go to 0 in every worker; other ids keep theirs.
TEST_F(DpdkPcapTest, ResetCountersZeroesOneIdOnly) {
  const auto in = inputFrames();
  const std::string rx = kDir + "/reset_rx.pcap", tx = kDir + "/reset_tx.pcap";
  writePcap(rx, in);
  DpdkOptions o = pcapOptions("net_pcap_keelr" + kPid + ",rx_pcap=" + rx + ",tx_pcap=" + tx);
  std::string err;
  auto dp = createDpdkDataplane(o, &err);
  ASSERT_NE(dp, nullptr) << err;
  loadTables(*dp);
  ASSERT_TRUE(dp->start());
  ASSERT_TRUE(waitFor([&] { return totalPackets(dp->readStats()) >= in.size(); }));
  const DataplaneStats before = dp->readStats();
  ASSERT_GT(before.backends[0].packets, 0u);
  ASSERT_GT(before.services[0].packets, 0u);
  ASSERT_GT(before.services[2].packets, 0u);
  ASSERT_GT(before.backends[3].packets + before.backends[4].packets, 0u);

  ASSERT_TRUE(dp->resetCounters(CounterKind::kBackend, 0));
  ASSERT_TRUE(dp->resetCounters(CounterKind::kService, 0));
  const DataplaneStats after = dp->readStats();
  EXPECT_EQ(after.backends[0].packets, 0u);
  EXPECT_EQ(after.backends[0].bytes, 0u);
  EXPECT_EQ(after.services[0].packets, 0u);
  EXPECT_EQ(after.services[0].bytes, 0u);
  for (uint32_t id : {1u, 2u, 3u, 4u}) {
    EXPECT_EQ(after.backends[id].packets, before.backends[id].packets) << "backend " << id;
    EXPECT_EQ(after.backends[id].bytes, before.backends[id].bytes) << "backend " << id;
  }
  for (uint32_t id : {1u, 2u, 3u}) {
    EXPECT_EQ(after.services[id].packets, before.services[id].packets) << "service " << id;
    EXPECT_EQ(after.services[id].bytes, before.services[id].bytes) << "service " << id;
  }
  EXPECT_EQ(totalPackets(after), totalPackets(before));  // reason counters are not per id

  Status s = dp->resetCounters(CounterKind::kBackend, 1024);
  EXPECT_FALSE(s);
  EXPECT_NE(s.message().find("backend id 1024"), std::string::npos) << s.message();
}

// A counter reset inside a batch (the registry releasing an id) first
// publishes what the batch changed so far, so no worker still holds a
// snapshot that uses the id when it is zeroed: here the tables a batch
// loaded forward packets before the batch ends. Without that publish the
// worker would still see no VIP and pass every packet.
TEST_F(DpdkPcapTest, ACounterResetInsideABatchPublishesTheBatchFirst) {
  const auto in = inputFrames();
  const std::string rx = kDir + "/batch_rx.pcap", tx = kDir + "/batch_tx.pcap";
  writePcap(rx, in);
  DpdkOptions o = pcapOptions("net_pcap_keelb" + kPid + ",rx_pcap=" + rx + ",tx_pcap=" + tx);
  std::string err;
  auto dp = createDpdkDataplane(o, &err);
  ASSERT_NE(dp, nullptr) << err;
  {
    DataplaneBatch batch(*dp);
    loadTables(*dp);
    ASSERT_TRUE(dp->resetCounters(CounterKind::kBackend, 9));
    ASSERT_TRUE(dp->start());
    ASSERT_TRUE(waitFor([&] { return totalPackets(dp->readStats()) >= in.size(); }));
    EXPECT_GT(dp->readStats().backends[0].packets, 0u);
  }
}

// keelctl conns and the MTU check, read from the control thread while the
// worker runs: scanConns() visits each entry the worker wrote once, tagged
// with the worker, as findConn() finds it; portMtu() is the port's.
TEST_F(DpdkPcapTest, ScanConnsAndPortMtuReadTheRunningPlane) {
  const auto in = inputFrames();
  const std::string rx = kDir + "/scan_rx.pcap", tx = kDir + "/scan_tx.pcap";
  writePcap(rx, in);
  DpdkOptions o = pcapOptions("net_pcap_keels" + kPid + ",rx_pcap=" + rx + ",tx_pcap=" + tx);
  std::string err;
  auto dp = createDpdkDataplane(o, &err);
  ASSERT_NE(dp, nullptr) << err;
  EXPECT_EQ(dp->portMtu(), std::optional<uint32_t>(1500)) << "net_pcap's default";
  loadTables(*dp);
  ASSERT_TRUE(dp->start());
  ASSERT_TRUE(waitFor([&] { return totalPackets(dp->readStats()) >= in.size(); }));
  size_t visited = 0, agree = 0, otherWorker = 0;
  ASSERT_TRUE(dp->scanConns([&](const keel_flow_key& key, const ConnEntry& e, int worker) {
    ++visited;
    otherWorker += worker != 0;
    const std::optional<ConnEntry> found = dp->findConn(key);
    agree += found && found->backendId == e.backendId && found->gen == e.gen;
  }));
  ASSERT_TRUE(dp->connTableEntries());
  EXPECT_GT(visited, 0u) << "the fixture's flows to services made entries";
  EXPECT_EQ(visited, *dp->connTableEntries());
  EXPECT_EQ(agree, visited);
  EXPECT_EQ(otherWorker, 0u) << "one worker";
}

// An ICMP frag-needed toward the VIP from a router, quoting the reply
// `quoted` (VIP to client), as worker_path_test builds it.
std::vector<uint8_t> icmpErrorFor(const IpAddress& router, const Frame& quoted) {
  const std::vector<uint8_t> q = test::buildFrame(quoted);
  const size_t quoteLen = 20 + 8;
  Frame e{router, quoted.src};
  e.proto = KEEL_IPPROTO_ICMP;
  e.icmpType = KEEL_ICMP_DEST_UNREACH;
  e.payload = quoteLen;
  std::vector<uint8_t> out = test::buildFrame(e);
  const size_t icmp = 14 + 20;
  out[icmp + 1] = KEEL_ICMP_FRAG_NEEDED;
  std::copy(q.begin() + 14, q.begin() + 14 + static_cast<long>(quoteLen), out.begin() + static_cast<long>(icmp + 8));
  return out;
}

// keel_conntrack_capacity on DPDK: every worker's table has an IPv4 and an
// IPv6 half, each of conn_table_size / workers flows rounded up to a power
// of two of 4-way buckets, and the plane can hold all of them at once. Two
// workers (one net_pcap rx file per queue, so the test chooses which worker
// sees which flow) with conn_table_size 8: one bucket per family per
// worker, 16 ways, and 4 IPv4 and 4 IPv6 flows per worker fill them all,
// twice limits.conn_table_size. The workers' per-worker counters arrive
// too: an ICMP error on worker 1 quoting a flow no table holds is a peer
// lookup not found.
TEST_F(DpdkPcapTest, ConntrackCapacityIsEveryWorkersWaysOfBothFamilies) {
  const IpAddress vip4 = ip("10.0.0.100"), vip6 = ip("2001:db8::100");
  std::vector<std::vector<uint8_t>> perQueue[2];
  for (int q = 0; q < 2; ++q)
    for (int i = 0; i < 4; ++i) {
      const std::string n = std::to_string(q * 4 + i + 1);
      perQueue[q].push_back(test::buildFrame(Frame{ip(("192.168.5." + n).c_str()), vip4, 1000, 80}));
      perQueue[q].push_back(
          test::buildFrame(Frame{ip(("2001:db8:5::" + n).c_str()), vip6, 1000, 53, KEEL_PROTO_UDP}));
    }
  perQueue[1].push_back(icmpErrorFor(ip("192.0.2.254"), Frame{vip4, ip("192.168.9.9"), 80, 5000}));
  DpdkOptions o = twoWorkerOptions("keelc", "cap", perQueue);
  o.limits.connTableSize = 8;
  std::string err;
  auto dp = createDpdkDataplane(o, &err);
  ASSERT_NE(dp, nullptr) << err;
  EXPECT_EQ(dp->connTableCapacity(), 16u) << "2 workers x 2 families x 1 bucket of 4 ways";
  EXPECT_EQ(dp->connTableEntries(), std::optional<uint64_t>(0));
  loadTables(*dp);
  ASSERT_TRUE(dp->start());
  const uint64_t sent = perQueue[0].size() + perQueue[1].size();
  ASSERT_TRUE(waitFor([&] { return totalPackets(dp->readStats()) >= sent; }));
  EXPECT_EQ(dp->connTableEntries(), std::optional<uint64_t>(16)) << "every way taken";
  EXPECT_EQ(dp->connTableCapacity(), 16u);
  const DataplaneStats st = dp->readStats();
  ASSERT_EQ(st.workers.size(), 2u);
  EXPECT_EQ(st.workers[0].rxPackets, perQueue[0].size());
  EXPECT_EQ(st.workers[1].rxPackets, perQueue[1].size());
  EXPECT_EQ(st.workers[0].icmpPeerNotFound, 0u);
  EXPECT_EQ(st.workers[1].icmpPeerNotFound, 1u);
  EXPECT_EQ(st.workers[1].icmpPeerFound + st.workers[1].icmpPeerRateLimited, 0u);
  for (const WorkerStats& w : st.workers) {  // each worker's halves, full (keel_dpdk_conntrack_*)
    EXPECT_EQ(w.connEntries, (std::array<uint64_t, 2>{4, 4})) << "worker " << w.worker;
    EXPECT_EQ(w.connCapacity, (std::array<uint64_t, 2>{4, 4})) << "worker " << w.worker;
    EXPECT_EQ(w.connLiveEvictions, (std::array<uint64_t, 2>{0, 0})) << "every flow had a way";
  }
  EXPECT_EQ(st.reasons[KEEL_R_TX_IPIP].packets, 17u) << "16 flows and the error, by the ring";

  // The default size, as docs/metrics.md gives it: 1,000,000 flows over
  // two workers is 500,000 a family each, 131,072 buckets (524,288 ways);
  // over one worker 1,000,000, 262,144 buckets (1,048,576 ways).
  dp.reset();
  o = twoWorkerOptions("keelc", "cap", perQueue);
  o.limits.connTableSize = 1000000;
  dp = createDpdkDataplane(o, &err);
  ASSERT_NE(dp, nullptr) << err;
  EXPECT_EQ(dp->connTableCapacity(), 2u * 2 * 524288);
  dp.reset();
  o.port = "net_pcap_keelc" + kPid + ",rx_pcap=" + kDir + "/cap_rx0.pcap,tx_pcap=" + kDir + "/cap_tx0.pcap";
  o.workerLcores = {1};
  dp = createDpdkDataplane(o, &err);
  ASSERT_NE(dp, nullptr) << err;
  EXPECT_EQ(dp->connTableCapacity(), 2u * 1048576);
  EXPECT_EQ(dp->connTableCapacity(), 2097152u) << "docs/metrics.md";
}

// A start is all or nothing. With worker 2's lcore busy, start() launches
// worker 1 and then fails: it stops what it started (worker 1 returned, the
// port's link is down) and refuses to start again (net_af_packet, for one,
// does not come back from a stop). A new plane on the same port starts and
// both its workers forward. Once the tables were saved (the workers stopped
// for good) a start is refused too, not reported as a running plane.
TEST_F(DpdkPcapTest, AStartThatFailsPartWayStopsWhatItStartedAndIsNotRetried) {
  std::vector<std::vector<uint8_t>> perQueue[2];
  for (int q = 0; q < 2; ++q)
    for (int i = 0; i < 3; ++i)
      perQueue[q].push_back(test::buildFrame(
          Frame{ip(("192.168.6." + std::to_string(q * 3 + i + 1)).c_str()), ip("10.0.0.100"), 1000, 80}));
  DpdkOptions o = twoWorkerOptions("keelq", "retry", perQueue);
  std::string err;
  auto dp = createDpdkDataplane(o, &err);
  ASSERT_NE(dp, nullptr) << err;
  loadTables(*dp);
  {
    test::BusyLcore busy(2);
    const Status s = dp->start();
    ASSERT_FALSE(s) << "lcore 2 is busy: the start should fail";
    EXPECT_NE(s.message().find("lcore 2"), std::string::npos) << s.message();
    EXPECT_EQ(rte_eal_get_lcore_state(1), WAIT) << "worker 1, launched before the failure, still runs";
    rte_eth_link link{};
    ASSERT_EQ(rte_eth_link_get_nowait(dp->portId(), &link), 0);
    EXPECT_EQ(link.link_status, RTE_ETH_LINK_DOWN) << "the port still runs after the failed start";
  }
  const Status again = dp->start();
  EXPECT_FALSE(again) << "a plane whose start failed started again";
  EXPECT_NE(again.message().find("its start failed"), std::string::npos) << again.message();
  dp.reset();

  dp = createDpdkDataplane(twoWorkerOptions("keelq", "retry", perQueue), &err);
  ASSERT_NE(dp, nullptr) << err;
  loadTables(*dp);
  ASSERT_TRUE(dp->start());
  ASSERT_TRUE(waitFor([&] {
    const DataplaneStats st = dp->readStats();
    return st.workers.size() == 2 && st.workers[0].rxPackets >= perQueue[0].size() &&
           st.workers[1].rxPackets >= perQueue[1].size();
  })) << "the new plane's workers do not forward";
  const DataplaneStats st = dp->readStats();
  EXPECT_EQ(st.workers[0].rxPackets, perQueue[0].size());
  EXPECT_EQ(st.workers[1].rxPackets, perQueue[1].size());
  EXPECT_EQ(st.reasons[KEEL_R_TX_IPIP].packets, totalPackets(st)) << "every frame forwarded";

  ConnExportReport rep;
  ASSERT_TRUE(dp->saveConnTables(kDir + "/retry_conns.bin", &rep));
  const Status afterSave = dp->start();
  EXPECT_FALSE(afterSave) << "a plane whose tables were saved started again";
  EXPECT_NE(afterSave.message().find("saved"), std::string::npos) << afterSave.message();
}

TEST_F(DpdkPcapTest, ExceptionPathReachesTheKernelAndBack) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root for net_tap";
  ASSERT_EQ(access("/dev/net/tun", R_OK | W_OK), 0) << "no /dev/net/tun for net_tap";
  const std::string ifname = "kx" + kPid;
  const std::string rx = kDir + "/exc_rx.pcap", tx = kDir + "/exc_tx.pcap";
  const std::vector<uint8_t> arp = arpRequestForTheTap();
  std::vector<std::vector<uint8_t>> in = {arp};
  for (int i = 0; i < 5; ++i)  // not a VIP: handed to the kernel
    in.push_back(test::buildFrame(Frame{ip("198.18.0.2"), ip("198.18.0.1"),
                                        static_cast<uint16_t>(4000 + i), 9, KEEL_PROTO_UDP}));
  writePcap(rx, in);

  auto dp = startWithTheTap(pcapOptions("net_pcap_keelx" + kPid + ",rx_pcap=" + rx + ",tx_pcap=" + tx), ifname);
  ASSERT_NE(dp, nullptr);
  ASSERT_TRUE(waitFor([&] { return totalPackets(dp->readStats()) >= in.size(); }));
  DataplaneStats st = dp->readStats();
  EXPECT_EQ(st.reasons[KEEL_R_PASS_NOT_IP].packets, 1u);
  EXPECT_EQ(st.reasons[KEEL_R_PASS_NOT_VIP].packets, 5u);
  // The kernel saw our frames on the tap and answered the ARP request
  // through it; the worker sent that answer out of the port.
  ASSERT_TRUE(waitFor([&] { return dp->exceptionEgressPackets() >= 1; }));
  EXPECT_GE(kernelRxPackets(ifname), in.size());
  st = dp->readStats();
  ASSERT_EQ(st.workers.size(), 1u);
  EXPECT_EQ(st.workers[0].fromKernel, dp->exceptionEgressPackets());
  EXPECT_EQ(st.workers[0].toKernelDropped + st.workers[0].fromKernelDropped, 0u);
  const std::array<uint8_t, 6> portMac = dp->portMac();
  ASSERT_NE(portMac, (std::array<uint8_t, 6>{}));
  dp.reset();
  bool sawReply = false;
  for (const auto& f : readPcap(tx)) {
    if (f.size() >= 42 && f[12] == 0x08 && f[13] == 0x06 && f[21] == 2 &&  // ARP reply
        f[28] == 198 && f[29] == 18 && f[30] == 0 && f[31] == 1) {
      sawReply = true;
      // The tap carries the port's MAC, so the kernel names the MAC that
      // frames for this host arrive on (Ethernet source and ARP sender).
      EXPECT_TRUE(std::equal(portMac.begin(), portMac.end(), f.begin() + 6));
      EXPECT_TRUE(std::equal(portMac.begin(), portMac.end(), f.begin() + 22));
    }
  }
  EXPECT_TRUE(sawReply);
}

// Frames the tap refuses (over its MTU: jumbo frames for the host on a
// 9000-byte port) are dropped alone: net_tap stops a burst at such a frame,
// and the frames behind it in the burst (here the ARP request the kernel
// must answer, behind two of them) used to be freed with it. And a port MTU under 1500 is the tap's,
// so the host's own traffic is sized for the port.
TEST_F(DpdkPcapTest, TheExceptionPathDropsOnlyTheFrameTheTapRefuses) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root for net_tap";
  ASSERT_EQ(access("/dev/net/tun", R_OK | W_OK), 0) << "no /dev/net/tun for net_tap";
  const std::string ifname = "kx" + kPid;
  const std::string rx = kDir + "/exc_big_rx.pcap", tx = kDir + "/exc_big_tx.pcap";
  const std::vector<uint8_t> arp = arpRequestForTheTap();
  Frame big{ip("198.18.0.2"), ip("198.18.0.1"), 4000, 9, KEEL_PROTO_UDP};
  big.payload = 8000;  // not a VIP: for the kernel, over the tap's MTU
  std::vector<std::vector<uint8_t>> in = {test::buildFrame(big)};
  big.sport = 3999;
  in.push_back(test::buildFrame(big));  // two in a row, then the ARP request
  in.push_back(arp);
  for (int i = 1; i < 4; ++i)
    in.push_back(test::buildFrame(Frame{ip("198.18.0.2"), ip("198.18.0.1"), static_cast<uint16_t>(4000 + i), 9,
                                        KEEL_PROTO_UDP}));
  writePcap(rx, in);
  {
    DpdkOptions o = pcapOptions("net_pcap_keelxb" + kPid + ",rx_pcap=" + rx + ",tx_pcap=" + tx);
    o.mtu = 9000;
    auto dp = startWithTheTap(o, ifname);
    ASSERT_NE(dp, nullptr);
    ASSERT_TRUE(waitFor([&] { return totalPackets(dp->readStats()) >= in.size(); }));
    ASSERT_TRUE(waitFor([&] { return dp->exceptionEgressPackets() >= 1; })) << "no ARP reply from the kernel";
    const DataplaneStats st = dp->readStats();
    ASSERT_EQ(st.workers.size(), 1u);
    EXPECT_EQ(st.workers[0].toKernelDropped, 2u);
    EXPECT_GE(kernelRxPackets(ifname), in.size() - 2);
  }
  bool sawReply = false;
  for (const auto& f : readPcap(tx))
    sawReply = sawReply || (f.size() >= 42 && f[12] == 0x08 && f[13] == 0x06 && f[21] == 2);
  EXPECT_TRUE(sawReply);

  DpdkOptions o = pcapOptions("net_pcap_keelxm" + kPid + ",rx_pcap=" + rx + ",tx_pcap=" + tx);
  o.mtu = 1400;
  o.exceptionInterface = ifname;
  std::string err;
  auto dp = createDpdkDataplane(o, &err);
  ASSERT_NE(dp, nullptr) << err;
  // SIOCGIFMTU: sysfs shows the namespace it was mounted in, not this one.
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, ifname.c_str(), IFNAMSIZ - 1);
  const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  const int rc = ::ioctl(fd, SIOCGIFMTU, &ifr);
  ::close(fd);
  ASSERT_EQ(rc, 0) << std::strerror(errno);
  EXPECT_EQ(ifr.ifr_mtu, 1400);
}

// A port whose driver cannot take dpdk.mtu fails the start with its range
// (net_tap as the port: its largest frame is 1522 bytes, MTU 1504; its
// minimum is ethdev's default), and
// nothing of it is left behind: the same name can be probed again.
TEST_F(DpdkPcapTest, AnMtuThePortCannotTakeFailsWithItsRange) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root for net_tap";
  ASSERT_EQ(access("/dev/net/tun", R_OK | W_OK), 0) << "no /dev/net/tun for net_tap";
  DpdkOptions o = pcapOptions("net_tap_keelm" + kPid + ",iface=km" + kPid);
  o.mtu = 9000;
  std::string err;
  auto dp = createDpdkDataplane(o, &err);
  EXPECT_EQ(dp, nullptr);
  const std::string want = "dpdk.mtu: 9000 is outside what dpdk.port takes: its driver's MTU range is ";
  EXPECT_EQ(err.substr(0, want.size()), want) << err;
  EXPECT_EQ(err.substr(err.size() - 6), "..1504") << err;
  o.mtu = 1504;
  dp = createDpdkDataplane(o, &err);
  ASSERT_NE(dp, nullptr) << err;
  EXPECT_EQ(dp->portMtu(), std::optional<uint32_t>(1504));
}

// An exception interface whose name is taken is refused by name, not with
// net_tap's bare "File exists".
TEST_F(DpdkPcapTest, AnExceptionInterfaceNameAlreadyTakenIsAClearError) {
  const std::string rx = kDir + "/taken_rx.pcap";
  writePcap(rx, inputFrames());
  DpdkOptions o = pcapOptions("net_pcap_keelt" + kPid + ",rx_pcap=" + rx + ",tx_pcap=" + kDir + "/taken_tx.pcap");
  o.exceptionInterface = "lo";
  std::string err;
  EXPECT_EQ(createDpdkDataplane(o, &err), nullptr);
  EXPECT_EQ(err, "dpdk.exception_interface: an interface named lo already exists; keeld creates this tap itself "
                 "(and removes it when it stops): name one no other interface has");
}

// The MTU `ip -o link show` prints for an interface of this process's
// namespace (its /sys is the host's); 0 if it has none.
unsigned linkMtu(const std::string& iface) {
  FILE* p = popen(("ip -o link show dev " + iface).c_str(), "r");
  char line[512] = {};
  const bool got = p && fgets(line, sizeof line, p);
  if (p) pclose(p);
  const char* at = got ? std::strstr(line, " mtu ") : nullptr;
  return at ? static_cast<unsigned>(std::strtoul(at + 5, nullptr, 10)) : 0u;
}

// dpdk.mtu on a vdev over a kernel interface sets that interface's MTU (the
// driver does); the plane puts the old one back when it closes, and when
// its start fails after setting it, so no keeld leaves the host's interface
// at its MTU for the next one to miss.
TEST_F(DpdkPcapTest, TheKernelInterfacesMtuIsPutBackAtCloseAndAfterAFailedStart) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root for a veth and packet sockets";
  const std::string a = "kqm" + kPid;
  Veth link(a, "kqn" + kPid);
  ASSERT_TRUE(link.up) << "ip link add " << a;
  auto mtu = [&] { return linkMtu(a); };
  ASSERT_EQ(mtu(), 1500u);
  DpdkOptions o = pcapOptions("net_af_packet_keelm" + kPid + ",iface=" + a + ",qpairs=1");
  o.mtu = 1400;
  std::string err;
  {
    auto dp = createDpdkDataplane(o, &err);
    ASSERT_NE(dp, nullptr) << err;
    EXPECT_EQ(mtu(), 1400u) << "the driver set dpdk.mtu on the interface";
    ASSERT_TRUE(dp->start());
  }
  EXPECT_EQ(mtu(), 1500u) << "not put back at close";
  // A start that fails after the MTU was set (the exception interface's
  // name is taken) puts it back too.
  o.port = "net_af_packet_keeln" + kPid + ",iface=" + a + ",qpairs=1";
  o.exceptionInterface = "lo";
  EXPECT_EQ(createDpdkDataplane(o, &err), nullptr);
  EXPECT_NE(err.find("an interface named lo already exists"), std::string::npos) << err;
  EXPECT_EQ(mtu(), 1500u) << "a failed start left the interface at dpdk.mtu";
  // A jumbo MTU comes back too, though above what the driver itself takes
  // (af_packet: 1518-byte frames).
  ASSERT_EQ(std::system(("ip link set dev " + a + " mtu 9000").c_str()), 0);
  o.port = "net_af_packet_keelo" + kPid + ",iface=" + a + ",qpairs=1";
  o.exceptionInterface.clear();
  {
    auto dp = createDpdkDataplane(o, &err);
    ASSERT_NE(dp, nullptr) << err;
    EXPECT_EQ(mtu(), 1400u);
  }
  EXPECT_EQ(mtu(), 9000u) << "a jumbo MTU was not put back";
}

// The flags `ip -o link show` prints for an interface of this process's
// namespace ("<BROADCAST,MULTICAST,PROMISC,UP,...>"); empty if it has none.
std::string linkFlags(const std::string& iface) {
  FILE* p = popen(("ip -o link show dev " + iface + " 2>/dev/null").c_str(), "r");
  char line[512] = {};
  const bool got = p && fgets(line, sizeof line, p);
  if (p) pclose(p);
  const char* open = got ? std::strchr(line, '<') : nullptr;
  const char* close = open ? std::strchr(open, '>') : nullptr;
  return close ? std::string(open, close + 1) : std::string();
}

bool hasFlag(const std::string& flags, const std::string& flag) {
  return flags.find("<" + flag + ",") != std::string::npos || flags.find("," + flag + ",") != std::string::npos ||
         flags.find("," + flag + ">") != std::string::npos || flags == "<" + flag + ">";
}

// portLinkUp() follows the port's link (keeld polls it for the health
// checker: the exception tap is always running, so the kernel cannot tell
// a check there that the link is gone): a veth whose peer goes down and
// comes back.
TEST_F(DpdkPcapTest, PortLinkUpFollowsThePortsLink) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root for a veth and packet sockets";
  const std::string a = "kla" + kPid, b = "klb" + kPid;
  Veth link(a, b);
  ASSERT_TRUE(link.up) << "ip link add " << a;
  std::string err;
  auto dp = createDpdkDataplane(pcapOptions("net_af_packet_keell" + kPid + ",iface=" + a + ",qpairs=1"), &err);
  ASSERT_NE(dp, nullptr) << err;
  ASSERT_TRUE(dp->start());
  EXPECT_TRUE(waitFor([&] { return dp->portLinkUp() == std::optional<bool>(true); }));
  ASSERT_EQ(std::system(("ip link set " + b + " down").c_str()), 0);
  EXPECT_TRUE(waitFor([&] { return dp->portLinkUp() == std::optional<bool>(false); }));
  ASSERT_EQ(std::system(("ip link set " + b + " up").c_str()), 0);
  EXPECT_TRUE(waitFor([&] { return dp->portLinkUp() == std::optional<bool>(true); }));
}

// The port takes frames to other MACs only when asked (dpdk.promiscuous):
// a flooded frame for another balancer's MAC is not forwarded twice. A vdev
// over a kernel interface leaves the kernel's mode alone unless asked, and
// gets it back at close when asked; any other device (net_tap here) is
// turned all-multicast instead, so ND and VRRP still reach the exception
// interface.
TEST_F(DpdkPcapTest, ThePortIsPromiscuousOnlyWhenAsked) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root for a veth, packet sockets and net_tap";
  ASSERT_EQ(access("/dev/net/tun", F_OK), 0) << "no /dev/net/tun for net_tap";
  const std::string a = "kpa" + kPid;
  Veth link(a, "kpb" + kPid);
  ASSERT_TRUE(link.up) << "ip link add " << a;
  std::string err;
  ASSERT_FALSE(hasFlag(linkFlags(a), "PROMISC")) << linkFlags(a);
  ASSERT_FALSE(hasFlag(linkFlags(a), "ALLMULTI")) << linkFlags(a);
  DpdkOptions o = pcapOptions("net_af_packet_keelp" + kPid + ",iface=" + a + ",qpairs=1");
  {
    auto dp = createDpdkDataplane(o, &err);
    ASSERT_NE(dp, nullptr) << err;
    ASSERT_TRUE(dp->start());
    EXPECT_FALSE(hasFlag(linkFlags(a), "PROMISC")) << "made promiscuous unasked: " << linkFlags(a);
    // The exception interface's multicast groups (ND, VRRP) are not the
    // kernel interface's own: all-multicast lets them through its NIC.
    EXPECT_TRUE(hasFlag(linkFlags(a), "ALLMULTI")) << "not all-multicast: " << linkFlags(a);
    EXPECT_FALSE(dp->portFacts().promiscuous);
    EXPECT_TRUE(dp->portFacts().allMulticast);
  }
  EXPECT_FALSE(hasFlag(linkFlags(a), "ALLMULTI")) << "all-multicast left on at close: " << linkFlags(a);
  o.port = "net_af_packet_keelq" + kPid + ",iface=" + a + ",qpairs=1";
  o.promiscuous = true;
  {
    auto dp = createDpdkDataplane(o, &err);
    ASSERT_NE(dp, nullptr) << err;
    ASSERT_TRUE(dp->start());
    EXPECT_TRUE(hasFlag(linkFlags(a), "PROMISC")) << "dpdk.promiscuous: true not applied: " << linkFlags(a);
    EXPECT_TRUE(dp->portFacts().promiscuous);
  }
  EXPECT_FALSE(hasFlag(linkFlags(a), "PROMISC")) << "promiscuous mode left on at close: " << linkFlags(a);
  // The operator's own promiscuous mode is left as it was, through the run
  // (the port's start would clear it) and after it, asked for or not.
  ASSERT_EQ(std::system(("ip link set dev " + a + " promisc on").c_str()), 0);
  for (bool asked : {false, true}) {
    o.port = std::string("net_af_packet_keel") + (asked ? "s" : "r") + kPid + ",iface=" + a + ",qpairs=1";
    o.promiscuous = asked;
    {
      auto dp = createDpdkDataplane(o, &err);
      ASSERT_NE(dp, nullptr) << err;
      ASSERT_TRUE(dp->start());
      EXPECT_TRUE(hasFlag(linkFlags(a), "PROMISC")) << "the operator's promiscuous mode cleared: " << linkFlags(a);
      EXPECT_TRUE(dp->portFacts().promiscuous) << "reported as the interface has it";
    }
    EXPECT_TRUE(hasFlag(linkFlags(a), "PROMISC")) << "the operator's promiscuous mode cleared at close: "
                                                  << linkFlags(a);
  }

  // A device that is not a kernel interface's vdev: net_tap as the port.
  const std::string t = "kpt" + kPid;
  o.port = "net_tap_keelp" + kPid + ",iface=" + t;
  o.promiscuous = false;
  {
    auto dp = createDpdkDataplane(o, &err);
    ASSERT_NE(dp, nullptr) << err;
    ASSERT_TRUE(dp->start());
    const std::string flags = linkFlags(t);
    EXPECT_FALSE(hasFlag(flags, "PROMISC")) << flags;
    EXPECT_TRUE(hasFlag(flags, "ALLMULTI")) << "not all-multicast: " << flags;
    EXPECT_FALSE(dp->portFacts().promiscuous);
    EXPECT_TRUE(dp->portFacts().allMulticast);
  }
  o.port = "net_tap_keelq" + kPid + ",iface=" + t;
  o.promiscuous = true;
  {
    auto dp = createDpdkDataplane(o, &err);
    ASSERT_NE(dp, nullptr) << err;
    ASSERT_TRUE(dp->start());
    EXPECT_TRUE(hasFlag(linkFlags(t), "PROMISC")) << linkFlags(t);
    EXPECT_TRUE(dp->portFacts().promiscuous);
  }
}

// A keeld that is killed never closes its port: its interface keeps keel's
// MTU and receive modes. The plane records what the interface had before
// it changed anything (DpdkOptions::kernelStateFile, removed at close), so
// the next plane puts that back first instead of taking the dead one's
// promiscuous mode for the operator's (DPDK operator review F4).
TEST_F(DpdkPcapTest, WhatAKilledPlaneLeftOnItsInterfaceIsPutBackByTheNext) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root for a veth and packet sockets";
  const std::string a = "kka" + kPid;
  Veth link(a, "kkb" + kPid);
  ASSERT_TRUE(link.up) << "ip link add " << a;
  auto mtu = [&] { return linkMtu(a); };
  auto contents = [](const std::string& path) {
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    return in ? text.str() : std::string();
  };
  const std::string file = kDir + "/interface-dpdk-" + a + ".txt";
  const std::string ifindex = std::to_string(if_nametoindex(a.c_str()));
  ASSERT_EQ(mtu(), 1500u);
  DpdkOptions o = pcapOptions("net_af_packet_keelk" + kPid + ",iface=" + a + ",qpairs=1");
  o.promiscuous = true;
  o.mtu = 1400;
  o.kernelStateFile = file;
  std::string err, recorded;
  {
    auto dp = createDpdkDataplane(o, &err);
    ASSERT_NE(dp, nullptr) << err;
    ASSERT_TRUE(dp->start());
    EXPECT_TRUE(hasFlag(linkFlags(a), "PROMISC")) << linkFlags(a);
    EXPECT_EQ(mtu(), 1400u);
    recorded = contents(file);
    std::string boot;
    std::ifstream("/proc/sys/kernel/random/boot_id") >> boot;
    EXPECT_EQ(recorded, "keel-kernel-state 1 iface=" + a + " ifindex=" + ifindex + " boot=" + boot +
                            " mtu=1500 promiscuous=0 allmulticast=0\n")
        << "written before the port changed the interface";
  }
  EXPECT_NE(access(file.c_str(), F_OK), 0) << "the file outlived a clean close";
  EXPECT_FALSE(hasFlag(linkFlags(a), "PROMISC")) << linkFlags(a);

  // What a killed plane leaves: its modes and MTU on the interface, its file.
  ASSERT_EQ(std::system(("ip link set dev " + a + " promisc on allmulticast on mtu 1400").c_str()), 0);
  {
    std::ofstream(file) << recorded;
  }
  std::ostringstream log;
  auto previous = spdlog::default_logger();
  auto capture = std::make_shared<spdlog::logger>("capture", std::make_shared<spdlog::sinks::ostream_sink_mt>(log));
  capture->set_pattern("level=%l %v");
  spdlog::set_default_logger(capture);
  o.port = "net_af_packet_keell" + kPid + ",iface=" + a + ",qpairs=1";
  o.promiscuous = false;
  o.mtu = 0;
  {
    auto dp = createDpdkDataplane(o, &err);
    spdlog::set_default_logger(previous);
    ASSERT_NE(dp, nullptr) << err;
    ASSERT_TRUE(dp->start());
    EXPECT_FALSE(hasFlag(linkFlags(a), "PROMISC")) << "the killed plane's promiscuous mode kept: " << linkFlags(a);
    EXPECT_FALSE(dp->portFacts().promiscuous);
    EXPECT_EQ(mtu(), 1500u) << "the killed plane's MTU kept";
    EXPECT_EQ(contents(file), recorded) << "recorded again as the interface is now";
  }
  spdlog::set_default_logger(previous);
  EXPECT_NE(log.str().find("level=warning event=dpdk_kernel_state_restored interface=" + a), std::string::npos)
      << log.str();
  EXPECT_NE(access(file.c_str(), F_OK), 0);
  EXPECT_FALSE(hasFlag(linkFlags(a), "PROMISC")) << linkFlags(a);
  EXPECT_FALSE(hasFlag(linkFlags(a), "ALLMULTI")) << linkFlags(a);
  EXPECT_EQ(mtu(), 1500u);

  // A record of another interface, of this name made again (another
  // ifindex) or of another boot is not used: the operator's promiscuous
  // mode stays.
  ASSERT_EQ(std::system(("ip link set dev " + a + " promisc on").c_str()), 0);
  auto other = [&](const std::string& from, const std::string& to) {
    std::string r = recorded;
    const size_t at = r.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    if (at != std::string::npos) r.replace(at, from.size(), to);
    return r;
  };
  char port = 'w';
  for (const std::string& record : {other("iface=" + a, "iface=other0"),
                                    other("ifindex=" + ifindex, "ifindex=" + std::to_string(std::stoul(ifindex) + 1000)),
                                    other("boot=", "boot=0")}) {
    std::ofstream(file) << record;
    o.port = std::string("net_af_packet_keel") + port++ + kPid + ",iface=" + a + ",qpairs=1";
    {
      auto dp = createDpdkDataplane(o, &err);
      ASSERT_NE(dp, nullptr) << err;
      ASSERT_TRUE(dp->start());
      EXPECT_TRUE(hasFlag(linkFlags(a), "PROMISC")) << "set by the operator, not by a keeld on this interface: "
                                                    << record;
    }
    EXPECT_TRUE(hasFlag(linkFlags(a), "PROMISC")) << linkFlags(a);
  }

  // A record that cannot be applied (here an MTU below the interface's
  // minimum) is kept as it was, for the next keeld, and the plane runs:
  // neither rewritten with what the interface has now (the dead plane's
  // MTU would become the operator's) nor removed at close.
  ASSERT_EQ(std::system(("ip link set dev " + a + " mtu 1400").c_str()), 0);
  const std::string unapplicable = other("mtu=1500", "mtu=60");
  std::ofstream(file) << unapplicable;
  log.str("");
  spdlog::set_default_logger(capture);
  o.port = "net_af_packet_keelz" + kPid + ",iface=" + a + ",qpairs=1";
  {
    auto dp = createDpdkDataplane(o, &err);
    spdlog::set_default_logger(previous);
    ASSERT_NE(dp, nullptr) << err;
    ASSERT_TRUE(dp->start());
    EXPECT_EQ(mtu(), 1400u);
    EXPECT_FALSE(hasFlag(linkFlags(a), "PROMISC")) << "the record's modes were set: " << linkFlags(a);
  }
  spdlog::set_default_logger(previous);
  EXPECT_EQ(contents(file), unapplicable) << "a record that could not be applied was not kept as it was";
  EXPECT_NE(log.str().find("the MTU could not be set"), std::string::npos) << log.str();
  EXPECT_NE(log.str().find(file + " is kept for the next keeld"), std::string::npos) << log.str();
  std::remove(file.c_str());
}

// limits.max_reals is the limit the registry enforces, as on XDP: not the
// store's slot count, which is rounded up to whole chunks (1024), so a
// config that runs on DPDK runs on XDP too.
TEST_F(DpdkPcapTest, LimitsAreTheConfiguredOnesNotTheRoundedSlots) {
  const std::string rx = kDir + "/limits_rx.pcap";
  writePcap(rx, inputFrames());
  DpdkOptions o = pcapOptions("net_pcap_keell" + kPid + ",rx_pcap=" + rx + ",tx_pcap=" + kDir + "/limits_tx.pcap");
  o.limits.maxBackends = 8;
  std::string err;
  auto dp = createDpdkDataplane(o, &err);
  ASSERT_NE(dp, nullptr) << err;
  EXPECT_EQ(dp->limits().maxBackends, 8u);
  EXPECT_EQ(dp->limits().maxServices, 16u);
}

// libbpf's two calls the log test makes: its header's linux/bpf.h clashes
// with pcap's classic struct bpf_insn, so they are declared here.
extern "C" {
struct bpf_object;
struct bpf_object_open_opts;
bpf_object* bpf_object__open_file(const char* path, const bpf_object_open_opts* opts);
long libbpf_get_error(const void* ptr);
}

// Calls a printf-like printer that takes a va_list.
int callPrint(int (*print)(int, const char*, va_list), int level, const char* fmt, ...) {
  va_list args;
  va_start(args, fmt);
  const int n = print(level, fmt, args);
  va_end(args);
  return n;
}

// DPDK's own lines (EAL, drivers) are keel records at DPDK's level, one per
// line, not lines of their own on EAL's default stream.
TEST_F(DpdkPcapTest, DpdkLogLinesAreKeelRecords) {
  const std::string rx = kDir + "/log_rx.pcap";
  writePcap(rx, inputFrames());
  DpdkOptions o = pcapOptions("net_pcap_keelg" + kPid + ",rx_pcap=" + rx + ",tx_pcap=" + kDir + "/log_tx.pcap");
  std::string err;
  auto dp = createDpdkDataplane(o, &err);  // EAL runs (once per process)
  ASSERT_NE(dp, nullptr) << err;
  std::ostringstream out;
  auto previous = spdlog::default_logger();
  auto capture = std::make_shared<spdlog::logger>("capture", std::make_shared<spdlog::sinks::ostream_sink_mt>(out));
  capture->set_pattern("level=%l %v");
  capture->set_level(spdlog::level::trace);
  spdlog::set_default_logger(capture);
  RTE_LOG(WARNING, EAL, "keel probe %d\nsecond line\n", 7);
  RTE_LOG(ERR, EAL, "keel probe error\n");
  // A worker's line, at its own level.
  std::thread([] { RTE_LOG(ERR, EAL, "keel probe from another thread\n"); }).join();
  // The libraries of net_af_xdp: libbpf (a real warning of its own) and
  // libxdp, loaded with the driver by EAL, through the printer keeld set.
  bpf_object* none = bpf_object__open_file("/nonexistent/keel-probe.o", nullptr);
  EXPECT_EQ(libbpf_get_error(none), -ENOENT);
  // libxdp comes with DPDK's af_xdp driver (Debian's librte-net-af-xdp23);
  // a DPDK built without it loads none, and there is nothing to route.
  void* const libxdp = dlopen("libxdp.so.1", RTLD_LAZY | RTLD_NOLOAD);
  const bool haveLibxdp = libxdp != nullptr;
  if (haveLibxdp) {
    using LibxdpPrint = int (*)(int, const char*, va_list);
    auto setPrint = reinterpret_cast<LibxdpPrint (*)(LibxdpPrint)>(dlsym(libxdp, "libxdp_set_print"));
    EXPECT_NE(setPrint, nullptr);
    const LibxdpPrint keelds = setPrint ? setPrint(nullptr) : nullptr;
    if (setPrint) setPrint(keelds);
    dlclose(libxdp);
    EXPECT_NE(keelds, nullptr);
    if (keelds) {
      callPrint(keelds, 0, "libxdp: keel probe %s\n", "warn");
      callPrint(keelds, 1, "libxdp: keel probe %s\n", "info");
      callPrint(keelds, 2, "libxdp: keel probe %s\n", "debug");
    }
  }
  spdlog::set_default_logger(previous);
  const std::string got = out.str();
  EXPECT_NE(got.find("level=warning event=dpdk_log message=\"EAL: keel probe 7\"\n"), std::string::npos) << got;
  EXPECT_NE(got.find("level=warning event=dpdk_log message=\"second line\"\n"), std::string::npos) << got;
  EXPECT_NE(got.find("level=error event=dpdk_log message=\"EAL: keel probe error\"\n"), std::string::npos) << got;
  EXPECT_NE(got.find("level=error event=dpdk_log message=\"EAL: keel probe from another thread\"\n"),
            std::string::npos) << got;
  EXPECT_NE(got.find("level=warning event=dpdk_log message=\"libbpf: elf: failed to open /nonexistent/keel-probe.o: "),
            std::string::npos) << got;
  EXPECT_EQ(got.find("keel probe debug"), std::string::npos) << "libbpf and libxdp drop their debug lines";
  if (!haveLibxdp) GTEST_SKIP() << "no libxdp loaded (a DPDK without its af_xdp driver): its lines not checked";
  EXPECT_NE(got.find("level=warning event=dpdk_log message=\"libxdp: keel probe warn\"\n"), std::string::npos) << got;
  EXPECT_NE(got.find("level=info event=dpdk_log message=\"libxdp: keel probe info\"\n"), std::string::npos) << got;
}

// net_af_packet spreads flows over every qpairs= socket (one fanout group,
// opened at probe): more of them than workers would lose the flows of the
// sockets no worker reads, so the start is refused, naming the fix; as many
// starts. (lo carries no traffic of the test's.)
TEST_F(DpdkPcapTest, AnAfPacketPortWithMoreQueuePairsThanWorkersIsRefused) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root for packet sockets";
  DpdkOptions o = pcapOptions("net_af_packet_keelq" + kPid + ",iface=lo,qpairs=2");
  std::string err;
  EXPECT_EQ(createDpdkDataplane(o, &err), nullptr);
  EXPECT_EQ(err, "dpdk.port: net_af_packet opened 2 queue pairs (qpairs=) for 1 workers: the kernel spreads "
                 "flows over all of them and the flows of the 1 no worker reads would be lost; give qpairs=1");
  o.port = "net_af_packet_keelr" + kPid + ",iface=lo,qpairs=1";
  auto dp = createDpdkDataplane(o, &err);
  EXPECT_NE(dp, nullptr) << err;
}

// net_af_xdp binds a socket to each queue a worker reads; frames the NIC
// spreads onto its other queues go to the kernel. A start over an
// interface with more receive queues than the workers read says so (a veth
// with two, one worker); one with as many says nothing.
TEST_F(DpdkPcapTest, AnAfXdpPortOverMoreNicQueuesThanWorkersIsWarnedAbout) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root for AF_XDP and a veth";
  if (!dlopen("librte_net_af_xdp.so.23", RTLD_LAZY | RTLD_NOLOAD) &&
      !dlopen("librte_net_af_xdp.so.23", RTLD_LAZY))
    FAIL() << "DPDK's af_xdp driver (librte-net-af-xdp23) is not installed";
  const Veth two("kq2a" + kPid, "kq2b" + kPid, 2), one("kq1a" + kPid, "kq1b" + kPid);
  ASSERT_TRUE(two.up && one.up);
  std::ostringstream out;
  auto previous = spdlog::default_logger();
  auto capture = std::make_shared<spdlog::logger>("capture", std::make_shared<spdlog::sinks::ostream_sink_mt>(out));
  capture->set_pattern("level=%l %v");
  spdlog::set_default_logger(capture);
  auto start = [&](const Veth& veth, const char* name) {
    DpdkOptions o = pcapOptions(std::string(name) + kPid + ",iface=" + veth.name + ",queue_count=1");
    o.mbufsPerWorker = 2048;  // net_af_xdp fills its ring from the pool at set-up: 1024 are too few
    std::string err;
    auto dp = createDpdkDataplane(o, &err);
    EXPECT_NE(dp, nullptr) << err;
    return dp != nullptr;
  };
  const bool started = start(two, "net_af_xdp_keelq2") && start(one, "net_af_xdp_keelq1");
  spdlog::set_default_logger(previous);
  const std::string got = out.str();
  ASSERT_TRUE(started) << got;
  EXPECT_NE(got.find("level=warning event=dpdk_nic_queues_unread interface=" + two.name +
                     " nic_rx_queues=2 read_queues=0-0 detail=\"the frames the NIC's RSS puts on its other "
                     "queues go to the kernel, not to keel: ethtool -L " + two.name + " rx 1"),
            std::string::npos)
      << got;
  EXPECT_EQ(got.find("dpdk_nic_queues_unread interface=" + one.name), std::string::npos) << got;
}

// A PCI port given in its short form finds the device EAL probed under the
// full name (before, the lookup missed and probing it again said "File exists").
TEST(PortDeviceName, IsTheNameEalGivesTheDevice) {
  EXPECT_EQ(portDeviceName("03:00.0"), "0000:03:00.0");
  EXPECT_EQ(portDeviceName("0000:3b:00.1,rxq_cqe_comp_en=1"), "0000:3b:00.1");
  EXPECT_EQ(portDeviceName("net_af_packet0,iface=eth1,qpairs=2"), "net_af_packet0");
  EXPECT_EQ(portDeviceName("net_pcap0"), "net_pcap0");
}

// A full TX queue: the frames the worker had decided to forward and the
// port refused are freed and counted per worker (they are already in the
// service and reason counts). The port is a net_ring over two rings the test
// owns: it fills the RX ring with frames to a VIP and never drains the TX
// ring, which holds 15.
TEST_F(DpdkPcapTest, FramesAFullTxQueueRefusesAreCountedAsDropped) {
  ASSERT_NO_FATAL_FAILURE(startEal());
  RingPort port;  // before the plane, which goes first
  ASSERT_NO_FATAL_FAILURE(makeRingPort("kt", 256, 16, 255, &port));
  constexpr unsigned kFrames = 64;
  for (unsigned i = 0; i < kFrames; ++i) {
    const auto f = test::buildFrame(Frame{ip(("192.168.2." + std::to_string(i + 1)).c_str()), ip("10.0.0.100"),
                                          static_cast<uint16_t>(1000 + i), 80});
    ASSERT_TRUE(port.put(f));
  }

  std::string err;
  auto dp = createDpdkDataplane(pcapOptions(port.name), &err);
  ASSERT_NE(dp, nullptr) << err;
  loadTables(*dp);
  ASSERT_TRUE(dp->start());
  // Counted before its burst is sent: wait for the send (and its drops) too.
  ASSERT_TRUE(waitFor([&] {
    const DataplaneStats s = dp->readStats();
    return totalPackets(s) >= kFrames && !s.workers.empty() && s.workers[0].txDropped + rte_ring_count(port.tx) >= kFrames;
  }));
  const DataplaneStats st = dp->readStats();
  EXPECT_EQ(st.reasons[KEEL_R_TX_IPIP].packets, kFrames);
  ASSERT_EQ(st.workers.size(), 1u);
  EXPECT_EQ(rte_ring_count(port.tx), 15u);
  EXPECT_EQ(st.workers[0].txDropped, kFrames - 15);
}

// The connection tables come from EAL memory (-m 512 here): a table that
// cannot fit is a start-up error naming the worker, not a crash.
TEST_F(DpdkPcapTest, ConnectionTableBeyondEalMemoryIsAClearError) {
  const std::string rx = kDir + "/big_rx.pcap";
  writePcap(rx, {test::buildFrame(Frame{ip("192.168.3.1"), ip("10.0.0.100"), 2000, 80})});
  DpdkOptions o = pcapOptions("net_pcap_keelb" + kPid + ",rx_pcap=" + rx);
  o.limits.connTableSize = 1u << 25;  // 1 GiB of IPv4 entries alone
  std::string err;
  auto dp = createDpdkDataplane(o, &err);
  EXPECT_EQ(dp, nullptr);
  EXPECT_NE(err.find("connection table of worker lcore 1"), std::string::npos) << err;
  EXPECT_NE(err.find("EAL memory"), std::string::npos) << err;
}

// Lock-free publication under load: while the worker forwards a stream,
// the control thread swaps the service's ring and bumps a real's generation
// 300 times. Every packet must see a whole table: it is forwarded to a real
// of the ring before the swap or of the one after (never dropped for want
// of one, never to a third), and the counters add up to what was sent.
// Four rings, large and small in turn (a torn read, M of one and slots of
// the other, would index past the small one), each naming a real of its
// own; each swap bumps the generation of the real the old ring named, which
// sends the flows the connection table still holds there back to the new
// ring. A publish returns only after a grace period (no worker still holds
// a snapshot from before it), so from then on every packet goes to the new
// ring's real: the old one's count stands still, and the other two reals'
// stood still through the swap as well. Each swap waits until a packet has
// been forwarded under it. The test feeds the frames itself through a
// net_ring port, keeping its RX queue full through every swap, so when the
// feeding stops it knows how many were sent and the counts can be compared
// exactly.
TEST_F(DpdkPcapTest, RingSwapsUnderTrafficNeverShowHalfATable) {
  ASSERT_NO_FATAL_FAILURE(startEal());
  RingPort port;  // before the plane, which goes first
  ASSERT_NO_FATAL_FAILURE(makeRingPort("ks", 512, 16, 1023, &port));
  const IpAddress vip4 = ip("10.0.0.100");
  // Four times the flows the connection table holds (1024), sent in turn:
  // a flow's entry is gone by its next packet, so nearly every packet is
  // sent by the ring.
  std::vector<std::vector<uint8_t>> flows;
  for (int i = 0; i < 4096; ++i) {
    const std::string client = "192.168." + std::to_string(2 + i / 256) + "." + std::to_string(i % 256);
    flows.push_back(test::buildFrame(Frame{ip(client.c_str()), vip4, static_cast<uint16_t>(2000 + i), 80}));
  }
  // Tops the RX queue up to 256 frames (8 bursts), the flows in turn. The
  // shortfall is read once: the worker empties the queue as it is filled.
  uint64_t sent = 0;
  auto feed = [&] {
    for (unsigned queued = rte_ring_count(port.rx); queued < 256 && port.put(flows[sent % flows.size()]); ++queued)
      ++sent;
  };

  std::string err;
  auto dp = createDpdkDataplane(pcapOptions(port.name), &err);
  ASSERT_NE(dp, nullptr) << err;
  ASSERT_TRUE(dp->setNode(test::nodeConfig()));
  ASSERT_TRUE(dp->addVip(test::vipKey(vip4)));
  keel_service_value v{};
  ASSERT_TRUE(dp->upsertService(test::serviceKey(vip4, 80, KEEL_PROTO_TCP), v));
  // Ring r names real r + 1 (10.1.0.r+1). Real 0 is not there: memory read
  // past a ring, often zeros, names no usable real; what it finds of
  // another ring's slots names a third real.
  constexpr uint32_t kRings = 4;
  auto realOf = [](uint32_t ring) { return ring + 1; };
  auto backendOf = [&](uint32_t ring, uint32_t gen) {
    return test::backend(ip(("10.1.0." + std::to_string(realOf(ring))).c_str()), 0, gen);
  };
  std::vector<std::vector<uint32_t>> rings;
  for (uint32_t r = 0; r < kRings; ++r) {
    rings.emplace_back(r % 2 ? 7 : 65537, realOf(r));
    ASSERT_TRUE(dp->upsertBackend(realOf(r), backendOf(r, 1)));
  }
  ASSERT_TRUE(dp->publishRing(0, rings[0]));
  ASSERT_TRUE(dp->start());
  ASSERT_TRUE(waitFor([&] {
    feed();
    return totalPackets(dp->readStats()) > 1000;
  }));
  for (uint32_t i = 0; i < 300; ++i) {
    const uint32_t oldRing = i % kRings, newRing = (i + 1) % kRings;
    const uint32_t oldReal = realOf(oldRing), newReal = realOf(newRing);
    feed();
    const DataplaneStats before = dp->readStats();
    ASSERT_TRUE(dp->publishRing(0, rings[newRing]));
    ASSERT_TRUE(dp->upsertBackend(oldReal, backendOf(oldRing, i + 2)));
    const DataplaneStats swapped = dp->readStats();
    ASSERT_TRUE(waitFor(
        [&] {
          feed();
          return dp->readStats().backends[newReal].packets > swapped.backends[newReal].packets;
        },
        std::chrono::microseconds(100)))
        << "swap " << i << ": nothing forwarded to real " << newReal << " under its ring";
    const DataplaneStats after = dp->readStats();
    for (uint32_t r = 0; r < kRings; ++r) {
      const uint32_t real = realOf(r);
      if (real == newReal) continue;
      if (real == oldReal)
        ASSERT_EQ(after.backends[real].packets, swapped.backends[real].packets)
            << "swap " << i << ": a packet reached real " << real << " after its ring was replaced";
      else
        ASSERT_EQ(after.backends[real].packets, before.backends[real].packets)
            << "swap " << i << " (real " << oldReal << " to " << newReal << "): a packet reached real " << real
            << ", whose ring was neither";
    }
  }

  // The feeding stops: wait until the worker has counted and sent what it got.
  const uint64_t n = sent;
  DataplaneStats st;
  auto reals = [&] {
    uint64_t sum = 0;
    for (uint32_t r = 0; r < kRings; ++r) sum += st.backends[realOf(r)].packets;
    return sum;
  };
  EXPECT_TRUE(waitFor([&] {
    st = dp->readStats();
    const uint64_t tx = st.reasons[KEEL_R_TX_IPIP].packets;
    return totalPackets(st) >= n && reals() >= tx && st.services[0].packets >= tx && !st.workers.empty() &&
           st.workers[0].txDropped + rte_ring_count(port.tx) >= tx;
  }));
  ASSERT_EQ(st.workers.size(), 1u);
  EXPECT_EQ(totalPackets(st), n) << "each frame counted once";
  EXPECT_EQ(st.reasons[KEEL_R_TX_IPIP].packets, n) << "every frame forwarded, none dropped or passed";
  EXPECT_EQ(reals(), n);
  EXPECT_EQ(st.services[0].packets, n);
  EXPECT_EQ(st.workers[0].txDropped + rte_ring_count(port.tx), n) << "sent, or refused by the full TX queue";
}

// With EAL running in the process (keeld's reloads and keelctl config
// check in a DPDK keeld), device names are read against the drivers EAL
// loaded, nothing loaded again; a driver path it was not started with is
// not looked at; EAL's log level is as it was.
TEST_F(DpdkPcapTest, DeviceNamesOnceEalRunsAreItsDriversOnly) {
  ASSERT_NO_FATAL_FAILURE(startEal());
  const int level = rte_log_get_level(RTE_LOGTYPE_EAL);
  const std::optional<DeviceNameCheck> r =
      checkDpdkDeviceNames({}, {"net_null0", "net_pcap9,rx_pcap=x", "net_nosuch0"}, /*mayLoad=*/false);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->known, (std::vector<bool>{true, true, false}));
  EXPECT_EQ(rte_log_get_level(RTE_LOGTYPE_EAL), level);
  EXPECT_FALSE(checkDpdkDeviceNames({"/opt/keel-test/pmd.so"}, {"net_null0"}, /*mayLoad=*/true).has_value())
      << "a -d path EAL did not start with";
}

}  // namespace
}  // namespace keel::dpdk

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  // A private network namespace: the tap interface and its address exist
  // only for this process and vanish with it, whatever happens.
  // As root without one the tests would make their tap and packet sockets
  // in the host's namespace: refused instead.
  if (geteuid() == 0) {
    if (unshare(CLONE_NEWNET) != 0) {
      std::perror("dpdk_pcap_test: unshare(CLONE_NEWNET)");
      return 1;
    }
    std::ofstream("/proc/sys/net/ipv6/conf/default/disable_ipv6") << "1";
    std::system("ip link set lo up");
  }
  int rc = RUN_ALL_TESTS();
  keel::releaseDpdkEnvironment();  // as keeld does when it stops: every plane is gone
  // EAL leaves its runtime directory behind; it is ours alone (file prefix).
  std::system(("rm -rf " + keel::dpdk::kDir + " /var/run/dpdk/keel-" + keel::dpdk::kPid).c_str());
  return rc;
}

// SPDX-License-Identifier: Apache-2.0
// DPDK data plane throughput per worker core, with dpdk-testpmd io forwarding
// on the same vdev as the in-run ceiling.
//
// Method: a net_pcap vdev with infinite_rx=1 replays an in-memory set of
// frames (one frame per flow, 100,000 TCP flows to one VIP with 16 reals,
// ring M = 65537, ipip forwarding). With no tx_pcap the vdev drops what is
// sent (tx_drop), so neither side touches a file or the kernel while it is
// measured. The source costs the same for both programs (net_pcap copies
// every replayed frame into a fresh mbuf), so the ratio isolates what the
// keel worker adds: parse, VIP/service lookup, connection table, ring pick,
// encapsulation. One worker lcore.
//   established: the connection table holds every flow (warm-up first), each
//                packet is a table hit.
//   new flows:   the worker's table is 4,096 entries, far fewer than the
//                flows, so every packet misses, is picked from the ring and
//                inserted (evicting the coldest entry of its bucket).
// Rate = packets counted by readStats() over a fixed window after warm-up.
// testpmd: `--forward-mode=io --port-topology=loop`, its Rx-pps from
// --stats-period in steady state.
// The CI box is shared (2 cores, many builds), so wall-clock rates depend on
// the scheduler; each rate is also given per second of CPU time the
// forwarding thread actually ran (/proc/.../schedstat), and the ratio of
// those is the comparison that means something here.
//
// Usage: dpdk_bench [--seconds N] [--flows N] [--testpmd PATH]
#include <pcap/pcap.h>
#include <rte_eal.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <time.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "control/maglev/maglev.h"
#include "dataplane/dpdk/dpdk_dataplane.h"
#include "dataplane/dpdk/tables.h"
#include "dataplane/dpdk/worker_path.h"
#include "keel/maglev_lookup.h"
#include "keel/parse.h"

using namespace keel;

namespace {

const std::string kPid = std::to_string(getpid());

IpAddress ip(const std::string& s) { return *IpAddress::parse(s); }

// A minimal TCP SYN frame, 60 bytes (valid IPv4 header checksum is not
// needed by either program; it is left zero).
std::vector<uint8_t> synFrame(uint32_t src, uint16_t sport, const IpAddress& vip, uint16_t dport) {
  std::vector<uint8_t> f(60, 0);
  const uint8_t macs[12] = {2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2};
  std::memcpy(f.data(), macs, 12);
  f[12] = 0x08;
  f[14] = 0x45;
  f[16] = 0;
  f[17] = 46;  // 20 + 20 + 6
  f[22] = 64;
  f[23] = KEEL_PROTO_TCP;
  std::memcpy(&f[26], &src, 4);
  std::memcpy(&f[30], vip.bytes().data(), 4);
  f[34] = static_cast<uint8_t>(sport >> 8);
  f[35] = static_cast<uint8_t>(sport);
  f[36] = static_cast<uint8_t>(dport >> 8);
  f[37] = static_cast<uint8_t>(dport);
  f[46] = 0x50;
  f[47] = KEEL_TCP_SYN;
  return f;
}

std::vector<std::vector<uint8_t>> makeFrames(int flows, const IpAddress& vip) {
  std::mt19937 rng(7);
  std::vector<std::vector<uint8_t>> frames;
  for (int i = 0; i < flows; ++i)
    frames.push_back(synFrame(rng(), static_cast<uint16_t>(1024 + rng() % 60000), vip, 80));
  return frames;
}

// The packet path alone, no I/O: each frame is copied to a scratch buffer
// (as a source would) and processed; Mpps per second of this thread's CPU.
double runPurePath(int flows, uint32_t connTable, int passes) {
  IpAddress vip = ip("10.0.0.100");
  dpdk::TableStore store(16, 1024, nullptr);
  keel_node_config node{};
  std::memcpy(&node.tunnel_src_v4, ip("192.0.2.1").bytes().data(), 4);
  node.tcp_idle_timeout_s = 300;
  bool ok = store.setNode(node).isOk();
  keel_vip_key vk{};
  vip.toWords(vk.addr);
  vk.family = KEEL_AF_INET;
  ok = ok && store.addVip(vk).isOk();
  keel_service_key sk{};
  vip.toWords(sk.vip);
  sk.port = KEEL_HTONS(80);
  sk.proto = KEEL_PROTO_TCP;
  sk.family = KEEL_AF_INET;
  ok = ok && store.upsertService(sk, keel_service_value{}).isOk();
  std::vector<MaglevReal> reals;
  for (uint32_t i = 0; i < 16; ++i) {
    keel_backend b{};
    IpAddress a = ip("10.1.0." + std::to_string(i + 1));
    a.toWords(b.addr);
    b.family = KEEL_AF_INET;
    b.flags = KEEL_BE_F_VALID;
    ok = ok && store.upsertBackend(i, b).isOk();
    reals.push_back({a, 1, i});
  }
  ok = ok && store.publishRing(0, buildMaglevTable(reals, KEEL_RING_SIZE_DEFAULT)).isOk();
  if (!ok) return 0;
  dpdk::WorkerState w(connTable, 16, 1024, 1500);
  auto frames = makeFrames(flows, vip);
  uint8_t scratch[32][256];
  auto cpuNow = [] {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
  };
  uint64_t n = 0;
  double t0 = 0;
  for (int pass = 0; pass <= passes; ++pass) {
    if (pass == 1) t0 = cpuNow();  // pass 0 warms the table
    for (size_t i = 0; i + 32 <= frames.size(); i += 32) {
      dpdk::PacketBuf bufs[32];
      dpdk::ParsedPacket parsed[32];
      for (int j = 0; j < 32; ++j) {
        std::memcpy(scratch[j] + 128, frames[i + j].data(), frames[i + j].size());
        bufs[j] = {scratch[j] + 128, static_cast<uint32_t>(frames[i + j].size()), 128};
        dpdk::parseAndPrefetch(w, bufs[j].data, bufs[j].len, parsed[j]);
      }
      for (int j = 0; j < 32; ++j) dpdk::processParsed(*store.current(), w, bufs[j], parsed[j], 1000);
      if (pass > 0) n += 32;
    }
  }
  double dt = cpuNow() - t0;
  return dt > 0 ? static_cast<double>(n) / dt / 1e6 : 0;
}

void writePcap(const std::string& path, int flows, const IpAddress& vip) {
  std::mt19937 rng(7);
  pcap_t* dead = pcap_open_dead(DLT_EN10MB, 65535);
  pcap_dumper_t* d = pcap_dump_open(dead, path.c_str());
  for (int i = 0; i < flows; ++i) {
    auto f = synFrame(rng(), static_cast<uint16_t>(1024 + rng() % 60000), vip, 80);
    pcap_pkthdr h{};
    h.caplen = h.len = static_cast<bpf_u_int32>(f.size());
    pcap_dump(reinterpret_cast<u_char*>(d), &h, f.data());
  }
  pcap_dump_close(d);
  pcap_close(dead);
}

std::string machine() {
  std::ifstream f("/proc/cpuinfo");
  std::string line, model = "?";
  while (std::getline(f, line))
    if (line.rfind("model name", 0) == 0) {
      model = line.substr(line.find(':') + 2);
      break;
    }
  utsname u{};
  uname(&u);
  return model + ", " + std::to_string(std::thread::hardware_concurrency()) + " cpus, kernel " +
         u.release;
}

// CPU time (ns) a thread of `pid` named `comm` has run, from schedstat; the
// box is shared, so rates are also given per second of the worker's own CPU.
uint64_t threadCpuNs(const std::string& pid, const std::string& comm) {
  std::string dir = "/proc/" + pid + "/task/";
  std::string cmd = "ls " + dir + " 2>/dev/null";
  FILE* ls = popen(cmd.c_str(), "r");
  char tid[32];
  uint64_t ns = 0;
  while (ls && std::fscanf(ls, "%31s", tid) == 1) {
    std::string name;
    std::ifstream(dir + tid + "/comm") >> name;
    if (name != comm) continue;
    std::ifstream(dir + tid + "/schedstat") >> ns;
  }
  if (ls) pclose(ls);
  return ns;
}

uint64_t forwarded(Dataplane& dp) {
  DataplaneStats st = dp.readStats();
  uint64_t n = 0;
  for (const auto& c : st.reasons) n += c.packets;
  return n;
}

struct KeelResult {
  double mpps = 0;
  double mppsPerCpu = 0;  // per second of worker CPU time
  double txShare = 0;  // fraction of counted packets that were TX_IPIP
};

KeelResult runKeel(const std::string& pcap, int flows, uint32_t connTable, double seconds) {
  DpdkOptions o;
  o.ealArgs = {"-l", "0-1", "--no-huge", "-m", "2048", "--no-pci", "--file-prefix",
               "keelbench-" + kPid, "--log-level", "*:error"};
  o.port = "net_pcap_bench" + std::to_string(connTable) + ",rx_pcap=" + pcap + ",infinite_rx=1";
  o.workerLcores = {1};
  o.mbufsPerWorker = static_cast<uint32_t>(flows) + 8192;  // infinite_rx keeps every frame
  o.limits.connTableSize = connTable;
  o.limits.maxServices = 16;
  o.limits.maxBackends = 1024;
  o.autoStart = false;
  std::string err;
  auto dp = createDpdkDataplane(o, &err);
  if (!dp) {
    std::fprintf(stderr, "dpdk_bench: %s\n", err.c_str());
    std::exit(1);
  }
  IpAddress vip = ip("10.0.0.100");
  keel_node_config node{};
  std::memcpy(&node.tunnel_src_v4, ip("192.0.2.1").bytes().data(), 4);
  node.tcp_idle_timeout_s = node.udp_idle_timeout_s = 300;
  bool ok = dp->setNode(node).isOk();
  keel_vip_key vk{};
  vip.toWords(vk.addr);
  vk.family = KEEL_AF_INET;
  ok = ok && dp->addVip(vk).isOk();
  keel_service_key sk{};
  vip.toWords(sk.vip);
  sk.port = KEEL_HTONS(80);
  sk.proto = KEEL_PROTO_TCP;
  sk.family = KEEL_AF_INET;
  keel_service_value sv{};
  ok = ok && dp->upsertService(sk, sv).isOk();
  std::vector<MaglevReal> reals;
  for (uint32_t i = 0; i < 16; ++i) {
    keel_backend b{};
    IpAddress a = ip("10.1.0." + std::to_string(i + 1));
    a.toWords(b.addr);
    b.family = KEEL_AF_INET;
    b.flags = KEEL_BE_F_VALID;
    b.gen = 1;
    ok = ok && dp->upsertBackend(i, b).isOk();
    reals.push_back({a, 1, i});
  }
  ok = ok && dp->publishRing(0, buildMaglevTable(reals, KEEL_RING_SIZE_DEFAULT)).isOk();
  ok = ok && dp->start().isOk();
  if (!ok) {
    std::fprintf(stderr, "dpdk_bench: table setup failed\n");
    std::exit(1);
  }
  std::this_thread::sleep_for(std::chrono::seconds(1));  // warm-up: every flow seen
  auto t0 = std::chrono::steady_clock::now();
  uint64_t p0 = forwarded(*dp), tx0 = dp->readStats().reasons[KEEL_R_TX_IPIP].packets;
  uint64_t cpu0 = threadCpuNs(kPid, "rte-worker-1");
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  auto t1 = std::chrono::steady_clock::now();
  uint64_t p1 = forwarded(*dp), tx1 = dp->readStats().reasons[KEEL_R_TX_IPIP].packets;
  uint64_t cpu1 = threadCpuNs(kPid, "rte-worker-1");
  double dt = std::chrono::duration<double>(t1 - t0).count();
  KeelResult r;
  r.mpps = static_cast<double>(p1 - p0) / dt / 1e6;
  if (cpu1 > cpu0) r.mppsPerCpu = static_cast<double>(p1 - p0) / (static_cast<double>(cpu1 - cpu0) / 1e9) / 1e6;
  r.txShare = p1 > p0 ? static_cast<double>(tx1 - tx0) / static_cast<double>(p1 - p0) : 0;
  return r;
}

struct TestpmdResult {
  double mpps = 0;        // mean of its Rx-pps reports in steady state
  double mppsPerCpu = 0;  // all forwarded packets / forwarding thread CPU time
};

// dpdk-testpmd io forwarding on the same vdev, run in the background while
// its forwarding thread's CPU time is sampled.
TestpmdResult runTestpmd(const std::string& testpmd, const std::string& pcap, int flows,
                         double seconds) {
  std::string out = "/tmp/keel-dpdk-bench-" + kPid + ".testpmd";
  std::string prefix = "keelbench-tp-" + kPid;
  // Loading the pcap into memory takes a while before forwarding starts.
  int limit = static_cast<int>(seconds) + 10;
  std::string cmd = "timeout -s INT " + std::to_string(limit) + " " + testpmd +
                    " -l 0-1 --no-huge -m 2048 --no-pci --file-prefix " + prefix +
                    " --log-level '*:error' --vdev 'net_pcap0,rx_pcap=" + pcap +
                    ",infinite_rx=1' -- --forward-mode=io --port-topology=loop --nb-cores=1" +
                    " --total-num-mbufs=" + std::to_string(flows + 16384) +
                    " --stats-period 1 --no-lsc-interrupt > " + out + " 2>&1 < /dev/null & echo $!";
  FILE* sh = popen(cmd.c_str(), "r");
  long shellPid = 0;
  if (sh) {
    if (std::fscanf(sh, "%ld", &shellPid) != 1) shellPid = 0;
    pclose(sh);
  }
  // `timeout` forks testpmd: find the child, then sample its worker thread.
  std::string tpPid;
  uint64_t cpu = 0;
  for (int i = 0; i < (limit + 2) * 10; ++i) {  // bounded: ~limit + 2 seconds
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (tpPid.empty() && shellPid) {
      FILE* pg = popen(("pgrep -P " + std::to_string(shellPid)).c_str(), "r");
      char buf[32] = {};
      if (pg && std::fscanf(pg, "%31s", buf) == 1) tpPid = buf;
      if (pg) pclose(pg);
    }
    if (!tpPid.empty()) {
      uint64_t c = threadCpuNs(tpPid, "rte-worker-1");
      if (c) cpu = c;
      if (access(("/proc/" + tpPid).c_str(), F_OK) != 0) break;
    }
  }
  std::ifstream f(out);
  std::string line;
  std::vector<double> pps;
  uint64_t total = 0;
  while (std::getline(f, line)) {
    auto at = line.find("Rx-pps:");
    if (at != std::string::npos) pps.push_back(std::atof(line.c_str() + at + 7));
    auto rp = line.find("RX-packets:");
    if (rp != std::string::npos) total = std::strtoull(line.c_str() + rp + 11, nullptr, 10);
  }
  // Keep the reports of steady forwarding: drop zeros (still loading), the
  // first non-zero one (ramp-up) and the last (cut by the signal).
  std::vector<double> steady;
  for (double v : pps)
    if (v > 0) steady.push_back(v);
  if (steady.size() >= 3) steady.assign(steady.begin() + 1, steady.end() - 1);
  TestpmdResult r;
  for (double v : steady) r.mpps += v;
  if (!steady.empty()) r.mpps = r.mpps / static_cast<double>(steady.size()) / 1e6;
  if (cpu) r.mppsPerCpu = static_cast<double>(total) / (static_cast<double>(cpu) / 1e9) / 1e6;
  if (steady.empty()) {
    std::fprintf(stderr, "dpdk_bench: testpmd gave no rate; command: %s\n", cmd.c_str());
    std::system(("tail -n 15 " + out + " >&2").c_str());
  }
  std::remove(out.c_str());
  std::system(("rm -rf /var/run/dpdk/" + prefix).c_str());
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = 3;
  int flows = 100000;
  std::string testpmd = "/usr/bin/dpdk-testpmd";
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--seconds") seconds = std::atof(argv[i + 1]);
    else if (a == "--flows") flows = std::atoi(argv[i + 1]);
    else if (a == "--testpmd") testpmd = argv[i + 1];
  }
  const std::string pcap = "/tmp/keel-dpdk-bench-" + kPid + ".pcap";
  writePcap(pcap, flows, ip("10.0.0.100"));

  std::printf("dpdk_bench: keel DPDK worker vs dpdk-testpmd io, same vdev\n");
  std::printf("machine: %s\n", machine().c_str());
  std::printf("method: net_pcap infinite_rx (in-memory replay, tx_drop), %d TCP flows, 60 B frames,\n"
              "        1 worker lcore, ipip to 16 reals (M=65537), %.0f s window after 1 s warm-up\n",
              flows, seconds);
  KeelResult est = runKeel(pcap, flows, 1u << 20, seconds);
  KeelResult fresh = runKeel(pcap, flows, 4096, seconds);
  TestpmdResult tp = runTestpmd(testpmd, pcap, flows, seconds);
  double pureEst = runPurePath(flows, 1u << 20, 20);
  double pureNew = runPurePath(flows, 4096, 20);
  rte_eal_cleanup();
  std::remove(pcap.c_str());
  std::system(("rm -rf /var/run/dpdk/keelbench-" + kPid).c_str());

  std::printf("                          wall-clock rate   per worker CPU-second\n");
  std::printf("keel established flows : %7.3f Mpps      %7.3f Mpps   (tx_ipip share %.3f)\n",
              est.mpps, est.mppsPerCpu, est.txShare);
  std::printf("keel new flows         : %7.3f Mpps      %7.3f Mpps   (tx_ipip share %.3f)\n",
              fresh.mpps, fresh.mppsPerCpu, fresh.txShare);
  std::printf("testpmd io (limit)     : %7.3f Mpps      %7.3f Mpps\n", tp.mpps, tp.mppsPerCpu);
  std::printf("keel packet path alone (no I/O, per CPU-second): established %.3f Mpps, new flows %.3f Mpps\n",
              pureEst, pureNew);
  if (tp.mppsPerCpu > 0)
    std::printf("ratio established/testpmd (per CPU-second): %.2f (target >= 0.50); new flows: %.2f\n",
                est.mppsPerCpu / tp.mppsPerCpu, fresh.mppsPerCpu / tp.mppsPerCpu);
  if (tp.mpps > 0)
    std::printf("ratio established/testpmd (wall clock)    : %.2f; new flows: %.2f\n",
                est.mpps / tp.mpps, fresh.mpps / tp.mpps);
  return 0;
}

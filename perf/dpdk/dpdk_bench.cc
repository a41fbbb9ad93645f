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
//   established: ACK segments; the connection table holds every flow
//                (warm-up first), each packet is a table hit.
//   new flows:   SYNs of the same flows, each picked from the ring and
//                inserted without a lookup (keel_tcp_syn), into a 4,096-entry
//                table, far fewer than the flows (evicting the coldest
//                entry of its bucket).
// testpmd: `--forward-mode=io --port-topology=loop`: receive a burst and
// send it back unchanged, no header work - the ceiling for this source.
// Same for both sides: the vdev and its devargs, one forwarding lcore, RX
// burst 32, 1024 RX/TX descriptors, one mbuf pool of the same size with a
// 256-mbuf per-lcore cache, --no-huge -m 2048 or (--huge) 2 MiB hugepages.
// Both are measured the same way: forwarded packets over a steady window
// after warm-up, divided by the window's wall time and by the CPU time the
// forwarding thread actually ran in it (/proc/.../schedstat). keel's count
// is readStats(); testpmd's is the RX-packets of its --stats-period reports
// (line-buffered and read as they appear). The CI box is shared (2 cores,
// many builds), so wall-clock rates depend on the scheduler; the ratio of
// the per-CPU-second rates is the comparison that means something here.
// Each round runs keel established, keel new flows and testpmd back to
// back, so a round's ratios share the box's load; the summary gives each
// quantity's median over the rounds.
//
// Usage: dpdk_bench [--seconds N] [--flows N] [--rounds N] [--testpmd PATH] [--path-only [--established]] [--huge]
//                   [--ipv6] [--walk] [--new-acks]
// --path-only times the packet path alone (no EAL, no I/O; see runPurePath);
// --established leaves its new-flow run out (callgrind of established packets:
// 20 timed passes + 1 warm-up over the flows, so instructions / (21 x flows)).
// --huge gives both programs EAL memory on 2 MiB hugepages instead of
// --no-huge (see reserveHuge); keel's connection tables are EAL memory.
// --ipv6 makes the VIP, the flows and the reals IPv6 (ip6ip6, 74 B frames):
// an IPv6 flow's connection-table entry is a whole cache line, not half.
// --walk measures the worker with and without whole-table walks running
// beside it (runWalkEffect) instead of the rounds against testpmd.
// --new-acks sends the new flows as ACKs instead of SYNs: each is looked up,
// missed, picked and inserted, the path of a new UDP flow or a TCP
// mid-flow miss (a SYN is never looked up).
#include <pcap/pcap.h>
#include <rte_eal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <signal.h>
#include <time.h>

#include <algorithm>
#include <atomic>
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

#include "../common/bench_env.h"

using namespace keel;

namespace {

const std::string kPid = std::to_string(getpid());
bool gHuge = false;  // --huge
bool gIpv6 = false;  // --ipv6
uint8_t gNewFlags = KEEL_TCP_SYN;  // --new-acks: KEEL_TCP_ACK
std::vector<std::pair<void*, size_t>>& hugeSizes() {
  static std::vector<std::pair<void*, size_t>> v;
  return v;
}

IpAddress ip(const std::string& s) { return *IpAddress::parse(s); }

// The VIP; its family (--ipv6) is the flows', the reals' and the tunnel's.
IpAddress benchVip() { return ip(gIpv6 ? "2001:db8::100" : "10.0.0.100"); }

// A minimal TCP frame with `flags` from src:sport to the VIP: 60 bytes for
// IPv4 (Ethernet's minimum), 74 for IPv6. Checksums are left zero: neither
// program checks them.
std::vector<uint8_t> tcpFrame(const uint8_t* src, uint16_t sport, const IpAddress& vip, uint16_t dport,
                              uint8_t flags) {
  const bool v6 = !vip.isV4();
  const size_t l3 = v6 ? 40 : 20;
  std::vector<uint8_t> f(v6 ? 74 : 60, 0);
  const uint8_t macs[12] = {2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2};
  std::memcpy(f.data(), macs, 12);
  if (v6) {
    f[12] = 0x86;
    f[13] = 0xdd;
    f[14] = 0x60;
    f[19] = 20;  // payload: the TCP header
    f[20] = KEEL_PROTO_TCP;
    f[21] = 64;
    std::memcpy(&f[22], src, 16);
    std::memcpy(&f[38], vip.bytes().data(), 16);
  } else {
    f[12] = 0x08;
    f[14] = 0x45;
    f[17] = 46;  // 20 + 20 + the 6 bytes that pad the frame to 60, counted as payload
    f[22] = 64;
    f[23] = KEEL_PROTO_TCP;
    std::memcpy(&f[26], src, 4);
    std::memcpy(&f[30], vip.bytes().data(), 4);
  }
  uint8_t* tcp = &f[14 + l3];
  tcp[0] = static_cast<uint8_t>(sport >> 8);
  tcp[1] = static_cast<uint8_t>(sport);
  tcp[2] = static_cast<uint8_t>(dport >> 8);
  tcp[3] = static_cast<uint8_t>(dport);
  tcp[12] = 0x50;
  tcp[13] = flags;
  return f;
}

// The benchmark's flows: one frame each, random sources and source ports
// (IPv6 sources in 2001:db8:ffff::/64), all to the VIP's port 80. tcpFlags:
// KEEL_TCP_ACK for established flows (looked up in the connection table),
// KEEL_TCP_SYN for new ones (a SYN is picked from the ring without a
// lookup and written over its entry: keel_tcp_syn).
std::vector<std::vector<uint8_t>> makeFrames(int flows, const IpAddress& vip, uint8_t tcpFlags) {
  std::mt19937 rng(7);
  std::vector<std::vector<uint8_t>> frames;
  for (int i = 0; i < flows; ++i) {
    uint8_t src[16] = {0x20, 0x01, 0x0d, 0xb8, 0xff, 0xff};
    const uint32_t a = rng();
    if (vip.isV4()) {
      std::memcpy(src, &a, 4);
      // One host's address (keel_addr_unicast): a source in 0/8, 127/8 or
      // 224/4 and above is dropped as drop_bad_source, not forwarded.
      src[0] = static_cast<uint8_t>(1 + src[0] % 223);
      if (src[0] == 127) src[0] = 128;
    } else {
      const uint32_t b = rng();
      std::memcpy(src + 8, &a, 4);
      std::memcpy(src + 12, &b, 4);
    }
    frames.push_back(tcpFrame(src, static_cast<uint16_t>(1024 + rng() % 60000), vip, 80, tcpFlags));
  }
  return frames;
}

// The one service both the port run and the packet path alone load into
// their tables (a Dataplane or a TableStore): the VIP's TCP port 80, 16
// reals of the VIP's family, ipip (IPv4 in IPv4, or IPv6 in IPv6), Maglev
// M = 65537.
template <typename Tables>
bool loadService(Tables& t, const IpAddress& vip) {
  const uint8_t family = vip.isV4() ? KEEL_AF_INET : KEEL_AF_INET6;
  keel_node_config node{};
  std::memcpy(&node.tunnel_src_v4, ip("192.0.2.1").bytes().data(), 4);
  std::memcpy(node.tunnel_src_v6, ip("2001:db8:1::1").bytes().data(), 16);
  node.tcp_idle_timeout_s = node.udp_idle_timeout_s = 300;
  bool ok = t.setNode(node).isOk();
  keel_vip_key vk{};
  vip.toWords(vk.addr);
  vk.family = family;
  ok = ok && t.addVip(vk).isOk();
  keel_service_key sk{};
  vip.toWords(sk.vip);
  sk.port = KEEL_HTONS(80);
  sk.proto = KEEL_PROTO_TCP;
  sk.family = family;
  ok = ok && t.upsertService(sk, keel_service_value{}).isOk();
  std::vector<MaglevReal> reals;
  for (uint32_t i = 0; i < 16; ++i) {
    keel_backend b{};
    IpAddress a = ip((family == KEEL_AF_INET ? "10.1.0." : "fc00:1::") + std::to_string(i + 1));
    a.toWords(b.addr);
    b.family = family;
    b.flags = KEEL_BE_F_VALID;
    b.gen = 1;
    ok = ok && t.upsertBackend(i, b).isOk();
    reals.push_back({a, 1, i});
  }
  return ok && t.publishRing(0, buildMaglevTable(reals, KEEL_RING_SIZE_DEFAULT)).isOk();
}

// With --huge, the packet path alone gets its connection table on 2 MiB
// hugepages (MAP_HUGETLB, from the pages reserveHuge() reserved), as the
// DPDK plane's rte_zmalloc does with EAL on hugepages.
void* hugeZalloc(size_t bytes, size_t align, int) {
  bytes = (bytes + align - 1) / align * align;
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  hugeSizes().emplace_back(p, bytes);
  return p;  // fresh hugetlb pages are zeroed
}
void hugeRelease(void* p) {
  auto& v = hugeSizes();
  for (size_t i = 0; i < v.size(); ++i)
    if (v[i].first == p) {
      munmap(p, v[i].second);
      v.erase(v.begin() + static_cast<long>(i));
      return;
    }
}

// The packet path alone, no I/O: each frame is copied to a scratch buffer
// (as a source would) and processed; Mpps per second of this thread's CPU.
double runPurePath(int flows, uint32_t connTable, int passes, uint8_t tcpFlags) {
  const IpAddress vip = benchVip();
  dpdk::TableStore store(16, 1024, nullptr);
  if (!loadService(store, vip)) return 0;
  const dpdk::ConnMemory huge{hugeZalloc, hugeRelease, -1};
  dpdk::WorkerState w(connTable, 16, 1024, 1500, gHuge ? huge : dpdk::kHeapConnMemory);
  auto frames = makeFrames(flows, vip, tcpFlags);
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
      dpdk::PacketResult results[32];
      for (int j = 0; j < 32; ++j) {
        std::memcpy(scratch[j] + 128, frames[i + j].data(), frames[i + j].size());
        bufs[j] = {scratch[j] + 128, static_cast<uint32_t>(frames[i + j].size()), 128};
      }
      dpdk::prepareBurst(w, bufs, parsed, 32);
      dpdk::processBurst(*store.current(), w, bufs, parsed, 32, 1000, results);
      if (pass > 0) n += 32;
    }
  }
  double dt = cpuNow() - t0;
  return dt > 0 ? static_cast<double>(n) / dt / 1e6 : 0;
}

void writePcap(const std::string& path, int flows, const IpAddress& vip, uint8_t tcpFlags) {
  pcap_t* dead = pcap_open_dead(DLT_EN10MB, 65535);
  pcap_dumper_t* d = pcap_dump_open(dead, path.c_str());
  for (const auto& f : makeFrames(flows, vip, tcpFlags)) {
    pcap_pkthdr h{};
    h.caplen = h.len = static_cast<bpf_u_int32>(f.size());
    pcap_dump(reinterpret_cast<u_char*>(d), &h, f.data());
  }
  pcap_dump_close(d);
  pcap_close(dead);
}

// The same for every program measured (see the header comment).
constexpr int kBurst = 32;           // keel's kBurst; testpmd --burst
constexpr int kMbufCache = 256;      // keel's pool cache; testpmd --mbcache
constexpr int kDescriptors = 1024;   // keel's default rx/tx descriptors; testpmd --rxd/--txd
constexpr const char* kMemory = "2048";
uint32_t poolSize(int flows) { return static_cast<uint32_t>(flows) + 16384; }  // infinite_rx keeps every frame

// EAL memory, the same for both programs: --no-huge -m 2048 by default;
// with --huge, 2 MiB hugepages from a private hugetlbfs mount. The run
// raises vm.nr_hugepages by kHugePages for its duration (keel's process
// keeps its EAL memory while testpmd runs) and restores the old value.
constexpr int kHugePages = 1024;
const std::string kHugeDir = "/tmp/keel-dpdk-bench-huge-" + kPid;
long gOldHugePages = -1;

long readHugePages() {
  long n = -1;
  if (FILE* f = std::fopen("/proc/sys/vm/nr_hugepages", "r")) {
    if (std::fscanf(f, "%ld", &n) != 1) n = -1;
    std::fclose(f);
  }
  return n;
}

bool writeHugePages(long n) {
  FILE* f = std::fopen("/proc/sys/vm/nr_hugepages", "w");
  if (!f) return false;
  bool ok = std::fprintf(f, "%ld\n", n) > 0;
  return std::fclose(f) == 0 && ok;
}

void releaseHuge() {
  std::system(("umount " + kHugeDir + " 2>/dev/null; rmdir " + kHugeDir + " 2>/dev/null").c_str());
  if (gOldHugePages >= 0) writeHugePages(gOldHugePages);
  gOldHugePages = -1;
}

void reserveHuge() {
  gOldHugePages = readHugePages();
  if (gOldHugePages < 0 || !writeHugePages(gOldHugePages + kHugePages) ||
      readHugePages() < gOldHugePages + kHugePages) {
    std::fprintf(stderr, "dpdk_bench: --huge: cannot reserve %d more 2 MiB hugepages (vm.nr_hugepages %ld, got %ld)\n",
                 kHugePages, gOldHugePages, readHugePages());
    releaseHuge();
    std::exit(1);
  }
  std::atexit(releaseHuge);
  if (std::system(("mkdir -p " + kHugeDir + " && mount -t hugetlbfs -o pagesize=2M nodev " + kHugeDir).c_str()) != 0) {
    std::fprintf(stderr, "dpdk_bench: --huge: cannot mount hugetlbfs on %s\n", kHugeDir.c_str());
    std::exit(1);
  }
}

std::vector<std::string> memoryArgs() {
  if (gHuge) return {"--huge-dir", kHugeDir, "--huge-unlink"};
  return {"--no-huge", "-m", kMemory};
}

std::string memoryDescription() {
  return gHuge ? "2 MiB hugepages (hugetlbfs, --huge-unlink)" : std::string("--no-huge -m ") + kMemory;
}

// /proc/<pid>/task/<tid> of the thread of `pid` named `comm`, or "".
std::string findThread(const std::string& pid, const std::string& comm) {
  std::string dir = "/proc/" + pid + "/task/";
  FILE* ls = popen(("ls " + dir + " 2>/dev/null").c_str(), "r");
  char tid[32];
  std::string found;
  while (ls && std::fscanf(ls, "%31s", tid) == 1) {
    std::string name;
    std::ifstream(dir + tid + "/comm") >> name;
    if (name == comm) found = dir + tid;
  }
  if (ls) pclose(ls);
  return found;
}

// CPU time (ns) the thread has run, from schedstat; 0 once it is gone.
uint64_t threadCpuNs(const std::string& task) {
  uint64_t ns = 0;
  if (!task.empty()) std::ifstream(task + "/schedstat") >> ns;
  return ns;
}

double seconds(std::chrono::steady_clock::duration d) { return std::chrono::duration<double>(d).count(); }

uint64_t forwarded(Dataplane& dp) {
  DataplaneStats st = dp.readStats();
  uint64_t n = 0;
  for (const auto& c : st.reasons) n += c.packets;
  return n;
}

struct Rate {
  double mpps = 0;        // wall clock
  double mppsPerCpu = 0;  // per second of forwarding-thread CPU time
  double share = 0;       // keel: fraction of counted packets that were TX_IPIP
};

// A started keel plane on the vdev replaying `pcap`, one service on the
// bench VIP, a connection table of `connTable` entries.
std::unique_ptr<Dataplane> startKeel(const std::string& pcap, int flows, uint32_t connTable) {
  static int instance = 0;
  DpdkOptions o;
  o.ealArgs = {"-l", "0-1", "--no-pci", "--file-prefix", "keelbench-" + kPid, "--log-level", "*:error"};
  for (const std::string& a : memoryArgs()) o.ealArgs.push_back(a);
  o.port = "net_pcap_bench" + std::to_string(instance++) + ",rx_pcap=" + pcap + ",infinite_rx=1";
  o.workerLcores = {1};
  o.mbufsPerWorker = poolSize(flows);
  o.rxDescriptors = o.txDescriptors = kDescriptors;
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
  bool ok = loadService(*dp, benchVip());
  ok = ok && dp->start().isOk();
  if (!ok) {
    std::fprintf(stderr, "dpdk_bench: table setup failed\n");
    std::exit(1);
  }
  return dp;
}

// The plane's forwarding rate over `window` seconds from now.
Rate measureKeel(Dataplane& dp, double window) {
  const std::string task = findThread(kPid, "rte-worker-1");
  auto t0 = std::chrono::steady_clock::now();
  uint64_t p0 = forwarded(dp), tx0 = dp.readStats().reasons[KEEL_R_TX_IPIP].packets;
  uint64_t cpu0 = threadCpuNs(task);
  std::this_thread::sleep_for(std::chrono::duration<double>(window));
  auto t1 = std::chrono::steady_clock::now();
  uint64_t p1 = forwarded(dp), tx1 = dp.readStats().reasons[KEEL_R_TX_IPIP].packets;
  uint64_t cpu1 = threadCpuNs(task);
  Rate r;
  r.mpps = static_cast<double>(p1 - p0) / seconds(t1 - t0) / 1e6;
  if (cpu1 > cpu0) r.mppsPerCpu = static_cast<double>(p1 - p0) / (static_cast<double>(cpu1 - cpu0) / 1e9) / 1e6;
  r.share = p1 > p0 ? static_cast<double>(tx1 - tx0) / static_cast<double>(p1 - p0) : 0;
  return r;
}

Rate runKeel(const std::string& pcap, int flows, uint32_t connTable, double window) {
  auto dp = startKeel(pcap, flows, connTable);
  std::this_thread::sleep_for(std::chrono::seconds(1));  // warm-up: every flow seen
  return measureKeel(*dp, window);
}

// --walk: what a whole-table walk (Dataplane::scanConns, the read behind
// keelctl conns and metrics.flow_count_interval) costs the worker while it
// runs. One plane, warmed up; windows of `window` seconds alternate between
// no walk and walks back to back on a thread of the bench's main lcore
// (0; the worker is on 1), `pairs` of each, in the order off/on, on/off, ...
// so drift hits both alike. The walk's visitor only counts: a faster reader
// than keeld's, whose visitor also judges and counts each entry, so this is
// the harsher case. Prints each pair and the medians.
void runWalkEffect(const char* what, const std::string& pcap, int flows, double window, int pairs) {
  auto dp = startKeel(pcap, flows, 1u << 20);
  std::this_thread::sleep_for(std::chrono::seconds(1));
  std::vector<double> off, on, walkMs;
  uint64_t entries = 0;
  for (int i = 0; i < pairs; ++i) {
    for (int half = 0; half < 2; ++half) {
      const bool walking = (half == 0) == (i % 2 == 1);
      if (!walking) {
        off.push_back(measureKeel(*dp, window).mppsPerCpu);
        continue;
      }
      std::atomic<bool> stop{false};
      std::vector<double> ms;
      std::thread walker([&] {
        while (!stop.load()) {  // bounded by the window below
          uint64_t n = 0;
          auto w0 = std::chrono::steady_clock::now();
          Status st = dp->scanConns([&](const keel_flow_key&, const ConnEntry&, int) { ++n; });
          if (!st.isOk()) {
            std::fprintf(stderr, "dpdk_bench: scanConns: %s\n", st.message().c_str());
            return;
          }
          ms.push_back(seconds(std::chrono::steady_clock::now() - w0) * 1e3);
          entries = n;
        }
      });
      on.push_back(measureKeel(*dp, window).mppsPerCpu);
      stop = true;
      walker.join();
      walkMs.insert(walkMs.end(), ms.begin(), ms.end());
    }
    std::printf("  %s pair %d: no walk %.3f, walking %.3f Mpps/CPU-s\n", what, i + 1, off.back(), on.back());
    std::fflush(stdout);
  }
  const double offMed = bench::median(off), onMed = bench::median(on);
  std::printf("%s: no walk %.3f, walking %.3f Mpps/CPU-s (medians of %d windows each): %.3f of the rate without;\n"
              "  a walk visited %llu entries in %.1f ms (median of %zu walks)\n",
              what, offMed, onMed, pairs, offMed > 0 ? onMed / offMed : 0,
              static_cast<unsigned long long>(entries), walkMs.empty() ? 0.0 : bench::median(walkMs),
              walkMs.size());
}

// dpdk-testpmd io forwarding on the same vdev, in the background. Its
// --stats-period reports (line-buffered) are read as they appear; each one is
// paired with the forwarding thread's CPU time and the wall time at which it
// was seen (polled every 10 ms). The window runs from the second report with
// traffic (the first includes the ramp-up) over `window` seconds of reports;
// then testpmd is stopped.
Rate runTestpmd(const std::string& testpmd, const std::string& pcap, int flows, double window) {
  std::string out = "/tmp/keel-dpdk-bench-" + kPid + ".testpmd";
  std::string prefix = "keelbench-tp-" + kPid;
  const int reportsWanted = static_cast<int>(window + 0.5) + 1;
  const int limit = reportsWanted + 30;  // hard stop (loading the pcap takes a few seconds)
  std::string memArgs;
  for (const std::string& a : memoryArgs()) memArgs += (memArgs.empty() ? "" : " ") + a;
  std::string cmd = "timeout -s INT " + std::to_string(limit) + " stdbuf -oL " + testpmd +
                    " -l 0-1 " + memArgs + " --no-pci --file-prefix " + prefix +
                    " --log-level '*:error' --vdev 'net_pcap0,rx_pcap=" + pcap +
                    ",infinite_rx=1' -- --forward-mode=io --port-topology=loop --nb-cores=1" +
                    " --burst=" + std::to_string(kBurst) + " --mbcache=" + std::to_string(kMbufCache) +
                    " --rxd=" + std::to_string(kDescriptors) + " --txd=" + std::to_string(kDescriptors) +
                    " --total-num-mbufs=" + std::to_string(poolSize(flows)) +
                    " --stats-period 1 --no-lsc-interrupt > " + out + " 2>&1 < /dev/null & echo $!";
  FILE* sh = popen(cmd.c_str(), "r");
  long timeoutPid = 0;
  if (sh) {
    if (std::fscanf(sh, "%ld", &timeoutPid) != 1) timeoutPid = 0;
    pclose(sh);
  }
  struct Report {
    uint64_t rxPackets, cpuNs;
    std::chrono::steady_clock::time_point seen;
  };
  std::vector<Report> reports;
  std::string tpPid, task, pending;
  uint64_t rxPackets = 0;
  std::ifstream f;
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(limit + 2);
  while (std::chrono::steady_clock::now() < until) {  // bounded
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (tpPid.empty() && timeoutPid) {  // timeout -> stdbuf execs testpmd: one child
      FILE* pg = popen(("pgrep -P " + std::to_string(timeoutPid)).c_str(), "r");
      char buf[32] = {};
      if (pg && std::fscanf(pg, "%31s", buf) == 1) tpPid = buf;
      if (pg) pclose(pg);
    }
    if (!tpPid.empty() && task.empty()) task = findThread(tpPid, "rte-worker-1");
    if (!f.is_open()) f.open(out);
    if (!f.is_open()) continue;
    const uint64_t cpu = threadCpuNs(task);
    const auto now = std::chrono::steady_clock::now();
    f.clear();
    std::string chunk;
    while (std::getline(f, chunk)) {
      if (f.eof()) {  // a partial line: keep it for the next poll
        pending += chunk;
        break;
      }
      std::string line = pending + chunk;
      pending.clear();
      auto rp = line.find("RX-packets:");
      if (rp != std::string::npos) rxPackets = std::strtoull(line.c_str() + rp + 11, nullptr, 10);
      auto pps = line.find("Rx-pps:");
      if (pps != std::string::npos && std::atof(line.c_str() + pps + 7) > 0 && cpu)
        reports.push_back({rxPackets, cpu, now});
    }
    if (static_cast<int>(reports.size()) > reportsWanted) break;
    if (!tpPid.empty() && access(("/proc/" + tpPid).c_str(), F_OK) != 0) break;
  }
  if (!tpPid.empty()) ::kill(static_cast<pid_t>(std::stol(tpPid)), SIGINT);
  // Let testpmd exit (it frees its hugepage-less memory and files) before
  // the next program starts; bounded.
  for (int i = 0; i < 100 && !tpPid.empty() && access(("/proc/" + tpPid).c_str(), F_OK) == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  Rate r;
  if (reports.size() >= 3) {
    const Report& a = reports[1];
    const Report& b = reports.back();
    double pkts = static_cast<double>(b.rxPackets - a.rxPackets);
    if (b.seen > a.seen) r.mpps = pkts / seconds(b.seen - a.seen) / 1e6;
    if (b.cpuNs > a.cpuNs) r.mppsPerCpu = pkts / (static_cast<double>(b.cpuNs - a.cpuNs) / 1e9) / 1e6;
  } else {
    std::fprintf(stderr, "dpdk_bench: testpmd gave %zu reports; command: %s\n", reports.size(),
                 cmd.c_str());
    std::system(("tail -n 15 " + out + " >&2").c_str());
  }
  std::remove(out.c_str());
  std::system(("rm -rf /var/run/dpdk/" + prefix).c_str());
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  double window = 3;
  int flows = 100000;
  int rounds = 3;
  bool pathOnly = false, establishedOnly = false, walk = false;
  std::string testpmd = "/usr/bin/dpdk-testpmd";
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (i + 1 < argc && a == "--seconds") window = std::atof(argv[++i]);
    else if (i + 1 < argc && a == "--flows") flows = std::atoi(argv[++i]);
    else if (i + 1 < argc && a == "--rounds") rounds = std::atoi(argv[++i]);
    else if (i + 1 < argc && a == "--testpmd") testpmd = argv[++i];
    else if (a == "--path-only") pathOnly = true;
    else if (a == "--established") establishedOnly = true;
    else if (a == "--huge") gHuge = true;
    else if (a == "--ipv6") gIpv6 = true;
    else if (a == "--walk") walk = true;
    else if (a == "--new-acks") gNewFlags = KEEL_TCP_ACK;
    else {
      std::fprintf(stderr, "usage: dpdk_bench [--seconds N] [--flows N] [--rounds N] [--testpmd PATH] [--path-only [--established]] [--huge] [--ipv6] [--walk] [--new-acks]\n"
                           "dpdk_bench: unknown or incomplete argument \"%s\"\n", a.c_str());
      return 2;
    }
  }
  if (window < 1 || flows < kBurst || rounds < 1) {
    std::fprintf(stderr, "dpdk_bench: need --seconds >= 1, --flows >= %d, --rounds >= 1\n", kBurst);
    return 2;
  }
  if (gHuge) reserveHuge();
  if (pathOnly) {  // no EAL, no I/O: for profiling the packet path
    const double est = runPurePath(flows, 1u << 20, 20, KEEL_TCP_ACK);
    if (establishedOnly) {  // e.g. callgrind's instructions of an established packet alone
      std::printf("keel packet path alone (no I/O, per CPU-second): established %.3f Mpps\n", est);
      return 0;
    }
    std::printf("keel packet path alone (no I/O, per CPU-second): established %.3f Mpps, new flows %.3f Mpps\n",
                est, runPurePath(flows, 4096, 20, gNewFlags));
    return 0;
  }
  // Established flows' segments (ACK) and new flows' SYNs: the same flows.
  const std::string pcap = "/tmp/keel-dpdk-bench-" + kPid + ".pcap";
  const std::string synPcap = "/tmp/keel-dpdk-bench-syn-" + kPid + ".pcap";
  writePcap(pcap, flows, benchVip(), KEEL_TCP_ACK);
  writePcap(synPcap, flows, benchVip(), gNewFlags);

  if (walk) {
    std::printf("dpdk_bench --walk: the keel DPDK worker with and without whole-table walks (scanConns)\n");
    std::printf("machine: %s\n", keel::bench::machineDescription().c_str());
    std::printf("method: net_pcap infinite_rx (in-memory replay, tx_drop), %d TCP/%s flows, %s, 1M-entry table,\n"
                "        1 worker lcore, %s; after 1 s warm-up, %d pairs of %.0f s windows, one with no walk\n"
                "        (the baseline) and one with walks back to back on a thread of lcore 0, order\n"
                "        alternating; rates per second of worker CPU time\n",
                flows, gIpv6 ? "IPv6" : "IPv4", gIpv6 ? "ip6ip6" : "ipip", memoryDescription().c_str(), rounds * 2,
                window);
    std::printf("load average at start: %s\n", keel::bench::loadAverage().c_str());
    runWalkEffect("established (ACK)", pcap, flows, window, rounds * 2);
    runWalkEffect(gNewFlags == KEEL_TCP_SYN ? "new flows (SYN)" : "new flows (ACK)", synPcap, flows, window, rounds * 2);
    std::printf("load average at end: %s\n", keel::bench::loadAverage().c_str());
    releaseDpdkEnvironment();
    std::remove(pcap.c_str());
    std::remove(synPcap.c_str());
    std::system(("rm -rf /var/run/dpdk/keelbench-" + kPid).c_str());
    return 0;
  }
  std::printf("dpdk_bench: keel DPDK worker vs dpdk-testpmd io, same vdev\n");
  std::printf("machine: %s\n", keel::bench::machineDescription().c_str());
  std::printf("method: net_pcap infinite_rx (in-memory replay, tx_drop), %d TCP/%s flows, %s frames,\n"
              "        %s to 16 reals (M=65537); both sides: 1 forwarding lcore, burst %d,\n"
              "        %d rx/tx descriptors, pool of %u mbufs with a %d cache, %s;\n"
              "        %.0f s steady window (keel after 1 s warm-up, testpmd from its 2nd report);\n"
              "        %d rounds of keel established (ACK segments, 1M-entry table holding every flow),\n"
              "        keel new flows (%s, 4,096-entry table), testpmd io (the ACK frames)\n",
              flows, gIpv6 ? "IPv6" : "IPv4", gIpv6 ? "74 B" : "60 B", gIpv6 ? "ip6ip6" : "ipip", kBurst, kDescriptors, poolSize(flows), kMbufCache, memoryDescription().c_str(), window, rounds,
              gNewFlags == KEEL_TCP_SYN ? "SYNs" : "ACKs: looked up, missed");
  std::printf("load average at start: %s\n", keel::bench::loadAverage().c_str());
  std::printf("round  keel est. Mpps/CPU-s  keel new  testpmd io   ratio est.  ratio new   (wall: est / new / testpmd Mpps)\n");
  struct Round {
    Rate est, fresh, testpmd;
  };
  auto ratio = [](const Rate& keel, const Rate& limit) {
    return limit.mppsPerCpu > 0 ? keel.mppsPerCpu / limit.mppsPerCpu : 0;
  };
  std::vector<Round> done;
  for (int round = 1; round <= rounds; ++round) {
    Round r{runKeel(pcap, flows, 1u << 20, window), runKeel(synPcap, flows, 4096, window),
            runTestpmd(testpmd, pcap, flows, window)};
    if (r.est.share < 0.999 || r.fresh.share < 0.999)
      std::fprintf(stderr, "dpdk_bench: not every packet was forwarded (tx_ipip share %.3f / %.3f)\n",
                   r.est.share, r.fresh.share);
    std::printf("%5d  %20.3f  %8.3f  %10.3f   %10.2f  %9.2f   (%.3f / %.3f / %.3f)\n", round,
                r.est.mppsPerCpu, r.fresh.mppsPerCpu, r.testpmd.mppsPerCpu, ratio(r.est, r.testpmd),
                ratio(r.fresh, r.testpmd), r.est.mpps, r.fresh.mpps, r.testpmd.mpps);
    std::fflush(stdout);
    done.push_back(r);
  }
  double pureEst = runPurePath(flows, 1u << 20, 20, KEEL_TCP_ACK);
  double pureNew = runPurePath(flows, 4096, 20, gNewFlags);
  releaseDpdkEnvironment();
  std::remove(pcap.c_str());
  std::remove(synPcap.c_str());
  std::system(("rm -rf /var/run/dpdk/keelbench-" + kPid).c_str());

  // The median over the rounds of one quantity of a round.
  auto median = [&done](auto of) {
    std::vector<double> v;
    for (const Round& r : done) v.push_back(of(r));
    return bench::median(v);
  };
  std::printf("load average at end: %s\n", keel::bench::loadAverage().c_str());
  std::printf("median over %d rounds     per worker CPU-second   wall clock\n", rounds);
  std::printf("keel established flows : %7.3f Mpps           %7.3f Mpps\n",
              median([](const Round& r) { return r.est.mppsPerCpu; }), median([](const Round& r) { return r.est.mpps; }));
  std::printf("keel new flows         : %7.3f Mpps           %7.3f Mpps\n",
              median([](const Round& r) { return r.fresh.mppsPerCpu; }),
              median([](const Round& r) { return r.fresh.mpps; }));
  std::printf("testpmd io (limit)     : %7.3f Mpps           %7.3f Mpps\n",
              median([](const Round& r) { return r.testpmd.mppsPerCpu; }),
              median([](const Round& r) { return r.testpmd.mpps; }));
  std::printf("keel packet path alone (no I/O, per CPU-second): established %.3f Mpps, new flows %.3f Mpps\n",
              pureEst, pureNew);
  std::printf("ratio established/testpmd (per CPU-second, median of rounds): %.2f (target >= 0.50); new flows: %.2f\n",
              median([&](const Round& r) { return ratio(r.est, r.testpmd); }),
              median([&](const Round& r) { return ratio(r.fresh, r.testpmd); }));
  // How steady the host was: this guest's rates swing by half within
  // minutes, and testpmd's memory-bound loop swings more than keel's, so a
  // median ratio from an unsteady run says as much about the host as about
  // keel (docs/performance.md, the DPDK runs of 2026-12-05 21:09).
  if (done.size() > 1) {
    auto spread = [&done](auto of) {
      double lo = of(done.front()), hi = lo;
      for (const Round& r : done) lo = std::min(lo, of(r)), hi = std::max(hi, of(r));
      return lo > 0 ? hi / lo : 0.0;
    };
    const double keelSpread = spread([](const Round& r) { return r.est.mppsPerCpu; });
    const double testpmdSpread = spread([](const Round& r) { return r.testpmd.mppsPerCpu; });
    std::printf("spread over rounds (fastest / slowest, per CPU-second): keel established %.2f, testpmd io %.2f\n",
                keelSpread, testpmdSpread);
    if (std::max(keelSpread, testpmdSpread) > 1.3)
      std::printf("note: an unsteady host (a side's rate moved by more than 30 %% between rounds): the ratio then\n"
                  "      follows whichever side the host slowed more; compare runs whose testpmd rates agree\n");
  }
  return 0;
}

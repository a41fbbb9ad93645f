// SPDX-License-Identifier: Apache-2.0
// xdp_bench: ns per packet of the XDP balancer through BPF_PROG_TEST_RUN,
// against a trivial XDP_PASS program (bpf/xdp_pass.bpf.c) measured in the
// same run as the floor.
//
// Method. One packet per bpf_prog_test_run_opts call (repeat = 1): with
// repeat > 1 the kernel runs the program again on the SAME buffer, so a
// forwarding program would see its own encapsulated output from the second
// iteration on (and take the not-a-VIP path). Each call is timed from user
// space (CLOCK_MONOTONIC around the syscall: syscall + copy in/out + run);
// the kernel's own per-run duration (ktime around the program only) is
// reported beside it. Cases are interleaved in rounds so drift and noise from
// other load hit every case alike; medians over all calls are reported.
//
//   xdp_bench [--calls N] [--rounds R] [--ct-flavours [--threads N] [--ct-size N]] [--walk FLOWS] [--decap]
//
// The default run's cases: not a VIP, no service, established TCP and UDP
// (118-byte frames), an established bare ACK padded to 60 bytes (tunnelled
// with its padding) and one with 200 bytes after its IP packet (cut before
// encapsulation: keel_encap_frame_len), new TCP flows.
//
// --ct-flavours: new-flow inserts then hits per conntrack flavour (shared
// LRU, LRU without common list, per-CPU LRU) with N threads pinned one per
// CPU on one table; a --ct-size below threads x calls measures eviction.
// --decap: keel-decap's program instead (bpf/decap.bpf.c), in a private
// network namespace whose lo holds the VIP and the real's address, on 4in4
// tunnel packets: decapsulated (two fib lookups and the strip), sent to
// another host (two lookups), inner destination not local (one lookup),
// against the xdp_pass floor on the same packet.
// --walk FLOWS: established and new flows with and without whole-table walks
// of the connection table running beside them (walkEffect), FLOWS flows in a
// table of the default size.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <pthread.h>
#include <sched.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "balancer_loader.h"
#include "control/maglev/maglev.h"
#include "fixtures.h"
// encap.h first: the decap skeleton's .rodata holds its struct keel_decap_prefix.
#include "keel/encap.h"
#include "decap.skel.h"
#include "xdp_pass.skel.h"

#include "../common/bench_env.h"

using keel::test::BalancerLoader;
using keel::test::Bytes;
using keel::test::LoaderOptions;
using keel::test::PacketBuilder;

namespace {

constexpr const char* kVip = "10.100.0.1";

uint64_t nowNs() {
  timespec t{};
  clock_gettime(CLOCK_MONOTONIC, &t);
  return static_cast<uint64_t>(t.tv_sec) * 1000000000ull + static_cast<uint64_t>(t.tv_nsec);
}

struct Samples {
  std::vector<uint32_t> wall;    // ns per call, user space
  std::vector<uint32_t> kernel;  // ns per run, as reported by the kernel
  int badAction = 0;
};

// Whole nanoseconds, as the tables print them.
uint32_t med(const std::vector<uint32_t>& v) { return static_cast<uint32_t>(keel::bench::median(v) + 0.5); }

// One timed call; returns the XDP action.
int timedRun(int progFd, const Bytes& in, Bytes& out, Samples& s) {
  LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = in.data(), .data_out = out.data(),
              .data_size_in = static_cast<__u32>(in.size()), .data_size_out = static_cast<__u32>(out.size()),
              .repeat = 1);
  uint64_t t0 = nowNs();
  int err = bpf_prog_test_run_opts(progFd, &o);
  uint64_t t1 = nowNs();
  if (err) return -1;
  s.wall.push_back(static_cast<uint32_t>(t1 - t0));
  s.kernel.push_back(o.duration);
  return static_cast<int>(o.retval);
}

Bytes tcpPacket(const std::string& src, const std::string& dst, uint16_t sport, uint16_t dport) {
  return PacketBuilder()
      .Eth(keel::test::kLbMac, keel::test::kRouterMac)
      .IPv4(src, dst)
      .Tcp(sport, dport, keel::test::kTcpAck)
      .Payload(std::string(64, 'b'))
      .build();
}

// A bare TCP ACK (54 bytes) followed by `trailing` zero bytes: Ethernet
// padding (6: a 60-byte frame, which keel tunnels as it is), or bytes past
// the IP packet that keel cuts before encapsulating (keel_encap_frame_len).
Bytes bareAck(const std::string& src, const std::string& dst, uint16_t sport, uint16_t dport, size_t trailing) {
  Bytes b = PacketBuilder()
                .Eth(keel::test::kLbMac, keel::test::kRouterMac)
                .IPv4(src, dst)
                .Tcp(sport, dport, keel::test::kTcpAck)
                .build();
  b.resize(b.size() + trailing, 0);
  return b;
}

Bytes udpPacket(const std::string& src, const std::string& dst, uint16_t sport, uint16_t dport) {
  return PacketBuilder()
      .Eth(keel::test::kLbMac, keel::test::kRouterMac)
      .IPv4(src, dst)
      .Udp(sport, dport)
      .Payload(std::string(64, 'b'))
      .build();
}

// Distinct client flows toward the VIP, for "new flow" (each one inserts).
std::vector<Bytes> newFlows(size_t n, uint32_t salt) {
  std::vector<Bytes> v;
  v.reserve(n);
  for (size_t i = 0; i < n; i++) {
    uint32_t c = static_cast<uint32_t>(i) + salt * 0x01000000u;
    char src[32];
    std::snprintf(src, sizeof src, "%u.%u.%u.%u", 11 + ((c >> 24) & 0x3f), (c >> 16) & 0xff, (c >> 8) & 0xff,
                  1 + (c & 0xfe));
    v.push_back(tcpPacket(src, kVip, static_cast<uint16_t>(1024 + (i % 60000)), 80));
  }
  return v;
}

// State: the fixture node, one TCP and one UDP service on kVip, each with a
// full-size (65537) Maglev ring over 10 reals from the C++ builder.
keel::test::FixtureState benchState() {
  keel::test::FixtureState all = keel::test::fixtureState();
  keel::test::FixtureState st;
  st.node = all.node;
  keel_vip_key vk{};
  inet_pton(AF_INET, kVip, &vk.addr[0]);
  vk.family = KEEL_AF_INET;
  st.vips.push_back(vk);
  for (uint32_t sid = 0; sid < 2; sid++) {
    keel::test::ServiceSpec s{};
    s.key.vip[0] = vk.addr[0];
    s.key.port = htons(sid == 0 ? 80 : 53);
    s.key.proto = sid == 0 ? KEEL_PROTO_TCP : KEEL_PROTO_UDP;
    s.key.family = KEEL_AF_INET;
    s.value.id = sid;
    st.services.push_back(s);
    std::vector<keel::MaglevReal> reals;
    for (uint32_t r = 0; r < 10; r++) {
      uint32_t id = sid * 10 + r;
      keel_backend be{};
      std::string addr = "10.1." + std::to_string(sid) + "." + std::to_string(r + 1);
      inet_pton(AF_INET, addr.c_str(), &be.addr[0]);
      be.service_id = sid;
      be.gen = 1;
      be.family = KEEL_AF_INET;
      be.flags = KEEL_BE_F_VALID;
      st.backends.push_back({id, be});
      reals.push_back({*keel::IpAddress::parse(addr), 1, id});
    }
    st.rings.push_back({sid, keel::buildMaglevTable(reals, 65537)});
  }
  return st;
}

struct Case {
  std::string name;
  std::function<int(Samples&)> run;  // one call
  int wantAction;
  Samples s;
};

void pinToCpu(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

std::unique_ptr<BalancerLoader> loadBalancer(const LoaderOptions& o) {
  std::string err;
  auto lb = BalancerLoader::load(o, &err);
  if (!lb) {
    std::fprintf(stderr, "xdp_bench: %s\n", err.c_str());
    std::exit(1);
  }
  std::string e = lb->apply(benchState());
  if (!e.empty()) {
    std::fprintf(stderr, "xdp_bench: %s\n", e.c_str());
    std::exit(1);
  }
  return lb;
}

struct Flavour {
  const char* name;
  bpf_map_type type;
  uint32_t flags;
};

const Flavour kFlavours[] = {
    {"lru_hash (shared LRU)", BPF_MAP_TYPE_LRU_HASH, 0},
    {"lru_hash + BPF_F_NO_COMMON_LRU", BPF_MAP_TYPE_LRU_HASH, BPF_F_NO_COMMON_LRU},
    {"lru_percpu_hash", BPF_MAP_TYPE_LRU_PERCPU_HASH, 0},
};

// New-flow inserts (and then established hits) per conntrack flavour, with
// `threads` threads pinned one per CPU running concurrently on one map.
void ctFlavours(size_t calls, int threads, uint32_t ctSize) {
  std::printf("\nconntrack flavour (%d thread%s pinned one per CPU, %zu new flows each, table %u entries)\n", threads,
              threads > 1 ? "s" : "", calls, ctSize);
  std::printf("  %-34s %14s %14s %14s\n", "flavour", "new wall ns", "new kernel ns", "estab kernel ns");
  for (const Flavour& f : kFlavours) {
    LoaderOptions o;
    o.ctType = f.type;
    o.ctFlags = f.flags;
    o.ctSize = ctSize;
    auto lb = loadBalancer(o);
    std::vector<Samples> fresh(static_cast<size_t>(threads)), estab(static_cast<size_t>(threads));
    std::vector<std::thread> ts;
    for (int t = 0; t < threads; t++) {
      ts.emplace_back([&, t] {
        pinToCpu(t);
        std::vector<Bytes> pk = newFlows(calls, static_cast<uint32_t>(t + 1));
        Bytes out(256);
        for (const Bytes& p : pk) timedRun(lb->progFd(), p, out, fresh[static_cast<size_t>(t)]);
        for (const Bytes& p : pk) timedRun(lb->progFd(), p, out, estab[static_cast<size_t>(t)]);
      });
    }
    for (auto& t : ts) t.join();
    std::vector<uint32_t> fw, fk, ek;
    for (int t = 0; t < threads; t++) {
      fw.insert(fw.end(), fresh[static_cast<size_t>(t)].wall.begin(), fresh[static_cast<size_t>(t)].wall.end());
      fk.insert(fk.end(), fresh[static_cast<size_t>(t)].kernel.begin(), fresh[static_cast<size_t>(t)].kernel.end());
      ek.insert(ek.end(), estab[static_cast<size_t>(t)].kernel.begin(), estab[static_cast<size_t>(t)].kernel.end());
    }
    std::printf("  %-34s %14u %14u %14u\n", f.name, med(fw), med(fk), med(ek));
  }
}

// --walk: what a whole-table walk of the connection table (the batched
// reads of XdpDataplane::scanConns behind keelctl conns and
// metrics.flow_count_interval) costs the program while it runs. The table
// has the default size (KEEL_CT_SIZE_DEFAULT) and holds `flows` flows; each
// round measures established packets (cycling over those flows) and new
// flows, once with no walk (the baseline) and once with walks back to back
// on a thread pinned to CPU 1 (the packets run on CPU 0), the order
// alternating between rounds. The walker reads as scanConns does (batches
// of 4,096, every entry copied out) and does nothing with the entries: a
// faster reader than keeld's, so the harsher case.
// keel-decap's program on 4in4 tunnel packets (see --decap above). The
// namespace is the process's own from here on (it ends with the process).
int decapEffect(size_t calls, int rounds, int passFd) {
  if (unshare(CLONE_NEWNET) != 0) {
    std::fprintf(stderr, "xdp_bench: unshare(CLONE_NEWNET): %s\n", std::strerror(errno));
    return 1;
  }
  for (const char* cmd : {"ip link set lo up", "ip addr add 10.100.0.1/32 dev lo", "ip addr add 10.1.0.1/32 dev lo",
                          "ip route add default dev lo"})
    if (std::system((std::string(cmd) + " >/dev/null 2>&1").c_str()) != 0) {
      std::fprintf(stderr, "xdp_bench: %s failed\n", cmd);
      return 1;
    }
  std::ofstream("/proc/sys/net/ipv4/conf/lo/forwarding") << "1\n";
  keel_decap* decap = keel_decap::open();
  if (!decap) return 1;
  decap->rodata->keel_decap_fib_ifindex = 1;  // lo, as keel-decap attach sets it
  if (keel_decap::load(decap) != 0) {
    std::fprintf(stderr, "xdp_bench: cannot load the decap program\n");
    keel_decap::destroy(decap);
    return 1;
  }
  auto tunnel = [](const std::string& real, const std::string& vip) {
    keel::test::Ipv4Opts outer;
    outer.proto = 4;
    return PacketBuilder()
        .Eth(keel::test::kRouterMac, keel::test::kLbMac)
        .IPv4("10.0.0.2", real, outer)
        .IPv4("192.0.2.10", vip)
        .Tcp(40000, 80, keel::test::kTcpAck)
        .Payload(std::string(64, 'b'))
        .build();
  };
  const Bytes toReal = tunnel("10.1.0.1", "10.100.0.1");
  const Bytes toOther = tunnel("10.1.0.99", "10.100.0.1");
  const Bytes notLocal = tunnel("10.1.0.1", "10.100.0.99");
  const int fd = bpf_program__fd(decap->progs.decap);
  Bytes out(512);
  std::vector<Case> cases;
  cases.push_back({"floor: xdp_pass", [&](Samples& s) { return timedRun(passFd, toReal, out, s); }, XDP_PASS, {}});
  cases.push_back({"decapsulated (2 lookups, strip)", [&](Samples& s) { return timedRun(fd, toReal, out, s); },
                   XDP_PASS, {}});
  cases.push_back({"to another host (2 lookups)", [&](Samples& s) { return timedRun(fd, toOther, out, s); },
                   XDP_PASS, {}});
  cases.push_back({"inner not local (1 lookup)", [&](Samples& s) { return timedRun(fd, notLocal, out, s); },
                   XDP_PASS, {}});
  for (int r = 0; r < rounds; r++)
    for (auto& c : cases)
      for (size_t i = 0; i < calls; i++)
        if (c.run(c.s) != c.wantAction) c.s.badAction++;
  std::printf("\nkeel-decap (bpf/decap.bpf.c), 4in4 tunnel packets, %d rounds x %zu calls per case, medians\n",
              rounds, calls);
  const uint32_t floorKernel = med(cases[0].s.kernel);
  std::printf("  %-38s %10s %12s %8s\n", "case", "wall ns", "kernel ns", "-floor");
  for (auto& c : cases) {
    const uint32_t k = med(c.s.kernel);
    std::printf("  %-38s %10u %12u %8d%s\n", c.name.c_str(), med(c.s.wall), k,
                static_cast<int>(k) - static_cast<int>(floorKernel), c.s.badAction ? "  (UNEXPECTED VERDICTS)" : "");
  }
  keel_decap::destroy(decap);
  return 0;
}

void walkEffect(size_t calls, int rounds, size_t flows) {
  std::printf("\nwalk effect: %zu flows in a %u-entry table, %d rounds x %zu calls per case and state,\n"
              "  walker on CPU 1 (bpf_map_lookup_batch, 4096 a batch), packets on CPU 0; medians\n",
              flows, KEEL_CT_SIZE_DEFAULT, rounds, calls);
  LoaderOptions o;
  o.ctSize = KEEL_CT_SIZE_DEFAULT;
  auto lb = loadBalancer(o);
  std::vector<Bytes> known = newFlows(flows, 3);
  std::vector<Bytes> fresh = newFlows(calls * static_cast<size_t>(rounds) * 2, 9);
  Bytes out(512);
  Samples warm;
  for (const Bytes& p : known) timedRun(lb->progFd(), p, out, warm);  // inserts every flow
  Samples est[2], neu[2];  // [0]: no walk, [1]: walking
  size_t nextKnown = 0, nextFresh = 0;
  std::vector<double> walkMs, walkEntries;
  bool walkFailed = false;
  for (int r = 0; r < rounds; r++) {
    for (int half = 0; half < 2; half++) {
      const int walking = (half == 0) == (r % 2 == 1) ? 1 : 0;
      std::atomic<bool> stop{false};
      std::thread walker;
      if (walking) {
        walker = std::thread([&] {
          pinToCpu(1);
          std::vector<keel_flow_key> keys(4096);
          std::vector<keel_ct_value> values(4096);
          while (!stop.load()) {  // bounded by the calls below
            const uint64_t t0 = nowNs();
            size_t seen = 0;
            uint64_t token = 0;
            LIBBPF_OPTS(bpf_map_batch_opts, bo);
            for (bool first = true, last = false; !last; first = false) {
              uint32_t n = 4096;
              if (bpf_map_lookup_batch(lb->conntrackFd(), first ? nullptr : &token, &token, keys.data(),
                                       values.data(), &n, &bo) != 0) {
                if (errno != ENOENT) {
                  std::fprintf(stderr, "xdp_bench: walk: bpf_map_lookup_batch: %s\n", std::strerror(errno));
                  walkFailed = true;
                  return;
                }
                last = true;
              }
              seen += n;
            }
            walkMs.push_back(static_cast<double>(nowNs() - t0) / 1e6);
            walkEntries.push_back(static_cast<double>(seen));
          }
        });
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      for (size_t i = 0; i < calls; i++, nextKnown = (nextKnown + 1) % known.size())
        if (timedRun(lb->progFd(), known[nextKnown], out, est[walking]) != XDP_TX) est[walking].badAction++;
      for (size_t i = 0; i < calls; i++)
        if (timedRun(lb->progFd(), fresh[nextFresh++], out, neu[walking]) != XDP_TX) neu[walking].badAction++;
      stop = true;
      if (walker.joinable()) walker.join();
    }
  }
  std::printf("  %-38s %14s %14s %10s\n", "case (kernel ns, wall ns)", "no walk", "walking", "walking/no");
  auto row = [](const char* name, Samples (&s)[2]) {
    const uint32_t k0 = med(s[0].kernel), k1 = med(s[1].kernel), w0 = med(s[0].wall), w1 = med(s[1].wall);
    std::printf("  %-38s %6u / %5u %6u / %5u %5.2f/%4.2f%s\n", name, k0, w0, k1, w1, k0 ? double(k1) / k0 : 0.0,
                w0 ? double(w1) / w0 : 0.0, s[0].badAction + s[1].badAction ? "  (UNEXPECTED VERDICTS)" : "");
  };
  row("established tcp (ct hit, ipip)", est);
  row("new tcp flow (ring pick + ct insert)", neu);
  // New flows insert while the rounds run, so the table grows from FLOWS.
  std::printf("  a walk read %.0f entries in %.1f ms (medians of %zu walks)%s\n",
              walkEntries.empty() ? 0.0 : keel::bench::median(walkEntries),
              walkMs.empty() ? 0.0 : keel::bench::median(walkMs), walkMs.size(),
              walkFailed ? "  (A WALK FAILED: the walking column is not measured)" : "");
}

}  // namespace

int main(int argc, char** argv) {
  size_t calls = 20000;
  int rounds = 10;
  bool flavours = false;
  int threads = 1;
  uint32_t ctSize = 0;  // 0: 4 x the flows of the flavour run (no eviction)
  size_t walkFlows = 0;  // --walk N: the walk-effect run with N flows in the table
  bool decapOnly = false;  // --decap: keel-decap's program, not the balancer
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    if (a == "--calls" && i + 1 < argc) {
      calls = std::strtoul(argv[++i], nullptr, 10);
    } else if (a == "--rounds" && i + 1 < argc) {
      rounds = std::atoi(argv[++i]);
    } else if (a == "--ct-flavours") {
      flavours = true;
    } else if (a == "--ct-size" && i + 1 < argc) {
      ctSize = static_cast<uint32_t>(std::strtoul(argv[++i], nullptr, 10));
    } else if (a == "--threads" && i + 1 < argc) {
      threads = std::atoi(argv[++i]);
    } else if (a == "--walk" && i + 1 < argc) {
      walkFlows = std::strtoul(argv[++i], nullptr, 10);
    } else if (a == "--decap") {
      decapOnly = true;
    } else {
      std::fprintf(stderr, "usage: xdp_bench [--calls N] [--rounds R] [--ct-flavours [--threads N] [--ct-size N]] [--walk FLOWS] [--decap]\n");
      return 2;
    }
  }
  if (calls == 0 || rounds <= 0 || threads <= 0) return 2;
  pinToCpu(0);

  std::printf("xdp_bench: BPF_PROG_TEST_RUN, one packet per call (repeat=1: a forwarding program\n"
              "  must not see its own output), %d rounds x %zu calls per case, cases interleaved,\n"
              "  medians. wall = user-space clock around the syscall; kernel = the kernel's own\n"
              "  per-run duration of the program.\n",
              rounds, calls);
  std::printf("machine: %s; loadavg %s\n", keel::bench::machineDescription().c_str(),
              keel::bench::loadAverage().c_str());

  keel_xdp_pass* pass = keel_xdp_pass::open_and_load();
  if (!pass) {
    std::fprintf(stderr, "xdp_bench: cannot load xdp_pass: %s\n", std::strerror(errno));
    return 1;
  }
  if (decapOnly) {
    const int rc = decapEffect(calls, rounds, bpf_program__fd(pass->progs.xdp_pass));
    keel_xdp_pass::destroy(pass);
    return rc;
  }
  LoaderOptions o;
  o.ctSize = static_cast<uint32_t>(std::max<size_t>(calls * static_cast<size_t>(rounds) * 2, 65536));
  auto lb = loadBalancer(o);
  int passFd = bpf_program__fd(pass->progs.xdp_pass);

  Bytes estab = tcpPacket("192.0.2.10", kVip, 40000, 80);
  Bytes estabUdp = udpPacket("192.0.2.10", kVip, 40000, 53);
  Bytes estabPadded = bareAck("192.0.2.10", kVip, 40000, 80, 6);
  Bytes estabTrailing = bareAck("192.0.2.10", kVip, 40000, 80, 200);
  Bytes notVip = tcpPacket("192.0.2.10", "198.51.100.1", 40000, 80);
  Bytes noService = tcpPacket("192.0.2.10", kVip, 40000, 8080);
  std::vector<Bytes> fresh = newFlows(calls * static_cast<size_t>(rounds), 7);
  size_t freshNext = 0;
  Bytes out(512);

  std::vector<Case> cases;
  cases.push_back({"floor: xdp_pass", [&](Samples& s) { return timedRun(passFd, estab, out, s); }, XDP_PASS, {}});
  cases.push_back({"not a VIP (pass)", [&](Samples& s) { return timedRun(lb->progFd(), notVip, out, s); }, XDP_PASS, {}});
  cases.push_back({"VIP, no service (pass)", [&](Samples& s) { return timedRun(lb->progFd(), noService, out, s); },
                   XDP_PASS, {}});
  cases.push_back({"established tcp (ct hit, ipip)", [&](Samples& s) { return timedRun(lb->progFd(), estab, out, s); },
                   XDP_TX, {}});
  cases.push_back({"established udp (ct hit, ipip)",
                   [&](Samples& s) { return timedRun(lb->progFd(), estabUdp, out, s); }, XDP_TX, {}});
  cases.push_back({"established tcp, 60 B (padding kept)",
                   [&](Samples& s) { return timedRun(lb->progFd(), estabPadded, out, s); }, XDP_TX, {}});
  cases.push_back({"established tcp, 200 B past IP (cut)",
                   [&](Samples& s) { return timedRun(lb->progFd(), estabTrailing, out, s); }, XDP_TX, {}});
  cases.push_back({"new tcp flow (ring pick + ct insert)",
                   [&](Samples& s) { return timedRun(lb->progFd(), fresh[freshNext++], out, s); }, XDP_TX, {}});

  // Warm up: first packets create the established entries.
  for (auto& c : cases)
    if (c.name.rfind("new", 0) != 0) {
      Samples w;
      for (int i = 0; i < 1000; i++) c.run(w);
    }
  for (int r = 0; r < rounds; r++) {
    for (auto& c : cases) {
      for (size_t i = 0; i < calls; i++) {
        int act = c.run(c.s);
        if (act != c.wantAction) c.s.badAction++;
      }
    }
  }

  uint32_t floorWall = med(cases[0].s.wall);
  uint32_t floorKernel = med(cases[0].s.kernel);
  std::printf("\n  %-38s %10s %8s %12s %8s\n", "case", "wall ns", "x floor", "kernel ns", "-floor");
  for (auto& c : cases) {
    uint32_t w = med(c.s.wall), k = med(c.s.kernel);
    std::printf("  %-38s %10u %8.2f %12u %8d%s\n", c.name.c_str(), w, floorWall ? double(w) / floorWall : 0.0, k,
                static_cast<int>(k) - static_cast<int>(floorKernel),
                c.s.badAction ? "  (UNEXPECTED VERDICTS)" : "");
  }
  std::printf("\n  targets (wall, x floor): established <= 2.3, new flow <= 7, not a VIP/service <= 1.3\n");

  if (flavours) {
    if (!ctSize) ctSize = static_cast<uint32_t>(std::max<size_t>(calls * static_cast<size_t>(threads) * 4, 65536));
    ctFlavours(calls, threads, ctSize);
  }
  if (walkFlows) walkEffect(calls, rounds, walkFlows);
  keel_xdp_pass::destroy(pass);
  return 0;
}

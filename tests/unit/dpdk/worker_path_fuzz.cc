// SPDX-License-Identifier: Apache-2.0
// AddressSanitizer/UBSan run of the DPDK packet path on malformed and random
// frames. Each frame sits in a heap block sized exactly headroom + length, so
// any read or write past the frame (or before the headroom) is reported by
// ASan. Seeded and bounded: the same packets every run. Every packet is also
// run as part of a burst (prepareBurst and processBurst, as the lcore loop) on a
// second worker, which must agree with the packet run alone.
//
// Usage: dpdk_worker_path_fuzz [iterations] [seed]
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "dataplane/dpdk/worker_path.h"
#include "test_packets.h"

using namespace keel;
using namespace keel::dpdk;
using test::Frame;
using test::ip;

namespace {

std::vector<uint8_t> icmpFragNeeded(const IpAddress& vip, const IpAddress& client) {
  // Ethernet + IPv4 + ICMP 3/4 + quoted IPv4 (VIP -> client) + 8 bytes of TCP.
  Frame quoted{vip, client, 80, 40000};
  quoted.payload = 0;
  std::vector<uint8_t> q = test::buildFrame(quoted);
  Frame f{ip("198.51.100.1"), vip, 0, 0, KEEL_IPPROTO_ICMP};
  f.icmpType = KEEL_ICMP_DEST_UNREACH;
  f.payload = 0;
  std::vector<uint8_t> out = test::buildFrame(f);
  out[14 + 20 + 1] = KEEL_ICMP_FRAG_NEEDED;
  out.insert(out.end(), q.begin() + 14, q.begin() + 14 + 28);
  uint16_t len = static_cast<uint16_t>(out.size() - 14);
  out[16] = static_cast<uint8_t>(len >> 8);
  out[17] = static_cast<uint8_t>(len);
  return out;
}

std::vector<uint8_t> ipv6WithHopByHop(const IpAddress& vip) {
  Frame f{ip("2001:db8:9::1"), vip, 1234, 53, KEEL_PROTO_UDP};
  std::vector<uint8_t> out = test::buildFrame(f);
  // Insert an 8-byte hop-by-hop header in front of UDP.
  uint8_t hbh[8] = {KEEL_PROTO_UDP, 0, 1, 4, 0, 0, 0, 0};
  out[14 + 6] = KEEL_IPPROTO_HOPOPTS;
  out.insert(out.begin() + 54, hbh, hbh + 8);
  uint16_t pl = static_cast<uint16_t>(out.size() - 54);
  out[18] = static_cast<uint8_t>(pl >> 8);
  out[19] = static_cast<uint8_t>(pl);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  const long iterations = argc > 1 ? std::atol(argv[1]) : 300000;
  const unsigned seed = argc > 2 ? static_cast<unsigned>(std::atol(argv[2])) : 1;
  std::mt19937 rng(seed);

  TableStore store(8, 1024, nullptr);
  // Both workers' tables hash alike and repeat with the seed (ConnTable).
  WorkerState worker(4096, 8, 1024, 1500, kHeapConnMemory, seed);
  IpAddress vip4 = ip("10.0.0.100"), vip6 = ip("2001:db8::100");
  bool ok = store.setNode(test::nodeConfig()).isOk() && store.addVip(test::vipKey(vip4)).isOk() &&
            store.addVip(test::vipKey(vip6)).isOk();
  keel_service_value v{};
  for (uint32_t s = 0; s < 4; ++s) {
    v.id = s;
    v.flags = (s & 1 ? KEEL_SVC_F_FWD_L2DSR : 0) | (s & 2 ? KEEL_SVC_F_SCHED_SRC : 0);
    const IpAddress& vip = s < 2 ? vip4 : vip6;
    // Odd services (l2dsr) on ports 81/54, even ones (ipip) on 80/53, and a
    // port-0 UDP service on the v4 VIP.
    const uint16_t tcpPort = s & 1 ? 81 : 80;
    const uint16_t udpPort = s == 0 ? 0 : (s & 1 ? 54 : 53);
    ok = ok && store.upsertService(test::serviceKey(vip, tcpPort, KEEL_PROTO_TCP), v).isOk();
    ok = ok && store.upsertService(test::serviceKey(vip, udpPort, KEEL_PROTO_UDP), v).isOk();
    ok = ok && store.upsertBackend(s * 2, test::backend(ip("10.1.0.1"), s)).isOk();
    ok = ok && store.upsertBackend(s * 2 + 1, test::backend(ip("2001:db8:1::1"), s)).isOk();
    ok = ok && store.publishRing(s, {s * 2, s * 2 + 1, s * 2, 1000, KEEL_INVALID_ID}).isOk();
  }
  if (!ok) {
    std::fprintf(stderr, "table setup failed\n");
    return 1;
  }

  std::vector<std::vector<uint8_t>> seeds = {
      test::buildFrame(Frame{ip("192.168.1.1"), vip4, 1000, 80}),
      test::buildFrame(Frame{ip("192.168.1.1"), vip4, 1000, 53, KEEL_PROTO_UDP}),
      test::buildFrame(Frame{ip("2001:db8:5::1"), vip6, 1000, 80}),
      test::buildFrame(Frame{ip("192.168.1.1"), vip4, 1000, 81}),
      test::buildFrame(Frame{ip("2001:db8:5::1"), vip6, 1000, 54, KEEL_PROTO_UDP}),
      test::buildFrame(Frame{ip("192.168.1.1"), vip4, 0, 0, KEEL_IPPROTO_ICMP}),
      test::buildFrame(Frame{ip("2001:db8:5::1"), vip6, 0, 0, KEEL_IPPROTO_ICMPV6, {}, 0, 128}),
      icmpFragNeeded(vip4, ip("192.168.7.7")),
      ipv6WithHopByHop(vip6),
  };
  Frame tagged{ip("192.168.1.1"), vip4, 1000, 80};
  tagged.vlan = 5;
  seeds.push_back(test::buildFrame(tagged));
  // Over the MTU once encapsulated: the ICMP too-big path (grows at the
  // front, cuts the tail), tagged or not, v4 with DF and v6.
  Frame big{ip("192.168.1.1"), vip4, 1000, 80};
  big.payload = 1500 - 40;
  big.fragOff = KEEL_IP_DF;
  seeds.push_back(test::buildFrame(big));
  big.vlan = 6;
  seeds.push_back(test::buildFrame(big));
  Frame big6{ip("2001:db8:5::1"), vip6, 1000, 53, KEEL_PROTO_UDP};
  big6.payload = 1500 - 48;
  seeds.push_back(test::buildFrame(big6));

  // Each packet goes through the path twice, on two workers with the same
  // history: alone (processPacket) and as part of a burst (both passes over
  // the burst: prepareBurst, processBurst), as the lcore loop runs it. Both must give
  // the same verdict, reason, real and bytes.
  WorkerState burstWorker(4096, 8, 1024, 1500, kHeapConnMemory, seed);
  // A third worker whose table both read for ICMP errors (WorkerState::peers),
  // holding the seeds' flows, among them the one the frag-needed seed quotes.
  WorkerState peer(4096, 8, 1024, 1500, kHeapConnMemory, seed + 1);
  std::vector<std::vector<uint8_t>> peerFlows = seeds;
  peerFlows.push_back(test::buildFrame(Frame{ip("192.168.7.7"), vip4, 40000, 80}));
  for (const auto& f : peerFlows) {
    std::vector<uint8_t> mem(128 + f.size());
    std::memcpy(mem.data() + 128, f.data(), f.size());
    PacketBuf b{mem.data() + 128, static_cast<uint32_t>(f.size()), 128};
    processPacket(*store.current(), peer, b, 1);
  }
  worker.peers = {&peer.conns};
  burstWorker.peers = {&peer.conns};
  struct Pending {
    std::vector<uint8_t> pkt;
    uint32_t headroom;
    uint64_t nowNs;
  };
  std::vector<Pending> burst;
  uint64_t packets = 0, tx = 0;
  auto runBurst = [&]() -> bool {
    const size_t n = burst.size();
    std::vector<uint8_t*> single(n), grouped(n);
    std::vector<PacketBuf> singleBuf(n), groupedBuf(n);
    std::vector<PacketResult> singleRes(n), groupedRes(n);
    std::vector<ParsedPacket> parsed(n);
    for (size_t i = 0; i < n; ++i) {
      const Pending& p = burst[i];
      for (uint8_t** block : {&single[i], &grouped[i]}) {
        // Exactly headroom + length (at least 1 byte: malloc(0) may return null).
        *block = static_cast<uint8_t*>(std::malloc(std::max<size_t>(1, p.headroom + p.pkt.size())));
        if (!p.pkt.empty()) std::memcpy(*block + p.headroom, p.pkt.data(), p.pkt.size());
      }
      singleBuf[i] = {single[i] + p.headroom, static_cast<uint32_t>(p.pkt.size()), p.headroom};
      groupedBuf[i] = {grouped[i] + p.headroom, static_cast<uint32_t>(p.pkt.size()), p.headroom};
      singleRes[i] = processPacket(*store.current(), worker, singleBuf[i], p.nowNs);
    }
    prepareBurst(burstWorker, groupedBuf.data(), parsed.data(), static_cast<uint32_t>(n));
    processBurst(*store.current(), burstWorker, groupedBuf.data(), parsed.data(), static_cast<uint32_t>(n),
                 burst[0].nowNs, groupedRes.data());
    bool same = true;
    for (size_t i = 0; i < n; ++i) {
      const Pending& p = burst[i];
      const PacketResult& r = singleRes[i];
      const PacketResult& g = groupedRes[i];
      const PacketBuf& b = singleBuf[i];
      ++packets;
      if (r.verdict == Verdict::kTx) {
        ++tx;
        if (b.data < single[i] || b.data + b.len > single[i] + p.headroom + p.pkt.size()) {
          std::fprintf(stderr, "packet %lu: output outside the buffer\n", static_cast<unsigned long>(packets));
          same = false;
        }
      }
      if (r.reason >= KEEL_R_MAX) {
        std::fprintf(stderr, "packet %lu: reason %u out of range\n", static_cast<unsigned long>(packets), r.reason);
        same = false;
      }
      if (r.verdict != g.verdict || r.reason != g.reason || r.backendId != g.backendId ||
          b.len != groupedBuf[i].len || std::memcmp(b.data, groupedBuf[i].data, b.len) != 0) {
        std::fprintf(stderr, "packet %lu (burst of %zu): alone reason %u real %u, in the burst reason %u real %u\n",
                     static_cast<unsigned long>(packets), n, r.reason, r.backendId, g.reason, g.backendId);
        same = false;
      }
      std::free(single[i]);
      std::free(grouped[i]);
    }
    burst.clear();
    return same;
  };
  size_t burstSize = 1 + rng() % 32;
  uint64_t burstNowNs = 0;
  for (long it = 0; it < iterations; ++it) {
    std::vector<uint8_t> pkt;
    switch (rng() % 4) {
      case 0: {  // random bytes, random length
        pkt.resize(rng() % 200);
        for (auto& b : pkt) b = static_cast<uint8_t>(rng());
        break;
      }
      default: {  // a valid frame with flipped bytes, cut or padded
        pkt = seeds[rng() % seeds.size()];
        int flips = static_cast<int>(rng() % 6);
        for (int i = 0; i < flips && !pkt.empty(); ++i) {
          size_t at = rng() % 3 ? rng() % std::min<size_t>(pkt.size(), 100) : rng() % pkt.size();
          pkt[at] = static_cast<uint8_t>(rng());
        }
        if (rng() % 3 == 0) pkt.resize(rng() % (pkt.size() + 1));
        if (rng() % 8 == 0) pkt.resize(pkt.size() + rng() % 64, 0);
      }
    }
    // Headroom 0..64 so encapsulation both fits and fails.
    const uint32_t headroom = rng() % 65;
    // One clock reading per burst, as the lcore loop takes it.
    burst.push_back({std::move(pkt), headroom, burstNowNs});
    if (burst.size() == burstSize || it + 1 == iterations) {
      if (!runBurst()) return 1;
      burstSize = 1 + rng() % 32;
      burstNowNs = static_cast<uint64_t>(it + 1) * 1000000;
    }
  }
  uint64_t counted = 0;
  for (const auto& c : worker.counters.reasons) counted += c.packets;
  std::printf("fuzz: %lu packets, %lu forwarded, %lu counted\n", static_cast<unsigned long>(packets),
              static_cast<unsigned long>(tx), static_cast<unsigned long>(counted));
  for (int r = 0; r < KEEL_R_MAX; ++r)
    if (worker.counters.reasons[r].packets)
      std::printf("  reason %2d: %lu\n", r, static_cast<unsigned long>(worker.counters.reasons[r].packets));
  // Every packet is counted under exactly one reason.
  return counted == packets ? 0 : 1;
}

// SPDX-License-Identifier: Apache-2.0
// AddressSanitizer/UBSan run of the DPDK packet path on malformed and random
// frames. Each frame sits in a heap block sized exactly headroom + length, so
// any read or write past the frame (or before the headroom) is reported by
// ASan. Seeded and bounded: the same packets every run.
//
// Usage: dpdk_worker_path_fuzz [iterations] [seed]
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
  WorkerState worker(4096, 8, 1024, 1500);
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

  uint64_t packets = 0, tx = 0;
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
    auto* block = static_cast<uint8_t*>(std::malloc(headroom + pkt.size() + 1));
    if (!pkt.empty()) std::memcpy(block + headroom, pkt.data(), pkt.size());
    PacketBuf b{block + headroom, static_cast<uint32_t>(pkt.size()), headroom};
    PacketResult r = processPacket(*store.current(), worker, b, static_cast<uint64_t>(it) * 1000000);
    ++packets;
    if (r.verdict == Verdict::kTx) {
      ++tx;
      if (b.data < block || b.data + b.len > block + headroom + pkt.size()) {
        std::fprintf(stderr, "iteration %ld: output outside the buffer\n", it);
        return 1;
      }
    }
    if (r.reason >= KEEL_R_MAX) {
      std::fprintf(stderr, "iteration %ld: reason %u out of range\n", it, r.reason);
      return 1;
    }
    std::free(block);
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

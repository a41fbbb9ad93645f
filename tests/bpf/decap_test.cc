// SPDX-License-Identifier: Apache-2.0
// keel-decap's XDP program through BPF_PROG_TEST_RUN. bpf_fib_lookup answers
// from the network namespace of the test process, so the process moves into
// a private one first and makes the fixture VIPs local there (nothing outside
// it is touched; it disappears with the process).
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <sched.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <string>

#include <gtest/gtest.h>

// encap.h first: the skeleton's .rodata holds its struct keel_decap_prefix.
#include "keel/encap.h"
#include "decap.skel.h"
#include "fixtures.h"

namespace keel::test {
namespace {

const char* const kDecapNames[] = {KEEL_DECAP_REASON_NAMES};

bool sh(const std::string& cmd) { return std::system((cmd + " >/dev/null 2>&1").c_str()) == 0; }

void setLoForwarding(int on) {
  for (const char* p : {"/proc/sys/net/ipv4/conf/lo/forwarding", "/proc/sys/net/ipv6/conf/lo/forwarding"}) {
    std::ofstream(p) << on << "\n";
  }
}

class DecapTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (unshare(CLONE_NEWNET) != 0) {
      skip_ = "unshare(CLONE_NEWNET) failed";
      return;
    }
    bool ok = sh("ip link set lo up");
    for (const char* v4 : {"10.100.0.1", "10.100.0.4", "10.100.0.6", "10.100.0.7", "10.100.0.9", "10.100.0.2"})
      ok = ok && sh(std::string("ip addr add ") + v4 + "/32 dev lo");
    for (const char* v6 : {"fd00:100::1", "fd00:100::6", "fd00:100::7", "fd00:100::2"})
      ok = ok && sh(std::string("ip -6 addr add ") + v6 + "/128 dev lo nodad");
    // A default route, so a non-local destination resolves to a route (not
    // "no route", which the helper reports like a local one).
    ok = ok && sh("ip route add default dev lo") && sh("ip -6 route add default dev lo");
    if (!ok) skip_ = "could not configure the private namespace";
    setLoForwarding(1);
  }

  void SetUp() override {
    if (!skip_.empty()) GTEST_SKIP() << skip_;
    skel_ = keel_decap::open();
    ASSERT_TRUE(skel_);
    skel_->rodata->keel_decap_fib_ifindex = 1;  // lo in a fresh namespace
    ASSERT_EQ(keel_decap::load(skel_), 0);
  }

  void TearDown() override {
    if (skel_) keel_decap::destroy(skel_);
  }

  keel_counter counter(uint32_t reason) {
    int ncpu = libbpf_num_possible_cpus();
    std::vector<keel_counter> per(static_cast<size_t>(ncpu));
    keel_counter sum{};
    if (bpf_map_lookup_elem(bpf_map__fd(skel_->maps.decap_stats), &reason, per.data())) return sum;
    for (const auto& c : per) {
      sum.packets += c.packets;
      sum.bytes += c.bytes;
    }
    return sum;
  }

  // Runs one frame; checks XDP_PASS, the output and the one reason counter.
  void check(const std::string& what, const Bytes& in, const Bytes& want, keel_decap_reason reason,
             uint32_t action = XDP_PASS) {
    SCOPED_TRACE(what);
    std::vector<keel_counter> before;
    for (uint32_t r = 0; r < KEEL_DECAP_R_MAX; r++) before.push_back(counter(r));
    Bytes out(in.size() + 64);
    LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = in.data(), .data_out = out.data(),
                .data_size_in = static_cast<__u32>(in.size()), .data_size_out = static_cast<__u32>(out.size()));
    ASSERT_EQ(bpf_prog_test_run_opts(bpf_program__fd(skel_->progs.decap), &o), 0);
    EXPECT_EQ(o.retval, action);
    out.resize(o.data_size_out);
    if (action == XDP_PASS) {
      EXPECT_EQ(out, want) << hexDiff(out, want);
    }
    for (uint32_t r = 0; r < KEEL_DECAP_R_MAX; r++) {
      uint64_t d = counter(r).packets - before[r].packets;
      EXPECT_EQ(d, r == static_cast<uint32_t>(reason) ? 1u : 0u) << kDecapNames[r] << ", want " << kDecapNames[reason];
    }
  }

  static inline std::string skip_;
  keel_decap* skel_ = nullptr;
};

// The bare frame the kernel should see after decapsulation: the tunnel
// frame's L2 header (tag kept) in front of the inner packet.
Bytes bare(bool vlan, const std::function<void(PacketBuilder&)>& inner) {
  PacketBuilder b;
  if (vlan) {
    b.Eth(kRouterMac, kLbMac).Vlan(5);
  } else {
    b.Eth(kRouterMac, kLbMac);
  }
  inner(b);
  return b.build();
}

Bytes tunnel(bool vlan, bool outer6, const std::string& realAddr, const Bytes& bareFrame, Ipv4Opts o4 = {},
             uint8_t outerTc6 = 0) {
  size_t l3 = vlan ? 18 : 14;
  Bytes innerL3(bareFrame.begin() + static_cast<long>(l3), bareFrame.end());
  bool inner6 = (innerL3[0] >> 4) == 6;
  PacketBuilder b;
  if (vlan) {
    b.Eth(kRouterMac, kLbMac).Vlan(5);
  } else {
    b.Eth(kRouterMac, kLbMac);
  }
  uint8_t proto = inner6 ? 41 : 4;
  if (outer6) {
    b.IPv6(kTunnelSrc6, realAddr, {.tc = outerTc6, .nextHeader = proto});
  } else {
    o4.proto = proto;
    b.IPv4(kTunnelSrc4, realAddr, o4);
  }
  return b.Raw(innerL3).build();
}

TEST_F(DecapTest, StripsEveryTunnelKindToALocalVip) {
  for (bool vlan : {false, true}) {
    Bytes in4 = bare(vlan, [](PacketBuilder& b) { b.IPv4(kClient4, "10.100.0.1").Tcp(40000, 80).Payload("x"); });
    Bytes in6 = bare(vlan, [](PacketBuilder& b) { b.IPv6(kClient6, "fd00:100::1").Udp(40000, 53).Payload("y"); });
    std::string tag = vlan ? " vlan" : "";
    check("4in4" + tag, tunnel(vlan, false, "10.1.0.1", in4), in4, KEEL_DECAP_R_DECAP_V4);
    check("6in4" + tag, tunnel(vlan, false, "10.1.0.1", in6), in6, KEEL_DECAP_R_DECAP_V4);
    check("6in6" + tag, tunnel(vlan, true, "fc00:1::1", in6), in6, KEEL_DECAP_R_DECAP_V6);
    check("4in6" + tag, tunnel(vlan, true, "fc00:1::1", in4), in4, KEEL_DECAP_R_DECAP_V6);
    check("4in4 outer with IP options" + tag, tunnel(vlan, false, "10.1.0.1", in4, {.options = {1, 1, 1, 0}}), in4,
          KEEL_DECAP_R_DECAP_V4);
  }
}

// RFC 6040 §4.2: a CE mark on the outer header reaches an ECN-capable inner
// packet (IPv4: with its checksum updated), outer ECT(1) over inner ECT(0)
// gives ECT(1), and CE over a Not-ECT inner packet is dropped. The expected
// frames are built with the marks the inner packet should carry (the
// builder computes their checksums).
TEST_F(DecapTest, CarriesOuterCongestionMarksInward) {
  constexpr uint8_t kNotEct = 0, kEct1 = 1, kEct0 = 2, kCe = 3;
  constexpr uint8_t kDscp = 0x28 << 2;  // a DSCP beside the ECN bits, which must stay as it is
  auto in4 = [&](uint8_t ecn) {
    return bare(false, [&](PacketBuilder& b) {
      b.IPv4(kClient4, "10.100.0.1", {.tos = static_cast<uint8_t>(kDscp | ecn)}).Tcp(40000, 80).Payload("x");
    });
  };
  auto in6 = [&](uint8_t ecn) {
    return bare(true, [&](PacketBuilder& b) {
      b.IPv6(kClient6, "fd00:100::1", {.tc = static_cast<uint8_t>(kDscp | ecn), .flowLabel = 0x12345})
          .Udp(40000, 53).Payload("y");
    });
  };
  struct Case {
    uint8_t outer, inner, want;
  };
  for (const Case& c : {Case{kCe, kEct0, kCe}, Case{kCe, kEct1, kCe}, Case{kCe, kCe, kCe},
                        Case{kEct1, kEct0, kEct1}, Case{kEct0, kEct0, kEct0}, Case{kEct0, kEct1, kEct1},
                        Case{kNotEct, kEct0, kEct0}, Case{kNotEct, kNotEct, kNotEct}, Case{kEct0, kNotEct, kNotEct}}) {
    const std::string what = "outer " + std::to_string(c.outer) + " inner " + std::to_string(c.inner);
    check("4in4 " + what, tunnel(false, false, "10.1.0.1", in4(c.inner), {.tos = c.outer}), in4(c.want),
          KEEL_DECAP_R_DECAP_V4);
    check("4in6 " + what, tunnel(false, true, "fc00:1::1", in4(c.inner), {}, c.outer), in4(c.want),
          KEEL_DECAP_R_DECAP_V6);
    check("6in6 vlan " + what, tunnel(true, true, "fc00:1::1", in6(c.inner), {}, c.outer), in6(c.want),
          KEEL_DECAP_R_DECAP_V6);
    check("6in4 vlan " + what, tunnel(true, false, "10.1.0.1", in6(c.inner), {.tos = c.outer}), in6(c.want),
          KEEL_DECAP_R_DECAP_V4);
  }
  check("CE over Not-ECT, 4in4", tunnel(false, false, "10.1.0.1", in4(kNotEct), {.tos = kCe}), {},
        KEEL_DECAP_R_DROP_CE_NOT_ECT, XDP_DROP);
  check("CE over Not-ECT, 6in6", tunnel(true, true, "fc00:1::1", in6(kNotEct), {}, kCe), {},
        KEEL_DECAP_R_DROP_CE_NOT_ECT, XDP_DROP);
}

// attach --allow-source: only tunnels from the listed prefixes are
// decapsulated; any other source passes untouched (pass_source). Prefixes
// written as the program compares them: network-order words, IPv4 in word 0.
TEST_F(DecapTest, DecapsulatesOnlyFromAllowedSources) {
  keel_decap::destroy(skel_);
  skel_ = keel_decap::open();
  ASSERT_TRUE(skel_);
  skel_->rodata->keel_decap_fib_ifindex = 1;
  keel_decap_prefix v4{}, v6{};
  v4.family = KEEL_AF_INET;
  std::memcpy(v4.addr, ipBytes(kTunnelSrc4).data(), 4);  // 10.0.0.1/32
  v4.mask[0] = 0xffffffff;
  v6.family = KEEL_AF_INET6;
  std::memcpy(v6.addr, ipBytes(kTunnelSrc6).data(), 8);  // fc00::/64
  v6.mask[0] = v6.mask[1] = 0xffffffff;
  skel_->rodata->keel_decap_allow[0] = v4;
  skel_->rodata->keel_decap_allow[1] = v6;
  skel_->rodata->keel_decap_allow_n = 2;
  ASSERT_EQ(keel_decap::load(skel_), 0);

  Bytes in4 = bare(false, [](PacketBuilder& b) { b.IPv4(kClient4, "10.100.0.1").Tcp(40000, 80).Payload("x"); });
  Bytes in6 = bare(false, [](PacketBuilder& b) { b.IPv6(kClient6, "fd00:100::1").Udp(40000, 53).Payload("y"); });
  check("4in4 from the allowed /32", tunnel(false, false, "10.1.0.1", in4), in4, KEEL_DECAP_R_DECAP_V4);
  check("6in6 from the allowed /64", tunnel(false, true, "fc00:1::1", in6), in6, KEEL_DECAP_R_DECAP_V6);
  auto from = [](const std::string& src, const Bytes& bareFrame) {
    Bytes innerL3(bareFrame.begin() + 14, bareFrame.end());
    const bool inner6 = (innerL3[0] >> 4) == 6;
    PacketBuilder b;
    b.Eth(kRouterMac, kLbMac);
    if (src.find(':') != std::string::npos)
      b.IPv6(src, "fc00:1::1", {.nextHeader = static_cast<uint8_t>(inner6 ? 41 : 4)});
    else
      b.IPv4(src, "10.1.0.1", {.proto = static_cast<uint8_t>(inner6 ? 41 : 4)});
    return b.Raw(innerL3).build();
  };
  Bytes t = from("10.0.0.2", in4);
  check("4in4 from a neighbour of the /32", t, t, KEEL_DECAP_R_PASS_SOURCE);
  t = from("10.0.0.1", in6);
  check("6in4 from the allowed /32", t, in6, KEEL_DECAP_R_DECAP_V4);
  t = from("fc00:0:0:1::1", in6);
  check("6in6 from outside the /64", t, t, KEEL_DECAP_R_PASS_SOURCE);
  t = from("fc00::99", in4);
  check("4in6 from inside the /64", t, in4, KEEL_DECAP_R_DECAP_V6);
  // Not a tunnel: untouched as before, whatever its source.
  Bytes plain = bare(false, [](PacketBuilder& b) { b.IPv4("198.51.100.1", "10.100.0.1").Tcp(1, 80); });
  check("plain TCP from anywhere", plain, plain, KEEL_DECAP_R_PASS_NOT_TUNNEL);
}

TEST_F(DecapTest, PassesEverythingElseUnchanged) {
  Bytes notLocal = bare(false, [](PacketBuilder& b) { b.IPv4(kClient4, "10.100.0.99").Tcp(1, 80); });
  Bytes t = tunnel(false, false, "10.1.0.1", notLocal);
  check("inner destination not local", t, t, KEEL_DECAP_R_PASS_NOT_LOCAL);
  Bytes notLocal6 = bare(false, [](PacketBuilder& b) { b.IPv6(kClient6, "2001:db8:99::1").Tcp(1, 80); });
  t = tunnel(false, true, "fc00:1::1", notLocal6);
  check("inner v6 destination not local", t, t, KEEL_DECAP_R_PASS_NOT_LOCAL);

  Bytes plain = bare(false, [](PacketBuilder& b) { b.IPv4(kClient4, "10.100.0.1").Tcp(1, 80); });
  check("plain TCP to a local address", plain, plain, KEEL_DECAP_R_PASS_NOT_TUNNEL);
  Bytes arp = PacketBuilder().Eth("ff:ff:ff:ff:ff:ff", kRouterMac, 0x0806).Raw(Bytes(28, 0)).build();
  check("ARP", arp, arp, KEEL_DECAP_R_PASS_NOT_TUNNEL);
  Bytes gre = PacketBuilder().Eth(kLbMac, kRouterMac).IPv4(kTunnelSrc4, "10.1.0.1", {.proto = 47}).Raw(Bytes(24, 0)).build();
  check("GRE", gre, gre, KEEL_DECAP_R_PASS_NOT_TUNNEL);

  Bytes cut = PacketBuilder().Eth(kRouterMac, kLbMac).IPv4(kTunnelSrc4, "10.1.0.1", {.proto = 4}).Raw(Bytes(10, 0x45)).build();
  check("inner header cut short", cut, cut, KEEL_DECAP_R_PASS_MALFORMED);
  Bytes inner = bare(false, [](PacketBuilder& b) { b.IPv4(kClient4, "10.100.0.1").Tcp(1, 80); });
  Bytes longer = tunnel(false, false, "10.1.0.1", inner, {.totLen = 400});
  check("outer length beyond the frame", longer, longer, KEEL_DECAP_R_PASS_MALFORMED);
  Bytes frag = tunnel(false, false, "10.1.0.1", inner, {.fragOff = kIpMf});
  check("outer fragment", frag, frag, KEEL_DECAP_R_PASS_MALFORMED);
  Bytes badInner = PacketBuilder().Eth(kRouterMac, kLbMac).IPv4(kTunnelSrc4, "10.1.0.1", {.proto = 4})
                       .IPv6(kClient6, "fd00:100::1").Tcp(1, 80).build();
  check("protocol 4 carrying an IPv6 packet", badInner, badInner, KEEL_DECAP_R_PASS_MALFORMED);
}

TEST_F(DecapTest, FibLookupRefusedWhenLoDoesNotForward) {
  setLoForwarding(0);
  Bytes inner = bare(false, [](PacketBuilder& b) { b.IPv4(kClient4, "10.100.0.1").Tcp(1, 80); });
  Bytes t = tunnel(false, false, "10.1.0.1", inner);
  check("lo forwarding off", t, t, KEEL_DECAP_R_PASS_FIB_DISABLED);
  setLoForwarding(1);
  check("lo forwarding on again", t, inner, KEEL_DECAP_R_DECAP_V4);
}

// Balancer output -> decap must give back the client's packet (with the
// tunnel's MACs): every ipip fixture row, end to end.
TEST_F(DecapTest, UndoesEveryBalancerEncapsulation) {
  size_t n = 0;
  for (const FixtureRow& row : fixtureRows()) {
    if (row.reason != KEEL_R_TX_IPIP) continue;
    Bytes want = row.input;
    Bytes nh = macBytes(kRouterMac), lb = macBytes(kLbMac);
    std::memcpy(want.data(), nh.data(), 6);
    std::memcpy(want.data() + 6, lb.data(), 6);
    check(row.description, row.expected, want,
          (row.expected[12] == 0x86 || (row.expected[12] == 0x81 && row.expected[16] == 0x86) ||
           (row.expected[12] == 0x88 && row.expected[16] == 0x86))
              ? KEEL_DECAP_R_DECAP_V6
              : KEEL_DECAP_R_DECAP_V4);
    n++;
  }
  EXPECT_GT(n, 20u);
}

}  // namespace
}  // namespace keel::test

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
    // The reals' own addresses, which the tunnels are sent to (the
    // fixture's 10.1.0.0/24 and fc00:1::/64): local, as on a real.
    ok = ok && sh("ip route add local 10.1.0.0/24 dev lo") && sh("ip -6 route add local fc00:1::/64 dev lo");
    // A default route, so a non-local destination resolves to a route (not
    // "no route", which the helper reports like a local one).
    ok = ok && sh("ip route add default dev lo") && sh("ip -6 route add default dev lo");
    // A LAN interface as a real has one (there is no dummy module here: a
    // veth pair), so the local table holds what it holds on a real: a
    // subnet broadcast route (10.0.1.255) and IPv6 multicast (ff00::/8).
    ok = ok && sh("ip link add kdt0 type veth peer name kdt1") && sh("ip link set kdt0 up") &&
         sh("ip link set kdt1 up") && sh("ip addr add 10.0.1.2/24 dev kdt0") &&
         sh("ip -6 addr add fd00:1::2/64 dev kdt0 nodad");
    if (!ok) skip_ = "could not configure the private namespace";
    setLoForwarding(1);
  }

  void SetUp() override {
    if (!skip_.empty()) {
      if (geteuid() == 0) FAIL() << skip_ << " (as root: a skip would pass unseen)";
      GTEST_SKIP() << skip_;
    }
    reload([](keel_decap*) {});
  }

  // Loads the program again with its load-time options set by `options`
  // (keel_decap_fib_ifindex is lo's, as attach sets it).
  void reload(const std::function<void(keel_decap*)>& options) {
    if (skel_) keel_decap::destroy(skel_);
    skel_ = keel_decap::open();
    ASSERT_TRUE(skel_);
    skel_->rodata->keel_decap_fib_ifindex = 1;  // lo in a fresh namespace
    options(skel_);
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

// ADDR/LEN as attach loads it (keel_decap_prefix: network-order words, an
// IPv4 address in word 0, host bits cleared).
keel_decap_prefix prefix(const std::string& addr, int len) {
  keel_decap_prefix p{};
  const Bytes a = ipBytes(addr);
  uint8_t m[16] = {};
  for (int i = 0; i < len; i++) m[i / 8] |= static_cast<uint8_t>(0x80 >> (i % 8));
  uint8_t v[16] = {};
  for (size_t i = 0; i < a.size(); i++) v[i] = a[i] & m[i];
  std::memcpy(p.addr, v, 16);
  std::memcpy(p.mask, m, 16);
  p.family = a.size() == 4 ? KEEL_AF_INET : KEEL_AF_INET6;
  return p;
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

// An inner destination that is no unicast address is never decapsulated,
// whatever the FIB says of it (loopback and ff02::1 are "local" to it, so
// without this check both were decapsulated): IPv4 0/8, 127/8, 224/4
// (multicast), 240/4 (reserved, with 255.255.255.255); IPv6 ::, ::1, ff00::/8,
// IPv4-mapped ::ffff:0:0/96. Each through both outer families.
TEST_F(DecapTest, NeverDecapsulatesToANonUnicastDestination) {
  for (const char* dst : {"127.0.0.1", "127.1.2.3", "0.0.0.0", "0.1.2.3", "224.0.0.1", "239.255.255.250",
                          "240.0.0.1", "255.255.255.255"}) {
    Bytes in = bare(false, [&](PacketBuilder& b) { b.IPv4(kClient4, dst).Udp(40000, 53).Payload("x"); });
    Bytes t = tunnel(false, false, "10.1.0.1", in);
    check(std::string("4in4 to ") + dst, t, t, KEEL_DECAP_R_PASS_NOT_UNICAST);
    t = tunnel(true, true, "fc00:1::1", bare(true, [&](PacketBuilder& b) {
                 b.IPv4(kClient4, dst).Udp(40000, 53).Payload("x");
               }));
    check(std::string("4in6 vlan to ") + dst, t, t, KEEL_DECAP_R_PASS_NOT_UNICAST);
  }
  for (const char* dst : {"::1", "::", "ff02::1", "ff05::1:3", "ff0e::1", "::ffff:127.0.0.1", "::ffff:10.100.0.1"}) {
    Bytes in = bare(false, [&](PacketBuilder& b) { b.IPv6(kClient6, dst).Udp(40000, 53).Payload("y"); });
    Bytes t = tunnel(false, true, "fc00:1::1", in);
    check(std::string("6in6 to ") + dst, t, t, KEEL_DECAP_R_PASS_NOT_UNICAST);
    t = tunnel(false, false, "10.1.0.1", in);
    check(std::string("6in4 to ") + dst, t, t, KEEL_DECAP_R_PASS_NOT_UNICAST);
  }
  // The neighbours of those ranges are unicast: decapsulated when local,
  // left to the FIB otherwise.
  Bytes in = bare(false, [](PacketBuilder& b) { b.IPv4(kClient4, "10.0.1.2").Udp(40000, 53).Payload("x"); });
  check("4in4 to the LAN address 10.0.1.2", tunnel(false, false, "10.1.0.1", in), in, KEEL_DECAP_R_DECAP_V4);
  for (const char* dst : {"1.0.0.0", "126.255.255.255", "128.0.0.0", "223.255.255.255"}) {
    Bytes t = tunnel(false, false, "10.1.0.1",
                     bare(false, [&](PacketBuilder& b) { b.IPv4(kClient4, dst).Udp(40000, 53).Payload("x"); }));
    check(std::string("4in4 to ") + dst, t, t, KEEL_DECAP_R_PASS_NOT_LOCAL);
  }
  for (const char* dst : {"::2", "fe00::1", "feff:ffff::1", "::fffe:a64:1"}) {
    Bytes t = tunnel(false, true, "fc00:1::1",
                     bare(false, [&](PacketBuilder& b) { b.IPv6(kClient6, dst).Udp(40000, 53).Payload("y"); }));
    check(std::string("6in6 to ") + dst, t, t, KEEL_DECAP_R_PASS_NOT_LOCAL);
  }
  // Known gap, kept visible: bpf_fib_lookup reports a subnet broadcast
  // route (RTN_BROADCAST) exactly as a local one (BPF_FIB_LKUP_RET_NOT_FWDED,
  // nothing else filled in), so without --vip the program cannot tell
  // 10.0.1.255 from 10.0.1.2 and decapsulates it. --vip refuses it (below).
  in = bare(false, [](PacketBuilder& b) { b.IPv4(kClient4, "10.0.1.255").Udp(40000, 53).Payload("x"); });
  check("4in4 to the LAN broadcast 10.0.1.255, no --vip", tunnel(false, false, "10.1.0.1", in), in,
        KEEL_DECAP_R_DECAP_V4);
}

// A tunnel must be addressed to this host alone: one sent to an Ethernet
// group address or a non-unicast outer IP reaches every real on the
// segment, and each would deliver its inner packet (UDP even as a
// link-layer broadcast) and answer the client. Passed untouched.
TEST_F(DecapTest, TunnelsNotAddressedToThisHostAlonePassUntouched) {
  Bytes in4 = bare(false, [](PacketBuilder& b) { b.IPv4(kClient4, "10.100.0.1").Udp(40000, 53).Payload("x"); });
  Bytes in6 = bare(false, [](PacketBuilder& b) { b.IPv6(kClient6, "fd00:100::1").Udp(40000, 53).Payload("y"); });
  for (const char* outer : {"255.255.255.255", "224.0.0.1", "239.1.2.3", "0.0.0.0", "127.0.0.1"}) {
    Bytes t = tunnel(false, false, outer, in4);
    check(std::string("4in4 sent to ") + outer, t, t, KEEL_DECAP_R_PASS_OUTER_NOT_UNICAST);
  }
  for (const char* outer : {"ff02::1", "ff05::2", "::", "::ffff:10.1.0.1"}) {
    Bytes t = tunnel(false, true, outer, in6);
    check(std::string("6in6 sent to ") + outer, t, t, KEEL_DECAP_R_PASS_OUTER_NOT_UNICAST);
  }
  // The real's own outer address, but the frame to every host on the link.
  for (const Bytes& mac : {Bytes{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, Bytes{0x01, 0x00, 0x5e, 0x00, 0x00, 0x01},
                           Bytes{0x33, 0x33, 0x00, 0x00, 0x00, 0x01}}) {
    Bytes t = tunnel(false, false, "10.1.0.1", in4);
    std::copy(mac.begin(), mac.end(), t.begin());
    check("4in4 to this real in an Ethernet group frame", t, t, KEEL_DECAP_R_PASS_OUTER_NOT_UNICAST);
    Bytes t6 = tunnel(true, true, "fc00:1::1", bare(true, [](PacketBuilder& b) {
                        b.IPv6(kClient6, "fd00:100::1").Udp(40000, 53).Payload("y");
                      }));
    std::copy(mac.begin(), mac.end(), t6.begin());
    check("6in6 vlan to this real in an Ethernet group frame", t6, t6, KEEL_DECAP_R_PASS_OUTER_NOT_UNICAST);
  }
  // Addressed to it alone, the same packets are decapsulated.
  check("4in4 to this real, unicast frame", tunnel(false, false, "10.1.0.1", in4), in4, KEEL_DECAP_R_DECAP_V4);
}

// attach --vip: only inner destinations in a listed prefix are decapsulated;
// any other passes untouched (pass_not_vip), local or not. A listed one must
// still be local (the FIB is asked as before), and a non-unicast one is
// refused even when a prefix covers it.
TEST_F(DecapTest, DecapsulatesOnlyToListedVips) {
  reload([](keel_decap* s) {
    s->rodata->keel_decap_vip[0] = prefix("10.100.0.0", 30);  // .1 and .2 are local, .3 is not
    s->rodata->keel_decap_vip[1] = prefix("fd00:100::1", 128);
    s->rodata->keel_decap_vip[2] = prefix("127.0.0.0", 8);
    s->rodata->keel_decap_vip_n = 3;
  });
  auto in4 = [](const std::string& dst) {
    return bare(false, [&](PacketBuilder& b) { b.IPv4(kClient4, dst).Tcp(40000, 80).Payload("x"); });
  };
  auto in6 = [](const std::string& dst) {
    return bare(false, [&](PacketBuilder& b) { b.IPv6(kClient6, dst).Udp(40000, 53).Payload("y"); });
  };
  check("4in4 to 10.100.0.1, in 10.100.0.0/30", tunnel(false, false, "10.1.0.1", in4("10.100.0.1")),
        in4("10.100.0.1"), KEEL_DECAP_R_DECAP_V4);
  check("4in6 to 10.100.0.2, in 10.100.0.0/30", tunnel(false, true, "fc00:1::1", in4("10.100.0.2")),
        in4("10.100.0.2"), KEEL_DECAP_R_DECAP_V6);
  check("6in6 to fd00:100::1, listed", tunnel(false, true, "fc00:1::1", in6("fd00:100::1")), in6("fd00:100::1"),
        KEEL_DECAP_R_DECAP_V6);
  check("6in4 to fd00:100::1, listed", tunnel(false, false, "10.1.0.1", in6("fd00:100::1")), in6("fd00:100::1"),
        KEEL_DECAP_R_DECAP_V4);
  for (const char* dst : {"10.100.0.4", "10.0.1.2", "10.0.1.255", "10.100.0.99"}) {
    Bytes t = tunnel(false, false, "10.1.0.1", in4(dst));
    check(std::string("4in4 to ") + dst + ", outside --vip", t, t, KEEL_DECAP_R_PASS_NOT_VIP);
  }
  for (const char* dst : {"fd00:100::2", "fd00:1::2", "fd00:100::6"}) {
    Bytes t = tunnel(false, true, "fc00:1::1", in6(dst));
    check(std::string("6in6 to ") + dst + ", outside --vip", t, t, KEEL_DECAP_R_PASS_NOT_VIP);
  }
  // An IPv4 prefix never matches an IPv6 destination whose first word it covers.
  Bytes t = tunnel(false, true, "fc00:1::1", in6("a64:1::1"));  // 0a64:0001:: = 10.100.0.1's bytes
  check("6in6 to a64:1::1, the bytes of an IPv4 VIP", t, t, KEEL_DECAP_R_PASS_NOT_VIP);
  t = tunnel(false, false, "10.1.0.1", in4("10.100.0.3"));
  check("4in4 to 10.100.0.3, listed but not local", t, t, KEEL_DECAP_R_PASS_NOT_LOCAL);
  t = tunnel(false, false, "10.1.0.1", in4("127.0.0.1"));
  check("4in4 to 127.0.0.1, listed but loopback", t, t, KEEL_DECAP_R_PASS_NOT_UNICAST);
  Bytes plain = bare(false, [](PacketBuilder& b) { b.IPv4(kClient4, "10.0.1.2").Tcp(1, 80); });
  check("plain TCP to a non-VIP", plain, plain, KEEL_DECAP_R_PASS_NOT_TUNNEL);
}

// The verifier takes the program with both lists full (the loops run to
// their bounds), and the last entry of each is still compared.
TEST_F(DecapTest, LoadsWithBothListsFull) {
  reload([](keel_decap* s) {
    for (uint32_t i = 0; i < KEEL_DECAP_MAX_ALLOW; i++)
      s->rodata->keel_decap_allow[i] = prefix("198.51.100." + std::to_string(i), 32);
    s->rodata->keel_decap_allow[KEEL_DECAP_MAX_ALLOW - 1] = prefix(kTunnelSrc4, 32);
    s->rodata->keel_decap_allow_n = KEEL_DECAP_MAX_ALLOW;
    for (uint32_t i = 0; i < KEEL_DECAP_MAX_VIP; i++)
      s->rodata->keel_decap_vip[i] = prefix("203.0.113." + std::to_string(i), 32);
    s->rodata->keel_decap_vip[KEEL_DECAP_MAX_VIP - 1] = prefix("10.100.0.1", 32);
    s->rodata->keel_decap_vip_n = KEEL_DECAP_MAX_VIP;
  });
  Bytes in = bare(false, [](PacketBuilder& b) { b.IPv4(kClient4, "10.100.0.1").Tcp(40000, 80).Payload("x"); });
  check("4in4 from the last source to the last VIP", tunnel(false, false, "10.1.0.1", in), in,
        KEEL_DECAP_R_DECAP_V4);
  Bytes other = bare(false, [](PacketBuilder& b) { b.IPv4(kClient4, "10.100.0.4").Tcp(40000, 80).Payload("x"); });
  Bytes t = tunnel(false, false, "10.1.0.1", other);
  check("4in4 to a local address in neither list", t, t, KEEL_DECAP_R_PASS_NOT_VIP);
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
  // A tunnel in the tunnel: the kernel's own tunl0/sit/ip6tnl/gre would
  // strip the second layer, to a destination nothing checked.
  for (const uint8_t proto : {4, 41, 47}) {
    Bytes nested = bare(false, [&](PacketBuilder& b) {
      b.IPv4(kClient4, "10.100.0.1", {.proto = proto}).Raw(Bytes(40, 0x45));
    });
    Bytes t4 = tunnel(false, false, "10.1.0.1", nested);
    check("a tunnel (protocol " + std::to_string(proto) + ") inside the tunnel", t4, t4, KEEL_DECAP_R_PASS_MALFORMED);
  }
  Bytes nested6 = bare(false, [](PacketBuilder& b) {
    b.IPv6(kClient6, "fd00:100::1", {.nextHeader = 4}).Raw(Bytes(40, 0x45));
  });
  Bytes t6 = tunnel(false, true, "fc00:1::1", nested6);
  check("an IPv6 packet carrying IPIP inside the tunnel", t6, t6, KEEL_DECAP_R_PASS_MALFORMED);
  // The same behind extension headers the kernel walks before it hands the
  // tunnel header on (hop-by-hop, destination options, an atomic fragment).
  for (const uint8_t ext : {0, 60, 44}) {
    Bytes behind = bare(false, [&](PacketBuilder& b) {
      b.IPv6(kClient6, "fd00:100::1").Ipv6Ext(ext).IPv4(kClient4, "10.100.0.1").Tcp(1, 80);
    });
    Bytes tb = tunnel(false, true, "fc00:1::1", behind);
    check("IPIP behind IPv6 extension header " + std::to_string(ext) + " inside the tunnel", tb, tb,
          KEEL_DECAP_R_PASS_MALFORMED);
  }
  // A client's packet behind the extension headers the balancer forwards
  // (hop-by-hop, destination options, an atomic fragment, a routing header
  // with no segments left) is decapsulated; one the balancer drops (a real
  // fragment, segments left) is not.
  struct ExtRow {
    uint8_t type;
    uint16_t fragOff;  // Ipv6Ext's: fragment offset | M, or routing type << 8 | segments left
    keel_decap_reason want;
  };
  for (const ExtRow& r : {ExtRow{0, 0, KEEL_DECAP_R_DECAP_V6}, ExtRow{60, 0, KEEL_DECAP_R_DECAP_V6},
                          ExtRow{44, 0, KEEL_DECAP_R_DECAP_V6}, ExtRow{43, 0, KEEL_DECAP_R_DECAP_V6},
                          ExtRow{44, 1, KEEL_DECAP_R_PASS_MALFORMED}, ExtRow{43, 1, KEEL_DECAP_R_PASS_MALFORMED}}) {
    Bytes in = bare(false, [&](PacketBuilder& b) {
      b.IPv6(kClient6, "fd00:100::1").Ipv6Ext(r.type, 8, r.fragOff).Tcp(40000, 80).Payload("x");
    });
    Bytes tb = tunnel(false, true, "fc00:1::1", in);
    check("TCP behind IPv6 extension header " + std::to_string(r.type) + "/" + std::to_string(r.fragOff) +
              " inside the tunnel",
          tb, r.want == KEEL_DECAP_R_DECAP_V6 ? in : tb, r.want);
  }
  // What the kernel's own tunnel would drop: a bad outer checksum, an inner
  // packet reaching past the outer one's length (the kernel cuts the outer
  // packet to it first).
  Bytes badSum = tunnel(false, false, "10.1.0.1", inner);
  badSum[14 + 10] ^= 0x01;
  check("outer IPv4 header checksum wrong", badSum, badSum, KEEL_DECAP_R_PASS_MALFORMED);
  Bytes shortOuter = tunnel(false, false, "10.1.0.1", inner, {.totLen = 20 + 30});
  check("inner packet past the outer IPv4 length", shortOuter, shortOuter, KEEL_DECAP_R_PASS_MALFORMED);
  Bytes inner6 = bare(false, [](PacketBuilder& b) { b.IPv6(kClient6, "fd00:100::1").Tcp(1, 80); });
  Bytes shortOuter6 = tunnel(false, true, "fc00:1::1", inner6);
  shortOuter6[14 + 4] = 0;
  shortOuter6[14 + 5] = 40;  // payload length: the inner IPv6 header only
  check("inner packet past the outer IPv6 length", shortOuter6, shortOuter6, KEEL_DECAP_R_PASS_MALFORMED);
  // Padding after the outer packet is no part of it, and harmless.
  Bytes padded = tunnel(false, false, "10.1.0.1", inner);
  padded.insert(padded.end(), 6, 0);
  Bytes innerPadded = inner;
  innerPadded.insert(innerPadded.end(), 6, 0);
  check("tunnel frame with Ethernet padding", padded, innerPadded, KEEL_DECAP_R_DECAP_V4);
}

// A tunnel sent to another host (this one routes it: a hypervisor, a node in
// front of pods) is not this host's to strip, even when its inner VIP is
// local here too: the kernel's own tunnels only take what is addressed to a
// local address.
TEST_F(DecapTest, TunnelsToAnotherHostPassUntouched) {
  Bytes in4 = bare(false, [](PacketBuilder& b) { b.IPv4(kClient4, "10.100.0.1").Tcp(1, 80).Payload("x"); });
  Bytes t = tunnel(false, false, "10.2.0.9", in4);
  check("4in4 to 10.2.0.9, routed on from here", t, t, KEEL_DECAP_R_PASS_OUTER_NOT_LOCAL);
  Bytes in6 = bare(false, [](PacketBuilder& b) { b.IPv6(kClient6, "fd00:100::1").Tcp(1, 80).Payload("y"); });
  Bytes t6 = tunnel(false, true, "fc00:2::9", in6);
  check("6in6 to fc00:2::9, routed on from here", t6, t6, KEEL_DECAP_R_PASS_OUTER_NOT_LOCAL);
  check("4in4 to this real", tunnel(false, false, "10.1.0.1", in4), in4, KEEL_DECAP_R_DECAP_V4);
  check("6in6 to this real", tunnel(false, true, "fc00:1::1", in6), in6, KEEL_DECAP_R_DECAP_V6);
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
    const bool outer6 = row.expected[12] == 0x86 || (row.expected[12] == 0x81 && row.expected[16] == 0x86) ||
                        (row.expected[12] == 0x88 && row.expected[16] == 0x86);
    // The client's frame, without what followed its IP packet if the
    // balancer left that out of the tunnel (keel_encap_frame_len).
    Bytes want = row.input;
    want.resize(row.expected.size() - (outer6 ? 40 : 20));
    Bytes nh = macBytes(kRouterMac), lb = macBytes(kLbMac);
    std::memcpy(want.data(), nh.data(), 6);
    std::memcpy(want.data() + 6, lb.data(), 6);
    check(row.description, row.expected, want, outer6 ? KEEL_DECAP_R_DECAP_V6 : KEEL_DECAP_R_DECAP_V4);
    n++;
  }
  EXPECT_GT(n, 20u);
}

}  // namespace
}  // namespace keel::test

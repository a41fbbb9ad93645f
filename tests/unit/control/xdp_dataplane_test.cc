// SPDX-License-Identifier: Apache-2.0
// Root only: loads the real balancer into a fresh netns veth through
// XdpDataplane, programs it with the Registry and reads the pinned maps back
// through plain bpf syscalls (what bpftool or an adopting keeld would see).
// Then runs one packet through BPF_PROG_TEST_RUN and checks readStats()
// counted it. And the restart cases: a second XdpDataplane adopts the pins
// (conntrack and backends intact), keeps an unchanged program (same id),
// swaps a changed one atomically over the same maps, and refuses changed
// limits naming the key; adoption works without CAP_SYS_ADMIN and from the
// pins of an older keeld (no prog_rodata). Skips when not root.
#include "dead_runs.h"
#include "common/clock.h"
#include "dataplane/xdp/map_layout.h"
#include "dataplane/xdp/nic_offloads.h"
#include "dataplane/xdp/xdp_dataplane.h"
#include "dataplane/xdp/xdp_features.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/capability.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "balancer.skel.h"
#include "control/registry.h"
#include "keel/encap.h"

namespace keel {
namespace {

int run(const std::string& cmd) { return std::system((cmd + " >/dev/null 2>&1").c_str()); }

// What a run of this test that was killed (meson's timeout: SIGTERM, then
// SIGKILL; TearDown never ran) left: its named namespace and its pins, each
// named by its pid. Removed when that process is gone.
void removeLeftoversOfDeadRuns() { test_support::removeLeftoversOfDeadRuns("keelxt", "/sys/fs/bpf", "keel-test-"); }

class XdpDataplaneTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (BPF, netns)";
    removeLeftoversOfDeadRuns();
    std::string pid = std::to_string(getpid());
    ns_ = "keelxt" + pid;
    ifA_ = "kxa" + pid;
    ifB_ = "kxb" + pid;
    pinDir_ = "/sys/fs/bpf/keel-test-" + pid + "/" + ifA_;
    ASSERT_EQ(run("ip netns add " + ns_), 0);
    nsCreated_ = true;
    ASSERT_EQ(run("ip -n " + ns_ + " link add " + ifA_ + " type veth peer name " + ifB_), 0);
    ASSERT_EQ(run("ip -n " + ns_ + " link set " + ifA_ + " up"), 0);
    ASSERT_EQ(run("ip -n " + ns_ + " link set " + ifB_ + " up"), 0);
    // setns applies to this thread only; gtest runs every test on it.
    origNs_ = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    int fd = open(("/var/run/netns/" + ns_).c_str(), O_RDONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(setns(fd, CLONE_NEWNET), 0);
    close(fd);
  }
  void TearDown() override {
    dp_.reset();
    if (origNs_ >= 0) {
      setns(origNs_, CLONE_NEWNET);
      close(origNs_);
    }
    if (nsCreated_) run("ip netns del " + ns_);
    if (!pinDir_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(std::filesystem::path(pinDir_).parent_path(), ec);
    }
  }

  int pinned(const char* map) { return bpf_obj_get((pinDir_ + "/" + map).c_str()); }

  // The balancer on ifA_, pinned under this test's pinDir_.
  XdpOptions optionsFor(XdpAttachMode mode, DataplaneLimits limits) const {
    XdpOptions o;
    o.interface = ifA_;
    o.mode = mode;
    o.limits = limits;
    o.pinDir = pinDir_;
    return o;
  }

  std::string ns_, ifA_, ifB_, pinDir_;
  bool nsCreated_ = false;
  int origNs_ = -1;
  std::unique_ptr<XdpDataplane> dp_;
};

// The NIC features keeld reads at attach, as ethtool sets them on a veth
// (run in this test's netns), and the warnings they give: GRO in generic
// mode; VLAN stripping only on a port with VLAN interfaces (this kernel has
// no 8021q module, so those come from a table written here).
TEST_F(XdpDataplaneTest, ReceiveOffloadsThatChangeWhatXdpSeesAreWarned) {
  std::optional<std::set<std::string>> on = activeNicFeatures(ifA_);
  ASSERT_TRUE(on.has_value());
  ASSERT_EQ(run("ip netns exec " + ns_ + " ethtool -K " + ifA_ + " gro on"), 0);
  on = activeNicFeatures(ifA_);
  ASSERT_TRUE(on.has_value());
  EXPECT_TRUE(on->count("rx-gro"));
  EXPECT_TRUE(on->count("rx-vlan-stag-hw-parse")) << "a veth's default";
  std::vector<OffloadWarning> w = xdpOffloadWarnings(ifA_, true, *on, {});
  ASSERT_EQ(w.size(), 1u);
  EXPECT_EQ(w[0].event, "xdp_generic_gro");
  EXPECT_NE(w[0].detail.find("rx-gro on " + ifA_), std::string::npos) << w[0].detail;
  EXPECT_TRUE(xdpOffloadWarnings(ifA_, false, *on, {}).empty()) << "native XDP runs before GRO";

  ASSERT_EQ(run("ip netns exec " + ns_ + " ethtool -K " + ifA_ + " gro off"), 0);
  on = activeNicFeatures(ifA_);
  ASSERT_TRUE(on.has_value());
  EXPECT_FALSE(on->count("rx-gro"));
  EXPECT_TRUE(xdpOffloadWarnings(ifA_, true, *on, {}).empty());

  const std::string table = "/tmp/keel-vlan-config-" + std::to_string(getpid());
  {
    std::ofstream f(table);
    f << "VLAN Dev name    | VLAN ID\nName-Type: VLAN_NAME_TYPE_RAW_PLUS_VID_NO_PAD\n"
      << ifA_ << ".100  | 100  | " << ifA_ << "\nother.7  | 7  | other\n";
  }
  const std::vector<std::string> vlans = vlanInterfacesOf(ifA_, table);
  std::remove(table.c_str());
  EXPECT_EQ(vlans, std::vector<std::string>{ifA_ + ".100"});
  EXPECT_TRUE(vlanInterfacesOf(ifA_, table).empty()) << "no table: no VLAN interfaces";
  w = xdpOffloadWarnings(ifA_, false, *on, vlans);
  ASSERT_EQ(w.size(), 1u);
  EXPECT_EQ(w[0].event, "xdp_vlan_stripping");
  EXPECT_NE(w[0].detail.find("rx-vlan-stag-hw-parse"), std::string::npos) << w[0].detail;
  EXPECT_TRUE(xdpOffloadWarnings(ifA_, false, *on, {}).empty()) << "an untagged port loses nothing";

  EXPECT_FALSE(activeNicFeatures("kxnone" + std::to_string(getpid())).has_value());
}

// The XDP features a driver declares (kernel 6.3 and later): a veth runs
// programs natively, and says so. And what keeld --check-config makes of
// them: native mode is refused where features are declared without the
// basic actions, or none by a driver that has no native XDP; none declared
// by another driver, or none known, tells nothing.
TEST_F(XdpDataplaneTest, TheKernelSaysWhetherADriverRunsNativeXdp) {
  const std::optional<uint64_t> veth = xdpFeatures(static_cast<int>(if_nametoindex(ifA_.c_str())));
  if (veth) {
    EXPECT_NE(*veth & kXdpActBasic, 0u) << *veth;
    EXPECT_FALSE(lacksNativeXdp(veth, "veth"));
  }
  EXPECT_EQ(driverName(ifA_), "veth");
  EXPECT_EQ(driverName("nosuch"), "");
  EXPECT_EQ(xdpFeatures(0), std::nullopt);  // no such interface
  EXPECT_FALSE(lacksNativeXdp(std::nullopt, "macvlan"));
  EXPECT_FALSE(lacksNativeXdp(0, "bonding"));
  EXPECT_FALSE(lacksNativeXdp(0, ""));
  EXPECT_FALSE(lacksNativeXdp(kXdpActBasic, "tun"));  // a tap device
  EXPECT_FALSE(lacksNativeXdp(0x23, "veth"));         // basic, redirect, multi-buffer
  EXPECT_FALSE(lacksNativeXdp(0x10, "netdevsim"));     // HW_OFFLOAD alone (6.3-6.12), yet takes native programs
  for (const char* none : {"macvlan", "ipvlan", "bridge", "802.1Q VLAN Support", "tun"})
    EXPECT_TRUE(lacksNativeXdp(0, none)) << none;
}

TEST_F(XdpDataplaneTest, ProgramsMapsPinsAndDetaches) {
  XdpOptions o = optionsFor(XdpAttachMode::kNative, {16, 64, 1024});
  Status s = XdpDataplane::create(o, &dp_);
  ASSERT_TRUE(s.isOk()) << s.message();
  int ifindex = static_cast<int>(if_nametoindex(ifA_.c_str()));
  uint32_t attachedId = 0;
  ASSERT_EQ(bpf_xdp_query_id(ifindex, XDP_FLAGS_DRV_MODE, &attachedId), 0);
  EXPECT_EQ(attachedId, dp_->programId());
  EXPECT_NE(attachedId, 0u);

  // A second balancer on the same interface must refuse, not replace.
  std::unique_ptr<XdpDataplane> second;
  XdpOptions o2 = o;
  o2.pinDir.clear();
  Status s2 = XdpDataplane::create(o2, &second);
  EXPECT_FALSE(s2.isOk());
  EXPECT_NE(s2.message().find("already attached"), std::string::npos) << s2.message();

  keel_node_config node{};
  inet_pton(AF_INET, "10.0.0.2", &node.tunnel_src_v4);
  node.next_hop_mac[0] = 0x02;
  node.local_mac[0] = 0x02;
  node.local_mac[5] = 0x09;
  node.udp_idle_timeout_s = 30;
  node.tcp_idle_timeout_s = 900;
  ASSERT_TRUE(dp_->setNode(node).isOk());

  Config cfg;
  ServiceConfig svc;
  svc.name = "web";
  svc.vip = *IpAddress::parse("192.0.2.10");
  svc.port = 80;
  svc.protocol = KEEL_PROTO_TCP;
  for (const char* a : {"10.0.1.11", "10.0.1.12"}) {
    RealConfig r;
    r.address = *IpAddress::parse(a);
    r.weight = 100;
    svc.reals.push_back(r);
  }
  cfg.services.push_back(svc);
  Registry reg(*dp_);
  s = reg.apply(cfg);
  ASSERT_TRUE(s.isOk()) << s.message();

  // Read back through the pins, as an outside tool would.
  int vips = pinned("vips"), services = pinned("services"), backends = pinned("backends"),
      rings = pinned("rings");
  ASSERT_GE(vips, 0);
  ASSERT_GE(services, 0);
  ASSERT_GE(backends, 0);
  ASSERT_GE(rings, 0);
  keel_vip_key vk{};
  inet_pton(AF_INET, "192.0.2.10", vk.addr);
  vk.family = KEEL_AF_INET;
  keel_vip_value vv{};
  EXPECT_EQ(bpf_map_lookup_elem(vips, &vk, &vv), 0);
  keel_service_key sk{};
  inet_pton(AF_INET, "192.0.2.10", sk.vip);
  sk.port = htons(80);
  sk.proto = KEEL_PROTO_TCP;
  sk.family = KEEL_AF_INET;
  keel_service_value sv{};
  ASSERT_EQ(bpf_map_lookup_elem(services, &sk, &sv), 0);
  EXPECT_EQ(sv.id, 0u);
  for (uint32_t id : {0u, 1u}) {
    keel_backend b{};
    ASSERT_EQ(bpf_map_lookup_elem(backends, &id, &b), 0);
    EXPECT_EQ(b.flags & KEEL_BE_F_VALID, KEEL_BE_F_VALID);
    EXPECT_EQ(b.gen, 1u);
    EXPECT_EQ(b.service_id, 0u);
  }
  uint32_t key = 0, innerId = 0;
  ASSERT_EQ(bpf_map_lookup_elem(rings, &key, &innerId), 0);
  int inner = bpf_map_get_fd_by_id(innerId);
  ASSERT_GE(inner, 0);
  uint32_t m = 0, slot = 0, idx = 1 + 12345;
  ASSERT_EQ(bpf_map_lookup_elem(inner, &key, &m), 0);
  EXPECT_EQ(m, 65537u);
  ASSERT_EQ(bpf_map_lookup_elem(inner, &idx, &slot), 0);
  EXPECT_LT(slot, 2u);
  // Filled through mmap: the ring is an mmapable array (bpf/lib/maps.h).
  bpf_map_info innerInfo{};
  uint32_t innerLen = sizeof innerInfo;
  ASSERT_EQ(bpf_obj_get_info_by_fd(inner, &innerInfo, &innerLen), 0);
  EXPECT_EQ(innerInfo.map_flags, uint32_t{BPF_F_INNER_MAP | BPF_F_MMAPABLE});
  close(inner);
  // Every word of a ring filled through mmap is where the program reads it
  // (an array's u32 slots are 8 bytes apart in the mapping): M, then each slot.
  {
    std::vector<uint32_t> want(65537);
    for (uint32_t i = 0; i < want.size(); ++i) want[i] = (i * 7 + 3) % 64;
    ASSERT_TRUE(dp_->publishRing(3, want).isOk());
    uint32_t three = 3, ringId = 0;
    ASSERT_EQ(bpf_map_lookup_elem(rings, &three, &ringId), 0);
    int ring = bpf_map_get_fd_by_id(ringId);
    ASSERT_GE(ring, 0);
    size_t wrong = 0;
    for (uint32_t i = 0; i <= want.size(); ++i) {
      uint32_t v = 0xffffffffu;
      ASSERT_EQ(bpf_map_lookup_elem(ring, &i, &v), 0);
      wrong += v != (i == 0 ? want.size() : want[i - 1]);
    }
    close(ring);
    EXPECT_EQ(wrong, 0u) << "words of the mmap-filled ring that differ";
    ASSERT_TRUE(dp_->publishRing(3, {}).isOk());
  }

  // Removing the service empties the ring (M = 0) and withdraws the VIP.
  s = reg.apply(Config{});
  ASSERT_TRUE(s.isOk()) << s.message();
  EXPECT_NE(bpf_map_lookup_elem(vips, &vk, &vv), 0);
  EXPECT_NE(bpf_map_lookup_elem(services, &sk, &sv), 0);
  ASSERT_EQ(bpf_map_lookup_elem(rings, &key, &innerId), 0);
  inner = bpf_map_get_fd_by_id(innerId);
  ASSERT_GE(inner, 0);
  ASSERT_EQ(bpf_map_lookup_elem(inner, &key, &m), 0);
  EXPECT_EQ(m, 0u);
  close(inner);
  keel_backend b{};
  ASSERT_EQ(bpf_map_lookup_elem(backends, &key, &b), 0);
  EXPECT_EQ(b.flags & KEEL_BE_F_VALID, 0);
  EXPECT_EQ(b.gen, 2u);
  close(vips);
  close(services);
  close(backends);
  close(rings);

  DataplaneStats st = dp_->readStats();
  EXPECT_EQ(st.services.size(), 16u);
  EXPECT_EQ(st.backends.size(), 64u);

  ASSERT_TRUE(dp_->shutdown(true).isOk());
  EXPECT_EQ(bpf_xdp_query_id(ifindex, XDP_FLAGS_DRV_MODE, &attachedId), 0);
  EXPECT_EQ(attachedId, 0u);
  EXPECT_FALSE(std::filesystem::exists(pinDir_));
  // and its parent, /sys/fs/bpf/keel for keeld, which nothing else uses here
  EXPECT_FALSE(std::filesystem::exists(std::filesystem::path(pinDir_).parent_path()));
}

// portMtu() reads the attached interface's MTU at the time of the call: a
// change the operator makes later is seen, and so is one after a rename.
TEST_F(XdpDataplaneTest, PortMtuIsTheInterfacesMtuNow) {
  XdpOptions o = optionsFor(XdpAttachMode::kNative, {4, 8, 128});
  Status s = XdpDataplane::create(o, &dp_);
  ASSERT_TRUE(s.isOk()) << s.message();
  EXPECT_EQ(dp_->portMtu(), std::optional<uint32_t>(1500));  // a new veth's
  ASSERT_EQ(run("ip -n " + ns_ + " link set " + ifA_ + " mtu 1300"), 0);
  EXPECT_EQ(dp_->portMtu(), std::optional<uint32_t>(1300));
  const std::string renamed = "kxr" + std::to_string(getpid());
  ASSERT_EQ(run("ip -n " + ns_ + " link set " + ifA_ + " down"), 0);
  ASSERT_EQ(run("ip -n " + ns_ + " link set " + ifA_ + " name " + renamed + " mtu 1320"), 0);
  EXPECT_EQ(dp_->portMtu(), std::optional<uint32_t>(1320));
}

// A jumbo MTU: the driver refuses a program of single-buffer frames (veth:
// ERANGE, "Peer MTU is too large to set XDP"); the error says what to do
// instead, and the failed fresh start leaves no pin directory behind.
TEST_F(XdpDataplaneTest, AJumboMtuRefusalSaysWhatToDo) {
  ASSERT_EQ(run("ip -n " + ns_ + " link set " + ifA_ + " mtu 9000"), 0);
  ASSERT_EQ(run("ip -n " + ns_ + " link set " + ifB_ + " mtu 9000"), 0);
  Status s = XdpDataplane::create(optionsFor(XdpAttachMode::kNative, {4, 8, 128}), &dp_);
  ASSERT_FALSE(s.isOk());
  EXPECT_NE(s.message().find("the interface's MTU is 9000; drivers refuse a native XDP program of single-buffer "
                             "frames"),
            std::string::npos)
      << s.message();
  EXPECT_NE(s.message().find("dataplane.kind: dpdk"), std::string::npos) << s.message();
  std::error_code ec;
  EXPECT_FALSE(std::filesystem::exists(pinDir_, ec)) << pinDir_ << " left behind";
  EXPECT_FALSE(std::filesystem::exists(std::filesystem::path(pinDir_).parent_path(), ec));
  // Only the veth's peer large: the same hint, with the interface's 1500.
  ASSERT_EQ(run("ip -n " + ns_ + " link set " + ifA_ + " mtu 1500"), 0);
  s = XdpDataplane::create(optionsFor(XdpAttachMode::kNative, {4, 8, 128}), &dp_);
  ASSERT_FALSE(s.isOk());
  EXPECT_NE(s.message().find("the interface's MTU is 1500; drivers refuse a native XDP program"), std::string::npos)
      << s.message();
}

// The words of service id's ring as the program reads them (M, then the
// slots), read from the pinned rings map; empty if it has none.
std::vector<uint32_t> ringWordsOf(int rings, uint32_t id) {
  uint32_t innerId = 0;
  if (bpf_map_lookup_elem(rings, &id, &innerId) != 0) return {};
  int inner = bpf_map_get_fd_by_id(innerId);
  if (inner < 0) return {};
  std::vector<uint32_t> out;
  uint32_t m = 0, key = 0;
  if (bpf_map_lookup_elem(inner, &key, &m) == 0) {
    out.push_back(m);
    for (key = 1; key <= m; ++key) {
      uint32_t v = UINT32_MAX;
      bpf_map_lookup_elem(inner, &key, &v);
      out.push_back(v);
    }
  }
  close(inner);
  return out;
}

// publishRings swaps several rings in one batch update of the rings map
// (RingBatcher's publish); one it cannot take stops it there, with the
// rings before it published and counted.
TEST_F(XdpDataplaneTest, PublishRingsSwapsEachRingAndStopsAtOneItCannotTake) {
  Status s = XdpDataplane::create(optionsFor(XdpAttachMode::kNative, {8, 16, 128}), &dp_);
  ASSERT_TRUE(s.isOk()) << s.message();
  const Dataplane::RingList rings{{1, {0, 1, 2, 1, 0}}, {4, {3, 3, 3}}, {7, {}}};
  size_t published = 99;
  s = dp_->publishRings(rings, &published);
  ASSERT_TRUE(s.isOk()) << s.message();
  EXPECT_EQ(published, 3u);
  int map = pinned("rings");
  ASSERT_GE(map, 0);
  EXPECT_EQ(ringWordsOf(map, 1), (std::vector<uint32_t>{5, 0, 1, 2, 1, 0}));
  EXPECT_EQ(ringWordsOf(map, 4), (std::vector<uint32_t>{3, 3, 3, 3}));
  EXPECT_EQ(ringWordsOf(map, 7), (std::vector<uint32_t>{0}));
  EXPECT_EQ(ringWordsOf(map, 2), (std::vector<uint32_t>{}));  // never published

  // The second names a backend past limits.max_reals: the first goes out.
  s = dp_->publishRings({{2, {5}}, {3, {16}}, {4, {6}}}, &published);
  EXPECT_FALSE(s.isOk());
  EXPECT_EQ(s.message(), "xdp: ring of service 3 names backend 16 >= limits.max_reals");
  EXPECT_EQ(published, 1u);
  EXPECT_EQ(ringWordsOf(map, 2), (std::vector<uint32_t>{1, 5}));
  EXPECT_EQ(ringWordsOf(map, 4), (std::vector<uint32_t>{3, 3, 3, 3}));  // untouched
  close(map);
}

// Counts written into every CPU's record of a few ids, as packets would
// leave them; resetCounters zeroes one id on every CPU and no other id.
TEST_F(XdpDataplaneTest, ResetCountersZeroesOneIdOnEveryCpu) {
  XdpOptions o = optionsFor(XdpAttachMode::kGeneric, {4, 8, 128});
  Status s = XdpDataplane::create(o, &dp_);
  ASSERT_TRUE(s.isOk()) << s.message();
  const int ncpu = libbpf_num_possible_cpus();
  ASSERT_GT(ncpu, 0);
  auto fill = [&](const char* map, uint32_t id) {
    std::vector<keel_counter> v(static_cast<size_t>(ncpu));
    for (int c = 0; c < ncpu; ++c) v[c] = {id * 100 + c + 1, (id * 100 + c + 1) * 60};
    int fd = pinned(map);
    ASSERT_GE(fd, 0) << map;
    ASSERT_EQ(bpf_map_update_elem(fd, &id, v.data(), BPF_ANY), 0) << map << " " << id;
    close(fd);
  };
  for (uint32_t id : {0u, 1u, 2u}) fill("stats_backends", id);
  for (uint32_t id : {0u, 1u}) fill("stats_services", id);
  const DataplaneStats before = dp_->readStats();
  ASSERT_GT(before.backends[1].packets, 0u);
  ASSERT_GT(before.services[0].packets, 0u);

  ASSERT_TRUE(dp_->resetCounters(CounterKind::kBackend, 1).isOk());
  ASSERT_TRUE(dp_->resetCounters(CounterKind::kService, 0).isOk());
  const DataplaneStats after = dp_->readStats();
  EXPECT_EQ(after.backends[1].packets, 0u);
  EXPECT_EQ(after.backends[1].bytes, 0u);
  EXPECT_EQ(after.services[0].packets, 0u);
  EXPECT_EQ(after.services[0].bytes, 0u);
  for (uint32_t id : {0u, 2u}) {
    EXPECT_EQ(after.backends[id].packets, before.backends[id].packets) << "backend " << id;
    EXPECT_EQ(after.backends[id].bytes, before.backends[id].bytes) << "backend " << id;
  }
  EXPECT_EQ(after.services[1].packets, before.services[1].packets);
  EXPECT_EQ(after.services[1].bytes, before.services[1].bytes);

  // A read bounded by the ids in use returns exactly those (clamped to the
  // limits), summed the same way.
  const DataplaneStats some = dp_->readStats(1, 3);
  ASSERT_EQ(some.services.size(), 1u);
  ASSERT_EQ(some.backends.size(), 3u);
  EXPECT_EQ(some.services[0].packets, after.services[0].packets);
  for (uint32_t id : {0u, 1u, 2u}) {
    EXPECT_EQ(some.backends[id].packets, after.backends[id].packets) << "backend " << id;
    EXPECT_EQ(some.backends[id].bytes, after.backends[id].bytes) << "backend " << id;
  }
  const DataplaneStats clamped = dp_->readStats(100, 100);
  EXPECT_EQ(clamped.services.size(), 4u);
  EXPECT_EQ(clamped.backends.size(), 8u);

  s = dp_->resetCounters(CounterKind::kService, 4);
  EXPECT_FALSE(s.isOk());
  EXPECT_NE(s.message().find("service id 4 >= limits.max_services 4"), std::string::npos)
      << s.message();
}

TEST_F(XdpDataplaneTest, StatsSumAcrossCpusAfterATestRun) {
  XdpOptions o = optionsFor(XdpAttachMode::kGeneric, {4, 8, 128});
  Status s = XdpDataplane::create(o, &dp_);
  ASSERT_TRUE(s.isOk()) << s.message();
  // An ARP frame is "not IP": it must be passed and counted as pass_not_ip.
  unsigned char arp[60] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 1, 0x08, 0x06};
  int progFd = -1;
  {
    uint32_t id = dp_->programId();
    progFd = bpf_prog_get_fd_by_id(id);
    ASSERT_GE(progFd, 0);
  }
  LIBBPF_OPTS(bpf_test_run_opts, topts, .data_in = arp, .data_size_in = sizeof arp, .repeat = 3);
  ASSERT_EQ(bpf_prog_test_run_opts(progFd, &topts), 0);
  EXPECT_EQ(topts.retval, static_cast<uint32_t>(XDP_PASS));
  close(progFd);
  DataplaneStats st = dp_->readStats();
  EXPECT_EQ(st.reasons[KEEL_R_PASS_NOT_IP].packets, 3u);
  EXPECT_EQ(st.reasons[KEEL_R_PASS_NOT_IP].bytes, 3u * sizeof arp);
  // ARP creates no flow; the connection-table count is known (6.6+) and 0.
  EXPECT_EQ(dp_->connTableEntries(), std::optional<uint64_t>(0));
  keel_flow_key key{};
  key.sport = htons(1234);
  key.family = KEEL_AF_INET;
  keel_ct_value ct{};
  int ctFd = bpf_obj_get((pinDir_ + "/conntrack").c_str());
  ASSERT_GE(ctFd, 0);
  ASSERT_EQ(bpf_map_update_elem(ctFd, &key, &ct, BPF_NOEXIST), 0);
  // The capacity (keel_conntrack_capacity) is the one table's size as the
  // kernel holds it: limits.conn_table_size.
  bpf_map_info info{};
  uint32_t len = sizeof info;
  ASSERT_EQ(bpf_obj_get_info_by_fd(ctFd, &info, &len), 0);
  close(ctFd);
  EXPECT_EQ(info.max_entries, 128u);
  EXPECT_EQ(dp_->connTableCapacity(), info.max_entries);
  EXPECT_EQ(dp_->connTableEntries(), std::optional<uint64_t>(1));
}


// findConn (keelctl lookup): the entry a packet of the flow would find, its
// age on the program's clock (CLOCK_MONOTONIC, bpf_ktime_get_ns) and whether
// it is idle past the node's timeout for its protocol; none for a missing
// key or a value never written.
TEST_F(XdpDataplaneTest, FindConnReadsAnEntryItsAgeAndExpiry) {
  Status s = XdpDataplane::create(optionsFor(XdpAttachMode::kGeneric, {4, 8, 128}), &dp_);
  ASSERT_TRUE(s.isOk()) << s.message();
  keel_node_config node{};
  node.tcp_idle_timeout_s = 10;
  node.udp_idle_timeout_s = 1;
  ASSERT_TRUE(dp_->setNode(node).isOk());
  keel_flow_key key{};
  key.sport = htons(1234);
  key.proto = KEEL_PROTO_TCP;
  key.family = KEEL_AF_INET;
  EXPECT_FALSE(dp_->findConn(key));
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  const uint64_t now = static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
  int ctFd = pinned("conntrack");
  ASSERT_GE(ctFd, 0);
  keel_ct_value ct{5, 2, now - 3'000'000'000ull};
  ASSERT_EQ(bpf_map_update_elem(ctFd, &key, &ct, BPF_ANY), 0);
  std::optional<ConnEntry> e = dp_->findConn(key);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->backendId, 5u);
  EXPECT_EQ(e->gen, 2u);
  EXPECT_GE(e->idleNs, 3'000'000'000u);
  EXPECT_LT(e->idleNs, 3'000'000'000u + 600'000'000'000u) << "the age is on the program's clock";
  EXPECT_FALSE(e->expired) << "3 s idle, 10 s timeout";
  key.proto = KEEL_PROTO_UDP;  // another flow: UDP's 1 s
  ASSERT_EQ(bpf_map_update_elem(ctFd, &key, &ct, BPF_ANY), 0);
  ASSERT_TRUE(dp_->findConn(key));
  EXPECT_TRUE(dp_->findConn(key)->expired) << "3 s idle, 1 s timeout";
  ct.last_seen_ns = 0;  // never written: a packet reads a miss
  ASSERT_EQ(bpf_map_update_elem(ctFd, &key, &ct, BPF_ANY), 0);
  EXPECT_FALSE(dp_->findConn(key));
  close(ctFd);
}

// scanConns (keelctl conns): every written entry of the shared map, each
// once and as findConn() reads it, across several of the kernel's batches;
// never-written values are skipped.
TEST_F(XdpDataplaneTest, ScanConnsVisitsEveryEntryOnce) {
  Status s = XdpDataplane::create(optionsFor(XdpAttachMode::kGeneric, {4, 8, 16384}), &dp_);
  ASSERT_TRUE(s.isOk()) << s.message();
  keel_node_config node{};
  node.tcp_idle_timeout_s = 10;
  node.udp_idle_timeout_s = 10;
  ASSERT_TRUE(dp_->setNode(node).isOk());
  int ctFd = pinned("conntrack");
  ASSERT_GE(ctFd, 0);
  const uint64_t now = clockNs(CLOCK_MONOTONIC);
  constexpr uint32_t kFlows = 10000;  // more than one batch (4,096)
  for (uint32_t i = 0; i < kFlows; ++i) {
    keel_flow_key key{};
    key.src[0] = htonl(0x0a000000 + i);
    key.sport = htons(static_cast<uint16_t>(i));
    key.proto = i % 2 ? KEEL_PROTO_UDP : KEEL_PROTO_TCP;
    key.family = KEEL_AF_INET;
    keel_ct_value ct{i % 7, i, i == 5 ? 0 : now - 20'000'000'000ull * (i % 2)};  // odd: idle 20 s
    ASSERT_EQ(bpf_map_update_elem(ctFd, &key, &ct, BPF_NOEXIST), 0) << i;
  }
  close(ctFd);
  std::vector<int> seen(kFlows, 0);
  uint32_t expired = 0, bad = 0;
  s = dp_->scanConns([&](const keel_flow_key& key, const ConnEntry& e, int worker) {
    const uint32_t i = ntohl(key.src[0]) - 0x0a000000;
    if (i >= kFlows || worker != -1 || e.backendId != i % 7 || e.gen != i) {
      ++bad;
      return;
    }
    ++seen[i];
    expired += e.expired;
  });
  ASSERT_TRUE(s.isOk()) << s.message();
  EXPECT_EQ(bad, 0u);
  for (uint32_t i = 0; i < kFlows; ++i) EXPECT_EQ(seen[i], i == 5 ? 0 : 1) << "flow " << i;
  EXPECT_EQ(expired, kFlows / 2 - 1) << "the odd flows are idle 20 s of a 10 s timeout (5 was never written)";
}

class XdpAdoptTest : public XdpDataplaneTest {
 protected:
  XdpOptions options() {
    return optionsFor(XdpAttachMode::kNative, {8, 32, 256});
  }
  uint32_t attachedId() {
    uint32_t id = 0;
    EXPECT_EQ(bpf_xdp_query_id(static_cast<int>(if_nametoindex(ifA_.c_str())), XDP_FLAGS_DRV_MODE, &id), 0);
    return id;
  }
  uint32_t mapId(const char* name) {
    int fd = pinned(name);
    bpf_map_info info{};
    uint32_t len = sizeof info;
    EXPECT_EQ(bpf_obj_get_info_by_fd(fd, &info, &len), 0);
    close(fd);
    return info.id;
  }
  // A first keeld: one backend and one conntrack entry, then it "dies"
  // leaving everything in place.
  void firstKeeld() {
    ASSERT_TRUE(XdpDataplane::create(options(), &dp_).isOk());
    keel_backend b{};
    b.addr[0] = htonl(0x0a000111);
    b.service_id = 3;
    b.gen = 7;
    b.family = KEEL_AF_INET;
    b.flags = KEEL_BE_F_VALID;
    ASSERT_TRUE(dp_->upsertBackend(5, b).isOk());
    int ct = pinned("conntrack");
    keel_ct_value v{5, 7, 1};
    ASSERT_EQ(bpf_map_update_elem(ct, &ctKey_, &v, BPF_ANY), 0);
    close(ct);
    firstProg_ = dp_->programId();
    dp_->leaveInPlace();
    dp_.reset();
    ASSERT_EQ(attachedId(), firstProg_);  // still attached with nobody owning it
  }
  void expectStateKept() {
    ASSERT_TRUE(dp_->adopted().has_value());
    const keel_backend& b = dp_->adopted()->backends.at(5);
    EXPECT_EQ(b.gen, 7u);
    EXPECT_EQ(b.service_id, 3u);
    int ct = pinned("conntrack");
    keel_ct_value v{};
    EXPECT_EQ(bpf_map_lookup_elem(ct, &ctKey_, &v), 0);
    EXPECT_EQ(v.backend_id, 5u);
    EXPECT_EQ(v.gen, 7u);
    close(ct);
  }
  // Map fd pinned at path in place of what is pinned there, as a keeld of
  // another build would have left it; fd is closed.
  void pinInstead(const std::string& path, int fd) {
    ASSERT_EQ(unlink(path.c_str()), 0);
    ASSERT_EQ(bpf_obj_pin(fd, path.c_str()), 0);
    close(fd);
  }
  // A restart over pins one of whose maps this build replaces: it succeeds,
  // swaps the program over the pinned maps (the old one used the old map),
  // and keeps the connection table (the same map) and the first keeld's state.
  void restartReplacingAMap() {
    const uint32_t conntrackId = mapId("conntrack");
    Status s = XdpDataplane::create(options(), &dp_);
    ASSERT_TRUE(s.isOk()) << s.message();
    EXPECT_FALSE(dp_->keptProgram());
    EXPECT_EQ(mapId("conntrack"), conntrackId);
    expectStateKept();
  }
  // The next restart, over this one's pins: it adopts them as they are and
  // keeps the program.
  void restartKeepingTheProgram() {
    dp_->leaveInPlace();
    dp_.reset();
    Status s = XdpDataplane::create(options(), &dp_);
    ASSERT_TRUE(s.isOk()) << s.message();
    EXPECT_TRUE(dp_->keptProgram());
  }
  // The layouts pinned as map_layouts, by map name (empty: none pinned).
  std::map<std::string, std::string> pinnedLayouts() {
    std::map<std::string, std::string> out;
    int fd = pinned(xdp::kLayoutsPin);
    if (fd < 0) return out;
    char key[xdp::kLayoutNameBytes], next[xdp::kLayoutNameBytes];
    std::vector<char> text(xdp::kLayoutTextBytes);
    const void* prev = nullptr;
    while (bpf_map_get_next_key(fd, prev, next) == 0) {
      EXPECT_EQ(bpf_map_lookup_elem(fd, next, text.data()), 0);
      out[next] = text.data();
      std::memcpy(key, next, sizeof key);
      prev = key;
    }
    close(fd);
    return out;
  }
  // Pins `layouts` as map_layouts in place of this build's, as a keeld of
  // another build would have recorded them.
  void pinLayoutsInstead(const std::map<std::string, std::string>& layouts) {
    int fd = bpf_map_create(BPF_MAP_TYPE_HASH, xdp::kLayoutsPin, xdp::kLayoutNameBytes, xdp::kLayoutTextBytes,
                            64, nullptr);
    ASSERT_GE(fd, 0) << std::strerror(errno);
    for (const auto& [name, layout] : layouts) {
      char key[xdp::kLayoutNameBytes] = {};
      std::memcpy(key, name.data(), name.size());
      std::vector<char> text(xdp::kLayoutTextBytes);
      std::memcpy(text.data(), layout.data(), layout.size());
      ASSERT_EQ(bpf_map_update_elem(fd, key, text.data(), BPF_ANY), 0);
    }
    pinInstead(pinDir_ + "/" + xdp::kLayoutsPin, fd);
  }
  // The first keeld's layouts with `from` replaced by `to` in map's.
  std::map<std::string, std::string> layoutsWith(const std::string& map, const std::string& from,
                                                 const std::string& to) {
    std::map<std::string, std::string> layouts = pinnedLayouts();
    std::string& text = layouts[map];
    const size_t at = text.find(from);
    EXPECT_NE(at, std::string::npos) << map << ": " << text;
    if (at != std::string::npos) text.replace(at, from.size(), to);
    return layouts;
  }
  // max_entries of the map pinned as `name` (0: none).
  uint32_t pinnedEntries(const char* name) {
    int fd = pinned(name);
    if (fd < 0) return 0;
    bpf_map_info info{};
    uint32_t len = sizeof info;
    const int rc = bpf_obj_get_info_by_fd(fd, &info, &len);
    close(fd);
    return rc == 0 ? info.max_entries : 0;
  }
  // "Another build" swapped in over the first keeld's program: the same
  // object with a different load-time option, loaded over the pinned maps
  // and attached in the first program's place (XDP_FLAGS_REPLACE). Pinned
  // at pinAs first when given (what the swapping keeld pins before its
  // swap). Returns the attached program's id, 0 on a failure (reported).
  uint32_t swapInAnotherBuild(const char* pinAs = nullptr) {
    keel_balancer* other = keel_balancer__open();
    EXPECT_NE(other, nullptr);
    if (!other) return 0;
    uint32_t id = 0;
    other->rodata->keel_check_mtu = 0;
    bool reused = true;
    bpf_map* m;
    bpf_object__for_each_map(m, other->obj) {
      if (bpf_map__is_internal(m)) continue;
      int fd = pinned(bpf_map__name(m));
      EXPECT_GE(fd, 0) << bpf_map__name(m);
      reused = reused && fd >= 0 && bpf_map__reuse_fd(m, fd) == 0;
      if (fd >= 0) close(fd);
    }
    EXPECT_TRUE(reused);
    const bool loaded = reused && keel_balancer__load(other) == 0;
    EXPECT_TRUE(loaded);
    const int progFd = loaded ? bpf_program__fd(other->progs.balancer) : -1;
    const bool pinnedAside = loaded && (!pinAs || bpf_obj_pin(progFd, (pinDir_ + "/" + pinAs).c_str()) == 0);
    EXPECT_TRUE(pinnedAside);
    if (pinnedAside) {
      int oldFd = bpf_prog_get_fd_by_id(firstProg_);
      LIBBPF_OPTS(bpf_xdp_attach_opts, opts, .old_prog_fd = oldFd);
      const int ifindex = static_cast<int>(if_nametoindex(ifA_.c_str()));
      const bool swapped = bpf_xdp_attach(ifindex, progFd, XDP_FLAGS_DRV_MODE | XDP_FLAGS_REPLACE, &opts) == 0;
      EXPECT_TRUE(swapped);
      close(oldFd);
      if (swapped) id = attachedId();
    }
    keel_balancer__destroy(other);
    return id;
  }
  keel_flow_key ctKey_{};
  uint32_t firstProg_ = 0;
};

TEST_F(XdpAdoptTest, UnchangedProgramIsKeptAndPinnedStateAdopted) {
  firstKeeld();
  const uint32_t conntrackId = mapId("conntrack");
  Status s = XdpDataplane::create(options(), &dp_);
  ASSERT_TRUE(s.isOk()) << s.message();
  EXPECT_TRUE(dp_->keptProgram());
  EXPECT_EQ(dp_->programId(), firstProg_);
  EXPECT_EQ(attachedId(), firstProg_);
  EXPECT_EQ(mapId("conntrack"), conntrackId);
  expectStateKept();
  // The explicit stop still removes everything.
  ASSERT_TRUE(dp_->shutdown(true).isOk());
  EXPECT_EQ(attachedId(), 0u);
  EXPECT_FALSE(std::filesystem::exists(pinDir_));
}

// A second keeld on an interface a running one owns (a manual start beside
// keeld.service) must not adopt and reprogram the running one's maps: it is
// refused before it touches anything, naming the holder; once the running
// one is gone, the next adopts as usual.
TEST_F(XdpAdoptTest, ASecondKeeldIsRefusedWhileTheFirstHoldsThePins) {
  firstKeeld();
  ASSERT_TRUE(XdpDataplane::create(options(), &dp_).isOk());
  const uint32_t running = dp_->programId();
  std::unique_ptr<XdpDataplane> second;
  Status s = XdpDataplane::create(options(), &second);  // the same options: adoption would succeed
  ASSERT_FALSE(s.isOk());
  EXPECT_EQ(second, nullptr);
  EXPECT_NE(s.message().find(pinDir_ + " is locked by another keeld (pid " + std::to_string(getpid()) + ")"),
            std::string::npos)
      << s.message();
  EXPECT_EQ(attachedId(), running);
  expectStateKept();
  dp_->leaveInPlace();
  dp_.reset();
  s = XdpDataplane::create(options(), &second);
  ASSERT_TRUE(s.isOk()) << s.message();
  EXPECT_TRUE(second->keptProgram());
  dp_ = std::move(second);
}

TEST_F(XdpAdoptTest, ChangedProgramIsSwappedOverTheSameMaps) {
  firstKeeld();
  const uint32_t conntrackId = mapId("conntrack");
  // Another build swapped in and pinned as the running program.
  const uint32_t otherProg = swapInAnotherBuild();
  ASSERT_NE(otherProg, 0u);
  int otherFd = bpf_prog_get_fd_by_id(otherProg);
  unlink((pinDir_ + "/prog").c_str());
  ASSERT_EQ(bpf_obj_pin(otherFd, (pinDir_ + "/prog").c_str()), 0);
  close(otherFd);

  Status s = XdpDataplane::create(options(), &dp_);
  ASSERT_TRUE(s.isOk()) << s.message();
  EXPECT_FALSE(dp_->keptProgram());
  EXPECT_NE(dp_->programId(), otherProg);
  EXPECT_EQ(attachedId(), dp_->programId());
  EXPECT_EQ(mapId("conntrack"), conntrackId);
  expectStateKept();
  // The new program is pinned as the running one, for the next restart.
  int fd = pinned("prog");
  bpf_prog_info info{};
  uint32_t len = sizeof info;
  ASSERT_EQ(bpf_obj_get_info_by_fd(fd, &info, &len), 0);
  close(fd);
  EXPECT_EQ(info.id, dp_->programId());
}

// A keeld that swapped its program in and was killed before it pinned it
// as prog (its pinReplacing): prog still names the program it replaced,
// prog_new the attached one. The next keeld adopts (finishing the rename)
// instead of refusing an attached program that is "not the one pinned".
TEST_F(XdpAdoptTest, AKeeldKilledBetweenItsSwapAndItsPinIsAdopted) {
  firstKeeld();
  const uint32_t conntrackId = mapId("conntrack");
  // What attachOrReplace does before the swap (pin prog_new), then the
  // swap, then nothing.
  const uint32_t otherProg = swapInAnotherBuild("prog_new");
  ASSERT_NE(otherProg, 0u);
  ASSERT_NE(otherProg, firstProg_);
  // keeld --check-config takes it for keel's too.
  EXPECT_EQ(XdpDataplane::attachConflicts(options()), std::vector<std::string>{});

  Status s = XdpDataplane::create(options(), &dp_);
  ASSERT_TRUE(s.isOk()) << s.message();
  EXPECT_EQ(attachedId(), dp_->programId());
  EXPECT_EQ(mapId("conntrack"), conntrackId);
  expectStateKept();
  EXPECT_FALSE(std::filesystem::exists(pinDir_ + "/prog_new"));
  int fd = pinned("prog");
  bpf_prog_info info{};
  uint32_t len = sizeof info;
  ASSERT_EQ(bpf_obj_get_info_by_fd(fd, &info, &len), 0);
  close(fd);
  EXPECT_EQ(info.id, dp_->programId());
  // And the next restart keeps it.
  restartKeepingTheProgram();
}

// A keeld built before rings were mmapable pinned a rings map whose inner
// template is a plain array, and the kernel takes only inner maps with the
// template's flags. The restart adopts it, and its rings are still
// published (as plain arrays, filled by batch update) with every slot right.
TEST_F(XdpAdoptTest, RingsPinnedByABuildWithPlainInnerArraysStillTakeRings) {
  firstKeeld();
  LIBBPF_OPTS(bpf_map_create_opts, innerOpts, .map_flags = BPF_F_INNER_MAP);
  int tmpl = bpf_map_create(BPF_MAP_TYPE_ARRAY, "old_ring", 4, 4, 2, &innerOpts);
  ASSERT_GE(tmpl, 0);
  LIBBPF_OPTS(bpf_map_create_opts, outerOpts, .inner_map_fd = static_cast<uint32_t>(tmpl));
  int old = bpf_map_create(BPF_MAP_TYPE_ARRAY_OF_MAPS, "rings", 4, 4, options().limits.maxServices, &outerOpts);
  close(tmpl);
  ASSERT_GE(old, 0);
  const std::string path = pinDir_ + "/rings";
  pinInstead(path, old);
  const uint32_t oldRings = mapId("rings");

  Status s = XdpDataplane::create(options(), &dp_);
  ASSERT_TRUE(s.isOk()) << s.message();
  EXPECT_EQ(mapId("rings"), oldRings);
  std::vector<uint32_t> slots(13);
  for (uint32_t i = 0; i < slots.size(); ++i) slots[i] = i % 3;
  // The fallback (from a batch publish, which the old map refuses whole),
  // then plain from the start, one ring and in a batch.
  for (int round = 0; round < 3; ++round) {
    size_t published = 0;
    s = round == 1 ? dp_->publishRing(2, slots) : dp_->publishRings({{2, slots}}, &published);
    ASSERT_TRUE(s.isOk()) << s.message();
    int rings = pinned("rings");
    uint32_t key = 2, innerId = 0;
    ASSERT_EQ(bpf_map_lookup_elem(rings, &key, &innerId), 0);
    close(rings);
    int inner = bpf_map_get_fd_by_id(innerId);
    ASSERT_GE(inner, 0);
    bpf_map_info info{};
    uint32_t len = sizeof info;
    ASSERT_EQ(bpf_obj_get_info_by_fd(inner, &info, &len), 0);
    EXPECT_EQ(info.map_flags, uint32_t{BPF_F_INNER_MAP});
    for (uint32_t i = 0; i <= slots.size(); ++i) {
      uint32_t v = 99;
      ASSERT_EQ(bpf_map_lookup_elem(inner, &i, &v), 0);
      EXPECT_EQ(v, i == 0 ? slots.size() : slots[i - 1]) << "word " << i;
    }
    close(inner);
    slots[5] = 2;
  }
}

// A keeld built before a reason was appended (tx_icmp_too_big: 16 -> 17)
// pinned a smaller stats_reasons. The reasons are the build's, not a limit:
// the restart adopts everything else, carries the counts over to this
// build's map and pins it in the old one's place.
TEST_F(XdpAdoptTest, ReasonsPinnedByABuildWithFewerReasonsAreCarriedOver) {
  firstKeeld();
  const std::string path = pinDir_ + "/stats_reasons";
  const int ncpu = libbpf_num_possible_cpus();
  ASSERT_GT(ncpu, 0);
  int old = bpf_map_create(BPF_MAP_TYPE_PERCPU_ARRAY, "stats_reasons", 4, sizeof(keel_counter), KEEL_R_MAX - 1,
                           nullptr);
  ASSERT_GE(old, 0);
  std::vector<keel_counter> v(static_cast<size_t>(ncpu));
  v[0] = {5, 500};
  v[static_cast<size_t>(ncpu - 1)].packets += 2;
  uint32_t key = KEEL_R_TX_IPIP;
  ASSERT_EQ(bpf_map_update_elem(old, &key, v.data(), BPF_ANY), 0);
  pinInstead(path, old);
  ASSERT_NO_FATAL_FAILURE(restartReplacingAMap());
  EXPECT_EQ(pinnedEntries("stats_reasons"), static_cast<uint32_t>(KEEL_R_MAX));
  DataplaneStats st = dp_->readStats(0, 0);
  EXPECT_EQ(st.reasons[KEEL_R_TX_IPIP].packets, 7u);
  EXPECT_EQ(st.reasons[KEEL_R_TX_IPIP].bytes, 500u);
  ASSERT_NO_FATAL_FAILURE(restartKeepingTheProgram());
  EXPECT_EQ(dp_->readStats(0, 0).reasons[KEEL_R_TX_IPIP].packets, 7u);
}

// A pinned map of this build's type and sizes made with other flags (here
// a connection table with per-CPU LRU lists) is another map: refused by
// name, and the running plane is left as it is.
TEST_F(XdpAdoptTest, APinnedMapWithOtherFlagsIsRefused) {
  firstKeeld();
  const std::string path = pinDir_ + "/conntrack";
  LIBBPF_OPTS(bpf_map_create_opts, opts, .map_flags = BPF_F_NO_COMMON_LRU);
  int other = bpf_map_create(BPF_MAP_TYPE_LRU_HASH, "conntrack", sizeof(keel_flow_key), sizeof(keel_ct_value),
                             options().limits.connTableSize, &opts);
  ASSERT_GE(other, 0) << std::strerror(errno);
  pinInstead(path, other);
  const uint32_t prog = attachedId();
  Status s = XdpDataplane::create(options(), &dp_);
  ASSERT_FALSE(s.isOk());
  EXPECT_NE(s.message().find("xdp: adopt " + path + ": pinned by a keeld with another map layout (type 9, key " +
                             std::to_string(sizeof(keel_flow_key)) + " B, value 16 B, flags 2; this build's: type "
                             "9, key " + std::to_string(sizeof(keel_flow_key)) + " B, value 16 B, flags 0)"),
            std::string::npos)
      << s.message();
  EXPECT_EQ(attachedId(), prog) << "a refused restart changes nothing";
}

// Every pinned map's layout is recorded beside the pins for the next keeld
// (map_layouts, frozen), from this build's BTF.
TEST_F(XdpAdoptTest, EachMapsLayoutIsPinnedForTheNextKeeld) {
  firstKeeld();
  const std::map<std::string, std::string> layouts = pinnedLayouts();
  ASSERT_EQ(layouts.count("conntrack"), 1u);
  EXPECT_EQ(layouts.at("conntrack").rfind("id " + std::to_string(mapId("conntrack")) + "\nk src 0 128 u32[4]\n", 0),
            0u)
      << layouts.at("conntrack");
  EXPECT_NE(layouts.at("conntrack").find("\nv backend_id 0 32 u32\nv gen 32 32 u32\n"), std::string::npos)
      << layouts.at("conntrack");
  for (const char* map : {"vips", "services", "backends", "node_config", "stats_reasons", "icmp_limit"})
    EXPECT_EQ(layouts.count(map), 1u) << map;
  int fd = pinned(xdp::kLayoutsPin);
  ASSERT_GE(fd, 0);
  char key[xdp::kLayoutNameBytes] = "conntrack";
  std::vector<char> text(xdp::kLayoutTextBytes);
  EXPECT_NE(bpf_map_update_elem(fd, key, text.data(), BPF_ANY), 0) << "frozen: nobody rewrites the record";
  close(fd);
  // An unchanged restart keeps the record as it is (nothing is re-pinned).
  const uint32_t id = mapId(xdp::kLayoutsPin);
  Status s = XdpDataplane::create(options(), &dp_);
  ASSERT_TRUE(s.isOk()) << s.message();
  EXPECT_TRUE(dp_->keptProgram());
  EXPECT_EQ(mapId(xdp::kLayoutsPin), id);
}

// Pins of the same sizes whose members moved (here the connection table's
// backend id and generation swapped, as another build might have laid them
// out) would be misread: refused naming map and member, nothing changed.
TEST_F(XdpAdoptTest, AMapWhoseMembersMovedIsRefused) {
  firstKeeld();
  const uint32_t prog = attachedId(), conntrackId = mapId("conntrack");
  const std::map<std::string, std::string> other =
      layoutsWith("conntrack", "v backend_id 0 32 u32\nv gen 32 32 u32", "v gen 0 32 u32\nv backend_id 32 32 u32");
  ASSERT_NO_FATAL_FAILURE(pinLayoutsInstead(other));
  Status s = XdpDataplane::create(options(), &dp_);
  ASSERT_FALSE(s.isOk());
  EXPECT_NE(s.message().find("xdp: adopt " + pinDir_ + "/conntrack: pinned by a keeld with another layout of "
                             "conntrack: value member gen (bits 0-31, u32) pinned; this build has backend_id "
                             "(bits 0-31, u32)"),
            std::string::npos)
      << s.message();
  EXPECT_EQ(attachedId(), prog) << "a refused restart changes nothing";
  EXPECT_EQ(mapId("conntrack"), conntrackId);
  EXPECT_EQ(pinnedLayouts(), other);
}

// A build that turned padding into a field finds the pins' padding there:
// the bytes mean nothing to the old build, so the restart adopts, and records
// this build's layout for the next one.
TEST_F(XdpAdoptTest, PaddingTurnedIntoAFieldIsAdopted) {
  firstKeeld();
  const std::map<std::string, std::string> ours = pinnedLayouts();
  ASSERT_NO_FATAL_FAILURE(pinLayoutsInstead(layoutsWith("conntrack", "v gen 32 32 u32", "v pad 32 32 u8[4]")));
  Status s = XdpDataplane::create(options(), &dp_);
  ASSERT_TRUE(s.isOk()) << s.message();
  expectStateKept();
  EXPECT_EQ(pinnedLayouts(), ours);
}

// Pins of a keeld from before map_layouts: adopted on type, sizes and
// flags as before, and the record is pinned for the next restart.
TEST_F(XdpAdoptTest, PinsWithoutLayoutsAreAdoptedAndGetThem) {
  firstKeeld();
  const std::map<std::string, std::string> ours = pinnedLayouts();
  ASSERT_EQ(unlink((pinDir_ + "/" + xdp::kLayoutsPin).c_str()), 0);
  Status s = XdpDataplane::create(options(), &dp_);
  ASSERT_TRUE(s.isOk()) << s.message();
  EXPECT_TRUE(dp_->keptProgram());
  expectStateKept();
  EXPECT_EQ(pinnedLayouts(), ours);
}

// A map that may start empty (an ICMP limit's times) pinned with another
// layout is replaced, as one of another shape is, not refused.
TEST_F(XdpAdoptTest, AnotherLayoutOfAMapThatMayStartEmptyReplacesIt) {
  firstKeeld();
  const uint32_t old = mapId("icmp_limit");
  ASSERT_NO_FATAL_FAILURE(pinLayoutsInstead(layoutsWith("icmp_limit", "v - 0 64 u64", "v - 0 64 s64")));
  ASSERT_NO_FATAL_FAILURE(restartReplacingAMap());
  EXPECT_NE(mapId("icmp_limit"), old);
}

// A keeld killed while it replaced a start-empty map leaves a record without
// that map (create() pins it so until the new map has the pin): the next
// keeld cannot tell which build's map is pinned, so it replaces it too.
TEST_F(XdpAdoptTest, ARecordThatLeavesAStartEmptyMapOutReplacesIt) {
  firstKeeld();
  const uint32_t old = mapId("ct_insert_limit");
  std::map<std::string, std::string> layouts = pinnedLayouts();
  ASSERT_EQ(layouts.erase("ct_insert_limit"), 1u);
  ASSERT_NO_FATAL_FAILURE(pinLayoutsInstead(layouts));
  ASSERT_NO_FATAL_FAILURE(restartReplacingAMap());
  EXPECT_NE(mapId("ct_insert_limit"), old);
  EXPECT_EQ(pinnedLayouts().count("ct_insert_limit"), 1u);
}

// A record of another form (here another #format: a newer keeld's) cannot
// say what the pinned maps hold: refused, nothing changed.
TEST_F(XdpAdoptTest, ARecordOfAnotherFormIsRefused) {
  firstKeeld();
  const uint32_t prog = attachedId();
  std::map<std::string, std::string> other = pinnedLayouts();
  other[xdp::kLayoutFormatKey] = "2";
  ASSERT_NO_FATAL_FAILURE(pinLayoutsInstead(other));
  Status s = XdpDataplane::create(options(), &dp_);
  ASSERT_FALSE(s.isOk());
  EXPECT_NE(s.message().find("xdp: adopt " + pinDir_ + "/map_layouts: a record of map layouts of another form "
                             "(#format 2, this build's 1)"),
            std::string::npos)
      << s.message();
  EXPECT_EQ(attachedId(), prog);
  EXPECT_EQ(pinnedLayouts(), other);
}

// An entry describes the map of its id only. A map pinned since in its place
// (here a fresh connection table of the same shape, as a keeld from before
// records would pin when it started over on these pins) is of unknown
// layout: compared by type and sizes, not by the stale entry.
TEST_F(XdpAdoptTest, AnEntryForAnotherMapIdDescribesNothing) {
  firstKeeld();
  ASSERT_NO_FATAL_FAILURE(pinLayoutsInstead(
      layoutsWith("conntrack", "v backend_id 0 32 u32\nv gen 32 32 u32", "v gen 0 32 u32\nv backend_id 32 32 u32")));
  int fresh = bpf_map_create(BPF_MAP_TYPE_LRU_HASH, "conntrack", sizeof(keel_flow_key), sizeof(keel_ct_value),
                             options().limits.connTableSize, nullptr);
  ASSERT_GE(fresh, 0) << std::strerror(errno);
  pinInstead(pinDir_ + "/conntrack", fresh);
  const uint32_t freshId = mapId("conntrack");
  Status s = XdpDataplane::create(options(), &dp_);
  ASSERT_TRUE(s.isOk()) << s.message();
  EXPECT_EQ(mapId("conntrack"), freshId);
  // And the record now describes it.
  EXPECT_EQ(pinnedLayouts().at("conntrack").rfind("id " + std::to_string(freshId) + "\n", 0), 0u);
}

// stats_conntrack is sized by enum keel_ct_stat, which is only appended: one
// pinned with another number of events (here a newer build's, a downgrade)
// is replaced by this build's, the counts of the events both know carried
// over, as stats_reasons' are; readStats sums them over the CPUs.
TEST_F(XdpAdoptTest, ConntrackCountsPinnedWithAnotherNumberOfEventsAreCarriedOver) {
  firstKeeld();
  const std::string path = pinDir_ + "/stats_conntrack";
  const int ncpu = libbpf_num_possible_cpus();
  ASSERT_GT(ncpu, 0);
  int old = bpf_map_create(BPF_MAP_TYPE_PERCPU_ARRAY, "stats_conntrack", 4, sizeof(uint64_t), KEEL_CT_S_MAX + 1,
                           nullptr);
  ASSERT_GE(old, 0);
  std::vector<uint64_t> v(static_cast<size_t>(ncpu));
  v[0] = 5;
  v[static_cast<size_t>(ncpu - 1)] += 2;
  uint32_t key = KEEL_CT_S_MIDFLOW_MISS;
  ASSERT_EQ(bpf_map_update_elem(old, &key, v.data(), BPF_ANY), 0);
  key = KEEL_CT_S_MAX;  // an event this build does not know
  std::fill(v.begin(), v.end(), 100);
  ASSERT_EQ(bpf_map_update_elem(old, &key, v.data(), BPF_ANY), 0);
  pinInstead(path, old);
  ASSERT_NO_FATAL_FAILURE(restartReplacingAMap());
  EXPECT_EQ(pinnedEntries("stats_conntrack"), static_cast<uint32_t>(KEEL_CT_S_MAX));
  EXPECT_EQ(dp_->readStats(0, 0).connMidflowMisses, 7u);
  ASSERT_NO_FATAL_FAILURE(restartKeepingTheProgram());
  EXPECT_EQ(dp_->readStats(0, 0).connMidflowMisses, 7u);
}

// A keeld built before the ICMP rate limits pinned no icmp_limit (main
// before it) or no icmp_client_limit (main before the per-client limit),
// one built before node.conntrack_insert_rate no ct_insert_limit, one built
// before the mid-flow miss count no stats_conntrack.
// Those maps may start empty: the restart adopts everything else, swaps the
// program (the old one used no such map) and pins the new maps for the next
// restart.
TEST_F(XdpAdoptTest, PinsWithoutTheIcmpLimitsAreAdoptedAndTheMapsPinned) {
  for (const char* missing : {"icmp_limit", "icmp_client_limit", "ct_insert_limit", "stats_conntrack"}) {
    SCOPED_TRACE(missing);
    firstKeeld();
    const std::string path = pinDir_ + "/" + missing;
    ASSERT_EQ(unlink(path.c_str()), 0);
    ASSERT_NO_FATAL_FAILURE(restartReplacingAMap());
    ASSERT_TRUE(std::filesystem::exists(path));
    const uint32_t limitId = mapId(missing);
    // The next restart adopts it with the rest, and keeps the program.
    dp_->leaveInPlace();
    dp_.reset();
    Status s = XdpDataplane::create(options(), &dp_);
    ASSERT_TRUE(s.isOk()) << s.message();
    EXPECT_TRUE(dp_->keptProgram());
    EXPECT_EQ(mapId(missing), limitId);
    ASSERT_TRUE(dp_->shutdown(true).isOk());
    dp_.reset();
  }
}

// A rate limit's times pinned in another shape (another build's number of
// client slots): state that may start empty, so replaced by this build's
// rather than refused as a changed limit.
TEST_F(XdpAdoptTest, AnIcmpClientLimitOfAnotherShapeIsReplaced) {
  firstKeeld();
  const std::string path = pinDir_ + "/icmp_client_limit";
  int old = bpf_map_create(BPF_MAP_TYPE_PERCPU_ARRAY, "icmp_client_limit", 4, 8, 1024, nullptr);
  ASSERT_GE(old, 0);
  pinInstead(path, old);
  Status s = XdpDataplane::create(options(), &dp_);
  ASSERT_TRUE(s.isOk()) << s.message();
  expectStateKept();
  int fd = pinned("icmp_client_limit");
  ASSERT_GE(fd, 0);
  bpf_map_info info{};
  uint32_t len = sizeof info;
  ASSERT_EQ(bpf_obj_get_info_by_fd(fd, &info, &len), 0);
  close(fd);
  EXPECT_EQ(info.max_entries, KEEL_ICMP_CLIENT_SLOTS);
}

// Keelds of earlier builds pinned shorter node_configs: 56 bytes before
// icmp_too_big_client_rate, 60 before tunnel_mtu, 64 before
// conntrack_insert_rate. Their fields are a prefix of this build's
// (maps_abi.h): the restart adopts everything else, fills its own
// node_config from the old one before its program runs (the fields the old
// layout lacks 0: off, as that build did), pins it in the old one's place,
// and the next restart adopts it as it is.
TEST_F(XdpAdoptTest, NodeConfigPinnedByABuildWithAShorterLayoutIsCarriedOver) {
  static_assert(offsetof(keel_node_config, icmp_too_big_client_rate) == 56);
  static_assert(offsetof(keel_node_config, tunnel_mtu) == 60);
  static_assert(offsetof(keel_node_config, conntrack_insert_rate) == 64);
  for (uint32_t oldSize : {56u, 60u, 64u}) {
    SCOPED_TRACE(oldSize);
    firstKeeld();
    keel_node_config node{};
    inet_pton(AF_INET, "10.0.0.2", &node.tunnel_src_v4);
    node.next_hop_mac[5] = 0xfe;
    node.local_mac[5] = 0x09;
    node.tcp_idle_timeout_s = 900;
    node.icmp_too_big_rate = 1000;
    node.icmp_too_big_client_rate = 77;  // beyond the 56-byte layout
    node.tunnel_mtu = 1400;              // beyond 60
    node.conntrack_insert_rate = 5000;   // beyond 64
    const std::string path = pinDir_ + "/node_config";
    int old = bpf_map_create(BPF_MAP_TYPE_ARRAY, "node_config", 4, oldSize, 1, nullptr);
    ASSERT_GE(old, 0);
    uint32_t zero = 0;
    ASSERT_EQ(bpf_map_update_elem(old, &zero, &node, BPF_ANY), 0);  // its first oldSize bytes
    pinInstead(path, old);
    ASSERT_NO_FATAL_FAILURE(restartReplacingAMap());
    int fd = pinned("node_config");
    ASSERT_GE(fd, 0);
    keel_node_config now{};
    bpf_map_info info{};
    uint32_t len = sizeof info;
    ASSERT_EQ(bpf_obj_get_info_by_fd(fd, &info, &len), 0);
    EXPECT_EQ(info.value_size, sizeof(keel_node_config));
    ASSERT_EQ(bpf_map_lookup_elem(fd, &zero, &now), 0);
    close(fd);
    keel_node_config want{};
    std::memcpy(&want, &node, oldSize);  // what the old layout held, the rest 0
    EXPECT_EQ(std::memcmp(&now, &want, sizeof now), 0);
    const uint32_t nodeId = mapId("node_config");
    dp_->leaveInPlace();
    dp_.reset();
    Status s = XdpDataplane::create(options(), &dp_);
    ASSERT_TRUE(s.isOk()) << s.message();
    EXPECT_TRUE(dp_->keptProgram());
    EXPECT_EQ(mapId("node_config"), nodeId);
    ASSERT_TRUE(dp_->shutdown(true).isOk());
    dp_.reset();
  }
}

// adoptionConflicts (keeld --check-config) says, without loading anything,
// what create() then refuses, in its words.
TEST_F(XdpAdoptTest, ChangedLimitsAreRefusedNamingTheKeyAndChangeNothing) {
  XdpOptions o = options();
  o.limits.maxBackends = 64;
  EXPECT_TRUE(XdpDataplane::adoptionConflicts(o).empty());  // nothing pinned yet
  firstKeeld();
  EXPECT_TRUE(XdpDataplane::adoptionConflicts(options()).empty());
  std::vector<std::string> conflicts = XdpDataplane::adoptionConflicts(o);
  Status s = XdpDataplane::create(o, &dp_);
  ASSERT_FALSE(s.isOk());
  EXPECT_NE(s.message().find("limits.max_reals: 64"), std::string::npos) << s.message();
  EXPECT_EQ(conflicts, std::vector<std::string>{s.message()});
  EXPECT_EQ(attachedId(), firstProg_);
  o = options();
  o.mode = XdpAttachMode::kGeneric;
  conflicts = XdpDataplane::adoptionConflicts(o);
  s = XdpDataplane::create(o, &dp_);
  ASSERT_FALSE(s.isOk());
  EXPECT_NE(s.message().find("dataplane.xdp_mode"), std::string::npos) << s.message();
  EXPECT_EQ(conflicts, std::vector<std::string>{s.message()});
  EXPECT_EQ(attachedId(), firstProg_);
  // Two at once: each said, the hint to start over once, after the last.
  o.limits.connTableSize = 512;
  conflicts = XdpDataplane::adoptionConflicts(o);
  ASSERT_EQ(conflicts.size(), 2u);
  EXPECT_EQ(conflicts[0].rfind("limits.conn_table_size: 512, but the pinned map " + pinDir_ +
                                   "/conntrack was made with 256 entries", 0),
            0u)
      << conflicts[0];
  EXPECT_EQ(conflicts[0].find("to start over"), std::string::npos) << conflicts[0];
  EXPECT_EQ(conflicts[1].rfind("dataplane.xdp_mode: generic", 0), 0u) << conflicts[1];
  EXPECT_NE(conflicts[1].find("to start over"), std::string::npos) << conflicts[1];
  // Then the unchanged options still adopt.
  s = XdpDataplane::create(options(), &dp_);
  ASSERT_TRUE(s.isOk()) << s.message();
  expectStateKept();
}

// A plane left in generic mode and a restart in native mode: refused (a
// mode change cannot keep the state), and the hint to start over detaches
// the program where it runs: `xdp off` would leave a generic program on a
// veth (as on any driver with a native mode), and the next start would
// find it in the way. Followed as written, the next start attaches.
TEST_F(XdpAdoptTest, TheHintToStartOverDetachesAGenericProgram) {
  ASSERT_TRUE(XdpDataplane::create(optionsFor(XdpAttachMode::kGeneric, {8, 32, 256}), &dp_).isOk());
  dp_->leaveInPlace();
  dp_.reset();
  const std::vector<std::string> conflicts = XdpDataplane::adoptionConflicts(options());
  ASSERT_EQ(conflicts.size(), 1u);
  const std::string hint = "`ip link set dev " + ifA_ + " xdpgeneric off; rm -r " + pinDir_ + "`";
  const size_t at = conflicts[0].find(hint);
  ASSERT_NE(at, std::string::npos) << conflicts[0];
  ASSERT_EQ(run(hint.substr(1, hint.size() - 2)), 0);  // in this thread's netns
  Status s = XdpDataplane::create(options(), &dp_);
  EXPECT_TRUE(s.isOk()) << s.message();
}

// Clears one capability from this thread's effective set (the permitted set
// keeps it) and restores it on destruction: what keeld without it sees.
class WithoutEffectiveCap {
 public:
  explicit WithoutEffectiveCap(int cap) : cap_(cap) { set(false); }
  ~WithoutEffectiveCap() { set(true); }

 private:
  void set(bool on) {
    __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[2]{};
    ASSERT_EQ(syscall(SYS_capget, &hdr, data), 0);
    uint32_t bit = 1u << (cap_ % 32);
    if (on)
      data[cap_ / 32].effective |= bit;
    else
      data[cap_ / 32].effective &= ~bit;
    ASSERT_EQ(syscall(SYS_capset, &hdr, data), 0);
  }
  int cap_;
};

TEST_F(XdpAdoptTest, AdoptsAndKeepsTheProgramWithoutCapSysAdmin) {
  firstKeeld();
  {
    WithoutEffectiveCap drop(CAP_SYS_ADMIN);
    // Proves the drop: opening the program by id is what needs it.
    int byId = bpf_prog_get_fd_by_id(firstProg_);
    EXPECT_LT(byId, 0);
    EXPECT_EQ(errno, EPERM);
    if (byId >= 0) close(byId);
    Status s = XdpDataplane::create(options(), &dp_);
    ASSERT_TRUE(s.isOk()) << s.message();
    EXPECT_TRUE(dp_->keptProgram());
    EXPECT_EQ(dp_->programId(), firstProg_);
    expectStateKept();
    // The conntrack count (a bpf_map iterator) needs no CAP_SYS_ADMIN either.
    EXPECT_EQ(dp_->connTableEntries(), std::optional<uint64_t>(1));
    dp_->leaveInPlace();
    dp_.reset();
  }
  EXPECT_EQ(attachedId(), firstProg_);
}

TEST_F(XdpAdoptTest, PinsWithoutProgRodataSwapTheProgramOverTheSameMaps) {
  firstKeeld();
  const uint32_t conntrackId = mapId("conntrack");
  // What a keeld from before prog_rodata leaves behind.
  ASSERT_EQ(unlink((pinDir_ + "/prog_rodata").c_str()), 0);
  Status s = XdpDataplane::create(options(), &dp_);
  ASSERT_TRUE(s.isOk()) << s.message();
  EXPECT_FALSE(dp_->keptProgram());
  const uint32_t swapped = dp_->programId();
  EXPECT_NE(swapped, firstProg_);
  EXPECT_EQ(attachedId(), swapped);
  EXPECT_EQ(mapId("conntrack"), conntrackId);
  expectStateKept();
  // The swap pinned prog_rodata: the next restart keeps the program.
  EXPECT_GE(mapId("prog_rodata"), 1u);
  dp_->leaveInPlace();
  dp_.reset();
  s = XdpDataplane::create(options(), &dp_);
  ASSERT_TRUE(s.isOk()) << s.message();
  EXPECT_TRUE(dp_->keptProgram());
  EXPECT_EQ(dp_->programId(), swapped);
}

// The host's faults under a running keeld (Dataplane::maintain, review
// s31 F1/F2). The ids of what is pinned as `name` (a map's or the
// program's), 0: none.
uint32_t pinnedObjectId(const std::string& path) {
  int fd = bpf_obj_get(path.c_str());
  if (fd < 0) return 0;
  bpf_prog_info info{};  // a map's info has its id at the same place; read it as the kind it is
  uint32_t len = sizeof info;
  const int rc = bpf_obj_get_info_by_fd(fd, &info, &len);
  close(fd);
  return rc == 0 ? info.id : 0;
}

// The balancer's interface deleted and created again under its name (a new
// ifindex): the program went with the old one. maintain() attaches the
// program it holds to the new one, in the same mode, over the same maps:
// the connection table's entry written before is still what the plane
// reads. Once only: a second call changes nothing. The MTU is the new
// interface's even before that (it was unknown once the old ifindex went).
TEST_F(XdpAdoptTest, AnInterfaceMadeAgainGetsTheProgramAgainOverTheSameMaps) {
  firstKeeld();
  ASSERT_TRUE(XdpDataplane::create(options(), &dp_).isOk());
  const uint32_t prog = dp_->programId();
  const uint32_t conntrackId = mapId("conntrack");
  const int oldIfindex = dp_->ifindex();
  ASSERT_EQ(run("ip -n " + ns_ + " link del " + ifA_), 0);
  ASSERT_EQ(run("ip -n " + ns_ + " link add " + ifA_ + " mtu 1400 type veth peer name " + ifB_), 0);
  ASSERT_EQ(run("ip -n " + ns_ + " link set " + ifA_ + " up"), 0);
  ASSERT_EQ(run("ip -n " + ns_ + " link set " + ifB_ + " up"), 0);
  const int newIfindex = static_cast<int>(if_nametoindex(ifA_.c_str()));
  ASSERT_NE(newIfindex, oldIfindex);
  ASSERT_EQ(attachedId(), 0u);
  EXPECT_FALSE(dp_->attachedNow());
  EXPECT_EQ(dp_->portMtu(), std::optional<uint32_t>(1400));

  dp_->maintain();
  EXPECT_EQ(attachedId(), prog);
  EXPECT_TRUE(dp_->attachedNow());
  EXPECT_EQ(dp_->ifindex(), newIfindex);
  EXPECT_EQ(dp_->reattachCount(), 1u);
  EXPECT_EQ(mapId("conntrack"), conntrackId);
  expectStateKept();
  const std::optional<ConnEntry> e = dp_->findConn(ctKey_);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->backendId, 5u);
  EXPECT_EQ(e->gen, 7u);
  dp_->maintain();
  EXPECT_EQ(dp_->reattachCount(), 1u);

  // Detached by hand: attached again, same ifindex.
  ASSERT_EQ(bpf_xdp_detach(newIfindex, XDP_FLAGS_DRV_MODE, nullptr), 0);
  EXPECT_FALSE(dp_->attachedNow());
  dp_->maintain();
  EXPECT_EQ(attachedId(), prog);
  EXPECT_EQ(dp_->reattachCount(), 2u);
  // The stop detaches from the interface it runs on now.
  ASSERT_TRUE(dp_->shutdown(true).isOk());
  EXPECT_EQ(attachedId(), 0u);
}

// Another XDP program on the new interface (someone else's) is left alone,
// as create() leaves it; once it is gone, the next call attaches ours.
TEST_F(XdpAdoptTest, AnotherProgramOnTheInterfaceMadeAgainIsNotReplaced) {
  ASSERT_TRUE(XdpDataplane::create(options(), &dp_).isOk());
  ASSERT_EQ(run("ip -n " + ns_ + " link del " + ifA_), 0);
  ASSERT_EQ(run("ip -n " + ns_ + " link add " + ifA_ + " type veth peer name " + ifB_), 0);
  const int ifindex = static_cast<int>(if_nametoindex(ifA_.c_str()));
  keel_balancer* other = keel_balancer__open();
  ASSERT_NE(other, nullptr);
  ASSERT_EQ(bpf_map__set_max_entries(other->maps.conntrack, 64), 0);
  ASSERT_EQ(keel_balancer__load(other), 0);
  ASSERT_EQ(bpf_xdp_attach(ifindex, bpf_program__fd(other->progs.balancer), XDP_FLAGS_DRV_MODE, nullptr), 0);
  const uint32_t otherId = attachedId();
  dp_->maintain();
  dp_->maintain();
  EXPECT_EQ(attachedId(), otherId);
  EXPECT_EQ(dp_->reattachCount(), 0u);
  EXPECT_FALSE(dp_->attachedNow());
  ASSERT_EQ(bpf_xdp_detach(ifindex, XDP_FLAGS_DRV_MODE, nullptr), 0);
  keel_balancer__destroy(other);
  dp_->maintain();
  EXPECT_EQ(attachedId(), dp_->programId());
  EXPECT_EQ(dp_->reattachCount(), 1u);
}

// The pin directory removed under a running keeld (rm -r): maintain() pins
// every map, the program, its .rodata and the record of layouts again from
// what it holds: the same maps (same ids), so the next keeld adopts them
// and keeps the program, and the directory's lock is taken again (a second
// keeld is refused, as before). Then a partial removal.
TEST_F(XdpAdoptTest, RemovedPinsArePinnedAgainFromTheMapsHeld) {
  firstKeeld();
  ASSERT_TRUE(XdpDataplane::create(options(), &dp_).isOk());
  ASSERT_TRUE(dp_->keptProgram());
  std::map<std::string, uint32_t> ids;
  for (const auto& entry : std::filesystem::directory_iterator(pinDir_))
    ids[entry.path().filename().string()] = pinnedObjectId(entry.path().string());
  for (const char* name : {"conntrack", "backends", "rings", "prog", "prog_rodata", xdp::kLayoutsPin})
    EXPECT_TRUE(ids.count(name)) << name;
  EXPECT_TRUE(dp_->missingPins().empty());
  ASSERT_TRUE(std::filesystem::remove_all(pinDir_) > 0);
  EXPECT_FALSE(dp_->missingPins().empty());

  dp_->maintain();
  EXPECT_TRUE(dp_->missingPins().empty());
  EXPECT_EQ(dp_->repinCount(), 1u);
  for (const auto& [name, id] : ids) {
    if (name == xdp::kLayoutsPin) {
      EXPECT_NE(pinnedObjectId(pinDir_ + "/" + name), 0u) << name;  // a new map, the same record
      continue;
    }
    EXPECT_EQ(pinnedObjectId(pinDir_ + "/" + name), id) << name;
  }
  EXPECT_EQ(pinnedObjectId(pinDir_ + "/prog"), dp_->programId());
  std::unique_ptr<XdpDataplane> second;
  Status s = XdpDataplane::create(options(), &second);
  ASSERT_FALSE(s.isOk());
  EXPECT_NE(s.message().find("is locked by another keeld"), std::string::npos) << s.message();

  ASSERT_EQ(unlink((pinDir_ + "/conntrack").c_str()), 0);
  ASSERT_EQ(unlink((pinDir_ + "/prog").c_str()), 0);
  EXPECT_EQ(dp_->missingPins(), (std::vector<std::string>{"conntrack", "prog"}));
  dp_->maintain();
  EXPECT_TRUE(dp_->missingPins().empty());
  EXPECT_EQ(pinnedObjectId(pinDir_ + "/conntrack"), ids["conntrack"]);
  EXPECT_EQ(dp_->repinCount(), 2u);
  dp_->maintain();
  EXPECT_EQ(dp_->repinCount(), 2u);

  // The next keeld adopts all of it and keeps the program.
  dp_->leaveInPlace();
  dp_.reset();
  s = XdpDataplane::create(options(), &dp_);
  ASSERT_TRUE(s.isOk()) << s.message();
  EXPECT_TRUE(dp_->keptProgram());
  EXPECT_EQ(dp_->programId(), firstProg_);
  expectStateKept();
}

// Pins removed and their keeld gone before it pinned them again: the next
// keeld is refused (never replaces a program it cannot tell is keel's), and
// the refusal says first that the attached program is most likely keel's
// own, before the `xdp off` that would cost every established flow.
TEST_F(XdpAdoptTest, AStartOverAnAttachedProgramWithoutPinsSaysItIsMostLikelyKeels) {
  ASSERT_TRUE(XdpDataplane::create(options(), &dp_).isOk());
  EXPECT_EQ(XdpDataplane::attachConflicts(options()), std::vector<std::string>{});  // running, pinned
  ASSERT_TRUE(std::filesystem::remove_all(pinDir_) > 0);
  // keeld --check-config says it first, in the start's words.
  const std::vector<std::string> conflicts = XdpDataplane::attachConflicts(options());
  std::unique_ptr<XdpDataplane> next;
  Status s = XdpDataplane::create(options(), &next);
  ASSERT_FALSE(s.isOk());
  ASSERT_EQ(conflicts.size(), 1u);
  EXPECT_EQ(s.message().rfind(conflicts[0], 0), 0u) << s.message() << "\n" << conflicts[0];
  EXPECT_NE(s.message().find("already attached"), std::string::npos) << s.message();
  const size_t orphan = s.message().find(pinDir_ + " has no pinned data plane (no backends pin)");
  EXPECT_NE(orphan, std::string::npos) << s.message();
  EXPECT_LT(orphan, s.message().find("xdp off")) << s.message();
  EXPECT_EQ(attachedId(), dp_->programId());
}

}  // namespace
}  // namespace keel

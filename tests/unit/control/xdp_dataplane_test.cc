// SPDX-License-Identifier: Apache-2.0
// Root only: loads the real balancer into a fresh netns veth through
// XdpDataplane, programs it with the Registry and reads the pinned maps back
// through plain bpf syscalls (what bpftool or an adopting keeld would see).
// Then runs one packet through BPF_PROG_TEST_RUN and checks readStats()
// counted it. Skips when not root.
#include "dataplane/xdp/xdp_dataplane.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <sched.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "control/registry.h"

namespace keel {
namespace {

int run(const std::string& cmd) { return std::system((cmd + " >/dev/null 2>&1").c_str()); }

class XdpDataplaneTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (BPF, netns)";
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

  std::string ns_, ifA_, ifB_, pinDir_;
  bool nsCreated_ = false;
  int origNs_ = -1;
  std::unique_ptr<XdpDataplane> dp_;
};

TEST_F(XdpDataplaneTest, ProgramsMapsPinsAndDetaches) {
  XdpOptions o;
  o.interface = ifA_;
  o.mode = XdpAttachMode::kNative;
  o.limits = {16, 64, 1024};
  o.pinDir = pinDir_;
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
  close(inner);

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
}

TEST_F(XdpDataplaneTest, StatsSumAcrossCpusAfterATestRun) {
  XdpOptions o;
  o.interface = ifA_;
  o.mode = XdpAttachMode::kGeneric;
  o.limits = {4, 8, 128};
  o.pinDir = pinDir_;
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
}

}  // namespace
}  // namespace keel

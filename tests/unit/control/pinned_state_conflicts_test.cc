// SPDX-License-Identifier: Apache-2.0
// Root only: pinnedStateConflicts() (keeld --check-config, after the file
// loads) against the XDP programs an interface already runs, in a netns of
// this test's own: someone else's program on dataplane.interface is what the
// XDP start refuses, and on a net_af_xdp port's interface what the DPDK
// start fails on; keel's own program, left by a previous keeld, is the
// restart's and refuses nothing. Skips when not root.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <sched.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "dead_runs.h"
#include "control/config.h"
#include "daemon/dataplane_factory.h"
#include "dataplane/xdp/xdp_dataplane.h"
#include "dataplane/xdp/xdp_features.h"

namespace keel {
namespace {

int run(const std::string& cmd) { return std::system((cmd + " >/dev/null 2>&1").c_str()); }

// The namespaces and pins of runs that were killed (meson's timeout), each
// named by its pid: removed when that process is gone.
void removeLeftoversOfDeadRuns() { test_support::removeLeftoversOfDeadRuns("keelpc", "/sys/fs/bpf/keel", "kpa"); }

class PinnedStateConflictsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (BPF, netns)";
    removeLeftoversOfDeadRuns();
    const std::string pid = std::to_string(getpid());
    ns_ = "keelpc" + pid;
    ifA_ = "kpa" + pid;
    ifB_ = "kpb" + pid;
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
    ifindex_ = static_cast<int>(if_nametoindex(ifA_.c_str()));
    ASSERT_NE(ifindex_, 0);
  }
  void TearDown() override {
    plane_.reset();
    for (int fd : progs_) close(fd);
    if (origNs_ >= 0) {
      setns(origNs_, CLONE_NEWNET);
      close(origNs_);
    }
    if (nsCreated_) run("ip netns del " + ns_);  // detaches whatever is attached
    std::error_code ec;
    if (!ifA_.empty()) std::filesystem::remove_all(XdpOptions::defaultPinDir(ifA_), ec);
  }

  // An XDP program that passes every frame, loaded under `name` (someone
  // else's xdp_pass, or one named as libxdp names its own) and attached to
  // ifA_ in native or generic mode. Returns its id.
  uint32_t attachOther(const char* name, bool generic) {
    const bpf_insn pass[] = {
        {BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, XDP_PASS},
        {BPF_JMP | BPF_EXIT, 0, 0, 0, 0},
    };
    const int fd = bpf_prog_load(BPF_PROG_TYPE_XDP, name, "GPL", pass, 2, nullptr);
    EXPECT_GE(fd, 0) << errno;
    if (fd < 0) return 0;
    progs_.push_back(fd);
    EXPECT_EQ(bpf_xdp_attach(ifindex_, fd, generic ? XDP_FLAGS_SKB_MODE : XDP_FLAGS_DRV_MODE, nullptr), 0);
    bpf_prog_info info{};
    uint32_t len = sizeof info;
    EXPECT_EQ(bpf_obj_get_info_by_fd(fd, &info, &len), 0);
    return info.id;
  }
  void detachOther(bool generic) {
    ASSERT_EQ(bpf_xdp_detach(ifindex_, generic ? XDP_FLAGS_SKB_MODE : XDP_FLAGS_DRV_MODE, nullptr), 0);
  }

  // keeld's config for the XDP plane on ifA_ (its pins where keeld puts
  // them: the interface's name carries this test's pid).
  Config xdpConfig(XdpMode mode) const {
    Config c;
    c.dataplane.kind = DataplaneKind::kXdp;
    c.dataplane.interface = ifA_;
    c.dataplane.xdpMode = mode;
    c.limits = {8, 32, 256};
    return c;
  }
  // For the DPDK plane with a net_af_xdp port on ifA_.
  Config afXdpConfig() const {
    Config c;
    c.dataplane.kind = DataplaneKind::kDpdk;
    c.dataplane.interface = ifA_;
    c.dataplane.dpdk.port = "net_af_xdp0,iface=" + ifA_;
    return c;
  }

  std::string ns_, ifA_, ifB_;
  bool nsCreated_ = false;
  int origNs_ = -1;
  int ifindex_ = 0;
  std::vector<int> progs_;
  std::unique_ptr<DaemonDataplane> plane_;
};

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// Someone else's program, in either mode, under either xdp_mode: the start
// is refused (the kernel takes one program at a time, and keeld replaces no
// one's), so the check says so, in the start's words: the program's id,
// and the `ip link` line that detaches it in the mode it runs in (plain
// `xdp off` leaves a generic program on a veth).
TEST_F(PinnedStateConflictsTest, AProgramSomeoneElseAttachedIsRefusedAsTheStartRefusesIt) {
  EXPECT_TRUE(pinnedStateConflicts(xdpConfig(XdpMode::kNative)).empty());
  for (const bool generic : {false, true}) {
    const uint32_t id = attachOther("xdp_pass", generic);
    for (const XdpMode mode : {XdpMode::kNative, XdpMode::kGeneric}) {
      const Config c = xdpConfig(mode);
      const std::vector<std::string> conflicts = pinnedStateConflicts(c);
      SCOPED_TRACE(std::string(generic ? "generic" : "native") + " program, xdp_mode " +
                   (mode == XdpMode::kNative ? "native" : "generic"));
      ASSERT_EQ(conflicts.size(), 1u);
      EXPECT_TRUE(has(conflicts[0], "xdp: attach to " + ifA_ + " in " +
                                        (mode == XdpMode::kNative ? "native" : "generic") + " mode: "))
          << conflicts[0];
      EXPECT_TRUE(has(conflicts[0], "an XDP program (id " + std::to_string(id) + ") is already attached in " +
                                        (generic ? "generic" : "native") + " mode"))
          << conflicts[0];
      EXPECT_TRUE(has(conflicts[0], generic ? "`ip link set dev " + ifA_ + " xdpgeneric off`"
                                            : "`ip link set dev " + ifA_ + " xdp off`"))
          << conflicts[0];
      // The start: the same words (then libbpf's), and the program stays.
      std::string error;
      EXPECT_EQ(makeDaemonDataplane(c, StateFiles{}, &error), nullptr);
      EXPECT_EQ(error.rfind(conflicts[0], 0), 0u) << error << "\n" << conflicts[0];
      uint32_t still = 0;
      EXPECT_EQ(bpf_xdp_query_id(ifindex_, generic ? XDP_FLAGS_SKB_MODE : XDP_FLAGS_DRV_MODE, &still), 0);
      EXPECT_EQ(still, id);
    }
    detachOther(generic);
  }
  EXPECT_TRUE(pinnedStateConflicts(xdpConfig(XdpMode::kGeneric)).empty());
}

// The restart: the program a previous keeld left attached and pinned is
// keel's own, which the next start keeps (or swaps), in either mode. Also
// while that keeld still runs (the check before `systemctl restart`).
TEST_F(PinnedStateConflictsTest, KeelsOwnProgramLeftByAPreviousKeeldIsNoConflict) {
  for (const XdpMode mode : {XdpMode::kNative, XdpMode::kGeneric}) {
    const Config c = xdpConfig(mode);
    std::string error;
    plane_ = makeDaemonDataplane(c, StateFiles{}, &error);
    ASSERT_NE(plane_, nullptr) << error;
    EXPECT_EQ(pinnedStateConflicts(c), std::vector<std::string>{});  // running
    ASSERT_TRUE(plane_->stop(/*leave=*/true).isOk());
    plane_.reset();
    EXPECT_EQ(pinnedStateConflicts(c), std::vector<std::string>{});  // left in place
    // Checked by a user other than root (an operator's shell): the pins
    // cannot be looked at (bpffs is 0700 where keeld mounts it), which says
    // nothing, so keel's own program is not taken for someone else's.
    const std::string pins = XdpOptions::defaultPinDir(ifA_);
    ASSERT_EQ(::chmod(pins.c_str(), 0700), 0);
    const pid_t child = ::fork();
    if (child == 0) {
      if (::setresgid(65534, 65534, 65534) != 0 || ::setresuid(65534, 65534, 65534) != 0) ::_exit(2);
      ::_exit(pinnedStateConflicts(c).empty() ? 0 : 1);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
    plane_ = makeDaemonDataplane(c, StateFiles{}, &error);  // and the start agrees
    ASSERT_NE(plane_, nullptr) << error;
    ASSERT_TRUE(plane_->stop(/*leave=*/false).isOk());
    plane_.reset();
  }
}

// xdp_mode: native on a device whose driver has no native XDP (here a
// macvlan, a bridge and a tun device, which the kernel of 6.3 and later
// says declare no XDP features): the start fails to attach, so the check
// says so in its words; generic mode takes any device.
TEST_F(PinnedStateConflictsTest, NativeModeOnADriverWithoutNativeXdpIsRefusedAsTheStartRefusesIt) {
  const std::string pid = std::to_string(getpid());
  const std::vector<std::pair<std::string, std::string>> devices = {
      {"kpm" + pid, "link " + ifB_ + " type macvlan"},
      {"kpr" + pid, "type bridge"},
      {"kpt" + pid, "type tun"},
  };
  for (const auto& [name, how] : devices) {
    ASSERT_EQ(run(how == "type tun" ? "ip -n " + ns_ + " tuntap add dev " + name + " mode tun"
                                    : "ip -n " + ns_ + " link add " + name + " " + how),
              0)
        << how;
    ASSERT_EQ(run("ip -n " + ns_ + " link set " + name + " up"), 0);
    if (!xdpFeatures(static_cast<int>(if_nametoindex(name.c_str()))))
      GTEST_SKIP() << "a kernel before 6.3 declares no XDP features: the check says nothing";
    Config c = xdpConfig(XdpMode::kNative);
    c.dataplane.interface = name;
    const std::vector<std::string> conflicts = pinnedStateConflicts(c);
    std::string error;
    EXPECT_EQ(makeDaemonDataplane(c, StateFiles{}, &error), nullptr) << name;
    ASSERT_EQ(conflicts.size(), 1u) << how;
    EXPECT_EQ(conflicts[0], "xdp: attach to " + name +
                                " in native mode: Operation not supported (driver lacks native XDP; try "
                                "xdp_mode: generic)");
    EXPECT_EQ(error.rfind(conflicts[0], 0), 0u) << error;
    c.dataplane.xdpMode = XdpMode::kGeneric;
    EXPECT_TRUE(pinnedStateConflicts(c).empty()) << how;
    std::error_code ec;
    std::filesystem::remove_all(XdpOptions::defaultPinDir(name), ec);
  }
  // A tap, the tun driver's other mode, runs native programs: not refused
  // (the driver's name alone would).
  const std::string tap = "kpp" + pid;
  ASSERT_EQ(run("ip -n " + ns_ + " tuntap add dev " + tap + " mode tap"), 0);
  ASSERT_EQ(run("ip -n " + ns_ + " link set " + tap + " up"), 0);
  Config c = xdpConfig(XdpMode::kNative);
  c.dataplane.interface = tap;
  EXPECT_TRUE(pinnedStateConflicts(c).empty());
}

// A net_af_xdp port on an interface with someone else's program: the port's
// rx queue setup would fail ("Invalid argument", which keeld took for too
// few buffers); the check names the program and how to detach it, and the
// start refuses it in the same words before EAL runs. libxdp's own
// programs (its AF_XDP program, its dispatcher) are the port's to use.
TEST_F(PinnedStateConflictsTest, AProgramSomeoneElseAttachedUnderANetAfXdpPortIsRefused) {
  const Config c = afXdpConfig();
  EXPECT_TRUE(pinnedStateConflicts(c).empty());
  for (const bool generic : {false, true}) {
    const uint32_t id = attachOther("xdp_pass", generic);
    const std::vector<std::string> conflicts = pinnedStateConflicts(c);
    ASSERT_EQ(conflicts.size(), 1u);
    EXPECT_EQ(conflicts[0], "dataplane.dpdk.port: net_af_xdp0,iface=" + ifA_ + ": an XDP program (id " +
                                std::to_string(id) + ", xdp_pass) is attached to " + ifA_ + " in " +
                                (generic ? "generic" : "native") +
                                " mode, and net_af_xdp attaches its own only where none is or a libxdp "
                                "dispatcher runs: detach it first if it is stale (`ip link set dev " + ifA_ +
                                (generic ? " xdpgeneric off`)" : " xdp off`)"));
    if (dataplaneBuiltIn(DataplaneKind::kDpdk)) {
      std::string error;
      EXPECT_EQ(makeDaemonDataplane(c, StateFiles{}, &error), nullptr);
      EXPECT_EQ(error, conflicts[0]);
    }
    detachOther(generic);
  }
  for (const char* libxdps : {"xsk_def_prog", "xdp_dispatcher"}) {
    attachOther(libxdps, false);
    EXPECT_TRUE(pinnedStateConflicts(c).empty()) << libxdps;
    detachOther(false);
  }
  // A port that brings its own program, or expects one there: not judged.
  attachOther("xdp_pass", false);
  Config own = c;
  own.dataplane.dpdk.port += ",xdp_prog=/tmp/prog.o";
  EXPECT_TRUE(pinnedStateConflicts(own).empty());
  // The port named in eal_args' --vdev: the same port.
  Config byName = c;
  byName.dataplane.dpdk.port = "net_af_xdp0";
  byName.dataplane.dpdk.ealArgs = {"--vdev", "net_af_xdp0,iface=" + ifA_};
  EXPECT_EQ(pinnedStateConflicts(byName).size(), 1u);
  // A net_af_packet port taps the interface beside the program.
  Config packet = c;
  packet.dataplane.dpdk.port = "net_af_packet0,iface=" + ifA_;
  EXPECT_TRUE(pinnedStateConflicts(packet).empty());
}

}  // namespace
}  // namespace keel

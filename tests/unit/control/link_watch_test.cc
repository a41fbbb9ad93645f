// SPDX-License-Identifier: Apache-2.0
// LinkWatch: which link messages concern the data plane's interface (its
// ifindex, or its name for one made again), and, in a private network
// namespace (root only; skips otherwise), that a change of the interface,
// its deletion and its making again each reach keeld's loop, another
// interface's do not, and lost messages (ENOBUFS) count as a change.
#include "daemon/link_watch.h"

#include <gtest/gtest.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sched.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace keel {
namespace {

// Runs before main (single-threaded, as unshare requires).
const bool kIsolated = geteuid() == 0 && ::unshare(CLONE_NEWNET) == 0;

bool run(const std::string& command) { return std::system((command + " >/dev/null 2>&1").c_str()) == 0; }

// One link message: its type, ifindex and, if given, IFLA_IFNAME.
std::vector<char> linkMessage(uint16_t type, int ifindex, const std::string& name = "") {
  std::vector<char> buf(NLMSG_SPACE(sizeof(ifinfomsg)) + RTA_SPACE(IFNAMSIZ), 0);
  auto* nh = reinterpret_cast<nlmsghdr*>(buf.data());
  nh->nlmsg_type = type;
  nh->nlmsg_len = NLMSG_LENGTH(sizeof(ifinfomsg));
  auto* ifi = static_cast<ifinfomsg*>(NLMSG_DATA(nh));
  ifi->ifi_index = ifindex;
  if (!name.empty()) {
    auto* rta = reinterpret_cast<rtattr*>(buf.data() + NLMSG_SPACE(sizeof(ifinfomsg)));
    rta->rta_type = IFLA_IFNAME;
    rta->rta_len = static_cast<unsigned short>(RTA_LENGTH(name.size() + 1));
    std::memcpy(RTA_DATA(rta), name.c_str(), name.size() + 1);
    nh->nlmsg_len = NLMSG_SPACE(sizeof(ifinfomsg)) + RTA_LENGTH(name.size() + 1);
  }
  buf.resize(NLMSG_ALIGN(nh->nlmsg_len));
  return buf;
}

TEST(LinkWatchConcerns, ItsIfindexOrItsName) {
  auto concerns = [](const std::vector<char>& m, int ifindex) {
    return LinkWatch::concerns(m.data(), m.size(), "eth0", ifindex);
  };
  EXPECT_TRUE(concerns(linkMessage(RTM_NEWLINK, 7), 7)) << "a change of it (MTU, MAC, flags)";
  EXPECT_TRUE(concerns(linkMessage(RTM_DELLINK, 7, "eth0"), 7)) << "its deletion";
  EXPECT_TRUE(concerns(linkMessage(RTM_NEWLINK, 9, "eth0"), 7)) << "made again: a new ifindex, its name";
  EXPECT_TRUE(concerns(linkMessage(RTM_NEWLINK, 9, "eth0"), 0)) << "made again after none was there";
  EXPECT_TRUE(concerns(linkMessage(RTM_NEWLINK, 7, "eth9"), 7)) << "renamed away";
  EXPECT_FALSE(concerns(linkMessage(RTM_NEWLINK, 8, "eth1"), 7)) << "another interface";
  EXPECT_FALSE(concerns(linkMessage(RTM_NEWLINK, 8, "eth00"), 7)) << "a name that only begins with it";
  EXPECT_FALSE(concerns(linkMessage(RTM_NEWADDR, 7), 7)) << "not a link message";
  // Several messages in one read: any one that concerns it.
  std::vector<char> two = linkMessage(RTM_NEWLINK, 8, "eth1");
  const std::vector<char> mine = linkMessage(RTM_NEWLINK, 7);
  two.insert(two.end(), mine.begin(), mine.end());
  EXPECT_TRUE(concerns(two, 7));
  EXPECT_FALSE(LinkWatch::concerns(two.data(), 3, "eth0", 7)) << "a truncated message is no message";
}

class LinkWatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!kIsolated) {
      if (geteuid() == 0) FAIL() << "root got no private network namespace";  // never a silent skip as root
      GTEST_SKIP() << "needs root for a private network namespace";
    }
    ASSERT_TRUE(run("ip link add lwa type veth peer name lwb"));
    ASSERT_TRUE(run("ip link add lwc type veth peer name lwd"));
    watch_ = std::make_unique<LinkWatch>(io_, "lwa", [this] { ++changes_; });
    ASSERT_TRUE(watch_->start());
  }
  void TearDown() override {
    watch_.reset();
    run("ip link del lwa");
    run("ip link del lwc");
  }
  // Runs what the loop has ready now: the kernel has queued a link message
  // on the socket by the time the `ip` that caused it returns.
  void poll() {
    for (int i = 0; i < 5; ++i) {
      io_.restart();
      io_.poll();
    }
  }
  // Runs the loop until `changes_` reaches `n`, bounded.
  void runUntil(int n) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (changes_ < n && std::chrono::steady_clock::now() < deadline) {
      io_.restart();
      io_.run_for(std::chrono::milliseconds(10));
    }
  }

  boost::asio::io_context io_;
  std::unique_ptr<LinkWatch> watch_;
  int changes_ = 0;
};

TEST_F(LinkWatchTest, TheInterfacesChangesDeletionAndMakingAgainAndNoOthers) {
  ASSERT_TRUE(run("ip link set lwc mtu 1400"));
  ASSERT_TRUE(run("ip link set lwc up"));
  poll();
  EXPECT_EQ(changes_, 0) << "another interface's messages";

  ASSERT_TRUE(run("ip link set lwa mtu 1400"));
  runUntil(1);
  EXPECT_EQ(changes_, 1);
  ASSERT_TRUE(run("ip link set lwa address 02:00:00:00:77:01"));
  runUntil(2);
  EXPECT_EQ(changes_, 2);

  ASSERT_TRUE(run("ip link del lwa"));
  runUntil(3);
  EXPECT_EQ(changes_, 3);
  ASSERT_TRUE(run("ip link add lwa type veth peer name lwb"));
  runUntil(4);
  EXPECT_EQ(changes_, 4) << "made again: by its name";
  // And followed under its new ifindex.
  ASSERT_TRUE(run("ip link set lwa mtu 1300"));
  runUntil(5);
  EXPECT_EQ(changes_, 5);
  EXPECT_EQ(watch_->lost(), 0u);
}

// Messages the socket had no room for are lost, and the next read says so
// (ENOBUFS): maybe one was the interface's, so it is a change, and the
// watch reads on.
TEST_F(LinkWatchTest, LostMessagesAreAChange) {
  // Far more link messages than the socket's queue holds (~1 MB at most
  // without CAP_NET_ADMIN's force), none of them the interface's, while
  // the loop reads none.
  FILE* batch = ::popen("ip -batch - >/dev/null 2>&1", "w");
  ASSERT_NE(batch, nullptr);
  for (int i = 0; i < 6000; ++i) std::fprintf(batch, "link set lwc mtu %d\n", 1280 + i % 200);
  ASSERT_EQ(::pclose(batch), 0);
  runUntil(1);
  EXPECT_EQ(changes_, 1);
  EXPECT_GE(watch_->lost(), 1u);
  // Reading goes on.
  ASSERT_TRUE(run("ip link set lwa mtu 1400"));
  runUntil(2);
  EXPECT_EQ(changes_, 2);
}

}  // namespace
}  // namespace keel

// SPDX-License-Identifier: Apache-2.0
// lookupRoute() (common/route.h) against the kernel's routing table in a
// private network namespace (root only; skips otherwise): what its callers'
// tests (neighbour_test: routesTo, addressIsLocal; health_checker_test:
// hostPathDown) do not show by themselves. The kernel's error for no
// route, told apart from an operator's unreachable route; the output
// interface's index; a stale answer on a reused socket skipped by seq; a
// socket that fails or stays silent; the read timeout of routeSocket().
#include <gtest/gtest.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <string>
#include <tuple>

#include "common/route.h"

namespace keel {
namespace {

using namespace std::chrono_literals;

// Runs before main (single-threaded, as unshare requires).
const bool kIsolated = geteuid() == 0 && ::unshare(CLONE_NEWNET) == 0;

bool run(const std::string& command) { return std::system((command + " >/dev/null 2>&1").c_str()) == 0; }

IpAddress ip(const std::string& s) { return *IpAddress::parse(s); }

class RouteTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!kIsolated) {
      if (geteuid() == 0) FAIL() << "root got no private network namespace";  // never a silent skip as root
      GTEST_SKIP() << "needs root for a private network namespace";
    }
    ASSERT_TRUE(run("ip link add keelrt0 type veth peer name keelrt1"));
    ASSERT_TRUE(run("ip link set keelrt0 up && ip link set keelrt1 up && ip link set lo up"));
    ASSERT_TRUE(run("ip addr add 10.9.0.1/24 dev keelrt0"));
    ASSERT_TRUE(run("ip addr add fd00:9::1/64 dev keelrt0 nodad"));
    ASSERT_TRUE(run("ip route add 10.50.0.0/16 via 10.9.0.254"));
    ASSERT_TRUE(run("ip route add unreachable 10.60.0.0/16"));
    ASSERT_TRUE(run("ip -6 route add unreachable 2001:db8:60::/48"));
    sock_ = routeSocket(1000ms);
    ASSERT_GE(sock_.get(), 0);
  }
  void TearDown() override {
    run("ip link del keelrt0");
    run("ip route del unreachable 10.60.0.0/16");
    run("ip -6 route del unreachable 2001:db8:60::/48");
  }
  Fd sock_;
};

TEST_F(RouteTest, ARouteGivesItsHopTypeAndInterfaceIndex) {
  const unsigned index = if_nametoindex("keelrt0");
  ASSERT_NE(index, 0u);
  RouteLookup r = lookupRoute(sock_.get(), 1, ip("10.50.1.1"));
  EXPECT_FALSE(r.socketFailed);
  EXPECT_EQ(r.error, 0);
  ASSERT_TRUE(r.hop);
  EXPECT_EQ(*r.hop, (RouteHop{ip("10.9.0.254"), "keelrt0"}));
  EXPECT_EQ(r.ifindex, index);
  EXPECT_EQ(r.type, RTN_UNICAST);

  r = lookupRoute(sock_.get(), 2, ip("fd00:9::5"));
  ASSERT_TRUE(r.hop);
  EXPECT_EQ(*r.hop, (RouteHop{std::nullopt, "keelrt0"})) << "on-link";
  EXPECT_EQ(r.ifindex, index);
  EXPECT_EQ(r.type, RTN_UNICAST);

  r = lookupRoute(sock_.get(), 3, ip("10.9.0.1"));
  ASSERT_TRUE(r.hop);
  EXPECT_EQ(r.type, RTN_LOCAL) << "this host's own address";
}

// hostPathDown's distinction: no route at all (-ENETUNREACH: this host's
// path is gone) against a route the operator made unreachable (the
// operator's routing: another code), in both families.
TEST_F(RouteTest, NoRouteIsNetworkUnreachableAndAnUnreachableRouteIsNot) {
  uint32_t seq = 0;
  for (const char* a : {"10.99.0.1", "2001:db8:99::1"}) {
    const RouteLookup r = lookupRoute(sock_.get(), ++seq, ip(a));
    EXPECT_FALSE(r.socketFailed) << a;
    EXPECT_FALSE(r.hop) << a;
    EXPECT_EQ(r.error, -ENETUNREACH) << a;
    EXPECT_EQ(r.type, RTN_UNSPEC) << a;
  }
  for (const char* a : {"10.60.0.1", "2001:db8:60::1"}) {
    const RouteLookup r = lookupRoute(sock_.get(), ++seq, ip(a));
    EXPECT_FALSE(r.socketFailed) << a;
    EXPECT_FALSE(r.hop) << a;
    EXPECT_EQ(r.error, -EHOSTUNREACH) << a;
  }
}

// routesTo reuses one socket for many lookups: an answer left unread (a
// read that timed out) is before the next lookup's own, and is skipped by
// its sequence number rather than read as that lookup's answer. Here an
// RTM_GETLINK's answer stands in for it.
TEST_F(RouteTest, AStaleAnswerOnTheSocketIsSkipped) {
  struct {
    nlmsghdr nh;
    ifinfomsg ifi;
  } req{};
  req.nh.nlmsg_len = sizeof req;
  req.nh.nlmsg_type = RTM_GETLINK;
  req.nh.nlmsg_flags = NLM_F_REQUEST;
  req.nh.nlmsg_seq = 7;
  req.ifi.ifi_family = AF_UNSPEC;
  req.ifi.ifi_index = static_cast<int>(if_nametoindex("lo"));
  ASSERT_EQ(::send(sock_.get(), &req, sizeof req, 0), static_cast<ssize_t>(sizeof req));
  const RouteLookup r = lookupRoute(sock_.get(), 8, ip("10.50.1.1"));
  EXPECT_FALSE(r.socketFailed);
  ASSERT_TRUE(r.hop) << "error " << r.error;
  EXPECT_EQ(*r.hop, (RouteHop{ip("10.9.0.254"), "keelrt0"}));
}

// A socket that cannot send, or whose answer never comes (here a datagram
// socket pair nobody answers on), says so: the callers cannot tell, which
// is not "no route".
TEST(RouteLookupSocket, AFailedOrSilentSocketIsNotNoRoute) {
  RouteLookup r = lookupRoute(-1, 1, ip("10.50.1.1"));
  EXPECT_TRUE(r.socketFailed);
  EXPECT_FALSE(r.hop);
  EXPECT_EQ(r.error, 0);

  int pair[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, pair), 0);
  Fd a(pair[0]), b(pair[1]);
  timeval wait{0, 50 * 1000};
  ASSERT_EQ(::setsockopt(a.get(), SOL_SOCKET, SO_RCVTIMEO, &wait, sizeof wait), 0);
  r = lookupRoute(a.get(), 1, ip("2001:db8:50::1"));
  EXPECT_TRUE(r.socketFailed);
  EXPECT_FALSE(r.hop);
}

// Each caller's timeout: keeld's loop 1 s, a health check's thread 100 ms.
TEST(RouteLookupSocket, ReadsTimeOutAfterTheGivenTime) {
  for (auto [given, sec, usec] : {std::tuple{1000ms, 1L, 0L}, std::tuple{100ms, 0L, 100000L},
                                  std::tuple{1500ms, 1L, 500000L}}) {
    Fd sock = routeSocket(given);
    ASSERT_GE(sock.get(), 0);
    timeval tv{};
    socklen_t len = sizeof tv;
    ASSERT_EQ(::getsockopt(sock.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, &len), 0);
    EXPECT_EQ(tv.tv_sec, sec) << given.count();
    EXPECT_EQ(tv.tv_usec, usec) << given.count();
  }
}

}  // namespace
}  // namespace keel

// SPDX-License-Identifier: Apache-2.0
// NextHopCheck over a fake routing table and neighbour table: node.next_hop_mac
// compared with the MAC of the router the kernel routes the ipip reals
// through (review finding F9): a router whose MAC changed is warned about
// once per change, its return to next_hop_mac (or a config that follows it)
// is said at info, reals without a router on the interface are said once,
// and the route lookups a run makes are bounded whatever the number of reals.
#include "daemon/next_hop_check.h"

#include <gtest/gtest.h>

#include <string>

#include "log_capture.h"

namespace keel {
namespace {

IpAddress ip(const std::string& s) { return *IpAddress::parse(s); }
MacAddress mac(const std::string& s) { return *MacAddress::parse(s); }

constexpr const char* kNextHop = "02:00:00:00:00:01";
constexpr const char* kOther = "02:00:00:00:00:99";

class NextHopCheckTest : public ::testing::Test {
 protected:
  NextHopCheck check_{[this](const std::vector<IpAddress>& dsts, const RouteSources& sources) {
                        std::map<IpAddress, RouteHop> out;
                        askedFrom_.push_back(sources);
                        for (const IpAddress& d : dsts) {
                          asked_.push_back(d);
                          if (auto it = routes_.find(d.toString()); it != routes_.end()) out[d] = it->second;
                          else if (defaultRoute_ && d.family() == defaultRoute_->gateway->family())
                            out[d] = *defaultRoute_;
                        }
                        return out;
                      },
                      [this](const std::vector<IpAddress>& gateways, const std::string& iface) {
                        std::map<IpAddress, MacAddress> out;
                        ++neighbourReads_;
                        for (const IpAddress& g : gateways)
                          if (auto it = neighbours_.find(g.toString()); iface == "eth0" && it != neighbours_.end())
                            out[g] = mac(it->second);
                        return out;
                      },
                      [this](const std::string& iface) {
                        return iface == "eth0" ? uppers_ : std::vector<std::string>{};
                      }};

  // A config with an ipip service of `reals` and node.next_hop_mac `nextHop`.
  static Config config(const std::vector<std::string>& reals, const char* nextHop = kNextHop,
                       Forwarding forwarding = Forwarding::kIpip) {
    Config c;
    c.dataplane.interface = "eth0";
    c.node.nextHopMac = mac(nextHop);
    ServiceConfig svc;
    svc.name = "web";
    svc.vip = ip("192.0.2.10");
    svc.port = 80;
    svc.forwarding = forwarding;
    for (const std::string& r : reals) {
      RealConfig rc;
      rc.address = ip(r);
      if (forwarding == Forwarding::kL2dsr) rc.mac = mac("02:00:00:00:0a:01");
      svc.reals.push_back(rc);
    }
    c.services.push_back(svc);
    return c;
  }

  void run(const Config& c, std::chrono::steady_clock::time_point at = {}) { check_.run(c, "eth0", at); }

  test::LogCapture log_;
  std::map<std::string, RouteHop> routes_;     // by destination
  std::optional<RouteHop> defaultRoute_ = RouteHop{ip("10.0.0.254"), "eth0"};  // of its family
  std::map<std::string, std::string> neighbours_;  // the entries of eth0 and the interfaces on it
  std::vector<std::string> uppers_;                // the interfaces on eth0
  std::vector<IpAddress> asked_;
  std::vector<RouteSources> askedFrom_;  // each lookup's sources
  int neighbourReads_ = 0;
};

// The routes are looked up from the node's tunnel sources (source-based
// policy routing of keel's outer source is followed), and a reload that
// changes a source makes every cached route due at the next check.
TEST_F(NextHopCheckTest, RoutesAreLookedUpFromTheTunnelSources) {
  Config c = config({"10.0.1.1", "2001:db8:1::1"});
  c.node.tunnelSourceV4 = ip("10.0.0.2");
  defaultRoute_.reset();
  routes_["10.0.1.1"] = RouteHop{ip("10.0.0.254"), "eth0"};
  routes_["2001:db8:1::1"] = RouteHop{ip("fe80::1"), "eth0"};
  run(c);
  ASSERT_EQ(askedFrom_.size(), 1u);
  EXPECT_EQ(askedFrom_[0], (RouteSources{ip("10.0.0.2"), std::nullopt}));
  EXPECT_EQ(asked_.size(), 2u);
  run(c);
  EXPECT_EQ(askedFrom_.size(), 1u) << "cached";
  c.node.tunnelSourceV6 = ip("2001:db8::2");
  routes_["10.0.1.1"] = RouteHop{ip("10.0.0.253"), "eth0"};  // the new source's router
  neighbours_["10.0.0.254"] = kNextHop;
  neighbours_["10.0.0.253"] = kOther;
  run(c);
  ASSERT_EQ(askedFrom_.size(), 2u) << "a new source: looked up again at the next check, not kRouteRefresh later";
  EXPECT_EQ(askedFrom_[1], (RouteSources{ip("10.0.0.2"), ip("2001:db8::2")}));
  EXPECT_EQ(asked_.size(), 4u);
  EXPECT_EQ(check_.mismatches().at("ipv4"), true) << "judged by the new source's router";
}

// Past the lookup budget, a change of source makes every route due without
// forgetting the hops known: those not looked up yet still count, so a
// family is not judged on the few looked up so far.
TEST_F(NextHopCheckTest, ANewSourceKeepsTheKnownHopsUntilTheirTurn) {
  std::vector<std::string> reals;
  for (size_t i = 0; i < NextHopCheck::kRouteLookupsPerRun + 44; ++i)
    reals.push_back("10.1." + std::to_string(i / 250) + "." + std::to_string(i % 250 + 1));
  Config c = config(reals);
  // The first reals' router has another MAC, the last ones' next_hop_mac:
  // a match only while the last ones' hops count.
  for (size_t i = NextHopCheck::kRouteLookupsPerRun; i < reals.size(); ++i)
    routes_[reals[i]] = RouteHop{ip("10.0.0.253"), "eth0"};
  neighbours_["10.0.0.254"] = kOther;
  neighbours_["10.0.0.253"] = kNextHop;
  const auto t0 = std::chrono::steady_clock::time_point{} + std::chrono::hours(1);
  run(c, t0);
  run(c, t0 + std::chrono::seconds(5));
  ASSERT_EQ(asked_.size(), reals.size());
  EXPECT_EQ(check_.mismatches().at("ipv4"), false);
  log_.take("next_hop_mac_mismatch");  // the first check's, on the first reals alone
  c.node.tunnelSourceV4 = ip("10.0.0.2");
  run(c, t0 + std::chrono::seconds(10));
  EXPECT_EQ(asked_.size(), reals.size() + NextHopCheck::kRouteLookupsPerRun) << "the budget holds";
  EXPECT_EQ(check_.mismatches().at("ipv4"), false) << "judged on part of the reals";
  EXPECT_TRUE(log_.take("next_hop_mac_mismatch").empty());
  run(c, t0 + std::chrono::seconds(15));
  EXPECT_EQ(asked_.size(), 2 * reals.size()) << "the rest at the next check";
}

// The case F9 is about: the router keeps its address and gets another MAC
// (replaced, a NIC swapped). Said once per change, and again once it is
// next_hop_mac again; a reload to the router's new MAC is a match too.
TEST_F(NextHopCheckTest, ARoutersNewMacIsWarnedOnceAndItsReturnSaid) {
  neighbours_["10.0.0.254"] = kNextHop;
  const Config c = config({"10.0.1.1", "10.0.1.2"});
  run(c);
  std::vector<std::string> matches = log_.take("next_hop_mac_matches");
  ASSERT_EQ(matches.size(), 1u);
  EXPECT_NE(matches[0].find("info "), std::string::npos) << matches[0];
  EXPECT_NE(matches[0].find("family=ipv4 gateway=10.0.0.254 next_hop_mac=02:00:00:00:00:01 interface=eth0"),
            std::string::npos)
      << matches[0];
  EXPECT_EQ(check_.mismatches(), (std::map<std::string, bool>{{"ipv4", false}}));
  run(c);
  EXPECT_TRUE(log_.take("next_hop_mac_matches").empty()) << "a match is said when it begins, not at every check";

  neighbours_["10.0.0.254"] = kOther;
  run(c);
  std::vector<std::string> warned = log_.take("next_hop_mac_mismatch");
  ASSERT_EQ(warned.size(), 1u);
  EXPECT_EQ(warned[0].rfind("warning ", 0), 0u) << warned[0];
  EXPECT_NE(warned[0].find("family=ipv4 gateway=10.0.0.254 neighbour_mac=02:00:00:00:00:99 "
                           "next_hop_mac=02:00:00:00:00:01 interface=eth0 detail="),
            std::string::npos)
      << warned[0];
  EXPECT_NE(warned[0].find("may be lost"), std::string::npos) << warned[0];
  EXPECT_EQ(check_.mismatches(), (std::map<std::string, bool>{{"ipv4", true}}));
  run(c);
  EXPECT_TRUE(log_.take("next_hop_mac_mismatch").empty()) << "once per change, not every check";

  // Another MAC again: a new change, said again.
  neighbours_["10.0.0.254"] = "02:00:00:00:00:98";
  run(c);
  warned = log_.take("next_hop_mac_mismatch");
  ASSERT_EQ(warned.size(), 1u);
  EXPECT_NE(warned[0].find("neighbour_mac=02:00:00:00:00:98"), std::string::npos) << warned[0];

  // The entry gone (aged out, the router quiet): no news, the verdict stays.
  neighbours_.erase("10.0.0.254");
  run(c);
  EXPECT_EQ(check_.mismatches().at("ipv4"), true);
  EXPECT_TRUE(log_.take("next_hop_mac_matches").empty());

  // The operator's fix: a reload with the router's MAC.
  neighbours_["10.0.0.254"] = "02:00:00:00:00:98";
  run(config({"10.0.1.1", "10.0.1.2"}, "02:00:00:00:00:98"));
  matches = log_.take("next_hop_mac_matches");
  ASSERT_EQ(matches.size(), 1u);
  EXPECT_NE(matches[0].find("next_hop_mac=02:00:00:00:00:98"), std::string::npos) << matches[0];
  EXPECT_EQ(check_.mismatches().at("ipv4"), false);

  // The router back to the file's old MAC is a mismatch with the new file,
  // and one with a next_hop_mac set back wrongly is said again too.
  neighbours_["10.0.0.254"] = kNextHop;
  run(config({"10.0.1.1", "10.0.1.2"}, "02:00:00:00:00:98"));
  EXPECT_EQ(log_.take("next_hop_mac_mismatch").size(), 1u);
  run(config({"10.0.1.1", "10.0.1.2"}, "02:00:00:00:00:97"));
  EXPECT_EQ(log_.take("next_hop_mac_mismatch").size(), 1u) << "another next_hop_mac: another mismatch";
}

// Reals behind two routers (or an ECMP route): keel sends every frame to
// next_hop_mac, which works while that router routes to them all; so a
// family is off only when next_hop_mac is no router's MAC, and then each
// router is named.
TEST_F(NextHopCheckTest, SeveralRoutersMismatchOnlyWhenNoneHasNextHopMac) {
  routes_["10.0.2.1"] = RouteHop{ip("10.0.0.253"), "eth0"};
  neighbours_["10.0.0.254"] = kNextHop;
  neighbours_["10.0.0.253"] = "02:00:00:00:00:02";
  const Config c = config({"10.0.1.1", "10.0.2.1"});
  run(c);
  EXPECT_EQ(check_.mismatches().at("ipv4"), false);
  EXPECT_TRUE(log_.take("next_hop_mac_mismatch").empty());

  neighbours_["10.0.0.254"] = kOther;
  run(c);
  std::vector<std::string> warned = log_.take("next_hop_mac_mismatch");
  ASSERT_EQ(warned.size(), 2u);
  EXPECT_NE(warned[0].find("gateway=10.0.0.253 neighbour_mac=02:00:00:00:00:02"), std::string::npos) << warned[0];
  EXPECT_NE(warned[1].find("gateway=10.0.0.254 neighbour_mac=02:00:00:00:00:99"), std::string::npos) << warned[1];
  EXPECT_EQ(check_.mismatches().at("ipv4"), true);
}

// Each family on its own: an IPv6 router that matches does not hide an IPv4
// one that does not; a family without ipip reals has no verdict (nor
// l2dsr reals: their frames go to their own MACs).
TEST_F(NextHopCheckTest, FamiliesApartAndOnlyIpipReals) {
  routes_["2001:db8:1::1"] = RouteHop{ip("fe80::1"), "eth0"};
  neighbours_["10.0.0.254"] = kOther;
  neighbours_["fe80::1"] = kNextHop;
  run(config({"10.0.1.1", "2001:db8:1::1"}));
  EXPECT_EQ(check_.mismatches(), (std::map<std::string, bool>{{"ipv4", true}, {"ipv6", false}}));
  std::vector<std::string> warned = log_.take("next_hop_mac_mismatch");
  ASSERT_EQ(warned.size(), 1u);
  EXPECT_NE(warned[0].find("family=ipv4"), std::string::npos);

  run(config({"2001:db8:1::1"}));
  EXPECT_EQ(check_.mismatches(), (std::map<std::string, bool>{{"ipv6", false}}));
  asked_.clear();
  run(config({"10.0.1.1"}, kNextHop, Forwarding::kL2dsr));
  EXPECT_TRUE(check_.mismatches().empty());
  EXPECT_TRUE(asked_.empty()) << "l2dsr reals are not looked up";
}

// No router to compare with: reals on-link (a one-LAN setup where the router
// routes back onto it), routes through another interface, no route. Said
// once at info, with the reason, and again only when the reason changes; the
// gauge shows 0, and a mismatch seen before is cleared.
TEST_F(NextHopCheckTest, NoRouterOnTheInterfaceIsSaidOnceAtInfo) {
  neighbours_["10.0.0.254"] = kOther;
  const Config c = config({"10.0.1.1"});
  run(c);
  EXPECT_EQ(check_.mismatches().at("ipv4"), true);
  log_.take("next_hop_mac_mismatch");

  routes_["10.0.1.1"] = RouteHop{std::nullopt, "eth0"};
  // The route cache is refreshed after kRouteRefresh.
  const auto later = std::chrono::steady_clock::time_point{} + NextHopCheck::kRouteRefresh;
  run(c, later);
  std::vector<std::string> said = log_.take("next_hop_mac_unchecked");
  ASSERT_EQ(said.size(), 1u);
  EXPECT_EQ(said[0].rfind("info ", 0), 0u) << said[0];
  EXPECT_NE(said[0].find("on-link on eth0"), std::string::npos) << said[0];
  EXPECT_EQ(check_.mismatches().at("ipv4"), false);
  run(c, later);
  EXPECT_TRUE(log_.take("next_hop_mac_unchecked").empty());

  routes_["10.0.1.1"] = RouteHop{ip("10.9.0.1"), "eth1"};
  run(c, later + NextHopCheck::kRouteRefresh);
  said = log_.take("next_hop_mac_unchecked");
  ASSERT_EQ(said.size(), 1u);
  EXPECT_NE(said[0].find("routed through eth1"), std::string::npos) << said[0];
  EXPECT_EQ(neighbourReads_, 1) << "no gateway here, no neighbour read";

  // Through a router here again: checked again.
  routes_.erase("10.0.1.1");
  run(c, later + 2 * NextHopCheck::kRouteRefresh);
  EXPECT_EQ(log_.take("next_hop_mac_mismatch").size(), 1u);
  EXPECT_EQ(check_.mismatches().at("ipv4"), true);
}

// A VLAN trunk: the data plane is on eth0, the host's routes leave through
// eth0.100 on it. A router there is compared as one on eth0 (a wrong
// next_hop_mac is a mismatch naming eth0.100), and the reason for reals on
// no such router names the interfaces looked at. Routes through a VLAN of
// another interface are not.
TEST_F(NextHopCheckTest, ARouterOnAnInterfaceOnItIsCompared) {
  uppers_ = {"eth0.100", "eth0.200"};
  routes_["10.0.1.1"] = RouteHop{ip("10.100.0.254"), "eth0.100"};
  neighbours_["10.100.0.254"] = kOther;
  const Config c = config({"10.0.1.1"});
  run(c);
  std::vector<std::string> warned = log_.take("next_hop_mac_mismatch");
  ASSERT_EQ(warned.size(), 1u);
  EXPECT_NE(warned[0].find("gateway=10.100.0.254 neighbour_mac=02:00:00:00:00:99 next_hop_mac=02:00:00:00:00:01 "
                           "interface=eth0.100"),
            std::string::npos)
      << warned[0];
  EXPECT_EQ(check_.mismatches().at("ipv4"), true);

  routes_["10.0.1.1"] = RouteHop{ip("10.9.0.1"), "eth1.100"};
  run(c, std::chrono::steady_clock::time_point{} + NextHopCheck::kRouteRefresh);
  std::vector<std::string> said = log_.take("next_hop_mac_unchecked");
  ASSERT_EQ(said.size(), 1u);
  EXPECT_NE(said[0].find("routed through eth1.100; none is routed through a gateway on eth0 or the interfaces on it "
                         "(eth0.100, eth0.200)"),
            std::string::npos)
      << said[0];
  EXPECT_EQ(check_.mismatches().at("ipv4"), false);
}

// Thousands of reals: a run makes at most kRouteLookupsPerRun route lookups,
// new reals first, then those looked up kRouteRefresh ago; the neighbour
// table is read once a run whatever the number of reals.
TEST_F(NextHopCheckTest, RouteLookupsAreBoundedAndCached) {
  std::vector<std::string> reals;
  for (int i = 0; i < 1000; ++i) reals.push_back("10.1." + std::to_string(i / 250) + "." + std::to_string(i % 250 + 1));
  neighbours_["10.0.0.254"] = kNextHop;
  const Config c = config(reals);
  const auto t0 = std::chrono::steady_clock::time_point{};
  size_t runs = 0;
  for (; check_.routeLookups() < reals.size(); ++runs) {
    const size_t before = check_.routeLookups();
    run(c, t0 + std::chrono::seconds(runs));
    ASSERT_LE(check_.routeLookups() - before, NextHopCheck::kRouteLookupsPerRun);
    ASSERT_GT(check_.routeLookups(), before);
  }
  EXPECT_EQ(runs, (reals.size() + NextHopCheck::kRouteLookupsPerRun - 1) / NextHopCheck::kRouteLookupsPerRun);
  EXPECT_EQ(std::set<IpAddress>(asked_.begin(), asked_.end()).size(), reals.size()) << "each looked up once";
  EXPECT_EQ(neighbourReads_, static_cast<int>(runs));
  EXPECT_EQ(log_.take("next_hop_mac_matches").size(), 1u);

  // Cached: nothing asked until kRouteRefresh, except a new real.
  asked_.clear();
  run(c, t0 + std::chrono::seconds(30));
  EXPECT_TRUE(asked_.empty());
  Config more = c;
  RealConfig added;
  added.address = ip("10.2.0.1");
  more.services[0].reals.push_back(added);
  run(more, t0 + std::chrono::seconds(31));
  ASSERT_EQ(asked_.size(), 1u);
  EXPECT_EQ(asked_[0], ip("10.2.0.1"));

  // A minute on: the oldest again, within the budget.
  asked_.clear();
  run(more, t0 + NextHopCheck::kRouteRefresh + std::chrono::seconds(1));
  EXPECT_EQ(asked_.size(), NextHopCheck::kRouteLookupsPerRun);
  EXPECT_EQ(asked_[0], ip(reals[0]));
}

}  // namespace
}  // namespace keel

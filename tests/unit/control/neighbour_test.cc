// SPDX-License-Identifier: Apache-2.0
// resolveNeighbours() against the kernel's neighbour table, in a private
// network namespace (root only; skips otherwise): only the asked
// interface's usable entries of the asked addresses are returned, and
// those of the interfaces stacked on it (a VLAN trunk's eth0.100; here a
// macvlan, as this kernel may lack 8021q). And routesTo() against its
// routing table: each address's gateway (none on-link) and output
// interface, as next_hop_mac's check reads them; and the checks that read
// the data plane's interfaces (own addresses, next_hop_mac) on a stacked
// interface.
#include <gtest/gtest.h>
#include <sched.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "control/config.h"
#include "daemon/neighbour.h"
#include "daemon/next_hop_check.h"

namespace keel {
namespace {

// Runs before main (single-threaded, as unshare requires).
const bool kIsolated = geteuid() == 0 && ::unshare(CLONE_NEWNET) == 0;

bool run(const std::string& command) { return std::system((command + " >/dev/null 2>&1").c_str()) == 0; }

IpAddress ip(const std::string& s) { return *IpAddress::parse(s); }

class NeighbourTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!kIsolated) {
      if (geteuid() == 0) FAIL() << "root got no private network namespace";  // never a silent skip as root
      GTEST_SKIP() << "needs root for a private network namespace";
    }
    // Two links, each with an entry for the same two addresses under
    // another MAC, so an entry of the wrong interface would show.
    ASSERT_TRUE(run("ip link add nba type veth peer name nbb"));
    ASSERT_TRUE(run("ip link add nbc type veth peer name nbd"));
    for (const char* l : {"nba", "nbb", "nbc", "nbd"}) ASSERT_TRUE(run(std::string("ip link set ") + l + " up"));
    ASSERT_TRUE(run("ip neigh replace 10.9.0.5 lladdr 02:00:00:00:0a:05 dev nba nud permanent"));
    ASSERT_TRUE(run("ip neigh replace fd00:9::5 lladdr 02:00:00:00:0a:65 dev nba nud permanent"));
    ASSERT_TRUE(run("ip neigh replace 10.9.0.5 lladdr 02:00:00:00:0c:05 dev nbc nud permanent"));
    ASSERT_TRUE(run("ip neigh replace fd00:9::5 lladdr 02:00:00:00:0c:65 dev nbc nud permanent"));
    ASSERT_TRUE(run("ip neigh replace 10.9.0.6 lladdr 02:00:00:00:0c:06 dev nbc nud permanent"));
    // Not usable: an entry still being resolved has no MAC to send to.
    ASSERT_TRUE(run("ip neigh replace 10.9.0.7 dev nba nud incomplete"));
  }
  void TearDown() override {
    run("ip link del nbv");  // gone with nba too; said for a test that moved it
    run("ip link del nba");
    run("ip link del nbc");
  }

  // A macvlan nbv on nba holding the host's address and a neighbour entry,
  // as eth0.100 on a trunk whose eth0 carries the data plane; nbc's entry
  // for the same address has another MAC, so a read of the wrong interface
  // would show.
  static void stackMacvlan() {
    ASSERT_TRUE(run("ip link add nbv link nba type macvlan mode bridge"));
    ASSERT_TRUE(run("ip link set nbv up"));
    ASSERT_TRUE(run("ip addr add 10.9.5.1/24 dev nbv"));
    ASSERT_TRUE(run("ip addr add fd00:95::1/64 dev nbv nodad"));
    ASSERT_TRUE(run("ip neigh replace 10.9.5.5 lladdr 02:00:00:00:0b:05 dev nbv nud permanent"));
    ASSERT_TRUE(run("ip neigh replace 10.9.5.5 lladdr 02:00:00:00:0c:55 dev nbc nud permanent"));
  }
};

// The data plane's interfaces are nba and what is stacked on it: a macvlan
// (as a VLAN device), not nba's veth peer nbb (whose IFLA_LINK is nba too),
// nor what is stacked on another interface.
TEST_F(NeighbourTest, TheInterfacesOnItAreItsStackedDevices) {
  EXPECT_TRUE(interfacesOn("nba").empty()) << "nbb is nba's peer, not on it";
  stackMacvlan();
  ASSERT_TRUE(run("ip link add nbw link nbc type macvlan mode bridge"));
  EXPECT_EQ(interfacesOn("nba"), std::vector<std::string>{"nbv"});
  EXPECT_EQ(interfacesOn("nbc"), std::vector<std::string>{"nbw"});
  EXPECT_TRUE(interfacesOn("nbv").empty());
  EXPECT_TRUE(interfacesOn("nosuch0").empty());
}

// l2dsr on a trunk: a real's entry on the interface on dataplane.interface
// is found; the same address's entry on another interface is not taken.
TEST_F(NeighbourTest, EntriesOfTheInterfacesOnItAreRead) {
  stackMacvlan();
  const std::map<IpAddress, MacAddress> a = resolveNeighbours({ip("10.9.5.5"), ip("10.9.0.5")}, "nba", 0, false);
  ASSERT_EQ(a.size(), 2u);
  EXPECT_EQ(a.at(ip("10.9.5.5")).toString(), "02:00:00:00:0b:05");
  EXPECT_EQ(a.at(ip("10.9.0.5")).toString(), "02:00:00:00:0a:05");
  const std::map<IpAddress, MacAddress> c = resolveNeighbours({ip("10.9.5.5")}, "nbc", 0, false);
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c.at(ip("10.9.5.5")).toString(), "02:00:00:00:0c:55");
  EXPECT_TRUE(resolveNeighbours({ip("10.9.5.5")}, "nbb", 0, false).empty()) << "nba's peer reads no nbv";
}

// A real missing from the table is asked for where its route leaves: on
// the macvlan that has its subnet (a trunk: tagged, on eth0.100), not
// untagged on nba. The kernel makes the entry as it sends, so it is there
// when the call returns.
TEST_F(NeighbourTest, AMissingRealIsAskedForThroughTheInterfaceItIsOnLinkOn) {
  stackMacvlan();
  EXPECT_TRUE(resolveNeighbours({ip("10.9.5.6")}, "nba", 0, true).empty());
  FILE* show = ::popen("ip -4 neigh show 10.9.5.6", "r");
  ASSERT_NE(show, nullptr);
  char line[256] = "";
  const bool any = std::fgets(line, sizeof line, show) != nullptr;
  ::pclose(show);
  ASSERT_TRUE(any) << "no neighbour entry made for 10.9.5.6";
  EXPECT_NE(std::string(line).find("dev nbv"), std::string::npos) << line;
}

// A VIP or real that is the address of an interface on dataplane.interface
// is this host's own: refused, naming that interface.
TEST_F(NeighbourTest, TheAddressesOfTheInterfacesOnItAreOwn) {
  stackMacvlan();
  ASSERT_TRUE(run("ip addr add 10.9.0.1/24 dev nba"));
  ConfigOptions host;
  host.interfaceAddresses = interfaceAddresses;
  host.interfacesOn = interfacesOn;
  const OwnAddresses own = ownAddresses(host, "nba");
  EXPECT_EQ(own.at(ip("10.9.5.1")), "nbv");
  EXPECT_EQ(own.at(ip("fd00:95::1")), "nbv");
  EXPECT_EQ(own.at(ip("10.9.0.1")), "nba");
  const std::string vip = vipOwnAddressProblem(ip("10.9.5.1"), 80, NodeConfig{}, own);
  EXPECT_NE(vip.find("10.9.5.1 is an address of nbv"), std::string::npos) << vip;
  EXPECT_FALSE(realOwnAddressProblem(ip("fd00:95::1"), NodeConfig{}, own).empty());
  EXPECT_TRUE(vipOwnAddressProblem(ip("10.9.5.2"), 80, NodeConfig{}, own).empty());
  EXPECT_FALSE(ownAddresses(host, "nbc").count(ip("10.9.5.1")));
}

// A real that is not found names the tables read: the interface and those on it.
TEST_F(NeighbourTest, APendingRealNamesTheInterfacesRead) {
  stackMacvlan();
  const MacResolver read = [](const std::vector<IpAddress>& reals, const std::string& iface) {
    return resolveNeighbours(reals, iface, 0, false);
  };
  const MacLookup lookup = lookUpMacs({ip("10.9.5.5"), ip("10.9.5.9")}, "nba", read, interfacesOn);
  EXPECT_EQ(resolveRealMac("web", ip("10.9.5.5"), lookup).mac->toString(), "02:00:00:00:0b:05");
  EXPECT_EQ(resolveRealMac("web", ip("10.9.5.9"), lookup).pending,
            "l2dsr: 10.9.5.9 not in the neighbour table of nba or the interfaces on it (nbv)");
}

// next_hop_mac on a trunk: the ipip reals' router is routed through the
// interface on dataplane.interface, and a wrong next_hop_mac is a mismatch
// there, not "unchecked".
TEST_F(NeighbourTest, NextHopMacIsComparedThroughTheInterfacesOnIt) {
  stackMacvlan();
  ASSERT_TRUE(run("ip route add 10.50.0.0/16 via 10.9.5.254 dev nbv"));
  ASSERT_TRUE(run("ip neigh replace 10.9.5.254 lladdr 02:00:00:00:0b:fe dev nbv nud permanent"));
  NextHopCheck check(routesTo,
                     [](const std::vector<IpAddress>& gateways, const std::string& iface) {
                       return resolveNeighbours(gateways, iface, 0, false);
                     },
                     interfacesOn);
  Config c;
  c.dataplane.interface = "nba";
  c.node.nextHopMac = *MacAddress::parse("02:00:00:00:00:01");
  ServiceConfig svc;
  svc.name = "web";
  svc.vip = ip("192.0.2.10");
  svc.port = 80;
  svc.forwarding = Forwarding::kIpip;
  RealConfig real;
  real.address = ip("10.50.1.1");
  svc.reals.push_back(real);
  c.services.push_back(svc);
  check.run(c, "nba");
  EXPECT_EQ(check.mismatches(), (std::map<std::string, bool>{{"ipv4", true}}));
  c.node.nextHopMac = *MacAddress::parse("02:00:00:00:0b:fe");
  check.run(c, "nba");
  EXPECT_EQ(check.mismatches(), (std::map<std::string, bool>{{"ipv4", false}}));
}

TEST_F(NeighbourTest, OnlyTheInterfacesUsableEntriesOfTheAskedAddresses) {
  const std::map<IpAddress, MacAddress> a =
      resolveNeighbours({ip("10.9.0.5"), ip("fd00:9::5"), ip("10.9.0.6"), ip("10.9.0.7")}, "nba", 0, false);
  ASSERT_EQ(a.size(), 2u);
  EXPECT_EQ(a.at(ip("10.9.0.5")).toString(), "02:00:00:00:0a:05");
  EXPECT_EQ(a.at(ip("fd00:9::5")).toString(), "02:00:00:00:0a:65");

  const std::map<IpAddress, MacAddress> c = resolveNeighbours({ip("10.9.0.5"), ip("10.9.0.6")}, "nbc", 0, false);
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(c.at(ip("10.9.0.5")).toString(), "02:00:00:00:0c:05");
  EXPECT_EQ(c.at(ip("10.9.0.6")).toString(), "02:00:00:00:0c:06");

  EXPECT_TRUE(resolveNeighbours({ip("10.9.0.5")}, "nosuch0", 0, false).empty());
}

// A host whose neighbour table is large on other interfaces (a router's
// many segments): the asked interface's entries are found among them. The
// kernel filters the dump by interface (NDA_IFINDEX), so keeld's periodic
// read of l2dsr reals' MACs does not copy the whole table out.
TEST_F(NeighbourTest, FoundAmongManyEntriesOfAnotherInterface) {
  FILE* batch = ::popen("ip -batch - >/dev/null 2>&1", "w");
  ASSERT_NE(batch, nullptr);
  for (int i = 0; i < 4000; ++i)
    std::fprintf(batch, "neigh replace 10.8.%d.%d lladdr 02:00:00:01:%02x:%02x dev nbc nud permanent\n", i / 250,
                 i % 250 + 1, i / 256, i % 256);
  ASSERT_EQ(::pclose(batch), 0);
  const std::map<IpAddress, MacAddress> a = resolveNeighbours({ip("10.9.0.5"), ip("10.8.0.1")}, "nba", 0, false);
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a.at(ip("10.9.0.5")).toString(), "02:00:00:00:0a:05");
  const std::map<IpAddress, MacAddress> c = resolveNeighbours({ip("10.8.15.250"), ip("10.9.0.6")}, "nbc", 0, false);
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(c.at(ip("10.8.15.250")).toString(), "02:00:00:01:0f:9f");
}

// The routes next_hop_mac's check follows: through a gateway (IPv4, IPv6
// through a link-local router, IPv4 through an IPv6 one), on-link, through
// another interface, and none.
TEST_F(NeighbourTest, RoutesGiveTheGatewayAndTheInterface) {
  ASSERT_TRUE(run("ip addr add 10.9.0.1/24 dev nba"));
  ASSERT_TRUE(run("ip addr add fd00:9::1/64 dev nba nodad"));
  ASSERT_TRUE(run("ip addr add 10.7.0.1/24 dev nbc"));
  ASSERT_TRUE(run("ip route add 10.50.0.0/16 via 10.9.0.254 dev nba"));
  ASSERT_TRUE(run("ip route add 10.60.0.0/16 via 10.7.0.254 dev nbc"));
  ASSERT_TRUE(run("ip -6 route add 2001:db8:50::/48 via fe80::1 dev nba"));
  ASSERT_TRUE(run("ip route add 10.70.0.0/16 via inet6 fe80::2 dev nba"));
  const std::map<IpAddress, RouteHop> r =
      routesTo({ip("10.50.1.1"), ip("10.60.1.1"), ip("10.9.0.5"), ip("2001:db8:50::5"), ip("10.70.0.9"),
                ip("10.99.0.1"), ip("2001:db8:99::1")});
  EXPECT_EQ(r.at(ip("10.50.1.1")), (RouteHop{ip("10.9.0.254"), "nba"}));
  EXPECT_EQ(r.at(ip("10.60.1.1")), (RouteHop{ip("10.7.0.254"), "nbc"}));
  EXPECT_EQ(r.at(ip("10.9.0.5")), (RouteHop{std::nullopt, "nba"}));
  EXPECT_EQ(r.at(ip("2001:db8:50::5")), (RouteHop{ip("fe80::1"), "nba"}));
  EXPECT_EQ(r.at(ip("10.70.0.9")), (RouteHop{ip("fe80::2"), "nba"}));
  EXPECT_FALSE(r.count(ip("10.99.0.1"))) << "no route";
  EXPECT_FALSE(r.count(ip("2001:db8:99::1"))) << "no route";
  EXPECT_TRUE(routesTo({}).empty());
}

// Source-based policy routing: keel's outer source routed by a table of its
// own through another router. A lookup from that source (RTA_SRC) gives
// that router; an IPv4 source this host lacks, which the kernel would
// refuse to look anything up from, is left out (the main table's router);
// an IPv6 one is used as given.
TEST_F(NeighbourTest, RoutesFollowThePolicyRulesOfTheSource) {
  struct Rules {
    ~Rules() {
      run("ip rule del from 10.9.0.2 table 150");
      run("ip -6 rule del from fd00:9::2 table 150");
      run("ip -6 rule del from 2001:db8:77::1 table 150");
    }
  } rules;
  ASSERT_TRUE(run("ip addr add 10.9.0.1/24 dev nba"));
  ASSERT_TRUE(run("ip addr add 10.9.0.2/24 dev nba"));
  ASSERT_TRUE(run("ip addr add fd00:9::1/64 dev nba nodad"));
  ASSERT_TRUE(run("ip addr add fd00:9::2/64 dev nba nodad"));
  ASSERT_TRUE(run("ip route add 10.50.0.0/16 via 10.9.0.254 dev nba"));
  ASSERT_TRUE(run("ip -6 route add 2001:db8:50::/48 via fd00:9::fe dev nba"));
  ASSERT_TRUE(run("ip route add 10.50.0.0/16 via 10.9.0.253 dev nba table 150"));
  ASSERT_TRUE(run("ip -6 route add 2001:db8:50::/48 via fd00:9::fd dev nba table 150"));
  ASSERT_TRUE(run("ip rule add from 10.9.0.2 table 150"));
  ASSERT_TRUE(run("ip -6 rule add from fd00:9::2 table 150"));
  ASSERT_TRUE(run("ip -6 rule add from 2001:db8:77::1 table 150"));
  const IpAddress v4 = ip("10.50.1.1"), v6 = ip("2001:db8:50::5");
  auto hops = [&](const RouteSources& from) {
    std::map<IpAddress, RouteHop> r = routesTo({v4, v6}, from);
    return std::pair{r.count(v4) ? r.at(v4) : RouteHop{}, r.count(v6) ? r.at(v6) : RouteHop{}};
  };
  const RouteHop main4{ip("10.9.0.254"), "nba"}, main6{ip("fd00:9::fe"), "nba"};
  const RouteHop table4{ip("10.9.0.253"), "nba"}, table6{ip("fd00:9::fd"), "nba"};
  EXPECT_EQ(hops({}), std::pair(main4, main6));
  EXPECT_EQ(hops({ip("10.9.0.2"), ip("fd00:9::2")}), std::pair(table4, table6));
  EXPECT_EQ(hops({ip("10.9.0.1"), ip("fd00:9::1")}), std::pair(main4, main6)) << "no rule for these";
  EXPECT_EQ(hops({ip("192.0.2.77"), ip("2001:db8:77::1")}), std::pair(main4, table6))
      << "an IPv4 source not this host's is left out; an IPv6 one is used";
  // A source the policy deliberately leaves without a route has none: no
  // lookup without the source stands in for it.
  ASSERT_TRUE(run("ip route add unreachable 10.50.0.0/16 table 151"));
  ASSERT_TRUE(run("ip rule add from 10.9.0.2 table 151 pref 100"));
  EXPECT_FALSE(routesTo({v4}, RouteSources{ip("10.9.0.2"), std::nullopt}).count(v4));
  run("ip rule del from 10.9.0.2 table 151 pref 100");
}

// A local address is one the kernel routes as local, not one a socket may
// bind to: under ip_nonlocal_bind (usual on balancers) any address binds.
TEST_F(NeighbourTest, LocalAddressesAreTheKernelsLocalRoutes) {
  ASSERT_TRUE(run("ip addr add 10.9.0.2/24 dev nba"));
  ASSERT_TRUE(run("ip addr add fd00:9::2/64 dev nba nodad"));
  ASSERT_TRUE(run("ip route add local 10.123.0.0/24 dev lo"));  // AnyIP
  ASSERT_TRUE(run("sysctl -qw net.ipv4.ip_nonlocal_bind=1"));
  ASSERT_TRUE(run("sysctl -qw net.ipv6.ip_nonlocal_bind=1"));
  EXPECT_TRUE(addressIsLocal(ip("10.9.0.2")));
  EXPECT_TRUE(addressIsLocal(ip("fd00:9::2")));
  EXPECT_TRUE(addressIsLocal(ip("10.123.0.77")));
  EXPECT_FALSE(addressIsLocal(ip("192.0.2.77")));
  EXPECT_FALSE(addressIsLocal(ip("10.9.0.77"))) << "on the link, not this host's";
  EXPECT_FALSE(addressIsLocal(ip("2001:db8:77::1")));
  run("sysctl -qw net.ipv4.ip_nonlocal_bind=0");
  run("sysctl -qw net.ipv6.ip_nonlocal_bind=0");
  run("ip route del local 10.123.0.0/24 dev lo");
}

}  // namespace
}  // namespace keel

// SPDX-License-Identifier: Apache-2.0
// Config parser: each bad snippet must produce a message naming the line and
// key path and saying what is wrong; a valid file must round-trip into the
// structs exactly.
#include "common/duration.h"
#include "common/devargs.h"
#include "control/config.h"
#include "control/eal_args.h"
#include "control/eal_lcores.h"

#include <gtest/gtest.h>
#include <malloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include <map>
#include <set>
#include <string>
#include <tuple>
#include <vector>

namespace keel {
namespace {

std::string joinErrors(const std::vector<std::string>& errors) {
  std::string out;
  for (const auto& e : errors) out += e + "\n";
  return out;
}

const char* kValid = R"(dataplane: {kind: xdp, interface: eth0, xdp_mode: generic}
node:
  tunnel_source_v4: 10.0.0.2
  tunnel_source_v6: "fd00::2"
  next_hop_mac: "02:00:00:00:00:01"
  hash_source_v4: "172.16.0.0/16"
  udp_idle_timeout: 45s
  tcp_idle_timeout: 2m
limits: {max_services: 16, max_reals: 64, conn_table_size: 5000}
services:
  - name: web
    vip: 192.0.2.10
    port: 80
    protocol: tcp
    forwarding: ipip
    scheduler: maglev-src
    ring_size: 655373
    health: {type: tcp, interval: 1s}
    reals:
      - {address: 10.0.1.11, weight: 100}
      - {address: "fd00:1::12", weight: 0, health: {port: 8080}}
  - name: dns.v6
    vip: "2001:db8::53"
    port: 0
    protocol: udp
    forwarding: l2dsr
    reals:
      - {address: 10.0.2.1, mac: "02:00:00:00:02:01"}
      - {address: 10.0.2.2}
)";

ConfigOptions resolverFor(std::string expectIface) {
  ConfigOptions o;
  o.resolveMac = [expectIface](const std::vector<IpAddress>& reals, const std::string& iface) {
    std::map<IpAddress, MacAddress> found;
    for (const IpAddress& a : reals)
      if (iface == expectIface && a.toString() == "10.0.2.2") found[a] = MacAddress({0x02, 0, 0, 0, 0x02, 0x02});
    return found;
  };
  return o;
}

// Every l2dsr real without a mac, of every service, goes to the resolver
// in one call (so their neighbour lookups and waits overlap), and each gets
// its own MAC or its own error.
TEST(Config, L2dsrMacsAreResolvedInOneCallForTheWholeFile) {
  std::vector<std::vector<std::string>> calls;
  ConfigOptions o;
  o.resolveMac = [&calls](const std::vector<IpAddress>& reals, const std::string& iface) {
    calls.emplace_back();
    std::map<IpAddress, MacAddress> found;
    for (const IpAddress& a : reals) {
      calls.back().push_back(a.toString() + "@" + iface);
      if (a.toString() != "10.0.1.13") found[a] = MacAddress({0x02, 0, 0, 0, 0x01, a.bytes()[3]});
    }
    return found;
  };
  ConfigResult r = parseConfig(
      "dataplane: {kind: xdp, interface: eth0}\nservices:\n"
      "  - {name: a, vip: 192.0.2.1, port: 80, protocol: tcp, forwarding: l2dsr,\n"
      "     reals: [{address: 10.0.1.11}, {address: 10.0.1.12, mac: \"02:00:00:00:09:09\"}]}\n"
      "  - {name: b, vip: 192.0.2.2, port: 80, protocol: tcp, forwarding: l2dsr,\n"
      "     reals: [{address: 10.0.1.13}, {address: 10.0.1.14}]}\n",
      "keel.yaml", o);
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0], (std::vector<std::string>{"10.0.1.11@eth0", "10.0.1.13@eth0", "10.0.1.14@eth0"}));
  ASSERT_TRUE(r.ok()) << joinErrors(r.errors);
  ASSERT_EQ(r.warnings.size(), 1u) << joinErrors(r.warnings);
  EXPECT_NE(r.warnings[0].find("l2dsr real 10.0.1.13 of service b has no mac"), std::string::npos) << r.warnings[0];
  EXPECT_EQ(r.config->services[1].reals[0].macPending, "l2dsr: 10.0.1.13 not in the neighbour table of eth0");
  EXPECT_FALSE(r.config->services[1].reals[0].mac);
  EXPECT_TRUE(r.config->services[1].reals[1].macPending.empty());

  calls.clear();
  r = parseConfig(
      "dataplane: {kind: xdp, interface: eth0}\nservices:\n"
      "  - {name: a, vip: 192.0.2.1, port: 80, protocol: tcp, forwarding: l2dsr,\n"
      "     reals: [{address: 10.0.1.11}, {address: 10.0.1.14}]}\n",
      "keel.yaml", o);
  ASSERT_TRUE(r.ok()) << joinErrors(r.errors);
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(r.config->services[0].reals[0].mac->toString(), "02:00:00:00:01:0b");
  EXPECT_EQ(r.config->services[0].reals[1].mac->toString(), "02:00:00:00:01:0e");
  EXPECT_TRUE(r.config->services[0].reals[1].macResolved);
}

// With a neighbour table to read (keeld's host checks), an l2dsr real it
// does not know is named as not on-link.
// The neighbour table can hold any lladdr (a permanent entry): a group or
// zero one is refused as a written mac: would be, with what the table says.
TEST(Config, AGroupMacFromTheNeighbourTableIsRefused) {
  ConfigOptions o;
  o.resolveMac = [](const std::vector<IpAddress>& reals, const std::string&) {
    std::map<IpAddress, MacAddress> found;
    for (const IpAddress& a : reals) found[a] = MacAddress({0x03, 0xbf, 0x0a, 0x00, 0x01, 0x05});
    return found;
  };
  ConfigResult r = parseConfig(
      "dataplane: {kind: xdp, interface: eth0}\nservices:\n"
      "  - {name: dsr, vip: 192.0.2.1, port: 80, protocol: tcp, forwarding: l2dsr,\n"
      "     reals: [{address: 10.0.1.11}]}\n",
      "keel.yaml", o);
  ASSERT_FALSE(r.ok());
  ASSERT_EQ(r.errors.size(), 1u) << joinErrors(r.errors);
  EXPECT_NE(r.errors[0].find("l2dsr real 10.0.1.11 of service dsr has no mac and its neighbour-table entry on "
                             "eth0 is 03:bf:0a:00:01:05, not a unicast MAC"),
            std::string::npos)
      << r.errors[0];
}

// An l2dsr real the neighbour table lacks (off, cable out, not on-link yet)
// is a state, not a mistake in the file: the file passes, the real has no
// MAC and waits for one (keeld holds it down), and a warning says so.
TEST(Config, AnL2dsrRealNotInTheNeighbourTableIsAcceptedWithAWarning) {
  ConfigResult r = parseConfig(
      "dataplane: {kind: xdp, interface: eth0}\nservices:\n"
      "  - {name: dsr, vip: 192.0.2.1, port: 80, protocol: tcp, forwarding: l2dsr,\n"
      "     reals: [{address: 10.0.1.11}]}\n",
      "keel.yaml", resolverFor("eth0"));
  ASSERT_TRUE(r.ok()) << joinErrors(r.errors);
  const RealConfig& real = r.config->services[0].reals[0];
  EXPECT_FALSE(real.mac);
  EXPECT_FALSE(real.macResolved);
  EXPECT_EQ(real.macPending, "l2dsr: 10.0.1.11 not in the neighbour table of eth0");
  ASSERT_EQ(r.warnings.size(), 1u) << joinErrors(r.warnings);
  EXPECT_EQ(r.warnings[0],
            "keel.yaml:4: services[0].reals[0].address: l2dsr real 10.0.1.11 of service dsr has no mac and is "
            "not in the neighbour table of eth0 (not reachable on-link?): held down until keeld finds it there; "
            "give its mac (mac: in keel.yaml, --mac in keelctl) or, if it is on-link, ping it from this host so "
            "the table has it");
}

// Connecting to a Unix socket takes write permission on it: a mode that
// gives others write lets every local user drive keeld.
// yaml-cpp gives up at 500 levels with "bad file": said as what it is.
TEST(Config, NestingPastTheReadersDepthIsSaidAsSuch) {
  ConfigResult r = parseConfig("dataplane: {kind: xdp, interface: eth0}\nnode: " + std::string(600, '[') +
                                   std::string(600, ']') + "\n",
                               "keel.yaml");
  EXPECT_EQ(r.errors, std::vector<std::string>{"keel.yaml:2: YAML syntax error: lists or mappings nested 500 "
                                               "levels deep, where the YAML reader stops (keel.yaml's own "
                                               "structure is a few levels deep)"});
}

// A node: key that is given but wrong is one error, at its line: the ipip
// service that needs it does not also say it is missing (it did: three
// errors for one wrong tunnel_source_v4). A key not given at all still is.
TEST(Config, AWrongNodeKeyIsNotAlsoReportedMissing) {
  ConfigResult r = parseConfig(
      "dataplane: {kind: xdp, interface: eth0}\n"
      "node: {tunnel_source_v4: 127.0.0.1, next_hop_mac: zz}\n"
      "services:\n"
      "  - {name: web, vip: 192.0.2.10, port: 80, protocol: tcp, forwarding: ipip,\n"
      "     reals: [{address: 10.0.1.11}, {address: \"2001:db8::11\"}]}\n",
      "keel.yaml");
  EXPECT_EQ(r.errors,
            (std::vector<std::string>{
                "keel.yaml:2: node.tunnel_source_v4: cannot be a loopback address (no router forwards a tunnel "
                "from it), got 127.0.0.1",
                "keel.yaml:2: node.next_hop_mac: must be a MAC address like \"02:00:00:00:00:01\", got \"zz\"",
                "keel.yaml:5: services[0].reals[1].address: ipip to an IPv6 real needs node.tunnel_source_v6"}));
}

// A config assigned over and over from fresh parses (each commit does:
// Registry's state.config, DaemonBackend's effective_) keeps its heap: the
// health blocks are rebound, not assigned through yaml-cpp's
// Node::operator=, which merged each new parse's memory holder into the
// old one, so every document ever parsed stayed alive (scale review:
// ~6.5 MB a reload at 10,000 reals, never given back).
TEST(Config, AssigningFreshConfigsAgainAndAgainKeepsTheHeap) {
  std::string reals;
  for (int i = 0; i < 50; ++i)
    reals += "      - {address: 10.0.1." + std::to_string(i + 1) + (i % 2 ? ", health: {port: 81}" : "") + "}\n";
  const std::string text = "dataplane: {kind: xdp, interface: eth0}\n"
                           "node: {tunnel_source_v4: 10.0.0.2, next_hop_mac: \"02:00:00:00:00:01\"}\n"
                           "services:\n"
                           "  - name: web\n    vip: 192.0.2.10\n    port: 80\n    protocol: tcp\n"
                           "    health: {type: tcp}\n    reals:\n" +
                           reals;
  Config running;
  auto commit = [&] {
    ConfigResult r = parseConfig(text, "keel.yaml");
    ASSERT_TRUE(r.ok()) << joinErrors(r.errors);
    running = *r.config;
  };
  for (int i = 0; i < 50; ++i) commit();  // warm up the allocator
  const size_t before = mallinfo2().uordblks;
  for (int i = 0; i < 400; ++i) commit();
  const size_t after = mallinfo2().uordblks;
  EXPECT_LT(after, before + (1u << 20)) << "heap in use grew from " << before << " to " << after << " bytes";
  EXPECT_EQ(running.services[0].reals[1].health.node()["port"].Scalar(), "81");
}

TEST(Config, ControlModeOpenToEveryoneIsWarnedAbout) {
  const std::string base = "dataplane: {kind: xdp, interface: eth0}\nservices: []\n";
  ConfigResult r = parseConfig(base + "control: {mode: \"0666\"}\n", "keel.yaml", resolverFor("eth0"));
  ASSERT_TRUE(r.ok()) << joinErrors(r.errors);
  EXPECT_EQ(r.config->control.mode, 0666u);
  ASSERT_EQ(r.warnings.size(), 1u) << joinErrors(r.warnings);
  EXPECT_EQ(r.warnings[0],
            "keel.yaml:3: control.mode: \"0666\" lets every local user drive keeld (remove reals, drain, stop "
            "it): give the socket to a group (control.group) with \"0660\" instead, and others the read-only "
            "socket (control.readonly)");
  for (const char* mode : {"0660", "0600", "0664"}) {
    r = parseConfig(base + "control: {mode: \"" + mode + "\"}\n", "keel.yaml", resolverFor("eth0"));
    ASSERT_TRUE(r.ok()) << joinErrors(r.errors);
    EXPECT_TRUE(r.warnings.empty()) << mode << ": " << joinErrors(r.warnings);
  }
}

// control.mode is octal digits alone: strtoul also took a sign or
// leading blanks, and "-0" gave mode 000.
TEST(Config, ControlModeIsOctalDigitsOnly) {
  const std::string base = "dataplane: {kind: xdp, interface: eth0}\nservices: []\n";
  for (const char* mode : {"+0660", " 0660", "-0", "0x1a0", "0660 ", "0669", "01000", ""}) {
    ConfigResult r = parseConfig(base + "control: {mode: \"" + mode + "\"}\n", "keel.yaml");
    EXPECT_EQ(joinErrors(r.errors), "keel.yaml:3: control.mode: must be an octal mode like \"0660\" (quoted; the "
                                    "digits 0 to 7 only, at most 0777), got \"" + std::string(mode) + "\"\n")
        << "[" << mode << "]";
  }
  for (const auto& [mode, value] : std::vector<std::pair<const char*, uint32_t>>{
           {"0660", 0660}, {"660", 0660}, {"0", 0}, {"0777", 0777}, {"00640", 0640}}) {
    ConfigResult r = parseConfig(base + "control: {mode: \"" + mode + "\"}\n", "keel.yaml");
    ASSERT_TRUE(r.ok()) << mode << "\n" << joinErrors(r.errors);
    EXPECT_EQ(r.config->control.mode, value) << mode;
  }
}

// control.readonly: a second socket that serves only what changes nothing;
// its keys are checked as control's own, at their lines.
TEST(Config, ControlReadonlySocket) {
  const std::string base = "dataplane: {kind: xdp, interface: eth0}\nservices: []\n";
  ConfigResult r = parseConfig(base + "control:\n  readonly: {socket: /run/keel/ro.sock, mode: \"0666\"}\n",
                               "keel.yaml", resolverFor("eth0"));
  ASSERT_TRUE(r.ok()) << joinErrors(r.errors);
  EXPECT_EQ(r.config->control.readonlySocket, "/run/keel/ro.sock");
  EXPECT_EQ(r.config->control.readonlyMode, 0666u);
  EXPECT_EQ(r.config->control.readonlyGroup, "");
  EXPECT_TRUE(r.warnings.empty()) << joinErrors(r.warnings);  // read-only: open to all is a choice

  r = parseConfig(base, "keel.yaml", resolverFor("eth0"));
  ASSERT_TRUE(r.ok()) << joinErrors(r.errors);
  EXPECT_EQ(r.config->control.readonlySocket, "") << "no read-only socket unless asked for";

  // Each bad block is refused at its line, naming the key.
  const std::vector<std::pair<std::string, std::vector<std::string>>> bad = {
      {"  readonly: {mode: \"0660\"}\n", {"keel.yaml:4: control.readonly.socket: required key missing"}},
      {"  readonly:\n    socket: /run/keel/keel.sock\n",
       {"keel.yaml:5: control.readonly.socket: is control.socket's path; the read-only socket needs a path of "
        "its own"}},
      {"  readonly:\n    socket: /run//keel/./x/../keel.sock\n",
       {"keel.yaml:5: control.readonly.socket: is control.socket's path; the read-only socket needs a path of "
        "its own"}},
      {"  readonly: {socket: relative.sock, mode: \"999\"}\n",
       {"keel.yaml:4: control.readonly.socket: must be an absolute path shorter than 108 bytes, got "
        "\"relative.sock\"",
        "keel.yaml:4: control.readonly.mode: must be an octal mode like \"0660\" (quoted; the digits 0 to 7 only, "
        "at most 0777), got \"999\""}},
  };
  for (const auto& [yaml, errors] : bad) {
    r = parseConfig(base + "control:\n" + yaml, "keel.yaml", resolverFor("eth0"));
    EXPECT_EQ(r.errors, errors) << yaml;
  }
  r = parseConfig(base + "control:\n  readonly: {socket: /run/keel/ro.sock, user: x}\n", "keel.yaml",
                  resolverFor("eth0"));
  ASSERT_EQ(r.errors.size(), 1u) << joinErrors(r.errors);
  EXPECT_NE(r.errors[0].find("keel.yaml:4: control.readonly"), std::string::npos) << r.errors[0];
  EXPECT_NE(r.errors[0].find("user"), std::string::npos) << r.errors[0];
}

// ipip to a link-local real: a warning in a file (it ran before, and the
// lab's Linux router forwarded it), refused at runtime (daemon_backend_test).
TEST(Config, IpipToALinkLocalRealIsWarnedAbout) {
  ConfigResult r = parseConfig("dataplane: {kind: xdp, interface: eth0}\n"
                               "node: {tunnel_source_v4: 10.0.0.2, next_hop_mac: \"02:00:00:00:00:01\"}\n"
                               "services:\n"
                               "  - {name: web, vip: 192.0.2.10, port: 80, protocol: tcp,\n"
                               "     reals: [{address: 169.254.0.11}, {address: 10.0.1.12}]}\n",
                               "keel.yaml");
  ASSERT_TRUE(r.ok()) << joinErrors(r.errors);
  ASSERT_EQ(r.warnings.size(), 1u) << joinErrors(r.warnings);
  EXPECT_EQ(r.warnings[0].rfind("keel.yaml:5: services[0].reals[0].address: ipip to a link-local real: the "
                                "tunnelled packet goes to the router (node.next_hop_mac)",
                                0),
            0u)
      << r.warnings[0];
}

// node.hash_source_v6: the /96 whose last 32 bits the flow hash fills.
TEST(Config, HashSourceV6IsAnIpv6Slash96ATunnelMayComeFrom) {
  auto parse = [](const std::string& value) {
    return parseConfig("dataplane: {kind: xdp, interface: eth0}\n"
                       "node: {tunnel_source_v6: \"2001:db8::2\", next_hop_mac: \"02:00:00:00:00:01\",\n"
                       "       hash_source_v6: " + value + "}\n"
                       "services:\n"
                       "  - {name: web, vip: \"2001:db8:100::1\", port: 80, protocol: tcp,\n"
                       "     reals: [{address: \"2001:db8:1::11\"}]}\n",
                       "keel.yaml");
  };
  ConfigResult ok = parse("\"2001:db8:200::/96\"");
  ASSERT_TRUE(ok.ok()) << joinErrors(ok.errors);
  ASSERT_TRUE(ok.config->node.hashSourceV6.has_value());
  EXPECT_EQ(ok.config->node.hashSourceV6->toString(), "2001:db8:200::");
  const std::string what =
      "keel.yaml:3: node.hash_source_v6: must be an IPv6 /96 prefix like \"2001:db8:100::/96\" (the flow hash "
      "fills its last 32 bits), got ";
  for (const auto& [value, error] : std::vector<std::pair<std::string, std::string>>{
           {"\"2001:db8:200::/64\"", what + "\"2001:db8:200::/64\""},
           {"172.16.0.0/16", what + "\"172.16.0.0/16\""},
           {"\"2001:db8:200::1/96\"", "keel.yaml:3: node.hash_source_v6: host bits must be zero, got "
                                      "\"2001:db8:200::1/96\""},
           {"\"fe80::/96\"", "keel.yaml:3: node.hash_source_v6: cannot hold a link-local address (no router "
                             "forwards a tunnel from it), got \"fe80::/96\""},
           {"\"::ffff:0:0/96\"", "keel.yaml:3: node.hash_source_v6: cannot hold an IPv4-mapped IPv6 address"}}) {
    ConfigResult r = parse(value);
    ASSERT_EQ(r.errors.size(), 1u) << value << ": " << joinErrors(r.errors);
    EXPECT_EQ(r.errors[0].rfind(error, 0), 0u) << r.errors[0];
  }
}

TEST(Config, ValidFileRoundTrips) {
  ConfigResult r = parseConfig(kValid, "keel.yaml", resolverFor("eth0"));
  ASSERT_TRUE(r.ok()) << joinErrors(r.errors);
  const Config& c = *r.config;
  EXPECT_EQ(c.dataplane.kind, DataplaneKind::kXdp);
  EXPECT_EQ(c.dataplane.interface, "eth0");
  EXPECT_EQ(c.dataplane.xdpMode, XdpMode::kGeneric);
  EXPECT_EQ(c.node.tunnelSourceV4->toString(), "10.0.0.2");
  EXPECT_EQ(c.node.tunnelSourceV6->toString(), "fd00::2");
  EXPECT_EQ(c.node.nextHopMac->toString(), "02:00:00:00:00:01");
  EXPECT_FALSE(c.node.localMac.has_value());
  ASSERT_TRUE(c.node.hashSourceV4.has_value());
  EXPECT_EQ(c.node.hashSourceV4->toString(), "172.16.0.0/16");
  EXPECT_EQ(c.node.udpIdleTimeout, std::chrono::seconds(45));
  EXPECT_EQ(c.node.tcpIdleTimeout, std::chrono::minutes(2));
  EXPECT_EQ(c.limits.maxServices, 16u);
  EXPECT_EQ(c.limits.maxBackends, 64u);
  EXPECT_EQ(c.limits.connTableSize, 5000u);
  ASSERT_EQ(c.services.size(), 2u);
  const ServiceConfig& web = c.services[0];
  EXPECT_EQ(web.name, "web");
  EXPECT_EQ(web.vip.toString(), "192.0.2.10");
  EXPECT_EQ(web.port, 80);
  EXPECT_EQ(web.protocol, KEEL_PROTO_TCP);
  EXPECT_EQ(web.forwarding, Forwarding::kIpip);
  EXPECT_EQ(web.scheduler, Scheduler::kMaglevSrc);
  EXPECT_EQ(web.ringSize, 655373u);
  EXPECT_EQ(web.line, 11);
  EXPECT_TRUE(web.health.node().IsMap());
  EXPECT_EQ(web.health.node()["type"].Scalar(), "tcp");
  ASSERT_EQ(web.reals.size(), 2u);
  EXPECT_EQ(web.reals[0].address.toString(), "10.0.1.11");
  EXPECT_EQ(web.reals[0].weight, 100u);
  EXPECT_EQ(web.reals[1].address.toString(), "fd00:1::12");
  EXPECT_EQ(web.reals[1].weight, 0u);
  EXPECT_EQ(web.reals[1].health.node()["port"].Scalar(), "8080");
  const ServiceConfig& dns = c.services[1];
  EXPECT_EQ(dns.name, "dns.v6");
  EXPECT_TRUE(dns.vip.isV6());
  EXPECT_EQ(dns.port, 0);
  EXPECT_EQ(dns.protocol, KEEL_PROTO_UDP);
  EXPECT_EQ(dns.forwarding, Forwarding::kL2dsr);
  EXPECT_EQ(dns.scheduler, Scheduler::kMaglev);
  EXPECT_EQ(dns.ringSize, 65537u);
  EXPECT_EQ(dns.reals[0].mac->toString(), "02:00:00:00:02:01");
  EXPECT_FALSE(dns.reals[0].macResolved);
  EXPECT_EQ(dns.reals[1].mac->toString(), "02:00:00:00:02:02");
  EXPECT_TRUE(dns.reals[1].macResolved);
}

TEST(Config, MinimalFileGetsDefaults) {
  ConfigResult r = parseConfig("dataplane: {kind: xdp, interface: veth0}\n", "k.yaml");
  ASSERT_TRUE(r.ok()) << joinErrors(r.errors);
  EXPECT_EQ(r.config->dataplane.kind, DataplaneKind::kXdp);
  EXPECT_EQ(r.config->dataplane.xdpMode, XdpMode::kNative);
  EXPECT_EQ(r.config->dataplane.upkeepInterval, std::chrono::seconds(5));
  EXPECT_EQ(r.config->limits.maxServices, KEEL_MAX_SERVICES_DEFAULT);
  EXPECT_EQ(r.config->node.udpIdleTimeout, std::chrono::seconds(30));
  EXPECT_EQ(r.config->node.tcpIdleTimeout, std::chrono::seconds(900));
  EXPECT_EQ(r.config->node.icmpTooBigRate, 1000u);
  EXPECT_EQ(r.config->node.icmpTooBigClientRate, 100u);
  EXPECT_TRUE(r.config->services.empty());
}

TEST(Config, TunnelMtuIsReadAndBoundedByIpv6sMinimum) {
  ConfigResult r = parseConfig("dataplane: {kind: xdp, interface: eth0}\nnode: {tunnel_mtu: 1400}\n", "k.yaml");
  ASSERT_TRUE(r.ok()) << joinErrors(r.errors);
  EXPECT_EQ(r.config->node.tunnelMtu, 1400u);
  r = parseConfig("dataplane: {kind: xdp, interface: eth0}\n", "k.yaml");
  ASSERT_TRUE(r.ok()) << joinErrors(r.errors);
  EXPECT_EQ(r.config->node.tunnelMtu, 0u) << "none: the port's MTU alone";
  for (const char* bad : {"1279", "65536", "big"}) {
    r = parseConfig(std::string("dataplane: {kind: xdp, interface: eth0}\nnode:\n  tunnel_mtu: ") + bad + "\n",
                    "k.yaml");
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(joinErrors(r.errors),
              std::string("k.yaml:3: node.tunnel_mtu: must be an integer 1280..65535, got \"") + bad + "\"\n");
  }
}

TEST(Config, IcmpTooBigClientRateIsReadAndZeroTurnsThePerClientLimitOff) {
  for (uint32_t rate : {0u, 10u, 1000000u}) {
    ConfigResult r = parseConfig("dataplane: {kind: xdp, interface: eth0}\nnode: {icmp_too_big_client_rate: " +
                                     std::to_string(rate) + "}\n",
                                 "k.yaml");
    ASSERT_TRUE(r.ok()) << joinErrors(r.errors);
    EXPECT_EQ(r.config->node.icmpTooBigClientRate, rate);
    EXPECT_EQ(r.config->node.icmpTooBigRate, 1000u) << "the global limit is its own key";
  }
}

TEST(Config, ConntrackInsertRateIsReadAndOffByDefault) {
  ConfigResult r = parseConfig("dataplane: {kind: xdp, interface: eth0}\n", "k.yaml");
  ASSERT_TRUE(r.ok()) << joinErrors(r.errors);
  EXPECT_EQ(r.config->node.conntrackInsertRate, 0u);
  for (uint32_t rate : {0u, 1u, 100000000u}) {
    r = parseConfig("dataplane: {kind: xdp, interface: eth0}\nnode: {conntrack_insert_rate: " + std::to_string(rate) +
                        "}\n",
                    "k.yaml");
    ASSERT_TRUE(r.ok()) << joinErrors(r.errors);
    EXPECT_EQ(r.config->node.conntrackInsertRate, rate);
  }
}

TEST(Config, IcmpTooBigRateIsReadAndZeroTurnsTheAnswersOff) {
  for (uint32_t rate : {0u, 250u, 1000000u}) {
    ConfigResult r = parseConfig("dataplane: {kind: xdp, interface: eth0}\nnode: {icmp_too_big_rate: " +
                                     std::to_string(rate) + "}\n",
                                 "k.yaml");
    ASSERT_TRUE(r.ok()) << joinErrors(r.errors);
    EXPECT_EQ(r.config->node.icmpTooBigRate, rate);
  }
}

TEST(Config, DpdkBlockRoundTrips) {
  const char* yaml = R"(dataplane:
  kind: dpdk
  dpdk:
    eal_args: ["-l", "0-2", "-a", "0000:03:00.0", "--file-prefix", "keel"]
    port: "0000:03:00.0"
    workers: [1, 2]
    rx_descriptors: 512
    tx_descriptors: 256
    mbufs_per_worker: 4096
    exception_interface: keel0
    idle_sleep_us: 50
    mtu: 9000
    promiscuous: true
)";
  ConfigOptions o;
  // The exception interface is keeld's own net_tap: it need not exist yet.
  o.interfaceExists = [](const std::string&) { return false; };
  ConfigResult r = parseConfig(yaml, "k.yaml", o);
  ASSERT_TRUE(r.ok()) << joinErrors(r.errors);
  const DataplaneConfig& dp = r.config->dataplane;
  EXPECT_EQ(dp.kind, DataplaneKind::kDpdk);
  EXPECT_EQ(dp.dpdk.ealArgs, (std::vector<std::string>{"-l", "0-2", "-a", "0000:03:00.0",
                                                       "--file-prefix", "keel"}));
  EXPECT_EQ(dp.dpdk.port, "0000:03:00.0");
  EXPECT_EQ(dp.dpdk.workers, (std::vector<unsigned>{1, 2}));
  EXPECT_EQ(dp.dpdk.rxDescriptors, 512u);
  EXPECT_EQ(dp.dpdk.txDescriptors, 256u);
  EXPECT_EQ(dp.dpdk.mbufsPerWorker, 4096u);
  EXPECT_EQ(dp.dpdk.exceptionInterface, "keel0");
  EXPECT_EQ(dp.dpdk.idleSleepUs, 50u);
  EXPECT_EQ(dp.dpdk.mtu, 9000u);
  EXPECT_TRUE(dp.dpdk.promiscuous);
  // Neighbours (l2dsr) are resolved on the kernel side of the exception path.
  EXPECT_EQ(dp.interface, "keel0");
}

TEST(Config, DpdkDefaultsAndKernelInterface) {
  ConfigOptions o;
  o.interfaceExists = [](const std::string& n) { return n == "eth1"; };
  ConfigResult r = parseConfig(
      "dataplane: {kind: dpdk, interface: eth1, dpdk: {port: \"net_af_packet0,iface=eth1\", "
      "workers: [1]}}\n",
      "k.yaml", o);
  ASSERT_TRUE(r.ok()) << joinErrors(r.errors);
  const DataplaneConfig& dp = r.config->dataplane;
  EXPECT_EQ(dp.interface, "eth1");
  EXPECT_TRUE(dp.dpdk.ealArgs.empty());
  EXPECT_EQ(dp.dpdk.rxDescriptors, 1024u);
  EXPECT_EQ(dp.dpdk.txDescriptors, 1024u);
  EXPECT_EQ(dp.dpdk.mbufsPerWorker, 8192u);
  EXPECT_EQ(dp.dpdk.exceptionInterface, "");
  EXPECT_EQ(dp.dpdk.idleSleepUs, 0u);
  EXPECT_EQ(dp.dpdk.mtu, 0u) << "the driver's";
  EXPECT_FALSE(dp.dpdk.promiscuous) << "frames to the port's own MAC only, as a NIC under XDP";
}

// A vdev on a kernel interface names one that must exist (a host check):
// the driver's own probe fails at start with an errno that says nothing.
TEST(Config, DpdkVdevInterfaceMustExist) {
  ConfigOptions o;
  o.interfaceExists = [](const std::string& n) { return n == "eth1"; };
  auto parse = [&](const std::string& port) {
    return parseConfig("dataplane: {kind: dpdk, interface: eth1, dpdk: {port: \"" + port + "\", workers: [1]}}\n",
                       "k.yaml", o);
  };
  ConfigResult r = parse("net_af_packet0,iface=eth9,qpairs=1");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.errors, std::vector<std::string>{"k.yaml:1: dataplane.dpdk.port: no such network interface \"eth9\" (its iface=)"});
  r = parse("net_af_xdp0,iface=eth9");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(joinErrors(r.errors).find("no such network interface \"eth9\""), std::string::npos);
  EXPECT_TRUE(parse("net_af_xdp0,iface=eth1,start_queue=0").ok());
  // net_tap creates its iface=, net_vhost's is a socket path: not looked for.
  EXPECT_TRUE(parse("net_tap0,iface=keel9").ok());
  EXPECT_TRUE(parse("net_vhost0,iface=/tmp/vhost.sock").ok());
  EXPECT_TRUE(parse("0000:03:00.0").ok()) << "a PCI port has no kernel interface to look for";
  o.interfaceExists = nullptr;  // --no-host-checks
  EXPECT_TRUE(parse("net_af_packet0,iface=eth9").ok());
}

// A kernel vdev's queues (net_af_packet's qpairs=, net_af_xdp's
// queue_count=, 1 when not given) are checked against the workers at load,
// with the file's line: --check-config and a reload catch what the start
// would refuse (fewer queues than workers; more, whose flows no worker
// would read: net_af_packet's fanout loses them, and net_af_xdp's NIC
// queues without a socket pass theirs to the kernel).
TEST(Config, DpdkKernelVdevQueuesMatchTheWorkers) {
  auto parse = [](const std::string& port, const std::string& workers) {
    return parseConfig("dataplane:\n  kind: dpdk\n  interface: eth1\n  dpdk:\n    port: \"" + port +
                           "\"\n    workers: " + workers + "\n",
                       "k.yaml", ConfigOptions{});
  };
  EXPECT_TRUE(parse("net_af_packet0,iface=eth1,qpairs=2", "[1, 2]").ok());
  EXPECT_TRUE(parse("net_af_packet0,iface=eth1", "[1]").ok());
  EXPECT_TRUE(parse("eth_af_packet0,iface=eth1,qpairs=1", "[1]").ok());
  ConfigResult r = parse("net_af_packet0,iface=eth1,qpairs=3", "[1, 2]");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.errors, std::vector<std::string>{
                          "k.yaml:5: dataplane.dpdk.port: qpairs=3 for 2 workers: each worker reads one queue, and "
                          "the kernel spreads flows over every queue pair, so those of the 1 no worker reads would "
                          "be lost; give qpairs=2"});
  r = parse("net_af_packet0,iface=eth1", "[1, 2]");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.errors, std::vector<std::string>{"k.yaml:5: dataplane.dpdk.port: no qpairs= (1 queue) for 2 workers: "
                                               "each worker reads one queue; give qpairs=2"});
  r = parse("net_af_packet0,iface=eth1,qpairs=two", "[1]");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.errors, std::vector<std::string>{
                          "k.yaml:5: dataplane.dpdk.port: qpairs= must be a positive number of queues, got \"two\""});
  EXPECT_FALSE(parse("net_af_packet0,iface=eth1,qpairs=0", "[1]").ok());
  // net_af_xdp: a socket on each queue a worker reads and none on the
  // others, whose frames libxdp's program passes to the kernel (until
  // 2026-12-05 more queues than workers were taken).
  EXPECT_TRUE(parse("net_af_xdp0,iface=eth1,start_queue=0,queue_count=2", "[1, 2]").ok());
  r = parse("net_af_xdp0,iface=eth1,start_queue=0,queue_count=4", "[1, 2]");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.errors, std::vector<std::string>{
                          "k.yaml:5: dataplane.dpdk.port: queue_count=4 for 2 workers: each worker reads one queue, "
                          "and the frames the NIC puts on the 2 queues no worker reads would go to the kernel, not "
                          "to keel; give queue_count=2"});
  r = parse("net_af_xdp0,iface=eth1", "[1, 2]");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.errors, std::vector<std::string>{"k.yaml:5: dataplane.dpdk.port: no queue_count= (1 queue) for 2 "
                                               "workers: each worker reads one queue; give queue_count=2"});
  // A port by name whose --vdev in eal_args gives its devargs (keel takes
  // the port EAL made as it is): those are checked.
  auto withVdev = [](const std::string& vdevArgs, const std::string& workers) {
    return parseConfig("dataplane:\n  kind: dpdk\n  interface: eth1\n  dpdk:\n    eal_args: [\"-l\", \"0-2\", " +
                           vdevArgs + "]\n    port: \"net_af_packet0\"\n    workers: " + workers + "\n",
                       "k.yaml", ConfigOptions{});
  };
  EXPECT_TRUE(withVdev("\"--vdev\", \"net_af_packet0,iface=eth1,qpairs=2\"", "[1, 2]").ok());
  EXPECT_TRUE(withVdev("\"--vdev=net_af_packet0,iface=eth1,qpairs=2\"", "[1, 2]").ok());
  r = withVdev("\"--vdev\", \"net_af_packet0,iface=eth1,qpairs=3\"", "[1, 2]");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.errors.front().find("qpairs=3 (its --vdev in eal_args) for 2 workers"), std::string::npos)
      << r.errors.front();
  EXPECT_FALSE(withVdev("\"--vdev\", \"net_af_packet1,iface=eth1,qpairs=2\"", "[1, 2]").ok())
      << "another device's --vdev says nothing of this port: its defaults (1 queue)";
  // Other ports say nothing in their devargs about queues.
  EXPECT_TRUE(parse("0000:03:00.0", "[1, 2]").ok());
  EXPECT_TRUE(parse("net_tap0,iface=keel9", "[1, 2]").ok());
}

// The names EAL takes (the port, each --vdev) and its driver paths (-d),
// asked of the host (keeld: the DPDK plane loads the drivers as EAL would)
// and refused with their lines.
TEST(Config, DpdkDeviceNamesAreTheDriversEalLoads) {
  ConfigOptions o;
  std::vector<std::string> plugins, names;
  bool pluginLoads = true;
  bool tells = true;
  o.dpdkDeviceNames = [&](const std::vector<std::string>& p,
                          const std::vector<std::string>& d) -> std::optional<DeviceNameCheck> {
    plugins = p;
    names = d;
    if (!tells) return std::nullopt;
    DeviceNameCheck c;
    for (size_t i = 0; i < p.size(); ++i) c.pluginErrors.push_back(pluginLoads ? "" : "cannot open " + p[i]);
    for (const std::string& n : d) c.known.push_back(n.rfind("net_null", 0) == 0 || n.rfind("0000:", 0) == 0);
    return c;
  };
  auto parse = [&](const std::string& ealArgs, const std::string& port) {
    return parseConfig("dataplane:\n  kind: dpdk\n  dpdk:\n    eal_args: [" + ealArgs + "]\n    port: \"" + port +
                           "\"\n    workers: [1]\n",
                       "keel.yaml", o);
  };
  EXPECT_TRUE(parse("--no-pci", "net_null0").ok());
  EXPECT_EQ(names, std::vector<std::string>{"net_null0"});
  EXPECT_TRUE(plugins.empty());
  ConfigResult r = parse("--no-pci", "net_nul0,size=64");
  EXPECT_EQ(r.errors, std::vector<std::string>{"keel.yaml:5: dataplane.dpdk.port: " + unknownDeviceName("net_nul0")});
  // A port a --vdev makes is asked once, by that --vdev, where the error is.
  r = parse("--no-pci, --vdev, \"net_nul0,size=64\", \"--vdev=net_null1\", -d, /opt/pmd, -d/opt/x.so", "net_nul0");
  EXPECT_EQ(names, (std::vector<std::string>{"net_nul0,size=64", "net_null1"}));
  EXPECT_EQ(plugins, (std::vector<std::string>{"/opt/pmd", "/opt/x.so"}));
  EXPECT_EQ(r.errors, std::vector<std::string>{"keel.yaml:4: dataplane.dpdk.eal_args[2]: --vdev \"net_nul0,size=64\": " +
                                               unknownDeviceName("net_nul0")});
  // A driver path that does not load is the error; the names it might have
  // served are not judged (the host says so: every name known).
  pluginLoads = false;
  r = parse("-d, /opt/pmd, --vdev, net_null1", "net_null1");
  EXPECT_EQ(r.errors, std::vector<std::string>{
                          "keel.yaml:4: dataplane.dpdk.eal_args[1]: -d \"/opt/pmd\": EAL cannot load this driver path: "
                          "cannot open /opt/pmd"});
  pluginLoads = true;
  // A PCI port is the PCI check's (pciDeviceExists), not asked here.
  names = {"not asked"};
  EXPECT_TRUE(parse("-a, 0000:03:00.0", "0000:03:00.0").ok());
  EXPECT_EQ(names, std::vector<std::string>{"not asked"});
  // A host that cannot tell (keeld's loop before EAL runs): nothing refused.
  tells = false;
  EXPECT_TRUE(parse("--no-pci", "net_nul0").ok());
}

// The DPDK plane's floor of EAL memory against what EAL can hand out: a
// file that cannot fit is refused at the dpdk block, naming both.
TEST(Config, DpdkMemoryMustFitEal) {
  ConfigOptions o;
  std::vector<std::string> asked;
  o.dpdkMemoryFloor = [&](uint32_t workers, uint32_t mbufs, uint16_t mtu, uint32_t conns) {
    asked.push_back(std::to_string(workers) + "/" + std::to_string(mbufs) + "/" + std::to_string(mtu) + "/" +
                    std::to_string(conns));
    return EalMemoryNeed{uint64_t{mbufs} * workers * 2304, uint64_t{conns} * 100};
  };
  auto parse = [&](const std::string& mb, uint64_t conns) {
    return parseConfig("dataplane:\n  kind: dpdk\n  dpdk:\n    eal_args: [--no-huge, -m, \"" + mb +
                           "\"]\n    port: net_null0\n    workers: [1, 2]\n    mbufs_per_worker: 4096\n    mtu: 9000\n"
                           "limits: {conn_table_size: " + std::to_string(conns) + "}\n",
                       "keel.yaml", o);
  };
  EXPECT_TRUE(parse("256", 1000000).ok());
  EXPECT_EQ(asked, std::vector<std::string>{"2/4096/9000/1000000"});
  ConfigResult r = parse("64", 1000000);
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0], "keel.yaml:4: dataplane.dpdk: the DPDK plane needs at least 114 MiB of EAL memory (18 MiB "
                         "for 8192 mbufs: mbufs_per_worker x workers; 96 MiB for the connection tables of "
                         "limits.conn_table_size 1000000), more than EAL has (-m 64 under --no-huge): give EAL more "
                         "(-m, hugepages) or lower limits.conn_table_size or mbufs_per_worker (docs/dpdk.md, "
                         "\"Hugepages\")");
}

// An lcore on a CPU outside the process's cpuset (AllowedCPUs=, a
// container) makes EAL abort at start; the process's affinity alone
// (CPUAffinity=) does not bound EAL's threads, so it is not asked here.
TEST(Config, DpdkLcoresInsideTheCpuset) {
  ConfigOptions o;
  std::set<unsigned> cpuset = {0};
  o.onlineCpus = [] { return std::set<unsigned>{0, 1, 2, 3}; };
  o.cpusetCpus = [&] { return cpuset; };
  auto parse = [&](const std::string& lcores) {
    return parseConfig("dataplane:\n  kind: dpdk\n  dpdk:\n    eal_args: [--no-huge, --lcores, \"" + lcores +
                           "\"]\n    port: net_null0\n    workers: [1]\n",
                       "keel.yaml", o);
  };
  EXPECT_EQ(parse("0@0,1@1").errors,
            std::vector<std::string>{"keel.yaml:4: dataplane.dpdk.eal_args: --lcores 0@0,1@1 runs lcores on CPU 1, "
                                     "outside the CPUs this process's cpuset cgroup gives it (0: systemd's "
                                     "AllowedCPUs=, a container's CPU set): EAL would abort setting their affinity"});
  EXPECT_TRUE(parse("0@0,1@0").ok());
  cpuset = {};  // unknown: not checked
  EXPECT_TRUE(parse("0@0,1@1").ok());
}

// XDP's connection table is one kernel LRU hash map: past 2^27 entries
// its creation fails (E2BIG), so the file is refused; DPDK's tables are
// its own and take up to 2^28.
TEST(Config, XdpConnTableAtMost2To27) {
  auto parse = [](const std::string& kind, uint64_t size) {
    return parseConfig("dataplane:\n  kind: " + kind + "\n" +
                           (kind == "xdp" ? "  interface: eth0\n" : "  dpdk: {port: net_null0, workers: [1]}\n") +
                           "limits:\n  conn_table_size: " + std::to_string(size) + "\n",
                       "keel.yaml");
  };
  EXPECT_TRUE(parse("xdp", 134217728).ok());
  EXPECT_EQ(parse("xdp", 134217729).errors,
            std::vector<std::string>{"keel.yaml:5: limits.conn_table_size: XDP's connection table is a kernel hash map "
                                     "of at most 134217728 (2^27) entries (its creation fails past that), got "
                                     "\"134217729\""});
  EXPECT_TRUE(parse("dpdk", 268435456).ok());
}

// What EAL 22.11's start refuses of its arguments, read without it
// (eal_args.h): each problem at its argument, with what EAL says.
TEST(Config, EalArgsEalRefuses) {
  auto problems = [](const std::vector<std::string>& args) {
    std::vector<std::string> out;
    for (const EalArgProblem& p : checkEalArgs(args)) out.push_back(std::to_string(p.arg) + ": " + p.message);
    return out;
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(problems({"-l", "0-2", "-a", "0000:03:00.0", "--file-prefix", "keel", "--huge-unlink"}), V{});
  EXPECT_EQ(problems({"--no-huge", "-m", "512", "--no-pci", "--no-shconf", "--no-telemetry", "--lcores", "0@0,1@0",
                      "--vdev=net_null0", "-d", "/opt/pmd", "-s0x2", "-vl0-1", "--main-lcore", "0"}),
            V{});
  // getopt_long's abbreviations are EAL's too.
  EXPECT_EQ(problems({"--no-hu", "--file", "x", "--lcore", "0-1"}), V{});
  EXPECT_EQ(problems({"--no-huge", "--no-telemtry"}),
            V{"1: EAL has no option --no-telemtry (did you mean --no-telemetry?)"});
  EXPECT_EQ(problems({"--huge"}), V{"0: --huge is ambiguous to EAL (it abbreviates --huge-dir --huge-unlink "
                                    "--huge-worker-stack)"});
  EXPECT_EQ(problems({"-x", "-vq"}), (V{"0: EAL has no option -x", "1: EAL has no option -q"}));
  EXPECT_EQ(problems({"--no-pci=1"}), V{"0: --no-pci takes no value (EAL refuses --no-pci=1)"});
  EXPECT_EQ(problems({"--no-pci", "--file-prefix"}), V{"1: --file-prefix needs a value, and eal_args end after it"});
  EXPECT_EQ(problems({"--help"}), V{"0: EAL prints its usage and exits: keeld would never start"});
  EXPECT_EQ(problems({"--iova-mode", "xx", "--proc-type=main", "--vfio-intr", "msi", "-n", "0"}),
            (V{"0: --iova-mode must be pa or va, got \"xx\"",
               "2: --proc-type must be primary, secondary or auto, got \"main\"",
               "5: -n (memory channels) must be a number other than 0, got \"0\""}));
  // As EAL reads them: --proc-type without case, -n by atoi().
  EXPECT_EQ(problems({"--proc-type", "Primary", "-n", "4x"}), V{});
  EXPECT_EQ(problems({"-m", "512", "--socket-mem", "512"}),
            V{"2: EAL refuses -m and --socket-mem together (eal_args[0] gives -m)"});
  EXPECT_EQ(problems({"--no-huge", "--huge-unlink"}),
            V{"1: EAL refuses --huge-unlink with --no-huge (no hugepage files to unlink: leave it out of a --no-huge run)"});
  EXPECT_EQ(problems({"--no-huge", "--huge-unlink=always"}).size(), 1u);
  EXPECT_EQ(problems({"--no-huge", "--huge-unlink=never"}), V{}) << "=existing and =never unlink nothing first";
  EXPECT_EQ(problems({"--no-huge", "--in-memory"}).size(), 1u);
  EXPECT_EQ(problems({"--in-memory", "--legacy-mem"}), V{"1: EAL refuses --legacy-mem with --in-memory"});
  EXPECT_EQ(problems({"--no-huge", "--match-allocations"}),
            V{"1: EAL refuses --match-allocations in legacy memory mode (--no-huge)"});
  EXPECT_EQ(problems({"-a", "0000:01:00.0", "--block=0000:02:00.0"}),
            V{"2: EAL refuses an allow list (-a) and a block list (--block) together"});
  // After "--" the arguments are the application's: EAL stops there.
  EXPECT_EQ(problems({"--no-huge", "--", "--bogus"}), V{});
  // In a file: at the argument's line.
  ConfigResult r = parseConfig("dataplane:\n  kind: dpdk\n  dpdk:\n    eal_args:\n      - --no-huge\n      - --no-telemtry\n"
                               "    port: net_null0\n    workers: [1]\n",
                               "keel.yaml");
  EXPECT_EQ(r.errors, V{"keel.yaml:6: dataplane.dpdk.eal_args[1]: EAL has no option --no-telemtry (did you mean "
                        "--no-telemetry?)"});
}

// A metrics address no socket of this host can bind (keeld: a bind that
// fails EADDRNOTAVAIL) is refused at its line; every address is not asked.
TEST(Config, MetricsAddressMustBeBindable) {
  ConfigOptions o;
  std::vector<std::string> asked;
  o.bindProblem = [&](const IpAddress& a) {
    asked.push_back(a.toString());
    return a.toString() == "192.0.2.77" ? std::string("Cannot assign requested address") : std::string();
  };
  auto parse = [&](const std::string& address) {
    return parseConfig("dataplane: {kind: xdp, interface: eth0}\nmetrics:\n  address: \"" + address + "\"\n",
                       "keel.yaml", o);
  };
  EXPECT_EQ(parse("192.0.2.77:9477").errors,
            std::vector<std::string>{"keel.yaml:3: metrics.address: cannot listen on 192.0.2.77: Cannot assign "
                                     "requested address (no address of this host: use one it has, 127.0.0.1, or "
                                     "0.0.0.0 / [::] for every address), got \"192.0.2.77:9477\""});
  EXPECT_TRUE(parse("127.0.0.1:9477").ok());
  EXPECT_TRUE(parse("[::1]:9477").ok());
  EXPECT_TRUE(parse("0.0.0.0:9477").ok());
  EXPECT_TRUE(parse("[::]:9477").ok());
  EXPECT_EQ(asked, (std::vector<std::string>{"192.0.2.77", "127.0.0.1", "::1"}));
  // No endpoint, nothing to bind.
  EXPECT_TRUE(parseConfig("dataplane: {kind: xdp, interface: eth0}\nmetrics:\n  enabled: false\n  address: "
                          "\"192.0.2.77:9477\"\n",
                          "keel.yaml", o)
                  .ok());
}

// EAL that would find no hugepages (none reserved, none of a mounted
// size) fails the start: refused at eal_args' line, unless it runs without.
TEST(Config, DpdkEalNeedsHugepagesUnlessNoHuge) {
  ConfigOptions o;
  std::vector<HugepageSize> sizes = {{2u << 20, 0, 0, "/dev/hugepages"}};
  o.hugepages = [&] { return sizes; };
  auto parse = [&](const std::string& ealArgs) {
    return parseConfig("dataplane:\n  kind: dpdk\n  dpdk:\n    eal_args: [" + ealArgs +
                           "]\n    port: net_null0\n    workers: [1]\n",
                       "keel.yaml", o);
  };
  ConfigResult r = parse("-l, 0-1");
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].rfind("keel.yaml:4: dataplane.dpdk.eal_args: EAL would find no hugepages to use: none are "
                              "reserved", 0),
            0u)
      << r.errors[0];
  EXPECT_TRUE(parse("-l, 0-1, --no-huge, -m, \"512\"").ok());
  sizes[0].reserved = 512;
  EXPECT_TRUE(parse("-l, 0-1").ok());
  // A file that gives no eal_args: the error is at the dpdk block.
  sizes[0].reserved = 0;
  r = parseConfig("dataplane:\n  kind: dpdk\n  dpdk:\n    port: net_null0\n    workers: [1]\n", "keel.yaml", o);
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].rfind("keel.yaml:4: dataplane.dpdk.eal_args: EAL would find no hugepages", 0), 0u)
      << r.errors[0];
}

// A PCI port must be a device of this host (EAL's probe of an absent one
// fails the start), asked by its full address, domain and all, lower case.
TEST(Config, DpdkPciPortMustBeADeviceOfThisHost) {
  ConfigOptions o;
  std::vector<std::string> asked;
  o.pciDeviceExists = [&](const std::string& a) {
    asked.push_back(a);
    return a == "0000:03:00.0";
  };
  auto parse = [&](const std::string& port) {
    return parseConfig("dataplane:\n  kind: dpdk\n  dpdk:\n    port: \"" + port +
                           "\"\n    workers: [1]\n    exception_interface: keel0\n",
                       "keel.yaml", o);
  };
  EXPECT_TRUE(parse("0000:03:00.0").ok());
  EXPECT_TRUE(parse("03:00.0").ok());
  EXPECT_TRUE(parse("0000:03:00.0,rx_low_latency=1").ok());
  ConfigResult r = parse("0000:03:00.1");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.errors, std::vector<std::string>{
                          "keel.yaml:4: dataplane.dpdk.port: no PCI device 0000:03:00.1 on this host (`lspci -D` "
                          "lists them; bind the NIC to vfio-pci, docs/dpdk.md)"});
  EXPECT_FALSE(parse("0A:00.0").ok());
  EXPECT_EQ(asked, (std::vector<std::string>{"0000:03:00.0", "0000:03:00.0", "0000:03:00.0", "0000:03:00.1",
                                             "0000:0a:00.0"}));
  asked.clear();
  EXPECT_TRUE(parse("net_null0").ok()) << "not a PCI port";
  EXPECT_TRUE(asked.empty());
  // Present but bound to a kernel driver EAL cannot probe: a warning.
  std::string driver = "ixgbe";
  o.pciDriver = [&](const std::string&) { return driver; };
  r = parse("0000:03:00.0");
  ASSERT_TRUE(r.ok());
  auto bound = [](const ConfigResult& c) {
    return std::count_if(c.warnings.begin(), c.warnings.end(),
                         [](const std::string& w) { return w.find("is bound to") != std::string::npos; });
  };
  ASSERT_EQ(bound(r), 1);
  EXPECT_NE(std::find(r.warnings.begin(), r.warnings.end(),
                      "keel.yaml:4: dataplane.dpdk.port: PCI device 0000:03:00.0 is bound to the kernel's ixgbe, "
                      "which EAL cannot probe: bind it to vfio-pci (driverctl set-override 0000:03:00.0 vfio-pci; "
                      "docs/dpdk.md, \"Dedicating a NIC\") before keeld starts"),
            r.warnings.end());
  for (const char* ok : {"vfio-pci", "mlx5_core"}) {
    driver = ok;
    EXPECT_EQ(bound(parse("0000:03:00.0")), 0) << ok;
  }
  driver = "";
  EXPECT_EQ(bound(parse("0000:03:00.0")), 1) << "no driver at all";
}

// keeld creates the exception interface (net_tap): a name an interface that
// is no tap already holds fails the driver's probe at start, so the check
// refuses it. A tap passes: it may be a running keeld's own, checked before
// its reload.
TEST(Config, DpdkExceptionInterfaceMustNotBeAnotherInterface) {
  ConfigOptions o;
  o.interfaceExists = [](const std::string& n) { return n == "eth1" || n == "keel0"; };
  o.interfaceIsTap = [](const std::string& n) { return n == "keel0"; };
  auto parse = [&](const std::string& exception) {
    return parseConfig("dataplane: {kind: dpdk, interface: eth1, dpdk: {port: \"net_af_packet0,iface=eth1\", "
                       "workers: [1], exception_interface: " + exception + "}}\n",
                       "k.yaml", o);
  };
  ConfigResult r = parse("eth1");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.errors, std::vector<std::string>{
                          "k.yaml:1: dataplane.dpdk.exception_interface: an interface named \"eth1\" exists and is "
                          "no tap device: keeld creates the exception interface itself, so name one that does not "
                          "exist"});
  EXPECT_TRUE(parse("keel0").ok()) << "a tap: a running keeld's own";
  EXPECT_TRUE(parse("keel9").ok()) << "none yet: keeld creates it";
  EXPECT_TRUE(parse("'\"\"'").ok()) << "no exception path";
  o.interfaceIsTap = nullptr;  // a tool without the host's sysfs
  EXPECT_TRUE(parse("eth1").ok());
}

// net_af_packet leaves the kernel its copy of every frame: a kernel that
// forwards what arrives on the port's interface, and has a route for a
// VIP, routes each such VIP packet too, back through the router to keel (a
// loop). A warning (a host check) per family, naming the sysctls and the
// VIPs; a VIP with a blackhole route, or a family that does not forward, is
// no loop. The interface is the port's, also when the port's devargs are
// its --vdev's. net_af_xdp takes the frames from the kernel: no check.
TEST(Config, DpdkAfPacketPortWarnsOfAForwardingKernel) {
  ConfigOptions o;
  std::vector<std::string> asked;
  std::map<int, std::vector<std::string>> on = {{4, {"net.ipv4.conf.eth1.forwarding"}},
                                                {6, {"net.ipv6.conf.all.forwarding"}}};
  std::set<std::string> blackholed;
  o.interfaceForwarding = [&](const std::string& iface, int family) {
    asked.push_back(iface + "/" + std::to_string(family));
    return on[family];
  };
  o.routedOn = [&](const std::vector<IpAddress>& vips) {
    std::vector<IpAddress> routed;
    for (const IpAddress& a : vips)
      if (!blackholed.count(a.toString())) routed.push_back(a);
    return routed;
  };
  auto parse = [&](const std::string& dpdk) {
    return parseConfig("dataplane:\n  kind: dpdk\n  dpdk:\n" + dpdk +
                           "    workers: [1]\n"
                           "node: {tunnel_source_v4: 10.0.0.9, tunnel_source_v6: \"2001:db8::9\", "
                           "next_hop_mac: \"02:00:00:00:00:01\"}\n"
                           "services:\n"
                           "  - {name: a, vip: 10.0.0.1, port: 80, protocol: tcp, reals: [{address: 10.0.1.1}]}\n"
                           "  - {name: b, vip: 10.0.0.2, port: 80, protocol: tcp, reals: [{address: 10.0.1.1}]}\n"
                           "  - {name: c, vip: \"2001:db8::1\", port: 80, protocol: tcp, reals: [{address: \"2001:db8:1::1\"}]}\n",
                       "keel.yaml", o);
  };
  auto loops = [](const ConfigResult& r) {
    std::vector<std::string> out;
    for (const std::string& w : r.warnings)
      if (w.find("the kernel forwards") != std::string::npos) out.push_back(w);
    return out;
  };
  ConfigResult r = parse("    port: \"net_af_packet0,iface=eth1\"\n");
  ASSERT_TRUE(r.ok()) << joinErrors(r.errors);
  ASSERT_EQ(loops(r),
            (std::vector<std::string>{
                "keel.yaml:4: dataplane.dpdk.port: the kernel forwards IPv4 packets received on \"eth1\" "
                "(net.ipv4.conf.eth1.forwarding = 1) and has a route for VIP 10.0.0.1 and 1 more, and a "
                "net_af_packet port leaves it its own copy of every frame: it would route each such VIP packet "
                "too, back to this port through the router, and keel would forward it again until its TTL ran "
                "out (the reals get many copies); give each VIP a blackhole route (ip route add blackhole "
                "10.0.0.1/32), turn forwarding off, or use net_af_xdp (docs/dpdk.md)",
                "keel.yaml:4: dataplane.dpdk.port: the kernel forwards IPv6 packets received on \"eth1\" "
                "(net.ipv6.conf.all.forwarding = 1) and has a route for VIP 2001:db8::1, and a net_af_packet "
                "port leaves it its own copy of every frame: it would route each such VIP packet too, back to "
                "this port through the router, and keel would forward it again until its TTL ran out (the reals "
                "get many copies); give each VIP a blackhole route (ip route add blackhole 2001:db8::1/128), turn "
                "forwarding off, or use net_af_xdp (docs/dpdk.md)"}));
  EXPECT_EQ(asked, (std::vector<std::string>{"eth1/4", "eth1/6"}));
  blackholed = {"10.0.0.1", "10.0.0.2"};
  on[6].clear();
  EXPECT_TRUE(loops(parse("    port: \"net_af_packet0,iface=eth1\"\n")).empty()) << "blackholed, not forwarding";
  blackholed.clear();
  asked.clear();
  r = parse("    eal_args: [--vdev, \"net_af_packet0,iface=eth2\"]\n    port: net_af_packet0\n");
  EXPECT_EQ(loops(r).size(), 1u);
  EXPECT_EQ(asked, (std::vector<std::string>{"eth2/4", "eth2/6"})) << "the --vdev's interface";
  asked.clear();
  EXPECT_TRUE(loops(parse("    port: \"net_af_xdp0,iface=eth1\"\n    exception_interface: keel0\n")).empty());
  EXPECT_TRUE(asked.empty());
}

// The lcores EAL arguments start, read as EAL 22.11 reads them (each case
// below was checked against Debian's 22.11.11 with dpdk-test): what EAL
// refuses is an error, what keel cannot read a warning, never an error.
TEST(EalLcores, ReadsListsMasksMapsAndTheMainLcoreAsEalDoes) {
  auto read = [](std::vector<std::string> args) { return readEalLcores(args); };
  auto lcores = [&](std::vector<std::string> args) {
    EalLcoresResult r = read(args);
    EXPECT_TRUE(r.error.empty() && r.warning.empty()) << r.error << r.warning;
    return r.lcores ? r.lcores->lcores : std::set<unsigned>{};
  };
  EalLcoresResult r = read({"-l", "0-2", "--file-prefix", "k"});
  ASSERT_TRUE(r.lcores) << r.error;
  EXPECT_EQ(r.lcores->lcores, (std::set<unsigned>{0, 1, 2}));
  EXPECT_EQ(r.lcores->cpus, (std::set<unsigned>{0, 1, 2}));
  EXPECT_EQ(r.lcores->mainLcore, 0u);
  EXPECT_EQ(r.lcores->source, "-l 0-2");
  EXPECT_EQ(lcores({"-l0,2-3"}), (std::set<unsigned>{0, 2, 3}));
  EXPECT_EQ(lcores({"-l", " 0-1"}), (std::set<unsigned>{0, 1}));        // blanks skipped
  EXPECT_EQ(lcores({"-l", "0,1-0"}), (std::set<unsigned>{0}));          // a reversed range adds nothing
  EXPECT_EQ(lcores({"--lcores", "1-0"}), (std::set<unsigned>{0, 1}));   // here either way round
  EXPECT_EQ(lcores({"-c", "0x3 "}), (std::set<unsigned>{0, 1}));
  EXPECT_EQ(lcores({"-c", "6"}), (std::set<unsigned>{1, 2}));
  r = read({"--lcores", "(0-2)@(0,1)"});
  ASSERT_TRUE(r.lcores) << r.error;
  EXPECT_EQ(r.lcores->lcores, (std::set<unsigned>{0, 1, 2}));
  EXPECT_EQ(r.lcores->cpus, (std::set<unsigned>{0, 1}));
  r = read({"--lcores=1@31,2@32,0"});
  ASSERT_TRUE(r.lcores) << r.error;
  EXPECT_EQ(r.lcores->lcores, (std::set<unsigned>{0, 1, 2}));
  EXPECT_EQ(r.lcores->cpus, (std::set<unsigned>{0, 31, 32}));
  EXPECT_EQ(r.lcores->mainLcore, 0u);
  // --main-lcore as strtol(base 0) reads it; getopt_long's abbreviations.
  for (const auto& args : std::vector<std::vector<std::string>>{{"-l", "0-1", "--main-lcore", "0x1"},
                                                                {"-l", "0-1", "--main-lcore=+1"},
                                                                {"-l", "0-1", "--main=1"},
                                                                {"--lcore", "0-1", "--mai", "1"}}) {
    r = read(args);
    ASSERT_TRUE(r.lcores) << args[2] << r.error << r.warning;
    EXPECT_EQ(r.lcores->lcores, (std::set<unsigned>{0, 1}));
    EXPECT_EQ(r.lcores->mainLcore, 1u) << args[2];
    EXPECT_TRUE(r.lcores->mainGiven);
  }
  EXPECT_EQ(read({"-c", "0x3", "--main-lcore", "010"}).lcores->mainLcore, 8u);  // octal, as strtol
  r = read({"--no-huge", "--main-lcore", "1"});  // no lcore option: the host's CPUs
  EXPECT_TRUE(r.error.empty() && r.warning.empty());
  EXPECT_FALSE(r.lcores);
  EXPECT_EQ(r.mainLcore, std::optional<unsigned>(1));
  // What EAL refuses: errors.
  for (const auto& [args, index, what] : std::vector<std::tuple<std::vector<std::string>, size_t, std::string>>{
           {{"-l", "0", "-l", "1"}, 2, "-l: EAL refuses more than one of -l, -c and --lcores (the first is eal_args[0])"},
           {{"-l", "0-1", "--lcores", "0-1"}, 2, "--lcores: EAL refuses more than one"},
           {{"--lcores", "0-1", "-c", "3"}, 2, "-c: EAL refuses more than one"},
           {{"--no-pci", "-l"}, 1, "-l needs a value"},
           {{"-l", "0,200"}, 0, "lcore 200 is not below RTE_MAX_LCORE (128)"},
           {{"-l", "1-0"}, 0, "-l 1-0: names no lcore: EAL refuses it"},
           {{"-c", "0"}, 0, "-c 0: names no lcore"},
           {{"-l", "0-1", "--main-lcore", "-1"}, 2, "not an lcore id below RTE_MAX_LCORE"}}) {
    r = read(args);
    EXPECT_NE(r.error.find(what), std::string::npos) << what << ": " << r.error;
    EXPECT_EQ(r.arg, index) << what;
    EXPECT_FALSE(r.lcores) << what;
  }
  // What keel cannot read: warnings, nothing checked (EAL decides at start).
  for (const auto& [args, index, what] : std::vector<std::tuple<std::vector<std::string>, size_t, std::string>>{
           {{"-l", "0-"}, 0, "-l 0-: keel cannot read it as a core list"},
           {{"-l", "(0,1)"}, 0, "-l (0,1): keel cannot read it"},
           {{"-c", "xyz"}, 0, "-c xyz: keel cannot read it as a hexadecimal core mask"},
           {{"--lcores", "(1-2@3"}, 0, "--lcores (1-2@3: keel cannot read it as an lcore map"},
           {{"--main-lcore=x"}, 0, "--main-lcore x: keel cannot read it as an lcore id"}}) {
    r = read(args);
    EXPECT_TRUE(r.error.empty()) << what << ": " << r.error;
    EXPECT_NE(r.warning.find(what), std::string::npos) << what << ": " << r.warning;
    EXPECT_EQ(r.arg, index) << what;
    EXPECT_FALSE(r.lcores) << what;
  }
  EXPECT_EQ(EalLcores::listText({0, 1, 2, 5, 7, 8}), "0-2,5,7-8");
  EXPECT_EQ(parseCpuList("0-3,8\n"), (std::optional<std::set<unsigned>>{{0, 1, 2, 3, 8}}));
  EXPECT_FALSE(parseCpuList("0-x"));
}

// dataplane.dpdk.workers against the lcores eal_args start: what EAL would
// refuse at start is an error at load (keeld --check-config), each at its
// line; with host checks, the CPUs the host has online and, without an
// lcore option, the CPUs this process may run on.
// A port that takes its frames from the kernel (a PCI NIC, net_af_xdp) with
// no exception interface leaves the host dark on it: valid, with a warning.
// net_af_packet (the kernel keeps its copy) and test vdevs are not warned.
TEST(Config, APortThatTakesTheKernelsFramesWithoutAnExceptionInterfaceIsWarned) {
  auto warnings = [](const std::string& port, const std::string& more = "") {
    ConfigResult r = parseConfig("dataplane:\n  kind: dpdk\n  dpdk:\n    port: \"" + port +
                                     "\"\n    workers: [1]\n" + more,
                                 "keel.yaml");
    EXPECT_TRUE(r.ok()) << joinErrors(r.errors);
    return r.warnings;
  };
  for (const char* port : {"0000:03:00.0", "03:00.1", "net_af_xdp0,iface=eth1"}) {
    const std::vector<std::string> w = warnings(port);
    ASSERT_EQ(w.size(), 1u) << port;
    EXPECT_EQ(w[0].rfind("keel.yaml:4: dataplane.dpdk.port: no exception_interface: this port takes its frames "
                         "from the kernel",
                         0),
              0u)
        << w[0];
    EXPECT_TRUE(warnings(port, "    exception_interface: keel0\n").empty()) << port;
  }
  for (const char* port : {"net_af_packet0,iface=eth1", "net_pcap0,rx_pcap=a.pcap", "net_ring0", "x"})
    EXPECT_TRUE(warnings(port).empty()) << port;
  // net_af_packet with an exception interface: the host's traffic twice.
  const std::vector<std::string> twice = warnings("net_af_packet0,iface=eth1", "    exception_interface: keel0\n");
  ASSERT_EQ(twice.size(), 1u);
  EXPECT_EQ(twice[0].rfind("keel.yaml:4: dataplane.dpdk.port: a net_af_packet port leaves the kernel its own copy", 0),
            0u)
      << twice[0];
}

TEST(Config, DpdkWorkersMustBeLcoresEalStartsOtherThanTheMainOne) {
  auto parse = [](const std::string& dpdk, ConfigOptions o = {}) {
    return parseConfig("dataplane:\n  kind: dpdk\n  dpdk:\n    port: x\n" + dpdk, "keel.yaml", o);
  };
  // The one error the file gets (a failure, and all of them, if not one).
  auto theError = [&](const std::string& dpdk, ConfigOptions o = {}) {
    const ConfigResult r = parse(dpdk, o);
    EXPECT_EQ(r.errors.size(), 1u) << joinErrors(r.errors);
    return r.errors.size() == 1 ? r.errors[0] : joinErrors(r.errors);
  };
  ConfigResult r = parse("    eal_args: [\"-l\", \"0-2\"]\n    workers: [1, 2]\n");
  EXPECT_TRUE(r.ok()) << joinErrors(r.errors);
  EXPECT_EQ(theError("    eal_args: [\"-l\", \"0-2\"]\n    workers: [1, 3]\n"),
            "keel.yaml:6: dataplane.dpdk.workers[1]: lcore 3 is not one EAL starts (eal_args give -l 0-2): add "
            "it to -l or --lcores in eal_args");
  EXPECT_EQ(theError("    eal_args: [\"--lcores\", \"(0-2)@(0,1)\"]\n    workers:\n      - 0\n      - 1\n"),
            "keel.yaml:7: dataplane.dpdk.workers[0]: lcore 0 is EAL's main lcore (the lowest of 0-2), where "
            "keeld's own thread runs: a worker needs an lcore of its own");
  const std::string mainGiven = theError("    eal_args: [\"-l\", \"0-2\", \"--main-lcore\", \"2\"]\n    workers: [1, 2]\n");
  EXPECT_NE(mainGiven.find("workers[1]: lcore 2 is EAL's main lcore (--main-lcore)"), std::string::npos)
      << mainGiven;
  EXPECT_EQ(theError("    eal_args: [\"-l\", \"0-2\", \"--main-lcore\", \"5\"]\n    workers: [1]\n"),
            "keel.yaml:5: dataplane.dpdk.eal_args: the main lcore 5 (--main-lcore) is not one EAL starts (eal_args "
            "give -l 0-2): EAL would refuse it");
  EXPECT_EQ(theError("    eal_args: [\"--no-huge\", \"-l\", \"0\", \"-l\", \"1\"]\n    workers: [1]\n"),
            "keel.yaml:5: dataplane.dpdk.eal_args[3]: -l: EAL refuses more than one of -l, -c and --lcores (the "
            "first is eal_args[1])");
  // What keel cannot read is a warning: EAL decides at start.
  r = parse("    eal_args: [\"--no-huge\", \"-l\", \"1-\"]\n    workers: [1]\n");
  EXPECT_TRUE(r.ok()) << joinErrors(r.errors);
  ASSERT_EQ(r.warnings.size(), 1u);
  EXPECT_EQ(r.warnings[0], "keel.yaml:5: dataplane.dpdk.eal_args[1]: -l 1-: keel cannot read it as a core list "
                           "like 1-3,5 (EAL checks it at start)");
  // No lcore option and no host to ask: nothing to check against.
  EXPECT_TRUE(parse("    workers: [7]\n").ok());

  ConfigOptions host;
  host.allowedCpus = [] { return std::set<unsigned>{0, 1}; };
  host.onlineCpus = [] { return std::set<unsigned>{0, 1, 2, 3}; };
  r = parse("    workers: [1]\n", host);
  EXPECT_TRUE(r.ok()) << joinErrors(r.errors);
  EXPECT_EQ(theError("    workers: [2]\n", host),
            "keel.yaml:5: dataplane.dpdk.workers[0]: lcore 2 is not one EAL starts (no -l, -c or --lcores in "
            "eal_args: one lcore per CPU this process may run on, 0-1): add it to -l or --lcores in eal_args");
  EXPECT_EQ(theError("    eal_args: [\"--lcores\", \"1@7,2@3\"]\n    workers: [2]\n", host),
            "keel.yaml:5: dataplane.dpdk.eal_args: --lcores 1@7,2@3 runs lcores on CPU 7, not online on this host "
            "(online: 0-3): EAL would refuse it");
  r = parse("    eal_args: [\"-l\", \"2-3\"]\n    workers: [3]\n", host);
  EXPECT_TRUE(r.ok()) << "an lcore option may name CPUs outside this process's affinity: "
                      << joinErrors(r.errors);
}

// A mac on a real of an ipip service is accepted (a service switched from
// l2dsr keeps its reals' lines) with a warning at its line: nothing uses it.
TEST(Config, AnIpipRealsMacIsAcceptedWithAWarning) {
  ConfigResult r = parseConfig(
      "dataplane: {kind: xdp, interface: eth0}\n"
      "node: {tunnel_source_v4: 10.0.0.2, next_hop_mac: \"02:00:00:00:00:01\"}\n"
      "services:\n"
      "  - name: web\n"
      "    vip: 192.0.2.1\n"
      "    port: 80\n"
      "    protocol: tcp\n"
      "    reals:\n"
      "      - {address: 10.0.1.11}\n"
      "      - {address: 10.0.1.12, mac: \"02:00:00:00:09:09\"}\n",
      "keel.yaml");
  ASSERT_TRUE(r.ok()) << joinErrors(r.errors);
  ASSERT_EQ(r.warnings.size(), 1u) << joinErrors(r.warnings);
  EXPECT_EQ(r.warnings[0], "keel.yaml:10: services[0].reals[1].mac: " + std::string(kIpipMacUnused));
}

// Health blocks that load but would mark every real down, or not catch a
// dead service, are warned about at their line: a udp service's block with
// no type (a TCP connect to its UDP port), a source this host does not have
// (no check runs), and more default udp checks of one real a second than its
// kernel answers with ICMP errors (about one).
TEST(Config, HealthThatCannotWorkIsWarnedAbout) {
  ConfigOptions opts;
  opts.addressIsLocal = [](const IpAddress& a) { return a != *IpAddress::parse("10.99.99.99"); };
  ConfigResult r = parseConfig(
      "dataplane: {kind: xdp, interface: eth0}\n"                        // 1
      "node: {tunnel_source_v4: 10.0.0.2, next_hop_mac: \"02:00:00:00:00:01\"}\n"
      "services:\n"
      "  - name: dns\n"                                                   // 4
      "    vip: 192.0.2.53\n"
      "    port: 53\n"
      "    protocol: udp\n"
      "    health: {all_down: fail-closed}\n"                             // 8
      "    reals: [{address: 10.0.1.11}]\n"
      "  - name: web\n"                                                   // 10
      "    vip: 192.0.2.80\n"
      "    port: 80\n"
      "    protocol: tcp\n"
      "    health: {type: http, source: 10.99.99.99}\n"                   // 14
      "    reals: [{address: 10.0.1.11}]\n"
      "  - name: syslog\n"                                                // 16
      "    vip: 192.0.2.53\n"
      "    port: 514\n"
      "    protocol: udp\n"
      "    health: {type: udp, interval: 500ms}\n"
      "    reals:\n"
      "      - {address: 10.0.1.12}\n"                                    // 22
      "      - {address: 10.0.1.13, health: {require_reply: true}}\n"
      "  - name: ntp\n"
      "    vip: 192.0.2.123\n"
      "    port: 123\n"
      "    protocol: udp\n"
      "    health: {type: udp}\n"
      "    reals: [{address: 10.0.1.13}]\n",
      "keel.yaml", opts);
  ASSERT_TRUE(r.ok()) << joinErrors(r.errors);
  ASSERT_EQ(r.warnings.size(), 3u) << joinErrors(r.warnings);
  EXPECT_EQ(r.warnings[0],
            "keel.yaml:8: services[0].health: no type: checks default to tcp, a TCP connect to this udp service's "
            "port; write type: udp, or type: tcp if the reals also listen on TCP there");
  EXPECT_EQ(r.warnings[1],
            "keel.yaml:14: services[1].health.source: 10.99.99.99 is not an address of this host: its checks are "
            "not run for `fall` checks in a row, then count as failures (a real that was up goes down), until it is");
  // 10.0.1.12: 2 a second; 10.0.1.13: 1 (ntp's) beside syslog's check with
  // require_reply, which needs no ICMP error: not warned about.
  EXPECT_EQ(r.warnings[2],
            "keel.yaml:22: services[2].reals[0].health: real 10.0.1.12 gets 2 default udp checks a second in all "
            "(no expect, require_reply: false), more than the about 1 ICMP error a second its kernel sends this "
            "balancer: a dead service's checks then mostly hear silence and pass; set require_reply: true or expect");
  // A reload reports (and a start logs) each of them, the source one too.
  EXPECT_EQ(r.fileWarnings, r.warnings);
}

// Health review L4: timings a file can hold but an operator rarely means
// load with a warning at the key they came from, once however many reals
// inherit it; the file's total check rate is warned about past 20,000 a
// second (one check thread).
TEST(ConfigTest, WarnsAboutCheckTimingsRarelyMeant) {
  std::string reals;
  for (int k = 1; k <= 21; ++k) reals += "      - {address: 10.0.2." + std::to_string(k) + "}\n";
  ConfigResult r = parseConfig(
      "dataplane: {kind: xdp, interface: eth0}\n"                          // 1
      "node: {tunnel_source_v4: 10.0.0.2, next_hop_mac: \"02:00:00:00:00:01\"}\n"
      "services:\n"
      "  - name: web\n"                                                     // 4
      "    vip: 192.0.2.80\n"
      "    port: 80\n"
      "    protocol: tcp\n"
      "    health:\n"
      "      interval: 1ms\n"                                               // 9
      "    reals:\n" +
          reals +                                                           // 11-31
          "  - name: api\n"                                                 // 32
          "    vip: 192.0.2.81\n"
          "    port: 80\n"
          "    protocol: tcp\n"
          "    health: {type: tcp, interval: 2s}\n"                         // 36
          "    reals:\n"
          "      - {address: 10.0.3.1, health: {timeout: 21s}}\n"           // 38
          "      - {address: 10.0.3.2, health: {timeout: 20s}}\n"
          "      - {address: 10.0.3.3, health: {interval: 100ms}}\n",
      "keel.yaml");
  ASSERT_TRUE(r.ok()) << joinErrors(r.errors);
  ASSERT_EQ(r.warnings.size(), 3u) << joinErrors(r.warnings);
  EXPECT_EQ(r.warnings[0],
            "keel.yaml:9: services[0].health.interval: 1ms checks each real 1000 times a second: an interval "
            "under 100ms is rarely meant (1s or 1m?)");
  // 20s is 10 intervals (allowed), 21s more; 100ms is not under 100ms.
  EXPECT_EQ(r.warnings[1],
            "keel.yaml:38: services[1].reals[0].health.timeout: 21s is more than 10 intervals (2s): a real that "
            "stops answering is taken down only after about fall x timeout");
  EXPECT_EQ(r.warnings[2],
            "keel.yaml:4: services: 21011 health checks a second in all (24 checked reals), more than the 20000 one "
            "check thread keeps up with (a tcp check costs ~40 us of its CPU): checks would start late; raise "
            "interval");
}

// Health review L7: a udp payload over 1232 bytes (what one datagram
// carries whole on a path of IPv6's minimum MTU) loads with a warning at the
// key when it goes to an IPv6 real, once however many reals inherit it; to
// an IPv4 real, or at 1232 bytes, it is not warned about.
TEST(ConfigTest, WarnsAboutAUdpPayloadOverTheIpv6MinimumMtu) {
  auto file = [](size_t bytes, const char* reals) {
    return std::string("dataplane: {kind: xdp, interface: eth0}\n"
                       "node: {tunnel_source_v4: 10.0.0.2, tunnel_source_v6: \"2001:db8::2\", "
                       "next_hop_mac: \"02:00:00:00:00:01\"}\n"
                       "services:\n"
                       "  - name: dns\n"
                       "    vip: 192.0.2.53\n"
                       "    port: 53\n"
                       "    protocol: udp\n"
                       "    health:\n"
                       "      type: udp\n"
                       "      payload: \"") +
           std::string(bytes, 'x') + "\"\n    reals:\n" + reals;
  };
  const char* v6 = "      - {address: \"2001:db8:1::1\"}\n      - {address: \"2001:db8:1::2\"}\n";
  ConfigResult warned = parseConfig(file(1233, v6), "keel.yaml");
  ASSERT_TRUE(warned.ok()) << joinErrors(warned.errors);
  ASSERT_EQ(warned.warnings.size(), 1u) << joinErrors(warned.warnings);
  EXPECT_EQ(warned.warnings[0],
            "keel.yaml:10: services[0].health.payload: 1233 bytes to IPv6 real 2001:db8:1::1: over 1232 bytes, what "
            "one datagram carries whole on a path of IPv6's minimum MTU (1280), so a smaller path MTU than 1281 "
            "bytes fragments the check or fails it (Packet Too Big)");
  ConfigResult fits = parseConfig(file(1232, v6), "keel.yaml");
  ASSERT_TRUE(fits.ok()) << joinErrors(fits.errors);
  EXPECT_TRUE(fits.warnings.empty()) << joinErrors(fits.warnings);
  ConfigResult v4 = parseConfig(file(1400, "      - {address: 10.0.1.1}\n"), "keel.yaml");
  ASSERT_TRUE(v4.ok()) << joinErrors(v4.errors);
  EXPECT_TRUE(v4.warnings.empty()) << joinErrors(v4.warnings);
}

// Maglev gives each of N reals about M / N slots: over M / 100 reals a
// warning (shares of equal reals differ by over ~1%), over M an error (some
// reals would get no slot, up but never picked: ring review M5).
TEST(ConfigRingSize, RealsAgainstTheRingSize) {
  auto file = [](size_t n, const char* ring) {
    std::string reals;
    for (size_t k = 0; k < n; ++k)
      reals += "      - {address: 10." + std::to_string(1 + k / 65536) + "." + std::to_string(k / 256 % 256) + "." +
               std::to_string(k % 256) + "}\n";
    return std::string("dataplane: {kind: xdp, interface: eth0}\n"
                       "node: {tunnel_source_v4: 10.0.0.2, next_hop_mac: \"02:00:00:00:00:01\"}\n"
                       "limits: {max_reals: 100000}\n"
                       "services:\n"
                       "  - name: web\n"
                       "    vip: 192.0.2.80\n"
                       "    port: 80\n"
                       "    protocol: tcp\n") +
           ring +
           "    reals:\n" + reals;
  };
  ConfigResult ok = parseConfig(file(655, ""), "keel.yaml");
  ASSERT_TRUE(ok.ok()) << joinErrors(ok.errors);
  EXPECT_TRUE(ok.warnings.empty()) << joinErrors(ok.warnings);
  ConfigResult warned = parseConfig(file(700, ""), "keel.yaml");
  ASSERT_TRUE(warned.ok()) << joinErrors(warned.errors);
  ASSERT_EQ(warned.warnings.size(), 1u) << joinErrors(warned.warnings);
  EXPECT_EQ(warned.warnings[0],
            "keel.yaml:10: services[0].reals: 700 reals on a ring of 65537 slots: about 93 slots each, so equal "
            "reals' shares can differ by 1.1% (one slot) (ring_size: 655373 gives about 936)");
  ConfigResult large = parseConfig(file(700, "    ring_size: 655373\n"), "keel.yaml");
  ASSERT_TRUE(large.ok()) << joinErrors(large.errors);
  EXPECT_TRUE(large.warnings.empty()) << joinErrors(large.warnings);
  ConfigResult refused = parseConfig(file(65538, ""), "keel.yaml");
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(joinErrors(refused.errors),
            "keel.yaml:10: services[0].reals: 65538 reals on a ring of 65537 slots: some would get no slot (never "
            "picked, though up); set ring_size: 655373 or split the service\n");
  EXPECT_EQ(ringSizeProblem(65537, 65537), "");
  EXPECT_EQ(ringSizeProblem(655374, 655373),
            "655374 reals on a ring of 655373 slots: some would get no slot (never picked, though up) or split the "
            "service");
}

struct BadCase {
  const char* description;
  std::string yaml;
  std::vector<std::string> expected;  // substrings, each must appear in some error
};

const std::string kHead =
    "dataplane: {kind: xdp, interface: eth0}\n"                      // line 1
    "node: {tunnel_source_v4: 10.0.0.2, next_hop_mac: \"02:00:00:00:00:01\"}\n"  // line 2
    "services:\n";                                                    // line 3

std::string svc(const std::string& body) {  // service starts on line 4
  return kHead + "  - name: web\n    vip: 192.0.2.10\n    port: 80\n    protocol: tcp\n" + body;
}

class BadConfig : public ::testing::TestWithParam<BadCase> {};

TEST_P(BadConfig, ReportsLineKeyAndReason) {
  const BadCase& c = GetParam();
  ConfigResult r = parseConfig(c.yaml, "keel.yaml");
  EXPECT_FALSE(r.ok()) << c.description;
  std::string all = joinErrors(r.errors);
  for (const std::string& want : c.expected)
    EXPECT_NE(all.find(want), std::string::npos)
        << c.description << "\nwanted: " << want << "\ngot:\n" << all;
}

INSTANTIATE_TEST_SUITE_P(
    Table, BadConfig,
    ::testing::Values(
        BadCase{"a VIP that is the tunnel source",
                kHead + "  - name: web\n    vip: 10.0.0.2\n    port: 80\n    protocol: tcp\n",
                {"keel.yaml:5: services[0].vip: cannot be this balancer's own address (10.0.0.2 is "
                 "node.tunnel_source_v4): keel takes the VIP's packets before the kernel, so the host's own "
                 "traffic to port 80 of it would go to the reals"}},
        BadCase{"a real that is its service's VIP", svc("    reals:\n      - {address: 192.0.2.10}\n"),
                {"keel.yaml:9: services[0].reals[0].address: a real cannot be the service's own VIP"}},
        BadCase{"weight not a number",
                svc("    reals:\n      - {address: 10.0.1.11, weight: 1}\n      - {address: 10.0.1.12, weight: abc}\n"),
                {"keel.yaml:10: services[0].reals[1].weight: must be an integer 0..65535, got \"abc\""}},
        BadCase{"weight too large",
                svc("    reals:\n      - {address: 10.0.1.11, weight: 65536}\n"),
                {"keel.yaml:9: services[0].reals[0].weight: must be an integer 0..65535, got \"65536\""}},
        BadCase{"negative weight", svc("    reals:\n      - {address: 10.0.1.11, weight: -1}\n"),
                {"keel.yaml:9: services[0].reals[0].weight: must be an integer 0..65535"}},
        // YAML 1.1 reads 010 as octal 8, a decimal read as 10: refused, not guessed (input review L2).
        BadCase{"weight with a leading zero", svc("    reals:\n      - {address: 10.0.1.11, weight: 010}\n"),
                {"keel.yaml:9: services[0].reals[0].weight: must be an integer 0..65535 (no leading zeros: "
                 "YAML 1.1 reads 010 as octal 8), got \"010\""}},
        BadCase{"health rise with a leading zero", svc("    health: {type: tcp, rise: 02}\n"),
                {"keel.yaml:8: services[0].health.rise: must be an integer 1..1000 (no leading zeros: "
                 "YAML 1.1 reads 010 as octal 8), got \"02\""}},
        BadCase{"metrics port with a leading zero",
                "dataplane: {kind: xdp, interface: eth0}\nmetrics: {address: \"127.0.0.1:09477\"}\nservices: []\n",
                {"metrics.address: must be IPV4:PORT"}},
        BadCase{"unknown top-level key (typo)", kHead + "servcies: []\n",
                {"keel.yaml:4: servcies: unknown key (expected one of: dataplane, node, limits, control, metrics, services)"}},
        BadCase{"unknown service key", svc("    ringsize: 65537\n"),
                {"keel.yaml:8: services[0].ringsize: unknown key"}},
        BadCase{"unknown real key", svc("    reals:\n      - {address: 10.0.1.11, wieght: 3}\n"),
                {"keel.yaml:9: services[0].reals[0].wieght: unknown key"}},
        BadCase{"duplicate key", svc("    port: 81\n"),
                {"keel.yaml:8: services[0].port: duplicate key (first at line 6)"}},
        BadCase{"duplicate health key", svc("    health: {type: http, type: tcp}\n"),
                {"keel.yaml:8: services[0].health.type: duplicate key at column 26 (first at column 14)"}},
        BadCase{"duplicate key in a real's health",
                svc("    reals:\n      - address: 10.0.1.11\n        health:\n          port: 81\n"
                    "          port: 82\n"),
                {"keel.yaml:12: services[0].reals[0].health.port: duplicate key (first at line 11)"}},
        BadCase{"duplicate key in a real", svc("    reals:\n      - {address: 10.0.1.11, weight: 1, weight: 2}\n"),
                {"keel.yaml:9: services[0].reals[0].weight: duplicate key at column 41 (first at column 30)"}},
        BadCase{"duplicate top-level key", "dataplane: {kind: xdp, interface: eth0}\nservices: []\nservices: []\n",
                {"keel.yaml:3: services: duplicate key (first at line 2)"}},
        BadCase{"duplicate key under dpdk",
                "dataplane:\n  kind: dpdk\n  dpdk: {port: p0, workers: [1], port: p1}\n",
                {"keel.yaml:3: dataplane.dpdk.port: duplicate key at column 34 (first at column 10)"}},
        BadCase{"a tcp check with an http key", svc("    health: {type: tcp, path: /healthz}\n"),
                {"keel.yaml:8: services[0].health.path: only http checks use path (this check is tcp)"}},
        BadCase{"a real's udp key under the service's http check",
                svc("    health: {type: http}\n    reals:\n      - {address: 10.0.1.11, health: {payload: PING}}\n"),
                {"keel.yaml:10: services[0].reals[0].health.payload: only udp checks use payload (this check is http)"}},
        BadCase{"missing dataplane", "services: []\n", {"keel.yaml:1: dataplane: required key missing"}},
        BadCase{"missing vip", kHead + "  - name: web\n    port: 80\n    protocol: tcp\n",
                {"keel.yaml:4: services[0].vip: required key missing"}},
        BadCase{"bad kind", "dataplane: {kind: ebpf, interface: eth0}\n",
                {"keel.yaml:1: dataplane.kind: must be one of xdp|dpdk, got \"ebpf\""}},
        BadCase{"bad xdp mode", "dataplane: {kind: xdp, interface: eth0, xdp_mode: offload}\n",
                {"dataplane.xdp_mode: must be one of native|generic, got \"offload\""}},
        BadCase{"interface name too long", "dataplane: {kind: xdp, interface: abcdefghijklmnopq}\n",
                {"keel.yaml:1: dataplane.interface: must be an interface name"}},
        BadCase{"dpdk without its block", "dataplane: {kind: dpdk, interface: eth0}\n",
                {"keel.yaml:1: dataplane.dpdk: required key missing"}},
        BadCase{"dpdk block under xdp",
                "dataplane:\n  kind: xdp\n  interface: eth0\n  dpdk: {port: x, workers: [1]}\n",
                {"keel.yaml:4: dataplane.dpdk: only with kind: dpdk"}},
        BadCase{"upkeep interval under a second", "dataplane: {kind: xdp, interface: eth0, upkeep_interval: 500ms}\n",
                {"keel.yaml:1: dataplane.upkeep_interval: must be at least 1s, got \"500ms\""}},
        BadCase{"upkeep interval over an hour", "dataplane: {kind: xdp, interface: eth0, upkeep_interval: 2h}\n",
                {"keel.yaml:1: dataplane.upkeep_interval: must be at most 1h, got \"2h\""}},
        BadCase{"xdp_mode under dpdk",
                "dataplane:\n  kind: dpdk\n  xdp_mode: native\n  dpdk: {port: x, workers: [1]}\n",
                {"keel.yaml:3: dataplane.xdp_mode: only with kind: xdp"}},
        BadCase{"unknown dpdk key (typo)",
                "dataplane:\n  kind: dpdk\n  dpdk:\n    port: x\n    workers: [1]\n    rx_desc: 512\n",
                {"keel.yaml:6: dataplane.dpdk.rx_desc: unknown key (expected one of: eal_args, port, "
                 "workers, rx_descriptors, tx_descriptors, mbufs_per_worker, exception_interface, "
                 "idle_sleep_us, mtu, promiscuous)"}},
        BadCase{"dpdk port missing",
                "dataplane:\n  kind: dpdk\n  dpdk:\n    workers: [1]\n",
                {"keel.yaml:4: dataplane.dpdk.port: required key missing"}},
        BadCase{"dpdk port with spaces",
                "dataplane:\n  kind: dpdk\n  dpdk:\n    port: \"net_af_packet0, iface=eth0\"\n    workers: [1]\n",
                {"keel.yaml:4: dataplane.dpdk.port: must be a PCI address like \"0000:03:00.0\" or a vdev"}},
        BadCase{"an empty value is placed at its key's line, not the next key's",
                "dataplane:\n  kind: dpdk\n  dpdk:\n\nnode: {tunnel_source_v4: 10.0.0.2}\n",
                {"keel.yaml:3: dataplane.dpdk: must be a mapping, got nothing (null)"}},
        BadCase{"an empty port is placed at its line",
                kHead + "  - name: web\n    vip: 192.0.2.10\n    port:\n    protocol: tcp\n",
                {"keel.yaml:6: services[0].port: must be an integer 0..65535, got nothing (null)"}},
        BadCase{"dpdk workers empty",
                "dataplane:\n  kind: dpdk\n  dpdk:\n    port: x\n    workers: []\n",
                {"keel.yaml:5: dataplane.dpdk.workers: must be a non-empty list of EAL lcore ids, got an empty list"}},
        BadCase{"dpdk worker not an lcore id",
                "dataplane:\n  kind: dpdk\n  dpdk:\n    port: x\n    workers: [1, two]\n",
                {"keel.yaml:5: dataplane.dpdk.workers[1]: must be an integer 0..127, got \"two\""}},
        BadCase{"dpdk duplicate worker",
                "dataplane:\n  kind: dpdk\n  dpdk:\n    port: x\n    workers:\n      - 1\n      - 1\n",
                {"keel.yaml:7: dataplane.dpdk.workers[1]: duplicate lcore 1"}},
        BadCase{"dpdk eal_args not a list",
                "dataplane:\n  kind: dpdk\n  dpdk:\n    port: x\n    workers: [1]\n    eal_args: \"-l 0-2\"\n",
                {"keel.yaml:6: dataplane.dpdk.eal_args: must be a list of strings, got \"-l 0-2\""}},
        BadCase{"dpdk descriptors out of range",
                "dataplane:\n  kind: dpdk\n  dpdk:\n    port: x\n    workers: [1]\n    tx_descriptors: 16\n",
                {"keel.yaml:6: dataplane.dpdk.tx_descriptors: must be an integer 64..32768, got \"16\""}},
        BadCase{"dpdk pool smaller than the rings",
                "dataplane:\n  kind: dpdk\n  dpdk:\n    port: x\n    workers: [1]\n    mbufs_per_worker: 1024\n",
                {"keel.yaml:6: dataplane.dpdk.mbufs_per_worker: must be at least rx_descriptors + "
                 "tx_descriptors + 448 (bursts in flight, mempool cache) = 2496, got \"1024\""}},
        // The rings fit, the slack and the tap's ring do not.
        BadCase{"dpdk pool without room for the cache and the tap",
                "dataplane:\n  kind: dpdk\n  dpdk:\n    port: x\n    workers: [1]\n    rx_descriptors: 512\n"
                "    tx_descriptors: 512\n    exception_interface: keel0\n    mbufs_per_worker: 1200\n",
                {"keel.yaml:9: dataplane.dpdk.mbufs_per_worker: must be at least rx_descriptors + "
                 "tx_descriptors + 448 (bursts in flight, mempool cache) + 512 (the exception interface's RX "
                 "ring) = 1984, got \"1200\""}},
        // net_af_xdp fills its socket's ring with 2,048 whatever the RX ring
        // (2,048 passed here, and the start failed at the tap's RX ring).
        BadCase{"dpdk af_xdp pool under its fill ring",
                "dataplane:\n  kind: dpdk\n  dpdk:\n    port: \"net_af_xdp0,iface=eth0\"\n    workers: [1]\n"
                "    rx_descriptors: 256\n    tx_descriptors: 256\n    exception_interface: keel0\n"
                "    mbufs_per_worker: 2048\n",
                {"keel.yaml:9: dataplane.dpdk.mbufs_per_worker: must be at least max(rx_descriptors, 2048: "
                 "net_af_xdp's fill ring) + tx_descriptors + 448 (bursts in flight, mempool cache) + 512 (the "
                 "exception interface's RX ring) = 3264, got \"2048\""}},
        // Checked with the default pool too.
        BadCase{"dpdk default pool under large rings",
                "dataplane:\n  kind: dpdk\n  dpdk:\n    port: x\n    workers: [1]\n    rx_descriptors: 8192\n",
                {"keel.yaml:4: dataplane.dpdk.mbufs_per_worker: must be at least rx_descriptors + "
                 "tx_descriptors + 448 (bursts in flight, mempool cache) = 9664, got 8192 (the default)"}},
        BadCase{"dpdk exception interface name",
                "dataplane:\n  kind: dpdk\n  dpdk:\n    port: x\n    workers: [1]\n    exception_interface: a/b\n",
                {"keel.yaml:6: dataplane.dpdk.exception_interface: must be an interface name"}},
        BadCase{"dpdk mtu under IPv6's minimum",
                "dataplane:\n  kind: dpdk\n  dpdk:\n    port: x\n    workers: [1]\n    mtu: 1000\n",
                {"keel.yaml:6: dataplane.dpdk.mtu: must be an integer 1280..16110, got \"1000\""}},
        BadCase{"dpdk mtu over DPDK's largest jumbo frame",
                "dataplane:\n  kind: dpdk\n  dpdk:\n    port: x\n    workers: [1]\n    mtu: 65000\n",
                {"keel.yaml:6: dataplane.dpdk.mtu: must be an integer 1280..16110, got \"65000\""}},
        BadCase{"dpdk idle sleep out of range",
                "dataplane:\n  kind: dpdk\n  dpdk:\n    port: x\n    workers: [1]\n    idle_sleep_us: 1000000\n",
                {"keel.yaml:6: dataplane.dpdk.idle_sleep_us: must be an integer 0..100000"}},
        BadCase{"dpdk promiscuous not a boolean",
                "dataplane:\n  kind: dpdk\n  dpdk:\n    port: x\n    workers: [1]\n    promiscuous: yes\n",
                {"keel.yaml:6: dataplane.dpdk.promiscuous: must be one of true|false, got \"yes\""}},
        BadCase{"dpdk l2dsr real without mac and no kernel interface",
                "dataplane: {kind: dpdk, dpdk: {port: x, workers: [1]}}\nservices:\n"
                "  - name: web\n    vip: 192.0.2.10\n    port: 80\n    protocol: tcp\n"
                "    forwarding: l2dsr\n    reals:\n      - {address: 10.0.1.11}\n",
                {"keel.yaml:9: services[0].reals[0].address: l2dsr real 10.0.1.11 of service web has no mac "
                 "and there is no neighbour table to look it up in (no dataplane.interface, nor a "
                 "dpdk.exception_interface to default to); give its mac (mac: in keel.yaml, --mac in keelctl)"}},
        BadCase{"bad vip", kHead + "  - name: web\n    vip: 192.0.2.300\n    port: 80\n    protocol: tcp\n",
                {"keel.yaml:5: services[0].vip: must be an IPv4 or IPv6 address, got \"192.0.2.300\""}},
        BadCase{"bad port", kHead + "  - name: web\n    vip: 192.0.2.1\n    port: http\n    protocol: tcp\n",
                {"keel.yaml:6: services[0].port: must be an integer 0..65535, got \"http\""}},
        BadCase{"bad protocol", kHead + "  - name: web\n    vip: 192.0.2.1\n    port: 80\n    protocol: sctp\n",
                {"keel.yaml:7: services[0].protocol: must be one of tcp|udp, got \"sctp\""}},
        BadCase{"bad forwarding", svc("    forwarding: gre\n"),
                {"keel.yaml:8: services[0].forwarding: must be one of ipip|l2dsr"}},
        BadCase{"bad scheduler", svc("    scheduler: wrr\n"),
                {"keel.yaml:8: services[0].scheduler: must be one of maglev|maglev-src, got \"wrr\""}},
        BadCase{"ring size not allowed", svc("    ring_size: 1000\n"),
                {"keel.yaml:8: services[0].ring_size: must be one of 65537|655373, got \"1000\""}},
        BadCase{"bad name charset", kHead + "  - name: \"web server\"\n    vip: 192.0.2.1\n    port: 80\n    protocol: tcp\n",
                {"keel.yaml:4: services[0].name: must be 1..63 characters"}},
        BadCase{"duplicate service name",
                svc("  - {name: web, vip: 192.0.2.11, port: 80, protocol: tcp}\n"),
                {"keel.yaml:8: services[1].name: duplicate service name \"web\" (first at line 4)"}},
        BadCase{"duplicate vip/port/proto",
                svc("  - {name: web2, vip: 192.0.2.10, port: 80, protocol: tcp}\n"),
                {"keel.yaml:8: services[1]: same vip, port and protocol as services[0]"}},
        BadCase{"duplicate real",
                svc("    reals:\n      - {address: 10.0.1.11}\n      - {address: 10.0.1.11}\n"),
                {"keel.yaml:10: services[0].reals[1].address: duplicate real 10.0.1.11 in this service (first at line 9)"}},
        BadCase{"ipip to v6 real without v6 tunnel source",
                svc("    reals:\n      - {address: \"fd00::5\"}\n"),
                {"keel.yaml:9: services[0].reals[0].address: ipip to an IPv6 real needs node.tunnel_source_v6"}},
        BadCase{"ipip without next hop mac",
                "dataplane: {kind: xdp, interface: eth0}\nnode: {tunnel_source_v4: 10.0.0.2}\nservices:\n"
                "  - {name: a, vip: 192.0.2.1, port: 80, protocol: tcp, reals: [{address: 10.0.0.9}]}\n",
                {"keel.yaml:4: services[0].forwarding: ipip forwarding needs node.next_hop_mac"}},
        BadCase{"l2dsr real without mac, no host checks",
                svc("    forwarding: l2dsr\n    reals:\n      - {address: 10.0.1.11}\n"),
                {"keel.yaml:10: services[0].reals[0].address: l2dsr real 10.0.1.11 of service web has no mac and "
                 "no neighbour table is read without host checks; give its mac (mac: in keel.yaml, --mac in "
                 "keelctl)"}},
        BadCase{"bad mac", svc("    reals:\n      - {address: 10.0.1.11, mac: \"02:00:00:00:00\"}\n"),
                {"keel.yaml:9: services[0].reals[0].mac: must be a MAC address"}},
        BadCase{"tunnel source wrong family",
                "dataplane: {kind: xdp, interface: eth0}\nnode: {tunnel_source_v4: \"fd00::1\"}\n",
                {"keel.yaml:2: node.tunnel_source_v4: must be an IPv4 address, got \"fd00::1\""}},
        BadCase{"tunnel source unspecified (input review M4)",
                "dataplane: {kind: xdp, interface: eth0}\nnode: {tunnel_source_v4: 0.0.0.0}\n",
                {"keel.yaml:2: node.tunnel_source_v4: cannot be the unspecified address (no router forwards a "
                 "tunnel from it), got 0.0.0.0"}},
        BadCase{"tunnel sources multicast, broadcast, loopback, link-local",
                "dataplane: {kind: xdp, interface: eth0}\nnode:\n  tunnel_source_v4: 224.0.0.1\n"
                "  tunnel_source_v6: \"ff02::1\"\n",
                {"keel.yaml:3: node.tunnel_source_v4: cannot be a multicast address",
                 "keel.yaml:4: node.tunnel_source_v6: cannot be a multicast address"}},
        BadCase{"tunnel source broadcast", "dataplane: {kind: xdp, interface: eth0}\nnode: {tunnel_source_v4: 255.255.255.255}\n",
                {"keel.yaml:2: node.tunnel_source_v4: cannot be the broadcast address"}},
        BadCase{"tunnel sources loopback and link-local",
                "dataplane: {kind: xdp, interface: eth0}\nnode:\n  tunnel_source_v4: 127.0.0.1\n"
                "  tunnel_source_v6: \"fe80::2\"\n",
                {"keel.yaml:3: node.tunnel_source_v4: cannot be a loopback address",
                 "keel.yaml:4: node.tunnel_source_v6: cannot be a link-local address"}},
        BadCase{"control characters in a quoted value are escaped, not printed (input review M6)",
                svc("    reals:\n      - {address: 10.0.1.11, weight: \"1\\e[31m\\r\\nfake.yaml:1: OK\"}\n"),
                {"keel.yaml:9: services[0].reals[0].weight: must be an integer 0..65535, got "
                 "\"1\\x1b[31m\\x0d\\x0afake.yaml:1: OK\""}},
        BadCase{"a NUL byte in the file (input review M7)",
                svc("    reals:\n      - {address: 10.0.1.11, weight: 1}\n      - {address: 10.0.1.12" +
                    std::string(1, '\0') + ", weight: 1}\n"),
                {"keel.yaml:10: control character 0x00 at column 28: YAML allows none but tab and line breaks"}},
        BadCase{"an unknown key of a service's health block names the service-only keys among the known",
                svc("    health: {type: tcp, intervall: 1s}\n    reals:\n      - {address: 10.0.1.11}\n"),
                {"keel.yaml:8: services[0].health.intervall: unknown key (known: type, port, path, host, expect, "
                 "payload, require_reply, interval, timeout, rise, fall, source, all_down, established_on_down)"}},
        BadCase{"an unknown key of a real's health block does not",
                svc("    reals:\n      - {address: 10.0.1.11, health: {intervall: 1s}}\n"),
                {"services[0].reals[0].health.intervall: unknown key (known: type, port, path, host, expect, "
                 "payload, require_reply, interval, timeout, rise, fall, source)"}},
        BadCase{"bad duration",
                "dataplane: {kind: xdp, interface: eth0}\nnode:\n  udp_idle_timeout: 30\n",
                {"keel.yaml:3: node.udp_idle_timeout: must be a duration like 100ms, 30s, 2m or 1h, got \"30\""}},
        BadCase{"duration too short",
                "dataplane: {kind: xdp, interface: eth0}\nnode:\n  tcp_idle_timeout: 100ms\n",
                {"keel.yaml:3: node.tcp_idle_timeout: must be at least 1s, got \"100ms\""}},
        BadCase{"idle timeout past its bound (it would wrap in the data plane's 32-bit seconds)",
                "dataplane: {kind: xdp, interface: eth0}\nnode:\n  tcp_idle_timeout: 71582789m\n",
                {"keel.yaml:3: node.tcp_idle_timeout: must be at most 168h (7 days), got \"71582789m\""}},
        BadCase{"udp idle timeout a second past its bound",
                "dataplane: {kind: xdp, interface: eth0}\nnode:\n  udp_idle_timeout: 604801s\n",
                {"keel.yaml:3: node.udp_idle_timeout: must be at most 168h (7 days), got \"604801s\""}},
        BadCase{"health interval whose milliseconds overflow",
                svc("    health: {type: tcp, interval: 307445734561826m}\n"
                    "    reals:\n      - {address: 10.0.1.11}\n"),
                {"keel.yaml:8: services[0].health.interval: must be a duration from 1ms to 1440m (one day)",
                 "got \"307445734561826m\""}},
        BadCase{"service health checked without reals",
                svc("    health: {type: bogus, interval: 0s}\n"),
                {"keel.yaml:8: services[0].health.type: must be one of none, tcp, http, udp, got \"bogus\"",
                 "keel.yaml:8: services[0].health.interval: must be a duration from 1ms"}},
        BadCase{"service health without a port on a port-0 service, without reals",
                kHead + "  - name: any\n    vip: 192.0.2.10\n    port: 0\n    protocol: tcp\n"
                        "    health: {type: tcp}\n",
                {"keel.yaml:8: services[0].health.port: required when the service's port is 0 (the "
                 "check has no port to connect to)"}},
        BadCase{"a real's own check without a port on a port-0 service: at the real",
                kHead + "  - name: any\n    vip: 192.0.2.10\n    port: 0\n    protocol: tcp\n"
                        "    reals:\n      - {address: 10.0.1.11, health: {type: tcp}}\n",
                {"keel.yaml:9: services[0].reals[0].health.port: required when the service's port "
                 "is 0"}},
        // Each of the checker's refusals names its key (configuration.md:
        // every error names the key path), at the key's line where the
        // block sets it.
        BadCase{"an http path without '/' in the service's block",
                svc("    health:\n      type: http\n      path: healthz\n"
                    "    reals:\n      - {address: 10.0.1.11}\n"),
                {"keel.yaml:10: services[0].health.path: must start with '/'"}},
        BadCase{"an http path without '/' in a real's block",
                svc("    health: {type: http}\n"
                    "    reals:\n      - address: 10.0.1.11\n        health:\n          path: \"x y\"\n"),
                {"keel.yaml:12: services[0].reals[0].health.path: must start with '/'",
                 "keel.yaml:12: services[0].reals[0].health.path: contains spaces or control characters"}},
        BadCase{"a check's source of the other family than the real",
                svc("    health: {type: tcp, source: \"2001:db8::1\"}\n"
                    "    reals:\n      - {address: 10.0.1.11}\n"),
                {"keel.yaml:8: services[0].health.source: 2001:db8::1 is not the same family as real 10.0.1.11 "
                 "(reals[0]), which inherits it"}},
        BadCase{"expect on a real that is its own tcp check",
                svc("    health: {type: http, expect: \"200-299\"}\n"
                    "    reals:\n      - {address: 10.0.1.11, health: {type: tcp, expect: \"200\"}}\n"),
                {"keel.yaml:10: services[0].reals[0].health.expect: only http and udp checks use expect "
                 "(this check is tcp)"}},
        BadCase{"icmp rate out of range",
                "dataplane: {kind: xdp, interface: eth0}\nnode:\n  icmp_too_big_rate: 2000000\n",
                {"keel.yaml:3: node.icmp_too_big_rate: must be an integer 0..1000000, got \"2000000\""}},
        BadCase{"icmp client rate out of range",
                "dataplane: {kind: xdp, interface: eth0}\nnode:\n  icmp_too_big_client_rate: 1000001\n",
                {"keel.yaml:3: node.icmp_too_big_client_rate: must be an integer 0..1000000, got \"1000001\""}},
        BadCase{"icmp client rate not a number",
                "dataplane: {kind: xdp, interface: eth0}\nnode:\n  icmp_too_big_rate: 500\n"
                "  icmp_too_big_client_rate: -5\n",
                {"keel.yaml:4: node.icmp_too_big_client_rate: must be an integer 0..1000000, got \"-5\""}},
        BadCase{"conntrack insert rate out of range",
                "dataplane: {kind: xdp, interface: eth0}\nnode:\n  conntrack_insert_rate: 100000001\n",
                {"keel.yaml:3: node.conntrack_insert_rate: must be an integer 0..100000000, got \"100000001\""}},
        BadCase{"hash source host bits",
                "dataplane: {kind: xdp, interface: eth0}\nnode:\n  hash_source_v4: 172.16.0.1/16\n",
                {"keel.yaml:3: node.hash_source_v4: host bits must be zero"}},
        BadCase{"hash source prefix length with a leading zero",
                "dataplane: {kind: xdp, interface: eth0}\nnode:\n  hash_source_v4: 172.16.0.0/016\n",
                {"keel.yaml:3: node.hash_source_v4: must be an IPv4 prefix like \"172.16.0.0/16\" (no leading zeros: "
                 "YAML 1.1 reads 010 as octal 8), got \"172.16.0.0/016\""}},
        BadCase{"hash source not a prefix",
                "dataplane: {kind: xdp, interface: eth0}\nnode:\n  hash_source_v4: 172.16.0.0\n",
                {"keel.yaml:3: node.hash_source_v4: must be an IPv4 prefix like \"172.16.0.0/16\", got \"172.16.0.0\""}},
        BadCase{"limits out of range", "dataplane: {kind: xdp, interface: eth0}\nlimits: {max_services: 0}\n",
                {"keel.yaml:2: limits.max_services: must be an integer 1..65536, got \"0\""}},
        BadCase{"too many services for the limit",
                "dataplane: {kind: xdp, interface: eth0}\nlimits: {max_services: 1}\nservices:\n"
                "  - {name: a, vip: 192.0.2.1, port: 80, protocol: tcp}\n"
                "  - {name: b, vip: 192.0.2.2, port: 80, protocol: tcp}\n",
                {"keel.yaml:4: services: 2 services exceed limits.max_services (1)"}},
        BadCase{"services not a list", kHead.substr(0, kHead.size() - 10) + "services: {web: 1}\n",
                {"keel.yaml:3: services: must be a list of services, got a mapping"}},
        BadCase{"metrics address without port", "dataplane: {kind: xdp, interface: eth0}\nmetrics: {address: 127.0.0.1}\n",
                {"keel.yaml:2: metrics.address: must be IPV4:PORT like \"127.0.0.1:9477\" or [IPV6]:PORT like \"[::1]:9477\" (port 1..65535), got \"127.0.0.1\""}},
        BadCase{"metrics address empty", "dataplane: {kind: xdp, interface: eth0}\nmetrics:\n  address: \"\"\n",
                {"keel.yaml:3: metrics.address: must be IPV4:PORT", "got \"\""}},
        BadCase{"metrics address multicast", "dataplane: {kind: xdp, interface: eth0}\nmetrics: {address: \"224.0.0.1:9477\"}\n",
                {"keel.yaml:2: metrics.address: cannot listen on a multicast address, got \"224.0.0.1:9477\""}},
        BadCase{"metrics address broadcast", "dataplane: {kind: xdp, interface: eth0}\nmetrics: {address: \"255.255.255.255:9477\"}\n",
                {"keel.yaml:2: metrics.address: cannot listen on the broadcast address"}},
        BadCase{"metrics address IPv6 multicast", "dataplane: {kind: xdp, interface: eth0}\nmetrics: {address: \"[ff02::1]:9477\"}\n",
                {"keel.yaml:2: metrics.address: cannot listen on a multicast address"}},
        BadCase{"metrics address IPv6 link-local (no zone to bind it with)",
                "dataplane: {kind: xdp, interface: eth0}\nmetrics: {address: \"[fe80::1]:9477\"}\n",
                {"keel.yaml:2: metrics.address: cannot listen on an IPv6 link-local address (binding one needs an "
                 "interface"}},
        BadCase{"metrics address a host name", "dataplane: {kind: xdp, interface: eth0}\nmetrics: {address: \"localhost:9477\"}\n",
                {"keel.yaml:2: metrics.address: must be IPV4:PORT", "got \"localhost:9477\""}},
        BadCase{"metrics IPv6 without brackets", "dataplane: {kind: xdp, interface: eth0}\nmetrics: {address: \"::1:9477\"}\n",
                {"keel.yaml:2: metrics.address: must be IPV4:PORT", "[IPV6]:PORT", "got \"::1:9477\""}},
        BadCase{"metrics IPv4 in brackets", "dataplane: {kind: xdp, interface: eth0}\nmetrics: {address: \"[127.0.0.1]:9477\"}\n",
                {"keel.yaml:2: metrics.address: must be IPV4:PORT", "got \"[127.0.0.1]:9477\""}},
        BadCase{"metrics IPv6 port missing", "dataplane: {kind: xdp, interface: eth0}\nmetrics: {address: \"[::1]\"}\n",
                {"keel.yaml:2: metrics.address: must be IPV4:PORT", "got \"[::1]\""}},
        BadCase{"metrics port 0", "dataplane: {kind: xdp, interface: eth0}\nmetrics: {address: \"127.0.0.1:0\"}\n",
                {"keel.yaml:2: metrics.address: must be IPV4:PORT"}},
        BadCase{"metrics port too large", "dataplane: {kind: xdp, interface: eth0}\nmetrics: {address: \"127.0.0.1:65536\"}\n",
                {"keel.yaml:2: metrics.address: must be IPV4:PORT", "got \"127.0.0.1:65536\""}},
        BadCase{"metrics enabled not a bool", "dataplane: {kind: xdp, interface: eth0}\nmetrics: {enabled: no}\n",
                {"keel.yaml:2: metrics.enabled: must be one of true|false, got \"no\""}},
        BadCase{"metrics unknown key", "dataplane: {kind: xdp, interface: eth0}\nmetrics: {port: 9477}\n",
                {"keel.yaml:2: metrics.port: unknown key (expected one of: enabled, address, flow_count_interval)"}},
        BadCase{"flow count interval too short", "dataplane: {kind: xdp, interface: eth0}\nmetrics: {flow_count_interval: 5s}\n",
                {"keel.yaml:2: metrics.flow_count_interval: must be 0s (no counts) or at least 10s, got \"5s\""}},
        BadCase{"flow count interval not a duration", "dataplane: {kind: xdp, interface: eth0}\nmetrics: {flow_count_interval: 0}\n",
                {"keel.yaml:2: metrics.flow_count_interval: must be a duration like 100ms, 30s, 2m or 1h, got \"0\""}},
        BadCase{"flow count interval over a day", "dataplane: {kind: xdp, interface: eth0}\nmetrics: {flow_count_interval: 25h}\n",
                {"keel.yaml:2: metrics.flow_count_interval: must be at most 24h, got \"25h\""}},
        BadCase{"metrics not a mapping", "dataplane: {kind: xdp, interface: eth0}\nmetrics: 9477\n",
                {"keel.yaml:2: metrics: must be a mapping, got \"9477\""}},
        BadCase{"YAML syntax error", "dataplane: {kind: xdp\n", {"keel.yaml:", "YAML syntax error"}},
        // yaml-cpp finds an unclosed flow collection a line or more late;
        // the error names the line and column of its '[' or '{'.
        BadCase{"unclosed flow sequence, named where it opens",
                kHead + "  - name: \"[web\"  # a quoted [ and a commented { do not count\n"
                        "    vip: 192.0.2.10\n    port: [80\n    protocol: tcp\n",
                {"keel.yaml:6: YAML syntax error: '[' at column 11 is never closed (end of sequence flow not found, "
                 "seen at line 7)"}},
        BadCase{"unclosed flow sequence at the end of the file",
                "dataplane: {kind: xdp, interface: eth0}\nnode: {}\nmetrics: {}\nservices: [\n",
                {"keel.yaml:4: YAML syntax error: '[' at column 11 is never closed (end of sequence flow not found, "
                 "seen at the end of the file)"}},
        // An alias stands for a whole subtree: nested ones made a file of
        // a few hundred bytes expand to billions of nodes (a check that ran
        // for days on keeld's loop). keel.yaml takes none.
        // fe80::/10 needs an interface to connect to, which a check has not:
        // every check would fail with "invalid argument".
        BadCase{"the service's health.source link-local (said at source, not as a real)",
                svc("    health: {type: tcp, source: \"fe80::1\"}\n    reals:\n      - {address: \"2001:db8::11\"}\n"),
                {"keel.yaml:8: services[0].health.source: fe80::1 is IPv6 link-local, which a check cannot bind "
                 "without an interface to scope it to: give a global address of this host"}},
        BadCase{"a real's health.source link-local",
                svc("    reals:\n      - {address: \"2001:db8::11\", health: {source: \"fe80::1\"}}\n"),
                {"keel.yaml:9: services[0].reals[0].health.source: fe80::1 is IPv6 link-local"}},
        BadCase{"health check of a link-local real",
                svc("    health: {type: tcp}\n    reals:\n      - {address: \"fe80::2\"}\n"),
                {"keel.yaml:10: services[0].reals[0].health: the real fe80::2 is IPv6 link-local, "
                 "which a health check cannot reach"}},
        BadCase{"YAML alias",
                kHead + "  - &web {name: web, vip: 192.0.2.10, port: 80, protocol: tcp}\n  - *web\n",
                {"keel.yaml:5: YAML alias (*name) at column 5: keel.yaml takes no aliases; write the value out"}},
        // The same fault in a block list: yaml-cpp reports an "illegal block
        // entry" at the next list item; named where the '{' opens.
        BadCase{"unclosed flow mapping in a block list, named where it opens",
                kHead + "  - name: web\n    vip: 192.0.2.10\n    port: 80\n    protocol: tcp\n    reals:\n"
                        "      - {address: 10.0.1.11, weight: 100\n      - {address: 10.0.1.12}\n"
                        "  - name: dns\n",
                {"keel.yaml:9: YAML syntax error: '{' at column 9 is never closed (illegal block entry, seen at "
                 "line 11)"}},
        // A missing closing quote swallows the lines up to the next quote,
        // where yaml-cpp gives up: named where the scalar opens.
        BadCase{"quoted scalar without its closing quote, named where it opens",
                kHead + "  - name: \"web\n    vip: 192.0.2.10\n    port: 80\n    reals: []\n"
                        "  - name: dns\n    health: {type: http, path: \"/h\"}\n",
                {"keel.yaml:4: YAML syntax error: '\"' at column 11 opens a quoted scalar that runs on to line 9: "
                 "is its closing quote missing? (end of map not found, seen at line 9)"}},
        // An error a fault lines before did not cause is named where
        // yaml-cpp found it: a multi-line flow list closed later, a quoted
        // scalar that ran over a line and closed well before the error.
        BadCase{"a later error inside a multi-line flow list that is closed",
                kHead + "  - name: web\n    vip: 192.0.2.10\n    port: 80\n    reals: [\n"
                        "      {address: 10.0.0.1},\n      {address: 10.0.0.2, weight: [5}\n    ]\n",
                {"keel.yaml:9: YAML syntax error: illegal flow end"}},
        BadCase{"a later error after a multi-line quoted scalar",
                kHead + "  - name: web\n    vip: 192.0.2.10\n    health:\n      path: \"/healthz\n        ?x=1\"\n"
                        "    reals:\n      - address: 10.0.0.1\n     - address: 10.0.0.2\n",
                {"keel.yaml:11: YAML syntax error: end of map not found"}},
        BadCase{"unclosed flow mapping, named where it opens",
                "dataplane: {kind: xdp, interface: 'eth0 }'\nnode: {}\n",
                {"keel.yaml:1: YAML syntax error: '{' at column 12 is never closed (end of map flow not found"}},
        BadCase{"empty file", "", {"keel.yaml: file is empty"}},
        // Addresses no client sends to or no real answers from.
        BadCase{"unspecified vip",
                "dataplane: {kind: xdp, interface: eth0}\nservices:\n  - {name: a, vip: 0.0.0.0, port: 80, "
                "protocol: tcp}\n",
                {"keel.yaml:3: services[0].vip: cannot be the unspecified address, got 0.0.0.0"}},
        BadCase{"loopback vip",
                "dataplane: {kind: xdp, interface: eth0}\nservices:\n  - {name: a, vip: \"::1\", port: 80, "
                "protocol: tcp}\n",
                {"keel.yaml:3: services[0].vip: cannot be a loopback address, got ::1"}},
        BadCase{"v4-mapped vip",
                "dataplane: {kind: xdp, interface: eth0}\nservices:\n  - {name: a, vip: \"::ffff:192.0.2.10\", "
                "port: 80, protocol: tcp}\n",
                {"keel.yaml:3: services[0].vip: cannot be an IPv4-mapped IPv6 address (use the IPv4 address), "
                 "got ::ffff:192.0.2.10"}},
        BadCase{"multicast real",
                "dataplane: {kind: xdp, interface: eth0}\nnode: {tunnel_source_v4: 10.0.0.2, next_hop_mac: "
                "\"02:00:00:00:00:01\"}\nservices:\n  - name: a\n    vip: 10.0.0.1\n    port: 80\n    protocol: "
                "tcp\n    reals:\n      - {address: 224.0.0.1}\n",
                {"keel.yaml:9: services[0].reals[0].address: cannot be a multicast address, got 224.0.0.1"}},
        BadCase{"broadcast real",
                "dataplane: {kind: xdp, interface: eth0}\nnode: {tunnel_source_v4: 10.0.0.2, next_hop_mac: "
                "\"02:00:00:00:00:01\"}\nservices:\n  - name: a\n    vip: 10.0.0.1\n    port: 80\n    protocol: "
                "tcp\n    reals:\n      - {address: 255.255.255.255}\n",
                {"keel.yaml:9: services[0].reals[0].address: cannot be the broadcast address, got "
                 "255.255.255.255"}},
        // Never a destination (keel-decap does not deliver to them either); ::a.b.c.d is deprecated
        // (input review L10).
        BadCase{"odd address classes",
                "dataplane: {kind: xdp, interface: eth0}\nnode: {tunnel_source_v4: 240.0.0.2, next_hop_mac: "
                "\"02:00:00:00:00:01\"}\nservices:\n  - name: a\n    vip: 0.1.2.3\n    port: 80\n    protocol: "
                "tcp\n    reals:\n      - {address: 240.0.0.1}\n      - {address: \"::10.0.0.1\"}\n"
                "  - {name: b, vip: \"::192.0.2.10\", port: 80, protocol: tcp}\n",
                {"keel.yaml:2: node.tunnel_source_v4: cannot be a reserved address (240.0.0.0/4: routers and hosts "
                 "drop it) (no router forwards a tunnel from it), got 240.0.0.2",
                 "keel.yaml:5: services[0].vip: cannot be an address of 0.0.0.0/8 (\"this network\": a source only, "
                 "never a destination, RFC 1122), got 0.1.2.3",
                 "keel.yaml:9: services[0].reals[0].address: cannot be a reserved address (240.0.0.0/4: routers and "
                 "hosts drop it), got 240.0.0.1",
                 "keel.yaml:10: services[0].reals[1].address: cannot be an IPv4-compatible IPv6 address (::a.b.c.d, "
                 "deprecated by RFC 4291: use the IPv4 address), got ::10.0.0.1",
                 "keel.yaml:11: services[1].vip: cannot be an IPv4-compatible IPv6 address (::a.b.c.d, deprecated by "
                 "RFC 4291: use the IPv4 address), got ::192.0.2.10"}},
        BadCase{"group next_hop_mac",
                "dataplane: {kind: xdp, interface: eth0}\nnode: {next_hop_mac: \"ff:ff:ff:ff:ff:ff\"}\n",
                {"keel.yaml:2: node.next_hop_mac: must be a unicast MAC address, got the group address "
                 "ff:ff:ff:ff:ff:ff"}},
        // A stray --- must not silently drop what follows it.
        BadCase{"second document", "dataplane: {kind: xdp, interface: eth0}\n---\nservices: []\n",
                {"keel.yaml:3: a second YAML document (after ---); keel.yaml is one document"}}));

// node.hash_source_v4 puts flow-hash bits under the prefix, so every
// address of it is some flow's outer source: one a router drops (the
// classes node.tunnel_source_v4 refuses) anywhere in it loses those flows.
TEST(Config, HashSourceV4RefusesAPrefixHoldingAnAddressNoRouterForwards) {
  auto parse = [](const std::string& prefix) {
    return parseConfig("dataplane: {kind: xdp, interface: eth0}\nnode:\n  hash_source_v4: \"" + prefix + "\"\n",
                       "keel.yaml");
  };
  for (const auto& [prefix, why] : std::vector<std::pair<std::string, std::string>>{
           {"224.0.0.0/8", "a multicast address (224.0.0.1 is one"},
           {"127.0.0.0/8", "a loopback address (127.0.0.1 is one"},
           {"0.0.0.0/8", "an address of 0.0.0.0/8 (\"this network\": a source only, never a destination, RFC 1122) "
                         "(0.0.0.1 is one"},
           {"240.0.0.0/8", "a reserved address (240.0.0.0/4: routers and hosts drop it) (240.0.0.1 is one"},
           {"169.254.0.0/16", "a link-local address (169.254.0.1 is one"},
           {"255.255.255.0/24", "a reserved address (240.0.0.0/4: routers and hosts drop it) (255.255.255.1 is one"},
           // Wider than the class: its link-local /16 is still some flows' source.
           {"169.0.0.0/8", "a link-local address (169.254.0.1 is one"},
           {"127.0.0.0/30", "a loopback address (127.0.0.1 is one"},
       }) {
    ConfigResult r = parse(prefix);
    EXPECT_EQ(joinErrors(r.errors), "keel.yaml:3: node.hash_source_v4: cannot hold " + why +
                                        ": no router forwards a tunnel from it), got \"" + prefix + "\"\n")
        << prefix;
  }
  for (const std::string prefix : {"172.16.0.0/12", "100.64.0.0/10", "169.0.0.0/9", "223.255.255.252/30", "10.0.0.0/8"}) {
    ConfigResult r = parse(prefix);
    EXPECT_TRUE(r.ok()) << prefix << "\n" << joinErrors(r.errors);
  }
}

// A real that is another service's VIP: its tunnels would come back to
// this balancer. Said at the real's address, naming the service (the first
// of several with that VIP); its own VIP keeps its own words.
TEST(Config, ARealThatIsAnotherServicesVipIsRefused) {
  ConfigResult r = parseConfig(kHead +
                                   "  - name: web\n"                       // 4
                                   "    vip: 192.0.2.10\n"
                                   "    port: 80\n"
                                   "    protocol: tcp\n"
                                   "    reals:\n"
                                   "      - {address: 10.0.1.1}\n"        // 9
                                   "      - {address: 192.0.2.11}\n"      // 10
                                   "      - {address: 192.0.2.10}\n"      // 11
                                   "  - {name: web2, vip: 192.0.2.11, port: 80, protocol: tcp}\n"
                                   "  - {name: web2s, vip: 192.0.2.11, port: 443, protocol: tcp}\n",
                               "keel.yaml");
  EXPECT_EQ(joinErrors(r.errors),
            "keel.yaml:10: services[0].reals[1].address: 192.0.2.11 is the VIP of services[1] (web2): a real cannot "
            "be a VIP of this balancer (a tunnel or frame to it would come back to this balancer instead of reaching "
            "a real, and its health checks would reach that service's reals and pass)\n"
            "keel.yaml:11: services[0].reals[2].address: " + std::string(kRealIsVip) + "\n");
}

// A port or protocol that is missing or did not parse is one error: the
// defaults in its place (port 0, tcp) are not checked against another
// service's key or against a check's port.
TEST(Config, ABadPortOrProtocolIsOneErrorNotAClashOrAMissingCheckPort) {
  ConfigResult r = parseConfig(kHead +
                                   "  - {name: a, vip: 192.0.2.10, port: 0, protocol: tcp}\n"             // 4
                                   "  - {name: b, vip: 192.0.2.10, port: http, protocol: tcp, health: {}}\n"  // 5
                                   "  - {name: c, vip: 192.0.2.10, port: 0, protocol: sctp}\n"           // 6
                                   "  - {name: d, vip: 192.0.2.10, protocol: tcp, health: {type: tcp},\n"  // 7
                                   "     reals: [{address: 10.0.1.1}]}\n",
                               "keel.yaml");
  EXPECT_EQ(joinErrors(r.errors),
            "keel.yaml:5: services[1].port: must be an integer 0..65535, got \"http\"\n"
            "keel.yaml:6: services[2].protocol: must be one of tcp|udp, got \"sctp\"\n"
            "keel.yaml:7: services[3].port: required key missing\n");
  // With both read, the same clash and the same check are refused as before.
  ConfigResult clash = parseConfig(kHead +
                                       "  - {name: a, vip: 192.0.2.10, port: 0, protocol: tcp}\n"
                                       "  - {name: b, vip: 192.0.2.10, port: 0, protocol: tcp, health: {}}\n",
                                   "keel.yaml");
  EXPECT_EQ(joinErrors(clash.errors),
            "keel.yaml:5: services[1].health.port: required when the service's port is 0 (the check has no port to "
            "connect to)\n"
            "keel.yaml:5: services[1]: same vip, port and protocol as services[0] (192.0.2.10 port 0 tcp)\n");
}

// `health:` with nothing under it is an error at its own line, as an
// empty node: is, on a service and on a real: it read as no checks while
// `health: {}` turns them on.
TEST(Config, AnEmptyHealthKeyIsAnErrorAtItsLine) {
  ConfigResult r = parseConfig(svc("    health:\n"                 // 8
                                   "    reals:\n"
                                   "      - address: 10.0.1.1\n"   // 10
                                   "        health:\n"             // 11
                                   "      - address: 10.0.1.2\n"), // 12
                               "keel.yaml");
  EXPECT_EQ(joinErrors(r.errors),
            "keel.yaml:8: services[0].health: must be a mapping, got nothing (null)\n"
            "keel.yaml:11: services[0].reals[0].health: must be a mapping, got nothing (null)\n");
  ConfigResult braces = parseConfig(svc("    health: {}\n    reals:\n      - {address: 10.0.1.1, health: {}}\n"),
                                    "keel.yaml");
  ASSERT_TRUE(braces.ok()) << joinErrors(braces.errors);
  EXPECT_EQ(braces.config->services[0].reals[0].healthSpec.type, HealthCheckSpec::Type::Tcp);
}

// An empty value in a health block is placed at its key's line, in the
// service's block (with a policy key beside it, which the spec builder
// reads from a copy of the block), its policy keys and a real's block.
TEST(Config, AnEmptyHealthValueIsReportedAtItsKeysLine) {
  ConfigResult r = parseConfig(svc("    health:\n"                    // 8
                                   "      type: http\n"
                                   "      expect:\n"                  // 10
                                   "      all_down:\n"                // 11
                                   "\n"
                                   "      path: /\n"                  // 13
                                   "    reals:\n"
                                   "      - address: 10.0.1.1\n"      // 15
                                   "        health:\n"
                                   "          rise:\n"                // 17
                                   "          # no value\n"
                                   "      - address: 10.0.1.2\n"),
                               "keel.yaml");
  EXPECT_EQ(joinErrors(r.errors),
            "keel.yaml:10: services[0].health.expect: must be a scalar, got nothing (null)\n"
            "keel.yaml:11: services[0].health.all_down: must be one of fail-open|fail-closed, got nothing (null)\n"
            "keel.yaml:17: services[0].reals[0].health.rise: must be a scalar, got nothing (null)\n");
}

// A service's health.source of another family than its reals is one
// error at that key, naming the reals that inherit it; a real's own
// source is reported at its own key.
TEST(Config, AServiceSourceOfAnotherFamilyIsOneErrorAtItsKey) {
  ConfigResult r = parseConfig(svc("    health:\n"                                          // 8
                                   "      source: \"2001:db8::1\"\n"                        // 9
                                   "    reals:\n"
                                   "      - {address: 10.0.1.1}\n"                           // 11
                                   "      - {address: 10.0.1.2, health: {source: \"2001:db8::2\"}}\n"
                                   "      - {address: 10.0.1.3, health: {rise: 3}}\n"),      // 13
                               "keel.yaml");
  EXPECT_EQ(joinErrors(r.errors),
            "keel.yaml:9: services[0].health.source: 2001:db8::1 is not the same family as reals 10.0.1.1 "
            "(reals[0]), 10.0.1.3 (reals[2]), which inherit it: give those reals a source of their family in their "
            "own health blocks, or split the service by family\n"
            "keel.yaml:12: services[0].reals[1].health.source: 2001:db8::2 is not the same family as 10.0.1.2\n");
}

TEST(Config, MetricsAddressAndSwitch) {
  auto parse = [](const std::string& metrics) {
    return parseConfig("dataplane: {kind: xdp, interface: eth0}\n" + metrics, "k.yaml");
  };
  ConfigResult d = parse("");
  ASSERT_TRUE(d.ok()) << joinErrors(d.errors);
  EXPECT_TRUE(d.config->metrics.enabled);
  EXPECT_EQ(d.config->metrics.listenAddress(), "127.0.0.1:9477");
  ConfigResult mgmt = parse("metrics: {address: \"10.0.0.2:9100\"}\n");
  ASSERT_TRUE(mgmt.ok()) << joinErrors(mgmt.errors);
  EXPECT_EQ(mgmt.config->metrics.address.toString(), "10.0.0.2");
  EXPECT_EQ(mgmt.config->metrics.port, 9100);
  EXPECT_EQ(mgmt.config->metrics.listenAddress(), "10.0.0.2:9100");
  ConfigResult any = parse("metrics: {address: \"0.0.0.0:9477\"}\n");
  ASSERT_TRUE(any.ok()) << joinErrors(any.errors);
  EXPECT_EQ(any.config->metrics.listenAddress(), "0.0.0.0:9477");
  ConfigResult v6 = parse("metrics: {address: \"[2001:db8::2]:9100\"}\n");
  ASSERT_TRUE(v6.ok()) << joinErrors(v6.errors);
  EXPECT_EQ(v6.config->metrics.address.toString(), "2001:db8::2");
  EXPECT_EQ(v6.config->metrics.port, 9100);
  EXPECT_EQ(v6.config->metrics.listenAddress(), "[2001:db8::2]:9100");
  ConfigResult anyV6 = parse("metrics: {address: \"[::]:9477\"}\n");
  ASSERT_TRUE(anyV6.ok()) << joinErrors(anyV6.errors);
  EXPECT_EQ(anyV6.config->metrics.listenAddress(), "[::]:9477");
  ConfigResult off = parse("metrics: {enabled: false}\n");
  ASSERT_TRUE(off.ok()) << joinErrors(off.errors);
  EXPECT_FALSE(off.config->metrics.enabled);
  // The table's flows are counted once a minute unless told otherwise.
  EXPECT_EQ(d.config->metrics.flowCountInterval, std::chrono::minutes(1));
  ConfigResult often = parse("metrics: {flow_count_interval: 10s}\n");
  ASSERT_TRUE(often.ok()) << joinErrors(often.errors);
  EXPECT_EQ(often.config->metrics.flowCountInterval, std::chrono::seconds(10));
  ConfigResult never = parse("metrics: {flow_count_interval: 0s}\n");
  ASSERT_TRUE(never.ok()) << joinErrors(never.errors);
  EXPECT_EQ(never.config->metrics.flowCountInterval.count(), 0);
}

// dataplane.upkeep_interval: the fallback of keeld's link messages; a
// reload applies it (no restart needed).
TEST(Config, UpkeepInterval) {
  ConfigResult r = parseConfig("dataplane: {kind: xdp, interface: eth0, upkeep_interval: 1h}\n", "k.yaml");
  ASSERT_TRUE(r.ok()) << joinErrors(r.errors);
  EXPECT_EQ(r.config->dataplane.upkeepInterval, std::chrono::hours(1));
  ConfigResult d = parseConfig("dataplane: {kind: xdp, interface: eth0}\n", "k.yaml");
  ASSERT_TRUE(d.ok());
  EXPECT_TRUE(restartNeededKeys(*d.config, *r.config).empty());
}

TEST(Config, CollectsEveryErrorNotJustTheFirst) {
  std::string yaml = svc(
      "    scheduler: wrr\n"
      "    reals:\n"
      "      - {address: 10.0.1.11, weight: abc}\n"
      "      - {address: nope}\n");
  ConfigResult r = parseConfig(yaml, "keel.yaml");
  ASSERT_FALSE(r.ok());
  std::string all = joinErrors(r.errors);
  EXPECT_EQ(r.errors.size(), 3u) << all;
  EXPECT_NE(all.find("keel.yaml:8: services[0].scheduler"), std::string::npos) << all;
  EXPECT_NE(all.find("keel.yaml:10: services[0].reals[0].weight"), std::string::npos) << all;
  EXPECT_NE(all.find("keel.yaml:11: services[0].reals[1].address"), std::string::npos) << all;
}

TEST(Config, AServiceHealthKeyMistakeIsReportedOnceNotPerReal) {
  std::string yaml = svc("    health: {type: tcp, interval: 307445734561826m}\n"  // line 8
                         "    reals:\n      - {address: 10.0.1.11}\n      - {address: 10.0.1.12}\n");
  ConfigResult r = parseConfig(yaml, "keel.yaml");
  ASSERT_EQ(r.errors.size(), 1u) << joinErrors(r.errors);
  EXPECT_NE(r.errors[0].find("keel.yaml:8: services[0].health.interval:"), std::string::npos) << r.errors[0];
}

// A port-0 service's check without a port is one error at the service's
// block, not one per real at a `health:` key the reals do not have; a real
// that gives its own port is fine.
TEST(Config, APortZeroServicesCheckWithoutAPortIsOneErrorAtTheService) {
  std::string yaml = kHead + "  - name: any\n    vip: 192.0.2.10\n    port: 0\n    protocol: tcp\n"
                             "    health: {type: tcp}\n"  // line 8
                             "    reals:\n      - {address: 10.0.1.11}\n      - {address: 10.0.1.12}\n"
                             "      - {address: 10.0.1.13, health: {port: 8080}}\n";
  ConfigResult r = parseConfig(yaml, "keel.yaml");
  ASSERT_EQ(r.errors.size(), 1u) << joinErrors(r.errors);
  EXPECT_EQ(r.errors[0], "keel.yaml:8: services[0].health.port: required when the service's port "
                         "is 0 (the check has no port to connect to)");
}

// Every duplicate is one error, wherever it is (blocks read by checkMap
// and health blocks alike), and each is reported once.
TEST(Config, EachDuplicateKeyIsOneError) {
  std::string yaml = "dataplane: {kind: xdp, interface: eth0, kind: xdp}\n" + svc(
      "    health: {type: http, path: /a, path: /b}\n"
      "    reals:\n      - {address: 10.0.1.11, health: {rise: 2, rise: 3}}\n      - {address: 10.0.1.12}\n")
      .substr(std::string("dataplane: {kind: xdp, interface: eth0}\n").size());
  ConfigResult r = parseConfig(yaml, "keel.yaml");
  ASSERT_EQ(r.errors.size(), 3u) << joinErrors(r.errors);
  EXPECT_EQ(r.errors[0], "keel.yaml:1: dataplane.kind: duplicate key at column 41 (first at column 13)");
  EXPECT_EQ(r.errors[1], "keel.yaml:8: services[0].health.path: duplicate key at column 36 (first at column 26)");
  EXPECT_EQ(r.errors[2], "keel.yaml:10: services[0].reals[0].health.rise: duplicate key at column 48 (first at column 39)");
}

// A service's type-specific key its reals drop by changing the type is no
// mistake of theirs; a key set at a layer whose type does not use it is,
// once, at that layer.
TEST(Config, HealthKeysAreCheckedAgainstTheTypeOfTheirLayer) {
  ConfigResult ok = parseConfig(svc(R"(    health: {type: http, path: /h}
    reals:
      - {address: 10.0.1.11, health: {type: tcp}}
      - {address: 10.0.1.12, health: {type: udp, payload: PING}}
)"), "keel.yaml");
  ASSERT_TRUE(ok.ok()) << joinErrors(ok.errors);
  EXPECT_EQ(ok.config->services[0].reals[0].healthSpec.path, "/");

  ConfigResult bad = parseConfig(svc(R"(    health: {type: udp, host: h.example}
    reals:
      - {address: 10.0.1.11}
      - {address: 10.0.1.12}
      - {address: 10.0.1.13, health: {type: http, host: ok.example}}
)"), "keel.yaml");
  ASSERT_EQ(bad.errors.size(), 1u) << joinErrors(bad.errors);
  EXPECT_EQ(bad.errors[0], "keel.yaml:8: services[0].health.host: only http checks use host (this check is udp)");
}

// health.established_on_down: repick (default) | keep, on the service only,
// like all_down; its reals' checks are resolved without it.
TEST(Config, EstablishedOnDownIsAServiceHealthChoice) {
  ConfigResult def = parseConfig(svc("    health: {type: tcp}\n    reals:\n      - {address: 10.0.1.11}\n"), "keel.yaml");
  ASSERT_TRUE(def.ok()) << joinErrors(def.errors);
  EXPECT_FALSE(def.config->services[0].healthKeepEstablished);

  ConfigResult keep = parseConfig(svc("    health: {type: tcp, port: 8080, established_on_down: keep, "
                                      "all_down: fail-closed}\n"
                                      "    reals:\n      - {address: 10.0.1.11}\n"),
                                  "keel.yaml");
  ASSERT_TRUE(keep.ok()) << joinErrors(keep.errors);
  EXPECT_TRUE(keep.config->services[0].healthKeepEstablished);
  EXPECT_FALSE(keep.config->services[0].healthFailOpen);
  EXPECT_EQ(keep.config->services[0].reals[0].healthSpec.port, 8080);

  ConfigResult repick = parseConfig(svc("    health: {established_on_down: repick}\n"), "keel.yaml");
  ASSERT_TRUE(repick.ok()) << joinErrors(repick.errors);
  EXPECT_FALSE(repick.config->services[0].healthKeepEstablished);

  ConfigResult bad = parseConfig(svc("    health: {type: tcp, established_on_down: drain}\n"), "keel.yaml");
  ASSERT_EQ(bad.errors.size(), 1u) << joinErrors(bad.errors);
  EXPECT_EQ(bad.errors[0],
            "keel.yaml:8: services[0].health.established_on_down: must be one of repick|keep, got \"drain\"");

  // Service-level only: a real's block that sets it is told so.
  ConfigResult onReal = parseConfig(
      svc("    reals:\n      - {address: 10.0.1.11, health: {established_on_down: keep}}\n"), "keel.yaml");
  ASSERT_EQ(onReal.errors.size(), 1u) << joinErrors(onReal.errors);
  EXPECT_NE(onReal.errors[0].find("keel.yaml:9: services[0].reals[0].health.established_on_down"),
            std::string::npos)
      << onReal.errors[0];
  EXPECT_NE(onReal.errors[0].find("a service's key, not a real's: set it in the service's health block"),
            std::string::npos)
      << onReal.errors[0];
}

TEST(Config, InterfaceCheckerIsConsulted) {
  ConfigOptions o;
  o.interfaceExists = [](const std::string& n) { return n == "lo"; };
  EXPECT_TRUE(parseConfig("dataplane: {kind: xdp, interface: lo}\n", "k.yaml", o).ok());
  ConfigResult r = parseConfig("dataplane: {kind: xdp, interface: eth9}\n", "k.yaml", o);
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0], "k.yaml:1: dataplane.interface: no such network interface \"eth9\"");
}

// With host checks: a VIP that is an address of dataplane.interface (the
// balancer's own) and a control.group the host lacks are errors at their
// lines; without them (a file for another machine) neither is looked up.
TEST(Config, HostChecksRefuseAVipOnTheInterfaceAndAMissingGroup) {
  const std::string text = kHead +
                           "  - {name: web, vip: 10.0.0.7, port: 0, protocol: tcp}\n"     // line 4
                           "  - {name: api, vip: 192.0.2.10, port: 80, protocol: tcp}\n"  // line 5
                           "control: {group: nosuch}\n";                                 // line 6
  // A real at one of them (fault review F8), and at the tunnel source.
  const std::string reals = kHead +
                            "  - name: api\n    vip: 192.0.2.10\n    port: 80\n    protocol: tcp\n    reals:\n"
                            "      - {address: 10.0.0.7}\n"   // line 9
                            "      - {address: 10.0.0.2}\n";  // line 10
  ConfigOptions host;
  std::vector<std::string> asked;
  host.interfaceAddresses = [&](const std::string& iface) {
    asked.push_back(iface);
    return std::vector<IpAddress>{*IpAddress::parse("10.0.0.7"), *IpAddress::parse("fe80::1")};
  };
  host.groupExists = [](const std::string& g) { return g == "keel"; };
  ConfigResult r = parseConfig(text, "keel.yaml", host);
  ASSERT_EQ(r.errors.size(), 2u) << joinErrors(r.errors);
  EXPECT_EQ(asked, std::vector<std::string>{"eth0"}) << "read once, for the whole file";
  EXPECT_EQ(r.errors[1], "keel.yaml:6: control.group: no such group \"nosuch\" on this host");
  EXPECT_EQ(r.errors[0],
            "keel.yaml:4: services[0].vip: cannot be this balancer's own address (10.0.0.7 is an address of "
            "eth0): keel takes the VIP's packets before the kernel, so the host's own traffic to any port of it "
            "(SSH, BGP, the replies to keeld's health checks) would go to the reals; give the VIP an address of "
            "its own, routed to this balancer");
  r = parseConfig(reals, "keel.yaml", host);
  ASSERT_EQ(r.errors.size(), 2u) << joinErrors(r.errors);
  EXPECT_EQ(r.errors[0],
            "keel.yaml:9: services[0].reals[0].address: a real cannot be this balancer's own address (10.0.0.7 is "
            "an address of eth0): its packets would come back to this balancer, which takes no tunnel and answers "
            "no VIP, while its health checks reach this host and pass");
  EXPECT_NE(r.errors[1].find("keel.yaml:10: services[0].reals[1].address: a real cannot be this balancer's own "
                             "address (10.0.0.2 is node.tunnel_source_v4)"),
            std::string::npos)
      << r.errors[1];
  r = parseConfig(reals, "keel.yaml");
  ASSERT_EQ(r.errors.size(), 1u) << "no host checks: the tunnel source only\n" << joinErrors(r.errors);
  EXPECT_TRUE(parseConfig(text, "keel.yaml").ok()) << "no host checks: nothing looked up";
  host.interfaceAddresses = [](const std::string&) { return std::vector<IpAddress>{}; };
  host.groupExists = [](const std::string&) { return true; };
  EXPECT_TRUE(parseConfig(text, "keel.yaml", host).ok());
}

// A VLAN trunk: the data plane on eth0, the host's addresses on eth0.100
// on it. A VIP or real at one of those is this balancer's own too, named
// with its interface (until 2026-12-06 only eth0's were read).
TEST(Config, HostChecksReadTheAddressesOfTheInterfacesOnIt) {
  const std::string text = kHead +
                           "  - name: web\n    vip: 10.100.0.7\n    port: 80\n    protocol: tcp\n    reals:\n"
                           "      - {address: 10.200.0.8}\n";  // line 9
  ConfigOptions host;
  host.interfacesOn = [](const std::string& iface) {
    return iface == "eth0" ? std::vector<std::string>{"eth0.100", "eth0.200"} : std::vector<std::string>{};
  };
  host.interfaceAddresses = [](const std::string& iface) {
    if (iface == "eth0.100") return std::vector<IpAddress>{*IpAddress::parse("10.100.0.7")};
    if (iface == "eth0.200") return std::vector<IpAddress>{*IpAddress::parse("10.200.0.8")};
    return std::vector<IpAddress>{};
  };
  ConfigResult r = parseConfig(text, "keel.yaml", host);
  ASSERT_EQ(r.errors.size(), 2u) << joinErrors(r.errors);
  EXPECT_NE(r.errors[0].find("keel.yaml:5: services[0].vip: cannot be this balancer's own address (10.100.0.7 is an "
                             "address of eth0.100)"),
            std::string::npos)
      << r.errors[0];
  EXPECT_NE(r.errors[1].find("keel.yaml:9: services[0].reals[0].address: a real cannot be this balancer's own "
                             "address (10.200.0.8 is an address of eth0.200)"),
            std::string::npos)
      << r.errors[1];
}

TEST(Config, MissingFileSaysSo) {
  ConfigResult r = loadConfigFile("/nonexistent/keel.yaml");
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_NE(r.errors[0].find("/nonexistent/keel.yaml: cannot open"), std::string::npos);
}

// Only a regular file is read: a FIFO is refused at once (opening it waited
// for a writer, holding keeld's loop: health failover, every request), and
// so are a directory and a device.
TEST(Config, OnlyARegularFileIsRead) {
  const std::string dir = std::filesystem::temp_directory_path() / ("keel-cfg-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string fifo = dir + "/keel.yaml";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  // (Before, the FIFO's open waited for a writer: the test hung until
  // meson's timeout failed it.)
  for (const std::string& path : {fifo, dir, std::string("/dev/zero")}) {
    ConfigResult r = loadConfigFile(path);
    ASSERT_EQ(r.errors.size(), 1u) << path;
    EXPECT_EQ(r.errors[0], path + ": not a regular file");
  }
  std::filesystem::remove_all(dir);
}

TEST(Config, IdleTimeoutsUpToSevenDays) {
  ConfigResult r = parseConfig(
      "dataplane: {kind: xdp, interface: eth0}\nnode: {tcp_idle_timeout: 168h, udp_idle_timeout: 604800s}\n",
      "k.yaml");
  ASSERT_TRUE(r.ok()) << joinErrors(r.errors);
  EXPECT_EQ(r.config->node.tcpIdleTimeout, std::chrono::hours(168));
  EXPECT_EQ(r.config->node.udpIdleTimeout, std::chrono::hours(168));
}

// A real whose `health:` sets another type than the service's starts from
// that type's defaults for path, host, expect and payload: the service's
// values for them describe a different check.
TEST(Config, RealThatChangesTheCheckTypeDropsTheServiceTypeKeys) {
  ConfigResult http = parseConfig(svc(R"(    health: {type: http, path: /h, host: web.example, expect: "200-299"}
    reals:
      - {address: 10.0.1.11}
      - {address: 10.0.1.12, health: {type: tcp}}
      - {address: 10.0.1.13, health: {port: 8080}}
)"), "keel.yaml");
  ASSERT_TRUE(http.ok()) << joinErrors(http.errors);
  const auto& reals = http.config->services[0].reals;
  EXPECT_EQ(reals[0].healthSpec.type, HealthCheckSpec::Type::Http);
  EXPECT_EQ(reals[0].healthSpec.statusMax, 299);
  EXPECT_EQ(reals[1].healthSpec.type, HealthCheckSpec::Type::Tcp);
  EXPECT_EQ(reals[1].healthSpec.path, "/");
  EXPECT_EQ(reals[1].healthSpec.host, "");
  // Same type: only the key it sets changes.
  EXPECT_EQ(reals[2].healthSpec.type, HealthCheckSpec::Type::Http);
  EXPECT_EQ(reals[2].healthSpec.path, "/h");
  EXPECT_EQ(reals[2].healthSpec.host, "web.example");
  EXPECT_EQ(reals[2].healthSpec.statusMax, 299);
  EXPECT_EQ(reals[2].healthSpec.port, 8080);

  ConfigResult udp = parseConfig(kHead + R"(  - name: dns
    vip: 192.0.2.1
    port: 53
    protocol: udp
    health: {type: http, port: 8080, expect: "200", interval: 2s}
    reals:
      - {address: 10.0.1.11, health: {type: udp, port: 53}}
      - {address: 10.0.1.12, health: {type: udp, port: 53, expect: "PONG", payload: "PING"}}
)", "keel.yaml");
  ASSERT_TRUE(udp.ok()) << joinErrors(udp.errors);
  const HealthCheckSpec& plain = udp.config->services[0].reals[0].healthSpec;
  EXPECT_EQ(plain.type, HealthCheckSpec::Type::Udp);
  EXPECT_EQ(plain.udpExpect, "") << "the service's http status is no udp reply prefix";
  EXPECT_EQ(plain.port, 53);
  EXPECT_EQ(plain.interval, std::chrono::seconds(2)) << "keys every type has are still inherited";
  const HealthCheckSpec& own = udp.config->services[0].reals[1].healthSpec;
  EXPECT_EQ(own.udpExpect, "PONG");
  EXPECT_EQ(own.udpPayload, "PING");
}

// keeld refuses a kind it was not built with at the key's line; without the
// predicate (a file for another machine) every kind passes.
TEST(Config, AKindNotBuiltIsAnErrorAtItsLine) {
  const std::string text = "dataplane:\n  kind: dpdk\n  dpdk: {port: x, workers: [1]}\n";
  ConfigOptions o;
  o.kindBuilt = [](DataplaneKind k) { return k == DataplaneKind::kXdp; };
  ConfigResult r = parseConfig(text, "keel.yaml", o);
  EXPECT_EQ(r.errors, std::vector<std::string>{"keel.yaml:2: dataplane.kind: dpdk is not built into this keeld"});
  EXPECT_TRUE(parseConfig(text, "keel.yaml").ok());
}

TEST(Config, RestartNeededKeysNameWhatOnlyARestartApplies) {
  Config a;
  Config b = a;
  EXPECT_TRUE(restartNeededKeys(a, b).empty());
  b.services.push_back(ServiceConfig{});  // services, node, flow counts: a reload applies them
  b.node.udpIdleTimeout = std::chrono::seconds(5);
  b.metrics.flowCountInterval = std::chrono::seconds(0);
  EXPECT_TRUE(restartNeededKeys(a, b).empty());
  b.dataplane.kind = DataplaneKind::kDpdk;
  b.dataplane.interface = "eth9";
  b.dataplane.xdpMode = XdpMode::kGeneric;
  b.dataplane.dpdk.workers = {1};
  b.limits.connTableSize = 4096;
  b.control.group = "keel";
  b.metrics.enabled = !a.metrics.enabled;
  EXPECT_EQ(restartNeededKeys(a, b),
            (std::vector<std::string>{"dataplane.kind", "dataplane.interface", "dataplane.xdp_mode", "dataplane.dpdk",
                                      "limits", "control", "metrics"}));
  // The endpoint's address or port alone, beside a new flow-count interval.
  Config c = a;
  c.metrics.flowCountInterval = std::chrono::seconds(30);
  c.metrics.port = 9478;
  EXPECT_EQ(restartNeededKeys(a, c), std::vector<std::string>{"metrics"});
  c.metrics.port = a.metrics.port;
  c.metrics.address = *IpAddress::parse("::1");
  EXPECT_EQ(restartNeededKeys(a, c), std::vector<std::string>{"metrics"});
}

// keeld keeps the config it started with only for those comparisons, as
// startShape() leaves it: without its services (their memory too), and
// with every key a restart needs, so it compares as the whole file would.
TEST(Config, StartShapeDropsTheServicesAndKeepsWhatRestartsCompare) {
  ConfigResult r = parseConfig(
      "dataplane: {kind: xdp, interface: eth9, xdp_mode: generic}\n"
      "node: {tunnel_source_v4: 10.0.0.2, next_hop_mac: \"02:00:00:00:00:01\"}\n"
      "limits: {conn_table_size: 4096}\n"
      "control: {socket: /run/keel/x.sock, mode: \"0660\"}\n"
      "metrics: {address: \"127.0.0.1:9999\"}\n"
      "services:\n"
      "  - {name: web, vip: 192.0.2.1, port: 80, protocol: tcp, reals: [{address: 10.0.1.1}]}\n",
      "keel.yaml");
  ASSERT_TRUE(r.ok()) << r.errors.front();
  const Config shape = startShape(*r.config);
  EXPECT_TRUE(shape.services.empty());
  EXPECT_EQ(shape.services.capacity(), 0u);
  EXPECT_TRUE(restartNeededKeys(shape, *r.config).empty());
  EXPECT_TRUE(restartNeededKeys(*r.config, shape).empty());
  Config defaults;  // every restart key differs from the defaults in the file above
  EXPECT_EQ(restartNeededKeys(shape, defaults),
            (std::vector<std::string>{"dataplane.interface", "dataplane.xdp_mode", "limits", "control", "metrics"}));
  EXPECT_EQ(stopStartNeededKeys(shape, restartNeededKeys(shape, defaults)),
            (std::vector<std::string>{"dataplane.interface", "dataplane.xdp_mode", "limits"}));
}

// Of those keys, a started XDP plane (pinned, adopted by the next keeld as
// it runs) needs keelctl daemon stop and a start for its shape and
// interface; a DPDK plane ends with keeld, so a restart applies them all.
TEST(Config, StopStartNeededKeysAreTheXdpPlanesShapeAndInterface) {
  Config xdp;
  const std::vector<std::string> all{"dataplane.kind", "dataplane.interface", "dataplane.xdp_mode",
                                     "dataplane.dpdk", "limits",              "control",
                                     "metrics"};
  EXPECT_EQ(stopStartNeededKeys(xdp, all),
            (std::vector<std::string>{"dataplane.kind", "dataplane.interface", "dataplane.xdp_mode", "limits"}));
  EXPECT_TRUE(stopStartNeededKeys(xdp, {"dataplane.dpdk", "control", "metrics"}).empty());
  EXPECT_TRUE(stopStartNeededKeys(xdp, all, /*stopDetaches=*/true).empty()) << "keeld --detach-on-exit";
  Config dpdk;
  dpdk.dataplane.kind = DataplaneKind::kDpdk;
  EXPECT_TRUE(stopStartNeededKeys(dpdk, all).empty());
}

TEST(Config, Durations) {
  EXPECT_EQ(parseDurationText("100ms"), std::chrono::milliseconds(100));
  EXPECT_EQ(parseDurationText("1s"), std::chrono::seconds(1));
  EXPECT_EQ(parseDurationText("2m"), std::chrono::minutes(2));
  EXPECT_EQ(parseDurationText("1h"), std::chrono::hours(1));
  EXPECT_FALSE(parseDurationText("1"));
  EXPECT_FALSE(parseDurationText("s"));
  EXPECT_FALSE(parseDurationText("1.5s"));
  EXPECT_FALSE(parseDurationText("-1s"));
  EXPECT_FALSE(parseDurationText("1d"));
}

}  // namespace
}  // namespace keel

// A DPDK keeld's state files are keyed by its port, as an XDP keeld's by its
// interface: two keelds whose sockets share a directory keep their own.
TEST(Devargs, DpdkStateKeyNamesThePortNotItsOptions) {
  EXPECT_EQ(keel::dpdkStateKey("net_af_packet0,iface=eth1,qpairs=2"), "dpdk-eth1");
  EXPECT_EQ(keel::dpdkStateKey("net_af_packet0,iface=eth1,qpairs=4"), "dpdk-eth1") << "qpairs= may change";
  EXPECT_EQ(keel::dpdkStateKey("net_af_xdp0,iface=ens3f1,start_queue=0"), "dpdk-ens3f1");
  EXPECT_EQ(keel::dpdkStateKey("eth_af_packet0,iface=eth1"), "dpdk-eth1") << "DPDK's alias of net_af_packet";
  EXPECT_EQ(keel::dpdkStateKey("net_af_packet1,iface=eth2"), "dpdk-eth2") << "another keeld's port";
  EXPECT_EQ(keel::dpdkStateKey("0000:03:00.0"), "dpdk-0000:03:00.0");
  EXPECT_EQ(keel::dpdkStateKey("03:00.0"), "dpdk-0000:03:00.0") << "EAL's short form is the same device";
  EXPECT_EQ(keel::dpdkStateKey("0000:3B:00.1"), "dpdk-0000:3b:00.1");
  EXPECT_EQ(keel::dpdkStateKey("net_ring0"), "dpdk-net_ring0");
  EXPECT_EQ(keel::dpdkStateKey("net_pcap0,rx_pcap=/tmp/a.pcap"), "dpdk-net_pcap0");
  EXPECT_EQ(keel::dpdkStateKey("net_vhost0,iface=/run/vhost/sock"), "dpdk-net_vhost0") << "a path is no interface";
}

// The vdevs over a kernel interface, whose flags, MTU and receive modes keel
// puts back, by every name EAL takes for them.
TEST(Devargs, KernelVdevsByEveryName) {
  for (const char* d : {"net_af_packet0,iface=eth1", "eth_af_packet0,iface=eth1", "net_af_xdp0,iface=eth1"}) {
    EXPECT_TRUE(keel::isKernelVdev(d)) << d;
    EXPECT_EQ(keel::vdevInterface(d), "eth1") << d;
  }
  for (const char* d : {"net_tap0,iface=eth1", "net_vhost0,iface=/run/x", "0000:03:00.0", "net_pcap0"}) {
    EXPECT_FALSE(keel::isKernelVdev(d)) << d;
    EXPECT_EQ(keel::vdevInterface(d), "") << d;
  }
}

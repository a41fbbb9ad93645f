// SPDX-License-Identifier: Apache-2.0
// keeld's ControlBackend over the registry (MockDataplane): drain keeps the
// generation, undrain restores the weight, runtime changes survive a reload
// unless the file changes that real, a bad reload changes nothing, checked
// reals start down, and fail-open keeps the last real in the ring.
#include "daemon/daemon_backend.h"
#include "daemon/state_files.h"

#include <sys/stat.h>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <string>
#include <thread>
#include <tuple>

#include "control/api/dispatcher.h"
#include "daemon/metrics.h"
#include "isolated_network.h"
#include "log_capture.h"
#include "mock_dataplane.h"
#include "wall_clock.h"

namespace keel {
namespace {

using test::MockDataplane;

// The checkers these tests start reach only loopback (isolated_network.h):
// a check of 10.0.1.x never passes (no route) wherever the test runs as root.
const bool kIsolated = test::isolateNetwork();

// Without that namespace (not root) the checkers would reach the host's
// network: every test is skipped then, saying why (root always has it,
// below).
class NeedsIsolation : public ::testing::Environment {
 public:
  void SetUp() override {
    if (kIsolated) return;
    // As root, no namespace is a failure (the isolation test says it too),
    // never a skip that would pass unseen.
    if (::geteuid() == 0) FAIL() << "root got no private network namespace: the checks would reach the host's network";
    GTEST_SKIP() << "needs root: a private network namespace (the checks would reach the host's network)";
  }
};
[[maybe_unused]] ::testing::Environment* const kNeedsIsolation =
    ::testing::AddGlobalTestEnvironment(new NeedsIsolation);

IpAddress ip(const char* s) { return *IpAddress::parse(s); }
// A real.add of one real, as keelctl sends it: no weight, mac or check
// unless the test sets them.
api::RealAddRequest realAdd(const std::string& service, const char* address) {
  api::RealAddRequest r;
  r.service = service;
  r.real.address = ip(address);
  return r;
}

std::string yaml(const std::string& reals, const std::string& health = "") {
  return "dataplane: {kind: xdp, interface: eth0}\n"
         "node: {tunnel_source_v4: 10.0.0.2, next_hop_mac: \"02:00:00:00:00:01\"}\n"
         "services:\n"
         "  - name: web\n"
         "    vip: 10.0.0.1\n"
         "    port: 80\n"
         "    protocol: tcp\n" +
         health + "    reals:\n" + reals;
}

// yaml()'s file with node.tunnel_source_v6 as well (ipip to IPv6 reals).
std::string withTunnelSourceV6(std::string file) {
  const std::string node = "node: {tunnel_source_v4: 10.0.0.2, ";
  const size_t at = file.find(node);
  EXPECT_NE(at, std::string::npos);
  if (at != std::string::npos) file.replace(at, node.size(), node + "tunnel_source_v6: \"2001:db8::2\", ");
  return file;
}

// The file with its first service (web) made l2dsr: its reals without a mac
// are looked up in the fake neighbour table when hostChecks_ is set.
std::string l2dsr(std::string file) {
  const std::string proto = "    protocol: tcp\n";
  const size_t at = file.find(proto);
  EXPECT_NE(at, std::string::npos);
  if (at != std::string::npos) file.replace(at, proto.size(), proto + "    forwarding: l2dsr\n");
  return file;
}

const std::string kTwo =
    "      - {address: 10.0.1.1, weight: 100}\n"
    "      - {address: 10.0.1.2, weight: 100}\n";

// What a restarted keeld finds pinned: the tables `from` has programmed.
void takePins(MockDataplane& to, const MockDataplane& from) {
  to.backends = from.backends;
  to.services = from.services;
  to.rings = from.rings;
}

TEST(DaemonBackendIsolation, RootRunsInAPrivateNetworkNamespace) {
  if (::geteuid() != 0) GTEST_SKIP() << "not root: the checks here reach the host's network";
  EXPECT_TRUE(kIsolated) << "root should get a private network namespace";
}

class DaemonBackendTest : public ::testing::Test {
 protected:
  void SetUp() override { files_["keel.yaml"] = yaml(kTwo); }

  void make() { backend_ = started(io_, registry_); }

  // A backend over `registry` reading files_ (and the state file, if set),
  // started on keel.yaml, adopting `pinned` if given.
  std::unique_ptr<DaemonBackend> started(boost::asio::io_context& io, Registry& registry,
                                         const ProgrammedState* pinned = nullptr) {
    auto backend = std::make_unique<DaemonBackend>(
        io, registry, "keel.yaml",
        [this](const std::string& p) {
          auto it = files_.find(p);
          if (it == files_.end()) {
            ConfigResult r;
            r.errors.push_back(p + ": cannot open");
            return r;
          }
          ConfigResult r = parseConfig(it->second, p, options());
          r.text = it->second;  // as loadConfigFile gives it
          return r;
        },
        [this](const Config&, const Config& next) {
          preApplied_.push_back(next.node.tunnelSourceV6 ? next.node.tunnelSourceV6->toString() : "none");
          return Status::ok();
        },
        [this](bool d) { stopped_ = d ? 2 : 1; });
    if (!statePath_.empty()) backend->setStatePath(statePath_);
    if (!appliedPath_.empty()) backend->setAppliedPath(appliedPath_);
    if (planeMac_)
      backend->setNodeSource([this] { return MacAddress::parse(*planeMac_); }, "eth0");
    if (routes_)
      backend->setRouteResolver([this](const std::vector<IpAddress>& dsts, const RouteSources&) {
        std::map<IpAddress, RouteHop> out;
        for (const IpAddress& d : dsts)
          if (auto it = routes_->find(d.toString()); it != routes_->end()) out[d] = it->second;
        return out;
      });
    if (startedAt_) backend->setStartedAt(*startedAt_);
    backend->setMacResolver(resolver());
    backend->setStartText(files_["keel.yaml"]);  // as keeld gives it
    ConfigResult r = parseConfig(files_["keel.yaml"], "keel.yaml", options());
    EXPECT_TRUE(r.ok()) << (r.errors.empty() ? "" : r.errors.front());
    if (!r.ok()) return backend;
    startStatus_ = backend->start(*r.config, pinned, forward_);
    if (!forward_) {
      EXPECT_TRUE(startStatus_) << startStatus_.message();
    }
    return backend;
  }

  // keeld's parse options: with hostChecks_, the fake neighbour table.
  ConfigOptions options() {
    ConfigOptions o;
    if (hostChecks_) o.resolveMac = resolver();
    return o;
  }

  // health.show's entry for a real of `service`.
  nlohmann::json healthOf(const char* service, const char* addr) {
    nlohmann::json r =
        call(std::string(R"({"id":1,"method":"health.show","params":{"service":")") + service + "\"}}");
    for (const auto& real : r["result"]["services"][0]["reals"])
      if (real["address"] == addr) return real;
    ADD_FAILURE() << "no real " << addr << " in " << r.dump();
    return {};
  }

  // The same table, read without counting (the refresh of MACs the table
  // gave, beside tests that count the retries' reads).
  MacResolver quietResolver() {
    return [this](const std::vector<IpAddress>& reals, const std::string& iface) {
      std::map<IpAddress, MacAddress> found;
      for (const IpAddress& a : reals)
        if (auto it = neighbours_.find(a.toString()); iface == "eth0" && it != neighbours_.end())
          found[a] = *MacAddress::parse(it->second);
      return found;
    };
  }

  // A neighbour table: neighbours_ on eth0 (the file's dataplane.interface),
  // each read counted and each address asked for recorded.
  MacResolver resolver() {
    return [this, table = quietResolver()](const std::vector<IpAddress>& reals, const std::string& iface) {
      ++resolverCalls_;  // one neighbour-table read (and up to ~1 s of waiting) each
      for (const IpAddress& a : reals) resolved_.push_back(a.toString() + "@" + iface);
      return table(reals, iface);
    };
  }

  // service.add of an l2dsr service on port 80.
  static api::ServiceAddRequest l2dsrService(const char* name, const char* vip, std::vector<api::RealSpec> reals) {
    api::ServiceAddRequest svc;
    svc.name = name;
    svc.vip = ip(vip);
    svc.port = 80;
    svc.forwarding = "l2dsr";
    svc.reals = std::move(reals);
    return svc;
  }

  // service.add of an ipip service with `health` and these reals (weight
  // 100, no mac, no health of their own).
  static api::ServiceAddRequest serviceRequest(const char* name, const char* vip, uint16_t port, uint8_t protocol,
                                               nlohmann::json health, std::vector<const char*> reals = {}) {
    api::ServiceAddRequest svc;
    svc.name = name;
    svc.vip = ip(vip);
    svc.port = port;
    svc.protocol = protocol;
    svc.health = std::move(health);
    for (const char* a : reals) svc.reals.push_back(api::RealSpec{ip(a), 100, std::nullopt, nullptr});
    return svc;
  }

  // One request through the real dispatcher over backend_ (stateless: it
  // holds only the backend).
  nlohmann::json call(const std::string& line) {
    api::Dispatcher dispatcher(*backend_);
    return nlohmann::json::parse(api::serializeResponse(dispatcher.handleLine(line).response));
  }

  // keel.yaml with tunnel_source_v6, started; then, with keelctl, an IPv6
  // real added to web (it needs that source) and 10.0.1.1 drained: a file
  // without the source clashes with the one, a file changing 10.0.1.1
  // gives up the other.
  void startWithAnIpv6RealAddedAndADrain() {
    files_["keel.yaml"] = withTunnelSourceV6(yaml(kTwo));
    make();
    api::RealAddRequest add = realAdd("web", "2001:db8:1::12");
    ASSERT_TRUE(backend_->addReal(add).isOk());
    ASSERT_TRUE(backend_->setRealDrain({{"web", ip("10.0.1.1")}, true, ""}).isOk());
  }

  api::RealSnapshot realOf(const char* addr) {
    auto s = backend_->findService("web");
    EXPECT_TRUE(s);
    for (const auto& r : s->reals)
      if (r.address == ip(addr)) return r;
    ADD_FAILURE() << "no real " << addr;
    return {};
  }

  // Distinct backend ids the service's ring names now.
  std::set<uint32_t> ringIds() {
    const auto& ring = dp_.rings[0];
    return {ring.begin(), ring.end()};
  }

  // The addresses the ring's ids name in the data plane's backend table;
  // an id whose backend is missing, not VALID or another service's there
  // fails the test.
  std::set<std::string> ringAddresses() {
    const std::vector<std::optional<IpAddress>> targets = dp_.ringTargets(0);
    std::set<IpAddress> found;
    std::set<uint32_t> bad;
    for (size_t slot = 0; slot < targets.size(); ++slot) {
      if (targets[slot]) found.insert(*targets[slot]);
      else bad.insert(dp_.rings.at(0)[slot]);
    }
    for (uint32_t id : bad) ADD_FAILURE() << "ring id " << id << " names no valid backend";
    std::set<std::string> out;
    for (const IpAddress& a : found) out.insert(a.toString());
    return out;
  }

  BackendId idOf(const char* addr) {
    for (const auto& v : registry_.services())
      for (const auto& r : v.reals)
        if (r.address == ip(addr)) return r.backendId;
    return ~0u;
  }

  boost::asio::io_context io_;
  MockDataplane dp_;
  Registry registry_{dp_};
  std::map<std::string, std::string> files_;
  std::unique_ptr<DaemonBackend> backend_;
  int stopped_ = 0;
  // Each PreApply call (keeld sets the node config there), by the
  // tunnel_source_v6 of the config it was given ("none" without one).
  std::vector<std::string> preApplied_;
  std::string statePath_;
  std::string appliedPath_;  // setAppliedPath's, if set
  std::function<Status()> forward_;  // start()'s `forward`, if set (its result is then the test's to check)
  Status startStatus_ = Status::ok();  // the last start()'s
  std::optional<std::chrono::system_clock::time_point> startedAt_;  // setStartedAt, if set
  std::map<std::string, std::string> neighbours_;
  // The kernel's routes by destination, if set before make(): node.next_hop_mac's
  // check runs (setRouteResolver), its neighbour reads through resolver().
  std::optional<std::map<std::string, RouteHop>> routes_;
  // The data plane's own MAC, if set before make(): the backend writes
  // node: (setNodeSource) with it as local_mac; "" reads as none.
  std::optional<std::string> planeMac_;
  std::vector<std::string> resolved_;
  int resolverCalls_ = 0;
  bool hostChecks_ = false;  // keel.yaml parsed with the fake neighbour table
};

// keeld's link messages ask for the upkeep (upkeepSoon): it runs once the
// loop has run what is ready, once for however many asks came before, and
// the timer stays armed as the fallback. dataplane.upkeep_interval is that
// timer's interval, and a reload re-arms it with a new one.
TEST_F(DaemonBackendTest, UpkeepSoonRunsOnceForABurstAndTheTimerFollowsTheFile) {
  make();
  const auto due = backend_->upkeepDue();
  ASSERT_TRUE(due);
  EXPECT_LE(*due, std::chrono::steady_clock::now() + std::chrono::seconds(5));
  dp_.maintained = 0;
  dp_.mtu = 1300;
  backend_->upkeepSoon();
  backend_->upkeepSoon();
  backend_->upkeepSoon();
  EXPECT_EQ(dp_.maintained, 0) << "not on the caller's stack";
  io_.restart();
  io_.poll();
  EXPECT_EQ(dp_.maintained, 1);
  backend_->upkeepSoon();
  io_.restart();
  io_.poll();
  EXPECT_EQ(dp_.maintained, 2) << "a later ask runs it again";
  EXPECT_EQ(backend_->upkeepDue(), due) << "the fallback timer is not moved";

  std::string hourly = yaml(kTwo);
  hourly.replace(hourly.find("interface: eth0}"), 16, "interface: eth0, upkeep_interval: 1h}");
  files_["keel.yaml"] = hourly;
  test::LogCapture log;
  api::Result r = backend_->reload();
  ASSERT_TRUE(r.isOk());
  EXPECT_GT(*backend_->upkeepDue(), std::chrono::steady_clock::now() + std::chrono::minutes(59));
  std::vector<std::string> said = log.take("upkeep_interval_changed");
  ASSERT_EQ(said.size(), 1u);
  EXPECT_NE(said[0].find("from=5s to=1h"), std::string::npos) << said[0];
  // ... and the reload's reply lists it, as every change it logs.
  EXPECT_EQ(r.result()["changes"],
            nlohmann::json::array({{{"change", "upkeep_interval_changed"}, {"from", "5s"}, {"to", "1h"}}}))
      << r.result().dump();
}

std::string macOf(const uint8_t (&bytes)[6]) {
  std::array<uint8_t, 6> b;
  std::memcpy(b.data(), bytes, 6);
  return MacAddress(b).toString();
}

// node: is the backend's: written at start, with the plane's MAC as
// local_mac; at each upkeep (keeld's timer, and at once at the interface's
// link message) a new MAC of the plane is written (local_mac_changed), a
// write that fails is said once and tried again; node.local_mac in the
// file is never replaced by the plane's.
TEST_F(DaemonBackendTest, TheNodeIsWrittenAndFollowsThePlanesMac) {
  test::LogCapture log;
  planeMac_ = "02:00:00:00:aa:01";
  make();
  ASSERT_TRUE(backend_->node());
  EXPECT_EQ(macOf(dp_.node().local_mac), "02:00:00:00:aa:01");
  EXPECT_EQ(macOf(dp_.node().next_hop_mac), "02:00:00:00:00:01");
  EXPECT_EQ(dp_.calls.front(), "setNode") << "before the registry programs anything";
  dp_.calls.clear();
  backend_->upkeep();
  EXPECT_EQ(std::count(dp_.calls.begin(), dp_.calls.end(), "setNode"), 0) << "the same MAC: nothing written";

  planeMac_ = "02:00:00:00:aa:02";
  backend_->upkeep();
  EXPECT_EQ(macOf(dp_.node().local_mac), "02:00:00:00:aa:02");
  std::vector<std::string> changed = log.take("local_mac_changed");
  ASSERT_EQ(changed.size(), 1u);
  EXPECT_EQ(changed[0].rfind("warning ", 0), 0u) << changed[0];
  EXPECT_NE(changed[0].find("interface=eth0 from=02:00:00:00:aa:01 to=02:00:00:00:aa:02"), std::string::npos)
      << changed[0];

  // Refused by the data plane: said once, tried again at each upkeep.
  planeMac_ = "02:00:00:00:aa:03";
  dp_.failAll = true;
  dp_.failedCallsLand = false;
  backend_->upkeep();
  backend_->upkeep();
  changed = log.take("local_mac_changed");
  ASSERT_EQ(changed.size(), 1u);
  EXPECT_EQ(changed[0].rfind("error ", 0), 0u) << changed[0];
  EXPECT_EQ(macOf(dp_.node().local_mac), "02:00:00:00:aa:02");
  dp_.failAll = false;
  backend_->upkeep();
  EXPECT_EQ(macOf(dp_.node().local_mac), "02:00:00:00:aa:03");
  EXPECT_EQ(log.take("local_mac_changed").size(), 1u);

  // The plane's MAC unreadable for a moment: the last one stays.
  planeMac_ = "";
  backend_->upkeep();
  EXPECT_EQ(macOf(dp_.node().local_mac), "02:00:00:00:aa:03");

  // node.local_mac set: the file's, whatever the plane's.
  std::string file = yaml(kTwo);
  const std::string node = "next_hop_mac: \"02:00:00:00:00:01\"}";
  file.replace(file.find(node), node.size(), "next_hop_mac: \"02:00:00:00:00:01\", local_mac: \"02:00:00:00:bb:01\"}");
  files_["keel.yaml"] = file;
  dp_.calls.clear();
  log.take("node_updated");
  ASSERT_TRUE(backend_->reload().isOk());
  EXPECT_EQ(macOf(dp_.node().local_mac), "02:00:00:00:bb:01");
  EXPECT_EQ(std::count(dp_.calls.begin(), dp_.calls.end(), "setNode"), 1);
  // node_updated says what changed (operator review M3: it had no fields).
  const std::vector<std::string> updated = log.take("node_updated");
  ASSERT_EQ(updated.size(), 1u);
  EXPECT_NE(updated[0].find("changed=local_mac local_mac_from=02:00:00:00:aa:03 local_mac_to=02:00:00:00:bb:01"),
            std::string::npos)
      << updated[0];
  planeMac_ = "02:00:00:00:aa:04";
  backend_->upkeep();
  EXPECT_EQ(macOf(dp_.node().local_mac), "02:00:00:00:bb:01");
  EXPECT_TRUE(log.take("local_mac_changed").empty());

  // And without it again: the plane's, read at the reload.
  files_["keel.yaml"] = yaml(kTwo);
  ASSERT_TRUE(backend_->reload().isOk());
  EXPECT_EQ(macOf(dp_.node().local_mac), "02:00:00:00:aa:04");
}

// node.hash_source_v6 reaches the node config as the flag and the /96's
// words, which the data plane's templates take (encap.h); a reload that
// sets it says so.
TEST_F(DaemonBackendTest, HashSourceV6IsWrittenToTheNode) {
  test::LogCapture log;
  planeMac_ = "02:00:00:00:aa:01";  // the backend writes the node (setNodeSource)
  make();
  EXPECT_FALSE(dp_.node().flags & KEEL_NODE_F_HASH_SRC_V6);
  std::string file = yaml(kTwo);
  const std::string node = "next_hop_mac: \"02:00:00:00:00:01\"}";
  file.replace(file.find(node), node.size(),
               "next_hop_mac: \"02:00:00:00:00:01\", hash_source_v6: \"2001:db8:200::/96\"}");
  files_["keel.yaml"] = file;
  ASSERT_TRUE(backend_->reload().isOk());
  EXPECT_TRUE(dp_.node().flags & KEEL_NODE_F_HASH_SRC_V6);
  EXPECT_FALSE(dp_.node().flags & KEEL_NODE_F_HASH_SRC_V4);
  const uint8_t want[12] = {0x20, 0x01, 0x0d, 0xb8, 0x02, 0, 0, 0, 0, 0, 0, 0};
  EXPECT_EQ(std::memcmp(dp_.node().hash_src_v6_prefix, want, 12), 0);
  const std::vector<std::string> updated = log.take("node_updated");
  ASSERT_EQ(updated.size(), 1u);
  EXPECT_NE(updated[0].find("changed=hash_source_v6 hash_source_v6_from=\"\" hash_source_v6_to=2001:db8:200::/96"),
            std::string::npos)
      << updated[0];
}

// A reload writes the new node: before the registry applies the file, and
// one the registry then refuses writes the running file's node: again.
TEST_F(DaemonBackendTest, AReloadWritesTheNodeAndARefusedOnePutsItBack) {
  planeMac_ = "02:00:00:00:aa:01";
  make();
  std::string file = yaml(kTwo + "      - {address: 10.0.1.3, weight: 100}\n");
  file.replace(file.find("02:00:00:00:00:01"), 17, "02:00:00:00:00:02");
  files_["keel.yaml"] = file;
  dp_.calls.clear();
  dp_.failAfter = 2;  // the node is written, the registry's first write fails
  dp_.failedCallsLand = false;
  ASSERT_FALSE(backend_->reload().isOk());
  ASSERT_GE(dp_.calls.size(), 2u);
  EXPECT_EQ(dp_.calls[0], "setNode");
  EXPECT_EQ(macOf(dp_.node().next_hop_mac), "02:00:00:00:00:01") << "put back";
  EXPECT_EQ(backend_->findService("web")->reals.size(), 2u);
  ASSERT_TRUE(backend_->reload().isOk());
  EXPECT_EQ(macOf(dp_.node().next_hop_mac), "02:00:00:00:00:02");
}

// node.next_hop_mac against the router the kernel routes the ipip reals
// through (review finding F9): compared when keeld starts, at each upkeep
// (keeld's 5 s timer), and at once by a reload that changes next_hop_mac;
// shown as keel_next_hop_mac_mismatch. keeld never changes the MAC itself.
TEST_F(DaemonBackendTest, NextHopMacIsComparedWithTheRealsRouter) {
  test::LogCapture log;
  routes_ = std::map<std::string, RouteHop>{{"10.0.1.1", RouteHop{ip("10.0.0.254"), "eth0"}},
                                            {"10.0.1.2", RouteHop{ip("10.0.0.254"), "eth0"}}};
  neighbours_["10.0.0.254"] = "02:00:00:00:00:01";
  make();
  EXPECT_EQ(log.take("next_hop_mac_matches").size(), 1u);
  EXPECT_EQ(backend_->nextHopMismatches(), (std::map<std::string, bool>{{"ipv4", false}}));

  // The router replaced: its entry names another MAC.
  neighbours_["10.0.0.254"] = "02:00:00:00:00:99";
  backend_->upkeep();
  std::vector<std::string> warned = log.take("next_hop_mac_mismatch");
  ASSERT_EQ(warned.size(), 1u);
  EXPECT_NE(warned[0].find("gateway=10.0.0.254 neighbour_mac=02:00:00:00:00:99 next_hop_mac=02:00:00:00:00:01"),
            std::string::npos)
      << warned[0];
  EXPECT_EQ(collectSnapshot(*backend_, "v").nextHopMismatch, (std::map<std::string, bool>{{"ipv4", true}}));
  backend_->upkeep();
  EXPECT_TRUE(log.take("next_hop_mac_mismatch").empty());
  EXPECT_EQ(backend_->fileConfig().node.nextHopMac->toString(), "02:00:00:00:00:01") << "the file's MAC stays";

  // The operator's fix, a reload with the router's MAC: compared at once,
  // not at the next upkeep.
  std::string next = yaml(kTwo);
  next.replace(next.find("02:00:00:00:00:01"), 17, "02:00:00:00:00:99");
  files_["keel.yaml"] = next;
  ASSERT_TRUE(backend_->reload().isOk());
  std::vector<std::string> matches = log.take("next_hop_mac_matches");
  ASSERT_EQ(matches.size(), 1u);
  EXPECT_NE(matches[0].find("next_hop_mac=02:00:00:00:00:99"), std::string::npos) << matches[0];
  EXPECT_EQ(collectSnapshot(*backend_, "v").nextHopMismatch, (std::map<std::string, bool>{{"ipv4", false}}));
}

// conn.list walks the connection table on a thread of its own and answers
// through the loop, so a walk (~0.3 s for a full XDP map) holds up no health
// check, scrape or other request. Here the walk is held: the loop answers
// another request meanwhile, the answer comes once the walk is done, and
// past kMaxConnScans walks running or waiting one more is refused.
TEST_F(DaemonBackendTest, ConnListWalksTheTableOffTheLoop) {
  make();
  keel_flow_key k{};
  ip("198.51.100.1").toWords(k.src);
  ip("10.0.0.1").toWords(k.dst);
  k.sport = htons(1000);
  k.dport = htons(80);
  k.proto = KEEL_PROTO_TCP;
  k.family = KEEL_AF_INET;
  const RealView real = registry_.service("web")->reals[0];
  dp_.setConn(k, ConnEntry{real.backendId, real.gen, 0, false});

  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  bool releasedYet = false;
  auto releaseWalks = [&] {
    if (!releasedYet) release.set_value();
    releasedYet = true;
  };
  // Whatever happens below, no walk outlives the test's locals.
  struct Cleanup {
    std::function<void()> f;
    ~Cleanup() { f(); }
  } cleanup{[&] {
    releaseWalks();
    backend_->stopConnScans();
    dp_.onScan = nullptr;
  }};
  // run_for waits only while the loop has work: keep it, so the bounded
  // waits below are bounded by time, not by an empty queue.
  auto work = boost::asio::make_work_guard(io_);
  auto runUntil = [&](auto done) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (!done() && std::chrono::steady_clock::now() < deadline) {
      io_.restart();
      io_.run_for(std::chrono::milliseconds(10));
    }
  };
  std::promise<std::thread::id> walkerPromise;
  std::future<std::thread::id> walker = walkerPromise.get_future();
  std::atomic<bool> walkerSeen{false};
  dp_.onScan = [&] {
    if (!walkerSeen.exchange(true)) walkerPromise.set_value(std::this_thread::get_id());
    (void)released.wait_for(std::chrono::seconds(30));  // bounded: a broken test fails, never hangs
  };

  api::Dispatcher dispatcher(*backend_);
  std::vector<nlohmann::json> answers;
  auto ask = [&](int id) {
    api::DispatchOutcome out =
        dispatcher.handleLine(R"({"id":)" + std::to_string(id) + R"(,"method":"conn.list"})");
    ASSERT_TRUE(out.later) << out.response.dump();
    // As the server does: Send may be called on the walk's thread, so the
    // answer is handed to the loop.
    out.later([&](nlohmann::json r) { boost::asio::post(io_, [&answers, r] { answers.push_back(r); }); });
  };
  ask(1);
  ASSERT_EQ(walker.wait_for(std::chrono::seconds(30)), std::future_status::ready);
  EXPECT_NE(walker.get(), std::this_thread::get_id()) << "the walk runs off the loop's thread";
  // The loop is free while the walk is held.
  EXPECT_EQ(call(R"({"id":9,"method":"health.show"})")["ok"], true);
  for (int id = 2; id <= static_cast<int>(DaemonBackend::kMaxConnScans); ++id) ask(id);
  ask(99);  // one past the bound: refused at once
  io_.restart();
  io_.poll();
  ASSERT_EQ(answers.size(), 1u);
  EXPECT_EQ(answers[0]["id"], 99);
  EXPECT_EQ(answers[0]["ok"], false);
  EXPECT_EQ(answers[0]["error"]["code"], "try_later");  // retryable, unlike failed (an unreadable table)
  EXPECT_NE(answers[0]["error"]["message"].get<std::string>().find("already running or waiting"), std::string::npos)
      << answers[0].dump();
  io_.restart();
  io_.poll();
  EXPECT_EQ(answers.size(), 1u) << "no answer before the walk is done";

  releaseWalks();
  runUntil([&] { return answers.size() >= 1 + DaemonBackend::kMaxConnScans; });
  ASSERT_EQ(answers.size(), 1 + DaemonBackend::kMaxConnScans);
  for (size_t i = 1; i < answers.size(); ++i) {
    const nlohmann::json& r = answers[i];
    EXPECT_EQ(r["id"], static_cast<int>(i)) << "answered in the order asked";
    ASSERT_EQ(r["ok"], true) << r.dump();
    ASSERT_EQ(r["result"]["connections"].size(), 1u) << r.dump();
    EXPECT_EQ(r["result"]["connections"][0]["real"], real.address.toString());
    EXPECT_EQ(r["result"]["connections"][0]["state"], "kept");
  }
  // The bound counts walks, not requests ever made: a new one is taken.
  dp_.onScan = nullptr;
  ask(100);
  runUntil([&] { return answers.size() >= 2 + DaemonBackend::kMaxConnScans; });
  ASSERT_EQ(answers.size(), 2 + DaemonBackend::kMaxConnScans);
  EXPECT_EQ(answers.back()["ok"], true) << answers.back().dump();
}

// keeld looks at the port's MTU between applies (every
// dataplane.upkeep_interval): an MTU lowered under it shows in the service.
TEST_F(DaemonBackendTest, AnMtuChangedBetweenAppliesIsNoticed) {
  files_["keel.yaml"] =
      "dataplane: {kind: xdp, interface: eth0, upkeep_interval: 1s}\n"
      "node: {tunnel_source_v6: \"2001:db8::2\", next_hop_mac: \"02:00:00:00:00:01\"}\n"
      "services:\n"
      "  - {name: web6, vip: \"2001:db8::10\", port: 443, protocol: tcp, reals: [{address: \"2001:db8:1::11\"}]}\n";
  make();
  ASSERT_FALSE(backend_->findService("web6")->ipv6MtuShortfall);
  dp_.mtu = 1300;
  // Bounded: a few intervals at most.
  for (int i = 0; i < 300 && !backend_->findService("web6")->ipv6MtuShortfall; ++i) {
    io_.restart();
    io_.run_for(std::chrono::milliseconds(50));
  }
  std::optional<api::MtuShortfall> m = backend_->findService("web6")->ipv6MtuShortfall;
  ASSERT_TRUE(m) << "not noticed";
  EXPECT_EQ(m->mtu, 1300u);
  EXPECT_EQ(m->needed, 1320u);
}

TEST_F(DaemonBackendTest, DrainKeepsGenerationAndUndrainRestoresWeight) {
  make();
  const BackendId a = idOf("10.0.1.1");
  const uint32_t gen = dp_.backends[a].gen;
  ASSERT_TRUE(backend_->setRealDrain({{"web", ip("10.0.1.1")}, true, ""}).isOk());
  EXPECT_EQ(ringIds(), std::set<uint32_t>{idOf("10.0.1.2")});
  EXPECT_EQ(dp_.backends[a].gen, gen);
  EXPECT_TRUE(dp_.backends[a].flags & KEEL_BE_F_VALID);
  auto r = realOf("10.0.1.1");
  EXPECT_EQ(r.state(), "draining");
  EXPECT_EQ(r.weight, 100u);  // the weight it returns with
  ASSERT_TRUE(backend_->setRealDrain({{"web", ip("10.0.1.1")}, true, ""}).isOk());  // repeat: fine
  api::Result undrained = backend_->setRealDrain({{"web", ip("10.0.1.1")}, false, ""});
  ASSERT_TRUE(undrained.isOk());
  EXPECT_FALSE(undrained.result().contains("warnings")) << undrained.result().dump();
  EXPECT_EQ(ringIds(), (std::set<uint32_t>{a, idOf("10.0.1.2")}));
  EXPECT_EQ(realOf("10.0.1.1").state(), "up");
  // Undrain of a real that is not drained: nothing changes, and the answer
  // says so (the dispatcher's, which keelctl prints as a warning), with no
  // real_undrained log.
  test::LogCapture log;
  nlohmann::json again = call(R"({"id":1,"method":"real.undrain","params":{"service":"web","address":"10.0.1.2"}})");
  ASSERT_EQ(again["ok"], true) << again.dump();
  EXPECT_EQ(again["result"]["warnings"],
            nlohmann::json::array({"real 10.0.1.2 of service web was not drained: nothing changed"}));
  EXPECT_TRUE(log.take("real_undrained").empty());
  EXPECT_EQ(ringIds(), (std::set<uint32_t>{a, idOf("10.0.1.2")}));
}

// keeld's answer to a change that leaves a service no usable real (weights
// 0, the last real drained, or a reload): made, with the ring it left and
// a warning (operator review H1); through the real registry, so the ring
// read after the change is the one the data plane got.
TEST_F(DaemonBackendTest, AChangeThatEmptiesTheRingIsMadeAndWarned) {
  make();
  const std::string emptied =
      "services[web]: no usable real now: new flows to 10.0.0.1:80/tcp are dropped (drop_no_backend)";
  nlohmann::json a =
      call(R"({"id":1,"method":"real.set_weight","params":{"service":"web","address":"10.0.1.1","weight":0}})");
  ASSERT_EQ(a["ok"], true) << a.dump();
  EXPECT_EQ(a["result"]["before"], (nlohmann::json{{"weight", 100}, {"state", "up"}})) << a.dump();
  EXPECT_EQ(a["result"]["after"], (nlohmann::json{{"weight", 0}, {"state", "up"}})) << a.dump();
  EXPECT_EQ(a["result"]["reals_in_ring"], 1) << a.dump();
  EXPECT_EQ(a["result"]["published_ring_size"], KEEL_RING_SIZE_DEFAULT) << a.dump();
  EXPECT_FALSE(a["result"].contains("warnings")) << a.dump();
  nlohmann::json b =
      call(R"({"id":2,"method":"real.drain","params":{"service":"web","address":"10.0.1.2"}})");
  ASSERT_EQ(b["ok"], true) << b.dump();
  EXPECT_EQ(b["result"]["published_ring_size"], 0) << b.dump();
  EXPECT_EQ(b["result"]["reals_in_ring"], 0) << b.dump();
  EXPECT_EQ(b["result"]["warnings"], nlohmann::json::array({emptied})) << b.dump();
  EXPECT_EQ(backend_->findService("web")->publishedRingSize, 0u);
  // Back, then a reload whose file takes both weights to 0.
  ASSERT_EQ(call(R"({"id":3,"method":"real.undrain","params":{"service":"web","address":"10.0.1.2"}})")["ok"], true);
  files_["keel.yaml"] = yaml("      - {address: 10.0.1.1, weight: 0}\n      - {address: 10.0.1.2, weight: 0}\n");
  nlohmann::json r = call(R"({"id":4,"method":"config.reload"})");
  ASSERT_EQ(r["ok"], true) << r.dump();
  const nlohmann::json& w = r["result"]["warnings"];
  EXPECT_NE(std::find(w.begin(), w.end(), nlohmann::json(emptied)), w.end()) << r.dump();
}

// A drain records when it began (whole seconds) and the operator's reason;
// a repeated drain keeps the time and takes a new reason (none given: the
// old one stays); undrain clears the record; a reload keeps it.
TEST_F(DaemonBackendTest, DrainRecordsSinceWhenAndWhy) {
  make();
  using std::chrono::system_clock;
  EXPECT_FALSE(realOf("10.0.1.1").drainedSince);
  const auto before = std::chrono::floor<std::chrono::seconds>(system_clock::now());
  ASSERT_TRUE(backend_->setRealDrain({{"web", ip("10.0.1.1")}, true, "kernel upgrade"}).isOk());
  const auto after = system_clock::now();
  auto r = realOf("10.0.1.1");
  ASSERT_TRUE(r.drainedSince);
  EXPECT_GE(*r.drainedSince, before);
  EXPECT_LE(*r.drainedSince, after);
  EXPECT_EQ(r.drainedSince->time_since_epoch() % std::chrono::seconds(1), system_clock::duration::zero());
  EXPECT_EQ(r.drainReason, "kernel upgrade");
  EXPECT_FALSE(realOf("10.0.1.2").drainedSince);
  const auto since = *r.drainedSince;

  ASSERT_TRUE(backend_->setRealDrain({{"web", ip("10.0.1.1")}, true, ""}).isOk());
  EXPECT_EQ(realOf("10.0.1.1").drainedSince, since);
  EXPECT_EQ(realOf("10.0.1.1").drainReason, "kernel upgrade");
  ASSERT_TRUE(backend_->setRealDrain({{"web", ip("10.0.1.1")}, true, "and a BIOS update"}).isOk());
  EXPECT_EQ(realOf("10.0.1.1").drainedSince, since);
  EXPECT_EQ(realOf("10.0.1.1").drainReason, "and a BIOS update");

  files_["keel.yaml"] = yaml(kTwo + "      - {address: 10.0.1.3, weight: 100}\n");
  ASSERT_TRUE(backend_->reload().isOk());
  EXPECT_EQ(realOf("10.0.1.1").drainedSince, since);
  EXPECT_EQ(realOf("10.0.1.1").drainReason, "and a BIOS update");

  ASSERT_TRUE(backend_->setRealDrain({{"web", ip("10.0.1.1")}, false, ""}).isOk());
  EXPECT_FALSE(realOf("10.0.1.1").drainedSince);
  EXPECT_EQ(realOf("10.0.1.1").drainReason, "");
  // A new drain is a new record: no reason left over from the last one.
  ASSERT_TRUE(backend_->setRealDrain({{"web", ip("10.0.1.1")}, true, ""}).isOk());
  EXPECT_TRUE(realOf("10.0.1.1").drainedSince);
  EXPECT_EQ(realOf("10.0.1.1").drainReason, "");
}

// A reload that changes what only a restart applies says so in its reply,
// against what keeld started with: again on the next reload of the same
// file (the running values are still the started ones), and no more once
// the file is back.
TEST_F(DaemonBackendTest, ReloadRepliesWithTheKeysThatNeedARestart) {
  make();
  api::Result r = backend_->reload();
  ASSERT_TRUE(r.isOk());
  EXPECT_FALSE(r.result().contains("restart_needed")) << r.result().dump();
  std::string changed = yaml(kTwo);
  changed.replace(changed.find("services:"), 0, "limits: {max_services: 64}\nmetrics: {enabled: false}\n");
  files_["keel.yaml"] = changed;
  for (int i = 0; i < 2; ++i) {
    r = backend_->reload();
    ASSERT_TRUE(r.isOk()) << r.error().message;
    EXPECT_EQ(r.result()["restart_needed"], nlohmann::json({"limits", "metrics"})) << i;
    // keeld started an XDP plane: the next keeld would adopt its limits.
    EXPECT_EQ(r.result()["stop_start_needed"], nlohmann::json({"limits"})) << i;
  }
  backend_->setStopDetaches(true);  // keeld --detach-on-exit: a restart starts a new plane
  r = backend_->reload();
  ASSERT_TRUE(r.isOk()) << r.error().message;
  EXPECT_EQ(r.result()["restart_needed"], nlohmann::json({"limits", "metrics"}));
  EXPECT_FALSE(r.result().contains("stop_start_needed")) << r.result().dump();
  backend_->setStopDetaches(false);
  files_["keel.yaml"] = yaml(kTwo);
  r = backend_->reload();
  ASSERT_TRUE(r.isOk());
  EXPECT_FALSE(r.result().contains("restart_needed")) << r.result().dump();
  EXPECT_FALSE(r.result().contains("stop_start_needed")) << r.result().dump();
  // Only what a restart applies: no stop_start_needed.
  changed = yaml(kTwo);
  changed.replace(changed.find("services:"), 0, "metrics: {enabled: false}\n");
  files_["keel.yaml"] = changed;
  r = backend_->reload();
  ASSERT_TRUE(r.isOk()) << r.error().message;
  EXPECT_EQ(r.result()["restart_needed"], nlohmann::json({"metrics"}));
  EXPECT_FALSE(r.result().contains("stop_start_needed")) << r.result().dump();
}

// config.reload answers what it changed (`changes`): one item per record
// the reload logged, in the order it logged them, made from the same values
// (config_diff.h, ConfigChange), so the reply and the log cannot disagree.
// A reload of the same file changes nothing and says so: `changes` empty.
TEST_F(DaemonBackendTest, AReloadRepliesWithEveryChangeItLogged) {
  planeMac_ = "02:00:00:00:aa:01";  // node: is written, and a change to it logged
  const std::string old =
      "  - name: old\n"
      "    vip: 10.0.0.3\n"
      "    port: 80\n"
      "    protocol: tcp\n"
      "    reals:\n"
      "      - {address: 10.0.1.5}\n";
  files_["keel.yaml"] = yaml(kTwo + "      - {address: 10.0.1.4, weight: 100}\n",
                             "    health: {type: tcp, port: 9, interval: 1h}\n") +
                        old;
  make();
  {
    test::LogCapture log;
    api::Result same = backend_->reload();
    ASSERT_TRUE(same.isOk()) << same.error().message;
    EXPECT_EQ(same.result()["changes"], nlohmann::json::array()) << same.result().dump();
  }
  // web: a new scheduler and health interval, 10.0.1.1 weighted 3, 10.0.1.4
  // out, 10.0.1.3 in; old out, new in; node: a new icmp_too_big_rate.
  std::string file = yaml(
      "      - {address: 10.0.1.1, weight: 3}\n"
      "      - {address: 10.0.1.2, weight: 100}\n"
      "      - {address: 10.0.1.3, weight: 100}\n",
      "    scheduler: maglev-src\n    health: {type: tcp, port: 9, interval: 30m}\n");
  file.replace(file.find("node: {"), 7, "node: {icmp_too_big_rate: 0, ");
  files_["keel.yaml"] = file +
                        "  - name: new\n"
                        "    vip: 10.0.0.4\n"
                        "    port: 443\n"
                        "    protocol: tcp\n"
                        "    reals:\n"
                        "      - {address: 10.0.1.6}\n"
                        "      - {address: 10.0.1.7}\n";
  test::LogCapture log;
  api::Result r = backend_->reload();
  ASSERT_TRUE(r.isOk()) << r.error().message;
  const nlohmann::json expected = nlohmann::json::parse(R"([
    {"change": "node_updated", "keys": [{"key": "icmp_too_big_rate", "from": "1000", "to": "0"}]},
    {"change": "service_removed", "service": "old"},
    {"change": "service_updated", "service": "web",
     "keys": [{"key": "scheduler", "from": "maglev", "to": "maglev-src"}]},
    {"change": "real_weight_changed", "service": "web", "real": "10.0.1.1", "from": 100, "to": 3},
    {"change": "health_check_changed", "service": "web", "reals": 2,
     "keys": [{"key": "interval", "from": "1h", "to": "30m"}]},
    {"change": "service_added", "service": "new", "vip": "10.0.0.4", "port": 443, "protocol": "tcp", "reals": 2},
    {"change": "real_removed", "service": "web", "real": "10.0.1.4"},
    {"change": "real_added", "service": "web", "real": "10.0.1.3"}
  ])");  // a service's removed and added reals once every service's ring is written (Registry::apply)
  EXPECT_EQ(r.result()["changes"], expected) << r.result()["changes"].dump(2);
  EXPECT_EQ(r.result()["services"], 2);
  EXPECT_EQ(r.result()["reals"], 5);
  // Each item is a record of the log, said the same way: one record of
  // each kind, holding what the item says.
  auto onlyRecord = [&log](const char* event) {
    const std::vector<std::string> records = log.take(event);
    EXPECT_EQ(records.size(), 1u) << event;
    return records.empty() ? std::string() : records[0];
  };
  // ... and that record holds `text`.
  auto recordHolds = [&onlyRecord](const char* event, const std::string& text) {
    const std::string record = onlyRecord(event);
    EXPECT_NE(record.find(text), std::string::npos) << record;
  };
  recordHolds("node_updated", "changed=icmp_too_big_rate icmp_too_big_rate_from=1000 icmp_too_big_rate_to=0");
  recordHolds("service_removed", "service=old id=");
  recordHolds("service_updated", "service=web changed=scheduler scheduler_from=maglev scheduler_to=maglev-src");
  recordHolds("real_weight_changed", "service=web real=10.0.1.1 from=100 to=3");
  recordHolds("health_check_changed", "service=web reals=2 changed=interval interval_from=1h interval_to=30m");
  EXPECT_EQ(onlyRecord("real_removed"), "info event=real_removed service=web real=10.0.1.4");
  EXPECT_EQ(onlyRecord("real_added"), "info event=real_added service=web real=10.0.1.3");
  const std::string added = onlyRecord("service_added");
  EXPECT_NE(added.find("service=new id="), std::string::npos) << added;
  EXPECT_NE(added.find(" vip=10.0.0.4 port=443 proto=tcp reals=2"), std::string::npos) << added;
  // The same file again: nothing changed, nothing logged.
  r = backend_->reload();
  ASSERT_TRUE(r.isOk()) << r.error().message;
  EXPECT_EQ(r.result()["changes"], nlohmann::json::array()) << r.result().dump();
  for (const char* event : {"node_updated", "service_removed", "service_updated", "real_weight_changed",
                            "health_check_changed", "real_removed", "real_added", "service_added"})
    EXPECT_TRUE(log.take(event).empty()) << event;
}

// A reload's l2dsr MAC change and a real's own check change are in its
// reply as they are in its log.
TEST_F(DaemonBackendTest, AReloadRepliesWithItsMacAndPerRealCheckChanges) {
  files_["keel.yaml"] = l2dsr(yaml(
      "      - {address: 10.0.1.1, mac: \"02:00:00:00:00:11\"}\n"
      "      - {address: 10.0.1.2, mac: \"02:00:00:00:00:22\"}\n",
      "    health: {type: tcp, port: 9, interval: 1h}\n"));
  make();
  files_["keel.yaml"] = l2dsr(yaml(
      "      - {address: 10.0.1.1, mac: \"02:00:00:00:00:12\"}\n"
      "      - {address: 10.0.1.2, mac: \"02:00:00:00:00:22\", health: {port: 8080}}\n",
      "    health: {type: tcp, port: 9, interval: 1h}\n"));
  test::LogCapture log;
  api::Result r = backend_->reload();
  ASSERT_TRUE(r.isOk()) << r.error().message;
  EXPECT_EQ(r.result()["changes"], nlohmann::json::parse(R"([
    {"change": "health_check_changed", "service": "web", "real": "10.0.1.2",
     "keys": [{"key": "port", "from": "9", "to": "8080"}]},
    {"change": "real_mac_changed", "service": "web", "real": "10.0.1.1",
     "from": "02:00:00:00:00:11", "to": "02:00:00:00:00:12"}
  ])")) << r.result()["changes"].dump(2);
  const std::vector<std::string> check = log.take("health_check_changed");
  ASSERT_EQ(check.size(), 1u);
  EXPECT_NE(check[0].find("service=web real=10.0.1.2 changed=port port_from=9 port_to=8080"), std::string::npos)
      << check[0];
  const std::vector<std::string> mac = log.take("real_mac_changed");
  ASSERT_EQ(mac.size(), 1u);
  EXPECT_NE(mac[0].find("service=web real=10.0.1.1 from=02:00:00:00:00:11 mac=02:00:00:00:00:12"),
            std::string::npos)
      << mac[0];
}

TEST_F(DaemonBackendTest, ReloadKeepsDrainUnlessFileChangesThatReal) {
  make();
  ASSERT_TRUE(backend_->setRealDrain({{"web", ip("10.0.1.1")}, true, ""}).isOk());
  ASSERT_TRUE(backend_->setRealWeight({{"web", ip("10.0.1.2")}, 7}).isOk());
  // Unrelated change (a third real): both overrides survive.
  files_["keel.yaml"] = yaml(kTwo + "      - {address: 10.0.1.3, weight: 100}\n");
  test::LogCapture log;
  api::Result r = backend_->reload();
  ASSERT_TRUE(r.isOk());
  EXPECT_FALSE(r.result().contains("warnings")) << r.result().dump();
  EXPECT_TRUE(realOf("10.0.1.1").draining);
  EXPECT_EQ(realOf("10.0.1.2").weight, 7u);
  // The file changes 10.0.1.1 (weight): the file wins, the drain is gone,
  // and the reply and the log say so (a real under maintenance back in the
  // ring must not pass unnoticed).
  files_["keel.yaml"] = yaml(
      "      - {address: 10.0.1.1, weight: 50}\n"
      "      - {address: 10.0.1.2, weight: 100}\n"
      "      - {address: 10.0.1.3, weight: 100}\n");
  r = backend_->reload();
  ASSERT_TRUE(r.isOk());
  EXPECT_EQ(r.result()["warnings"],
            nlohmann::json::array({"service web real 10.0.1.1: its drain made with keelctl is given up: the file "
                                   "changed this real"}))
      << r.result().dump();
  std::vector<std::string> dropped = log.take("runtime_state_dropped");
  ASSERT_EQ(dropped.size(), 1u);
  EXPECT_NE(dropped[0].find("real=10.0.1.1 change=drain reason=\"the file changed this real\""), std::string::npos)
      << dropped[0];
  EXPECT_FALSE(realOf("10.0.1.1").draining);
  EXPECT_EQ(realOf("10.0.1.1").weight, 50u);
  EXPECT_EQ(realOf("10.0.1.2").weight, 7u);
}

// A file that removes (or renames) a service gives up every keelctl change
// to its reals, and says so: a drain, a weight, an added real (config
// review: they went in silence, and the service came back undrained).
TEST_F(DaemonBackendTest, AFileThatRemovesAServiceSaysWhichChangesGo) {
  make();
  ASSERT_TRUE(backend_->setRealDrain({{"web", ip("10.0.1.1")}, true, "INC-9"}).isOk());
  ASSERT_TRUE(backend_->setRealWeight({{"web", ip("10.0.1.2")}, 5}).isOk());
  ASSERT_TRUE(backend_->addReal(realAdd("web", "10.0.1.3")).isOk());
  std::string renamed = yaml(kTwo);
  renamed.replace(renamed.find("name: web"), 9, "name: www");
  files_["keel.yaml"] = renamed;
  // config check says it first, as the reload's words.
  api::Result checked = backend_->checkConfig(renamed, "keel.yaml");
  ASSERT_TRUE(checked.isOk()) << checked.error().message;
  EXPECT_EQ(checked.result()["warnings"].size(), 3u) << checked.result().dump();
  test::LogCapture log;
  api::Result r = backend_->reload();
  ASSERT_TRUE(r.isOk()) << r.error().message;
  EXPECT_EQ(r.result()["warnings"],
            nlohmann::json::array(
                {"service web real 10.0.1.1: its drain made with keelctl is given up: the file no longer has this "
                 "service",
                 "service web real 10.0.1.2: its weight 5 made with keelctl is given up: the file no longer has "
                 "this service",
                 "service web real 10.0.1.3: its added real and weight 100 made with keelctl is given up: the file no "
                 "longer has this service"}))
      << r.result().dump();
  EXPECT_EQ(log.take("runtime_state_dropped").size(), 3u);
  EXPECT_EQ(backend_->daemonStatus().runtime, api::DaemonStatus::RuntimeChanges{});
}

// A file real removed with keelctl and added back is the file's real again:
// nothing (or its new weight) stays on top of the file, so a reload that
// then takes it out of the file gives nothing up (an "added real" entry
// used to stay and be given up with a warning, while `daemon status`
// counted no change). Another mac or check than the file's is refused.
TEST_F(DaemonBackendTest, FileRealAddedBackUndoesItsRemoval) {
  make();
  api::RealAddRequest add = realAdd("web", "10.0.1.2");
  ASSERT_TRUE(backend_->removeReal({"web", ip("10.0.1.2")}).isOk());
  add.real.health = {{"type", "tcp"}};
  dp_.calls.clear();
  api::Result refused = backend_->addReal(add);
  ASSERT_FALSE(refused.isOk());
  EXPECT_EQ(refused.error().message,
            "service web real 10.0.1.2: keel.yaml:10 defines it with another health check; adding "
            "it back with keelctl undoes its removal and can set its weight only: change its check in the file and "
            "reload");
  EXPECT_TRUE(dp_.calls.empty()) << "refused: nothing programmed";
  add.real.health = nullptr;
  ASSERT_TRUE(backend_->addReal(add).isOk());
  EXPECT_EQ(backend_->daemonStatus().runtime, api::DaemonStatus::RuntimeChanges{});
  EXPECT_EQ(realOf("10.0.1.2").weight, 100u);

  // Removed from the file: silently, as any file real.
  files_["keel.yaml"] = yaml("      - {address: 10.0.1.1, weight: 100}\n");
  test::LogCapture log;
  api::Result r = backend_->reload();
  ASSERT_TRUE(r.isOk()) << r.error().message;
  EXPECT_FALSE(r.result().contains("warnings")) << r.result().dump();
  EXPECT_TRUE(log.take("runtime_state_dropped").empty());

  // Added back with another weight: that weight is the one change kept.
  files_["keel.yaml"] = yaml(kTwo);
  ASSERT_TRUE(backend_->reload().isOk());
  ASSERT_TRUE(backend_->removeReal({"web", ip("10.0.1.2")}).isOk());
  add.real.weight = 30;
  ASSERT_TRUE(backend_->addReal(add).isOk());
  api::DaemonStatus::RuntimeChanges weightOnly;
  weightOnly.weights = 1;
  EXPECT_EQ(backend_->daemonStatus().runtime, weightOnly);
  EXPECT_EQ(realOf("10.0.1.2").weight, 30u);
  files_["keel.yaml"] = yaml("      - {address: 10.0.1.1, weight: 100}\n");
  r = backend_->reload();
  ASSERT_TRUE(r.isOk()) << r.error().message;
  EXPECT_EQ(r.result()["warnings"],
            nlohmann::json::array({"service web real 10.0.1.2: its weight 30 made with keelctl is given up: the "
                                   "file no longer has this real"}))
      << r.result().dump();
}

// Added back with no weight given, a file real takes the file's weight, not
// keel.yaml's default: the add leaves no change on top of the file. A real
// the file lacks, added with no weight, gets the default.
TEST_F(DaemonBackendTest, FileRealAddedBackWithoutWeightTakesTheFiles) {
  files_["keel.yaml"] = yaml("      - {address: 10.0.1.1, weight: 100}\n      - {address: 10.0.1.2, weight: 40}\n");
  make();
  ASSERT_TRUE(backend_->removeReal({"web", ip("10.0.1.2")}).isOk());
  api::RealAddRequest add = realAdd("web", "10.0.1.2");
  api::Result r = backend_->addReal(add);
  ASSERT_TRUE(r.isOk()) << r.error().message;
  EXPECT_EQ(realOf("10.0.1.2").weight, 40u);
  EXPECT_EQ(backend_->daemonStatus().runtime, api::DaemonStatus::RuntimeChanges{});

  add.real.address = ip("10.0.1.3");
  r = backend_->addReal(add);
  ASSERT_TRUE(r.isOk()) << r.error().message;
  EXPECT_EQ(realOf("10.0.1.3").weight, 100u);
}

TEST_F(DaemonBackendTest, BadReloadChangesNothing) {
  make();
  dp_.calls.clear();
  files_["keel.yaml"] = yaml("      - {address: 10.0.1.1, weight: abc}\n");
  api::Result r = backend_->reload();
  ASSERT_FALSE(r.isOk());
  EXPECT_EQ(r.error().code, api::code::kInvalidConfig);
  ASSERT_TRUE(r.error().details.contains("errors"));
  EXPECT_NE(r.error().details["errors"][0].get<std::string>().find("keel.yaml:"), std::string::npos);
  EXPECT_TRUE(dp_.calls.empty());
  EXPECT_EQ(backend_->findService("web")->reals.size(), 2u);
}

// A file cut short before `services:`, or right after it, would remove
// every running service (a live test's reload did, rc 0, all traffic gone):
// refused, unless the file says so with a list (`services: []`).
TEST_F(DaemonBackendTest, AReloadWithoutAServicesListDoesNotRemoveThemAll) {
  make();
  const std::string whole = yaml(kTwo);
  const std::string cut = whole.substr(0, whole.find("services:"));
  const std::string refusal = "keel.yaml: no `services:` list (the key missing, or nothing under it), so ";
  for (const std::string& file : {cut, cut + "services:\n"}) {
    SCOPED_TRACE(file);
    files_["keel.yaml"] = file;
    dp_.calls.clear();
    api::Result r = backend_->reload();
    ASSERT_FALSE(r.isOk());
    EXPECT_EQ(r.error().code, api::code::kInvalidConfig);
    EXPECT_EQ(r.error().message, refusal + "this reload would remove all 1 services the running file has (a file "
                                           "cut short?); to remove them all, write `services: []`");
    EXPECT_TRUE(dp_.calls.empty());
    ASSERT_TRUE(backend_->findService("web"));
    // config.check says what the reload would.
    api::Result checked = backend_->checkConfig(file, "keel.yaml");
    ASSERT_FALSE(checked.isOk());
    EXPECT_EQ(checked.error().message, refusal + "a reload of it would remove all 1 services the running file has "
                                                 "(a file cut short?); to remove them all, write `services: []`");
  }
  // So does a restart that adopts the running plane: refused before it
  // touches it, which goes on forwarding.
  {
    files_["keel.yaml"] = cut;
    const ProgrammedState pinned = dp_.programmed();
    MockDataplane dp2;
    takePins(dp2, dp_);
    Registry registry2(dp2);
    boost::asio::io_context io2;
    forward_ = [] { return Status::ok(); };  // started() then leaves the start's status to us
    auto backend2 = started(io2, registry2, &pinned);
    EXPECT_FALSE(startStatus_);
    EXPECT_EQ(startStatus_.message(), refusal + "this start would remove all 1 services the data plane it adopts "
                                                "has (a file cut short?); to remove them all, write `services: []`");
    EXPECT_TRUE(dp2.calls.empty()) << "the adopted plane untouched";
    forward_ = nullptr;
  }
  files_["keel.yaml"] = cut + "services: []\n";
  ASSERT_TRUE(backend_->reload().isOk());
  EXPECT_FALSE(backend_->findService("web"));
  // With no service running, a file without the list is no loss.
  files_["keel.yaml"] = cut;
  EXPECT_TRUE(backend_->reload().isOk());
  files_["keel.yaml"] = cut + "services:\n";
  EXPECT_TRUE(backend_->reload().isOk());
}

// The same for a service cut short at its `reals:` (the key missing, or
// nothing under it) whose running namesake has reals: refused, naming the
// service; `reals: []` empties it.
TEST_F(DaemonBackendTest, AReloadWithoutARealsListDoesNotEmptyTheService) {
  make();
  const std::string whole = yaml(kTwo);
  const std::string cut = whole.substr(0, whole.find("    reals:"));
  for (const std::string& file : {cut, cut + "    reals:\n"}) {
    SCOPED_TRACE(file);
    files_["keel.yaml"] = file;
    dp_.calls.clear();
    api::Result r = backend_->reload();
    ASSERT_FALSE(r.isOk());
    EXPECT_NE(r.error().message.find(": services[0].reals: no list (the key missing, or nothing under it), so this "
                                     "reload would remove all 2 reals service web has in the running file (a file "
                                     "cut short?); to remove them all, write `reals: []`"),
              std::string::npos)
        << r.error().message;
    EXPECT_EQ(r.error().message.rfind("keel.yaml:", 0), 0u) << r.error().message;
    EXPECT_TRUE(dp_.calls.empty());
    EXPECT_EQ(backend_->findService("web")->reals.size(), 2u);
    EXPECT_FALSE(backend_->checkConfig(file, "keel.yaml").isOk());
  }
  // So does a restart that adopts the running plane, whose service still
  // forwards to its reals: refused before it touches it.
  {
    files_["keel.yaml"] = cut + "    reals:\n";
    const ProgrammedState pinned = dp_.programmed();
    MockDataplane dp2;
    takePins(dp2, dp_);
    Registry registry2(dp2);
    boost::asio::io_context io2;
    forward_ = [] { return Status::ok(); };
    auto backend2 = started(io2, registry2, &pinned);
    EXPECT_FALSE(startStatus_);
    EXPECT_NE(startStatus_.message().find(": services[0].reals: no list (the key missing, or nothing under it), so "
                                          "this start would remove all 2 reals service web has in the data plane it "
                                          "adopts"),
              std::string::npos)
        << startStatus_.message();
    EXPECT_TRUE(dp2.calls.empty()) << "the adopted plane untouched";
    forward_ = nullptr;
  }
  files_["keel.yaml"] = cut + "    reals: []\n";
  ASSERT_TRUE(backend_->reload().isOk());
  EXPECT_TRUE(backend_->findService("web")->reals.empty());
  files_["keel.yaml"] = cut;  // nothing to lose now
  EXPECT_TRUE(backend_->reload().isOk());
}

// daemon.status from a keeld-like backend over a real file: what runs and
// since when, whether the file on disk is still the text applied, the last
// reload's outcome (a refused one keeps the applied time and says why), the
// keys waiting for a restart, and the keelctl changes by kind.
TEST_F(DaemonBackendTest, StatusFollowsTheFileTheReloadsAndTheRuntimeChanges) {
  char tmpl[] = "/tmp/keel-status-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl, path = dir + "/keel.yaml";
  struct Cleanup {
    std::string dir;
    ~Cleanup() { std::filesystem::remove_all(dir); }
  } cleanup{dir};
  auto write = [&](const std::string& text) { std::ofstream(path, std::ios::trunc) << text; };
  write(yaml(kTwo));
  ConfigResult first = loadConfigFile(path);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first.text, std::optional(yaml(kTwo)));
  std::string refusal;  // what keeld's preApply refuses a reload with, if set
  backend_ = std::make_unique<DaemonBackend>(
      io_, registry_, path, [](const std::string& p) { return loadConfigFile(p); },
      [&refusal](const Config&, const Config&) { return refusal.empty() ? Status::ok() : Status::error(refusal); }, [](bool) {});
  backend_->setVersion("9.9.9");
  backend_->setStartText(*first.text);
  const auto before = std::chrono::system_clock::now();
  EXPECT_FALSE(backend_->configAppliedAt());
  ASSERT_TRUE(backend_->start(*first.config));
  api::DaemonStatus st = backend_->daemonStatus();
  EXPECT_EQ(st.version, "9.9.9");
  EXPECT_EQ(st.pid, ::getpid());
  EXPECT_EQ(st.dataplane, "mock");
  EXPECT_FALSE(st.adopted);
  EXPECT_EQ(st.configPath, path);
  EXPECT_EQ(st.appliedBy, "start");
  EXPECT_GE(st.appliedAt, before);
  const auto startedAt = st.appliedAt;
  EXPECT_EQ(st.fileChanged, std::optional<bool>(false));
  EXPECT_FALSE(st.lastReload);
  EXPECT_TRUE(st.restartNeeded.empty());
  EXPECT_EQ(st.services, 1u);
  EXPECT_EQ(st.reals, 2u);
  EXPECT_EQ(st.runtime.drains + st.runtime.weights + st.runtime.addedServices + st.runtime.addedReals, 0u);
  EXPECT_TRUE(st.stateFile.empty());
  EXPECT_TRUE(backend_->lastReloadOk());
  EXPECT_EQ(backend_->configAppliedAt(), std::optional(startedAt));

  ASSERT_TRUE(backend_->setRealDrain({{"web", ip("10.0.1.1")}, true, ""}).isOk());
  ASSERT_TRUE(backend_->setRealWeight({{"web", ip("10.0.1.2")}, 7}).isOk());
  api::RealAddRequest add = realAdd("web", "10.0.1.9");
  add.real.weight = 30;
  ASSERT_TRUE(backend_->addReal(add).isOk());
  st = backend_->daemonStatus();
  EXPECT_EQ(st.runtime.drains, 1u);
  EXPECT_EQ(st.runtime.weights, 1u) << "the added real's weight is its add's";
  EXPECT_EQ(st.runtime.addedReals, 1u);
  EXPECT_EQ(st.reals, 3u);
  ASSERT_TRUE(backend_->setRealWeight({{"web", ip("10.0.1.9")}, 40}).isOk());
  EXPECT_EQ(backend_->daemonStatus().runtime.weights, 2u) << "a set-weight after the add is a weight";
  api::ServiceAddRequest svc;
  svc.name = "api";
  svc.vip = ip("10.0.0.7");
  svc.port = 443;
  ASSERT_TRUE(backend_->addService(svc).isOk());
  ASSERT_TRUE(backend_->removeReal({"web", ip("10.0.1.9")}).isOk());
  st = backend_->daemonStatus();
  EXPECT_EQ(st.runtime.addedServices, 1u);
  EXPECT_EQ(st.runtime.addedReals, 0u) << "a real keelctl added and removed is no change";
  EXPECT_EQ(st.services, 2u);
  ASSERT_TRUE(backend_->removeService("api").isOk());
  ASSERT_TRUE(backend_->removeReal({"web", ip("10.0.1.2")}).isOk());
  st = backend_->daemonStatus();
  EXPECT_EQ(st.runtime.addedServices, 0u);
  EXPECT_EQ(st.runtime.removedReals, 1u);
  EXPECT_EQ(st.reals, 1u);
  // The file's real added back: it runs as the file's, no added real; with
  // another weight than the file's, that is a weight.
  add.real.address = ip("10.0.1.2");
  add.real.weight = 3;
  ASSERT_TRUE(backend_->addReal(add).isOk());
  st = backend_->daemonStatus();
  EXPECT_EQ(st.runtime.removedReals, 0u);
  EXPECT_EQ(st.runtime.addedReals, 0u);
  EXPECT_EQ(st.runtime.weights, 1u);
  EXPECT_EQ(st.reals, 2u);
  ASSERT_TRUE(backend_->setRealWeight({{"web", ip("10.0.1.2")}, 100}).isOk());
  EXPECT_EQ(backend_->daemonStatus().runtime.weights, 0u) << "back at the file's weight";

  // Edited on disk, not yet reloaded; then a reload that refuses it.
  write(yaml("      - {address: 10.0.1.1, weight: abc}\n"));
  EXPECT_EQ(backend_->daemonStatus().fileChanged, std::optional<bool>(true));
  ASSERT_FALSE(backend_->reload().isOk());
  st = backend_->daemonStatus();
  ASSERT_TRUE(st.lastReload);
  EXPECT_FALSE(st.lastReload->ok);
  EXPECT_EQ(st.lastReload->code, api::code::kInvalidConfig);
  ASSERT_EQ(st.lastReload->errors.size(), 1u);
  EXPECT_NE(st.lastReload->errors[0].find(path + ":"), std::string::npos) << st.lastReload->errors[0];
  EXPECT_EQ(st.appliedBy, "start");
  EXPECT_EQ(st.appliedAt, startedAt);
  EXPECT_EQ(st.fileChanged, std::optional<bool>(true));
  EXPECT_FALSE(backend_->lastReloadOk());
  EXPECT_EQ(backend_->configAppliedAt(), std::optional(startedAt));

  // Refused past the file: by keeld's own checks (preApply), and by the data
  // plane midway (undone), then with the undoing refused too.
  std::string next = yaml(kTwo + "      - {address: 10.0.1.3, weight: 100}\n");
  next.replace(next.find("services:"), 0, "limits: {max_services: 64}\n");
  write(next);
  refusal = "dataplane.interface: not applied";
  ASSERT_FALSE(backend_->reload().isOk());
  refusal.clear();
  st = backend_->daemonStatus();
  ASSERT_TRUE(st.lastReload);
  EXPECT_EQ(st.lastReload->code, api::code::kFailed);
  EXPECT_EQ(st.lastReload->errors, std::vector<std::string>{"dataplane.interface: not applied"});
  EXPECT_TRUE(st.lastReload->runningKept);
  EXPECT_EQ(st.appliedAt, startedAt);
  dp_.failAfter = 2;
  ASSERT_FALSE(backend_->reload().isOk());
  st = backend_->daemonStatus();
  ASSERT_EQ(st.lastReload->errors.size(), 1u);
  EXPECT_NE(st.lastReload->errors[0].find("the running configuration was restored"), std::string::npos)
      << st.lastReload->errors[0];
  EXPECT_TRUE(st.lastReload->runningKept);
  dp_.failAll = true;
  ASSERT_FALSE(backend_->reload().isOk());
  dp_.failAll = false;
  st = backend_->daemonStatus();
  EXPECT_NE(st.lastReload->errors[0].find("restoring the running configuration failed too"), std::string::npos)
      << st.lastReload->errors[0];
  EXPECT_FALSE(st.lastReload->runningKept);
  EXPECT_EQ(st.appliedAt, startedAt);
  EXPECT_EQ(call(R"({"id":1,"method":"daemon.status"})")["result"]["config"]["last_reload"]["running_kept"], false);
  // The next change that goes in writes the whole running config again.
  ASSERT_TRUE(backend_->setRealWeight({{"web", ip("10.0.1.2")}, 90}).isOk());
  EXPECT_TRUE(backend_->daemonStatus().lastReload->runningKept);

  // A good reload (a key only a restart applies among its changes). Its
  // time lies between clock readings taken around it, not merely after the
  // start's following a sleep (a stalled box or a stepped clock made that
  // pass or fail by chance). The clock is first seen past the start's time
  // (bounded), so a reload that left the time as it was falls outside.
  const auto beforeReload = test::wallClockPast(startedAt);
  ASSERT_GT(beforeReload, startedAt) << "the wall clock did not move past the start's time";
  ASSERT_TRUE(backend_->reload().isOk());
  const auto afterReload = std::chrono::system_clock::now();
  st = backend_->daemonStatus();
  ASSERT_TRUE(st.lastReload);
  EXPECT_TRUE(st.lastReload->ok);
  EXPECT_TRUE(st.lastReload->errors.empty());
  EXPECT_EQ(st.appliedBy, "reload");
  EXPECT_GE(st.appliedAt, beforeReload) << "the reload did not set the applied time";
  EXPECT_LE(st.appliedAt, afterReload);
  EXPECT_EQ(st.fileChanged, std::optional<bool>(false));
  EXPECT_EQ(st.restartNeeded, std::vector<std::string>{"limits"});
  EXPECT_EQ(st.stopStartNeeded, std::vector<std::string>{"limits"});
  EXPECT_EQ(st.reals, 3u);  // the file's three, one drained, 10.0.1.2 as the file has it
  EXPECT_TRUE(backend_->lastReloadOk());

  // The file gone: not a change keeld can compare, said as such.
  std::filesystem::remove(path);
  st = backend_->daemonStatus();
  EXPECT_FALSE(st.fileChanged);
  EXPECT_NE(st.fileError.find(path + ": cannot open:"), std::string::npos) << st.fileError;
  // Through the dispatcher: the same, as JSON.
  nlohmann::json r = call(R"({"id":1,"method":"daemon.status"})");
  ASSERT_EQ(r["ok"], true) << r.dump();
  EXPECT_EQ(r["result"]["config"]["applied_by"], "reload");
  EXPECT_TRUE(r["result"]["config"]["file_changed"].is_null());
  EXPECT_EQ(r["result"]["runtime_changes"]["drains"], 1);
}

// A valid reload the data plane fails midway is undone: keeld applies the
// running config again, the request says so, and the plane holds what it
// held before (the same backends valid, the same ring members).
TEST_F(DaemonBackendTest, AReloadTheDataPlaneFailsMidwayIsUndone) {
  make();
  const std::set<uint32_t> before = ringIds();
  ASSERT_EQ(before, (std::set<uint32_t>{idOf("10.0.1.1"), idOf("10.0.1.2")}));
  files_["keel.yaml"] = yaml("      - {address: 10.0.1.1, weight: 100}\n"
                             "      - {address: 10.0.1.3, weight: 100}\n");
  dp_.failAfter = 2;  // the new real's backend is written, the ring publish fails
  const int batches = dp_.batches;
  api::Result r = backend_->reload();
  ASSERT_FALSE(r.isOk());
  // The failed apply and the restore are one data-plane batch (on DPDK one
  // snapshot): the workers never see the half-applied change.
  EXPECT_EQ(dp_.batches, batches + 1);
  EXPECT_EQ(dp_.batchDepth, 0);
  EXPECT_EQ(r.error().code, api::code::kFailed);
  EXPECT_NE(r.error().message.find("injected failure; the running configuration was restored"), std::string::npos)
      << r.error().message;
  EXPECT_EQ(ringIds(), before);
  EXPECT_EQ(ringAddresses(), (std::set<std::string>{"10.0.1.1", "10.0.1.2"}));
  for (const auto& [id, b] : dp_.backends) {
    if (test::addressFromWords(b.addr, b.family).toString() == "10.0.1.3") {
      EXPECT_FALSE(b.flags & KEEL_BE_F_VALID) << "the failed change's real is still valid";
    }
  }
  EXPECT_EQ(backend_->findService("web")->reals.size(), 2u);
  // The change goes through once the data plane takes it.
  ASSERT_TRUE(backend_->reload().isOk());
  EXPECT_EQ(ringIds(), (std::set<uint32_t>{idOf("10.0.1.1"), idOf("10.0.1.3")}));
  EXPECT_EQ(ringAddresses(), (std::set<std::string>{"10.0.1.1", "10.0.1.3"}));
}

TEST_F(DaemonBackendTest, CheckConfigReportsEveryErrorAndAppliesNothing) {
  make();
  dp_.calls.clear();
  files_["other.yaml"] = yaml(
      "      - {address: 10.0.1.1, weight: abc}\n"
      "      - {address: nope}\n");
  api::Result r = backend_->checkConfig(files_["other.yaml"], "other.yaml");
  ASSERT_FALSE(r.isOk());
  EXPECT_GE(r.error().details["errors"].size(), 2u);
  EXPECT_EQ(r.error().details["errors"][0].get<std::string>().rfind("other.yaml:", 0), 0u)
      << r.error().details["errors"][0];
  api::Result ok = backend_->checkConfig(yaml(kTwo), "other.yaml");
  ASSERT_TRUE(ok.isOk());
  EXPECT_EQ(ok.result()["name"], "other.yaml");
  EXPECT_EQ(ok.result()["reals"], 2);
  EXPECT_TRUE(dp_.calls.empty());
  // With keeld's host options, a kind this keeld was not built with is an
  // error at its line, as keeld --check-config says.
  ConfigOptions builtXdpOnly;
  builtXdpOnly.kindBuilt = [](DataplaneKind k) { return k == DataplaneKind::kXdp; };
  backend_->setCheckOptions(builtXdpOnly);
  std::string dpdk = yaml(kTwo);
  dpdk.replace(dpdk.find("dataplane: {kind: xdp, interface: eth0}"), 39,
               "dataplane: {kind: dpdk, interface: eth0, dpdk: {port: x, workers: [1]}}");
  api::Result refused = backend_->checkConfig(dpdk, "other.yaml");
  ASSERT_FALSE(refused.isOk());
  EXPECT_EQ(refused.error().details["errors"],
            nlohmann::json::array({"other.yaml:1: dataplane.kind: dpdk is not built into this keeld"}));
  EXPECT_TRUE(backend_->checkConfig(yaml(kTwo), "other.yaml").isOk());
}

// Every request that parsed a whole file tells keeld once it is done
// (setParsedHook: keeld gives the parse's freed pages back then), whether
// the file passed or not.
TEST_F(DaemonBackendTest, ChecksAndReloadsCallTheParsedHook) {
  make();
  int parsed = 0;
  backend_->setParsedHook([&parsed] { ++parsed; });
  EXPECT_TRUE(backend_->checkConfig(yaml(kTwo), "other.yaml").isOk());
  EXPECT_EQ(parsed, 1);
  EXPECT_FALSE(backend_->checkConfig("services: [", "other.yaml").isOk());
  EXPECT_EQ(parsed, 2);
  EXPECT_TRUE(backend_->reload().isOk());
  EXPECT_EQ(parsed, 3);
  files_["keel.yaml"] = "services: [";
  EXPECT_FALSE(backend_->reload().isOk());
  EXPECT_EQ(parsed, 4);
  backend_->daemonStatus();
  EXPECT_EQ(parsed, 4) << "a request that parses no file";
}

// config.check checks the file with keeld's runtime changes on top, as a
// reload applies it: a file that passes alone but clashes with a keelctl
// change is refused as the reload would refuse it, and a change the reload
// would give up is a warning (operator review M2: it said ok, then the
// reload failed).
TEST_F(DaemonBackendTest, CheckConfigChecksTheFileWithTheRuntimeChanges) {
  ASSERT_NO_FATAL_FAILURE(startWithAnIpv6RealAddedAndADrain());
  dp_.calls.clear();
  api::Result refused = backend_->checkConfig(yaml(kTwo), "other.yaml");  // no tunnel_source_v6
  ASSERT_FALSE(refused.isOk());
  const std::string err = refused.error().details["errors"][0].get<std::string>();
  EXPECT_NE(err.find("ipip to an IPv6 real needs node.tunnel_source_v6 (the real was added with keelctl: "
                     "keelctl real remove web 2001:db8:1::12, or change the file)"),
            std::string::npos)
      << err;
  files_["keel.yaml"] = yaml(kTwo);
  EXPECT_FALSE(backend_->reload().isOk()) << "the reload refuses what the check refused";
  // The drained real given another weight by the file: its drain would go.
  const std::string changed = withTunnelSourceV6(yaml("      - {address: 10.0.1.1, weight: 5}\n"
                                                     "      - {address: 10.0.1.2}\n"));
  api::Result ok = backend_->checkConfig(changed, "other.yaml");
  ASSERT_TRUE(ok.isOk()) << ok.error().message;
  ASSERT_TRUE(ok.result().contains("warnings")) << ok.result().dump();
  EXPECT_EQ(ok.result()["warnings"][0],
            "service web real 10.0.1.1: its drain made with keelctl would be given up by a reload: the file "
            "changed this real");
  EXPECT_TRUE(dp_.calls.empty());
  EXPECT_TRUE(realOf("10.0.1.1").draining);
}

TEST_F(DaemonBackendTest, RuntimeAddAndRemoveReal) {
  make();
  api::RealAddRequest add = realAdd("web", "10.0.1.9");
  add.real.weight = 10;
  ASSERT_TRUE(backend_->addReal(add).isOk());
  EXPECT_EQ(backend_->findService("web")->reals.size(), 3u);
  EXPECT_TRUE(ringIds().count(idOf("10.0.1.9")));
  ASSERT_TRUE(backend_->removeReal({"web", ip("10.0.1.9")}).isOk());
  ASSERT_TRUE(backend_->removeReal({"web", ip("10.0.1.1")}).isOk());
  EXPECT_EQ(backend_->findService("web")->reals.size(), 1u);
  // A reload of the same file keeps the runtime removal.
  ASSERT_TRUE(backend_->reload().isOk());
  EXPECT_EQ(backend_->findService("web")->reals.size(), 1u);
}

// The IPv6 MTU warning follows every way a config is applied: a runtime
// service add warns for the new service, and later runtime changes and
// reloads of the same situation do not repeat it.
TEST_F(DaemonBackendTest, RuntimeIpv6IpipServiceOnASmallMtuIsWarnedOnce) {
  files_["keel.yaml"] = withTunnelSourceV6(yaml(kTwo));
  dp_.mtu = 1300;
  test::LogCapture log;
  make();
  EXPECT_TRUE(log.take("mtu_too_small_for_ipv6").empty());  // web: an IPv4 VIP

  api::ServiceAddRequest svc;
  svc.name = "web6";
  svc.vip = ip("2001:db8:100::10");
  svc.port = 443;
  svc.reals.push_back(api::RealSpec{ip("2001:db8:1::11"), 100, std::nullopt, nullptr});
  api::Result r = backend_->addService(svc);
  ASSERT_TRUE(r.isOk()) << r.error().message;
  std::vector<std::string> w = log.take("mtu_too_small_for_ipv6");
  ASSERT_EQ(w.size(), 1u);
  EXPECT_NE(w[0].find("service=web6 vip=2001:db8:100::10 mtu=1300 needed=1320"), std::string::npos) << w[0];

  api::RealAddRequest add = realAdd("web6", "2001:db8:1::12");
  ASSERT_TRUE(backend_->addReal(add).isOk());
  ASSERT_TRUE(backend_->reload().isOk());
  EXPECT_TRUE(backend_->findService("web6"));
  EXPECT_TRUE(log.take("mtu_too_small_for_ipv6").empty());
}

// The file's rules between services, reals and node hold for runtime
// changes too: an IPv6 real needs a tunnel source for ipip whether keel.yaml
// or keelctl adds it, and the refused request changes nothing.
TEST_F(DaemonBackendTest, RuntimeRealWithoutItsTunnelSourceIsRefused) {
  make();
  dp_.calls.clear();
  api::RealAddRequest add = realAdd("web", "2001:db8:1::12");
  api::Result r = backend_->addReal(add);
  ASSERT_FALSE(r.isOk());
  EXPECT_EQ(r.error().code, api::code::kInvalidConfig);
  EXPECT_NE(r.error().message.find("service web real 2001:db8:1::12: ipip to an IPv6 real needs "
                                   "node.tunnel_source_v6"),
            std::string::npos)
      << r.error().message;
  EXPECT_TRUE(dp_.calls.empty());
  EXPECT_EQ(backend_->findService("web")->reals.size(), 2u);

  api::ServiceAddRequest svc;
  svc.name = "web6";
  svc.vip = ip("10.0.0.5");
  svc.port = 443;
  svc.reals.push_back(api::RealSpec{ip("2001:db8:1::11"), 100, std::nullopt, nullptr});
  r = backend_->addService(svc);
  ASSERT_FALSE(r.isOk());
  EXPECT_EQ(r.error().code, api::code::kInvalidConfig);
  EXPECT_FALSE(backend_->findService("web6"));
  EXPECT_TRUE(dp_.calls.empty());
}

// The addresses and MACs keel.yaml refuses are refused at runtime too.
TEST_F(DaemonBackendTest, RuntimeRealsAndVipsTheFileWouldRefuseAreRefused) {
  make();
  dp_.calls.clear();
  api::RealAddRequest add = realAdd("web", "224.0.0.1");
  api::Result r = backend_->addReal(add);
  ASSERT_FALSE(r.isOk());
  EXPECT_EQ(r.error().message, "service web real 224.0.0.1: a real cannot be a multicast address");
  add.real.address = ip("10.0.1.9");
  add.real.mac = *MacAddress::parse("01:00:5e:00:00:01");
  r = backend_->addReal(add);
  ASSERT_FALSE(r.isOk());
  EXPECT_EQ(r.error().message, "service web real 10.0.1.9: its MAC must be a unicast address, got 01:00:5e:00:00:01");
  add.real.mac.reset();
  add.real.address = ip("169.254.0.9");  // web forwards by ipip: no router forwards to it
  r = backend_->addReal(add);
  ASSERT_FALSE(r.isOk());
  EXPECT_EQ(r.error().message.rfind("service web real 169.254.0.9: ipip to a link-local real", 0), 0u)
      << r.error().message;
  api::ServiceAddRequest svc;
  svc.name = "any";
  svc.vip = ip("0.0.0.0");
  svc.port = 443;
  r = backend_->addService(svc);
  ASSERT_FALSE(r.isOk());
  EXPECT_EQ(r.error().message, "service any: the VIP cannot be the unspecified address, got 0.0.0.0");
  // The balancer's own addresses: the tunnel source, and (host checks) an
  // address of dataplane.interface; a real that is its service's VIP.
  svc.vip = ip("10.0.0.2");
  r = backend_->addService(svc);
  ASSERT_FALSE(r.isOk());
  EXPECT_EQ(r.error().message.rfind("service any: the VIP cannot be this balancer's own address (10.0.0.2 is "
                                    "node.tunnel_source_v4)", 0), 0u)
      << r.error().message;
  ConfigOptions host;
  host.interfaceAddresses = [](const std::string& iface) {
    return iface == "eth0" ? std::vector<IpAddress>{ip("10.0.0.9")} : std::vector<IpAddress>{};
  };
  backend_->setCheckOptions(host);
  svc.vip = ip("10.0.0.9");
  svc.port = 0;
  r = backend_->addService(svc);
  ASSERT_FALSE(r.isOk());
  EXPECT_NE(r.error().message.find("(10.0.0.9 is an address of eth0)"), std::string::npos) << r.error().message;
  add.real.address = ip("10.0.0.1");  // web's VIP
  add.real.mac.reset();
  r = backend_->addReal(add);
  ASSERT_FALSE(r.isOk());
  EXPECT_EQ(r.error().message, "service web real 10.0.0.1: " + std::string(kRealIsVip));
  // A real at the balancer's own address: the tunnel source, or (host
  // checks) an address of the interface (fault review F8).
  for (const char* own : {"10.0.0.2", "10.0.0.9"}) {
    add.real.address = ip(own);
    r = backend_->addReal(add);
    ASSERT_FALSE(r.isOk()) << own;
    EXPECT_NE(r.error().message.find("service web real " + std::string(own) +
                                     ": a real cannot be this balancer's own address (" + own + " is "),
              std::string::npos)
        << r.error().message;
  }
  svc.vip = ip("10.0.0.77");
  svc.reals = {api::RealSpec{ip("10.0.0.9"), 100, std::nullopt, nullptr}};
  r = backend_->addService(svc);
  ASSERT_FALSE(r.isOk());
  EXPECT_NE(r.error().message.find("a real cannot be this balancer's own address (10.0.0.9 is an address of eth0)"),
            std::string::npos)
      << r.error().message;
  EXPECT_TRUE(dp_.calls.empty());
  EXPECT_EQ(backend_->findService("web")->reals.size(), 2u);
  EXPECT_FALSE(backend_->findService("any"));
  // A running VIP that becomes an address of the interface later (added by
  // hand, by VRRP) does not block every later change to the running config:
  // only a new VIP (and a file's parse) is checked against the addresses.
  host.interfaceAddresses = [](const std::string&) { return std::vector<IpAddress>{ip("10.0.0.1")}; };
  backend_->setCheckOptions(host);
  api::RealDrainRequest drain;
  drain.real = {"web", backend_->findService("web")->reals[0].address};
  r = backend_->setRealDrain(drain);
  EXPECT_TRUE(r.isOk()) << r.error().message;
}

// A real that is another service's VIP is refused at runtime as in the
// file, both ways round: real.add of a running VIP, service.add of a VIP
// that is a running real (or whose reals are a running VIP); the running
// state is unchanged. A reload that makes a file real the VIP of a service
// keelctl added says how to undo that.
TEST_F(DaemonBackendTest, ARealThatIsAnotherServicesVipIsRefusedAtRuntime) {
  make();
  ASSERT_TRUE(backend_->addService(serviceRequest("web2", "10.0.0.77", 443, KEEL_PROTO_TCP, nullptr, {"10.0.1.3"}))
                  .isOk());
  dp_.calls.clear();
  const std::string why =
      ": a real cannot be a VIP of this balancer (a tunnel or frame to it would come back to this balancer instead "
      "of reaching a real, and its health checks would reach that service's reals and pass)";
  api::RealAddRequest add = realAdd("web", "10.0.0.77");  // web2's VIP
  api::Result r = backend_->addReal(add);
  ASSERT_FALSE(r.isOk());
  EXPECT_EQ(r.error().code, api::code::kInvalidConfig);
  EXPECT_EQ(r.error().message, "service web real 10.0.0.77: 10.0.0.77 is the VIP of service web2" + why);
  add.service = "web2";
  add.real.address = ip("10.0.0.1");  // web's VIP (a file service)
  r = backend_->addReal(add);
  ASSERT_FALSE(r.isOk());
  EXPECT_EQ(r.error().message, "service web2 real 10.0.0.1: 10.0.0.1 is the VIP of service web" + why);
  // A new VIP that is a running real's address (of the file, of keelctl).
  for (const char* vip : {"10.0.1.1", "10.0.1.3"}) {
    r = backend_->addService(serviceRequest("web3", vip, 8080, KEEL_PROTO_TCP, nullptr, {}));
    ASSERT_FALSE(r.isOk()) << vip;
    EXPECT_NE(r.error().message.find(std::string(vip) + " is the VIP of service web3" + why), std::string::npos)
        << r.error().message;
  }
  // A new service whose real is a running VIP.
  r = backend_->addService(serviceRequest("web3", "10.0.0.78", 80, KEEL_PROTO_TCP, nullptr, {"10.0.0.1"}));
  ASSERT_FALSE(r.isOk());
  EXPECT_EQ(r.error().message, "service web3 real 10.0.0.1: 10.0.0.1 is the VIP of service web" + why);
  EXPECT_TRUE(dp_.calls.empty());
  EXPECT_FALSE(backend_->findService("web3"));
  EXPECT_EQ(backend_->findService("web")->reals.size(), 2u);
  EXPECT_EQ(backend_->findService("web2")->reals.size(), 1u);

  // The file gives web a real at web2's VIP: the reload names web2 as
  // added with keelctl, and changes nothing.
  files_["keel.yaml"] = yaml(kTwo + "      - {address: 10.0.0.77}\n");
  r = backend_->reload();
  ASSERT_FALSE(r.isOk());
  EXPECT_EQ(r.error().code, api::code::kInvalidConfig);
  EXPECT_NE(r.error().message.find("service web real 10.0.0.77: 10.0.0.77 is the VIP of service web2" + why +
                                   " (service web2 was added with keelctl: keelctl service remove web2, or change "
                                   "the file)"),
            std::string::npos)
      << r.error().message;
  EXPECT_TRUE(dp_.calls.empty());
  EXPECT_EQ(backend_->findService("web")->reals.size(), 2u);
}

// A reload that would leave a runtime change without what it needs (here:
// the file drops tunnel_source_v6 while keelctl added an IPv6 real) is
// refused before keeld writes the new node config (PreApply): the data
// plane never forwards with it, so a refused reload changes nothing even
// for a moment (it used to be written, then put back).
TEST_F(DaemonBackendTest, AReloadThatBreaksARuntimeRealIsRefusedBeforeTheNodeIsWritten) {
  const std::string file = yaml(kTwo);
  files_["keel.yaml"] = withTunnelSourceV6(file);
  make();
  api::RealAddRequest add = realAdd("web", "2001:db8:1::12");
  ASSERT_TRUE(backend_->addReal(add).isOk());
  preApplied_.clear();
  dp_.calls.clear();

  files_["keel.yaml"] = file;  // no tunnel_source_v6
  api::Result r = backend_->reload();
  ASSERT_FALSE(r.isOk());
  EXPECT_EQ(r.error().code, api::code::kInvalidConfig);
  EXPECT_NE(r.error().message.find("2001:db8:1::12: ipip to an IPv6 real needs node.tunnel_source_v6 (the real was "
                                   "added with keelctl: keelctl real remove web 2001:db8:1::12, or change the file)"),
            std::string::npos)
      << r.error().message;
  EXPECT_TRUE(preApplied_.empty()) << preApplied_.front();
  EXPECT_TRUE(dp_.calls.empty());
  EXPECT_EQ(backend_->findService("web")->reals.size(), 3u);

  // The same file with the real removed at runtime first goes through.
  ASSERT_TRUE(backend_->removeReal({"web", ip("2001:db8:1::12")}).isOk());
  preApplied_.clear();
  ASSERT_TRUE(backend_->reload().isOk());
  EXPECT_EQ(preApplied_, (std::vector<std::string>{"none"}));

  // A service added with keelctl: the error says so, and how to remove it.
  files_["keel.yaml"] = withTunnelSourceV6(file);
  ASSERT_TRUE(backend_->reload().isOk());
  ASSERT_TRUE(backend_->addService(serviceRequest("v6", "10.0.0.9", 80, KEEL_PROTO_TCP, nullptr, {"2001:db8:1::13"}))
                  .isOk());
  add.service = "v6";
  add.real.address = ip("2001:db8:1::14");
  ASSERT_TRUE(backend_->addReal(add).isOk());
  files_["keel.yaml"] = file;
  r = backend_->reload();
  ASSERT_FALSE(r.isOk());
  EXPECT_NE(r.error().message.find("service v6 real 2001:db8:1::13: ipip to an IPv6 real needs "
                                   "node.tunnel_source_v6 (service v6 was added with keelctl: keelctl service "
                                   "remove v6, or change the file)"),
            std::string::npos)
      << r.error().message;
  // A real added with keelctl to that service: its own remove, the narrower.
  EXPECT_EQ(r.error().details["errors"].at(1),
            "service v6 real 2001:db8:1::14: ipip to an IPv6 real needs node.tunnel_source_v6 (the real was added "
            "with keelctl: keelctl real remove v6 2001:db8:1::14, or change the file)")
      << r.error().details.dump();
}

// A service's own problem that only reals added with keelctl cause (the
// file's service has none, and the file drops next_hop_mac) names them:
// the file passed alone, so no line of it is the cause.
TEST_F(DaemonBackendTest, AReloadErrorOfAFileServiceNamesTheRealsKeelctlAdded) {
  const std::string file = yaml("      []\n");
  files_["keel.yaml"] = file;
  make();
  api::RealAddRequest add;
  add.service = "web";
  for (const char* a : {"10.0.1.9", "10.0.1.8"}) {
    add.real.address = ip(a);
    ASSERT_TRUE(backend_->addReal(add).isOk());
  }
  std::string noMac = file;
  const std::string mac = ", next_hop_mac: \"02:00:00:00:00:01\"";
  noMac.erase(noMac.find(mac), mac.size());
  files_["keel.yaml"] = noMac;
  api::Result r = backend_->reload();
  ASSERT_FALSE(r.isOk());
  EXPECT_EQ(r.error().message,
            "service web: ipip forwarding needs node.next_hop_mac (the router toward the reals) (with the reals "
            "10.0.1.8, 10.0.1.9 added with keelctl: keelctl real remove web ADDRESS, or change the file)");
}

// A file that turns a service into l2dsr while keelctl added a real to it
// without a MAC (ipip needs none) is refused: the real would get an all-zero
// destination MAC.
TEST_F(DaemonBackendTest, AReloadToL2dsrWithAMaclessRuntimeRealIsRefused) {
  make();
  api::RealAddRequest add = realAdd("web", "10.0.1.9");
  ASSERT_TRUE(backend_->addReal(add).isOk());
  std::string file = yaml("      - {address: 10.0.1.1, weight: 100, mac: \"02:00:00:00:01:01\"}\n");
  const std::string proto = "    protocol: tcp\n";
  ASSERT_NE(file.find(proto), std::string::npos);
  file.replace(file.find(proto), proto.size(), proto + "    forwarding: l2dsr\n");
  files_["keel.yaml"] = file;
  dp_.calls.clear();
  api::Result r = backend_->reload();
  ASSERT_FALSE(r.isOk());
  EXPECT_NE(r.error().message.find("service web real 10.0.1.9: l2dsr needs the real's MAC"), std::string::npos)
      << r.error().message;
  EXPECT_TRUE(dp_.calls.empty());
  EXPECT_EQ(backend_->findService("web")->reals.size(), 3u);
}

TEST_F(DaemonBackendTest, RuntimeHealthErrorChangesNothing) {
  make();
  dp_.calls.clear();
  api::RealAddRequest add = realAdd("web", "10.0.1.9");
  add.real.health = {{"rise", "many"}};
  api::Result r = backend_->addReal(add);
  ASSERT_FALSE(r.isOk());
  EXPECT_NE(r.error().message.find("rise"), std::string::npos) << r.error().message;
  EXPECT_TRUE(dp_.calls.empty());
}

// service.add and real.add read `health` with keel.yaml's parser: a key the
// check's type does not use is refused at the block that sets it, a key a
// real drops by changing the type is not, and a refusal changes nothing.
TEST_F(DaemonBackendTest, RuntimeHealthKeysMustFitTheCheckType) {
  make();
  dp_.calls.clear();
  nlohmann::json r = call(R"({"id":1,"method":"service.add","params":{"name":"new","vip":"10.0.0.9","port":80,)"
                          R"("protocol":"tcp","health":{"type":"tcp","path":"/healthz"},)"
                          R"("reals":[{"address":"10.0.1.20"},{"address":"10.0.1.21","health":{"payload":"x"}}]}})");
  ASSERT_EQ(r["ok"], false) << r.dump();
  EXPECT_EQ(r["error"]["code"], api::code::kInvalidConfig);
  EXPECT_EQ(r["error"]["details"]["errors"],
            nlohmann::json({"request: params.health.path: only http checks use path (this check is tcp)",
                            "request: params.reals[1].health.payload: only udp checks use payload (this check is tcp)"}))
      << r.dump();
  EXPECT_FALSE(backend_->findService("new"));

  r = call(R"({"id":2,"method":"real.add","params":{"service":"web","address":"10.0.1.9",)"
           R"("health":{"type":"udp","expect":"PONG","host":"h.example"}}})");
  ASSERT_EQ(r["ok"], false) << r.dump();
  EXPECT_EQ(r["error"]["message"], "request: params.health.host: only http checks use host (this check is udp)");
  EXPECT_EQ(backend_->findService("web")->reals.size(), 2u);
  EXPECT_TRUE(dp_.calls.empty());

  // The service's http keys are dropped by a real that checks tcp: fine.
  r = call(R"({"id":3,"method":"service.add","params":{"name":"new","vip":"10.0.0.9","port":80,"protocol":"tcp",)"
           R"("health":{"type":"http","path":"/h"},"reals":[{"address":"10.0.1.20","health":{"type":"tcp"}}]}})");
  ASSERT_EQ(r["ok"], true) << r.dump();
}

// A request's health object becomes YAML node by node (jsonToYaml), each
// scalar tagged with its JSON type: a value of the wrong JSON type is
// refused at its key, without a line, even where its text would read as
// the key's value ("rise": "2", "expect": true; the API's types are exact:
// input review M2, where they were read by their text and udp's
// "expect": true became the expected reply "true").
TEST_F(DaemonBackendTest, RuntimeHealthValuesAreHeldToTheirJsonTypes) {
  make();
  nlohmann::json r = call(R"({"id":1,"method":"real.add","params":{"service":"web","address":"10.0.1.9",)"
                          R"("health":{"type":"udp","port":5353,"rise":2,"fall":4,"require_reply":false,)"
                          R"("interval":"250ms","payload":"ping"}}})");
  ASSERT_EQ(r["ok"], true) << r.dump();
  std::optional<HealthStatus> added;
  for (const HealthStatus& st : backend_->checker().snapshot())
    if (st.target.address == ip("10.0.1.9")) added = st;
  ASSERT_TRUE(added);
  const HealthCheckSpec& spec = added->target.spec;
  EXPECT_EQ(spec.type, HealthCheckSpec::Type::Udp);
  EXPECT_EQ(spec.port, 5353);
  EXPECT_EQ(spec.rise, 2u);
  EXPECT_EQ(spec.fall, 4u);
  EXPECT_FALSE(spec.udpRequireReply);
  EXPECT_EQ(spec.interval, std::chrono::milliseconds(250));
  const std::pair<const char*, const char*> refused[] = {
      {R"("port":-1)", "request: params.health.port: "},
      {R"("rise":1.5)", "request: params.health.rise: "},
      {R"("interval":5)", "request: params.health.interval: "},
      {R"("require_reply":1)", "request: params.health.require_reply: "},
      {R"("port":{"a":1})", "request: params.health.port: "},
      {R"("payload":[1,2])", "request: params.health.payload: "},
      {R"("rise":"2")", "request: params.health.rise: must be a number, got the string \"2\""},
      {R"("port":"8080")", "request: params.health.port: must be a number, got the string \"8080\""},
      {R"("expect":true)", "request: params.health.expect: must be a string, got true"},
      {R"("payload":5)", "request: params.health.payload: must be a string, got the number 5"},
      // A number out of range is shown as the number it is, as params'
      // own errors show one (docs review L6: it read got "0").
      {R"("rise":0)", "request: params.health.rise: must be an integer 1..1000, got 0"},
      {R"("port":65536)", "request: params.health.port: must be an integer 1..65535, got 65536"},
      {R"("interval":"0s")", "request: params.health.interval: must be a duration from 1ms to 1440m (one day), "},
      {R"("require_reply":"true")",
       "request: params.health.require_reply: must be a boolean, got the string \"true\""}};
  for (const auto& [value, where] : refused) {
    r = call(std::string(R"({"id":2,"method":"real.add","params":{"service":"web","address":"10.0.1.8",)") +
             R"("health":{"type":"udp",)" + value + "}}}");
    ASSERT_EQ(r["ok"], false) << value << ": " << r.dump();
    EXPECT_EQ(r["error"]["message"].get<std::string>().rfind(where, 0), 0u) << value << ": " << r.dump();
  }
  EXPECT_EQ(backend_->findService("web")->reals.size(), 3u);
  // What the checker refuses in a request's check is the request's fault,
  // not the file's at a line 0 (input review M3).
  r = call(R"({"id":4,"method":"real.add","params":{"service":"web","address":"10.0.1.8",)"
           R"("health":{"type":"http","path":"x"}}})");
  ASSERT_EQ(r["ok"], false) << r.dump();
  EXPECT_EQ(r["error"]["message"], "request: service web real 10.0.1.8: health.path: must start with '/'") << r.dump();
  // A service's own check: at its key.
  r = call(R"({"id":5,"method":"service.add","params":{"name":"new","vip":"10.0.0.9","port":80,"protocol":"tcp",)"
           R"("health":{"type":"http","path":"x","expect":"200-399"}}})");
  ASSERT_EQ(r["ok"], false) << r.dump();
  EXPECT_EQ(r["error"]["message"], "request: params.health.path: must start with '/'") << r.dump();
  r = call(R"({"id":6,"method":"service.add","params":{"name":"new","vip":"10.0.0.9","port":80,"protocol":"tcp",)"
           R"("health":{"type":"http","expect":600}}})");
  ASSERT_EQ(r["ok"], false) << r.dump();
  EXPECT_EQ(r["error"]["message"],
            "request: params.health.expect: http status range 600 must lie within 100-599 with MIN <= MAX")
      << r.dump();
  // http's expect: a status as a number, or a range as a string.
  for (const char* expect : {"200", R"("200-399")"}) {
    r = call(std::string(R"({"id":3,"method":"real.add","params":{"service":"web","address":"10.0.1.7",)") +
             R"("health":{"type":"http","expect":)" + expect + "}}}");
    ASSERT_EQ(r["ok"], true) << expect << ": " << r.dump();
    ASSERT_TRUE(backend_->removeReal({"web", ip("10.0.1.7")}).isOk());
  }
}

TEST_F(DaemonBackendTest, CheckedRealsStartDownAndFailOpenKeepsTheLast) {
  files_["keel.yaml"] = yaml(kTwo,
                             "    health: {type: tcp, port: 9, interval: 100ms, timeout: 50ms, "
                             "rise: 1, fall: 1}\n");
  make();
  // Down until rise: nothing in the ring, backends not valid.
  EXPECT_TRUE(dp_.rings[0].empty());
  EXPECT_EQ(realOf("10.0.1.1").state(), "down");
  EXPECT_EQ(realOf("10.0.1.1").check, "tcp");
  // Transitions as the checker would report them.
  ASSERT_TRUE(registry_.setRealHealth("web", ip("10.0.1.1"), true));
  ASSERT_TRUE(registry_.setRealHealth("web", ip("10.0.1.2"), true));
  EXPECT_EQ(ringIds().size(), 2u);
  ASSERT_TRUE(registry_.setRealHealth("web", ip("10.0.1.1"), false));
  EXPECT_EQ(ringIds(), std::set<uint32_t>{idOf("10.0.1.2")});
  // The last one down stays (fail-open), still valid at its generation.
  const uint32_t gen = dp_.backends[idOf("10.0.1.2")].gen;
  ASSERT_TRUE(registry_.setRealHealth("web", ip("10.0.1.2"), false));
  EXPECT_EQ(ringIds(), std::set<uint32_t>{idOf("10.0.1.2")});
  EXPECT_EQ(dp_.backends[idOf("10.0.1.2")].gen, gen);
  EXPECT_TRUE(dp_.backends[idOf("10.0.1.2")].flags & KEEL_BE_F_VALID);
  // The first real back up replaces the held one, which is invalidated.
  ASSERT_TRUE(registry_.setRealHealth("web", ip("10.0.1.1"), true));
  EXPECT_EQ(ringIds(), std::set<uint32_t>{idOf("10.0.1.1")});
  EXPECT_GT(dp_.backends[idOf("10.0.1.2")].gen, gen);
  EXPECT_FALSE(dp_.backends[idOf("10.0.1.2")].flags & KEEL_BE_F_VALID);
}

// A start without a stop record (the first, one after a crash or after
// `keelctl daemon stop`) whose checks all fail: fail-open holds a real once
// every real has failed its first `fall` checks, as it holds the last real
// that goes down (live restart review: after a crash a service whose
// health endpoint was broken while it served stayed dark for good).
// Fail-closed holds none. Here the checks get no route (the test's own
// network namespace): not run for `fall` checks, then failures.
class ConfirmedDownTest : public DaemonBackendTest {
 protected:
  // Starts `policy`'s service of two reals whose checks cannot pass, and
  // runs the loop until both have failed their first `fall` (2) checks and
  // the last callback ran.
  void startAndConfirm(const std::string& policy) {
    files_["keel.yaml"] = yaml(kTwo, "    health: {type: tcp, port: 9, interval: 100ms, timeout: 50ms, rise: 1, "
                                     "fall: 2, all_down: " + policy + "}\n");
    make();
    EXPECT_TRUE(ringIds().empty());
    auto confirmed = [&] {
      for (const HealthStatus& st : backend_->checker().snapshot())
        if (st.consecutiveFail < 2) return false;
      return true;
    };
    for (int i = 0; i < 300 && !confirmed(); ++i) {
      io_.restart();
      io_.run_for(std::chrono::milliseconds(10));
    }
    ASSERT_TRUE(confirmed());
    for (int i = 0; i < 5; ++i) {
      io_.restart();
      io_.run_for(std::chrono::milliseconds(10));
    }
  }
};

TEST_F(ConfirmedDownTest, AFailOpenServiceWhoseRealsNeverCameUpHoldsOneOnceAllAreConfirmedDown) {
  test::LogCapture log;
  startAndConfirm("fail-open");
  ASSERT_EQ(ringIds().size(), 1u);
  const uint32_t id = *ringIds().begin();
  EXPECT_TRUE(dp_.backends[id].flags & KEEL_BE_F_VALID);
  EXPECT_TRUE(dp_.backends[id].flags & KEEL_BE_F_HELD);
  const auto down = log.take("all_reals_down");
  ASSERT_EQ(down.size(), 1u);
  EXPECT_NE(down[0].find("policy=fail-open"), std::string::npos) << down[0];
  EXPECT_NE(down[0].find("no real of the service has come up since it was added"), std::string::npos) << down[0];
  EXPECT_EQ(realOf("10.0.1.1").held + realOf("10.0.1.2").held, 1);
  // The first real to come up releases it, as any held real.
  const IpAddress heldReal = realOf("10.0.1.1").held ? ip("10.0.1.1") : ip("10.0.1.2");
  const IpAddress other = heldReal == ip("10.0.1.1") ? ip("10.0.1.2") : ip("10.0.1.1");
  ASSERT_TRUE(registry_.setRealHealth("web", other, true));
  EXPECT_EQ(ringIds(), std::set<uint32_t>{idOf(other.toString().c_str())});
}

TEST_F(ConfirmedDownTest, AFailClosedServiceHoldsNone) {
  test::LogCapture log;
  startAndConfirm("fail-closed");
  EXPECT_TRUE(ringIds().empty());
  EXPECT_TRUE(log.take("all_reals_down").empty());
  // Reloaded to fail-open with its reals confirmed down already: held then
  // (re-read review: the hold came from a one-time event, and missed this).
  files_["keel.yaml"] = yaml(kTwo, "    health: {type: tcp, port: 9, interval: 100ms, timeout: 50ms, rise: 1, "
                                   "fall: 2, all_down: fail-open}\n");
  ASSERT_TRUE(backend_->reload().isOk());
  EXPECT_EQ(ringIds().size(), 1u);
  EXPECT_EQ(log.take("all_reals_down").size(), 1u);
}

// Every real drained while their checks fail, then one undrained: that one
// is held at once (it has a weight again, and is confirmed down).
TEST_F(ConfirmedDownTest, AnUndrainOfAConfirmedDownRealInADarkServiceHoldsIt) {
  startAndConfirm("fail-open");
  ASSERT_EQ(ringIds().size(), 1u);
  for (const char* a : {"10.0.1.1", "10.0.1.2"}) {
    api::RealDrainRequest drain;
    drain.real = {"web", ip(a)};
    ASSERT_TRUE(backend_->setRealDrain(drain).isOk());
  }
  EXPECT_TRUE(ringIds().empty());
  api::RealDrainRequest undrain;
  undrain.real = {"web", ip("10.0.1.2")};
  undrain.drain = false;
  ASSERT_TRUE(backend_->setRealDrain(undrain).isOk());
  EXPECT_EQ(ringIds(), std::set<uint32_t>{idOf("10.0.1.2")});
  EXPECT_TRUE(realOf("10.0.1.2").held);
}

// A real added with keelctl inherits its service's health like the file's
// reals: a reload that changes the service's check changes its check too
// (as a restart, which re-resolves it, always did).
TEST_F(DaemonBackendTest, AReloadChangesTheCheckOfARealAddedAtRuntime) {
  files_["keel.yaml"] = yaml(kTwo, "    health: {type: tcp, port: 9}\n");
  make();
  api::RealAddRequest add = realAdd("web", "10.0.1.9");
  ASSERT_TRUE(backend_->addReal(add).isOk());
  auto checkOf = [&](const std::string& address) {
    nlohmann::json r = call(R"({"id":1,"method":"health.show","params":{"service":"web"}})");
    for (const nlohmann::json& real : r["result"]["services"][0]["reals"])
      if (real["address"] == address) return real["check"].get<std::string>();
    return std::string("missing");
  };
  ASSERT_EQ(checkOf("10.0.1.9"), "tcp");
  files_["keel.yaml"] = yaml(kTwo, "    health: {type: http, port: 9, path: /healthz}\n");
  ASSERT_TRUE(backend_->reload().isOk());
  EXPECT_EQ(checkOf("10.0.1.1"), "http");
  EXPECT_EQ(checkOf("10.0.1.9"), "http");
}

// A mac given to a real of an ipip service means nothing: accepted, with a
// warning in the answer of real.add and of a reload whose file says it (and
// config_warning in the log), as config.check gives it.
TEST_F(DaemonBackendTest, AnIpipRealsMacIsAcceptedWithAWarning) {
  make();
  api::RealAddRequest add = realAdd("web", "10.0.1.9");
  add.real.mac = *MacAddress::parse("02:00:00:00:00:09");
  api::Result r = backend_->addReal(add);
  ASSERT_TRUE(r.isOk()) << r.error().message;
  EXPECT_EQ(r.result()["warnings"],
            nlohmann::json::array({"real 10.0.1.9: " + std::string(kIpipMacUnused)}));
  files_["keel.yaml"] = yaml("      - {address: 10.0.1.1, weight: 100, mac: \"02:00:00:00:00:01\"}\n");
  test::LogCapture log;
  r = backend_->reload();
  ASSERT_TRUE(r.isOk()) << r.error().message;
  const std::string w = "keel.yaml:9: services[0].reals[0].mac: " + std::string(kIpipMacUnused);
  EXPECT_EQ(r.result()["warnings"], nlohmann::json::array({w}));
  EXPECT_EQ(log.take("config_warning").size(), 1u);
}

// A check source this host lacks is a warning in real.add's and
// service.add's answers, as keel.yaml and config.check give it (operator
// review s32 L9): once per source, none for a source the host has.
TEST_F(DaemonBackendTest, AHealthSourceThisHostLacksIsWarnedOnARuntimeAdd) {
  make();
  ConfigOptions host;
  host.addressIsLocal = [](const IpAddress& a) { return a == ip("10.0.0.2"); };
  backend_->setCheckOptions(host);
  const std::string warning = "health.source: " + healthSourceNotLocal(ip("192.0.2.7"));
  api::RealAddRequest add = realAdd("web", "10.0.1.9");
  add.real.health = {{"type", "tcp"}, {"port", 9}, {"source", "192.0.2.7"}};
  api::Result r = backend_->addReal(add);
  ASSERT_TRUE(r.isOk()) << r.error().message;
  EXPECT_EQ(r.result().value("warnings", nlohmann::json()), nlohmann::json::array({warning})) << r.result().dump();
  add.real.address = ip("10.0.1.10");
  add.real.health["source"] = "10.0.0.2";
  r = backend_->addReal(add);
  ASSERT_TRUE(r.isOk()) << r.error().message;
  EXPECT_FALSE(r.result().contains("warnings")) << r.result().dump();
  r = backend_->addService(serviceRequest("dns", "10.0.0.53", 53, KEEL_PROTO_TCP,
                                          {{"type", "tcp"}, {"port", 53}, {"source", "192.0.2.7"}},
                                          {"10.0.2.1", "10.0.2.2"}));
  ASSERT_TRUE(r.isOk()) << r.error().message;
  EXPECT_EQ(r.result().value("warnings", nlohmann::json()), nlohmann::json::array({warning})) << r.result().dump();
  // A service with no reals yet: its own block's source.
  r = backend_->addService(serviceRequest("ntp", "10.0.0.123", 123, KEEL_PROTO_TCP,
                                          {{"type", "tcp"}, {"port", 123}, {"source", "192.0.2.7"}}));
  ASSERT_TRUE(r.isOk()) << r.error().message;
  EXPECT_EQ(r.result().value("warnings", nlohmann::json()), nlohmann::json::array({warning})) << r.result().dump();
}

// health.show's check_spec: each real's check as it runs, every value
// resolved (the service's block, the real's own over it, defaults), spelled
// as keel.yaml spells it; port: the one it connects to.
TEST_F(DaemonBackendTest, HealthShowGivesEachRealsResolvedCheck) {
  files_["keel.yaml"] = yaml(
      "      - {address: 10.0.1.1, weight: 100}\n"
      "      - {address: 10.0.1.2, weight: 100, health: {port: 8081, expect: \"200\", rise: 5}}\n",
      "    health: {type: http, path: /healthz, interval: 500ms, timeout: 2s, fall: 4}\n");
  make();
  EXPECT_EQ(healthOf("web", "10.0.1.1")["check_spec"],
            (nlohmann::json{{"type", "http"}, {"port", 80}, {"interval", "500ms"}, {"timeout", "2s"},
                            {"rise", 2}, {"fall", 4}, {"source", nullptr}, {"path", "/healthz"},
                            {"host", nullptr}, {"expect", "200-399"}}));
  const nlohmann::json two = healthOf("web", "10.0.1.2")["check_spec"];
  EXPECT_EQ(two["port"], 8081);
  EXPECT_EQ(two["expect"], "200");
  EXPECT_EQ(two["rise"], 5);
  EXPECT_EQ(two["interval"], "500ms");
  files_["keel.yaml"] =
      yaml(kTwo, "    health: {type: udp, port: 53, payload: ping, require_reply: true, interval: 2m}\n");
  ASSERT_TRUE(backend_->reload().isOk());
  EXPECT_EQ(healthOf("web", "10.0.1.1")["check_spec"],
            (nlohmann::json{{"type", "udp"}, {"port", 53}, {"interval", "2m"}, {"timeout", "1s"}, {"rise", 2},
                            {"fall", 3}, {"source", nullptr}, {"payload", "ping"}, {"expect", nullptr},
                            {"require_reply", true}}));
  files_["keel.yaml"] = yaml(kTwo, "    health: {type: none}\n");
  ASSERT_TRUE(backend_->reload().isOk());
  EXPECT_EQ(healthOf("web", "10.0.1.2")["check_spec"], (nlohmann::json{{"type", "none"}}));
}

// health.show (and service.list) say which down reals still get traffic:
// kept (established_on_down: keep) and held (fail-open, the last one).
TEST_F(DaemonBackendTest, HealthShowSaysWhichDownRealsKeepOrHoldTheirFlows) {
  files_["keel.yaml"] = yaml(kTwo, "    health: {type: tcp, port: 9, established_on_down: keep}\n");
  make();
  ASSERT_TRUE(registry_.setRealHealth("web", ip("10.0.1.1"), true));
  ASSERT_TRUE(registry_.setRealHealth("web", ip("10.0.1.2"), true));
  ASSERT_TRUE(registry_.setRealHealth("web", ip("10.0.1.1"), false));
  nlohmann::json one = healthOf("web", "10.0.1.1");
  EXPECT_EQ(one["state"], "down");
  EXPECT_EQ(one["kept"], true);
  EXPECT_EQ(one["held"], false);
  EXPECT_EQ(healthOf("web", "10.0.1.2")["kept"], false);
  ASSERT_TRUE(registry_.setRealHealth("web", ip("10.0.1.2"), false));  // the last: fail-open holds it
  nlohmann::json two = healthOf("web", "10.0.1.2");
  EXPECT_EQ(two["held"], true);
  EXPECT_EQ(two["kept"], false);
  nlohmann::json list = call(R"({"id":1,"method":"service.list","params":{}})");
  EXPECT_EQ(list["result"]["services"][0]["reals"][1]["held"], true) << list.dump();
  // A drained real that fails its checks: its state is the drain, and
  // `kept` says whether its established flows stay (operator review M5:
  // it was false for every drained real, so a drained real whose flows
  // had moved and one whose flows stayed looked the same).
  ASSERT_EQ(call(R"({"id":2,"method":"real.drain","params":{"service":"web","address":"10.0.1.1"}})")["ok"], true);
  nlohmann::json drained = healthOf("web", "10.0.1.1");
  EXPECT_EQ(drained["state"], "draining");
  EXPECT_EQ(drained["healthy"], false);
  EXPECT_EQ(drained["kept"], true);
  EXPECT_EQ(drained["held"], false);
}

TEST_F(DaemonBackendTest, FailClosedEmptiesTheRing) {
  files_["keel.yaml"] = yaml(kTwo, "    health: {type: tcp, port: 9, all_down: fail-closed}\n");
  make();
  ASSERT_TRUE(registry_.setRealHealth("web", ip("10.0.1.1"), true));
  ASSERT_TRUE(registry_.setRealHealth("web", ip("10.0.1.1"), false));
  EXPECT_TRUE(dp_.rings[0].empty());
}

// The checker's transitions of one loop turn reach the registry together:
// four reals that come up at once (a reload to type none posts each one's
// forced up) rebuild and publish their service's ring once, in one
// data-plane batch, not four times.
TEST_F(DaemonBackendTest, TransitionsOfOneLoopTurnPublishTheRingOnce) {
  const std::string four = kTwo + "      - {address: 10.0.1.3}\n      - {address: 10.0.1.4}\n";
  files_["keel.yaml"] = yaml(four, "    health: {type: tcp, port: 9, interval: 1h}\n");
  make();
  ASSERT_TRUE(dp_.rings[0].empty()) << "checked reals start down";
  files_["keel.yaml"] = yaml(four, "    health: {type: none}\n");
  ASSERT_TRUE(backend_->reload().isOk());
  dp_.calls.clear();
  const int batches = dp_.batches;
  io_.poll();  // the forced ups, then the flush they armed
  io_.poll();
  int publishes = 0;
  for (const std::string& c : dp_.calls) publishes += c.rfind("publishRing 0 ", 0) == 0;
  EXPECT_EQ(publishes, 1) << "one ring for the four reals";
  EXPECT_EQ(dp_.batches, batches + 1);
  EXPECT_EQ(ringIds(), (std::set<uint32_t>{idOf("10.0.1.1"), idOf("10.0.1.2"), idOf("10.0.1.3"), idOf("10.0.1.4")}));
}

// Transitions whose flush has not run when keeld's loop ends (a stop in
// the same turn) are applied by applyPendingHealth, which keeld calls
// before it saves the stop record or leaves the data plane in place.
TEST_F(DaemonBackendTest, PendingTransitionsAreAppliedWhenTheLoopEnds) {
  const std::string four = kTwo + "      - {address: 10.0.1.3}\n      - {address: 10.0.1.4}\n";
  files_["keel.yaml"] = yaml(four, "    health: {type: tcp, port: 9, interval: 1h}\n");
  make();
  backend_->applyPendingHealth();  // nothing pending: nothing happens
  ASSERT_TRUE(dp_.rings[0].empty());
  files_["keel.yaml"] = yaml(four, "    health: {type: none}\n");
  test::LogCapture log;
  ASSERT_TRUE(backend_->reload().isOk());
  // Run the four forced ups, one handler at a time, but not the flush.
  size_t changed = 0;
  for (int i = 0; i < 20 && changed < 4; ++i) {
    io_.poll_one();
    changed += log.take("health_changed").size();
  }
  ASSERT_EQ(changed, 4u);
  ASSERT_TRUE(dp_.rings[0].empty()) << "the flush ran in the loop already";
  backend_->applyPendingHealth();
  EXPECT_EQ(ringIds(), (std::set<uint32_t>{idOf("10.0.1.1"), idOf("10.0.1.2"), idOf("10.0.1.3"), idOf("10.0.1.4")}));
  EXPECT_TRUE(log.take("health_changed").empty()) << "transitions logged by their callbacks, logged again";
  io_.poll();  // the cancelled flush does nothing more
  EXPECT_EQ(ringIds().size(), 4u);
}

// The checks run on the checker's thread: a transition it recorded after the
// loop's last turn (its callback posted, never run: keeld is stopping) is
// applied by applyPendingHealth too, from the checker's state.
TEST_F(DaemonBackendTest, ATransitionTheLoopNeverRanIsAppliedWhenItEnds) {
  // Bound but not listening until keeld has started: a check that ran on
  // the checker's thread during start() (a loaded box) found it refused, so
  // the real is down at first whatever the threads' timing.
  boost::asio::ip::tcp::acceptor listener(io_);
  listener.open(boost::asio::ip::tcp::v4());
  listener.bind({boost::asio::ip::address_v4::loopback(), 0});
  files_["keel.yaml"] = yaml("      - {address: 127.0.0.1}\n",
                             "    health: {type: tcp, port: " + std::to_string(listener.local_endpoint().port()) +
                                 ", interval: 50ms, timeout: 500ms, rise: 1}\n");
  make();
  ASSERT_TRUE(dp_.rings[0].empty());
  listener.listen();
  // The loop does not run: the check thread records the real up.
  auto up = [&] {
    auto all = backend_->checker().snapshot();
    return all.size() == 1 && all[0].up;
  };
  for (int i = 0; i < 200 && !up(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_TRUE(up());
  ASSERT_TRUE(dp_.rings[0].empty());
  test::LogCapture log;
  backend_->applyPendingHealth();
  EXPECT_EQ(ringIds(), std::set<uint32_t>{idOf("127.0.0.1")});
  EXPECT_EQ(realOf("127.0.0.1").state(), "up");
  // Its callback never ran, so nothing logged it: applyPendingHealth does, once.
  const auto changed = log.take("health_changed");
  ASSERT_EQ(changed.size(), 1u);
  EXPECT_NE(changed[0].find("real=127.0.0.1 state=up"), std::string::npos) << changed[0];
}

// A health transition whose data-plane write fails leaves its service to be
// rewritten; keeld re-applies the running config at once, so the real that
// came up is in the ring without waiting for the next change. The checker
// runs for real: 127.0.0.1 answers on a listening port, 127.0.0.2 refuses.
TEST_F(DaemonBackendTest, AHealthTransitionTheDataPlaneFailsIsSettled) {
  // The checker's target: a free loopback port, bound but not listening
  // until the injected failure is armed (first checks run at once, so a
  // listener would bring 127.0.0.1 up during make()); closed at the end.
  boost::asio::ip::tcp::acceptor listener(io_);
  listener.open(boost::asio::ip::tcp::v4());
  listener.bind({boost::asio::ip::address_v4::loopback(), 0});
  files_["keel.yaml"] = yaml("      - {address: 127.0.0.1}\n"
                             "      - {address: 127.0.0.2}\n",
                             "    health: {type: tcp, port: " + std::to_string(listener.local_endpoint().port()) +
                                 ", interval: 100ms, timeout: 900ms, rise: 1, fall: 1, all_down: fail-closed}\n");
  make();  // fail-closed: fail-open would hold a real once both failed (ensureFailOpenHolds)
  ASSERT_TRUE(dp_.rings[0].empty());
  dp_.failAfter = 1;  // the up transition's backend write fails, and does not land
  dp_.failedCallsLand = false;
  listener.listen();
  // Bounded: the next check runs within one interval.
  for (int i = 0; i < 100 && ringIds().empty(); ++i) io_.run_for(std::chrono::milliseconds(50));
  EXPECT_EQ(dp_.failAfter, 0) << "the injected failure was never reached";
  EXPECT_EQ(realOf("127.0.0.1").state(), "up");
  EXPECT_EQ(ringIds(), std::set<uint32_t>{idOf("127.0.0.1")});
  EXPECT_TRUE(dp_.backends[idOf("127.0.0.1")].flags & KEEL_BE_F_VALID);
  EXPECT_EQ(realOf("127.0.0.2").state(), "down");
}

TEST_F(DaemonBackendTest, HealthErrorsHaveFileAndLine) {
  ConfigResult r = parseConfig(yaml(kTwo, "    health: {type: tcp, rise: many, all_down: maybe}\n"),
                               "keel.yaml");
  ASSERT_FALSE(r.ok());
  std::string all;
  for (const auto& e : r.errors) all += e + "\n";
  EXPECT_NE(all.find("keel.yaml:8: services[0].health.rise"), std::string::npos) << all;
  EXPECT_NE(all.find("all_down"), std::string::npos) << all;
  // Reported once, not once per real.
  EXPECT_EQ(std::count(r.errors.begin(), r.errors.end(), r.errors.front()), 1);
}

TEST(HealthConfig, CheckerRefusalsAreConfigErrors) {
  // A port-0 service has no port to check unless health.port says one.
  std::string text = yaml(kTwo, "    health: {type: tcp}\n");
  text.replace(text.find("port: 80"), 8, "port: 0");
  ConfigResult r = parseConfig(text, "keel.yaml");
  ASSERT_EQ(r.errors.size(), 1u) << "once, at the service's block, not once per real";
  EXPECT_EQ(r.errors.front().rfind("keel.yaml:8: services[0].health.port: required", 0), 0u)
      << r.errors.front();
  text.replace(text.find("{type: tcp}"), 11, "{type: tcp, port: 81}");
  EXPECT_TRUE(parseConfig(text, "keel.yaml").ok());
}

TEST(ControlConfig, DefaultsAndErrors) {
  const std::string base =
      "dataplane: {kind: xdp, interface: eth0}\n"
      "node: {tunnel_source_v4: 10.0.0.2, next_hop_mac: \"02:00:00:00:00:01\"}\n";
  ConfigResult ok = parseConfig(base, "k.yaml");
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok.config->control.socket, "/run/keel/keel.sock");
  EXPECT_EQ(ok.config->control.mode, 0600u);
  ConfigResult set = parseConfig(base + "control: {socket: /tmp/k.sock, mode: \"0660\", group: keel}\n", "k.yaml");
  ASSERT_TRUE(set.ok());
  EXPECT_EQ(set.config->control.socket, "/tmp/k.sock");
  EXPECT_EQ(set.config->control.mode, 0660u);
  EXPECT_EQ(set.config->control.group, "keel");
  ConfigResult bad = parseConfig(base + "control: {socket: rel.sock, mode: \"999\"}\n", "k.yaml");
  ASSERT_FALSE(bad.ok());
  std::string all;
  for (const auto& e : bad.errors) all += e + "\n";
  EXPECT_NE(all.find("k.yaml:3: control.socket"), std::string::npos) << all;
  EXPECT_NE(all.find("control.mode"), std::string::npos) << all;
  EXPECT_FALSE(parseConfig(base + "control: {sockett: /tmp/k.sock}\n", "k.yaml").ok());
}

// A restarted keeld (Registry::adopt via start(config, adopted)): checked
// reals that were up stay up, at the same id and generation, instead of
// starting down (which would bump the generation and move every flow).
TEST_F(DaemonBackendTest, AdoptedCheckedRealsKeepTheirStateAndGeneration) {
  files_["keel.yaml"] = yaml(kTwo,
                             "    health: {type: tcp, port: 9, interval: 100ms, timeout: 50ms, "
                             "rise: 1, fall: 1}\n");
  make();
  ASSERT_TRUE(registry_.setRealHealth("web", ip("10.0.1.1"), true));  // .2 stays down
  const ProgrammedState pinned = dp_.programmed();
  const BackendId up = idOf("10.0.1.1"), down = idOf("10.0.1.2");
  const uint32_t upGen = dp_.backends[up].gen, downGen = dp_.backends[down].gen;

  MockDataplane dp2;
  takePins(dp2, dp_);
  Registry registry2(dp2);
  boost::asio::io_context io2;
  auto backend2 = started(io2, registry2, &pinned);
  EXPECT_EQ(dp2.backends[up].gen, upGen);
  EXPECT_TRUE(dp2.backends[up].flags & KEEL_BE_F_VALID);
  EXPECT_EQ(dp2.backends[down].gen, downGen);
  EXPECT_FALSE(dp2.backends[down].flags & KEEL_BE_F_VALID);
  EXPECT_EQ(dp2.rings[0], dp_.rings[0]);
  auto snap = backend2->findService("web");
  ASSERT_TRUE(snap);
  for (const auto& real : snap->reals)
    EXPECT_EQ(real.state(), real.address == ip("10.0.1.1") ? "up" : "down") << real.address.toString();
  // Without adoption the same start would begin with both down.
  MockDataplane dp3;
  Registry registry3(dp3);
  auto backend3 = started(io2, registry3);
  EXPECT_TRUE(dp3.rings[0].empty());
}

// established_on_down: keep, from the file: a real that goes down keeps its
// flows (VALID, same generation), and health_changed says the policy. A
// reload with a bad value is refused and changes nothing; one to repick
// invalidates the kept real.
TEST_F(DaemonBackendTest, EstablishedOnDownComesFromTheFileAndABadReloadChangesNothing) {
  test::LogCapture logs;
  files_["keel.yaml"] = yaml(kTwo, "    health: {type: tcp, port: 9, established_on_down: keep}\n");
  make();
  ASSERT_TRUE(registry_.setRealHealth("web", ip("10.0.1.1"), true));
  ASSERT_TRUE(registry_.setRealHealth("web", ip("10.0.1.2"), true));
  const BackendId id = idOf("10.0.1.2");
  const uint32_t gen = dp_.backends[id].gen;
  ASSERT_TRUE(registry_.setRealHealth("web", ip("10.0.1.2"), false));
  EXPECT_TRUE(dp_.backends[id].flags & KEEL_BE_F_VALID);
  EXPECT_EQ(dp_.backends[id].gen, gen);
  EXPECT_EQ(ringAddresses(), std::set<std::string>{"10.0.1.1"});

  files_["keel.yaml"] = yaml(kTwo, "    health: {type: tcp, port: 9, established_on_down: reset}\n");
  api::Result bad = backend_->reload();
  ASSERT_FALSE(bad.isOk());
  EXPECT_NE(bad.error().message.find("keel.yaml:8: services[0].health.established_on_down: must be one of "
                                     "repick|keep"),
            std::string::npos)
      << bad.error().message;
  EXPECT_TRUE(dp_.backends[id].flags & KEEL_BE_F_VALID) << "a refused reload changed the kept real";
  EXPECT_TRUE(backend_->fileConfig().services[0].healthKeepEstablished);

  files_["keel.yaml"] = yaml(kTwo, "    health: {type: tcp, port: 9}\n");  // repick, the default
  ASSERT_TRUE(backend_->reload().isOk());
  EXPECT_FALSE(dp_.backends[id].flags & KEEL_BE_F_VALID);
  EXPECT_EQ(dp_.backends[id].gen, gen + 1);
}

// A drained real that went down kept its flows (registry.h); undrained (or
// given a weight) while still down under repick, they move, and the reply
// says so. Under keep nothing moves and nothing is said.
TEST_F(DaemonBackendTest, UndrainingADownRealUnderRepickSaysItsFlowsMove) {
  for (const char* policy : {"", ", established_on_down: keep"}) {
    SCOPED_TRACE(policy);
    files_["keel.yaml"] = yaml(kTwo, std::string("    health: {type: tcp, port: 9, interval: 10s") + policy + "}\n");
    make();
    ASSERT_TRUE(registry_.setRealHealth("web", ip("10.0.1.1"), true));
    ASSERT_TRUE(registry_.setRealHealth("web", ip("10.0.1.2"), true));
    ASSERT_EQ(call(R"({"id":1,"method":"real.drain","params":{"service":"web","address":"10.0.1.2"}})")["ok"], true);
    ASSERT_TRUE(registry_.setRealHealth("web", ip("10.0.1.2"), false));
    ASSERT_TRUE(registry_.service("web")->reals[1].kept);
    nlohmann::json r = call(R"({"id":2,"method":"real.undrain","params":{"service":"web","address":"10.0.1.2"}})");
    ASSERT_EQ(r["ok"], true) << r.dump();
    const bool repick = std::string(policy).empty();
    EXPECT_EQ(registry_.service("web")->reals[1].kept, !repick);
    const nlohmann::json warnings = r["result"].value("warnings", nlohmann::json::array());
    if (repick) {
      EXPECT_EQ(warnings, nlohmann::json::array({"real 10.0.1.2 of service web is down: its established flows, "
                                                 "kept while it was drained, take the ring's pick now (the "
                                                 "service's established_on_down is repick)"}))
          << r.dump();
    } else {
      EXPECT_TRUE(warnings.empty()) << r.dump();
    }
    backend_.reset();
  }
}

// The checker for real (listeners on loopback, one then closed): the down
// transition's health_changed names the policy, and the real is kept.
TEST_F(DaemonBackendTest, AKeptDownTransitionSaysSoInItsLogRecord) {
  test::LogCapture logs;
  using boost::asio::ip::tcp;
  auto a = std::make_unique<tcp::acceptor>(io_, tcp::endpoint{boost::asio::ip::make_address("127.0.0.1"), 0});
  tcp::acceptor b(io_, tcp::endpoint{boost::asio::ip::make_address("127.0.0.2"), 0});
  files_["keel.yaml"] = yaml("      - {address: 127.0.0.1, health: {port: " + std::to_string(a->local_endpoint().port()) +
                                 "}}\n      - {address: 127.0.0.2, health: {port: " +
                                 std::to_string(b.local_endpoint().port()) + "}}\n",
                             // A timeout no loaded box misses (at 50 ms the listening
                             // real's checks timed out under CI load: it flapped).
                             "    health: {type: tcp, interval: 1s, timeout: 900ms, rise: 1, fall: 1, "
                             "established_on_down: keep}\n");
  make();
  for (int i = 0; i < 100 && ringIds().size() < 2; ++i) io_.run_for(std::chrono::milliseconds(50));
  ASSERT_EQ(ringIds().size(), 2u);
  const BackendId id = idOf("127.0.0.1");
  const uint32_t gen = dp_.backends[id].gen;
  logs.take("health_changed");
  a.reset();  // refused from now on
  for (int i = 0; i < 100 && realOf("127.0.0.1").state() == "up"; ++i) io_.run_for(std::chrono::milliseconds(50));
  ASSERT_EQ(realOf("127.0.0.1").state(), "down");
  std::vector<std::string> changed = logs.take("health_changed");
  std::erase_if(changed, [](const std::string& line) { return line.find(" real=127.0.0.1 ") == std::string::npos; });
  // The refusal's transition is the last. On a box loaded enough that a
  // check of the listening real missed its 900 ms before a.reset(), a
  // down and up came first (the checker delivers each transition once):
  // every down says what becomes of the flows.
  ASSERT_FALSE(changed.empty());
  EXPECT_NE(changed.back().find("state=down"), std::string::npos) << changed.back();
  for (const std::string& line : changed) {
    if (line.find("state=down") != std::string::npos) {
      EXPECT_NE(line.find("established_on_down=keep"), std::string::npos) << line;
    }
  }
  EXPECT_EQ(ringAddresses(), std::set<std::string>{"127.0.0.2"});
  EXPECT_TRUE(dp_.backends[id].flags & KEEL_BE_F_VALID);
  EXPECT_EQ(dp_.backends[id].gen, gen);
}

// A restarted keeld adopting a real kept down (VALID, out of the ring)
// starts its check down: it stays out of the ring until `rise` passes,
// rather than going back in as VALID alone would say.
TEST_F(DaemonBackendTest, AnAdoptedKeptDownRealStartsDownAndOutOfTheRing) {
  files_["keel.yaml"] = yaml(kTwo, "    health: {type: tcp, port: 9, established_on_down: keep}\n");
  make();
  ASSERT_TRUE(registry_.setRealHealth("web", ip("10.0.1.1"), true));
  ASSERT_TRUE(registry_.setRealHealth("web", ip("10.0.1.2"), true));
  ASSERT_TRUE(registry_.setRealHealth("web", ip("10.0.1.2"), false));
  const ProgrammedState pinned = dp_.programmed();
  const BackendId id = idOf("10.0.1.2");
  const uint32_t gen = dp_.backends[id].gen;

  MockDataplane dp2;
  takePins(dp2, dp_);
  Registry registry2(dp2);
  boost::asio::io_context io2;
  auto backend2 = started(io2, registry2, &pinned);
  EXPECT_EQ(dp2.rings[0], dp_.rings[0]) << "the kept-down real went back into the ring";
  EXPECT_TRUE(dp2.backends[id].flags & KEEL_BE_F_VALID);
  EXPECT_EQ(dp2.backends[id].gen, gen);
  auto snap = backend2->findService("web");
  ASSERT_TRUE(snap);
  for (const auto& real : snap->reals)
    EXPECT_EQ(real.state(), real.address == ip("10.0.1.1") ? "up" : "down") << real.address.toString();
}

// service.add takes health.established_on_down as keel.yaml does: keep or
// repick, anything else refused with the allowed values, nothing changed.
TEST_F(DaemonBackendTest, RuntimeServiceAddTakesEstablishedOnDown) {
  make();
  api::ServiceAddRequest svc = serviceRequest("api", "10.0.0.9", 80, KEEL_PROTO_TCP,
                                              {{"type", "tcp"}, {"established_on_down", "sometimes"}}, {"10.0.1.20"});
  api::Result r = backend_->addService(svc);
  ASSERT_FALSE(r.isOk());
  EXPECT_EQ(r.error().code, api::code::kInvalidConfig);
  EXPECT_EQ(r.error().message,
            "request: params.health.established_on_down: must be one of repick|keep, got \"sometimes\"");
  EXPECT_FALSE(backend_->findService("api"));
  // all_down by the same parser as keel.yaml's (it once read a map as "").
  svc.health = {{"type", "tcp"}, {"all_down", {{"x", 1}}}};
  r = backend_->addService(svc);
  ASSERT_FALSE(r.isOk());
  EXPECT_EQ(r.error().message, "request: params.health.all_down: must be one of fail-open|fail-closed, got a mapping");
  EXPECT_FALSE(backend_->findService("api"));
  svc.health = {{"type", "tcp"}, {"established_on_down", "keep"}};
  svc.reals.push_back(api::RealSpec{ip("10.0.1.21"), 100, std::nullopt, nullptr});
  ASSERT_TRUE(backend_->addService(svc).isOk());
  ASSERT_TRUE(registry_.setRealHealth("api", ip("10.0.1.20"), true));
  ASSERT_TRUE(registry_.setRealHealth("api", ip("10.0.1.21"), true));
  ASSERT_TRUE(registry_.setRealHealth("api", ip("10.0.1.21"), false));
  EXPECT_TRUE(registry_.service("api")->reals[1].kept);
}

// service.add checks the service's own health block, with or without reals,
// as keel.yaml does, and says a mistake in it once; nothing changes.
TEST_F(DaemonBackendTest, RuntimeServiceAddChecksItsOwnHealthBlockOnce) {
  make();
  dp_.calls.clear();
  api::ServiceAddRequest svc = serviceRequest("bad", "10.0.0.9", 80, KEEL_PROTO_TCP, {{"type", "bogus"}});
  api::Result r = backend_->addService(svc);
  ASSERT_FALSE(r.isOk());
  EXPECT_EQ(r.error().code, api::code::kInvalidConfig);
  EXPECT_NE(r.error().message.find("params.health.type"), std::string::npos) << r.error().message;
  svc.reals.push_back(api::RealSpec{ip("10.0.1.20"), 100, std::nullopt, nullptr});
  svc.reals.push_back(api::RealSpec{ip("10.0.1.21"), 100, std::nullopt, nullptr});
  r = backend_->addService(svc);
  ASSERT_FALSE(r.isOk());
  EXPECT_EQ(r.error().details["errors"].size(), 1u) << r.error().details.dump();
  // A real's own mistake is still its own, whatever its text quotes: the
  // layer an error comes from decides, not what the message says.
  svc.reals[1].health = {{"type", "x: params.health"}};
  r = backend_->addService(svc);
  ASSERT_FALSE(r.isOk());
  ASSERT_EQ(r.error().details["errors"].size(), 2u) << r.error().details.dump();
  EXPECT_NE(r.error().details["errors"][0].get<std::string>().find("params.health.type"), std::string::npos);
  EXPECT_NE(r.error().details["errors"][1].get<std::string>().find("params.reals[1].health.type"), std::string::npos)
      << r.error().details.dump();
  svc.reals[1].health = nullptr;
  // A port-0 service's check needs a port, whatever its reals are.
  svc.port = 0;
  svc.health = {{"type", "tcp"}};
  svc.reals.clear();
  r = backend_->addService(svc);
  ASSERT_FALSE(r.isOk());
  EXPECT_NE(r.error().message.find("params.health"), std::string::npos) << r.error().message;
  EXPECT_TRUE(dp_.calls.empty());
  EXPECT_FALSE(backend_->findService("bad"));
}

// A udp service added with a health object that names no type gets a tcp
// check, as the file's would: its answer warns as config.check does (at the
// service's object, or at each real's when only those exist); a typed check
// or a tcp service gets no warning.
TEST_F(DaemonBackendTest, RuntimeUdpServiceWithAnUntypedCheckIsWarned) {
  make();
  const std::string implied = "no type: checks default to tcp, a TCP connect to this udp service's port";
  api::ServiceAddRequest svc = serviceRequest("u1", "10.0.0.9", 53, KEEL_PROTO_UDP, {{"interval", "1s"}});
  svc.reals.push_back(api::RealSpec{ip("10.0.1.20"), 100, std::nullopt, nullptr});
  api::Result r = backend_->addService(svc);
  ASSERT_TRUE(r.isOk()) << r.error().message;
  ASSERT_TRUE(r.result().contains("warnings")) << r.result().dump();
  ASSERT_EQ(r.result()["warnings"].size(), 1u) << r.result().dump();
  EXPECT_EQ(r.result()["warnings"][0].get<std::string>().rfind("health: " + implied, 0), 0u) << r.result().dump();

  api::ServiceAddRequest perReal = serviceRequest("u2", "10.0.0.9", 54, KEEL_PROTO_UDP, nullptr);
  perReal.reals.push_back(api::RealSpec{ip("10.0.1.20"), 100, std::nullopt, nullptr});
  perReal.reals.push_back(api::RealSpec{ip("10.0.1.21"), 100, std::nullopt, {{"interval", "1s"}}});
  r = backend_->addService(perReal);
  ASSERT_TRUE(r.isOk()) << r.error().message;
  ASSERT_EQ(r.result().value("warnings", nlohmann::json::array()).size(), 1u) << r.result().dump();
  EXPECT_EQ(r.result()["warnings"][0].get<std::string>().rfind("reals[1].health: " + implied, 0), 0u);

  api::ServiceAddRequest typed = serviceRequest("u3", "10.0.0.9", 55, KEEL_PROTO_UDP, {{"type", "udp"}});
  r = backend_->addService(typed);
  ASSERT_TRUE(r.isOk()) << r.error().message;
  EXPECT_FALSE(r.result().contains("warnings")) << r.result().dump();
  api::ServiceAddRequest tcp = serviceRequest("t1", "10.0.0.9", 56, KEEL_PROTO_TCP, {{"interval", "1s"}});
  r = backend_->addService(tcp);
  ASSERT_TRUE(r.isOk()) << r.error().message;
  EXPECT_FALSE(r.result().contains("warnings")) << r.result().dump();
}

// l2dsr reals added at runtime without a mac resolve it from the neighbour
// table of dataplane.interface, as keel.yaml's do; one the table lacks is
// accepted and held down (real.add and service.add alike), as the file's
// is, and is looked up again until it is found or removed.
TEST_F(DaemonBackendTest, L2dsrRuntimeAddsResolveTheMacLikeTheFile) {
  neighbours_["10.0.1.7"] = "02:00:00:00:00:07";
  make();
  api::ServiceAddRequest svc = l2dsrService("dsr", "10.0.0.7", {api::RealSpec{ip("10.0.1.7"), 100, std::nullopt, nullptr}});
  api::Result r = backend_->addService(svc);
  ASSERT_TRUE(r.isOk()) << r.error().message;
  auto dsr = backend_->findService("dsr");
  ASSERT_TRUE(dsr && dsr->reals.size() == 1);
  ASSERT_TRUE(dsr->reals[0].mac);
  EXPECT_EQ(dsr->reals[0].mac->toString(), "02:00:00:00:00:07");
  EXPECT_EQ(resolved_, std::vector<std::string>{"10.0.1.7@eth0"});
  const ServiceId dsrId = registry_.service("dsr")->id;
  auto ring = [&](ServiceId id) {
    std::set<std::string> out;
    for (const auto& a : dp_.ringTargets(id)) out.insert(a ? a->toString() : "invalid");
    return out;
  };

  api::RealAddRequest add = realAdd("dsr", "10.0.1.8");
  r = backend_->addReal(add);
  ASSERT_TRUE(r.isOk()) << r.error().message;
  const std::string pending = "l2dsr: 10.0.1.8 not in the neighbour table of eth0";
  // The answer says so too (keelctl prints it as a warning).
  EXPECT_EQ(r.result()["warnings"],
            nlohmann::json::array({pending + ": held down until keeld finds it (keelctl health show)"}));
  nlohmann::json h = healthOf("dsr", "10.0.1.8");
  EXPECT_EQ(h["state"], "down");
  EXPECT_EQ(h["reason"], pending);
  EXPECT_EQ(h["detail"], pending);
  EXPECT_FALSE(backend_->findService("dsr")->reals[1].mac);
  EXPECT_EQ(ring(dsrId), std::set<std::string>{"10.0.1.7"});
  // keel.yaml with the same real passes too, with a warning in the same words.
  ConfigOptions hostChecks;
  hostChecks.resolveMac = resolver();
  ConfigResult file = parseConfig(files_["keel.yaml"] +
                                      "  - name: dsr\n    vip: 10.0.0.7\n    port: 80\n    protocol: tcp\n"
                                      "    forwarding: l2dsr\n    reals:\n      - {address: 10.0.1.8}\n",
                                  "keel.yaml", hostChecks);
  ASSERT_TRUE(file.ok()) << file.errors.front();
  ASSERT_EQ(file.warnings.size(), 1u);
  EXPECT_EQ(file.warnings[0],
            "keel.yaml:17: services[1].reals[0].address: l2dsr real 10.0.1.8 of service dsr has no mac and is not "
            "in the neighbour table of eth0 (not reachable on-link?): held down until keeld finds it there; give "
            "its mac (mac: in keel.yaml, --mac in keelctl) or, if it is on-link, ping it from this host so the "
            "table has it");
  EXPECT_EQ(file.config->services[1].reals[0].macPending, pending);
  // config.check (keelctl config check) passes it with the same warning,
  // and says the reload would give up the service keelctl added as dsr.
  backend_->setCheckOptions(hostChecks);
  api::Result checked = backend_->checkConfig(files_["keel.yaml"] +
                                                  "  - name: dsr\n    vip: 10.0.0.7\n    port: 80\n    protocol: "
                                                  "tcp\n    forwarding: l2dsr\n    reals:\n      - {address: "
                                                  "10.0.1.8}\n",
                                              "keel.yaml");
  ASSERT_TRUE(checked.isOk()) << checked.error().message;
  EXPECT_EQ(checked.result()["warnings"],
            nlohmann::json::array({file.warnings[0], "service dsr: its added service made with keelctl would be "
                                                     "given up by a reload: the file now defines service dsr"}));

  // Looked up again while it waits; removed, it is asked for no more.
  resolved_.clear();
  EXPECT_EQ(backend_->resolvePendingMacs(), 0u);
  EXPECT_EQ(resolved_, std::vector<std::string>{"10.0.1.8@eth0"});
  ASSERT_TRUE(backend_->removeReal({"dsr", ip("10.0.1.8")}).isOk());
  resolved_.clear();
  EXPECT_EQ(backend_->resolvePendingMacs(), 0u);
  EXPECT_TRUE(resolved_.empty());

  // service.add with it: the service is added, the real held down, and
  // found later in the service the request made.
  svc.name = "dsr2";
  svc.vip = ip("10.0.0.8");
  svc.reals[0].address = ip("10.0.1.8");
  r = backend_->addService(svc);
  ASSERT_TRUE(r.isOk()) << r.error().message;
  EXPECT_EQ(r.result()["warnings"].size(), 1u) << r.result().dump();
  EXPECT_EQ(healthOf("dsr2", "10.0.1.8")["reason"], pending);
  const ServiceId dsr2Id = registry_.service("dsr2")->id;
  EXPECT_TRUE(ring(dsr2Id).empty());
  neighbours_["10.0.1.8"] = "02:00:00:00:00:08";
  EXPECT_EQ(backend_->resolvePendingMacs(), 1u);
  EXPECT_EQ(ring(dsr2Id), std::set<std::string>{"10.0.1.8"});
  EXPECT_EQ(backend_->findService("dsr2")->reals[0].mac->toString(), "02:00:00:00:00:08");
  EXPECT_EQ(dp_.backends.at(registry_.service("dsr2")->reals[0].backendId).mac[5], 0x08);

  // A given mac is used as is, without asking the neighbour table.
  resolved_.clear();
  add.real.mac = MacAddress::parse("02:00:00:00:00:09");
  ASSERT_TRUE(backend_->addReal(add).isOk());
  EXPECT_TRUE(resolved_.empty());
  EXPECT_EQ(backend_->findService("dsr")->reals.size(), 2u);
}

// An l2dsr real of keel.yaml that is not in the neighbour table (off, cable
// out, not on-link yet) no longer refuses the file: keeld starts with it
// held down (out of the ring, no checks), its reason the table's words, and
// once a retry finds it, it takes the MAC and comes in as a new real does:
// an unchecked one at once.
TEST_F(DaemonBackendTest, AnL2dsrRealNotInTheNeighbourTableStartsDownAndComesInOnceFound) {
  hostChecks_ = true;
  neighbours_["10.0.1.1"] = "02:00:00:00:01:01";
  files_["keel.yaml"] = l2dsr(yaml(kTwo));
  make();
  ASSERT_TRUE(backend_->findService("web"));
  EXPECT_EQ(ringAddresses(), std::set<std::string>{"10.0.1.1"});
  api::RealSnapshot off = realOf("10.0.1.2");
  EXPECT_FALSE(off.healthy);
  EXPECT_FALSE(off.mac);
  EXPECT_EQ(off.state(), "down");
  EXPECT_EQ(off.changeReason, "l2dsr: 10.0.1.2 not in the neighbour table of eth0");
  EXPECT_TRUE(off.lastChange);
  EXPECT_FALSE(dp_.backends.at(idOf("10.0.1.2")).flags & KEEL_BE_F_VALID);

  // A retry asks for it alone; not there yet, nothing changes.
  resolved_.clear();
  dp_.calls.clear();
  EXPECT_EQ(backend_->resolvePendingMacs(), 0u);
  EXPECT_EQ(resolved_, std::vector<std::string>{"10.0.1.2@eth0"});
  EXPECT_TRUE(dp_.calls.empty());

  neighbours_["10.0.1.2"] = "02:00:00:00:01:02";
  EXPECT_EQ(backend_->resolvePendingMacs(), 1u);
  EXPECT_EQ(ringAddresses(), (std::set<std::string>{"10.0.1.1", "10.0.1.2"}));
  ASSERT_TRUE(realOf("10.0.1.2").mac);
  EXPECT_EQ(realOf("10.0.1.2").mac->toString(), "02:00:00:00:01:02");
  EXPECT_EQ(dp_.backends.at(idOf("10.0.1.2")).mac[5], 0x02);
  EXPECT_EQ(realOf("10.0.1.2").changeReason, "added up");
  // Nothing waits: no table read.
  resolved_.clear();
  EXPECT_EQ(backend_->resolvePendingMacs(), 0u);
  EXPECT_TRUE(resolved_.empty());
}

// A MAC change the data plane refuses (a full map) is not tried again every
// 2 s forever: each failure in a row doubles the wait, up to
// kMacRetryMaxInterval, and a commit that works ends it (review_changes L2).
TEST_F(DaemonBackendTest, AMacChangeTheDataplaneRefusesIsTriedLessOften) {
  hostChecks_ = true;
  neighbours_["10.0.1.1"] = "02:00:00:00:01:01";
  files_["keel.yaml"] = l2dsr(yaml("      - {address: 10.0.1.1}\n"));
  make();
  EXPECT_EQ(backend_->macRetryInterval(), DaemonBackend::kMacRetryInterval);
  neighbours_["10.0.1.1"] = "02:00:00:00:02:01";
  std::vector<long> waits;
  for (int i = 0; i < 7; ++i) {
    EXPECT_EQ(backend_->refreshTableMacs(), 0u) << "the first read of the new MAC";
    dp_.failAfter = 1;
    EXPECT_EQ(backend_->refreshTableMacs(), 0u) << "the second: the change, refused";
    EXPECT_EQ(dp_.failAfter, 0) << "the data plane was not written";
    EXPECT_EQ(realOf("10.0.1.1").mac->toString(), "02:00:00:00:01:01");
    waits.push_back(static_cast<long>(backend_->macRetryInterval().count()));
  }
  EXPECT_EQ(waits, (std::vector<long>{4, 8, 16, 32, 64, 64, 64}));
  EXPECT_EQ(backend_->refreshTableMacs(), 0u);
  EXPECT_EQ(backend_->refreshTableMacs(), 1u) << "taken once the data plane takes it";
  EXPECT_EQ(realOf("10.0.1.1").mac->toString(), "02:00:00:00:02:01");
  EXPECT_EQ(backend_->macRetryInterval(), DaemonBackend::kMacRetryInterval);

  // The timer's own tick arms the next one that much later: 4 s after a
  // refused change (the armed deadline, not a measured time).
  neighbours_["10.0.1.1"] = "02:00:00:00:03:01";
  backend_->macTick();  // the first read of the new MAC
  dp_.failAfter = 1;
  const auto before = std::chrono::steady_clock::now();
  backend_->macTick();  // the change, refused
  EXPECT_EQ(dp_.failAfter, 0);
  const std::optional<std::chrono::steady_clock::time_point> due = backend_->macRetryDue();
  ASSERT_TRUE(due);
  EXPECT_GE(*due, before + 2 * DaemonBackend::kMacRetryInterval);
  EXPECT_EQ(backend_->macRetryInterval(), 2 * DaemonBackend::kMacRetryInterval);
}

// A tick whose two commits are both refused (a waiting real found and a
// table MAC changed, in one read) counts as one failure in a row, as a
// tick with one refused commit does: the wait doubles once, not twice.
TEST_F(DaemonBackendTest, ATickWhoseTwoCommitsAreRefusedIsOneFailure) {
  hostChecks_ = true;
  neighbours_["10.0.1.1"] = "02:00:00:00:01:01";
  files_["keel.yaml"] = l2dsr(yaml(kTwo));  // 10.0.1.2 waits for its MAC
  make();
  ASSERT_EQ(realOf("10.0.1.2").state(), "down");
  neighbours_["10.0.1.1"] = "02:00:00:00:02:01";
  backend_->macTick();  // the first read of 10.0.1.1's new MAC; 10.0.1.2 still missing
  EXPECT_EQ(backend_->macRetryInterval(), DaemonBackend::kMacRetryInterval);
  neighbours_["10.0.1.2"] = "02:00:00:00:01:02";
  dp_.failAll = true;
  backend_->macTick();  // both found, both commits refused
  dp_.failAll = false;
  EXPECT_FALSE(realOf("10.0.1.2").mac) << "the found real's commit was refused";
  EXPECT_EQ(realOf("10.0.1.1").mac->toString(), "02:00:00:00:01:01") << "the change was refused";
  EXPECT_EQ(backend_->macRetryInterval(), 2 * DaemonBackend::kMacRetryInterval);
  backend_->macTick();  // the found real taken; the change read once more
  EXPECT_EQ(realOf("10.0.1.2").mac->toString(), "02:00:00:00:01:02");
  backend_->macTick();  // and taken
  EXPECT_EQ(realOf("10.0.1.1").mac->toString(), "02:00:00:00:02:01");
  EXPECT_EQ(backend_->macRetryInterval(), DaemonBackend::kMacRetryInterval);
}

// An l2dsr real whose MAC the table gave follows the table: when its entry
// names another unicast MAC (a NIC swapped, a VM moved), the refresh gives
// the real that MAC at the same backend (same id and generation: its flows
// stay) and keeps its drain; an entry gone, or a group MAC, changes
// nothing, and a file's own `mac:` is never read again. A reload keeps the
// new MAC.
TEST_F(DaemonBackendTest, AnL2dsrRealFollowsItsNeighbourEntrysNewMac) {
  hostChecks_ = true;
  neighbours_["10.0.1.1"] = "02:00:00:00:01:01";
  neighbours_["10.0.1.2"] = "02:00:00:00:01:02";
  files_["keel.yaml"] = l2dsr(yaml("      - {address: 10.0.1.1}\n"
                                   "      - {address: 10.0.1.2, mac: \"02:00:00:00:0f:02\"}\n"));
  make();
  ASSERT_TRUE(backend_->setRealDrain({{"web", ip("10.0.1.1")}, true, "maintenance"}).isOk());
  const BackendId id = idOf("10.0.1.1");
  const uint32_t gen = dp_.backends.at(id).gen;
  resolved_.clear();
  EXPECT_EQ(backend_->refreshTableMacs(), 0u) << "the table says what keel sends to";
  EXPECT_EQ(resolved_, std::vector<std::string>{"10.0.1.1@eth0"}) << "the file's mac: is not read";

  neighbours_["10.0.1.1"] = "02:00:00:00:02:01";
  neighbours_["10.0.1.2"] = "02:00:00:00:02:02";
  EXPECT_EQ(backend_->refreshTableMacs(), 0u) << "one read names it: not yet";
  EXPECT_EQ(realOf("10.0.1.1").mac->toString(), "02:00:00:00:01:01");
  neighbours_["10.0.1.1"] = "02:00:00:00:04:01";  // a flap: another MAC on the next read
  EXPECT_EQ(backend_->refreshTableMacs(), 0u);
  neighbours_["10.0.1.1"] = "02:00:00:00:02:01";
  EXPECT_EQ(backend_->refreshTableMacs(), 0u);
  EXPECT_EQ(backend_->refreshTableMacs(), 1u) << "two reads in a row name it";
  ASSERT_TRUE(realOf("10.0.1.1").mac);
  EXPECT_EQ(realOf("10.0.1.1").mac->toString(), "02:00:00:00:02:01");
  EXPECT_EQ(idOf("10.0.1.1"), id);
  EXPECT_EQ(dp_.backends.at(id).gen, gen) << "the same backend: its flows stay";
  EXPECT_EQ(dp_.backends.at(id).mac[4], 0x02);
  EXPECT_TRUE(realOf("10.0.1.1").draining);
  EXPECT_EQ(realOf("10.0.1.2").mac->toString(), "02:00:00:00:0f:02") << "the file's mac: stays";

  neighbours_.erase("10.0.1.1");  // aged out: no change
  EXPECT_EQ(backend_->refreshTableMacs(), 0u);
  EXPECT_EQ(backend_->refreshTableMacs(), 0u);
  neighbours_["10.0.1.1"] = "01:00:5e:00:00:01";  // a group MAC: no change
  EXPECT_EQ(backend_->refreshTableMacs(), 0u);
  EXPECT_EQ(backend_->refreshTableMacs(), 0u);
  EXPECT_EQ(realOf("10.0.1.1").mac->toString(), "02:00:00:00:02:01");
  neighbours_.erase("10.0.1.1");
  ASSERT_TRUE(backend_->reload().isOk());
  EXPECT_EQ(realOf("10.0.1.1").mac->toString(), "02:00:00:00:02:01") << "a reload keeps the MAC found";
  EXPECT_TRUE(realOf("10.0.1.1").draining);
  // keeld's loop does it on the MAC retries' timer, which runs while a
  // real has a MAC from the table (none waits here). Bounded: one interval
  // is 2 s.
  backend_->setMacRefreshResolver(quietResolver());
  neighbours_["10.0.1.1"] = "02:00:00:00:03:01";
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  while (realOf("10.0.1.1").mac->toString() != "02:00:00:00:03:01" && std::chrono::steady_clock::now() < deadline)
    io_.run_one_for(std::chrono::milliseconds(200));
  EXPECT_EQ(realOf("10.0.1.1").mac->toString(), "02:00:00:00:03:01");
  // A real removed with keelctl is not running: its entry is not followed.
  ASSERT_TRUE(backend_->removeReal({"web", ip("10.0.1.1")}).isOk());
  neighbours_["10.0.1.1"] = "02:00:00:00:05:01";
  EXPECT_EQ(backend_->refreshTableMacs(), 0u);
  EXPECT_EQ(backend_->refreshTableMacs(), 0u);
}

// A restart that adopts the running plane: an l2dsr real whose neighbour
// entry aged out while keeld was away keeps the MAC the plane forwards to,
// up and in the ring at the same id, instead of going down until a retry
// finds it; without adoption it is held down as above.
TEST_F(DaemonBackendTest, AnAdoptedL2dsrRealKeepsThePlanesMacWhenTheNeighbourTableLostIt) {
  hostChecks_ = true;
  neighbours_["10.0.1.1"] = "02:00:00:00:01:01";
  neighbours_["10.0.1.2"] = "02:00:00:00:01:02";
  files_["keel.yaml"] = l2dsr(yaml(kTwo));
  make();
  const ProgrammedState pinned = dp_.programmed();
  const BackendId id = idOf("10.0.1.2");
  const uint32_t gen = dp_.backends[id].gen;
  neighbours_.erase("10.0.1.2");  // aged out meanwhile

  MockDataplane dp2;
  takePins(dp2, dp_);
  Registry registry2(dp2);
  boost::asio::io_context io2;
  test::LogCapture log;
  auto backend2 = started(io2, registry2, &pinned);
  EXPECT_TRUE(dp2.backends[id].flags & KEEL_BE_F_VALID);
  EXPECT_EQ(dp2.backends[id].gen, gen);
  EXPECT_EQ(dp2.backends[id].mac[5], 0x02);
  EXPECT_EQ(dp2.rings[0], dp_.rings[0]);
  auto snap = backend2->findService("web");
  ASSERT_TRUE(snap);
  for (const auto& real : snap->reals) {
    EXPECT_EQ(real.state(), "up") << real.address.toString();
    ASSERT_TRUE(real.mac);
  }
  EXPECT_EQ(log.take("real_mac_kept_from_plane").size(), 1u);
  resolved_.clear();
  EXPECT_EQ(backend2->resolvePendingMacs(), 0u);
  EXPECT_TRUE(resolved_.empty()) << "nothing waits for the table";

  // Not adopted: held down until the table has it.
  MockDataplane dp3;
  Registry registry3(dp3);
  auto backend3 = started(io2, registry3);
  auto snap3 = backend3->findService("web");
  ASSERT_TRUE(snap3);
  for (const auto& real : snap3->reals)
    EXPECT_EQ(real.state(), real.address == ip("10.0.1.1") ? "up" : "down") << real.address.toString();
}

// A checked l2dsr real whose MAC the table gave and that comes up (its
// check passes again) after its entry changed takes the entry's new MAC as
// it comes up, not 2-3 s later by the MAC timer's two reads, when its new
// flows went to the old MAC meanwhile (fault review F4). Bounded waits.
TEST_F(DaemonBackendTest, AnL2dsrRealComingUpTakesItsEntrysNewMacFirst) {
  hostChecks_ = true;
  // A port nothing listens on yet: the real's checks fail until it does.
  uint16_t port = 0;
  {
    boost::asio::ip::tcp::acceptor probe(io_, {boost::asio::ip::make_address("127.0.0.1"), 0});
    port = probe.local_endpoint().port();
  }
  neighbours_["127.0.0.1"] = "02:00:00:00:07:01";
  files_["keel.yaml"] = l2dsr(yaml("      - {address: 127.0.0.1}\n",
                                   "    health: {type: tcp, port: " + std::to_string(port) +
                                       ", interval: 100ms, timeout: 900ms, rise: 1, fall: 1}\n"));
  make();
  ASSERT_FALSE(realOf("127.0.0.1").healthy);
  neighbours_["127.0.0.1"] = "02:00:00:00:07:02";  // the real's NIC swapped while it was down
  test::LogCapture log;
  boost::asio::ip::tcp::acceptor listening(io_, {boost::asio::ip::make_address("127.0.0.1"), port});
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!realOf("127.0.0.1").healthy && std::chrono::steady_clock::now() < deadline)
    io_.run_one_for(std::chrono::milliseconds(50));
  ASSERT_TRUE(realOf("127.0.0.1").healthy);
  ASSERT_TRUE(realOf("127.0.0.1").mac);
  EXPECT_EQ(realOf("127.0.0.1").mac->toString(), "02:00:00:00:07:02") << "up with the old MAC";
  EXPECT_EQ(dp_.backends.at(idOf("127.0.0.1")).mac[5], 0x02);
  EXPECT_EQ(log.take("real_mac_changed").size(), 1u);
}

// keel.yaml giving an l2dsr real another mac: applied and said
// (real_mac_changed, info: asked for), as a table's new entry is (a
// warning); a reload that keeps it says nothing.
TEST_F(DaemonBackendTest, AFilesNewMacForAnL2dsrRealIsLogged) {
  files_["keel.yaml"] = l2dsr(yaml("      - {address: 10.0.1.1, mac: \"02:00:00:00:00:11\"}\n"));
  make();
  test::LogCapture log;
  files_["keel.yaml"] = l2dsr(yaml("      - {address: 10.0.1.1, mac: \"02:00:00:00:00:12\"}\n"));
  ASSERT_TRUE(backend_->reload().isOk());
  EXPECT_EQ(dp_.backends.at(idOf("10.0.1.1")).mac[5], 0x12);
  const std::vector<std::string> changed = log.take("real_mac_changed");
  ASSERT_EQ(changed.size(), 1u);
  EXPECT_EQ(changed[0].rfind("info ", 0), 0u) << changed[0];
  EXPECT_NE(changed[0].find("service=web real=10.0.1.1 from=02:00:00:00:00:11 mac=02:00:00:00:00:12"),
            std::string::npos)
      << changed[0];
  ASSERT_TRUE(backend_->reload().isOk());
  EXPECT_TRUE(log.take("real_mac_changed").empty());
}

// A real held down for want of a MAC that keel.yaml's mac: now gives comes
// up, and one whose mac: the file takes away with no table entry is held
// down: both are in the reload's changes (they answered "no changes").
TEST_F(DaemonBackendTest, AReloadThatGivesOrTakesAMacSaysSo) {
  hostChecks_ = true;
  files_["keel.yaml"] = l2dsr(yaml("      - {address: 10.0.1.1}\n"));  // in no table: held down
  make();
  ASSERT_FALSE(realOf("10.0.1.1").healthy);
  test::LogCapture log;
  files_["keel.yaml"] = l2dsr(yaml("      - {address: 10.0.1.1, mac: \"02:00:00:00:00:21\"}\n"));
  api::Result r = backend_->reload();
  ASSERT_TRUE(r.isOk()) << r.error().message;
  EXPECT_TRUE(realOf("10.0.1.1").healthy);
  EXPECT_EQ(r.result()["changes"],
            nlohmann::json::array({{{"change", "real_mac_changed"}, {"service", "web"}, {"real", "10.0.1.1"},
                                    {"from", ""}, {"to", "02:00:00:00:00:21"}}}))
      << r.result().dump();
  std::vector<std::string> changed = log.take("real_mac_changed");
  ASSERT_EQ(changed.size(), 1u);
  EXPECT_EQ(changed[0].rfind("info ", 0), 0u) << changed[0];

  files_["keel.yaml"] = l2dsr(yaml("      - {address: 10.0.1.1}\n"));
  r = backend_->reload();
  ASSERT_TRUE(r.isOk()) << r.error().message;
  EXPECT_FALSE(realOf("10.0.1.1").healthy);
  EXPECT_EQ(r.result()["changes"],
            nlohmann::json::array({{{"change", "real_mac_changed"}, {"service", "web"}, {"real", "10.0.1.1"},
                                    {"from", "02:00:00:00:00:21"}, {"to", ""}}}))
      << r.result().dump();
  changed = log.take("real_mac_changed");
  ASSERT_EQ(changed.size(), 1u);
  EXPECT_EQ(changed[0].rfind("warning ", 0), 0u) << changed[0];
  EXPECT_NE(changed[0].find("held down until one is found"), std::string::npos) << changed[0];
}

// A checked real found later starts its checks then, down until `rise`
// passes, as any new checked real. rise 2 with a 1m interval: its first
// check runs at once and may pass (a host whose egress accepts every TCP
// connection, as this test VM's does, answered 10.0.1.2:80 within
// milliseconds and, with rise 1, brought it up before the test looked).
TEST_F(DaemonBackendTest, ACheckedL2dsrRealFoundLaterComesUpThroughItsCheck) {
  hostChecks_ = true;
  neighbours_["10.0.1.1"] = "02:00:00:00:01:01";
  files_["keel.yaml"] = l2dsr(yaml(kTwo, "    health: {type: tcp, port: 80, interval: 1m, rise: 2}\n"));
  make();
  EXPECT_EQ(realOf("10.0.1.2").check, "tcp");
  EXPECT_EQ(backend_->checker().snapshot().size(), 1u);  // only 10.0.1.1 is checked
  neighbours_["10.0.1.2"] = "02:00:00:00:01:02";
  EXPECT_EQ(backend_->resolvePendingMacs(), 1u);
  EXPECT_EQ(backend_->checker().snapshot().size(), 2u);
  api::RealSnapshot found = realOf("10.0.1.2");
  EXPECT_FALSE(found.healthy);
  EXPECT_EQ(found.changeReason, "added down");
  ASSERT_TRUE(found.mac);
  // Its check's verdict (rise passed) brings it in.
  ASSERT_TRUE(registry_.setRealHealth("web", ip("10.0.1.2"), true));
  EXPECT_TRUE(realOf("10.0.1.2").healthy);
}

// A reload: an unresolved real it adds is held down, not a refused file; one
// still unresolved keeps being looked up; a drain given while it waited
// outlives the reload that finds its MAC (the MAC is the table's, not a
// change of the file); and one the file removes is asked for no more.
TEST_F(DaemonBackendTest, AReloadKeepsUnresolvedL2dsrRealsWaiting) {
  hostChecks_ = true;
  neighbours_["10.0.1.1"] = "02:00:00:00:01:01";
  files_["keel.yaml"] = l2dsr(yaml("      - {address: 10.0.1.1}\n"));
  make();
  files_["keel.yaml"] = l2dsr(yaml(kTwo));
  api::Result r = backend_->reload();
  ASSERT_TRUE(r.isOk()) << r.error().message;
  EXPECT_EQ(ringAddresses(), std::set<std::string>{"10.0.1.1"});
  EXPECT_EQ(realOf("10.0.1.2").changeReason, "l2dsr: 10.0.1.2 not in the neighbour table of eth0");
  ASSERT_TRUE(backend_->reload().isOk());
  resolved_.clear();
  EXPECT_EQ(backend_->resolvePendingMacs(), 0u);
  EXPECT_EQ(resolved_, std::vector<std::string>{"10.0.1.2@eth0"});

  ASSERT_TRUE(backend_->setRealDrain({{"web", ip("10.0.1.2")}, true, "rack 4 swap"}).isOk());
  neighbours_["10.0.1.2"] = "02:00:00:00:01:02";
  ASSERT_TRUE(backend_->reload().isOk());
  api::RealSnapshot found = realOf("10.0.1.2");
  ASSERT_TRUE(found.mac);
  EXPECT_TRUE(found.draining);
  EXPECT_EQ(found.drainReason, "rack 4 swap");
  EXPECT_EQ(ringAddresses(), std::set<std::string>{"10.0.1.1"});

  // A MAC once found is kept by a reload whose table read misses it, and
  // the reload's answer says nothing of it being held down.
  neighbours_.erase("10.0.1.2");
  api::Result kept = backend_->reload();
  ASSERT_TRUE(kept.isOk());
  ASSERT_TRUE(realOf("10.0.1.2").mac);
  EXPECT_EQ(realOf("10.0.1.2").mac->toString(), "02:00:00:00:01:02");
  EXPECT_FALSE(kept.result().contains("warnings")) << kept.result().dump();

  files_["keel.yaml"] = l2dsr(yaml(kTwo + "      - {address: 10.0.1.3}\n"));
  api::Result added = backend_->reload();
  ASSERT_TRUE(added.isOk());
  EXPECT_FALSE(realOf("10.0.1.3").healthy);
  // A real the reload holds down is in its answer (logged as
  // real_mac_unresolved, not again as config_warning).
  EXPECT_EQ(added.result()["warnings"],
            nlohmann::json::array({"service web: l2dsr: 10.0.1.3 not in the neighbour table of eth0: held down "
                                   "until keeld finds it (keelctl health show)"}));
  files_["keel.yaml"] = l2dsr(yaml(kTwo));
  ASSERT_TRUE(backend_->reload().isOk());
  resolved_.clear();
  EXPECT_EQ(backend_->resolvePendingMacs(), 0u);
  EXPECT_TRUE(resolved_.empty());
}

// keeld's timer does the retries, with the resolver that does not wait
// (setMacRetryResolver), not the ones a request or the start-up wait with.
TEST_F(DaemonBackendTest, UnresolvedL2dsrRealsAreRetriedOnTheLoopsTimer) {
  hostChecks_ = true;
  neighbours_["10.0.1.1"] = "02:00:00:00:01:01";
  files_["keel.yaml"] = l2dsr(yaml(kTwo));
  make();
  int retries = 0;
  MacResolver table = resolver();
  backend_->setMacRetryResolver([&](const std::vector<IpAddress>& reals, const std::string& iface) {
    ++retries;
    return table(reals, iface);
  });
  backend_->setMacRefreshResolver(quietResolver());  // 10.0.1.1's MAC, read again on the same timer
  neighbours_["10.0.1.2"] = "02:00:00:00:01:02";
  resolverCalls_ = 0;
  // Bounded: one interval is 2 s.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!realOf("10.0.1.2").mac && std::chrono::steady_clock::now() < deadline)
    io_.run_one_for(std::chrono::milliseconds(200));
  EXPECT_TRUE(realOf("10.0.1.2").mac);
  EXPECT_EQ(retries, 1);
  EXPECT_EQ(resolverCalls_, 1);  // the retry resolver's own call of the fake table
  EXPECT_EQ(ringAddresses(), (std::set<std::string>{"10.0.1.1", "10.0.1.2"}));
}

// A udp check payload over 1232 bytes to an IPv6 real: a runtime add warns
// as keel.yaml does (health review L7), and the change is made.
TEST_F(DaemonBackendTest, RuntimeAddsWarnOfAUdpPayloadOverTheIpv6MinimumMtu) {
  files_["keel.yaml"] = withTunnelSourceV6(yaml(kTwo));
  make();
  api::ServiceAddRequest svc = serviceRequest("dns", "10.0.0.53", 53, KEEL_PROTO_UDP,
                                              {{"type", "udp"}, {"payload", std::string(1300, 'x')}},
                                              {"10.0.1.53", "2001:db8:1::53"});
  api::Result r = backend_->addService(svc);
  ASSERT_TRUE(r.isOk()) << r.error().message;
  EXPECT_EQ(r.result()["warnings"],
            nlohmann::json::array({"health.payload: 1300 bytes to IPv6 real 2001:db8:1::53: over "
                                   "1232 bytes, what one datagram carries whole on a path of IPv6's minimum MTU "
                                   "(1280), so a smaller path MTU than 1348 bytes fragments the check or fails it "
                                   "(Packet Too Big)"}))
      << r.result().dump();
  api::RealAddRequest add = realAdd("dns", "2001:db8:1::54");
  r = backend_->addReal(add);
  ASSERT_TRUE(r.isOk()) << r.error().message;
  EXPECT_EQ(r.result()["warnings"].size(), 1u) << r.result().dump();
  EXPECT_EQ(backend_->findService("dns")->reals.size(), 3u);
  add.real.address = ip("10.0.1.54");
  r = backend_->addReal(add);
  ASSERT_TRUE(r.isOk()) << r.error().message;
  EXPECT_FALSE(r.result().contains("warnings")) << r.result().dump();
}

// A runtime add of an l2dsr real without a mac reads the neighbour table
// with the requests' resolver (keeld's waits at most kRequestMacWait: API
// review M1, it used to stop keeld's loop for up to 1 s), never the one the
// start-up waits with; a real missing then is held down, and its first
// retry, kMacFirstRetry later rather than kMacRetryInterval, with the
// retries' resolver, finds it once it has answered.
TEST_F(DaemonBackendTest, RuntimeAddReadsTheTableAsARequestAndIsRetriedSoon) {
  hostChecks_ = true;
  neighbours_["10.0.1.1"] = "02:00:00:00:01:01";
  neighbours_["10.0.1.2"] = "02:00:00:00:01:02";
  files_["keel.yaml"] = l2dsr(yaml(kTwo));
  make();
  int atStart = 0;
  int requests = 0;
  int retries = 0;
  MacResolver table = resolver();
  auto counting = [&table](int& calls) {
    return [&table, &calls](const std::vector<IpAddress>& reals, const std::string& iface) {
      ++calls;
      return table(reals, iface);
    };
  };
  backend_->setMacResolver(counting(atStart));
  backend_->setRequestMacResolver(counting(requests));
  backend_->setMacRetryResolver(counting(retries));
  backend_->setMacRefreshResolver(quietResolver());
  api::RealAddRequest add = realAdd("web", "10.0.1.3");
  api::Result r = backend_->addReal(add);
  ASSERT_TRUE(r.isOk()) << r.error().message;
  EXPECT_EQ(atStart, 0) << "a request read the table with the start-up's resolver";
  EXPECT_EQ(requests, 1);
  EXPECT_EQ(retries, 0);
  EXPECT_FALSE(realOf("10.0.1.3").mac);
  EXPECT_EQ(r.result()["warnings"].size(), 1u) << r.result().dump();

  // The first retry is armed kMacFirstRetry after the add, not
  // kMacRetryInterval (the timer's expiry, set from the clock at the add:
  // no measured duration).
  const std::optional<std::chrono::steady_clock::time_point> due = backend_->macRetryDue();
  ASSERT_TRUE(due);
  EXPECT_LE(*due, std::chrono::steady_clock::now() + DaemonBackend::kMacFirstRetry);
  neighbours_["10.0.1.3"] = "02:00:00:00:01:03";  // it answers late
  const auto start = std::chrono::steady_clock::now();
  while (!realOf("10.0.1.3").mac && std::chrono::steady_clock::now() < start + std::chrono::seconds(5))
    io_.run_one_for(std::chrono::milliseconds(50));
  ASSERT_TRUE(realOf("10.0.1.3").mac);
  EXPECT_EQ(realOf("10.0.1.3").mac->toString(), "02:00:00:00:01:03");
  EXPECT_EQ(retries, 1);
  EXPECT_EQ(requests, 1);
  EXPECT_EQ(atStart, 0);
}

// A second keeld over the same files and state file (optionally adopting
// what the first one programmed, as an XDP restart does).
struct Keeld {
  explicit Keeld(DataplaneLimits limits = {}) : dp(limits) {}
  MockDataplane dp;
  Registry registry{dp};
  boost::asio::io_context io;
  std::unique_ptr<DaemonBackend> backend;

  std::optional<api::RealSnapshot> real(const char* svc, const char* addr) {
    auto s = backend->findService(svc);
    if (s)
      for (const auto& r : s->reals)
        if (r.address == ip(addr)) return r;
    return std::nullopt;
  }
};

class RuntimeStateTest : public DaemonBackendTest {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/keel-state-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    statePath_ = dir_ + "/runtime-eth0.json";
    appliedPath_ = dir_ + "/applied-eth0.yaml";
    files_["keel.yaml"] = yaml(kTwo) + kApi;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::unique_ptr<Keeld> restart(const MockDataplane* adoptFrom = nullptr) {
    auto k = std::make_unique<Keeld>();
    std::optional<ProgrammedState> pinned;
    if (adoptFrom) {
      takePins(k->dp, *adoptFrom);
      pinned = adoptFrom->programmed();
    }
    k->backend = started(k->io, k->registry, pinned ? &*pinned : nullptr);
    return k;
  }

  // Every kind of runtime change, on file and runtime services and reals.
  void changeEverything() {
    api::ServiceAddRequest dns;
    dns.name = "dns";
    dns.vip = ip("10.0.0.53");
    dns.port = 53;
    dns.protocol = KEEL_PROTO_UDP;
    dns.health = {{"type", "udp"}, {"interval", "100ms"}, {"rise", 1}, {"fall", 1}};
    dns.reals.push_back(api::RealSpec{ip("10.0.3.1"), 5, std::nullopt, nullptr});
    dns.reals.push_back(api::RealSpec{ip("10.0.3.2"), 100, std::nullopt, nullptr});
    ASSERT_TRUE(backend_->addService(dns).isOk());
    api::RealAddRequest add = realAdd("web", "10.0.1.9");
    add.real.weight = 10;
    add.real.health = {{"type", "tcp"}, {"port", 9}};
    ASSERT_TRUE(backend_->addReal(add).isOk());
    ASSERT_TRUE(backend_->removeReal({"web", ip("10.0.1.2")}).isOk());
    ASSERT_TRUE(backend_->removeService("api").isOk());
    ASSERT_TRUE(backend_->setRealDrain({{"web", ip("10.0.1.1")}, true, ""}).isOk());
    ASSERT_TRUE(backend_->setRealWeight({{"dns", ip("10.0.3.2")}, 7}).isOk());
  }

  // check(keeld, its log) after a start that adopts `before`'s plane and
  // after one with a new plane, each finding the applied text the test's
  // keeld left (each start saves its own over it).
  template <typename Check>
  void eachRestartFromTheAppliedText(const MockDataplane& before, Check&& check) {
    const std::string appliedBefore = dir_ + "/applied-before.yaml";
    std::filesystem::copy_file(appliedPath_, appliedBefore, std::filesystem::copy_options::overwrite_existing);
    for (bool adopt : {true, false}) {
      SCOPED_TRACE(adopt ? "adopting the plane" : "a new plane");
      std::filesystem::copy_file(appliedBefore, appliedPath_, std::filesystem::copy_options::overwrite_existing);
      test::LogCapture log;
      auto k = adopt ? restart(&before) : restart();
      ASSERT_TRUE(k->backend);
      check(*k, log);
    }
  }

  nlohmann::json readState() {
    std::ifstream in(statePath_);
    return nlohmann::json::parse(in);
  }
  void writeState(const std::string& text) { std::ofstream(statePath_) << text; }
  // A file's bytes ("" if it cannot be read).
  static std::string fileText(const std::string& path) {
    std::ifstream in(path);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  // The state files set aside as .bad-STAMP in the state directory.
  std::vector<std::string> setAside() const {
    std::vector<std::string> aside;
    for (const auto& e : std::filesystem::directory_iterator(dir_))
      if (e.path().filename().string().rfind("runtime-eth0.json.bad-", 0) == 0) aside.push_back(e.path().string());
    return aside;
  }
  // Limits whose max_reals holds the reals programmed now (the file's, before
  // a keelctl addition) and no more.
  DataplaneLimits limitsForTheRealsNow() const {
    size_t reals = 0;
    for (const ServiceView& v : registry_.services()) reals += v.reals.size();
    DataplaneLimits limits;
    limits.maxBackends = static_cast<uint32_t>(reals);
    return limits;
  }
  // Whether keeld `k` programmed the real of service web VALID.
  static bool validOf(Keeld& k, const char* addr) {
    const std::optional<ServiceView> web = k.registry.service("web");
    for (const RealView& r : web->reals)
      if (r.address == ip(addr)) return (k.dp.backends[r.backendId].flags & KEEL_BE_F_VALID) != 0;
    return false;
  }

  static constexpr const char* kApi =
      "  - name: api\n"
      "    vip: 10.0.0.1\n"
      "    port: 81\n"
      "    protocol: tcp\n"
      "    reals:\n"
      "      - {address: 10.0.2.1}\n";
  std::string dir_;
};

// A weight set back to the file's own is no runtime change any more: the
// state file keeps nothing for it (scale review: it kept "weight 100").
TEST_F(RuntimeStateTest, AWeightSetBackToTheFilesIsNoRuntimeChange) {
  make();
  api::RealWeightRequest w;
  w.real = {"web", ip("10.0.1.1")};
  w.weight = 50;
  ASSERT_TRUE(backend_->setRealWeight(w).isOk());
  EXPECT_EQ(readState()["reals"].size(), 1u) << readState();
  w.weight = 100;  // yaml(kTwo)'s
  ASSERT_TRUE(backend_->setRealWeight(w).isOk());
  EXPECT_TRUE(readState()["reals"].empty()) << readState();
  EXPECT_EQ(backend_->findService("web")->reals[0].weight, 100u);
}

TEST_F(RuntimeStateTest, ARestartKeepsTheWholeOverlayAndMovesNoFlow) {
  make();
  changeEverything();
  // The checker would bring the checked reals up; the adopted keeld must
  // then hold the same ids, generations and rings.
  for (const char* a : {"10.0.3.1", "10.0.3.2"}) ASSERT_TRUE(registry_.setRealHealth("dns", ip(a), true));
  ASSERT_TRUE(registry_.setRealHealth("web", ip("10.0.1.9"), true));
  EXPECT_EQ(readState()["version"], 2);
  const MockDataplane before = dp_;
  backend_.reset();

  auto k = restart(&before);
  ASSERT_TRUE(k->backend->findService("dns"));
  EXPECT_EQ(k->backend->findService("dns")->protocol, KEEL_PROTO_UDP);
  EXPECT_EQ(k->real("dns", "10.0.3.1")->weight, 5u);
  EXPECT_EQ(k->real("dns", "10.0.3.1")->check, "udp");
  EXPECT_EQ(k->real("dns", "10.0.3.2")->weight, 7u);
  EXPECT_TRUE(k->real("dns", "10.0.3.2")->healthy);
  ASSERT_TRUE(k->real("web", "10.0.1.9"));
  EXPECT_EQ(k->real("web", "10.0.1.9")->weight, 10u);
  EXPECT_EQ(k->real("web", "10.0.1.9")->check, "tcp");
  EXPECT_FALSE(k->real("web", "10.0.1.2"));
  EXPECT_TRUE(k->real("web", "10.0.1.1")->draining);
  EXPECT_FALSE(k->backend->findService("api"));
  EXPECT_EQ(k->dp.rings, before.rings);
  for (const auto& [id, be] : before.backends) {
    if (!(be.flags & KEEL_BE_F_VALID)) continue;
    EXPECT_EQ(k->dp.backends[id].gen, be.gen) << id;
    EXPECT_TRUE(k->dp.backends[id].flags & KEEL_BE_F_VALID) << id;
  }

  // The restarted keeld saves the same overlay again: a second restart
  // (fresh data plane) still has it.
  k.reset();
  k = restart();
  EXPECT_TRUE(k->real("dns", "10.0.3.2"));
  EXPECT_TRUE(k->real("web", "10.0.1.9"));
  EXPECT_FALSE(k->real("web", "10.0.1.2"));
  EXPECT_FALSE(k->backend->findService("api"));
}

// keel.yaml edited while no keeld ran (a stop, an upgrade): the next keeld's
// start says so and what changed in the services it keeps and in the node,
// with a reload's records, whether it adopts the plane or starts a new one
// (before, an adopting start logged nothing of such changes: the pins hold
// no weights or checks). The state file keeps the text applied, also after
// a reload; a restart with the same file says nothing.
TEST_F(RuntimeStateTest, ARestartSaysWhatKeelYamlChangedWhileNoKeeldRan) {
  auto applied = [&] { return fileText(appliedPath_); };
  make();
  EXPECT_EQ(applied(), files_["keel.yaml"]);
  files_["keel.yaml"] = yaml(kTwo + "      - {address: 10.0.1.3, weight: 100}\n") + kApi;
  ASSERT_TRUE(backend_->reload().isOk());
  EXPECT_EQ(applied(), files_["keel.yaml"]);
  const std::string running = files_["keel.yaml"];
  // A refused reload (the file) or one the data plane fails leaves the text running.
  files_["keel.yaml"] = yaml("      - {address: 10.0.1.1, weight: abc}\n");
  ASSERT_FALSE(backend_->reload().isOk());
  files_["keel.yaml"] = yaml(kTwo) + kApi;
  dp_.failAfter = 1;
  ASSERT_FALSE(backend_->reload().isOk());
  EXPECT_EQ(applied(), running);
  files_["keel.yaml"] = running;
  const MockDataplane before = dp_;
  backend_.reset();

  // Edited while no keeld runs: a weight, every real's check, the node, a
  // scheduler, and the second service renamed (same VIP, port, protocol).
  std::string edited = yaml("      - {address: 10.0.1.1, weight: 50}\n"
                            "      - {address: 10.0.1.2, weight: 100}\n"
                            "      - {address: 10.0.1.3, weight: 100}\n",
                            "    health: {type: tcp, interval: 3s}\n") +
                       kApi;
  edited.replace(edited.find("tunnel_source_v4"), 0, "icmp_too_big_rate: 50, ");
  edited.replace(edited.find("    port: 81"), 0, "    scheduler: maglev-src\n");
  edited.replace(edited.find("name: api"), 9, "name: api2");
  files_["keel.yaml"] = edited;
  planeMac_ = "02:00:00:00:00:aa";
  eachRestartFromTheAppliedText(before, [&](Keeld&, test::LogCapture& log) {
    const std::vector<std::string> head = log.take("config_changed_while_stopped");
    ASSERT_EQ(head.size(), 1u);
    EXPECT_NE(head[0].find("config=keel.yaml applied_before=" + appliedPath_), std::string::npos) << head[0];
    const std::vector<std::string> weight = log.take("real_weight_changed");
    ASSERT_EQ(weight.size(), 1u);
    EXPECT_NE(weight[0].find("service=web real=10.0.1.1 from=100 to=50"), std::string::npos) << weight[0];
    const std::vector<std::string> checks = log.take("health_check_changed");
    ASSERT_EQ(checks.size(), 1u);
    EXPECT_NE(checks[0].find("service=web reals=3 changed=type,interval,"), std::string::npos) << checks[0];
    EXPECT_NE(checks[0].find(" type_from=none type_to=tcp interval_from=\"\" interval_to=3s "), std::string::npos)
        << checks[0];
    const std::vector<std::string> svc = log.take("service_updated");
    ASSERT_EQ(svc.size(), 2u);
    EXPECT_NE(svc[0].find("service=api2 changed=name name_from=api name_to=api2"), std::string::npos) << svc[0];
    EXPECT_NE(svc[1].find("service=api2 changed=scheduler scheduler_from=maglev scheduler_to=maglev-src"),
              std::string::npos)
        << svc[1];
    const std::vector<std::string> node = log.take("node_updated");
    ASSERT_EQ(node.size(), 1u);
    EXPECT_NE(node[0].find("changed=icmp_too_big_rate icmp_too_big_rate_from="), std::string::npos) << node[0];
    EXPECT_EQ(applied(), edited);
  });
  // The file the last start applied: nothing changed since, nothing said.
  test::LogCapture log;
  auto k = restart(&before);
  EXPECT_TRUE(log.take("config_changed_while_stopped").empty());
  EXPECT_TRUE(log.take("real_weight_changed").empty());
  // A text the keeld cannot read as a config: said, nothing compared.
  k.reset();
  { std::ofstream(appliedPath_, std::ios::trunc) << "services: [\n"; }
  test::LogCapture log2;
  k = restart(&before);
  const std::vector<std::string> head = log2.take("config_changed_while_stopped");
  ASSERT_EQ(head.size(), 1u);
  EXPECT_NE(head[0].find("cannot read to compare"), std::string::npos) << head[0];
  EXPECT_TRUE(log2.take("real_weight_changed").empty());
}

// A start that does not forward (keeld: DPDK's workers did not start)
// neither says what keel.yaml changed nor saves its text: the next start
// compares with the text the last keeld that forwarded applied. A start
// whose text is the one saved leaves the file as it is.
TEST_F(RuntimeStateTest, OnlyAStartThatForwardsSavesItsTextAndSaysWhatChanged) {
  auto fileId = [&] {
    struct stat st {};
    EXPECT_EQ(::stat(appliedPath_.c_str(), &st), 0) << appliedPath_;
    return std::pair(st.st_ino, st.st_mtim.tv_nsec + st.st_mtim.tv_sec * 1000000000ll);
  };
  make();
  const std::string first = files_["keel.yaml"];
  const auto firstId = fileId();
  const MockDataplane before = dp_;
  backend_->saveAtStop();  // a clean stop: the state file has its stop record
  backend_.reset();
  auto stateText = [&] { return fileText(statePath_); };
  const std::string stateAtStop = stateText();
  ASSERT_NE(stateAtStop.find("\"stopped\""), std::string::npos) << stateAtStop;
  files_["keel.yaml"] = yaml("      - {address: 10.0.1.1, weight: 50}\n      - {address: 10.0.1.2, weight: 100}\n") + kApi;

  int forwards = 0;
  forward_ = [&] {
    ++forwards;
    return Status::error("port did not start");
  };
  {
    test::LogCapture log;
    auto k = restart(&before);
    EXPECT_EQ(forwards, 1);
    EXPECT_FALSE(startStatus_);
    EXPECT_EQ(startStatus_.message(), "port did not start");
    EXPECT_TRUE(log.take("config_changed_while_stopped").empty());
    EXPECT_TRUE(log.take("real_weight_changed").empty());
    std::ifstream in(appliedPath_);
    EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), {}), first);
    EXPECT_EQ(fileId(), firstId);
    // The state file as the start found it, stop record and all (its
    // commit had saved over it).
    EXPECT_EQ(stateText(), stateAtStop);
  }
  forward_ = [&] {
    ++forwards;
    return Status::ok();
  };
  {
    test::LogCapture log;
    auto k = restart(&before);
    EXPECT_EQ(forwards, 2);
    EXPECT_TRUE(startStatus_) << startStatus_.message();
    EXPECT_EQ(log.take("config_changed_while_stopped").size(), 1u);
    const std::vector<std::string> weight = log.take("real_weight_changed");
    ASSERT_EQ(weight.size(), 1u);
    EXPECT_NE(weight[0].find("service=web real=10.0.1.1 from=100 to=50"), std::string::npos) << weight[0];
    std::ifstream in(appliedPath_);
    EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), {}), files_["keel.yaml"]);
  }
  // The same text again: not rewritten (neither the file nor its time change).
  const auto savedId = fileId();
  EXPECT_NE(savedId, firstId);
  test::LogCapture log;
  auto k = restart(&before);
  EXPECT_TRUE(startStatus_) << startStatus_.message();
  EXPECT_TRUE(log.take("config_changed_while_stopped").empty());
  EXPECT_EQ(fileId(), savedId);
}

// An l2dsr real's mac: changed while no keeld ran, in a service renamed
// meanwhile (the same VIP, port and protocol): the start's comparison says
// so under the new name, as it matches services (it matched the MACs by
// name, and said nothing).
TEST_F(RuntimeStateTest, ARestartSaysWhatMacARenamedServiceGaveARealWhileNoKeeldRan) {
  files_["keel.yaml"] = l2dsr(yaml("      - {address: 10.0.1.1, mac: \"02:00:00:00:00:11\"}\n"));
  make();
  const MockDataplane before = dp_;
  backend_.reset();
  std::string edited = l2dsr(yaml("      - {address: 10.0.1.1, mac: \"02:00:00:00:00:12\"}\n"));
  edited.replace(edited.find("name: web"), 9, "name: web2");
  files_["keel.yaml"] = edited;
  eachRestartFromTheAppliedText(before, [&](Keeld&, test::LogCapture& log) {
    EXPECT_EQ(log.take("config_changed_while_stopped").size(), 1u);
    const std::vector<std::string> changed = log.take("real_mac_changed");
    ASSERT_EQ(changed.size(), 1u);
    EXPECT_NE(changed[0].find("service=web2 real=10.0.1.1 from=02:00:00:00:00:11 mac=02:00:00:00:00:12"),
              std::string::npos)
        << changed[0];
  });
}

// A file service removed at runtime may be replaced at runtime, under its
// name or on its VIP: the replacement stands while the removal does, through
// a reload of the unchanged file and a restart (each used to drop the
// replacement as "the file now defines service api" and keep the removal:
// no service at all). A file that changes the removed service ends both.
TEST_F(RuntimeStateTest, AReplacedFileServiceStaysReplacedThroughAReloadAndARestart) {
  make();
  ASSERT_TRUE(backend_->removeService("api").isOk());
  auto add = [&](const char* name, const char* vip, const char* real) {
    api::ServiceAddRequest req;  // TCP port 81, as the file's api
    req.name = name;
    req.vip = ip(vip);
    req.port = 81;
    req.protocol = KEEL_PROTO_TCP;
    req.reals.push_back(api::RealSpec{ip(real), 100, std::nullopt, nullptr});
    return backend_->addService(req).isOk();
  };
  ASSERT_TRUE(add("api", "10.0.0.80", "10.0.2.8"));   // its name, another VIP
  ASSERT_TRUE(add("api2", "10.0.0.1", "10.0.2.9"));   // another name, its VIP and port
  auto check = [](DaemonBackend& b, const char* when) {
    auto api = b.findService("api");
    ASSERT_TRUE(api) << when;
    EXPECT_EQ(api->vip, ip("10.0.0.80")) << when;
    ASSERT_TRUE(b.findService("api2")) << when;
    EXPECT_EQ(b.findService("api2")->vip, ip("10.0.0.1")) << when;
  };
  check(*backend_, "as added");
  ASSERT_TRUE(backend_->reload().isOk());
  check(*backend_, "after a reload of the unchanged file");
  const MockDataplane before = dp_;
  backend_.reset();
  auto k = restart(&before);
  check(*k->backend, "after a restart");
  // The file changes api: its removal ends, and both replacements go.
  k.reset();
  files_["keel.yaml"] = yaml(kTwo) + std::string(kApi) + "    scheduler: maglev-src\n";
  k = restart();
  ASSERT_TRUE(k->backend->findService("api"));
  EXPECT_EQ(k->backend->findService("api")->vip, ip("10.0.0.1"));
  EXPECT_FALSE(k->backend->findService("api2"));
}

// A request an older keeld accepted with a health value of another JSON
// type ("port": "8080", read by its text then) is replayed from the state
// file as that keeld read it: the upgrade's restart keeps the service
// (review of this session's changes M2), while a new request of that kind
// is refused.
TEST_F(RuntimeStateTest, SavedRequestsKeepTheHealthValuesAnOlderKeeldAccepted) {
  make();
  api::ServiceAddRequest dns;
  dns.name = "dns";
  dns.vip = ip("10.0.0.53");
  dns.port = 53;
  dns.protocol = KEEL_PROTO_UDP;
  dns.health = {{"type", "tcp"}, {"port", 8053}};
  dns.reals.push_back(api::RealSpec{ip("10.0.3.1"), 5, std::nullopt, {{"type", "tcp"}, {"port", 8054}}});
  ASSERT_TRUE(backend_->addService(dns).isOk());
  backend_.reset();
  nlohmann::json saved = readState();
  ASSERT_EQ(saved["services"].size(), 1u) << saved.dump();
  saved["services"][0]["request"]["health"]["port"] = "8053";
  saved["services"][0]["request"]["reals"][0]["health"]["port"] = "8054";
  writeState(saved.dump());
  auto k = restart();
  ASSERT_TRUE(k->backend->findService("dns")) << "the upgrade's restart dropped the service";
  bool checked = false;
  for (const HealthStatus& st : k->backend->checker().snapshot())
    if (st.target.address == ip("10.0.3.1")) checked = st.target.spec.port == 8054;
  EXPECT_TRUE(checked);
  dns.name = "dns2";
  dns.vip = ip("10.0.0.54");
  dns.health = {{"type", "tcp"}, {"port", "8053"}};
  EXPECT_FALSE(k->backend->addService(dns).isOk()) << "a new request is held to its types";
}

// A state file that cannot be written leaves the last one in place, and the
// change's answer says so (takeUnsavedState, once): the change runs, but a
// restart would start without it. The file is root's alone: it holds the
// whole overlay and operators' drain reasons.
TEST_F(RuntimeStateTest, AStateFileThatCannotBeWrittenKeepsTheLastOneAndSaysSo) {
  make();
  ASSERT_TRUE(backend_->setRealDrain({{"web", ip("10.0.1.1")}, true, "rack move"}).isOk());
  EXPECT_FALSE(backend_->takeUnsavedState());
  namespace fs = std::filesystem;
  EXPECT_EQ(fs::status(statePath_).permissions() & fs::perms::all, fs::perms::owner_read | fs::perms::owner_write);
  const nlohmann::json saved = readState();
  fs::create_directory(statePath_ + ".tmp");  // the temporary file cannot be opened
  ASSERT_TRUE(backend_->setRealWeight({{"web", ip("10.0.1.2")}, 50}).isOk());
  const std::optional<std::string> unsaved = backend_->takeUnsavedState();
  ASSERT_TRUE(unsaved);
  EXPECT_NE(unsaved->find("could not save it (open " + statePath_ + ".tmp: Is a directory)"), std::string::npos)
      << *unsaved;
  EXPECT_FALSE(backend_->takeUnsavedState()) << "said once";
  EXPECT_EQ(readState(), saved) << "the last file stays";
  const std::optional<api::ServiceSnapshot> web = backend_->findService("web");  // (kept: the loop reads it)
  ASSERT_TRUE(web);
  bool seen = false;
  for (const auto& r : web->reals) {
    if (r.address == ip("10.0.1.2")) {
      seen = true;
      EXPECT_EQ(r.weight, 50u) << "the change runs";
    }
  }
  EXPECT_TRUE(seen);
  // Written again by itself once it can be (review_faults F5: it waited for
  // the next change, so a crash meanwhile lost this one), the first retry
  // kSaveRetryInterval later. Bounded.
  test::LogCapture log;
  fs::remove(statePath_ + ".tmp");
  const auto deadline = std::chrono::steady_clock::now() + DaemonBackend::kSaveRetryInterval + std::chrono::seconds(5);
  while (readState() == saved && std::chrono::steady_clock::now() < deadline)
    io_.run_one_for(std::chrono::milliseconds(200));
  EXPECT_NE(readState().dump().find("\"weight\":50"), std::string::npos) << readState().dump();
  EXPECT_EQ(log.take("runtime_state_saved").size(), 1u);
  // A temporary file a killed keeld left, readable by all: replaced, its
  // mode not inherited.
  std::ofstream(statePath_ + ".tmp") << "left over";
  fs::permissions(statePath_ + ".tmp", fs::perms::owner_all | fs::perms::group_read | fs::perms::others_read);
  ASSERT_TRUE(backend_->setRealWeight({{"web", ip("10.0.1.2")}, 60}).isOk());
  EXPECT_FALSE(backend_->takeUnsavedState());
  EXPECT_NE(readState(), saved);
  EXPECT_EQ(fs::status(statePath_).permissions() & fs::perms::all, fs::perms::owner_read | fs::perms::owner_write);
  EXPECT_FALSE(fs::exists(statePath_ + ".tmp"));
}

// A save that fails in a commit no request made (here the l2dsr MAC
// refresh) is logged, not told to the reply of a later, unrelated request;
// and a later good save ends an earlier failure (the file holds the whole
// state), so it is not told either.
TEST_F(RuntimeStateTest, ABackgroundCommitsFailedSaveIsNotALaterRequestsNews) {
  hostChecks_ = true;
  neighbours_["10.0.1.1"] = "02:00:00:00:01:01";
  neighbours_["10.0.1.2"] = "02:00:00:00:01:02";
  files_["keel.yaml"] = l2dsr(yaml("      - {address: 10.0.1.1}\n      - {address: 10.0.1.2}\n"));
  make();
  namespace fs = std::filesystem;
  fs::create_directory(statePath_ + ".tmp");  // the temporary file cannot be opened
  neighbours_["10.0.1.1"] = "02:00:00:00:02:01";
  EXPECT_EQ(backend_->refreshTableMacs(), 0u);
  EXPECT_EQ(backend_->refreshTableMacs(), 1u) << "the MAC moves, and its save fails";
  EXPECT_FALSE(backend_->takeUnsavedState()) << "no request made that change";
  // A request whose save fails is told; one whose save works after it is not.
  ASSERT_TRUE(backend_->setRealWeight({{"web", ip("10.0.1.2")}, 50}).isOk());
  ASSERT_TRUE(backend_->takeUnsavedState());
  fs::remove(statePath_ + ".tmp");
  ASSERT_TRUE(backend_->setRealWeight({{"web", ip("10.0.1.2")}, 60}).isOk());
  EXPECT_FALSE(backend_->takeUnsavedState());
  fs::create_directory(statePath_ + ".tmp");
  ASSERT_TRUE(backend_->setRealWeight({{"web", ip("10.0.1.2")}, 70}).isOk());  // fails, not taken
  fs::remove(statePath_ + ".tmp");
  ASSERT_TRUE(backend_->setRealWeight({{"web", ip("10.0.1.2")}, 80}).isOk());
  EXPECT_FALSE(backend_->takeUnsavedState()) << "a good save after a failed one: nothing left unsaved";
}

// A keeld that cannot adopt its predecessor's data plane (DPDK) starts the
// checked reals the predecessor stopped cleanly with up, if that was at most
// fall x interval ago: at once the ring the predecessor ran, where a fresh
// start forwards nothing until `rise` checks pass and then re-picks every
// flow from whatever reals are back. After a crash (files written while
// running have no stop record), from a stale record, for a real that was
// down, and whenever the data plane is adopted (it says which reals are up),
// checked reals start as before.
// A restart keeps the rest of the overlay when one entry no longer passes
// the composed-config checks (here: the file lost tunnel_source_v6 while an
// IPv6 real added with keelctl was kept): that entry alone is dropped, not
// every drain and weight with it.
TEST_F(RuntimeStateTest, ARestartDropsOnlyTheRuntimeEntryTheChecksRefuse) {
  ASSERT_NO_FATAL_FAILURE(startWithAnIpv6RealAddedAndADrain());
  backend_.reset();

  files_["keel.yaml"] = yaml(kTwo);  // no tunnel_source_v6
  test::LogCapture log;
  auto k = restart();
  ASSERT_TRUE(k->backend->findService("web"));
  EXPECT_FALSE(k->real("web", "2001:db8:1::12"));
  ASSERT_TRUE(k->real("web", "10.0.1.1"));
  EXPECT_TRUE(k->real("web", "10.0.1.1")->draining) << "the drain went with the refused entry";
  std::vector<std::string> dropped = log.take("runtime_state_dropped");
  ASSERT_EQ(dropped.size(), 1u);
  EXPECT_NE(dropped[0].find("ipip to an IPv6 real needs node.tunnel_source_v6"), std::string::npos) << dropped[0];
  EXPECT_TRUE(log.take("runtime_state_ignored").empty());
}

// A restart whose data plane cannot take the overlay's additions (here
// limits.max_reals holds the file's reals only: a DPDK keeld that ran past
// its limit before it was enforced) keeps the rest of the overlay, the
// drain and the weight, instead of dropping all of it.
TEST_F(RuntimeStateTest, AnOverlayWhoseAdditionsNoLongerFitKeepsItsDrainsAndWeights) {
  make();
  const DataplaneLimits limits = limitsForTheRealsNow();
  nlohmann::json r = call(R"({"id":1,"method":"real.drain","params":{"service":"web","address":"10.0.1.1"}})");
  ASSERT_EQ(r["ok"], true) << r.dump();
  r = call(R"({"id":2,"method":"real.set_weight","params":{"service":"web","address":"10.0.1.2","weight":7}})");
  ASSERT_EQ(r["ok"], true) << r.dump();
  r = call(R"({"id":3,"method":"real.add","params":{"service":"web","address":"10.0.1.9"}})");
  ASSERT_EQ(r["ok"], true) << r.dump();
  auto k = std::make_unique<Keeld>(limits);
  test::LogCapture log;
  k->backend = started(k->io, k->registry);
  EXPECT_FALSE(k->real("web", "10.0.1.9")) << "the addition does not fit";
  ASSERT_TRUE(k->real("web", "10.0.1.1"));
  EXPECT_TRUE(k->real("web", "10.0.1.1")->draining) << "the drain went with the addition";
  EXPECT_EQ(k->real("web", "10.0.1.2")->weight, 7u);
  const auto dropped = log.take("runtime_state_additions_dropped");
  ASSERT_EQ(dropped.size(), 1u);
  EXPECT_NE(dropped[0].find("limits.max_reals"), std::string::npos) << dropped[0];
  EXPECT_TRUE(log.take("runtime_state_ignored").empty());
  // runtime_state_kept names what went in, not the addition it dropped
  // (operator review L2: "kept", then "dropped", for the same entry).
  std::vector<std::string> kept = log.take("runtime_state_kept");
  ASSERT_EQ(kept.size(), 2u);
  for (const std::string& line : kept) EXPECT_EQ(line.find("change=added"), std::string::npos) << line;
  // Each says which change it kept, as runtime_state_dropped does (it said
  // change=weight/drain for both).
  std::sort(kept.begin(), kept.end());
  EXPECT_NE(kept[0].find("real=10.0.1.1 change=drain"), std::string::npos) << kept[0];
  EXPECT_NE(kept[1].find("real=10.0.1.2 change=\"weight 7\""), std::string::npos) << kept[1];
}

// An overlay that cannot go in at all (its one change an addition that no
// longer fits, so no drain or weight is left to keep): the start goes on
// with the file alone and sets the state file aside as .bad-STAMP, with
// the text it had. That commit saves the (empty) running state first, so
// setting aside what was on disk then kept an empty file and lost the
// operator's changes (re-read of de5a22f).
TEST_F(RuntimeStateTest, AnOverlayThatCannotGoInIsKeptAsItWas) {
  make();
  const DataplaneLimits limits = limitsForTheRealsNow();
  nlohmann::json r = call(R"({"id":1,"method":"real.add","params":{"service":"web","address":"10.0.1.9"}})");
  ASSERT_EQ(r["ok"], true) << r.dump();
  backend_.reset();
  const std::string before = fileText(statePath_);
  ASSERT_NE(before.find("10.0.1.9"), std::string::npos) << before;
  auto k = std::make_unique<Keeld>(limits);
  test::LogCapture log;
  k->backend = started(k->io, k->registry);
  EXPECT_FALSE(k->real("web", "10.0.1.9")) << "the addition does not fit";
  const std::vector<std::string> ignored = log.take("runtime_state_ignored");
  ASSERT_EQ(ignored.size(), 1u);
  const std::vector<std::string> aside = setAside();
  ASSERT_EQ(aside.size(), 1u);
  EXPECT_NE(ignored[0].find("kept_as=" + aside[0]), std::string::npos) << ignored[0];
  EXPECT_EQ(fileText(aside[0]), before) << "the changes, as they were";
  EXPECT_EQ(readState()["version"], 2) << "the running state is saved beside it";
  EXPECT_EQ(readState().dump().find("10.0.1.9"), std::string::npos);
}

// A change the data plane's ids cannot take is refused before any write:
// its answer names the limit and says nothing of a restore (operator
// review L3: it said "the running configuration was restored").
TEST_F(RuntimeStateTest, ACapacityRefusalSpeaksOfNoRestore) {
  DataplaneLimits limits;
  limits.maxServices = 2;  // the file's web and api
  auto k = std::make_unique<Keeld>(limits);
  k->backend = started(k->io, k->registry);
  api::ServiceAddRequest dns;
  dns.name = "dns";
  dns.vip = ip("10.0.0.53");
  dns.port = 53;
  dns.protocol = KEEL_PROTO_UDP;
  dns.reals.push_back(api::RealSpec{ip("10.0.3.1"), 5, std::nullopt, nullptr});
  k->dp.calls.clear();
  api::Result r = k->backend->addService(dns);
  ASSERT_FALSE(r.isOk());
  EXPECT_EQ(r.error().message.rfind(
                "config needs 1 new service ids, the data plane has 0 free of its 2 (limits.max_services)", 0),
            0u)
      << r.error().message;
  EXPECT_EQ(r.error().message.find("restor"), std::string::npos) << r.error().message;
  EXPECT_TRUE(k->dp.calls.empty());
}

TEST_F(RuntimeStateTest, ACleanStopStartsTheCheckedRealsItHadUpAgain) {
  files_["keel.yaml"] = yaml(kTwo,
                             "    health: {type: tcp, port: 9, interval: 10s, timeout: 50ms, "
                             "rise: 3, fall: 3}\n");
  make();
  ASSERT_TRUE(registry_.setRealHealth("web", ip("10.0.1.1"), true));
  ASSERT_TRUE(registry_.setRealHealth("web", ip("10.0.1.2"), true));
  const auto ringOf = [](const Keeld& k) { return k.dp.ringTargets(k.registry.services().at(0).id); };
  const std::vector<std::optional<IpAddress>> ran = dp_.ringTargets(registry_.services().at(0).id);
  ASSERT_EQ(ringAddresses(), (std::set<std::string>{"10.0.1.1", "10.0.1.2"}));
  const auto states = [](Keeld& k) {
    return std::make_pair(k.real("web", "10.0.1.1")->state(), k.real("web", "10.0.1.2")->state());
  };
  using States = std::pair<std::string, std::string>;

  // A crash: the running keeld's file has no stop record.
  EXPECT_FALSE(readState().contains("stopped"));
  {
    auto k = restart();
    EXPECT_EQ(states(*k), States("down", "down"));
    EXPECT_TRUE(ringOf(*k).empty());
  }

  // A clean stop: both up at once, the same ring slot for slot; health
  // show's reason says where that came from.
  backend_->saveAtStop();
  EXPECT_EQ(readState()["stopped"]["up"].size(), 2u);
  {
    auto k = restart();
    EXPECT_EQ(states(*k), States("up", "up"));
    EXPECT_TRUE(ringOf(*k) == ran) << "the ring differs from the one that ran";
    const std::vector<HealthStatus> all = k->backend->checker().snapshot();
    ASSERT_EQ(all.size(), 2u);
    for (const HealthStatus& st : all)
      EXPECT_EQ(st.changeReason, "up from the previous keeld's stop record");
  }

  // Only the reals that were up; a record older than fall x interval
  // (3 x 10 s) is stale.
  ASSERT_TRUE(registry_.setRealHealth("web", ip("10.0.1.2"), false));
  backend_->saveAtStop();
  {
    auto k = restart();
    EXPECT_EQ(states(*k), States("up", "down"));
  }
  backend_->saveAtStop();
  nlohmann::json doc = readState();
  doc["stopped"]["at_ms"] = doc["stopped"]["at_ms"].get<int64_t>() - 31000;
  writeState(doc.dump());
  {
    auto k = restart();
    EXPECT_EQ(states(*k), States("down", "down"));
  }
  // The age runs to keeld's own start (setStartedAt), not to the end of its
  // start-up (DPDK's EAL and tables take seconds): the same record, of a
  // keeld started 29 s after that stop, is fresh.
  writeState(doc.dump());
  startedAt_ = std::chrono::system_clock::time_point(
      std::chrono::milliseconds(doc["stopped"]["at_ms"].get<int64_t>() + 29000));
  {
    auto k = restart();
    EXPECT_EQ(states(*k), States("up", "down"));
  }
  // Written after this keeld started, by one still stopping (a supervisor
  // that did not wait for its exit): as fresh as can be (live restart
  // review: it was negative and ignored, every kept-down flow reset).
  doc["stopped"]["at_ms"] = std::chrono::duration_cast<std::chrono::milliseconds>(
                                std::chrono::system_clock::now().time_since_epoch())
                                .count();
  writeState(doc.dump());
  startedAt_ = std::chrono::system_clock::now() - std::chrono::milliseconds(5);
  {
    auto k = restart();
    EXPECT_EQ(states(*k), States("up", "down"));
  }
  // After now (a clock set back): not used.
  doc["stopped"]["at_ms"] = doc["stopped"]["at_ms"].get<int64_t>() + 3600 * 1000;
  writeState(doc.dump());
  {
    auto k = restart();
    EXPECT_EQ(states(*k), States("down", "down"));
  }
  startedAt_.reset();

  // Adopted: the data plane's state wins over the record (.2 down there).
  ASSERT_TRUE(registry_.setRealHealth("web", ip("10.0.1.2"), true));
  backend_->saveAtStop();
  ASSERT_TRUE(registry_.setRealHealth("web", ip("10.0.1.2"), false));
  {
    auto k = restart(&dp_);
    EXPECT_EQ(states(*k), States("up", "down"));
    // health show says where each state came from: not "added" (review).
    std::map<std::string, std::string> reasons;
    for (const HealthStatus& st : k->backend->checker().snapshot())
      reasons[st.target.address.toString()] = st.changeReason;
    EXPECT_EQ(reasons["10.0.1.1"], "up, as the adopted data plane had it");
    EXPECT_EQ(reasons["10.0.1.2"], "down, as the adopted data plane had it");
  }
}

// The checks go on while the data plane stops (seconds under DPDK), after
// applyPendingHealth: a real that went down then is recorded down in the
// stop record (the next keeld starts it down), and its transition logged.
TEST_F(RuntimeStateTest, ATransitionDuringTheStopIsInTheStopRecord) {
  auto listener = std::make_unique<boost::asio::ip::tcp::acceptor>(
      io_, boost::asio::ip::tcp::endpoint{boost::asio::ip::address_v4::loopback(), 0});
  files_["keel.yaml"] = yaml("      - {address: 127.0.0.1}\n",
                             "    health: {type: tcp, port: " + std::to_string(listener->local_endpoint().port()) +
                                 ", interval: 100ms, timeout: 900ms, rise: 1, fall: 1}\n");
  make();
  auto upIs = [&](bool want) {
    auto all = backend_->checker().snapshot();
    return all.size() == 1 && all[0].up == want;
  };
  for (int i = 0; i < 200 && !upIs(true); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_TRUE(upIs(true));
  backend_->applyPendingHealth();  // keeld's loop has ended: up, applied
  ASSERT_EQ(realOf("127.0.0.1").state(), "up");
  listener.reset();  // the real dies while the data plane stops
  for (int i = 0; i < 200 && !upIs(false); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_TRUE(upIs(false));
  test::LogCapture log;
  backend_->saveAtStop();
  EXPECT_TRUE(readState()["stopped"]["up"].empty()) << readState()["stopped"];
  const auto changed = log.take("health_changed");
  ASSERT_EQ(changed.size(), 1u);
  EXPECT_NE(changed[0].find("real=127.0.0.1 state=down"), std::string::npos) << changed[0];
}

// A clean stop with a real kept down (established_on_down: keep): a keeld
// that cannot adopt (DPDK) starts it down, out of the ring, but VALID, so
// the connection table it restores (by address) still reaches it. Under
// repick, or without the record's `kept` (an older keeld's file), it starts
// down and not VALID, as before.
TEST_F(RuntimeStateTest, ACleanStopStartsARealKeptDownKeptDownAgain) {
  files_["keel.yaml"] = yaml(kTwo, "    health: {type: tcp, port: 9, interval: 10s, rise: 3, fall: 3, "
                                   "established_on_down: keep}\n") + kApi;
  make();
  ASSERT_TRUE(registry_.setRealHealth("web", ip("10.0.1.1"), true));
  ASSERT_TRUE(registry_.setRealHealth("web", ip("10.0.1.2"), true));
  ASSERT_TRUE(registry_.setRealHealth("web", ip("10.0.1.2"), false));
  backend_->saveAtStop();
  ASSERT_EQ(readState()["stopped"]["kept"].size(), 1u);
  {
    auto k = restart();
    EXPECT_EQ(k->real("web", "10.0.1.1")->state(), "up");
    EXPECT_EQ(k->real("web", "10.0.1.2")->state(), "down");
    EXPECT_TRUE(validOf(*k, "10.0.1.2"));
    EXPECT_TRUE(k->registry.service("web")->reals[1].kept);
    for (const HealthStatus& st : k->backend->checker().snapshot()) {
      if (st.target.address == ip("10.0.1.2")) {
        EXPECT_EQ(st.changeReason, "down, flows kept, from the previous keeld's stop record");
      }
    }
    const auto ring = k->dp.ringTargets(k->registry.service("web")->id);
    EXPECT_TRUE(std::all_of(ring.begin(), ring.end(), [](const auto& t) { return t == ip("10.0.1.1"); }));
  }
  backend_->saveAtStop();  // (the restarted keeld rewrote the file without a stop record)
  files_["keel.yaml"] = yaml(kTwo, "    health: {type: tcp, port: 9, interval: 10s, rise: 3, fall: 3}\n") + kApi;
  {
    auto k = restart();
    EXPECT_EQ(k->real("web", "10.0.1.1")->state(), "up") << "no stop record read";
    EXPECT_EQ(k->real("web", "10.0.1.2")->state(), "down");
    EXPECT_FALSE(validOf(*k, "10.0.1.2"));
  }
}

// Under repick, a drained real that went down kept its flows (the drain
// promised them their end): a clean stop records it kept, and a keeld that
// cannot adopt (DPDK) starts it down and drained but VALID, so the table it
// restores still reaches it.
TEST_F(RuntimeStateTest, ADrainedRealKeptDownUnderRepickStartsKeptDownAgain) {
  files_["keel.yaml"] = yaml(kTwo, "    health: {type: tcp, port: 9, interval: 10s, rise: 3, fall: 3}\n") + kApi;
  make();
  ASSERT_TRUE(registry_.setRealHealth("web", ip("10.0.1.1"), true));
  ASSERT_TRUE(registry_.setRealHealth("web", ip("10.0.1.2"), true));
  ASSERT_TRUE(backend_->setRealDrain({{"web", ip("10.0.1.2")}, true, ""}).isOk());
  ASSERT_TRUE(registry_.setRealHealth("web", ip("10.0.1.2"), false));
  ASSERT_TRUE(registry_.service("web")->reals[1].kept);
  backend_->saveAtStop();
  ASSERT_EQ(readState()["stopped"]["kept"].size(), 1u);
  auto k = restart();
  EXPECT_EQ(k->real("web", "10.0.1.2")->state(), "draining");
  EXPECT_TRUE(validOf(*k, "10.0.1.2"));
  EXPECT_TRUE(k->registry.service("web")->reals[1].kept);
}

// Two services added with keelctl on one VIP (ports 80 and 443), which the
// file then gives web as a real: the restart's replay drops both and keeps
// the rest of the overlay. The rule names a VIP's first service only, so
// one pass dropped one of them, and the commit, still refused, then dropped
// every keelctl addition (runtime_state_additions_dropped).
TEST_F(RuntimeStateTest, AReplayDropsEveryKeelctlServiceOnAVipTheFileMadeAReal) {
  make();
  ASSERT_TRUE(backend_->addService(serviceRequest("t1", "10.0.0.77", 80, KEEL_PROTO_TCP, nullptr, {"10.0.1.3"}))
                  .isOk());
  ASSERT_TRUE(backend_->addService(serviceRequest("t2", "10.0.0.77", 443, KEEL_PROTO_TCP, nullptr, {"10.0.1.4"}))
                  .isOk());
  ASSERT_TRUE(backend_->addService(serviceRequest("t3", "10.0.0.78", 80, KEEL_PROTO_TCP, nullptr, {"10.0.1.5"}))
                  .isOk());
  backend_.reset();
  files_["keel.yaml"] = yaml(kTwo + "      - {address: 10.0.0.77}\n");
  test::LogCapture log;
  auto k = restart();
  EXPECT_FALSE(k->backend->findService("t1"));
  EXPECT_FALSE(k->backend->findService("t2"));
  EXPECT_TRUE(k->backend->findService("t3")) << "an addition the file did not clash with went too";
  EXPECT_EQ(log.take("runtime_state_dropped").size(), 2u);
  EXPECT_TRUE(log.take("runtime_state_additions_dropped").empty());
}

// A clean stop during a fail-open hold (every real of web down, the last
// one held in the ring): a keeld that cannot adopt (DPDK) starts the held
// real held again, VALID and in the ring, so the service goes on
// forwarding and the connection table it restores still reaches that real;
// the first real that comes up releases it. Before, it started down like
// the others: the ring was empty and every flow of the service dropped
// (drop_no_backend) until a check passed. Without the record's `held` (an
// older keeld's file) it starts down, as before.
TEST_F(RuntimeStateTest, ACleanStopDuringAFailOpenHoldStartsTheHeldRealHeld) {
  files_["keel.yaml"] = yaml(kTwo, "    health: {type: tcp, port: 9, interval: 10s, rise: 3, fall: 3}\n") + kApi;
  make();
  ASSERT_TRUE(registry_.setRealHealth("web", ip("10.0.1.1"), true));
  ASSERT_TRUE(registry_.setRealHealth("web", ip("10.0.1.2"), true));
  ASSERT_TRUE(registry_.setRealHealth("web", ip("10.0.1.1"), false));
  ASSERT_TRUE(registry_.setRealHealth("web", ip("10.0.1.2"), false));  // the last: held
  ASSERT_TRUE(registry_.service("web")->reals[1].held);
  backend_->saveAtStop();
  ASSERT_EQ(readState()["stopped"]["held"].size(), 1u);
  const nlohmann::json stopped = readState()["stopped"];
  {
    test::LogCapture log;
    auto k = restart();
    const RealView held = k->registry.service("web")->reals[1];
    ASSERT_EQ(held.address, ip("10.0.1.2"));
    EXPECT_FALSE(held.healthy);
    EXPECT_TRUE(held.held);
    EXPECT_TRUE(validOf(*k, "10.0.1.2"));
    auto ring = k->dp.ringTargets(k->registry.service("web")->id);
    ASSERT_FALSE(ring.empty());
    EXPECT_TRUE(std::all_of(ring.begin(), ring.end(), [](const auto& t) { return t == ip("10.0.1.2"); }));
    for (const HealthStatus& st : k->backend->checker().snapshot())
      if (st.target.address == ip("10.0.1.2")) {
        EXPECT_EQ(st.changeReason, "down, held by fail-open, from the previous keeld's stop record");
      }
    EXPECT_EQ(log.take("held_from_stop").size(), 1u);
    // 10.0.1.1 comes back: the holdover, really down, leaves the ring.
    ASSERT_TRUE(k->registry.setRealHealth("web", ip("10.0.1.1"), true));
    EXPECT_FALSE(k->registry.service("web")->reals[1].held);
    ring = k->dp.ringTargets(k->registry.service("web")->id);
    EXPECT_TRUE(std::all_of(ring.begin(), ring.end(), [](const auto& t) { return t == ip("10.0.1.1"); }));
  }
  // An older keeld's record, without `held`: down, as before.
  nlohmann::json old = readState();
  old["stopped"] = stopped;
  old["stopped"].erase("held");
  writeState(old.dump());
  {
    auto k = restart();
    EXPECT_FALSE(k->registry.service("web")->reals[1].held);
    EXPECT_FALSE(validOf(*k, "10.0.1.2"));
  }
  // A record that also has a real of web up (it came back during the stop):
  // nothing to hold for, and neither the log nor health show says held.
  nlohmann::json both = readState();
  both["stopped"] = stopped;
  both["stopped"]["up"] = nlohmann::json::array({{{"service", "web"}, {"address", "10.0.1.1"}}});
  writeState(both.dump());
  {
    test::LogCapture log;
    auto k = restart();
    EXPECT_EQ(k->real("web", "10.0.1.1")->state(), "up");
    EXPECT_FALSE(k->registry.service("web")->reals[1].held);
    EXPECT_TRUE(log.take("held_from_stop").empty());
    for (const HealthStatus& st : k->backend->checker().snapshot())
      if (st.target.address == ip("10.0.1.2")) {
        EXPECT_EQ(st.changeReason.find("held"), std::string::npos) << st.changeReason;
      }
  }
}

// A clean stop keeps the MACs the neighbour table gave l2dsr reals: a
// keeld that cannot adopt (DPDK, whose exception tap is new at every start,
// its neighbour table empty) starts such a real with that MAC, VALID and up
// from the record, so the connection table it restores keeps its flows.
// Before, it was held down for want of a MAC, and the restore skipped its
// entries (conntrack_restored skipped_down): its flows were reset. The MAC
// timer still follows the table when it names another. A stale record, a
// file that now gives a mac:, an older keeld's record without MACs and a
// bad entry leave the real waiting for the table, as before.
TEST_F(RuntimeStateTest, ACleanStopKeepsTheMacsTheNeighbourTableGaveL2dsrReals) {
  hostChecks_ = true;
  neighbours_["10.0.1.1"] = "02:00:00:00:01:01";
  neighbours_["10.0.1.9"] = "02:00:00:00:01:09";
  const std::string health = "    health: {type: tcp, port: 9, interval: 10s, timeout: 50ms, rise: 3, fall: 3}\n";
  const std::string reals = "      - {address: 10.0.1.1}\n      - {address: 10.0.1.2, mac: \"02:00:00:00:09:02\"}\n";
  files_["keel.yaml"] = l2dsr(yaml(reals, health)) + kApi;
  make();
  api::RealAddRequest add;  // keelctl's, without a mac: the table's too
  add.service = "web";
  add.real.address = ip("10.0.1.9");
  ASSERT_TRUE(backend_->addReal(add).isOk());
  for (const char* a : {"10.0.1.1", "10.0.1.2", "10.0.1.9"}) ASSERT_TRUE(registry_.setRealHealth("web", ip(a), true));
  backend_->saveAtStop();
  const nlohmann::json stopped = readState()["stopped"];
  ASSERT_TRUE(stopped.contains("macs")) << stopped.dump();
  EXPECT_EQ(stopped["macs"], nlohmann::json::parse(R"([
      {"service": "web", "address": "10.0.1.1", "mac": "02:00:00:00:01:01"},
      {"service": "web", "address": "10.0.1.9", "mac": "02:00:00:00:01:09"}])"))
      << "the table's MACs only, not a file's mac:";
  neighbours_.clear();  // the new keeld's table is empty
  const auto withStop = [&](const nlohmann::json& record) {
    nlohmann::json doc = readState();
    doc["stopped"] = record;
    writeState(doc.dump());
  };

  {
    test::LogCapture log;
    auto k = restart();
    for (const auto& [addr, mac] : {std::pair{"10.0.1.1", "02:00:00:00:01:01"}, {"10.0.1.9", "02:00:00:00:01:09"}}) {
      auto r = k->real("web", addr);
      ASSERT_TRUE(r && r->mac) << addr << ": held down for want of a MAC";
      EXPECT_EQ(r->mac->toString(), mac) << addr;
      EXPECT_EQ(r->state(), "up") << addr;
      EXPECT_TRUE(validOf(*k, addr)) << addr;
    }
    EXPECT_EQ(k->real("web", "10.0.1.2")->mac->toString(), "02:00:00:00:09:02");
    const std::vector<std::string> kept = log.take("real_mac_kept_from_stop");
    ASSERT_EQ(kept.size(), 2u);
    EXPECT_NE(kept[0].find("service=web real=10.0.1.1 mac=02:00:00:00:01:01 stopped_ms_ago="), std::string::npos)
        << kept[0];
    EXPECT_EQ(log.take("health_kept_from_stop").size(), 3u);
    EXPECT_TRUE(log.take("real_mac_unresolved").empty());
    // The table names another MAC later (a NIC swapped while keeld was
    // stopped): followed on two reads, at the same backend, and logged.
    const BackendId id = [&] {
      const std::optional<ServiceView> web = k->registry.service("web");
      for (const RealView& r : web->reals)
        if (r.address == ip("10.0.1.1")) return r.backendId;
      return ~0u;
    }();
    ASSERT_TRUE(k->dp.backends.count(id));
    neighbours_["10.0.1.1"] = "02:00:00:00:02:01";
    EXPECT_EQ(k->backend->refreshTableMacs(), 0u);
    EXPECT_EQ(k->backend->refreshTableMacs(), 1u);
    EXPECT_EQ(k->real("web", "10.0.1.1")->mac->toString(), "02:00:00:00:02:01");
    EXPECT_EQ(k->dp.backends[id].mac[4], 0x02);
    const std::vector<std::string> changed = log.take("real_mac_changed");
    ASSERT_EQ(changed.size(), 1u);
    EXPECT_NE(changed[0].find("real=10.0.1.1 from=02:00:00:00:01:01 mac=02:00:00:00:02:01"), std::string::npos)
        << changed[0];
    neighbours_.clear();
  }

  // The checks' window (fall x interval, 3 x 10 s) is the MAC's: older, the
  // real waits for the table (and starts down anyway).
  nlohmann::json stale = stopped;
  stale["at_ms"] = stale["at_ms"].get<int64_t>() - 31000;
  withStop(stale);
  {
    test::LogCapture log;
    auto k = restart();
    EXPECT_FALSE(k->real("web", "10.0.1.1")->mac);
    EXPECT_FALSE(validOf(*k, "10.0.1.1"));
    EXPECT_TRUE(log.take("real_mac_kept_from_stop").empty());
  }

  // An older keeld's record, without macs: loads, the health states kept;
  // the real waits for the table, as before.
  nlohmann::json old = stopped;
  old.erase("macs");
  withStop(old);
  {
    test::LogCapture log;
    auto k = restart();
    EXPECT_FALSE(k->real("web", "10.0.1.1")->mac);
    EXPECT_EQ(k->real("web", "10.0.1.1")->state(), "down");
    EXPECT_EQ(k->real("web", "10.0.1.2")->state(), "up");
    EXPECT_TRUE(log.take("runtime_state_ignored").empty());
    EXPECT_EQ(log.take("real_mac_unresolved").size(), 2u);
  }

  // Bad entries (an edited or damaged file): each ignored with a warning,
  // the start goes on, and the good one is used.
  nlohmann::json bad = stopped;
  bad["macs"][0]["mac"] = "02:00:00:00:01";
  bad["macs"].push_back({{"service", "web"}, {"address", "10.0.1.1"}, {"mac", "01:00:5e:00:00:01"}});
  bad["macs"].push_back({{"service", "web"}, {"address", "10.0.1"}, {"mac", "02:00:00:00:01:01"}});
  bad["macs"].push_back(42);
  withStop(bad);
  {
    test::LogCapture log;
    auto k = restart();
    ASSERT_TRUE(startStatus_) << startStatus_.message();
    EXPECT_FALSE(k->real("web", "10.0.1.1")->mac);
    ASSERT_TRUE(k->real("web", "10.0.1.9")->mac);
    EXPECT_EQ(k->real("web", "10.0.1.9")->state(), "up");
    const std::vector<std::string> ignored = log.take("stop_record_mac_ignored");
    ASSERT_EQ(ignored.size(), 4u);
    EXPECT_NE(ignored[0].find("mac is not a unicast MAC address"), std::string::npos) << ignored[0];
    EXPECT_TRUE(log.take("runtime_state_ignored").empty());
  }
  withStop(nlohmann::json::object({{"at_ms", stopped["at_ms"]}, {"up", stopped["up"]}, {"macs", "02:00:00:00:01:01"}}));
  {
    test::LogCapture log;
    auto k = restart();
    EXPECT_EQ(log.take("stop_record_mac_ignored").size(), 1u);
    EXPECT_EQ(k->real("web", "10.0.1.2")->state(), "up") << "the rest of the record is kept";
  }

  // The file gives it a mac: since: that one, nothing from the record.
  withStop(stopped);
  files_["keel.yaml"] =
      l2dsr(yaml("      - {address: 10.0.1.1, mac: \"02:00:00:00:07:01\"}\n"
                 "      - {address: 10.0.1.2, mac: \"02:00:00:00:09:02\"}\n",
                 health)) +
      kApi;
  {
    test::LogCapture log;
    auto k = restart();
    EXPECT_EQ(k->real("web", "10.0.1.1")->mac->toString(), "02:00:00:00:07:01");
    const std::vector<std::string> kept = log.take("real_mac_kept_from_stop");
    ASSERT_EQ(kept.size(), 1u);
    EXPECT_NE(kept[0].find("real=10.0.1.9"), std::string::npos) << kept[0];
  }
}

// A real the record starts kept down (established_on_down: keep) takes its
// MAC at any age of the record, as it starts kept at any age: VALID, so
// the restored entries of its flows still reach it.
TEST_F(RuntimeStateTest, ARealKeptDownAtAStopKeepsItsTableMacAtAnyAge) {
  hostChecks_ = true;
  neighbours_["10.0.1.1"] = "02:00:00:00:01:01";
  neighbours_["10.0.1.2"] = "02:00:00:00:01:02";
  files_["keel.yaml"] = l2dsr(yaml(kTwo, "    health: {type: tcp, port: 9, interval: 10s, rise: 3, fall: 3, "
                                         "established_on_down: keep}\n")) +
                        kApi;
  make();
  ASSERT_TRUE(registry_.setRealHealth("web", ip("10.0.1.1"), true));
  ASSERT_TRUE(registry_.setRealHealth("web", ip("10.0.1.2"), true));
  ASSERT_TRUE(registry_.setRealHealth("web", ip("10.0.1.2"), false));
  backend_->saveAtStop();
  nlohmann::json doc = readState();
  doc["stopped"]["at_ms"] = doc["stopped"]["at_ms"].get<int64_t>() - 3600 * 1000;
  writeState(doc.dump());
  neighbours_.clear();
  auto k = restart();
  ASSERT_TRUE(k->real("web", "10.0.1.2")->mac);
  EXPECT_EQ(k->real("web", "10.0.1.2")->mac->toString(), "02:00:00:00:01:02");
  EXPECT_TRUE(validOf(*k, "10.0.1.2"));
  EXPECT_TRUE(k->registry.service("web")->reals[1].kept);
  EXPECT_FALSE(k->real("web", "10.0.1.1")->mac) << "an hour is past the up real's window";
}

// Every l2dsr real a request or a whole state file adds without a mac is
// looked up with one neighbour-table read: each read may wait up to ~1 s for
// neighbours the table lacks, so one read per real held a start that long
// per real.
TEST_F(RuntimeStateTest, L2dsrMacsOfARequestAndOfTheStateFileAreLookedUpTogether) {
  // The neighbour table the fake resolver reads, and the one MAC a request
  // gives itself: after the restart each real must hold its own MAC from
  // these (all distinct, so a real given another's MAC fails).
  neighbours_ = {{"10.0.5.1", "02:00:00:00:05:01"},
                 {"10.0.5.2", "02:00:00:00:05:02"},
                 {"10.0.5.3", "02:00:00:00:05:03"},
                 {"10.0.6.1", "02:00:00:00:06:01"}};
  const std::string givenMac = "02:00:00:00:05:99";
  make();
  const api::ServiceAddRequest dsr =
      l2dsrService("dsr", "10.0.0.7",
                   {api::RealSpec{ip("10.0.5.1"), 100, std::nullopt, nullptr},
                    api::RealSpec{ip("10.0.5.2"), 100, std::nullopt, nullptr},
                    api::RealSpec{ip("10.0.5.9"), 100, MacAddress::parse(givenMac), nullptr}});
  resolverCalls_ = 0;
  resolved_.clear();
  ASSERT_TRUE(backend_->addService(dsr).isOk());
  EXPECT_EQ(resolverCalls_, 1);
  EXPECT_EQ(resolved_, (std::vector<std::string>{"10.0.5.1@eth0", "10.0.5.2@eth0"}));  // a given mac is not asked for
  ASSERT_TRUE(
      backend_->addService(l2dsrService("dsr2", "10.0.0.8", {api::RealSpec{ip("10.0.6.1"), 100, std::nullopt, nullptr}}))
          .isOk());
  api::RealAddRequest add = realAdd("dsr", "10.0.5.3");
  ASSERT_TRUE(backend_->addReal(add).isOk());
  backend_.reset();

  resolverCalls_ = 0;
  resolved_.clear();
  auto k = restart();
  EXPECT_EQ(resolverCalls_, 1);
  std::sort(resolved_.begin(), resolved_.end());
  EXPECT_EQ(resolved_, (std::vector<std::string>{"10.0.5.1@eth0", "10.0.5.2@eth0", "10.0.5.3@eth0",
                                                 "10.0.6.1@eth0"}));
  std::map<std::string, std::string> wantMac = neighbours_;
  wantMac["10.0.5.9"] = givenMac;
  for (const auto& [svc, addr] : {std::pair{"dsr", "10.0.5.1"},
                                  {"dsr", "10.0.5.2"},
                                  {"dsr", "10.0.5.3"},
                                  {"dsr", "10.0.5.9"},
                                  {"dsr2", "10.0.6.1"}}) {
    auto r = k->real(svc, addr);
    ASSERT_TRUE(r && r->mac) << svc << " " << addr;
    EXPECT_EQ(r->mac->toString(), wantMac.at(addr)) << svc << " " << addr;
  }

  // A neighbour gone from the table keeps the entry that needs it: the
  // real is held down, looked up again, and found it comes in; the state
  // file keeps it through another restart.
  neighbours_.erase("10.0.5.3");
  k.reset();
  k = restart();
  ASSERT_TRUE(k->real("dsr", "10.0.5.3"));
  EXPECT_FALSE(k->real("dsr", "10.0.5.3")->mac);
  EXPECT_FALSE(k->real("dsr", "10.0.5.3")->healthy);
  EXPECT_EQ(k->real("dsr", "10.0.5.3")->changeReason, "l2dsr: 10.0.5.3 not in the neighbour table of eth0");
  EXPECT_TRUE(k->real("dsr", "10.0.5.1"));
  k.reset();
  k = restart();
  ASSERT_TRUE(k->real("dsr", "10.0.5.3"));
  neighbours_["10.0.5.3"] = "02:00:00:00:05:03";
  EXPECT_EQ(k->backend->resolvePendingMacs(), 1u);
  ASSERT_TRUE(k->real("dsr", "10.0.5.3")->mac);
  EXPECT_EQ(k->real("dsr", "10.0.5.3")->mac->toString(), "02:00:00:00:05:03");
  EXPECT_TRUE(k->real("dsr", "10.0.5.3")->healthy);
}

// A restart that adopts the plane keeps the MAC it forwards to for the
// l2dsr reals keelctl added (to a file service, in a service it added, and
// to that service later) whose neighbour entries aged out meanwhile, as for
// the file's: they went down with no MAC and lost their connections
// (upgrade review H1).
TEST_F(RuntimeStateTest, AnAdoptingRestartKeepsThePlanesMacsOfRealsKeelctlAdded) {
  hostChecks_ = true;
  files_["keel.yaml"] = l2dsr(yaml(kTwo)) + kApi;
  neighbours_ = {{"10.0.1.1", "02:00:00:00:01:01"}, {"10.0.1.2", "02:00:00:00:01:02"},
                 {"10.0.1.9", "02:00:00:00:01:09"}, {"10.0.5.1", "02:00:00:00:05:01"},
                 {"10.0.5.3", "02:00:00:00:05:03"}};
  make();
  api::RealAddRequest add = realAdd("web", "10.0.1.9");
  ASSERT_TRUE(backend_->addReal(add).isOk());
  ASSERT_TRUE(
      backend_->addService(l2dsrService("dsr", "10.0.0.7", {api::RealSpec{ip("10.0.5.1"), 100, std::nullopt, nullptr}}))
          .isOk());
  add.service = "dsr";
  add.real.address = ip("10.0.5.3");
  ASSERT_TRUE(backend_->addReal(add).isOk());
  backend_.reset();
  const std::map<std::string, std::string> had = neighbours_;
  for (const char* gone : {"10.0.1.9", "10.0.5.1", "10.0.5.3"}) neighbours_.erase(gone);

  test::LogCapture log;
  auto k = restart(&dp_);
  for (const auto& [svc, addr] : {std::pair{"web", "10.0.1.9"}, {"dsr", "10.0.5.1"}, {"dsr", "10.0.5.3"}}) {
    auto r = k->real(svc, addr);
    ASSERT_TRUE(r) << svc << " " << addr;
    ASSERT_TRUE(r->mac) << svc << " " << addr << ": held down for want of a MAC";
    EXPECT_EQ(r->mac->toString(), had.at(addr)) << svc << " " << addr;
    EXPECT_TRUE(r->healthy) << svc << " " << addr;
  }
  EXPECT_EQ(log.take("real_mac_kept_from_plane").size(), 3u);
}

// Only l2dsr reals take their mac from the neighbour table: ipip services and
// reals added without one (at runtime, and replayed from the state file at a
// restart) cost no table read, so no wait.
// The state file's record of what the file says of a real leaves out a MAC
// the neighbour table gave (it is no change of the file), so a drain of an
// l2dsr real survives a restart whose table read misses it (it is then held
// down, drained); a record with the table's MAC, as keelds before wrote it,
// is still read as the same real.
TEST_F(RuntimeStateTest, ADrainOfAnL2dsrRealOutlivesItsMacComingAndGoing) {
  hostChecks_ = true;
  files_["keel.yaml"] = l2dsr(yaml(kTwo)) + kApi;
  neighbours_ = {{"10.0.1.1", "02:00:00:00:01:01"}, {"10.0.1.2", "02:00:00:00:01:02"}};
  make();
  ASSERT_TRUE(backend_->setRealDrain({{"web", ip("10.0.1.2")}, true, ""}).isOk());
  nlohmann::json saved = readState();
  ASSERT_EQ(saved["reals"].size(), 1u);
  EXPECT_TRUE(saved["reals"][0]["file"]["mac"].is_null()) << saved.dump();
  backend_.reset();

  neighbours_.erase("10.0.1.2");
  auto k = restart();
  ASSERT_TRUE(k->real("web", "10.0.1.2"));
  EXPECT_TRUE(k->real("web", "10.0.1.2")->draining);
  EXPECT_FALSE(k->real("web", "10.0.1.2")->mac);
  k.reset();

  // An older keeld's record, with the MAC the table gave.
  neighbours_["10.0.1.2"] = "02:00:00:00:01:02";
  saved["reals"][0]["file"]["mac"] = "02:00:00:00:01:02";
  writeState(saved.dump());
  k = restart();
  ASSERT_TRUE(k->real("web", "10.0.1.2"));
  EXPECT_TRUE(k->real("web", "10.0.1.2")->draining);
  ASSERT_TRUE(k->real("web", "10.0.1.2")->mac);
}

TEST_F(RuntimeStateTest, IpipRealsWithoutAMacAskTheNeighbourTableNothing) {
  make();
  resolverCalls_ = 0;
  resolved_.clear();
  changeEverything();  // service.add dns and real.add web 10.0.1.9, ipip, no macs
  EXPECT_EQ(resolverCalls_, 0);
  backend_.reset();

  auto k = restart();
  EXPECT_TRUE(k->real("dns", "10.0.3.1"));  // replayed
  EXPECT_TRUE(k->real("web", "10.0.1.9"));
  EXPECT_EQ(resolverCalls_, 0);
  EXPECT_TRUE(resolved_.empty());
}

// A real's check is not part of what a runtime change to the real is
// compared with: tuning the service's check in the file (require_reply, the
// interval) keeps a drain and a weight made with keelctl, on a reload and
// on a restart after the file changed while keeld was stopped. The file's
// weight for the real still wins.
TEST_F(RuntimeStateTest, TuningTheServicesCheckKeepsTheRealsDrainAndWeight) {
  files_["keel.yaml"] = yaml(kTwo, "    health: {type: udp, port: 9}\n");
  make();
  ASSERT_TRUE(backend_->setRealDrain({{"web", ip("10.0.1.2")}, true, ""}).isOk());
  ASSERT_TRUE(backend_->setRealWeight({{"web", ip("10.0.1.1")}, 7}).isOk());
  files_["keel.yaml"] = yaml(kTwo, "    health: {type: udp, port: 9, require_reply: true}\n");
  api::Result r = backend_->reload();
  ASSERT_TRUE(r.isOk()) << r.error().message;
  EXPECT_FALSE(r.result().contains("warnings")) << r.result().dump();
  EXPECT_TRUE(realOf("10.0.1.2").draining) << "the file changed the check, not the real: the drain stays";
  EXPECT_EQ(realOf("10.0.1.1").weight, 7u);
  // The state file still stores each real's check (a keeld before this rule
  // compares it, so a rollback to one keeps the overlay); this one does not
  // compare it.
  nlohmann::json state = readState();
  for (const nlohmann::json& e : state["reals"]) EXPECT_TRUE(e["file"].contains("health")) << e.dump();
  // Changed again while keeld is stopped: a restart keeps them too.
  backend_.reset();
  files_["keel.yaml"] = yaml(kTwo, "    health: {type: udp, port: 9, interval: 3s}\n");
  auto k = restart();
  EXPECT_TRUE(k->real("web", "10.0.1.2")->draining);
  EXPECT_EQ(k->real("web", "10.0.1.1")->weight, 7u);
  k.reset();
  // Whatever check the state file names, it is left out of the comparison.
  state = readState();
  for (nlohmann::json& e : state["reals"])
    e["file"]["health"] = {{"type", "udp"}, {"port", 1}, {"interval_ms", 99}};
  writeState(state.dump());
  k = restart();
  EXPECT_TRUE(k->real("web", "10.0.1.2")->draining);
  EXPECT_EQ(k->real("web", "10.0.1.1")->weight, 7u);
  k.reset();
  // The file's own weight for the real: the file wins.
  files_["keel.yaml"] = yaml("      - {address: 10.0.1.1, weight: 100}\n      - {address: 10.0.1.2, weight: 60}\n",
                             "    health: {type: udp, port: 9, interval: 3s}\n");
  k = restart();
  EXPECT_FALSE(k->real("web", "10.0.1.2")->draining);
  EXPECT_EQ(k->real("web", "10.0.1.2")->weight, 60u);
  EXPECT_EQ(k->real("web", "10.0.1.1")->weight, 7u);
}

TEST_F(RuntimeStateTest, TheFileWinsWhereItChangedWhatTheOverlayChanged) {
  make();
  changeEverything();
  backend_.reset();
  // Meanwhile the file defines dns and 10.0.1.9 itself, changes 10.0.1.2
  // and adds a real to api; 10.0.1.1 is as it was.
  files_["keel.yaml"] = yaml(
      "      - {address: 10.0.1.1, weight: 100}\n"
      "      - {address: 10.0.1.2, weight: 60}\n"
      "      - {address: 10.0.1.9, weight: 20}\n") +
      "  - name: api\n    vip: 10.0.0.1\n    port: 81\n    protocol: tcp\n    reals:\n"
      "      - {address: 10.0.2.1}\n      - {address: 10.0.2.2}\n"
      "  - name: dns\n    vip: 10.0.0.54\n    port: 53\n    protocol: udp\n    reals:\n"
      "      - {address: 10.0.4.1}\n";
  auto k = restart();
  EXPECT_EQ(k->backend->findService("dns")->vip, ip("10.0.0.54"));
  EXPECT_FALSE(k->real("dns", "10.0.3.1"));
  EXPECT_EQ(k->real("web", "10.0.1.2")->weight, 60u);
  EXPECT_EQ(k->real("web", "10.0.1.9")->weight, 20u);
  EXPECT_EQ(k->real("web", "10.0.1.9")->check, "none");
  EXPECT_TRUE(k->real("api", "10.0.2.2"));
  EXPECT_TRUE(k->real("web", "10.0.1.1")->draining);
  // What was dropped is gone from the state too (the runtime dns's weight
  // went with it); only the drain is left.
  nlohmann::json state = readState();
  EXPECT_TRUE(state["services"].empty());
  EXPECT_TRUE(state["removed_services"].empty());
  ASSERT_EQ(state["reals"].size(), 1u) << state.dump();
  EXPECT_EQ(state["reals"][0]["address"], "10.0.1.1");
}

// A reload applies the same rule to the running overlay (rebase): the state
// it leaves is what a restart would have kept.
TEST_F(RuntimeStateTest, AReloadKeepsWhatARestartKeeps) {
  make();
  changeEverything();
  files_["keel.yaml"] = yaml(
      "      - {address: 10.0.1.1, weight: 100}\n"
      "      - {address: 10.0.1.2, weight: 60}\n") +
      kApi +
      "  - name: dns\n    vip: 10.0.0.54\n    port: 53\n    protocol: udp\n    reals:\n"
      "      - {address: 10.0.4.1}\n";
  ASSERT_TRUE(backend_->reload().isOk());
  EXPECT_EQ(backend_->findService("dns")->vip, ip("10.0.0.54"));
  EXPECT_EQ(realOf("10.0.1.2").weight, 60u);
  EXPECT_TRUE(realOf("10.0.1.1").draining);
  EXPECT_EQ(realOf("10.0.1.9").weight, 10u);  // the file does not define it: kept
  EXPECT_FALSE(backend_->findService("api"));  // the file did not change api: still removed
  nlohmann::json state = readState();
  EXPECT_TRUE(state["services"].empty());
  std::set<std::string> reals;
  for (const auto& e : state["reals"]) reals.insert(e["service"].get<std::string>() + " " + e["address"].get<std::string>());
  EXPECT_EQ(reals, (std::set<std::string>{"web 10.0.1.1", "web 10.0.1.9"}));
  EXPECT_EQ(state["removed_services"].size(), 1u);
}

// A file service under another name on a runtime service's VIP, port and
// protocol takes its place on a reload, as on a restart (it used to fail
// the whole reload as a duplicate VIP).
TEST_F(RuntimeStateTest, AReloadLetsTheFileClaimARuntimeServicesVip) {
  make();
  changeEverything();
  files_["keel.yaml"] = yaml(kTwo) + kApi +
      "  - name: resolver\n    vip: 10.0.0.53\n    port: 53\n    protocol: udp\n    reals:\n"
      "      - {address: 10.0.4.1}\n";
  api::Result r = backend_->reload();
  ASSERT_TRUE(r.isOk()) << r.error().message;
  EXPECT_FALSE(backend_->findService("dns"));
  ASSERT_TRUE(backend_->findService("resolver"));
  EXPECT_EQ(backend_->findService("resolver")->reals.size(), 1u);
  EXPECT_TRUE(readState()["services"].empty());

  // And a restart over the same file and state keeps it so.
  backend_.reset();
  auto k = restart();
  EXPECT_FALSE(k->backend->findService("dns"));
  EXPECT_TRUE(k->backend->findService("resolver"));
}

// keeld's runtime state file: a restarted keeld keeps drains and weights set
// with keelctl, unless the file changed that real meanwhile (file wins).
TEST_F(RuntimeStateTest, DrainsAndWeightsSurviveARestartUnlessTheFileChangedThatReal) {
  make();
  ASSERT_TRUE(backend_->setRealDrain({{"web", ip("10.0.1.1")}, true, ""}).isOk());
  ASSERT_TRUE(backend_->setRealWeight({{"web", ip("10.0.1.2")}, 50}).isOk());
  backend_.reset();
  auto k = restart();
  ASSERT_TRUE(k->real("web", "10.0.1.1") && k->real("web", "10.0.1.2"));
  EXPECT_TRUE(k->real("web", "10.0.1.1")->draining);
  EXPECT_EQ(k->real("web", "10.0.1.1")->weight, 100u);  // what undrain restores
  EXPECT_EQ(k->real("web", "10.0.1.2")->weight, 50u);
  EXPECT_EQ(std::set<uint32_t>(k->dp.rings[0].begin(), k->dp.rings[0].end()).size(), 1u);

  // The file now gives 10.0.1.2 another weight: that override is dropped.
  files_["keel.yaml"] = yaml("      - {address: 10.0.1.1, weight: 100}\n"
                             "      - {address: 10.0.1.2, weight: 70}\n");
  k.reset();
  // A restart's one runtime_state_dropped record, named as a reload names
  // it (change=): what was given up, not only why.
  auto restartDropping = [&](const std::string& what) {
    test::LogCapture dropLog;
    k = restart();
    const std::vector<std::string> dropped = dropLog.take("runtime_state_dropped");
    ASSERT_EQ(dropped.size(), 1u);
    EXPECT_NE(dropped[0].find(what + " reason=\"the file changed this real\""), std::string::npos) << dropped[0];
  };
  restartDropping("real=10.0.1.2 change=\"weight 50\"");
  EXPECT_TRUE(k->real("web", "10.0.1.1")->draining);
  EXPECT_EQ(k->real("web", "10.0.1.2")->weight, 70u);
  // The same for the drain: the file changes the drained real while no
  // keeld runs, and the start that undoes the maintenance says so.
  files_["keel.yaml"] = yaml("      - {address: 10.0.1.1, weight: 90}\n"
                             "      - {address: 10.0.1.2, weight: 70}\n");
  k.reset();
  restartDropping("real=10.0.1.1 change=drain");
  EXPECT_FALSE(k->real("web", "10.0.1.1")->draining);
  ASSERT_TRUE(k->backend->setRealDrain({{"web", ip("10.0.1.1")}, true, ""}).isOk());
  ASSERT_TRUE(k->backend->setRealDrain({{"web", ip("10.0.1.1")}, false, ""}).isOk());
  k.reset();
  k = restart();
  EXPECT_FALSE(k->real("web", "10.0.1.1")->draining);

  // A damaged file is ignored, not fatal; it is set aside before the next
  // save overwrites it, and the error says what is lost (operator review
  // M1: it was overwritten at once, at warning level).
  k.reset();
  writeState("{not json");
  test::LogCapture log;
  k = restart();
  EXPECT_FALSE(k->real("web", "10.0.1.1")->draining);
  const std::vector<std::string> ignored = log.take("runtime_state_ignored");
  ASSERT_EQ(ignored.size(), 1u);
  EXPECT_EQ(ignored[0].rfind("error ", 0), 0u) << ignored[0];
  EXPECT_NE(ignored[0].find("not valid JSON (cut short or damaged?)"), std::string::npos) << ignored[0];
  EXPECT_NE(ignored[0].find("drains, weights, added and removed services and reals) are not applied"),
            std::string::npos)
      << ignored[0];
  const std::vector<std::string> aside = setAside();
  ASSERT_EQ(aside.size(), 1u);
  EXPECT_NE(ignored[0].find("kept_as=" + aside[0]), std::string::npos) << ignored[0];
  EXPECT_EQ(fileText(aside[0]), "{not json");

  // Nested past kMaxJsonDepth (a tampered file: 100,000 levels made
  // every start overflow the stack walking it, security review): ignored.
  k.reset();
  writeState("{\"version\": 2, \"stopped\": {\"macs\": " + std::string(100000, '[') + std::string(100000, ']') +
             "}}");
  k = restart();
  const std::vector<std::string> deep = log.take("runtime_state_ignored");
  ASSERT_EQ(deep.size(), 1u);
  EXPECT_NE(deep[0].find("JSON nested deeper than 64 levels"), std::string::npos) << deep[0];
  EXPECT_EQ(readState()["version"], 2) << "a new file is written beside it";
}

// A start the data plane refuses with or without the keelctl changes: the
// state file was not the cause, so it is not set aside (before, it was
// moved to .bad-STAMP, and the next start, once the plane took writes
// again, silently undid the drain).
TEST_F(RuntimeStateTest, AStartThePlaneRefusesKeepsTheStateFileInPlace) {
  make();
  ASSERT_TRUE(backend_->setRealDrain({{"web", ip("10.0.1.1")}, true, ""}).isOk());
  backend_.reset();
  const std::string before = fileText(statePath_);
  {
    test::LogCapture log;
    auto k = std::make_unique<Keeld>();
    k->dp.failAll = true;                     // every write refused
    forward_ = [] { return Status::ok(); };  // the start's result is this test's to check
    k->backend = started(k->io, k->registry);
    EXPECT_FALSE(startStatus_) << "the plane refused every write";
    EXPECT_TRUE(log.take("runtime_state_ignored").empty());
    for (const auto& e : std::filesystem::directory_iterator(dir_))
      EXPECT_EQ(e.path().filename().string().find(".bad-"), std::string::npos) << e.path();
    EXPECT_EQ(fileText(statePath_), before);
  }
  forward_ = nullptr;
  auto k = restart();
  ASSERT_TRUE(k->real("web", "10.0.1.1"));
  EXPECT_TRUE(k->real("web", "10.0.1.1")->draining) << "the next start applies the drain";
}

// An adopting restart that finds no state file (control.socket moved to
// another directory, or the file removed) cannot apply the keelctl changes
// the plane ran with: it says so at warning level and counts the services
// it removed (operator review H1: only info-level service_removed lines).
TEST_F(RuntimeStateTest, AnAdoptingRestartWithoutItsStateFileWarns) {
  make();
  changeEverything();  // adds dns, removes api (a file service)
  backend_.reset();
  std::filesystem::remove(statePath_);
  test::LogCapture log;
  auto k = restart(&dp_);
  EXPECT_FALSE(k->backend->findService("dns"));
  EXPECT_TRUE(k->backend->findService("api"));
  const std::vector<std::string> missing = log.take("runtime_state_missing");
  ASSERT_EQ(missing.size(), 1u);
  EXPECT_EQ(missing[0].rfind("warning ", 0), 0u) << missing[0];
  EXPECT_NE(missing[0].find("removed_services=1 "), std::string::npos) << missing[0];
  EXPECT_NE(missing[0].find("path=" + statePath_), std::string::npos) << missing[0];
  // With its file, the same restart says nothing of the kind.
  ASSERT_TRUE(k->backend->addService([] {
    api::ServiceAddRequest dns;
    dns.name = "dns2";
    dns.vip = ip("10.0.0.54");
    dns.port = 53;
    dns.protocol = KEEL_PROTO_UDP;
    dns.reals.push_back(api::RealSpec{ip("10.0.3.1"), 5, std::nullopt, nullptr});
    return dns;
  }()).isOk());
  const MockDataplane plane = k->dp;
  k.reset();
  k = restart(&plane);
  EXPECT_TRUE(k->backend->findService("dns2"));
  EXPECT_TRUE(log.take("runtime_state_missing").empty());
}

// The drain's record is saved with the drain and read back by the next
// keeld; a damaged record (or none, as an older keeld wrote) loses the
// record, never the drain.
TEST_F(RuntimeStateTest, ADrainKeepsItsTimeAndReasonAcrossARestart) {
  make();
  ASSERT_TRUE(backend_->setRealDrain({{"web", ip("10.0.1.1")}, true, "rack move"}).isOk());
  const auto since = realOf("10.0.1.1").drainedSince;
  ASSERT_TRUE(since);
  backend_.reset();
  auto k = restart();
  ASSERT_TRUE(k->real("web", "10.0.1.1"));
  EXPECT_TRUE(k->real("web", "10.0.1.1")->draining);
  EXPECT_EQ(k->real("web", "10.0.1.1")->drainedSince, since);
  EXPECT_EQ(k->real("web", "10.0.1.1")->drainReason, "rack move");

  k.reset();
  nlohmann::json state = readState();
  for (auto& e : state["reals"])
    if (e["address"] == "10.0.1.1") {
      e["drained_since"] = "yesterday";
      e["drain_reason"] = std::string(300, 'x');
    }
  writeState(state.dump());
  k = restart();
  EXPECT_TRUE(k->real("web", "10.0.1.1")->draining);
  EXPECT_FALSE(k->real("web", "10.0.1.1")->drainedSince);
  EXPECT_EQ(k->real("web", "10.0.1.1")->drainReason, "");
}

// A state file from before 2026-12-06 may hold a file real removed and
// added back as an "added" real: the next keeld keeps only what addReal now
// keeps (a weight other than the file's), so neither its status nor a
// reload that drops the real from the file reports a phantom addition.
TEST_F(RuntimeStateTest, AnOldAddedEntryOfAFileRealBecomesTheFilesReal) {
  make();
  api::RealAddRequest add = realAdd("web", "10.0.1.9");
  ASSERT_TRUE(backend_->removeReal({"web", ip("10.0.1.2")}).isOk());
  ASSERT_TRUE(backend_->addReal(add).isOk());
  backend_.reset();
  // What such a keeld saved: the add's entry, at the file real's address,
  // with the file's fingerprint of that real (the removal's entry had it).
  nlohmann::json doc = readState();
  nlohmann::json removed, added;
  for (const auto& e : doc["reals"]) (e["address"] == "10.0.1.2" ? removed : added) = e;
  ASSERT_TRUE(removed.is_object() && added.is_object()) << doc.dump();
  added["address"] = "10.0.1.2";
  added["added"]["address"] = "10.0.1.2";
  added["file"] = removed["file"];
  doc["reals"] = nlohmann::json::array({added});
  writeState(doc.dump());
  test::LogCapture log;
  auto k = restart();
  EXPECT_TRUE(log.take("runtime_state_dropped").empty());
  EXPECT_EQ(k->backend->daemonStatus().runtime, api::DaemonStatus::RuntimeChanges{});
  EXPECT_EQ(k->real("web", "10.0.1.2")->weight, 100u);
  files_["keel.yaml"] = yaml("      - {address: 10.0.1.1, weight: 100}\n") + kApi;
  api::Result r = k->backend->reload();
  ASSERT_TRUE(r.isOk()) << r.error().message;
  EXPECT_FALSE(r.result().contains("warnings")) << r.result().dump();
}

TEST_F(RuntimeStateTest, BadEntriesAreDroppedAndBadFilesIgnored) {
  make();
  changeEverything();
  backend_.reset();
  // An entry that no longer validates (here: a health key the parser
  // refuses) is dropped on its own; the rest is kept.
  nlohmann::json doc = readState();
  for (auto& e : doc["reals"])
    if (e["address"] == "10.0.1.9") e["added"]["health"]["rise"] = "many";
  writeState(doc.dump());
  auto k = restart();
  EXPECT_FALSE(k->real("web", "10.0.1.9"));
  EXPECT_TRUE(k->real("web", "10.0.1.1")->draining);
  EXPECT_TRUE(k->backend->findService("dns"));

  // Version 1 (drains and weights of file reals) is still read.
  k.reset();
  writeState(R"({"version":1,"reals":[{"service":"web","address":"10.0.1.2","file_weight":100,)"
             R"("drained":true},{"service":"web","address":"10.0.1.1","file_weight":99,"weight":3}]})");
  k = restart();
  EXPECT_TRUE(k->real("web", "10.0.1.2")->draining);
  EXPECT_EQ(k->real("web", "10.0.1.1")->weight, 100u);  // the file's weight changed: dropped
  EXPECT_FALSE(k->backend->findService("dns"));

  // Damaged or foreign files: ignored, start-up goes on with the file alone.
  for (const char* text : {"{not json", "[1,2]", R"({"version":3,"reals":[]})",
                           R"({"version":2,"reals":[]})", R"({"reals":"x"})",
                           // A key twice (the last would drain 10.0.1.2): which was meant is unknown.
                           R"({"version":1,"reals":[{"service":"web","address":"10.0.1.2","file_weight":100,)"
                           R"("drained":false,"drained":true}]})"}) {
    SCOPED_TRACE(text);
    k.reset();
    writeState(text);
    k = restart();
    EXPECT_FALSE(k->real("web", "10.0.1.2")->draining);
    EXPECT_TRUE(k->backend->findService("api"));
  }
}

TEST_F(DaemonBackendTest, ReloadHookSeesBeginAndOutcome) {
  make();
  std::vector<std::pair<bool, bool>> seen;
  backend_->setReloadHook([&](bool done, bool ok) { seen.emplace_back(done, ok); });
  EXPECT_TRUE(backend_->reload().isOk());
  files_["keel.yaml"] = "services: [";
  EXPECT_FALSE(backend_->reload().isOk());
  EXPECT_EQ(seen, (std::vector<std::pair<bool, bool>>{{false, true}, {true, true}, {false, true}, {true, false}}));
}

// stats.get through the real dispatcher: one counter read and one
// connection-table count per request, whole or filtered, and the services
// and global counters it returns come from that read.
TEST_F(DaemonBackendTest, StatsGetReadsTheDataPlaneOnce) {
  // Two services, so the filter has one to leave out.
  files_["keel.yaml"] = yaml(kTwo) + "  - {name: api, vip: 10.0.0.1, port: 81, protocol: tcp, reals: [{address: 10.0.2.1}]}\n";
  make();
  dp_.stats.reasons[KEEL_R_TX_IPIP] = {7, 700};
  dp_.stats.backends.assign(16, keel_counter{});
  dp_.stats.backends[idOf("10.0.1.2")] = {5, 500};
  dp_.connTable = 3;

  int reads = dp_.readStatsCalls;
  const int counts = dp_.connTableCalls;
  auto r = call(R"({"id":1,"method":"stats.get"})");
  ASSERT_EQ(r["ok"], true) << r.dump();
  EXPECT_EQ(dp_.readStatsCalls, reads + 1);
  EXPECT_EQ(dp_.connTableCalls, counts + 1);
  EXPECT_EQ(r["result"]["reasons"]["tx_ipip"]["packets"], 7);
  EXPECT_EQ(r["result"]["conntrack"]["entries"], 3);
  ASSERT_EQ(r["result"]["services"].size(), 2u);
  for (const auto& svc : r["result"]["services"])
    for (const auto& real : svc["reals"])
      EXPECT_EQ(real["packets"], real["address"] == "10.0.1.2" ? 5 : 0) << real.dump();

  reads = dp_.readStatsCalls;
  r = call(R"({"id":2,"method":"stats.get","params":{"service":"web"}})");
  ASSERT_EQ(r["ok"], true) << r.dump();
  EXPECT_EQ(dp_.readStatsCalls, reads + 1);
  EXPECT_EQ(dp_.connTableCalls, counts + 2);
  ASSERT_EQ(r["result"]["services"].size(), 1u);
  EXPECT_EQ(r["result"]["services"][0]["name"], "web");
  EXPECT_EQ(r["result"]["reasons"]["tx_ipip"]["packets"], 7);

  r = call(R"({"id":3,"method":"stats.get","params":{"service":"nope"}})");
  EXPECT_EQ(r["error"]["code"], "not_found");
  EXPECT_EQ(r["error"]["message"], "services[nope]: not found");
  EXPECT_EQ(r["error"]["field"], "params.service");
}

// health.show shows no counter, so it reads none: a read copies every
// per-id counter table, and health.show is what an operator polls. The
// same for lookup and the existence checks of a mutation (real.drain).
// (That the methods that do show counters read them once each, so this
// count moves at all, is ServiceListAndShowDoNotCountTheConnectionTable's.)
TEST_F(DaemonBackendTest, HealthShowReadsNoDataPlaneStats) {
  make();
  const int reads = dp_.readStatsCalls;
  auto r = call(R"({"id":1,"method":"health.show"})");
  ASSERT_EQ(r["ok"], true) << r.dump();
  ASSERT_EQ(r["result"]["services"].size(), 1u);
  EXPECT_EQ(r["result"]["services"][0]["reals"].size(), 2u);
  EXPECT_EQ(r["result"]["services"][0]["reals"][0]["state"], "up");
  r = call(R"({"id":2,"method":"health.show","params":{"service":"web"}})");
  ASSERT_EQ(r["ok"], true) << r.dump();
  EXPECT_EQ(r["result"]["services"][0]["name"], "web");
  r = call(R"({"id":3,"method":"health.show","params":{"service":"nope"}})");
  EXPECT_EQ(r["error"]["code"], "not_found");
  EXPECT_EQ(r["error"]["field"], "params.service");
  r = call(R"({"id":4,"method":"real.drain","params":{"service":"web","address":"10.0.1.1"}})");
  ASSERT_EQ(r["ok"], true) << r.dump();
  r = call(R"({"id":5,"method":"health.show","params":{"service":"web"}})");
  EXPECT_EQ(r["result"]["services"][0]["reals"][0]["state"], "draining");
  r = call(R"({"id":6,"method":"lookup","params":{"service":"web","client_address":"192.0.2.1","client_port":1234}})");
  ASSERT_EQ(r["ok"], true) << r.dump();
  EXPECT_EQ(r["result"]["real"], "10.0.1.2");
  EXPECT_EQ(dp_.readStatsCalls, reads);
}

// service.list and service.show show counters but no connection-table
// count, so they read the counters (once each) and never ask the plane to
// count its table (on XDP a BPF iterator run over every map in the system).
TEST_F(DaemonBackendTest, ServiceListAndShowDoNotCountTheConnectionTable) {
  make();
  dp_.connTable = 9;
  dp_.stats.backends.assign(16, keel_counter{});
  dp_.stats.backends[idOf("10.0.1.2")] = {5, 500};
  const int reads = dp_.readStatsCalls, counts = dp_.connTableCalls;
  auto r = call(R"({"id":1,"method":"service.list"})");
  ASSERT_EQ(r["ok"], true) << r.dump();
  EXPECT_EQ(r["result"]["services"][0]["reals"][1]["packets"], 5) << r.dump();
  EXPECT_EQ(dp_.readStatsCalls, reads + 1);
  r = call(R"({"id":2,"method":"service.show","params":{"name":"web"}})");
  ASSERT_EQ(r["ok"], true) << r.dump();
  EXPECT_EQ(r["result"]["service"]["reals"][1]["packets"], 5) << r.dump();
  EXPECT_EQ(dp_.readStatsCalls, reads + 2);
  EXPECT_EQ(dp_.connTableCalls, counts);
  // A name that does not exist reads nothing at all.
  r = call(R"({"id":3,"method":"service.show","params":{"name":"nope"}})");
  EXPECT_EQ(r["error"]["code"], "not_found");
  EXPECT_EQ(r["error"]["field"], "params.name");
  EXPECT_EQ(dp_.readStatsCalls, reads + 2);
}

// Each snapshot gets its own service's counters, reals' counters, check
// type and undrain weight, whatever order the file lists services in: the
// lookups by name (statsOf, servicesByName) must pair every service with its
// own entries, for the whole list and for one service.
TEST_F(DaemonBackendTest, SnapshotsPairEachServiceWithItsOwnCountersAndConfig) {
  files_["keel.yaml"] = yaml(kTwo) +
                        "  - {name: zz, vip: 10.0.0.3, port: 80, protocol: tcp, reals: [{address: 10.0.3.1, weight: 3}]}\n"
                        "  - {name: api, vip: 10.0.0.4, port: 80, protocol: tcp, health: {type: tcp, interval: 1m},\n"
                        "     reals: [{address: 10.0.2.1, weight: 7}, {address: 10.0.2.2}]}\n";
  make();
  api::RealDrainRequest drain;
  drain.real = {"api", ip("10.0.2.1")};
  ASSERT_TRUE(backend_->setRealDrain(drain).isOk());
  dp_.stats.services.assign(16, keel_counter{});
  dp_.stats.backends.assign(16, keel_counter{});
  const std::map<std::string, uint64_t> servicePackets{{"web", 11}, {"zz", 22}, {"api", 33}};
  for (const auto& [name, packets] : servicePackets) dp_.stats.services[registry_.service(name)->id] = {packets, 0};
  // A real's packets: the last octet of its address plus 100 x its service's.
  const std::map<std::string, uint64_t> realPackets{
      {"10.0.1.1", 101}, {"10.0.1.2", 102}, {"10.0.3.1", 201}, {"10.0.2.1", 301}, {"10.0.2.2", 302}};
  for (const auto& [addr, packets] : realPackets) dp_.stats.backends[idOf(addr.c_str())] = {packets, 0};

  auto check = [&](const api::ServiceSnapshot& s) {
    SCOPED_TRACE(s.name);
    EXPECT_EQ(s.counters.packets, servicePackets.at(s.name));
    for (const api::RealSnapshot& r : s.reals) {
      SCOPED_TRACE(r.address.toString());
      EXPECT_EQ(r.counters.packets, realPackets.at(r.address.toString()));
      EXPECT_EQ(r.check, s.name == "api" ? "tcp" : "none");
      EXPECT_EQ(r.draining, r.address == ip("10.0.2.1"));
      if (r.draining) {
        EXPECT_EQ(r.weight, 7u);  // the file's weight, which undrain restores
      }
    }
  };
  std::vector<api::ServiceSnapshot> all = backend_->listServices();
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].name, "api");
  EXPECT_EQ(all[1].name, "web");
  EXPECT_EQ(all[2].name, "zz");
  for (const auto& s : all) check(s);
  for (const char* name : {"api", "web", "zz"}) {
    std::optional<api::ServiceSnapshot> one = backend_->findService(name);
    ASSERT_TRUE(one);
    check(*one);
  }
  // health.show's states read no counters: every service has none.
  for (const auto& s : backend_->serviceStates(std::nullopt)) {
    EXPECT_EQ(s.counters.packets, 0u) << s.name;
    for (const auto& r : s.reals) EXPECT_EQ(r.counters.packets, 0u) << s.name;
  }
}

TEST_F(DaemonBackendTest, ShutdownCallsTheStopper) {
  make();
  backend_->shutdown(true);
  EXPECT_EQ(stopped_, 2);
}

// keeld's state files are named in one place, keyed like its pins: the
// interface (XDP), the port (DPDK: the interface a kernel vdev taps, else
// the device name), so keelds sharing a directory keep their own.
TEST(StateFiles, KeyedByInterfaceOrPort) {
  auto files = [](const std::string& dataplane) {
    ConfigResult r = parseConfig("dataplane: " + dataplane + "\n", "k.yaml", ConfigOptions{});
    EXPECT_TRUE(r.ok()) << (r.errors.empty() ? "" : r.errors.front());
    return r.ok() ? stateFiles(*r.config, "/run/keel") : StateFiles{};
  };
  StateFiles f = files("{kind: xdp, interface: eth0}");
  EXPECT_EQ(f.runtime, "/run/keel/runtime-eth0.json");
  EXPECT_EQ(f.applied, "/run/keel/applied-eth0.yaml");
  f = files("{kind: dpdk, interface: eth1, dpdk: {port: \"net_af_packet0,iface=eth1,qpairs=2\", workers: [1, 2]}}");
  EXPECT_EQ(f.runtime, "/run/keel/runtime-dpdk-eth1.json");
  EXPECT_EQ(f.applied, "/run/keel/applied-dpdk-eth1.yaml");
  EXPECT_EQ(f.conntrack, "/run/keel/conntrack-dpdk-eth1.bin");
  EXPECT_EQ(f.interfaceState, "/run/keel/interface-dpdk-eth1.txt");
  f = files("{kind: dpdk, interface: eth1, dpdk: {port: \"eth_af_packet0,iface=eth1\", workers: [1]}}");
  EXPECT_EQ(f.conntrack, "/run/keel/conntrack-dpdk-eth1.bin") << "the alias names the same port";
  f = files("{kind: dpdk, interface: eth1, dpdk: {port: \"03:00.0\", workers: [1]}}");
  EXPECT_EQ(f.runtime, "/run/keel/runtime-dpdk-0000:03:00.0.json");
  EXPECT_EQ(f.conntrack, "/run/keel/conntrack-dpdk-0000:03:00.0.bin");
}

}  // namespace
}  // namespace keel

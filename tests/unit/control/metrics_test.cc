// SPDX-License-Identifier: Apache-2.0
// keeld's Prometheus metrics: the exposition a snapshot renders to (names,
// IPVS-style labels, values taken from the registry over the mock data
// plane), the health histogram made cumulative, the collector reading only
// on the loop's thread and giving up on a stuck loop, and the HTTP endpoint
// (IPv4 and IPv6, 404/405, gzip, keep-alive, two scrapes at once, stop).
#include "daemon/metrics.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <prometheus/text_serializer.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <functional>
#include <future>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>

#include "daemon/daemon_backend.h"
#include "mock_dataplane.h"
#include "wall_clock.h"
#include "registry_builders.h"

namespace keel {
namespace {

using test::MockDataplane;

IpAddress ip(const char* s) { return *IpAddress::parse(s); }

std::string text(const std::vector<prometheus::MetricFamily>& families) {
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, families);
  return out.str();
}

// The whole line for a sample (name{labels} value), so a wrong value, a
// missing label or a label out of order all fail.
::testing::AssertionResult hasLine(const std::string& exposition, const std::string& line) {
  std::istringstream in(exposition);
  for (std::string l; std::getline(in, l);)
    if (l == line) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "no line\n  " << line << "\nin\n" << exposition;
}

const char* kConfig =
    "dataplane: {kind: xdp, interface: eth0}\n"
    "node: {tunnel_source_v4: 10.0.0.2, tunnel_source_v6: \"fd00::2\", next_hop_mac: \"02:00:00:00:00:01\"}\n"
    "limits: {conn_table_size: 5000}\n"
    "services:\n"
    "  - name: web\n"
    "    vip: 10.0.0.1\n"
    "    port: 80\n"
    "    protocol: tcp\n"
    "    reals:\n"
    "      - {address: 10.0.1.1, weight: 100}\n"
    "      - {address: 10.0.1.2, weight: 30}\n"
    "  - name: dns\n"
    "    vip: \"2001:db8::53\"\n"
    "    port: 53\n"
    "    protocol: udp\n"
    "    reals:\n"
    "      - {address: \"fd00:1::1\"}\n";

class MetricsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    backend_ = std::make_unique<DaemonBackend>(
        io_, registry_, "keel.yaml",
        [this](const std::string& p) { return parseConfig(configText_, p); },
        [](const Config&, const Config&) { return Status::ok(); }, [](bool) {});
    ConfigResult r = parseConfig(kConfig, "keel.yaml");
    ASSERT_TRUE(r.ok()) << r.errors.front();
    ASSERT_TRUE(backend_->start(*r.config));
  }

  BackendId idOf(const char* addr) {
    for (const auto& v : registry_.services())
      for (const auto& real : v.reals)
        if (real.address == ip(addr)) return real.backendId;
    ADD_FAILURE() << "no real " << addr;
    return 0;
  }
  ServiceId serviceId(const char* name) {
    for (const auto& v : registry_.services())
      if (v.name == name) return v.id;
    ADD_FAILURE() << "no service " << name;
    return 0;
  }

  // Runs the loop until the first flow count has ended (bounded).
  void waitForFlowCounts() {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (!backend_->flowCounts() && std::chrono::steady_clock::now() < deadline) {
      io_.restart();
      io_.run_for(std::chrono::milliseconds(10));
    }
  }

  // Reloads kConfig with metrics.flow_count_interval set to `interval`.
  api::Result reloadWithFlowCountInterval(const std::string& interval) {
    configText_ = std::string(kConfig) + "metrics: {flow_count_interval: " + interval + "}\n";
    return backend_->reload();
  }

  std::string configText_ = kConfig;  // what a reload reads
  boost::asio::io_context io_;
  MockDataplane dp_{DataplaneLimits{16, 64, 5000}};
  Registry registry_{dp_};
  std::unique_ptr<DaemonBackend> backend_;
};

const std::string kWeb = R"(service="web",local_address="10.0.0.1",local_port="80",proto="TCP")";
const std::string kReal1 = kWeb + R"(,remote_address="10.0.1.1",remote_port="80")";
const std::string kReal2 = kWeb + R"(,remote_address="10.0.1.2",remote_port="80")";

TEST_F(MetricsTest, ServicesRealsAndReasonsFromTheRegistry) {
  dp_.stats.services.resize(16);
  dp_.stats.backends.resize(64);
  dp_.stats.services[serviceId("web")] = {12, 1200};
  dp_.stats.backends[idOf("10.0.1.1")] = {7, 700};
  dp_.stats.backends[idOf("10.0.1.2")] = {5, 500};
  dp_.stats.reasons[KEEL_R_TX_IPIP] = {12, 1200};
  dp_.stats.reasons[KEEL_R_DROP_NO_BACKEND] = {3, 180};
  ASSERT_TRUE(backend_->setRealDrain({{"web", ip("10.0.1.2")}, true, ""}).isOk());

  const std::string out = text(renderMetrics(collectSnapshot(*backend_, "9.9.9")));
  EXPECT_TRUE(hasLine(out, R"(keel_build_info{version="9.9.9",dataplane="mock"} 1)"));
  EXPECT_TRUE(hasLine(out, "keel_scrape_success 1"));
  EXPECT_TRUE(hasLine(out, "keel_service_packets_total{" + kWeb + "} 12"));
  EXPECT_TRUE(hasLine(out, "keel_service_bytes_total{" + kWeb + "} 1200"));
  EXPECT_TRUE(hasLine(out, "keel_service_ring_slots{" + kWeb + "} 65537"));
  EXPECT_TRUE(hasLine(out, "keel_real_packets_total{" + kReal1 + "} 7"));
  EXPECT_TRUE(hasLine(out, "keel_real_bytes_total{" + kReal2 + "} 500"));
  EXPECT_TRUE(hasLine(out, "keel_real_up{" + kReal1 + "} 1"));
  EXPECT_TRUE(hasLine(out, "keel_real_weight{" + kReal1 + "} 100"));
  // Drained: the weight it returns with, and the drain flag.
  EXPECT_TRUE(hasLine(out, "keel_real_weight{" + kReal2 + "} 30"));
  EXPECT_TRUE(hasLine(out, "keel_real_draining{" + kReal2 + "} 1"));
  EXPECT_TRUE(hasLine(out, "keel_real_draining{" + kReal1 + "} 0"));
  // IPv6 VIP and real, UDP.
  EXPECT_TRUE(hasLine(out, R"(keel_real_up{service="dns",local_address="2001:db8::53",local_port="53",proto="UDP",remote_address="fd00:1::1",remote_port="53"} 1)"));
  EXPECT_TRUE(hasLine(out, R"(keel_dataplane_packets_total{reason="tx_ipip"} 12)"));
  EXPECT_TRUE(hasLine(out, R"(keel_dataplane_bytes_total{reason="drop_no_backend"} 180)"));
  EXPECT_TRUE(hasLine(out, R"(keel_dataplane_packets_total{reason="pass_not_ip"} 0)"));
  EXPECT_TRUE(hasLine(out, "keel_conntrack_capacity 5000"));
  EXPECT_EQ(out.find("keel_conntrack_entries"), std::string::npos) << "the mock does not count entries";
  EXPECT_EQ(out.find("keel_dataplane_attached"), std::string::npos) << "the mock has no upkeep";
  EXPECT_TRUE(hasLine(out, "# TYPE keel_real_packets_total counter"));
  EXPECT_TRUE(hasLine(out, "# TYPE keel_real_up gauge"));
  // Type none reals run no checks: no health series at all.
  EXPECT_EQ(out.find("keel_health_checks_total{"), std::string::npos);
}

// Each real's flows, as a walk of the connection table off the loop counted
// them (metrics.flow_count_interval): kept and not, 0 for a real without
// entries (an IPv6 one too), under the service as the walk found it; the
// totals include flows no service has; absent before the first walk.
TEST_F(MetricsTest, EachRealsFlowsFromThePeriodicCount) {
  auto flow = [](const char* client, uint16_t sport, const char* vip, uint16_t dport) {
    return test::flowKey(client, sport, vip, dport);
  };
  std::map<IpAddress, RealView> reals;
  for (const auto& v : registry_.services())
    for (const auto& r : v.reals) reals[r.address] = r;
  const RealView one = reals.at(ip("10.0.1.1"));
  dp_.setConn(flow("198.51.100.1", 1000, "10.0.0.1", 80), ConnEntry{one.backendId, one.gen, 0, false});
  dp_.setConn(flow("198.51.100.2", 1000, "10.0.0.1", 80), ConnEntry{one.backendId, one.gen, 0, false});
  dp_.setConn(flow("198.51.100.3", 1000, "10.0.0.1", 80), ConnEntry{one.backendId, one.gen, 0, true});
  dp_.setConn(flow("198.51.100.4", 1000, "10.0.0.9", 80), ConnEntry{one.backendId, one.gen, 0, false});

  std::string before = text(renderMetrics(collectSnapshot(*backend_, "v")));
  EXPECT_EQ(before.find("keel_real_flows"), std::string::npos) << "no count yet";
  std::thread::id walker;
  dp_.onScan = [&] { walker = std::this_thread::get_id(); };
  backend_->startFlowCounts(std::chrono::seconds(10));
  waitForFlowCounts();
  ASSERT_NE(backend_->flowCounts(), nullptr);
  EXPECT_NE(walker, std::this_thread::get_id()) << "the walk runs off the loop";
  backend_->stopConnScans();  // no more walks (the loop no longer runs for the next one's timer)
  dp_.onScan = nullptr;
  EXPECT_EQ(backend_->flowCounts()->scanned, 4u);
  EXPECT_EQ(backend_->flowCountFailures(), 0u);

  const std::string out = text(renderMetrics(collectSnapshot(*backend_, "v")));
  EXPECT_TRUE(hasLine(out, "keel_real_flows{" + kReal1 + R"(,state="kept"} 2)")) << out;
  EXPECT_TRUE(hasLine(out, "keel_real_flows{" + kReal1 + R"(,state="not_kept"} 1)"));
  EXPECT_TRUE(hasLine(out, "keel_real_flows{" + kReal2 + R"(,state="kept"} 0)"));
  EXPECT_TRUE(hasLine(out, "keel_real_flows{" + kReal2 + R"(,state="not_kept"} 0)"));
  EXPECT_TRUE(hasLine(out, R"(keel_conntrack_flows{state="kept"} 2)"));
  EXPECT_TRUE(hasLine(out, R"(keel_conntrack_flows{state="not_kept"} 2)"));  // the expired one, and no service's
  EXPECT_TRUE(hasLine(out, R"(keel_real_flows{service="dns",local_address="2001:db8::53",local_port="53",)"
                           R"(proto="UDP",remote_address="fd00:1::1",remote_port="53",state="kept"} 0)"));
  EXPECT_NE(out.find("keel_conntrack_flows_last_count_timestamp_seconds "), std::string::npos);
  EXPECT_NE(out.find("keel_conntrack_flows_last_count_duration_seconds "), std::string::npos);
  EXPECT_TRUE(hasLine(out, "keel_conntrack_flow_count_failures_total 0"));
  // A real added after the walk has no count until the next walk: absent,
  // not a false 0.
  api::RealAddRequest add;
  add.service = "web";
  add.real.address = ip("10.0.1.3");
  ASSERT_TRUE(backend_->addReal(add).isOk());
  const std::string later = text(renderMetrics(collectSnapshot(*backend_, "v")));
  EXPECT_NE(later.find("keel_real_packets_total{" + kWeb + R"(,remote_address="10.0.1.3")"), std::string::npos)
      << later;
  EXPECT_EQ(later.find(R"(remote_address="10.0.1.3",remote_port="80",state=)"), std::string::npos) << later;

  // service.list (keelctl service list's Flows) gives the same counts, and
  // none for the real added since.
  std::map<IpAddress, std::optional<api::RealFlows>> listed;
  std::optional<std::chrono::system_clock::time_point> countedAt;
  for (const api::ServiceSnapshot& svc : backend_->listServices())
    if (svc.name == "web") {
      countedAt = svc.flowsCountedAt;
      for (const api::RealSnapshot& real : svc.reals) listed[real.address] = real.flows;
    }
  EXPECT_EQ(countedAt, backend_->flowCounts()->began);
  ASSERT_TRUE(listed.at(ip("10.0.1.1")));
  EXPECT_EQ(listed.at(ip("10.0.1.1"))->kept, 2u);
  EXPECT_EQ(listed.at(ip("10.0.1.1"))->notKept, 1u);
  ASSERT_TRUE(listed.at(ip("10.0.1.2")));
  EXPECT_EQ(listed.at(ip("10.0.1.2"))->kept, 0u);
  EXPECT_FALSE(listed.at(ip("10.0.1.3")));
  auto flowsOf = [&](const char* service, const char* real) -> std::optional<api::RealFlows> {
    for (const api::ServiceSnapshot& svc : backend_->listServices())
      if (svc.name == service)
        for (const api::RealSnapshot& r : svc.reals)
          if (r.address == ip(real)) return r.flows;
    ADD_FAILURE() << "no real " << real << " in " << service;
    return std::nullopt;
  };
  const std::optional<api::RealFlows> v6 = flowsOf("dns", "fd00:1::1");
  ASSERT_TRUE(v6);
  EXPECT_EQ(v6->kept, 0u);
  // Removed and added again: another life of the real (often its old
  // backend id back), which the count did not see.
  ASSERT_TRUE(backend_->removeReal({"web", ip("10.0.1.1")}).isOk());
  api::RealAddRequest again;
  again.service = "web";
  again.real.address = ip("10.0.1.1");
  ASSERT_TRUE(backend_->addReal(again).isOk());
  EXPECT_FALSE(flowsOf("web", "10.0.1.1"));
  EXPECT_TRUE(flowsOf("web", "10.0.1.2"));
  // The metrics give the listing's figures: none for that real's new life
  // (not its old count of 2), the other real's still.
  const std::string relisted = text(renderMetrics(collectSnapshot(*backend_, "v")));
  EXPECT_EQ(relisted.find("keel_real_flows{" + kReal1), std::string::npos) << relisted;
  EXPECT_TRUE(hasLine(relisted, "keel_real_flows{" + kReal2 + R"(,state="kept"} 0)")) << relisted;
  // Removed: no series left behind until the next walk.
  ASSERT_TRUE(backend_->removeReal({"web", ip("10.0.1.2")}).isOk());
  const std::string removed = text(renderMetrics(collectSnapshot(*backend_, "v")));
  EXPECT_EQ(removed.find("keel_real_flows{" + kReal2), std::string::npos) << removed;
  EXPECT_TRUE(hasLine(removed, R"(keel_conntrack_flows{state="kept"} 2)")) << "the table's totals stay the count's";
}

// A real in two services has a count in each, and a port-0 service (every
// port of its VIP) counts the flows of any port under local_port="0".
TEST_F(MetricsTest, FlowCountsPerServiceForARealInTwoAndAPortZeroService) {
  configText_ = std::string(kConfig) +
                "  - name: any\n"
                "    vip: 10.0.0.7\n"
                "    port: 0\n"
                "    protocol: tcp\n"
                "    reals:\n"
                "      - {address: 10.0.1.1}\n";
  api::Result r = backend_->reload();
  ASSERT_TRUE(r.isOk()) << r.error().message;
  std::map<std::pair<std::string, IpAddress>, RealView> reals;
  for (const auto& v : registry_.services())
    for (const auto& real : v.reals) reals[{v.name, real.address}] = real;
  const RealView web = reals.at({"web", ip("10.0.1.1")});
  const RealView any = reals.at({"any", ip("10.0.1.1")});
  ASSERT_NE(web.backendId, any.backendId);
  dp_.setConn(test::flowKey("198.51.100.1", 1000, "10.0.0.1", 80), ConnEntry{web.backendId, web.gen, 0, false});
  dp_.setConn(test::flowKey("198.51.100.2", 1000, "10.0.0.7", 443), ConnEntry{any.backendId, any.gen, 0, false});
  dp_.setConn(test::flowKey("198.51.100.3", 1000, "10.0.0.7", 22), ConnEntry{any.backendId, any.gen, 0, false});
  backend_->startFlowCounts(std::chrono::seconds(10));
  waitForFlowCounts();
  ASSERT_NE(backend_->flowCounts(), nullptr);
  backend_->stopConnScans();
  const std::string out = text(renderMetrics(collectSnapshot(*backend_, "v")));
  EXPECT_TRUE(hasLine(out, "keel_real_flows{" + kReal1 + R"(,state="kept"} 1)")) << out;
  EXPECT_TRUE(hasLine(out, R"(keel_real_flows{service="any",local_address="10.0.0.7",local_port="0",proto="TCP",)"
                           R"(remote_address="10.0.1.1",remote_port="0",state="kept"} 2)"));
  EXPECT_TRUE(hasLine(out, R"(keel_conntrack_flows{state="kept"} 3)"));
}

// metrics.flow_count_interval is the one metrics: key a reload applies: 0s
// ends the walks and takes the last counts away (no series left to go
// stale), another interval walks at once; neither asks for a restart.
// Before keeld has started the counts a reload starts none.
TEST_F(MetricsTest, AReloadAppliesTheFlowCountInterval) {
  std::atomic<int> scans{0};  // counted on the walk's thread
  dp_.onScan = [&] { ++scans; };
  api::Result r = reloadWithFlowCountInterval("10s");
  ASSERT_TRUE(r.isOk()) << r.error().message;
  // Counts not started yet: no tick armed, and no walk handed to the walk's
  // thread (a start walks at once, setting flowWalkRunning() before the
  // reload returns; read first, so a walk already over has counted its scan).
  EXPECT_FALSE(backend_->flowCountDue()) << "the reload armed the counts' timer";
  EXPECT_FALSE(backend_->flowWalkRunning()) << "the reload started a walk";
  EXPECT_EQ(scans, 0) << "the reload started a walk";
  EXPECT_EQ(backend_->flowCounts(), nullptr);

  backend_->startFlowCounts(std::chrono::seconds(10));  // as keeld does at start
  waitForFlowCounts();
  ASSERT_NE(backend_->flowCounts(), nullptr);
  EXPECT_EQ(scans, 1);
  r = reloadWithFlowCountInterval("0s");
  ASSERT_TRUE(r.isOk()) << r.error().message;
  EXPECT_FALSE(r.result().contains("restart_needed")) << r.result().dump();
  // The reply lists the change, as every change the reload logs.
  EXPECT_EQ(r.result()["changes"],
            nlohmann::json::array({{{"change", "flow_count_interval_changed"}, {"from", "10s"}, {"to", "0s"}}}))
      << r.result().dump();
  EXPECT_EQ(backend_->flowCounts(), nullptr);
  EXPECT_EQ(text(renderMetrics(collectSnapshot(*backend_, "v"))).find("keel_real_flows"), std::string::npos);

  r = reloadWithFlowCountInterval("30s");
  ASSERT_TRUE(r.isOk()) << r.error().message;
  EXPECT_FALSE(r.result().contains("restart_needed")) << r.result().dump();
  // At once: the walk was handed over before the reload returned, not
  // left to the 30 s timer (running, or already over and counted).
  EXPECT_TRUE(backend_->flowWalkRunning() || scans == 2) << "the new interval waits for its first walk";
  waitForFlowCounts();
  ASSERT_NE(backend_->flowCounts(), nullptr) << "the new interval walks at once";
  EXPECT_EQ(scans, 2);
  backend_->stopConnScans();
  dp_.onScan = nullptr;
  EXPECT_TRUE(hasLine(text(renderMetrics(collectSnapshot(*backend_, "v"))),
                      "keel_real_flows{" + kReal1 + R"(,state="kept"} 0)"));
}

// The config's two series, named as Prometheus names its own: a refused
// reload turns keel_config_last_reload_successful to 0 and leaves the
// applied time where it was; the next reload that works sets both again.
TEST_F(MetricsTest, AReloadsOutcomeAndWhenTheRunningConfigWasApplied) {
  auto seriesOf = [&](const std::string& name) -> std::optional<double> {
    const std::string out = text(renderMetrics(collectSnapshot(*backend_, "9.9.9")));
    std::istringstream lines(out);
    for (std::string line; std::getline(lines, line);)
      if (line.rfind(name + " ", 0) == 0) return std::stod(line.substr(name.size() + 1));
    return std::nullopt;
  };
  const double now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  EXPECT_EQ(seriesOf("keel_config_last_reload_successful"), std::optional(1.0));
  const std::optional<double> started = seriesOf("keel_config_last_reload_success_timestamp_seconds");
  ASSERT_TRUE(started);
  EXPECT_LE(*started, now + 1);
  EXPECT_GE(*started, now - 600);
  configText_ = std::string(kConfig) + "limits: {max_services: abc}\n";
  ASSERT_FALSE(backend_->reload().isOk());
  EXPECT_EQ(seriesOf("keel_config_last_reload_successful"), std::optional(0.0));
  EXPECT_EQ(seriesOf("keel_config_last_reload_success_timestamp_seconds"), started);
  // The good reload's time lies between clock readings taken around it, not
  // merely after the start's following a sleep (a stalled box or a stepped
  // clock made that pass or fail by chance). The clock is first seen 1 ms
  // past the start's time (bounded), far more than the series' text
  // rounds off, so a reload that left the time as it was falls outside.
  using std::chrono::system_clock;
  const std::optional<system_clock::time_point> startedAt = backend_->configAppliedAt();
  ASSERT_TRUE(startedAt);
  const auto pastStart = *startedAt + std::chrono::milliseconds(1);
  const auto before = test::wallClockPast(pastStart);
  ASSERT_GT(before, pastStart) << "the wall clock did not move past the start's time";
  configText_ = kConfig;
  ASSERT_TRUE(backend_->reload().isOk());
  const auto after = system_clock::now();
  EXPECT_EQ(seriesOf("keel_config_last_reload_successful"), std::optional(1.0));
  const std::optional<double> reloaded = seriesOf("keel_config_last_reload_success_timestamp_seconds");
  ASSERT_TRUE(reloaded);
  auto seconds = [](system_clock::time_point t) { return std::chrono::duration<double>(t.time_since_epoch()).count(); };
  const std::string window = std::to_string(*reloaded) + " against [" + std::to_string(seconds(before)) + ", " +
                             std::to_string(seconds(after)) + "]";
  EXPECT_GE(*reloaded, seconds(before) - 1e-6) << "the reload did not set the applied time: " << window;
  EXPECT_LE(*reloaded, seconds(after) + 1e-6) << window;
}

// A walk still running when a reload changes the interval counts for
// nothing: turned off, its result is dropped (no counts reappear); at a new
// interval the first walk of the new setting runs once it has ended, not a
// whole interval later.
TEST_F(MetricsTest, AWalkInFlightWhenTheIntervalChangesIsDropped) {
  std::mutex m;
  std::condition_variable cv;
  bool release = false;
  std::atomic<int> scans{0};
  dp_.onScan = [&] {
    ++scans;
    std::unique_lock<std::mutex> lock(m);
    cv.wait_for(lock, std::chrono::seconds(30), [&] { return release; });
  };
  // Bounded, generous: each wait is for something that does happen.
  auto runUntil = [&](const std::function<bool()>& done) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (!done() && std::chrono::steady_clock::now() < deadline) {
      io_.restart();
      io_.run_for(std::chrono::milliseconds(10));
    }
  };
  auto setRelease = [&](bool v) {
    {
      std::lock_guard<std::mutex> lock(m);
      release = v;
    }
    cv.notify_all();
  };
  backend_->startFlowCounts(std::chrono::seconds(10));
  runUntil([&] { return scans == 1; });
  ASSERT_EQ(scans, 1);
  ASSERT_TRUE(reloadWithFlowCountInterval("0s").isOk());
  setRelease(true);
  // The walk's thread posts its result to the loop, then clears the flag:
  // once it reads false, the result waits in the loop's queue, and a poll()
  // hands it to the loop, which must drop it.
  runUntil([&] { return !backend_->flowWalkRunning(); });
  ASSERT_FALSE(backend_->flowWalkRunning()) << "the walk never ended";
  io_.restart();
  io_.poll();
  EXPECT_EQ(backend_->flowCounts(), nullptr) << "a walk begun before 0s published its counts";
  EXPECT_FALSE(backend_->flowCountDue()) << "walks go on at 0s";
  EXPECT_EQ(scans, 1);

  setRelease(false);
  backend_->startFlowCounts(std::chrono::seconds(10));
  runUntil([&] { return scans == 2; });
  ASSERT_EQ(scans, 2);
  ASSERT_TRUE(reloadWithFlowCountInterval("30s").isOk());
  setRelease(true);
  runUntil([&] { return backend_->flowCounts() != nullptr; });
  ASSERT_NE(backend_->flowCounts(), nullptr) << "the new interval's first walk did not follow the running one";
  EXPECT_EQ(scans, 3) << "the walk begun under 10s was not discarded";
  backend_->stopConnScans();
  dp_.onScan = nullptr;
}

// A timer whose handler is already queued when the counts are turned off
// cannot be cancelled (Boost.Asio runs it with success): it must start no
// walk. Queued here as keeld's loop would: a handler runs past the timer's
// expiry and posts the change, so the reactor, which runs between the two
// (the loop's one thread: the reactor's turn is queued before the change),
// moves the timer's handler into the queue before the change runs.
//
// Set up for certain, not by sleeping: the holding handler begins only
// while the tick is still ahead (not yet taken from the timer queue) and no
// walk runs, and holds until the tick's expiry has passed; the change then
// turns the counts off only if a probe timer of the same expiry has left
// the timer queue too (cancel() finds nothing: the reactor took both, in
// the one pass that takes every timer due), and else waits for another try.
TEST_F(MetricsTest, ATimerAlreadyQueuedWhenCountsGoOffStartsNoWalk) {
  std::atomic<int> scans{0};
  dp_.onScan = [&] { ++scans; };
  backend_->startFlowCounts(std::chrono::milliseconds(5));
  waitForFlowCounts();
  ASSERT_NE(backend_->flowCounts(), nullptr);

  boost::asio::steady_timer probe(io_);
  bool trying = false, queued = false, settled = false;
  int before = 0, tries = 0;
  std::optional<bool> runningAfter;
  int scansAfter = 0;
  auto attempt = [&] {
    ++tries;
    trying = true;
    boost::asio::post(io_, [&] {
      const std::optional<std::chrono::steady_clock::time_point> due = backend_->flowCountDue();
      if (!due || *due <= std::chrono::steady_clock::now() || backend_->flowWalkRunning()) {
        trying = false;  // the tick may be taken already, or a walk runs: another try
        return;
      }
      probe.expires_at(*due);
      probe.async_wait([](const boost::system::error_code&) {});
      // Past the tick (and past the kernel's timer for it) before the loop goes on.
      while (std::chrono::steady_clock::now() < *due + std::chrono::milliseconds(2))
        std::this_thread::yield();
      boost::asio::post(io_, [&] {
        if (probe.cancel() != 0) {  // the reactor has not taken the tick yet: another try
          trying = false;
          return;
        }
        queued = true;
        before = scans;
        backend_->startFlowCounts(std::chrono::milliseconds(0));
        // Queued behind the tick's handler, which has run when this does.
        boost::asio::post(io_, [&] {
          runningAfter = backend_->flowWalkRunning();  // first: a walk over has counted its scan
          scansAfter = scans;
          settled = true;
        });
      });
    });
  };
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!settled && std::chrono::steady_clock::now() < deadline) {
    if (!trying) attempt();
    io_.restart();
    io_.run_for(std::chrono::milliseconds(1));
  }
  ASSERT_TRUE(queued) << "the tick's handler was never queued before the change (" << tries << " tries)";
  ASSERT_TRUE(settled);
  EXPECT_FALSE(*runningAfter) << "the queued tick started a walk after the counts were turned off";
  EXPECT_EQ(scansAfter, before) << "the queued tick started a walk after the counts were turned off";
  EXPECT_FALSE(backend_->flowCountDue()) << "the queued tick armed another";
  EXPECT_EQ(backend_->flowCounts(), nullptr);
  backend_->stopConnScans();
  dp_.onScan = nullptr;
}

// The plane's count of new flows it did not remember (over
// node.conntrack_insert_rate) reaches its counter through the registry.
TEST_F(MetricsTest, SkippedConntrackInsertsAreACounter) {
  std::string out = text(renderMetrics(collectSnapshot(*backend_, "v")));
  EXPECT_TRUE(hasLine(out, "# TYPE keel_conntrack_inserts_skipped_total counter"));
  EXPECT_TRUE(hasLine(out, "keel_conntrack_inserts_skipped_total 0"));
  dp_.stats.connInsertsSkipped = 17;
  out = text(renderMetrics(collectSnapshot(*backend_, "v")));
  EXPECT_TRUE(hasLine(out, "keel_conntrack_inserts_skipped_total 17"));
}

// TCP packets past their SYN that the connection table did not hold reach
// their counter through the registry.
TEST_F(MetricsTest, MidflowMissesAreACounter) {
  std::string out = text(renderMetrics(collectSnapshot(*backend_, "v")));
  EXPECT_TRUE(hasLine(out, "# TYPE keel_conntrack_midflow_misses_total counter"));
  EXPECT_TRUE(hasLine(out, "keel_conntrack_midflow_misses_total 0"));
  dp_.stats.connMidflowMisses = 23;
  out = text(renderMetrics(collectSnapshot(*backend_, "v")));
  EXPECT_TRUE(hasLine(out, "keel_conntrack_midflow_misses_total 23"));
}

// A plane that counts its connection table: the count reaches the gauge
// through connTableEntries -> registry -> servicesAndGlobalStats -> snapshot,
// and a scrape reads the counters once and counts the table once.
TEST_F(MetricsTest, ConntrackEntriesGaugeWhenThePlaneCounts) {
  dp_.connTable = 4321;
  const int reads = dp_.readStatsCalls, counts = dp_.connTableCalls;
  std::string out = text(renderMetrics(collectSnapshot(*backend_, "v")));
  EXPECT_EQ(dp_.readStatsCalls, reads + 1);
  EXPECT_EQ(dp_.connTableCalls, counts + 1);
  EXPECT_TRUE(hasLine(out, "# TYPE keel_conntrack_entries gauge"));
  EXPECT_TRUE(hasLine(out, "keel_conntrack_entries 4321"));
  EXPECT_TRUE(hasLine(out, "keel_conntrack_capacity 5000"));
  dp_.connTable = 0;  // known and empty is shown, not omitted
  out = text(renderMetrics(collectSnapshot(*backend_, "v")));
  EXPECT_TRUE(hasLine(out, "keel_conntrack_entries 0"));
}

// A plane with workers (DPDK): one counter per worker, through the same path;
// none at all for a plane without (the mock, XDP).
TEST_F(MetricsTest, WorkerPacketsPerWorkerWhenThePlaneHasWorkers) {
  std::string out = text(renderMetrics(collectSnapshot(*backend_, "v")));
  EXPECT_EQ(out.find("keel_dpdk_worker_packets_total"), std::string::npos);
  dp_.stats.workers = {WorkerStats{0, 1, 700}, WorkerStats{1, 3, 0}};
  out = text(renderMetrics(collectSnapshot(*backend_, "v")));
  EXPECT_TRUE(hasLine(out, "# TYPE keel_dpdk_worker_packets_total counter"));
  EXPECT_TRUE(hasLine(out, R"(keel_dpdk_worker_packets_total{worker="0",lcore="1"} 700)"));
  EXPECT_TRUE(hasLine(out, R"(keel_dpdk_worker_packets_total{worker="1",lcore="3"} 0)"));
}

// The DPDK workers' ICMP peer lookups, one series per worker and outcome;
// absent for a plane without workers (the mock, XDP).
TEST_F(MetricsTest, IcmpPeerLookupsPerWorkerAndResultWhenThePlaneHasWorkers) {
  std::string out = text(renderMetrics(collectSnapshot(*backend_, "v")));
  EXPECT_EQ(out.find("keel_dpdk_icmp_peer_lookups_total"), std::string::npos);
  dp_.stats.workers = {WorkerStats{0, 1, 700, 11, 22, 33}, WorkerStats{1, 3, 0, 0, 0, 4}};
  out = text(renderMetrics(collectSnapshot(*backend_, "v")));
  EXPECT_TRUE(hasLine(out, "# TYPE keel_dpdk_icmp_peer_lookups_total counter"));
  EXPECT_TRUE(hasLine(out, R"(keel_dpdk_icmp_peer_lookups_total{worker="0",lcore="1",result="found"} 11)"));
  EXPECT_TRUE(hasLine(out, R"(keel_dpdk_icmp_peer_lookups_total{worker="0",lcore="1",result="not_found"} 22)"));
  EXPECT_TRUE(hasLine(out, R"(keel_dpdk_icmp_peer_lookups_total{worker="0",lcore="1",result="rate_limited"} 33)"));
  EXPECT_TRUE(hasLine(out, R"(keel_dpdk_icmp_peer_lookups_total{worker="1",lcore="3",result="found"} 0)"));
  EXPECT_TRUE(hasLine(out, R"(keel_dpdk_icmp_peer_lookups_total{worker="1",lcore="3",result="not_found"} 0)"));
  EXPECT_TRUE(hasLine(out, R"(keel_dpdk_icmp_peer_lookups_total{worker="1",lcore="3",result="rate_limited"} 4)"));
}

// DPDK: each worker's frames a full TX queue refused, by path, and what it
// sent from the kernel; the port's own counters and link. None of it for a
// plane without workers or port (the mock, XDP).
TEST_F(MetricsTest, TxDropsAndPortCountersWhenThePlaneHasThem) {
  std::string out = text(renderMetrics(collectSnapshot(*backend_, "v")));
  EXPECT_EQ(out.find("keel_dpdk_worker_tx_dropped_total"), std::string::npos);
  EXPECT_EQ(out.find("keel_dpdk_port_"), std::string::npos);
  WorkerStats w{0, 1, 700};
  w.txDropped = 5;
  w.toKernelDropped = 6;
  w.fromKernelDropped = 7;
  w.fromKernel = 8;
  w.hostFramesIgnored = 11;
  dp_.stats.workers = {w};
  // rx 100 (missed 9, no mbuf 4, errors 1), tx 80 (errors 2), link up at 25000 Mb/s.
  const PortStats port{100, 9, 4, 1, 80, 2, true, 25000};
  dp_.stats.port = port;
  out = text(renderMetrics(collectSnapshot(*backend_, "v")));
  EXPECT_TRUE(hasLine(out, "# TYPE keel_dpdk_worker_tx_dropped_total counter"));
  EXPECT_TRUE(hasLine(out, R"(keel_dpdk_worker_tx_dropped_total{worker="0",lcore="1",path="port"} 5)"));
  EXPECT_TRUE(hasLine(out, R"(keel_dpdk_worker_tx_dropped_total{worker="0",lcore="1",path="to_kernel"} 6)"));
  EXPECT_TRUE(hasLine(out, R"(keel_dpdk_worker_tx_dropped_total{worker="0",lcore="1",path="from_kernel"} 7)"));
  EXPECT_TRUE(hasLine(out, R"(keel_dpdk_exception_egress_packets_total{worker="0",lcore="1"} 8)"));
  EXPECT_TRUE(hasLine(out, R"(keel_dpdk_worker_host_frames_ignored_total{worker="0",lcore="1"} 11)"));
  EXPECT_TRUE(hasLine(out, R"(keel_dpdk_port_packets_total{direction="rx"} 100)"));
  EXPECT_TRUE(hasLine(out, R"(keel_dpdk_port_packets_total{direction="tx"} 80)"));
  EXPECT_TRUE(hasLine(out, R"(keel_dpdk_port_rx_dropped_total{reason="missed"} 9)"));
  EXPECT_TRUE(hasLine(out, R"(keel_dpdk_port_rx_dropped_total{reason="no_mbuf"} 4)"));
  EXPECT_TRUE(hasLine(out, R"(keel_dpdk_port_errors_total{direction="rx"} 1)"));
  EXPECT_TRUE(hasLine(out, R"(keel_dpdk_port_errors_total{direction="tx"} 2)"));
  EXPECT_TRUE(hasLine(out, "keel_dpdk_port_link_up 1"));
  EXPECT_TRUE(hasLine(out, "keel_dpdk_port_link_speed_bytes 3125000000"));
}

// Each DPDK worker's connection table by family (each half evicts on its
// own: KeelConntrackEvictingLiveFlows watches their live evictions, as
// occupancy means nothing there); absent without workers.
TEST_F(MetricsTest, ConntrackPerWorkerAndFamilyWhenThePlaneHasWorkers) {
  std::string out = text(renderMetrics(collectSnapshot(*backend_, "v")));
  EXPECT_EQ(out.find("keel_dpdk_conntrack_"), std::string::npos);
  WorkerStats w{0, 1, 700};
  w.connEntries = {960, 3};
  w.connCapacity = {1024, 1024};
  w.connLiveEvictions = {17, 0};
  dp_.stats.workers = {w};
  out = text(renderMetrics(collectSnapshot(*backend_, "v")));
  EXPECT_TRUE(hasLine(out, "# TYPE keel_dpdk_conntrack_entries gauge"));
  EXPECT_TRUE(hasLine(out, R"(keel_dpdk_conntrack_entries{worker="0",lcore="1",family="ipv4"} 960)"));
  EXPECT_TRUE(hasLine(out, R"(keel_dpdk_conntrack_entries{worker="0",lcore="1",family="ipv6"} 3)"));
  EXPECT_TRUE(hasLine(out, R"(keel_dpdk_conntrack_capacity{worker="0",lcore="1",family="ipv4"} 1024)"));
  EXPECT_TRUE(hasLine(out, R"(keel_dpdk_conntrack_capacity{worker="0",lcore="1",family="ipv6"} 1024)"));
  EXPECT_TRUE(hasLine(out, "# TYPE keel_dpdk_conntrack_live_evictions_total counter"));
  EXPECT_TRUE(hasLine(out, R"(keel_dpdk_conntrack_live_evictions_total{worker="0",lcore="1",family="ipv4"} 17)"));
  EXPECT_TRUE(hasLine(out, R"(keel_dpdk_conntrack_live_evictions_total{worker="0",lcore="1",family="ipv6"} 0)"));
}

// The capacity is what the plane says it can hold (Dataplane::
// connTableCapacity), not limits.conn_table_size: DPDK's per-worker,
// per-family tables hold more than that.
TEST_F(MetricsTest, ConntrackCapacityIsThePlanesOwn) {
  dp_.connCapacity = 16384;  // limits.conn_table_size is 5000
  dp_.connTable = 9000;
  const std::string out = text(renderMetrics(collectSnapshot(*backend_, "v")));
  EXPECT_TRUE(hasLine(out, "keel_conntrack_capacity 16384"));
  EXPECT_TRUE(hasLine(out, "keel_conntrack_entries 9000"));
}

TEST_F(MetricsTest, DownRealAndEmptyRing) {
  ASSERT_TRUE(registry_.setRealHealth("web", ip("10.0.1.1"), false));
  std::string out = text(renderMetrics(collectSnapshot(*backend_, "v")));
  EXPECT_TRUE(hasLine(out, "keel_real_up{" + kReal1 + "} 0"));
  EXPECT_TRUE(hasLine(out, "keel_real_up{" + kReal2 + "} 1"));
  ASSERT_TRUE(backend_->setRealWeight({{"web", ip("10.0.1.2")}, 0}).isOk());
  out = text(renderMetrics(collectSnapshot(*backend_, "v")));
  // Fail-open holds the last down real only while one was serving; with
  // the other at weight 0 the ring may be empty or held: read what the
  // registry says rather than assuming.
  uint32_t published = 0;
  for (const auto& v : registry_.services())
    if (v.name == "web") published = v.publishedRingSize;
  EXPECT_TRUE(hasLine(out, "keel_service_ring_slots{" + kWeb + "} " + std::to_string(published)));
  EXPECT_TRUE(hasLine(out, "keel_real_weight{" + kReal2 + "} 0"));
}

// The review's case: .2 is drained (and up), .1 fails. No real serves, so
// fail-open holds .1 in the ring and it gets every new flow: keel_real_up
// 0 with keel_real_held 1, which KeelServiceAllRealsDown and KeelRealDown
// (deploy/prometheus) need to tell from a real out of the ring.
TEST_F(MetricsTest, ARealHeldByFailOpenIsShownHeld) {
  std::string out = text(renderMetrics(collectSnapshot(*backend_, "v")));
  EXPECT_TRUE(hasLine(out, "# TYPE keel_real_held gauge"));
  EXPECT_TRUE(hasLine(out, "keel_real_held{" + kReal1 + "} 0"));
  ASSERT_TRUE(backend_->setRealDrain({{"web", ip("10.0.1.2")}, true, ""}).isOk());
  ASSERT_TRUE(registry_.setRealHealth("web", ip("10.0.1.1"), false));
  out = text(renderMetrics(collectSnapshot(*backend_, "v")));
  EXPECT_TRUE(hasLine(out, "keel_real_up{" + kReal1 + "} 0"));
  EXPECT_TRUE(hasLine(out, "keel_real_held{" + kReal1 + "} 1"));
  EXPECT_TRUE(hasLine(out, "keel_real_draining{" + kReal1 + "} 0"));
  EXPECT_TRUE(hasLine(out, "keel_real_up{" + kReal2 + "} 1"));
  EXPECT_TRUE(hasLine(out, "keel_real_draining{" + kReal2 + "} 1"));
  EXPECT_TRUE(hasLine(out, "keel_real_held{" + kReal2 + "} 0"));
  EXPECT_FALSE(hasLine(out, "keel_service_ring_slots{" + kWeb + "} 0")) << "the held real keeps the ring";
  // Back up: no longer held.
  ASSERT_TRUE(registry_.setRealHealth("web", ip("10.0.1.1"), true));
  out = text(renderMetrics(collectSnapshot(*backend_, "v")));
  EXPECT_TRUE(hasLine(out, "keel_real_held{" + kReal1 + "} 0"));
}

TEST(MetricsRender, HealthCountersAndPerServiceCumulativeHistogram) {
  MetricsSnapshot s;
  s.version = "v";
  s.global.dataplane = "mock";
  api::ServiceSnapshot web;
  web.name = "web";
  web.vip = ip("10.0.0.1");
  web.port = 80;
  web.protocol = KEEL_PROTO_TCP;
  s.services.push_back(web);
  HealthStatus checked;
  checked.target = HealthTarget{"web", ip("10.0.1.1"), 80, {}};  // tcp
  checked.checks = 5;
  checked.failures = 2;
  checked.notRun = 4;
  checked.transitions = 3;
  checked.lastDuration = std::chrono::microseconds(1500);
  checked.durationBuckets[0] = 1;  // <= 0.5 ms
  checked.durationBuckets[3] = 3;  // (2.5 ms, 5 ms]
  checked.durationBuckets.back() = 1;  // over 10 s
  checked.durationSumSeconds = 12.5;
  s.health.push_back(checked);
  HealthStatus second = checked;  // a second checked real: sums into the service histogram
  second.target.address = ip("10.0.1.2");
  second.checks = 1;
  second.failures = 0;
  second.durationBuckets = {};
  second.durationBuckets[1] = 1;  // (0.5 ms, 1 ms]
  second.durationSumSeconds = 0.5;
  s.health.push_back(second);
  HealthStatus none = checked;
  none.target.address = ip("10.0.1.3");
  none.target.spec.type = HealthCheckSpec::Type::None;
  s.health.push_back(none);

  const std::string out = text(renderMetrics(s));
  EXPECT_TRUE(hasLine(out, "keel_health_checks_total{" + kReal1 + R"(,result="ok"} 3)"));
  EXPECT_TRUE(hasLine(out, "keel_health_checks_total{" + kReal1 + R"(,result="fail"} 2)"));
  EXPECT_TRUE(hasLine(out, "keel_health_checks_total{" + kReal1 + R"(,result="error"} 4)"));
  EXPECT_TRUE(hasLine(out, "keel_health_checks_total{" + kReal2 + R"(,result="ok"} 1)"));
  EXPECT_TRUE(hasLine(out, "keel_health_transitions_total{" + kReal1 + "} 3"));
  EXPECT_TRUE(hasLine(out, "keel_health_check_last_duration_seconds{" + kReal1 + "} 0.0015"));
  EXPECT_TRUE(hasLine(out, "# TYPE keel_health_check_duration_seconds histogram"));
  EXPECT_TRUE(hasLine(out, "keel_health_check_duration_seconds_bucket{" + kWeb + R"(,le="0.0005"} 1)"));
  EXPECT_TRUE(hasLine(out, "keel_health_check_duration_seconds_bucket{" + kWeb + R"(,le="0.001"} 2)"));
  EXPECT_TRUE(hasLine(out, "keel_health_check_duration_seconds_bucket{" + kWeb + R"(,le="0.0025"} 2)"));
  EXPECT_TRUE(hasLine(out, "keel_health_check_duration_seconds_bucket{" + kWeb + R"(,le="0.005"} 5)"));
  EXPECT_TRUE(hasLine(out, "keel_health_check_duration_seconds_bucket{" + kWeb + R"(,le="10"} 5)"));
  EXPECT_TRUE(hasLine(out, "keel_health_check_duration_seconds_bucket{" + kWeb + R"(,le="+Inf"} 6)"));
  EXPECT_TRUE(hasLine(out, "keel_health_check_duration_seconds_count{" + kWeb + "} 6"));
  EXPECT_TRUE(hasLine(out, "keel_health_check_duration_seconds_sum{" + kWeb + "} 13"));
  EXPECT_EQ(out.find("remote_address=\"10.0.1.1\",remote_port=\"80\",le="), std::string::npos)
      << "histogram is per service, not per real";
  EXPECT_EQ(out.find("10.0.1.3"), std::string::npos) << "type none target rendered:\n" << out;
}

TEST(MetricsRender, FailedScrapeShowsOnlyBuildInfoAndFailure) {
  MetricsSnapshot s;
  s.version = "v";
  s.global.dataplane = "xdp";
  const std::string out = text(renderMetrics(s, false));
  EXPECT_TRUE(hasLine(out, "keel_scrape_success 0"));
  EXPECT_TRUE(hasLine(out, R"(keel_build_info{version="v",dataplane="xdp"} 1)"));
  EXPECT_EQ(out.find("keel_dataplane_packets_total"), std::string::npos);
}

// The daemon's loop on a thread of its own (joined even when an ASSERT
// returns early).
struct LoopThread {
  boost::asio::io_context io;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard =
      boost::asio::make_work_guard(io);
  std::thread thread{[this] { io.run(); }};
  ~LoopThread() {
    guard.reset();
    io.stop();
    thread.join();
  }
};

TEST(LoopCollector, ReadsOnTheLoopThread) {
  std::thread::id ranOn;
  std::string out;
  std::thread::id loopId;
  {
    LoopThread loop;
    loopId = loop.thread.get_id();
    LoopCollector c(loop.io, [&] {
      ranOn = std::this_thread::get_id();
      MetricsSnapshot s;
      s.global.connTableCapacity = 77;
      return s;
    }, "v", "mock");
    out = text(c.Collect());
  }
  EXPECT_EQ(ranOn, loopId);
  EXPECT_TRUE(hasLine(out, "keel_scrape_success 1"));
  EXPECT_TRUE(hasLine(out, "keel_conntrack_capacity 77"));
}

// The XDP plane's upkeep (Dataplane::upkeep): detached now, attached
// again twice before, pins restored once.
TEST(LoopCollector, TheDataplanesUpkeepIsShown) {
  std::string out;
  {
    LoopThread loop;
    LoopCollector c(loop.io, [&] {
      MetricsSnapshot s;
      s.global.upkeep = DataplaneUpkeep{false, 2, 1, "eth0", "native", "/sys/fs/bpf/keel/eth0"};
      return s;
    }, "v", "xdp");
    out = text(c.Collect());
  }
  EXPECT_TRUE(hasLine(out, "keel_dataplane_attached 0")) << out;
  EXPECT_TRUE(hasLine(out, "keel_dataplane_reattach_total 2"));
  EXPECT_TRUE(hasLine(out, "keel_dataplane_pins_restored_total 1"));
  EXPECT_TRUE(hasLine(out, "# TYPE keel_dataplane_attached gauge"));
}

// node.next_hop_mac's check (NextHopCheck), one series per family with ipip
// reals; none without the check.
TEST(MetricsRender, NextHopMacMismatchPerFamily) {
  MetricsSnapshot s;
  std::string out = text(renderMetrics(s));
  EXPECT_EQ(out.find("keel_next_hop_mac_mismatch"), std::string::npos) << out;
  s.nextHopMismatch = {{"ipv4", true}, {"ipv6", false}};
  out = text(renderMetrics(s));
  EXPECT_TRUE(hasLine(out, "# TYPE keel_next_hop_mac_mismatch gauge"));
  EXPECT_TRUE(hasLine(out, "keel_next_hop_mac_mismatch{family=\"ipv4\"} 1"));
  EXPECT_TRUE(hasLine(out, "keel_next_hop_mac_mismatch{family=\"ipv6\"} 0"));
}

// keeld's start time under the process collectors' name, when known.
TEST(MetricsRender, ProcessStartTime) {
  MetricsSnapshot s;
  std::string out = text(renderMetrics(s));
  EXPECT_EQ(out.find("process_start_time_seconds"), std::string::npos) << out;
  s.startedAt = std::chrono::system_clock::time_point(std::chrono::seconds(1796133785));
  out = text(renderMetrics(s));
  EXPECT_TRUE(hasLine(out, "# TYPE process_start_time_seconds gauge"));
  EXPECT_TRUE(hasLine(out, "process_start_time_seconds 1796133785")) << out;
}

TEST(LoopCollector, StuckLoopGivesUpAndNeverRunsTheSourceOffLoop) {
  boost::asio::io_context io;  // never run: the loop is "stuck"
  bool ran = false;
  LoopCollector c(io, [&] {
    ran = true;
    return MetricsSnapshot{};
  }, "v", "mock", std::chrono::milliseconds(50));
  EXPECT_TRUE(hasLine(text(c.Collect()), "keel_scrape_success 0"));
  c.stop();
  EXPECT_TRUE(hasLine(text(c.Collect()), "keel_scrape_success 0"));
  EXPECT_FALSE(ran);
}

// A loop that answered before and is stalled now: the last snapshot is
// shown whole, with keel_scrape_success 0 and its age, so an alert that
// fired keeps firing (its series went stale before, and it resolved). The
// scrape that gave up leaves no read behind: when the loop runs again, the
// source is not called for it.
TEST(LoopCollector, StalledLoopShowsTheLastSnapshotAndLeavesNoReadBehind) {
  std::atomic<int> reads{0};
  std::string fresh, stale;
  {
    LoopThread loop;
    LoopCollector c(loop.io, [&] {
      ++reads;
      MetricsSnapshot s;
      s.global.connTableCapacity = 77;
      return s;
    }, "v", "mock", std::chrono::milliseconds(100));
    fresh = text(c.Collect());
    std::promise<void> release;
    std::shared_future<void> released = release.get_future().share();
    std::promise<void> holding;
    boost::asio::post(loop.io, [released, &holding] {
      holding.set_value();
      released.wait();  // the loop is stalled until the test releases it
    });
    holding.get_future().wait();
    stale = text(c.Collect());
    release.set_value();
    // The loop runs again: a job posted after the abandoned one has run
    // once this one does.
    std::promise<void> drained;
    boost::asio::post(loop.io, [&drained] { drained.set_value(); });
    drained.get_future().wait();
  }
  EXPECT_TRUE(hasLine(fresh, "keel_scrape_success 1"));
  EXPECT_TRUE(hasLine(fresh, "keel_scrape_snapshot_age_seconds 0"));
  EXPECT_TRUE(hasLine(stale, "keel_scrape_success 0")) << stale;
  EXPECT_TRUE(hasLine(stale, "keel_conntrack_capacity 77")) << "the last snapshot, whole:\n" << stale;
  EXPECT_NE(stale.find("keel_scrape_snapshot_age_seconds "), std::string::npos);
  EXPECT_FALSE(hasLine(stale, "keel_scrape_snapshot_age_seconds 0")) << stale;
  EXPECT_EQ(reads.load(), 1) << "the abandoned scrape's read ran when the loop recovered";
}

// ------------------------------------------------------------ HTTP

// A connection to the loopback address of FAMILY; -1 if refused. Reads are
// bounded (SO_RCVTIMEO) so a server that never answers fails the test
// instead of hanging it.
int connectLoopback(int family, int port) {
  int fd = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  int rc;
  if (family == AF_INET) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    rc = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  } else {
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_port = htons(port);
    a.sin6_addr = in6addr_loopback;
    rc = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  }
  if (rc != 0) {
    ::close(fd);
    return -1;
  }
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

void send(int fd, const std::string& request) { (void)!::write(fd, request.data(), request.size()); }

std::string get(const std::string& path, const std::string& extra = "") {
  return "GET " + path + " HTTP/1.1\r\nHost: localhost\r\n" + extra + "\r\n";
}

struct Response {
  std::string head;  // status line and headers
  std::string body;
  bool complete = false;
  bool has(const std::string& headerLine) const { return head.find("\r\n" + headerLine + "\r\n") != std::string::npos; }
  std::string status() const { return head.substr(0, head.find("\r\n")); }
};

// One response off a (possibly kept-alive) connection: headers, then
// Content-Length bytes of body.
Response readResponse(int fd) {
  Response r;
  std::string data;
  char buf[4096];
  size_t end;
  while ((end = data.find("\r\n\r\n")) == std::string::npos) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) return r;
    data.append(buf, n);
  }
  r.head = data.substr(0, end + 2);
  r.body = data.substr(end + 4);
  std::string lower = r.head;
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  size_t cl = lower.find("\r\ncontent-length: ");
  if (cl == std::string::npos) return r;
  size_t length = std::stoul(r.head.substr(cl + 18));
  while (r.body.size() < length) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) return r;
    r.body.append(buf, n);
  }
  r.complete = r.body.size() == length;
  return r;
}

// One request on a fresh connection.
Response fetch(int family, int port, const std::string& request) {
  int fd = connectLoopback(family, port);
  if (fd < 0) return {};
  send(fd, request);
  Response r = readResponse(fd);
  ::close(fd);
  return r;
}

// True once the server closed the connection: read sees end of file, or a
// reset if the server closed with our request unread.
bool closedByServer(int fd) {
  char c;
  ssize_t n = ::read(fd, &c, 1);
  return n == 0 || (n < 0 && errno == ECONNRESET);
}

std::string gunzip(const std::string& in) {
  z_stream z{};
  if (inflateInit2(&z, MAX_WBITS + 16) != Z_OK) return "inflateInit2 failed";
  std::string out;
  char buf[16384];
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  int rc;
  do {
    z.next_out = reinterpret_cast<Bytef*>(buf);
    z.avail_out = sizeof buf;
    rc = inflate(&z, Z_NO_FLUSH);
    out.append(buf, sizeof buf - z.avail_out);
  } while (rc == Z_OK);
  inflateEnd(&z);
  return rc == Z_STREAM_END ? out : "inflate failed";
}

bool ipv6Loopback() {
  int fd = ::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  a.sin6_addr = in6addr_loopback;
  bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

MetricsSnapshot fixedSnapshot() {
  MetricsSnapshot s;
  s.version = "v";
  s.global.dataplane = "mock";
  return s;
}

TEST(MetricsServer, ServesOverIpv4) {
  LoopThread loop;
  MetricsServer server(loop.io, fixedSnapshot, "v", "mock");
  Status s = server.start(ip("127.0.0.1"), 0);
  ASSERT_TRUE(s) << s.message();
  ASSERT_GT(server.port(), 0);
  Response r = fetch(AF_INET, server.port(), get("/metrics"));
  ASSERT_TRUE(r.complete) << r.head;
  EXPECT_EQ(r.status(), "HTTP/1.1 200 OK");
  EXPECT_TRUE(r.has("Content-Type: text/plain; version=0.0.4; charset=utf-8")) << r.head;
  EXPECT_TRUE(hasLine(r.body, "keel_scrape_success 1"));
  EXPECT_TRUE(hasLine(r.body, R"(keel_build_info{version="v",dataplane="mock"} 1)"));
  // The server's own series, as prometheus-cpp's Exposer named them; the
  // scrape counts the ones before it.
  EXPECT_TRUE(hasLine(r.body, "exposer_scrapes_total 0"));
  r = fetch(AF_INET, server.port(), get("/metrics"));
  EXPECT_TRUE(hasLine(r.body, "exposer_scrapes_total 1"));
  server.stop();
  EXPECT_EQ(connectLoopback(AF_INET, server.port()), -1);
}

TEST(MetricsServer, ServesOverIpv6) {
  if (!ipv6Loopback()) {
    // As root (CI) a missing ::1 fails: the live suite needs IPv6 as well,
    // and a skip would pass unseen.
    if (geteuid() == 0) FAIL() << "no IPv6 loopback here";
    GTEST_SKIP() << "no IPv6 loopback here";
  }
  LoopThread loop;
  MetricsServer server(loop.io, fixedSnapshot, "v", "mock");
  Status s = server.start(ip("::1"), 0);
  ASSERT_TRUE(s) << s.message();
  Response r = fetch(AF_INET6, server.port(), get("/metrics"));
  ASSERT_TRUE(r.complete) << r.head;
  EXPECT_EQ(r.status(), "HTTP/1.1 200 OK");
  EXPECT_TRUE(hasLine(r.body, "keel_scrape_success 1"));
  // Bound to ::1 only: not reachable over IPv4.
  EXPECT_EQ(connectLoopback(AF_INET, server.port()), -1);
}

TEST(MetricsServer, OtherPathsAre404AndOtherMethods405) {
  LoopThread loop;
  MetricsServer server(loop.io, fixedSnapshot, "v", "mock");
  ASSERT_TRUE(server.start(ip("127.0.0.1"), 0));
  EXPECT_EQ(fetch(AF_INET, server.port(), get("/")).status(), "HTTP/1.1 404 Not Found");
  EXPECT_EQ(fetch(AF_INET, server.port(), get("/metricsx")).status(), "HTTP/1.1 404 Not Found");
  Response r = fetch(AF_INET, server.port(), "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi");
  EXPECT_EQ(r.status(), "HTTP/1.1 405 Method Not Allowed");
  EXPECT_TRUE(r.has("Allow: GET")) << r.head;
  // A query string does not change the path.
  EXPECT_EQ(fetch(AF_INET, server.port(), get("/metrics?x=1")).status(), "HTTP/1.1 200 OK");
}

TEST(MetricsServer, GzipWhenAccepted) {
  LoopThread loop;
  MetricsServer server(loop.io, fixedSnapshot, "v", "mock");
  ASSERT_TRUE(server.start(ip("127.0.0.1"), 0));
  Response r = fetch(AF_INET, server.port(), get("/metrics", "Accept-Encoding: gzip\r\n"));
  ASSERT_TRUE(r.complete) << r.head;
  EXPECT_TRUE(r.has("Content-Encoding: gzip")) << r.head;
  EXPECT_TRUE(hasLine(gunzip(r.body), "keel_scrape_success 1"));
}

TEST(MetricsServer, OversizedRequestIsRefusedAndClosed) {
  LoopThread loop;
  MetricsServer server(loop.io, fixedSnapshot, "v", "mock");
  ASSERT_TRUE(server.start(ip("127.0.0.1"), 0));
  int fd = connectLoopback(AF_INET, server.port());
  ASSERT_GE(fd, 0);
  send(fd, get("/metrics", "X-Pad: " + std::string(MetricsServer::kMaxRequestHeader, 'a') + "\r\n"));
  Response r = readResponse(fd);
  EXPECT_EQ(r.status(), "HTTP/1.1 431 Request Header Fields Too Large");
  EXPECT_TRUE(closedByServer(fd));
  ::close(fd);
}

// Keep-alive connections hold no thread: three clients (more than the
// server's threads) each keep a connection open and take turns on it.
TEST(MetricsServer, KeepAliveConnectionsTakeTurns) {
  LoopThread loop;
  MetricsServer server(loop.io, fixedSnapshot, "v", "mock");
  ASSERT_TRUE(server.start(ip("127.0.0.1"), 0));
  std::array<int, MetricsServer::kThreads + 1> fds;
  for (int& fd : fds) ASSERT_GE(fd = connectLoopback(AF_INET, server.port()), 0);
  for (int round = 0; round < 2; ++round)
    for (int fd : fds) {
      send(fd, get("/metrics"));
      Response r = readResponse(fd);
      EXPECT_EQ(r.status(), "HTTP/1.1 200 OK");
      EXPECT_TRUE(hasLine(r.body, "keel_scrape_success 1"));
    }
  for (int fd : fds) ::close(fd);
}

// Past kMaxConnections a newcomer closes the connection that has waited
// longest for a request (32 idle connections used to lock every scrape
// out for their 30 s idle timeout); the others stay served.
TEST(MetricsServer, ConnectionsAreCappedAndTheLongestIdleMakesRoom) {
  LoopThread loop;
  MetricsServer server(loop.io, fixedSnapshot, "v", "mock");
  ASSERT_TRUE(server.start(ip("127.0.0.1"), 0));
  std::vector<int> open;
  for (size_t i = 0; i < MetricsServer::kMaxConnections; ++i) {
    open.push_back(connectLoopback(AF_INET, server.port()));
    ASSERT_GE(open.back(), 0);
    // A response tells the session exists (and waits again) before the next connects.
    send(open.back(), get("/metrics"));
    ASSERT_TRUE(readResponse(open.back()).complete);
  }
  int extra = connectLoopback(AF_INET, server.port());
  ASSERT_GE(extra, 0);
  send(extra, get("/metrics"));
  Response r = readResponse(extra);
  EXPECT_TRUE(r.complete);
  EXPECT_TRUE(hasLine(r.body, "keel_scrape_success 1"));
  // open[0] waited longest: closed. The rest are still served.
  EXPECT_TRUE(closedByServer(open[0]));
  for (size_t i = 1; i < open.size(); ++i) {
    send(open[i], get("/metrics"));
    EXPECT_TRUE(readResponse(open[i]).complete) << "connection " << i;
  }
  ::close(extra);
  for (int fd : open) ::close(fd);
}

// Clients that send a request and never read the answer leave their
// sessions in a write, not waiting for a request, so before 2026-12-06 no
// newcomer could make room: kMaxConnections of them locked every scrape
// out for kWriteTimeout (60 s), each holding an exposition. Past the cap a
// newcomer now closes the session whose write has been stuck longest, once
// stuck for stalledWrite (200 ms here). The answer is ~6 MiB (a long
// version label), more than loopback's socket buffers hold, so the writes
// do stall.
TEST(MetricsServer, StuckWritesMakeRoomPastTheCap) {
  LoopThread loop;
  auto large = [] {
    MetricsSnapshot s = fixedSnapshot();
    s.version = std::string(6 << 20, 'v');
    return s;
  };
  MetricsServer server(loop.io, large, "v", "mock", LoopCollector::kCollectTimeout, std::chrono::milliseconds(200));
  ASSERT_TRUE(server.start(ip("127.0.0.1"), 0));
  std::vector<int> stuck;
  for (size_t i = 0; i < MetricsServer::kMaxConnections; ++i) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(fd, 0);
    stuck.push_back(fd);
    const int small = 4096;  // before connect: the window it advertises stays small
    ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(server.port()));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    send(fd, get("/metrics"));
  }
  // A newcomer is served once some write has been stuck 200 ms: tried
  // every 300 ms, at most 30 times (a slow box takes a while to start all
  // 32 writes); before, each try was closed before its request was read.
  Response r;
  for (int attempt = 0; attempt < 30 && !r.complete; ++attempt) {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    int fd = connectLoopback(AF_INET, server.port());
    ASSERT_GE(fd, 0);
    send(fd, get("/metrics"));
    r = readResponse(fd);
    ::close(fd);
  }
  EXPECT_TRUE(r.complete) << "no newcomer was served while 32 answers were stuck";
  EXPECT_TRUE(hasLine(r.body, "keel_scrape_success 1"));
  EXPECT_LE(server.connectionCount(), MetricsServer::kMaxConnections);
  for (int fd : stuck) ::close(fd);
}

// The cap holds under a flood of connections: each newcomer closes exactly
// one waiting session (a session chosen once cannot be chosen again), so
// the open count settles back to kMaxConnections, not to the flood's size.
TEST(MetricsServer, AFloodOfConnectionsStaysWithinTheCap) {
  LoopThread loop;
  MetricsServer server(loop.io, fixedSnapshot, "v", "mock");
  ASSERT_TRUE(server.start(ip("127.0.0.1"), 0));
  std::vector<int> open;
  for (size_t i = 0; i < MetricsServer::kMaxConnections + 200; ++i) {
    open.push_back(connectLoopback(AF_INET, server.port()));
    ASSERT_GE(open.back(), 0);
  }
  // Bounded: the closes are posted to the sessions' strands.
  size_t count = server.connectionCount();
  for (int i = 0; i < 200 && count > MetricsServer::kMaxConnections; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    count = server.connectionCount();
  }
  EXPECT_LE(count, MetricsServer::kMaxConnections);
  // The newest are the ones served.
  send(open.back(), get("/metrics"));
  EXPECT_TRUE(readResponse(open.back()).complete);
  for (int fd : open) ::close(fd);
}

// Two scrapes are served at once (an HA pair of Prometheus servers): the
// loop here has two threads, and the first snapshot waits until the other
// one has begun too. Served one after the other, the second snapshot could
// begin only once the first had returned: at most one at a time. Only
// generous bounds remain (the client's 10 s reads, the first snapshot's
// 30 s for a server that never takes the second); the collector waits 60 s,
// not kCollectTimeout's 2 s, so a stalled box cannot make the first scrape
// give up (keel_scrape_success 0) while the second is on its way.
TEST(MetricsServer, TwoScrapesAtOnce) {
  boost::asio::io_context io;
  auto guard = boost::asio::make_work_guard(io);
  std::thread t1([&] { io.run(); }), t2([&] { io.run(); });
  std::mutex mu;
  std::condition_variable cv;
  int begun = 0, inSource = 0, most = 0;
  auto source = [&] {
    std::unique_lock lock(mu);
    ++begun;
    most = std::max(most, ++inSource);
    cv.notify_all();
    cv.wait_for(lock, std::chrono::seconds(30), [&] { return begun >= 2; });
    --inSource;
    return fixedSnapshot();
  };
  {
    MetricsServer server(io, source, "v", "mock", std::chrono::seconds(60));
    ASSERT_TRUE(server.start(ip("127.0.0.1"), 0));
    int a = connectLoopback(AF_INET, server.port()), b = connectLoopback(AF_INET, server.port());
    ASSERT_GE(a, 0);
    ASSERT_GE(b, 0);
    send(a, get("/metrics"));
    send(b, get("/metrics"));
    EXPECT_TRUE(hasLine(readResponse(a).body, "keel_scrape_success 1"));
    EXPECT_TRUE(hasLine(readResponse(b).body, "keel_scrape_success 1"));
    ::close(a);
    ::close(b);
  }
  {
    std::lock_guard lock(mu);
    EXPECT_EQ(most, 2) << "the scrapes were served one after the other";
  }
  guard.reset();
  io.stop();
  t1.join();
  t2.join();
}

// stop() does not wait for a client that keeps an idle connection: it
// returns, and the client sees its connection closed.
TEST(MetricsServer, StopClosesIdleKeepAliveConnections) {
  LoopThread loop;
  MetricsServer server(loop.io, fixedSnapshot, "v", "mock");
  ASSERT_TRUE(server.start(ip("127.0.0.1"), 0));
  int fd = connectLoopback(AF_INET, server.port());
  ASSERT_GE(fd, 0);
  send(fd, get("/metrics"));
  Response r = readResponse(fd);
  ASSERT_TRUE(r.complete);
  EXPECT_FALSE(r.has("Connection: close")) << r.head;
  server.stop();
  EXPECT_TRUE(closedByServer(fd));
  ::close(fd);
}

TEST(MetricsServer, BindErrorsSayWhy) {
  LoopThread loop;
  MetricsServer first(loop.io, fixedSnapshot, "v", "mock");
  ASSERT_TRUE(first.start(ip("127.0.0.1"), 0));
  const uint16_t port = static_cast<uint16_t>(first.port());
  MetricsServer second(loop.io, fixedSnapshot, "v", "mock");
  Status s = second.start(ip("127.0.0.1"), port);
  EXPECT_FALSE(s);
  EXPECT_EQ(s.message(), "metrics: cannot listen on 127.0.0.1:" + std::to_string(port) +
                             ": Address already in use");
  // Not an address of this host (TEST-NET-1, and the IPv6 documentation
  // prefix, written in brackets).
  s = second.start(ip("192.0.2.1"), 9477);
  EXPECT_EQ(s.message(), "metrics: cannot listen on 192.0.2.1:9477: Cannot assign requested address");
  if (!ipv6Loopback()) {
    EXPECT_NE(geteuid(), 0u) << "no IPv6 loopback here (as root: CI must have it)";
    return;
  }
  s = second.start(ip("2001:db8::1"), 9477);
  EXPECT_EQ(s.message(), "metrics: cannot listen on [2001:db8::1]:9477: Cannot assign requested address");
  MetricsServer third(loop.io, fixedSnapshot, "v", "mock");
  ASSERT_TRUE(third.start(ip("::1"), 0));
  const uint16_t port6 = static_cast<uint16_t>(third.port());
  s = second.start(ip("::1"), port6);
  EXPECT_EQ(s.message(), "metrics: cannot listen on [::1]:" + std::to_string(port6) + ": Address already in use");
}

}  // namespace
}  // namespace keel

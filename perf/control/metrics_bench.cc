// SPDX-License-Identifier: Apache-2.0
// metrics_bench: what a Prometheus scrape of keeld costs, and where.
//
// Method. keeld's DaemonBackend over the recording mock data plane (counters
// filled in), S services x R reals (default 1000 x 10 = 10,000 reals, every
// real with a TCP health check so each has its histogram; the checks never
// run: the loop is not run, so only their state is read). Timed, each the
// median of N runs (default 15), wall clock on one thread:
//   baseline  DaemonBackend::listServices(): what `keelctl service list`
//             makes the loop do;
//   snapshot  collectSnapshot(): what a scrape makes the loop do (the
//             part that delays health checks and keelctl);
//   render    renderMetrics() + prometheus::TextSerializer on the
//             scraper's thread (does not hold the loop);
//   http      GET /metrics over loopback from a MetricsServer whose loop
//             runs on its own thread (everything a scraper waits for).
// Results are printed absolute and as ratios to the baseline.
// As keeld by default, one periodic count of the connection table has run
// first (metrics.flow_count_interval: each real's keel_real_flows, two
// series a real, and service list's Flows); --no-flow-counts leaves it out,
// as keeld with flow_count_interval: 0s.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <prometheus/text_serializer.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "daemon/daemon_backend.h"
#include "daemon/metrics.h"
#include "mock_dataplane.h"

#include "../common/bench_env.h"

namespace keel {
namespace {

using Clock = std::chrono::steady_clock;

double medianMs(int runs, const std::function<void()>& fn) {
  std::vector<double> t;
  for (int i = 0; i < runs; ++i) {
    auto a = Clock::now();
    fn();
    t.push_back(std::chrono::duration<double, std::milli>(Clock::now() - a).count());
  }
  return bench::median(t);
}

std::string configText(int services, int reals) {
  std::ostringstream y;
  y << "dataplane: {kind: xdp, interface: eth0}\n"
       "node: {tunnel_source_v4: 10.0.0.2, next_hop_mac: \"02:00:00:00:00:01\"}\n"
    << "limits: {max_services: " << services << ", max_reals: " << services * reals << "}\n"
    << "services:\n";
  for (int s = 0; s < services; ++s) {
    y << "  - name: svc" << s << "\n    vip: 10." << (100 + s / 65536) << "." << (s / 256) % 256 << "."
      << s % 256 << "\n    port: 80\n    protocol: tcp\n"
      << "    health: {type: tcp, interval: 1m}\n    reals:\n";
    for (int r = 0; r < reals; ++r) {
      int n = s * reals + r;
      y << "      - {address: 10." << (1 + n / 65536) << "." << (n / 256) % 256 << "." << n % 256 << "}\n";
    }
  }
  return y.str();
}

std::string httpGet(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return {};
  }
  const char req[] = "GET /metrics HTTP/1.0\r\n\r\n";
  (void)!::write(fd, req, sizeof req - 1);
  std::string resp;
  char buf[65536];
  for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) resp.append(buf, n);
  ::close(fd);
  return resp;
}

int run(int services, int reals, int runs, bool flowCounts) {
  std::printf("metrics_bench: %d services x %d reals (%d reals, each with a tcp check), median of %d runs, %s\n",
              services, reals, services * reals, runs,
              flowCounts ? "with a flow count (keeld's default)" : "no flow counts (--no-flow-counts)");
  std::printf("machine: %s; loadavg %s\n", keel::bench::machineDescription().c_str(),
              keel::bench::loadAverage().c_str());

  boost::asio::io_context io;
  DataplaneLimits limits{static_cast<uint32_t>(services), static_cast<uint32_t>(services * reals), 1000000};
  test::MockDataplane dp(limits);
  Registry registry(dp);
  const std::string text = configText(services, reals);
  DaemonBackend backend(
      io, registry, "keel.yaml", [&](const std::string& p) { return parseConfig(text, p); },
      [](const Config&, const Config&) { return Status::ok(); }, [](bool) {});
  ConfigResult cfg = parseConfig(text, "keel.yaml");
  if (!cfg.ok()) {
    std::fprintf(stderr, "config: %s\n", cfg.errors.front().c_str());
    return 1;
  }
  if (Status s = backend.start(*cfg.config); !s) {
    std::fprintf(stderr, "start: %s\n", s.message().c_str());
    return 1;
  }
  dp.stats.services.assign(services, keel_counter{123456789, 98765432100});
  dp.stats.backends.assign(services * reals, keel_counter{12345678, 9876543210});
  if (flowCounts) {  // one count, as keeld's first after its start (bounded wait)
    backend.startFlowCounts(std::chrono::minutes(1));
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (!backend.flowCounts() && std::chrono::steady_clock::now() < deadline) {
      io.restart();
      io.run_for(std::chrono::milliseconds(10));
    }
    if (!backend.flowCounts()) {
      std::fprintf(stderr, "metrics_bench: the flow count did not end within 30 s\n");
      return 1;
    }
    io.restart();
  }

  const double base = medianMs(runs, [&] { (void)backend.listServices(); });
  MetricsSnapshot snap;
  const double collect = medianMs(runs, [&] { snap = collectSnapshot(backend, "bench"); });
  std::string out;
  const double render = medianMs(runs, [&] {
    std::ostringstream o;
    prometheus::TextSerializer().Serialize(o, renderMetrics(snap));
    out = o.str();
  });

  // End to end: the loop on its own thread, as in keeld.
  auto guard = boost::asio::make_work_guard(io);
  std::thread loop([&] { io.run(); });
  MetricsServer server(io, [&] { return collectSnapshot(backend, "bench"); }, "bench", "mock");
  double http = -1;
  size_t httpBytes = 0;
  if (server.start(*IpAddress::parse("127.0.0.1"), 0)) {
    http = medianMs(runs, [&] { httpBytes = httpGet(server.port()).size(); });
  }
  server.stop();
  guard.reset();
  io.stop();
  loop.join();

  size_t lines = std::count(out.begin(), out.end(), '\n');
  std::printf("exposition: %zu bytes, %zu lines (http response %zu bytes)\n", out.size(), lines, httpBytes);
  std::printf("%-10s %10s %8s\n", "step", "ms", "x base");
  std::printf("%-10s %10.2f %8.2f   (listServices: keelctl service list's loop work)\n", "baseline", base, 1.0);
  std::printf("%-10s %10.2f %8.2f   (on the loop per scrape)\n", "snapshot", collect, collect / base);
  std::printf("%-10s %10.2f %8.2f   (scraper thread)\n", "render", render, render / base);
  std::printf("%-10s %10.2f %8.2f   (GET /metrics end to end)\n", "http", http, http / base);
  return 0;
}

}  // namespace
}  // namespace keel

int main(int argc, char** argv) {
  bool flowCounts = true;
  if (argc > 1 && std::string(argv[1]) == "--no-flow-counts") {
    flowCounts = false;
    --argc;
    ++argv;
  }
  int services = argc > 1 ? std::atoi(argv[1]) : 1000;
  int reals = argc > 2 ? std::atoi(argv[2]) : 10;
  int runs = argc > 3 ? std::atoi(argv[3]) : 15;
  if (services < 1 || reals < 1 || runs < 1) {
    std::fprintf(stderr, "usage: metrics_bench [--no-flow-counts] [SERVICES [REALS [RUNS]]]\n");
    return 2;
  }
  return keel::run(services, reals, runs, flowCounts);
}

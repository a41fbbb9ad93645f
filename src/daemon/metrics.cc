// SPDX-License-Identifier: Apache-2.0
#include "daemon/metrics.h"

#include <prometheus/client_metric.h>
#include <prometheus/exposer.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/post.hpp>
#include <cerrno>
#include <cstring>
#include <deque>
#include <future>
#include <iterator>
#include <thread>
#include <limits>
#include <map>

#include "control/config.h"
#include "daemon/daemon_backend.h"

namespace keel {

namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;
using Labels = std::vector<ClientMetric::Label>;

const char* const kReasonNames[KEEL_R_MAX] = {KEEL_REASON_NAMES};

// node_exporter's IPVS collector writes the protocol in capitals.
std::string protoLabel(uint8_t proto) {
  return proto == KEEL_PROTO_TCP ? "TCP" : proto == KEEL_PROTO_UDP ? "UDP" : std::to_string(proto);
}

Labels serviceLabels(const api::ServiceSnapshot& s) {
  return {{"service", s.name},
          {"local_address", s.vip.toString()},
          {"local_port", std::to_string(s.port)},
          {"proto", protoLabel(s.protocol)}};
}

// A real receives on the VIP's port (ipip and l2dsr keep the L4 header).
Labels realLabels(const api::ServiceSnapshot& s, const IpAddress& real) {
  Labels l = serviceLabels(s);
  l.push_back({"remote_address", real.toString()});
  l.push_back({"remote_port", std::to_string(s.port)});
  return l;
}

// Families in the order added; a deque so the references add() returns
// stay valid while more families are added.
class Families {
 public:
  MetricFamily& add(std::string name, std::string help, MetricType type) {
    families_.push_back(MetricFamily{std::move(name), std::move(help), type, {}});
    return families_.back();
  }
  std::vector<MetricFamily> take() {
    return {std::make_move_iterator(families_.begin()), std::make_move_iterator(families_.end())};
  }

 private:
  std::deque<MetricFamily> families_;
};

void sample(MetricFamily& f, Labels labels, double value) {
  ClientMetric m;
  m.label = std::move(labels);
  if (f.type == MetricType::Counter)
    m.counter.value = value;
  else
    m.gauge.value = value;
  f.metric.push_back(std::move(m));
}

void renderBuildInfo(Families& out, const std::string& version, const std::string& dataplane) {
  auto& f = out.add("keel_build_info", "keeld's version and data plane; always 1", MetricType::Gauge);
  sample(f, {{"version", version}, {"dataplane", dataplane}}, 1);
}

void renderServices(Families& out, const MetricsSnapshot& s) {
  auto& pk = out.add("keel_service_packets_total", "Packets forwarded for the service (all its reals)",
                     MetricType::Counter);
  auto& by = out.add("keel_service_bytes_total",
                     "Bytes forwarded for the service, frame length as received (before encapsulation)",
                     MetricType::Counter);
  auto& ring = out.add("keel_service_ring_slots",
                       "Slots (M) of the ring the data plane holds; 0: no usable real, new flows are dropped",
                       MetricType::Gauge);
  auto& rpk = out.add("keel_real_packets_total", "Packets forwarded to the real", MetricType::Counter);
  auto& rby = out.add("keel_real_bytes_total", "Bytes forwarded to the real, frame length as received",
                      MetricType::Counter);
  auto& up = out.add("keel_real_up", "Health verdict of the real: 1 up, 0 down (type none: always 1)",
                     MetricType::Gauge);
  auto& weight = out.add("keel_real_weight",
                         "Configured weight (for a draining real, the weight it returns with)",
                         MetricType::Gauge);
  auto& drain = out.add("keel_real_draining",
                        "1 while the real is drained (out of the ring, established flows kept)",
                        MetricType::Gauge);
  for (const api::ServiceSnapshot& svc : s.services) {
    sample(pk, serviceLabels(svc), static_cast<double>(svc.counters.packets));
    sample(by, serviceLabels(svc), static_cast<double>(svc.counters.bytes));
    sample(ring, serviceLabels(svc), svc.publishedRingSize);
    for (const api::RealSnapshot& r : svc.reals) {
      sample(rpk, realLabels(svc, r.address), static_cast<double>(r.counters.packets));
      sample(rby, realLabels(svc, r.address), static_cast<double>(r.counters.bytes));
      sample(up, realLabels(svc, r.address), r.healthy ? 1 : 0);
      sample(weight, realLabels(svc, r.address), r.weight);
      sample(drain, realLabels(svc, r.address), r.draining ? 1 : 0);
    }
  }
}

// Check durations: one histogram per service (the sum over its checked
// reals) plus each real's latest duration as a gauge. A histogram per real
// is 17 series per real: at 10,000 reals that made the exposition 41 MB and
// a scrape take seconds (perf/control/metrics_bench.cc), for little more
// than the latest value already tells about one real.
void renderHealth(Families& out, const MetricsSnapshot& s) {
  auto& checks = out.add("keel_health_checks_total", "Completed health checks of the real, by result (ok|fail)",
                         MetricType::Counter);
  auto& transitions = out.add("keel_health_transitions_total",
                              "Health state changes of the real (up to down and back)", MetricType::Counter);
  auto& last = out.add("keel_health_check_last_duration_seconds", "How long the real's latest health check took",
                       MetricType::Gauge);
  auto& duration = out.add("keel_health_check_duration_seconds",
                           "How long health checks of the service's reals took", MetricType::Histogram);
  struct Sum {
    std::array<uint64_t, kHealthDurationBuckets.size() + 1> buckets{};
    double seconds = 0;
  };
  std::map<std::string, const api::ServiceSnapshot*> byName;
  for (const api::ServiceSnapshot& svc : s.services) byName[svc.name] = &svc;
  std::map<std::string, Sum> perService;
  for (const HealthStatus& h : s.health) {
    if (h.target.spec.type == HealthCheckSpec::Type::None) continue;  // no checks run
    auto it = byName.find(h.target.service);
    if (it == byName.end()) continue;  // removed between the two reads (cannot happen on one loop turn)
    Labels labels = realLabels(*it->second, h.target.address);
    Labels ok = labels, fail = labels;
    ok.push_back({"result", "ok"});
    fail.push_back({"result", "fail"});
    sample(checks, ok, static_cast<double>(h.checks - h.failures));
    sample(checks, fail, static_cast<double>(h.failures));
    sample(transitions, labels, static_cast<double>(h.transitions));
    sample(last, std::move(labels), std::chrono::duration<double>(h.lastDuration).count());
    Sum& sum = perService[h.target.service];
    for (size_t i = 0; i < sum.buckets.size(); ++i) sum.buckets[i] += h.durationBuckets[i];
    sum.seconds += h.durationSumSeconds;
  }
  for (const auto& [name, sum] : perService) {
    // HealthStatus keeps per-bucket counts; the exposition wants them
    // cumulative, ending with +Inf.
    ClientMetric m;
    m.label = serviceLabels(*byName[name]);
    uint64_t cumulative = 0;
    for (size_t i = 0; i < sum.buckets.size(); ++i) {
      cumulative += sum.buckets[i];
      double bound = i < kHealthDurationBuckets.size() ? kHealthDurationBuckets[i]
                                                        : std::numeric_limits<double>::infinity();
      m.histogram.bucket.push_back({cumulative, bound});
    }
    m.histogram.sample_count = cumulative;
    m.histogram.sample_sum = sum.seconds;
    duration.metric.push_back(std::move(m));
  }
}

void renderDataplane(Families& out, const GlobalStats& s) {
  auto& pk = out.add("keel_dataplane_packets_total",
                     "Packets the data plane saw, each counted once under its verdict (docs/architecture.md)",
                     MetricType::Counter);
  auto& by = out.add("keel_dataplane_bytes_total", "Bytes the data plane saw, by verdict", MetricType::Counter);
  for (int r = 0; r < KEEL_R_MAX; ++r) {
    sample(pk, {{"reason", kReasonNames[r]}}, static_cast<double>(s.reasons[r].packets));
    sample(by, {{"reason", kReasonNames[r]}}, static_cast<double>(s.reasons[r].bytes));
  }
  sample(out.add("keel_conntrack_capacity",
                 "Connection-table entries the data plane was sized for (limits.conn_table_size)",
                 MetricType::Gauge),
         {}, s.connTableCapacity);
  if (s.connTableEntries)
    sample(out.add("keel_conntrack_entries", "Live connection-table entries", MetricType::Gauge), {},
           static_cast<double>(*s.connTableEntries));
  if (!s.workers.empty()) {
    auto& wp = out.add("keel_dpdk_worker_packets_total",
                       "Packets a DPDK worker received from the port's RX queue it owns (how RSS spreads flows)",
                       MetricType::Counter);
    for (const WorkerStats& w : s.workers)
      sample(wp, {{"worker", std::to_string(w.worker)}, {"lcore", std::to_string(w.lcore)}},
             static_cast<double>(w.rxPackets));
  }
}

}  // namespace

MetricsSnapshot collectSnapshot(DaemonBackend& backend, const std::string& version) {
  MetricsSnapshot s;
  s.version = version;
  // One data-plane read for the services and the global counters.
  auto [services, global] = backend.servicesAndGlobalStats();
  s.services = std::move(services);
  s.global = std::move(global);
  s.health = backend.checker().snapshot();
  return s;
}

std::vector<MetricFamily> renderMetrics(const MetricsSnapshot& snapshot, bool ok) {
  Families out;
  renderBuildInfo(out, snapshot.version, snapshot.global.dataplane);
  sample(out.add("keel_scrape_success", "1 if keeld's event loop answered this scrape in time, else 0 (and "
                                        "nothing else but keel_build_info is shown)",
                 MetricType::Gauge),
         {}, ok ? 1 : 0);
  if (!ok) return out.take();
  renderServices(out, snapshot);
  renderHealth(out, snapshot);
  renderDataplane(out, snapshot.global);
  return out.take();
}

// ------------------------------------------------------------ collector

LoopCollector::LoopCollector(boost::asio::io_context& io, Source source, std::string version,
                             std::string dataplane, std::chrono::milliseconds timeout)
    : io_(io),
      source_(std::move(source)),
      version_(std::move(version)),
      dataplane_(std::move(dataplane)),
      timeout_(timeout) {}

std::vector<MetricFamily> LoopCollector::Collect() const {
  MetricsSnapshot failed;
  failed.version = version_;
  failed.global.dataplane = dataplane_;
  if (stopped_) return renderMetrics(failed, false);
  // The promise is shared with the job: if we give up waiting, the job may
  // still run later and must find it alive.
  auto promise = std::make_shared<std::promise<MetricsSnapshot>>();
  std::future<MetricsSnapshot> future = promise->get_future();
  boost::asio::post(io_, [promise, source = source_] {
    try {
      promise->set_value(source());
    } catch (...) {
      promise->set_exception(std::current_exception());
    }
  });
  // Wait in short slices so stop() (keeld exiting, the loop gone) releases
  // a waiting scrape quickly instead of after the whole timeout.
  const auto deadline = std::chrono::steady_clock::now() + timeout_;
  while (future.wait_for(std::chrono::milliseconds(20)) != std::future_status::ready) {
    if (stopped_ || std::chrono::steady_clock::now() >= deadline) return renderMetrics(failed, false);
  }
  try {
    return renderMetrics(future.get());
  } catch (...) {
    return renderMetrics(failed, false);
  }
}

// ------------------------------------------------------------ server

MetricsServer::MetricsServer(boost::asio::io_context& io, LoopCollector::Source source, std::string version,
                             std::string dataplane)
    : collector_(std::make_shared<LoopCollector>(io, std::move(source), std::move(version),
                                                 std::move(dataplane))) {}

MetricsServer::~MetricsServer() { stop(); }

Status MetricsServer::start(const IpAddress& address, uint16_t port) {
  const std::string where = address.toString() + ":" + std::to_string(port);
  if (!address.isV4()) return Status::error("metrics: cannot listen on " + where + ": IPv4 only");
  // CivetWeb reports any listen failure as "null context ... Possible
  // problem binding to port": bind a probe socket the way it will (with
  // SO_REUSEADDR) first, so the operator reads the real reason.
  if (port != 0) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return Status::error("metrics: socket: " + std::string(std::strerror(errno)));
    int one = 1;
    (void)::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    std::memcpy(&sa.sin_addr, address.bytes().data(), 4);
    int rc = ::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
    int err = errno;
    ::close(fd);
    if (rc != 0) return Status::error("metrics: cannot listen on " + where + ": " + std::strerror(err));
  }
  // 0.0.0.0 is not an address to connect to; loopback reaches it.
  wakeAddress_ = address.toString() == "0.0.0.0" ? *IpAddress::parse("127.0.0.1") : address;
  try {
    // Two threads: an HA pair of Prometheus servers scrapes concurrently
    // (each scrape then waits for its own turn on the loop).
    exposer_ = std::make_unique<prometheus::Exposer>(where, 2);
  } catch (const std::exception& e) {
    return Status::error("metrics: cannot listen on " + where + ": " + e.what());
  }
  exposer_->RegisterCollectable(collector_);
  return Status::ok();
}

int MetricsServer::port() const {
  if (!exposer_) return 0;
  auto ports = exposer_->GetListeningPorts();
  return ports.empty() ? 0 : ports.front();
}

void MetricsServer::stop() {
  collector_->stop();
  if (!exposer_) return;
  // CivetWeb's listener thread polls with a fixed 2 s timeout and only sees
  // the stop flag when it wakes, so ~Exposer alone takes up to 2 s (every
  // keeld stop would). Connecting to our own port wakes it; repeat until
  // the destructor returns, since a connect that lands before the flag is
  // set only makes it poll again. Each connection is closed at once, so
  // the worker that takes it reads EOF and is free.
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(port()));
  std::memcpy(&sa.sin_addr, wakeAddress_.bytes().data(), 4);
  std::atomic<bool> done{false};
  std::thread waker([&] {
    while (!done) {
      int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (fd >= 0) {
        (void)::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
        ::close(fd);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  });
  exposer_.reset();
  done = true;
  waker.join();
}

}  // namespace keel

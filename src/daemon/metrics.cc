// SPDX-License-Identifier: Apache-2.0
#include "daemon/metrics.h"

#include <prometheus/client_metric.h>
#include <prometheus/counter.h>
#include <prometheus/registry.h>
#include <prometheus/summary.h>
#include <prometheus/text_serializer.h>
#include <zlib.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <climits>
#include <deque>
#include <future>
#include <iterator>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "common/asio_address.h"
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

Labels serviceLabels(const std::string& name, const IpAddress& vip, uint16_t port, uint8_t protocol) {
  return {{"service", name},
          {"local_address", vip.toString()},
          {"local_port", std::to_string(port)},
          {"proto", protoLabel(protocol)}};
}

Labels serviceLabels(const api::ServiceSnapshot& s) { return serviceLabels(s.name, s.vip, s.port, s.protocol); }

// A real receives on the VIP's port (ipip and l2dsr keep the L4 header).
Labels realLabels(const std::string& name, const IpAddress& vip, uint16_t port, uint8_t protocol,
                  const IpAddress& real) {
  Labels l = serviceLabels(name, vip, port, protocol);
  l.push_back({"remote_address", real.toString()});
  l.push_back({"remote_port", std::to_string(port)});
  return l;
}

Labels realLabels(const api::ServiceSnapshot& s, const IpAddress& real) {
  return realLabels(s.name, s.vip, s.port, s.protocol, real);
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
  auto& up = out.add("keel_real_up",
                     "Health verdict of the real: 1 up, 0 down (type none: 1, except an l2dsr real held down "
                     "until its MAC is known)",
                     MetricType::Gauge);
  auto& weight = out.add("keel_real_weight",
                         "Configured weight (for a draining real, the weight it returns with)",
                         MetricType::Gauge);
  auto& drain = out.add("keel_real_draining",
                        "1 while the real is drained (out of the ring, established flows kept)",
                        MetricType::Gauge);
  // A down real that still gets new flows: fail-open keeps the last
  // serving reals in the ring when all are down, so keel_real_up 0 alone
  // does not tell "out of the ring" from "gets every flow".
  auto& held = out.add("keel_real_held",
                       "1 while the real is down but held in the ring by fail-open (no real of the service "
                       "serves: it gets new flows), else 0",
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
      sample(held, realLabels(svc, r.address), r.held ? 1 : 0);
    }
  }
}

// Each real's flows as the last walk of the connection table counted them
// (keelctl conns --count's figures): a real the walk knew with no entry
// shows 0, so a drained real's count can be watched down to it. The figures
// are the ones service.list gives (snapshotOf), so a real added, or removed
// and added again, since the walk has no series until the next walk rather
// than its previous life's count, and a real removed since has none. Absent
// until the first walk has ended; the failures count is there whenever
// walks are.
void renderFlows(Families& out, const MetricsSnapshot& s) {
  if (!s.flows && s.flowCountFailures == 0) return;
  sample(out.add("keel_conntrack_flow_count_failures_total",
                 "Walks of the connection table for keel_real_flows that failed (the log says why)",
                 MetricType::Counter),
         {}, static_cast<double>(s.flowCountFailures));
  if (!s.flows) return;
  auto& real = out.add("keel_real_flows",
                       "Connection-table entries naming the real at the last count (metrics.flow_count_interval): "
                       "state kept (its flow's next packet goes to the real: a live flow) or not_kept (an entry "
                       "left by a flow that idled past its timeout or whose real went down or changed)",
                       MetricType::Gauge);
  for (const api::ServiceSnapshot& svc : s.services)
    for (const api::RealSnapshot& r : svc.reals) {
      if (!r.flows) continue;
      Labels labels = realLabels(svc, r.address);
      labels.push_back({"state", "kept"});
      sample(real, labels, static_cast<double>(r.flows->kept));
      labels.back().value = "not_kept";
      sample(real, std::move(labels), static_cast<double>(r.flows->notKept));
    }
  auto& all = out.add("keel_conntrack_flows",
                      "Connection-table entries at the last count, every service's and none's, by state as for "
                      "keel_real_flows",
                      MetricType::Gauge);
  sample(all, {{"state", "kept"}}, static_cast<double>(s.flows->kept));
  sample(all, {{"state", "not_kept"}}, static_cast<double>(s.flows->notKept));
  sample(out.add("keel_conntrack_flows_last_count_timestamp_seconds",
                 "When the last count of the connection table began (Unix time)", MetricType::Gauge),
         {}, std::chrono::duration<double>(s.flows->began.time_since_epoch()).count());
  sample(out.add("keel_conntrack_flows_last_count_duration_seconds",
                 "How long the last count's walk of the table took", MetricType::Gauge),
         {}, s.flows->took.count());
}

// Check durations: one histogram per service (the sum over its checked
// reals) plus each real's latest duration as a gauge. A histogram per real
// is 17 series per real: at 10,000 reals that made the exposition 41 MB and
// a scrape take seconds (perf/control/metrics_bench.cc), for little more
// than the latest value already tells about one real.
void renderHealth(Families& out, const MetricsSnapshot& s) {
  auto& checks = out.add("keel_health_checks_total",
                         "Health checks of the real, by result (ok|fail|error: not run, for an error of this host)",
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
    Labels ok = labels, fail = labels, error = labels;
    ok.push_back({"result", "ok"});
    fail.push_back({"result", "fail"});
    error.push_back({"result", "error"});
    sample(checks, ok, static_cast<double>(h.checks - h.failures));
    sample(checks, fail, static_cast<double>(h.failures));
    sample(checks, error, static_cast<double>(h.notRun));
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
                 "Most connection-table entries the data plane can hold (XDP: limits.conn_table_size; DPDK: "
                 "every worker's IPv4 and IPv6 ways)",
                 MetricType::Gauge),
         {}, s.connTableCapacity);
  if (s.connTableEntries)
    sample(out.add("keel_conntrack_entries",
                   "Occupied connection-table entries, idle ones included (never deleted: a busy table reads full)",
                   MetricType::Gauge),
           {}, static_cast<double>(*s.connTableEntries));
  sample(out.add("keel_conntrack_inserts_skipped_total",
                 "Packets of flows the connection table did not hold, forwarded by the ring but not written "
                 "into it: over node.conntrack_insert_rate (per CPU / worker)",
                 MetricType::Counter),
         {}, static_cast<double>(s.connInsertsSkipped));
  sample(out.add("keel_conntrack_midflow_misses_total",
                 "TCP packets without SYN or RST whose flow the connection table did not hold (no entry, or idle "
                 "past its timeout), picked from the ring: flows begun before this table saw them (another "
                 "balancer or an ECMP change sent them here, a restart without the table) or evicted from it",
                 MetricType::Counter),
         {}, static_cast<double>(s.connMidflowMisses));
  if (s.upkeep) {
    sample(out.add("keel_dataplane_attached",
                   "1 while the XDP program runs on dataplane.interface (the interface of that name now); 0: "
                   "VIP traffic is not forwarded (keeld attaches it again at once where it can, at the latest within "
                   "dataplane.upkeep_interval)",
                   MetricType::Gauge),
           {}, s.upkeep->attached ? 1.0 : 0.0);
    sample(out.add("keel_dataplane_reattach_total",
                   "Times keeld attached its XDP program again (the interface created again, the program detached)",
                   MetricType::Counter),
           {}, static_cast<double>(s.upkeep->reattached));
    sample(out.add("keel_dataplane_pins_restored_total",
                   "Times keeld pinned again pins removed under it (/sys/fs/bpf/keel/IFACE)", MetricType::Counter),
           {}, static_cast<double>(s.upkeep->pinsRestored));
  }
  if (!s.workers.empty()) {
    auto& wp = out.add("keel_dpdk_worker_packets_total",
                       "Packets a DPDK worker received from the port's RX queue it owns (how RSS spreads flows)",
                       MetricType::Counter);
    auto& peer = out.add("keel_dpdk_icmp_peer_lookups_total",
                         "ICMP errors toward a VIP whose flow a DPDK worker's own table missed, looked up in the "
                         "other workers' tables: found (followed the flow), not_found or rate_limited (followed "
                         "the ring)",
                         MetricType::Counter);
    auto& ctEntries = out.add("keel_dpdk_conntrack_entries",
                              "Occupied ways of a DPDK worker's connection table, by family (each family fills "
                              "its own half and evicts its own flows)",
                              MetricType::Gauge);
    auto& ctCapacity = out.add("keel_dpdk_conntrack_capacity",
                               "Ways of a DPDK worker's connection table, by family", MetricType::Gauge);
    auto& ctLive = out.add("keel_dpdk_conntrack_live_evictions_total",
                           "New flows that evicted a flow still within its idle timeout from a DPDK worker's "
                           "table, by family (that flow's next packet is picked from the ring again)",
                           MetricType::Counter);
    for (const WorkerStats& w : s.workers) {
      const std::string worker = std::to_string(w.worker), lcore = std::to_string(w.lcore);
      sample(wp, {{"worker", worker}, {"lcore", lcore}}, static_cast<double>(w.rxPackets));
      for (const auto& [result, n] : {std::pair{"found", w.icmpPeerFound}, std::pair{"not_found", w.icmpPeerNotFound},
                                      std::pair{"rate_limited", w.icmpPeerRateLimited}})
        sample(peer, {{"worker", worker}, {"lcore", lcore}, {"result", result}}, static_cast<double>(n));
      for (size_t f = 0; f < 2; ++f) {
        const char* family = f == 0 ? "ipv4" : "ipv6";
        sample(ctEntries, {{"worker", worker}, {"lcore", lcore}, {"family", family}},
               static_cast<double>(w.connEntries[f]));
        sample(ctCapacity, {{"worker", worker}, {"lcore", lcore}, {"family", family}},
               static_cast<double>(w.connCapacity[f]));
        sample(ctLive, {{"worker", worker}, {"lcore", lcore}, {"family", family}},
               static_cast<double>(w.connLiveEvictions[f]));
      }
    }
    auto& txDrop = out.add("keel_dpdk_worker_tx_dropped_total",
                           "Frames a DPDK worker had to send that a full TX queue refused (freed): path port (to "
                           "a real or a client; already counted as forwarded), to_kernel (the exception "
                           "interface) or from_kernel (the kernel's frames out of the port)",
                           MetricType::Counter);
    auto& fromKernel = out.add("keel_dpdk_exception_egress_packets_total",
                               "Frames from the kernel (the exception interface) a DPDK worker sent out of the port",
                               MetricType::Counter);
    auto& hostFrames = out.add("keel_dpdk_worker_host_frames_ignored_total",
                               "Frames a DPDK worker's net_af_packet queue read that the port's kernel interface "
                               "sent (the host's own, or forwarded by it: the port's MAC as source), ignored",
                               MetricType::Counter);
    for (const WorkerStats& w : s.workers) {
      const std::string worker = std::to_string(w.worker), lcore = std::to_string(w.lcore);
      for (const auto& [path, n] : {std::pair{"port", w.txDropped}, std::pair{"to_kernel", w.toKernelDropped},
                                    std::pair{"from_kernel", w.fromKernelDropped}})
        sample(txDrop, {{"worker", worker}, {"lcore", lcore}, {"path", path}}, static_cast<double>(n));
      sample(fromKernel, {{"worker", worker}, {"lcore", lcore}}, static_cast<double>(w.fromKernel));
      sample(hostFrames, {{"worker", worker}, {"lcore", lcore}}, static_cast<double>(w.hostFramesIgnored));
    }
  }
  if (s.port) {
    const PortStats& p = *s.port;
    auto& pk = out.add("keel_dpdk_port_packets_total",
                       "Packets the DPDK port (NIC or vdev) received and sent, as the driver counts them",
                       MetricType::Counter);
    sample(pk, {{"direction", "rx"}}, static_cast<double>(p.rxPackets));
    sample(pk, {{"direction", "tx"}}, static_cast<double>(p.txPackets));
    auto& dropped = out.add("keel_dpdk_port_rx_dropped_total",
                            "Packets that reached the DPDK port but no worker: missed (its RX queue was full: "
                            "the worker fell behind) or no_mbuf (the packet pool was empty)",
                            MetricType::Counter);
    sample(dropped, {{"reason", "missed"}}, static_cast<double>(p.rxMissed));
    sample(dropped, {{"reason", "no_mbuf"}}, static_cast<double>(p.rxNoMbuf));
    auto& errors = out.add("keel_dpdk_port_errors_total",
                           "Erroneous packets the DPDK port's driver counted, by direction", MetricType::Counter);
    sample(errors, {{"direction", "rx"}}, static_cast<double>(p.rxErrors));
    sample(errors, {{"direction", "tx"}}, static_cast<double>(p.txErrors));
    sample(out.add("keel_dpdk_port_link_up", "1 if the DPDK port's link is up", MetricType::Gauge), {},
           p.linkUp ? 1.0 : 0.0);
    // In bytes a second, as node_exporter's node_network_speed_bytes (base
    // units; until 2026-12-06 keel_dpdk_port_link_speed_mbps in Mb/s).
    sample(out.add("keel_dpdk_port_link_speed_bytes",
                   "The DPDK port's link speed in bytes per second (0: unknown)", MetricType::Gauge),
           {}, static_cast<double>(p.linkSpeedMbps) * 125000.0);
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
  s.flows = backend.flowCounts();
  s.flowCountFailures = backend.flowCountFailures();
  s.nextHopMismatch = backend.nextHopMismatches();
  s.lastReloadOk = backend.lastReloadOk();
  s.configAppliedAt = backend.configAppliedAt();
  s.startedAt = backend.startedAt();
  return s;
}

namespace {

// ok: the loop answered this scrape. Not ok: `age` is the age of the last
// snapshot it gave (which `snapshot` is), or none (nothing but build info).
std::vector<MetricFamily> render(const MetricsSnapshot& snapshot, bool ok, std::optional<double> age) {
  Families out;
  renderBuildInfo(out, snapshot.version, snapshot.global.dataplane);
  sample(out.add("keel_scrape_success",
                 "1 if keeld's event loop answered this scrape in time, else 0: the keel_* series are then those of "
                 "the last scrape it answered (keel_scrape_snapshot_age_seconds), or only keel_build_info if none",
                 MetricType::Gauge),
         {}, ok ? 1 : 0);
  if (!ok && !age) return out.take();
  sample(out.add("keel_scrape_snapshot_age_seconds",
                 "Age of the keel_* series shown: 0 when keeld's event loop answered this scrape, else the time since "
                 "the last scrape it answered",
                 MetricType::Gauge),
         {}, ok ? 0.0 : *age);
  renderServices(out, snapshot);
  renderHealth(out, snapshot);
  renderFlows(out, snapshot);
  renderDataplane(out, snapshot.global);
  if (!snapshot.nextHopMismatch.empty()) {
    auto& f = out.add("keel_next_hop_mac_mismatch",
                      "1 while node.next_hop_mac is the MAC of none of the routers the kernel routes this family's "
                      "ipip reals through on dataplane.interface (their neighbour entries): ipip frames go to "
                      "next_hop_mac and may be lost; 0 otherwise, also when keeld has no router to compare",
                      MetricType::Gauge);
    for (const auto& [family, mismatch] : snapshot.nextHopMismatch) sample(f, {{"family", family}}, mismatch ? 1 : 0);
  }
  // The client libraries' process collectors' name (prometheus-cpp has
  // none): uptime panels and restart alerts (`changes(...[1h]) > 0`) work
  // as for any other exporter.
  if (snapshot.startedAt)
    sample(out.add("process_start_time_seconds", "Start time of the process since unix epoch in seconds",
                   MetricType::Gauge),
           {}, std::chrono::duration<double>(snapshot.startedAt->time_since_epoch()).count());
  // As Prometheus and Alertmanager name their own: an alert on a refused
  // reload, and on a file applied long ago, carries over.
  sample(out.add("keel_config_last_reload_successful",
                 "0 when the last reload (SIGHUP, keelctl config reload) was refused: keeld runs the config applied "
                 "before it; 1 otherwise, also before any reload",
                 MetricType::Gauge),
         {}, snapshot.lastReloadOk ? 1 : 0);
  if (snapshot.configAppliedAt)
    sample(out.add("keel_config_last_reload_success_timestamp_seconds",
                   "When the running config was applied (keeld's start, or the last reload that was), Unix seconds",
                   MetricType::Gauge),
           {},
           std::chrono::duration<double>(snapshot.configAppliedAt->time_since_epoch()).count());
  return out.take();
}

}  // namespace

std::vector<MetricFamily> renderMetrics(const MetricsSnapshot& snapshot, bool ok) {
  return render(snapshot, ok, std::nullopt);
}

std::vector<MetricFamily> renderStale(const MetricsSnapshot& snapshot, double ageSeconds) {
  return render(snapshot, false, ageSeconds);
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
  // Shared with the job: if we give up waiting, the job may still run
  // later and must find it alive, and finds it abandoned: it then skips
  // the read, so a loop that recovers from a stall does not run one data
  // plane read for every scrape that gave up meanwhile.
  struct Job {
    std::promise<MetricsSnapshot> promise;
    std::atomic<bool> abandoned{false};
  };
  auto job = std::make_shared<Job>();
  std::future<MetricsSnapshot> future = job->promise.get_future();
  boost::asio::post(io_, [job, source = source_] {
    if (job->abandoned.load()) return;
    try {
      job->promise.set_value(source());
    } catch (...) {
      job->promise.set_exception(std::current_exception());
    }
  });
  auto late = [&] {
    job->abandoned.store(true);
    std::lock_guard lock(lastMutex_);
    if (stopped_ || !last_) return renderMetrics(failed, false);
    return renderStale(*last_, std::chrono::duration<double>(std::chrono::steady_clock::now() - lastAt_).count());
  };
  // Wait in short slices so stop() (keeld exiting, the loop gone) releases
  // a waiting scrape quickly instead of after the whole timeout.
  const auto deadline = std::chrono::steady_clock::now() + timeout_;
  while (future.wait_for(std::chrono::milliseconds(20)) != std::future_status::ready) {
    if (stopped_ || std::chrono::steady_clock::now() >= deadline) return late();
  }
  std::shared_ptr<const MetricsSnapshot> got;
  try {
    got = std::make_shared<const MetricsSnapshot>(future.get());
  } catch (...) {
    return late();
  }
  {
    std::lock_guard lock(lastMutex_);
    last_ = got;
    lastAt_ = std::chrono::steady_clock::now();
  }
  return renderMetrics(*got);
}

// ------------------------------------------------------------ server

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using boost::system::error_code;

// The text format Prometheus negotiates (and prometheus-cpp served).
constexpr const char* kContentType = "text/plain; version=0.0.4; charset=utf-8";

// gzip (RFC 1952) of a whole body, as prometheus-cpp's Exposer did when the
// scraper accepts it (Prometheus does): the label sets repeat from line to
// line, so an exposition shrinks many-fold. nullopt: send it uncompressed.
std::optional<std::string> gzip(const std::string& in) {
  if (in.size() > UINT_MAX) return std::nullopt;
  z_stream z{};
  // windowBits + 16: a gzip header and trailer instead of zlib's.
  if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, MAX_WBITS + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    return std::nullopt;
  std::string out(deflateBound(&z, static_cast<uLong>(in.size())), '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  int rc = deflate(&z, Z_FINISH);
  out.resize(z.total_out);
  deflateEnd(&z);
  if (rc != Z_STREAM_END) return std::nullopt;
  return out;
}

bool acceptsGzip(const http::request<http::string_body>& req) {
  auto it = req.find(http::field::accept_encoding);
  return it != req.end() && it->value().find("gzip") != beast::string_view::npos;
}

}  // namespace

namespace {
class Session;  // one client connection (below)
}  // namespace

struct MetricsServer::State {
  State(std::shared_ptr<LoopCollector> c, std::chrono::milliseconds stalled)
      : stalledWrite(stalled),
        io(static_cast<int>(kThreads)),
        acceptor(io),
        retry(io),
        collector(std::move(c)),
        registry(std::make_shared<prometheus::Registry>()),
        bytes(prometheus::BuildCounter()
                  .Name("exposer_transferred_bytes_total")
                  .Help("Transferred bytes to metrics services")
                  .Register(*registry)
                  .Add({})),
        scrapes(prometheus::BuildCounter()
                    .Name("exposer_scrapes_total")
                    .Help("Number of times metrics were scraped")
                    .Register(*registry)
                    .Add({})),
        latencies(prometheus::BuildSummary()
                      .Name("exposer_request_latencies")
                      .Help("Latencies of serving scrape requests, in microseconds")
                      .Register(*registry)
                      .Add({}, prometheus::Summary::Quantiles{{0.5, 0.05}, {0.9, 0.01}, {0.99, 0.001}})) {}

  void accept();
  // Full: asks the session that has waited longest for a request to close
  // (on its strand), or if none waits, the one whose answer has been stuck
  // longest, past stalledWrite; false if there is neither (every one is
  // being answered, none stuck).
  bool closeLongestWaiting();
  const std::chrono::milliseconds stalledWrite;
  // The 200 response to GET /metrics; runs the scrape (waits for the loop).
  void scrape(const http::request<http::string_body>& req, http::response<http::string_body>& res);

  // Every open session (registered by accept(), removed by its destructor;
  // both run on any of the server's threads): the count the cap holds, and
  // whom closeLongestWaiting() chooses from. Before io: the sessions io's
  // destructor frees still take themselves out.
  std::mutex sessionsMutex;
  std::map<const void*, std::weak_ptr<Session>> sessions;
  size_t sessionCount() {
    std::lock_guard lock(sessionsMutex);
    return sessions.size();
  }
  asio::io_context io;  // destroyed after the members below, which use it
  tcp::acceptor acceptor;
  asio::steady_timer retry;  // accept back-off after EMFILE and the like
  std::shared_ptr<LoopCollector> collector;
  // The server's own series, the ones prometheus-cpp's Exposer showed.
  std::shared_ptr<prometheus::Registry> registry;
  prometheus::Counter& bytes;
  prometheus::Counter& scrapes;
  prometheus::Summary& latencies;
};

namespace {

// One client connection: read a request, answer, repeat while it keeps the
// connection alive. Exactly one operation is in flight at a time, on the
// connection's strand; the pending operation's handler owns the session, so
// closing the io_context (MetricsServer::stop) frees it and closes the socket.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, MetricsServer::State& state) : stream_(std::move(socket)), state_(state) {}
  ~Session() {
    std::lock_guard lock(state_.sessionsMutex);
    state_.sessions.erase(this);
  }

  // Since when the session has waited for its next request (steady-clock
  // ns: its connect, or the start of its last answer), 0 while it prepares
  // an answer, minus the time its answer's write began while that is
  // written (a write no client reads stalls there), kClaimed once chosen to
  // close. Any thread. The answer's start, not its end: a client may read
  // the answer and send from another connection before this session's
  // write handler runs (the server has kThreads), and that later
  // connection must not rank as the older.
  int64_t waitingSince() const { return waitingSince_.load(std::memory_order_relaxed); }

  // waitingSince() of a session claimed for closing: no longer waiting, so
  // no other newcomer can choose it.
  static constexpr int64_t kClaimed = -1;
  // Takes the session for closing if it still waits since `seen` (any
  // thread): only one newcomer can take a given session, so each admitted
  // newcomer closes exactly one session and the cap holds. A keep-alive
  // connection may be closed between requests at any time (RFC 9112 9.6);
  // a scraper reconnects.
  bool claim(int64_t seen) { return waitingSince_.compare_exchange_strong(seen, kClaimed); }
  // Closes a claimed session on its strand. A request that arrived after
  // the claim finds it claimed in onRead() and closes there instead.
  void closeClaimed() {
    asio::post(stream_.get_executor(), [self = shared_from_this()] { self->close(); });
  }

  void read() {
    waitingSince_.store(answeredAt_ ? answeredAt_ : steadyNow(), std::memory_order_relaxed);
    parser_.emplace();
    parser_->header_limit(MetricsServer::kMaxRequestHeader);
    parser_->body_limit(MetricsServer::kMaxRequestBody);
    // Bounds the wait for the whole next request, so a silent or trickling
    // client is dropped after kIdleTimeout.
    stream_.expires_after(MetricsServer::kIdleTimeout);
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](error_code ec, size_t) { self->onRead(ec); });
  }

 private:
  void onRead(error_code ec) {
    if (waitingSince_.exchange(0) == kClaimed) return close();  // a newcomer took its place
    if (ec && ec.category() != http::make_error_code(http::error::end_of_stream).category()) return close();
    if (ec == http::error::end_of_stream) return close();  // the client closed between requests
    res_.emplace();
    if (ec) {  // malformed or too large: say so and close (the stream is out of step)
      res_->result(ec == http::error::header_limit  ? http::status::request_header_fields_too_large
                   : ec == http::error::body_limit ? http::status::payload_too_large
                                                   : http::status::bad_request);
      res_->version(11);
      res_->keep_alive(false);
      plain(ec.message() + "\n");
      return write();
    }
    const auto& req = parser_->get();
    res_->version(req.version());
    res_->keep_alive(req.keep_alive());
    beast::string_view target = req.target();
    beast::string_view path = target.substr(0, target.find('?'));
    if (path != "/metrics") {
      res_->result(http::status::not_found);
      plain("Not Found: only /metrics is served\n");
    } else if (req.method() != http::verb::get) {
      res_->result(http::status::method_not_allowed);
      res_->set(http::field::allow, "GET");
      plain("Method Not Allowed: GET only\n");
    } else {
      state_.scrape(req, *res_);
    }
    write();
  }

  void plain(std::string body) {
    res_->set(http::field::content_type, "text/plain; charset=utf-8");
    res_->body() = std::move(body);
    res_->prepare_payload();
  }

  void write() {
    answeredAt_ = steadyNow();
    waitingSince_.store(-answeredAt_, std::memory_order_relaxed);  // writing since
    stream_.expires_after(MetricsServer::kWriteTimeout);
    http::async_write(stream_, *res_, [self = shared_from_this()](error_code ec, size_t) {
      if (self->waitingSince_.exchange(0) == kClaimed) return self->close();  // stuck: a newcomer took its place
      if (ec || !self->res_->keep_alive()) return self->close();
      self->res_.reset();
      self->read();
    });
  }

  void close() {
    error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.close();
  }

  beast::tcp_stream stream_;
  MetricsServer::State& state_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::optional<http::response<http::string_body>> res_;
  std::atomic<int64_t> waitingSince_{0};
  int64_t answeredAt_ = 0;  // when the last answer's write started (the session's strand alone)

  // Nanoseconds, as closeLongestWaiting() compares them.
  static int64_t steadyNow() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
};

}  // namespace

bool MetricsServer::State::closeLongestWaiting() {
  // Strong references taken under the lock and dropped after it (with
  // `live`): the last reference to a session may be one of these, and its
  // destructor takes the lock.
  std::vector<std::shared_ptr<Session>> live;
  {
    std::lock_guard lock(sessionsMutex);
    live.reserve(sessions.size());
    for (const auto& [key, weak] : sessions)
      if (std::shared_ptr<Session> s = weak.lock()) live.push_back(std::move(s));  // null: being destroyed
  }
  const int64_t stuckBefore =
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch() -
                                                           stalledWrite)
          .count();
  for (;;) {  // again if another thread claimed or woke the one chosen meanwhile
    Session* oldest = nullptr;
    int64_t since = 0;
    for (const auto& s : live)
      if (const int64_t t = s->waitingSince(); t > 0 && (!oldest || t < since)) {
        oldest = s.get();
        since = t;
      }
    // None waits: the write stuck longest, if past stalledWrite (a
    // client's scrape that is merely slow keeps its place).
    if (!oldest)
      for (const auto& s : live)
        if (const int64_t t = s->waitingSince(); t < Session::kClaimed && -t <= stuckBefore && (!oldest || t > since)) {
          oldest = s.get();
          since = t;
        }
    if (!oldest) return false;
    if (oldest->claim(since)) {
      oldest->closeClaimed();
      return true;
    }
  }
}

size_t MetricsServer::connectionCount() const { return state_ ? state_->sessionCount() : 0; }

void MetricsServer::State::accept() {
  // Each connection on a strand of its own: the server's threads may run
  // different connections at once, never one connection's handlers at once.
  acceptor.async_accept(asio::make_strand(io), [this](error_code ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted || !acceptor.is_open()) return;
    if (ec) {  // out of descriptors and the like: try again shortly, not in a busy loop
      retry.expires_after(std::chrono::milliseconds(100));
      retry.async_wait([this](error_code e) {
        if (!e) accept();
      });
      return;
    }
    // Full: the session that has waited longest for a request makes room
    // (idle connections cannot lock scrapes out); if every one is
    // answering, the socket closes here, before any request is read.
    if (sessionCount() < kMaxConnections || closeLongestWaiting()) {
      auto session = std::make_shared<Session>(std::move(socket), *this);
      {
        std::lock_guard lock(sessionsMutex);
        sessions.emplace(session.get(), session);
      }
      session->read();
    }
    accept();
  });
}

void MetricsServer::State::scrape(const http::request<http::string_body>& req,
                                  http::response<http::string_body>& res) {
  const auto start = std::chrono::steady_clock::now();
  // The server's series first, then keeld's: the order the Exposer used.
  std::vector<prometheus::MetricFamily> families = registry->Collect();
  std::vector<prometheus::MetricFamily> keel = collector->Collect();
  families.insert(families.end(), std::make_move_iterator(keel.begin()), std::make_move_iterator(keel.end()));
  std::string body = prometheus::TextSerializer().Serialize(families);
  res.result(http::status::ok);
  res.set(http::field::content_type, kContentType);
  if (std::optional<std::string> z = acceptsGzip(req) ? gzip(body) : std::nullopt) {
    res.set(http::field::content_encoding, "gzip");
    body = std::move(*z);
  }
  bytes.Increment(static_cast<double>(body.size()));
  res.body() = std::move(body);
  res.prepare_payload();
  scrapes.Increment();
  latencies.Observe(static_cast<double>(
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start).count()));
}

MetricsServer::MetricsServer(boost::asio::io_context& io, LoopCollector::Source source, std::string version,
                             std::string dataplane, std::chrono::milliseconds collectTimeout,
                             std::chrono::milliseconds stalledWrite)
    : collector_(std::make_shared<LoopCollector>(io, std::move(source), std::move(version),
                                                 std::move(dataplane), collectTimeout)),
      stalledWrite_(stalledWrite) {}

MetricsServer::~MetricsServer() { stop(); }

namespace {

// The steps of acceptor's convenience constructor, one by one, so a failure
// names its reason instead of throwing (start() and probe()). An IPv6
// wildcard takes IPv4 too unless net.ipv6.bindv6only is set (the kernel's
// default).
Status listenOn(tcp::acceptor& acceptor, const IpAddress& address, uint16_t port) {
  const tcp::endpoint endpoint(toAsio(address), port);
  error_code ec;
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return Status::error("metrics: cannot listen on " + address.withPort(port) + ": " + ec.message());
  return Status::ok();
}

}  // namespace

Status MetricsServer::probe(const IpAddress& address, uint16_t port) {
  asio::io_context io;
  tcp::acceptor acceptor(io);
  return listenOn(acceptor, address, port);
}

Status MetricsServer::start(const IpAddress& address, uint16_t port) {
  const std::string where = address.withPort(port);
  if (state_) return Status::error("metrics: cannot listen on " + where + ": already listening");
  auto state = std::make_unique<State>(collector_, stalledWrite_);
  if (Status s = listenOn(state->acceptor, address, port); !s) return s;
  port_ = state->acceptor.local_endpoint().port();
  state->accept();
  state_ = std::move(state);
  // One thread per concurrent scrape: a scrape holds its thread while it
  // waits for the loop and renders; reading and writing do not.
  for (size_t i = 0; i < kThreads; ++i) threads_.emplace_back([s = state_.get()] { s->io.run(); });
  return Status::ok();
}

void MetricsServer::stop() {
  collector_->stop();  // a scrape waiting for the loop returns now
  if (!state_) return;
  state_->io.stop();  // the threads return after the handler they are in
  for (std::thread& t : threads_) t.join();
  threads_.clear();
  // Destroying the io_context destroys the pending handlers and with them
  // every session, which closes its connection.
  state_.reset();
}

}  // namespace keel

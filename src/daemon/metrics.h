// SPDX-License-Identifier: Apache-2.0
// keeld's Prometheus endpoint (docs/metrics.md lists every metric).
//
// Threading. MetricsServer serves HTTP (Boost.Beast) on two threads of its
// own, running a private io_context, while the registry, the health checker and the data plane belong to
// keeld's one io_context thread and take no locks. So a scrape never reads
// them itself: Collect() posts a "take a snapshot" job to the loop and waits
// for it, bounded (kCollectTimeout). The snapshot is plain data copied on
// the loop; rendering it into metric families happens on the scraper's
// thread. A scrape therefore always shows one consistent instant, costs the
// loop one readStats() and one connTableEntries() plus a copy, and a stuck loop makes scrapes report
// keel_scrape_success 0 instead of hanging Prometheus.
//
// Labels follow node_exporter's IPVS collector (local_address, local_port,
// remote_address, remote_port, proto) plus `service`, so IPVS dashboards and
// alerts carry over.
#pragma once

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include <array>
#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "common/address.h"
#include "common/status.h"
#include "control/api/control_backend.h"
#include "control/health/health_checker.h"
#include "dataplane/dataplane.h"

namespace keel {

class DaemonBackend;

// What one scrape shows: copied on the loop, rendered anywhere.
struct MetricsSnapshot {
  std::string version;
  std::vector<api::ServiceSnapshot> services;
  std::vector<HealthStatus> health;  // every target; type none ones are skipped when rendering
  // As stats.get has them. connTableEntries is set if the data plane can
  // count them cheaply (XDP on kernel 6.6+, DPDK; otherwise
  // keel_conntrack_entries is absent).
  GlobalStats global;
  // The last periodic walk's counts (DaemonBackend::flowCounts; null: none
  // yet, or metrics.flow_count_interval is 0s) and the walks that failed.
  std::shared_ptr<const FlowCounts> flows;
  uint64_t flowCountFailures = 0;
  // Each family with ipip reals ("ipv4", "ipv6") and whether
  // node.next_hop_mac is no MAC of the router the kernel routes them
  // through (DaemonBackend::nextHopMismatches; empty: not checked).
  std::map<std::string, bool> nextHopMismatch;
  // The config: whether the last reload was applied (true before any), and
  // when the running file was (the start, or the last reload that worked);
  // unset before the start (no series).
  bool lastReloadOk = true;
  std::optional<std::chrono::system_clock::time_point> configAppliedAt;
  // When keeld's process started (process_start_time_seconds); unset: not known.
  std::optional<std::chrono::system_clock::time_point> startedAt;
};

// Takes the snapshot; call on the loop thread.
MetricsSnapshot collectSnapshot(DaemonBackend& backend, const std::string& version);

// The metric families for a snapshot (pure; tests render fixed snapshots).
// `ok` false: the loop did not answer in time and there is no earlier
// snapshot; only keel_build_info (from the snapshot's version/dataplane)
// and keel_scrape_success 0 are returned.
std::vector<prometheus::MetricFamily> renderMetrics(const MetricsSnapshot& snapshot, bool ok = true);
// The loop did not answer in time: the last snapshot it gave, `ageSeconds`
// old, whole, with keel_scrape_success 0 and that age
// (keel_scrape_snapshot_age_seconds), so that an alert on a gauge that
// fired keeps firing while the loop is stalled instead of going stale and
// resolving. Counters stand still, so their rates read 0 meanwhile.
std::vector<prometheus::MetricFamily> renderStale(const MetricsSnapshot& snapshot, double ageSeconds);

// The Collectable MetricsServer calls from its threads.
class LoopCollector : public prometheus::Collectable {
 public:
  using Source = std::function<MetricsSnapshot()>;  // runs on the loop
  static constexpr std::chrono::milliseconds kCollectTimeout{2000};

  LoopCollector(boost::asio::io_context& io, Source source, std::string version, std::string dataplane,
                std::chrono::milliseconds timeout = kCollectTimeout);
  std::vector<prometheus::MetricFamily> Collect() const override;
  // After stop(), Collect() returns at once without touching the loop (used
  // while keeld shuts down, when the loop no longer runs).
  void stop() { stopped_ = true; }

 private:
  boost::asio::io_context& io_;
  Source source_;
  std::string version_;
  std::string dataplane_;
  std::chrono::milliseconds timeout_;
  std::atomic<bool> stopped_{false};
  // The last snapshot the loop gave and when (renderStale); any thread.
  mutable std::mutex lastMutex_;
  mutable std::shared_ptr<const MetricsSnapshot> last_;
  mutable std::chrono::steady_clock::time_point lastAt_;
};

// The HTTP endpoint: GET /metrics on one address, IPv4 or IPv6.
//
// What a scraper sees is what prometheus-cpp's Exposer served before it:
// text format 0.0.4, gzip when the request accepts it, the exposer_* series
// of the server itself, 404 for other paths and 405 for other methods. It
// also keeps HTTP/1.1 connections alive. Connections wait on the server's
// io_context, not on a thread, so an idle or slow client holds a socket
// only, and only until kIdleTimeout or until a new connection needs its
// place (below); two scrapes run at once (an HA pair of Prometheus
// servers), a third waits for one of them.
class MetricsServer {
 public:
  static constexpr size_t kThreads = 2;
  // A request (line and headers) larger than this is refused with 431;
  // GET has no body, so any body over kMaxRequestBody is refused too.
  static constexpr uint32_t kMaxRequestHeader = 8 * 1024;
  static constexpr uint64_t kMaxRequestBody = 1024;
  // How long a connection may take to send its next request, and a
  // response to be written (a 10,000-real exposition is ~16 MB).
  static constexpr std::chrono::seconds kIdleTimeout{30};
  static constexpr std::chrono::seconds kWriteTimeout{60};
  // Open connections at most, so clients cannot take the descriptors the
  // health checks and the control socket need. One more closes the
  // connection that has waited longest for a request (idle keep-alive, or
  // still sending one), so idle connections cannot lock scrapes out; if
  // every connection is being answered, the newcomer is closed at once.
  static constexpr size_t kMaxConnections = 32;
  // When none waits, a newcomer closes the connection whose answer's
  // write began longest ago, once it began this long ago: Prometheus gives
  // up at its scrape_timeout (10 s by default), so a write still going is
  // one no scraper waits for, or a very slow reader's (which loses its
  // place only when the server is full); 32 clients that never read would
  // otherwise lock every scrape out for kWriteTimeout.
  static constexpr std::chrono::milliseconds kStalledWrite{10000};

  // `collectTimeout`: how long a scrape waits for the loop (keeld: the
  // default); a test that holds the loop on purpose passes a longer one.
  // `stalledWrite`: kStalledWrite (keeld), or shorter in a test.
  MetricsServer(boost::asio::io_context& io, LoopCollector::Source source, std::string version,
                std::string dataplane,
                std::chrono::milliseconds collectTimeout = LoopCollector::kCollectTimeout,
                std::chrono::milliseconds stalledWrite = kStalledWrite);
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // Listens on address:port (port 0 picks a free one, for tests).
  // Error: the address and the reason ("metrics: cannot listen on
  // [::1]:9477: Address already in use"). Call once.
  Status start(const IpAddress& address, uint16_t port);
  // Whether start() could listen there now: bound and closed again, with
  // start()'s error. keeld asks before it touches the data plane, so a port
  // in use does not fail a start that already programmed it.
  static Status probe(const IpAddress& address, uint16_t port);
  // The bound port (after start; kept after stop).
  int port() const { return port_; }
  // Open connections (sessions not yet destroyed): any thread.
  size_t connectionCount() const;
  // Stops serving: closes the listener and every connection, and returns
  // once the server's threads are gone; a scrape waiting for the loop is
  // released without it (LoopCollector::stop). Call before the loop's state
  // goes away. Idempotent; the destructor calls it.
  void stop();

  struct State;  // the io_context, the listener, the exposer_* series (metrics.cc)

 private:
  std::shared_ptr<LoopCollector> collector_;
  std::chrono::milliseconds stalledWrite_;
  std::unique_ptr<State> state_;
  std::vector<std::thread> threads_;
  int port_ = 0;
};

}  // namespace keel

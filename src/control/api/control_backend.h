// SPDX-License-Identifier: Apache-2.0
// The control API's view of the daemon. keeld implements ControlBackend over
// its service registry; tests implement it with a fake.
//
// Division of work:
//  - The API layer (src/control/api) parses and validates every request in
//    full (types, ranges, unknown keys, addresses, that the service/real
//    exists or does not) and only then calls ONE mutating method with a typed
//    request. Bad requests never reach the backend.
//  - The backend applies the request. Anything it can only check itself
//    (limits reached, an l2dsr real whose MAC cannot be resolved, a health
//    spec it rejects) it reports as an error Result and then it must have
//    changed nothing, like a config file with an error.
//  - The API layer owns the JSON shape of every reply: queries return typed
//    snapshots and the dispatcher (src/control/api/dispatcher.cc) renders
//    them, so keelctl and scripts see one schema whatever the backend is.
//
// Threading: every call comes from the io_context thread that runs the
// ApiServer (the daemon's one event loop). Calls are synchronous and must
// not block for long: a slow call stalls the loop, and with it the
// application of health transitions (the checks themselves run on the
// checker's own thread), metrics scrapes and signals.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/address.h"
#include "control/api/codes.h"
#include "dataplane/dataplane.h"
#include "keel/maglev_lookup.h"
#include "keel/maps_abi.h"

namespace keel::api {

// ---------------------------------------------------------------- results

// Error codes: control/api/codes.h.

struct ApiError {
  std::string code = code::kFailed;
  std::string message;  // says what is wrong and where: "services[web]: real 10.0.0.5 not found"
  std::string field;    // the request key at fault ("params.address"), empty if none
  nlohmann::json details;  // optional, e.g. {"errors": [...]} for config errors
};

class [[nodiscard]] Result {
 public:
  static Result ok(nlohmann::json result = nlohmann::json::object()) {
    Result r;
    r.result_ = std::move(result);
    return r;
  }
  static Result error(ApiError e) {
    Result r;
    r.error_ = std::move(e);
    return r;
  }
  static Result error(std::string code, std::string message, std::string field = {}) {
    return error(ApiError{std::move(code), std::move(message), std::move(field), {}});
  }
  bool isOk() const { return !error_.has_value(); }
  const nlohmann::json& result() const { return result_; }
  const ApiError& error() const { return *error_; }

 private:
  nlohmann::json result_ = nlohmann::json::object();
  std::optional<ApiError> error_;
};

// -------------------------------------------------------------- snapshots

// A real's entries in the connection table at the last periodic count
// (metrics.flow_count_interval): those whose next packet goes to it (kept)
// and the rest (idle past their timeout, or the real went down or changed).
struct RealFlows {
  uint64_t kept = 0;
  uint64_t notKept = 0;
};

struct RealSnapshot {
  IpAddress address;
  uint32_t weight = 0;
  std::optional<MacAddress> mac;  // l2dsr
  bool healthy = true;            // the health checker's verdict
  bool draining = false;          // operator drain: out of the ring, flows kept
  // Down, yet still serving: held in the ring by fail-open (every real of
  // the service down, all_down: fail-open), or out of the ring with its
  // established flows kept (established_on_down: keep). Never both.
  bool held = false;
  bool kept = false;
  // In the ring the data plane holds now (weight > 0, not drained, up or
  // held): what a change's reply counts as the service's reals_in_ring.
  bool inRing = false;
  std::string check;              // "tcp", "http", "udp", "none"
  // The check as keel.yaml's health block spells it, every value resolved
  // (service defaults, the real's own, `service add`'s): type, port (the
  // one it connects to), interval, timeout, rise, fall, source, and per
  // type path/host/expect (http), payload/expect/require_reply (udp);
  // null when the real is in no config (health.show's check_spec).
  nlohmann::json checkSpec;
  std::string healthDetail;       // last result, e.g. "connect refused"
  uint32_t consecutiveOk = 0;
  uint32_t consecutiveFail = 0;
  // When the health verdict last changed (or the real's check started) and
  // why, in the words of the health_changed log record; when the latest
  // result arrived (none before the first). Unset for a real with no check.
  std::optional<std::chrono::system_clock::time_point> lastChange;
  std::optional<std::chrono::system_clock::time_point> lastCheck;
  std::string changeReason;
  // While draining: when the drain began (a repeated drain keeps it; unset
  // for a drain the state file of an older keeld kept) and the operator's
  // reason (empty: none given). Unset/empty when not draining.
  std::optional<std::chrono::system_clock::time_point> drainedSince;
  std::string drainReason;
  keel_counter counters{};        // summed over CPUs/lcores
  // Unset until a count has run with this real in it (ServiceSnapshot::flowsCountedAt).
  std::optional<RealFlows> flows;

  // The one state a listing shows: drain wins, then health.
  std::string state() const { return draining ? "draining" : healthy ? "up" : "down"; }
};

struct MtuShortfall {
  uint32_t mtu = 0;     // the port's, when keeld last read it
  uint32_t needed = 0;  // 1280 + the outer header
};

struct ServiceSnapshot {
  std::string name;
  IpAddress vip;
  uint16_t port = 0;                  // 0 = every port
  uint8_t protocol = KEEL_PROTO_TCP;  // KEEL_PROTO_*
  std::string forwarding = "ipip";    // "ipip" | "l2dsr"
  std::string scheduler = "maglev";   // "maglev" | "maglev-src"
  uint32_t ringSize = KEEL_RING_SIZE_DEFAULT;  // configured M
  // M of the ring the data plane holds now; 0 when it holds the empty ring
  // (no usable real: traffic is dropped as drop_no_backend).
  uint32_t publishedRingSize = 0;
  std::vector<RealSnapshot> reals;
  keel_counter counters{};
  // Set while the port's MTU is too small for the service's IPv6 clients
  // through ipip (Registry::checkMtu; docs/operations.md, MTU with ipip).
  std::optional<MtuShortfall> ipv6MtuShortfall;
  // When the count behind its reals' `flows` began; unset if none of them
  // has one.
  std::optional<std::chrono::system_clock::time_point> flowsCountedAt;
};

// The plane-wide counters: keel::GlobalStats (dataplane/dataplane.h), as the
// registry read them.
using keel::GlobalStats;

// Every service with its counters and the global counters, taken from one
// read of the data plane's stats.
struct StatsSnapshot {
  std::vector<ServiceSnapshot> services;  // as listServices()
  GlobalStats global;
};

// daemon.status: keeld itself, the config it runs and how that came about.
struct ReloadOutcome {
  std::chrono::system_clock::time_point at;
  bool ok = true;
  std::string code;                 // the reply's error code when !ok (invalid_config, failed)
  std::vector<std::string> errors;  // when !ok: every config error, or the one message
  // When !ok: whether keeld runs the config it ran before the reload. False
  // only when a reload the data plane refused midway could not be undone
  // either: part of the refused file may run (the errors say what failed).
  bool runningKept = true;
};

struct DaemonStatus {
  std::string version;
  int64_t pid = 0;
  std::chrono::system_clock::time_point startedAt;  // keeld's process start
  std::string dataplane;  // Dataplane::kind()
  std::string where;      // the interface or port it runs on; empty if unknown
  bool adopted = false;   // the start took over a plane a previous keeld left forwarding
  std::string configPath;
  // When the running file was applied (the start, or the last reload that
  // worked) and by which ("start" / "reload").
  std::chrono::system_clock::time_point appliedAt;
  std::string appliedBy;
  // The file on disk now against the text applied then: nullopt when it
  // cannot be read (fileError says why).
  std::optional<bool> fileChanged;
  std::string fileError;
  std::optional<ReloadOutcome> lastReload;  // nullopt: no reload since the start
  // config.reload's restart_needed / stop_start_needed for the running file.
  std::vector<std::string> restartNeeded;
  std::vector<std::string> stopStartNeeded;
  size_t services = 0, reals = 0;  // running, keelctl changes included
  // The keelctl changes on top of the file (the runtime overlay), and the
  // file that keeps them across restarts (empty: none is kept).
  struct RuntimeChanges {
    size_t addedServices = 0, removedServices = 0, addedReals = 0, removedReals = 0, weights = 0, drains = 0;
    bool operator==(const RuntimeChanges&) const = default;
  } runtime;
  std::string stateFile;
  std::string stateUnsaved;  // why the state file's last write failed; empty when saved
};

// ------------------------------------------------------- typed requests

struct RealSpec {
  IpAddress address;
  // 0..65535. Absent: keel.yaml's default, 100, except for a real the file
  // defines, added back after a removal: the file's weight.
  std::optional<uint32_t> weight;
  std::optional<MacAddress> mac;
  nlohmann::json health;          // null if absent; same keys as YAML `health`, not interpreted here
};

// service.add: the keys of a keel.yaml service, JSON form.
struct ServiceAddRequest {
  std::string name;
  IpAddress vip;
  uint16_t port = 0;
  uint8_t protocol = KEEL_PROTO_TCP;
  std::string forwarding = "ipip";
  std::string scheduler = "maglev";
  uint32_t ringSize = KEEL_RING_SIZE_DEFAULT;
  std::vector<RealSpec> reals;    // addresses unique (checked)
  nlohmann::json health;          // null if absent
};

struct RealAddRequest {
  std::string service;  // exists (checked)
  RealSpec real;        // not yet in the service (checked)
};

struct RealRef {
  std::string service;  // exists (checked)
  IpAddress address;    // in the service (checked)
};

// real.drain / real.undrain.
struct RealDrainRequest {
  RealRef real;
  bool drain = true;   // false: undrain
  std::string reason;  // drain only; empty = none given, else isValidDrainReason
};

struct RealWeightRequest {
  RealRef real;
  uint32_t weight = 0;  // 0..65535
};

// -------------------------------------------------------------- interface

class ControlBackend {
 public:
  virtual ~ControlBackend() = default;

  // Queries (no side effects).
  virtual std::vector<ServiceSnapshot> listServices() = 0;
  virtual std::optional<ServiceSnapshot> findService(const std::string& name) = 0;
  // Every service as listServices() has it but with every counter zero: the
  // registry's and the health checker's state only, without reading the data
  // plane. The reads listServices/findService make are not cheap (every
  // per-id counter table, summed over CPUs or workers), so what
  // shows no counters uses this: health.show, lookup, and the "does it
  // exist" checks before every mutation. With `only`, just that service (none
  // if it does not exist): a check of one service snapshots one service.
  virtual std::vector<ServiceSnapshot> serviceStates(const std::optional<std::string>& only) = 0;
  // The real in slot `slot` (< publishedRingSize) of the service's current
  // ring; nullopt if the service or slot does not exist. `lookup` hashes the
  // flow with include/keel/maglev_lookup.h itself and asks only for the slot,
  // so it predicts exactly what the data plane does for a new flow.
  virtual std::optional<IpAddress> ringSlotReal(const std::string& service, uint32_t slot) = 0;
  // The connection-table entry of a flow of `service` (`key` built as for
  // the ring) and whether its next packet goes there; nullopt: no entry.
  // `lookup` shows it: an established flow's real is this one, not the
  // ring's, whenever the ring changed since the flow began.
  virtual std::optional<ConnView> connEntry(const std::string& service, const keel_flow_key& key) = 0;
  // conn.list: the connection-table entries `query` selects
  // (Registry::connList); query.service, if set, exists. `done` gets them,
  // or an error that says why the table could not be read, exactly once:
  // before connList returns, on the caller's thread, or later on any thread
  // (keeld walks the table on a thread of its own and calls `done` there,
  // so its loop serves health checks, scrapes and other requests meanwhile,
  // and the answer is built off the loop too). `done` must therefore touch
  // nothing the caller's thread owns.
  using ConnListDone = std::function<void(Status status, ConnList list)>;
  virtual void connList(const ConnQuery& query, ConnListDone done) = 0;
  // Why connList would refuse now, before reading anything: as many table
  // reads as the backend takes are running or waiting (keeld:
  // DaemonBackend::kMaxConnScans); nullopt: it would not. conn.list asks it
  // on the loop's thread just before connList, and answers try_later (the
  // same request will do once one is done) instead of calling connList.
  virtual std::optional<std::string> connListRefusal() { return std::nullopt; }
  // After a change was applied: why it could not be made to last (keeld:
  // its state file could not be written), once; the dispatcher adds it to
  // the reply's warnings. nullopt: nothing to say.
  virtual std::optional<std::string> takeUnsavedState() { return std::nullopt; }
  // stats.get and the metrics scrape: one counter read for both halves (two
  // reads would cost twice and show services and reasons from different
  // instants), plus the connection-table count, which only these two show
  // (Dataplane::connTableEntries; listServices/findService do not ask for it).
  virtual StatsSnapshot servicesAndGlobalStats() = 0;

  // daemon.status (no side effects; reads the config file to compare it).
  virtual DaemonStatus daemonStatus() = 0;

  // Mutations, each given a validated request. On error: nothing changed.
  virtual Result addService(const ServiceAddRequest& request) = 0;
  virtual Result removeService(const std::string& name) = 0;
  virtual Result addReal(const RealAddRequest& request) = 0;
  virtual Result removeReal(const RealRef& real) = 0;
  virtual Result setRealWeight(const RealWeightRequest& request) = 0;
  // drain=true: out of the ring, generation kept (established flows stay);
  // the backend records when (RealSnapshot::drainedSince) and the reason.
  // drain=false: back into the ring, the record cleared. Repeating either is
  // not an error; a repeated drain keeps its time and takes a new reason if
  // one is given.
  virtual Result setRealDrain(const RealDrainRequest& request) = 0;

  // Validates a config's text with the daemon's own parser, applying
  // nothing; `name` names it in the messages. The caller reads the file
  // (with its own permissions: the daemon reads no file for a client).
  // Invalid: error code invalid_config, details {"errors": ["name:line: ..."]}.
  virtual Result checkConfig(const std::string& text, const std::string& name) = 0;
  // Re-reads the daemon's config file and applies the difference; invalid
  // file: invalid_config (with details) and nothing changed.
  virtual Result reload() = 0;

  // Called once the reply to daemon.shutdown has been written (or the
  // client vanished). detach=true: exit but leave the data plane attached
  // (pinned maps and program stay, traffic keeps flowing with the last
  // state); false: detach the data plane, then exit. Must not block: post
  // the actual stop to the loop.
  virtual void shutdown(bool detach) = 0;
  // Whether shutdown(true) can leave the data plane forwarding: XDP can,
  // DPDK cannot (its workers are the daemon's threads). When it cannot,
  // daemon.shutdown with detach is refused and nothing stops.
  virtual bool canDetach() const { return true; }
};

}  // namespace keel::api

// SPDX-License-Identifier: Apache-2.0
#include "control/api/dispatcher.h"
#include "common/json_depth.h"
#include "control/api/methods.h"
#include "common/text.h"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <ctime>
#include <exception>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string_view>
#include <vector>

#include "control/api/json_keys.h"
#include "control/api/requests.h"
#include "keel/maglev_lookup.h"
#include "keel/parse.h"

namespace keel::api {

using nlohmann::json;

namespace {

const char* const kReasonNames[KEEL_R_MAX] = {KEEL_REASON_NAMES};

json counterJson(const keel_counter& c) { return json{{"packets", c.packets}, {"bytes", c.bytes}}; }

// One family's half of a DPDK connection table (WorkerStats), or the sum
// over the workers: stats.get's conntrack.ipv4/ipv6 and each worker's.
struct FamilyConntrack {
  uint64_t entries = 0;
  uint64_t capacity = 0;
  uint64_t liveEvictions = 0;
};
// WorkerStats' family index 0 and 1, as the metrics' `family` label.
const char* const kFamilyNames[2] = {"ipv4", "ipv6"};

json familyJson(const FamilyConntrack& f) {
  return json{{"entries", f.entries}, {"capacity", f.capacity}, {"live_evictions", f.liveEvictions}};
}

std::string svcWhere(const std::string& name) { return "services[" + name + "]"; }

ApiError serviceNotFound(const std::string& name, const std::string& field) {
  return ApiError{code::kNotFound, svcWhere(name) + ": not found", field, {}};
}

// The params.service filter of a listing (health.show, stats.get): keeps
// only that service in `list`, or not_found if it is not there.
std::optional<ApiError> keepOnly(std::vector<ServiceSnapshot>& list, const std::optional<std::string>& only) {
  if (!only) return std::nullopt;
  std::erase_if(list, [&](const ServiceSnapshot& s) { return s.name != *only; });
  if (list.empty()) return serviceNotFound(*only, "params.service");
  return std::nullopt;
}

const RealSnapshot* findReal(const ServiceSnapshot& s, const IpAddress& a) {
  for (const auto& r : s.reals)
    if (r.address == a) return &r;
  return nullptr;
}


constexpr size_t kMaxIdBytes = 256;  // a string id (docs/api.md)

std::string oneLine(std::string_view s, size_t limit) {
  std::string out;
  for (unsigned char c : s) {
    if (out.size() >= limit) return out + "...";
    out += (c >= 0x20 && c < 0x7f) ? static_cast<char>(c) : '?';
  }
  return out;
}

// RFC 3339 in UTC to the second ("2026-12-01T14:03:05Z"); null if unset.
json rfc3339(const std::optional<std::chrono::system_clock::time_point>& t) {
  if (!t) return nullptr;
  std::time_t secs = std::chrono::system_clock::to_time_t(*t);
  std::tm tm{};
  char buf[32];
  if (!::gmtime_r(&secs, &tm) || !std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm)) return nullptr;
  return std::string(buf);
}

// null unless a reason was given (a real has one only while draining).
json drainReason(const RealSnapshot& r) {
  if (r.drainReason.empty()) return nullptr;
  return r.drainReason;
}

// A flow's connection-table entry as lookup and conn.list show it.
json connJson(const ConnView& c) {
  json conn{{"real", c.real ? json(c.real->toString()) : json(nullptr)},
            {"kept", c.kept()},
            {"state", connStateName(c.state)},
            {"idle_ms", c.idleNs / 1000000}};
  if (!c.kept()) conn["why"] = c.why;
  return conn;
}

// One conn.list entry: the flow (from its key, as the data planes wrote it)
// and its entry.
json connListedJson(const ConnListed& c) {
  const keel_flow_key& k = c.key;
  json j{{"service", c.service.empty() ? json(nullptr) : json(c.service)},
         {"protocol", protocolName(k.proto)},
         {"client_address", IpAddress::fromWords(k.src, k.family).toString()},
         {"client_port", ntohs(k.sport)},
         {"vip", IpAddress::fromWords(k.dst, k.family).toString()},
         {"port", ntohs(k.dport)}};
  j.update(connJson(c.view));
  if (c.worker >= 0) j["worker"] = c.worker;
  return j;
}

// ------------------------------------------------- what a change did
// (operator review 2026-12: a change that emptied a ring, or removed a real
// with flows, succeeded in silence). The dispatcher sees the service before
// and after each change, whatever the backend, so the reply says what
// changed from those two snapshots, and warns of what the operator may not
// have meant. Nothing is refused: an empty ring can be what was meant.

// "10.0.0.1:80/tcp", "[2001:db8::1]:*/udp" (port 0: every port).
std::string serviceEndpoint(const ServiceSnapshot& s) {
  const std::string a = s.vip.isV6() ? "[" + s.vip.toString() + "]" : s.vip.toString();
  return a + ":" + (s.port ? std::to_string(s.port) : std::string("*")) + "/" + std::string(protocolName(s.protocol));
}

uint32_t realsInRing(const ServiceSnapshot& s) {
  return static_cast<uint32_t>(
      std::count_if(s.reals.begin(), s.reals.end(), [](const RealSnapshot& r) { return r.inRing; }));
}

// A real as a change's reply shows it before or after: null when it is not
// there (before an add, after a remove).
json realBrief(const RealSnapshot* r) {
  if (!r) return nullptr;
  return json{{"weight", r->weight}, {"state", r->state()}};
}

// The warning of a service whose published ring the request emptied: every
// new flow to its VIP is dropped from now on.
std::string emptiedRingWarning(const ServiceSnapshot& s) {
  return svcWhere(s.name) + ": no usable real now: new flows to " + serviceEndpoint(s) +
         " are dropped (drop_no_backend)";
}

// A down real whose flows the change stopped keeping: drained (weight 0),
// it kept them whatever established_on_down said; at a weight again under
// repick, it is a down real of a repick service, and they move.
void addUnkeptWarning(const std::string& where, const RealSnapshot* was, const RealSnapshot* now,
                      json& warnings) {
  if (!was || !now || !was->kept || now->kept) return;
  warnings.push_back(where + " is down: its established flows, kept while it was drained, take the " +
                     "ring's pick now (the service's established_on_down is repick)");
}

// Every service of `after` that `before` had with a non-empty ring and that
// holds the empty ring now.
void addEmptiedRingWarnings(const std::vector<ServiceSnapshot>& before, const std::vector<ServiceSnapshot>& after,
                            json& warnings) {
  // By name, not a scan of `before` per service: a reload of thousands of
  // services compares them all.
  std::set<std::string_view> hadRing;
  for (const ServiceSnapshot& b : before)
    if (b.publishedRingSize != 0) hadRing.insert(b.name);
  for (const ServiceSnapshot& a : after)
    if (a.publishedRingSize == 0 && hadRing.count(a.name)) warnings.push_back(emptiedRingWarning(a));
}

}  // namespace

json toJson(const ServiceSnapshot& s) {
  json reals = json::array();
  for (const auto& r : s.reals) {
    json j{{"address", r.address.toString()},
           {"weight", r.weight},
           {"state", r.state()},
           {"healthy", r.healthy},
           {"held", r.held},
           {"kept", r.kept},
           {"draining", r.draining},
           {"drained_since", rfc3339(r.drainedSince)},
           {"drain_reason", drainReason(r)},
           {"packets", r.counters.packets},
           {"bytes", r.counters.bytes},
           {"flows", r.flows ? json{{"kept", r.flows->kept}, {"not_kept", r.flows->notKept}} : json(nullptr)}};
    if (r.mac) j["mac"] = r.mac->toString();
    reals.push_back(std::move(j));
  }
  json out{{"name", s.name},
           {"vip", s.vip.toString()},
           {"port", s.port},
           {"protocol", protocolName(s.protocol)},
           {"forwarding", s.forwarding},
           {"scheduler", s.scheduler},
           {"ring_size", s.ringSize},
           {"published_ring_size", s.publishedRingSize},
           {"packets", s.counters.packets},
           {"bytes", s.counters.bytes},
           {"flows_counted_at", rfc3339(s.flowsCountedAt)},
           {"reals", std::move(reals)}};
  if (s.ipv6MtuShortfall)
    out["mtu_too_small_for_ipv6"] = json{{"mtu", s.ipv6MtuShortfall->mtu}, {"needed", s.ipv6MtuShortfall->needed}};
  return out;
}

json healthJson(const ServiceSnapshot& s) {
  json reals = json::array();
  for (const auto& r : s.reals) {
    reals.push_back(json{{"address", r.address.toString()},
                         {"state", r.state()},
                         {"healthy", r.healthy},
                         {"held", r.held},
                         {"kept", r.kept},
                         {"draining", r.draining},
                         {"check", r.check},
                         {"check_spec", r.checkSpec},
                         {"detail", r.healthDetail},
                         {"consecutive_ok", r.consecutiveOk},
                         {"consecutive_fail", r.consecutiveFail},
                         {"last_check", rfc3339(r.lastCheck)},
                         {"last_change", rfc3339(r.lastChange)},
                         {"reason", r.changeReason},
                         {"drained_since", rfc3339(r.drainedSince)},
                         {"drain_reason", drainReason(r)}});
  }
  return json{{"name", s.name}, {"reals", std::move(reals)}};
}

json statsJson(const ServiceSnapshot& s) {
  json reals = json::array();
  for (const auto& r : s.reals)
    reals.push_back(json{{"address", r.address.toString()},
                         {"packets", r.counters.packets},
                         {"bytes", r.counters.bytes}});
  return json{{"name", s.name},
              {"vip", s.vip.toString()},
              {"port", s.port},
              {"protocol", protocolName(s.protocol)},
              {"packets", s.counters.packets},
              {"bytes", s.counters.bytes},
              {"reals", std::move(reals)}};
}

json statusJson(const DaemonStatus& st) {
  auto textOrNull = [](const std::string& t) { return t.empty() ? json(nullptr) : json(t); };
  json lastReload = nullptr;
  if (st.lastReload) {
    lastReload = json{{"at", rfc3339(st.lastReload->at)}, {"ok", st.lastReload->ok}};
    if (!st.lastReload->ok) {
      lastReload["code"] = st.lastReload->code;
      lastReload["errors"] = st.lastReload->errors;
      lastReload["running_kept"] = st.lastReload->runningKept;
    }
  }
  const DaemonStatus::RuntimeChanges& rc = st.runtime;
  return json{{"version", st.version},
              {"pid", st.pid},
              {"started_at", rfc3339(st.startedAt)},
              {"dataplane", json{{"kind", st.dataplane}, {"where", textOrNull(st.where)}, {"adopted", st.adopted}}},
              {"config",
               json{{"path", st.configPath},
                    {"applied_at", rfc3339(st.appliedAt)},
                    {"applied_by", st.appliedBy},
                    {"file_changed", st.fileChanged ? json(*st.fileChanged) : json(nullptr)},
                    {"file_error", textOrNull(st.fileError)},
                    {"last_reload", std::move(lastReload)},
                    {"restart_needed", st.restartNeeded},
                    {"stop_start_needed", st.stopStartNeeded}}},
              {"services", st.services},
              {"reals", st.reals},
              {"runtime_changes",
               json{{"added_services", rc.addedServices},
                    {"removed_services", rc.removedServices},
                    {"added_reals", rc.addedReals},
                    {"removed_reals", rc.removedReals},
                    {"weights", rc.weights},
                    {"drains", rc.drains},
                    {"state_file", textOrNull(st.stateFile)},
                    {"unsaved", textOrNull(st.stateUnsaved)}}}};
}

json Dispatcher::errorResponse(const json& id, const ApiError& e) {
  json err{{"code", e.code}, {"message", e.message}};
  if (!e.field.empty()) err["field"] = e.field;
  if (!e.details.is_null()) err["details"] = e.details;
  return json{{"id", id}, {"ok", false}, {"error", std::move(err)}};
}

json Dispatcher::okResponse(const json& id, json result) {
  return json{{"id", id}, {"ok", true}, {"result", std::move(result)}};
}

std::string serializeResponse(const json& response) {
  return response.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

DispatchOutcome Dispatcher::handleLine(std::string_view line) {
  json id = nullptr;
  std::string method;  // once the envelope names one: the outcome carries it, also of a throw
  auto withMethod = [&](DispatchOutcome out) {
    out.method = method;
    return out;
  };
  try {
    // nlohmann's parser ends its input at a NUL: the rest of the line would
    // be ignored unread (`{...}\0garbage` ran the request), where a line
    // that is not one JSON text must change nothing. JSON has no raw NUL.
    if (const size_t nul = line.find('\0'); nul != std::string_view::npos)
      return {errorResponse(id, {code::kParseError,
                                 "request: malformed JSON: a NUL byte at offset " + std::to_string(nul) +
                                     " (JSON text has none; write \\u0000 inside a string)",
                                 "", {}}),
              {}};
    if (jsonNestedTooDeep(line))
      return {errorResponse(id, {code::kInvalidRequest,
                                 "request: JSON nested deeper than " + std::to_string(kMaxJsonDepth) +
                                     " levels", "", {}}), {}};
    json req;
    DuplicateKeyFinder duplicates;
    try {
      req = parseNotingDuplicates(line, duplicates, /*allowExceptions=*/true);
    } catch (const json::parse_error& e) {
      // e.what() is "[json.exception.parse_error.101] parse error at ...";
      // keep the readable part, without echoing raw bytes.
      std::string_view what = e.what();
      if (auto p = what.find("] "); p != std::string_view::npos) what.remove_prefix(p + 2);
      return {errorResponse(id, {code::kParseError, "request: malformed JSON: " + oneLine(what, 200),
                                 "", {}}), {}};
    } catch (const json::out_of_range& e) {
      // A number no double holds (`"id": 1e400`): the parser stops at it
      // with out_of_range 406, which answered `internal` (security review
      // L4). The input's fault, named where it is, as a bad value there is.
      std::string_view what = e.what();  // "[json.exception.out_of_range.406] number overflow parsing '1e400'"
      if (auto p = what.find("] "); p != std::string_view::npos) what.remove_prefix(p + 2);
      const std::string where = oneLine(duplicates.where(), 200);
      const bool inParams = where.starts_with("params.") || where.starts_with("params[");
      return {errorResponse(id, {inParams ? code::kInvalidParams : code::kInvalidRequest,
                                 (where.empty() ? "request" : where) + ": number out of range (" + oneLine(what, 200) +
                                     "; a JSON number here must fit a double)",
                                 where, {}}),
              {}};
    }
    if (!req.is_object())
      return {errorResponse(id, {code::kInvalidRequest,
                                 "request: must be a JSON object, got " + describeJson(req), "", {}}),
              {}};
    if (auto it = req.find("id"); it != req.end()) {
      if (!it->is_number_integer() && !it->is_string() && !it->is_null())
        return {errorResponse(id, {code::kInvalidRequest,
                                   "id: must be an integer or a string, got " + describeJson(*it),
                                   "id", {}}), {}};
      // Echoed in the reply: a megabyte of id would be a megabyte of
      // reply, held while a client that does not read it stalls.
      if (it->is_string() && it->get_ref<const std::string&>().size() > kMaxIdBytes)
        return {errorResponse(nullptr, {code::kInvalidRequest,
                                        "id: a string of at most " + std::to_string(kMaxIdBytes) + " bytes, got " +
                                            std::to_string(it->get_ref<const std::string&>().size()),
                                        "id", {}}), {}};
      id = *it;
    }
    if (const auto& dup = duplicates.duplicate()) {
      // Which of the two ids to echo is as unknown as which value was meant.
      if (*dup == "id") id = nullptr;
      const bool inParams = dup->starts_with("params.") || dup->starts_with("params[");
      const std::string key = oneLine(*dup, 200);
      return {errorResponse(id, {inParams ? code::kInvalidParams : code::kInvalidRequest,
                                 key + ": duplicate key (each key may appear once in an object)", key, {}}),
              {}};
    }
    for (auto it = req.begin(); it != req.end(); ++it) {
      if (it.key() != "id" && it.key() != "method" && it.key() != "params")
        return {errorResponse(id, {code::kInvalidRequest,
                                   describeJson(json(it.key())) +
                                       ": unknown request key (expected: id, method, params)",
                                   oneLine(it.key(), 200), {}}), {}};
    }
    auto m = req.find("method");
    if (m == req.end())
      return {errorResponse(id, {code::kInvalidRequest, "method: is required", "method", {}}), {}};
    if (!m->is_string())
      return {errorResponse(id, {code::kInvalidRequest,
                                 "method: must be a string, got " + describeJson(*m), "method", {}}),
              {}};
    json params = nullptr;  // absent: the same as {} (the parsers read null so)
    if (auto p = req.find("params"); p != req.end()) {
      // Present, it is the object api.md says: null is no way to say "none".
      if (!p->is_object())
        return {errorResponse(id, {code::kInvalidRequest,
                                   "params: must be an object (omitted when there are none), got " +
                                       describeJson(*p),
                                   "params", {}}),
                {}};
      params = *p;
    }
    method = m->get<std::string>();
    return withMethod(dispatch(id, method, params));
  } catch (const std::exception& e) {
    // A bug or a backend that threw: answer, keep the daemon up (and the
    // server audits the change it may have half made).
    return withMethod({errorResponse(id, {code::kInternal,
                                          std::string("internal error: ") + oneLine(e.what(), 200), "", {}}),
                       {}});
  } catch (...) {
    return withMethod({errorResponse(id, {code::kInternal, "internal error", "", {}}), {}});
  }
}

namespace {

// conn.list's response: the entries, or the scan's error. Never throws (it
// runs in the completion, where nothing would catch it).
json connListResponse(const json& id, size_t limit, const Status& s, const ConnList& list) {
  try {
    if (!s) return Dispatcher::errorResponse(id, {code::kFailed, s.message(), "", {}});
    json conns = json::array();
    for (const ConnListed& c : list.conns) conns.push_back(connListedJson(c));
    json result{{"connections", std::move(conns)},
                {"scanned", list.scanned},
                {"matched", list.matched},
                {"truncated", limit > 0 && list.matched > list.conns.size()}};
    // Counts only when asked for (limit 0): one row per real with entries,
    // which with thousands of reals would outweigh a listing.
    if (limit == 0) {
      json counts = json::array();
      for (const ConnCount& n : list.counts)
        counts.push_back(json{{"service", n.service.empty() ? json(nullptr) : json(n.service)},
                              {"real", n.real ? json(n.real->toString()) : json(nullptr)},
                              {"kept", n.kept},
                              {"not_kept", n.notKept}});
      result["counts"] = std::move(counts);
    }
    return Dispatcher::okResponse(id, std::move(result));
  } catch (const std::exception& e) {
    return Dispatcher::errorResponse(id, {code::kInternal, std::string("internal error: ") + oneLine(e.what(), 200),
                                          "", {}});
  } catch (...) {
    return Dispatcher::errorResponse(id, {code::kInternal, "internal error", "", {}});
  }
}

}  // namespace

const std::vector<std::string>& Dispatcher::methods() {
  static const std::vector<std::string> kMethods = {
      "service.list", "service.show", "service.add",  "service.remove", "real.add",     "real.remove",
      "real.set_weight", "real.drain", "real.undrain", "health.show",  "stats.get",    "lookup",
      "conn.list",    "config.check", "config.reload", "daemon.status", "daemon.shutdown"};
  return kMethods;
}

bool Dispatcher::changes(const std::string& method) { return isChangeMethod(method); }

const std::vector<std::string>& Dispatcher::readOnlyMethods() {
  // Not config.check, which changes nothing either: it runs the host checks
  // (neighbour lookups that wait up to a second on keeld's loop and send
  // probes) for whatever text it is given, an operator's tool.
  static const std::vector<std::string> kReadOnly = {"service.list", "service.show", "health.show", "stats.get",
                                                     "lookup",       "conn.list",    "daemon.status"};
  return kReadOnly;
}

DispatchOutcome Dispatcher::dispatch(const json& id, const std::string& method, const json& params) {
  auto fail = [&](const ApiError& e) { return DispatchOutcome{errorResponse(id, e), {}}; };
  // The one list of methods (methods()): a method outside it is unknown
  // before any branch below is tried, and one in it that no branch takes is
  // an internal error, which the dispatcher test looks for.
  const std::vector<std::string>& known = methods();
  if (std::find(known.begin(), known.end(), method) == known.end())
    return fail({code::kUnknownMethod,
                 "method: unknown method " + describeJson(json(method)) + " (known: " + commaList(known) + ")",
                 "method", {}});
  const std::vector<std::string>& ro = readOnlyMethods();
  if (readOnly_ && std::find(ro.begin(), ro.end(), method) == ro.end())
    return fail({code::kForbidden,
                 "method: " + method + " is not served on this read-only socket (it serves " + commaList(ro) + ")",
                 "method", {}});
  // `said`, if given, adds to a change's result what it did (its own keys
  // and warnings) before the reply goes out.
  auto reply = [&](const Result& r, const std::function<void(json& result, json& warnings)>& said = {}) {
    if (!r.isOk()) return fail(r.error());
    json result = r.result().is_object() ? r.result() : json::object();
    json warnings = result.contains("warnings") && result["warnings"].is_array() ? result["warnings"] : json::array();
    if (said) said(result, warnings);
    // A change that runs but could not be made to last says so, whatever
    // the method answers otherwise.
    if (std::optional<std::string> unsaved = backend_.takeUnsavedState()) warnings.push_back(*unsaved);
    if (!warnings.empty() || result.contains("warnings")) result["warnings"] = std::move(warnings);
    return DispatchOutcome{okResponse(id, std::move(result)), {}};
  };
  // One service as it is now, without counters; nullopt once it is gone.
  auto serviceNow = [&](const std::string& name) -> std::optional<ServiceSnapshot> {
    std::vector<ServiceSnapshot> one = backend_.serviceStates(name);
    if (one.empty()) return std::nullopt;
    return std::move(one.front());
  };
  // The reply of a change to one real of `before`: the real before and
  // after, the service's ring after, and the warning of a ring it emptied.
  auto realChanged = [&](const Result& r, const ServiceSnapshot& before, const IpAddress& address,
                         const std::function<void(const RealSnapshot* was, const RealSnapshot* is, json& result,
                                                  json& warnings)>& more) {
    return reply(r, [&](json& result, json& warnings) {
      const std::optional<ServiceSnapshot> after = serviceNow(before.name);
      const RealSnapshot* was = findReal(before, address);
      const RealSnapshot* is = after ? findReal(*after, address) : nullptr;
      result["service"] = before.name;
      result["address"] = address.toString();
      result["before"] = realBrief(was);
      result["after"] = realBrief(is);
      result["published_ring_size"] = after ? after->publishedRingSize : 0;
      result["reals_in_ring"] = after ? realsInRing(*after) : 0;
      if (more) more(was, is, result, warnings);
      if (after) addEmptiedRingWarnings({before}, {*after}, warnings);
    });
  };
  auto realWhere = [](const RealRef& ref) {
    return "real " + ref.address.toString() + " of service " + ref.service;
  };
  auto good = [&](json result) { return DispatchOutcome{okResponse(id, std::move(result)), {}}; };

  // Resolves params.service/params.address to a snapshot and a real,
  // without counters, so it does not read the data plane (serviceStates).
  auto needService = [&](const std::string& name, const char* field,
                         std::optional<ServiceSnapshot>& out) -> std::optional<ApiError> {
    out.reset();
    if (auto one = backend_.serviceStates(name); !one.empty()) out = std::move(one.front());
    if (!out) return serviceNotFound(name, field);
    return std::nullopt;
  };
  auto needReal = [&](const RealRef& ref, std::optional<ServiceSnapshot>& svc) -> std::optional<ApiError> {
    if (auto e = needService(ref.service, "params.service", svc)) return e;
    if (!findReal(*svc, ref.address))
      return ApiError{code::kNotFound,
                      svcWhere(ref.service) + ": real " + ref.address.toString() + " not found",
                      "params.address", {}};
    return std::nullopt;
  };

  if (method == "service.list") {
    auto p = parseNoParams(params);
    if (!p.ok()) return fail(p.error);
    json list = json::array();
    for (const auto& s : backend_.listServices()) list.push_back(toJson(s));
    return good(json{{"services", std::move(list)}});
  }
  if (method == "service.show") {
    auto p = parseServiceName(params);
    if (!p.ok()) return fail(p.error);
    // The one lookup that shows counters, so the one that reads them.
    std::optional<ServiceSnapshot> svc = backend_.findService(p.value->name);
    if (!svc) return fail(serviceNotFound(p.value->name, "params.name"));
    return good(json{{"service", toJson(*svc)}});
  }
  if (method == "service.add") {
    auto p = parseServiceAdd(params);
    if (!p.ok()) return fail(p.error);
    const ServiceAddRequest& r = *p.value;
    for (const auto& s : backend_.serviceStates(std::nullopt)) {
      if (s.name == r.name)
        return fail({code::kExists, svcWhere(r.name) + ": already exists", "params.name", {}});
      if (s.vip == r.vip && s.port == r.port && s.protocol == r.protocol)
        return fail({code::kExists,
                     svcWhere(r.name) + ": " + r.vip.toString() + " port " + std::to_string(r.port) +
                         "/" + std::string(protocolName(r.protocol)) + " is already service " + s.name,
                     "params.vip", {}});
    }
    return reply(backend_.addService(r), [&](json& result, json&) {
      result["service"] = r.name;
      if (const std::optional<ServiceSnapshot> now = serviceNow(r.name)) {
        result["vip"] = now->vip.toString();
        result["port"] = now->port;
        result["protocol"] = protocolName(now->protocol);
        result["reals"] = now->reals.size();
        result["published_ring_size"] = now->publishedRingSize;
        result["reals_in_ring"] = realsInRing(*now);
      }
    });
  }
  if (method == "service.remove") {
    auto p = parseServiceName(params);
    if (!p.ok()) return fail(p.error);
    std::optional<ServiceSnapshot> svc;
    if (auto e = needService(p.value->name, "params.name", svc)) return fail(*e);
    return reply(backend_.removeService(p.value->name), [&](json& result, json&) {
      result["service"] = svc->name;
      result["vip"] = svc->vip.toString();
      result["port"] = svc->port;
      result["protocol"] = protocolName(svc->protocol);
      result["reals"] = svc->reals.size();  // removed with it
    });
  }
  if (method == "real.add") {
    auto p = parseRealAdd(params);
    if (!p.ok()) return fail(p.error);
    std::optional<ServiceSnapshot> svc;
    if (auto e = needService(p.value->service, "params.service", svc)) return fail(*e);
    if (findReal(*svc, p.value->real.address))
      return fail({code::kExists,
                   svcWhere(p.value->service) + ": real " + p.value->real.address.toString() +
                       " already exists",
                   "params.address", {}});
    return realChanged(backend_.addReal(*p.value), *svc, p.value->real.address, {});
  }
  if (method == "real.remove") {
    auto p = parseRealRef(params);
    if (!p.ok()) return fail(p.error);
    std::optional<ServiceSnapshot> svc;
    if (auto e = needReal(*p.value, svc)) return fail(*e);
    const RealRef& ref = *p.value;
    return realChanged(backend_.removeReal(ref), *svc, ref.address,
                       [&](const RealSnapshot* was, const RealSnapshot*, json& result, json& warnings) {
      // Its flows at the last periodic count: those kept (their next
      // packet would have gone to it) now take the ring's pick, where IPVS
      // would let them finish. Unknown (no count with it yet): null, and
      // no warning (conn.list with limit 0 counts now).
      result["flows"] = nullptr;
      result["flows_counted_at"] = nullptr;
      if (!was || !was->flows) return;
      const RealFlows flows = *was->flows;
      result["flows"] = json{{"kept", flows.kept}, {"not_kept", flows.notKept}};
      result["flows_counted_at"] = rfc3339(svc->flowsCountedAt);
      if (flows.kept == 0) return;
      std::string when;
      if (svc->flowsCountedAt)
        when = " (counted " +
               ageText(std::max<long long>(0, std::chrono::duration_cast<std::chrono::seconds>(
                                                  std::chrono::system_clock::now() - *svc->flowsCountedAt)
                                                  .count())) +
               " ago)";
      const bool one = flows.kept == 1;
      const std::string them = one ? "it" : "them";
      warnings.push_back(realWhere(ref) + " had " + std::to_string(flows.kept) + (one ? " flow" : " flows") + when +
                         (one ? ": its" : ": their") + " next packets take the ring's pick; " +
                         (was->draining ? "to let " + them + " finish, remove a draining real once keelctl conns " +
                                              ref.service + " --real " + ref.address.toString() + " --count shows none"
                                        : "drain first to let " + them + " finish"));
    });
  }
  if (method == "real.drain" || method == "real.undrain") {
    auto p = parseRealDrain(params, method == "real.drain");
    if (!p.ok()) return fail(p.error);
    std::optional<ServiceSnapshot> svc;
    if (auto e = needReal(p.value->real, svc)) return fail(*e);
    const RealDrainRequest& req = *p.value;
    return realChanged(backend_.setRealDrain(req), *svc, req.real.address,
                       [&](const RealSnapshot* was, const RealSnapshot* now, json&, json& warnings) {
      if (!was) return;
      addUnkeptWarning(realWhere(req.real), was, now, warnings);
      // A repeat says so, as a wrong address in a script's loop would
      // otherwise pass unnoticed; a drain that gives a new reason changes it.
      if (!req.drain && !was->draining)
        warnings.push_back(realWhere(req.real) + " was not drained: nothing changed");
      if (req.drain && was->draining && (req.reason.empty() || req.reason == was->drainReason)) {
        const json since = rfc3339(was->drainedSince);
        warnings.push_back(realWhere(req.real) + " already draining" +
                           (since.is_string() ? " since " + since.get<std::string>() : std::string()) +
                           ": nothing changed");
      }
    });
  }
  if (method == "real.set_weight") {
    auto p = parseRealWeight(params);
    if (!p.ok()) return fail(p.error);
    std::optional<ServiceSnapshot> svc;
    if (auto e = needReal(p.value->real, svc)) return fail(*e);
    const RealWeightRequest& req = *p.value;
    return realChanged(backend_.setRealWeight(req), *svc, req.real.address,
                       [&](const RealSnapshot* was, const RealSnapshot* now, json&, json& warnings) {
      addUnkeptWarning(realWhere(req.real), was, now, warnings);
      if (was && was->weight == req.weight)
        warnings.push_back(realWhere(req.real) + ": weight already " + std::to_string(req.weight) +
                           ": nothing changed");
    });
  }
  if (method == "health.show") {
    auto p = parseServiceFilter(params);
    if (!p.ok()) return fail(p.error);
    // No counters shown, so none read (serviceStates).
    std::vector<ServiceSnapshot> list = backend_.serviceStates(p.value->service);
    if (auto e = keepOnly(list, p.value->service)) return fail(*e);
    json services = json::array();
    for (const auto& s : list) services.push_back(healthJson(s));
    return good(json{{"services", std::move(services)}});
  }
  if (method == "stats.get") {
    auto p = parseServiceFilter(params);
    if (!p.ok()) return fail(p.error);
    // One backend call: services and global counters from the same read.
    // A service filter picks from that list (rather than findService, which
    // would read the data plane a second time).
    auto [list, g] = backend_.servicesAndGlobalStats();
    if (auto e = keepOnly(list, p.value->service)) return fail(*e);
    json services = json::array();
    for (const auto& s : list) services.push_back(statsJson(s));
    json reasons = json::object();
    for (int i = 0; i < KEEL_R_MAX; ++i) reasons[kReasonNames[i]] = counterJson(g.reasons[i]);
    json conntrack{{"entries", g.connTableEntries ? json(*g.connTableEntries) : json(nullptr)},
                   {"capacity", g.connTableCapacity},
                   {"inserts_skipped", g.connInsertsSkipped},
                   {"midflow_misses", g.connMidflowMisses}};
    // Per family: a DPDK worker's table has a half per family, so one
    // family alone fills only its half of `capacity`. Summed over the
    // workers here; null where the plane has no workers (XDP: one table for
    // every CPU and both families, with no eviction count).
    std::array<FamilyConntrack, 2> sum{};
    json workers = json::array();
    for (const WorkerStats& w : g.workers) {
      json ct = json::object();
      for (size_t f = 0; f < 2; ++f) {
        const FamilyConntrack one{w.connEntries[f], w.connCapacity[f], w.connLiveEvictions[f]};
        ct[kFamilyNames[f]] = familyJson(one);
        sum[f].entries += one.entries;
        sum[f].capacity += one.capacity;
        sum[f].liveEvictions += one.liveEvictions;
      }
      workers.push_back(json{{"worker", w.worker},
                             {"lcore", w.lcore},
                             {"rx_packets", w.rxPackets},
                             {"icmp_peer_lookups",
                              json{{"found", w.icmpPeerFound},
                                   {"not_found", w.icmpPeerNotFound},
                                   {"rate_limited", w.icmpPeerRateLimited}}},
                             {"conntrack", std::move(ct)},
                             {"tx_dropped",
                              json{{"port", w.txDropped},
                                   {"to_kernel", w.toKernelDropped},
                                   {"from_kernel", w.fromKernelDropped}}},
                             {"from_kernel", w.fromKernel},
                             {"host_frames_ignored", w.hostFramesIgnored}});
    }
    for (size_t f = 0; f < 2; ++f)
      conntrack[kFamilyNames[f]] = g.workers.empty() ? json(nullptr) : familyJson(sum[f]);
    json port = nullptr;  // XDP: the kernel counts the interface (ip -s link)
    if (g.port)
      port = json{{"rx_packets", g.port->rxPackets}, {"rx_missed", g.port->rxMissed},
                  {"rx_no_mbuf", g.port->rxNoMbuf},  {"rx_errors", g.port->rxErrors},
                  {"tx_packets", g.port->txPackets}, {"tx_errors", g.port->txErrors},
                  {"link_up", g.port->linkUp},       {"link_speed_mbps", g.port->linkSpeedMbps}};
    // XDP: where the program runs and whether it still does (keel_dataplane_attached).
    json attachment = nullptr;
    if (g.upkeep)
      attachment = json{{"interface", g.upkeep->interface},       {"mode", g.upkeep->mode},
                        {"attached", g.upkeep->attached},         {"reattached", g.upkeep->reattached},
                        {"pins_restored", g.upkeep->pinsRestored}, {"pin_dir", g.upkeep->pinDir}};
    return good(json{{"dataplane", g.dataplane}, {"attachment", std::move(attachment)},
                     {"conntrack", std::move(conntrack)},
                     {"workers", std::move(workers)}, {"port", std::move(port)},
                     {"reasons", std::move(reasons)}, {"services", std::move(services)}});
  }
  if (method == "lookup") {
    auto p = parseLookup(params);
    if (!p.ok()) return fail(p.error);
    const LookupRequest& r = *p.value;
    std::optional<ServiceSnapshot> svc;
    if (auto e = needService(r.service, "params.service", svc)) return fail(*e);
    std::string where = svcWhere(r.service) + ": ";
    if (r.protocol && *r.protocol != svc->protocol)
      return fail({code::kInvalidParams,
                   where + "service is " + std::string(protocolName(svc->protocol)) + ", lookup asked for " +
                       std::string(protocolName(*r.protocol)),
                   "params.protocol", {}});
    if (r.clientAddress.family() != svc->vip.family())
      return fail({code::kInvalidParams,
                   where + "client " + r.clientAddress.toString() + " and VIP " + svc->vip.toString() +
                       " are different address families",
                   "params.client_address", {}});
    // Both planes drop such a packet before they look anything up
    // (keel_parse_l4): no real ever gets it.
    __u32 clientWords[4] = {}, vipWords[4] = {};
    r.clientAddress.toWords(clientWords);
    svc->vip.toWords(vipWords);
    if (keel_src_martian(r.clientAddress.family(), clientWords, vipWords))
      return fail({code::kInvalidParams,
                   where + "client " + r.clientAddress.toString() +
                       (r.clientAddress == svc->vip ? " is the VIP itself" : " is no single host's address") +
                       ": the data planes drop its packets (drop_bad_source)",
                   "params.client_address", {}});
    uint16_t dport = svc->port;
    if (svc->port == 0 && !r.port)
      return fail({code::kInvalidParams,
                   where + "service listens on every port: give the destination port", "params.port", {}});
    if (r.port) {
      if (svc->port != 0 && *r.port != svc->port)
        return fail({code::kInvalidParams,
                     where + "service port is " + std::to_string(svc->port) + ", lookup asked for " +
                         std::to_string(*r.port),
                     "params.port", {}});
      // Both planes look up the exact port first and take the port-0
      // service only when none has it: a port another service of this VIP
      // and protocol listens on never reaches this one, so there is no
      // answer to give for it here.
      if (svc->port == 0)
        for (const ServiceSnapshot& s : backend_.serviceStates(std::nullopt))
          if (s.port == *r.port && s.protocol == svc->protocol && s.vip == svc->vip)
            return fail({code::kInvalidParams,
                         where + "port " + std::to_string(*r.port) + " of " + svc->vip.toString() + "/" +
                             std::string(protocolName(svc->protocol)) + " is service " + s.name +
                             "'s, which takes its flows before this port-0 service: look the flow up there",
                         "params.port", {}});
      dport = *r.port;
    }
    // The flow key exactly as the data planes build it (include/keel/flow.h):
    // raw network-order address bytes, network-order ports, zero padding.
    keel_flow_key key{};
    r.clientAddress.toWords(key.src);
    svc->vip.toWords(key.dst);
    key.sport = htons(r.clientPort);
    key.dport = htons(dport);
    key.proto = svc->protocol;
    key.family = svc->vip.family();
    uint32_t flags = svc->scheduler == "maglev-src" ? KEEL_SVC_F_SCHED_SRC : 0;
    uint32_t hash = keel_sched_hash(&key, flags);
    json result{{"service", r.service},
                {"client_address", r.clientAddress.toString()},
                {"client_port", r.clientPort},
                {"vip", svc->vip.toString()},
                {"port", dport},
                {"protocol", protocolName(svc->protocol)},
                {"scheduler", svc->scheduler},
                {"hash", hash},
                {"ring_size", svc->publishedRingSize},
                {"slot", nullptr},
                {"real", nullptr},
                {"connection", nullptr}};
    // The flow's own entry, if it has one: where its next packet goes when
    // the ring changed since it began (even with an empty ring: a drained
    // real keeps its flows).
    if (std::optional<ConnView> c = backend_.connEntry(r.service, key)) result["connection"] = connJson(*c);
    if (svc->publishedRingSize == 0) {
      result["note"] = "no usable real: new flows are dropped (drop_no_backend)";
      return good(std::move(result));
    }
    uint32_t slot = keel_ring_slot(hash, svc->publishedRingSize);
    result["slot"] = slot;
    auto real = backend_.ringSlotReal(r.service, slot);
    if (!real)
      return fail({code::kFailed, where + "ring slot " + std::to_string(slot) + " has no real", "", {}});
    result["real"] = real->toString();
    // With held/kept as health.show has them: a fail-open real is down but
    // takes the service's new flows, which "down" alone hides.
    if (const RealSnapshot* rs = findReal(*svc, *real)) {
      result["state"] = rs->state();
      result["held"] = rs->held;
      result["kept"] = rs->kept;
    }
    return good(std::move(result));
  }
  if (method == "conn.list") {
    auto p = parseConnList(params);
    if (!p.ok()) return fail(p.error);
    std::optional<ServiceSnapshot> svc;
    if (p.value->service)
      if (auto e = needService(*p.value->service, "params.service", svc)) return fail(*e);
    // The walk of the table may take a while (docs/api.md): keeld answers
    // when it is done, and serves everything else meanwhile.
    DispatchOutcome out;
    out.later = [this, id, query = *p.value](DispatchOutcome::Send send) {
      // Outside handleLine's try: what the backend throws is answered here.
      auto answered = std::make_shared<std::atomic<bool>>(false);
      try {
        // Refused before anything is prepared: its own code, unlike a table
        // that could not be read (failed), since the same request will do
        // once a read is done. On the loop, like connList: nothing can take
        // the place in between.
        if (std::optional<std::string> busy = backend_.connListRefusal()) {
          answered->store(true);
          return send(errorResponse(id, {code::kTryLater, *busy, "", {}}));
        }
        backend_.connList(query, [id, limit = query.limit, send, answered](Status s, ConnList list) {
          answered->store(true);
          send(connListResponse(id, limit, s, list));
        });
      } catch (const std::exception& e) {
        if (!answered->load())
          send(errorResponse(id, {code::kInternal, std::string("internal error: ") + oneLine(e.what(), 200), "", {}}));
      } catch (...) {
        if (!answered->load()) send(errorResponse(id, {code::kInternal, "internal error", "", {}}));
      }
    };
    return out;
  }
  if (method == "config.check") {
    auto p = parseConfigText(params);
    if (!p.ok()) return fail(p.error);
    return reply(backend_.checkConfig(p.value->text, p.value->name));
  }
  if (method == "config.reload") {
    auto p = parseNoParams(params);
    if (!p.ok()) return fail(p.error);
    const std::vector<ServiceSnapshot> before = backend_.serviceStates(std::nullopt);
    return reply(backend_.reload(), [&](json&, json& warnings) {
      addEmptiedRingWarnings(before, backend_.serviceStates(std::nullopt), warnings);
    });
  }
  if (method == "daemon.status") {
    auto p = parseNoParams(params);
    if (!p.ok()) return fail(p.error);
    return good(statusJson(backend_.daemonStatus()));
  }
  if (method == "daemon.shutdown") {
    auto p = parseShutdown(params);
    if (!p.ok()) return fail(p.error);
    bool detach = p.value->detach;
    if (detach && !backend_.canDetach())
      return fail({code::kFailed,
                   "params.detach: this data plane cannot keep forwarding once the daemon exits "
                   "(DPDK workers are its threads); to restart keeping its runtime changes and "
                   "connection tables, stop keeld with a signal (systemctl restart, SIGTERM); a stop "
                   "without detach drops them",
                   "params.detach",
                   {}});
    return DispatchOutcome{okResponse(id, json{{"detach", detach}}), detach};
  }
  return fail({code::kInternal, "internal error: method " + method + " is listed but not dispatched", "method", {}});
}

}  // namespace keel::api

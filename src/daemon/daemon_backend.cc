// SPDX-License-Identifier: Apache-2.0
#include "daemon/daemon_backend.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/logging.h"

namespace keel {

namespace {

using api::Result;

const ServiceConfig* findSvc(const Config& c, const std::string& name) {
  for (const ServiceConfig& s : c.services)
    if (s.name == name) return &s;
  return nullptr;
}

const RealConfig* findReal(const Config& c, const std::string& svc, const IpAddress& addr) {
  const ServiceConfig* s = findSvc(c, svc);
  if (!s) return nullptr;
  for (const RealConfig& r : s->reals)
    if (r.address == addr) return &r;
  return nullptr;
}

bool sameReal(const RealConfig& a, const RealConfig& b) {
  return a.address == b.address && a.weight == b.weight && a.mac == b.mac &&
         a.healthSpec == b.healthSpec;
}

bool sameService(const ServiceConfig& a, const ServiceConfig& b) {
  if (a.vip != b.vip || a.port != b.port || a.protocol != b.protocol || a.forwarding != b.forwarding ||
      a.scheduler != b.scheduler || a.ringSize != b.ringSize || a.healthFailOpen != b.healthFailOpen ||
      a.reals.size() != b.reals.size())
    return false;
  for (size_t i = 0; i < a.reals.size(); ++i)
    if (!sameReal(a.reals[i], b.reals[i])) return false;
  return true;
}

HealthTarget targetOf(const ServiceConfig& svc, const RealConfig& r) {
  return HealthTarget{svc.name, r.address, svc.port, r.healthSpec};
}

// JSON is YAML: a request's `health` object goes through the same builder
// as keel.yaml, so runtime and file checks accept exactly the same keys.
YAML::Node jsonToYaml(const nlohmann::json& j) {
  if (j.is_null()) return YAML::Node();
  return YAML::Load(j.dump());
}

Result configErrors(std::vector<std::string> errors) {
  api::ApiError e;
  e.code = api::code::kInvalidConfig;
  e.message = errors.empty() ? "invalid config" : errors.front();
  if (errors.size() > 1) e.message += " (and " + std::to_string(errors.size() - 1) + " more)";
  e.details = {{"errors", errors}};
  return Result::error(std::move(e));
}

// Everything the registry cannot check itself about health targets, so a
// target that the checker would refuse fails the whole change up front.
std::vector<std::string> validateTargets(const Config& c) {
  std::vector<std::string> errors;
  for (const ServiceConfig& svc : c.services)
    for (const RealConfig& r : svc.reals) {
      if (r.healthSpec.type == HealthCheckSpec::Type::None) continue;
      Status s = validateHealthTarget(targetOf(svc, r),
                                      "service " + svc.name + " real " + r.address.toString());
      if (!s) errors.push_back(c.source + ":" + std::to_string(r.line) + ": " + s.message());
    }
  return errors;
}

}  // namespace

DaemonBackend::DaemonBackend(boost::asio::io_context& io, Registry& registry, std::string dataplaneKind,
                             std::string configPath, Loader loader, PreApply preApply, Stopper stopper)
    : io_(io),
      registry_(registry),
      dataplaneKind_(std::move(dataplaneKind)),
      configPath_(std::move(configPath)),
      loader_(std::move(loader)),
      preApply_(std::move(preApply)),
      stopper_(std::move(stopper)),
      checker_(io, [this](HealthTargetId, const HealthTarget& t, bool up, const HealthResult& why) {
        onHealthChange(t, up, why);
      }) {}

Status DaemonBackend::start(const Config& config, const ProgrammedState* adopted) {
  if (auto errors = validateTargets(config); !errors.empty()) return Status::error(errors.front());
  Overlay kept = loadState(config);
  if (adopted)
    if (Status s = registry_.adopt(*adopted, compose(config, kept)); !s) return s;
  Result r = commit(config, kept);
  if (!r.isOk() && !kept.reals.empty()) {
    logWarn(LogRecord("runtime_state_ignored").add("path", statePath_).add("error", r.error().message));
    r = commit(config, Overlay{});
  }
  if (!r.isOk()) return Status::error(r.error().message);
  return Status::ok();
}

Config DaemonBackend::compose(const Config& file, const Overlay& overlay) const {
  Config c = file;
  std::erase_if(c.services, [&](const ServiceConfig& s) { return overlay.removedServices.count(s.name) > 0; });
  for (const auto& [name, svc] : overlay.addedServices)
    if (!findSvc(c, name)) c.services.push_back(svc);
  for (ServiceConfig& svc : c.services) {
    for (const auto& [key, ov] : overlay.reals) {
      if (key.first != svc.name) continue;
      auto it = std::find_if(svc.reals.begin(), svc.reals.end(),
                             [&](const RealConfig& r) { return r.address == key.second; });
      if (ov.removed) {
        if (it != svc.reals.end()) svc.reals.erase(it);
        continue;
      }
      if (it == svc.reals.end()) {
        if (!ov.added) continue;
        svc.reals.push_back(*ov.added);
        it = svc.reals.end() - 1;
      }
      if (ov.weight) it->weight = *ov.weight;
      // Drain is weight 0 in the ring: the real leaves the ring but keeps
      // its generation, so established flows stay (registry.h).
      if (ov.drained) it->weight = 0;
    }
    for (RealConfig& r : svc.reals) r.startHealthy = r.healthSpec.type == HealthCheckSpec::Type::None;
  }
  return c;
}

Result DaemonBackend::commit(const Config& file, Overlay overlay) {
  Config next = compose(file, overlay);
  if (auto errors = validateTargets(next); !errors.empty()) return configErrors(std::move(errors));
  if (Status s = registry_.apply(next); !s) return Result::error(api::code::kFailed, s.message());
  file_ = file;
  overlay_ = std::move(overlay);
  effective_ = std::move(next);
  syncHealth(effective_);
  saveState();
  return Result::ok();
}

// Only drains and weights of reals the file has: they are what operators
// set during maintenance. Runtime-added services and reals are not kept
// (their health blocks would need the file's whole schema).
void DaemonBackend::saveState() const {
  if (statePath_.empty()) return;
  nlohmann::json reals = nlohmann::json::array();
  for (const auto& [key, ov] : overlay_.reals) {
    if (ov.added || ov.removed || (!ov.weight && !ov.drained)) continue;
    const RealConfig* fr = findReal(file_, key.first, key.second);
    if (!fr) continue;
    nlohmann::json e = {{"service", key.first},
                        {"address", key.second.toString()},
                        {"file_weight", fr->weight},
                        {"drained", ov.drained}};
    if (ov.weight) e["weight"] = *ov.weight;
    reals.push_back(std::move(e));
  }
  const std::string tmp = statePath_ + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << nlohmann::json{{"version", 1}, {"reals", reals}}.dump() << "\n";
    if (!out) {
      logWarn(LogRecord("runtime_state_not_saved").add("path", tmp).add("error", "write failed"));
      return;
    }
  }
  if (std::rename(tmp.c_str(), statePath_.c_str()) != 0)
    logWarn(LogRecord("runtime_state_not_saved").add("path", statePath_).add("error", "rename failed"));
}

DaemonBackend::Overlay DaemonBackend::loadState(const Config& file) const {
  Overlay out;
  if (statePath_.empty()) return out;
  std::ifstream in(statePath_);
  if (!in) return out;  // none yet
  nlohmann::json doc = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (!doc.is_object() || doc.value("version", 0) != 1 || !doc.contains("reals") ||
      !doc["reals"].is_array()) {
    logWarn(LogRecord("runtime_state_ignored").add("path", statePath_).add("error", "not a version 1 state file"));
    return out;
  }
  for (const nlohmann::json& e : doc["reals"]) {
    if (!e.is_object() || !e.contains("service") || !e["service"].is_string() ||
        !e.contains("address") || !e["address"].is_string() || !e.contains("file_weight") ||
        !e["file_weight"].is_number_unsigned())
      continue;
    const std::string svc = e["service"];
    auto addr = IpAddress::parse(e["address"].get<std::string>());
    if (!addr) continue;
    const RealConfig* fr = findReal(file, svc, *addr);
    // The file changed that real (or dropped it) since: the file wins.
    if (!fr || fr->weight != e["file_weight"].get<uint32_t>()) {
      logInfo(LogRecord("runtime_state_dropped").add("service", svc).add("real", addr->toString()));
      continue;
    }
    RealOverride ov;
    ov.drained = e.value("drained", false);
    if (e.contains("weight") && e["weight"].is_number_unsigned() && e["weight"].get<uint64_t>() <= 65535)
      ov.weight = e["weight"].get<uint32_t>();
    if (!ov.drained && !ov.weight) continue;
    out.reals[{svc, *addr}] = ov;
    logInfo(LogRecord("runtime_state_kept")
                .add("service", svc)
                .add("real", addr->toString())
                .add("drained", ov.drained ? 1 : 0));
  }
  return out;
}

void DaemonBackend::syncHealth(const Config& effective) {
  std::map<std::pair<std::string, IpAddress>, bool> registryUp;
  for (const ServiceView& v : registry_.services())
    for (const RealView& r : v.reals) registryUp[{v.name, r.address}] = r.healthy;
  std::set<std::pair<std::string, IpAddress>> seen;
  for (const ServiceConfig& svc : effective.services) {
    for (const RealConfig& r : svc.reals) {
      auto key = std::make_pair(svc.name, r.address);
      seen.insert(key);
      auto it = targets_.find(key);
      // A service whose key changed is a new service in the registry (its
      // reals start over), so its targets start over too.
      if (it != targets_.end() &&
          (it->second.vip != svc.vip || it->second.port != svc.port || it->second.protocol != svc.protocol)) {
        checker_.remove(it->second.id);
        targets_.erase(it);
        it = targets_.end();
      }
      if (it == targets_.end()) {
        HealthTargetId id = 0;
        // New reals are in the registry at their start health already; an
        // adopted one is there in the state the last keeld left it in.
        auto known = registryUp.find(key);
        const bool initiallyUp = r.startHealthy || (known != registryUp.end() && known->second);
        if (Status s = checker_.add(targetOf(svc, r), initiallyUp, &id); !s) {
          logError(LogRecord("health_target_failed").add("service", svc.name).add("real", r.address.toString()).add("error", s.message()));
          continue;
        }
        targets_[key] = Target{id, svc.vip, svc.port, svc.protocol};
      } else if (Status s = checker_.update(it->second.id, r.healthSpec); !s) {
        logError(LogRecord("health_target_failed").add("service", svc.name).add("real", r.address.toString()).add("error", s.message()));
      }
    }
  }
  for (auto it = targets_.begin(); it != targets_.end();) {
    if (seen.count(it->first)) {
      ++it;
      continue;
    }
    checker_.remove(it->second.id);
    it = targets_.erase(it);
  }
  // The checker's verdict is the truth: bring the registry in line where a
  // real kept its target but the registry re-created it (or vice versa).
  for (const ServiceView& v : registry_.services())
    for (const RealView& r : v.reals) {
      auto it = targets_.find({v.name, r.address});
      if (it == targets_.end()) continue;
      auto st = checker_.status(it->second.id);
      if (st && st->up != r.healthy) (void)registry_.setRealHealth(v.name, r.address, st->up);
    }
}

void DaemonBackend::onHealthChange(const HealthTarget& target, bool up, const HealthResult& why) {
  auto log = LogRecord("health_changed")
                 .add("service", target.service)
                 .add("real", target.address.toString())
                 .add("state", up ? "up" : "down")
                 .add("reason", why.reason);
  if (up)
    logInfo(log);
  else
    logWarn(log);
  if (Status s = registry_.setRealHealth(target.service, target.address, up); !s)
    logError(LogRecord("health_apply_failed").add("service", target.service).add("error", s.message()));
}

DaemonBackend::Overlay DaemonBackend::rebase(const Config& oldFile, const Config& newFile,
                                             const Overlay& overlay) {
  Overlay out;
  for (const auto& [name, svc] : overlay.addedServices)
    if (!findSvc(newFile, name)) out.addedServices.emplace(name, svc);
  for (const std::string& name : overlay.removedServices) {
    const ServiceConfig* a = findSvc(oldFile, name);
    const ServiceConfig* b = findSvc(newFile, name);
    if (a && b && sameService(*a, *b)) out.removedServices.insert(name);
  }
  for (const auto& [key, ov] : overlay.reals) {
    if (out.addedServices.count(key.first)) {
      out.reals.emplace(key, ov);
      continue;
    }
    if (!findSvc(newFile, key.first)) continue;  // the service left the file
    const RealConfig* a = findReal(oldFile, key.first, key.second);
    const RealConfig* b = findReal(newFile, key.first, key.second);
    const bool changed = (a == nullptr) != (b == nullptr) || (a && !sameReal(*a, *b));
    if (!changed) out.reals.emplace(key, ov);
  }
  return out;
}

// ------------------------------------------------------------ queries

api::ServiceSnapshot DaemonBackend::snapshotOf(const ServiceView& v, const RegistryStats& stats) const {
  api::ServiceSnapshot s;
  s.name = v.name;
  s.vip = v.vip;
  s.port = v.port;
  s.protocol = v.protocol;
  s.forwarding = std::string(toString(v.forwarding));
  s.scheduler = std::string(toString(v.scheduler));
  s.ringSize = v.ringSize;
  s.publishedRingSize = v.publishedRingSize;
  const ServiceStats* ss = nullptr;
  for (const ServiceStats& x : stats.services)
    if (x.name == v.name) ss = &x;
  if (ss) s.counters = keel_counter{ss->counters.packets, ss->counters.bytes};
  for (const RealView& r : v.reals) {
    api::RealSnapshot rs;
    rs.address = r.address;
    rs.weight = r.weight;
    rs.mac = r.mac;
    rs.healthy = r.healthy;
    auto ov = overlay_.reals.find({v.name, r.address});
    if (ov != overlay_.reals.end() && ov->second.drained) {
      rs.draining = true;
      // The weight it returns with on undrain (the ring holds it at 0).
      const RealConfig* fr = findReal(file_, v.name, r.address);
      rs.weight = ov->second.weight ? *ov->second.weight
                  : fr              ? fr->weight
                  : ov->second.added ? ov->second.added->weight
                                     : 0;
    }
    if (const RealConfig* er = findReal(effective_, v.name, r.address))
      rs.check = toString(er->healthSpec.type);
    if (auto t = targets_.find({v.name, r.address}); t != targets_.end()) {
      if (auto st = checker_.status(t->second.id)) {
        rs.healthDetail = st->last.reason;
        rs.consecutiveOk = st->consecutiveOk;
        rs.consecutiveFail = st->consecutiveFail;
      }
    }
    if (ss)
      for (const RealStats& rst : ss->reals)
        if (rst.address == r.address) rs.counters = keel_counter{rst.counters.packets, rst.counters.bytes};
    s.reals.push_back(std::move(rs));
  }
  return s;
}

std::vector<api::ServiceSnapshot> DaemonBackend::listServices() {
  RegistryStats stats = registry_.readStats();
  std::vector<api::ServiceSnapshot> out;
  for (const ServiceView& v : registry_.services()) out.push_back(snapshotOf(v, stats));
  return out;
}

std::optional<api::ServiceSnapshot> DaemonBackend::findService(const std::string& name) {
  RegistryStats stats = registry_.readStats();
  for (const ServiceView& v : registry_.services())
    if (v.name == name) return snapshotOf(v, stats);
  return std::nullopt;
}

std::optional<IpAddress> DaemonBackend::ringSlotReal(const std::string& service, uint32_t slot) {
  return registry_.ringSlotReal(service, slot);
}

api::GlobalStats DaemonBackend::globalStats() {
  api::GlobalStats g;
  g.dataplane = dataplaneKind_;
  RegistryStats stats = registry_.readStats();
  g.reasons = stats.reasons;
  g.connTableEntries = stats.connTableEntries;
  g.connTableCapacity = stats.connTableCapacity;
  g.workers = std::move(stats.workers);
  return g;
}

// ------------------------------------------------------------ mutations

Result DaemonBackend::addService(const api::ServiceAddRequest& req) {
  ServiceConfig svc;
  svc.name = req.name;
  svc.vip = req.vip;
  svc.port = req.port;
  svc.protocol = req.protocol;
  svc.forwarding = req.forwarding == "l2dsr" ? Forwarding::kL2dsr : Forwarding::kIpip;
  svc.scheduler = req.scheduler == "maglev-src" ? Scheduler::kMaglevSrc : Scheduler::kMaglev;
  svc.ringSize = req.ringSize;
  svc.health = jsonToYaml(req.health);
  std::vector<std::string> errors;
  if (svc.health.IsMap() && svc.health["all_down"]) {
    std::string v = svc.health["all_down"].Scalar();
    if (v == "fail-open" || v == "fail-closed")
      svc.healthFailOpen = v == "fail-open";
    else
      errors.push_back("request: params.health.all_down: must be one of fail-open|fail-closed, got " + v);
  }
  for (size_t i = 0; i < req.reals.size(); ++i) {
    const api::RealSpec& rs = req.reals[i];
    RealConfig r;
    r.address = rs.address;
    r.weight = rs.weight;
    r.mac = rs.mac;
    r.health = jsonToYaml(rs.health);
    if (svc.forwarding == Forwarding::kL2dsr && !r.mac)
      errors.push_back("request: params.reals[" + std::to_string(i) + "].mac: l2dsr reals added at runtime need a mac");
    if (auto spec = resolveRealHealth(svc.health, r.health, "request", "params",
                                      "params.reals[" + std::to_string(i) + "]", errors))
      r.healthSpec = *spec;
    svc.reals.push_back(std::move(r));
  }
  if (!errors.empty()) return configErrors(std::move(errors));
  Overlay next = overlay_;
  next.addedServices[svc.name] = svc;
  Result r = commit(file_, std::move(next));
  if (r.isOk()) logInfo(LogRecord("runtime_service_added").add("service", svc.name));
  return r;
}

Result DaemonBackend::removeService(const std::string& name) {
  Overlay next = overlay_;
  if (!next.addedServices.erase(name)) next.removedServices.insert(name);
  std::erase_if(next.reals, [&](const auto& kv) { return kv.first.first == name; });
  Result r = commit(file_, std::move(next));
  if (r.isOk()) logInfo(LogRecord("runtime_service_removed").add("service", name));
  return r;
}

Result DaemonBackend::addReal(const api::RealAddRequest& req) {
  const ServiceConfig* svc = findSvc(effective_, req.service);
  if (!svc) return Result::error(api::code::kNotFound, "no service named " + req.service, "params.service");
  RealConfig r;
  r.address = req.real.address;
  r.weight = req.real.weight;
  r.mac = req.real.mac;
  r.health = jsonToYaml(req.real.health);
  std::vector<std::string> errors;
  if (svc->forwarding == Forwarding::kL2dsr && !r.mac)
    errors.push_back("request: params.mac: l2dsr reals added at runtime need a mac");
  if (auto spec = resolveRealHealth(svc->health, r.health, "request", "services[" + svc->name + "]",
                                    "params", errors))
    r.healthSpec = *spec;
  if (!errors.empty()) return configErrors(std::move(errors));
  Overlay next = overlay_;
  RealOverride ov;
  ov.added = r;
  ov.weight = r.weight;  // also when re-adding a file real removed at runtime
  next.reals[{req.service, r.address}] = ov;
  Result res = commit(file_, std::move(next));
  if (res.isOk())
    logInfo(LogRecord("runtime_real_added").add("service", req.service).add("real", r.address.toString()));
  return res;
}

Result DaemonBackend::removeReal(const api::RealRef& ref) {
  Overlay next = overlay_;
  auto key = std::make_pair(ref.service, ref.address);
  // Is the real there without our own entry for it (file, or a service
  // added at runtime)? Then removal must be remembered; else forget the add.
  Overlay without = next;
  without.reals.erase(key);
  const bool inFile = findReal(compose(file_, without), ref.service, ref.address) != nullptr;
  if (inFile) {
    RealOverride ov;
    ov.removed = true;
    next.reals[key] = ov;
  } else {
    next.reals.erase(key);
  }
  Result r = commit(file_, std::move(next));
  if (r.isOk())
    logInfo(LogRecord("runtime_real_removed").add("service", ref.service).add("real", ref.address.toString()));
  return r;
}

Result DaemonBackend::setRealWeight(const api::RealWeightRequest& req) {
  Overlay next = overlay_;
  next.reals[{req.real.service, req.real.address}].weight = req.weight;
  Result r = commit(file_, std::move(next));
  if (r.isOk())
    logInfo(LogRecord("runtime_weight_set")
                .add("service", req.real.service)
                .add("real", req.real.address.toString())
                .add("weight", req.weight));
  return r;
}

Result DaemonBackend::setRealDrain(const api::RealRef& ref, bool drain) {
  Overlay next = overlay_;
  auto key = std::make_pair(ref.service, ref.address);
  RealOverride& ov = next.reals[key];
  ov.drained = drain;
  if (!ov.added && !ov.removed && !ov.weight && !ov.drained) next.reals.erase(key);
  Result r = commit(file_, std::move(next));
  if (r.isOk())
    logInfo(LogRecord(drain ? "real_drained" : "real_undrained")
                .add("service", ref.service)
                .add("real", ref.address.toString()));
  return r;
}

Result DaemonBackend::checkConfig(const std::string& path) {
  ConfigResult r = loader_(path);
  if (!r.ok()) return configErrors(std::move(r.errors));
  if (auto errors = validateTargets(*r.config); !errors.empty()) return configErrors(std::move(errors));
  size_t reals = 0;
  for (const ServiceConfig& s : r.config->services) reals += s.reals.size();
  return Result::ok({{"path", path}, {"services", r.config->services.size()}, {"reals", reals}});
}

Result DaemonBackend::reload() {
  if (reloadHook_) reloadHook_(false, true);
  Result res = reloadFile();
  if (reloadHook_) reloadHook_(true, res.isOk());
  return res;
}

Result DaemonBackend::reloadFile() {
  logInfo(LogRecord("reload_started").add("config", configPath_));
  ConfigResult r = loader_(configPath_);
  if (r.ok())
    if (auto errors = validateTargets(*r.config); !errors.empty()) {
      r.errors = std::move(errors);
      r.config.reset();
    }
  if (!r.ok()) {
    for (const std::string& e : r.errors) logError(LogRecord("config_error").add("error", e));
    logError(LogRecord("reload_rejected").add("config", configPath_).add("errors", r.errors.size()));
    return configErrors(std::move(r.errors));
  }
  if (Status s = preApply_(*r.config); !s) {
    logError(LogRecord("reload_rejected").add("error", s.message()));
    return Result::error(api::code::kFailed, s.message());
  }
  Overlay next = rebase(file_, *r.config, overlay_);
  Result res = commit(*r.config, std::move(next));
  if (!res.isOk()) {
    logError(LogRecord("reload_failed").add("error", res.error().message));
    return res;
  }
  size_t reals = 0;
  for (const ServiceConfig& s : effective_.services) reals += s.reals.size();
  logInfo(LogRecord("reload_done").add("services", effective_.services.size()).add("reals", reals));
  return Result::ok({{"services", effective_.services.size()}, {"reals", reals}});
}

void DaemonBackend::shutdown(bool detach) { stopper_(detach); }

}  // namespace keel

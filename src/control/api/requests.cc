// SPDX-License-Identifier: Apache-2.0
#include "control/api/requests.h"
#include "common/text.h"

#include <algorithm>
#include <cctype>
#include <initializer_list>
#include <set>

namespace keel::api {

using nlohmann::json;

bool isValidServiceName(std::string_view s) {
  if (s.empty() || s.size() > 63) return false;
  if (!std::isalnum(static_cast<unsigned char>(s[0]))) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
  });
}

bool isValidDrainReason(std::string_view s) {
  if (s.empty() || s.size() > kMaxDrainReason) return false;
  // No character that can make `keelctl health show` display text other
  // than what is stored (isHiddenCodePoint: controls, C1, line separators,
  // bidirectional marks; input review L3). The request's JSON is valid
  // UTF-8; a byte that starts no sequence is passed over, as before.
  for (size_t i = 0; i < s.size();) {
    char32_t cp = 0;
    const size_t n = decodeUtf8(s, i, cp);
    if (n && isHiddenCodePoint(cp)) return false;
    i += n ? n : 1;
  }
  return true;
}

std::string_view protocolName(uint8_t proto) {
  return proto == KEEL_PROTO_TCP ? "tcp" : proto == KEEL_PROTO_UDP ? "udp" : "?";
}

std::string describeJson(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::object: return "an object";
    case json::value_t::array: return "a list";
    case json::value_t::boolean: return v.get<bool>() ? "true" : "false";
    case json::value_t::string:
      return "\"" + printable(v.get_ref<const std::string&>(), 64) + "\"";
    default: {
      std::string s = v.dump();
      return s.size() > 64 ? s.substr(0, 64) + "..." : s;
    }
  }
}

namespace {

// Reads the keys of one JSON object, recording the first error.
class Fields {
 public:
  Fields(const json& obj, std::string path) : obj_(obj), path_(std::move(path)) {
    if (obj_.is_null() && path_ == "params") {
      // Absent params: the same as {}.
    } else if (!obj_.is_object()) {
      fail(path_, "must be an object, got " + describeJson(obj_));
    }
  }

  bool failed() const { return failed_; }
  const ApiError& error() const { return error_; }

  void fail(const std::string& field, const std::string& what, const char* c = code::kInvalidParams) {
    if (failed_) return;
    failed_ = true;
    error_ = ApiError{c, field + ": " + what, field, {}};
  }

  std::string key(std::string_view k) const { return path_ + "." + std::string(k); }

  // Every key must be one of `allowed`.
  void allowOnly(std::initializer_list<std::string_view> allowed) {
    if (failed_ || !obj_.is_object()) return;
    for (auto it = obj_.begin(); it != obj_.end(); ++it) {
      if (std::find(allowed.begin(), allowed.end(), it.key()) != allowed.end()) continue;
      std::string list = commaList(allowed);
      if (list.empty()) list = "none";
      fail(path_ + "." + printable(it.key(), 64), "unknown key (expected: " + list + ")");
      return;
    }
  }

  const json* get(std::string_view k, bool required) {
    if (failed_) return nullptr;
    if (obj_.is_object()) {
      auto it = obj_.find(std::string(k));
      if (it != obj_.end()) return &*it;
    }
    if (required) fail(key(k), "is required");
    return nullptr;
  }

  std::optional<std::string> string(std::string_view k, bool required, std::string_view what) {
    const json* v = get(k, required);
    if (!v) return std::nullopt;
    if (!v->is_string()) {
      fail(key(k), "must be " + std::string(what) + ", got " + describeJson(*v));
      return std::nullopt;
    }
    return v->get<std::string>();
  }

  std::optional<std::string> serviceName(std::string_view k, bool required) {
    auto s = string(k, required, "a service name");
    if (!s) return std::nullopt;
    if (!isValidServiceName(*s)) {
      fail(key(k), "must be a service name (1..63 letters, digits, '-', '_' or '.', starting with a "
                   "letter or digit), got " + describeJson(json(*s)));
      return std::nullopt;
    }
    return s;
  }

  std::optional<uint64_t> integer(std::string_view k, bool required, uint64_t lo, uint64_t hi) {
    const json* v = get(k, required);
    if (!v) return std::nullopt;
    // is_number_integer excludes 100.0 and booleans; negative values are
    // number_integer (signed), out of range for every field here.
    bool good = v->is_number_unsigned() || (v->is_number_integer() && v->get<int64_t>() >= 0);
    uint64_t n = good ? v->get<uint64_t>() : 0;
    if (!good || n < lo || n > hi) {
      fail(key(k), "must be an integer " + std::to_string(lo) + ".." + std::to_string(hi) +
                       ", got " + describeJson(*v));
      return std::nullopt;
    }
    return n;
  }

  std::optional<bool> boolean(std::string_view k, bool required) {
    const json* v = get(k, required);
    if (!v) return std::nullopt;
    if (!v->is_boolean()) {
      fail(key(k), "must be true or false, got " + describeJson(*v));
      return std::nullopt;
    }
    return v->get<bool>();
  }

  std::optional<IpAddress> address(std::string_view k, bool required) {
    auto s = string(k, required, "an IPv4 or IPv6 address");
    if (!s) return std::nullopt;
    // inet_pton stops at a NUL, so "10.0.0.1\0junk" would pass: refuse it.
    std::optional<IpAddress> a;
    if (s->find('\0') == std::string::npos && s->size() <= 64) a = IpAddress::parse(*s);
    if (!a) {
      fail(key(k), "must be an IPv4 or IPv6 address, got " + describeJson(json(*s)));
      return std::nullopt;
    }
    return a;
  }

  std::optional<MacAddress> mac(std::string_view k) {
    auto s = string(k, false, "a MAC address like 02:00:00:00:00:01");
    if (!s) return std::nullopt;
    auto m = MacAddress::parse(*s);
    if (!m) {
      fail(key(k), "must be a MAC address like 02:00:00:00:00:01, got " + describeJson(json(*s)));
      return std::nullopt;
    }
    return m;
  }

  std::optional<std::string> choice(std::string_view k, std::initializer_list<std::string_view> options) {
    std::string list;
    for (auto o : options) list += (list.empty() ? "" : "|") + std::string(o);
    auto s = string(k, false, "one of " + list);
    if (!s) return std::nullopt;
    if (std::find(options.begin(), options.end(), *s) == options.end()) {
      fail(key(k), "must be one of " + list + ", got " + describeJson(json(*s)));
      return std::nullopt;
    }
    return s;
  }

  std::optional<uint8_t> protocol(std::string_view k, bool required) {
    if (!get(k, required)) return std::nullopt;
    auto s = choice(k, {"tcp", "udp"});
    if (!s) return std::nullopt;
    return *s == "tcp" ? uint8_t{KEEL_PROTO_TCP} : uint8_t{KEEL_PROTO_UDP};
  }

  // Opaque health spec: checked by the daemon's health parser, but it must at
  // least be an object (or absent).
  json health(std::string_view k) {
    const json* v = get(k, false);
    if (!v) return nullptr;
    if (!v->is_object()) {
      fail(key(k), "must be an object (the keys of a YAML health block), got " + describeJson(*v));
      return nullptr;
    }
    return *v;
  }

 private:
  const json& obj_;
  std::string path_;
  bool failed_ = false;
  ApiError error_;
};

template <typename T>
Parsed<T> finish(const Fields& f, T value) {
  if (f.failed()) return Parsed<T>::fail(f.error());
  return Parsed<T>::good(std::move(value));
}

// One real, shared by service.add's reals[] and real.add.
void readReal(Fields& f, RealSpec& real) {
  if (auto a = f.address("address", true)) real.address = *a;
  if (auto w = f.integer("weight", false, 0, 65535)) real.weight = static_cast<uint32_t>(*w);
  real.mac = f.mac("mac");
  real.health = f.health("health");
}

}  // namespace

Parsed<NoParams> parseNoParams(const json& params) {
  Fields f(params, "params");
  f.allowOnly({});
  return finish(f, NoParams{});
}

Parsed<ServiceName> parseServiceName(const json& params) {
  Fields f(params, "params");
  f.allowOnly({"name"});
  ServiceName r;
  if (auto s = f.serviceName("name", true)) r.name = *s;
  return finish(f, r);
}

Parsed<ServiceFilter> parseServiceFilter(const json& params) {
  Fields f(params, "params");
  f.allowOnly({"service"});
  ServiceFilter r;
  r.service = f.serviceName("service", false);
  return finish(f, r);
}

Parsed<ServiceAddRequest> parseServiceAdd(const json& params) {
  Fields f(params, "params");
  f.allowOnly({"name", "vip", "port", "protocol", "forwarding", "scheduler", "ring_size", "reals",
               "health"});
  ServiceAddRequest r;
  if (auto s = f.serviceName("name", true)) r.name = *s;
  if (auto a = f.address("vip", true)) r.vip = *a;
  if (auto p = f.integer("port", true, 0, 65535)) r.port = static_cast<uint16_t>(*p);
  if (auto p = f.protocol("protocol", true)) r.protocol = *p;
  if (auto s = f.choice("forwarding", {"ipip", "l2dsr"})) r.forwarding = *s;
  if (auto s = f.choice("scheduler", {"maglev", "maglev-src"})) r.scheduler = *s;
  if (const json* v = f.get("ring_size", false)) {
    // The two primes of include/keel/maglev_lookup.h, as in keel.yaml.
    if (!(v->is_number_unsigned() || v->is_number_integer()) ||
        (v->get<int64_t>() != KEEL_RING_SIZE_DEFAULT && v->get<int64_t>() != KEEL_RING_SIZE_LARGE)) {
      f.fail(f.key("ring_size"), "must be 65537 or 655373, got " + describeJson(*v));
    } else {
      r.ringSize = static_cast<uint32_t>(v->get<int64_t>());
    }
  }
  if (const json* reals = f.get("reals", false)) {
    if (reals->is_null()) {
      // No reals yet, as in keel.yaml.
    } else if (!reals->is_array()) {
      f.fail(f.key("reals"), "must be a list of reals, got " + describeJson(*reals));
    } else {
      std::set<IpAddress> seen;
      for (size_t i = 0; i < reals->size() && !f.failed(); ++i) {
        std::string path = "params.reals[" + std::to_string(i) + "]";
        Fields rf((*reals)[i], path);
        rf.allowOnly({"address", "weight", "mac", "health"});
        RealSpec real;
        readReal(rf, real);
        if (!rf.failed() && !seen.insert(real.address).second)
          rf.fail(path + ".address", "duplicate real " + real.address.toString());
        if (rf.failed()) {
          return Parsed<ServiceAddRequest>::fail(rf.error());
        }
        r.reals.push_back(std::move(real));
      }
    }
  }
  r.health = f.health("health");
  return finish(f, std::move(r));
}

Parsed<RealAddRequest> parseRealAdd(const json& params) {
  Fields f(params, "params");
  f.allowOnly({"service", "address", "weight", "mac", "health"});
  RealAddRequest r;
  if (auto s = f.serviceName("service", true)) r.service = *s;
  readReal(f, r.real);
  return finish(f, std::move(r));
}

namespace {
json realParams(const RealSpec& real) {
  json p{{"address", real.address.toString()}};
  if (real.weight) p["weight"] = *real.weight;
  if (real.mac) p["mac"] = real.mac->toString();
  if (!real.health.is_null()) p["health"] = real.health;
  return p;
}
}  // namespace

json toParams(const ServiceAddRequest& r) {
  json p{{"name", r.name},
         {"vip", r.vip.toString()},
         {"port", r.port},
         {"protocol", std::string(protocolName(r.protocol))},
         {"forwarding", r.forwarding},
         {"scheduler", r.scheduler},
         {"ring_size", r.ringSize}};
  if (!r.reals.empty()) {
    json reals = json::array();
    for (const RealSpec& real : r.reals) reals.push_back(realParams(real));
    p["reals"] = std::move(reals);
  }
  if (!r.health.is_null()) p["health"] = r.health;
  return p;
}

json toParams(const RealAddRequest& r) {
  json p = realParams(r.real);
  p["service"] = r.service;
  return p;
}

namespace {
// The (service, address) pair every real verb names.
void readRealRef(Fields& f, RealRef& r) {
  if (auto s = f.serviceName("service", true)) r.service = *s;
  if (auto a = f.address("address", true)) r.address = *a;
}
}  // namespace

Parsed<RealRef> parseRealRef(const json& params) {
  Fields f(params, "params");
  f.allowOnly({"service", "address"});
  RealRef r;
  readRealRef(f, r);
  return finish(f, std::move(r));
}

Parsed<RealDrainRequest> parseRealDrain(const json& params, bool drain) {
  Fields f(params, "params");
  if (drain)
    f.allowOnly({"service", "address", "reason"});
  else
    f.allowOnly({"service", "address"});
  RealDrainRequest r;
  r.drain = drain;
  readRealRef(f, r.real);
  if (drain)
    if (auto s = f.string("reason", false, "a string")) {
      if (isValidDrainReason(*s))
        r.reason = *s;
      else
        f.fail(f.key("reason"), "must be 1.." + std::to_string(kMaxDrainReason) +
                                    " bytes of text without control characters, got " +
                                    describeJson(json(*s)));
    }
  return finish(f, std::move(r));
}

Parsed<RealWeightRequest> parseRealWeight(const json& params) {
  Fields f(params, "params");
  f.allowOnly({"service", "address", "weight"});
  RealWeightRequest r;
  readRealRef(f, r.real);
  if (auto w = f.integer("weight", true, 0, 65535)) r.weight = static_cast<uint32_t>(*w);
  return finish(f, std::move(r));
}

Parsed<LookupRequest> parseLookup(const json& params) {
  Fields f(params, "params");
  f.allowOnly({"service", "client_address", "client_port", "protocol", "port"});
  LookupRequest r;
  if (auto s = f.serviceName("service", true)) r.service = *s;
  if (auto a = f.address("client_address", true)) r.clientAddress = *a;
  if (auto p = f.integer("client_port", true, 0, 65535)) r.clientPort = static_cast<uint16_t>(*p);
  r.protocol = f.protocol("protocol", false);
  if (auto p = f.integer("port", false, 1, 65535)) r.port = static_cast<uint16_t>(*p);
  return finish(f, std::move(r));
}

Parsed<ConnQuery> parseConnList(const json& params) {
  Fields f(params, "params");
  f.allowOnly({"service", "real", "client_address", "limit"});
  ConnQuery q;
  q.service = f.serviceName("service", false);
  q.real = f.address("real", false);
  q.client = f.address("client_address", false);
  if (auto n = f.integer("limit", false, 0, kConnListMax)) q.limit = static_cast<size_t>(*n);
  return finish(f, std::move(q));
}

Parsed<ConfigText> parseConfigText(const json& params) {
  Fields f(params, "params");
  f.allowOnly({"text", "name", "path"});
  ConfigText r;
  // Earlier keelds read params.path themselves, with the daemon's
  // privileges, and quoted it in their errors: a client could read any file.
  if (params.is_object() && params.contains("path"))
    f.fail("params.path", "keeld no longer reads the file: send its text in params.text (and its name in "
                          "params.name), as keelctl config check does");
  if (auto s = f.string("text", true, "the config's text")) r.text = std::move(*s);
  r.name = "config";
  if (auto s = f.string("name", false, "a file name")) {
    if (s->empty() || s->size() > 4096 || s->find('\0') != std::string::npos)
      f.fail("params.name", "must be a file name (1..4096 bytes, no NUL), got " + describeJson(json(*s)));
    else
      r.name = *s;
  }
  return finish(f, std::move(r));
}

Parsed<ShutdownRequest> parseShutdown(const json& params) {
  Fields f(params, "params");
  f.allowOnly({"detach"});
  ShutdownRequest r;
  if (auto d = f.boolean("detach", false)) r.detach = *d;
  return finish(f, r);
}

}  // namespace keel::api

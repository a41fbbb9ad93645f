// SPDX-License-Identifier: Apache-2.0
#include "control/health/health_yaml.h"


#include "common/duration.h"
#include "common/text.h"

namespace keel {

std::string locate(std::string_view source, const YAML::Node& node) {
  std::string loc(source);
  // yaml-cpp marks are 0-based; config messages use 1-based lines.
  if (node.IsDefined() && !node.Mark().is_null()) loc += ":" + std::to_string(node.Mark().line + 1);
  return loc;
}

std::optional<int> emptyValueKeyLine(const YAML::Node& map, std::string_view key, const YAML::Node& value) {
  if (!value.IsDefined() || !value.IsNull() || value.Mark().is_null() || !map.IsDefined() || !map.IsMap())
    return std::nullopt;
  for (const auto& kv : map)
    if (kv.first.IsScalar() && kv.first.Scalar() == key && !kv.first.Mark().is_null()) return kv.first.Mark().line;
  return std::nullopt;
}

std::string locateValue(std::string_view source, const YAML::Node& map, std::string_view key,
                        const YAML::Node& value) {
  if (std::optional<int> line = emptyValueKeyLine(map, key, value))
    return std::string(source) + ":" + std::to_string(*line + 1);
  return locate(source, value);
}

namespace {

// "SOURCE:LINE: KEYPATH.key: " for the value of `key` in the block `map`.
std::string at(std::string_view source, const YAML::Node& map, const YAML::Node& n, std::string_view keyPath,
               std::string_view key) {
  return locateValue(source, map, key, n) + ": " + std::string(keyPath) + "." + std::string(key) + ": ";
}

}  // namespace

std::optional<HealthDuration> parseHealthDuration(std::string_view text) {
  // The units are the node's (common/duration.h); the range is the
  // checker's own: a day is far beyond any sane interval or timeout.
  auto d = parseDurationText(text);
  if (!d || d->count() <= 0 || *d > kMaxHealthDuration) return std::nullopt;
  return HealthDuration(*d);
}

void HealthSpecBuilder::apply(const YAML::Node& node, std::string_view source, std::string_view keyPath,
                              std::vector<std::string>& errors, std::string_view alsoKnown) {
  if (!node || node.IsNull()) return;
  if (!node.IsMap()) {
    errors.push_back(locate(source, node) + ": " + std::string(keyPath) + ": must be a mapping (type, port, path, ...)");
    return;
  }
  // `type` first, whatever its place in the mapping: changing it drops the
  // inherited keys of the old type before this layer's own apply, and this
  // layer's type-specific keys are checked against it. (A layer below that
  // changes the type again drops them, so the type in effect here is the
  // one they end up serving.)
  bool typeKnown = true;  // an unreadable type is reported once, not again per key
  if (const YAML::Node t = node["type"]; t) {
    auto type = t.IsScalar() ? parseHealthType(t.Scalar()) : std::nullopt;
    if (!type) {
      typeKnown = false;
    } else if (*type != spec_.type) {
      const HealthCheckSpec defaults;
      spec_.path = defaults.path;
      spec_.host = defaults.host;
      spec_.statusMin = defaults.statusMin;
      spec_.statusMax = defaults.statusMax;
      spec_.udpPayload = defaults.udpPayload;
      spec_.udpExpect = defaults.udpExpect;
      spec_.udpRequireReply = defaults.udpRequireReply;
      spec_.type = *type;
    }
  }
  // Where this layer says `require_reply: false`, if it does: checked
  // against the expect in effect once every key of the layer is read.
  std::optional<std::string> noReplyAt;
  for (const auto& kv : node) {
    std::string key = kv.first.as<std::string>("");
    const YAML::Node& v = kv.second;
    std::string where = at(source, node, v, keyPath, key);
    if (!v.IsScalar()) {
      // `payload:` and nothing reads as null, not as the empty payload the
      // docs allow: say how to write that.
      errors.push_back(where + "must be a scalar, got " +
                       std::string(v.IsSequence() ? "a list" : v.IsMap() ? "a mapping" : "nothing (null)") +
                       (key == "payload" && v.IsNull() ? "; an empty payload is written payload: \"\"" : ""));
      continue;
    }
    std::string text = v.Scalar();
    // A request's JSON value of the wrong type (kJsonStringTag...): its
    // text may read as the key's value, but the API's types are exact.
    const std::string& tag = v.Tag();
    const bool isString = tag == kJsonStringTag, isNumber = tag == kJsonNumberTag, isBool = tag == kJsonBoolTag;
    if (isString || isNumber || isBool) {
      // http's expect is a status (200) or a range ("200-399").
      const bool httpExpect = key == "expect" && typeKnown && spec_.type == HealthCheckSpec::Type::Http;
      std::string want = "a string";
      bool fits = isString;
      if (key == "port" || key == "rise" || key == "fall") {
        want = "a number";
        fits = isNumber;
      } else if (key == "require_reply") {
        want = "a boolean";
        fits = isBool;
      } else if (httpExpect) {
        want = "a number or a string";
        fits = isNumber || isString;
      }
      if (!fits) {
        errors.push_back(where + "must be " + want + ", got " +
                         (isString ? "the string \"" + text + "\"" : (isNumber ? "the number " : "") + text));
        continue;
      }
    }
    // The value as given: a request's JSON number as it is (as the API's
    // own params errors show one: "got 65536"), text in quotes.
    const std::string shown = isNumber ? text : "\"" + text + "\"";
    auto number = [&](uint64_t lo, uint64_t hi) -> std::optional<uint64_t> {
      auto n = parseDecimal(text);
      if (!n || *n < lo || *n > hi) {
        errors.push_back(where + "must be an integer " + std::to_string(lo) + ".." + std::to_string(hi) +
                         (leadingZero(text) ? std::string(kLeadingZeroNote) : "") + ", got " + shown);
        return std::nullopt;
      }
      return n;
    };
    auto duration = [&]() -> std::optional<HealthDuration> {
      auto d = parseHealthDuration(text);
      if (!d)
        errors.push_back(where + "must be a duration from 1ms to 1440m (one day), an integer and " +
                         std::string(kDurationUnits) + " like 500ms, 1s, 2m or 1h, got \"" + text + "\"");
      return d;
    };
    // path, host, expect and payload mean something to one or two types
    // only: set where the check is another type, they would be ignored.
    auto usedBy = [&](std::initializer_list<HealthCheckSpec::Type> types, const char* names) {
      if (!typeKnown) return false;
      for (auto t : types)
        if (t == spec_.type) return true;
      errors.push_back(where + "only " + names + " checks use " + key + " (this check is " +
                       toString(spec_.type) + ")");
      return false;
    };
    using Type = HealthCheckSpec::Type;
    if (key == "type") {
      if (!parseHealthType(text))
        errors.push_back(where + "must be one of none, tcp, http, udp, got \"" + text + "\"");
    } else if (key == "port") {
      if (auto n = number(1, 65535)) spec_.port = static_cast<uint16_t>(*n);
    } else if (key == "path") {
      if (usedBy({Type::Http}, "http")) spec_.path = text;
    } else if (key == "host") {
      if (usedBy({Type::Http}, "http")) spec_.host = text;
    } else if (key == "expect") {
      if (!usedBy({Type::Http, Type::Udp}, "http and udp")) continue;
      if (spec_.type == Type::Udp) {
        spec_.udpExpect = text;
      } else if (Status st = parseStatusRange(text, spec_.statusMin, spec_.statusMax, shown); !st) {
        errors.push_back(where + st.message());
      }
    } else if (key == "payload") {
      if (usedBy({Type::Udp}, "udp")) spec_.udpPayload = text;
    } else if (key == "require_reply") {
      if (!usedBy({Type::Udp}, "udp")) continue;
      // Exactly true or false, as every boolean in keel.yaml (config.cc):
      // YAML 1.1's yes/on/y are refused rather than guessed at.
      if (text == "true" || text == "false") {
        spec_.udpRequireReply = text == "true";
        if (!spec_.udpRequireReply) noReplyAt = where;
      } else {
        errors.push_back(where + "must be true or false, got \"" + text + "\"");
      }
    } else if (key == "interval") {
      if (auto d = duration()) spec_.interval = *d;
    } else if (key == "timeout") {
      if (auto d = duration()) spec_.timeout = *d;
    } else if (key == "rise") {
      if (auto n = number(1, 1000)) spec_.rise = static_cast<uint32_t>(*n);
    } else if (key == "fall") {
      if (auto n = number(1, 1000)) spec_.fall = static_cast<uint32_t>(*n);
    } else if (key == "source") {
      if (auto a = IpAddress::parse(text)) {
        spec_.source = *a;
      } else {
        errors.push_back(where + "must be an IP address, got \"" + text + "\"");
      }
    } else if (key == "all_down" || key == "established_on_down") {
      // The service's policy keys (parseHealthPolicy) reach here only from
      // a real's block: say where they go, not that they do not exist.
      errors.push_back(where + "a service's key, not a real's: set it in the service's health block");
    } else {
      errors.push_back(where + "unknown key (known: type, port, path, host, expect, payload, require_reply, "
                               "interval, timeout, rise, fall, source" +
                       (alsoKnown.empty() ? std::string() : ", " + std::string(alsoKnown)) + ")");
    }
  }
  // An expect needs a reply whatever require_reply says: a layer whose own
  // `false` would be ignored is told so, like a key its type does not use.
  // (A layer that sets expect under an inherited `false` overrides it, as
  // a type change drops the keys it inherits.)
  if (noReplyAt && spec_.type == HealthCheckSpec::Type::Udp && !spec_.udpExpect.empty()) {
    errors.push_back(*noReplyAt + "false has no effect with expect \"" + spec_.udpExpect +
                     "\": a udp check with expect always needs a matching reply (remove require_reply, "
                     "or expect)");
  }
}

}  // namespace keel

// SPDX-License-Identifier: Apache-2.0
// Parsing each method's `params` into a typed request. Pure functions: no
// backend, no I/O, so every rule is a row in tests/unit/api/requests_test.cc.
//
// Rules shared by every method (docs/api.md):
//  - params is an object (absent = {}); a key the method does not know is an
//    error, never ignored: a typo must not turn "drain" into a no-op.
//  - A key given twice in one object never gets here: the dispatcher's
//    JSON parser refuses it (nlohmann::json would keep the last silently).
//  - Types are exact: a weight is a JSON integer, not "100", 100.0 or true.
//  - The first error wins; its message names the key ("params.weight: must
//    be an integer 0..65535, got 70000") and `field` holds the key path.
// Whether a named service or real exists is checked afterwards, by the
// dispatcher, against the backend's snapshot.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "control/api/control_backend.h"

namespace keel::api {

template <typename T>
struct Parsed {
  std::optional<T> value;
  ApiError error;
  bool ok() const { return value.has_value(); }
  static Parsed fail(ApiError e) { return Parsed{std::nullopt, std::move(e)}; }
  static Parsed good(T v) { return Parsed{std::move(v), {}}; }
};

struct NoParams {};
struct ServiceName { std::string name; };          // service.show/remove: {"name"}
struct ServiceFilter { std::optional<std::string> service; };  // health.show, stats.get
// config.check: the file's text and the name its messages use.
struct ConfigText {
  std::string text;
  std::string name;
};
struct ShutdownRequest { bool detach = false; };

struct LookupRequest {
  std::string service;
  IpAddress clientAddress;
  uint16_t clientPort = 0;
  std::optional<uint8_t> protocol;  // must equal the service's if given
  std::optional<uint16_t> port;     // destination port; needed when the service's port is 0
};

// conn.list: the filters of a ConnQuery and its limit.
// Entries one conn.list reply lists at most: ~250 bytes of JSON each, and
// the reply is built whole on keeld's one thread.
inline constexpr size_t kConnListMax = 10000;
Parsed<ConnQuery> parseConnList(const nlohmann::json& params);

Parsed<NoParams> parseNoParams(const nlohmann::json& params);
Parsed<ServiceName> parseServiceName(const nlohmann::json& params);
Parsed<ServiceFilter> parseServiceFilter(const nlohmann::json& params);
Parsed<ServiceAddRequest> parseServiceAdd(const nlohmann::json& params);
Parsed<RealAddRequest> parseRealAdd(const nlohmann::json& params);
Parsed<RealRef> parseRealRef(const nlohmann::json& params);
Parsed<RealDrainRequest> parseRealDrain(const nlohmann::json& params, bool drain);  // reason: drain only
Parsed<RealWeightRequest> parseRealWeight(const nlohmann::json& params);
Parsed<LookupRequest> parseLookup(const nlohmann::json& params);
Parsed<ConfigText> parseConfigText(const nlohmann::json& params);
Parsed<ShutdownRequest> parseShutdown(const nlohmann::json& params);

// The params that parse back to the same request: parseServiceAdd(toParams(r))
// and parseRealAdd(toParams(r)) give r again. keeld's runtime state file
// keeps added services and reals in this form, so a restart re-validates
// them through the same parser as the request that made them.
nlohmann::json toParams(const ServiceAddRequest& request);
nlohmann::json toParams(const RealAddRequest& request);

// Same rule as keel.yaml: 1..63 of [A-Za-z0-9._-], starting alphanumeric.
bool isValidServiceName(std::string_view name);

// real.drain's `reason`: 1..kMaxDrainReason bytes of UTF-8 text without
// control characters (it is shown in a one-line table and a log record).
// The JSON parser has already refused invalid UTF-8.
inline constexpr size_t kMaxDrainReason = 200;
bool isValidDrainReason(std::string_view reason);

// A JSON value as a message shows it: 70000, "abc", true, an object, ...
// Long or odd strings are cut and escaped so a message stays one short line.
std::string describeJson(const nlohmann::json& value);

std::string_view protocolName(uint8_t proto);  // "tcp" / "udp" / "?"

}  // namespace keel::api

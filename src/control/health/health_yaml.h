// SPDX-License-Identifier: Apache-2.0
// The `health:` block of keel.yaml, for the config parser: a service sets
// the defaults and each real may override any key. Kept out of the core
// library (keel_health_yaml_dep) so the checker does not depend on YAML.
//
//   services:
//     - name: web
//       health:                 # every key optional
//         type: http            # none | tcp (default) | http | udp
//         port: 8080            # default: the service port
//         path: /healthz        # http, default "/"
//         host: www.example.com # http Host header, default the real's address
//         expect: "200-399"     # http: status or range; udp: reply prefix
//         payload: "ping"       # udp datagram (may be empty: "")
//         require_reply: true   # udp: only a reply passes (default false)
//         interval: 1s          # an integer and ms, s, m or h
//         timeout: 1s
//         rise: 2
//         fall: 3
//         source: 10.0.0.1      # bind the check's socket to this address
//       reals:
//         - address: 10.0.0.5
//           health: { port: 8081 }   # overrides only `port`
//         - address: 10.0.0.6
//           health: { type: tcp }    # another type: path, host, expect,
//                                    # payload and require_reply start again
//                                    # from their defaults
//
// A layer that changes `type` drops the type's keys (path, host, expect,
// payload, require_reply) it inherited: they describe the check below it
// (an http status range is no udp reply prefix). Its own values for them still apply and
// are checked against its type. Every other key is inherited as before.
//
// Which type uses which of those keys: path and host http only, expect http
// (status range) and udp (reply prefix), payload and require_reply udp
// only; tcp and none use none of them. A layer that sets one its type (its
// own or the inherited one) does not use is an error there; keys dropped by
// a type change are not.
//
// require_reply is `true` or `false` only. A udp expect needs a reply
// anyway, so `require_reply: true` beside one is redundant and accepted,
// and `require_reply: false` where the check (after that layer) has an
// expect would be ignored: an error at the layer that sets it, like any
// key that would be ignored. A layer that sets expect under an inherited
// `false` overrides it without error.
//
// Usage: one builder per service, copied per real; each layer's mistakes
// are appended by its own apply(), so a caller can tell them apart:
//   HealthSpecBuilder svc;  svc.apply(service["health"], "keel.yaml", "services[0].health", errors);
//   HealthSpecBuilder r = svc; r.apply(real["health"], "keel.yaml", "services[0].reals[1].health", errors);
//   HealthCheckSpec spec = r.build();  // meaningful when no apply() reported an error
#pragma once

#include <yaml-cpp/yaml.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "control/health/health_spec.h"

namespace keel {

// Where a node is, for a message: "SOURCE:LINE" (1-based), or "SOURCE" for
// a node with no place in a text (one built from an API request's JSON).
std::string locate(std::string_view source, const YAML::Node& node);
// An empty value (`key:` and nothing) is a null whose mark yaml-cpp puts at
// the next token, often a later key's line: the 0-based line of its key in
// `map` instead, for messages. nullopt when `value` is not such a value of
// `map` at `key` (or has no place in a text). keel.yaml's parser (its
// child()) and the health blocks' both place empty values through it.
std::optional<int> emptyValueKeyLine(const YAML::Node& map, std::string_view key, const YAML::Node& value);
// locate(), but an empty value of `map` at `key` at its key's line.
std::string locateValue(std::string_view source, const YAML::Node& map, std::string_view key,
                        const YAML::Node& value);

// The tags an API request's `health` object carries into YAML
// (jsonToYaml in daemon_backend.cc): each scalar says which JSON type it
// was, so the builder holds a request to the API's exact types ("rise": "2"
// and "expect": true are refused) where keel.yaml's untagged scalars are
// read by their text.
inline constexpr const char* kJsonStringTag = "tag:keel.invalid,2026:json-string";
inline constexpr const char* kJsonNumberTag = "tag:keel.invalid,2026:json-number";
inline constexpr const char* kJsonBoolTag = "tag:keel.invalid,2026:json-boolean";

class HealthSpecBuilder {
 public:
  // Overlays a `health:` mapping (null/undefined: no change). Each problem
  // appends "SOURCE:LINE: KEYPATH.key: what is wrong" to `errors` (locate()).
  // alsoKnown: keys the caller takes out of this block before (a
  // service's all_down, established_on_down), named among the known keys
  // when one is unknown.
  void apply(const YAML::Node& node, std::string_view source, std::string_view keyPath,
             std::vector<std::string>& errors, std::string_view alsoKnown = "");
  // The resolved spec: every key's mistake was reported by the apply() of
  // the layer that set it.
  const HealthCheckSpec& build() const { return spec_; }

 private:
  HealthCheckSpec spec_;
};

// The longest interval or timeout.
inline constexpr HealthDuration kMaxHealthDuration = std::chrono::hours(24);

// "500ms", "1s", "2m", "1h" (the units of every keel.yaml duration, see
// common/duration.h) -> milliseconds; nullopt if malformed, 0, or more than
// kMaxHealthDuration.
std::optional<HealthDuration> parseHealthDuration(std::string_view text);

}  // namespace keel

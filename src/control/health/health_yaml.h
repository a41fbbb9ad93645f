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
//         payload: "ping"       # udp datagram (may be empty)
//         interval: 1s          # ms, s or m suffix required
//         timeout: 1s
//         rise: 2
//         fall: 3
//         source: 10.0.0.1      # bind the check's socket to this address
//       reals:
//         - address: 10.0.0.5
//           health: { port: 8081 }   # overrides only `port`
//
// Usage: one builder per service, copied per real:
//   HealthSpecBuilder svc;  svc.apply(service["health"], "keel.yaml", "services[0].health", errors);
//   HealthSpecBuilder r = svc; r.apply(real["health"], "keel.yaml", "services[0].reals[1].health", errors);
//   std::optional<HealthCheckSpec> spec = r.build("keel.yaml", "services[0].reals[1].health", errors);
#pragma once

#include <yaml-cpp/yaml.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "control/health/health_spec.h"

namespace keel {

class HealthSpecBuilder {
 public:
  // Overlays a `health:` mapping (null/undefined: no change). Each problem
  // appends "SOURCE:LINE: KEYPATH.key: what is wrong" to `errors`.
  void apply(const YAML::Node& node, std::string_view source, std::string_view keyPath,
             std::vector<std::string>& errors);
  // The resolved spec, or nullopt (with errors appended) when `expect` does
  // not fit the final type.
  std::optional<HealthCheckSpec> build(std::string_view source, std::string_view keyPath,
                                       std::vector<std::string>& errors) const;

 private:
  HealthCheckSpec spec_;
  std::optional<std::string> expect_;  // interpreted once the type is final
  int expectLine_ = 0;
};

// "500ms", "1s", "2m" -> milliseconds; nullopt if malformed or not > 0.
std::optional<HealthDuration> parseHealthDuration(std::string_view text);

}  // namespace keel

// SPDX-License-Identifier: Apache-2.0
// What a health check is: its type and parameters (HealthCheckSpec), what it
// is run against (HealthTarget) and what one run said (HealthResult).
//
// The config layer resolves service-level defaults and per-real overrides and
// hands the health checker one fully resolved spec per real; nothing here
// knows about YAML. The parse helpers below exist so that the config layer
// and keelctl spell types and status ranges the same way.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/address.h"
#include "common/status.h"

namespace keel {

using HealthDuration = std::chrono::milliseconds;

struct HealthCheckSpec {
  enum class Type : uint8_t {
    None,  // always up, sends nothing
    Tcp,   // up if a TCP connect succeeds within the timeout
    Http,  // HTTP/1.1 GET `path` with a Host header; the status must be in [statusMin, statusMax]
    Udp,   // send `udpPayload` on a connected UDP socket; see below
  };
  Type type = Type::Tcp;
  // 0 means "the service port" (HealthTarget::port).
  uint16_t port = 0;
  // Http: request target, must start with '/'. `host` empty means the real's
  // address literal (IPv6 in brackets), with ":port" unless the port is 80.
  std::string path = "/";
  std::string host;
  uint16_t statusMin = 200;
  uint16_t statusMax = 399;
  // Udp: the datagram to send (may be empty) and the reply to expect.
  //  - ICMP port unreachable (ECONNREFUSED on the connected socket) fails.
  //  - udpExpect set: the first reply must start with these bytes; a
  //    different reply fails, and no reply within the timeout fails
  //    (udpRequireReply changes nothing then).
  //  - udpExpect empty, udpRequireReply set: any reply succeeds, no reply
  //    within the timeout fails (keepalived's UDP_CHECK require_reply).
  //  - udpExpect empty, udpRequireReply unset: any reply succeeds, and "no
  //    ICMP error within the timeout" also succeeds. UDP has no handshake,
  //    so silence is the best evidence a check of a service that never
  //    answers can get. But a powered-off real, or one behind a firewall
  //    that drops, sends no ICMP error either and so passes forever: set
  //    udpRequireReply (or udpExpect) whenever the service answers. And the
  //    real's kernel rate-limits its ICMP errors (about one a second to each
  //    balancer address, across all its checks of that real): past that a
  //    dead service's checks hear silence and pass (configuration.md).
  //  - Any other ICMP error about the datagram (host or net unreachable)
  //    fails too (IP_RECVERR).
  std::string udpPayload;
  std::string udpExpect;
  bool udpRequireReply = false;
  HealthDuration interval{1000};
  HealthDuration timeout{1000};
  uint32_t rise = 2;  // consecutive successes to go down -> up
  uint32_t fall = 3;  // consecutive failures to go up -> down
  // Source address to bind the check's socket to (e.g. the address the reals
  // route back through); unset lets the kernel choose.
  std::optional<IpAddress> source;

  bool operator==(const HealthCheckSpec&) const = default;
};

struct HealthTarget {
  std::string service;  // the service's name, carried for callbacks and listings
  IpAddress address;    // the real
  uint16_t port = 0;    // the service port, used when spec.port == 0
  HealthCheckSpec spec;

  // The port the check actually connects to.
  uint16_t checkPort() const { return spec.port != 0 ? spec.port : port; }
};

struct HealthResult {
  bool ok = false;
  // Why, in words an operator can act on: "connect: connection refused",
  // "http status 503 not in 200-399", "udp: no reply within 1s",
  // "timeout after 1s". Also set on success ("http status 200").
  std::string reason;
  // The check could not run for a reason of this host's, not the real's:
  // no socket (out of file descriptors or memory), no ephemeral port, a
  // `source` that is not (or no longer) one of this host's addresses, or
  // this host's own path to the real down (no route, or a link without
  // carrier: hostPathDown() in probe.h). Such a result is counted apart
  // (HealthStatus::notRun) and changes no state. One about the way to the
  // real (a route, a link, a `source`) does so for `fall` results in a row
  // at most; past that the checker counts it as the failure it is, so a
  // real cannot stay up unchecked behind a route withdrawn for good.
  bool local = false;
  // Local because this host ran out of what every check needs (file
  // descriptors, memory, socket buffers, ephemeral ports): never counted
  // against the real, however long it lasts. Every check of the balancer
  // fails at once then, so counting it would take every real of every
  // service down (all_reals_down everywhere) for a fault of keeld's host.
  bool exhausted = false;
};

// One thing wrong with a target's check: the key of its `health:` block it
// is about ("path", "port", ...; empty: the check as a whole, e.g. a real
// no check can reach) and what is wrong, e.g. {"path", "must start with '/'"}.
struct HealthProblem {
  std::string key;
  std::string message;
  bool operator==(const HealthProblem&) const = default;
  // "health.KEY", or "health" for a problem of the whole check.
  std::string path() const { return key.empty() ? "health" : "health." + key; }
};
// Everything validateHealthTarget refuses, key by key, so keel.yaml's errors
// can name each key's path (services[0].health.path: must start with '/').
std::vector<HealthProblem> healthTargetProblems(const HealthTarget& target);

// Checks a target before it is added: every field that is wrong is named
// by its key, and the target is rejected as a whole. `where` prefixes the
// message (e.g. "service web real 10.0.0.5: health.path: must start with
// '/'; health.rise: must be >= 1") so config errors point at their source.
Status validateHealthTarget(const HealthTarget& target, std::string_view where = {});

// "none" | "tcp" | "http" | "udp".
std::optional<HealthCheckSpec::Type> parseHealthType(std::string_view text);
const char* toString(HealthCheckSpec::Type type);

// "200" or "200-399" (inclusive, 100..599). Leaves min/max untouched on error.
// `shown`: the value as the error shows it (an API request's JSON number
// unquoted); empty: the text in quotes.
Status parseStatusRange(std::string_view text, uint16_t& statusMin, uint16_t& statusMax,
                        std::string_view shown = {});

// "1s", "250ms", "1500ms": how durations appear in reasons and listings.
std::string formatDuration(HealthDuration d);

}  // namespace keel

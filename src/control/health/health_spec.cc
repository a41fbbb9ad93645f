// SPDX-License-Identifier: Apache-2.0
#include "control/health/health_spec.h"

#include "common/text.h"

#include <optional>
#include <vector>

namespace keel {

namespace {

bool parseU16(std::string_view text, uint16_t& out) {
  const std::optional<uint64_t> value = parseDecimal(text);
  if (!value || *value > 0xffff) return false;
  out = static_cast<uint16_t>(*value);
  return true;
}

// A check judges the final response's status: among the 1xx codes only
// 101 (Switching Protocols) is one; 100, 102, 103 and the rest are interim
// responses it reads past (RFC 9110 15.2, http_probe.cc), so a range of
// those alone fails every check.
bool statusRangeCanPass(uint16_t lo, uint16_t hi) { return hi >= 200 || (lo <= 101 && 101 <= hi); }

constexpr const char* kNeverFinal =
    " can never pass: a check judges the final response's status, and of 100-199 only 101 is one (the others are "
    "interim responses it reads past)";

}  // namespace

std::optional<HealthCheckSpec::Type> parseHealthType(std::string_view text) {
  using Type = HealthCheckSpec::Type;
  if (text == "none") return Type::None;
  if (text == "tcp") return Type::Tcp;
  if (text == "http") return Type::Http;
  if (text == "udp") return Type::Udp;
  return std::nullopt;
}

const char* toString(HealthCheckSpec::Type type) {
  switch (type) {
    case HealthCheckSpec::Type::None: return "none";
    case HealthCheckSpec::Type::Tcp: return "tcp";
    case HealthCheckSpec::Type::Http: return "http";
    case HealthCheckSpec::Type::Udp: return "udp";
  }
  return "?";
}

Status parseStatusRange(std::string_view text, uint16_t& statusMin, uint16_t& statusMax, std::string_view shown) {
  const std::string value = shown.empty() ? "\"" + std::string(text) + "\"" : std::string(shown);
  uint16_t lo = 0;
  uint16_t hi = 0;
  size_t dash = text.find('-');
  bool parsed = dash == std::string_view::npos
                    ? (parseU16(text, lo) && (hi = lo, true))
                    : (parseU16(text.substr(0, dash), lo) && parseU16(text.substr(dash + 1), hi));
  if (!parsed) {
    return Status::error("http status range " + value + " is not \"CODE\" or \"MIN-MAX\" (e.g. \"200-399\")");
  }
  if (lo < 100 || hi > 599 || lo > hi) {
    return Status::error("http status range " + value + " must lie within 100-599 with MIN <= MAX");
  }
  if (!statusRangeCanPass(lo, hi)) return Status::error("http status range " + value + kNeverFinal);
  statusMin = lo;
  statusMax = hi;
  return Status::ok();
}

std::string formatDuration(HealthDuration d) {
  auto ms = d.count();
  if (ms != 0 && ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

std::vector<HealthProblem> healthTargetProblems(const HealthTarget& target) {
  const HealthCheckSpec& s = target.spec;
  std::vector<HealthProblem> problems;
  if (target.address.family() == 0) problems.push_back({"", "address is unset"});
  if (s.type != HealthCheckSpec::Type::None) {
    if (target.checkPort() == 0)
      problems.push_back({"port", "required when the service's port is 0 (the check has no port to connect to)"});
    if (s.interval.count() <= 0) problems.push_back({"interval", "must be > 0"});
    if (s.timeout.count() <= 0) problems.push_back({"timeout", "must be > 0"});
    // fe80::/10 needs an interface (a scope) to connect to, which a check
    // does not have: every check would fail with "invalid argument".
    if (target.address.isV6() && target.address.isLinkLocal())
      problems.push_back({"", "the real " + target.address.toString() +
                                  " is IPv6 link-local, which a health check cannot reach (it has no interface to "
                                  "scope it to): give the real a global address, or type: none"});
    if (s.source && s.source->family() != target.address.family()) {
      problems.push_back({"source", s.source->toString() + " is not the same family as " + target.address.toString()});
    } else if (s.source && s.source->isV6() && s.source->isLinkLocal()) {
      // Binding fe80::/10 needs a scope too: every check would fail with
      // "invalid argument", counted against the real.
      problems.push_back({"source", s.source->toString() +
                                        " is IPv6 link-local, which a check cannot bind without an interface to "
                                        "scope it to: give a global address of this host"});
    }
  }
  if (s.rise == 0) problems.push_back({"rise", "must be >= 1"});
  if (s.fall == 0) problems.push_back({"fall", "must be >= 1"});
  if (s.type == HealthCheckSpec::Type::Http) {
    if (s.path.empty() || s.path.front() != '/') problems.push_back({"path", "must start with '/'"});
    // A CR or LF would let the path or host inject header lines.
    auto hasControl = [](const std::string& v) {
      for (char c : v) {
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f || c == ' ') return true;
      }
      return false;
    };
    if (hasControl(s.path)) problems.push_back({"path", "contains spaces or control characters"});
    if (hasControl(s.host)) problems.push_back({"host", "contains spaces or control characters"});
    if (s.statusMin < 100 || s.statusMax > 599 || s.statusMin > s.statusMax) {
      problems.push_back({"expect", "http status range " + std::to_string(s.statusMin) + "-" +
                                        std::to_string(s.statusMax) + " must lie within 100-599 with MIN <= MAX"});
    } else if (!statusRangeCanPass(s.statusMin, s.statusMax)) {
      problems.push_back({"expect", "http status range " + std::to_string(s.statusMin) + "-" +
                                        std::to_string(s.statusMax) + kNeverFinal});
    }
  }
  if (s.type == HealthCheckSpec::Type::Udp && s.udpPayload.size() > 1400) {
    // Keep the probe in one unfragmented datagram on any sane path MTU.
    problems.push_back({"payload", "is " + std::to_string(s.udpPayload.size()) + " bytes, max 1400"});
  }
  if (s.type == HealthCheckSpec::Type::Udp && s.udpExpect.size() > 1400) {
    problems.push_back({"expect", "is " + std::to_string(s.udpExpect.size()) + " bytes, max 1400"});
  }
  return problems;
}

Status validateHealthTarget(const HealthTarget& target, std::string_view where) {
  const std::vector<HealthProblem> problems = healthTargetProblems(target);
  if (problems.empty()) return Status::ok();
  std::string msg(where);
  for (size_t i = 0; i < problems.size(); ++i) {
    msg += i == 0 ? (where.empty() ? "" : ": ") : "; ";
    msg += problems[i].path() + ": " + problems[i].message;
  }
  return Status::error(msg);
}

}  // namespace keel

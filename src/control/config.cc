// SPDX-License-Identifier: Apache-2.0
#include "control/config.h"
#include "common/text.h"

#include "common/duration.h"
#include "control/eal_args.h"
#include "control/eal_lcores.h"
#include "common/devargs.h"
#include "common/fd.h"
#include "control/health/health_yaml.h"
#include "keel/maglev_lookup.h"

#include <yaml-cpp/depthguard.h>
#include <yaml-cpp/eventhandler.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>
#include <tuple>

namespace keel {

std::string_view toString(DataplaneKind k) { return k == DataplaneKind::kXdp ? "xdp" : "dpdk"; }
std::string_view toString(XdpMode m) { return m == XdpMode::kNative ? "native" : "generic"; }
std::string_view toString(Forwarding f) { return f == Forwarding::kIpip ? "ipip" : "l2dsr"; }
std::string_view toString(Scheduler s) { return s == Scheduler::kMaglev ? "maglev" : "maglev-src"; }
std::string_view protocolName(uint8_t proto) {
  return proto == KEEL_PROTO_TCP ? "tcp" : proto == KEEL_PROTO_UDP ? "udp" : "?";
}

std::string MetricsConfig::listenAddress() const { return address.withPort(port); }

std::string Ipv4Prefix::toString() const {
  return address.toString() + "/" + std::to_string(length);
}

namespace {

// What the checker would refuse in a service's own check whichever real it
// runs against (no port on a port-0 service, an http path without '/').
// The checker's test also wants a real's address: given a stand-in of the
// check's source's family (or else the VIP) instead, its family test has
// nothing to find, nor its test of the real's own address; those are per
// real, and each real gets them. None when there is no address to use (a
// bad vip is reported already).
std::vector<HealthProblem> serviceHealthProblems(const HealthCheckSpec& spec, const IpAddress& vip, uint16_t port) {
  // Documentation addresses (RFC 5737, RFC 3849): global, so only the
  // check's own keys can be wrong.
  const IpAddress address = !spec.source          ? vip
                            : spec.source->isV6() ? *IpAddress::parse("2001:db8::1")
                                                  : *IpAddress::parse("192.0.2.1");
  if (spec.type == HealthCheckSpec::Type::None || !address.family()) return {};
  return healthTargetProblems(HealthTarget{"", address, port, spec});
}

// A health block's key path for a problem: "services[0].health.path", or
// the block's own for a problem of the whole check.
std::string healthKeyPath(const std::string& blockPath, const HealthProblem& p) {
  return blockPath + "." + p.path();
}

// The node a problem is at: the key's value in `block`, if the block sets
// it, else the block.
YAML::Node healthKeyNode(const YAML::Node& block, const HealthProblem& p) {
  if (!p.key.empty() && block.IsDefined() && block.IsMap())
    if (const YAML::Node v = block[p.key]; v.IsDefined()) return v;
  return block;
}

// Service names appear in logs, metrics labels and keelctl arguments:
// keep them to a charset that needs no quoting anywhere.
bool validName(std::string_view s) {
  if (s.empty() || s.size() > 63) return false;
  if (!std::isalnum(static_cast<unsigned char>(s[0]))) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
  });
}

// IFNAMSIZ is 16 including the NUL; '/', ':' and whitespace are never valid.
bool validInterfaceName(const std::string& s) {
  return !s.empty() && s.size() < 16 && std::none_of(s.begin(), s.end(), [](char c) {
    return c == '/' || c == ':' || std::isspace(static_cast<unsigned char>(c));
  });
}

// An absolute path without empty, "." and ".." components or a trailing
// slash (lexically: no symlink is read), so two spellings of one path
// compare equal.
std::string normalPath(const std::string& path) {
  std::filesystem::path p = std::filesystem::path(path).lexically_normal();
  if (!p.has_filename() && p != p.root_path()) p = p.parent_path();  // "/a/b/" is "/a/b"
  return p.string();
}

std::string quote(std::string_view s) { return "\"" + printable(s) + "\""; }

std::string describe(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Scalar: return quote(n.Scalar());
    case YAML::NodeType::Sequence: return n.size() == 0 ? "an empty list" : "a list";
    case YAML::NodeType::Map: return "a mapping";
    case YAML::NodeType::Null: return "nothing (null)";
    default: return "nothing";
  }
}

// Walks the document, collecting every error with its line and key path.
// One of a fixed set of words: its value, or else nullopt and *why says
// "must be one of a|b, got ...". Parser::choice and parseHealthPolicy
// (the file's and the API's health policy) report through it.
template <typename E>
std::optional<E> oneOf(const YAML::Node& n, std::initializer_list<std::pair<std::string_view, E>> options,
                       std::string* why) {
  if (n.IsScalar())
    for (auto& [name, value] : options)
      if (n.Scalar() == name) return value;
  std::string list;
  for (auto& [name, value] : options) list += (list.empty() ? "" : "|") + std::string(name);
  *why = "must be one of " + list + ", got " + describe(n);
  return std::nullopt;
}

class Parser {
 public:
  Parser(std::string_view source, const ConfigOptions& options)
      : source_(source), options_(options) {}

  std::vector<std::string> takeErrors() { return std::move(errors_); }
  std::vector<std::string> takeWarnings() { return std::move(warnings_); }
  std::vector<std::string> takeFileWarnings() { return std::move(fileWarnings_); }

  void error(const YAML::Node& at, const std::string& path, const std::string& what) {
    errors_.push_back(place(at) + ": " + (path.empty() ? "" : path + ": ") + what);
  }
  // host: about this host's state (a neighbour-table lookup), not the
  // file's text (ConfigResult::fileWarnings).
  void warningAtLine(int line, const std::string& path, const std::string& what) {
    warnings_.push_back(source_ + ":" + std::to_string(line) + ": " + path + ": " + what);
    fileWarnings_.push_back(warnings_.back());
  }
  void warning(const YAML::Node& at, const std::string& path, const std::string& what, bool host = false) {
    warnings_.push_back(place(at) + ": " + path + ": " + what);
    if (!host) fileWarnings_.push_back(warnings_.back());
  }
  void errorAtLine(int line, const std::string& path, const std::string& what) {
    errors_.push_back(source_ + ":" + std::to_string(line) + ": " + path + ": " + what);
  }
  size_t errorCount() const { return errors_.size(); }

  // A key written twice in any mapping of the document, health blocks
  // included, is an error at its second place. yaml-cpp keeps both entries
  // and a lookup sees the first, so the second would be silently ignored
  // (or, where a block is iterated, win). One walk over the whole tree, so
  // no parser of a block has to remember it.
  void checkDuplicateKeys(const YAML::Node& n, const std::string& path, int depth = 0) {
    if (depth > 64) return;  // an alias cannot recurse forever
    if (n.IsMap()) {
      std::map<std::string, std::pair<int, int>> firstPlace;  // line, column (1-based; 0: unknown)
      for (auto it = n.begin(); it != n.end(); ++it) {
        const YAML::Node key = it->first;  // a copy: it->first lives in a proxy the iterator returns
        if (!key.IsScalar()) continue;  // checkMap says "keys must be plain strings"
        const std::string keyPath = join(path, key.Scalar());
        const std::pair<int, int> place =
            key.Mark().is_null() ? std::pair{0, 0} : std::pair{key.Mark().line + 1, key.Mark().column + 1};
        if (auto [first, fresh] = firstPlace.emplace(key.Scalar(), place); !fresh) {
          // Both on one line (a flow mapping): the columns tell them apart.
          if (first->second.first == place.first && place.first != 0)
            error(key, keyPath, "duplicate key at column " + std::to_string(place.second) + " (first at column " +
                                    std::to_string(first->second.second) + ")");
          else
            error(key, keyPath, "duplicate key (first at line " + std::to_string(first->second.first) + ")");
        }
        checkDuplicateKeys(it->second, keyPath, depth + 1);
      }
    } else if (n.IsSequence()) {
      for (size_t i = 0; i < n.size(); ++i)
        checkDuplicateKeys(n[i], path + "[" + std::to_string(i) + "]", depth + 1);
    }
  }

  // Checks a mapping's keys: unknown keys are errors (duplicates:
  // checkDuplicateKeys, over the whole document).
  bool checkMap(const YAML::Node& n, const std::string& path,
                std::initializer_list<std::string_view> allowed) {
    if (!n.IsMap()) {
      error(n, path, "must be a mapping, got " + describe(n));
      return false;
    }
    for (auto it = n.begin(); it != n.end(); ++it) {
      const YAML::Node key = it->first;  // a copy: it->first lives in a proxy the iterator returns
      std::string k = key.IsScalar() ? key.Scalar() : "?";
      std::string keyPath = path.empty() ? k : path + "." + k;
      if (!key.IsScalar()) {
        error(key, path, "keys must be plain strings");
        continue;
      }
      if (std::find(allowed.begin(), allowed.end(), k) == allowed.end()) {
        error(key, keyPath, "unknown key (expected one of: " + commaList(allowed) + ")");
      }
    }
    return true;
  }

  // Present child, or nullopt; reports a missing required key at the parent.
  std::optional<YAML::Node> child(const YAML::Node& parent, const std::string& path,
                                  const char* key, bool required) {
    YAML::Node c = parent[key];
    if (!c.IsDefined()) {
      if (required) error(parent, join(path, key), "required key missing");
      return std::nullopt;
    }
    // An empty value's messages are placed at its key's own line (place(),
    // emptyValueKeyLine).
    if (std::optional<int> line = emptyValueKeyLine(parent, key, c))
      emptyValueLine_[{c.Mark().line, c.Mark().column}] = *line;
    return c;
  }

  // locate(), but an empty value at its key's line (child()).
  std::string place(const YAML::Node& at) const {
    if (at.IsDefined() && at.IsNull() && !at.Mark().is_null())
      if (auto it = emptyValueLine_.find({at.Mark().line, at.Mark().column}); it != emptyValueLine_.end())
        return source_ + ":" + std::to_string(it->second + 1);
    return locate(source_, at);
  }

  std::optional<std::string> scalar(const YAML::Node& n, const std::string& path,
                                    const std::string& expected) {
    if (!n.IsScalar()) {
      error(n, path, "must be " + expected + ", got " + describe(n));
      return std::nullopt;
    }
    return n.Scalar();
  }

  std::optional<uint64_t> integer(const YAML::Node& n, const std::string& path, uint64_t lo,
                                  uint64_t hi) {
    std::string what = "must be an integer " + std::to_string(lo) + ".." + std::to_string(hi);
    if (!n.IsScalar()) {
      error(n, path, what + ", got " + describe(n));
      return std::nullopt;
    }
    const std::string& s = n.Scalar();
    std::optional<uint64_t> v = parseDecimal(s);
    if (!v || *v < lo || *v > hi) {
      error(n, path, what + (leadingZero(s) ? std::string(kLeadingZeroNote) : "") + ", got " + describe(n));
      return std::nullopt;
    }
    return v;
  }

  template <typename E>
  std::optional<E> choice(const YAML::Node& n, const std::string& path,
                          std::initializer_list<std::pair<std::string_view, E>> options) {
    std::string why;
    std::optional<E> v = oneOf(n, options, &why);
    if (!v) error(n, path, why);
    return v;
  }

  std::optional<IpAddress> ip(const YAML::Node& n, const std::string& path, uint8_t family) {
    const char* what = family == KEEL_AF_INET    ? "an IPv4 address"
                       : family == KEEL_AF_INET6 ? "an IPv6 address"
                                                 : "an IPv4 or IPv6 address";
    std::optional<IpAddress> a;
    if (n.IsScalar()) a = IpAddress::parse(n.Scalar());
    if (!a || (family && a->family() != family)) {
      error(n, path, std::string("must be ") + what + ", got " + describe(n));
      return std::nullopt;
    }
    return a;
  }

  std::optional<MacAddress> mac(const YAML::Node& n, const std::string& path) {
    std::optional<MacAddress> m;
    if (n.IsScalar()) m = MacAddress::parse(n.Scalar());
    if (!m) {
      error(n, path, "must be a MAC address like \"02:00:00:00:00:01\", got " + describe(n));
      return std::nullopt;
    }
    if (m->isZero()) {
      error(n, path, "must not be the zero MAC address");
      return std::nullopt;
    }
    if (m->isGroup()) {
      error(n, path, "must be a unicast MAC address, got the group address " + m->toString());
      return std::nullopt;
    }
    return m;
  }

  // `max` is required: whoever reads the value has a width (the data plane
  // keeps idle timeouts in 32-bit seconds), and the parser is the place to
  // refuse what would not fit, not a cast further down.
  std::optional<std::chrono::milliseconds> duration(const YAML::Node& n, const std::string& path,
                                                    std::chrono::milliseconds min, std::chrono::hours max) {
    std::optional<std::chrono::milliseconds> d;
    if (n.IsScalar()) d = parseDurationText(n.Scalar());
    if (!d) {
      error(n, path, "must be a duration like 100ms, 30s, 2m or 1h, got " + describe(n));
      return std::nullopt;
    }
    // Bounds in the unit the docs give them in (configuration.md: "at least
    // 1s and at most 168h (7 days)", "at most 24h"), which a file can
    // write back as they are.
    if (*d < min) {
      error(n, path, "must be at least " + formatDurationText(min) + ", got " + describe(n));
      return std::nullopt;
    }
    if (*d > max) {
      const auto days = max.count() / 24;
      std::string note = max.count() % 24 == 0 && days > 1 ? " (" + std::to_string(days) + " days)" : "";
      error(n, path, "must be at most " + formatDurationText(max) + note + ", got " + describe(n));
      return std::nullopt;
    }
    return d;
  }

  std::optional<Ipv4Prefix> prefix4(const YAML::Node& n, const std::string& path) {
    const std::string what = "must be an IPv4 prefix like \"172.16.0.0/16\"";
    if (!n.IsScalar()) return error(n, path, what + ", got " + describe(n)), std::nullopt;
    auto p = IpPrefix::parse(n.Scalar());
    if (!p || !p->address.isV4()) {
      const bool zero = IpPrefix::lengthHasLeadingZero(n.Scalar());
      return error(n, path, what + (zero ? std::string(kLeadingZeroNote) : "") + ", got " + describe(n)), std::nullopt;
    }
    // Prefix lengths under 8 would hash sources across public space; over 30
    // leave too few sources to spread RSS on the reals.
    if (p->length < 8 || p->length > 30) {
      return error(n, path, "prefix length must be 8..30, got " + describe(n)), std::nullopt;
    }
    const std::array<uint8_t, 16> mask = p->maskBytes();
    for (int i = 0; i < 4; i++)
      if (p->address.bytes()[i] & ~mask[i])
        return error(n, path, "host bits must be zero, got " + describe(n)), std::nullopt;
    // Every address of the prefix is some flow's outer source, so each must
    // be one a tunnel may come from (node.tunnel_source_v4's rule,
    // serviceAddressProblem). The classes it refuses are whole /16s or
    // wider (but 255.255.255.255, inside 240.0.0.0/4), so one address of
    // each /16 the prefix covers (of the prefix itself from /16 on) decides
    // for all: at most 256 to look at. Its .1, so that 0.0.0.0/8 is named
    // as the block it is rather than as the unspecified address.
    const std::array<uint8_t, 16>& b = p->address.bytes();
    const uint32_t first = uint32_t{b[0]} << 24 | uint32_t{b[1]} << 16 | uint32_t{b[2]} << 8 | b[3];
    const uint32_t step = p->length >= 16 ? 0 : 1u << 16;
    const uint32_t count = p->length >= 16 ? 1 : 1u << (16 - p->length);
    for (uint32_t i = 0; i < count; ++i) {
      const uint32_t a = first + i * step + 1;
      const IpAddress probe = IpAddress::fromV4({uint8_t(a >> 24), uint8_t(a >> 16), uint8_t(a >> 8), uint8_t(a)});
      if (std::string why = serviceAddressProblem(probe, true); !why.empty())
        return error(n, path,
                     "cannot hold " + why + " (" + probe.toString() +
                         " is one: no router forwards a tunnel from it), got " + describe(n)),
               std::nullopt;
    }
    return Ipv4Prefix{p->address, p->length};
  }

  // node.hash_source_v6: an IPv6 /96 whose last 32 bits the flow hash
  // fills (encap.h), so exactly /96; every address of it is some flow's
  // outer source, so it holds none a tunnel may not come from. The classes
  // serviceAddressProblem refuses are /96 or wider (::/96, ::ffff:0:0/96,
  // fe80::/10, ff00::/8), so the network address decides.
  std::optional<IpAddress> prefix96(const YAML::Node& n, const std::string& path) {
    const std::string what = "must be an IPv6 /96 prefix like \"2001:db8:100::/96\" (the flow hash fills its last "
                             "32 bits)";
    if (!n.IsScalar()) return error(n, path, what + ", got " + describe(n)), std::nullopt;
    auto p = IpPrefix::parse(n.Scalar());
    if (!p || !p->address.isV6() || p->length != 96) return error(n, path, what + ", got " + describe(n)), std::nullopt;
    const std::array<uint8_t, 16>& b = p->address.bytes();
    if (b[12] | b[13] | b[14] | b[15]) return error(n, path, "host bits must be zero, got " + describe(n)), std::nullopt;
    if (std::string why = serviceAddressProblem(p->address, true); !why.empty())
      return error(n, path, "cannot hold " + why + " (no router forwards a tunnel from it), got " + describe(n)),
             std::nullopt;
    return p->address;
  }

  // `health:` with nothing under it: an error, as an empty node: or
  // limits: is (checkMap's words). It read as no block (no checks) while
  // `health: {}` turns tcp checks on, and the docs say any health: block
  // does: which the writer meant is not for keel to guess.
  void emptyHealth(const YAML::Node& health, const std::string& path) {
    if (health.IsNull()) error(health, path + ".health", "must be a mapping, got " + describe(health));
  }

  static std::string join(const std::string& path, const std::string& key) {
    return path.empty() ? key : path + "." + key;
  }

  void parseDocument(const YAML::Node& root, Config& cfg);

 private:
  void parseDataplane(const YAML::Node& n, DataplaneConfig& dp);
  void parseDpdk(const YAML::Node& n, DpdkConfig& d);
  void checkDpdkLcores(const YAML::Node& n, const DpdkConfig& d, const std::vector<YAML::Node>& workerNodes);
  void checkPortQueues(const std::optional<YAML::Node>& portNode, const DpdkConfig& d, const std::string& devargs);
  void checkDeviceNames(const YAML::Node& n, const std::optional<YAML::Node>& portNode, const DpdkConfig& d,
                        const std::string& devargs);
  // Where an error about dataplane.dpdk.eal_args[i] goes: that element, or
  // the list, or the dpdk block n where the file has neither; and its path.
  static YAML::Node ealArgNode(const YAML::Node& n, size_t i);
  static std::string ealArgPath(size_t i) { return "dataplane.dpdk.eal_args[" + std::to_string(i) + "]"; }
  void parseNode(const YAML::Node& n, NodeConfig& node);
  void parseLimits(const YAML::Node& n, DataplaneLimits& limits, DataplaneKind kind);
  void checkDpdkMemory(const Config& cfg);
  void parseService(const YAML::Node& n, const std::string& path, ServiceConfig& svc);
  void parseReal(const YAML::Node& n, const std::string& path, RealConfig& real);
  void parseControl(const YAML::Node& n, ControlConfig& control);
  void parseSocket(const YAML::Node& n, const std::string& path, std::string& socket, uint32_t& mode,
                   std::string& group);
  void parseMetrics(const YAML::Node& n, MetricsConfig& metrics);
  void resolveHealth(const YAML::Node& n, const std::string& path, ServiceConfig& svc);
  void validate(const YAML::Node& root, Config& cfg, const YAML::Node& servicesNode);
  void warnCheckRates(const Config& cfg, const YAML::Node& servicesNode);
  void warnAfPacketForwarding(const Config& cfg);
  // A net_af_packet port's node and interface (parseDpdk), for
  // warnAfPacketForwarding.
  struct AfPacketPort {
    YAML::Node node;
    std::string iface;
  };
  std::optional<AfPacketPort> afPacketPort_;

  std::string source_;
  const ConfigOptions& options_;
  std::vector<std::string> errors_;
  std::vector<std::string> fileWarnings_;
  std::vector<std::string> warnings_;
  bool interfaceValid_ = false;
  // node: keys the file gives, valid or not: a service that needs one which
  // is given but wrong gets no second error saying it is missing.
  std::set<std::string> nodeKeysGiven_;
  // (line, column) of an empty value's mark -> its key's line (child()).
  std::map<std::pair<int, int>, int> emptyValueLine_;
  // dataplane.dpdk, once read (checkDpdkMemory).
  std::optional<YAML::Node> dpdkNode_;
  // The host's hugepages, read once for a file (options_.hugepages).
  std::optional<std::vector<HugepageSize>> hugepages_;
};

void Parser::parseDocument(const YAML::Node& root, Config& cfg) {
  if (!root.IsDefined() || root.IsNull()) {
    errors_.push_back(source_ + ": file is empty; expected a mapping with dataplane, node and services");
    return;
  }
  checkDuplicateKeys(root, "");
  if (!checkMap(root, "", {"dataplane", "node", "limits", "control", "metrics", "services"})) return;

  if (auto n = child(root, "", "dataplane", true)) parseDataplane(*n, cfg.dataplane);
  if (auto n = child(root, "", "node", false)) parseNode(*n, cfg.node);
  if (auto n = child(root, "", "limits", false)) parseLimits(*n, cfg.limits, cfg.dataplane.kind);
  checkDpdkMemory(cfg);
  if (auto n = child(root, "", "control", false)) parseControl(*n, cfg.control);
  if (auto n = child(root, "", "metrics", false)) parseMetrics(*n, cfg.metrics);
  YAML::Node servicesNode;
  if (auto n = child(root, "", "services", false)) {
    servicesNode = *n;
    cfg.servicesListGiven = n->IsSequence();
    if (n->IsNull()) {
      // `services:` with nothing under it: a balancer with no services yet.
    } else if (!n->IsSequence()) {
      error(*n, "services", "must be a list of services, got " + describe(*n));
    } else {
      for (size_t i = 0; i < n->size(); ++i) {
        ServiceConfig svc;
        parseService((*n)[i], "services[" + std::to_string(i) + "]", svc);
        cfg.services.push_back(std::move(svc));
      }
    }
  }
  validate(root, cfg, servicesNode);
}

void Parser::parseDataplane(const YAML::Node& n, DataplaneConfig& dp) {
  if (!checkMap(n, "dataplane", {"kind", "interface", "xdp_mode", "dpdk", "upkeep_interval"})) return;
  if (auto k = child(n, "dataplane", "upkeep_interval", false))
    if (auto d = duration(*k, "dataplane.upkeep_interval", DataplaneConfig::kMinUpkeepInterval,
                          DataplaneConfig::kMaxUpkeepInterval))
      dp.upkeepInterval = *d;
  bool kindKnown = false;
  if (auto k = child(n, "dataplane", "kind", true)) {
    if (auto v = choice<DataplaneKind>(*k, "dataplane.kind",
                                       {{"xdp", DataplaneKind::kXdp}, {"dpdk", DataplaneKind::kDpdk}})) {
      dp.kind = *v;
      kindKnown = true;
      if (options_.kindBuilt && !options_.kindBuilt(*v))
        error(*k, "dataplane.kind", std::string(toString(*v)) + " is not built into this keeld");
    }
  }
  const bool dpdk = kindKnown && dp.kind == DataplaneKind::kDpdk;
  if (auto k = child(n, "dataplane", "dpdk", dpdk)) {
    if (kindKnown && !dpdk)
      error(*k, "dataplane.dpdk", "only with kind: dpdk");
    else if (dpdk) {
      parseDpdk(*k, dp.dpdk);
      dpdkNode_ = *k;
    }
  }
  if (auto k = child(n, "dataplane", "xdp_mode", false)) {
    if (dpdk) {
      error(*k, "dataplane.xdp_mode", "only with kind: xdp");
    } else if (auto v = choice<XdpMode>(*k, "dataplane.xdp_mode",
                                        {{"native", XdpMode::kNative}, {"generic", XdpMode::kGeneric}})) {
      dp.xdpMode = *v;
    }
  }
  // xdp attaches to `interface`. dpdk reads it only to resolve l2dsr reals'
  // MACs; it defaults to the exception interface, which keeld itself
  // creates (so it need not exist before keeld starts).
  auto k = child(n, "dataplane", "interface", !dpdk && kindKnown);
  if (!k) {
    if (dpdk && !dp.dpdk.exceptionInterface.empty()) {
      dp.interface = dp.dpdk.exceptionInterface;
      interfaceValid_ = true;
    }
    return;
  }
  if (auto s = scalar(*k, "dataplane.interface", "an interface name")) {
    if (!validInterfaceName(*s)) {
      error(*k, "dataplane.interface", "must be an interface name (1..15 characters, no '/', ':' or spaces), got " + describe(*k));
    } else if (options_.interfaceExists && !(dpdk && *s == dp.dpdk.exceptionInterface) &&
               !options_.interfaceExists(*s)) {
      error(*k, "dataplane.interface", "no such network interface " + quote(*s));
    } else {
      dp.interface = *s;
      interfaceValid_ = true;
    }
  }
}

void Parser::parseDpdk(const YAML::Node& n, DpdkConfig& d) {
  const std::string path = "dataplane.dpdk";
  if (!checkMap(n, path, {"eal_args", "port", "workers", "rx_descriptors", "tx_descriptors",
                          "mbufs_per_worker", "exception_interface", "idle_sleep_us", "mtu",
                          "promiscuous"}))
    return;
  std::optional<YAML::Node> ealNode = child(n, path, "eal_args", false);
  if (auto k = ealNode) {
    if (!k->IsSequence()) {
      error(*k, path + ".eal_args", "must be a list of strings, got " + describe(*k));
    } else {
      for (size_t i = 0; i < k->size(); ++i)
        if (auto s = scalar((*k)[i], ealArgPath(i), "a string"))
          d.ealArgs.push_back(*s);
      // What EAL's start would refuse of them (eal_args.h), at the argument.
      if (d.ealArgs.size() == k->size())
        for (const EalArgProblem& p : checkEalArgs(d.ealArgs)) error(ealArgNode(n, p.arg), ealArgPath(p.arg), p.message);
    }
  }
  std::optional<YAML::Node> portNode = child(n, path, "port", true);
  if (auto k = portNode) {
    if (auto s = scalar(*k, path + ".port", "a PCI address or vdev string")) {
      if (s->empty() || std::any_of(s->begin(), s->end(), [](char c) {
            return std::isspace(static_cast<unsigned char>(c));
          }))
        error(*k, path + ".port",
              "must be a PCI address like \"0000:03:00.0\" or a vdev like "
              "\"net_af_packet0,iface=eth1\" (no spaces), got " + describe(*k));
      else
        d.port = *s;
      // A vdev on a kernel interface (net_af_packet, net_af_xdp):
      // that interface must exist (a host check), or the driver's probe
      // fails at start with an errno that does not say why.
      if (const std::string iface = vdevInterface(d.port);
          !iface.empty() && options_.interfaceExists && !options_.interfaceExists(iface))
        error(*k, path + ".port", "no such network interface " + quote(iface) + " (its iface=)");
      // A NIC by PCI address: the device must be on this host, or EAL's
      // probe fails at start, after a restart has stopped the old keeld.
      if (const std::string address = pciAddress(d.port); !address.empty() && options_.pciDeviceExists) {
        if (!options_.pciDeviceExists(address)) {
          error(*k, path + ".port",
                "no PCI device " + address + " on this host (`lspci -D` lists them; bind the NIC to vfio-pci, "
                "docs/dpdk.md)");
        } else if (options_.pciDriver) {
          static const std::set<std::string> kDpdkDrivers = {"vfio-pci", "uio_pci_generic", "igb_uio",
                                                             "mlx5_core", "mlx4_core"};
          if (const std::string driver = options_.pciDriver(address); !kDpdkDrivers.count(driver))
            warning(*k, path + ".port",
                    "PCI device " + address + " is bound to " +
                        (driver.empty() ? std::string("no driver") : "the kernel's " + driver) +
                        ", which EAL cannot probe: bind it to vfio-pci (driverctl set-override " + address +
                        " vfio-pci; docs/dpdk.md, \"Dedicating a NIC\") before keeld starts",
                    /*host=*/true);
        }
      }
    }
  }
  std::vector<YAML::Node> workerNodes;  // of d.workers, for checkDpdkLcores
  if (auto k = child(n, path, "workers", true)) {
    // RTE_MAX_LCORE is 128 in Debian's build; lcore 0 is EAL's main lcore
    // by default, but -l/--main-lcore may move it, so the data plane checks
    // the final assignment against EAL at start.
    if (!k->IsSequence() || k->size() == 0) {
      error(*k, path + ".workers", "must be a non-empty list of EAL lcore ids, got " + describe(*k));
    } else {
      std::set<uint64_t> seen;
      for (size_t i = 0; i < k->size(); ++i) {
        const YAML::Node w = (*k)[i];
        std::string wpath = path + ".workers[" + std::to_string(i) + "]";
        if (auto v = integer(w, wpath, 0, 127)) {
          if (!seen.insert(*v).second) {
            error(w, wpath, "duplicate lcore " + std::to_string(*v));
          } else {
            d.workers.push_back(static_cast<unsigned>(*v));
            workerNodes.push_back(w);
          }
        }
      }
    }
  }
  // The port's own devargs, or its --vdev's in eal_args (portDevargs).
  const std::string devargs = portDevargs(d.port, d.ealArgs);
  checkDeviceNames(n, portNode, d, devargs);
  if (options_.hugepages) {
    hugepages_ = options_.hugepages();
    if (const std::string why = hugepageProblem(d.ealArgs, *hugepages_, /*freeOnly=*/false); !why.empty())
      error(ealNode ? *ealNode : n, path + ".eal_args", why);
  }
  checkPortQueues(portNode, d, devargs);
  if (auto k = child(n, path, "rx_descriptors", false))
    if (auto v = integer(*k, path + ".rx_descriptors", 64, 32768)) d.rxDescriptors = *v;
  if (auto k = child(n, path, "tx_descriptors", false))
    if (auto v = integer(*k, path + ".tx_descriptors", 64, 32768)) d.txDescriptors = *v;
  std::optional<YAML::Node> mbufsNode = child(n, path, "mbufs_per_worker", false);
  if (mbufsNode)
    if (auto v = integer(*mbufsNode, path + ".mbufs_per_worker", 512, 1u << 22)) d.mbufsPerWorker = *v;
  if (auto k = child(n, path, "exception_interface", false)) {
    if (auto s = scalar(*k, path + ".exception_interface", "an interface name")) {
      // Empty: no exception path (what is not ours is dropped, still counted).
      if (!s->empty() && !validInterfaceName(*s))
        error(*k, path + ".exception_interface",
              "must be an interface name (1..15 characters, no '/', ':' or spaces) or \"\", got " +
                  describe(*k));
      // net_tap creates the interface; one of that name that is no tap
      // (the port's own, a NIC, a bridge) fails the driver's probe at
      // start with an errno that does not say why. A tap may be a running
      // keeld's own (a check before its reload), so it passes.
      else if (!s->empty() && options_.interfaceExists && options_.interfaceIsTap &&
               options_.interfaceExists(*s) && !options_.interfaceIsTap(*s))
        error(*k, path + ".exception_interface",
              "an interface named " + quote(*s) +
                  " exists and is no tap device: keeld creates the exception interface itself, so name one "
                  "that does not exist");
      else
        d.exceptionInterface = *s;
    }
  }
  // A port that takes every frame away from the kernel (a NIC bound to
  // DPDK, net_af_xdp on its queues) and no exception path: the host is dark
  // on it (no ARP/ND answers, no ping, no own TCP), and health checks and
  // l2dsr MAC lookups through that interface fail, so every checked service
  // drops. Valid (a node reached another way), so a warning. net_af_packet
  // leaves the kernel its copy; other vdevs (net_pcap, net_ring, ...) are
  // test devices.
  if (portNode && !d.port.empty() && d.exceptionInterface.empty() &&
      (isAfXdpPort(d.port) || isPciPort(d.port)))
    warning(*portNode, path + ".port",
            "no exception_interface: this port takes its frames from the kernel, so the host cannot answer "
            "ARP/ND, pings or its own traffic on it, and health checks and l2dsr MAC lookups through it fail "
            "(every checked service then drops); set exception_interface (docs/dpdk.md, \"The exception "
            "path\") unless this node is reached another way");
  // net_af_packet leaves the kernel its copy of every frame: an exception
  // interface beside it hands the host's traffic to the kernel a second
  // time (pings answered twice), docs/dpdk.md.
  if (portNode && !d.exceptionInterface.empty() && isAfPacketPort(d.port))
    warning(*portNode, path + ".port",
            "a net_af_packet port leaves the kernel its own copy of every frame, so exception_interface " +
                quote(d.exceptionInterface) +
                " hands the host's traffic to the kernel a second time (duplicate answers); leave it empty and "
                "set dataplane.interface to the port's interface (docs/dpdk.md)");
  // ... and one whose kernel forwards: warnAfPacketForwarding, once the
  // VIPs are read.
  if (portNode && isAfPacketPort(devargs))
    afPacketPort_ = AfPacketPort{*portNode, vdevInterface(devargs)};
  if (auto k = child(n, path, "idle_sleep_us", false))
    if (auto v = integer(*k, path + ".idle_sleep_us", 0, 100000)) d.idleSleepUs = *v;
  if (auto k = child(n, path, "mtu", false))
    if (auto v = integer(*k, path + ".mtu", DpdkConfig::kMinMtu, DpdkConfig::kMaxMtu)) d.mtu = *v;
  if (auto k = child(n, path, "promiscuous", false))
    if (auto v = choice<bool>(*k, path + ".promiscuous", {{"true", true}, {"false", false}})) d.promiscuous = *v;
  checkDpdkLcores(n, d, workerNodes);
  // The one pool serves every worker's full RX and TX rings, its two
  // bursts in flight and its lcore's mempool cache (256, flushed at 384),
  // and with an exception interface the tap's RX ring (512 per worker,
  // filled at start): a smaller pool starves RX (rx_no_mbuf). Checked with
  // the default too.
  const bool afXdp = isAfXdpPort(devargs);
  const uint64_t rx = afXdp ? std::max<uint64_t>(d.rxDescriptors, DpdkConfig::kAfXdpFillBuffers) : d.rxDescriptors;
  const uint64_t need = rx + d.txDescriptors + DpdkConfig::kMbufSlackPerWorker +
                        (d.exceptionInterface.empty() ? 0 : DpdkConfig::kTapDescriptors);
  if (d.mbufsPerWorker < need)
    error(mbufsNode ? *mbufsNode : n, path + ".mbufs_per_worker",
          "must be at least " +
              std::string(afXdp ? "max(rx_descriptors, " + std::to_string(DpdkConfig::kAfXdpFillBuffers) +
                                      ": net_af_xdp's fill ring)"
                                : "rx_descriptors") +
              " + tx_descriptors + " + std::to_string(DpdkConfig::kMbufSlackPerWorker) +
              " (bursts in flight, mempool cache)" +
              (d.exceptionInterface.empty() ? "" : " + " + std::to_string(DpdkConfig::kTapDescriptors) + " (the exception interface's RX ring)") +
              " = " + std::to_string(need) + ", got " +
              (mbufsNode ? describe(*mbufsNode) : std::to_string(d.mbufsPerWorker) + " (the default)"));
}

// The names EAL takes at its start (each --vdev of eal_args) and at the
// port's probe (the port, unless a --vdev made it or it is a PCI address,
// which pciDeviceExists looks for), against the drivers EAL would load:
// DPDK's and the -d paths of eal_args. A misspelt vdev is refused here, with
// the file's line, where otherwise --check-config passed it and the start
// failed after a restart had stopped the old keeld.
YAML::Node Parser::ealArgNode(const YAML::Node& n, size_t i) {
  const YAML::Node eal = n["eal_args"];
  return eal.IsSequence() && i < eal.size() ? eal[i] : (eal.IsDefined() ? eal : n);
}

void Parser::checkDeviceNames(const YAML::Node& n, const std::optional<YAML::Node>& portNode, const DpdkConfig& d,
                              const std::string& devargs) {
  if (!options_.dpdkDeviceNames || !portNode || d.port.empty()) return;
  const std::vector<std::pair<size_t, std::string>> plugins = ealOptionValues(d.ealArgs, "-d");
  const std::vector<std::pair<size_t, std::string>> vdevs = ealOptionValues(d.ealArgs, "--vdev");
  std::vector<std::string> pluginPaths, names;
  for (const auto& [i, p] : plugins) pluginPaths.push_back(p);
  for (const auto& [i, v] : vdevs) names.push_back(v);
  // A port a --vdev makes (portDevargs found it) is that --vdev's name.
  const bool checkPort = devargs == d.port && !isPciPort(d.port);
  if (checkPort) names.push_back(d.port);
  if (pluginPaths.empty() && names.empty()) return;
  const std::optional<DeviceNameCheck> r = options_.dpdkDeviceNames(pluginPaths, names);
  if (!r || r->pluginErrors.size() != plugins.size() || r->known.size() != names.size()) return;
  for (size_t j = 0; j < plugins.size(); ++j)
    if (!r->pluginErrors[j].empty())
      error(ealArgNode(n, plugins[j].first), ealArgPath(plugins[j].first),
            "-d " + quote(plugins[j].second) + ": EAL cannot load this driver path: " + r->pluginErrors[j]);
  for (size_t j = 0; j < vdevs.size(); ++j)
    if (!r->known[j])
      error(ealArgNode(n, vdevs[j].first), ealArgPath(vdevs[j].first),
            "--vdev " + quote(vdevs[j].second) + ": " + unknownDeviceName(deviceName(vdevs[j].second)));
  if (checkPort && !r->known.back())
    error(*portNode, "dataplane.dpdk.port", unknownDeviceName(deviceName(d.port)));
}

// A kernel vdev's queue count is in its devargs (net_af_packet's qpairs=,
// net_af_xdp's queue_count=, both 1 when not given), and each worker reads
// one queue: fewer queues than workers fail the start (the device lacks
// them), and more lose flows: net_af_packet's fanout gives the queues no
// worker reads theirs, and net_af_xdp opens sockets only on the queues the
// workers read, so the NIC's RSS onto the others hands their frames to the
// kernel (libxdp's program passes what no socket takes). Both are refused
// here, with the file's line, so --check-config and a reload catch them;
// the start refuses net_af_packet's again (setupPort() in the DPDK plane,
// from the pairs the driver opened).
void Parser::checkPortQueues(const std::optional<YAML::Node>& portNode, const DpdkConfig& d,
                             const std::string& devargs) {
  if (!portNode || d.port.empty() || d.workers.empty() || !isKernelVdev(devargs)) return;
  const std::string where = devargs == d.port ? "" : " (its --vdev in eal_args)";
  const bool afPacket = isAfPacketPort(devargs);
  const char* key = afPacket ? "qpairs" : "queue_count";
  const std::optional<std::string> given = devargValue(devargs, key);
  uint64_t queues = 1;
  if (given) {
    // No leading zero: DPDK may read "010" as octal where keel would count 10.
    queues = parseDecimal(*given).value_or(0);
    if (queues == 0) {
      error(*portNode, "dataplane.dpdk.port",
            std::string(key) + "= must be a positive number of queues, got " + quote(*given) + where);
      return;
    }
  }
  const size_t workers = d.workers.size();
  const std::string have = (given ? std::string(key) + "=" + *given : "no " + std::string(key) + "= (1 queue)") + where;
  if (queues != workers) {
    std::string why;
    if (queues > workers)
      why = afPacket ? ", and the kernel spreads flows over every queue pair, so those of the " +
                           std::to_string(queues - workers) + " no worker reads would be lost"
                     : ", and the frames the NIC puts on the " + std::to_string(queues - workers) +
                           " queues no worker reads would go to the kernel, not to keel";
    error(*portNode, "dataplane.dpdk.port",
          have + " for " + std::to_string(workers) + (workers == 1 ? " worker" : " workers") +
              ": each worker reads one queue" + why + "; give " + key + "=" + std::to_string(workers));
  }
}

// What EAL would refuse at start about the workers' lcores, said now
// (`keeld --check-config`, every load): a worker that is not an lcore the
// EAL arguments start, or that is the main lcore, where keeld's own thread
// runs; an lcore option EAL cannot read; the main lcore not among the
// lcores; with host checks, CPUs the host does not have online. The data
// plane checks the same against EAL itself when it starts.
void Parser::checkDpdkLcores(const YAML::Node& n, const DpdkConfig& d, const std::vector<YAML::Node>& workerNodes) {
  const std::string path = "dataplane.dpdk";
  const YAML::Node eal = n["eal_args"];
  // An element that is no string (reported already) would shift the
  // indices: nothing to check against then.
  if (eal.IsDefined() && (!eal.IsSequence() || eal.size() != d.ealArgs.size())) return;
  EalLcoresResult r = readEalLcores(d.ealArgs);
  if (!r.error.empty()) {
    error(ealArgNode(n, r.arg), ealArgPath(r.arg), r.error);
    return;
  }
  if (!r.warning.empty()) {  // keel cannot tell; EAL will
    warning(ealArgNode(n, r.arg), ealArgPath(r.arg), r.warning);
    return;
  }
  std::optional<EalLcores> e = r.lcores;
  if (!e && options_.allowedCpus) e = EalLcores::fromCpus(options_.allowedCpus(), r.mainLcore);
  if (!e || e->lcores.empty()) return;  // no lcore option, and no host to ask
  const std::string given =
      r.lcores ? "eal_args give " + e->source
               : "no -l, -c or --lcores in eal_args: one lcore per CPU this process may run on, " +
                     EalLcores::listText(e->lcores);
  const YAML::Node at = eal.IsDefined() ? eal : n;
  if (!e->lcores.count(e->mainLcore)) {
    error(at, path + ".eal_args",
          "the main lcore " + std::to_string(e->mainLcore) + " (--main-lcore) is not one EAL starts (" + given +
              "): EAL would refuse it");
    return;
  }
  for (size_t i = 0; i < d.workers.size() && i < workerNodes.size(); ++i) {
    const unsigned lc = d.workers[i];
    const std::string wpath = path + ".workers[" + std::to_string(i) + "]";
    if (!e->lcores.count(lc))
      error(workerNodes[i], wpath,
            "lcore " + std::to_string(lc) + " is not one EAL starts (" + given +
                "): add it to -l or --lcores in eal_args");
    else if (lc == e->mainLcore)
      error(workerNodes[i], wpath,
            "lcore " + std::to_string(lc) + " is EAL's main lcore (" +
                (e->mainGiven ? std::string("--main-lcore") : "the lowest of " + EalLcores::listText(e->lcores)) +
                "), where keeld's own thread runs: a worker needs an lcore of its own");
  }
  if (!r.lcores || !options_.onlineCpus) return;  // CPUs from the host itself, or no host to ask
  const std::set<unsigned> online = options_.onlineCpus();
  if (online.empty()) return;  // unknown
  std::set<unsigned> missing;
  for (unsigned c : e->cpus)
    if (!online.count(c)) missing.insert(c);
  if (!missing.empty()) {
    error(at, path + ".eal_args",
          e->source + " runs lcores on CPU " + EalLcores::listText(missing) + ", not online on this host (online: " +
              EalLcores::listText(online) + "): EAL would refuse it");
    return;
  }
  const std::set<unsigned> cpuset = options_.cpusetCpus ? options_.cpusetCpus() : std::set<unsigned>{};
  for (unsigned c : e->cpus)
    if (!cpuset.empty() && !cpuset.count(c)) missing.insert(c);
  if (!missing.empty())
    error(at, path + ".eal_args",
          e->source + " runs lcores on CPU " + EalLcores::listText(missing) +
              ", outside the CPUs this process's cpuset cgroup gives it (" + EalLcores::listText(cpuset) +
              ": systemd's AllowedCPUs=, a container's CPU set): EAL would abort setting their affinity");
}

void Parser::parseNode(const YAML::Node& n, NodeConfig& node) {
  if (!checkMap(n, "node", {"tunnel_source_v4", "tunnel_source_v6", "next_hop_mac", "local_mac",
                            "hash_source_v4", "hash_source_v6", "udp_idle_timeout", "tcp_idle_timeout", "icmp_too_big_rate",
                            "icmp_too_big_client_rate", "tunnel_mtu", "conntrack_insert_rate"}))
    return;
  for (const auto& kv : n)
    if (kv.first.IsScalar()) nodeKeysGiven_.insert(kv.first.Scalar());
  // A tunnel's outer source: routers drop one that is unspecified,
  // multicast, broadcast, loopback or link-local (martians, RFC 1122
  // 3.2.1.3, RFC 4291 2.5.6), so each tunnelled packet would be lost: the
  // rules of a VIP's address.
  for (const auto& [key, family, target] :
       {std::tuple{"tunnel_source_v4", KEEL_AF_INET, &node.tunnelSourceV4},
        std::tuple{"tunnel_source_v6", KEEL_AF_INET6, &node.tunnelSourceV6}})
    if (auto k = child(n, "node", key, false)) {
      const std::string path = std::string("node.") + key;
      std::optional<IpAddress> a = ip(*k, path, family);
      if (std::string why = a ? serviceAddressProblem(*a, true) : ""; !why.empty())
        error(*k, path, "cannot be " + why + " (no router forwards a tunnel from it), got " + a->toString());
      else
        *target = a;
    }
  if (auto k = child(n, "node", "next_hop_mac", false)) node.nextHopMac = mac(*k, "node.next_hop_mac");
  if (auto k = child(n, "node", "local_mac", false)) node.localMac = mac(*k, "node.local_mac");
  if (auto k = child(n, "node", "hash_source_v4", false))
    node.hashSourceV4 = prefix4(*k, "node.hash_source_v4");
  if (auto k = child(n, "node", "hash_source_v6", false)) node.hashSourceV6 = prefix96(*k, "node.hash_source_v6");
  // The data plane keeps idle timeouts in whole seconds (32 bits). At most
  // 7 days: longer than the kernel's own longest conntrack default (TCP
  // established, 5 days), so anything above is a unit typo (900m for 900s
  // is still allowed; 71582789m would have wrapped to 44 s).
  using std::chrono::seconds;
  constexpr std::chrono::hours kMaxIdle(7 * 24);
  if (auto k = child(n, "node", "udp_idle_timeout", false))
    if (auto d = duration(*k, "node.udp_idle_timeout", seconds(1), kMaxIdle)) node.udpIdleTimeout = *d;
  if (auto k = child(n, "node", "tcp_idle_timeout", false))
    if (auto d = duration(*k, "node.tcp_idle_timeout", seconds(1), kMaxIdle)) node.tcpIdleTimeout = *d;
  if (auto k = child(n, "node", "icmp_too_big_rate", false))
    if (auto v = integer(*k, "node.icmp_too_big_rate", 0, 1000000)) node.icmpTooBigRate = *v;
  if (auto k = child(n, "node", "icmp_too_big_client_rate", false))
    if (auto v = integer(*k, "node.icmp_too_big_client_rate", 0, 1000000)) node.icmpTooBigClientRate = *v;
  if (auto k = child(n, "node", "tunnel_mtu", false))
    if (auto v = integer(*k, "node.tunnel_mtu", NodeConfig::kMinTunnelMtu, NodeConfig::kMaxTunnelMtu))
      node.tunnelMtu = *v;
  if (auto k = child(n, "node", "conntrack_insert_rate", false))
    if (auto v = integer(*k, "node.conntrack_insert_rate", 0, 100000000)) node.conntrackInsertRate = *v;
}

// The DPDK plane's mbufs and connection tables against the memory EAL can
// hand out (ealMemoryLimit): a start with less than they take fails for
// certain (the pool, or a worker's table, cannot be allocated), after a
// restart has stopped the old keeld. The need is a floor (no EAL or
// mempool overhead), so a file refused here cannot start.
void Parser::checkDpdkMemory(const Config& cfg) {
  const DpdkConfig& d = cfg.dataplane.dpdk;
  if (cfg.dataplane.kind != DataplaneKind::kDpdk || !dpdkNode_ || !options_.dpdkMemoryFloor || d.workers.empty() ||
      !errors_.empty())
    return;
  std::string what;
  const std::optional<uint64_t> limit = ealMemoryLimit(d.ealArgs, hugepages_.value_or(std::vector<HugepageSize>{}), &what);
  if (!limit) return;
  const EalMemoryNeed need = options_.dpdkMemoryFloor(static_cast<uint32_t>(d.workers.size()), d.mbufsPerWorker,
                                                      d.mtu, cfg.limits.connTableSize);
  if (need.total() <= *limit) return;
  auto mib = [](uint64_t b) { return std::to_string((b + (1u << 20) - 1) >> 20) + " MiB"; };
  error(*dpdkNode_, "dataplane.dpdk",
        "the DPDK plane needs at least " + mib(need.total()) + " of EAL memory (" + mib(need.mbufBytes) + " for " +
            std::to_string(uint64_t{d.mbufsPerWorker} * d.workers.size()) + " mbufs: mbufs_per_worker x workers; " +
            mib(need.connBytes) + " for the connection tables of limits.conn_table_size " +
            std::to_string(cfg.limits.connTableSize) + "), more than EAL has (" + what +
            "): give EAL more (-m, hugepages) or lower limits.conn_table_size or mbufs_per_worker (docs/dpdk.md, "
            "\"Hugepages\")");
}

void Parser::parseLimits(const YAML::Node& n, DataplaneLimits& limits, DataplaneKind kind) {
  if (!checkMap(n, "limits", {"max_services", "max_reals", "conn_table_size"})) return;
  // Upper bounds keep BPF map allocations within what one node can hold.
  if (auto k = child(n, "limits", "max_services", false))
    if (auto v = integer(*k, "limits.max_services", 1, 65536)) limits.maxServices = *v;
  if (auto k = child(n, "limits", "max_reals", false))
    if (auto v = integer(*k, "limits.max_reals", 1, 1u << 22)) limits.maxBackends = *v;
  if (auto k = child(n, "limits", "conn_table_size", false))
    if (auto v = integer(*k, "limits.conn_table_size", 1, 1u << 28)) {
      // XDP's table is one kernel LRU hash map, whose bucket array (a
      // power of two, 16 bytes a bucket) must stay under 4 GiB: more than
      // 2^27 entries fail its creation at start with E2BIG.
      if (kind == DataplaneKind::kXdp && *v > kXdpMaxConnTable)
        error(*k, "limits.conn_table_size",
              "XDP's connection table is a kernel hash map of at most " + std::to_string(kXdpMaxConnTable) +
                  " (2^27) entries (its creation fails past that), got " + describe(*k));
      else
        limits.connTableSize = *v;
    }
}

void Parser::parseService(const YAML::Node& n, const std::string& path, ServiceConfig& svc) {
  if (n.IsDefined() && !n.Mark().is_null()) svc.line = n.Mark().line + 1;
  if (!checkMap(n, path, {"name", "vip", "port", "protocol", "forwarding", "scheduler",
                          "ring_size", "reals", "health"}))
    return;
  if (auto k = child(n, path, "name", true)) {
    if (auto s = scalar(*k, path + ".name", "a name")) {
      if (validName(*s)) {
        svc.name = *s;
      } else {
        error(*k, path + ".name",
              "must be 1..63 characters of letters, digits, '-', '_' or '.', starting with a "
              "letter or digit, got " + describe(*k));
      }
    }
  }
  if (auto k = child(n, path, "vip", true))
    if (auto a = ip(*k, path + ".vip", 0)) {
      if (std::string why = serviceAddressProblem(*a, true); !why.empty())
        error(*k, path + ".vip", "cannot be " + why + ", got " + a->toString());
      else
        svc.vip = *a;
    }
  bool portKnown = false, protocolKnown = false;
  if (auto k = child(n, path, "port", true))
    if (auto v = integer(*k, path + ".port", 0, 65535)) {
      svc.port = static_cast<uint16_t>(*v);
      portKnown = true;
    }
  if (auto k = child(n, path, "protocol", true))
    if (auto v = choice<uint8_t>(*k, path + ".protocol",
                                 {{"tcp", uint8_t{KEEL_PROTO_TCP}}, {"udp", uint8_t{KEEL_PROTO_UDP}}})) {
      svc.protocol = *v;
      protocolKnown = true;
    }
  svc.portAndProtocolKnown = portKnown && protocolKnown;
  if (auto k = child(n, path, "forwarding", false))
    if (auto v = choice<Forwarding>(*k, path + ".forwarding",
                                    {{"ipip", Forwarding::kIpip}, {"l2dsr", Forwarding::kL2dsr}}))
      svc.forwarding = *v;
  if (auto k = child(n, path, "scheduler", false))
    if (auto v = choice<Scheduler>(
            *k, path + ".scheduler",
            {{"maglev", Scheduler::kMaglev}, {"maglev-src", Scheduler::kMaglevSrc}}))
      svc.scheduler = *v;
  if (auto k = child(n, path, "ring_size", false)) {
    // The two primes of include/keel/maglev_lookup.h: M must be prime for
    // Maglev's permutation to cover every slot (paper §3.4), and M >> 100 x
    // reals keeps the imbalance under 1%.
    if (auto v = choice<uint32_t>(*k, path + ".ring_size",
                                  {{"65537", KEEL_RING_SIZE_DEFAULT}, {"655373", KEEL_RING_SIZE_LARGE}}))
      svc.ringSize = *v;
  }
  if (auto k = child(n, path, "health", false)) emptyHealth(*k, path), svc.health = YAML::Clone(*k);
  if (auto k = child(n, path, "reals", false)) {
    svc.realsListGiven = k->IsSequence();
    if (k->IsNull()) {
      // No reals yet: the service drops its traffic (drop_no_backend).
    } else if (!k->IsSequence()) {
      error(*k, path + ".reals", "must be a list of reals, got " + describe(*k));
    } else {
      for (size_t i = 0; i < k->size(); ++i) {
        RealConfig real;
        parseReal((*k)[i], path + ".reals[" + std::to_string(i) + "]", real);
        svc.reals.push_back(std::move(real));
      }
    }
  }
  resolveHealth(n, path, svc);
}

// Service `health:` defaults overlaid with each real's override, resolved
// here so every mistake is reported with its file:line at load time.
void Parser::resolveHealth(const YAML::Node& n, const std::string& path, ServiceConfig& svc) {
  YAML::Node svcHealth = n["health"];
  // The policy keys through child(), so that an empty one is placed at its
  // key's line as every other key is (the spec builder's: locateValue).
  if (svcHealth.IsDefined() && svcHealth.IsMap())
    for (const char* key : {"all_down", "established_on_down"}) child(svcHealth, path + ".health", key, false);
  parseHealthPolicy(svcHealth, svc, [&](const YAML::Node& value, const std::string& key, const std::string& message) {
    error(value, path + ".health." + key, message);
  });
  // The service's own block, reals or not: it is the check every real
  // without `health:` gets, now or at a later `keelctl real add`. Its key
  // mistakes are reported here, once; a real reports only its own block's.
  HealthErrors ownErrors;
  const std::optional<HealthCheckSpec> own =
      resolveRealHealth(svcHealth, YAML::Node(), source_, path, path, ownErrors);
  errors_.insert(errors_.end(), ownErrors.service.begin(), ownErrors.service.end());
  // What the checker would refuse in the service's own check (e.g. no port
  // on a port-0 service): said once, at the service's block, reals or not,
  // and not again for each real that inherits it.
  std::vector<HealthProblem> serviceRefusals;
  if (own) {
    serviceRefusals = serviceHealthProblems(*own, svc.vip, svc.port);
    // With no port read, the port-0 service's rule is not known to apply.
    if (!svc.portAndProtocolKnown)
      std::erase_if(serviceRefusals, [](const HealthProblem& p) { return p.key == "port"; });
    for (const HealthProblem& p : serviceRefusals) error(healthKeyNode(svcHealth, p), healthKeyPath(path, p), p.message);
  }
  // A health block that names no type gets a tcp check: on a udp service,
  // a TCP connect to its UDP port, which fails every real that does not also
  // listen on TCP there. Said once, at the service's block (or at each
  // real's block, when only those exist).
  // (A missing block is an invalid node: IsMap() would throw on it.)
  auto sets = [](const YAML::Node& block, const char* key) {
    return block.IsDefined() && block.IsMap() && block[key].IsDefined();
  };
  const bool svcTyped = sets(svcHealth, "type");
  auto impliedTcp = [&](const HealthCheckSpec& spec, const YAML::Node& realHealth) {
    return svc.protocol == KEEL_PROTO_UDP && spec.type == HealthCheckSpec::Type::Tcp && !svcTyped &&
           !sets(realHealth, "type");
  };
  const std::string kImpliedTcp(kUdpImpliedTcpCheck);
  const bool svcBlock = svcHealth.IsDefined() && !svcHealth.IsNull();
  if (own && svcBlock && impliedTcp(*own, YAML::Node())) warning(svcHealth, path + ".health", kImpliedTcp);
  // A source this host does not have: its checks are not run, then fail (healthSourceNotLocal).
  auto sourceWarning = [&](const HealthCheckSpec& spec, const YAML::Node& at, const std::string& where) {
    if (spec.source && options_.addressIsLocal && !options_.addressIsLocal(*spec.source))
      warning(at, where + ".source", healthSourceNotLocal(*spec.source));  // a reload says it too
  };
  if (own && sets(svcHealth, "source")) sourceWarning(*own, svcHealth["source"], path + ".health");
  // The original nodes, not the stored clones: clones lose their line marks.
  const YAML::Node realsNode = n["reals"];
  // The reals the service's own health.source is of another family than
  // (they inherit it): said once, at that key, naming them.
  std::vector<std::string> otherFamily;
  for (size_t i = 0; i < svc.reals.size(); ++i) {
    RealConfig& real = svc.reals[i];
    const YAML::Node realNode = realsNode.IsSequence() ? realsNode[i] : YAML::Node();
    const YAML::Node realHealth = realNode.IsMap() ? realNode["health"] : YAML::Node();
    HealthErrors realErrors;
    auto spec = resolveRealHealth(svcHealth, realHealth, source_, path,
                                  path + ".reals[" + std::to_string(i) + "]", realErrors);
    errors_.insert(errors_.end(), realErrors.real.begin(), realErrors.real.end());
    if (spec) {
      real.healthSpec = *spec;
      const bool realBlock = realHealth.IsDefined() && !realHealth.IsNull();
      if (realBlock && !svcBlock && impliedTcp(*spec, realHealth))
        warning(realHealth, path + ".reals[" + std::to_string(i) + "].health", kImpliedTcp);
      if (sets(realHealth, "source"))
        sourceWarning(*spec, realHealth["source"], path + ".reals[" + std::to_string(i) + "].health");
      // What the checker itself would refuse (e.g. an IPv6 link-local
      // real), caught here so --check-config and reloads report it: at
      // the real's key if its block sets it, else at its line. What the
      // service's own check was refused for, and the real only inherits,
      // is said once, at the service.
      if (spec->type != HealthCheckSpec::Type::None && real.address.family())
        for (const HealthProblem& p :
             healthTargetProblems(HealthTarget{svc.name, real.address, svc.port, *spec})) {
          const YAML::Node at = healthKeyNode(realHealth, p);
          const bool ownKey = !p.key.empty() && at.IsDefined() && at.IsScalar();
          if (!ownKey && std::find(serviceRefusals.begin(), serviceRefusals.end(), p) != serviceRefusals.end())
            continue;
          if (p.key == "port" && !svc.portAndProtocolKnown) continue;  // as for the service's, above
          if (p.key == "source" && !ownKey && sets(svcHealth, "source")) {
            otherFamily.push_back(real.address.toString() + " (reals[" + std::to_string(i) + "])");
            continue;
          }
          const std::string keyPath = healthKeyPath(path + ".reals[" + std::to_string(i) + "]", p);
          if (ownKey)
            error(at, keyPath, p.message);
          else
            errorAtLine(real.line, keyPath, p.message);
        }
    }
  }
  if (!otherFamily.empty() && own && own->source)
    error(svcHealth["source"], path + ".health.source",
          own->source->toString() + " is not the same family as " +
              (otherFamily.size() == 1
                   ? "real " + otherFamily[0] + ", which inherits it: give that real a source of its family in its "
                                                "own health block"
                   : "reals " + commaList(otherFamily) +
                         ", which inherit it: give those reals a source of their family in their own health blocks") +
              ", or split the service by family");
}

void Parser::parseControl(const YAML::Node& n, ControlConfig& control) {
  if (!checkMap(n, "control", {"socket", "mode", "group", "readonly"})) return;
  parseSocket(n, "control", control.socket, control.mode, control.group);
  // Connecting to a Unix socket takes write permission on it.
  if (auto k = child(n, "control", "mode", false); k && (control.mode & 0002))
    warning(*k, "control.mode",
            quote(k->Scalar()) + " lets every local user drive keeld (remove reals, drain, stop it): give "
            "the socket to a group (control.group) with \"0660\" instead, and others the read-only socket "
            "(control.readonly)");
  if (auto r = child(n, "control", "readonly", false)) {
    if (!checkMap(*r, "control.readonly", {"socket", "mode", "group"})) return;
    if (!child(*r, "control.readonly", "socket", true)) return;
    parseSocket(*r, "control.readonly", control.readonlySocket, control.readonlyMode, control.readonlyGroup);
    if (!control.readonlySocket.empty() && normalPath(control.readonlySocket) == normalPath(control.socket))
      error(*child(*r, "control.readonly", "socket", false), "control.readonly.socket",
            "is control.socket's path; the read-only socket needs a path of its own");
  }
}

// A socket block's socket, mode and group (control:, control.readonly:).
void Parser::parseSocket(const YAML::Node& n, const std::string& path, std::string& socket, uint32_t& mode,
                         std::string& group) {
  if (auto k = child(n, path, "socket", false)) {
    if (auto s = scalar(*k, path + ".socket", "a path")) {
      if (s->empty() || (*s)[0] != '/' || s->size() >= 108)
        error(*k, path + ".socket", "must be an absolute path shorter than 108 bytes, got " + describe(*k));
      else if (std::string why = options_.socketPathProblem ? options_.socketPathProblem(*s) : ""; !why.empty())
        error(*k, path + ".socket", quote(*s) + " " + why);
      else
        socket = *s;
    }
  }
  if (auto k = child(n, path, "mode", false)) {
    if (auto s = scalar(*k, path + ".mode", "an octal mode")) {
      // Octal digits alone: strtoul also took a sign and leading blanks
      // ("+0660", " 0660", and "-0", which gave mode 000).
      uint32_t v = 0;
      bool digits = !s->empty();
      for (char c : *s) {
        if (c < '0' || c > '7' || v > 0777) {
          digits = false;
          break;
        }
        v = v * 8 + static_cast<uint32_t>(c - '0');
      }
      if (!digits || v > 0777)
        error(*k, path + ".mode",
              "must be an octal mode like \"0660\" (quoted; the digits 0 to 7 only, at most 0777), got " +
                  describe(*k));
      else
        mode = v;
    }
  }
  if (auto k = child(n, path, "group", false)) {
    if (auto s = scalar(*k, path + ".group", "a group name")) {
      if (!s->empty() && options_.groupExists && !options_.groupExists(*s))
        error(*k, path + ".group", "no such group " + quote(*s) + " on this host");
      else
        group = *s;
    }
  }
}

void Parser::parseMetrics(const YAML::Node& n, MetricsConfig& metrics) {
  if (!checkMap(n, "metrics", {"enabled", "address", "flow_count_interval"})) return;
  if (auto k = child(n, "metrics", "enabled", false))
    if (auto v = choice<bool>(*k, "metrics.enabled", {{"true", true}, {"false", false}})) metrics.enabled = *v;
  if (auto k = child(n, "metrics", "flow_count_interval", false))
    if (auto d = duration(*k, "metrics.flow_count_interval", std::chrono::milliseconds(0), std::chrono::hours(24))) {
      // Each walk reads the whole table (~0.3 s for a full default XDP one):
      // more often than every 10 s would be a steady load, not a gauge.
      if (d->count() != 0 && *d < std::chrono::seconds(10))
        error(*k, "metrics.flow_count_interval", "must be 0s (no counts) or at least 10s, got " + describe(*k));
      else
        metrics.flowCountInterval = *d;
    }
  if (auto k = child(n, "metrics", "address", false)) {
    // An address literal (no names: keeld binds before any resolver is
    // trusted), IPv6 in brackets as in a URL.
    std::optional<std::string> s = scalar(*k, "metrics.address", "IPV4:PORT or [IPV6]:PORT");
    if (!s) return;
    size_t colon = s->rfind(':');
    std::optional<IpAddress> host;
    uint32_t port = 0;
    if (colon != std::string::npos) {
      std::string h = s->substr(0, colon);
      const bool bracketed = h.size() >= 2 && h.front() == '[' && h.back() == ']';
      if (bracketed) h = h.substr(1, h.size() - 2);
      host = IpAddress::parse(h);
      // IPv6 only in brackets, IPv4 never: "::1:9477" would be ambiguous.
      if (host && host->isV4() == bracketed) host.reset();
      const std::optional<uint64_t> p = parseDecimal(s->substr(colon + 1));
      if (!p || *p < 1 || *p > 65535) host.reset();
      port = static_cast<uint32_t>(p.value_or(0));
    }
    if (!host) {
      error(*k, "metrics.address",
            "must be IPV4:PORT like \"127.0.0.1:9477\" or [IPV6]:PORT like \"[::1]:9477\" (port 1..65535), got " +
                describe(*k));
      return;
    }
    // Every address (0.0.0.0, [::]) is one to listen on; a group or
    // reserved one is none, which the check passed and the start then
    // failed on (metrics_failed).
    const bool every = host->bytes() == std::array<uint8_t, 16>{};  // 0.0.0.0 or :: (IPv4 keeps the rest zero)
    if (std::string why = every ? std::string() : serviceAddressProblem(*host, false); !why.empty()) {
      error(*k, "metrics.address", "cannot listen on " + why + ", got " + describe(*k));
      return;
    }
    // An IPv6 link-local address is bound only with an interface's scope
    // id, which an address literal here cannot carry: the start would fail
    // (EINVAL) after the check passed.
    if (host->isV6() && host->isLinkLocal()) {
      error(*k, "metrics.address",
            "cannot listen on an IPv6 link-local address (binding one needs an interface, which "
            "metrics.address does not name: use a global or unique-local address, or [::]), got " +
                describe(*k));
      return;
    }
    // An address this host does not have (a file from another node, a
    // typo): the check passed it and the start failed to listen.
    if (options_.bindProblem && !every && metrics.enabled)
      if (const std::string why = options_.bindProblem(*host); !why.empty()) {
        error(*k, "metrics.address",
              "cannot listen on " + host->toString() + ": " + why +
                  " (no address of this host: use one it has, 127.0.0.1, or 0.0.0.0 / [::] for every address), got " +
                  describe(*k));
        return;
      }
    metrics.address = *host;
    metrics.port = static_cast<uint16_t>(port);
  }
}

void Parser::parseReal(const YAML::Node& n, const std::string& path, RealConfig& real) {
  if (n.IsDefined() && !n.Mark().is_null()) real.line = n.Mark().line + 1;
  if (!checkMap(n, path, {"address", "weight", "mac", "health"})) return;
  if (auto k = child(n, path, "address", true))
    if (auto a = ip(*k, path + ".address", 0)) {
      if (std::string why = serviceAddressProblem(*a, false); !why.empty())
        error(*k, path + ".address", "cannot be " + why + ", got " + a->toString());
      else
        real.address = *a;
    }
  if (auto k = child(n, path, "weight", false))
    if (auto v = integer(*k, path + ".weight", 0, 65535)) real.weight = static_cast<uint32_t>(*v);
  if (auto k = child(n, path, "mac", false)) real.mac = mac(*k, path + ".mac");
  if (auto k = child(n, path, "health", false)) emptyHealth(*k, path), real.health = YAML::Clone(*k);
}

// A net_af_packet port leaves the kernel its copy of every frame. A kernel
// that forwards what it receives there, and has a route for a VIP,
// routes that copy too: out to the router, which sends it back to this
// port, where keel forwards it again, until its TTL runs out (a live test
// saw one datagram reach its real 64 times). A blackhole route for each
// VIP (docs/operations.md, as for ip_forward) or no forwarding stops it.
// A warning (a host check): refusing would block every reload, and on
// DPDK a restart, of a host that turned forwarding on for another reason.
void Parser::warnAfPacketForwarding(const Config& cfg) {
  if (!afPacketPort_ || afPacketPort_->iface.empty() || !options_.interfaceForwarding || !options_.routedOn)
    return;
  for (const int family : {4, 6}) {
    std::set<IpAddress> vips;
    for (const ServiceConfig& s : cfg.services)
      if (s.vip.isV4() == (family == 4)) vips.insert(s.vip);
    if (vips.empty()) continue;
    const std::vector<std::string> on = options_.interfaceForwarding(afPacketPort_->iface, family);
    if (on.empty()) continue;
    const std::vector<IpAddress> routed = options_.routedOn({vips.begin(), vips.end()});
    if (routed.empty()) continue;
    std::string set;
    for (const std::string& name : on) set += (set.empty() ? "" : ", ") + name + " = 1";
    std::string named = routed[0].toString();
    if (routed.size() > 1) named += " and " + std::to_string(routed.size() - 1) + " more";
    const std::string hostRoute = family == 4 ? "/32" : "/128";
    warning(afPacketPort_->node, "dataplane.dpdk.port",
            "the kernel forwards IPv" + std::to_string(family) + " packets received on " +
                quote(afPacketPort_->iface) + " (" + set + ") and has a route for VIP " + named +
                ", and a net_af_packet port leaves it its own copy of every frame: it would route each such VIP "
                "packet too, back to this port through the router, and keel would forward it again until its "
                "TTL ran out (the reals get many copies); give each VIP a blackhole route (ip route add "
                "blackhole " + routed[0].toString() + hostRoute + "), turn forwarding off, or use net_af_xdp "
                "(docs/dpdk.md)",
            /*host=*/true);
  }
}

// Cross-field rules, run after every field parsed (so one bad field does not
// hide the others).
void Parser::validate(const YAML::Node& root, Config& cfg, const YAML::Node& servicesNode) {
  (void)root;
  // Default udp checks (no expect, require_reply: false) pass on silence and
  // fail on ICMP port unreachable, which a real's kernel sends to one address
  // about once a second (Linux icmp_ratelimit): past that rate in all, a
  // dead service's checks mostly hear silence and pass (configuration.md,
  // "udp checks"). Said once per real address, at its first such real.
  struct SilentUdp {
    double perSecond = 0;
    int line = 0;
    std::string path;
  };
  std::map<IpAddress, SilentUdp> silentUdp;
  for (size_t i = 0; i < cfg.services.size(); ++i)
    for (size_t j = 0; j < cfg.services[i].reals.size(); ++j) {
      const RealConfig& r = cfg.services[i].reals[j];
      const HealthCheckSpec& h = r.healthSpec;
      if (h.type != HealthCheckSpec::Type::Udp || !h.udpExpect.empty() || h.udpRequireReply) continue;
      SilentUdp& s = silentUdp[r.address];
      if (s.path.empty()) {
        s.line = r.line;
        s.path = "services[" + std::to_string(i) + "].reals[" + std::to_string(j) + "].health";
      }
      s.perSecond += 1000.0 / static_cast<double>(std::max<int64_t>(1, h.interval.count()));
    }
  for (const auto& [address, s] : silentUdp)
    if (s.perSecond > 1.0 + 1e-9) {
      char rate[32];
      std::snprintf(rate, sizeof rate, "%.3g", s.perSecond);
      warningAtLine(s.line, s.path,
                    "real " + address.toString() + " gets " + rate +
                        " default udp checks a second in all (no expect, require_reply: false), more than the "
                        "about 1 ICMP error a second its kernel sends this balancer: a dead service's checks "
                        "then mostly hear silence and pass; set require_reply: true or expect");
    }
  warnCheckRates(cfg, servicesNode);
  warnAfPacketForwarding(cfg);
  std::map<std::string, int> names;  // name -> line
  std::map<std::tuple<IpAddress, uint16_t, uint8_t>, size_t> keys;
  size_t totalReals = 0;
  struct NeedMac {  // an l2dsr real without a mac: services[service].reals[real]
    size_t service, real;
    YAML::Node node;
    std::string path;
  };
  std::vector<NeedMac> needMac;
  const OwnAddresses own = interfaceValid_ ? ownAddresses(options_, cfg.dataplane.interface) : OwnAddresses{};
  const VipOwners vips = vipOwners(cfg.services);
  for (size_t i = 0; i < cfg.services.size(); ++i) {
    ServiceConfig& svc = cfg.services[i];
    const YAML::Node svcNode = servicesNode[i];
    std::string path = "services[" + std::to_string(i) + "]";
    if (!svc.name.empty()) {
      auto [it, inserted] = names.emplace(svc.name, svc.line);
      if (!inserted)
        error(svcNode["name"], path + ".name",
              "duplicate service name " + quote(svc.name) + " (first at line " +
                  std::to_string(it->second) + ")");
    }
    // Not with a port or protocol that did not parse (reported already):
    // the defaults in their place would clash with another service falsely.
    if (svc.vip.family() && svc.portAndProtocolKnown) {
      auto [it, inserted] = keys.emplace(std::make_tuple(svc.vip, svc.port, svc.protocol), i);
      if (!inserted) {
        error(svcNode, path,
              "same vip, port and protocol as services[" + std::to_string(it->second) + "] (" +
                  svc.vip.toString() + " port " + std::to_string(svc.port) + " " +
                  std::string(protocolName(svc.protocol)) + ")");
      }
    }
    if (svc.vip.family())
      if (std::string why = vipOwnAddressProblem(svc.vip, svc.port, cfg.node, own);
          !why.empty())
        error(svcNode["vip"], path + ".vip", why);
    if (svc.forwarding == Forwarding::kIpip && !svc.reals.empty() && !cfg.node.nextHopMac &&
        !nodeKeysGiven_.count("next_hop_mac")) {
      YAML::Node f = svcNode["forwarding"];
      error(f.IsDefined() ? f : svcNode, path + ".forwarding",
            "ipip forwarding needs node.next_hop_mac (the router toward the reals)");
    }
    std::map<IpAddress, int> seen;
    const YAML::Node realsNode = svcNode["reals"];
    // Maglev gives each real about M / N slots (paper §3.4): past N > M some
    // get none; past N > M / 100 the shares of equal reals differ by more
    // than ~1% (a slot is over 1% of a real's share).
    if (realsNode.IsDefined() && !svc.reals.empty()) {
      if (std::string why = ringSizeProblem(svc.reals.size(), svc.ringSize); !why.empty())
        error(realsNode, path + ".reals", why);
      else if (svc.reals.size() * 100 > svc.ringSize) {
        const size_t each = svc.ringSize / svc.reals.size();
        char pct[16];
        std::snprintf(pct, sizeof pct, "%.1f", 100.0 / static_cast<double>(each));
        warning(realsNode, path + ".reals",
                std::to_string(svc.reals.size()) + " reals on a ring of " + std::to_string(svc.ringSize) +
                    " slots: about " + std::to_string(each) + " slots each, so equal reals' shares can differ by " +
                    pct + "% (one slot)" +
                    (svc.ringSize < KEEL_RING_SIZE_LARGE
                         ? " (ring_size: " + std::to_string(KEEL_RING_SIZE_LARGE) + " gives about " +
                               std::to_string(KEEL_RING_SIZE_LARGE / svc.reals.size()) + ")"
                         : ""));
      }
    }
    for (size_t j = 0; j < svc.reals.size(); ++j) {
      RealConfig& real = svc.reals[j];
      std::string rpath = path + ".reals[" + std::to_string(j) + "]";
      if (!real.address.family()) continue;  // already reported
      const YAML::Node addrNode = realsNode[j]["address"];
      auto [it, inserted] = seen.emplace(real.address, real.line);
      if (!inserted) {
        error(addrNode, rpath + ".address",
              "duplicate real " + real.address.toString() + " in this service (first at line " +
                  std::to_string(it->second) + ")");
        continue;
      }
      if (real.address == svc.vip) error(addrNode, rpath + ".address", std::string(kRealIsVip));
      if (std::optional<size_t> other = otherVipOwner(vips, real.address, svc.vip)) {
        const ServiceConfig& o = cfg.services[*other];
        error(addrNode, rpath + ".address",
              realIsOtherVip(real.address, "services[" + std::to_string(*other) + "]" +
                                               (o.name.empty() ? "" : " (" + o.name + ")")));
      }
      if (std::string why =
              realOwnAddressProblem(real.address, cfg.node, own);
          !why.empty())
        error(addrNode, rpath + ".address", why);
      if (svc.forwarding == Forwarding::kIpip) {
        if (const YAML::Node macNode = realsNode[j]["mac"]; macNode.IsDefined())
          warning(macNode, rpath + ".mac", std::string(kIpipMacUnused));
        if (real.address.isV4() && !cfg.node.tunnelSourceV4 && !nodeKeysGiven_.count("tunnel_source_v4"))
          error(addrNode, rpath + ".address",
                "ipip to an IPv4 real needs node.tunnel_source_v4");
        if (real.address.isV6() && !cfg.node.tunnelSourceV6 && !nodeKeysGiven_.count("tunnel_source_v6"))
          error(addrNode, rpath + ".address",
                "ipip to an IPv6 real needs node.tunnel_source_v6");
        // A warning in a file (files that ran before 2026-12-06 keep
        // starting); keelctl real add and service add refuse it.
        if (std::string why = ipipRealProblem(real.address); !why.empty()) warning(addrNode, rpath + ".address", why);
      } else if (!real.mac && !realsNode[j]["mac"].IsDefined()) {
        // With an invalid dataplane.interface (reported already) there is
        // nothing to look in; with none at all (dpdk) resolveRealMac says so.
        const bool noInterface = cfg.dataplane.kind == DataplaneKind::kDpdk && cfg.dataplane.interface.empty();
        if (interfaceValid_ || noInterface) needMac.push_back({i, j, addrNode, rpath});
      }
    }
    totalReals += svc.reals.size();
  }
  // The l2dsr reals without a mac, resolved together: one neighbour-table
  // dump, and the unknown ones all wait at once instead of one after another.
  if (!needMac.empty()) {
    std::vector<IpAddress> addresses;
    for (const NeedMac& n : needMac) addresses.push_back(cfg.services[n.service].reals[n.real].address);
    const MacLookup macs =
        lookUpMacs(addresses, interfaceValid_ ? cfg.dataplane.interface : "", options_.resolveMac,
                   options_.interfacesOn);
    for (const NeedMac& n : needMac) {
      RealConfig& real = cfg.services[n.service].reals[n.real];
      RealMac m = resolveRealMac(cfg.services[n.service].name, real.address, macs);
      if (m.mac) {
        real.mac = m.mac;
        real.macResolved = true;
      } else if (!m.pending.empty()) {
        // Not in the table: a real that is off must not block the file.
        real.macPending = m.pending;
        warning(n.node, n.path + ".address", m.error, true);
      } else {
        error(n.node, n.path + ".address", m.error);
      }
    }
  }
  if (cfg.services.size() > cfg.limits.maxServices)
    error(servicesNode, "services",
          std::to_string(cfg.services.size()) + " services exceed limits.max_services (" +
              std::to_string(cfg.limits.maxServices) + ")");
  if (totalReals > cfg.limits.maxBackends)
    error(servicesNode, "services",
          std::to_string(totalReals) + " reals in all services exceed limits.max_reals (" +
              std::to_string(cfg.limits.maxBackends) + ")");
}


// Health check timings a file can hold but an operator rarely means (health
// review L4): warnings at their lines, never errors, so files that load
// keep loading. Each interval or timeout key is named once, however many
// reals inherit it.
//  - An interval under 100 ms: one real checked 10+ times a second, and
//    `1ms` is one letter from `1m` or `1s`.
//  - A timeout over 10 intervals: a real that stops answering is taken
//    down only after about fall x timeout (configuration.md, "Check timing").
//  - A udp payload over 1232 bytes to an IPv6 real (health review L7): the
//    most an IPv6 datagram carries whole over a path of IPv6's minimum MTU
//    (1280 - 40 - 8); past it, a smaller path MTU makes the check's
//    datagram a fragment pair or an ICMPv6 Packet Too Big (that check
//    fails), and reals behind firewalls that drop fragments fail every one.
//  - More than 20,000 checks a second in all: the checks share one thread,
//    and a tcp check costs ~36-45 us of its CPU (docs/performance.md), so
//    past that the thread falls behind and checks start late.
void Parser::warnCheckRates(const Config& cfg, const YAML::Node& servicesNode) {
  constexpr int64_t kMinIntervalMs = 100;
  constexpr int64_t kMaxTimeoutIntervals = 10;
  constexpr double kMaxChecksPerSecond = 20000;
  // The node a real's resolved key came from: its own health block's, else
  // its service's (else the default: nothing to say).
  struct From {
    YAML::Node node;
    std::string path;
  };
  auto keyOf = [](const YAML::Node& real, const YAML::Node& svc, const std::string& rpath, const std::string& spath,
                  const char* key) -> std::optional<From> {
    if (real.IsDefined() && real.IsMap() && real[key].IsDefined()) return From{real[key], rpath + ".health." + key};
    if (svc.IsDefined() && svc.IsMap() && svc[key].IsDefined()) return From{svc[key], spath + ".health." + key};
    return std::nullopt;
  };
  std::set<std::pair<int, int>> said;  // (line, column) of each key warned about
  auto once = [&said](const YAML::Node& n) { return said.emplace(n.Mark().line, n.Mark().column).second; };
  double perSecond = 0;
  size_t checked = 0;
  for (size_t i = 0; i < cfg.services.size(); ++i) {
    const ServiceConfig& svc = cfg.services[i];
    const std::string spath = "services[" + std::to_string(i) + "]";
    // The nodes as parsed (svc.health and real.health are clones, which
    // have no line).
    const YAML::Node svcHealth = servicesNode[i]["health"];
    const YAML::Node realsNode = servicesNode[i]["reals"];
    const bool realsListed = realsNode.IsDefined() && realsNode.IsSequence();
    for (size_t j = 0; j < svc.reals.size(); ++j) {
      const RealConfig& real = svc.reals[j];
      const HealthCheckSpec& h = real.healthSpec;
      if (h.type == HealthCheckSpec::Type::None || h.interval.count() <= 0) continue;
      const std::string rpath = spath + ".reals[" + std::to_string(j) + "]";
      ++checked;
      perSecond += 1000.0 / static_cast<double>(h.interval.count());
      // (Copy-constructed: assigning a YAML::Node writes through it.)
      const YAML::Node realHealth =
          realsListed && realsNode[j].IsDefined() && realsNode[j].IsMap()
              ? realsNode[j]["health"]
              : YAML::Node(YAML::NodeType::Undefined);
      const std::optional<From> interval = keyOf(realHealth, svcHealth, rpath, spath, "interval");
      if (interval && h.interval.count() < kMinIntervalMs && once(interval->node))
        warning(interval->node, interval->path,
                formatDuration(h.interval) + " checks each real " + std::to_string(1000 / h.interval.count()) +
                    " times a second: an interval under " + std::to_string(kMinIntervalMs) +
                    "ms is rarely meant (" + std::to_string(h.interval.count()) + "s or " +
                    std::to_string(h.interval.count()) + "m?)");
      const std::optional<From> timeout = keyOf(realHealth, svcHealth, rpath, spath, "timeout");
      if (timeout && h.timeout.count() > kMaxTimeoutIntervals * h.interval.count() && once(timeout->node))
        warning(timeout->node, timeout->path,
                formatDuration(h.timeout) + " is more than " + std::to_string(kMaxTimeoutIntervals) +
                    " intervals (" + formatDuration(h.interval) +
                    "): a real that stops answering is taken down only after about fall x timeout");
      const std::optional<From> payload = keyOf(realHealth, svcHealth, rpath, spath, "payload");
      if (std::optional<std::string> w = udpPayloadOverIpv6Mtu(h, real.address); w && payload && once(payload->node))
        warning(payload->node, payload->path, *w);
    }
  }
  if (perSecond > kMaxChecksPerSecond) {
    char rate[32];
    std::snprintf(rate, sizeof rate, "%.0f", perSecond);
    warning(servicesNode, "services",
            std::string(rate) + " health checks a second in all (" + std::to_string(checked) +
                " checked reals), more than the " + std::to_string(static_cast<int>(kMaxChecksPerSecond)) +
                " one check thread keeps up with (a tcp check costs ~40 us of its CPU): checks would start "
                "late; raise interval");
  }
}


// The first alias of a YAML text, if it has one; a syntax error throws
// YAML::ParserException as YAML::LoadAll would.
std::optional<YAML::Mark> firstAlias(std::string_view text) {
  struct Found {
    YAML::Mark mark;
  };
  struct Handler final : YAML::EventHandler {
    void OnDocumentStart(const YAML::Mark&) override {}
    void OnDocumentEnd() override {}
    void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
    void OnAlias(const YAML::Mark& mark, YAML::anchor_t) override { throw Found{mark}; }
    void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t, const std::string&) override {}
    void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {}
    void OnSequenceEnd() override {}
    void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {}
    void OnMapEnd() override {}
  };
  std::istringstream in{std::string(text)};
  YAML::Parser parser(in);
  Handler handler;
  try {
    while (parser.HandleNextDocument(handler)) {
    }
  } catch (const Found& f) {
    return f.mark;
  }
  return std::nullopt;
}

// What yaml-cpp gave up on may be the consequence of a fault lines before:
// an unclosed '[' or '{' ("end of sequence flow not found", or "illegal
// block entry" when a block list follows), or a quoted scalar whose closing
// quote is missing, which swallows the lines up to the next quote ("end of
// map not found" where that quote closes it). Only for those errors (`msg`),
// a scan of the text, skipping comments, finds such a fault before where
// yaml-cpp stopped (`upto`): a quote still open there, else the innermost
// flow collection open there and never closed in the whole file, else the
// last quoted scalar if it ran over a line end and closed on the error's
// line (keel.yaml has no reason for one). nullopt if none: the error is
// then named where yaml-cpp found it.
struct TextPlace {
  int line, column;  // 0-based, as YAML::Mark
  std::string what;  // the fault, as the error says it
};
std::optional<TextPlace> earlierFault(std::string_view text, size_t upto, int errorLine, const std::string& msg) {
  if (msg != YAML::ErrorMsg::END_OF_SEQ_FLOW && msg != YAML::ErrorMsg::END_OF_MAP_FLOW &&
      msg != YAML::ErrorMsg::BLOCK_ENTRY && msg != YAML::ErrorMsg::END_OF_MAP)
    return std::nullopt;
  struct Open {
    int line, column;
    char c;
    bool closed = false;
  };
  std::vector<Open> opened;             // every '[' / '{' outside quotes, in order
  std::vector<size_t> open;             // indexes into `opened` open now
  std::vector<size_t> openAtError;      // `open` when the scan reached upto
  bool reachedError = false;
  std::optional<Open> quoteAt;          // the quote open now, or the last one
  std::optional<int> lastQuoteEnd;     // the line the last quoted scalar closed on
  std::optional<Open> quoteAtError;    // quoteAt / lastQuoteEnd / quote as they were at upto
  std::optional<int> quoteEndAtError;
  char quoteOpenAtError = 0;
  int line = 0, column = 0;
  char quote = 0;      // inside a '...' or "..." scalar
  bool comment = false;
  char prev = '\n';    // the last character outside quotes that was not a blank
  bool blankBefore = true;
  const auto atError = [&] {
    reachedError = true;
    openAtError = open;
    quoteAtError = quoteAt;
    quoteEndAtError = lastQuoteEnd;
    quoteOpenAtError = quote;
  };
  for (size_t i = 0; i < text.size(); ++i, ++column) {
    if (i >= upto && !reachedError) atError();
    const char c = text[i];
    if (c == '\n') {
      ++line;
      column = -1;
      comment = false;
      if (!quote) prev = '\n';
      blankBefore = true;
      continue;
    }
    if (comment) continue;
    if (quote) {
      if (quote == '"' && c == '\\') {
        ++i, ++column;  // an escaped character
      } else if (c == quote) {
        quote = 0;
        lastQuoteEnd = line;
        prev = c;
      }
      continue;
    }
    if (c == '#' && blankBefore) {
      comment = true;
      continue;
    }
    blankBefore = c == ' ' || c == '\t';
    if (blankBefore) continue;
    // A quote opens a scalar only where one may start (an apostrophe in a
    // plain scalar is just a character).
    if ((c == '\'' || c == '"') && std::string_view("\n[{,:-?").find(prev) != std::string_view::npos) {
      quote = c;
      quoteAt = Open{line, column, c};
      continue;
    }
    if (c == '[' || c == '{') {
      opened.push_back({line, column, c});
      open.push_back(opened.size() - 1);
    }
    if ((c == ']' || c == '}') && !open.empty()) {
      opened[open.back()].closed = true;
      open.pop_back();
    }
    prev = c;
  }
  if (!reachedError) atError();
  const auto quoted = [](char c) { return std::string(c == '"' ? "'\"'" : "\"'\""); };
  if (quoteOpenAtError)
    return TextPlace{quoteAtError->line, quoteAtError->column,
                     quoted(quoteOpenAtError) + " at column " + std::to_string(quoteAtError->column + 1) +
                         " opens a quoted scalar that is never closed"};
  for (auto it = openAtError.rbegin(); it != openAtError.rend(); ++it) {
    const Open& o = opened[*it];
    if (o.closed) continue;  // closed later: not what yaml-cpp stumbled on
    return TextPlace{o.line, o.column,
                     std::string("'") + o.c + "' at column " + std::to_string(o.column + 1) + " is never closed"};
  }
  if (quoteAtError && quoteEndAtError && *quoteEndAtError > quoteAtError->line && *quoteEndAtError == errorLine)
    return TextPlace{quoteAtError->line, quoteAtError->column,
                     quoted(quoteAtError->c) + " at column " + std::to_string(quoteAtError->column + 1) +
                         " opens a quoted scalar that runs on to line " + std::to_string(*quoteEndAtError + 1) +
                         ": is its closing quote missing?"};
  return std::nullopt;
}

}  // namespace

std::string ringSizeProblem(size_t reals, uint32_t ringSize) {
  if (reals <= ringSize) return "";
  return std::to_string(reals) + " reals on a ring of " + std::to_string(ringSize) +
         " slots: some would get no slot (never picked, though up)" +
         (ringSize < KEEL_RING_SIZE_LARGE ? "; set ring_size: " + std::to_string(KEEL_RING_SIZE_LARGE) : "") +
         " or split the service";
}

namespace {

// Which of this balancer's own addresses `a` is ("" if none).
std::string ownAddressOwner(const IpAddress& a, const NodeConfig& node, const OwnAddresses& interfaceAddresses) {
  if (node.tunnelSourceV4 && a == *node.tunnelSourceV4) return "node.tunnel_source_v4";
  if (node.tunnelSourceV6 && a == *node.tunnelSourceV6) return "node.tunnel_source_v6";
  if (auto it = interfaceAddresses.find(a); it != interfaceAddresses.end()) return "an address of " + it->second;
  return "";
}

}  // namespace

OwnAddresses ownAddresses(const ConfigOptions& options, const std::string& interface) {
  OwnAddresses out;
  if (!options.interfaceAddresses || interface.empty()) return out;
  std::vector<std::string> interfaces{interface};
  if (options.interfacesOn)
    for (std::string& upper : options.interfacesOn(interface)) interfaces.push_back(std::move(upper));
  for (const std::string& name : interfaces)
    for (const IpAddress& a : options.interfaceAddresses(name)) out.emplace(a, name);  // the first keeps it
  return out;
}

std::string realOwnAddressProblem(const IpAddress& real, const NodeConfig& node,
                                  const OwnAddresses& interfaceAddresses) {
  const std::string owner = ownAddressOwner(real, node, interfaceAddresses);
  if (owner.empty()) return "";
  return "a real cannot be this balancer's own address (" + real.toString() + " is " + owner +
         "): its packets would come back to this balancer, which takes no tunnel and answers no VIP, while its "
         "health checks reach this host and pass";
}

VipOwners vipOwners(const std::vector<ServiceConfig>& services) {
  VipOwners out;
  for (size_t i = 0; i < services.size(); ++i)
    if (services[i].vip.family()) out.emplace(services[i].vip, i);  // the first keeps it
  return out;
}

std::optional<size_t> otherVipOwner(const VipOwners& owners, const IpAddress& real, const IpAddress& ownVip) {
  if (real == ownVip) return std::nullopt;  // kRealIsVip
  auto it = owners.find(real);
  if (it == owners.end()) return std::nullopt;
  return it->second;
}

std::string realIsOtherVip(const IpAddress& real, const std::string& owner) {
  return real.toString() + " is the VIP of " + owner +
         ": a real cannot be a VIP of this balancer (a tunnel or frame to it would come back to this balancer "
         "instead of reaching a real, and its health checks would reach that service's reals and pass)";
}

std::string vipOwnAddressProblem(const IpAddress& vip, uint16_t port, const NodeConfig& node,
                                 const OwnAddresses& interfaceAddresses) {
  const std::string owner = ownAddressOwner(vip, node, interfaceAddresses);
  if (owner.empty()) return "";
  return "cannot be this balancer's own address (" + vip.toString() + " is " + owner +
         "): keel takes the VIP's packets before the kernel, so the host's own traffic to " +
         (port == 0 ? std::string("any port of it (SSH, BGP, the replies to keeld's health checks)")
                    : "port " + std::to_string(port) + " of it") +
         " would go to the reals; give the VIP an address of its own, routed to this balancer";
}

ConfigResult parseConfig(std::string_view yamlText, std::string_view sourceName,
                         const ConfigOptions& options) {
  ConfigResult result;
  Parser parser(sourceName, options);
  YAML::Node root;
  // YAML allows no C0 control character but tab and line breaks, nor DEL
  // (YAML 1.2, 5.1); yaml-cpp misreads them (a NUL in a plain scalar was
  // "unknown escape character: ,"). The first is named by its line and
  // column, before yaml-cpp runs.
  for (size_t i = 0, line = 1, column = 1; i < yamlText.size(); ++i, ++column) {
    const auto c = static_cast<unsigned char>(yamlText[i]);
    if (c == '\n') {
      ++line;
      column = 0;
    } else if ((c < 0x20 && c != '\t' && c != '\r') || c == 0x7f) {
      static constexpr char kHex[] = "0123456789abcdef";
      result.errors.push_back(std::string(sourceName) + ":" + std::to_string(line) + ": control character 0x" +
                              kHex[c >> 4] + kHex[c & 15] + " at column " + std::to_string(column) +
                              ": YAML allows none but tab and line breaks (write it as an escape in a "
                              "double-quoted string, if a value needs one)");
      return result;
    }
  }
  try {
    // No aliases: each `*name` stands for a whole subtree, so a few hundred
    // bytes of nested aliases expand to billions of nodes that every walk
    // below would visit (a check or reload that never ends, on keeld's one
    // loop). keel.yaml needs none; an event pass (linear in the text) finds
    // the first before anything is built.
    if (std::optional<YAML::Mark> alias = firstAlias(yamlText)) {
      result.errors.push_back(std::string(sourceName) + ":" + std::to_string(alias->line + 1) +
                              ": YAML alias (*name) at column " + std::to_string(alias->column + 1) +
                              ": keel.yaml takes no aliases; write the value out");
      return result;
    }
    // Every document: YAML::Load reads the first and ignores the rest, so
    // a stray `---` would silently drop whatever follows it.
    std::vector<YAML::Node> docs = YAML::LoadAll(std::string(yamlText));
    if (docs.size() > 1) {
      result.errors.push_back(locate(sourceName, docs[1]) + ": a second YAML document (after ---); keel.yaml is one document");
      return result;
    }
    if (!docs.empty()) root = docs.front();
  } catch (const YAML::Exception& e) {
    std::string loc(sourceName);
    std::string msg = e.msg;
    if (!e.mark.is_null()) {
      const std::optional<TextPlace> fault =
          earlierFault(yamlText, static_cast<size_t>(e.mark.pos), e.mark.line, e.msg);
      if (fault && fault->line < e.mark.line) {
        loc += ":" + std::to_string(fault->line + 1);
        msg = fault->what + " (" + e.msg + ", seen " +
              // At the end: the line after a final newline is none the file shows.
              (yamlText.find_first_not_of(" \t\r\n", static_cast<size_t>(e.mark.pos)) == std::string_view::npos
                   ? std::string("at the end of the file")
                   : "at line " + std::to_string(e.mark.line + 1)) +
              ")";
      } else {
        loc += ":" + std::to_string(e.mark.line + 1);
      }
    }
    // yaml-cpp stops at 500 levels of nesting with its generic "bad file".
    if (const auto* deep = dynamic_cast<const YAML::DeepRecursion*>(&e))
      msg = "lists or mappings nested " + std::to_string(deep->depth()) +
            " levels deep, where the YAML reader stops (keel.yaml's own structure is a few levels deep)";
    result.errors.push_back(loc + ": YAML syntax error: " + msg);
    return result;
  }
  Config cfg;
  cfg.source = std::string(sourceName);
  try {
    parser.parseDocument(root, cfg);
  } catch (const YAML::Exception& e) {
    // yaml-cpp only throws here on malformed node access; report, never crash.
    parser.error(root, "", std::string("internal YAML error: ") + e.what());
  }
  result.errors = parser.takeErrors();
  // In the file's order, as an operator fixes them: the parser checks some
  // keys after others (a service's health after its reals), so its own
  // order jumped back and forth. By line, stably; an error of the whole
  // file (no line) first.
  const std::string prefix = std::string(sourceName) + ":";
  auto lineOf = [&prefix](const std::string& e) -> unsigned long {
    if (e.compare(0, prefix.size(), prefix) != 0) return 0;
    size_t end = prefix.size();
    while (end < e.size() && e[end] >= '0' && e[end] <= '9') ++end;
    if (end == prefix.size() || end >= e.size() || e[end] != ':') return 0;
    return std::stoul(e.substr(prefix.size(), end - prefix.size()));
  };
  std::stable_sort(result.errors.begin(), result.errors.end(),
                   [&](const std::string& a, const std::string& b) { return lineOf(a) < lineOf(b); });
  result.warnings = parser.takeWarnings();
  result.fileWarnings = parser.takeFileWarnings();
  if (result.errors.empty()) result.config = std::move(cfg);
  return result;
}

std::vector<std::string> restartNeededKeys(const Config& started, const Config& next) {
  std::vector<std::string> keys;
  const DataplaneConfig& a = started.dataplane;
  const DataplaneConfig& b = next.dataplane;
  if (a.kind != b.kind) keys.push_back("dataplane.kind");
  if (a.interface != b.interface) keys.push_back("dataplane.interface");
  if (a.xdpMode != b.xdpMode) keys.push_back("dataplane.xdp_mode");
  if (!(a.dpdk == b.dpdk)) keys.push_back("dataplane.dpdk");
  const DataplaneLimits& la = started.limits;
  const DataplaneLimits& lb = next.limits;
  if (la.maxServices != lb.maxServices || la.maxBackends != lb.maxBackends || la.connTableSize != lb.connTableSize)
    keys.push_back("limits");
  const ControlConfig& ca = started.control;
  const ControlConfig& cb = next.control;
  if (!(ca == cb)) keys.push_back("control");
  if (!started.metrics.sameEndpoint(next.metrics)) keys.push_back("metrics");
  return keys;
}

std::vector<std::string> stopStartNeededKeys(const Config& started, const std::vector<std::string>& keys,
                                             bool stopDetaches) {
  std::vector<std::string> out;
  if (started.dataplane.kind != DataplaneKind::kXdp || stopDetaches) return out;
  for (const std::string& k : keys)
    if (k == "dataplane.kind" || k == "dataplane.interface" || k == "dataplane.xdp_mode" || k == "limits")
      out.push_back(k);
  return out;
}

MacLookup lookUpMacs(const std::vector<IpAddress>& reals, const std::string& interface,
                     const MacResolver& resolver,
                     const std::function<std::vector<std::string>(const std::string&)>& interfacesOn) {
  MacLookup out;
  out.interface = interface;
  out.lookedUp = !interface.empty() && resolver;
  if (out.lookedUp && !reals.empty()) {
    out.resolved = resolver(reals, interface);
    // Only to name the tables read when some real is not in them: a link
    // dump costs ~5 ms with 1,000 links (neighbour.cc).
    std::set<IpAddress> distinct(reals.begin(), reals.end());
    if (interfacesOn && out.resolved.size() < distinct.size()) out.uppers = interfacesOn(interface);
  }
  return out;
}

std::string interfacesNamed(const std::string& interface, const std::vector<std::string>& uppers) {
  if (uppers.empty()) return interface;
  std::string out = interface + " or the interfaces on it (";
  for (size_t i = 0; i < uppers.size(); ++i) out += (i ? ", " : "") + uppers[i];
  return out + ")";
}

RealMac resolveRealMac(const std::string& service, const IpAddress& real, const MacLookup& lookup) {
  const std::string interface = interfacesNamed(lookup.interface, lookup.uppers);
  const bool lookedUp = lookup.lookedUp;
  RealMac out;
  auto it = lookup.resolved.find(real);
  const bool found = lookedUp && it != lookup.resolved.end();
  // The table can hold any lladdr (ip neigh ... nud permanent): a group or
  // zero one is refused as a written `mac:` would be.
  if (found && it->second.isUnicast()) {
    out.mac = it->second;
    return out;
  }
  if (!found && lookedUp) {
    // A state, not a mistake: the real is off, or not on-link yet. Held
    // down and looked up again until the table has it.
    out.pending = "l2dsr: " + real.toString() + " not in the neighbour table of " + interface;
    out.error = "l2dsr real " + real.toString() + " of service " + service +
                " has no mac and is not in the neighbour table of " + interface +
                " (not reachable on-link?): held down until keeld finds it there; give its mac (mac: in "
                "keel.yaml, --mac in keelctl) or, if it is on-link, ping it from this host so the table has it";
    return out;
  }
  std::string why;
  if (found)
    why = "its neighbour-table entry on " + interface + " is " + it->second.toString() +
          ", not a unicast MAC";
  else if (interface.empty())
    why = "there is no neighbour table to look it up in (no dataplane.interface, nor a "
          "dpdk.exception_interface to default to)";
  else  // keeld --no-host-checks, or a tool without a host
    why = "no neighbour table is read without host checks";
  out.error = "l2dsr real " + real.toString() + " of service " + service + " has no mac and " + why +
              "; give its mac (mac: in keel.yaml, --mac in keelctl)";
  if (lookedUp) out.error += " or, if it is on-link, ping it from this host so the table has it";
  return out;
}

void parseHealthPolicy(const YAML::Node& health, ServiceConfig& svc, const HealthPolicyError& error) {
  if (!health.IsDefined() || !health.IsMap()) return;  // the spec builder reports a block that is no map
  auto choose = [&](const char* key, std::initializer_list<std::pair<std::string_view, bool>> options, bool& field) {
    const YAML::Node k = health[key];
    if (!k) return;
    std::string why;
    if (std::optional<bool> v = oneOf(k, options, &why))
      field = *v;
    else
      error(k, key, why);
  };
  choose("all_down", {{"fail-open", true}, {"fail-closed", false}}, svc.healthFailOpen);
  choose("established_on_down", {{"repick", false}, {"keep", true}}, svc.healthKeepEstablished);
}

std::optional<HealthCheckSpec> resolveRealHealth(const YAML::Node& serviceHealth,
                                                 const YAML::Node& realHealth, std::string_view source,
                                                 const std::string& servicePath,
                                                 const std::string& realPath, HealthErrors& errors) {
  const bool svcPresent = serviceHealth.IsDefined() && !serviceHealth.IsNull();
  const bool realPresent = realHealth.IsDefined() && !realHealth.IsNull();
  if (!svcPresent && !realPresent) {
    HealthCheckSpec none;  // no checks at all: always up (config.h)
    none.type = HealthCheckSpec::Type::None;
    return none;
  }
  // `all_down` and `established_on_down` are service-only keys the spec
  // builder does not know (a real's block that sets them is told so: unknown key).
  // (Never assign to a Node that refers to another: yaml-cpp would overwrite
  // the referee. Build a separate map whose keys and values share the
  // originals, so their line marks stay: an empty value is placed at its
  // key's, locateValue.)
  auto serviceOnly = [](const std::string& key) { return key == "all_down" || key == "established_on_down"; };
  const bool strip = svcPresent && serviceHealth.IsMap() &&
                     (serviceHealth["all_down"] || serviceHealth["established_on_down"]);
  YAML::Node stripped(YAML::NodeType::Map);
  if (strip)
    for (const auto& kv : serviceHealth)
      if (!serviceOnly(kv.first.Scalar())) stripped[kv.first] = kv.second;
  const YAML::Node& specNode = strip ? stripped : serviceHealth;
  const size_t before = errors.service.size() + errors.real.size();
  HealthSpecBuilder b;
  b.apply(specNode, source, servicePath + ".health", errors.service, "all_down, established_on_down");
  b.apply(realHealth, source, realPath + ".health", errors.real);
  if (errors.service.size() + errors.real.size() != before) return std::nullopt;
  return b.build();
}

std::optional<HealthCheckSpec> resolveServiceHealth(const YAML::Node& serviceHealth, const IpAddress& vip,
                                                    uint16_t port, std::string_view source,
                                                    const std::string& servicePath,
                                                    std::vector<std::string>& errors) {
  HealthErrors layered;  // only the service layer, with no real block
  auto spec = resolveRealHealth(serviceHealth, YAML::Node(), source, servicePath, servicePath, layered);
  if (!spec) {
    errors.insert(errors.end(), layered.service.begin(), layered.service.end());
    return spec;
  }
  const std::vector<HealthProblem> problems = serviceHealthProblems(*spec, vip, port);
  for (const HealthProblem& p : problems)
    errors.push_back(locate(source, healthKeyNode(serviceHealth, p)) + ": " + healthKeyPath(servicePath, p) + ": " +
                     p.message);
  if (!problems.empty()) return std::nullopt;
  return spec;
}

std::optional<std::string> readConfigText(const std::string& path, std::string& error) {
  // Only a regular file: ifstream reads a directory as empty ("file is
  // empty"), and opening a FIFO waits for a writer, which held keeld's loop
  // (health failover, every request, /metrics) until one came (config
  // review HIGH). Opened without blocking, then checked by what was opened.
  // Checked before the open too: opening some devices does something.
  if (struct stat st {}; ::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) {
    error = path + ": not a regular file";
    return std::nullopt;
  }
  Fd fd(::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY));
  if (fd.get() < 0) {
    error = path + ": cannot open: " + std::strerror(errno);
    return std::nullopt;
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
    error = path + ": not a regular file";
    return std::nullopt;
  }
  // Read up to the bound and one byte more: a file past it (a log or an
  // image named by mistake) is refused before it is parsed, which took
  // seconds of keeld's loop for 100 MB (input review L11).
  constexpr size_t kMaxConfigBytes = 64u << 20;
  std::string text;
  char chunk[65536];
  while (text.size() <= kMaxConfigBytes) {
    const ssize_t n = ::read(fd.get(), chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      error = path + ": cannot read: " + std::strerror(errno);
      return std::nullopt;
    }
    if (n == 0) break;
    text.append(chunk, static_cast<size_t>(n));
  }
  if (text.size() > kMaxConfigBytes) {
    error = path + ": over " + std::to_string(kMaxConfigBytes >> 20) +
            " MiB: not a keel.yaml keeld reads (is it the right file?)";
    return std::nullopt;
  }
  return text;
}

ConfigResult loadConfigFile(const std::string& path, const ConfigOptions& options) {
  std::string error;
  std::optional<std::string> text = readConfigText(path, error);
  if (!text) {
    ConfigResult r;
    r.errors.push_back(std::move(error));
    return r;
  }
  // Messages name the file as the operator wrote it.
  ConfigResult r = parseConfig(*text, path, options);
  r.text = std::move(*text);
  return r;
}

std::string healthSourceNotLocal(const IpAddress& source) {
  return source.toString() +
         " is not an address of this host: its checks are not run for `fall` checks in a row, then count as "
         "failures (a real that was up goes down), until it is";
}

std::optional<std::string> udpPayloadOverIpv6Mtu(const HealthCheckSpec& spec, const IpAddress& real) {
  if (spec.type != HealthCheckSpec::Type::Udp || real.isV4() || spec.udpPayload.size() <= kMaxUdpPayloadV6)
    return std::nullopt;
  return std::to_string(spec.udpPayload.size()) + " bytes to IPv6 real " + real.toString() + ": over " +
         std::to_string(kMaxUdpPayloadV6) +
         " bytes, what one datagram carries whole on a path of IPv6's minimum MTU (1280), so a smaller path MTU "
         "than " + std::to_string(spec.udpPayload.size() + 48) + " bytes fragments the check or fails it (Packet "
         "Too Big)";
}

}  // namespace keel

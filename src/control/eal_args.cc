// SPDX-License-Identifier: Apache-2.0
#include "control/eal_args.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <array>
#include <map>
#include <optional>
#include <string_view>

namespace keel {

namespace {

enum class Arg { kNone, kRequired, kOptional };

struct LongOption {
  std::string_view name;
  Arg arg;
};

// EAL 22.11's long options (eal_long_options), with getopt_long's has_arg.
constexpr std::array<LongOption, 37> kLongOptions{{
    {"allow", Arg::kRequired},
    {"base-virtaddr", Arg::kRequired},
    {"block", Arg::kRequired},
    {"create-uio-dev", Arg::kNone},
    {"file-prefix", Arg::kRequired},
    {"force-max-simd-bitwidth", Arg::kRequired},
    {"help", Arg::kNone},
    {"huge-dir", Arg::kRequired},
    {"huge-unlink", Arg::kOptional},
    {"huge-worker-stack", Arg::kOptional},
    {"in-memory", Arg::kNone},
    {"iova-mode", Arg::kRequired},
    {"lcores", Arg::kRequired},
    {"legacy-mem", Arg::kNone},
    {"log-level", Arg::kRequired},
    {"main-lcore", Arg::kRequired},
    {"match-allocations", Arg::kNone},
    {"mbuf-pool-ops-name", Arg::kRequired},
    {"no-hpet", Arg::kNone},
    {"no-huge", Arg::kNone},
    {"no-pci", Arg::kNone},
    {"no-shconf", Arg::kNone},
    {"no-telemetry", Arg::kNone},
    {"proc-type", Arg::kRequired},
    {"single-file-segments", Arg::kNone},
    {"socket-limit", Arg::kRequired},
    {"socket-mem", Arg::kRequired},
    {"syslog", Arg::kRequired},
    {"telemetry", Arg::kNone},
    {"trace", Arg::kRequired},
    {"trace-bufsz", Arg::kRequired},
    {"trace-dir", Arg::kRequired},
    {"trace-mode", Arg::kRequired},
    {"vdev", Arg::kRequired},
    {"vfio-intr", Arg::kRequired},
    {"vfio-vf-token", Arg::kRequired},
    {"vmware-tsc-map", Arg::kNone},
}};

// EAL's short options: "a:b:c:d:hl:m:n:r:s:S:v" (a letter and ':' for one
// that takes a value).
std::optional<Arg> shortOption(char c) {
  static constexpr std::string_view kWithValue = "abcdlmnrsS";
  if (kWithValue.find(c) != std::string_view::npos) return Arg::kRequired;
  if (c == 'h' || c == 'v') return Arg::kNone;
  return std::nullopt;
}

// Levenshtein distance, for "did you mean".
size_t distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// What getopt_long makes of "--name": the option it names (exactly, or as
// the one option it abbreviates), or why none.
const LongOption* findLong(std::string_view name, std::string* why) {
  std::vector<const LongOption*> prefixed;
  for (const LongOption& o : kLongOptions) {
    if (o.name == name) return &o;
    if (o.name.substr(0, name.size()) == name) prefixed.push_back(&o);
  }
  if (prefixed.size() == 1) return prefixed[0];
  if (prefixed.size() > 1) {
    *why = "--" + std::string(name) + " is ambiguous to EAL (it abbreviates";
    for (const LongOption* o : prefixed) *why += " --" + std::string(o->name);
    *why += ")";
    return nullptr;
  }
  *why = "EAL has no option --" + std::string(name);
  const LongOption* near = nullptr;
  size_t best = 3;  // suggest only a near miss
  for (const LongOption& o : kLongOptions)
    if (const size_t d = distance(name, o.name); d < best) {
      best = d;
      near = &o;
    }
  if (near) *why += " (did you mean --" + std::string(near->name) + "?)";
  return nullptr;
}

}  // namespace

std::vector<EalArgProblem> checkEalArgs(const std::vector<std::string>& args) {
  std::vector<EalArgProblem> problems;
  // The first index each option was given at, and its value.
  std::map<std::string, std::pair<size_t, std::string>> given;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    const size_t optionArg = i;  // the option's own argument, where its problems are said
    if (a == "--") break;  // the rest is the application's: EAL stops here
    if (a.size() < 2 || a[0] != '-') continue;  // not an option: EAL leaves it to the application
    std::string name, value;
    bool hasValue = false;
    Arg arg;
    if (a[1] == '-') {
      const size_t eq = a.find('=');
      std::string why;
      const LongOption* o = findLong(std::string_view(a).substr(2, eq == std::string::npos ? std::string::npos : eq - 2), &why);
      if (!o) {
        problems.push_back({i, why});
        continue;
      }
      name = "--" + std::string(o->name);
      arg = o->arg;
      if (eq != std::string::npos) {
        if (arg == Arg::kNone) {
          problems.push_back({i, name + " takes no value (EAL refuses " + a + ")"});
          continue;
        }
        value = a.substr(eq + 1);
        hasValue = true;
      }
    } else {
      // Short options, grouped as getopt allows ("-vh"); a value-taking
      // one ends the group, its value the rest or the next argument.
      size_t k = 1;
      for (; k < a.size(); ++k) {
        const std::optional<Arg> o = shortOption(a[k]);
        if (!o) {
          problems.push_back({i, std::string("EAL has no option -") + a[k]});
          break;
        }
        name = std::string("-") + a[k];
        arg = *o;
        if (arg == Arg::kRequired) {
          if (k + 1 < a.size()) {
            value = a.substr(k + 1);
            hasValue = true;
          }
          break;
        }
        given.emplace(name, std::make_pair(i, std::string()));
      }
      if (k < a.size() && !shortOption(a[k])) continue;
      if (arg != Arg::kRequired) {
        given.emplace(name, std::make_pair(i, std::string()));
        continue;
      }
    }
    if (arg == Arg::kRequired && !hasValue) {
      if (i + 1 >= args.size()) {
        problems.push_back({i, name + " needs a value, and eal_args end after it"});
        continue;
      }
      value = args[++i];
    }
    given.emplace(name, std::make_pair(optionArg, value));
  }
  auto has = [&](const char* o) { return given.count(o) != 0; };
  auto at = [&](const char* o) { return given.at(o).first; };
  auto valueOf = [&](const char* o) { return given.at(o).second; };
  if (has("--help") || has("-h"))
    problems.push_back({at(has("--help") ? "--help" : "-h"), "EAL prints its usage and exits: keeld would never start"});
  if (has("--iova-mode") && valueOf("--iova-mode") != "pa" && valueOf("--iova-mode") != "va")
    problems.push_back({at("--iova-mode"), "--iova-mode must be pa or va, got \"" + valueOf("--iova-mode") + "\""});
  if (has("--proc-type")) {
    std::string v = valueOf("--proc-type");
    std::string lower = v;  // EAL compares without case (strncasecmp)
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (lower != "primary" && lower != "secondary" && lower != "auto")
      problems.push_back({at("--proc-type"), "--proc-type must be primary, secondary or auto, got \"" + v + "\""});
  }
  if (has("--vfio-intr")) {
    const std::string v = valueOf("--vfio-intr");
    if (v != "legacy" && v != "msi" && v != "msix")
      problems.push_back({at("--vfio-intr"), "--vfio-intr must be legacy, msi or msix, got \"" + v + "\""});
  }
  if (has("-n")) {
    // EAL reads it with atoi() and refuses only 0 (so "abc" too).
    const std::string v = valueOf("-n");
    if (std::atoi(v.c_str()) == 0)
      problems.push_back({at("-n"), "-n (memory channels) must be a number other than 0, got \"" + v + "\""});
  }
  if (has("-m") && has("--socket-mem"))
    problems.push_back({at("--socket-mem"), "EAL refuses -m and --socket-mem together (eal_args[" +
                                                std::to_string(at("-m")) + "] gives -m)"});
  // --huge-unlink alone or =always unlinks before mapping, which --no-huge
  // refuses; =existing and =never do not.
  if (has("--no-huge") && has("--huge-unlink") &&
      (valueOf("--huge-unlink").empty() || valueOf("--huge-unlink") == "always"))
    problems.push_back({at("--huge-unlink"), "EAL refuses --huge-unlink with --no-huge (no hugepage files to unlink: "
                                             "leave it out of a --no-huge run)"});
  if (has("--no-huge") && has("--in-memory"))
    problems.push_back({at("--in-memory"), "EAL refuses --in-memory with --no-huge (22.11 runs --no-huge in legacy "
                                           "memory mode, which --in-memory excludes: --no-huge alone keeps no files)"});
  if (has("--legacy-mem") && has("--in-memory"))
    problems.push_back({at("--legacy-mem"), "EAL refuses --legacy-mem with --in-memory"});
  if ((has("--legacy-mem") || has("--no-huge")) && has("--match-allocations"))
    problems.push_back({at("--match-allocations"), "EAL refuses --match-allocations in legacy memory mode (" +
                                                       std::string(has("--legacy-mem") ? "--legacy-mem" : "--no-huge") +
                                                       ")"});
  const char* allow = has("-a") ? "-a" : has("--allow") ? "--allow" : nullptr;
  const char* block = has("-b") ? "-b" : has("--block") ? "--block" : nullptr;
  if (allow && block)
    problems.push_back({at(block), std::string("EAL refuses an allow list (") + allow + ") and a block list (" + block +
                                       ") together"});
  std::sort(problems.begin(), problems.end(), [](const EalArgProblem& x, const EalArgProblem& y) { return x.arg < y.arg; });
  return problems;
}

}  // namespace keel

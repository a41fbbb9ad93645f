// SPDX-License-Identifier: Apache-2.0
#include "control/eal_lcores.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>

namespace keel {
namespace {

void skipBlanks(const std::string& s, size_t& i) {
  while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
}

// A non-negative decimal at s[i..], advancing i; nullopt if none.
std::optional<unsigned> number(const std::string& s, size_t& i) {
  size_t start = i;
  unsigned long v = 0;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) {
    v = v * 10 + static_cast<unsigned long>(s[i] - '0');
    if (v > 1u << 20) return std::nullopt;
    ++i;
  }
  if (i == start) return std::nullopt;
  return static_cast<unsigned>(v);
}

// "a" or "a-b" at s[i..], blanks around each part skipped: *lo = a, *hi =
// b (or a). How a reversed range counts is the caller's.
bool range(const std::string& s, size_t& i, unsigned* lo, unsigned* hi) {
  skipBlanks(s, i);
  auto a = number(s, i);
  if (!a) return false;
  skipBlanks(s, i);
  *lo = *hi = *a;
  if (i < s.size() && s[i] == '-') {
    ++i;
    skipBlanks(s, i);
    auto e = number(s, i);
    if (!e) return false;
    skipBlanks(s, i);
    *hi = *e;
  }
  return true;
}

// `--lcores`: a set at s[i..]: a number, a range a-b (either way round), or
// a group (a,b-c,...); blanks skipped.
bool idSet(const std::string& s, size_t& i, std::set<unsigned>& out) {
  auto item = [&]() {
    unsigned a, b;
    if (!range(s, i, &a, &b)) return false;
    for (unsigned v = std::min(a, b); v <= std::max(a, b); ++v) out.insert(v);
    return true;
  };
  skipBlanks(s, i);
  if (i < s.size() && s[i] == '(') {
    ++i;
    for (;;) {
      if (!item()) return false;
      if (i < s.size() && s[i] == ',') {
        ++i;
        continue;
      }
      if (i < s.size() && s[i] == ')') {
        ++i;
        skipBlanks(s, i);
        return true;
      }
      return false;
    }
  }
  return item();
}

// `--lcores`: <lcores[@cpus]>[,<lcores[@cpus]>...].
bool lcoreMap(const std::string& s, EalLcores& out) {
  size_t i = 0;
  for (;;) {
    std::set<unsigned> lcores, cpus;
    if (!idSet(s, i, lcores)) return false;
    if (i < s.size() && s[i] == '@') {
      ++i;
      if (!idSet(s, i, cpus)) return false;
    } else {
      cpus = lcores;
    }
    out.lcores.insert(lcores.begin(), lcores.end());
    out.cpus.insert(cpus.begin(), cpus.end());
    if (i == s.size()) return true;
    if (s[i] != ',') return false;
    ++i;
  }
}

// `-l`: numbers and ranges separated by commas, blanks skipped; as EAL's
// corelist, a reversed range adds nothing.
bool coreList(const std::string& s, EalLcores& out) {
  size_t i = 0;
  for (;;) {
    unsigned a, b;
    if (!range(s, i, &a, &b)) return false;
    for (unsigned v = a; v <= b; ++v) {
      out.lcores.insert(v);
      out.cpus.insert(v);
    }
    if (i == s.size()) return true;
    if (s[i] != ',') return false;
    ++i;
  }
}

// `-c`: a hexadecimal mask (0x optional, blanks around it skipped), bit n =
// lcore n on CPU n.
bool coreMask(const std::string& text, EalLcores& out) {
  size_t b = 0, e = text.size();
  while (b < e && (text[b] == ' ' || text[b] == '\t')) ++b;
  while (e > b && (text[e - 1] == ' ' || text[e - 1] == '\t')) --e;
  std::string s = text.substr(b, e - b);
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) s = s.substr(2);
  if (s.empty()) return false;
  unsigned bit = 0;
  for (size_t k = s.size(); k-- > 0; bit += 4) {
    const char c = static_cast<char>(std::tolower(static_cast<unsigned char>(s[k])));
    int v;
    if (c >= '0' && c <= '9') v = c - '0';
    else if (c >= 'a' && c <= 'f') v = c - 'a' + 10;
    else return false;
    for (unsigned b4 = 0; b4 < 4; ++b4)
      if (v & (1 << b4)) {
        out.lcores.insert(bit + b4);
        out.cpus.insert(bit + b4);
      }
  }
  return true;
}

// The long option `arg` names, as getopt_long matches an abbreviation:
// "lcores" for --lc.., "main-lcore" for --mai..; "" for any other.
std::string longOption(const std::string& arg, std::string* inlineValue, bool* hasInline) {
  if (arg.size() < 3 || arg.compare(0, 2, "--") != 0) return "";
  const size_t eq = arg.find('=');
  const std::string name = arg.substr(2, eq == std::string::npos ? std::string::npos : eq - 2);
  *hasInline = eq != std::string::npos;
  if (*hasInline) *inlineValue = arg.substr(eq + 1);
  if (name.size() >= 2 && std::string("lcores").compare(0, name.size(), name) == 0) return "lcores";
  if (name.size() >= 3 && std::string("main-lcore").compare(0, name.size(), name) == 0) return "main-lcore";
  return "";
}

}  // namespace

EalLcores EalLcores::fromCpus(const std::set<unsigned>& cpus, std::optional<unsigned> main) {
  EalLcores e;
  e.lcores = cpus;
  e.cpus = cpus;
  e.mainGiven = main.has_value();
  e.mainLcore = main ? *main : (cpus.empty() ? 0 : *cpus.begin());
  return e;
}

std::string EalLcores::listText(const std::set<unsigned>& ids) {
  std::string out;
  for (auto it = ids.begin(); it != ids.end();) {
    unsigned first = *it, last = *it;
    for (++it; it != ids.end() && *it == last + 1; ++it) last = *it;
    if (!out.empty()) out += ",";
    out += std::to_string(first);
    if (last != first) out += "-" + std::to_string(last);
  }
  return out;
}

EalLcoresResult readEalLcores(const std::vector<std::string>& args, unsigned maxLcore) {
  EalLcoresResult r;
  std::optional<EalLcores> set;
  std::optional<size_t> setArg;
  for (size_t k = 0; k < args.size(); ++k) {
    const std::string& a = args[k];
    std::string opt, value;
    const size_t at = k;
    bool hasValue = false;  // within `a`: "--lcores=...", "-l0-2"
    if (const std::string name = longOption(a, &value, &hasValue); !name.empty()) {
      opt = "--" + name;
    } else if (a == "-l" || a == "-c") {
      opt = a;
    } else if (a.size() > 2 && (a.compare(0, 2, "-l") == 0 || a.compare(0, 2, "-c") == 0)) {
      opt = a.substr(0, 2);
      value = a.substr(2);
      hasValue = true;
    } else {
      continue;
    }
    if (!hasValue) {  // the next argument is the value
      if (k + 1 >= args.size()) {
        r.error = a + " needs a value";
        r.arg = at;
        return r;
      }
      value = args[++k];
    }
    if (opt == "--main-lcore") {
      // As EAL: strtol(value, base 0), the whole value, below RTE_MAX_LCORE.
      errno = 0;
      char* end = nullptr;
      const long v = std::strtol(value.c_str(), &end, 0);
      if (errno != 0 || end == value.c_str() || *end != '\0') {
        r.warning = opt + " " + value + ": keel cannot read it as an lcore id (EAL checks it at start)";
        r.arg = at;
        return r;
      }
      if (v < 0 || static_cast<unsigned long>(v) >= maxLcore) {
        r.error = "--main-lcore " + value + ": not an lcore id below RTE_MAX_LCORE (" + std::to_string(maxLcore) +
                  "): EAL refuses it";
        r.arg = at;
        return r;
      }
      r.mainLcore = static_cast<unsigned>(v);
      continue;
    }
    if (setArg) {
      r.error = opt + ": EAL refuses more than one of -l, -c and --lcores (the first is eal_args[" +
                std::to_string(*setArg) + "])";
      r.arg = at;
      return r;
    }
    EalLcores e;
    const bool ok = opt == "-c" ? coreMask(value, e) : opt == "-l" ? coreList(value, e) : lcoreMap(value, e);
    if (!ok) {
      r.warning = opt + " " + value + ": keel cannot read it as " +
                  (opt == "-c"   ? std::string("a hexadecimal core mask like 0x7")
                   : opt == "-l" ? std::string("a core list like 1-3,5")
                                 : std::string("an lcore map like 1-3,5 or (1-3)@(0,1)")) +
                  " (EAL checks it at start)";
      r.arg = at;
      return r;
    }
    if (e.lcores.empty()) {
      r.error = opt + " " + value + ": names no lcore: EAL refuses it";
      r.arg = at;
      return r;
    }
    if (*e.lcores.rbegin() >= maxLcore) {
      r.error = opt + " " + value + ": lcore " + std::to_string(*e.lcores.rbegin()) +
                " is not below RTE_MAX_LCORE (" + std::to_string(maxLcore) + "): EAL refuses it";
      r.arg = at;
      return r;
    }
    e.source = opt + " " + value;
    set = std::move(e);
    setArg = at;
  }
  if (!set) return r;
  if (r.mainLcore) {
    set->mainLcore = *r.mainLcore;
    set->mainGiven = true;
  } else {
    set->mainLcore = *set->lcores.begin();
  }
  r.lcores = std::move(set);
  return r;
}

std::optional<std::set<unsigned>> parseCpuList(const std::string& text) {
  std::string s = text;
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  std::set<unsigned> out;
  size_t i = 0;
  if (s.empty()) return out;
  for (;;) {
    if (!idSet(s, i, out)) return std::nullopt;
    if (i == s.size()) return out;
    if (s[i] != ',') return std::nullopt;
    ++i;
  }
}

}  // namespace keel

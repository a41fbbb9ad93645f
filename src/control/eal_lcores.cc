// SPDX-License-Identifier: Apache-2.0
#include "control/eal_lcores.h"

#include <cctype>
#include <cstdlib>

namespace keel {
namespace {

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

// A set at s[i..]: a number, a range a-b, or a group (a,b-c,...).
bool idSet(const std::string& s, size_t& i, std::set<unsigned>& out) {
  auto item = [&]() {
    auto a = number(s, i);
    if (!a) return false;
    unsigned b = *a;
    if (i < s.size() && s[i] == '-') {
      ++i;
      auto e = number(s, i);
      if (!e || *e < *a) return false;
      b = *e;
    }
    for (unsigned v = *a; v <= b; ++v) out.insert(v);
    return true;
  };
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
        return true;
      }
      return false;
    }
  }
  return item();
}

// `-l` / `--lcores`: <lcores[@cpus]>[,<lcores[@cpus]>...].
bool lcoreMap(const std::string& s, EalLcores& out) {
  size_t i = 0;
  if (s.empty()) return false;
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

// `-c`: a hexadecimal mask, bit n = lcore n on CPU n.
bool coreMask(std::string s, EalLcores& out) {
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) s = s.substr(2);
  if (s.empty()) return false;
  unsigned bit = 0;
  for (size_t k = s.size(); k-- > 0; bit += 4) {
    const char c = static_cast<char>(std::tolower(static_cast<unsigned char>(s[k])));
    int v;
    if (c >= '0' && c <= '9') v = c - '0';
    else if (c >= 'a' && c <= 'f') v = c - 'a' + 10;
    else return false;
    for (unsigned b = 0; b < 4; ++b)
      if (v & (1 << b)) {
        out.lcores.insert(bit + b);
        out.cpus.insert(bit + b);
      }
  }
  return !out.lcores.empty();
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
  std::optional<unsigned> main;
  for (size_t k = 0; k < args.size(); ++k) {
    const std::string& a = args[k];
    // The option and its value: "-l 0-2", "-l0-2", "--lcores=..." or "--lcores ...".
    std::string opt, value;
    for (const char* o : {"--lcores", "--main-lcore", "-l", "-c"}) {
      const std::string name = o;
      if (a == name) {
        opt = name;
        if (k + 1 >= args.size()) {
          r.error = name + " needs a value";
          r.errorArg = k;
          return r;
        }
        value = args[++k];
        break;
      }
      const bool longOpt = name.size() > 2;
      if (longOpt && a.rfind(name + "=", 0) == 0) {
        opt = name;
        value = a.substr(name.size() + 1);
        break;
      }
      if (!longOpt && a.size() > 2 && a.rfind(name, 0) == 0) {
        opt = name;
        value = a.substr(2);
        break;
      }
    }
    if (opt.empty()) continue;
    if (opt == "--main-lcore") {
      size_t i = 0;
      main = number(value, i);
      if (!main || i != value.size()) {
        r.error = "--main-lcore " + value + ": not an lcore id";
        r.errorArg = k;
        return r;
      }
      continue;
    }
    EalLcores e;
    const bool ok = opt == "-c" ? coreMask(value, e) : lcoreMap(value, e);
    if (!ok) {
      r.error = opt + " " + value + ": not " +
                (opt == "-c" ? std::string("a hexadecimal core mask like 0x7")
                             : std::string("a list of lcores like 1-3,5 or (1-3)@(0,1)"));
      r.errorArg = k;
      return r;
    }
    if (*e.lcores.rbegin() >= maxLcore) {
      r.error = opt + " " + value + ": lcore " + std::to_string(*e.lcores.rbegin()) +
                " is not below RTE_MAX_LCORE (" + std::to_string(maxLcore) + ")";
      r.errorArg = k;
      return r;
    }
    e.source = opt + " " + value;
    set = std::move(e);  // EAL takes the last one given
  }
  r.mainLcore = main;
  if (!set) return r;
  if (main) {
    set->mainLcore = *main;
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

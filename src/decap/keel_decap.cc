// SPDX-License-Identifier: Apache-2.0
// keel-decap: attaches the real-side IPIP/IP6IP6 decapsulator
// (bpf/decap.bpf.c) to an interface and leaves it there.
//
//   keel-decap attach IFACE [--mode native|generic] [--allow-source PREFIX]... [--vip PREFIX]...
//                    [--pin-root DIR] [-o table|json]
//   keel-decap detach IFACE [--pin-root DIR] [-o table|json]
//   keel-decap status IFACE [--pin-root DIR] [-o table|json]
//   keel-decap --version
//
// The XDP attachment is a bpf_link pinned at PIN_ROOT/IFACE/link (default
// /sys/fs/bpf/keel-decap), so this process can exit and a later process can
// detach it or read what is pinned beside it: the counters (stats), the
// program (prog) and its read-only data (prog_rodata, the --allow-source
// and --vip lists), through which status reads them without CAP_SYS_ADMIN.
#include <CLI/CLI.hpp>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/address.h"
#include "common/bpffs.h"
#include "common/fd.h"
#include "common/output_flag.h"
#include "common/status.h"
// encap.h first: the skeleton's .rodata holds its struct keel_decap_prefix.
#include "keel/encap.h"
#include "decap.skel.h"

namespace {

constexpr const char* kDefaultPinRoot = "/sys/fs/bpf/keel-decap";
// The pins of one attachment, in PIN_ROOT/IFACE, in the order attach makes
// them. link keeps the program attached; stats are its counters; prog and
// prog_rodata let status reach the program's .rodata (the --allow-source
// list) through files, because opening a program or map by id needs
// CAP_SYS_ADMIN (keel-decap@.service lacks it). keeld pins its own program
// the same way, under the same names.
constexpr const char* kPins[] = {"link", "stats", "prog", "prog_rodata"};
const char* const kReasonNames[] = {KEEL_DECAP_REASON_NAMES};
static_assert(std::size(kReasonNames) == KEEL_DECAP_R_MAX, "a name for every enum keel_decap_reason");

struct Args {
  std::string command;  // the subcommand given: attach, detach or status
  std::string iface;
  std::string mode = "native";
  std::string pinRoot = kDefaultPinRoot;
  std::string output = "table";  // -o, every command's: table or json
  std::vector<std::string> allowText;  // --allow-source, as given
  std::vector<keel_decap_prefix> allow;
  std::vector<std::string> vipText;  // --vip, as given
  std::vector<keel_decap_prefix> vip;
};

// What the loaded program decapsulates: its --allow-source and --vip lists.
struct Lists {
  std::vector<keel_decap_prefix> allow;
  std::vector<keel_decap_prefix> vip;
};

// "ADDR/LEN" or "ADDR" (a host): keel_decap_prefix as the program compares
// it, with the host bits cleared. Empty on success, else what is wrong.
std::string parsePrefix(const std::string& text, keel_decap_prefix* out) {
  const std::string what = text + ": ";
  const auto p = keel::IpPrefix::parse(text, /*lengthOptional=*/true);
  if (!p) {
    const auto addr = keel::IpAddress::parse(text.substr(0, text.find('/')));
    if (!addr) return what + "not an IPv4 or IPv6 address";
    return what + "the prefix length must be 0.." + std::to_string(addr->isV4() ? 32 : 128) +
           (keel::IpPrefix::lengthHasLeadingZero(text) ? ", without leading zeros" : "");
  }
  // The program compares address words under the mask: host bits cleared.
  const std::array<uint8_t, 16> m = p->maskBytes();
  std::array<uint8_t, 16> a = p->address.bytes();
  for (size_t i = 0; i < a.size(); i++) a[i] &= m[i];
  *out = keel_decap_prefix{};
  std::memcpy(out->addr, a.data(), 16);
  std::memcpy(out->mask, m.data(), 16);
  out->family = p->address.family();
  return "";
}

// "ADDR/LEN" of a prefix as the program holds it (host bits cleared), so
// attach and status describe the list in the same words.
std::string prefixText(const keel_decap_prefix& p) {
  if (p.family != KEEL_AF_INET && p.family != KEEL_AF_INET6) return "?(family " + std::to_string(p.family) + ")";
  int len = 0;
  for (__u32 w : p.mask) len += __builtin_popcount(w);
  return keel::IpAddress::fromWords(p.addr, p.family).toString() + "/" + std::to_string(len);
}

// `none` for an empty list, else "`some` A/N, B/M": what attach prints and
// status repeats.
std::string listDescription(const std::vector<keel_decap_prefix>& list, const char* none, const char* some) {
  if (list.empty()) return none;
  std::string s = std::string(some) + " ";
  for (size_t i = 0; i < list.size(); i++) s += (i ? ", " : "") + prefixText(list[i]);
  return s;
}
// "any source" or "sources A/N, B/M" (--allow-source).
std::string allowDescription(const std::vector<keel_decap_prefix>& allow) {
  return listDescription(allow, "any source", "sources");
}
// "any local address" or "VIPs A/N, B/M" (--vip).
std::string vipDescription(const std::vector<keel_decap_prefix>& vip) {
  return listDescription(vip, "any local address", "VIPs");
}

// An interface name is bytes, not necessarily UTF-8: replace, never throw.
std::string jsonText(const nlohmann::ordered_json& j) {
  return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

// -o json: what a command did, or its error, as one JSON object on one line
// of standard output (the messages stay on standard error). Set once the
// command line is parsed; fail() reads it.
bool jsonOutput = false;

// keelctl's error shape (src/cli/context.h, Context::printError), so a
// script reads one shape from both tools: {"error": {"code": "usage" (exit
// 2) or "failed" (exit 1), "message"}}.
void printJsonError(const char* code, const std::string& message) {
  std::printf("%s\n", jsonText(nlohmann::ordered_json{{"error", {{"code", code}, {"message", message}}}}).c_str());
}

// keel-decap attaches through an XDP bpf_link (Linux 5.9): an older kernel
// answers EINVAL, which says nothing; said when uname's release is older.
std::string olderThan59Hint() {
  struct utsname u {};
  if (::uname(&u) != 0) return "";
  int major = 0, minor = 0;
  if (std::sscanf(u.release, "%d.%d", &major, &minor) != 2) return "";
  if (major > 5 || (major == 5 && minor >= 9)) return "";
  return std::string(" (keel-decap attaches with an XDP link, which needs Linux 5.9 or later; this kernel is ") +
         u.release + ")";
}

int fail(const std::string& msg) {
  if (jsonOutput) printJsonError("failed", msg);
  std::fprintf(stderr, "keel-decap: %s\n", msg.c_str());
  return 1;
}

using keel::errnoText;

// The command line (CLI11). Every check is made while parsing, so a bad
// argument stops keel-decap before it touches anything; usage errors exit 2.
class CommandLine {
 public:
  CommandLine() : app_("keel-decap: decapsulate keel's IPIP/IP6IP6 tunnels on a real server with XDP.\n"
                       "  keel-decap attach IFACE [--mode native|generic] [--allow-source PREFIX]... [--vip PREFIX]...\n"
                       "                    [--pin-root DIR] [-o table|json]\n"
                       "  keel-decap detach IFACE [--pin-root DIR] [-o table|json]\n"
                       "  keel-decap status IFACE [--pin-root DIR] [-o table|json]\n"
                       "See keel-decap(8), and 'keel-decap COMMAND --help' for a command's options.",
                       "keel-decap") {
    app_.require_subcommand(1, 1);
    app_.set_version_flag("--version", std::string("keel-decap ") + KEEL_VERSION);
    app_.footer(
        "Exit status: 0 success, 1 failure (the message says what and where), 2 usage error,\n"
        "3 from status when keel-decap is not attached.");
    app_.failure_message([](const CLI::App* app, const CLI::Error& e) {
      std::string cmd = "keel-decap";
      for (const CLI::App* sub : app->get_subcommands()) cmd += " " + sub->get_name();
      return "keel-decap: " + std::string(e.what()) + "\nRun '" + cmd + " --help' for the usage.\n";
    });

    CLI::App* attach = command("attach", "load the decapsulator and attach it to IFACE (pinned: it stays)");
    attach->add_option("--mode", a_.mode, "XDP mode: native (driver) or generic (skb, any driver)")
        ->type_name("MODE")
        ->check(CLI::IsMember({"native", "generic"}))
        ->capture_default_str();
    prefixOption(attach, "--allow-source", a_.allowText, "decapsulate only tunnels from outer sources in PREFIX",
                 KEEL_DECAP_MAX_ALLOW, "any source");
    prefixOption(attach, "--vip", a_.vipText, "decapsulate only tunnels whose inner destination is in PREFIX",
                 KEEL_DECAP_MAX_VIP, "any local address");
    command("detach", "detach keel-decap from IFACE and remove its pins");
    command("status", "show the attachment, allowed sources, VIPs and counters on IFACE");
  }

  // Parses argv into args(). Returns -1 to go on, else the exit status
  // (0 after --help, 2 on a usage error, the message printed).
  int parse(int argc, char** argv) {
    if (argc < 2) {
      std::fputs(app_.help().c_str(), stderr);
      return 2;
    }
    // CLI11 would only say "A subcommand is required".
    if (argv[1][0] != '-' && !std::count(kCommands.begin(), kCommands.end(), std::string(argv[1]))) {
      const std::string message = "unknown command '" + std::string(argv[1]) + "' (attach, detach or status)";
      if (keel::jsonOutputAsked(argc, argv)) printJsonError("usage", message);
      std::fprintf(stderr, "keel-decap: %s\nRun 'keel-decap --help' for the usage.\n", message.c_str());
      return 2;
    }
    try {
      app_.parse(argc, argv);
      for (CLI::App* sub : app_.get_subcommands()) a_.command = sub->get_name();
      // The count of --allow-source and --vip is known only when all are read.
      checkCount("--allow-source", a_.allowText, KEEL_DECAP_MAX_ALLOW);
      checkCount("--vip", a_.vipText, KEEL_DECAP_MAX_VIP);
    } catch (const CLI::ParseError& e) {
      // Usage errors exit 2, like most Unix tools; --help and --version exit 0.
      if (e.get_exit_code() != 0 && keel::jsonOutputAsked(argc, argv)) printJsonError("usage", e.what());
      return app_.exit(e) == 0 ? 0 : 2;
    }
    a_.allow = prefixes(a_.allowText);
    a_.vip = prefixes(a_.vipText);
    return -1;
  }

  const Args& args() const { return a_; }

 private:
  static inline const std::array<std::string, 3> kCommands = {"attach", "detach", "status"};

  // --allow-source's and --vip's check: the value is a prefix parsePrefix
  // takes, else what is wrong with it.
  static CLI::Validator prefixValidator() {
    return CLI::Validator(
        [](std::string& text) {
          keel_decap_prefix p;
          return parsePrefix(text, &p);
        },
        "");
  }

  // A repeatable prefix option of attach (--allow-source, --vip): one value
  // per use, so IFACE after it stays IFACE; each checked as it is read.
  static void prefixOption(CLI::App* attach, const char* name, std::vector<std::string>& into, const char* what,
                           size_t max, const char* byDefault) {
    attach
        ->add_option(name, into,
                     std::string(what) + "\n(ADDR/LEN or ADDR; repeat for up to " + std::to_string(max) +
                         "; default " + byDefault + ")")
        ->type_name("PREFIX")
        ->expected(1)
        ->allow_extra_args(false)
        ->take_all()
        ->check(prefixValidator());
  }

  // More uses of a prefix option than the program has room for.
  static void checkCount(const char* name, const std::vector<std::string>& given, size_t max) {
    if (given.size() > max)
      throw CLI::ValidationError(name, "at most " + std::to_string(max) + " prefixes, got " +
                                           std::to_string(given.size()));
  }

  // The prefixes of a prefix option's values, checked while parsing.
  static std::vector<keel_decap_prefix> prefixes(const std::vector<std::string>& texts) {
    std::vector<keel_decap_prefix> out;
    for (const std::string& text : texts) {
      keel_decap_prefix p;
      parsePrefix(text, &p);
      out.push_back(p);
    }
    return out;
  }

  // A command: IFACE, --pin-root and -o are every command's.
  CLI::App* command(const std::string& name, const char* help) {
    CLI::App* c = app_.add_subcommand(name, help);
    c->add_option("IFACE", a_.iface, "network interface")
        ->required()
        ->type_name("")
        ->check(CLI::Validator(
            [](std::string& name) -> std::string {
              if (name.empty() || name.find('/') != std::string::npos || name.size() >= IFNAMSIZ)
                return "bad interface name '" + name + "' (1.." + std::to_string(IFNAMSIZ - 1) +
                       " characters, no '/')";
              return "";
            },
            ""));
    c->add_option("--pin-root", a_.pinRoot, "directory for the pins, on a BPF filesystem")
        ->type_name("DIR")
        ->capture_default_str()
        ->check(CLI::Validator(
            [](std::string& dir) -> std::string {
              // keeld pins under /sys/fs/bpf/keel/IFACE with the same pin
              // names (prog, prog_rodata): a detach there would unpin
              // keeld's program.
              std::string d = dir;
              while (d.size() > 1 && d.back() == '/') d.pop_back();
              const std::string keeld = "/sys/fs/bpf/keel";
              if (d == keeld || d.rfind(keeld + "/", 0) == 0)
                return "'" + dir + "' is keeld's pin root (" + keeld +
                       "/IFACE holds keeld's program under the same pin names): give keel-decap another";
              return "";
            },
            ""));
    // Every command's, so that a script passes -o json whatever it runs
    // (habit 9); a command that prints a line on success prints what it did
    // as JSON instead, and its errors as keelctl's.
    c->add_option("-o,--output", a_.output, "output format: table or json")
        ->type_name("FORMAT")
        ->check(CLI::IsMember({"table", "json"}))
        ->capture_default_str();
    return c;
  }

  CLI::App app_;
  Args a_;
};

// bpffs may not be mounted on a fresh host; pinning needs it.
bool bpffsForPins(std::string* err) {
  const keel::BpffsMount m = keel::ensureBpffs();
  if (m.error != 0) {
    *err = std::string("bpffs is not mounted at ") + keel::kBpffsPath + " and mounting it failed: " +
           errnoText(m.error);
    return false;
  }
  if (!m.mounted) return true;
  // In a private mount namespace (`ip netns exec` makes one) this bpffs, and
  // the pin that keeps the program attached, vanish when we exit.
  std::fprintf(stderr,
               "keel-decap: mounted bpffs at %s; if this runs in a private mount namespace (ip netns exec),\n"
               "            use 'nsenter --net=/run/netns/NAME' instead or the attachment ends with this process\n",
               keel::kBpffsPath);
  return true;
}

// bpf_fib_lookup only answers when forwarding is on for the device it is
// asked about; decap.bpf.c asks about lo, where forwarding changes nothing.
void enableLoForwarding() {
  for (const char* path : {"/proc/sys/net/ipv4/conf/lo/forwarding", "/proc/sys/net/ipv6/conf/lo/forwarding"}) {
    std::ifstream in(path);
    std::string v;
    if (!(in >> v)) continue;  // no IPv6 on this host
    if (v == "1") continue;
    std::ofstream out(path);
    out << "1\n";
    out.flush();
    if (out) {
      std::fprintf(stderr, "keel-decap: set %s = 1 (lets bpf_fib_lookup classify local addresses; lo never forwards)\n", path);
    } else {
      std::fprintf(stderr, "keel-decap: warning: could not set %s = 1; local inner destinations will not be decapsulated\n", path);
    }
  }
}

int attach(const Args& a) {
  unsigned ifindex = if_nametoindex(a.iface.c_str());
  if (!ifindex) return fail("no interface '" + a.iface + "'");
  std::string err;
  if (a.pinRoot.rfind(keel::kBpffsPath, 0) == 0 && !bpffsForPins(&err)) return fail(err);
  std::string dir = a.pinRoot + "/" + a.iface;
  if (access((dir + "/link").c_str(), F_OK) == 0)
    return fail("already attached to " + a.iface + " (" + dir + "/link exists); run 'keel-decap detach " + a.iface +
                (a.pinRoot == kDefaultPinRoot ? std::string() : " --pin-root " + a.pinRoot) + "' first");

  enableLoForwarding();
  keel_decap* skel = keel_decap::open();
  if (!skel) return fail("open decap program: " + errnoText(errno));
  unsigned lo = if_nametoindex("lo");
  skel->rodata->keel_decap_fib_ifindex = lo ? lo : 1;
  for (size_t i = 0; i < a.allow.size(); i++) skel->rodata->keel_decap_allow[i] = a.allow[i];
  skel->rodata->keel_decap_allow_n = static_cast<__u32>(a.allow.size());
  for (size_t i = 0; i < a.vip.size(); i++) skel->rodata->keel_decap_vip[i] = a.vip[i];
  skel->rodata->keel_decap_vip_n = static_cast<__u32>(a.vip.size());
  int rc = keel_decap::load(skel);
  if (rc) {
    keel_decap::destroy(skel);
    return fail("load decap program: " + errnoText(rc));
  }
  LIBBPF_OPTS(bpf_link_create_opts, lopts);
  lopts.flags = a.mode == "generic" ? XDP_FLAGS_SKB_MODE : XDP_FLAGS_DRV_MODE;
  int linkFd = bpf_link_create(bpf_program__fd(skel->progs.decap), static_cast<int>(ifindex), BPF_XDP, &lopts);
  if (linkFd < 0) {
    int e = errno;
    keel_decap::destroy(skel);
    return fail("attach to " + a.iface + " in " + a.mode + " mode: " + errnoText(e) +
                (e == EBUSY || e == EEXIST ? " (another XDP program is attached)" : olderThan59Hint()));
  }
  std::string result;
  // The root may go between the two mkdirs (a detach of another interface
  // removes it when empty): made again, a few times.
  for (int tries = 0;; tries++) {
    result.clear();
    if (mkdir(a.pinRoot.c_str(), 0700) != 0 && errno != EEXIST) {
      result = "mkdir " + a.pinRoot + ": " + errnoText(errno);
    } else if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
      const int e = errno;
      result = "mkdir " + dir + ": " + errnoText(e);
      if (e == ENOENT && tries < 10) continue;
    }
    break;
  }
  if (result.empty()) {
    // There is no link pin (checked above), so anything here belongs to no
    // attachment: an older keel-decap's detach removed only link and stats.
    for (const char* name : kPins) unlink((dir + "/" + name).c_str());
    const int fds[] = {linkFd, bpf_map__fd(skel->maps.decap_stats), bpf_program__fd(skel->progs.decap),
                       bpf_map__fd(skel->maps.rodata)};
    static_assert(std::size(fds) == std::size(kPins));
    for (size_t i = 0; i < std::size(kPins) && result.empty(); i++) {
      const std::string path = dir + "/" + kPins[i];
      if (bpf_obj_pin(fds[i], path.c_str()) != 0) {
        result = "pin " + path + ": " + errnoText(errno);
        for (size_t j = 0; j < i; j++) unlink((dir + "/" + kPins[j]).c_str());
      }
    }
  }
  if (!result.empty()) {
    // Closing the only link fd detaches again: nothing is left behind.
    close(linkFd);
    keel_decap::destroy(skel);
    keel::removePinDirIfEmpty(dir);
    return fail(result);
  }
  if (a.output == "json") {
    // The lists as status -o json has them ([]: any).
    nlohmann::ordered_json j{{"interface", a.iface}, {"attached", true}, {"mode", a.mode}, {"pin_dir", dir},
                             {"allow_source", nlohmann::ordered_json::array()},
                             {"vip", nlohmann::ordered_json::array()}};
    for (const auto& p : a.allow) j["allow_source"].push_back(prefixText(p));
    for (const auto& p : a.vip) j["vip"].push_back(prefixText(p));
    std::printf("%s\n", jsonText(j).c_str());
  } else {
    std::printf("keel-decap: attached to %s (%s mode), pinned at %s, decapsulating tunnels from %s to %s\n",
                a.iface.c_str(), a.mode.c_str(), dir.c_str(), allowDescription(a.allow).c_str(),
                vipDescription(a.vip).c_str());
  }
  // Attached as asked (existing units pass no options), but an open
  // decapsulator lets anyone who reaches this interface deliver packets with
  // any source to any address of this host: say so, and what restricts it.
  if (a.allow.empty() && a.vip.empty())
    std::fprintf(stderr,
                 "keel-decap: warning: %s decapsulates tunnel packets from any source to any local address of this\n"
                 "            host (its management address too), so anyone who can reach it can deliver packets with\n"
                 "            a forged source; restrict it with --allow-source PREFIX (the balancers' tunnel sources)\n"
                 "            and --vip PREFIX (the VIPs), keel-decap(8)\n",
                 a.iface.c_str());
  close(linkFd);
  keel_decap::destroy(skel);
  return 0;
}

int detach(const Args& a) {
  std::string dir = a.pinRoot + "/" + a.iface;
  keel::Fd link(bpf_obj_get((dir + "/link").c_str()));
  if (link.get() < 0) return fail("not attached to " + a.iface + " by keel-decap (no " + dir + "/link)");
  int rc = bpf_link_detach(link.get());
  if (rc) return fail("detach from " + a.iface + ": " + errnoText(errno));
  for (const char* name : kPins) unlink((dir + "/" + name).c_str());
  keel::removePinDirIfEmpty(dir);
  if (a.output == "json")
    std::printf("%s\n", jsonText(nlohmann::ordered_json{{"interface", a.iface}, {"attached", false},
                                                        {"detached", true}})
                            .c_str());
  else
    std::printf("keel-decap: detached from %s\n", a.iface.c_str());
  return 0;
}

using Rodata = keel_decap::keel_decap__rodata;

// A program's id and the ids of the maps it uses, from an fd we hold (this
// needs no CAP_SYS_ADMIN; opening the program by id does). Empty string on
// success, else why not.
std::string progMaps(int fd, const std::string& where, __u32* id, std::vector<__u32>* mapIds) {
  bpf_prog_info pinfo{};
  __u32 len = sizeof pinfo;
  if (bpf_obj_get_info_by_fd(fd, &pinfo, &len)) return "read " + where + ": " + errnoText(errno);
  mapIds->assign(pinfo.nr_map_ids, 0);
  pinfo = bpf_prog_info{};
  pinfo.nr_map_ids = static_cast<__u32>(mapIds->size());
  pinfo.map_ids = reinterpret_cast<__u64>(mapIds->data());
  len = sizeof pinfo;
  if (bpf_obj_get_info_by_fd(fd, &pinfo, &len)) return "read " + where + "'s maps: " + errnoText(errno);
  mapIds->resize(std::min<size_t>(mapIds->size(), pinfo.nr_map_ids));
  *id = pinfo.id;
  return "";
}

bool isRodata(const bpf_map_info& info) {
  const std::string name = info.name;
  return name.size() >= 7 && name.compare(name.size() - 7, 7, ".rodata") == 0;
}

// The lists in a keel-decap program's .rodata map (fd, described by info):
// keel_decap_allow[keel_decap_allow_n] and keel_decap_vip[keel_decap_vip_n],
// value 0. Another keel-decap version may lay its .rodata out differently
// (one from before --vip has a smaller one): then why it is not read, as
// always.
std::string listsFromRodata(int fd, const bpf_map_info& info, const std::string& where, Lists* out) {
  if (info.value_size != sizeof(Rodata))
    return where + "'s .rodata is " + std::to_string(info.value_size) + " bytes, this keel-decap's " +
           std::to_string(sizeof(Rodata)) + " (attached by another version?)";
  Rodata ro{};
  __u32 key = 0;
  if (bpf_map_lookup_elem(fd, &key, &ro)) return "read " + where + "'s .rodata: " + errnoText(errno);
  if (ro.keel_decap_allow_n > KEEL_DECAP_MAX_ALLOW)
    return where + "'s .rodata holds " + std::to_string(ro.keel_decap_allow_n) + " source prefixes, more than " +
           std::to_string(KEEL_DECAP_MAX_ALLOW) + " (attached by another version?)";
  if (ro.keel_decap_vip_n > KEEL_DECAP_MAX_VIP)
    return where + "'s .rodata holds " + std::to_string(ro.keel_decap_vip_n) + " VIP prefixes, more than " +
           std::to_string(KEEL_DECAP_MAX_VIP) + " (attached by another version?)";
  out->allow.assign(ro.keel_decap_allow, ro.keel_decap_allow + ro.keel_decap_allow_n);
  out->vip.assign(ro.keel_decap_vip, ro.keel_decap_vip + ro.keel_decap_vip_n);
  return "";
}

// The --allow-source and --vip lists of the attached program (progId, from the link),
// through the pins attach made beside the link: prog_rodata is read only if
// prog is the attached program and prog_rodata one of its maps, so a stale
// or foreign pin is never taken for the list. Opening pins (read-only)
// needs read access to the files, not CAP_SYS_ADMIN. Empty string on
// success, else why not.
std::string readListsPinned(const std::string& dir, __u32 progId, Lists* out) {
  LIBBPF_OPTS(bpf_obj_get_opts, ro, .file_flags = BPF_F_RDONLY);
  const std::string progPath = dir + "/prog", rodataPath = dir + "/prog_rodata";
  keel::Fd prog(bpf_obj_get_opts(progPath.c_str(), &ro));
  if (prog.get() < 0) {
    if (errno == ENOENT) return "no " + progPath + " (attached by an older keel-decap? detach and attach again to pin it)";
    return "open " + progPath + ": " + errnoText(errno);
  }
  __u32 pinnedId = 0;
  std::vector<__u32> mapIds;
  if (std::string err = progMaps(prog.get(), progPath, &pinnedId, &mapIds); !err.empty()) return err;
  if (pinnedId != progId)
    return progPath + " is program " + std::to_string(pinnedId) + ", not the attached " + std::to_string(progId);
  keel::Fd map(bpf_obj_get_opts(rodataPath.c_str(), &ro));
  if (map.get() < 0) return "open " + rodataPath + ": " + errnoText(errno);
  bpf_map_info minfo{};
  __u32 mlen = sizeof minfo;
  if (bpf_obj_get_info_by_fd(map.get(), &minfo, &mlen)) return "read " + rodataPath + ": " + errnoText(errno);
  if (!isRodata(minfo) || std::find(mapIds.begin(), mapIds.end(), minfo.id) == mapIds.end())
    return rodataPath + " (map " + std::to_string(minfo.id) + ") is not program " + std::to_string(progId) +
           "'s .rodata";
  return listsFromRodata(map.get(), minfo, "program " + std::to_string(progId), out);
}

// The same lists by the program's id: program -> its maps -> the one named
// "*.rodata". For attachments without the prog and prog_rodata pins (made by
// a keel-decap from before them). Opening a program or map by id needs
// CAP_SYS_ADMIN. Empty string on success, else why not.
std::string readListsById(__u32 progId, Lists* out) {
  const std::string where = "program " + std::to_string(progId);
  keel::Fd prog(bpf_prog_get_fd_by_id(progId));
  if (prog.get() < 0)
    return "open " + where + ": " + errnoText(errno) + (errno == EPERM ? " (needs CAP_SYS_ADMIN)" : "");
  __u32 id = 0;
  std::vector<__u32> mapIds;
  if (std::string err = progMaps(prog.get(), where, &id, &mapIds); !err.empty()) return err;
  for (__u32 mapId : mapIds) {
    keel::Fd map(bpf_map_get_fd_by_id(mapId));
    if (map.get() < 0) return "open map " + std::to_string(mapId) + " of " + where + ": " + errnoText(errno);
    bpf_map_info minfo{};
    __u32 mlen = sizeof minfo;
    if (bpf_obj_get_info_by_fd(map.get(), &minfo, &mlen))
      return "read map " + std::to_string(mapId) + ": " + errnoText(errno);
    if (isRodata(minfo)) return listsFromRodata(map.get(), minfo, where, out);
  }
  return where + " has no .rodata map (not keel-decap's decapsulator?)";
}

// The --allow-source and --vip lists the attached program was loaded with:
// fixed in its .rodata (keel_decap_allow, keel_decap_vip and their counts),
// so read back from the kernel, through the pins, else by id. Empty string
// on success, else why neither way worked.
std::string readLists(const std::string& dir, __u32 progId, Lists* out) {
  const std::string pinned = readListsPinned(dir, progId, out);
  if (pinned.empty()) return "";
  const std::string byId = readListsById(progId, out);
  if (byId.empty()) return "";
  return pinned + "; by id: " + byId;
}

int status(const Args& a) {
  const bool json = a.output == "json";
  std::string dir = a.pinRoot + "/" + a.iface;
  keel::Fd link(bpf_obj_get((dir + "/link").c_str()));
  if (link.get() < 0) {
    if (json) {
      std::printf("%s\n", jsonText(nlohmann::ordered_json{{"interface", a.iface}, {"attached", false}}).c_str());
    } else {
      std::printf("keel-decap: not attached to %s\n", a.iface.c_str());
    }
    return 3;
  }
  bpf_link_info info{};
  __u32 len = sizeof info;
  bpf_obj_get_info_by_fd(link.get(), &info, &len);
  std::vector<keel_counter> sums(KEEL_DECAP_R_MAX);
  keel::Fd stats(bpf_obj_get((dir + "/stats").c_str()));
  if (stats.get() >= 0) {
    int ncpu = libbpf_num_possible_cpus();
    std::vector<keel_counter> per(static_cast<size_t>(ncpu > 0 ? ncpu : 1));
    for (__u32 r = 0; r < KEEL_DECAP_R_MAX; r++) {
      if (bpf_map_lookup_elem(stats.get(), &r, per.data())) continue;
      for (const auto& c : per) {
        sums[r].packets += c.packets;
        sums[r].bytes += c.bytes;
      }
    }
  }
  Lists lists;
  const std::string listsErr = readLists(dir, info.prog_id, &lists);
  unsigned ifindex = info.xdp.ifindex;
  char name[IF_NAMESIZE] = {};
  if (json) {
    nlohmann::ordered_json j{{"interface", a.iface}, {"attached", ifindex != 0}, {"link_id", info.id},
                     {"prog_id", info.prog_id}};
    // [] is "any source" / "any local address"; when the lists cannot be
    // read, why instead.
    if (listsErr.empty()) {
      j["allow_source"] = nlohmann::ordered_json::array();
      for (const auto& p : lists.allow) j["allow_source"].push_back(prefixText(p));
      j["vip"] = nlohmann::ordered_json::array();
      for (const auto& p : lists.vip) j["vip"].push_back(prefixText(p));
    } else {
      j["allow_source_error"] = listsErr;
      j["vip_error"] = listsErr;
    }
    nlohmann::ordered_json& counters = j["counters"] = nlohmann::ordered_json::object();
    for (__u32 r = 0; r < KEEL_DECAP_R_MAX; r++)
      counters[kReasonNames[r]] = {{"packets", sums[r].packets}, {"bytes", sums[r].bytes}};
    std::printf("%s\n", jsonText(j).c_str());
    return 0;
  }
  std::printf("interface %s: %s (link %u, program %u)\n", a.iface.c_str(),
              ifindex ? (std::string("attached to ") + (if_indextoname(ifindex, name) ? name : "?")).c_str()
                      : "link pinned but detached",
              info.id, info.prog_id);
  if (listsErr.empty()) {
    std::printf("decapsulating tunnels from %s\n", allowDescription(lists.allow).c_str());
    std::printf("decapsulating tunnels to %s\n", vipDescription(lists.vip).c_str());
  } else {
    std::printf("decapsulating tunnels from: unknown (%s)\n", listsErr.c_str());
    std::printf("decapsulating tunnels to: unknown (as above)\n");
  }
  // The name column as wide as the longest name, so the numbers line up
  // (a fixed 20 let pass_outer_not_unicast push its row to the right).
  int width = 20;
  for (const char* n : kReasonNames) width = std::max(width, static_cast<int>(std::strlen(n)));
  std::printf("%-*s %14s %16s\n", width, "reason", "packets", "bytes");
  for (__u32 r = 0; r < KEEL_DECAP_R_MAX; r++) {
    std::printf("%-*s %14llu %16llu\n", width, kReasonNames[r], static_cast<unsigned long long>(sums[r].packets),
                static_cast<unsigned long long>(sums[r].bytes));
  }
  if (sums[KEEL_DECAP_R_PASS_FIB_DISABLED].packets)
    std::printf("warning: fib lookups refused; set net.ipv4.conf.lo.forwarding=1 and net.ipv6.conf.lo.forwarding=1\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CommandLine cl;
  if (int rc = cl.parse(argc, argv); rc >= 0) return rc;
  const Args& a = cl.args();
  jsonOutput = a.output == "json";
  if (a.command == "attach") return attach(a);
  if (a.command == "detach") return detach(a);
  return status(a);
}

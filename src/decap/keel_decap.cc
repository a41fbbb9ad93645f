// SPDX-License-Identifier: Apache-2.0
// keel-decap: attaches the real-side IPIP/IP6IP6 decapsulator
// (bpf/decap.bpf.c) to an interface and leaves it there.
//
//   keel-decap attach IFACE [--mode native|generic] [--pin-root DIR]
//   keel-decap detach IFACE [--pin-root DIR]
//   keel-decap status IFACE [-o json] [--pin-root DIR]
//
// The XDP attachment is a bpf_link pinned at PIN_ROOT/IFACE/link (default
// /sys/fs/bpf/keel-decap), so this process can exit and a later process can
// detach it or read the counters pinned beside it (PIN_ROOT/IFACE/stats).
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "common/address.h"
#include "common/bpffs.h"
#include "common/fd.h"
#include "common/status.h"
// encap.h first: the skeleton's .rodata holds its struct keel_decap_prefix.
#include "keel/encap.h"
#include "decap.skel.h"

namespace {

constexpr const char* kDefaultPinRoot = "/sys/fs/bpf/keel-decap";
const char* const kReasonNames[] = {KEEL_DECAP_REASON_NAMES};

struct Args {
  std::string command;
  std::string iface;
  std::string mode = "native";
  std::string pinRoot = kDefaultPinRoot;
  bool json = false;
  std::vector<std::string> allowText;  // --allow-source, as given
  std::vector<keel_decap_prefix> allow;
};

// "ADDR/LEN" or "ADDR" (a host): keel_decap_prefix as the program compares
// it, with the host bits cleared. Empty on success, else what is wrong.
std::string parsePrefix(const std::string& text, keel_decap_prefix* out) {
  const std::string what = "--allow-source " + text + ": ";
  const auto p = keel::IpPrefix::parse(text, /*lengthOptional=*/true);
  if (!p) {
    const auto addr = keel::IpAddress::parse(text.substr(0, text.find('/')));
    if (!addr) return what + "not an IPv4 or IPv6 address";
    return what + "the prefix length must be 0.." + std::to_string(addr->isV4() ? 32 : 128);
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

int usage(FILE* out) {
  std::fprintf(out,
               "usage: keel-decap attach IFACE [--mode native|generic] [--allow-source PREFIX]... [--pin-root DIR]\n"
               "       keel-decap detach IFACE [--pin-root DIR]\n"
               "       keel-decap status IFACE [-o json] [--pin-root DIR]\n");
  return out == stdout ? 0 : 2;
}

int fail(const std::string& msg) {
  std::fprintf(stderr, "keel-decap: %s\n", msg.c_str());
  return 1;
}

using keel::errnoText;

bool parseArgs(int argc, char** argv, Args* a, std::string* err) {
  std::vector<std::string> pos;
  for (int i = 1; i < argc; i++) {
    std::string s = argv[i];
    auto value = [&](const char* name) -> std::string {
      if (i + 1 >= argc) {
        *err = std::string(name) + " needs a value";
        return "";
      }
      return argv[++i];
    };
    if (s == "--mode") {
      a->mode = value("--mode");
    } else if (s == "--pin-root") {
      a->pinRoot = value("--pin-root");
    } else if (s == "--allow-source") {
      std::string v = value("--allow-source");
      keel_decap_prefix p;
      if (err->empty()) *err = parsePrefix(v, &p);
      if (err->empty() && a->allow.size() >= KEEL_DECAP_MAX_ALLOW)
        *err = "--allow-source: at most " + std::to_string(KEEL_DECAP_MAX_ALLOW) + " prefixes";
      if (err->empty()) {
        a->allow.push_back(p);
        a->allowText.push_back(v);
      }
    } else if (s == "-o") {
      std::string v = value("-o");
      if (v != "json") *err = "-o: only 'json' is supported, not '" + v + "'";
      a->json = true;
    } else if (s == "-h" || s == "--help") {
      a->command = "help";
      return true;
    } else if (!s.empty() && s[0] == '-') {
      *err = "unknown option " + s;
    } else {
      pos.push_back(s);
    }
    if (!err->empty()) return false;
  }
  if (pos.size() != 2) {
    *err = "expected a command and an interface";
    return false;
  }
  a->command = pos[0];
  a->iface = pos[1];
  if (!a->allow.empty() && a->command != "attach") {
    *err = "--allow-source is an option of attach (it is fixed when the program is loaded)";
    return false;
  }
  if (a->mode != "native" && a->mode != "generic") {
    *err = "--mode must be native or generic, not '" + a->mode + "'";
    return false;
  }
  if (a->iface.empty() || a->iface.find('/') != std::string::npos || a->iface.size() >= IFNAMSIZ) {
    *err = "bad interface name '" + a->iface + "'";
    return false;
  }
  return true;
}

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
    return fail("already attached to " + a.iface + " (" + dir + "/link exists); run 'keel-decap detach " + a.iface + "' first");

  enableLoForwarding();
  keel_decap* skel = keel_decap::open();
  if (!skel) return fail("open decap program: " + errnoText(errno));
  unsigned lo = if_nametoindex("lo");
  skel->rodata->keel_decap_fib_ifindex = lo ? lo : 1;
  for (size_t i = 0; i < a.allow.size(); i++) skel->rodata->keel_decap_allow[i] = a.allow[i];
  skel->rodata->keel_decap_allow_n = static_cast<__u32>(a.allow.size());
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
                (e == EBUSY || e == EEXIST ? " (another XDP program is attached)" : ""));
  }
  std::string result;
  if (mkdir(a.pinRoot.c_str(), 0700) != 0 && errno != EEXIST) {
    result = "mkdir " + a.pinRoot + ": " + errnoText(errno);
  } else if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    result = "mkdir " + dir + ": " + errnoText(errno);
  } else if (bpf_obj_pin(linkFd, (dir + "/link").c_str()) != 0) {
    result = "pin " + dir + "/link: " + errnoText(errno);
  } else if (bpf_obj_pin(bpf_map__fd(skel->maps.decap_stats), (dir + "/stats").c_str()) != 0) {
    result = "pin " + dir + "/stats: " + errnoText(errno);
    unlink((dir + "/link").c_str());
  }
  if (!result.empty()) {
    // Closing the only link fd detaches again: nothing is left behind.
    close(linkFd);
    keel_decap::destroy(skel);
    rmdir(dir.c_str());
    return fail(result);
  }
  std::string from = "any source";
  for (size_t i = 0; i < a.allowText.size(); i++) from = (i ? from + ", " : std::string("sources ")) + a.allowText[i];
  std::printf("keel-decap: attached to %s (%s mode), pinned at %s, decapsulating tunnels from %s\n", a.iface.c_str(),
              a.mode.c_str(), dir.c_str(), from.c_str());
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
  unlink((dir + "/link").c_str());
  unlink((dir + "/stats").c_str());
  rmdir(dir.c_str());
  std::printf("keel-decap: detached from %s\n", a.iface.c_str());
  return 0;
}

int status(const Args& a) {
  std::string dir = a.pinRoot + "/" + a.iface;
  keel::Fd link(bpf_obj_get((dir + "/link").c_str()));
  if (link.get() < 0) {
    if (a.json) {
      std::printf("{\"interface\":\"%s\",\"attached\":false}\n", a.iface.c_str());
      return 3;
    }
    std::printf("keel-decap: not attached to %s\n", a.iface.c_str());
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
  unsigned ifindex = info.xdp.ifindex;
  char name[IF_NAMESIZE] = {};
  if (a.json) {
    std::printf("{\"interface\":\"%s\",\"attached\":%s,\"link_id\":%u,\"prog_id\":%u,\"counters\":{", a.iface.c_str(),
                ifindex ? "true" : "false", info.id, info.prog_id);
    for (__u32 r = 0; r < KEEL_DECAP_R_MAX; r++) {
      std::printf("%s\"%s\":{\"packets\":%llu,\"bytes\":%llu}", r ? "," : "", kReasonNames[r],
                  static_cast<unsigned long long>(sums[r].packets), static_cast<unsigned long long>(sums[r].bytes));
    }
    std::printf("}}\n");
    return 0;
  }
  std::printf("interface %s: %s (link %u, program %u)\n", a.iface.c_str(),
              ifindex ? (std::string("attached to ") + (if_indextoname(ifindex, name) ? name : "?")).c_str()
                      : "link pinned but detached",
              info.id, info.prog_id);
  std::printf("%-20s %14s %16s\n", "reason", "packets", "bytes");
  for (__u32 r = 0; r < KEEL_DECAP_R_MAX; r++) {
    std::printf("%-20s %14llu %16llu\n", kReasonNames[r], static_cast<unsigned long long>(sums[r].packets),
                static_cast<unsigned long long>(sums[r].bytes));
  }
  if (sums[KEEL_DECAP_R_PASS_FIB_DISABLED].packets)
    std::printf("warning: fib lookups refused; set net.ipv4.conf.lo.forwarding=1 and net.ipv6.conf.lo.forwarding=1\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  std::string err;
  if (argc < 2) return usage(stderr);
  if (!parseArgs(argc, argv, &a, &err)) {
    std::fprintf(stderr, "keel-decap: %s\n", err.c_str());
    return usage(stderr);
  }
  if (a.command == "help") return usage(stdout);
  if (a.command == "attach") return attach(a);
  if (a.command == "detach") return detach(a);
  if (a.command == "status") return status(a);
  std::fprintf(stderr, "keel-decap: unknown command '%s'\n", a.command.c_str());
  return usage(stderr);
}

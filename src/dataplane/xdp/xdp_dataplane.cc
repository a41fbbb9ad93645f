// SPDX-License-Identifier: Apache-2.0
#include "common/clock.h"
#include "dataplane/xdp/xdp_dataplane.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/sysmacros.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <cstdarg>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <set>
#include <mutex>
#include <thread>
#include <utility>

#include "balancer.skel.h"
#include "common/bpffs.h"
#include "common/fd.h"
#include "common/path_lock.h"
#include "common/logging.h"
#include "dataplane/xdp/attached_program.h"
#include "dataplane/xdp/map_layout.h"
#include "dataplane/xdp/xdp_features.h"

namespace keel {
namespace {

// Pin names under <pinDir> beside the maps' (bpffs allows no '.' in names).
constexpr const char* kProgPin = "prog";
constexpr const char* kRodataPin = "prog_rodata";
// The pin whose presence makes a start adopt (skel->maps.backends' name):
// for attachConflicts(), which opens no skeleton.
constexpr const char* kBackendsPin = "backends";
// Where a pin is written before it is renamed over its name: a pin is
// replaced in one step (rename(2) over an existing bpffs entry), so a keeld
// killed meanwhile leaves the old pin or the new one, never none. A
// replacing program is pinned here before it is attached (attachOrReplace),
// so the next keeld finds the attached program even if this one died
// before the rename.
// (bpffs refuses names with a dot: they are reserved for its own files.)
constexpr const char* kNewSuffix = "_new";

// Pins fd beside path, as path + kNewSuffix (a stale pin there goes first).
Status pinAside(int fd, const std::string& path) {
  const std::string fresh = path + kNewSuffix;
  // A stale one (a keeld killed here) goes; its absence is no error (bpffs
  // answers EPERM, not ENOENT, for a name that is not there).
  ::unlink(fresh.c_str());
  if (bpf_obj_pin(fd, fresh.c_str()) != 0) return Status::error("xdp: pin " + fresh + ": " + errnoText(errno));
  return Status::ok();
}

// Pins fd at path, replacing what is pinned there in one step.
Status pinReplacing(int fd, const std::string& path) {
  if (Status s = pinAside(fd, path); !s) return s;
  const std::string fresh = path + kNewSuffix;
  if (::rename(fresh.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(fresh.c_str());
    return Status::error("xdp: rename " + fresh + " to " + path + ": " + errnoText(err));
  }
  return Status::ok();
}

// libbpf prints verifier logs and warnings through one global callback. Keep
// the tail of what it said so a load failure can carry the reason.
std::mutex gLibbpfLogMutex;
std::string gLibbpfLog;

int libbpfPrint(enum libbpf_print_level level, const char* fmt, va_list args) {
  if (level == LIBBPF_DEBUG) return 0;
  // Whole: libbpf hands the verifier's log over as one message, whose last
  // lines say why (a fixed 1 KiB buffer kept its head and lost the reason;
  // kernel review, 2026-12-06).
  va_list again;
  va_copy(again, args);
  const int n = std::vsnprintf(nullptr, 0, fmt, args);
  std::string text(n > 0 ? static_cast<size_t>(n) : 0, '\0');
  if (n > 0) std::vsnprintf(text.data(), text.size() + 1, fmt, again);
  va_end(again);
  std::lock_guard lock(gLibbpfLogMutex);
  gLibbpfLog += text;
  // The verifier's last lines say why; 8 KiB of tail is plenty.
  if (gLibbpfLog.size() > 8192) gLibbpfLog.erase(0, gLibbpfLog.size() - 8192);
  return n;
}

// libbpf's lines name themselves ("libbpf: ..."); the verifier's follow.
std::string takeLibbpfLog() {
  std::lock_guard lock(gLibbpfLogMutex);
  std::string out;
  std::swap(out, gLibbpfLog);
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out.empty() ? "" : "\n" + out;
}

// The newest kernel feature the balancer needs: bpf_check_mtu (Linux 5.12;
// the rest is older, docs/operations.md). Probed before the load, so an
// older kernel gets that said rather than a verifier dump.
Status kernelSupportsBalancer() {
  if (libbpf_probe_bpf_helper(BPF_PROG_TYPE_XDP, BPF_FUNC_check_mtu, nullptr) > 0) return Status::ok();
  struct utsname u {};
  ::uname(&u);
  return Status::error(std::string("xdp: this kernel (") + u.release +
                       ") has no bpf_check_mtu helper, which keel's XDP program calls: keel needs Linux 5.12 or "
                       "later for the XDP data plane (dataplane.kind: dpdk needs no such helper)");
}

// A bpffs at /sys/fs/bpf (common/bpffs.h), or keeld's reason why not.
Status bpffsForPins() {
  const int err = ensureBpffs().error;
  if (err == 0) return Status::ok();
  std::string hint = err == EPERM ? " (mounting needs CAP_SYS_ADMIN, which keeld does not otherwise "
                                    "need: mount it before starting keeld, `mount -t bpf bpf "
                                    "/sys/fs/bpf`, as keeld.service's ExecStartPre does)"
                                  : "";
  return Status::error(std::string("mount bpffs on ") + kBpffsPath + ": " + std::strerror(err) + hint);
}

// The pin directory's lock (common/path_lock.h): made if missing, waited
// for up to `wait`.
Status lockPinDir(const std::string& dir, Fd* out,
                  std::chrono::milliseconds wait = std::chrono::seconds(5)) {
  const PathLock lock = lockPath(dir, /*directory=*/true, wait, out);
  if (lock.ok) return Status::ok();
  if (!lock.busy) return Status::error("xdp: " + lock.error);
  return Status::error("xdp: " + dir + " is locked by another keeld" +
                       (lock.holder > 0 ? " (pid " + std::to_string(lock.holder) + ")" : std::string()) +
                       ", which runs the data plane on this interface: stop it first (`keelctl daemon "
                       "stop --keep-forwarding`, or `systemctl stop keeld`); a second keeld would "
                       "reprogram its maps");
}

Status mapStatus(int rc, const char* what) {
  if (rc == 0) return Status::ok();
  return Status::error(std::string(what) + ": " + errnoText(errno));
}

}  // namespace

XdpDataplane::XdpDataplane(const XdpOptions& options) : options_(options) {}

XdpDataplane::~XdpDataplane() {
  if (!leaveInPlace_) (void)shutdown(false);
  if (freshPinDir_ && !pinned_) removePinDirIfEmpty(options_.pinDir);
  if (attachedFd_ >= 0) ::close(attachedFd_);
  keel_balancer__destroy(skel_);
}

uint32_t XdpDataplane::attachFlags() const {
  return options_.mode == XdpAttachMode::kNative ? XDP_FLAGS_DRV_MODE : XDP_FLAGS_SKB_MODE;
}

namespace {

// The maps the config sizes (limits:), each with its key; the BPF defaults
// are only defaults. vips: at most one VIP per service.
struct SizedMap {
  const char* map;
  const char* key;
  uint32_t DataplaneLimits::*entries;
};
constexpr SizedMap kSizedMaps[] = {
    {"vips", "limits.max_services", &DataplaneLimits::maxServices},
    {"services", "limits.max_services", &DataplaneLimits::maxServices},
    {"rings", "limits.max_services", &DataplaneLimits::maxServices},
    {"stats_services", "limits.max_services", &DataplaneLimits::maxServices},
    {"backends", "limits.max_reals", &DataplaneLimits::maxBackends},
    {"stats_backends", "limits.max_reals", &DataplaneLimits::maxBackends},
    {"conntrack", "limits.conn_table_size", &DataplaneLimits::connTableSize},
};

// The limits: key that sizes each map (for adoption errors).
const char* limitKeyOf(const std::string& map) {
  for (const SizedMap& s : kSizedMaps)
    if (map == s.map) return s.key;
  return "limits.max_services";
}

// The adoption errors for a pinned map made with pinnedEntries and a config
// asking for entries; the same words from create() and adoptionConflicts().
std::string sizeConflict(const std::string& map, const std::string& path, uint32_t entries,
                         uint32_t pinnedEntries) {
  return std::string(limitKeyOf(map)) + ": " + std::to_string(entries) + ", but the pinned map " + path +
         " was made with " + std::to_string(pinnedEntries) +
         " entries; map sizes cannot change while keeping the running state: restore the old value";
}

std::string otherModeConflict(const std::string& modeName, const std::string& interface) {
  return "dataplane.xdp_mode: " + modeName + ", but the pinned program on " + interface +
         " is attached in the other mode; a mode change cannot keep the running state: restore the old value";
}

// Why the kernel would not attach keel's program (rc) to an interface
// that ran `found` just before: a program there that is not the pinned one
// (EBUSY in the same mode, EEXIST in the other), a driver without native
// XDP (EOPNOTSUPP); "" for another error. adopting: pins were found (else a
// program there is most likely keel's own, its pins removed). The same
// words from create() and attachConflicts().
std::string attachRefusal(const XdpOptions& o, int rc, bool adopting, const AttachedXdp& found) {
  const std::string modeName = o.mode == XdpAttachMode::kNative ? "native" : "generic";
  std::string hint;
  if (rc == -EBUSY || rc == -EEXIST) {
    // No native program where the kernel refused: the one in the way is
    // generic, and `xdp off` would not detach it.
    const bool generic = found.native == 0 && found.generic != 0;
    const uint32_t id = generic ? found.generic : found.native;
    // No pins at all (removed while a keeld ran, then that keeld killed
    // before it pinned them again): the attached program is most likely
    // keel's own, forwarding with its last state, and `xdp off` costs
    // every established flow (review s31 F2): said first.
    const std::string orphan =
        o.pinDir.empty() || adopting ? ""
                                     : o.pinDir + " has no pinned data plane (no backends pin): if the pins were "
                                                  "removed while a keeld ran, the attached program is most likely "
                                                  "keel's own, still forwarding with its last state, and detaching "
                                                  "it drops VIP traffic until keeld attaches and picks every "
                                                  "established flow again; ";
    hint = " (an XDP program" + (id != 0 ? " (id " + std::to_string(id) + ")" : std::string()) +
           " is already attached" + (id != 0 ? generic ? " in generic mode" : " in native mode" : "") +
           " and it is not the one pinned under " + (o.pinDir.empty() ? "<no pins>" : o.pinDir) + "; " + orphan +
           "`" + xdpOffCommand(o.interface, generic) + "` if it is stale)";
  } else if (rc == -EOPNOTSUPP) {
    hint = " (driver lacks native XDP; try xdp_mode: generic)";
  } else {
    return "";
  }
  return "xdp: attach to " + o.interface + " in " + modeName + " mode: " + errnoText(rc) + hint;
}

std::string removeHint(const XdpOptions& o) {
  // Detached in the mode it runs in, as the kernel says (`xdp off` leaves a
  // generic program where the driver has a native mode); none: the
  // configured one.
  bool generic = o.mode == XdpAttachMode::kGeneric;
  const int ifindex = static_cast<int>(if_nametoindex(o.interface.c_str()));
  if (const std::optional<AttachedXdp> found = ifindex != 0 ? attachedXdp(ifindex) : std::nullopt;
      found && (found->native != 0 || found->generic != 0))
    generic = found->native == 0;
  return "; to start over instead, detach and remove the old state: `" + xdpOffCommand(o.interface, generic) +
         "; rm -r " + o.pinDir + "` (established flows are then re-picked)";
}

// The kernel's description of map fd; nullopt (errno says why) if it
// cannot be read.
std::optional<bpf_map_info> mapInfo(int fd) {
  bpf_map_info info{};
  uint32_t len = sizeof info;
  if (bpf_obj_get_info_by_fd(fd, &info, &len) != 0) return std::nullopt;
  return info;
}

struct ProgMaps {
  std::set<uint32_t> ids;
  bpf_prog_info info{};
};

bool progMaps(int fd, ProgMaps* out) {
  uint32_t len = sizeof out->info;
  out->info = {};
  if (bpf_obj_get_info_by_fd(fd, &out->info, &len) != 0) return false;
  std::vector<uint32_t> ids(out->info.nr_map_ids);
  bpf_prog_info again{};
  again.nr_map_ids = static_cast<uint32_t>(ids.size());
  again.map_ids = reinterpret_cast<uint64_t>(ids.data());
  len = sizeof again;
  if (bpf_obj_get_info_by_fd(fd, &again, &len) != 0) return false;
  ids.resize(std::min<size_t>(ids.size(), again.nr_map_ids));
  out->ids = std::set<uint32_t>(ids.begin(), ids.end());
  return true;
}

// A one-slot array's id and value (.rodata: the load-time options);
// nullopt if fd is not one (then we cannot tell).
struct OneSlot {
  uint32_t id = 0;
  std::string value;
};
std::optional<OneSlot> oneSlot(int fd) {
  const std::optional<bpf_map_info> info = mapInfo(fd);
  if (!info || info->type != BPF_MAP_TYPE_ARRAY || info->max_entries != 1) return std::nullopt;
  OneSlot out{info->id, std::string(info->value_size, '\0')};
  uint32_t zero = 0;
  if (bpf_map_lookup_elem(fd, &zero, out.value.data()) != 0) return std::nullopt;
  return out;
}

// "Unchanged" = the same instructions (the kernel's tag hashes them with map
// references blanked) over the same pinned maps with the same load-time
// options (.rodata contents). Then the attached program is kept, so its id,
// and what operators see, do not change across a restart.
//
// Everything comes from fds we hold (the pins, our skeleton): opening the
// attached program's .rodata by id (BPF_MAP_GET_FD_BY_ID) would need
// CAP_SYS_ADMIN. So the .rodata is pinned beside the program (prog_rodata),
// and counts only if the attached program really uses that map. Missing or
// stale (pins made by an older keeld, a crash between the two pins): we
// cannot tell, and the caller swaps the program, which is safe too.
bool sameProgram(int attachedFd, int attachedRodataFd, int loadedFd, int loadedRodataFd,
                 const std::set<uint32_t>& pinnedMapIds) {
  if (attachedRodataFd < 0) return false;
  ProgMaps a, b;
  if (!progMaps(attachedFd, &a) || !progMaps(loadedFd, &b)) return false;
  if (std::memcmp(a.info.tag, b.info.tag, sizeof a.info.tag) != 0) return false;
  std::set<uint32_t> aOwn, bOwn, aShared, bShared;
  for (uint32_t id : a.ids) (pinnedMapIds.count(id) ? aShared : aOwn).insert(id);
  for (uint32_t id : b.ids) (pinnedMapIds.count(id) ? bShared : bOwn).insert(id);
  if (aShared != bShared) return false;
  auto ar = oneSlot(attachedRodataFd), br = oneSlot(loadedRodataFd);
  // The only map of its own each program has is its .rodata.
  return ar && br && aOwn == std::set<uint32_t>{ar->id} && bOwn == std::set<uint32_t>{br->id} &&
         ar->value == br->value;
}

// The state that may start empty (carryOf's kEmpty): the rate limits' times.
bool startsEmpty(const keel_balancer* skel, const bpf_map* map) {
  return map == skel->maps.icmp_limit || map == skel->maps.icmp_client_limit || map == skel->maps.ct_insert_limit;
}

// The pinned maps a starting keeld does not reuse but replaces with the
// one its load creates, and what it carries over from the old one: each is
// state whose layout a build may change without refusing the pins. Every
// other map must match this build's exactly (adoptPinnedMaps).
//   kEmpty:       the ICMP too-big rate limits' times and the
//                 connection-table insert limit's (ct_insert_limit). Missing
//                 (pins made before it) or of another shape: this build's
//                 starts empty; the worst is a burst of answers or inserts
//                 the old times would have refused (and the insert limit's
//                 count of skipped inserts starts at 0).
//   kNodeConfig:  node_config pinned by a build whose keel_node_config was
//                 shorter (fields are only appended: maps_abi.h; a longer
//                 one, a downgrade, is another layout): copied before the
//                 program swap, so the new program never sees it empty.
//   kCounters:    a per-CPU array of counts indexed by an enum that is only
//                 appended (stats_reasons: keel_reason; stats_conntrack:
//                 keel_ct_stat) with another number of entries (its size is
//                 the enum's MAX, not a limit): the counts of every index
//                 both builds know are added after the swap, once the old
//                 program no longer counts. stats_conntrack missing (pins
//                 made before it): this build's starts at 0, as kEmpty.
// Each replaced map takes the old one's pin after the swap (replacePins).
// sameLayout: the pinned map's members are where this build's are
// (xdp/map_layout.h), or nothing says otherwise (pins of a build before
// map_layouts); a start-empty map of another layout is of another shape.
XdpDataplane::Carry carryOf(const keel_balancer* skel, const bpf_map* map, const bpf_map_info* pinned,
                            bool sameLayout) {
  using C = XdpDataplane::Carry;
  const bool sameShape = pinned && pinned->type == bpf_map__type(map) &&
                         pinned->key_size == bpf_map__key_size(map) &&
                         pinned->value_size == bpf_map__value_size(map) && sameLayout;
  if (startsEmpty(skel, map))
    return !sameShape || pinned->max_entries != bpf_map__max_entries(map) ? C::kEmpty : C::kReuse;
  if (map == skel->maps.stats_conntrack && !pinned) return C::kEmpty;
  if (!pinned) return C::kReuse;  // missing: adoptPinnedMaps refuses it
  if (map == skel->maps.node_config && pinned->type == bpf_map__type(map) &&
      pinned->key_size == bpf_map__key_size(map) && pinned->max_entries == 1 &&
      pinned->value_size < bpf_map__value_size(map))
    return C::kNodeConfig;
  if ((map == skel->maps.stats_reasons || map == skel->maps.stats_conntrack) && sameShape &&
      pinned->max_entries != bpf_map__max_entries(map))
    return C::kCounters;
  return C::kReuse;
}

// The record pinned beside the maps (xdp/map_layout.h): map name -> "id N"
// line and layout, in *out; *known: there is one. None pinned (pins of a
// build before it): nothing to compare beyond type, sizes and flags, and
// said so. One of another form or shape (a newer build's) is refused: this
// build cannot tell what the pinned maps hold.
Status readPinnedLayouts(const std::string& pinDir, std::map<std::string, std::string>* out, bool* known) {
  *known = false;
  out->clear();
  const std::string path = pinDir + "/" + xdp::kLayoutsPin;
  auto otherForm = [&](const std::string& what) {
    out->clear();
    return Status::error("xdp: adopt " + path + ": a record of map layouts " + what +
                         " (pinned by a newer keeld?): this build cannot tell what the pinned maps hold");
  };
  Fd fd(bpf_obj_get(path.c_str()));
  if (fd.get() < 0) {
    if (errno != ENOENT) return Status::error("xdp: adopt " + path + ": " + errnoText(errno));
    logInfo(LogRecord("xdp_adopt_layouts_unknown")
                .add("reason", path + " missing (pins of a keeld before it): pinned maps are compared by type, "
                                      "sizes and flags only"));
    return Status::ok();
  }
  const std::optional<bpf_map_info> info = mapInfo(fd.get());
  if (!info) return Status::error("xdp: adopt " + path + ": " + errnoText(errno));
  if (info->type != BPF_MAP_TYPE_HASH || info->key_size != xdp::kLayoutNameBytes ||
      info->value_size != xdp::kLayoutTextBytes)
    return otherForm("of another shape");
  char key[xdp::kLayoutNameBytes], next[xdp::kLayoutNameBytes];
  std::vector<char> text(xdp::kLayoutTextBytes);
  const void* prev = nullptr;
  while (bpf_map_get_next_key(fd.get(), prev, next) == 0) {
    if (bpf_map_lookup_elem(fd.get(), next, text.data()) == 0)
      (*out)[std::string(next, strnlen(next, sizeof next))] =
          std::string(text.data(), strnlen(text.data(), text.size()));
    std::memcpy(key, next, sizeof key);
    prev = key;
  }
  const auto format = out->find(xdp::kLayoutFormatKey);
  if (format == out->end() || format->second != xdp::kLayoutFormat)
    return otherForm("of another form (#format " + (format == out->end() ? std::string("missing") : format->second) +
                     ", this build's " + xdp::kLayoutFormat + ")");
  out->erase(format);
  *known = true;
  return Status::ok();
}

// A record entry's map id and layout ("id N" then the layout's lines);
// false if it has no id line.
bool splitRecordEntry(const std::string& entry, uint32_t* id, std::string* layout) {
  if (entry.rfind("id ", 0) != 0) return false;
  const size_t eol = entry.find('\n');
  char* end = nullptr;
  const unsigned long v = std::strtoul(entry.c_str() + 3, &end, 10);
  if (eol == std::string::npos || end != entry.c_str() + eol || v == 0 || v > UINT32_MAX) return false;
  *id = static_cast<uint32_t>(v);
  *layout = entry.substr(eol + 1);
  return true;
}

}  // namespace

// Pins present: reuse every pinned map instead of creating it (before load,
// so the program is verified against them). Checks each is the map this
// build would create, and sized as the limits say.
Status XdpDataplane::adoptPinnedMaps(bool* adopting) {
  *adopting = false;
  const std::string probe = options_.pinDir + "/" + bpf_map__name(skel_->maps.backends);
  if (::access(probe.c_str(), F_OK) != 0) return Status::ok();
  std::vector<std::pair<bpf_map*, int>> fds;
  auto closeAll = [&] {
    for (auto& [m, fd] : fds) ::close(fd);
  };
  bool layoutsKnown = false;
  if (Status s = readPinnedLayouts(options_.pinDir, &pinnedLayouts_, &layoutsKnown); !s) return s;
  layoutsPinned_ = layoutsKnown;
  bpf_map* map;
  bpf_object__for_each_map(map, skel_->obj) {
    if (bpf_map__is_internal(map)) continue;
    std::string name = bpf_map__name(map);
    std::string path = options_.pinDir + "/" + name;
    int fd = bpf_obj_get(path.c_str());
    if (fd < 0 && errno == ENOENT && carryOf(skel_, map, nullptr, true) == Carry::kEmpty) {
      // Added after the pins were made (an upgrade): load creates it.
      replaced_.push_back({map, Carry::kEmpty, Fd(), 0, 0, {}});
      continue;
    }
    if (fd < 0) {
      closeAll();
      return Status::error("xdp: adopt " + options_.pinDir + ": pinned map " + name + ": " +
                           errnoText(errno) + removeHint(options_));
    }
    fds.emplace_back(map, fd);
    const std::optional<bpf_map_info> pinnedInfo = mapInfo(fd);
    if (!pinnedInfo) {
      closeAll();
      return Status::error("xdp: adopt " + path + ": " + errnoText(errno));
    }
    const bpf_map_info& info = *pinnedInfo;
    // The bytes both maps hold must mean the same (xdp/map_layout.h): a map
    // of this build's sizes whose members moved would be misread by the new
    // program, and by the old one while keeld rewrites it. A record entry
    // describes the map of its id only: one that names another map (or
    // none) was written for a map since replaced (a keeld killed between
    // its record and replacePins, or one from before records that started
    // over on these pins), so this map's layout is unknown: a start-empty
    // map is then replaced, any other is compared by type and sizes as
    // carryOf's rules say.
    std::string difference;
    const auto ours = ourLayouts_.find(name);
    if (layoutsKnown && ours != ourLayouts_.end()) {
      const auto entry = pinnedLayouts_.find(name);
      uint32_t recordedId = 0;
      std::string pinnedLayout;
      const bool describes = entry != pinnedLayouts_.end() &&
                             splitRecordEntry(entry->second, &recordedId, &pinnedLayout) && recordedId == info.id;
      if (describes)
        difference = xdp::layoutDifference(pinnedLayout, ours->second,
                                           std::min(info.key_size, bpf_map__key_size(map)),
                                           std::min(info.value_size, bpf_map__value_size(map)));
      else if (startsEmpty(skel_, map))
        difference = "the pinned record of layouts does not describe map id " + std::to_string(info.id);
    }
    const Carry carry = carryOf(skel_, map, &info, difference.empty());
    if (carry != Carry::kEmpty && !difference.empty()) {
      closeAll();
      return Status::error("xdp: adopt " + path + ": pinned by a keeld with another layout of " + name + ": " +
                           difference + removeHint(options_));
    }
    if (carry != Carry::kReuse) {
      // Not reused: load creates this build's map. The old one stays open
      // where carryOver() copies from it.
      fds.pop_back();
      const bool keepOld = carry != Carry::kEmpty;
      if (!keepOld) ::close(fd);
      replaced_.push_back({map, carry, Fd(keepOld ? fd : -1), info.value_size, info.max_entries, difference});
      continue;
    }
    if (info.type != bpf_map__type(map) || info.key_size != bpf_map__key_size(map) ||
        info.value_size != bpf_map__value_size(map) || info.map_flags != bpf_map__map_flags(map)) {
      closeAll();
      return Status::error("xdp: adopt " + path + ": pinned by a keeld with another map layout (type " +
                           std::to_string(info.type) + ", key " + std::to_string(info.key_size) +
                           " B, value " + std::to_string(info.value_size) + " B, flags " +
                           std::to_string(info.map_flags) + "; this build's: type " +
                           std::to_string(bpf_map__type(map)) + ", key " + std::to_string(bpf_map__key_size(map)) +
                           " B, value " + std::to_string(bpf_map__value_size(map)) + " B, flags " +
                           std::to_string(bpf_map__map_flags(map)) + ")" + removeHint(options_));
    }
    if (info.max_entries != bpf_map__max_entries(map)) {
      closeAll();
      return Status::error(sizeConflict(name, path, bpf_map__max_entries(map), info.max_entries) +
                           removeHint(options_));
    }
  }
  for (auto& [m, fd] : fds) {
    int rc = bpf_map__reuse_fd(m, fd);  // dups fd
    if (rc != 0) {
      closeAll();
      return Status::error(std::string("xdp: reuse pinned map ") + bpf_map__name(m) + ": " + errnoText(rc));
    }
  }
  closeAll();
  *adopting = true;
  return Status::ok();
}

Status XdpDataplane::create(const XdpOptions& options, std::unique_ptr<XdpDataplane>* out) {
  static std::once_flag printOnce;
  std::call_once(printOnce, [] { libbpf_set_print(libbpfPrint); });
  takeLibbpfLog();

  const DataplaneLimits& l = options.limits;
  if (l.maxServices == 0 || l.maxBackends == 0 || l.connTableSize == 0)
    return Status::error("xdp: every limit must be at least 1");
  std::unique_ptr<XdpDataplane> dp(new XdpDataplane(options));
  dp->ifindex_ = static_cast<int>(if_nametoindex(options.interface.c_str()));
  if (dp->ifindex_ == 0)
    return Status::error("xdp: interface " + options.interface + ": " + std::strerror(errno));

  dp->skel_ = keel_balancer__open();
  if (!dp->skel_) return Status::error("xdp: open balancer object: " + errnoText(errno) + takeLibbpfLog());
  // This build's layouts, from its own BTF, before any pinned map is reused
  // (libbpf then takes the pinned map's BTF type ids in place of ours).
  if (!options.pinDir.empty())
    if (Status s = dp->readOurLayouts(); !s) return s;
  for (const SizedMap& s : kSizedMaps) {
    bpf_map* map = bpf_object__find_map_by_name(dp->skel_->obj, s.map);
    if (!map) return Status::error(std::string("xdp: the balancer object has no map ") + s.map);
    if (int rc = bpf_map__set_max_entries(map, l.*s.entries); rc != 0)
      return Status::error(std::string("xdp: size map ") + s.map + ": " + errnoText(rc));
  }
  bool adopting = false;
  if (!options.pinDir.empty()) {
    if (Status s = bpffsForPins(); !s) return Status::error("xdp: " + s.message());
    if (Status s = lockPinDir(options.pinDir, &dp->pinLock_); !s) return s;
    if (Status s = dp->adoptPinnedMaps(&adopting); !s) return s;
    dp->freshPinDir_ = !adopting;
  }
  if (int rc = keel_balancer__load(dp->skel_); rc != 0) {
    if (Status k = kernelSupportsBalancer(); !k) {
      takeLibbpfLog();  // the verifier's dump: said better by the line above, and not left for a later error
      return k;
    }
    return Status::error("xdp: load balancer program: " + errnoText(rc) + takeLibbpfLog());
  }
  // Before the swap: the new program must never see an empty node_config.
  if (Status s = dp->carryOver(CarryPhase::kBeforeSwap); !s) return s;
  // Optional: without it (kernel < 6.6) the entry count is just unknown.
  if (Status s = MapElemCounter::create(bpf_map__fd(dp->skel_->maps.conntrack), &dp->ctCounter_); !s)
    logWarn(LogRecord("conntrack_count_unavailable").add("error", s.message() + takeLibbpfLog()));

  if (Status s = dp->attachOrReplace(adopting); !s) return s;
  if (adopting) {
    // Read before anyone writes: this is the state established flows use.
    ProgrammedState state;
    if (Status s = dp->readProgrammed(&state); !s) {
      dp->leaveInPlace();
      return s;
    }
    dp->adopted_ = std::move(state);
  }
  if (!options.pinDir.empty()) {
    // Adopted maps are pinned already, all but those this build replaced
    // (carryOf), which take their old pins now.
    // The record of layouts names the maps this program uses by id, so it is
    // pinned before them (a fresh start) or before the swap (attachOrReplace):
    // a keeld killed later leaves a record that is true of every map it
    // names, and says nothing of an old map still under a pin. Here only
    // when nothing pinned it yet (a kept program over pins without one).
    Status s = adopting ? dp->carryOver(CarryPhase::kAfterSwap) : dp->pinLayouts();
    if (s && !adopting) s = dp->pinMaps();
    if (s && adopting) s = dp->replacePins();
    if (s) s = dp->pinProgram();
    if (s && adopting) s = dp->pinLayouts();
    if (!s) {
      if (adopting)
        dp->leaveInPlace();  // it forwarded before us: keep it so
      else
        dp->unpinMaps();  // fresh: and the destructor detaches
      return s;
    }
    dp->pinned_ = true;
  }
  dp->freshPinDir_ = false;
  *out = std::move(dp);
  return Status::ok();
}

std::vector<std::string> XdpDataplane::adoptionConflicts(const XdpOptions& options) {
  std::vector<std::string> out;
  if (options.pinDir.empty()) return out;
  // Nothing pinned, or pins this user cannot open: nothing to compare (the
  // start itself says what it finds).
  Fd prog(bpf_obj_get((options.pinDir + "/" + kProgPin).c_str()));
  if (prog.get() < 0) return out;
  std::set<std::string> said;  // one error a key: it sizes several maps
  for (const SizedMap& s : kSizedMaps) {
    if (said.count(s.key)) continue;
    const std::string path = options.pinDir + "/" + s.map;
    Fd fd(bpf_obj_get(path.c_str()));
    if (fd.get() < 0) continue;
    const std::optional<bpf_map_info> info = mapInfo(fd.get());
    if (info && info->max_entries != options.limits.*s.entries) {
      out.push_back(sizeConflict(s.map, path, options.limits.*s.entries, info->max_entries));
      said.insert(s.key);
    }
  }
  const int ifindex = static_cast<int>(if_nametoindex(options.interface.c_str()));
  LIBBPF_OPTS(bpf_xdp_query_opts, query);
  bpf_prog_info info{};
  uint32_t len = sizeof info;
  if (ifindex != 0 && bpf_xdp_query(ifindex, 0, &query) == 0 &&
      bpf_obj_get_info_by_fd(prog.get(), &info, &len) == 0) {
    const bool native = options.mode == XdpAttachMode::kNative;
    const uint32_t attached = native ? query.drv_prog_id : query.skb_prog_id;
    const uint32_t other = native ? query.skb_prog_id : query.drv_prog_id;
    if (other == info.id && attached != info.id)
      out.push_back(otherModeConflict(native ? "native" : "generic", options.interface));
  }
  if (!out.empty()) out.back() += removeHint(options);
  return out;
}

std::vector<std::string> XdpDataplane::attachConflicts(const XdpOptions& options) {
  std::vector<std::string> out;
  const int ifindex = static_cast<int>(if_nametoindex(options.interface.c_str()));
  const std::optional<AttachedXdp> found = ifindex != 0 ? attachedXdp(ifindex) : std::nullopt;
  if (!found) return out;  // no such interface (the file's check says so), or no answer: nothing to tell
  const bool native = options.mode == XdpAttachMode::kNative;
  const uint32_t attached = native ? found->native : found->generic;
  const uint32_t other = native ? found->generic : found->native;
  // keel's own program, as create() tells it: where it adopts (a backends
  // pin, adoptPinnedMaps), the program pinned as prog, or, in our mode, the
  // one pinned as prog_new (attachOrReplace: a keeld killed between its
  // swap and its pin). A pin this user may not open: whether the program
  // is keel's cannot be told, and nothing is said.
  // Only ENOENT says there is none: bpffs is mode 0700, so to a user
  // other than root every pin is EACCES, and keel's own program would look
  // like someone else's.
  bool adopting = false;
  if (!options.pinDir.empty()) {
    if (::access((options.pinDir + "/" + kBackendsPin).c_str(), F_OK) == 0)
      adopting = true;
    else if (errno != ENOENT)
      return out;
  }
  uint32_t pinned = 0, swapped = 0;
  auto idOf = [](const std::string& path, uint32_t* id) {
    if (::access(path.c_str(), F_OK) != 0) return errno == ENOENT;  // none, or cannot tell
    Fd fd(bpf_obj_get(path.c_str()));
    bpf_prog_info info{};
    uint32_t len = sizeof info;
    if (fd.get() < 0 || bpf_obj_get_info_by_fd(fd.get(), &info, &len) != 0) return false;
    *id = info.id;
    return true;
  };
  const std::string progPin = options.pinDir + "/" + kProgPin;
  if (adopting && (!idOf(progPin, &pinned) || !idOf(progPin + kNewSuffix, &swapped))) return out;
  if (attached != 0 && attached != pinned && attached != swapped)
    out.push_back(attachRefusal(options, -EBUSY, adopting, *found));
  else if (attached == 0 && other != 0 && other != pinned)  // pinned: adoptionConflicts() says it
    out.push_back(attachRefusal(options, -EEXIST, adopting, *found));
  // Only where no program runs natively: one that does proves the driver can.
  if (native && found->native == 0 && lacksNativeXdp(xdpFeatures(ifindex), driverName(options.interface)))
    out.push_back(attachRefusal(options, -EOPNOTSUPP, adopting, *found));
  return out;
}

Status XdpDataplane::attachOrReplace(bool adopting) {
  const std::string modeName = options_.mode == XdpAttachMode::kNative ? "native" : "generic";
  int progFd = bpf_program__fd(skel_->progs.balancer);
  LIBBPF_OPTS(bpf_xdp_query_opts, query);
  if (int rc = bpf_xdp_query(ifindex_, 0, &query); rc != 0)
    return Status::error("xdp: query " + options_.interface + ": " + errnoText(rc));
  // The pinned program, opened through its pin (file permissions only; by
  // id it would take CAP_SYS_ADMIN): the fd we compare and replace through.
  const std::string progPin = options_.pinDir + "/" + kProgPin;
  auto idOf = [](int fd) -> uint32_t {
    bpf_prog_info info{};
    uint32_t len = sizeof info;
    return fd >= 0 && bpf_obj_get_info_by_fd(fd, &info, &len) == 0 ? info.id : 0;
  };
  Fd pinned(adopting ? bpf_obj_get(progPin.c_str()) : -1);
  uint32_t pinnedId = idOf(pinned.get());
  const bool native = options_.mode == XdpAttachMode::kNative;
  const uint32_t attachedId = native ? query.drv_prog_id : query.skb_prog_id;
  if (adopting && attachedId != 0 && attachedId != pinnedId) {
    // A keeld that swapped its program in (pinned first as prog_new) and
    // died before renaming that pin over prog: the attached program is
    // ours, and prog_new says so. Finish the rename and go on as usual
    // (its prog_rodata may still be the old program's: "cannot tell", so
    // the program is swapped again below, over the same maps).
    const std::string fresh = progPin + kNewSuffix;
    Fd swapped(bpf_obj_get(fresh.c_str()));
    if (swapped.get() >= 0 && idOf(swapped.get()) == attachedId) {
      if (::rename(fresh.c_str(), progPin.c_str()) != 0)
        return Status::error("xdp: rename " + fresh + " to " + progPin + ": " + errnoText(errno));
      logWarn(LogRecord("xdp_adopt_finished_swap")
                  .add("reason", fresh + " names the attached program: the keeld that swapped it in "
                                         "stopped before pinning it as " + kProgPin));
      pinned = std::move(swapped);
      pinnedId = attachedId;
    }
  }
  const uint32_t otherModeId = native ? query.skb_prog_id : query.drv_prog_id;
  if (pinnedId != 0 && otherModeId == pinnedId && attachedId != pinnedId)
    return Status::error(otherModeConflict(modeName, options_.interface) + removeHint(options_));

  if (attachedId != 0 && attachedId == pinnedId) {
    std::set<uint32_t> pinnedMaps;
    bpf_map* map;
    bpf_object__for_each_map(map, skel_->obj) {
      if (bpf_map__is_internal(map)) continue;
      if (const auto info = mapInfo(bpf_map__fd(map))) pinnedMaps.insert(info->id);
    }
    Fd rodata(bpf_obj_get((options_.pinDir + "/" + kRodataPin).c_str()));
    bool same = sameProgram(pinned.get(), rodata.get(), progFd, bpf_map__fd(skel_->maps.rodata), pinnedMaps);
    if (rodata.get() < 0)
      logInfo(LogRecord("xdp_adopt_swaps_program")
                  .add("reason", options_.pinDir + "/" + kRodataPin +
                                     " is missing (pinned by an older keeld): the load-time options "
                                     "of the attached program cannot be compared"));
    if (same) {
      // Unchanged: nothing to attach, not even for an instant.
      attachedFd_ = pinned.release();
      attachedRodata_ = std::move(rodata);
      programId_ = attachedId;
      attached_ = true;
      keptProgram_ = true;
      return Status::ok();
    }
    // Changed (another build): one atomic swap, and only if the pinned
    // program is still the attached one (old_prog_fd + REPLACE). Pinned as
    // prog_new first, so that a keeld killed between the swap and
    // pinProgram() leaves the next one a way to know the attached program.
    if (Status s = pinAside(progFd, progPin); !s) return s;
    // The record of this program's maps goes first: from the swap on, the
    // maps hold what it writes (create()).
    const std::map<std::string, std::string> oldRecord = pinnedLayouts_;
    const bool hadRecord = layoutsPinned_;
    if (Status s = pinLayouts(); !s) {
      ::unlink((progPin + kNewSuffix).c_str());
      return s;
    }
    LIBBPF_OPTS(bpf_xdp_attach_opts, replaceOpts, .old_prog_fd = pinned.get());
    int rc = bpf_xdp_attach(ifindex_, progFd, attachFlags() | XDP_FLAGS_REPLACE, &replaceOpts);
    if (rc != 0) {
      ::unlink((progPin + kNewSuffix).c_str());
      restoreLayouts(oldRecord, hadRecord);
      return Status::error("xdp: replace the program on " + options_.interface + ": " + errnoText(rc) +
                           takeLibbpfLog());
    }
    replacedProgram_ = true;
  } else {
    // Attach only where no XDP program is: replacing one would silently
    // break whatever (another keeld, a decap program) put it there.
    LIBBPF_OPTS(bpf_xdp_attach_opts, attachOpts);
    if (int rc = bpf_xdp_attach(ifindex_, progFd, attachFlags() | XDP_FLAGS_UPDATE_IF_NOEXIST,
                                &attachOpts);
        rc != 0) {
      std::string refusal = attachRefusal(options_, rc, adopting, AttachedXdp{query.drv_prog_id, query.skb_prog_id});
      // Drivers refuse a program that does not take multi-buffer frames on
      // an MTU over one page's frame (mlx5/i40e/ice EINVAL; veth ERANGE,
      // for its peer's MTU, which may be the larger): keel's program reads
      // single-buffer frames only. EINVAL is other refusals too: only over
      // 3,000 bytes is this the likely one.
      const std::optional<uint32_t> mtu = portMtu();
      if (options_.mode == XdpAttachMode::kNative &&
          (rc == -ERANGE || (rc == -EINVAL && mtu && *mtu > 3000)))
        refusal = "xdp: attach to " + options_.interface + " in " + modeName + " mode: " + errnoText(rc) + " (" +
                  (mtu ? "the interface's MTU is " + std::to_string(*mtu) + "; " : std::string()) +
                  "drivers refuse a native XDP program of single-buffer frames, as keel's is, on a link whose "
                  "MTU, a veth peer's included, is over about 3,500 bytes; for jumbo frames use dataplane.kind: "
                  "dpdk, or xdp_mode: generic (much slower), or lower the MTU: docs/configuration.md, dataplane)";
      if (refusal.empty())
        refusal = "xdp: attach to " + options_.interface + " in " + modeName + " mode: " + errnoText(rc);
      return Status::error(refusal + takeLibbpfLog());
    }
  }
  attached_ = true;
  attachedFd_ = ::dup(progFd);
  attachedRodata_ = Fd(::dup(bpf_map__fd(skel_->maps.rodata)));
  bpf_prog_info info{};
  uint32_t infoLen = sizeof info;
  if (bpf_obj_get_info_by_fd(progFd, &info, &infoLen) == 0) programId_ = info.id;
  return Status::ok();
}

Status XdpDataplane::pinMaps() {
  std::error_code ec;
  std::filesystem::create_directories(options_.pinDir, ec);
  if (ec) return Status::error("xdp: create pin directory " + options_.pinDir + ": " + ec.message());
  bpf_map* map;
  bpf_object__for_each_map(map, skel_->obj) {
    // .rodata/.bss are internal: nothing outside this process writes them.
    if (bpf_map__is_internal(map)) continue;
    std::string path = options_.pinDir + "/" + bpf_map__name(map);
    // Only a partial pin set (adoption needs all of them) gets here.
    if (Status s = pinReplacing(bpf_map__fd(map), path); !s) {
      unpinMaps();
      return s;
    }
  }
  return Status::ok();
}

// Pins this build's map in the place of an adopted build's, in one step
// (pinReplacing; only a starting keeld does this).
Status XdpDataplane::replacePin(bpf_map* map) {
  return pinReplacing(bpf_map__fd(map), options_.pinDir + "/" + bpf_map__name(map));
}

// After an adoption: each map this build replaced takes its old pin, so the
// next keeld adopts it with the rest; the old maps are closed.
Status XdpDataplane::replacePins() {
  for (Replaced& r : replaced_) {
    if (Status s = replacePin(r.map); !s) return s;
    const std::string path = options_.pinDir + "/" + bpf_map__name(r.map);
    switch (r.carry) {
      case Carry::kEmpty: {
        LogRecord record("xdp_adopt_adds_map");
        record.add("map", path);
        if (!r.layoutDifference.empty()) record.add("reason", "another layout: " + r.layoutDifference);
        logInfo(record);
        break;
      }
      case Carry::kNodeConfig:
        logInfo(LogRecord("xdp_adopt_migrates_node_config")
                    .add("reason", path + " held " + std::to_string(r.pinnedValueSize) +
                                       " bytes, this build's " + std::to_string(sizeof(keel_node_config)) +
                                       ": copied to a new map until keeld writes the configured node"));
        break;
      case Carry::kCounters:
        logInfo(LogRecord("xdp_adopt_migrates_counters")
                    .add("reason", path + " held " + std::to_string(r.pinnedEntries) +
                                       " counters, this build counts " +
                                       std::to_string(bpf_map__max_entries(r.map)) +
                                       ": counts carried over to a new map"));
        break;
      case Carry::kReuse:
        break;
    }
  }
  replaced_.clear();
  return Status::ok();
}

// What each replaced map keeps of the old one (carryOf), in its phase:
// before the program swap, node_config's value (the common bytes as they
// were, any field the old build lacked 0, which means what that build did:
// maps_abi.h), so the swapped-in program forwards as the old one did until
// keeld writes the configured node; after it, the reason counts of every
// reason both builds know (indices are only appended), added to this
// build's. Packets the old program counted on another CPU between that copy
// and its last run are lost (a handful at most), as is a count racing ours
// on the same CPU.
Status XdpDataplane::carryOver(CarryPhase phase) {
  for (const Replaced& r : replaced_) {
    if (r.old.get() < 0) continue;
    if (r.carry == Carry::kNodeConfig && phase == CarryPhase::kBeforeSwap) {
      std::vector<uint8_t> old(r.pinnedValueSize);
      uint32_t zero = 0;
      if (bpf_map_lookup_elem(r.old.get(), &zero, old.data()) != 0)
        return Status::error("xdp: read the pinned node_config: " + errnoText(errno));
      keel_node_config node{};
      std::memcpy(&node, old.data(), std::min<size_t>(old.size(), sizeof node));
      if (Status s = mapStatus(bpf_map__update_elem(r.map, &zero, sizeof zero, &node, sizeof node, BPF_ANY),
                               "xdp: carry node_config over");
          !s)
        return s;
    }
    if (r.carry == Carry::kCounters && phase == CarryPhase::kAfterSwap) {
      const std::string name = bpf_map__name(r.map);
      const int ncpu = libbpf_num_possible_cpus();
      if (ncpu <= 0) return Status::error("xdp: migrate " + name + ": cannot count the possible CPUs");
      const int fd = bpf_map__fd(r.map);
      const uint32_t n = std::min<uint32_t>(r.pinnedEntries, bpf_map__max_entries(r.map));
      // A per-CPU value is rounded up to 8 bytes a CPU; the counts are
      // summed word by word, so a counter value must be whole u64 words
      // (keel_counter, or one u64).
      if (bpf_map__value_size(r.map) % sizeof(uint64_t) != 0)
        return Status::error("xdp: migrate " + name + ": a value of " + std::to_string(bpf_map__value_size(r.map)) +
                             " B is not whole 8-byte counters");
      const size_t words = bpf_map__value_size(r.map) / sizeof(uint64_t);
      std::vector<uint64_t> oldValues(words * static_cast<size_t>(ncpu)), values(oldValues.size());
      for (uint32_t i = 0; i < n; ++i) {
        if (bpf_map_lookup_elem(r.old.get(), &i, oldValues.data()) != 0) continue;
        if (bpf_map_lookup_elem(fd, &i, values.data()) != 0) continue;
        for (size_t k = 0; k < values.size(); ++k) values[k] += oldValues[k];
        if (bpf_map_update_elem(fd, &i, values.data(), BPF_ANY) != 0)
          return Status::error("xdp: migrate " + name + ": " + errnoText(errno));
      }
    }
  }
  return Status::ok();
}

// Each map's layout (xdp/map_layout.h) from this build's own BTF.
Status XdpDataplane::readOurLayouts() {
  const btf* objectBtf = bpf_object__btf(skel_->obj);
  bpf_map* map;
  bpf_object__for_each_map(map, skel_->obj) {
    if (bpf_map__is_internal(map)) continue;
    std::string text = xdp::mapLayout(objectBtf, map);
    if (text.empty()) continue;
    if (std::strlen(bpf_map__name(map)) >= xdp::kLayoutNameBytes)
      return Status::error(std::string("xdp: map name ") + bpf_map__name(map) + " is over the " +
                           std::to_string(xdp::kLayoutNameBytes - 1) + " bytes a key of " + xdp::kLayoutsPin +
                           " holds");
    ourLayouts_[bpf_map__name(map)] = std::move(text);  // its size: pinLayouts, with the id line
  }
  return Status::ok();
}

// Records what each map of this program holds (xdp/map_layout.h) for the
// next keeld, in a map pinned as map_layouts (frozen: read-only to every
// process), replaced in one step: per map, "id N" (the map's id: the entry
// describes that map only) and its layout. Not rewritten when the pinned
// one says the same.
Status XdpDataplane::pinLayouts() {
  std::map<std::string, std::string> record;
  bpf_map* map;
  bpf_object__for_each_map(map, skel_->obj) {
    const auto layout = ourLayouts_.find(bpf_map__name(map));
    if (bpf_map__is_internal(map) || layout == ourLayouts_.end()) continue;
    const std::optional<bpf_map_info> info = mapInfo(bpf_map__fd(map));
    if (!info) return Status::error(std::string("xdp: read map ") + bpf_map__name(map) + ": " + errnoText(errno));
    std::string entry = "id " + std::to_string(info->id) + "\n" + layout->second;
    if (entry.size() >= xdp::kLayoutTextBytes)
      return Status::error(std::string("xdp: the layout of map ") + bpf_map__name(map) + " takes " +
                           std::to_string(entry.size()) + " bytes, over the " +
                           std::to_string(xdp::kLayoutTextBytes - 1) + " an entry of " + xdp::kLayoutsPin +
                           " holds");
    record[layout->first] = std::move(entry);
  }
  if (layoutsPinned_ && record == pinnedLayouts_) return Status::ok();
  if (Status s = writeLayouts(record); !s) return s;
  pinnedLayouts_ = std::move(record);
  layoutsPinned_ = true;
  return Status::ok();
}

// Pins `record` (map name -> entry) as map_layouts, with this build's
// #format, frozen, in one step.
Status XdpDataplane::writeLayouts(const std::map<std::string, std::string>& record) {
  const std::string path = options_.pinDir + "/" + xdp::kLayoutsPin;
  LIBBPF_OPTS(bpf_map_create_opts, opts, .map_flags = BPF_F_NO_PREALLOC);
  Fd fd(bpf_map_create(BPF_MAP_TYPE_HASH, xdp::kLayoutsPin, xdp::kLayoutNameBytes, xdp::kLayoutTextBytes,
                       static_cast<uint32_t>(record.size() + 1), &opts));
  if (fd.get() < 0) return Status::error("xdp: create " + path + ": " + errnoText(errno));
  std::vector<char> text(xdp::kLayoutTextBytes);
  auto put = [&](const std::string& name, const std::string& value) {
    char key[xdp::kLayoutNameBytes] = {};
    std::memcpy(key, name.data(), name.size());  // shorter: readOurLayouts
    std::fill(text.begin(), text.end(), '\0');
    std::memcpy(text.data(), value.data(), value.size());
    if (bpf_map_update_elem(fd.get(), key, text.data(), BPF_ANY) == 0) return Status::ok();
    return Status::error("xdp: write " + path + " entry " + name + ": " + errnoText(errno));
  };
  if (Status s = put(xdp::kLayoutFormatKey, xdp::kLayoutFormat); !s) return s;
  for (const auto& [name, entry] : record)
    if (Status s = put(name, entry); !s) return s;
  if (bpf_map_freeze(fd.get()) != 0) return Status::error("xdp: freeze " + path + ": " + errnoText(errno));
  return pinReplacing(fd.get(), path);
}

// A swap that failed after pinLayouts(): the old program runs on, so the
// record it was adopted with goes back (none: the new one goes).
void XdpDataplane::restoreLayouts(const std::map<std::string, std::string>& old, bool hadRecord) {
  const std::string path = options_.pinDir + "/" + xdp::kLayoutsPin;
  Status s = hadRecord ? writeLayouts(old) : Status::ok();
  if (!hadRecord && ::unlink(path.c_str()) != 0 && errno != ENOENT)
    s = Status::error("xdp: unlink " + path + ": " + errnoText(errno));
  if (!s)
    logWarn(LogRecord("xdp_layouts_not_restored")
                .add("error", s.message() + ": the record names this build's layouts while the old program "
                                            "runs; its next start may be refused as another layout"));
  pinnedLayouts_ = old;
  layoutsPinned_ = hadRecord;
}

// <pinDir>/prog names the program that is attached: how the next keeld
// tells "ours, adopt it" from "someone else's, leave it alone". Beside it,
// prog_rodata: that program's load-time options, which the next keeld
// compares with its own (sameProgram) without opening anything by id.
Status XdpDataplane::pinProgram() {
  // A kept program is the one pinned, with its own prog_rodata (the check
  // used both): nothing to write.
  if (keptProgram_) return Status::ok();
  auto pin = [&](const char* name, int fd) {
    if (fd < 0) return Status::ok();
    return pinReplacing(fd, options_.pinDir + "/" + name);
  };
  // Program first: a crash in between leaves a prog_rodata the attached
  // program does not use, which the next keeld reads as "cannot tell".
  if (Status s = pin(kProgPin, attachedFd_); !s) return s;
  return pin(kRodataPin, bpf_map__fd(skel_->maps.rodata));
}

void XdpDataplane::unpinMaps() {
  bpf_map* map;
  // Each pin and what a keeld killed while it replaced it left beside it
  // (pinReplacing's NAME_new).
  auto unpin = [&](const std::string& name) {
    ::unlink((options_.pinDir + "/" + name).c_str());
    ::unlink((options_.pinDir + "/" + name + kNewSuffix).c_str());
  };
  bpf_object__for_each_map(map, skel_->obj) {
    if (bpf_map__is_internal(map)) continue;
    unpin(bpf_map__name(map));
  }
  unpin(kProgPin);
  unpin(kRodataPin);
  unpin(xdp::kLayoutsPin);
  removePinDirIfEmpty(options_.pinDir);  // keeps others' files
  pinned_ = false;
}

Status XdpDataplane::readProgrammed(ProgrammedState* out) {
  auto& m = skel_->maps;
  {
    keel_vip_key key{}, next{};
    const void* prev = nullptr;
    while (bpf_map__get_next_key(m.vips, prev, &next, sizeof next) == 0) {
      out->vips.push_back(next);
      key = next;
      prev = &key;
    }
  }
  {
    keel_service_key key{}, next{};
    const void* prev = nullptr;
    while (bpf_map__get_next_key(m.services, prev, &next, sizeof next) == 0) {
      keel_service_value v{};
      if (bpf_map__lookup_elem(m.services, &next, sizeof next, &v, sizeof v, 0) == 0)
        out->services.emplace_back(next, v);
      key = next;
      prev = &key;
    }
  }
  out->backends.resize(options_.limits.maxBackends);
  for (uint32_t id = 0; id < options_.limits.maxBackends; ++id)
    if (bpf_map__lookup_elem(m.backends, &id, sizeof id, &out->backends[id], sizeof(keel_backend), 0) != 0)
      return Status::error("xdp: read pinned backend " + std::to_string(id) + ": " + errnoText(errno));
  return Status::ok();
}

Status XdpDataplane::shutdown(bool removePins) {
  Status result;
  if (attached_) {
    // old_prog_fd makes the kernel detach only if our program is still the
    // attached one (XDP_FLAGS_REPLACE semantics).
    LIBBPF_OPTS(bpf_xdp_attach_opts, opts, .old_prog_fd = attachedFd_);
    int rc = bpf_xdp_detach(ifindex_, attachFlags(), &opts);
    // ENODEV: the interface (or its netns) is already gone, nothing to undo.
    if (rc != 0 && rc != -ENODEV)
      result = Status::error("xdp: detach from " + options_.interface + ": " + errnoText(rc));
    attached_ = false;
  }
  if (removePins && pinned_) unpinMaps();
  return result;
}

Status XdpDataplane::setNode(const keel_node_config& node) {
  uint32_t zero = 0;
  return mapStatus(bpf_map__update_elem(skel_->maps.node_config, &zero, sizeof zero, &node,
                                        sizeof node, BPF_ANY),
                   "xdp: write node_config");
}

Status XdpDataplane::addVip(const keel_vip_key& vip) {
  keel_vip_value value{};
  return mapStatus(
      bpf_map__update_elem(skel_->maps.vips, &vip, sizeof vip, &value, sizeof value, BPF_ANY),
      "xdp: add vip");
}

Status XdpDataplane::removeVip(const keel_vip_key& vip) {
  int rc = bpf_map__delete_elem(skel_->maps.vips, &vip, sizeof vip, 0);
  if (rc != 0 && errno == ENOENT) return Status::ok();  // already gone: the goal holds
  return mapStatus(rc, "xdp: remove vip");
}

Status XdpDataplane::upsertBackend(BackendId id, const keel_backend& backend) {
  if (id >= options_.limits.maxBackends)
    return Status::error("xdp: backend id " + std::to_string(id) + " >= limits.max_reals " +
                         std::to_string(options_.limits.maxBackends));
  return mapStatus(bpf_map__update_elem(skel_->maps.backends, &id, sizeof id, &backend,
                                        sizeof backend, BPF_ANY),
                   "xdp: write backend");
}

Status XdpDataplane::upsertService(const keel_service_key& key, const keel_service_value& value) {
  if (value.id >= options_.limits.maxServices)
    return Status::error("xdp: service id " + std::to_string(value.id) + " >= limits.max_services");
  return mapStatus(
      bpf_map__update_elem(skel_->maps.services, &key, sizeof key, &value, sizeof value, BPF_ANY),
      "xdp: write service");
}

Status XdpDataplane::removeService(const keel_service_key& key) {
  int rc = bpf_map__delete_elem(skel_->maps.services, &key, sizeof key, 0);
  if (rc != 0 && errno == ENOENT) return Status::ok();
  return mapStatus(rc, "xdp: remove service");
}

Status XdpDataplane::checkRing(ServiceId id, const std::vector<uint32_t>& slots) const {
  if (id >= options_.limits.maxServices)
    return Status::error("xdp: service id " + std::to_string(id) + " >= limits.max_services");
  for (uint32_t b : slots)
    if (b >= options_.limits.maxBackends)
      return Status::error("xdp: ring of service " + std::to_string(id) + " names backend " +
                           std::to_string(b) + " >= limits.max_reals");
  return Status::ok();
}

// Layout (include/keel/maglev_lookup.h): word 0 = M, then M slots. An
// empty ring is one word, M = 0: "no usable real".
std::vector<uint32_t> XdpDataplane::ringWords(const std::vector<uint32_t>& slots) {
  std::vector<uint32_t> values(slots.size() + 1);
  values[0] = static_cast<uint32_t>(slots.size());
  std::copy(slots.begin(), slots.end(), values.begin() + 1);
  return values;
}

Status XdpDataplane::publishRing(ServiceId id, std::vector<uint32_t> slots) {
  if (Status s = checkRing(id, slots); !s) return s;
  const std::vector<uint32_t> values = ringWords(slots);
  // The atomic swap: packets see the old ring or this one. The outer map
  // holds its own reference, so our fd can go.
  const int outer = bpf_map__fd(skel_->maps.rings);
  int fd = makeRing(values, ringsMmapable_);
  int rc = fd < 0 ? fd : bpf_map_update_elem(outer, &id, &fd, BPF_ANY);
  if (fd >= 0 && rc != 0 && errno == EINVAL && ringsMmapable_) {
    // An outer map pinned by a keeld from before mmapable rings: its
    // template's flags are the plain ones, and the kernel wants them equal.
    // Plain from now on only if a plain ring is what it takes.
    ::close(fd);
    fd = makeRing(values, false);
    rc = fd < 0 ? fd : bpf_map_update_elem(outer, &id, &fd, BPF_ANY);
    if (fd >= 0 && rc == 0) {
      ringsMmapable_ = false;
      logInfo(LogRecord("xdp_rings_plain")
                  .add("detail", "the adopted rings map takes plain inner arrays: rings are filled by batch "
                                 "update until keeld starts on fresh pins"));
    }
  }
  if (fd < 0) return Status::error("xdp: ring for service " + std::to_string(id) + ": " + errnoText(-fd));
  int err = errno;
  ::close(fd);
  if (rc != 0)
    return Status::error("xdp: publish ring for service " + std::to_string(id) + ": " + errnoText(err));
  return Status::ok();
}

Status XdpDataplane::publishRings(const RingList& rings, size_t* published) {
  *published = 0;
  // Checked and made first; what comes before a ring that cannot be made
  // still goes out.
  std::vector<uint32_t> keys;
  std::vector<int> fds;
  Status made = Status::ok();
  for (const auto& [id, slots] : rings) {
    if (made = checkRing(id, slots); !made) break;
    const int fd = makeRing(ringWords(slots), ringsMmapable_);
    if (fd < 0) {
      made = Status::error("xdp: ring for service " + std::to_string(id) + ": " + errnoText(-fd));
      break;
    }
    keys.push_back(id);
    fds.push_back(fd);
  }
  uint32_t count = static_cast<uint32_t>(keys.size());
  LIBBPF_OPTS(bpf_map_batch_opts, opts, .elem_flags = BPF_ANY);
  const int rc = count == 0 ? 0 : bpf_map_update_batch(bpf_map__fd(skel_->maps.rings), keys.data(), fds.data(),
                                                       &count, &opts);
  for (int fd : fds) ::close(fd);  // the outer map holds its own references
  if (rc != 0) {
    // Those after the count one by one: publishRing says which failed and
    // why (and takes plain rings where an adopted map wants them). A
    // kernel that refuses the call before it starts (an older one without
    // batch updates of an array-of-maps: ENOTSUPP) leaves count as it was passed
    // in, so a count of all of them with an error is none of them (each
    // one's error is returned with the count of those it did).
    *published = count < keys.size() ? count : 0;
    for (; *published < keys.size(); ++*published)
      if (Status s = publishRing(rings[*published].first, rings[*published].second); !s) return s;
  }
  *published = keys.size();
  return made;
}

int XdpDataplane::makeRing(const std::vector<uint32_t>& values, bool mmapable) {
  const uint32_t words = static_cast<uint32_t>(values.size());
  // Same flags as the outer map's template: the kernel checks them on
  // insert, and BPF_F_INNER_MAP is what lets M differ between rings.
  LIBBPF_OPTS(bpf_map_create_opts, createOpts,
              .map_flags = BPF_F_INNER_MAP | (mmapable ? uint32_t{BPF_F_MMAPABLE} : 0u));
  int fd = bpf_map_create(BPF_MAP_TYPE_ARRAY, "keel_ring", sizeof(uint32_t), sizeof(uint32_t), words, &createOpts);
  if (fd < 0) return -errno;
  if (mmapable) {
    // An array's elements are 8-byte aligned: u32 slot i is at byte 8 * i.
    const size_t bytes = static_cast<size_t>(words) * 8;
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      return -err;
    }
    auto* slots = static_cast<uint8_t*>(p);
    for (uint32_t i = 0; i < words; ++i) std::memcpy(slots + 8 * static_cast<size_t>(i), &values[i], 4);
    munmap(p, bytes);
    return fd;
  }
  if (ringKeys_.size() < words) {
    size_t old = ringKeys_.size();
    ringKeys_.resize(words);
    for (size_t i = old; i < words; ++i) ringKeys_[i] = static_cast<uint32_t>(i);
  }
  // One syscall for the whole table (65k single updates cost ~10x more).
  uint32_t count = words;
  LIBBPF_OPTS(bpf_map_batch_opts, batchOpts);
  int rc = bpf_map_update_batch(fd, ringKeys_.data(), values.data(), &count, &batchOpts);
  if (rc != 0 && (errno == EINVAL || errno == ENOTSUP || errno == EOPNOTSUPP)) {
    rc = 0;
    for (uint32_t i = 0; i < words && rc == 0; ++i) rc = bpf_map_update_elem(fd, &ringKeys_[i], &values[i], BPF_ANY);
  }
  if (rc != 0) {
    const int err = errno;
    ::close(fd);
    return -err;
  }
  return fd;
}

Status XdpDataplane::zeroCounters(CounterKind kind, uint32_t id) {
  const bool svc = kind == CounterKind::kService;
  const int ncpu = libbpf_num_possible_cpus();
  if (ncpu <= 0) return Status::error("xdp: reset counters: cannot count possible CPUs");
  // A per-CPU array slot is written whole: one zero record per possible CPU.
  // The registry calls this after the upsert that stops new packets from
  // using the id; a program that passed its checks just before that upsert
  // (in flight on another CPU, microseconds) may still add its one packet
  // after the reset. That is the one packet the old owner really sent.
  std::vector<keel_counter> zeros(static_cast<size_t>(ncpu));
  bpf_map* map = svc ? skel_->maps.stats_services : skel_->maps.stats_backends;
  return mapStatus(bpf_map__update_elem(map, &id, sizeof id, zeros.data(),
                                        zeros.size() * sizeof(keel_counter), BPF_ANY),
                   svc ? "xdp: reset service counters" : "xdp: reset backend counters");
}

std::vector<keel_counter> XdpDataplane::readPercpu(int fd, uint32_t entries) {
  const int ncpu = libbpf_num_possible_cpus();
  std::vector<keel_counter> sums(entries);
  if (ncpu <= 0 || entries == 0) return sums;
  // Per-CPU values come as ncpu consecutive records (each rounded up to 8
  // bytes; keel_counter already is). Summing them is the reader's job.
  std::vector<keel_counter> values(static_cast<size_t>(entries) * ncpu);
  std::vector<uint32_t> keys(entries);
  uint32_t count = entries, outBatch = 0;
  LIBBPF_OPTS(bpf_map_batch_opts, opts);
  int rc = bpf_map_lookup_batch(fd, nullptr, &outBatch, keys.data(), values.data(), &count, &opts);
  if (rc == 0 || errno == ENOENT) {
    for (uint32_t i = 0; i < count; ++i) {
      if (keys[i] >= entries) continue;
      for (int c = 0; c < ncpu; ++c) {
        sums[keys[i]].packets += values[static_cast<size_t>(i) * ncpu + c].packets;
        sums[keys[i]].bytes += values[static_cast<size_t>(i) * ncpu + c].bytes;
      }
    }
    return sums;
  }
  for (uint32_t k = 0; k < entries; ++k) {  // kernels without batch ops
    if (bpf_map_lookup_elem(fd, &k, values.data()) != 0) continue;
    for (int c = 0; c < ncpu; ++c) {
      sums[k].packets += values[c].packets;
      sums[k].bytes += values[c].bytes;
    }
  }
  return sums;
}

DataplaneStats XdpDataplane::readCounters(uint32_t services, uint32_t backends) {
  DataplaneStats st;
  st.services = readPercpu(bpf_map__fd(skel_->maps.stats_services), services);
  st.backends = readPercpu(bpf_map__fd(skel_->maps.stats_backends), backends);
  std::vector<keel_counter> reasons = readPercpu(bpf_map__fd(skel_->maps.stats_reasons), KEEL_R_MAX);
  std::copy(reasons.begin(), reasons.end(), st.reasons.begin());
  const int ncpu = libbpf_num_possible_cpus();
  if (ncpu > 0) {
    std::vector<keel_ct_insert_limit> limits(static_cast<size_t>(ncpu));
    uint32_t zero = 0;
    if (bpf_map_lookup_elem(bpf_map__fd(skel_->maps.ct_insert_limit), &zero, limits.data()) == 0)
      for (const keel_ct_insert_limit& l : limits) st.connInsertsSkipped += l.skipped;
    std::vector<uint64_t> misses(static_cast<size_t>(ncpu));
    uint32_t event = KEEL_CT_S_MIDFLOW_MISS;
    if (bpf_map_lookup_elem(bpf_map__fd(skel_->maps.stats_conntrack), &event, misses.data()) == 0)
      for (uint64_t n : misses) st.connMidflowMisses += n;
  }
  return st;
}

std::optional<uint64_t> XdpDataplane::connTableEntries() {
  if (!ctCounter_) return std::nullopt;
  return ctCounter_->read();
}

uint64_t XdpDataplane::connTableCapacity() const {
  // The one LRU hash every CPU shares, as loaded: create() sized it from
  // limits.conn_table_size, and an adopted pin must have that size too.
  return bpf_map__max_entries(skel_->maps.conntrack);
}

std::optional<uint32_t> XdpDataplane::portMtu() const {
  char name[IF_NAMESIZE] = {};
  // Our interface gone (deleted, maybe created again under its name, which
  // maintain() attaches to at its next call): the one of that name now.
  if (!if_indextoname(static_cast<unsigned>(ifindex_), name)) {
    if (options_.interface.size() >= sizeof name) return std::nullopt;
    std::memcpy(name, options_.interface.c_str(), options_.interface.size() + 1);
  }
  Fd sock(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (sock.get() < 0) return std::nullopt;
  ifreq req{};
  static_assert(sizeof req.ifr_name == sizeof name);
  std::memcpy(req.ifr_name, name, sizeof name);  // NUL-terminated by if_indextoname
  if (ioctl(sock.get(), SIOCGIFMTU, &req) != 0 || req.ifr_mtu <= 0) return std::nullopt;
  return static_cast<uint32_t>(req.ifr_mtu);
}

namespace {

// The id of the program attached to ifindex in the mode of flags
// (XDP_FLAGS_DRV_MODE or XDP_FLAGS_SKB_MODE), 0 if none, or -errno.
int64_t attachedProgId(int ifindex, uint32_t flags) {
  uint32_t id = 0;
  if (int rc = bpf_xdp_query_id(ifindex, static_cast<int>(flags), &id); rc != 0) return rc;
  return id;
}

std::string ifName(int ifindex) {
  char name[IF_NAMESIZE] = {};
  return if_indextoname(static_cast<unsigned>(ifindex), name) ? std::string(name) : std::string();
}

}  // namespace

bool XdpDataplane::attachedNow() const {
  if (!attached_) return false;
  const int now = static_cast<int>(if_nametoindex(options_.interface.c_str()));
  return now != 0 && attachedProgId(now, attachFlags()) == programId_;
}

std::vector<std::pair<std::string, int>> XdpDataplane::ourPins() const {
  std::vector<std::pair<std::string, int>> out;
  if (!pinned_) return out;
  bpf_map* map;
  bpf_object__for_each_map(map, skel_->obj) {
    if (!bpf_map__is_internal(map)) out.emplace_back(bpf_map__name(map), bpf_map__fd(map));
  }
  out.emplace_back(kProgPin, attachedFd_);
  if (attachedRodata_.get() >= 0) out.emplace_back(kRodataPin, attachedRodata_.get());
  if (layoutsPinned_) out.emplace_back(xdp::kLayoutsPin, -1);  // rewritten from pinnedLayouts_
  return out;
}

std::vector<std::string> XdpDataplane::missingPins() const {
  std::vector<std::string> out;
  for (const auto& [name, fd] : ourPins())
    if (::access((options_.pinDir + "/" + name).c_str(), F_OK) != 0) out.push_back(name);
  return out;
}

void XdpDataplane::maintain() {
  if (!attached_) return;  // shut down: nothing of ours to keep
  maintainAttachment();
  maintainPins();
}

// The link of dataplane.interface's name is what keeld was told to serve:
// a link deleted and created again (another ifindex, no program: the
// program went with the old link) or a program detached by hand stops all
// VIP traffic without anything else noticing. Attached again where no XDP
// program is; one someone else attached is never replaced (as at create).
void XdpDataplane::maintainAttachment() {
  const uint32_t flags = attachFlags();
  const std::string modeName = options_.mode == XdpAttachMode::kNative ? "native" : "generic";
  const int now = static_cast<int>(if_nametoindex(options_.interface.c_str()));
  auto failed = [&](const std::string& event, const std::string& error, int ifindex) {
    if (error == attachErrorSaid_) return;  // said already; retried at every call
    attachErrorSaid_ = error;
    logError(LogRecord(event)
                 .add("interface", options_.interface)
                 .add("ifindex", ifindex)
                 .add("old_ifindex", ifindex_)
                 .add("prog_id", programId_)
                 .add("error", error));
  };
  if (now == 0) {
    // Gone, or renamed (then our program runs on under the new name).
    const std::string renamed = ifName(ifindex_);
    const bool stillOurs = !renamed.empty() && attachedProgId(ifindex_, flags) == programId_;
    detachedSaid_ = detachedSaid_ || !stillOurs;
    failed("dataplane_interface_missing",
           "no interface named " + options_.interface +
               (stillOurs ? " (renamed to " + renamed + ", where the program stays attached)"
                          : ": VIP traffic is not forwarded") +
               "; the program is attached again once an interface of that name exists",
           0);
    return;
  }
  const int64_t id = attachedProgId(now, flags);
  if (id == programId_) {
    // Ours. After a fault said: back without us (renamed back).
    if (detachedSaid_ || !attachErrorSaid_.empty())
      logWarn(LogRecord("dataplane_reattached")
                  .add("interface", options_.interface)
                  .add("ifindex", now)
                  .add("old_ifindex", ifindex_)
                  .add("prog_id", programId_)
                  .add("detail", "found attached again"));
    ifindex_ = now;
    attachErrorSaid_.clear();
    detachedSaid_ = false;
    return;
  }
  if (id < 0) {
    failed("dataplane_reattach_failed", "query " + options_.interface + ": " + errnoText(static_cast<int>(id)), now);
    return;
  }
  if (!detachedSaid_) {
    detachedSaid_ = true;
    logError(LogRecord("dataplane_detached")
                 .add("interface", options_.interface)
                 .add("old_ifindex", ifindex_)
                 .add("ifindex", now)
                 .add("prog_id", programId_)
                 .add("reason", now != ifindex_ ? "the interface was deleted and created again (ifindex " +
                                                      std::to_string(ifindex_) + ", now " + std::to_string(now) +
                                                      "): the program went with the old one"
                                : id == 0 ? "the program is no longer attached (" + modeName + " mode)"
                                          : "another program (id " + std::to_string(id) + ") is attached in its place")
                 .add("detail", "VIP traffic is not forwarded until the program is attached again"));
  }
  LIBBPF_OPTS(bpf_xdp_attach_opts, opts);
  if (int rc = bpf_xdp_attach(now, attachedFd_, flags | XDP_FLAGS_UPDATE_IF_NOEXIST, &opts); rc != 0) {
    std::string why = errnoText(rc);
    if (rc == -EBUSY || rc == -EEXIST)
      why += " (another XDP program" + (id != 0 ? " (id " + std::to_string(id) + ")" : std::string()) +
             " is attached to " + options_.interface +
             ": keeld does not replace one it did not attach; once it is detached, keeld attaches its own)";
    // The kernel's own words only where they add to ours (and the same
    // error stays the same text: said once).
    const std::string libbpf = takeLibbpfLog();
    if (rc != -EBUSY && rc != -EEXIST) why += libbpf;
    failed("dataplane_reattach_failed", "attach to " + options_.interface + " in " + modeName + " mode: " + why, now);
    return;
  }
  const int old = ifindex_;
  ifindex_ = now;
  ++reattached_;
  // The old link still there under another name, with our program: it
  // goes, so that one link runs the plane and shutdown() finds it.
  std::string oldLink;
  if (old != now && !(oldLink = ifName(old)).empty() && attachedProgId(old, flags) == programId_) {
    LIBBPF_OPTS(bpf_xdp_attach_opts, detachOpts, .old_prog_fd = attachedFd_);
    (void)bpf_xdp_detach(old, flags, &detachOpts);
  } else {
    oldLink.clear();
  }
  LogRecord r("dataplane_reattached");
  r.add("interface", options_.interface)
      .add("ifindex", now)
      .add("old_ifindex", old)
      .add("mode", modeName)
      .add("prog_id", programId_);
  if (!oldLink.empty()) r.add("detached_from", oldLink);
  logWarn(r);
  attachErrorSaid_.clear();
  detachedSaid_ = false;
}

// The pins are how the next keeld adopts this plane (and refuses to start
// over an attached program that none of them names): removed under a
// running keeld, a restart would fail and its way out drop every flow.
// Every fd is still ours, so each missing pin is made again as it was.
void XdpDataplane::maintainPins() {
  if (!pinned_) return;
  const std::string& dir = options_.pinDir;
  std::vector<std::string> restored;
  Status s;
  // The directory, and its lock: one removed (rm -r) leaves our flock on a
  // deleted inode, which would let a second keeld in.
  struct stat held {}, there {};
  const bool dirOk = ::stat(dir.c_str(), &there) == 0 && pinLock_.get() >= 0 &&
                     ::fstat(pinLock_.get(), &held) == 0 && held.st_dev == there.st_dev &&
                     held.st_ino == there.st_ino;
  if (!dirOk) {
    // Made again and locked as create() does, without its wait: the
    // control thread does not block here; a holder is retried next time.
    // bpffs first, as create() does: unmounted under us (umount -l), it
    // is mounted again, or the error says it is not there (it said "create
    // DIR: No such file or directory", and the pins stayed missing for
    // the next keeld, which could not adopt).
    Fd fd;
    s = bpffsForPins();
    if (s) s = lockPinDir(dir, &fd, std::chrono::milliseconds(0));
    if (s) {
      pinLock_ = std::move(fd);
      restored.push_back(dir);
    }
  }
  if (s) {
    for (const auto& [name, fd] : ourPins()) {
      const std::string path = dir + "/" + name;
      if (::access(path.c_str(), F_OK) == 0) continue;
      // map_layouts is a frozen map of its own: written again, as it was.
      s = name == xdp::kLayoutsPin ? writeLayouts(pinnedLayouts_) : pinReplacing(fd, path);
      if (!s) break;
      restored.push_back(name);
    }
  }
  if (!restored.empty()) {
    std::string names;
    for (const std::string& n : restored) names += (names.empty() ? "" : ",") + n;
    ++repinned_;
    logWarn(LogRecord("dataplane_pins_restored")
                .add("pins", dir)
                .add("restored", names)
                .add("reason", "removed under the running keeld; pinned again from the descriptors it holds, so "
                               "the next keeld adopts the plane"));
  }
  if (!s) {
    const std::string error = s.message();
    if (error != pinErrorSaid_)
      logError(LogRecord("dataplane_pins_restore_failed")
                   .add("pins", dir)
                   .add("error", error)
                   .add("detail", "a keeld started after this one cannot adopt the plane until they are back "
                                  "(retried every few seconds)"));
    pinErrorSaid_ = error;
    return;
  }
  pinErrorSaid_.clear();
}

namespace {

// Entry v of `key` as findConn()/scanConns() report it, at `now` on the
// program's clock, with its protocol's idle timeout from node.
ConnEntry connEntryOf(const keel_flow_key& key, const keel_ct_value& v, const keel_node_config& node, uint64_t now) {
  const uint32_t timeoutS = key.proto == KEEL_PROTO_TCP ? node.tcp_idle_timeout_s : node.udp_idle_timeout_s;
  return connEntryAt(v, now, uint64_t{timeoutS} * 1000000000ull);
}

}  // namespace

std::optional<ConnEntry> XdpDataplane::findConn(const keel_flow_key& key) {
  // The shared table keeld creates (a per-CPU flavour, which the program
  // would also accept, is never created: its value size differs and the
  // lookup below fails, so nothing is found). A lookup from user space does
  // not mark an LRU entry used.
  keel_ct_value v{};
  if (bpf_map__lookup_elem(skel_->maps.conntrack, &key, sizeof key, &v, sizeof v, 0) != 0) return std::nullopt;
  if (v.last_seen_ns == 0) return std::nullopt;  // never written: a packet reads a miss (conntrack.h)
  keel_node_config node{};
  uint32_t zero = 0;
  if (bpf_map__lookup_elem(skel_->maps.node_config, &zero, sizeof zero, &node, sizeof node, 0) != 0)
    return std::nullopt;  // an array's one element: cannot fail once the map exists
  return connEntryOf(key, v, node, clockNs(CLOCK_MONOTONIC));  // bpf_ktime_get_ns()'s clock
}

Status XdpDataplane::scanConns(const ConnVisitor& visit) {
  keel_node_config node{};
  uint32_t zero = 0;
  if (bpf_map__lookup_elem(skel_->maps.node_config, &zero, sizeof zero, &node, sizeof node, 0) != 0)
    return Status::error("xdp: read node_config: " + errnoText(errno));
  // Batches of a few thousand entries (the kernel copies whole hash buckets,
  // so a batch may end short); ENOENT marks the last one, which may still
  // carry entries. An LRU map changes under the scan: an entry added or
  // evicted meanwhile may or may not be seen, none is seen twice.
  const int fd = bpf_map__fd(skel_->maps.conntrack);
  constexpr uint32_t kBatch = 4096;
  std::vector<keel_flow_key> keys(kBatch);
  std::vector<keel_ct_value> values(kBatch);
  uint64_t token = 0;  // the kernel's position in the map (a bucket index for a hash map)
  LIBBPF_OPTS(bpf_map_batch_opts, opts);
  for (bool first = true, last = false; !last; first = false) {
    uint32_t n = kBatch;
    if (bpf_map_lookup_batch(fd, first ? nullptr : &token, &token, keys.data(), values.data(), &n, &opts) != 0) {
      if (errno != ENOENT) return Status::error("xdp: read the connection table: " + errnoText(errno));
      last = true;
    }
    const uint64_t now = clockNs(CLOCK_MONOTONIC);
    for (uint32_t i = 0; i < n; ++i)
      if (values[i].last_seen_ns != 0) visit(keys[i], connEntryOf(keys[i], values[i], node, now), -1);
  }
  return Status::ok();
}

}  // namespace keel

// SPDX-License-Identifier: Apache-2.0
#include "dataplane/xdp/xdp_dataplane.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <utility>

#include "balancer.skel.h"

namespace keel {
namespace {

constexpr long kBpfFsMagic = 0xcafe4a11;  // BPF_FS_MAGIC (linux/magic.h)

std::string errnoText(int err) { return std::strerror(err < 0 ? -err : err); }

// libbpf prints verifier logs and warnings through one global callback. Keep
// the tail of what it said so a load failure can carry the reason.
std::mutex gLibbpfLogMutex;
std::string gLibbpfLog;

int libbpfPrint(enum libbpf_print_level level, const char* fmt, va_list args) {
  if (level == LIBBPF_DEBUG) return 0;
  char buf[1024];
  int n = std::vsnprintf(buf, sizeof buf, fmt, args);
  std::lock_guard lock(gLibbpfLogMutex);
  gLibbpfLog += buf;
  // The verifier's last lines say why; 8 KiB of tail is plenty.
  if (gLibbpfLog.size() > 8192) gLibbpfLog.erase(0, gLibbpfLog.size() - 8192);
  return n;
}

std::string takeLibbpfLog() {
  std::lock_guard lock(gLibbpfLogMutex);
  std::string out;
  std::swap(out, gLibbpfLog);
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out.empty() ? "" : "\nlibbpf: " + out;
}

Status ensureBpffs() {
  struct statfs st {};
  if (statfs("/sys/fs/bpf", &st) == 0 && st.f_type == kBpfFsMagic) return Status::ok();
  if (mount("bpf", "/sys/fs/bpf", "bpf", 0, nullptr) != 0)
    return Status::error(std::string("mount bpffs on /sys/fs/bpf: ") + std::strerror(errno));
  return Status::ok();
}

Status mapStatus(int rc, const char* what) {
  if (rc == 0) return Status::ok();
  return Status::error(std::string(what) + ": " + errnoText(errno));
}

}  // namespace

XdpDataplane::XdpDataplane(const XdpOptions& options) : options_(options) {}

XdpDataplane::~XdpDataplane() {
  (void)shutdown(false);
  keel_balancer__destroy(skel_);
}

uint32_t XdpDataplane::attachFlags() const {
  return options_.mode == XdpAttachMode::kNative ? XDP_FLAGS_DRV_MODE : XDP_FLAGS_SKB_MODE;
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
  auto& m = dp->skel_->maps;
  // Sizes come from the config (limits:); the BPF defaults are only defaults.
  // vips: at most one VIP per service.
  struct {
    bpf_map* map;
    uint32_t entries;
  } sizes[] = {
      {m.vips, l.maxServices},           {m.services, l.maxServices},
      {m.rings, l.maxServices},          {m.stats_services, l.maxServices},
      {m.backends, l.maxBackends},       {m.stats_backends, l.maxBackends},
      {m.conntrack, l.connTableSize},
  };
  for (auto& s : sizes) {
    if (int rc = bpf_map__set_max_entries(s.map, s.entries); rc != 0)
      return Status::error(std::string("xdp: size map ") + bpf_map__name(s.map) + ": " + errnoText(rc));
  }
  if (int rc = keel_balancer__load(dp->skel_); rc != 0)
    return Status::error("xdp: load balancer program: " + errnoText(rc) + takeLibbpfLog());

  // Attach only where no XDP program is: replacing one would silently break
  // whatever (another keeld, a decap program) put it there.
  LIBBPF_OPTS(bpf_xdp_attach_opts, attachOpts);
  int progFd = bpf_program__fd(dp->skel_->progs.balancer);
  if (int rc = bpf_xdp_attach(dp->ifindex_, progFd, dp->attachFlags() | XDP_FLAGS_UPDATE_IF_NOEXIST,
                              &attachOpts);
      rc != 0) {
    std::string hint = rc == -EBUSY || rc == -EEXIST
                           ? " (an XDP program is already attached; `ip link set dev " +
                                 options.interface + " xdp off` if it is stale)"
                           : rc == -EOPNOTSUPP ? " (driver lacks native XDP; try xdp_mode: generic)" : "";
    return Status::error("xdp: attach to " + options.interface + " in " +
                         (options.mode == XdpAttachMode::kNative ? "native" : "generic") +
                         " mode: " + errnoText(rc) + hint + takeLibbpfLog());
  }
  dp->attached_ = true;
  bpf_prog_info info{};
  uint32_t infoLen = sizeof info;
  if (bpf_obj_get_info_by_fd(progFd, &info, &infoLen) == 0) dp->programId_ = info.id;

  if (!options.pinDir.empty()) {
    if (Status s = dp->pinMaps(); !s) return s;  // destructor detaches
  }
  *out = std::move(dp);
  return Status::ok();
}

Status XdpDataplane::pinMaps() {
  if (Status s = ensureBpffs(); !s) return Status::error("xdp: " + s.message());
  std::error_code ec;
  std::filesystem::create_directories(options_.pinDir, ec);
  if (ec) return Status::error("xdp: create pin directory " + options_.pinDir + ": " + ec.message());
  bpf_map* map;
  bpf_object__for_each_map(map, skel_->obj) {
    // .rodata/.bss are internal: nothing outside this process writes them.
    if (bpf_map__is_internal(map)) continue;
    std::string path = options_.pinDir + "/" + bpf_map__name(map);
    // Pins left by a keeld that died are stale (adoption is a later step):
    // replace them, our program is the one attached now.
    ::unlink(path.c_str());
    if (int rc = bpf_map__pin(map, path.c_str()); rc != 0) {
      unpinMaps();
      return Status::error("xdp: pin " + path + ": " + errnoText(rc));
    }
  }
  pinned_ = true;
  return Status::ok();
}

void XdpDataplane::unpinMaps() {
  bpf_map* map;
  bpf_object__for_each_map(map, skel_->obj) {
    if (bpf_map__is_internal(map)) continue;
    if (bpf_map__is_pinned(map)) (void)bpf_map__unpin(map, nullptr);
  }
  ::rmdir(options_.pinDir.c_str());  // only if empty; keeps others' files
  pinned_ = false;
}

Status XdpDataplane::shutdown(bool removePins) {
  Status result;
  if (attached_) {
    // old_prog_fd makes the kernel detach only if our program is still the
    // attached one (XDP_FLAGS_REPLACE semantics).
    LIBBPF_OPTS(bpf_xdp_attach_opts, opts, .old_prog_fd = bpf_program__fd(skel_->progs.balancer));
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

Status XdpDataplane::publishRing(ServiceId id, const std::vector<uint32_t>& slots) {
  if (id >= options_.limits.maxServices)
    return Status::error("xdp: service id " + std::to_string(id) + " >= limits.max_services");
  for (uint32_t b : slots)
    if (b >= options_.limits.maxBackends)
      return Status::error("xdp: ring of service " + std::to_string(id) + " names backend " +
                           std::to_string(b) + " >= limits.max_reals");
  // Layout (include/keel/maglev_lookup.h): word 0 = M, then M slots. An
  // empty ring is one word, M = 0: "no usable real".
  const uint32_t words = static_cast<uint32_t>(slots.size()) + 1;
  std::vector<uint32_t> values(words);
  values[0] = static_cast<uint32_t>(slots.size());
  std::copy(slots.begin(), slots.end(), values.begin() + 1);
  if (ringKeys_.size() < words) {
    size_t old = ringKeys_.size();
    ringKeys_.resize(words);
    for (size_t i = old; i < words; ++i) ringKeys_[i] = static_cast<uint32_t>(i);
  }

  // Same flags as the BPF template (BPF_F_INNER_MAP): the kernel checks them
  // on insert, and that flag is what lets M differ between rings.
  LIBBPF_OPTS(bpf_map_create_opts, createOpts, .map_flags = BPF_F_INNER_MAP);
  int fd = bpf_map_create(BPF_MAP_TYPE_ARRAY, "keel_ring", sizeof(uint32_t), sizeof(uint32_t),
                          words, &createOpts);
  if (fd < 0) return Status::error("xdp: create ring for service " + std::to_string(id) + ": " + errnoText(fd));
  // One syscall for the whole table (65k single updates cost ~10x more).
  uint32_t count = words;
  LIBBPF_OPTS(bpf_map_batch_opts, batchOpts);
  int rc = bpf_map_update_batch(fd, ringKeys_.data(), values.data(), &count, &batchOpts);
  if (rc != 0 && (errno == EINVAL || errno == ENOTSUP || errno == EOPNOTSUPP)) {
    rc = 0;
    for (uint32_t i = 0; i < words && rc == 0; ++i)
      rc = bpf_map_update_elem(fd, &ringKeys_[i], &values[i], BPF_ANY);
  }
  if (rc != 0) {
    int err = errno;
    ::close(fd);
    return Status::error("xdp: fill ring for service " + std::to_string(id) + ": " + errnoText(err));
  }
  // The atomic swap: packets see the old ring or this one. The outer map
  // holds its own reference, so our fd can go.
  rc = bpf_map_update_elem(bpf_map__fd(skel_->maps.rings), &id, &fd, BPF_ANY);
  int err = errno;
  ::close(fd);
  if (rc != 0)
    return Status::error("xdp: publish ring for service " + std::to_string(id) + ": " + errnoText(err));
  return Status::ok();
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

DataplaneStats XdpDataplane::readStats() {
  DataplaneStats st;
  st.services = readPercpu(bpf_map__fd(skel_->maps.stats_services), options_.limits.maxServices);
  st.backends = readPercpu(bpf_map__fd(skel_->maps.stats_backends), options_.limits.maxBackends);
  std::vector<keel_counter> reasons = readPercpu(bpf_map__fd(skel_->maps.stats_reasons), KEEL_R_MAX);
  std::copy(reasons.begin(), reasons.end(), st.reasons.begin());
  return st;
}

}  // namespace keel

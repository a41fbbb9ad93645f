// SPDX-License-Identifier: Apache-2.0
#include "balancer_loader.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "balancer.skel.h"

namespace keel::test {
namespace {

std::string failed(const std::string& what, int err) {
  return what + ": " + std::strerror(err < 0 ? -err : err);
}

}  // namespace

std::unique_ptr<BalancerLoader> BalancerLoader::load(const LoaderOptions& opts, std::string* error) {
  keel_balancer* skel = keel_balancer::open();
  if (!skel) {
    *error = failed("open balancer skeleton", errno);
    return nullptr;
  }
  skel->rodata->keel_check_mtu = opts.checkMtu ? 1 : 0;
  skel->rodata->keel_use_conntrack = opts.useConntrack ? 1 : 0;
  bpf_map__set_max_entries(skel->maps.conntrack, opts.ctSize);
  bpf_map__set_type(skel->maps.conntrack, opts.ctType);
  bpf_map__set_map_flags(skel->maps.conntrack, opts.ctFlags);
  int err = keel_balancer::load(skel);
  if (err) {
    *error = failed("load balancer", err);
    keel_balancer::destroy(skel);
    return nullptr;
  }
  return std::unique_ptr<BalancerLoader>(new BalancerLoader(skel));
}

BalancerLoader::~BalancerLoader() { keel_balancer::destroy(skel_); }

int BalancerLoader::progFd() const { return bpf_program__fd(skel_->progs.balancer); }
int BalancerLoader::conntrackFd() const { return bpf_map__fd(skel_->maps.conntrack); }

std::string BalancerLoader::setNode(const keel_node_config& node) {
  uint32_t zero = 0;
  int err = bpf_map_update_elem(bpf_map__fd(skel_->maps.node_config), &zero, &node, BPF_ANY);
  return err ? failed("node_config", err) : "";
}

std::string BalancerLoader::addVip(const keel_vip_key& vip) {
  keel_vip_value v{};
  int err = bpf_map_update_elem(bpf_map__fd(skel_->maps.vips), &vip, &v, BPF_ANY);
  return err ? failed("vips", err) : "";
}

std::string BalancerLoader::upsertService(const ServiceSpec& s) {
  int err = bpf_map_update_elem(bpf_map__fd(skel_->maps.services), &s.key, &s.value, BPF_ANY);
  return err ? failed("services", err) : "";
}

std::string BalancerLoader::upsertBackend(const BackendSpec& b) {
  int err = bpf_map_update_elem(bpf_map__fd(skel_->maps.backends), &b.id, &b.backend, BPF_ANY);
  return err ? failed("backends[" + std::to_string(b.id) + "]", err) : "";
}

std::string BalancerLoader::publishRing(const RingSpec& r) {
  // A new inner array per publish, swapped in with one outer-map update: the
  // same atomic step the production loader uses (maglev_lookup.h).
  // The template's flags (bpf/lib/maps.h): the kernel wants them equal.
  LIBBPF_OPTS(bpf_map_create_opts, mopts, .map_flags = BPF_F_INNER_MAP | BPF_F_MMAPABLE);
  uint32_t words = static_cast<uint32_t>(r.slots.size()) + 1;
  int fd = bpf_map_create(BPF_MAP_TYPE_ARRAY, "keel_ring", 4, 4, words, &mopts);
  if (fd < 0) return failed("create ring", fd);
  std::string out;
  uint32_t m = static_cast<uint32_t>(r.slots.size());
  uint32_t idx = 0;
  if (bpf_map_update_elem(fd, &idx, &m, BPF_ANY)) out = failed("ring word 0", errno);
  for (uint32_t s = 0; s < m && out.empty(); s++) {
    idx = s + 1;
    if (bpf_map_update_elem(fd, &idx, &r.slots[s], BPF_ANY)) out = failed("ring slot", errno);
  }
  if (out.empty() && bpf_map_update_elem(bpf_map__fd(skel_->maps.rings), &r.serviceId, &fd, BPF_ANY))
    out = failed("rings[" + std::to_string(r.serviceId) + "]", errno);
  close(fd);
  return out;
}

std::string BalancerLoader::apply(const FixtureState& st) {
  std::string e = setNode(st.node);
  for (const auto& v : st.vips)
    if (e.empty()) e = addVip(v);
  for (const auto& b : st.backends)
    if (e.empty()) e = upsertBackend(b);
  for (const auto& r : st.rings)
    if (e.empty()) e = publishRing(r);
  for (const auto& s : st.services)
    if (e.empty()) e = upsertService(s);
  return e;
}

RunResult BalancerLoader::run(const Bytes& in, uint32_t repeat, uint32_t ingressIfindex) {
  RunResult res;
  // Room for the largest encapsulation on top of the input.
  res.output.resize(in.size() + 128);
  xdp_md ctx{};
  ctx.data_end = static_cast<__u32>(in.size());
  ctx.ingress_ifindex = ingressIfindex;
  LIBBPF_OPTS(bpf_test_run_opts, topts, .data_in = in.data(),
              .data_out = res.output.data(), .data_size_in = static_cast<__u32>(in.size()),
              .data_size_out = static_cast<__u32>(res.output.size()),
              .repeat = static_cast<int>(repeat));
  if (ingressIfindex) {
    topts.ctx_in = &ctx;
    topts.ctx_size_in = sizeof ctx;
  }
  int err = bpf_prog_test_run_opts(progFd(), &topts);
  if (err) {
    res.action = err < 0 ? err : -errno;
    res.output.clear();
    return res;
  }
  res.action = static_cast<int>(topts.retval);
  res.output.resize(topts.data_size_out);
  res.durationNs = topts.duration;
  return res;
}

keel_counter BalancerLoader::sumPerCpu(int fd, uint32_t idx) {
  int ncpu = libbpf_num_possible_cpus();
  std::vector<keel_counter> per(static_cast<size_t>(ncpu > 0 ? ncpu : 1));
  keel_counter sum{};
  if (bpf_map_lookup_elem(fd, &idx, per.data())) return sum;
  for (const auto& c : per) {
    sum.packets += c.packets;
    sum.bytes += c.bytes;
  }
  return sum;
}

std::array<keel_counter, KEEL_R_MAX> BalancerLoader::reasons() {
  std::array<keel_counter, KEEL_R_MAX> out{};
  for (uint32_t r = 0; r < KEEL_R_MAX; r++) out[r] = sumPerCpu(bpf_map__fd(skel_->maps.stats_reasons), r);
  return out;
}

keel_counter BalancerLoader::service(uint32_t id) { return sumPerCpu(bpf_map__fd(skel_->maps.stats_services), id); }
keel_counter BalancerLoader::backend(uint32_t id) { return sumPerCpu(bpf_map__fd(skel_->maps.stats_backends), id); }

}  // namespace keel::test

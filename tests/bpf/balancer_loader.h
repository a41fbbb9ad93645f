// SPDX-License-Identifier: Apache-2.0
// Test/bench-only loader: opens the balancer skeleton, loads it with small
// maps, writes a FixtureState into the maps and runs single packets through
// BPF_PROG_TEST_RUN. Production code loads through src/dataplane/xdp.
#pragma once

#include <linux/bpf.h>

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "fixtures.h"
#include "keel/maps_abi.h"

struct keel_balancer;

namespace keel::test {

struct LoaderOptions {
  uint32_t ctSize = 65536;
  // Connection-table flavour: BPF_MAP_TYPE_LRU_HASH (optionally with
  // BPF_F_NO_COMMON_LRU) or BPF_MAP_TYPE_LRU_PERCPU_HASH.
  bpf_map_type ctType = BPF_MAP_TYPE_LRU_HASH;
  uint32_t ctFlags = 0;
  bool checkMtu = true;
  bool useConntrack = true;
};

struct RunResult {
  int action = -1;  // XDP_* or -errno of the syscall
  Bytes output;
  uint32_t durationNs = 0;  // as reported by the kernel (average over repeat)
};

class BalancerLoader {
 public:
  // nullptr and a message in *error if the object cannot be loaded.
  static std::unique_ptr<BalancerLoader> load(const LoaderOptions& opts, std::string* error);
  ~BalancerLoader();

  // Returns "" or what failed.
  std::string apply(const FixtureState& state);
  std::string setNode(const keel_node_config& node);
  std::string addVip(const keel_vip_key& vip);
  std::string upsertService(const ServiceSpec& s);
  std::string upsertBackend(const BackendSpec& b);
  std::string publishRing(const RingSpec& r);

  // One packet through the program. ingressIfindex 0: loopback.
  RunResult run(const Bytes& in, uint32_t repeat = 1, uint32_t ingressIfindex = 0);

  std::array<keel_counter, KEEL_R_MAX> reasons();
  keel_counter service(uint32_t id);
  keel_counter backend(uint32_t id);

  int progFd() const;
  int conntrackFd() const;
  keel_balancer* skel() { return skel_; }

 private:
  explicit BalancerLoader(keel_balancer* skel) : skel_(skel) {}
  keel_counter sumPerCpu(int fd, uint32_t idx);

  keel_balancer* skel_;
};

}  // namespace keel::test

// SPDX-License-Identifier: Apache-2.0
// The XDP data plane: the one C++ owner of the balancer BPF object
// (bpf/balancer.bpf.c, skeleton keel_balancer). It sizes the maps from
// DataplaneLimits, loads, attaches to one interface and writes the maps the
// registry asks for. Maps are pinned under <pinDir> so operators (bpftool)
// and a future restarted keeld can find them: adoption will reuse the pinned
// maps before load instead of creating fresh ones (create() is the one place
// that changes).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "dataplane/dataplane.h"

struct keel_balancer;

namespace keel {

enum class XdpAttachMode { kNative, kGeneric };

struct XdpOptions {
  std::string interface;
  XdpAttachMode mode = XdpAttachMode::kNative;
  DataplaneLimits limits;
  // Where the maps are pinned; empty: do not pin. keeld uses
  // defaultPinDir(interface) so two balancers on one host never share pins.
  std::string pinDir;
  static std::string defaultPinDir(const std::string& interface) {
    return "/sys/fs/bpf/keel/" + interface;
  }
};

class XdpDataplane final : public Dataplane {
 public:
  // Opens, sizes, loads, attaches (failing if the interface already has an
  // XDP program: never replace someone else's) and pins. On error nothing
  // stays attached or pinned.
  static Status create(const XdpOptions& options, std::unique_ptr<XdpDataplane>* out);
  ~XdpDataplane() override;

  // Detaches our program (only if it is still ours) and, if asked, removes
  // the pins. Idempotent. The destructor detaches but keeps pins.
  Status shutdown(bool removePins);

  std::string kind() const override { return "xdp"; }
  DataplaneLimits limits() const override { return options_.limits; }

  Status setNode(const keel_node_config& node) override;
  Status addVip(const keel_vip_key& vip) override;
  Status removeVip(const keel_vip_key& vip) override;
  Status upsertBackend(BackendId id, const keel_backend& backend) override;
  Status upsertService(const keel_service_key& key, const keel_service_value& value) override;
  Status removeService(const keel_service_key& key) override;
  Status publishRing(ServiceId id, const std::vector<uint32_t>& slots) override;
  DataplaneStats readStats() override;

  int ifindex() const { return ifindex_; }
  uint32_t programId() const { return programId_; }
  const std::string& pinDir() const { return options_.pinDir; }

 private:
  explicit XdpDataplane(const XdpOptions& options);
  Status pinMaps();
  void unpinMaps();
  uint32_t attachFlags() const;
  std::vector<keel_counter> readPercpu(int fd, uint32_t entries);

  XdpOptions options_;
  keel_balancer* skel_ = nullptr;
  int ifindex_ = 0;
  uint32_t programId_ = 0;
  bool attached_ = false;
  bool pinned_ = false;
  std::vector<uint32_t> ringKeys_;  // 0..M, reused for batch ring fills
};

}  // namespace keel

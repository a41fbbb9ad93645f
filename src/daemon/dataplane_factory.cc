// SPDX-License-Identifier: Apache-2.0
#include "daemon/dataplane_factory.h"

#include <utility>

#include "daemon/neighbour.h"
#include "dataplane/xdp/xdp_dataplane.h"
#ifdef KEEL_HAVE_DPDK
#include "dataplane/dpdk/dpdk_dataplane.h"
#endif

namespace keel {
namespace {

class XdpDaemonDataplane final : public DaemonDataplane {
 public:
  XdpDaemonDataplane(std::unique_ptr<XdpDataplane> dp, std::string interface, XdpMode mode)
      : dp_(std::move(dp)), interface_(std::move(interface)), mode_(mode) {}

  Dataplane& plane() override { return *dp_; }
  const ProgrammedState* adopted() const override {
    return dp_->adopted() ? &*dp_->adopted() : nullptr;
  }
  std::optional<MacAddress> localMac() const override { return interfaceMac(interface_); }
  bool canDetach() const override { return true; }
  Status stop(bool leave) override {
    if (leave) {
      // Netlink XDP attachments outlive the process and the pins keep the
      // maps: traffic keeps flowing with the last state.
      dp_->leaveInPlace();
      return Status::ok();
    }
    return dp_->shutdown(true);
  }
  void describe(LogRecord& r) const override {
    r.add("interface", interface_)
        .add("mode", toString(mode_))
        .add("prog_id", dp_->programId())
        .add("program", !dp_->adopted() ? "attached" : dp_->keptProgram() ? "kept" : "replaced")
        .add("pins", dp_->pinDir());
  }
  std::string where() const override { return interface_; }

 private:
  std::unique_ptr<XdpDataplane> dp_;
  std::string interface_;
  XdpMode mode_;
};

std::unique_ptr<DaemonDataplane> makeXdp(const Config& config, std::string* error) {
  XdpOptions xo;
  xo.interface = config.dataplane.interface;
  xo.mode = config.dataplane.xdpMode == XdpMode::kNative ? XdpAttachMode::kNative
                                                         : XdpAttachMode::kGeneric;
  xo.limits = config.limits;
  xo.pinDir = XdpOptions::defaultPinDir(xo.interface);
  std::unique_ptr<XdpDataplane> dp;
  if (Status s = XdpDataplane::create(xo, &dp); !s) {
    *error = s.message();
    return nullptr;
  }
  return std::make_unique<XdpDaemonDataplane>(std::move(dp), xo.interface,
                                              config.dataplane.xdpMode);
}

#ifdef KEEL_HAVE_DPDK
class DpdkDaemonDataplane final : public DaemonDataplane {
 public:
  DpdkDaemonDataplane(std::unique_ptr<DpdkDataplane> dp, DpdkConfig config)
      : dp_(std::move(dp)), config_(std::move(config)) {}

  Dataplane& plane() override { return *dp_; }
  const ProgrammedState* adopted() const override { return nullptr; }
  std::optional<MacAddress> localMac() const override {
    MacAddress m(dp_->portMac());
    if (m.isZero()) return std::nullopt;
    return m;
  }
  bool canDetach() const override { return false; }
  Status stop(bool) override {
    dp_.reset();  // joins the workers, closes the port and the exception tap
    // keeld has one data plane and stops it once, at exit: EAL's memory
    // goes with it (docs/dpdk.md, Hugepages).
    releaseDpdkEnvironment();
    return Status::ok();
  }
  void describe(LogRecord& r) const override {
    std::string workers;
    for (unsigned w : config_.workers) workers += (workers.empty() ? "" : ",") + std::to_string(w);
    r.add("port", config_.port)
        .add("port_id", dp_ ? dp_->portId() : 0)
        .add("workers", workers)
        .add("exception_interface", config_.exceptionInterface);
  }
  std::string where() const override { return config_.port; }

 private:
  std::unique_ptr<DpdkDataplane> dp_;
  DpdkConfig config_;
};

std::unique_ptr<DaemonDataplane> makeDpdk(const Config& config, std::string* error) {
  const DpdkConfig& c = config.dataplane.dpdk;
  DpdkOptions o;
  o.ealArgs = c.ealArgs;
  o.port = c.port;
  o.workerLcores = c.workers;
  o.rxDescriptors = static_cast<uint16_t>(c.rxDescriptors);
  o.txDescriptors = static_cast<uint16_t>(c.txDescriptors);
  o.mbufsPerWorker = c.mbufsPerWorker;
  o.exceptionInterface = c.exceptionInterface;
  o.idleSleepUs = c.idleSleepUs;
  o.limits = config.limits;
  // Workers start at once: the tables are empty (no VIPs) until the
  // registry fills them, so every packet meanwhile goes the exception way.
  o.autoStart = true;
  std::string err;
  auto dp = createDpdkDataplane(o, &err);
  if (!dp) {
    *error = "dataplane." + err;
    releaseDpdkEnvironment();  // keeld exits: EAL may have started before the failure
    return nullptr;
  }
  return std::make_unique<DpdkDaemonDataplane>(std::move(dp), c);
}
#endif

}  // namespace

bool dataplaneBuiltIn(DataplaneKind kind) {
#ifdef KEEL_HAVE_DPDK
  (void)kind;
  return true;
#else
  return kind != DataplaneKind::kDpdk;
#endif
}

std::unique_ptr<DaemonDataplane> makeDaemonDataplane(const Config& config, std::string* error) {
  switch (config.dataplane.kind) {
    case DataplaneKind::kXdp:
      return makeXdp(config, error);
    case DataplaneKind::kDpdk:
#ifdef KEEL_HAVE_DPDK
      return makeDpdk(config, error);
#else
      *error = "dataplane.kind: dpdk is not built into this keeld (DPDK was not found at build time)";
      return nullptr;
#endif
  }
  *error = "dataplane.kind: unknown";
  return nullptr;
}

}  // namespace keel

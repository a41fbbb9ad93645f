// SPDX-License-Identifier: Apache-2.0
// The XDP data plane: the one C++ owner of the balancer BPF object
// (bpf/balancer.bpf.c, skeleton keel_balancer). It sizes the maps from
// DataplaneLimits, loads, attaches to one interface and writes the maps the
// registry asks for. The maps and the attached program are pinned under
// <pinDir> (bpftool can read them, and a restarted keeld adopts them).
//
// Restart (docs/architecture.md "Restart and adoption"): the program is
// attached through netlink, so the attachment belongs to the interface and
// outlives keeld (also kill -9). When <pinDir> holds pins, create() adopts:
// it loads its program against the pinned maps (the conntrack table and the
// backend generations stay), keeps the attached program if it is the same
// (same tag over the same maps, same load-time options) and otherwise swaps
// in the new one atomically (XDP_FLAGS_REPLACE). adopted() then returns what
// the maps hold, for Registry::adopt. Everything is opened through the pins
// (prog, prog_rodata, the maps), never by id: no CAP_SYS_ADMIN needed.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/fd.h"
#include "dataplane/dataplane.h"
#include "dataplane/xdp/map_elem_counter.h"

struct keel_balancer;
struct bpf_map;

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
  // XDP program that is not the pinned one: never replace someone else's)
  // and pins, or adopts pinned state (above). Adoption refuses, naming the
  // limits: key, when a pinned map's size differs from the limits, and when
  // the attached program runs in another mode than options.mode. On error a
  // fresh start leaves nothing attached or pinned, and an adoption leaves
  // what it found. With a pinDir, first takes an exclusive lock on it (flock
  // on the directory, held as long as this object lives) and refuses, naming
  // the holder's pid, while another process holds it: a second keeld on the
  // same interface must not adopt and reprogram the running one's maps.
  static Status create(const XdpOptions& options, std::unique_ptr<XdpDataplane>* out);
  // What create() would refuse in the state pinned under options.pinDir
  // (a limits: size or the xdp_mode differing; create()'s words, its hint
  // to start over after the last), without loading or changing anything:
  // keeld --check-config. Empty when nothing is pinned there or the pins
  // cannot be opened.
  static std::vector<std::string> adoptionConflicts(const XdpOptions& options);
  // What create() would refuse at the attach on the interface as it is
  // now, in its words, without changing anything (keeld --check-config):
  // an XDP program attached that is not keel's own (in the configured mode,
  // or in the other, where the kernel runs one only), and native mode on a
  // driver the kernel says has no native XDP (xdp_features.h). keel's own:
  // the program pinned under options.pinDir where create() would adopt,
  // which it keeps or replaces (the restart). Empty when nothing conflicts,
  // or what is there cannot be told (no answer from the kernel, pins this
  // user may not open, a kernel that reports no XDP features).
  static std::vector<std::string> attachConflicts(const XdpOptions& options);
  ~XdpDataplane() override;

  // Detaches our program (only if it is still the attached one) and, if
  // asked, removes the pins. Idempotent. The destructor detaches but keeps
  // pins, unless leaveInPlace() was called.
  Status shutdown(bool removePins);
  // The exit that keeps forwarding: program attached and everything pinned,
  // for the next keeld to adopt. The destructor then only closes fds.
  // Call maintain() first where the host may have taken the attachment or
  // the pins meanwhile (keeld's stop does).
  void leaveInPlace() { leaveInPlace_ = true; }

  // Set when create() adopted pinned maps: what they held at that moment.
  const std::optional<ProgrammedState>& adopted() const { return adopted_; }
  // Adopting kept the attached program (it was the same as ours).
  bool keptProgram() const { return keptProgram_; }
  // Adopting swapped our program in for the pinned one (neither kept, nor
  // attached where no program was).
  bool replacedProgram() const { return replacedProgram_; }

  std::string kind() const override { return "xdp"; }
  DataplaneLimits limits() const override { return options_.limits; }

  Status setNode(const keel_node_config& node) override;
  Status addVip(const keel_vip_key& vip) override;
  Status removeVip(const keel_vip_key& vip) override;
  Status upsertBackend(BackendId id, const keel_backend& backend) override;
  Status upsertService(const keel_service_key& key, const keel_service_value& value) override;
  Status removeService(const keel_service_key& key) override;
  Status publishRing(ServiceId id, std::vector<uint32_t> slots) override;
  // One BPF_MAP_UPDATE_BATCH of the rings array-of-maps: the kernel waits
  // one grace period for it, where each publishRing() waits one.
  Status publishRings(const RingList& rings, size_t* published) override;
  std::optional<uint64_t> connTableEntries() override;
  uint64_t connTableCapacity() const override;  // the conntrack map's max_entries
  std::optional<ConnEntry> findConn(const keel_flow_key& key) override;
  Status scanConns(const ConnVisitor& visit) override;
  // The attached interface's MTU now (SIOCGIFMTU, by ifindex, so a rename
  // does not lose it); nullopt if the interface is gone.
  std::optional<uint32_t> portMtu() const override;
  // Dataplane::maintain. Attachment: the interface named
  // options.interface now (if_nametoindex) must run our program in our
  // mode. If it does not (recreated: another ifindex; or detached), our
  // program is attached to it again, only where no XDP program is
  // (XDP_FLAGS_UPDATE_IF_NOEXIST: one someone else attached stays), and
  // the ifindex is updated. Pins: each one this object made (maps, prog,
  // prog_rodata, map_layouts), and the directory with its lock, is made
  // again from the fds held. Logged: dataplane_detached (error) when
  // found, dataplane_reattached (warning) once done,
  // dataplane_interface_missing, dataplane_reattach_failed and
  // dataplane_pins_restore_failed once per distinct error (retried at
  // every call), dataplane_pins_restored (warning). Nothing after
  // shutdown().
  void maintain() override;
  // As things are now, not as create() left them (the stop and adopt log
  // lines): our program attached to the interface of that name in our
  // mode, and the pins of ours that are missing (empty: none, or no pins).
  bool attachedNow() const;
  std::vector<std::string> missingPins() const;
  // How many times maintain() attached the program again, and pinned again.
  uint64_t reattachCount() const { return reattached_; }
  uint64_t repinCount() const { return repinned_; }
  std::optional<DataplaneUpkeep> upkeep() const override {
    return DataplaneUpkeep{attachedNow(), reattached_, repinned_, options_.interface,
                           options_.mode == XdpAttachMode::kNative ? "native" : "generic", options_.pinDir};
  }

  int ifindex() const { return ifindex_; }
  uint32_t programId() const { return programId_; }
  const std::string& pinDir() const { return options_.pinDir; }

 public:
  // What a starting keeld does with a pinned map (carryOf in the .cc).
  enum class Carry { kReuse, kEmpty, kNodeConfig, kCounters };

 private:
  Status zeroCounters(CounterKind kind, uint32_t id) override;
  DataplaneStats readCounters(uint32_t services, uint32_t backends) override;
  explicit XdpDataplane(const XdpOptions& options);
  Status adoptPinnedMaps(bool* adopting);
  Status attachOrReplace(bool adopting);
  Status pinMaps();
  enum class CarryPhase { kBeforeSwap, kAfterSwap };
  Status carryOver(CarryPhase phase);
  Status replacePin(bpf_map* map);
  Status replacePins();
  Status pinProgram();
  Status readOurLayouts();
  Status pinLayouts();
  Status writeLayouts(const std::map<std::string, std::string>& record);
  void restoreLayouts(const std::map<std::string, std::string>& old, bool hadRecord);
  void unpinMaps();
  Status readProgrammed(ProgrammedState* out);
  uint32_t attachFlags() const;
  void maintainAttachment();
  void maintainPins();
  // Each pin this object keeps (name under pinDir -> fd; -1: none to pin).
  std::vector<std::pair<std::string, int>> ourPins() const;
  std::vector<keel_counter> readPercpu(int fd, uint32_t entries);

  XdpOptions options_;
  keel_balancer* skel_ = nullptr;
  std::unique_ptr<MapElemCounter> ctCounter_;  // null: kernel cannot count (pre-6.6)
  int ifindex_ = 0;
  uint32_t programId_ = 0;
  int attachedFd_ = -1;  // the attached program: ours, or the adopted one we kept
  bool attached_ = false;
  bool pinned_ = false;
  Fd pinLock_;  // the flock on options_.pinDir (create)
  bool leaveInPlace_ = false;
  // create() made or found the pin directory empty and has not finished: a
  // failed fresh start removes it again (while it still holds the lock).
  bool freshPinDir_ = false;
  bool keptProgram_ = false;
  bool replacedProgram_ = false;
  // The attached program's .rodata, pinned as prog_rodata: ours, or the
  // kept program's (opened through its pin at adoption; -1: none was
  // pinned), so maintain() can pin it again.
  Fd attachedRodata_;
  // maintain()'s state: what it said last, so each fault is logged once
  // (and its end), and how often it repaired.
  bool detachedSaid_ = false;
  std::string attachErrorSaid_;
  std::string pinErrorSaid_;
  uint64_t reattached_ = 0;
  uint64_t repinned_ = 0;
  std::optional<ProgrammedState> adopted_;
  // Adoption: the pinned maps this build replaces instead of reusing
  // (carryOf in the .cc), with the old map where something of it is
  // carried over (carryOver) and its shape as pinned.
  struct Replaced {
    bpf_map* map;
    Carry carry;
    Fd old;  // -1: nothing carried over
    uint32_t pinnedValueSize;  // as pinned (0: not pinned)
    uint32_t pinnedEntries;
    std::string layoutDifference;  // why a start-empty map's layout is another (empty: its shape is)
  };
  std::vector<Replaced> replaced_;
  // The record pinned as map_layouts when this object adopted (map name ->
  // "id N" and the xdp/map_layout.h text), then the one it pinned;
  // layoutsPinned_: there is one.
  std::map<std::string, std::string> pinnedLayouts_;
  bool layoutsPinned_ = false;
  std::map<std::string, std::string> ourLayouts_;  // this build's (readOurLayouts)
  std::vector<uint32_t> ringKeys_;  // 0..M, reused for batch ring fills
  // Whether the rings outer map takes BPF_F_MMAPABLE inner arrays (this
  // build's template, bpf/lib/maps.h). One pinned by a keeld from before
  // takes plain ones only: the first swap refused turns this off.
  bool ringsMmapable_ = true;
  // A new inner ring array holding `values`, as an fd (or -errno).
  int makeRing(const std::vector<uint32_t>& values, bool mmapable);
  Status checkRing(ServiceId id, const std::vector<uint32_t>& slots) const;
  static std::vector<uint32_t> ringWords(const std::vector<uint32_t>& slots);
};

}  // namespace keel

// SPDX-License-Identifier: Apache-2.0
#include "dataplane/xdp/attached_program.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_link.h>
#include <net/if.h>

#include <cerrno>

#include "common/fd.h"

namespace keel {

std::optional<AttachedXdp> attachedXdp(int ifindex) {
  LIBBPF_OPTS(bpf_xdp_query_opts, query);
  if (int rc = bpf_xdp_query(ifindex, 0, &query); rc != 0) {
    errno = -rc;
    return std::nullopt;
  }
  return AttachedXdp{query.drv_prog_id, query.skb_prog_id};
}

std::string xdpOffCommand(const std::string& ifname, bool generic) {
  return "ip link set dev " + ifname + (generic ? " xdpgeneric off" : " xdp off");
}

std::optional<std::string> xdpProgramName(uint32_t id) {
  Fd fd(bpf_prog_get_fd_by_id(id));
  if (fd.get() < 0) return std::nullopt;
  bpf_prog_info info{};
  uint32_t len = sizeof info;
  if (bpf_obj_get_info_by_fd(fd.get(), &info, &len) != 0) return std::nullopt;
  return std::string(info.name);
}

std::string afXdpProgramInTheWay(const std::string& ifname) {
  const int ifindex = static_cast<int>(if_nametoindex(ifname.c_str()));
  const std::optional<AttachedXdp> attached = ifindex != 0 ? attachedXdp(ifindex) : std::nullopt;
  if (!attached) return "";
  const bool generic = attached->native == 0;
  const uint32_t id = generic ? attached->generic : attached->native;
  const std::optional<std::string> name = id != 0 ? xdpProgramName(id) : std::nullopt;
  if (!name || *name == "xsk_def_prog" || *name == "xdp_dispatcher") return "";
  return "an XDP program (id " + std::to_string(id) + ", " + *name + ") is attached to " + ifname + " in " +
         (generic ? "generic" : "native") +
         " mode, and net_af_xdp attaches its own only where none is or a libxdp dispatcher runs: detach it "
         "first if it is stale (`" + xdpOffCommand(ifname, generic) + "`)";
}

}  // namespace keel

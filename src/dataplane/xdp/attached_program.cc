// SPDX-License-Identifier: Apache-2.0
#include "dataplane/xdp/attached_program.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_link.h>
#include <net/if.h>

#include <cerrno>

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

}  // namespace keel

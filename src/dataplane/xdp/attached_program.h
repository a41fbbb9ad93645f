// SPDX-License-Identifier: Apache-2.0
// The XDP programs an interface already runs, as netlink tells anyone (no
// capability needed), for the refusals of a start that would fail on one and
// of keeld --check-config, which says so first in the same words: the XDP
// plane's (xdp_dataplane.cc: someone else's program) and a net_af_xdp port's
// (dataplane_factory.cc).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace keel {

// The programs attached to an interface: in native (driver) and generic
// (skb) mode, 0 for none. The kernel runs at most one of the two.
struct AttachedXdp {
  uint32_t native = 0;
  uint32_t generic = 0;
};

// Those of ifindex; nullopt when the kernel cannot be asked (errno says why).
std::optional<AttachedXdp> attachedXdp(int ifindex);

// What detaches the program attached to ifname in that mode. Plain `xdp off`
// asks for the driver's mode wherever the driver has one (veth, every NIC
// with native XDP): there it leaves a generic program attached.
std::string xdpOffCommand(const std::string& ifname, bool generic);

// The name a program was loaded with; nullopt where this process may not
// open it by id (that takes CAP_SYS_ADMIN, which keeld.service does not
// grant) or it is gone.
std::optional<std::string> xdpProgramName(uint32_t id);

// What a net_af_xdp port's start fails on at ifname: an XDP program there
// that is not libxdp's. net_af_xdp loads its XDP program with libxdp, which
// attaches its AF_XDP program (xsk_def_prog) where no program is, reuses
// one found there (a DPDK keeld killed), and joins a libxdp dispatcher
// (xdp_dispatcher); any other program fails the port's rx queue setup
// ("Invalid argument", libxdp's own line saying "Existing program is not
// using a dispatcher"). "" when there is none, or what it is cannot be
// told: the kernel does not answer, or its name cannot be read here (no
// CAP_SYS_ADMIN). Else what it is and what to do.
std::string afXdpProgramInTheWay(const std::string& ifname);

}  // namespace keel

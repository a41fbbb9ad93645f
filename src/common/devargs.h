// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <string>
#include <string_view>

namespace keel {

// The kernel interface a DPDK vdev's devargs name ("net_af_packet0,
// iface=eth1,qpairs=2" -> "eth1"; net_af_xdp the same), or "" if none (a
// PCI address, net_pcap, net_ring, ...). Read by the config's host check
// (the interface must exist) and by the DPDK plane (the MTU it puts back).
inline std::string vdevInterface(std::string_view devargs) {
  if (devargs.rfind("net_", 0) != 0) return "";
  const size_t at = devargs.find(",iface=");
  if (at == std::string_view::npos) return "";
  const size_t from = at + 7;
  return std::string(devargs.substr(from, devargs.find(',', from) - from));
}

}  // namespace keel

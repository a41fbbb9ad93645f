// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cctype>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace keel {

// Whether a DPDK port's devargs name a vdev over an existing kernel
// interface: net_af_packet (also by DPDK's older name for it,
// eth_af_packet, which EAL still takes) and net_af_xdp. Such an interface spreads flows
// itself (af_packet's fanout, the NIC's RSS onto the queues af_xdp binds)
// and keeps the kernel's own receive filters, and what the port changes on
// it (MTU, promiscuous mode) outlives keeld unless put back. net_tap's
// iface= is an interface it creates, net_vhost's a socket path: not these.
// isAfPacketPort / isAfXdpPort: which of the two.
inline bool isAfPacketPort(std::string_view devargs) {
  return devargs.rfind("net_af_packet", 0) == 0 || devargs.rfind("eth_af_packet", 0) == 0;
}
inline bool isAfXdpPort(std::string_view devargs) { return devargs.rfind("net_af_xdp", 0) == 0; }
inline bool isKernelVdev(std::string_view devargs) { return isAfPacketPort(devargs) || isAfXdpPort(devargs); }

// Whether a DPDK port's devargs name a PCI device ("0000:03:00.0" or
// "03:00.0", devargs after a comma): a NIC bound to a DPDK driver, which the
// kernel no longer sees.
inline bool isPciPort(std::string_view devargs) {
  std::string_view name = devargs.substr(0, devargs.find(','));
  if (name.size() == 12 && name[4] == ':') name.remove_prefix(5);
  if (name.size() != 7 || name[2] != ':' || name[5] != '.') return false;
  for (size_t i : {0, 1, 3, 4, 6})
    if (!std::isxdigit(static_cast<unsigned char>(name[i]))) return false;
  return true;
}

// A PCI port's full address, lower case, its domain added when it gives
// none ("03:00.0,x=1" and "0000:03:00.0" -> "0000:03:00.0"), as sysfs and
// EAL name the device; "" for any other port.
inline std::string pciAddress(std::string_view devargs) {
  if (!isPciPort(devargs)) return "";
  std::string name(devargs.substr(0, devargs.find(',')));
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return name.size() == 7 ? "0000:" + name : name;
}

// The value of one key=value devarg after the device name
// ("net_af_packet0,iface=eth1,qpairs=2", "qpairs" -> "2"), or nullopt when
// the port does not give it.
inline std::optional<std::string> devargValue(std::string_view devargs, std::string_view key) {
  for (size_t at = devargs.find(','); at != std::string_view::npos;) {
    const size_t from = at + 1;
    const size_t end = devargs.find(',', from);
    const std::string_view arg = devargs.substr(from, end == std::string_view::npos ? end : end - from);
    if (arg.size() > key.size() && arg.substr(0, key.size()) == key && arg[key.size()] == '=')
      return std::string(arg.substr(key.size() + 1));
    at = end;
  }
  return std::nullopt;
}

// The devargs a DPDK port is probed with: the port's own when it gives any
// ("net_af_packet0,iface=eth1,qpairs=2"), else those of the `--vdev NAME,...`
// (or `--vdev=NAME,...`) in the EAL arguments that creates it, which keel's
// data plane then takes as it is ("net_af_packet0" with --vdev
// "net_af_packet0,iface=eth1,qpairs=2"); the port itself if neither.
// The values of one EAL option in the EAL arguments, each with the index of
// the argument that holds it: `-d PATH` / `-dPATH` for "-d", `--vdev X` /
// `--vdev=X` for "--vdev".
inline std::vector<std::pair<size_t, std::string>> ealOptionValues(const std::vector<std::string>& ealArgs,
                                                                    std::string_view option) {
  std::vector<std::pair<size_t, std::string>> out;
  const std::string joined = std::string(option) + (option.size() > 2 ? "=" : "");
  for (size_t i = 0; i < ealArgs.size(); ++i) {
    if (ealArgs[i] == option && i + 1 < ealArgs.size()) {
      out.emplace_back(i + 1, ealArgs[i + 1]);
      ++i;
    } else if (ealArgs[i].size() > joined.size() && ealArgs[i].rfind(joined, 0) == 0) {
      out.emplace_back(i, ealArgs[i].substr(joined.size()));
    }
  }
  return out;
}

inline std::string portDevargs(const std::string& port, const std::vector<std::string>& ealArgs) {
  if (port.find(',') != std::string::npos) return port;
  for (const auto& [i, v] : ealOptionValues(ealArgs, "--vdev"))
    if (v.substr(0, v.find(',')) == port) return v;
  return port;
}

// What EAL would make of a DPDK config's names before it starts
// (keeld's config check; the DPDK plane's checkDpdkDeviceNames()): for each
// plugin path given to EAL (`-d`), "" when it loads or why not (dlerror);
// for each device's devargs, whether a bus takes its name (a vdev driver's
// name or alias and a number, a PCI address), as rte_devargs_parse() decides
// at EAL's start and at a port's probe.
struct DeviceNameCheck {
  std::vector<std::string> pluginErrors;
  std::vector<bool> known;
};

// A device's name in its devargs: the part before the first ','
// ("net_af_packet0,iface=eth1" -> "net_af_packet0").
inline std::string_view deviceName(std::string_view devargs) { return devargs.substr(0, devargs.find(',')); }

// Why EAL refuses a device name no bus takes, after the name: the same
// words from the config check and from a probe that fails on it.
inline std::string unknownDeviceName(std::string_view name) {
  return "no DPDK driver takes the name \"" + std::string(name) +
         "\" (a vdev's name is its driver's and a number, such as net_af_packet0 or net_af_xdp0, and its "
         "driver must be installed; a PCI device is named by its address)";
}

// The kernel interface such a vdev's devargs name ("net_af_packet0,
// iface=eth1,qpairs=2" -> "eth1"), or "" for any other port. Read by the
// config's host check (the interface must exist), the DPDK plane (the MTU
// and mode it puts back) and keeld (an XDP plane left on it).
inline std::string vdevInterface(std::string_view devargs) {
  if (!isKernelVdev(devargs)) return "";
  return devargValue(devargs, "iface").value_or("");
}

// The key of a DPDK keeld's state files beside its control socket
// (runtime-KEY.json, conntrack-KEY.bin), as an XDP keeld's is its
// interface: "dpdk-" and the port's kernel interface for a vdev over one
// ("net_af_packet0,iface=eth1" -> "dpdk-eth1"), else its device name, a
// PCI address in full ("03:00.0" and "0000:03:00.0" -> "dpdk-0000:03:00.0",
// "net_ring0" -> "dpdk-net_ring0"). Two keelds whose sockets share a
// directory drive different ports, so they keep their own files; the
// devargs after the name (qpairs=, ...) may change without losing them.
inline std::string dpdkStateKey(std::string_view devargs) {
  std::string name = vdevInterface(devargs);
  if (name.empty()) name = pciAddress(devargs);  // bus:device.function without its domain, as EAL takes it
  if (name.empty()) {
    name = std::string(devargs.substr(0, devargs.find(',')));
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  for (char& c : name)
    if (c == '/' || c == '\0') c = '_';
  return "dpdk-" + name;
}

}  // namespace keel

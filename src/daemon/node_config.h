// SPDX-License-Identifier: Apache-2.0
// The data plane's node config (keel_node_config) from keel.yaml's node:.
// DaemonBackend writes it (start, reloads, a new MAC of the plane: its
// upkeep); keeld builds it once before it starts anything, to refuse a file
// whose local MAC it cannot know.
#pragma once

#include <optional>
#include <string>

#include "common/address.h"
#include "control/config.h"
#include "keel/maps_abi.h"

namespace keel {

// node: from the config; the local MAC is the data plane's (`planeMac`: the
// interface's for XDP, the port's for DPDK) unless node.local_mac is set.
// nullopt and *error ("FILE: node.local_mac: ...") when there is neither.
std::optional<keel_node_config> buildNodeConfig(const Config& c, const std::optional<MacAddress>& planeMac,
                                                std::string* error);

bool sameNode(const keel_node_config& a, const keel_node_config& b);

}  // namespace keel

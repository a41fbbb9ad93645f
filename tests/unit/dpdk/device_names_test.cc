// SPDX-License-Identifier: Apache-2.0
// checkDpdkDeviceNames(): what EAL would make of a config's device names
// and driver paths, before EAL runs in the process (keeld --check-config
// and the start's config check), with DPDK's installed drivers.
#include <gtest/gtest.h>
#include <rte_config.h>

#include <string>
#include <vector>

#include "dataplane/dpdk/dpdk_dataplane.h"

namespace keel {
namespace {

TEST(DpdkDeviceNames, NotCheckedWithoutLoadingTheDriversUnlessAllowed) {
  EXPECT_FALSE(checkDpdkDeviceNames({}, {"net_null0"}, /*mayLoad=*/false).has_value());
}

TEST(DpdkDeviceNames, NamesAreTheInstalledDriversAndTheirAliases) {
  const std::optional<DeviceNameCheck> r = checkDpdkDeviceNames(
      {}, {"net_null0", "net_pcap0,rx_pcap=in.pcap", "eth_af_packet0,iface=lo", "net_af_pakcet0,iface=lo",
           "net_nosuch0", "0000:03:00.0"},
      /*mayLoad=*/true);
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->pluginErrors.empty());
  EXPECT_EQ(r->known, (std::vector<bool>{true, true, true, false, false, true}));
}

TEST(DpdkDeviceNames, ADriverPathLoadsAsEalLoadsIt) {
  // DPDK's own directory again (already loaded: the same files).
  std::optional<DeviceNameCheck> r = checkDpdkDeviceNames({RTE_EAL_PMD_PATH}, {"net_null0", "net_nosuch0"}, true);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->pluginErrors, std::vector<std::string>{""});
  EXPECT_EQ(r->known, (std::vector<bool>{true, false}));
  // One that does not load: its error, and no name judged.
  r = checkDpdkDeviceNames({"/nonexistent/librte_net_x.so"}, {"net_nosuch0"}, true);
  ASSERT_TRUE(r.has_value());
  ASSERT_EQ(r->pluginErrors.size(), 1u);
  EXPECT_NE(r->pluginErrors[0].find("/nonexistent/librte_net_x.so: cannot open shared object file"), std::string::npos)
      << r->pluginErrors[0];
  EXPECT_EQ(r->known, std::vector<bool>{true});
}

}  // namespace
}  // namespace keel

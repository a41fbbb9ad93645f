// SPDX-License-Identifier: Apache-2.0
// checkDpdkDeviceNames(): what EAL would make of a config's device names
// and driver paths, before EAL runs in the process (keeld --check-config
// and the start's config check), with DPDK's installed drivers; and
// ealPrefixHolder(), whose process holds a --file-prefix.
#include <gtest/gtest.h>
#include <rte_config.h>
#include <rte_mbuf.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
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

// The floor of EAL memory the plane takes: its mbufs (header and data
// room) and each worker's tables, as init() sizes them.
TEST(DpdkMemoryFloor, MbufsAndTablesAsInitSizesThem) {
  const EalMemoryNeed one = dpdkMemoryFloor(1, 8192, 0, 1000000);
  EXPECT_EQ(one.mbufBytes, uint64_t{8192} * (sizeof(rte_mbuf) + RTE_MBUF_DEFAULT_BUF_SIZE));
  // 1,000,000 flows: 262,144 buckets of 4 ways, 32 + 64 bytes a way.
  EXPECT_EQ(one.connBytes, uint64_t{262144} * 4 * 96);
  const EalMemoryNeed two = dpdkMemoryFloor(2, 8192, 9000, 1000000);
  EXPECT_EQ(two.mbufBytes, uint64_t{16384} * (sizeof(rte_mbuf) + RTE_PKTMBUF_HEADROOM + 9216))
      << "9,000 + 22 bytes of Ethernet and two tags, in whole KiB";
  EXPECT_EQ(two.connBytes, uint64_t{2} * 131072 * 4 * 96) << "500,000 a worker";
}

// Another primary's --file-prefix: the pid holding EAL's lock on its
// runtime config (a write lock from a child here, as EAL takes it).
TEST(EalPrefixHolder, NamesTheProcessHoldingThePrefix) {
  if (::getuid() != 0) GTEST_SKIP() << "EAL's runtime directory of root, /var/run/dpdk";
  const std::string prefix = "keel-prefix-test-" + std::to_string(::getpid());
  const std::string dir = "/var/run/dpdk/" + prefix;
  ASSERT_EQ(::system(("mkdir -p " + dir + " && : > " + dir + "/config").c_str()), 0);
  std::string named;
  EXPECT_EQ(ealPrefixHolder({"--file-prefix", prefix}, &named), 0) << "no holder";
  EXPECT_EQ(named, prefix);
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t child = ::fork();
  if (child == 0) {
    const int fd = ::open((dir + "/config").c_str(), O_RDWR);
    struct flock fl{};
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    fl.l_len = 64;
    if (fd < 0 || ::fcntl(fd, F_SETLK, &fl) != 0) ::_exit(1);
    (void)!::write(ready[1], "x", 1);
    ::sleep(10);  // killed by the parent long before
    ::_exit(0);
  }
  char c;
  ASSERT_EQ(::read(ready[0], &c, 1), 1);
  EXPECT_EQ(ealPrefixHolder({"--no-huge", "--file-prefix", prefix}), child);
  EXPECT_EQ(ealPrefixHolder({"--file-prefix", prefix, "--in-memory"}), 0) << "no shared config";
  EXPECT_EQ(ealPrefixHolder({"--file-prefix", prefix, "--no-shconf"}), 0) << "no shared config";
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  ::close(ready[0]);
  ::close(ready[1]);
  EXPECT_EQ(ealPrefixHolder({"--file-prefix", prefix}), 0) << "its holder gone";
  ASSERT_EQ(::system(("rm -rf " + dir).c_str()), 0);
}

}  // namespace
}  // namespace keel

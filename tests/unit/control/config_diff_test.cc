// SPDX-License-Identifier: Apache-2.0
// config_diff: the keys a reload changed, as its log records name them.
// The registry's records are asserted in registry_test.cc.
#include "control/config_diff.h"

#include <gtest/gtest.h>

#include <cstring>

namespace keel {
namespace {

TEST(ConfigDiff, AddChangesListsTheKeysThenEachFromAndTo) {
  LogRecord rec("service_updated");
  rec.add("service", "web");
  addChanges(rec, {{"scheduler", "maglev", "maglev-src"}, {"ring_size", "65537", "655373"}});
  EXPECT_EQ(rec.str(),
            "event=service_updated service=web changed=scheduler,ring_size scheduler_from=maglev "
            "scheduler_to=maglev-src ring_size_from=65537 ring_size_to=655373");
}

TEST(ConfigDiff, HealthChecksCompareTheKeysTheNewTypeUses) {
  HealthCheckSpec tcp;
  EXPECT_TRUE(healthCheckChanges(tcp, tcp).empty());
  HealthCheckSpec src = tcp;
  src.source = *IpAddress::parse("10.0.0.1");
  EXPECT_EQ(healthCheckChanges(tcp, src), (KeyChanges{{"source", "", "10.0.0.1"}}));
  // http -> tcp: the path and status range go with the type, unlisted.
  HealthCheckSpec http = tcp;
  http.type = HealthCheckSpec::Type::Http;
  http.path = "/healthz";
  http.statusMin = http.statusMax = 204;
  EXPECT_EQ(healthCheckChanges(http, tcp), (KeyChanges{{"type", "http", "tcp"}}));
  EXPECT_EQ(healthCheckChanges(tcp, http),
            (KeyChanges{{"type", "tcp", "http"}, {"path", "", "/healthz"}, {"expect", "", "204"}}));
  // none uses nothing but its type.
  HealthCheckSpec none;
  none.type = HealthCheckSpec::Type::None;
  none.interval = std::chrono::seconds(5);
  EXPECT_EQ(healthCheckChanges(tcp, none), (KeyChanges{{"type", "tcp", "none"}}));
  HealthCheckSpec none2 = none;
  none2.rise = 9;
  EXPECT_TRUE(healthCheckChanges(none, none2).empty()) << "a none check has no rise to change";
}

keel_node_config node() {
  keel_node_config n{};
  n.udp_idle_timeout_s = 30;
  n.tcp_idle_timeout_s = 900;
  n.icmp_too_big_rate = 1000;
  n.icmp_too_big_client_rate = 100;
  const uint8_t mac[6] = {2, 0, 0, 0, 0, 1};
  std::memcpy(n.local_mac, mac, 6);
  return n;
}

// keeld's node_updated: the keys of node: that the data plane's node
// config changed, as keel.yaml writes them.
TEST(ConfigDiff, NodeChangesNameTheNodeKeys) {
  const keel_node_config a = node();
  EXPECT_TRUE(nodeChanges(a, a).empty());
  keel_node_config b = a;
  b.icmp_too_big_rate = 0;
  b.conntrack_insert_rate = 50000;
  b.udp_idle_timeout_s = 3600;
  const uint8_t v4[4] = {192, 0, 2, 1};
  std::memcpy(&b.tunnel_src_v4, v4, 4);
  b.flags |= KEEL_NODE_F_HASH_SRC_V4;
  const uint8_t prefix[4] = {172, 16, 0, 0}, mask[4] = {255, 255, 0, 0};
  std::memcpy(&b.hash_src_v4_prefix, prefix, 4);
  std::memcpy(&b.hash_src_v4_mask, mask, 4);
  const uint8_t v6[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  std::memcpy(b.tunnel_src_v6, v6, 16);
  b.local_mac[5] = 2;
  EXPECT_EQ(nodeChanges(a, b), (KeyChanges{{"tunnel_source_v4", "", "192.0.2.1"},
                                           {"tunnel_source_v6", "", "2001:db8::1"},
                                           {"local_mac", "02:00:00:00:00:01", "02:00:00:00:00:02"},
                                           {"hash_source_v4", "", "172.16.0.0/16"},
                                           {"udp_idle_timeout", "30s", "1h"},
                                           {"icmp_too_big_rate", "1000", "0"},
                                           {"conntrack_insert_rate", "0", "50000"}}));
}

}  // namespace
}  // namespace keel

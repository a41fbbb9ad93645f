// SPDX-License-Identifier: Apache-2.0
// config_diff: the keys a reload changed, as its log records name them,
// and each change as its record and config.reload's reply item say it.
// The registry's records are asserted in registry_test.cc.
#include "control/config_diff.h"

#include <gtest/gtest.h>

#include <cstring>

#include "log_capture.h"

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

// Every kind of change: its reply item names the record it was logged as
// (`change` is the record's event), with the same service, real and values.
TEST(ConfigDiff, EachChangeIsLoggedAndListedAlike) {
  const IpAddress real = *IpAddress::parse("10.0.1.12");
  const MacAddress m1 = *MacAddress::parse("02:00:00:00:00:11"), m2 = *MacAddress::parse("02:00:00:00:00:12");
  const KeyChanges interval{{"interval", "5s", "2s"}};
  struct Case {
    ConfigChange change;
    const char* record;  // as logged, after the level
    const char* item;    // as config.reload lists it
  };
  const std::vector<Case> cases{
      {change::ServiceAdded{"web", 3, *IpAddress::parse("10.0.0.1"), 0, KEEL_PROTO_UDP, 2},
       "info event=service_added service=web id=3 vip=10.0.0.1 port=0 proto=udp reals=2",
       R"({"change":"service_added","service":"web","vip":"10.0.0.1","port":0,"protocol":"udp","reals":2})"},
      {change::ServiceRemoved{"web", 3}, "info event=service_removed service=web id=3",
       R"({"change":"service_removed","service":"web"})"},
      {change::ServiceUpdated{"web", {{"scheduler", "maglev", "maglev-src"}}},
       "info event=service_updated service=web changed=scheduler scheduler_from=maglev scheduler_to=maglev-src",
       R"({"change":"service_updated","service":"web",
           "keys":[{"key":"scheduler","from":"maglev","to":"maglev-src"}]})"},
      {change::RealAdded{"web", real}, "info event=real_added service=web real=10.0.1.12",
       R"({"change":"real_added","service":"web","real":"10.0.1.12"})"},
      {change::RealRemoved{"web", real}, "info event=real_removed service=web real=10.0.1.12",
       R"({"change":"real_removed","service":"web","real":"10.0.1.12"})"},
      {change::RealWeightChanged{"web", real, 100, 0},
       "info event=real_weight_changed service=web real=10.0.1.12 from=100 to=0",
       R"({"change":"real_weight_changed","service":"web","real":"10.0.1.12","from":100,"to":0})"},
      {change::HealthCheckChanged{"web", std::nullopt, 3, interval},
       "info event=health_check_changed service=web reals=3 changed=interval interval_from=5s interval_to=2s",
       R"({"change":"health_check_changed","service":"web","reals":3,
           "keys":[{"key":"interval","from":"5s","to":"2s"}]})"},
      {change::HealthCheckChanged{"web", real, 0, {{"port", "", "8080"}}},
       "info event=health_check_changed service=web real=10.0.1.12 changed=port port_from=\"\" port_to=8080",
       R"({"change":"health_check_changed","service":"web","real":"10.0.1.12",
           "keys":[{"key":"port","from":"","to":"8080"}]})"},
      {change::RealMacChanged{"web", real, m1, m2, true},
       "warning event=real_mac_changed service=web real=10.0.1.12 from=02:00:00:00:00:11 mac=02:00:00:00:00:12 "
       "detail=\"the neighbour table's entry names another MAC; l2dsr sends there now\"",
       R"({"change":"real_mac_changed","service":"web","real":"10.0.1.12",
           "from":"02:00:00:00:00:11","to":"02:00:00:00:00:12"})"},
      {change::NodeUpdated{{{"icmp_too_big_rate", "1000", "0"}}},
       "info event=node_updated changed=icmp_too_big_rate icmp_too_big_rate_from=1000 icmp_too_big_rate_to=0",
       R"({"change":"node_updated","keys":[{"key":"icmp_too_big_rate","from":"1000","to":"0"}]})"},
      {change::IntervalChanged{"flow_count_interval_changed", "10s", "1m"},
       "info event=flow_count_interval_changed from=10s to=1m",
       R"({"change":"flow_count_interval_changed","from":"10s","to":"1m"})"},
  };
  ASSERT_EQ(cases.size(), std::variant_size_v<ConfigChange> + 1) << "a case for each kind (two health forms)";
  for (const Case& c : cases) {
    test::LogCapture log;
    ConfigChanges noted;
    noteChange(c.change, &noted);
    const nlohmann::json item = changeJson(c.change);
    EXPECT_EQ(item, nlohmann::json::parse(c.item));
    EXPECT_EQ(log.take(item["change"].get<std::string>()), std::vector<std::string>{c.record});
    ASSERT_EQ(noted.size(), 1u);
    EXPECT_EQ(changeJson(noted[0]), item);
  }
}

}  // namespace
}  // namespace keel

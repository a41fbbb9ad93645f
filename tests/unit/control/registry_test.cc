// SPDX-License-Identifier: Apache-2.0
// Registry: asserts the exact order of data-plane calls for each change (the
// ordering rules of include/keel/maps_abi.h) and that a re-apply touches
// only what changed.
#include "control/registry.h"

#include <gtest/gtest.h>

#include <malloc.h>

#include <algorithm>
#include <cstring>
#include <set>
#include <utility>

#include "keel/encap.h"
#include "log_capture.h"
#include "mock_dataplane.h"
#include "null_dataplane.h"
#include "registry_builders.h"

namespace keel {
namespace {

using test::LogCapture;
using test::MockDataplane;
using Calls = std::vector<std::string>;

using test::config;
using test::ip;
using test::real;
using test::service;

class RegistryTest : public ::testing::Test {
 protected:
  MockDataplane dp_{DataplaneLimits{8, 8, 100}};
  Registry reg_{dp_};

  void applyOk(const Config& c) {
    Status s = reg_.apply(c);
    ASSERT_TRUE(s.isOk()) << s.message();
  }
  Calls take() { return std::exchange(dp_.calls, {}); }
  std::set<uint32_t> ringMembers(ServiceId id) {
    return {dp_.rings[id].begin(), dp_.rings[id].end()};
  }
};

TEST_F(RegistryTest, AddServiceOrdersVipBackendsRingThenService) {
  applyOk(config({service("web", "192.0.2.10", 80, {real("10.0.1.12"), real("10.0.1.11")})}));
  // Reals are keyed by address, so ids follow address order, not listing order.
  EXPECT_EQ(take(), (Calls{"addVip 192.0.2.10", "upsertBackend 0 10.0.1.11 gen=1 valid",
                           "upsertBackend 1 10.0.1.12 gen=1 valid", "publishRing 0 [0,1]",
                           "upsertService 192.0.2.10:80/6 id=0 flags=0"}));
  EXPECT_EQ(dp_.rings[0].size(), 13u);
  EXPECT_EQ(dp_.backends[0].service_id, 0u);
}

TEST_F(RegistryTest, ReapplyingTheSameConfigMakesNoCalls) {
  Config c = config({service("web", "192.0.2.10", 80, {real("10.0.1.11")}),
                     service("dns", "192.0.2.53", 53, {real("10.0.2.1")})});
  applyOk(c);
  take();
  applyOk(c);
  EXPECT_TRUE(take().empty());
}

TEST_F(RegistryTest, AddRealWritesBackendBeforeRingAndLeavesOtherServicesAlone) {
  applyOk(config({service("web", "192.0.2.10", 80, {real("10.0.1.11")}),
                  service("dns", "192.0.2.53", 53, {real("10.0.2.1")})}));
  take();
  applyOk(config({service("web", "192.0.2.10", 80, {real("10.0.1.11"), real("10.0.1.12")}),
                  service("dns", "192.0.2.53", 53, {real("10.0.2.1")})}));
  EXPECT_EQ(take(), (Calls{"upsertBackend 2 10.0.1.12 gen=1 valid", "publishRing 0 [0,2]"}));
}

TEST_F(RegistryTest, RemoveRealPublishesRingBeforeInvalidatingAndIdIsReusedAtNewGen) {
  applyOk(config({service("web", "192.0.2.10", 80, {real("10.0.1.11"), real("10.0.1.12")})}));
  take();
  applyOk(config({service("web", "192.0.2.10", 80, {real("10.0.1.11")})}));
  EXPECT_EQ(take(), (Calls{"publishRing 0 [0]", "upsertBackend 1 10.0.1.12 gen=2 invalid",
                           "resetBackend 1"}));
  // The freed id 1 goes to the next new real, at a newer generation than any
  // conntrack entry of 10.0.1.12 can hold.
  applyOk(config({service("web", "192.0.2.10", 80, {real("10.0.1.11"), real("10.0.1.13")})}));
  EXPECT_EQ(take(), (Calls{"upsertBackend 1 10.0.1.13 gen=3 valid", "publishRing 0 [0,1]"}));
}

TEST_F(RegistryTest, DrainOnlyRepublishesTheRing) {
  applyOk(config({service("web", "192.0.2.10", 80, {real("10.0.1.11"), real("10.0.1.12")})}));
  take();
  applyOk(config({service("web", "192.0.2.10", 80, {real("10.0.1.11"), real("10.0.1.12", 0)})}));
  EXPECT_EQ(take(), (Calls{"publishRing 0 [0]"}));  // backend 1 stays valid, gen unchanged
  EXPECT_TRUE(dp_.backends[1].flags & KEEL_BE_F_VALID);
  EXPECT_EQ(dp_.backends[1].gen, 1u);
  // Undrain puts it back with the same generation.
  applyOk(config({service("web", "192.0.2.10", 80, {real("10.0.1.11"), real("10.0.1.12")})}));
  EXPECT_EQ(take(), (Calls{"publishRing 0 [0,1]"}));
}

TEST_F(RegistryTest, WeightChangeRebuildsRingOnly) {
  applyOk(config({service("web", "192.0.2.10", 80, {real("10.0.1.11"), real("10.0.1.12")})}));
  take();
  applyOk(config({service("web", "192.0.2.10", 80, {real("10.0.1.11", 300), real("10.0.1.12")})}));
  EXPECT_EQ(take(), (Calls{"publishRing 0 [0,1]"}));
  size_t heavy = 0;
  for (uint32_t b : dp_.rings[0]) heavy += b == 0;
  EXPECT_GT(heavy, dp_.rings[0].size() / 2);  // 3:1 weight -> most slots
}

TEST_F(RegistryTest, AllRealsDrainedPublishesEmptyRing) {
  applyOk(config({service("web", "192.0.2.10", 80, {real("10.0.1.11")})}));
  take();
  applyOk(config({service("web", "192.0.2.10", 80, {real("10.0.1.11", 0)})}));
  EXPECT_EQ(take(), (Calls{"publishRing 0 []"}));
  EXPECT_TRUE(dp_.rings[0].empty());
}

TEST_F(RegistryTest, RemoveServiceUnhooksEmptiesInvalidatesThenWithdrawsVip) {
  applyOk(config({service("web", "192.0.2.10", 80, {real("10.0.1.11")}),
                  service("dns", "192.0.2.53", 53, {real("10.0.2.1")})}));
  take();
  applyOk(config({service("dns", "192.0.2.53", 53, {real("10.0.2.1")})}));
  EXPECT_EQ(take(), (Calls{"removeService 192.0.2.10:80/6", "publishRing 0 []",
                           "upsertBackend 0 10.0.1.11 gen=2 invalid", "resetBackend 0",
                           "resetService 0", "removeVip 192.0.2.10"}));
  EXPECT_EQ(dp_.vips, (std::set<std::string>{"192.0.2.53"}));
}

TEST_F(RegistryTest, VipIsRefcountedAcrossServices) {
  applyOk(config({service("http", "192.0.2.10", 80, {real("10.0.1.11")}),
                  service("https", "192.0.2.10", 443, {real("10.0.1.11")})}));
  Calls first = take();
  EXPECT_EQ(std::count(first.begin(), first.end(), "addVip 192.0.2.10"), 1);
  applyOk(config({service("https", "192.0.2.10", 443, {real("10.0.1.11")})}));
  Calls second = take();
  EXPECT_EQ(std::count(second.begin(), second.end(), "removeVip 192.0.2.10"), 0);
  applyOk(config({}));
  Calls third = take();
  EXPECT_EQ(third.back(), "removeVip 192.0.2.10");
  EXPECT_TRUE(dp_.vips.empty());
  EXPECT_TRUE(dp_.services.empty());
}

TEST_F(RegistryTest, ServiceChangingPortIsReplacedWithoutWithdrawingItsVip) {
  applyOk(config({service("web", "192.0.2.10", 80, {real("10.0.1.11")})}));
  take();
  applyOk(config({service("web", "192.0.2.10", 8080, {real("10.0.1.11")})}));
  Calls c = take();
  EXPECT_EQ(c.front(), "removeService 192.0.2.10:80/6");
  EXPECT_EQ(c.back(), "upsertService 192.0.2.10:8080/6 id=0 flags=0");
  EXPECT_EQ(std::count(c.begin(), c.end(), "removeVip 192.0.2.10"), 0);
  EXPECT_EQ(std::count(c.begin(), c.end(), "addVip 192.0.2.10"), 0);
  EXPECT_EQ(dp_.vips.size(), 1u);
}

TEST_F(RegistryTest, SchedulerChangeRewritesServiceFlagsOnly) {
  applyOk(config({service("web", "192.0.2.10", 80, {real("10.0.1.11")})}));
  take();
  ServiceConfig s = service("web", "192.0.2.10", 80, {real("10.0.1.11")});
  s.scheduler = Scheduler::kMaglevSrc;
  applyOk(config({s}));
  EXPECT_EQ(take(), (Calls{"upsertService 192.0.2.10:80/6 id=0 flags=1"}));
}

// node.hash_source_v4 is an IPv4 prefix: keeld turns it into the node flag
// KEEL_NODE_F_HASH_SRC_V4, which hashes IPv4 outer sources only. The service
// flag would hash IPv6 outer sources too (outside tunnel_source_v6, which
// is all the reals are told to accept), so the registry never sets it.
TEST_F(RegistryTest, HashSourceV4HashesOnlyIpv4OuterSources) {
  Config c = config({service("web", "192.0.2.10", 80, {real("10.0.1.11"), real("2001:db8::11")})});
  c.node.hashSourceV4 = Ipv4Prefix{ip("172.16.0.0"), 16};
  applyOk(c);
  const uint32_t svcFlags = dp_.services.at("192.0.2.10:80/6").flags;
  EXPECT_EQ(svcFlags & KEEL_SVC_F_HASH_SRC_IP, 0u);
  // What the data plane decides from these flags and keeld's node flag.
  keel_node_config node{};
  node.flags = KEEL_NODE_F_HASH_SRC_V4;
  keel_encap_tpl tpl{};
  keel_encap_prepare(&tpl, &node, &dp_.backends[0]);  // 10.0.1.11
  EXPECT_TRUE(keel_encap_hash_src(&tpl, svcFlags));
  keel_encap_prepare(&tpl, &node, &dp_.backends[1]);  // 2001:db8::11
  EXPECT_FALSE(keel_encap_hash_src(&tpl, svcFlags));
  // Turning it off again leaves the services alone.
  take();
  c.node.hashSourceV4.reset();
  applyOk(c);
  EXPECT_TRUE(take().empty());
}

TEST_F(RegistryTest, L2dsrBackendsCarryTheirMac) {
  ServiceConfig s = service("web", "192.0.2.10", 80, {real("10.0.1.11")});
  s.forwarding = Forwarding::kL2dsr;
  s.reals[0].mac = MacAddress({2, 0, 0, 0, 1, 0x11});
  applyOk(config({s}));
  EXPECT_EQ(dp_.backends[0].mac[5], 0x11);
  EXPECT_EQ(dp_.services.begin()->second.flags, uint32_t{KEEL_SVC_F_FWD_L2DSR});
  take();
  s.reals[0].mac = MacAddress({2, 0, 0, 0, 1, 0x22});
  applyOk(config({s}));
  EXPECT_EQ(take(), (Calls{"upsertBackend 0 10.0.1.11 gen=1 valid"}));
  EXPECT_EQ(dp_.backends[0].mac[5], 0x22);
}

// A ring size Maglev cannot use (not prime) is refused with the service's
// name, rather than published as an empty ring that drops every packet
// (ring review L7; config and API accept only the two primes, so this
// guards state read back from elsewhere).
TEST(RegistryRingSize, ANonPrimeRingSizeIsRefusedNotPublishedEmpty) {
  MockDataplane dp({8, 16, 100});
  Registry reg(dp);
  ServiceConfig s = service("web", "192.0.2.10", 80, {real("10.0.1.11")});
  s.ringSize = 12;
  Status st = reg.apply(config({s}));
  ASSERT_FALSE(st.isOk());
  EXPECT_EQ(st.message(),
            "service web: ring size 12 is not a prime >= 2 (Maglev needs a prime so every permutation covers the "
            "ring; use 65537 or 655373)");
  EXPECT_TRUE(dp.services.empty());  // nothing points packets at a ring
}

// The first l2dsr service of dp whose ring names a VALID backend with no
// MAC (its packets would go out to 00:00:00:00:00:00), as "service: real",
// or "" if none.
std::string l2dsrToZeroMac(const MockDataplane& dp) {
  for (const auto& [key, value] : dp.services) {
    if (!(value.flags & KEEL_SVC_F_FWD_L2DSR)) continue;
    auto ring = dp.rings.find(value.id);
    if (ring == dp.rings.end()) continue;
    for (uint32_t id : ring->second) {
      auto b = dp.backends.find(id);
      if (b == dp.backends.end() || !(b->second.flags & KEEL_BE_F_VALID)) continue;
      static constexpr uint8_t kZero[6] = {};
      if (std::memcmp(b->second.mac, kZero, 6) == 0)
        return key + ": " + test::addressFromWords(b->second.addr, b->second.family).toString();
    }
  }
  return "";
}

// A change of forwarding, l2dsr to ipip and back, with and without a real
// removed in the same apply: every prefix of its data-plane calls is a
// state packets may meet (XDP applies each write at once; DPDK publishes a
// batch early when it frees an id), so none may leave an l2dsr service
// whose ring names a backend without a MAC. The change fails after call k
// with the writes up to it landed, for every k.
TEST(RegistryForwardingChange, NoStepSendsL2dsrPacketsToAZeroMac) {
  auto svc = [](Forwarding f, bool threeReals) {
    std::vector<RealConfig> reals{real("10.0.1.11"), real("10.0.1.12")};
    if (threeReals) reals.push_back(real("10.0.1.13"));
    ServiceConfig s = service("web", "192.0.2.10", 80, reals);
    s.forwarding = f;
    if (f == Forwarding::kL2dsr)
      for (size_t i = 0; i < s.reals.size(); ++i)
        s.reals[i].mac = MacAddress({2, 0, 0, 0, 1, static_cast<uint8_t>(0x11 + i)});
    return s;
  };
  for (const bool toIpip : {true, false})
    for (const bool removeOne : {false, true}) {
      const Forwarding from = toIpip ? Forwarding::kL2dsr : Forwarding::kIpip;
      const Forwarding to = toIpip ? Forwarding::kIpip : Forwarding::kL2dsr;
      const Config before = config({svc(from, true)});
      const Config after = config({svc(to, !removeOne)});
      int steps = 0;
      for (int k = 1; k < 100; ++k) {
        MockDataplane dp({8, 16, 100});
        Registry reg(dp);
        ASSERT_TRUE(reg.apply(before).isOk());
        ASSERT_EQ(l2dsrToZeroMac(dp), "");
        dp.failAfter = k;
        const bool done = reg.apply(after).isOk();
        EXPECT_EQ(l2dsrToZeroMac(dp), "") << (toIpip ? "l2dsr -> ipip" : "ipip -> l2dsr")
                                          << (removeOne ? ", a real removed" : "") << ", after call " << k;
        if (done) break;
        ++steps;
      }
      EXPECT_GT(steps, 1);  // the change took several calls, each one checked
    }
}

// An l2dsr real without a MAC (keeld has not found it in the neighbour
// table yet: RealConfig::macPending) is down whatever its health says:
// added !VALID and out of the ring, refused an up verdict until it has a
// MAC, and taken down the health way (ring first, then a new generation)
// by a change that takes its MAC away.
TEST_F(RegistryTest, AnL2dsrRealWithoutAMacIsNeverInTheRing) {
  ServiceConfig s = service("web", "192.0.2.10", 80, {real("10.0.1.11"), real("10.0.1.12")});
  s.forwarding = Forwarding::kL2dsr;
  s.reals[0].mac = MacAddress({2, 0, 0, 0, 1, 0x11});
  applyOk(config({s}));  // 10.0.1.12: no mac, though startHealthy (the default)
  EXPECT_EQ(ringMembers(0), (std::set<uint32_t>{0}));
  EXPECT_FALSE(dp_.backends[1].flags & KEEL_BE_F_VALID);
  EXPECT_FALSE(reg_.service("web")->reals[1].healthy);
  Status up = reg_.setRealHealth("web", ip("10.0.1.12"), true);
  EXPECT_FALSE(up.isOk());
  EXPECT_EQ(up.message(), "service web: real 10.0.1.12 cannot come up: l2dsr has no MAC for it yet");
  EXPECT_EQ(ringMembers(0), (std::set<uint32_t>{0}));

  // Its MAC found: written, still down until its health says up.
  take();
  s.reals[1].mac = MacAddress({2, 0, 0, 0, 1, 0x12});
  applyOk(config({s}));
  EXPECT_EQ(take(), (Calls{"upsertBackend 1 10.0.1.12 gen=1 invalid"}));
  ASSERT_TRUE(reg_.setRealHealth("web", ip("10.0.1.12"), true).isOk());
  EXPECT_EQ(ringMembers(0), (std::set<uint32_t>{0, 1}));

  // Its MAC taken away (a file that drops its mac:, the table lacks it).
  take();
  s.reals[1].mac.reset();
  applyOk(config({s}));
  EXPECT_EQ(take(), (Calls{"publishRing 0 [0]", "upsertBackend 1 10.0.1.12 gen=2 invalid"}));
  EXPECT_FALSE(reg_.service("web")->reals[1].healthy);
}

TEST_F(RegistryTest, OverCapacityChangesNothing) {
  std::vector<RealConfig> many;
  const char* addrs[] = {"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5",
                         "10.0.0.6", "10.0.0.7", "10.0.0.8", "10.0.0.9"};
  for (const char* a : addrs) many.push_back(real(a));
  Config c = config({service("web", "192.0.2.10", 80, many)});
  c.limits = dp_.limits();
  Status s = reg_.apply(c);
  EXPECT_FALSE(s.isOk());
  EXPECT_EQ(s.message(), "config needs 9 new backend ids, the data plane has 8 free of its 8 (limits.max_reals)");
  EXPECT_TRUE(take().empty());
  EXPECT_EQ(reg_.serviceCount(), 0u);
  // A file that raises the limit: that takes a fresh data plane, not a
  // reload, and the refusal says so (input review L4).
  c.limits.maxBackends = 100;
  s = reg_.apply(c);
  EXPECT_EQ(s.message(), "config needs 9 new backend ids, the data plane has 8 free of its 8 (limits.max_reals); the "
                         "file's limits.max_reals: 100 applies only to a fresh data plane (keelctl daemon stop, then "
                         "start keeld: every established flow is picked again)");
  EXPECT_TRUE(take().empty());
}

TEST_F(RegistryTest, IdsAreDenseAndReused) {
  applyOk(config({service("a", "192.0.2.1", 80, {}), service("b", "192.0.2.2", 80, {}),
                  service("c", "192.0.2.3", 80, {})}));
  applyOk(config({service("a", "192.0.2.1", 80, {}), service("c", "192.0.2.3", 80, {})}));
  applyOk(config({service("a", "192.0.2.1", 80, {}), service("c", "192.0.2.3", 80, {}),
                  service("d", "192.0.2.4", 80, {})}));
  std::map<std::string, ServiceId> ids;
  for (const ServiceView& v : reg_.services()) ids[v.name] = v.id;
  EXPECT_EQ(ids, (std::map<std::string, ServiceId>{{"a", 0}, {"c", 2}, {"d", 1}}));
}

TEST_F(RegistryTest, HealthDownAndUpFollowTheOrderingRules) {
  applyOk(config({service("web", "192.0.2.10", 80, {real("10.0.1.11"), real("10.0.1.12")})}));
  take();
  ASSERT_TRUE(reg_.setRealHealth("web", ip("10.0.1.12"), false).isOk());
  EXPECT_EQ(take(), (Calls{"publishRing 0 [0]", "upsertBackend 1 10.0.1.12 gen=2 invalid"}));
  // A reload while it is down keeps it out.
  applyOk(config({service("web", "192.0.2.10", 80, {real("10.0.1.11"), real("10.0.1.12")})}));
  EXPECT_TRUE(take().empty());
  ASSERT_TRUE(reg_.setRealHealth("web", ip("10.0.1.12"), true).isOk());
  EXPECT_EQ(take(), (Calls{"upsertBackend 1 10.0.1.12 gen=2 valid", "publishRing 0 [0,1]"}));
  EXPECT_FALSE(reg_.setRealHealth("web", ip("10.9.9.9"), true).isOk());
  EXPECT_FALSE(reg_.setRealHealth("nope", ip("10.0.1.11"), true).isOk());
}

// The checker's transitions of one keeld loop turn go in together: each
// service's ring is built and published once for all of its verdicts, in
// one data-plane batch, with each real's order of writes kept (up: backend
// before the ring; down: the ring before the backend), and every service's
// ring before any service's down reals are written. Without the batch
// form each verdict rebuilt and published its service's ring (10,000 reals
// coming up at start-up: 10,000 Maglev builds and publishes).
TEST_F(RegistryTest, ManyVerdictsPublishEachServiceRingOnce) {
  applyOk(config({service("web", "192.0.2.10", 80, {real("10.0.1.11"), real("10.0.1.12"), real("10.0.1.13")}),
                  service("dns", "192.0.2.53", 53, {real("10.0.2.1"), real("10.0.2.2")})}));
  take();
  const int before = dp_.batches;
  using V = Registry::HealthVerdict;
  std::vector<Status> r = reg_.setRealsHealth({V{"web", ip("10.0.1.12"), false}, V{"dns", ip("10.0.2.2"), false},
                                               V{"web", ip("10.0.1.13"), false}});
  ASSERT_EQ(r.size(), 3u);
  for (const Status& s : r) EXPECT_TRUE(s.isOk()) << s.message();
  EXPECT_EQ(dp_.batches, before + 1);
  // Services by name (dns: id 1, backends 3-4; web: id 0, backends 0-2),
  // every ring before any real that left one is invalidated (so on XDP the
  // rings go out in one publish, RingBatcher).
  EXPECT_EQ(take(), (Calls{"publishRing 1 [3]", "publishRing 0 [0]", "upsertBackend 4 10.0.2.2 gen=2 invalid",
                           "upsertBackend 1 10.0.1.12 gen=2 invalid", "upsertBackend 2 10.0.1.13 gen=2 invalid"}));
  // Up together; an unknown real fails alone.
  r = reg_.setRealsHealth({V{"web", ip("10.0.1.13"), true}, V{"web", ip("10.9.9.9"), true},
                           V{"web", ip("10.0.1.12"), true}, V{"nope", ip("10.0.1.12"), true}});
  EXPECT_TRUE(r[0].isOk());
  EXPECT_FALSE(r[1].isOk());
  EXPECT_TRUE(r[2].isOk());
  EXPECT_FALSE(r[3].isOk());
  EXPECT_EQ(take(), (Calls{"upsertBackend 2 10.0.1.13 gen=2 valid", "upsertBackend 1 10.0.1.12 gen=2 valid",
                           "publishRing 0 [0,1,2]"}));
  // A real given twice takes its last verdict: down and back up is no change.
  r = reg_.setRealsHealth({V{"web", ip("10.0.1.11"), false}, V{"web", ip("10.0.1.11"), true}});
  EXPECT_TRUE(r[0].isOk() && r[1].isOk());
  EXPECT_TRUE(take().empty());
  EXPECT_EQ(reg_.setRealHealth("web", ip("10.0.1.11"), true).message(), "");
  // A data-plane failure fails every verdict that changed something: a
  // plane that holds writes drops them all on a refusal (RingBatcher), the
  // other services' included, so nothing more is written past a ring
  // (web's 10.0.1.12 leaves the ring, as drained, not yet invalidated).
  dp_.failAfter = 1;  // dns's first write: 10.0.2.2's backend; dns writes nothing more
  r = reg_.setRealsHealth({V{"web", ip("10.0.1.12"), false}, V{"dns", ip("10.0.2.1"), false},
                           V{"dns", ip("10.0.2.2"), true}});
  EXPECT_FALSE(r[0].isOk());
  EXPECT_FALSE(r[1].isOk());
  EXPECT_FALSE(r[2].isOk());
  EXPECT_EQ(take(), (Calls{"upsertBackend 4 10.0.2.2 gen=2 valid", "publishRing 0 [0,2]"}));
  // The next apply rewrites both whole, with the verdicts they recorded.
  applyOk(config({service("web", "192.0.2.10", 80, {real("10.0.1.11"), real("10.0.1.12"), real("10.0.1.13")}),
                  service("dns", "192.0.2.53", 53, {real("10.0.2.1"), real("10.0.2.2")})}));
  EXPECT_EQ(ringMembers(1), (std::set<uint32_t>{4}));
  EXPECT_EQ(ringMembers(0), (std::set<uint32_t>{0, 2}));
  EXPECT_FALSE(dp_.backends[1].flags & KEEL_BE_F_VALID);
}

// Every change apply() and setRealHealth() make is inside one data-plane
// batch (the DPDK plane publishes it as one snapshot): one batch per call,
// whether it starts services, removes one (id releases included) or fails
// part way.
TEST_F(RegistryTest, EachApplyAndHealthChangeIsOneDataplaneBatch) {
  applyOk(config({service("web", "192.0.2.10", 80, {real("10.0.1.11"), real("10.0.1.12")}),
                  service("dns", "192.0.2.53", 53, {real("10.0.2.1")})}));
  EXPECT_EQ(dp_.batches, 1);
  ASSERT_TRUE(reg_.setRealHealth("web", ip("10.0.1.12"), false).isOk());
  EXPECT_EQ(dp_.batches, 2);
  applyOk(config({service("dns", "192.0.2.53", 53, {real("10.0.2.1"), real("10.0.2.2")})}));
  EXPECT_EQ(dp_.batches, 3);
  dp_.failAfter = 2;
  EXPECT_FALSE(reg_.apply(config({service("dns", "192.0.2.53", 53, {real("10.0.2.3")})})).isOk());
  EXPECT_EQ(dp_.batches, 4);
  EXPECT_EQ(dp_.batchDepth, 0);
  EXPECT_FALSE(dp_.calls.empty());
  EXPECT_EQ(dp_.unbatchedCalls, Calls{});
}

// lookup's view of a flow's connection-table entry: the real its backend id
// names in that service, and whether the next packet goes there by the data
// plane's rule for a hit (VALID, this service, same generation, not
// expired); each way it stops being kept says why.
TEST_F(RegistryTest, ConnEntryNamesTheEntrysRealAndWhetherItIsKept) {
  applyOk(config({service("web", "192.0.2.10", 80, {real("10.0.1.11"), real("10.0.1.12")}),
                  service("dns", "192.0.2.53", 53, {real("10.0.2.1")})}));
  keel_flow_key k{};
  k.src[0] = 0x01020304;
  EXPECT_FALSE(reg_.connEntry("web", k)) << "no entry";
  dp_.setConn(k, ConnEntry{1, 1, 2'500'000'000, false});  // 10.0.1.12, as written at gen 1
  std::optional<ConnView> v = reg_.connEntry("web", k);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->real, ip("10.0.1.12"));
  EXPECT_TRUE(v->kept()) << v->why;
  EXPECT_EQ(v->idleNs, 2'500'000'000u);
  EXPECT_FALSE(reg_.connEntry("nope", k)) << "no such service";
  // Backend 1 is not one of dns's reals: the entry names none there.
  v = reg_.connEntry("dns", k);
  ASSERT_TRUE(v);
  EXPECT_FALSE(v->real);
  EXPECT_FALSE(v->kept());
  EXPECT_NE(v->why.find("no real of this service"), std::string::npos) << v->why;
  // Drained: out of the ring, the entry still kept.
  applyOk(config({service("web", "192.0.2.10", 80, {real("10.0.1.11"), real("10.0.1.12", 0)}),
                  service("dns", "192.0.2.53", 53, {real("10.0.2.1")})}));
  EXPECT_TRUE(reg_.connEntry("web", k)->kept());
  // Expired in the data plane.
  dp_.setConn(k, ConnEntry{1, 1, 2'500'000'000, true});
  v = reg_.connEntry("web", k);
  EXPECT_FALSE(v->kept());
  EXPECT_NE(v->why.find("idle past"), std::string::npos) << v->why;
  dp_.setConn(k, ConnEntry{1, 1, 0, false});
  // Down (undrained first: a drained real keeps its flows when it goes
  // down): not VALID.
  applyOk(config({service("web", "192.0.2.10", 80, {real("10.0.1.11"), real("10.0.1.12")}),
                  service("dns", "192.0.2.53", 53, {real("10.0.2.1")})}));
  ASSERT_TRUE(reg_.setRealHealth("web", ip("10.0.1.12"), false).isOk());
  v = reg_.connEntry("web", k);
  EXPECT_FALSE(v->kept());
  EXPECT_EQ(v->why, "its real is down");
  // Up again at a new generation: the old entry is stale.
  ASSERT_TRUE(reg_.setRealHealth("web", ip("10.0.1.12"), true).isOk());
  v = reg_.connEntry("web", k);
  EXPECT_EQ(v->real, ip("10.0.1.12"));
  EXPECT_FALSE(v->kept());
  EXPECT_NE(v->why.find("generation 1, now"), std::string::npos) << v->why;
  // Removed, and its id given to a real added later: the entry names the
  // removed real it was written for (its generation is in that real's run
  // of the id), not the id's new owner.
  applyOk(config({service("web", "192.0.2.10", 80, {real("10.0.1.11")}),
                  service("dns", "192.0.2.53", 53, {real("10.0.2.1")})}));
  applyOk(config({service("web", "192.0.2.10", 80, {real("10.0.1.11"), real("10.0.1.99")}),
                  service("dns", "192.0.2.53", 53, {real("10.0.2.1")})}));
  ASSERT_EQ(reg_.service("web")->reals[1].backendId, 1u) << "the freed id is reused";
  v = reg_.connEntry("web", k);
  EXPECT_EQ(v->real, ip("10.0.1.12"));
  EXPECT_EQ(v->state, ConnState::kRemoved);
  EXPECT_FALSE(v->kept());
  EXPECT_NE(v->why.find("its real 10.0.1.12 is no real of this service now (removed"), std::string::npos) << v->why;
  // A real held by fail-open (down, but the last one serving) keeps its flows.
  applyOk(config({service("web", "192.0.2.10", 80, {real("10.0.1.11")}),
                  service("dns", "192.0.2.53", 53, {real("10.0.2.1")})}));
  dp_.setConn(k, ConnEntry{0, reg_.service("web")->reals[0].gen, 0, false});
  ASSERT_TRUE(reg_.setRealHealth("web", ip("10.0.1.11"), false).isOk());
  ASSERT_TRUE(reg_.service("web")->reals[0].held);
  v = reg_.connEntry("web", k);
  EXPECT_EQ(v->real, ip("10.0.1.11"));
  EXPECT_TRUE(v->kept()) << v->why;
}

// keelctl conns: every entry of the table, each with the service its
// destination is now (exact port first, then the VIP's port-0 service) and
// read as connEntry() reads one; the filters select, the limit cuts the
// list but not the count.
TEST_F(RegistryTest, ConnListResolvesEachEntrysServiceAndFilters) {
  applyOk(config({service("web", "192.0.2.10", 80, {real("10.0.1.11"), real("10.0.1.12")}),
                  service("any", "192.0.2.10", 0, {real("10.0.3.1")}),
                  service("dns", "192.0.2.53", 53, {real("10.0.2.1")})}));
  auto id = [&](const char* svc, size_t i) { return reg_.service(svc)->reals[i].backendId; };
  const uint8_t dnsProto = reg_.service("dns")->protocol;
  auto flow = test::flowKey;
  const keel_flow_key webA = flow("198.51.100.1", 1000, "192.0.2.10", 80, KEEL_PROTO_TCP);
  const keel_flow_key webB = flow("198.51.100.2", 1001, "192.0.2.10", 80, KEEL_PROTO_TCP);
  const keel_flow_key other = flow("198.51.100.1", 1002, "192.0.2.10", 8080, KEEL_PROTO_TCP);  // the port-0 service
  const keel_flow_key dns = flow("198.51.100.3", 1003, "192.0.2.53", 53, dnsProto);
  const keel_flow_key gone = flow("198.51.100.4", 1004, "192.0.2.99", 80, KEEL_PROTO_TCP);  // no service
  dp_.setConn(webA, ConnEntry{id("web", 0), 1, 1'000'000'000, false});
  dp_.setConn(webB, ConnEntry{id("web", 1), 1, 2'000'000'000, false});
  dp_.setConn(other, ConnEntry{id("any", 0), 1, 0, false});
  dp_.setConn(dns, ConnEntry{id("dns", 0), 1, 0, true});
  dp_.setConn(gone, ConnEntry{id("web", 0), 1, 0, false});
  dp_.connWorker = 1;

  auto services = [](const ConnList& l) {
    std::multiset<std::string> out;
    for (const ConnListed& c : l.conns) out.insert(c.service);
    return out;
  };
  ConnList l;
  ASSERT_TRUE(reg_.connList(ConnQuery{}, &l).isOk());
  EXPECT_EQ(l.scanned, 5u);
  EXPECT_EQ(l.matched, 5u);
  EXPECT_EQ(services(l), (std::multiset<std::string>{"web", "web", "any", "dns", ""}));
  // Every match counted by service, then real (sorted), kept or not.
  auto countsOf = [](const ConnList& cl) {
    std::vector<std::tuple<std::string, std::string, uint64_t, uint64_t>> out;
    for (const ConnCount& n : cl.counts)
      out.emplace_back(n.service, n.real ? n.real->toString() : "-", n.kept, n.notKept);
    return out;
  };
  EXPECT_TRUE(l.counts.empty()) << "counted only when nothing is listed (limit 0)";
  ConnList counted;
  ConnQuery countOnly;
  countOnly.limit = 0;
  ASSERT_TRUE(reg_.connList(countOnly, &counted).isOk());
  EXPECT_TRUE(counted.conns.empty());
  EXPECT_EQ(counted.matched, 5u);
  EXPECT_EQ(countsOf(counted), (std::vector<std::tuple<std::string, std::string, uint64_t, uint64_t>>{
                             {"", "-", 0, 1},
                             {"any", "10.0.3.1", 1, 0},
                             {"dns", "10.0.2.1", 0, 1},
                             {"web", "10.0.1.11", 1, 0},
                             {"web", "10.0.1.12", 1, 0}}));
  for (const ConnListed& c : l.conns) {
    EXPECT_EQ(c.worker, 1);
    if (std::memcmp(&c.key, &webB, sizeof webB) == 0) {
      EXPECT_EQ(c.view.real, ip("10.0.1.12"));
      EXPECT_TRUE(c.view.kept()) << c.view.why;
      EXPECT_EQ(c.view.idleNs, 2'000'000'000u);
    } else if (c.service == "any") {
      EXPECT_EQ(c.view.real, ip("10.0.3.1"));
    } else if (c.service == "dns") {
      EXPECT_EQ(c.view.state, ConnState::kIdle);
      EXPECT_FALSE(c.view.kept());
      EXPECT_NE(c.view.why.find("idle past"), std::string::npos) << c.view.why;
    } else if (c.service.empty()) {
      EXPECT_FALSE(c.view.real);
      EXPECT_FALSE(c.view.kept());
      EXPECT_NE(c.view.why.find("no service"), std::string::npos) << c.view.why;
    }
  }

  ConnQuery q;
  q.service = "web";
  ASSERT_TRUE(reg_.connList(q, &l).isOk());
  EXPECT_EQ(services(l), (std::multiset<std::string>{"web", "web"}));
  EXPECT_EQ(l.scanned, 5u) << "every entry is read, the filter only selects";
  q.real = ip("10.0.1.11");
  ASSERT_TRUE(reg_.connList(q, &l).isOk());
  ASSERT_EQ(l.conns.size(), 1u);
  EXPECT_EQ(std::memcmp(&l.conns[0].key, &webA, sizeof webA), 0);
  q = ConnQuery{};
  q.client = ip("198.51.100.1");
  ASSERT_TRUE(reg_.connList(q, &l).isOk());
  EXPECT_EQ(services(l), (std::multiset<std::string>{"web", "any"}));
  q.limit = 1;
  ASSERT_TRUE(reg_.connList(q, &l).isOk());
  EXPECT_EQ(l.conns.size(), 1u);
  EXPECT_EQ(l.matched, 2u) << "the limit cuts the list, not the count";
  q.limit = 0;
  ASSERT_TRUE(reg_.connList(q, &l).isOk());
  EXPECT_TRUE(l.conns.empty());
  EXPECT_EQ(countsOf(l), (std::vector<std::tuple<std::string, std::string, uint64_t, uint64_t>>{
                             {"any", "10.0.3.1", 1, 0}, {"web", "10.0.1.11", 1, 0}}))
      << "counted all the same";

  // A drained real's entries stay kept; a down real's are not (10.0.1.13
  // serves, so fail-open holds no real).
  applyOk(config({service("web", "192.0.2.10", 80, {real("10.0.1.11", 0), real("10.0.1.12"), real("10.0.1.13")}),
                  service("any", "192.0.2.10", 0, {real("10.0.3.1")}),
                  service("dns", "192.0.2.53", 53, {real("10.0.2.1")})}));
  ASSERT_TRUE(reg_.setRealHealth("web", ip("10.0.1.12"), false).isOk());
  q = ConnQuery{};
  q.service = "web";
  ASSERT_TRUE(reg_.connList(q, &l).isOk());
  ASSERT_EQ(l.conns.size(), 2u);
  for (const ConnListed& c : l.conns) {
    if (c.view.real == ip("10.0.1.11")) EXPECT_TRUE(c.view.kept()) << c.view.why;
    else EXPECT_EQ(c.view.why, "its real is down") << connStateName(c.view.state);
  }

  q.service = "nope";
  Status s = reg_.connList(q, &l);
  EXPECT_FALSE(s.isOk());
  EXPECT_NE(s.message().find("nope"), std::string::npos) << s.message();
  dp_.scanError = "xdp: read the connection table: Bad file descriptor";
  s = reg_.connList(ConnQuery{}, &l);
  EXPECT_FALSE(s.isOk());
  EXPECT_EQ(s.message(), dp_.scanError);
  EXPECT_TRUE(l.conns.empty());
}

// conn.list's `real` filter finds a removed real's leftover entries: an
// entry carries its backend id and generation, and each owner of an id has
// its own run of generations, so the registry names the removed real an
// entry was written for, as long as it remembers it: the last
// kPastRealsPerId owners of each id, and none adopted from a previous keeld
// (where their run began is unknown). Older entries name no real.
TEST_F(RegistryTest, RealFilterFindsARemovedRealsEntries) {
  applyOk(config({service("web", "192.0.2.10", 80, {real("10.0.1.11"), real("10.0.1.12")})}));
  const BackendId id = reg_.service("web")->reals[1].backendId;
  const uint32_t gen = reg_.service("web")->reals[1].gen;
  auto flow = [](uint16_t sport) {
    keel_flow_key k{};
    ip("198.51.100.1").toWords(k.src);
    ip("192.0.2.10").toWords(k.dst);
    k.sport = htons(sport);
    k.dport = htons(80);
    k.proto = KEEL_PROTO_TCP;
    k.family = KEEL_AF_INET;
    return k;
  };
  dp_.setConn(flow(1000), ConnEntry{id, gen, 0, false});
  dp_.setConn(flow(1001), ConnEntry{reg_.service("web")->reals[0].backendId, 1, 0, false});
  // 10.0.1.12 removed; its id goes to 10.0.1.13, which has an entry too.
  applyOk(config({service("web", "192.0.2.10", 80, {real("10.0.1.11")})}));
  applyOk(config({service("web", "192.0.2.10", 80, {real("10.0.1.11"), real("10.0.1.13")})}));
  ASSERT_EQ(reg_.service("web")->reals[1].backendId, id);
  dp_.setConn(flow(1002), ConnEntry{id, reg_.service("web")->reals[1].gen, 0, false});

  ConnQuery q;
  q.real = ip("10.0.1.12");
  ConnList l;
  ASSERT_TRUE(reg_.connList(q, &l).isOk());
  ASSERT_EQ(l.conns.size(), 1u);
  EXPECT_EQ(l.conns[0].key.sport, htons(1000));
  EXPECT_EQ(l.conns[0].view.real, ip("10.0.1.12"));
  EXPECT_EQ(l.conns[0].view.state, ConnState::kRemoved);
  q.real = ip("10.0.1.13");
  ASSERT_TRUE(reg_.connList(q, &l).isOk());
  ASSERT_EQ(l.conns.size(), 1u) << "the id's new owner has only its own entry";
  EXPECT_EQ(l.conns[0].key.sport, htons(1002));
  EXPECT_TRUE(l.conns[0].view.kept()) << l.conns[0].view.why;
  // Counted under the removed real, not as "no real".
  q = ConnQuery{};
  q.limit = 0;
  ASSERT_TRUE(reg_.connList(q, &l).isOk());
  std::map<std::string, std::pair<uint64_t, uint64_t>> counts;
  for (const ConnCount& n : l.counts) counts[n.real ? n.real->toString() : "-"] = {n.kept, n.notKept};
  EXPECT_EQ(counts, (std::map<std::string, std::pair<uint64_t, uint64_t>>{
                        {"10.0.1.11", {1, 0}}, {"10.0.1.12", {0, 1}}, {"10.0.1.13", {1, 0}}}));

  // kPastRealsPerId more owners of the id come and go: 10.0.1.12 is
  // forgotten, and its entry names no real (never a guess).
  for (size_t i = 0; i < kPastRealsPerId; ++i) {
    applyOk(config({service("web", "192.0.2.10", 80, {real("10.0.1.11")})}));
    applyOk(config({service("web", "192.0.2.10", 80, {real("10.0.1.11"), real("10.0.1.13")})}));
    ASSERT_EQ(reg_.service("web")->reals[1].backendId, id);
  }
  q = ConnQuery{};
  q.real = ip("10.0.1.12");
  ASSERT_TRUE(reg_.connList(q, &l).isOk());
  EXPECT_TRUE(l.conns.empty());
  std::optional<ConnView> v = reg_.connEntry("web", flow(1000));
  ASSERT_TRUE(v);
  EXPECT_FALSE(v->real);
  EXPECT_EQ(v->state, ConnState::kRemoved);
  EXPECT_NE(v->why.find("its real is no real of this service now"), std::string::npos) << v->why;
  // 10.0.1.13's first run (the entry of flow 1002) is among the remembered.
  v = reg_.connEntry("web", flow(1002));
  EXPECT_EQ(v->real, ip("10.0.1.13"));
  EXPECT_EQ(v->state, ConnState::kRemoved);
}

// A real adopted from a previous keeld's pins is not remembered once
// removed: its run of generations began before this keeld, so an entry of
// its id at an older generation may be an earlier owner's.
TEST_F(RegistryTest, AnAdoptedRealIsNotRememberedOnceRemoved) {
  applyOk(config({service("web", "192.0.2.10", 80, {real("10.0.1.11"), real("10.0.1.12")})}));
  const BackendId id = reg_.service("web")->reals[1].backendId;
  const uint32_t gen = reg_.service("web")->reals[1].gen;
  MockDataplane second{DataplaneLimits{8, 8, 100}};
  second.vips = dp_.vips;
  second.vipKeys = dp_.vipKeys;
  second.backends = dp_.backends;
  second.services = dp_.services;
  second.serviceKeys = dp_.serviceKeys;
  second.rings = dp_.rings;
  Registry adopted(second);
  const Config running = config({service("web", "192.0.2.10", 80, {real("10.0.1.11"), real("10.0.1.12")})});
  ASSERT_TRUE(adopted.adopt(dp_.programmed(), running).isOk());
  ASSERT_TRUE(adopted.apply(running).isOk());
  keel_flow_key k{};
  ip("198.51.100.1").toWords(k.src);
  ip("192.0.2.10").toWords(k.dst);
  k.sport = htons(1000);
  k.dport = htons(80);
  k.proto = KEEL_PROTO_TCP;
  k.family = KEEL_AF_INET;
  second.setConn(k, ConnEntry{id, gen, 0, false});
  ASSERT_EQ(adopted.connEntry("web", k)->real, ip("10.0.1.12"));
  ASSERT_TRUE(adopted.apply(config({service("web", "192.0.2.10", 80, {real("10.0.1.11")})})).isOk());
  std::optional<ConnView> v = adopted.connEntry("web", k);
  ASSERT_TRUE(v);
  EXPECT_FALSE(v->real) << v->real->toString();
  EXPECT_EQ(v->state, ConnState::kRemoved);
}

// conn.list in two steps (ConnListJob): what the job judges entries by is
// copied when it is prepared, so the registry may change before the walk
// (keeld walks on another thread) without the walk reading it: entries are
// judged as the registry was then, and the registry's state since is
// another job's.
TEST_F(RegistryTest, PreparedConnListJudgesByTheRegistryAsItWasThen) {
  applyOk(config({service("web", "192.0.2.10", 80, {real("10.0.1.11"), real("10.0.1.12")}),
                  service("dns", "192.0.2.53", 53, {real("10.0.2.1")})}));
  const BackendId removed = reg_.service("web")->reals[1].backendId;
  const uint8_t udp = reg_.service("dns")->protocol;
  auto flow = [](const char* vip, uint16_t dport, uint8_t proto) {
    keel_flow_key k{};
    ip("198.51.100.1").toWords(k.src);
    ip(vip).toWords(k.dst);
    k.sport = htons(1000);
    k.dport = htons(dport);
    k.proto = proto;
    k.family = KEEL_AF_INET;
    return k;
  };
  dp_.setConn(flow("192.0.2.10", 80, KEEL_PROTO_TCP), ConnEntry{removed, 1, 0, false});
  dp_.setConn(flow("192.0.2.53", 53, udp), ConnEntry{reg_.service("dns")->reals[0].backendId, 1, 0, false});

  std::optional<ConnListJob> job;
  ASSERT_TRUE(reg_.prepareConnList(ConnQuery{}, &job).isOk());
  ASSERT_TRUE(job);
  // Now 10.0.1.12 and the service dns go, before the walk.
  applyOk(config({service("web", "192.0.2.10", 80, {real("10.0.1.11")})}));

  auto states = [](const ConnList& l) {
    std::map<std::string, std::string> out;  // service -> real:state
    for (const ConnListed& c : l.conns)
      out[c.service] = (c.view.real ? c.view.real->toString() : "-") + ":" + connStateName(c.view.state);
    return out;
  };
  ConnList then;
  ASSERT_TRUE(job->run(&then).isOk());
  EXPECT_EQ(states(then), (std::map<std::string, std::string>{{"web", "10.0.1.12:kept"}, {"dns", "10.0.2.1:kept"}}));
  ConnList now;
  ASSERT_TRUE(reg_.connList(ConnQuery{}, &now).isOk());
  EXPECT_EQ(states(now), (std::map<std::string, std::string>{{"web", "10.0.1.12:removed"}, {"", "10.0.2.1:no_service"}}))
      << "removed reals (and a removed service's) still named";

  ConnQuery unknown;
  unknown.service = "nope";
  Status s = reg_.prepareConnList(unknown, &job);
  EXPECT_FALSE(s.isOk());
  EXPECT_NE(s.message().find("nope"), std::string::npos) << s.message();
  EXPECT_FALSE(job) << "no job for a refused query";
}

// Fail-open holds the last serving real when it fails (in the ring, VALID,
// flows kept) only while no other real serves: every change that makes one
// serve releases it, ring first, then a new generation.
TEST_F(RegistryTest, HeldRealIsReleasedWhenAnUndrainedRealServes) {
  applyOk(config({service("web", "192.0.2.10", 80, {real("10.0.1.11"), real("10.0.1.12", 0)})}));
  ASSERT_TRUE(reg_.setRealHealth("web", ip("10.0.1.11"), false).isOk());
  EXPECT_TRUE(reg_.service("web")->reals[0].held);
  EXPECT_EQ(ringMembers(0), (std::set<uint32_t>{0}));
  take();
  applyOk(config({service("web", "192.0.2.10", 80, {real("10.0.1.11"), real("10.0.1.12", 100)})}));
  EXPECT_EQ(take(), (Calls{"publishRing 0 [1]", "upsertBackend 0 10.0.1.11 gen=2 invalid"}));
  ServiceView v = *reg_.service("web");
  EXPECT_FALSE(v.reals[0].held);
  EXPECT_FALSE(v.reals[0].inRing);
  EXPECT_FALSE(v.reals[0].healthy);
}

TEST_F(RegistryTest, HeldRealIsReleasedWhenAnUncheckedRealIsAdded) {
  applyOk(config({service("web", "192.0.2.10", 80, {real("10.0.1.11")})}));
  ASSERT_TRUE(reg_.setRealHealth("web", ip("10.0.1.11"), false).isOk());
  take();
  // No check: it starts healthy, with no health transition to release the held one.
  applyOk(config({service("web", "192.0.2.10", 80, {real("10.0.1.11"), real("10.0.1.12")})}));
  EXPECT_EQ(take(), (Calls{"upsertBackend 1 10.0.1.12 gen=1 valid", "publishRing 0 [1]",
                           "upsertBackend 0 10.0.1.11 gen=2 invalid"}));
  EXPECT_FALSE(reg_.service("web")->reals[0].held);
}

TEST_F(RegistryTest, HeldRealStaysWhileTheAddedRealIsNotYetUp) {
  applyOk(config({service("web", "192.0.2.10", 80, {real("10.0.1.11")})}));
  ASSERT_TRUE(reg_.setRealHealth("web", ip("10.0.1.11"), false).isOk());
  take();
  RealConfig checked = real("10.0.1.12");
  checked.startHealthy = false;  // a checked real starts down until rise
  applyOk(config({service("web", "192.0.2.10", 80, {real("10.0.1.11"), checked})}));
  EXPECT_EQ(take(), (Calls{"upsertBackend 1 10.0.1.12 gen=1 invalid"}));
  EXPECT_EQ(ringMembers(0), (std::set<uint32_t>{0}));
  EXPECT_TRUE(reg_.service("web")->reals[0].held);
  ASSERT_TRUE(reg_.setRealHealth("web", ip("10.0.1.12"), true).isOk());
  EXPECT_EQ(take(), (Calls{"upsertBackend 1 10.0.1.12 gen=1 valid", "publishRing 0 [1]",
                           "upsertBackend 0 10.0.1.11 gen=2 invalid"}));
}

TEST_F(RegistryTest, HeldRealIsReleasedWhenThePolicyTurnsFailClosed) {
  applyOk(config({service("web", "192.0.2.10", 80, {real("10.0.1.11")})}));
  ASSERT_TRUE(reg_.setRealHealth("web", ip("10.0.1.11"), false).isOk());
  take();
  ServiceConfig closed = service("web", "192.0.2.10", 80, {real("10.0.1.11")});
  closed.healthFailOpen = false;
  applyOk(config({closed}));
  EXPECT_EQ(take(), (Calls{"publishRing 0 []", "upsertBackend 0 10.0.1.11 gen=2 invalid"}));
  EXPECT_FALSE(reg_.service("web")->reals[0].held);
}

TEST_F(RegistryTest, ADrainedRealComingUpKeepsTheHeldRealServing) {
  applyOk(config({service("web", "192.0.2.10", 80, {real("10.0.1.11"), real("10.0.1.12", 0)})}));
  ASSERT_TRUE(reg_.setRealHealth("web", ip("10.0.1.12"), false).isOk());  // drained, fails its check
  ASSERT_TRUE(reg_.setRealHealth("web", ip("10.0.1.11"), false).isOk());  // last serving: held
  take();
  ASSERT_TRUE(reg_.setRealHealth("web", ip("10.0.1.12"), true).isOk());  // drained, passes again
  // Weight 0 serves nothing: 10.0.1.11 stays held, VALID at its generation.
  // (10.0.1.12 went down drained, so kept: up at the generation it kept.)
  EXPECT_EQ(take(), (Calls{"upsertBackend 1 10.0.1.12 gen=1 valid"}));
  EXPECT_EQ(ringMembers(0), (std::set<uint32_t>{0}));
  EXPECT_TRUE(reg_.service("web")->reals[0].held);
  EXPECT_TRUE(dp_.backends[0].flags & KEEL_BE_F_VALID);
}

// health.established_on_down: keep (ServiceConfig::healthKeepEstablished).
ServiceConfig keeping(ServiceConfig s) {
  s.healthKeepEstablished = true;
  return s;
}

// In one call a service's ups go first: the last serving real going down
// while another comes up is not held by fail-open, and no all_reals_down is
// logged for a service that never stopped serving.
TEST_F(RegistryTest, AVerdictBatchAppliesUpsBeforeDowns) {
  applyOk(config({service("web", "192.0.2.10", 80, {real("10.0.1.11"), real("10.0.1.12")})}));
  ASSERT_TRUE(reg_.setRealHealth("web", ip("10.0.1.12"), false).isOk());
  take();
  LogCapture logs;
  using V = Registry::HealthVerdict;
  for (const Status& st : reg_.setRealsHealth({V{"web", ip("10.0.1.11"), false}, V{"web", ip("10.0.1.12"), true}}))
    EXPECT_TRUE(st.isOk()) << st.message();
  EXPECT_EQ(take(), (Calls{"upsertBackend 1 10.0.1.12 gen=2 valid", "publishRing 0 [1]",
                           "upsertBackend 0 10.0.1.11 gen=2 invalid"}));
  EXPECT_TRUE(logs.take("all_reals_down").empty());
  EXPECT_FALSE(reg_.service("web")->reals[0].held);
}

// A held real that another real's coming up releases is decided kept (under
// keep) when it is released, so a publish that fails right after leaves it
// to a rewrite that writes it kept (VALID), not invalid at its generation
// while the old ring still names it.
TEST_F(RegistryTest, AReleasedRealIsKeptEvenIfTheRingThatReleasesItFails) {
  applyOk(config({keeping(service("web", "192.0.2.10", 80, {real("10.0.1.11"), real("10.0.1.12")}))}));
  ASSERT_TRUE(reg_.setRealHealth("web", ip("10.0.1.12"), false).isOk());  // kept
  ASSERT_TRUE(reg_.setRealHealth("web", ip("10.0.1.11"), false).isOk());  // the last: held
  ASSERT_TRUE(reg_.service("web")->reals[0].held);
  dp_.failAfter = 2;  // 10.0.1.12's backend, then the ring that releases 10.0.1.11: fails
  EXPECT_FALSE(reg_.setRealHealth("web", ip("10.0.1.12"), true).isOk());
  applyOk(config({keeping(service("web", "192.0.2.10", 80, {real("10.0.1.11"), real("10.0.1.12")}))}));
  EXPECT_EQ(dp_.backends[0].flags, KEEL_BE_F_VALID | KEEL_BE_F_KEPT_DOWN);
  EXPECT_EQ(dp_.backends[0].gen, 1u);
  EXPECT_EQ(ringMembers(0), (std::set<uint32_t>{1}));
}

// keep: a real that goes down leaves the ring as a drained one does and
// stays VALID at its generation (marked down for a restarted keeld), so an
// entry written before still reaches it; up puts it back at that generation.
TEST_F(RegistryTest, KeepTakesADownRealOutOfTheRingButKeepsItsFlows) {
  LogCapture logs;
  const Config c = config({keeping(service("web", "192.0.2.10", 80, {real("10.0.1.11"), real("10.0.1.12")}))});
  applyOk(c);
  keel_flow_key k{};
  k.src[0] = 0x01020304;
  dp_.setConn(k, ConnEntry{1, 1, 1'000'000'000, false});  // 10.0.1.12's flow, written at gen 1
  take();
  ASSERT_TRUE(reg_.setRealHealth("web", ip("10.0.1.12"), false).isOk());
  EXPECT_EQ(take(), (Calls{"publishRing 0 [0]", "upsertBackend 1 10.0.1.12 gen=1 valid"}));
  EXPECT_TRUE(dp_.backends[1].flags & KEEL_BE_F_KEPT_DOWN);
  RealView v = reg_.service("web")->reals[1];
  EXPECT_FALSE(v.healthy);
  EXPECT_FALSE(v.inRing);
  EXPECT_TRUE(v.kept);
  EXPECT_TRUE(reg_.connEntry("web", k)->kept()) << reg_.connEntry("web", k)->why;
  const std::vector<std::string> down = logs.take("real_down");
  ASSERT_EQ(down.size(), 1u);
  EXPECT_NE(down[0].find("established=kept"), std::string::npos) << down[0];
  applyOk(c);  // a reload while it is down keeps it out, and kept
  EXPECT_TRUE(take().empty());
  ASSERT_TRUE(reg_.setRealHealth("web", ip("10.0.1.12"), true).isOk());
  EXPECT_EQ(take(), (Calls{"upsertBackend 1 10.0.1.12 gen=1 valid", "publishRing 0 [0,1]"}));
  EXPECT_FALSE(dp_.backends[1].flags & KEEL_BE_F_KEPT_DOWN);
  EXPECT_FALSE(reg_.service("web")->reals[1].kept);
  // The default, repick, is unchanged: a new generation, not VALID.
  applyOk(config({service("web", "192.0.2.10", 80, {real("10.0.1.11"), real("10.0.1.12")})}));
  ASSERT_TRUE(reg_.setRealHealth("web", ip("10.0.1.12"), false).isOk());
  EXPECT_EQ(take(), (Calls{"publishRing 0 [0]", "upsertBackend 1 10.0.1.12 gen=2 invalid"}));
  EXPECT_FALSE(reg_.connEntry("web", k)->kept());
}

// Fail-open and keep: the last real is held in the ring as ever; once
// another serves it leaves the ring kept (VALID, same generation), not
// invalidated. Fail-closed empties the ring, and the down real keeps its
// flows.
TEST_F(RegistryTest, KeepKeepsAReleasedHeldRealsFlowsAndFailClosedOnes) {
  applyOk(config({keeping(service("web", "192.0.2.10", 80, {real("10.0.1.11"), real("10.0.1.12", 0)}))}));
  ASSERT_TRUE(reg_.setRealHealth("web", ip("10.0.1.11"), false).isOk());
  EXPECT_TRUE(reg_.service("web")->reals[0].held);
  EXPECT_EQ(ringMembers(0), (std::set<uint32_t>{0}));
  take();
  applyOk(config({keeping(service("web", "192.0.2.10", 80, {real("10.0.1.11"), real("10.0.1.12", 100)}))}));
  EXPECT_EQ(take(), (Calls{"publishRing 0 [1]", "upsertBackend 0 10.0.1.11 gen=1 valid"}));
  RealView v = reg_.service("web")->reals[0];
  EXPECT_FALSE(v.held);
  EXPECT_TRUE(v.kept);
  EXPECT_TRUE(dp_.backends[0].flags & KEEL_BE_F_KEPT_DOWN);

  ServiceConfig closed = keeping(service("dns", "192.0.2.53", 53, {real("10.0.2.1")}));
  closed.healthFailOpen = false;
  applyOk(config({closed}));
  take();
  ASSERT_TRUE(reg_.setRealHealth("dns", ip("10.0.2.1"), false).isOk());
  const BackendId id = reg_.service("dns")->reals[0].backendId;
  const uint32_t gen = reg_.service("dns")->reals[0].gen;
  const ServiceId sid = reg_.service("dns")->id;
  EXPECT_EQ(take(), (Calls{"publishRing " + std::to_string(sid) + " []",
                           "upsertBackend " + std::to_string(id) + " 10.0.2.1 gen=" + std::to_string(gen) + " valid"}));
  EXPECT_TRUE(reg_.service("dns")->reals[0].kept);
}

// A drain, undrain or weight change while kept down only changes the weight
// it comes back with: no ring moves, the generation stays; a drained real
// that goes down is marked down and nothing else.
TEST_F(RegistryTest, DrainAndWeightChangesWhileKeptDownMoveNothing) {
  applyOk(config({keeping(service("web", "192.0.2.10", 80, {real("10.0.1.11"), real("10.0.1.12")}))}));
  ASSERT_TRUE(reg_.setRealHealth("web", ip("10.0.1.12"), false).isOk());
  take();
  applyOk(config({keeping(service("web", "192.0.2.10", 80, {real("10.0.1.11"), real("10.0.1.12", 0)}))}));
  applyOk(config({keeping(service("web", "192.0.2.10", 80, {real("10.0.1.11"), real("10.0.1.12", 50)}))}));
  EXPECT_TRUE(take().empty());
  EXPECT_TRUE(reg_.service("web")->reals[1].kept);
  ASSERT_TRUE(reg_.setRealHealth("web", ip("10.0.1.12"), true).isOk());
  EXPECT_EQ(take()[0], "upsertBackend 1 10.0.1.12 gen=1 valid");
  EXPECT_EQ(reg_.service("web")->reals[1].weight, 50u);
  EXPECT_EQ(ringMembers(0), (std::set<uint32_t>{0, 1}));

  applyOk(config({keeping(service("web", "192.0.2.10", 80, {real("10.0.1.11"), real("10.0.1.12", 0)}))}));
  take();
  ASSERT_TRUE(reg_.setRealHealth("web", ip("10.0.1.12"), false).isOk());
  EXPECT_EQ(take(), (Calls{"upsertBackend 1 10.0.1.12 gen=1 valid"}));
  EXPECT_TRUE(dp_.backends[1].flags & KEEL_BE_F_KEPT_DOWN);
}

// Under repick too, a drained real that goes down keeps its flows (the
// drain promised them their end; a graceful stop fails the check while it
// finishes them): out of the ring already, VALID at its generation, marked
// down. Undrained while still down, it is a down real of a repick service:
// invalidated once the ring is live. Drained again while down and
// invalidated, its flows stay moved.
TEST_F(RegistryTest, ADrainedRealThatGoesDownKeepsItsFlowsUnderRepick) {
  LogCapture logs;
  applyOk(config({service("web", "192.0.2.10", 80, {real("10.0.1.11"), real("10.0.1.12", 0)})}));
  keel_flow_key k{};
  k.src[0] = 0x01020304;
  dp_.setConn(k, ConnEntry{1, 1, 1'000'000'000, false});  // 10.0.1.12's flow, written at gen 1
  take();
  ASSERT_TRUE(reg_.setRealHealth("web", ip("10.0.1.12"), false).isOk());
  EXPECT_EQ(take(), (Calls{"upsertBackend 1 10.0.1.12 gen=1 valid"}));
  EXPECT_TRUE(dp_.backends[1].flags & KEEL_BE_F_KEPT_DOWN);
  EXPECT_TRUE(reg_.service("web")->reals[1].kept);
  EXPECT_TRUE(reg_.connEntry("web", k)->kept()) << reg_.connEntry("web", k)->why;
  std::vector<std::string> down = logs.take("real_down");
  ASSERT_EQ(down.size(), 1u);
  EXPECT_NE(down[0].find("established=kept"), std::string::npos) << down[0];
  applyOk(config({service("web", "192.0.2.10", 80, {real("10.0.1.11"), real("10.0.1.12", 0)})}));
  EXPECT_TRUE(take().empty());  // a reload keeps it so

  applyOk(config({service("web", "192.0.2.10", 80, {real("10.0.1.11"), real("10.0.1.12", 100)})}));
  EXPECT_EQ(take(), (Calls{"upsertBackend 1 10.0.1.12 gen=2 invalid"}));
  EXPECT_FALSE(reg_.service("web")->reals[1].kept);
  EXPECT_FALSE(reg_.connEntry("web", k)->kept());
  down = logs.take("real_down");
  ASSERT_EQ(down.size(), 1u);
  EXPECT_NE(down[0].find("established=repicked"), std::string::npos) << down[0];
  applyOk(config({service("web", "192.0.2.10", 80, {real("10.0.1.11"), real("10.0.1.12", 0)})}));
  EXPECT_TRUE(take().empty());
  EXPECT_FALSE(reg_.service("web")->reals[1].kept);
}

// No backend is VALID without a MAC: a kept l2dsr real whose MAC goes is
// invalidated, and one waiting for its MAC is never kept.
TEST_F(RegistryTest, AKeptL2dsrRealThatLosesItsMacIsInvalidated) {
  ServiceConfig s = keeping(service("web", "192.0.2.10", 80, {real("10.0.1.11"), real("10.0.1.12")}));
  s.forwarding = Forwarding::kL2dsr;
  s.reals[0].mac = MacAddress({2, 0, 0, 0, 1, 0x11});
  s.reals[1].mac = MacAddress({2, 0, 0, 0, 1, 0x12});
  applyOk(config({s}));
  ASSERT_TRUE(reg_.setRealHealth("web", ip("10.0.1.12"), false).isOk());
  EXPECT_TRUE(reg_.service("web")->reals[1].kept);
  take();
  s.reals[1].mac.reset();
  applyOk(config({s}));
  EXPECT_EQ(take(), (Calls{"upsertBackend 1 10.0.1.12 gen=2 invalid"}));
  EXPECT_FALSE(reg_.service("web")->reals[1].kept);
  EXPECT_FALSE(dp_.backends[1].flags & KEEL_BE_F_KEPT_DOWN);
  s.reals.push_back(real("10.0.1.13"));  // no MAC: added down, not VALID, not kept
  applyOk(config({s}));
  EXPECT_FALSE(dp_.backends[2].flags & KEEL_BE_F_VALID);
  EXPECT_FALSE(reg_.service("web")->reals[2].kept);
}

// A reload that turns the service to repick invalidates its kept reals (the
// ring has none of them: only the new generation); back to keep, a real
// already down stays invalidated, and comes up at that generation.
TEST_F(RegistryTest, SwitchingToRepickInvalidatesKeptRealsAndBackMovesNothing) {
  LogCapture logs;
  const ServiceConfig repick = service("web", "192.0.2.10", 80, {real("10.0.1.11"), real("10.0.1.12")});
  applyOk(config({keeping(repick)}));
  ASSERT_TRUE(reg_.setRealHealth("web", ip("10.0.1.12"), false).isOk());
  take();
  logs.take("real_down");
  applyOk(config({repick}));
  EXPECT_EQ(take(), (Calls{"upsertBackend 1 10.0.1.12 gen=2 invalid"}));
  EXPECT_FALSE(reg_.service("web")->reals[1].kept);
  const std::vector<std::string> down = logs.take("real_down");
  ASSERT_EQ(down.size(), 1u);
  EXPECT_NE(down[0].find("established_on_down: repick"), std::string::npos) << down[0];
  applyOk(config({keeping(repick)}));
  EXPECT_TRUE(take().empty());
  EXPECT_FALSE(dp_.backends[1].flags & KEEL_BE_F_VALID);
  ASSERT_TRUE(reg_.setRealHealth("web", ip("10.0.1.12"), true).isOk());
  EXPECT_EQ(take(), (Calls{"upsertBackend 1 10.0.1.12 gen=2 valid", "publishRing 0 [0,1]"}));
}

// Removing a kept real, or its service, invalidates it as ever.
TEST_F(RegistryTest, RemovingAKeptRealOrItsServiceInvalidatesIt) {
  applyOk(config({keeping(service("web", "192.0.2.10", 80, {real("10.0.1.11"), real("10.0.1.12")}))}));
  ASSERT_TRUE(reg_.setRealHealth("web", ip("10.0.1.12"), false).isOk());
  applyOk(config({keeping(service("web", "192.0.2.10", 80, {real("10.0.1.11")}))}));
  EXPECT_FALSE(dp_.backends[1].flags & KEEL_BE_F_VALID);
  EXPECT_EQ(dp_.backends[1].gen, 2u);
  ASSERT_TRUE(reg_.setRealHealth("web", ip("10.0.1.11"), false).isOk());  // held (fail-open)
  applyOk(config({keeping(service("web", "192.0.2.10", 80, {real("10.0.1.11"), real("10.0.1.13")}))}));
  EXPECT_TRUE(reg_.service("web")->reals[0].kept);  // released by the new real: kept
  applyOk(config({}));
  EXPECT_FALSE(dp_.backends[0].flags & KEEL_BE_F_VALID);
  EXPECT_EQ(dp_.backends[0].gen, 2u);
}

TEST_F(RegistryTest, DataplaneFailureIsReportedWithServiceName) {
  dp_.failAfter = 3;  // addVip, backend, ring <- fails
  Status s = reg_.apply(config({service("web", "192.0.2.10", 80, {real("10.0.1.11")})}));
  EXPECT_FALSE(s.isOk());
  EXPECT_NE(s.message().find("service web: publish ring: injected failure"), std::string::npos)
      << s.message();
}

// The entries where two forwarding() results differ, for a readable failure.
std::string differences(const std::map<std::string, std::string>& got,
                        const std::map<std::string, std::string>& want) {
  std::string out;
  for (const auto& [k, v] : got)
    if (!want.count(k) || want.at(k) != v) out += "\n  got  " + k + " " + v;
  for (const auto& [k, v] : want)
    if (!got.count(k) || got.at(k) != v) out += "\n  want " + k + " " + v;
  return out;
}

// What a data plane forwards, in addresses rather than ids: each VIP, and
// each service key with its flags and its ring as the addresses of the
// backends its slots name ("-" for a slot whose backend is not VALID or
// belongs to another service), so planes programmed with different ids
// compare equal when they forward alike.
std::map<std::string, std::string> forwarding(const MockDataplane& dp) {
  std::map<std::string, std::string> out;
  std::set<uint32_t> named;  // backend ids some ring names
  for (const std::string& v : dp.vips) out["vip " + v] = "";
  for (const auto& [key, value] : dp.services) {
    std::string ring = "flags=" + std::to_string(value.flags) + ":";
    for (const std::optional<IpAddress>& target : dp.ringTargets(value.id))
      ring += " " + (target ? target->toString() : "-");
    if (auto r = dp.rings.find(value.id); r != dp.rings.end()) named.insert(r->second.begin(), r->second.end());
    out["service " + key] = ring;
  }
  // A VALID backend no ring names forwards nothing today but would take
  // the flows of any conntrack entry that names it: list those too, and
  // every VALID backend's MAC (l2dsr rewrites to it).
  for (const auto& [id, b] : dp.backends) {
    if (!(b.flags & KEEL_BE_F_VALID)) continue;
    const std::string a = test::addressFromWords(b.addr, b.family).toString();
    out[(named.count(id) ? "backend " : "stray backend ") + a] = MacAddress(std::to_array(b.mac)).toString();
  }
  return out;
}

// A data-plane error midway through a change leaves part of it programmed.
// Applying the running config again (keeld does) must converge the data
// plane to exactly what that config forwards, whichever call failed; and
// no id may leak: afterwards a config that needs every backend id fits.
TEST(RegistryFailure, ApplyingTheRunningConfigAfterAFailedApplyRestoresIt) {
  auto dsr = [](std::vector<RealConfig> reals) {
    ServiceConfig s = service("dsr", "192.0.2.20", 80, std::move(reals));
    s.forwarding = Forwarding::kL2dsr;
    return s;
  };
  auto withMac = [](RealConfig r, uint8_t last) {
    r.mac = MacAddress({0x02, 0, 0, 0, 0x05, last});
    return r;
  };
  const Config before = config({service("web", "192.0.2.10", 80, {real("10.0.1.11"), real("10.0.1.12"), real("10.0.1.13")}),
                                service("dns", "192.0.2.53", 53, {real("10.0.2.1"), real("10.0.2.2")}),
                                service("old", "192.0.2.99", 80, {real("10.0.9.1")}),
                                dsr({withMac(real("10.0.5.2"), 2)})});
  ServiceConfig web = service("web", "192.0.2.10", 80, {real("10.0.1.11", 300), real("10.0.1.13"), real("10.0.1.14")});
  // dsr: a new real listed (and ordered) first, and a changed MAC.
  const Config after = config({web, service("dns", "192.0.2.53", 5353, {real("10.0.2.1")}),  // key change
                               service("new", "192.0.2.77", 80, {real("10.0.7.1"), real("10.0.7.2")}),
                               dsr({withMac(real("10.0.5.1"), 1), withMac(real("10.0.5.2"), 9)})});
  std::vector<ServiceConfig> all;  // 4 services, 12 reals: every id of the plane below
  for (size_t i = 0; i < kPastRealsPerId; ++i) {
    const std::string n = std::to_string(i);
    all.push_back(service(("full" + n).c_str(), ("192.0.2." + std::to_string(200 + i)).c_str(), 80,
                          {real(("10.1." + n + ".1").c_str()), real(("10.1." + n + ".2").c_str()),
                           real(("10.1." + n + ".3").c_str())}));
  }
  const Config full = config(all);
  const DataplaneLimits limits{4, 12, 100};
  auto clean = [&](const Config& c) {
    MockDataplane dp(limits);
    Registry reg(dp);
    EXPECT_TRUE(reg.apply(c).isOk());
    return forwarding(dp);
  };
  const auto wantBefore = clean(before), wantAfter = clean(after), wantFull = clean(full);
  // The change fails at call n (a write that took effect, or not); then the
  // restore itself fails at call m (or not at all, m = 0); then a restore
  // with no failure must converge.
  int failures = 0;
  for (int n = 1; n < 400; ++n) {
    bool changeFailed = false;
    for (int m = 0; m < 200; ++m) {
      MockDataplane dp(limits);
      dp.failedCallsLand = n % 2;
      Registry reg(dp);
      ASSERT_TRUE(reg.apply(before).isOk());
      dp.failAfter = (n + 1) / 2;
      if (reg.apply(after).isOk()) break;  // past the change's last call
      changeFailed = true;
      dp.failAfter = m;
      if (m > 0 && reg.apply(before).isOk()) break;  // past the restore's last call
      const std::string at = "change failed at call " + std::to_string((n + 1) / 2) +
                             (n % 2 ? " (landed)" : " (not landed)") + ", restore at " + std::to_string(m);
      dp.failAfter = 0;
      Status s = reg.apply(before);
      ASSERT_TRUE(s.isOk()) << at << ": " << s.message();
      EXPECT_EQ(differences(forwarding(dp), wantBefore), "") << at;
      s = reg.apply(after);
      ASSERT_TRUE(s.isOk()) << at << ": " << s.message();
      EXPECT_EQ(differences(forwarding(dp), wantAfter), "") << at;
      s = reg.apply(full);
      ASSERT_TRUE(s.isOk()) << at << ": " << s.message();
      EXPECT_EQ(differences(forwarding(dp), wantFull), "") << at;
      ++failures;
    }
    if (!changeFailed) break;
  }
  EXPECT_GT(failures, 500);  // every call of the change failed both ways, each with failed restores
}

// A health transition the data plane fails midway is settled by the next
// apply, even of an unchanged config: the service is rewritten whole.
TEST_F(RegistryTest, AHealthChangeTheDataPlaneFailedIsSettledByTheNextApply) {
  const Config c = config({service("web", "192.0.2.10", 80, {real("10.0.1.11"), real("10.0.1.12")})});
  applyOk(c);
  dp_.failedCallsLand = false;
  dp_.failAfter = 1;  // the ring without 10.0.1.12 is not published
  EXPECT_FALSE(reg_.setRealHealth("web", ip("10.0.1.12"), false).isOk());
  EXPECT_EQ(ringMembers(0), (std::set<uint32_t>{0, 1}));
  applyOk(c);
  EXPECT_EQ(ringMembers(0), (std::set<uint32_t>{0}));
  EXPECT_FALSE(dp_.backends[1].flags & KEEL_BE_F_VALID);
}

// The same under keep: the apply that settles it leaves the real kept
// (VALID at its generation), not !VALID.
TEST_F(RegistryTest, AKeptDownTheDataPlaneFailedIsSettledKept) {
  const Config c = config({keeping(service("web", "192.0.2.10", 80, {real("10.0.1.11"), real("10.0.1.12")}))});
  applyOk(c);
  dp_.failedCallsLand = false;
  dp_.failAfter = 1;  // the ring without 10.0.1.12 is not published
  EXPECT_FALSE(reg_.setRealHealth("web", ip("10.0.1.12"), false).isOk());
  applyOk(c);
  EXPECT_EQ(ringMembers(0), (std::set<uint32_t>{0}));
  EXPECT_TRUE(dp_.backends[1].flags & KEEL_BE_F_VALID);
  EXPECT_TRUE(dp_.backends[1].flags & KEEL_BE_F_KEPT_DOWN);
  EXPECT_EQ(dp_.backends[1].gen, 1u);
}

TEST_F(RegistryTest, StatsAreMappedToServicesAndReals) {
  applyOk(config({service("web", "192.0.2.10", 80, {real("10.0.1.11"), real("10.0.1.12")}),
                  service("dns", "192.0.2.53", 53, {real("10.0.2.1")})}));
  dp_.stats.services = {{10, 1000}, {3, 300}};
  dp_.stats.backends = {{4, 400}, {6, 600}, {3, 300}};
  dp_.stats.reasons[KEEL_R_TX_IPIP] = {13, 1300};
  RegistryStats st = reg_.readStats();
  ASSERT_EQ(st.services.size(), 2u);
  EXPECT_EQ(st.services[0].name, "dns");  // sorted by name
  EXPECT_EQ(st.services[0].counters.packets, 3u);
  EXPECT_EQ(st.services[0].reals[0].counters.bytes, 300u);
  EXPECT_EQ(st.services[1].name, "web");
  EXPECT_EQ(st.services[1].counters.packets, 10u);
  EXPECT_EQ(st.services[1].reals[1].address.toString(), "10.0.1.12");
  EXPECT_EQ(st.services[1].reals[1].counters.packets, 6u);
  EXPECT_EQ(st.global.reasons[KEEL_R_TX_IPIP].packets, 13u);
  EXPECT_EQ(st.global.dataplane, "mock");  // the plane names itself (Dataplane::kind)
  // Only the ids handed out are read (2 services, 3 backends), not every id
  // the limits allow (1024 and 16384 here).
  EXPECT_EQ(dp_.lastReadBounds, (std::pair<uint32_t, uint32_t>{2, 3}));
  ASSERT_GT(dp_.limits().maxBackends, 3u);
}

// A freed id's counters are zeroed after it stops being used, so whoever
// gets the id next starts at 0; ids still in use keep their counts.
TEST_F(RegistryTest, ReusedIdsStartWithZeroCounters) {
  applyOk(config({service("web", "192.0.2.10", 80, {real("10.0.1.11"), real("10.0.1.12")}),
                  service("dns", "192.0.2.53", 53, {real("10.0.2.1")})}));
  take();
  // Ids: web 0 (reals 0, 1), dns 1 (real 2).
  dp_.stats.services = {{10, 1000}, {3, 300}};
  dp_.stats.backends = {{4, 400}, {6, 600}, {3, 300}};
  // Remove a real (a reload diff): reset only after its invalidating write.
  applyOk(config({service("web", "192.0.2.10", 80, {real("10.0.1.11")}),
                  service("dns", "192.0.2.53", 53, {real("10.0.2.1")})}));
  EXPECT_EQ(take(), (Calls{"publishRing 0 [0]", "upsertBackend 1 10.0.1.12 gen=2 invalid",
                           "resetBackend 1"}));
  // Another real takes id 1 and starts at 0; the remaining reals keep theirs.
  applyOk(config({service("web", "192.0.2.10", 80, {real("10.0.1.11"), real("10.0.1.13")}),
                  service("dns", "192.0.2.53", 53, {real("10.0.2.1")})}));
  RegistryStats st = reg_.readStats();
  ASSERT_EQ(st.services.size(), 2u);
  const ServiceStats& web = st.services[1];
  ASSERT_EQ(web.reals.size(), 2u);
  EXPECT_EQ(web.reals[1].address.toString(), "10.0.1.13");
  EXPECT_EQ(web.reals[1].backendId, 1u);
  EXPECT_EQ(web.reals[1].counters.packets, 0u);
  EXPECT_EQ(web.reals[1].counters.bytes, 0u);
  EXPECT_EQ(web.reals[0].counters.packets, 4u);
  EXPECT_EQ(web.counters.packets, 10u);
  EXPECT_EQ(st.services[0].reals[0].counters.packets, 3u);

  // Remove a service: its id and its reals' ids are reset after it is
  // unhooked and its backends invalidated; a new service reusing them starts at 0.
  take();
  applyOk(config({service("web", "192.0.2.10", 80, {real("10.0.1.11"), real("10.0.1.13")})}));
  EXPECT_EQ(take(), (Calls{"removeService 192.0.2.53:53/6", "publishRing 1 []",
                           "upsertBackend 2 10.0.2.1 gen=2 invalid", "resetBackend 2",
                           "resetService 1", "removeVip 192.0.2.53"}));
  applyOk(config({service("web", "192.0.2.10", 80, {real("10.0.1.11"), real("10.0.1.13")}),
                  service("ntp", "192.0.2.123", 123, {real("10.0.3.1")})}));
  st = reg_.readStats();
  ASSERT_EQ(st.services[0].name, "ntp");
  EXPECT_EQ(st.services[0].id, 1u);
  EXPECT_EQ(st.services[0].counters.packets, 0u);
  EXPECT_EQ(st.services[0].reals[0].backendId, 2u);
  EXPECT_EQ(st.services[0].reals[0].counters.packets, 0u);
  EXPECT_EQ(st.services[1].counters.packets, 10u);
  EXPECT_EQ(st.services[1].reals[0].counters.packets, 4u);
}

// Dataplane::resetCounters checks the id against limits() for every plane
// (the mock included) before the plane's own zeroCounters runs.
TEST(DataplaneResetCounters, AnIdAtItsLimitIsAnErrorAndReachesNoPlane) {
  MockDataplane dp(DataplaneLimits{4, 8, 100});
  dp.stats.services.assign(4, keel_counter{1, 10});
  dp.stats.backends.assign(8, keel_counter{2, 20});
  Status s = dp.resetCounters(CounterKind::kService, 4);
  EXPECT_FALSE(s);
  EXPECT_EQ(s.message(), "mock: reset counters: service id 4 >= limits.max_services 4");
  s = dp.resetCounters(CounterKind::kBackend, 8);
  EXPECT_EQ(s.message(), "mock: reset counters: backend id 8 >= limits.max_reals 8");
  EXPECT_TRUE(dp.calls.empty()) << "zeroCounters ran for an id out of range";
  ASSERT_TRUE(dp.resetCounters(CounterKind::kService, 3));
  ASSERT_TRUE(dp.resetCounters(CounterKind::kBackend, 7));
  EXPECT_EQ(dp.calls, (Calls{"resetService 3", "resetBackend 7"}));
  EXPECT_EQ(dp.stats.services[3].packets, 0u);
  EXPECT_EQ(dp.stats.backends[7].packets, 0u);
  EXPECT_EQ(dp.stats.backends[6].packets, 2u);
}

// The IPv6 MTU check as a pure function: where 1280 plus the outer header
// stops fitting, for each outer family, and what it leaves alone.
TEST(Ipv6MtuShortfalls, NamesIpipServicesWithIpv6VipsWhose1280PlusOuterHeaderExceedsTheMtu) {
  ServiceConfig v6 = service("v6", "2001:db8::10", 443, {real("2001:db8:1::11")});
  ServiceConfig sixIn4 = service("6in4", "2001:db8::20", 443, {real("10.0.1.11")});
  ServiceConfig mixed = service("mixed", "2001:db8::30", 443, {real("10.0.1.11"), real("2001:db8:1::12")});
  ServiceConfig dsr = service("dsr", "2001:db8::40", 443, {real("2001:db8:1::11")});
  dsr.forwarding = Forwarding::kL2dsr;
  ServiceConfig v4 = service("v4", "192.0.2.10", 443, {real("2001:db8:1::11")});
  ServiceConfig empty = service("empty", "2001:db8::50", 443, {});
  const std::vector<ServiceConfig> all{v6, sixIn4, mixed, dsr, v4, empty};

  auto names = [&](uint32_t mtu) {
    std::vector<std::string> out;
    for (const Ipv6MtuShortfall& f : ipv6MtuShortfalls(all, mtu)) out.push_back(f.service);
    return out;
  };
  EXPECT_EQ(names(1500), std::vector<std::string>{});
  EXPECT_EQ(names(1320), std::vector<std::string>{});
  EXPECT_EQ(names(1319), (std::vector<std::string>{"v6", "mixed"}));
  EXPECT_EQ(names(1300), (std::vector<std::string>{"v6", "mixed"}));
  EXPECT_EQ(names(1299), (std::vector<std::string>{"v6", "6in4", "mixed"}));

  const std::vector<Ipv6MtuShortfall> f = ipv6MtuShortfalls(all, 1299);
  ASSERT_EQ(f.size(), 3u);
  EXPECT_EQ(f[0].vip, ip("2001:db8::10"));
  EXPECT_EQ(f[0].mtu, 1299u);
  EXPECT_EQ(f[0].outerHeader, 40u);
  EXPECT_EQ(f[0].needed, 1320u);
  EXPECT_EQ(f[1].outerHeader, 20u);
  EXPECT_EQ(f[1].needed, 1300u);
  EXPECT_EQ(f[2].needed, 1320u);  // one IPv6 real is enough for the 40-byte header
}

TEST_F(RegistryTest, WarnsOnceWhenThePortMtuIsTooSmallForIpv6ClientsAndStillApplies) {
  LogCapture log;
  ServiceConfig dsr = service("dsr", "2001:db8::40", 443, {real("2001:db8:1::11")});
  dsr.forwarding = Forwarding::kL2dsr;
  dsr.reals[0].mac = MacAddress({2, 0, 0, 0, 1, 0x11});
  const Config c = config({service("web6", "2001:db8::10", 443, {real("2001:db8:1::11")}),
                           service("web6in4", "2001:db8::20", 443, {real("10.0.1.11")}), dsr,
                           service("web4", "192.0.2.10", 443, {real("2001:db8:1::12")})});
  dp_.mtu = 1300;
  applyOk(c);
  std::vector<std::string> w = log.take("mtu_too_small_for_ipv6");
  ASSERT_EQ(w.size(), 1u);
  EXPECT_EQ(w[0].rfind("warning event=mtu_too_small_for_ipv6 service=web6 vip=2001:db8::10 mtu=1300 "
                       "needed=1320 outer_header=40 detail=",
                       0),
            0u)
      << w[0];
  EXPECT_NE(w[0].find("over 1260 bytes"), std::string::npos) << w[0];
  EXPECT_NE(w[0].find("raise the port MTU to 1320"), std::string::npos) << w[0];
  EXPECT_EQ(dp_.services.size(), 4u);  // a warning, not a refusal

  // A reload of the same situation says nothing new.
  applyOk(c);
  EXPECT_TRUE(log.take("mtu_too_small_for_ipv6").empty());

  // node.tunnel_mtu caps the port's: a path of 1310 past a port of 1500.
  dp_.mtu = 1500;
  Config capped = c;
  capped.node.tunnelMtu = 1310;
  applyOk(capped);
  w = log.take("mtu_too_small_for_ipv6");
  ASSERT_EQ(w.size(), 1u);
  EXPECT_NE(w[0].find("service=web6 vip=2001:db8::10 mtu=1310 needed=1320"), std::string::npos) << w[0];
  EXPECT_NE(w[0].find("raise node.tunnel_mtu (and the path it stands for) to 1320"), std::string::npos) << w[0];
  dp_.mtu = 1300;
  applyOk(c);
  log.take("mtu_too_small_for_ipv6");
  log.take("mtu_ok_for_ipv6");

  // The MTU lowered further: web6 again (its MTU changed), and now web6in4.
  dp_.mtu = 1299;
  applyOk(c);
  w = log.take("mtu_too_small_for_ipv6");
  ASSERT_EQ(w.size(), 2u);
  EXPECT_NE(w[0].find("service=web6 vip=2001:db8::10 mtu=1299 needed=1320"), std::string::npos) << w[0];
  EXPECT_NE(w[1].find("service=web6in4 vip=2001:db8::20 mtu=1299 needed=1300 outer_header=20"),
            std::string::npos)
      << w[1];

  // Raised to what IPv6 reals need: silent; lowered again: warned again.
  dp_.mtu = 1320;
  applyOk(c);
  EXPECT_TRUE(log.take("mtu_too_small_for_ipv6").empty());
  dp_.mtu = 1300;
  applyOk(c);
  EXPECT_EQ(log.take("mtu_too_small_for_ipv6").size(), 1u);
}

// Between applies (keeld calls checkMtu() every few seconds): an MTU the
// operator changed is noticed, a shortfall that is gone is said once, and
// the service's view shows what the last check found.
TEST_F(RegistryTest, CheckMtuNoticesAChangeBetweenAppliesAndSaysWhenItIsFixed) {
  LogCapture log;
  ServiceConfig web6 = service("web6", "2001:db8::10", 443, {real("2001:db8:1::11")});
  applyOk(config({web6, service("web4", "192.0.2.10", 443, {real("10.0.1.11")})}));
  EXPECT_TRUE(log.take("mtu_too_small_for_ipv6").empty());
  EXPECT_FALSE(reg_.service("web6")->ipv6Mtu);

  dp_.mtu = 1300;  // lowered under keeld: nothing applied since
  reg_.checkMtu();
  ASSERT_EQ(log.take("mtu_too_small_for_ipv6").size(), 1u);
  EXPECT_EQ(reg_.service("web6")->ipv6Mtu, (MtuShortfall{1300, 1320}));
  EXPECT_FALSE(reg_.service("web4")->ipv6Mtu);
  reg_.checkMtu();
  EXPECT_TRUE(log.take("mtu_too_small_for_ipv6").empty()) << "the same shortfall is said once";

  dp_.mtu = 1500;
  reg_.checkMtu();
  std::vector<std::string> ok = log.take("mtu_ok_for_ipv6");
  ASSERT_EQ(ok.size(), 1u);
  EXPECT_EQ(ok[0].rfind("info event=mtu_ok_for_ipv6 service=web6 vip=2001:db8::10 mtu=1500 detail=", 0), 0u) << ok[0];
  EXPECT_FALSE(reg_.service("web6")->ipv6Mtu);
  reg_.checkMtu();
  EXPECT_TRUE(log.take("mtu_ok_for_ipv6").empty()) << "said once";

  // Fixed by a change of the service (l2dsr grows no packet): said too.
  dp_.mtu = 1300;
  reg_.checkMtu();
  ASSERT_EQ(log.take("mtu_too_small_for_ipv6").size(), 1u);
  ServiceConfig dsr = web6;
  dsr.forwarding = Forwarding::kL2dsr;
  dsr.reals[0].mac = MacAddress({2, 0, 0, 0, 1, 0x11});
  applyOk(config({dsr}));
  ok = log.take("mtu_ok_for_ipv6");
  ASSERT_EQ(ok.size(), 1u);
  EXPECT_NE(ok[0].find("service=web6 vip=2001:db8::10 detail="), std::string::npos) << ok[0];
  EXPECT_FALSE(reg_.service("web6")->ipv6Mtu);

  // The MTU unreadable: what was found stands while the service needs it,
  // and goes (said) once the service no longer does.
  applyOk(config({web6}));
  ASSERT_EQ(log.take("mtu_too_small_for_ipv6").size(), 1u);
  dp_.mtu = std::nullopt;
  reg_.checkMtu();
  EXPECT_TRUE(log.take("mtu_ok_for_ipv6").empty());
  EXPECT_EQ(reg_.service("web6")->ipv6Mtu, (MtuShortfall{1300, 1320}));
  applyOk(config({dsr, service("other6", "2001:db8::30", 443, {real("2001:db8:1::12")})}));  // still one to read for
  EXPECT_EQ(log.take("mtu_ok_for_ipv6").size(), 1u);
  EXPECT_FALSE(reg_.service("web6")->ipv6Mtu);
  EXPECT_TRUE(log.take("mtu_too_small_for_ipv6").empty()) << "nothing known of other6";
  dp_.mtu = 1300;

  // A service removed while short: nothing to say.
  applyOk(config({web6}));
  ASSERT_EQ(log.take("mtu_too_small_for_ipv6").size(), 1u);
  applyOk(config({service("web4", "192.0.2.10", 443, {real("10.0.1.11")})}));
  EXPECT_TRUE(log.take("mtu_ok_for_ipv6").empty());
}

// A reload says what it changed (docs/operations.md, "Reloads"): each
// changed key of a service it keeps, with the value before and after, and
// nothing for what stayed.
TEST_F(RegistryTest, AReloadLogsTheServiceKeysItChanges) {
  LogCapture log;
  ServiceConfig web = service("web", "192.0.2.10", 80, {real("10.0.1.11"), real("10.0.1.12")});
  applyOk(config({web, service("dns", "192.0.2.53", 53, {real("10.0.2.1")})}));
  EXPECT_TRUE(log.take("service_updated").empty()) << "added, not updated";
  ServiceConfig changed = web;
  changed.scheduler = Scheduler::kMaglevSrc;
  changed.ringSize = 17;
  applyOk(config({changed, service("dns", "192.0.2.53", 53, {real("10.0.2.1")})}));
  EXPECT_EQ(log.take("service_updated"),
            (std::vector<std::string>{"info event=service_updated service=web changed=scheduler,ring_size "
                                      "scheduler_from=maglev scheduler_to=maglev-src ring_size_from=13 "
                                      "ring_size_to=17"}));
  changed.forwarding = Forwarding::kL2dsr;
  changed.reals[0].mac = MacAddress({2, 0, 0, 0, 1, 0x11});
  changed.reals[1].mac = MacAddress({2, 0, 0, 0, 1, 0x12});
  applyOk(config({changed}));
  EXPECT_EQ(log.take("service_updated"),
            (std::vector<std::string>{"info event=service_updated service=web changed=forwarding "
                                      "forwarding_from=ipip forwarding_to=l2dsr"}));
  applyOk(config({changed}));
  EXPECT_TRUE(log.take("service_updated").empty()) << "the same file again changes nothing";
}

TEST_F(RegistryTest, AReloadLogsEachWeightItChanges) {
  LogCapture log;
  applyOk(config({service("web", "192.0.2.10", 80, {real("10.0.1.11"), real("10.0.1.12"), real("10.0.1.13")})}));
  applyOk(config({service("web", "192.0.2.10", 80,
                          {real("10.0.1.11"), real("10.0.1.12", 80), real("10.0.1.13", 0), real("10.0.1.14", 5)})}));
  EXPECT_EQ(log.take("real_weight_changed"),
            (std::vector<std::string>{
                "info event=real_weight_changed service=web real=10.0.1.12 from=100 to=80",
                "info event=real_weight_changed service=web real=10.0.1.13 from=100 to=0"}))
      << "a real added with its weight is real_added only";
  EXPECT_TRUE(log.take("service_updated").empty());
  // A real down (out of the ring) still has its weight changed, and says so.
  ASSERT_TRUE(reg_.setRealHealth("web", ip("10.0.1.12"), false).isOk());
  applyOk(config({service("web", "192.0.2.10", 80,
                          {real("10.0.1.11"), real("10.0.1.12", 60), real("10.0.1.13", 0), real("10.0.1.14", 5)})}));
  EXPECT_EQ(log.take("real_weight_changed"),
            (std::vector<std::string>{"info event=real_weight_changed service=web real=10.0.1.12 from=80 to=60"}));
}

HealthCheckSpec httpCheck() {
  HealthCheckSpec h;
  h.type = HealthCheckSpec::Type::Http;
  h.path = "/healthz";
  return h;
}

ServiceConfig checked(ServiceConfig s, const HealthCheckSpec& spec) {
  for (RealConfig& r : s.reals) r.healthSpec = spec;
  return s;
}

// A check change every real of the service shares is one record (the
// service's block changed); one real's own is that real's record.
TEST_F(RegistryTest, AReloadLogsTheHealthChecksItChanges) {
  LogCapture log;
  const ServiceConfig web = service("web", "192.0.2.10", 80, {real("10.0.1.11"), real("10.0.1.12")});
  applyOk(config({checked(web, httpCheck())}));
  HealthCheckSpec faster = httpCheck();
  faster.interval = std::chrono::milliseconds(400);
  faster.fall = 2;
  applyOk(config({checked(web, faster)}));
  EXPECT_EQ(log.take("health_check_changed"),
            (std::vector<std::string>{"info event=health_check_changed service=web reals=2 changed=interval,fall "
                                      "interval_from=1s interval_to=400ms fall_from=3 fall_to=2"}));
  ServiceConfig own = checked(web, faster);
  own.reals[1].healthSpec.path = "/ready";
  own.reals[1].healthSpec.port = 8080;
  applyOk(config({own}));
  EXPECT_EQ(log.take("health_check_changed"),
            (std::vector<std::string>{"info event=health_check_changed service=web real=10.0.1.12 changed=port,path "
                                      "port_from=\"\" port_to=8080 path_from=/healthz path_to=/ready"}));
  // Another type: its keys, from "" where the old type had none; the keys
  // only the old type used are not listed.
  HealthCheckSpec udp;
  udp.type = HealthCheckSpec::Type::Udp;
  udp.udpPayload = "ping me";
  applyOk(config({checked(web, udp)}));
  std::vector<std::string> changed = log.take("health_check_changed");
  ASSERT_EQ(changed.size(), 2u);
  EXPECT_EQ(changed[0], "info event=health_check_changed service=web real=10.0.1.11 changed=type,expect,payload,"
                        "require_reply,interval,fall type_from=http type_to=udp expect_from=200-399 expect_to=\"\" "
                        "payload_from=\"\" payload_to=\"ping me\" require_reply_from=\"\" require_reply_to=false "
                        "interval_from=400ms interval_to=1s fall_from=2 fall_to=3");
  EXPECT_NE(changed[1].find("real=10.0.1.12 changed=type,port,expect,"), std::string::npos) << changed[1];
  // The service's policy keys are the service's; none -> a check lists
  // what the check is.
  ServiceConfig closed = web;
  closed.healthFailOpen = false;
  closed.healthKeepEstablished = true;
  applyOk(config({closed}));
  log.take("health_check_changed");
  applyOk(config({checked(closed, httpCheck())}));
  changed = log.take("health_check_changed");
  ASSERT_EQ(changed.size(), 1u);
  EXPECT_EQ(changed[0], "info event=health_check_changed service=web reals=2 changed=type,path,expect,"
                        "interval,timeout,rise,fall type_from=none type_to=http path_from=\"\" path_to=/healthz "
                        "expect_from=\"\" expect_to=200-399 interval_from=\"\" interval_to=1s timeout_from=\"\" "
                        "timeout_to=1s rise_from=\"\" rise_to=2 fall_from=\"\" fall_to=3");
  applyOk(config({checked(web, httpCheck())}));
  EXPECT_EQ(log.take("health_check_changed"),
            (std::vector<std::string>{"info event=health_check_changed service=web changed=all_down,established_on_down "
                                      "all_down_from=fail-closed all_down_to=fail-open "
                                      "established_on_down_from=keep established_on_down_to=repick"}));
  applyOk(config({checked(web, httpCheck())}));
  EXPECT_TRUE(log.take("health_check_changed").empty());
}

TEST_F(RegistryTest, NoMtuWarningWhenThePlaneCannotTellItsMtu) {
  LogCapture log;
  dp_.mtu = std::nullopt;
  applyOk(config({service("web6", "2001:db8::10", 443, {real("2001:db8:1::11")})}));
  EXPECT_TRUE(log.take("mtu_too_small_for_ipv6").empty());
  EXPECT_EQ(dp_.services.size(), 1u);
}


// The registry keeps each published ring as what built it, not as its M
// slots (256 KiB a service at M = 65,537: 313 MB of keeld's RSS for 1,000
// services in the scale review); a lookup builds the ring again and finds
// the slot the plane holds.
TEST(RegistryMemory, APublishedRingIsNotKeptSlotBySlot) {
  // A plane that keeps nothing, so the heap measured is the registry's.
  NullDataplane plane({128, 1024, 1000}, std::nullopt);
  std::vector<ServiceConfig> services;
  for (int i = 0; i < 64; ++i) {
    const std::string vip = "192.0.2." + std::to_string(i + 1);
    ServiceConfig s = service("", vip.c_str(), 80, {real("10.0.1.1"), real("10.0.1.2"), real("10.0.1.3")});
    s.name = "svc" + std::to_string(i);
    s.ringSize = 65537;
    services.push_back(std::move(s));
  }
  // Blocks of 256 KiB come from mmap (hblkhd), smaller ones from the heap.
  auto inUse = [] {
    const struct mallinfo2 m = mallinfo2();
    return m.uordblks + m.hblkhd;
  };
  const size_t before = inUse();
  {
    Registry reg(plane);
    ASSERT_TRUE(reg.apply(config(services)).isOk());
    const size_t after = inUse();
    const size_t ringBytes = 64u * 65537u * 4u;  // 16.8 MB: what keeping the slots took
    EXPECT_LT(after - before, ringBytes / 8) << "the registry holds " << after - before << " bytes";
    // The lookup's slot: the plane's ring, built again.
    MockDataplane dp;
    Registry same(dp);
    ASSERT_TRUE(same.apply(config({services[5]})).isOk());
    const std::vector<std::optional<IpAddress>> targets = dp.ringTargets(0);
    ASSERT_EQ(targets.size(), 65537u);
    for (uint32_t slot : {0u, 1u, 4242u, 65536u})
      EXPECT_EQ(same.ringSlotReal("svc5", slot), targets[slot]) << "slot " << slot;
    EXPECT_EQ(same.ringSlotReal("svc5", 65537), std::nullopt);
    EXPECT_EQ(reg.ringSlotReal("svc5", 4242), targets[4242]);
  }
}

}  // namespace
}  // namespace keel

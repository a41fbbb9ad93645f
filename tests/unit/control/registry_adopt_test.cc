// SPDX-License-Identifier: Apache-2.0
// Registry::adopt: a restarted keeld rebuilds the id assignment of the one
// before it from what the data plane holds (the pinned maps), so every
// conntrack entry (backend id + generation) still names the same real.
// Each test runs a "first keeld" registry on a mock, then a second registry
// over a copy of that mock's state, as keeld does after kill -9.
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <utility>

#include "control/registry.h"
#include "mock_dataplane.h"
#include "registry_builders.h"

namespace keel {
namespace {

using test::MockDataplane;
using Calls = std::vector<std::string>;

using test::config;
using test::ip;
using test::real;
using test::service;

// (service, real) -> (backend id, generation), as a conntrack entry sees it.
std::map<std::pair<std::string, std::string>, std::pair<BackendId, uint32_t>> identities(const Registry& r) {
  std::map<std::pair<std::string, std::string>, std::pair<BackendId, uint32_t>> out;
  for (const ServiceView& v : r.services())
    for (const RealView& rv : v.reals) out[{v.name, rv.address.toString()}] = {rv.backendId, rv.gen};
  return out;
}

bool sameBytes(const std::map<BackendId, keel_backend>& a, const std::map<BackendId, keel_backend>& b) {
  if (a.size() != b.size()) return false;
  for (const auto& [id, x] : a) {
    auto it = b.find(id);
    if (it == b.end() || std::memcmp(&x, &it->second, sizeof x) != 0) return false;
  }
  return true;
}

class RegistryAdoptTest : public ::testing::Test {
 protected:
  static constexpr DataplaneLimits kLimits{8, 16, 100};
  MockDataplane first_{kLimits};
  Registry firstReg_{first_};
  MockDataplane second_{kLimits};
  std::unique_ptr<Registry> secondReg_;

  // The first keeld's history: ids and generations that a fresh start
  // would not reproduce (a removed real, a re-added one, a freed service id).
  void runFirstKeeld() {
    ASSERT_TRUE(firstReg_.apply(config({service("old", "192.0.2.99", 80, {real("10.0.9.1")}),
                                        service("web", "192.0.2.10", 80,
                                                {real("10.0.1.11"), real("10.0.1.12"), real("10.0.1.13")}),
                                        service("dns", "192.0.2.53", 53, {real("10.0.2.1")})}))
                    .isOk());
    ASSERT_TRUE(firstReg_.apply(config({service("web", "192.0.2.10", 80, {real("10.0.1.12"), real("10.0.1.13")}),
                                        service("dns", "192.0.2.53", 53, {real("10.0.2.1")})}))
                    .isOk());
    ASSERT_TRUE(firstReg_.apply(config({service("web", "192.0.2.10", 80,
                                                {real("10.0.1.11"), real("10.0.1.12"), real("10.0.1.13")}),
                                        service("dns", "192.0.2.53", 53, {real("10.0.2.1")})}))
                    .isOk());
  }

  // kill -9 and restart: a new registry over the state the maps kept.
  Status restart(const Config& c) {
    second_.vips = first_.vips;
    second_.vipKeys = first_.vipKeys;
    second_.backends = first_.backends;
    second_.services = first_.services;
    second_.serviceKeys = first_.serviceKeys;
    second_.rings = first_.rings;
    second_.calls.clear();
    secondReg_ = std::make_unique<Registry>(second_);
    if (Status s = secondReg_->adopt(first_.programmed(), c); !s) return s;
    return secondReg_->apply(c);
  }
};

const Config kRunning = config({service("web", "192.0.2.10", 80,
                                        {real("10.0.1.11"), real("10.0.1.12"), real("10.0.1.13")}),
                                service("dns", "192.0.2.53", 53, {real("10.0.2.1")})});

TEST_F(RegistryAdoptTest, SameConfigKeepsEveryIdAndGenerationAndEveryMapByte) {
  runFirstKeeld();
  const auto before = identities(firstReg_);
  // A fresh registry would not give web's 10.0.1.11 this id or generation.
  ASSERT_NE(before.at({"web", "10.0.1.11"}), std::make_pair(BackendId{0}, uint32_t{1}));
  Status s = restart(kRunning);
  ASSERT_TRUE(s.isOk()) << s.message();
  EXPECT_EQ(identities(*secondReg_), before);
  EXPECT_TRUE(sameBytes(second_.backends, first_.backends));
  EXPECT_EQ(second_.vips, first_.vips);
  EXPECT_EQ(second_.rings, first_.rings);  // rewritten, but the same table
  for (const auto& [k, v] : first_.services) {
    ASSERT_TRUE(second_.services.count(k)) << k;
    EXPECT_EQ(second_.services[k].id, v.id);
    EXPECT_EQ(second_.services[k].flags, v.flags);
  }
  // No generation moved and nothing was removed, invalidated or had its
  // counters reset (adopted ids keep counting where the last keeld left off).
  for (const std::string& c : second_.calls) {
    EXPECT_EQ(c.find("invalid"), std::string::npos) << c;
    EXPECT_EQ(c.find("remove"), std::string::npos) << c;
    EXPECT_EQ(c.find("reset"), std::string::npos) << c;
  }
  // And the registry works on from there like the first one would.
  ASSERT_TRUE(secondReg_->apply(kRunning).isOk());
  second_.calls.clear();
  ASSERT_TRUE(secondReg_->apply(kRunning).isOk());
  EXPECT_TRUE(second_.calls.empty());
}

// Adopted ids continue their counters; free ids that still hold counts
// (left by an older keeld that never reset them) are reset, so the next
// owner starts at 0.
TEST_F(RegistryAdoptTest, AdoptedIdsKeepCountersAndFreeIdsAreReset) {
  runFirstKeeld();
  // The first keeld freed service id 0 ("old") and backend id 1 (its first
  // 10.0.1.11; the re-added one got the freed id 0).
  second_.stats.services = {{7, 70}, {5, 50}, {3, 30}};
  second_.stats.backends = {{1, 10}, {9, 90}, {2, 20}, {3, 30}, {4, 40}};
  Status s = restart(kRunning);
  ASSERT_TRUE(s.isOk()) << s.message();
  Calls resets;
  for (const std::string& c : second_.calls)
    if (c.rfind("reset", 0) == 0) resets.push_back(c);
  EXPECT_EQ(resets, (Calls{"resetService 0", "resetBackend 1"}));
  // It needed the counters only: it never asked for a connection-table count.
  EXPECT_EQ(second_.connTableCalls, 0);
  RegistryStats st = secondReg_->readStats();
  ASSERT_EQ(st.services.size(), 2u);
  EXPECT_EQ(st.services[0].name, "dns");
  EXPECT_EQ(st.services[0].counters.packets, 3u);
  EXPECT_EQ(st.services[0].reals[0].counters.packets, 4u);
  EXPECT_EQ(st.services[1].counters.packets, 5u);
  std::vector<uint64_t> webReals;
  for (const RealStats& r : st.services[1].reals) webReals.push_back(r.counters.packets);
  EXPECT_EQ(webReals, (std::vector<uint64_t>{1, 2, 3}));  // 10.0.1.11 is id 0
  EXPECT_EQ(second_.stats.services[0].packets, 0u);
  EXPECT_EQ(second_.stats.backends[1].packets, 0u);
}

TEST_F(RegistryAdoptTest, ReorderedConfigWithANewServiceFirstKeepsOldIds) {
  runFirstKeeld();
  const auto before = identities(firstReg_);
  // A new service listed first would take ids 0.. on a fresh start.
  Config next = config({service("api", "192.0.2.20", 443, {real("10.0.3.1"), real("10.0.3.2")}),
                        service("dns", "192.0.2.53", 53, {real("10.0.2.1")}),
                        service("web", "192.0.2.10", 80,
                                {real("10.0.1.13"), real("10.0.1.12"), real("10.0.1.11")})});
  Status s = restart(next);
  ASSERT_TRUE(s.isOk()) << s.message();
  auto after = identities(*secondReg_);
  for (const auto& [key, id] : before) EXPECT_EQ(after.at(key), id) << key.first << " " << key.second;
  // The new reals got free ids, each at a generation past any its id had.
  for (const char* a : {"10.0.3.1", "10.0.3.2"}) {
    auto [id, gen] = after.at({"api", a});
    for (const auto& [key, old] : before) EXPECT_NE(old.first, id);
    EXPECT_GT(gen, first_.backends.count(id) ? first_.backends.at(id).gen : 0u);
  }
}

TEST_F(RegistryAdoptTest, DrainedRealLeavesTheRingButKeepsItsGeneration) {
  runFirstKeeld();
  const auto before = identities(firstReg_);
  Status s = restart(config({service("web", "192.0.2.10", 80,
                                     {real("10.0.1.11", 0), real("10.0.1.12"), real("10.0.1.13")}),
                             service("dns", "192.0.2.53", 53, {real("10.0.2.1")})}));
  ASSERT_TRUE(s.isOk()) << s.message();
  auto [id, gen] = before.at({"web", "10.0.1.11"});
  EXPECT_EQ(second_.backends[id].gen, gen);
  EXPECT_TRUE(second_.backends[id].flags & KEEL_BE_F_VALID);
  const auto& ring = second_.rings[second_.services["192.0.2.10:80/6"].id];
  EXPECT_EQ(std::count(ring.begin(), ring.end(), id), 0);
}

TEST_F(RegistryAdoptTest, WhatTheConfigDroppedIsRemovedByTheOrderingRules) {
  runFirstKeeld();
  const auto before = identities(firstReg_);
  auto [dnsId, dnsGen] = before.at({"dns", "10.0.2.1"});
  auto [goneId, goneGen] = before.at({"web", "10.0.1.13"});
  const uint32_t webSvc = first_.services["192.0.2.10:80/6"].id;
  const uint32_t dnsSvc = first_.services["192.0.2.53:53/6"].id;
  Status s = restart(config({service("web", "192.0.2.10", 80, {real("10.0.1.11"), real("10.0.1.12")})}));
  ASSERT_TRUE(s.isOk()) << s.message();
  const Calls& c = second_.calls;
  auto at = [&](const std::string& call) {
    return std::find(c.begin(), c.end(), call) - c.begin();
  };
  // dns: unhooked, emptied, invalidated at gen+1, its VIP withdrawn last.
  const std::string dnsDead = "upsertBackend " + std::to_string(dnsId) + " 10.0.2.1 gen=" +
                              std::to_string(dnsGen + 1) + " invalid";
  ASSERT_LT(at("removeService 192.0.2.53:53/6"), at("publishRing " + std::to_string(dnsSvc) + " []"));
  ASSERT_LT(at("publishRing " + std::to_string(dnsSvc) + " []"), at(dnsDead));
  ASSERT_LT(at(dnsDead), at("removeVip 192.0.2.53"));
  ASSERT_LT(at("removeVip 192.0.2.53"), static_cast<long>(c.size()));
  // web's dropped real: a ring without it first, then the new generation.
  const std::string goneDead = "upsertBackend " + std::to_string(goneId) + " 10.0.1.13 gen=" +
                               std::to_string(goneGen + 1) + " invalid";
  auto ringWithout = std::find_if(c.begin(), c.end(), [&](const std::string& x) {
    return x.rfind("publishRing " + std::to_string(webSvc) + " [", 0) == 0;
  });
  ASSERT_NE(ringWithout, c.end());
  EXPECT_EQ(ringWithout->find(std::to_string(goneId) + "]"), std::string::npos) << *ringWithout;
  EXPECT_LT(ringWithout - c.begin(), at(goneDead));
  ASSERT_LT(at(goneDead), static_cast<long>(c.size()));
  EXPECT_EQ(second_.services.count("192.0.2.53:53/6"), 0u);
  EXPECT_EQ(secondReg_->serviceCount(), 1u);
}

// A real removed before the restart leaves its slot as no service's
// (KEEL_SERVICE_NONE), so a config that has it again while no keeld ran
// adds it (real_added, a fresh generation past the old one), rather than
// adoption taking the released slot for the real and saying nothing.
TEST_F(RegistryAdoptTest, ARealRemovedBeforeTheRestartIsAddedBackNotAdopted) {
  ASSERT_TRUE(firstReg_.apply(config({service("web", "192.0.2.10", 80, {real("10.0.1.11"), real("10.0.1.12")})}))
                  .isOk());
  const auto [oldId, oldGen] = identities(firstReg_).at({"web", "10.0.1.11"});
  ASSERT_TRUE(firstReg_.apply(config({service("web", "192.0.2.10", 80, {real("10.0.1.12")})})).isOk());
  EXPECT_EQ(first_.backends[oldId].service_id, KEEL_SERVICE_NONE);
  EXPECT_FALSE(first_.backends[oldId].flags & KEEL_BE_F_VALID);
  const Config again = config({service("web", "192.0.2.10", 80, {real("10.0.1.11"), real("10.0.1.12")})});
  second_.backends = first_.backends;
  second_.services = first_.services;
  second_.serviceKeys = first_.serviceKeys;
  second_.vips = first_.vips;
  second_.vipKeys = first_.vipKeys;
  second_.rings = first_.rings;
  secondReg_ = std::make_unique<Registry>(second_);
  ASSERT_TRUE(secondReg_->adopt(first_.programmed(), again).isOk());
  ConfigChanges changes;
  ASSERT_TRUE(secondReg_->apply(again, &changes).isOk());
  std::vector<std::string> what;
  for (const ConfigChange& c : changes) what.push_back(changeJson(c).dump());
  EXPECT_EQ(what, std::vector<std::string>{R"({"change":"real_added","real":"10.0.1.11","service":"web"})"});
  const auto [id, gen] = identities(*secondReg_).at({"web", "10.0.1.11"});
  if (id == oldId) {
    EXPECT_GT(gen, oldGen) << "a reused id moves past its old generation";
  }
}

// An l2dsr real dropped from the config while no keeld ran is still in
// the pinned ring, so adoption keeps it (VALID) until apply() publishes a
// ring without it and invalidates it; the first apply rewrites it VALID
// meanwhile. Every such write carries the MAC it forwarded to: a zero MAC
// sent its flows, and the new ones its slots took, to 00:00:00:00:00:00.
TEST_F(RegistryAdoptTest, AnL2dsrRealTheConfigDroppedKeepsItsMacUntilInvalidated) {
  ServiceConfig dsr = service("dsr", "192.0.2.20", 80, {real("10.0.3.1"), real("10.0.3.2")});
  dsr.forwarding = Forwarding::kL2dsr;
  dsr.reals[0].mac = MacAddress::parse("02:00:00:00:03:01");
  dsr.reals[1].mac = MacAddress::parse("02:00:00:00:03:02");
  ASSERT_TRUE(firstReg_.apply(config({dsr})).isOk());
  const BackendId gone = identities(firstReg_).at({"dsr", "10.0.3.2"}).first;
  ServiceConfig next = dsr;
  next.reals.pop_back();
  ASSERT_TRUE(restart(config({next})).isOk());
  size_t validWrites = 0;  // apply() writes every real again first, this one too
  for (const auto& [id, b] : second_.backendWrites) {
    if (id != gone || !(b.flags & KEEL_BE_F_VALID)) continue;
    ++validWrites;
    EXPECT_EQ(MacAddress(std::array<uint8_t, 6>{b.mac[0], b.mac[1], b.mac[2], b.mac[3], b.mac[4], b.mac[5]}),
              *dsr.reals[1].mac);
  }
  EXPECT_GT(validWrites, 0u) << "nothing checked: no VALID write of the dropped real";
  EXPECT_FALSE(second_.backends.at(gone).flags & KEEL_BE_F_VALID);  // invalidated in the end
}

// A keeld killed inside a service's removal, after its service entry went
// and before its backends were invalidated, leaves them VALID with no
// service to own them. Adoption invalidates them at a new generation:
// otherwise the next service to get that service id (the same VIP added
// back) would send the old flows its connection table still holds to reals
// it does not have.
TEST_F(RegistryAdoptTest, BackendsOfAServiceRemovedHalfwayAreInvalidated) {
  ASSERT_TRUE(firstReg_.apply(kRunning).isOk());
  const auto before = identities(firstReg_);
  const uint32_t webSvc = first_.services.at("192.0.2.10:80/6").id;
  const Config dnsOnly = config({service("dns", "192.0.2.53", 53, {real("10.0.2.1")})});
  first_.calls.clear();
  first_.failAfter = 1;  // the removal's first call lands, then keeld dies
  ASSERT_FALSE(firstReg_.apply(dnsOnly).isOk());
  ASSERT_EQ(first_.calls, (Calls{"removeService 192.0.2.10:80/6"}));
  for (const char* r : {"10.0.1.11", "10.0.1.12", "10.0.1.13"})
    ASSERT_TRUE(first_.backends.at(before.at({"web", r}).first).flags & KEEL_BE_F_VALID) << r;

  Status s = restart(dnsOnly);
  ASSERT_TRUE(s.isOk()) << s.message();
  for (const char* r : {"10.0.1.11", "10.0.1.12", "10.0.1.13"}) {
    const auto [id, gen] = before.at({"web", r});
    EXPECT_EQ(second_.backends.at(id).flags & KEEL_BE_F_VALID, 0) << r;
    EXPECT_EQ(second_.backends.at(id).gen, gen + 1) << r;
  }
  // web back on its VIP with another real: it gets the old service id, and
  // no VALID backend of that id is one of the old reals.
  ASSERT_TRUE(secondReg_
                  ->apply(config({service("dns", "192.0.2.53", 53, {real("10.0.2.1")}),
                                  service("web", "192.0.2.10", 80, {real("10.0.1.99")})}))
                  .isOk());
  ASSERT_EQ(second_.services.at("192.0.2.10:80/6").id, webSvc);
  for (const auto& [id, b] : second_.backends) {
    if ((b.flags & KEEL_BE_F_VALID) && b.service_id == webSvc) {
      EXPECT_EQ(test::addressFromWords(b.addr, b.family).toString(), "10.0.1.99") << "backend " << id;
    }
  }
}

TEST_F(RegistryAdoptTest, ServiceWhoseKeyChangedIsReplacedAndUnusedVipWithdrawn) {
  runFirstKeeld();
  // "web" moves to port 8080: the pinned :80 service is another service now.
  Status s = restart(config({service("web", "192.0.2.10", 8080, {real("10.0.1.11")}),
                             service("dns", "192.0.2.53", 53, {real("10.0.2.1")})}));
  ASSERT_TRUE(s.isOk()) << s.message();
  EXPECT_EQ(second_.services.count("192.0.2.10:80/6"), 0u);
  EXPECT_EQ(second_.services.count("192.0.2.10:8080/6"), 1u);
  EXPECT_EQ(second_.vips.count("192.0.2.10"), 1u);  // still used by :8080
  EXPECT_EQ(secondReg_->serviceCount(), 2u);
  // An old VIP left with no service (first_ withdrew 192.0.2.99 already).
  EXPECT_EQ(second_.vips.count("192.0.2.99"), 0u);
}

TEST_F(RegistryAdoptTest, HealthComesFromTheValidFlag) {
  runFirstKeeld();
  ASSERT_TRUE(firstReg_.setRealHealth("web", ip("10.0.1.12"), false).isOk());
  const auto before = identities(firstReg_);
  Status s = restart(kRunning);
  ASSERT_TRUE(s.isOk()) << s.message();
  EXPECT_EQ(identities(*secondReg_), before);
  for (const ServiceView& v : secondReg_->services())
    for (const RealView& r : v.reals)
      EXPECT_EQ(r.healthy, r.address != ip("10.0.1.12")) << r.address.toString();
  auto [id, gen] = before.at({"web", "10.0.1.12"});
  EXPECT_FALSE(second_.backends[id].flags & KEEL_BE_F_VALID);
  // Coming back up keeps the generation the down moved it to.
  ASSERT_TRUE(secondReg_->setRealHealth("web", ip("10.0.1.12"), true).isOk());
  EXPECT_EQ(second_.backends[id].gen, gen);
  EXPECT_TRUE(second_.backends[id].flags & KEEL_BE_F_VALID);
}

// A real kept down (established_on_down: keep) is VALID at its generation
// but out of the ring. VALID alone would adopt it up and put it back into
// the ring before any check passed: the KEEL_BE_F_KEPT_DOWN mark keeps it
// down, its flows kept, until it comes up (same generation).
TEST_F(RegistryAdoptTest, AKeptDownRealIsAdoptedDownWithItsFlows) {
  runFirstKeeld();
  Config keep = kRunning;
  keep.services[0].healthKeepEstablished = true;  // web
  ASSERT_TRUE(firstReg_.apply(keep).isOk());
  ASSERT_TRUE(firstReg_.setRealHealth("web", ip("10.0.1.12"), false).isOk());
  const auto before = identities(firstReg_);
  auto [id, gen] = before.at({"web", "10.0.1.12"});
  Status s = restart(keep);
  ASSERT_TRUE(s.isOk()) << s.message();
  EXPECT_EQ(identities(*secondReg_), before);
  EXPECT_EQ(second_.rings, first_.rings) << "the kept real went back into the ring";
  const RealView r = secondReg_->service("web")->reals[1];
  ASSERT_EQ(r.address, ip("10.0.1.12"));
  EXPECT_FALSE(r.healthy);
  EXPECT_TRUE(r.kept);
  EXPECT_FALSE(r.inRing);
  EXPECT_TRUE(second_.backends[id].flags & KEEL_BE_F_VALID);
  EXPECT_TRUE(second_.backends[id].flags & KEEL_BE_F_KEPT_DOWN);
  for (const std::string& c : second_.calls) EXPECT_EQ(c.find("invalid"), std::string::npos) << c;
  ASSERT_TRUE(secondReg_->setRealHealth("web", ip("10.0.1.12"), true).isOk());
  EXPECT_EQ(second_.backends[id].gen, gen);
  EXPECT_FALSE(second_.backends[id].flags & KEEL_BE_F_KEPT_DOWN);
}

// A real held by fail-open (every real of its service down) is VALID and
// in the ring. VALID alone adopted it up: its check started up, `health
// show` said up, and a real of the service coming back left the dead one
// in the ring until its own checks failed. KEEL_BE_F_HELD adopts it down
// and held, so the first real that comes up releases it at once, as
// before the restart.
TEST_F(RegistryAdoptTest, ARealHeldByFailOpenIsAdoptedHeld) {
  const Config one = config({service("dns", "192.0.2.53", 53, {real("10.0.2.1"), real("10.0.2.2")})});
  ASSERT_TRUE(firstReg_.apply(one).isOk());
  ASSERT_TRUE(firstReg_.setRealHealth("dns", ip("10.0.2.1"), false).isOk());
  ASSERT_TRUE(firstReg_.setRealHealth("dns", ip("10.0.2.2"), false).isOk());  // the last: held
  const auto before = identities(firstReg_);
  auto [heldId, heldGen] = before.at({"dns", "10.0.2.2"});
  ASSERT_TRUE(first_.backends[heldId].flags & KEEL_BE_F_VALID);
  Status s = restart(one);
  ASSERT_TRUE(s.isOk()) << s.message();
  EXPECT_EQ(identities(*secondReg_), before);
  EXPECT_EQ(second_.rings, first_.rings) << "the held real left the ring at the restart";
  const RealView held = secondReg_->service("dns")->reals[1];
  ASSERT_EQ(held.address, ip("10.0.2.2"));
  EXPECT_FALSE(held.healthy);
  EXPECT_TRUE(held.held);
  EXPECT_TRUE(held.inRing);
  EXPECT_TRUE(second_.backends[heldId].flags & KEEL_BE_F_HELD);
  // The other real comes up: the holdover, really down, is released at once.
  ASSERT_TRUE(secondReg_->setRealHealth("dns", ip("10.0.2.1"), true).isOk());
  const RealView released = secondReg_->service("dns")->reals[1];
  EXPECT_FALSE(released.held);
  EXPECT_FALSE(released.inRing);
  EXPECT_FALSE(second_.backends[heldId].flags & KEEL_BE_F_VALID);
  EXPECT_EQ(second_.backends[heldId].gen, heldGen + 1);
}

// The restarted keeld's config says repick: the kept real is down and is
// invalidated (new generation), as a reload to repick does.
TEST_F(RegistryAdoptTest, AKeptDownRealIsInvalidatedWhenTheConfigNowSaysRepick) {
  runFirstKeeld();
  Config keep = kRunning;
  keep.services[0].healthKeepEstablished = true;
  ASSERT_TRUE(firstReg_.apply(keep).isOk());
  ASSERT_TRUE(firstReg_.setRealHealth("web", ip("10.0.1.12"), false).isOk());
  auto [id, gen] = identities(firstReg_).at({"web", "10.0.1.12"});
  Status s = restart(kRunning);
  ASSERT_TRUE(s.isOk()) << s.message();
  EXPECT_EQ(second_.rings, first_.rings);
  EXPECT_FALSE(second_.backends[id].flags & KEEL_BE_F_VALID);
  EXPECT_EQ(second_.backends[id].gen, gen + 1);
  EXPECT_FALSE(secondReg_->service("web")->reals[1].healthy);
}

TEST_F(RegistryAdoptTest, AdoptingTwiceOrAfterApplyIsRefused) {
  runFirstKeeld();
  ASSERT_TRUE(restart(kRunning).isOk());
  Status s = secondReg_->adopt(first_.programmed(), kRunning);
  EXPECT_FALSE(s.isOk());
  EXPECT_NE(s.message().find("already"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace keel

// SPDX-License-Identifier: Apache-2.0
// RingBatcher (src/dataplane/ring_batcher.h) in front of the recording mock:
// a batch's rings reach the plane in one publishRings(), and whatever order
// the held writes go out in, no state the plane passes through sends a
// packet where the caller's own order would not: the registry's (a walk
// of applies and health changes) or another's (direct call sequences).
#include "dataplane/ring_batcher.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "control/registry.h"
#include "mock_dataplane.h"
#include "registry_builders.h"

namespace keel {
namespace {

using test::config;
using test::ip;
using test::MockDataplane;
using test::real;
using test::service;

constexpr DataplaneLimits kLimits{16, 64, 1000};

size_t countPrefix(const std::vector<std::string>& calls, const std::string& prefix) {
  return static_cast<size_t>(std::count_if(calls.begin(), calls.end(), [&](const std::string& c) {
    return c.rfind(prefix, 0) == 0;
  }));
}

// What packets could meet in this state, as a list of faults: a service
// packets can look up whose VIP is not announced (Dataplane::addVip: the
// VIP first), or whose ring names a slot that is not a VALID backend of
// that service (dropped, or sent to another service's real), or, under
// l2dsr, a backend without a MAC (sent to 00:00:00:00:00:00). And when the
// last call zeroed an id's counters (resetCounters: only once no packet
// can use the id), a use of that id: a service id that an entry names or
// whose ring is not empty (packets past the entry's lookup still read it),
// a backend id that is VALID or that a ring names.
std::vector<std::string> faults(const MockDataplane& dp) {
  std::vector<std::string> out;
  if (!dp.calls.empty()) {
    const std::string& last = dp.calls.back();
    for (const auto& [prefix, isService] : {std::pair{"resetService ", true}, std::pair{"resetBackend ", false}}) {
      if (last.rfind(prefix, 0) != 0) continue;
      const uint32_t id = static_cast<uint32_t>(std::stoul(last.substr(std::string(prefix).size())));
      if (isService) {
        for (const auto& [key, value] : dp.services)
          if (value.id == id) out.push_back("counters of service " + std::to_string(id) + " zeroed while " + key +
                                            " names it");
        if (auto ring = dp.rings.find(id); ring != dp.rings.end() && !ring->second.empty())
          out.push_back("counters of service " + std::to_string(id) + " zeroed while its ring is not empty");
      } else {
        if (auto be = dp.backends.find(id); be != dp.backends.end() && (be->second.flags & KEEL_BE_F_VALID))
          out.push_back("counters of backend " + std::to_string(id) + " zeroed while it is VALID");
        for (const auto& [ringId, slots] : dp.rings)
          if (std::find(slots.begin(), slots.end(), id) != slots.end())
            out.push_back("counters of backend " + std::to_string(id) + " zeroed while ring " +
                          std::to_string(ringId) + " names it");
      }
    }
  }
  for (const auto& [key, value] : dp.services) {
    const keel_service_key& k = dp.serviceKeys.at(key);
    if (!dp.vips.count(test::addressFromWords(k.vip, k.family).toString()))
      out.push_back(key + ": its VIP is not announced");
    auto ring = dp.rings.find(value.id);
    if (ring == dp.rings.end()) {
      out.push_back(key + ": no ring");
      continue;
    }
    for (BackendId b : ring->second) {
      auto be = dp.backends.find(b);
      if (be == dp.backends.end() || !(be->second.flags & KEEL_BE_F_VALID) || be->second.service_id != value.id) {
        out.push_back(key + ": ring names backend " + std::to_string(b) + ", not a VALID one of service " +
                      std::to_string(value.id));
        break;
      }
      static constexpr std::array<uint8_t, 6> kZero{};
      if ((value.flags & KEEL_SVC_F_FWD_L2DSR) && std::equal(kZero.begin(), kZero.end(), be->second.mac)) {
        out.push_back(key + ": l2dsr to backend " + std::to_string(b) + " without a MAC");
        break;
      }
    }
  }
  return out;
}

// Each service's key, flags and ring as backend addresses: equal for two
// planes that forward alike.
std::map<std::string, std::string> forwarding(const MockDataplane& dp) {
  std::map<std::string, std::string> out;
  for (const auto& [key, value] : dp.services) {
    std::string ring = std::to_string(value.flags) + ":";
    for (const auto& t : dp.ringTargets(value.id)) ring += " " + (t ? t->toString() : "-");
    out[key] = ring;
  }
  return out;
}

ServiceConfig dsr(ServiceConfig s) {
  s.forwarding = Forwarding::kL2dsr;
  for (size_t i = 0; i < s.reals.size(); ++i)
    s.reals[i].mac = MacAddress({2, 0, 0, 0, static_cast<uint8_t>(s.port), static_cast<uint8_t>(i + 1)});
  return s;
}

// Configs that add, change, remove and re-add services (ids and backend
// ids reused by other services), and change forwarding both ways.
std::vector<Config> steps() {
  auto web = [](std::vector<RealConfig> r) { return service("web", "192.0.2.10", 80, std::move(r)); };
  auto dns = [](std::vector<RealConfig> r) { return service("dns", "192.0.2.53", 53, std::move(r)); };
  auto app = [](std::vector<RealConfig> r) { return service("app", "192.0.2.20", 443, std::move(r)); };
  return {
      config({web({real("10.0.1.1"), real("10.0.1.2"), real("10.0.1.3")}), dns({real("10.0.2.1"), real("10.0.2.2")})}),
      config({web({real("10.0.1.1", 50), real("10.0.1.3"), real("10.0.1.4")}), dns({real("10.0.2.2")}),
              app({real("10.0.3.1"), real("10.0.3.2")})}),
      config({dsr(web({real("10.0.1.1"), real("10.0.1.3")})), app({real("10.0.3.1"), real("10.0.3.3")})}),
      config({web({real("10.0.1.3"), real("10.0.1.5")}), dns({real("10.0.2.1"), real("10.0.2.3")}),
              dsr(app({real("10.0.3.1"), real("10.0.3.3"), real("10.0.3.4")}))}),
      config({dns({real("10.0.2.3")}), service("new", "192.0.2.30", 80, {real("10.0.4.1"), real("10.0.4.2")})}),
      config({}),
      config({web({real("10.0.1.1"), real("10.0.1.2")}), dsr(app({real("10.0.3.1")}))}),
  };
}

// Every real of the running config down, then up, in one setRealsHealth
// each (a switch failure and its repair).
void healthRoundTrip(Registry& reg, const Config& c, std::vector<std::string>* errors) {
  for (const bool healthy : {false, true}) {
    std::vector<Registry::HealthVerdict> verdicts;
    for (const ServiceConfig& s : c.services)
      for (const RealConfig& r : s.reals) verdicts.push_back({s.name, r.address, healthy});
    for (const Status& s : reg.setRealsHealth(verdicts))
      if (!s) errors->push_back(s.message());
  }
}

TEST(RingBatcher, AStartPublishesEveryRingInOneCall) {
  MockDataplane dp(kLimits);
  RingBatcher batcher(dp, {});
  Registry reg(batcher);
  ASSERT_TRUE(reg.apply(steps()[1]).isOk());
  EXPECT_EQ(countPrefix(dp.calls, "publishRing "), 0u);
  EXPECT_EQ(countPrefix(dp.calls, "publishRings "), 1u);
  // The rings before the services that name them, the backends before both.
  const auto at = [&](const std::string& prefix) {
    return std::find_if(dp.calls.begin(), dp.calls.end(), [&](const std::string& c) { return c.rfind(prefix, 0) == 0; });
  };
  EXPECT_EQ(*at("publishRings "), "publishRings 0,1,2");
  EXPECT_LT(at("publishRings "), at("upsertService "));
  EXPECT_LT(at("upsertBackend "), at("publishRings "));
  EXPECT_EQ(batcher.heldRings(), 0u);
  EXPECT_EQ(batcher.heldServices(), 0u);

  MockDataplane plain(kLimits);
  Registry direct(plain);
  ASSERT_TRUE(direct.apply(steps()[1]).isOk());
  EXPECT_EQ(forwarding(dp), forwarding(plain));
  EXPECT_EQ(dp.services.size(), 3u);
}

// Health verdicts of several services in one call: their rings go out
// together, going down (Registry::setRealsHealth invalidates the reals
// that left a ring only once every service's ring is written) and up.
TEST(RingBatcher, VerdictsAcrossServicesShareOnePublish) {
  MockDataplane dp(kLimits);
  RingBatcher batcher(dp, {});
  Registry reg(batcher);
  const Config running =
      config({service("web", "192.0.2.10", 80, {real("10.0.1.1"), real("10.0.1.2"), real("10.0.1.3")}),
              service("dns", "192.0.2.53", 53, {real("10.0.2.1"), real("10.0.2.2")}),
              service("app", "192.0.2.20", 443, {real("10.0.3.1"), real("10.0.3.2")})});
  ASSERT_TRUE(reg.apply(running).isOk());
  std::vector<Registry::HealthVerdict> down, up;
  for (const ServiceConfig& s : running.services) {
    down.push_back({s.name, s.reals[0].address, false});
    up.push_back({s.name, s.reals[0].address, true});
  }
  dp.calls.clear();
  for (const Status& s : reg.setRealsHealth(down)) ASSERT_TRUE(s.isOk()) << s.message();
  EXPECT_EQ(countPrefix(dp.calls, "publishRing "), 0u);
  EXPECT_EQ(countPrefix(dp.calls, "publishRings "), 1u);
  EXPECT_EQ(dp.calls.front(), "publishRings 2,1,0");  // services by name: app 2, dns 1, web 0
  EXPECT_EQ(countPrefix(dp.calls, "upsertBackend "), 3u);  // after it
  dp.calls.clear();
  for (const Status& s : reg.setRealsHealth(up)) ASSERT_TRUE(s.isOk()) << s.message();
  EXPECT_EQ(countPrefix(dp.calls, "publishRing "), 0u);
  EXPECT_EQ(countPrefix(dp.calls, "publishRings "), 1u);
  EXPECT_EQ(dp.calls.back(), "publishRings 2,1,0");
}

// A reload that takes a real out of every service (a server they share
// leaving): every ring goes out in one publish, before any of the reals is
// invalidated. With too few free ids for the reals it adds unless the
// removed ones are released first, it goes service by service instead, and
// still fits.
TEST(RingBatcher, ARealOutOfEveryServiceSharesOnePublishWhenTheIdsFit) {
  auto three = [](uint32_t extra) {
    std::vector<ServiceConfig> out;
    for (int i = 0; i < 3; ++i) {
      const std::string vip = "192.0.2." + std::to_string(10 + i);
      std::vector<RealConfig> reals{real("10.0.9.1"), real("10.0.9.2")};
      for (uint32_t k = 0; k < extra; ++k) reals.push_back(real(("10.0.8." + std::to_string(1 + k)).c_str()));
      ServiceConfig svc = service("", vip.c_str(), 80, std::move(reals));
      svc.name = "s" + std::to_string(i);
      out.push_back(std::move(svc));
    }
    return out;
  };
  for (const bool tight : {false, true}) {
    // 6 ids in use; tight: 8 in all, and the next config adds 3 (one a
    // service) while it frees 3.
    MockDataplane dp({16, tight ? 8u : 64u, 1000});
    RingBatcher batcher(dp, {});
    Registry reg(batcher);
    ASSERT_TRUE(reg.apply(config(three(0))).isOk());
    std::vector<ServiceConfig> next = three(tight ? 1 : 0);
    for (ServiceConfig& svc : next) svc.reals.erase(svc.reals.begin());  // 10.0.9.1 out of each
    dp.calls.clear();
    const Status s = reg.apply(config(next));
    ASSERT_TRUE(s.isOk()) << (tight ? "tight: " : "") << s.message();
    EXPECT_EQ(countPrefix(dp.calls, "publishRings "), tight ? 3u : 1u) << (tight ? "tight" : "roomy");
    EXPECT_EQ(countPrefix(dp.calls, "publishRing "), 0u);
  }
}

// A reload that removes several services: their empty rings go out in
// one publish, before any of their backends is invalidated.
TEST(RingBatcher, ServicesRemovedTogetherShareOnePublish) {
  MockDataplane dp(kLimits);
  RingBatcher batcher(dp, {});
  Registry reg(batcher);
  ASSERT_TRUE(reg.apply(steps()[1]).isOk());  // web, dns, app
  dp.calls.clear();
  ASSERT_TRUE(reg.apply(config({})).isOk());
  EXPECT_EQ(countPrefix(dp.calls, "publishRings "), 1u);
  EXPECT_EQ(countPrefix(dp.calls, "publishRing "), 0u);
  const auto first = [&](const std::string& prefix) {
    return std::find_if(dp.calls.begin(), dp.calls.end(), [&](const std::string& c) { return c.rfind(prefix, 0) == 0; });
  };
  EXPECT_LT(first("removeService "), first("publishRings "));
  EXPECT_LT(first("publishRings "), first("upsertBackend "));
  EXPECT_TRUE(dp.services.empty());
}

// How the walk below drives the plane.
enum class Drive {
  kDirect,   // the registry straight on the plane: the control
  kBatched,  // through a RingBatcher, as keeld on XDP
  // Through a RingBatcher, each step inside an outer batch, as
  // DaemonBackend::commit opens one around its apply: what the registry's
  // own batch held is on the plane when that batch ends, with the outer
  // one still open.
  kNested,
  // A keeld restarted over a plane the first step was written to by another
  // (Registry::adopt), its batcher built with the backends the plane holds.
  kAdopted,
};

const char* toString(Drive d) {
  switch (d) {
    case Drive::kDirect: return "direct";
    case Drive::kBatched: return "batched";
    case Drive::kNested: return "nested";
    case Drive::kAdopted: return "adopted";
  }
  return "?";
}

// The property: through every step (applies, removals that free ids reused
// by the next step, forwarding changes both ways, every real down and up),
// after every single change the plane makes, no service that packets can
// reach sends them to a slot that is not its own VALID backend, or l2dsr
// without a MAC, or has a VIP that is not announced, and no id's counters are
// zeroed while packets can use it (faults()); and after each step the
// plane forwards exactly as one driven without the batcher. The same walk
// without the batcher is the control: the registry's own order must pass
// it too.
TEST(RingBatcher, NoStateThePlanePassesThroughMisroutes) {
  for (const Drive drive : {Drive::kDirect, Drive::kBatched, Drive::kNested, Drive::kAdopted}) {
    SCOPED_TRACE(toString(drive));
    MockDataplane dp(kLimits);
    MockDataplane plain(kLimits);
    Registry direct(plain);
    std::vector<std::string> seen;
    dp.afterEach = [&] {
      for (std::string& f : faults(dp)) seen.push_back(dp.calls.back() + ": " + f);
    };
    std::vector<std::string> errors;
    if (drive == Drive::kAdopted) {  // the first keeld, killed after its first step
      Registry first(dp);
      ASSERT_TRUE(first.apply(steps()[0]).isOk());
    }
    const size_t unbatchedPublishes = countPrefix(dp.calls, "publishRing ");
    RingBatcher batcher(dp, drive == Drive::kAdopted ? dp.programmed().backends : std::vector<keel_backend>{});
    Registry reg(drive == Drive::kDirect ? static_cast<Dataplane&>(dp) : batcher);
    if (drive == Drive::kAdopted) {
      ASSERT_TRUE(reg.adopt(dp.programmed(), steps()[0]).isOk());
    }
    int step = 0;
    for (const Config& c : steps()) {
      ++step;
      std::optional<DataplaneBatch> outer;
      if (drive == Drive::kNested) outer.emplace(batcher);
      ASSERT_TRUE(reg.apply(c).isOk()) << "step " << step;
      ASSERT_TRUE(direct.apply(c).isOk());
      EXPECT_EQ(forwarding(dp), forwarding(plain)) << "step " << step;
      healthRoundTrip(reg, c, &errors);
      healthRoundTrip(direct, c, &errors);
      EXPECT_EQ(forwarding(dp), forwarding(plain)) << "step " << step << ", after down and up";
      if (outer) {
        EXPECT_TRUE(outer->finish().isOk());
      }
    }
    EXPECT_TRUE(errors.empty()) << errors.front();
    EXPECT_TRUE(seen.empty()) << seen.size() << " faults, first: " << seen.front();
    if (drive != Drive::kDirect) {
      // Every ring the batcher saw went out in a batch.
      EXPECT_EQ(countPrefix(dp.calls, "publishRing "), unbatchedPublishes);
      EXPECT_GT(countPrefix(dp.calls, "publishRings "), 0u);
    }
    EXPECT_GT(countPrefix(dp.calls, "resetService "), 0u);  // the walk frees ids, so the reset check ran
    EXPECT_GT(countPrefix(dp.calls, "resetBackend "), 0u);
  }
}

// A backend write waits only for what is held of its own service (old
// owner or new): another service's held ring stays held.
TEST(RingBatcher, ABackendWriteWaitsForItsOwnServiceOnly) {
  MockDataplane dp(kLimits);
  RingBatcher batcher(dp, {});
  keel_backend b0{};
  b0.service_id = 0;
  b0.flags = KEEL_BE_F_VALID;
  b0.family = KEEL_AF_INET;
  keel_backend b1 = b0;
  b1.service_id = 1;
  DataplaneBatch batch(batcher);
  ASSERT_TRUE(batcher.upsertBackend(0, b0).isOk());
  ASSERT_TRUE(batcher.upsertBackend(1, b1).isOk());
  ASSERT_TRUE(batcher.publishRing(0, {0, 0}).isOk());
  ASSERT_TRUE(batcher.publishRing(1, {1, 1}).isOk());
  EXPECT_EQ(batcher.heldRings(), 2u);
  // Service 1's backend 1 invalidated: ring 1 (which names it) goes first,
  // with ring 0 in the same publish.
  keel_backend gone = b1;
  gone.flags = 0;
  ASSERT_TRUE(batcher.upsertBackend(1, gone).isOk());
  EXPECT_EQ(batcher.heldRings(), 0u);
  ASSERT_GE(dp.calls.size(), 2u);
  EXPECT_EQ(dp.calls[dp.calls.size() - 2], "publishRings 0,1");
  // Now a ring of service 0 held, and a write of a backend owned by
  // neither held service: it goes out at once, the ring stays held.
  ASSERT_TRUE(batcher.publishRing(0, {0}).isOk());
  keel_backend b2 = b1;
  b2.service_id = 2;
  ASSERT_TRUE(batcher.upsertBackend(2, b2).isOk());
  EXPECT_EQ(batcher.heldRings(), 1u);
  EXPECT_EQ(dp.calls.back(), "upsertBackend 2 0.0.0.0 gen=0 valid");
}

// A held publish the plane refuses fails the change that made it (the
// apply, whose batch end sends it) and is dropped, not held: the registry
// rewrites what it changed on its next apply, and a later change is not
// blocked by it. No state on the way misroutes.
TEST(RingBatcher, ARefusedPublishFailsItsChangeAndIsNotHeld) {
  MockDataplane dp(kLimits);
  RingBatcher batcher(dp, {});
  Registry reg(batcher);
  MockDataplane plain(kLimits);
  Registry direct(plain);
  ASSERT_TRUE(reg.apply(steps()[0]).isOk());
  ASSERT_TRUE(direct.apply(steps()[0]).isOk());
  dp.afterEach = [&] { EXPECT_TRUE(faults(dp).empty()) << dp.calls.back() << ": " << faults(dp).front(); };
  // Weights only: the batch's end is the first write, its publishRings.
  Config weights = steps()[0];
  weights.services[0].reals[0].weight = 10;
  weights.services[1].reals[0].weight = 10;
  dp.failAfter = 1;
  dp.calls.clear();
  const Status s = reg.apply(weights);
  EXPECT_FALSE(s.isOk());
  EXPECT_EQ(s.message(), "injected failure");
  EXPECT_EQ(dp.calls, (std::vector<std::string>{"publishRings 0,1"}));
  EXPECT_EQ(batcher.heldRings(), 0u);
  // keeld applies the running config again: every service written whole.
  ASSERT_TRUE(reg.apply(steps()[0]).isOk());
  EXPECT_EQ(forwarding(dp), forwarding(plain));
  ASSERT_TRUE(reg.apply(weights).isOk());
  ASSERT_TRUE(direct.apply(weights).isOk());
  EXPECT_EQ(forwarding(dp), forwarding(plain));

  // A change whose real removal needs the held ring out first: the
  // refusal fails the removal's invalidation, which is not made.
  Config removed = weights;
  removed.services[0].reals.erase(removed.services[0].reals.begin());
  dp.failAfter = 1;
  dp.calls.clear();
  EXPECT_FALSE(reg.apply(removed).isOk());
  EXPECT_EQ(dp.calls.front(), "publishRings 0");
  EXPECT_EQ(countPrefix(dp.calls, "upsertBackend "), 0u);
  EXPECT_EQ(batcher.heldRings(), 0u);
  ASSERT_TRUE(reg.apply(weights).isOk());
  EXPECT_EQ(forwarding(dp), forwarding(plain));
}

// Health verdicts whose batch end is refused: each changed verdict fails
// (keeld then applies the running config), the services are rewritten by
// that apply, and the plane forwards as one that never failed.
TEST(RingBatcher, VerdictsWhoseWritesAreRefusedFailAndAreRewritten) {
  MockDataplane dp(kLimits);
  RingBatcher batcher(dp, {});
  Registry reg(batcher);
  MockDataplane plain(kLimits);
  Registry direct(plain);
  const Config running = steps()[0];
  ASSERT_TRUE(reg.apply(running).isOk());
  ASSERT_TRUE(direct.apply(running).isOk());
  std::vector<Registry::HealthVerdict> down;
  for (const ServiceConfig& s : running.services) down.push_back({s.name, s.reals[0].address, false});
  dp.afterEach = [&] { EXPECT_TRUE(faults(dp).empty()) << dp.calls.back() << ": " << faults(dp).front(); };
  dp.failAfter = 1;  // the publishRings the first invalidation sends first
  for (const Status& s : reg.setRealsHealth(down)) EXPECT_FALSE(s.isOk());
  for (const Status& s : direct.setRealsHealth(down)) ASSERT_TRUE(s.isOk());
  EXPECT_EQ(batcher.heldRings(), 0u);
  // The restore's rewrite writes the down reals only after the ring that
  // leaves them out: the failed ring may still name them.
  ASSERT_TRUE(reg.apply(running).isOk());  // as keeld does after a failed verdict
  EXPECT_EQ(forwarding(dp), forwarding(plain));
}

// Direct call sequences. The registry's order never needs some of the
// batcher's rules (the walk above passes without each of them): a backend
// write waiting for its new owner, a held service write going before its
// service's next ring, a counter reset sending what is held, the owners
// of an adopted plane's slots, a refused write's slot. A caller with
// another order does, and the batcher keeps any caller's per-service
// order: each rule is checked by a sequence that is sound called straight
// on the plane and that, without the rule, the batcher would send out in
// an order passing through a fault.

// Service i: VIP 192.0.2.(10 + i), port 80, tcp.
keel_service_key keyOf(int i) {
  keel_service_key k{};
  ip(("192.0.2." + std::to_string(10 + i)).c_str()).toWords(k.vip);
  k.port = htons(80);
  k.proto = KEEL_PROTO_TCP;
  k.family = KEEL_AF_INET;
  return k;
}

keel_vip_key vipOf(int i) {
  keel_vip_key v{};
  ip(("192.0.2." + std::to_string(10 + i)).c_str()).toWords(v.addr);
  v.family = KEEL_AF_INET;
  return v;
}

// Backend `id` (real 10.0.0.(id + 1)) of service `owner`, with a MAC
// 02:00:00:00:00:`mac` unless mac is 0.
keel_backend backend(BackendId id, ServiceId owner, bool valid, uint8_t mac = 0) {
  keel_backend b{};
  ip(("10.0.0." + std::to_string(id + 1)).c_str()).toWords(b.addr);
  b.service_id = owner;
  b.flags = valid ? KEEL_BE_F_VALID : 0;
  b.family = KEEL_AF_INET;
  if (mac) {
    b.mac[0] = 2;
    b.mac[5] = mac;
  }
  return b;
}

// `plane` takes the calls (the mock, or a RingBatcher in front of it);
// `mock` is the plane itself (to refuse a call).
using Sequence = std::function<void(Dataplane& plane, MockDataplane& mock)>;

struct Outcome {
  std::vector<std::string> faults;  // "call: fault", after every single change
  std::map<std::string, std::string> forwarding;  // at the end
};

// `setup`, then `calls`, on a fresh mock, straight or through a batcher.
// The setup goes through the batcher too (outside a batch, so passed on
// at once), unless `adopted`: then it is written to the plane straight,
// as by a keeld before this one, and the batcher is built with the
// backends the plane holds (ProgrammedState::backends).
Outcome drive(const Sequence& setup, const Sequence& calls, bool batched, bool adopted = false) {
  MockDataplane dp(kLimits);
  Outcome out;
  dp.afterEach = [&] {
    for (std::string& f : faults(dp)) out.faults.push_back(dp.calls.back() + ": " + f);
  };
  std::optional<RingBatcher> batcher;
  auto plane = [&]() -> Dataplane& { return batched ? static_cast<Dataplane&>(*batcher) : dp; };
  if (adopted) {
    setup(dp, dp);
    batcher.emplace(dp, dp.programmed().backends);
  } else {
    batcher.emplace(dp, std::vector<keel_backend>{});
    setup(plane(), dp);
  }
  calls(plane(), dp);
  out.forwarding = forwarding(dp);
  return out;
}

// The sequence is sound straight on the plane (the control), passes
// through no fault behind the batcher, and ends forwarding alike.
void expectSound(const Sequence& setup, const Sequence& calls, bool adopted = false) {
  const Outcome direct = drive(setup, calls, false, adopted);
  const Outcome batched = drive(setup, calls, true, adopted);
  EXPECT_TRUE(direct.faults.empty()) << "direct (the sequence itself): " << direct.faults.front();
  EXPECT_TRUE(batched.faults.empty()) << "batched: " << batched.faults.size() << " faults, first: "
                                      << batched.faults.front();
  EXPECT_EQ(batched.forwarding, direct.forwarding);
  EXPECT_FALSE(direct.forwarding.empty());  // the sequence leaves a service to compare
}

// Service `id` on its VIP with backends `ids` (each VALID, its MAC ending
// in 1 + its id) and a ring naming them.
void addService(Dataplane& plane, int id, const std::vector<BackendId>& ids, uint32_t flags = 0) {
  for (BackendId b : ids) ASSERT_TRUE(plane.upsertBackend(b, backend(b, id, true, uint8_t(1 + b))).isOk());
  ASSERT_TRUE(plane.publishRing(id, ids).isOk());
  ASSERT_TRUE(plane.addVip(vipOf(id)).isOk());
  ASSERT_TRUE(plane.upsertService(keyOf(id), {uint32_t(id), flags, {}}).isOk());
}

// A backend write first sends what is held of its new owner. Here the held
// write moves service 0's entry to service 1, and slot 0 then becomes
// service 1's: sent at once, slot 0 would be service 1's while the entry
// still names service 0, whose ring names slot 0.
TEST(RingBatcher, ABackendWriteFirstSendsWhatIsHeldOfItsNewOwner) {
  const Sequence setup = [](Dataplane& plane, MockDataplane&) {
    addService(plane, 0, {0});
    ASSERT_TRUE(plane.upsertBackend(1, backend(1, 1, true)).isOk());  // service 1: its ring, no entry yet
    ASSERT_TRUE(plane.publishRing(1, {1}).isOk());
  };
  const Sequence calls = [](Dataplane& plane, MockDataplane&) {
    DataplaneBatch batch(plane);
    ASSERT_TRUE(plane.upsertService(keyOf(0), {1, 0, {}}).isOk());  // held
    ASSERT_TRUE(plane.upsertBackend(0, backend(0, 1, true)).isOk());  // service 0's slot, now 1's
    ASSERT_TRUE(plane.publishRing(1, {0, 1}).isOk());
    EXPECT_TRUE(batch.finish().isOk());
  };
  expectSound(setup, calls);
}

// A held service write of id S goes out before S's next ring is held (held
// rings go before held service writes at a flush). Here service 0 leaves
// l2dsr and then its ring names a backend without a MAC: with both held,
// the ring would land first, under l2dsr.
TEST(RingBatcher, AHeldServiceWriteGoesBeforeItsServicesNextRing) {
  const Sequence setup = [](Dataplane& plane, MockDataplane&) { addService(plane, 0, {0}, KEEL_SVC_F_FWD_L2DSR); };
  const Sequence calls = [](Dataplane& plane, MockDataplane&) {
    DataplaneBatch batch(plane);
    ASSERT_TRUE(plane.upsertBackend(1, backend(1, 0, true)).isOk());  // no MAC, no ring names it yet
    ASSERT_TRUE(plane.upsertService(keyOf(0), {0, 0, {}}).isOk());     // ipip: held
    ASSERT_TRUE(plane.publishRing(0, {1}).isOk());
    EXPECT_TRUE(batch.finish().isOk());
  };
  expectSound(setup, calls);
}

// A counter reset first sends everything held. Here a service's entry is
// removed, its empty ring held, and its counters reset with no backend
// write between to send the ring out (the registry invalidates the
// service's reals first, which does): sent at once, the reset would come
// while the old ring still names a backend, for packets past the lookup.
TEST(RingBatcher, ACounterResetFirstSendsWhatIsHeld) {
  const Sequence setup = [](Dataplane& plane, MockDataplane&) {
    addService(plane, 0, {0});
    addService(plane, 1, {1});
  };
  const Sequence calls = [](Dataplane& plane, MockDataplane&) {
    DataplaneBatch batch(plane);
    ASSERT_TRUE(plane.removeService(keyOf(0)).isOk());
    ASSERT_TRUE(plane.publishRing(0, {}).isOk());  // held
    ASSERT_TRUE(plane.resetCounters(CounterKind::kService, 0).isOk());
    EXPECT_TRUE(batch.finish().isOk());
  };
  expectSound(setup, calls);
}

// A batcher in front of a plane a previous keeld wrote knows which service
// owns each VALID slot from the backends it was built with: a backend
// write to one first sends what is held of that service. Here slot 1 is
// released after service 0's held ring stops naming it; without the owner
// the release would go first, under the old ring. (Registry::adopt's first
// apply rewrites every adopted backend, which tells the batcher the owners
// anyway: the walk's adopted drive does not need them.)
TEST(RingBatcher, AnAdoptedSlotsWriteFirstSendsWhatIsHeldOfItsOwner) {
  const Sequence setup = [](Dataplane& plane, MockDataplane&) { addService(plane, 0, {0, 1}); };
  const Sequence calls = [](Dataplane& plane, MockDataplane&) {
    DataplaneBatch batch(plane);
    ASSERT_TRUE(plane.publishRing(0, {0}).isOk());  // held
    ASSERT_TRUE(plane.upsertBackend(1, backend(1, KEEL_SERVICE_NONE, false)).isOk());
    EXPECT_TRUE(batch.finish().isOk());
  };
  expectSound(setup, calls, /*adopted=*/true);
}

// A slot whose write the plane refused may hold the old value or the new
// one (a refused write may have landed): a later write to it first sends
// everything held, whatever service either value names. Here the held
// write is service 0's ring dropping slot 1, and the later write releases
// slot 1. Refused and not landed, slot 1 is still service 0's, though the
// refused write released it; refused and landed, it is service 0's, though
// it was free before.
TEST(RingBatcher, AWriteToASlotWhoseWriteWasRefusedFirstSendsEverythingHeld) {
  for (const bool landed : {false, true}) {
    SCOPED_TRACE(landed ? "the refused write landed" : "the refused write did not land");
    const Sequence setup = [&](Dataplane& plane, MockDataplane& mock) {
      mock.failedCallsLand = landed;
      if (landed) {
        addService(plane, 0, {0});
        mock.failAfter = 1;  // slot 1 added to service 0: refused, but written
        EXPECT_FALSE(plane.upsertBackend(1, backend(1, 0, true)).isOk());
        ASSERT_TRUE(plane.publishRing(0, {0, 1}).isOk());  // the plane holds it VALID: a ring may name it
      } else {
        addService(plane, 0, {0, 1});
        mock.failAfter = 1;  // slot 1 released: refused, not written (still VALID, still named)
        EXPECT_FALSE(plane.upsertBackend(1, backend(1, KEEL_SERVICE_NONE, false)).isOk());
      }
    };
    const Sequence calls = [](Dataplane& plane, MockDataplane&) {
      DataplaneBatch batch(plane);
      ASSERT_TRUE(plane.publishRing(0, {0}).isOk());  // held
      ASSERT_TRUE(plane.upsertBackend(1, backend(1, KEEL_SERVICE_NONE, false)).isOk());
      EXPECT_TRUE(batch.finish().isOk());
    };
    expectSound(setup, calls);
  }
}

// removeService first sends a held write of its key: held past it, the
// write would put the removed service back when it goes out.
TEST(RingBatcher, ARemovalFirstSendsAHeldWriteOfItsKey) {
  const Sequence setup = [](Dataplane& plane, MockDataplane&) {
    addService(plane, 0, {0});
    addService(plane, 1, {1});
  };
  const Sequence calls = [](Dataplane& plane, MockDataplane&) {
    DataplaneBatch batch(plane);
    ASSERT_TRUE(plane.upsertService(keyOf(0), {0, KEEL_SVC_F_SCHED_SRC, {}}).isOk());  // held
    ASSERT_TRUE(plane.removeService(keyOf(0)).isOk());
    ASSERT_TRUE(plane.publishRing(0, {}).isOk());
    EXPECT_TRUE(batch.finish().isOk());
  };
  expectSound(setup, calls);
}

// What is held goes out at every endBatch(), a nested one too (as in
// DaemonBackend::commit, whose batch holds the registry's): the inner
// batch's end writes it, and says so when the plane refuses it.
TEST(RingBatcher, EveryBatchEndSendsWhatIsHeldANestedOneToo) {
  MockDataplane dp(kLimits);
  RingBatcher batcher(dp, {});
  addService(batcher, 0, {0, 1});
  DataplaneBatch outer(batcher);
  {
    DataplaneBatch inner(batcher);
    ASSERT_TRUE(batcher.publishRing(0, {1, 0}).isOk());
    ASSERT_TRUE(batcher.upsertService(keyOf(0), {0, KEEL_SVC_F_SCHED_SRC, {}}).isOk());
    EXPECT_EQ(dp.rings[0], (std::vector<uint32_t>{0, 1}));  // held
    EXPECT_TRUE(inner.finish().isOk());
  }
  EXPECT_EQ(dp.rings[0], (std::vector<uint32_t>{1, 0}));
  EXPECT_EQ(dp.services.at(MockDataplane::keyString(keyOf(0))).flags, KEEL_SVC_F_SCHED_SRC);
  {
    DataplaneBatch inner(batcher);
    ASSERT_TRUE(batcher.publishRing(0, {1}).isOk());
    dp.failAfter = 1;  // the inner end's publishRings
    EXPECT_FALSE(inner.finish().isOk());
  }
  EXPECT_EQ(dp.rings[0], (std::vector<uint32_t>{1, 0}));  // refused: not written, and not held
  ASSERT_TRUE(batcher.publishRing(0, {0}).isOk());
  EXPECT_EQ(dp.rings[0], (std::vector<uint32_t>{1, 0}));
  EXPECT_TRUE(outer.finish().isOk());
  EXPECT_EQ(dp.rings[0], (std::vector<uint32_t>{0}));
  EXPECT_EQ(countPrefix(dp.calls, "publishRing "), 1u);  // addService's, outside any batch
}

// Held rings go out without waiting for the batch's end once they hold
// kMaxHeldSlots slots (the memory a batch holds is bounded), with the
// service writes held before them, rings first.
TEST(RingBatcher, HeldRingsGoOutOnceTheyHoldMaxHeldSlots) {
  MockDataplane dp(kLimits);
  RingBatcher batcher(dp, {});
  ASSERT_TRUE(batcher.upsertBackend(0, backend(0, 0, true)).isOk());
  ASSERT_TRUE(batcher.upsertBackend(1, backend(1, 1, true)).isOk());
  ASSERT_TRUE(batcher.addVip(vipOf(0)).isOk());
  const size_t half = RingBatcher::kMaxHeldSlots / 2;
  DataplaneBatch batch(batcher);
  ASSERT_TRUE(batcher.publishRing(0, std::vector<uint32_t>(half, 0)).isOk());
  ASSERT_TRUE(batcher.upsertService(keyOf(0), {0, 0, {}}).isOk());
  ASSERT_TRUE(batcher.publishRing(1, std::vector<uint32_t>(half - 1, 1)).isOk());
  EXPECT_TRUE(dp.rings.empty());  // one slot short: all held
  EXPECT_TRUE(dp.services.empty());
  ASSERT_TRUE(batcher.publishRing(1, std::vector<uint32_t>(half, 1)).isOk());
  // At kMaxHeldSlots: out, in one publish, before the service write.
  EXPECT_EQ(dp.calls, (std::vector<std::string>{"upsertBackend 0 10.0.0.1 gen=0 valid",
                                                "upsertBackend 1 10.0.0.2 gen=0 valid", "addVip 192.0.2.10",
                                                "publishRings 0,1", "upsertService 192.0.2.10:80/6 id=0 flags=0"}));
  EXPECT_EQ(dp.rings[0].size(), half);
  EXPECT_EQ(dp.rings[1].size(), half);
  EXPECT_EQ(batcher.heldRings(), 0u);
  EXPECT_EQ(batcher.heldServices(), 0u);
  ASSERT_TRUE(batcher.publishRing(0, {0}).isOk());  // the next is held again
  EXPECT_EQ(dp.rings[0].size(), half);
  EXPECT_TRUE(batch.finish().isOk());
  EXPECT_EQ(dp.rings[0], (std::vector<uint32_t>{0}));
}

// A key written twice in a batch is held once, with its last value, and
// written once; what a refused end dropped is not held (nor found) by the
// next batch, whose write of the same key goes out.
TEST(RingBatcher, AKeysHeldWriteIsReplacedAndEndsWithItsBatch) {
  MockDataplane dp(kLimits);
  RingBatcher batcher(dp, {});
  addService(batcher, 0, {0});
  addService(batcher, 1, {1});
  const std::string key0 = MockDataplane::keyString(keyOf(0));
  auto writesOf0 = [&] { return countPrefix(dp.calls, "upsertService " + key0); };
  const size_t before = writesOf0();
  {
    DataplaneBatch batch(batcher);
    ASSERT_TRUE(batcher.upsertService(keyOf(1), {1, KEEL_SVC_F_SCHED_SRC, {}}).isOk());
    ASSERT_TRUE(batcher.upsertService(keyOf(0), {0, KEEL_SVC_F_SCHED_SRC, {}}).isOk());
    ASSERT_TRUE(batcher.upsertService(keyOf(0), {0, KEEL_SVC_F_HASH_SRC_IP, {}}).isOk());
    EXPECT_EQ(batcher.heldServices(), 2u);
    EXPECT_TRUE(batch.finish().isOk());
  }
  EXPECT_EQ(writesOf0(), before + 1);
  EXPECT_EQ(dp.services.at(key0).flags, KEEL_SVC_F_HASH_SRC_IP);
  {
    DataplaneBatch batch(batcher);
    ASSERT_TRUE(batcher.upsertService(keyOf(0), {0, 0, {}}).isOk());
    dp.failAfter = 1;  // the end's write of it: refused, not written
    dp.failedCallsLand = false;
    EXPECT_FALSE(batch.finish().isOk());
  }
  EXPECT_EQ(dp.services.at(key0).flags, KEEL_SVC_F_HASH_SRC_IP);
  {
    DataplaneBatch batch(batcher);
    ASSERT_TRUE(batcher.upsertService(keyOf(0), {0, KEEL_SVC_F_SCHED_SRC, {}}).isOk());
    EXPECT_EQ(batcher.heldServices(), 1u);
    EXPECT_TRUE(batch.finish().isOk());
  }
  EXPECT_EQ(dp.services.at(key0).flags, KEEL_SVC_F_SCHED_SRC);
  EXPECT_EQ(writesOf0(), before + 3);
}

}  // namespace
}  // namespace keel

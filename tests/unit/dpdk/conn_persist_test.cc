// SPDX-License-Identifier: Apache-2.0
// A clean restart's DPDK connection tables (dpdk/conn_persist.h), without
// EAL: entries saved from one TableStore's workers are loaded into fresh
// workers under another TableStore whose registry handed out other backend
// ids, service ids and generations, and the packet path then sends a saved
// flow to its saved real although the ring picks another.
#include "dataplane/dpdk/conn_persist.h"

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>

#include "dataplane/dpdk/worker_path.h"
#include "test_packets.h"

namespace keel::dpdk {
namespace {

using test::Frame;
using test::ip;

constexpr uint64_t kSec = 1000000000ull;
constexpr uint32_t kMaxServices = 16, kMaxBackends = 1024, kWorkers = 2;
const IpAddress kVip = ip("10.0.0.100");
const IpAddress kVip6 = ip("2001:db8::100");

// One keeld's tables and workers.
struct Plane {
  TableStore store{kMaxServices, kMaxBackends, [] {}};
  std::vector<std::unique_ptr<WorkerState>> workers;

  explicit Plane(uint32_t nWorkers = kWorkers, uint64_t seed = 1, uint32_t connCapacity = 1024) {
    EXPECT_TRUE(store.setNode(test::nodeConfig()));  // idle: TCP 300 s, UDP 30 s
    EXPECT_TRUE(store.addVip(test::vipKey(kVip)));
    EXPECT_TRUE(store.addVip(test::vipKey(kVip6)));
    for (uint32_t i = 0; i < nWorkers; ++i)
      workers.push_back(std::make_unique<WorkerState>(connCapacity, kMaxServices, kMaxBackends, 1500, kHeapConnMemory,
                                                      seed * 100 + i));
  }
  void service(const IpAddress& vip, uint32_t id, uint8_t proto = KEEL_PROTO_TCP) {
    keel_service_value v{};
    v.id = id;
    ASSERT_TRUE(store.upsertService(test::serviceKey(vip, 80, proto), v));
  }
  void real(uint32_t id, const char* addr, uint32_t svc, uint32_t gen, bool valid = true) {
    keel_backend b = test::backend(ip(addr), svc, gen);
    if (!valid) b.flags = 0;
    ASSERT_TRUE(store.upsertBackend(id, b));
  }
  void ringOf(uint32_t svc, uint32_t be) { ASSERT_TRUE(store.publishRing(svc, std::vector<uint32_t>(7, be))); }

  // The backend id the packet path sends f to from worker w.
  uint32_t send(const Frame& f, uint32_t w, uint64_t nowNs) {
    std::vector<uint8_t> frame = test::buildFrame(f);
    std::vector<uint8_t> mem(128 + frame.size());
    std::memcpy(mem.data() + 128, frame.data(), frame.size());
    PacketBuf b{mem.data() + 128, static_cast<uint32_t>(frame.size()), 128};
    PacketResult r = processPacket(*store.current(), *workers[w], b, nowNs);
    EXPECT_EQ(r.verdict, Verdict::kTx) << int(r.reason);
    return r.backendId;
  }

  std::vector<const ConnTable*> savedTables() const {
    std::vector<const ConnTable*> t;
    for (const auto& w : workers) t.push_back(&w->conns);
    return t;
  }
  std::vector<ConnTable*> tables() {
    std::vector<ConnTable*> t;
    for (auto& w : workers) t.push_back(&w->conns);
    return t;
  }
  uint64_t entries() const {
    uint64_t n = 0;
    for (const auto& w : workers) n += w->conns.countLive();
    return n;
  }
};

const Frame kFlowA{ip("192.168.1.1"), kVip, 40001, 80};
const Frame kFlowB{ip("192.168.1.2"), kVip, 40002, 80};
const Frame kFlowC{ip("2001:db8:c::1"), kVip6, 40003, 80};

constexpr uint64_t kSaveNs = 1000 * kSec;  // the first keeld's worker clock at the stop
constexpr uint64_t kWallSave = 5000 * kSec;

// The first keeld: service 1 with reals .1 (id 5) and .2 (id 6), IPv6
// service 2 with real ::a (id 9). Flow A on worker 0 picked .1; then the
// ring moved to .2 (a drain of .1, say), and flow B on worker 1 picked .2;
// flow C on worker 1 picked ::a. A keeps .1 through its entry.
SavedConns savedFromFirstKeeld(ConnExportReport* rep = nullptr) {
  Plane p1(kWorkers, 1);
  p1.service(kVip, 1);
  p1.real(5, "10.1.0.1", 1, 3);
  p1.real(6, "10.1.0.2", 1, 4);
  p1.ringOf(1, 5);
  EXPECT_EQ(p1.send(kFlowA, 0, kSaveNs - 10 * kSec), 5u);
  p1.ringOf(1, 6);
  EXPECT_EQ(p1.send(kFlowA, 0, kSaveNs - 5 * kSec), 5u);  // kept by its entry
  EXPECT_EQ(p1.send(kFlowB, 1, kSaveNs - 2 * kSec), 6u);
  p1.service(kVip6, 2);
  p1.real(9, "2001:db8:1::a", 2, 1);
  p1.ringOf(2, 9);
  EXPECT_EQ(p1.send(kFlowC, 1, kSaveNs - 1 * kSec), 9u);
  return exportConns(*p1.store.current(), p1.savedTables(), kSaveNs, kWallSave, rep);
}

// The next keeld's registry: other service ids, reals in another order
// (other backend ids) at other generations, and the ring on .2.
void programSecond(Plane& p2, bool withReal1 = true, bool real1Valid = true) {
  p2.service(kVip, 7);
  p2.real(0, "10.1.0.2", 7, 11);
  if (withReal1) p2.real(1, "10.1.0.1", 7, 12, real1Valid);
  p2.ringOf(7, 0);
  p2.service(kVip6, 3);
  p2.real(2, "2001:db8:1::a", 3, 13);
  p2.ringOf(3, 2);
}

TEST(ConnPersist, EntriesFollowTheirRealByAddressWhenIdsChange) {
  ConnExportReport ex;
  SavedConns saved = savedFromFirstKeeld(&ex);
  EXPECT_EQ(ex.saved, 3u);
  ASSERT_EQ(saved.records.size(), 3u);
  SavedConns back;
  ASSERT_TRUE(decodeConns(encodeConns(saved), &back));
  EXPECT_EQ(back.workers, kWorkers);
  EXPECT_EQ(back.savedAtNs, kWallSave);

  // A worker clock of another calibration, 2 s of wall clock later.
  const uint64_t now2 = 77 * kSec;
  Plane p2(kWorkers, 2);
  programSecond(p2);
  ConnRestoreReport rep = restoreConns(*p2.store.current(), p2.tables(), back, now2, kWallSave + 2 * kSec);
  ASSERT_TRUE(rep.restored) << rep.notRestored;
  EXPECT_EQ(rep.loaded, 3u);
  EXPECT_EQ(p2.entries(), 3u);

  // Through the packet path: A stays on 10.1.0.1 (now id 1) although the
  // ring picks 10.1.0.2 (id 0); B and C keep theirs.
  EXPECT_EQ(p2.send(kFlowA, 0, now2), 1u);
  EXPECT_EQ(p2.send(kFlowB, 1, now2), 0u);
  EXPECT_EQ(p2.send(kFlowC, 1, now2), 2u);
  // A new flow takes the ring's pick.
  EXPECT_EQ(p2.send(Frame{ip("192.168.1.9"), kVip, 40009, 80}, 0, now2), 0u);
}

TEST(ConnPersist, WithoutTheSavedTablesTheFlowMovesToTheRingsPick) {
  // What the restore prevents: the same next keeld without it.
  Plane p2(kWorkers, 2);
  programSecond(p2);
  EXPECT_EQ(p2.send(kFlowA, 0, 77 * kSec), 0u);
}

TEST(ConnPersist, TheAgeCarriesOverAndTheIdleTimeoutStillApplies) {
  SavedConns saved = savedFromFirstKeeld();
  Plane p2(kWorkers, 2);
  programSecond(p2);
  const uint64_t now2 = 1000 * kSec;
  ASSERT_EQ(restoreConns(*p2.store.current(), p2.tables(), saved, now2, kWallSave).loaded, 3u);
  // A was last seen 5 s before the stop: 296 s later it is 301 s idle (TCP: 300 s) and re-picked.
  EXPECT_EQ(p2.send(kFlowA, 0, now2 + 296 * kSec), 0u);
}

TEST(ConnPersist, ARemovedRealsEntriesAreSkipped) {
  SavedConns saved = savedFromFirstKeeld();
  Plane p2(kWorkers, 2);
  programSecond(p2, /*withReal1=*/false);
  ConnRestoreReport rep = restoreConns(*p2.store.current(), p2.tables(), saved, 77 * kSec, kWallSave);
  ASSERT_TRUE(rep.restored);
  EXPECT_EQ(rep.loaded, 2u);
  EXPECT_EQ(rep.skippedNoReal, 1u);
  EXPECT_EQ(p2.entries(), 2u);
}

// A real not VALID at the start (its checks not passed yet after a stop
// longer than fall x interval, say) keeps its entries, as a running keeld's
// tables would: its flows go back to it once it is VALID, and a packet
// before that takes the ring's pick. (Until 2026-12-06 they were skipped,
// and a drained real whose checks were not kept lost every flow.)
TEST(ConnPersist, ARealDownAtTheStartKeepsItsEntriesForWhenItIsUp) {
  SavedConns saved = savedFromFirstKeeld();
  const uint64_t now2 = 77 * kSec;
  {
    Plane p2(kWorkers, 2);
    programSecond(p2, true, /*real1Valid=*/false);
    ConnRestoreReport rep = restoreConns(*p2.store.current(), p2.tables(), saved, now2, kWallSave);
    ASSERT_TRUE(rep.restored);
    EXPECT_EQ(rep.loaded, 3u);
    EXPECT_EQ(rep.loadedRealDown, 1u);
    EXPECT_EQ(p2.entries(), 3u);
    // Stopped again before its checks passed: the entry is saved for the
    // next keeld too (it was dropped as stale).
    ConnExportReport ex;
    EXPECT_EQ(exportConns(*p2.store.current(), p2.savedTables(), now2, kWallSave + kSec, &ex).records.size(), 3u);
    EXPECT_EQ(ex.skippedStale, 0u);
    // Its checks pass: the registry writes it VALID at the same generation.
    p2.real(1, "10.1.0.1", 7, 12);
    EXPECT_EQ(p2.send(kFlowA, 0, now2), 1u) << "A goes back to 10.1.0.1";
  }
  {
    // A packet of A while its real is still down takes the ring's pick.
    Plane p2(kWorkers, 2);
    programSecond(p2, true, /*real1Valid=*/false);
    ASSERT_EQ(restoreConns(*p2.store.current(), p2.tables(), saved, now2, kWallSave).loadedRealDown, 1u);
    EXPECT_EQ(p2.send(kFlowA, 0, now2), 0u);
  }
}

TEST(ConnPersist, ARemovedServicesEntriesAreSkipped) {
  SavedConns saved = savedFromFirstKeeld();
  Plane p2(kWorkers, 2);
  p2.service(kVip, 7);
  p2.real(0, "10.1.0.2", 7, 11);
  p2.real(1, "10.1.0.1", 7, 12);
  p2.ringOf(7, 0);
  ConnRestoreReport rep = restoreConns(*p2.store.current(), p2.tables(), saved, 77 * kSec, kWallSave);
  EXPECT_EQ(rep.loaded, 2u);
  EXPECT_EQ(rep.skippedNoService, 1u);  // flow C's IPv6 service
}

TEST(ConnPersist, EntriesIdleLongerThanTheTimeoutAreSkipped) {
  SavedConns saved = savedFromFirstKeeld();
  // The gap counts: 296 s after the stop, A (5 s idle at the stop) is past
  // TCP's 300 s, B (2 s) and C (1 s) are not.
  Plane p2(kWorkers, 2);
  programSecond(p2);
  ConnRestoreReport rep = restoreConns(*p2.store.current(), p2.tables(), saved, 77 * kSec, kWallSave + 296 * kSec);
  EXPECT_EQ(rep.loaded, 2u);
  EXPECT_EQ(rep.skippedExpired, 1u);
  EXPECT_EQ(p2.send(kFlowA, 0, 77 * kSec), 0u);

  // And at the save: an entry already idle past its timeout is not written.
  ConnExportReport ex;
  Plane p1(1, 1);
  p1.service(kVip, 1);
  p1.real(5, "10.1.0.1", 1, 3);
  p1.ringOf(1, 5);
  p1.send(kFlowA, 0, 10 * kSec);
  EXPECT_TRUE(exportConns(*p1.store.current(), p1.savedTables(), 311 * kSec, kWallSave, &ex).records.empty());
  EXPECT_EQ(ex.skippedExpired, 1u);
}

TEST(ConnPersist, EntriesTheWorkersWouldNoLongerHonourAreNotSaved) {
  Plane p1(1, 1);
  p1.service(kVip, 1);
  p1.real(5, "10.1.0.1", 1, 3);
  p1.ringOf(1, 5);
  p1.send(kFlowA, 0, 10 * kSec);
  p1.real(5, "10.1.0.1", 1, 4, false);  // invalidated: a new generation
  ConnExportReport ex;
  EXPECT_TRUE(exportConns(*p1.store.current(), p1.savedTables(), 11 * kSec, kWallSave, &ex).records.empty());
  EXPECT_EQ(ex.skippedStale, 1u);
}

// Whether every worker's table of p sends each of A, B and C to its saved
// real (programSecond's ids), and holds nothing else.
void expectEveryWorkerKeepsTheSavedReals(Plane& p, uint64_t nowNs) {
  for (uint32_t w = 0; w < p.workers.size(); ++w) {
    EXPECT_EQ(p.workers[w]->conns.countLive(), 3u) << "worker " << w;
    EXPECT_EQ(p.send(kFlowA, w, nowNs), 1u) << "worker " << w;  // the ring picks id 0
    EXPECT_EQ(p.send(kFlowB, w, nowNs), 0u) << "worker " << w;
    EXPECT_EQ(p.send(kFlowC, w, nowNs), 2u) << "worker " << w;
  }
}

TEST(ConnPersist, MoreWorkersThanSavedTheFileGetEveryEntryInEveryTable) {
  // RSS over three queues may put a flow on any of them: each table holds
  // every entry, so the worker the flow lands on finds it.
  SavedConns saved = savedFromFirstKeeld();
  Plane p2(3, 2);
  programSecond(p2);
  const uint64_t now2 = 77 * kSec;
  ConnRestoreReport rep = restoreConns(*p2.store.current(), p2.tables(), saved, now2, kWallSave + 2 * kSec);
  ASSERT_TRUE(rep.restored) << rep.notRestored;
  EXPECT_TRUE(rep.copiedToAll);
  EXPECT_EQ(rep.savedWorkers, 2u);
  EXPECT_EQ(rep.workers, 3u);
  EXPECT_EQ(rep.loaded, 3u);
  EXPECT_EQ(rep.lostNoRoom, 0u);
  expectEveryWorkerKeepsTheSavedReals(p2, now2);
}

TEST(ConnPersist, FewerWorkersThanSavedTheFileGetEveryEntryInEveryTable) {
  SavedConns saved = savedFromFirstKeeld();
  for (uint32_t n : {1u, 2u, 3u}) {
    SCOPED_TRACE(n);
    Plane p2(n, 2);
    programSecond(p2);
    ConnRestoreReport rep = restoreConns(*p2.store.current(), p2.tables(), saved, 77 * kSec, kWallSave);
    ASSERT_TRUE(rep.restored);
    EXPECT_EQ(rep.copiedToAll, n != kWorkers);
    EXPECT_EQ(rep.seedsRestored, n == kWorkers) << rep.seedsNotRestored;
    EXPECT_EQ(rep.loaded, 3u);
    if (n == kWorkers) {  // the same count: each entry into its own worker alone, as saved
      EXPECT_EQ(p2.workers[0]->conns.countLive(), 1u);
      EXPECT_EQ(p2.workers[1]->conns.countLive(), 2u);
    } else {
      expectEveryWorkerKeepsTheSavedReals(p2, 77 * kSec);
    }
  }
}

// The same worker count over a port that spreads flows another way (a
// net_af_packet port after a net_af_xdp one on the same interface, another
// NIC at the same address): the flows land on other workers, so each entry
// goes into every table. Where either side's spread is unknown (a file of
// a keeld before the spread was saved), the count decides alone, as before.
TEST(ConnPersist, AnotherPortSpreadGetsEveryEntryInEveryTable) {
  const struct {
    uint32_t saved, now;
    bool copied;
  } cases[] = {{7, 7, false}, {7, 8, true}, {0, 8, false}, {7, 0, false}};
  for (const auto& c : cases) {
    SCOPED_TRACE(std::to_string(c.saved) + " -> " + std::to_string(c.now));
    SavedConns saved = savedFromFirstKeeld();
    saved.spread = c.saved;
    SavedConns back;
    ASSERT_TRUE(decodeConns(encodeConns(saved), &back));  // as the file carries it
    EXPECT_EQ(back.spread, c.saved);
    Plane p2(kWorkers, 2);
    programSecond(p2);
    ConnRestoreReport rep = restoreConns(*p2.store.current(), p2.tables(), back, 77 * kSec, kWallSave, c.now);
    ASSERT_TRUE(rep.restored) << rep.notRestored;
    EXPECT_EQ(rep.spreadChanged, c.copied);
    EXPECT_EQ(rep.copiedToAll, c.copied);
    EXPECT_EQ(rep.seedsRestored, !c.copied) << rep.seedsNotRestored;  // the seeds only where each table gets its own
    EXPECT_EQ(rep.loaded, 3u);
    if (c.copied) {
      expectEveryWorkerKeepsTheSavedReals(p2, 77 * kSec);
    } else {
      EXPECT_EQ(p2.workers[0]->conns.countLive(), 1u);
      EXPECT_EQ(p2.workers[1]->conns.countLive(), 2u);
    }
  }
}

// A first keeld (2 workers) whose workers saw n IPv4 flows of service 1 on
// real 10.1.0.1, flow i last seen i + 1 s before the stop, on worker i % 2.
SavedConns manyFlows(uint32_t n) {
  Plane p1(kWorkers, 1);
  p1.service(kVip, 1);
  p1.real(5, "10.1.0.1", 1, 3);
  p1.ringOf(1, 5);
  for (uint32_t i = 0; i < n; ++i)
    p1.send(Frame{ip("192.168.2.1"), kVip, static_cast<uint16_t>(41000 + i), 80}, i % 2, kSaveNs - (i + 1) * kSec);
  return exportConns(*p1.store.current(), p1.savedTables(), kSaveNs, kWallSave);
}

TEST(ConnPersist, ATableTooSmallKeepsTheMostRecentlySeenAndReportsTheRest) {
  // 16 flows; the next keeld's tables hold 4 IPv4 flows each (one bucket).
  SavedConns saved = manyFlows(16);
  ASSERT_EQ(saved.records.size(), 16u);
  auto held = [](Plane& p, uint32_t w) {
    std::vector<uint16_t> ports;
    p.workers[w]->conns.forEach([&](const keel_flow_key& k, const keel_ct_value&) { ports.push_back(ntohs(k.sport)); });
    std::sort(ports.begin(), ports.end());
    return ports;
  };
  {
    SCOPED_TRACE("three workers: every entry into each table");
    Plane p2(3, 2, 4);
    programSecond(p2);
    ConnRestoreReport rep = restoreConns(*p2.store.current(), p2.tables(), saved, 77 * kSec, kWallSave);
    EXPECT_TRUE(rep.copiedToAll);
    EXPECT_EQ(rep.loaded, 4u);
    EXPECT_EQ(rep.lostNoRoom, 12u);
    for (uint32_t w = 0; w < 3; ++w) EXPECT_EQ(held(p2, w), (std::vector<uint16_t>{41000, 41001, 41002, 41003}));
  }
  {
    SCOPED_TRACE("two workers: each entry into its own worker's table");
    Plane p2(kWorkers, 2, 4);
    programSecond(p2);
    ConnRestoreReport rep = restoreConns(*p2.store.current(), p2.tables(), saved, 77 * kSec, kWallSave);
    EXPECT_FALSE(rep.copiedToAll);
    EXPECT_EQ(rep.loaded, 8u);
    EXPECT_EQ(rep.lostNoRoom, 8u);
    EXPECT_EQ(held(p2, 0), (std::vector<uint16_t>{41000, 41002, 41004, 41006}));
    EXPECT_EQ(held(p2, 1), (std::vector<uint16_t>{41001, 41003, 41005, 41007}));
  }
}

// A first keeld (2 workers, capacity flows of a family a worker) whose
// workers saw 3/4 x capacity IPv4 flows each of service 1, the first half
// picked on real 10.1.0.1, the second (after a ring change) on 10.1.0.2;
// each worker's buckets, 4 ways, are then nearly full and some overflowed.
SavedConns busyTables(uint32_t capacity) {
  Plane p1(kWorkers, 1, capacity);
  p1.service(kVip, 1);
  p1.real(5, "10.1.0.1", 1, 3);
  p1.real(6, "10.1.0.2", 1, 4);
  const uint32_t n = kWorkers * capacity * 3 / 4;
  for (uint32_t i = 0; i < n; ++i) {
    if (i == 0 || i == n / 2) p1.ringOf(1, i == 0 ? 5 : 6);
    const std::string client = "192.168." + std::to_string(3 + i / 250) + "." + std::to_string(1 + i % 250);
    const Frame f{ip(client.c_str()), kVip,
                  static_cast<uint16_t>(42000 + i), 80};
    p1.send(f, i % kWorkers, kSaveNs - (n - i) * kSec / 10);
  }
  for (const auto& w : p1.workers)  // well filled: the case where fresh seeds lose entries
    EXPECT_GE(w->conns.half(KEEL_AF_INET).occupied * 10, w->conns.capacity() * 6u);
  return exportConns(*p1.store.current(), p1.savedTables(), kSaveNs, kWallSave);
}

// The id programSecond gives the saved real of r.
uint32_t secondId(const ConnRecord& r) {
  uint32_t a[4];
  ip("10.1.0.1").toWords(a);
  return std::memcmp(r.realAddr, a, sizeof a) == 0 ? 1u : 0u;
}

// The same worker count, spread and capacity: each table takes the seeds
// its worker's had, so every entry goes back into the bucket that held it
// and none is lost, however full the tables were. (With the tables' own
// fresh seeds, as before 2026-12-06, some buckets got more than four and
// their oldest entries were lost: checked below, so the case is one that
// loses entries without the seeds.)
TEST(ConnPersist, TheSameLayoutRestoresEveryEntryIntoItsOwnBucket) {
  constexpr uint32_t kCapacity = 256;  // 64 buckets of 4 IPv4 ways a worker
  SavedConns saved;
  ASSERT_TRUE(decodeConns(encodeConns(busyTables(kCapacity)), &saved));  // as the file carries it
  ASSERT_EQ(saved.seeds.size(), kWorkers);
  EXPECT_EQ(saved.capacity, kCapacity);
  ASSERT_GT(saved.records.size(), kWorkers * kCapacity * 6 / 10);

  const uint64_t now2 = 77 * kSec;
  Plane p2(kWorkers, 2, kCapacity);  // other seeds drawn than the first keeld's
  programSecond(p2);
  ConnRestoreReport rep = restoreConns(*p2.store.current(), p2.tables(), saved, now2, kWallSave + 2 * kSec);
  ASSERT_TRUE(rep.restored) << rep.notRestored;
  EXPECT_FALSE(rep.copiedToAll);
  EXPECT_TRUE(rep.seedsRestored) << rep.seedsNotRestored;
  EXPECT_EQ(rep.lostNoRoom, 0u);
  EXPECT_EQ(rep.loaded, saved.records.size());
  for (uint32_t w = 0; w < kWorkers; ++w) EXPECT_EQ(p2.workers[w]->conns.seeds(), saved.seeds[w]);
  // Each flow in its own worker's table, naming its saved real (the ring
  // now picks id 0, 10.1.0.2, for every new flow).
  size_t onReal1 = 0;
  for (const ConnRecord& r : saved.records) {
    keel_ct_value v;
    ASSERT_TRUE(p2.workers[r.worker]->conns.peek(r.flow, now2, 0, &v)) << ntohs(r.flow.sport);
    EXPECT_EQ(v.backend_id, secondId(r)) << ntohs(r.flow.sport);
    onReal1 += secondId(r) == 1;
  }
  EXPECT_GT(onReal1, 0u);
  EXPECT_EQ(p2.entries(), saved.records.size());

  // The control: the same file without its seeds (a version 2 file) into
  // the same tables loses entries for want of room.
  SavedConns noSeeds = saved;
  noSeeds.seeds.clear();
  noSeeds.capacity = 0;
  Plane q2(kWorkers, 2, kCapacity);
  programSecond(q2);
  rep = restoreConns(*q2.store.current(), q2.tables(), noSeeds, now2, kWallSave + 2 * kSec);
  EXPECT_FALSE(rep.seedsRestored);
  EXPECT_NE(rep.seedsNotRestored.find("no hash seeds"), std::string::npos) << rep.seedsNotRestored;
  EXPECT_GT(rep.lostNoRoom, 0u);
  EXPECT_EQ(rep.loaded + rep.lostNoRoom, saved.records.size());
}

// Another capacity (conn_table_size or the worker count changed): the
// saved buckets do not exist there, so the tables keep the seeds they drew
// and the entries go in as before 2026-12-06: a larger table has room for
// them all, a smaller one keeps the most recently seen.
TEST(ConnPersist, AnotherCapacityKeepsTheTablesOwnSeeds) {
  const SavedConns saved = busyTables(256);
  for (uint32_t capacity : {1024u, 128u}) {
    SCOPED_TRACE(capacity);
    Plane p2(kWorkers, 2, capacity);
    programSecond(p2);
    const ConnTable::Seeds drawn0 = p2.workers[0]->conns.seeds(), drawn1 = p2.workers[1]->conns.seeds();
    ConnRestoreReport rep = restoreConns(*p2.store.current(), p2.tables(), saved, 77 * kSec, kWallSave);
    ASSERT_TRUE(rep.restored) << rep.notRestored;
    EXPECT_FALSE(rep.copiedToAll);
    EXPECT_FALSE(rep.seedsRestored);
    EXPECT_NE(rep.seedsNotRestored.find("the tables hold " + std::to_string(capacity) +
                                        " flows of a family each, the saving ones 256"),
              std::string::npos)
        << rep.seedsNotRestored;
    EXPECT_EQ(p2.workers[0]->conns.seeds(), drawn0);
    EXPECT_EQ(p2.workers[1]->conns.seeds(), drawn1);
    EXPECT_EQ(rep.loaded + rep.lostNoRoom, saved.records.size());
    EXPECT_EQ(p2.entries(), rep.loaded);
    if (capacity == 128) {
      EXPECT_GT(rep.lostNoRoom, 0u);  // 2 x 128 ways for more entries than that
    }
    for (const ConnRecord& r : saved.records) {  // what a table kept names the saved real
      keel_ct_value v;
      if (p2.workers[r.worker]->conns.peek(r.flow, 77 * kSec, 0, &v)) {
        EXPECT_EQ(v.backend_id, secondId(r));
      }
    }
  }
}

// A table that already holds entries keeps its seeds (its entries' buckets);
// the file's entries go in as they would without seeds. keeld restores
// only into fresh tables, before its workers run.
TEST(ConnPersist, ATableThatHoldsEntriesIsNotReseeded) {
  const SavedConns saved = savedFromFirstKeeld();
  Plane p2(kWorkers, 2);
  programSecond(p2);
  EXPECT_EQ(p2.send(Frame{ip("192.168.1.9"), kVip, 40009, 80}, 1, 70 * kSec), 0u);
  const ConnTable::Seeds drawn = p2.workers[0]->conns.seeds();
  ConnRestoreReport rep = restoreConns(*p2.store.current(), p2.tables(), saved, 77 * kSec, kWallSave);
  EXPECT_FALSE(rep.seedsRestored);
  EXPECT_NE(rep.seedsNotRestored.find("already holds entries"), std::string::npos) << rep.seedsNotRestored;
  EXPECT_EQ(p2.workers[0]->conns.seeds(), drawn);
  EXPECT_EQ(rep.loaded, 3u);
  EXPECT_EQ(p2.send(kFlowA, 0, 77 * kSec), 1u);
}

TEST(ConnPersist, CopiesSavedAgainLoadOncePerTableTheMostRecentlySeenFirst) {
  // 2 workers -> 3 (copies) -> 1: the second file holds each flow three
  // times; the copy of the worker the flow reached is the most recent.
  Plane p3(3, 2);
  programSecond(p3);
  const uint64_t now3 = 77 * kSec;
  ASSERT_EQ(restoreConns(*p3.store.current(), p3.tables(), savedFromFirstKeeld(), now3, kWallSave).loaded, 3u);
  EXPECT_EQ(p3.send(kFlowA, 2, now3 + 10 * kSec), 1u);  // A's packets reach worker 2 (refreshes its copy)
  const SavedConns again = exportConns(*p3.store.current(), p3.savedTables(), now3 + 20 * kSec, kWallSave + 20 * kSec);
  ASSERT_EQ(again.records.size(), 9u);

  Plane p1(1, 3);
  programSecond(p1);
  const uint64_t now1 = 500 * kSec;
  ConnRestoreReport rep = restoreConns(*p1.store.current(), p1.tables(), again, now1, kWallSave + 20 * kSec);
  EXPECT_TRUE(rep.copiedToAll);
  EXPECT_EQ(rep.loaded, 3u);
  EXPECT_EQ(rep.skippedDuplicate, 6u);
  keel_ct_value v;
  ASSERT_TRUE(p1.workers[0]->conns.peek(test::flowKey(kFlowA), now1, 0, &v));
  EXPECT_EQ(v.last_seen_ns, now1 - 10 * kSec);  // worker 2's copy, 10 s old, not the others (15 s)

  // The newest copy decides even when it no longer counts: with its real
  // gone the flow is picked from the ring again, not pinned by an older
  // copy to a real its connection has left.
  SavedConns gone = again;
  const keel_flow_key a = test::flowKey(kFlowA);
  ConnRecord* newest = nullptr;
  for (ConnRecord& r : gone.records)
    if (std::memcmp(&r.flow, &a, sizeof a) == 0 && (!newest || r.ageNs < newest->ageNs)) newest = &r;
  ASSERT_NE(newest, nullptr);
  ip("203.0.113.99").toWords(newest->realAddr);  // no real of the service
  Plane q1(1, 3);
  programSecond(q1);
  rep = restoreConns(*q1.store.current(), q1.tables(), gone, now1, kWallSave + 20 * kSec);
  EXPECT_EQ(rep.skippedDuplicate, 6u);
  EXPECT_EQ(rep.skippedNoReal, 1u);
  EXPECT_EQ(rep.loaded, 2u);
  EXPECT_FALSE(q1.workers[0]->conns.peek(a, now1, 0, &v)) << "an older copy named real " << v.backend_id;
}

TEST(ConnPersist, BadFilesAreErrorsThatSayWhy) {
  const std::string good = encodeConns(savedFromFirstKeeld());
  SavedConns out;
  auto error = [&](const std::string& bytes) {
    Status s = decodeConns(bytes, &out);
    EXPECT_FALSE(s);
    EXPECT_TRUE(out.records.empty());
    return s.message();
  };
  EXPECT_NE(error("").find("truncated"), std::string::npos);
  EXPECT_NE(error(good.substr(0, 20)).find("truncated"), std::string::npos);
  EXPECT_NE(error(good.substr(0, good.size() - 1)).find("truncated"), std::string::npos);
  EXPECT_NE(error(good + "x").find("truncated"), std::string::npos);
  std::string bad = good;
  bad[0] = 'X';
  EXPECT_NE(error(bad).find("magic"), std::string::npos);
  bad = good;
  bad[8] = 9;  // the version, little-endian
  EXPECT_NE(error(bad).find("version 9"), std::string::npos);
  bad = good;
  bad[8] = 0;
  bad[11] = 3;  // version 3 big-endian: a writer that ignored the byte order
  EXPECT_NE(error(bad).find("version 50331648"), std::string::npos);
  bad = good;
  bad[12] = 64;  // the entry size
  EXPECT_NE(error(bad).find("entry size 64"), std::string::npos);
  bad = good;
  bad[16] = 0;  // the worker count
  EXPECT_NE(error(bad).find("worker count 0"), std::string::npos);
  // The seeds section (version 3): its count, capacity and length.
  EXPECT_NE(error(good.substr(0, ConnFile::kHeaderSize + 4)).find("seeds section is cut short"), std::string::npos);
  EXPECT_NE(error(good.substr(0, ConnFile::kHeaderSize + 40)).find("seeds of 2 tables are cut short"),
            std::string::npos);
  bad = good;
  bad[40] = 3;  // seeds of 3 tables
  EXPECT_NE(error(bad).find("seeds of 3 tables, the file has 2 workers"), std::string::npos);
  bad = good;
  std::memset(&bad[44], 0, 4);  // the capacity
  EXPECT_NE(error(bad).find("capacity 0"), std::string::npos);
  const size_t e1 = ConnFile::entriesOffset(kWorkers) + ConnFile::kEntrySize;  // entry 1
  bad = good;
  bad[e1 + 80] = 7;  // worker 7 of 2
  EXPECT_NE(error(bad).find("entry 1 is malformed (worker 7 of 2)"), std::string::npos);
  bad = good;
  bad[e1 + offsetof(keel_flow_key, family)] = 5;
  EXPECT_NE(error(bad).find("entry 1 is malformed (families flow 5"), std::string::npos);
  bad = good;
  bad[e1 + 76] = 0;  // the real's family
  EXPECT_NE(error(bad).find("real 0"), std::string::npos);
  bad = good;
  bad[e1 + offsetof(keel_flow_key, pad)] = 1;
  EXPECT_NE(error(bad).find("entry 1 is malformed (flow key padding"), std::string::npos);
  // Random bytes, and random corruptions of a good file: an error or a
  // well-formed result, never a crash (run under the sanitizers too).
  std::mt19937 rng(7);
  for (int i = 0; i < 2000; ++i) {
    std::string b = i % 2 ? good : std::string(rng() % 400, '\0');
    for (int j = 0; j < 4; ++j)
      if (!b.empty()) b[rng() % b.size()] = static_cast<char>(rng());
    if (decodeConns(b, &out)) {
      EXPECT_EQ(out.records.size() * ConnFile::kEntrySize + ConnFile::entriesOffset(out.seeds.size()), b.size());
    }
  }
  EXPECT_TRUE(decodeConns(good, &out));
}

bool sameRecord(const ConnRecord& a, const ConnRecord& b) {
  return std::memcmp(&a.flow, &b.flow, sizeof a.flow) == 0 &&
         std::memcmp(&a.service, &b.service, sizeof a.service) == 0 &&
         std::memcmp(a.realAddr, b.realAddr, sizeof a.realAddr) == 0 && a.realFamily == b.realFamily &&
         a.worker == b.worker && a.ageNs == b.ageNs;
}

TEST(ConnPersist, AFileRoundTripsEveryField) {
  SavedConns saved = savedFromFirstKeeld(), back;
  saved.workers = 3;
  saved.records[2].worker = 2;
  saved.records[1].ageNs = 0x0102030405060708ull;
  ASSERT_TRUE(decodeConns(encodeConns(saved), &back));
  EXPECT_EQ(back.workers, 3u);
  EXPECT_EQ(back.savedAtNs, kWallSave);
  ASSERT_EQ(back.records.size(), saved.records.size());
  for (size_t i = 0; i < saved.records.size(); ++i) EXPECT_TRUE(sameRecord(back.records[i], saved.records[i])) << i;
  // Seeds for 2 tables in a file of 3 workers: none written.
  EXPECT_TRUE(back.seeds.empty());
  EXPECT_EQ(back.capacity, 0u);
  saved.seeds.push_back({~0ull, 0x8000000000000001ull, 5, 0x0102030405060708ull});
  saved.capacity = 0x80000000u;
  ASSERT_TRUE(decodeConns(encodeConns(saved), &back));
  EXPECT_EQ(back.seeds, saved.seeds);
  EXPECT_EQ(back.capacity, saved.capacity);
  ASSERT_TRUE(decodeConns(encodeConns(SavedConns{1, 7, {}}), &back));  // no entries
  EXPECT_TRUE(back.records.empty());
  EXPECT_EQ(back.savedAtNs, 7u);
}

// Spelled out byte by byte, so that a change of the layout (a field moved,
// the byte order, the struct padding) fails here rather than in the field.
TEST(ConnPersist, TheFileLayoutIsLittleEndianWithTheKeysAsTheirBytes) {
  ConnRecord r{};
  r.flow = test::flowKey(Frame{ip("192.168.1.1"), kVip, 40001, 80});
  r.service = test::serviceKey(kVip, 80, KEEL_PROTO_TCP);
  std::memcpy(r.realAddr, ip("10.1.0.2").bytes().data(), 4);
  r.realFamily = KEEL_AF_INET;
  r.worker = 0x0a0b0c0d;
  r.ageNs = 0x1122334455667788ull;
  const std::string bytes = encodeConns(SavedConns{0x01020304, 0x8877665544332211ull, {r}, 0x05060708});
  const std::string seeded =
      encodeConns(SavedConns{2, 0, {}, 0, 0x00000400,
                             {{0x0102030405060708ull, 2, 3, 4}, {5, 6, 7, 0x8000000000000000ull}}});
  auto hex = [](const std::string& b) {
    std::string out;
    char two[3];
    for (unsigned char c : b) {
      std::snprintf(two, sizeof two, "%02x", c);
      out += two;
    }
    return out;
  };
  const std::string af = hex(std::string(1, static_cast<char>(KEEL_AF_INET)));
  const std::string expected =
      // header: magic, version 3, entry size 96, 0x01020304 workers, spread 0x05060708, 1 entry, savedAtNs
      "4b45454c434f4e4e" "03000000" "60000000" "04030201" "08070605" "0100000000000000" "1122334455667788"
      // seeds: none (seeds of 0 tables, capacity 0)
      "00000000" "00000000"
      // flow key: source, destination (word 0 network order, words 1-3 zero), ports 40001 and 80
      // network order, TCP, family, padding
      "c0a80101" "000000000000000000000000" "0a000064" "000000000000000000000000" "9c41" "0050" "06" + af +
      "0000"
      // service key: VIP, port 80, TCP, family
      "0a000064" "000000000000000000000000" "0050" "06" + af +
      // real address, family, reserved, worker, reserved, age
      "0a010002" "000000000000000000000000" + af + "000000" "0d0c0b0a" "00000000" "8877665544332211";
  EXPECT_EQ(hex(bytes), expected);
  // With seeds: 2 tables of capacity 1024, each table's four seeds; no entries.
  EXPECT_EQ(hex(seeded.substr(ConnFile::kHeaderSize)),
            "02000000" "00040000"
            "0807060504030201" "0200000000000000" "0300000000000000" "0400000000000000"
            "0500000000000000" "0600000000000000" "0700000000000000" "0000000000000080");
}

// What the previous keeld wrote (version 1): its structs, in the machine's
// own byte order.
struct V1Record {
  keel_flow_key flow;
  keel_service_key service;
  uint32_t realAddr[4];
  uint8_t realFamily;
  uint8_t pad[3];
  uint32_t worker;
  uint32_t pad2;
  uint64_t ageNs;
};
struct V1Header {
  char magic[8];
  uint32_t version, entrySize, workers, reserved;
  uint64_t entries, savedAtNs;
};
static_assert(sizeof(V1Record) == 96 && sizeof(V1Header) == 40, "version 1 as it was");

TEST(ConnPersist, TheFileOfThePreviousKeeldStillLoads) {
  const SavedConns saved = savedFromFirstKeeld();
  V1Header h{};
  std::memcpy(h.magic, "KEELCONN", 8);
  h.version = 1;
  h.entrySize = sizeof(V1Record);
  h.workers = saved.workers;
  h.entries = saved.records.size();
  h.savedAtNs = saved.savedAtNs;
  std::string v1(reinterpret_cast<const char*>(&h), sizeof h);
  for (const ConnRecord& r : saved.records) {
    V1Record o{};
    o.flow = r.flow;
    o.service = r.service;
    std::memcpy(o.realAddr, r.realAddr, sizeof o.realAddr);
    o.realFamily = r.realFamily;
    o.worker = r.worker;
    o.ageNs = r.ageNs;
    v1.append(reinterpret_cast<const char*>(&o), sizeof o);
  }
  SavedConns back;
  ASSERT_TRUE(decodeConns(v1, &back));
  EXPECT_EQ(back.workers, kWorkers);
  EXPECT_EQ(back.savedAtNs, kWallSave);
  ASSERT_EQ(back.records.size(), saved.records.size());
  for (size_t i = 0; i < saved.records.size(); ++i) EXPECT_TRUE(sameRecord(back.records[i], saved.records[i])) << i;

  // And it restores like a new one: A stays on its drained real.
  Plane p2(kWorkers, 2);
  programSecond(p2);
  ASSERT_EQ(restoreConns(*p2.store.current(), p2.tables(), back, 77 * kSec, kWallSave).loaded, 3u);
  EXPECT_EQ(p2.send(kFlowA, 0, 77 * kSec), 1u);
}

// What keelds from commit 7111440 to 2026-12-06 wrote (version 2): version
// 3's layout without its seeds section.
std::string asVersion2(const std::string& v3, size_t seededTables) {
  std::string v2 = v3;
  v2[8] = 2;
  v2.erase(ConnFile::kHeaderSize, ConnFile::entriesOffset(seededTables) - ConnFile::kHeaderSize);
  return v2;
}

TEST(ConnPersist, AVersion2FileWithoutSeedsStillLoads) {
  const SavedConns saved = savedFromFirstKeeld();
  ASSERT_EQ(saved.seeds.size(), kWorkers);
  SavedConns back;
  ASSERT_TRUE(decodeConns(asVersion2(encodeConns(saved), kWorkers), &back));
  EXPECT_EQ(back.workers, kWorkers);
  EXPECT_EQ(back.savedAtNs, kWallSave);
  EXPECT_TRUE(back.seeds.empty());
  EXPECT_EQ(back.capacity, 0u);
  ASSERT_EQ(back.records.size(), saved.records.size());
  for (size_t i = 0; i < saved.records.size(); ++i) EXPECT_TRUE(sameRecord(back.records[i], saved.records[i])) << i;

  // It restores as before: each entry into its own worker's table, under
  // the seeds that table drew; A stays on its drained real.
  Plane p2(kWorkers, 2);
  programSecond(p2);
  const ConnTable::Seeds drawn = p2.workers[0]->conns.seeds();
  ConnRestoreReport rep = restoreConns(*p2.store.current(), p2.tables(), back, 77 * kSec, kWallSave);
  EXPECT_FALSE(rep.copiedToAll);
  EXPECT_FALSE(rep.seedsRestored);
  EXPECT_EQ(p2.workers[0]->conns.seeds(), drawn);
  EXPECT_EQ(rep.loaded, 3u);
  EXPECT_EQ(p2.send(kFlowA, 0, 77 * kSec), 1u);

  // A version 2 file's bytes after its header are entries: a truncated one
  // still says so.
  std::string cut = asVersion2(encodeConns(saved), kWorkers);
  cut.pop_back();
  Status s = decodeConns(cut, &back);
  EXPECT_FALSE(s);
  EXPECT_NE(s.message().find("truncated or padded"), std::string::npos) << s.message();
}

TEST(ConnPersist, TheFileIsWrittenAtomicallyAndConsumedEvenWhenUnusable) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("keel_conn_persist_" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "conntrack-dpdk.bin").string();
  SavedConns saved = savedFromFirstKeeld(), back;
  bool found = true;
  ASSERT_TRUE(consumeConnFile(path, &back, &found));
  EXPECT_FALSE(found);

  // A stale tmp file of a killed keeld, world-readable: replaced.
  std::ofstream(path + ".tmp") << "left over";
  ::chmod((path + ".tmp").c_str(), 0644);
  const mode_t umaskBefore = ::umask(0022);
  ASSERT_TRUE(writeConnFile(path, saved));
  ::umask(umaskBefore);
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u) << "the file lists clients' addresses: owner only";
  ASSERT_TRUE(consumeConnFile(path, &back, &found));
  EXPECT_TRUE(found);
  EXPECT_EQ(back.records.size(), 3u);
  EXPECT_FALSE(std::filesystem::exists(path));  // a later start does not load it again

  std::ofstream(path) << "not a conntrack file";
  Status s = consumeConnFile(path, &back, &found);
  EXPECT_FALSE(s);
  EXPECT_TRUE(found);
  EXPECT_NE(s.message().find(path), std::string::npos) << s.message();
  EXPECT_FALSE(std::filesystem::exists(path));

  EXPECT_FALSE(writeConnFile((dir / "missing" / "x.bin").string(), saved));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace keel::dpdk

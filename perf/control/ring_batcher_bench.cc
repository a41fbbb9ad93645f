// SPDX-License-Identifier: Apache-2.0
// ring_batcher_bench: what RingBatcher (src/dataplane/ring_batcher.h) costs
// the control thread to hold one batch of n services, over a plane that
// does nothing, so the batcher's own bookkeeping is all that is timed.
//
// Method. For each n (default 1,000 and 10,000), each case is one batch
// (beginBatch, the calls, endBatch: every held write sent out), timed on
// one thread, wall (steady_clock) and thread CPU, median and best of N
// reps (default 7). Service i is 10.0.0.0 + i, port 80/tcp, id i. Cases:
//   service writes    n upsertService, one per service (a reload that
//                     changes only flags: no ring moves, so nothing sends
//                     the held writes out before the batch's end)
//   written twice     the same n writes, then each again with other flags
//                     (the second finds the held write of its key)
//   ring + service    per service publishRing (M = 16) then upsertService,
//                     as Registry::addService orders them (a start-up):
//                     n rings and n service writes held to the end (no
//                     ring size keel.yaml allows: the held writes' cost
//                     without the copies of large rings)
//   ring M=65537      the same with rings of M = 65,537: the held rings go
//                     out every kMaxHeldSlots (128 rings), the service
//                     writes with them, so at most 128 are ever held
// Each ring is a new vector handed over (moved), as Registry::publishRing
// hands the table buildMaglevTable made; its allocation and fill are in
// both columns. The null plane's publishRings takes a list whole, as the
// XDP plane's one batch update does.
// In-run baseline: the same calls made straight on the null plane (what
// they cost without a batcher: the virtual calls alone).
//
// Usage: ring_batcher_bench [--services n[,n...]] [--reps N]
#include <time.h>

#include <arpa/inet.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "dataplane/ring_batcher.h"
#include "keel/maglev_lookup.h"
#include "null_dataplane.h"

#include "../common/bench_env.h"

namespace keel {
namespace {

struct Options {
  std::vector<int> services{1000, 10000};
  int reps = 7;
};

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr, "ring_batcher_bench: %s\nusage: ring_batcher_bench [--services n[,n...]] [--reps N]\n",
               why.c_str());
  std::exit(2);
}

int positive(const std::string& name, const std::string& v) {
  char* end = nullptr;
  const long n = std::strtol(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0' || n < 1 || n > 1000000)
    usage(name + " must be an integer from 1 to 1000000, got '" + v + "'");
  return int(n);
}

Options parseArgs(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::printf("usage: ring_batcher_bench [--services n[,n...]] [--reps N]\n"
                  "  --services  batch sizes, each a run of every case (default 1000,10000)\n"
                  "  --reps      reps of each case (default 7)\n");
      std::exit(0);
    }
    if (i + 1 >= argc) usage(a == "--services" || a == "--reps" ? a + " needs a value" : "unknown argument '" + a + "'");
    const std::string v = argv[++i];
    if (a == "--services") {
      o.services.clear();
      std::stringstream in(v);
      for (std::string part; std::getline(in, part, ',');) o.services.push_back(positive("--services", part));
    } else if (a == "--reps") {
      o.reps = positive("--reps", v);
    } else {
      usage("unknown argument '" + a + "'");
    }
  }
  return o;
}

keel_service_key keyOf(int i) {
  keel_service_key k{};
  k.vip[0] = htonl((10u << 24) | uint32_t(i));  // i < 2^24
  k.port = htons(80);
  k.proto = KEEL_PROTO_TCP;
  k.family = KEEL_AF_INET;
  return k;
}

void die(const char* what, const Status& s) {
  std::fprintf(stderr, "ring_batcher_bench: %s: %s\n", what, s.message().c_str());
  std::exit(1);
}

// One case's calls on `dp`, in one batch.
using Calls = std::function<void(Dataplane& dp)>;

void row(const std::string& name, int n, int reps, Dataplane& direct, Dataplane& batched, const Calls& calls) {
  std::vector<double> wall[2], cpu;  // cpu: the batched runs' (the column printed)
  for (int r = 0; r < reps; ++r)
    for (int b = 0; b < 2; ++b) {  // alternated, so drift in the host's load hits both alike
      Dataplane& dp = b ? batched : direct;
      const double c0 = bench::threadCpuUs();
      const auto t0 = std::chrono::steady_clock::now();
      dp.beginBatch();
      calls(dp);
      if (Status s = dp.endBatch(); !s) die("endBatch", s);
      wall[b].push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
      if (b) cpu.push_back((bench::threadCpuUs() - c0) / 1e3);
    }
  const bench::Sorted d(wall[0]), w(wall[1]);
  std::printf("  %-36s %10.3f %10.3f %10.3f %10.3f %10.3f\n", name.c_str(), d.median(), w.median(), w.quantile(0),
              bench::median(cpu), w.median() * 1e3 / n);
}

void run(int n, int reps) {
  DataplaneLimits limits;
  limits.maxServices = uint32_t(n);
  limits.maxBackends = 16;
  NullDataplane null(limits);
  RingBatcher batcher(null, {});
  std::vector<keel_service_key> keys;
  for (int i = 0; i < n; ++i) keys.push_back(keyOf(i));
  const std::vector<uint32_t> small(16, 0), large(KEEL_RING_SIZE_DEFAULT, 0);
  std::printf("\n%d services, one batch each rep (ms)\n  %-36s %10s %10s %10s %10s %10s\n", n, "case", "null med",
              "batch med", "batch best", "batch cpu", "us/service");
  auto writes = [&](Dataplane& dp, uint32_t flags) {
    for (int i = 0; i < n; ++i)
      if (Status s = dp.upsertService(keys[size_t(i)], {uint32_t(i), flags, {}}); !s) die("upsertService", s);
  };
  auto ringsAndWrites = [&](Dataplane& dp, const std::vector<uint32_t>& ring) {
    for (int i = 0; i < n; ++i) {
      if (Status s = dp.publishRing(uint32_t(i), std::vector<uint32_t>(ring)); !s) die("publishRing", s);
      if (Status s = dp.upsertService(keys[size_t(i)], {uint32_t(i), 0, {}}); !s) die("upsertService", s);
    }
  };
  row("service writes", n, reps, null, batcher, [&](Dataplane& dp) { writes(dp, 0); });
  row("written twice", n, reps, null, batcher, [&](Dataplane& dp) {
    writes(dp, 0);
    writes(dp, KEEL_SVC_F_SCHED_SRC);
  });
  row("ring (M=16) + service", n, reps, null, batcher, [&](Dataplane& dp) { ringsAndWrites(dp, small); });
  row("ring (M=65537) + service", n, reps, null, batcher, [&](Dataplane& dp) { ringsAndWrites(dp, large); });
}

}  // namespace
}  // namespace keel

int main(int argc, char** argv) {
  const keel::Options o = keel::parseArgs(argc, argv);
  std::printf("ring_batcher_bench: one batch of n services through RingBatcher over a null plane\n");
  std::printf("machine: %s\n", keel::bench::machineDescription().c_str());
  std::printf("load average at start: %s\n", keel::bench::loadAverage().c_str());
  std::printf("method: each case one batch (begin, the calls, end), %d reps alternating with the in-run\n"
              "        baseline, the same calls straight on the null plane (null med); times in ms (us/service:\n"
              "        batch med / n), wall unless cpu; see the header comment.\n",
              o.reps);
  for (int n : o.services) keel::run(n, o.reps);
  std::printf("\nload average at end: %s\n", keel::bench::loadAverage().c_str());
  return 0;
}

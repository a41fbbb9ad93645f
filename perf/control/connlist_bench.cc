// SPDX-License-Identifier: Apache-2.0
// What `keelctl conns` (conn.list) costs, by step: the walk and judging of
// the entries (Registry::connList = prepareConnList + ConnListJob::run; keeld
// runs the job on a thread of its own) and what keeld's loop spends itself
// (prepareConnList's copy of services and reals; the reply is built on the
// walk's thread too, then written by the loop).
//
// Method: a Registry over a data plane whose scanConns() walks an in-memory
// vector of N entries (default 1,000,000, the default table size), S
// services x R reals applied first; every entry names one of the reals at
// its generation (a few not: removed, idle), flows spread over the services.
// Baseline, same run: the walk alone (scanConns with a visitor that only
// counts), the part a real data plane replaces with its own read (XDP's
// batched map read took 269 ms for 1M entries on the test box, docs/api.md).
// Steps: Registry::connList counting only (limit 0, `--count`), listing the
// default 1,000 and the cap of 10,000, with --real; then the reply: the
// dispatcher's JSON of 1,000 and 10,000 listed entries, built and dumped.
// Each step is the median of RUNS runs, wall clock.
//
// Usage: connlist_bench [ENTRIES [SERVICES [REALS [RUNS]]]]
#include <arpa/inet.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "control/api/dispatcher.h"
#include "common/logging.h"
#include "control/registry.h"
#include "fake_backend.h"
#include "mock_dataplane.h"

#include "../common/bench_env.h"

using namespace keel;

namespace {

// The mock's state, and a table of entries scanConns() walks.
class ScanDataplane final : public test::MockDataplane {
 public:
  std::vector<std::pair<keel_flow_key, ConnEntry>> table;
  Status scanConns(const ConnVisitor& visit) override {
    for (const auto& [k, e] : table) visit(k, e, -1);
    return Status::ok();
  }
};

double msOf(const std::function<void()>& f) {
  const auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

double medianMs(int runs, const std::function<void()>& f) {
  std::vector<double> v;
  for (int i = 0; i < runs; ++i) v.push_back(msOf(f));
  return bench::median(v);
}

}  // namespace

int main(int argc, char** argv) {
  const size_t entries = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 1000000;
  const int services = argc > 2 ? std::atoi(argv[2]) : 100;
  const int reals = argc > 3 ? std::atoi(argv[3]) : 10;
  const int runs = argc > 4 ? std::atoi(argv[4]) : 5;
  if (entries == 0 || services < 1 || services > 250 || reals < 1 || reals > 250 || runs < 1) {
    std::fprintf(stderr, "usage: connlist_bench [ENTRIES [SERVICES 1..250 [REALS 1..250 [RUNS]]]]\n");
    return 2;
  }
  (void)setupLogging("warn");
  ScanDataplane dp;
  Registry reg(dp);
  Config c;
  for (int s = 0; s < services; ++s) {
    ServiceConfig svc;
    svc.name = "svc" + std::to_string(s);
    svc.vip = *IpAddress::parse("10.100." + std::to_string(s) + ".1");
    svc.port = 80;
    svc.protocol = KEEL_PROTO_TCP;
    svc.ringSize = 13;
    for (int r = 0; r < reals; ++r) {
      RealConfig rc;
      rc.address = *IpAddress::parse("10.200." + std::to_string(s) + "." + std::to_string(r + 1));
      rc.weight = 100;
      svc.reals.push_back(rc);
    }
    c.services.push_back(std::move(svc));
  }
  if (Status st = reg.apply(c); !st) {
    std::fprintf(stderr, "apply: %s\n", st.message().c_str());
    return 1;
  }
  std::vector<ServiceView> views = reg.services();
  dp.table.reserve(entries);
  for (size_t i = 0; i < entries; ++i) {
    const ServiceView& v = views[i % views.size()];
    const RealView& r = v.reals[(i / views.size()) % v.reals.size()];
    keel_flow_key k{};
    k.src[0] = htonl(0xc6000000u + static_cast<uint32_t>(i));
    v.vip.toWords(k.dst);
    k.sport = htons(static_cast<uint16_t>(1024 + i % 60000));
    k.dport = htons(80);
    k.proto = KEEL_PROTO_TCP;
    k.family = KEEL_AF_INET;
    ConnEntry e{r.backendId, r.gen, (i % 300) * 1'000'000'000ull, i % 97 == 0};
    if (i % 101 == 0) e.backendId = 60000;  // no real of the service: removed
    dp.table.emplace_back(k, e);
  }
  const IpAddress oneReal = views[0].reals[0].address;

  std::printf("connlist_bench: keelctl conns (conn.list): the walk (its own thread) and keeld's loop\n");
  std::printf("machine: %s\n", bench::machineDescription().c_str());
  std::printf("method: %zu entries over %d services x %d reals, a data plane that walks a vector;\n"
              "        median of %d runs each, wall clock; baseline: that walk alone\n",
              entries, services, reals, runs);
  std::printf("load average at start: %s\n", bench::loadAverage().c_str());

  uint64_t seen = 0;
  const double base = medianMs(runs, [&] {
    seen = 0;
    (void)dp.scanConns([&](const keel_flow_key&, const ConnEntry&, int) { ++seen; });
  });
  auto listMs = [&](ConnQuery q, ConnList* out) {
    return medianMs(runs, [&] {
      if (Status st = reg.connList(q, out); !st) std::abort();
    });
  };
  ConnList l;
  ConnQuery q;
  q.limit = 0;
  const double count = listMs(q, &l);
  q.limit = 1000;
  const double list1k = listMs(q, &l);
  ConnList l10k;
  q.limit = 10000;
  const double list10k = listMs(q, &l10k);
  q.real = oneReal;
  q.limit = 1000;
  const double byReal = listMs(q, &l);
  // What the loop itself spends before the walk: the copy of the services
  // and reals the walk judges entries by (Registry::prepareConnList).
  const double prepare = medianMs(runs, [&] {
    std::optional<ConnListJob> job;
    if (Status st = reg.prepareConnList(ConnQuery{}, &job); !st) std::abort();
  });

  // The reply: the dispatcher's JSON of what the registry listed.
  api::testing::FakeBackend fake;
  api::Dispatcher disp(fake);
  auto replyMs = [&](const ConnList& cl, size_t limit) {
    fake.connListResult = cl;
    const std::string req = R"({"id":1,"method":"conn.list","params":{"limit":)" + std::to_string(limit) + "}}";
    size_t bytes = 0;
    const double ms = medianMs(runs, [&] {
      // The fake answers at once: the reply is built and dumped here.
      api::DispatchOutcome out = disp.handleLine(req);
      out.later([&](nlohmann::json r) { bytes = r.dump().size(); });
    });
    return std::make_pair(ms, bytes);
  };
  q = ConnQuery{};
  q.limit = 1000;
  (void)reg.connList(q, &l);
  const auto [reply1k, bytes1k] = replyMs(l, 1000);
  const auto [reply10k, bytes10k] = replyMs(l10k, 10000);

  std::printf("step                                   ms   x base\n");
  std::printf("baseline (walk alone, %llu entries) %8.1f     1.00\n", static_cast<unsigned long long>(seen), base);
  std::printf("connList, count only (--count)     %8.1f %8.2f\n", count, count / base);
  std::printf("connList, list 1,000               %8.1f %8.2f\n", list1k, list1k / base);
  std::printf("connList, list 10,000              %8.1f %8.2f\n", list10k, list10k / base);
  std::printf("connList, --real, list 1,000       %8.1f %8.2f\n", byReal, byReal / base);
  std::printf("prepareConnList (keeld's loop)     %8.3f %8.3f\n", prepare, prepare / base);
  std::printf("reply JSON, 1,000 entries (%zu B) %8.1f %8.2f\n", bytes1k, reply1k, reply1k / base);
  std::printf("reply JSON, 10,000 entries (%zu B) %8.1f %8.2f\n", bytes10k, reply10k, reply10k / base);
  std::printf("load average at end: %s\n", bench::loadAverage().c_str());
  return 0;
}

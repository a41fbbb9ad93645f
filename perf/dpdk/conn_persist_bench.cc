// SPDX-License-Identifier: Apache-2.0
// conn_persist_bench: how long a clean stop of the DPDK plane takes to save
// its connection tables, and the next start to load them, by live flows.
//
// Why: the save runs inside the stop (saveConnTables: the workers stopped,
// then exportConns and writeConnFile), and systemd kills keeld when the stop
// outlasts TimeoutStopSec (30 s in deploy/keeld.service.in); the load runs
// in the next start before the workers read a packet (consumeConnFile,
// restoreConns). Operators need both as a function of their flow count.
//
// Method: pure C++ over conn_persist.h, no EAL (as the unit tests drive it).
// A TableStore holds 8 TCP services on one VIP (ports 80, 443, 8080, ...),
// 16 reals each, ipip, the default limits (1,024 services, 16,384 reals)
// and keel's default idle timeouts (TCP 900 s, UDP 30 s). The workers'
// tables are sized as the DPDK plane sizes them (dpdk_dataplane.cc, init):
// conn_table_size / workers (rounded up) flows a family a worker; the
// conn_table_size is the default 1,000,000, or twice the flow count when
// that is larger (operations.md "Capacity": size the table for the flows,
// with headroom of x1.5 to x2); --table N sets it (--table FLOWS: a table
// its flows fill, where 4-way buckets overflow).
// FLOWS distinct flows (IPv4 by default, --ipv6: IPv6), spread over the
// workers and the services round robin, each on a random real of its
// service, last seen 0-600 s ago, are inserted as a worker would; a flow
// whose bucket is full evicts, so the tables hold a little fewer than FLOWS
// entries ("live entries" below, what the file then holds). The tables are
// on the heap (2 MiB-aligned, THP advised: kHeapConnMemory), not on EAL
// hugepages as in keeld. Each round then times, one after the other, on
// this thread:
//   export       exportConns over every worker's table (the whole walk of
//                both families' ways, and a record per live entry)
//   encode       encodeConns: the file's bytes in memory (the stop does not
//                call it: writeConnFile encodes as it writes; shown apart)
//   write file   writeConnFile into a private directory on /dev/shm (a
//                tmpfs, as /run is): encode + write + fsync + rename
//   read+decode  consumeConnFile: read, decode, check, remove
//   restore      restoreConns into fresh tables of the same sizes and
//                count (each table takes its saved hash seeds, then each
//                entry goes into its own worker's table, its own bucket),
//                or, with --restore-workers N, into N tables (every entry
//                into every table under their own seeds: sort, dedupe, N
//                inserts an entry)
// The fresh tables are allocated (and zeroed) outside the timing, as
// keeld builds them before it restores. Baseline, same round, same bytes:
//   read tables  a sequential 8-byte read of a buffer the size of every
//                worker's table memory (what export cannot beat)
//   memcpy       the file's bytes copied into a fresh buffer (encode's floor)
//   write()      the file's bytes written with write() in 1 MiB pieces,
//                fsync, to a file in the same directory (write file's floor)
//   read()       those bytes read back with read() in 1 MiB pieces into one
//                1 MiB buffer (read+decode's floor: consumeConnFile reads
//                through a small buffer too, and decodes into its records)
//   inserts      ConnTable::insert of the loaded entries straight into
//                fresh tables (given the saved seeds as restore gives
//                them), no checks, no sort (restore's floor)
// Each quantity is wall time (steady_clock) and this thread's CPU time
// (CLOCK_THREAD_CPUTIME_ID: user + system, the tmpfs copy included); the
// summary gives medians over the rounds (wall: also the range), and the
// stop side (export + write file) and start side (read+decode + restore)
// as sums of the medians.
//
// Usage: conn_persist_bench [--flows N[,N...]] [--rounds N] [--workers N]
//                           [--restore-workers N] [--table N] [--ipv6] [--dir DIR]
// Defaults: --flows 100000,1000000,4000000 --rounds 3 --workers 2;
// --table N fixes conn_table_size; --dir the directory the private one is
// made in (/dev/shm). Peak memory with 4,000,000 flows: ~4 GB (the tables
// and their stand-in, fresh tables, the records twice, the file twice);
// `--flows 16000000 --table 16000000`: ~8 GB.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <time.h>

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "control/maglev/maglev.h"
#include "dataplane/dpdk/conn_persist.h"
#include "dataplane/dpdk/conn_table.h"
#include "dataplane/dpdk/tables.h"
#include "keel/maglev_lookup.h"

#include "../common/bench_env.h"

using namespace keel;

namespace {

constexpr uint32_t kServices = 8;
constexpr uint32_t kRealsPerService = 16;
constexpr uint64_t kSecond = 1000000000ull;
// The worker clock at the save (any value past the ages will do).
constexpr uint64_t kNowNs = 100000 * kSecond;
constexpr uint64_t kMaxAgeNs = 600 * kSecond;  // under the 900 s TCP idle timeout: every entry is live
constexpr size_t kIoChunk = 1u << 20;

IpAddress ip(const std::string& s) { return *IpAddress::parse(s); }

struct Options {
  std::vector<uint64_t> flows{100000, 1000000, 4000000};
  int rounds = 3;
  uint32_t workers = 2;
  uint32_t restoreWorkers = 0;  // 0: = workers
  uint32_t table = 0;           // 0: max(default, 2 x flows)
  bool ipv6 = false;
  std::string dir = "/dev/shm";
};

// The services and reals (see the header comment) in a TableStore.
bool loadServices(dpdk::TableStore& t, bool v6) {
  const IpAddress vip = ip(v6 ? "2001:db8::100" : "10.0.0.100");
  const uint8_t family = v6 ? KEEL_AF_INET6 : KEEL_AF_INET;
  keel_node_config node{};
  std::memcpy(&node.tunnel_src_v4, ip("192.0.2.1").bytes().data(), 4);
  std::memcpy(node.tunnel_src_v6, ip("2001:db8:1::1").bytes().data(), 16);
  node.tcp_idle_timeout_s = 900;
  node.udp_idle_timeout_s = 30;
  t.beginBatch();
  bool ok = t.setNode(node).isOk();
  keel_vip_key vk{};
  vip.toWords(vk.addr);
  vk.family = family;
  ok = ok && t.addVip(vk).isOk();
  for (uint32_t s = 0; s < kServices; ++s) {
    keel_service_key sk{};
    vip.toWords(sk.vip);
    sk.port = KEEL_HTONS(static_cast<uint16_t>(s == 0 ? 80 : s == 1 ? 443 : 8000 + s));
    sk.proto = KEEL_PROTO_TCP;
    sk.family = family;
    keel_service_value sv{};
    sv.id = s;
    ok = ok && t.upsertService(sk, sv).isOk();
    std::vector<MaglevReal> reals;
    for (uint32_t r = 0; r < kRealsPerService; ++r) {
      const uint32_t id = s * kRealsPerService + r;
      keel_backend b{};
      const std::string n = std::to_string(s + 1) + (v6 ? ":" : ".") + std::to_string(r + 1);
      IpAddress a = ip(v6 ? "fc00:1::" + n : "10.1." + n);
      a.toWords(b.addr);
      b.service_id = s;
      b.family = family;
      b.flags = KEEL_BE_F_VALID;
      b.gen = 1;
      ok = ok && t.upsertBackend(id, b).isOk();
      reals.push_back({a, 1, id});
    }
    ok = ok && t.publishRing(s, buildMaglevTable(reals, KEEL_RING_SIZE_DEFAULT)).isOk();
  }
  t.endBatch();
  return ok;
}

// Flow i: a distinct client (i through an odd multiplier, a bijection of
// 32 bits) to its service's VIP port; its worker and service round robin.
struct Flow {
  keel_flow_key key;
  uint32_t worker;
  uint32_t backendId;
  uint64_t lastSeen;
};

std::vector<Flow> makeFlows(uint64_t n, uint32_t workers, bool v6) {
  std::mt19937_64 rng(7);
  std::vector<Flow> flows(n);
  const IpAddress vip = ip(v6 ? "2001:db8::100" : "10.0.0.100");
  for (uint64_t i = 0; i < n; ++i) {
    Flow& f = flows[i];
    f.key = keel_flow_key{};
    const uint32_t a = static_cast<uint32_t>(i * 0x9e3779b1ull);
    if (v6) {
      const uint8_t prefix[8] = {0x20, 0x01, 0x0d, 0xb8, 0xff, 0xff, 0, 0};
      std::memcpy(f.key.src, prefix, 8);
      const uint32_t b = static_cast<uint32_t>(rng());
      std::memcpy(&f.key.src[2], &b, 4);
      std::memcpy(&f.key.src[3], &a, 4);
      f.key.family = KEEL_AF_INET6;
    } else {
      f.key.src[0] = a;
      f.key.family = KEEL_AF_INET;
    }
    uint32_t vipWords[4];
    vip.toWords(vipWords);
    std::memcpy(f.key.dst, vipWords, sizeof vipWords);
    const uint32_t svc = static_cast<uint32_t>(i % kServices);
    f.key.sport = KEEL_HTONS(static_cast<uint16_t>(1024 + rng() % 60000));
    f.key.dport = KEEL_HTONS(static_cast<uint16_t>(svc == 0 ? 80 : svc == 1 ? 443 : 8000 + svc));
    f.key.proto = KEEL_PROTO_TCP;
    f.worker = static_cast<uint32_t>((i / kServices) % workers);
    f.backendId = svc * kRealsPerService + static_cast<uint32_t>(rng() % kRealsPerService);
    f.lastSeen = kNowNs - rng() % kMaxAgeNs;
  }
  return flows;
}

// A worker's table as dpdk_dataplane.cc's init() builds it, on the heap.
std::vector<std::unique_ptr<dpdk::ConnTable>> makeTables(uint32_t connTableSize, uint32_t workers) {
  const uint32_t perWorker = (connTableSize + workers - 1) / workers;
  std::vector<std::unique_ptr<dpdk::ConnTable>> t;
  for (uint32_t w = 0; w < workers; ++w) t.push_back(std::make_unique<dpdk::ConnTable>(perWorker));
  return t;
}

double cpuNowS() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

struct Sample {
  std::vector<double> wallMs, cpuMs;
};

// Runs f once, adding its wall and CPU milliseconds to s.
template <typename F>
void timed(Sample& s, F&& f) {
  const double c0 = cpuNowS();
  const auto w0 = std::chrono::steady_clock::now();
  f();
  const auto w1 = std::chrono::steady_clock::now();
  const double c1 = cpuNowS();
  s.wallMs.push_back(std::chrono::duration<double, std::milli>(w1 - w0).count());
  s.cpuMs.push_back((c1 - c0) * 1e3);
}

// The private directory the files go in (main), and what may be left in it.
std::string gDir;
void removeDir() {
  if (gDir.empty()) return;
  for (const char* f : {"/conntrack-dpdk-0.bin", "/conntrack-dpdk-0.bin.tmp", "/plain.bin"})
    std::remove((gDir + f).c_str());
  ::rmdir(gDir.c_str());
}

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "conn_persist_bench: %s\n", what.c_str());
  removeDir();
  std::exit(1);
}

bool writeAll(const std::string& path, const char* data, size_t n) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return false;
  bool ok = true;
  for (size_t off = 0; ok && off < n;) {
    const ssize_t w = ::write(fd, data + off, std::min(kIoChunk, n - off));
    ok = w > 0;
    if (ok) off += static_cast<size_t>(w);
  }
  ok = ok && ::fsync(fd) == 0;
  return ::close(fd) == 0 && ok;
}

// Reads path's n bytes through one kIoChunk buffer (a fresh buffer of n
// bytes would time its page faults as well).
bool readAll(const std::string& path, size_t n) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  std::unique_ptr<char[]> buf(new char[kIoChunk]);
  size_t off = 0;
  for (;;) {  // bounded by the file's size
    const ssize_t r = ::read(fd, buf.get(), std::min(kIoChunk, n - off));
    if (r <= 0) break;
    off += static_cast<size_t>(r);
    if (off == n) break;
  }
  ::close(fd);
  return off == n;
}

std::string withCommas(uint64_t v) {
  std::string s = std::to_string(v);
  for (int i = static_cast<int>(s.size()) - 3; i > 0; i -= 3) s.insert(static_cast<size_t>(i), ",");
  return s;
}

void runFlows(const Options& o, uint64_t nFlows, const std::string& dir) {
  const uint32_t connTableSize =
      o.table ? o.table
              : static_cast<uint32_t>(std::min<uint64_t>(1u << 28, std::max<uint64_t>(KEEL_CT_SIZE_DEFAULT, 2 * nFlows)));
  const uint32_t restoreWorkers = o.restoreWorkers ? o.restoreWorkers : o.workers;
  dpdk::TableStore store(KEEL_MAX_SERVICES_DEFAULT, KEEL_MAX_BACKENDS_DEFAULT, [] {});
  if (!loadServices(store, o.ipv6)) fail("cannot load the services");
  const dpdk::Snapshot& snap = *store.current();

  auto tables = makeTables(connTableSize, o.workers);
  std::vector<const dpdk::ConnTable*> view;
  for (const auto& t : tables) view.push_back(t.get());
  {
    const std::vector<Flow> flows = makeFlows(nFlows, o.workers, o.ipv6);
    for (const Flow& f : flows) {
      dpdk::ConnTable& t = *tables[f.worker];
      t.insert(f.key, t.hashOf(f.key), f.backendId, 1, f.lastSeen);
    }
  }
  uint64_t live = 0;
  for (const auto& t : tables) live += t->occupied();
  const uint64_t perFamily = tables[0]->capacity();
  // Both families' ways of every worker: 32 bytes an IPv4 way, 64 an IPv6 one.
  const size_t tableBytes = static_cast<size_t>(o.workers) * perFamily * (32 + 64);
  const size_t fileBytes = dpdk::ConnFile::entriesOffset(o.workers) + live * dpdk::ConnFile::kEntrySize;
  std::printf("\n%s %s flows, %u workers, conn_table_size %s: %s ways a family a worker, %.0f MiB of tables;\n"
              "  %s live entries (%.2f %% of the flows, the rest evicted from full buckets; %.0f %% of the %s\n"
              "  ways), file %.1f MiB\n",
              withCommas(nFlows).c_str(), o.ipv6 ? "IPv6" : "IPv4", o.workers, withCommas(connTableSize).c_str(),
              withCommas(perFamily).c_str(), static_cast<double>(tableBytes) / (1 << 20), withCommas(live).c_str(),
              100.0 * static_cast<double>(live) / static_cast<double>(nFlows),
              100.0 * static_cast<double>(live) / static_cast<double>(perFamily * o.workers), o.ipv6 ? "IPv6" : "IPv4",
              static_cast<double>(fileBytes) / (1 << 20));
  if (restoreWorkers != o.workers)
    std::printf("  restored into %u workers' tables (conn_table_size / %u each): every entry into every table\n",
                restoreWorkers, restoreWorkers);
  std::fflush(stdout);

  // The baseline's stand-in for the tables' memory: the same size, every
  // page written (a read of never-written pages would read the zero page).
  std::unique_ptr<uint64_t[]> tableCopy(new uint64_t[tableBytes / 8]);
  std::memset(tableCopy.get(), 1, tableBytes);

  const std::string path = dir + "/conntrack-dpdk-0.bin";
  const std::string plainPath = dir + "/plain.bin";
  Sample exportS, encodeS, writeS, consumeS, restoreS, readTablesS, memcpyS, plainWriteS, plainReadS, insertS;
  uint64_t saved = 0, loaded = 0, restored = 0, lostNoRoom = 0;
  bool seedsRestored = false;
  volatile uint64_t sink = 0;
  for (int round = 0; round < o.rounds; ++round) {
    timed(readTablesS, [&] {
      uint64_t x = 0;
      for (size_t i = 0; i < tableBytes / 8; ++i) x += tableCopy[i];
      sink = sink + x;
    });

    dpdk::SavedConns out;
    timed(exportS, [&] { out = dpdk::exportConns(snap, view, kNowNs, 1 * kSecond); });
    saved = out.records.size();
    if (saved != live) fail("export saved " + std::to_string(saved) + " of " + std::to_string(live));

    std::string bytes;
    timed(encodeS, [&] { bytes = dpdk::encodeConns(out); });
    if (bytes.size() != fileBytes) fail("encodeConns gave " + std::to_string(bytes.size()) + " bytes");
    timed(memcpyS, [&] {
      std::unique_ptr<char[]> copy(new char[bytes.size()]);
      std::memcpy(copy.get(), bytes.data(), bytes.size());
      sink = sink + static_cast<uint8_t>(copy[bytes.size() / 2]);
    });

    Status ws;
    timed(writeS, [&] { ws = dpdk::writeConnFile(path, out); });
    if (!ws) fail("writeConnFile: " + ws.message());
    out = dpdk::SavedConns{};  // its records: freed, as after the stop's save
    bool plainOk = false;
    timed(plainWriteS, [&] { plainOk = writeAll(plainPath, bytes.data(), bytes.size()); });
    if (!plainOk) fail("write() of " + plainPath + " failed");
    timed(plainReadS, [&] { plainOk = readAll(plainPath, bytes.size()); });
    if (!plainOk) fail("read() of " + plainPath + " failed");
    std::remove(plainPath.c_str());
    bytes = std::string();

    dpdk::SavedConns in;
    bool found = false;
    Status rs;
    timed(consumeS, [&] { rs = dpdk::consumeConnFile(path, &in, &found); });
    if (!rs || !found) fail("consumeConnFile: " + (rs ? std::string("no file") : rs.message()));
    loaded = in.records.size();

    {
      auto fresh = makeTables(connTableSize, restoreWorkers);
      std::vector<dpdk::ConnTable*> into;
      for (auto& t : fresh) into.push_back(t.get());
      dpdk::ConnRestoreReport rep;
      // The next start: its worker clock anywhere, 2 s of wall clock after the save.
      timed(restoreS, [&] { rep = dpdk::restoreConns(snap, into, in, 7 * kNowNs, 3 * kSecond); });
      if (!rep.restored) fail("restoreConns: " + rep.notRestored);
      restored = rep.loaded;
      lostNoRoom = rep.lostNoRoom;
      seedsRestored = rep.seedsRestored;
    }
    {
      auto fresh = makeTables(connTableSize, restoreWorkers);
      const bool toAll = restoreWorkers != o.workers;
      if (!toAll && in.seeds.size() == restoreWorkers)
        for (uint32_t w = 0; w < restoreWorkers; ++w) fresh[w]->reseed(in.seeds[w]);
      timed(insertS, [&] {
        for (const dpdk::ConnRecord& r : in.records) {
          if (toAll) {
            for (auto& t : fresh) t->insert(r.flow, t->hashOf(r.flow), 1, 1, 7 * kNowNs - r.ageNs);
          } else {
            dpdk::ConnTable& t = *fresh[r.worker];
            t.insert(r.flow, t.hashOf(r.flow), 1, 1, 7 * kNowNs - r.ageNs);
          }
        }
      });
    }
    std::printf("  round %d: export %.1f, write file %.1f, read+decode %.1f, restore %.1f ms (wall)\n", round + 1,
                exportS.wallMs.back(), writeS.wallMs.back(), consumeS.wallMs.back(), restoreS.wallMs.back());
    std::fflush(stdout);
  }

  struct Row {
    const char* step;
    const Sample& s;
    const char* base;
    const Sample& b;
  };
  const Row rows[] = {
      {"export (walk + records)", exportS, "read tables", readTablesS},
      {"encode (in memory)", encodeS, "memcpy", memcpyS},
      {"write file (encode+write)", writeS, "write()", plainWriteS},
      {"read+decode (consume)", consumeS, "read()", plainReadS},
      {"restore", restoreS, "inserts", insertS},
  };
  std::printf("  %d rounds; saved %s, read %s, restored %s entries (lost_no_room %s; seeds restored: %s)\n", o.rounds,
              withCommas(saved).c_str(), withCommas(loaded).c_str(), withCommas(restored).c_str(),
              withCommas(lostNoRoom).c_str(), seedsRestored ? "yes" : "no");
  std::printf("  %-26s %10s %-15s %8s %6s    %-12s %9s %8s  %s\n", "step", "wall ms", "(range)", "CPU ms",
              "ns/ent", "baseline", "wall ms", "CPU ms", "ratio (wall)");
  auto range = [](const Sample& s) {
    char buf[48];
    std::snprintf(buf, sizeof buf, "(%.0f-%.0f)", *std::min_element(s.wallMs.begin(), s.wallMs.end()),
                  *std::max_element(s.wallMs.begin(), s.wallMs.end()));
    return std::string(buf);
  };
  for (const Row& r : rows) {
    const double w = bench::median(r.s.wallMs), bw = bench::median(r.b.wallMs);
    std::printf("  %-26s %10.1f %-15s %8.1f %6.0f    %-12s %9.1f %8.1f  %.2f\n", r.step, w, range(r.s).c_str(),
                bench::median(r.s.cpuMs), live ? w * 1e6 / static_cast<double>(live) : 0.0, r.base, bw,
                bench::median(r.b.cpuMs), bw > 0 ? w / bw : 0.0);
  }
  const double stop = bench::median(exportS.wallMs) + bench::median(writeS.wallMs);
  const double start = bench::median(consumeS.wallMs) + bench::median(restoreS.wallMs);
  std::printf("  stop side (export + write file): %.1f ms (%.0f ns a live entry); "
              "start side (read+decode + restore): %.1f ms (%.0f ns a live entry)\n",
              stop, live ? stop * 1e6 / static_cast<double>(live) : 0.0, start,
              live ? start * 1e6 / static_cast<double>(live) : 0.0);
  std::fflush(stdout);
}

std::vector<uint64_t> parseList(const std::string& s) {
  std::vector<uint64_t> v;
  size_t pos = 0;
  while (pos <= s.size()) {
    const size_t comma = std::min(s.find(',', pos), s.size());
    v.push_back(std::strtoull(s.substr(pos, comma - pos).c_str(), nullptr, 10));
    pos = comma + 1;
  }
  return v;
}

std::string utcNow() {
  const std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", std::gmtime(&t));
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 < argc && a == "--flows") o.flows = parseList(argv[++i]);
    else if (i + 1 < argc && a == "--rounds") o.rounds = std::atoi(argv[++i]);
    else if (i + 1 < argc && a == "--workers") o.workers = static_cast<uint32_t>(std::atoi(argv[++i]));
    else if (i + 1 < argc && a == "--restore-workers") o.restoreWorkers = static_cast<uint32_t>(std::atoi(argv[++i]));
    else if (i + 1 < argc && a == "--table") o.table = static_cast<uint32_t>(std::strtoul(argv[++i], nullptr, 10));
    else if (i + 1 < argc && a == "--dir") o.dir = argv[++i];
    else if (a == "--ipv6") o.ipv6 = true;
    else {
      std::fprintf(stderr,
                   "usage: conn_persist_bench [--flows N[,N...]] [--rounds N] [--workers N] [--restore-workers N]\n"
                   "                          [--table N] [--ipv6] [--dir DIR]\n"
                   "conn_persist_bench: unknown or incomplete argument \"%s\"\n", a.c_str());
      return 2;
    }
  }
  const bool flowsOk = !o.flows.empty() && std::all_of(o.flows.begin(), o.flows.end(), [](uint64_t f) {
    return f >= 1 && f <= (1u << 28);
  });
  if (!flowsOk || o.rounds < 1 || o.workers < 1 || o.workers > 1024 || o.restoreWorkers > 1024 ||
      o.table > (1u << 28)) {
    std::fprintf(stderr, "conn_persist_bench: need flows 1 to 268435456, --rounds >= 1, --workers 1 to 1024, "
                         "--restore-workers up to 1024, --table up to 268435456\n");
    return 2;
  }
  std::string tmpl = o.dir + "/keel-conn-persist-bench-XXXXXX";
  if (!mkdtemp(tmpl.data())) fail("mkdtemp in " + o.dir + ": " + std::strerror(errno));
  const std::string dir = tmpl;
  gDir = dir;

  std::printf("conn_persist_bench: the DPDK plane's connection-table save (clean stop) and load (next start)\n");
  std::printf("machine: %s\n", bench::machineDescription().c_str());
  std::printf("started: %s; load average at start: %s\n", utcNow().c_str(), bench::loadAverage().c_str());
  std::printf("method: conn_persist.h without EAL, tables on the heap (THP advised), sized as the DPDK plane\n"
              "        does (conn_table_size / workers a family a worker; conn_table_size = max(1,000,000, 2 x flows)\n"
              "        unless --table); %u TCP services x %u reals, TCP idle 900 s, entries 0-600 s old;\n"
              "        one thread; each round times export, encode, write file, read+decode, restore and,\n"
              "        on the same bytes, the baselines: a sequential read of the tables' size, memcpy,\n"
              "        write()+fsync and read() in 1 MiB pieces, plain inserts; medians over the rounds\n"
              "        the files in %s (tmpfs)\n",
              kServices, kRealsPerService, dir.c_str());
  std::fflush(stdout);
  for (uint64_t f : o.flows) runFlows(o, f, dir);
  removeDir();
  std::printf("\nload average at end: %s; ended %s\n", bench::loadAverage().c_str(), utcNow().c_str());
  return 0;
}

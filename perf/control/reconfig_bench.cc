// SPDX-License-Identifier: Apache-2.0
// reconfig_bench: how long one real's change takes through the real control
// path, Registry::apply (diff of every service) -> buildMaglevTable ->
// Dataplane::publishRing, with S services of R reals each (default 1,000
// services of 10 reals, M=65537).
//
// Method. The registry first applies the whole config (timed: start-up).
// Then each case applies a config that differs from the running one in one
// real of one service, and the next rep reverts it, so every timed apply
// really changes something; reps rotate over the services. Cases:
//   no change      apply() of the identical config: the diff alone
//   weight change  one real's weight 100 -> 50 (and back): ring rebuilt
//   remove real    one real removed (timed) and added back (timed apart)
//   every service  one real removed from every service in one apply, then
//                  added back (one rep each); last, every service removed
// Each case runs against three data planes, in this order:
//   null  a Dataplane that does nothing: the control plane's own cost
//   xdp   the XDP data plane, attached natively to a veth in a private
//         network namespace the bench makes (so no host interface is
//         touched); needs root. Skipped with --no-xdp. Twice, each on
//         fresh pins: the plane alone (each ring swap its own map update,
//         the in-run baseline) and behind a RingBatcher, as keeld drives it
//         (a batch's ring swaps in one update).
//   dpdk  the DPDK data plane on a net_null vdev (--no-huge, --no-pci),
//         one worker lcore busy-polling it on CPU 1, so every snapshot
//         swap waits for a real worker's quiescent state. Skipped with
//         --no-dpdk.
// In-run baselines, same process: one buildMaglevTable of 10 reals; one
// XdpDataplane::publishRing alone; and the publish split into its kernel
// steps on a private map-in-map (create + batch-fill an inner array; swap
// it into an ARRAY_OF_MAPS, whose update waits for an RCU grace period;
// and the same swap for a batch of rings in one BPF_MAP_UPDATE_BATCH).
// Wall time (steady_clock) and thread CPU time are both printed: a publish
// that waits on RCU shows wall >> CPU.
//
// Health case: every real of H services (--health-services, default 100,
// at most S; --services 1 --reals 10000 --health-services 1 is one large
// service whose reals all fail at once) goes down and then comes back up, ordered real-major (real 0 of
// every service, then real 1, ...) as independent checkers would report
// them; once with one Registry::setRealHealth per verdict (what keeld did
// before it handed a loop turn's transitions over together), once with all
// of them in one Registry::setRealsHealth (each service's ring built and
// published once). Fail-open holds each service's last real, as in keeld.
//
// Usage: reconfig_bench [--services S] [--reals R] [--reps N] [--health-services H] [--no-xdp] [--no-dpdk]
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <sched.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/logging.h"
#include "dataplane/ring_batcher.h"
#include "control/config.h"
#include "control/maglev/maglev.h"
#include "control/registry.h"
#include "dataplane/dpdk/dpdk_dataplane.h"
#include "dataplane/xdp/xdp_dataplane.h"
#include "keel/maglev_lookup.h"
#include "null_dataplane.h"

#include "../common/bench_env.h"

namespace {

using keel::Config;
using keel::IpAddress;
using keel::Registry;
using keel::Status;

struct Options {
  int services = 1000;
  int reals = 10;  // per service, at least 4 (the weight case changes real 3)
  int reps = 21;
  int healthServices = 100;  // the health case's services (at most --services)
  bool xdp = true;
  bool dpdk = true;
};

Options parseArgs(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&](const char* name) {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "reconfig_bench: %s needs a value\n", name);
        std::exit(2);
      }
      int v = std::atoi(argv[++i]);
      if (v < 1) {
        std::fprintf(stderr, "reconfig_bench: %s must be a positive integer, got '%s'\n", name, argv[i]);
        std::exit(2);
      }
      return v;
    };
    if (a == "--services") {
      o.services = value("--services");
    } else if (a == "--reals") {
      o.reals = value("--reals");
    } else if (a == "--reps") {
      o.reps = value("--reps");
    } else if (a == "--health-services") {
      o.healthServices = value("--health-services");
    } else if (a == "--no-xdp") {
      o.xdp = false;
    } else if (a == "--no-dpdk") {
      o.dpdk = false;
    } else {
      std::fprintf(stderr, "reconfig_bench: unknown argument '%s'\nusage: reconfig_bench [--services S] "
                   "[--reals R] [--reps N] [--health-services H] [--no-xdp] [--no-dpdk]\n", a.c_str());
      std::exit(2);
    }
  }
  if (o.reals < 4 || int64_t{o.services} * o.reals > 3 * 65536) {
    std::fprintf(stderr, "reconfig_bench: --reals must be at least 4, and services x reals at most 196608\n");
    std::exit(2);
  }
  // The DPDK plane is sized for the run; the XDP plane keeps its defaults.
  if (o.xdp && int64_t{o.services} * o.reals + 1 > int64_t{KEEL_MAX_BACKENDS_DEFAULT}) {
    std::fprintf(stderr, "reconfig_bench: %d x %d reals exceed the XDP data plane's %u backends (add --no-xdp)\n",
                 o.services, o.reals, KEEL_MAX_BACKENDS_DEFAULT);
    std::exit(2);
  }
  if (o.xdp && o.services > int(KEEL_MAX_SERVICES_DEFAULT)) {
    std::fprintf(stderr, "reconfig_bench: --services %d exceeds the XDP data plane's %u services (add --no-xdp)\n",
                 o.services, KEEL_MAX_SERVICES_DEFAULT);
    std::exit(2);
  }
  return o;
}

using keel::bench::threadCpuUs;

struct Sample {
  double wallUs, cpuUs;
};

Sample timeOnce(const std::function<void()>& fn) {
  double c0 = threadCpuUs();
  auto t0 = std::chrono::steady_clock::now();
  fn();
  auto t1 = std::chrono::steady_clock::now();
  return {std::chrono::duration<double, std::micro>(t1 - t0).count(), threadCpuUs() - c0};
}

// One printed row: median, best and p90 of wall time, median CPU time (ms).
void printRow(const std::string& name, std::vector<Sample> s) {
  std::vector<double> wall, cpu;
  for (const Sample& x : s) {
    wall.push_back(x.wallUs / 1e3);
    cpu.push_back(x.cpuUs / 1e3);
  }
  const keel::bench::Sorted sortedWall(wall);
  std::printf("  %-44s %10.3f %10.3f %10.3f %10.3f %5zu\n", name.c_str(), sortedWall.median(), sortedWall.quantile(0),
              sortedWall.quantile(0.9), keel::bench::median(cpu), wall.size());
}

void printHeader(const char* title) {
  std::printf("\n%s\n  %-44s %10s %10s %10s %10s %5s\n", title, "case", "wall med", "wall best", "wall p90",
              "cpu med", "n");
}

void die(const std::string& what, const Status& s) {
  std::fprintf(stderr, "reconfig_bench: %s: %s\n", what.c_str(), s.message().c_str());
  std::exit(1);
}

// S services on distinct VIPs (10.100.x.y:80/tcp), each with R reals
// (10.200.x.y and on, all distinct), weight 100, ipip, maglev, M=65537; no health
// checks (the registry's input is the same either way).
Config makeConfig(int services, int reals) {
  Config c;
  c.source = "reconfig_bench";
  for (int i = 0; i < services; ++i) {
    keel::ServiceConfig s;
    s.name = "svc" + std::to_string(i);
    s.vip = IpAddress::fromV4({10, 100, uint8_t(i >> 8), uint8_t(i)});
    s.port = 80;
    s.ringSize = KEEL_RING_SIZE_DEFAULT;
    for (int r = 0; r < reals; ++r) {
      keel::RealConfig rc;
      const int n = i * reals + r;
      rc.address = IpAddress::fromV4({10, uint8_t(200 + (n >> 16)), uint8_t(n >> 8), uint8_t(n)});
      rc.weight = 100;
      s.reals.push_back(rc);
    }
    c.services.push_back(std::move(s));
  }
  return c;
}

using keel::NullDataplane;  // the control plane's own cost: accepts everything, stores nothing

// Room for S services of R reals (at least the defaults).
keel::DataplaneLimits limitsFor(const Options& o) {
  keel::DataplaneLimits l;
  l.maxServices = std::max<uint32_t>(KEEL_MAX_SERVICES_DEFAULT, uint32_t(o.services));
  l.maxBackends = std::max<uint32_t>(KEEL_MAX_BACKENDS_DEFAULT, uint32_t(o.services) * uint32_t(o.reals) + 1024);
  return l;
}

// The reconfiguration cases against one data plane.
void runCases(const char* title, keel::Dataplane& dp, const Options& o) {
  Config base = makeConfig(o.services, o.reals);
  Registry registry(dp);
  printHeader(title);
  Sample start = timeOnce([&] {
    if (Status s = registry.apply(base); !s) die("initial apply", s);
  });
  printRow("start-up: apply " + std::to_string(o.services) + " services x " + std::to_string(o.reals) + " reals",
           {start});
  std::printf("  %-44s %10.3f ms per service\n", "", start.wallUs / 1e3 / o.services);

  std::vector<Sample> same;
  for (int k = 0; k < o.reps; ++k)
    same.push_back(timeOnce([&] {
      if (Status s = registry.apply(base); !s) die("apply unchanged", s);
    }));
  printRow("no change (diff only)", same);

  // Rotate over services so no case reuses one service's warm state.
  std::vector<Sample> weight, remove, add;
  for (int k = 0; k < o.reps; ++k) {
    const int svc = (k * 37) % o.services;
    Config changed = base;
    changed.services[svc].reals[3].weight = 50;
    weight.push_back(timeOnce([&] {
      if (Status s = registry.apply(changed); !s) die("apply weight change", s);
    }));
    weight.push_back(timeOnce([&] {
      if (Status s = registry.apply(base); !s) die("apply weight back", s);
    }));
    Config removed = base;
    removed.services[svc].reals.erase(removed.services[svc].reals.begin() + 3);
    remove.push_back(timeOnce([&] {
      if (Status s = registry.apply(removed); !s) die("apply remove real", s);
    }));
    add.push_back(timeOnce([&] {
      if (Status s = registry.apply(base); !s) die("apply add real back", s);
    }));
  }
  printRow("weight change of one real (and back)", weight);
  printRow("remove one real", remove);
  printRow("add it back", add);

  // One real out of every service at once (a server shared by every
  // service taken out), and back.
  Config withoutOne = base;
  for (keel::ServiceConfig& svc : withoutOne.services) svc.reals.erase(svc.reals.begin() + 3);
  const Sample removeEvery = timeOnce([&] {
    if (Status s = registry.apply(withoutOne); !s) die("apply remove a real from every service", s);
  });
  const Sample addEvery = timeOnce([&] {
    if (Status s = registry.apply(base); !s) die("apply add it back to every service", s);
  });
  printRow("one real out of every service", {removeEvery});
  printRow("and back into every service", {addEvery});

  // Health: every real of the first H services down, then up; one verdict
  // at a time, then all in one call.
  const int h = std::min(o.healthServices, o.services);
  std::vector<Registry::HealthVerdict> down, up;
  for (int r = 0; r < o.reals; ++r)
    for (int i = 0; i < h; ++i) {
      const keel::ServiceConfig& svc = base.services[size_t(i)];
      down.push_back({svc.name, svc.reals[size_t(r)].address, false});
      up.push_back({svc.name, svc.reals[size_t(r)].address, true});
    }
  auto each = [&](const std::vector<Registry::HealthVerdict>& vs) {
    return timeOnce([&] {
      for (const auto& v : vs)
        if (Status s = registry.setRealHealth(v.service, v.real, v.healthy); !s) die("setRealHealth", s);
    });
  };
  auto together = [&](const std::vector<Registry::HealthVerdict>& vs) {
    return timeOnce([&] {
      for (const Status& s : registry.setRealsHealth(vs))
        if (!s) die("setRealsHealth", s);
    });
  };
  const std::string n = std::to_string(down.size());
  const Sample eachDown = each(down), eachUp = each(up), allDown = together(down), allUp = together(up);
  printRow(n + " reals down, one verdict at a time", {eachDown});
  printRow(n + " reals up, one verdict at a time", {eachUp});
  printRow(n + " reals down, in one setRealsHealth", {allDown});
  printRow(n + " reals up, in one setRealsHealth", {allUp});

  // Last: every service removed in one apply.
  const Sample removeAll = timeOnce([&] {
    if (Status s = registry.apply(Config{}); !s) die("apply no services", s);
  });
  printRow("remove every service", {removeAll});
}

// A private network namespace with a veth pair, so XDP attaches to an
// interface only this process can see; it vanishes when the process exits.
bool makePrivateVeth() {
  if (unshare(CLONE_NEWNET) != 0) {
    std::perror("reconfig_bench: unshare(CLONE_NEWNET) (needs root)");
    return false;
  }
  const char* cmd =
      "ip link set lo up && ip link add kb0 type veth peer name kb1 && ip link set kb0 up && "
      "ip link set kb1 up";
  if (std::system(cmd) != 0) {
    std::fprintf(stderr, "reconfig_bench: failed: %s\n", cmd);
    return false;
  }
  return true;
}

// The kernel steps of one ring publish, on a map-in-map of our own (the
// data plane's is private to it): create + fill an inner array, swap it in.
void rawPublishBaseline(const std::vector<uint32_t>& ring, int reps) {
  const uint32_t words = uint32_t(ring.size()) + 1;
  std::vector<uint32_t> keys(words), values(words);
  for (uint32_t i = 0; i < words; ++i) keys[i] = i;
  values[0] = uint32_t(ring.size());
  std::copy(ring.begin(), ring.end(), values.begin() + 1);
  LIBBPF_OPTS(bpf_map_create_opts, innerOpts, .map_flags = BPF_F_INNER_MAP);
  auto makeInner = [&] {
    int fd = bpf_map_create(BPF_MAP_TYPE_ARRAY, "kb_ring", 4, 4, words, &innerOpts);
    if (fd < 0) die("create inner map", Status::error(std::strerror(errno)));
    uint32_t count = words;
    LIBBPF_OPTS(bpf_map_batch_opts, batchOpts);
    if (bpf_map_update_batch(fd, keys.data(), values.data(), &count, &batchOpts) != 0)
      die("fill inner map", Status::error(std::strerror(errno)));
    return fd;
  };
  const int slotsOuter = 64;
  int tmpl = makeInner();
  LIBBPF_OPTS(bpf_map_create_opts, outerOpts, .inner_map_fd = uint32_t(tmpl));
  int outer = bpf_map_create(BPF_MAP_TYPE_ARRAY_OF_MAPS, "kb_rings", 4, 4, slotsOuter, &outerOpts);
  if (outer < 0) die("create outer map", Status::error(std::strerror(errno)));
  ::close(tmpl);

  std::vector<Sample> fill, swap;
  for (int k = 0; k < reps; ++k) {
    int fd = -1;
    fill.push_back(timeOnce([&] { fd = makeInner(); }));
    uint32_t key = uint32_t(k % slotsOuter);
    swap.push_back(timeOnce([&] {
      if (bpf_map_update_elem(outer, &key, &fd, BPF_ANY) != 0)
        die("swap ring", Status::error(std::strerror(errno)));
    }));
    ::close(fd);
  }
  printRow("inner ring: create + batch fill (65538 u32)", fill);
  printRow("outer map-in-map update (1 ring)", swap);

  // The same ring in a BPF_F_MMAPABLE array, filled by one memcpy through
  // mmap instead of a per-element batch update, and swapped into an outer
  // map whose template has the same flags (the kernel requires it). Array
  // elements are 8-byte aligned, so a u32 slot takes 8 bytes in the mapping
  // (a ring of 65538 u32 maps 512 KiB). Read back through the syscall to
  // check the contents landed.
  LIBBPF_OPTS(bpf_map_create_opts, mmapOpts, .map_flags = BPF_F_INNER_MAP | BPF_F_MMAPABLE);
  const size_t bytes = (size_t(words) * 8 + 4095) / 4096 * 4096;
  auto makeMmapInner = [&] {
    int fd = bpf_map_create(BPF_MAP_TYPE_ARRAY, "kb_ring_mm", 4, 4, words, &mmapOpts);
    if (fd < 0) die("create mmapable inner map", Status::error(std::strerror(errno)));
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) die("mmap inner map", Status::error(std::strerror(errno)));
    uint64_t* slot = static_cast<uint64_t*>(p);
    for (uint32_t i = 0; i < words; ++i) slot[i] = values[i];
    munmap(p, bytes);
    return fd;
  };
  int mmTmpl = makeMmapInner();
  LIBBPF_OPTS(bpf_map_create_opts, mmOuterOpts, .inner_map_fd = uint32_t(mmTmpl));
  int mmOuter = bpf_map_create(BPF_MAP_TYPE_ARRAY_OF_MAPS, "kb_rings_mm", 4, 4, 1, &mmOuterOpts);
  if (mmOuter < 0) die("create outer map (mmapable inner)", Status::error(std::strerror(errno)));
  ::close(mmTmpl);
  std::vector<Sample> mmFill;
  for (int k = 0; k < reps; ++k) {
    int fd = -1;
    mmFill.push_back(timeOnce([&] { fd = makeMmapInner(); }));
    uint32_t key = 0, probe = words - 1, got = 0;
    if (bpf_map_lookup_elem(fd, &probe, &got) != 0 || got != values[words - 1])
      die("mmapable ring contents", Status::error("last slot reads " + std::to_string(got)));
    if (bpf_map_update_elem(mmOuter, &key, &fd, BPF_ANY) != 0)
      die("swap mmapable ring", Status::error(std::strerror(errno)));
    ::close(fd);
  }
  printRow("inner ring: create mmapable + fill via mmap", mmFill);
  ::close(mmOuter);

  // Many rings swapped by one BPF_MAP_UPDATE_BATCH on the outer map: one
  // syscall, so (if the kernel supports it) one grace-period wait.
  // Two sets of rings, swapped in alternately, so every update replaces a
  // ring; after each batch one slot is read back to check it took effect.
  const int batch = 32;
  std::vector<int> fds[2];
  std::vector<uint32_t> ids[2];
  for (int set = 0; set < 2; ++set)
    for (int i = 0; i < batch; ++i) {
      fds[set].push_back(makeInner());
      bpf_map_info info{};
      uint32_t len = sizeof info;
      if (bpf_obj_get_info_by_fd(fds[set].back(), &info, &len) != 0)
        die("inner map info", Status::error(std::strerror(errno)));
      ids[set].push_back(info.id);
    }
  std::vector<uint32_t> bkeys(batch);
  for (int i = 0; i < batch; ++i) bkeys[i] = uint32_t(i);
  auto check = [&](int set) {
    uint32_t key = batch - 1, id = 0;
    if (bpf_map_lookup_elem(outer, &key, &id) != 0 || id != ids[set][batch - 1])
      die("ring swap check", Status::error("slot " + std::to_string(key) + " holds map id " + std::to_string(id) +
                                           ", expected " + std::to_string(ids[set][batch - 1])));
  };
  std::vector<Sample> one, many;
  bool batchOk = true;
  for (int k = 0; k < std::max(4, reps / 2) && batchOk; ++k) {
    const int set = k % 2;
    one.push_back(timeOnce([&] {
      for (int i = 0; i < batch; ++i) {
        uint32_t key = bkeys[i];
        if (bpf_map_update_elem(outer, &key, &fds[set][i], BPF_ANY) != 0)
          die("swap ring", Status::error(std::strerror(errno)));
      }
    }));
    check(set);
    many.push_back(timeOnce([&] {
      uint32_t count = batch;
      LIBBPF_OPTS(bpf_map_batch_opts, opts);
      if (bpf_map_update_batch(outer, bkeys.data(), fds[1 - set].data(), &count, &opts) != 0) {
        std::printf("  (outer BPF_MAP_UPDATE_BATCH not supported here: %s)\n", std::strerror(errno));
        batchOk = false;
      }
    }));
    if (batchOk) check(1 - set);
  }
  printRow(std::to_string(batch) + " ring swaps, one update per ring", one);
  if (batchOk) printRow(std::to_string(batch) + " ring swaps in one UPDATE_BATCH", many);
  for (int set = 0; set < 2; ++set)
    for (int fd : fds[set]) ::close(fd);
  ::close(outer);
}

}  // namespace

// The DPDK data plane on a net_null port with one busy worker (lcore 1 on
// CPU 1), EAL on private, non-huge memory. Runs before the XDP part, which
// moves the process into a network namespace of its own.
void runDpdk(const Options& o) {
  keel::DpdkOptions d;
  d.ealArgs = {"--lcores", "0@0,1@1", "--no-huge", "-m", "512", "--no-pci", "--file-prefix",
               "keel-reconfig-" + std::to_string(getpid()), "--log-level", "*:warning"};
  d.port = "net_null_reconfig0";
  d.workerLcores = {1};
  d.mbufsPerWorker = 2048;
  d.rxDescriptors = d.txDescriptors = 256;
  d.limits = limitsFor(o);
  d.limits.connTableSize = 65536;
  std::string err;
  std::unique_ptr<keel::Dataplane> dp = keel::makeDpdkDataplane(d, &err);
  if (!dp) die("dpdk data plane", Status::error(err));
  runCases("dpdk data plane (net_null, one busy worker)", *dp, o);
  dp.reset();
  keel::releaseDpdkEnvironment();
}

int main(int argc, char** argv) {
  const Options o = parseArgs(argc, argv);
  (void)keel::setupLogging("warn");  // the registry logs every service at info
  std::printf("reconfig_bench: one real changed through Registry::apply -> Maglev -> publishRing\n");
  std::printf("machine: %s\n", keel::bench::machineDescription().c_str());
  std::printf("load average at start: %s\n", keel::bench::loadAverage().c_str());
  std::printf("method: %d services x %d reals (weight 100), M=%u; each case %d reps, alternating change and\n"
              "        revert so every apply changes something; times in ms; see the header comment.\n",
              o.services, o.reals, KEEL_RING_SIZE_DEFAULT, o.reps);

  // Baseline 1: the ring build alone.
  Config one = makeConfig(1, 10);
  std::vector<keel::MaglevReal> reals;
  for (size_t i = 0; i < one.services[0].reals.size(); ++i)
    reals.push_back({one.services[0].reals[i].address, 100, uint32_t(i)});
  std::vector<uint32_t> ring;
  std::vector<Sample> build;
  for (int k = 0; k < std::max(o.reps, 51); ++k)
    build.push_back(timeOnce([&] { ring = keel::buildMaglevTable(reals, KEEL_RING_SIZE_DEFAULT); }));
  printHeader("baselines");
  printRow("buildMaglevTable, 10 reals, M=65537", build);

  NullDataplane null(limitsFor(o));
  runCases("null data plane (control plane only)", null, o);

  if (!o.dpdk) {
    std::printf("\ndpdk: skipped (--no-dpdk)\n");
  } else {
    std::fflush(stdout);
    runDpdk(o);
  }

  if (!o.xdp) {
    std::printf("\nxdp: skipped (--no-xdp)\n");
  } else if (geteuid() != 0) {
    std::printf("\nxdp: skipped (needs root)\n");
  } else if (makePrivateVeth()) {
    keel::XdpOptions xo;
    xo.interface = "kb0";
    xo.mode = keel::XdpAttachMode::kNative;
    auto create = [&] {
      std::unique_ptr<keel::XdpDataplane> dp;
      if (Status s = keel::XdpDataplane::create(xo, &dp); !s) die("xdp data plane", s);
      return dp;
    };
    std::unique_ptr<keel::XdpDataplane> dp = create();
    printHeader("xdp baselines (veth in a private netns)");
    std::vector<Sample> publish;
    for (int k = 0; k < o.reps; ++k)
      publish.push_back(timeOnce([&] {
        if (Status s = dp->publishRing(uint32_t(KEEL_MAX_SERVICES_DEFAULT - 1), ring); !s) die("publishRing", s);
      }));
    printRow("XdpDataplane::publishRing alone", publish);
    keel_backend be{};
    std::vector<Sample> backend;
    for (int k = 0; k < o.reps; ++k)
      backend.push_back(timeOnce([&] {
        if (Status s = dp->upsertBackend(KEEL_MAX_BACKENDS_DEFAULT - 1, be); !s) die("upsertBackend", s);
      }));
    printRow("XdpDataplane::upsertBackend alone", backend);
    rawPublishBaseline(ring, o.reps);
    // Leave the ring slot the baseline used empty again.
    if (Status s = dp->publishRing(uint32_t(KEEL_MAX_SERVICES_DEFAULT - 1), {}); !s) die("publishRing", s);
    std::fflush(stdout);
    // The XDP plane alone (each ring its own update, as keeld drove it
    // before RingBatcher), then on fresh pins as keeld drives it now.
    runCases("xdp data plane, each ring published alone", *dp, o);
    (void)dp->shutdown(true);
    dp = create();
    {
      keel::RingBatcher batcher(*dp, {});
      runCases("xdp data plane behind RingBatcher (as keeld drives it)", batcher, o);
    }
    (void)dp->shutdown(true);
  }
  std::printf("\nload average at end: %s\n", keel::bench::loadAverage().c_str());
  return 0;
}

// SPDX-License-Identifier: Apache-2.0
// health_bench: CPU cost of the health checker at scale.
//
// Method. N TCP targets (default 10,000) at a 1 s interval are checked for S
// seconds (default 10) against N local listeners, one per (127.1.x.y, port)
// pair, accepted and closed by a separate epoll thread. The checker runs its
// checks on its own thread and reports to an io_context run by the main
// thread, exactly as in keeld. CPU is the checker thread's
// (pthread_getcpuclockid) plus the main thread's getrusage(RUSAGE_THREAD)
// (user + sys; loopback handshakes are processed in softirq context on the sending
// thread, so sys includes much of the "server" kernel work too) and
// reported per wall second and per check. The listener thread's CPU is
// reported separately. Baseline, same run, same process: an io_context with
// N steady_timers firing at the same jittered rate with an empty handler,
// i.e. the floor any timer-driven design pays. Results are ratios to it.
// When run as root the bench first enters a private network namespace so
// the listeners and the traffic never touch the host's loopback.
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>

#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "control/health/health_checker.h"

#include "../common/bench_env.h"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

struct Options {
  int targets = 10000;
  int seconds = 10;
  int intervalMs = 1000;
  int ports = 4;
};

Options parseArgs(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i];
    int v = std::atoi(argv[i + 1]);
    if (k == "--targets") o.targets = v;
    else if (k == "--seconds") o.seconds = v;
    else if (k == "--interval-ms") o.intervalMs = v;
    else if (k == "--ports") o.ports = v;
    else {
      std::fprintf(stderr, "usage: health_bench [--targets N] [--seconds S] [--interval-ms MS] [--ports P]\n");
      std::exit(2);
    }
  }
  if (o.targets < 1 || o.seconds < 1 || o.intervalMs < 1 || o.ports < 1 || o.targets / o.ports > 250 * 250) {
    std::fprintf(stderr, "health_bench: bad arguments (targets/ports must fit 127.1.0.0/16)\n");
    std::exit(2);
  }
  return o;
}

double threadCpuSeconds() {
  rusage ru{};
  getrusage(RUSAGE_THREAD, &ru);
  auto tv = [](timeval t) { return double(t.tv_sec) + double(t.tv_usec) / 1e6; };
  return tv(ru.ru_utime) + tv(ru.ru_stime);
}

bool enterPrivateNetns() {
  if (unshare(CLONE_NEWNET) != 0) return false;
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0) return false;
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  bool ok = ioctl(fd, SIOCGIFFLAGS, &ifr) == 0;
  ifr.ifr_flags |= IFF_UP;
  ok = ok && ioctl(fd, SIOCSIFFLAGS, &ifr) == 0;
  close(fd);
  return ok;
}

rlim_t raiseFdLimit(rlim_t want) {
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  rlimit raised{want, want};  // root may raise the hard limit too
  if (setrlimit(RLIMIT_NOFILE, &raised) != 0) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  getrlimit(RLIMIT_NOFILE, &rl);
  return rl.rlim_cur;
}

// The (address, port) of target i: 127.1.a.b with b in 1..250.
keel::IpAddress targetAddress(int i, int ports) {
  int host = i / ports;
  return keel::IpAddress::fromV4({127, 1, uint8_t(host / 250), uint8_t(host % 250 + 1)});
}
uint16_t targetPort(int i, int ports) { return uint16_t(20000 + i % ports); }

// Accepts and closes on every listener until told to stop.
class Listeners {
 public:
  explicit Listeners(const Options& o) {
    epoll_ = epoll_create1(EPOLL_CLOEXEC);
    for (int i = 0; i < o.targets; ++i) {
      int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (fd < 0) fail("socket");
      int one = 1;
      setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
      sockaddr_in sa{};
      sa.sin_family = AF_INET;
      sa.sin_port = htons(targetPort(i, o.ports));
      std::memcpy(&sa.sin_addr, targetAddress(i, o.ports).bytes().data(), 4);
      if (bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) fail("bind");
      if (listen(fd, 128) != 0) fail("listen");
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.fd = fd;
      epoll_ctl(epoll_, EPOLL_CTL_ADD, fd, &ev);
      fds_.push_back(fd);
    }
    thread_ = std::thread([this] { loop(); });
  }
  ~Listeners() {
    stop();
    for (int fd : fds_) close(fd);
    close(epoll_);
  }
  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  double cpuSeconds() const { return cpu_; }
  uint64_t accepted() const { return accepted_; }

 private:
  static void fail(const char* what) {
    std::perror(what);
    std::exit(1);
  }
  void loop() {
    double start = threadCpuSeconds();
    std::vector<epoll_event> events(256);
    for (int spins = 0; !stop_ && spins < 10'000'000; ++spins) {
      int n = epoll_wait(epoll_, events.data(), int(events.size()), 100);
      for (int i = 0; i < n; ++i) {
        for (int k = 0; k < 64; ++k) {  // bounded drain of one listener
          int c = accept4(events[i].data.fd, nullptr, nullptr, SOCK_CLOEXEC);
          if (c < 0) break;
          ++accepted_;
          close(c);
        }
      }
    }
    cpu_ = threadCpuSeconds() - start;
  }
  int epoll_ = -1;
  std::vector<int> fds_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  double cpu_ = 0;
  std::atomic<uint64_t> accepted_{0};
};

// TCP counters of the bench's network namespace (/proc/net/{snmp,netstat}),
// to explain slow or failed checks: drops, overflows, retransmits.
std::vector<std::pair<std::string, long long>> tcpCounters() {
  std::vector<std::pair<std::string, long long>> out;
  for (const char* path : {"/proc/net/snmp", "/proc/net/netstat"}) {
    std::ifstream f(path);
    std::string names, values;
    while (std::getline(f, names) && std::getline(f, values)) {
      if (names.rfind("Tcp:", 0) != 0 && names.rfind("TcpExt:", 0) != 0) continue;
      std::istringstream n(names), v(values);
      std::string key, val;
      n >> key;
      v >> val;
      while (n >> key && v >> val) out.emplace_back(key, std::atoll(val.c_str()));
    }
  }
  return out;
}

struct Measured {
  double wall = 0;
  double cpu = 0;
  uint64_t events = 0;
};

// Baseline: N timers at the checker's rate and jitter, empty handlers.
Measured runBaseline(const Options& o) {
  boost::asio::io_context io;
  std::minstd_rand rng(1);
  auto interval = std::chrono::duration_cast<Clock::duration>(std::chrono::milliseconds(o.intervalMs));
  Clock::rep spread = interval.count() / 10;
  std::uniform_int_distribution<Clock::rep> phase(0, interval.count() - 1);
  std::uniform_int_distribution<Clock::rep> jitter(-spread, spread);
  uint64_t fired = 0;
  std::vector<std::unique_ptr<boost::asio::steady_timer>> timers;
  std::function<void(boost::asio::steady_timer&)> arm = [&](boost::asio::steady_timer& t) {
    t.async_wait([&](const boost::system::error_code& ec) {
      if (ec) return;
      ++fired;
      t.expires_at(t.expiry() + interval + Clock::duration(jitter(rng)));
      arm(t);
    });
  };
  Clock::time_point now = Clock::now();
  for (int i = 0; i < o.targets; ++i) {
    timers.push_back(std::make_unique<boost::asio::steady_timer>(io, now + Clock::duration(phase(rng))));
    arm(*timers.back());
  }
  double cpu0 = threadCpuSeconds();
  auto t0 = Clock::now();
  io.run_for(std::chrono::seconds(o.seconds));
  Measured m;
  m.cpu = threadCpuSeconds() - cpu0;
  m.wall = std::chrono::duration<double>(Clock::now() - t0).count();
  m.events = fired;
  return m;
}

struct CheckerRun {
  Measured m;
  uint64_t failures = 0;
  size_t up = 0;
  uint64_t transitions = 0;
  std::string sampleFailure;
  double meanDurationUs = 0;
  std::array<uint64_t, keel::kHealthDurationBuckets.size() + 1> buckets{};
};

CheckerRun runChecker(const Options& o) {
  boost::asio::io_context io;
  uint64_t transitions = 0;
  keel::HealthChecker checker(
      io, [&](keel::HealthTargetId, const keel::HealthTarget&, bool, const std::string&) { ++transitions; });
  for (int i = 0; i < o.targets; ++i) {
    keel::HealthTarget t;
    t.service = "bench";
    t.address = targetAddress(i, o.ports);
    t.port = targetPort(i, o.ports);
    t.spec.type = keel::HealthCheckSpec::Type::Tcp;
    t.spec.interval = std::chrono::milliseconds(o.intervalMs);
    t.spec.timeout = std::chrono::milliseconds(o.intervalMs);
    keel::HealthTargetId id;
    if (keel::Status s = checker.add(t, false, &id); !s) {
      std::fprintf(stderr, "health_bench: %s\n", s.message().c_str());
      std::exit(1);
    }
  }
  // The checks run on the checker's own thread; this thread only runs the
  // owner's loop (the transitions' callbacks). Both count.
  auto checkerCpu = [&] {
    return threadCpuSeconds() + std::chrono::duration<double>(checker.threadCpuTime()).count();
  };
  double cpu0 = checkerCpu();
  auto t0 = Clock::now();
  {
    auto work = boost::asio::make_work_guard(io);
    io.run_for(std::chrono::seconds(o.seconds));
  }
  CheckerRun r;
  r.m.cpu = checkerCpu() - cpu0;
  r.m.wall = std::chrono::duration<double>(Clock::now() - t0).count();
  double durationSum = 0;
  for (const keel::HealthStatus& s : checker.snapshot()) {
    r.m.events += s.checks;
    r.failures += s.failures;
    r.up += s.up ? 1 : 0;
    durationSum += s.durationSumSeconds;
    for (size_t b = 0; b < s.durationBuckets.size(); ++b) r.buckets[b] += s.durationBuckets[b];
    if (!s.last.ok && r.sampleFailure.empty() && s.checked) r.sampleFailure = s.last.reason;
  }
  r.transitions = transitions;
  r.meanDurationUs = r.m.events ? durationSum / double(r.m.events) * 1e6 : 0;
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parseArgs(argc, argv);
  bool isolated = enterPrivateNetns();  // before any thread exists
  rlim_t fds = raiseFdLimit(rlim_t(o.targets) * 2 + 1024);
  if (fds < rlim_t(o.targets) + 512) {
    std::fprintf(stderr, "health_bench: RLIMIT_NOFILE %llu is too low for %d listeners\n",
                 (unsigned long long)fds, o.targets);
    return 1;
  }

  std::printf("health_bench: CPU cost of the keel health checker\n");
  std::printf("machine : %s; loadavg %s\n", keel::bench::machineDescription().c_str(),
              keel::bench::loadAverage().c_str());
  std::printf("method  : %d TCP targets (%d addresses in 127.1/16 x %d ports), interval %d ms (+-10%% jitter),\n"
              "          timeout = interval, %d s per phase; checks on the checker's own thread, callbacks\n"
              "          on the main thread's io_context; CPU = user+sys of both threads (pthread_getcpuclockid,\n"
              "          getrusage(RUSAGE_THREAD)); listeners accept+close on a separate epoll thread; %s;\n"
              "          RLIMIT_NOFILE %llu\n",
              o.targets, (o.targets + o.ports - 1) / o.ports, o.ports, o.intervalMs, o.seconds,
              isolated ? "private netns" : "host netns (not root)", (unsigned long long)fds);
  std::printf("baseline: same thread, %d steady_timers at the same rate and jitter, empty handlers\n\n",
              o.targets);
  std::fflush(stdout);

  Measured base = runBaseline(o);
  Listeners listeners(o);
  auto countersBefore = tcpCounters();
  CheckerRun run = runChecker(o);
  auto countersAfter = tcpCounters();
  listeners.stop();  // its CPU is known once the thread has ended
  uint64_t accepted = listeners.accepted();
  double listenerCpu = listeners.cpuSeconds();

  auto row = [](const char* name, const Measured& m) {
    std::printf("%-18s %8.2f %10llu %10.0f %12.4f %12.2f\n", name, m.wall, (unsigned long long)m.events,
                m.events / m.wall, m.cpu / m.wall, m.events ? m.cpu / double(m.events) * 1e6 : 0.0);
  };
  std::printf("%-18s %8s %10s %10s %12s %12s\n", "phase", "wall s", "events", "events/s", "cpu s/wall s",
              "cpu us/event");
  row("baseline timers", base);
  row("tcp health checks", run.m);
  double baseRate = base.cpu / base.wall;
  double checkRate = run.m.cpu / run.m.wall;
  double netPerCheckUs =
      run.m.events ? (run.m.cpu - baseRate * run.m.wall) / double(run.m.events) * 1e6 : 0;
  double configured = o.targets * 1000.0 / o.intervalMs;
  double perCheckUs = run.m.events ? run.m.cpu / double(run.m.events) * 1e6 : 0;
  double perTimerUs = base.events ? base.cpu / double(base.events) * 1e6 : 0;
  std::printf("\nconfigured rate: %.0f checks/s; achieved: %.0f checks/s (%.0f%%)\n", configured,
              run.m.events / run.m.wall, 100.0 * run.m.events / run.m.wall / configured);
  std::printf("ratio checker/baseline: %.1fx CPU per wall second, %.1fx CPU per event\n",
              baseRate > 0 ? checkRate / baseRate : 0, perTimerUs > 0 ? perCheckUs / perTimerUs : 0);
  std::printf("checker CPU per check above the timer baseline: %.2f us\n", netPerCheckUs);
  std::printf("projected checker CPU at the configured rate: %.3f cpu s/wall s\n", perCheckUs * configured / 1e6);
  if (run.m.events / run.m.wall < 0.95 * configured) {
    std::printf("NOTE: the checker thread did not keep the configured rate; if the loadavg above exceeds the\n"
                "      CPU count it was starved of CPU (checks then wait in the run queue, durations grow);\n"
                "      CPU per check stays meaningful, CPU per wall second is then a lower bound.\n");
  }
  std::printf("checks: %llu ok, %llu failed%s%s; targets up at end: %zu/%d; transitions: %llu\n",
              (unsigned long long)(run.m.events - run.failures), (unsigned long long)run.failures,
              run.sampleFailure.empty() ? "" : ", e.g. ", run.sampleFailure.c_str(), run.up, o.targets,
              (unsigned long long)run.transitions);
  std::printf("mean check duration: %.1f us; listener thread: %llu connections accepted, %.4f cpu s/wall s\n",
              run.meanDurationUs, (unsigned long long)accepted, listenerCpu / run.m.wall);
  std::printf("kernel TCP counters of interest during the checker phase:");
  for (size_t i = 0; i < countersAfter.size() && i < countersBefore.size(); ++i) {
    const std::string& k = countersAfter[i].first;
    long long d = countersAfter[i].second - countersBefore[i].second;
    bool interesting = k == "RetransSegs" || k == "AttemptFails" || k.find("Drop") != std::string::npos ||
                       k.find("Overflow") != std::string::npos || k == "TCPTimeouts" || k == "ActiveOpens" ||
                       k == "TCPSynRetrans";
    if (interesting && d != 0) std::printf(" %s=%lld", k.c_str(), d);
  }
  std::printf("\n");
  std::printf("check duration histogram (upper bound: count):");
  for (size_t b = 0; b < run.buckets.size(); ++b) {
    if (run.buckets[b] == 0) continue;
    if (b < keel::kHealthDurationBuckets.size()) {
      std::printf(" <=%gms: %llu", keel::kHealthDurationBuckets[b] * 1e3, (unsigned long long)run.buckets[b]);
    } else {
      std::printf(" >%gs: %llu", keel::kHealthDurationBuckets.back(), (unsigned long long)run.buckets[b]);
    }
  }
  std::printf("\n");
  return run.failures == 0 ? 0 : 1;
}

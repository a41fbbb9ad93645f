// SPDX-License-Identifier: Apache-2.0
// keelctl end to end: the built binary (path in $KEELCTL, set by meson)
// against the ApiServer + fake backend, checking table output, JSON output,
// exit codes and error text.
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <regex>
#include <sstream>
#include <thread>

#include "control/api/api_client.h"
#include "server_fixture.h"

namespace keel::api {
namespace {

using nlohmann::json;

struct CliRun {
  int rc = -1;
  std::string out, err;
};

// OUT split at newlines (without them).
std::vector<std::string> linesOf(const std::string& out) {
  std::istringstream is(out);
  std::vector<std::string> l;
  for (std::string x; std::getline(is, x);) l.push_back(x);
  return l;
}

class KeelctlTest : public testing::ServerFixture {
 protected:
  void SetUp() override {
    ServerFixture::SetUp();
    const char* bin = std::getenv("KEELCTL");
    if (!bin) GTEST_SKIP() << "KEELCTL not set (run through meson test)";
    bin_ = bin;
  }

  static std::string quote(const std::string& s) {
    std::string q = "'";
    for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return q + "'";
  }
  static std::string slurp(const std::string& path) {
    std::ifstream f(path);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  }

  // A Unix socket listening at `path`, for a fake keeld that never
  // answers (-1 if it cannot be made).
  static int listenUnix(const std::string& path, int backlog = 4) {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd, backlog) != 0) {
      ::close(fd);
      return -1;
    }
    return fd;
  }

  // What keelctl prints for a usage error of COMMAND ("service add"):
  // the error, naming the command, then where its usage is.
  static std::string usageErr(const std::string& command, const std::string& message) {
    return "keelctl " + command + ": " + message + "\nRun 'keelctl " + command + " --help' for the usage.\n";
  }

  // keelctl --socket <ours> ARGS...; stdout and stderr captured apart.
  // COLUMNS (the width tables fit) is unset unless `columns` gives it, and
  // KEELCTL_TIMEOUT unless runAs_ sets it, so the caller's settings do not
  // leak in. Bounded: a keelctl that
  // hangs is killed after 20 s (rc 124), not left to meson's timeout.
  CliRun keelctl(const std::vector<std::string>& args, const std::string& socket = "",
                 const std::optional<std::string>& columns = std::nullopt) {
    std::string cmd = std::string("timeout 20 ") +
                      (columns ? "env -u KEELCTL_TIMEOUT COLUMNS=" + quote(*columns) + " "
                               : std::string("env -u COLUMNS -u KEELCTL_TIMEOUT ")) +
                      runAs_ + quote(bin_) + " --socket " + quote(socket.empty() ? options_.socketPath : socket);
    for (const auto& a : args) cmd += " " + quote(a);
    cmd += " >" + quote(dir_ + "/out") + " 2>" + quote(dir_ + "/err") + " </dev/null";
    CliRun r;
    int status = std::system(cmd.c_str());
    r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.out = slurp(dir_ + "/out");
    r.err = slurp(dir_ + "/err");
    return r;
  }

  // keelctl ARGS against a peer that is no keeld (the socket is the
  // caller's to name: security review L2): every request line on every
  // connection is answered with `reply`, a whole response line, as sent.
  CliRun keelctlAnswered(const std::string& reply, const std::vector<std::string>& args) {
    return keelctlAnsweredInTurn({reply}, args);
  }
  // The same, the n-th request line (over every connection) answered with
  // replies[n], and each after the last with the last.
  CliRun keelctlAnsweredInTurn(const std::vector<std::string>& replies, const std::vector<std::string>& args) {
    const std::string path = dir_ + "/peer.sock";
    ::unlink(path.c_str());
    const int lfd = listenUnix(path);
    if (lfd < 0 || replies.empty()) return CliRun{};
    std::thread peer([&] {
      size_t answered = 0;
      for (int c; (c = ::accept(lfd, nullptr, nullptr)) >= 0; ::close(c)) {
        char buf[4096];
        for (ssize_t n; (n = ::read(c, buf, sizeof buf)) > 0;)
          for (ssize_t i = 0; i < n; ++i)
            if (buf[i] == '\n') {
              const std::string line = replies[std::min(answered++, replies.size() - 1)] + "\n";
              // MSG_NOSIGNAL: keelctl may go before it has read a large reply.
              for (size_t sent = 0; sent < line.size();) {
                const ssize_t w = ::send(c, line.data() + sent, line.size() - sent, MSG_NOSIGNAL);
                if (w <= 0) break;
                sent += static_cast<size_t>(w);
              }
            }
      }
    });
    CliRun r = keelctl(args, path);
    ::shutdown(lfd, SHUT_RDWR);  // accept() returns: the thread ends
    peer.join();
    ::close(lfd);
    return r;
  }

  std::string bin_;
  std::string runAs_;  // a command keelctl runs under (setpriv ...), with its trailing space
};

TEST_F(KeelctlTest, ServiceListTableAndJson) {
  onLoop([&] {
    fake_.services[0].reals[1].draining = true;
    return 0;
  });
  startServer();
  CliRun t = keelctl({"service", "list"});
  ASSERT_EQ(t.rc, 0) << t.err;
  // ipvsadm -Ln --stats shape: header, service line, one "->" line per real.
  std::vector<std::string> l = linesOf(t.out);
  ASSERT_EQ(l.size(), 2u + 3u + 2u) << t.out;
  EXPECT_EQ(l[0].rfind("Prot", 0), 0u);
  EXPECT_EQ(l[1].rfind("  ->", 0), 0u);
  auto words = [](const std::string& s) {
    std::istringstream is(s);
    std::vector<std::string> w;
    for (std::string x; is >> x;) w.push_back(x);
    return w;
  };
  // Flows: "-" while there is no count of the table (and no note under it).
  EXPECT_EQ(words(l[2]),
            (std::vector<std::string>{"TCP", "10.0.0.1:80", "maglev", "ipip", "web", "2000", "128000", "-"}));
  EXPECT_EQ(words(l[3]), (std::vector<std::string>{"->", "10.0.0.5", "100", "up", "400", "25600", "-"}));
  EXPECT_EQ(words(l[4]), (std::vector<std::string>{"->", "10.0.0.6", "100", "draining", "200", "12800", "-"}));
  EXPECT_EQ(words(l[5]),
            (std::vector<std::string>{"TCP", "[2001:db8::1]:443", "maglev", "ipip", "v6", "1000", "64000", "-"}));

  CliRun j = keelctl({"-o", "json", "service", "list"});
  ASSERT_EQ(j.rc, 0) << j.err;
  json r = json::parse(j.out);
  ASSERT_EQ(r["services"].size(), 2u);
  EXPECT_EQ(r["services"][0]["reals"][1]["state"], "draining");
  EXPECT_EQ(r["services"][1]["vip"], "2001:db8::1");
  EXPECT_TRUE(r["services"][0]["reals"][0]["flows"].is_null());
  EXPECT_TRUE(r["services"][0]["flows_counted_at"].is_null());
  // The global options after the noun and after the verb, as ipvsadm and
  // kubectl users type them, say the same.
  for (const auto& args : std::vector<std::vector<std::string>>{{"service", "-o", "json", "list"},
                                                                {"service", "list", "-o", "json"}}) {
    CliRun late = keelctl(args);
    ASSERT_EQ(late.rc, 0) << late.err;
    EXPECT_EQ(json::parse(late.out), r);
  }
  CliRun unknown = keelctl({"service", "list", "--bogus"});
  EXPECT_EQ(unknown.rc, 2);
  EXPECT_NE(unknown.err.find("--bogus"), std::string::npos) << unknown.err;
}

// A busy balancer's counts, as ipvsadm prints them: whole below 100,000,000,
// then cut down to K, M, G or T; --exact (or -o json) has them whole.
TEST_F(KeelctlTest, LargeCountsAreCutDownUnlessExact) {
  onLoop([&] {
    auto& web = fake_.services[0];
    web.counters = {123'456'789'012ULL, 987'654'321'098'765ULL};  // 123G packets, 987T bytes
    web.reals[0].counters = {99'999'999, 100'000'000};              // the last whole one, the first K
    web.reals[1].counters = {999'999'999, 1'000'000'000};           // the last K, the first M
    fake_.stats.port = PortStats{100'000'000'000ULL, 0, 0, 0, 99'999'999'999ULL, 0, true, 25000};  // 100G / 99999M
    return 0;
  });
  startServer();
  auto words = [](const std::string& s) {
    std::istringstream is(s);
    std::vector<std::string> w;
    for (std::string x; is >> x;) w.push_back(x);
    return w;
  };
  CliRun t = keelctl({"service", "list"});
  ASSERT_EQ(t.rc, 0) << t.err;
  std::vector<std::string> l = linesOf(t.out);
  ASSERT_GE(l.size(), 5u) << t.out;
  EXPECT_EQ(words(l[2]), (std::vector<std::string>{"TCP", "10.0.0.1:80", "maglev", "ipip", "web", "123G", "987T", "-"}));
  EXPECT_EQ(words(l[3]), (std::vector<std::string>{"->", "10.0.0.5", "100", "up", "99999999", "100000K", "-"}));
  EXPECT_EQ(words(l[4]), (std::vector<std::string>{"->", "10.0.0.6", "100", "up", "999999K", "1000M", "-"}));
  CliRun e = keelctl({"service", "show", "web", "--exact"});
  ASSERT_EQ(e.rc, 0) << e.err;
  l = linesOf(e.out);
  ASSERT_GE(l.size(), 5u) << e.out;
  EXPECT_EQ(words(l[2])[5], "123456789012");
  EXPECT_EQ(words(l[2])[6], "987654321098765");
  EXPECT_EQ(words(l[4])[4], "999999999");
  CliRun st = keelctl({"stats"});
  ASSERT_EQ(st.rc, 0) << st.err;
  EXPECT_NE(st.out.find("port: rx 100G (missed 0, no mbuf 0, errors 0), tx 99999M (errors 0)"), std::string::npos)
      << st.out;
  EXPECT_NE(st.out.find(" web "), std::string::npos);
  bool cut = false;
  for (const std::string& line : linesOf(st.out))
    if (words(line).size() == 5 && words(line)[2] == "web") cut = words(line)[3] == "123G" && words(line)[4] == "987T";
  EXPECT_TRUE(cut) << st.out;
  CliRun sx = keelctl({"stats", "--exact"});
  ASSERT_EQ(sx.rc, 0) << sx.err;
  EXPECT_NE(sx.out.find("port: rx 100000000000 (missed 0, no mbuf 0, errors 0), tx 99999999999 (errors 0)"),
            std::string::npos)
      << sx.out;
  EXPECT_NE(sx.out.find("987654321098765"), std::string::npos) << sx.out;
  CliRun j = keelctl({"-o", "json", "service", "show", "web"});
  ASSERT_EQ(j.rc, 0) << j.err;
  EXPECT_EQ(json::parse(j.out)["service"]["bytes"], 987'654'321'098'765ULL) << j.out;
}

// Each real's flows at the last periodic count: the kept ones in the Flows
// column, the service line the sum of its reals' ("-" unless every real has
// a count), "-" for a real the count did not have, how old the count is
// under the table; -o json has kept and not kept, and when it was counted.
TEST_F(KeelctlTest, ServiceListShowsEachRealsFlowsAtTheLastCount) {
  onLoop([&] {
    auto& web = fake_.services[0];
    web.reals[0].flows = RealFlows{3, 1};
    web.reals[1].flows = RealFlows{4, 0};
    web.flowsCountedAt = std::chrono::system_clock::now() - std::chrono::seconds(42);
    return 0;
  });
  startServer();
  CliRun t = keelctl({"service", "list"});
  ASSERT_EQ(t.rc, 0) << t.err;
  std::vector<std::string> l = linesOf(t.out);
  ASSERT_EQ(l.size(), 2u + 3u + 2u + 1u) << t.out;
  auto last = [](const std::string& line) { return line.substr(line.find_last_of(' ') + 1); };
  EXPECT_EQ(last(l[2]), "7") << t.out;  // web: 3 + 4
  EXPECT_EQ(last(l[3]), "3") << t.out;
  EXPECT_EQ(last(l[4]), "4") << t.out;
  EXPECT_EQ(last(l[5]), "-") << t.out;  // v6: never counted
  EXPECT_EQ(last(l[6]), "-") << t.out;
  // Counted 42 s before keelctl ran: 42 s or more however slow the box,
  // "42s" or, past a minute, "1m05s".
  std::smatch age;
  ASSERT_TRUE(std::regex_search(l[7], age, std::regex("^Flows: table entries kept per real, counted "
                                                       "(?:([0-9]+)m)?([0-9]+)s ago")))
      << t.out;
  EXPECT_GE((age[1].matched ? std::stoi(age[1]) * 60 : 0) + std::stoi(age[2]), 42) << t.out;
  CliRun show = keelctl({"service", "show", "web"});
  ASSERT_EQ(show.rc, 0) << show.err;
  EXPECT_NE(show.out.find("\nFlows: table entries kept per real, counted"), std::string::npos) << show.out;

  // A real the count did not have (added since): "-", and the service's sum
  // would be partial, so "-" too.
  onLoop([&] {
    fake_.services[0].reals[1].flows.reset();
    return 0;
  });
  l = linesOf(keelctl({"service", "list"}).out);
  ASSERT_EQ(l.size(), 2u + 3u + 2u + 1u);
  EXPECT_EQ(last(l[2]), "-");
  EXPECT_EQ(last(l[3]), "3");
  EXPECT_EQ(last(l[4]), "-");
  CliRun j = keelctl({"-o", "json", "service", "show", "web"});
  ASSERT_EQ(j.rc, 0) << j.err;
  const json web = json::parse(j.out)["service"];
  EXPECT_EQ(web["reals"][0]["flows"], (json{{"kept", 3}, {"not_kept", 1}}));
  EXPECT_TRUE(web["reals"][1]["flows"].is_null());
  EXPECT_TRUE(web["flows_counted_at"].is_string()) << web.dump();
}

// A down real that still gets traffic says why in the tables: held in the
// ring by fail-open, or its established flows kept (-o json: held, kept).
TEST_F(KeelctlTest, DownRealsThatStillServeSayWhy) {
  onLoop([&] {
    auto& reals = fake_.services[0].reals;
    reals[0].healthy = false;
    reals[0].held = true;
    reals[1].healthy = false;
    reals[1].kept = true;
    reals[1].check = "http";
    reals[1].checkSpec = json{{"type", "http"}, {"port", 8081}, {"path", "/"}};
    return 0;
  });
  startServer();
  CliRun t = keelctl({"service", "list"});
  ASSERT_EQ(t.rc, 0) << t.err;
  EXPECT_NE(t.out.find("10.0.0.5           100        down, held    "), std::string::npos) << t.out;
  EXPECT_NE(t.out.find("10.0.0.6           100        down, kept    "), std::string::npos) << t.out;
  CliRun h = keelctl({"health", "show", "web"});
  ASSERT_EQ(h.rc, 0) << h.err;
  EXPECT_NE(h.out.find("10.0.0.5  down, held"), std::string::npos) << h.out;
  // The Check column: the check and the port it connects to (check_spec).
  EXPECT_NE(h.out.find("10.0.0.6  down, kept  http :8081"), std::string::npos) << h.out;
  EXPECT_NE(h.out.find("10.0.0.6  down, kept"), std::string::npos) << h.out;
  CliRun j = keelctl({"-o", "json", "health", "show", "web"});
  const json reals = json::parse(j.out)["services"][0]["reals"];
  EXPECT_EQ(reals[0]["state"], "down");
  EXPECT_EQ(reals[0]["held"], true);
  EXPECT_EQ(reals[0]["kept"], false);
  EXPECT_EQ(reals[1]["held"], false);
  EXPECT_EQ(reals[1]["kept"], true);
}

// A drained real that also fails its checks says so: "draining" alone hid
// that its established flows had moved (operator review M5), or, kept,
// that they stay.
TEST_F(KeelctlTest, DrainedRealsThatFailTheirChecksSaySo) {
  onLoop([&] {
    auto& reals = fake_.services[0].reals;
    reals[0].draining = true;
    reals[0].healthy = false;
    reals[1].draining = true;
    reals[1].healthy = false;
    reals[1].kept = true;
    return 0;
  });
  startServer();
  CliRun t = keelctl({"service", "list"});
  ASSERT_EQ(t.rc, 0) << t.err;
  EXPECT_NE(t.out.find("10.0.0.5           100        draining, down  "), std::string::npos) << t.out;
  EXPECT_NE(t.out.find("10.0.0.6           100        draining, down, kept"), std::string::npos) << t.out;
  CliRun h = keelctl({"health", "show", "web"});
  ASSERT_EQ(h.rc, 0) << h.err;
  EXPECT_NE(h.out.find("10.0.0.5  draining, down  "), std::string::npos) << h.out;
  EXPECT_NE(h.out.find("10.0.0.6  draining, down, kept"), std::string::npos) << h.out;
}

// A service whose IPv6 clients the port's MTU is too small for (keeld's
// mtu_too_small_for_ipv6): a warning under the table, the numbers in JSON.
TEST_F(KeelctlTest, ServiceListWarnsOfAnMtuTooSmallForIpv6Clients) {
  fake_.services[1].ipv6MtuShortfall = MtuShortfall{1300, 1320};
  startServer();
  CliRun t = keelctl({"service", "list"});
  ASSERT_EQ(t.rc, 0) << t.err;
  std::vector<std::string> l = linesOf(t.out);
  ASSERT_EQ(l.size(), 2u + 3u + 2u + 1u) << t.out;
  EXPECT_EQ(l.back(),
            "warning: v6: the MTU toward the reals (1300) is too small for IPv6 clients through ipip: 1320 needed "
            "(docs/operations.md, MTU with ipip)");
  CliRun show = keelctl({"service", "show", "web"});
  EXPECT_EQ(show.out.find("warning"), std::string::npos) << show.out;
  show = keelctl({"service", "show", "v6"});
  ASSERT_EQ(show.rc, 0) << show.err;
  EXPECT_EQ(linesOf(show.out).back().rfind("warning: v6: the MTU toward the reals (1300)", 0), 0u) << show.out;
  CliRun j = keelctl({"-o", "json", "service", "show", "v6"});
  ASSERT_EQ(j.rc, 0) << j.err;
  EXPECT_EQ(json::parse(j.out)["service"]["mtu_too_small_for_ipv6"], (json{{"mtu", 1300}, {"needed", 1320}}));
  EXPECT_FALSE(json::parse(keelctl({"-o", "json", "service", "show", "web"}).out)["service"].contains(
      "mtu_too_small_for_ipv6"));
}

TEST_F(KeelctlTest, RealVerbsMutateThroughTheDaemon) {
  startServer();
  EXPECT_EQ(keelctl({"real", "drain", "web", "10.0.0.5"}).rc, 0);
  EXPECT_EQ(keelctl({"real", "set-weight", "web", "10.0.0.6", "7"}).rc, 0);
  EXPECT_EQ(keelctl({"real", "add", "web", "10.0.0.9", "--mac", "02:00:00:00:00:09"}).rc, 0);
  // An add keeld accepted but holds down says so on stderr.
  onLoop([&] {
    fake_.addWarnings = {"l2dsr: 10.0.0.10 not in the neighbour table of eth0: held down"};
    return 0;
  });
  CliRun held = keelctl({"real", "add", "web", "10.0.0.10"});
  EXPECT_EQ(held.rc, 0) << held.err;
  EXPECT_EQ(held.out, "web 10.0.0.10: added, weight 100, up (ring: 3 reals)\n");
  EXPECT_EQ(held.err, "warning: l2dsr: 10.0.0.10 not in the neighbour table of eth0: held down\n");
  onLoop([&] {
    fake_.addWarnings.clear();
    return 0;
  });
  EXPECT_EQ(keelctl({"real", "undrain", "web", "10.0.0.5"}).rc, 0);
  // An IPv6 ADDRESS bare or in the brackets --real writes it in (input review L7).
  EXPECT_EQ(keelctl({"real", "drain", "v6", "[2001:db8::5]"}).rc, 0);
  EXPECT_EQ(keelctl({"real", "remove", "v6", "2001:db8::5"}).rc, 0);
  CliRun add = keelctl({"service", "add", "dns", "--vip", "10.0.0.53", "--port", "53", "--protocol", "udp",
                     "--scheduler", "maglev-src", "--real", "10.0.0.7:5", "--real", "[2001:db8::8]:9",
                     "--real", "10.0.0.10:0:02:00:00:00:00:0a", "--real", "[2001:db8::9]", "--real=[2001:db8::a]"});
  EXPECT_EQ(add.rc, 0) << add.err;
  std::vector<std::string> want = {"drain web 10.0.0.5", "setRealWeight web 10.0.0.6 7",
                                   "addReal web 10.0.0.9 100", "addReal web 10.0.0.10 100", "undrain web 10.0.0.5",
                                   "drain v6 2001:db8::5", "removeReal v6 2001:db8::5", "addService dns"};
  EXPECT_EQ(onLoop([&] { return fake_.mutations; }), want);
  json dns = json::parse(keelctl({"-o", "json", "service", "show", "dns"}).out)["service"];
  EXPECT_EQ(dns["protocol"], "udp");
  EXPECT_EQ(dns["scheduler"], "maglev-src");
  ASSERT_EQ(dns["reals"].size(), 5u);
  EXPECT_EQ(dns["reals"][0]["weight"], 5);
  EXPECT_EQ(dns["reals"][1]["address"], "2001:db8::8");
  EXPECT_EQ(dns["reals"][2]["mac"], "02:00:00:00:00:0a");
  // [ADDR] alone, the form keelctl(8) gives (CLI11 took the brackets for a list's).
  EXPECT_EQ(dns["reals"][3]["address"], "2001:db8::9");
  EXPECT_EQ(dns["reals"][3]["weight"], 100);
  EXPECT_EQ(dns["reals"][4]["address"], "2001:db8::a");
  EXPECT_EQ(keelctl({"service", "remove", "dns"}).rc, 0);
}

// Each changing verb prints what it changed, one line (operator review M2:
// they printed nothing, and -o json gave {}); a change that empties the
// ring warns on stderr, is made, and service list shows the service apart
// (operator review H1).
TEST_F(KeelctlTest, ChangesSayWhatTheyChanged) {
  startServer();
  CliRun a = keelctl({"real", "set-weight", "web", "10.0.0.5", "0"});
  ASSERT_EQ(a.rc, 0) << a.err;
  EXPECT_EQ(a.out, "web 10.0.0.5: weight 100 -> 0 (ring: 1 real)\n");
  EXPECT_EQ(a.err, "");
  CliRun b = keelctl({"real", "set-weight", "web", "10.0.0.6", "0"});
  ASSERT_EQ(b.rc, 0) << b.err;
  EXPECT_EQ(b.out, "web 10.0.0.6: weight 100 -> 0 (ring: empty)\n");
  EXPECT_EQ(b.err, "warning: services[web]: no usable real now: new flows to 10.0.0.1:80/tcp are dropped "
                   "(drop_no_backend)\n");
  CliRun l = keelctl({"service", "list"});
  ASSERT_EQ(l.rc, 0) << l.err;
  EXPECT_EQ(linesOf(l.out).back(),
            "warning: web: no usable real (ring empty): new flows to 10.0.0.1:80/TCP are dropped (drop_no_backend)")
      << l.out;
  EXPECT_EQ(std::count(l.out.begin(), l.out.end(), '\n'), 2 + 3 + 2 + 1) << "v6 has a ring: " << l.out;
  CliRun s = keelctl({"service", "show", "web"});
  EXPECT_NE(s.out.find("ring: 0 slots published (configured 65537)\nwarning: web: no usable real (ring empty)"),
            std::string::npos)
      << s.out;
  EXPECT_EQ(json::parse(keelctl({"-o", "json", "service", "show", "web"}).out)["service"]["published_ring_size"], 0);
  CliRun d = keelctl({"real", "drain", "v6", "[2001:db8::5]"});
  EXPECT_EQ(d.out, "v6 [2001:db8::5]: up -> draining (ring: empty)\n");
  CliRun u = keelctl({"real", "undrain", "v6", "2001:db8::5"});
  EXPECT_EQ(u.out, "v6 [2001:db8::5]: draining -> up (ring: 1 real)\n");
  EXPECT_EQ(u.err, "");
  CliRun again = keelctl({"real", "undrain", "v6", "2001:db8::5"});
  EXPECT_EQ(again.rc, 0);
  EXPECT_EQ(again.out, "v6 [2001:db8::5]: up (ring: 1 real)\n");
  EXPECT_EQ(again.err, "warning: real 2001:db8::5 of service v6 was not drained: nothing changed\n");
  CliRun j = keelctl({"-o", "json", "real", "set-weight", "web", "10.0.0.6", "3"});
  ASSERT_EQ(j.rc, 0) << j.err;
  EXPECT_EQ(json::parse(j.out), (json{{"service", "web"},
                                     {"address", "10.0.0.6"},
                                     {"before", {{"weight", 0}, {"state", "up"}}},
                                     {"after", {{"weight", 3}, {"state", "up"}}},
                                     {"published_ring_size", 65537},
                                     {"reals_in_ring", 1}}))
      << j.out;
  CliRun rm = keelctl({"real", "remove", "web", "10.0.0.5"});
  EXPECT_EQ(rm.out, "web 10.0.0.5: removed (was weight 0, up) (ring: 1 real)\n");
  CliRun sa = keelctl({"service", "add", "dns", "--vip", "10.0.0.53", "--port", "53", "--protocol", "udp", "--real",
                       "10.0.0.7", "--real", "10.0.0.8:0"});
  ASSERT_EQ(sa.rc, 0) << sa.err;
  EXPECT_EQ(sa.out, "dns: added, 10.0.0.53:53/UDP with 2 reals (ring: 1 real)\n");
  CliRun sr = keelctl({"service", "remove", "dns"});
  ASSERT_EQ(sr.rc, 0) << sr.err;
  EXPECT_EQ(sr.out, "dns: removed, 10.0.0.53:53/UDP and its 2 reals\n");
}

// --real: an IPv6 real is always in brackets; a bare one is ambiguous
// (2001:db8::5:50: an address, or 2001:db8::5 at weight 50) and refused
// before anything reaches the daemon, as is text after ] that is no weight.
TEST_F(KeelctlTest, ServiceAddRefusesAmbiguousIpv6Reals) {
  startServer();
  struct Row { std::string real, err; };
  const Row rows[] = {
      {"2001:db8::5:50", "--real 2001:db8::5:50: an IPv6 real goes in brackets, [ADDR] or "
                         "[ADDR]:WEIGHT[:MAC], so that a weight cannot be read as part of the address"},
      {"[2001:db8::5]50", "--real [2001:db8::5]50: expected :WEIGHT after ], got 50"},
      {"[2001:db8::5:50", "--real [2001:db8::5:50: no ] after the IPv6 address"},
      // A dotted IPv6 tail is IPv6 still (it was read as the address "" or "64").
      {"::ffff:10.0.0.1", "--real ::ffff:10.0.0.1: an IPv6 real goes in brackets, [ADDR] or "
                          "[ADDR]:WEIGHT[:MAC], so that a weight cannot be read as part of the address"},
      {"64:ff9b::10.0.0.1:5", "--real 64:ff9b::10.0.0.1:5: an IPv6 real goes in brackets, [ADDR] or "
                              "[ADDR]:WEIGHT[:MAC], so that a weight cannot be read as part of the address"},
      // A colon with nothing after it (was weight 100, or a "mac" error at a key never typed).
      {"10.0.0.7:", "--real 10.0.0.7:: no WEIGHT after :"},
      {"[2001:db8::5]:", "--real [2001:db8::5]:: no WEIGHT after :"},
      {"10.0.0.7:50:", "--real 10.0.0.7:50:: no MAC after WEIGHT:"},
      // Nothing at all (read its last byte: out of bounds, an abort under
      // _GLIBCXX_ASSERTIONS; else sent as the address "").
      {"", "--real : empty: expected ADDR, ADDR:WEIGHT or ADDR:WEIGHT:MAC"},
  };
  for (const Row& row : rows) {
    CliRun r = keelctl({"service", "add", "dns", "--vip", "10.0.0.53", "--port", "53", "--real", "10.0.0.7",
                        "--real", row.real});
    EXPECT_EQ(r.rc, 2) << row.real;
    EXPECT_EQ(r.err, usageErr("service add", row.err));
  }
  EXPECT_TRUE(onLoop([&] { return fake_.mutations; }).empty());
}

TEST_F(KeelctlTest, DaemonErrorsExitOneAndChangeNothing) {
  startServer();
  struct Row { std::vector<std::string> args; std::string err; };
  const Row rows[] = {
      {{"real", "drain", "nope", "10.0.0.5"}, "keelctl: services[nope]: not found\n"},
      {{"real", "drain", "web", "10.0.0.99"}, "keelctl: services[web]: real 10.0.0.99 not found\n"},
      {{"real", "set-weight", "web", "10.0.0.5", "65536"},
       "keelctl: params.weight: must be an integer 0..65535, got 65536\n"},
      {{"real", "set-weight", "web", "10.0.0.5", "ten"},
       "keelctl: params.weight: must be an integer 0..65535, got \"ten\"\n"},
      // Sent as text, not as 10 or 0, so that keeld refuses them as in a file (input review L2, L12).
      {{"real", "set-weight", "web", "10.0.0.5", "010"},
       "keelctl: params.weight: must be an integer 0..65535, got \"010\"\n"},
      {{"real", "set-weight", "web", "10.0.0.5", "-0"},
       "keelctl: params.weight: must be an integer 0..65535, got \"-0\"\n"},
      {{"real", "add", "web", "10.0.0.300"},
       "keelctl: params.address: must be an IPv4 or IPv6 address, got \"10.0.0.300\"\n"},
      {{"service", "add", "x", "--vip", "10.9.9.9", "--port", "80", "--protocol", "icmp"},
       "keelctl: params.protocol: must be one of tcp|udp, got \"icmp\"\n"},
      {{"lookup", "web", "--client", "192.0.2.1:80", "--protocol", "udp"},
       "keelctl: services[web]: service is tcp, lookup asked for udp\n"},
      // Checked before any call: --health must at least be JSON.
      {{"real", "add", "web", "10.0.0.9", "--health", "{"}, usageErr("real add", "--health: not valid JSON: {")},
      {{"service", "add", "x", "--vip", "10.9.9.9", "--port", "80", "--health", "tcp"},
       usageErr("service add", "--health: not valid JSON: tcp")},
      // ... and give each key once: parsed here, a second one would be lost.
      {{"real", "add", "web", "10.0.0.9", "--health", R"({"type":"http","path":"/a","path":"/b"})"},
       usageErr("real add", "--health: path: duplicate key (each key may appear once in an object)")},
  };
  for (const auto& row : rows) {
    SCOPED_TRACE(row.args[0] + " " + row.args[1]);
    CliRun r = keelctl(row.args);
    // What keelctl refuses itself is a usage error (2); the daemon's refusals exit 1.
    EXPECT_EQ(r.rc, row.err.find("--help' for the usage.") != std::string::npos ? 2 : 1);
    EXPECT_EQ(r.err, row.err);
    EXPECT_EQ(r.out, "");
  }
  // -o json: the daemon's error object on stdout as well (code and field
  // for scripts), the same line on stderr.
  CliRun j = keelctl({"-o", "json", "real", "drain", "web", "10.0.0.99"});
  EXPECT_EQ(j.rc, 1);
  EXPECT_EQ(j.err, "keelctl: services[web]: real 10.0.0.99 not found\n");
  json e = json::parse(j.out);
  EXPECT_EQ(std::count(j.out.begin(), j.out.end(), '\n'), 1) << "one line: " << j.out;
  EXPECT_EQ(e["error"]["code"], "not_found") << j.out;
  EXPECT_EQ(e["error"]["message"], "services[web]: real 10.0.0.99 not found");
  EXPECT_TRUE(onLoop([&] { return fake_.mutations.empty(); }));
}

// --watch: a NaN passed the 0.1..86400 range check (every comparison with
// NaN is false) and made a loop without pause; keelctl's own argument
// checks exit 2, as keelctl.8 says of usage errors.
TEST_F(KeelctlTest, StatsWatchAndCountAreCheckedBeforeAnyCall) {
  startServer();
  for (const char* w : {"nan", "inf", "0.01"}) {
    CliRun r = keelctl({"stats", "--watch", w, "--count", "1"});
    EXPECT_EQ(r.rc, 2) << w;
    EXPECT_EQ(r.err, usageErr("stats", std::string("--watch: must be a number of seconds 0.1..86400, got \"") + w + "\""));
  }
  // A word where SECONDS may go: a SERVICE put after the optional SECONDS
  // of --watch (operator review L6). Where SERVICE goes is said, unless
  // one was given.
  {
    CliRun r = keelctl({"stats", "--watch", "web"});
    EXPECT_EQ(r.rc, 2);
    EXPECT_EQ(r.err, usageErr("stats", "--watch: must be a number of seconds 0.1..86400, got \"web\" (if that is a "
                                       "service, put it before --watch: keelctl stats web --watch [SECONDS])"));
    EXPECT_EQ(r.out, "");
    r = keelctl({"stats", "web", "--watch", "x"});
    EXPECT_EQ(r.rc, 2);
    EXPECT_EQ(r.err, usageErr("stats", "--watch: must be a number of seconds 0.1..86400, got \"x\""));
  }
  {
    CliRun r = keelctl({"stats", "--count", "2"});  // one sample without --watch: the count would be ignored
    EXPECT_EQ(r.rc, 2);
    EXPECT_EQ(r.err, usageErr("stats", "--count: only with --watch (without it, stats prints one sample)"));
    EXPECT_EQ(r.out, "");
  }
  CliRun c = keelctl({"stats", "--watch", "1", "--count", "-1"});
  EXPECT_EQ(c.rc, 2);
  EXPECT_EQ(c.err, usageErr("stats", "--count: must be >= 0"));
}

// A watch outlives keeld's restart: a sample keeld does not answer is
// said and the next one connects again (operator test: `stats --watch`
// ended with "Broken pipe" at a routine restart). Here keeld is not up for
// the first samples, then starts; with --rate (whose first sample only
// starts the rate) the first answer starts it. Each failed sample counts
// towards --count, and the watch ends by its count with the last sample's
// status.
size_t occurrences(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

TEST_F(KeelctlTest, StatsWatchGoesOnWhenKeeldComesBack) {
  CliRun r;
  std::thread watch([&] { r = keelctl({"stats", "--watch", "0.2", "--rate", "--count", "20"}); });
  // Wait (bounded) until a sample has failed, then start keeld.
  bool failed = false;
  for (int i = 0; i < 200 && !failed; ++i) {
    failed = slurp(dir_ + "/err").find("cannot connect to") != std::string::npos;
    if (!failed) std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  EXPECT_TRUE(failed) << "keelctl never said it could not connect";
  startServer();
  watch.join();
  EXPECT_EQ(r.rc, 0) << r.err;  // the last sample's: answered
  const size_t failures = occurrences(r.err, "keelctl: cannot connect to " + options_.socketPath);
  const size_t shown = occurrences(r.out, "dataplane: mock");
  EXPECT_GE(failures, 1u) << r.err;
  EXPECT_GE(shown, 1u) << "no rate after keeld came back:\n" << r.out;
  EXPECT_NE(r.out.find("Pkts/s"), std::string::npos) << r.out;
  EXPECT_EQ(failures + shown, 20u) << "each sample, answered or not, counts once\n" << r.err << r.out;
}

// A refusal is keeld's answer, not its absence: it ends the watch at once.
TEST_F(KeelctlTest, StatsWatchEndsAtARefusal) {
  startServer();
  CliRun r = keelctl({"stats", "nosuch", "--watch", "0.1", "--count", "5"});
  EXPECT_EQ(r.rc, 1) << r.err;
  EXPECT_EQ(occurrences(r.err, "keelctl: "), 1u) << r.err;
}

// An answer keelctl cannot read (a member missing, its envelope) ended a
// watch at once, as a refusal does, though the next sample may be whole
// (an answer that is no JSON at all did not end it). It is said, counts
// as a sample, and the watch goes on; with --rate the next answer starts
// the next rate. The exit status is the last sample's.
TEST_F(KeelctlTest, StatsWatchGoesOnPastAnAnswerItCannotRead) {
  const std::string good = R"({"ok":true,"result":{"dataplane":"xdp","reasons":{},"services":[]}})";
  const std::string noReasons = R"({"ok":true,"result":{"dataplane":"xdp","services":[]}})";
  const std::string badOk = R"({"ok":"yes"})";
  const std::string to = "keelctl: unexpected reply from keeld to stats.get: ";
  CliRun r = keelctlAnsweredInTurn({noReasons, good, badOk, good}, {"stats", "--watch", "0.1", "--count", "4"});
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.err, to + "result.reasons: missing\n" + to + "ok: expected true or false, got a string\n");
  EXPECT_EQ(occurrences(r.out, "dataplane: xdp\n"), 2u) << r.out;
  // Ending on one: its status, 1.
  CliRun last = keelctlAnsweredInTurn({good, noReasons}, {"stats", "--watch", "0.1", "--count", "2"});
  EXPECT_EQ(last.rc, 1) << last.err;
  EXPECT_EQ(occurrences(last.out, "dataplane: xdp\n"), 1u) << last.out;
  // --rate: the bad answer ends the rate it would have made; the next two
  // make the next.
  CliRun rate =
      keelctlAnsweredInTurn({good, noReasons, good, good}, {"stats", "--watch", "0.1", "--rate", "--count", "2"});
  EXPECT_EQ(rate.rc, 0) << rate.err;
  EXPECT_EQ(rate.err, to + "result.reasons: missing\n");
  EXPECT_EQ(occurrences(rate.out, "(rates over "), 1u) << rate.out;
  // -o json (which prints a result as sent, so only its envelope can be
  // unreadable): an error line among the samples, one document a line.
  CliRun j = keelctlAnsweredInTurn({badOk, good}, {"-o", "json", "stats", "--watch", "0.1", "--count", "2"});
  EXPECT_EQ(j.rc, 0) << j.err;
  const std::vector<std::string> lines = linesOf(j.out);
  ASSERT_EQ(lines.size(), 2u) << j.out;
  EXPECT_EQ(json::parse(lines[0], nullptr, false)["error"]["code"], "failed") << j.out;
  EXPECT_EQ(json::parse(lines[1], nullptr, false)["dataplane"], "xdp") << j.out;
}

// keeld closes a connection idle past its idle timeout (10 min by default,
// 0.2 s here); a watch slower than that finds its kept connection closed at
// each sample and connects again before sending, rather than failing every
// other sample with EPIPE (re-read M2).
TEST_F(KeelctlTest, AWatchSlowerThanKeeldsIdleTimeoutLosesNoSample) {
  options_.idleTimeout = std::chrono::milliseconds(200);
  startServer();
  CliRun r = keelctl({"stats", "--watch", "0.5", "--count", "4"});
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(occurrences(r.out, "dataplane: mock"), 4u) << r.out;
}

TEST_F(KeelctlTest, MissingDaemonAndUsageErrors) {
  // Not reached: 69 (EX_UNAVAILABLE), apart from a refusal (1), so that a
  // script can tell "retry later" from "no such real" (operator review M5).
  CliRun r = keelctl({"service", "list"}, dir_ + "/absent.sock");
  EXPECT_EQ(r.rc, 69);
  EXPECT_EQ(r.err, "keelctl: cannot connect to " + dir_ +
                       "/absent.sock: No such file or directory (is keeld running? use --socket PATH for "
                       "another socket)\n");
  // An empty --socket is named as such, not "socket path too long" (input review L5).
  const std::string emptyErr = dir_ + "/empty.err";
  const int emptyRc =
      std::system((quote(bin_) + " --socket '' service list >/dev/null 2>" + quote(emptyErr) + " </dev/null").c_str());
  EXPECT_EQ(WIFEXITED(emptyRc) ? WEXITSTATUS(emptyRc) : -1, 69);
  std::ifstream emptyIn(emptyErr);
  std::string emptyLine;
  std::getline(emptyIn, emptyLine);
  EXPECT_EQ(emptyLine.rfind("keelctl: cannot connect: the socket path is empty", 0), 0u) << emptyLine;
  CliRun jr = keelctl({"-o", "json", "service", "list"}, dir_ + "/absent.sock");
  EXPECT_EQ(jr.rc, 69);
  EXPECT_EQ(json::parse(jr.out)["error"]["code"], "unavailable") << jr.out;
  // CLI11's messages name keelctl and the command, and where its usage is.
  CliRun u = keelctl({"real", "drain", "web"});
  EXPECT_EQ(u.rc, 2);
  EXPECT_EQ(u.err, "keelctl real drain: ADDRESS is required\nRun 'keelctl real drain --help' for the usage.\n");
  CliRun vip = keelctl({"service", "add", "web2", "--port", "80"});
  EXPECT_EQ(vip.rc, 2);
  EXPECT_EQ(vip.err, "keelctl service add: --vip is required\nRun 'keelctl service add --help' for the usage.\n");
  // keelctl's own options are keelctl's, wherever on the line.
  CliRun yaml = keelctl({"service", "list", "-o", "yaml"});
  EXPECT_EQ(yaml.rc, 2);
  EXPECT_EQ(yaml.err, "keelctl: --output: yaml not in {table,json}\nRun 'keelctl --help' for the usage.\n");
  CliRun n = keelctl({"frobnicate"});
  EXPECT_EQ(n.rc, 2);
  // A mistyped noun or verb is named, with what it could have been (CLI11
  // alone says "A subcommand is required").
  EXPECT_EQ(n.err.rfind("keelctl: unknown command \"frobnicate\" for keelctl (one of: service, real, health, ", 0),
            0u)
      << n.err;
  CliRun v = keelctl({"-o", "json", "service", "lsit"});
  EXPECT_EQ(v.rc, 2);
  EXPECT_EQ(v.err.rfind("keelctl: unknown command \"lsit\" for keelctl service (one of: list, show, add, remove)\n",
                        0),
            0u)
      << v.err;
  // A missing noun or verb: what could go there (CLI11 alone says "A
  // subcommand is required").
  CliRun none = keelctl({"service"});
  EXPECT_EQ(none.rc, 2);
  EXPECT_EQ(none.err,
            "keelctl service: a verb is required: one of list, show, add, remove\n"
            "Run 'keelctl service --help' for the usage.\n");
  CliRun noVerb = keelctl({"-o", "json", "daemon"});
  EXPECT_EQ(noVerb.rc, 2);
  EXPECT_EQ(noVerb.err.rfind("keelctl daemon: a verb is required: one of status, stop\n", 0), 0u) << noVerb.err;
  EXPECT_EQ(json::parse(noVerb.out),
            (json{{"error", {{"code", "usage"}, {"message", "daemon: a verb is required: one of status, stop"}}}}))
      << noVerb.out;
  CliRun noNoun = keelctl({});
  EXPECT_EQ(noNoun.rc, 2);
  EXPECT_EQ(noNoun.err.rfind("keelctl: a noun is required: one of service, real, health, stats, lookup, conns, "
                             "config, daemon\n",
                             0),
            0u)
      << noNoun.err;
  // -o json: errors keelctl finds itself are a JSON error on stdout too
  // (code usage, exit 2; failed, exit 1), as the daemon's are.
  auto jsonError = [](const CliRun& r) {
    const json j = json::parse(r.out, nullptr, false);
    return j.is_object() && j.contains("error") ? j["error"] : json();
  };
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"-o", "json", "lookup", "web", "--client", "1.2.3.4"},
        std::vector<std::string>{"-o", "json", "real", "drain", "web"},
        std::vector<std::string>{"-o", "json", "frobnicate"},
        std::vector<std::string>{"--output=json", "stats", "--count", "2"}}) {
    CliRun r = keelctl(args);
    EXPECT_EQ(r.rc, 2) << args.back();
    EXPECT_EQ(jsonError(r)["code"], "usage") << args.back() << ": " << r.out;
    EXPECT_FALSE(jsonError(r).value("message", "").empty()) << r.out;
  }
  // A file under keelctl's 512 KiB whose JSON encoding is over keeld's 1 MiB
  // request line (each quote escaped) is refused here, naming it, before any
  // call; so is one over 512 KiB.
  const std::string big = dir_ + "/quotes.yaml";
  std::ofstream(big) << "# " << std::string(524000, '"') << "\n";
  CliRun quotes = keelctl({"config", "check", big});
  EXPECT_EQ(quotes.rc, 1);
  EXPECT_EQ(quotes.err, "keelctl: " + big + ": 1048006 bytes once encoded as JSON, over the 1048576-byte request "
                        "line keeld reads (check it with keeld --check-config FILE on the host)\n");
  const std::string huge = dir_ + "/huge.yaml";
  std::ofstream(huge) << "# " << std::string(600000, 'x') << "\n";
  CliRun large = keelctl({"config", "check", huge});
  EXPECT_EQ(large.rc, 1);
  EXPECT_NE(large.err.find("keelctl sends at most 524288"), std::string::npos) << large.err;
  CliRun file = keelctl({"-o", "json", "config", "check", dir_ + "/absent.yaml"});
  EXPECT_EQ(file.rc, 1);
  EXPECT_EQ(jsonError(file)["code"], "failed") << file.out;
  EXPECT_EQ(file.err, "keelctl: " + dir_ + "/absent.yaml: cannot open: No such file or directory\n");
}

// A request sent but not answered (here keeld closes the connection after
// reading it) may have been applied: keelctl says so and exits 3, apart
// from "cannot connect" (69), so a script looks before it repeats a drain.
TEST_F(KeelctlTest, ARequestSentButNotAnsweredIsNotUnavailable) {
  const std::string path = dir_ + "/mute.sock";
  const int lfd = listenUnix(path);
  ASSERT_GE(lfd, 0);
  std::string got;
  std::thread mute([&] {  // two connections: one for each run below
    for (int i = 0; i < 2; ++i) {
      const int c = ::accept(lfd, nullptr, nullptr);
      if (c < 0) return;
      char buf[4096];
      for (ssize_t n; (n = ::read(c, buf, sizeof buf)) > 0;) {
        got.append(buf, static_cast<size_t>(n));
        if (got.back() == '\n') break;
      }
      ::close(c);  // read, never answered
    }
  });
  CliRun r = keelctl({"real", "drain", "web", "10.0.0.5"}, path);
  CliRun jr = keelctl({"-o", "json", "real", "drain", "web", "10.0.0.5"}, path);
  mute.join();
  ::close(lfd);
  EXPECT_NE(got.find("\"method\":\"real.drain\""), std::string::npos) << got;
  EXPECT_EQ(r.rc, 3) << r.err;
  EXPECT_EQ(r.err, "keelctl: keeld closed the connection on " + path +
                       " without a response; the request was sent, and keeld may have applied it or still apply "
                       "it: look (keelctl service list, health show) before repeating it\n");
  EXPECT_EQ(jr.rc, 3);
  EXPECT_EQ(json::parse(jr.out)["error"]["code"], "no_response") << jr.out;
}

// busy and try_later: keeld did not take the request up, so nothing changed
// and the same command may be sent again: 69, as when keeld cannot be
// reached (a notify script retries on 69), not 1, a refusal to repeat.
TEST_F(KeelctlTest, BusyAndTryLaterExitAsUnavailable) {
  const std::string path = dir_ + "/answers.sock";
  const int lfd = listenUnix(path);
  ASSERT_GE(lfd, 0);
  const std::vector<std::string> codes = {"busy", "try_later", "not_found"};
  std::thread answering([&] {  // one connection a code, answered with it
    for (const std::string& code : codes) {
      const int c = ::accept(lfd, nullptr, nullptr);
      if (c < 0) return;
      std::string got;
      char buf[4096];
      for (ssize_t n; (n = ::read(c, buf, sizeof buf)) > 0;) {
        got.append(buf, static_cast<size_t>(n));
        if (got.back() == '\n') break;
      }
      const json request = json::parse(got, nullptr, false);
      const std::string reply =
          json{{"id", request.is_object() ? request.value("id", json()) : json()},
               {"ok", false},
               {"error", {{"code", code}, {"message", "server: " + code}}}}
              .dump() +
          "\n";
      (void)!::write(c, reply.data(), reply.size());
      ::close(c);
    }
  });
  std::vector<CliRun> runs;
  for (size_t i = 0; i < codes.size(); ++i) runs.push_back(keelctl({"real", "drain", "web", "10.0.0.5"}, path));
  answering.join();
  ::close(lfd);
  EXPECT_EQ(runs[0].rc, 69) << runs[0].err;
  EXPECT_EQ(runs[0].err, "keelctl: server: busy\n");
  EXPECT_EQ(runs[1].rc, 69) << runs[1].err;
  EXPECT_EQ(runs[2].rc, 1) << "a refusal stays 1: " << runs[2].err;
}

// A keeld that has wedged: it takes the request and never answers. A
// keepalived notify script bounds the wait with --timeout or
// KEELCTL_TIMEOUT (the option wins); past it keelctl says and exits as for
// any request sent but not answered (3), not after the default minute
// (this harness kills keelctl at 20 s: rc 124).
TEST_F(KeelctlTest, TimeoutBoundsTheWaitForAWedgedKeeld) {
  const std::string path = dir_ + "/wedged.sock";
  const int lfd = listenUnix(path);
  ASSERT_GE(lfd, 0);
  int requests = 0;
  std::thread wedged([&] {  // reads each request, answers none, holds on until keelctl goes
    for (int c; (c = ::accept(lfd, nullptr, nullptr)) >= 0; ::close(c)) {
      std::string got;
      char buf[4096];
      for (ssize_t n; (n = ::read(c, buf, sizeof buf)) > 0;) got.append(buf, static_cast<size_t>(n));
      if (got.find("\"method\":\"real.drain\"") != std::string::npos) ++requests;
    }
  });
  auto noAnswer = [&](const std::string& seconds) {
    return "keelctl: no response from " + path + " within " + seconds +
           " s; the request was sent, and keeld may have applied it or still apply "
           "it: look (keelctl service list, health show) before repeating it\n";
  };
  // What shows the timeout applied is the answer itself: rc 3 and the
  // message naming it. With the default 60 s, the harness's own limit (20 s)
  // ends keelctl first (rc 124). No durations are asserted.
  // After the verb, as --socket may be.
  CliRun opt = keelctl({"real", "drain", "web", "10.0.0.5", "--timeout", "1"}, path);
  EXPECT_EQ(opt.rc, 3) << opt.err;
  EXPECT_EQ(opt.err, noAnswer("1"));
  runAs_ = "env KEELCTL_TIMEOUT=1 ";
  CliRun env = keelctl({"-o", "json", "real", "drain", "web", "10.0.0.5"}, path);
  EXPECT_EQ(env.rc, 3) << env.err;
  EXPECT_EQ(env.err, noAnswer("1"));
  EXPECT_EQ(json::parse(env.out)["error"]["code"], "no_response") << env.out;
  runAs_ = "env KEELCTL_TIMEOUT=3600 ";  // the option wins
  CliRun both = keelctl({"--timeout", "0.5", "real", "drain", "web", "10.0.0.5"}, path);
  EXPECT_EQ(both.rc, 3) << both.err;
  EXPECT_EQ(both.err, noAnswer("0.5")) << "a fraction is said as given, not as 0 s";
  // A reload and a stop show elsewhere than in the services: keelctl says
  // where, as it does for an answer to them it cannot read.
  runAs_ = "";
  CliRun reload = keelctl({"--timeout", "0.5", "config", "reload"}, path);
  EXPECT_EQ(reload.rc, 3) << reload.err;
  EXPECT_EQ(reload.err, "keelctl: no response from " + path +
                            " within 0.5 s; the request was sent, and keeld may have applied it or still apply "
                            "it: look (keelctl daemon status) before repeating it\n");
  CliRun stop = keelctl({"--timeout", "0.5", "daemon", "stop"}, path);
  EXPECT_EQ(stop.rc, 3) << stop.err;
  EXPECT_NE(stop.err.find("look (keelctl daemon status, which cannot connect once keeld has stopped)"),
            std::string::npos)
      << stop.err;
  // A bad value is a usage error that names where it came from, before
  // anything is sent; a bad variable is no error when the option is given.
  for (const std::string bad : {"0", "0.05", "3601", "abc", "1s", "nan", "-5", ""}) {
    runAs_ = "";
    CliRun r = keelctl({"--timeout", bad, "real", "drain", "web", "10.0.0.5"}, path);
    EXPECT_EQ(r.rc, 2) << bad;
    EXPECT_NE(r.err.find("--timeout: must be a number of seconds 0.1..3600, got \"" + bad + "\""),
              std::string::npos)
        << r.err;
    if (bad.empty()) continue;  // an empty variable is no variable
    runAs_ = "env KEELCTL_TIMEOUT=" + quote(bad) + " ";
    r = keelctl({"-o", "json", "real", "drain", "web", "10.0.0.5"}, path);
    EXPECT_EQ(r.rc, 2) << bad;
    EXPECT_NE(r.err.find("KEELCTL_TIMEOUT: must be a number of seconds 0.1..3600, got \"" + bad + "\""),
              std::string::npos)
        << r.err;
    const json j = json::parse(r.out, nullptr, false);
    EXPECT_TRUE(j.is_object() && j.contains("error") && j["error"].value("code", "") == "usage") << r.out;
  }
  runAs_ = "env KEELCTL_TIMEOUT=abc ";
  CliRun wins = keelctl({"service", "list", "--timeout", "0.1"}, dir_ + "/absent.sock");
  EXPECT_EQ(wins.rc, 69) << wins.err;
  runAs_ = "";
  ::shutdown(lfd, SHUT_RDWR);  // accept() returns: the thread ends
  wedged.join();
  ::close(lfd);
  EXPECT_EQ(requests, 3);  // the usage errors sent nothing
}

// --timeout bounds the whole exchange, not only the wait for the answer: a
// keeld that accepts no connections (its backlog full) and one that reads
// nothing of a request larger than the socket's buffer. Nothing was
// applied in either case, so both exit 69, as when keeld is not running.
// Without the bound keelctl would block until this harness kills it (rc 124).
TEST_F(KeelctlTest, TimeoutBoundsConnectingAndSending) {
  // Backlog 0 holds one connection not yet accepted (af_unix: full once
  // more are queued than the backlog); ours fills it.
  const std::string full = dir_ + "/full.sock";
  const int lfd = listenUnix(full, 0);
  ASSERT_GE(lfd, 0);
  const int filler = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", full.c_str());
  ASSERT_EQ(::connect(filler, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0) << std::strerror(errno);
  CliRun c = keelctl({"--timeout", "0.5", "real", "drain", "web", "10.0.0.5"}, full);
  EXPECT_EQ(c.rc, 69) << c.err;
  EXPECT_EQ(c.err, "keelctl: cannot connect to " + full +
                       ": keeld accepted no connection within 0.5 s (its backlog of connections is full: keeld may "
                       "be wedged)\n");
  ::close(filler);
  ::close(lfd);

  // Connected (queued, never accepted), so never read: a config check of
  // a file over the socket's send buffer (~200 KiB) cannot be sent whole.
  const std::string deaf = dir_ + "/deaf.sock";
  const int dfd = listenUnix(deaf);
  ASSERT_GE(dfd, 0);
  const std::string big = dir_ + "/big.yaml";
  {
    std::ofstream f(big);
    for (int i = 0; i < 8000; ++i) f << "# a comment line of the config file that keeps it over 400 KB\n";
  }
  CliRun s = keelctl({"-o", "json", "--timeout", "0.5", "config", "check", big}, deaf);
  EXPECT_EQ(s.rc, 69) << s.err;
  EXPECT_EQ(s.err, "keelctl: keeld did not read the request on " + deaf + " within 0.5 s\n");
  EXPECT_EQ(json::parse(s.out, nullptr, false).value("error", json::object()).value("code", ""), "unavailable")
      << s.out;
  ::close(dfd);
}

// The table shows how long ago the state changed and why; the reason is cut
// to keep lines within 120 columns, -o json has it whole and the absolute
// time.
TEST_F(KeelctlTest, HealthShowChangeAndReason) {
  const std::string longReason =
      "3 consecutive failures: http status 503 not in 200-399 (Service Unavailable: upstream overloaded, retry later)";
  onLoop([&] {
    RealSnapshot& r = fake_.services[0].reals[0];
    r.healthy = false;
    r.lastChange = std::chrono::system_clock::now() - std::chrono::hours(2);  // "2h00m" for the next minute
    r.lastCheck = std::chrono::system_clock::now();
    r.changeReason = longReason;
    fake_.services[0].reals[1].changeReason = "added up";
    return 0;
  });
  startServer();
  CliRun h = keelctl({"health", "show", "web"});
  ASSERT_EQ(h.rc, 0) << h.err;
  std::vector<std::string> hl = linesOf(h.out);
  ASSERT_GE(hl.size(), 3u) << h.out;
  const std::string header = hl[0], down = hl[1], up = hl[2];
  EXPECT_EQ(header.rfind("Service  Real      State  Check  Run   Last result  Changed  Reason", 0), 0u) << h.out;
  EXPECT_NE(down.find("10.0.0.5  down   tcp    3 ok  connect ok     2h00m  3 consecutive failures: http"),
            std::string::npos) << h.out;
  EXPECT_EQ(down.substr(down.size() - 3), "...") << down;
  EXPECT_EQ(down.find(longReason), std::string::npos);
  EXPECT_NE(up.find("-  added up"), std::string::npos) << "no change time: '-'\n" << h.out;
  for (const std::string& l : {header, down, up}) EXPECT_LE(l.size(), 120u) << l;
  EXPECT_EQ(down.size(), 120u) << "the reason takes what the other columns leave: " << down;

  // $COLUMNS narrows (or widens) the table; the reason column still starts
  // under its header. Not a positive number: the default 120.
  CliRun narrow = keelctl({"health", "show", "web"}, "", "100");
  ASSERT_EQ(narrow.rc, 0) << narrow.err;
  auto n = linesOf(narrow.out);
  ASSERT_EQ(n.size(), 3u) << narrow.out;
  EXPECT_EQ(n[1].size(), 100u) << n[1];
  EXPECT_EQ(n[1].substr(n[1].size() - 3), "...");
  EXPECT_EQ(n[1].find("3 consecutive failures"), n[0].find("Reason")) << narrow.out;
  CliRun wide = keelctl({"health", "show", "web"}, "", "300");
  ASSERT_EQ(wide.rc, 0) << wide.err;
  EXPECT_NE(wide.out.find(longReason + "\n"), std::string::npos) << "room for all of it: not cut\n" << wide.out;
  for (const char* bad : {"", "0", "-5", "abc", "9999999"}) {
    CliRun d = keelctl({"health", "show", "web"}, "", bad);
    ASSERT_EQ(d.rc, 0) << d.err;
    EXPECT_EQ(linesOf(d.out)[1], down) << "COLUMNS=" << bad;
  }
  // A narrow terminal keeps at least 24 characters of reason rather than
  // dropping the column: lines run over.
  CliRun tiny = keelctl({"health", "show", "web"}, "", "40");
  ASSERT_EQ(tiny.rc, 0) << tiny.err;
  auto t = linesOf(tiny.out);
  EXPECT_EQ(t[1].substr(t[0].find("Reason")), longReason.substr(0, 21) + "...") << tiny.out;

  CliRun j = keelctl({"-o", "json", "health", "show", "web"});
  ASSERT_EQ(j.rc, 0) << j.err;
  const json real = json::parse(j.out)["services"][0]["reals"][0];
  EXPECT_EQ(real["reason"], longReason);
  ASSERT_TRUE(real["last_change"].is_string());
  EXPECT_EQ(real["last_change"].get<std::string>().size(), std::string("2026-12-01T14:03:05Z").size());
}

// real drain --reason: the daemon gets the reason, and health show's
// Changed/Reason columns explain a draining real by its drain.
TEST_F(KeelctlTest, DrainReasonShownByHealthShow) {
  onLoop([&] {
    fake_.now = std::chrono::system_clock::now() - std::chrono::hours(3);  // "3h00m" for the next minute
    fake_.services[0].reals[1].changeReason = "added up";
    return 0;
  });
  startServer();
  CliRun d = keelctl({"real", "drain", "web", "10.0.0.5", "--reason", "kernel upgrade INC-42"});
  ASSERT_EQ(d.rc, 0) << d.err;
  EXPECT_EQ(onLoop([&] { return fake_.mutations; }),
            std::vector<std::string>{"drain web 10.0.0.5 reason=kernel upgrade INC-42"});
  CliRun h = keelctl({"health", "show", "web"});
  ASSERT_EQ(h.rc, 0) << h.err;
  EXPECT_NE(h.out.find("10.0.0.5  draining  tcp    3 ok  connect ok     3h00m  drained: kernel upgrade INC-42\n"),
            std::string::npos) << h.out;
  EXPECT_NE(h.out.find("-  added up\n"), std::string::npos) << h.out;
  CliRun j = keelctl({"-o", "json", "health", "show", "web"});
  const json real = json::parse(j.out)["services"][0]["reals"][0];
  EXPECT_EQ(real["drain_reason"], "kernel upgrade INC-42");
  EXPECT_TRUE(real["drained_since"].is_string());
  // Without --reason: just "drained"; --reason is drain's alone.
  ASSERT_EQ(keelctl({"real", "drain", "web", "10.0.0.6"}).rc, 0);
  EXPECT_NE(keelctl({"health", "show", "web"}).out.find("3h00m  drained\n"), std::string::npos);
  CliRun u = keelctl({"real", "undrain", "web", "10.0.0.6", "--reason", "x"});
  EXPECT_EQ(u.rc, 2) << u.err;
  CliRun bad = keelctl({"real", "drain", "web", "10.0.0.6", "--reason", ""});
  EXPECT_EQ(bad.rc, 1);
  EXPECT_EQ(bad.err, "keelctl: params.reason: must be 1..200 bytes of text without control characters, got \"\"\n");
}

TEST_F(KeelctlTest, ConnsListsTheEntries) {
  startServer();
  // conns: one row per entry, a worker column only when the plane has
  // workers, and the count line (with --limit's cut).
  const ConnListed c = testing::connListed("192.0.2.1", 5555, "10.0.0.1", 80, "web",
                                  ConnView{*IpAddress::parse("10.0.0.6"), ConnState::kKept, "", 125'000'000'000});
  fake_.connListResult.conns = {c, testing::connListed("192.0.2.1", 6000, "10.0.0.1", 80, "web",
                                              ConnView{*IpAddress::parse("10.0.0.5"), ConnState::kDown,
                                                       "its real is down", 2'000})};
  fake_.connListResult.scanned = 7;
  fake_.connListResult.matched = 2;
  CliRun ct = keelctl({"conns", "web", "--real", "10.0.0.6"});
  ASSERT_EQ(ct.rc, 0) << ct.err;
  EXPECT_EQ(ct.out,
            "Prot  Client          Destination  Service  Real       Idle  State\n"
            "TCP   192.0.2.1:5555  10.0.0.1:80  web      10.0.0.6  2m05s  kept\n"
            "TCP   192.0.2.1:6000  10.0.0.1:80  web      10.0.0.5     0s  down\n"
            "2 entries, 7 in the connection table\n");
  EXPECT_EQ(fake_.lastConnQuery->service, "web");
  EXPECT_EQ(fake_.lastConnQuery->real, IpAddress::parse("10.0.0.6"));
  fake_.connListResult.conns = {c};
  fake_.connListResult.conns[0].worker = 1;
  fake_.connListResult.matched = 4;
  ct = keelctl({"conns", "--limit", "1"});
  EXPECT_EQ(ct.out,
            "Prot  Client          Destination  Service  Real       Idle  Worker  State\n"
            "TCP   192.0.2.1:5555  10.0.0.1:80  web      10.0.0.6  2m05s       1  kept\n"
            "1 entry of 4 matching (--limit 1), 7 in the connection table\n");
  EXPECT_EQ(fake_.lastConnQuery->limit, 1u);
  CliRun cj = keelctl({"-o", "json", "conns", "--client", "192.0.2.1"});
  ASSERT_EQ(cj.rc, 0) << cj.err;
  EXPECT_EQ(json::parse(cj.out)["connections"][0]["worker"], 1);
  // --count: no entries asked for, the counts by service and real.
  fake_.connListResult.counts = {ConnCount{"web", IpAddress::parse("10.0.0.6"), 12, 1},
                                 ConnCount{"", std::nullopt, 0, 3}};
  ct = keelctl({"conns", "--count"});
  ASSERT_EQ(ct.rc, 0) << ct.err;
  EXPECT_EQ(fake_.lastConnQuery->limit, 0u);
  EXPECT_EQ(ct.out,
            "Service  Real      Kept  NotKept\n"
            "web      10.0.0.6    12        1\n"
            "-        -            0        3\n"
            "4 matching of 7 in the connection table\n");
  EXPECT_EQ(keelctl({"conns", "--count", "--limit", "5"}).rc, 2) << "--count lists nothing: no --limit";
  CliRun cbad = keelctl({"conns", "--limit", "lots"});
  EXPECT_EQ(cbad.rc, 1);
  EXPECT_NE(cbad.err.find("params.limit"), std::string::npos) << cbad.err;
}

// stats on DPDK: a line per family under the conntrack line (each family
// has its own half, so an IPv4-only plane reads "ipv4: N of C/2"), with the
// live evictions, and the ICMP peer lookups per worker beside the rx line;
// --rate turns the evictions and lookups into rates. None of it on a plane
// without workers (XDP).
TEST_F(KeelctlTest, StatsShowTableHalvesAndIcmpPeerLookups) {
  startServer();
  CliRun x = keelctl({"stats"});
  ASSERT_EQ(x.rc, 0) << x.err;
  EXPECT_EQ(x.out.find("ipv4:"), std::string::npos) << x.out;
  EXPECT_EQ(x.out.find("icmp peer"), std::string::npos) << x.out;
  onLoop([&] {
    WorkerStats w0{0, 1, 20};
    w0.icmpPeerFound = 3;
    w0.icmpPeerNotFound = 2;
    w0.icmpPeerRateLimited = 1;
    w0.connEntries = {4096, 0};
    w0.connCapacity = {4096, 4096};
    w0.connLiveEvictions = {900, 0};
    w0.txDropped = 5;
    w0.toKernelDropped = 6;
    w0.fromKernelDropped = 7;
    w0.fromKernel = 8;
    w0.hostFramesIgnored = 9;
    WorkerStats w1{1, 2, 10};
    w1.icmpPeerNotFound = 4;
    w1.connEntries = {4096, 0};
    w1.connCapacity = {4096, 4096};
    w1.connLiveEvictions = {5, 0};
    fake_.stats.workers = {w0, w1};
    fake_.stats.connTableEntries = 8192;
    fake_.stats.connTableCapacity = 16384;
    fake_.stats.connInsertsSkipped = 12;
    fake_.stats.connMidflowMisses = 3;
    // rx 100 (missed 9, no mbuf 4, errors 1), tx 80 (errors 2), link up at 25000 Mb/s.
    const PortStats port{100, 9, 4, 1, 80, 2, true, 25000};
    fake_.stats.port = port;
    return 0;
  });
  CliRun st = keelctl({"stats"});
  ASSERT_EQ(st.rc, 0) << st.err;
  EXPECT_NE(st.out.find("conntrack: 8192 of 16384 entries, 12 inserts skipped, 3 mid-flow misses\n"
                        "  ipv4: 8192 of 8192 entries, 905 live evictions\n"
                        "  ipv6: 0 of 8192 entries, 0 live evictions\n"
                        "workers rx packets: 0@lcore1=20 1@lcore2=10\n"
                        "workers icmp peer lookups (found/not_found/rate_limited): 0@lcore1=3/2/1 1@lcore2=0/4/0\n"
                        "workers tx dropped (port/to_kernel/from_kernel): 0@lcore1=5/6/7 1@lcore2=0/0/0\n"
                        "workers from kernel packets: 0@lcore1=8 1@lcore2=0\n"
                        "workers host frames ignored packets: 0@lcore1=9 1@lcore2=0\n"
                        "port: rx 100 (missed 9, no mbuf 4, errors 1), tx 80 (errors 2); link up 25000 Mb/s\n"),
            std::string::npos)
      << st.out;
  // -o json is the server's JSON as it is.
  CliRun sj = keelctl({"-o", "json", "stats"});
  ASSERT_EQ(sj.rc, 0) << sj.err;
  const json j = json::parse(sj.out);
  EXPECT_EQ(j["conntrack"]["ipv4"]["live_evictions"], 905);
  EXPECT_EQ(j["conntrack"]["inserts_skipped"], 12);
  EXPECT_EQ(j["conntrack"]["midflow_misses"], 3);
  EXPECT_EQ(j["workers"][1]["icmp_peer_lookups"]["not_found"], 4);
  // The fake's counters do not move: every rate is 0, the gauges as they are.
  CliRun sr = keelctl({"stats", "--rate", "--watch", "0.1", "--count", "1"});
  ASSERT_EQ(sr.rc, 0) << sr.err;
  EXPECT_NE(sr.out.find("  ipv4: 8192 of 8192 entries, 0.0 live evictions/s\n"), std::string::npos) << sr.out;
  EXPECT_NE(sr.out.find("conntrack: 8192 of 16384 entries, 0.0 inserts skipped/s, 0.0 mid-flow misses/s\n"), std::string::npos) << sr.out;
  EXPECT_NE(sr.out.find("workers icmp peer lookups/s (found/not_found/rate_limited): 0@lcore1=0.0/0.0/0.0 "
                        "1@lcore2=0.0/0.0/0.0\n"),
            std::string::npos)
      << sr.out;
  EXPECT_NE(sr.out.find("workers tx dropped/s (port/to_kernel/from_kernel): 0@lcore1=0.0/0.0/0.0 "
                        "1@lcore2=0.0/0.0/0.0\n"
                        "workers from kernel pkts/s: 0@lcore1=0.0 1@lcore2=0.0\n"
                        "port /s: rx 0.0 (missed 0.0, no mbuf 0.0, errors 0.0), tx 0.0 (errors 0.0); link up "
                        "25000 Mb/s\n"),
            std::string::npos)
      << sr.out << "(no host frames line while none are ignored)";
  CliRun srj = keelctl({"-o", "json", "stats", "--rate", "--watch", "0.1", "--count", "1"});
  ASSERT_EQ(srj.rc, 0) << srj.err;
  EXPECT_EQ(json::parse(srj.out)["workers"][0]["host_frames_ignored_per_s"], 0.0) << srj.out;
}

// With an empty ring (every real down, fail-closed) a flow the table does
// not hold is dropped, and lookup says so rather than "the ring's pick"
// (operator review L9).
TEST_F(KeelctlTest, LookupOnAnEmptyRingSaysThePacketIsDropped) {
  onLoop([&] {
    for (auto& r : fake_.services[0].reals) r.healthy = false;
    testing::FakeBackend::refresh(fake_.services[0]);
    return 0;
  });
  startServer();
  CliRun lt = keelctl({"lookup", "web", "--client", "192.0.2.1:5555"});
  ASSERT_EQ(lt.rc, 0) << lt.err;
  EXPECT_NE(lt.out.find("\n  connection table: no entry (a new flow: its first packet is dropped (the ring is "
                        "empty: drop_no_backend))\n"),
            std::string::npos)
      << lt.out;
  fake_.conns["web"] = ConnView{*IpAddress::parse("10.0.0.6"), ConnState::kDown, "its real is down", 0};
  lt = keelctl({"lookup", "web", "--client", "192.0.2.1:5555"});
  EXPECT_NE(lt.out.find("not kept (its real is down): its next packet is dropped (the ring is empty: "
                        "drop_no_backend)\n"),
            std::string::npos)
      << lt.out;
}

// On XDP, stats says where the program runs and whether it does now (the
// gauge keel_dataplane_attached, until now only in the metrics), also with
// --rate, where the attachment is a state, not a counter.
TEST_F(KeelctlTest, StatsShowsTheXdpAttachment) {
  onLoop([&] {
    fake_.stats.dataplane = "xdp";
    fake_.stats.upkeep = DataplaneUpkeep{true, 0, 0, "eth0", "native", "/sys/fs/bpf/keel/eth0"};
    return 0;
  });
  startServer();
  CliRun st = keelctl({"stats"});
  ASSERT_EQ(st.rc, 0) << st.err;
  EXPECT_NE(st.out.find("dataplane: xdp\nxdp program: on eth0 (native), attached\n"), std::string::npos) << st.out;
  onLoop([&] {
    fake_.stats.upkeep = DataplaneUpkeep{false, 3, 1, "eth0", "generic", "/sys/fs/bpf/keel/eth0"};
    return 0;
  });
  st = keelctl({"stats"});
  EXPECT_NE(st.out.find("xdp program: on eth0 (generic), NOT ATTACHED: VIP traffic is not forwarded until keeld "
                        "attaches it again; since keeld started: reattached 3 times, pins restored 1 time\n"),
            std::string::npos)
      << st.out;
  st = keelctl({"stats", "--rate", "--watch", "0.1", "--count", "1"});
  EXPECT_NE(st.out.find("s)\nxdp program: on eth0 (generic), NOT ATTACHED"), std::string::npos) << st.out;
  CliRun js = keelctl({"-o", "json", "stats"});
  EXPECT_EQ(json::parse(js.out)["attachment"]["attached"], false) << js.out;
}

// keelctl daemon status: one line each for keeld, its plane, what runs and
// the config, and lines that shout only when the operator must act: the
// file changed on disk since it was applied, the last reload refused (with
// its errors), keys waiting for a restart, keelctl changes not saved.
TEST_F(KeelctlTest, DaemonStatusSaysWhatRunsAndWhatWaits) {
  onLoop([&] {
    DaemonStatus& st = fake_.status;
    st.version = "0.1.0";
    st.pid = 4242;
    st.startedAt = std::chrono::system_clock::now() - std::chrono::hours(3);
    st.dataplane = "xdp";
    st.where = "eth0";
    st.configPath = "/etc/keel/keel.yaml";
    st.appliedAt = st.startedAt;
    st.appliedBy = "start";
    st.fileChanged = false;
    st.services = 2;
    st.reals = 5;
    st.stateFile = "/run/keel/runtime-eth0.json";
    return 0;
  });
  startServer();
  CliRun st = keelctl({"daemon", "status"});
  ASSERT_EQ(st.rc, 0) << st.err;
  EXPECT_EQ(st.out.rfind("keeld 0.1.0, pid 4242, up 3h0", 0), 0u) << st.out;
  EXPECT_NE(st.out.find("\ndata plane: xdp on eth0\nrunning: 2 services, 5 reals\nconfig: /etc/keel/keel.yaml, "
                        "applied at keeld's start 3h0"),
            std::string::npos)
      << st.out;
  EXPECT_NE(st.out.find("\nkeelctl changes on top of the file: none\n"), std::string::npos) << st.out;
  for (const char* loud : {"CHANGED", "REFUSED", "NOT SAVED", "restart", "adopted"})
    EXPECT_EQ(st.out.find(loud), std::string::npos) << loud << "\n" << st.out;
  onLoop([&] {
    DaemonStatus& s = fake_.status;
    s.adopted = true;
    s.fileChanged = true;
    s.lastReload = ReloadOutcome{std::chrono::system_clock::now() - std::chrono::seconds(90), false, "invalid_config",
                                 {"keel.yaml:3: services[0].port: must be an integer 0..65535, got \"x\"",
                                  "keel.yaml:9: services[1].vip: not an address"}};
    s.restartNeeded = {"limits", "metrics"};
    s.stopStartNeeded = {"limits"};
    s.runtime.drains = 2;
    s.runtime.weights = 1;
    s.runtime.addedServices = 1;
    s.stateUnsaved = "cannot write /run/keel/runtime-eth0.json: No space left on device";
    return 0;
  });
  st = keelctl({"daemon", "status"});
  ASSERT_EQ(st.rc, 0) << st.err;
  EXPECT_NE(st.out.find("data plane: xdp on eth0, adopted from the keeld before (its flows kept)\n"),
            std::string::npos)
      << st.out;
  // The refusal first, then what to do about the file it refused.
  EXPECT_NE(st.out.find("    keel.yaml:9: services[1].vip: not an address\n  CHANGED ON DISK since it was applied: "
                        "fix the file (`keelctl config check FILE`), then `keelctl config reload`\n"),
            std::string::npos)
      << st.out;
  EXPECT_NE(st.out.find(", invalid_config); keeld runs the config applied before it:\n"
                        "    keel.yaml:3: services[0].port: must be an integer 0..65535, got \"x\"\n"
                        "    keel.yaml:9: services[1].vip: not an address\n"),
            std::string::npos)
      << st.out;
  EXPECT_NE(st.out.find("  LAST RELOAD REFUSED 1m3"), std::string::npos) << st.out;  // 90 s ago, a second's slack
  // As `config reload` says them: limits only on the new data plane's line.
  EXPECT_NE(st.out.find("  not applied until keeld restarts: metrics (the running values are kept)\n"
                        "  not applied until keeld starts a new data plane: limits (the running values are kept; "),
            std::string::npos)
      << st.out;
  EXPECT_NE(st.out.find("keelctl changes on top of the file: 2 drains, 1 weight, 1 added service (kept in "),
            std::string::npos)
      << st.out;
  EXPECT_NE(st.out.find("  NOT SAVED: cannot write /run/keel/runtime-eth0.json: No space left on device"),
            std::string::npos)
      << st.out;
  // A reload the data plane refused and keeld could not undo says so.
  onLoop([&] {
    fake_.status.lastReload->runningKept = false;
    fake_.status.services = 1;
    return 0;
  });
  st = keelctl({"daemon", "status"});
  EXPECT_NE(st.out.find(", invalid_config); and the config applied before it could NOT be put back: part of the "
                        "refused file may run:\n"),
            std::string::npos)
      << st.out;
  EXPECT_NE(st.out.find("running: 1 service, 5 reals\n"), std::string::npos) << st.out;
  CliRun js = keelctl({"-o", "json", "daemon", "status"});
  ASSERT_EQ(js.rc, 0) << js.err;
  EXPECT_EQ(json::parse(js.out)["config"]["last_reload"]["errors"].size(), 2u) << js.out;
}

TEST_F(KeelctlTest, LookupHealthStatsConfigDaemon) {
  onLoop([&] {
    fake_.stats.reasons[KEEL_R_TX_IPIP] = {5, 500};
    fake_.stats.connTableEntries = 17;
    fake_.stats.connTableCapacity = 65536;
    fake_.stats.workers = {WorkerStats{0, 1, 20}, WorkerStats{1, 2, 10}};  // larger first, as makeService
    return 0;
  });
  startServer();
  CliRun lj = keelctl({"-o", "json", "lookup", "web", "--client", "192.0.2.1:5555"});
  ASSERT_EQ(lj.rc, 0) << lj.err;
  json l = json::parse(lj.out);
  std::string real = l["real"];
  EXPECT_TRUE(real == "10.0.0.5" || real == "10.0.0.6") << real;
  CliRun lt = keelctl({"lookup", "web", "--client", "192.0.2.1:5555"});
  EXPECT_EQ(lt.out.rfind("tcp 192.0.2.1:5555 -> 10.0.0.1:80 (web): " + real + " [up]  (the ring's pick: ", 0), 0u)
      << lt.out;
  EXPECT_NE(lt.out.find(")\n  connection table: no entry (a new flow: its first packet takes the ring's pick)\n"),
            std::string::npos)
      << lt.out;
  // The idle time as conns and health show a span (age(): "4m12s", not
  // "252 s"), so the two read alike side by side.
  fake_.conns["web"] = ConnView{*IpAddress::parse("10.0.0.6"), ConnState::kKept, "", 252'200'000'000};
  lt = keelctl({"lookup", "web", "--client", "192.0.2.1:5555"});
  EXPECT_NE(lt.out.find("\n  connection table: 10.0.0.6, idle 4m12s: the flow's packets go there (a SYN on these "
                        "ports opens a new connection: it takes the ring's pick)\n"),
            std::string::npos)
      << lt.out;
  fake_.conns["web"] = ConnView{*IpAddress::parse("10.0.0.6"), ConnState::kDown, "its real is down", 0};
  lt = keelctl({"lookup", "web", "--client", "192.0.2.1:5555"});
  EXPECT_NE(lt.out.find("\n  connection table: 10.0.0.6, idle 0s, not kept (its real is down): its next packet "
                        "takes the ring's pick\n"),
            std::string::npos)
      << lt.out;
  fake_.conns.clear();
  // Every real down, the pick held in the ring by fail-open: "down, held",
  // as service list and health show say, not "down" (it takes new flows).
  const ServiceSnapshot web = onLoop([&] { return fake_.services[0]; });
  onLoop([&] {
    for (auto& r : fake_.services[0].reals) {
      r.healthy = false;
      r.held = r.address.toString() == real;
    }
    testing::FakeBackend::refresh(fake_.services[0]);
    return 0;
  });
  lt = keelctl({"lookup", "web", "--client", "192.0.2.1:5555"});
  EXPECT_EQ(lt.out.rfind("tcp 192.0.2.1:5555 -> 10.0.0.1:80 (web): " + real + " [down, held]  (the ring's pick: ", 0), 0u)
      << lt.out;
  l = json::parse(keelctl({"-o", "json", "lookup", "web", "--client", "192.0.2.1:5555"}).out);
  EXPECT_EQ(l["state"], "down");
  EXPECT_EQ(l["held"], true);
  EXPECT_EQ(l["kept"], false);
  onLoop([&] {
    fake_.services[0] = web;
    return 0;
  });
  CliRun l6 = keelctl({"-o", "json", "lookup", "v6", "--client", "[2001:db8::77]:1000"});
  ASSERT_EQ(l6.rc, 0) << l6.err;
  EXPECT_EQ(json::parse(l6.out)["real"], "2001:db8::5");
  // A client's port 0 is port 0, not "every port" (input review L6).
  CliRun zero = keelctl({"lookup", "web", "--client", "192.0.2.1:0"});
  ASSERT_EQ(zero.rc, 0) << zero.err;
  EXPECT_EQ(zero.out.rfind("tcp 192.0.2.1:0 -> 10.0.0.1:80 (web): ", 0), 0u) << zero.out;
  CliRun bad = keelctl({"lookup", "web", "--client", "192.0.2.1"});
  EXPECT_EQ(bad.rc, 2);  // a usage error: nothing was sent
  EXPECT_EQ(bad.err, usageErr("lookup", "--client: must be ADDR:PORT (IPv6 as [ADDR]:PORT), got \"192.0.2.1\""));

  CliRun h = keelctl({"health", "show", "web"});
  ASSERT_EQ(h.rc, 0) << h.err;
  EXPECT_NE(h.out.find("web      10.0.0.5  up     tcp"), std::string::npos) << h.out;

  CliRun s = keelctl({"-o", "json", "stats"});
  ASSERT_EQ(s.rc, 0) << s.err;
  EXPECT_EQ(json::parse(s.out)["reasons"]["tx_ipip"]["packets"], 5);
  CliRun st = keelctl({"stats", "web"});
  EXPECT_NE(st.out.find("dataplane: mock\n"), std::string::npos) << st.out;
  EXPECT_NE(st.out.find("tx_ipip"), std::string::npos);
  EXPECT_NE(st.out.find("conntrack: 17 of 65536 entries, 0 inserts skipped, 0 mid-flow misses\n"), std::string::npos) << st.out;
  EXPECT_EQ(json::parse(s.out)["conntrack"]["entries"], 17);
  EXPECT_NE(st.out.find("workers rx packets: 0@lcore1=20 1@lcore2=10\n"), std::string::npos) << st.out;
  EXPECT_EQ(json::parse(s.out)["workers"][1]["rx_packets"], 10);
  // --rate: two samples; the fake's counters do not move, so every rate is 0
  // if, and only if, each entry is matched to its own previous sample: an
  // entry with no match reads its whole counter, and one matched to a later
  // entry's sample (smaller counters, see makeService) a nonzero difference.
  CliRun sr = keelctl({"-o", "json", "stats", "--rate", "--watch", "0.1", "--count", "2"});
  ASSERT_EQ(sr.rc, 0) << sr.err;
  std::vector<std::string> docs = linesOf(sr.out);
  for (const std::string& line : docs) {
    json doc = json::parse(line);  // --watch -o json: one document per line
    EXPECT_EQ(doc["reasons"]["tx_ipip"]["packets_per_s"], 0.0);
    ASSERT_EQ(doc["workers"].size(), 2u);
    for (const json& w : doc["workers"]) EXPECT_EQ(w["rx_packets_per_s"], 0.0) << w;
    ASSERT_EQ(doc["services"].size(), 2u);
    for (const json& svc : doc["services"]) {
      EXPECT_EQ(svc["packets_per_s"], 0.0) << svc["name"];
      EXPECT_EQ(svc["bytes_per_s"], 0.0) << svc["name"];
      for (const json& r : svc["reals"]) EXPECT_EQ(r["packets_per_s"], 0.0) << r["address"];
    }
  }
  EXPECT_EQ(docs.size(), 2u);

  // keelctl reads the file and sends its text: keeld reads no file for a
  // client (it would with its own privileges).
  const std::string goodText = "services: []\n# good\n";
  { std::ofstream(dir_ + "/good.yaml") << goodText; }
  { std::ofstream(dir_ + "/bad.yaml") << "services:\n"; }
  CliRun ok = keelctl({"config", "check", dir_ + "/good.yaml"});
  EXPECT_EQ(ok.rc, 0) << ok.err;
  EXPECT_EQ(ok.out, dir_ + "/good.yaml: OK (2 services, 3 reals)\n") << "keeld --check-config's line";
  EXPECT_EQ(onLoop([&] { return fake_.checkedTexts; }), std::vector<std::string>{goodText});
  // Valid with warnings (an l2dsr real keeld would hold down): ok, and each
  // warning on stderr.
  { std::ofstream(dir_ + "/warn.yaml") << goodText; }
  CliRun warn = keelctl({"config", "check", dir_ + "/warn.yaml"});
  EXPECT_EQ(warn.rc, 0) << warn.err;
  EXPECT_EQ(warn.out, dir_ + "/warn.yaml: OK (2 services, 3 reals)\n");
  EXPECT_EQ(warn.err, "warning: l2dsr: 10.0.0.5 not in the neighbour table of eth1\n");
  onLoop([&] {
    fake_.checkedTexts.pop_back();
    return 0;
  });
  CliRun missing = keelctl({"config", "check", dir_ + "/absent.yaml"});
  EXPECT_EQ(missing.rc, 1);
  EXPECT_EQ(missing.err, "keelctl: " + dir_ + "/absent.yaml: cannot open: No such file or directory\n");
  CliRun notFile = keelctl({"config", "check", dir_});
  EXPECT_EQ(notFile.rc, 1);
  EXPECT_EQ(notFile.err, "keelctl: " + dir_ + ": not a regular file\n");
  EXPECT_EQ(onLoop([&] { return fake_.checkedTexts.size(); }), 1u);  // neither reached the daemon
  CliRun cb = keelctl({"config", "check", dir_ + "/bad.yaml"});
  EXPECT_EQ(cb.rc, 1);
  // Each error of the file once, one a line (the first was printed twice,
  // as the message and as the first of the list).
  EXPECT_EQ(cb.err, "keelctl: bad.yaml:3: services[0].port: must be an integer 0..65535, got \"x\"\n");
  CliRun rl = keelctl({"config", "reload"});
  EXPECT_EQ(rl.rc, 0);
  EXPECT_EQ(rl.out, "config reloaded: no changes\nreals: 3\nservices: 2\n");
  EXPECT_EQ(rl.err, "");
  onLoop([&] {
    fake_.restartNeeded = {"limits", "dataplane.dpdk"};
    return 0;
  });
  rl = keelctl({"config", "reload"});
  EXPECT_EQ(rl.rc, 0);
  EXPECT_EQ(rl.out.find("restart_needed"), std::string::npos) << rl.out;
  EXPECT_EQ(rl.err, "warning: not applied until keeld restarts: limits, dataplane.dpdk (the running values are kept)\n");
  // What a restart does not apply either (a pinned XDP plane) has its own
  // line, which says how to apply it; the first line keeps the rest.
  onLoop([&] {
    fake_.restartNeeded = {"dataplane.xdp_mode", "limits", "control"};
    fake_.stopStartNeeded = {"dataplane.xdp_mode", "limits"};
    return 0;
  });
  rl = keelctl({"config", "reload"});
  EXPECT_EQ(rl.rc, 0);
  EXPECT_EQ(rl.out.find("stop_start_needed"), std::string::npos) << rl.out;
  EXPECT_EQ(rl.err,
            "warning: not applied until keeld restarts: control (the running values are kept)\n"
            "warning: not applied until keeld starts a new data plane: dataplane.xdp_mode, limits (the running "
            "values are kept; a restart leaves the pinned XDP plane in place: keelctl daemon stop, then start "
            "keeld, which picks every established flow again)\n");
  onLoop([&] {
    fake_.stopStartNeeded.clear();
    fake_.restartNeeded.clear();
    fake_.reloadWarnings = {"keel.yaml:9: services[0].reals[0].mac: mac is not used"};
    return 0;
  });
  rl = keelctl({"config", "reload"});
  EXPECT_EQ(rl.rc, 0);
  EXPECT_EQ(rl.out.find("warnings"), std::string::npos) << rl.out;
  EXPECT_EQ(rl.err, "warning: keel.yaml:9: services[0].reals[0].mac: mac is not used\n");

  // A plane that cannot outlive keeld (DPDK) refuses --keep-forwarding:
  // the refusal names the option typed, not the API's params.detach
  // (-o json keeps the daemon's error as sent).
  onLoop([&] {
    fake_.detachable = false;
    return 0;
  });
  CliRun refused = keelctl({"daemon", "stop", "--keep-forwarding"});
  EXPECT_EQ(refused.rc, 1);
  EXPECT_EQ(refused.err.rfind("keelctl: --keep-forwarding: this data plane cannot keep forwarding", 0), 0u)
      << refused.err;
  refused = keelctl({"-o", "json", "daemon", "stop", "--keep-forwarding"});
  EXPECT_EQ(json::parse(refused.out)["error"]["field"], "params.detach") << refused.out;
  EXPECT_EQ(json::parse(refused.out)["error"]["message"].get<std::string>().rfind("params.detach: ", 0), 0u);
  onLoop([&] {
    fake_.detachable = true;
    return 0;
  });

  // --keep-forwarding (DaemonStopDetachIsTheOlderName: --detach): the
  // data plane stays. The server stops after it.
  CliRun d = keelctl({"daemon", "stop", "--keep-forwarding"});
  EXPECT_EQ(d.rc, 0) << d.err;
  EXPECT_EQ(d.out, "keeld stopping; the data plane keeps forwarding for the next keeld\n");
  EXPECT_TRUE(eventually([&] { return fake_.shutdownDetach.value_or(false); }));
}

// `config reload` says what the reload changed, one line a change as keeld
// logged each (the reply's `changes`), then the counts as before; -o json
// gives the reply as it is. A keeld that does not list its changes (before
// `changes`) gets the counts alone, not "no changes".
TEST_F(KeelctlTest, ConfigReloadSaysWhatItChanged) {
  startServer();
  const json changes = json::parse(R"([
    {"change": "node_updated", "keys": [{"key": "icmp_too_big_rate", "from": "1000", "to": "0"}]},
    {"change": "service_removed", "service": "old"},
    {"change": "service_updated", "service": "web",
     "keys": [{"key": "scheduler", "from": "maglev", "to": "maglev-src"},
              {"key": "ring_size", "from": "65537", "to": "655373"}]},
    {"change": "real_weight_changed", "service": "web", "real": "10.0.0.5", "from": 1, "to": 3},
    {"change": "health_check_changed", "service": "web", "reals": 2,
     "keys": [{"key": "interval", "from": "5s", "to": "2s"}]},
    {"change": "health_check_changed", "service": "web", "real": "10.0.0.6",
     "keys": [{"key": "port", "from": "", "to": "8080"}, {"key": "path", "from": "/healthz", "to": "/a b"}]},
    {"change": "real_removed", "service": "web", "real": "10.0.0.7"},
    {"change": "real_added", "service": "web", "real": "2001:db8::8"},
    {"change": "service_added", "service": "dns", "vip": "2001:db8::53", "port": 0, "protocol": "udp",
     "reals": 1},
    {"change": "real_mac_changed", "service": "dsr", "real": "10.0.2.1", "from": "02:00:00:00:00:11",
     "to": "02:00:00:00:00:12"},
    {"change": "upkeep_interval_changed", "from": "1s", "to": "5s"},
    {"change": "flow_count_interval_changed", "from": "10s", "to": "1m"},
    {"change": "real_renamed", "service": "web", "real": "10.0.0.5", "from": "a", "to": "b"}
  ])");
  onLoop([&] {
    fake_.reloadChanges = changes;
    return 0;
  });
  CliRun rl = keelctl({"config", "reload"});
  ASSERT_EQ(rl.rc, 0) << rl.err;
  EXPECT_EQ(rl.out,
            "node: icmp_too_big_rate 1000 -> 0\n"
            "service old: removed\n"
            "service web: scheduler maglev -> maglev-src, ring_size 65537 -> 655373\n"
            "service web real 10.0.0.5: weight 1 -> 3\n"
            "service web: health (2 reals) interval 5s -> 2s\n"
            "service web real 10.0.0.6: health port \"\" -> 8080, path /healthz -> \"/a b\"\n"
            "service web real 10.0.0.7: removed\n"
            "service web real 2001:db8::8: added\n"
            "service dns: added, [2001:db8::53]:*/UDP with 1 real\n"
            "service dsr real 10.0.2.1: mac 02:00:00:00:00:11 -> 02:00:00:00:00:12\n"
            "dataplane.upkeep_interval: 1s -> 5s\n"
            "metrics.flow_count_interval: 10s -> 1m\n"
            // A kind this keelctl does not know still gets its line.
            "service web real 10.0.0.5: real_renamed a -> b\n"
            "reals: 3\n"
            "services: 2\n");
  EXPECT_EQ(rl.err, "");
  CliRun js = keelctl({"-o", "json", "config", "reload"});
  ASSERT_EQ(js.rc, 0) << js.err;
  EXPECT_EQ(json::parse(js.out), (json{{"services", 2}, {"reals", 3}, {"changes", changes}}));
  onLoop([&] {
    fake_.reloadChanges = nullptr;
    return 0;
  });
  rl = keelctl({"config", "reload"});
  ASSERT_EQ(rl.rc, 0) << rl.err;
  EXPECT_EQ(rl.out, "reals: 3\nservices: 2\n");
}

TEST_F(KeelctlTest, DaemonStopDetachIsTheOlderNameOfKeepForwarding) {
  startServer();
  CliRun d = keelctl({"daemon", "stop", "--detach"});
  EXPECT_EQ(d.rc, 0) << d.err;
  EXPECT_EQ(d.out, "keeld stopping; the data plane keeps forwarding for the next keeld\n");
  EXPECT_TRUE(eventually([&] { return fake_.shutdownDetach.value_or(false); }));
}

// The help of `daemon stop` says it takes the balancer out, not only that
// keeld stops (operator review M4): the man page said so, the help did not.
TEST_F(KeelctlTest, DaemonStopHelpSaysItTakesTheBalancerOut) {
  CliRun top = keelctl({"--help"});
  EXPECT_NE(top.out.find("stop keeld (takes the balancer out unless --keep-forwarding)"), std::string::npos)
      << top.out;
  CliRun h = keelctl({"daemon", "stop", "--help"});
  EXPECT_NE(h.out.find("take the balancer out: no VIP traffic is forwarded"), std::string::npos) << h.out;
  EXPECT_NE(h.out.find("Restart=on-failure does not start it again"), std::string::npos) << h.out;
}

// keelctl.8 beside the code (habit 9) says what an operator looks for
// there: every option --help lists, the files (the default socket is
// ApiClient's), and that a plain daemon stop does not wait for keeld to exit
// (keeld answers, then stops: api_server.cc's send()).
TEST_F(KeelctlTest, ManPageHasEveryOptionTheFilesAndWhatDaemonStopWaitsFor) {
  const char* man = std::getenv("KEELCTL_MAN");
  if (!man) GTEST_SKIP() << "KEELCTL_MAN not set (run through meson test)";
  const std::string page = slurp(man);
  ASSERT_FALSE(page.empty()) << man;
  CliRun help = keelctl({"--help"});
  ASSERT_EQ(help.rc, 0);
  const std::regex longOption(R"((^|[ ,])(--[a-z][a-z-]*))");
  int options = 0;
  for (std::sregex_iterator it(help.out.begin(), help.out.end(), longOption), end; it != end; ++it, ++options) {
    std::string roff;  // "--timeout" as the page writes it, "\\-\\-timeout"
    for (char c : (*it)[2].str()) roff += c == '-' ? std::string("\\-") : std::string(1, c);
    EXPECT_NE(page.find(roff), std::string::npos) << "keelctl.8 does not document " << (*it)[2];
  }
  EXPECT_GE(options, 5) << help.out;  // --help, --socket, --timeout, --output, --version
  for (const char* env : {"KEELCTL_SOCKET", "KEELCTL_TIMEOUT"})
    EXPECT_NE(page.find(".B " + std::string(env) + "\n"), std::string::npos) << env << " not under ENVIRONMENT";
  const size_t files = page.find("\n.SH FILES\n");
  ASSERT_NE(files, std::string::npos) << "keelctl.8 has no FILES section";
  const std::string filesSection = page.substr(files, page.find("\n.SH ", files + 1) - files);
  EXPECT_NE(filesSection.find(".I " + std::string(kDefaultSocketPath) + "\n"), std::string::npos) << filesSection;
  EXPECT_NE(filesSection.find("control.readonly.socket"), std::string::npos) << filesSection;
  EXPECT_NE(page.find("keelctl does not wait for keeld to exit"), std::string::npos);
}

// A peer behind --socket may answer anything. A reply nested 200,000 levels
// deep overflowed keelctl's stack (a copy or dump recurses once a level):
// it is refused before it is parsed, at the depth keeld refuses in a
// request (kMaxJsonDepth, common/json_depth.h), as an answer that is no
// answer (exit 3: the request was sent).
TEST_F(KeelctlTest, AReplyNestedTooDeepIsRefusedNotACrash) {
  const std::string deep = std::string(200000, '[') + std::string(200000, ']');
  for (const std::string& reply : {R"({"ok":true,"result":)" + deep + "}",
                                   R"({"ok":false,"error":{"code":"failed","message":"x","details":)" + deep + "}}"}) {
    CliRun r = keelctlAnswered(reply, {"daemon", "status"});
    EXPECT_EQ(r.rc, 3) << r.err;
    // daemon status is a query: nothing to look for before repeating it.
    EXPECT_EQ(r.err, "keelctl: malformed response from " + dir_ +
                         "/peer.sock: JSON nested deeper than 64 levels; the request was sent: a query, which "
                         "changes nothing, so it can be repeated (keeld's journal says why it did not answer)\n");
    EXPECT_EQ(r.out, "");
    CliRun j = keelctlAnswered(reply, {"-o", "json", "service", "list"});
    EXPECT_EQ(j.rc, 3) << j.err;
    const json je = json::parse(j.out, nullptr, false);
    EXPECT_TRUE(je.is_object() && je.contains("error") && je["error"].value("code", "") == "no_response") << j.out;
  }
  // At the bound it is a reply like any other: -o json prints it.
  const std::string deepest = std::string(63, '[') + std::string(63, ']');
  CliRun ok = keelctlAnswered(R"({"ok":true,"result":)" + deepest + "}", {"-o", "json", "service", "list"});
  EXPECT_EQ(ok.rc, 0) << ok.err;
  EXPECT_EQ(json::parse(ok.out, nullptr, false), json::parse(deepest)) << ok.out;
}

// A reply without a member keelctl reads, or with one of another type,
// is said once, naming the member, and exits 1 ("an answer of a shape it
// does not know", keelctl.8), with nothing printed before it: it made
// keelctl abort (an assertion in nlohmann::json) or say the library's
// "type must be number, but is string". (The answer to a change exits 3:
// AnUnreadableAnswerToAChangeMayHaveBeenApplied.)
TEST_F(KeelctlTest, AReplyOfAnotherShapeNamesWhatIsWrong) {
  const json status = json::parse(R"({"version": "0.1.0", "pid": 7, "started_at": "2026-01-01T00:00:00Z",
      "dataplane": {"kind": "xdp", "where": "eth0", "adopted": false},
      "config": {"path": "/etc/keel/keel.yaml", "applied_at": "2026-01-01T00:00:00Z", "applied_by": "start",
                 "file_changed": false, "file_error": null, "last_reload": null, "restart_needed": [],
                 "stop_start_needed": []},
      "services": 1, "reals": 2,
      "runtime_changes": {"drains": 0, "weights": 0, "added_services": 0, "removed_services": 0,
                          "added_reals": 0, "removed_reals": 0, "state_file": null, "unsaved": null}})");
  const json service = json::parse(R"({"name": "web", "vip": "10.0.0.1", "port": 80, "protocol": "tcp",
      "scheduler": "maglev", "forwarding": "ipip", "packets": 1, "bytes": 2, "ring_size": 65537,
      "published_ring_size": 65537,
      "reals": [{"address": "10.0.0.5", "weight": 100, "state": "up", "packets": 1, "bytes": 2}]})");
  const json lookup = json::parse(R"({"service": "web", "protocol": "tcp", "client_address": "192.0.2.1",
      "client_port": 5555, "vip": "10.0.0.1", "port": 80, "real": "10.0.0.5", "hash": 1, "scheduler": "maglev",
      "slot": 3, "ring_size": 65537, "connection": {"real": "10.0.0.5", "idle_ms": 1000, "kept": true}})");
  const json conns = json::parse(R"({"connections": [{"protocol": "tcp", "client_address": "192.0.2.1",
      "client_port": 5555, "vip": "10.0.0.1", "port": 80, "service": "web", "real": "10.0.0.5",
      "idle_ms": 1000, "state": "kept"}], "matched": 1, "scanned": 9})");
  const json stats = json::parse(R"({"dataplane": "xdp", "reasons": {"tx_ipip": {"packets": 1, "bytes": 2}},
      "services": [{"name": "web", "vip": "10.0.0.1", "port": 80, "protocol": "tcp", "packets": 1, "bytes": 2,
                    "reals": [{"address": "10.0.0.5", "packets": 1, "bytes": 2}]}]})");
  const json health = json::parse(R"({"services": [{"name": "web", "reals": [{"address": "10.0.0.5",
      "state": "up", "check": "tcp", "reason": "", "detail": "ok"}]}]})");
  auto ok = [](json result) { return json{{"ok", true}, {"result", std::move(result)}}.dump(); };
  // The whole of each reply prints (so each row's fault is the one named).
  for (const auto& [args, result] : std::vector<std::pair<std::vector<std::string>, json>>{
           {{"daemon", "status"}, status},
           {{"service", "show", "web"}, json{{"service", service}}},
           {{"lookup", "web", "--client", "192.0.2.1:5555"}, lookup},
           {{"conns"}, conns},
           {{"stats"}, stats},
           {{"stats", "--rate"}, stats},
           {{"health", "show"}, health}}) {
    CliRun r = keelctlAnswered(ok(result), args);
    EXPECT_EQ(r.rc, 0) << args[0] << ": " << r.err;
    EXPECT_EQ(r.err, "") << args[0];
  }
  auto without = [](json j, const json::json_pointer& at) {
    j[at.parent_pointer()].erase(at.back());
    return j;
  };
  auto with = [](json j, const json::json_pointer& at, json v) {
    j[at] = std::move(v);
    return j;
  };
  struct Row {
    std::vector<std::string> args;
    std::string reply, err;
  };
  const std::string to = "keelctl: unexpected reply from keeld to ";
  const Row rows[] = {
      {{"daemon", "status"}, ok(without(status, "/config"_json_pointer)),
       to + "daemon.status: result.config: missing\n"},
      {{"daemon", "status"}, ok(without(status, "/config/applied_at"_json_pointer)),
       to + "daemon.status: result.config.applied_at: missing\n"},
      {{"daemon", "status"}, ok(with(status, "/dataplane"_json_pointer, "xdp")),
       to + "daemon.status: result.dataplane: expected an object, got a string\n"},
      {{"daemon", "status"}, ok(with(status, "/services"_json_pointer, -1)),
       to + "daemon.status: result.services: expected a non-negative integer, got -1\n"},
      {{"daemon", "status"},
       ok(with(status, "/config/last_reload"_json_pointer, json{{"at", "2026-01-01T00:00:00Z"}, {"ok", false}})),
       to + "daemon.status: result.config.last_reload.code: missing\n"},
      {{"daemon", "status"}, ok(json::array()), to + "daemon.status: result: expected an object, got an array\n"},
      {{"service", "list"}, ok(json{{"services", {with(service, "/port"_json_pointer, "80")}}}),
       to + "service.list: result.services[0].port: expected a non-negative integer, got a string\n"},
      {{"service", "list"}, ok(json::object()), to + "service.list: result.services: missing\n"},
      {{"service", "show", "web"}, ok(json{{"service", with(service, "/reals"_json_pointer, json::object())}}),
       to + "service.show: result.service.reals: expected an array, got an object\n"},
      {{"service", "show", "web"}, ok(json{{"service", without(service, "/reals/0/address"_json_pointer)}}),
       to + "service.show: result.service.reals[0].address: missing\n"},
      {{"lookup", "web", "--client", "192.0.2.1:5555"}, ok(with(lookup, "/connection/kept"_json_pointer, "yes")),
       to + "lookup: result.connection.kept: expected true or false, got a string\n"},
      {{"lookup", "web", "--client", "192.0.2.1:5555"}, ok(without(lookup, "/hash"_json_pointer)),
       to + "lookup: result.hash: missing\n"},
      {{"conns"}, ok(with(conns, "/connections/0/idle_ms"_json_pointer, 1.5)),
       to + "conn.list: result.connections[0].idle_ms: expected a non-negative integer, got 1.5\n"},
      {{"conns", "--count"}, ok(json{{"counts", json::array()}, {"scanned", 0}}),
       to + "conn.list: result.matched: missing\n"},
      {{"stats"}, ok(without(stats, "/reasons"_json_pointer)), to + "stats.get: result.reasons: missing\n"},
      {{"stats", "--rate"}, ok(without(stats, "/services/0/reals/0/address"_json_pointer)),
       to + "stats.get: result.services[0].reals[0].address: missing\n"},
      {{"health", "show"}, ok(with(health, "/services/0/reals"_json_pointer, nullptr)),
       to + "health.show: result.services[0].reals: expected an array, got null\n"},
      // The envelope too.
      {{"service", "list"}, R"({"ok":"yes","result":{"services":[]}})",
       to + "service.list: ok: expected true or false, got a string\n"},
      {{"service", "list"}, R"({"ok":false,"error":"no"})",
       to + "service.list: error: expected an object, got a string\n"},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.reply);
    CliRun r = keelctlAnswered(row.reply, row.args);
    EXPECT_EQ(r.rc, 1) << r.err;
    EXPECT_EQ(r.err, row.err);
    EXPECT_EQ(r.out, "") << "nothing before the error";
  }
  // -o json prints a result as sent, whatever it holds; a reply it cannot
  // read itself (its envelope) is an error object as any other.
  CliRun raw = keelctlAnswered(ok(without(status, "/config"_json_pointer)), {"-o", "json", "daemon", "status"});
  EXPECT_EQ(raw.rc, 0) << raw.err;
  EXPECT_EQ(json::parse(raw.out, nullptr, false), without(status, "/config"_json_pointer)) << raw.out;
  CliRun env = keelctlAnswered(R"({"ok":1})", {"-o", "json", "daemon", "status"});
  EXPECT_EQ(env.rc, 1) << env.err;
  EXPECT_EQ(env.err, to + "daemon.status: ok: expected true or false, got 1\n");
  EXPECT_EQ(json::parse(env.out, nullptr, false),
            (json{{"error", {{"code", "failed"}, {"message", env.err.substr(9, env.err.size() - 10)}}}}))
      << env.out;
}

// An answer to a change that keelctl cannot read (of another shape, its
// envelope too) exited 1, which tells a script that keeld refused it and
// nothing changed; keeld may have applied it (with "ok": true it did), so
// it exits 3, as an answer that is no JSON at all did already, saying
// where to look before repeating it (-o json: no_response). An answer to a
// query stays 1: nothing was to change.
TEST_F(KeelctlTest, AnUnreadableAnswerToAChangeMayHaveBeenApplied) {
  auto ok = [](json result) { return json{{"ok", true}, {"result", std::move(result)}}.dump(); };
  const std::string to = "keelctl: unexpected reply from keeld to ";
  const std::string applied = "; the request was sent, and keeld may have applied it: look (";
  struct Row {
    std::vector<std::string> args;
    std::string reply, err;
  };
  const Row rows[] = {
      {{"real", "drain", "web", "10.0.0.5"},
       ok(json{{"service", "web"}, {"address", "10.0.0.5"}, {"before", {{"weight", 100}, {"state", "up"}}},
               {"after", {{"weight", 100}, {"state", "draining"}}}, {"published_ring_size", "65537"}}),
       to + "real.drain: result.published_ring_size: expected a non-negative integer, got a string" + applied +
           "keelctl service list, health show) before repeating it\n"},
      {{"real", "set-weight", "web", "10.0.0.5", "0"}, R"({"ok":"yes","result":{}})",
       to + "real.set_weight: ok: expected true or false, got a string" + applied +
           "keelctl service list, health show) before repeating it\n"},
      {{"service", "remove", "web"}, R"({"ok":false,"error":"no"})",
       to + "service.remove: error: expected an object, got a string" + applied +
           "keelctl service list, health show) before repeating it\n"},
      {{"service", "add", "dns", "--vip", "10.0.0.53", "--port", "53"}, ok(json{{"service", "dns"}, {"vip", "10.0.0.53"}, {"port", "53"}}),
       to + "service.add: result.port: expected a non-negative integer, got a string" + applied +
           "keelctl service list, health show) before repeating it\n"},
      {{"config", "reload"},
       ok(json{{"changes", {{{"change", "health_check_changed"}, {"service", "web"}, {"reals", "2"}}}}}),
       to + "config.reload: result.changes[0].reals: expected a non-negative integer, got a string" + applied +
           "keelctl daemon status) before repeating it\n"},
      {{"daemon", "stop"}, R"({"ok":1})",
       to + "daemon.shutdown: ok: expected true or false, got 1" + applied +
           "keelctl daemon status, which cannot connect once keeld has stopped) before repeating it\n"},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.reply);
    CliRun r = keelctlAnswered(row.reply, row.args);
    EXPECT_EQ(r.rc, 3) << r.err;
    EXPECT_EQ(r.err, row.err);
    EXPECT_EQ(r.out, "") << "nothing before the error";
  }
  // -o json: the same message, code no_response, as for no answer.
  CliRun j = keelctlAnswered(R"({"ok":"yes"})", {"-o", "json", "real", "drain", "web", "10.0.0.5"});
  EXPECT_EQ(j.rc, 3) << j.err;
  EXPECT_EQ(json::parse(j.out, nullptr, false),
            (json{{"error", {{"code", "no_response"}, {"message", j.err.substr(9, j.err.size() - 10)}}}}))
      << j.out;
  // A query's: 1, as before.
  CliRun q = keelctlAnswered(R"({"ok":"yes"})", {"health", "show"});
  EXPECT_EQ(q.rc, 1) << q.err;
  EXPECT_EQ(q.err, to + "health.show: ok: expected true or false, got a string\n");
}

// Whether `text` holds, raw, a character a terminal acts on or that makes
// a line read as other text: a C0 control but the newline, DEL, a C1
// control (UTF-8 C2 80..9F), U+061C, U+200E, U+200F, U+2028..U+202E or
// U+2066..U+2069.
bool rawControl(const std::string& text) {
  for (size_t i = 0; i < text.size(); ++i) {
    const auto b = [&](size_t k) { return i + k < text.size() ? static_cast<unsigned char>(text[i + k]) : 0; };
    if ((b(0) < 0x20 && b(0) != '\n') || b(0) == 0x7f) return true;
    if (b(0) == 0xc2 && b(1) >= 0x80 && b(1) <= 0x9f) return true;
    if (b(0) == 0xd8 && b(1) == 0x9c) return true;
    if (b(0) == 0xe2 && b(1) == 0x80 && (b(2) == 0x8e || b(2) == 0x8f || (b(2) >= 0xa8 && b(2) <= 0xae))) return true;
    if (b(0) == 0xe2 && b(1) == 0x81 && b(2) >= 0xa6 && b(2) <= 0xa9) return true;
  }
  return false;
}

// What a peer behind --socket sends is shown, never obeyed: a table, a
// line, an error or a warning writes each byte of a control character
// (ESC's sequences, C1's CSI, DEL, a bidirectional override) as \xHH, and
// so does -o json (\uXXXX, the same string to a JSON reader), where JSON
// left DEL and C1 raw. Other UTF-8 text stays as it is.
TEST_F(KeelctlTest, ControlCharactersFromTheDaemonAreShownEscaped) {
  const std::string esc = "\x1b[2J\x1b]0;owned\x07";  // clear the screen, set the title
  const std::string c1 = "\xc2\x9b" "31m";            // CSI as one C1 character
  const std::string rlo = "\xe2\x80\xae";              // U+202E, right-to-left override
  const json services = {{"services",
                          {{{"name", "web" + esc}, {"vip", "10.0.0.1"}, {"port", 80}, {"protocol", "tcp"},
                            {"scheduler", "maglev" + c1}, {"forwarding", "ipip"}, {"packets", 1}, {"bytes", 2},
                            {"reals",
                             {{{"address", "10.0.0.5\x7f"}, {"weight", 100}, {"state", "up" + rlo},
                               {"packets", 0}, {"bytes", 0}}}}}}}};
  const std::string list = json{{"ok", true}, {"result", services}}.dump();
  CliRun t = keelctlAnswered(list, {"service", "list"});
  ASSERT_EQ(t.rc, 0) << t.err;
  EXPECT_FALSE(rawControl(t.out)) << t.out;
  EXPECT_NE(t.out.find("maglev\\xc2\\x9b31m"), std::string::npos) << t.out;
  EXPECT_NE(t.out.find("web\\x1b[2J\\x1b]0;owned\\x07"), std::string::npos) << t.out;
  EXPECT_NE(t.out.find("10.0.0.5\\x7f"), std::string::npos) << t.out;
  EXPECT_NE(t.out.find("up\\xe2\\x80\\xae"), std::string::npos) << t.out;
  CliRun j = keelctlAnswered(list, {"-o", "json", "service", "list"});
  ASSERT_EQ(j.rc, 0) << j.err;
  EXPECT_FALSE(rawControl(j.out)) << j.out;
  EXPECT_NE(j.out.find(R"("scheduler": "maglev\u009b31m")"), std::string::npos) << j.out;
  EXPECT_EQ(json::parse(j.out, nullptr, false), services) << "the same values to a JSON reader";

  // keeld's errors: the message, each of a file's errors (a newline in one
  // cannot forge a line of its own), the change's warnings.
  CliRun e = keelctlAnswered(
      json{{"ok", false}, {"error", {{"code", "not_found"}, {"message", "no such" + esc}}}}.dump(),
      {"real", "drain", "web", "10.0.0.5"});
  EXPECT_EQ(e.rc, 1);
  EXPECT_EQ(e.err, "keelctl: no such\\x1b[2J\\x1b]0;owned\\x07\n");
  CliRun d = keelctlAnswered(
      json{{"ok", false},
           {"error",
            {{"code", "invalid_config"}, {"message", "m"}, {"details", {{"errors", {"a:1: x\nkeelctl: OK"}}}}}}}
          .dump(),
      {"config", "reload"});
  EXPECT_EQ(d.err, "keelctl: a:1: x\\x0akeelctl: OK\n");
  CliRun w = keelctlAnswered(
      json{{"ok", true},
           {"result",
            {{"service", "web"}, {"address", "10.0.0.5"}, {"before", {{"weight", 100}, {"state", "up"}}},
             {"after", {{"weight", 100}, {"state", "draining" + c1}}}, {"published_ring_size", 0},
             {"reals_in_ring", 0}, {"warnings", {"ring" + esc}}}}}
          .dump(),
      {"real", "drain", "web", "10.0.0.5"});
  EXPECT_EQ(w.rc, 0) << w.err;
  EXPECT_EQ(w.out, "web 10.0.0.5: up -> draining\\xc2\\x9b31m (ring: empty)\n");
  EXPECT_EQ(w.err, "warning: ring\\x1b[2J\\x1b]0;owned\\x07\n");
  // A member's name is text too (config reload prints those it does not
  // know), and so is a status's.
  CliRun k = keelctlAnswered(json{{"ok", true}, {"result", {{"new" + esc, "v" + c1}}}}.dump(), {"config", "reload"});
  EXPECT_EQ(k.out, "new\\x1b[2J\\x1b]0;owned\\x07: v\\xc2\\x9b31m\n");
  // Text that is only non-ASCII is kept as it is.
  const std::string reason = "HTTP 503 \xc3\xbc" "berlastet, \xe2\x80\x9e" "sp\xc3\xa4ter\xe2\x80\x9c \xe2\x9c\x93";
  CliRun h = keelctlAnswered(
      json{{"ok", true},
           {"result",
            {{"services",
              {{{"name", "web"},
                {"reals",
                 {{{"address", "10.0.0.5"}, {"state", "down"}, {"check", "http"}, {"detail", "503"},
                   {"reason", reason}}}}}}}}}}
          .dump(),
      {"health", "show"});
  ASSERT_EQ(h.rc, 0) << h.err;
  EXPECT_NE(h.out.find(reason + "\n"), std::string::npos) << h.out;
}

// A backslash in a value shows as \\, so what keelctl prints reads back one
// way: a drain reason of the four characters \x1b (keeld takes it: it is
// text) showed exactly as an ESC that a peer sent and keelctl escaped.
// keeld's messages, which quote their values with printable() (\\, \",
// \xHH), keep their backslashes, as do JSON text and keelctl's own
// messages, so nothing is escaped twice. -o json was right all along: the
// value, JSON-escaped.
TEST_F(KeelctlTest, ABackslashInAValueIsShownEscaped) {
  startServer();
  const std::string literal = "\\x1b[2J";  // backslash, x, 1, b, [, 2, J
  ASSERT_EQ(keelctl({"real", "drain", "web", "10.0.0.5", "--reason", literal}).rc, 0);
  CliRun h = keelctl({"health", "show", "web"});
  ASSERT_EQ(h.rc, 0) << h.err;
  EXPECT_NE(h.out.find("drained: \\\\x1b[2J\n"), std::string::npos) << h.out;
  CliRun j = keelctl({"-o", "json", "health", "show", "web"});
  ASSERT_EQ(j.rc, 0) << j.err;
  EXPECT_NE(j.out.find(R"("drain_reason": "\\x1b[2J")"), std::string::npos) << j.out;
  EXPECT_EQ(json::parse(j.out)["services"][0]["reals"][0]["drain_reason"], literal);

  // The same reason as a peer sends it with a real ESC: now told apart.
  auto health = [](const std::string& reason) {
    return json{{"ok", true},
                {"result",
                 {{"services",
                   {{{"name", "web"},
                     {"reals",
                      {{{"address", "10.0.0.5"}, {"state", "draining"}, {"draining", true}, {"check", "tcp"},
                        {"detail", "ok"}, {"reason", ""}, {"drain_reason", reason}}}}}}}}}}
        .dump();
  };
  CliRun esc = keelctlAnswered(health("\x1b[2J"), {"health", "show"});
  CliRun lit = keelctlAnswered(health(literal), {"health", "show"});
  ASSERT_EQ(esc.rc, 0) << esc.err;
  ASSERT_EQ(lit.rc, 0) << lit.err;
  EXPECT_NE(esc.out.find("drained: \\x1b[2J\n"), std::string::npos) << esc.out;
  EXPECT_NE(lit.out.find("drained: \\\\x1b[2J\n"), std::string::npos) << lit.out;
  EXPECT_NE(esc.out, lit.out);

  // keeld's message quotes a value through printable(): shown as keeld
  // wrote it, not "w\\\\xc3\\\\xa9b".
  const std::string quoted = R"(services[w\xc3\xa9b]: not found, got "a\"b\\c")";
  CliRun e = keelctlAnswered(json{{"ok", false}, {"error", {{"code", "not_found"}, {"message", quoted}}}}.dump(),
                             {"real", "drain", "web", "10.0.0.5"});
  EXPECT_EQ(e.rc, 1);
  EXPECT_EQ(e.err, "keelctl: " + quoted + "\n");
  // A change's warning and a reload's errors likewise.
  CliRun w = keelctlAnswered(
      json{{"ok", true},
           {"result",
            {{"service", "web"}, {"address", "10.0.0.5"}, {"before", {{"weight", 100}, {"state", "up"}}},
             {"after", {{"weight", 100}, {"state", "draining"}}}, {"published_ring_size", 1}, {"reals_in_ring", 1},
             {"warnings", {quoted}}}}}
          .dump(),
      {"real", "drain", "web", "10.0.0.5"});
  EXPECT_EQ(w.rc, 0) << w.err;
  EXPECT_EQ(w.err, "warning: " + quoted + "\n");
  CliRun d = keelctlAnswered(
      json{{"ok", false},
           {"error", {{"code", "invalid_config"}, {"message", "m"}, {"details", {{"errors", {quoted}}}}}}}.dump(),
      {"config", "reload"});
  EXPECT_EQ(d.err, "keelctl: " + quoted + "\n");
  // A reload's change value with a backslash is quoted as JSON, escaped
  // once.
  const json changes = json::parse(R"({"changes": [{"change": "service_updated", "service": "web",
      "keys": [{"key": "path", "from": "/a\\b", "to": "/c"}]}]})");
  CliRun c = keelctlAnswered(json{{"ok", true}, {"result", changes}}.dump(), {"config", "reload"});
  EXPECT_EQ(c.rc, 0) << c.err;
  EXPECT_EQ(c.out, "service web: path \"/a\\\\b\" -> /c\n");
  EXPECT_EQ(c.err, "");
  // A member's name in an error of a reply's shape: escaped once.
  CliRun s = keelctlAnswered(json{{"ok", true},
                                  {"result", {{"dataplane", "xdp"}, {"reasons", {{"a\\b", json::object()}}},
                                              {"services", json::array()}}}}
                                 .dump(),
                             {"stats"});
  EXPECT_EQ(s.rc, 1);
  EXPECT_EQ(s.err, "keelctl: unexpected reply from keeld to stats.get: result.reasons.a\\\\b.packets: missing\n");
}

// The zero-width characters (U+200B..U+200D, U+2060, U+FEFF) printed as
// they are, so "web" and "web" followed by a ZERO WIDTH SPACE were two
// services that looked one. A table shows their bytes as \xHH and -o json
// as \uXXXX; keeld still takes them in a drain reason (ZWJ joins an emoji
// sequence), and keelctl shows them escaped there too.
TEST_F(KeelctlTest, ZeroWidthCharactersAreShownEscaped) {
  const std::string zwsp = "\u200B", zwnj = "\u200C", zwj = "\u200D", wj = "\u2060", bom = "\uFEFF";
  auto service = [](const std::string& name) {
    return json{{"name", name}, {"vip", "10.0.0.1"}, {"port", 80}, {"protocol", "tcp"}, {"scheduler", "maglev"},
                {"forwarding", "ipip"}, {"packets", 0}, {"bytes", 0}, {"reals", json::array()}};
  };
  const json services = {
      {"services", {service("web"), service("web" + zwsp), service(bom + "w" + zwnj + "e" + wj + "b" + zwj)}}};
  const std::string list = json{{"ok", true}, {"result", services}}.dump();
  CliRun t = keelctlAnswered(list, {"service", "list"});
  ASSERT_EQ(t.rc, 0) << t.err;
  EXPECT_NE(t.out.find(" web  "), std::string::npos) << t.out;
  EXPECT_NE(t.out.find(" web\\xe2\\x80\\x8b  "), std::string::npos) << t.out;
  EXPECT_NE(t.out.find(" \\xef\\xbb\\xbfw\\xe2\\x80\\x8ce\\xe2\\x81\\xa0b\\xe2\\x80\\x8d  "), std::string::npos) << t.out;
  CliRun j = keelctlAnswered(list, {"-o", "json", "service", "list"});
  ASSERT_EQ(j.rc, 0) << j.err;
  EXPECT_NE(j.out.find(R"("name": "web\u200b")"), std::string::npos) << j.out;
  EXPECT_NE(j.out.find(R"("name": "\ufeffw\u200ce\u2060b\u200d")"), std::string::npos) << j.out;
  EXPECT_EQ(json::parse(j.out, nullptr, false), services) << "the same values to a JSON reader";

  startServer();
  const std::string coder = "\U0001F469" + zwj + "\U0001F4BB";  // woman, ZWJ, laptop: one emoji
  ASSERT_EQ(keelctl({"real", "drain", "web", "10.0.0.5", "--reason", "on call " + coder}).rc, 0);
  CliRun h = keelctl({"health", "show", "web"});
  ASSERT_EQ(h.rc, 0) << h.err;
  EXPECT_NE(h.out.find("drained: on call \U0001F469\\xe2\\x80\\x8d\U0001F4BB\n"), std::string::npos) << h.out;
  CliRun hj = keelctl({"-o", "json", "health", "show", "web"});
  EXPECT_EQ(json::parse(hj.out)["services"][0]["reals"][0]["drain_reason"], "on call " + coder);
}

// A socket keelctl may not connect to: the hint names the keys of both of
// keeld's sockets, since keelctl cannot tell which one PATH is (operator
// review L5: it named only the main socket's, wrong for the read-only one).
TEST_F(KeelctlTest, PermissionDeniedNamesTheKeysOfBothSockets) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to connect as another user";
  // util-linux's, on every Debian: missing as root is a broken host, not a skip.
  ASSERT_EQ(std::system("command -v setpriv >/dev/null"), 0) << "setpriv missing (util-linux)";
  const std::string sock = dir_ + "/private.sock";
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", sock.c_str());
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(fd, 1), 0);
  ASSERT_EQ(::chmod(sock.c_str(), 0600), 0);
  ASSERT_EQ(::chmod(dir_.c_str(), 0755), 0);
  runAs_ = "setpriv --reuid=65534 --regid=65534 --clear-groups ";
  CliRun r = keelctl({"service", "list"}, sock);
  runAs_.clear();
  ::close(fd);
  EXPECT_EQ(r.rc, 69) << r.err;  // cannot be reached: nothing sent (EX_UNAVAILABLE)
  EXPECT_NE(r.err.find("Permission denied (a socket's mode and group are keel.yaml's control.mode and "
                       "control.group"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("control.readonly.mode and .group, 0660"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace keel::api

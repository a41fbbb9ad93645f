// SPDX-License-Identifier: Apache-2.0
// keelctl stats [SERVICE] [--watch [SECONDS]] [--rate] [--count N]
#include <array>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <thread>

#include "cli/context.h"

namespace keel::cli {

namespace {

struct StatsArgs {
  std::string service;
  std::string watch;  // seconds as text; set only when --watch is given
  bool watching = false;
  bool rate = false;
  long count = 0;  // --count: 0 (the default) = until interrupted (watch) / 1 sample
};

// stats.get's per-family keys (conntrack, and each worker's conntrack).
const char* const kFamilies[] = {"ipv4", "ipv6"};

// Per-second deltas of every counter between two stats.get results. A
// counter that went backwards (daemon restarted) reads as 0, not garbage.
double perSecond(const json& a, const json& b, const char* key, double seconds) {
  uint64_t x = a.value(key, uint64_t{0}), y = b.value(key, uint64_t{0});
  return y >= x ? static_cast<double>(y - x) / seconds : 0.0;
}

// The entry of BEFORE[LIST] whose KEY equals ENTRY's: ENTRY's previous
// sample. An empty object (every counter 0) when there is none: a service,
// real or worker that appeared since.
json previous(const json& before, const char* list, const json& entry, const char* key) {
  if (before.contains(list) && entry.contains(key))
    for (const auto& p : before[list])
      if (p.contains(key) && p[key] == entry[key]) return p;
  return json::object();
}

json rates(const json& before, const json& after, double seconds) {
  auto rate = [&](const json& a, const json& b) {
    return json{{"packets_per_s", perSecond(a, b, "packets", seconds)},
                {"bytes_per_s", perSecond(a, b, "bytes", seconds)}};
  };
  json out{{"dataplane", after["dataplane"]}, {"interval_s", seconds}, {"reasons", json::object()},
           {"services", json::array()}};
  if (after.contains("attachment")) out["attachment"] = after["attachment"];  // a state, not a counter
  // Entries and capacity are gauges: the latest value as they are; a
  // family's live evictions are a counter, shown as a rate.
  auto familyRates = [&](const json& before, const json& after) {
    json out = after;
    for (const char* f : kFamilies) {
      if (!after.contains(f) || !after[f].is_object()) continue;
      const json prev = before.is_object() && before.contains(f) && before[f].is_object() ? before[f] : json::object();
      out[f].erase("live_evictions");
      out[f]["live_evictions_per_s"] = perSecond(prev, after[f], "live_evictions", seconds);
    }
    return out;
  };
  if (after.contains("conntrack")) {
    out["conntrack"] = familyRates(before.value("conntrack", json::object()), after["conntrack"]);
    for (const char* k : {"inserts_skipped", "midflow_misses"}) {
      if (!after["conntrack"].contains(k)) continue;
      out["conntrack"].erase(k);
      out["conntrack"][std::string(k) + "_per_s"] =
          perSecond(before.value("conntrack", json::object()), after["conntrack"], k, seconds);
    }
  }
  if (after.contains("workers")) {
    out["workers"] = json::array();
    for (const auto& w : after["workers"]) {
      json prev = previous(before, "workers", w, "worker");
      json wr{{"worker", w["worker"]}, {"lcore", w["lcore"]},
              {"rx_packets_per_s", perSecond(prev, w, "rx_packets", seconds)}};
      // A per-worker object of counters (icmp_peer_lookups, tx_dropped):
      // each as a rate, under KEY_per_s.
      for (const char* key : {"icmp_peer_lookups", "tx_dropped"}) {
        if (!w.contains(key)) continue;
        const json& now = w[key];
        const json was = prev.value(key, json::object());
        json perS = json::object();
        for (auto it = now.begin(); it != now.end(); ++it) perS[it.key()] = perSecond(was, now, it.key().c_str(), seconds);
        wr[std::string(key) + "_per_s"] = std::move(perS);
      }
      if (w.contains("conntrack")) wr["conntrack"] = familyRates(prev.value("conntrack", json::object()), w["conntrack"]);
      if (w.contains("from_kernel")) wr["from_kernel_per_s"] = perSecond(prev, w, "from_kernel", seconds);
      if (w.contains("host_frames_ignored"))
        wr["host_frames_ignored_per_s"] = perSecond(prev, w, "host_frames_ignored", seconds);
      out["workers"].push_back(std::move(wr));
    }
  }
  // The port's counters as rates; its link as it is.
  if (after.contains("port") && after["port"].is_object()) {
    const json& now = after["port"];
    const json was = before.contains("port") && before["port"].is_object() ? before["port"] : json::object();
    json port = json::object();
    for (auto it = now.begin(); it != now.end(); ++it) {
      if (it.value().is_boolean() || it.key() == "link_speed_mbps")
        port[it.key()] = it.value();
      else
        port[it.key() + "_per_s"] = perSecond(was, now, it.key().c_str(), seconds);
    }
    out["port"] = std::move(port);
  } else if (after.contains("port")) {
    out["port"] = nullptr;
  }
  for (auto it = after["reasons"].begin(); it != after["reasons"].end(); ++it)
    out["reasons"][it.key()] =
        rate(before["reasons"].value(it.key(), json::object()), it.value());
  for (const auto& s : after["services"]) {
    json prev = previous(before, "services", s, "name");
    json svc = rate(prev, s);
    for (const char* k : {"name", "vip", "port", "protocol"}) svc[k] = s[k];
    svc["reals"] = json::array();
    for (const auto& r : s["reals"]) {
      json real = rate(previous(prev, "reals", r, "address"), r);
      real["address"] = r["address"];
      svc["reals"].push_back(real);
    }
    out["services"].push_back(svc);
  }
  return out;
}

void printTable(const json& r, bool isRate, bool exact) {
  const char* pk = isRate ? "packets_per_s" : "packets";
  const char* by = isRate ? "bytes_per_s" : "bytes";
  // A count, or with --rate a rate (ipvsadm's K/M/G/T unless --exact).
  auto num = [&](const json& v) { return isRate ? rateText(v, exact) : countText(v, exact); };
  auto cell = [&](const json& o, const char* k) { return num(o[k]); };
  std::cout << "dataplane: " << str(r["dataplane"]);
  if (isRate) std::cout << "  (rates over " << rateText(r["interval_s"], true) << " s)";
  std::cout << "\n";
  // XDP: the program's interface and mode, and whether it runs there now:
  // keeld attaches it again when it finds it gone (keeld(8) upkeep), and
  // says how often it had to (counts since keeld started, also with --rate).
  if (const json a = r.value("attachment", json()); a.is_object()) {
    std::cout << "xdp program: on " << str(a["interface"]) << " (" << str(a["mode"]) << "), "
              << (a.value("attached", false) ? "attached"
                                              : "NOT ATTACHED: VIP traffic is not forwarded until keeld attaches it again");
    std::vector<std::string> repairs;
    if (const uint64_t n = a.value("reattached", uint64_t{0})) repairs.push_back("reattached " + counted(n, "time", "times"));
    if (const uint64_t n = a.value("pins_restored", uint64_t{0})) repairs.push_back("pins restored " + counted(n, "time", "times"));
    for (size_t i = 0; i < repairs.size(); ++i) std::cout << (i ? ", " : "; since keeld started: ") << repairs[i];
    std::cout << "\n";
  }
  if (r.contains("conntrack")) {
    const json& ct = r["conntrack"];
    std::cout << "conntrack: "
              << (ct.value("entries", json()).is_number() ? str(ct["entries"]) : std::string("unknown"))
              << " of " << str(ct.value("capacity", json(0))) << " entries";
    // New flows past node.conntrack_insert_rate, forwarded but not remembered.
    // TCP packets past their SYN whose flow the table did not hold: flows
    // another balancer or an ECMP change sent here, or evicted ones.
    for (const auto& [k, what] : {std::pair{"inserts_skipped", "inserts skipped"},
                                  std::pair{"midflow_misses", "mid-flow misses"}}) {
      if (isRate && ct.contains(std::string(k) + "_per_s"))
        std::cout << ", " << num(ct[std::string(k) + "_per_s"]) << " " << what << "/s";
      else if (!isRate && ct.contains(k))
        std::cout << ", " << num(ct[k]) << " " << what;
    }
    std::cout << "\n";
    // DPDK: each family has its own half of every worker's table, so one
    // family alone fills only its half: how full each half is, and the
    // live flows each evicted (the pressure signal, docs/metrics.md).
    for (const char* f : kFamilies) {
      if (!ct.contains(f) || !ct[f].is_object()) continue;
      const json& h = ct[f];
      std::cout << "  " << f << ": " << str(h["entries"]) << " of " << str(h["capacity"]) << " entries, "
                << (isRate ? num(h["live_evictions_per_s"]) + " live evictions/s"
                           : num(h["live_evictions"]) + " live evictions")
                << "\n";
    }
  }
  // Compact lines, one entry per worker: how RSS spread the port's packets
  // over the workers, and the ICMP errors each looked up in the others'
  // tables (found there / not found / refused by the rate limit).
  if (r.contains("workers") && !r["workers"].empty()) {
    // One line of a per-worker count, if the workers have it.
    auto perWorkerCount = [&](const char* label, const std::string& key) {
      const std::string k = key + (isRate ? "_per_s" : "");
      if (!r["workers"][0].contains(k)) return;
      std::cout << label << (isRate ? " pkts/s:" : " packets:");
      for (const auto& w : r["workers"])
        std::cout << " " << str(w["worker"]) << "@lcore" << str(w["lcore"]) << "="
                  << num(w.value(k, json(0)));
      std::cout << "\n";
    };
    perWorkerCount("workers rx", "rx_packets");
    // One line of a per-worker object of counters (its three keys, as
    // a/b/c per worker), if the workers have it.
    auto perWorker = [&](const char* label, const std::string& key, const std::array<const char*, 3>& keys) {
      const std::string k = key + (isRate ? "_per_s" : "");
      if (!r["workers"][0].contains(k)) return;
      std::cout << label << (isRate ? "/s" : "") << " (" << keys[0] << "/" << keys[1] << "/" << keys[2] << "):";
      for (const auto& w : r["workers"]) {
        const json o = w.value(k, json::object());
        std::cout << " " << str(w["worker"]) << "@lcore" << str(w["lcore"]) << "=";
        for (size_t i = 0; i < keys.size(); ++i) {
          const json v = o.value(keys[i], json(0));
          std::cout << (i ? "/" : "") << num(v);
        }
      }
      std::cout << "\n";
    };
    perWorker("workers icmp peer lookups", "icmp_peer_lookups", {"found", "not_found", "rate_limited"});
    // Frames a full TX queue refused: to the port / to the kernel / from
    // the kernel out of the port (docs/metrics.md).
    perWorker("workers tx dropped", "tx_dropped", {"port", "to_kernel", "from_kernel"});
    // The kernel's own frames (ARP and ND replies, ICMP, its TCP) each
    // worker sent out of the port from the exception interface.
    perWorkerCount("workers from kernel", "from_kernel");
    // net_af_packet: the host's own frames each worker read and ignored
    // (docs/dpdk.md); a line only where some worker has any.
    const std::string ignoredKey = std::string("host_frames_ignored") + (isRate ? "_per_s" : "");
    if (std::any_of(r["workers"].begin(), r["workers"].end(), [&](const json& w) {
          const json v = w.value(ignoredKey, json(0));
          return v.is_number() && v.get<double>() != 0;
        }))
      perWorkerCount("workers host frames ignored", "host_frames_ignored");
  }
  // DPDK: the port as its driver counts it, where drops before any worker
  // (a full RX queue, an empty pool) show.
  if (r.contains("port") && r["port"].is_object()) {
    const json& p = r["port"];
    auto n = [&](const char* k) {
      const std::string key = std::string(k) + (isRate ? "_per_s" : "");
      return num(p.value(key, json(0)));
    };
    std::cout << "port" << (isRate ? " /s" : "") << ": rx " << n("rx_packets") << " (missed " << n("rx_missed")
              << ", no mbuf " << n("rx_no_mbuf") << ", errors " << n("rx_errors") << "), tx " << n("tx_packets")
              << " (errors " << n("tx_errors") << "); link "
              << (p.value("link_up", false) ? "up" : "down");
    if (p.value("link_speed_mbps", 0) > 0) std::cout << " " << str(p["link_speed_mbps"]) << " Mb/s";
    std::cout << "\n";
  }
  Table reasons({false, true, true});
  reasons.row({"Reason", isRate ? "Pkts/s" : "Packets", isRate ? "Bytes/s" : "Bytes"});
  for (auto it = r["reasons"].begin(); it != r["reasons"].end(); ++it)
    reasons.row({it.key(), cell(it.value(), pk), cell(it.value(), by)});
  std::cout << reasons.render() << "\n";
  Table t({false, false, false, true, true});
  t.row({"Prot", "LocalAddress:Port", "Service", isRate ? "Pkts/s" : "Packets", isRate ? "Bytes/s" : "Bytes"});
  t.row({"  ->", "RemoteAddress", "", isRate ? "Pkts/s" : "Packets", isRate ? "Bytes/s" : "Bytes"});
  for (const auto& s : r["services"]) {
    t.row({upper(str(s["protocol"])), endpoint(str(s["vip"]), s["port"].get<uint64_t>()), str(s["name"]),
           cell(s, pk), cell(s, by)});
    for (const auto& real : s["reals"])
      t.row({"  ->", str(real["address"]), "", cell(real, pk), cell(real, by)});
  }
  std::cout << t.render();
}

}  // namespace

void defineStats(CLI::App& noun, Context& ctx) {
  auto a = std::make_shared<StatsArgs>();
  noun.add_option("SERVICE", a->service, "only this service");
  CLI::Option* watch = noun.add_option("--watch", a->watch, "repeat every SECONDS (default 2)")
                           ->expected(0, 1);
  noun.add_flag("--rate", a->rate, "per-second rates instead of totals");
  CLI::Option* count =
      noun.add_option("--count", a->count, "stop after N samples (with --watch; 0, the default: never)");
  noun.callback([&ctx, a, watch, count] {
    double interval = 2.0;
    a->watching = watch->count() > 0;
    if (a->watching && !a->watch.empty()) {
      char* end = nullptr;
      interval = std::strtod(a->watch.c_str(), &end);
      // Written so that NaN fails too (every comparison with it is false).
      if (!end || *end || !(interval >= 0.1 && interval <= 86400)) {
        // `stats --watch web`: --watch took the service for its SECONDS
        // (it is optional, so CLI11 gives it the next word); say where
        // SERVICE goes rather than guess which one was meant.
        const bool word = !end || *end;
        usageError("--watch", "must be a number of seconds 0.1..86400, got \"" + a->watch + "\"" +
                                  (word && a->service.empty() ? " (if that is a service, put it before --watch: "
                                                                "keelctl stats " + a->watch + " --watch [SECONDS])"
                                                              : ""));
      }
    } else if (!a->watching) {
      interval = 1.0;  // --rate alone: one 1-second sample
    }
    if (a->count < 0) usageError("--count", "must be >= 0");
    // Without --watch there is one sample: a count asked for more (or
    // fewer) would be ignored without a word.
    if (count->count() > 0 && !a->watching)
      usageError("--count", "only with --watch (without it, stats prints one sample)");
    json params = json::object();
    if (!a->service.empty()) params["service"] = a->service;
    using Clock = std::chrono::steady_clock;
    auto sample = [&](json& out, Clock::time_point& at) {
      auto r = ctx.call("stats.get", params);
      if (!r) return false;
      out = std::move(*r);
      at = Clock::now();
      return true;
    };
    json prev;  // --rate: the sample the next rate is taken from (null: none yet)
    Clock::time_point prevAt;
    long shown = 0;
    long limit = a->watching ? a->count : 1;
    for (bool first = true;; first = false) {
      if (!first) std::this_thread::sleep_for(std::chrono::duration<double>(interval));
      json cur;
      Clock::time_point at;
      if (!sample(cur, at)) {
        // A watch outlives keeld's restart (an upgrade is when it is
        // watched): a sample keeld did not answer is said (stderr; -o json,
        // an error line) and counts as one, and the next sample connects
        // again. A refusal still ends it. The exit status is the last
        // sample's.
        if (!a->watching || ctx.exitCode == kExitRefused) return;
        if (limit && ++shown >= limit) return;
        if (!limit) ++shown;
        prev = json();  // --rate: the next answer is the new start
        continue;
      }
      ctx.exitCode = 0;
      if (a->rate && prev.is_null()) {  // the first answer, or the first after a gap: two samples make a rate
        prev = cur;
        prevAt = at;
        continue;
      }
      json out = cur;
      if (a->rate) {
        double secs = std::chrono::duration<double>(at - prevAt).count();
        out = rates(prev, cur, secs > 0 ? secs : 1e-9);
        prev = cur;
        prevAt = at;
      }
      if (ctx.jsonOutput() && a->watching) {
        // JSON Lines: one compact document per sample, so a pipe (jq -c,
        // a script) can consume each sample as it arrives.
        std::cout << out.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
      } else if (ctx.jsonOutput()) {
        ctx.printJson(out);
      } else {
        if (a->watching && shown > 0) std::cout << "\n";
        printTable(out, a->rate, ctx.exact);
      }
      std::cout.flush();
      if (limit && ++shown >= limit) return;
      if (!limit) ++shown;
    }
  });
}

}  // namespace keel::cli

// SPDX-License-Identifier: Apache-2.0
// keelctl stats [SERVICE] [--watch [SECONDS]] [--rate] [--count N]
#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
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
double perSecond(const Reply& a, const Reply& b, const char* key, double seconds) {
  uint64_t x = a.get(key).countOr(0), y = b.get(key).countOr(0);
  return y >= x ? static_cast<double>(y - x) / seconds : 0.0;
}

// The entry of BEFORE[LIST] whose KEY equals ENTRY's: ENTRY's previous
// sample. An empty object (every counter 0) when there is none: a service,
// real or worker that appeared since.
Reply previous(const Reply& before, const char* list, const Reply& entry, const char* key) {
  if (before.has(list) && entry.has(key))
    for (const Reply& p : before[list].items())
      if (p.has(key) && p[key].value() == entry[key].value()) return p;
  return Reply(json::object(), "stats.get");
}

// The rates between two samples, as a result of the same shape (counters
// as KEY_per_s), which statsText() and -o json print as they do a sample.
json rates(const Reply& before, const Reply& after, double seconds) {
  auto rate = [&](const Reply& a, const Reply& b) {
    return json{{"packets_per_s", perSecond(a, b, "packets", seconds)},
                {"bytes_per_s", perSecond(a, b, "bytes", seconds)}};
  };
  json out{{"dataplane", after["dataplane"].value()}, {"interval_s", seconds}, {"reasons", json::object()},
           {"services", json::array()}};
  if (after.has("attachment")) out["attachment"] = after["attachment"].value();  // a state, not a counter
  // Entries and capacity are gauges: the latest value as they are; a
  // family's live evictions are a counter, shown as a rate.
  auto familyRates = [&](const Reply& before, const Reply& after) {
    json out = after.value();
    for (const char* f : kFamilies) {
      if (!after.has(f) || !after[f].isObject()) continue;
      const Reply prev = before.objectOr(f);
      out[f].erase("live_evictions");
      out[f]["live_evictions_per_s"] = perSecond(prev, after[f], "live_evictions", seconds);
    }
    return out;
  };
  if (after.has("conntrack")) {
    const Reply ct = after["conntrack"];
    const Reply was = before.objectOr("conntrack");
    out["conntrack"] = familyRates(was, ct);
    for (const char* k : {"inserts_skipped", "midflow_misses"}) {
      if (!ct.has(k)) continue;
      out["conntrack"].erase(k);
      out["conntrack"][std::string(k) + "_per_s"] = perSecond(was, ct, k, seconds);
    }
  }
  if (after.has("workers")) {
    out["workers"] = json::array();
    for (const Reply& w : after["workers"].items()) {
      const Reply prev = previous(before, "workers", w, "worker");
      json wr{{"worker", w["worker"].value()}, {"lcore", w["lcore"].value()},
              {"rx_packets_per_s", perSecond(prev, w, "rx_packets", seconds)}};
      // A per-worker object of counters (icmp_peer_lookups, tx_dropped):
      // each as a rate, under KEY_per_s.
      for (const char* key : {"icmp_peer_lookups", "tx_dropped"}) {
        if (!w.has(key)) continue;
        const Reply was = prev.objectOr(key);
        json perS = json::object();
        for (const auto& [k, v] : w[key].members()) perS[k] = perSecond(was, w[key], k.c_str(), seconds);
        wr[std::string(key) + "_per_s"] = std::move(perS);
      }
      if (w.has("conntrack"))
        wr["conntrack"] = familyRates(prev.objectOr("conntrack"), w["conntrack"]);
      if (w.has("from_kernel")) wr["from_kernel_per_s"] = perSecond(prev, w, "from_kernel", seconds);
      if (w.has("host_frames_ignored"))
        wr["host_frames_ignored_per_s"] = perSecond(prev, w, "host_frames_ignored", seconds);
      out["workers"].push_back(std::move(wr));
    }
  }
  // The port's counters as rates; its link as it is.
  if (after.has("port") && after["port"].isObject()) {
    const Reply now = after["port"];
    const Reply was = before.objectOr("port");
    json port = json::object();
    for (const auto& [k, v] : now.members()) {
      if (v.value().is_boolean() || k == "link_speed_mbps")
        port[k] = v.value();
      else
        port[k + "_per_s"] = perSecond(was, now, k.c_str(), seconds);
    }
    out["port"] = std::move(port);
  } else if (after.has("port")) {
    out["port"] = nullptr;
  }
  const Reply wasReasons = before.objectOr("reasons");
  for (const auto& [k, v] : after["reasons"].members())
    out["reasons"][k] = rate(wasReasons.objectOr(k), v);
  for (const Reply& s : after["services"].items()) {
    const Reply prev = previous(before, "services", s, "name");
    json svc = rate(prev, s);
    for (const char* k : {"name", "vip", "port", "protocol"}) svc[k] = s[k].value();
    svc["reals"] = json::array();
    for (const Reply& r : s["reals"].items()) {
      json real = rate(previous(prev, "reals", r, "address"), r);
      real["address"] = r["address"].value();
      svc["reals"].push_back(real);
    }
    out["services"].push_back(svc);
  }
  return out;
}

// A sample, or with --rate the rates between two, as tables; whole before
// any of it is printed (a ReplyError is said alone).
std::string statsText(const Reply& r, bool isRate, bool exact) {
  std::ostringstream out;
  const char* pk = isRate ? "packets_per_s" : "packets";
  const char* by = isRate ? "bytes_per_s" : "bytes";
  // A count, or with --rate a rate (ipvsadm's K/M/G/T unless --exact).
  auto num = [&](const json& v) { return isRate ? rateText(v, exact) : countText(v, exact); };
  // A member keelctl needs, as num() writes it; orZero() for one that may
  // be absent (an older keeld's): 0 then.
  auto cell = [&](const Reply& o, const std::string& k) { return num(o[k].value()); };
  auto orZero = [&](const Reply& v) { return num(v.isNull() ? json(0) : v.value()); };
  out << "dataplane: " << r["dataplane"].text();
  if (isRate) out << "  (rates over " << rateText(r["interval_s"].value(), true) << " s)";
  out << "\n";
  // XDP: the program's interface and mode, and whether it runs there now:
  // keeld attaches it again when it finds it gone (keeld(8) upkeep), and
  // says how often it had to (counts since keeld started, also with --rate).
  if (const Reply a = r.get("attachment"); a.isObject()) {
    out << "xdp program: on " << a["interface"].text() << " (" << a["mode"].text() << "), "
        << (a.get("attached").flagOr(false)
                ? "attached"
                : "NOT ATTACHED: VIP traffic is not forwarded until keeld attaches it again");
    std::vector<std::string> repairs;
    if (const uint64_t n = a.get("reattached").countOr(0))
      repairs.push_back("reattached " + counted(n, "time", "times"));
    if (const uint64_t n = a.get("pins_restored").countOr(0))
      repairs.push_back("pins restored " + counted(n, "time", "times"));
    for (size_t i = 0; i < repairs.size(); ++i) out << (i ? ", " : "; since keeld started: ") << repairs[i];
    out << "\n";
  }
  if (r.has("conntrack")) {
    const Reply ct = r["conntrack"];
    const Reply entries = ct.get("entries");
    const Reply capacity = ct.get("capacity");
    out << "conntrack: " << (entries.value().is_number() ? entries.text() : std::string("unknown")) << " of "
        << (capacity.isNull() ? std::string("0") : capacity.text()) << " entries";
    // New flows past node.conntrack_insert_rate, forwarded but not remembered.
    // TCP packets past their SYN whose flow the table did not hold: flows
    // another balancer or an ECMP change sent here, or evicted ones.
    for (const auto& [k, what] : {std::pair{"inserts_skipped", "inserts skipped"},
                                  std::pair{"midflow_misses", "mid-flow misses"}}) {
      if (isRate && ct.has(std::string(k) + "_per_s"))
        out << ", " << cell(ct, std::string(k) + "_per_s") << " " << what << "/s";
      else if (!isRate && ct.has(k))
        out << ", " << cell(ct, k) << " " << what;
    }
    out << "\n";
    // DPDK: each family has its own half of every worker's table, so one
    // family alone fills only its half: how full each half is, and the
    // live flows each evicted (the pressure signal, docs/metrics.md).
    for (const char* f : kFamilies) {
      if (!ct.has(f) || !ct[f].isObject()) continue;
      const Reply h = ct[f];
      out << "  " << f << ": " << h["entries"].text() << " of " << h["capacity"].text() << " entries, "
          << (isRate ? cell(h, "live_evictions_per_s") + " live evictions/s"
                     : cell(h, "live_evictions") + " live evictions")
          << "\n";
    }
  }
  // Compact lines, one entry per worker: how RSS spread the port's packets
  // over the workers, and the ICMP errors each looked up in the others'
  // tables (found there / not found / refused by the rate limit).
  const std::vector<Reply> workers = r.has("workers") ? r["workers"].items() : std::vector<Reply>{};
  if (!workers.empty()) {
    // "0@lcore2": a worker and its lcore.
    auto worker = [](const Reply& w) { return w["worker"].text() + "@lcore" + w["lcore"].text(); };
    // One line of a per-worker count, if the workers have it.
    auto perWorkerCount = [&](const char* label, const std::string& key) {
      const std::string k = key + (isRate ? "_per_s" : "");
      if (!workers[0].has(k)) return;
      out << label << (isRate ? " pkts/s:" : " packets:");
      for (const Reply& w : workers) out << " " << worker(w) << "=" << orZero(w.get(k));
      out << "\n";
    };
    perWorkerCount("workers rx", "rx_packets");
    // One line of a per-worker object of counters (its three keys, as
    // a/b/c per worker), if the workers have it.
    auto perWorker = [&](const char* label, const std::string& key, const std::array<const char*, 3>& keys) {
      const std::string k = key + (isRate ? "_per_s" : "");
      if (!workers[0].has(k)) return;
      out << label << (isRate ? "/s" : "") << " (" << keys[0] << "/" << keys[1] << "/" << keys[2] << "):";
      for (const Reply& w : workers) {
        const Reply o = w.get(k);
        out << " " << worker(w) << "=";
        for (size_t i = 0; i < keys.size(); ++i) {
          out << (i ? "/" : "") << orZero(o.isNull() ? o : o.get(keys[i]));
        }
      }
      out << "\n";
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
    if (std::any_of(workers.begin(), workers.end(), [&](const Reply& w) {
          const json& v = w.get(ignoredKey).value();
          return v.is_number() && v.get<double>() != 0;
        }))
      perWorkerCount("workers host frames ignored", "host_frames_ignored");
  }
  // DPDK: the port as its driver counts it, where drops before any worker
  // (a full RX queue, an empty pool) show.
  if (const Reply p = r.get("port"); p.isObject()) {
    auto n = [&](const char* k) { return orZero(p.get(std::string(k) + (isRate ? "_per_s" : ""))); };
    out << "port" << (isRate ? " /s" : "") << ": rx " << n("rx_packets") << " (missed " << n("rx_missed")
        << ", no mbuf " << n("rx_no_mbuf") << ", errors " << n("rx_errors") << "), tx " << n("tx_packets")
        << " (errors " << n("tx_errors") << "); link " << (p.get("link_up").flagOr(false) ? "up" : "down");
    if (p.get("link_speed_mbps").countOr(0) > 0) out << " " << p["link_speed_mbps"].text() << " Mb/s";
    out << "\n";
  }
  Table reasons({false, true, true});
  reasons.row({"Reason", isRate ? "Pkts/s" : "Packets", isRate ? "Bytes/s" : "Bytes"});
  for (const auto& [key, reason] : r["reasons"].members())
    reasons.row({visibleText(key), cell(reason, pk), cell(reason, by)});
  out << reasons.render() << "\n";
  Table t({false, false, false, true, true});
  t.row({"Prot", "LocalAddress:Port", "Service", isRate ? "Pkts/s" : "Packets", isRate ? "Bytes/s" : "Bytes"});
  t.row({"  ->", "RemoteAddress", "", isRate ? "Pkts/s" : "Packets", isRate ? "Bytes/s" : "Bytes"});
  for (const Reply& s : r["services"].items()) {
    t.row({upper(s["protocol"].text()), endpoint(s["vip"].text(), s["port"].count()), s["name"].text(),
           cell(s, pk), cell(s, by)});
    for (const Reply& real : s["reals"].items())
      t.row({"  ->", real["address"].text(), "", cell(real, pk), cell(real, by)});
  }
  out << t.render();
  return out.str();
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
    auto sample = [&](std::optional<Reply>& out, Clock::time_point& at) {
      out = ctx.call("stats.get", params);
      at = Clock::now();
      return out.has_value();
    };
    std::optional<Reply> prev;  // --rate: the sample the next rate is taken from (none yet)
    Clock::time_point prevAt;
    long shown = 0;
    long limit = a->watching ? a->count : 1;
    for (bool first = true;; first = false) {
      if (!first) std::this_thread::sleep_for(std::chrono::duration<double>(interval));
      try {
        std::optional<Reply> cur;
        Clock::time_point at;
        if (!sample(cur, at)) {
          // A watch outlives keeld's restart (an upgrade is when it is
          // watched): a sample keeld did not answer is said (stderr; -o
          // json, an error line) and counts as one, and the next sample
          // connects again. A refusal still ends it. The exit status is the
          // last sample's.
          if (!a->watching || ctx.exitCode == kExitRefused) return;
          prev.reset();  // --rate: the next answer is the new start
        } else {
          ctx.exitCode = 0;
          if (a->rate && !prev) {  // the first answer, or the first after a gap: two samples make a rate
            prev = cur;
            prevAt = at;
            continue;
          }
          Reply out = *cur;
          if (a->rate) {
            double secs = std::chrono::duration<double>(at - prevAt).count();
            out = Reply(rates(*prev, *cur, secs > 0 ? secs : 1e-9), "stats.get", "result");
            prev = cur;
            prevAt = at;
          }
          if (ctx.jsonOutput() && a->watching) {
            // JSON Lines: one compact document per sample, so a pipe (jq
            // -c, a script) can consume each sample as it arrives.
            std::cout << jsonText(out.value(), -1) << "\n";
          } else if (ctx.jsonOutput()) {
            ctx.printJson(out.value());
          } else {
            const std::string text = statsText(out, a->rate, ctx.exact);
            if (a->watching && shown > 0) std::cout << "\n";
            std::cout << text;
          }
          std::cout.flush();
        }
      } catch (const ReplyError& e) {
        // An answer keelctl cannot read (its envelope, or a member statsText
        // or rates() needs): one sample it could not show, said as any
        // (main() says it of a single sample: exit 1), counted, and the
        // watch goes on, as it does past an answer that is no JSON. The
        // next may be whole; with --rate it starts the next rate (the bad
        // one may have been the start).
        if (!a->watching) throw;
        ctx.unreadableReply(e.what());
        prev.reset();
      }
      if (limit && ++shown >= limit) return;
      if (!limit) ++shown;
    }
  });
}

}  // namespace keel::cli

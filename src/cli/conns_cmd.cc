// SPDX-License-Identifier: Apache-2.0
// keelctl conns [SERVICE] [--real ADDR] [--client ADDR] [--limit N]
#include <iostream>
#include <memory>

#include "cli/context.h"

namespace keel::cli {

namespace {

struct ConnsArgs {
  std::string service, real, client, limit;
};

// "3s", "2m05s", "1h02m": an entry's idle time, as ipvsadm -Lnc shows its
// expiry (whole seconds; -o json has milliseconds).
std::string idleText(uint64_t ms) {
  const uint64_t s = ms / 1000;
  char buf[32];
  if (s < 60)
    std::snprintf(buf, sizeof buf, "%llus", static_cast<unsigned long long>(s));
  else if (s < 3600)
    std::snprintf(buf, sizeof buf, "%llum%02llus", static_cast<unsigned long long>(s / 60),
                  static_cast<unsigned long long>(s % 60));
  else
    std::snprintf(buf, sizeof buf, "%lluh%02llum", static_cast<unsigned long long>(s / 3600),
                  static_cast<unsigned long long>(s / 60 % 60));
  return buf;
}

}  // namespace

void defineConns(CLI::App& noun, Context& ctx) {
  auto a = std::make_shared<ConnsArgs>();
  noun.add_option("SERVICE", a->service, "only this service's flows");
  noun.add_option("--real", a->real, "only entries that name this real");
  noun.add_option("--client", a->client, "only flows from this client address");
  noun.add_option("--limit", a->limit, "list at most N entries (1..100000, default 1000); all are counted");
  noun.callback([&ctx, a] {
    json p = json::object();
    if (!a->service.empty()) p["service"] = a->service;
    if (!a->real.empty()) p["real"] = a->real;
    if (!a->client.empty()) p["client_address"] = a->client;
    if (!a->limit.empty()) p["limit"] = numberOrString(a->limit);
    auto r = ctx.call("conn.list", p);
    if (!r) return;
    if (ctx.jsonOutput()) return ctx.printJson(*r);
    const json& j = *r;
    bool workers = false;
    for (const json& c : j["connections"]) workers = workers || c.contains("worker");
    std::vector<bool> right = {false, false, false, false, false, true, false};
    std::vector<std::string> head = {"Prot", "Client", "Destination", "Service", "Real", "Idle", "State"};
    if (workers) {
      right.insert(right.end() - 1, true);
      head.insert(head.end() - 1, "Worker");
    }
    Table t(right);
    t.row(head);
    for (const json& c : j["connections"]) {
      std::vector<std::string> row = {
          upper(str(c["protocol"])),
          endpoint(str(c["client_address"]), c["client_port"].get<uint64_t>()),
          endpoint(str(c["vip"]), c["port"].get<uint64_t>()),
          c["service"].is_null() ? "-" : str(c["service"]),
          c["real"].is_null() ? "-" : str(c["real"]),
          idleText(c["idle_ms"].get<uint64_t>()),
          c["kept"].get<bool>() ? "kept" : "not kept: " + str(c["why"])};
      if (workers) row.insert(row.end() - 1, c.contains("worker") ? str(c["worker"]) : "-");
      t.row(std::move(row));
    }
    t.fitLastColumn(outputWidth(), 12);
    std::cout << t.render();
    const uint64_t listed = j["connections"].size(), matched = j["matched"].get<uint64_t>();
    std::cout << listed << (listed == 1 ? " entry" : " entries");
    if (matched > listed) std::cout << " of " << matched << " (--limit)";
    std::cout << ", " << j["scanned"].get<uint64_t>() << " in the connection table\n";
  });
}

}  // namespace keel::cli

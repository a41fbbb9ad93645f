// SPDX-License-Identifier: Apache-2.0
// keelctl conns [SERVICE] [--real ADDR] [--client ADDR] [--limit N | --count]
#include <iostream>
#include <memory>

#include "cli/context.h"

namespace keel::cli {

namespace {

// A JSON scalar as a cell, "-" for null (no service, no real).
std::string cell(const json& v) { return v.is_null() ? "-" : str(v); }

struct ConnsArgs {
  std::string service, real, client, limit;
  bool count = false;
};

}  // namespace

void defineConns(CLI::App& noun, Context& ctx) {
  auto a = std::make_shared<ConnsArgs>();
  noun.add_option("SERVICE", a->service, "only this service's flows");
  noun.add_option("--real", a->real, "only entries that name this real");
  noun.add_option("--client", a->client, "only flows from this client address");
  CLI::Option* limit =
      noun.add_option("--limit", a->limit, "list at most N entries (0..10000, default 1000); all are counted");
  noun.add_flag("--count", a->count, "no entries: how many each real has, kept and not")->excludes(limit);
  noun.callback([&ctx, a] {
    json p = json::object();
    if (!a->service.empty()) p["service"] = a->service;
    if (!a->real.empty()) p["real"] = bareAddress(a->real);
    if (!a->client.empty()) p["client_address"] = bareAddress(a->client);
    if (!a->limit.empty()) p["limit"] = numberOrString(a->limit);
    if (a->count) p["limit"] = 0;
    auto r = ctx.call("conn.list", p);
    if (!r) return;
    if (ctx.jsonOutput()) return ctx.printJson(*r);
    const json& j = *r;
    if (a->count) {
      Table t({false, false, true, true});
      t.row({"Service", "Real", "Kept", "NotKept"});
      for (const json& n : j["counts"])
        t.row({cell(n["service"]), cell(n["real"]), str(n["kept"]), str(n["not_kept"])});
      std::cout << t.render() << j["matched"].get<uint64_t>() << " matching of " << j["scanned"].get<uint64_t>()
                << " in the connection table\n";
      return;
    }
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
          clientEndpoint(str(c["client_address"]), c["client_port"].get<uint64_t>()),
          endpoint(str(c["vip"]), c["port"].get<uint64_t>()),
          cell(c["service"]),
          cell(c["real"]),
          age(static_cast<long long>(c["idle_ms"].get<uint64_t>() / 1000)),
          str(c["state"])};
      if (workers) row.insert(row.end() - 1, c.contains("worker") ? str(c["worker"]) : "-");
      t.row(std::move(row));
    }
    std::cout << t.render();
    const uint64_t listed = j["connections"].size(), matched = j["matched"].get<uint64_t>();
    std::cout << counted(listed, "entry", "entries");
    if (matched > listed) std::cout << " of " << matched << " matching (--limit " << listed << ")";
    std::cout << ", " << j["scanned"].get<uint64_t>() << " in the connection table\n";
  });
}

}  // namespace keel::cli

// SPDX-License-Identifier: Apache-2.0
// keelctl conns [SERVICE] [--real ADDR] [--client ADDR] [--limit N | --count]
#include <iostream>
#include <memory>

#include "cli/context.h"

namespace keel::cli {

namespace {

// A JSON scalar as a cell, "-" for null (no service, no real).
std::string cell(const Reply& v) { return v.isNull() ? "-" : v.text(); }

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
    if (ctx.jsonOutput()) return ctx.printJson(r->value());
    const Reply& j = *r;
    if (a->count) {
      Table t({false, false, true, true});
      t.row({"Service", "Real", "Kept", "NotKept"});
      for (const Reply& n : j["counts"].items())
        t.row({cell(n["service"]), cell(n["real"]), n["kept"].text(), n["not_kept"].text()});
      std::cout << t.render() + std::to_string(j["matched"].count()) + " matching of " +
                       std::to_string(j["scanned"].count()) + " in the connection table\n";
      return;
    }
    const std::vector<Reply> conns = j["connections"].items();
    bool workers = false;
    for (const Reply& c : conns) workers = workers || c.has("worker");
    std::vector<bool> right = {false, false, false, false, false, true, false};
    std::vector<std::string> head = {"Prot", "Client", "Destination", "Service", "Real", "Idle", "State"};
    if (workers) {
      right.insert(right.end() - 1, true);
      head.insert(head.end() - 1, "Worker");
    }
    Table t(right);
    t.row(head);
    for (const Reply& c : conns) {
      std::vector<std::string> row = {upper(c["protocol"].text()),
                                      clientEndpoint(c["client_address"].text(), c["client_port"].count()),
                                      endpoint(c["vip"].text(), c["port"].count()),
                                      cell(c["service"]),
                                      cell(c["real"]),
                                      age(static_cast<long long>(c["idle_ms"].count() / 1000)),
                                      c["state"].text()};
      if (workers) row.insert(row.end() - 1, c.has("worker") ? c["worker"].text() : "-");
      t.row(std::move(row));
    }
    const uint64_t listed = conns.size(), matched = j["matched"].count(), scanned = j["scanned"].count();
    std::string tail = counted(listed, "entry", "entries");
    if (matched > listed)
      tail += " of " + std::to_string(matched) + " matching (--limit " + std::to_string(listed) + ")";
    std::cout << t.render() + tail + ", " + std::to_string(scanned) + " in the connection table\n";
  });
}

}  // namespace keel::cli

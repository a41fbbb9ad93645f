// SPDX-License-Identifier: Apache-2.0
// keelctl health show [SERVICE]
#include <algorithm>
#include <ctime>
#include <iostream>
#include <memory>

#include "cli/context.h"

namespace keel::cli {

namespace {

// The last result is capped, the reason gets what the other columns leave
// of the width (Table::fitLastColumn); -o json has both whole.
constexpr size_t kMaxResult = 28;
constexpr size_t kMinReason = 24;

// The current run: "12 ok", "2 fail", "-" before any result.
std::string run(const Reply& real) {
  uint64_t ok = real.get("consecutive_ok").countOr(0);
  uint64_t fail = real.get("consecutive_fail").countOr(0);
  if (ok) return std::to_string(ok) + " ok";
  if (fail) return std::to_string(fail) + " fail";
  return "-";
}

// The check and the port it connects to: "tcp :8081", "none"; the type
// alone from a keeld without check_spec. -o json has every parameter.
std::string check(const Reply& real) {
  const Reply spec = real.get("check_spec");
  if (!spec.has("port")) return real["check"].text();
  return spec["type"].text() + " :" + spec["port"].text();
}

}  // namespace

void defineHealth(CLI::App& noun, Context& ctx) {
  noun.require_subcommand(1, 1);
  auto service = std::make_shared<std::string>();
  CLI::App* show = noun.add_subcommand("show", "health state of every real (or one service's)");
  show->add_option("SERVICE", *service, "service name");
  show->callback([&ctx, service] {
    json p = json::object();
    if (!service->empty()) p["service"] = *service;
    auto r = ctx.call("health.show", p);
    if (!r) return;
    if (ctx.jsonOutput()) return ctx.printJson(r->value());
    const std::time_t now = std::time(nullptr);
    Table t({false, false, false, false, false, false, true, false});
    t.row({"Service", "Real", "State", "Check", "Run", "Last result", "Changed", "Reason"});
    for (const Reply& s : (*r)["services"].items())
      for (const Reply& real : s["reals"].items()) {
        // Changed and Reason explain State: for a draining real that is the
        // drain (since when, and the operator's reason), not the health
        // verdict, which State does not show then (-o json has both).
        const bool draining = real.get("draining").flagOr(false);
        const Reply when = real.get(draining ? "drained_since" : "last_change");
        std::string why = real["reason"].text();
        if (draining) {
          const Reply given = real.get("drain_reason");
          why = given.isString() ? "drained: " + given.text() : "drained";
        }
        t.row({s["name"].text(), real["address"].text(), realState(real), check(real), run(real),
               truncated(real["detail"].text(), kMaxResult), age(secondsSince(when.value(), now)), why});
      }
    t.fitLastColumn(outputWidth(), kMinReason);
    std::cout << t.render();
  });
}

}  // namespace keel::cli

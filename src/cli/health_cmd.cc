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
std::string run(const json& real) {
  uint64_t ok = real.value("consecutive_ok", uint64_t{0});
  uint64_t fail = real.value("consecutive_fail", uint64_t{0});
  if (ok) return std::to_string(ok) + " ok";
  if (fail) return std::to_string(fail) + " fail";
  return "-";
}

// The check and the port it connects to: "tcp :8081", "none"; the type
// alone from a keeld without check_spec. -o json has every parameter.
std::string check(const json& real) {
  const json spec = real.value("check_spec", json());
  if (!spec.is_object() || !spec.contains("port")) return str(real["check"]);
  return str(spec["type"]) + " :" + str(spec["port"]);
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
    if (ctx.jsonOutput()) return ctx.printJson(*r);
    const std::time_t now = std::time(nullptr);
    Table t({false, false, false, false, false, false, true, false});
    t.row({"Service", "Real", "State", "Check", "Run", "Last result", "Changed", "Reason"});
    for (const auto& s : (*r)["services"])
      for (const auto& real : s["reals"]) {
        // Changed and Reason explain State: for a draining real that is the
        // drain (since when, and the operator's reason), not the health
        // verdict, which State does not show then (-o json has both).
        const bool draining = real.value("draining", false);
        const json when = real.value(draining ? "drained_since" : "last_change", json());
        std::string why = str(real["reason"]);
        if (draining) {
          const json given = real.value("drain_reason", json());
          why = given.is_string() ? "drained: " + given.get<std::string>() : "drained";
        }
        t.row({str(s["name"]), str(real["address"]), realState(real), check(real), run(real),
               truncated(str(real["detail"]), kMaxResult), age(secondsSince(when, now)), why});
      }
    t.fitLastColumn(outputWidth(), kMinReason);
    std::cout << t.render();
  });
}

}  // namespace keel::cli

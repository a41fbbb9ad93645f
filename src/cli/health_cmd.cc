// SPDX-License-Identifier: Apache-2.0
// keelctl health show [SERVICE]
#include <iostream>
#include <memory>

#include "cli/context.h"

namespace keel::cli {

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
    Table t({false, false, false, false, true, true, false});
    t.row({"Service", "Real", "State", "Check", "OkRun", "FailRun", "Detail"});
    for (const auto& s : (*r)["services"])
      for (const auto& real : s["reals"])
        t.row({str(s["name"]), str(real["address"]), str(real["state"]), str(real["check"]),
               str(real["consecutive_ok"]), str(real["consecutive_fail"]), str(real["detail"])});
    std::cout << t.render();
  });
}

}  // namespace keel::cli

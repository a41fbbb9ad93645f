// SPDX-License-Identifier: Apache-2.0
// keelctl daemon stop [--detach]
#include <iostream>
#include <memory>

#include "cli/context.h"

namespace keel::cli {

void defineDaemon(CLI::App& noun, Context& ctx) {
  noun.require_subcommand(1, 1);
  auto detach = std::make_shared<bool>(false);
  CLI::App* stop = noun.add_subcommand("stop", "stop keeld");
  stop->add_flag("--detach", *detach,
                 "leave the data plane attached and pinned: traffic keeps flowing with the last "
                 "state and the next keeld adopts it");
  stop->callback([&ctx, detach] {
    json p = json::object();
    if (*detach) p["detach"] = true;
    auto r = ctx.call("daemon.shutdown", p);
    if (!r) return;
    if (ctx.jsonOutput()) return ctx.printJson(*r);
    std::cout << (*detach ? "keeld stopping; the data plane stays attached for the next keeld\n"
                          : "keeld stopping; the data plane is detached and its pins removed\n");
  });
}

}  // namespace keel::cli

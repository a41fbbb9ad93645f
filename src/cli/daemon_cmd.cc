// SPDX-License-Identifier: Apache-2.0
// keelctl daemon stop [--keep-forwarding]
#include <iostream>
#include <memory>

#include "cli/context.h"

namespace keel::cli {

void defineDaemon(CLI::App& noun, Context& ctx) {
  noun.require_subcommand(1, 1);
  auto detach = std::make_shared<bool>(false);
  // The help says what the verb takes out, not only that keeld stops: an
  // operator reading it at 3 am must not learn from the reply that every
  // VIP went dark (operator review M4).
  CLI::App* stop = noun.add_subcommand(
      "stop",
      "stop keeld AND take the balancer out: no VIP traffic is forwarded (XDP: the program detached), "
      "the pins and the keelctl changes (drains, weights, added services) are removed, and keeld exits 0, "
      "so systemd's Restart=on-failure does not start it again; --keep-forwarding stops keeld only");
  // --detach is the flag's first name: keeld detaches from the data plane
  // and leaves it forwarding. It read as the opposite of keeld's
  // --detach-on-exit (which detaches the program from the interface), so
  // --keep-forwarding says what happens; --detach stays for scripts.
  stop->add_flag("--keep-forwarding,--detach", *detach,
                 "leave the data plane attached and pinned: traffic keeps flowing with the last "
                 "state and the next keeld adopts it (--detach: the older name)");
  stop->callback([&ctx, detach] {
    json p = json::object();
    if (*detach) p["detach"] = true;
    auto r = ctx.call("daemon.shutdown", p);
    if (!r) return;
    if (ctx.jsonOutput()) return ctx.printJson(*r);
    std::cout << (*detach ? "keeld stopping; the data plane keeps forwarding for the next keeld\n"
                          : "keeld stopping; its data plane is taken out (XDP: detached, pins removed) and its "
                            "runtime changes are dropped\n");
  });
}

}  // namespace keel::cli

// SPDX-License-Identifier: Apache-2.0
// keelctl real add|remove|set-weight|drain|undrain SERVICE ADDRESS [WEIGHT]
// (drain: [--reason TEXT])
#include <memory>
#include <optional>

#include "cli/context.h"

namespace keel::cli {

namespace {

struct RealArgs {
  std::string service, address, weight, mac, health;
  std::optional<std::string> reason;  // drain --reason, sent as given (the daemon checks it)
};

// One verb: its method, whether WEIGHT is taken (and required).
void verb(CLI::App& noun, Context& ctx, const char* name, const char* help, const char* method,
          int weight /* 0 none, 1 optional, 2 required */) {
  auto a = std::make_shared<RealArgs>();
  CLI::App* v = noun.add_subcommand(name, help);
  v->add_option("SERVICE", a->service, "service name")->required();
  v->add_option("ADDRESS", a->address, "real address, IPv6 bare or as [ADDR]")->required();
  if (weight) v->add_option("WEIGHT", a->weight, "0..65535")->required(weight == 2);
  bool isAdd = std::string(method) == "real.add";
  if (isAdd) {
    v->add_option("--mac", a->mac, "l2dsr: the real's MAC (default: neighbour table)");
    v->add_option("--health", a->health, "health check as a JSON object");
  }
  if (std::string(method) == "real.drain")
    v->add_option("--reason", a->reason,
                  "why, shown by `health show` while it drains (1..200 bytes, one line)");
  std::string m = method;
  v->callback([&ctx, a, m] {
    json p{{"service", a->service}, {"address", bareAddress(a->address)}};
    if (!a->weight.empty()) p["weight"] = numberOrString(a->weight);
    if (!a->mac.empty()) p["mac"] = a->mac;
    if (a->reason) p["reason"] = *a->reason;
    addHealthParam(p, a->health);
    auto r = ctx.call(m, p);
    if (r && ctx.jsonOutput()) return ctx.printJson(r->value());
    if (r) printChange(m, *r);
  });
}

}  // namespace

void defineReal(CLI::App& noun, Context& ctx) {
  noun.require_subcommand(1, 1);
  verb(noun, ctx, "add", "add a real to a service (weight default 100; a file real added back: the file's)", "real.add", 1);
  verb(noun, ctx, "remove", "remove a real; its flows are re-picked", "real.remove", 0);
  verb(noun, ctx, "set-weight", "change a real's weight (0 = no new flows)", "real.set_weight", 2);
  verb(noun, ctx, "drain", "take a real out of the ring, keeping its flows", "real.drain", 0);
  verb(noun, ctx, "undrain", "put a drained real back into the ring", "real.undrain", 0);
}

}  // namespace keel::cli

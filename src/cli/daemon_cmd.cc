// SPDX-License-Identifier: Apache-2.0
// keelctl daemon status | stop [--keep-forwarding]
#include <ctime>
#include <iostream>
#include <memory>
#include <string>

#include "cli/context.h"

namespace keel::cli {

namespace {

// "2 drains, 1 weight, 1 added service"; empty when there are none.
std::string runtimeChanges(const json& rc) {
  std::string out;
  auto add = [&](const char* key, const char* one, const char* many) {
    if (const uint64_t n = rc.value(key, uint64_t{0}); n != 0) out += (out.empty() ? "" : ", ") + counted(n, one, many);
  };
  add("drains", "drain", "drains");
  add("weights", "weight", "weights");
  add("added_services", "added service", "added services");
  add("removed_services", "removed service", "removed services");
  add("added_reals", "added real", "added reals");
  add("removed_reals", "removed real", "removed reals");
  return out;
}

void printStatus(const json& r) {
  const std::time_t now = std::time(nullptr);
  const json& dp = r["dataplane"];
  const json& cfg = r["config"];
  std::cout << "keeld " << str(r["version"]) << ", pid " << str(r["pid"]) << ", up "
            << age(secondsSince(r["started_at"], now)) << " (since " << str(r["started_at"]) << ")\n";
  std::cout << "data plane: " << str(dp["kind"]);
  if (!dp["where"].is_null()) std::cout << " on " << str(dp["where"]);
  std::cout << (dp.value("adopted", false) ? ", adopted from the keeld before (its flows kept)" : "") << "\n";
  std::cout << "running: " << counted(r.value("services", uint64_t{0}), "service", "services") << ", "
            << counted(r.value("reals", uint64_t{0}), "real", "reals") << "\n";
  std::cout << "config: " << str(cfg["path"]) << ", applied "
            << (str(cfg["applied_by"]) == "reload" ? "by a reload " : "at keeld's start ")
            << age(secondsSince(cfg["applied_at"], now)) << " ago (" << str(cfg["applied_at"]) << ")\n";
  const json& last = cfg["last_reload"];
  const bool refused = last.is_object() && !last.value("ok", true);
  if (refused) {
    std::cout << "  LAST RELOAD REFUSED " << age(secondsSince(last["at"], now)) << " ago (" << str(last["at"])
              << ", " << str(last["code"]) << ")"
              << (last.value("running_kept", true)
                      ? "; keeld runs the config applied before it:\n"
                      : "; and the config applied before it could NOT be put back: part of the refused file "
                        "may run:\n");
    for (const json& e : last["errors"]) std::cout << "    " << str(e) << "\n";
  } else if (last.is_object()) {
    std::cout << "  last reload: applied " << age(secondsSince(last["at"], now)) << " ago\n";
  }
  if (cfg["file_changed"].is_boolean() && cfg["file_changed"].get<bool>())
    std::cout << (refused ? "  CHANGED ON DISK since it was applied: fix the file (`keelctl config check FILE`), "
                            "then `keelctl config reload`\n"
                          : "  CHANGED ON DISK since it was applied: `keelctl config reload` applies it "
                            "(`keelctl config check FILE` checks it first)\n");
  if (!cfg["file_error"].is_null()) std::cout << "  CANNOT READ it now: " << str(cfg["file_error"]) << "\n";
  for (const std::string& line : restartLines(cfg["restart_needed"], cfg["stop_start_needed"]))
    std::cout << "  " << line << "\n";
  const json& rc = r["runtime_changes"];
  const std::string changes = runtimeChanges(rc);
  std::cout << "keelctl changes on top of the file: " << (changes.empty() ? "none" : changes);
  if (!changes.empty() && !rc["state_file"].is_null()) std::cout << " (kept in " << str(rc["state_file"]) << ")";
  std::cout << "\n";
  if (!rc["unsaved"].is_null())
    std::cout << "  NOT SAVED: " << str(rc["unsaved"]) << " (keeld tries again, and at a clean stop: only a crash "
              << "or kill -9 before then would lose the changes since)\n";
}

}  // namespace

void defineDaemon(CLI::App& noun, Context& ctx) {
  noun.require_subcommand(1, 1);
  CLI::App* status = noun.add_subcommand(
      "status",
      "show keeld's version and uptime, its data plane, the config it runs (when applied, whether the file "
      "changed since, the last reload's outcome, what waits for a restart) and the keelctl changes on top");
  status->callback([&ctx] {
    auto r = ctx.call("daemon.status");
    if (!r) return;
    if (ctx.jsonOutput()) return ctx.printJson(*r);
    printStatus(*r);
  });
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
    auto r = ctx.call("daemon.shutdown", p, {{"params.detach", "--keep-forwarding"}});
    if (!r) return;
    if (ctx.jsonOutput()) return ctx.printJson(*r);
    std::cout << (*detach ? "keeld stopping; the data plane keeps forwarding for the next keeld\n"
                          : "keeld stopping; its data plane is taken out (XDP: detached, pins removed) and its "
                            "runtime changes are dropped\n");
  });
}

}  // namespace keel::cli

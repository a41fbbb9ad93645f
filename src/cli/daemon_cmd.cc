// SPDX-License-Identifier: Apache-2.0
// keelctl daemon status | stop [--keep-forwarding]
#include <ctime>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>

#include "cli/context.h"

namespace keel::cli {

namespace {

// "2 drains, 1 weight, 1 added service"; empty when there are none.
std::string runtimeChanges(const Reply& rc) {
  std::string out;
  auto add = [&](const char* key, const char* one, const char* many) {
    if (const uint64_t n = rc.get(key).countOr(0); n != 0) out += (out.empty() ? "" : ", ") + counted(n, one, many);
  };
  add("drains", "drain", "drains");
  add("weights", "weight", "weights");
  add("added_services", "added service", "added services");
  add("removed_services", "removed service", "removed services");
  add("added_reals", "added real", "added reals");
  add("removed_reals", "removed real", "removed reals");
  return out;
}

// The whole text before any of it is printed: a reply that lacks a key
// keelctl reads is said alone (ReplyError), not after half a status.
std::string statusText(const Reply& r) {
  const std::time_t now = std::time(nullptr);
  std::ostringstream out;
  const Reply dp = r["dataplane"];
  const Reply cfg = r["config"];
  out << "keeld " << r["version"].text() << ", pid " << r["pid"].text() << ", up "
      << age(secondsSince(r["started_at"].value(), now)) << " (since " << r["started_at"].text() << ")\n";
  out << "data plane: " << dp["kind"].text();
  if (!dp.get("where").isNull()) out << " on " << dp["where"].text();
  out << (dp.get("adopted").flagOr(false) ? ", adopted from the keeld before (its flows kept)" : "") << "\n";
  out << "running: " << counted(r.get("services").countOr(0), "service", "services") << ", "
      << counted(r.get("reals").countOr(0), "real", "reals") << "\n";
  out << "config: " << cfg["path"].text() << ", applied "
      << (cfg["applied_by"].text() == "reload" ? "by a reload " : "at keeld's start ")
      << age(secondsSince(cfg["applied_at"].value(), now)) << " ago (" << cfg["applied_at"].text() << ")\n";
  const Reply last = cfg.get("last_reload");
  const bool refused = last.isObject() && !last.get("ok").flagOr(true);
  if (refused) {
    out << "  LAST RELOAD REFUSED " << age(secondsSince(last["at"].value(), now)) << " ago (" << last["at"].text()
        << ", " << last["code"].text() << ")"
        << (last.get("running_kept").flagOr(true)
                ? "; keeld runs the config applied before it:\n"
                : "; and the config applied before it could NOT be put back: part of the refused file "
                  "may run:\n");
    for (const Reply& e : last["errors"].items()) out << "    " << e.message() << "\n";
  } else if (last.isObject()) {
    out << "  last reload: applied " << age(secondsSince(last["at"].value(), now)) << " ago\n";
  }
  if (cfg.get("file_changed").flagOr(false))
    out << (refused ? "  CHANGED ON DISK since it was applied: fix the file (`keelctl config check FILE`), "
                      "then `keelctl config reload`\n"
                    : "  CHANGED ON DISK since it was applied: `keelctl config reload` applies it "
                      "(`keelctl config check FILE` checks it first)\n");
  if (!cfg.get("file_error").isNull()) out << "  CANNOT READ it now: " << cfg["file_error"].message() << "\n";
  for (const std::string& line : restartLines(cfg.get("restart_needed"), cfg.get("stop_start_needed")))
    out << "  " << line << "\n";
  const Reply rc = r["runtime_changes"];
  const std::string changes = runtimeChanges(rc);
  out << "keelctl changes on top of the file: " << (changes.empty() ? "none" : changes);
  if (!changes.empty() && !rc.get("state_file").isNull()) out << " (kept in " << rc["state_file"].text() << ")";
  out << "\n";
  if (!rc.get("unsaved").isNull())
    out << "  NOT SAVED: " << rc["unsaved"].message() << " (keeld tries again, and at a clean stop: only a crash "
        << "or kill -9 before then would lose the changes since)\n";
  return out.str();
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
    if (ctx.jsonOutput()) return ctx.printJson(r->value());
    std::cout << statusText(*r);
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
    if (ctx.jsonOutput()) return ctx.printJson(r->value());
    std::cout << (*detach ? "keeld stopping; the data plane keeps forwarding for the next keeld\n"
                          : "keeld stopping; its data plane is taken out (XDP: detached, pins removed) and its "
                            "runtime changes are dropped\n");
  });
}

}  // namespace keel::cli

// SPDX-License-Identifier: Apache-2.0
// keelctl config check FILE | config reload
// `check` is a daemon call on purpose: the daemon's parser is the one
// validator, so keelctl can never accept a file keeld would refuse. keelctl
// reads the file (with the caller's permissions) and sends its text: keeld
// reads no file for a client, since it would do so with its own privileges
// and quote the file in its errors.
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "cli/context.h"
#include "common/text.h"

namespace keel::cli {

namespace {

// A request line is at most 1 MiB (docs/api.md) and JSON escapes some
// bytes into several: half of it is room for any config.
constexpr std::uintmax_t kMaxConfigBytes = 512 * 1024;

// FILE's text, or nullopt after printing why not (ctx.exitCode = 1).
std::optional<std::string> readConfig(const std::string& file, Context& ctx) {
  auto fail = [&](const std::string& why) -> std::optional<std::string> {
    ctx.fail(1, file + ": " + why);
    return std::nullopt;
  };
  std::error_code ec;
  const auto st = std::filesystem::status(file, ec);
  if (ec) return fail("cannot open: " + ec.message());
  if (!std::filesystem::is_regular_file(st)) return fail("not a regular file");
  const std::uintmax_t size = std::filesystem::file_size(file, ec);
  if (ec) return fail("cannot open: " + ec.message());
  if (size > kMaxConfigBytes)
    return fail(std::to_string(size) + " bytes; keelctl sends at most " + std::to_string(kMaxConfigBytes) +
                " (check a file this large with keeld --check-config FILE on the host)");
  std::ifstream in(file, std::ios::binary);
  if (!in) return fail(std::string("cannot open: ") + std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  if (!in.good() && !in.eof()) return fail("read failed");
  // JSON escaping grows some bytes (quotes, backslashes, tabs, control
  // bytes as \u00XX): a file under the limit above can still make a line
  // over the daemon's 1 MiB (ApiServerOptions::maxLineBytes), which it
  // would refuse as line_too_long. Said here, naming the file.
  constexpr size_t kMaxLine = size_t{1} << 20;
  const size_t encoded = json(text.str()).dump(-1, ' ', false, json::error_handler_t::replace).size();
  if (encoded + 4096 > kMaxLine)
    return fail(std::to_string(encoded) + " bytes once encoded as JSON, over the " + std::to_string(kMaxLine) +
                "-byte request line keeld reads (check it with keeld --check-config FILE on the host)");
  return text.str();
}

// A value of a change as keel.yaml writes it; quoted (as JSON) when it is
// "" (not set) or holds a space, a quote or a character visibleText()
// escapes (`\` among them), so each "KEY FROM -> TO" stays readable. The
// quoted form is JSON, whose `\` are its escapes: shown through
// visibleMessage(), since JSON escapes neither DEL nor the C1 controls.
std::string changeValue(const Reply& v) {
  const json& j = v.value();
  const std::string s =
      j.is_null() ? "" : j.is_string() ? j.get<std::string>() : j.dump(-1, ' ', false, json::error_handler_t::replace);
  const bool plain = !s.empty() && s.find_first_of(" \"") == std::string::npos && visibleText(s) == s;
  return plain ? s : visibleMessage(json(s).dump(-1, ' ', false, json::error_handler_t::replace));
}

// "scheduler maglev -> maglev-src, ring_size 65537 -> 655373": an item's
// "keys".
std::string keysText(const Reply& keys) {
  std::vector<std::string> parts;
  if (keys.isArray())
    for (const Reply& k : keys.items())
      if (k.isObject())
        parts.push_back(k.get("key").text() + " " + changeValue(k.get("from")) + " -> " + changeValue(k.get("to")));
  return commaList(parts);
}

// One item of config.reload's `changes` (docs/api.md) as one line, named as
// the reload's warnings name services and reals:
//   service web: added, 10.0.0.1:80/TCP with 2 reals
//   service web real 10.0.1.12: weight 100 -> 0
//   node: icmp_too_big_rate 1000 -> 0
// A change this keelctl does not know (a newer keeld's) still gets its
// line: its name, and its keys or from/to if it has them.
std::string reloadChangeLine(const Reply& c) {
  if (!c.isObject()) return c.text();
  const std::string kind = c.get("change").text();
  std::string head;
  if (c.has("service")) head = "service " + c["service"].text();
  if (c.has("real")) head += (head.empty() ? "" : " ") + std::string("real ") + c["real"].text();
  if (kind == "node_updated") head = "node";
  if (kind == "upkeep_interval_changed") head = "dataplane.upkeep_interval";
  if (kind == "flow_count_interval_changed") head = "metrics.flow_count_interval";
  const std::string fromTo =
      c.has("from") || c.has("to") ? changeValue(c.get("from")) + " -> " + changeValue(c.get("to")) : "";
  std::string what;
  if (kind == "service_added")
    what = "added, " + endpoint(c.get("vip").text(), c.get("port").countOr(0)) + "/" + upper(c.get("protocol").text()) +
           " with " + counted(c.get("reals").countOr(0), "real", "reals");
  else if (kind == "service_removed" || kind == "real_removed")
    what = "removed";
  else if (kind == "real_added")
    what = "added";
  else if (kind == "real_weight_changed")
    what = "weight " + fromTo;
  else if (kind == "real_mac_changed")
    what = "mac " + fromTo;
  else if (kind == "health_check_changed")
    // Without a real: the change every real the service kept shares (its
    // health block), with its all_down / established_on_down.
    what = "health " +
           (c.has("reals") ? "(" + counted(c["reals"].count(), "real", "reals") + ") " : "") + keysText(c.get("keys"));
  else if (kind == "service_updated" || kind == "node_updated")
    what = keysText(c.get("keys"));
  else if (kind == "upkeep_interval_changed" || kind == "flow_count_interval_changed")
    what = fromTo;
  else
    what = kind + (c.has("keys") ? " " + keysText(c["keys"]) : fromTo.empty() ? "" : " " + fromTo);
  return head.empty() ? what : head + ": " + what;
}

}  // namespace

void defineConfig(CLI::App& noun, Context& ctx) {
  noun.require_subcommand(1, 1);
  auto file = std::make_shared<std::string>();
  CLI::App* check = noun.add_subcommand("check", "validate a config file with keeld's parser");
  check->add_option("FILE", *file, "keel.yaml to check")->required();
  check->callback([&ctx, file] {
    auto text = readConfig(*file, ctx);
    if (!text) return;
    // Messages name the file as the operator wrote it, as keeld --check-config does.
    auto r = ctx.call("config.check", {{"text", *text}, {"name", *file}});
    if (!r) return;
    if (ctx.jsonOutput()) return ctx.printJson(r->value());
    // keeld --check-config's line, so a script reads one answer from either
    // (the operator's own name: a `\` in it as typed).
    std::string line = visibleMessage(*file) + ": OK";
    if (r->has("services") && r->has("reals"))
      line += " (" + std::to_string((*r)["services"].count()) + " services, " +
              std::to_string((*r)["reals"].count()) + " reals)";
    std::cout << line << "\n";
    // Valid, but keeld would hold these down (l2dsr reals not in the
    // neighbour table).
    printWarnings(*r);
  });
  CLI::App* reload = noun.add_subcommand("reload", "re-read keeld's config file and apply the difference");
  reload->callback([&ctx] {
    auto r = ctx.call("config.reload");
    if (!r) return;
    if (ctx.jsonOutput()) return ctx.printJson(r->value());
    if (!r->empty()) {  // {} or null: an older keeld's; anything else but an object is a ReplyError
      // What the reload did, one line a change, as keeld logged each; then
      // the counts. A keeld before `changes` says nothing of them.
      std::string out;
      if (const Reply changes = r->get("changes"); changes.isArray()) {
        if (changes.empty()) out += "config reloaded: no changes\n";
        for (const Reply& c : changes.items()) out += reloadChangeLine(c) + "\n";
      }
      for (const auto& [key, value] : r->members()) {
        if ((key == "restart_needed" || key == "stop_start_needed" || key == "warnings" || key == "changes") &&
            value.isArray())
          continue;
        out += visibleText(key) + ": " + value.text() + "\n";
      }
      std::cout << out;
      // Keys the file changed that only a restart applies: kept running as
      // keeld started (keeld(8), RELOAD). Those a restart does not apply
      // either (stop_start_needed: a pinned XDP plane that outlives keeld)
      // get their own line with the way to apply them.
      for (const std::string& line : restartLines(r->get("restart_needed"), r->get("stop_start_needed")))
        std::cerr << "warning: " << line << "\n";
      printWarnings(*r);
    } else {
      std::cout << "config reloaded\n";
    }
  });
}

}  // namespace keel::cli

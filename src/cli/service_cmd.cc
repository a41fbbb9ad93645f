// SPDX-License-Identifier: Apache-2.0
// keelctl service list | show NAME | add NAME ... | remove NAME
#include <algorithm>
#include <cctype>
#include <ctime>
#include <iostream>
#include <memory>

#include "cli/context.h"

namespace keel::cli {

namespace {

// A real's kept flows at the last count; nullopt if it has none (no
// "flows", or null: no count yet, or counts are off).
std::optional<uint64_t> keptFlows(const Reply& real) {
  const Reply f = real.get("flows");
  if (f.isNull()) return std::nullopt;
  const Reply kept = f.get("kept");
  if (kept.isNull()) return std::nullopt;
  return kept.count();
}

// ipvsadm -Ln --stats style: a service line, then one "->" line per real;
// Flows from the last periodic count (entries kept per real: closer to
// ipvsadm's ActiveConn + InActConn, keelctl.8).
std::string serviceTable(const std::vector<Reply>& services, bool exact) {
  Table t({false, false, false, false, false, true, true, true});
  t.row({"Prot", "LocalAddress:Port", "Scheduler", "Forward", "Service", "Packets", "Bytes", "Flows"});
  t.row({"  ->", "RemoteAddress", "Weight", "State", "", "Packets", "Bytes", "Flows"});
  for (const auto& s : services) {
    // The service's: the sum of its reals', "-" unless every real has a
    // count (a partial sum would read as the whole).
    const std::vector<Reply> reals = s["reals"].items();
    uint64_t flows = 0;
    bool counted = !reals.empty();
    for (const Reply& r : reals) {
      const std::optional<uint64_t> kept = keptFlows(r);
      counted = counted && kept;
      flows += kept.value_or(0);
    }
    t.row({upper(s["protocol"].text()), endpoint(s["vip"].text(), s["port"].count()), s["scheduler"].text(),
           s["forwarding"].text(), s["name"].text(), countText(s["packets"].value(), exact),
           countText(s["bytes"].value(), exact), counted ? countText(json(flows), exact) : "-"});
    for (const Reply& r : reals) {
      std::string addr = r["address"].text();
      if (r.has("mac")) addr += " (" + r["mac"].text() + ")";
      const std::optional<uint64_t> kept = keptFlows(r);
      t.row({"  ->", addr, r["weight"].text(), realState(r), "", countText(r["packets"].value(), exact),
             countText(r["bytes"].value(), exact), kept ? countText(json(*kept), exact) : "-"});
    }
  }
  return t.render();
}

// Under the table: how old the Flows column is (the oldest count shown);
// nothing while there is no count ("-": none yet, or counts are off).
std::string flowsNote(const std::vector<Reply>& services) {
  long long oldest = -1;
  for (const Reply& s : services)
    oldest = std::max(oldest, secondsSince(s.get("flows_counted_at").value(), std::time(nullptr)));
  if (oldest < 0) return "";
  return "Flows: table entries kept per real, counted " + age(oldest) + " ago\n";
}

// Under the table: a service whose ring is empty (no usable real: every
// new flow is dropped; its reals may still read up, at weight 0), and what
// keeld logged as mtu_too_small_for_ipv6, still true.
std::string serviceWarnings(const std::vector<Reply>& services) {
  std::string out;
  for (const Reply& s : services)
    if (s.get("published_ring_size").countOr(1) == 0)
      out += "warning: " + s["name"].text() + ": no usable real (ring empty): new flows to " +
             endpoint(s["vip"].text(), s["port"].count()) + "/" + upper(s["protocol"].text()) +
             " are dropped (drop_no_backend)\n";
  for (const Reply& s : services)
    if (const Reply m = s.get("mtu_too_small_for_ipv6"); !m.isNull())
      // mtu is the port's, or node.tunnel_mtu where that is smaller.
      out += "warning: " + s["name"].text() + ": the MTU toward the reals (" + m["mtu"].text() +
             ") is too small for IPv6 clients through ipip: " + m["needed"].text() +
             " needed (docs/operations.md, MTU with ipip)\n";
  return out;
}

// ADDR[:WEIGHT[:MAC]], IPv6 always as [ADDR][:WEIGHT[:MAC]]. A bare IPv6
// address is refused: `2001:db8::5:50` is both the address 2001:db8::5:50
// and 2001:db8::5 at weight 50, and keelctl cannot know which was meant.
// A usageError() if it is none of those.
json parseRealArg(const std::string& text) {
  auto usage = [&](const std::string& why) -> json { usageError("--real " + text, why); };
  if (text.empty()) return usage("empty: expected ADDR, ADDR:WEIGHT or ADDR:WEIGHT:MAC");
  std::string addr, rest;
  if (text[0] == '[') {
    auto close = text.find(']');
    if (close == std::string::npos) return usage("no ] after the IPv6 address");
    addr = text.substr(1, close - 1);
    rest = text.substr(close + 1);
    if (!rest.empty() && rest[0] != ':')
      return usage("expected :WEIGHT after ], got " + rest);
    if (!rest.empty()) rest.erase(0, 1);
  } else if (std::count(text.begin(), text.end(), ':') > 1 &&
             text.substr(0, text.find(':')).find('.') == std::string::npos) {
    // Not IPv4 before the first colon (10.0.0.5:50:MAC is): an IPv6
    // address, dotted tail (::ffff:10.0.0.1, 64:ff9b::10.0.0.1) or not.
    return usage("an IPv6 real goes in brackets, [ADDR] or [ADDR]:WEIGHT[:MAC], so that a weight "
                 "cannot be read as part of the address");
  } else {
    auto colon = text.find(':');
    addr = text.substr(0, colon);
    if (colon != std::string::npos) {
      rest = text.substr(colon + 1);
      if (rest.empty()) return usage("no WEIGHT after :");
    }
  }
  json real{{"address", addr}};
  if (!rest.empty()) {
    auto colon = rest.find(':');
    real["weight"] = numberOrString(rest.substr(0, colon));
    if (colon != std::string::npos) {
      if (colon + 1 == rest.size()) return usage("no MAC after WEIGHT:");
      real["mac"] = rest.substr(colon + 1);
    }
  } else if (text.back() == ':') {
    return usage("no WEIGHT after :");
  }
  return real;
}

struct AddArgs {
  std::string name, vip, port, protocol = "tcp", forwarding, scheduler, ringSize, health;
  std::vector<std::string> reals;
};

}  // namespace

void defineService(CLI::App& noun, Context& ctx) {
  noun.require_subcommand(1, 1);

  CLI::App* list = noun.add_subcommand("list", "list services with their reals and counters");
  list->callback([&ctx] {
    auto r = ctx.call("service.list");
    if (!r) return;
    if (ctx.jsonOutput()) return ctx.printJson(r->value());
    const std::vector<Reply> services = (*r)["services"].items();
    std::cout << serviceTable(services, ctx.exact) + flowsNote(services) + serviceWarnings(services);
  });

  auto name = std::make_shared<std::string>();
  CLI::App* show = noun.add_subcommand("show", "show one service");
  show->add_option("NAME", *name, "service name")->required();
  show->callback([&ctx, name] {
    auto r = ctx.call("service.show", {{"name", *name}});
    if (!r) return;
    if (ctx.jsonOutput()) return ctx.printJson(r->value());
    const std::vector<Reply> s = {(*r)["service"]};
    std::cout << serviceTable(s, ctx.exact) + flowsNote(s) + "ring: " + s[0]["published_ring_size"].text() +
                     " slots published (configured " + s[0]["ring_size"].text() + ")\n" + serviceWarnings(s);
  });

  auto add = std::make_shared<AddArgs>();
  CLI::App* a = noun.add_subcommand("add", "add a service (the keys of a keel.yaml service)");
  a->add_option("NAME", add->name, "service name")->required();
  a->add_option("--vip", add->vip, "virtual IP address")->required();
  a->add_option("--port", add->port, "port, 0 = every port")->required();
  a->add_option("--protocol", add->protocol, "tcp or udp")->capture_default_str();
  a->add_option("--forwarding", add->forwarding, "ipip (default) or l2dsr");
  a->add_option("--scheduler", add->scheduler, "maglev (default) or maglev-src");
  a->add_option("--ring-size", add->ringSize, "65537 (default) or 655373");
  // One value an occurrence: with extra args allowed, CLI11 reads a value in
  // brackets as a list and strips them, so "[2001:db8::8]" arrived bare and
  // was refused as ambiguous.
  a->add_option("--real", add->reals, "ADDR[:WEIGHT[:MAC]], IPv6 always in brackets: [ADDR][:WEIGHT[:MAC]]; repeatable")
      ->allow_extra_args(false);
  a->add_option("--health", add->health, "health check as a JSON object, e.g. '{\"type\":\"tcp\"}'");
  a->callback([&ctx, add] {
    json p{{"name", add->name}, {"vip", add->vip}, {"port", numberOrString(add->port)},
           {"protocol", add->protocol}};
    if (!add->forwarding.empty()) p["forwarding"] = add->forwarding;
    if (!add->scheduler.empty()) p["scheduler"] = add->scheduler;
    if (!add->ringSize.empty()) p["ring_size"] = numberOrString(add->ringSize);
    addHealthParam(p, add->health);
    json reals = json::array();
    for (const auto& r : add->reals) reals.push_back(parseRealArg(r));
    if (!reals.empty()) p["reals"] = reals;
    auto r = ctx.call("service.add", p);
    if (r && ctx.jsonOutput()) return ctx.printJson(r->value());
    if (r) printChange("service.add", *r);
  });

  auto rmName = std::make_shared<std::string>();
  CLI::App* rm = noun.add_subcommand("remove", "remove a service and its reals");
  rm->add_option("NAME", *rmName, "service name")->required();
  rm->callback([&ctx, rmName] {
    auto r = ctx.call("service.remove", {{"name", *rmName}});
    if (r && ctx.jsonOutput()) return ctx.printJson(r->value());
    if (r) printChange("service.remove", *r);
  });
}

}  // namespace keel::cli

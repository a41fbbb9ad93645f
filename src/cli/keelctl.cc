// SPDX-License-Identifier: Apache-2.0
// keelctl: the operator's CLI for keeld's control socket.
//   keelctl [--socket PATH] [--timeout SECONDS] [-o table|json] NOUN VERB ARGS
// Each noun lives in its own file (*_cmd.cc) and registers its verbs from
// the table below; keelctl(8) documents every command.
#include <cstdlib>
#include <iostream>

#include "cli/context.h"
#include "common/output_flag.h"

namespace {

using keel::cli::Noun;

// The command table: add a noun here and in keelctl.8.
const Noun kNouns[] = {
    {"service", "list, show, add and remove services", keel::cli::defineService},
    {"real", "add, remove, reweight, drain and undrain reals", keel::cli::defineReal},
    {"health", "show health-check state", keel::cli::defineHealth},
    {"stats", "show packet and byte counters", keel::cli::defineStats},
    {"lookup", "predict which real a new flow goes to", keel::cli::defineLookup},
    {"conns", "list the connection table's entries", keel::cli::defineConns},
    {"config", "check a config file, reload the daemon's", keel::cli::defineConfig},
    {"daemon", "show keeld's status; stop keeld (takes the balancer out unless --keep-forwarding)",
     keel::cli::defineDaemon},
};

// For CLI11's "A subcommand is required" when the line has a word where the
// noun or verb goes: that word, and the commands it could have been, as
// "unknown command". Empty if the line really lacks one.
std::string unknownCommand(CLI::App& app, int argc, char** argv) {
  CLI::App* at = &app;
  std::string path = "keelctl";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--socket" || a == "-o" || a == "--output" || a == "--timeout") {
      ++i;  // its value
      continue;
    }
    if (a.rfind('-', 0) == 0) continue;
    if (at->get_subcommands({}).empty()) return "";  // a verb's own arguments
    CLI::App* next = nullptr;
    for (CLI::App* sub : at->get_subcommands({}))
      if (sub->get_name() == a) next = sub;
    if (next) {
      at = next;
      path += " " + a;
      continue;
    }
    std::string known;
    for (CLI::App* sub : at->get_subcommands({})) known += (known.empty() ? "" : ", ") + sub->get_name();
    return "unknown command \"" + a + "\" for " + path + " (one of: " + known + ")";
  }
  return "";
}

// --timeout's and KEELCTL_TIMEOUT's check: a number of seconds, 0.1 (a
// notify script's shortest useful wait) to 3600. Empty if `text` is one,
// else what is wrong, as stats --watch says it.
constexpr double kMinTimeout = 0.1, kMaxTimeout = 3600;
std::string timeoutError(const std::string& text) {
  char* end = nullptr;
  const double v = text.empty() ? 0 : std::strtod(text.c_str(), &end);
  if (text.empty() || !end || *end || !(v >= kMinTimeout && v <= kMaxTimeout))  // NaN fails too
    return "must be a number of seconds 0.1..3600, got \"" + text + "\"";
  return "";
}

// The command a parse got to: "keelctl", "keelctl service", "keelctl real
// add" (CLI11 records the subcommands it met, also when it then throws).
std::pair<CLI::App*, std::string> commandReached(CLI::App& app) {
  CLI::App* at = &app;
  std::string path = "keelctl";
  while (!at->get_subcommands().empty()) {
    at = at->get_subcommands().front();
    path += " " + at->get_name();
  }
  return {at, path};
}

// "list, show, add, remove": what `at` takes next.
std::string subcommandNames(CLI::App* at) {
  std::string names;
  for (CLI::App* sub : at->get_subcommands({})) names += (names.empty() ? "" : ", ") + sub->get_name();
  return names;
}

}  // namespace

int main(int argc, char** argv) {
  keel::cli::Context ctx;
  CLI::App app{"keelctl: control the keel load balancer daemon (keeld). See keelctl(8).", "keelctl"};
  app.add_option("--socket", ctx.socketPath, "keeld control socket")
      ->envname("KEELCTL_SOCKET")
      ->capture_default_str();
  // Not CLI11's envname: a bad KEELCTL_TIMEOUT is named as such (below).
  CLI::Option* timeout =
      app.add_option("--timeout", ctx.timeoutSeconds,
                     "wait at most SECONDS for keeld's answer (0.1..3600, or $KEELCTL_TIMEOUT), then exit 3")
          ->type_name("SECONDS")
          ->check(CLI::Validator([](std::string& text) { return timeoutError(text); }, ""))
          ->capture_default_str();
  // KEELCTL_TIMEOUT when --timeout is not given, checked once the line is
  // parsed and before any verb runs (parse_complete_callback comes first).
  app.parse_complete_callback([&ctx, timeout] {
    const char* env = std::getenv("KEELCTL_TIMEOUT");
    if (timeout->count() != 0 || !env || !*env) return;  // the option wins; empty is unset, as for KEELCTL_SOCKET
    if (std::string err = timeoutError(env); !err.empty()) throw CLI::ValidationError("KEELCTL_TIMEOUT", err);
    ctx.timeoutSeconds = std::strtod(env, nullptr);
  });
  app.add_option("-o,--output", ctx.output, "output format")
      ->check(CLI::IsMember({"table", "json"}))
      ->capture_default_str();
  // Like -o, how tables print (ipvsadm's --exact): global, so it goes
  // anywhere on the line.
  app.add_flag("--exact", ctx.exact, "tables: whole counts (by default, from 100,000,000 on: K, M, G, T)");
  app.require_subcommand(1, 1);
  app.set_version_flag("--version", std::string("keelctl ") + KEEL_VERSION);
  for (const Noun& n : kNouns) {
    CLI::App* sub = app.add_subcommand(n.name, n.help);
    n.define(*sub, ctx);
    // The global options anywhere on the line (`keelctl service list -o
    // json`, as ipvsadm and kubectl users type them): an option a noun or
    // verb does not have goes up to keelctl's own.
    sub->fallthrough();
    for (CLI::App* verb : sub->get_subcommands({})) verb->fallthrough();
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version: printed by CLI11, exit 0.
    if (e.get_exit_code() == 0) return app.exit(e);
    // A usage error, exit 2 like most Unix tools. CLI11's own words name
    // neither keelctl nor the command ("ADDRESS is required"), and for a
    // missing noun or verb not what could go there ("A subcommand is
    // required"): "keelctl real add: ADDRESS is required", "keelctl
    // service: a verb is required: one of list, show, add, remove".
    auto [at, path] = commandReached(app);
    std::string what = e.what();
    // keelctl's own options (--timeout 0, -o yaml, KEELCTL_TIMEOUT=x) are
    // keelctl's wherever on the line: its --help lists them, not the verb's.
    for (const CLI::Option* opt : app.get_options())
      if (what.rfind(opt->get_name() + ":", 0) == 0) path = "keelctl";
    if (what.rfind("KEELCTL_TIMEOUT:", 0) == 0) path = "keelctl";
    const std::string unknown =
        dynamic_cast<const CLI::RequiredError*>(&e) && what == "A subcommand is required"
            ? unknownCommand(app, argc, argv)
            : "";
    if (!unknown.empty()) {
      what = unknown;  // it names the command itself
    } else if (what == "A subcommand is required") {
      what = std::string(at == &app ? "a noun" : "a verb") + " is required: one of " + subcommandNames(at);
    }
    const std::string where = unknown.empty() ? path : "keelctl";
    // -o json: the message as stderr's, less "keelctl" (as ctx.fail's).
    if (keel::jsonOutputAsked(argc, argv))
      ctx.printError(keel::cli::json{
          {"code", "usage"}, {"message", where == "keelctl" ? what : where.substr(8) + ": " + what}});
    std::cerr << where << ": " << what << "\nRun '" << path << " --help' for the usage.\n";
    return keel::cli::kExitUsage;
  } catch (const keel::cli::ReplyError& e) {
    // A reply of a shape keelctl does not read (a newer or older keeld, or
    // no keeld at all behind --socket): what is wrong, where, and exit 1
    // (keelctl.8: "an answer of a shape it does not know"), or 3 for a
    // change, which keeld may have applied.
    ctx.output = keel::jsonOutputAsked(argc, argv) ? "json" : "table";
    return ctx.unreadableReply(e.what());
  } catch (const std::exception& e) {
    // Anything else a reply made throw (Reply should have said it).
    ctx.output = keel::jsonOutputAsked(argc, argv) ? "json" : "table";
    return ctx.unreadableReply(std::string("unexpected reply from keeld: ") + e.what());
  }
  return ctx.exitCode;
}

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
    if (ctx.jsonOutput()) return ctx.printJson(*r);
    std::cout << *file << ": ok\n";
    // Valid, but keeld would hold these down (l2dsr reals not in the
    // neighbour table).
    printWarnings(*r);
  });
  CLI::App* reload = noun.add_subcommand("reload", "re-read keeld's config file and apply the difference");
  reload->callback([&ctx] {
    auto r = ctx.call("config.reload");
    if (!r) return;
    if (ctx.jsonOutput()) return ctx.printJson(*r);
    if (r->is_object() && !r->empty()) {
      for (auto it = r->begin(); it != r->end(); ++it) {
        if ((it.key() == "restart_needed" || it.key() == "stop_start_needed" || it.key() == "warnings") &&
            it.value().is_array())
          continue;
        std::cout << it.key() << ": " << str(it.value()) << "\n";
      }
      // Keys the file changed that only a restart applies: kept running as
      // keeld started (keeld(8), RELOAD). Those a restart does not apply
      // either (stop_start_needed: a pinned XDP plane that outlives keeld)
      // get their own line with the way to apply them.
      for (const std::string& line : restartLines(r->value("restart_needed", json()),
                                                  r->value("stop_start_needed", json())))
        std::cerr << "warning: " << line << "\n";
      printWarnings(*r);
    } else {
      std::cout << "config reloaded\n";
    }
  });
}

}  // namespace keel::cli

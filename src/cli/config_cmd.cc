// SPDX-License-Identifier: Apache-2.0
// keelctl config check FILE | config reload
// `check` is a daemon call on purpose: the daemon's parser is the one
// validator, so keelctl can never accept a file keeld would refuse.
#include <filesystem>
#include <iostream>
#include <memory>

#include "cli/context.h"

namespace keel::cli {

void defineConfig(CLI::App& noun, Context& ctx) {
  noun.require_subcommand(1, 1);
  auto file = std::make_shared<std::string>();
  CLI::App* check = noun.add_subcommand("check", "validate a config file with keeld's parser");
  check->add_option("FILE", *file, "keel.yaml to check")->required();
  check->callback([&ctx, file] {
    // keeld's working directory is not ours: send an absolute path.
    std::error_code ec;
    std::string path = std::filesystem::absolute(*file, ec).lexically_normal().string();
    if (ec) path = *file;
    auto r = ctx.call("config.check", {{"path", path}});
    if (!r) return;
    if (ctx.jsonOutput()) return ctx.printJson(*r);
    std::cout << path << ": ok\n";
  });
  CLI::App* reload = noun.add_subcommand("reload", "re-read keeld's config file and apply the difference");
  reload->callback([&ctx] {
    auto r = ctx.call("config.reload");
    if (!r) return;
    if (ctx.jsonOutput()) return ctx.printJson(*r);
    if (r->is_object() && !r->empty()) {
      for (auto it = r->begin(); it != r->end(); ++it)
        std::cout << it.key() << ": " << str(it.value()) << "\n";
    } else {
      std::cout << "config reloaded\n";
    }
  });
}

}  // namespace keel::cli

// SPDX-License-Identifier: Apache-2.0
#include "cli/context.h"

#include <algorithm>
#include <cstdio>
#include <iostream>

namespace keel::cli {

api::ApiClient& Context::client() {
  if (!client_) client_.emplace(socketPath);
  return *client_;
}

std::optional<json> Context::call(const std::string& method, const json& params) {
  json response;
  if (Status s = client().call(method, params, response); !s) {
    std::cerr << "keelctl: " << s.message() << "\n";
    exitCode = 1;
    return std::nullopt;
  }
  if (response.value("ok", false)) return response.contains("result") ? response["result"] : json::object();
  const json& err = response.contains("error") ? response["error"] : json::object();
  std::cerr << "keelctl: " << err.value("message", std::string("request failed")) << "\n";
  // config.check / reload: every error of the file, one per line.
  if (err.contains("details") && err["details"].contains("errors") && err["details"]["errors"].is_array())
    for (const auto& e : err["details"]["errors"])
      std::cerr << "  " << (e.is_string() ? e.get<std::string>() : e.dump()) << "\n";
  exitCode = 1;
  return std::nullopt;
}

void Context::printJson(const json& result) const {
  std::cout << result.dump(2, ' ', false, json::error_handler_t::replace) << "\n";
}

json numberOrString(const std::string& text) {
  if (!text.empty() && text.size() <= 18) {
    size_t start = text[0] == '-' ? 1 : 0;
    if (start < text.size() &&
        std::all_of(text.begin() + start, text.end(), [](char c) { return c >= '0' && c <= '9'; }))
      return json(std::stoll(text));
  }
  return json(text);
}

std::string endpoint(const std::string& address, uint64_t port) {
  std::string p = port == 0 ? "*" : std::to_string(port);
  if (address.find(':') != std::string::npos) return "[" + address + "]:" + p;
  return address + ":" + p;
}

std::string str(const json& v) {
  if (v.is_null()) return "";
  if (v.is_string()) return v.get<std::string>();
  return v.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string Table::render() const {
  std::vector<size_t> width;
  for (const auto& r : rows_) {
    if (width.size() < r.size()) width.resize(r.size(), 0);
    for (size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], r[i].size());
  }
  std::string out;
  for (const auto& r : rows_) {
    std::string line;
    for (size_t i = 0; i < r.size(); ++i) {
      bool right = i < right_.size() && right_[i];
      std::string pad(width[i] - r[i].size(), ' ');
      if (i) line += "  ";
      line += right ? pad + r[i] : r[i] + (i + 1 < r.size() ? pad : "");
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
  }
  return out;
}

}  // namespace keel::cli

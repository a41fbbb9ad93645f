// SPDX-License-Identifier: Apache-2.0
#include "cli/context.h"

#include "common/text.h"

#include "control/api/codes.h"
#include "control/api/json_keys.h"
#include "control/api/methods.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <iostream>

namespace keel::cli {

api::ApiClient& Context::client() {
  if (!client_)
    client_.emplace(socketPath, std::chrono::milliseconds(std::llround(timeoutSeconds * 1000)));
  return *client_;
}

namespace {

// Where a change that may have been applied shows, for "look before
// repeating it": a reload in daemon status (when the config was applied,
// how the last reload went), a stop in whether keeld still answers, the
// rest in the services and their reals.
std::string whereToLook(const std::string& method) {
  if (method == "config.reload") return "keelctl daemon status";
  if (method == "daemon.shutdown") return "keelctl daemon status, which cannot connect once keeld has stopped";
  return "keelctl service list, health show";
}

}  // namespace

std::optional<Reply> Context::call(const std::string& method, const json& params,
                                   const std::map<std::string, std::string>& flags) {
  lastMethod_ = method;
  json line;
  if (Status s = client().call(method, params, line); !s) {
    // Sent but not answered (no answer in time, or the connection closed
    // after the request): keeld may have applied it, or still will, so
    // this is not "unavailable" and exits 3; a script must look before it
    // repeats or gives up. Not sent (keeld not running, its socket absent
    // or not ours to open): nothing was applied, 69, so that a script can
    // retry later rather than take it for a refusal (1: "no such real").
    const bool sent = client().requestSent();
    // A query changes nothing: said so, rather than "look before
    // repeating it" (which only a change needs).
    const std::string message =
        s.message() + (!sent                          ? ""
                       : api::isChangeMethod(method) ? "; the request was sent, and keeld may have applied it or "
                                                       "still apply it: look (" +
                                                           whereToLook(method) + ") before repeating it"
                                                     : "; the request was sent: a query, which changes nothing, so "
                                                       "it can be repeated (keeld's journal says why it did not "
                                                       "answer)");
    // -o json: an error object here too (no daemon answered), so a script
    // reads one shape whatever failed.
    if (output == "json") printError(json{{"code", sent ? "no_response" : "unavailable"}, {"message", message}});
    std::cerr << "keelctl: " << visibleMessage(message) << "\n";
    exitCode = sent ? kExitNoResponse : kExitUnavailable;
    return std::nullopt;
  }
  const Reply response(std::move(line), method);
  if (response.get("ok").flagOr(false))
    return response.has("result") ? response["result"] : Reply(json::object(), method, "result");
  const Reply err = response.has("error") ? response["error"] : Reply(json::object(), method, "error");
  // Read before anything is printed: an error that is no object is a
  // ReplyError, said once.
  const std::string code = err.get("code").text();
  const Reply details = err.get("details");
  // -o json: the daemon's error as it sent it (code, field, details), for
  // scripts that tell "already exists" from a failure; stderr as always.
  if (output == "json") printError(err.value());
  // Every error of a file or request (config.check, reload, a runtime
  // change), one per line; the message alone names the first "(and N more)".
  if (!details.isObject() || !details.get("errors").isArray() || details["errors"].empty()) {
    const Reply m = err.get("message");
    std::string message = m.isNull() ? "request failed" : m.message();
    const std::string field = err.get("field").message();
    if (const auto flag = flags.find(field); flag != flags.end() && message.rfind(field + ": ", 0) == 0)
      message = flag->second + message.substr(field.size());
    std::cerr << "keelctl: " << message << "\n";
  } else {
    for (const Reply& e : details["errors"].items()) std::cerr << "keelctl: " << e.message() << "\n";
  }
  // busy (every connection taken) and try_later (enough such requests
  // running): keeld did not take the request up, so nothing changed and
  // the same command can be sent again, as when keeld cannot be reached.
  exitCode = code == api::code::kBusy || code == api::code::kTryLater ? kExitUnavailable : kExitRefused;
  return std::nullopt;
}

void Context::fail(int exit, const std::string& message) {
  const char* code = exit == kExitUsage ? "usage" : exit == kExitNoResponse ? "no_response" : "failed";
  if (jsonOutput()) printError(json{{"code", code}, {"message", message}});
  std::cerr << "keelctl: " << visibleMessage(message) << "\n";
  exitCode = exit;
}

int Context::unreadableReply(const std::string& message) {
  if (!api::isChangeMethod(lastMethod_)) {
    fail(kExitRefused, message);
    return kExitRefused;
  }
  fail(kExitNoResponse, message + "; the request was sent, and keeld may have applied it: look (" +
                            whereToLook(lastMethod_) + ") before repeating it");
  return kExitNoResponse;
}

// One line, so `stats --watch -o json` stays one JSON document a line.
void Context::printError(const json& error) const {
  std::cout << jsonText(json{{"error", error}}, -1) << "\n";
}

void Context::printJson(const json& result) const {
  std::cout << jsonText(result, 2) << "\n";
}

json numberOrString(const std::string& text) {
  if (!text.empty() && text.size() <= 18) {
    size_t start = text[0] == '-' ? 1 : 0;
    const std::string_view digits = std::string_view(text).substr(start);
    // "010" and "-0" go as text, so that keeld refuses them as it does in
    // a file (parseDecimal) instead of taking 10 or 0.
    if (!digits.empty() && std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }) &&
        !leadingZero(digits) && !(start == 1 && digits == "0"))
      return json(std::stoll(text));
  }
  return json(text);
}

std::string bareAddress(const std::string& text) {
  if (text.size() > 2 && text.front() == '[' && text.back() == ']' && text.find(']') == text.size() - 1)
    return text.substr(1, text.size() - 2);
  return text;
}

void usageError(const std::string& option, const std::string& why) { throw CLI::ValidationError(option, why); }

void addHealthParam(json& params, const std::string& text) {
  if (text.empty()) return;
  // Parsed here, so a key given twice would reach keeld once (nlohmann keeps
  // the last): refused as keeld refuses one in a request, with its path.
  api::DuplicateKeyFinder duplicates;
  json h = api::parseNotingDuplicates(text, duplicates, /*allowExceptions=*/false);
  if (h.is_discarded()) usageError("--health", "not valid JSON: " + text);  // found before anything is sent
  if (const auto& dup = duplicates.duplicate())
    usageError("--health", *dup + ": duplicate key (each key may appear once in an object)");
  params["health"] = std::move(h);
}

namespace {
std::string hostPort(const std::string& address, const std::string& port) {
  if (address.find(':') != std::string::npos) return "[" + address + "]:" + port;
  return address + ":" + port;
}
}  // namespace

std::string endpoint(const std::string& address, uint64_t port) {
  return hostPort(address, port == 0 ? "*" : std::to_string(port));
}

std::string clientEndpoint(const std::string& address, uint64_t port) {
  return hostPort(address, std::to_string(port));
}

long long secondsSince(const json& when, std::time_t now) {
  if (!when.is_string()) return -1;
  std::tm tm{};
  const std::string s = when.get<std::string>();
  const char* end = ::strptime(s.c_str(), "%Y-%m-%dT%H:%M:%SZ", &tm);
  if (!end || *end) return -1;
  return std::max<long long>(0, now - ::timegm(&tm));
}

std::vector<std::string> restartLines(const Reply& restartNeeded, const Reply& stopStartNeeded) {
  auto keysOf = [](const Reply& list) {
    std::vector<std::string> keys;
    if (list.isArray())
      for (const Reply& k : list.items()) keys.push_back(k.text());
    return keys;
  };
  const std::vector<std::string> stopStart = keysOf(stopStartNeeded);
  std::vector<std::string> restart = keysOf(restartNeeded);
  std::erase_if(restart, [&](const std::string& k) {
    return std::find(stopStart.begin(), stopStart.end(), k) != stopStart.end();
  });
  std::vector<std::string> lines;
  if (!restart.empty())
    lines.push_back("not applied until keeld restarts: " + commaList(restart) + " (the running values are kept)");
  if (!stopStart.empty())
    lines.push_back("not applied until keeld starts a new data plane: " + commaList(stopStart) +
                    " (the running values are kept; a restart leaves the pinned XDP plane in place: keelctl "
                    "daemon stop, then start keeld, which picks every established flow again)");
  return lines;
}

std::string age(long long s) { return ageText(s); }

std::string counted(uint64_t n, const char* one, const char* many) {
  return std::to_string(n) + " " + (n == 1 ? one : many);
}

namespace {
// "ring: 2 reals", "ring: empty" (the data plane holds the empty ring: a
// warning says what that means).
std::string ringText(const Reply& r) {
  if (r.get("published_ring_size").countOr(0) == 0) return "ring: empty";
  return "ring: " + counted(r.get("reals_in_ring").countOr(0), "real", "reals");
}
// "A" or "A -> B" of one key of before/after.
std::string fromTo(const Reply& before, const Reply& after, const char* key) {
  const std::string b = before.get(key).text(), a = after.get(key).text();
  return b == a ? b : b + " -> " + a;
}
}  // namespace

std::string changeLine(const std::string& method, const Reply& r) {
  if (!r.isObject() || !r.has("service")) return "";
  const std::string service = r["service"].text();
  const std::string where =
      endpoint(r.get("vip").text(), r.get("port").countOr(0)) + "/" + upper(r.get("protocol").text());
  const std::string reals = counted(r.get("reals").countOr(0), "real", "reals");
  if (method == "service.add" && r.has("vip"))
    return service + ": added, " + where + " with " + reals + " (" + ringText(r) + ")";
  if (method == "service.remove" && r.has("vip")) return service + ": removed, " + where + " and its " + reals;
  if (!r.has("address") || !r.has("before") || !r.has("after")) return "";
  const std::string address = r["address"].text();
  const std::string head =
      service + " " + (address.find(':') != std::string::npos ? "[" + address + "]" : address) + ": ";
  const Reply b = r["before"];
  const Reply a = r["after"];
  std::string what;
  if (method == "real.add" && a.isObject())
    what = "added, weight " + a.get("weight").text() + ", " + a.get("state").text();
  else if (method == "real.remove" && b.isObject())
    what = "removed (was weight " + b.get("weight").text() + ", " + b.get("state").text() + ")";
  else if (method == "real.set_weight" && a.isObject() && b.isObject())
    what = "weight " + fromTo(b, a, "weight");
  else if ((method == "real.drain" || method == "real.undrain") && a.isObject() && b.isObject())
    what = fromTo(b, a, "state");
  else
    return "";
  return head + what + " (" + ringText(r) + ")";
}

void printChange(const std::string& method, const Reply& result) {
  if (const std::string line = changeLine(method, result); !line.empty()) std::cout << line << "\n";
  printWarnings(result);
}

std::string upper(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

void printWarnings(const Reply& result) {
  if (!result.isObject() || !result.get("warnings").isArray()) return;
  std::string lines;
  for (const Reply& w : result["warnings"].items()) lines += "warning: " + w.message() + "\n";
  std::cerr << lines;
}

std::string countText(const json& v, bool exact) {
  if (!v.is_number_unsigned()) return str(v);
  const uint64_t n = v.get<uint64_t>();
  // ipvsadm's print_largenum(): exact under 100 million, then each unit
  // while the figure stays under 100 of the next one.
  if (exact || n < 100'000'000ULL) return std::to_string(n);
  if (n < 1'000'000'000ULL) return std::to_string(n / 1'000ULL) + "K";
  if (n < 100'000'000'000ULL) return std::to_string(n / 1'000'000ULL) + "M";
  if (n < 100'000'000'000'000ULL) return std::to_string(n / 1'000'000'000ULL) + "G";
  return std::to_string(n / 1'000'000'000'000ULL) + "T";
}

std::string rateText(const json& v, bool exact) {
  if (!v.is_number()) return str(v);
  const double d = v.get<double>();
  if (!exact && d >= 1e8) return countText(json(static_cast<uint64_t>(d)), false);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", d);
  return buf;
}

std::string realState(const Reply& real) {
  std::string s = real.get("state").text();
  // A drained real that also fails its checks: its established flows have
  // moved unless kept (operator review M5: "draining" alone hid it).
  if (s == "draining" && !real.get("healthy").flagOr(true))
    return s + (real.get("kept").flagOr(false) ? ", down, kept" : ", down");
  if (s != "down") return s;
  if (real.get("held").flagOr(false)) return s + ", held";
  if (real.get("kept").flagOr(false)) return s + ", kept";
  return s;
}

std::string truncated(std::string s, size_t max) {
  if (s.size() <= max) return s;
  if (max < 3) return std::string(max, '.');
  size_t cut = max - 3;
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;  // a continuation byte
  s.resize(cut);
  return s + "...";
}

size_t outputWidth() {
  constexpr size_t kDefault = 120;
  const char* env = std::getenv("COLUMNS");
  const std::string c = env ? env : "";
  // Anything but 1..999999 (unset, empty, "abc", "-5", "0") means the default.
  if (c.empty() || c.size() > 6 || !std::all_of(c.begin(), c.end(), [](char x) { return x >= '0' && x <= '9'; }))
    return kDefault;
  const size_t n = std::stoul(c);
  return n > 0 ? n : kDefault;
}

std::string Table::render() const {
  std::vector<size_t> width;
  for (const auto& r : rows_) {
    if (width.size() < r.size()) width.resize(r.size(), 0);
    for (size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], r[i].size());
  }
  // The last column gets what the others and the gaps leave of the width.
  size_t lastMax = SIZE_MAX;
  if (fit_ && !width.empty()) {
    size_t used = 2 * (width.size() - 1);
    for (size_t i = 0; i + 1 < width.size(); ++i) used += width[i];
    lastMax = std::max(fit_->second, used < fit_->first ? fit_->first - used : 0);
    width.back() = std::min(width.back(), lastMax);
  }
  std::string out;
  for (const auto& r : rows_) {
    std::string line;
    for (size_t i = 0; i < r.size(); ++i) {
      bool right = i < right_.size() && right_[i];
      const std::string cell = i + 1 == width.size() ? truncated(r[i], lastMax) : r[i];
      std::string pad(width[i] - cell.size(), ' ');
      if (i) line += "  ";
      line += right ? pad + cell : cell + (i + 1 < r.size() ? pad : "");
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
  }
  return out;
}

}  // namespace keel::cli

// SPDX-License-Identifier: Apache-2.0
// What every keelctl command shares: the socket, the output format, the one
// way to call the daemon and report its errors, and table rendering.
#pragma once

#include <ctime>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "cli/reply.h"
#include "control/api/api_client.h"

namespace keel::cli {

using nlohmann::json;

// keelctl's exit codes (keelctl.8, EXIT STATUS), so that a script (a
// keepalived notify script) can tell "retry later" from "no such real".
inline constexpr int kExitOk = 0;
inline constexpr int kExitRefused = 1;  // keeld refused the request, or keelctl failed (a file)
inline constexpr int kExitUsage = 2;    // keelctl's own argument checks, before anything is sent
// Sent, and not answered, or answered unreadably (a change's): keeld may
// have applied it.
inline constexpr int kExitNoResponse = 3;
// No request reached keeld (no socket, nobody listening, no permission):
// nothing was applied. sysexits.h's EX_UNAVAILABLE.
inline constexpr int kExitUnavailable = 69;

struct Context {
  std::string socketPath = api::kDefaultSocketPath;
  std::string output = "table";  // table | json
  // How long a call waits for keeld's answer (--timeout, KEELCTL_TIMEOUT;
  // 0.1..3600): a wedged keeld must not hold a keepalived notify script for
  // a minute. Past it the call fails as sent but not answered (exit 3).
  double timeoutSeconds = 60;
  int exitCode = 0;
  // --exact: tables print counts whole (ipvsadm's --exact); by default one
  // of 100,000,000 or more is cut to K, M, G or T (countText()).
  bool exact = false;

  bool jsonOutput() const { return output == "json"; }

  // Calls `method`; on success returns the result, read through Reply (an
  // answer of a shape keelctl does not read, its envelope too, is a
  // ReplyError: reply.h). Otherwise prints
  // "keelctl: <message>" (and any detail lines) to stderr, sets exitCode and
  // returns nullopt: kExitRefused for a daemon error, kExitUnavailable when
  // the request never reached keeld, kExitNoResponse when it was sent but
  // not answered. flags: the command's option for a request field
  // ("params.detach" -> "--keep-forwarding"): an error at that field is
  // printed naming the option the operator typed, not the API's field
  // (-o json keeps the daemon's error as sent).
  std::optional<Reply> call(const std::string& method, const json& params = json::object(),
                            const std::map<std::string, std::string>& flags = {});

  // -o json: the raw result, pretty-printed (jsonText()). Every command
  // prints it.
  void printJson(const json& result) const;
  // -o json's {"error": ERROR} on stdout, on one line.
  void printError(const json& error) const;
  // An error keelctl finds itself, before or instead of a call: "keelctl:
  // MESSAGE" on stderr, and with -o json {"error": {"code": "usage" (exit
  // 2), "no_response" (exit 3) or "failed" (exit 1), "message"}} on stdout,
  // so a script reads one shape whatever failed. Sets exitCode. A bad value
  // of a verb's own option is usageError()'s instead.
  void fail(int exit, const std::string& message);
  // An answer keelctl could not read (`message`: a ReplyError's, naming
  // the member), to the last call(): said as fail() does, and returns the
  // exit status. For a change (api::isChangeMethod) that is
  // kExitNoResponse, with where to look before repeating it: keeld may
  // have applied it (an answer with ok true did), and 1 would tell a
  // script it refused it and nothing changed. For a query, kExitRefused.
  int unreadableReply(const std::string& message);

  api::ApiClient& client();

 private:
  std::optional<api::ApiClient> client_;
  std::string lastMethod_;  // the last call()'s
};

// A value a verb checks itself before sending anything is wrong (--client
// that is no ADDR:PORT): thrown as CLI11's own usage errors are, so main()
// says it the same way, with the command it is about and the --help line
// ("keelctl lookup: --client: must be ...", exit 2; -o json: code "usage").
// Only from a verb's callback, which CLI11 runs inside parse().
[[noreturn]] void usageError(const std::string& option, const std::string& why);

// One noun of the command table (xdp-tools style): defines its verbs.
struct Noun {
  const char* name;
  const char* help;
  void (*define)(CLI::App& noun, Context& ctx);
};

void defineService(CLI::App&, Context&);
void defineReal(CLI::App&, Context&);
void defineHealth(CLI::App&, Context&);
void defineStats(CLI::App&, Context&);
void defineLookup(CLI::App&, Context&);
void defineConns(CLI::App&, Context&);
void defineConfig(CLI::App&, Context&);
void defineDaemon(CLI::App&, Context&);

// The daemon is the one validator: a CLI argument that looks like an integer
// is sent as one, anything else as a string, and the daemon says what is
// wrong ("params.weight: must be an integer 0..65535, got \"ten\"").
json numberOrString(const std::string& text);

// An address argument as the daemon takes it: "[2001:db8::5]", the form
// --real and lookup --client write IPv6 in, is 2001:db8::5. Anything else is
// sent as given (the daemon says what is wrong with it).
std::string bareAddress(const std::string& text);

// --health TEXT (a JSON object) into params["health"]; nothing when TEXT is
// empty. Not JSON at all, or a key twice: a usageError(). What the object
// holds is the daemon's to check.
void addHealthParam(json& params, const std::string& text);

// "10.0.0.1:80", "[2001:db8::1]:80", port 0 shown as "*".
std::string endpoint(const std::string& address, uint64_t port);
// A client's ADDRESS:PORT: its port 0 is port 0, not "every port".
std::string clientEndpoint(const std::string& address, uint64_t port);

// Aligned columns; numeric columns right-aligned.
class Table {
 public:
  explicit Table(std::vector<bool> rightAligned) : right_(std::move(rightAligned)) {}
  void row(std::vector<std::string> cells) { rows_.push_back(std::move(cells)); }
  // Keep lines within `width`: the last column gets what the others leave,
  // but never less than `minWidth` (then a line may run over rather than
  // lose the column), and a longer cell is cut with truncated(). Cut, not
  // wrapped: one line per row stays greppable (`keelctl health show | grep
  // down`) and under its header; -o json has the whole text.
  void fitLastColumn(size_t width, size_t minWidth) { fit_ = {width, minWidth}; }
  std::string render() const;

 private:
  std::vector<bool> right_;
  std::vector<std::vector<std::string>> rows_;
  std::optional<std::pair<size_t, size_t>> fit_;  // width, minWidth
};

// `s` cut to at most `max` bytes, ending in ASCII "..." when cut (so a
// column keeps its width), never inside a UTF-8 sequence.
std::string truncated(std::string s, size_t max);

// The width tables fit (Table::fitLastColumn): $COLUMNS when it is a
// positive number (POSIX's "preferred width"), else 120.
size_t outputWidth();

// A packet, byte or flow count for a table, as ipvsadm prints one: whole
// below 100,000,000 (or when `exact`), else in thousands (K), millions (M),
// billions (G) or trillions (T), rounded down, so a column of a busy
// balancer's byte counts stays readable. Not a number: str().
std::string countText(const json& v, bool exact);
// A per-second rate the same way: one decimal below 100,000,000.
std::string rateText(const json& v, bool exact);
// A real's state as the tables show it: the API's state, and for a down
// real that still gets traffic why: "down, held" (fail-open keeps it in the
// ring) or "down, kept" (its established flows stay with it).
std::string realState(const Reply& real);
// A result's "warnings" (what keeld accepted but will not do yet, e.g. an
// l2dsr real held down until its MAC is found), one "warning: ..." line
// each on stderr.
void printWarnings(const Reply& result);
std::string upper(std::string s);  // ASCII upper case ("tcp" -> "TCP")
// What a change did, in one line, from its result (service.add/remove,
// real.*: docs/api.md): "web 10.0.1.12: weight 100 -> 0 (ring: 1 real)".
// Empty for a result without those keys (an older keeld's {}).
std::string changeLine(const std::string& method, const Reply& result);
// A change's table output: its changeLine on stdout (a change that printed
// nothing hid one that emptied the ring), then its warnings, what may not
// have been meant, on stderr (printWarnings).
void printChange(const std::string& method, const Reply& result);
// "1 service", "2 services": N and the word for it.
std::string counted(uint64_t n, const char* one, const char* many);
// What keeld could not apply without a restart, from a reply's
// restart_needed and stop_start_needed (config.reload, daemon.status): a
// line for the keys a restart applies, one for those only a new data plane
// does (a pinned XDP plane outlives a restart), each naming its keys once;
// none when there are none. `config reload` prints them as warnings,
// `daemon status` under the config.
std::vector<std::string> restartLines(const Reply& restartNeeded, const Reply& stopStartNeeded);
// A time span in seconds: "45s", "4m12s", "3h05m", "2d04h", two units at
// most, like `ps` etimes; "-" for a negative (unknown) one (ageText in
// common/text.h, which keeld's warnings use too).
std::string age(long long seconds);
// Seconds from an RFC 3339 UTC time as the API writes it to `now` (at
// least 0), or -1 if `when` is not one (null: unknown).
long long secondsSince(const json& when, std::time_t now);

}  // namespace keel::cli

// SPDX-License-Identifier: Apache-2.0
// One request line in, one response out: envelope checks, method table,
// params parsing (requests.h), existence checks against the backend's
// snapshot, then at most one backend call. No sockets here, so the whole
// protocol is testable without I/O; ApiServer only frames lines.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>
#include <string_view>

#include <nlohmann/json.hpp>

#include "control/api/control_backend.h"

namespace keel::api {

struct DispatchOutcome {
  DispatchOutcome() = default;
  DispatchOutcome(nlohmann::json r, std::optional<bool> detach = std::nullopt)
      : response(std::move(r)), shutdownDetach(detach) {}

  nlohmann::json response;
  // Set by a successful daemon.shutdown: the server calls
  // backend.shutdown(detach) once the response is written.
  std::optional<bool> shutdownDetach;
  // Set, instead of `response`, by a request whose answer comes later
  // (conn.list: keeld walks the connection table off its loop): the server
  // calls it once, with the function that sends the response, which it
  // calls exactly once, possibly before it returns, and on any thread
  // (ControlBackend::connList): Send must be callable from any thread (the
  // server posts the write to its loop). Meanwhile that connection reads no
  // further request, so answers keep the order of the requests.
  using Send = std::function<void(nlohmann::json response)>;
  std::function<void(Send)> later;
  // The request's method once the envelope named one (known or not), for
  // the server's audit log of changes (Dispatcher::changes); else empty.
  std::string method;
};

class Dispatcher {
 public:
  // readOnly: only the methods that change nothing are served; the others
  // get `forbidden` without reaching the backend (the read-only socket).
  explicit Dispatcher(ControlBackend& backend, bool readOnly = false) : backend_(backend), readOnly_(readOnly) {}

  // Never throws; whatever the line holds, the outcome is a response, or
  // for conn.list one to come (DispatchOutcome::later), which never throws
  // either.
  DispatchOutcome handleLine(std::string_view line);

  static nlohmann::json errorResponse(const nlohmann::json& id, const ApiError& error);
  static nlohmann::json okResponse(const nlohmann::json& id, nlohmann::json result);
  // Every method the protocol has (docs/api.md), the list unknown_method
  // gives back.
  static const std::vector<std::string>& methods();
  // Whether a method can change keeld's state (service.add, real.drain,
  // config.reload, daemon.shutdown, ...): logged with the caller by the
  // server. isChangeMethod() of methods.h, which keelctl uses too.
  static bool changes(const std::string& method);
  // The methods a read-only socket serves (queries; not config.check); it
  // answers every other one with `forbidden`.
  static const std::vector<std::string>& readOnlyMethods();

 private:
  DispatchOutcome dispatch(const nlohmann::json& id, const std::string& method,
                           const nlohmann::json& params);
  ControlBackend& backend_;
  bool readOnly_;
};

// One response line: compact JSON plus '\n'. Invalid UTF-8 (echoed from a
// request) is replaced, never thrown on.
std::string serializeResponse(const nlohmann::json& response);

// JSON forms of the snapshots (docs/api.md "Results").
nlohmann::json toJson(const ServiceSnapshot& service);
nlohmann::json healthJson(const ServiceSnapshot& service);
nlohmann::json statsJson(const ServiceSnapshot& service);
nlohmann::json statusJson(const DaemonStatus& status);

}  // namespace keel::api

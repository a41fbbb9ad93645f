// SPDX-License-Identifier: Apache-2.0
// A blocking client for the control socket: one request, one response line.
// Plain POSIX (no Asio) so keelctl stays small; used by tests too. Each
// call() is bounded by the timeout as a whole: connecting (a keeld whose
// backlog is full), sending (a keeld that reads nothing) and waiting for the
// answer share one deadline.
#pragma once

#include <chrono>
#include <string>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace keel::api {

inline constexpr const char* kDefaultSocketPath = "/run/keel/keel.sock";

class ApiClient {
 public:
  explicit ApiClient(std::string socketPath,
                     std::chrono::milliseconds timeout = std::chrono::seconds(60))
      : path_(std::move(socketPath)), timeout_(timeout) {}
  ~ApiClient();
  ApiClient(const ApiClient&) = delete;
  ApiClient& operator=(const ApiClient&) = delete;

  // Connects lazily on the first call, by `deadline`. The error names the
  // socket and says whether the daemon looks absent ("is keeld running?").
  Status connect(std::chrono::steady_clock::time_point deadline);

  // Sends {"id", "method", "params"} and reads the matching response into
  // `response` (the whole {"id","ok",...} object). A transport failure is a
  // Status error, and so is a response that is no such object, answers
  // another request or nests deeper than kMaxJsonDepth (refused
  // unparsed); a daemon error is a response with ok=false. What the
  // object holds is the caller's to check.
  Status call(const std::string& method, const nlohmann::json& params, nlohmann::json& response);
  // Whether the last call() got its request out before it failed: then
  // keeld may have applied it, or still will (no answer in time, or the
  // connection closed after the request).
  bool requestSent() const { return sent_; }

  void close();

 private:
  using Deadline = std::chrono::steady_clock::time_point;
  // Sends data by the deadline; `sent` says how many bytes went out.
  Status sendAll(const std::string& data, Deadline deadline, size_t& sent);
  Status readLine(std::string& line, Deadline deadline);
  // "within 1.5 s": the timeout as the messages say it.
  std::string within() const;

  std::string path_;
  std::chrono::milliseconds timeout_;
  int fd_ = -1;
  long nextId_ = 1;
  bool sent_ = false;
  std::string buffer_;
};

}  // namespace keel::api

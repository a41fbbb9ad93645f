// SPDX-License-Identifier: Apache-2.0
// A blocking client for the control socket: one request, one response line.
// Plain POSIX (no Asio) so keelctl stays small; used by tests too.
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

  // Connects lazily on the first call. The error names the socket and says
  // whether the daemon looks absent ("is keeld running?").
  Status connect();

  // Sends {"id", "method", "params"} and reads the matching response into
  // `response` (the whole {"id","ok",...} object). A transport failure is a
  // Status error; a daemon error is a response with ok=false.
  Status call(const std::string& method, const nlohmann::json& params, nlohmann::json& response);
  // Whether the last call() got its request out before it failed: then
  // keeld may have applied it, or still will (no answer in time, or the
  // connection closed after the request).
  bool requestSent() const { return sent_; }

  void close();

 private:
  Status sendAll(const std::string& data);
  Status readLine(std::string& line);

  std::string path_;
  std::chrono::milliseconds timeout_;
  int fd_ = -1;
  long nextId_ = 1;
  bool sent_ = false;
  std::string buffer_;
};

}  // namespace keel::api

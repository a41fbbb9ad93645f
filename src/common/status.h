// SPDX-License-Identifier: Apache-2.0
// Result of a control-plane operation: ok, or a message that says what was
// wrong and where. No exceptions cross the Dataplane interface.
#pragma once

#include <cstring>
#include <string>
#include <utility>

namespace keel {

// strerror() text for an errno value; libbpf's negative returns work too.
inline std::string errnoText(int err) { return std::strerror(err < 0 ? -err : err); }

class [[nodiscard]] Status {
 public:
  Status() = default;
  static Status ok() { return Status(); }
  static Status error(std::string message) { return Status(std::move(message)); }
  bool isOk() const { return !failed_; }
  explicit operator bool() const { return isOk(); }
  const std::string& message() const { return message_; }

 private:
  explicit Status(std::string m) : failed_(true), message_(std::move(m)) {}
  bool failed_ = false;
  std::string message_;
};

}  // namespace keel

// SPDX-License-Identifier: Apache-2.0
// Logging: spdlog underneath, one record per line as key=value pairs so logs
// grep and parse without a schema (`event=service_added service=web ...`).
// Every record starts with event=NAME; values with spaces or quotes are
// quoted. Not for the packet path (the data planes never log per packet).
#pragma once

#include <sstream>
#include <string>
#include <string_view>

#include "common/status.h"

namespace keel {

// level: trace|debug|info|warn|error|off. Timestamps are UTC (RFC 3339).
Status setupLogging(std::string_view level);

enum class LogLevel { kTrace, kDebug, kInfo, kWarn, kError };

class LogRecord {
 public:
  explicit LogRecord(std::string_view event) { add("event", event); }

  template <typename T>
  LogRecord& add(std::string_view key, const T& value) {
    std::ostringstream os;
    os << value;
    appendPair(key, os.str());
    return *this;
  }
  LogRecord& add(std::string_view key, std::string_view value) {
    appendPair(key, value);
    return *this;
  }
  LogRecord& add(std::string_view key, const std::string& value) {
    appendPair(key, value);
    return *this;
  }
  LogRecord& add(std::string_view key, const char* value) {
    appendPair(key, value);
    return *this;
  }
  LogRecord& add(std::string_view key, bool value) {
    appendPair(key, value ? "true" : "false");
    return *this;
  }

  const std::string& str() const { return text_; }

 private:
  void appendPair(std::string_view key, std::string_view value);
  std::string text_;
};

// Quotes a value if it is empty or holds a space, quote, '=' or control char.
std::string logQuote(std::string_view value);

void logRecord(LogLevel level, const LogRecord& record);
inline void logInfo(const LogRecord& r) { logRecord(LogLevel::kInfo, r); }
inline void logWarn(const LogRecord& r) { logRecord(LogLevel::kWarn, r); }
inline void logError(const LogRecord& r) { logRecord(LogLevel::kError, r); }
inline void logDebug(const LogRecord& r) { logRecord(LogLevel::kDebug, r); }

}  // namespace keel

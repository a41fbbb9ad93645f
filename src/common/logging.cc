// SPDX-License-Identifier: Apache-2.0
#include "common/logging.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

namespace keel {

Status setupLogging(std::string_view level) {
  auto lvl = spdlog::level::from_str(std::string(level));
  // from_str maps unknown names to "off"; only accept "off" when asked for.
  if (lvl == spdlog::level::off && level != "off") {
    return Status::error("must be one of trace|debug|info|warn|error|off, got \"" +
                         std::string(level) + "\"");
  }
  // stderr, unbuffered per record: systemd's journal and test harnesses read
  // it line by line, and a record must not sit in a buffer when we crash.
  auto logger = spdlog::get("keel");
  if (!logger) logger = spdlog::stderr_logger_mt("keel");
  logger->set_formatter(std::make_unique<spdlog::pattern_formatter>(
      "ts=%Y-%m-%dT%H:%M:%S.%eZ level=%l %v", spdlog::pattern_time_type::utc));
  logger->set_level(lvl);
  logger->flush_on(spdlog::level::trace);
  spdlog::set_default_logger(logger);
  return Status::ok();
}

std::string logQuote(std::string_view value) {
  bool needs = value.empty();
  for (char c : value) {
    if (c == ' ' || c == '"' || c == '=' || c == '\\' || static_cast<unsigned char>(c) < 0x20) {
      needs = true;
      break;
    }
  }
  if (!needs) return std::string(value);
  std::string out = "\"";
  for (char c : value) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += ' ';
    } else {
      out += c;
    }
  }
  out += '"';
  return out;
}

void LogRecord::appendPair(std::string_view key, std::string_view value) {
  if (!text_.empty()) text_ += ' ';
  text_ += key;
  text_ += '=';
  text_ += logQuote(value);
}

void logRecord(LogLevel level, const LogRecord& record) {
  switch (level) {
    case LogLevel::kTrace: spdlog::trace("{}", record.str()); break;
    case LogLevel::kDebug: spdlog::debug("{}", record.str()); break;
    case LogLevel::kInfo: spdlog::info("{}", record.str()); break;
    case LogLevel::kWarn: spdlog::warn("{}", record.str()); break;
    case LogLevel::kError: spdlog::error("{}", record.str()); break;
  }
}

}  // namespace keel

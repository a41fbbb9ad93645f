// SPDX-License-Identifier: Apache-2.0
// LogCapture: what the code under test logs, for tests that check an event
// was (or was not) logged.
#pragma once

#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace keel::test {

// Captures what is logged through spdlog's default logger (what keeld's
// setupLogging installs) as "LEVEL RECORD" lines, and puts the previous
// logger back.
class LogCapture {
 public:
  LogCapture() : previous_(spdlog::default_logger()) {
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out_);
    sink->set_pattern("%l %v");
    auto logger = std::make_shared<spdlog::logger>("keel_test_capture", sink);
    logger->set_level(spdlog::level::trace);
    spdlog::set_default_logger(logger);
  }
  ~LogCapture() { spdlog::set_default_logger(previous_); }
  // The lines logged since the last take() that hold `event=NAME `.
  std::vector<std::string> take(const std::string& event) {
    std::vector<std::string> found;
    std::istringstream in(std::exchange(out_, std::ostringstream{}).str());
    for (std::string line; std::getline(in, line);)
      if (line.find("event=" + event + " ") != std::string::npos) found.push_back(line);
    return found;
  }

 private:
  std::shared_ptr<spdlog::logger> previous_;
  std::ostringstream out_;
};

}  // namespace keel::test

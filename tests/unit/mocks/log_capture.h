// SPDX-License-Identifier: Apache-2.0
// LogCapture: what the code under test logs, for tests that check an event
// was (or was not) logged.
#pragma once

#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace keel::test {

// Captures what is logged through spdlog's default logger (what keeld's
// setupLogging installs) as "LEVEL RECORD" lines, and puts the previous
// logger back. Code under test may log from its own threads (the conn.list
// walk, the health checker): the sink keeps the lines under the mutex
// spdlog's base_sink takes around every write, and take() takes it too.
class LogCapture {
 public:
  LogCapture() : previous_(spdlog::default_logger()), sink_(std::make_shared<Sink>()) {
    sink_->set_pattern("%l %v");
    auto logger = std::make_shared<spdlog::logger>("keel_test_capture", sink_);
    logger->set_level(spdlog::level::trace);
    spdlog::set_default_logger(logger);
  }
  ~LogCapture() { spdlog::set_default_logger(previous_); }
  // The lines logged so far that hold `event=NAME `, taken: a later take()
  // of the same event sees only newer ones. Lines of other events stay for
  // their own take() (it used to drop them, so a take() of another event
  // after it always found nothing and its EXPECT_TRUE(...empty()) passed
  // whatever was logged).
  std::vector<std::string> take(const std::string& event) {
    return sink_->takeMatching("event=" + event + " ");
  }

 private:
  class Sink : public spdlog::sinks::base_sink<std::mutex> {
   public:
    std::vector<std::string> takeMatching(const std::string& needle) {
      std::lock_guard<std::mutex> lock(mutex_);
      std::vector<std::string> found, rest;
      for (std::string& line : lines_)
        (line.find(needle) != std::string::npos ? found : rest).push_back(std::move(line));
      lines_ = std::move(rest);
      return found;
    }

   protected:
    void sink_it_(const spdlog::details::log_msg& msg) override {  // under mutex_
      spdlog::memory_buf_t out;
      formatter_->format(msg, out);
      std::string line(out.data(), out.size());
      while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
      lines_.push_back(std::move(line));
    }
    void flush_() override {}

   private:
    std::vector<std::string> lines_;
  };

  std::shared_ptr<spdlog::logger> previous_;
  std::shared_ptr<Sink> sink_;
};

}  // namespace keel::test

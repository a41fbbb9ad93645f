// SPDX-License-Identifier: Apache-2.0
// An ApiServer over a FakeBackend on a socket in a fresh temp dir, its
// io_context on a background thread (as in keeld: one loop thread). The
// fake is only touched on that thread: tests read it through onLoop().
#pragma once

#include <gtest/gtest.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "control/api/api_server.h"
#include "fake_backend.h"

namespace keel::api::testing {

// A raw Unix-socket client with bounded waits; never throws.
class RawClient {
 public:
  explicit RawClient(const std::string& path) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  }
  ~RawClient() { close(); }
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;

  bool connected() const { return connected_; }
  int fd() const { return fd_; }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  // False if the peer is gone (EPIPE/ECONNRESET): expected in some tests.
  bool send(std::string_view data) {
    size_t off = 0;
    while (off < data.size()) {
      ssize_t n = ::send(fd_, data.data() + off, data.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return false;
      off += static_cast<size_t>(n);
    }
    return true;
  }
  // One response line, or nullopt on EOF/error/timeout.
  std::optional<std::string> readLine(std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      if (auto nl = buf_.find('\n'); nl != std::string::npos) {
        std::string line = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        return line;
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return std::nullopt;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      char tmp[65536];
      ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
      if (n <= 0) return std::nullopt;
      buf_.append(tmp, static_cast<size_t>(n));
    }
  }
  nlohmann::json request(const std::string& line) {
    if (!send(line + "\n")) return nullptr;
    auto r = readLine();
    return r ? nlohmann::json::parse(*r, nullptr, false) : nlohmann::json(nullptr);
  }
  // Every byte up to the end of the stream (what readLine() had buffered
  // first); nullopt if the stream did not end within the bound.
  std::optional<std::string> readToEnd(std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    std::string out = std::exchange(buf_, std::string());
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      char tmp[65536];
      ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
      if (n <= 0) return out;
      out.append(tmp, static_cast<size_t>(n));
    }
    return std::nullopt;
  }
  // True once the server has closed the connection (within the bound).
  bool waitClosed(std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    return readToEnd(timeout).has_value();
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
  std::string buf_;
};

class ServerFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/keel-api-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    options_.socketPath = dir_ + "/keel.sock";
    fake_.services.push_back(FakeBackend::makeService("web", "10.0.0.1", 80, {"10.0.0.5", "10.0.0.6"}, 2000));
    fake_.services.push_back(FakeBackend::makeService("v6", "2001:db8::1", 443, {"2001:db8::5"}, 1000));
    fake_.stats.dataplane = "mock";
  }

  // Tests adjust options_ / fake_ first, then start.
  void startServer() {
    server_ = std::make_unique<ApiServer>(io_, fake_, options_);
    Status s = server_->start();
    ASSERT_TRUE(s.isOk()) << s.message();
    thread_ = std::thread([this] { io_.run(); });
  }

  void TearDown() override {
    if (thread_.joinable()) {
      onLoop([this] {
        server_->stop();
        return 0;
      });
      work_.reset();
      io_.stop();
      thread_.join();
    }
    server_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  template <typename F>
  auto onLoop(F f) -> decltype(f()) {
    if (!thread_.joinable()) return f();  // loop not running yet: nothing races
    std::promise<decltype(f())> p;
    auto fut = p.get_future();
    boost::asio::post(io_, [&] { p.set_value(f()); });
    // Bounded: a stuck loop fails the test instead of hanging it.
    if (fut.wait_for(std::chrono::seconds(30)) != std::future_status::ready) {
      ADD_FAILURE() << "io_context loop did not run the task within 30 s";
      std::abort();
    }
    return fut.get();
  }

  // Polls `pred` on the loop until true, at most ~10 s.
  template <typename F>
  bool eventually(F pred) {
    for (int i = 0; i < 1000; ++i) {
      if (onLoop(pred)) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }

  std::string dir_;
  ApiServerOptions options_;
  FakeBackend fake_;
  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_ =
      boost::asio::make_work_guard(io_);
  std::unique_ptr<ApiServer> server_;
  std::thread thread_;
};

}  // namespace keel::api::testing

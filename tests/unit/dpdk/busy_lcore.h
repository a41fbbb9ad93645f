// SPDX-License-Identifier: Apache-2.0
// Runs a function of the test's own on an EAL lcore while it lives, so that
// a plane's start() cannot launch its worker there: rte_eal_remote_launch()
// refuses a busy lcore, a real way for a start to fail (another DPDK user of
// the lcore). EAL must already run.
#pragma once

#include <gtest/gtest.h>
#include <rte_launch.h>
#include <rte_pause.h>

#include <atomic>

namespace keel::dpdk::test {

class BusyLcore {
 public:
  explicit BusyLcore(unsigned lcore) : lcore_(lcore) {
    launched_ = rte_eal_remote_launch(&spin, &release_, lcore_) == 0;
    EXPECT_TRUE(launched_) << "lcore " << lcore_ << " was not free for the test";
  }
  ~BusyLcore() {
    release_.store(true);
    if (launched_) rte_eal_wait_lcore(lcore_);
  }
  BusyLcore(const BusyLcore&) = delete;
  BusyLcore& operator=(const BusyLcore&) = delete;

 private:
  static int spin(void* arg) {
    while (!static_cast<std::atomic<bool>*>(arg)->load()) rte_pause();
    return 0;
  }
  unsigned lcore_;
  std::atomic<bool> release_{false};
  bool launched_ = false;
};

}  // namespace keel::dpdk::test

// SPDX-License-Identifier: Apache-2.0
// readHugepages() over a fake /sys and /proc, and hugepageProblem(): when
// EAL 22.11 would find no hugepages to use.
#include "common/hugepages.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

namespace keel {
namespace {

namespace fs = std::filesystem;

class HugepagesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/keel-hugepages-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    fs::create_directories(root_ / "proc");
    write("proc/meminfo", "MemTotal:       24000000 kB\nHugepagesize:       2048 kB\n");
    write("proc/mounts", "proc /proc proc rw 0 0\n");
    size("hugepages-2048kB", 0, 0, 0);
    size("hugepages-1048576kB", 0, 0, 0);
  }
  void TearDown() override { fs::remove_all(root_); }

  void write(const std::string& file, const std::string& text) { std::ofstream(root_ / file) << text; }
  void size(const std::string& dir, int reserved, int free, int resv) {
    fs::create_directories(root_ / "sys/kernel/mm/hugepages" / dir);
    write("sys/kernel/mm/hugepages/" + dir + "/nr_hugepages", std::to_string(reserved) + "\n");
    write("sys/kernel/mm/hugepages/" + dir + "/free_hugepages", std::to_string(free) + "\n");
    write("sys/kernel/mm/hugepages/" + dir + "/resv_hugepages", std::to_string(resv) + "\n");
    write("sys/kernel/mm/hugepages/" + dir + "/nr_overcommit_hugepages", "0\n");
    write("sys/kernel/mm/hugepages/" + dir + "/surplus_hugepages", "0\n");
  }
  std::vector<HugepageSize> read() const { return readHugepages(root_.string()); }

  fs::path root_;
};

TEST_F(HugepagesTest, ReadsEachSizeWithItsMount) {
  size("hugepages-2048kB", 512, 500, 10);
  write("proc/mounts",
        "hugetlbfs /dev/hugepages hugetlbfs rw,relatime,pagesize=2M 0 0\n"
        "none /mnt/huge1g hugetlbfs rw,pagesize=1024M 0 0\n");
  const std::vector<HugepageSize> s = read();
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0].bytes, 2u << 20);
  EXPECT_EQ(s[0].reserved, 512u);
  EXPECT_EQ(s[0].available, 490u) << "free less reserved-for-mappings, as EAL counts";
  EXPECT_EQ(s[0].mount, "/dev/hugepages");
  EXPECT_EQ(s[1].bytes, 1u << 30);
  EXPECT_EQ(s[1].mount, "/mnt/huge1g");
  // A mount without pagesize= is of the default size.
  write("proc/mounts", "hugetlbfs /dev/hugepages hugetlbfs rw,relatime 0 0\n");
  EXPECT_EQ(read()[0].mount, "/dev/hugepages");
  EXPECT_EQ(read()[1].mount, "");
}

TEST_F(HugepagesTest, NoneReservedIsAProblemUnlessEalRunsWithout) {
  const std::vector<std::string> args = {"-l", "0-1", "--file-prefix", "keel"};
  const std::string why = hugepageProblem(args, read(), false);
  EXPECT_NE(why.find("EAL would find no hugepages to use: none are reserved"), std::string::npos) << why;
  EXPECT_EQ(hugepageProblem({"--no-huge", "-m", "512"}, read(), false), "");
  EXPECT_EQ(hugepageProblem({"--no-hu", "-m", "512"}, read(), false), "") << "getopt_long's abbreviation";
  EXPECT_NE(hugepageProblem({"--in-memory"}, read(), false), "") << "in memory, still on hugepages";
}

TEST_F(HugepagesTest, ReservedPagesNeedAMountOfTheirSizeUnlessInMemory) {
  size("hugepages-2048kB", 64, 64, 0);
  write("proc/mounts", "none /mnt/huge1g hugetlbfs rw,pagesize=1G 0 0\n");
  const std::string why = hugepageProblem({}, read(), false);
  EXPECT_NE(why.find("pages are reserved (64 of 2 MiB) but no hugetlbfs is mounted for their size"), std::string::npos)
      << why;
  EXPECT_EQ(hugepageProblem({"--in-memory"}, read(), false), "");
  write("proc/mounts", "hugetlbfs /dev/hugepages hugetlbfs rw,pagesize=2M 0 0\n");
  EXPECT_EQ(hugepageProblem({}, read(), false), "");
}

// A config check counts the pages reserved (a running keeld may hold them
// all); a start that failed counts those free.
TEST_F(HugepagesTest, PagesInUseCountForACheckNotForAFailedStart) {
  size("hugepages-2048kB", 64, 0, 0);
  write("proc/mounts", "hugetlbfs /dev/hugepages hugetlbfs rw,pagesize=2M 0 0\n");
  EXPECT_EQ(hugepageProblem({}, read(), false), "");
  const std::string why = hugepageProblem({}, read(), true);
  EXPECT_NE(why.find("every reserved page is in use (64 of 2 MiB reserved, none free)"), std::string::npos) << why;
}

// What EAL can hand out: -m under --no-huge (64 MB without it), else the
// pages reserved of the usable sizes; nothing said where the kernel may add
// surplus pages or the arguments bound it otherwise.
// Pages the kernel adds on demand (nr_overcommit_hugepages) are pages EAL
// finds, reserved or not.
TEST_F(HugepagesTest, OvercommitPagesCount) {
  write("proc/mounts", "hugetlbfs /dev/hugepages hugetlbfs rw,pagesize=2M 0 0\n");
  write("sys/kernel/mm/hugepages/hugepages-2048kB/nr_overcommit_hugepages", "256\n");
  EXPECT_EQ(hugepageProblem({}, read(), false), "");
}

TEST_F(HugepagesTest, EalMemoryLimit) {
  std::string what;
  EXPECT_EQ(ealMemoryLimit({"--no-huge", "-m", "256"}, read(), &what), uint64_t{256} << 20);
  EXPECT_EQ(what, "-m 256 under --no-huge");
  EXPECT_EQ(ealMemoryLimit({"--no-huge"}, read(), &what), uint64_t{64} << 20);
  EXPECT_EQ(what, "EAL's default of 64 MB under --no-huge");
  EXPECT_EQ(ealMemoryLimit({"--no-huge", "-m512"}, read(), nullptr), std::nullopt);
  EXPECT_EQ(ealMemoryLimit({"--no-huge", "-m", "0"}, read(), nullptr), uint64_t{64} << 20) << "0: EAL's default";
  EXPECT_EQ(ealMemoryLimit({}, read(), nullptr), std::nullopt) << "no pages: hugepageProblem's";
  size("hugepages-2048kB", 512, 512, 0);
  write("proc/mounts", "hugetlbfs /dev/hugepages hugetlbfs rw,pagesize=2M 0 0\n");
  EXPECT_EQ(ealMemoryLimit({"-m", "64"}, read(), &what), uint64_t{1} << 30) << "-m preallocates; EAL grows past it";
  EXPECT_EQ(what, "the hugepages reserved, 1024 MiB");
  EXPECT_EQ(ealMemoryLimit({"--socket-mem", "64"}, read(), nullptr), std::nullopt);
  write("sys/kernel/mm/hugepages/hugepages-2048kB/nr_overcommit_hugepages", "100\n");
  EXPECT_EQ(ealMemoryLimit({}, read(), nullptr), std::nullopt) << "surplus pages on demand";
}

TEST_F(HugepagesTest, AKernelWithoutHugepagesHasNoSizes) {
  fs::remove_all(root_ / "sys");
  EXPECT_TRUE(read().empty());
  EXPECT_NE(hugepageProblem({}, read(), false), "");
}

}  // namespace
}  // namespace keel

// SPDX-License-Identifier: Apache-2.0
#include "common/file_write.h"

#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include <gtest/gtest.h>

namespace keel {
namespace {

mode_t modeOf(const std::string& path) {
  struct stat st{};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return st.st_mode & 07777;
}

// Directories makeDirectories() makes get the mode asked for even under
// keeld.service's UMask=0077 (a control socket's new directory at 0700
// would shut out the group its socket is for); one that exists keeps its
// own.
TEST(FileWriteTest, MadeDirectoriesHaveTheModeAskedForWhateverTheUmask) {
  char tmpl[] = "/tmp/keel-mkdirs-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string base = tmpl;
  ASSERT_EQ(::chmod(base.c_str(), 0700), 0);
  const mode_t old = ::umask(0077);
  const Status s = makeDirectories(base + "/a/b", 0755);
  ::umask(old);
  EXPECT_TRUE(s.isOk()) << s.message();
  EXPECT_EQ(modeOf(base + "/a"), 0755u);
  EXPECT_EQ(modeOf(base + "/a/b"), 0755u);
  EXPECT_EQ(modeOf(base), 0700u) << "an existing directory was changed";
  std::filesystem::remove_all(base);
}

}  // namespace
}  // namespace keel

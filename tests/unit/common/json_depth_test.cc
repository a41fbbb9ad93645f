// SPDX-License-Identifier: Apache-2.0
// jsonNestedTooDeep(): the one depth bound keeld puts on what it reads and
// keelctl on what it is answered (common/json_depth.h).
#include <gtest/gtest.h>

#include <string>

#include "common/json_depth.h"

namespace keel {
namespace {

std::string nested(size_t levels, char open = '[', char close = ']') {
  return std::string(levels, open) + std::string(levels, close);
}

TEST(JsonDepthTest, TheBoundIsSixtyFourLevels) {
  EXPECT_FALSE(jsonNestedTooDeep(""));
  EXPECT_FALSE(jsonNestedTooDeep(R"({"ok":true,"result":{"services":[]}})"));
  EXPECT_FALSE(jsonNestedTooDeep(nested(kMaxJsonDepth)));
  EXPECT_TRUE(jsonNestedTooDeep(nested(kMaxJsonDepth + 1)));
  EXPECT_TRUE(jsonNestedTooDeep(nested(kMaxJsonDepth + 1, '{', '}')));
  EXPECT_TRUE(jsonNestedTooDeep(nested(200000)));
  // Depth, not count: siblings each at the bound are within it.
  EXPECT_FALSE(jsonNestedTooDeep(nested(kMaxJsonDepth) + "," + nested(kMaxJsonDepth)));
  // Mixed brackets count alike.
  std::string mixed;
  for (size_t i = 0; i <= kMaxJsonDepth; ++i) mixed += i % 2 ? "{\"k\":" : "[";
  EXPECT_TRUE(jsonNestedTooDeep(mixed));
}

TEST(JsonDepthTest, BracketsInsideStringsDoNotCount) {
  const std::string brackets(200, '[');
  EXPECT_FALSE(jsonNestedTooDeep("{\"reason\":\"" + brackets + "\"}"));
  // An escaped quote does not end the string; an escaped backslash before
  // the closing quote does not keep it open.
  EXPECT_FALSE(jsonNestedTooDeep(R"({"a":"x\"[[[[)" + brackets + R"("})"));
  EXPECT_TRUE(jsonNestedTooDeep(R"(["x\\")" + nested(kMaxJsonDepth) + "]"));
  // A closing bracket outside any (text that is no JSON) does not go below 0.
  EXPECT_TRUE(jsonNestedTooDeep("]]]]" + nested(kMaxJsonDepth + 1)));
}

}  // namespace
}  // namespace keel

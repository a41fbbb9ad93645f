// SPDX-License-Identifier: Apache-2.0
// The character sets of common/text.h that keeld and keelctl share: what
// keeld refuses in a drain reason and keelctl escapes (isHiddenCodePoint),
// and what keelctl only escapes (isZeroWidthCodePoint).
#include <gtest/gtest.h>

#include "common/text.h"

namespace keel {
namespace {

TEST(TextTest, ZeroWidthCharactersAreTheirOwnSet) {
  for (char32_t cp : {U'\u200B', U'\u200C', U'\u200D', U'\u2060', U'\uFEFF'}) {
    EXPECT_TRUE(isZeroWidthCodePoint(cp)) << std::hex << static_cast<unsigned>(cp);
    // Not hidden: keeld keeps taking them (ZWJ joins an emoji sequence,
    // ZWNJ is part of Persian spelling).
    EXPECT_FALSE(isHiddenCodePoint(cp)) << std::hex << static_cast<unsigned>(cp);
  }
  // Their neighbours are not zero-width: the marks around them are hidden
  // (U+200E, U+200F), the rest is text.
  for (char32_t cp : {U'\u200A', U'\u200E', U'\u200F', U'\u205F', U'\u2061', U'\uFEFE', U'\uFF00', U'a', U'\\'})
    EXPECT_FALSE(isZeroWidthCodePoint(cp)) << std::hex << static_cast<unsigned>(cp);
  EXPECT_TRUE(isHiddenCodePoint(U'\u200E'));
  EXPECT_TRUE(isHiddenCodePoint(U'\u200F'));
}

}  // namespace
}  // namespace keel

// SPDX-License-Identifier: Apache-2.0
// The layouts recorded beside pinned maps (dataplane/xdp/map_layout.h): what
// this build's BTF says of its maps, and which differences between a pinned
// layout and this build's a restart accepts. No privileges: the balancer
// object is opened, never loaded.
#include "dataplane/xdp/map_layout.h"

#include <bpf/libbpf.h>
#include <gtest/gtest.h>

#include <string>

#include "balancer.skel.h"

namespace keel::xdp {
namespace {

// A key of one u32 and keel_ct_value, as mapLayout writes them.
const std::string kCt =
    "k - 0 32 u32\n"
    "v backend_id 0 32 u32\n"
    "v gen 32 32 u32\n"
    "v last_seen_ns 64 64 u64\n";

std::string replaced(std::string text, const std::string& from, const std::string& to) {
  const size_t at = text.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  return at == std::string::npos ? text : text.replace(at, from.size(), to);
}

class MapLayoutTest : public ::testing::Test {
 protected:
  void SetUp() override {
    skel_ = keel_balancer__open();
    ASSERT_NE(skel_, nullptr);
  }
  void TearDown() override { keel_balancer__destroy(skel_); }
  std::string layoutOf(const bpf_map* map) { return mapLayout(bpf_object__btf(skel_->obj), map); }
  keel_balancer* skel_ = nullptr;
};

// The flattened members, from the object's own BTF: arrays of scalars are one
// member, typedefs resolved, offsets in bits.
TEST_F(MapLayoutTest, AMapsLayoutIsItsMembersFromTheObjectsBtf) {
  EXPECT_EQ(layoutOf(skel_->maps.conntrack),
            "k src 0 128 u32[4]\n"
            "k dst 128 128 u32[4]\n"
            "k sport 256 16 u16\n"
            "k dport 272 16 u16\n"
            "k proto 288 8 u8\n"
            "k family 296 8 u8\n"
            "k pad 304 16 u8[2]\n"
            "v backend_id 0 32 u32\n"
            "v gen 32 32 u32\n"
            "v last_seen_ns 64 64 u64\n");
  EXPECT_EQ(layoutOf(skel_->maps.icmp_limit), "k - 0 32 u32\nv - 0 64 u64\n");
  // Every map keeld pins has one, and each fits an entry of map_layouts.
  bpf_map* map;
  int maps = 0;
  bpf_object__for_each_map(map, skel_->obj) {
    if (bpf_map__is_internal(map)) continue;
    SCOPED_TRACE(bpf_map__name(map));
    const std::string text = layoutOf(map);
    if (bpf_map__type(map) == BPF_MAP_TYPE_ARRAY_OF_MAPS) continue;  // rings: key and value are sizes only
    EXPECT_FALSE(text.empty());
    EXPECT_LT(text.size(), kLayoutTextBytes);
    EXPECT_LT(std::string(bpf_map__name(map)).size(), kLayoutNameBytes);
    EXPECT_EQ(layoutDifference(text, text, bpf_map__key_size(map), bpf_map__value_size(map)), "");
    ++maps;
  }
  EXPECT_GE(maps, 10);
}

TEST(LayoutDifference, MembersThatMovedOrChangedAreNamed) {
  EXPECT_EQ(layoutDifference(kCt, kCt, 4, 16), "");
  // The same sizes, two members swapped: what a size check cannot see.
  const std::string swapped = replaced(replaced(kCt, "v backend_id 0", "v gen 0"), "v gen 32", "v backend_id 32");
  EXPECT_EQ(layoutDifference(swapped, kCt, 4, 16),
            "value member gen (bits 0-31, u32) pinned; this build has backend_id (bits 0-31, u32)");
  // Renamed, retyped, or in this build only.
  EXPECT_EQ(layoutDifference(replaced(kCt, "gen 32 32 u32", "gen 32 32 s32"), kCt, 4, 16),
            "value member gen (bits 32-63, s32) pinned; this build has gen (bits 32-63, u32)");
  EXPECT_EQ(layoutDifference(replaced(kCt, "v gen 32 32 u32\n", ""), kCt, 4, 16),
            "value member gen (bits 32-63, u32) in this build; the pinned map has nothing there");
  EXPECT_EQ(layoutDifference(replaced(kCt, "k - 0 32 u32", "k id 0 32 u32"), kCt, 4, 16),
            "key member id (bits 0-31, u32) pinned; this build has the unnamed whole (bits 0-31, u32)");
}

// Padding turned into a field, or a field into padding, is no difference:
// unless a member crosses the padding's edge.
TEST(LayoutDifference, PaddingMatchesWhatLiesInsideIt) {
  const std::string padded = replaced(kCt, "v gen 32 32 u32", "v __pad 32 32 u8[4]");
  EXPECT_EQ(layoutDifference(padded, kCt, 4, 16), "");
  EXPECT_EQ(layoutDifference(kCt, padded, 4, 16), "");
  const std::string reserved = replaced(kCt, "v gen 32 32 u32", "v reserved 32 32 u16[2]");
  EXPECT_EQ(layoutDifference(reserved, kCt, 4, 16), "");
  const std::string two = replaced(kCt, "v gen 32 32 u32", "v gen 32 16 u16\nv flags 48 16 u16");
  EXPECT_EQ(layoutDifference(padded, two, 4, 16), "");
  const std::string wide = replaced(padded, "v __pad 32 32 u8[4]", "v pad 32 16 u8[2]\nv x 48 16 u16");
  EXPECT_EQ(layoutDifference(wide, kCt, 4, 16),
            "value member x (bits 48-63, u16) pinned; this build has gen (bits 32-63, u32)");
}

// Only the bytes both maps hold are compared (a value one build made
// longer); a member across the shorter one's end is a difference.
TEST(LayoutDifference, OnlyTheBytesBothMapsHoldAreCompared) {
  const std::string longer = kCt + "v tail 128 32 u32\n";
  EXPECT_EQ(layoutDifference(kCt, longer, 4, 16), "");
  // A pinned value of 12 bytes against this build's 16: last_seen_ns
  // starts in the bytes both hold and ends past them.
  const std::string shorter = replaced(kCt, "v last_seen_ns 64 64 u64\n", "");
  EXPECT_EQ(layoutDifference(shorter, kCt, 4, 12),
            "value member last_seen_ns (bits 64-127, u64) in this build crosses the end of the shorter value (bit 96)");
}

TEST(LayoutDifference, TextThatIsNoLayoutIsADifference) {
  EXPECT_EQ(layoutDifference("garbage", kCt, 4, 16), "the pinned layout is not one this build can read");
  EXPECT_EQ(layoutDifference("v a 0 0 u32\n", kCt, 4, 16), "the pinned layout is not one this build can read");
}

}  // namespace
}  // namespace keel::xdp
